//! Repository verification: structure (config, keys, index segments, packs present, every
//! snapshot's chunks indexed) and, with `read_data`, every pack downloaded, its name checked
//! against its SHA-256, and every blob authenticated, decompressed and re-hashed.

use std::collections::{BTreeMap, HashSet};

use futures::StreamExt;
use serde::Serialize;

use crate::backend::pack_path;
use crate::blob::open_blob;
use crate::error::{Error, ErrorKind, Result};
use crate::format::index::IndexSegment;
use crate::format::keyfile::KeyFile;
use crate::format::pack::{header_len_from_trailer, open_header, TRAILER_LEN};
use crate::format::{BlobKind, Id, ObjectKind};
use crate::index::{BlobLocation, IndexCache};
use crate::progress::Progress;
use crate::repo::Repository;

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
    /// Unreferenced packs (left by interrupted snapshots; prune removes them).
    pub orphan_packs: Vec<Id>,
    /// Snapshots checked.
    pub snapshots: u64,
    /// Packs in storage.
    pub packs: u64,
    /// Index segments.
    pub index_segments: u64,
    /// Blobs whose bytes were read and verified.
    pub blobs_read: u64,
    /// Bytes downloaded for `read_data`.
    pub bytes_read: u64,
}

/// Verify the repository.
pub fn check(repo: &Repository, index: &IndexCache, read_data: bool, progress: &dyn Progress) -> Result<Report> {
    let mut rep = Report::default();
    let mut damaged_packs: BTreeMap<Id, String> = BTreeMap::new();
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

    // Index segments, read from storage (not the cache).
    let mut indexed_packs: HashSet<Id> = HashSet::new();
    for id in repo.list_ids(ObjectKind::Index)? {
        rep.index_segments += 1;
        match repo
            .load_object(ObjectKind::Index, &id)
            .and_then(|b| IndexSegment::decode(&b).map_err(|e| Error::corrupt(format!("index/{id}"), e)))
        {
            Ok(seg) => indexed_packs.extend(seg.packs.iter().map(|p| p.pack)),
            Err(e) => bad(&mut rep, format!("index/{id}"), &e),
        }
    }

    // Packs in storage against the index.
    let stored: BTreeMap<Id, u64> = repo
        .store()
        .list("data")?
        .into_iter()
        .filter_map(|(n, s)| n.rsplit('/').next().and_then(|x| x.parse().ok()).map(|id| (id, s)))
        .collect();
    rep.packs = stored.len() as u64;
    for p in &indexed_packs {
        if !stored.contains_key(p) {
            damaged_packs.insert(*p, "pack is missing".into());
        }
    }
    rep.orphan_packs = stored.keys().filter(|p| !indexed_packs.contains(p)).copied().collect();

    // Every snapshot's chunks must be indexed.
    let snaps = repo.list_ids(ObjectKind::Snapshot)?;
    let mut missing_chunks: HashSet<Id> = HashSet::new();
    for sid in &snaps {
        rep.snapshots += 1;
        let m = match repo.load_manifest(sid) {
            Ok(m) => m,
            Err(e) => {
                bad(&mut rep, format!("snapshots/{sid}"), &e);
                continue;
            }
        };
        for_each_chunk(repo, index, &m, |id, loc| {
            if loc.is_none() && missing_chunks.insert(*id) {
                rep.errors.push(Problem {
                    object: format!("chunk {id}"),
                    message: "referenced by a snapshot but in no index segment".into(),
                    affects: vec![*sid],
                });
            }
        })
        .unwrap_or_else(|e| bad(&mut rep, format!("snapshots/{sid}"), &e));
    }

    if read_data {
        let total: u64 = stored.values().sum();
        progress.start("check", Some(total));
        let rt = repo.store().runtime().clone();
        let results: Vec<(Id, Result<(u64, u64)>)> = rt.block_on(async {
            futures::stream::iter(stored.iter().map(|(id, size)| {
                let (id, size) = (*id, *size);
                async move {
                    let r = async {
                        let bytes = repo.store().read_async(&pack_path(&id)).await?;
                        let keys = repo.keys().clone();
                        tokio::task::spawn_blocking(move || verify_pack(&keys, &id, &bytes))
                            .await
                            .map_err(|e| Error::general(format!("check task failed: {e}")))?
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
                Ok((blobs, bytes)) => {
                    rep.blobs_read += blobs;
                    rep.bytes_read += bytes;
                }
                Err(e) if e.kind() == ErrorKind::Corrupt || e.kind() == ErrorKind::NotFound => {
                    damaged_packs.insert(id, e.to_string());
                }
                Err(e) => return Err(e),
            }
        }
    }

    if !damaged_packs.is_empty() {
        // Which snapshots need the damaged packs?
        let mut affects: BTreeMap<Id, Vec<Id>> = BTreeMap::new();
        for sid in &snaps {
            if let Ok(m) = repo.load_manifest(sid) {
                let mut hit = HashSet::new();
                let _ = for_each_chunk(repo, index, &m, |_, loc| {
                    if let Some(l) = loc {
                        if damaged_packs.contains_key(&l.pack) {
                            hit.insert(l.pack);
                        }
                    }
                });
                for p in hit {
                    affects.entry(p).or_default().push(*sid);
                }
            }
        }
        for (p, msg) in damaged_packs {
            rep.errors.push(Problem {
                object: pack_path(&p),
                message: msg,
                affects: affects.remove(&p).unwrap_or_default(),
            });
        }
    }
    Ok(rep)
}

/// Visit every chunk of every entry of `m` (content lists are read and verified).
fn for_each_chunk(
    repo: &Repository,
    index: &IndexCache,
    m: &crate::format::snapshot::Manifest,
    mut f: impl FnMut(&Id, Option<BlobLocation>),
) -> Result<()> {
    for e in &m.entries {
        for lid in &e.content {
            let list = repo.store().runtime().block_on(crate::restore::fetch_blob(
                repo,
                index,
                *lid,
                BlobKind::ContentList,
            ))?;
            f(lid, index.lookup(lid)?);
            for rec in list.chunks_exact(36) {
                let id = Id::from_slice(&rec[..32]).unwrap_or_default();
                f(&id, index.lookup(&id)?);
            }
        }
    }
    Ok(())
}

/// Verify a whole pack: name, trailer, header, and every blob. Returns (blobs, bytes).
pub fn verify_pack(keys: &crate::crypto::Keys, id: &Id, bytes: &[u8]) -> Result<(u64, u64)> {
    let object = pack_path(id);
    if Id::of_stored(bytes) != *id {
        return Err(Error::corrupt(&object, "SHA-256 of its bytes does not match its name"));
    }
    let size = bytes.len() as u64;
    let t = bytes
        .len()
        .checked_sub(TRAILER_LEN)
        .ok_or_else(|| Error::corrupt(&object, "too short"))?;
    let hl = header_len_from_trailer(&bytes[t..], size).map_err(|e| Error::corrupt(&object, e))? as usize;
    let h = t - hl;
    let entries = open_header(keys, id, &bytes[h..t], h as u64)?;
    for e in &entries {
        let loc = BlobLocation {
            pack: *id,
            kind: e.kind,
            encoding: e.encoding,
            offset: e.offset,
            length: e.length,
            raw_length: e.raw_length,
        };
        let s = e.offset as usize;
        open_blob(keys, &e.id, &loc, &bytes[s..s + e.length as usize])?;
    }
    Ok((entries.len() as u64, size))
}
