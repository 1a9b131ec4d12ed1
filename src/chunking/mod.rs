//! Content-defined chunking of a byte stream with FastCDC 2020 (normalization level 1) and a
//! gear table seeded from the repository key. Reads large blocks and copies each chunk once.
//! Guided by the parent snapshot's chunks ([`guide`]), an unchanged chunk is confirmed by its
//! keyed hash and one gear-hash window instead of a scan: the cuts stay exactly FastCDC's.

pub mod guide;

use std::io::{self, Read};
use std::sync::Arc;

use bytes::Bytes;
use crossbeam_channel::{bounded, Receiver, Sender};
use fastcdc::v2020::{cut_gear, get_gear_with_seed, logarithm2, MASKS};

use crate::crypto::Keys;
use crate::format::config::ChunkerParams;
use crate::format::Id;
use guide::Guide;

/// Size of the blocks the source is read into; chunks are zero-copy slices of them.
const BLOCK: usize = 16 << 20;
/// Blocks kept for reuse once every chunk of theirs is dropped (warm memory, no page faults).
const POOL: usize = 3;

/// A filled block; goes back to the pool when its last chunk is dropped.
struct Block {
    data: Vec<u8>,
    pool: Sender<Vec<u8>>,
}

impl Drop for Block {
    fn drop(&mut self) {
        let _ = self.pool.try_send(std::mem::take(&mut self.data));
    }
}

/// Shares a block between the chunks cut from it.
struct Shared(Arc<Block>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        &self.0.data
    }
}

/// One chunk: its bytes, and its id when a guided chunker computed it.
pub struct Chunk {
    /// The bytes (a slice of a shared block).
    pub data: Bytes,
    /// Keyed BLAKE3 of `data`, when already computed.
    pub id: Option<Id>,
}

/// FastCDC's parameters and gear tables.
struct Cuts {
    min: usize,
    avg: usize,
    max: usize,
    masks: (u64, u64),
    gear: Box<[u64; 256]>,
    gear_ls: Box<[u64; 256]>,
}

impl Cuts {
    fn cut(&self, avail: &[u8]) -> usize {
        let (ms, ml) = self.masks;
        let (_, n) = cut_gear(
            avail,
            self.min,
            self.avg,
            self.max,
            ms,
            ml,
            ms << 1,
            ml << 1,
            &self.gear,
            &self.gear_ls,
        );
        n.clamp(1, avail.len())
    }

    /// Whether `cut(avail)` returns `l`, given that no position before `l` is a cut point —
    /// which holds when `avail[..l]` is a chunk this chunker cut before and that was not the
    /// last of its stream: the gear hash at a position depends only on the 64 bytes before it.
    /// Needs a full window (`avail` at least `max` long, so the masks switch at `avg` exactly
    /// as they did then) and an even `max` (so every position before a maximum-size cut was
    /// examined). Only the hash at `l` itself is computed, from at most 66 bytes.
    fn holds(&self, avail: &[u8], l: usize) -> bool {
        if avail.len() < self.max || !self.max.is_multiple_of(2) || l == 0 || l > self.max {
            return false;
        }
        if l == self.max {
            return true;
        }
        // cut_gear examines positions in pairs (2i, 2i+1) for i in [min/2, max/2), with the
        // stricter mask while i < avg/2.
        let pair = l / 2;
        if pair < self.min / 2 || pair >= self.max / 2 {
            return false;
        }
        let (ms, ml) = self.masks;
        let mask = if pair < self.avg / 2 { ms } else { ml };
        let mut a = ((self.min / 2) * 2).max(l.saturating_sub(66) & !1);
        let mut hash = 0u64;
        loop {
            let (Some(&x), Some(&y)) = (avail.get(a), avail.get(a + 1)) else {
                return false;
            };
            hash = (hash << 2).wrapping_add(self.gear_ls[x as usize]);
            if a == l {
                return hash & (mask << 1) == 0;
            }
            hash = hash.wrapping_add(self.gear[y as usize]);
            if a + 1 == l {
                return hash & mask == 0;
            }
            a += 2;
        }
    }
}

/// Splits a reader into content-defined chunks. The source is read into large blocks, each
/// filled completely before it is shared; every chunk is a reference-counted slice of its
/// block (no copy). Only the bytes after the block's last cut point are copied into the next
/// block. Blocks are recycled through a small pool.
pub struct Chunker<'g, R> {
    src: R,
    block: Option<Arc<Block>>,
    pos: usize,
    end: usize,
    eof: bool,
    pool_tx: Sender<Vec<u8>>,
    pool_rx: Receiver<Vec<u8>>,
    cuts: Cuts,
    /// With a guide, every chunk's id is computed here (to follow the guide).
    guide: Option<(Keys, Box<dyn Guide + 'g>)>,
    /// Chunks the guide proposed and the bytes confirmed.
    confirmed: u64,
}

impl<'g, R: Read> Chunker<'g, R> {
    /// A chunker over `src` with the repository's parameters and seed.
    pub fn new(src: R, p: &ChunkerParams, seed: u64) -> Self {
        let bits = logarithm2(p.avg_size);
        let (gear, gear_ls) = get_gear_with_seed(seed);
        let (pool_tx, pool_rx) = bounded(POOL);
        Chunker {
            src,
            block: None,
            pos: 0,
            end: 0,
            eof: false,
            pool_tx,
            pool_rx,
            cuts: Cuts {
                min: p.min_size as usize,
                avg: p.avg_size as usize,
                max: p.max_size as usize,
                masks: (MASKS[(bits + 1) as usize], MASKS[(bits - 1) as usize]),
                gear,
                gear_ls,
            },
            guide: None,
            confirmed: 0,
        }
    }

    /// How many chunks the guide proposed and the bytes confirmed.
    pub fn confirmed(&self) -> u64 {
        self.confirmed
    }

    /// Follow `guide` (the chunks of an earlier version of this stream), computing chunk ids
    /// with `keys`. The cuts are the same as without it.
    pub fn guided(mut self, keys: Keys, guide: Box<dyn Guide + 'g>) -> Self {
        self.guide = Some((keys, guide));
        self
    }

    /// Start a new block holding the unconsumed tail of the current one, then fill it.
    fn refill(&mut self) -> io::Result<()> {
        let size = BLOCK.max(2 * self.cuts.max);
        let mut data = self.pool_rx.try_recv().unwrap_or_default();
        if data.len() != size {
            data = vec![0u8; size];
        }
        let mut filled = 0;
        if let Some(b) = &self.block {
            let tail = &b.data[self.pos..self.end];
            data[..tail.len()].copy_from_slice(tail);
            filled = tail.len();
        }
        while filled < data.len() {
            match self.src.read(&mut data[filled..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.block = Some(Arc::new(Block {
            data,
            pool: self.pool_tx.clone(),
        }));
        self.pos = 0;
        self.end = filled;
        Ok(())
    }

    /// The next chunk, or `None` at the end of the stream.
    pub fn next_chunk(&mut self) -> io::Result<Option<Chunk>> {
        loop {
            if let Some(b) = &self.block {
                let avail = &b.data[self.pos..self.end];
                if !avail.is_empty() {
                    let mut cut = None;
                    let mut more = false;
                    if let Some((keys, g)) = &mut self.guide {
                        if let Some(e) = g.expected() {
                            let l = e.len as usize;
                            if !self.eof && avail.len() < self.cuts.max {
                                more = true; // decide with a full window
                            } else if (e.last && self.eof && l == avail.len()) || (!e.last && self.cuts.holds(avail, l))
                            {
                                // `avail[..l]` is the expected chunk if its id says so.
                                let id = keys.chunk_id(&avail[..l]);
                                if id == e.id {
                                    self.confirmed += 1;
                                    cut = Some((l, Some(id)));
                                }
                            }
                        }
                    }
                    if cut.is_none() && !more {
                        // A cut is final when the data cannot change it: a full window is
                        // present, the stream has ended, or a natural cut point was found
                        // past `avg`.
                        let n = self.cuts.cut(avail);
                        if self.eof || avail.len() >= self.cuts.max || (avail.len() >= self.cuts.avg && n < avail.len())
                        {
                            let id = self.guide.as_ref().map(|(keys, _)| keys.chunk_id(&avail[..n]));
                            cut = Some((n, id));
                        }
                    }
                    if let Some((n, id)) = cut {
                        if let (Some((_, g)), Some(id)) = (&mut self.guide, &id) {
                            g.cut(id, n as u32);
                        }
                        let data = Bytes::from_owner(Shared(b.clone())).slice(self.pos..self.pos + n);
                        self.pos += n;
                        return Ok(Some(Chunk { data, id }));
                    }
                } else if self.eof {
                    return Ok(None);
                }
            } else if self.eof {
                return Ok(None);
            }
            self.refill()?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that returns at most `step` bytes per call, like a pipe.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.1).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn lengths(data: &[u8], p: &ChunkerParams, seed: u64, step: usize) -> Vec<usize> {
        let mut c = Chunker::new(Trickle(data, step), p, seed);
        let mut v = Vec::new();
        while let Some(ch) = c.next_chunk().unwrap() {
            v.push(ch.data.len());
        }
        v
    }

    fn reference(data: &[u8], p: &ChunkerParams, seed: u64) -> Vec<usize> {
        use fastcdc::v2020::{FastCDC, Normalization};
        FastCDC::with_level_and_seed(data, p.min_size, p.avg_size, p.max_size, Normalization::Level1, seed)
            .map(|c| c.length)
            .collect()
    }

    #[test]
    fn boundaries_match_fastcdc_across_block_edges() {
        // 40 MiB: several 16 MiB blocks, so cuts near block ends and carried tails are tested;
        // long runs of one byte now and then: places with no natural cut point.
        let data = noise(40 << 20, 1, |i| (i >> 20) % 7 == 3);
        let small = small();
        for (p, seed) in [
            (small, 7),
            (ChunkerParams::default(), 0),
            (ChunkerParams::default(), 99),
        ] {
            for step in [1 << 16, 1 << 24] {
                let a = lengths(&data, &p, seed, step);
                assert_eq!(a.iter().sum::<usize>(), data.len());
                assert!(a.iter().all(|&n| n <= p.max_size as usize));
                assert_eq!(a, reference(&data, &p, seed), "params {p:?} seed {seed} step {step}");
            }
        }
        assert_ne!(
            lengths(&data[..1 << 20], &small, 7, 1 << 16),
            lengths(&data[..1 << 20], &small, 8, 1 << 16)
        );
        assert!(lengths(&[], &small, 7, 10).is_empty());
        assert_eq!(lengths(&[1], &small, 7, 10), vec![1]);
    }

    /// `n` bytes of xorshift noise from `x`, zero where `zero(i)`.
    fn noise(n: usize, mut x: u64, zero: fn(usize) -> bool) -> Vec<u8> {
        (0..n)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if zero(i) {
                    0
                } else {
                    x as u8
                }
            })
            .collect()
    }

    /// Zero runs now and then: maximum-size cuts.
    fn runs(i: usize) -> bool {
        (i >> 16) % 11 == 5
    }

    fn small() -> ChunkerParams {
        ChunkerParams {
            min_size: 1024,
            avg_size: 4096,
            max_size: 16384,
            ..Default::default()
        }
    }

    #[test]
    fn holds_agrees_with_cut_gear() {
        let p = small();
        let c = Chunker::new(&[][..], &p, 5);
        let data = noise(4 << 20, 3, runs);
        let (mut start, mut checked) = (0, 0);
        while start + p.max_size as usize <= data.len() {
            let avail = &data[start..];
            let n = c.cuts.cut(avail);
            // The cut point holds; no position before it does.
            assert!(c.cuts.holds(avail, n), "cut at {n} from {start}");
            for l in (1..n).step_by(7).chain(n.saturating_sub(3)..n) {
                assert!(!c.cuts.holds(avail, l), "no cut at {l} from {start}");
            }
            checked += 1;
            start += n;
        }
        assert!(checked > 500);
        // Not without a full window.
        assert!(!c.cuts.holds(&data[..p.max_size as usize - 1], 4096));
    }

    /// Proposes the parent's chunk after the last one cut (found by id), else the parent's
    /// chunk at the same offset; counts the proposals taken.
    struct TestGuide {
        parent: Vec<(Id, u32, u64)>,
        next: Option<usize>,
        offset: u64,
        proposed: Option<Id>,
        taken: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Guide for TestGuide {
        fn expected(&mut self) -> Option<guide::Expected> {
            let i = self
                .next
                .or_else(|| self.parent.iter().position(|r| r.2 == self.offset))?;
            let &(id, len, _) = self.parent.get(i)?;
            self.proposed = Some(id);
            Some(guide::Expected {
                id,
                len,
                last: i + 1 == self.parent.len(),
            })
        }

        fn cut(&mut self, id: &Id, len: u32) {
            if self.proposed.take() == Some(*id) {
                self.taken.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            self.offset += u64::from(len);
            self.next = self.parent.iter().position(|r| r.0 == *id).map(|i| i + 1);
        }
    }

    /// Lengths cut from `data` guided by the chunks of `parent`, and the proposals taken.
    fn guided(parent: &[u8], data: &[u8], p: &ChunkerParams, step: usize) -> (Vec<usize>, usize) {
        let keys = crate::crypto::MasterKey::from_bytes([9u8; 32]).derive();
        let mut off = 0;
        let mut recs = Vec::new();
        let mut c = Chunker::new(Trickle(parent, step), p, 1);
        while let Some(ch) = c.next_chunk().unwrap() {
            recs.push((keys.chunk_id(&ch.data), ch.data.len() as u32, off));
            off += ch.data.len() as u64;
        }
        let taken = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let g = TestGuide {
            parent: recs,
            next: Some(0),
            offset: 0,
            proposed: None,
            taken: taken.clone(),
        };
        let mut c = Chunker::new(Trickle(data, step), p, 1).guided(keys.clone(), Box::new(g));
        let mut v = Vec::new();
        while let Some(ch) = c.next_chunk().unwrap() {
            assert_eq!(ch.id, Some(keys.chunk_id(&ch.data)));
            v.push(ch.data.len());
        }
        (v, taken.load(std::sync::atomic::Ordering::Relaxed))
    }

    #[test]
    fn guided_cuts_are_fastcdc_cuts() {
        let p = small();
        let parent = noise(3 << 20, 11, runs);
        let cuts: Vec<usize> = reference(&parent, &p, 1)
            .iter()
            .scan(0, |o, n| {
                *o += n;
                Some(*o)
            })
            .collect();
        let mut variants: Vec<(String, Vec<u8>)> = vec![("same".into(), parent.clone())];
        // Bytes changed at, just before and just after chunk boundaries (where the cut
        // decision looks), and in the middle of chunks.
        for (k, &b) in cuts.iter().enumerate().take(cuts.len() - 1).step_by(5) {
            let sets: [&[usize]; 3] = [&[b], &[b + 1, b + 2], &[b - 1, b - 40, b - 700]];
            let mut v = parent.clone();
            for at in sets[k % 3] {
                v[*at] ^= 0x5a ^ (k as u8);
            }
            variants.push((format!("flips at {:?}", sets[k % 3]), v));
        }
        let mut v = parent.clone();
        v.splice(1 << 20..1 << 20, noise(50_000, 77, runs));
        variants.push(("insertion".into(), v));
        let mut v = parent.clone();
        v.drain(700_000..790_000);
        variants.push(("deletion".into(), v));
        variants.push(("prefix".into(), parent[..2_000_000].to_vec()));
        variants.push(("prefix at a cut".into(), parent[..cuts[100]].to_vec()));
        let mut v = parent.clone();
        v.extend(noise(100_000, 5, runs));
        variants.push(("extension".into(), v));
        variants.push(("suffix".into(), parent[cuts[3]..].to_vec()));
        for (what, data) in &variants {
            for step in [1 << 16, 1 << 24] {
                let (got, taken) = guided(&parent, data, &p, step);
                assert_eq!(got, reference(data, &p, 1), "{what}, step {step}");
                if what == "same" {
                    assert!(taken * 10 >= got.len() * 9, "{taken} of {} chunks confirmed", got.len());
                }
            }
        }
    }
}
