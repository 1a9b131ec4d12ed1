//! Blob encoding: compress, seal with the blob's associated data; and the reverse, which
//! authenticates, decompresses, and checks the plaintext against its chunk id.

use crate::crypto::Keys;
use crate::error::{Error, Result};
use crate::format::pack::MAX_CHUNK;
use crate::format::{blob_aad, decompress_bounded, BlobKind, Encoding, Id};
use crate::index::BlobLocation;

/// Compress `plain` with zstd at `level` (kept raw when that does not shrink it) and seal it.
pub fn seal_blob(keys: &Keys, kind: BlobKind, id: &Id, plain: &[u8], level: i32) -> Result<(Encoding, Vec<u8>)> {
    let z = zstd::bulk::compress(plain, level).map_err(|e| Error::general(format!("zstd: {e}")))?;
    let (encoding, body) = if z.len() < plain.len() {
        (Encoding::Zstd, z.as_slice())
    } else {
        (Encoding::Raw, plain)
    };
    let sealed = keys.seal(&blob_aad(kind, encoding, id), body)?;
    Ok((encoding, sealed))
}

/// Open a sealed blob read from `loc`, returning its verified plaintext.
pub fn open_blob(keys: &Keys, id: &Id, loc: &BlobLocation, sealed: &[u8]) -> Result<Vec<u8>> {
    let object = || format!("chunk {id} in pack data/{}", loc.pack);
    let body = keys
        .open(&blob_aad(loc.kind, loc.encoding, id), sealed)
        .ok_or_else(|| Error::corrupt(object(), "authentication failed"))?;
    let plain = match loc.encoding {
        Encoding::Raw => body,
        Encoding::Zstd => decompress_bounded(&body, MAX_CHUNK as usize).map_err(|e| Error::corrupt(object(), e))?,
        Encoding::ZstdDelta => {
            return Err(Error::corrupt(object(), "delta-encoded blobs need a newer dbbackup"));
        }
    };
    if plain.len() != loc.raw_length as usize {
        return Err(Error::corrupt(object(), "plaintext length differs from the index"));
    }
    if keys.chunk_id(&plain) != *id {
        return Err(Error::corrupt(object(), "plaintext does not hash to its chunk id"));
    }
    Ok(plain)
}
