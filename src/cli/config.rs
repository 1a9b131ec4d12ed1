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
}

/// The file's sections that are not global options: what commands read from it.
#[derive(Default, Debug)]
pub struct FileSettings {
    /// `[status]`.
    pub status: StatusConfig,
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
    g.repo = g.repo.take().or(fc.repository);
    g.password_file = g.password_file.take().or(fc.password_file);
    g.password_command = g.password_command.take().or(fc.password_command);
    g.cache_dir = g.cache_dir.take().or(fc.cache_dir);
    g.metrics_file = g.metrics_file.take().or(fc.metrics_file);
    Ok(FileSettings { status: fc.status })
}
