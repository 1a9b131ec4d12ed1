//! `dbbackup restore SNAPSHOT --target PATH|-`: write a snapshot back out, verified.

use std::path::PathBuf;

use dbbackup::restore::{restore_snapshot, Target};
use dbbackup::util::human_bytes;

use super::{output, Ctx};

/// Arguments of `restore`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Snapshot id, unique id prefix, or `latest`
    snapshot: String,
    /// Where to write: a file, a directory, or `-` for standard output
    #[arg(long, short = 't')]
    target: String,
    /// With `latest`: the newest snapshot of this source name
    #[arg(long)]
    name: Option<String>,
    /// Replace existing files
    #[arg(long)]
    overwrite: bool,
}

/// Run `restore`.
pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<()> {
    let repo = ctx.open()?;
    let index = ctx.index(&repo)?;
    let (id, m) = repo.find_snapshot(&a.snapshot, a.name.as_deref())?;
    let target = if a.target == "-" {
        Target::Stdout
    } else {
        Target::Path(PathBuf::from(&a.target))
    };
    let bar = ctx.progress();
    let done = restore_snapshot(&repo, &index, &m, &target, a.overwrite, &bar)?;
    if matches!(target, Target::Stdout) {
        return Ok(());
    }
    if ctx.g.json {
        let files: Vec<_> = done
            .iter()
            .map(|(p, n)| serde_json::json!({ "path": p, "bytes": n }))
            .collect();
        return output::json(&serde_json::json!({ "snapshot": id, "files": files }));
    }
    for (p, n) in &done {
        println!(
            "restored {} ({}) from snapshot {}, SHA-256 verified",
            p.display(),
            human_bytes(*n),
            id.short()
        );
    }
    Ok(())
}
