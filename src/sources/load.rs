//! Restoring database snapshots into a running server, for any engine: the target checked
//! (missing → `--create`, non-empty → only with `--force`), the globals loaded first when
//! asked, each dump streamed into the engine's loader or, for parallel loads, written to a
//! checked temporary directory first. Every byte is verified on the way, as in any restore.

use std::path::{Path, PathBuf};

use super::dump::TempDumpDir;
use super::process::{Failure, Process};
use crate::error::{Error, ErrorKind, Hint, Result};
use crate::format::snapshot::{DatabaseInfo, DatabaseSource, Entry, Manifest};
use crate::progress::{Progress, Work};
use crate::repo::session::Session;
use crate::restore::{restore_entry, restore_snapshot, Target};

/// A restore target database's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetState {
    /// It does not exist.
    Missing,
    /// It exists with no user objects.
    Empty,
    /// It exists and holds this many user objects.
    NonEmpty(u64),
}

/// What a loader reads.
#[derive(Debug, Clone, Copy)]
pub enum LoadInput<'a> {
    /// Its standard input.
    Stdin,
    /// A dump file.
    File(&'a Path),
    /// A dump directory (pg_dump's directory format).
    Dir(&'a Path),
}

/// How to load.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Parallel jobs of the loader (a temporary file is used when > 1).
    pub jobs: usize,
    /// Create the target database when missing.
    pub create: bool,
    /// Drop the dump's objects before recreating them.
    pub clean: bool,
    /// Restore into a database that already holds objects.
    pub force: bool,
    /// Do not restore object ownership (PostgreSQL).
    pub no_owner: bool,
    /// Where temporary files go.
    pub temp_dir: Option<PathBuf>,
}

/// What a database engine must provide to load dumps.
pub trait LoadEngine {
    /// Does `db` exist, and does it hold objects?
    fn state(&self, db: &str) -> Result<TargetState>;
    /// Create `db` like the dumped database `like` (encoding, collation, settings).
    fn create(&self, db: &str, like: &DatabaseInfo) -> Result<()>;
    /// Refuse options that have no meaning for this engine, before anything is changed.
    fn check_options(&self, opts: &LoadOptions) -> Result<()> {
        let _ = opts;
        Ok(())
    }
    /// Whether the loader can run parallel jobs from a file.
    fn parallel(&self) -> bool;
    /// Start the loader for `db`.
    fn loader(&self, db: &str, input: LoadInput<'_>, opts: &LoadOptions) -> Result<Process>;
    /// Start the loader of the globals entry.
    fn globals_loader(&self) -> Result<Process>;
    /// Judge how the globals loader ended, from its exit and stderr tail (some errors, like
    /// roles that already exist, are expected).
    fn globals_result(&self, ok: bool, f: Failure) -> Result<()>;
    /// Map a failed tool to an error of the right kind.
    fn classify(&self, f: Failure, db: &str) -> Error;
}

/// The database metadata of a snapshot, or a usage error.
pub fn database_source(m: &Manifest) -> Result<&DatabaseSource> {
    match &m.source {
        crate::format::snapshot::Source::Database(d) => Ok(d),
        _ => Err(
            Error::usage("this snapshot is not a database dump taken by `dbbackup snapshot DBNAME`")
                .with_hint(Hint::LoadByHand),
        ),
    }
}

/// Pick the database to restore: `name`, or the only one.
pub fn pick<'a>(src: &'a DatabaseSource, name: Option<&str>) -> Result<&'a DatabaseInfo> {
    match name {
        Some(n) => src
            .databases
            .iter()
            .find(|d| d.name == n)
            .ok_or_else(|| Error::not_found(format!("the snapshot holds no database `{n}`"))),
        None => match src.databases.as_slice() {
            [one] => Ok(one),
            many => Err(Error::usage(format!(
                "the snapshot holds {} databases ({})",
                many.len(),
                many.iter().map(|d| d.name.as_str()).collect::<Vec<_>>().join(", ")
            ))
            .with_hint(Hint::ChooseDatabase)),
        },
    }
}

fn entry<'a>(m: &'a Manifest, path: &str) -> Result<&'a Entry> {
    m.entries
        .iter()
        .find(|e| e.path == path)
        .ok_or_else(|| Error::corrupt(format!("snapshot manifest (entry `{path}`)"), "entry missing"))
}

/// Loads one database snapshot into a server.
pub struct Loader<'a> {
    /// The restore's session (repository and synced index).
    pub session: &'a Session<'a>,
    /// The snapshot.
    pub m: &'a Manifest,
    /// The server.
    pub engine: &'a dyn LoadEngine,
    /// Progress reporting.
    pub progress: &'a dyn Progress,
}

impl Loader<'_> {
    /// Refuse `opts` when the engine cannot honour them (call before loading anything).
    pub fn check(&self, opts: &LoadOptions) -> Result<()> {
        self.engine.check_options(opts)
    }

    /// Load the snapshot's globals entry; false when it has none.
    pub fn globals(&self) -> Result<bool> {
        load_globals(self.session, self.m, self.engine, self.progress)
    }

    /// Restore database `db` of the snapshot into database `target`.
    pub fn database(&self, db: &DatabaseInfo, target: &str, opts: &LoadOptions) -> Result<()> {
        load_database(self, db, target, opts)
    }
}

fn load_globals(session: &Session<'_>, m: &Manifest, engine: &dyn LoadEngine, progress: &dyn Progress) -> Result<bool> {
    let src = database_source(m)?;
    let Some(g) = &src.globals else {
        return Ok(false);
    };
    let e = entry(m, g)?;
    let p = engine.globals_loader()?;
    let (ok, f) = feed(session, e, p, progress)?;
    engine.globals_result(ok, f)?;
    Ok(true)
}

/// Stream `e` into a started loader's stdin; returns whether the loader succeeded and its
/// stderr tail. A loader that stops reading early is reported by its own failure, not as a
/// broken pipe.
fn feed(session: &Session<'_>, e: &Entry, mut p: Process, progress: &dyn Progress) -> Result<(bool, Failure)> {
    let mut stdin = p.take_stdin()?;
    let fed = restore_entry(session, e, &mut stdin, progress);
    drop(stdin);
    match fed {
        Ok(_) => p.finish(),
        Err(err) if err.kind() == ErrorKind::Corrupt => {
            p.kill();
            Err(err)
        }
        Err(err) => match p.finish()? {
            (true, _) => Err(err),
            (false, f) => Ok((false, f)),
        },
    }
}

/// Make sure `target` may be loaded into: create it (`opts.create`) when it is missing;
/// refuse one that holds objects unless `opts.force`.
fn prepare_target(engine: &dyn LoadEngine, db: &DatabaseInfo, target: &str, opts: &LoadOptions) -> Result<()> {
    match engine.state(target)? {
        TargetState::Missing if opts.create => engine.create(target, db),
        TargetState::Missing => Err(
            Error::not_found(format!("database `{target}` does not exist on the server"))
                .with_hint(Hint::CreateDatabase),
        ),
        TargetState::NonEmpty(n) if !opts.force => Err(Error::new(
            ErrorKind::CantCreate,
            format!("database `{target}` is not empty ({n} objects); refusing to restore into it"),
        )
        .with_hint(Hint::LoadIntoNonEmpty)),
        TargetState::Empty | TargetState::NonEmpty(_) => Ok(()),
    }
}

fn load_database(l: &Loader<'_>, db: &DatabaseInfo, target: &str, opts: &LoadOptions) -> Result<()> {
    let Loader {
        session,
        m,
        engine,
        progress,
    } = *l;
    let src = database_source(m)?;
    engine.check_options(opts)?;
    prepare_target(engine, db, target, opts)?;
    let fail = |f: Failure| {
        let mut e = engine.classify(f, target);
        if opts.create {
            e = Error::new(
                e.kind(),
                format!(
                    "{}\n(database `{target}` may be partly restored; drop it before retrying)",
                    e.message()
                ),
            );
        }
        e
    };
    if src.format == "directory" {
        let prefix = format!("{}/", db.path);
        let files: Vec<Entry> = m
            .entries
            .iter()
            .filter_map(|e| {
                let rest = e.path.strip_prefix(&prefix)?;
                Some(Entry {
                    path: rest.to_string(),
                    ..e.clone()
                })
            })
            .collect();
        let need = files.iter().map(|e| e.size).sum();
        let tmp = TempDumpDir::new(opts.temp_dir.as_deref(), need)?;
        let dir = tmp.path().join("dump");
        crate::util::create_dir_private(&dir).map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
        let sub = Manifest {
            entries: files,
            ..m.clone()
        };
        restore_snapshot(session, &sub, &Target::Path(dir.clone()), false, progress)?;
        let p = engine.loader(target, LoadInput::Dir(&dir), opts)?;
        return p.wait()?.map_err(fail);
    }
    let e = entry(m, &db.path)?;
    if opts.jobs > 1 && engine.parallel() {
        let tmp = TempDumpDir::new(opts.temp_dir.as_deref(), e.size)?;
        let file = tmp.path().join("dump");
        let one = Manifest {
            entries: vec![e.clone()],
            ..m.clone()
        };
        restore_snapshot(session, &one, &Target::Path(file.clone()), false, progress)?;
        let p = engine.loader(target, LoadInput::File(&file), opts)?;
        return p.wait()?.map_err(fail);
    }
    let p = engine.loader(target, LoadInput::Stdin, opts)?;
    progress.start("restore", Work::Bytes(Some(e.size)));
    let r = feed(session, e, p, progress);
    progress.finish();
    match r? {
        (true, _) => Ok(()),
        (false, f) => Err(fail(f)),
    }
}
