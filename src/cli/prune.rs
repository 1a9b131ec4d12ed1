//! `dbbackup prune [--keep-* ...] [--max-unused 5%] [--dry-run]`: apply a retention policy
//! (as `forget` does), then delete the packs no snapshot needs and repack mostly-unused ones.
//! Never waits for and never breaks a running snapshot (repo-format §10).

use dbbackup::format::Id;
use dbbackup::prune::{prune, MaxUnused, PruneOptions, PruneReport};
use dbbackup::repo::lock;
use dbbackup::retention::forget::forget;
use dbbackup::util::human_bytes;

use super::forget::{print_plan, KeepArgs};
use super::{output, Ctx};

/// Arguments of `prune`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    keep: KeepArgs,
    /// Unused space tolerated in partly used packs before they are repacked: a percentage of
    /// the used space (5%), a size (500M), or `unlimited` (never repack)
    #[arg(long, value_name = "LIMIT", default_value = "5%")]
    max_unused: MaxUnused,
    /// Show what would be removed, repacked and freed without changing anything
    #[arg(long, short = 'n')]
    dry_run: bool,
}

/// Run `prune`.
pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<()> {
    let max_unused = a.max_unused;
    let forget_req = a.keep.request(a.dry_run)?;
    let repo = ctx.open()?;
    let index = ctx.index(&repo)?;
    let session = ctx.session(&repo, &index, lock::Operation::Prune)?;
    let mut forgotten: Vec<Id> = Vec::new();
    let mut plans = None;
    if let Some(req) = &forget_req {
        let f = forget(&repo, session.lock_for(lock::Operation::Prune)?, req)?;
        forgotten = f.ids;
        plans = f.groups;
    }
    let bar = ctx.progress();
    let opts = PruneOptions {
        max_unused,
        dry_run: a.dry_run,
        // The repository's own cache directory: one prune per repository at a time.
        work_dir: ctx.cache_dir()?.join(repo.config().id.to_hex()),
        // A dry run counts as removed what the policy would remove.
        ignore: if a.dry_run { forgotten.clone() } else { vec![] },
    };
    let rep = prune(&session, &opts, &bar)?;
    tracing::info!(
        target: super::outcome::RESULT,
        operation = "prune",
        status = "ok",
        dry_run = a.dry_run,
        forgotten = forgotten.len(),
        packs_deleted = rep.packs_deleted,
        bytes_freed = rep.bytes_freed,
        packs_repacked = rep.repacked_packs,
        packs_condemned = rep.unused_packs + rep.unindexed_packs + rep.repacked_packs,
        "repository pruned"
    );
    if ctx.g.json {
        return output::json(&serde_json::json!({
            "operation": "prune",
            "status": "ok",
            "dry_run": a.dry_run,
            "forgotten": forgotten,
            "groups": plans.as_ref().map(|(p, _)| p),
            "prune": rep,
        }));
    }
    if let Some((p, tz)) = &plans {
        print_plan(p, tz);
        say!(
            "{} {} snapshots",
            if a.dry_run { "would remove" } else { "removed" },
            forgotten.len()
        );
    }
    print_report(&rep);
    Ok(())
}

fn print_report(r: &PruneReport) {
    say!(
        "{} snapshots reference {} chunks; {} packs, {} ({} used, {} unused)",
        r.snapshots,
        r.chunks_referenced,
        r.packs,
        human_bytes(r.bytes),
        human_bytes(r.used_bytes),
        human_bytes(r.unused_bytes)
    );
    if r.wal_files > 0 || r.wal_files_expired > 0 {
        say!(
            "WAL archive: {} files kept; {} {} files older than the oldest kept physical snapshot",
            r.wal_files,
            if r.dry_run { "would remove" } else { "removed" },
            r.wal_files_expired
        );
    }
    let verb = if r.dry_run { "would condemn" } else { "condemned" };
    say!(
        "{verb}: {} unused packs ({}), {} unindexed packs ({}); {} {} partly used packs ({}), copying {}",
        r.unused_packs,
        human_bytes(r.unused_packs_bytes),
        r.unindexed_packs,
        human_bytes(r.unindexed_bytes),
        if r.dry_run { "would repack" } else { "repacked" },
        r.repacked_packs,
        human_bytes(r.repacked_bytes),
        human_bytes(r.repack_copied_bytes)
    );
    if r.dry_run {
        if r.pending_packs > 0 {
            say!(
                "{} packs ({}) are already condemned, waiting to be deleted",
                r.pending_packs,
                human_bytes(r.pending_bytes)
            );
        }
        say!("dry run: nothing changed");
        return;
    }
    say!(
        "deleted {} packs, freed {}{}",
        r.packs_deleted,
        human_bytes(r.bytes_freed),
        if r.packs_revived > 0 {
            format!(
                "; {} condemned packs were needed by a new snapshot and kept",
                r.packs_revived
            )
        } else {
            String::new()
        }
    );
    if r.manifests_repaired > 0 {
        say!(
            "restored {} lost snapshot manifest copies from their twins",
            r.manifests_repaired
        );
    }
    if r.pending_packs > 0 {
        say!(
            "{} packs ({}) wait to be deleted by a later prune, once these have finished: {}",
            r.pending_packs,
            human_bytes(r.pending_bytes),
            r.waiting_for.join("; ")
        );
    }
}
