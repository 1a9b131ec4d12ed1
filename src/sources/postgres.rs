//! PostgreSQL through its own client tools: `psql` for metadata queries, `pg_dump` (custom or
//! directory format, uncompressed so dedup works), `pg_dumpall --globals-only`, `pg_restore`.
//! Connection settings follow libpq: flags become PGHOST/PGPORT/PGUSER in the tools'
//! environment; passwords come only from PGPASSWORD, the password file or a service file.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::dump::DumpEngine;
use super::load::TargetState;
use super::names::{pg_conninfo_dbname, sql_literal};
use super::process::{version_line, Failure, Process};
use crate::error::{Error, ErrorKind, Hint, Result};
use crate::format::snapshot::DatabaseInfo;

/// Field and record separators for query output (never in names).
const FS: char = '\u{1f}';
const RS: char = '\u{1e}';

/// Database metadata columns, settings joined by U+001D.
const DB_COLUMNS: &str =
    "select d.datname, pg_database_size(d.oid), pg_encoding_to_char(d.encoding), d.datcollate, d.datctype, \
     coalesce((select array_to_string(s.setconfig, E'\\x1d') from pg_db_role_setting s \
               where s.setdatabase = d.oid and s.setrole = 0), '') from pg_database d";

/// How to reach a PostgreSQL server and where its client tools are.
#[derive(Debug, Clone, Default)]
pub struct PgConn {
    /// Host or socket directory (PGHOST when unset).
    pub host: Option<String>,
    /// Port (PGPORT when unset).
    pub port: Option<u16>,
    /// User (PGUSER when unset).
    pub user: Option<String>,
    /// Directory of pg_dump, pg_restore, psql (PATH when unset).
    pub bin_dir: Option<PathBuf>,
}

impl PgConn {
    /// A command for client tool `name` with the connection environment set.
    pub fn tool(&self, name: &str) -> Command {
        let prog = match &self.bin_dir {
            Some(d) => d.join(name),
            None => PathBuf::from(name),
        };
        let mut c = Command::new(prog);
        if let Some(h) = &self.host {
            c.env("PGHOST", h);
        }
        if let Some(p) = self.port {
            c.env("PGPORT", p.to_string());
        }
        if let Some(u) = &self.user {
            c.env("PGUSER", u);
        }
        if std::env::var_os("PGCONNECT_TIMEOUT").is_none() {
            c.env("PGCONNECT_TIMEOUT", "15");
        }
        c
    }

    /// Run `sql` in database `db`; rows of fields.
    pub fn query(&self, db: &str, sql: &str) -> Result<Vec<Vec<String>>> {
        let mut c = self.tool("psql");
        c.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .arg(format!("--field-separator={FS}"))
            .arg(format!("--record-separator={RS}"))
            .arg("-d")
            .arg(pg_conninfo_dbname(db))
            .arg("-c")
            .arg(sql);
        let out = Process::spawn(c, "psql", false, false)?
            .output()?
            .map_err(|f| classify(f, db))?;
        let text = String::from_utf8_lossy(&out);
        Ok(text
            .split(RS)
            .map(|r| r.trim_matches('\n'))
            .filter(|r| !r.is_empty())
            .map(|r| r.split(FS).map(str::to_string).collect())
            .collect())
    }

    /// Run `sql` and return the single value it yields.
    pub fn value(&self, db: &str, sql: &str) -> Result<String> {
        self.query(db, sql)?
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next())
            .ok_or_else(|| Error::general(format!("psql returned no row for `{sql}`")))
    }

    /// What `tool --version` prints.
    pub fn tool_version(&self, tool: &str) -> Result<String> {
        version_line(self.tool(tool), "check the PostgreSQL client installation")
    }

    /// Metadata of database `name` (fails with 66 when it does not exist).
    pub fn database(&self, name: &str) -> Result<DatabaseInfo> {
        let rows = self.query(name, &format!("{DB_COLUMNS} where datname = current_database()"))?;
        rows.into_iter()
            .next()
            .and_then(meta_of_row)
            .ok_or_else(|| Error::general(format!("cannot read the metadata of database `{name}`")))
    }

    /// Does database `name` exist, and does it hold user objects?
    pub fn target_state(&self, name: &str) -> Result<TargetState> {
        let exists = self.value(
            "postgres",
            &format!("select count(*) from pg_database where datname = {}", sql_literal(name)),
        )? != "0";
        if !exists {
            return Ok(TargetState::Missing);
        }
        let n: u64 = self
            .value(
                name,
                "select (select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace \
                   where n.nspname not in ('pg_catalog','information_schema') and n.nspname !~ '^pg_(toast|temp)') \
                 + (select count(*) from pg_proc p join pg_namespace n on n.oid = p.pronamespace \
                   where n.nspname not in ('pg_catalog','information_schema')) \
                 + (select count(*) from pg_extension where extname <> 'plpgsql') \
                 + (select count(*) from pg_largeobject_metadata)",
            )?
            .parse()
            .unwrap_or(1);
        Ok(if n == 0 {
            TargetState::Empty
        } else {
            TargetState::NonEmpty(n)
        })
    }
}

fn meta_of_row(r: Vec<String>) -> Option<DatabaseInfo> {
    let mut it = r.into_iter();
    Some(DatabaseInfo {
        name: it.next()?,
        size: it.next()?.parse().ok()?,
        path: String::new(),
        encoding: it.next(),
        collate: it.next(),
        ctype: it.next(),
        settings: it
            .next()
            .map(|s| {
                s.split('\u{1d}')
                    .filter(|x| !x.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
    })
}

/// Map a failed PostgreSQL tool to an error of the right kind with advice.
pub fn classify(f: Failure, db: &str) -> Error {
    let text = f.tail.join("\n");
    let has = |s: &str| text.contains(s);
    if has("password authentication failed")
        || has("no password supplied")
        || has("pg_hba.conf")
        || has("authentication failed")
        || (has("role \"") && has("does not exist"))
    {
        return f
            .into_error(ErrorKind::Permission, "authentication failed")
            .with_hint(Hint::PgCredentials);
    }
    if has("permission denied") || has("must be superuser") || has("must be owner") {
        return f.into_error(
            ErrorKind::Permission,
            "the user lacks a privilege; see the privileges section of docs/postgresql.md",
        );
    }
    if has("database \"") && has("does not exist") {
        return f.into_error(
            ErrorKind::NotFound,
            &format!("database `{db}` does not exist on the server"),
        );
    }
    if has("could not connect")
        || has("Connection refused")
        || has("could not translate host name")
        || has("timeout expired")
        || has("No such file or directory")
        || has("server closed the connection")
        || has("the database system is starting up")
        || has("the database system is shutting down")
        || has("Network is unreachable")
        || (has("connection to server") && has("failed"))
    {
        return f
            .into_error(ErrorKind::Unavailable, "the server cannot be reached")
            .with_hint(Hint::PgAddress);
    }
    if has("No space left on device") {
        return f.into_error(ErrorKind::Io, "the disk is full");
    }
    f.into_error(ErrorKind::General, "")
}

/// The PostgreSQL dump engine.
pub struct Postgres {
    /// Connection.
    pub conn: PgConn,
}

impl DumpEngine for Postgres {
    fn engine(&self) -> String {
        "postgresql".into()
    }

    fn server_version(&self, db: &str) -> Result<String> {
        self.conn.value(db, "select current_setting('server_version')")
    }

    fn dump_tool(&self) -> Result<String> {
        self.conn.tool_version("pg_dump")
    }

    fn database(&self, name: &str) -> Result<DatabaseInfo> {
        self.conn.database(name)
    }

    fn databases(&self) -> Result<Vec<DatabaseInfo>> {
        let rows = self.conn.query(
            "postgres",
            &format!("{DB_COLUMNS} where not datistemplate and datallowconn order by datname"),
        )?;
        rows.into_iter()
            .map(|r| meta_of_row(r).ok_or_else(|| Error::general("cannot parse the database list")))
            .collect()
    }

    fn dump(&self, db: &DatabaseInfo) -> Result<Process> {
        let mut c = self.conn.tool("pg_dump");
        c.args(["-Fc", "-Z0", "-d"]).arg(pg_conninfo_dbname(&db.name));
        Process::spawn(c, &format!("pg_dump of `{}`", db.name), false, false)
    }

    fn directory_format(&self) -> bool {
        true
    }

    fn dump_to_dir(&self, db: &DatabaseInfo, dir: &Path, jobs: usize) -> Result<Process> {
        let mut c = self.conn.tool("pg_dump");
        c.args(["-Fd", "-Z0", "-j"])
            .arg(jobs.max(1).to_string())
            .arg("-f")
            .arg(dir)
            .arg("-d")
            .arg(pg_conninfo_dbname(&db.name));
        Process::spawn(c, &format!("pg_dump of `{}`", db.name), false, true)
    }

    fn globals(&self, db: &str, warnings: &mut Vec<String>) -> Result<Option<Process>> {
        let mut c = self.conn.tool("pg_dumpall");
        c.args(["--globals-only", "-l", db]);
        // Role passwords live in pg_authid, readable by superusers only; others get the roles
        // without their passwords (and are told so).
        let can_read = self
            .conn
            .value(db, "select has_table_privilege('pg_authid', 'select')")?;
        if can_read != "t" {
            c.arg("--no-role-passwords");
            warnings.push(
                "role passwords were not saved: the dumping user cannot read pg_authid (use a superuser to include them)"
                    .into(),
            );
        }
        Process::spawn(c, "pg_dumpall --globals-only", false, false).map(Some)
    }

    fn classify(&self, f: Failure, db: &str) -> Error {
        classify(f, db)
    }

    fn format_ext(&self) -> &'static str {
        "dump"
    }

    fn format_name(&self) -> &'static str {
        "custom"
    }

    fn maintenance_db(&self) -> &'static str {
        "postgres"
    }
}
