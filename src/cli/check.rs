//! `dbbackup check [--read-data]`: verify the repository; exit 65 when damage is found.

use dbbackup::util::human_bytes;
use dbbackup::{Error, ErrorKind};

use super::{output, Ctx};

/// Arguments of `check`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Download every pack and verify every chunk's bytes
    #[arg(long)]
    read_data: bool,
}

/// Run `check`.
pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<()> {
    let repo = ctx.open()?;
    let index = ctx.index(&repo)?;
    let bar = ctx.progress();
    let rep = dbbackup::check::check(&repo, &index, a.read_data, &bar)?;
    if ctx.g.json {
        output::json(&rep)?;
    } else {
        println!(
            "checked {} snapshots, {} index segments, {} packs{}",
            rep.snapshots,
            rep.index_segments,
            rep.packs,
            if a.read_data {
                format!("; read {} blobs ({})", rep.blobs_read, human_bytes(rep.bytes_read))
            } else {
                String::new()
            }
        );
        if !rep.orphan_packs.is_empty() {
            println!(
                "{} unreferenced packs (left by interrupted snapshots; prune removes them)",
                rep.orphan_packs.len()
            );
        }
        for p in &rep.errors {
            let affects: Vec<String> = p.affects.iter().map(|i| i.short()).collect();
            println!(
                "DAMAGED {}: {}{}",
                p.object,
                p.message,
                if affects.is_empty() {
                    String::new()
                } else {
                    format!(" (affects snapshots {})", affects.join(", "))
                }
            );
        }
    }
    if rep.errors.is_empty() {
        if !ctx.g.json {
            println!("no errors found");
        }
        Ok(())
    } else {
        Err(Error::new(ErrorKind::Corrupt, format!("check found {} problems", rep.errors.len())).into())
    }
}
