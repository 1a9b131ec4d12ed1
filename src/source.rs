//! Sources of snapshot streams: standard input, or the standard output of a command whose
//! exit status decides whether the snapshot is kept.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::error::{Error, ErrorKind, Result};

/// Lines of a command's stderr kept for error messages.
const STDERR_TAIL: usize = 20;

/// A running command whose stdout is the snapshot stream.
pub struct CommandSource {
    child: Child,
    command: String,
    tail: Arc<Mutex<VecDeque<String>>>,
    stderr_thread: Option<JoinHandle<()>>,
    _interrupt: crate::interrupt::Registration,
}

impl CommandSource {
    /// Start `command` through `sh -c`.
    pub fn spawn(command: &str) -> Result<(CommandSource, ChildStdout)> {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::io(format!("cannot start `{command}`"), e))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| Error::general("child has no stdout"))?;
        let tail: Arc<Mutex<VecDeque<String>>> = Arc::default();
        let stderr_thread = child.stderr.take().map(|err| {
            let tail = tail.clone();
            // Only the program's name goes to the log: the command line may carry settings a
            // user would not want in log files.
            let cmd = command.split_whitespace().next().unwrap_or("command").to_string();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(|l| l.ok()) {
                    tracing::warn!(program = %cmd, "{line}");
                    if let Ok(mut t) = tail.lock() {
                        if t.len() == STDERR_TAIL {
                            t.pop_front();
                        }
                        t.push_back(line);
                    }
                }
            })
        });
        // On interruption the command is stopped too (SIGTERM), not left writing to a dead pipe.
        let pid = child.id() as libc::pid_t;
        let interrupt = crate::interrupt::on_interrupt(move || unsafe {
            libc::kill(pid, libc::SIGTERM);
        });
        Ok((
            CommandSource {
                child,
                command: command.to_string(),
                tail,
                stderr_thread,
                _interrupt: interrupt,
            },
            stdout,
        ))
    }

    /// The command line.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// Wait for the command; an error unless it exited 0. Includes the tail of its stderr.
    pub fn wait(mut self) -> Result<()> {
        let status = self
            .child
            .wait()
            .map_err(|e| Error::io(format!("cannot wait for `{}`", self.command), e))?;
        if let Some(h) = self.stderr_thread.take() {
            let _ = h.join();
        }
        if status.success() {
            return Ok(());
        }
        let tail: Vec<String> = self
            .tail
            .lock()
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default();
        let how = match status.code() {
            Some(c) => format!("exited with status {c}"),
            None => "was killed by a signal".to_string(),
        };
        let mut msg = format!("`{}` {how}; no snapshot was recorded", self.command);
        if !tail.is_empty() {
            msg.push_str("; its last error output:\n  ");
            msg.push_str(&tail.join("\n  "));
        }
        Err(Error::new(ErrorKind::General, msg))
    }

    /// Kill the command (used when the snapshot fails before the command ends).
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
