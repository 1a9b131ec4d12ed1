//! Database connection options shared by `snapshot` and `restore`, and the engine they select.

use std::path::PathBuf;

use clap::ValueEnum;
use dbbackup::sources::postgres::{PgConn, Postgres};

/// Database engines.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// PostgreSQL (pg_dump, pg_restore, psql).
    #[value(alias = "postgresql", alias = "pg")]
    Postgres,
}

/// How to reach the database server. Passwords are never taken here: use PGPASSWORD,
/// ~/.pgpass or a service file.
#[derive(clap::Args, Debug, Clone)]
pub struct ConnArgs {
    /// Database engine
    #[arg(long, value_enum, default_value_t = Engine::Postgres, env = "DBBACKUP_ENGINE")]
    pub engine: Engine,
    /// Database server host or socket directory [default: PGHOST, then the tools' default]
    #[arg(long)]
    pub host: Option<String>,
    /// Database server port [default: PGPORT, then 5432]
    #[arg(long)]
    pub port: Option<u16>,
    /// Database user [default: PGUSER, then the OS user]
    #[arg(long, short = 'U')]
    pub user: Option<String>,
    /// Directory holding the engine's client tools (pg_dump, pg_restore, psql) [default: PATH]
    #[arg(long, env = "DBBACKUP_DB_BIN_DIR", value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,
}

impl ConnArgs {
    /// The PostgreSQL engine for these settings.
    pub fn postgres(&self) -> Postgres {
        Postgres {
            conn: PgConn {
                host: self.host.clone(),
                port: self.port,
                user: self.user.clone(),
                bin_dir: self.bin_dir.clone(),
            },
        }
    }
}
