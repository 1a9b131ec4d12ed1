//! SFTP repositories beyond what OpenDAL's service does. The repository directory is made
//! private (0700) before the first object is written, so the files the server creates with
//! its own umask (often 0644) cannot be read by other users of that host. And the ssh
//! processes the service starts (a control master per connection, `ssh -M -f`, which
//! detaches and outlives a connection whose setup was cancelled, or a process that exits
//! without closing it) are stopped when a command ends, on every exit path. And a
//! connection that could not be made for a reason that may pass (refused, reset, timed out,
//! unreachable) is tried again like any other backend's transient failure: OpenDAL's SFTP
//! service reports every ssh error as permanent.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use openssh::{KnownHosts, SessionBuilder};
use openssh_sftp_client::{Sftp, SftpOptions};

use crate::error::{Error, ErrorKind, Result};
use crate::storage::Location;

/// The environment variable marking the ssh processes this dbbackup process started.
const MARK: &str = "DBBACKUP_SSH_OWNER";

/// Whether this process opened an SFTP store (only then can it have ssh processes to stop).
static OPENED: AtomicBool = AtomicBool::new(false);

/// Record that this process opens an SFTP store.
pub fn opened() {
    OPENED.store(true, Ordering::SeqCst);
}

/// The prefix of the control directories the `openssh` crate makes for its masters.
const CONTROL_DIR_PREFIX: &str = ".ssh-connection";

fn known_hosts(loc: &Location) -> KnownHosts {
    match loc
        .options
        .get("known_hosts_strategy")
        .map(|s| s.to_lowercase())
        .as_deref()
    {
        Some("accept") => KnownHosts::Accept,
        Some("add") => KnownHosts::Add,
        _ => KnownHosts::Strict,
    }
}

/// Create the repository directory of SFTP location `loc` if needed and set it to 0700.
pub async fn make_private(loc: &Location) -> Result<()> {
    opened();
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        Error::new(ErrorKind::Unavailable, format!("cannot {what} on {}: {e}", loc.display))
    };
    let endpoint = loc.options.get("endpoint").cloned().unwrap_or_default();
    let root = loc.options.get("root").cloned().unwrap_or_else(|| "/".into());
    let mut b = SessionBuilder::default();
    if let Some(u) = loc.options.get("user") {
        b.user(u.clone());
    }
    if let Some(k) = loc.options.get("key") {
        b.keyfile(k);
    }
    b.known_hosts_check(known_hosts(loc));
    let session = b.connect(&endpoint).await.map_err(|e| fail("connect", &e))?;
    let sftp = Sftp::from_session(session, SftpOptions::default())
        .await
        .map_err(|e| fail("start sftp", &e))?;
    let mut fs = sftp.fs();
    let mut path = PathBuf::from("/");
    for part in Path::new(&root).components().skip(1) {
        path.push(part);
        // Exists already, or made now: the permissions below tell.
        let _ = fs.create_dir(&path).await;
    }
    let r = fs
        .set_permissions(&path, openssh_sftp_client::metadata::Permissions::from(0o700u16))
        .await
        .map_err(|e| fail(&format!("make {} private (chmod 700)", path.display()), &e));
    drop(fs);
    let closed = sftp.close().await.map_err(|e| fail("close the sftp session", &e));
    r.and(closed)
}

/// The ssh error behind `e` (from OpenDAL's SFTP service), if there is one.
fn ssh_error(e: &opendal::Error) -> Option<&openssh::Error> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(cause) = next {
        if let Some(ssh) = cause.downcast_ref::<openssh::Error>() {
            return Some(ssh);
        }
        next = cause.source();
    }
    None
}

/// Whether `e` is ssh refusing who we are: the server refused the key (or every method), or
/// the host key is not the one known. Trying again cannot help.
pub fn refused(e: &opendal::Error) -> bool {
    let Some(openssh::Error::Connect(io) | openssh::Error::Master(io)) = ssh_error(e) else {
        return false;
    };
    let text = io.to_string();
    io.kind() == std::io::ErrorKind::PermissionDenied
        || [
            "Permission denied (",
            "Host key verification failed",
            "REMOTE HOST IDENTIFICATION",
        ]
        .iter()
        .any(|p| text.contains(p))
}

/// Whether `e` (from OpenDAL's SFTP service) is an ssh connection failure that may pass:
/// refused, reset, closed during the handshake (sshd's `MaxStartups` throttling), timed out,
/// unreachable or unresolved, or a connection lost; not [`refused`].
pub fn transient_connect_error(e: &opendal::Error) -> bool {
    use std::io::ErrorKind as K;
    match ssh_error(e) {
        Some(openssh::Error::Connect(io) | openssh::Error::Master(io)) => {
            !refused(e)
                && matches!(
                    io.kind(),
                    K::ConnectionRefused | K::ConnectionReset | K::ConnectionAborted | K::TimedOut | K::Other
                )
        }
        Some(openssh::Error::Disconnected) => true,
        _ => false,
    }
}

/// Mark this process, so that [`stop_own_ssh`] finds the ssh processes it starts (they
/// inherit the environment). Call once, before any other thread exists.
pub fn mark_this_process() {
    std::env::set_var(MARK, std::process::id().to_string());
}

/// Stop every ssh process the `openssh` crate started for this process and left running
/// (found through `/proc` by the mark and its control directory). Returns how many.
pub fn stop_own_ssh() -> usize {
    if !OPENED.load(Ordering::SeqCst) {
        return 0;
    }
    let own = own_ssh();
    for &pid in &own {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    own.len()
}

/// [`stop_own_ssh`] on interruption, when requests already under way may still be starting
/// connections: scan every 100 ms until three scans in a row find none (a process seen again
/// gets SIGKILL), for at most three seconds. Call after [`crate::interrupt::stopping`] holds
/// for every other thread, so that no new request starts one.
pub fn stop_own_ssh_until_quiet() {
    if !OPENED.load(Ordering::SeqCst) {
        return;
    }
    let (t0, mut quiet, mut seen) = (Instant::now(), 0, HashSet::new());
    while quiet < 3 && t0.elapsed() < Duration::from_secs(3) {
        let own = own_ssh();
        quiet = if own.is_empty() { quiet + 1 } else { 0 };
        for pid in own {
            let signal = if seen.insert(pid) { libc::SIGTERM } else { libc::SIGKILL };
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe {
                libc::kill(pid, signal);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The ssh processes the `openssh` crate started for this process that are still running.
fn own_ssh() -> Vec<i32> {
    let want = format!("{MARK}={}", std::process::id());
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut own = Vec::new();
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(p.path().join("cmdline")) else {
            continue;
        };
        let mut args = cmdline.split(|&b| b == 0).map(String::from_utf8_lossy);
        let is_ssh = args.next().is_some_and(|a| a == "ssh" || a.ends_with("/ssh"));
        if !is_ssh || !args.any(|a| a.contains(CONTROL_DIR_PREFIX)) {
            continue;
        }
        let Ok(env) = std::fs::read(p.path().join("environ")) else {
            continue;
        };
        if env.split(|&b| b == 0).any(|v| v == want.as_bytes()) {
            own.push(pid);
        }
    }
    own
}
