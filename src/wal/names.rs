//! PostgreSQL WAL file names, log sequence numbers, segment headers and timeline history
//! files: parsing of what the server hands `archive_command` and `restore_command`.

use crate::error::{Error, Result};

pub use crate::format::Lsn;

/// What a WAL archive file is, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum WalFile {
    /// A full segment: `TTTTTTTTXXXXXXXXYYYYYYYY`.
    Segment {
        /// Timeline.
        tli: u32,
        /// Segment number in units of the segment size (`XXXXXXXX * per_log + YYYYYYYY`) is
        /// computed with the segment size; here the two name fields are kept as written.
        log: u32,
        /// Low name field.
        seg: u32,
    },
    /// The last, incomplete segment of a timeline archived at promotion: `<segment>.partial`.
    Partial {
        /// Timeline.
        tli: u32,
        /// High name field.
        log: u32,
        /// Low name field.
        seg: u32,
    },
    /// A timeline history file: `TTTTTTTT.history`.
    History {
        /// The timeline it describes.
        tli: u32,
    },
    /// A backup history file: `<segment>.XXXXXXXX.backup`.
    Backup {
        /// Timeline.
        tli: u32,
        /// High name field of the segment it names.
        log: u32,
        /// Low name field.
        seg: u32,
    },
}

fn hex8(s: &str) -> Option<u32> {
    if s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)) {
        u32::from_str_radix(s, 16).ok()
    } else {
        None
    }
}

fn segment_fields(s: &str) -> Option<(u32, u32, u32)> {
    if s.len() != 24 || !s.is_ascii() {
        return None;
    }
    Some((hex8(&s[..8])?, hex8(&s[8..16])?, hex8(&s[16..])?))
}

impl WalFile {
    /// Parse an archive file name (no directory).
    pub fn parse(name: &str) -> Result<WalFile> {
        let bad = || {
            Error::usage(format!(
                "`{name}` is not a WAL file name (a segment, .partial, .history or .backup file)"
            ))
        };
        if let Some((tli, log, seg)) = segment_fields(name) {
            return Ok(WalFile::Segment { tli, log, seg });
        }
        if let Some(base) = name.strip_suffix(".partial") {
            let (tli, log, seg) = segment_fields(base).ok_or_else(bad)?;
            return Ok(WalFile::Partial { tli, log, seg });
        }
        if let Some(t) = name.strip_suffix(".history") {
            return Ok(WalFile::History {
                tli: hex8(t).ok_or_else(bad)?,
            });
        }
        if let Some(rest) = name.strip_suffix(".backup") {
            let (seg, off) = rest.split_once('.').ok_or_else(bad)?;
            let (tli, log, seg) = segment_fields(seg).ok_or_else(bad)?;
            hex8(off).ok_or_else(bad)?;
            return Ok(WalFile::Backup { tli, log, seg });
        }
        Err(bad())
    }

    /// The timeline the file belongs to.
    pub fn timeline(&self) -> u32 {
        match *self {
            WalFile::Segment { tli, .. }
            | WalFile::Partial { tli, .. }
            | WalFile::History { tli }
            | WalFile::Backup { tli, .. } => tli,
        }
    }

    /// For segments, partial segments and backup history files: the segment number, given the
    /// segment size.
    pub fn segno(&self, seg_size: u32) -> Option<u64> {
        match *self {
            WalFile::Segment { log, seg, .. }
            | WalFile::Partial { log, seg, .. }
            | WalFile::Backup { log, seg, .. } => Some(u64::from(log) * segments_per_log(seg_size) + u64::from(seg)),
            _ => None,
        }
    }
}

/// Segments per "log" (the high name field counts 4 GiB of WAL).
fn segments_per_log(seg_size: u32) -> u64 {
    0x1_0000_0000 / u64::from(seg_size.max(1))
}

/// Name of segment `segno` on timeline `tli`.
pub fn segment_name(tli: u32, segno: u64, seg_size: u32) -> String {
    let per = segments_per_log(seg_size);
    format!("{tli:08X}{:08X}{:08X}", segno / per, segno % per)
}

/// Segment holding byte `lsn`.
pub fn segno_of(lsn: Lsn, seg_size: u32) -> u64 {
    lsn.0 / u64::from(seg_size.max(1))
}

/// What the first page of a segment says about the cluster that wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The cluster's system identifier.
    pub system_id: u64,
    /// WAL segment size.
    pub seg_size: u32,
    /// Timeline of the first page.
    pub tli: u32,
    /// Address of the first page.
    pub pageaddr: Lsn,
}

/// `XLP_LONG_HEADER`: the first page of a segment carries the long header.
const XLP_LONG_HEADER: u16 = 0x0002;

/// Parse the long page header at the start of a segment (`XLogLongPageHeaderData`,
/// little-endian: magic u16, info u16, tli u32, pageaddr u64, rem_len u32, pad, sysid u64,
/// seg_size u32, xlog_blcksz u32).
pub fn parse_segment_header(b: &[u8]) -> Result<SegmentHeader> {
    let bad = |why: &str| Error::usage(format!("not a PostgreSQL WAL segment: {why}"));
    let h = b.get(..40).ok_or_else(|| bad("shorter than a page header"))?;
    let u16_at = |o: usize| u16::from_le_bytes([h[o], h[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
    let u64_at = |o: usize| u64::from(u32_at(o)) | (u64::from(u32_at(o + 4)) << 32);
    if u16_at(2) & XLP_LONG_HEADER == 0 {
        return Err(bad("its first page has no long header"));
    }
    let seg_size = u32_at(32);
    if !seg_size.is_power_of_two() || !(1 << 20..=1 << 30).contains(&seg_size) {
        return Err(bad("implausible segment size in its header"));
    }
    Ok(SegmentHeader {
        system_id: u64_at(24),
        seg_size,
        tli: u32_at(4),
        pageaddr: Lsn(u64_at(8)),
    })
}

/// One line of a timeline history file: timeline `tli` ended at `switchpoint` (its child
/// begins there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// An ancestor timeline.
    pub tli: u32,
    /// Where it was left.
    pub switchpoint: Lsn,
}

/// Parse a `.history` file: `parentTLI <tab> switchpoint <tab> reason` lines, `#` comments.
pub fn parse_history(text: &str) -> Result<Vec<HistoryEntry>> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut f = line.split_whitespace();
        let (Some(t), Some(l)) = (f.next(), f.next()) else {
            return Err(Error::corrupt("timeline history", format!("bad line `{line}`")));
        };
        let tli = t
            .parse()
            .map_err(|_| Error::corrupt("timeline history", format!("bad timeline in `{line}`")))?;
        let switchpoint = l
            .parse()
            .map_err(|_| Error::corrupt("timeline history", format!("bad LSN in `{line}`")))?;
        out.push(HistoryEntry { tli, switchpoint });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse() {
        assert_eq!(
            WalFile::parse("000000010000000A000000FF").unwrap(),
            WalFile::Segment {
                tli: 1,
                log: 10,
                seg: 255
            }
        );
        assert_eq!(WalFile::parse("00000002.history").unwrap(), WalFile::History { tli: 2 });
        assert_eq!(
            WalFile::parse("000000010000000000000003.partial").unwrap(),
            WalFile::Partial { tli: 1, log: 0, seg: 3 }
        );
        assert_eq!(
            WalFile::parse("000000010000000000000002.00000028.backup").unwrap(),
            WalFile::Backup { tli: 1, log: 0, seg: 2 }
        );
        for bad in [
            "",
            "00000001000000000000000",
            "0000000100000000000000g3",
            "x.history",
            "../etc/passwd",
            "000000010000000000000003.bak",
        ] {
            assert!(WalFile::parse(bad).is_err(), "{bad}");
        }
        // Lower-case hex is not what PostgreSQL writes.
        assert!(WalFile::parse("00000001000000000000000a").is_err());
    }

    #[test]
    fn segment_numbers_round_trip() {
        let sz = 16 << 20;
        let f = WalFile::parse("000000010000000A000000FF").unwrap();
        let n = f.segno(sz).unwrap();
        assert_eq!(n, 10 * 256 + 255);
        assert_eq!(segment_name(1, n, sz), "000000010000000A000000FF");
        assert_eq!(segno_of("A/FF000028".parse().unwrap(), sz), n);
    }

    #[test]
    fn lsns_and_history() {
        let l: Lsn = "16/B374D848".parse().unwrap();
        assert_eq!(l.0, 0x16_B374_D848);
        assert_eq!(l.to_string(), "16/B374D848");
        assert!("16".parse::<Lsn>().is_err());
        let h = parse_history("1\t0/3000158\tno recovery target specified\n\n2\t0/5000000\tat restore point \"x\"\n")
            .unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(h[1].tli, 2);
        assert_eq!(h[1].switchpoint, Lsn(0x500_0000));
        assert!(parse_history("1 zz").is_err());
    }

    #[test]
    fn segment_header() {
        let mut b = vec![0u8; 64];
        b[2] = 0x02;
        b[4] = 1;
        b[24..32].copy_from_slice(&7_301_234_567_890_123_456u64.to_le_bytes());
        b[32..36].copy_from_slice(&(16u32 << 20).to_le_bytes());
        let h = parse_segment_header(&b).unwrap();
        assert_eq!(h.system_id, 7_301_234_567_890_123_456);
        assert_eq!(h.seg_size, 16 << 20);
        assert_eq!(h.tli, 1);
        assert!(parse_segment_header(&b[..20]).is_err());
        b[2] = 0;
        assert!(parse_segment_header(&b).is_err());
    }
}
