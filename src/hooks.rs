//! Hooks: the operator's commands run around a dbbackup command (`before`, `after`,
//! `on_success`, `on_failure`), each through `sh -c` in a process group of its own, with
//! the facts of the run in `DBBACKUP_*` variables, none of dbbackup's secrets (the repository
//! password, storage credentials), stdin and
//! stdout closed, stderr logged, and a time limit past which the whole group is stopped.

use std::process::Command;
use std::time::Duration;

use crate::error::{ErrorKind, Result};
use crate::sources::process::Process;

/// When a hook runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// Before the command; its failure stops the command.
    Before,
    /// After the command, whatever its outcome.
    After,
    /// After a command that succeeded.
    OnSuccess,
    /// After a command that failed (or was partly done, or found problems).
    OnFailure,
}

impl When {
    /// The name in the configuration and in `DBBACKUP_HOOK`.
    pub fn as_str(self) -> &'static str {
        match self {
            When::Before => "before",
            When::After => "after",
            When::OnSuccess => "on_success",
            When::OnFailure => "on_failure",
        }
    }
}

/// Run `command` as the `when` hook of `operation` with `env` added to its environment; an
/// error (kind General) when it cannot start, fails or outlives `timeout`.
pub fn run(when: When, operation: &str, command: &str, env: &[(String, String)], timeout: Duration) -> Result<()> {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(command);
    // Process::spawn removes dbbackup's own secrets; storage credentials go too.
    for k in crate::storage::CREDENTIAL_ENV {
        cmd.env_remove(k);
    }
    cmd.env("DBBACKUP_HOOK", when.as_str())
        .env("DBBACKUP_OPERATION", operation);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let label = format!("the {} hook of {operation}", when.as_str());
    tracing::debug!(hook = when.as_str(), operation, "running hook");
    Process::spawn(cmd, &label, false, true)?
        .wait_timeout(timeout)?
        .map_err(|f| f.into_error(ErrorKind::General, ""))
}
