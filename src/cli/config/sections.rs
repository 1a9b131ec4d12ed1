//! The configuration file's sections that are not command options: `[hooks.OPERATION]`,
//! `[[notify.webhook]]` and `[status]` (with `[status.sources.NAME]`), typed, and the same in a
//! profile, which replaces what it names.

use std::collections::BTreeMap;
use std::path::PathBuf;

use jiff::SignedDuration;
use serde::Deserialize;

/// The typed sections of the whole file (its other keys, command options, are read by
/// `keys.rs`; without `flatten`, so that serde's errors keep their line).
#[derive(Deserialize, Default, Debug)]
pub(super) struct Document {
    #[serde(default)]
    status: StatusConfig,
    #[serde(default)]
    hooks: BTreeMap<String, HookConfig>,
    #[serde(default)]
    notify: Option<NotifyConfig>,
    /// `[profile.NAME]`: the same sections (`keys.rs` refuses a profile in a profile).
    #[serde(default)]
    profile: BTreeMap<String, Document>,
}

impl Document {
    /// The sections with `profile`'s over the file's: its hooks replace the file's hooks of the
    /// same operation, its webhooks (if it has any) all of the file's, its status limits the
    /// file's limit of the same name.
    pub(super) fn settle(self, profile: Option<&str>) -> Result<FileSettings, String> {
        let Document {
            status,
            hooks,
            notify,
            profile: mut profiles,
        } = self;
        let mut out = FileSettings {
            status,
            hooks,
            notify: notify.unwrap_or_default(),
        };
        if let Some(s) = profile.and_then(|name| profiles.remove(name)) {
            out.hooks.extend(s.hooks);
            if let Some(n) = s.notify {
                out.notify = n;
            }
            let (st, base) = (s.status, &mut out.status);
            base.max_age = st.max_age.or(base.max_age);
            base.max_check_age = st.max_check_age.or(base.max_check_age);
            base.max_read_data_age = st.max_read_data_age.or(base.max_read_data_age);
            base.max_wal_age = st.max_wal_age.or(base.max_wal_age);
            base.sources.extend(st.sources);
        }
        validate(&out)?;
        Ok(out)
    }
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

fn validate(fc: &FileSettings) -> Result<(), String> {
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

/// `[status]`: the limits of `dbbackup status` (ages such as `26h`, `8d`), which `metrics serve`
/// reads too (its other keys are the flags of `status`, read by `keys.rs`).
#[derive(Deserialize, Default, Debug)]
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
