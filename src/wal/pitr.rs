//! Point-in-time recovery: pick the base backup for a recovery target, check that the
//! archive's timeline history leads from it to the target, and write the recovery settings
//! (`restore_command` calling `dbbackup wal fetch`, the target, `recovery.signal`).

use std::io::Write;
use std::path::Path;

use super::catalog;
use super::names::{parse_history, Lsn, WalFile};
use crate::error::{Error, Hint, Result};
use crate::format::snapshot::{Manifest, PhysicalSource, Source};
use crate::format::Id;
use crate::progress::NoProgress;
use crate::repo::session::Session;
use crate::repo::Repository;

/// Where recovery stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveryTarget {
    /// The end of the archive (every archived WAL file is replayed).
    Latest,
    /// A moment (commit times up to and including it).
    Time(jiff::Timestamp),
    /// A WAL position.
    Lsn(Lsn),
    /// A restore point made with `pg_create_restore_point(name)`.
    Name(String),
}

/// What the server does when it reaches the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetAction {
    /// Stay in recovery, read-only, until `pg_wal_replay_resume()` (PostgreSQL's default).
    Pause,
    /// End recovery and accept writes.
    Promote,
    /// Stop the server.
    Shutdown,
}

impl TargetAction {
    fn as_str(self) -> &'static str {
        match self {
            TargetAction::Pause => "pause",
            TargetAction::Promote => "promote",
            TargetAction::Shutdown => "shutdown",
        }
    }
}

/// The physical snapshots, oldest first by their end. A snapshot whose manifest (every copy)
/// cannot be read is left out with a warning: it is used only to choose a base or a parent,
/// where an older one is never wrong (recovery replays more WAL; an incremental stores more),
/// so a damaged manifest must not stand between a DBA and a recovery.
pub fn physical_snapshots(repo: &Repository) -> Result<Vec<(Id, Manifest, PhysicalSource)>> {
    let (readable, unreadable) = repo.readable_manifests()?;
    for (id, e) in &unreadable {
        tracing::warn!(
            snapshot = %id,
            error = %e,
            "cannot read this snapshot's manifest; choosing among the other physical snapshots (run `dbbackup check`)"
        );
    }
    let mut v: Vec<(Id, Manifest, PhysicalSource)> = readable
        .into_iter()
        .filter_map(|(id, m)| match &m.source {
            Source::Physical(p) => {
                let p = (**p).clone();
                Some((id, m, p))
            }
            _ => None,
        })
        .collect();
    v.sort_by(|a, b| a.2.finished.cmp(&b.2.finished).then(a.0.cmp(&b.0)));
    Ok(v)
}

/// The newest physical snapshot that finished before `target` (any, for a named restore
/// point or the latest state: the newest).
pub fn choose_base(repo: &Repository, target: &RecoveryTarget) -> Result<(Id, Manifest, PhysicalSource)> {
    let all = physical_snapshots(repo)?;
    if all.is_empty() {
        return Err(Error::not_found("the repository has no physical snapshots").with_hint(Hint::TakePhysicalSnapshot));
    }
    let pick = all.into_iter().rev().find(|(_, _, p)| match target {
        RecoveryTarget::Time(t) => p.finished < *t,
        RecoveryTarget::Lsn(l) => p.stop_lsn <= *l,
        RecoveryTarget::Name(_) | RecoveryTarget::Latest => true,
    });
    pick.ok_or_else(|| {
        Error::not_found(match target {
            RecoveryTarget::Time(t) => format!("no physical snapshot finished before {t}; the target is too early"),
            RecoveryTarget::Lsn(l) => format!("no physical snapshot is consistent before LSN {l}"),
            _ => "no physical snapshot".to_string(),
        })
    })
}

/// Read a small archived WAL file (a history file) into memory.
fn read_wal_file(session: &Session<'_>, file: &str) -> Result<Option<Vec<u8>>> {
    let repo = session.repo();
    let Some((_, e)) = catalog::find(repo, file)?.into_iter().next() else {
        return Ok(None);
    };
    let mut out = Vec::new();
    crate::restore::restore_entry(session, &e.data, &mut out, &NoProgress)?;
    Ok(Some(out))
}

/// Check that the archive's newest timeline descends from `base`'s and that `base` ended
/// before its timeline branched off. Returns the newest timeline.
pub fn check_timeline(session: &Session<'_>, base: &PhysicalSource) -> Result<u32> {
    let repo = session.repo();
    let newest = catalog::all(repo)?
        .iter()
        .filter_map(|(_, e)| WalFile::parse(&e.file).ok())
        .map(|f| f.timeline())
        .max()
        .unwrap_or(base.timeline);
    if newest <= base.timeline {
        return Ok(base.timeline);
    }
    let file = format!("{newest:08X}.history");
    let text = read_wal_file(session, &file)?.ok_or_else(|| {
        Error::not_found(format!(
            "the archive holds WAL of timeline {newest} but not its history file {file}; recovery cannot follow it"
        ))
    })?;
    let history = parse_history(&String::from_utf8_lossy(&text))?;
    match history.iter().find(|h| h.tli == base.timeline) {
        Some(h) if base.stop_lsn <= h.switchpoint => Ok(newest),
        Some(h) => Err(Error::usage(format!(
            "the base backup ends at {} on timeline {}, after that timeline branched off at {} to reach timeline {newest}; \
             choose an older base backup",
            base.stop_lsn, base.timeline, h.switchpoint
        ))),
        None => Err(Error::usage(format!(
            "timeline {newest} does not descend from the base backup's timeline {}; choose another base backup",
            base.timeline
        ))),
    }
}

/// Quote `s` for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-=:@+,".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Quote `s` as a postgresql.conf string value.
fn conf_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Write the recovery settings into data directory `dir`: appended to
/// `postgresql.auto.conf` (which the base backup carries, and which wins over
/// postgresql.conf), and `recovery.signal`.
pub fn write_recovery(dir: &Path, restore_command: &str, target: &RecoveryTarget, action: TargetAction) -> Result<()> {
    let mut conf = String::from("\n# Written by `dbbackup restore --pitr`.\n");
    conf.push_str(&format!("restore_command = {}\n", conf_quote(restore_command)));
    conf.push_str("recovery_target_timeline = 'latest'\n");
    match target {
        RecoveryTarget::Latest => {}
        RecoveryTarget::Time(t) => {
            // PostgreSQL's own timestamptz syntax (it refuses RFC 3339's `T` and `Z` here).
            let pg = format!("{}+00", t.strftime("%Y-%m-%d %H:%M:%S%.f"));
            conf.push_str(&format!("recovery_target_time = {}\n", conf_quote(&pg)));
        }
        RecoveryTarget::Lsn(l) => conf.push_str(&format!("recovery_target_lsn = {}\n", conf_quote(&l.to_string()))),
        RecoveryTarget::Name(n) => conf.push_str(&format!("recovery_target_name = {}\n", conf_quote(n))),
    }
    if *target != RecoveryTarget::Latest {
        conf.push_str(&format!("recovery_target_action = {}\n", conf_quote(action.as_str())));
    }
    let auto = dir.join("postgresql.auto.conf");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&auto)
        .map_err(|e| Error::io(format!("cannot open {}", auto.display()), e))?;
    f.write_all(conf.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(format!("cannot write {}", auto.display()), e))?;
    let signal = dir.join("recovery.signal");
    std::fs::write(&signal, b"").map_err(|e| Error::io(format!("cannot write {}", signal.display()), e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("/usr/bin/dbbackup"), "/usr/bin/dbbackup");
        assert_eq!(shell_quote("/my repo/it's"), r"'/my repo/it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(conf_quote("a 'b'"), "'a ''b'''");
    }

    #[test]
    fn recovery_settings() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("postgresql.auto.conf"), "work_mem = '8MB'\n").unwrap();
        let t: jiff::Timestamp = "2026-11-22T10:00:00Z".parse().unwrap();
        write_recovery(
            d.path(),
            "x wal fetch %f %p",
            &RecoveryTarget::Time(t),
            TargetAction::Promote,
        )
        .unwrap();
        let c = std::fs::read_to_string(d.path().join("postgresql.auto.conf")).unwrap();
        assert!(c.starts_with("work_mem = '8MB'\n"));
        assert!(c.contains("restore_command = 'x wal fetch %f %p'\n"), "{c}");
        assert!(c.contains("recovery_target_time = '2026-11-22 10:00:00+00'\n"), "{c}");
        assert!(c.contains("recovery_target_action = 'promote'\n"), "{c}");
        assert!(d.path().join("recovery.signal").exists());
    }
}
