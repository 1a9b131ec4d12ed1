//! What the WAL archive holds: files by kind, timelines with their first and last segment
//! and the gaps between, sizes and the space compression and dedup saved.

use std::collections::BTreeMap;

use serde::Serialize;

use super::names::{segment_name, WalFile};
use super::DEFAULT_SEG_SIZE;
use crate::format::wal::{ArchiveInfo, WalEntry};
use crate::format::Id;

/// Segments missing from a timeline, `from` to `to` inclusive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gap {
    /// First missing segment.
    pub from: String,
    /// Last missing segment.
    pub to: String,
}

/// One timeline's segments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Timeline {
    /// Timeline id.
    pub timeline: u32,
    /// First segment archived.
    pub first: String,
    /// Last segment archived.
    pub last: String,
    /// Segments archived (full ones).
    pub segments: u64,
    /// Ranges of missing segments between `first` and `last`.
    pub gaps: Vec<Gap>,
}

/// The archive at a glance.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WalSummary {
    /// Cluster the archive belongs to.
    pub system_id: Option<String>,
    /// Its WAL segment size.
    pub wal_segment_size: u32,
    /// Catalog entries.
    pub files: u64,
    /// Full segments.
    pub segments: u64,
    /// `.partial` segments.
    pub partial: u64,
    /// Timeline history files.
    pub history: u64,
    /// Backup history files.
    pub backup: u64,
    /// Bytes of WAL archived.
    pub bytes: u64,
    /// Bytes the pushes added to the repository (after dedup and compression).
    pub bytes_stored: u64,
    /// When the oldest file was pushed.
    pub oldest: Option<jiff::Timestamp>,
    /// When the newest file was pushed.
    pub newest: Option<jiff::Timestamp>,
    /// Timelines with segments, in order.
    pub timelines: Vec<Timeline>,
}

impl WalSummary {
    /// Whether any timeline has a gap.
    pub fn has_gaps(&self) -> bool {
        self.timelines.iter().any(|t| !t.gaps.is_empty())
    }
}

/// Summarize catalog `entries` (duplicates of one file count once).
pub fn summarize(entries: &[(Id, WalEntry)], info: Option<&ArchiveInfo>) -> WalSummary {
    let seg_size = info.map(|a| a.wal_segment_size).unwrap_or(DEFAULT_SEG_SIZE);
    let mut s = WalSummary {
        system_id: info.map(|a| a.system_id.clone()),
        wal_segment_size: seg_size,
        ..Default::default()
    };
    let mut by_tli: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    let mut seen = std::collections::HashSet::new();
    for (_, e) in entries {
        if !seen.insert(e.file.as_str()) {
            continue;
        }
        s.files += 1;
        s.bytes += e.data.size;
        s.bytes_stored += e.bytes_stored;
        s.oldest = Some(s.oldest.map_or(e.time, |o| o.min(e.time)));
        s.newest = Some(s.newest.map_or(e.time, |o| o.max(e.time)));
        match WalFile::parse(&e.file) {
            Ok(f @ WalFile::Segment { tli, .. }) => {
                s.segments += 1;
                if let Some(n) = f.segno(seg_size) {
                    by_tli.entry(tli).or_default().push(n);
                }
            }
            Ok(WalFile::Partial { .. }) => s.partial += 1,
            Ok(WalFile::History { .. }) => s.history += 1,
            Ok(WalFile::Backup { .. }) => s.backup += 1,
            Err(_) => {}
        }
    }
    for (tli, mut segs) in by_tli {
        segs.sort_unstable();
        let mut gaps = Vec::new();
        for w in segs.windows(2) {
            if w[1] > w[0] + 1 {
                gaps.push(Gap {
                    from: segment_name(tli, w[0] + 1, seg_size),
                    to: segment_name(tli, w[1] - 1, seg_size),
                });
            }
        }
        if let (Some(&first), Some(&last)) = (segs.first(), segs.last()) {
            s.timelines.push(Timeline {
                timeline: tli,
                first: segment_name(tli, first, seg_size),
                last: segment_name(tli, last, seg_size),
                segments: segs.len() as u64,
                gaps,
            });
        }
    }
    s
}
