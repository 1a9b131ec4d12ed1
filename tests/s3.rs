//! The S3 backend against a real S3-compatible server (moto_server, installed by
//! scripts/setup.sh) on a loopback port: the cycle every backend passes, init, snapshot,
//! restore, check, refusals, and an unreachable endpoint.

mod common;

use common::servers::{self, repository_cycle};
use common::{cli, digest, Gen};

fn s3cli(home: &std::path::Path) -> assert_cmd::Command {
    let mut c = cli(home);
    c.env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1");
    c
}

#[test]
fn s3_cycle() {
    let moto = servers::moto("backups");
    let home = tempfile::tempdir().unwrap();
    let loc = format!("s3://backups/cycle?endpoint=http://127.0.0.1:{}", moto.port);
    let creds = [
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
    ];
    repository_cycle(home.path(), &loc, &creds);
}

#[test]
fn s3_repository_round_trip() {
    let moto = servers::moto("backups");
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
