//! Round trips through the library: every stream restores byte for byte, and dedup holds.

mod common;

use common::{digest, Gen, TestRepo};
use std::io::Read;

fn round_trip<R: Read + Send>(t: &TestRepo, name: &str, make: impl Fn() -> R) {
    let want = digest(make());
    let (_, m) = t.snapshot(name, make());
    assert_eq!(m.entries[0].size, want.0);
    assert_eq!(m.entries[0].sha256, want.1, "manifest records the stream's SHA-256");
    assert_eq!(t.restore_digest(&m), want, "{name} restores byte for byte");
}

#[test]
fn empty_one_byte_random_and_dump_like_streams() {
    let t = TestRepo::new();
    round_trip(&t, "empty", || Gen::random(1, 0));
    round_trip(&t, "one", || Gen::random(2, 1));
    round_trip(&t, "random", || Gen::random(3, 7_654_321));
    round_trip(&t, "dump", || Gen::dump(4, 30_000_000));
    let (_, m) = t.snapshot("empty2", Gen::random(1, 0));
    assert_eq!(m.entries[0].chunks, 0);
    assert_eq!(
        m.entries[0].sha256,
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

/// `len` bytes of a random period repeated: a multi-GiB stream whose repository stays small, so
/// the test needs little free disk (a CI run failed with ENOSPC writing 4.5 GiB of random data).
struct Repeating {
    seed: u64,
    period: u64,
    left: u64,
    cur: std::io::Take<Gen>,
}

impl Repeating {
    fn new(seed: u64, period: u64, len: u64) -> Repeating {
        let cur = Read::take(Gen::random(seed, period), 0);
        Repeating {
            seed,
            period,
            left: len,
            cur,
        }
    }
}

impl Read for Repeating {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        if self.cur.limit() == 0 {
            self.cur = Read::take(Gen::random(self.seed, self.period), self.period.min(self.left));
        }
        let n = self.cur.read(buf)?;
        self.left -= n as u64;
        Ok(n)
    }
}

#[test]
fn multi_gib_stream_round_trips() {
    // 4.5 GiB: past every 32-bit boundary, generated on the fly, never held in memory. The
    // period (about 301 MiB, no multiple of any chunk size) repeats, so the chunks after the
    // first period are found again and the repository holds about one period.
    let (period, len) = (301 * (1 << 20) + 12_345, (9u64 << 30) / 2);
    let t = TestRepo::new();
    round_trip(&t, "big", || Repeating::new(5, period, len));
    let (_, m) = t.snapshot("big-again", Repeating::new(5, period, len));
    assert_eq!(m.summary.chunks_new, 0, "the same stream stores no new chunk");
    let stored = t.dir.path().join("repo");
    let on_disk = disk_usage(&stored);
    assert!(
        on_disk < 2 * period,
        "the repository holds {on_disk} bytes for a {period}-byte period"
    );
}

/// Bytes in the files under `dir`.
fn disk_usage(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let md = e.metadata().unwrap();
        total += if md.is_dir() { disk_usage(&e.path()) } else { md.len() };
    }
    total
}

#[test]
fn second_snapshot_of_the_same_200mb_stores_under_one_percent() {
    let t = TestRepo::new();
    let (_, first) = t.snapshot("db", Gen::dump(6, 200_000_000));
    let (_, second) = t.snapshot("db", Gen::dump(6, 200_000_000));
    let s = &second.summary;
    println!(
        "first stored {} bytes; second stored {} bytes of {}",
        first.summary.bytes_stored, s.bytes_stored, s.bytes_read
    );
    assert!(first.summary.bytes_stored > 10_000_000);
    assert_eq!(s.chunks_new, 0);
    assert!(
        s.bytes_stored * 100 < s.bytes_read,
        "second snapshot stored {} bytes",
        s.bytes_stored
    );
    assert_eq!(t.restore_digest(&second), digest(Gen::dump(6, 200_000_000)));
}

/// The 200 MB dump with 1 KB inserted in the middle.
struct Inserted {
    a: std::io::Take<Gen>,
    mid: std::io::Cursor<Vec<u8>>,
    b: Gen,
}

impl std::io::Read for Inserted {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.a.read(buf)?;
        if n > 0 {
            return Ok(n);
        }
        let n = self.mid.read(buf)?;
        if n > 0 {
            return Ok(n);
        }
        self.b.read(buf)
    }
}

#[test]
fn one_kb_inserted_in_the_middle_stores_at_most_three_new_chunks() {
    let t = TestRepo::new();
    let (_, first) = t.snapshot("db", Gen::dump(7, 200_000_000));
    let make = || {
        let mut g = Gen::dump(7, 200_000_000);
        let mut head = vec![0u8; 100_000_000];
        std::io::Read::read_exact(&mut g, &mut head).unwrap();
        Inserted {
            a: Gen::dump(7, 100_000_000).take(100_000_000),
            mid: std::io::Cursor::new(vec![b'x'; 1024]),
            b: g,
        }
    };
    use std::io::Read;
    let (_, second) = t.snapshot("db", make());
    println!(
        "first: {} chunks; after a 1 KiB insert: {} new chunks, {} new bytes",
        first.summary.chunks_total, second.summary.chunks_new, second.summary.bytes_new
    );
    assert!(
        second.summary.chunks_new <= 3,
        "{} new chunks",
        second.summary.chunks_new
    );
    assert_eq!(second.entries[0].size, 200_001_024);
    assert_eq!(t.restore_digest(&second), digest(make()));
}
