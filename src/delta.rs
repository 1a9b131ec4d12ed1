//! Near-duplicate chunks (repo-format §5.1): a chunk similar to a stored one is kept as a zstd
//! frame compressed with the stored chunk's plaintext as its reference prefix (what
//! `zstd --patch-from` does), and rebuilt from it. Bases are found through resemblance
//! sketches: a few super-features per chunk that similar chunks share with high probability.

use zstd::zstd_safe::{CCtx, CParameter, DCtx, DParameter};

use crate::format::pack::MAX_CHUNK;

/// Features sampled per chunk; grouped four at a time into [`SKETCH_FEATURES`] super-features.
const FEATURES: usize = 12;
/// Super-features per sketch.
pub const SKETCH_FEATURES: usize = 3;
/// A position is sampled when the low bits of its rolling hash are zero: one in 32.
const SAMPLE_MASK: u64 = (1 << 5) - 1;

/// A chunk's resemblance sketch: chunks sharing any super-feature are likely near-duplicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sketch(pub [u64; SKETCH_FEATURES]);

/// splitmix64: the constants of the gear table and the feature transforms, and the mixer
/// that folds four features into one super-feature.
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

struct Tables {
    gear: [u64; 256],
    mul: [u64; FEATURES],
    add: [u64; FEATURES],
}

fn tables() -> &'static Tables {
    static T: std::sync::OnceLock<Tables> = std::sync::OnceLock::new();
    T.get_or_init(|| {
        let mut t = Tables {
            gear: [0; 256],
            mul: [0; FEATURES],
            add: [0; FEATURES],
        };
        for (i, g) in t.gear.iter_mut().enumerate() {
            *g = splitmix(i as u64);
        }
        for i in 0..FEATURES {
            t.mul[i] = splitmix(0x1000 + i as u64) | 1;
            t.add[i] = splitmix(0x2000 + i as u64);
        }
        t
    })
}

/// The sketch of `data` (repo-format §7.1): a gear rolling hash over the bytes; at sampled
/// positions each of 12 linear transforms of the hash keeps its maximum; super-feature `k`
/// mixes features `4k..4k+4`.
pub fn sketch(data: &[u8]) -> Sketch {
    let t = tables();
    let mut feat = [0u64; FEATURES];
    let mut h = 0u64;
    for &b in data {
        h = (h << 1).wrapping_add(t.gear[b as usize]);
        if h & SAMPLE_MASK == 0 {
            for ((f, m), a) in feat.iter_mut().zip(&t.mul).zip(&t.add) {
                let v = m.wrapping_mul(h).wrapping_add(*a);
                if v > *f {
                    *f = v;
                }
            }
        }
    }
    let mut s = [0u64; SKETCH_FEATURES];
    for (k, sf) in s.iter_mut().enumerate() {
        let mut x = k as u64;
        for f in &feat[4 * k..4 * k + 4] {
            x = splitmix(x ^ f);
        }
        *sf = x;
    }
    Sketch(s)
}

/// Window log covering the reference and the chunk, so every byte of the base is reachable.
fn window_log(total: usize) -> u32 {
    let bits = usize::BITS - total.max(1).saturating_sub(1).leading_zeros();
    bits.clamp(10, 27)
}

/// Compress `plain` as a zstd frame whose reference prefix is `base`.
pub fn encode(base: &[u8], plain: &[u8], level: i32) -> Result<Vec<u8>, String> {
    let err = |c: usize| format!("zstd: {}", zstd::zstd_safe::get_error_name(c));
    let mut c = CCtx::try_create().ok_or("zstd: cannot create a compression context")?;
    c.set_parameter(CParameter::CompressionLevel(level)).map_err(err)?;
    c.set_parameter(CParameter::WindowLog(window_log(base.len() + plain.len())))
        .map_err(err)?;
    c.set_parameter(CParameter::ChecksumFlag(false)).map_err(err)?;
    // Long-distance matching finds the base's bytes however far back they lie; the regular
    // match finder of fast levels loses most of a megabyte-sized prefix to hash collisions.
    c.set_parameter(CParameter::EnableLongDistanceMatching(true))
        .map_err(err)?;
    c.ref_prefix(base).map_err(err)?;
    let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(plain.len()));
    c.compress2(&mut out, plain).map_err(err)?;
    Ok(out)
}

/// Rebuild a chunk of exactly `len` bytes from its delta `frame` and its base's plaintext.
pub fn decode(base: &[u8], frame: &[u8], len: usize) -> Result<Vec<u8>, String> {
    if len > MAX_CHUNK as usize {
        return Err("plaintext length exceeds the maximum chunk size".into());
    }
    let err = |c: usize| format!("zstd delta: {}", zstd::zstd_safe::get_error_name(c));
    let mut d = DCtx::try_create().ok_or("zstd: cannot create a decompression context")?;
    d.set_parameter(DParameter::WindowLogMax(27)).map_err(err)?;
    d.ref_prefix(base).map_err(err)?;
    let mut out = Vec::with_capacity(len);
    let n = d.decompress(&mut out, frame).map_err(err)?;
    if n != len {
        return Err(format!("delta decodes to {n} bytes, the index says {len}"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b"0123456789abcdef,;\n "[(x % 20) as usize]
            })
            .collect()
    }

    #[test]
    fn a_delta_rebuilds_its_chunk_and_is_small() {
        let base = noise(1 << 20, 7);
        let mut new = base.clone();
        for i in 0..50 {
            let at = i * 20_000 + 333;
            new[at..at + 100].copy_from_slice(&noise(100, i as u64 + 99));
        }
        new.splice(500_000..500_000, noise(4000, 5));
        let d = encode(&base, &new, 3).unwrap();
        assert!(d.len() < 20_000, "delta of 9 KB of changes took {} bytes", d.len());
        assert_eq!(decode(&base, &d, new.len()).unwrap(), new);
        // Another base, or another length, does not give the chunk back.
        let other = noise(1 << 20, 8);
        assert!(decode(&other, &d, new.len()).map(|p| p != new).unwrap_or(true));
        assert!(decode(&base, &d, new.len() - 1).is_err());
        assert!(decode(&base, &d[..d.len() / 2], new.len()).is_err());
        // Empty inputs work both ways.
        assert_eq!(
            decode(&base, &encode(&base, &[], 3).unwrap(), 0).unwrap(),
            Vec::<u8>::new()
        );
        assert_eq!(decode(&[], &encode(&[], b"abc", 3).unwrap(), 3).unwrap(), b"abc");
    }

    #[test]
    fn similar_chunks_share_a_super_feature_and_different_ones_do_not() {
        let base = noise(1 << 20, 11);
        let mut new = base.clone();
        for i in 0..25 {
            let at = i * 40_000 + 77;
            new[at..at + 200].copy_from_slice(&noise(200, i as u64 + 1000));
        }
        let (a, b) = (sketch(&base), sketch(&new));
        assert!(a.0.iter().zip(b.0).any(|(x, y)| *x == y), "{a:?} {b:?}");
        let c = sketch(&noise(1 << 20, 12));
        assert!(a.0.iter().all(|x| !c.0.contains(x)));
        assert_eq!(sketch(&base), a, "sketches are deterministic");
        assert_eq!(window_log(1), 10);
        assert_eq!(window_log(3 << 20), 22);
        assert_eq!(window_log(8 << 20), 23);
    }
}
