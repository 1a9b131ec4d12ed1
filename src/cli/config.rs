//! The configuration file (TOML): its keys, and how they fill in what flags and the
//! environment left unset (flags > environment > file > defaults).

use std::path::PathBuf;

use dbbackup::Error;

use super::Global;

/// Settings from the configuration file.
#[derive(serde::Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    repository: Option<String>,
    password_file: Option<PathBuf>,
    password_command: Option<String>,
    cache_dir: Option<PathBuf>,
}

/// Fill in from the configuration file (`--config`, or the default one when it exists) what
/// flags and the environment left unset.
pub fn load_config_file(g: &mut Global) -> anyhow::Result<()> {
    let (path, explicit) = match &g.config {
        Some(p) => (p.clone(), true),
        None => match dirs::config_dir() {
            Some(d) => (d.join("dbbackup").join("config.toml"), false),
            None => return Ok(()),
        },
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => return Ok(()),
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
    Ok(())
}
