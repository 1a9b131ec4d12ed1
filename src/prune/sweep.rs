//! The second phase of deletion (repo-format §10.3 step 4): a deletion plan is swept only
//! when no running operation can still depend on its packs; then each of its packs is kept
//! (indexed again), revived (a snapshot needs it), or deleted, and the plan goes.

use std::collections::{BTreeMap, HashSet};

use crate::error::Result;
use crate::format::index::{IndexSegment, PackBlobs};
use crate::format::lock::Lock;
use crate::format::pack::BlobEntry;
use crate::format::pending::DeletionPlan;
use crate::format::{BlobKind, Id, ObjectKind};
use crate::repo::index::{BlobLocation, IndexCache};
use crate::repo::lock::{live_locks, Holder, LockGuard, Operation};
use crate::repo::objects::load_all;
use crate::repo::session::Session;
use crate::repo::Repository;
use crate::storage::pack_path;

use super::liveset::LiveSet;
use super::plan::entries_bytes;
use super::roots::{add_roots, add_wal_roots};
use super::write::delete_all;
use super::PruneReport;

/// A writer's lock (`snapshot`, `wal-push`) taken at least this long after a plan was created proves its writer saw
/// the plan: 5 minutes of clock skew plus the 60 s bound on writing the plan, with margin.
pub const AWARE_AFTER: jiff::SignedDuration = jiff::SignedDuration::from_mins(10);

/// Would lock `l` keep a plan created at `created` from being swept?
fn blocks(l: &Lock, created: jiff::Timestamp) -> bool {
    let writer = Operation::from_name(&l.operation).is_some_and(Operation::is_writer);
    let aware = writer && l.started.is_some_and(|s| s >= created + AWARE_AFTER);
    !aware
}

/// What the prune run already knows.
pub(super) struct Known<'a> {
    /// Snapshots whose roots are in the live set.
    pub snapshots: &'a HashSet<Id>,
    /// Index segments it read or wrote: their deltas' bases are secured (repo-format §10.3).
    pub segments: &'a HashSet<Id>,
}

/// Sweep every eligible plan; account for the others in `rep`.
#[allow(clippy::too_many_arguments)]
pub(super) fn sweep(
    session: &Session<'_>,
    lock: &LockGuard,
    live: &LiveSet,
    known: Known<'_>,
    seen_wal: &mut HashSet<Id>,
    sizes: &BTreeMap<Id, u64>,
    rep: &mut PruneReport,
) -> Result<()> {
    let (repo, index) = (session.repo(), session.index());
    let plan_ids = repo.list_ids(ObjectKind::Pending)?;
    if plan_ids.is_empty() {
        return Ok(());
    }
    let eligible = eligible_plans(repo, lock, plan_ids, sizes, rep)?;
    if eligible.is_empty() {
        return Ok(());
    }
    let new_bases = roots_since(session, live, &known, seen_wal)?;
    let plans: Vec<Id> = eligible.iter().map(|(id, _)| *id).collect();
    let packs: Vec<PackBlobs> = eligible.into_iter().flat_map(|(_, p)| p.packs).collect();
    let revive = revival(index, live, &packs, new_bases, sizes)?;
    if !revive.is_empty() {
        rep.packs_revived += revive.len() as u64;
        let seg = IndexSegment {
            supersedes: vec![],
            packs: revive,
            sketches: vec![],
        };
        let sid = repo.save(&seg)?;
        index.insert_segment(&sid, &seg.packs, &[])?;
    }
    let mut delete: HashSet<Id> = HashSet::new();
    for p in &packs {
        if !index.pack_indexed(&p.pack)? {
            delete.insert(p.pack);
        }
    }
    rep.packs_deleted += delete.len() as u64;
    rep.bytes_freed += delete.iter().filter_map(|p| sizes.get(p)).sum::<u64>();
    delete_all(repo, delete.iter().map(pack_path).collect())?;
    delete_all(repo, plans.iter().map(|id| format!("pending/{id}")).collect())?;
    rep.plans_swept += plans.len() as u64;
    Ok(())
}

/// The deletion plans no other live lock may still be using (repo-format §10.4); the others'
/// packs and bytes, and who holds them up, go into `rep`.
fn eligible_plans(
    repo: &Repository,
    lock: &LockGuard,
    plan_ids: Vec<Id>,
    sizes: &BTreeMap<Id, u64>,
    rep: &mut PruneReport,
) -> Result<Vec<(Id, DeletionPlan)>> {
    // Locks are listed before the manifests are listed again (repo-format §10.4).
    let me = (crate::util::hostname(), std::process::id(), Some(lock.started()));
    let others: Vec<Holder> = live_locks(repo, &lock.objects())?
        .into_iter()
        .filter(|h| (h.lock.hostname.clone(), h.lock.pid, h.lock.started) != me)
        .collect();
    let mut eligible = Vec::new();
    let mut waiting: Vec<String> = Vec::new();
    load_all(repo, plan_ids, |id, plan: DeletionPlan| {
        let blockers: Vec<&Holder> = others.iter().filter(|h| blocks(&h.lock, plan.created)).collect();
        if blockers.is_empty() {
            eligible.push((id, plan));
        } else {
            for b in blockers {
                let d = b.describe();
                if !waiting.contains(&d) {
                    waiting.push(d);
                }
            }
            rep.pending_packs += plan.packs.len() as u64;
            rep.pending_bytes += plan_bytes(&plan.packs, sizes);
        }
        Ok(())
    })?;
    rep.waiting_for = waiting;
    Ok(eligible)
}

/// Add the roots of snapshots and WAL that appeared since prune's first listing to `live`;
/// returns the bases of deltas indexed since then, which stay too.
fn roots_since(
    session: &Session<'_>,
    live: &LiveSet,
    known: &Known<'_>,
    seen_wal: &mut HashSet<Id>,
) -> Result<Vec<Id>> {
    let (repo, index) = (session.repo(), session.index());
    // Snapshots finished since the first listing add their roots. Listed before the index is
    // synced (a writer's segments precede its manifest), read after, so their content lists
    // and their deltas' bases are found.
    let fresh: Vec<Id> = repo
        .snapshot_ids()?
        .into_iter()
        .filter(|s| !known.snapshots.contains(s))
        .collect();
    let wal_listing = crate::wal::catalog::list(repo)?;
    index.sync(repo)?;
    // Deltas that writers indexed since prune read the index keep their bases too.
    let unread: Vec<Id> = repo
        .list_ids(ObjectKind::Index)?
        .into_iter()
        .filter(|s| !known.segments.contains(s))
        .collect();
    let mut new_bases = Vec::new();
    load_all(repo, unread, |_, seg: IndexSegment| {
        for p in seg.packs {
            new_bases.extend(p.blobs.into_iter().flat_map(|e| e.bases));
        }
        Ok(())
    })?;
    for sid in &fresh {
        add_roots(session, live, sid, &mut Vec::new())?;
    }
    // WAL pushed since the first listing is the newest: kept.
    add_wal_roots(session, live, seen_wal, None, &mut Vec::new(), wal_listing)?;
    Ok(new_bases)
}

/// Which entries of the condemned `packs` must be indexed again before the rest is deleted:
/// each one a snapshot references (`live`) whose chunk no index segment holds usably, and,
/// for every delta among them and each of `bases` (of deltas indexed since prune read the
/// index), a plain copy of each base that no segment holds, from any condemned pack still in
/// storage (repo-format §10.3 step 4). Only these entries are named, so every delta the
/// revival indexes has its bases indexed too. Packs a segment names are looked at as well: a
/// segment may name only some of a pack's entries.
fn revival(
    index: &IndexCache,
    live: &LiveSet,
    packs: &[PackBlobs],
    bases: Vec<Id>,
    sizes: &BTreeMap<Id, u64>,
) -> Result<Vec<PackBlobs>> {
    let mut r = Revival {
        bases,
        ..Revival::default()
    };
    // Packs a segment names too: a segment may name only some of a pack's entries.
    for p in packs.iter().filter(|p| sizes.contains_key(&p.pack)) {
        for e in &p.blobs {
            if live.contains(&e.id)? && !indexed_usably(index, e)? {
                r.name(p.pack, e);
            }
        }
    }
    while let Some(b) = r.bases.pop() {
        if r.plain.contains(&b) || index.lookup_indexed(&b)?.is_some_and(|l| plain_data(&l)) {
            continue;
        }
        // A plain copy in a condemned pack that still exists (its plan may wait for a later
        // sweep: naming it in a segment keeps it then too).
        match index
            .lookup_planned(&b)?
            .filter(|l| plain_data(l) && sizes.contains_key(&l.pack))
        {
            Some(l) => r.name(l.pack, &entry_at(&b, &l)),
            None => {
                tracing::error!(chunk = %b, "a delta that snapshots need has lost its base chunk: run `dbbackup check`")
            }
        }
    }
    Ok(r.named
        .into_iter()
        .map(|(pack, mut blobs)| {
            blobs.sort_by_key(|e| e.offset);
            PackBlobs { pack, blobs }
        })
        .collect())
}

/// Entries chosen for revival so far, and the bases they still need.
#[derive(Default)]
struct Revival {
    named: BTreeMap<Id, Vec<BlobEntry>>,
    /// Chunks named as plain copies.
    plain: HashSet<Id>,
    /// Bases of named deltas, to be found.
    bases: Vec<Id>,
}

impl Revival {
    fn name(&mut self, pack: Id, e: &BlobEntry) {
        let list = self.named.entry(pack).or_default();
        if list.iter().any(|x| x.offset == e.offset) {
            return;
        }
        list.push(e.clone());
        self.bases.extend(e.bases.iter().copied());
        if e.bases.is_empty() {
            self.plain.insert(e.id);
        }
    }
}

/// Does an index segment hold chunk `e.id` so that it can be read: a plain copy, or a delta
/// whose bases are plainly indexed? A plain copy of a chunk that is only indexed as a delta
/// is revived (the chunk may be a base).
fn indexed_usably(index: &IndexCache, e: &BlobEntry) -> Result<bool> {
    let Some(l) = index.lookup_indexed(&e.id)? else {
        return Ok(false);
    };
    if l.bases.is_empty() {
        return Ok(true);
    }
    if e.bases.is_empty() {
        return Ok(false);
    }
    for b in &l.bases {
        if !index.lookup_indexed(b)?.is_some_and(|x| plain_data(&x)) {
            return Ok(false);
        }
    }
    Ok(true)
}

fn plain_data(l: &BlobLocation) -> bool {
    l.kind == BlobKind::Data && l.bases.is_empty()
}

/// The pack entry of chunk `id` stored at `l`.
pub(super) fn entry_at(id: &Id, l: &BlobLocation) -> BlobEntry {
    BlobEntry {
        id: *id,
        kind: l.kind,
        encoding: l.encoding,
        offset: l.offset,
        length: l.length,
        raw_length: l.raw_length,
        bases: l.bases.clone(),
    }
}

/// Bytes of a plan's packs (their listed size, or what their entries account for).
pub(super) fn plan_bytes(packs: &[PackBlobs], sizes: &BTreeMap<Id, u64>) -> u64 {
    packs
        .iter()
        .map(|p| sizes.get(&p.pack).copied().unwrap_or_else(|| entries_bytes(&p.blobs)))
        .sum()
}
