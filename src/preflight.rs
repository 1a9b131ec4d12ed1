//! Never trust the local index cache blindly. Before a restore writes its first byte: every
//! chunk of the snapshot is located through the index (a delta's bases as plainly stored
//! chunks) and every pack it needs is in storage. When the cache disagrees with the repository
//! (a pack it names is gone, a chunk it does not know), it is rebuilt from the repository and
//! the check runs again, so a stale or damaged cache never fails a restore that the repository
//! can serve. Before a snapshot commits, every pack it reused chunks from is found in storage,
//! so a damaged cache never makes it reference a chunk that is gone.

use std::collections::{BTreeMap, HashSet};

use futures::StreamExt;

use crate::error::{Error, ErrorKind, Result};
use crate::format::snapshot::Entry;
use crate::format::{BlobKind, Id};
use crate::repo::blob_reader::{fetch_blob, parse_list};
use crate::repo::session::Session;
use crate::storage::pack_path;

/// Up to this many packs are always asked for one by one.
const ASK_EACH_UP_TO: usize = 256;
/// Packs asked for at once.
const ASK_AT_ONCE: usize = 32;

/// Make sure `entries` can be read: located and present, after at most one rebuild of the
/// cache. The error names the first chunk or pack that is missing from the repository itself.
pub fn ensure_readable(session: &Session<'_>, entries: &[Entry]) -> Result<()> {
    let (repo, index) = (session.repo(), session.index());
    let Some(first) = first_missing(session, entries)? else {
        return Ok(());
    };
    tracing::info!(problem = %first, "the local index cache disagrees with the repository; rebuilding it");
    index.rebuild(repo)?;
    match first_missing(session, entries)? {
        None => Ok(()),
        Some(e) => Err(e),
    }
}

/// The first thing that keeps `entries` from being read with the cache as it is, or `None`.
fn first_missing(session: &Session<'_>, entries: &[Entry]) -> Result<Option<Error>> {
    let packs = match locate(session, entries)? {
        Ok(p) => p,
        Err(problem) => return Ok(Some(problem)),
    };
    let present = present(session, packs.keys().copied().collect())?;
    Ok(missing_pack(&packs, |p| present.contains(p)))
}

/// Where the chunks of `entries` are: each pack needed, with a chunk it holds (for messages);
/// or, as the inner error, the first chunk the index cannot locate usably (a content list
/// that cannot be read, a chunk no segment or plan names, a delta whose base is not plainly
/// stored). Storage errors other than a missing or damaged object are returned as errors.
pub fn locate(session: &Session<'_>, entries: &[Entry]) -> Result<std::result::Result<BTreeMap<Id, Id>, Error>> {
    let (repo, index) = (session.repo(), session.index());
    let mut packs: BTreeMap<Id, Id> = BTreeMap::new();
    let rt = repo.store().runtime().clone();
    for e in entries {
        for lid in &e.content {
            let Some(l) = index.lookup(lid)? else {
                return Ok(Err(unknown(lid)));
            };
            packs.entry(l.pack).or_insert(*lid);
            let list = match rt.block_on(fetch_blob(session, *lid, BlobKind::ContentList)) {
                Ok(b) => b,
                Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Corrupt) => return Ok(Err(e)),
                Err(e) => return Err(e),
            };
            for (id, _) in parse_list(lid, &list)? {
                let Some(l) = index.lookup(&id)? else {
                    return Ok(Err(unknown(&id)));
                };
                packs.entry(l.pack).or_insert(id);
                for b in &l.bases {
                    match index.lookup(b)? {
                        Some(bl) if bl.bases.is_empty() => {
                            packs.entry(bl.pack).or_insert(*b);
                        }
                        _ => {
                            return Ok(Err(Error::corrupt(
                                format!("chunk {id}"),
                                format!("is a delta against chunk {b}, which the repository index does not hold as a plainly stored chunk"),
                            )))
                        }
                    }
                }
            }
        }
    }
    Ok(Ok(packs))
}

/// The first of `packs` (from [`locate`]) that `present` says is not in storage, as an error.
pub fn missing_pack(packs: &BTreeMap<Id, Id>, present: impl Fn(&Id) -> bool) -> Option<Error> {
    packs.iter().find(|(p, _)| !present(p)).map(|(p, chunk)| {
        Error::corrupt(
            format!("pack {}", pack_path(p)),
            format!("missing (needed for chunk {chunk})"),
        )
    })
}

/// Every pack numbered in `reused` (index cache numbers of the packs a writer deduplicated
/// against) must be in storage. When one is not, the cache is rebuilt, and the writer fails
/// without committing: with exit 75 (run it again) when the cache was wrong, 65 when the
/// repository's own index names the missing pack.
pub fn ensure_reused_present(session: &Session<'_>, reused: HashSet<u64>) -> Result<()> {
    let (repo, index) = (session.repo(), session.index());
    let packs = index.pack_ids(reused)?;
    let present = present(session, packs.clone())?;
    let Some(gone) = packs.into_iter().find(|p| !present.contains(p)) else {
        return Ok(());
    };
    index.rebuild(repo)?;
    if index.pack_indexed(&gone)? {
        return Err(Error::corrupt(
            pack_path(&gone),
            "this snapshot reused chunks from it, but it is missing from storage; nothing was committed",
        ));
    }
    Err(Error::new(
        ErrorKind::Temporary,
        format!(
            "the local index cache named {}, which the repository no longer has; the cache was rebuilt and nothing was committed: run the snapshot again",
            pack_path(&gone)
        ),
    ))
}

fn unknown(id: &Id) -> Error {
    Error::corrupt(
        format!("chunk {id}"),
        "the repository index has no pack holding it (pack or index segment lost)",
    )
}

/// Which of `packs` are in storage: asked pack by pack (32 at a time), or found in one
/// listing of `data/` when that takes fewer round trips (a listing page holds 1000 names).
fn present(session: &Session<'_>, packs: Vec<Id>) -> Result<HashSet<Id>> {
    let (repo, index) = (session.repo(), session.index());
    let listing_pages = index.pack_count()? / 1000 + 1;
    let asking_rounds = packs.len() as u64 / ASK_AT_ONCE as u64 + 1;
    if packs.len() > ASK_EACH_UP_TO && listing_pages < asking_rounds {
        return Ok(repo.pack_sizes()?.into_keys().collect());
    }
    let store = repo.store();
    store.runtime().block_on(async {
        let mut s = futures::stream::iter(
            packs
                .into_iter()
                .map(|p| async move { store.exists_async(&pack_path(&p)).await.map(|yes| yes.then_some(p)) }),
        )
        .buffer_unordered(ASK_AT_ONCE);
        let mut out = HashSet::new();
        while let Some(r) = s.next().await {
            out.extend(r?);
        }
        Ok(out)
    })
}
