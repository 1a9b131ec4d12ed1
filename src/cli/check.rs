//! `dbbackup check [--read-data]`: verify the repository; exit 65 when damage is found.

use dbbackup::check::ReadData;
use dbbackup::util::human_bytes;
use dbbackup::{Error, ErrorKind};

use super::{output, Ctx};

/// Arguments of `check`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Download every pack and verify every chunk's bytes
    #[arg(long, conflicts_with = "read_data_subset")]
    read_data: bool,
    /// Read only some packs: part n of t by pack id (1/5; run 1/5 ... 5/5 to cover all), a
    /// random percentage (10%), or random packs up to a size (500M)
    #[arg(long, value_name = "SUBSET")]
    read_data_subset: Option<ReadData>,
    #[command(flatten)]
    lock: super::ReadLockArgs,
}

/// Run `check`.
pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<()> {
    let read = match (&a.read_data_subset, a.read_data) {
        (Some(s), _) => *s,
        (None, true) => ReadData::All,
        (None, false) => ReadData::None,
    };
    let repo = ctx.open()?;
    let index = ctx.index(&repo)?;
    // A shared lock keeps prune from sweeping packs out from under this check.
    let session = ctx.read_session(&repo, &index, dbbackup::repo::lock::Operation::Check, &a.lock)?;
    let bar = ctx.progress();
    let rep = dbbackup::check::check(&session, read, &bar)?;
    record(ctx, &repo, &rep, read);
    if ctx.g.json && rep.errors.is_empty() {
        output::json(&rep)?;
    } else if ctx.g.json {
        output::with_failure(&rep)?;
    } else {
        print_report(&rep, read);
    }
    tracing::info!(
        target: super::outcome::RESULT,
        operation = "check",
        status = if rep.errors.is_empty() { "ok" } else { "failed" },
        read_data = read != ReadData::None,
        problems = rep.errors.len(),
        warnings = rep.warnings.len(),
        snapshots = rep.snapshots,
        packs = rep.packs,
        packs_read = rep.packs_read,
        bytes_read = rep.bytes_read,
        "repository checked"
    );
    if rep.errors.is_empty() {
        if !ctx.g.json {
            say!("no errors found");
        }
        Ok(())
    } else {
        Err(Error::new(ErrorKind::Corrupt, format!("check found {} problems", rep.errors.len())).into())
    }
}

/// The lines saying what `check` read and found.
fn print_report(rep: &dbbackup::check::Report, read: ReadData) {
    say!(
        "checked {} snapshots, {} index segments, {} packs{}",
        rep.snapshots,
        rep.index_segments,
        rep.packs,
        if read != ReadData::None {
            format!(
                "; read {} packs, {} blobs ({})",
                rep.packs_read,
                rep.blobs_read,
                human_bytes(rep.bytes_read)
            )
        } else {
            String::new()
        }
    );
    if !rep.orphan_packs.is_empty() {
        say!(
            "{} unindexed packs (left by interrupted snapshots, or being written by running ones; prune removes them)",
            rep.orphan_packs.len()
        );
    }
    if rep.pending_packs > 0 {
        say!("{} packs condemned by prune, waiting to be deleted", rep.pending_packs);
    }
    for p in &rep.warnings {
        say!("warning {}: {}", p.object, p.message);
    }
    for p in &rep.errors {
        let affects: Vec<String> = p.affects.iter().map(|i| i.short()).collect();
        say!(
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

/// Record the run for `status` and metrics on every host. Not in another OS user's local
/// repository (its files would belong to this user), nor in one this user may only read.
fn record(ctx: &Ctx, repo: &dbbackup::repo::Repository, rep: &dbbackup::check::Report, read: ReadData) {
    if ctx.other_owner {
        tracing::info!("check not recorded: the repository belongs to another OS user");
        return;
    }
    match dbbackup::check::record::save(repo, rep, read) {
        Ok(id) => tracing::debug!(record = %id, "check recorded"),
        Err(e) if e.kind() == ErrorKind::Permission => tracing::info!("check not recorded: {e}"),
        Err(e) => tracing::warn!("check not recorded: {e}"),
    }
}
