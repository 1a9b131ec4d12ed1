//! `wal fetch`: restore one archived WAL file for PostgreSQL's `restore_command`. A file the
//! archive does not hold is a `NotFound` error, which PostgreSQL takes as the end of the
//! archive. [`fetch_ahead`] restores the segments that follow into the spool, verified, so
//! the calls for them need not unlock the repository.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::catalog;
use super::names::{segment_name, WalFile};
use crate::error::{Error, ErrorKind, Result};
use crate::format::wal::WalEntry;
use crate::progress::Progress;
use crate::repo::session::Session;
use crate::repo::Repository;
use crate::restore::restore_file;

/// Restore WAL file `file` to `dest` (replacing it: PostgreSQL reuses `RECOVERYXLOG`),
/// verified chunk by chunk and as a whole before it is renamed into place. Returns its size.
pub fn fetch(session: &Session<'_>, file: &str, dest: &Path, progress: &dyn Progress) -> Result<u64> {
    let (repo, index) = (session.repo(), session.index());
    WalFile::parse(file)?;
    let e = archived(repo, file)?.ok_or_else(|| Error::not_found(format!("{file} is not in the WAL archive")))?;
    match restore_file(session, &e.data, dest, true, progress) {
        // The file is renamed into place only once verified, so a failed try leaves nothing:
        // a cache that disagrees with the repository is rebuilt, and the file read again.
        Err(er) if er.kind() == ErrorKind::Corrupt => {
            tracing::info!(error = %er, "rebuilding the local index cache and reading {file} again");
            index.rebuild(repo)?;
            restore_file(session, &e.data, dest, true, progress)
        }
        r => r,
    }
}

/// The catalog entry of `file`, if archived; two entries with different content are damage.
fn archived(repo: &Repository, file: &str) -> Result<Option<WalEntry>> {
    let mut found = catalog::find(repo, file)?.into_iter();
    let Some((_, e)) = found.next() else { return Ok(None) };
    if let Some((id, _)) = found.find(|(_, x)| x.data.sha256 != e.data.sha256) {
        return Err(Error::corrupt(
            format!("{}/{id}", catalog::entry_dir(repo, file)),
            format!("the archive holds {file} twice with different content"),
        ));
    }
    Ok(Some(e))
}

/// Restore the `n` segments after `file` (same timeline) into `dir`, each verified before it
/// appears under its name; segments already there are kept, the archive's end stops it, and
/// every other file in `dir` (older, or of another timeline) is removed. Returns the names
/// restored now. Nothing is read ahead after a history or backup-label file.
pub fn fetch_ahead(session: &Session<'_>, file: &str, n: u32, seg_size: u32, dir: &Path) -> Result<Vec<String>> {
    let repo = session.repo();
    let kind = WalFile::parse(file)?;
    let next: Vec<String> = match (kind, kind.segno(seg_size)) {
        (WalFile::Segment { tli, .. }, Some(segno)) => (1..=u64::from(n))
            .map(|k| segment_name(tli, segno + k, seg_size))
            .collect(),
        _ => Vec::new(),
    };
    let keep: HashSet<&str> = next.iter().map(String::as_str).collect();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if !e.file_name().to_str().is_some_and(|n| keep.contains(n)) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let wanted: Vec<(String, PathBuf)> = next
        .iter()
        .map(|name| (name.clone(), dir.join(name)))
        .filter(|(_, p)| !p.exists())
        .collect();
    let fetched: Vec<Result<Option<String>>> = wanted
        .par_iter()
        .map(|(name, p)| {
            let e = match archived(repo, name) {
                Ok(Some(e)) => e,
                Ok(None) => return Ok(None),
                // The call for it reports the conflict.
                Err(e) if e.kind() == ErrorKind::Corrupt => return Ok(None),
                Err(e) => return Err(e),
            };
            restore_file(session, &e.data, p, true, &crate::progress::NoProgress)?;
            Ok(Some(name.clone()))
        })
        .collect();
    let mut out = Vec::new();
    for r in fetched {
        if let Some(name) = r? {
            out.push(name);
        }
    }
    Ok(out)
}
