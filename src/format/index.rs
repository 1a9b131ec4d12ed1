//! Index segments: which blobs each pack holds. Written after the packs they name.

use super::pack::{BlobEntry, ENTRY_LEN};
use super::{Id, ObjectKind, Reader, RepoObject};
use crate::format::sketch::{Sketch, MAX_SUPER_FEATURES};

/// Magic at the start of an index segment's payload.
pub const INDEX_MAGIC: &[u8; 4] = b"DBIX";

/// The blobs of one pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackBlobs {
    /// Storage id of the pack.
    pub pack: Id,
    /// Its blobs, in pack order.
    pub blobs: Vec<BlobEntry>,
}

/// One index segment's payload.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IndexSegment {
    /// Segments this one replaces (written by prune; empty for snapshots).
    pub supersedes: Vec<Id>,
    /// Packs and their blobs.
    pub packs: Vec<PackBlobs>,
    /// Resemblance sketches of data chunks (version 2): where writers look for delta bases.
    pub sketches: Vec<(Id, Sketch)>,
}

impl RepoObject for IndexSegment {
    const KIND: ObjectKind = ObjectKind::Index;
    fn encode(&self) -> crate::error::Result<Vec<u8>> {
        Ok(self.encode_payload())
    }
    fn decode(object: &str, b: &[u8]) -> crate::error::Result<IndexSegment> {
        IndexSegment::decode_payload(b).map_err(|e| crate::error::Error::corrupt(object, e))
    }
}

impl IndexSegment {
    /// Number of blob entries.
    pub fn blob_count(&self) -> usize {
        self.packs.iter().map(|p| p.blobs.len()).sum()
    }

    /// Encode the payload: version 1 without sketches, version 2 with them.
    fn encode_payload(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(17 + self.packs.len() * 36 + self.blob_count() * ENTRY_LEN + self.sketches.len() * 81);
        out.extend_from_slice(INDEX_MAGIC);
        out.push(if self.sketches.is_empty() { 1 } else { 2 });
        out.extend_from_slice(&(self.supersedes.len() as u32).to_le_bytes());
        for s in &self.supersedes {
            out.extend_from_slice(&s.0);
        }
        encode_packs(&mut out, &self.packs);
        if !self.sketches.is_empty() {
            out.extend_from_slice(&(self.sketches.len() as u32).to_le_bytes());
            for (id, sk) in &self.sketches {
                out.extend_from_slice(&id.0);
                out.push(sk.0.len() as u8);
                for f in &sk.0 {
                    out.extend_from_slice(&f.to_le_bytes());
                }
            }
        }
        out
    }

    /// Decode a payload, checking every length against the bytes present.
    fn decode_payload(b: &[u8]) -> Result<IndexSegment, String> {
        let mut r = Reader::new(b, "index segment");
        if r.take(4)? != INDEX_MAGIC {
            return Err("index segment magic missing".into());
        }
        let v = r.u8()?;
        if v != 1 && v != 2 {
            return Err(format!("index segment version {v} is not supported by this dbbackup"));
        }
        let n = r.u32()? as usize;
        if n.saturating_mul(32) > r.remaining() {
            return Err("index segment truncated".into());
        }
        let supersedes = (0..n).map(|_| r.id()).collect::<Result<Vec<_>, _>>()?;
        let packs = decode_packs(&mut r)?;
        let mut sketches = Vec::new();
        if v == 2 {
            let k = r.u32()? as usize;
            // Every record takes at least 41 bytes.
            if k.saturating_mul(41) > r.remaining() {
                return Err("index segment sketch section truncated".into());
            }
            sketches.reserve(k);
            for _ in 0..k {
                let id = r.id()?;
                let m = r.u8()? as usize;
                if m == 0 || m > MAX_SUPER_FEATURES {
                    return Err(format!("sketch of chunk {id} has {m} super-features"));
                }
                let sk = (0..m).map(|_| r.u64()).collect::<Result<Vec<_>, _>>()?;
                sketches.push((id, Sketch(sk)));
            }
        }
        r.done()?;
        Ok(IndexSegment {
            supersedes,
            packs,
            sketches,
        })
    }
}

/// Append `u32 p || p × (pack id || u32 b || entry × b)` (shared with deletion plans).
pub(crate) fn encode_packs(out: &mut Vec<u8>, packs: &[PackBlobs]) {
    out.extend_from_slice(&(packs.len() as u32).to_le_bytes());
    for p in packs {
        out.extend_from_slice(&p.pack.0);
        out.extend_from_slice(&(p.blobs.len() as u32).to_le_bytes());
        for b in &p.blobs {
            b.encode(out);
        }
    }
}

/// Read what [`encode_packs`] wrote, checking every count against the bytes present.
pub(crate) fn decode_packs(r: &mut Reader<'_>) -> Result<Vec<PackBlobs>, String> {
    let np = r.u32()? as usize;
    let mut packs = Vec::with_capacity(np.min(r.remaining() / 36));
    for _ in 0..np {
        let pack = r.id()?;
        let nb = r.u32()? as usize;
        if nb.saturating_mul(ENTRY_LEN) > r.remaining() {
            return Err(format!("{} truncated", r.what()));
        }
        let blobs = (0..nb).map(|_| BlobEntry::decode(r)).collect::<Result<Vec<_>, _>>()?;
        packs.push(PackBlobs { pack, blobs });
    }
    Ok(packs)
}
