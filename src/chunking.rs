//! Content-defined chunking of a byte stream with FastCDC 2020 (normalization level 1) and a
//! gear table seeded from the repository key. Reads large blocks and copies each chunk once.

use std::io::{self, Read};

use bytes::{Bytes, BytesMut};
use fastcdc::v2020::{cut_gear, get_gear_with_seed, logarithm2, MASKS};

use crate::format::config::ChunkerParams;

/// Size of the blocks the source is read into; chunks are zero-copy slices of them.
const BLOCK: usize = 16 << 20;

/// Splits a reader into content-defined chunks. The source is read into large zeroed blocks
/// and each chunk is a reference-counted slice of its block (no copy); only the bytes left
/// over at the end of a block (less than one maximum chunk) are copied into the next one.
pub struct Chunker<R> {
    src: R,
    /// Unconsumed part of the current block; `buf[..filled]` holds data read but not chunked.
    buf: BytesMut,
    filled: usize,
    eof: bool,
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
        Chunker {
            src,
            buf: BytesMut::new(),
            filled: 0,
            eof: false,
            min: p.min_size as usize,
            avg: p.avg_size as usize,
            max: p.max_size as usize,
            masks: (MASKS[(bits + 1) as usize], MASKS[(bits - 1) as usize]),
            gear,
            gear_ls,
        }
    }

    /// Ensure at least `max` bytes are buffered, or the source is exhausted.
    fn fill(&mut self) -> io::Result<()> {
        while !self.eof && self.filled < self.max {
            if self.buf.len() - self.filled < self.max.min(1 << 20) {
                // Start a new block (calloc: fresh pages cost nothing until written), carrying
                // over the unchunked tail.
                let mut next = BytesMut::zeroed(BLOCK.max(2 * self.max));
                next[..self.filled].copy_from_slice(&self.buf[..self.filled]);
                self.buf = next;
            }
            match self.src.read(&mut self.buf[self.filled..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The next chunk, or `None` at the end of the stream.
    pub fn next_chunk(&mut self) -> io::Result<Option<Bytes>> {
        self.fill()?;
        if self.filled == 0 {
            return Ok(None);
        }
        let avail = &self.buf[..self.filled];
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
        let n = n.clamp(1, self.filled);
        self.filled -= n;
        Ok(Some(self.buf.split_to(n).freeze()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(data: &[u8], seed: u64) -> Vec<usize> {
        let p = ChunkerParams {
            min_size: 1024,
            avg_size: 4096,
            max_size: 16384,
            ..Default::default()
        };
        let mut c = Chunker::new(data, &p, seed);
        let mut v = Vec::new();
        while let Some(ch) = c.next_chunk().unwrap() {
            v.push(ch.len());
        }
        v
    }

    #[test]
    fn boundaries_are_content_defined_and_complete() {
        let mut x = 1u64;
        let data: Vec<u8> = (0..300_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let a = chunks(&data, 7);
        assert_eq!(a.iter().sum::<usize>(), data.len());
        assert!(a.iter().all(|&n| n <= 16384));
        // Same as fastcdc's own slice chunker with the same seed.
        let reference: Vec<usize> = fastcdc::v2020::FastCDC::with_level_and_seed(
            &data,
            1024,
            4096,
            16384,
            fastcdc::v2020::Normalization::Level1,
            7,
        )
        .map(|c| c.length)
        .collect();
        assert_eq!(a, reference);
        assert_ne!(a, chunks(&data, 8));
        assert!(chunks(&[], 7).is_empty());
        assert_eq!(chunks(&[1], 7), vec![1]);
    }
}
