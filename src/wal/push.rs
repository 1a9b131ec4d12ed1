//! `wal push`: archive one WAL file. Success means the file's chunks, their index segment and
//! its catalog entry are durable. The same file again is a no-op; different bytes under an
//! archived name are refused; a file from another cluster is refused.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::catalog;
use super::names::{parse_segment_header, WalFile};
use super::DEFAULT_SEG_SIZE;
use crate::error::{Error, ErrorKind, Result};
use crate::format::wal::{ArchiveInfo, WalEntry};
use crate::format::FORMAT_VERSION;
use crate::index::IndexCache;
use crate::lock::LockGuard;
use crate::progress::Progress;
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

/// Name, size and SHA-256 of a local WAL file, and the cluster that wrote it when known.
struct Local {
    name: String,
    kind: WalFile,
    size: u64,
    sha256: String,
    system_id: Option<u64>,
    seg_size: u32,
}

fn open(path: &Path) -> Result<std::fs::File> {
    std::fs::File::open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::not_found(format!("WAL file {} does not exist", path.display()))
        } else {
            Error::io(format!("cannot open {}", path.display()), e)
        }
    })
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
    let mut f = open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    let mut first: Vec<u8> = Vec::new();
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
        if n == 0 {
            break;
        }
        if first.len() < 64 {
            first.extend_from_slice(&buf[..n.min(64 - first.len())]);
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    let (system_id, seg_size) = match kind {
        WalFile::Segment { .. } | WalFile::Partial { .. } => {
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
        name,
        kind,
        size,
        sha256: hex::encode(h.finalize()),
        system_id,
        seg_size,
    })
}

/// Check the file belongs to the archive's cluster; record the cluster at the first push.
fn check_cluster(repo: &Repository, local: &Local) -> Result<()> {
    let Some(sys) = local.system_id else {
        return Ok(()); // a history file pushed from outside a data directory
    };
    match catalog::archive_info(repo)? {
        Some(a) if a.system_id != sys.to_string() => Err(Error::config(format!(
            "this repository archives the WAL of cluster {}, but {} comes from cluster {sys}; \
             use a repository per cluster (after a new initdb or pg_upgrade, start a new one)",
            a.system_id, local.name
        ))),
        Some(_) => Ok(()),
        None => {
            catalog::save_archive_info(
                repo,
                &ArchiveInfo {
                    version: FORMAT_VERSION,
                    system_id: sys.to_string(),
                    wal_segment_size: local.seg_size,
                    created: jiff::Timestamp::now(),
                    hostname: crate::util::hostname(),
                },
            )?;
            Ok(())
        }
    }
}

/// Archive the WAL file at `path`. The caller holds `lock` (a [`super::PUSH_LOCK`] lock)
/// and synced `index` after taking it.
pub fn push(
    repo: &Repository,
    index: &IndexCache,
    lock: &LockGuard,
    path: &Path,
    opts: &PushOptions,
    progress: &dyn Progress,
) -> Result<Pushed> {
    let local = inspect(path)?;
    let existing = catalog::find(repo, &local.name)?;
    if !existing.is_empty() {
        if let Some((id, e)) = existing.iter().find(|(_, e)| e.data.sha256 != local.sha256) {
            return Err(Error::new(
                ErrorKind::CantCreate,
                format!(
                    "{} is already archived with different content (catalog entry {}, SHA-256 {}; this file: {}); \
                     dbbackup never overwrites an archived WAL file. Is a second cluster archiving into this repository?",
                    local.name,
                    id.short(),
                    e.data.sha256,
                    local.sha256
                ),
            ));
        }
        return Ok(Pushed::AlreadyArchived { file: local.name });
    }
    check_cluster(repo, &local)?;

    let mut so = SnapshotOptions::named("wal");
    so.verify = opts.verify;
    so.compression_level = opts.compression_level;
    let writer = SnapshotWriter::new(repo, index, so)?.with_lock(lock);
    progress.start(&local.name, Some(local.size));
    let entry = writer.add_stream(&local.name, open(path)?, progress)?;
    let (_, summary) = writer.finish_data()?;
    progress.finish();
    if entry.sha256 != local.sha256 || entry.size != local.size {
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
        bytes_new: summary.bytes_new,
        bytes_stored: summary.bytes_stored,
    };
    lock.ensure_fresh()?;
    catalog::save(repo, &e)?;
    Ok(Pushed::Stored {
        file: local.name,
        bytes: local.size,
        bytes_new: summary.bytes_new,
        bytes_stored: summary.bytes_stored,
    })
}
