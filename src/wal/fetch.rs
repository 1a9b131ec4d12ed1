//! `wal fetch`: restore one archived WAL file for PostgreSQL's `restore_command`. A file the
//! archive does not hold is a `NotFound` error, which PostgreSQL takes as the end of the
//! archive.

use std::path::Path;

use super::catalog;
use super::names::WalFile;
use crate::error::{Error, Result};
use crate::index::IndexCache;
use crate::progress::Progress;
use crate::repo::Repository;
use crate::restore::restore_file;

/// Restore WAL file `file` to `dest` (replacing it: PostgreSQL reuses `RECOVERYXLOG`),
/// verified chunk by chunk and as a whole before it is renamed into place. Returns its size.
pub fn fetch(repo: &Repository, index: &IndexCache, file: &str, dest: &Path, progress: &dyn Progress) -> Result<u64> {
    WalFile::parse(file)?;
    let found = catalog::find(repo, file)?;
    let Some((_, e)) = found.first() else {
        return Err(Error::not_found(format!("{file} is not in the WAL archive")));
    };
    if let Some((id, _)) = found.iter().find(|(_, x)| x.data.sha256 != e.data.sha256) {
        return Err(Error::corrupt(
            format!("{}/{id}", catalog::entry_dir(repo, file)),
            format!("the archive holds {file} twice with different content"),
        ));
    }
    restore_file(repo, index, &e.data, dest, true, progress)
}
