//! `dbbackup prune` end to end: space is freed and kept snapshots restore byte for byte; a
//! prune killed between any two of its storage writes leaves a repository that checks clean
//! and restores; a snapshot that was running while prune condemned its data still restores
//! (the plan waits for it, then revives what it needs); snapshots and prunes racing in loops.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use common::ops::{
    check_clean, copy_dir, input, pack_bytes, restores, run, small_repo, snapshot, snapshot_ids, snapshot_named,
};
use common::{cli, json, packs, spawn_cli, stderr, Gen};
use rand::{Rng, SeedableRng};

#[test]
fn prune_frees_space_repacks_and_keeps_snapshots_identical() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let repo = small_repo(h);
    let files: Vec<PathBuf> = (0..6).map(|i| input(h, i)).collect();
    let ids: Vec<String> = files.iter().map(|f| snapshot(h, &repo, f)).collect();
    let before = pack_bytes(&repo);

    // A dry run changes nothing but reports what the policy would free.
    let listing = packs(&repo);
    let v = json(&run(
        h,
        &repo,
        &["--json", "prune", "-n", "--keep-last", "2", "--max-unused", "0%"],
    ));
    assert_eq!(v["forgotten"].as_array().unwrap().len(), 4);
    assert!(v["prune"]["unused_packs"].as_u64().unwrap() > 0, "{:#}", v["prune"]);
    assert_eq!(packs(&repo), listing);
    assert_eq!(snapshot_ids(h, &repo).len(), 6);

    let v = json(&run(
        h,
        &repo,
        &["--json", "prune", "--keep-last", "2", "--max-unused", "0%"],
    ));
    let p = &v["prune"];
    assert_eq!(v["forgotten"].as_array().unwrap().len(), 4);
    assert!(p["unused_packs"].as_u64().unwrap() > 0, "{p:#}");
    assert!(
        p["repacked_packs"].as_u64().unwrap() > 0,
        "partly used packs are repacked: {p:#}"
    );
    assert_eq!(p["pending_packs"], 0, "nothing else runs, so everything is swept now");
    assert_eq!(p["packs_revived"], 0);
    let after = pack_bytes(&repo);
    assert_eq!(
        before - after,
        p["bytes_freed"].as_u64().unwrap() - p["new_packs_bytes"].as_u64().unwrap(),
        "{p:#}"
    );
    eprintln!("prune: {before} -> {after} bytes ({p})");

    // The kept snapshots are intact; nothing is left unindexed or pending.
    let c = check_clean(h, &repo, true);
    assert_eq!(c["orphan_packs"].as_array().unwrap().len(), 0);
    assert_eq!(c["pending_packs"], 0);
    assert_eq!(snapshot_ids(h, &repo), ids[4..].to_vec());
    restores(h, &repo, &ids[4], &files[4]);
    restores(h, &repo, &ids[5], &files[5]);

    // With --max-unused 0% nothing is left to do; new snapshots dedup against repacked data.
    let v = json(&run(h, &repo, &["--json", "prune", "--max-unused", "0%"]));
    for k in ["unused_packs", "repacked_packs", "packs_deleted", "unindexed_packs"] {
        assert_eq!(v["prune"][k], 0, "{k}: {v:#}");
    }
    let again = snapshot_named(h, &repo, "db", &files[5]);
    assert_eq!(again["snapshot"]["summary"]["chunks_new"], 0);
}

#[test]
fn prune_killed_at_every_step_loses_nothing() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let base = small_repo(h);
    let files: Vec<PathBuf> = (0..12).map(|i| input(h, i)).collect();
    let ids: Vec<String> = files.iter().map(|f| snapshot(h, &base, f)).collect();
    common::ok(run(h, &base, &["forget", "--keep-last", "3"]), "forget");
    // A snapshot killed after its first pack: an unindexed pack for prune to collect.
    let o = cli(h)
        .arg("-r")
        .arg(&base)
        .args(["snapshot", "--stdin", "--name", "db"])
        .env("DBBACKUP_TEST_KILL_AT_MUTATION", "3")
        .pipe_stdin(input(h, 77))
        .unwrap()
        .output()
        .unwrap();
    assert_eq!(o.status.signal(), Some(9), "snapshot was killed");
    let kept: Vec<(String, PathBuf)> = ids[9..].iter().cloned().zip(files[9..].iter().cloned()).collect();

    // Count prune's storage mutations on a copy.
    let trial = |n: u64, tag: &str| -> (PathBuf, PathBuf, Output) {
        let dir = h.join(format!("trial-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        let repo = dir.join("repo");
        copy_dir(&base, &repo);
        let o = cli(&dir)
            .arg("-r")
            .arg(&repo)
            .args(["prune", "--max-unused", "0%"])
            .env("DBBACKUP_TEST_KILL_AT_MUTATION", n.to_string())
            .output()
            .unwrap();
        (dir, repo, o)
    };
    let (_, _, o) = trial(0, "count");
    assert!(o.status.success(), "{}", stderr(&o));
    let log = stderr(&o);
    let total = log.lines().filter(|l| l.starts_with("test-mutation ")).count() as u64;
    assert!(total >= 20, "prune makes {total} storage mutations:\n{log}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let mut points: Vec<u64> = (1..=total).collect();
    if points.len() > 24 {
        // Every early and late step, and a random sample of the rest.
        let mut middle: Vec<u64> = points[6..points.len() - 6].to_vec();
        use rand::seq::SliceRandom;
        middle.shuffle(&mut rng);
        points = points[..6]
            .iter()
            .chain(&points[points.len() - 6..])
            .chain(&middle[..14])
            .copied()
            .collect();
    }
    eprintln!("prune performs {total} storage mutations; killing it before each of {points:?}");
    let mut trials: Vec<(String, PathBuf, PathBuf)> = Vec::new();
    for &n in &points {
        let (dir, repo, o) = trial(n, &n.to_string());
        assert_eq!(
            o.status.signal(),
            Some(9),
            "prune killed before mutation {n}: {}",
            stderr(&o)
        );
        trials.push((n.to_string(), dir, repo));
    }
    // And a few kills at random instants, by the test, from outside.
    for k in 0..4 {
        let dir = h.join(format!("trial-t{k}"));
        let repo = dir.join("repo");
        copy_dir(&base, &repo);
        let mut child = spawn_cli(&dir)
            .arg("-r")
            .arg(&repo)
            .args(["prune", "--max-unused", "0%"])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.random_range(20..400)));
        let _ = child.kill();
        child.wait().unwrap();
        trials.push((format!("t{k}"), dir, repo));
    }
    for (tag, dir, repo) in trials {
        // Right after the kill: structurally sound, every kept snapshot restores.
        check_clean(&dir, &repo, false);
        for (id, f) in &kept {
            restores(&dir, &repo, id, f);
        }
        // A new prune finishes the job: clean, complete, nothing left behind.
        let o = run(&dir, &repo, &["prune", "--max-unused", "0%"]);
        assert!(o.status.success(), "prune after kill {tag}: {}", stderr(&o));
        let c = check_clean(&dir, &repo, true);
        assert_eq!(c["orphan_packs"].as_array().unwrap().len(), 0, "kill {tag}: {c:#}");
        assert_eq!(c["pending_packs"], 0, "kill {tag}: {c:#}");
        assert!(std::fs::read_dir(repo.join("pending")).map(|d| d.count()).unwrap_or(0) == 0);
        for (id, f) in &kept {
            restores(&dir, &repo, id, f);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn a_snapshot_running_while_prune_condemns_its_chunks_stays_restorable() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let repo = small_repo(h);
    let x = input(h, 1);
    let y = input(h, 2);
    snapshot(h, &repo, &x);
    let b = snapshot(h, &repo, &y);

    // S takes its lock and syncs the index (which names x's packs), then reads x only once
    // the file `go` appears (or after 60 s, should the test fail first): it runs through the
    // prune and the snapshot below however slowly the machine goes.
    let out = h.join("s.json");
    let go = h.join("go");
    let mut s = spawn_cli(h)
        .arg("-r")
        .arg(&repo)
        .args(["--json", "snapshot", "--name", "db", "--from-command"])
        .arg(format!(
            "for i in $(seq 1200); do [ -e {} ] && break; sleep 0.05; done; cat {}",
            go.display(),
            x.display()
        ))
        .stdout(std::fs::File::create(&out).unwrap())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while std::fs::read_dir(repo.join("locks")).unwrap().count() == 0 {
        assert!(t0.elapsed() < Duration::from_secs(20), "snapshot took no lock");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    // Prune forgets x's snapshot and condemns its packs, but may not delete them while S runs.
    let v = json(&run(
        h,
        &repo,
        &["--json", "prune", "--keep-last", "1", "--max-unused", "0%"],
    ));
    let p = &v["prune"];
    assert!(
        p["unused_packs"].as_u64().unwrap() + p["repacked_packs"].as_u64().unwrap() > 0,
        "{p:#}"
    );
    assert_eq!(p["packs_deleted"], 0, "{p:#}");
    assert!(p["pending_packs"].as_u64().unwrap() > 0, "{p:#}");
    assert!(p["waiting_for"][0].as_str().unwrap().starts_with("snapshot"), "{p:#}");

    // A snapshot started now sees the plan and does not deduplicate against condemned packs:
    // its input is x's last 0.5 MB, whose chunks (but the first) only condemned packs hold.
    let tail = h.join("tail");
    std::io::copy(
        &mut Gen::random(1 << 44, 500_000),
        &mut std::fs::File::create(&tail).unwrap(),
    )
    .unwrap();
    let t = snapshot_named(h, &repo, "t", &tail);
    let sum = &t["snapshot"]["summary"];
    assert!(sum["chunks_total"].as_u64().unwrap() >= 3, "{sum}");
    assert_eq!(
        sum["chunks_new"], sum["chunks_total"],
        "condemned chunks are stored again: {sum}"
    );

    // S finishes, referencing chunks that only condemned packs hold.
    std::fs::write(&go, b"").unwrap();
    assert!(s.wait().unwrap().success());
    let sv: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let sid = sv["id"].as_str().unwrap().to_string();
    assert_eq!(
        sv["snapshot"]["summary"]["chunks_new"], 0,
        "S deduplicated against x's packs"
    );
    check_clean(h, &repo, false);
    restores(h, &repo, &sid, &x);

    // The next prune sweeps the plan: packs S needs are revived, the rest deleted.
    let v = json(&run(h, &repo, &["--json", "prune", "--max-unused", "unlimited"]));
    let p = &v["prune"];
    assert!(p["packs_revived"].as_u64().unwrap() > 0, "{p:#}");
    assert_eq!(p["pending_packs"], 0, "{p:#}");
    let c = check_clean(h, &repo, true);
    assert_eq!(c["pending_packs"], 0);
    restores(h, &repo, &sid, &x);
    restores(h, &repo, &b, &y);
    restores(h, &repo, t["id"].as_str().unwrap(), &tail);
}

#[test]
fn snapshots_and_prunes_racing_in_loops() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path().to_path_buf();
    let repo = small_repo(&h);
    let files: Vec<PathBuf> = (0..10).map(|i| input(&h, i)).collect();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (h, repo, files, done) = (h.clone(), repo.clone(), files.clone(), done.clone());
        std::thread::spawn(move || {
            let mut rng = rand::rngs::StdRng::seed_from_u64(7);
            let mut ok = Vec::new();
            for f in &files {
                let o = cli(&h)
                    .arg("-r")
                    .arg(&repo)
                    .args(["--json", "snapshot", "--name", "db", "--from-command"])
                    .arg(format!("cat {}; sleep 0.{}", f.display(), rng.random_range(0..4)))
                    .output()
                    .unwrap();
                assert!(o.status.success(), "snapshot failed: {}", stderr(&o));
                ok.push((json(&o)["id"].as_str().unwrap().to_string(), f.clone()));
                std::thread::sleep(Duration::from_millis(rng.random_range(0..300)));
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            ok
        })
    };
    let (mut prunes, mut condemned, mut deleted) = (0, 0, 0);
    while !done.load(std::sync::atomic::Ordering::SeqCst) {
        let o = run(
            &h,
            &repo,
            &["--json", "prune", "--keep-last", "3", "--max-unused", "0%"],
        );
        let v = json(&o);
        prunes += 1;
        condemned += v["prune"]["unused_packs"].as_u64().unwrap() + v["prune"]["repacked_packs"].as_u64().unwrap();
        deleted += v["prune"]["packs_deleted"].as_u64().unwrap();
    }
    let ok = writer.join().unwrap();
    eprintln!(
        "{prunes} prunes ran beside {} snapshots: {condemned} packs condemned, {deleted} deleted",
        ok.len()
    );
    assert!(prunes >= 2 && condemned > 0, "prune had work while snapshots ran");
    // Settle: one more prune with nothing running, then everything checks and restores.
    common::ok(run(&h, &repo, &["prune", "--keep-last", "3"]), "final prune");
    let c = check_clean(&h, &repo, true);
    assert_eq!(c["pending_packs"], 0);
    let present = snapshot_ids(&h, &repo);
    assert_eq!(present.len(), 3);
    for (id, f) in &ok {
        if present.contains(id) {
            restores(&h, &repo, id, f);
        }
    }
    assert_eq!(
        present,
        ok[ok.len() - 3..].iter().map(|x| x.0.clone()).collect::<Vec<_>>()
    );
}

#[test]
fn prune_writes_plans_and_segments_in_batches() {
    // 256-byte chunks: two 20 MB snapshots hold over 50,000 chunks each, more than one plan or
    // index segment takes, so prune writes them in batches (while still streaming the index).
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let repo = h.join("repo");
    common::init_repo(h, &repo, &["--pack-size", "1M", "--chunk-avg", "256"]);
    let a = h.join("a");
    let b = h.join("b");
    std::io::copy(
        &mut Gen::random(1 << 50, 20_000_000),
        &mut std::fs::File::create(&a).unwrap(),
    )
    .unwrap();
    std::io::copy(
        &mut Gen::random(2 << 50, 20_000_000),
        &mut std::fs::File::create(&b).unwrap(),
    )
    .unwrap();
    snapshot(h, &repo, &a);
    let kb = snapshot(h, &repo, &b);
    let v = json(&run(
        h,
        &repo,
        &["--json", "prune", "--keep-last", "1", "--max-unused", "0%"],
    ));
    let p = &v["prune"];
    assert!(p["chunks_referenced"].as_u64().unwrap() > 50_000, "{p:#}");
    assert!(p["packs_deleted"].as_u64().unwrap() > 0, "{p:#}");
    let c = check_clean(h, &repo, true);
    assert!(c["index_segments"].as_u64().unwrap() >= 2, "{c:#}");
    restores(h, &repo, &kb, &b);
}

/// A prune right after a prune has nothing to do. Snapshot i is part i and part i + 1 of
/// random data, so chunks across the seam are deltas against the previous snapshot's; after
/// `--keep-last 6` the bases of kept deltas end up in a pack of their own, which every later
/// prune copied again (found by benches/prune.sh: "nothing to do" took 4.8× as long).
#[test]
fn a_second_prune_finds_nothing_to_do() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let repo = h.join("repo");
    common::init_repo(h, &repo, &["--chunk-avg", "8192"]);
    let parts: Vec<Vec<u8>> = (0..13).map(|i| common::ops::random(1000 + i, 1_000_000)).collect();
    let mut last = (String::new(), PathBuf::new());
    for i in 1..13 {
        let f = h.join(format!("s{i}"));
        std::fs::write(&f, [parts[i - 1].as_slice(), parts[i].as_slice()].concat()).unwrap();
        last = (snapshot(h, &repo, &f), f);
    }
    let first = json(&run(h, &repo, &["--json", "prune", "--keep-last", "6"]));
    assert!(first["prune"]["packs_deleted"].as_u64().unwrap() > 0, "{first}");
    for _ in 0..2 {
        let again = json(&run(h, &repo, &["--json", "prune"]));
        for field in ["repacked_packs", "unused_packs", "packs_deleted", "new_packs"] {
            assert_eq!(again["prune"][field].as_u64(), Some(0), "{field}: {again}");
        }
    }
    restores(h, &repo, &last.0, &last.1);
    check_clean(h, &repo, true);
}
