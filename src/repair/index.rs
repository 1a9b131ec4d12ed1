//! `repair index`: a new index built from what storage holds. Packs named by exactly one
//! readable segment keep that segment's entries; every other pack in storage (named by no
//! readable segment, or by several) is indexed from its own authenticated header, except
//! packs a deletion plan condemns (the sweep decides about those). Entries of packs missing
//! from storage are dropped, and so is every delta whose bases the new index does not hold
//! plainly (it could not be rebuilt, and writers must not reuse it). Sketches of readable
//! segments are carried over; the new segments supersede every old one, which are then
//! deleted, with deletion plans that cannot be read.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::path::PathBuf;

use serde::Serialize;

use crate::error::{ErrorKind, Result};
use crate::format::index::{IndexSegment, PackBlobs};
use crate::format::pending::DeletionPlan;
use crate::format::{BlobKind, Id, ObjectKind, RepoObject};
use crate::progress::{Progress, Work};
use crate::prune::write::{delete_all, Batcher};
use crate::repo::index::IndexCache;
use crate::repo::objects::read_objects_in;
use crate::repo::Repository;

/// What `repair index` found and did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IndexRepair {
    /// Nothing was changed.
    pub dry_run: bool,
    /// Index segments read.
    pub segments_read: u64,
    /// Segments that could not be read or authenticated.
    pub segments_damaged: Vec<Id>,
    /// Packs in storage.
    pub packs: u64,
    /// Packs whose entries come from a readable segment.
    pub packs_from_segments: u64,
    /// Packs indexed from their own header.
    pub packs_from_headers: u64,
    /// Packs whose header cannot be read or authenticated: left unindexed (`check
    /// --read-data` names them, prune collects them).
    pub packs_unreadable: Vec<Id>,
    /// Packs segments name that storage does not hold: their entries are dropped.
    pub packs_missing: Vec<Id>,
    /// Packs a deletion plan condemns that no readable segment names: left to the sweep.
    pub packs_condemned: u64,
    /// Delta entries left out because the new index holds no plain copy of a base.
    pub dangling_deltas_dropped: u64,
    /// Deletion plans that cannot be read, deleted (their packs are indexed from headers).
    pub plans_damaged: Vec<Id>,
    /// Chunks the new index names.
    pub chunks: u64,
    /// Index segments written.
    pub segments_written: u64,
}

/// Options of `repair index`.
#[derive(Debug, Clone)]
pub struct IndexRepairOptions {
    /// Report what would be done; change nothing.
    pub dry_run: bool,
    /// Scratch directory (a temporary index is built there).
    pub work_dir: PathBuf,
}

/// Where a pack's entries come from.
enum Source {
    /// The one readable segment naming it.
    Segment,
    /// Its header (read once, kept until written).
    Header(Vec<crate::format::pack::BlobEntry>),
}

/// Rebuild the index. The caller holds an exclusive lock: nothing else writes meanwhile.
pub fn repair_index(repo: &Repository, opts: &IndexRepairOptions, progress: &dyn Progress) -> Result<IndexRepair> {
    let mut rep = IndexRepair {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    let sizes = repo.pack_sizes()?;
    rep.packs = sizes.len() as u64;
    let segments = repo.list_ids(ObjectKind::Index)?;
    let (readable, named) = survey_segments(repo, &segments, &sizes, &mut rep)?;
    let planned = read_plans(repo, &mut rep)?;

    // Every pack in storage gets its entries from one place.
    let from = entry_sources(repo, &sizes, &named, &planned, &mut rep, progress)?;
    rep.packs_from_headers = from.values().filter(|s| matches!(s, Source::Header(_))).count() as u64;
    rep.packs_from_segments = from.len() as u64 - rep.packs_from_headers;

    // A scratch index of everything, to know which bases stay plainly stored.
    let scratch = scratch_index(repo, &opts.work_dir, &readable, &from)?;

    let mut segs = (!opts.dry_run).then(|| Batcher::new(repo, ObjectKind::Index));
    let mut sketches = Vec::new();
    each_pack(repo, &readable, &from, |mut p, sk| {
        for (id, s) in sk {
            if scratch.lookup_indexed(&id)?.is_some() {
                sketches.push((id, s));
            }
        }
        let before = p.blobs.len();
        let mut kept = Vec::with_capacity(before);
        for e in p.blobs {
            if e.bases.is_empty() || bases_plain(&scratch, &e.bases)? {
                kept.push(e);
            } else {
                tracing::warn!(chunk = %e.id, pack = %p.pack, "delta whose bases are gone: left out of the index");
            }
        }
        rep.dangling_deltas_dropped += (before - kept.len()) as u64;
        rep.chunks += kept.len() as u64;
        p.blobs = kept;
        match segs.as_mut() {
            Some(s) if !p.blobs.is_empty() => s.push(p),
            _ => Ok(()),
        }
    })?;
    let Some(mut segs) = segs else { return Ok(rep) };
    sketches.sort_by_key(|(id, _)| *id);
    sketches.dedup_by_key(|(id, _)| *id);
    segs.push_sketches(sketches)?;
    // The last new segment supersedes every old one, readable or not.
    rep.segments_written = segs.finish(segments.clone())?.len() as u64;
    delete_all(repo, segments.iter().map(|s| format!("index/{s}")).collect())?;
    delete_all(repo, rep.plans_damaged.iter().map(|p| format!("pending/{p}")).collect())?;
    Ok(rep)
}

/// Where each pack in storage gets its entries: the one readable segment naming it, or its
/// own header (named by none or by several). Condemned and unreadable packs go into `rep`.
fn entry_sources(
    repo: &Repository,
    sizes: &BTreeMap<Id, u64>,
    named: &HashMap<Id, u32>,
    planned: &HashSet<Id>,
    rep: &mut IndexRepair,
    progress: &dyn Progress,
) -> Result<BTreeMap<Id, Source>> {
    let mut from: BTreeMap<Id, Source> = BTreeMap::new();
    progress.start("pack headers", Work::Count(sizes.len() as u64));
    for (pack, &size) in sizes {
        progress.advance(1);
        match named.get(pack) {
            Some(1) => {
                from.insert(*pack, Source::Segment);
            }
            None if planned.contains(pack) => rep.packs_condemned += 1,
            _ => match crate::repo::pack_reader::read_pack_header(repo, pack, size) {
                Ok(entries) => {
                    from.insert(*pack, Source::Header(entries));
                }
                Err(e) if matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::NotFound) => {
                    tracing::warn!(pack = %pack, error = %e, "pack header unreadable: not indexed");
                    rep.packs_unreadable.push(*pack);
                }
                Err(e) => return Err(e),
            },
        }
    }
    progress.finish();
    Ok(from)
}

/// A scratch index in `work_dir` of every entry `from` names.
fn scratch_index(
    repo: &Repository,
    work_dir: &Path,
    readable: &[Id],
    from: &BTreeMap<Id, Source>,
) -> Result<IndexCache> {
    let scratch = IndexCache::scratch(repo, work_dir)?;
    let mut batch: Vec<PackBlobs> = Vec::new();
    let mut n = 0u64;
    let mut flush = |batch: &mut Vec<PackBlobs>| {
        n += 1;
        scratch.insert_segment(&Id::of_stored(&n.to_le_bytes()), &std::mem::take(batch), &[])
    };
    each_pack(repo, readable, from, |p, _| {
        batch.push(p);
        if batch.len() >= 256 {
            flush(&mut batch)?;
        }
        Ok(())
    })?;
    flush(&mut batch)?;

    Ok(scratch)
}

/// Read every segment once: which are readable, and how many readable segments name each
/// pack in storage. Records damaged segments and missing packs in `rep`.
fn survey_segments(
    repo: &Repository,
    segments: &[Id],
    sizes: &BTreeMap<Id, u64>,
    rep: &mut IndexRepair,
) -> Result<(Vec<Id>, HashMap<Id, u32>)> {
    let mut readable = Vec::new();
    let mut named: HashMap<Id, u32> = HashMap::new();
    let mut missing: HashSet<Id> = HashSet::new();
    let objects = segments.iter().map(|s| ("index".to_string(), *s)).collect();
    read_objects_in(repo, ObjectKind::Index, objects, |_, id, r| {
        let seg = match r.and_then(|p| IndexSegment::decode(&format!("index/{id}"), &p)) {
            Ok(seg) => seg,
            Err(e) if matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::NotFound) => {
                tracing::warn!(segment = %id, error = %e, "index segment unreadable: its packs are indexed from their headers");
                rep.segments_damaged.push(id);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        rep.segments_read += 1;
        readable.push(id);
        for p in seg.packs {
            if sizes.contains_key(&p.pack) {
                *named.entry(p.pack).or_default() += 1;
            } else {
                missing.insert(p.pack);
            }
        }
        Ok(())
    })?;
    rep.packs_missing = missing.into_iter().collect();
    rep.packs_missing.sort();
    rep.segments_damaged.sort();
    Ok((readable, named))
}

/// Packs readable deletion plans condemn; damaged plans go to `rep.plans_damaged`.
fn read_plans(repo: &Repository, rep: &mut IndexRepair) -> Result<HashSet<Id>> {
    let mut planned = HashSet::new();
    let objects = repo
        .list_ids(ObjectKind::Pending)?
        .into_iter()
        .map(|p| ("pending".to_string(), p))
        .collect();
    read_objects_in(repo, ObjectKind::Pending, objects, |_, id, r| {
        match r.and_then(|p| DeletionPlan::decode(&format!("pending/{id}"), &p)) {
            Ok(plan) => planned.extend(plan.packs.into_iter().map(|p| p.pack)),
            Err(e) if matches!(e.kind(), ErrorKind::Corrupt) => rep.plans_damaged.push(id),
            Err(e) if matches!(e.kind(), ErrorKind::NotFound) => {}
            Err(e) => return Err(e),
        }
        Ok(())
    })?;
    Ok(planned)
}

/// Pass every pack of `from` with its entries to `f`: those from a segment as that segment
/// names them (with the segment's sketches), the others from their headers.
fn each_pack(
    repo: &Repository,
    readable: &[Id],
    from: &BTreeMap<Id, Source>,
    mut f: impl FnMut(PackBlobs, Vec<(Id, crate::delta::Sketch)>) -> Result<()>,
) -> Result<()> {
    let objects = readable.iter().map(|s| ("index".to_string(), *s)).collect();
    read_objects_in(repo, ObjectKind::Index, objects, |_, id, r| {
        let seg = IndexSegment::decode(&format!("index/{id}"), &r?)?;
        let mut sketches = seg.sketches;
        for p in seg.packs {
            if matches!(from.get(&p.pack), Some(Source::Segment)) {
                f(p, std::mem::take(&mut sketches))?;
            }
        }
        Ok(())
    })?;
    for (pack, s) in from {
        if let Source::Header(entries) = s {
            f(
                PackBlobs {
                    pack: *pack,
                    blobs: entries.clone(),
                },
                vec![],
            )?;
        }
    }
    Ok(())
}

/// Does the index hold every base in `bases` as a plainly stored data chunk?
fn bases_plain(index: &IndexCache, bases: &[Id]) -> Result<bool> {
    for b in bases {
        if !index
            .lookup_indexed(b)?
            .is_some_and(|l| l.kind == BlobKind::Data && l.bases.is_empty())
        {
            return Ok(false);
        }
    }
    Ok(true)
}
