//! Deletion plans under `pending/`: packs prune has condemned, with the blobs they hold. Written
//! before the packs leave the index and deleted after the packs are swept (repo-format §10).

use super::index::{decode_packs, encode_packs, PackBlobs};
use super::{ObjectKind, Reader, RepoObject};

/// Magic at the start of a deletion plan's payload.
pub const PLAN_MAGIC: &[u8; 4] = b"DBPD";

/// One deletion plan's payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletionPlan {
    /// The writing prune's clock just before the plan was written.
    pub created: jiff::Timestamp,
    /// Condemned packs and their blobs.
    pub packs: Vec<PackBlobs>,
}

impl RepoObject for DeletionPlan {
    const KIND: ObjectKind = ObjectKind::Pending;
    fn encode(&self) -> crate::error::Result<Vec<u8>> {
        Ok(self.encode_payload())
    }
    fn decode(object: &str, b: &[u8]) -> crate::error::Result<DeletionPlan> {
        DeletionPlan::decode_payload(b).map_err(|e| crate::error::Error::corrupt(object, e))
    }
}

impl DeletionPlan {
    /// Encode the payload.
    fn encode_payload(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(17 + self.packs.iter().map(|p| 36 + p.blobs.len() * 46).sum::<usize>());
        out.extend_from_slice(PLAN_MAGIC);
        out.push(1);
        out.extend_from_slice(&self.created.as_millisecond().to_le_bytes());
        encode_packs(&mut out, &self.packs);
        out
    }

    /// Decode a payload, checking every length against the bytes present.
    fn decode_payload(b: &[u8]) -> Result<DeletionPlan, String> {
        let mut r = Reader::new(b, "deletion plan");
        if r.take(4)? != PLAN_MAGIC {
            return Err("deletion plan magic missing".into());
        }
        let v = r.u8()?;
        if v != 1 {
            return Err(format!("deletion plan version {v} is not supported by this dbbackup"));
        }
        let ms = r.u64()? as i64;
        let created =
            jiff::Timestamp::from_millisecond(ms).map_err(|e| format!("deletion plan time {ms} is invalid: {e}"))?;
        let packs = decode_packs(&mut r)?;
        r.done()?;
        Ok(DeletionPlan { created, packs })
    }
}
