//! Snapshot manifests under `snapshots/`: what was backed up, when, from where, and the
//! content lists that reassemble each entry. Written last, after the index segments.

use serde::{Deserialize, Serialize};

use super::object::{from_json, to_json};
use super::{Id, ObjectKind, RepoObject};
use crate::error::Result;

/// How a snapshot's data was obtained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// Read from the tool's standard input.
    Stdin,
    /// The standard output of a command run through `sh -c`.
    Command {
        /// The command line.
        command: String,
    },
    /// Databases dumped with the engine's own tool.
    Database(Box<DatabaseSource>),
    /// A physical base backup of a PostgreSQL cluster (§8.4).
    Physical(Box<PhysicalSource>),
}

/// A physical base backup: what PITR needs to pick it and replay WAL from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhysicalSource {
    /// `postgresql`.
    pub engine: String,
    /// The server's version string.
    pub server_version: String,
    /// Host given to the tool (none: its default).
    pub host: Option<String>,
    /// Port given to the tool.
    pub port: Option<u16>,
    /// User given to the tool.
    pub user: Option<String>,
    /// The backup tool and its version (`pg_basebackup (PostgreSQL) 15.8`).
    pub tool: String,
    /// The cluster's system identifier (decimal).
    pub system_id: String,
    /// Timeline the backup started on.
    pub timeline: u32,
    /// WAL position where replay starts (the label's `START WAL LOCATION`).
    pub start_lsn: super::Lsn,
    /// WAL position where the backup becomes consistent.
    pub stop_lsn: super::Lsn,
    /// WAL file holding the start position.
    pub start_wal: String,
    /// WAL segment size of the cluster.
    pub wal_segment_size: u32,
    /// Whether the WAL from start to stop is inside the backup (`pg_wal/` of the tar), so it
    /// restores on its own without the archive.
    pub wal_included: bool,
    /// When the backup started.
    pub started: jiff::Timestamp,
    /// When it finished: PITR targets must be later.
    pub finished: jiff::Timestamp,
    /// The backup label as the server wrote it.
    pub backup_label: String,
    /// How the files were taken (§8.4): absent for a `base.tar` from pg_basebackup;
    /// `full`, `incremental` or `differential` for a file-by-file backup through the
    /// low-level backup API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// The snapshot whose unchanged files this one shares (incremental, differential).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<crate::format::Id>,
}

/// What a database snapshot holds and how it was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseSource {
    /// `postgresql`, `mysql` or `mariadb`.
    pub engine: String,
    /// The server's version string.
    pub server_version: String,
    /// Host given to the tools (none: their default, e.g. the local socket).
    pub host: Option<String>,
    /// Port given to the tools.
    pub port: Option<u16>,
    /// User given to the tools.
    pub user: Option<String>,
    /// The dump tool and its version, as it reports itself.
    pub dump_tool: String,
    /// `custom` or `directory` (pg_dump), `sql` (mysqldump / mariadb-dump).
    pub format: String,
    /// Whether every database of the server was asked for (`--all`).
    pub all: bool,
    /// The databases dumped.
    pub databases: Vec<DatabaseInfo>,
    /// Entry holding the server's global objects (roles, tablespaces; users and grants).
    pub globals: Option<String>,
    /// Databases that failed (with `--continue-on-error`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<FailedDatabase>,
    /// Things the operator should know (e.g. role passwords left out).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// One dumped database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseInfo {
    /// Its name on the server.
    pub name: String,
    /// Its size on the server in bytes when dumped.
    pub size: u64,
    /// Its entry (a file), or the entry directory prefix for the directory format.
    pub path: String,
    /// Character encoding (recreating the database with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// Collation (PostgreSQL `LC_COLLATE`, MySQL default collation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collate: Option<String>,
    /// PostgreSQL `LC_CTYPE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ctype: Option<String>,
    /// Database-level settings (`ALTER DATABASE ... SET name = value`), as `name=value`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub settings: Vec<String>,
}

impl DatabaseInfo {
    /// Whether entry `path` belongs to this database: its file, or a file under its directory.
    pub fn holds(&self, path: &str) -> bool {
        path.strip_prefix(self.path.as_str())
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }
}

/// A database whose dump failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedDatabase {
    /// Its name.
    pub name: String,
    /// Why.
    pub error: String,
}

impl Source {
    /// Short name of the source kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Stdin => "stdin",
            Source::Command { .. } => "command",
            Source::Database(_) => "database",
            Source::Physical(_) => "physical",
        }
    }

    /// The database engine, for database snapshots.
    pub fn engine(&self) -> Option<&str> {
        match self {
            Source::Database(d) => Some(&d.engine),
            Source::Physical(p) => Some(&p.engine),
            _ => None,
        }
    }
}

/// One stream of a snapshot (a dump file, the globals, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Relative path the entry restores to.
    pub path: String,
    /// Plaintext size in bytes.
    pub size: u64,
    /// SHA-256 of the whole stream, hex.
    pub sha256: String,
    /// Number of chunks.
    pub chunks: u64,
    /// Ids of the content-list blobs, in order.
    pub content: Vec<Id>,
}

/// Counters of the run that made the snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Bytes read from the source.
    pub bytes_read: u64,
    /// Plaintext bytes of chunks new to the repository.
    pub bytes_new: u64,
    /// Bytes those new chunks took in packs (compressed, encrypted).
    pub bytes_stored: u64,
    /// Chunks in the stream(s).
    pub chunks_total: u64,
    /// Chunks new to the repository.
    pub chunks_new: u64,
    /// Packs written.
    pub packs_written: u64,
    /// Wall time of the run in milliseconds.
    pub duration_ms: u64,
    /// New chunks stored as deltas against a similar stored chunk (format version 2).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub chunks_delta: u64,
    /// Bytes those deltas saved against storing the chunks plainly compressed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub bytes_delta_saved: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A snapshot manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version.
    pub version: u32,
    /// When the snapshot was taken (RFC 3339, UTC).
    pub time: jiff::Timestamp,
    /// Host that took it.
    pub hostname: String,
    /// OS user that took it.
    pub username: String,
    /// Source name (`--name`).
    pub name: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Where the data came from.
    pub source: Source,
    /// Version of dbbackup that wrote it.
    pub tool_version: String,
    /// The streams.
    pub entries: Vec<Entry>,
    /// Counters.
    pub summary: Summary,
}

impl RepoObject for Manifest {
    const KIND: ObjectKind = ObjectKind::Snapshot;
    fn encode(&self) -> Result<Vec<u8>> {
        to_json("a snapshot manifest", self)
    }
    fn decode(object: &str, b: &[u8]) -> Result<Manifest> {
        from_json(object, b, |m: &Manifest| m.version)
    }
}

impl Manifest {
    /// Sum of entry sizes.
    pub fn size(&self) -> u64 {
        self.entries.iter().map(|e| e.size).sum()
    }
}
