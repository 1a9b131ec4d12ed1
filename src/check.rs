//! Repository verification: structure (config, keys, index segments, deletion plans, packs
//! present, every snapshot's chunks indexed) and, with `read_data`, every pack (or a sample)
//! downloaded, its name checked against its SHA-256, and every blob authenticated,
//! decompressed and re-hashed.

use std::collections::{BTreeMap, HashSet};

use futures::StreamExt;
use serde::Serialize;

use crate::error::{Error, ErrorKind, Result};
use crate::format::index::IndexSegment;
use crate::format::keyfile::KeyFile;
use crate::format::pack::BlobEntry;
use crate::format::pending::DeletionPlan;
use crate::format::snapshot::Manifest;
use crate::format::{BlobKind, Id, ObjectKind};
use crate::progress::Progress;
use crate::repo::blob::{apply_delta, open_delta};
use crate::repo::index::BlobLocation;
use crate::repo::pack_reader::open_pack;
use crate::repo::session::Session;
use crate::repo::{ManifestCopy, Repository};
use crate::storage::pack_path;

/// One problem found.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// The damaged or missing object, as a repository path.
    pub object: String,
    /// What is wrong.
    pub message: String,
    /// Ids of the snapshots that cannot be fully restored because of it.
    pub affects: Vec<Id>,
}

/// Result of a check.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Damage: the check fails when this is not empty.
    pub errors: Vec<Problem>,
    /// Things that are not damage but that the operator should know (a manifest without its
    /// registry copy: an interrupted snapshot or forget, or a lost copy; prune restores it).
    pub warnings: Vec<Problem>,
    /// Packs no index segment or deletion plan names (left by interrupted snapshots, or being
    /// written by running ones; prune removes them).
    pub orphan_packs: Vec<Id>,
    /// Packs a deletion plan condemns, waiting for a prune to delete them.
    pub pending_packs: u64,
    /// Packs whose bytes were read.
    pub packs_read: u64,
    /// Snapshots checked.
    pub snapshots: u64,
    /// WAL files checked.
    pub wal_files: u64,
    /// Packs in storage.
    pub packs: u64,
    /// Index segments.
    pub index_segments: u64,
    /// Blobs whose bytes were read and verified.
    pub blobs_read: u64,
    /// Bytes downloaded for `read_data`.
    pub bytes_read: u64,
}

/// Read both copies of snapshot `sid`'s manifest (those the listings hold), record what is
/// wrong with them in `rep`, and return the manifest when either copy is intact.
fn check_manifest(repo: &Repository, rep: &mut Report, sid: &Id, primary: bool, copy: bool) -> Option<Manifest> {
    let mut found = None;
    for (place, listed) in [(ManifestCopy::Primary, primary), (ManifestCopy::Registry, copy)] {
        // Not listed, or gone since the listing: missing.
        match listed.then(|| repo.load_manifest_from(sid, place)) {
            Some(Ok(m)) => {
                found.get_or_insert(m);
            }
            None => missing_manifest(rep, sid, place),
            Some(Err(e)) if e.kind() == ErrorKind::NotFound => missing_manifest(rep, sid, place),
            Some(Err(e)) => rep.errors.push(Problem {
                object: place.path(sid),
                message: e.to_string(),
                affects: vec![*sid],
            }),
        }
    }
    found
}

/// A missing manifest is damage (its registry copy stands in); a missing registry copy is a
/// warning (an interrupted commit or forget leaves one).
fn missing_manifest(rep: &mut Report, sid: &Id, place: ManifestCopy) {
    let (message, damage) = match place {
        ManifestCopy::Primary => (
            "snapshot manifest is missing; its registry copy is intact (restore uses it, the next prune writes the manifest again)",
            true,
        ),
        ManifestCopy::Registry => (
            "registry copy of the manifest is missing (a snapshot or forget was interrupted, or the copy was lost); the next prune writes it again",
            false,
        ),
    };
    let p = Problem {
        object: place.path(sid),
        message: message.into(),
        affects: if damage { vec![*sid] } else { vec![] },
    };
    if damage {
        rep.errors.push(p)
    } else {
        rep.warnings.push(p)
    }
}

/// The WAL archive's record against the catalog (damaged, missing, another repository's or
/// cluster's), and physical snapshots of a cluster the archive does not hold.
fn wal_archive_record(
    repo: &Repository,
    rep: &mut Report,
    clusters: &crate::wal::archive::Clusters,
    bases: &[(Id, crate::format::snapshot::PhysicalSource)],
) -> Result<()> {
    let records = crate::wal::archive::read(repo)?;
    for (object, message) in crate::wal::archive::problems(&records, rep.wal_files, clusters) {
        rep.errors.push(Problem {
            object,
            message,
            affects: vec![],
        });
    }
    let Some(archive) = records.intact.first().map(|(_, a)| &a.system_id) else {
        return Ok(());
    };
    for (sid, b) in bases.iter().filter(|(_, b)| &b.system_id != archive) {
        rep.warnings.push(Problem {
            object: format!("snapshots/{sid}"),
            message: format!(
                "physical snapshot of cluster {}, but the WAL archive holds cluster {archive}: point-in-time recovery from it cannot use this archive",
                b.system_id
            ),
            affects: vec![*sid],
        });
    }
    Ok(())
}

/// Report WAL missing between each physical snapshot's start and the newest archived segment
/// of its timeline: point-in-time recovery from that snapshot would stop there. Only once WAL
/// of the snapshot's timeline is archived at all (an archive that is not set up is no damage).
fn wal_gaps(rep: &mut Report, bases: &[(Id, crate::format::snapshot::PhysicalSource)], files: &[String]) {
    use crate::wal::names::{segment_name, segno_of, WalFile};
    for (sid, b) in bases {
        let seg_size = b.wal_segment_size;
        let mut have: Vec<u64> = files
            .iter()
            .filter_map(|f| match WalFile::parse(f) {
                Ok(w @ WalFile::Segment { tli, .. }) if tli == b.timeline => w.segno(seg_size),
                _ => None,
            })
            .collect();
        have.sort_unstable();
        have.dedup();
        let start = segno_of(b.start_lsn, seg_size);
        let Some(&newest) = have.last() else { continue };
        let mut next = start;
        for &n in have.iter().filter(|&&n| n >= start) {
            if n > next {
                rep.errors.push(Problem {
                    object: format!(
                        "WAL {} .. {}",
                        segment_name(b.timeline, next, seg_size),
                        segment_name(b.timeline, n - 1, seg_size)
                    ),
                    message: "missing from the WAL archive: point-in-time recovery from this snapshot stops before it"
                        .into(),
                    affects: vec![*sid],
                });
            }
            next = n + 1;
        }
        if newest < start {
            rep.warnings.push(Problem {
                object: format!("WAL {}", segment_name(b.timeline, start, seg_size)),
                message: "no WAL archived since this physical snapshot started: is archive_command set?".into(),
                affects: vec![*sid],
            });
        }
    }
}

/// Which packs `check` reads in full.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReadData {
    /// None: structure only.
    None,
    /// Every pack.
    All,
    /// Subset `n` of `of` (1-based), by pack id: `of` runs with n = 1..of read everything once.
    Part {
        /// Which part.
        n: u64,
        /// Of how many.
        of: u64,
    },
    /// A random sample of this percentage of the packs.
    Percent(f64),
    /// Random packs until this many bytes were read.
    Bytes(u64),
}

impl std::str::FromStr for ReadData {
    type Err = Error;
    /// Parse `10%`, `1/5` or a size (`500M`, `2G`).
    fn from_str(s: &str) -> Result<ReadData> {
        let bad = || {
            Error::usage(format!(
                "--read-data-subset `{s}`: give n/t (1/5), a percentage (10%) or a size (500M)"
            ))
        };
        let t = s.trim();
        if let Some((n, of)) = t.split_once('/') {
            let (n, of): (u64, u64) = (
                n.trim().parse().map_err(|_| bad())?,
                of.trim().parse().map_err(|_| bad())?,
            );
            if n == 0 || n > of {
                return Err(bad());
            }
            return Ok(ReadData::Part { n, of });
        }
        if t.ends_with('%') {
            return match crate::util::parse_percent(t) {
                Some(v) if v > 0.0 => Ok(ReadData::Percent(v)),
                _ => Err(bad()),
            };
        }
        let n = crate::util::parse_size(t).ok_or_else(bad)?;
        if n == 0 {
            return Err(bad());
        }
        Ok(ReadData::Bytes(n))
    }
}

impl ReadData {
    /// The packs to read among `stored` (id, size).
    fn select(self, stored: &BTreeMap<Id, u64>) -> Vec<(Id, u64)> {
        use rand::seq::SliceRandom;
        let all: Vec<(Id, u64)> = stored.iter().map(|(i, s)| (*i, *s)).collect();
        match self {
            ReadData::None => vec![],
            ReadData::All => all,
            ReadData::Part { n, of } => all
                .into_iter()
                .filter(|(id, _)| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&id.0[..8]);
                    u64::from_be_bytes(b) % of == n - 1
                })
                .collect(),
            ReadData::Percent(p) => {
                let mut v = all;
                v.shuffle(&mut rand::rng());
                let k = ((v.len() as f64) * p / 100.0).ceil() as usize;
                v.truncate(k.min(v.len()));
                v
            }
            ReadData::Bytes(limit) => {
                let mut v = all;
                v.shuffle(&mut rand::rng());
                let mut sum = 0u64;
                v.into_iter()
                    .take_while(|(_, s)| {
                        let take = sum < limit;
                        sum += s;
                        take
                    })
                    .collect()
            }
        }
    }
}

/// Verify the repository.
pub fn check(session: &Session<'_>, read_data: ReadData, progress: &dyn Progress) -> Result<Report> {
    let (repo, index) = (session.repo(), session.index());
    let mut rep = Report::default();
    let mut damaged_packs: BTreeMap<Id, String> = BTreeMap::new();
    // Deltas that could not be rebuilt: message, and whether only a deletion plan names them.
    let mut broken_deltas: BTreeMap<Id, (String, bool)> = BTreeMap::new();
    let bad = |rep: &mut Report, object: String, e: &Error| {
        rep.errors.push(Problem {
            object,
            message: e.to_string(),
            affects: vec![],
        })
    };

    for (name, _) in repo.store().list("keys")? {
        if let Err(e) = repo
            .store()
            .read(&format!("keys/{name}"))
            .and_then(|b| KeyFile::decode(&name, &b))
        {
            bad(&mut rep, format!("keys/{name}"), &e);
        }
    }

    // Index segments, read from storage (not the cache); deltas whose bases are gone.
    let (indexed_packs, dangling) = read_segments(session, &mut rep)?;
    let mut dangling_affects: BTreeMap<Id, Vec<Id>> = dangling.iter().map(|d| (d.delta, vec![])).collect();

    // Deletion plans: their packs are condemned, not orphans; chunks may still live in them.
    let mut planned_packs: HashSet<Id> = HashSet::new();
    for id in repo.list_ids(ObjectKind::Pending)? {
        match repo.load::<DeletionPlan>(&id) {
            Ok(plan) => planned_packs.extend(plan.packs.iter().map(|p| p.pack)),
            Err(e) if e.kind() == ErrorKind::NotFound => {} // swept meanwhile
            Err(e) => bad(&mut rep, format!("pending/{id}"), &e),
        }
    }

    // Packs in storage against the index.
    let stored = repo.pack_sizes()?;
    rep.packs = stored.len() as u64;
    for p in &indexed_packs {
        if !stored.contains_key(p) {
            damaged_packs.insert(*p, "pack is missing".into());
        }
    }
    rep.orphan_packs = stored
        .keys()
        .filter(|p| !indexed_packs.contains(p) && !planned_packs.contains(p))
        .copied()
        .collect();
    rep.pending_packs = planned_packs.iter().filter(|p| !indexed_packs.contains(p)).count() as u64;
    // Condemned packs already deleted: fine unless a snapshot still needs one.
    let gone: HashSet<Id> = planned_packs
        .iter()
        .filter(|p| !indexed_packs.contains(p) && !stored.contains_key(p))
        .copied()
        .collect();

    // Every snapshot's manifest and registry copy must be intact, its chunks indexed.
    let (primaries, copies) = repo.snapshot_listing()?;
    let mut snaps: Vec<Id> = primaries.union(&copies).copied().collect();
    snaps.sort();
    let mut missing_chunks: HashSet<Id> = HashSet::new();
    let mut bases = Vec::new();
    for sid in &snaps {
        rep.snapshots += 1;
        let Some(m) = check_manifest(repo, &mut rep, sid, primaries.contains(sid), copies.contains(sid)) else {
            continue;
        };
        if let crate::format::snapshot::Source::Physical(p) = &m.source {
            bases.push((*sid, (**p).clone()));
        }
        for_each_chunk(session, &m.entries, |id, loc| {
            if let Some(a) = dangling_affects.get_mut(id) {
                if a.last() != Some(sid) {
                    a.push(*sid);
                }
            }
            let message = match loc {
                None => "referenced by a snapshot but in no index segment",
                Some(l) if gone.contains(&l.pack) => "referenced by a snapshot but only held by a deleted pack",
                Some(_) => return,
            };
            if missing_chunks.insert(*id) {
                rep.errors.push(Problem {
                    object: format!("chunk {id}"),
                    message: message.into(),
                    affects: vec![*sid],
                });
            }
        })
        .unwrap_or_else(|e| bad(&mut rep, format!("snapshots/{sid}"), &e));
    }

    // Every WAL catalog entry must be intact, its chunks indexed.
    let wal = crate::wal::catalog::list(repo)?;
    rep.wal_files = wal.len() as u64;
    let mut wal_files: Vec<String> = Vec::new();
    let mut clusters = crate::wal::archive::Clusters::new();
    crate::wal::catalog::read_each(repo, wal, |dir, id, r| {
        let e = match r {
            Ok(e) => e,
            Err(e) if matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::NotFound) => {
                bad(&mut rep, format!("{dir}/{id}"), &e);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let file = e.file.clone();
        wal_files.push(file.clone());
        crate::wal::archive::count(&mut clusters, &e);
        for_each_chunk(session, std::slice::from_ref(&e.data), |cid, loc| {
            let message = match loc {
                None => format!("needed by WAL file {file} but in no index segment"),
                Some(l) if gone.contains(&l.pack) => {
                    format!("needed by WAL file {file} but only held by a deleted pack")
                }
                Some(_) => return,
            };
            if missing_chunks.insert(*cid) {
                rep.errors.push(Problem {
                    object: format!("chunk {cid}"),
                    message,
                    affects: vec![],
                });
            }
        })
        .unwrap_or_else(|er| bad(&mut rep, format!("{dir}/{id} ({file})"), &er));
        Ok(())
    })?;

    wal_archive_record(repo, &mut rep, &clusters, &bases)?;
    wal_gaps(&mut rep, &bases, &wal_files);
    for d in dangling {
        rep.errors.push(Problem {
            object: format!("chunk {}", d.delta),
            message: format!(
                "indexed as a delta in {} against chunk {}, which no index segment holds as a plainly stored chunk: it cannot be rebuilt (prune drops it once no snapshot needs it; `dbbackup repair snapshots` removes the snapshots that do)",
                pack_path(&d.pack),
                d.base
            ),
            affects: dangling_affects.remove(&d.delta).unwrap_or_default(),
        });
    }

    let to_read = read_data.select(&stored);
    if !to_read.is_empty() {
        let total: u64 = to_read.iter().map(|p| p.1).sum();
        progress.start("check", Some(total));
        let rt = repo.store().runtime().clone();
        // (blobs, bytes, deltas that could not be rebuilt: chunk, why, named only by a plan)
        type PackResult = Result<(u64, u64, Vec<(Id, Error, bool)>)>;
        let cache = crate::repo::blob_reader::BaseCache::new(crate::repo::blob_reader::BASE_CACHE_BYTES);
        let cache = &cache;
        let results: Vec<(Id, PackResult)> = rt.block_on(async {
            futures::stream::iter(to_read.iter().map(|(id, size)| {
                let (id, size) = (*id, *size);
                async move {
                    let r = async {
                        let bytes = repo.store().read_async(&pack_path(&id)).await?;
                        let keys = repo.keys().clone();
                        let n = bytes.len() as u64;
                        let (entries, bytes) =
                            tokio::task::spawn_blocking(move || open_pack(&keys, &id, &bytes).map(|e| (e, bytes)))
                                .await
                                .map_err(|e| Error::general(format!("check task failed: {e}")))??;
                        // Every delta is rebuilt from its base and checked against its id.
                        let mut broken = Vec::new();
                        for e in entries.iter().filter(|e| !e.bases.is_empty()) {
                            // Only the copy readers use: a delta no segment and no plan names
                            // here (left in a pack by prune, or in a pack an interrupted
                            // snapshot left) is never read, and its bases may rightly be gone.
                            // A copy only a deletion plan names is garbage unless a snapshot
                            // needs it (an interrupted sweep may have deleted its bases).
                            let here = |l: &BlobLocation| l.pack == id && l.offset == e.offset;
                            let indexed = index.lookup_indexed(&e.id)?;
                            let planned = indexed.is_none() && index.lookup_planned(&e.id)?.is_some_and(|l| here(&l));
                            if !indexed.is_some_and(|l| here(&l)) && !planned {
                                continue;
                            }
                            if let Err(er) = rebuild_delta(session, &id, e, &bytes, cache).await {
                                if !matches!(er.kind(), ErrorKind::Corrupt | ErrorKind::NotFound) {
                                    return Err(er);
                                }
                                broken.push((e.id, er, planned));
                            }
                        }
                        Ok((entries.len() as u64, n, broken))
                    }
                    .await;
                    progress.advance(size);
                    (id, r)
                }
            }))
            .buffer_unordered(4)
            .collect()
            .await
        });
        progress.finish();
        for (id, r) in results {
            match r {
                Ok((blobs, bytes, broken)) => {
                    rep.packs_read += 1;
                    rep.blobs_read += blobs;
                    rep.bytes_read += bytes;
                    for (chunk, e, planned) in broken {
                        let msg = format!("{} (read from {})", e, pack_path(&id));
                        broken_deltas.insert(chunk, (msg, planned));
                    }
                }
                Err(e) if e.kind() == ErrorKind::Corrupt || e.kind() == ErrorKind::NotFound => {
                    damaged_packs.insert(id, e.to_string());
                }
                Err(e) => return Err(e),
            }
        }
    }

    if !damaged_packs.is_empty() || !broken_deltas.is_empty() {
        // Which snapshots need the damaged packs (directly, or for a delta's base) and the
        // deltas that could not be rebuilt?
        let mut affects: BTreeMap<Id, Vec<Id>> = BTreeMap::new();
        let mut delta_affects: BTreeMap<Id, Vec<Id>> = BTreeMap::new();
        for sid in &snaps {
            if let Ok(m) = repo.load_manifest(sid) {
                let mut hit = HashSet::new();
                let mut hit_deltas = HashSet::new();
                let _ = for_each_chunk(session, &m.entries, |id, loc| {
                    if broken_deltas.contains_key(id) {
                        hit_deltas.insert(*id);
                    }
                    if let Some(l) = loc {
                        let base_packs = l
                            .bases
                            .iter()
                            .filter_map(|b| index.lookup(b).ok().flatten())
                            .map(|b| b.pack);
                        for p in std::iter::once(l.pack).chain(base_packs) {
                            if damaged_packs.contains_key(&p) {
                                hit.insert(p);
                            }
                        }
                    }
                });
                for p in hit {
                    affects.entry(p).or_default().push(*sid);
                }
                for d in hit_deltas {
                    delta_affects.entry(d).or_default().push(*sid);
                }
            }
        }
        for (d, (msg, planned)) in broken_deltas {
            let affects = delta_affects.remove(&d).unwrap_or_default();
            if planned && affects.is_empty() {
                continue; // condemned garbage no snapshot needs: the next sweep deletes it
            }
            rep.errors.push(Problem {
                object: format!("chunk {d}"),
                message: msg,
                affects,
            });
        }
        for (p, msg) in damaged_packs {
            let affects = affects.remove(&p).unwrap_or_default();
            let message = if affects.is_empty() {
                format!("{msg}; no snapshot needs it (the next prune takes it out of the index)")
            } else {
                format!(
                    "{msg}; `dbbackup repair snapshots` removes what cannot be restored from the snapshots it affects"
                )
            };
            rep.errors.push(Problem {
                object: pack_path(&p),
                message,
                affects,
            });
        }
    }
    Ok(rep)
}

/// An indexed delta whose base no index segment holds plainly.
struct Dangling {
    delta: Id,
    pack: Id,
    base: Id,
    /// The segment naming the delta.
    segment: Id,
}

/// Read every index segment from storage: the packs they name, and the deltas among their
/// entries whose bases no segment holds as plainly stored data (the cache, synced after the
/// listing, answers for the bases). Segments another segment supersedes are left out of the
/// latter: an interrupted prune leaves them, their content is in the superseding segments and
/// the deletion plan, and the next prune deletes them (in any order, so for a while one may
/// name a delta whose base's segment is gone). A segment that vanishes while being read was
/// replaced by a concurrent prune: the listing is read again.
fn read_segments(session: &Session<'_>, rep: &mut Report) -> Result<(HashSet<Id>, Vec<Dangling>)> {
    let (repo, index) = (session.repo(), session.index());
    let mut attempt = 0;
    'listing: loop {
        attempt += 1;
        let ids = repo.list_ids(ObjectKind::Index)?;
        index.sync(repo)?;
        let mut packs: HashSet<Id> = HashSet::new();
        let mut dangling = Vec::new();
        let mut damaged = Vec::new();
        let mut superseded: HashSet<Id> = HashSet::new();
        for id in &ids {
            let seg = repo.load::<IndexSegment>(id);
            let seg = match seg {
                Ok(seg) => seg,
                Err(e) if e.kind() == ErrorKind::NotFound && attempt < 3 => continue 'listing,
                Err(e) => {
                    damaged.push((format!("index/{id}"), e));
                    continue;
                }
            };
            superseded.extend(seg.supersedes.iter().filter(|s| *s != id));
            for p in seg.packs {
                for e in p.blobs.iter().filter(|e| !e.bases.is_empty()) {
                    for b in &e.bases {
                        let plain = index
                            .lookup_indexed(b)?
                            .is_some_and(|l| l.kind == BlobKind::Data && l.bases.is_empty());
                        if !plain {
                            dangling.push(Dangling {
                                delta: e.id,
                                pack: p.pack,
                                base: *b,
                                segment: *id,
                            });
                        }
                    }
                }
                packs.insert(p.pack);
            }
        }
        dangling.retain(|d| !superseded.contains(&d.segment));
        rep.index_segments = ids.len() as u64;
        for (object, e) in damaged {
            rep.errors.push(Problem {
                object,
                message: e.to_string(),
                affects: vec![],
            });
        }
        return Ok((packs, dangling));
    }
}

/// Visit every chunk of every entry of `m` (content lists are read and verified), and the
/// base of every delta among them.
fn for_each_chunk(
    session: &Session<'_>,
    entries: &[crate::format::snapshot::Entry],
    mut f: impl FnMut(&Id, Option<BlobLocation>),
) -> Result<()> {
    let (repo, index) = (session.repo(), session.index());
    for e in entries {
        for lid in &e.content {
            // The list itself first, so a caller learns where it lives even when it is damaged.
            f(lid, index.lookup(lid)?);
            let list = repo.store().runtime().block_on(crate::repo::blob_reader::fetch_blob(
                session,
                *lid,
                BlobKind::ContentList,
            ))?;
            for rec in list.chunks_exact(36) {
                let id = Id::from_slice(&rec[..32]).unwrap_or_default();
                let loc = index.lookup(&id)?;
                let bases = loc.as_ref().map(|l| l.bases.clone()).unwrap_or_default();
                f(&id, loc);
                // A delta needs its bases as much as the snapshot needs the delta, plainly
                // stored (a base that is only held as a delta cannot be used).
                for b in bases {
                    f(&b, index.lookup(&b)?.filter(|l| l.bases.is_empty()));
                }
            }
        }
    }
    Ok(())
}

/// Rebuild delta entry `e` of pack `pack` (whose bytes are `bytes`) from its bases, read
/// through the index and fully verified, and check it against its chunk id.
async fn rebuild_delta(
    session: &Session<'_>,
    pack: &Id,
    e: &BlobEntry,
    bytes: &[u8],
    cache: &crate::repo::blob_reader::BaseCache,
) -> Result<()> {
    let loc = BlobLocation::of(pack, e);
    let s = e.offset as usize;
    let sealed = bytes
        .get(s..s + e.length as usize)
        .ok_or_else(|| Error::corrupt(pack_path(pack), "blob outside the pack"))?
        .to_vec();
    let mut bases = Vec::with_capacity(e.bases.len());
    for &base in &e.bases {
        let plain = crate::repo::blob_reader::fetch_base(session, base, cache)
            .await
            .map_err(|er| {
                Error::new(
                    er.kind(),
                    format!(
                        "delta chunk {} in {} cannot be rebuilt: its base chunk {base} is damaged or missing: {er}",
                        e.id,
                        pack_path(pack)
                    ),
                )
            })?;
        bases.push(plain);
    }
    let (keys, id) = (session.repo().keys().clone(), e.id);
    tokio::task::spawn_blocking(move || {
        let frame = open_delta(&keys, &id, &loc, sealed)?;
        let reference = crate::repo::blob_reader::concat_bases(&bases);
        apply_delta(&keys, &id, &loc, &reference, &frame).map(|_| ())
    })
    .await
    .map_err(|er| Error::general(format!("check task failed: {er}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_data_subsets_parse() {
        assert_eq!("1/5".parse::<ReadData>().unwrap(), ReadData::Part { n: 1, of: 5 });
        assert_eq!(" 5 / 5 ".parse::<ReadData>().unwrap(), ReadData::Part { n: 5, of: 5 });
        assert_eq!("10%".parse::<ReadData>().unwrap(), ReadData::Percent(10.0));
        assert_eq!("2G".parse::<ReadData>().unwrap(), ReadData::Bytes(2 << 30));
        for bad in ["0/5", "6/5", "1/0", "a/b", "0%", "101%", "0", "", "lots"] {
            let e = bad.parse::<ReadData>().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Usage, "{bad}");
        }
    }
}
