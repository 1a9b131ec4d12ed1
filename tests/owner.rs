//! The ownership guard: on a local repository that belongs to another OS user, commands that
//! write refuse (exit 77, naming both users and the way out) before writing anything, and
//! commands that only read go on without a lock, leaving no file behind.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::ops::{random, run};
use common::{cli, cli_repo, json, stderr};

const OTHER: u32 = 4242;

/// Every file and directory under `dir` with its owner and size.
fn tree(dir: &Path) -> Vec<(PathBuf, u32, u64)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                todo.push(p.clone());
            }
            out.push((p, m.uid(), if m.is_dir() { 0 } else { m.len() }));
        }
    }
    out.sort();
    out
}

#[test]
fn a_repository_of_another_os_user_is_read_but_not_written() {
    let (home, repo) = cli_repo();
    let h = home.path();
    let data = random(5, 400_000);
    let o = cli(h)
        .arg("-r")
        .arg(&repo)
        .args(["--json", "snapshot", "--stdin", "--name", "db"])
        .write_stdin(data.clone())
        .output()
        .unwrap();
    let id = json(&o)["id"].as_str().unwrap().to_string();
    let o = std::process::Command::new("chown")
        .arg("-R")
        .arg(format!("{OTHER}:{OTHER}"))
        .arg(&repo)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "this test needs root to chown: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let before = tree(&repo);

    for args in [
        &["snapshot", "--stdin", "--name", "db"][..],
        &["prune"],
        &["forget", &id],
        &["unlock"],
    ] {
        let o = cli(h)
            .arg("-r")
            .arg(&repo)
            .args(args)
            .write_stdin(b"x".to_vec())
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(77), "{args:?}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(
            e.contains(&format!("uid {OTHER}")) && e.contains("uid 0") && e.contains("--allow-other-owner"),
            "{e}"
        );
        assert_eq!(tree(&repo), before, "{args:?} wrote nothing");
    }

    let o = cli(h)
        .arg("-r")
        .arg(&repo)
        .args(["restore", &id, "--target", "-"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(o.stdout, data);
    assert!(stderr(&o).contains("belongs to another OS user"), "{}", stderr(&o));
    let o = run(h, &repo, &["check", "--read-data"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(tree(&repo), before, "reading left nothing behind");

    let o = cli(h)
        .arg("-r")
        .arg(&repo)
        .args(["--allow-other-owner", "snapshot", "--stdin", "--name", "db"])
        .write_stdin(random(6, 100_000))
        .output()
        .unwrap();
    assert!(o.status.success(), "allowed: {}", stderr(&o));
}
