//! The local index cache: a redb file under the user's cache directory, keyed by repository
//! id, mapping chunk id -> (pack, offset, length). Synced incrementally from `index/`, rebuilt
//! from the repository whenever it is missing, damaged, or the repository dropped a segment.
//! Deletion plans (`pending/`) are mirrored too: their blobs are found by readers but never
//! deduplicated against. It is never the only copy of anything.
//!
//! This file opens, syncs and fills the cache; `query` answers from it.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::delta::Sketch;
use crate::error::{Error, ErrorKind, Result};
use crate::format::index::{IndexSegment, PackBlobs};
use crate::format::pack::BlobEntry;
use crate::format::pending::DeletionPlan;
use crate::format::{BlobKind, Encoding, Id, ObjectKind};
use crate::repo::objects::load_all_skipping_damage;
use crate::repo::Repository;

mod query;

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const SEGMENTS: TableDefinition<[u8; 32], ()> = TableDefinition::new("segments");
const PACK_NO: TableDefinition<[u8; 32], u64> = TableDefinition::new("pack_no");
const PACK_ID: TableDefinition<u64, [u8; 32]> = TableDefinition::new("pack_id");
const BLOBS: TableDefinition<[u8; 32], [u8; 22]> = TableDefinition::new("blobs");
/// Pack numbers named by an index segment.
const SEG_PACKS: TableDefinition<u64, ()> = TableDefinition::new("seg_packs");
/// Deletion plans mirrored, their blobs, and the pack numbers they condemn.
const PLANS: TableDefinition<[u8; 32], ()> = TableDefinition::new("plans");
const PLAN_BLOBS: TableDefinition<[u8; 32], [u8; 22]> = TableDefinition::new("plan_blobs");
const CONDEMNED: TableDefinition<u64, ()> = TableDefinition::new("condemned");
/// Base chunks of the delta copy [`BLOBS`] holds, their ids concatenated.
const DELTA_BASES: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("delta_bases");
/// The same for [`PLAN_BLOBS`]: a plan and a segment may hold different delta copies of one
/// chunk, against different bases.
const PLAN_DELTA_BASES: TableDefinition<[u8; 32], &[u8]> = TableDefinition::new("plan_delta_bases");
/// Super-feature -> the chunk whose sketch last recorded it (repo-format §7.1).
const SKETCHES: TableDefinition<u64, [u8; 32]> = TableDefinition::new("sketches");

/// Schema of the cache file; bump to force a rebuild after layout changes.
const SCHEMA: &[u8] = b"dbbackup-index-cache-6";

/// Where a blob is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobLocation {
    /// Pack storage id.
    pub pack: Id,
    /// Kind.
    pub kind: BlobKind,
    /// Encoding.
    pub encoding: Encoding,
    /// Offset of the sealed blob in the pack.
    pub offset: u32,
    /// Sealed length.
    pub length: u32,
    /// Plaintext length.
    pub raw_length: u32,
    /// The base chunks of a delta blob, in reference order (empty for other blobs).
    pub bases: Vec<Id>,
}

impl BlobLocation {
    /// Where entry `e` of pack `pack` lives.
    pub fn of(pack: &Id, e: &BlobEntry) -> BlobLocation {
        BlobLocation {
            pack: *pack,
            kind: e.kind,
            encoding: e.encoding,
            offset: e.offset,
            length: e.length,
            raw_length: e.raw_length,
            bases: e.bases.clone(),
        }
    }
}

/// What [`IndexCache::find_bases`] found for a new chunk.
#[derive(Debug, Clone, Default)]
pub struct BaseMatch {
    /// The bases, best first, with where they are.
    pub bases: Vec<(Id, BlobLocation)>,
    /// Where the most similar stored chunk is, when it is a delta itself: most likely the
    /// previous version of the new chunk, a delta against the same bases.
    pub predecessor: Option<(Id, BlobLocation)>,
}

/// Counters from a sync.
#[derive(Debug, Clone, Copy, Default)]
pub struct SyncStats {
    /// Segments read from the repository.
    pub segments_read: usize,
    /// True when the cache was (re)built from scratch.
    pub rebuilt: bool,
}

/// The opened cache.
pub struct IndexCache {
    db: Database,
    path: PathBuf,
    /// Commits reach the disk before they return (not for scratch indexes).
    durable: bool,
    /// Started afresh and not synced since: the first sync reports a rebuild.
    fresh: AtomicBool,
    _tempdir: Option<(tempfile::TempDir, crate::interrupt::Registration)>,
}

fn db_err(what: &str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::new(ErrorKind::Io, format!("local index cache: {what}")).with_source(e)
}

fn encode_value(pack_no: u64, b: &BlobEntry) -> [u8; 22] {
    let mut v = [0u8; 22];
    v[..8].copy_from_slice(&pack_no.to_le_bytes());
    v[8] = b.kind as u8;
    v[9] = b.encoding as u8;
    v[10..14].copy_from_slice(&b.offset.to_le_bytes());
    v[14..18].copy_from_slice(&b.length.to_le_bytes());
    v[18..22].copy_from_slice(&b.raw_length.to_le_bytes());
    v
}

fn pack_no(v: &[u8; 22]) -> u64 {
    let mut no = [0u8; 8];
    no.copy_from_slice(&v[..8]);
    u64::from_le_bytes(no)
}

fn u32_at(v: &[u8; 22], i: usize) -> u32 {
    u32::from_le_bytes([v[i], v[i + 1], v[i + 2], v[i + 3]])
}

/// Whether copy `b` of a chunk, in `pack`, replaces the indexed copy `cur` (whose pack id
/// `cur_pack` reads). Of several copies of a chunk, a plainly stored one wins over a delta (a
/// base must be plain: delta depth 1), then the lowest (pack id, offset): the choice does not
/// depend on the order segments are read in, so every cache of the repository reads the same
/// copy.
fn replaces(pack: &Id, b: &BlobEntry, cur: &[u8; 22], cur_pack: impl FnOnce() -> Result<[u8; 32]>) -> Result<bool> {
    let cur_delta = cur[9] == Encoding::ZstdDelta as u8;
    let new_delta = !b.bases.is_empty();
    if cur_delta != new_delta {
        return Ok(cur_delta);
    }
    Ok((pack.0, b.offset) < (cur_pack()?, u32_at(cur, 10)))
}

impl IndexCache {
    /// Open (or create, or start afresh) the cache of `repo` in `cache_dir`. It is synced by
    /// the [`crate::repo::session::Session`] that uses it, after the session's lock is taken.
    pub fn open(repo: &Repository, cache_dir: &Path) -> Result<IndexCache> {
        let dir = cache_dir.join(repo.config().id.to_hex());
        crate::util::create_dir_private(&dir)
            .map_err(|e| Error::io(format!("cannot create cache directory {}", dir.display()), e))?;
        let path = dir.join("index.redb");
        let deadline = Instant::now() + Duration::from_secs(2);
        let cache = |db, fresh: bool| IndexCache {
            db,
            path: path.clone(),
            durable: true,
            fresh: AtomicBool::new(fresh),
            _tempdir: None,
        };
        loop {
            match Self::try_open(repo, &path) {
                Ok(Some(db)) => return Ok(cache(db, false)),
                Ok(None) => {
                    // Missing, damaged, or another repository's: start afresh.
                    tracing::info!(cache = %path.display(), "rebuilding the local index cache from the repository");
                    let _ = std::fs::remove_file(&path);
                    let db = Self::try_open(repo, &path)?.ok_or_else(|| {
                        Error::new(ErrorKind::Io, format!("cannot create index cache {}", path.display()))
                    })?;
                    return Ok(cache(db, true));
                }
                Err(e) if e.kind() == ErrorKind::Temporary && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) if e.kind() == ErrorKind::Temporary => {
                    // Another dbbackup process holds the cache: use a private one for this run.
                    tracing::warn!(cache = %path.display(), "index cache is busy in another dbbackup process; using a private temporary cache");
                    return Self::temporary(repo, &dir, true);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// An empty cache of `repo` in a temporary directory under `dir`, removed when dropped:
    /// scratch space to build an index in (repair), never synced by itself.
    pub fn scratch(repo: &Repository, dir: &Path) -> Result<IndexCache> {
        crate::util::create_dir_private(dir)
            .map_err(|e| Error::io(format!("cannot create directory {}", dir.display()), e))?;
        Self::temporary(repo, dir, false)
    }

    /// An empty cache in a new temporary directory under `dir`, removed when dropped (or
    /// when the process is interrupted).
    fn temporary(repo: &Repository, dir: &Path, durable: bool) -> Result<IndexCache> {
        let td = tempfile::Builder::new()
            .prefix("tmp-index-")
            .tempdir_in(dir)
            .map_err(|e| Error::io("cannot create a temporary index cache", e))?;
        let p = td.path().join("index.redb");
        let tmp_dir = td.path().to_path_buf();
        let cleanup = crate::interrupt::on_interrupt(move || {
            let _ = std::fs::remove_dir_all(&tmp_dir);
        });
        let db = Self::try_open(repo, &p)?
            .ok_or_else(|| Error::new(ErrorKind::Io, "cannot create a temporary index cache"))?;
        Ok(IndexCache {
            db,
            path: p,
            durable,
            fresh: AtomicBool::new(true),
            _tempdir: Some((td, cleanup)),
        })
    }

    /// `Ok(None)` means: unusable, delete and rebuild.
    fn try_open(repo: &Repository, path: &Path) -> Result<Option<Database>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|e| Error::io(format!("cannot open index cache {}", path.display()), e))?;
        let db = match Database::builder().set_cache_size(64 << 20).create_file(file) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(Error::new(ErrorKind::Temporary, "index cache busy"))
            }
            Err(redb::DatabaseError::Storage(redb::StorageError::Io(e)))
                if e.kind() == std::io::ErrorKind::WouldBlock =>
            {
                return Err(Error::new(ErrorKind::Temporary, "index cache busy"))
            }
            Err(e) => {
                tracing::warn!(cache = %path.display(), error = %e, "index cache is damaged");
                return Ok(None);
            }
        };
        let want: Vec<u8> = [SCHEMA, &repo.config().id.0].concat();
        let ok = (|| -> std::result::Result<bool, Box<dyn std::error::Error>> {
            let tx = db.begin_write()?;
            let fresh;
            {
                let mut meta = tx.open_table(META)?;
                let cur = meta.get("schema")?.map(|v| v.value().to_vec());
                fresh = cur.is_none();
                if let Some(cur) = cur {
                    if cur != want {
                        return Ok(false);
                    }
                } else {
                    meta.insert("schema", want.as_slice())?;
                }
                tx.open_table(SEGMENTS)?;
                tx.open_table(PACK_NO)?;
                tx.open_table(PACK_ID)?;
                tx.open_table(BLOBS)?;
                tx.open_table(SEG_PACKS)?;
                tx.open_table(PLANS)?;
                tx.open_table(PLAN_BLOBS)?;
                tx.open_table(CONDEMNED)?;
                tx.open_table(DELTA_BASES)?;
                tx.open_table(PLAN_DELTA_BASES)?;
                tx.open_table(SKETCHES)?;
            }
            if fresh {
                tx.commit()?;
            } else {
                tx.abort()?;
            }
            Ok(true)
        })();
        match ok {
            Ok(true) => Ok(Some(db)),
            Ok(false) => Ok(None),
            Err(e) => {
                tracing::warn!(cache = %path.display(), error = %e, "index cache is unreadable");
                Ok(None)
            }
        }
    }

    /// Path of the cache file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bring the cache up to date with `index/` and `pending/`: read only segments not seen
    /// before; rebuild when a segment the cache knows has left the repository (prune), or when
    /// one vanishes while being read.
    pub fn sync(&self, repo: &Repository) -> Result<SyncStats> {
        match self.sync_once(repo, false) {
            Err(e) if e.kind() == ErrorKind::NotFound => self.sync_once(repo, true),
            r => r,
        }
    }

    fn sync_once(&self, repo: &Repository, rebuild: bool) -> Result<SyncStats> {
        let names = repo.list_ids(ObjectKind::Index)?;
        let present: HashSet<Id> = names.iter().copied().collect();
        let known = self.known(SEGMENTS)?;
        let mut stats = SyncStats {
            rebuilt: self.fresh.swap(false, Ordering::Relaxed),
            ..SyncStats::default()
        };
        let segments = if rebuild || known.iter().any(|k| !present.contains(k)) {
            self.clear()?;
            stats.rebuilt = true;
            names
        } else {
            names.into_iter().filter(|n| !known.contains(n)).collect()
        };
        // A damaged segment is skipped (and not remembered, so it is retried): the rest of the
        // repository stays usable, and `check` names the damage.
        load_all_skipping_damage(repo, segments, |id, seg: IndexSegment| {
            self.insert_segment(&id, &seg.packs, &seg.sketches)?;
            stats.segments_read += 1;
            Ok(())
        })?;
        // Deletion plans: few and short-lived; reload all of them whenever the set changes.
        let plans = repo.list_ids(ObjectKind::Pending)?;
        let known_plans = self.known(PLANS)?;
        if stats.rebuilt || plans.len() != known_plans.len() || plans.iter().any(|p| !known_plans.contains(p)) {
            self.clear_plans()?;
            load_all_skipping_damage(repo, plans, |id, plan: DeletionPlan| self.insert_plan(&id, &plan.packs))?;
        }
        Ok(stats)
    }

    fn known(&self, table: TableDefinition<[u8; 32], ()>) -> Result<HashSet<Id>> {
        let tx = self.db.begin_read().map_err(|e| db_err("read", e))?;
        let t = tx.open_table(table).map_err(|e| db_err("read", e))?;
        let mut out = HashSet::new();
        for r in t.iter().map_err(|e| db_err("read", e))? {
            let (k, _) = r.map_err(|e| db_err("read", e))?;
            out.insert(Id(k.value()));
        }
        Ok(out)
    }

    fn clear(&self) -> Result<()> {
        let e = |e: redb::Error| db_err("write", e);
        let tx = self.db.begin_write().map_err(|x| e(x.into()))?;
        for t in [SEGMENTS, PLANS] {
            tx.delete_table(t).map_err(|x| e(x.into()))?;
            tx.open_table(t).map_err(|x| e(x.into()))?;
        }
        for t in [BLOBS, PLAN_BLOBS] {
            tx.delete_table(t).map_err(|x| e(x.into()))?;
            tx.open_table(t).map_err(|x| e(x.into()))?;
        }
        for t in [SEG_PACKS, CONDEMNED] {
            tx.delete_table(t).map_err(|x| e(x.into()))?;
            tx.open_table(t).map_err(|x| e(x.into()))?;
        }
        tx.delete_table(PACK_NO).map_err(|x| e(x.into()))?;
        tx.open_table(PACK_NO).map_err(|x| e(x.into()))?;
        tx.delete_table(PACK_ID).map_err(|x| e(x.into()))?;
        tx.open_table(PACK_ID).map_err(|x| e(x.into()))?;
        for t in [DELTA_BASES, PLAN_DELTA_BASES] {
            tx.delete_table(t).map_err(|x| e(x.into()))?;
            tx.open_table(t).map_err(|x| e(x.into()))?;
        }
        tx.delete_table(SKETCHES).map_err(|x| e(x.into()))?;
        tx.open_table(SKETCHES).map_err(|x| e(x.into()))?;
        tx.commit().map_err(|x| e(x.into()))
    }

    fn clear_plans(&self) -> Result<()> {
        let e = |e: redb::Error| db_err("write", e);
        let tx = self.db.begin_write().map_err(|x| e(x.into()))?;
        tx.delete_table(PLANS).map_err(|x| e(x.into()))?;
        tx.open_table(PLANS).map_err(|x| e(x.into()))?;
        tx.delete_table(PLAN_BLOBS).map_err(|x| e(x.into()))?;
        tx.open_table(PLAN_BLOBS).map_err(|x| e(x.into()))?;
        tx.delete_table(CONDEMNED).map_err(|x| e(x.into()))?;
        tx.open_table(CONDEMNED).map_err(|x| e(x.into()))?;
        tx.delete_table(PLAN_DELTA_BASES).map_err(|x| e(x.into()))?;
        tx.open_table(PLAN_DELTA_BASES).map_err(|x| e(x.into()))?;
        tx.commit().map_err(|x| e(x.into()))
    }

    /// Record a segment (written by this process or read from the repository).
    pub fn insert_segment(&self, segment: &Id, packs: &[PackBlobs], sketches: &[(Id, Sketch)]) -> Result<()> {
        self.insert(segment, packs, sketches, false)
    }

    fn insert_plan(&self, plan: &Id, packs: &[PackBlobs]) -> Result<()> {
        self.insert(plan, packs, &[], true)
    }

    fn insert(&self, object: &Id, packs: &[PackBlobs], sketches: &[(Id, Sketch)], plan: bool) -> Result<()> {
        let e = |e: redb::Error| db_err("write", e);
        let mut tx = self.db.begin_write().map_err(|x| e(x.into()))?;
        if !self.durable {
            tx.set_durability(redb::Durability::None).map_err(|x| e(x.into()))?;
        }
        {
            let mut objects = tx
                .open_table(if plan { PLANS } else { SEGMENTS })
                .map_err(|x| e(x.into()))?;
            let mut pno = tx.open_table(PACK_NO).map_err(|x| e(x.into()))?;
            let mut pid = tx.open_table(PACK_ID).map_err(|x| e(x.into()))?;
            let mut blobs = tx
                .open_table(if plan { PLAN_BLOBS } else { BLOBS })
                .map_err(|x| e(x.into()))?;
            let mut marks = tx
                .open_table(if plan { CONDEMNED } else { SEG_PACKS })
                .map_err(|x| e(x.into()))?;
            let mut deltas = tx
                .open_table(if plan { PLAN_DELTA_BASES } else { DELTA_BASES })
                .map_err(|x| e(x.into()))?;
            let mut sk_table = tx.open_table(SKETCHES).map_err(|x| e(x.into()))?;
            let mut next = pid
                .last()
                .map_err(|x| e(x.into()))?
                .map(|(k, _)| k.value() + 1)
                .unwrap_or(0);
            for p in packs {
                let existing = pno.get(p.pack.0).map_err(|x| e(x.into()))?.map(|v| v.value());
                let no = match existing {
                    Some(n) => n,
                    None => {
                        let n = next;
                        next += 1;
                        pno.insert(p.pack.0, n).map_err(|x| e(x.into()))?;
                        pid.insert(n, p.pack.0).map_err(|x| e(x.into()))?;
                        n
                    }
                };
                marks.insert(no, ()).map_err(|x| e(x.into()))?;
                for b in &p.blobs {
                    let cur = blobs.get(b.id.0).map_err(|x| e(x.into()))?.map(|v| v.value());
                    let replace = match cur {
                        None => true,
                        Some(cur) => replaces(&p.pack, b, &cur, || {
                            Ok(pid
                                .get(pack_no(&cur))
                                .map_err(|x| e(x.into()))?
                                .map(|v| v.value())
                                .unwrap_or([0xff; 32]))
                        })?,
                    };
                    if replace {
                        blobs.insert(b.id.0, encode_value(no, b)).map_err(|x| e(x.into()))?;
                        // Bases are only read for entries whose encoding is a delta, so a
                        // base left behind by a replaced delta is never used.
                        if !b.bases.is_empty() {
                            let ids: Vec<u8> = b.bases.iter().flat_map(|x| x.0).collect();
                            deltas.insert(b.id.0, ids.as_slice()).map_err(|x| e(x.into()))?;
                        }
                    }
                }
            }
            for (id, sk) in sketches {
                for f in &sk.0 {
                    sk_table.insert(*f, id.0).map_err(|x| e(x.into()))?;
                }
            }
            objects.insert(object.0, ()).map_err(|x| e(x.into()))?;
        }
        tx.commit().map_err(|x| e(x.into()))
    }
}
