//! The configuration file (TOML): a key for every flag (global options at the top, a section
//! per command), named profiles (`[profile.NAME]`, chosen with `--profile`), hooks and
//! webhooks. The file fills in what the command line and the environment left unset (flags >
//! environment > profile > file > defaults); `dbbackup config show` says where each setting
//! came from.

mod apply;
mod keys;
mod sections;
mod show;

use std::path::{Path, PathBuf};

use clap::Command;
use dbbackup::Error;
use toml::de::{DeTable, DeValue};

pub use apply::{prepare, Prepared};
pub use keys::Setting;
pub use sections::{FileSettings, HookConfig, NotifyConfig, WebhookConfig};
pub use show::{run, ConfigCmd};

/// The configuration as read.
#[derive(Default, Debug)]
pub struct Loaded {
    /// The file read, if there was one.
    pub path: Option<PathBuf>,
    /// The profile chosen.
    pub profile: Option<String>,
    /// Every command option the file sets (a profile's replacing the file's own).
    pub settings: Vec<Setting>,
    /// The sections that are not command options.
    pub sections: FileSettings,
}

/// The default file: `~/.config/dbbackup/config.toml`.
fn default_path() -> Option<PathBuf> {
    dirs::config_dir().map(|d| d.join("dbbackup").join("config.toml"))
}

/// Read the file (`config`, or the default one when it exists) against the command-line
/// definitions `root`, with `profile`'s settings over the file's own.
pub fn load(root: &Command, config: Option<&Path>, profile: Option<&str>) -> Result<Loaded, Error> {
    let (path, explicit) = match config {
        Some(p) => (p.to_path_buf(), true),
        None => match default_path() {
            Some(p) => (p, false),
            None => (PathBuf::new(), false),
        },
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
            return match profile {
                Some(p) => Err(Error::config(format!(
                    "profile `{p}` asked for, but there is no configuration file ({}; --config or DBBACKUP_CONFIG \
                     chooses another)",
                    path.display()
                ))),
                None => Ok(Loaded::default()),
            };
        }
        Err(e) => return Err(Error::io(format!("cannot read config file {}", path.display()), e)),
    };
    let shown = path.display().to_string();
    let bad = |e: String| Error::config(e);
    let in_file = |e: &dyn std::fmt::Display| Error::config(format!("config file {shown}: {e}"));
    let doc = DeTable::parse(&text).map_err(|e| in_file(&e))?;
    let mut reader = keys::Reader {
        text: &text,
        path: shown.clone(),
        profile: None,
    };
    let mut settings = Vec::new();
    reader
        .read(root, &mut Vec::new(), doc.get_ref(), &mut settings)
        .map_err(bad)?;
    let profiles = profiles(&reader, doc.get_ref()).map_err(bad)?;
    // Every profile is read, so that a mistake in one shows before the night it is used.
    for (name, table) in &profiles {
        reader.profile = Some(name.clone());
        let mut own = Vec::new();
        reader.read(root, &mut Vec::new(), table, &mut own).map_err(bad)?;
        if profile == Some(name.as_str()) {
            // The profile's value replaces the file's, and so does it the file's options
            // that exclude it (a profile's `read_data` the file's `read_data_subset`).
            settings.retain(|s| {
                !own.iter().any(|o| {
                    o.command == s.command && (o.id == s.id || apply::exclusive(root, &o.command, &o.id, &s.id))
                })
            });
            settings.extend(own);
        }
    }
    let typed: sections::Document = toml::from_str(&text).map_err(|e| in_file(&e))?;
    let sections = typed.settle(profile).map_err(|e| in_file(&e))?;
    if let Some(name) = profile {
        if !profiles.iter().any(|(n, _)| n == name) {
            let known: Vec<&str> = profiles.iter().map(|(n, _)| n.as_str()).collect();
            return Err(bad(format!(
                "no profile `{name}` in config file {shown} (profiles: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )));
        }
    }
    Ok(Loaded {
        path: Some(path),
        profile: profile.map(str::to_string),
        settings,
        sections,
    })
}

/// The `[profile.NAME]` tables.
fn profiles<'d>(reader: &keys::Reader<'_>, doc: &'d DeTable<'d>) -> Result<Vec<(String, &'d DeTable<'d>)>, String> {
    let Some(p) = doc.get("profile") else {
        return Ok(Vec::new());
    };
    let not_table = |at: usize| {
        format!(
            "config file {}, line {}: a profile is a section: [profile.NAME]",
            reader.path,
            reader.line(at)
        )
    };
    let DeValue::Table(t) = p.get_ref() else {
        return Err(not_table(p.span().start));
    };
    t.iter()
        .map(|(k, v)| match v.get_ref() {
            DeValue::Table(table) => Ok((k.get_ref().to_string(), table)),
            _ => Err(not_table(k.span().start)),
        })
        .collect()
}
