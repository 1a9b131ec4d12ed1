//! Garbage collection (repo-format §10.3): find the chunks snapshots reference, condemn packs
//! nobody needs and repack mostly-unused ones into a deletion plan and a new index, then sweep
//! plans that no running writer can still depend on. Every step writes new objects before it
//! deletes old ones, so a kill at any instant leaves every snapshot restorable.

//!
//! The run is a plan and its execution: [`roots`] fills the reference set, [`plan`] claims
//! each referenced chunk for one pack and decides every pack's fate, [`bases`] keeps the
//! bases of every delta that stays, [`execute`] writes the result, [`sweep`] deletes what
//! older plans condemned once no running operation can need it.

mod bases;
mod execute;
pub mod liveset;
mod plan;
mod roots;
mod sweep;
pub(crate) mod write;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::str::FromStr;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::index::{IndexSegment, PackBlobs};
use crate::format::pending::DeletionPlan;
use crate::format::{Id, ObjectKind};
use crate::progress::Progress;
use crate::repo::lock::Operation;
use crate::repo::objects::load_all;
use crate::repo::session::Session;
use crate::repo::Repository;
use liveset::LiveSet;
use plan::{Fate, Indexed};
use write::delete_all;

/// How much unused space prune tolerates in packs that are still partly used.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaxUnused {
    /// Unused bytes at most this percentage of the repository after prune.
    Percent(f64),
    /// At most this many unused bytes.
    Bytes(u64),
    /// Never repack partly used packs.
    Unlimited,
}

impl FromStr for MaxUnused {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::usage(format!(
                "unused space limit `{s}`: give a percentage (5%), a size (500M, 2G) or `unlimited`"
            ))
        };
        let t = s.trim();
        if t.eq_ignore_ascii_case("unlimited") {
            return Ok(MaxUnused::Unlimited);
        }
        if t.ends_with('%') {
            return match crate::util::parse_percent(t) {
                Some(v) if v < 100.0 => Ok(MaxUnused::Percent(v)),
                _ => Err(bad()),
            };
        }
        crate::util::parse_size(t).map(MaxUnused::Bytes).ok_or_else(bad)
    }
}

impl MaxUnused {
    /// Unused bytes tolerated when `used` bytes are in use.
    fn limit(self, used: u64) -> u64 {
        match self {
            MaxUnused::Percent(p) => (p / (100.0 - p) * used as f64) as u64,
            MaxUnused::Bytes(b) => b,
            MaxUnused::Unlimited => u64::MAX,
        }
    }
}

/// Options of a prune run.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// Repack threshold.
    pub max_unused: MaxUnused,
    /// Report what would happen; change nothing.
    pub dry_run: bool,
    /// Directory for temporary files (the reference set); leftovers of killed runs in it
    /// are removed.
    pub work_dir: PathBuf,
    /// Snapshots to treat as already removed (a dry run of a retention policy).
    pub ignore: Vec<Id>,
}

/// What a prune run found and did. Sizes are bytes in storage.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneReport {
    /// Nothing was changed.
    pub dry_run: bool,
    /// Snapshots whose chunks were kept.
    pub snapshots: u64,
    /// WAL files whose chunks were kept.
    pub wal_files: u64,
    /// WAL files removed: older than the start of the oldest kept physical snapshot.
    pub wal_files_expired: u64,
    /// Distinct chunks (data and content lists) they reference.
    pub chunks_referenced: u64,
    /// Packs in storage before the run, and their bytes.
    pub packs: u64,
    /// Bytes of all packs before the run.
    pub bytes: u64,
    /// Bytes of indexed packs that referenced chunks use.
    pub used_bytes: u64,
    /// Bytes of indexed packs that nothing references.
    pub unused_bytes: u64,
    /// Indexed packs nothing references, condemned whole.
    pub unused_packs: u64,
    /// Their bytes.
    pub unused_packs_bytes: u64,
    /// Partly used packs repacked.
    pub repacked_packs: u64,
    /// Their bytes.
    pub repacked_bytes: u64,
    /// Bytes of used chunks copied into new packs.
    pub repack_copied_bytes: u64,
    /// New packs written by repacking.
    pub new_packs: u64,
    /// Their bytes.
    pub new_packs_bytes: u64,
    /// Packs no index segment or plan names (left by interrupted or running writers).
    pub unindexed_packs: u64,
    /// Their bytes.
    pub unindexed_bytes: u64,
    /// Index segments replaced by new ones.
    pub segments_replaced: u64,
    /// Deletion plans swept by this run.
    pub plans_swept: u64,
    /// Packs deleted by this run.
    pub packs_deleted: u64,
    /// Bytes freed by this run.
    pub bytes_freed: u64,
    /// Chunks kept only because deltas that stay indexed need them as bases (a delta
    /// outlives the snapshots that used it, and so do its bases: repo-format §10.3).
    pub delta_bases_kept: u64,
    /// Deltas whose bases no pack holds any more, left out of the new index (a repository
    /// damaged by a lost pack, or by a prune of an earlier version); a snapshot that needs
    /// such a chunk is served by another copy of it, or prune stops.
    pub dangling_deltas_dropped: u64,
    /// Condemned packs a snapshot turned out to need; indexed again instead of deleted.
    pub packs_revived: u64,
    /// Manifests or registry copies written again from the surviving copy (repo-format §8.3).
    pub manifests_repaired: u64,
    /// Temp files of interrupted local writes removed (older than 30 minutes).
    pub temp_files_removed: u64,
    /// Condemned packs left for a later prune (a running operation may still need them).
    pub pending_packs: u64,
    /// Their bytes.
    pub pending_bytes: u64,
    /// The running operations that kept plans from being swept.
    pub waiting_for: Vec<String>,
}

/// What a run decided, before anything is written.
struct Plan {
    /// The index as read, with each pack's claims.
    ix: Indexed,
    /// Each indexed pack's fate, by ordinal.
    fates: Vec<Fate>,
    /// Packs in storage, with their sizes, before the run.
    sizes: BTreeMap<Id, u64>,
    /// Packs in storage no segment and no plan names.
    unindexed: Vec<Id>,
    /// Plain copies of bases that only condemned packs hold, for the new index.
    adopted: Vec<PackBlobs>,
    /// Packs (and their bytes) that earlier plans condemn.
    planned_packs: u64,
    planned_bytes: u64,
}

impl Plan {
    /// Does the index change (a pack condemned or repacked, a base adopted)?
    fn rewrites_index(&self) -> bool {
        self.fates.iter().any(|f| *f != Fate::Keep) || !self.adopted.is_empty()
    }
}

/// Run prune in `session` (a [`Operation::Prune`] session).
pub fn prune(session: &Session<'_>, opts: &PruneOptions, progress: &dyn Progress) -> Result<PruneReport> {
    let lock = session.lock_for(Operation::Prune)?;
    let repo = session.repo();
    let mut rep = PruneReport {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    // 1. Roots.
    let live = LiveSet::create(&opts.work_dir)?;
    let mut roots = roots::gather(session, &live, &opts.ignore, &mut rep, progress)?;
    if !opts.dry_run {
        delete_all(repo, roots.expired.iter().map(|(d, id)| format!("{d}/{id}")).collect())?;
    }
    // 2, 3. Claims, fates, and the bases every delta that stays needs.
    let plan = make_plan(session, &live, opts.max_unused, &mut rep)?;
    if opts.dry_run {
        rep.repack_copied_bytes = (plan.fates.iter().zip(&plan.ix.stats))
            .filter(|(f, _)| **f == Fate::Repack)
            .map(|(_, s)| s.live_bytes)
            .sum();
        // Plans already waiting: a dry run does not sweep them.
        rep.pending_packs = plan.planned_packs;
        rep.pending_bytes = plan.planned_bytes;
        return Ok(rep);
    }
    // 4. Act: restore lost manifest copies, then write the plan's packs, plan and index.
    rep.manifests_repaired = repo.repair_manifests(&roots.primaries, &roots.copies, &opts.ignore)?;
    let read = execute::execute(repo, &plan, &live, &mut rep, progress)?;
    // 5. Sweep the plans no running operation can depend on.
    let known = sweep::Known {
        snapshots: &roots.snapshots,
        segments: &read,
    };
    sweep::sweep(session, lock, &live, known, &mut roots.wal, &plan.sizes, &mut rep)?;
    rep.temp_files_removed = repo.store().remove_stale_temp_files(crate::repo::lock::STALE_AFTER)?;
    Ok(rep)
}

/// The reference set of the repository as it stands: every chunk a snapshot or a WAL file
/// retention keeps references, in a temporary redb file under `work_dir` (for `stats`; no
/// lock, nothing deleted), but the snapshots in `ignore` (whose manifests cannot be read).
/// Syncs the index.
pub fn reference_set(session: &Session<'_>, work_dir: &std::path::Path, ignore: &[Id]) -> Result<LiveSet> {
    let live = LiveSet::create(work_dir)?;
    let mut rep = PruneReport::default();
    roots::gather(session, &live, ignore, &mut rep, &crate::progress::NoProgress)?;
    Ok(live)
}

/// Read the index, claiming each referenced chunk for the first pack holding it, and decide
/// every pack's fate; keep the bases of every delta that stays indexed.
fn make_plan(session: &Session<'_>, live: &LiveSet, max_unused: MaxUnused, rep: &mut PruneReport) -> Result<Plan> {
    let (repo, index) = (session.repo(), session.index());
    let mut ix = read_index(repo, live)?;
    // The closure below looks bases up in the cache: it must know every segment just read.
    index.sync(repo)?;
    let sizes = repo.pack_sizes()?;
    let mut planned: HashSet<Id> = HashSet::new();
    let (mut planned_bytes, mut planned_packs) = (0u64, 0u64);
    load_all(repo, repo.list_ids(ObjectKind::Pending)?, |_, plan: DeletionPlan| {
        planned_packs += plan.packs.len() as u64;
        planned_bytes += sweep::plan_bytes(&plan.packs, &sizes);
        planned.extend(plan.packs.iter().map(|p| p.pack));
        Ok(())
    })?;
    rep.packs = sizes.len() as u64;
    rep.bytes = sizes.values().sum();
    roots::refuse_missing(index, live)?;

    let mut fates = plan::decide_fates(&ix, &sizes, max_unused);
    let closure = bases::keep_bases(session, &mut ix, &mut fates, live, &sizes)?;
    plan::settle_fates(&ix, &mut fates, &sizes)?;
    rep.delta_bases_kept = closure.bases_kept;
    rep.dangling_deltas_dropped = closure.dangling;
    plan::account(&ix, &fates, &sizes, rep);
    let unindexed: Vec<Id> = sizes
        .keys()
        .filter(|p| !ix.ord.contains_key(*p) && !planned.contains(*p))
        .copied()
        .collect();
    rep.unindexed_packs = unindexed.len() as u64;
    rep.unindexed_bytes = unindexed.iter().filter_map(|p| sizes.get(p)).sum();
    let adopted = (closure.adopted.into_iter())
        .map(|(pack, blobs)| PackBlobs { pack, blobs })
        .collect();
    Ok(Plan {
        ix,
        fates,
        sizes,
        unindexed,
        adopted,
        planned_packs,
        planned_bytes,
    })
}

/// Read every index segment once, claiming referenced chunks pack by pack.
fn read_index(repo: &Repository, live: &LiveSet) -> Result<Indexed> {
    let mut ix = Indexed::default();
    load_all(repo, repo.list_ids(ObjectKind::Index)?, |sid, seg: IndexSegment| {
        ix.add_segment(sid, seg, live)
    })?;
    Ok(ix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn max_unused_parses_percentages_sizes_and_unlimited() {
        assert_eq!("5%".parse::<MaxUnused>().unwrap(), MaxUnused::Percent(5.0));
        assert_eq!(" 500M ".parse::<MaxUnused>().unwrap(), MaxUnused::Bytes(500 << 20));
        assert_eq!("0".parse::<MaxUnused>().unwrap(), MaxUnused::Bytes(0));
        assert_eq!("Unlimited".parse::<MaxUnused>().unwrap(), MaxUnused::Unlimited);
        for bad in ["100%", "-1%", "x%", "5 parsecs", "", "1.5G"] {
            let e = bad.parse::<MaxUnused>().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Usage, "{bad}");
        }
    }

    #[test]
    fn max_unused_limit_is_a_share_of_the_repository_after_prune() {
        // 20 % of what remains: 25 unused beside 100 used.
        assert_eq!(MaxUnused::Percent(20.0).limit(100), 25);
        assert_eq!(MaxUnused::Percent(0.0).limit(100), 0);
        assert_eq!(MaxUnused::Bytes(7).limit(100), 7);
        assert_eq!(MaxUnused::Unlimited.limit(0), u64::MAX);
    }
}
