//! One stream through the snapshot pipeline, in three stages joined by bounded queues: the
//! cutter reads and cuts the stream, each chunk a short rayon task (hash, dedup, compress or
//! delta-encode, seal: `work`); the hasher takes the whole stream's SHA-256 in order; the
//! collector packs the new chunks and builds the content list in stream order. At most
//! `in_flight` chunks are between the cutter and the collector, so memory stays flat
//! whatever the stream's size.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use crossbeam_channel::{bounded, unbounded, Receiver, Sender};
use sha2::{Digest, Sha256};

use super::work::{lost_reader, NeedBases, Step, Work, WorkCtx};
use super::{check_label, SnapshotWriter, StreamCounts, LIST_RECORDS, REMOTE_AHEAD, SEGMENT_BLOBS, STREAM_END_PACKS};
use crate::chunking::guide::ParentGuide;
use crate::chunking::{Chunk, Chunker};
use crate::error::{Error, ErrorKind, Result};
use crate::format::snapshot::Entry;
use crate::format::{BlobKind, Id};
use crate::progress::Progress;
use crate::util::lock_or_fail;

/// A stream's first error, and a flag every stage polls to stop early.
#[derive(Default)]
struct Failure {
    failed: AtomicBool,
    first: Mutex<Option<Error>>,
}

impl Failure {
    /// Record `e` (the first one is kept) and stop the stages.
    fn fail(&self, e: Error) {
        self.failed.store(true, Ordering::SeqCst);
        if let Ok(mut g) = self.first.lock() {
            if g.is_none() {
                *g = Some(e);
            }
        }
    }

    fn failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }
}

/// Where the cutter sends each chunk: to the hasher, for an in-flight slot, and (once worked)
/// to the collector.
struct Outlets {
    hash: Sender<Bytes>,
    slots: Sender<()>,
    done: Sender<Work>,
}

/// The content list of a collected stream, its chunk count, and what it added.
type Collected = (Vec<Id>, u64, StreamCounts);

impl SnapshotWriter<'_> {
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
        // Chunks in flight (being hashed/compressed, or waiting to be collected in order):
        // bounds this stream's memory whatever the input size.
        // Against a remote store, chunks waiting for a delta base hold their slots for a round
        // trip: more slots keep the CPU busy meanwhile (docs/benchmarks.md, run G).
        let remote = self.deltas && self.session.repo().store().local_root().is_none();
        let in_flight = rayon::current_num_threads().max(1) * 2 + 2 + if remote { REMOTE_AHEAD } else { 0 };
        let failure = Failure::default();
        let (slot_tx, slot_rx) = bounded::<()>(in_flight);
        let (hash_tx, hash_rx) = bounded::<Bytes>(8);
        let (done_tx, done_rx) = unbounded::<Work>();
        let ctx = WorkCtx {
            session: self.session,
            pending: &self.pending,
            reused: &self.reused,
            cache: &self.base_cache,
            level: self.level,
            deltas: self.deltas,
        };
        // The same entry in the parent snapshot guides the chunker past unchanged chunks.
        let guide = (self.parent.get(path)).map(|e| ParentGuide::new(self.session, e.content.clone(), e.chunks));
        let packs_before = lock_or_fail(&self.shared, "snapshot state")?.packer.packs_written;
        let outlets = Outlets {
            hash: hash_tx,
            slots: slot_tx,
            done: done_tx,
        };
        let (collected, hashed, confirmed) = std::thread::scope(|s| {
            let failure = &failure;
            let cutter = s.spawn(move || cut(src, guide, ctx, outlets, failure, path));
            let hasher = s.spawn(move || hash_in_order(hash_rx, progress));
            let r = self.collect(done_rx, slot_rx, failure);
            if r.is_err() {
                failure.failed.store(true, Ordering::SeqCst);
            }
            (r, hasher.join().ok(), cutter.join().unwrap_or(0))
        });
        if let Some(e) = failure.first.into_inner().ok().flatten() {
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
        let (sha256, size) = hashed.ok_or_else(|| Error::general("stream hashing failed"))?;
        if self.streams_as_bases {
            self.index_stream_end(packs_before)?;
        }
        let entry = Entry {
            path: path.to_string(),
            size,
            sha256,
            chunks,
            content,
        };
        self.record(&entry)?;
        Ok((entry, counts))
    }

    /// A stream that filled several packs waits for its uploads, so that all of it but the
    /// pack being filled can be a base for the next streams.
    fn index_stream_end(&self, packs_before: u64) -> Result<()> {
        let waiter = {
            let sh = lock_or_fail(&self.shared, "snapshot state")?;
            (sh.packer.packs_written - packs_before >= STREAM_END_PACKS as u64).then(|| sh.packer.waiter())
        };
        let waited = waiter.map(|w| w.wait()).is_some();
        self.write_durable_segment(|packs| waited || packs.len() >= STREAM_END_PACKS)
    }

    /// Count `entry` in the summary and add it to the snapshot (one entry per path).
    fn record(&self, entry: &Entry) -> Result<()> {
        {
            let mut sh = lock_or_fail(&self.shared, "snapshot state")?;
            sh.summary.bytes_read += entry.size;
            sh.summary.chunks_total += entry.chunks;
        }
        let mut entries = lock_or_fail(&self.entries, "snapshot state")?;
        if entries.iter().any(|e| e.path == entry.path) {
            return Err(Error::usage(format!(
                "the snapshot already has an entry `{}`",
                entry.path
            )));
        }
        entries.push(entry.clone());
        Ok(())
    }

    /// Stage 3: receives finished chunks (each frees an in-flight slot), packs the new ones
    /// and builds the content list in stream order. Returns `None` when a stage failed.
    fn collect(&self, rx: Receiver<Work>, slots: Receiver<()>, failure: &Failure) -> Result<Option<Collected>> {
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
        if failure.failed() {
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
}

/// Stage 1: read and cut; each chunk becomes a short rayon task so concurrent streams share
/// the pool fairly. Chunks similar to stored ones wait for their bases off the rayon threads,
/// which go on with other chunks: the bases are read on tokio, many at once, and each chunk
/// whose bases arrived becomes a rayon task again. Returns how many chunks the parent's entry
/// confirmed.
fn cut<R: Read>(
    src: R,
    guide: Option<ParentGuide<'_>>,
    ctx: WorkCtx<'_>,
    out: Outlets,
    failure: &Failure,
    path: &str,
) -> u64 {
    let keys = ctx.session.repo().keys();
    let mut ch = Chunker::new(src, &ctx.session.repo().config().chunker, keys.chunker_seed);
    if let Some(g) = guide {
        ch = ch.guided(keys.clone(), Box::new(g));
    }
    let report = move |w: Result<Work>, done_tx: &Sender<Work>| {
        let w = w.unwrap_or_else(|e| {
            failure.fail(e);
            Work::Failed
        });
        let _ = done_tx.send(w);
    };
    let (need_tx, need_rx) = tokio::sync::mpsc::unbounded_channel::<NeedBases>();
    let mut seq = 0u64;
    rayon::in_place_scope(|rs| {
        std::thread::scope(|ts| {
            let done = out.done.clone();
            ts.spawn(move || {
                ctx.read_bases(need_rx, |n, plains| {
                    let done_tx = done.clone();
                    rs.spawn(move |_| report(ctx.finish_delta(n, plains), &done_tx));
                })
            });
            while !failure.failed.load(Ordering::Relaxed) {
                match ch.next_chunk() {
                    Ok(Some(Chunk { data: c, id: known })) => {
                        if out.hash.send(c.clone()).is_err() || out.slots.send(()).is_err() {
                            break;
                        }
                        let (done_tx, need_tx) = (out.done.clone(), need_tx.clone());
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
                        failure.fail(
                            Error::new(ErrorKind::Io, format!("cannot read the source stream for `{path}`"))
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
}

/// Stage 2: the whole stream's SHA-256 and length, in order.
fn hash_in_order(rx: Receiver<Bytes>, progress: &dyn Progress) -> (String, u64) {
    let mut h = Sha256::new();
    let mut n = 0u64;
    for c in rx {
        h.update(&c);
        n += c.len() as u64;
        progress.advance(c.len() as u64);
    }
    (hex::encode(h.finalize()), n)
}
