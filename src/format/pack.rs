//! Pack layout: sealed blobs back to back, then a sealed header listing them, then an 8-byte
//! trailer (header length, magic). A pack's name is the SHA-256 of its bytes.

use super::{BlobKind, Encoding, Id, ObjectKind, Reader};
use crate::crypto::Keys;
use crate::error::{Error, Result};

/// Magic at the very end of every pack.
pub const PACK_MAGIC: &[u8; 4] = b"DBP1";
/// Trailer length: u32 header length + magic.
pub const TRAILER_LEN: usize = 8;
/// Encoded size of one [`BlobEntry`] (a delta entry also lists its bases).
pub const ENTRY_LEN: usize = 46;
/// Most bases one delta blob names (repo-format §5.1).
pub const MAX_BASES: usize = 4;
/// Largest chunk plaintext a v1 blob may hold (16 MiB).
pub const MAX_CHUNK: u32 = 16 << 20;

/// Where one blob lives inside its pack, and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobEntry {
    /// Chunk id (keyed BLAKE3 of the plaintext).
    pub id: Id,
    /// What the blob holds.
    pub kind: BlobKind,
    /// How the plaintext was encoded before sealing.
    pub encoding: Encoding,
    /// Byte offset of the sealed blob in the pack.
    pub offset: u32,
    /// Length of the sealed blob (nonce + ciphertext + tag).
    pub length: u32,
    /// Length of the chunk's plaintext.
    pub raw_length: u32,
    /// The base chunks of a `zstd-delta` blob, in reference order (1 to [`MAX_BASES`] of them
    /// exactly when `encoding` is `ZstdDelta`, else none).
    pub bases: Vec<Id>,
}

impl BlobEntry {
    /// Append the encoding: 46 bytes, then for a delta blob its base count (u8) and base ids.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.id.0);
        out.push(self.kind as u8);
        out.push(self.encoding as u8);
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.length.to_le_bytes());
        out.extend_from_slice(&self.raw_length.to_le_bytes());
        if !self.bases.is_empty() {
            out.push(self.bases.len() as u8);
            for b in &self.bases {
                out.extend_from_slice(&b.0);
            }
        }
    }

    /// Bytes [`BlobEntry::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        if self.bases.is_empty() {
            ENTRY_LEN
        } else {
            ENTRY_LEN + 1 + 32 * self.bases.len()
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> std::result::Result<BlobEntry, String> {
        let id = r.id()?;
        let kind = r.u8()?;
        let kind = BlobKind::from_u8(kind).ok_or_else(|| format!("unknown blob kind {kind}"))?;
        let enc = r.u8()?;
        let encoding = Encoding::from_u8(enc).ok_or_else(|| format!("unknown blob encoding {enc}"))?;
        let (offset, length, raw_length) = (r.u32()?, r.u32()?, r.u32()?);
        let bases = match encoding {
            Encoding::ZstdDelta if kind != BlobKind::Data => {
                return Err(format!("blob {id}: only data chunks may be delta-encoded"))
            }
            Encoding::ZstdDelta => {
                let n = r.u8()? as usize;
                if n == 0 || n > MAX_BASES {
                    return Err(format!("delta blob {id} names {n} bases (1 to {MAX_BASES} allowed)"));
                }
                (0..n).map(|_| r.id()).collect::<std::result::Result<Vec<_>, _>>()?
            }
            _ => Vec::new(),
        };
        check_bases(&id, &bases)?;
        Ok(BlobEntry {
            id,
            kind,
            encoding,
            offset,
            length,
            raw_length,
            bases,
        })
    }
}

/// A delta's bases must be distinct and must not include the chunk itself.
pub fn check_bases(id: &Id, bases: &[Id]) -> std::result::Result<(), String> {
    for (i, b) in bases.iter().enumerate() {
        if b == id {
            return Err(format!("blob {id} is a delta against itself"));
        }
        if bases[..i].contains(b) {
            return Err(format!("delta blob {id} names base {b} twice"));
        }
    }
    Ok(())
}

/// Encode a pack header's plaintext: u32 count, then the entries.
pub fn encode_header(entries: &[BlobEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + entries.iter().map(BlobEntry::encoded_len).sum::<usize>());
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        e.encode(&mut out);
    }
    out
}

/// Decode a pack header's plaintext.
pub fn decode_header(b: &[u8]) -> std::result::Result<Vec<BlobEntry>, String> {
    let mut r = Reader::new(b, "pack header");
    let n = r.u32()? as usize;
    if n.saturating_mul(ENTRY_LEN) > r.remaining() {
        return Err("pack header length does not match its entry count".into());
    }
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(BlobEntry::decode(&mut r)?);
    }
    r.done()?;
    Ok(v)
}

/// Append the sealed header and the trailer to a pack under construction.
pub fn finish_pack(keys: &Keys, pack: &mut Vec<u8>, entries: &[BlobEntry]) -> Result<()> {
    let sealed = keys.seal(ObjectKind::PackHeader.aad(), &encode_header(entries))?;
    let len = u32::try_from(sealed.len()).map_err(|_| Error::general("pack header too large"))?;
    pack.extend_from_slice(&sealed);
    pack.extend_from_slice(&len.to_le_bytes());
    pack.extend_from_slice(PACK_MAGIC);
    Ok(())
}

/// Length of the sealed header named by a pack's trailer, checked against the pack's size.
pub fn header_len_from_trailer(trailer: &[u8], pack_size: u64) -> std::result::Result<u64, String> {
    if trailer.len() != TRAILER_LEN || &trailer[4..] != PACK_MAGIC {
        return Err("pack trailer magic missing".into());
    }
    let n = u64::from(u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]));
    if n + TRAILER_LEN as u64 > pack_size {
        return Err("pack header length exceeds the pack".into());
    }
    Ok(n)
}

/// Open a sealed pack header and check every entry lies inside the blob area.
pub fn open_header(keys: &Keys, pack: &Id, sealed: &[u8], blob_area: u64) -> Result<Vec<BlobEntry>> {
    let object = format!("data/{pack}");
    let plain = keys
        .open(ObjectKind::PackHeader.aad(), sealed)
        .ok_or_else(|| Error::corrupt(&object, "pack header authentication failed"))?;
    let entries = decode_header(&plain).map_err(|e| Error::corrupt(&object, e))?;
    for e in &entries {
        if u64::from(e.offset) + u64::from(e.length) > blob_area {
            return Err(Error::corrupt(&object, format!("blob {} lies outside the pack", e.id)));
        }
    }
    Ok(entries)
}
