//! `wal push`: archive one WAL file. Success means the file's chunks, their index segment and
//! its catalog entry are durable. The same file again is a no-op; different bytes under an
//! archived name are refused; a file from another cluster is refused.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use rayon::prelude::*;

use sha2::{Digest, Sha256};

use super::archive::Admission;
use super::catalog;
use super::names::{parse_segment_header, WalFile};
use super::spool::{open_wal_file, read_blocks, FileHash};
use super::DEFAULT_SEG_SIZE;
use crate::error::{Error, ErrorKind, Result};
use crate::format::wal::WalEntry;
use crate::format::FORMAT_VERSION;
use crate::progress::{Progress, Work};
use crate::repo::session::Session;
use crate::repo::Repository;
use crate::snapshot::{SnapshotOptions, SnapshotWriter};

/// How to push.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Read new packs back and verify them before recording the file.
    pub verify: bool,
    /// zstd level; the repository default when `None`.
    pub compression_level: Option<i32>,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            verify: true,
            compression_level: None,
        }
    }
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Pushed {
    /// The file was stored.
    Stored {
        /// Its name.
        file: String,
        /// Its size.
        bytes: u64,
        /// Plaintext bytes of chunks new to the repository.
        bytes_new: u64,
        /// Bytes they took in packs.
        bytes_stored: u64,
    },
    /// The archive already held these exact bytes under this name.
    AlreadyArchived {
        /// Its name.
        file: String,
    },
}

impl Pushed {
    /// The file's name.
    pub fn file(&self) -> &str {
        match self {
            Pushed::Stored { file, .. } | Pushed::AlreadyArchived { file } => file,
        }
    }
}

/// Name, size and cluster of a local WAL file, read from its metadata and header.
struct Local {
    path: PathBuf,
    name: String,
    kind: WalFile,
    size: u64,
    modified: Option<std::time::SystemTime>,
    system_id: Option<u64>,
    seg_size: u32,
}

/// What a push did with one file, and the file's content hash for a spool marker.
#[derive(Debug, Clone)]
pub struct Done {
    /// The outcome.
    pub pushed: Pushed,
    /// Size and BLAKE3 of the bytes archived.
    pub hash: FileHash,
}

/// The data directory a `%p` path lies in (`pg_wal/X` relative to it, or absolute).
fn data_dir(path: &Path) -> PathBuf {
    match path.parent().and_then(Path::parent) {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// System identifier from `global/pg_control` (its first 8 bytes), for files without a
/// segment header.
fn control_system_id(data_dir: &Path) -> Option<u64> {
    let mut b = [0u8; 8];
    let mut f = std::fs::File::open(data_dir.join("global/pg_control")).ok()?;
    f.read_exact(&mut b).ok()?;
    Some(u64::from_le_bytes(b))
}

fn inspect(path: &Path) -> Result<Local> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::usage(format!("{} has no file name", path.display())))?
        .to_string();
    let kind = WalFile::parse(&name)?;
    let mut f = open_wal_file(path)?;
    let md = f
        .metadata()
        .map_err(|e| Error::io(format!("cannot stat {}", path.display()), e))?;
    let size = md.len();
    let (system_id, seg_size) = match kind {
        WalFile::Segment { .. } | WalFile::Partial { .. } => {
            let mut first = Vec::with_capacity(64);
            (&mut f)
                .take(64)
                .read_to_end(&mut first)
                .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
            let hd = parse_segment_header(&first).map_err(|e| Error::usage(format!("{}: {e}", path.display())))?;
            if matches!(kind, WalFile::Segment { .. }) && size != u64::from(hd.seg_size) {
                return Err(Error::usage(format!(
                    "{} has {size} bytes, but its header says segments have {}",
                    path.display(),
                    hd.seg_size
                )));
            }
            (Some(hd.system_id), hd.seg_size)
        }
        _ => (control_system_id(&data_dir(path)), DEFAULT_SEG_SIZE),
    };
    Ok(Local {
        path: path.to_path_buf(),
        name,
        kind,
        size,
        modified: md.modified().ok(),
        system_id,
        seg_size,
    })
}

/// SHA-256 and BLAKE3 of a file in one read.
fn hash_both(path: &Path) -> Result<(String, FileHash)> {
    let mut sha = Sha256::new();
    let mut b3 = blake3::Hasher::new();
    let size = read_blocks(path, |b| {
        sha.update(b);
        b3.update(b);
    })?;
    Ok((
        hex::encode(sha.finalize()),
        FileHash {
            size,
            blake3: b3.finalize(),
        },
    ))
}

/// A reader that hashes what passes through it (the marker's BLAKE3).
struct Hashing<R> {
    inner: R,
    h: blake3::Hasher,
    size: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.h.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

/// Check the file belongs to the archive's cluster (a history file pushed from outside a
/// data directory has none to check); the first push into an empty archive records it.
fn admit(repo: &Repository, admission: &mut Admission, local: &Local) -> Result<()> {
    match local.system_id {
        Some(sys) => admission.admit(repo, &local.name, sys, local.seg_size),
        None => Ok(()),
    }
}

/// Is the file already archived? Compares the content with every catalog entry of its name:
/// the same bytes are done, different bytes are refused.
fn already_archived(repo: &Repository, local: &Local) -> Result<Option<Done>> {
    let existing = catalog::find(repo, &local.name)?;
    if existing.is_empty() {
        return Ok(None);
    }
    let (sha256, hash) = hash_both(&local.path)?;
    if let Some((id, e)) = existing.iter().find(|(_, e)| e.data.sha256 != sha256) {
        return Err(Error::new(
            ErrorKind::CantCreate,
            format!(
                "{} is already archived with different content (catalog entry {}, SHA-256 {}; this file: {sha256}); \
                 dbbackup never overwrites an archived WAL file. Is a second cluster archiving into this repository?",
                local.name,
                id.short(),
                e.data.sha256,
            ),
        ));
    }
    Ok(Some(Done {
        pushed: Pushed::AlreadyArchived {
            file: local.name.clone(),
        },
        hash,
    }))
}

/// Archive the WAL file at `path` in `session` (a [`crate::repo::lock::Operation::WalPush`]
/// session).
pub fn push(session: &Session<'_>, path: &Path, opts: &PushOptions, progress: &dyn Progress) -> Result<Pushed> {
    let mut r = push_many(session, &[path.to_path_buf()], opts, progress)?;
    r.pop()
        .ok_or_else(|| Error::general("push returned no result"))?
        .map(|d| d.pushed)
}

/// Streams stored at once by [`push_many`].
const PARALLEL_FILES: usize = 2;

/// Archive several WAL files in one run: their new chunks share packs and one index segment,
/// and up to `PARALLEL_FILES` are read at once. Returns one result per path, in order: a
/// file's own problem (refused, unreadable, changed) fails only that file. An error that
/// leaves nothing recorded for any of them (storage failing, the lock lost) is the `Err`.
/// `session` must be a [`crate::repo::lock::Operation::WalPush`] session.
pub fn push_many(
    session: &Session<'_>,
    paths: &[PathBuf],
    opts: &PushOptions,
    progress: &dyn Progress,
) -> Result<Vec<Result<Done>>> {
    let repo = session.repo();
    // Catalog lookups are storage round trips: in parallel.
    let looked: Vec<Result<(Local, Option<Done>)>> = paths
        .par_iter()
        .map(|p| {
            let local = inspect(p)?;
            let done = already_archived(repo, &local)?;
            Ok((local, done))
        })
        .collect();
    let mut admission = Admission::read(repo)?;
    let mut out: Vec<Option<Result<Done>>> = Vec::with_capacity(paths.len());
    let mut todo: Vec<(usize, Local)> = Vec::new();
    for (i, r) in looked.into_iter().enumerate() {
        match r {
            Ok((_, Some(done))) => out.push(Some(Ok(done))),
            Ok((local, None)) => match admit(repo, &mut admission, &local) {
                Ok(()) => {
                    out.push(None);
                    todo.push((i, local));
                }
                Err(e) => out.push(Some(Err(e))),
            },
            Err(e) => out.push(Some(Err(e))),
        }
    }
    if !todo.is_empty() {
        for (i, r) in store_new(session, &todo, opts, progress)? {
            out[i] = Some(r);
        }
    }
    out.into_iter()
        .map(|r| r.ok_or_else(|| Error::general("push lost a file's result")))
        .collect()
}

/// A file's catalog entry to save, and its hash for a spool marker; or why it failed.
type Stored = Result<(WalEntry, FileHash)>;

/// Store one file through `writer`; its catalog entry and hash. Fails when the file changed
/// while it was read.
fn store_one(writer: &SnapshotWriter, local: &Local, progress: &dyn Progress) -> Stored {
    let mut src = Hashing {
        inner: open_wal_file(&local.path)?,
        h: blake3::Hasher::new(),
        size: 0,
    };
    let (entry, counts) = writer.add_stream_counted(&local.name, &mut src, progress)?;
    let hash = FileHash {
        size: src.size,
        blake3: src.h.finalize(),
    };
    let now = std::fs::metadata(&local.path).ok();
    if entry.size != local.size
        || now.as_ref().map(|m| m.len()) != Some(local.size)
        || now.and_then(|m| m.modified().ok()) != local.modified
    {
        return Err(Error::new(
            ErrorKind::Temporary,
            format!(
                "{} changed while it was being archived; nothing was recorded",
                local.name
            ),
        ));
    }
    let e = WalEntry {
        version: FORMAT_VERSION,
        file: local.name.clone(),
        system_id: local.system_id.map(|s| s.to_string()).unwrap_or_default(),
        timeline: local.kind.timeline(),
        time: jiff::Timestamp::now(),
        hostname: crate::util::hostname(),
        data: entry,
        bytes_new: counts.bytes_new,
        bytes_stored: counts.bytes_stored,
    };
    Ok((e, hash))
}

/// Store the files of `todo` (index in the caller's list, file) and record them.
fn store_new(
    session: &Session<'_>,
    todo: &[(usize, Local)],
    opts: &PushOptions,
    progress: &dyn Progress,
) -> Result<Vec<(usize, Result<Done>)>> {
    let repo = session.repo();
    let mut so = SnapshotOptions::named("wal");
    so.verify = opts.verify;
    so.compression_level = opts.compression_level;
    let writer = SnapshotWriter::new(session, so)?;
    let total: u64 = todo.iter().map(|(_, l)| l.size).sum();
    progress.start(
        todo.first().map(|(_, l)| l.name.as_str()).unwrap_or("WAL"),
        Work::Bytes(Some(total)),
    );
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Stored)>> = Mutex::default();
    std::thread::scope(|s| {
        for _ in 0..PARALLEL_FILES.min(todo.len()) {
            s.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::SeqCst);
                let Some((i, local)) = todo.get(k) else { return };
                let r = store_one(&writer, local, progress);
                if let Ok(mut v) = results.lock() {
                    v.push((*i, r));
                }
            });
        }
    });
    let results = crate::util::into_inner_or_fail(results, "push state")?;
    // Every stream's chunks durable and indexed before any file is recorded.
    writer.finish_data()?;
    progress.finish();
    session.writer_lock()?.ensure_fresh()?;
    Ok(results
        .into_par_iter()
        .map(|(i, r)| {
            let r = r.and_then(|(e, hash)| {
                catalog::save(repo, &e)?;
                Ok(Done {
                    pushed: Pushed::Stored {
                        file: e.file.clone(),
                        bytes: e.data.size,
                        bytes_new: e.bytes_new,
                        bytes_stored: e.bytes_stored,
                    },
                    hash,
                })
            });
            (i, r)
        })
        .collect())
}
