//! Garbage collection (repo-format §10.3): find the chunks snapshots reference, condemn packs
//! nobody needs and repack mostly-unused ones into a deletion plan and a new index, then sweep
//! plans that no running writer can still depend on. Every step writes new objects before it
//! deletes old ones, so a kill at any instant leaves every snapshot restorable.

mod bases;
pub mod liveset;
mod sweep;
pub(crate) mod write;

use write::{delete_all, Batcher};

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::str::FromStr;

use serde::Serialize;

use crate::delta::Sketch;
use crate::error::{Error, ErrorKind, Result};
use crate::format::index::{IndexSegment, PackBlobs};
use crate::format::pack::BlobEntry;
use crate::format::pending::DeletionPlan;
use crate::format::{BlobKind, Id, ObjectKind};
use crate::progress::Progress;
use crate::repo::index::IndexCache;
use crate::repo::lock::Operation;
use crate::repo::objects::load_all;
use crate::repo::packer::Packer;
use crate::repo::session::Session;
use crate::repo::Repository;
use crate::storage::pack_path;
use liveset::LiveSet;

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
                "--max-unused `{s}`: give a percentage (5%), a size (500M, 2G) or `unlimited`"
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

/// Per-pack tally from the index.
#[derive(Debug, Clone, Copy, Default)]
struct PackStat {
    live_blobs: u32,
    /// Bytes the live blobs' entries take in the pack header (46, or 78 for a delta).
    live_entry_bytes: u64,
    live_bytes: u64,
}

/// What happens to an indexed pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Keep,
    Condemn,
    Repack,
}

/// The index as prune read it.
struct Indexed {
    segments: Vec<Id>,
    /// Ids the segments list as superseded.
    superseded: HashSet<Id>,
    packs: Vec<Id>,
    ord: HashMap<Id, u32>,
    stats: Vec<PackStat>,
    /// Packs more than one segment names.
    multi: HashSet<Id>,
}

/// Run prune in `session` (a [`Operation::Prune`] session).
pub fn prune(session: &Session<'_>, opts: &PruneOptions, progress: &dyn Progress) -> Result<PruneReport> {
    let lock = session.lock_for(Operation::Prune)?;
    let (repo, index) = (session.repo(), session.index());
    let mut rep = PruneReport {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    // 1. Roots: manifests first (listed before the index, whose segments precede them).
    let live = LiveSet::create(&opts.work_dir)?;
    let (primaries, copies) = repo.snapshot_listing()?;
    let mut snaps: Vec<Id> = primaries.union(&copies).copied().collect();
    snaps.sort();
    snaps.retain(|s| !opts.ignore.contains(s));
    // The WAL catalog too is listed before the index is synced (segments precede entries).
    let wal_listing = crate::wal::catalog::list(repo)?;
    index.sync(repo)?;
    progress.start("references", Some(snaps.len() as u64));
    let mut bases = Vec::new();
    for sid in &snaps {
        rep.chunks_referenced += add_roots(session, &live, sid, &mut bases)?;
        progress.advance(1);
    }
    progress.finish();
    rep.snapshots = snaps.len() as u64;
    let seen: HashSet<Id> = snaps.into_iter().collect();
    // WAL: every catalog entry is a root, but those no kept physical snapshot can replay.
    let mut seen_wal: HashSet<Id> = HashSet::new();
    let mut expired: Vec<(String, Id)> = Vec::new();
    let keep = crate::wal::retention::keep_from(&bases);
    rep.chunks_referenced += add_wal_roots(session, &live, &mut seen_wal, keep, &mut expired, wal_listing)?;
    rep.wal_files = (seen_wal.len() - expired.len()) as u64;
    rep.wal_files_expired = expired.len() as u64;
    if !opts.dry_run {
        delete_all(repo, expired.iter().map(|(d, id)| format!("{d}/{id}")).collect())?;
    }

    // 2. The index, claiming each referenced chunk for the first pack holding it.
    let mut ix = read_index(repo, &live)?;
    // The closure below looks bases up in the cache: it must know every segment just read.
    index.sync(repo)?;
    let sizes = repo.pack_sizes()?;
    let plans = repo.list_ids(ObjectKind::Pending)?;
    let mut planned: HashSet<Id> = HashSet::new();
    let (mut planned_bytes, mut planned_packs) = (0u64, 0u64);
    load_all(repo, plans, |_, plan: DeletionPlan| {
        planned_packs += plan.packs.len() as u64;
        planned_bytes += sweep::plan_bytes(&plan.packs, &sizes);
        planned.extend(plan.packs.iter().map(|p| p.pack));
        Ok(())
    })?;
    rep.packs = sizes.len() as u64;
    rep.bytes = sizes.values().sum();
    refuse_missing(index, &live)?;

    // 3. Decide every pack's fate, then keep the bases of every delta that stays indexed.
    let mut fates = decide_fates(&ix, &sizes, opts.max_unused);
    let closure = bases::keep_bases(session, &mut ix, &mut fates, &live, &sizes)?;
    settle_fates(&ix, &mut fates, &sizes)?;
    rep.delta_bases_kept = closure.bases_kept;
    rep.dangling_deltas_dropped = closure.dangling;
    account(&ix, &fates, &sizes, &mut rep);
    let unindexed: Vec<Id> = sizes
        .keys()
        .filter(|p| !ix.ord.contains_key(*p) && !planned.contains(*p))
        .copied()
        .collect();
    rep.unindexed_packs = unindexed.len() as u64;
    rep.unindexed_bytes = unindexed.iter().filter_map(|p| sizes.get(p)).sum();
    let adopted: Vec<PackBlobs> = closure
        .adopted
        .into_iter()
        .map(|(pack, blobs)| PackBlobs { pack, blobs })
        .collect();
    let rewrite = fates.iter().any(|f| *f != Fate::Keep) || !adopted.is_empty();

    if opts.dry_run {
        rep.repack_copied_bytes = fates
            .iter()
            .zip(&ix.stats)
            .filter(|(f, _)| **f == Fate::Repack)
            .map(|(_, s)| s.live_bytes)
            .sum();
        // Plans already waiting: a dry run does not sweep them.
        rep.pending_packs = planned_packs;
        rep.pending_bytes = planned_bytes;
        return Ok(rep);
    }

    // 4. Act: restore lost manifest copies; new packs, the plan, the new index, then drop
    // the old segments. Plans and segments are written in batches as the index is streamed
    // again: memory stays flat.
    rep.manifests_repaired = repo.repair_manifests(&primaries, &copies, &opts.ignore)?;
    let new_packs = repack(repo, &ix, &fates, &live, &mut rep, progress)?;
    if rewrite || !unindexed.is_empty() {
        let mut plan = Batcher::new(repo, ObjectKind::Pending);
        collect_packs(repo, &ix, |o| fates[o] != Fate::Keep, |p| plan.push(p), |_| Ok(()))?;
        for p in &unindexed {
            let size = sizes.get(p).copied().unwrap_or(0);
            let blobs = match crate::repo::pack_reader::read_pack_header(repo, p, size) {
                Ok(b) => b,
                Err(e) if e.kind() == ErrorKind::Corrupt || e.kind() == ErrorKind::NotFound => {
                    // An unreadable pack nobody indexed holds nothing a snapshot can use.
                    tracing::warn!(pack = %p, error = %e, "unindexed pack has no readable header");
                    vec![]
                }
                Err(e) => return Err(e),
            };
            plan.push(PackBlobs { pack: *p, blobs })?;
        }
        plan.finish(vec![])?;
    }
    // Segments this run read or wrote: the sweep looks at the others (written meanwhile).
    let mut read: HashSet<Id> = ix.segments.iter().copied().collect();
    if rewrite {
        let mut segs = Batcher::new(repo, ObjectKind::Index);
        for p in new_packs.into_iter().chain(adopted) {
            segs.push(p)?;
        }
        // Sketches of the chunks that stay are carried over: writers keep finding bases.
        let mut kept_sketches = Vec::new();
        collect_packs(
            repo,
            &ix,
            |o| fates[o] == Fate::Keep,
            |p| segs.push(p),
            |sk| {
                for (id, s) in sk {
                    if live.contains(&id)? {
                        kept_sketches.push((id, s));
                    }
                }
                Ok(())
            },
        )?;
        segs.push_sketches(kept_sketches)?;
        read.extend(segs.finish(ix.segments.clone())?);
        delete_all(repo, ix.segments.iter().map(|s| format!("index/{s}")).collect())?;
        rep.segments_replaced = ix.segments.len() as u64;
    } else {
        // Finish an interrupted prune: segments a present segment supersedes are obsolete.
        let stale: Vec<Id> = ix
            .segments
            .iter()
            .filter(|s| ix.superseded.contains(*s))
            .copied()
            .collect();
        rep.segments_replaced = stale.len() as u64;
        delete_all(repo, stale.iter().map(|s| format!("index/{s}")).collect())?;
    }

    // 5. Sweep the plans no running operation can depend on.
    let known = sweep::Known {
        snapshots: &seen,
        segments: &read,
    };
    sweep::sweep(session, lock, &live, known, &mut seen_wal, &sizes, &mut rep)?;
    rep.temp_files_removed = repo.store().remove_stale_temp_files(crate::repo::lock::STALE_AFTER)?;
    Ok(rep)
}

/// First fates: condemn packs nothing claims, repack the most wasteful partly used packs until
/// the rest is within `max_unused`, keep the others.
fn decide_fates(ix: &Indexed, sizes: &BTreeMap<Id, u64>, max_unused: MaxUnused) -> Vec<Fate> {
    let mut fates = vec![Fate::Keep; ix.packs.len()];
    let mut partly: Vec<(usize, u64, u64)> = Vec::new(); // (ordinal, unused, size)
    let mut used_all = 0u64;
    for (o, (pack, st)) in ix.packs.iter().zip(&ix.stats).enumerate() {
        let Some(&size) = sizes.get(pack) else {
            fates[o] = Fate::Condemn; // missing: settle_fates refuses if it was needed
            continue;
        };
        let used = st.live_bytes + st.live_entry_bytes;
        used_all += used;
        let unused = size.saturating_sub(used + 52);
        if st.live_blobs == 0 {
            fates[o] = Fate::Condemn;
        } else if unused > 0 {
            partly.push((o, unused, size));
        }
    }
    let mut left = partly.iter().map(|p| p.1).sum::<u64>();
    let limit = max_unused.limit(used_all);
    // Most wasteful packs first (by unused fraction), until the rest is within the limit.
    partly.sort_by(|a, b| (b.1 as f64 / b.2 as f64).total_cmp(&(a.1 as f64 / a.2 as f64)));
    for &(o, unused, _) in &partly {
        if left <= limit {
            break;
        }
        fates[o] = Fate::Repack;
        left -= unused;
    }
    fates
}

/// Final fates after the base closure: a pack left without claims is condemned; a pack that
/// holds a claimed chunk but is missing from storage stops the prune; a pack to repack whose
/// every byte is claimed (a pack of bases the closure turned from condemned to repacked, which
/// an earlier prune wrote with just those bases) is kept: copying it would gain nothing, and
/// every prune would copy it again.
fn settle_fates(ix: &Indexed, fates: &mut [Fate], sizes: &BTreeMap<Id, u64>) -> Result<()> {
    for (o, (pack, st)) in ix.packs.iter().zip(&ix.stats).enumerate() {
        let Some(&size) = sizes.get(pack) else {
            if st.live_blobs > 0 {
                return Err(Error::corrupt(
                    pack_path(pack),
                    "missing, yet snapshots need chunks only it holds; prune refuses to run: see `dbbackup check`",
                ));
            }
            fates[o] = Fate::Condemn;
            continue;
        };
        if st.live_blobs == 0 {
            fates[o] = Fate::Condemn;
        } else if fates[o] == Fate::Repack && size <= st.live_bytes + st.live_entry_bytes + 52 {
            fates[o] = Fate::Keep;
        }
    }
    Ok(())
}

/// Fill the report's figures of used, unused and repacked space from the final fates.
fn account(ix: &Indexed, fates: &[Fate], sizes: &BTreeMap<Id, u64>, rep: &mut PruneReport) {
    for (o, (pack, st)) in ix.packs.iter().zip(&ix.stats).enumerate() {
        let Some(&size) = sizes.get(pack) else { continue };
        let used = st.live_bytes + st.live_entry_bytes;
        rep.used_bytes += used;
        rep.unused_bytes += if st.live_blobs == 0 {
            size
        } else {
            size.saturating_sub(used + 52)
        };
        match fates[o] {
            Fate::Condemn => {
                rep.unused_packs += 1;
                rep.unused_packs_bytes += size;
            }
            Fate::Repack => {
                rep.repacked_packs += 1;
                rep.repacked_bytes += size;
            }
            Fate::Keep => {}
        }
    }
}

/// Add the chunks of snapshot `sid` (its content lists and their records) to `live`; a
/// physical snapshot's source goes to `bases`.
fn add_roots(
    session: &Session<'_>,
    live: &LiveSet,
    sid: &Id,
    bases: &mut Vec<crate::format::snapshot::PhysicalSource>,
) -> Result<u64> {
    let repo = session.repo();
    let m = repo.load_manifest(sid).map_err(|e| {
        if e.kind() == ErrorKind::NotFound {
            e
        } else {
            Error::new(
                e.kind(),
                format!("{e}; prune cannot know which chunks this snapshot needs, so it stops without deleting anything (see `dbbackup check`)"),
            )
        }
    });
    let m = match m {
        Ok(m) => m,
        // Removed by `forget` meanwhile: its chunks need not be kept.
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    if let crate::format::snapshot::Source::Physical(p) = &m.source {
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
fn add_entry_roots(session: &Session<'_>, live: &LiveSet, entries: &[crate::format::snapshot::Entry]) -> Result<u64> {
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

/// Read every index segment once, claiming referenced chunks pack by pack.
fn read_index(repo: &Repository, live: &LiveSet) -> Result<Indexed> {
    let segments = repo.list_ids(ObjectKind::Index)?;
    let mut ix = Indexed {
        segments: vec![],
        superseded: HashSet::new(),
        packs: vec![],
        ord: HashMap::new(),
        stats: vec![],
        multi: HashSet::new(),
    };
    load_all(repo, segments, |sid, seg: IndexSegment| {
        ix.segments.push(sid);
        ix.superseded.extend(seg.supersedes.iter().filter(|s| **s != sid));
        for p in seg.packs {
            // A pack named by several segments (an interrupted prune; a revival naming some
            // of its entries) is one pack with the union of their entries.
            let o = match ix.ord.get(&p.pack) {
                Some(&o) => {
                    ix.multi.insert(p.pack);
                    o
                }
                None => {
                    let o = u32::try_from(ix.packs.len()).map_err(|_| Error::general("too many packs"))?;
                    ix.ord.insert(p.pack, o);
                    ix.packs.push(p.pack);
                    ix.stats.push(PackStat::default());
                    o
                }
            };
            let mine = live.claim(o, &p.blobs)?;
            let st = &mut ix.stats[o as usize];
            for (b, m) in p.blobs.iter().zip(mine) {
                if m {
                    st.live_blobs += 1;
                    st.live_entry_bytes += b.encoded_len() as u64;
                    st.live_bytes += u64::from(b.length);
                }
            }
        }
        Ok(())
    })?;
    Ok(ix)
}

/// Stop when a referenced chunk is in no segment and no plan: the repository is damaged and
/// prune must not guess.
fn refuse_missing(index: &IndexCache, live: &LiveSet) -> Result<()> {
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

/// Copy the claimed blobs of every pack marked for repacking into new packs; returns them.
fn repack(
    repo: &Repository,
    ix: &Indexed,
    fates: &[Fate],
    live: &LiveSet,
    rep: &mut PruneReport,
    progress: &dyn Progress,
) -> Result<Vec<PackBlobs>> {
    let todo: Vec<usize> = (0..fates.len()).filter(|&o| fates[o] == Fate::Repack).collect();
    if todo.is_empty() {
        return Ok(vec![]);
    }
    progress.start("repack", Some(rep.repacked_bytes));
    let mut packer = Packer::new(repo.store(), repo.keys(), repo.config().pack_size as usize, true);
    for o in todo {
        let pack = ix.packs[o];
        let bytes = repo.store().read(&pack_path(&pack))?;
        progress.advance(bytes.len() as u64);
        // Nothing is copied from a pack that does not fully verify.
        let entries = crate::repo::pack_reader::open_pack(repo.keys(), &pack, &bytes).map_err(|e| {
            Error::new(
                e.kind(),
                format!("{e}; prune stops before deleting anything: run `dbbackup check --read-data`"),
            )
        })?;
        let ids: Vec<Id> = entries.iter().map(|e| e.id).collect();
        let mine = live.claimed_by(o as u32, &ids)?;
        for (e, m) in entries.iter().zip(mine) {
            if m {
                let s = e.offset as usize;
                let sealed = bytes
                    .get(s..s + e.length as usize)
                    .ok_or_else(|| Error::corrupt(pack_path(&pack), "blob outside the pack"))?;
                packer.add(e.id, e.kind, e.encoding, e.raw_length, e.bases.clone(), sealed)?;
                rep.repack_copied_bytes += u64::from(e.length);
            }
        }
    }
    let mut out = packer.finish()?;
    rep.new_packs = packer.packs_written;
    rep.new_packs_bytes = packer.bytes_written;
    out.sort_by_key(|p| p.pack);
    progress.finish();
    Ok(out)
}

/// Re-read the index segments and pass each pack (with its entries) whose ordinal `pick`
/// selects to `sink`, once, and each segment's sketches to `sketches`. A pack several
/// segments name is passed once, with the union of their entries, after the others.
fn collect_packs(
    repo: &Repository,
    ix: &Indexed,
    pick: impl Fn(usize) -> bool,
    mut sink: impl FnMut(PackBlobs) -> Result<()>,
    mut sketches: impl FnMut(Vec<(Id, Sketch)>) -> Result<()>,
) -> Result<()> {
    let mut merged: BTreeMap<Id, Vec<BlobEntry>> = BTreeMap::new();
    load_all(repo, ix.segments.clone(), |_, seg: IndexSegment| {
        sketches(seg.sketches)?;
        for p in seg.packs {
            let Some(&o) = ix.ord.get(&p.pack) else { continue };
            if !pick(o as usize) {
                continue;
            }
            if !ix.multi.contains(&p.pack) {
                sink(p)?;
                continue;
            }
            let all = merged.entry(p.pack).or_default();
            for b in p.blobs {
                if !all.iter().any(|x| x.offset == b.offset) {
                    all.push(b);
                }
            }
        }
        Ok(())
    })?;
    for (pack, mut blobs) in merged {
        blobs.sort_by_key(|b| b.offset);
        sink(PackBlobs { pack, blobs })?;
    }
    Ok(())
}

/// Bytes a pack's entries account for (for reports when the pack's size is unknown).
fn entries_bytes(blobs: &[BlobEntry]) -> u64 {
    blobs
        .iter()
        .map(|b| u64::from(b.length) + b.encoded_len() as u64)
        .sum::<u64>()
        + 52
}

#[cfg(test)]
mod tests {
    use super::*;

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
