//! `dbbackup key add|list|remove|passwd`: manage the passwords that unlock a repository.

use std::path::PathBuf;

use dbbackup::crypto::KdfParams;
use dbbackup::repo::keys;

use super::{output, password, Ctx};

/// Key subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum KeyCmd {
    /// Add a password (DBBACKUP_NEW_PASSWORD, --new-password-file, or a prompt)
    Add(NewPw),
    /// List keys
    List,
    /// Remove a key by id or unique id prefix
    Remove {
        /// Key id or prefix
        id: String,
    },
    /// Change the password of the key in use
    Passwd(NewPw),
}

/// Where the new password comes from.
#[derive(clap::Args, Debug)]
pub struct NewPw {
    /// Read the new password from this file
    #[arg(long)]
    new_password_file: Option<PathBuf>,
    /// Argon2id memory in KiB
    #[arg(long, default_value_t = KdfParams::default().memory_kib)]
    kdf_memory_kib: u32,
    /// Argon2id iterations
    #[arg(long, default_value_t = KdfParams::default().iterations)]
    kdf_iterations: u32,
}

impl NewPw {
    fn kdf(&self) -> KdfParams {
        KdfParams {
            memory_kib: self.kdf_memory_kib,
            iterations: self.kdf_iterations,
            parallelism: 1,
        }
    }
}

/// Run a key subcommand.
pub fn run(ctx: &Ctx, cmd: KeyCmd) -> anyhow::Result<()> {
    let repo = ctx.open()?;
    match cmd {
        KeyCmd::Add(n) => {
            let pw = password::get_new(n.new_password_file.as_deref())?;
            let id = keys::add(&repo, pw.as_bytes(), n.kdf())?;
            if ctx.g.json {
                output::json(&serde_json::json!({ "added": id }))?;
            } else {
                say!("added key {}", id.short());
            }
        }
        KeyCmd::Passwd(n) => {
            let pw = password::get_new(n.new_password_file.as_deref())?;
            let id = keys::change_password(&repo, pw.as_bytes(), n.kdf())?;
            if ctx.g.json {
                output::json(&serde_json::json!({ "added": id, "removed": repo.key_id() }))?;
            } else {
                say!(
                    "password changed: key {} replaces {}",
                    id.short(),
                    repo.key_id().short()
                );
            }
        }
        KeyCmd::List => {
            let list = keys::list(&repo)?;
            if ctx.g.json {
                return output::json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|k| {
                    vec![
                        format!("{}{}", if k.current { "*" } else { " " }, k.id.short()),
                        k.created.clone(),
                        k.hostname.clone(),
                        k.username.clone(),
                        format!("argon2id m={}KiB t={}", k.kdf.memory_kib, k.kdf.iterations),
                    ]
                })
                .collect();
            output::table(&[" ID", "Created", "Host", "User", "KDF"], &rows);
        }
        KeyCmd::Remove { id } => {
            let id = keys::find(&repo, &id)?;
            keys::remove(&repo, &id)?;
            if ctx.g.json {
                output::json(&serde_json::json!({ "removed": id }))?;
            } else {
                say!("removed key {}", id.short());
            }
        }
    }
    Ok(())
}
