//! Blob encoding: compress (or delta-encode against a base chunk), seal with the blob's
//! associated data; and the reverse, which authenticates, decodes, and checks the plaintext
//! against its chunk id.

use std::cell::RefCell;

use crate::crypto::Keys;
use crate::error::{Error, Result};
use crate::format::pack::MAX_CHUNK;
use crate::format::{blob_aad, decompress_bounded, BlobKind, Encoding, Id};
use crate::repo::index::BlobLocation;

thread_local! {
    /// One zstd compression context per thread and level, reused across chunks.
    static CCTX: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
    /// One zstd decompression context per thread.
    static DCTX: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// Compress a chunk with zstd at `level` (the body [`seal_compressed`] takes), reusing this
/// thread's context.
pub fn compress_chunk(plain: &[u8], level: i32) -> Result<Vec<u8>> {
    let err = |e: std::io::Error| Error::general(format!("zstd: {e}"));
    CCTX.with(|c| {
        let mut c = c.borrow_mut();
        if c.as_ref().is_none_or(|(l, _)| *l != level) {
            *c = Some((level, zstd::bulk::Compressor::new(level).map_err(err)?));
        }
        match c.as_mut() {
            Some((_, z)) => z.compress(plain).map_err(err),
            None => zstd::bulk::compress(plain, level).map_err(err),
        }
    })
}

/// Decompress a zstd frame whose plaintext is exactly `len` bytes (at most one chunk).
fn decompress(body: &[u8], len: usize) -> std::result::Result<Vec<u8>, String> {
    if len > MAX_CHUNK as usize {
        return Err("plaintext length exceeds the maximum chunk size".into());
    }
    DCTX.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new().map_err(|e| format!("zstd: {e}"))?);
        }
        match d.as_mut() {
            Some(z) => z.decompress(body, len).map_err(|e| format!("zstd: {e}")),
            None => decompress_bounded(body, len),
        }
    })
}

/// Compress `plain` with zstd at `level` (kept raw when that does not shrink it) and seal it.
pub fn seal_blob(keys: &Keys, kind: BlobKind, id: &Id, plain: &[u8], level: i32) -> Result<(Encoding, Vec<u8>)> {
    seal_compressed(keys, kind, id, plain, compress_chunk(plain, level)?)
}

/// Seal `plain` whose zstd frame is `z` (kept raw when `z` is not smaller).
pub fn seal_compressed(keys: &Keys, kind: BlobKind, id: &Id, plain: &[u8], z: Vec<u8>) -> Result<(Encoding, Vec<u8>)> {
    let (encoding, body) = if z.len() < plain.len() {
        (Encoding::Zstd, z.as_slice())
    } else {
        (Encoding::Raw, plain)
    };
    let sealed = keys.seal(&blob_aad(kind, encoding, id), body)?;
    Ok((encoding, sealed))
}

/// Seal data chunk `id` as a delta: `u8 n || n base ids || frame` (repo-format §5.1).
pub fn seal_delta(keys: &Keys, id: &Id, bases: &[Id], frame: &[u8]) -> Result<Vec<u8>> {
    let mut body = Vec::with_capacity(1 + 32 * bases.len() + frame.len());
    body.push(bases.len() as u8);
    for b in bases {
        body.extend_from_slice(&b.0);
    }
    body.extend_from_slice(frame);
    keys.seal(&blob_aad(BlobKind::Data, Encoding::ZstdDelta, id), &body)
}

fn describe(id: &Id, loc: &BlobLocation) -> String {
    format!("chunk {id} in pack data/{}", loc.pack)
}

/// Authenticate a sealed delta blob read from `loc` and return its zstd frame, after
/// checking that the bases it names are the ones the index names.
pub fn open_delta(keys: &Keys, id: &Id, loc: &BlobLocation, sealed: Vec<u8>) -> Result<Vec<u8>> {
    let object = || describe(id, loc);
    let (mut buf, range) = keys
        .open_in_place(&blob_aad(loc.kind, Encoding::ZstdDelta, id), sealed)
        .ok_or_else(|| Error::corrupt(object(), "authentication failed"))?;
    buf.truncate(range.end);
    buf.drain(..range.start);
    let n = loc.bases.len();
    let named = buf
        .get(1..1 + 32 * n)
        .map(|b| b.chunks_exact(32).map(Id::from_slice).collect::<Vec<_>>());
    let same = buf.first() == Some(&(n as u8))
        && named.is_some_and(|v| v.len() == n && v.iter().zip(&loc.bases).all(|(a, b)| a.as_ref() == Some(b)));
    if n == 0 || !same {
        return Err(Error::corrupt(
            object(),
            "the delta names other base chunks than the index",
        ));
    }
    buf.drain(..1 + 32 * n);
    Ok(buf)
}

/// Rebuild delta chunk `id` from its frame and its bases' plaintexts concatenated in the
/// order its entry lists them; the result is checked against the chunk id like any blob's.
pub fn apply_delta(keys: &Keys, id: &Id, loc: &BlobLocation, base: &[u8], frame: &[u8]) -> Result<Vec<u8>> {
    let object = || match loc.bases.as_slice() {
        [] => describe(id, loc),
        [b] => format!("{} (a delta against chunk {b})", describe(id, loc)),
        bs => format!(
            "{} (a delta against chunks {})",
            describe(id, loc),
            bs.iter().map(|b| b.to_string()).collect::<Vec<_>>().join(", ")
        ),
    };
    let plain = crate::delta::decode(base, frame, loc.raw_length as usize).map_err(|e| Error::corrupt(object(), e))?;
    if keys.chunk_id(&plain) != *id {
        return Err(Error::corrupt(object(), "plaintext does not hash to its chunk id"));
    }
    Ok(plain)
}

/// Open a sealed blob read from `loc`, returning its verified plaintext.
pub fn open_blob(keys: &Keys, id: &Id, loc: &BlobLocation, sealed: &[u8]) -> Result<Vec<u8>> {
    open_blob_owned(keys, id, loc, sealed.to_vec())
}

/// [`open_blob`] on a buffer it may decrypt in place.
pub fn open_blob_owned(keys: &Keys, id: &Id, loc: &BlobLocation, sealed: Vec<u8>) -> Result<Vec<u8>> {
    open_plain(keys, id, loc, sealed, true)
}

/// Open a plainly stored blob (raw or zstd). With `hash` false the plaintext is only
/// authenticated, not re-hashed: for a delta's base, whose use is verified through the
/// delta's own chunk id.
pub fn open_plain(keys: &Keys, id: &Id, loc: &BlobLocation, sealed: Vec<u8>, hash: bool) -> Result<Vec<u8>> {
    let object = || describe(id, loc);
    let (buf, range) = keys
        .open_in_place(&blob_aad(loc.kind, loc.encoding, id), sealed)
        .ok_or_else(|| Error::corrupt(object(), "authentication failed"))?;
    let plain = match loc.encoding {
        Encoding::Raw => {
            let mut b = buf;
            b.truncate(range.end);
            b.drain(..range.start);
            b
        }
        Encoding::Zstd => decompress(&buf[range], loc.raw_length as usize).map_err(|e| Error::corrupt(object(), e))?,
        Encoding::ZstdDelta => {
            return Err(Error::corrupt(
                object(),
                "a delta chunk cannot be opened without its base",
            ));
        }
    };
    if plain.len() != loc.raw_length as usize {
        return Err(Error::corrupt(object(), "plaintext length differs from the index"));
    }
    if hash && keys.chunk_id(&plain) != *id {
        return Err(Error::corrupt(object(), "plaintext does not hash to its chunk id"));
    }
    Ok(plain)
}
