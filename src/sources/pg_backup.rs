//! What PostgreSQL's two physical backup methods (`pg_basebackup`'s tar and the file-by-file
//! copy in `pgdata`) share: the backup label's fields recovery depends on, and the server
//! facts a physical snapshot records.

use crate::error::{Error, Result};
use crate::sources::postgres::PgConn;
use crate::wal::names::Lsn;

/// What a backup label says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    /// `START WAL LOCATION`.
    pub start_lsn: Lsn,
    /// The file named beside it.
    pub start_wal: String,
    /// `START TIMELINE`.
    pub timeline: u32,
}

/// Parse the fields of a backup label that recovery depends on.
pub fn parse_label(text: &str) -> Result<Label> {
    let bad = |what: &str| Error::general(format!("backup label has no usable {what}:\n{text}"));
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
    };
    let start = field("START WAL LOCATION:").ok_or_else(|| bad("START WAL LOCATION"))?;
    // `0/2000028 (file 000000010000000000000002)`
    let (lsn, rest) = start.split_once(' ').ok_or_else(|| bad("START WAL LOCATION"))?;
    let start_wal = rest
        .trim()
        .strip_prefix("(file ")
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| bad("start WAL file"))?
        .to_string();
    let timeline = field("START TIMELINE:")
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| bad("START TIMELINE"))?;
    Ok(Label {
        start_lsn: lsn.parse().map_err(|_| bad("start LSN"))?,
        start_wal,
        timeline,
    })
}

/// The server's version, system identifier and WAL segment size.
pub fn server_info(conn: &PgConn) -> Result<(String, String, u32)> {
    let server_version = conn.value("postgres", "show server_version")?;
    let system_id = conn.value("postgres", "select system_identifier from pg_control_system()")?;
    let wal_segment_size: u32 = conn
        .value(
            "postgres",
            "select setting from pg_settings where name = 'wal_segment_size'",
        )?
        .parse()
        .map_err(|_| Error::general("the server reported an unreadable wal_segment_size"))?;
    Ok((server_version, system_id, wal_segment_size))
}
