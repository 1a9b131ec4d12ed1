//! A user-given command (`snapshot --from-command`) whose standard output is the snapshot
//! stream and whose exit status decides whether the snapshot is kept.

use std::process::{ChildStdout, Command};

use super::process::Process;
use crate::error::{ErrorKind, Result};

/// A running command whose stdout is the snapshot stream.
pub struct CommandSource {
    proc: Process,
    command: String,
}

impl CommandSource {
    /// Start `command` through `sh -c`.
    pub fn spawn(command: &str) -> Result<(CommandSource, ChildStdout)> {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(command);
        // Only the program's name is logged with its stderr: the command line may carry
        // settings a user would not want in log files.
        let program = command.split_whitespace().next().unwrap_or("command");
        let mut proc = Process::spawn(cmd, program, false, false)?;
        let stdout = proc.take_stdout()?;
        Ok((
            CommandSource {
                proc,
                command: command.to_string(),
            },
            stdout,
        ))
    }

    /// The command line.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// Wait for the command; an error unless it exited 0. Includes the tail of its stderr.
    pub fn wait(self) -> Result<()> {
        let command = self.command;
        self.proc.wait()?.map_err(|mut f| {
            f.label = format!("`{command}`");
            f.into_error(ErrorKind::General, "no snapshot was recorded")
        })
    }

    /// Kill the command (used when the snapshot fails before the command ends).
    pub fn kill(self) {
        self.proc.kill();
    }
}
