//! The SFTP backend against a real OpenSSH server (openssh-server, installed by
//! scripts/setup.sh) started on a loopback port with its own host key and authorized key:
//! the cycle every backend passes; the repository directory private (0700) whatever the
//! server's umask; no ssh process left behind, after normal commands or after SIGTERM in the
//! middle of an upload; and a connection refused retried like any backend's transient
//! failure, while a refused key is not.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::servers::{repository_cycle, Server};
use common::{cli, digest, stderr, Gen};

/// sshd on `port` with the host and user keys in `keys` (made once by [`keys`]).
fn sshd(keys: &Path, port: u16) -> Server {
    let config = format!(
        "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nAuthorizedKeysFile {auth}\n\
         StrictModes no\nPasswordAuthentication no\nPermitRootLogin prohibit-password\n\
         UsePAM no\nPidFile none\nSubsystem sftp internal-sftp\n",
        host = keys.join("host").display(),
        auth = keys.join("authorized").display(),
    );
    let conf = keys.join(format!("sshd_config.{port}"));
    std::fs::write(&conf, config).unwrap();
    // The privilege separation directory sshd insists on.
    let _ = std::fs::create_dir_all("/run/sshd");
    let mut cmd = Command::new("/usr/sbin/sshd");
    cmd.args(["-D", "-e", "-f"]).arg(conf);
    Server::spawn(
        "/usr/sbin/sshd (openssh-server)",
        cmd,
        port,
        tempfile::tempdir().unwrap(),
    )
}

/// A directory with a host key, a user key and the user key authorized.
fn keys() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for k in ["host", "user", "stranger"] {
        let o = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(d.join(k))
            .output()
            .unwrap();
        assert!(o.status.success(), "ssh-keygen: {}", stderr(&o));
    }
    std::fs::copy(d.join("user.pub"), d.join("authorized")).unwrap();
    dir
}

/// A location for `path` on the server at `port`, as the user running the tests, with key
/// `key` of `keys`.
fn location(keys: &Path, key: &str, port: u16, path: &Path) -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
    format!(
        "sftp://{user}@127.0.0.1:{port}{}?key={}&known_hosts_strategy=accept",
        path.display(),
        keys.join(key).display()
    )
}

/// ssh processes whose command line names a control directory under `home` (the openssh
/// crate makes them in `$HOME/.local/state` or `$XDG_RUNTIME_DIR`).
fn ssh_left(home: &Path) -> Vec<String> {
    let mut v = Vec::new();
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmd) = std::fs::read(p.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.starts_with("ssh ") && cmd.contains(&*home.to_string_lossy()) {
            v.push(cmd);
        }
    }
    v
}

fn run(home: &Path, loc: &str, args: &[&str]) -> Output {
    cli(home).args(["-r", loc]).args(args).output().unwrap()
}

fn ok(o: Output, what: &str) -> Output {
    assert!(o.status.success(), "{what}: {}", stderr(&o));
    o
}

fn write_input(dir: &Path, name: &str, g: Gen) -> PathBuf {
    let p = dir.join(name);
    let mut f = std::fs::File::create(&p).unwrap();
    std::io::copy(&mut { g }, &mut f).unwrap();
    f.flush().unwrap();
    p
}

#[test]
fn sftp_repository_cycle_is_private_and_leaves_no_process() {
    let keys = keys();
    let _sshd = sshd(keys.path(), common::pg::free_port());
    let port = _sshd.port;
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let cycle = keys.path().join("srv/cycle");
    repository_cycle(h, &location(keys.path(), "user", port, &cycle), &[]);
    let mode = std::fs::metadata(&cycle).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the repository directory is private");
    assert_eq!(ssh_left(h), Vec::<String>::new(), "ssh processes left after commands");

    let repo = keys.path().join("srv/repo");
    let loc = location(keys.path(), "user", port, &repo);
    ok(
        cli(h)
            .args(["init", &loc, "--kdf-memory-kib", "256", "--kdf-iterations", "1"])
            .output()
            .unwrap(),
        "init",
    );

    let a = write_input(h, "a", Gen::dump(1, 6_000_000));
    let saved = ok(
        cli(h)
            .args(["-r", &loc, "--json", "snapshot", "--name", "db", "--stdin"])
            .pipe_stdin(&a)
            .unwrap()
            .output()
            .unwrap(),
        "snapshot",
    );
    let saved = common::json(&saved)["id"].as_str().unwrap().to_string();
    let restored = |id: &str| {
        let o = ok(run(h, &loc, &["restore", id, "--target", "-"]), "restore");
        digest(&o.stdout[..])
    };
    let want = digest(std::fs::File::open(&a).unwrap());

    // SIGTERM in the middle of an upload, at six different instants: the lock goes, and so
    // does every ssh process.
    for i in 0..6u64 {
        let big = write_input(h, "big", Gen::random(7, 200_000_000));
        let mut p = common::spawn_cli(h)
            .env("HOME", h)
            .env_remove("XDG_RUNTIME_DIR")
            .args(["-r", &loc, "snapshot", "--name", "big", "--stdin"])
            .stdin(std::fs::File::open(&big).unwrap())
            .spawn()
            .unwrap();
        // Its lock is written before the first pack; a pack upload follows within a second.
        let t0 = Instant::now();
        while std::fs::read_dir(repo.join("locks")).map(|d| d.count()).unwrap_or(0) == 0 {
            assert!(t0.elapsed() < Duration::from_secs(60), "the snapshot did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(300 + i * 300));
        unsafe {
            libc::kill(p.id() as i32, libc::SIGTERM);
        }
        assert_eq!(p.wait().unwrap().code(), Some(143));
        let t0 = Instant::now();
        while !ssh_left(h).is_empty() && t0.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(ssh_left(h), Vec::<String>::new(), "ssh processes left after SIGTERM");
        assert_eq!(
            std::fs::read_dir(repo.join("locks")).unwrap().count(),
            0,
            "lock removed"
        );
    }
    assert_eq!(restored(&saved), want);
    ok(run(h, &loc, &["check"]), "check after the interruptions");
}

fn retries(o: &Output) -> usize {
    stderr(o).matches("trying again").count()
}

#[test]
fn sftp_connection_refused_is_retried_and_a_refused_key_is_not() {
    let keys = keys();
    let k = keys.path();
    let port = common::pg::free_port();
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let repo = k.join("srv/repo");
    let loc = location(k, "user", port, &repo);
    {
        let _sshd = sshd(k, port);
        let o = cli(h)
            .args(["init", &loc, "--kdf-memory-kib", "256", "--kdf-iterations", "1"])
            .output()
            .unwrap();
        ok(o, "init");
    }
    // Nothing listens: tried again --storage-retries times, each one warning line, then 69.
    let o = run(h, &loc, &["--storage-retries", "2", "snapshots"]);
    assert_eq!(o.status.code(), Some(69), "{}", stderr(&o));
    assert_eq!(retries(&o), 2, "{}", stderr(&o));

    // The server comes back while dbbackup waits between attempts: the command succeeds.
    let p = common::spawn_cli(h)
        .env("HOME", h)
        .args(["-r", &loc, "--storage-retries", "6", "snapshots"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let _sshd = sshd(k, port);
    let o = p.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(retries(&o) >= 1, "the first attempt was refused: {}", stderr(&o));

    // A key the server does not accept is not tried again: 77 at once.
    let stranger = location(k, "stranger", port, &repo);
    let o = run(h, &stranger, &["snapshots"]);
    assert_eq!(o.status.code(), Some(77), "{}", stderr(&o));
    assert_eq!(retries(&o), 0, "{}", stderr(&o));
}
