//! The configuration file (TOML): its keys, and how they fill in what flags and the
//! environment left unset (flags > environment > file > defaults).

use std::collections::BTreeMap;
use std::path::PathBuf;

use dbbackup::Error;
use jiff::SignedDuration;
use serde::Deserialize;

use super::Global;

/// Settings from the configuration file.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    repository: Option<String>,
    password_file: Option<PathBuf>,
    password_command: Option<String>,
    cache_dir: Option<PathBuf>,
    metrics_file: Option<PathBuf>,
    #[serde(default)]
    status: StatusConfig,
    #[serde(default)]
    hooks: BTreeMap<String, HookConfig>,
    #[serde(default)]
    notify: NotifyConfig,
}

/// The file's sections that are not global options: what commands read from it.
#[derive(Default, Debug)]
pub struct FileSettings {
    /// `[status]`.
    pub status: StatusConfig,
    /// `[hooks.OPERATION]`.
    pub hooks: BTreeMap<String, HookConfig>,
    /// `[notify]`.
    pub notify: NotifyConfig,
}

/// `[hooks.OPERATION]`: commands run around one operation (`sh -c`).
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct HookConfig {
    /// Before the command; its failure stops the command (exit 5).
    pub before: Option<String>,
    /// After the command, whatever its outcome.
    pub after: Option<String>,
    /// After a command that succeeded.
    pub on_success: Option<String>,
    /// After a command that failed, was partly done or found problems.
    pub on_failure: Option<String>,
    /// Each hook's time limit (default 10m).
    #[serde(default, deserialize_with = "age")]
    pub timeout: Option<SignedDuration>,
}

/// `[notify]`.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// `[[notify.webhook]]`.
    #[serde(default)]
    pub webhook: Vec<WebhookConfig>,
}

/// `[[notify.webhook]]`: where to POST a finished run.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// What warnings call it (default "webhook N").
    pub name: Option<String>,
    /// The URL, inline (for one that is no secret).
    pub url: Option<String>,
    /// A file whose first line is the URL.
    pub url_file: Option<PathBuf>,
    /// An environment variable holding the URL.
    pub url_env: Option<String>,
    /// A file whose first line is a bearer token.
    pub token_file: Option<PathBuf>,
    /// An environment variable holding a bearer token.
    pub token_env: Option<String>,
    /// `json`, `slack` or `alertmanager`.
    #[serde(default)]
    pub format: dbbackup::notify::Format,
    /// The statuses to notify (`ok`, `partial`, `problems`, `failed`; default all but `ok`).
    pub on: Option<Vec<String>>,
    /// Only these operations (default all).
    pub operations: Option<Vec<String>>,
    /// Per attempt (default 10s).
    #[serde(default, deserialize_with = "age")]
    pub timeout: Option<SignedDuration>,
    /// Attempts after the first (default 3).
    pub retries: Option<u32>,
}

/// The names `[hooks.NAME]` and a webhook's `operations` take.
pub const OPERATIONS: &[&str] = &[
    "init",
    "key",
    "snapshot",
    "restore",
    "snapshots",
    "forget",
    "prune",
    "ls",
    "stats",
    "check",
    "status",
    "wal_push",
    "wal_fetch",
    "wal_list",
    "wal_stats",
    "repair",
    "unlock",
    "metrics",
];

const STATUSES: &[&str] = &["ok", "partial", "problems", "failed"];

fn validate(fc: &FileConfig) -> Result<(), String> {
    let known = |what: &str, v: &str, list: &[&str]| {
        if list.contains(&v) {
            Ok(())
        } else {
            Err(format!("unknown {what} `{v}`; known: {}", list.join(", ")))
        }
    };
    for op in fc.hooks.keys() {
        known("operation in [hooks]", op, OPERATIONS)?;
    }
    for w in &fc.notify.webhook {
        for op in w.operations.iter().flatten() {
            known("operation in a webhook's operations", op, OPERATIONS)?;
        }
        for st in w.on.iter().flatten() {
            known("status in a webhook's on", st, STATUSES)?;
        }
    }
    Ok(())
}

/// `[status]`: the limits of `dbbackup status` (ages such as `26h`, `8d`).
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct StatusConfig {
    /// `--max-age`.
    #[serde(default, deserialize_with = "age")]
    pub max_age: Option<SignedDuration>,
    /// `--max-check-age`.
    #[serde(default, deserialize_with = "age")]
    pub max_check_age: Option<SignedDuration>,
    /// `--max-read-data-age`.
    #[serde(default, deserialize_with = "age")]
    pub max_read_data_age: Option<SignedDuration>,
    /// `--max-wal-age`.
    #[serde(default, deserialize_with = "age")]
    pub max_wal_age: Option<SignedDuration>,
    /// `[status.sources.NAME]`: per source name.
    #[serde(default)]
    pub sources: BTreeMap<String, SourceLimits>,
}

/// `[status.sources.NAME]`.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct SourceLimits {
    /// The newest snapshot of this source may be this old (instead of `max_age`).
    #[serde(default, deserialize_with = "age")]
    pub max_age: Option<SignedDuration>,
}

fn age<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SignedDuration>, D::Error> {
    let s = String::deserialize(d)?;
    dbbackup::status::parse_age(&s)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// Fill in from the configuration file (`--config`, or the default one when it exists) what
/// flags and the environment left unset; the sections commands read.
pub fn load_config_file(g: &mut Global) -> anyhow::Result<FileSettings> {
    let (path, explicit) = match &g.config {
        Some(p) => (p.clone(), true),
        None => match dirs::config_dir() {
            Some(d) => (d.join("dbbackup").join("config.toml"), false),
            None => return Ok(FileSettings::default()),
        },
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => return Ok(FileSettings::default()),
        Err(e) => {
            return Err(Error::io(format!("cannot read config file {}", path.display()), e).into());
        }
    };
    let fc: FileConfig =
        toml::from_str(&text).map_err(|e| Error::config(format!("config file {}: {e}", path.display())))?;
    validate(&fc).map_err(|e| Error::config(format!("config file {}: {e}", path.display())))?;
    g.repo = g.repo.take().or(fc.repository);
    g.password_file = g.password_file.take().or(fc.password_file);
    g.password_command = g.password_command.take().or(fc.password_command);
    g.cache_dir = g.cache_dir.take().or(fc.cache_dir);
    g.metrics_file = g.metrics_file.take().or(fc.metrics_file);
    Ok(FileSettings {
        status: fc.status,
        hooks: fc.hooks,
        notify: fc.notify,
    })
}
