//! The local index cache is never believed over the repository: a cache left from before a
//! prune (finished or killed) is brought up to date before anything is read or reused, and a
//! cache that names packs the repository does not have is rebuilt before a restore writes a
//! byte and before a snapshot commits (which then fails with exit 75, committing nothing).

mod common;

use std::path::Path;

use common::ops::{check_clean, copy_dir, edited, random, small_repo};
use common::{cli, json, stderr};

/// `snapshot --stdin` of `data` with the cache in `cache`: the command's output.
fn snap(home: &Path, repo: &Path, cache: &Path, data: &[u8]) -> std::process::Output {
    cli(home)
        .env("DBBACKUP_CACHE_DIR", cache)
        .arg("-r")
        .arg(repo)
        .args(["--json", "snapshot", "--stdin", "--name", "db"])
        .write_stdin(data.to_vec())
        .output()
        .unwrap()
}

fn id_of(o: &std::process::Output) -> String {
    json(o)["id"].as_str().unwrap().to_string()
}

fn restore(home: &Path, repo: &Path, cache: &Path, id: &str) -> std::process::Output {
    cli(home)
        .env("DBBACKUP_CACHE_DIR", cache)
        .arg("-r")
        .arg(repo)
        .args(["-v", "restore", id, "--target", "-"])
        .output()
        .unwrap()
}

#[test]
fn a_cache_from_before_a_prune_is_brought_up_to_date_before_it_is_used() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let repo = h.join("repo");
    let cache = h.join("cache");
    let x = random(1, 2_000_000);
    let c = init_like(h, &repo, &cache, &x);
    // `stale` stays as it was before any prune.
    let stale = h.join("stale");
    copy_dir(&cache, &stale);

    // A prune killed after writing its new index, before deleting the old segments, run
    // with a cache of its own.
    let kill_at = first_index_delete(h, &repo);
    let o = cli(h)
        .env("DBBACKUP_CACHE_DIR", h.join("other"))
        .env("DBBACKUP_TEST_KILL_AT_MUTATION", kill_at.to_string())
        .arg("-r")
        .arg(&repo)
        .args(["prune", "--max-unused", "0%"])
        .output()
        .unwrap();
    assert!(!o.status.success(), "prune was killed: {}", stderr(&o));
    // `mid` syncs now: it knows the old and the new segments side by side.
    let mid = h.join("mid");
    copy_dir(&stale, &mid);
    let r = restore(h, &repo, &mid, &c);
    assert!(r.status.success() && r.stdout == edited(&x, 0x22), "{}", stderr(&r));

    // Another prune, with its own cache, finishes the job: old segments and packs go.
    std::fs::remove_dir_all(repo.join("locks")).unwrap();
    let o = cli(h)
        .env("DBBACKUP_CACHE_DIR", h.join("other"))
        .arg("-r")
        .arg(&repo)
        .args(["--json", "prune", "--max-unused", "0%"])
        .output()
        .unwrap();
    assert!(
        json(&o)["prune"]["packs_deleted"].as_u64().unwrap() > 0,
        "{}",
        stderr(&o)
    );

    for cache in [&stale, &mid] {
        // A snapshot through the old cache reuses only what is there; everything restores.
        let again = edited(&x, 0x11);
        let d = id_of(&snap(h, &repo, cache, &again));
        let empty = tempfile::tempdir().unwrap();
        let r = restore(h, &repo, empty.path(), &d);
        assert!(r.status.success() && r.stdout == again, "{}", stderr(&r));
        let r = restore(h, &repo, cache, &c);
        assert!(r.status.success() && r.stdout == edited(&x, 0x22), "{}", stderr(&r));
    }
    check_clean(h, &repo, true);
}

/// Three snapshots, of `x` and of two edits of it (stored as deltas), the first two
/// forgotten, the cache synced; the id of the third.
fn init_like(home: &Path, repo: &Path, cache: &Path, x: &[u8]) -> String {
    common::init_repo(home, repo, &["--pack-size", "1M", "--chunk-avg", "65536"]);
    let a = id_of(&snap(home, repo, cache, x));
    let b = id_of(&snap(home, repo, cache, &edited(x, 0x11)));
    let c = id_of(&snap(home, repo, cache, &edited(x, 0x22)));
    common::ok(
        cli(home)
            .env("DBBACKUP_CACHE_DIR", cache)
            .arg("-r")
            .arg(repo)
            .args(["forget", &a, &b])
            .output()
            .unwrap(),
        "forget",
    );
    c
}

/// The storage write at which a prune of a copy of `repo` first deletes an index segment.
fn first_index_delete(home: &Path, repo: &Path) -> u64 {
    let trial = home.join("trial");
    copy_dir(repo, &trial);
    let o = cli(home)
        .env("DBBACKUP_CACHE_DIR", home.join("trial-cache"))
        .env("DBBACKUP_TEST_KILL_AT_MUTATION", "0")
        .arg("-r")
        .arg(&trial)
        .args(["prune", "--max-unused", "0%"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let n = stderr(&o)
        .lines()
        .filter(|l| l.starts_with("test-mutation "))
        .find(|l| l.contains(" delete index/"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .expect("prune deletes an index segment");
    std::fs::remove_dir_all(&trial).unwrap();
    n
}

/// Point every pack number of the index cache in `cache` at a pack that does not exist, as
/// a damaged cache file could (its segment list still matches the repository).
fn scramble(cache: &Path) {
    use redb::{ReadableTable, TableDefinition};
    const PACK_ID: TableDefinition<u64, [u8; 32]> = TableDefinition::new("pack_id");
    let dir = std::fs::read_dir(cache).unwrap().find_map(|e| {
        let p = e.unwrap().path();
        p.join("index.redb").exists().then_some(p)
    });
    let db = redb::Database::open(dir.unwrap().join("index.redb")).unwrap();
    let tx = db.begin_write().unwrap();
    {
        let mut t = tx.open_table(PACK_ID).unwrap();
        let keys: Vec<u64> = t.iter().unwrap().map(|r| r.unwrap().0.value()).collect();
        for k in keys {
            let mut bogus = [0x5a; 32];
            bogus[..8].copy_from_slice(&k.to_le_bytes());
            t.insert(k, bogus).unwrap();
        }
    }
    tx.commit().unwrap();
}

#[test]
fn a_cache_naming_packs_that_are_gone_is_rebuilt_before_restore_and_before_commit() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let repo = small_repo(h);
    let cache = h.join("cache");
    let x = random(2, 1_500_000);
    let a = id_of(&snap(h, &repo, &cache, &x));

    // Restore: the cache is rebuilt before the first byte is written.
    scramble(&cache);
    let r = restore(h, &repo, &cache, &a);
    assert!(r.status.success(), "{}", stderr(&r));
    assert!(r.stdout == x, "restored bytes differ");
    assert!(stderr(&r).contains("rebuilding"), "{}", stderr(&r));

    // Snapshot: reusing chunks through the damaged cache commits nothing (exit 75) ...
    scramble(&cache);
    let before = common::ops::snapshot_ids(h, &repo);
    let o = snap(h, &repo, &cache, &x);
    assert_eq!(o.status.code(), Some(75), "{}", stderr(&o));
    assert_eq!(common::ops::snapshot_ids(h, &repo), before, "nothing committed");
    // ... and the next run, with the rebuilt cache, succeeds and restores.
    let b = id_of(&snap(h, &repo, &cache, &x));
    let empty = tempfile::tempdir().unwrap();
    let r = restore(h, &repo, empty.path(), &b);
    assert!(r.status.success() && r.stdout == x, "{}", stderr(&r));
    check_clean(h, &repo, true);
}

#[test]
fn a_delta_copy_in_a_plan_does_not_change_the_bases_of_the_indexed_copy() {
    use dbbackup::format::index::{IndexSegment, PackBlobs};
    use dbbackup::format::pack::BlobEntry;
    use dbbackup::format::pending::DeletionPlan;
    use dbbackup::format::{BlobKind, Encoding, Id};

    // One chunk stored twice as a delta against different bases: the copy a segment names
    // (indexed) and one a deletion plan names (a writer stored it again while the first
    // was condemned, or the other way round).
    let t = common::TestRepo::new();
    let chunk = Id::of_stored(b"chunk");
    let delta = |pack: &[u8], base: &[u8]| PackBlobs {
        pack: Id::of_stored(pack),
        blobs: vec![BlobEntry {
            id: chunk,
            kind: BlobKind::Data,
            encoding: Encoding::ZstdDelta,
            offset: 0,
            length: 100,
            raw_length: 1000,
            bases: vec![Id::of_stored(base)],
        }],
    };
    let seg = IndexSegment {
        supersedes: vec![],
        packs: vec![delta(b"indexed pack", b"base one")],
        sketches: vec![],
    };
    t.repo.save(&seg).unwrap();
    let plan = DeletionPlan {
        created: jiff::Timestamp::now(),
        packs: vec![delta(b"condemned pack", b"base two")],
    };
    t.repo.save(&plan).unwrap();
    t.index.rebuild(&t.repo).unwrap();
    for l in [
        t.index.lookup(&chunk).unwrap().unwrap(),
        t.index.lookup_indexed(&chunk).unwrap().unwrap(),
    ] {
        assert_eq!(l.pack, Id::of_stored(b"indexed pack"));
        assert_eq!(l.bases, vec![Id::of_stored(b"base one")], "bases of the copy named");
    }
    let p = t.index.lookup_planned(&chunk).unwrap().unwrap();
    assert_eq!(p.pack, Id::of_stored(b"condemned pack"));
    assert_eq!(p.bases, vec![Id::of_stored(b"base two")]);
}

#[test]
fn a_plain_copy_replaces_a_delta_whatever_the_order() {
    use dbbackup::format::index::{IndexSegment, PackBlobs};
    use dbbackup::format::pack::BlobEntry;
    use dbbackup::format::{BlobKind, Encoding, Id};

    // One chunk stored three times: as a delta in the pack with the lowest id (which the
    // tie-break by (pack, offset) alone would choose), plainly in a pack with a higher id,
    // and as a delta again in a segment written after the plain copy was indexed. A base
    // must be plain (delta depth 1), so the plain copy is the one every lookup returns.
    let t = common::TestRepo::new();
    let chunk = Id::of_stored(b"chunk");
    let copy = |pack: Id, bases: Vec<Id>| PackBlobs {
        pack,
        blobs: vec![BlobEntry {
            id: chunk,
            kind: BlobKind::Data,
            encoding: if bases.is_empty() {
                Encoding::Zstd
            } else {
                Encoding::ZstdDelta
            },
            offset: 0,
            length: 100,
            raw_length: 1000,
            bases,
        }],
    };
    let (low, mid, high) = (Id([0x01; 32]), Id([0x02; 32]), Id([0xfe; 32]));
    let segment = |packs| IndexSegment {
        supersedes: vec![],
        packs,
        sketches: vec![],
    };
    t.repo
        .save(&segment(vec![copy(mid, vec![Id::of_stored(b"base")])]))
        .unwrap();
    t.repo.save(&segment(vec![copy(high, vec![])])).unwrap();
    let plain = |what: &str| {
        for l in [
            t.index.lookup(&chunk).unwrap().unwrap(),
            t.index.lookup_indexed(&chunk).unwrap().unwrap(),
        ] {
            assert_eq!((l.pack, l.encoding), (high, Encoding::Zstd), "{what}");
            assert!(l.bases.is_empty(), "{what}: {:?}", l.bases);
        }
    };
    t.index.rebuild(&t.repo).unwrap();
    plain("after a rebuild");
    t.repo
        .save(&segment(vec![copy(low, vec![Id::of_stored(b"other base")])]))
        .unwrap();
    t.index.sync(&t.repo).unwrap();
    plain("after a later delta copy is synced");
    t.index.rebuild(&t.repo).unwrap();
    plain("after rebuilding with all three");
}
