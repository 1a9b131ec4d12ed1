//! Shared test helpers: repositories with cheap keys, data generators, the CLI binary.
#![allow(dead_code)]

pub mod faults;
pub mod my;
pub mod ops;
pub mod pg;
pub mod servers;
pub mod wal;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use dbbackup::crypto::KdfParams;
use dbbackup::format::snapshot::{Manifest, Source};
use dbbackup::format::Id;
use dbbackup::progress::NoProgress;
use dbbackup::repo::index::IndexCache;
use dbbackup::repo::lock::Operation;
use dbbackup::repo::session::{ReadLock, Session};
use dbbackup::repo::{InitOptions, Repository};
use dbbackup::snapshot::{SnapshotOptions, SnapshotWriter};
use dbbackup::storage::{parse_location, Store};
use sha2::{Digest, Sha256};

/// Cheap argon2id for tests (the parameters are stored per key file).
pub const WEAK_KDF: KdfParams = KdfParams {
    memory_kib: 256,
    iterations: 1,
    parallelism: 1,
};
pub const PASSWORD: &str = "correct horse battery staple";

/// A library-level repository in a temp dir.
pub struct TestRepo {
    pub dir: tempfile::TempDir,
    pub rt: tokio::runtime::Runtime,
    pub repo: Repository,
    pub index: IndexCache,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

impl TestRepo {
    pub fn new() -> TestRepo {
        Self::with_options(InitOptions::default())
    }

    /// A repository made with `opts` (its key always with the cheap test parameters).
    pub fn with_options(opts: InitOptions) -> TestRepo {
        let dir = tempfile::tempdir().unwrap();
        let rt = runtime();
        let (store, _) = Store::create(
            &parse_location(dir.path().join("repo").to_str().unwrap()).unwrap(),
            rt.handle().clone(),
            Default::default(),
        )
        .unwrap();
        let opts = InitOptions { kdf: WEAK_KDF, ..opts };
        let repo = Repository::init(store, PASSWORD.as_bytes(), &opts).unwrap();
        let index = IndexCache::open(&repo, &dir.path().join("cache")).unwrap();
        TestRepo { dir, rt, repo, index }
    }

    /// The repository at `path` (made through the CLI with [`PASSWORD`]), with an index cache
    /// of its own.
    pub fn open(path: &Path) -> TestRepo {
        let dir = tempfile::tempdir().unwrap();
        let rt = runtime();
        let store = Store::open(&parse_location(path.to_str().unwrap()).unwrap(), rt.handle().clone()).unwrap();
        let repo = Repository::open(store, PASSWORD.as_bytes()).unwrap();
        let index = IndexCache::open(&repo, &dir.path().join("cache")).unwrap();
        index.sync(&repo).unwrap();
        TestRepo { dir, rt, repo, index }
    }

    /// A snapshot session: the repository locked for a snapshot, the index synced.
    pub fn writer(&self) -> Session<'_> {
        Session::begin(&self.repo, &self.index, Operation::Snapshot).unwrap()
    }

    /// A restore session, without a lock (as the tests read while nothing else runs).
    pub fn reader(&self) -> Session<'_> {
        Session::begin_reading(&self.repo, &self.index, Operation::Restore, ReadLock::Skip).unwrap()
    }

    pub fn snapshot(&self, name: &str, r: impl Read + Send) -> (Id, Manifest) {
        let s = self.writer();
        let w = SnapshotWriter::new(&s, SnapshotOptions::named(name)).unwrap();
        w.add_stream(name, r, &NoProgress).unwrap();
        w.finish(Source::Stdin).unwrap()
    }

    /// The chunk ids of a snapshot's only entry, in order.
    pub fn chunk_ids(&self, m: &Manifest) -> Vec<Id> {
        let mut ids = vec![];
        for lid in &m.entries[0].content {
            let list = self
                .rt
                .block_on(dbbackup::repo::blob_reader::fetch_blob(
                    &self.reader(),
                    *lid,
                    dbbackup::format::BlobKind::ContentList,
                ))
                .unwrap();
            for rec in list.chunks_exact(36) {
                ids.push(Id::from_slice(&rec[..32]).unwrap());
            }
        }
        ids
    }

    /// Restore the only entry; returns (size, sha256 hex) of what was written.
    pub fn restore_digest(&self, m: &Manifest) -> (u64, String) {
        let mut sink = HashSink::default();
        let n = dbbackup::restore::restore_entry(&self.reader(), &m.entries[0], &mut sink, &NoProgress).unwrap();
        assert_eq!(n, sink.n);
        (sink.n, hex::encode(sink.h.finalize()))
    }
}

/// A writer that only hashes.
#[derive(Default)]
pub struct HashSink {
    pub h: Sha256,
    pub n: u64,
}

impl Write for HashSink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.h.update(b);
        self.n += b.len() as u64;
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A deterministic stream of `len` bytes, generated on the fly. `kind` selects random bytes
/// or text resembling a table dump (numbers, names, dates, JSON).
pub struct Gen {
    state: u64,
    left: u64,
    dump_like: bool,
    pending: Vec<u8>,
    row: u64,
    pos: u64,
    word_at: u64,
    word: [u8; 8],
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Gen {
    pub fn random(seed: u64, len: u64) -> Gen {
        Gen {
            state: seed | 1,
            left: len,
            dump_like: false,
            pending: vec![],
            row: 0,
            pos: 0,
            word_at: u64::MAX,
            word: [0; 8],
        }
    }
    pub fn dump(seed: u64, len: u64) -> Gen {
        Gen {
            state: seed | 1,
            left: len,
            dump_like: true,
            pending: vec![],
            row: 0,
            pos: 0,
            word_at: u64::MAX,
            word: [0; 8],
        }
    }
    fn next(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        x
    }
    fn fill_row(&mut self) {
        const NAMES: [&str; 8] = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"];
        self.row += 1;
        let r = self.next();
        let line = format!(
            "{}\t{}_{}\t{:04}-{:02}-{:02} {:02}:{:02}:00\t{}.{:02}\t{{\"city\": \"c{}\", \"score\": {}, \"ok\": {}}}\n",
            self.row,
            NAMES[(r % 8) as usize],
            r % 100_000,
            2000 + r % 25,
            1 + (r >> 8) % 12,
            1 + (r >> 12) % 28,
            (r >> 16) % 24,
            (r >> 20) % 60,
            (r >> 24) % 100_000,
            (r >> 40) % 100,
            (r >> 32) % 5000,
            (r >> 44) % 1000,
            r.is_multiple_of(2)
        );
        self.pending = line.into_bytes();
        self.pending.reverse();
    }
}

impl Read for Gen {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize;
        if self.dump_like {
            for b in buf[..n].iter_mut() {
                if self.pending.is_empty() {
                    self.fill_row();
                }
                *b = self.pending.pop().unwrap_or(b'\n');
            }
        } else {
            // Byte k of the stream is byte k%8 of splitmix64(seed + k/8): independent of read sizes.
            for b in buf[..n].iter_mut() {
                let k = self.pos;
                if k.is_multiple_of(8) || self.word_at != k / 8 {
                    self.word_at = k / 8;
                    self.word = splitmix(self.state.wrapping_add(k / 8)).to_le_bytes();
                }
                *b = self.word[(k % 8) as usize];
                self.pos += 1;
            }
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// SHA-256 and length of a reader.
pub fn digest(mut r: impl Read) -> (u64, String) {
    let mut s = HashSink::default();
    std::io::copy(&mut r, &mut s).unwrap();
    (s.n, hex::encode(s.h.finalize()))
}

/// The CLI with an isolated environment: password, cache, config home.
pub fn cli(home: &Path) -> assert_cmd::Command {
    let mut c = assert_cmd::Command::cargo_bin("dbbackup").unwrap();
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("DBBACKUP_CACHE_DIR", home.join("cache"))
        .env("DBBACKUP_PASSWORD", PASSWORD);
    c
}

/// The binary as a plain child process (for tests that signal or race it), same environment
/// as [`cli`].
pub fn spawn_cli(home: &Path) -> std::process::Command {
    let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("dbbackup"));
    c.env("DBBACKUP_PASSWORD", PASSWORD)
        .env("DBBACKUP_CACHE_DIR", home.join("cache"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    c
}

/// A fresh CLI-made repository: (home temp dir, repo path).
pub fn cli_repo() -> (tempfile::TempDir, PathBuf) {
    let home = tempfile::tempdir().unwrap();
    let repo = home.path().join("repo");
    init_repo(home.path(), &repo, &[]);
    (home, repo)
}

/// `dbbackup snapshot --stdin --name NAME` of `data`, with `extra` options; the snapshot id.
#[allow(dead_code)]
pub fn snapshot_stdin(home: &Path, repo: &Path, name: &str, data: impl Into<Vec<u8>>, extra: &[&str]) -> String {
    let out = cli(home)
        .args([
            "-r",
            repo.to_str().unwrap(),
            "--json",
            "snapshot",
            "--stdin",
            "--name",
            name,
        ])
        .args(extra)
        .write_stdin(data.into())
        .output()
        .unwrap();
    json(&out)["id"].as_str().unwrap().to_string()
}

/// `dbbackup init` with cheap keys and `extra` options.
pub fn init_repo(home: &Path, repo: &Path, extra: &[&str]) {
    let o = cli(home)
        .args([
            "init",
            repo.to_str().unwrap(),
            "--kdf-memory-kib",
            "256",
            "--kdf-iterations",
            "1",
        ])
        .args(extra)
        .output()
        .unwrap();
    ok(o, "init");
}

/// Every pack file of a local repository.
pub fn packs(repo: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for d in std::fs::read_dir(repo.join("data")).unwrap() {
        for f in std::fs::read_dir(d.unwrap().path()).unwrap() {
            let f = f.unwrap();
            // Names starting with `.` are temp files of interrupted writes, not packs.
            if !f.file_name().to_string_lossy().starts_with('.') {
                v.push(f.path());
            }
        }
    }
    v.sort();
    v
}

/// Panic unless a helper command succeeded; its output.
pub fn ok(o: std::process::Output, what: &str) -> std::process::Output {
    assert!(
        o.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// The JSON a successful `--json` command printed.
pub fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(out.status.success(), "failed: {}", stderr(out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A command's stderr as text.
pub fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The database names recorded by a `--json snapshot` of a database source.
pub fn db_names(v: &serde_json::Value) -> Vec<String> {
    v["snapshot"]["source"]["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_string())
        .collect()
}

/// Print what a second snapshot after a small change stored, against the first, and assert it
/// is under a quarter of it.
pub fn report_small_change(label: &str, first_stored: u64, second: &serde_json::Value) {
    let s2 = &second["snapshot"]["summary"];
    let stored = s2["bytes_stored"].as_u64().unwrap();
    println!(
        "{label}, 1% of rows changed: second snapshot stored {stored} bytes = {:.1}% of the first snapshot's {first_stored} ({} of {} bytes read were new)",
        100.0 * stored as f64 / first_stored as f64,
        s2["bytes_new"],
        s2["bytes_read"]
    );
    assert!(stored * 4 < first_stored, "{stored} vs {first_stored}");
}

/// The entry paths of a manifest's JSON.
pub fn entry_paths(manifest: &serde_json::Value) -> Vec<String> {
    manifest["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect()
}
