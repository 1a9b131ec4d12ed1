//! The options that say which snapshots a command means (`--name`, `--host`, `--engine`,
//! `--tag`), shared by `snapshots`, `ls` and `restore`.

use dbbackup::repo::select::SnapshotFilter;

use super::db::Engine;

/// Which snapshots: by source name, host and tags (the engine comes with each command).
#[derive(clap::Args, Debug, Clone)]
pub struct SelectArgs {
    /// Only snapshots of this source name (with `latest`: the newest of them)
    #[arg(long)]
    pub name: Option<String>,
    /// Only snapshots taken on this host (as `snapshot --hostname` recorded it)
    #[arg(id = "snapshot_host", long = "snapshot-host", value_name = "HOST")]
    pub host: Option<String>,
    /// Only snapshots with this tag (repeat: with all of them)
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
}

impl SelectArgs {
    /// The filter, with the snapshots of `engine` only when given.
    pub fn filter(&self, engine: Option<Engine>) -> SnapshotFilter {
        SnapshotFilter {
            name: self.name.clone(),
            host: self.host.clone(),
            engines: match engine {
                None => vec![],
                Some(Engine::Postgres) => vec!["postgresql".into()],
                Some(Engine::Mysql) => vec!["mysql".into(), "mariadb".into()],
            },
            tags: self.tags.clone(),
        }
    }
}
