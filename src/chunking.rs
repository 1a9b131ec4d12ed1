//! Content-defined chunking of a byte stream with FastCDC 2020 (normalization level 1) and a
//! gear table seeded from the repository key. Reads large blocks and copies each chunk once.

use std::io::{self, Read};
use std::sync::Arc;

use bytes::Bytes;
use crossbeam_channel::{bounded, Receiver, Sender};
use fastcdc::v2020::{cut_gear, get_gear_with_seed, logarithm2, MASKS};

use crate::format::config::ChunkerParams;

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

/// Splits a reader into content-defined chunks. The source is read into large blocks, each
/// filled completely before it is shared; every chunk is a reference-counted slice of its
/// block (no copy). Only the bytes after the block's last cut point are copied into the next
/// block. Blocks are recycled through a small pool.
pub struct Chunker<R> {
    src: R,
    block: Option<Arc<Block>>,
    pos: usize,
    end: usize,
    eof: bool,
    pool_tx: Sender<Vec<u8>>,
    pool_rx: Receiver<Vec<u8>>,
    min: usize,
    avg: usize,
    max: usize,
    masks: (u64, u64),
    gear: Box<[u64; 256]>,
    gear_ls: Box<[u64; 256]>,
}

impl<R: Read> Chunker<R> {
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
            min: p.min_size as usize,
            avg: p.avg_size as usize,
            max: p.max_size as usize,
            masks: (MASKS[(bits + 1) as usize], MASKS[(bits - 1) as usize]),
            gear,
            gear_ls,
        }
    }

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

    /// Start a new block holding the unconsumed tail of the current one, then fill it.
    fn refill(&mut self) -> io::Result<()> {
        let size = BLOCK.max(2 * self.max);
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
    pub fn next_chunk(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            if let Some(b) = &self.block {
                let avail = &b.data[self.pos..self.end];
                if !avail.is_empty() {
                    // A cut is final when the data cannot change it: a full window is present,
                    // the stream has ended, or a natural cut point was found past `avg`.
                    let n = self.cut(avail);
                    if self.eof || avail.len() >= self.max || (avail.len() >= self.avg && n < avail.len()) {
                        let chunk = Bytes::from_owner(Shared(b.clone())).slice(self.pos..self.pos + n);
                        self.pos += n;
                        return Ok(Some(chunk));
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
            v.push(ch.len());
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
        let mut x = 1u64;
        // 40 MiB: several 16 MiB blocks, so cuts near block ends and carried tails are tested.
        let data: Vec<u8> = (0..40 << 20)
            .map(|i: usize| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Long runs of one byte now and then: places with no natural cut point.
                if (i >> 20) % 7 == 3 {
                    0
                } else {
                    x as u8
                }
            })
            .collect();
        let small = ChunkerParams {
            min_size: 1024,
            avg_size: 4096,
            max_size: 16384,
            ..Default::default()
        };
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
}
