//! The local WAL spool for pushing ahead. After `wal push` has stored its own file it stores
//! the next `.ready` files of `archive_status/` in the same run, and leaves a marker
//! `<name>.ok` here for each once it is durable. When PostgreSQL then asks for one of them, a
//! marker that matches the file's size and BLAKE3 answers at once, without unlocking the
//! repository. The spool is keyed by the repository id, so a marker never vouches for another
//! repository. Markers are hints: a missing, stale or unreadable one costs a normal push.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::names::WalFile;
use crate::error::{Error, Result};
use crate::format::Id;

const MAGIC: &str = "dbbackup wal marker v1";
const SUFFIX: &str = ".ok";

/// Markers of the files pushed ahead into one repository.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
}

/// Size and BLAKE3 of a WAL file's bytes: what a marker records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHash {
    /// Length in bytes.
    pub size: u64,
    /// Unkeyed BLAKE3 of the content.
    pub blake3: blake3::Hash,
}

/// Open a local WAL file; a missing one is a `NotFound` error.
pub(crate) fn open_wal_file(path: &Path) -> Result<std::fs::File> {
    std::fs::File::open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::not_found(format!("WAL file {} does not exist", path.display()))
        } else {
            Error::io(format!("cannot open {}", path.display()), e)
        }
    })
}

/// Read the file at `path` through, handing each block to `f`; returns its length.
pub(crate) fn read_blocks(path: &Path, f: impl FnMut(&[u8])) -> Result<u64> {
    crate::util::read_blocks(open_wal_file(path)?, f)
        .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))
}

/// Hash a file's content for a marker.
pub fn hash_file(path: &Path) -> Result<FileHash> {
    let mut h = blake3::Hasher::new();
    let size = read_blocks(path, |b| {
        h.update(b);
    })?;
    Ok(FileHash {
        size,
        blake3: h.finalize(),
    })
}

impl Spool {
    /// The spool of repository `repo_id` under `cache_dir` (created 0700).
    pub fn open(cache_dir: &Path, repo_id: &Id) -> Result<Spool> {
        let dir = cache_dir.join("wal-spool").join(repo_id.to_hex());
        crate::util::create_dir_private(&dir).map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
        Ok(Spool { dir })
    }

    /// Its folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The folder of segments `wal fetch` read ahead (created 0700): each is complete and
    /// verified once it has its name.
    pub fn fetch_dir(&self) -> Result<PathBuf> {
        let d = self.dir.join("fetch");
        crate::util::create_dir_private(&d).map_err(|e| Error::io(format!("cannot create {}", d.display()), e))?;
        Ok(d)
    }

    fn marker(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}{SUFFIX}"))
    }

    /// Is there a marker for `name`?
    pub fn has(&self, name: &str) -> bool {
        self.marker(name).exists()
    }

    /// Record that `name`, with this content, is durable in the repository.
    pub fn record(&self, name: &str, h: &FileHash) -> Result<()> {
        let text = format!("{MAGIC}\n{name}\n{}\n{}\n", h.size, h.blake3.to_hex());
        let m = self.marker(name);
        crate::util::write_atomic(&m, text.as_bytes(), false)
            .map_err(|e| Error::io(format!("cannot write {}", m.display()), e))
    }

    /// Does a marker vouch for the file at `path` (named `name`)? A marker is used once: it
    /// is removed whether it matches or not.
    pub fn take(&self, name: &str, path: &Path) -> Result<bool> {
        let m = self.marker(name);
        let text = match std::fs::read_to_string(&m) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => {
                tracing::warn!(marker = %m.display(), error = %e, "cannot read a WAL spool marker; pushing normally");
                return Ok(false);
            }
        };
        let recorded = parse(&text, name);
        let matches = match recorded {
            Some(r) => {
                let len = std::fs::metadata(path).map(|md| md.len()).ok();
                // The size is checked first so a different file is not read in full.
                len == Some(r.size) && hash_file(path)? == r
            }
            None => false,
        };
        if let Err(e) = std::fs::remove_file(&m) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(Error::io(format!("cannot remove {}", m.display()), e));
            }
        }
        if !matches {
            tracing::warn!(
                file = name,
                "the spool marker does not match the file; pushing normally"
            );
        }
        Ok(matches)
    }

    /// Remove the markers of files not in `ready` (PostgreSQL archived them another way, or
    /// they are leftovers): returns how many went.
    pub fn sweep(&self, ready: &HashSet<String>) -> Result<usize> {
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) => return Err(Error::io(format!("cannot list {}", self.dir.display()), e)),
        };
        let mut n = 0;
        for ent in rd.flatten() {
            let fname = ent.file_name();
            let Some(s) = fname.to_str() else { continue };
            // Temporary files of an interrupted write go too.
            let stale = match s.strip_suffix(SUFFIX) {
                Some(name) => !ready.contains(name),
                None => s.starts_with('.'),
            };
            if stale && std::fs::remove_file(ent.path()).is_ok() {
                n += 1;
            }
        }
        Ok(n)
    }
}

fn parse(text: &str, name: &str) -> Option<FileHash> {
    let mut l = text.lines();
    if l.next()? != MAGIC || l.next()? != name {
        return None;
    }
    let size = l.next()?.parse().ok()?;
    let blake3 = blake3::Hash::from_hex(l.next()?).ok()?;
    Some(FileHash { size, blake3 })
}

/// Names of the WAL files PostgreSQL has marked ready to archive in the `archive_status/`
/// folder beside the WAL file `path`; empty when there is no such folder (a file pushed from
/// outside a data directory).
pub fn ready_names(path: &Path) -> HashSet<String> {
    let Some(status) = path.parent().map(|d| d.join("archive_status")) else {
        return HashSet::new();
    };
    let Ok(rd) = std::fs::read_dir(status) else {
        return HashSet::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let n = e.file_name().to_str()?.strip_suffix(".ready")?.to_string();
            WalFile::parse(&n).ok().map(|_| n)
        })
        .collect()
}

/// The files of `ready` other than `own`, beside `path`, in the order PostgreSQL's archiver
/// takes them: timeline history files first, then by name.
pub fn ahead_of(path: &Path, own: &str, ready: &HashSet<String>) -> Vec<PathBuf> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let mut v: Vec<&String> = ready.iter().filter(|n| n.as_str() != own).collect();
    v.sort_by_key(|n| (!n.ends_with(".history"), n.as_str()));
    v.into_iter().map(|n| dir.join(n)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_vouches_only_for_the_same_bytes_once() {
        let t = tempfile::tempdir().unwrap();
        let spool = Spool::open(t.path(), &Id([7; 32])).unwrap();
        let f = t.path().join("000000010000000000000003");
        std::fs::write(&f, b"segment bytes").unwrap();
        spool
            .record("000000010000000000000003", &hash_file(&f).unwrap())
            .unwrap();
        assert!(spool.has("000000010000000000000003"));
        assert!(spool.take("000000010000000000000003", &f).unwrap());
        // Used once.
        assert!(!spool.take("000000010000000000000003", &f).unwrap());

        spool
            .record("000000010000000000000003", &hash_file(&f).unwrap())
            .unwrap();
        std::fs::write(&f, b"segment bytez").unwrap();
        assert!(!spool.take("000000010000000000000003", &f).unwrap());
        assert!(!spool.has("000000010000000000000003"));

        // A marker filed under another name does not count.
        let h = hash_file(&f).unwrap();
        spool.record("000000010000000000000004", &h).unwrap();
        std::fs::rename(
            spool.marker("000000010000000000000004"),
            spool.marker("000000010000000000000003"),
        )
        .unwrap();
        assert!(!spool.take("000000010000000000000003", &f).unwrap());
    }

    #[test]
    fn ready_files_in_archiver_order_and_sweep() {
        let t = tempfile::tempdir().unwrap();
        let wal = t.path().join("pg_wal");
        std::fs::create_dir_all(wal.join("archive_status")).unwrap();
        for n in [
            "000000010000000000000005.ready",
            "000000010000000000000004.ready",
            "00000002.history.ready",
            "000000010000000000000003.done",
            "junk.ready",
        ] {
            std::fs::write(wal.join("archive_status").join(n), b"").unwrap();
        }
        let own = wal.join("000000010000000000000004");
        let ready = ready_names(&own);
        assert_eq!(ready.len(), 3);
        let ahead: Vec<String> = ahead_of(&own, "000000010000000000000004", &ready)
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
            .collect();
        assert_eq!(ahead, ["00000002.history", "000000010000000000000005"]);
        assert!(ready_names(&t.path().join("elsewhere/x")).is_empty());

        let spool = Spool::open(t.path(), &Id([1; 32])).unwrap();
        let h = FileHash {
            size: 1,
            blake3: blake3::hash(b"x"),
        };
        spool.record("000000010000000000000005", &h).unwrap();
        spool.record("000000010000000000000002", &h).unwrap();
        assert_eq!(spool.sweep(&ready).unwrap(), 1);
        assert!(spool.has("000000010000000000000005"));
        assert!(!spool.has("000000010000000000000002"));
    }
}
