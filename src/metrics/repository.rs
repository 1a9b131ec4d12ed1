//! The figures of the repository as metrics: per source the snapshot count and the newest
//! snapshot's time; sizes and delta savings (`stats`); the last checks and the WAL archive
//! (`status`); the problems `status` finds under the configured limits.

use std::collections::BTreeMap;

use prometheus_client::encoding::EncodeLabelSet;

use super::{unix_seconds, Page, SourceLabels};
use crate::error::Result;
use crate::repo::session::Session;
use crate::stats::Stats;
use crate::status::{Limits, Problem, Status};

/// What the repository says, read at one instant.
#[derive(Debug, Clone)]
pub struct RepoFigures {
    /// Sources, checks, WAL.
    pub status: Status,
    /// Sizes.
    pub stats: Stats,
    /// What is wrong under the limits.
    pub problems: Vec<Problem>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReadData {
    read_data: String,
}

/// Read the repository's figures (the session's index gives the sizes).
pub fn read(session: &Session<'_>, limits: &Limits) -> Result<RepoFigures> {
    let status = crate::status::status(session.repo())?;
    // Every indexed chunk: re-reading every content list on each refresh would cost a scrape
    // what a prune's first step costs.
    let stats = crate::stats::compute(session, None)?.stats;
    let problems = crate::status::problems(&status, limits);
    Ok(RepoFigures {
        status,
        stats,
        problems,
    })
}

/// The metrics page of `f`, then `extra` gauges (name, help, value) of whoever serves it.
pub fn render(f: &RepoFigures, extra: &[(&str, &str, f64)]) -> Result<String> {
    let mut p = Page::new();
    sources(&mut p, &f.status);
    sizes(&mut p, &f.stats);
    checks(&mut p, &f.status);
    wal(&mut p, &f.status);
    let mut by_kind: BTreeMap<&str, u64> = BTreeMap::new();
    for pr in &f.problems {
        *by_kind.entry(pr.kind).or_default() += 1;
    }
    p.gauge(
        "dbbackup_status_problems",
        "Problems `dbbackup status` finds under the configured limits",
        f.problems.len() as f64,
    );
    p.gauges(
        "dbbackup_status_problems_by_kind",
        "Problems `dbbackup status` finds, by kind",
        by_kind
            .into_iter()
            .map(|(k, n)| (Kind { kind: k.to_string() }, n as f64)),
    );
    for (name, help, v) in extra {
        p.gauge(name, help, *v);
    }
    p.render()
}

fn sources(p: &mut Page, s: &Status) {
    let rows = |f: &dyn Fn(&crate::status::SourceStatus) -> f64| {
        s.sources
            .iter()
            .map(|src| {
                let l = SourceLabels {
                    host: src.host.clone(),
                    engine: src.engine.clone(),
                    name: src.name.clone(),
                };
                (l, f(src))
            })
            .collect::<Vec<_>>()
    };
    p.gauges(
        "dbbackup_snapshots",
        "Snapshots of each source",
        rows(&|x| x.snapshots as f64),
    );
    p.gauges(
        "dbbackup_newest_snapshot_timestamp_seconds",
        "When the newest snapshot of each source was taken",
        rows(&|x| unix_seconds(x.newest_time)),
    );
    p.gauges(
        "dbbackup_newest_snapshot_failed_databases",
        "Databases that failed in the newest snapshot of each source (--continue-on-error)",
        rows(&|x| x.newest_failed.len() as f64),
    );
    p.gauge(
        "dbbackup_unreadable_snapshots",
        "Snapshots whose manifest cannot be read",
        s.unreadable_snapshots.len() as f64,
    );
}

fn sizes(p: &mut Page, s: &Stats) {
    for (name, help, v) in [
        (
            "dbbackup_repository_snapshots",
            "Snapshots in the repository",
            s.snapshots,
        ),
        (
            "dbbackup_repository_size_bytes",
            "Bytes of all pack files in storage",
            s.stored_bytes,
        ),
        ("dbbackup_repository_packs", "Pack files in storage", s.packs),
        (
            "dbbackup_repository_logical_bytes",
            "What restoring every snapshot would produce",
            s.logical_bytes,
        ),
        (
            "dbbackup_repository_indexed_bytes",
            "Plaintext bytes of the indexed data chunks, referenced or not (stats --json: unique_bytes)",
            s.unique_bytes,
        ),
        ("dbbackup_repository_chunks", "Indexed data chunks", s.chunks),
        (
            "dbbackup_delta_chunks",
            "Chunks stored as deltas against a similar chunk",
            s.delta_chunks,
        ),
        (
            "dbbackup_delta_saved_bytes",
            "Bytes deltas save (estimated)",
            s.delta_saved_bytes,
        ),
    ] {
        p.gauge(name, help, v as f64);
    }
}

fn checks(p: &mut Page, s: &Status) {
    let c = &s.checks;
    let at = |r: &Option<crate::status::CheckRun>| r.as_ref().map(|r| unix_seconds(r.time));
    if let Some(t) = at(&c.last_clean) {
        p.gauge(
            "dbbackup_last_clean_check_timestamp_seconds",
            "When the last clean check ended",
            t,
        );
    }
    if let Some(t) = at(&c.last_clean_read_data) {
        p.gauge(
            "dbbackup_last_clean_read_data_check_timestamp_seconds",
            "When the last clean check that read every pack ended",
            t,
        );
    }
    if let Some(n) = &c.newest {
        let read = n.read_data.as_str().to_string();
        p.gauges(
            "dbbackup_last_check_timestamp_seconds",
            "When the newest recorded check ended, clean or not",
            [(
                ReadData {
                    read_data: read.clone(),
                },
                unix_seconds(n.time),
            )],
        );
        p.gauges(
            "dbbackup_last_check_problems",
            "Errors the newest recorded check found",
            [(ReadData { read_data: read }, n.problems as f64)],
        );
    }
}

fn wal(p: &mut Page, s: &Status) {
    let Some(w) = &s.wal else { return };
    p.gauge("dbbackup_wal_files", "WAL files archived", w.files as f64);
    if let Some(t) = w.newest_time {
        p.gauge(
            "dbbackup_wal_newest_timestamp_seconds",
            "When the newest WAL file was archived",
            unix_seconds(t),
        );
    }
    p.gauge(
        "dbbackup_wal_gaps",
        "Ranges of missing WAL segments since the oldest base backup",
        w.gaps.len() as f64,
    );
    p.gauge(
        "dbbackup_wal_archive_record_damaged",
        "1 when the WAL archive's record is damaged or missing",
        f64::from(u8::from(w.record_damaged)),
    );
}
