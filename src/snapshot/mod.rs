//! Taking a snapshot: source streams are chunked, hashed, deduplicated against the index,
//! compressed or delta-encoded and sealed on rayon (delta bases read on tokio, `work`),
//! packed and uploaded; index segments follow their packs and the manifest is written last.
//! Each stream goes through the stages of `stream` (cut, hash, collect), joined by bounded
//! queues; this file holds the writer every stream shares, entries reused as they are, the
//! index segments and the commit.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Instant;

use crate::delta::Sketch;
use crate::error::{Error, Result};
use crate::format::index::{IndexSegment, PackBlobs};
use crate::format::snapshot::{Entry, Manifest, Source, Summary};
use crate::format::{BlobKind, Id, FORMAT_VERSION};
use crate::repo::blob::seal_blob;
use crate::repo::blob_reader::BaseCache;
use crate::repo::index::IndexCache;
use crate::repo::packer::Packer;
use crate::repo::session::Session;
use crate::repo::Repository;
use crate::util::{into_inner_or_fail, lock_or_fail};

mod stream;
mod work;

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
            return Err(Error::usage("the compression level must be between 1 and 22"));
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
