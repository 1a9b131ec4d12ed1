//! `dbbackup snapshot DBNAME | --all | --stdin | --from-command CMD`: back up databases
//! through their own dump tools, or any stream.

use std::path::PathBuf;

use dbbackup::format::snapshot::Source;
use dbbackup::progress::{Progress, Work};
use dbbackup::repo::lock;
use dbbackup::snapshot::{SnapshotOptions, SnapshotWriter};
use dbbackup::sources::dump::{dump_databases, DumpOptions, Selection};
use dbbackup::sources::postgres::PgConn;
use dbbackup::util::human_bytes;
use dbbackup::Error;

use super::db::{ConnArgs, Db};
use super::{output, Ctx};

/// `--mode` of a physical snapshot.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PhysicalMode {
    /// Read every file.
    Full,
    /// Read files changed since the newest file-by-file snapshot.
    Incremental,
    /// Read files changed since the newest full file-by-file snapshot.
    Differential,
}

/// Arguments of `snapshot`.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["database", "all", "stdin", "from_command", "physical"])))]
pub struct Args {
    /// Database to dump (with the engine's own tool, streamed; the server's globals too)
    database: Option<String>,
    /// Every database of the server but templates, plus the globals, as one snapshot
    #[arg(long)]
    all: bool,
    /// A physical base backup of the whole PostgreSQL cluster (pg_basebackup, with the WAL
    /// it needs), for `restore --pgdata` and point-in-time recovery with `wal push`
    #[arg(long)]
    physical: bool,
    /// With --physical: back up file by file through the low-level backup API instead of
    /// pg_basebackup; `incremental` reads only files changed since the newest file-by-file
    /// snapshot of this name, `differential` since the newest full one (needs --pgdata, and
    /// archive_command pushing into this repository)
    #[arg(long, value_enum, requires = "pgdata")]
    mode: Option<PhysicalMode>,
    /// With --mode: the cluster's data directory, readable by this user
    #[arg(long, value_name = "DIR", requires = "mode")]
    pgdata: Option<std::path::PathBuf>,
    /// Read the stream from standard input
    #[arg(long)]
    stdin: bool,
    /// Run this command (sh -c) and back up its standard output; a non-zero exit records nothing
    #[arg(long, value_name = "CMD")]
    from_command: Option<String>,
    /// Source name the snapshot is filed under [default: the database name; `all` with --all;
    /// required with --stdin and --from-command]
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    conn: ConnArgs,
    /// Dump format: one streamed dump (pg_dump's custom format; SQL for MySQL/MariaDB), or
    /// pg_dump's parallel directory format through a temporary directory
    #[arg(long, value_enum, default_value_t = Format::Custom)]
    format: Format,
    /// Databases dumped at once with --all; pg_dump jobs with --format directory
    #[arg(long, short = 'j', default_value_t = 1)]
    jobs: usize,
    /// Temporary directory for --format directory [default: TMPDIR or /tmp]
    #[arg(long, env = "DBBACKUP_TEMP_DIR", value_name = "DIR")]
    temp_dir: Option<std::path::PathBuf>,
    /// Keep the databases that dumped and record the failed ones instead of failing
    #[arg(long)]
    continue_on_error: bool,
    /// Do not dump the server's global objects (roles and tablespaces; MySQL/MariaDB accounts
    /// and grants)
    #[arg(long)]
    no_globals: bool,
    /// Tag the snapshot (repeatable)
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// zstd level for new chunks (default: the repository's)
    #[arg(long)]
    compression_level: Option<i32>,
    /// Do not read the new packs back to verify them before the snapshot is committed
    /// (verification is on by default; see docs/benchmarks.md for its cost)
    #[arg(long)]
    no_verify: bool,
    /// Store every new chunk whole, never as a delta against a similar stored chunk
    /// (deltas are on by default in format version 2 repositories; docs/deltas.md)
    #[arg(long)]
    no_deltas: bool,
    /// Record this time instead of now (RFC 3339 or `YYYY-MM-DD HH:MM:SS` UTC), e.g. importing old dumps
    #[arg(long)]
    time: Option<String>,
    /// Accept a --time more than 5 minutes in the future (such a snapshot is `latest`, and
    /// kept by `--keep-last`, until real time passes it)
    #[arg(long, requires = "time")]
    allow_future: bool,
    /// Record this host name instead of this machine's
    #[arg(long)]
    hostname: Option<String>,
}

/// Dump formats.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// pg_dump -Fc -Z0 (mariadb-dump's SQL for MySQL/MariaDB) streamed into the repository.
    Custom,
    /// pg_dump -Fd -Z0 -j N into a temporary directory, then into the repository.
    Directory,
}

/// Parse a user-given timestamp: RFC 3339, or a civil time taken as UTC.
pub fn parse_time(s: &str) -> dbbackup::Result<jiff::Timestamp> {
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    s.parse::<jiff::civil::DateTime>()
        .ok()
        .and_then(|dt| dt.to_zoned(jiff::tz::TimeZone::UTC).ok())
        .map(|z| z.timestamp())
        .ok_or_else(|| {
            Error::usage(format!(
                "cannot parse time `{s}`; use RFC 3339 or `YYYY-MM-DD HH:MM:SS` (UTC)"
            ))
        })
}

/// How far in the future a `--time` may lie without `--allow-future` (clocks disagree).
const FUTURE_SLACK: jiff::SignedDuration = jiff::SignedDuration::from_secs(300);

/// The time a snapshot records: `--time` if given, refused when more than
/// [`FUTURE_SLACK`] ahead of this clock unless `allow_future`.
fn snapshot_time(given: Option<&str>, allow_future: bool) -> dbbackup::Result<Option<jiff::Timestamp>> {
    let Some(t) = given.map(parse_time).transpose()? else {
        return Ok(None);
    };
    let now = jiff::Timestamp::now();
    if !allow_future && t.duration_since(now) > FUTURE_SLACK {
        return Err(Error::usage(format!(
            "--time {t} is in the future (now {}): such a snapshot would be `latest` and survive \
             `forget --keep-last` until then; give the real time, or --allow-future if that is meant",
            now.round(jiff::Unit::Second).unwrap_or(now)
        )));
    }
    Ok(Some(t))
}

/// A file-by-file physical backup, compared with the parent `mode` picks (a full one when
/// there is none yet).
fn files_backup(
    w: &SnapshotWriter,
    conn: &PgConn,
    name: &str,
    mode: PhysicalMode,
    pgdata: &std::path::Path,
    bar: &super::output::Bar,
) -> anyhow::Result<dbbackup::format::snapshot::PhysicalSource> {
    use dbbackup::sources::pgdata::Mode;
    let requested = match mode {
        PhysicalMode::Full => Mode::Full,
        PhysicalMode::Incremental => Mode::Incremental,
        PhysicalMode::Differential => Mode::Differential,
    };
    let (p, r) = dbbackup::sources::pgdata::files_backup(w, conn, pgdata, name, requested, bar)?;
    if r.mode != requested {
        tracing::warn!("no earlier file-by-file snapshot of `{name}` to compare with: took a full one");
    }
    tracing::info!(
        mode = r.mode.as_str(),
        files_read = r.files_read,
        files_unchanged = r.files_reused,
        bytes_unchanged = r.bytes_reused,
        "file-by-file base backup"
    );
    Ok(p)
}

/// The source name a snapshot is filed under: `--name`, else the database's, `all` or
/// `cluster`; a stream must be named.
fn source_name(a: &Args) -> dbbackup::Result<String> {
    Ok(match (&a.name, &a.database) {
        (Some(n), _) => n.clone(),
        (None, Some(db)) => db.clone(),
        (None, None) if a.all => "all".to_string(),
        (None, None) if a.physical => "cluster".to_string(),
        (None, None) => return Err(Error::usage("--name is required with --stdin and --from-command")),
    })
}

/// What `snapshot` reads.
enum What {
    /// A physical base backup: pg_basebackup, or file by file (`--mode`, `--pgdata`).
    Physical {
        conn: PgConn,
        files: Option<(PhysicalMode, PathBuf)>,
    },
    /// Databases dumped with their engine's tool.
    Databases { db: Db, opts: DumpOptions },
    /// A command's standard output.
    Command(String),
    /// Standard input.
    Stdin,
}

/// A `snapshot` request, checked before the repository is opened.
struct Request {
    what: What,
    opts: SnapshotOptions,
    /// The streams of `--all` serve as delta bases for each other.
    streams_as_bases: bool,
}

impl Request {
    /// Check the arguments and say what to read.
    fn new(a: Args) -> dbbackup::Result<Request> {
        let time = snapshot_time(a.time.as_deref(), a.allow_future)?;
        if a.stdin && std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            return Err(Error::usage(
                "--stdin is a terminal; pipe the data in (e.g. `pg_dump -Fc -Z0 db | dbbackup snapshot --stdin --name db`)",
            ));
        }
        let db_mode = a.database.is_some() || a.all;
        if a.jobs == 0 {
            return Err(Error::usage("--jobs must be at least 1"));
        }
        if a.mode.is_some() && !a.physical {
            return Err(Error::usage("--mode and --pgdata apply to --physical snapshots"));
        }
        if a.physical && a.conn.engine.is_some_and(|e| e != super::db::Engine::Postgres) {
            return Err(Error::usage("--physical backs up PostgreSQL clusters"));
        }
        if !db_mode && (a.format != Format::Custom || a.continue_on_error || a.no_globals) {
            return Err(Error::usage(
                "--format, --continue-on-error and --no-globals apply to database snapshots",
            ));
        }
        let name = source_name(&a)?;
        // A run that fails before it saves anything is still recorded under its source.
        super::after::note_source(a.hostname.as_deref(), &name);
        // The databases of a cluster often resemble each other (copies, tenants).
        let streams_as_bases = a.all && a.format != Format::Directory;
        let what = if a.physical {
            let conn = PgConn {
                host: a.conn.host.clone(),
                port: a.conn.port,
                user: a.conn.user.clone(),
                bin_dir: a.conn.bin_dir.clone(),
            };
            What::Physical {
                conn,
                files: a.mode.zip(a.pgdata),
            }
        } else if db_mode {
            let opts = DumpOptions {
                selection: match &a.database {
                    Some(db) => Selection::One(db.clone()),
                    None => Selection::All,
                },
                jobs: a.jobs,
                directory: a.format == Format::Directory,
                temp_dir: a.temp_dir,
                continue_on_error: a.continue_on_error,
                globals: !a.no_globals,
                host: a.conn.host.clone(),
                port: a.conn.port,
                user: a.conn.user.clone(),
            };
            What::Databases {
                db: a.conn.for_snapshot()?,
                opts,
            }
        } else if let Some(cmd) = a.from_command {
            What::Command(cmd)
        } else {
            What::Stdin
        };
        let opts = SnapshotOptions {
            name,
            tags: a.tags,
            compression_level: a.compression_level,
            time,
            hostname: a.hostname,
            verify: !a.no_verify,
            deltas: !a.no_deltas,
        };
        Ok(Request {
            what,
            opts,
            streams_as_bases,
        })
    }
}

/// Read what `what` names into `w`; returns the source to record.
fn read(w: &SnapshotWriter, what: What, name: &str, bar: &output::Bar) -> anyhow::Result<Source> {
    Ok(match what {
        What::Physical { conn, files } => {
            bar.start("base backup", Work::Bytes(None));
            let mut p = match files {
                Some((mode, dir)) => files_backup(w, &conn, name, mode, &dir, bar)?,
                None => dbbackup::sources::physical::base_backup(w, &conn, bar)?,
            };
            bar.finish();
            p.host = conn.host;
            p.port = conn.port;
            p.user = conn.user;
            Source::Physical(Box::new(p))
        }
        What::Databases { db, opts } => Source::Database(Box::new(dump_databases(w, db.dump(), &opts, bar)?)),
        What::Command(cmd) => {
            bar.start("snapshot", Work::Bytes(None));
            let (child, stdout) = dbbackup::sources::CommandSource::spawn(&cmd)?;
            match w.add_stream(name, stdout, bar) {
                Ok(_) => child.wait()?,
                Err(e) => {
                    child.kill();
                    return Err(e.into());
                }
            }
            bar.finish();
            Source::Command { command: cmd }
        }
        What::Stdin => {
            bar.start("snapshot", Work::Bytes(None));
            w.add_stream(name, std::io::stdin(), bar)?;
            bar.finish();
            Source::Stdin
        }
    })
}

/// Run `snapshot`.
pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<()> {
    let Request {
        what,
        opts,
        streams_as_bases,
    } = Request::new(a)?;
    let name = opts.name.clone();
    let repo = ctx.open()?;
    // The session locks first, then syncs the index and deletion plans (repo-format §10.1).
    let index = ctx.index(&repo)?;
    let session = ctx.session(&repo, &index, lock::Operation::Snapshot)?;
    let mut w = SnapshotWriter::new(&session, opts)?;
    if streams_as_bases {
        w = w.with_streams_as_bases();
    }
    if let Some(parent) = dbbackup::snapshot::latest_of(&repo, &name) {
        w = w.with_parent(parent);
    }
    let bar = ctx.progress();
    let source = read(&w, what, &name, &bar)?;
    let (id, m) = w.finish(source)?;
    let mut status = "ok";
    if let Source::Database(d) = &m.source {
        for f in &d.failed {
            tracing::warn!(database = %f.name, "not in snapshot {}: {}", id.short(), f.error);
        }
        for warning in &d.warnings {
            tracing::warn!("{warning}");
        }
        if !d.failed.is_empty() {
            status = "partial";
            let names: Vec<&str> = d.failed.iter().map(|f| f.name.as_str()).collect();
            *ctx.unfinished.borrow_mut() = Some(super::outcome::Unfinished::Partial(format!(
                "{} of {} failed ({}); snapshot {} holds the others",
                d.failed.len(),
                d.failed.len() + d.databases.len(),
                names.join(", "),
                id.short()
            )));
        }
    }
    saved_event(&id, &m, status);
    if ctx.g.json {
        return output::json(&serde_json::json!({
            "operation": "snapshot",
            "status": status,
            "id": id,
            "snapshot": m,
        }));
    }
    print_saved(&id, &m);
    Ok(())
}

/// The `result` log event of a saved snapshot.
fn saved_event(id: &dbbackup::format::Id, m: &dbbackup::format::snapshot::Manifest, status: &str) {
    let s = &m.summary;
    let failed = match &m.source {
        Source::Database(d) => d.failed.len(),
        _ => 0,
    };
    tracing::info!(
        target: super::outcome::RESULT,
        operation = "snapshot",
        status,
        snapshot_id = %id,
        source = %m.name,
        engine = m.source.engine().unwrap_or(m.source.kind()),
        host = %m.hostname,
        bytes_read = s.bytes_read,
        bytes_new = s.bytes_new,
        bytes_stored = s.bytes_stored,
        chunks_total = s.chunks_total,
        chunks_new = s.chunks_new,
        duration_seconds = s.duration_ms as f64 / 1000.0,
        databases_failed = failed,
        "snapshot saved"
    );
}

/// The lines saying what a snapshot saved.
fn print_saved(id: &dbbackup::format::Id, m: &dbbackup::format::snapshot::Manifest) {
    let s = &m.summary;
    say!(
        "snapshot {} of `{}` saved: {} read, {} new in {} of {} chunks, {} stored, {:.1}s",
        id.short(),
        m.name,
        human_bytes(s.bytes_read),
        human_bytes(s.bytes_new),
        s.chunks_new,
        s.chunks_total,
        human_bytes(s.bytes_stored),
        s.duration_ms as f64 / 1000.0
    );
    if let Source::Physical(p) = &m.source {
        say!(
            "  cluster {} timeline {}, WAL {} .. {} (replay starts in {})",
            p.system_id,
            p.timeline,
            p.start_lsn,
            p.stop_lsn,
            p.start_wal
        );
    }
    if let Source::Database(d) = &m.source {
        for db in &d.databases {
            let dumped: u64 = m.entries.iter().filter(|e| db.holds(&e.path)).map(|e| e.size).sum();
            say!(
                "  ok      {:<30} {} on the server, {} dump",
                db.name,
                human_bytes(db.size),
                human_bytes(dumped)
            );
        }
        if let Some(g) = &d.globals {
            say!("  ok      (globals)                      {g}");
        }
        for f in &d.failed {
            say!("  FAILED  {:<30} {}", f.name, f.error.lines().next().unwrap_or(""));
        }
    }
}
