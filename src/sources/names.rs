//! Database names in entry paths, SQL and connection strings: every name a server accepts
//! must survive the trip, and none may escape its quoting.

/// The entry path of database `name` with extension `ext` (`dump`, `sql`; empty for a
/// directory): bytes outside `[A-Za-z0-9_.-]`, and a leading dot, are percent-encoded, and
/// the reserved `globals.sql` is never produced for a database.
pub fn entry_path(name: &str, ext: &str) -> String {
    let mut p = String::with_capacity(name.len() + 5);
    for (i, b) in name.bytes().enumerate() {
        let plain = b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && i > 0);
        if plain {
            p.push(b as char);
        } else {
            p.push_str(&format!("%{b:02X}"));
        }
    }
    if p.is_empty() {
        p.push_str("%00");
    }
    if p == "globals" && ext == "sql" {
        p = "%67lobals".into();
    }
    if ext.is_empty() {
        p
    } else {
        format!("{p}.{ext}")
    }
}

/// A libpq connection string selecting database `name` (a bare name containing `=` would be
/// taken as a connection string by the tools).
pub fn pg_conninfo_dbname(name: &str) -> String {
    format!("dbname='{}'", name.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A PostgreSQL / MySQL string literal (standard-conforming strings).
pub fn sql_literal(s: &str) -> String {
    if s.contains('\\') {
        format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
    } else {
        format!("'{}'", s.replace('\'', "''"))
    }
}

/// A MySQL string literal (backslash escapes on, the server default).
pub fn my_literal(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A PostgreSQL identifier, always quoted.
pub fn pg_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// A MySQL identifier, always quoted.
pub fn my_ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_paths_are_plain_and_distinct() {
        assert_eq!(entry_path("mydb", "dump"), "mydb.dump");
        assert_eq!(entry_path("my db/x", "dump"), "my%20db%2Fx.dump");
        assert_eq!(entry_path(".hidden", ""), "%2Ehidden");
        assert_eq!(entry_path("..", "sql"), "%2E..sql");
        assert_eq!(entry_path("globals", "sql"), "%67lobals.sql");
        assert_eq!(entry_path("globals", "dump"), "globals.dump");
        assert_eq!(entry_path("ü", "sql"), "%C3%BC.sql");
        assert_ne!(entry_path("a%20", "sql"), entry_path("a ", "sql"));
    }

    #[test]
    fn quoting() {
        assert_eq!(pg_conninfo_dbname(r"a'b\c"), r"dbname='a\'b\\c'");
        assert_eq!(sql_literal("it's"), "'it''s'");
        assert_eq!(sql_literal(r"a\b"), r"E'a\\b'");
        assert_eq!(pg_ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(my_ident("a`b"), "`a``b`");
        assert_eq!(my_literal(r"it's\"), r"'it\'s\\'");
    }
}
