//! `dbbackup repair index|snapshots|wal-archive [--dry-run]`: make a damaged repository
//! consistent again. Each takes an exclusive lock (nothing else runs meanwhile) and prints
//! what it changed.

use dbbackup::repair::index::{IndexRepair, IndexRepairOptions};
use dbbackup::repair::snapshots::SnapshotRepair;
use dbbackup::repair::{repair_index, repair_snapshots};
use dbbackup::repo::lock;
use dbbackup::repo::session::Session;
use dbbackup::wal::archive::{repair as repair_wal_archive, ArchiveRepair};

use super::{output, Ctx};

/// Repair subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum RepairCmd {
    /// Rebuild the index from the packs' own headers (after a lost or damaged index segment)
    Index(Opts),
    /// Remove from snapshots what can no longer be restored; forget snapshots nothing is left of
    Snapshots(Opts),
    /// Write the WAL archive's record again from the catalog (after `check` found it damaged,
    /// missing or naming another cluster)
    WalArchive(WalArchiveOpts),
}

/// Options of `repair wal-archive`.
#[derive(clap::Args, Debug)]
pub struct WalArchiveOpts {
    #[command(flatten)]
    opts: Opts,
    /// The cluster this repository archives (its `system_identifier`), when the archive holds
    /// WAL of several; the other clusters' files are removed from the catalog
    #[arg(long, value_name = "ID")]
    system_id: Option<u64>,
}

/// Options of both.
#[derive(clap::Args, Debug)]
pub struct Opts {
    /// Show what would change without changing anything
    #[arg(long, short = 'n')]
    dry_run: bool,
}

/// Run `repair`.
pub fn run(ctx: &Ctx, cmd: RepairCmd) -> anyhow::Result<()> {
    let repo = ctx.open()?;
    let lock = lock::acquire(&repo, lock::Operation::Repair)?;
    let bar = ctx.progress();
    match cmd {
        RepairCmd::Index(o) => {
            let opts = IndexRepairOptions {
                dry_run: o.dry_run,
                work_dir: ctx.cache_dir()?.join(repo.config().id.to_hex()),
            };
            let r = repair_index(&repo, &opts, &bar)?;
            if ctx.g.json {
                return output::json(&r);
            }
            print_index(&r);
        }
        RepairCmd::Snapshots(o) => {
            let index = ctx.index(&repo)?;
            let session = Session::adopt(&repo, &index, lock)?;
            let r = repair_snapshots(&session, o.dry_run, &bar)?;
            if ctx.g.json {
                return output::json(&r);
            }
            print_snapshots(&r);
        }
        RepairCmd::WalArchive(o) => {
            let system_id = o.system_id.map(|s| s.to_string());
            let r = repair_wal_archive(&repo, system_id.as_deref(), o.opts.dry_run)?;
            if ctx.g.json {
                return output::json(&r);
            }
            print_wal_archive(&r);
        }
    }
    Ok(())
}

/// The lines saying what `repair index` did.
fn print_index(r: &IndexRepair) {
    let verb = if r.dry_run { "would index" } else { "indexed" };
    say!(
        "read {} index segments ({} damaged); {} packs in storage: {} from segments, {} from their headers",
        r.segments_read,
        r.segments_damaged.len(),
        r.packs,
        r.packs_from_segments,
        r.packs_from_headers
    );
    for p in &r.packs_unreadable {
        say!("pack data/{p}: header cannot be read; left unindexed (see `dbbackup check --read-data`)");
    }
    for p in &r.packs_missing {
        say!("pack data/{p}: named by the index but missing from storage; its chunks are dropped");
    }
    if r.dangling_deltas_dropped > 0 {
        say!(
            "{} deltas whose bases are gone left out of the index",
            r.dangling_deltas_dropped
        );
    }
    if !r.plans_damaged.is_empty() {
        say!("{} damaged deletion plans removed", r.plans_damaged.len());
    }
    say!(
        "{verb} {} chunks{}",
        r.chunks,
        if r.dry_run {
            String::new()
        } else {
            format!(" in {} new index segments", r.segments_written)
        }
    );
    say!("next: `dbbackup check`; `dbbackup repair snapshots` if it names snapshots that lost chunks");
}

/// The lines saying what `repair snapshots` did.
fn print_snapshots(r: &SnapshotRepair) {
    let (rewrite, forget) = if r.dry_run {
        ("would write again", "would forget")
    } else {
        ("written again as", "forgot")
    };
    for s in &r.rewritten {
        let new = s.replaced_by.map(|i| format!(" {}", i.short())).unwrap_or_default();
        say!("snapshot {} ({}): {rewrite}{new} without:", s.id.short(), s.name);
        for l in &s.lost {
            say!("  {}: {}", l.path, l.error);
        }
    }
    for s in &r.forgotten {
        say!(
            "snapshot {} ({}): {forget}, nothing restorable left:",
            s.id.short(),
            s.name
        );
        for l in &s.lost {
            say!("  {}: {}", l.path, l.error);
        }
    }
    for w in &r.wal_files_removed {
        say!("WAL file {}: removed from the archive: {}", w.path, w.error);
    }
    for (id, e) in &r.unreadable {
        say!("snapshot {}: manifest unreadable, left alone ({e})", id.short());
    }
    say!(
        "{} snapshots: {} intact, {} repaired, {} forgotten",
        r.snapshots,
        r.intact,
        r.rewritten.len(),
        r.forgotten.len()
    );
    if !r.dry_run && (!r.rewritten.is_empty() || !r.forgotten.is_empty() || !r.wal_files_removed.is_empty()) {
        say!("next: `dbbackup prune` frees what nothing needs any more");
    }
}

fn print_wal_archive(r: &ArchiveRepair) {
    let Some(sys) = &r.system_id else {
        let verb = if r.dry_run { "would remove" } else { "removed" };
        for o in &r.records_removed {
            say!("{o}: damaged, {verb}");
        }
        say!("no WAL archived: the next push records its cluster");
        return;
    };
    let (write, remove) = if r.dry_run {
        ("would write", "would remove")
    } else {
        ("wrote", "removed")
    };
    for o in &r.records_removed {
        say!("{o}: {remove}");
    }
    for f in &r.files_removed {
        say!("WAL file {f}: of another cluster, {remove} from the catalog");
    }
    match (r.record_kept, r.record_written) {
        (Some(id), _) => say!("wal-archive/{id}: intact record for cluster {sys}, kept"),
        (None, Some(id)) => say!("wal-archive/{id}: {write} for cluster {sys}"),
        (None, None) => say!("{write} a new record for cluster {sys}"),
    }
    if !r.dry_run && !r.files_removed.is_empty() {
        say!("next: `dbbackup prune` frees what the removed files held");
    }
}
