//! Hooks and notifications (#26 part 4): `[hooks.OPERATION]` commands run around a command
//! with the run's facts in `DBBACKUP_*` variables and no repository secret; a failing
//! `before` hook stops the command (exit 5); a hook past its time limit is stopped;
//! `[[notify.webhook]]` POSTs failures (and successes when asked) to a server on loopback,
//! retried, the URL read from a file and never printed.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use common::{cli, cli_repo, stderr};

fn write_config(home: &Path, text: &str) {
    let dir = home.join("config").join("dbbackup");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.toml"), text).unwrap();
}

/// `KEY=value` lines a hook wrote with `env`.
fn env_file(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn get<'a>(env: &'a [(String, String)], k: &str) -> Option<&'a str> {
    env.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
}

fn snapshot(home: &Path, repo: &Path, extra: &[&str]) -> std::process::Output {
    cli(home)
        .args(["-r", repo.to_str().unwrap(), "snapshot", "--stdin", "--name", "shop"])
        .args(extra)
        .write_stdin(vec![5u8; 20_000])
        .output()
        .unwrap()
}

/// A snapshot of `shop` whose command fails (exit 7).
fn failing_snapshot(home: &Path, repo: &Path) -> std::process::Output {
    cli(home)
        .args([
            "-r",
            repo.to_str().unwrap(),
            "snapshot",
            "--from-command",
            "exit 7",
            "--name",
            "shop",
        ])
        .output()
        .unwrap()
}

/// The pids of processes whose command line matches `pattern` (pgrep -f), or "".
fn running(pattern: &str) -> String {
    let ps = std::process::Command::new("pgrep")
        .args(["-f", pattern])
        .output()
        .unwrap();
    String::from_utf8_lossy(&ps.stdout).trim().to_string()
}

fn snapshot_count(home: &Path, repo: &Path) -> usize {
    let o = cli(home)
        .args(["-r", repo.to_str().unwrap(), "--json", "snapshots"])
        .output()
        .unwrap();
    common::json(&o).as_array().unwrap().len()
}

#[test]
fn hooks_run_around_a_command_with_its_facts_and_no_secret() {
    let (home, repo) = cli_repo();
    let h = home.path();
    let out = |n: &str| h.join(n).to_str().unwrap().to_string();
    write_config(
        h,
        &format!(
            "[hooks.snapshot]\nbefore = \"env > {}\"\nafter = \"env > {}\"\non_success = \"env > {}\"\n\
             on_failure = \"env > {}\"\n",
            out("before"),
            out("after"),
            out("success"),
            out("failure")
        ),
    );
    let o = cli(h)
        .env("AWS_SECRET_ACCESS_KEY", "storage-s3cret")
        .args([
            "-r",
            repo.to_str().unwrap(),
            "--json",
            "snapshot",
            "--stdin",
            "--name",
            "shop",
        ])
        .write_stdin(vec![5u8; 20_000])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let id = common::json(&o)["id"].as_str().unwrap().to_string();
    let before = env_file(&h.join("before"));
    assert_eq!(get(&before, "DBBACKUP_HOOK"), Some("before"));
    assert_eq!(get(&before, "DBBACKUP_OPERATION"), Some("snapshot"));
    let after = env_file(&h.join("after"));
    assert_eq!(get(&after, "DBBACKUP_STATUS"), Some("ok"));
    assert_eq!(get(&after, "DBBACKUP_EXIT_CODE"), Some("0"));
    assert_eq!(get(&after, "DBBACKUP_SOURCE"), Some("shop"));
    assert_eq!(get(&after, "DBBACKUP_SNAPSHOT_ID"), Some(id.as_str()));
    assert_eq!(get(&after, "DBBACKUP_BYTES_READ"), Some("20000"));
    assert!(get(&after, "DBBACKUP_DURATION_SECONDS").is_some());
    assert_eq!(get(&env_file(&h.join("success")), "DBBACKUP_HOOK"), Some("on_success"));
    assert!(!h.join("failure").exists(), "on_failure ran after a success");
    for f in ["before", "after", "success"] {
        let env = env_file(&h.join(f));
        assert!(
            env.iter()
                .all(|(k, v)| k != "DBBACKUP_PASSWORD" && v != common::PASSWORD && v != "storage-s3cret"),
            "{f} hook saw the repository password or a storage credential: {env:?}"
        );
    }

    // A failed run: on_failure, with the error.
    std::fs::remove_file(h.join("after")).unwrap();
    let o = failing_snapshot(h, &repo);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let failure = env_file(&h.join("failure"));
    assert_eq!(get(&failure, "DBBACKUP_STATUS"), Some("failed"));
    assert_eq!(get(&failure, "DBBACKUP_SOURCE"), Some("shop"));
    assert_eq!(
        get(&failure, "DBBACKUP_EXIT_CODE"),
        o.status.code().map(|c| c.to_string()).as_deref()
    );
    assert!(
        get(&failure, "DBBACKUP_ERROR").unwrap().contains("status 7"),
        "{failure:?}"
    );
    assert_eq!(get(&env_file(&h.join("after")), "DBBACKUP_STATUS"), Some("failed"));
}

#[test]
fn a_failing_before_hook_stops_the_command_with_status_5() {
    let (home, repo) = cli_repo();
    let h = home.path();
    write_config(
        h,
        "[hooks.snapshot]\nbefore = \"echo replica not paused >&2; exit 1\"\n",
    );
    let o = snapshot(h, &repo, &["--json"]);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "before_hook");
    let m = v["error"]["message"].as_str().unwrap();
    assert!(
        m.contains("before hook of snapshot") && m.contains("replica not paused"),
        "{m}"
    );
    assert_eq!(
        snapshot_count(h, &repo),
        0,
        "the snapshot ran after its before hook failed"
    );

    // Past its time limit the hook and what it started are stopped.
    write_config(h, "[hooks.snapshot]\ntimeout = \"1s\"\nbefore = \"sleep 300 & wait\"\n");
    let t = std::time::Instant::now();
    let o = snapshot(h, &repo, &[]);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert!(stderr(&o).contains("did not end within 1s"), "{}", stderr(&o));
    assert!(t.elapsed().as_secs() < 60);
    assert_eq!(running("^sleep 300$"), "", "the hook's child outlived it");

    // A child that ignores SIGTERM, left behind when the hook's shell died of it, is
    // killed after the grace period too.
    write_config(
        h,
        "[hooks.snapshot]\ntimeout = \"1s\"\nbefore = \"(trap '' TERM; exec sleep 301) & wait\"\n",
    );
    let t = std::time::Instant::now();
    let o = snapshot(h, &repo, &[]);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    // (It used to wait for that child, which held the hook's stderr open: 301 s.)
    assert!(t.elapsed().as_secs() < 60, "waited {:?} for the hook", t.elapsed());
    assert_eq!(
        running("^sleep 301$"),
        "",
        "a child that ignores SIGTERM outlived the hook"
    );

    // An unknown operation in [hooks] is refused, naming the known ones.
    write_config(h, "[hooks.snapshott]\nbefore = \"true\"\n");
    let o = snapshot(h, &repo, &[]);
    assert_eq!(o.status.code(), Some(78));
    assert!(
        stderr(&o).contains("unknown operation in [hooks] `snapshott`"),
        "{}",
        stderr(&o)
    );
}

/// An HTTP server on loopback that answers each request with the next status of `answers`
/// (then 200) and keeps (request line, headers, body).
struct Hook {
    port: u16,
    seen: Arc<Mutex<Vec<(String, String, String)>>>,
}

fn hook_server(answers: Vec<u16>) -> Hook {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let seen: Arc<Mutex<Vec<(String, String, String)>>> = Arc::default();
    let s = seen.clone();
    std::thread::spawn(move || {
        let mut answers = answers.into_iter();
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            let (mut headers, mut len) = (String::new(), 0usize);
            loop {
                let mut h = String::new();
                r.read_line(&mut h).unwrap();
                if h == "\r\n" || h.is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
                headers.push_str(&h);
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            s.lock()
                .unwrap()
                .push((line.trim().to_string(), headers, String::from_utf8(body).unwrap()));
            let code = answers.next().unwrap_or(200);
            let _ = write!(
                conn,
                "HTTP/1.1 {code} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
    });
    Hook { port, seen }
}

#[test]
fn webhooks_hear_of_failures_retried_and_of_successes_when_asked() {
    let (home, repo) = cli_repo();
    let h = home.path();
    let fails = hook_server(vec![500, 503]);
    let all = hook_server(vec![]);
    let url_file = h.join("hook-url");
    std::fs::write(&url_file, format!("http://127.0.0.1:{}/secret-path\n", fails.port)).unwrap();
    std::fs::write(h.join("token"), "tok3n\n").unwrap();
    write_config(
        h,
        &format!(
            "[[notify.webhook]]\nname = \"ops\"\nurl_file = \"{}\"\ntoken_file = \"{}\"\nformat = \"slack\"\n\n\
             [[notify.webhook]]\nurl = \"http://127.0.0.1:{}/all\"\non = [\"ok\", \"failed\"]\noperations = [\"snapshot\"]\n",
            url_file.display(),
            h.join("token").display(),
            all.port
        ),
    );
    let o = snapshot(h, &repo, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = failing_snapshot(h, &repo);
    assert!(!o.status.success());
    assert!(!stderr(&o).contains("secret-path"), "{}", stderr(&o));
    // `ops`: the failure only, after two refusals (three attempts).
    let seen = fails.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "{seen:?}");
    for (line, headers, body) in &seen {
        assert_eq!(line, "POST /secret-path HTTP/1.1");
        assert!(
            headers.to_ascii_lowercase().contains("authorization: bearer tok3n"),
            "{headers}"
        );
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        let text = v["text"].as_str().unwrap();
        assert!(text.starts_with("dbbackup snapshot of shop on "), "{text}");
        assert!(text.contains(": failed (exit "), "{text}");
    }
    // The other: the success and the failure, as JSON documents.
    let seen = all.seen.lock().unwrap().clone();
    let docs: Vec<serde_json::Value> = seen.iter().map(|s| serde_json::from_str(&s.2).unwrap()).collect();
    let statuses: Vec<_> = docs.iter().map(|d| d["status"].as_str().unwrap().to_string()).collect();
    assert_eq!(statuses, ["ok", "failed"]);
    assert_eq!(docs[0]["figures"]["bytes_read"], 20_000);
    assert_eq!(docs[0]["source"], "shop");
    assert!(docs[0]["snapshot_id"].is_string());

    // An unreachable webhook is a warning naming it; the exit status stays the command's.
    std::fs::write(&url_file, "http://127.0.0.1:9/secret-path\n").unwrap();
    let o = failing_snapshot(h, &repo);
    let err = stderr(&o);
    assert!(err.contains("notification to ops not delivered"), "{err}");
    assert!(!err.contains("secret-path"), "{err}");
}
