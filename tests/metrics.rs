//! Metrics (#26 part 3): `--metrics-file` adds each run to a Prometheus text file (last
//! success per operation and source, figures, failures by operation) that concurrent runs
//! add up in; `metrics print` writes the repository's figures; `metrics serve` answers
//! /metrics, /health and /ready over HTTP on loopback.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{cli, cli_repo, ok, snapshot_stdin, spawn_cli, stderr};

/// The value of the sample `series` (name and labels, exactly) in a metrics page.
fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Prometheus's own parser and linter (`promtool check metrics`, installed by
/// scripts/setup.sh) accepts the page: node_exporter's textfile collector reads the text format
/// only, in which a counter's HELP and TYPE carry its `_total` name.
fn promtool(page: &str) {
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (scripts/setup.sh installs it)");
    child.stdin.take().unwrap().write_all(page.as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "promtool: {}{}\n{page}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!page.contains("# EOF"), "OpenMetrics' end marker in a text-format page");
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn the_metrics_file_records_each_run_and_concurrent_runs_add_up() {
    let (home, repo) = cli_repo();
    let r = repo.to_str().unwrap();
    let file = home.path().join("textfile").join("dbbackup.prom");
    std::fs::create_dir(file.parent().unwrap()).unwrap();
    let m = file.to_str().unwrap();
    // -q and JSON logs change nothing of what is recorded.
    snapshot_stdin(
        home.path(),
        &repo,
        "shop",
        vec![7u8; 10_000],
        &["--metrics-file", m, "-q"],
    );
    // A failed run (the command fails), from the environment variable this time.
    let o = cli(home.path())
        .env("DBBACKUP_METRICS_FILE", m)
        .args([
            "-r",
            r,
            "--log-format",
            "json",
            "snapshot",
            "--from-command",
            "exit 3",
            "--name",
            "shop",
        ])
        .output()
        .unwrap();
    assert_ne!(o.status.code(), Some(0), "{}", stderr(&o));
    // Eight checks at once, all recorded.
    let kids: Vec<_> = (0..8)
        .map(|_| {
            spawn_cli(home.path())
                .args(["-r", r, "--metrics-file", m, "check"])
                .spawn()
                .unwrap()
        })
        .collect();
    for mut k in kids {
        assert!(k.wait().unwrap().success());
    }
    let page = std::fs::read_to_string(&file).unwrap();
    let shop = format!(r#"{{operation="snapshot",host="{}",name="shop"}}"#, host());
    let last_ok = sample(&page, &format!("dbbackup_last_success_timestamp_seconds{shop}")).unwrap();
    let now = jiff::Timestamp::now().as_second() as f64;
    assert!((now - 600.0..=now + 1.0).contains(&last_ok), "{last_ok} vs {now}");
    assert_eq!(
        sample(&page, &format!("dbbackup_last_read_bytes{shop}")),
        Some(10_000.0),
        "{page}"
    );
    assert_eq!(
        sample(&page, &format!("dbbackup_last_run_success{shop}")),
        Some(0.0),
        "{page}"
    );
    assert_ne!(sample(&page, &format!("dbbackup_last_run_exit_code{shop}")), Some(0.0));
    let runs = |op: &str, status: &str| {
        sample(
            &page,
            &format!(r#"dbbackup_runs_total{{operation="{op}",status="{status}"}}"#),
        )
    };
    assert_eq!(runs("snapshot", "ok"), Some(1.0), "{page}");
    assert_eq!(runs("snapshot", "failed"), Some(1.0), "{page}");
    assert_eq!(runs("check", "ok"), Some(8.0), "{page}");
    assert_eq!(
        sample(&page, r#"dbbackup_failures_total{operation="snapshot"}"#),
        Some(1.0)
    );
    promtool(&page);
    let leftovers: Vec<_> = std::fs::read_dir(file.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "dbbackup.prom" && n != "dbbackup.prom.json")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn metrics_print_writes_the_repositorys_figures() {
    let (home, repo) = cli_repo();
    let r = repo.to_str().unwrap();
    snapshot_stdin(home.path(), &repo, "shop", vec![1u8; 5000], &[]);
    snapshot_stdin(home.path(), &repo, "shop", vec![2u8; 5000], &[]);
    ok(cli(home.path()).args(["-r", r, "check"]).output().unwrap(), "check");
    let out = home.path().join("repo.prom");
    ok(
        cli(home.path())
            .args(["-r", r, "metrics", "print", "--output", out.to_str().unwrap()])
            .output()
            .unwrap(),
        "metrics print",
    );
    let page = std::fs::read_to_string(&out).unwrap();
    let src = format!(r#"{{host="{}",engine="stdin",name="shop"}}"#, host());
    assert_eq!(sample(&page, &format!("dbbackup_snapshots{src}")), Some(2.0), "{page}");
    assert_eq!(sample(&page, "dbbackup_repository_snapshots"), Some(2.0));
    assert!(sample(&page, "dbbackup_repository_size_bytes").unwrap() > 0.0);
    assert_eq!(
        sample(&page, r#"dbbackup_last_check_problems{read_data="none"}"#),
        Some(0.0),
        "{page}"
    );
    assert!(sample(&page, "dbbackup_last_clean_check_timestamp_seconds").is_some());
    assert_eq!(sample(&page, "dbbackup_status_problems"), Some(0.0));
    promtool(&page);
}

/// GET `path` from 127.0.0.1:`port`: status code and body.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    get_raw(port, path, "").map(|(code, _, body)| (code, body))
}

/// GET with `headers` (lines ending in CRLF): status code, headers and body.
fn get_raw(port: u16, path: &str, headers: &str) -> Option<(u16, String, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\n{headers}Connection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split(' ').nth(1)?.parse().ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    Some((code, head.to_lowercase(), body.to_string()))
}

/// Poll `path` until `want(code, body)`, for up to a minute; the last answer.
fn wait_for(port: u16, path: &str, want: impl Fn(u16, &str) -> bool) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = get(port, path);
        if let Some((code, body)) = &got {
            if want(*code, body) {
                return (*code, body.clone());
            }
        }
        assert!(Instant::now() < deadline, "{path}: last answer {got:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(home: &Path, repo: &Path, port: u16, extra: &[&str]) -> Server {
    let listen = format!("127.0.0.1:{port}");
    let args = [
        "-r",
        repo.to_str().unwrap(),
        "metrics",
        "serve",
        "--listen",
        &listen,
        "--interval",
        "1s",
        "--probe-interval",
        "1s",
    ];
    Server(spawn_cli(home).args(args).args(extra).spawn().unwrap())
}

#[test]
fn metrics_serve_answers_metrics_health_and_ready() {
    let (home, repo) = cli_repo();
    snapshot_stdin(home.path(), &repo, "shop", vec![3u8; 5000], &[]);
    let port = free_port();
    let server = serve(home.path(), &repo, port, &[]);
    let (_, page) = wait_for(port, "/metrics", |c, _| c == 200);
    let src = format!(r#"{{host="{}",engine="stdin",name="shop"}}"#, host());
    assert_eq!(sample(&page, &format!("dbbackup_snapshots{src}")), Some(1.0), "{page}");
    assert_eq!(sample(&page, "dbbackup_up"), Some(1.0), "{page}");
    promtool(&page);
    // Prometheus asks for OpenMetrics, and gets it.
    let accept = "Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\n";
    let (code, head, om) = get_raw(port, "/metrics", accept).unwrap();
    assert_eq!(code, 200);
    assert!(head.contains("content-type: application/openmetrics-text"), "{head}");
    assert!(
        om.ends_with("# EOF\n") && om.contains("# TYPE dbbackup_up gauge"),
        "{om}"
    );
    assert_eq!(get(port, "/health"), Some((200, "ok\n".into())));
    assert_eq!(get(port, "/ready"), Some((200, "ok\n".into())));
    assert_eq!(get(port, "/other").map(|a| a.0), Some(404));
    // A new snapshot shows at the next reading.
    snapshot_stdin(home.path(), &repo, "shop", vec![4u8; 5000], &[]);
    wait_for(port, "/metrics", |_, b| {
        sample(b, &format!("dbbackup_snapshots{src}")) == Some(2.0)
    });
    // The repository gone: /health and /ready say so, /metrics keeps the last figures.
    std::fs::rename(repo.join("config"), repo.join("config.away")).unwrap();
    let (_, why) = wait_for(port, "/health", |c, _| c == 503);
    assert!(why.contains("config"), "{why}");
    assert_eq!(get(port, "/ready").map(|a| a.0), Some(503));
    let (_, page) = wait_for(port, "/metrics", |_, b| sample(b, "dbbackup_up") == Some(0.0));
    assert_eq!(sample(&page, &format!("dbbackup_snapshots{src}")), Some(2.0), "{page}");
    std::fs::rename(repo.join("config.away"), repo.join("config")).unwrap();
    wait_for(port, "/health", |c, _| c == 200);
    drop(server);

    // With a limit the newest snapshot breaks, /ready names the problem.
    std::thread::sleep(Duration::from_secs(2));
    let port = free_port();
    let _server = serve(home.path(), &repo, port, &["--max-age", "1s"]);
    let (_, why) = wait_for(port, "/ready", |c, _| c == 503);
    assert!(why.starts_with("snapshot_stale "), "{why}");
    let (_, page) = wait_for(port, "/metrics", |c, _| c == 200);
    assert_eq!(
        sample(&page, r#"dbbackup_status_problems_by_kind{kind="snapshot_stale"}"#),
        Some(1.0),
        "{page}"
    );
}

/// A run stopped by SIGTERM (a systemd timeout) is recorded as the failure it is, after its
/// cleanup: exit code 143, a failed run of its source.
#[test]
fn an_interrupted_run_is_recorded_as_failed() {
    let (home, repo) = cli_repo();
    let file = home.path().join("textfile").join("dbbackup.prom");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let mut child = spawn_cli(home.path())
        .args(["-r", repo.to_str().unwrap(), "--metrics-file", file.to_str().unwrap()])
        .args(["snapshot", "--from-command", "sleep 60", "--name", "slow"])
        .spawn()
        .unwrap();
    // Its lock is there once the command runs.
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_dir(repo.join("locks")).map_or(0, |d| d.count()) == 0 {
        assert!(Instant::now() < deadline, "the snapshot never took its lock");
        std::thread::sleep(Duration::from_millis(50));
    }
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    assert_eq!(child.wait().unwrap().code(), Some(143));
    let page = std::fs::read_to_string(&file).unwrap();
    let slow = format!(r#"{{operation="snapshot",host="{}",name="slow"}}"#, host());
    assert_eq!(
        sample(&page, &format!("dbbackup_last_run_exit_code{slow}")),
        Some(143.0),
        "{page}"
    );
    assert_eq!(
        sample(&page, &format!("dbbackup_last_run_success{slow}")),
        Some(0.0),
        "{page}"
    );
    assert_eq!(
        sample(&page, r#"dbbackup_failures_total{operation="snapshot"}"#),
        Some(1.0),
        "{page}"
    );
    promtool(&page);
}

/// A host that boots before its storage answers, or a repository not made yet: `metrics
/// serve` keeps serving, `/health` says why it is not healthy, and the figures come once the
/// repository is there.
#[test]
fn metrics_serve_waits_for_a_repository_that_is_not_there_yet() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let repo = h.join("later");
    let port = free_port();
    let _server = serve(h, &repo, port, &[]);
    let (_, why) = wait_for(port, "/health", |c, _| c == 503);
    assert!(!why.trim().is_empty());
    assert_eq!(get(port, "/metrics").map(|a| a.0), Some(503));
    assert!(!repo.exists(), "nothing is created where the repository will be");
    common::init_repo(h, &repo, &[]);
    snapshot_stdin(h, &repo, "shop", vec![5u8; 5000], &[]);
    wait_for(port, "/health", |c, _| c == 200);
    let (_, page) = wait_for(port, "/metrics", |c, _| c == 200);
    assert_eq!(sample(&page, "dbbackup_repository_snapshots"), Some(1.0), "{page}");
}

#[test]
fn a_port_in_use_is_refused_clearly() {
    let (home, repo) = cli_repo();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let o = cli(home.path())
        .args(["-r", repo.to_str().unwrap(), "metrics", "serve", "--listen", &listen])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(69), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("cannot listen on {listen}")),
        "{}",
        stderr(&o)
    );
}
