//! Prune's first mark (repo-format §10.3 step 1): the roots. Every chunk a kept snapshot or
//! a kept WAL file references goes into the reference set, with the bases of the deltas among
//! them; manifests and the WAL catalog are listed before the index is synced, so that every
//! segment their chunks were indexed by is known.

use std::collections::HashSet;

use super::liveset::LiveSet;
use super::PruneReport;
use crate::error::{Error, ErrorKind, Result};
use crate::format::snapshot::{Entry, PhysicalSource, Source};
use crate::format::{BlobKind, Id};
use crate::progress::{Progress, Work};
use crate::repo::index::IndexCache;
use crate::repo::session::Session;

/// What the roots are: the snapshots and WAL files whose chunks were kept, and the WAL files
/// retention lets go.
pub(super) struct Roots {
    /// Snapshots as listed (manifests, registry copies).
    pub(super) primaries: HashSet<Id>,
    pub(super) copies: HashSet<Id>,
    /// Snapshots whose chunks are in the reference set.
    pub(super) snapshots: HashSet<Id>,
    /// WAL catalog entries read (kept or expired).
    pub(super) wal: HashSet<Id>,
    /// WAL catalog entries no kept physical snapshot can replay: (directory, id).
    pub(super) expired: Vec<(String, Id)>,
}

/// Put every chunk the snapshots (but those in `ignore`) and the WAL archive reference into
/// `live`, and sync the index with every segment that can hold them.
pub(super) fn gather(
    session: &Session<'_>,
    live: &LiveSet,
    ignore: &[Id],
    rep: &mut PruneReport,
    progress: &dyn Progress,
) -> Result<Roots> {
    let (repo, index) = (session.repo(), session.index());
    // Manifests first (listed before the index, whose segments precede them).
    let (primaries, copies) = repo.snapshot_listing()?;
    let mut snaps: Vec<Id> = primaries.union(&copies).copied().collect();
    snaps.sort();
    snaps.retain(|s| !ignore.contains(s));
    // The WAL catalog too is listed before the index is synced (segments precede entries).
    let wal_listing = crate::wal::catalog::list(repo)?;
    index.sync(repo)?;
    progress.start("references", Work::Count(snaps.len() as u64));
    let mut bases = Vec::new();
    for sid in &snaps {
        rep.chunks_referenced += add_roots(session, live, sid, &mut bases)?;
        progress.advance(1);
    }
    progress.finish();
    rep.snapshots = snaps.len() as u64;
    // WAL: every catalog entry is a root, but those no kept physical snapshot can replay.
    let mut wal: HashSet<Id> = HashSet::new();
    let mut expired: Vec<(String, Id)> = Vec::new();
    let keep = crate::wal::retention::keep_from(&bases);
    rep.chunks_referenced += add_wal_roots(session, live, &mut wal, keep, &mut expired, wal_listing)?;
    rep.wal_files = (wal.len() - expired.len()) as u64;
    rep.wal_files_expired = expired.len() as u64;
    Ok(Roots {
        primaries,
        copies,
        snapshots: snaps.into_iter().collect(),
        wal,
        expired,
    })
}

/// Add the chunks of snapshot `sid` (its content lists and their records) to `live`; a
/// physical snapshot's source goes to `bases`.
pub(super) fn add_roots(
    session: &Session<'_>,
    live: &LiveSet,
    sid: &Id,
    bases: &mut Vec<PhysicalSource>,
) -> Result<u64> {
    let m = match session.repo().load_manifest(sid) {
        Ok(m) => m,
        // Removed by `forget` meanwhile: its chunks need not be kept.
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(0),
        Err(e) => {
            return Err(Error::new(
                e.kind(),
                format!("{e}; prune cannot know which chunks this snapshot needs, so it stops without deleting anything (see `dbbackup check`)"),
            ))
        }
    };
    if let Source::Physical(p) = &m.source {
        bases.push((**p).clone());
    }
    add_entry_roots(session, live, &m.entries)
}

/// Add the chunks of every WAL catalog entry not in `seen` to `live` (and their ids to
/// `seen`), except entries that WAL retention (`keep`, see [`crate::wal::retention`]) lets
/// go: those are pushed to `expired` instead. `listing`: the catalog as listed before the
/// index was synced. Returns the chunks added.
pub(super) fn add_wal_roots(
    session: &Session<'_>,
    live: &LiveSet,
    seen: &mut HashSet<Id>,
    keep: Option<(u64, u32)>,
    expired: &mut Vec<(String, Id)>,
    listing: Vec<(String, Id)>,
) -> Result<u64> {
    let repo = session.repo();
    let fresh: Vec<(String, Id)> = listing.into_iter().filter(|(_, id)| !seen.contains(id)).collect();
    let mut n = 0;
    crate::wal::catalog::read(repo, fresh, |id, e| {
        seen.insert(id);
        if crate::wal::retention::expendable(&e.file, keep) {
            expired.push((crate::wal::catalog::entry_dir(repo, &e.file), id));
            return Ok(());
        }
        n += add_entry_roots(session, live, std::slice::from_ref(&e.data))?;
        Ok(())
    })
    .map_err(|e| {
        Error::new(
            e.kind(),
            format!("{e}; prune cannot know which chunks the WAL archive needs, so it stops without deleting anything (see `dbbackup check`)"),
        )
    })?;
    Ok(n)
}

/// Add the chunks of `entries` (their content lists and the lists' records) to `live`.
fn add_entry_roots(session: &Session<'_>, live: &LiveSet, entries: &[Entry]) -> Result<u64> {
    let (repo, index) = (session.repo(), session.index());
    let mut n = 0;
    for e in entries {
        for lid in &e.content {
            n += live.add([*lid])?;
            let list = repo.store().runtime().block_on(crate::repo::blob_reader::fetch_blob(
                session,
                *lid,
                BlobKind::ContentList,
            ))?;
            let ids: Vec<Id> = list
                .chunks_exact(36)
                .filter_map(|rec| rec.get(..32).and_then(Id::from_slice))
                .collect();
            // A delta keeps its bases alive (repo-format §10.3); only format version 2 has
            // deltas, so version 1 repositories skip the lookups.
            let mut bases = Vec::new();
            if repo.config().deltas() {
                for id in &ids {
                    if let Some(l) = index.lookup(id)? {
                        bases.extend(l.bases);
                    }
                }
            }
            n += live.add(ids)?;
            n += live.add(bases)?;
        }
    }
    Ok(n)
}

/// Stop when a referenced chunk is in no segment and no plan: the repository is damaged and
/// prune must not guess.
pub(super) fn refuse_missing(index: &IndexCache, live: &LiveSet) -> Result<()> {
    let mut missing = 0u64;
    let mut first = None;
    live.for_each_unclaimed(|id| {
        if index.lookup(&id)?.is_none() {
            missing += 1;
            first.get_or_insert(id);
        }
        Ok(())
    })?;
    match first {
        None => Ok(()),
        Some(id) => Err(Error::corrupt(
            format!("chunk {id}"),
            format!(
                "{missing} chunks that snapshots reference are in no index segment; prune refuses to run on a damaged repository: run `dbbackup check`"
            ),
        )),
    }
}
