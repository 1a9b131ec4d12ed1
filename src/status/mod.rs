//! `status`: what monitoring asks of a repository. Per source (host, engine, name) the newest
//! snapshot and its age; the last check and read-data check (from the check records every
//! host writes, repo-format §13); the WAL archive's newest segment and gaps. With limits it
//! names each problem: a stale or partial backup, a failed or overdue check, WAL archiving
//! that stopped or has holes.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Serialize;

use crate::error::Result;
use crate::format::check::{CheckRecord, ReadDataClass};
use crate::format::snapshot::{Manifest, Source};
use crate::format::Id;
use crate::repo::Repository;
use crate::wal::summary::Gap;

mod problems;

pub use problems::{human, parse_age, problems, Limits, Problem};

/// The newest snapshot of one source.
#[derive(Debug, Clone, Serialize)]
pub struct SourceStatus {
    /// Host that took it.
    pub host: String,
    /// Database engine (`postgresql`, `mariadb`, ...), or the source kind (`stdin`, ...).
    pub engine: String,
    /// Source name.
    pub name: String,
    /// Snapshots of this source.
    pub snapshots: u64,
    /// The newest one.
    pub newest_id: Id,
    /// When it was taken.
    pub newest_time: Timestamp,
    /// Databases that failed in it (`--continue-on-error`).
    pub newest_failed: Vec<String>,
}

/// One check run, as recorded.
#[derive(Debug, Clone, Serialize)]
pub struct CheckRun {
    /// When it finished.
    pub time: Timestamp,
    /// Host that ran it.
    pub hostname: String,
    /// How much data it read (`none`, `subset`, `all`).
    pub read_data: ReadDataClass,
    /// Errors it found.
    pub problems: u64,
}

impl From<&CheckRecord> for CheckRun {
    fn from(r: &CheckRecord) -> CheckRun {
        CheckRun {
            time: r.time,
            hostname: r.hostname.clone(),
            read_data: r.read_data,
            problems: r.problems,
        }
    }
}

/// What the check records say.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Checks {
    /// The newest clean check of any kind (each also verifies the structure).
    pub last_clean: Option<CheckRun>,
    /// The newest clean check that read every pack.
    pub last_clean_read_data: Option<CheckRun>,
    /// The newest check of any kind, clean or not.
    pub newest: Option<CheckRun>,
}

/// The WAL archive.
#[derive(Debug, Clone, Serialize)]
pub struct WalStatus {
    /// Files archived.
    pub files: u64,
    /// The newest segment of the newest timeline.
    pub newest_segment: Option<String>,
    /// When the newest file was pushed.
    pub newest_time: Option<Timestamp>,
    /// Missing segments from the oldest physical snapshot's start on (all of them when there
    /// is none).
    pub gaps: Vec<Gap>,
    /// The archive's record is damaged or missing (see `check`).
    pub record_damaged: bool,
}

/// The repository at a glance.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// When it was read.
    pub time: Timestamp,
    /// Per source, sorted by host, engine, name.
    pub sources: Vec<SourceStatus>,
    /// Checks.
    pub checks: Checks,
    /// The WAL archive, when anything was pushed.
    pub wal: Option<WalStatus>,
    /// Snapshots whose manifests cannot be read.
    pub unreadable_snapshots: Vec<Id>,
}

/// Read the repository's status.
pub fn status(repo: &Repository) -> Result<Status> {
    let (manifests, unreadable) = repo.readable_manifests()?;
    let records = crate::check::record::read_all(repo)?;
    Ok(Status {
        time: Timestamp::now(),
        sources: sources(&manifests),
        checks: checks(&records),
        wal: wal(repo, &manifests)?,
        unreadable_snapshots: unreadable.into_iter().map(|(id, _)| id).collect(),
    })
}

fn sources(manifests: &[(Id, Manifest)]) -> Vec<SourceStatus> {
    let mut by: BTreeMap<(String, String, String), SourceStatus> = BTreeMap::new();
    for (id, m) in manifests {
        let engine = m.source.engine().unwrap_or(m.source.kind()).to_string();
        let key = (m.hostname.clone(), engine.clone(), m.name.clone());
        let failed = match &m.source {
            Source::Database(d) => d.failed.iter().map(|f| f.name.clone()).collect(),
            _ => Vec::new(),
        };
        let s = by.entry(key).or_insert_with(|| SourceStatus {
            host: m.hostname.clone(),
            engine,
            name: m.name.clone(),
            snapshots: 0,
            newest_id: *id,
            newest_time: m.time,
            newest_failed: failed.clone(),
        });
        s.snapshots += 1;
        if m.time > s.newest_time || (m.time == s.newest_time && *id > s.newest_id) {
            s.newest_id = *id;
            s.newest_time = m.time;
            s.newest_failed = failed;
        }
    }
    by.into_values().collect()
}

fn checks(records: &[(Id, CheckRecord)]) -> Checks {
    let newest_of = |f: &dyn Fn(&CheckRecord) -> bool| {
        records
            .iter()
            .filter(|(_, r)| f(r))
            .max_by_key(|(id, r)| (r.time, *id))
            .map(|(_, r)| CheckRun::from(r))
    };
    Checks {
        last_clean: newest_of(&|r| r.clean()),
        last_clean_read_data: newest_of(&|r| r.clean() && r.read_data == ReadDataClass::All),
        newest: newest_of(&|_| true),
    }
}

fn wal(repo: &Repository, manifests: &[(Id, Manifest)]) -> Result<Option<WalStatus>> {
    let records = crate::wal::archive::read(repo)?;
    let entries = crate::wal::catalog::all(repo)?;
    if entries.is_empty() && records.intact.is_empty() && records.damaged.is_empty() {
        return Ok(None);
    }
    let info = records.intact.first().map(|(_, a)| a);
    let s = crate::wal::summary::summarize(&entries, info);
    // Gaps matter from the oldest base a recovery can start from.
    let oldest_start = manifests
        .iter()
        .filter_map(|(_, m)| match &m.source {
            Source::Physical(p) => Some(p.start_wal.clone()),
            _ => None,
        })
        .min();
    let gaps = s
        .timelines
        .iter()
        .flat_map(|t| t.gaps.iter())
        .filter(|g| oldest_start.as_ref().is_none_or(|start| g.to >= *start))
        .cloned()
        .collect();
    Ok(Some(WalStatus {
        files: s.files,
        newest_segment: s.timelines.last().map(|t| t.last.clone()),
        newest_time: s.newest,
        gaps,
        record_damaged: !records.damaged.is_empty() || (records.intact.is_empty() && !entries.is_empty()),
    }))
}
