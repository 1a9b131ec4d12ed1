//! `dbbackup wal push|fetch|list|stats`: PostgreSQL WAL archiving. `push` is the
//! `archive_command`, `fetch` the `restore_command`.

use std::path::PathBuf;

use dbbackup::lock;
use dbbackup::util::human_bytes;
use dbbackup::wal::push::{PushOptions, Pushed};
use dbbackup::wal::{catalog, summary, PUSH_LOCK};

use super::{output, Ctx};

/// `wal` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum WalCmd {
    /// Archive one WAL file (archive_command = 'dbbackup wal push %p'); exit 0 once durable
    Push(PushArgs),
    /// Restore one archived WAL file (restore_command = 'dbbackup wal fetch %f %p'); exit 66
    /// when the archive does not hold it
    Fetch(FetchArgs),
    /// List the archived WAL files
    List,
    /// Summarize the archive: timelines, first and last segments, gaps, sizes
    Stats,
}

/// Arguments of `wal push`.
#[derive(clap::Args, Debug)]
pub struct PushArgs {
    /// The WAL file (%p: a path relative to the data directory, or absolute)
    path: PathBuf,
    /// zstd level for new chunks (default: the repository's)
    #[arg(long)]
    compression_level: Option<i32>,
    /// Do not read the new packs back to verify them before recording the file
    #[arg(long)]
    no_verify: bool,
}

/// Arguments of `wal fetch`.
#[derive(clap::Args, Debug)]
pub struct FetchArgs {
    /// Name of the WAL file (%f)
    file: String,
    /// Where to write it (%p)
    dest: PathBuf,
}

/// Run a `wal` subcommand.
pub fn run(ctx: &Ctx, c: WalCmd) -> anyhow::Result<()> {
    match c {
        WalCmd::Push(a) => push(ctx, a),
        WalCmd::Fetch(a) => fetch(ctx, a),
        WalCmd::List => list(ctx),
        WalCmd::Stats => stats(ctx),
    }
}

fn push(ctx: &Ctx, a: PushArgs) -> anyhow::Result<()> {
    let repo = ctx.open()?;
    let guard = lock::acquire(&repo, PUSH_LOCK, false)?;
    let index = ctx.index(&repo)?;
    let opts = PushOptions {
        verify: !a.no_verify,
        compression_level: a.compression_level,
    };
    let r = dbbackup::wal::push::push(&repo, &index, &guard, &a.path, &opts, &ctx.progress())?;
    if ctx.g.json {
        return output::json(&r);
    }
    match r {
        Pushed::Stored {
            file,
            bytes,
            bytes_stored,
            ..
        } => tracing::info!(%file, bytes, bytes_stored, "archived"),
        Pushed::AlreadyArchived { file } => tracing::info!(%file, "already archived with the same content"),
    }
    Ok(())
}

fn fetch(ctx: &Ctx, a: FetchArgs) -> anyhow::Result<()> {
    let repo = ctx.open()?;
    // A shared lock keeps prune from sweeping packs out from under the restore.
    let _guard = lock::acquire(&repo, "wal-fetch", false)?;
    let index = ctx.index(&repo)?;
    let n = dbbackup::wal::fetch::fetch(&repo, &index, &a.file, &a.dest, &dbbackup::progress::NoProgress)?;
    tracing::info!(file = %a.file, bytes = n, "restored");
    Ok(())
}

fn list(ctx: &Ctx) -> anyhow::Result<()> {
    let repo = ctx.open()?;
    let entries = catalog::all(&repo)?;
    if ctx.g.json {
        let v: Vec<serde_json::Value> = entries
            .iter()
            .map(|(id, e)| {
                serde_json::json!({
                    "id": id,
                    "file": e.file,
                    "timeline": e.timeline,
                    "size": e.data.size,
                    "sha256": e.data.sha256,
                    "bytes_stored": e.bytes_stored,
                    "time": e.time,
                    "hostname": e.hostname,
                })
            })
            .collect();
        return output::json(&v);
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|(_, e)| {
            vec![
                e.file.clone(),
                human_bytes(e.data.size),
                human_bytes(e.bytes_stored),
                e.time.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
            ]
        })
        .collect();
    output::table(&["File", "Size", "Added", "Pushed"], &rows);
    println!("{} files", entries.len());
    Ok(())
}

fn stats(ctx: &Ctx) -> anyhow::Result<()> {
    let repo = ctx.open()?;
    let info = catalog::archive_info(&repo)?;
    let entries = catalog::all(&repo)?;
    let s = summary::summarize(&entries, info.as_ref());
    if ctx.g.json {
        return output::json(&s);
    }
    println!(
        "cluster           {}",
        s.system_id.as_deref().unwrap_or("(no WAL pushed yet)")
    );
    println!(
        "files             {} ({} segments, {} partial, {} history, {} backup labels)",
        s.files, s.segments, s.partial, s.history, s.backup
    );
    println!(
        "size              {}, {} stored ({:.1}% saved by compression and dedup)",
        human_bytes(s.bytes),
        human_bytes(s.bytes_stored),
        if s.bytes > 0 {
            100.0 * (1.0 - s.bytes_stored as f64 / s.bytes as f64)
        } else {
            0.0
        }
    );
    if let (Some(o), Some(n)) = (s.oldest, s.newest) {
        println!("pushed            {o} .. {n}");
    }
    for t in &s.timelines {
        println!(
            "timeline {:<8} {} .. {} ({} segments){}",
            t.timeline,
            t.first,
            t.last,
            t.segments,
            if t.gaps.is_empty() {
                String::new()
            } else {
                format!("; {} gaps", t.gaps.len())
            }
        );
        for g in &t.gaps {
            println!("  missing {} .. {}", g.from, g.to);
        }
    }
    Ok(())
}
