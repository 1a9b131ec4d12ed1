//! Command-line front end: global options, settings resolution (flags > environment > config
//! file > defaults), passwords, progress bars, output, and exit codes.

/// Print a result line on stdout, unless `-q` silenced them.
macro_rules! say {
    ($($t:tt)*) => {
        if !$crate::cli::output::quiet() {
            println!($($t)*);
        }
    };
}

mod after;
mod check;
mod config;
mod db;
mod docs;
mod forget;
mod global;
mod hints;
mod init;
mod key;
mod ls;
mod metrics;
mod notify;
mod outcome;
mod output;
mod owner;
pub mod password;
mod prune;
mod repair;
mod restore;
mod restore_pg;
mod select;
mod signals;
mod snapshot;
mod snapshots;
mod stats;
mod status;
mod unlock;
mod wal;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use dbbackup::repo::index::IndexCache;
use dbbackup::repo::lock::Operation;
use dbbackup::repo::session::{ReadLock, Session};
use dbbackup::repo::Repository;
use dbbackup::storage::{parse_location, StorageLimits, Store};
use dbbackup::{Error, ErrorKind};
pub use global::{parse_duration, Global, LogFormat, ReadLockArgs};

/// Deduplicating, encrypted backups of PostgreSQL and MySQL/MariaDB into any OpenDAL storage.
#[derive(Parser, Debug)]
#[command(name = "dbbackup", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Create a new encrypted repository
    Init(init::Args),
    /// Manage the passwords (keys) that unlock the repository
    #[command(subcommand)]
    Key(key::KeyCmd),
    /// Back up a database (or all of them, or any stream) as a new snapshot
    Snapshot(snapshot::Args),
    /// Restore a snapshot into a database server, or to a file, a directory, or stdout
    Restore(restore::Args),
    /// List snapshots
    Snapshots(snapshots::Args),
    /// Remove snapshots by id, or by retention policy (--keep-daily 7 ...)
    Forget(forget::Args),
    /// Free space: forget by retention policy (optional), then delete and repack unused data
    Prune(prune::Args),
    /// List a snapshot's entries (dump files, globals) with sizes and SHA-256
    Ls(ls::Args),
    /// Show repository statistics: sizes, dedup and compression ratios
    Stats(stats::Args),
    /// Verify the repository's structure and, with --read-data, every byte
    Check(check::Args),
    /// Per source the newest snapshot and its age, the last checks, WAL archiving; with
    /// --max-age and friends a monitoring probe (exit 4 when something needs attention)
    Status(status::Args),
    /// PostgreSQL WAL archiving: push (archive_command), fetch (restore_command), list, stats
    #[command(subcommand)]
    Wal(wal::WalCmd),
    /// Make a damaged repository consistent again: rebuild the index, or drop what is lost
    #[command(subcommand)]
    Repair(repair::RepairCmd),
    /// Remove stale locks (of killed processes, or unreadable and older than the lock timeout)
    Unlock(unlock::Args),
    /// Prometheus metrics of the repository: print them once, or serve them over HTTP
    #[command(subcommand)]
    Metrics(metrics::MetricsCmd),
    /// The configuration file: show the effective settings and where each came from
    #[command(subcommand)]
    Config(config::ConfigCmd),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    #[command(alias = "completion")]
    Completions(docs::CompletionsArgs),
    /// Write the man pages
    Man(docs::ManArgs),
}

impl Cmd {
    /// The operation's name in JSON output and logs.
    fn name(&self) -> &'static str {
        match self {
            Cmd::Init(_) => "init",
            Cmd::Key(_) => "key",
            Cmd::Snapshot(_) => "snapshot",
            Cmd::Restore(_) => "restore",
            Cmd::Snapshots(_) => "snapshots",
            Cmd::Forget(_) => "forget",
            Cmd::Prune(_) => "prune",
            Cmd::Ls(_) => "ls",
            Cmd::Stats(_) => "stats",
            Cmd::Check(_) => "check",
            Cmd::Status(_) => "status",
            Cmd::Wal(c) => c.name(),
            Cmd::Repair(_) => "repair",
            Cmd::Unlock(_) => "unlock",
            Cmd::Metrics(_) => "metrics",
            Cmd::Config(_) => "config",
            Cmd::Completions(_) => "completions",
            Cmd::Man(_) => "man",
        }
    }

    /// Does the command write to an existing repository (`Some(true)`), only read it
    /// (`Some(false)`), or neither (`init`: the ownership guard does not apply)?
    fn writes(&self) -> Option<bool> {
        match self {
            Cmd::Init(_) | Cmd::Config(_) | Cmd::Completions(_) | Cmd::Man(_) => None,
            Cmd::Restore(_)
            | Cmd::Snapshots(_)
            | Cmd::Ls(_)
            | Cmd::Stats(_)
            | Cmd::Check(_)
            | Cmd::Status(_)
            | Cmd::Metrics(_) => Some(false),
            Cmd::Wal(c) => Some(c.writes()),
            Cmd::Key(_) | Cmd::Snapshot(_) | Cmd::Forget(_) | Cmd::Prune(_) | Cmd::Repair(_) | Cmd::Unlock(_) => {
                Some(true)
            }
        }
    }
}

/// Everything a command needs to reach the repository.
pub struct Ctx {
    /// Resolved global options.
    pub g: Global,
    /// The async runtime all storage I/O runs on.
    pub rt: tokio::runtime::Runtime,
    /// The local repository belongs to another OS user (and that was not allowed): this
    /// command only reads, and takes no lock.
    pub other_owner: bool,
    /// The configuration file's sections that commands read.
    pub file: config::FileSettings,
    /// How the configuration completed the command line (for `config show`).
    pub config: config::Prepared,
    /// The command did only part of its work (exit status 3), or found problems (4).
    pub unfinished: std::cell::RefCell<Option<outcome::Unfinished>>,
}

impl Ctx {
    pub fn location(&self, explicit: Option<&str>) -> dbbackup::Result<dbbackup::storage::Location> {
        let repo = explicit
            .map(str::to_string)
            .or_else(|| self.g.repo.clone())
            .ok_or_else(|| {
                Error::config(
                    "no repository given: use -r/--repo, DBBACKUP_REPOSITORY, or `repository` in the config file",
                )
            })?;
        parse_location(&repo)
    }

    /// How storage requests are bounded.
    pub fn limits(&self) -> StorageLimits {
        StorageLimits {
            timeout: self.g.storage_timeout,
            retries: self.g.storage_retries,
        }
    }

    /// Open the storage of the repository.
    pub fn store(&self, explicit: Option<&str>) -> dbbackup::Result<Store> {
        Store::open_with(&self.location(explicit)?, self.rt.handle().clone(), self.limits())
    }

    /// The ownership guard (see `owner.rs`): `writes` is `Some(true)` for a command that
    /// writes to an existing repository, `Some(false)` for one that only reads.
    fn guard_owner(&mut self, writes: Option<bool>) -> dbbackup::Result<()> {
        let (Some(writes), false) = (writes, self.g.allow_other_owner) else {
            return Ok(());
        };
        let Ok(loc) = self.location(None) else {
            return Ok(()); // the command reports the missing repository itself
        };
        if let Some((owner, me)) = owner::other_owner(&loc) {
            if writes {
                return Err(owner::refusal(&loc, &owner, &me));
            }
            self.other_owner = true;
        }
        Ok(())
    }

    /// The session of a command that writes or removes: lock for `operation`, then sync
    /// `index`.
    pub fn session<'r>(
        &self,
        repo: &'r Repository,
        index: &'r IndexCache,
        operation: Operation,
    ) -> dbbackup::Result<Session<'r>> {
        let s = Session::begin(repo, index, operation)?;
        log_sync(s.synced_at_start());
        Ok(s)
    }

    /// The session of a command that only reads: a shared lock, or none with `--no-lock`,
    /// when the repository belongs to another OS user, or when storage refuses the lock's
    /// write.
    pub fn read_session<'r>(
        &self,
        repo: &'r Repository,
        index: &'r IndexCache,
        operation: Operation,
        args: &ReadLockArgs,
    ) -> dbbackup::Result<Session<'r>> {
        let lock = if args.no_lock {
            tracing::info!("--no-lock: reading without a repository lock");
            ReadLock::Skip
        } else if self.other_owner {
            tracing::warn!(
                "the repository belongs to another OS user: reading without a repository lock, so as to leave no file \
                 behind; a prune running meanwhile could delete data this {operation} needs, which would make it fail"
            );
            ReadLock::Skip
        } else {
            ReadLock::Take
        };
        let s = Session::begin_reading(repo, index, operation, lock)?;
        log_sync(s.synced_at_start());
        Ok(s)
    }

    /// Open and unlock the repository.
    pub fn open(&self) -> dbbackup::Result<Repository> {
        let store = self.store(None)?;
        // Fail on a missing repository before asking for a password.
        let config = Repository::read_config(&store)?;
        self.unlock(store, config)
    }

    /// Unlock the repository whose config was read from `store`.
    pub fn unlock(&self, store: Store, config: dbbackup::format::config::Config) -> dbbackup::Result<Repository> {
        let pw = password::get(&self.g, "repository password: ", false)?;
        let mut repo = Repository::open_with_config(store, config, pw.as_bytes())?;
        match self.cache_dir() {
            Ok(dir) => repo.use_cache_dir(&dir),
            Err(e) => tracing::debug!(error = %e, "no local cache: every manifest is read from the repository"),
        }
        Ok(repo)
    }

    /// Open the local index cache; a [`Session`] syncs it once its lock is taken.
    pub fn index(&self, repo: &Repository) -> dbbackup::Result<IndexCache> {
        IndexCache::open(repo, &self.cache_dir()?)
    }

    /// The local cache directory.
    pub fn cache_dir(&self) -> dbbackup::Result<PathBuf> {
        match &self.g.cache_dir {
            Some(d) => Ok(d.clone()),
            None => dirs::cache_dir()
                .map(|d| d.join("dbbackup"))
                .ok_or_else(|| Error::config("no cache directory: set --cache-dir or DBBACKUP_CACHE_DIR")),
        }
    }

    /// A progress reporter: a bar on a TTY, nothing otherwise.
    pub fn progress(&self) -> output::Bar {
        output::Bar::new(!self.g.quiet && !self.g.no_progress && !self.g.json)
    }
}

fn log_sync(st: &dbbackup::repo::index::SyncStats) {
    if st.rebuilt {
        tracing::info!(segments = st.segments_read, "rebuilt the local index cache");
    } else if st.segments_read > 0 {
        tracing::debug!(segments = st.segments_read, "synced new index segments");
    }
}

/// Parse arguments and run the command.
pub fn run() -> ExitCode {
    signals::quiet_on_closed_stdout();
    // Registered first, so it runs last on interruption: after the locks are removed.
    std::mem::forget(dbbackup::interrupt::on_interrupt(
        dbbackup::storage::ssh::stop_own_ssh_until_quiet,
    ));
    // The configuration file completes the command line; when it cannot be read, the command
    // line alone is parsed, for the error to be reported as the command asked (--json, ...).
    let (prepared, config_error) = match config::prepare(std::env::args_os().collect()) {
        Ok(p) => (p, None),
        Err(e) => (config::Prepared::default(), Some(e)),
    };
    let argv = match config_error {
        None => prepared.argv.clone(),
        Some(_) => std::env::args_os().collect(),
    };
    let cli = match Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) => return bad_arguments(e, &prepared),
    };
    output::set_quiet(cli.global.quiet);
    outcome::init_logging(&cli.global);
    let operation = cli.cmd.name();
    let started = std::time::Instant::now();
    let set_up = match config_error {
        None => setup(&cli.global, prepared),
        Some(e) => Err(e.into()),
    };
    let mut ctx = match set_up {
        Ok(ctx) => ctx,
        Err(e) => {
            let code = outcome::failed(&cli.global, operation, &e);
            let message = Some(dbbackup::error::one_line(e.as_ref()));
            let end = after::Ended {
                operation,
                started,
                code,
                message,
            };
            after::finish(&cli.global, None, None, &end);
            return ExitCode::from(code);
        }
    };
    let recorded = {
        let g = ctx.g.clone();
        dbbackup::interrupt::on_interrupt(move || after::interrupted(&g, operation, started))
    };
    let r = dispatch(&mut ctx, cli.cmd, operation);
    drop(recorded);
    // The repository (and its SFTP connections) are closed: stop what ssh left running.
    dbbackup::storage::ssh::stop_own_ssh();
    if dbbackup::interrupt::interrupted() {
        // The signal thread is cleaning up and ends the process with the signal's status;
        // what the command returned meanwhile (often an error the interruption caused: its
        // storage requests are refused) is not its result.
        for _ in 0..300 {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        return ExitCode::from(signals::SIGNAL_STATUS.load(std::sync::atomic::Ordering::SeqCst));
    }
    let (code, message) = match r {
        Ok(None) => (0, None),
        Ok(Some(u)) => (outcome::unfinished(&ctx.g, operation, &u), Some(u.why().to_string())),
        Err(e) => (
            outcome::failed(&ctx.g, operation, &e),
            Some(dbbackup::error::one_line(e.as_ref())),
        ),
    };
    let end = after::Ended {
        operation,
        started,
        code,
        message,
    };
    after::finish(&ctx.g, Some(&ctx.file), Some(&ctx.rt), &end);
    ExitCode::from(code)
}

/// The async runtime started, signals watched.
fn setup(global: &Global, mut config: config::Prepared) -> anyhow::Result<Ctx> {
    let file = std::mem::take(&mut config.loaded.sections);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .max_blocking_threads(3)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    signals::watch_signals(rt.handle().clone());
    Ok(Ctx {
        g: global.clone(),
        rt,
        other_owner: false,
        file,
        config,
        unfinished: Default::default(),
    })
}

/// The owner guard, the `before` hook, then the command; how it ended unless it failed.
fn dispatch(ctx: &mut Ctx, cmd: Cmd, operation: &str) -> anyhow::Result<Option<outcome::Unfinished>> {
    ctx.guard_owner(cmd.writes())?;
    after::before(&ctx.file, operation)?;
    let ctx = &*ctx;
    match cmd {
        Cmd::Init(a) => init::run(ctx, a),
        Cmd::Key(k) => key::run(ctx, k),
        Cmd::Snapshot(a) => snapshot::run(ctx, a),
        Cmd::Restore(a) => restore::run(ctx, a),
        Cmd::Snapshots(a) => snapshots::run(ctx, a),
        Cmd::Forget(a) => forget::run(ctx, a),
        Cmd::Prune(a) => prune::run(ctx, a),
        Cmd::Ls(a) => ls::run(ctx, a),
        Cmd::Stats(a) => stats::run(ctx, a),
        Cmd::Check(a) => check::run(ctx, a),
        Cmd::Status(a) => status::run(ctx, a),
        Cmd::Wal(c) => wal::run(ctx, c),
        Cmd::Repair(c) => repair::run(ctx, c),
        Cmd::Unlock(a) => unlock::run(ctx, a),
        Cmd::Metrics(c) => metrics::run(ctx, c),
        Cmd::Config(c) => config::run(ctx, c),
        Cmd::Completions(a) => docs::completions(a),
        Cmd::Man(a) => docs::man(a),
    }?;
    Ok(ctx.unfinished.take())
}

/// Arguments clap refused: its own message (and help or version, which are no error); with
/// `--json` among the arguments, also the JSON error object every failure prints.
fn bad_arguments(e: clap::Error, config: &config::Prepared) -> ExitCode {
    use clap::error::ErrorKind as K;
    if matches!(
        e.kind(),
        K::DisplayHelp | K::DisplayVersion | K::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit();
    }
    // The arguments as parsed: with what the configuration file added (`json = true`).
    let json = match config.argv.is_empty() {
        true => std::env::args_os().any(|a| a == "--json"),
        false => config.argv.iter().any(|a| a == "--json"),
    };
    if json {
        let text = e.to_string();
        let first = text.lines().next().unwrap_or_default();
        let message = first.strip_prefix("error: ").unwrap_or(first);
        outcome::print_failure(None, ErrorKind::Usage.name(), 2, message, None);
    }
    let _ = e.print();
    // What the file gave matters when a value or a combination was refused.
    let about_values = !matches!(
        e.kind(),
        K::MissingSubcommand | K::InvalidSubcommand | K::UnknownArgument
    );
    if let (true, false, Some(path)) = (about_values, config.added.is_empty(), &config.loaded.path) {
        eprintln!(
            "note: the configuration file {} gave {}",
            path.display(),
            config.added.join(", ")
        );
    }
    ExitCode::from(2)
}
