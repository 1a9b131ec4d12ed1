//! Taking a snapshot: source streams are chunked, hashed, deduplicated against the index,
//! compressed or delta-encoded and sealed on rayon (delta bases read on tokio, `work`),
//! packed and uploaded; index segments follow their packs and the manifest is written last.
//! Every stage is joined by a bounded queue.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use bytes::Bytes;
use crossbeam_channel::{bounded, unbounded, Receiver};
use sha2::{Digest, Sha256};

use crate::chunking::guide::ParentGuide;
use crate::chunking::{Chunk, Chunker};
use crate::delta::Sketch;
use crate::error::{Error, ErrorKind, Result};
use crate::format::index::{IndexSegment, PackBlobs};
use crate::format::snapshot::{Entry, Manifest, Source, Summary};
use crate::format::{BlobKind, Id, FORMAT_VERSION};
use crate::progress::Progress;
use crate::repo::blob::seal_blob;
use crate::repo::blob_reader::BaseCache;
use crate::repo::index::IndexCache;
use crate::repo::packer::Packer;
use crate::repo::session::Session;
use crate::repo::Repository;
use crate::util::{into_inner_or_fail, lock_or_fail};

mod work;
use work::{lost_reader, NeedBases, Step, Work, WorkCtx};

/// Records per content-list blob (36 bytes each: 2.25 MiB).
const LIST_RECORDS: usize = 65536;
/// Chunks in flight beyond the local figure when delta bases come from a remote store. With a
/// 20 ms round trip, 8 more took a day's ingest from 3.7 to 2.0–2.3 s, 16 more to 2.0–2.2 s
/// (docs/benchmarks.md, run G); each holds a chunk and, once read, its bases.
const REMOTE_AHEAD: usize = 8;
/// Write an index segment once this many blobs sit in durable but unindexed packs.
const SEGMENT_BLOBS: usize = 50_000;
/// With [`SnapshotWriter::with_streams_as_bases`], when a stream ends its packs are indexed so
/// that the next streams (the other databases of `snapshot --all`) can use its chunks as delta
/// bases, which only indexed chunks can be: after waiting for their uploads when it filled at
/// least this many packs (64 MiB at the default pack size), else when at least this many are
/// durable and not yet indexed. At most one segment per 4 packs.
const STREAM_END_PACKS: usize = 4;

/// What to record about a snapshot.
#[derive(Debug, Clone)]
pub struct SnapshotOptions {
    /// Source name.
    pub name: String,
    /// Tags.
    pub tags: Vec<String>,
    /// zstd level; the repository's default when `None`.
    pub compression_level: Option<i32>,
    /// Snapshot time; now when `None`.
    pub time: Option<jiff::Timestamp>,
    /// Host name to record; this host when `None`.
    pub hostname: Option<String>,
    /// Read every new pack back and verify it before the snapshot is committed.
    pub verify: bool,
    /// Store new chunks similar to stored ones as deltas (format version 2 repositories).
    pub deltas: bool,
}

impl SnapshotOptions {
    /// Options with just a name.
    pub fn named(name: &str) -> Self {
        SnapshotOptions {
            name: name.into(),
            tags: vec![],
            compression_level: None,
            time: None,
            hostname: None,
            verify: true,
            deltas: true,
        }
    }
}

/// The newest snapshot of source `name`, to guide the chunking of a new one. Manifests that
/// cannot be read are passed over (`check` reports them): a parent is only an optimisation.
pub fn latest_of(repo: &Repository, name: &str) -> Option<Manifest> {
    let ids = repo
        .snapshot_ids()
        .inspect_err(|e| tracing::warn!(error = %e, "cannot list snapshots; chunking without a parent"))
        .ok()?;
    ids.iter()
        .zip(repo.load_manifests(&ids))
        .filter_map(|(id, m)| {
            m.inspect_err(|e| tracing::warn!(snapshot = %id, error = %e, "passing over a manifest"))
                .ok()
        })
        .filter(|m| m.name == name)
        .max_by(|a, b| a.time.cmp(&b.time))
}

/// Validate a source name or tag.
pub fn check_label(what: &str, s: &str) -> Result<()> {
    if s.is_empty() || s.len() > 255 || s.chars().any(|c| c.is_control()) {
        return Err(Error::usage(format!("{what} `{s}` must be 1-255 printable characters")));
    }
    Ok(())
}

/// What one stream added to the repository (its data chunks; content lists not counted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamCounts {
    /// Plaintext bytes of chunks new to the repository.
    pub bytes_new: u64,
    /// How many chunks were new.
    pub chunks_new: u64,
    /// Bytes those chunks took in packs.
    pub bytes_stored: u64,
    /// How many new chunks were stored as deltas.
    pub chunks_delta: u64,
    /// How many chunks the parent's entry confirmed without a scan for cut points.
    pub chunks_guided: u64,
}

/// Writes one snapshot: add streams (from several threads at once if wanted), then
/// [`SnapshotWriter::finish`].
pub struct SnapshotWriter<'a> {
    session: &'a Session<'a>,
    pending: Mutex<HashSet<Id>>,
    /// Numbers (in the index cache) of the stored packs this snapshot's reused chunks are in.
    reused: Mutex<HashSet<u64>>,
    level: i32,
    deltas: bool,
    /// Delta bases recently read, shared by the workers.
    base_cache: BaseCache,
    shared: Mutex<Shared>,
    entries: Mutex<Vec<Entry>>,
    started: Instant,
    opts: SnapshotOptions,
    /// The entries of the previous snapshot of this source, by path: they guide chunking.
    parent: HashMap<String, Entry>,
    /// Index each stream's packs when it ends ([`SnapshotWriter::with_streams_as_bases`]).
    streams_as_bases: bool,
}

/// State every stream's collector updates.
struct Shared {
    packer: Packer,
    summary: Summary,
    pending_packs: Vec<PackBlobs>,
    /// Sketches of new data chunks, until the segment indexing them is written.
    sketches: HashMap<Id, Sketch>,
}

impl<'a> SnapshotWriter<'a> {
    /// Start a snapshot in `session` (which must be a locked writer's: a snapshot or wal-push
    /// session), deduplicating against its index. Commits only while the session's lock is
    /// provably fresh (repo-format §9): the manifest is not written when a concurrent prune
    /// could have taken this writer for dead.
    pub fn new(session: &'a Session<'a>, opts: SnapshotOptions) -> Result<Self> {
        session.writer_lock()?;
        let repo = session.repo();
        check_label("source name", &opts.name)?;
        for t in &opts.tags {
            check_label("tag", t)?;
        }
        let level = opts.compression_level.unwrap_or(repo.config().compression.level);
        if !(1..=22).contains(&level) {
            return Err(Error::usage("--compression-level must be between 1 and 22"));
        }
        let packer = Packer::new(repo.store(), repo.keys(), repo.config().pack_size as usize, opts.verify);
        Ok(SnapshotWriter {
            session,
            pending: Mutex::default(),
            reused: Mutex::default(),
            level,
            deltas: opts.deltas && repo.config().deltas(),
            base_cache: BaseCache::new(crate::repo::blob_reader::BASE_CACHE_BYTES),
            shared: Mutex::new(Shared {
                packer,
                summary: Summary::default(),
                pending_packs: Vec::new(),
                sketches: HashMap::new(),
            }),
            entries: Mutex::default(),
            started: Instant::now(),
            opts,
            parent: HashMap::new(),
            streams_as_bases: false,
        })
    }

    /// The session this snapshot is written in.
    pub fn session(&self) -> &'a Session<'a> {
        self.session
    }

    /// Let each stream's chunks be delta bases for the streams added after it ends, for
    /// snapshots of several similar streams one after the other (the databases of one
    /// cluster): when a stream that filled `STREAM_END_PACKS` packs or more ends, it waits for
    /// their uploads and indexes them. Not for many streams that seldom resemble each other
    /// (the files of a physical snapshot, the tables of a directory-format dump): each wait
    /// keeps the next stream from overlapping the uploads.
    pub fn with_streams_as_bases(mut self) -> Self {
        self.streams_as_bases = self.deltas;
        self
    }

    /// Chunk each stream along the same entry of `parent` (the previous snapshot of this
    /// source): unchanged chunks are confirmed by their id instead of scanned for cut points.
    /// Deduplication still goes through the index; the cuts are the same as without a parent.
    pub fn with_parent(mut self, parent: Manifest) -> Self {
        self.parent = parent.entries.into_iter().map(|e| (e.path.clone(), e)).collect();
        self
    }

    /// Is `id` already stored or being stored? Marks it pending when not. A stored chunk it
    /// reuses has its packs (a delta's bases' too) recorded, to be found in storage before
    /// the snapshot commits ([`SnapshotWriter::finish_data`]).
    fn claim(index: &IndexCache, pending: &Mutex<HashSet<Id>>, reused: &Mutex<HashSet<u64>>, id: &Id) -> Result<bool> {
        if let Some(packs) = index.usable_where(id)? {
            lock_or_fail(reused, "snapshot state")?.extend(packs);
            return Ok(false);
        }
        Ok(lock_or_fail(pending, "snapshot state")?.insert(*id))
    }

    /// Store blob `plain` of `kind` unless the repository has it (used for content lists).
    fn store_blob(&self, kind: BlobKind, plain: &[u8]) -> Result<Id> {
        let id = self.session.repo().keys().chunk_id(plain);
        if Self::claim(self.session.index(), &self.pending, &self.reused, &id)? {
            let (enc, sealed) = seal_blob(self.session.repo().keys(), kind, &id, plain, self.level)?;
            let mut sh = lock_or_fail(&self.shared, "snapshot state")?;
            sh.summary.bytes_stored += sealed.len() as u64;
            sh.packer.add(id, kind, enc, plain.len() as u32, Vec::new(), &sealed)?;
        }
        Ok(id)
    }

    /// Chunk, deduplicate and store one stream as entry `path`. Several streams may be added
    /// at once from different threads; they share the packer and the rayon pool. On error
    /// nothing is recorded for this stream (already uploaded packs stay unreferenced until
    /// prune).
    pub fn add_stream<R: Read + Send>(&self, path: &str, src: R, progress: &dyn Progress) -> Result<Entry> {
        self.add_stream_counted(path, src, progress).map(|(e, _)| e)
    }

    /// [`SnapshotWriter::add_stream`], also returning what this stream alone added.
    pub fn add_stream_counted<R: Read + Send>(
        &self,
        path: &str,
        src: R,
        progress: &dyn Progress,
    ) -> Result<(Entry, StreamCounts)> {
        check_label("entry path", path)?;
        let keys = self.session.repo().keys().clone();
        let params = self.session.repo().config().chunker;
        let level = self.level;
        // Chunks in flight (being hashed/compressed, or waiting to be collected in order):
        // bounds this stream's memory whatever the input size.
        // Against a remote store, chunks waiting for a delta base hold their slots for a round
        // trip: more slots keep the CPU busy meanwhile (docs/benchmarks.md, run G).
        let remote = self.deltas && self.session.repo().store().local_root().is_none();
        let in_flight = rayon::current_num_threads().max(1) * 2 + 2 + if remote { REMOTE_AHEAD } else { 0 };
        let failed = AtomicBool::new(false);
        let first_err: Mutex<Option<Error>> = Mutex::new(None);
        let fail = |e: Error| {
            failed.store(true, Ordering::SeqCst);
            if let Ok(mut g) = first_err.lock() {
                if g.is_none() {
                    *g = Some(e);
                }
            }
        };
        let (slot_tx, slot_rx) = bounded::<()>(in_flight);
        let (hash_tx, hash_rx) = bounded::<Bytes>(8);
        let (done_tx, done_rx) = unbounded::<Work>();
        let session = self.session;
        let pending = &self.pending;
        let reused = &self.reused;
        let deltas = self.deltas;
        let base_cache = &self.base_cache;
        // The same entry in the parent snapshot guides the chunker past unchanged chunks.
        let guide = self
            .parent
            .get(path)
            .map(|e| ParentGuide::new(session, e.content.clone(), e.chunks));
        let packs_before = lock_or_fail(&self.shared, "snapshot state")?.packer.packs_written;
        let mut sha_out = None;
        let mut bytes_read = 0u64;
        let mut confirmed = 0u64;

        let collected = std::thread::scope(|s| -> Result<Option<(Vec<Id>, u64, StreamCounts)>> {
            // Stage 1: read and cut; each chunk becomes a short rayon task (hash, dedup,
            // compress or delta-encode, seal) so concurrent streams share the pool fairly.
            let failed_ref = &failed;
            let fail_ref = &fail;
            let reader = s.spawn(move || {
                let mut ch = Chunker::new(src, &params, keys.chunker_seed);
                if let Some(g) = guide {
                    ch = ch.guided(keys.clone(), Box::new(g));
                }
                let mut seq = 0u64;
                let ctx = WorkCtx {
                    session,
                    pending,
                    reused,
                    cache: base_cache,
                    level,
                    deltas,
                };
                let report = move |w: Result<Work>, done_tx: &crossbeam_channel::Sender<Work>| {
                    let w = w.unwrap_or_else(|e| {
                        fail_ref(e);
                        Work::Failed
                    });
                    let _ = done_tx.send(w);
                };
                // Chunks similar to stored ones wait for their bases off the rayon threads,
                // which go on with other chunks: the bases are read on tokio, many at once,
                // and each chunk whose bases arrived becomes a rayon task again.
                let (need_tx, need_rx) = tokio::sync::mpsc::unbounded_channel::<NeedBases>();
                rayon::in_place_scope(|rs| {
                    std::thread::scope(|ts| {
                        let done = done_tx.clone();
                        ts.spawn(move || {
                            ctx.read_bases(need_rx, |n, plains| {
                                let done_tx = done.clone();
                                rs.spawn(move |_| report(ctx.finish_delta(n, plains), &done_tx));
                            })
                        });
                        loop {
                            if failed_ref.load(Ordering::Relaxed) {
                                break;
                            }
                            match ch.next_chunk() {
                                Ok(Some(Chunk { data: c, id: known })) => {
                                    if hash_tx.send(c.clone()).is_err() || slot_tx.send(()).is_err() {
                                        break;
                                    }
                                    let (done_tx, need_tx) = (done_tx.clone(), need_tx.clone());
                                    rs.spawn(move |_| match ctx.work(seq, c, known) {
                                        Ok(Step::Done(w)) => report(Ok(w), &done_tx),
                                        Ok(Step::Bases(n)) => {
                                            if let Err(e) = need_tx.send(n) {
                                                report(ctx.finish_delta(e.0, Err(lost_reader())), &done_tx);
                                            }
                                        }
                                        Err(e) => report(Err(e), &done_tx),
                                    });
                                    seq += 1;
                                }
                                Ok(None) => break,
                                Err(e) => {
                                    fail_ref(
                                        Error::new(
                                            ErrorKind::Io,
                                            format!("cannot read the source stream for `{path}`"),
                                        )
                                        .with_source(e),
                                    );
                                    break;
                                }
                            }
                        }
                        // read_bases ends once the chunk tasks have dropped their senders too.
                        drop(need_tx);
                    })
                });
                ch.confirmed()
            });
            // Stage 2: whole-stream SHA-256, in order.
            let sha = s.spawn(move || {
                let mut h = Sha256::new();
                let mut n = 0u64;
                for c in hash_rx {
                    h.update(&c);
                    n += c.len() as u64;
                    progress.advance(c.len() as u64);
                }
                (hex::encode(h.finalize()), n)
            });
            // Stage 3 (this thread): pack new blobs, build the content list in stream order.
            let r = self.collect(done_rx, slot_rx, &failed);
            if r.is_err() {
                failed.store(true, Ordering::SeqCst);
            }
            if let Ok(x) = sha.join() {
                sha_out = Some(x.0);
                bytes_read = x.1;
            }
            confirmed = reader.join().unwrap_or(0);
            r
        });
        if let Some(e) = first_err.into_inner().ok().flatten() {
            return Err(e);
        }
        let (content, chunks, mut counts) = collected?.ok_or_else(|| Error::general("snapshot pipeline stopped"))?;
        counts.chunks_guided = confirmed;
        if self.parent.contains_key(path) {
            tracing::info!(
                entry = path,
                chunks,
                confirmed = counts.chunks_guided,
                "chunked along the parent snapshot"
            );
        }
        let sha256 = sha_out.ok_or_else(|| Error::general("stream hashing failed"))?;
        if self.streams_as_bases {
            // A stream that filled several packs waits for its uploads, so that all of it but
            // the pack being filled can be a base for the next streams.
            let waiter = {
                let sh = lock_or_fail(&self.shared, "snapshot state")?;
                (sh.packer.packs_written - packs_before >= STREAM_END_PACKS as u64).then(|| sh.packer.waiter())
            };
            let waited = waiter.map(|w| w.wait()).is_some();
            self.write_durable_segment(|packs| waited || packs.len() >= STREAM_END_PACKS)?;
        }
        let entry = Entry {
            path: path.to_string(),
            size: bytes_read,
            sha256,
            chunks,
            content,
        };
        {
            let mut sh = lock_or_fail(&self.shared, "snapshot state")?;
            sh.summary.bytes_read += bytes_read;
            sh.summary.chunks_total += chunks;
        }
        let mut entries = lock_or_fail(&self.entries, "snapshot state")?;
        if entries.iter().any(|e| e.path == path) {
            return Err(Error::usage(format!("the snapshot already has an entry `{path}`")));
        }
        entries.push(entry.clone());
        Ok((entry, counts))
    }

    /// May `entry` (of an earlier snapshot) be added as is with
    /// [`SnapshotWriter::add_existing`]? Only when every blob of it (content lists and their
    /// chunks) is usable as deduplication would reuse it (repo-format §10.1, a delta's bases
    /// included); its packs are then checked before this snapshot commits, as reused chunks'
    /// are.
    pub fn reusable(&self, entry: &Entry) -> Result<bool> {
        let rt = self.session.repo().store().runtime().clone();
        let mut packs = Vec::new();
        for lid in &entry.content {
            let Some(p) = self.session.index().usable_where(lid)? else {
                return Ok(false);
            };
            packs.extend(p);
            let b = rt.block_on(crate::repo::blob_reader::fetch_blob(
                self.session,
                *lid,
                BlobKind::ContentList,
            ))?;
            for (id, _) in crate::repo::blob_reader::parse_list(lid, &b)? {
                let Some(p) = self.session.index().usable_where(&id)? else {
                    return Ok(false);
                };
                packs.extend(p);
            }
        }
        lock_or_fail(&self.reused, "snapshot state")?.extend(packs);
        Ok(true)
    }

    /// Record an entry whose chunks are already in the repository (a file unchanged since
    /// the parent snapshot, an archived WAL file) without reading anything. The caller took
    /// it from a verified manifest or catalog entry that its lock keeps from prune.
    pub fn add_existing(&self, entry: Entry) -> Result<()> {
        check_label("entry path", &entry.path)?;
        let mut entries = lock_or_fail(&self.entries, "snapshot state")?;
        if entries.iter().any(|e| e.path == entry.path) {
            return Err(Error::usage(format!(
                "the snapshot already has an entry `{}`",
                entry.path
            )));
        }
        {
            let mut sh = lock_or_fail(&self.shared, "snapshot state")?;
            sh.summary.chunks_total += entry.chunks;
        }
        entries.push(entry);
        Ok(())
    }

    /// Drop entries whose path matches (a stream whose producer failed after it was read).
    /// Their chunks stay stored, unreferenced by this snapshot.
    pub fn discard_entries(&self, matches: impl Fn(&str) -> bool) {
        if let Ok(mut e) = self.entries.lock() {
            e.retain(|x| !matches(&x.path));
        }
    }

    /// Receives finished chunks (each frees an in-flight slot), packs the new ones and builds
    /// the content list in stream order. Returns `None` when a stage failed.
    fn collect(
        &self,
        rx: Receiver<Work>,
        slots: Receiver<()>,
        failed: &AtomicBool,
    ) -> Result<Option<(Vec<Id>, u64, StreamCounts)>> {
        let mut counts = StreamCounts::default();
        let mut reorder: BTreeMap<u64, (Id, u32)> = BTreeMap::new();
        let mut next = 0u64;
        let mut list: Vec<u8> = Vec::with_capacity(LIST_RECORDS * 36);
        let mut content = Vec::new();
        for w in rx {
            let (seq, id, len) = match w {
                Work::Failed => return Ok(None),
                Work::Dup { seq, id, len } => (seq, id, len),
                Work::New { seq, id, len, stored } => {
                    let n = stored.sealed.len() as u64;
                    let mut sh = lock_or_fail(&self.shared, "snapshot state")?;
                    sh.summary.bytes_new += u64::from(len);
                    sh.summary.chunks_new += 1;
                    sh.summary.bytes_stored += n;
                    if !stored.bases.is_empty() {
                        sh.summary.chunks_delta += 1;
                        sh.summary.bytes_delta_saved += stored.saved;
                        counts.chunks_delta += 1;
                    }
                    if let Some(sk) = stored.sketch.filter(|sk| !sk.0.is_empty()) {
                        sh.sketches.insert(id, sk);
                    }
                    sh.packer
                        .add(id, BlobKind::Data, stored.encoding, len, stored.bases, &stored.sealed)?;
                    counts.bytes_new += u64::from(len);
                    counts.chunks_new += 1;
                    counts.bytes_stored += n;
                    (seq, id, len)
                }
            };
            reorder.insert(seq, (id, len));
            while let Some((id, len)) = reorder.remove(&next) {
                // The chunk is collected: its slot goes back to the reader.
                let _ = slots.try_recv();
                list.extend_from_slice(&id.0);
                list.extend_from_slice(&len.to_le_bytes());
                next += 1;
                if list.len() == LIST_RECORDS * 36 {
                    content.push(self.store_blob(BlobKind::ContentList, &list)?);
                    list.clear();
                }
            }
            self.write_durable_segment(|packs| packs.iter().map(|p| p.blobs.len()).sum::<usize>() >= SEGMENT_BLOBS)?;
        }
        if failed.load(Ordering::SeqCst) {
            return Ok(None);
        }
        if !reorder.is_empty() {
            return Err(Error::general("snapshot pipeline lost chunks"));
        }
        if !list.is_empty() {
            content.push(self.store_blob(BlobKind::ContentList, &list)?);
        }
        Ok(Some((content, next, counts)))
    }

    /// Write an index segment naming the durable, not yet indexed packs when `enough` says
    /// they are enough.
    fn write_durable_segment(&self, enough: impl FnOnce(&[PackBlobs]) -> bool) -> Result<()> {
        let mut sh = lock_or_fail(&self.shared, "snapshot state")?;
        // Only packs the uploaders reported durable are indexed here.
        let done = sh.packer.take_done();
        sh.pending_packs.extend(done);
        if sh.pending_packs.is_empty() || !enough(&sh.pending_packs) {
            return Ok(());
        }
        let packs = std::mem::take(&mut sh.pending_packs);
        let sketches = take_sketches(&mut sh.sketches, &packs);
        drop(sh);
        self.write_segment(packs, sketches)
    }

    /// Write one index segment naming `packs`, with the sketches of their new data chunks.
    fn write_segment(&self, packs: Vec<PackBlobs>, sketches: Vec<(Id, Sketch)>) -> Result<()> {
        if packs.is_empty() {
            return Ok(());
        }
        let seg = IndexSegment {
            supersedes: vec![],
            packs,
            sketches,
        };
        let id = self.session.repo().save(&seg)?;
        self.session.index().insert_segment(&id, &seg.packs, &seg.sketches)?;
        if let Ok(mut p) = self.pending.lock() {
            for pb in &seg.packs {
                for b in &pb.blobs {
                    p.remove(&b.id);
                }
            }
        }
        Ok(())
    }

    /// Wait for every pack, write the last index segment, then the manifest (entries sorted
    /// by path). Returns the snapshot id.
    pub fn finish(self, source: Source) -> Result<(Id, Manifest)> {
        let session = self.session;
        let opts = self.opts.clone();
        let (entries, summary) = self.finish_data()?;
        let time = opts.time.unwrap_or_else(jiff::Timestamp::now);
        let m = Manifest {
            version: FORMAT_VERSION,
            time,
            hostname: opts.hostname.clone().unwrap_or_else(crate::util::hostname),
            username: crate::util::username(),
            name: opts.name.clone(),
            tags: opts.tags.clone(),
            source,
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            entries,
            summary,
        };
        session.writer_lock()?.ensure_fresh()?;
        let id = session.repo().save_manifest(&m)?;
        Ok((id, m))
    }

    /// Wait for every pack and write the last index segment: every stream added is then
    /// durable and indexed. Returns the entries (sorted by path) and the counters; the caller
    /// records them (a manifest, a WAL catalog entry).
    pub fn finish_data(self) -> Result<(Vec<Entry>, Summary)> {
        self.base_cache.log_counts();
        let (packs, mut summary, sketches) = {
            let mut sh = lock_or_fail(&self.shared, "snapshot state")?;
            let mut packs = std::mem::take(&mut sh.pending_packs);
            packs.extend(sh.packer.finish()?);
            let mut summary = sh.summary.clone();
            summary.packs_written = sh.packer.packs_written;
            let sketches = take_sketches(&mut sh.sketches, &packs);
            (packs, summary, sketches)
        };
        self.write_segment(packs, sketches)?;
        let reused = into_inner_or_fail(self.reused, "snapshot state")?;
        crate::preflight::ensure_reused_present(self.session, reused)?;
        summary.duration_ms = self.started.elapsed().as_millis() as u64;
        let mut entries = into_inner_or_fail(self.entries, "snapshot state")?;
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok((entries, summary))
    }
}

/// Remove and return the sketches of the blobs `packs` hold.
fn take_sketches(sketches: &mut HashMap<Id, Sketch>, packs: &[PackBlobs]) -> Vec<(Id, Sketch)> {
    packs
        .iter()
        .flat_map(|p| &p.blobs)
        .filter_map(|b| sketches.remove(&b.id).map(|s| (b.id, s)))
        .collect()
}
