//! Check records under `checks/` (repo-format §13): how each `check` run ended, so every host
//! can tell when the repository was last verified, and how thoroughly.

use serde::{Deserialize, Serialize};

use super::object::{from_json, to_json};
use super::{Id, ObjectKind, RepoObject};
use crate::error::Result;

/// How much of the data a check read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadDataClass {
    /// Structure only.
    None,
    /// Some packs (`subset` says which).
    Subset,
    /// Every pack.
    All,
}

impl ReadDataClass {
    /// The name in records and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ReadDataClass::None => "none",
            ReadDataClass::Subset => "subset",
            ReadDataClass::All => "all",
        }
    }
}

/// The outcome of one `check` run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckRecord {
    /// Format version.
    pub version: u32,
    /// The repository's id (`config.id`).
    pub repository: Id,
    /// When the run finished.
    pub time: jiff::Timestamp,
    /// Host that ran it.
    pub hostname: String,
    /// Version of dbbackup that ran it.
    pub tool_version: String,
    /// How much data it read.
    pub read_data: ReadDataClass,
    /// With `Subset`: the request as given (`1/5`, `10%`, `500M`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    /// Snapshots checked.
    pub snapshots: u64,
    /// Packs in the repository.
    pub packs: u64,
    /// Packs read.
    pub packs_read: u64,
    /// Bytes read.
    pub bytes_read: u64,
    /// Errors found (0: clean).
    pub problems: u64,
    /// Warnings.
    pub warnings: u64,
}

impl CheckRecord {
    /// Whether the run found nothing wrong.
    pub fn clean(&self) -> bool {
        self.problems == 0
    }
}

impl RepoObject for CheckRecord {
    const KIND: ObjectKind = ObjectKind::Check;
    fn encode(&self) -> Result<Vec<u8>> {
        to_json("a check record", self)
    }
    fn decode(object: &str, b: &[u8]) -> Result<CheckRecord> {
        from_json(object, b, |c: &CheckRecord| c.version)
    }
}
