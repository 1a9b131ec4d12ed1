//! `dbbackup unlock [--remove-all]`: remove stale repository locks (those of killed processes,
//! not refreshed for the lock timeout, or unreadable and that old); with `--remove-all`, every
//! lock, for the operator who knows no dbbackup process is using the repository.

use dbbackup::repo::lock;

use super::{output, Ctx};

/// Arguments of `unlock`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Remove every lock, also those of processes that may still be running (only when you
    /// know no dbbackup process uses the repository: a prune could then delete data a running
    /// snapshot relies on)
    #[arg(long)]
    remove_all: bool,
}

#[derive(serde::Serialize)]
struct Removed {
    id: String,
    operation: String,
    hostname: String,
    pid: u32,
    written: jiff::Timestamp,
    unreadable: Option<String>,
}

/// Run `unlock`.
pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<()> {
    let repo = ctx.open()?;
    let removed = lock::remove(&repo, a.remove_all)?;
    if ctx.g.json {
        let v: Vec<Removed> = removed
            .iter()
            .map(|h| Removed {
                id: h.id.to_hex(),
                operation: h.lock.operation.clone(),
                hostname: h.lock.hostname.clone(),
                pid: h.lock.pid,
                written: h.lock.time,
                unreadable: h.unreadable.clone(),
            })
            .collect();
        return output::json(&serde_json::json!({ "removed": v }));
    }
    for h in &removed {
        say!("removed lock {}: {}", h.id.short(), h.describe());
    }
    let left = lock::list(&repo)?.len();
    say!("{} locks removed, {left} left", removed.len());
    Ok(())
}
