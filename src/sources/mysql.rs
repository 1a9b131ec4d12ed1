//! MySQL and MariaDB through their own client tools: `mariadb` / `mysql` for metadata queries,
//! `mariadb-dump` / `mysqldump` (one consistent transaction, routines, triggers, events, hex
//! blobs) for each database, and `mariadb-dump --system=users` for accounts, roles and grants.
//! Host, port and user are passed as flags; passwords come only from MYSQL_PWD or option
//! files (`~/.my.cnf`, or the one given with `--defaults-file`), never a command line.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use super::dump::DumpEngine;
use super::names::my_literal;
use super::process::{program_name, version_line, Failure, Process};
use crate::error::{Error, ErrorKind, Hint, Result};
use crate::format::snapshot::DatabaseInfo;

/// Schemas that belong to the server, never dumped as databases (accounts and grants in
/// `mysql` are dumped as the globals).
const SYSTEM_SCHEMAS: &str = "('information_schema','performance_schema','sys','mysql')";

/// Database metadata columns: name, size, character set, collation.
const DB_COLUMNS: &str = "SELECT s.schema_name, \
     COALESCE((SELECT SUM(t.data_length + t.index_length) FROM information_schema.tables t \
               WHERE t.table_schema = s.schema_name), 0), \
     s.default_character_set_name, s.default_collation_name FROM information_schema.schemata s";

/// How to reach a MySQL or MariaDB server and where its client tools are.
#[derive(Debug, Clone, Default)]
pub struct MyConn {
    /// Host name or address, or a Unix socket path when it starts with `/`.
    pub host: Option<String>,
    /// TCP port (the connection is made over TCP when set).
    pub port: Option<u16>,
    /// User.
    pub user: Option<String>,
    /// Directory of the client tools (PATH when unset).
    pub bin_dir: Option<PathBuf>,
    /// An option file read after the default ones (credentials for unattended runs).
    pub defaults_file: Option<PathBuf>,
}

/// Is `name` an executable file in a directory of PATH?
fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false)
}

impl MyConn {
    /// The first of `names` that is installed (the first name when none is, so that the
    /// error names the tool to install).
    fn program(&self, names: [&str; 2]) -> PathBuf {
        let found = names.iter().find(|n| match &self.bin_dir {
            Some(d) => d.join(n).is_file(),
            None => on_path(n),
        });
        let name = found.copied().unwrap_or(names[0]);
        match &self.bin_dir {
            Some(d) => d.join(name),
            None => PathBuf::from(name),
        }
    }

    fn command(&self, prog: PathBuf) -> Command {
        let mut c = Command::new(prog);
        // Must come first: the tools only accept it as their first argument.
        if let Some(f) = &self.defaults_file {
            let mut a = std::ffi::OsString::from("--defaults-extra-file=");
            a.push(f);
            c.arg(a);
        }
        match &self.host {
            Some(h) if h.starts_with('/') => {
                c.arg(format!("--socket={h}"));
            }
            Some(h) => {
                c.arg(format!("--host={h}"));
            }
            None => {}
        }
        if let Some(p) = self.port {
            c.arg(format!("--port={p}"));
            // Without this, `localhost` (the default host) means the socket and the port is
            // silently ignored.
            if !self.host.as_deref().is_some_and(|h| h.starts_with('/')) {
                c.arg("--protocol=TCP");
            }
        }
        if let Some(u) = &self.user {
            c.arg(format!("--user={u}"));
        }
        c
    }

    /// The command-line client (`mariadb`, else `mysql`) with the connection set.
    pub fn client(&self) -> Command {
        self.command(self.program(["mariadb", "mysql"]))
    }

    /// The dump tool (`mariadb-dump`, else `mysqldump`) with the connection set.
    pub fn dumper(&self) -> Command {
        self.command(self.program(["mariadb-dump", "mysqldump"]))
    }

    /// Run `sql` (in database `db` when given); rows of fields, NULL as `NULL`.
    pub fn query(&self, db: Option<&str>, sql: &str) -> Result<Vec<Vec<String>>> {
        let mut c = self.client();
        c.args(["--batch", "--skip-column-names", "--connect-timeout=15"]);
        if let Some(db) = db {
            c.arg(format!("--database={db}"));
        }
        c.arg(format!("--execute={sql}"));
        let label = program_name(&c);
        let out = Process::spawn(c, &label, false, false)?
            .output()?
            .map_err(|f| classify(f, db.unwrap_or("")))?;
        Ok(parse_batch(&String::from_utf8_lossy(&out)))
    }

    /// Run `sql` and return the single value it yields.
    pub fn value(&self, sql: &str) -> Result<String> {
        self.query(None, sql)?
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next())
            .ok_or_else(|| Error::general(format!("the server returned no row for `{sql}`")))
    }
}

/// Rows of `--batch` output: tab-separated fields with `\t`, `\n`, `\\` and `\0` escaped.
pub fn parse_batch(text: &str) -> Vec<Vec<String>> {
    let Some(body) = text.strip_suffix('\n') else {
        return Vec::new();
    };
    body.split('\n')
        .map(|l| l.split('\t').map(unescape).collect())
        .collect()
}

fn unescape(f: &str) -> String {
    let mut out = String::with_capacity(f.len());
    let mut chars = f.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('0') => out.push('\0'),
            Some(o) => out.push(o),
            None => out.push('\\'),
        }
    }
    out
}

fn info_of_row(r: Vec<String>) -> Option<DatabaseInfo> {
    let mut it = r.into_iter();
    let name = it.next()?;
    // SUM() is a DECIMAL; an empty schema has 0.
    let size = it.next()?.split('.').next()?.parse().unwrap_or(0);
    let not_null = |v: Option<String>| v.filter(|v| v != "NULL");
    Some(DatabaseInfo {
        name,
        size,
        path: String::new(),
        encoding: not_null(it.next()),
        collate: not_null(it.next()),
        ctype: None,
        settings: Vec::new(),
    })
}

/// Map a failed MySQL/MariaDB tool to an error of the right kind with advice.
pub fn classify(f: Failure, db: &str) -> Error {
    let text = f.tail.join("\n");
    let has = |s: &str| text.contains(s);
    if has("Access denied for user") && has("(using password:") {
        return f
            .into_error(ErrorKind::Permission, "authentication failed")
            .with_hint(Hint::MysqlCredentials);
    }
    if has("Access denied") || has("command denied") || has("privilege") {
        return f.into_error(
            ErrorKind::Permission,
            "the user lacks a privilege; see the privileges section of docs/mysql.md",
        );
    }
    if has("Unknown database") {
        return f.into_error(
            ErrorKind::NotFound,
            &format!("database `{db}` does not exist on the server"),
        );
    }
    if has("Can't connect to")
        || has("Unknown server host")
        || has("Unknown MySQL server host")
        || has("Lost connection to")
        || has("server has gone away")
        || has("Too many connections")
    {
        return f
            .into_error(ErrorKind::Unavailable, "the server cannot be reached")
            .with_hint(Hint::MysqlAddress);
    }
    if has("Errcode: 28") || has("No space left on device") || (has("The table") && has("is full")) {
        return f.into_error(ErrorKind::Io, "the disk is full");
    }
    if has("Can't find any matching row in the user table") {
        return f
            .into_error(
                ErrorKind::General,
                "an account named by host name is ignored by a server running with skip-name-resolve, \
             so its accounts cannot be dumped: drop that account (DROP USER 'name'@'host')",
            )
            .with_hint(Hint::SkipGlobals);
    }
    if has("max_allowed_packet") {
        return f.into_error(
            ErrorKind::General,
            "a row is larger than the server accepts: raise the server's max_allowed_packet \
             (up to 1G, e.g. `SET GLOBAL max_allowed_packet = 1073741824`) and retry",
        );
    }
    f.into_error(ErrorKind::General, "")
}

/// The MySQL / MariaDB dump engine.
pub struct Mysql {
    /// Connection.
    pub conn: MyConn,
    /// `mysql` or `mariadb`, from the server's version.
    flavor: OnceLock<&'static str>,
    /// The dump tool's version line.
    tool: OnceLock<String>,
}

impl Mysql {
    /// An engine for this connection.
    pub fn new(conn: MyConn) -> Mysql {
        Mysql {
            conn,
            flavor: OnceLock::new(),
            tool: OnceLock::new(),
        }
    }

    fn tool_version(&self) -> Result<&str> {
        if let Some(v) = self.tool.get() {
            return Ok(v);
        }
        let v = version_line(self.conn.dumper(), "check the MySQL/MariaDB client installation")?;
        Ok(self.tool.get_or_init(|| v))
    }

    /// Whether the dump tool is MariaDB's (it can dump accounts, and has no GTID option).
    fn mariadb_tool(&self) -> Result<bool> {
        Ok(self.tool_version()?.contains("MariaDB"))
    }

    fn one_database(&self, name: &str) -> Result<Option<DatabaseInfo>> {
        let rows = self.conn.query(
            None,
            &format!("{DB_COLUMNS} WHERE s.schema_name = {}", my_literal(name)),
        )?;
        Ok(rows.into_iter().next().and_then(info_of_row))
    }
}

impl DumpEngine for Mysql {
    fn engine(&self) -> String {
        self.flavor.get().copied().unwrap_or("mysql").to_string()
    }

    fn server_version(&self, _db: &str) -> Result<String> {
        let v = self.conn.value("SELECT VERSION()")?;
        let _ = self.flavor.set(if v.contains("MariaDB") { "mariadb" } else { "mysql" });
        Ok(v)
    }

    fn dump_tool(&self) -> Result<String> {
        self.tool_version().map(str::to_string)
    }

    fn database(&self, name: &str) -> Result<DatabaseInfo> {
        self.one_database(name)?.ok_or_else(|| {
            Error::not_found(format!(
                "database `{name}` does not exist on the server (or the user has no privilege on it)"
            ))
        })
    }

    fn databases(&self) -> Result<Vec<DatabaseInfo>> {
        let rows = self.conn.query(
            None,
            &format!("{DB_COLUMNS} WHERE s.schema_name NOT IN {SYSTEM_SCHEMAS} ORDER BY 1"),
        )?;
        rows.into_iter()
            .map(|r| info_of_row(r).ok_or_else(|| Error::general("cannot parse the database list")))
            .collect()
    }

    fn warnings(&self, dbs: &[DatabaseInfo]) -> Result<Vec<String>> {
        if dbs.is_empty() {
            return Ok(Vec::new());
        }
        let list = dbs.iter().map(|d| my_literal(&d.name)).collect::<Vec<_>>().join(",");
        let rows = self.conn.query(
            None,
            &format!(
                "SELECT CONCAT(table_schema, '.', table_name, ' (', engine, ')') FROM information_schema.tables \
                 WHERE table_type = 'BASE TABLE' AND engine IS NOT NULL AND engine <> 'InnoDB' \
                 AND table_schema IN ({list}) ORDER BY 1"
            ),
        )?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<String> = rows.iter().filter_map(|r| r.first().cloned()).collect();
        let shown = names.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
        let more = if names.len() > 5 {
            format!(" and {} more", names.len() - 5)
        } else {
            String::new()
        };
        Ok(vec![format!(
            "{} tables are not InnoDB ({shown}{more}): their dump is not consistent with the rest \
             if they were written during it; convert them to InnoDB or keep writers away while dumping",
            names.len()
        )])
    }

    fn dump(&self, db: &DatabaseInfo) -> Result<Process> {
        let mut c = self.conn.dumper();
        c.args([
            "--single-transaction",
            "--routines",
            "--triggers",
            "--events",
            "--hex-blob",
            "--skip-dump-date",
            "--no-tablespaces",
            "--max-allowed-packet=1G",
            "--default-character-set=utf8mb4",
        ]);
        if !self.mariadb_tool()? {
            // Oracle's mysqldump would otherwise write the source's GTID set, which fails to
            // load into any server that has executed transactions of its own.
            c.arg("--set-gtid-purged=OFF");
        }
        c.arg("--").arg(&db.name);
        let label = format!("{} of `{}`", program_name(&c), db.name);
        Process::spawn(c, &label, false, false)
    }

    fn globals(&self, _db: &str, warnings: &mut Vec<String>) -> Result<Option<Process>> {
        if !self.mariadb_tool()? {
            warnings.push(format!(
                "accounts and grants were not saved: {} cannot dump them (MariaDB's mariadb-dump can, \
                 with --system=users); record them with SHOW CREATE USER and SHOW GRANTS",
                self.tool_version()?
            ));
            return Ok(None);
        }
        let mut c = self.conn.dumper();
        // CREATE USER IF NOT EXISTS: accounts the target already has (root) are kept as they are.
        c.args(["--system=users", "--insert-ignore", "--skip-dump-date"]);
        let label = format!("{} --system=users", program_name(&c));
        Process::spawn(c, &label, false, false).map(Some)
    }

    fn classify(&self, f: Failure, db: &str) -> Error {
        classify(f, db)
    }

    fn format_ext(&self) -> &'static str {
        "sql"
    }

    fn format_name(&self) -> &'static str {
        "sql"
    }

    fn maintenance_db(&self) -> &'static str {
        "mysql"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_output() {
        assert_eq!(
            parse_batch("a\\tb\tNULL\tx\\\\y\t\n\n"),
            vec![
                vec!["a\tb".to_string(), "NULL".into(), "x\\y".into(), "".into()],
                vec!["".to_string()]
            ]
        );
        assert!(parse_batch("").is_empty());
        let info = info_of_row(vec!["d".into(), "1234".into(), "utf8mb4".into(), "NULL".into()]).unwrap();
        assert_eq!(
            (info.size, info.encoding.as_deref(), info.collate),
            (1234, Some("utf8mb4"), None)
        );
    }

    #[test]
    fn connection_flags() {
        let c = MyConn {
            host: Some("/run/mysqld/mysqld.sock".into()),
            port: Some(3307),
            user: Some("backup".into()),
            bin_dir: Some("/opt/my/bin".into()),
            defaults_file: Some("/etc/dbbackup/my.cnf".into()),
        };
        let cmd = c.client();
        let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(
            args,
            [
                "--defaults-extra-file=/etc/dbbackup/my.cnf",
                "--socket=/run/mysqld/mysqld.sock",
                "--port=3307",
                "--user=backup"
            ]
        );
        assert_eq!(cmd.get_program(), "/opt/my/bin/mariadb");
        let tcp = MyConn {
            host: Some("db1".into()),
            port: Some(3306),
            ..MyConn::default()
        };
        let args: Vec<_> = tcp
            .client()
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(args, ["--host=db1", "--port=3306", "--protocol=TCP"]);
    }
}
