//! Bounded failure and bad input that leaves nothing behind: a nonexistent repository path
//! is never created; `init` with bad options, or failing after it made the directory,
//! leaves no directory; `init` refuses a non-empty directory that is not a repository
//! (73); a snapshot time in the future is refused without `--allow-future`; a storage
//! endpoint that refuses or never answers fails the command (69) after the retries it was
//! given, each retry one warning line and the cause printed once, even with RUST_BACKTRACE.

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;

use common::{cli, cli_repo, snapshot_stdin, stderr};

fn run(home: &Path, args: &[&str]) -> std::process::Output {
    cli(home).args(args).output().unwrap()
}

#[test]
fn a_missing_repository_path_is_never_created() {
    let home = tempfile::tempdir().unwrap();
    let missing = home.path().join("no/such/repo");
    let r = missing.to_str().unwrap();
    for args in [
        vec!["-r", r, "snapshots"],
        vec!["-r", r, "check"],
        vec!["-r", r, "restore", "latest", "--target", "-"],
        vec!["-r", r, "snapshot", "--name", "x", "--from-command", "echo hi"],
        vec!["-r", r, "prune"],
    ] {
        let o = run(home.path(), &args);
        assert_eq!(o.status.code(), Some(66), "{args:?}: {}", stderr(&o));
        assert!(!home.path().join("no").exists(), "{args:?} created a directory");
    }
}

#[test]
fn init_leaves_nothing_behind_and_refuses_a_directory_in_use() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let target = h.join("new/repo");
    let t = target.to_str().unwrap();
    // Bad options: refused before anything is created.
    for (args, code) in [
        (vec!["init", t, "--kdf-memory-kib", "1"], 2),
        (vec!["init", t, "--chunk-avg", "1"], 78),
        (vec!["init", t, "--pack-size", "1K"], 78),
    ] {
        let o = run(h, &args);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {}", stderr(&o));
        assert!(!h.join("new").exists(), "{args:?} left a directory");
    }
    // Failing after the directory was made (an empty password): it is removed again.
    let pw = h.join("empty-password");
    std::fs::write(&pw, "\n").unwrap();
    let o = cli(h)
        .env_remove("DBBACKUP_PASSWORD")
        .args(["--password-file", pw.to_str().unwrap(), "init", t])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(!h.join("new").exists(), "a failed init left a directory");

    // A directory holding other files is not a place for a repository.
    let used = h.join("used");
    std::fs::create_dir(&used).unwrap();
    std::fs::write(used.join("notes.txt"), b"keep me").unwrap();
    let o = run(h, &["init", used.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(73), "{}", stderr(&o));
    assert!(stderr(&o).contains("not empty"), "{}", stderr(&o));
    let left: Vec<_> = std::fs::read_dir(&used)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("notes.txt")]);
    // An empty one (a fresh file system's lost+found aside) is.
    let mount = h.join("mount");
    std::fs::create_dir_all(mount.join("lost+found")).unwrap();
    common::init_repo(h, &mount, &[]);
}

#[test]
fn a_snapshot_time_in_the_future_needs_allow_future() {
    let (home, repo) = cli_repo();
    let r = repo.to_str().unwrap();
    let future = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24);
    let soon = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(60);
    let o = cli(home.path())
        .args([
            "-r",
            r,
            "snapshot",
            "--stdin",
            "--name",
            "x",
            "--time",
            &future.to_string(),
        ])
        .write_stdin("data")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--allow-future"), "{}", stderr(&o));
    let o = run(home.path(), &["-r", r, "--json", "snapshots"]);
    assert_eq!(common::json(&o), serde_json::json!([]), "nothing was stored");
    // Within the clock slack, and with --allow-future, it is taken.
    snapshot_stdin(home.path(), &repo, "x", "data", &["--time", &soon.to_string()]);
    snapshot_stdin(
        home.path(),
        &repo,
        "x",
        "data",
        &["--time", &future.to_string(), "--allow-future"],
    );
    let o = run(home.path(), &["-r", r, "--json", "snapshots"]);
    assert_eq!(common::json(&o).as_array().map(Vec::len), Some(2));
}

/// The storage errors of `args` against `location`: exit code and stderr.
fn storage_failure(location: &str, extra: &[&str]) -> (Option<i32>, String) {
    let home = tempfile::tempdir().unwrap();
    let o = cli(home.path())
        .env("RUST_BACKTRACE", "1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .args(["-r", location])
        .args(extra)
        .arg("snapshots")
        .output()
        .unwrap();
    (o.status.code(), stderr(&o))
}

#[test]
fn storage_that_refuses_or_never_answers_fails_in_bounded_tries() {
    // Refused: a port nothing listens on.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (code, err) = storage_failure(
        &format!("s3://bucket/p?endpoint=http://127.0.0.1:{port}"),
        &["--storage-retries", "2"],
    );
    assert_eq!(code, Some(69), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines.len(),
        3,
        "two retry warnings and the error, one line each:\n{err}"
    );
    assert!(lines[..2].iter().all(|l| l.contains("trying again")), "{err}");
    assert!(!err.contains("backtrace") && !err.contains("  0: "), "{err}");
    assert_eq!(err.matches("Connection refused").count(), 3, "once per line:\n{err}");

    // Accepts connections, never answers: each attempt times out, then the command fails.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let holder = std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in listener.incoming() {
            let Ok(mut c) = c else { break };
            // Read the request, answer nothing; keep the connection open.
            let mut b = [0u8; 4096];
            let _ = c.set_read_timeout(Some(std::time::Duration::from_millis(100)));
            let _ = c.read(&mut b);
            held.push(c);
            if held.len() >= 3 {
                break;
            }
        }
        held
    });
    let (code, err) = storage_failure(
        &format!("s3://bucket/p?endpoint=http://127.0.0.1:{port}"),
        &["--storage-retries", "2", "--storage-timeout", "3s"],
    );
    assert_eq!(code, Some(69), "{err}");
    assert_eq!(err.lines().filter(|l| l.contains("timeout")).count(), 3, "{err}");
    assert_eq!(holder.join().unwrap().len(), 3, "three attempts");
}

/// The library says what to do in its own terms; the command line names the flag that does
/// it, on a line of its own. Requests are checked before the repository is opened: bad
/// options on a repository that does not exist are refused as bad options (2), not as a
/// missing repository (66).
#[test]
fn hints_name_the_flags_and_requests_are_checked_before_the_repository_is_opened() {
    let (home, repo) = cli_repo();
    let h = home.path();
    let r = repo.to_str().unwrap();
    snapshot_stdin(h, &repo, "db", b"one entry".to_vec(), &[]);
    let target = h.join("exists");
    std::fs::write(&target, "mine").unwrap();
    let o = run(h, &["-r", r, "restore", "latest", "--target", target.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(73), "{}", stderr(&o));
    let hint = stderr(&o)
        .lines()
        .find(|l| l.starts_with("dbbackup: hint: "))
        .map(str::to_string);
    assert_eq!(
        hint.as_deref(),
        Some("dbbackup: hint: choose another --target or pass --overwrite"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read(&target).unwrap(), b"mine");
    let o = cli(h)
        .env("DBBACKUP_PASSWORD", "not the password")
        .args(["-r", r, "snapshots"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(77), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("hint: check DBBACKUP_PASSWORD, --password-file"),
        "{}",
        stderr(&o)
    );

    // A damaged object: the error says what, the hint says how to see what it reaches.
    let mut packs = vec![repo.join("data")];
    while packs.last().unwrap().is_dir() {
        let dir = packs.pop().unwrap();
        packs.extend(std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()));
    }
    let file = packs.pop().unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[20] ^= 1;
    std::fs::write(&file, bytes).unwrap();
    let out = h.join("out");
    let o = run(h, &["-r", r, "restore", "latest", "--target", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(65), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("corrupt object") && !err.contains("; run `dbbackup"),
        "{err}"
    );
    assert!(
        err.lines()
            .any(|l| l == "dbbackup: hint: run `dbbackup check --read-data` to see what it affects"),
        "{err}"
    );
    assert!(!out.exists());

    let missing = h.join("no-such-repo");
    let m = missing.to_str().unwrap();
    let pgdata = h.join("pgdata");
    let pgdata = pgdata.to_str().unwrap();
    for args in [
        vec![
            "-r",
            m,
            "restore",
            "--pgdata",
            pgdata,
            "--pitr",
            "--target-time",
            "yesterday",
        ],
        vec!["-r", m, "restore", "latest", "--target", "x", "--jobs", "0"],
        vec!["-r", m, "snapshot", "--stdin"],
        vec!["-r", m, "forget"],
        vec!["-r", m, "forget", "latest"],
        vec!["-r", m, "forget", "abcd", "--keep-last", "1"],
        vec!["-r", m, "forget", "--keep-last", "1", "--time-zone", "Mars/Olympus"],
        vec!["-r", m, "prune", "--max-unused", "lots"],
        vec!["-r", m, "check", "--read-data-subset", "0/5"],
    ] {
        let o = run(h, &args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
    // A MySQL option file that is not there is found before the repository is opened.
    let o = run(
        h,
        &[
            "-r",
            m,
            "snapshot",
            "db",
            "--engine",
            "mysql",
            "--defaults-file",
            "/no/such/file.cnf",
        ],
    );
    assert_eq!(o.status.code(), Some(78), "{}", stderr(&o));
    assert!(!missing.exists());
    let o = run(h, &["-r", m, "forget"]);
    assert!(
        stderr(&o).contains("hint: give at least one of --keep-last"),
        "{}",
        stderr(&o)
    );
}
