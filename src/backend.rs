//! Storage backends through OpenDAL: the repository location grammar, retry and timeout
//! layers, and durable atomic writes for local repositories.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use opendal::layers::{RetryLayer, TimeoutLayer};
use opendal::{services, Operator};
use tokio::runtime::Handle;

use crate::error::{Error, ErrorKind, Result};

/// Query-string keys that would put a secret on the command line; refused.
const SECRET_KEYS: &[&str] = &[
    "secret_access_key",
    "session_token",
    "account_key",
    "sas_token",
    "password",
    "application_key",
    "credential",
    "token",
    "key",
];

/// A parsed repository location.
#[derive(Debug, Clone)]
pub struct Location {
    /// Backend scheme (`fs`, `s3`, ...).
    pub scheme: String,
    /// Local directory for `fs`.
    pub local: Option<PathBuf>,
    /// OpenDAL configuration.
    pub options: HashMap<String, String>,
    /// What to show users (no secrets).
    pub display: String,
}

/// Parse a location: a plain path, or `scheme://...` with options in the query string.
pub fn parse_location(s: &str) -> Result<Location> {
    if s.is_empty() {
        return Err(Error::config("the repository location is empty"));
    }
    let Some((scheme, _)) = s.split_once("://") else {
        return local(PathBuf::from(s), s);
    };
    let url = url::Url::parse(s).map_err(|e| Error::config(format!("repository location `{s}`: {e}")))?;
    let mut options: HashMap<String, String> = HashMap::new();
    for (k, v) in url.query_pairs() {
        if SECRET_KEYS.contains(&k.as_ref()) {
            return Err(Error::config(format!(
                "`{k}` must not be given in the repository location (it would show on the command line); set it through the backend's environment variables"
            )));
        }
        options.insert(k.into_owned(), v.into_owned());
    }
    refuse_unknown_options(scheme, &options)?;
    let host = url.host_str().unwrap_or("").to_string();
    let path = url.path().trim_start_matches('/').to_string();
    let root = format!("/{path}");
    let display = {
        let mut u = url.clone();
        let _ = u.set_password(None);
        u.to_string()
    };
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let mut set = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            options.entry(k.to_string()).or_insert(v);
        }
    };
    match scheme {
        "fs" | "file" => return local(PathBuf::from(format!("/{}", url.path().trim_start_matches('/'))), s),
        "memory" => set("root", Some(root)),
        "s3" => {
            set("bucket", Some(host.clone()));
            set("root", Some(root));
            let region = env("AWS_REGION").or_else(|| env("AWS_DEFAULT_REGION")).or(Some("us-east-1".into()));
            set("region", region);
        }
        "azblob" => {
            set("container", Some(host.clone()));
            set("root", Some(root));
            set("account_name", env("AZURE_STORAGE_ACCOUNT"));
            set("account_key", env("AZURE_STORAGE_KEY"));
            set("sas_token", env("AZURE_STORAGE_SAS_TOKEN"));
        }
        "gcs" => {
            set("bucket", Some(host.clone()));
            set("root", Some(root));
            set("credential_path", env("GOOGLE_APPLICATION_CREDENTIALS"));
        }
        "b2" => {
            set("bucket", Some(host.clone()));
            set("root", Some(root));
            set("application_key_id", env("B2_APPLICATION_KEY_ID"));
            set("application_key", env("B2_APPLICATION_KEY"));
        }
        "sftp" => {
            let user = url.username();
            let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
            set("endpoint", Some(format!("ssh://{host}{port}")));
            if !user.is_empty() {
                set("user", Some(user.to_string()));
            }
            set("root", Some(root));
        }
        "webdav" | "webdavs" => {
            let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
            let proto = if scheme == "webdavs" { "https" } else { "http" };
            set("endpoint", Some(format!("{proto}://{host}{port}")));
            set("root", Some(root));
            set("username", env("DBBACKUP_WEBDAV_USERNAME"));
            set("password", env("DBBACKUP_WEBDAV_PASSWORD"));
        }
        other => {
            return Err(Error::config(format!(
                "unknown repository scheme `{other}://`; use a path, fs://, s3://, azblob://, gcs://, b2://, sftp://, webdav://, webdavs:// or memory://"
            )))
        }
    }
    let scheme = if scheme == "webdavs" { "webdav" } else { scheme };
    Ok(Location {
        scheme: scheme.to_string(),
        local: None,
        options,
        display,
    })
}

/// The options OpenDAL's configuration of `scheme` takes (read off its config type, so the
/// list follows OpenDAL), without those that must not be in a location.
fn known_options(scheme: &str) -> Vec<String> {
    fn keys<C: Default + serde::Serialize>() -> Vec<String> {
        match serde_json::to_value(C::default()) {
            Ok(serde_json::Value::Object(m)) => m
                .keys()
                .filter(|k| !SECRET_KEYS.contains(&k.as_str()))
                .cloned()
                .collect(),
            _ => Vec::new(),
        }
    }
    match scheme {
        "memory" => keys::<services::MemoryConfig>(),
        "s3" => keys::<services::S3Config>(),
        "azblob" => keys::<services::AzblobConfig>(),
        "gcs" => keys::<services::GcsConfig>(),
        "b2" => keys::<services::B2Config>(),
        "sftp" => keys::<services::SftpConfig>(),
        "webdav" | "webdavs" => keys::<services::WebdavConfig>(),
        _ => Vec::new(),
    }
}

/// A misspelled option would otherwise be ignored without a word (exit 78, with the list).
fn refuse_unknown_options(scheme: &str, options: &HashMap<String, String>) -> Result<()> {
    if matches!(scheme, "fs" | "file") {
        if let Some(k) = options.keys().next() {
            return Err(Error::config(format!(
                "unknown option `{k}` in the repository location: {scheme}:// takes none"
            )));
        }
        return Ok(());
    }
    let known = known_options(scheme);
    if known.is_empty() {
        return Ok(()); // an unknown scheme: reported below
    }
    let mut unknown: Vec<&String> = options.keys().filter(|k| !known.contains(k)).collect();
    unknown.sort();
    if let Some(k) = unknown.first() {
        return Err(Error::config(format!(
            "unknown option `{k}` in the repository location; {scheme}:// takes: {}",
            known.join(", ")
        )));
    }
    Ok(())
}

fn local(path: PathBuf, display: &str) -> Result<Location> {
    let abs = if path.is_absolute() {
        path
    } else {
        std::env::current_dir()
            .map_err(|e| Error::io("cannot read the current directory", e))?
            .join(path)
    };
    let mut options = HashMap::new();
    options.insert("root".to_string(), abs.to_string_lossy().into_owned());
    Ok(Location {
        scheme: "fs".into(),
        local: Some(abs),
        options,
        display: display.to_string(),
    })
}

/// Retries of a failed storage request: `DBBACKUP_STORAGE_RETRIES`, default 5.
fn retries() -> usize {
    std::env::var("DBBACKUP_STORAGE_RETRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
}

/// An opened storage backend.
#[derive(Clone)]
pub struct Store {
    op: Operator,
    rt: Handle,
    local: Option<PathBuf>,
    display: String,
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
    /// Open the backend for `loc`; all I/O runs on the runtime behind `rt`.
    pub fn open(loc: &Location, rt: Handle) -> Result<Store> {
        // The process-wide HTTP transport (reqwest + rustls) for the HTTP-based services.
        opendal::install_default();
        let op = build(loc)
            .map_err(|e| Error::config(format!("cannot configure storage `{}`", loc.display)).with_source(e))?
            .layer(
                TimeoutLayer::new()
                    .with_timeout(Duration::from_secs(120))
                    .with_io_timeout(Duration::from_secs(60)),
            )
            .layer(
                RetryLayer::new()
                    .with_max_times(retries())
                    .with_jitter()
                    .with_min_delay(Duration::from_millis(200))
                    .with_max_delay(Duration::from_secs(10)),
            );
        Ok(Store {
            op,
            rt,
            local: loc.local.clone(),
            display: loc.display.clone(),
        })
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
            _ if e.is_temporary() || unreachable(&e) => ErrorKind::Unavailable,
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
        self.op
            .read(path)
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
            .op
            .reader(path)
            .await
            .map_err(map)?
            .into_bytes_stream(..)
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
            .op
            .read_with(path)
            .range(offset..offset + len)
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
        if exclusive {
            if self.exists_async(path).await? {
                return Err(exists());
            }
            if self.op.info().capability().write_with_if_not_exists {
                // Conditional write: the service refuses if another writer got there first.
                return match self.op.write_with(path, bytes).if_not_exists(true).await {
                    Ok(_) => Ok(()),
                    Err(e) if e.kind() == opendal::ErrorKind::ConditionNotMatch => Err(exists()),
                    Err(e) => Err(self.map_err("cannot write", path, e)),
                };
            }
        }
        self.op
            .write(path, bytes)
            .await
            .map(|_| ())
            .map_err(|e| self.map_err("cannot write", path, e))
    }

    /// Does `path` exist?
    pub async fn exists_async(&self, path: &str) -> Result<bool> {
        self.op
            .exists(path)
            .await
            .map_err(|e| self.map_err("cannot stat", path, e))
    }

    /// Size of an object.
    pub async fn size_async(&self, path: &str) -> Result<u64> {
        self.op
            .stat(path)
            .await
            .map(|m| m.content_length())
            .map_err(|e| self.map_err("cannot stat", path, e))
    }

    /// When an object was last written, by storage's clock (`None` when the backend does not
    /// say).
    pub async fn modified_async(&self, path: &str) -> Result<Option<jiff::Timestamp>> {
        self.op
            .stat(path)
            .await
            .map(|m| m.last_modified().map(jiff::Timestamp::from))
            .map_err(|e| self.map_err("cannot stat", path, e))
    }

    /// Names and sizes of the objects under `dir/` (recursive), names relative to `dir`.
    pub async fn list_async(&self, dir: &str) -> Result<Vec<(String, u64)>> {
        let prefix = format!("{}/", dir.trim_end_matches('/'));
        let entries = match self.op.list_with(&prefix).recursive(true).await {
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
        self.op
            .delete(path)
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

/// Crash testing: with `DBBACKUP_TEST_KILL_AT_MUTATION=N`, the process kills itself with
/// SIGKILL just before its N-th storage write or delete (counting from 1), so tests can stop
/// an operation between any two of its storage mutations; with `0` it only prints each
/// mutation to stderr (`test-mutation N write|delete PATH`). Never set in normal use.
fn fault_point(op: &str, path: &str) {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static AT: OnceLock<Option<u64>> = OnceLock::new();
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let at = AT.get_or_init(|| {
        std::env::var("DBBACKUP_TEST_KILL_AT_MUTATION")
            .ok()
            .and_then(|v| v.parse().ok())
    });
    if let Some(at) = at {
        let n = COUNT.fetch_add(1, Ordering::SeqCst) + 1;
        if *at == 0 {
            eprintln!("test-mutation {n} {op} {path}");
        } else if n == *at {
            // SAFETY: kill(2) on our own pid has no memory-safety preconditions.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
    }
}

/// Storage fault testing: with `DBBACKUP_TEST_DAMAGE_WRITES=PREFIX`, every local object whose
/// repository path starts with PREFIX has its last byte flipped right after it was written, as
/// a disk that stores other bytes than it was given would. Never set in normal use.
fn damage_point(path: &str, full: &std::path::Path) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom, Write};
    match std::env::var("DBBACKUP_TEST_DAMAGE_WRITES") {
        Ok(prefix) if path.starts_with(&prefix) => {}
        _ => return Ok(()),
    }
    let mut f = std::fs::OpenOptions::new().read(true).write(true).open(full)?;
    let mut b = [0u8; 1];
    f.seek(SeekFrom::End(-1))?;
    f.read_exact(&mut b)?;
    f.seek(SeekFrom::End(-1))?;
    f.write_all(&[b[0] ^ 0x01])
}

/// Did the request fail to reach the service at all (connection refused, DNS, timeout)?
/// OpenDAL reports these as `Unexpected` once retries are exhausted.
fn unreachable(e: &opendal::Error) -> bool {
    let text = format!("{e:?}").to_ascii_lowercase();
    [
        "error sending request",
        "tcp connect",
        "dns error",
        "connection refused",
        "timed out",
        "timeout",
    ]
    .iter()
    .any(|s| text.contains(s))
}

/// Storage path of a pack.
pub fn pack_path(id: &crate::format::Id) -> String {
    let h = id.to_hex();
    format!("data/{}/{}", &h[..2], h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_locations() {
        let l = parse_location("/srv/repo").unwrap();
        assert_eq!(l.scheme, "fs");
        assert_eq!(l.local.unwrap(), PathBuf::from("/srv/repo"));
        let l = parse_location("s3://bkt/prod/db?endpoint=http://127.0.0.1:9000").unwrap();
        assert_eq!(l.scheme, "s3");
        assert_eq!(l.options["bucket"], "bkt");
        assert_eq!(l.options["root"], "/prod/db");
        assert_eq!(l.options["endpoint"], "http://127.0.0.1:9000");
        let l = parse_location("sftp://backup@host:2222/srv/repo").unwrap();
        assert_eq!(l.options["endpoint"], "ssh://host:2222");
        assert_eq!(l.options["user"], "backup");
        assert_eq!(
            parse_location("fs:///a/b").unwrap().local.unwrap(),
            PathBuf::from("/a/b")
        );
        assert!(parse_location("s3://b/p?secret_access_key=x").is_err());
        assert!(parse_location("ftp://x/y").is_err());
    }

    #[test]
    fn refuses_unknown_location_options() {
        let e = parse_location("s3://b/p?bogus=1").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(
            e.to_string().contains("`bogus`") && e.to_string().contains("endpoint"),
            "{e}"
        );
        assert!(parse_location("s3://b/p?endpoint=http://x&enable_virtual_host_style=true&region=eu-west-1").is_ok());
        assert!(parse_location("azblob://c/p?endpoint=http://127.0.0.1:10000/acct").is_ok());
        assert!(parse_location("gcs://b/p?endpoint=http://x&predefined_acl=private").is_ok());
        assert!(parse_location("sftp://h/p?known_hosts_strategy=accept").is_ok());
        assert!(parse_location("webdav://h/p?endpointx=1").is_err());
        assert_eq!(parse_location("fs:///a?x=1").unwrap_err().kind(), ErrorKind::Config);
    }
}
