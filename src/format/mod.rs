//! The repository's on-storage format, version 1: object kinds, associated data, and the codecs
//! of every object. `repo-format/` is the normative text; this module implements it.

pub mod check;
pub mod config;
pub mod index;
pub mod keyfile;
pub mod lock;
pub mod lsn;
pub mod object;
pub mod pack;
pub mod pending;
pub mod sketch;
pub mod snapshot;
pub mod wal;

pub use crate::id::{self, Id};
pub use lsn::Lsn;
pub use object::RepoObject;

use crate::crypto::Keys;
use crate::error::{Error, Result};

/// Version of the objects this build writes (manifests, locks, key files, WAL catalog
/// entries); the repository's own format version is [`config::REPO_VERSION`].
pub const FORMAT_VERSION: u32 = 1;

/// Largest plaintext a whole object (index segment, manifest, lock) may decompress to.
pub const MAX_OBJECT_PLAINTEXT: usize = 256 << 20;

/// Kinds of whole (not packed) encrypted objects; each has its own associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// `index/` segments.
    Index,
    /// `snapshots/` manifests.
    Snapshot,
    /// `locks/` entries.
    Lock,
    /// The header at the end of a pack.
    PackHeader,
    /// `pending/` deletion plans.
    Pending,
    /// `wal/<name hash>/` WAL catalog entries.
    Wal,
    /// `wal-archive/` WAL archive records (which cluster the archive belongs to).
    WalArchive,
    /// `checks/` records of check runs.
    Check,
}

impl ObjectKind {
    /// Associated data bound into the object's AEAD tag.
    pub fn aad(self) -> &'static [u8] {
        match self {
            ObjectKind::Index => b"dbbackup/v1/index",
            ObjectKind::Snapshot => b"dbbackup/v1/snapshot",
            ObjectKind::Lock => b"dbbackup/v1/lock",
            ObjectKind::PackHeader => b"dbbackup/v1/pack-header",
            ObjectKind::Pending => b"dbbackup/v1/pending",
            ObjectKind::Wal => b"dbbackup/v1/wal",
            ObjectKind::WalArchive => b"dbbackup/v1/wal-archive",
            ObjectKind::Check => b"dbbackup/v1/check",
        }
    }

    /// Folder of the repository that holds objects of this kind.
    pub fn dir(self) -> &'static str {
        match self {
            ObjectKind::Index => "index",
            ObjectKind::Snapshot => "snapshots",
            ObjectKind::Lock => "locks",
            ObjectKind::PackHeader => "data",
            ObjectKind::Pending => "pending",
            ObjectKind::Wal => "wal",
            ObjectKind::WalArchive => "wal-archive",
            ObjectKind::Check => "checks",
        }
    }
}

/// What a packed blob holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum BlobKind {
    /// A chunk of a source stream.
    Data = 0,
    /// A content list: 36-byte records (chunk id, plaintext length) of an entry's chunks.
    ContentList = 1,
}

impl BlobKind {
    /// Decode the kind byte.
    pub fn from_u8(b: u8) -> Option<BlobKind> {
        match b {
            0 => Some(BlobKind::Data),
            1 => Some(BlobKind::ContentList),
            _ => None,
        }
    }
}

/// How a blob's plaintext is encoded before encryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Encoding {
    /// Stored as is (used when zstd does not make it smaller).
    Raw = 0,
    /// One zstd frame.
    Zstd = 1,
    /// The base chunk's id (32 bytes), then a zstd frame compressed with that chunk's
    /// plaintext as its reference prefix (`--patch-from`). Format version 2.
    ZstdDelta = 2,
}

impl Encoding {
    /// Decode the encoding byte.
    pub fn from_u8(b: u8) -> Option<Encoding> {
        match b {
            0 => Some(Encoding::Raw),
            1 => Some(Encoding::Zstd),
            2 => Some(Encoding::ZstdDelta),
            _ => None,
        }
    }
}

/// Associated data of a packed blob: binds kind, encoding and chunk id.
pub fn blob_aad(kind: BlobKind, encoding: Encoding, id: &Id) -> [u8; 50] {
    let mut a = [0u8; 50];
    a[..16].copy_from_slice(b"dbbackup/v1/blob");
    a[16] = kind as u8;
    a[17] = encoding as u8;
    a[18..].copy_from_slice(&id.0);
    a
}

/// Compress and seal a whole object's payload: `seal(kind.aad(), zstd(payload))`.
pub fn seal_object(keys: &Keys, kind: ObjectKind, payload: &[u8]) -> Result<Vec<u8>> {
    let z = zstd::bulk::compress(payload, 3).map_err(|e| Error::general(format!("zstd: {e}")))?;
    keys.seal(kind.aad(), &z)
}

/// Encode and seal a whole object: [`seal_object`] of its payload.
pub fn seal<T: RepoObject>(keys: &Keys, object: &T) -> Result<Vec<u8>> {
    seal_object(keys, T::KIND, &object.encode()?)
}

/// Open a whole object stored under `name`: check its storage id, authenticate, decompress.
pub fn open_object(keys: &Keys, kind: ObjectKind, name: &str, stored: &[u8]) -> Result<Vec<u8>> {
    open_object_in(keys, kind, kind.dir(), name, stored)
}

/// [`open_object`] for a copy of an object of `kind` kept in folder `dir` (§8.3 registry
/// copies); errors name `dir/name`.
pub fn open_object_in(keys: &Keys, kind: ObjectKind, dir: &str, name: &str, stored: &[u8]) -> Result<Vec<u8>> {
    let object = format!("{dir}/{name}");
    if Id::of_stored(stored).to_hex() != name {
        return Err(Error::corrupt(&object, "SHA-256 of its bytes does not match its name"));
    }
    let z = keys
        .open(kind.aad(), stored)
        .ok_or_else(|| Error::corrupt(&object, "authentication failed"))?;
    decompress_bounded(&z, MAX_OBJECT_PLAINTEXT).map_err(|e| Error::corrupt(&object, e))
}

/// Decompress one zstd stream, refusing output larger than `limit`.
pub fn decompress_bounded(z: &[u8], limit: usize) -> std::result::Result<Vec<u8>, String> {
    use std::io::Read;
    let mut dec = zstd::stream::read::Decoder::with_buffer(z).map_err(|e| format!("zstd: {e}"))?;
    let mut out = Vec::new();
    (&mut dec)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("zstd: {e}"))?;
    if out.len() > limit {
        return Err(format!("decompresses to more than {limit} bytes"));
    }
    Ok(out)
}

/// Bounds-checked little-endian reader for binary payloads.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    what: &'a str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], what: &'a str) -> Self {
        Reader { buf, what }
    }
    pub(crate) fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        if self.buf.len() < n {
            return Err(format!("{} truncated", self.what));
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }
    pub(crate) fn u8(&mut self) -> std::result::Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    pub(crate) fn u32(&mut self) -> std::result::Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(crate) fn id(&mut self) -> std::result::Result<Id, String> {
        let b = self.take(32)?;
        Id::from_slice(b).ok_or_else(|| format!("{} truncated", self.what))
    }
    pub(crate) fn what(&self) -> &str {
        self.what
    }
    pub(crate) fn u64(&mut self) -> std::result::Result<u64, String> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }
    pub(crate) fn done(&self) -> std::result::Result<(), String> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(format!("{} has {} trailing bytes", self.what, self.buf.len()))
        }
    }
}
