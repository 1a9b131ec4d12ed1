//! Storage backends through OpenDAL: retry and timeout layers, durable atomic writes for
//! local repositories (the location grammar is in `location`).

#[cfg(feature = "test-hooks")]
mod faults;
mod location;
mod retry;
pub mod ssh;
#[cfg(feature = "test-hooks")]
use faults::{damage_point, fault_point};
pub use location::{parse_location, Location, CREDENTIAL_ENV};
pub use retry::StorageLimits;
use retry::{backoff, retry_warning, unauthorized, unreachable, warn_retry};

use std::path::PathBuf;
use std::time::Duration;

use opendal::layers::{RetryLayer, TimeoutLayer};
use opendal::{services, Operator};
use tokio::runtime::Handle;

use crate::error::{Error, ErrorKind, Result};

/// An opened storage backend.
#[derive(Clone)]
pub struct Store {
    op: Operator,
    rt: Handle,
    local: Option<PathBuf>,
    display: String,
    limits: StorageLimits,
    /// SFTP: ssh connection failures are retried here (see [`Store::call`]).
    sftp: bool,
}

fn build(loc: &Location) -> opendal::Result<Operator> {
    let it = loc.options.clone().into_iter();
    match loc.scheme.as_str() {
        "fs" => Operator::from_iter::<services::Fs>(it),
        "memory" => Operator::from_iter::<services::Memory>(it),
        "s3" => Operator::from_iter::<services::S3>(it),
        "azblob" => Operator::from_iter::<services::Azblob>(it),
        "gcs" => Operator::from_iter::<services::Gcs>(it),
        "b2" => Operator::from_iter::<services::B2>(it),
        "sftp" => Operator::from_iter::<services::Sftp>(it),
        _ => Operator::from_iter::<services::Webdav>(it),
    }
}

impl Store {
    /// Open the backend for `loc` with the default [`StorageLimits`]; see [`Store::open_with`].
    pub fn open(loc: &Location, rt: Handle) -> Result<Store> {
        Self::open_with(loc, rt, StorageLimits::default())
    }

    /// Open the backend for `loc`; all I/O runs on the runtime behind `rt`. A local
    /// directory that does not exist is an error (exit 66), never created: only
    /// [`Store::create`] creates one.
    pub fn open_with(loc: &Location, rt: Handle, limits: StorageLimits) -> Result<Store> {
        if let Some(root) = &loc.local {
            if let Err(e) = std::fs::metadata(root) {
                let kind = match e.kind() {
                    std::io::ErrorKind::NotFound => ErrorKind::NotFound,
                    std::io::ErrorKind::PermissionDenied => ErrorKind::Permission,
                    _ => ErrorKind::Io,
                };
                return Err(Error::new(kind, format!("no repository at {}: {e}", loc.display)));
            }
        }
        Self::open_unchecked(loc, rt, limits)
    }

    /// Open the backend for `loc` to create a repository there, creating a local directory
    /// (and its missing parents, mode 0700) that does not exist yet. Returns the topmost
    /// directory it created, for the caller to remove if the repository is not made.
    pub fn create(loc: &Location, rt: Handle, limits: StorageLimits) -> Result<(Store, Option<PathBuf>)> {
        let mut created = None;
        if let Some(root) = &loc.local {
            let mut top = root.as_path();
            while let Some(parent) = top.parent().filter(|p| !p.exists()) {
                top = parent;
            }
            if !root.exists() {
                std::fs::create_dir_all(root).map_err(|e| Error::io(format!("cannot create {}", root.display()), e))?;
                created = Some(top.to_path_buf());
            }
        }
        if loc.scheme == "sftp" {
            // Before the first object: the server's umask decides the files' modes.
            rt.block_on(crate::storage::ssh::make_private(loc))?;
        }
        Ok((Self::open_unchecked(loc, rt, limits)?, created))
    }

    /// Whether the location holds nothing at all (a local directory may hold `lost+found`).
    pub fn is_empty(&self) -> Result<bool> {
        if let Some(root) = &self.local {
            let mut entries =
                std::fs::read_dir(root).map_err(|e| Error::io(format!("cannot list {}", root.display()), e))?;
            return Ok(!entries.any(|e| e.map_or(true, |e| e.file_name() != "lost+found")));
        }
        let entries = self
            .rt
            .block_on(self.call(|| self.op.list("/")))
            .map_err(|e| self.map_err("cannot list", "/", e))?;
        Ok(entries.iter().all(|e| e.path() == "/" || e.path().is_empty()))
    }

    fn open_unchecked(loc: &Location, rt: Handle, limits: StorageLimits) -> Result<Store> {
        // The process-wide HTTP transport (reqwest + rustls) for the HTTP-based services.
        opendal::install_default();
        let attempt = limits.attempt();
        let op = build(loc)
            .map_err(|e| Error::config(format!("cannot configure storage `{}`", loc.display)).with_source(e))?
            .layer(TimeoutLayer::new().with_timeout(attempt).with_io_timeout(attempt))
            .layer(
                RetryLayer::new()
                    .with_max_times(limits.retries)
                    .with_jitter()
                    .with_factor(2.0)
                    .with_min_delay(Duration::from_millis(500))
                    .with_max_delay(Duration::from_secs(5))
                    .with_notify(retry_warning),
            );
        let sftp = loc.scheme == "sftp";
        if sftp {
            crate::storage::ssh::opened();
        }
        Ok(Store {
            op,
            rt,
            local: loc.local.clone(),
            display: loc.display.clone(),
            limits,
            sftp,
        })
    }

    /// Run one storage request. The retry layer has retried what the service calls
    /// temporary; for SFTP, whose service calls every ssh failure permanent, a connection
    /// failure that may pass ([`crate::storage::ssh::transient_connect_error`]) is retried here the
    /// same way: as many times, with the same back-off and warnings. Once the process is
    /// being interrupted, nothing new starts (but the clean-up's own requests).
    async fn call<T, F, Fut>(&self, mut f: F) -> opendal::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = opendal::Result<T>>,
    {
        let mut attempt = 0;
        loop {
            if crate::interrupt::stopping() {
                return Err(opendal::Error::new(opendal::ErrorKind::Unexpected, "interrupted"));
            }
            match f().await {
                Err(e)
                    if self.sftp
                        && attempt < self.limits.retries
                        && crate::storage::ssh::transient_connect_error(&e) =>
                {
                    attempt += 1;
                    let wait = backoff(attempt);
                    warn_retry(attempt, wait, &e);
                    tokio::time::sleep(wait).await;
                }
                r => return r,
            }
        }
    }

    /// What to show users.
    pub fn display(&self) -> &str {
        &self.display
    }

    /// Local directory when the repository is on a local file system.
    pub fn local_root(&self) -> Option<&PathBuf> {
        self.local.as_ref()
    }

    /// The runtime handle.
    pub fn runtime(&self) -> &Handle {
        &self.rt
    }

    /// Map an OpenDAL error on `path` to a library error.
    pub fn map_err(&self, what: &str, path: &str, e: opendal::Error) -> Error {
        use opendal::ErrorKind as K;
        let kind = match e.kind() {
            K::NotFound => ErrorKind::NotFound,
            K::PermissionDenied => ErrorKind::Permission,
            K::ConfigInvalid => ErrorKind::Config,
            K::AlreadyExists | K::ConditionNotMatch => ErrorKind::CantCreate,
            K::RateLimited => ErrorKind::Temporary,
            _ if crate::storage::ssh::refused(&e) || unauthorized(&e) => ErrorKind::Permission,
            // Persistent: temporary, and still failing after every retry (a 5xx, a timeout).
            _ if e.is_temporary() || e.is_persistent() || unreachable(&e) => ErrorKind::Unavailable,
            _ => ErrorKind::Io,
        };
        Error::new(kind, format!("{what} `{path}` in repository {}", self.display)).with_source(e)
    }

    /// Read a whole object.
    pub async fn read_async(&self, path: &str) -> Result<Vec<u8>> {
        if let Some(root) = &self.local {
            // One allocation of the exact size (OpenDAL's buffer would be copied once more:
            // twice a pack's size in memory while it is verified).
            let full = root.join(path);
            return tokio::task::spawn_blocking(move || std::fs::read(full))
                .await
                .map_err(|e| Error::general(format!("read task failed: {e}")))?
                .map_err(|e| Error::io(format!("cannot read `{path}` in repository {}", self.display), e));
        }
        self.call(|| self.op.read(path))
            .await
            .map(|b| b.to_vec())
            .map_err(|e| self.map_err("cannot read", path, e))
    }

    /// SHA-256 of a stored object's bytes, read as a stream (a buffer of 1 MiB, never the
    /// whole object in memory).
    pub async fn sha256_async(&self, path: &str) -> Result<[u8; 32]> {
        use futures::TryStreamExt;
        use sha2::{Digest, Sha256};
        let cannot = |e: std::io::Error| Error::io(format!("cannot read `{path}` in repository {}", self.display), e);
        if let Some(root) = &self.local {
            let full = root.join(path);
            return tokio::task::spawn_blocking(move || -> std::io::Result<[u8; 32]> {
                let mut h = Sha256::new();
                crate::util::read_blocks(std::fs::File::open(full)?, |b| h.update(b))?;
                Ok(h.finalize().into())
            })
            .await
            .map_err(|e| Error::general(format!("read task failed: {e}")))?
            .map_err(cannot);
        }
        let map = |e: opendal::Error| self.map_err("cannot read", path, e);
        let mut stream = self
            .call(|| async { self.op.reader(path).await?.into_bytes_stream(..).await })
            .await
            .map_err(map)?;
        let mut h = Sha256::new();
        while let Some(b) = stream.try_next().await.map_err(cannot)? {
            h.update(&b);
        }
        Ok(h.finalize().into())
    }

    /// Read `len` bytes at `offset`.
    pub async fn read_range_async(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let b = self
            .call(|| async { self.op.read_with(path).range(offset..offset + len).await })
            .await
            .map_err(|e| self.map_err("cannot read", path, e))?;
        if b.len() as u64 != len {
            return Err(Error::corrupt(
                path,
                format!("short read: {} of {len} bytes at offset {offset}", b.len()),
            ));
        }
        Ok(b.to_vec())
    }

    /// Write a whole object (atomic and durable on local disks). `exclusive` refuses to
    /// replace an existing object.
    pub async fn write_async(&self, path: &str, bytes: Vec<u8>, exclusive: bool) -> Result<()> {
        fault_point("write", path);
        if let Some(root) = &self.local {
            let full = root.join(path);
            let rel = path.to_string();
            return tokio::task::spawn_blocking(move || {
                crate::util::write_atomic(&full, &bytes, exclusive)?;
                damage_point(&rel, &full)
            })
            .await
            .map_err(|e| Error::general(format!("write task failed: {e}")))?
            .map_err(|e| {
                let mut err = Error::io(format!("cannot write `{path}` in repository {}", self.display), e);
                if err.kind() == ErrorKind::NotFound {
                    err = Error::new(ErrorKind::CantCreate, err.to_string());
                }
                err
            });
        }
        let exists = || {
            Error::new(
                ErrorKind::CantCreate,
                format!("`{path}` already exists in repository {}", self.display),
            )
        };
        let cap = self.op.info().capability();
        let conditional = exclusive && cap.write_with_if_not_exists;
        if exclusive && self.exists_async(path).await? {
            return Err(exists());
        }
        let bytes = opendal::Buffer::from(bytes);
        let r = self
            .call(|| async {
                let mut w = self.op.write_with(path, bytes.clone());
                if cap.write_with_content_type {
                    // Said, not left to the service: some (GCS emulators) answer a write
                    // without it with metadata OpenDAL cannot parse.
                    w = w.content_type("application/octet-stream");
                }
                // Conditional write: the service refuses if another writer got there first.
                w.if_not_exists(conditional).await
            })
            .await;
        match r {
            Ok(_) => Ok(()),
            Err(e) if conditional && e.kind() == opendal::ErrorKind::ConditionNotMatch => {
                // A retry after an attempt whose answer was lost finds the object written:
                // if it holds exactly these bytes, that attempt was ours.
                match self.call(|| self.op.read(path)).await {
                    Ok(there) if there.to_bytes() == bytes.to_bytes() => Ok(()),
                    _ => Err(exists()),
                }
            }
            Err(e) => Err(self.map_err("cannot write", path, e)),
        }
    }

    /// Does `path` exist?
    pub async fn exists_async(&self, path: &str) -> Result<bool> {
        self.call(|| self.op.exists(path))
            .await
            .map_err(|e| self.map_err("cannot stat", path, e))
    }

    /// Size of an object.
    pub async fn size_async(&self, path: &str) -> Result<u64> {
        self.call(|| self.op.stat(path))
            .await
            .map(|m| m.content_length())
            .map_err(|e| self.map_err("cannot stat", path, e))
    }

    /// When an object was last written, by storage's clock (`None` when the backend does not
    /// say).
    pub async fn modified_async(&self, path: &str) -> Result<Option<jiff::Timestamp>> {
        self.call(|| self.op.stat(path))
            .await
            .map(|m| m.last_modified().map(jiff::Timestamp::from))
            .map_err(|e| self.map_err("cannot stat", path, e))
    }

    /// Names and sizes of the objects under `dir/` (recursive), names relative to `dir`.
    pub async fn list_async(&self, dir: &str) -> Result<Vec<(String, u64)>> {
        let prefix = format!("{}/", dir.trim_end_matches('/'));
        let entries = match self
            .call(|| async { self.op.list_with(&prefix).recursive(true).await })
            .await
        {
            Ok(e) => e,
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.map_err("cannot list", &prefix, e)),
        };
        let mut out = Vec::new();
        for e in entries {
            if e.metadata().is_dir() {
                continue;
            }
            let rel = e.path().strip_prefix(&prefix).unwrap_or(e.path());
            let name = rel.rsplit('/').next().unwrap_or(rel);
            if name.starts_with('.') || rel.is_empty() {
                continue; // temp files of interrupted local writes
            }
            let size = if e.metadata().content_length() > 0 || self.local.is_some() {
                e.metadata().content_length()
            } else {
                self.size_async(e.path()).await.unwrap_or(0)
            };
            out.push((rel.to_string(), size));
        }
        out.sort();
        Ok(out)
    }

    /// Delete an object (missing is fine).
    pub async fn delete_async(&self, path: &str) -> Result<()> {
        fault_point("delete", path);
        if let Some(root) = &self.local {
            // Directly: a refused delete (read-only file system) fails at once, not after the
            // retry layer's back-off.
            return match std::fs::remove_file(root.join(path)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(
                    format!("cannot delete `{path}` in repository {}", self.display),
                    e,
                )),
                _ => Ok(()),
            };
        }
        self.call(|| self.op.delete(path))
            .await
            .map_err(|e| self.map_err("cannot delete", path, e))
    }

    /// Local repositories: remove temp files (names starting with `.`) that interrupted writes
    /// left, once they are older than `older_than` (no write takes that long). Returns how
    /// many were removed; object stores have none.
    pub fn remove_stale_temp_files(&self, older_than: Duration) -> Result<u64> {
        let Some(root) = &self.local else { return Ok(0) };
        let mut n = 0;
        let mut dirs = vec![root.clone()];
        while let Some(d) = dirs.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else { continue };
            for e in rd.flatten() {
                let Ok(ft) = e.file_type() else { continue };
                if ft.is_dir() {
                    dirs.push(e.path());
                    continue;
                }
                let old = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > older_than);
                if e.file_name().to_string_lossy().starts_with('.') && old {
                    std::fs::remove_file(e.path())
                        .map_err(|x| Error::io(format!("cannot remove {}", e.path().display()), x))?;
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    /// Blocking [`Store::read_async`]; never call from inside the runtime.
    pub fn read(&self, path: &str) -> Result<Vec<u8>> {
        self.rt.block_on(self.read_async(path))
    }
    /// Blocking [`Store::write_async`].
    pub fn write(&self, path: &str, bytes: Vec<u8>, exclusive: bool) -> Result<()> {
        self.rt.block_on(self.write_async(path, bytes, exclusive))
    }
    /// Blocking [`Store::exists_async`].
    pub fn exists(&self, path: &str) -> Result<bool> {
        self.rt.block_on(self.exists_async(path))
    }
    /// Blocking [`Store::list_async`].
    pub fn list(&self, dir: &str) -> Result<Vec<(String, u64)>> {
        self.rt.block_on(self.list_async(dir))
    }
    /// Blocking [`Store::delete_async`].
    pub fn delete(&self, path: &str) -> Result<()> {
        self.rt.block_on(self.delete_async(path))
    }
    /// Blocking [`Store::read_range_async`].
    pub fn read_range(&self, path: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.rt.block_on(self.read_range_async(path, offset, len))
    }
    /// Blocking [`Store::sha256_async`].
    pub fn sha256(&self, path: &str) -> Result<[u8; 32]> {
        self.rt.block_on(self.sha256_async(path))
    }
    /// Blocking [`Store::modified_async`].
    pub fn modified(&self, path: &str) -> Result<Option<jiff::Timestamp>> {
        self.rt.block_on(self.modified_async(path))
    }
    /// Blocking [`Store::size_async`].
    pub fn size(&self, path: &str) -> Result<u64> {
        self.rt.block_on(self.size_async(path))
    }
}

/// Storage path of a pack.
pub fn pack_path(id: &crate::format::Id) -> String {
    let h = id.to_hex();
    format!("data/{}/{}", &h[..2], h)
}

/// Without the test hooks (every build but the test suite's), storage mutations are not
/// counted and written bytes are left alone.
#[cfg(not(feature = "test-hooks"))]
fn fault_point(_op: &str, _path: &str) {}

#[cfg(not(feature = "test-hooks"))]
fn damage_point(_path: &str, _full: &std::path::Path) -> std::io::Result<()> {
    Ok(())
}
