//! Database connection options shared by `snapshot` and `restore`, and the engine they select:
//! given with `--engine` for a snapshot (PostgreSQL by default), read from the snapshot for a
//! restore.

use std::path::PathBuf;

use clap::ValueEnum;
use dbbackup::sources::dump::DumpEngine;
use dbbackup::sources::load::LoadEngine;
use dbbackup::sources::mysql::{MyConn, Mysql};
use dbbackup::sources::postgres::{PgConn, Postgres};
use dbbackup::Error;

/// Database engines.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// PostgreSQL (pg_dump, pg_restore, psql).
    #[value(alias = "postgresql", alias = "pg")]
    Postgres,
    /// MySQL or MariaDB (mariadb-dump or mysqldump, and the mariadb or mysql client).
    #[value(alias = "mariadb")]
    Mysql,
}

/// How to reach the database server. Passwords are never taken here: PostgreSQL reads
/// PGPASSWORD, ~/.pgpass or a service file; MySQL/MariaDB read MYSQL_PWD or option files.
#[derive(clap::Args, Debug, Clone)]
pub struct ConnArgs {
    /// Database engine [default: postgres for snapshots; the snapshot's own for restores]
    #[arg(long, value_enum, env = "DBBACKUP_ENGINE")]
    pub engine: Option<Engine>,
    /// Database server host, or socket directory (PostgreSQL) / socket file (MySQL) [default:
    /// PGHOST or the MySQL option files, then the tools' default]
    #[arg(long)]
    pub host: Option<String>,
    /// Database server port [default: PGPORT, then 5432; MySQL: option files, then 3306]
    #[arg(long)]
    pub port: Option<u16>,
    /// Database user [default: PGUSER, then the OS user; MySQL: option files, then the OS user]
    #[arg(long, short = 'U')]
    pub user: Option<String>,
    /// Directory holding the engine's client tools (pg_dump, pg_restore, psql; mariadb-dump or
    /// mysqldump, mariadb or mysql) [default: PATH]
    #[arg(long, env = "DBBACKUP_DB_BIN_DIR", value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,
    /// MySQL/MariaDB: an option file read after the default ones, e.g. with the password in
    /// its [client] section (keep it mode 0600)
    #[arg(long, env = "DBBACKUP_MYSQL_DEFAULTS_FILE", value_name = "FILE")]
    pub defaults_file: Option<PathBuf>,
}

/// A database server to dump from or load into.
pub enum Db {
    /// PostgreSQL.
    Pg(Postgres),
    /// MySQL or MariaDB.
    My(Mysql),
}

impl Db {
    /// As a dump source.
    pub fn dump(&self) -> &dyn DumpEngine {
        match self {
            Db::Pg(p) => p,
            Db::My(m) => m,
        }
    }

    /// As a load target.
    pub fn load(&self) -> &dyn LoadEngine {
        match self {
            Db::Pg(p) => p,
            Db::My(m) => m,
        }
    }
}

impl ConnArgs {
    /// The server to dump from: `--engine`, PostgreSQL by default.
    pub fn for_snapshot(&self) -> dbbackup::Result<Db> {
        self.server(self.engine.unwrap_or(Engine::Postgres))
    }

    /// The server to load a snapshot taken from an `recorded` engine into.
    pub fn for_restore(&self, recorded: &str) -> dbbackup::Result<Db> {
        let of_snapshot = match recorded {
            "postgresql" => Engine::Postgres,
            "mysql" | "mariadb" => Engine::Mysql,
            other => {
                return Err(Error::usage(format!(
                    "this snapshot holds a `{other}` dump, which this version cannot load; restore it with --target"
                )))
            }
        };
        if let Some(e) = self.engine.filter(|e| *e != of_snapshot) {
            return Err(Error::usage(format!(
                "this snapshot holds a {recorded} dump; it cannot be loaded with --engine {}",
                e.to_possible_value()
                    .map(|v| v.get_name().to_string())
                    .unwrap_or_default()
            )));
        }
        self.server(of_snapshot)
    }

    fn server(&self, engine: Engine) -> dbbackup::Result<Db> {
        Ok(match engine {
            Engine::Postgres => {
                if self.defaults_file.is_some() {
                    return Err(Error::usage(
                        "--defaults-file is a MySQL/MariaDB option; PostgreSQL reads PGPASSWORD, ~/.pgpass or PGSERVICEFILE",
                    ));
                }
                Db::Pg(Postgres {
                    conn: PgConn {
                        host: self.host.clone(),
                        port: self.port,
                        user: self.user.clone(),
                        bin_dir: self.bin_dir.clone(),
                    },
                })
            }
            Engine::Mysql => {
                if let Some(f) = &self.defaults_file {
                    if !f.is_file() {
                        return Err(Error::new(
                            dbbackup::ErrorKind::Config,
                            format!("option file {} does not exist", f.display()),
                        ));
                    }
                }
                Db::My(Mysql::new(MyConn {
                    host: self.host.clone(),
                    port: self.port,
                    user: self.user.clone(),
                    bin_dir: self.bin_dir.clone(),
                    defaults_file: self.defaults_file.clone(),
                }))
            }
        })
    }
}
