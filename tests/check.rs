//! `dbbackup check` against damage: a pack, an index segment and a snapshot manifest are each
//! flipped, truncated and deleted; check names the damaged object (or what its loss broke) and
//! the snapshots affected, and exits 65. `--read-data-subset` reads what it says.

mod common;

use std::path::{Path, PathBuf};

use common::ops::{check_clean, copy_dir, input, restores, run, small_repo, snapshot};
use common::packs;

#[derive(Clone, Copy, Debug)]
enum Damage {
    Flip,
    Truncate,
    Delete,
}

fn damage(path: &Path, how: Damage) {
    match how {
        Damage::Flip => {
            let mut b = std::fs::read(path).unwrap();
            let mid = b.len() / 2;
            b[mid] ^= 0x40;
            std::fs::write(path, b).unwrap();
        }
        Damage::Truncate => {
            let b = std::fs::read(path).unwrap();
            std::fs::write(path, &b[..b.len() - 7]).unwrap();
        }
        Damage::Delete => std::fs::remove_file(path).unwrap(),
    }
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    v.sort();
    v
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn check_names_every_kind_of_damage_and_exits_65() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let base = small_repo(h);
    let ids: Vec<String> = (0..3).map(|i| snapshot(h, &base, &input(h, i))).collect();
    let c = check_clean(h, &base, true);
    assert_eq!(c["errors"].as_array().unwrap().len(), 0);

    // Which object to damage in a copy of the repository.
    type Pick = fn(&Path) -> PathBuf;
    let objects: [(&str, Pick); 4] = [
        ("pack", |r| packs(r)[0].clone()),
        ("index segment", |r| files_in(&r.join("index"))[0].clone()),
        ("snapshot manifest", |r| files_in(&r.join("snapshots"))[0].clone()),
        ("registry copy", |r| files_in(&r.join("registry"))[0].clone()),
    ];
    for (what, pick) in objects {
        for how in [Damage::Flip, Damage::Truncate, Damage::Delete] {
            let dir = h.join(format!("case-{}-{how:?}", what.replace(' ', "-")));
            let repo = dir.join("repo");
            copy_dir(&base, &repo);
            let victim = pick(&repo);
            let victim_name = name(&victim);
            damage(&victim, how);
            let o = run(&dir, &repo, &["--json", "check", "--read-data"]);
            let out = String::from_utf8_lossy(&o.stdout).into_owned();
            let case = format!("{what} {how:?} ({victim_name})");
            let manifest = what == "snapshot manifest" || what == "registry copy";
            if what == "registry copy" && matches!(how, Damage::Delete) {
                // What an interrupted snapshot or forget also leaves: a warning, not damage.
                assert_eq!(o.status.code(), Some(0), "{case}: {out}");
                let rep: serde_json::Value = serde_json::from_str(&out).unwrap();
                assert_eq!(
                    rep["warnings"][0]["object"],
                    format!("registry/{victim_name}"),
                    "{case}"
                );
            } else {
                assert_eq!(o.status.code(), Some(65), "{case}: {out}");
                let rep: serde_json::Value =
                    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{case}: {e}: {}", common::stderr(&o)));
                named_with_snapshots(&case, &rep, &victim_name, what, how, &ids);
            }
            if manifest {
                // The twin keeps the snapshot restorable. A damaged copy is removed by hand
                // (docs/usage.md); prune writes the missing one again from its twin.
                let sid = victim_name.as_str();
                let i = ids.iter().position(|i| i == sid).unwrap() as u64;
                restores(&dir, &repo, sid, &input(h, i));
                if !matches!(how, Damage::Delete) {
                    std::fs::remove_file(&victim).unwrap();
                }
                let p = run(&dir, &repo, &["--json", "prune"]);
                assert!(p.status.success(), "{case}: {}", common::stderr(&p));
                let p: serde_json::Value = serde_json::from_slice(&p.stdout).unwrap();
                assert_eq!(p["prune"]["manifests_repaired"], 1, "{case}: {p}");
                let c = check_clean(&dir, &repo, true);
                assert_eq!(c["snapshots"], 3, "{case}");
            }
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
}

/// Check's JSON names the damaged object (or, for a lost segment, what its loss broke) and
/// the snapshots it affects.
fn named_with_snapshots(
    case: &str,
    rep: &serde_json::Value,
    victim_name: &str,
    what: &str,
    how: Damage,
    ids: &[String],
) {
    let out = rep.to_string();
    let errors = rep["errors"].as_array().unwrap();
    let objects: Vec<&str> = errors.iter().map(|e| e["object"].as_str().unwrap()).collect();
    match (what, how) {
        // A lost segment is gone without a trace; check reports what its loss broke:
        // chunks no segment names (with the snapshots needing them), and the packs it
        // indexed, now unindexed.
        ("index segment", Damage::Delete) => {
            assert!(objects.iter().any(|o| o.starts_with("chunk ")), "{case}: {out}");
            assert!(
                objects
                    .iter()
                    .all(|o| o.starts_with("chunk ") || o.starts_with("snapshots/")),
                "{case}: {out}"
            );
            assert!(!rep["orphan_packs"].as_array().unwrap().is_empty(), "{case}: {out}");
        }
        _ => assert!(
            objects.iter().any(|o| o.ends_with(victim_name)),
            "{case}: check names the object: {objects:?}"
        ),
    }
    // The snapshots that need the object are named.
    let affected: Vec<&str> = errors
        .iter()
        .flat_map(|e| e["affects"].as_array().unwrap())
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        affected.iter().all(|a| ids.iter().any(|i| i == a)) && !affected.is_empty(),
        "{case}: affected snapshots {affected:?}"
    );
}

#[test]
fn read_data_subsets_read_what_they_say() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let repo = small_repo(h);
    // Without deltas: a damaged pack holding a delta's base also fails the part holding the
    // delta (tests/deltas.rs covers that), and which packs hold bases depends on the key.
    for i in 0..4 {
        let o = common::cli(h)
            .arg("-r")
            .arg(&repo)
            .args(["snapshot", "--no-deltas", "--stdin", "--name", "db"])
            .pipe_stdin(input(h, i))
            .unwrap()
            .output()
            .unwrap();
        common::ok(o, "snapshot");
    }
    let all = packs(&repo).len() as u64;
    assert!(all >= 8, "{all} packs");
    let read = |subset: &str| -> u64 {
        let o = run(h, &repo, &["--json", "check", "--read-data-subset", subset]);
        assert!(o.status.success(), "{subset}: {}", common::stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["packs_read"].as_u64().unwrap()
    };
    // n/t parts partition the packs: together they read each exactly once.
    let parts: u64 = (1..=3).map(|n| read(&format!("{n}/3"))).sum();
    assert_eq!(parts, all);
    assert_eq!(read("100%"), all);
    assert_eq!(read("50%"), all.div_ceil(2));
    assert_eq!(read("1"), 1, "a size reads packs until it is reached");
    for bad in ["0/3", "4/3", "0%", "101%", "lots"] {
        let o = run(h, &repo, &["check", "--read-data-subset", bad]);
        assert_eq!(o.status.code(), Some(2), "{bad}");
    }
    // A damaged pack is found by the part that holds it.
    let victim = packs(&repo)[0].clone();
    damage(&victim, Damage::Flip);
    let codes: Vec<i32> = (1..=3)
        .map(|n| {
            run(h, &repo, &["check", "--read-data-subset", &format!("{n}/3")])
                .status
                .code()
                .unwrap()
        })
        .collect();
    assert_eq!(codes.iter().filter(|c| **c == 65).count(), 1, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 0).count(), 2, "{codes:?}");
}

/// A snapshot killed between its manifest and its registry copy, and a forget killed between
/// deleting a copy and its manifest, both leave whole snapshots: listed, restorable, reported
/// as a warning (exit 0); prune restores the missing copy and a rerun forget finishes.
#[test]
fn interrupted_commit_and_forget_leave_whole_snapshots() {
    use std::os::unix::process::ExitStatusExt;
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let repo = small_repo(h);
    let ids: Vec<String> = (0..2).map(|i| snapshot(h, &repo, &input(h, i))).collect();

    // Kill the snapshot just before its registry copy (its pack count, and so the number of
    // its mutations before the copy, varies with scheduling).
    let third = input(h, 2);
    let o = common::cli(h)
        .arg("-r")
        .arg(&repo)
        .args(["snapshot", "--stdin", "--name", "db"])
        .env("DBBACKUP_TEST_KILL_BEFORE", "registry/")
        .pipe_stdin(&third)
        .unwrap()
        .output()
        .unwrap();
    assert_eq!(o.status.signal(), Some(9), "killed before its registry copy");
    let c = run(h, &repo, &["--json", "check"]);
    assert_eq!(c.status.code(), Some(0), "{}", common::stderr(&c));
    let c = common::json(&c);
    assert_eq!(c["snapshots"], 3, "the committed snapshot counts: {c}");
    assert_eq!(c["warnings"].as_array().unwrap().len(), 1, "{c}");
    let sid = c["warnings"][0]["object"]
        .as_str()
        .unwrap()
        .trim_start_matches("registry/")
        .to_string();
    restores(h, &repo, &sid, &third);
    let p = common::json(&common::ok(run(h, &repo, &["--json", "prune"]), "prune"));
    assert_eq!(p["prune"]["manifests_repaired"], 1, "{p}");
    check_clean(h, &repo, false);

    // forget killed after deleting the copy, before the manifest.
    let o = common::cli(h)
        .arg("-r")
        .arg(&repo)
        .args(["forget", &ids[0]])
        .env("DBBACKUP_TEST_KILL_AT_MUTATION", "3") // 1: its lock, 2: the copy, 3: the manifest
        .output()
        .unwrap();
    assert_eq!(o.status.signal(), Some(9), "forget killed: {}", common::stderr(&o));
    let c = common::json(&run(h, &repo, &["--json", "check"]));
    assert_eq!(c["errors"], serde_json::json!([]), "{c}");
    assert_eq!(c["warnings"][0]["object"], format!("registry/{}", ids[0]), "{c}");
    restores(h, &repo, &ids[0], &input(h, 0));
    common::ok(run(h, &repo, &["forget", &ids[0]]), "forget again");
    let c = check_clean(h, &repo, false);
    assert_eq!(c["snapshots"], 2, "{c}");
}

/// A storage that keeps other bytes than it was given: `snapshot` reads every pack back and
/// fails with exit 65 naming the pack, records no snapshot, and leaves the earlier ones
/// restorable. Without the read-back (`--no-verify`) the snapshot goes through and only
/// `check --read-data` finds the damage, so it is the read-back that caught it.
#[test]
fn snapshot_reads_back_what_the_storage_kept() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let repo = small_repo(h);
    let first = snapshot(h, &repo, &input(h, 0));
    let snap = |verify: bool| {
        let mut c = common::cli(h);
        c.arg("-r").arg(&repo).args(["snapshot", "--stdin", "--name", "db"]);
        if !verify {
            c.arg("--no-verify");
        }
        c.env("DBBACKUP_TEST_DAMAGE_WRITES", "data/")
            .pipe_stdin(input(h, 1))
            .unwrap()
            .output()
            .unwrap()
    };
    let o = snap(true);
    let err = common::stderr(&o);
    assert_eq!(o.status.code(), Some(65), "{err}");
    assert!(err.contains("storage returned different bytes"), "{err}");
    assert!(err.contains("data/"), "the message names the pack: {err}");
    assert_eq!(
        common::ops::snapshot_ids(h, &repo),
        vec![first.clone()],
        "no snapshot recorded"
    );
    restores(h, &repo, &first, &input(h, 0));

    let o = snap(false);
    assert!(o.status.success(), "{}", common::stderr(&o));
    assert_eq!(common::ops::snapshot_ids(h, &repo).len(), 2);
    let c = run(h, &repo, &["--json", "check", "--read-data"]);
    assert_eq!(c.status.code(), Some(65), "{}", common::stderr(&c));
}

/// A check record (repo-format §13) flipped or truncated: `check` names it and exits 65 (the
/// warning of `status` sends the operator there), and the check that reported it replaces it,
/// so the next check is clean and `status` sees a clean check again.
#[test]
fn a_damaged_check_record_is_reported_then_replaced() {
    for how in [Damage::Flip, Damage::Truncate] {
        let home = tempfile::tempdir().unwrap();
        let h = home.path();
        let repo = small_repo(h);
        snapshot(h, &repo, &input(h, 0));
        check_clean(h, &repo, false);
        let records = files_in(&repo.join("checks"));
        assert_eq!(records.len(), 1, "{records:?}");
        damage(&records[0], how);
        let o = run(h, &repo, &["--json", "check"]);
        assert_eq!(o.status.code(), Some(65), "{how:?}: {}", common::stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let object = format!("checks/{}", name(&records[0]));
        let errors = v["errors"].as_array().cloned().unwrap_or_default();
        assert!(
            errors.iter().any(|e| e["object"] == object.as_str()),
            "{how:?}: {object} not named in {v:#}"
        );
        assert!(!records[0].exists(), "{how:?}: the damaged record is replaced");
        check_clean(h, &repo, false);
        let o = run(h, &repo, &["--json", "status"]);
        let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(s["checks"]["last_clean"]["problems"], 0, "{s:#}");
    }
}
