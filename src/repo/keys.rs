//! Key management: several passwords may unlock one repository; each key file wraps the same
//! master key under its own argon2id-derived key.

use crate::crypto::KdfParams;
use crate::error::{Error, ErrorKind, Result};
use crate::format::keyfile::KeyFile;
use crate::format::Id;
use crate::repo::Repository;

/// One key as listed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyInfo {
    /// Key file id.
    pub id: Id,
    /// True for the key that unlocked this session.
    pub current: bool,
    /// Creation time.
    pub created: String,
    /// Host that added it.
    pub hostname: String,
    /// User that added it.
    pub username: String,
    /// Argon2id parameters.
    pub kdf: KdfParams,
}

/// Add a key for `password`; returns its id.
pub fn add(repo: &Repository, password: &[u8], kdf: KdfParams) -> Result<Id> {
    if password.is_empty() {
        return Err(Error::usage("an empty password is not allowed"));
    }
    let kf = KeyFile::wrap(repo.master(), password, &repo.config().id, kdf)?;
    let bytes = kf.encode()?;
    let id = Id::of_stored(&bytes);
    repo.store().write(&format!("keys/{id}"), bytes, false)?;
    Ok(id)
}

/// Every key file.
pub fn list(repo: &Repository) -> Result<Vec<KeyInfo>> {
    let mut out = Vec::new();
    for (name, _) in repo.store().list("keys")? {
        let kf = KeyFile::decode(&name, &repo.store().read(&format!("keys/{name}"))?)?;
        let id: Id = name.parse()?;
        out.push(KeyInfo {
            id,
            current: id == repo.key_id(),
            created: kf.created,
            hostname: kf.hostname,
            username: kf.username,
            kdf: kf.kdf.params,
        });
    }
    out.sort_by(|a, b| a.created.cmp(&b.created));
    Ok(out)
}

/// Resolve a full id or unique prefix of a key.
pub fn find(repo: &Repository, spec: &str) -> Result<Id> {
    let spec = spec.to_ascii_lowercase();
    let m: Vec<Id> = list(repo)?
        .into_iter()
        .map(|k| k.id)
        .filter(|id| id.to_hex().starts_with(&spec))
        .collect();
    match m.as_slice() {
        [one] => Ok(*one),
        [] => Err(Error::not_found(format!("no key matches `{spec}`"))),
        _ => Err(Error::usage(format!("`{spec}` matches several keys; give more digits"))),
    }
}

/// Remove key `id`. The key in use cannot be removed (so the last key never is).
pub fn remove(repo: &Repository, id: &Id) -> Result<()> {
    if *id == repo.key_id() {
        return Err(Error::new(
            ErrorKind::Usage,
            "refusing to remove the key this password unlocks; open the repository with another key's password to remove it",
        ));
    }
    repo.store().delete(&format!("keys/{id}"))
}

/// Replace the current key with one for `new_password`: the new key is written first, the
/// old one removed after, so a crash leaves at least one working key.
pub fn change_password(repo: &Repository, new_password: &[u8], kdf: KdfParams) -> Result<Id> {
    let id = add(repo, new_password, kdf)?;
    repo.store().delete(&format!("keys/{}", repo.key_id()))?;
    Ok(id)
}
