//! The one parallel reader of whole objects: download, verify by id, open and decode many
//! objects at once (eight requests in flight), handing each to the caller in turn.

use futures::StreamExt;

use crate::error::{Error, ErrorKind, Result};
use crate::format::object::path_of;
use crate::format::{open_object_in, Id, ObjectKind, RepoObject};
use crate::repo::Repository;

/// Download, verify, open and decode objects of type `T` in parallel; `f` gets each in
/// turn. The first damaged or missing object is an error.
pub fn load_all<T: RepoObject>(repo: &Repository, ids: Vec<Id>, f: impl FnMut(Id, T) -> Result<()>) -> Result<()> {
    load_all_inner(repo, ids, false, f)
}

/// [`load_all`], skipping (with a warning) objects that fail authentication or decoding.
pub fn load_all_skipping_damage<T: RepoObject>(
    repo: &Repository,
    ids: Vec<Id>,
    f: impl FnMut(Id, T) -> Result<()>,
) -> Result<()> {
    load_all_inner(repo, ids, true, f)
}

fn load_all_inner<T: RepoObject>(
    repo: &Repository,
    ids: Vec<Id>,
    skip_damaged: bool,
    mut f: impl FnMut(Id, T) -> Result<()>,
) -> Result<()> {
    let located = ids.into_iter().map(|id| (T::KIND.dir().to_string(), id)).collect();
    read_objects_in(repo, T::KIND, located, |_, id, r| {
        match r.and_then(|plain| T::decode(&path_of::<T>(id), &plain)) {
            Ok(object) => f(id, object),
            Err(e) if skip_damaged && e.kind() == ErrorKind::Corrupt => {
                tracing::warn!(error = %e, "skipping a damaged object; run `dbbackup check`");
                Ok(())
            }
            Err(e) => Err(e),
        }
    })
}

/// Download, verify and open objects of `kind` stored as `dir/id` (each pair names its own
/// folder: WAL catalog entries live in one folder per file name), in parallel. `f` gets each
/// one's folder, id, and plaintext or why it could not be read, in turn; its first error stops
/// the run.
pub fn read_objects_in(
    repo: &Repository,
    kind: ObjectKind,
    objects: Vec<(String, Id)>,
    mut f: impl FnMut(&str, Id, Result<Vec<u8>>) -> Result<()>,
) -> Result<()> {
    if objects.is_empty() {
        return Ok(());
    }
    let store = repo.store().clone();
    let keys = repo.keys().clone();
    let rt = store.runtime().clone();
    let mut s = futures::stream::iter(objects.into_iter().map(|(dir, id)| {
        let store = store.clone();
        let keys = keys.clone();
        async move {
            let r = async {
                let name = id.to_hex();
                let raw = store.read_async(&format!("{dir}/{name}")).await?;
                let d = dir.clone();
                tokio::task::spawn_blocking(move || open_object_in(&keys, kind, &d, &name, &raw))
                    .await
                    .map_err(|e| Error::general(format!("index task failed: {e}")))?
            }
            .await;
            (dir, id, r)
        }
    }))
    .buffer_unordered(8);
    // `f` runs outside the runtime, so it may do blocking storage I/O of its own.
    while let Some((dir, id, r)) = rt.block_on(s.next()) {
        f(&dir, id, r)?;
    }
    Ok(())
}
