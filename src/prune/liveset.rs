//! The set of referenced chunk ids during a prune, kept in a temporary redb file so memory
//! stays flat however many chunks the repository holds. Each id records which pack claimed it
//! (the first indexed pack found holding it, or a plain copy when a delta needs it as a base),
//! and what that pack's entry for it is (delta or not, its sizes), or that no pack has yet.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::error::{Error, ErrorKind, Result};
use crate::format::pack::BlobEntry;
use crate::format::Id;

/// id -> [`Claim`] encoded as 11 bytes (pack ordinal, delta flag, sealed length, entry bytes).
const LIVE: TableDefinition<[u8; 32], [u8; 11]> = TableDefinition::new("live");
/// Claim value of a referenced chunk no pack has claimed yet.
pub const UNCLAIMED: u32 = u32::MAX;

/// Which pack holds a referenced chunk for this prune, and what its entry there costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    /// Ordinal of the claiming pack, or [`UNCLAIMED`].
    pub pack: u32,
    /// The claiming entry is a delta (so it needs its bases).
    pub delta: bool,
    /// Sealed length of the claiming entry.
    pub length: u32,
    /// Bytes the claiming entry takes in a pack header.
    pub entry_len: u16,
}

impl Claim {
    const NONE: Claim = Claim {
        pack: UNCLAIMED,
        delta: false,
        length: 0,
        entry_len: 0,
    };

    /// Entry `e` of pack number `pack`.
    pub fn of(pack: u32, e: &BlobEntry) -> Claim {
        Claim {
            pack,
            delta: !e.bases.is_empty(),
            length: e.length,
            entry_len: u16::try_from(e.encoded_len()).unwrap_or(u16::MAX),
        }
    }

    fn encode(self) -> [u8; 11] {
        let mut v = [0u8; 11];
        v[..4].copy_from_slice(&self.pack.to_le_bytes());
        v[4] = u8::from(self.delta);
        v[5..9].copy_from_slice(&self.length.to_le_bytes());
        v[9..].copy_from_slice(&self.entry_len.to_le_bytes());
        v
    }

    fn decode(v: [u8; 11]) -> Claim {
        Claim {
            pack: u32::from_le_bytes([v[0], v[1], v[2], v[3]]),
            delta: v[4] != 0,
            length: u32::from_le_bytes([v[5], v[6], v[7], v[8]]),
            entry_len: u16::from_le_bytes([v[9], v[10]]),
        }
    }

    /// Is this chunk claimed by some pack?
    pub fn claimed(&self) -> bool {
        self.pack != UNCLAIMED
    }
}

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
                    t.insert(id.0, Claim::NONE.encode()).map_err(err)?;
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
        Ok(self.get(id)?.is_some())
    }

    /// The claim on `id`, if it is referenced.
    pub fn get(&self, id: &Id) -> Result<Option<Claim>> {
        let tx = self.db.begin_read().map_err(err)?;
        let t = tx.open_table(LIVE).map_err(err)?;
        Ok(t.get(id.0).map_err(err)?.map(|v| Claim::decode(v.value())))
    }

    /// Record `claim` on `id` (referenced from now on), replacing any earlier claim.
    pub fn set(&self, id: &Id, claim: Claim) -> Result<()> {
        let tx = self.write()?;
        {
            let mut t = tx.open_table(LIVE).map_err(err)?;
            t.insert(id.0, claim.encode()).map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    /// Let pack number `pack` claim every referenced, unclaimed chunk among its `entries`;
    /// `claimed[i]` tells whether this call claimed `entries[i]` (a chunk the pack claimed
    /// before, through another segment naming it, is not counted twice).
    pub fn claim(&self, pack: u32, entries: &[BlobEntry]) -> Result<Vec<bool>> {
        let tx = self.write()?;
        let mut out = Vec::with_capacity(entries.len());
        {
            let mut t = tx.open_table(LIVE).map_err(err)?;
            for e in entries {
                let cur = t.get(e.id.0).map_err(err)?.map(|v| Claim::decode(v.value()));
                let mine = match cur {
                    Some(c) if !c.claimed() => {
                        t.insert(e.id.0, Claim::of(pack, e).encode()).map_err(err)?;
                        true
                    }
                    _ => false,
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
            .map(|id| Ok(t.get(id.0).map_err(err)?.map(|v| Claim::decode(v.value()).pack) == Some(pack)))
            .collect()
    }

    /// Visit every referenced id no pack claimed.
    pub fn for_each_unclaimed(&self, mut f: impl FnMut(Id) -> Result<()>) -> Result<()> {
        let tx = self.db.begin_read().map_err(err)?;
        let t = tx.open_table(LIVE).map_err(err)?;
        for r in t.iter().map_err(err)? {
            let (k, v) = r.map_err(err)?;
            if !Claim::decode(v.value()).claimed() {
                f(Id(k.value()))?;
            }
        }
        Ok(())
    }
}
