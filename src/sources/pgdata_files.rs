//! The data directory as a file-by-file backup sees it: the directories and files
//! pg_basebackup would back up (what it leaves out is left out: WAL, temporary and unlogged
//! relations, runtime files), with the size and modification time change detection compares.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Hint, Result};

/// The directories and files of a backup, with what change detection compares.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FileList {
    /// Directories relative to the data directory (created 0700 on restore).
    pub dirs: Vec<String>,
    /// Regular files.
    pub files: Vec<FileMeta>,
}

/// One file as it was found.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileMeta {
    /// Path relative to the data directory.
    pub path: String,
    /// Size when listed.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
}

/// Directories whose contents pg_basebackup leaves out (the directory itself is kept).
const EMPTY_DIRS: &[&str] = &[
    "pg_wal",
    "pg_stat_tmp",
    "pg_replslot",
    "pg_dynshmem",
    "pg_notify",
    "pg_serial",
    "pg_snapshots",
    "pg_subtrans",
];
/// Files left out wherever they are.
const SKIP_FILES: &[&str] = &[
    "postgresql.auto.conf.tmp",
    "current_logfiles.tmp",
    "pg_internal.init",
    "backup_label",
    "tablespace_map",
    "backup_manifest",
    "postmaster.pid",
    "postmaster.opts",
];

/// Relation files pg_basebackup leaves out: the forks of unlogged relations (names in
/// `unlogged`) other than their init fork, and temporary relations (`t<backend>_<node>`).
pub(super) fn left_out_relation(name: &str, unlogged: &HashSet<String>) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    let node = name.split(['_', '.']).next().unwrap_or(name);
    if digits(node) && !name.ends_with("_init") && unlogged.contains(node) {
        return true;
    }
    name.strip_prefix('t')
        .and_then(|rest| rest.split_once('_'))
        .is_some_and(|(backend, _)| digits(backend))
}

/// List the data directory as pg_basebackup would back it up.
pub fn list_pgdata(root: &Path) -> Result<FileList> {
    let mut list = FileList::default();
    walk(root, root, &mut list)?;
    list.dirs.sort();
    list.files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(list)
}

fn walk(root: &Path, dir: &Path, list: &mut FileList) -> Result<()> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        // Dropped while listed (a database's directory).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir != root => return Ok(()),
        Err(e) => return Err(Error::io(format!("cannot list {}", dir.display()), e)),
    };
    let mut names: Vec<(String, PathBuf)> = Vec::new();
    for e in rd {
        let e = e.map_err(|e| Error::io(format!("cannot list {}", dir.display()), e))?;
        let Some(n) = e.file_name().to_str().map(str::to_string) else {
            return Err(Error::usage(format!(
                "{} holds a file name that is not UTF-8",
                dir.display()
            )));
        };
        names.push((n, e.path()));
    }
    // Unlogged relations: only their init fork is backed up.
    let unlogged: HashSet<String> = names
        .iter()
        .filter_map(|(n, _)| n.strip_suffix("_init").map(str::to_string))
        .collect();
    for (name, path) in names {
        let rel = path
            .strip_prefix(root)
            .map_err(|_| Error::general("walked outside the data directory"))?
            .to_string_lossy()
            .into_owned();
        if SKIP_FILES.contains(&name.as_str()) || name.starts_with("pgsql_tmp") {
            continue;
        }
        let md = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(format!("cannot stat {}", path.display()), e)),
        };
        if rel.starts_with("pg_tblspc/") {
            return Err(
                Error::usage("the cluster has tablespaces, which file-by-file backups do not support yet")
                    .with_hint(Hint::PlainPhysical),
            );
        }
        if md.is_dir() || (md.file_type().is_symlink() && path.is_dir()) {
            list.dirs.push(rel.clone());
            if EMPTY_DIRS.contains(&rel.as_str()) {
                if rel == "pg_wal" {
                    list.dirs.push("pg_wal/archive_status".into());
                }
                continue;
            }
            walk(root, &path, list)?;
            continue;
        }
        if !md.is_file() {
            continue;
        }
        if left_out_relation(&name, &unlogged) {
            continue;
        }
        list.files.push(FileMeta {
            path: rel,
            size: md.len(),
            mtime_ns: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relations_pg_basebackup_leaves_out() {
        let unlogged: HashSet<String> = ["16390".to_string()].into();
        for n in ["16390", "16390.1", "16390_fsm", "16390_vm", "t3_16400", "t12_16401.2"] {
            assert!(left_out_relation(n, &unlogged), "{n}");
        }
        for n in [
            "16390_init",
            "16384",
            "16384_fsm",
            "PG_VERSION",
            "pg_filenode.map",
            "t_x",
        ] {
            assert!(!left_out_relation(n, &unlogged), "{n}");
        }
    }
}
