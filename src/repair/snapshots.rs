//! `repair snapshots`: every snapshot whose chunks the repository can no longer serve (a
//! chunk in no pack, a pack missing, a delta without its bases, a content list that cannot
//! be read) loses what is damaged and keeps what is intact. A database snapshot of several
//! databases is written again without the databases (and globals) it can no longer restore,
//! each recorded under `failed`; any other snapshot, or one with nothing intact left, is
//! forgotten (a physical backup missing a file is no backup). WAL files whose chunks are gone
//! are removed from the catalog, so prune can run again and `check` shows the gap. The new
//! manifest is written before the old one is forgotten.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::error::{Error, ErrorKind, Result};
use crate::format::snapshot::{DatabaseSource, Entry, FailedDatabase, Manifest, Source};
use crate::format::Id;
use crate::preflight::{locate, missing_pack};
use crate::progress::{Progress, Work};
use crate::repo::session::Session;

/// One snapshot `repair snapshots` changed.
#[derive(Debug, Clone, Serialize)]
pub struct RepairedSnapshot {
    /// The damaged snapshot.
    pub id: Id,
    /// Its name.
    pub name: String,
    /// The snapshot written in its place without what was lost (`None`: forgotten).
    pub replaced_by: Option<Id>,
    /// Entries that cannot be restored, with why.
    pub lost: Vec<LostEntry>,
    /// Entries kept, when written again.
    pub kept: Vec<String>,
}

/// An entry (or WAL file) that cannot be restored.
#[derive(Debug, Clone, Serialize)]
pub struct LostEntry {
    /// Entry path, or WAL file name.
    pub path: String,
    /// What is missing.
    pub error: String,
}

/// What `repair snapshots` found and did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SnapshotRepair {
    /// Nothing was changed.
    pub dry_run: bool,
    /// Snapshots examined.
    pub snapshots: u64,
    /// Snapshots with nothing lost.
    pub intact: u64,
    /// Snapshots written again without what was lost.
    pub rewritten: Vec<RepairedSnapshot>,
    /// Snapshots forgotten.
    pub forgotten: Vec<RepairedSnapshot>,
    /// Snapshots whose manifest cannot be read (left alone: `forget` removes them by id).
    pub unreadable: Vec<(Id, String)>,
    /// WAL files removed from the archive's catalog.
    pub wal_files_removed: Vec<LostEntry>,
}

/// Repair snapshots. The caller holds an exclusive lock. The cache is rebuilt first, so only
/// what the repository itself lacks counts as lost.
pub fn repair_snapshots(session: &Session<'_>, dry_run: bool, progress: &dyn Progress) -> Result<SnapshotRepair> {
    let (repo, index) = (session.repo(), session.index());
    let mut rep = SnapshotRepair {
        dry_run,
        ..Default::default()
    };
    index.rebuild(repo)?;
    let packs: BTreeSet<Id> = repo.pack_sizes()?.into_keys().collect();
    let (manifests, unreadable) = repo.readable_manifests()?;
    rep.unreadable = unreadable.into_iter().map(|(id, e)| (id, e.to_string())).collect();
    progress.start("snapshots", Work::Count(manifests.len() as u64));
    for (id, m) in manifests {
        progress.advance(1);
        rep.snapshots += 1;
        let mut lost = Vec::new();
        for e in &m.entries {
            if let Some(err) = entry_problem(session, e, &packs)? {
                lost.push(LostEntry {
                    path: e.path.clone(),
                    error: err.to_string(),
                });
            }
        }
        if lost.is_empty() {
            rep.intact += 1;
            continue;
        }
        let rewrite = without_lost(&m, &lost);
        let mut r = RepairedSnapshot {
            id,
            name: m.name.clone(),
            replaced_by: None,
            kept: rewrite
                .as_ref()
                .map(|n| n.entries.iter().map(|e| e.path.clone()).collect())
                .unwrap_or_default(),
            lost,
        };
        if !dry_run {
            if let Some(n) = &rewrite {
                r.replaced_by = Some(repo.save_manifest(n)?);
            }
            repo.remove_snapshot(&id)?;
        }
        tracing::info!(snapshot = %id, lost = r.lost.len(), rewritten = rewrite.is_some(), "snapshot repaired");
        if rewrite.is_some() {
            rep.rewritten.push(r);
        } else {
            rep.forgotten.push(r);
        }
    }
    progress.finish();
    repair_wal(session, &packs, dry_run, &mut rep)?;
    Ok(rep)
}

/// Why entry `e` cannot be restored, or `None`.
fn entry_problem(session: &Session<'_>, e: &Entry, packs: &BTreeSet<Id>) -> Result<Option<Error>> {
    Ok(match locate(session, std::slice::from_ref(e))? {
        Err(problem) => Some(problem),
        Ok(needed) => missing_pack(&needed, |p| packs.contains(p)),
    })
}

/// Manifest `m` without the entries in `lost`, when something a restore can use is left: only
/// database snapshots, which lose whole databases (a directory-format database with any of its
/// files) and the globals.
fn without_lost(m: &Manifest, lost: &[LostEntry]) -> Option<Manifest> {
    let Source::Database(src) = &m.source else { return None };
    let damaged = |path: &str| {
        lost.iter()
            .find(|l| l.path == path || l.path.starts_with(&format!("{path}/")))
    };
    let mut s: DatabaseSource = (**src).clone();
    let mut drop: Vec<String> = Vec::new();
    s.databases.retain(|d| match damaged(&d.path) {
        Some(l) => {
            s.failed.push(FailedDatabase {
                name: d.name.clone(),
                error: format!(
                    "removed by `repair snapshots`: {} cannot be restored: {}",
                    l.path, l.error
                ),
            });
            drop.push(d.path.clone());
            false
        }
        None => true,
    });
    if let Some(g) = s.globals.clone() {
        if let Some(l) = damaged(&g) {
            s.warnings
                .push(format!("globals removed by `repair snapshots`: {}", l.error));
            s.globals = None;
            drop.push(g);
        }
    }
    if s.databases.is_empty() {
        return None;
    }
    let gone = |p: &str| drop.iter().any(|d| p == d || p.starts_with(&format!("{d}/")));
    let entries: Vec<Entry> = m.entries.iter().filter(|e| !gone(&e.path)).cloned().collect();
    // An entry that is damaged but belongs to no database would be lost silently: refuse.
    if lost.iter().any(|l| entries.iter().any(|e| e.path == l.path)) {
        return None;
    }
    let mut n = m.clone();
    n.entries = entries;
    n.source = Source::Database(Box::new(s));
    Some(n)
}

/// Remove catalog entries of WAL files whose chunks are gone.
fn repair_wal(session: &Session<'_>, packs: &BTreeSet<Id>, dry_run: bool, rep: &mut SnapshotRepair) -> Result<()> {
    let repo = session.repo();
    let mut doomed: BTreeMap<String, (String, String)> = BTreeMap::new(); // path -> (file, why)
    let listing = crate::wal::catalog::list(repo)?;
    crate::wal::catalog::read_each(repo, listing, |dir, id, r| {
        let e = match r {
            Ok(e) => e,
            // A damaged entry is `check`'s to report; nothing of it can be trusted here.
            Err(e) if matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::NotFound) => return Ok(()),
            Err(e) => return Err(e),
        };
        if let Some(err) = entry_problem(session, &e.data, packs)? {
            doomed.insert(format!("{dir}/{id}"), (e.file.clone(), err.to_string()));
        }
        Ok(())
    })?;
    for (path, (file, error)) in doomed {
        if !dry_run {
            repo.store().delete(&path)?;
        }
        tracing::info!(file = %file, "WAL file removed from the archive: its chunks are gone");
        rep.wal_files_removed.push(LostEntry { path: file, error });
    }
    Ok(())
}
