//! Snapshot manifests in the repository: committing one (primary and registry copy),
//! reading them (through the local manifest cache), listing, finding and removing them.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::Ordering;

use crate::error::{Error, ErrorKind, Result};
use crate::format::snapshot::Manifest;
use crate::format::{open_object_in, seal, Id, ObjectKind, RepoObject};
use crate::repo::manifest_cache::ManifestCache;
use crate::repo::select::SnapshotFilter;
use crate::repo::Repository;

/// Folder of the manifests' registry copies (repo-format §8.3): one byte-identical copy of
/// every snapshot manifest, so that a lost or damaged manifest is detected and repaired.
pub const REGISTRY_DIR: &str = "registry";

/// Where a manifest was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestCopy {
    /// `snapshots/<id>`.
    Primary,
    /// `registry/<id>`.
    Registry,
}

impl ManifestCopy {
    /// The folder of this place.
    pub fn dir(self) -> &'static str {
        match self {
            ManifestCopy::Primary => ObjectKind::Snapshot.dir(),
            ManifestCopy::Registry => REGISTRY_DIR,
        }
    }
    /// Repository path of snapshot `id`'s manifest in this place.
    pub fn path(self, id: &Id) -> String {
        format!("{}/{id}", self.dir())
    }
}

impl Repository {
    /// Commit a snapshot: seal its manifest, store it under `snapshots/`, then its registry
    /// copy (the same bytes) under `registry/`. Returns the snapshot id.
    pub fn save_manifest(&self, m: &Manifest) -> Result<Id> {
        let sealed = seal(&self.keys, m)?;
        let id = Id::of_stored(&sealed);
        self.store
            .write(&ManifestCopy::Primary.path(&id), sealed.clone(), false)?;
        if let Some(c) = &self.manifest_cache {
            c.put(&id, &sealed);
        }
        self.store.write(&ManifestCopy::Registry.path(&id), sealed, false)?;
        Ok(id)
    }

    /// Keep the manifests this repository reads in a local cache under `cache_dir` (beside
    /// the index cache, keyed by repository id), and read them from there when they are
    /// intact. Without it every manifest is read from storage each time it is needed.
    pub fn use_cache_dir(&mut self, cache_dir: &Path) {
        self.manifest_cache = Some(ManifestCache::new(cache_dir, &self.config.id));
    }

    /// How many manifests were read from storage, not from the local cache, since the
    /// repository was opened.
    pub fn manifest_reads(&self) -> u64 {
        self.manifest_reads.load(Ordering::Relaxed)
    }

    /// Load, verify and decode snapshot `id`'s manifest from one place in the repository
    /// (never from the local cache: `check` reads each copy through this).
    pub fn load_manifest_from(&self, id: &Id, place: ManifestCopy) -> Result<Manifest> {
        self.read_manifest_from(id, place).map(|(m, _)| m)
    }

    /// The manifest and its sealed bytes, read from the repository.
    fn read_manifest_from(&self, id: &Id, place: ManifestCopy) -> Result<(Manifest, Vec<u8>)> {
        self.manifest_reads.fetch_add(1, Ordering::Relaxed);
        let raw = self.store.read(&place.path(id))?;
        let b = open_object_in(&self.keys, ObjectKind::Snapshot, place.dir(), &id.to_hex(), &raw)?;
        Ok((Manifest::decode(&place.path(id), &b)?, raw))
    }

    /// Load one manifest: from the local cache when it holds an intact copy, else from
    /// `snapshots/`, or from its registry copy when that one is missing or damaged (a warning
    /// is logged; `check` reports it and `prune` repairs it). Both copies are the same bytes,
    /// so whichever was read is what the cache keeps.
    pub fn load_manifest(&self, id: &Id) -> Result<Manifest> {
        if let Some(m) = self.cached_manifest(id) {
            return Ok(m);
        }
        let (m, raw) = match self.read_manifest_from(id, ManifestCopy::Primary) {
            Ok(got) => got,
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Corrupt) => {
                match self.read_manifest_from(id, ManifestCopy::Registry) {
                    Ok(got) => {
                        tracing::warn!(snapshot = %id, error = %e, "manifest unusable; using its registry copy");
                        got
                    }
                    Err(_) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        if let Some(c) = &self.manifest_cache {
            c.put(id, &raw);
        }
        Ok(m)
    }

    /// Manifest `id` from the local cache, opened and verified like a stored one. A cached
    /// file that fails is removed, and the caller reads the repository.
    fn cached_manifest(&self, id: &Id) -> Option<Manifest> {
        let c = self.manifest_cache.as_ref()?;
        let raw = c.get(id)?;
        let path = c.path(id);
        let dir = path.parent().map(|d| d.display().to_string()).unwrap_or_default();
        let opened = open_object_in(&self.keys, ObjectKind::Snapshot, &dir, &id.to_hex(), &raw)
            .and_then(|b| Manifest::decode(&path.display().to_string(), &b));
        match opened {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::warn!(snapshot = %id, error = %e, "cached manifest is damaged; reading the repository");
                c.remove(id);
                None
            }
        }
    }

    /// The listings of `snapshots/` and `registry/`: which snapshots have a manifest, and
    /// which a registry copy.
    pub fn snapshot_listing(&self) -> Result<(HashSet<Id>, HashSet<Id>)> {
        Ok((
            self.list_ids(ObjectKind::Snapshot)?.into_iter().collect(),
            self.ids_in(REGISTRY_DIR)?.into_iter().collect(),
        ))
    }

    /// Every snapshot: ids with a manifest or a registry copy (or both), sorted.
    pub fn snapshot_ids(&self) -> Result<Vec<Id>> {
        let (primaries, copies) = self.snapshot_listing()?;
        let listed: HashSet<Id> = primaries.union(&copies).copied().collect();
        if let Some(c) = &self.manifest_cache {
            let n = c.retain(&listed);
            if n > 0 {
                tracing::debug!(files = n, "dropped cached manifests the repository no longer lists");
            }
        }
        let mut v: Vec<Id> = listed.into_iter().collect();
        v.sort();
        Ok(v)
    }

    /// Remove snapshot `id` (its data stays until `prune`): the registry copy first, then the
    /// manifest, so an interrupted removal leaves a whole snapshot, never a lost-looking one.
    pub fn remove_snapshot(&self, id: &Id) -> Result<()> {
        self.store.delete(&ManifestCopy::Registry.path(id))?;
        self.store.delete(&ManifestCopy::Primary.path(id))?;
        if let Some(c) = &self.manifest_cache {
            c.remove(id);
        }
        Ok(())
    }

    /// Write whichever of a snapshot's two copies is missing from the other (after checking the
    /// survivor's id and authenticity). `primaries` and `copies` are listings of `snapshots/`
    /// and `registry/`; ids in `skip` are left alone. Returns the number of objects written.
    pub fn repair_manifests(&self, primaries: &HashSet<Id>, copies: &HashSet<Id>, skip: &[Id]) -> Result<u64> {
        let mut n = 0;
        for (have, lacking, from, to) in [
            (primaries, copies, ManifestCopy::Primary, ManifestCopy::Registry),
            (copies, primaries, ManifestCopy::Registry, ManifestCopy::Primary),
        ] {
            for id in have.iter().filter(|i| !lacking.contains(*i) && !skip.contains(*i)) {
                let raw = self.store.read(&from.path(id))?;
                if open_object_in(&self.keys, ObjectKind::Snapshot, from.dir(), &id.to_hex(), &raw).is_err() {
                    continue; // damaged as well: `check` reports it
                }
                self.store.write(&to.path(id), raw, false)?;
                tracing::info!(snapshot = %id, to = %to.path(id), "manifest copy restored");
                n += 1;
            }
        }
        Ok(n)
    }

    /// Load the manifests of `ids` ([`Repository::load_manifest`]), several at a time: on an
    /// object store each read is a round trip. Results are in the order of `ids`.
    pub fn load_manifests(&self, ids: &[Id]) -> Vec<Result<Manifest>> {
        const READERS: usize = 16;
        let next = std::sync::atomic::AtomicUsize::new(0);
        let done: Vec<(usize, Result<Manifest>)> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..READERS.min(ids.len()))
                .map(|_| {
                    s.spawn(|| {
                        let mut got = Vec::new();
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(id) = ids.get(i) else { return got };
                            got.push((i, self.load_manifest(id)));
                        }
                    })
                })
                .collect();
            workers.into_iter().flat_map(|w| w.join().unwrap_or_default()).collect()
        });
        let mut out: Vec<Option<Result<Manifest>>> = ids.iter().map(|_| None).collect();
        for (i, m) in done {
            if let Some(slot) = out.get_mut(i) {
                *slot = Some(m);
            }
        }
        out.into_iter()
            .map(|m| m.unwrap_or_else(|| Err(Error::general("a manifest reader panicked"))))
            .collect()
    }

    /// All manifests, oldest first. Fails when one cannot be read.
    pub fn manifests(&self) -> Result<Vec<(Id, Manifest)>> {
        let (v, mut unreadable) = self.readable_manifests()?;
        match unreadable.pop() {
            Some((_, e)) => Err(e),
            None => Ok(v),
        }
    }

    /// Every manifest that can be read, oldest first, and the snapshots whose manifest (both
    /// copies) cannot, with why: for listings that should show what is there and flag the rest.
    #[allow(clippy::type_complexity)]
    pub fn readable_manifests(&self) -> Result<(Vec<(Id, Manifest)>, Vec<(Id, Error)>)> {
        Ok(self.load_listed(&self.snapshot_ids()?))
    }

    /// The manifests of listed snapshots `ids`, oldest first, and those that cannot be read.
    /// One listed and then removed by a concurrent `forget` before it was read is left out.
    #[allow(clippy::type_complexity)]
    fn load_listed(&self, ids: &[Id]) -> (Vec<(Id, Manifest)>, Vec<(Id, Error)>) {
        let mut v = Vec::with_capacity(ids.len());
        let mut bad = Vec::new();
        for (id, m) in ids.iter().zip(self.load_manifests(ids)) {
            match m {
                Ok(m) => v.push((*id, m)),
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    tracing::debug!(snapshot = %id, "snapshot removed while listing")
                }
                Err(e) => bad.push((*id, e)),
            }
        }
        v.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
        (v, bad)
    }

    /// Resolve `latest`, a full id, or a unique id prefix (optionally within source `name`).
    /// An id prefix reads only the manifests whose ids match it; `latest` reads every manifest
    /// (from the local cache where it can), and fails when one cannot be read, since that one
    /// might be the newest.
    pub fn find_snapshot(&self, spec: &str, name: Option<&str>) -> Result<(Id, Manifest)> {
        self.select_snapshot(spec, &SnapshotFilter::named(name))
    }

    /// Resolve `latest`, a full id, or a unique id prefix among the snapshots `filter` passes.
    /// `latest` refuses (usage error) when they come from more than one host or engine.
    pub fn select_snapshot(&self, spec: &str, filter: &SnapshotFilter) -> Result<(Id, Manifest)> {
        let spec_l = spec.to_ascii_lowercase();
        let latest = spec == "latest";
        if !latest && (spec_l.is_empty() || !spec_l.chars().all(|c| c.is_ascii_hexdigit())) {
            return Err(Error::usage(format!(
                "`{spec}` is not a snapshot id, id prefix, or `latest`"
            )));
        }
        let mut ids = self.snapshot_ids()?;
        if !latest {
            ids.retain(|id| id.to_hex().starts_with(&spec_l));
        }
        let (mut matching, mut unreadable) = self.load_listed(&ids);
        if let Some((_, e)) = unreadable.pop() {
            return Err(match latest {
                true => Error::new(
                    e.kind(),
                    format!("cannot tell which snapshot is the latest: {e}; name the snapshot by its id, and run `dbbackup check`"),
                ),
                false => e,
            });
        }
        matching.retain(|(_, m)| filter.matches(m));
        if latest {
            return crate::repo::select::latest(self, matching, filter);
        }
        match matching.len() {
            0 => Err(Error::not_found(format!(
                "no snapshot matches `{spec}` in repository {}",
                self.store.display()
            ))),
            1 => Ok(matching.remove(0)),
            n => Err(Error::usage(format!(
                "`{spec}` matches {n} snapshots; give more digits of the id"
            ))),
        }
    }
}
