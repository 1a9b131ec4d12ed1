//! A damaged repository made consistent again: `check` finds a delta whose base the index
//! lost, from the index alone, naming the snapshots it affects; prune drops such a delta when
//! no snapshot needs it; `repair index` rebuilds a deleted or damaged index from the packs;
//! `repair snapshots` forgets what lost its chunks, and rewrites a database snapshot without
//! the database it can no longer restore.

mod common;

use std::path::{Path, PathBuf};

use common::ops::{check_clean, copy_dir, edited, random, run, small_repo};
use common::{json, packs, stderr, TestRepo};
use dbbackup::format::index::IndexSegment;
use dbbackup::format::RepoObject;
use dbbackup::format::{Id, ObjectKind};

/// `snapshot --stdin` of `data` as `name`; its JSON.
fn snap(home: &Path, repo: &Path, name: &str, data: &[u8]) -> serde_json::Value {
    let f = home.join(format!("in-{name}"));
    std::fs::write(&f, data).unwrap();
    let o = common::cli(home)
        .arg("-r")
        .arg(repo)
        .args(["--json", "snapshot", "--stdin", "--name", name])
        .pipe_stdin(&f)
        .unwrap()
        .output()
        .unwrap();
    json(&o)
}

fn restore_bytes(home: &Path, repo: &Path, id: &str, cache: &Path) -> Vec<u8> {
    let o = common::cli(home)
        .env("DBBACKUP_CACHE_DIR", cache)
        .arg("-r")
        .arg(repo)
        .args(["restore", id, "--target", "-"])
        .output()
        .unwrap();
    assert!(o.status.success(), "restore {id}: {}", stderr(&o));
    o.stdout
}

/// Every index segment of the repository at `path`, decoded.
fn segments(t: &TestRepo) -> Vec<(Id, IndexSegment)> {
    t.repo
        .list_ids(ObjectKind::Index)
        .unwrap()
        .into_iter()
        .map(|id| {
            let b = t.repo.load_object(ObjectKind::Index, &id).unwrap();
            (id, IndexSegment::decode("object", &b).unwrap())
        })
        .collect()
}

/// Replace the whole index with one segment that names everything but chunk `gone`.
fn unindex(repo: &Path, gone: &Id) {
    let t = TestRepo::open(repo);
    let old = segments(&t);
    let mut packs = Vec::new();
    for (_, s) in &old {
        for p in &s.packs {
            let mut p = p.clone();
            p.blobs.retain(|b| b.id != *gone);
            packs.push(p);
        }
    }
    let seg = IndexSegment {
        supersedes: old.iter().map(|(id, _)| *id).collect(),
        packs,
        sketches: vec![],
    };
    t.repo.save(&seg).unwrap();
    for (id, _) in old {
        t.repo.store().delete(&format!("index/{id}")).unwrap();
    }
}

/// (delta chunk, its first base) of some delta entry in the index.
fn a_delta(repo: &Path) -> (Id, Id) {
    let t = TestRepo::open(repo);
    for (_, s) in segments(&t) {
        for p in s.packs {
            if let Some(b) = p.blobs.into_iter().find(|b| !b.bases.is_empty()) {
                return (b.id, b.bases[0]);
            }
        }
    }
    panic!("no delta in the index");
}

fn check_json(home: &Path, repo: &Path) -> (Option<i32>, serde_json::Value) {
    let o = run(home, repo, &["--json", "check"]);
    (o.status.code(), serde_json::from_slice(&o.stdout).unwrap())
}

/// The problem `check` reports about `object`.
fn problem<'a>(report: &'a serde_json::Value, object: &str) -> Option<&'a serde_json::Value> {
    report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["object"] == object)
}

#[test]
fn check_finds_a_delta_whose_base_the_index_lost_and_prune_drops_it() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let repo = small_repo(h);
    let x = random(1, 2_000_000);
    let a = snap(h, &repo, "a", &x);
    let b = snap(h, &repo, "b", &edited(&x, 0x55));
    assert!(b["snapshot"]["summary"]["chunks_delta"].as_u64().unwrap() > 0, "{b:#}");
    let (a, b) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    common::ok(run(h, &repo, &["forget", a]), "forget a");

    // The index loses a base (a's chunk) that one of b's deltas needs.
    let (delta, base) = a_delta(&repo);
    unindex(&repo, &base);
    let (code, r) = check_json(h, &repo);
    assert_eq!(code, Some(65), "{r:#}");
    let p = problem(&r, &format!("chunk {delta}")).unwrap_or_else(|| panic!("no problem for {delta}: {r:#}"));
    let msg = p["message"].as_str().unwrap();
    assert!(
        msg.contains("indexed as a delta") && msg.contains(&base.to_string()),
        "{msg}"
    );
    assert_eq!(p["affects"], serde_json::json!([b]), "{p:#}");

    // With no snapshot needing it, the dangling delta is still found from the index alone ...
    common::ok(run(h, &repo, &["forget", b]), "forget b");
    let (code, r) = check_json(h, &repo);
    assert_eq!(code, Some(65), "{r:#}");
    let p = problem(&r, &format!("chunk {delta}")).unwrap_or_else(|| panic!("no problem for {delta}: {r:#}"));
    assert_eq!(p["affects"], serde_json::json!([]), "{p:#}");

    // ... and a new snapshot of the same bytes does not reuse it: it stores the chunk again.
    let again = snap(h, &repo, "c", &edited(&x, 0x55));
    let c = again["id"].as_str().unwrap().to_string();
    assert!(
        again["snapshot"]["summary"]["chunks_new"].as_u64().unwrap() > 0,
        "{again:#}"
    );

    // Prune leaves it out of the new index; everything checks clean and c restores.
    let v = json(&run(h, &repo, &["--json", "prune", "--max-unused", "unlimited"]));
    assert!(v["prune"]["dangling_deltas_dropped"].as_u64().unwrap() >= 1, "{v:#}");
    check_clean(h, &repo, true);
    let empty = tempfile::tempdir().unwrap();
    assert_eq!(restore_bytes(h, &repo, &c, empty.path()), edited(&x, 0x55));
}

/// A repository of snapshots with deltas, pruned so that one index segment remains.
fn pruned_repo(h: &Path) -> (PathBuf, Vec<(String, Vec<u8>)>) {
    let repo = small_repo(h);
    let x = random(2, 1_500_000);
    let mut kept = Vec::new();
    for (i, salt) in [0u8, 0x11, 0x22, 0x33].iter().enumerate() {
        let data = if *salt == 0 { x.clone() } else { edited(&x, *salt) };
        let v = snap(h, &repo, &format!("s{i}"), &data);
        kept.push((v["id"].as_str().unwrap().to_string(), data));
    }
    common::ok(run(h, &repo, &["forget", &kept[1].0]), "forget");
    kept.remove(1);
    common::ok(run(h, &repo, &["prune", "--max-unused", "0%"]), "prune");
    (repo, kept)
}

fn all_restore(h: &Path, repo: &Path, kept: &[(String, Vec<u8>)]) {
    for (id, data) in kept {
        let empty = tempfile::tempdir().unwrap();
        assert!(restore_bytes(h, repo, id, empty.path()) == *data, "snapshot {id}");
        assert!(restore_bytes(h, repo, id, &h.join("cache")) == *data, "snapshot {id}");
    }
}

#[test]
fn repair_index_brings_back_a_repository_whose_only_segment_was_deleted_or_damaged() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let (base, kept) = pruned_repo(h);
    let segs: Vec<PathBuf> = std::fs::read_dir(base.join("index"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(segs.len(), 1, "prune left one segment");

    for how in ["delete", "flip"] {
        let dir = h.join(how);
        let repo = dir.join("repo");
        copy_dir(&base, &repo);
        let seg = repo.join("index").join(segs[0].file_name().unwrap());
        if how == "delete" {
            std::fs::remove_file(&seg).unwrap();
        } else {
            let mut b = std::fs::read(&seg).unwrap();
            let mid = b.len() / 2;
            b[mid] ^= 1;
            std::fs::write(&seg, b).unwrap();
        }
        // Nothing restores, and prune refuses.
        let o = run(&dir, &repo, &["restore", &kept[0].0, "--target", "-"]);
        assert_eq!(o.status.code(), Some(65), "{how}: {}", stderr(&o));
        assert_eq!(run(&dir, &repo, &["prune"]).status.code(), Some(65), "{how}");

        // A dry run says what it would do and changes nothing.
        let listing = std::fs::read_dir(repo.join("index")).unwrap().count();
        let v = json(&run(&dir, &repo, &["--json", "repair", "index", "--dry-run"]));
        assert_eq!(
            v["packs_from_headers"].as_u64().unwrap(),
            packs(&repo).len() as u64,
            "{v:#}"
        );
        assert_eq!(std::fs::read_dir(repo.join("index")).unwrap().count(), listing);

        let v = json(&run(&dir, &repo, &["--json", "repair", "index"]));
        assert_eq!(v["segments_written"], 1, "{v:#}");
        assert_eq!(
            v["segments_damaged"].as_array().unwrap().len(),
            usize::from(how == "flip"),
            "{v:#}"
        );
        all_restore(&dir, &repo, &kept);
        check_clean(&dir, &repo, true);
        // The repaired repository works on: prune, a new snapshot deduplicates.
        common::ok(run(&dir, &repo, &["prune", "--max-unused", "0%"]), "prune after repair");
        let again = snap(&dir, &repo, "again", &kept[0].1);
        assert_eq!(again["snapshot"]["summary"]["chunks_new"], 0, "{again:#}");
        all_restore(&dir, &repo, &kept);
    }
}

#[test]
fn repair_snapshots_forgets_what_lost_chunks_and_keeps_the_rest() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let repo = small_repo(h);
    let (x, y) = (random(3, 1_200_000), random(4, 1_200_000));
    let sx = snap(h, &repo, "x", &x)["id"].as_str().unwrap().to_string();
    let sy = snap(h, &repo, "y", &y)["id"].as_str().unwrap().to_string();
    let before = packs(&repo);
    // y's packs are the ones written last: delete one of them.
    let sx_packs: Vec<PathBuf> = {
        let t = TestRepo::open(&repo);
        let (_, m) = t.repo.find_snapshot(&sx, None).unwrap();
        let ids = t.chunk_ids(&m);
        before
            .iter()
            .filter(|p| {
                let pid: Id = p.file_name().unwrap().to_str().unwrap().parse().unwrap();
                ids.iter().any(|c| t.index.lookup(c).unwrap().unwrap().pack == pid)
            })
            .cloned()
            .collect()
    };
    let victim = before.iter().find(|p| !sx_packs.contains(p)).unwrap();
    std::fs::remove_file(victim).unwrap();
    let (code, r) = check_json(h, &repo);
    assert_eq!(code, Some(65));
    assert!(r["errors"].to_string().contains(&sy), "{r:#}");

    let v = json(&run(h, &repo, &["--json", "repair", "snapshots", "--dry-run"]));
    assert_eq!(v["forgotten"][0]["id"], sy, "{v:#}");
    assert_eq!(
        common::ops::snapshot_ids(h, &repo).len(),
        2,
        "a dry run forgets nothing"
    );

    let v = json(&run(h, &repo, &["--json", "repair", "snapshots"]));
    assert_eq!(v["forgotten"].as_array().unwrap().len(), 1, "{v:#}");
    assert_eq!(v["intact"], 1);
    assert_eq!(common::ops::snapshot_ids(h, &repo), vec![sx.clone()]);
    common::ok(run(h, &repo, &["prune"]), "prune after repair");
    check_clean(h, &repo, true);
    let empty = tempfile::tempdir().unwrap();
    assert!(restore_bytes(h, &repo, &sx, empty.path()) == x);
}

#[test]
fn repair_snapshots_rewrites_a_database_snapshot_without_the_lost_database() {
    use dbbackup::format::snapshot::Source;
    use dbbackup::progress::NoProgress;
    use dbbackup::snapshot::{SnapshotOptions, SnapshotWriter};

    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let repo = small_repo(h);
    let (shop, crm) = (random(5, 2_500_000), random(6, 2_500_000));
    // A two-database snapshot, as `snapshot --all` records one (custom format).
    let t = TestRepo::open(&repo);
    let mut opts = SnapshotOptions::named("all");
    opts.deltas = false;
    let session = t.writer();
    let w = SnapshotWriter::new(&session, opts).unwrap();
    let shop_entry = w.add_stream("shop.dump", &shop[..], &NoProgress).unwrap();
    w.add_stream("crm.dump", &crm[..], &NoProgress).unwrap();
    let src: Source = serde_json::from_value(serde_json::json!({
        "kind": "database", "engine": "postgresql", "server_version": "15.0", "host": null,
        "port": null, "user": null, "dump_tool": "pg_dump (PostgreSQL) 15.0", "format": "custom",
        "all": true, "globals": null,
        "databases": [
            {"name": "shop", "size": 1, "path": "shop.dump"},
            {"name": "crm", "size": 1, "path": "crm.dump"}
        ]
    }))
    .unwrap();
    let (id, _) = w.finish(src).unwrap();
    drop(session);
    // Lose a pack only shop's stream uses: the first it filled (crm's chunks came after).
    let shop_ids = {
        let mut ids = vec![];
        for lid in &shop_entry.content {
            let list =
                t.rt.block_on(dbbackup::repo::blob_reader::fetch_blob(
                    &t.reader(),
                    *lid,
                    dbbackup::format::BlobKind::ContentList,
                ))
                .unwrap();
            ids.extend(list.chunks_exact(36).map(|r| Id::from_slice(&r[..32]).unwrap()));
        }
        ids
    };
    let pack = t.index.lookup(&shop_ids[0]).unwrap().unwrap().pack;
    drop(t);
    let victim = packs(&repo)
        .into_iter()
        .find(|p| p.ends_with(pack.to_string()))
        .unwrap();
    std::fs::remove_file(victim).unwrap();

    let v = json(&run(h, &repo, &["--json", "repair", "snapshots"]));
    let r = &v["rewritten"][0];
    assert_eq!(r["id"], id.to_string(), "{v:#}");
    assert_eq!(r["kept"], serde_json::json!(["crm.dump"]), "{v:#}");
    let new = r["replaced_by"].as_str().unwrap().to_string();
    assert_eq!(common::ops::snapshot_ids(h, &repo), vec![new.clone()]);
    let m = json(&run(h, &repo, &["--json", "ls", &new]));
    assert!(
        m.to_string().contains("crm.dump") && !m.to_string().contains("shop.dump\""),
        "{m:#}"
    );
    let shown = json(&run(h, &repo, &["--json", "snapshots"]));
    let src = &shown[0]["snapshot"]["source"];
    assert_eq!(src["databases"][0]["name"], "crm", "{shown:#}");
    assert_eq!(src["failed"][0]["name"], "shop", "{shown:#}");
    // The rest restores: crm.dump byte for byte.
    let dir = h.join("out");
    std::fs::create_dir(&dir).unwrap();
    common::ok(
        run(h, &repo, &["restore", &new, "--target", dir.to_str().unwrap()]),
        "restore",
    );
    assert!(std::fs::read(dir.join("crm.dump")).unwrap() == crm);
    common::ok(run(h, &repo, &["prune"]), "prune after repair");
    check_clean(h, &repo, true);
}

#[test]
fn a_pack_two_segments_name_in_parts_keeps_every_entry_through_prune() {
    // Revival and prune's adoption of bases index only some of a pack's entries, so one pack
    // may be named by two segments with different entries: prune must keep their union.
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let repo = small_repo(h);
    let x = random(7, 3_000_000);
    let a = snap(h, &repo, "a", &x)["id"].as_str().unwrap().to_string();
    {
        let t = TestRepo::open(&repo);
        let old = segments(&t);
        let (mut first, mut second) = (Vec::new(), Vec::new());
        for (_, s) in &old {
            for p in &s.packs {
                let half = p.blobs.len() / 2;
                let mut a = p.clone();
                let mut b = p.clone();
                a.blobs.truncate(half);
                b.blobs.drain(..half);
                first.push(a);
                second.push(b);
            }
        }
        let ids: Vec<Id> = old.iter().map(|(id, _)| *id).collect();
        for (packs, supersedes) in [(first, vec![]), (second, ids.clone())] {
            let seg = IndexSegment {
                supersedes,
                packs,
                sketches: vec![],
            };
            t.repo.save(&seg).unwrap();
        }
        for id in ids {
            t.repo.store().delete(&format!("index/{id}")).unwrap();
        }
    }
    check_clean(h, &repo, true);
    for max_unused in ["unlimited", "0%"] {
        // Something to delete, so that prune writes a new index.
        let other = snap(h, &repo, "other", &random(8, 1_500_000))["id"]
            .as_str()
            .unwrap()
            .to_string();
        common::ok(run(h, &repo, &["forget", &other]), "forget");
        let v = json(&run(h, &repo, &["--json", "prune", "--max-unused", max_unused]));
        assert!(v["prune"]["segments_replaced"].as_u64().unwrap() > 0, "{v:#}");
        let empty = tempfile::tempdir().unwrap();
        assert!(
            restore_bytes(h, &repo, &a, empty.path()) == x,
            "after prune --max-unused {max_unused}"
        );
        check_clean(h, &repo, true);
    }
}
