//! Restoring a snapshot: content lists are read in order, chunks fetched ahead in parallel,
//! authenticated, decompressed and checked against their ids before a byte is written; the
//! stream's SHA-256 is compared with the manifest at the end.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};

use crate::error::{Error, ErrorKind, Hint, Result};
use crate::format::snapshot::{Entry, Manifest};
use crate::format::BlobKind;
use crate::progress::{Progress, Work};
use crate::repo::blob_reader::{fetch_blob, fetch_blob_cached, parse_list, BaseCache, BASE_CACHE_BYTES};
use crate::repo::session::Session;

/// Chunks fetched ahead of the writer.
const FETCH_AHEAD: usize = 16;

/// Write entry `entry` of a snapshot to `out`, verified chunk by chunk and as a whole.
/// Returns the bytes written.
pub fn restore_entry(
    session: &Session<'_>,
    entry: &Entry,
    out: &mut (dyn Write + Send),
    progress: &dyn Progress,
) -> Result<u64> {
    let repo = session.repo();
    let rt = repo.store().runtime().clone();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(FETCH_AHEAD);
    let cache = BaseCache::new(BASE_CACHE_BYTES);
    let cache = &cache;
    std::thread::scope(|s| {
        let writer = s.spawn(move || -> Result<(u64, String)> {
            let mut h = Sha256::new();
            let mut n = 0u64;
            while let Some(c) = rx.blocking_recv() {
                out.write_all(&c)
                    .map_err(|e| Error::io("cannot write restored data", e))?;
                h.update(&c);
                n += c.len() as u64;
                progress.advance(c.len() as u64);
            }
            out.flush().map_err(|e| Error::io("cannot write restored data", e))?;
            Ok((n, hex::encode(h.finalize())))
        });
        let fetched = rt.block_on(async {
            let lists = futures::stream::iter(entry.content.iter().copied())
                .map(|lid| async move {
                    let b = fetch_blob(session, lid, BlobKind::ContentList).await?;
                    let recs = parse_list(&lid, &b)?;
                    Ok::<_, Error>(futures::stream::iter(recs.into_iter().map(Ok::<_, Error>)))
                })
                .buffered(2)
                .try_flatten();
            let mut chunks = lists
                .map_ok(|(id, len)| async move {
                    let c = fetch_blob_cached(session, id, BlobKind::Data, Some(cache)).await?;
                    if c.len() != len as usize {
                        return Err(Error::corrupt(
                            format!("chunk {id}"),
                            "length differs from the content list",
                        ));
                    }
                    Ok(c)
                })
                .try_buffered(FETCH_AHEAD);
            while let Some(c) = chunks.next().await {
                if tx.send(c?).await.is_err() {
                    break; // writer failed; its error is reported below
                }
            }
            Ok::<_, Error>(())
        });
        drop(tx);
        let written = writer
            .join()
            .unwrap_or_else(|_| Err(Error::general("restore writer panicked")));
        cache.log_counts();
        fetched?;
        let (n, sha) = written?;
        if n != entry.size || sha != entry.sha256 {
            return Err(Error::corrupt(
                format!("entry `{}`", entry.path),
                format!(
                    "restored stream has {n} bytes and SHA-256 {sha}, the snapshot recorded {} bytes and {}",
                    entry.size, entry.sha256
                ),
            ));
        }
        Ok(n)
    })
}

/// Check an entry path is relative and stays inside the target.
fn safe_relative(p: &str) -> Result<PathBuf> {
    let path = Path::new(p);
    if p.is_empty() || !path.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(Error::corrupt(
            format!("entry `{p}`"),
            "entry path is not a plain relative path",
        ));
    }
    Ok(path.to_path_buf())
}

/// Where a restore goes.
#[derive(Debug, Clone)]
pub enum Target {
    /// Standard output (a single entry).
    Stdout,
    /// A file (single-entry snapshots) or a directory.
    Path(PathBuf),
}

/// Restore `m` to `target`. Files are written to a temporary name and renamed only once
/// verified, so a failed restore leaves no partial file. Existing files are kept unless
/// `overwrite`.
pub fn restore_snapshot(
    session: &Session<'_>,
    m: &Manifest,
    target: &Target,
    overwrite: bool,
    progress: &dyn Progress,
) -> Result<Vec<(PathBuf, u64)>> {
    progress.start("restore", Work::Bytes(Some(m.size())));
    let r = match target {
        Target::Stdout => {
            let [entry] = m.entries.as_slice() else {
                return Err(Error::usage("this snapshot has several entries").with_hint(Hint::RestoreIntoDirectory));
            };
            // Chunks are large: write them straight to fd 1, past std's line-buffered stdout.
            use std::os::fd::AsFd;
            let fd = std::io::stdout()
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| Error::io("cannot use stdout", e))?;
            let mut out = std::fs::File::from(fd);
            let n = restore_entry(session, entry, &mut out, progress)?;
            Ok(vec![(PathBuf::from("-"), n)])
        }
        Target::Path(p) => {
            let single_file = m.entries.len() == 1 && !p.is_dir();
            let mut done = Vec::new();
            for e in &m.entries {
                let dest = if single_file {
                    p.clone()
                } else {
                    p.join(safe_relative(&e.path)?)
                };
                let n = restore_file(session, e, &dest, overwrite, progress)?;
                done.push((dest, n));
            }
            Ok(done)
        }
    };
    progress.finish();
    r
}

/// Restore entry `e` to file `dest`: written to a temporary name, verified, synced, then
/// renamed into place (an existing `dest` is replaced only with `overwrite`).
pub fn restore_file(
    session: &Session<'_>,
    e: &Entry,
    dest: &Path,
    overwrite: bool,
    progress: &dyn Progress,
) -> Result<u64> {
    if dest.exists() && !overwrite {
        return Err(
            Error::new(ErrorKind::CantCreate, format!("{} already exists", dest.display()))
                .with_hint(Hint::TargetExists),
        );
    }
    let dir = dest
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    crate::util::create_dir_private(dir).map_err(|er| Error::io(format!("cannot create {}", dir.display()), er))?;
    let name = dest.file_name().and_then(|n| n.to_str()).unwrap_or("restore");
    let tmp = dir.join(format!(".{name}.dbbackup-partial-{}", std::process::id()));
    // Registered before the file exists, so an interruption never leaves it behind.
    let _cleanup = {
        let tmp = tmp.clone();
        crate::interrupt::on_interrupt(move || {
            let _ = std::fs::remove_file(&tmp);
        })
    };
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|er| Error::io(format!("cannot create {}", tmp.display()), er))?;
    let result = (|| {
        // Chunks are large; write them as they come, without another buffer.
        let mut f = file;
        let n = restore_entry(session, e, &mut f, progress)?;
        f.sync_all()
            .map_err(|er| Error::io(format!("cannot sync {}", tmp.display()), er))?;
        std::fs::rename(&tmp, dest).map_err(|er| Error::io(format!("cannot rename into {}", dest.display()), er))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(n)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_paths_must_be_plain_and_relative() {
        // An inner `.` is no component (Path drops it): `a/./b` is `a/b`.
        for ok in ["db.dump", "globals/roles.sql", "a/b/c", "a/./b"] {
            assert_eq!(safe_relative(ok).unwrap(), PathBuf::from(ok));
        }
        for bad in ["", "/etc/passwd", "../x", "a/../../b", "./a", "a/..", "a/../b"] {
            let e = safe_relative(bad).unwrap_err();
            assert_eq!(e.kind(), crate::error::ErrorKind::Corrupt, "{bad}");
        }
    }
}
