//! `dbbackup restore SNAPSHOT --target PATH|-` writes a snapshot back out, verified;
//! `--to-database NAME` / `--all` load a database snapshot into a running server.

use std::path::PathBuf;

use dbbackup::format::snapshot::Manifest;
use dbbackup::format::Id;
use dbbackup::repo::session::Session;
use dbbackup::restore::{restore_snapshot, Target};
use dbbackup::sources::load::{database_source, pick, LoadOptions, Loader};
use dbbackup::util::human_bytes;
use dbbackup::Error;

use super::db::ConnArgs;
use super::{output, Ctx};

/// Arguments of `restore`.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("dest").required(true).args(["target", "to_database", "all", "pgdata"])))]
pub struct Args {
    /// Snapshot id, unique id prefix, or `latest` (with --pitr: optional, the newest physical
    /// snapshot that finished before the target by default)
    #[arg(required_unless_present = "pitr")]
    snapshot: Option<String>,
    /// Where to write: a file, a directory, or `-` for standard output
    #[arg(long, short = 't')]
    target: Option<String>,
    /// Restore a physical snapshot into this (empty) PostgreSQL data directory
    #[arg(long, value_name = "DIR")]
    pgdata: Option<PathBuf>,
    #[command(flatten)]
    select: super::select::SelectArgs,
    /// Replace existing files
    #[arg(long)]
    overwrite: bool,
    /// Load the dumped database into this database of a running server
    #[arg(long, value_name = "NAME")]
    to_database: Option<String>,
    /// Load every database of the snapshot under its own name, after the globals
    #[arg(long)]
    all: bool,
    /// Which database of a multi-database snapshot to load with --to-database
    #[arg(long, value_name = "NAME")]
    database: Option<String>,
    #[command(flatten)]
    conn: ConnArgs,
    /// Parallel loader jobs (the dump is written to a temporary file first when > 1)
    #[arg(long, short = 'j', default_value_t = 1)]
    jobs: usize,
    /// Create the target database (like the dumped one) when it does not exist
    #[arg(long)]
    create: bool,
    /// Drop the dumped objects in the target before recreating them (needs --force when the
    /// target is not empty)
    #[arg(long)]
    clean: bool,
    /// Load into a database that already holds objects
    #[arg(long)]
    force: bool,
    /// With --to-database: also load the globals first (PostgreSQL roles and tablespaces;
    /// MySQL/MariaDB accounts, roles and grants)
    #[arg(long, conflicts_with = "no_globals")]
    with_globals: bool,
    /// With --all: do not load the globals
    #[arg(long)]
    no_globals: bool,
    /// Do not restore object ownership (every object is owned by the restoring user)
    #[arg(long)]
    no_owner: bool,
    /// Temporary directory for parallel loads [default: TMPDIR or /tmp]
    #[arg(long, env = "DBBACKUP_TEMP_DIR", value_name = "DIR")]
    temp_dir: Option<PathBuf>,
    #[command(flatten)]
    lock: super::ReadLockArgs,
    #[command(flatten)]
    pub pg: super::restore_pg::PgArgs,
}

/// Run `restore`.
pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<()> {
    // Checked before the repository is opened.
    if a.jobs == 0 {
        return Err(Error::usage("--jobs must be at least 1").into());
    }
    let goal = super::restore_pg::target(&a.pg)?;
    let repo = ctx.open()?;
    // A shared lock keeps prune from sweeping packs out from under this restore.
    let index = ctx.index(&repo)?;
    let session = ctx.read_session(&repo, &index, dbbackup::repo::lock::Operation::Restore, &a.lock)?;
    if let Some(dir) = &a.pgdata {
        let which = super::restore_pg::Which {
            snapshot: a.snapshot.as_deref(),
            filter: a.select.filter(None),
        };
        return super::restore_pg::run(ctx, &session, which, dir, a.force, &a.pg, goal);
    }
    let spec = a.snapshot.as_deref().unwrap_or("latest");
    // `--engine` says which snapshots too: a MariaDB snapshot is never loaded by mistake.
    let (id, m) = repo.select_snapshot(spec, &a.select.filter(a.conn.engine))?;
    dbbackup::preflight::ensure_readable(&session, &m.entries)?;
    match &a.target {
        Some(t) => write_out(ctx, &session, &id, &m, t, a.overwrite),
        None => load(ctx, &session, &id, &m, &a),
    }
}

/// Load the snapshot's databases into a running server (`--to-database`, `--all`).
fn load(ctx: &Ctx, session: &Session<'_>, id: &Id, m: &Manifest, a: &Args) -> anyhow::Result<()> {
    let bar = ctx.progress();
    let src = database_source(m)?;
    let db = a.conn.for_restore(&src.engine)?;
    let opts = LoadOptions {
        jobs: a.jobs,
        create: a.create || a.all,
        clean: a.clean,
        force: a.force,
        no_owner: a.no_owner,
        temp_dir: a.temp_dir.clone(),
    };
    let loader = Loader {
        session,
        m,
        engine: db.load(),
        progress: &bar,
    };
    loader.check(&opts)?;
    let mut loaded = Vec::new();
    let globals = if (a.all && !a.no_globals) || a.with_globals {
        loader.globals()?
    } else {
        false
    };
    let targets: Vec<_> = match &a.to_database {
        Some(to) => vec![(pick(src, a.database.as_deref())?, to.clone())],
        None => src.databases.iter().map(|d| (d, d.name.clone())).collect(),
    };
    for (db, to) in targets {
        loader.database(db, &to, &opts)?;
        tracing::info!(
            target: super::outcome::RESULT,
            operation = "restore",
            status = "ok",
            snapshot_id = %id,
            source = %m.name,
            database = %db.name,
            into = %to,
            "database restored"
        );
        loaded.push(serde_json::json!({ "database": db.name, "into": to }));
        if !ctx.g.json {
            say!(
                "restored database `{}` into `{to}` from snapshot {}, every chunk verified",
                db.name,
                id.short()
            );
        }
    }
    if ctx.g.json {
        return output::json(&serde_json::json!({
            "operation": "restore",
            "status": "ok",
            "snapshot_id": id,
            "globals": globals,
            "databases": loaded,
        }));
    }
    if globals {
        let what = if src.engine == "postgresql" {
            "roles, tablespaces"
        } else {
            "accounts, roles, grants"
        };
        say!("restored the globals ({what})");
    }
    Ok(())
}

/// Write the snapshot's entries to `--target` (a file, a directory, or `-`).
fn write_out(ctx: &Ctx, session: &Session<'_>, id: &Id, m: &Manifest, t: &str, overwrite: bool) -> anyhow::Result<()> {
    let target = if t == "-" {
        Target::Stdout
    } else {
        Target::Path(PathBuf::from(t))
    };
    let done = restore_snapshot(session, m, &target, overwrite, &ctx.progress())?;
    tracing::info!(
        target: super::outcome::RESULT,
        operation = "restore",
        status = "ok",
        snapshot_id = %id,
        source = %m.name,
        files = done.len(),
        bytes = done.iter().map(|(_, n)| n).sum::<u64>(),
        "snapshot restored"
    );
    if matches!(target, Target::Stdout) {
        return Ok(());
    }
    if ctx.g.json {
        let files: Vec<_> = done
            .iter()
            .map(|(p, n)| serde_json::json!({ "path": p, "bytes": n }))
            .collect();
        return output::json(&serde_json::json!({
            "operation": "restore",
            "status": "ok",
            "snapshot_id": id,
            "files": files,
        }));
    }
    for (p, n) in &done {
        say!(
            "restored {} ({}) from snapshot {}, SHA-256 verified",
            p.display(),
            human_bytes(*n),
            id.short()
        );
    }
    Ok(())
}
