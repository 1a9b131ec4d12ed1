//! Loading PostgreSQL dumps: `pg_restore` (in one transaction when streamed, parallel from a
//! file or directory), `psql` for the globals, and databases created like the dumped one.

use super::load::{LoadEngine, LoadInput, LoadOptions, TargetState};
use super::names::{pg_conninfo_dbname, pg_ident, sql_literal};
use super::postgres::{classify, Postgres};
use super::process::{Failure, Process};
use crate::error::{Error, ErrorKind, Result};
use crate::format::snapshot::DatabaseInfo;

/// Settings whose values are lists of quoted elements (pg_dump treats them the same way).
const LIST_SETTINGS: [&str; 5] = [
    "search_path",
    "temp_tablespaces",
    "session_preload_libraries",
    "local_preload_libraries",
    "shared_preload_libraries",
];

/// `ALTER DATABASE db SET ...` for one stored `name=value` setting.
pub fn alter_database_set(db: &str, setting: &str) -> Option<String> {
    let (name, value) = setting.split_once('=')?;
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
        return None;
    }
    let value = if LIST_SETTINGS.contains(&name.to_ascii_lowercase().as_str()) {
        split_list(value)
            .iter()
            .map(|v| sql_literal(v))
            .collect::<Vec<_>>()
            .join(", ")
    } else {
        sql_literal(value)
    };
    Some(format!("ALTER DATABASE {} SET {name} TO {value}", pg_ident(db)))
}

/// Split a GUC list (`"$user", public`) into its elements, unquoted.
fn split_list(v: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = v.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur).trim().to_string()),
            c if c.is_whitespace() && !quoted && cur.is_empty() => {}
            c => cur.push(c),
        }
    }
    let last = cur.trim().to_string();
    if !last.is_empty() || !out.is_empty() {
        out.push(last);
    }
    out
}

impl LoadEngine for Postgres {
    fn state(&self, db: &str) -> Result<TargetState> {
        self.conn.target_state(db)
    }

    fn create(&self, db: &str, like: &DatabaseInfo) -> Result<()> {
        let mut sql = format!("CREATE DATABASE {} TEMPLATE template0", pg_ident(db));
        if let Some(e) = &like.encoding {
            sql.push_str(&format!(" ENCODING {}", sql_literal(e)));
        }
        if let Some(c) = &like.collate {
            sql.push_str(&format!(" LC_COLLATE {}", sql_literal(c)));
        }
        if let Some(c) = &like.ctype {
            sql.push_str(&format!(" LC_CTYPE {}", sql_literal(c)));
        }
        self.conn.query("postgres", &sql)?;
        for s in &like.settings {
            match alter_database_set(db, s) {
                Some(stmt) => {
                    self.conn.query("postgres", &stmt)?;
                }
                None => tracing::warn!(setting = %s, "skipping a database setting that cannot be restored"),
            }
        }
        Ok(())
    }

    fn parallel(&self) -> bool {
        true
    }

    fn loader(&self, db: &str, input: LoadInput<'_>, opts: &LoadOptions) -> Result<Process> {
        let mut c = self.conn.tool("pg_restore");
        c.arg("-d").arg(pg_conninfo_dbname(db)).arg("--exit-on-error");
        if opts.clean {
            c.args(["--clean", "--if-exists"]);
        }
        if opts.no_owner {
            c.arg("--no-owner");
        }
        match input {
            // Streamed: all or nothing.
            LoadInput::Stdin => {
                c.arg("--single-transaction");
            }
            LoadInput::File(p) | LoadInput::Dir(p) => {
                c.arg("-j").arg(opts.jobs.max(1).to_string()).arg(p);
            }
        }
        let stdin = matches!(input, LoadInput::Stdin);
        Process::spawn(c, &format!("pg_restore into `{db}`"), stdin, true)
    }

    fn globals_loader(&self) -> Result<Process> {
        let mut c = self.conn.tool("psql");
        c.args(["-X", "-q", "-v", "ON_ERROR_STOP=0", "-d", "postgres", "-f", "-"]);
        Process::spawn(c, "psql (globals)", true, true)
    }

    fn globals_result(&self, ok: bool, f: Failure) -> Result<()> {
        if !ok {
            return Err(classify(f, "postgres"));
        }
        let bad = unexpected_globals_errors(&f.tail);
        if bad.is_empty() {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::General,
            format!(
                "loading the globals (roles, tablespaces) failed:\n  {}",
                bad.join("\n  ")
            ),
        ))
    }

    fn classify(&self, f: Failure, db: &str) -> Error {
        classify(f, db)
    }
}

/// Errors in a globals load other than objects that already exist (the server's own
/// superuser, roles of an earlier restore).
pub fn unexpected_globals_errors(stderr_tail: &[String]) -> Vec<String> {
    stderr_tail
        .iter()
        .filter(|l| l.contains("ERROR:") && !l.contains("already exists"))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_settings() {
        assert_eq!(
            alter_database_set("d", "search_path=app, \"My Schema\", public").unwrap(),
            "ALTER DATABASE \"d\" SET search_path TO 'app', 'My Schema', 'public'"
        );
        assert_eq!(
            alter_database_set("d", "work_mem=64MB").unwrap(),
            "ALTER DATABASE \"d\" SET work_mem TO '64MB'"
        );
        assert_eq!(alter_database_set("d", "bad name=1"), None);
        assert_eq!(split_list("\"$user\", public"), vec!["$user", "public"]);
        assert_eq!(split_list("\"a\"\"b\""), vec!["a\"b"]);
    }
}
