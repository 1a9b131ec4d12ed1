//! The local manifest cache: each snapshot manifest read from the repository is kept, sealed
//! exactly as stored, under `<cache dir>/<repository id>/snapshots/<id>`. Listing snapshots,
//! resolving `latest` and finding a parent then cost one listing of the repository plus reads
//! of the manifests written since, instead of a read of every manifest. A cached manifest is
//! opened like a stored one (its SHA-256 must equal its name, then authenticated decryption),
//! so the cache is never trusted: a damaged or foreign file is dropped and read again from the
//! repository. Deleting the cache is always safe.

use std::collections::HashSet;
use std::fs;
use std::path::PathBuf;

use crate::format::Id;

/// Sealed manifests of one repository on local disk.
#[derive(Debug, Clone)]
pub struct ManifestCache {
    dir: PathBuf,
}

impl ManifestCache {
    /// The cache of the repository whose id is `repo_id`, under `cache_dir` (the directory
    /// that also holds the index cache). Nothing is created until a manifest is stored.
    pub fn new(cache_dir: &std::path::Path, repo_id: &Id) -> ManifestCache {
        ManifestCache {
            dir: cache_dir.join(repo_id.to_hex()).join("snapshots"),
        }
    }

    /// Where manifest `id` is kept.
    pub fn path(&self, id: &Id) -> PathBuf {
        self.dir.join(id.to_hex())
    }

    /// The cached bytes of manifest `id`, if any (unverified: the caller opens them).
    pub fn get(&self, id: &Id) -> Option<Vec<u8>> {
        fs::read(self.path(id)).ok()
    }

    /// Keep the sealed bytes of manifest `id`. A temp file renamed into place, so a reader sees
    /// the whole file or none; not fsynced (a torn file fails authentication and is re-read).
    /// Failures are logged and otherwise ignored: the cache only saves reads.
    pub fn put(&self, id: &Id, sealed: &[u8]) {
        if let Err(e) = crate::util::write_cache_file(&self.path(id), sealed) {
            tracing::debug!(cache = %self.dir.display(), error = %e, "cannot cache a manifest");
        }
    }

    /// Drop manifest `id` (removed from the repository, or damaged in the cache).
    pub fn remove(&self, id: &Id) {
        let _ = fs::remove_file(self.path(id));
    }

    /// Drop every cached manifest whose id is not in `listed` (the repository no longer has
    /// it), and leftovers of interrupted writes. Returns how many files were removed.
    pub fn retain(&self, listed: &HashSet<Id>) -> usize {
        let Ok(entries) = fs::read_dir(&self.dir) else { return 0 };
        let mut removed = 0;
        for e in entries.flatten() {
            let name = e.file_name();
            let keep = name
                .to_str()
                .and_then(|n| n.parse::<Id>().ok())
                .is_some_and(|id| listed.contains(&id));
            if !keep && fs::remove_file(e.path()).is_ok() {
                removed += 1;
            }
        }
        removed
    }
}
