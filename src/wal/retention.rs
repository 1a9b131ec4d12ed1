//! Which archived WAL files prune may remove: those no kept physical snapshot can replay
//! (wholly before the start of the oldest one). Timeline history files are always kept; with
//! no physical snapshot, everything is kept.

use super::names::{segno_of, WalFile};
use crate::format::snapshot::PhysicalSource;

/// The first segment number still needed, given the kept physical snapshots; `None` keeps
/// every WAL file.
pub fn keep_from(bases: &[PhysicalSource]) -> Option<(u64, u32)> {
    let oldest = bases.iter().min_by_key(|b| b.start_lsn)?;
    Some((
        segno_of(oldest.start_lsn, oldest.wal_segment_size),
        oldest.wal_segment_size,
    ))
}

/// Whether WAL file `file` can go when segments before `keep` are not needed.
pub fn expendable(file: &str, keep: Option<(u64, u32)>) -> bool {
    let Some((first, seg_size)) = keep else { return false };
    match WalFile::parse(file) {
        Ok(WalFile::History { .. }) | Err(_) => false,
        Ok(f) => f.segno(seg_size).is_some_and(|n| n < first),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::Lsn;

    #[test]
    fn only_wal_before_the_oldest_base_goes() {
        let base = |lsn: u64| PhysicalSource {
            engine: "postgresql".into(),
            server_version: "15".into(),
            host: None,
            port: None,
            user: None,
            tool: "pg_basebackup".into(),
            system_id: "1".into(),
            timeline: 1,
            start_lsn: Lsn(lsn),
            stop_lsn: Lsn(lsn + 0x100),
            start_wal: String::new(),
            wal_segment_size: 16 << 20,
            wal_included: true,
            started: jiff::Timestamp::UNIX_EPOCH,
            finished: jiff::Timestamp::UNIX_EPOCH,
            backup_label: String::new(),
            mode: None,
            parent: None,
        };
        assert_eq!(keep_from(&[]), None);
        assert!(!expendable("000000010000000000000001", None));
        let keep = keep_from(&[base(0x500_0028), base(0x300_0028)]);
        assert_eq!(keep, Some((3, 16 << 20)));
        assert!(expendable("000000010000000000000002", keep));
        assert!(expendable("000000010000000000000002.partial", keep));
        assert!(expendable("000000010000000000000001.00000028.backup", keep));
        assert!(
            !expendable("000000010000000000000003", keep),
            "the base's first segment stays"
        );
        assert!(!expendable("000000020000000000000004", keep));
        assert!(!expendable("00000002.history", keep), "history files stay");
    }
}
