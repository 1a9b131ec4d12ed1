//! File-by-file physical base backups through PostgreSQL's low-level backup API
//! (`snapshot --physical --mode full|incremental|differential --pgdata DIR`, repo-format
//! §8.4): `pg_backup_start` in a psql session, the data directory read file by file (what
//! pg_basebackup leaves out is left out), `pg_backup_stop` waiting for the WAL to be
//! archived. A file whose size and modification time equal the parent's record, and that was
//! last modified before the parent started, is recorded with the parent's chunks without
//! being read. The WAL from start to stop is taken from this repository's archive, so every
//! snapshot restores on its own.
//! Which files there are to back up is `pgdata_files`'s part.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, ChildStdout, Stdio};

use crate::error::{Error, ErrorKind, Hint, Result};
use crate::format::snapshot::{Entry, Manifest, PhysicalSource};
use crate::format::Id;
use crate::progress::{Progress, Work};
use crate::repo::session::Session;
use crate::repo::Repository;
use crate::snapshot::SnapshotWriter;
use crate::sources::pg_backup::{parse_label, server_info};
use crate::sources::postgres::PgConn;
use crate::wal::catalog;
use crate::wal::names::{segment_name, Lsn, WalFile};

pub use super::pgdata_files::{list_pgdata, FileList, FileMeta};

/// Entry holding the list of directories and files (JSON, [`FileList`]).
pub const FILE_LIST: &str = "pgdata.files";
/// Prefix of the entries holding the data directory's files.
pub const PREFIX: &str = "pgdata/";

/// How the files of a file-by-file backup are chosen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mode {
    /// Read every file.
    #[default]
    Full,
    /// Compare with the newest file-by-file snapshot of the same name and cluster.
    Incremental,
    /// Compare with the newest full one.
    Differential,
}

impl Mode {
    /// The name recorded in the manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Full => "full",
            Mode::Incremental => "incremental",
            Mode::Differential => "differential",
        }
    }
}

/// A psql session holding the backup open (the low-level API ends a backup whose session
/// ends).
struct BackupSession {
    child: std::process::Child,
    stdin: ChildStdin,
    out: BufReader<ChildStdout>,
}

impl BackupSession {
    fn open(conn: &PgConn) -> Result<BackupSession> {
        let mut cmd = conn.tool("psql");
        cmd.args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d", "postgres"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        super::process::isolate(&mut cmd);
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::io("cannot run psql", e).with_hint(Hint::ClientTools))?;
        let (Some(stdin), Some(out)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(Error::general("psql started without pipes"));
        };
        Ok(BackupSession {
            child,
            stdin,
            out: BufReader::new(out),
        })
    }

    /// Run one query returning one row; its `|`-separated fields.
    fn row(&mut self, sql: &str) -> Result<Vec<String>> {
        writeln!(self.stdin, "{sql};")
            .and_then(|_| self.stdin.flush())
            .map_err(|e| Error::io("the psql session ended", e))?;
        let mut line = String::new();
        let n = self
            .out
            .read_line(&mut line)
            .map_err(|e| Error::io("cannot read from psql", e))?;
        if n == 0 {
            return Err(Error::new(
                ErrorKind::Temporary,
                format!("the server ended the backup session during `{sql}` (see psql's message above)"),
            ));
        }
        Ok(line.trim_end_matches('\n').split('|').map(str::to_string).collect())
    }
}

impl Drop for BackupSession {
    fn drop(&mut self) {
        // Closing the session aborts a backup still in progress.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The file list of file-by-file snapshot `m`.
fn read_file_list(session: &Session<'_>, m: &Manifest) -> Result<FileList> {
    let list_entry = m
        .entries
        .iter()
        .find(|e| e.path == FILE_LIST)
        .ok_or_else(|| Error::corrupt("snapshot", "file-by-file snapshot without its file list"))?;
    let mut raw = Vec::new();
    crate::restore::restore_entry(session, list_entry, &mut raw, &crate::progress::NoProgress)?;
    serde_json::from_slice(&raw).map_err(|e| Error::corrupt(FILE_LIST, format!("unreadable file list: {e}")))
}

/// The parent's files that may be reused: path -> (its record, its entry).
fn parent_files(session: &Session<'_>, parent: &Manifest) -> Result<HashMap<String, (FileMeta, Entry)>> {
    let list = read_file_list(session, parent)?;
    let mut entries: HashMap<&str, &Entry> = HashMap::new();
    for e in &parent.entries {
        if let Some(p) = e.path.strip_prefix(PREFIX) {
            entries.insert(p, e);
        }
    }
    Ok(list
        .files
        .into_iter()
        .filter_map(|f| {
            let e = (*entries.get(f.path.as_str())?).clone();
            Some((f.path.clone(), (f, e)))
        })
        .collect())
}

/// What a file-by-file backup did, beside its source record.
#[derive(Debug, Clone, Default)]
pub struct FilesReport {
    /// The mode taken: `Full` when an incremental or differential one had no parent.
    pub mode: Mode,
    /// Files read.
    pub files_read: u64,
    /// Files recorded from the parent without reading.
    pub files_reused: u64,
    /// Bytes of those.
    pub bytes_reused: u64,
}

/// Back up the cluster `conn` reaches, whose data directory is `pgdata`, file by file into
/// `w` as snapshot source `name`. An incremental or differential backup compares with the
/// parent [`choose_parent`] finds; with none, it reads everything and reports `Full`.
pub fn files_backup(
    w: &SnapshotWriter,
    conn: &PgConn,
    pgdata: &Path,
    name: &str,
    requested: Mode,
    progress: &dyn Progress,
) -> Result<(PhysicalSource, FilesReport)> {
    let session = w.session();
    let (server_version, system_id, wal_segment_size) = server_info(conn)?;
    check_system_id(pgdata, &system_id)?;
    let parent = choose_parent(session.repo(), name, &system_id, requested)?;
    let mode = if parent.is_some() { requested } else { Mode::Full };
    let parent_map = match &parent {
        Some((_, m, _)) => parent_files(session, m)?,
        None => HashMap::new(),
    };

    let mut psql = BackupSession::open(conn)?;
    let started = jiff::Timestamp::now();
    psql.row("select pg_backup_start('dbbackup', true)")?;
    let list = list_pgdata(pgdata)?;
    // Files modified less than a second before the parent started may have changed again
    // within the same timestamp: those are read.
    let cutoff = parent
        .as_ref()
        .map(|(_, _, p)| p.started.as_nanosecond() as i64 - 1_000_000_000);
    let mut report = read_files(w, pgdata, &list, &parent_map, cutoff, progress)?;
    report.mode = mode;
    let (stop_lsn, label_text) = stop_backup(psql)?;
    let finished = jiff::Timestamp::now();
    let l = parse_label(&label_text)?;
    w.add_stream(&format!("{PREFIX}backup_label"), label_text.as_bytes(), progress)?;
    let first = WalFile::parse(&l.start_wal)?
        .segno(wal_segment_size)
        .ok_or_else(|| Error::general("the backup label names no start segment"))?;
    let last = stop_lsn.0.saturating_sub(1).max(l.start_lsn.0) / u64::from(wal_segment_size.max(1));
    for segno in first..=last {
        add_wal_segment(w, &segment_name(l.timeline, segno, wal_segment_size), progress)?;
    }
    let json = serde_json::to_vec(&list).map_err(|e| Error::general(format!("cannot encode the file list: {e}")))?;
    w.add_stream(FILE_LIST, json.as_slice(), progress)?;

    Ok((
        PhysicalSource {
            engine: "postgresql".into(),
            server_version,
            host: None,
            port: None,
            user: None,
            tool: "psql: pg_backup_start/pg_backup_stop".into(),
            system_id,
            timeline: l.timeline,
            start_lsn: l.start_lsn,
            stop_lsn,
            start_wal: l.start_wal,
            wal_segment_size,
            wal_included: true,
            started,
            finished,
            backup_label: label_text,
            mode: Some(mode.as_str().into()),
            parent: parent.map(|(id, _, _)| id),
        },
        report,
    ))
}

/// Refuse a `pgdata` whose pg_control names another cluster than `system_id`.
fn check_system_id(pgdata: &Path, system_id: &str) -> Result<()> {
    let mut ctl = [0u8; 8];
    std::fs::File::open(pgdata.join("global/pg_control"))
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut ctl))
        .map_err(|e| Error::io(format!("cannot read {}/global/pg_control", pgdata.display()), e))?;
    if u64::from_le_bytes(ctl).to_string() != system_id {
        return Err(Error::usage(format!(
            "{} is not the data directory of the server connected to (system identifier {system_id})",
            pgdata.display()
        )));
    }
    Ok(())
}

/// Read the listed files into `w`, or record the parent's entry for a file unchanged since
/// before `cutoff` (nanoseconds).
fn read_files(
    w: &SnapshotWriter,
    pgdata: &Path,
    list: &FileList,
    parent_map: &HashMap<String, (FileMeta, Entry)>,
    cutoff: Option<i64>,
    progress: &dyn Progress,
) -> Result<FilesReport> {
    let mut report = FilesReport::default();
    for f in &list.files {
        let path = format!("{PREFIX}{}", f.path);
        if let (Some((pf, pe)), Some(cut)) = (parent_map.get(&f.path), cutoff) {
            if pf == f && f.mtime_ns < cut && w.reusable(pe)? {
                let mut e = pe.clone();
                e.path = path;
                report.files_reused += 1;
                report.bytes_reused += e.size;
                progress.advance(e.size);
                w.add_existing(e)?;
                continue;
            }
        }
        let file = match std::fs::File::open(pgdata.join(&f.path)) {
            Ok(file) => file,
            // Dropped since it was listed: replay recreates or removes it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(format!("cannot open {}/{}", pgdata.display(), f.path), e)),
        };
        w.add_stream(&path, file, progress)?;
        report.files_read += 1;
    }
    Ok(report)
}

/// End the backup: its stop LSN and backup label. Ends the psql session.
fn stop_backup(mut psql: BackupSession) -> Result<(Lsn, String)> {
    let stop = psql.row(
        "select lsn, encode(convert_to(labelfile, 'UTF8'), 'hex'), \
         encode(convert_to(coalesce(spcmapfile, ''), 'UTF8'), 'hex') from pg_backup_stop(true)",
    )?;
    drop(psql);
    let [lsn, label_hex, map_hex] = stop.as_slice() else {
        return Err(Error::general(format!("pg_backup_stop returned {stop:?}")));
    };
    let stop_lsn: Lsn = lsn.parse()?;
    let label_text = hex::decode(label_hex)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| Error::general("pg_backup_stop returned an unreadable backup label"))?;
    if !map_hex.is_empty() {
        return Err(Error::usage(
            "the cluster has tablespaces, which file-by-file backups do not support yet",
        ));
    }
    Ok((stop_lsn, label_text))
}

/// Add WAL segment `name` from this repository's archive: the same chunks, referenced again.
fn add_wal_segment(w: &SnapshotWriter, name: &str, progress: &dyn Progress) -> Result<()> {
    let session = w.session();
    let (repo, index) = (session.repo(), session.index());
    let found = catalog::find(repo, name)?;
    let Some((_, e)) = found.into_iter().next() else {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!(
                "{name}, needed to make this backup consistent, is not archived in this repository; \
                 file-by-file backups need archive_command = 'dbbackup wal push %p' into the same repository. \
                 Nothing was recorded"
            ),
        ));
    };
    let mut d = e.data;
    d.path = format!("{PREFIX}pg_wal/{name}");
    // Segments archived while this snapshot ran are not in its index yet: sync once.
    let mut reusable = w.reusable(&d)?;
    if !reusable {
        index.sync(repo)?;
        reusable = w.reusable(&d)?;
    }
    if reusable {
        return w.add_existing(d);
    }
    // A prune is moving its chunks: store the segment again, read from the archive.
    let mut tmp = tempfile::tempfile().map_err(|er| Error::io("cannot create a temporary file", er))?;
    crate::restore::restore_entry(session, &d, &mut tmp, &crate::progress::NoProgress)?;
    std::io::Seek::rewind(&mut tmp).map_err(|er| Error::io("cannot read a temporary file", er))?;
    w.add_stream(&d.path, tmp, progress).map(|_| ())
}

/// The snapshot an incremental (newest file-by-file one) or differential (newest full one)
/// backup of `name` on cluster `system_id` compares with.
pub fn choose_parent(
    repo: &Repository,
    name: &str,
    system_id: &str,
    mode: Mode,
) -> Result<Option<(Id, Manifest, PhysicalSource)>> {
    if mode == Mode::Full {
        return Ok(None);
    }
    let all = crate::wal::pitr::physical_snapshots(repo)?;
    Ok(all.into_iter().rev().find(|(_, m, p)| {
        m.name == name
            && p.system_id == system_id
            && match (mode, p.mode.as_deref()) {
                (Mode::Differential, Some(x)) => x == "full",
                (_, Some(_)) => true,
                (_, None) => false,
            }
    }))
}

/// Restore a file-by-file snapshot into `dir` (prepared): directories, then every file,
/// verified, in parallel.
pub fn restore_files(session: &Session<'_>, m: &Manifest, dir: &Path, progress: &dyn Progress) -> Result<u64> {
    use rayon::prelude::*;
    let list = read_file_list(session, m)?;
    let safe = |rel: &str| -> Result<PathBuf> {
        let p = Path::new(rel);
        if p.is_absolute() || p.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
            return Err(Error::corrupt(
                "snapshot",
                format!("unsafe path `{rel}` in a physical snapshot"),
            ));
        }
        Ok(dir.join(p))
    };
    for d in &list.dirs {
        let p = safe(d)?;
        crate::util::create_dir_private(&p).map_err(|e| Error::io(format!("cannot create {}", p.display()), e))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(format!("cannot set the mode of {}", p.display()), e))?;
    }
    let total: u64 = m
        .entries
        .iter()
        .filter(|e| e.path.starts_with(PREFIX))
        .map(|e| e.size)
        .sum();
    progress.start("restore", Work::Bytes(Some(total)));
    let r: Result<Vec<u64>> = m
        .entries
        .par_iter()
        .filter_map(|e| e.path.strip_prefix(PREFIX).map(|rel| (e, rel)))
        .map(|(e, rel)| {
            let dest = safe(rel)?;
            crate::restore::restore_file(session, e, &dest, true, progress)
        })
        .collect();
    progress.finish();
    Ok(r?.iter().sum())
}
