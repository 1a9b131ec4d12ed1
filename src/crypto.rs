//! Cryptography: argon2id password keys, the master key and its purpose sub-keys, keyed
//! BLAKE3 chunk ids, and XChaCha20-Poly1305 sealing with associated data.

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use rand::RngCore;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::{Error, ErrorKind, Result};
use crate::id::Id;

/// Length of the random nonce that starts every sealed byte string.
pub const NONCE_LEN: usize = 24;
/// Length of the Poly1305 tag that ends every sealed byte string.
pub const TAG_LEN: usize = 16;
/// Bytes a sealed string adds to its plaintext.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// BLAKE3 `derive_key` contexts for the purpose sub-keys (normative, see repo-format/).
pub const CTX_CHUNK_ID: &str = "dbbackup v1 chunk id key";
/// Context of the data encryption key.
pub const CTX_DATA: &str = "dbbackup v1 data encryption key";
/// Context of the chunker gear seed.
pub const CTX_CHUNKER: &str = "dbbackup v1 chunker seed";
/// Context of the key that hashes WAL file names into catalog folder names.
pub const CTX_WAL_NAME: &str = "dbbackup v1 wal name key";

/// Argon2id cost parameters, stored in each key file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Iterations.
    pub iterations: u32,
    /// Parallelism (lanes).
    pub parallelism: u32,
}

impl Default for KdfParams {
    fn default() -> Self {
        // OWASP's argon2id recommendation tier: 64 MiB, 3 passes.
        KdfParams {
            memory_kib: 64 * 1024,
            iterations: 3,
            parallelism: 1,
        }
    }
}

impl KdfParams {
    /// Whether argon2id takes these parameters and they stay within what this build allows
    /// (at most 4 GiB of memory): a usage error (exit 2) saying why not.
    pub fn validate(&self) -> Result<()> {
        Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
            .map_err(|e| Error::usage(format!("argon2id parameters {self:?} are out of range: {e}")))?;
        if self.memory_kib > MAX_KDF_MEMORY_KIB {
            return Err(Error::usage("argon2id memory above 4 GiB is not allowed"));
        }
        Ok(())
    }
}

/// The most argon2id memory a key file may ask for.
const MAX_KDF_MEMORY_KIB: u32 = 4 * 1024 * 1024;

/// Derive the 32-byte key-wrapping key from a password.
pub fn password_key(password: &[u8], salt: &[u8], p: KdfParams) -> Result<[u8; 32]> {
    let params = Params::new(p.memory_kib, p.iterations, p.parallelism, Some(32)).map_err(|e| {
        Error::new(
            ErrorKind::Corrupt,
            format!("invalid argon2id parameters in key file: {e}"),
        )
    })?;
    if p.memory_kib > MAX_KDF_MEMORY_KIB {
        return Err(Error::new(
            ErrorKind::Corrupt,
            "key file asks for more than 4 GiB of argon2id memory",
        ));
    }
    let mut out = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(password, salt, &mut out)
        .map_err(|e| Error::general(format!("argon2id failed: {e}")))?;
    Ok(out)
}

/// Random bytes from the thread-local CSPRNG (ChaCha12, seeded from the OS).
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rng().fill_bytes(&mut b);
    b
}

/// The repository master key: 32 random bytes, only ever stored wrapped.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey(pub(crate) [u8; 32]);

impl MasterKey {
    /// A fresh random master key.
    pub fn generate() -> Self {
        MasterKey(random_bytes())
    }

    /// A master key from its 32 bytes (test vectors, recovery tools).
    pub fn from_bytes(b: [u8; 32]) -> Self {
        MasterKey(b)
    }

    /// The purpose sub-keys.
    pub fn derive(&self) -> Keys {
        let chunk_id = blake3::derive_key(CTX_CHUNK_ID, &self.0);
        let data = blake3::derive_key(CTX_DATA, &self.0);
        let seed = blake3::derive_key(CTX_CHUNKER, &self.0);
        let wal_name = blake3::derive_key(CTX_WAL_NAME, &self.0);
        let mut s8 = [0u8; 8];
        s8.copy_from_slice(&seed[..8]);
        Keys {
            chunk_id,
            wal_name,
            cipher: XChaCha20Poly1305::new((&data).into()),
            chunker_seed: u64::from_le_bytes(s8),
        }
    }
}

/// Sub-keys derived from the master key.
#[derive(Clone)]
pub struct Keys {
    chunk_id: [u8; 32],
    wal_name: [u8; 32],
    cipher: XChaCha20Poly1305,
    /// Seed for FastCDC's gear table, so chunk boundaries do not leak content across repos.
    pub chunker_seed: u64,
}

impl Drop for Keys {
    fn drop(&mut self) {
        self.chunk_id.zeroize();
        self.wal_name.zeroize();
    }
}

impl Keys {
    /// Chunk id: keyed BLAKE3 of the chunk's plaintext.
    pub fn chunk_id(&self, data: &[u8]) -> Id {
        Id(*blake3::keyed_hash(&self.chunk_id, data).as_bytes())
    }

    /// Catalog folder name of WAL file `name` (repo-format §12): keyed BLAKE3, so storage
    /// listings do not reveal timelines or positions.
    pub fn wal_name_hash(&self, name: &str) -> Id {
        Id(*blake3::keyed_hash(&self.wal_name, name.as_bytes()).as_bytes())
    }

    /// Append `nonce || ciphertext || tag` of `plaintext` under `aad` to `out`.
    pub fn seal_into(&self, out: &mut Vec<u8>, aad: &[u8], plaintext: &[u8]) -> Result<()> {
        seal_into(&self.cipher, out, aad, plaintext)
    }

    /// Seal with a caller-chosen nonce. Only for reproducing test vectors: a nonce must never
    /// be reused under the same key.
    pub fn seal_with_nonce(
        &self,
        out: &mut Vec<u8>,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<()> {
        seal_with_nonce(&self.cipher, out, nonce, aad, plaintext)
    }

    /// The chunk-id key (exposed for test vectors).
    pub fn chunk_id_key(&self) -> &[u8; 32] {
        &self.chunk_id
    }

    /// `nonce || ciphertext || tag` of `plaintext`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
        self.seal_into(&mut out, aad, plaintext)?;
        Ok(out)
    }

    /// Authenticate and decrypt `sealed` in place; returns the buffer and the plaintext's range
    /// in it. `None` when it does not authenticate.
    pub fn open_in_place(&self, aad: &[u8], sealed: Vec<u8>) -> Option<(Vec<u8>, std::ops::Range<usize>)> {
        open_in_place(&self.cipher, aad, sealed)
    }

    /// Authenticate and decrypt a sealed string; `None` when it does not authenticate.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        open(&self.cipher, aad, sealed)
    }
}

/// A cipher from a raw 32-byte key (used for key wrapping).
pub fn cipher(key: &[u8; 32]) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(key.into())
}

/// Seal with an explicit cipher; see [`Keys::seal_into`].
pub fn seal_into(c: &XChaCha20Poly1305, out: &mut Vec<u8>, aad: &[u8], plaintext: &[u8]) -> Result<()> {
    let nonce: [u8; NONCE_LEN] = random_bytes();
    seal_with_nonce(c, out, &nonce, aad, plaintext)
}

/// Seal with a given nonce (test vectors only use this directly).
pub fn seal_with_nonce(
    c: &XChaCha20Poly1305,
    out: &mut Vec<u8>,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<()> {
    out.reserve(plaintext.len() + OVERHEAD);
    out.extend_from_slice(nonce);
    let start = out.len();
    out.extend_from_slice(plaintext);
    let tag = c
        .encrypt_in_place_detached(XNonce::from_slice(nonce), aad, &mut out[start..])
        .map_err(|_| Error::general("encryption failed: plaintext too long"))?;
    out.extend_from_slice(&tag);
    Ok(())
}

/// Open with an explicit cipher; see [`Keys::open`].
pub fn open(c: &XChaCha20Poly1305, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    let (mut buf, range) = open_in_place(c, aad, sealed.to_vec())?;
    buf.truncate(range.end);
    buf.drain(..range.start);
    Some(buf)
}

/// Decrypt in place with an explicit cipher; see [`Keys::open_in_place`].
fn open_in_place(c: &XChaCha20Poly1305, aad: &[u8], mut sealed: Vec<u8>) -> Option<(Vec<u8>, std::ops::Range<usize>)> {
    if sealed.len() < OVERHEAD {
        return None;
    }
    let end = sealed.len() - TAG_LEN;
    let (head, tag) = sealed.split_at_mut(end);
    let (nonce, ct) = head.split_at_mut(NONCE_LEN);
    c.decrypt_in_place_detached(XNonce::from_slice(nonce), aad, ct, Tag::from_slice(tag))
        .ok()?;
    Some((sealed, NONCE_LEN..end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_aad_binding() {
        let k = MasterKey::generate().derive();
        let s = k.seal(b"a", b"hello").unwrap();
        assert_eq!(k.open(b"a", &s).as_deref(), Some(&b"hello"[..]));
        assert!(k.open(b"b", &s).is_none());
        let mut t = s.clone();
        t[30] ^= 1;
        assert!(k.open(b"a", &t).is_none());
        assert!(k.open(b"a", &s[..10]).is_none());
    }

    #[test]
    fn chunk_ids_depend_on_the_key() {
        let a = MasterKey::generate().derive();
        let b = MasterKey::generate().derive();
        assert_ne!(a.chunk_id(b"x"), b.chunk_id(b"x"));
        assert_eq!(a.chunk_id(b"x"), a.chunk_id(b"x"));
    }
}
