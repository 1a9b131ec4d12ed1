//! The blob reader: one chunk or content list read through the index, authenticated and
//! decoded; a delta rebuilt from its bases, which a bounded [`BaseCache`] shares between
//! deltas in flight. Restore, check, prune, the snapshot writer (bases of new deltas) and
//! the guided chunker read blobs through it.

use std::sync::Arc;

use crate::error::{Error, ErrorKind, Result};
use crate::format::{BlobKind, Id};
use crate::repo::blob::{apply_delta, open_blob_owned, open_delta, open_plain};
use crate::repo::index::{BlobLocation, IndexCache};
use crate::repo::session::Session;
use crate::repo::Repository;

/// Where blob `id` of kind `want` is, checked against what the index may claim.
fn locate(index: &IndexCache, id: &Id, want: BlobKind) -> Result<BlobLocation> {
    let loc = index.lookup(id)?.ok_or_else(|| {
        Error::corrupt(
            format!("chunk {id}"),
            "the repository index has no pack holding it (pack or index segment lost)",
        )
    })?;
    if loc.kind != want {
        return Err(Error::corrupt(format!("chunk {id}"), "blob has an unexpected kind"));
    }
    if loc.length as usize > crate::format::pack::MAX_CHUNK as usize + crate::crypto::OVERHEAD + 1024 {
        return Err(Error::corrupt(
            format!("chunk {id}"),
            "indexed blob length exceeds the maximum chunk size",
        ));
    }
    Ok(loc)
}

/// Read the sealed bytes of blob `id` at `loc` and hand them to `open` on a blocking thread.
async fn with_sealed<T: Send + 'static>(
    repo: &Repository,
    id: Id,
    loc: BlobLocation,
    open: impl FnOnce(Vec<u8>) -> Result<T> + Send + 'static,
) -> Result<T> {
    let path = crate::storage::pack_path(&loc.pack);
    let missing = |e: Error| {
        if e.kind() == ErrorKind::NotFound {
            Error::corrupt(format!("pack {path}"), format!("missing (needed for chunk {id})"))
        } else {
            e
        }
    };
    if let Some(root) = repo.store().local_root() {
        // Local repository: one blocking task reads the range with pread(2) straight into the
        // buffer it then decrypts in place — no intermediate buffers.
        let file = root.join(&path);
        return tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::FileExt;
            let mut sealed = vec![0u8; loc.length as usize];
            std::fs::File::open(&file)
                .and_then(|f| f.read_exact_at(&mut sealed, u64::from(loc.offset)))
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::UnexpectedEof => {
                        Error::corrupt(format!("pack {}", file.display()), "truncated")
                    }
                    _ => Error::io(format!("cannot read {}", file.display()), e),
                })?;
            open(sealed)
        })
        .await
        .map_err(|e| Error::general(format!("decode task failed: {e}")))?
        .map_err(missing);
    }
    let sealed = repo
        .store()
        .read_range_async(&path, u64::from(loc.offset), u64::from(loc.length))
        .await
        .map_err(missing)?;
    tokio::task::spawn_blocking(move || open(sealed))
        .await
        .map_err(|e| Error::general(format!("decode task failed: {e}")))?
}

/// Recently used delta bases (verified plaintexts), so that deltas sharing a base (chunks whose
/// boundaries moved span the same stored chunks) read and decompress it once. Bounded in
/// bytes. A base that several deltas in flight need at once is read once: the others wait for
/// that read.
pub struct BaseCache {
    cap: usize,
    inner: std::sync::Mutex<Lru>,
    reading: std::sync::Mutex<std::collections::HashMap<Id, Arc<BaseRead>>>,
    /// Bases read from the repository, and bases asked for (read, cached, or joined).
    reads: std::sync::atomic::AtomicU64,
    uses: std::sync::atomic::AtomicU64,
}

/// A base being read: the first reader fills it, the others wait for it.
type BaseRead = tokio::sync::OnceCell<Arc<Vec<u8>>>;

/// Least recently used first.
#[derive(Default)]
struct Lru {
    bytes: usize,
    entries: std::collections::VecDeque<(Id, Arc<Vec<u8>>)>,
}

impl BaseCache {
    /// A cache holding at most `cap` bytes of plaintext.
    pub fn new(cap: usize) -> Self {
        BaseCache {
            cap,
            inner: std::sync::Mutex::default(),
            reading: std::sync::Mutex::default(),
            reads: Default::default(),
            uses: Default::default(),
        }
    }

    /// How many bases were read from the repository, and how many uses of a base were served
    /// by the cache or by a read already under way.
    pub fn counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let reads = self.reads.load(Relaxed);
        (reads, self.uses.load(Relaxed).saturating_sub(reads))
    }

    /// Log [`BaseCache::counts`] at debug level (`-vv`).
    pub fn log_counts(&self) {
        let (base_reads, base_shared) = self.counts();
        tracing::debug!(
            base_reads,
            base_shared,
            "delta bases read, and uses served without a read"
        );
    }

    fn get(&self, id: &Id) -> Option<Arc<Vec<u8>>> {
        let mut g = self.inner.lock().ok()?;
        let i = g.entries.iter().position(|(k, _)| k == id)?;
        let e = g.entries.remove(i)?;
        let v = e.1.clone();
        g.entries.push_back(e);
        Some(v)
    }

    fn put(&self, id: Id, v: Arc<Vec<u8>>) {
        let Ok(mut g) = self.inner.lock() else { return };
        if v.len() > self.cap || g.entries.iter().any(|(k, _)| *k == id) {
            return;
        }
        g.bytes += v.len();
        g.entries.push_back((id, v));
        while g.bytes > self.cap {
            match g.entries.pop_front() {
                Some((_, old)) => g.bytes -= old.len(),
                None => break,
            }
        }
    }
}

/// Bytes of base plaintext a restore (or a snapshot looking for bases) keeps beyond the bases
/// in use. On daily dumps each delta has its own base (its chunk's earlier version), and the
/// cache served 2–7 of about 256 base uses a day (docs/benchmarks.md, run F); it pays where
/// chunks whose boundaries moved share bases. 2 to 32 MiB ingested and restored at the same
/// speed from a local repository; 4 MiB peaks 14 MiB lower than 16 MiB on a day's ingest.
pub const BASE_CACHE_BYTES: usize = 4 << 20;

/// Read and verify one blob. A delta chunk is rebuilt from its bases, read at the same time
/// as it (repo-format §5.1: bases are plainly stored, never deltas themselves).
pub async fn fetch_blob(session: &Session<'_>, id: Id, want: BlobKind) -> Result<Vec<u8>> {
    fetch_blob_cached(session, id, want, None).await
}

/// [`fetch_blob`], taking delta bases from `cache` and keeping those it reads there.
pub async fn fetch_blob_cached(
    session: &Session<'_>,
    id: Id,
    want: BlobKind,
    cache: Option<&BaseCache>,
) -> Result<Vec<u8>> {
    let (repo, index) = (session.repo(), session.index());
    let loc = locate(index, &id, want)?;
    let keys = repo.keys().clone();
    if loc.bases.is_empty() {
        return with_sealed(repo, id, loc.clone(), move |sealed| {
            open_blob_owned(&keys, &id, &loc, sealed)
        })
        .await;
    }
    let reads = loc.bases.iter().map(|&base| {
        let loc = &loc;
        async move {
            let both = |what: String| {
                format!(
                    "chunk {id} in pack data/{} is a delta against chunk {base}, which {what}",
                    loc.pack
                )
            };
            read_base(session, base, cache)
                .await
                .map_err(|e| Error::new(e.kind(), both(format!("cannot be used: {e}"))))
        }
    });
    let frame = fetch_delta_frame(repo, id, loc.clone());
    let (bases, frame) = futures::join!(futures::future::join_all(reads), frame);
    let bases = bases.into_iter().collect::<Result<Vec<_>>>()?;
    let frame = frame?;
    tokio::task::spawn_blocking(move || {
        let reference = concat_bases(&bases);
        apply_delta(&keys, &id, &loc, &reference, &frame)
    })
    .await
    .map_err(|e| Error::general(format!("decode task failed: {e}")))?
}

/// Read and authenticate the frame of delta chunk `id` at `loc`, without its bases; rebuild
/// the chunk with [`crate::repo::blob::apply_delta`].
pub async fn fetch_delta_frame(repo: &Repository, id: Id, loc: BlobLocation) -> Result<Vec<u8>> {
    let keys = repo.keys().clone();
    let l = loc.clone();
    with_sealed(repo, id, loc, move |sealed| open_delta(&keys, &id, &l, sealed)).await
}

/// Read and authenticate delta base `base` (a plainly stored data chunk), through `cache`.
/// Its use is verified through the delta's own chunk id.
pub async fn fetch_base(session: &Session<'_>, base: Id, cache: &BaseCache) -> Result<Arc<Vec<u8>>> {
    read_base(session, base, Some(cache)).await
}

async fn read_base(session: &Session<'_>, base: Id, cache: Option<&BaseCache>) -> Result<Arc<Vec<u8>>> {
    let Some(c) = cache else {
        return read_base_uncached(session, base).await.map(Arc::new);
    };
    use std::sync::atomic::Ordering::Relaxed;
    c.uses.fetch_add(1, Relaxed);
    if let Some(p) = c.get(&base) {
        return Ok(p);
    }
    // Join the read of this base already under way, or start it.
    let cell = match c.reading.lock() {
        Ok(mut r) => r.entry(base).or_default().clone(),
        Err(_) => Arc::default(),
    };
    let got = cell
        .get_or_try_init(|| async {
            c.reads.fetch_add(1, Relaxed);
            read_base_uncached(session, base).await.map(Arc::new)
        })
        .await
        .cloned();
    if let Ok(p) = &got {
        c.put(base, p.clone());
    }
    // Cached first, then no longer under way: a later reader finds it in one place or the
    // other. A failed read is not remembered; the next reader tries again.
    if let Ok(mut r) = c.reading.lock() {
        if r.get(&base).is_some_and(|x| Arc::ptr_eq(x, &cell)) {
            r.remove(&base);
        }
    }
    got
}

async fn read_base_uncached(session: &Session<'_>, base: Id) -> Result<Vec<u8>> {
    let (repo, index) = (session.repo(), session.index());
    let bloc = locate(index, &base, BlobKind::Data)?;
    if !bloc.bases.is_empty() {
        return Err(Error::corrupt(
            format!("chunk {base}"),
            format!("is itself a delta (in pack data/{}), so it cannot be a base", bloc.pack),
        ));
    }
    let keys = repo.keys().clone();
    let bl = bloc.clone();
    with_sealed(repo, base, bloc, move |sealed| {
        open_plain(&keys, &base, &bl, sealed, false)
    })
    .await
}

/// A delta's reference prefix: its bases' plaintexts in order (borrowed when there is one).
pub fn concat_bases(bases: &[Arc<Vec<u8>>]) -> std::borrow::Cow<'_, [u8]> {
    match bases {
        [one] => std::borrow::Cow::Borrowed(one.as_slice()),
        many => {
            let mut v = Vec::with_capacity(many.iter().map(|b| b.len()).sum());
            for b in many {
                v.extend_from_slice(b);
            }
            std::borrow::Cow::Owned(v)
        }
    }
}

/// Parse a content-list blob into (chunk id, length) records.
pub(crate) fn parse_list(list_id: &Id, b: &[u8]) -> Result<Vec<(Id, u32)>> {
    if !b.len().is_multiple_of(36) {
        return Err(Error::corrupt(
            format!("content list {list_id}"),
            "length is not a multiple of 36",
        ));
    }
    Ok(b.chunks_exact(36)
        .map(|r| {
            let mut id = [0u8; 32];
            id.copy_from_slice(&r[..32]);
            (Id(id), u32::from_le_bytes([r[32], r[33], r[34], r[35]]))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> Id {
        Id([n; 32])
    }

    #[test]
    fn base_cache_keeps_the_most_recently_used_within_its_bytes() {
        let c = BaseCache::new(100);
        for n in 1..=3 {
            c.put(id(n), Arc::new(vec![n; 40]));
        }
        // 120 bytes: the least recently used (1) went.
        assert!(c.get(&id(1)).is_none());
        assert_eq!(c.get(&id(2)).as_deref(), Some(&vec![2; 40]));
        // 2 is now the most recent: 3 goes for 4.
        c.put(id(4), Arc::new(vec![4; 40]));
        assert!(c.get(&id(3)).is_none());
        assert!(c.get(&id(2)).is_some() && c.get(&id(4)).is_some());
        // A base larger than the cache is not kept, and one kept twice is counted once.
        c.put(id(5), Arc::new(vec![5; 101]));
        assert!(c.get(&id(5)).is_none());
        c.put(id(4), Arc::new(vec![4; 40]));
        assert_eq!(c.inner.lock().unwrap().bytes, 80);
    }
}
