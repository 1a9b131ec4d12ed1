//! The data phase of `check`: which packs to read (`ReadData`), and reading them: each pack's
//! name checked against its SHA-256, every blob authenticated, and every delta a reader may
//! use rebuilt from its bases and checked against its chunk id.

use std::collections::BTreeMap;

use futures::StreamExt;

use super::Checker;
use crate::error::{Error, ErrorKind, Result};
use crate::format::pack::BlobEntry;
use crate::format::Id;
use crate::progress::Work;
use crate::repo::blob::{apply_delta, open_delta};
use crate::repo::blob_reader::{concat_bases, fetch_base, BaseCache, BASE_CACHE_BYTES};
use crate::repo::index::BlobLocation;
use crate::repo::pack_reader::open_pack;
use crate::repo::session::Session;
use crate::storage::pack_path;

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
                "subset of packs to read `{s}`: give n/t (1/5), a percentage (10%) or a size (500M)"
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

/// What reading one pack found: blobs, bytes, and the deltas that could not be rebuilt
/// (chunk, why, whether only a deletion plan names that copy).
type PackResult = Result<(u64, u64, Vec<(Id, Error, bool)>)>;

impl Checker<'_, '_> {
    /// Read the packs `read_data` selects, four at a time; damage is recorded, other
    /// failures (storage unreachable) end the check.
    pub(super) fn read_packs(&mut self) -> Result<()> {
        let to_read = self.read_data.select(&self.stored);
        if to_read.is_empty() {
            return Ok(());
        }
        let (session, progress) = (self.session, self.progress);
        progress.start("check", Work::Bytes(Some(to_read.iter().map(|p| p.1).sum())));
        let cache = &BaseCache::new(BASE_CACHE_BYTES);
        let results: Vec<(Id, PackResult)> = session.repo().store().runtime().block_on(async {
            futures::stream::iter(to_read.iter().map(|&(id, size)| async move {
                let r = read_pack(session, id, cache).await;
                progress.advance(size);
                (id, r)
            }))
            .buffer_unordered(4)
            .collect()
            .await
        });
        progress.finish();
        for (id, r) in results {
            match r {
                Ok((blobs, bytes, broken)) => {
                    self.rep.packs_read += 1;
                    self.rep.blobs_read += blobs;
                    self.rep.bytes_read += bytes;
                    for (chunk, e, planned) in broken {
                        let msg = format!("{} (read from {})", e, pack_path(&id));
                        self.broken_deltas.insert(chunk, (msg, planned));
                    }
                }
                Err(e) if e.kind() == ErrorKind::Corrupt || e.kind() == ErrorKind::NotFound => {
                    self.damaged_packs.insert(id, e.to_string());
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Download pack `id`, verify it and every blob in it, and rebuild every delta in it that a
/// reader may use.
async fn read_pack(session: &Session<'_>, id: Id, cache: &BaseCache) -> PackResult {
    let (repo, index) = (session.repo(), session.index());
    let bytes = repo.store().read_async(&pack_path(&id)).await?;
    let keys = repo.keys().clone();
    let n = bytes.len() as u64;
    let (entries, bytes) = tokio::task::spawn_blocking(move || open_pack(&keys, &id, &bytes).map(|e| (e, bytes)))
        .await
        .map_err(|e| Error::general(format!("check task failed: {e}")))??;
    let mut broken = Vec::new();
    for e in entries.iter().filter(|e| !e.bases.is_empty()) {
        // Only the copy readers use: a delta no segment and no plan names here (left in a
        // pack by prune, or in a pack an interrupted snapshot left) is never read, and its
        // bases may rightly be gone. A copy only a deletion plan names is garbage unless a
        // snapshot needs it (an interrupted sweep may have deleted its bases).
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

/// Rebuild delta entry `e` of pack `pack` (whose bytes are `bytes`) from its bases, read
/// through the index and fully verified, and check it against its chunk id.
async fn rebuild_delta(session: &Session<'_>, pack: &Id, e: &BlobEntry, bytes: &[u8], cache: &BaseCache) -> Result<()> {
    let loc = BlobLocation::of(pack, e);
    let sealed = bytes
        .get(e.offset as usize..)
        .and_then(|b| b.get(..e.length as usize))
        .ok_or_else(|| Error::corrupt(pack_path(pack), "blob outside the pack"))?
        .to_vec();
    let mut bases = Vec::with_capacity(e.bases.len());
    for &base in &e.bases {
        let plain = fetch_base(session, base, cache).await.map_err(|er| {
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
        apply_delta(&keys, &id, &loc, &concat_bases(&bases), &frame).map(|_| ())
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

    #[test]
    fn read_data_selects_parts_samples_and_budgets() {
        let stored: BTreeMap<Id, u64> = (0u8..40).map(|i| (Id(blake3::hash(&[i]).into()), 10)).collect();
        assert!(ReadData::None.select(&stored).is_empty());
        assert_eq!(ReadData::All.select(&stored).len(), 40);
        // Parts 1..=3 of 3 read every pack exactly once.
        let mut seen: Vec<Id> = (1..=3)
            .flat_map(|n| ReadData::Part { n, of: 3 }.select(&stored))
            .map(|(id, _)| id)
            .collect();
        seen.sort();
        assert_eq!(seen, stored.keys().copied().collect::<Vec<_>>());
        // 10% of 40 packs, rounded up; a byte budget stops at the first pack that reaches it.
        assert_eq!(ReadData::Percent(10.0).select(&stored).len(), 4);
        assert_eq!(ReadData::Percent(0.1).select(&stored).len(), 1);
        assert_eq!(ReadData::Bytes(25).select(&stored).len(), 3);
        assert_eq!(ReadData::Bytes(1 << 40).select(&stored).len(), 40);
    }
}
