//! Loading MySQL / MariaDB dumps: the `mariadb` / `mysql` client reads the dump streamed from
//! the repository and stops at the first error; databases are created with the dumped
//! character set and collation; accounts and grants are loaded with `CREATE USER IF NOT
//! EXISTS`, so the target's own accounts are left as they are.

use super::load::{LoadEngine, LoadInput, LoadOptions, TargetState};
use super::mysql::{classify, Mysql};
use super::names::{my_ident, my_literal};
use super::process::{program_name, Failure, Process};
use crate::error::{Error, Hint, Result};
use crate::format::snapshot::DatabaseInfo;

/// A character set or collation name safe to put in SQL unquoted.
fn plain_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `CREATE DATABASE` for `db` with the character set and collation of `like`.
pub fn create_database_sql(db: &str, like: &DatabaseInfo) -> String {
    let mut sql = format!("CREATE DATABASE {}", my_ident(db));
    match like.encoding.as_deref() {
        Some(cs) if plain_name(cs) => sql.push_str(&format!(" CHARACTER SET {cs}")),
        Some(cs) => tracing::warn!(charset = %cs, "skipping a character set name that cannot be restored"),
        None => {}
    }
    match like.collate.as_deref() {
        Some(co) if plain_name(co) => sql.push_str(&format!(" COLLATE {co}")),
        Some(co) => tracing::warn!(collation = %co, "skipping a collation name that cannot be restored"),
        None => {}
    }
    sql
}

impl LoadEngine for Mysql {
    fn state(&self, db: &str) -> Result<TargetState> {
        let l = my_literal(db);
        let rows = self.conn.query(
            None,
            &format!(
                "SELECT (SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = {l}), \
                 (SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = {l}) \
                 + (SELECT COUNT(*) FROM information_schema.routines WHERE routine_schema = {l}) \
                 + (SELECT COUNT(*) FROM information_schema.events WHERE event_schema = {l})"
            ),
        )?;
        let row = rows.into_iter().next().unwrap_or_default();
        let num = |i: usize| row.get(i).and_then(|v| v.parse::<u64>().ok());
        match (num(0), num(1)) {
            (Some(0), _) => Ok(TargetState::Missing),
            (Some(_), Some(0)) => Ok(TargetState::Empty),
            (Some(_), Some(n)) => Ok(TargetState::NonEmpty(n)),
            _ => Err(Error::general(format!("cannot read the state of database `{db}`"))),
        }
    }

    fn create(&self, db: &str, like: &DatabaseInfo) -> Result<()> {
        self.conn.query(None, &create_database_sql(db, like))?;
        Ok(())
    }

    fn check_options(&self, opts: &LoadOptions) -> Result<()> {
        if opts.no_owner {
            return Err(Error::usage(
                "MySQL/MariaDB dumps keep their DEFINER clauses: ownership cannot be left out \
                 (the restoring user needs SET USER or SUPER for definers other than itself)",
            )
            .with_hint(Hint::NoOwnerIsPostgres));
        }
        Ok(())
    }

    fn parallel(&self) -> bool {
        false
    }

    fn loader(&self, db: &str, input: LoadInput<'_>, opts: &LoadOptions) -> Result<Process> {
        if !matches!(input, LoadInput::Stdin) {
            return Err(Error::usage("the MySQL/MariaDB client loads dumps from a stream only"));
        }
        if opts.clean {
            // Every table, view, routine and event in a dump is preceded by its DROP ... IF EXISTS.
            tracing::info!("MySQL/MariaDB dumps drop each object before recreating it; cleaning first adds nothing");
        }
        let mut c = self.conn.client();
        c.args(["--batch", "--max-allowed-packet=1G", "--default-character-set=utf8mb4"])
            .arg(format!("--database={db}"));
        let label = format!("{} into `{db}`", program_name(&c));
        Process::spawn(c, &label, true, true)
    }

    fn globals_loader(&self) -> Result<Process> {
        let mut c = self.conn.client();
        c.args(["--batch", "--default-character-set=utf8mb4"]);
        let label = format!("{} (accounts and grants)", program_name(&c));
        Process::spawn(c, &label, true, true)
    }

    fn globals_result(&self, ok: bool, f: Failure) -> Result<()> {
        if ok {
            Ok(())
        } else {
            Err(classify(f, ""))
        }
    }

    fn classify(&self, f: Failure, db: &str) -> Error {
        classify(f, db)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_statement() {
        let like = DatabaseInfo {
            name: "x".into(),
            size: 0,
            path: String::new(),
            encoding: Some("latin1".into()),
            collate: Some("latin1_swedish_ci".into()),
            ctype: None,
            settings: Vec::new(),
        };
        assert_eq!(
            create_database_sql("a`b", &like),
            "CREATE DATABASE `a``b` CHARACTER SET latin1 COLLATE latin1_swedish_ci"
        );
        let odd = DatabaseInfo {
            encoding: Some("x; DROP".into()),
            collate: None,
            ..like
        };
        assert_eq!(create_database_sql("d", &odd), "CREATE DATABASE `d`");
    }
}
