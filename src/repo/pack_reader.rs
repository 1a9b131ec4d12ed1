//! The pack reader: a pack's header and blobs authenticated, from a whole pack in memory
//! or (the header alone) by two range reads. Used by the packer to verify what it wrote,
//! by check, prune and repair.

use crate::error::{Error, Result};
use crate::format::pack::{header_len_from_trailer, open_header, BlobEntry, TRAILER_LEN};
use crate::format::Id;
use crate::repo::blob::{open_blob, open_delta};
use crate::repo::index::BlobLocation;
use crate::repo::Repository;
use crate::storage::pack_path;

/// Verify a whole pack: name, trailer, header, and every blob. Returns (blobs, bytes).
pub fn verify_pack(keys: &crate::crypto::Keys, id: &Id, bytes: &[u8]) -> Result<(u64, u64)> {
    let entries = open_pack(keys, id, bytes)?;
    Ok((entries.len() as u64, bytes.len() as u64))
}

/// [`verify_pack`], returning the pack's entries: nothing is returned unless every blob
/// authenticated, decoded and matched its id.
pub fn open_pack(keys: &crate::crypto::Keys, id: &Id, bytes: &[u8]) -> Result<Vec<BlobEntry>> {
    if Id::of_stored(bytes) != *id {
        return Err(Error::corrupt(
            pack_path(id),
            "SHA-256 of its bytes does not match its name",
        ));
    }
    open_blobs(keys, id, bytes)
}

/// Authenticate the header of pack `id` held in `bytes`, then every blob: decoded and matched
/// against its id (deltas only authenticated; `rebuild_delta` rebuilds them). The pack's name
/// is not checked: [`open_pack`] does that.
pub fn open_blobs(keys: &crate::crypto::Keys, id: &Id, bytes: &[u8]) -> Result<Vec<BlobEntry>> {
    let entries = pack_header(keys, id, bytes)?;
    for e in &entries {
        let loc = BlobLocation::of(id, e);
        let s = e.offset as usize;
        let sealed = bytes
            .get(s..s.saturating_add(e.length as usize))
            .ok_or_else(|| Error::corrupt(pack_path(id), format!("blob {} lies beyond the pack's end", e.id)))?;
        if !e.bases.is_empty() {
            // Authenticated here; rebuilt from its bases by `rebuild_delta`.
            open_delta(keys, &e.id, &loc, sealed.to_vec())?;
        } else {
            open_blob(keys, &e.id, &loc, sealed)?;
        }
    }
    Ok(entries)
}

/// Authenticate and decode the header of a whole pack in memory (its name is not checked).
pub fn pack_header(keys: &crate::crypto::Keys, id: &Id, bytes: &[u8]) -> Result<Vec<BlobEntry>> {
    let object = pack_path(id);
    let t = bytes
        .len()
        .checked_sub(TRAILER_LEN)
        .ok_or_else(|| Error::corrupt(&object, "too short"))?;
    let hl = header_len_from_trailer(&bytes[t..], bytes.len() as u64).map_err(|e| Error::corrupt(&object, e))? as usize;
    let h = t - hl;
    open_header(keys, id, &bytes[h..t], h as u64)
}

/// Read and authenticate only a pack's header (two range reads), given its size.
pub fn read_pack_header(repo: &Repository, id: &Id, size: u64) -> Result<Vec<BlobEntry>> {
    let object = pack_path(id);
    let t = size
        .checked_sub(TRAILER_LEN as u64)
        .ok_or_else(|| Error::corrupt(&object, "too short"))?;
    let trailer = repo.store().read_range(&object, t, TRAILER_LEN as u64)?;
    let hl = header_len_from_trailer(&trailer, size).map_err(|e| Error::corrupt(&object, e))?;
    let h = t - hl;
    let header = repo.store().read_range(&object, h, hl)?;
    open_header(repo.keys(), id, &header, h)
}
