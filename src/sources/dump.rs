//! Dumping databases into a snapshot, for any engine: one database or all of them (several
//! at once with `jobs`), the server's globals as an extra entry, pg_dump's directory format
//! through a checked temporary directory, failures classified and, when asked, tolerated.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::names::entry_path;
use super::process::{Failure, Process};
use crate::error::{Error, ErrorKind, Hint, Result};
use crate::format::snapshot::{DatabaseInfo, DatabaseSource, FailedDatabase};
use crate::progress::{Progress, Work};
use crate::snapshot::SnapshotWriter;

/// Entry path of the server's global objects.
pub const GLOBALS_ENTRY: &str = "globals.sql";

/// What a database engine must provide to be dumped.
pub trait DumpEngine: Sync {
    /// `postgresql`, `mysql`, `mariadb`.
    fn engine(&self) -> String;
    /// The server's version, asked through database `db`.
    fn server_version(&self, db: &str) -> Result<String>;
    /// The dump tool's name and version.
    fn dump_tool(&self) -> Result<String>;
    /// One database as the server describes it (its `path` left empty; the dump sets it); a
    /// `NotFound` error when it does not exist.
    fn database(&self, name: &str) -> Result<DatabaseInfo>;
    /// Every database worth dumping (no templates or system schemas), paths left empty.
    fn databases(&self) -> Result<Vec<DatabaseInfo>>;
    /// What the operator should know about dumping `dbs` (e.g. tables a consistent snapshot
    /// does not cover).
    fn warnings(&self, dbs: &[DatabaseInfo]) -> Result<Vec<String>> {
        let _ = dbs;
        Ok(Vec::new())
    }
    /// Start a dump of `db` to stdout.
    fn dump(&self, db: &DatabaseInfo) -> Result<Process>;
    /// Whether the engine has a parallel directory dump format.
    fn directory_format(&self) -> bool {
        false
    }
    /// Start a parallel dump of `db` into directory `dir` (not every engine has one).
    fn dump_to_dir(&self, db: &DatabaseInfo, dir: &Path, jobs: usize) -> Result<Process> {
        let _ = (db, dir, jobs);
        Err(Error::usage(format!("{} has no directory dump format", self.engine())))
    }
    /// Start a dump of the server's global objects to stdout, connecting through `db`;
    /// `None` when the engine has none to dump. Pushes what the operator should know.
    fn globals(&self, db: &str, warnings: &mut Vec<String>) -> Result<Option<Process>>;
    /// Map a failed tool to an error of the right kind.
    fn classify(&self, f: Failure, db: &str) -> Error;
    /// File extension of a single-file dump.
    fn format_ext(&self) -> &'static str;
    /// Name of the single-file format.
    fn format_name(&self) -> &'static str;
    /// Database every server has, to connect to for cluster-wide questions.
    fn maintenance_db(&self) -> &'static str;
}

/// Which databases to dump.
#[derive(Debug, Clone)]
pub enum Selection {
    /// One, by name.
    One(String),
    /// All but templates and system schemas.
    All,
}

/// How to dump.
#[derive(Debug, Clone)]
pub struct DumpOptions {
    /// Which databases.
    pub selection: Selection,
    /// Databases dumped at once (with `All`), or pg_dump's `-j` (with `directory`).
    pub jobs: usize,
    /// pg_dump directory format through a temporary directory.
    pub directory: bool,
    /// Where that temporary directory goes (the system's temp dir when unset).
    pub temp_dir: Option<PathBuf>,
    /// Record failed databases and keep the others instead of failing the snapshot.
    pub continue_on_error: bool,
    /// Dump the server's globals as a second entry.
    pub globals: bool,
    /// Connection settings to record.
    pub host: Option<String>,
    /// Port to record.
    pub port: Option<u16>,
    /// User to record.
    pub user: Option<String>,
}

/// Dump the selected databases of `engine` into `w`. Returns what to record as the snapshot's
/// source; an error when anything failed (unless `continue_on_error` and something succeeded).
pub fn dump_databases(
    w: &SnapshotWriter,
    engine: &dyn DumpEngine,
    opts: &DumpOptions,
    progress: &dyn Progress,
) -> Result<DatabaseSource> {
    if opts.directory && !engine.directory_format() {
        return Err(Error::usage(format!(
            "the directory format is pg_dump's; {} dumps are streamed",
            engine.engine()
        ))
        .with_hint(Hint::ParallelDumps));
    }
    let (dbs, via) = match &opts.selection {
        Selection::One(name) => (vec![engine.database(name)?], name.clone()),
        Selection::All => (engine.databases()?, engine.maintenance_db().to_string()),
    };
    if dbs.is_empty() {
        return Err(Error::not_found("the server has no databases to dump"));
    }
    let server_version = engine.server_version(&via)?;
    let dump_tool = engine.dump_tool()?;
    // The databases' sizes on the server are no total: a dump is often a third of them.
    progress.start("snapshot", Work::Bytes(None));
    let mut warnings = engine.warnings(&dbs)?;
    let mut failed = Vec::new();
    let mut globals = None;
    if opts.globals {
        match dump_globals(w, engine, &via, &mut warnings, progress) {
            Ok(g) => globals = g,
            Err(e) if opts.continue_on_error => failed.push(FailedDatabase {
                name: "(globals)".into(),
                error: e.to_string(),
            }),
            Err(e) => return Err(e),
        }
    }
    let results = dump_each(w, engine, &dbs, opts, progress)?;
    progress.finish();
    let mut databases = Vec::new();
    let mut first_err = None;
    for (name, r) in results {
        match r {
            Ok(info) => databases.push(info),
            Err(e) => {
                failed.push(FailedDatabase {
                    name: name.clone(),
                    error: e.to_string(),
                });
                first_err.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_err {
        if !opts.continue_on_error || databases.is_empty() {
            return Err(e);
        }
    }
    databases.sort_by(|a, b| a.name.cmp(&b.name));
    failed.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(DatabaseSource {
        engine: engine.engine(),
        server_version,
        host: opts.host.clone(),
        port: opts.port,
        user: opts.user.clone(),
        dump_tool,
        format: if opts.directory {
            "directory".into()
        } else {
            engine.format_name().into()
        },
        all: matches!(opts.selection, Selection::All),
        databases,
        globals,
        failed,
        warnings,
    })
}

/// Dump `dbs`, `opts.jobs` at once with `All`; after a failure the others not yet started
/// are skipped unless `continue_on_error`. Each database's name and result, in finishing order.
fn dump_each(
    w: &SnapshotWriter,
    engine: &dyn DumpEngine,
    dbs: &[DatabaseInfo],
    opts: &DumpOptions,
    progress: &dyn Progress,
) -> Result<Vec<(String, Result<DatabaseInfo>)>> {
    let queue = Mutex::new(dbs.iter());
    let stop = AtomicBool::new(false);
    let results: Mutex<Vec<(String, Result<DatabaseInfo>)>> = Mutex::default();
    let threads = match opts.selection {
        Selection::All => opts.jobs.clamp(1, dbs.len()),
        Selection::One(_) => 1,
    };
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Some(db) = queue.lock().ok().and_then(|mut q| q.next()) else {
                    return;
                };
                tracing::info!(database = %db.name, "dumping");
                let r = dump_one(w, engine, db, opts, progress);
                if let Err(e) = &r {
                    tracing::warn!(database = %db.name, "dump failed: {e}");
                    if !opts.continue_on_error {
                        stop.store(true, Ordering::SeqCst);
                    }
                }
                if let Ok(mut v) = results.lock() {
                    v.push((db.name.clone(), r));
                }
            });
        }
    });
    crate::util::into_inner_or_fail(results, "the dump results")
}

/// Stream a started tool's stdout into entry `path`, then check how it ended. On any failure
/// the entry is dropped from the snapshot.
fn stream_tool(
    w: &SnapshotWriter,
    engine: &dyn DumpEngine,
    mut p: Process,
    path: &str,
    db: &str,
    progress: &dyn Progress,
) -> Result<()> {
    let out = p.take_stdout()?;
    if let Err(e) = w.add_stream(path, out, progress) {
        p.kill();
        w.discard_entries(|e| e == path);
        return Err(e);
    }
    if let Err(f) = p.wait()? {
        w.discard_entries(|e| e == path);
        return Err(engine.classify(f, db));
    }
    Ok(())
}

fn dump_globals(
    w: &SnapshotWriter,
    engine: &dyn DumpEngine,
    via: &str,
    warnings: &mut Vec<String>,
    progress: &dyn Progress,
) -> Result<Option<String>> {
    let Some(p) = engine.globals(via, warnings)? else {
        return Ok(None);
    };
    stream_tool(w, engine, p, GLOBALS_ENTRY, via, progress)?;
    Ok(Some(GLOBALS_ENTRY.to_string()))
}

fn dump_one(
    w: &SnapshotWriter,
    engine: &dyn DumpEngine,
    db: &DatabaseInfo,
    opts: &DumpOptions,
    progress: &dyn Progress,
) -> Result<DatabaseInfo> {
    if !opts.directory {
        let path = entry_path(&db.name, engine.format_ext());
        let p = engine.dump(db)?;
        stream_tool(w, engine, p, &path, &db.name, progress)?;
        return Ok(DatabaseInfo { path, ..db.clone() });
    }
    let info = DatabaseInfo {
        path: entry_path(&db.name, ""),
        ..db.clone()
    };
    let prefix = &info.path;
    let tmp = TempDumpDir::new(opts.temp_dir.as_deref(), db.size)?;
    let out = tmp.path().join("dump");
    let p = engine.dump_to_dir(db, &out, opts.jobs)?;
    if let Err(f) = p.wait()? {
        return Err(engine.classify(f, &db.name));
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&out)
        .map_err(|e| Error::io(format!("cannot list {}", out.display()), e))?
        .map(|d| d.map(|d| d.path()))
        .collect::<std::io::Result<_>>()
        .map_err(|e| Error::io(format!("cannot list {}", out.display()), e))?;
    files.sort();
    for f in &files {
        let name = f
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::general(format!("unexpected file name {}", f.display())))?;
        let r = std::fs::File::open(f)
            .map_err(|e| Error::io(format!("cannot open {}", f.display()), e))
            .and_then(|file| w.add_stream(&format!("{prefix}/{name}"), file, progress));
        if let Err(e) = r {
            w.discard_entries(|e| info.holds(e));
            return Err(e);
        }
    }
    Ok(info)
}

/// A private temporary directory for a directory-format dump: its free space and write
/// access checked first, removed when dropped and when the user interrupts.
pub struct TempDumpDir {
    dir: tempfile::TempDir,
    _cleanup: crate::interrupt::Registration,
}

impl TempDumpDir {
    /// Create one under `parent` (the system temp dir when `None`) with room for about `need`
    /// bytes.
    pub fn new(parent: Option<&Path>, need: u64) -> Result<TempDumpDir> {
        let parent = parent.map(Path::to_path_buf).unwrap_or_else(std::env::temp_dir);
        let dir = tempfile::Builder::new()
            .prefix("dbbackup-dump-")
            .tempdir_in(&parent)
            .map_err(|e| {
                Error::io(
                    format!("cannot create a temporary directory in {}", parent.display()),
                    e,
                )
                .with_hint(Hint::TempDir)
            })?;
        let free = free_space(dir.path())?;
        if free < need {
            return Err(Error::new(
                ErrorKind::Io,
                format!(
                    "{} has {} free but the dump needs about {}",
                    parent.display(),
                    crate::util::human_bytes(free),
                    crate::util::human_bytes(need)
                ),
            ));
        }
        let path = dir.path().to_path_buf();
        let cleanup = crate::interrupt::on_interrupt(move || {
            let _ = std::fs::remove_dir_all(&path);
        });
        Ok(TempDumpDir { dir, _cleanup: cleanup })
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Bytes available to this user on the file system holding `p`.
pub fn free_space(p: &Path) -> Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes())
        .map_err(|_| Error::usage(format!("bad path {}", p.display())))?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a valid out-pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(Error::io(
            format!("cannot stat {}", p.display()),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}
