//! The WAL archive's record `wal-archive/<id>` (repo-format §12): which cluster the archive
//! belongs to, bound to its repository. The first push into an empty archive writes it; every
//! later push checks its file against it. A record that is damaged, missing while the catalog
//! holds files, or contradicting the catalog is never written again by a push (a push from
//! another cluster could otherwise take the archive over): `check` reports it, and
//! [`repair`] writes it again from the catalog under an exclusive lock.

use std::collections::BTreeMap;

use serde::Serialize;

use super::catalog;
use super::names::WalFile;
use super::DEFAULT_SEG_SIZE;
use crate::error::{Error, ErrorKind, Hint, Result};
use crate::format::wal::{ArchiveInfo, WalEntry};
use crate::format::{Id, ObjectKind, FORMAT_VERSION};
use crate::repo::Repository;

/// What `check` and `repair` tell the operator to run.
const REPAIR_HINT: &str = "`dbbackup repair wal-archive` writes it again from the catalog";

/// The records in `wal-archive/`, as read.
#[derive(Debug, Default)]
pub struct Records {
    /// Records that authenticate, decode and belong to this repository.
    pub intact: Vec<(Id, ArchiveInfo)>,
    /// Objects that do not (repository path, why).
    pub damaged: Vec<(String, Error)>,
}

impl Records {
    /// The clusters the intact records name, each once, in order.
    fn clusters(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.intact.iter().map(|(_, a)| a.system_id.as_str()).collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// Read every record. Damage (authentication, decoding, a name that is no id, a record of
/// another repository) is collected, not returned; storage failures are errors.
pub fn read(repo: &Repository) -> Result<Records> {
    let dir = ObjectKind::WalArchive.dir();
    let mut out = Records::default();
    for (name, _) in repo.store().list(dir)? {
        let object = format!("{dir}/{name}");
        let Ok(id) = name.parse::<Id>() else {
            out.damaged
                .push((object, Error::new(ErrorKind::Corrupt, "not named by a storage id")));
            continue;
        };
        let r = repo.load::<ArchiveInfo>(&id);
        match r {
            Ok(a) => match a.repository {
                Some(r) if r != repo.config().id => out.damaged.push((
                    object,
                    Error::new(
                        ErrorKind::Corrupt,
                        format!("belongs to repository {r}, not to this one ({})", repo.config().id),
                    ),
                )),
                _ => out.intact.push((id, a)),
            },
            Err(e) if e.kind() == ErrorKind::NotFound => {} // removed since the listing
            Err(e) if e.kind() == ErrorKind::Corrupt => out.damaged.push((object, e)),
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// The archive's cluster as the archive's users may trust it: `None` when no record exists.
/// A damaged record, or records naming two clusters, are an error (exit 65).
pub fn cluster(repo: &Repository) -> Result<Option<ArchiveInfo>> {
    let mut r = read(repo)?;
    if let Some((object, e)) = r.damaged.first() {
        return Err(Error::new(
            ErrorKind::Corrupt,
            format!("the WAL archive's record {object} is damaged ({e}); {REPAIR_HINT}"),
        ));
    }
    if let [a, b, ..] = r.clusters()[..] {
        return Err(Error::new(
            ErrorKind::Corrupt,
            format!("the WAL archive's records name two clusters ({a} and {b}); {REPAIR_HINT}"),
        ));
    }
    Ok(r.intact.pop().map(|(_, a)| a))
}

/// Archived files per cluster (system identifier → how many, and one of them). Files pushed
/// without a known cluster (a history file from outside a data directory) are left out.
pub type Clusters = BTreeMap<String, (u64, String)>;

/// Count `e` into `c`.
pub fn count(c: &mut Clusters, e: &WalEntry) {
    if e.system_id.is_empty() {
        return;
    }
    let slot = c.entry(e.system_id.clone()).or_insert((0, e.file.clone()));
    slot.0 += 1;
}

fn describe(c: &Clusters) -> String {
    c.iter()
        .map(|(s, (n, f))| format!("cluster {s}: {n} files, e.g. {f}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// What `check` finds wrong with the records, given what the catalog holds (`files` entries,
/// `clusters` of them): (object, message) pairs, each damage (exit 65).
pub fn problems(records: &Records, files: u64, clusters: &Clusters) -> Vec<(String, String)> {
    let dir = ObjectKind::WalArchive.dir();
    let mut out = Vec::new();
    for (object, e) in &records.damaged {
        out.push((
            object.clone(),
            format!("WAL archive record is damaged ({e}): every `wal push` fails until {REPAIR_HINT}"),
        ));
    }
    let named = records.clusters();
    if named.len() > 1 {
        out.push((
            format!("{dir}/"),
            format!(
                "the WAL archive's records name {} clusters ({}): every `wal push` fails until {REPAIR_HINT}",
                named.len(),
                named.join(", ")
            ),
        ));
    }
    if records.intact.is_empty() && records.damaged.is_empty() && files > 0 {
        out.push((
            format!("{dir}/"),
            format!(
                "the WAL archive's record is missing while the archive holds {files} WAL files: every `wal push` fails until {REPAIR_HINT}"
            ),
        ));
    }
    for (id, a) in &records.intact {
        let foreign: Clusters = clusters
            .iter()
            .filter(|(s, _)| **s != a.system_id)
            .map(|(s, v)| (s.clone(), v.clone()))
            .collect();
        if !foreign.is_empty() {
            out.push((
                format!("{dir}/{id}"),
                format!(
                    "the WAL archive's record names cluster {}, but the archive holds WAL of another ({}): \
                     the record or those files came from another cluster; `dbbackup repair wal-archive`, given \
                     the system identifier of the cluster this repository backs up, writes the record again \
                     and removes the other cluster's files from the catalog",
                    a.system_id,
                    describe(&foreign)
                ),
            ));
        }
    }
    out
}

/// What a push may do about the archive's cluster, decided once per push.
pub struct Admission {
    state: State,
}

enum State {
    /// The record names this cluster.
    Known(ArchiveInfo),
    /// No record, no catalog entry: the first push writes the record.
    Empty,
    /// No record, but the catalog holds files of these clusters.
    Lost(Clusters),
}

impl Admission {
    /// Read the record (and, only if it is missing, the catalog).
    pub fn read(repo: &Repository) -> Result<Admission> {
        let state = match cluster(repo)? {
            Some(a) => State::Known(a),
            None => {
                let locations = catalog::list(repo)?;
                if locations.is_empty() {
                    State::Empty
                } else {
                    let mut c = Clusters::new();
                    catalog::read(repo, locations, |_, e| {
                        count(&mut c, &e);
                        Ok(())
                    })?;
                    State::Lost(c)
                }
            }
        };
        Ok(Admission { state })
    }

    /// May file `name` of cluster `sys` (segment size `seg_size`) be archived? The first
    /// push into an empty archive writes the record.
    pub fn admit(&mut self, repo: &Repository, name: &str, sys: u64, seg_size: u32) -> Result<()> {
        let sys = sys.to_string();
        match &self.state {
            State::Known(a) if a.system_id == sys => Ok(()),
            State::Known(a) => Err(other_cluster(name, &sys, &format!("cluster {}", a.system_id))),
            State::Lost(c) if !c.is_empty() && !c.contains_key(&sys) => Err(other_cluster(name, &sys, &describe(c))),
            State::Lost(c) => Err(Error::new(
                ErrorKind::Corrupt,
                format!(
                    "the WAL archive's record is missing while the archive holds {} WAL files of this cluster; \
                     no push writes it again on its own (another cluster could take the archive over); {REPAIR_HINT}",
                    c.get(&sys).map_or(0, |v| v.0)
                ),
            )),
            State::Empty => {
                let a = ArchiveInfo {
                    version: FORMAT_VERSION,
                    system_id: sys,
                    wal_segment_size: seg_size,
                    created: jiff::Timestamp::now(),
                    hostname: crate::util::hostname(),
                    repository: Some(repo.config().id),
                };
                repo.save(&a)?;
                self.state = State::Known(a);
                Ok(())
            }
        }
    }
}

fn other_cluster(name: &str, sys: &str, archive: &str) -> Error {
    Error::config(format!(
        "this repository archives the WAL of {archive}, but {name} comes from cluster {sys}; \
         use a repository per cluster (after a new initdb or pg_upgrade, start a new one)"
    ))
}

/// What [`repair`] did (or would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ArchiveRepair {
    /// Nothing was changed.
    pub dry_run: bool,
    /// The cluster the archive belongs to after the repair (`None`: nothing archived, no record).
    pub system_id: Option<String>,
    /// The intact record of that cluster that is kept, if there is one.
    pub record_kept: Option<Id>,
    /// The record written when none was kept (`None` in a dry run).
    pub record_written: Option<Id>,
    /// Records removed: damaged, of another repository, or of another cluster.
    pub records_removed: Vec<String>,
    /// Catalog entries of other clusters removed (their chunks go with the next prune).
    pub files_removed: Vec<String>,
}

/// Make the archive's record sound again: keep an intact record of the archive's cluster or
/// write one, then remove every other record and the catalog entries of other clusters. The
/// cluster is `system_id` when given, else the only cluster the catalog holds files of (or
/// the intact records name). The caller holds an exclusive lock. The new record is written
/// before anything is removed, so an interrupted repair leaves the archive no worse.
pub fn repair(repo: &Repository, system_id: Option<&str>, dry_run: bool) -> Result<ArchiveRepair> {
    let records = read(repo)?;
    let entries = catalog::all(repo)?;
    let mut clusters = Clusters::new();
    for (_, e) in &entries {
        count(&mut clusters, e);
    }
    let mut out = ArchiveRepair {
        dry_run,
        ..Default::default()
    };
    let Some(sys) = choose(system_id, &clusters, &records)? else {
        // Nothing archived and no intact record: only damage to remove.
        out.records_removed = records.damaged.iter().map(|(o, _)| o.clone()).collect();
        if !dry_run {
            for o in &out.records_removed {
                repo.store().delete(o)?;
            }
        }
        return Ok(out);
    };
    let kept = records
        .intact
        .iter()
        .find(|(_, a)| a.system_id == sys)
        .map(|(id, _)| *id);
    let dir = ObjectKind::WalArchive.dir();
    out.records_removed = records.damaged.iter().map(|(o, _)| o.clone()).collect();
    out.records_removed.extend(
        records
            .intact
            .iter()
            .filter(|(id, _)| Some(*id) != kept)
            .map(|(id, _)| format!("{dir}/{id}")),
    );
    let foreign: Vec<&(Id, WalEntry)> = entries
        .iter()
        .filter(|(_, e)| !e.system_id.is_empty() && e.system_id != sys)
        .collect();
    out.files_removed = foreign.iter().map(|(_, e)| e.file.clone()).collect();
    out.system_id = Some(sys.clone());
    out.record_kept = kept;
    if dry_run {
        return Ok(out);
    }
    if kept.is_none() {
        let a = ArchiveInfo {
            version: FORMAT_VERSION,
            wal_segment_size: segment_size(&entries, &sys),
            created: entries
                .iter()
                .filter(|(_, e)| e.system_id == sys)
                .map(|(_, e)| e.time)
                .min()
                .unwrap_or_else(jiff::Timestamp::now),
            system_id: sys,
            hostname: crate::util::hostname(),
            repository: Some(repo.config().id),
        };
        out.record_written = Some(repo.save(&a)?);
    }
    for o in &out.records_removed {
        repo.store().delete(o)?;
    }
    for (id, e) in foreign {
        catalog::remove(repo, &e.file, id)?;
    }
    Ok(out)
}

/// The cluster a repair settles on.
fn choose(given: Option<&str>, clusters: &Clusters, records: &Records) -> Result<Option<String>> {
    if let Some(s) = given {
        let known = clusters.contains_key(s) || records.intact.iter().any(|(_, a)| a.system_id == s);
        if !known {
            return Err(Error::usage(format!(
                "neither an archived WAL file nor an intact record names cluster {s} ({})",
                if clusters.is_empty() {
                    "the archive holds no WAL file of a known cluster".to_string()
                } else {
                    describe(clusters)
                }
            )));
        }
        return Ok(Some(s.to_string()));
    }
    let named = records.clusters();
    match (clusters.len(), named.len()) {
        (1, _) => Ok(clusters.keys().next().cloned()),
        (0, 0) => Ok(None),
        (0, 1) => Ok(named.first().map(|s| s.to_string())),
        (0, _) => Err(Error::usage(format!(
            "the WAL archive's records name {} clusters ({}) and no archived file tells which is right",
            named.len(),
            named.join(", ")
        ))
        .with_hint(Hint::SystemId)),
        _ => Err(Error::usage(format!(
            "the archive holds WAL of {} clusters ({}); once the cluster this repository backs up is named, \
             the other clusters' files are removed from the catalog",
            clusters.len(),
            describe(clusters)
        ))
        .with_hint(Hint::SystemId)),
    }
}

/// The segment size of cluster `sys`'s archive: the size of its full segments, or
/// PostgreSQL's default when it has none.
fn segment_size(entries: &[(Id, WalEntry)], sys: &str) -> u32 {
    entries
        .iter()
        .filter(|(_, e)| e.system_id == sys && matches!(WalFile::parse(&e.file), Ok(WalFile::Segment { .. })))
        .filter_map(|(_, e)| u32::try_from(e.data.size).ok())
        .max()
        .unwrap_or(DEFAULT_SEG_SIZE)
}
