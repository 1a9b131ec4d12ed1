//! Locks never block recovery: an unreadable lock object stops no reader or writer (only a
//! remover, until it is as old as the lock timeout); a killed process's lock is removed at
//! once; `unlock` removes stale locks and `--remove-all` every lock; a repository this process
//! may only read (a read-only bind mount) is restored and checked without a lock, and
//! `--no-lock` reads past a live exclusive lock.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use common::ops::{random, run};
use common::{cli, cli_repo, json, snapshot_stdin, stderr, TestRepo};

fn snap(home: &Path, repo: &Path, data: &[u8]) -> std::process::Output {
    cli(home)
        .arg("-r")
        .arg(repo)
        .args(["--json", "snapshot", "--stdin", "--name", "db"])
        .write_stdin(data.to_vec())
        .output()
        .unwrap()
}

fn restored(home: &Path, repo: &Path, id: &str, extra: &[&str]) -> std::process::Output {
    cli(home)
        .arg("-r")
        .arg(repo)
        .args(["restore", id, "--target", "-"])
        .args(extra)
        .output()
        .unwrap()
}

fn locks(repo: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(repo.join("locks")) {
        Ok(d) => d.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// A snapshot SIGKILLed after it wrote its lock: the lock of a process that is gone.
fn killed_snapshot(home: &Path, repo: &Path) -> PathBuf {
    let o = cli(home)
        .env("DBBACKUP_TEST_KILL_AT_MUTATION", "2")
        .arg("-r")
        .arg(repo)
        .args(["snapshot", "--stdin", "--name", "killed"])
        .write_stdin(random(9, 300_000))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), None, "killed by its own SIGKILL: {}", stderr(&o));
    let l = locks(repo);
    assert_eq!(l.len(), 1, "the killed snapshot left its lock");
    l.into_iter().next().unwrap()
}

fn age(path: &Path, by: Duration) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - by).unwrap();
}

#[test]
fn a_damaged_lock_blocks_no_reader_or_writer_and_goes_once_stale() {
    let (home, repo) = cli_repo();
    let h = home.path();
    let data = random(1, 500_000);
    let id = snapshot_stdin(h, &repo, "db", data.clone(), &[]);
    let lock = killed_snapshot(h, &repo);
    let mut b = std::fs::read(&lock).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0x40;
    std::fs::write(&lock, &b).unwrap();

    let o = restored(h, &repo, &id, &[]);
    assert!(o.status.success(), "restore past a damaged lock: {}", stderr(&o));
    assert_eq!(o.stdout, data);
    assert!(
        stderr(&o).contains("unreadable lock"),
        "the damaged lock is reported: {}",
        stderr(&o)
    );
    let o = snap(h, &repo, &random(2, 300_000));
    assert!(o.status.success(), "snapshot past a damaged lock: {}", stderr(&o));
    let o = run(h, &repo, &["check", "--read-data"]);
    assert!(
        o.status.success(),
        "check --read-data past a damaged lock: {}",
        stderr(&o)
    );

    // A remover waits for it while it is young (it might be a live holder's), and says how long.
    let o = run(h, &repo, &["prune"]);
    assert_eq!(o.status.code(), Some(75), "prune: {}", stderr(&o));
    assert!(
        stderr(&o).contains("unreadable lock") && stderr(&o).contains("unlock --remove-all"),
        "{}",
        stderr(&o)
    );
    let o = run(h, &repo, &["unlock"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        lock.exists(),
        "unlock keeps an unreadable lock younger than the timeout"
    );

    // Once as old as the lock timeout it is ignored, and `unlock` removes it.
    age(&lock, Duration::from_secs(31 * 60));
    // A prune that forgets first, then deletes (it lists the locks for each).
    for seed in [3, 4] {
        snapshot_stdin(h, &repo, "extra", random(seed, 400_000), &[]);
    }
    let o = run(h, &repo, &["prune", "--keep-last", "1", "--name", "extra"]);
    assert!(o.status.success(), "prune past a stale damaged lock: {}", stderr(&o));
    // Said once, though prune lists the locks when it takes its own and again when it sweeps.
    assert_eq!(
        stderr(&o).matches("older than the lock timeout").count(),
        1,
        "{}",
        stderr(&o)
    );
    let o = run(h, &repo, &["--json", "unlock"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let removed = json(&o)["removed"].as_array().unwrap().clone();
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert!(removed[0]["unreadable"].is_string());
    assert_eq!(locks(&repo), Vec::<PathBuf>::new());
    assert_eq!(restored(h, &repo, &id, &[]).stdout, data);
}

#[test]
fn the_lock_of_a_killed_process_is_removed_at_once() {
    let (home, repo) = cli_repo();
    let h = home.path();
    killed_snapshot(h, &repo);
    let o = run(h, &repo, &["-v", "check"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("no longer exists"), "{}", stderr(&o));
    assert_eq!(locks(&repo), Vec::<PathBuf>::new(), "the dead process's lock is gone");
}

#[test]
fn no_lock_reads_past_a_live_exclusive_lock_and_remove_all_removes_it() {
    let (home, repo) = cli_repo();
    let h = home.path();
    let data = random(3, 400_000);
    let id = snapshot_stdin(h, &repo, "db", data.clone(), &[]);
    let t = TestRepo::open(&repo);
    let guard = dbbackup::repo::lock::acquire(&t.repo, dbbackup::repo::lock::Operation::Repair).unwrap();

    let o = restored(h, &repo, &id, &[]);
    assert_eq!(
        o.status.code(),
        Some(75),
        "an exclusive lock holds off a restore: {}",
        stderr(&o)
    );
    let o = restored(h, &repo, &id, &["--no-lock"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(o.stdout, data);
    let o = run(h, &repo, &["check", "--read-data", "--no-lock"]);
    assert!(o.status.success(), "{}", stderr(&o));

    let o = run(h, &repo, &["unlock"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(locks(&repo).len(), 1, "unlock leaves a live lock");
    let o = run(h, &repo, &["unlock", "--remove-all"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("1 locks removed, 0 left"));
    assert_eq!(locks(&repo), Vec::<PathBuf>::new());
    assert!(restored(h, &repo, &id, &[]).status.success());
    drop(guard);
}

/// A read-only bind mount of the repository, unmounted on drop.
struct ReadOnly(PathBuf);

impl ReadOnly {
    fn mount(from: &Path, at: &Path) -> ReadOnly {
        std::fs::create_dir_all(at).unwrap();
        let o = std::process::Command::new("mount")
            .args(["--bind", "-o", "ro"])
            .arg(from)
            .arg(at)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "this test needs a read-only bind mount (root, CAP_SYS_ADMIN): {}",
            String::from_utf8_lossy(&o.stderr)
        );
        ReadOnly(at.to_path_buf())
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_repository_on_a_read_only_mount_is_restored_and_checked() {
    let (home, repo) = cli_repo();
    let h = home.path();
    let data = random(4, 600_000);
    let id = snapshot_stdin(h, &repo, "db", data.clone(), &[]);
    let ro = h.join("ro");
    let _mount = ReadOnly::mount(&repo, &ro);

    let o = restored(h, &ro, &id, &[]);
    assert!(
        o.status.success(),
        "restore from a read-only repository: {}",
        stderr(&o)
    );
    assert_eq!(o.stdout, data);
    assert!(stderr(&o).contains("without a repository lock"), "{}", stderr(&o));
    for args in [
        &["check", "--read-data"][..],
        &["snapshots"],
        &["ls", "latest"],
        &["stats"],
    ] {
        let o = run(h, &ro, args);
        assert!(o.status.success(), "{args:?} on a read-only repository: {}", stderr(&o));
    }
    let o = snap(h, &ro, b"more");
    assert_eq!(
        o.status.code(),
        Some(77),
        "a write is refused as a permission: {}",
        stderr(&o)
    );
    assert_eq!(locks(&repo), Vec::<PathBuf>::new());
}
