//! WAL catalog entries under `wal/<name hash>/` and archive records under `wal-archive/`
//! (repo-format §12): which PostgreSQL WAL files the repository holds, and for which cluster.

use serde::{Deserialize, Serialize};

use super::object::{from_json, to_json};
use super::snapshot::Entry;
use super::{ObjectKind, RepoObject};
use crate::error::Result;

/// One archived WAL file (segment, `.partial`, `.history` or `.backup`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalEntry {
    /// Format version.
    pub version: u32,
    /// The file's name as PostgreSQL gave it (`000000010000000000000003`, `00000002.history`).
    pub file: String,
    /// System identifier of the cluster that wrote it (decimal).
    pub system_id: String,
    /// Timeline from the name.
    pub timeline: u32,
    /// When it was pushed.
    pub time: jiff::Timestamp,
    /// Host that pushed it.
    pub hostname: String,
    /// Its bytes: `path` is the file name; size, SHA-256, chunks and content lists as in a
    /// snapshot entry.
    pub data: Entry,
    /// Plaintext bytes of chunks new to the repository when it was pushed.
    pub bytes_new: u64,
    /// Bytes those chunks took in packs.
    pub bytes_stored: u64,
}

/// The cluster a repository's WAL archive belongs to, written by the first push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveInfo {
    /// Format version.
    pub version: u32,
    /// System identifier of the cluster (decimal).
    pub system_id: String,
    /// WAL segment size in bytes.
    pub wal_segment_size: u32,
    /// When the archive was started.
    pub created: jiff::Timestamp,
    /// Host of the first push.
    pub hostname: String,
    /// The repository's id (`config.id`), binding the record to its repository. Records
    /// written before this field existed lack it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<super::Id>,
}

impl RepoObject for WalEntry {
    const KIND: ObjectKind = ObjectKind::Wal;
    fn encode(&self) -> Result<Vec<u8>> {
        to_json("a WAL catalog entry", self)
    }
    fn decode(object: &str, b: &[u8]) -> Result<WalEntry> {
        from_json(object, b, |e: &WalEntry| e.version)
    }
}

impl RepoObject for ArchiveInfo {
    const KIND: ObjectKind = ObjectKind::WalArchive;
    fn encode(&self) -> Result<Vec<u8>> {
        to_json("the WAL archive record", self)
    }
    fn decode(object: &str, b: &[u8]) -> Result<ArchiveInfo> {
        from_json(object, b, |a: &ArchiveInfo| a.version)
    }
}
