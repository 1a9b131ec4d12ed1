//! The S3 backend against a real S3-compatible server (moto_server, installed by
//! scripts/setup.sh) on a loopback port: init, snapshot, restore, check, refusals, and an
//! unreachable endpoint.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{cli, digest, Gen};

struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    fn start() -> Moto {
        let port = common::pg::free_port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server is required (scripts/setup.sh installs it)");
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(t0.elapsed() < Duration::from_secs(30), "moto_server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto { child, port }
    }

    /// Create a bucket with a plain HTTP PUT (moto accepts unsigned requests).
    fn create_bucket(&self, name: &str) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            s,
            "PUT /{name} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        assert!(
            resp.starts_with("HTTP/1.1 200") || resp.starts_with("HTTP/1.0 200"),
            "{resp}"
        );
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

fn s3cli(home: &std::path::Path) -> assert_cmd::Command {
    let mut c = cli(home);
    c.env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1");
    c
}

#[test]
fn s3_repository_round_trip() {
    let moto = Moto::start();
    moto.create_bucket("backups");
    let home = tempfile::tempdir().unwrap();
    let loc = format!("s3://backups/prod/db?endpoint=http://127.0.0.1:{}", moto.port);
    s3cli(home.path())
        .args(["init", &loc, "--kdf-memory-kib", "256", "--kdf-iterations", "1"])
        .assert()
        .success();
    s3cli(home.path()).args(["init", &loc]).assert().code(73);
    let input = home.path().join("in");
    std::io::copy(
        &mut Gen::dump(9, 40_000_000),
        &mut std::fs::File::create(&input).unwrap(),
    )
    .unwrap();
    for _ in 0..2 {
        s3cli(home.path())
            .args(["-r", &loc, "snapshot", "--stdin", "--name", "db"])
            .pipe_stdin(&input)
            .unwrap()
            .assert()
            .success();
    }
    let out = s3cli(home.path())
        .args(["-r", &loc, "--json", "stats"])
        .output()
        .unwrap();
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["snapshots"], 2);
    assert!(st["dedup_ratio"].as_f64().unwrap() > 1.9, "{st}");
    let target = home.path().join("out");
    s3cli(home.path())
        .args(["-r", &loc, "restore", "latest", "--target", target.to_str().unwrap()])
        .assert()
        .success();
    assert_eq!(
        digest(std::fs::File::open(&target).unwrap()),
        digest(std::fs::File::open(&input).unwrap())
    );
    // A fresh cache is rebuilt from the bucket.
    std::fs::remove_dir_all(home.path().join("cache")).unwrap();
    s3cli(home.path())
        .args(["-r", &loc, "check", "--read-data"])
        .assert()
        .success();
    s3cli(home.path())
        .env("DBBACKUP_PASSWORD", "nope")
        .args(["-r", &loc, "snapshots"])
        .assert()
        .code(77);
    // A prefix with no repository: 66.
    let other = format!("s3://backups/none?endpoint=http://127.0.0.1:{}", moto.port);
    s3cli(home.path()).args(["-r", &other, "snapshots"]).assert().code(66);
}

#[test]
fn unreachable_storage_exits_69() {
    let home = tempfile::tempdir().unwrap();
    let port = common::pg::free_port(); // nothing listens there
    let loc = format!("s3://backups/x?endpoint=http://127.0.0.1:{port}");
    s3cli(home.path())
        .env("DBBACKUP_STORAGE_RETRIES", "1")
        .args(["-r", &loc, "snapshots"])
        .assert()
        .code(69);
}
