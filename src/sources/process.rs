//! Child processes of the database tools (pg_dump, pg_restore, psql, mariadb-dump, mysql) and
//! of `--from-command`: their stderr logged and its tail kept for error messages. Each runs in
//! a session (and process group) of its own, without the secrets dbbackup reads, and its
//! whole group is stopped when dbbackup is interrupted or fails first, so nothing a shell
//! started is left running.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::error::{Error, ErrorKind, Result};

/// Lines of a tool's stderr kept for error messages.
const STDERR_TAIL: usize = 20;

/// A running tool.
pub struct Process {
    child: Child,
    label: String,
    tail: Arc<Mutex<VecDeque<String>>>,
    stderr_thread: Option<JoinHandle<()>>,
    _interrupt: crate::interrupt::Registration,
}

/// How a tool ended when it did not succeed.
#[derive(Debug, Clone)]
pub struct Failure {
    /// What ran (program and its role, never its environment).
    pub label: String,
    /// "exited with status N" or "was killed by a signal".
    pub how: String,
    /// The last lines of its stderr.
    pub tail: Vec<String>,
}

impl Failure {
    /// The stderr tail as one indented block, or an empty string.
    pub fn tail_text(&self) -> String {
        if self.tail.is_empty() {
            String::new()
        } else {
            format!("; its last error output:\n  {}", self.tail.join("\n  "))
        }
    }

    /// An error of `kind`: what ran, how it ended, `advice`, and the stderr tail.
    pub fn into_error(self, kind: ErrorKind, advice: &str) -> Error {
        let mut m = format!("{} {}", self.label, self.how);
        if !advice.is_empty() {
            m.push_str("; ");
            m.push_str(advice);
        }
        m.push_str(&self.tail_text());
        Error::new(kind, m)
    }
}

/// Environment variables holding secrets dbbackup itself reads (the repository password, a
/// new one for `key add`/`key passwd`). No child needs them: they are removed from every
/// child's environment. What a child needs (`PGPASSWORD` for pg_dump) is left alone.
pub const SECRET_ENV: &[&str] = &["DBBACKUP_PASSWORD", "DBBACKUP_NEW_PASSWORD"];

/// Prepare `cmd` to run apart from dbbackup: without [`SECRET_ENV`], and in a new session
/// (`setsid`), so its process group can be signalled as a whole and it has no controlling
/// terminal: a tool that would prompt for a password fails at once instead of stopping the
/// run (give passwords through PGPASSWORD, a `.pgpass` or an option file).
pub fn isolate(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    for k in SECRET_ENV {
        cmd.env_remove(k);
    }
    // SAFETY: setsid(2) is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Send `signal` to the process group `leader` heads (the group [`isolate`] made).
pub fn signal_group(leader: u32, signal: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(leader) else { return };
    if pid > 0 {
        // SAFETY: kill(2) on a negative pid signals that process group; no memory is touched.
        unsafe {
            libc::kill(-pid, signal);
        }
    }
}

/// Is any process of the group `leader` led still there?
fn group_alive(leader: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(leader) else {
        return false;
    };
    // SAFETY: kill(2) with signal 0 only checks that the group exists; nothing is signalled.
    pid > 0 && unsafe { libc::kill(-pid, 0) } == 0
}

/// The file name of `cmd`'s program, for messages (`mariadb-dump` or `mysqldump`).
pub fn program_name(cmd: &Command) -> String {
    std::path::Path::new(cmd.get_program())
        .file_name()
        .unwrap_or(cmd.get_program())
        .to_string_lossy()
        .into_owned()
}

/// What `cmd --version` prints, trimmed; a configuration error with `advice` when it fails.
pub fn version_line(mut cmd: Command, advice: &str) -> Result<String> {
    let label = program_name(&cmd);
    cmd.arg("--version");
    let out = Process::spawn(cmd, &label, false, false)?
        .output()?
        .map_err(|f| f.into_error(ErrorKind::Config, advice))?;
    Ok(String::from_utf8_lossy(&out).trim().to_string())
}

impl Process {
    /// Start `cmd`, labelled `label` in messages. Its stdin is null unless `stdin_piped`;
    /// its stdout is piped unless `stdout_null`.
    pub fn spawn(mut cmd: Command, label: &str, stdin_piped: bool, stdout_null: bool) -> Result<Process> {
        isolate(&mut cmd);
        cmd.stdin(if stdin_piped { Stdio::piped() } else { Stdio::null() })
            .stdout(if stdout_null { Stdio::null() } else { Stdio::piped() })
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| {
            let kind = if e.kind() == std::io::ErrorKind::NotFound {
                ErrorKind::Config
            } else {
                ErrorKind::Io
            };
            Error::new(
                kind,
                format!("cannot start {label}: {e}; is it installed and on PATH (or set the tool directory option)?"),
            )
        })?;
        let tail: Arc<Mutex<VecDeque<String>>> = Arc::default();
        let stderr_thread = child.stderr.take().map(|err| {
            let tail = tail.clone();
            let program = label.split_whitespace().next().unwrap_or("tool").to_string();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(|l| l.ok()) {
                    tracing::info!(program = %program, "{line}");
                    let mut t = crate::util::lock_anyway(&tail);
                    if t.len() == STDERR_TAIL {
                        t.pop_front();
                    }
                    t.push_back(line);
                }
            })
        });
        // On interruption the tool and everything it started are stopped too (SIGTERM), not
        // left writing to a dead pipe.
        let pid = child.id();
        let interrupt = crate::interrupt::on_interrupt(move || signal_group(pid, libc::SIGTERM));
        Ok(Process {
            child,
            label: label.to_string(),
            tail,
            stderr_thread,
            _interrupt: interrupt,
        })
    }

    /// The label given at spawn.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The tool's standard output (once).
    pub fn take_stdout(&mut self) -> Result<ChildStdout> {
        self.child
            .stdout
            .take()
            .ok_or_else(|| Error::general(format!("{} has no stdout pipe", self.label)))
    }

    /// The tool's standard input (once).
    pub fn take_stdin(&mut self) -> Result<ChildStdin> {
        self.child
            .stdin
            .take()
            .ok_or_else(|| Error::general(format!("{} has no stdin pipe", self.label)))
    }

    /// Wait for the tool; `Err(Failure)` unless it exited 0.
    pub fn wait(self) -> Result<std::result::Result<(), Failure>> {
        let (ok, f) = self.finish()?;
        Ok(if ok { Ok(()) } else { Err(f) })
    }

    /// Wait for the tool; whether it exited 0, and its stderr tail either way (for tools that
    /// report errors without failing, like psql without ON_ERROR_STOP).
    pub fn finish(mut self) -> Result<(bool, Failure)> {
        drop(self.child.stdin.take());
        let status = self
            .child
            .wait()
            .map_err(|e| Error::io(format!("cannot wait for {}", self.label), e))?;
        if let Some(h) = self.stderr_thread.take() {
            let _ = h.join();
        }
        let how = match status.code() {
            Some(c) => format!("exited with status {c}"),
            None => "was killed by a signal".to_string(),
        };
        Ok((status.success(), self.failure(how)))
    }

    /// Wait for the tool at most `limit`; past it, stop its whole group (SIGTERM, then
    /// SIGKILL after 5 s) and report the timeout as its failure.
    pub fn wait_timeout(mut self, limit: std::time::Duration) -> Result<std::result::Result<(), Failure>> {
        drop(self.child.stdin.take());
        let deadline = std::time::Instant::now() + limit;
        let mut stopped_at = None;
        loop {
            let status = self
                .child
                .try_wait()
                .map_err(|e| Error::io(format!("cannot wait for {}", self.label), e))?;
            let now = std::time::Instant::now();
            let grace = std::time::Duration::from_secs(5);
            match (status, stopped_at) {
                (Some(_), None) => return self.wait(),
                // Stopped: done once nothing of its group is left (what it started may outlive
                // it, or ignore SIGTERM: SIGKILL after the grace, then a last second to go).
                (Some(_), Some(t)) if !group_alive(self.child.id()) || now >= t + grace + grace / 5 => {
                    let _ = self.child.wait();
                    if let Some(h) = self.stderr_thread.take() {
                        let _ = h.join();
                    }
                    let how = format!("did not end within {}s and was stopped", limit.as_secs());
                    return Ok(Err(self.failure(how)));
                }
                (None, None) if now >= deadline => {
                    signal_group(self.child.id(), libc::SIGTERM);
                    stopped_at = Some(now);
                }
                (_, Some(t)) if now >= t + grace => {
                    signal_group(self.child.id(), libc::SIGKILL);
                }
                _ => {}
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Wait and collect all of stdout (for short query output).
    pub fn output(mut self) -> Result<std::result::Result<Vec<u8>, Failure>> {
        let mut out = Vec::new();
        if let Some(mut o) = self.child.stdout.take() {
            std::io::Read::read_to_end(&mut o, &mut out)
                .map_err(|e| Error::io(format!("cannot read the output of {}", self.label), e))?;
        }
        Ok(self.wait()?.map(|()| out))
    }

    fn failure(&self, how: String) -> Failure {
        Failure {
            label: self.label.clone(),
            how,
            tail: crate::util::lock_anyway(&self.tail).iter().cloned().collect(),
        }
    }

    /// Stop the tool and everything it started (used when dbbackup fails first) and wait
    /// for it.
    pub fn kill(mut self) {
        signal_group(self.child.id(), libc::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(h) = self.stderr_thread.take() {
            let _ = h.join();
        }
    }
}
