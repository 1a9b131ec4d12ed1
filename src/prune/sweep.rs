//! The second phase of deletion (repo-format §10.3 step 4): a deletion plan is swept only
//! when no running operation can still depend on its packs; then each of its packs is kept
//! (indexed again), revived (a snapshot needs it), or deleted, and the plan goes.

use std::collections::{BTreeMap, HashSet};

use crate::backend::pack_path;
use crate::error::{Error, Result};
use crate::format::index::{IndexSegment, PackBlobs};
use crate::format::lock::Lock;
use crate::format::pending::DeletionPlan;
use crate::format::{Id, ObjectKind};
use crate::index::{read_objects, IndexCache};
use crate::lock::{live_locks, LockGuard};
use crate::repo::Repository;

use super::liveset::LiveSet;
use super::{add_roots, add_wal_roots, delete_all, entries_bytes, PruneReport};

/// A writer's lock (`snapshot`, `wal-push`) taken at least this long after a plan was created proves its writer saw
/// the plan: 5 minutes of clock skew plus the 60 s bound on writing the plan, with margin.
pub const AWARE_AFTER: jiff::SignedDuration = jiff::SignedDuration::from_mins(10);

/// Would lock `l` keep a plan created at `created` from being swept?
fn blocks(l: &Lock, created: jiff::Timestamp) -> bool {
    let writer = l.operation == "snapshot" || l.operation == crate::wal::PUSH_LOCK;
    let aware = writer && l.started.is_some_and(|s| s >= created + AWARE_AFTER);
    !aware
}

fn describe(l: &Lock) -> String {
    format!(
        "{} (pid {} on {}, since {})",
        l.operation,
        l.pid,
        l.hostname,
        l.started.unwrap_or(l.time)
    )
}

/// Sweep every eligible plan; account for the others in `rep`.
pub(super) fn sweep(
    repo: &Repository,
    index: &IndexCache,
    lock: &LockGuard,
    live: &LiveSet,
    (seen, seen_wal): (&HashSet<Id>, &mut HashSet<Id>),
    sizes: &BTreeMap<Id, u64>,
    rep: &mut PruneReport,
) -> Result<()> {
    let plan_ids = repo.list_ids(ObjectKind::Pending)?;
    if plan_ids.is_empty() {
        return Ok(());
    }
    // Locks are listed before the manifests are listed again (repo-format §10.4).
    let me = (crate::util::hostname(), std::process::id(), Some(lock.started()));
    let others: Vec<Lock> = live_locks(repo, &lock.objects())?
        .into_iter()
        .map(|(_, l)| l)
        .filter(|l| (l.hostname.clone(), l.pid, l.started) != me)
        .collect();
    let mut eligible = Vec::new();
    let mut waiting: Vec<String> = Vec::new();
    read_objects(repo, ObjectKind::Pending, plan_ids, |id, plain| {
        let plan = DeletionPlan::decode(&plain).map_err(|e| Error::corrupt(format!("pending/{id}"), e))?;
        let blockers: Vec<&Lock> = others.iter().filter(|l| blocks(l, plan.created)).collect();
        if blockers.is_empty() {
            eligible.push((id, plan));
        } else {
            for b in blockers {
                let d = describe(b);
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
    if eligible.is_empty() {
        return Ok(());
    }
    // Snapshots finished since the first listing add their roots. Listed before the index is
    // synced (a writer's segments precede its manifest), read after, so their content lists
    // and their deltas' bases are found.
    let fresh: Vec<Id> = repo.snapshot_ids()?.into_iter().filter(|s| !seen.contains(s)).collect();
    let wal_listing = crate::wal::catalog::list(repo)?;
    index.sync(repo)?;
    for sid in &fresh {
        add_roots(repo, index, live, sid, &mut Vec::new())?;
    }
    // WAL pushed since the first listing is the newest: kept.
    add_wal_roots(repo, index, live, seen_wal, None, &mut Vec::new(), wal_listing)?;
    for (id, plan) in eligible {
        let mut revive: Vec<PackBlobs> = Vec::new();
        let mut delete: Vec<Id> = Vec::new();
        for p in plan.packs {
            if index.pack_indexed(&p.pack)? {
                continue; // indexed again: it stays
            }
            let mut needed = false;
            for b in &p.blobs {
                if live.contains(&b.id)? && index.lookup_indexed(&b.id)?.is_none() {
                    needed = true;
                    break;
                }
            }
            if needed {
                revive.push(p);
            } else {
                delete.push(p.pack);
            }
        }
        if !revive.is_empty() {
            rep.packs_revived += revive.len() as u64;
            let seg = IndexSegment {
                supersedes: vec![],
                packs: revive,
                sketches: vec![],
            };
            let sid = repo.save_object(ObjectKind::Index, &seg.encode())?;
            index.insert_segment(&sid, &seg.packs, &[])?;
        }
        rep.packs_deleted += delete.len() as u64;
        rep.bytes_freed += delete.iter().filter_map(|p| sizes.get(p)).sum::<u64>();
        delete_all(repo, delete.iter().map(pack_path).collect())?;
        repo.store().delete(&format!("pending/{id}"))?;
        rep.plans_swept += 1;
    }
    Ok(())
}

/// Bytes of a plan's packs (their listed size, or what their entries account for).
pub(super) fn plan_bytes(packs: &[PackBlobs], sizes: &BTreeMap<Id, u64>) -> u64 {
    packs
        .iter()
        .map(|p| sizes.get(&p.pack).copied().unwrap_or_else(|| entries_bytes(&p.blobs)))
        .sum()
}
