//! Where passwords come from: DBBACKUP_PASSWORD, a password file, a password command, or a
//! prompt on the terminal. Never from a flag's value.

use std::io::IsTerminal;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use dbbackup::sources::process::SECRET_ENV;
use dbbackup::{Error, ErrorKind, Result};
use zeroize::Zeroizing;

use super::Global;

/// DBBACKUP_PASSWORD and DBBACKUP_NEW_PASSWORD as the process started with them.
static FROM_ENV: std::sync::OnceLock<Vec<(&'static str, Zeroizing<String>)>> = std::sync::OnceLock::new();

/// Take the secrets of [`SECRET_ENV`] out of this process's environment, keeping them for
/// [`get`] and [`get_new`], so that no child (a password command, ssh for SFTP, a tool the
/// library starts) can inherit them. Called first thing in `main`, before any other thread.
pub fn take_secrets_from_env() {
    let mut kept = Vec::new();
    for k in SECRET_ENV {
        if let Some(v) = std::env::var_os(k) {
            kept.push((*k, Zeroizing::new(v.to_string_lossy().into_owned())));
            // Single-threaded here: nothing else reads the environment meanwhile.
            std::env::remove_var(k);
        }
    }
    let _ = FROM_ENV.set(kept);
}

/// The value `name` had in the environment at start, unless empty.
fn env_secret(name: &str) -> Option<Zeroizing<String>> {
    FROM_ENV
        .get()?
        .iter()
        .find(|(k, v)| *k == name && !v.is_empty())
        .map(|(_, v)| v.clone())
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_string()
}

/// Read the first line of a password file.
pub fn from_file(path: &Path) -> Result<Zeroizing<String>> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("cannot read password file {}", path.display()), e))?,
    );
    if let Ok(m) = std::fs::metadata(path) {
        if m.permissions().mode() & 0o077 != 0 {
            tracing::warn!(file = %path.display(), "password file is readable by other users; chmod 600 it");
        }
    }
    Ok(Zeroizing::new(first_line(&text)))
}

/// Run a password command and take the first line of its output.
pub fn from_command(cmd: &str) -> Result<Zeroizing<String>> {
    // It keeps dbbackup's terminal and process group: it may ask for a passphrase.
    let mut c = Command::new("sh");
    for k in SECRET_ENV {
        c.env_remove(k);
    }
    let out = c
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| Error::io("cannot run the password command", e))?;
    if !out.status.success() {
        return Err(Error::new(
            ErrorKind::Permission,
            format!("the password command failed ({})", out.status),
        ));
    }
    let s = Zeroizing::new(String::from_utf8_lossy(&out.stdout).into_owned());
    Ok(Zeroizing::new(first_line(&s)))
}

fn prompt(text: &str, confirm: bool) -> Result<Zeroizing<String>> {
    let p = Zeroizing::new(rpassword::prompt_password(text).map_err(|e| Error::io("cannot read the password", e))?);
    if confirm {
        let again = Zeroizing::new(
            rpassword::prompt_password("enter it again: ").map_err(|e| Error::io("cannot read the password", e))?,
        );
        if *again != *p {
            return Err(Error::usage("the passwords do not match"));
        }
    }
    Ok(p)
}

fn interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// The repository password.
pub fn get(g: &Global, text: &str, confirm: bool) -> Result<Zeroizing<String>> {
    if let Some(p) = env_secret("DBBACKUP_PASSWORD") {
        return Ok(p);
    }
    if let Some(f) = &g.password_file {
        return from_file(f);
    }
    if let Some(c) = &g.password_command {
        return from_command(c);
    }
    if interactive() {
        return prompt(text, confirm);
    }
    Err(Error::config(
        "no password given: set DBBACKUP_PASSWORD, DBBACKUP_PASSWORD_FILE / --password-file, or DBBACKUP_PASSWORD_COMMAND / --password-command",
    ))
}

/// A new password (key add, key passwd): DBBACKUP_NEW_PASSWORD, `file`, or a prompt.
pub fn get_new(file: Option<&Path>) -> Result<Zeroizing<String>> {
    if let Some(p) = env_secret("DBBACKUP_NEW_PASSWORD") {
        return Ok(p);
    }
    if let Some(f) = file {
        return from_file(f);
    }
    if interactive() {
        return prompt("new password: ", true);
    }
    Err(Error::config(
        "no new password given: set DBBACKUP_NEW_PASSWORD or --new-password-file",
    ))
}
