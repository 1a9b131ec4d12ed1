//! The options every command takes, and small argument types the commands share.

use std::path::PathBuf;

use clap::ValueEnum;

/// Options every command takes (listed after the command's own in `-h`).
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// Repository location: a path, fs://, s3://bucket/prefix, azblob://, gcs://, b2://, sftp://, webdav://
    #[arg(short = 'r', long = "repo", env = "DBBACKUP_REPOSITORY", global = true)]
    pub repo: Option<String>,
    /// Read the repository password from this file (first line)
    #[arg(long, env = "DBBACKUP_PASSWORD_FILE", global = true)]
    pub password_file: Option<PathBuf>,
    /// Run this command (sh -c) and use the first line of its output as the password
    #[arg(long, env = "DBBACKUP_PASSWORD_COMMAND", global = true)]
    pub password_command: Option<String>,
    /// Configuration file (TOML) [default: ~/.config/dbbackup/config.toml]
    #[arg(long, env = "DBBACKUP_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Use the settings of this profile of the configuration file (`[profile.NAME]`) over its
    /// own
    #[arg(long, env = "DBBACKUP_PROFILE", global = true, value_name = "NAME")]
    pub profile: Option<String>,
    /// Directory of the local index cache [default: ~/.cache/dbbackup]
    #[arg(long, env = "DBBACKUP_CACHE_DIR", global = true)]
    pub cache_dir: Option<PathBuf>,
    /// Print results as JSON on stdout
    #[arg(long, global = true)]
    pub json: bool,
    /// Log format on stderr
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "DBBACKUP_LOG_FORMAT", global = true)]
    pub log_format: LogFormat,
    /// More log output (-v info, -vv debug)
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors on stderr, no progress
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Never draw progress bars
    #[arg(long, env = "DBBACKUP_NO_PROGRESS", global = true, value_parser = clap::builder::BoolishValueParser::new())]
    pub no_progress: bool,
    /// How long storage may leave a request unanswered, over all its attempts, before the
    /// command fails (e.g. 60s, 5m; each of the attempts gets an equal share)
    #[arg(long, env = "DBBACKUP_STORAGE_TIMEOUT", default_value = "60s", value_parser = parse_duration, global = true, value_name = "DURATION")]
    pub storage_timeout: std::time::Duration,
    /// Attempts after the first for a storage request that failed or stalled
    #[arg(
        long,
        env = "DBBACKUP_STORAGE_RETRIES",
        default_value_t = 3,
        global = true,
        value_name = "N"
    )]
    pub storage_retries: usize,
    /// Let a local repository owned by another OS user be written (its new files will belong
    /// to the user running this command)
    #[arg(long, env = "DBBACKUP_ALLOW_OTHER_OWNER", global = true, value_parser = clap::builder::BoolishValueParser::new())]
    pub allow_other_owner: bool,
    /// After the command, add its run (status, duration, figures) to this Prometheus text
    /// file, for node_exporter's textfile collector (config: `metrics_file`)
    #[arg(long, env = "DBBACKUP_METRICS_FILE", global = true, value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,
}

/// A duration such as `60s`, `5m`, `1h 30m` or `PT90S`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    s.parse::<jiff::SignedDuration>()
        .ok()
        .and_then(|d| std::time::Duration::try_from(d).ok())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("`{s}` is not a positive duration (e.g. 60s, 5m)"))
}

/// The lock option of commands that only read (`restore`, `check`, `wal fetch`).
#[derive(clap::Args, Debug)]
pub struct ReadLockArgs {
    /// Take no repository lock: for a repository this user or key may only read. A prune
    /// running meanwhile could delete data this command needs; it would then fail, never
    /// return wrong bytes. (Without the flag, a repository that refuses the lock's write is
    /// read without one, with a warning.)
    #[arg(long)]
    pub no_lock: bool,
}

/// Log line format.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}
