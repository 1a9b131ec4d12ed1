//! The repository location grammar: a local path, or `scheme://…` with OpenDAL's options
//! as query keys. Secrets are refused on the command line and unknown options are refused
//! with the list of known ones.

use std::collections::HashMap;
use std::path::PathBuf;

use opendal::services;

use crate::error::{Error, Result};

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
];
// SFTP's `key` is the path of a private key file, not the key: it may be given.

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
    if scheme == "fs" || scheme == "file" {
        return local(PathBuf::from(format!("/{}", url.path().trim_start_matches('/'))), s);
    }
    let display = {
        let mut u = url.clone();
        let _ = u.set_password(None);
        u.to_string()
    };
    backend_options(scheme, &url, &mut options)?;
    let scheme = if scheme == "webdavs" { "webdav" } else { scheme };
    Ok(Location {
        scheme: scheme.to_string(),
        local: None,
        options,
        display,
    })
}

/// Environment variables that hold storage credentials (read here or by OpenDAL): secrets of
/// the repository, kept from the operator's hooks.
pub const CREDENTIAL_ENV: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_CONNECTION_STRING",
    "B2_APPLICATION_KEY_ID",
    "B2_APPLICATION_KEY",
    "DBBACKUP_WEBDAV_PASSWORD",
];

/// Fill in what a `scheme://host/path` location means for OpenDAL (bucket, root, endpoint)
/// and the credentials its usual environment variables hold; options given in the query
/// string win.
fn backend_options(scheme: &str, url: &url::Url, options: &mut HashMap<String, String>) -> Result<()> {
    let host = url.host_str().unwrap_or("").to_string();
    let path = url.path().trim_start_matches('/').to_string();
    let root = format!("/{path}");
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let mut set = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            options.entry(k.to_string()).or_insert(v);
        }
    };
    match scheme {
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
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

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
