//! Per-core throughput of each primitive of the data path, measured on a given file (a real
//! dump): FastCDC, keyed BLAKE3, SHA-256, zstd-1/3, XChaCha20-Poly1305. The end-to-end
//! benchmark (benches/e2e.sh) prints its figures beside these limits.
//! Usage: cargo bench --bench limits -- FILE [MAX_MIB]

use std::time::Instant;

use dbbackup::chunking::Chunker;
use dbbackup::crypto::MasterKey;
use dbbackup::format::config::ChunkerParams;
use sha2::{Digest, Sha256};

fn rate(bytes: usize, f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    bytes as f64 / t.elapsed().as_secs_f64() / 1e6
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let Some(path) = args.first() else {
        eprintln!("usage: cargo bench --bench limits -- FILE [MAX_MIB]");
        return;
    };
    let max_mib: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1024);
    let mut data = std::fs::read(path).expect("read input");
    data.truncate(max_mib << 20);
    let n = data.len();
    let keys = MasterKey::generate().derive();
    let params = ChunkerParams::default();
    // Chunking as the pipeline does it: each chunk copied out, then dropped.
    let cdc = rate(n, || {
        let mut c = Chunker::new(&data[..], &params, keys.chunker_seed);
        while let Some(ch) = c.next_chunk().expect("chunk") {
            std::hint::black_box(&ch);
        }
    });
    let mut chunks: Vec<bytes::Bytes> = Vec::new();
    let mut c = Chunker::new(&data[..], &params, keys.chunker_seed);
    while let Some(ch) = c.next_chunk().expect("chunk") {
        chunks.push(ch.data);
    }
    let b3 = rate(n, || {
        for c in &chunks {
            std::hint::black_box(keys.chunk_id(c));
        }
    });
    let sha = rate(n, || {
        std::hint::black_box(Sha256::digest(&data));
    });
    let z1 = rate(n, || {
        for c in &chunks {
            std::hint::black_box(zstd::bulk::compress(c, 1).expect("zstd"));
        }
    });
    let mut compressed = Vec::new();
    let z3 = rate(n, || {
        for c in &chunks {
            compressed.push(zstd::bulk::compress(c, 3).expect("zstd"));
        }
    });
    let zlen: usize = compressed.iter().map(|c| c.len()).sum();
    // AEAD runs on compressed bodies; its rate is given per plaintext byte.
    let aead = rate(n, || {
        for z in &compressed {
            std::hint::black_box(keys.seal(b"aad", z).expect("seal"));
        }
    });
    let unz = rate(n, || {
        for (c, z) in chunks.iter().zip(&compressed) {
            std::hint::black_box(zstd::bulk::decompress(z, c.len()).expect("unzstd"));
        }
    });
    println!(
        "input {} MiB, {} chunks, zstd-3 ratio {:.2}",
        n >> 20,
        chunks.len(),
        n as f64 / zlen as f64
    );
    println!("per-core MB/s: fastcdc {cdc:.0}  blake3-keyed {b3:.0}  sha256 {sha:.0}  zstd-1 {z1:.0}  zstd-3 {z3:.0}  xchacha20poly1305(on zstd output) {aead:.0}  unzstd {unz:.0}");
    // Limits for a 2-core machine, by the stage that bounds each operation.
    let cores = std::thread::available_parallelism().map(|c| c.get()).unwrap_or(1) as f64;
    let per_byte_first = 1.0 / z3 + 1.0 / aead + 1.0 / b3 + 1.0 / cdc + 1.0 / sha;
    let per_byte_again = 1.0 / b3 + 1.0 / cdc + 1.0 / sha;
    let per_byte_restore = 1.0 / unz + 1.0 / aead + 1.0 / b3 + 1.0 / sha;
    // zstd_bound: zstd-3 alone on every core (the reference); all_stages: every
    // stage's CPU cost summed and spread over every core (the best a pipeline can do).
    println!("LIMIT first_snapshot_all_stages {:.0}", cores / per_byte_first);
    println!("LIMIT zstd_bound {:.0}", cores * z3);
    println!("LIMIT resnapshot {:.0}", cores / per_byte_again);
    println!("LIMIT restore {:.0}", cores / per_byte_restore);
}
