//! The set of referenced chunk ids during a prune, kept in a temporary redb file so memory
//! stays flat however many chunks the repository holds. Each id records which pack claimed it
//! (the first indexed pack found holding it), or that none has yet.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::error::{Error, ErrorKind, Result};
use crate::format::Id;

const LIVE: TableDefinition<[u8; 32], u32> = TableDefinition::new("live");
/// Claim value of a referenced chunk no pack has claimed yet.
pub const UNCLAIMED: u32 = u32::MAX;

/// A temporary on-disk set of referenced chunk ids.
pub struct LiveSet {
    db: Database,
    _dir: tempfile::TempDir,
    _cleanup: crate::interrupt::Registration,
}

fn err(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::new(ErrorKind::Io, "prune's temporary reference set").with_source(e)
}

impl LiveSet {
    /// Create an empty set in a fresh temporary directory under `parent`, removing what
    /// killed runs left there (the prune lock means no other prune of this repository runs).
    pub fn create(parent: &Path) -> Result<LiveSet> {
        crate::util::create_dir_private(parent)
            .map_err(|e| Error::io(format!("cannot create directory {}", parent.display()), e))?;
        if let Ok(rd) = std::fs::read_dir(parent) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with("tmp-prune-") {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("tmp-prune-")
            .tempdir_in(parent)
            .map_err(|e| {
                Error::io(
                    format!("cannot create a temporary directory in {}", parent.display()),
                    e,
                )
            })?;
        let path = dir.path().to_path_buf();
        let cleanup = crate::interrupt::on_interrupt(move || {
            let _ = std::fs::remove_dir_all(&path);
        });
        let db = Database::builder()
            .set_cache_size(32 << 20)
            .create(dir.path().join("live.redb"))
            .map_err(err)?;
        let tx = db.begin_write().map_err(err)?;
        tx.open_table(LIVE).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(LiveSet {
            db,
            _dir: dir,
            _cleanup: cleanup,
        })
    }

    /// Add referenced ids (unclaimed unless already present). Returns how many were new.
    pub fn add(&self, ids: impl IntoIterator<Item = Id>) -> Result<u64> {
        let tx = self.write()?;
        let mut n = 0;
        {
            let mut t = tx.open_table(LIVE).map_err(err)?;
            for id in ids {
                if t.get(id.0).map_err(err)?.is_none() {
                    t.insert(id.0, UNCLAIMED).map_err(err)?;
                    n += 1;
                }
            }
        }
        tx.commit().map_err(err)?;
        Ok(n)
    }

    /// A write transaction without fsync: the file is scratch space, thrown away after the run.
    fn write(&self) -> Result<redb::WriteTransaction> {
        let mut tx = self.db.begin_write().map_err(err)?;
        tx.set_durability(redb::Durability::None).map_err(err)?;
        Ok(tx)
    }

    /// Is `id` referenced?
    pub fn contains(&self, id: &Id) -> Result<bool> {
        let tx = self.db.begin_read().map_err(err)?;
        let t = tx.open_table(LIVE).map_err(err)?;
        Ok(t.get(id.0).map_err(err)?.is_some())
    }

    /// Let pack number `pack` claim every referenced, unclaimed id among `ids`; `claimed[i]`
    /// tells whether `ids[i]` is now claimed by `pack`.
    pub fn claim(&self, pack: u32, ids: &[Id]) -> Result<Vec<bool>> {
        let tx = self.write()?;
        let mut out = Vec::with_capacity(ids.len());
        {
            let mut t = tx.open_table(LIVE).map_err(err)?;
            for id in ids {
                let cur = t.get(id.0).map_err(err)?.map(|v| v.value());
                let mine = match cur {
                    Some(UNCLAIMED) => {
                        t.insert(id.0, pack).map_err(err)?;
                        true
                    }
                    Some(p) => p == pack,
                    None => false,
                };
                out.push(mine);
            }
        }
        tx.commit().map_err(err)?;
        Ok(out)
    }

    /// Which of `ids` did pack number `pack` claim?
    pub fn claimed_by(&self, pack: u32, ids: &[Id]) -> Result<Vec<bool>> {
        let tx = self.db.begin_read().map_err(err)?;
        let t = tx.open_table(LIVE).map_err(err)?;
        ids.iter()
            .map(|id| Ok(t.get(id.0).map_err(err)?.map(|v| v.value()) == Some(pack)))
            .collect()
    }

    /// Visit every referenced id no pack claimed.
    pub fn for_each_unclaimed(&self, mut f: impl FnMut(Id) -> Result<()>) -> Result<()> {
        let tx = self.db.begin_read().map_err(err)?;
        let t = tx.open_table(LIVE).map_err(err)?;
        for r in t.iter().map_err(err)? {
            let (k, v) = r.map_err(err)?;
            if v.value() == UNCLAIMED {
                f(Id(k.value()))?;
            }
        }
        Ok(())
    }
}
