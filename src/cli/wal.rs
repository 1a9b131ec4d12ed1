//! `dbbackup wal push|fetch|list|stats`: PostgreSQL WAL archiving. `push` is the
//! `archive_command`, `fetch` the `restore_command`.

use std::path::{Path, PathBuf};

use dbbackup::repo::lock;
use dbbackup::repo::Repository;
use dbbackup::util::human_bytes;
use dbbackup::wal::ahead::{push_ahead, wal_name};
use dbbackup::wal::push::{PushOptions, Pushed};
use dbbackup::wal::spool::Spool;
use dbbackup::wal::{archive, catalog, summary, WalFile, DEFAULT_SEG_SIZE};
use dbbackup::Error;

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

impl WalCmd {
    /// The operation's name in JSON output and logs.
    pub fn name(&self) -> &'static str {
        match self {
            WalCmd::Push(_) => "wal_push",
            WalCmd::Fetch(_) => "wal_fetch",
            WalCmd::List => "wal_list",
            WalCmd::Stats => "wal_stats",
        }
    }

    /// Does the subcommand write to the repository?
    pub fn writes(&self) -> bool {
        matches!(self, WalCmd::Push(_))
    }
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
    /// Also store up to N more files PostgreSQL has marked ready in archive_status/, in the
    /// same run; when it asks for them, a marker in the local spool answers at once (0: only
    /// this file)
    #[arg(long, value_name = "N", default_value_t = 32)]
    ahead: usize,
}

/// Arguments of `wal fetch`.
#[derive(clap::Args, Debug)]
pub struct FetchArgs {
    /// Name of the WAL file (%f)
    file: String,
    /// Where to write it (%p)
    dest: PathBuf,
    /// Also restore the next N segments into the local spool, verified, so the calls for
    /// them are answered without unlocking the repository (0: only this file)
    #[arg(long, value_name = "N", default_value_t = 8)]
    ahead: u32,
    #[command(flatten)]
    lock: super::ReadLockArgs,
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
    let name = wal_name(&a.path)?;
    let store = ctx.store(None)?;
    let config = Repository::read_config(&store)?;
    let spool = Spool::open(&ctx.cache_dir()?, &config.id)?;
    if spool.take(&name, &a.path)? {
        // Stored by an earlier call that pushed ahead: no need to unlock the repository.
        tracing::info!(file = %name, "already archived (pushed ahead by an earlier call)");
        return report(ctx, &Pushed::AlreadyArchived { file: name });
    }
    let repo = ctx.unlock(store, config)?;
    let index = ctx.index(&repo)?;
    let session = ctx.session(&repo, &index, lock::Operation::WalPush)?;
    let opts = PushOptions {
        verify: !a.no_verify,
        compression_level: a.compression_level,
    };
    let pushed = push_ahead(&session, &spool, &a.path, a.ahead, &opts, &ctx.progress())?;
    report(ctx, &pushed)
}

fn report(ctx: &Ctx, r: &Pushed) -> anyhow::Result<()> {
    match r {
        Pushed::Stored {
            file,
            bytes,
            bytes_new,
            bytes_stored,
        } => tracing::info!(
            target: super::outcome::RESULT,
            operation = "wal_push",
            status = "ok",
            %file,
            bytes_read = bytes,
            bytes_new,
            bytes_stored,
            "archived"
        ),
        Pushed::AlreadyArchived { file } => tracing::info!(
            target: super::outcome::RESULT,
            operation = "wal_push",
            status = "ok",
            %file,
            "already archived with the same content"
        ),
    }
    if ctx.g.json {
        return output::json(r);
    }
    Ok(())
}

fn fetch(ctx: &Ctx, a: FetchArgs) -> anyhow::Result<()> {
    WalFile::parse(&a.file)?;
    let store = ctx.store(None)?;
    let config = Repository::read_config(&store)?;
    let spool = Spool::open(&ctx.cache_dir()?, &config.id)?;
    let fetch_dir = spool.fetch_dir()?;
    if let Some(n) = take_prefetched(&fetch_dir.join(&a.file), &a.dest)? {
        tracing::info!(file = %a.file, bytes = n, "restored (read ahead by an earlier call)");
        return Ok(());
    }
    let repo = ctx.unlock(store, config)?;
    // A shared lock keeps prune from sweeping packs out from under the restore.
    let index = ctx.index(&repo)?;
    let session = ctx.read_session(&repo, &index, lock::Operation::WalFetch, &a.lock)?;
    let n = dbbackup::wal::fetch::fetch(&session, &a.file, &a.dest, &dbbackup::progress::NoProgress)?;
    tracing::info!(file = %a.file, bytes = n, "restored");
    if a.ahead > 0 {
        // A damaged record must not fail a fetch that succeeded (`check` reports it).
        let seg_size = match archive::cluster(&repo) {
            Ok(info) => info.map_or(DEFAULT_SEG_SIZE, |i| i.wal_segment_size),
            Err(e) => {
                tracing::warn!(error = %e, "reading ahead with the default segment size");
                DEFAULT_SEG_SIZE
            }
        };
        // The file PostgreSQL asked for is in place: a failure here only costs speed later.
        match dbbackup::wal::fetch::fetch_ahead(&session, &a.file, a.ahead, seg_size, &fetch_dir) {
            Ok(v) if !v.is_empty() => tracing::info!(files = v.len(), "read ahead"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read ahead"),
        }
    }
    Ok(())
}

/// Move a segment read ahead into `dest` (replacing it, as PostgreSQL expects); its size, or
/// `None` when there is none (another restore from this repository may have taken it).
fn take_prefetched(src: &Path, dest: &Path) -> anyhow::Result<Option<u64>> {
    let size = match std::fs::metadata(src) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("cannot stat {}", src.display()), e).into()),
    };
    match std::fs::rename(src, dest) {
        Ok(()) => return Ok(Some(size)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        // Another file system: copy to a temporary name beside dest, then rename.
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {}
        Err(e) => return Err(Error::io(format!("cannot move {} to {}", src.display(), dest.display()), e).into()),
    }
    let dir = dest
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp =
        tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io(format!("cannot write in {}", dir.display()), e))?;
    match std::fs::copy(src, tmp.path()) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("cannot copy {}", src.display()), e).into()),
    }
    tmp.persist(dest)
        .map_err(|e| Error::io(format!("cannot write {}", dest.display()), e.error))?;
    let _ = std::fs::remove_file(src);
    Ok(Some(size))
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
    say!("{} files", entries.len());
    Ok(())
}

fn stats(ctx: &Ctx) -> anyhow::Result<()> {
    let repo = ctx.open()?;
    let info = archive::cluster(&repo)?;
    let entries = catalog::all(&repo)?;
    let s = summary::summarize(&entries, info.as_ref());
    if ctx.g.json {
        return output::json(&s);
    }
    say!(
        "cluster           {}",
        s.system_id.as_deref().unwrap_or("(no WAL pushed yet)")
    );
    say!(
        "files             {} ({} segments, {} partial, {} history, {} backup labels)",
        s.files,
        s.segments,
        s.partial,
        s.history,
        s.backup
    );
    say!(
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
        say!("pushed            {o} .. {n}");
    }
    for t in &s.timelines {
        say!(
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
            say!("  missing {} .. {}", g.from, g.to);
        }
    }
    Ok(())
}
