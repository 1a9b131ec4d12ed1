//! The local manifest cache: commands read only the manifests they have not seen, a damaged
//! or swapped cache file is never believed, and snapshots forgotten elsewhere leave the cache.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;
use dbbackup::format::Id;
use dbbackup::repo::Repository;
use dbbackup::storage::{parse_location, Store};

/// Another handle on the repository in `t`, as a second process would open it, using
/// `cache` as its cache directory (or none).
fn handle(t: &TestRepo, cache: Option<&Path>) -> Repository {
    let path = t.dir.path().join("repo");
    let store = Store::open(&parse_location(path.to_str().unwrap()).unwrap(), t.rt.handle().clone()).unwrap();
    let mut r = Repository::open(store, PASSWORD.as_bytes()).unwrap();
    if let Some(c) = cache {
        r.use_cache_dir(c);
    }
    r
}

fn cached_file(t: &TestRepo, cache: &Path, id: &Id) -> std::path::PathBuf {
    cache
        .join(t.repo.config().id.to_hex())
        .join("snapshots")
        .join(id.to_hex())
}

#[test]
fn manifests_are_read_once_and_the_cache_is_never_believed() {
    let mut t = TestRepo::new();
    let cache = t.dir.path().join("mcache");
    t.repo.use_cache_dir(&cache);
    let ids: Vec<Id> = (0..4u64)
        .map(|i| t.snapshot(&format!("db{i}"), Gen::random(i, 100_000 + i)).0)
        .collect();
    let uncached = handle(&t, None).manifests().unwrap();
    assert_eq!(uncached.len(), 4);

    // The writer kept what it wrote: a new process reads no manifest from the repository.
    let r = handle(&t, Some(&cache));
    assert_eq!(r.manifests().unwrap(), uncached);
    assert_eq!(r.manifest_reads(), 0);
    for id in &ids {
        let f = cached_file(&t, &cache, id);
        assert_eq!(
            std::fs::read(&f).unwrap(),
            std::fs::read(t.dir.path().join("repo/snapshots").join(id.to_hex())).unwrap()
        );
        assert_eq!(std::fs::metadata(&f).unwrap().permissions().mode() & 0o777, 0o600);
    }
    assert_eq!(
        std::fs::metadata(cache.join(t.repo.config().id.to_hex()).join("snapshots"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );

    // Without a cache every manifest is read.
    let r = handle(&t, None);
    r.manifests().unwrap();
    assert_eq!(r.manifest_reads(), 4);

    // A flipped byte in one cached file, another file replaced by a different manifest's
    // bytes, a third truncated: each is read again from the repository and the cache repaired.
    let f0 = cached_file(&t, &cache, &ids[0]);
    let mut b = std::fs::read(&f0).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 1;
    std::fs::write(&f0, &b).unwrap();
    std::fs::copy(cached_file(&t, &cache, &ids[3]), cached_file(&t, &cache, &ids[1])).unwrap();
    let f2 = cached_file(&t, &cache, &ids[2]);
    let len = std::fs::metadata(&f2).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&f2)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let r = handle(&t, Some(&cache));
    assert_eq!(r.manifests().unwrap(), uncached);
    assert_eq!(r.manifest_reads(), 3);
    let r = handle(&t, Some(&cache));
    assert_eq!(r.manifests().unwrap(), uncached);
    assert_eq!(r.manifest_reads(), 0, "the damaged files were replaced");

    // A snapshot forgotten by another host leaves the cache at the next listing; leftovers of
    // an interrupted cache write go too.
    handle(&t, None).remove_snapshot(&ids[1]).unwrap();
    let junk = cache
        .join(t.repo.config().id.to_hex())
        .join("snapshots")
        .join(".x.tmp-1-0");
    std::fs::write(&junk, b"partial").unwrap();
    let r = handle(&t, Some(&cache));
    let left = r.manifests().unwrap();
    assert_eq!(left.len(), 3);
    assert!(left.iter().all(|(id, _)| *id != ids[1]));
    assert!(!cached_file(&t, &cache, &ids[1]).exists());
    assert!(!junk.exists());
    assert_eq!(r.manifest_reads(), 0);
}

#[test]
fn an_id_prefix_reads_only_the_manifests_it_matches() {
    let t = TestRepo::new();
    let ids: Vec<Id> = (0..6u64)
        .map(|i| t.snapshot("db", Gen::random(10 + i, 50_000)).0)
        .collect();
    let r = handle(&t, None);
    let (id, m) = r.find_snapshot(&ids[2].to_hex()[..12], None).unwrap();
    assert_eq!(id, ids[2]);
    assert_eq!(m, t.repo.load_manifest(&ids[2]).unwrap());
    assert_eq!(r.manifest_reads(), 1);
    // `latest` must see them all.
    let r = handle(&t, None);
    assert_eq!(r.find_snapshot("latest", Some("db")).unwrap().0, ids[5]);
    assert_eq!(r.manifest_reads(), 6);
}

#[test]
fn latest_refuses_to_guess_past_an_unreadable_manifest() {
    let t = TestRepo::new();
    let ids: Vec<Id> = (0..3u64)
        .map(|i| t.snapshot("db", Gen::random(20 + i, 50_000)).0)
        .collect();
    for dir in ["snapshots", "registry"] {
        let p = t.dir.path().join("repo").join(dir).join(ids[0].to_hex());
        let mut b = std::fs::read(&p).unwrap();
        let last = b.len() - 1;
        b[last] ^= 1;
        std::fs::write(&p, &b).unwrap();
    }
    let r = handle(&t, None);
    let e = r.find_snapshot("latest", Some("db")).unwrap_err();
    assert_eq!(e.kind(), dbbackup::ErrorKind::Corrupt);
    assert!(
        e.to_string().contains("cannot tell which snapshot is the latest"),
        "{e}"
    );
    assert!(e.to_string().contains(&ids[0].to_hex()), "{e}");
    // The others are still found by id.
    assert_eq!(r.find_snapshot(&ids[2].to_hex()[..10], None).unwrap().0, ids[2]);
}

/// `snapshot --stdin` of `Gen::random(seed, 20_000)` through the CLI; the snapshot id.
fn cli_snapshot(home: &Path, repo: &Path, name: &str, seed: u64) -> String {
    snapshot_stdin(home, repo, name, random_bytes(seed), &[])
}

fn random_bytes(seed: u64) -> Vec<u8> {
    let mut v = vec![];
    std::io::copy(&mut Gen::random(seed, 20_000), &mut v).unwrap();
    v
}

#[test]
fn snapshots_lists_what_it_can_read_and_exits_65_for_the_rest() {
    let (home, repo) = cli_repo();
    let ids: Vec<String> = (0..3).map(|i| cli_snapshot(home.path(), &repo, "db", 30 + i)).collect();
    // The CLI keeps what it writes in the cache beside the index.
    let cached = walk_files(&home.path().join("cache"))
        .into_iter()
        .filter(|p| p.parent().is_some_and(|d| d.ends_with("snapshots")))
        .count();
    assert_eq!(cached, 3);
    // Both copies of the middle snapshot's manifest damaged, the cache emptied.
    for dir in ["snapshots", "registry"] {
        std::fs::write(repo.join(dir).join(&ids[1]), b"garbage").unwrap();
    }
    std::fs::remove_dir_all(home.path().join("cache")).unwrap();
    let out = cli(home.path())
        .args(["-r", repo.to_str().unwrap(), "--json", "snapshots"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(65), "{}", stderr(&out));
    // One JSON document: the failure, with the list it could read as its `result`.
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "corrupt", "{v}");
    let listed: Vec<String> = v["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, vec![ids[0].clone(), ids[2].clone()]);
    assert!(stderr(&out).contains(&ids[1][..8]), "{}", stderr(&out));
    // `stats` gives the figures of the other two, and exits 65 naming it.
    let out = cli(home.path())
        .args(["-r", repo.to_str().unwrap(), "--json", "stats"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(65), "{}", stderr(&out));
    assert!(stderr(&out).contains(&ids[1][..8]), "{}", stderr(&out));
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["snapshots"], 2, "{st}");
    assert_eq!(st["unreadable_snapshots"], 1, "{st}");
    assert_eq!(st["logical_bytes"], 40_000, "{st}");
    // `latest` cannot be resolved past it; an id can.
    let out = cli(home.path())
        .args(["-r", repo.to_str().unwrap(), "restore", "latest", "--target", "-"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(65), "{}", stderr(&out));
    let out = cli(home.path())
        .args(["-r", repo.to_str().unwrap(), "restore", &ids[2][..10], "--target", "-"])
        .output()
        .unwrap();
    assert_eq!(
        ok(out, "restore by id").stdout,
        std::io::Read::bytes(Gen::random(32, 20_000))
            .map(Result::unwrap)
            .collect::<Vec<u8>>()
    );
}

fn walk_files(p: &Path) -> Vec<std::path::PathBuf> {
    let mut v = vec![];
    for e in std::fs::read_dir(p).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            v.extend(walk_files(&p));
        } else {
            v.push(p);
        }
    }
    v
}
