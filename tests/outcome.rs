//! How a run ends, for the scripts and monitoring that run dbbackup unattended (#26 part 1):
//! `--json` prints one JSON object on failure too (kind, exit code, message, hint), `-q`
//! prints nothing but errors, `--log-format json` carries one `result` event per result and
//! the final error as JSON (never a plain-text line), and boolean environment variables take
//! the usual spellings. (Partly done runs, exit 3, are tested with real servers in
//! pg_sources.rs and mysql_sources.rs.)

mod common;

use std::path::Path;

use common::{cli, cli_repo, snapshot_stdin, stderr};

fn run(home: &Path, args: &[&str]) -> std::process::Output {
    cli(home).args(args).output().unwrap()
}

/// Stdout as one JSON value (fails on anything else, e.g. two objects).
fn stdout_json(o: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON value ({e}): {}",
            String::from_utf8_lossy(&o.stdout)
        )
    })
}

/// Stderr's lines as JSON objects (each must be one).
fn log_events(o: &std::process::Output) -> Vec<serde_json::Value> {
    stderr(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}")))
        .collect()
}

#[test]
fn json_output_reports_failures_as_one_object() {
    let (home, repo) = cli_repo();
    let h = home.path();
    let r = repo.to_str().unwrap();
    let missing = h.join("missing");

    // A library error: its kind, status, message; the text stays on stderr too.
    let o = run(h, &["--json", "-r", missing.to_str().unwrap(), "snapshots"]);
    assert_eq!(o.status.code(), Some(66));
    let v = stdout_json(&o);
    assert_eq!(v["operation"], "snapshots");
    assert_eq!(v["status"], "failed");
    assert_eq!(v["exit_code"], 66);
    assert_eq!(v["error"]["kind"], "not_found");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("no repository at"),
        "{v}"
    );
    assert!(
        stderr(&o).contains("dbbackup: error: no repository at"),
        "{}",
        stderr(&o)
    );

    // With a hint: said in the flags' words, in its own field.
    let o = run(h, &["--json", "-r", r, "forget"]);
    assert_eq!(o.status.code(), Some(2));
    let v = stdout_json(&o);
    assert_eq!(v["error"]["kind"], "usage");
    assert!(v["error"]["hint"].as_str().unwrap().contains("--keep-last"), "{v}");

    // Arguments clap refuses.
    let o = run(h, &["--json", "-r", r, "snapshot", "--no-such-flag"]);
    assert_eq!(o.status.code(), Some(2));
    let v = stdout_json(&o);
    assert_eq!(v["error"]["kind"], "usage");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("--no-such-flag"),
        "{v}"
    );

    // A check that finds damage: its report and the error, one object.
    snapshot_stdin(h, &repo, "db", vec![7u8; 100_000], &[]);
    let pack = common::packs(&repo).pop().unwrap();
    let mut bytes = std::fs::read(&pack).unwrap();
    bytes[40] ^= 1;
    std::fs::write(&pack, bytes).unwrap();
    let o = run(h, &["--json", "-r", r, "check", "--read-data"]);
    assert_eq!(o.status.code(), Some(65), "{}", stderr(&o));
    let v = stdout_json(&o);
    assert_eq!(v["status"], "failed");
    assert_eq!(v["error"]["kind"], "corrupt");
    assert!(!v["errors"].as_array().unwrap().is_empty(), "{v}");
}

#[test]
fn quiet_prints_nothing_but_errors() {
    let (home, repo) = cli_repo();
    let h = home.path();
    let r = repo.to_str().unwrap();
    let o = cli(h)
        .args(["-q", "-r", r, "snapshot", "--stdin", "--name", "db"])
        .write_stdin(vec![1u8; 50_000])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(o.stdout.is_empty(), "{}", String::from_utf8_lossy(&o.stdout));
    assert!(o.stderr.is_empty(), "{}", stderr(&o));
    for args in [
        vec!["-q", "-r", r, "check"],
        vec!["-q", "-r", r, "forget", "--keep-last", "1"],
        vec!["-q", "-r", r, "prune"],
        vec!["-q", "-r", r, "snapshots"],
    ] {
        let o = run(h, &args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        assert!(o.stdout.is_empty() && o.stderr.is_empty(), "{args:?}: {o:?}");
    }
    // What was asked for explicitly is still printed.
    let o = run(h, &["-q", "--json", "-r", r, "snapshots"]);
    assert_eq!(stdout_json(&o).as_array().unwrap().len(), 1);
    // Errors are.
    let o = run(h, &["-q", "-r", r, "restore", "abcdef12", "--target", "-"]);
    assert_eq!(o.status.code(), Some(66));
    assert!(stderr(&o).starts_with("dbbackup: error: "), "{}", stderr(&o));
}

#[test]
fn json_logs_carry_results_and_the_final_error() {
    let (home, repo) = cli_repo();
    let h = home.path();
    let r = repo.to_str().unwrap();
    let o = cli(h)
        .args(["--log-format", "json", "-r", r, "snapshot", "--stdin", "--name", "shop"])
        .write_stdin(vec![2u8; 300_000])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let events = log_events(&o);
    let saved: Vec<_> = events.iter().filter(|e| e["target"] == "result").collect();
    assert_eq!(saved.len(), 1, "{events:?}");
    let e = saved[0];
    assert_eq!(e["operation"], "snapshot");
    assert_eq!(e["status"], "ok");
    assert_eq!(e["source"], "shop");
    assert_eq!(e["bytes_read"], 300_000);
    assert!(e["bytes_stored"].as_u64().unwrap() > 0, "{e}");
    assert_eq!(e["snapshot_id"].as_str().unwrap().len(), 64, "{e}");
    assert!(e["duration_seconds"].is_number(), "{e}");

    for (args, op) in [
        (vec!["check"], "check"),
        (vec!["forget", "--keep-last", "5"], "forget"),
        (vec!["prune"], "prune"),
    ] {
        let o = run(h, &[&["--log-format", "json", "-r", r][..], &args].concat());
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let results: Vec<_> = log_events(&o).into_iter().filter(|e| e["target"] == "result").collect();
        assert_eq!(results.len(), 1, "{op}: {results:?}");
        assert_eq!(results[0]["operation"], op);
    }

    // The final error is an event too, not a plain-text line.
    let o = run(
        h,
        &["--log-format", "json", "-r", r, "restore", "abcdef12", "--target", "-"],
    );
    assert_eq!(o.status.code(), Some(66));
    let events = log_events(&o);
    let last = events.last().unwrap();
    assert_eq!(last["target"], "result");
    assert_eq!(last["level"], "ERROR");
    assert_eq!(last["status"], "failed");
    assert_eq!(last["exit_code"], 66);
    assert_eq!(last["kind"], "not_found");
}

#[test]
fn boolean_environment_variables_take_the_usual_spellings() {
    let (home, repo) = cli_repo();
    let h = home.path();
    let r = repo.to_str().unwrap();
    for v in ["1", "0", "true", "false", "yes", "no", "on", "off"] {
        let o = cli(h)
            .env("DBBACKUP_NO_PROGRESS", v)
            .args(["-r", r, "snapshots"])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "DBBACKUP_NO_PROGRESS={v}: {}", stderr(&o));
    }
    let o = cli(h)
        .env("DBBACKUP_NO_PROGRESS", "maybe")
        .args(["-r", r, "snapshots"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}
