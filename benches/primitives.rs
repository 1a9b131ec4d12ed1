//! Criterion micro-benchmarks of the data path's primitives on 4 MiB of dump-like text:
//! chunking, keyed BLAKE3, SHA-256, zstd, XChaCha20-Poly1305, and blob seal/open.
//! Run: cargo bench --bench primitives

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dbbackup::chunking::Chunker;
use dbbackup::crypto::MasterKey;
use dbbackup::format::config::ChunkerParams;
use dbbackup::format::{BlobKind, Id};
use dbbackup::repo::blob::{open_blob, seal_blob};
use dbbackup::repo::index::BlobLocation;
use sha2::{Digest, Sha256};

fn dump_like(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 200);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut row = 0u64;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        row += 1;
        out.extend_from_slice(
            format!(
                "{row}\tcustomer {}\t2024-{:02}-{:02} 10:{:02}:00+00\t{}.{:02}\t{{\"sku\": \"SKU-{}\", \"qty\": {}}}\n",
                x % 50_000,
                1 + (x >> 8) % 12,
                1 + (x >> 12) % 28,
                (x >> 16) % 60,
                (x >> 20) % 10_000,
                (x >> 34) % 100,
                (x >> 40) % 20_000,
                1 + (x >> 50) % 9
            )
            .as_bytes(),
        );
    }
    out.truncate(len);
    out
}

fn primitives(c: &mut Criterion) {
    let data = dump_like(4 << 20);
    let keys = MasterKey::generate().derive();
    let params = ChunkerParams {
        min_size: 64 << 10,
        avg_size: 256 << 10,
        max_size: 1 << 20,
        ..ChunkerParams::default()
    };
    let mut g = c.benchmark_group("primitives");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("fastcdc", |b| {
        b.iter(|| {
            let mut ch = Chunker::new(&data[..], &params, keys.chunker_seed);
            let mut n = 0;
            while let Ok(Some(c)) = ch.next_chunk() {
                n += c.data.len();
            }
            n
        })
    });
    g.bench_function("blake3_keyed", |b| b.iter(|| keys.chunk_id(&data)));
    g.bench_function("sha256", |b| b.iter(|| Sha256::digest(&data)));
    g.bench_function("zstd_1", |b| b.iter(|| zstd::bulk::compress(&data, 1)));
    g.bench_function("zstd_3", |b| b.iter(|| zstd::bulk::compress(&data, 3)));
    let z = zstd::bulk::compress(&data, 3).unwrap_or_default();
    g.bench_function("unzstd", |b| b.iter(|| zstd::bulk::decompress(&z, data.len())));
    g.bench_function("xchacha20poly1305_seal", |b| b.iter(|| keys.seal(b"aad", &data)));
    let sealed = keys.seal(b"aad", &data).unwrap_or_default();
    g.bench_function("xchacha20poly1305_open", |b| b.iter(|| keys.open(b"aad", &sealed)));
    let chunk = &data[..1 << 20];
    let id = keys.chunk_id(chunk);
    g.throughput(Throughput::Bytes(chunk.len() as u64));
    g.bench_function("blob_seal_1MiB_zstd3", |b| {
        b.iter(|| seal_blob(&keys, BlobKind::Data, &id, chunk, 3))
    });
    if let Ok((encoding, s)) = seal_blob(&keys, BlobKind::Data, &id, chunk, 3) {
        let loc = BlobLocation {
            pack: Id::default(),
            kind: BlobKind::Data,
            encoding,
            offset: 0,
            length: s.len() as u32,
            raw_length: chunk.len() as u32,
            bases: Vec::new(),
        };
        g.bench_function("blob_open_1MiB", |b| b.iter(|| open_blob(&keys, &id, &loc, &s)));
    }
    // Near-duplicate chunks: the sketch of a new chunk, and a delta against a similar one
    // (one byte in 40 000 changed).
    let mut near = chunk.to_vec();
    for i in (0..near.len()).step_by(40_000) {
        near[i] ^= 1;
    }
    g.bench_function("sketch_1MiB", |b| b.iter(|| dbbackup::delta::sketch(&near, 17)));
    g.bench_function("delta_encode_1MiB", |b| {
        b.iter(|| dbbackup::delta::encode(chunk, &near, 3))
    });
    if let Ok(d) = dbbackup::delta::encode(chunk, &near, 3) {
        g.bench_function("delta_decode_1MiB", |b| {
            b.iter(|| dbbackup::delta::decode(chunk, &d, near.len()))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(2));
    targets = primitives
}
criterion_main!(benches);
