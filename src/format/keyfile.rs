//! Key files under `keys/`: argon2id parameters, salt, and the wrapped master key.

use serde::{Deserialize, Serialize};

use super::id::hex_bytes;
use super::{Id, FORMAT_VERSION};
use crate::crypto::{self, KdfParams, MasterKey};
use crate::error::{Error, ErrorKind, Result};

/// A key file as stored (JSON). Its name is the SHA-256 of its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    /// Format version.
    pub version: u32,
    /// When the key was added (RFC 3339, UTC).
    pub created: String,
    /// Host that added it.
    pub hostname: String,
    /// OS user that added it.
    pub username: String,
    /// Password derivation.
    pub kdf: Kdf,
    /// `nonce || XChaCha20-Poly1305(master key) || tag`, AAD = `dbbackup/v1/key` || repo id.
    #[serde(with = "hex_bytes")]
    pub wrapped_key: Vec<u8>,
}

/// Password derivation parameters of one key file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kdf {
    /// Always `argon2id`.
    pub algorithm: String,
    /// Cost parameters.
    #[serde(flatten)]
    pub params: KdfParams,
    /// 16 random bytes.
    #[serde(with = "hex_bytes")]
    pub salt: Vec<u8>,
}

/// Associated data of the wrapped master key.
pub fn wrap_aad(repo: &Id) -> Vec<u8> {
    let mut a = b"dbbackup/v1/key".to_vec();
    a.extend_from_slice(&repo.0);
    a
}

impl KeyFile {
    /// Wrap `master` under `password` for repository `repo`.
    pub fn wrap(master: &MasterKey, password: &[u8], repo: &Id, params: KdfParams) -> Result<KeyFile> {
        let salt: [u8; 16] = crypto::random_bytes();
        let kek = zeroize::Zeroizing::new(crypto::password_key(password, &salt, params)?);
        let mut wrapped = Vec::new();
        crypto::seal_into(&crypto::cipher(&kek), &mut wrapped, &wrap_aad(repo), &master.0)?;
        Ok(KeyFile {
            version: FORMAT_VERSION,
            created: jiff::Timestamp::now()
                .round(jiff::Unit::Second)
                .unwrap_or(jiff::Timestamp::now())
                .to_string(),
            hostname: crate::util::hostname(),
            username: crate::util::username(),
            kdf: Kdf {
                algorithm: "argon2id".into(),
                params,
                salt: salt.to_vec(),
            },
            wrapped_key: wrapped,
        })
    }

    /// Unwrap the master key; `Ok(None)` when the password is wrong.
    pub fn unwrap(&self, password: &[u8], repo: &Id) -> Result<Option<MasterKey>> {
        if self.kdf.algorithm != "argon2id" || self.version != FORMAT_VERSION {
            return Err(Error::new(
                ErrorKind::Corrupt,
                "key file uses an unknown KDF or version",
            ));
        }
        let kek = zeroize::Zeroizing::new(crypto::password_key(password, &self.kdf.salt, self.kdf.params)?);
        let Some(plain) = crypto::open(&crypto::cipher(&kek), &wrap_aad(repo), &self.wrapped_key) else {
            return Ok(None);
        };
        let plain = zeroize::Zeroizing::new(plain);
        let key = <[u8; 32]>::try_from(plain.as_slice())
            .map_err(|_| Error::new(ErrorKind::Corrupt, "wrapped master key has the wrong length"))?;
        Ok(Some(MasterKey(key)))
    }

    /// Encode as stored JSON.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut v = crate::format::object::to_json("a key file", self)?;
        v.push(b'\n');
        Ok(v)
    }

    /// Decode a key file stored under `name`, checking its name.
    pub fn decode(name: &str, b: &[u8]) -> Result<KeyFile> {
        if Id::of_stored(b).to_hex() != name {
            return Err(Error::corrupt(
                format!("keys/{name}"),
                "SHA-256 of its bytes does not match its name",
            ));
        }
        serde_json::from_slice(b).map_err(|e| Error::corrupt(format!("keys/{name}"), e))
    }
}
