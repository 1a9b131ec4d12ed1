//! `wal push` pushing ahead, as PostgreSQL's archiver meets it: a data directory whose
//! `pg_wal/archive_status/` marks several files ready; the first call stores them all and
//! leaves spool markers; the calls for the others are answered from the spool without
//! unlocking the repository (shown with a wrong password), a marker whose file changed is
//! not trusted, stale markers are swept, and a push killed mid-batch loses nothing.
//! `wal fetch` reading ahead: the following segments land in the spool, verified, and the
//! calls for them need no password; the end of the archive still exits 66.
//! Segments are synthetic (1 MiB, a valid long page header) so no server is needed; the
//! real-server path is in tests/pitr.rs.

mod common;

use std::path::{Path, PathBuf};

use common::wal::SEG;
use common::{cli, init_repo, json, stderr};

const SYSID: u64 = 7_311_234_567_890_123_456;

/// A data directory with `pg_wal/archive_status/` and `global/pg_control`.
fn data_dir(home: &Path) -> PathBuf {
    let d = home.join("data");
    std::fs::create_dir_all(d.join("pg_wal/archive_status")).unwrap();
    std::fs::create_dir_all(d.join("global")).unwrap();
    std::fs::write(d.join("global/pg_control"), SYSID.to_le_bytes()).unwrap();
    d
}

/// Write segment `segno` of timeline 1 (half random, half zeros) and mark it ready.
fn ready_segment(data: &Path, segno: u64) -> String {
    let name = common::wal::segment_name(segno);
    std::fs::write(
        data.join("pg_wal").join(&name),
        common::wal::segment_bytes(SYSID, segno),
    )
    .unwrap();
    mark(data, &name, "ready");
    name
}

fn mark(data: &Path, name: &str, status: &str) {
    let st = data.join("pg_wal/archive_status");
    for s in ["ready", "done"] {
        let _ = std::fs::remove_file(st.join(format!("{name}.{s}")));
    }
    std::fs::write(st.join(format!("{name}.{status}")), b"").unwrap();
}

/// `wal push pg_wal/<name>` run from the data directory, as archive_command is.
fn push(home: &Path, repo: &Path, data: &Path, name: &str, extra: &[&str]) -> std::process::Output {
    cli(home)
        .current_dir(data)
        .arg("-r")
        .arg(repo)
        .args(["--json", "wal", "push", &format!("pg_wal/{name}")])
        .args(extra)
        .output()
        .unwrap()
}

fn spool_markers(home: &Path) -> Vec<String> {
    let root = home.join("cache/wal-spool");
    let mut v = Vec::new();
    for repo in std::fs::read_dir(root).unwrap() {
        for f in std::fs::read_dir(repo.unwrap().path()).unwrap() {
            v.push(f.unwrap().file_name().to_string_lossy().into_owned());
        }
    }
    v.sort();
    v
}

/// Every archived file fetches back byte for byte.
fn fetches_back(home: &Path, repo: &Path, data: &Path, names: &[String]) {
    for n in names {
        let dest = home.join("fetched");
        let o = cli(home)
            .arg("-r")
            .arg(repo)
            .args(["wal", "fetch", n, dest.to_str().unwrap(), "--ahead", "0"])
            .output()
            .unwrap();
        assert!(o.status.success(), "fetch {n}: {}", stderr(&o));
        assert_eq!(
            std::fs::read(&dest).unwrap(),
            std::fs::read(data.join("pg_wal").join(n)).unwrap(),
            "{n}"
        );
    }
}

#[test]
fn push_ahead_answers_later_calls_from_the_spool() {
    let home = tempfile::tempdir().unwrap();
    let repo = home.path().join("repo");
    init_repo(home.path(), &repo, &[]);
    let data = data_dir(home.path());
    let names: Vec<String> = (1..=5).map(|s| ready_segment(&data, s)).collect();
    std::fs::write(
        data.join("pg_wal/00000002.history"),
        "1\t0/5000000\tno recovery target specified\n",
    )
    .unwrap();
    mark(&data, "00000002.history", "ready");

    // The archiver's first call stores its file and every other ready one.
    let r = json(&push(home.path(), &repo, &data, &names[0], &[]));
    assert_eq!(r["result"], "stored", "{r}");
    assert_eq!(r["file"], names[0].as_str());
    let mut all = names.clone();
    all.push("00000002.history".into());
    all.sort();
    assert_eq!(common::wal::archived(home.path(), &repo), all);
    let mut markers: Vec<String> = all
        .iter()
        .filter(|n| **n != names[0])
        .map(|n| format!("{n}.ok"))
        .collect();
    markers.sort();
    assert_eq!(spool_markers(home.path()), markers);
    mark(&data, &names[0], "done");

    // The next calls need no password: the spool answers, each marker used once.
    for n in ["00000002.history", &names[1]] {
        let o = cli(home.path())
            .env("DBBACKUP_PASSWORD", "not the password")
            .current_dir(&data)
            .arg("-r")
            .arg(&repo)
            .args(["--json", "wal", "push", &format!("pg_wal/{n}")])
            .output()
            .unwrap();
        let v = json(&o);
        assert_eq!(v["result"], "already_archived", "{v}");
        assert!(!spool_markers(home.path()).contains(&format!("{n}.ok")));
        mark(&data, n, "done");
    }

    // A file that changed since it was pushed ahead: the marker is not trusted, the
    // repository is asked, and it refuses the different bytes.
    let p3 = data.join("pg_wal").join(&names[2]);
    let mut b = std::fs::read(&p3).unwrap();
    b[SEG / 4] ^= 1;
    std::fs::write(&p3, &b).unwrap();
    let o = push(home.path(), &repo, &data, &names[2], &[]);
    assert_eq!(o.status.code(), Some(73), "{}", stderr(&o));
    assert!(stderr(&o).contains("different content"), "{}", stderr(&o));
    b[SEG / 4] ^= 1;
    std::fs::write(&p3, &b).unwrap();
    let v = json(&push(home.path(), &repo, &data, &names[2], &[]));
    assert_eq!(v["result"], "already_archived", "{v}");
    mark(&data, &names[2], "done");

    // PostgreSQL marked one done without asking (a manual archive): its marker goes with
    // the next call that unlocks the repository. --ahead 0 pushes only its own file.
    mark(&data, &names[3], "done");
    let n6 = ready_segment(&data, 6);
    let n7 = ready_segment(&data, 7);
    let v = json(&push(home.path(), &repo, &data, &n6, &["--ahead", "0"]));
    assert_eq!(v["result"], "stored", "{v}");
    assert_eq!(spool_markers(home.path()), [format!("{}.ok", names[4])]);
    assert!(!common::wal::archived(home.path(), &repo).contains(&n7));
    mark(&data, &n6, "done");

    // A batch killed after its first durable write: whatever it did not finish is pushed
    // by the calls that follow, and nothing is lost.
    let n8 = ready_segment(&data, 8);
    let o = cli(home.path())
        .env("DBBACKUP_TEST_KILL_AT_MUTATION", "3")
        .current_dir(&data)
        .arg("-r")
        .arg(&repo)
        .args(["wal", "push", &format!("pg_wal/{n7}")])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), None, "killed: {}", stderr(&o));
    for n in [&names[4], &n7, &n8] {
        let v = json(&push(home.path(), &repo, &data, n, &[]));
        assert!(
            ["stored", "already_archived"].contains(&v["result"].as_str().unwrap()),
            "{v}"
        );
        mark(&data, n, "done");
    }
    assert_eq!(spool_markers(home.path()), Vec::<String>::new());
    let mut all: Vec<String> = names.iter().cloned().chain([n6, n7, n8]).collect();
    all.push("00000002.history".into());
    all.sort();
    assert_eq!(common::wal::archived(home.path(), &repo), all);
    fetches_back(home.path(), &repo, &data, &all);
    common::ops::check_clean(home.path(), &repo, true);
    fetch_reads_ahead(home.path(), &repo, &data, &all);
}

fn fetch(home: &Path, repo: &Path, name: &str, dest: &Path, password: &str) -> std::process::Output {
    cli(home)
        .env("DBBACKUP_PASSWORD", password)
        .arg("-r")
        .arg(repo)
        .args(["wal", "fetch", name, dest.to_str().unwrap()])
        .output()
        .unwrap()
}

/// Segments 1..=8 are archived: fetching 1 reads 2..=8 ahead (the archive ends there);
/// those calls need no password and give the same bytes; 9 is the end of the archive.
fn fetch_reads_ahead(home: &Path, repo: &Path, data: &Path, all: &[String]) {
    let segs: Vec<&String> = all.iter().filter(|n| !n.ends_with(".history")).collect();
    let dest = home.join("RECOVERYXLOG");
    let spool = std::fs::read_dir(home.join("cache/wal-spool"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let fetch_dir = spool.join("fetch");
    std::fs::create_dir_all(&fetch_dir).unwrap();
    std::fs::write(fetch_dir.join("000000030000000000000002"), b"left by another recovery").unwrap();

    let o = fetch(home, repo, segs[0], &dest, common::PASSWORD);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut ahead: Vec<String> = std::fs::read_dir(&fetch_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    ahead.sort();
    let expect: Vec<String> = segs[1..].iter().map(|s| s.to_string()).collect();
    assert_eq!(ahead, expect);
    for n in &segs {
        if *n != segs[0] {
            let o = fetch(home, repo, n, &dest, "not the password");
            assert!(o.status.success(), "{n}: {}", stderr(&o));
            assert!(!fetch_dir.join(n).exists());
        }
        assert_eq!(
            std::fs::read(&dest).unwrap(),
            std::fs::read(data.join("pg_wal").join(n)).unwrap(),
            "{n}"
        );
    }
    let o = fetch(home, repo, "000000010000000000000009", &dest, common::PASSWORD);
    assert_eq!(o.status.code(), Some(66), "{}", stderr(&o));
}
