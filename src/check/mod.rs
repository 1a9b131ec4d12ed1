//! Repository verification: structure (config, keys, index segments, deletion plans, packs
//! present, every snapshot's chunks indexed, the WAL archive) and, with `read_data`, every
//! pack (or a sample) downloaded, its name checked against its SHA-256, and every blob
//! authenticated, decompressed and re-hashed.
//!
//! `check` runs a fixed list of named phases over one [`Checker`], each reading what the
//! earlier ones found: [`structure`] (segments, snapshots), [`wal`] (catalog, archive record,
//! gaps), [`read_data`] (pack bytes, deltas rebuilt) and [`affected`] (which snapshots the
//! damage reaches).

mod affected;
mod read_data;
pub mod record;
mod structure;
mod wal;

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use crate::error::{Error, ErrorKind, Result};
use crate::format::keyfile::KeyFile;
use crate::format::pending::DeletionPlan;
use crate::format::snapshot::PhysicalSource;
use crate::format::{Id, ObjectKind};
use crate::progress::Progress;
use crate::repo::session::Session;
use crate::storage::pack_path;

pub use read_data::ReadData;

/// One problem found.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// The damaged or missing object, as a repository path.
    pub object: String,
    /// What is wrong.
    pub message: String,
    /// Ids of the snapshots that cannot be fully restored because of it.
    pub affects: Vec<Id>,
}

/// Result of a check.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Damage: the check fails when this is not empty.
    pub errors: Vec<Problem>,
    /// Things that are not damage but that the operator should know (a manifest without its
    /// registry copy: an interrupted snapshot or forget, or a lost copy; prune restores it).
    pub warnings: Vec<Problem>,
    /// Packs no index segment or deletion plan names (left by interrupted snapshots, or being
    /// written by running ones; prune removes them).
    pub orphan_packs: Vec<Id>,
    /// Packs a deletion plan condemns, waiting for a prune to delete them.
    pub pending_packs: u64,
    /// Packs whose bytes were read.
    pub packs_read: u64,
    /// Snapshots checked.
    pub snapshots: u64,
    /// WAL files checked.
    pub wal_files: u64,
    /// Packs in storage.
    pub packs: u64,
    /// Index segments.
    pub index_segments: u64,
    /// Blobs whose bytes were read and verified.
    pub blobs_read: u64,
    /// Bytes downloaded for `read_data`.
    pub bytes_read: u64,
}

impl Report {
    /// Record `e`, found reading `object`, as damage that no snapshot is known to need.
    fn damage(&mut self, object: String, e: &Error) {
        self.errors.push(Problem {
            object,
            message: e.to_string(),
            affects: vec![],
        })
    }
}

/// What the phases have found so far, and what they read it from.
struct Checker<'s, 'r> {
    session: &'s Session<'r>,
    read_data: ReadData,
    progress: &'s dyn Progress,
    rep: Report,
    /// Packs the index segments in storage name.
    indexed_packs: HashSet<Id>,
    /// Indexed deltas whose bases no segment holds plainly, and the snapshots needing each.
    dangling: Vec<structure::Dangling>,
    dangling_affects: BTreeMap<Id, Vec<Id>>,
    /// Packs deletion plans condemn.
    planned_packs: HashSet<Id>,
    /// Packs in storage, with their sizes.
    stored: BTreeMap<Id, u64>,
    /// Condemned packs already deleted: fine unless a snapshot still needs one.
    gone: HashSet<Id>,
    /// Every snapshot listed (manifest or registry copy), sorted.
    snaps: Vec<Id>,
    /// Chunks already reported missing (each is reported once).
    missing_chunks: HashSet<Id>,
    /// Physical snapshots, for the WAL phases.
    bases: Vec<(Id, PhysicalSource)>,
    /// WAL files the catalog holds, by name.
    wal_files: Vec<String>,
    clusters: crate::wal::archive::Clusters,
    /// Packs found damaged or missing, with why.
    damaged_packs: BTreeMap<Id, String>,
    /// Deltas that could not be rebuilt: why, and whether only a deletion plan names them.
    broken_deltas: BTreeMap<Id, (String, bool)>,
}

/// One step of a check: its name (in the debug log) and what it does.
type Phase = (&'static str, fn(&mut Checker<'_, '_>) -> Result<()>);

/// The phases in order: each may read what the earlier ones found.
const PHASES: &[Phase] = &[
    ("keys", |c| c.keys()),
    ("index segments", |c| c.segments()),
    ("deletion plans", |c| c.plans()),
    ("packs", |c| c.packs()),
    ("snapshots", |c| c.snapshots()),
    ("WAL catalog", |c| c.wal_catalog()),
    ("WAL archive", |c| c.wal_archive()),
    ("dangling deltas", |c| c.dangling_deltas()),
    ("pack data", |c| c.read_packs()),
    ("affected snapshots", |c| c.attribute()),
    ("check records", |c| c.check_records()),
];

/// Verify the repository.
pub fn check(session: &Session<'_>, read_data: ReadData, progress: &dyn Progress) -> Result<Report> {
    let mut c = Checker {
        session,
        read_data,
        progress,
        rep: Report::default(),
        indexed_packs: HashSet::new(),
        dangling: Vec::new(),
        dangling_affects: BTreeMap::new(),
        planned_packs: HashSet::new(),
        stored: BTreeMap::new(),
        gone: HashSet::new(),
        snaps: Vec::new(),
        missing_chunks: HashSet::new(),
        bases: Vec::new(),
        wal_files: Vec::new(),
        clusters: crate::wal::archive::Clusters::new(),
        damaged_packs: BTreeMap::new(),
        broken_deltas: BTreeMap::new(),
    };
    for (name, phase) in PHASES {
        tracing::debug!(phase = name, "check");
        phase(&mut c)?;
    }
    Ok(c.rep)
}

impl Checker<'_, '_> {
    /// Every key file decodes.
    fn keys(&mut self) -> Result<()> {
        let store = self.session.repo().store();
        for (name, _) in store.list("keys")? {
            if let Err(e) = store
                .read(&format!("keys/{name}"))
                .and_then(|b| KeyFile::decode(&name, &b))
            {
                self.rep.damage(format!("keys/{name}"), &e);
            }
        }
        Ok(())
    }

    /// Check records (§13) that cannot be read: no data depends on them, but their damage is
    /// storage's, and `status` would skip them.
    fn check_records(&mut self) -> Result<()> {
        for (id, e) in record::unreadable(self.session.repo())? {
            let why = format!("{e} (no data depends on it: the next check that is recorded replaces it)");
            self.rep
                .damage(format!("checks/{id}"), &Error::new(ErrorKind::Corrupt, why));
        }
        Ok(())
    }

    /// Index segments, read from storage (not the cache); deltas whose bases are gone.
    fn segments(&mut self) -> Result<()> {
        let (packs, dangling) = structure::read_segments(self.session, &mut self.rep)?;
        self.dangling_affects = dangling.iter().map(|d| (d.delta, vec![])).collect();
        self.indexed_packs = packs;
        self.dangling = dangling;
        Ok(())
    }

    /// Deletion plans: their packs are condemned, not orphans; chunks may still live in them.
    fn plans(&mut self) -> Result<()> {
        let repo = self.session.repo();
        for id in repo.list_ids(ObjectKind::Pending)? {
            match repo.load::<DeletionPlan>(&id) {
                Ok(plan) => self.planned_packs.extend(plan.packs.iter().map(|p| p.pack)),
                Err(e) if e.kind() == ErrorKind::NotFound => {} // swept meanwhile
                Err(e) => self.rep.damage(format!("pending/{id}"), &e),
            }
        }
        Ok(())
    }

    /// Packs in storage against the index and the plans.
    fn packs(&mut self) -> Result<()> {
        self.stored = self.session.repo().pack_sizes()?;
        let (stored, indexed, planned) = (&self.stored, &self.indexed_packs, &self.planned_packs);
        self.rep.packs = stored.len() as u64;
        for p in indexed.iter().filter(|p| !stored.contains_key(p)) {
            self.damaged_packs.insert(*p, "pack is missing".into());
        }
        self.rep.orphan_packs = stored
            .keys()
            .filter(|p| !indexed.contains(p) && !planned.contains(p))
            .copied()
            .collect();
        self.rep.pending_packs = planned.iter().filter(|p| !indexed.contains(p)).count() as u64;
        self.gone = planned
            .iter()
            .filter(|p| !indexed.contains(p) && !stored.contains_key(p))
            .copied()
            .collect();
        Ok(())
    }

    /// Indexed deltas whose bases no segment holds plainly, with the snapshots needing them.
    fn dangling_deltas(&mut self) -> Result<()> {
        for d in std::mem::take(&mut self.dangling) {
            self.rep.errors.push(Problem {
                object: format!("chunk {}", d.delta),
                message: format!(
                    "indexed as a delta in {} against chunk {}, which no index segment holds as a plainly stored chunk: it cannot be rebuilt (prune drops it once no snapshot needs it; `dbbackup repair snapshots` removes the snapshots that do)",
                    pack_path(&d.pack),
                    d.base
                ),
                affects: self.dangling_affects.remove(&d.delta).unwrap_or_default(),
            });
        }
        Ok(())
    }
}
