//! Near-duplicate chunks (repo-format §5.1): a chunk similar to stored ones is kept as a zstd
//! frame compressed with the stored chunks' plaintexts as its reference prefix (what
//! `zstd --patch-from` does), and rebuilt from them. Bases are found through resemblance
//! sketches: one super-feature per content-defined piece of a chunk, which similar pieces
//! share with high probability wherever chunk boundaries fall.

use zstd::zstd_safe::{CCtx, CParameter, DCtx, DParameter};

use crate::format::pack::MAX_CHUNK;
pub use crate::format::sketch::{Sketch, MAX_SUPER_FEATURES};

/// Features per piece, folded into the piece's one super-feature.
const FEATURES: usize = 4;
/// A position is sampled when the low bits of its rolling hash are zero: one in 32.
const SAMPLE_MASK: u64 = (1 << 5) - 1;

/// The piece size exponent `p` for a repository whose chunks average `avg` bytes: pieces
/// end where the top `p` bits of the rolling hash are zero, after at least `2^(p-2)` bytes,
/// so a chunk has about 6 pieces (`p` = 17 for the default 1 MiB: pieces of about 160 KiB).
pub fn piece_bits(avg: u32) -> u32 {
    (31 - avg.max(1).leading_zeros()).saturating_sub(3).clamp(5, 25)
}

/// splitmix64: the constants of the gear table and the feature transforms, and the mixer
/// that folds a piece's features into its super-feature.
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

/// Fold a piece's features into its super-feature.
fn fold(feat: &[u64; FEATURES]) -> u64 {
    feat.iter().fold(0u64, |x, f| splitmix(x ^ f))
}

/// The sketch of `data` (repo-format §7.1): a gear rolling hash runs over the bytes and cuts
/// them into pieces at content-defined points; in each piece, at sampled positions, each of 4
/// linear transforms of the hash keeps its maximum, and the 4 maxima fold into the piece's
/// super-feature. Pieces without a sampled position have none. `bits` sizes the pieces
/// ([`piece_bits`]).
pub fn sketch(data: &[u8], bits: u32) -> Sketch {
    let bits = bits.clamp(5, 25);
    let (piece_min, tail_min, shift) = (1usize << (bits - 2), 1usize << (bits - 5), 64 - bits);
    let t = tables();
    let mut out = Vec::new();
    let mut feat = [0u64; FEATURES];
    let mut sampled = false;
    let mut h = 0u64;
    let mut start = 0usize;
    // What happens at position `i` whose rolling hash is `h`: sampling, and maybe a cut.
    let mut at = |i: usize, h: u64, feat: &mut [u64; FEATURES], sampled: &mut bool, start: &mut usize| {
        if h & SAMPLE_MASK == 0 {
            *sampled = true;
            for ((f, m), a) in feat.iter_mut().zip(&t.mul).zip(&t.add) {
                let v = m.wrapping_mul(h).wrapping_add(*a);
                if v > *f {
                    *f = v;
                }
            }
        }
        if i + 1 - *start >= piece_min && h >> shift == 0 && out.len() + 1 < MAX_SUPER_FEATURES {
            if *sampled {
                out.push(fold(feat));
            }
            (*feat, *sampled, *start) = ([0; FEATURES], false, i + 1);
        }
    };
    // Two bytes a step: the hash two positions on is `4h + 2g0 + g1`, so the dependency chain
    // is one shift-add per pair; positions with nothing to do (31 in 32) are skipped at once.
    let mut pairs = data.chunks_exact(2);
    let mut i = 0;
    for p in &mut pairs {
        let (g0, g1) = (t.gear[p[0] as usize], t.gear[p[1] as usize]);
        let h0 = (h << 1).wrapping_add(g0);
        let h1 = (h << 2).wrapping_add((g0 << 1).wrapping_add(g1));
        if (h0 & SAMPLE_MASK == 0) | (h1 & SAMPLE_MASK == 0) | (h0 >> shift == 0) | (h1 >> shift == 0) {
            at(i, h0, &mut feat, &mut sampled, &mut start);
            at(i + 1, h1, &mut feat, &mut sampled, &mut start);
        }
        h = h1;
        i += 2;
    }
    if let [b] = pairs.remainder() {
        h = (h << 1).wrapping_add(t.gear[*b as usize]);
        at(i, h, &mut feat, &mut sampled, &mut start);
    }
    if sampled && (data.len() - start >= tail_min || out.is_empty()) {
        out.push(fold(&feat));
    }
    Sketch(out)
}

/// Window log covering the reference and the chunk, so every byte of the base is reachable.
fn window_log(total: usize) -> u32 {
    let bits = usize::BITS - total.max(1).saturating_sub(1).leading_zeros();
    bits.clamp(10, 27)
}

/// Compress `plain` as a zstd frame whose reference prefix is `base` (the concatenated
/// plaintexts of a delta's bases).
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

/// Rebuild a chunk of exactly `len` bytes from its delta `frame` and its bases' plaintexts
/// concatenated.
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

    /// repo-format §7.1 read literally: one byte at a time.
    fn sketch_as_specified(x: &[u8], p: u32) -> Sketch {
        let g: Vec<u64> = (0..256).map(splitmix).collect();
        let m: Vec<u64> = (0..4).map(|j| splitmix(0x1000 + j) | 1).collect();
        let a: Vec<u64> = (0..4).map(|j| splitmix(0x2000 + j)).collect();
        let fold = |f: &[u64; 4]| f.iter().fold(0u64, |v, fj| splitmix(v ^ fj));
        let (mut h, mut s, mut f, mut sampled, mut out) = (0u64, 0usize, [0u64; 4], false, vec![]);
        for (i, b) in x.iter().enumerate() {
            h = (h << 1).wrapping_add(g[*b as usize]);
            if h & 31 == 0 {
                sampled = true;
                for j in 0..4 {
                    f[j] = f[j].max(m[j].wrapping_mul(h).wrapping_add(a[j]));
                }
            }
            if i + 1 - s >= 1 << (p - 2) && h >> (64 - p) == 0 && out.len() < 127 {
                if sampled {
                    out.push(fold(&f));
                }
                (s, f, sampled) = (i + 1, [0; 4], false);
            }
        }
        if sampled && (x.len() - s >= 1 << (p - 5) || out.is_empty()) {
            out.push(fold(&f));
        }
        Sketch(out)
    }

    #[test]
    fn sketch_computes_what_the_format_specifies() {
        // Small piece bits cut often, so the piece limit, the tail rule and every position of
        // a multi-byte step are exercised; odd lengths leave every remainder.
        for (seed, len) in [
            (1u64, 0usize),
            (2, 1),
            (3, 2),
            (4, 3),
            (5, 4),
            (6, 5),
            (7, 999),
            (8, 70_001),
        ] {
            let x = noise(len, seed);
            for p in [5, 6, 9, 13, 17] {
                assert_eq!(sketch(&x, p), sketch_as_specified(&x, p), "len {len} p {p}");
                let r = &x[len.min(3)..];
                assert_eq!(sketch(r, p), sketch_as_specified(r, p), "len {} p {p}", r.len());
            }
        }
        let big = noise(3 << 20, 9);
        assert_eq!(sketch(&big, 17), sketch_as_specified(&big, 17));
        assert_eq!(
            sketch(&big, 5).0.len(),
            MAX_SUPER_FEATURES,
            "the limit on super-features holds"
        );
        assert_eq!(sketch(&big, 5), sketch_as_specified(&big, 5));
    }

    fn sketch_1m(data: &[u8]) -> Sketch {
        sketch(data, piece_bits(1 << 20))
    }

    #[test]
    fn similar_chunks_share_a_super_feature_and_different_ones_do_not() {
        let base = noise(1 << 20, 11);
        let mut new = base.clone();
        for i in 0..25 {
            let at = i * 40_000 + 77;
            new[at..at + 200].copy_from_slice(&noise(200, i as u64 + 1000));
        }
        let (a, b) = (sketch_1m(&base), sketch_1m(&new));
        assert!(a.0.len() >= 3 && a.0.len() <= 1024 / 32, "{} pieces", a.0.len());
        let shared = b.0.iter().filter(|x| a.0.contains(x)).count();
        assert!(shared * 2 >= b.0.len(), "{a:?} {b:?}");
        let c = sketch_1m(&noise(1 << 20, 12));
        assert!(a.0.iter().all(|x| !c.0.contains(x)));
        assert_eq!(sketch_1m(&base), a, "sketches are deterministic");
        // A chunk cut out of the middle of a stored one (its boundaries moved) still shares
        // the pieces it holds, and so does one that spans two stored chunks.
        let part = sketch_1m(&new[300_000..700_000]);
        assert!(part.0.iter().any(|x| b.0.contains(x)), "{part:?} {b:?}");
        let mut joined = new[600_000..].to_vec();
        joined.extend_from_slice(&noise(1 << 19, 12));
        let j = sketch_1m(&joined);
        assert!(j.0.iter().any(|x| b.0.contains(x)) && j.0.iter().any(|x| c.0.contains(x)));
        // Short chunks have one super-feature; nothing has none but empty or featureless input.
        assert_eq!(sketch_1m(&noise(5000, 3)).0.len(), 1);
        assert!(sketch_1m(&[]).0.is_empty());
        // Pieces scale with the repository's chunk size.
        assert_eq!(
            (piece_bits(1 << 20), piece_bits(64 << 10), piece_bits(256)),
            (17, 13, 5)
        );
        let small = sketch(&base[..64 << 10], piece_bits(64 << 10));
        assert!(small.0.len() >= 3, "{small:?}");
        assert_eq!(window_log(1), 10);
        assert_eq!(window_log(3 << 20), 22);
        assert_eq!(window_log(8 << 20), 23);
    }
}
