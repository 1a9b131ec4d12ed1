//! The binary as users meet it: exit codes, passwords, keys, permissions, corruption,
//! a lost index cache, and a snapshot killed mid-stream.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{cli, cli_repo, digest, packs, Gen};

fn write_input(dir: &Path, name: &str, g: Gen) -> std::path::PathBuf {
    let p = dir.join(name);
    let mut f = std::fs::File::create(&p).unwrap();
    let mut g = g;
    std::io::copy(&mut g, &mut f).unwrap();
    p
}

fn snapshot_file(home: &Path, repo: &Path, name: &str, input: &Path) -> String {
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
        .pipe_stdin(input)
        .unwrap()
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    v["id"].as_str().unwrap().to_string()
}

/// Restore `spec` to a new file and check it equals `input` byte for byte.
fn restore_equals(home: &Path, repo: &Path, spec: &str, input: &Path, name: &str) {
    let target = home.join(name);
    cli(home)
        .args([
            "-r",
            repo.to_str().unwrap(),
            "restore",
            spec,
            "--target",
            target.to_str().unwrap(),
        ])
        .assert()
        .success();
    assert_eq!(
        digest(std::fs::File::open(&target).unwrap()),
        digest(std::fs::File::open(input).unwrap())
    );
}

#[test]
fn init_twice_refuses_with_73_and_wrong_password_exits_77() {
    let (home, repo) = cli_repo();
    let r = repo.to_str().unwrap();
    cli(home.path()).args(["init", r]).assert().code(73);
    cli(home.path())
        .env("DBBACKUP_PASSWORD", "wrong")
        .args(["-r", r, "snapshots"])
        .assert()
        .code(77);
    cli(home.path())
        .args(["-r", home.path().join("nope").to_str().unwrap(), "snapshots"])
        .assert()
        .code(66);
    cli(home.path())
        .env_remove("DBBACKUP_PASSWORD")
        .args(["-r", r, "snapshots"])
        .assert()
        .code(78);
    cli(home.path()).args(["snapshots"]).assert().code(78);
    // Password from a file and from a command.
    let pwf = home.path().join("pw");
    std::fs::write(&pwf, format!("{}\n", common::PASSWORD)).unwrap();
    cli(home.path())
        .env_remove("DBBACKUP_PASSWORD")
        .args(["-r", r, "--password-file", pwf.to_str().unwrap(), "snapshots"])
        .assert()
        .success();
    cli(home.path())
        .env_remove("DBBACKUP_PASSWORD")
        .env("DBBACKUP_PASSWORD_COMMAND", format!("cat {}", pwf.display()))
        .args(["-r", r, "snapshots"])
        .assert()
        .success();
    // Repository from a config file.
    let cfg = home.path().join("config/dbbackup");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(cfg.join("config.toml"), format!("repository = \"{r}\"\n")).unwrap();
    cli(home.path()).args(["snapshots"]).assert().success();
}

#[test]
fn local_files_are_private() {
    let (home, repo) = cli_repo();
    let input = write_input(home.path(), "in", Gen::dump(1, 3_000_000));
    snapshot_file(home.path(), &repo, "db", &input);
    let mut seen = 0;
    for root in [repo.clone(), home.path().join("cache")] {
        for e in walk(&root) {
            let mode = std::fs::metadata(&e).unwrap().permissions().mode() & 0o777;
            if e.is_dir() {
                assert_eq!(mode, 0o700, "{}", e.display());
            } else {
                assert_eq!(mode, 0o600, "{}", e.display());
            }
            seen += 1;
        }
    }
    assert!(seen > 8);
}

fn walk(p: &Path) -> Vec<std::path::PathBuf> {
    let mut v = vec![p.to_path_buf()];
    if p.is_dir() {
        for e in std::fs::read_dir(p).unwrap() {
            v.extend(walk(&e.unwrap().path()));
        }
    }
    v
}

#[test]
fn keys_add_list_passwd_remove() {
    let (home, repo) = cli_repo();
    let r = repo.to_str().unwrap();
    let kdf = ["--kdf-memory-kib", "256", "--kdf-iterations", "1"];
    cli(home.path())
        .env("DBBACKUP_NEW_PASSWORD", "second")
        .args(["-r", r, "key", "add"])
        .args(kdf)
        .assert()
        .success();
    let out = cli(home.path())
        .args(["-r", r, "--json", "key", "list"])
        .output()
        .unwrap();
    let keys: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(keys.as_array().unwrap().len(), 2);
    cli(home.path())
        .env("DBBACKUP_PASSWORD", "second")
        .args(["-r", r, "snapshots"])
        .assert()
        .success();
    // The key in use cannot be removed; the other one can.
    let first = keys.as_array().unwrap().iter().find(|k| k["current"] == true).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    cli(home.path())
        .args(["-r", r, "key", "remove", &first[..10]])
        .assert()
        .code(2);
    cli(home.path())
        .env("DBBACKUP_PASSWORD", "second")
        .args(["-r", r, "key", "remove", &first[..10]])
        .assert()
        .success();
    cli(home.path()).args(["-r", r, "snapshots"]).assert().code(77);
    // passwd replaces the key in use.
    cli(home.path())
        .env("DBBACKUP_PASSWORD", "second")
        .env("DBBACKUP_NEW_PASSWORD", "third")
        .args(["-r", r, "key", "passwd"])
        .args(kdf)
        .assert()
        .success();
    cli(home.path())
        .env("DBBACKUP_PASSWORD", "second")
        .args(["-r", r, "snapshots"])
        .assert()
        .code(77);
    cli(home.path())
        .env("DBBACKUP_PASSWORD", "third")
        .args(["-r", r, "snapshots"])
        .assert()
        .success();
}

#[test]
fn from_command_failure_records_nothing() {
    let (home, repo) = cli_repo();
    let r = repo.to_str().unwrap();
    let a = cli(home.path())
        .args([
            "-r",
            r,
            "snapshot",
            "--name",
            "x",
            "--from-command",
            "head -c 3000000 /dev/urandom; echo boom >&2; exit 3",
        ])
        .assert()
        .code(1);
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(err.contains("status 3") && err.contains("boom"), "{err}");
    let out = cli(home.path())
        .args(["-r", r, "--json", "snapshots"])
        .output()
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        0
    );
    // A succeeding command is recorded, restores to stdout byte for byte.
    let input = write_input(home.path(), "in", Gen::dump(2, 5_000_000));
    cli(home.path())
        .args([
            "-r",
            r,
            "snapshot",
            "--name",
            "x",
            "--tag",
            "t1",
            "--from-command",
            &format!("cat {}", input.display()),
        ])
        .assert()
        .success();
    let out = cli(home.path())
        .args(["-r", r, "restore", "latest", "--name", "x", "--target", "-"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(digest(&out.stdout[..]), digest(std::fs::File::open(&input).unwrap()));
}

#[test]
fn flipped_byte_in_a_pack_fails_restore_with_65_and_writes_nothing() {
    let (home, repo) = cli_repo();
    let r = repo.to_str().unwrap();
    let input = write_input(home.path(), "in", Gen::dump(3, 40_000_000));
    snapshot_file(home.path(), &repo, "db", &input);
    let packs = packs(&repo);
    assert!(!packs.is_empty());
    for (i, pack) in packs.iter().enumerate() {
        let orig = std::fs::read(pack).unwrap();
        // Positions inside the blob area: the first blob's nonce, ciphertext, and a late blob.
        for pos in [0usize, 30, 5000, orig.len() / 2] {
            let mut bad = orig.clone();
            bad[pos] ^= 0x01;
            std::fs::write(pack, &bad).unwrap();
            let target = home.path().join(format!("out-{i}-{pos}"));
            let a = cli(home.path())
                .args(["-r", r, "restore", "latest", "--target", target.to_str().unwrap()])
                .assert()
                .code(65);
            let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
            let name = pack.file_name().unwrap().to_str().unwrap();
            assert!(err.contains(name), "error names the pack: {err}");
            assert!(!target.exists(), "no partial file");
            let leftovers: Vec<_> = std::fs::read_dir(home.path())
                .unwrap()
                .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().contains("partial"))
                .collect();
            assert!(leftovers.is_empty());
            // Streaming to stdout: whatever was written is a correct prefix.
            let out = cli(home.path())
                .args(["-r", r, "restore", "latest", "--target", "-"])
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(65));
            let orig_in = std::fs::read(&input).unwrap();
            assert_eq!(&orig_in[..out.stdout.len()], &out.stdout[..], "no wrong byte written");
        }
        // check --read-data names the same pack, also for damage in the header and trailer.
        for pos in [0usize, orig.len() - 60, orig.len() - 1] {
            let mut bad = orig.clone();
            bad[pos] ^= 0x80;
            std::fs::write(pack, &bad).unwrap();
            let a = cli(home.path())
                .args(["-r", r, "check", "--read-data"])
                .assert()
                .code(65);
            let out = String::from_utf8_lossy(&a.get_output().stdout).to_string();
            assert!(out.contains(pack.file_name().unwrap().to_str().unwrap()), "{out}");
        }
        std::fs::write(pack, &orig).unwrap();
    }
    cli(home.path())
        .args(["-r", r, "check", "--read-data"])
        .assert()
        .success();
    restore_equals(home.path(), &repo, "latest", &input, "ok");
}

#[test]
fn deleted_or_damaged_index_cache_is_rebuilt() {
    let (home, repo) = cli_repo();
    let r = repo.to_str().unwrap();
    let input = write_input(home.path(), "in", Gen::dump(4, 8_000_000));
    snapshot_file(home.path(), &repo, "db", &input);
    let cache = home.path().join("cache");
    std::fs::remove_dir_all(&cache).unwrap();
    restore_equals(home.path(), &repo, "latest", &input, "a");
    // Garbage in place of the cache file.
    let f = walk(&cache)
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "redb"))
        .unwrap();
    std::fs::write(&f, b"this is not a database").unwrap();
    restore_equals(home.path(), &repo, "latest", &input, "b");
    // Dedup still works against the rebuilt cache.
    let out = cli(home.path())
        .args(["-r", r, "--json", "snapshot", "--stdin", "--name", "db"])
        .pipe_stdin(&input)
        .unwrap()
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["snapshot"]["summary"]["chunks_new"], 0);
}

#[test]
fn sigkill_mid_snapshot_leaves_earlier_snapshots_restorable() {
    let (home, repo) = cli_repo();
    let r = repo.to_str().unwrap();
    let input = write_input(home.path(), "in", Gen::dump(5, 20_000_000));
    let first = snapshot_file(home.path(), &repo, "db", &input);
    let first_packs = packs(&repo).len();
    for round in 0..3 {
        // A slow source: random data arriving in pieces, so packs are written while it runs.
        let before = packs(&repo).len();
        let mut child = common::spawn_cli(home.path())
            .args(["-r", r, "snapshot", "--name", "db", "--from-command"])
            .arg("for i in $(seq 1 400); do head -c 1000000 /dev/urandom; sleep 0.02; done")
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        while packs(&repo).len() < before + 1 + round && t0.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        assert!(packs(&repo).len() > before, "packs were being written when killed");
    }
    // Only the first snapshot exists; it restores; check is clean (orphans are not damage).
    let out = cli(home.path())
        .args(["-r", r, "--json", "snapshots"])
        .output()
        .unwrap();
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    restore_equals(home.path(), &repo, &first[..8], &input, "out");
    let a = cli(home.path())
        .args(["-r", r, "check", "--read-data"])
        .assert()
        .success();
    assert!(String::from_utf8_lossy(&a.get_output().stdout).contains("unindexed packs"));
    // Prune deletes what the killed snapshots left (their processes are gone, so their locks
    // do not hold the sweep back), and the first snapshot still restores.
    let orphans = packs(&repo).len() - first_packs;
    let v = common::json(&cli(home.path()).args(["-r", r, "--json", "prune"]).output().unwrap());
    assert_eq!(v["prune"]["unindexed_packs"], orphans as u64);
    assert_eq!(v["prune"]["packs_deleted"], orphans as u64);
    assert_eq!(packs(&repo).len(), first_packs);
    let a = cli(home.path())
        .args(["-r", r, "check", "--read-data"])
        .assert()
        .success();
    assert!(!String::from_utf8_lossy(&a.get_output().stdout).contains("unindexed"));
    restore_equals(home.path(), &repo, &first[..8], &input, "out2");
    // And the repository takes new snapshots.
    snapshot_file(home.path(), &repo, "db", &input);
}

#[test]
fn concurrent_snapshots_on_one_host_both_succeed() {
    // The second process finds the index cache busy and uses a private one for its run.
    let (home, repo) = cli_repo();
    let r = repo.to_str().unwrap();
    let a = write_input(home.path(), "a", Gen::dump(11, 6_000_000));
    let b = write_input(home.path(), "b", Gen::dump(12, 6_000_000));
    let spawn = |name: &str, input: &Path| {
        common::spawn_cli(home.path())
            .args(["-r", r, "snapshot", "--name", name, "--from-command"])
            .arg(format!("cat {}; sleep 3", input.display()))
            .spawn()
            .unwrap()
    };
    let mut pa = spawn("a", &a);
    std::thread::sleep(Duration::from_millis(300));
    let mut pb = spawn("b", &b);
    assert!(pa.wait().unwrap().success());
    assert!(pb.wait().unwrap().success());
    cli(home.path())
        .args(["-r", r, "check", "--read-data"])
        .assert()
        .success();
    for (name, input) in [("a", &a), ("b", &b)] {
        let out = cli(home.path())
            .args(["-r", r, "restore", "latest", "--name", name, "--target", "-"])
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(digest(&out.stdout[..]), digest(std::fs::File::open(input).unwrap()));
    }
}

#[test]
fn interrupted_snapshot_and_restore_clean_up() {
    let (home, repo) = cli_repo();
    let r = repo.to_str().unwrap();
    let spawn = |args: &[&str]| {
        common::spawn_cli(home.path())
            .args(["-r", r])
            .args(args)
            .spawn()
            .unwrap()
    };
    let sigint = |c: &std::process::Child| unsafe {
        libc::kill(c.id() as i32, libc::SIGINT);
    };
    // A snapshot whose source never ends: SIGINT removes its lock, stops the command, exits 130.
    let marker = home.path().join("source-alive");
    let mut p = spawn(&[
        "snapshot",
        "--name",
        "x",
        "--from-command",
        &format!(
            "touch {}; while true; do head -c 100000 /dev/urandom; sleep 0.05; done",
            marker.display()
        ),
    ]);
    let t0 = Instant::now();
    while (!marker.exists() || std::fs::read_dir(repo.join("locks")).map(|d| d.count()).unwrap_or(0) == 0)
        && t0.elapsed() < Duration::from_secs(30)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        std::fs::read_dir(repo.join("locks")).unwrap().count(),
        1,
        "lock held while running"
    );
    sigint(&p);
    assert_eq!(p.wait().unwrap().code(), Some(130));
    assert_eq!(
        std::fs::read_dir(repo.join("locks")).unwrap().count(),
        0,
        "lock removed"
    );
    // A restore interrupted mid-way leaves no partial file.
    let input = write_input(home.path(), "in", Gen::random(13, 300_000_000));
    snapshot_file(home.path(), &repo, "big", &input);
    let out = home.path().join("restored");
    let mut p = spawn(&["restore", "latest", "--name", "big", "--target", out.to_str().unwrap()]);
    let t0 = Instant::now();
    let partial = |dir: &Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .any(|e| e.unwrap().file_name().to_string_lossy().contains("dbbackup-partial"))
    };
    while !partial(home.path()) && t0.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(5));
    }
    sigint(&p);
    let code = p.wait().unwrap().code();
    assert!(code == Some(130) || code == Some(0), "{code:?}");
    let left: Vec<_> = std::fs::read_dir(home.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(!partial(home.path()), "no partial file left: {code:?} {left:?}");
    if code == Some(130) {
        assert!(!out.exists());
    }
}

/// `dbbackup snapshots | head -0`: the closed pipe ends the command quietly with status 141
/// (as SIGPIPE would), not a panic (101) — also with RUST_BACKTRACE=1 set, as on many servers.
#[test]
fn a_closed_standard_output_ends_the_command_quietly() {
    let (home, repo) = cli_repo();
    let h = home.path();
    for name in ["a", "b", "c"] {
        common::snapshot_stdin(h, &repo, name, name.as_bytes().repeat(1000), &[]);
    }
    for args in [&["snapshots"][..], &["ls", "latest"], &["--json", "snapshots"]] {
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("dbbackup"))
            .env("DBBACKUP_PASSWORD", common::PASSWORD)
            .env("DBBACKUP_CACHE_DIR", h.join("cache"))
            .env("XDG_CONFIG_HOME", h.join("config"))
            .env("RUST_BACKTRACE", "1")
            .arg("-r")
            .arg(&repo)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Closed before the command can have written: it opens the repository first.
        drop(child.stdout.take());
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(141), "{args:?}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("backtrace"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(std::fs::read_dir(repo.join("locks")).map_or(0, |d| d.count()), 0);
}
