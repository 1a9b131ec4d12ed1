//! `dbbackup stats [--json]`: sizes, dedup and compression ratios of what the snapshots and
//! the WAL archive reference, and what else is indexed (prune's to free). Snapshots whose
//! manifest cannot be read are left out of the figures, and make it exit 65.

use dbbackup::repo::lock::Operation;
use dbbackup::repo::session::{ReadLock, Session};
use dbbackup::util::human_bytes;

use super::{output, Ctx};

/// Arguments of `stats`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Run `stats`.
pub fn run(ctx: &Ctx, _a: Args) -> anyhow::Result<()> {
    let repo = ctx.open()?;
    let index = ctx.index(&repo)?;
    // Figures read from the index, as a check reads it, but without a lock, as ever.
    let session = Session::begin_reading(&repo, &index, Operation::Check, ReadLock::Skip)?;
    // Only what the snapshots and the WAL archive reference counts (their lists are read).
    let work = ctx.cache_dir()?.join(repo.config().id.to_hex()).join("stats");
    let dbbackup::stats::Computed { stats: s, unreadable } = dbbackup::stats::compute(&session, Some(&work))?;
    if ctx.g.json {
        return output::json_unless(&s, output::unreadable_manifests(&unreadable));
    }
    say!("repository        {}", repo.store().display());
    say!("snapshots         {}", s.snapshots);
    say!("logical size      {}", human_bytes(s.logical_bytes));
    say!(
        "unique data       {} in {} chunks",
        human_bytes(s.unique_bytes),
        s.chunks
    );
    say!("stored            {} in {} packs", human_bytes(s.stored_bytes), s.packs);
    if s.unreferenced_chunks > 0 {
        say!(
            "unreferenced      {} in {} chunks (prune frees them, but delta bases)",
            human_bytes(s.unreferenced_stored_bytes),
            s.unreferenced_chunks
        );
    }
    say!("dedup ratio       {:.2}x", s.dedup_ratio);
    say!("compression ratio {:.2}x", s.compression_ratio);
    say!("total ratio       {:.2}x", s.total_ratio);
    if s.delta_chunks > 0 {
        say!(
            "delta chunks      {} taking {}, saving {} (estimated)",
            s.delta_chunks,
            human_bytes(s.delta_stored_bytes),
            human_bytes(s.delta_saved_bytes)
        );
    }
    output::unreadable_manifests(&unreadable)
}
