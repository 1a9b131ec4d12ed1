//! `archive_command` with pushing ahead (docs/wal.md): PostgreSQL archives one file per call,
//! and each call would unlock the repository; a call that finds more files marked ready in
//! `archive_status/` stores them too, and leaves a marker for each in the local spool, so
//! that the calls for them are answered at once (a marker vouches for the same bytes, once).

use std::path::Path;

use super::push::{push_many, PushOptions, Pushed};
use super::spool::{ahead_of, ready_names, Spool};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::repo::session::Session;

/// The name of the WAL file at `path` (%p), as the archive records it.
pub fn wal_name(path: &Path) -> Result<String> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .ok_or_else(|| Error::usage(format!("{} has no file name", path.display())))
}

/// Archive `path` in `session`, and up to `ahead` more files PostgreSQL marked ready that
/// `spool` holds no marker for; leave a marker for each of those stored, and sweep the
/// markers of files no longer ready. The result is `path`'s own: a file pushed ahead that
/// fails is only logged (PostgreSQL asks for it later, and that call reports it).
pub fn push_ahead(
    session: &Session<'_>,
    spool: &Spool,
    path: &Path,
    ahead: usize,
    opts: &PushOptions,
    progress: &dyn Progress,
) -> Result<Pushed> {
    let name = wal_name(path)?;
    let ready = ready_names(path);
    let mut paths = vec![path.to_path_buf()];
    if ahead > 0 {
        paths.extend(
            ahead_of(path, &name, &ready)
                .into_iter()
                .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| !spool.has(n)))
                .take(ahead),
        );
    }
    let mut results = push_many(session, &paths, opts, progress)?.into_iter();
    let own = results
        .next()
        .ok_or_else(|| Error::general("push returned no result"))?;
    for (path, r) in paths.iter().skip(1).zip(results) {
        match r {
            Ok(d) => {
                let file = d.pushed.file();
                if let Err(e) = spool.record(file, &d.hash) {
                    tracing::warn!(%file, error = %e, "pushed ahead, but cannot leave a spool marker");
                } else {
                    tracing::info!(%file, "pushed ahead");
                }
            }
            Err(e) => tracing::warn!(file = %path.display(), error = %e, "cannot push ahead"),
        }
    }
    if !ready.is_empty() {
        spool.sweep(&ready)?;
    }
    Ok(own?.pushed)
}
