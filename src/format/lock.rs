//! Lock objects under `locks/`: who is writing to the repository right now.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::object::to_json;
use crate::format::{ObjectKind, RepoObject};

/// A lock's payload (JSON, sealed as an object of kind `lock`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    /// Format version.
    pub version: u32,
    /// Host of the process holding it.
    pub hostname: String,
    /// PID of the process holding it.
    pub pid: u32,
    /// OS user.
    pub username: String,
    /// What the process is doing (`snapshot`, `prune`, ...).
    pub operation: String,
    /// Exclusive locks (prune) exclude every other lock; shared ones only exclusive ones.
    pub exclusive: bool,
    /// When this lock object was written (RFC 3339, UTC).
    pub time: jiff::Timestamp,
    /// When the operation took its first lock (unchanged by refreshes). `None` in locks of
    /// older writers, which count as started at the beginning of time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<jiff::Timestamp>,
}

impl RepoObject for Lock {
    const KIND: ObjectKind = ObjectKind::Lock;
    fn encode(&self) -> Result<Vec<u8>> {
        to_json("a lock", self)
    }
    /// Any version is read: a lock only says who holds it.
    fn decode(object: &str, b: &[u8]) -> Result<Lock> {
        serde_json::from_slice(b).map_err(|e| Error::corrupt(object, e))
    }
}
