//! Selection that cannot surprise (#26 part 7): `snapshots`, `ls` and `restore` take
//! `--name`, `--snapshot-host`, `--engine` and `--tag`; `latest` that matches snapshots of more
//! than one host or engine refuses (exit 2) and lists them instead of guessing; `--engine`
//! on restore never lets another engine's snapshot through.

mod common;

use std::path::Path;

use common::{cli, cli_repo, snapshot_stdin, stderr};

fn run(home: &Path, repo: &Path, args: &[&str]) -> std::process::Output {
    cli(home)
        .args([&["-r", repo.to_str().unwrap()][..], args].concat())
        .output()
        .unwrap()
}

fn listed(home: &Path, repo: &Path, args: &[&str]) -> Vec<String> {
    let o = run(home, repo, &[&["--json", "snapshots"][..], args].concat());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn latest_refuses_to_guess_between_hosts_and_engines() {
    let (home, repo) = cli_repo();
    let h = home.path();
    let a1 = snapshot_stdin(
        h,
        &repo,
        "all",
        b"h1 day 1".to_vec(),
        &["--hostname", "h1", "--tag", "nightly"],
    );
    let b = snapshot_stdin(
        h,
        &repo,
        "all",
        b"h2 day 1".to_vec(),
        &["--hostname", "h2", "--tag", "nightly"],
    );
    let a2 = snapshot_stdin(h, &repo, "all", b"h1 day 2".to_vec(), &["--hostname", "h1"]);

    // Two hosts: `latest` names both and restores nothing.
    let out = h.join("out");
    let o = run(
        h,
        &repo,
        &["restore", "latest", "--name", "all", "--target", out.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("h1/stdin/all: ") && err.contains("h2/stdin/all: "),
        "{err}"
    );
    assert!(
        err.contains(&a2[..8]) && err.contains(&b[..8]),
        "the newest of each: {err}"
    );
    assert!(err.contains("dbbackup: hint: choose with --snapshot-host"), "{err}");
    assert!(!out.exists());
    let o = run(h, &repo, &["ls", "latest"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));

    // Saying which host picks its newest.
    let o = run(
        h,
        &repo,
        &["restore", "latest", "--snapshot-host", "h1", "--target", "-"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(o.stdout, b"h1 day 2");
    let o = run(
        h,
        &repo,
        &["restore", "latest", "--snapshot-host", "h2", "--target", "-"],
    );
    assert_eq!(o.stdout, b"h2 day 1");
    // Tags narrow too (all of them must match).
    let o = run(
        h,
        &repo,
        &[
            "restore",
            "latest",
            "--snapshot-host",
            "h1",
            "--tag",
            "nightly",
            "--target",
            "-",
        ],
    );
    assert_eq!(o.stdout, b"h1 day 1");
    assert_eq!(listed(h, &repo, &["--tag", "nightly"]), [a1.clone(), b.clone()]);
    assert_eq!(
        listed(h, &repo, &["--tag", "nightly", "--tag", "other"]),
        Vec::<String>::new()
    );
    assert_eq!(listed(h, &repo, &["--snapshot-host", "h1"]), [a1.clone(), a2.clone()]);

    // An engine filter never lets another engine's snapshot through: these are streams.
    let o = run(
        h,
        &repo,
        &[
            "restore", "latest", "--name", "all", "--engine", "postgres", "--target", "-",
        ],
    );
    assert_eq!(o.status.code(), Some(66), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no snapshot with name `all`, engine postgresql"),
        "{}",
        stderr(&o)
    );
    assert!(o.stdout.is_empty());
    assert_eq!(listed(h, &repo, &["--engine", "mysql"]), Vec::<String>::new());

    // One host, two kinds of source under one name: refused as well.
    let o = cli(h)
        .args([
            "-r",
            repo.to_str().unwrap(),
            "snapshot",
            "--name",
            "all",
            "--hostname",
            "h1",
        ])
        .args(["--from-command", "printf command"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = run(
        h,
        &repo,
        &["restore", "latest", "--snapshot-host", "h1", "--target", "-"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("h1/command/all"), "{}", stderr(&o));
    // An id is never ambiguous.
    let o = run(h, &repo, &["restore", &a1[..12], "--target", "-"]);
    assert_eq!(o.stdout, b"h1 day 1");
}
