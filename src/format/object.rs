//! One typed path for every whole repository object: [`RepoObject`] gives a type its kind
//! (folder and associated data) and its payload codec; the repository seals, stores, reads
//! and opens it (`Repository::save` / `load`). Encoding returns a `Result` (a payload that
//! cannot be encoded is an error, never an empty object) and every decoder returns the
//! library's error, naming the object.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::{ObjectKind, FORMAT_VERSION};

/// A whole (not packed) repository object.
pub trait RepoObject: Sized {
    /// Its kind: the folder it is stored in and the associated data its seal binds.
    const KIND: ObjectKind;
    /// The payload, before compression and sealing.
    fn encode(&self) -> Result<Vec<u8>>;
    /// Decode the payload of `object` (its repository path, for errors).
    fn decode(object: &str, payload: &[u8]) -> Result<Self>;
}

/// Repository path of object `name` of kind `T`.
pub fn path_of<T: RepoObject>(name: impl std::fmt::Display) -> String {
    format!("{}/{name}", T::KIND.dir())
}

/// A JSON payload.
pub fn to_json<T: Serialize>(what: &str, v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::general(format!("cannot encode {what}: {e}")))
}

/// Decode the JSON payload of `object` and check its format version (`version` reads it).
pub fn from_json<T: for<'de> Deserialize<'de>>(object: &str, b: &[u8], version: impl Fn(&T) -> u32) -> Result<T> {
    let v: T = serde_json::from_slice(b).map_err(|e| Error::corrupt(object, e))?;
    if version(&v) != FORMAT_VERSION {
        return Err(Error::config(format!(
            "{object} has format version {}; upgrade dbbackup",
            version(&v)
        )));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::format::index::IndexSegment;
    use crate::format::lock::Lock;
    use crate::format::pending::DeletionPlan;
    use crate::format::snapshot::Manifest;
    use crate::format::wal::{ArchiveInfo, WalEntry};

    /// Every kind's decoder refuses a damaged payload with the one error kind, naming the
    /// object by its repository path.
    fn refuses_damage<T: RepoObject>() {
        let name = path_of::<T>("00ff");
        assert_eq!(name, format!("{}/00ff", T::KIND.dir()));
        for bad in [&b""[..], b"{", b"\x00\x01\x02garbage"] {
            let Err(e) = T::decode(&name, bad) else {
                panic!("{name}: {bad:?} decoded")
            };
            assert_eq!(e.kind(), ErrorKind::Corrupt, "{name}: {e}");
            assert!(e.to_string().contains(&name), "{e}");
        }
    }

    #[test]
    fn decoders_refuse_damage_as_corrupt_objects() {
        refuses_damage::<IndexSegment>();
        refuses_damage::<DeletionPlan>();
        refuses_damage::<Manifest>();
        refuses_damage::<WalEntry>();
        refuses_damage::<ArchiveInfo>();
        refuses_damage::<Lock>();
    }

    #[test]
    fn a_newer_json_object_asks_for_an_upgrade() {
        let e = from_json("snapshots/ab", br#"{"version": 99}"#, |v: &serde_json::Value| {
            v["version"].as_u64().unwrap_or(0) as u32
        })
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.to_string().contains("upgrade dbbackup"), "{e}");
    }
}
