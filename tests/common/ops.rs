//! CLI-level helpers for prune and check tests: small-pack repositories, inputs that share
//! parts, restore-and-compare, copies of a repository.

use std::path::{Path, PathBuf};
use std::process::Output;

use super::{cli, digest, json, packs, stderr, Gen};

/// A repository with 1 MiB packs and 64 KiB chunks, so a few MB make many packs.
pub fn small_repo(home: &Path) -> PathBuf {
    let repo = home.join("repo");
    super::init_repo(home, &repo, &["--pack-size", "1M", "--chunk-avg", "65536"]);
    repo
}

/// Input `i` (incompressible, so sizes are real): its own 1.5 MB, then 1.5 MB every input
/// shares, then 0.5 MB shared by pairs.
pub fn input(dir: &Path, i: u64) -> PathBuf {
    let p = dir.join(format!("in{i}"));
    let mut f = std::fs::File::create(&p).unwrap();
    // Gen::random(s) is splitmix64(s), splitmix64(s + 1), ...: streams of nearby seeds overlap,
    // so seeds are kept far apart.
    for g in [
        Gen::random((i + 1) << 32, 1_500_000),
        Gen::random(7 << 56, 1_500_000),
        Gen::random((i / 2 + 1) << 44, 500_000),
    ] {
        let mut g = g;
        std::io::copy(&mut g, &mut f).unwrap();
    }
    p
}

pub fn run(home: &Path, repo: &Path, args: &[&str]) -> Output {
    cli(home).arg("-r").arg(repo).args(args).output().unwrap()
}

/// Snapshot `file` as source `db`; its id.
pub fn snapshot(home: &Path, repo: &Path, file: &Path) -> String {
    snapshot_named(home, repo, "db", file)["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Snapshot `file` as source `name`; the command's JSON result (`id`, `snapshot`).
pub fn snapshot_named(home: &Path, repo: &Path, name: &str, file: &Path) -> serde_json::Value {
    let o = cli(home)
        .arg("-r")
        .arg(repo)
        .args(["--json", "snapshot", "--stdin", "--name", name])
        .pipe_stdin(file)
        .unwrap()
        .output()
        .unwrap();
    json(&o)
}

/// Restore `id` and compare with `file`.
pub fn restores(home: &Path, repo: &Path, id: &str, file: &Path) {
    let target = home.join(format!("restored-{id}"));
    let _ = std::fs::remove_file(&target);
    let o = run(home, repo, &["restore", id, "--target", target.to_str().unwrap()]);
    assert!(o.status.success(), "restore {id}: {}", stderr(&o));
    assert_eq!(
        digest(std::fs::File::open(&target).unwrap()),
        digest(std::fs::File::open(file).unwrap()),
        "snapshot {id} restores byte for byte"
    );
    std::fs::remove_file(&target).unwrap();
}

pub fn snapshot_ids(home: &Path, repo: &Path) -> Vec<String> {
    let v = json(&run(home, repo, &["--json", "snapshots"]));
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

pub fn pack_bytes(repo: &Path) -> u64 {
    packs(repo).iter().map(|p| std::fs::metadata(p).unwrap().len()).sum()
}

/// `check` must pass; returns its JSON report.
pub fn check_clean(home: &Path, repo: &Path, read_data: bool) -> serde_json::Value {
    let mut args = vec!["--json", "check"];
    if read_data {
        args.push("--read-data");
    }
    let o = run(home, repo, &args);
    assert!(
        o.status.success(),
        "check failed ({:?}): {}{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["warnings"], serde_json::json!([]), "check warns: {v}");
    v
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), &dst).unwrap();
        }
    }
}

/// `len` random bytes from `seed`.
pub fn random(seed: u64, len: usize) -> Vec<u8> {
    use rand::{RngCore, SeedableRng};
    let mut v = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

/// `base` with one byte changed every 50 KB: most 64 KiB chunks change a little, so a
/// snapshot of it after one of `base` stores them as deltas.
pub fn edited(base: &[u8], salt: u8) -> Vec<u8> {
    let mut v = base.to_vec();
    for i in (1000..v.len()).step_by(50_000) {
        v[i] ^= salt;
    }
    v
}
