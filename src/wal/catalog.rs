//! The WAL catalog in storage (repo-format §12): entries `wal/<name hash>/<id>` found by a
//! file's name through one short listing. The archive record is [`super::archive`].

use crate::error::{Error, Result};
use crate::format::wal::WalEntry;
use crate::format::{open_object_in, seal, Id, ObjectKind, RepoObject};
use crate::repo::objects::read_objects_in;
use crate::repo::Repository;

/// Folder holding the catalog entries of WAL file `file`.
pub fn entry_dir(repo: &Repository, file: &str) -> String {
    format!("{}/{}", ObjectKind::Wal.dir(), repo.keys().wal_name_hash(file))
}

/// Open a catalog entry's stored bytes found in `dir` under `id`, checking that it is filed
/// under its own name hash.
fn open_entry(repo: &Repository, dir: &str, id: &Id, raw: &[u8]) -> Result<WalEntry> {
    let plain = open_object_in(repo.keys(), ObjectKind::Wal, dir, &id.to_hex(), raw)?;
    decode_entry(repo, dir, id, &plain)
}

fn decode_entry(repo: &Repository, dir: &str, id: &Id, plain: &[u8]) -> Result<WalEntry> {
    let object = format!("{dir}/{id}");
    let e = WalEntry::decode(&object, plain)?;
    if entry_dir(repo, &e.file) != dir {
        return Err(Error::corrupt(
            &object,
            format!("entry for `{}` is filed under another name's folder", e.file),
        ));
    }
    if e.data.path != e.file {
        return Err(Error::corrupt(&object, "entry's data path differs from its file name"));
    }
    Ok(e)
}

/// Every catalog entry of `file` (normally one; a push racing another may leave two copies
/// of the same content).
pub fn find(repo: &Repository, file: &str) -> Result<Vec<(Id, WalEntry)>> {
    let dir = entry_dir(repo, file);
    let mut out = Vec::new();
    for (name, _) in repo.store().list(&dir)? {
        let Ok(id) = name.parse::<Id>() else { continue };
        let raw = repo.store().read(&format!("{dir}/{id}"))?;
        out.push((id, open_entry(repo, &dir, &id, &raw)?));
    }
    Ok(out)
}

/// Store a catalog entry; returns its id.
pub fn save(repo: &Repository, e: &WalEntry) -> Result<Id> {
    let sealed = seal(repo.keys(), e)?;
    let id = Id::of_stored(&sealed);
    repo.store()
        .write(&format!("{}/{id}", entry_dir(repo, &e.file)), sealed, false)?;
    Ok(id)
}

/// Delete a catalog entry (the WAL file's chunks go with the next prune).
pub fn remove(repo: &Repository, file: &str, id: &Id) -> Result<()> {
    repo.store().delete(&format!("{}/{id}", entry_dir(repo, file)))
}

/// Locations (`wal/<hash>`, id) of every catalog entry.
pub fn list(repo: &Repository) -> Result<Vec<(String, Id)>> {
    Ok(repo
        .store()
        .list(ObjectKind::Wal.dir())?
        .into_iter()
        .filter_map(|(rel, _)| {
            let (hash, id) = rel.split_once('/')?;
            Some((format!("{}/{hash}", ObjectKind::Wal.dir()), id.parse().ok()?))
        })
        .collect())
}

/// Read the entries at `locations` in parallel; `f` gets each in turn, or why it could not
/// be read (its first error stops the run).
pub fn read_each(
    repo: &Repository,
    locations: Vec<(String, Id)>,
    mut f: impl FnMut(&str, Id, Result<WalEntry>) -> Result<()>,
) -> Result<()> {
    read_objects_in(repo, ObjectKind::Wal, locations, |dir, id, r| {
        f(dir, id, r.and_then(|plain| decode_entry(repo, dir, &id, &plain)))
    })
}

/// Read the entries at `locations` in parallel; `f` gets each in turn. The first entry that
/// cannot be read is an error.
pub fn read(
    repo: &Repository,
    locations: Vec<(String, Id)>,
    mut f: impl FnMut(Id, WalEntry) -> Result<()>,
) -> Result<()> {
    read_each(repo, locations, |_, id, r| f(id, r?))
}

/// Every catalog entry, sorted by file name.
pub fn all(repo: &Repository) -> Result<Vec<(Id, WalEntry)>> {
    let mut v = Vec::new();
    read(repo, list(repo)?, |id, e| {
        v.push((id, e));
        Ok(())
    })?;
    v.sort_by(|a, b| a.1.file.cmp(&b.1.file).then(a.0.cmp(&b.0)));
    Ok(v)
}
