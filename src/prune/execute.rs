//! Prune's executor (repo-format §10.3 step 4): carry out a [`Plan`]. Used chunks of packs
//! to repack are copied into new packs, a deletion plan names every condemned, repacked or
//! unindexed pack, a new index names what stays, and only then are the old segments deleted;
//! every object is written before anything it replaces goes, so a kill at any instant leaves
//! every snapshot restorable. Plans and segments are written in batches as the index is
//! streamed again: memory stays flat.

use std::collections::{BTreeMap, HashSet};

use super::liveset::LiveSet;
use super::plan::{Fate, Indexed};
use super::write::{delete_all, Batcher};
use super::{Plan, PruneReport};
use crate::delta::Sketch;
use crate::error::{Error, ErrorKind, Hint, Result};
use crate::format::index::{IndexSegment, PackBlobs};
use crate::format::pack::BlobEntry;
use crate::format::{Id, ObjectKind};
use crate::progress::{Progress, Work};
use crate::repo::objects::load_all;
use crate::repo::packer::Packer;
use crate::repo::Repository;
use crate::storage::pack_path;

/// Write what `plan` decided. Returns the index segments this run read or wrote (the sweep
/// looks at the others: written meanwhile).
pub(super) fn execute(
    repo: &Repository,
    plan: &Plan,
    live: &LiveSet,
    rep: &mut PruneReport,
    progress: &dyn Progress,
) -> Result<HashSet<Id>> {
    let ix = &plan.ix;
    let new_packs = repack(repo, ix, &plan.fates, live, rep, progress)?;
    if plan.rewrites_index() || !plan.unindexed.is_empty() {
        write_deletion_plan(repo, plan)?;
    }
    let mut read: HashSet<Id> = ix.segments.iter().copied().collect();
    if plan.rewrites_index() {
        read.extend(write_index(repo, plan, new_packs, live)?);
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
    Ok(read)
}

/// The deletion plan: every pack not kept, with its entries (a reviving sweep needs them),
/// and every pack no segment names, with the entries its header lists.
fn write_deletion_plan(repo: &Repository, plan: &Plan) -> Result<()> {
    let mut batch = Batcher::new(repo, ObjectKind::Pending);
    collect_packs(
        repo,
        &plan.ix,
        |o| plan.fates[o] != Fate::Keep,
        |p| batch.push(p),
        |_| Ok(()),
    )?;
    for p in &plan.unindexed {
        let size = plan.sizes.get(p).copied().unwrap_or(0);
        let blobs = match crate::repo::pack_reader::read_pack_header(repo, p, size) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::Corrupt || e.kind() == ErrorKind::NotFound => {
                // An unreadable pack nobody indexed holds nothing a snapshot can use.
                tracing::warn!(pack = %p, error = %e, "unindexed pack has no readable header");
                vec![]
            }
            Err(e) => return Err(e),
        };
        batch.push(PackBlobs { pack: *p, blobs })?;
    }
    batch.finish(vec![])?;
    Ok(())
}

/// The new index: the repacked packs, adopted bases and every kept pack, with the sketches
/// of the chunks that stay (writers keep finding bases). Returns the segments written.
fn write_index(repo: &Repository, plan: &Plan, new_packs: Vec<PackBlobs>, live: &LiveSet) -> Result<Vec<Id>> {
    let mut segs = Batcher::new(repo, ObjectKind::Index);
    for p in new_packs.into_iter().chain(plan.adopted.iter().cloned()) {
        segs.push(p)?;
    }
    let mut kept_sketches = Vec::new();
    collect_packs(
        repo,
        &plan.ix,
        |o| plan.fates[o] == Fate::Keep,
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
    segs.finish(plan.ix.segments.clone())
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
    let todo: Vec<(u32, Id)> = (ix.packs.iter().zip(fates).enumerate())
        .filter(|(_, (_, f))| **f == Fate::Repack)
        .map(|(o, (p, _))| (o as u32, *p))
        .collect();
    if todo.is_empty() {
        return Ok(vec![]);
    }
    progress.start("repack", Work::Bytes(Some(rep.repacked_bytes)));
    let mut packer = Packer::new(repo.store(), repo.keys(), repo.config().pack_size as usize, true);
    for (o, pack) in todo {
        let bytes = repo.store().read(&pack_path(&pack))?;
        progress.advance(bytes.len() as u64);
        // Nothing is copied from a pack that does not fully verify.
        let entries = crate::repo::pack_reader::open_pack(repo.keys(), &pack, &bytes).map_err(|e| {
            Error::new(e.kind(), format!("{e}; prune stops before deleting anything")).with_hint(Hint::ReadData)
        })?;
        let ids: Vec<Id> = entries.iter().map(|e| e.id).collect();
        let mine = live.claimed_by(o, &ids)?;
        for (e, _) in entries.iter().zip(mine).filter(|(_, m)| *m) {
            let sealed = bytes
                .get(e.offset as usize..)
                .and_then(|b| b.get(..e.length as usize))
                .ok_or_else(|| Error::corrupt(pack_path(&pack), "blob outside the pack"))?;
            packer.add(e.id, e.kind, e.encoding, e.raw_length, e.bases.clone(), sealed)?;
            rep.repack_copied_bytes += u64::from(e.length);
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
