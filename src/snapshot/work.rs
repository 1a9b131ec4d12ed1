//! One chunk's way through a snapshot: hashed and looked up; when new, compressed and sealed,
//! or, when similar chunks are stored, its delta bases read on tokio (many at once, while the
//! rayon threads go on with other chunks) and the chunk delta-encoded against them if that is
//! clearly smaller.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::delta::Sketch;
use crate::error::{Error, ErrorKind, Result};
use crate::format::pack::MAX_BASES;
use crate::format::{BlobKind, Encoding, Id};
use crate::repo::blob::{compress_chunk, seal_blob, seal_compressed, seal_delta};
use crate::repo::blob_reader::BaseCache;
use crate::repo::index::{BaseMatch, BlobLocation};
use crate::repo::session::Session;

/// How a new chunk is stored.
pub(super) struct Stored {
    pub(super) encoding: Encoding,
    pub(super) sealed: Vec<u8>,
    /// The base chunks of a delta (empty when stored plainly).
    pub(super) bases: Vec<Id>,
    /// Its sketch (data chunks of format version 2 repositories).
    pub(super) sketch: Option<Sketch>,
    /// Bytes the delta saved against the chunk plainly compressed.
    pub(super) saved: u64,
}

/// A new chunk similar to stored ones, waiting for its delta bases to be read.
pub(super) struct NeedBases {
    seq: u64,
    id: Id,
    chunk: Bytes,
    sketch: Sketch,
    /// The bases, best first, with where they are ([`BaseMatch`]).
    found: Vec<(Id, BlobLocation)>,
    predecessor: Option<(Id, BlobLocation)>,
    /// The predecessor's delta frame, read with the bases: should the chunk seem to have
    /// drifted, the predecessor is rebuilt from it and the bases (see [`rebase_pays`]).
    predecessor_frame: Option<Vec<u8>>,
}

/// What a chunk worker did: finished the chunk, or found bases that must be read first.
pub(super) enum Step {
    Done(Work),
    Bases(NeedBases),
}

/// Delta bases being read for one stream at most: each holds a chunk and its bases, and
/// chunks in flight bound them first.
const BASE_READS: usize = 32;

/// A finished chunk from a worker.
pub(super) enum Work {
    Dup {
        seq: u64,
        id: Id,
        len: u32,
    },
    New {
        seq: u64,
        id: Id,
        len: u32,
        stored: Stored,
    },
    /// The worker failed; its error is in the stream's error slot.
    Failed,
}

/// The error of a chunk whose bases could not be asked for (the reader of bases is gone).
pub(super) fn lost_reader() -> Error {
    Error::general("snapshot pipeline: the reader of delta bases stopped")
}

/// What a chunk worker needs.
#[derive(Clone, Copy)]
pub(super) struct WorkCtx<'a> {
    pub(super) session: &'a Session<'a>,
    pub(super) pending: &'a Mutex<HashSet<Id>>,
    pub(super) reused: &'a Mutex<HashSet<u64>>,
    /// Delta bases recently read (the predecessor of a drifted chunk is rebuilt from them).
    pub(super) cache: &'a BaseCache,
    pub(super) level: i32,
    pub(super) deltas: bool,
}

/// Most bases one delta names ([`MAX_BASES`]), and most plaintext they hold together: a chunk
/// whose boundaries moved spans pieces of two or three stored chunks.
const MAX_REFERENCE: u64 = 8 << 20;

/// A delta is kept without compressing the chunk plainly when it is at most 1/[`DELTA_SURE`]
/// of the chunk's plain size as estimated from its base; otherwise it must be at most
/// 1/[`DELTA_KEEP`] of the measured plain size.
const DELTA_SURE: u64 = 8;
/// A delta must be at most half of the plainly compressed chunk to be kept (measured on daily
/// dumps, keeping deltas up to 4/5 of it stored more: such deltas drift further from their
/// bases day after day instead of starting a new base; docs/benchmarks.md).
const DELTA_KEEP: u64 = 2;

/// How much a chunk's delta grew since its predecessor's (the most similar stored chunk, a
/// delta itself: most likely yesterday's version), scaled to this chunk's length. Zero without
/// a delta predecessor: there is no drift to measure.
fn growth(delta_len: u64, predecessor: Option<&BlobLocation>, len: u64) -> u64 {
    let Some(p) = predecessor else { return 0 };
    let previous = u64::from(p.length) * len / u64::from(p.raw_length.max(1));
    delta_len.saturating_sub(previous)
}

/// Whether a chunk whose delta took `delta_len` bytes (`plain_len` plainly) should rather be
/// stored whole and become the base of its later versions (docs/deltas.md, "Drift"). A chunk
/// that changes every day stays a delta against the bases its first version found, so each
/// day's delta carries every change since then and grows by about `growth` a day. Stored whole
/// today, tomorrow's delta would be about `next` (one day of change), and grow by `growth` a
/// day from there: the part of today's delta that starting over removes is the drift,
/// `delta_len − next + growth`. Storing whole costs `plain_len − next + growth` once more than
/// that floor; with a cycle of `T` days the cost per day is least when the drift reaches
/// `sqrt(2·(plain_len − floor)·growth)`. With `next = growth` (no floor: every byte of the
/// delta is drift) this is `delta_len² ≥ 2·plain_len·growth`. A chunk whose rows are
/// rewritten every day has a high floor: its delta against yesterday is nearly as large as
/// against its base, and storing it whole again would buy nothing.
fn rebase_pays(delta_len: u64, plain_len: u64, growth: u64, next: u64) -> bool {
    let floor = next.saturating_sub(growth);
    let drift = delta_len.saturating_sub(floor);
    growth > 0
        && drift.saturating_mul(drift) >= plain_len.saturating_sub(floor).saturating_mul(growth).saturating_mul(2)
}

impl WorkCtx<'_> {
    /// Read the bases of the chunks sent on `rx`, those of up to [`BASE_READS`] chunks at a time,
    /// and hand each chunk with its bases (or the error) to `then`. Returns once every sender is
    /// gone and every read has finished.
    pub(super) fn read_bases(
        &self,
        mut rx: tokio::sync::mpsc::UnboundedReceiver<NeedBases>,
        then: impl Fn(NeedBases, Result<Vec<Arc<Vec<u8>>>>),
    ) {
        use futures::StreamExt;
        let WorkCtx { session, cache, .. } = *self;
        session.repo().store().runtime().block_on(
            futures::stream::poll_fn(|cx| rx.poll_recv(cx))
                .map(|mut n| async move {
                    // Read through the index like a restore, authenticated; a base that chunks
                    // in flight share is read once (restore::BaseCache).
                    let reads = n
                        .found
                        .iter()
                        .map(|(b, _)| crate::repo::blob_reader::fetch_base(session, *b, cache));
                    let frame = async {
                        let (p, loc) = n.predecessor.clone()?;
                        crate::repo::blob_reader::fetch_delta_frame(session.repo(), p, loc)
                            .await
                            .inspect_err(|e| tracing::debug!(chunk = %p, error = %e, "cannot read a predecessor"))
                            .ok()
                    };
                    let (plains, frame) = futures::join!(futures::future::try_join_all(reads), frame);
                    n.predecessor_frame = frame;
                    (n, plains)
                })
                .buffer_unordered(BASE_READS)
                .for_each(|(n, plains)| {
                    then(n, plains);
                    std::future::ready(())
                }),
        )
    }

    /// Hash one chunk and look it up; when new, compress and seal it, or, when similar stored
    /// chunks exist, hand it on to have their plaintexts read ([`WorkCtx::finish_delta`]).
    pub(super) fn work(&self, seq: u64, c: Bytes, known: Option<Id>) -> Result<Step> {
        let id = known.unwrap_or_else(|| self.session.repo().keys().chunk_id(&c));
        let len = c.len() as u32;
        if !super::SnapshotWriter::claim(self.session.index(), self.pending, self.reused, &id)? {
            return Ok(Step::Done(Work::Dup { seq, id, len }));
        }
        if !self.deltas {
            let (encoding, sealed) = seal_blob(self.session.repo().keys(), BlobKind::Data, &id, &c, self.level)?;
            let stored = Stored {
                encoding,
                sealed,
                bases: Vec::new(),
                sketch: None,
                saved: 0,
            };
            return Ok(Step::Done(Work::New { seq, id, len, stored }));
        }
        let sketch = crate::delta::sketch(
            &c,
            crate::delta::piece_bits(self.session.repo().config().chunker.avg_size),
        );
        let BaseMatch {
            bases: found,
            predecessor,
        } = self.session.index().find_bases(&sketch, MAX_BASES, MAX_REFERENCE)?;
        if found.is_empty() {
            tracing::debug!(chunk = %id, len, "no similar stored chunk: stored plainly");
            let stored = self.store_plainly(&id, &c, sketch, None)?;
            return Ok(Step::Done(Work::New { seq, id, len, stored }));
        }
        Ok(Step::Bases(NeedBases {
            seq,
            id,
            chunk: c,
            sketch,
            found,
            predecessor,
            predecessor_frame: None,
        }))
    }

    /// The size chunk `c` would take stored plainly: estimated from its bases' compression
    /// ratio (`found`) when a delta of `delta_len` is clearly smaller anyway, else measured by
    /// compressing it (and the compressed bytes, to store if the delta loses).
    fn plain_size(&self, found: &[(Id, BlobLocation)], c: &[u8], delta_len: u64) -> Result<(u64, Option<Vec<u8>>)> {
        let (stored, raw) = found.iter().fold((0u64, 0u64), |(s, r), (_, l)| {
            (s + u64::from(l.length), r + u64::from(l.raw_length))
        });
        let estimate = stored * c.len() as u64 / raw.max(1);
        if delta_len * DELTA_SURE <= estimate {
            return Ok((estimate, None));
        }
        let z = compress_chunk(c, self.level)?;
        let n = z.len().min(c.len()) as u64 + crate::crypto::OVERHEAD as u64;
        Ok((n, Some(z)))
    }

    /// Store a chunk whose bases were read (`plains`, in the order found) as a delta against
    /// them if that is clearly smaller (repo-format §5.1), else plainly.
    pub(super) fn finish_delta(&self, n: NeedBases, plains: Result<Vec<Arc<Vec<u8>>>>) -> Result<Work> {
        let NeedBases {
            seq,
            id,
            chunk: c,
            sketch,
            found,
            predecessor,
            predecessor_frame,
        } = n;
        let len = c.len() as u32;
        let mut plain_z = None;
        match plains {
            Ok(plains) => {
                let reference = crate::repo::blob_reader::concat_bases(&plains);
                let frame = crate::delta::encode(&reference, &c, self.level).map_err(Error::general)?;
                let bases: Vec<Id> = found.iter().map(|(b, _)| *b).collect();
                let overhead = (crate::crypto::OVERHEAD + 1 + 32 * bases.len()) as u64;
                let delta_len = frame.len() as u64 + overhead;
                let (plain_len, z) = self.plain_size(&found, &c, delta_len)?;
                plain_z = z;
                // Drift, judged first as if every byte of the delta were drift (the most
                // that storing the chunk whole could save); only then is the floor measured.
                let growth = growth(delta_len, predecessor.as_ref().map(|p| &p.1), c.len() as u64);
                let mut drifted = rebase_pays(delta_len, plain_len, growth, growth);
                let mut next = None;
                if let (true, Some((p, loc))) = (drifted, &predecessor) {
                    let frame = predecessor_frame.as_deref();
                    next = self.delta_to(*p, loc, frame, &found, &plains, &c);
                    drifted = next.is_none_or(|n| rebase_pays(delta_len, plain_len, growth, n));
                }
                let keep = delta_len * DELTA_KEEP <= plain_len && !drifted;
                tracing::debug!(
                    chunk = %id,
                    len,
                    bases = bases.len(),
                    delta = delta_len,
                    plain = plain_len,
                    predecessor = predecessor.as_ref().map(|p| p.1.length),
                    growth,
                    next,
                    "{}",
                    if keep {
                        "stored as a delta"
                    } else if drifted {
                        "delta drifted from its bases: stored whole to start over"
                    } else {
                        "delta not at most half the plain size: stored plainly"
                    }
                );
                if keep {
                    let stored = Stored {
                        encoding: Encoding::ZstdDelta,
                        sealed: seal_delta(self.session.repo().keys(), &id, &bases, &frame)?,
                        bases,
                        sketch: Some(sketch),
                        saved: plain_len - delta_len,
                    };
                    return Ok(Work::New { seq, id, len, stored });
                }
            }
            // A base that cannot be read is no reason to fail the snapshot: the chunk is
            // stored plainly, and `check` reports the damage.
            Err(e) if e.kind() == ErrorKind::Corrupt => {
                tracing::warn!(error = %e, "cannot read a delta base; storing the chunk plainly");
            }
            Err(e) => return Err(e),
        }
        let stored = self.store_plainly(&id, &c, sketch, plain_z)?;
        Ok(Work::New { seq, id, len, stored })
    }

    /// The size of chunk `c` sealed as a delta against stored delta chunk `other` at `loc`
    /// alone. `other` is rebuilt from its `frame` and its bases, which are most often among
    /// this chunk's bases (`found`, read as `plains`). Otherwise it is read here, blocking
    /// this worker. `None` when `other` cannot be read or rebuilt: the chunk is then judged
    /// without that figure.
    fn delta_to(
        &self,
        other: Id,
        loc: &BlobLocation,
        frame: Option<&[u8]>,
        found: &[(Id, BlobLocation)],
        plains: &[Arc<Vec<u8>>],
        c: &[u8],
    ) -> Option<u64> {
        let overhead = (crate::crypto::OVERHEAD + 1 + 32) as u64;
        let held = loc
            .bases
            .iter()
            .map(|b| {
                found
                    .iter()
                    .position(|(f, _)| f == b)
                    .and_then(|i| plains.get(i).cloned())
            })
            .collect::<Option<Vec<_>>>();
        let rebuilt = match (frame, held) {
            (Some(frame), Some(bases)) => {
                let reference = crate::repo::blob_reader::concat_bases(&bases);
                crate::repo::blob::apply_delta(self.session.repo().keys(), &other, loc, &reference, frame)
            }
            _ => {
                tracing::debug!(chunk = %other, "reading a drifting chunk's predecessor");
                let read =
                    crate::repo::blob_reader::fetch_blob_cached(self.session, other, BlobKind::Data, Some(self.cache));
                self.session.repo().store().runtime().block_on(read)
            }
        };
        match rebuilt {
            Ok(plain) => crate::delta::encode(&plain, c, self.level)
                .ok()
                .map(|f| f.len() as u64 + overhead),
            Err(e) => {
                tracing::debug!(chunk = %other, error = %e, "cannot read a drifting chunk's predecessor");
                None
            }
        }
    }

    /// Compress (unless `z` already holds it) and seal a data chunk plainly, with its sketch.
    fn store_plainly(&self, id: &Id, c: &[u8], sketch: Sketch, z: Option<Vec<u8>>) -> Result<Stored> {
        let z = match z {
            Some(z) => z,
            None => compress_chunk(c, self.level)?,
        };
        let (encoding, sealed) = seal_compressed(self.session.repo().keys(), BlobKind::Data, id, c, z)?;
        Ok(Stored {
            encoding,
            sealed,
            bases: Vec::new(),
            sketch: Some(sketch),
            saved: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delta_of(length: u32, raw_length: u32) -> BlobLocation {
        BlobLocation {
            pack: Id([0; 32]),
            kind: BlobKind::Data,
            encoding: Encoding::ZstdDelta,
            offset: 0,
            length,
            raw_length,
            bases: vec![Id([1; 32])],
        }
    }

    #[test]
    fn growth_is_measured_against_the_predecessor_scaled_to_this_chunk() {
        assert_eq!(growth(500, None, 1000), 0, "no predecessor, no drift");
        // The predecessor's 100-byte delta of a 1000-byte chunk is 200 bytes at 2000.
        assert_eq!(growth(260, Some(&delta_of(100, 1000)), 2000), 60);
        assert_eq!(growth(150, Some(&delta_of(100, 1000)), 2000), 0, "shrank: no growth");
        assert_eq!(
            growth(10, Some(&delta_of(100, 0)), 1),
            0,
            "a zero raw length divides by 1"
        );
    }

    #[test]
    fn rebase_pays_when_the_drift_outweighs_a_whole_copy() {
        assert!(!rebase_pays(1000, 1000, 0, 0), "no growth: a delta never drifts");
        // No floor (next = growth): delta² ≥ 2·plain·growth, 141.4 for 1000 and 10.
        assert!(!rebase_pays(141, 1000, 10, 10));
        assert!(rebase_pays(142, 1000, 10, 10));
        // A floor of 890 (rows rewritten every day): only 40 of 930 bytes are drift, and
        // 40² < 2·(1000 − 890)·10; 60 of 950 are, and 60² ≥ 2200.
        assert!(!rebase_pays(930, 1000, 10, 900));
        assert!(rebase_pays(950, 1000, 10, 900));
        // Saturates instead of overflowing (a panic in debug builds, a wrong answer in release).
        assert!(rebase_pays(u64::MAX, u64::MAX, u64::MAX, 0));
    }
}
