//! Children die with dbbackup and never see its secrets: a `--from-command` shell and
//! everything it started (background jobs included) are stopped when dbbackup is
//! interrupted by SIGTERM or SIGINT; the command runs in a session of its own; neither it nor
//! a password command sees DBBACKUP_PASSWORD or DBBACKUP_NEW_PASSWORD, while what a child
//! needs (PGPASSWORD) reaches it.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{cli, cli_repo, snapshot_stdin, stderr, PASSWORD};

/// Whether process `pid` still runs (a zombie waiting for its parent does not).
fn running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // "pid (comm) S ...": the state follows the last ')'.
            let state = stat.rsplit_once(')').map(|(_, r)| r.trim_start()).unwrap_or("");
            !state.starts_with('Z') && !state.starts_with('X')
        }
        Err(_) => false,
    }
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(30), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn read_pid(p: &Path) -> Option<i32> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

#[test]
fn an_interrupted_snapshot_stops_everything_its_command_started() {
    let (home, repo) = cli_repo();
    for (signal, code) in [(libc::SIGTERM, 143), (libc::SIGINT, 130)] {
        let bg = home.path().join(format!("bg-{signal}.pid"));
        let fg = home.path().join(format!("fg-{signal}.pid"));
        // A background job, a subshell, and a loop in the shell itself.
        let command = format!(
            "sleep 600 & echo $! > {bg}; (sh -c 'echo $$ > {fg}; exec sleep 600') & \
             while true; do head -c 10000 /dev/urandom; sleep 0.05; done",
            bg = bg.display(),
            fg = fg.display()
        );
        let mut p = common::spawn_cli(home.path())
            .arg("-r")
            .arg(&repo)
            .args(["snapshot", "--name", "x", "--from-command", &command])
            .spawn()
            .unwrap();
        wait_for("the command's children", || {
            read_pid(&bg).is_some() && read_pid(&fg).is_some()
        });
        let pids = [read_pid(&bg).unwrap(), read_pid(&fg).unwrap()];
        assert!(pids.iter().all(|&p| running(p)));
        unsafe {
            libc::kill(p.id() as i32, signal);
        }
        assert_eq!(p.wait().unwrap().code(), Some(code));
        wait_for("every process the command started to end", || {
            pids.iter().all(|&p| !running(p))
        });
    }
}

#[test]
fn children_never_see_the_repository_password() {
    let (home, repo) = cli_repo();
    let command = "env; echo \"session $$ $(cut -d' ' -f6 /proc/$$/stat)\"";
    let o = cli(home.path())
        .arg("-r")
        .arg(&repo)
        .env("DBBACKUP_NEW_PASSWORD", "new-secret-42")
        .env("PGPASSWORD", "pg-secret-17")
        .args(["--json", "snapshot", "--name", "env", "--from-command", command])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let o = cli(home.path())
        .arg("-r")
        .arg(&repo)
        .args(["restore", "latest", "--name", "env", "--target", "-"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let seen = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        !seen.contains(PASSWORD),
        "the command saw the repository password:\n{seen}"
    );
    assert!(!seen.contains("DBBACKUP_PASSWORD"), "{seen}");
    assert!(
        !seen.contains("new-secret-42"),
        "the command saw the new password:\n{seen}"
    );
    assert!(
        seen.contains("PGPASSWORD=pg-secret-17"),
        "what a child needs must reach it:\n{seen}"
    );
    // It leads a session of its own (its whole group can be signalled, it has no terminal).
    let session = seen.lines().find_map(|l| l.strip_prefix("session ")).unwrap();
    let (pid, sid) = session.split_once(' ').unwrap();
    assert_eq!(pid, sid, "the command runs in a session of its own");

    // A password command sees neither secret either.
    snapshot_stdin(home.path(), &repo, "x", b"x".to_vec(), &[]);
    let env_file = home.path().join("password-command-env");
    let o = cli(home.path())
        .arg("-r")
        .arg(&repo)
        .env_remove("DBBACKUP_PASSWORD")
        .env("DBBACKUP_NEW_PASSWORD", "new-secret-42")
        .arg("--password-command")
        .arg(format!("env > {}; echo '{PASSWORD}'", env_file.display()))
        .args(["snapshots"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let seen = std::fs::read_to_string(&env_file).unwrap();
    assert!(!seen.contains("new-secret-42"), "{seen}");
}
