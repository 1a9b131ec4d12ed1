//! What `status` calls a problem: the limits (how old a snapshot, a check, the newest WAL may
//! be), and the judgement of a [`Status`] against them, pure and unit-tested.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use super::Status;
use crate::error::Result;

/// How old things may be before `status` calls them a problem. `None`: not judged.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    /// The newest snapshot of every source.
    pub max_age: Option<SignedDuration>,
    /// Per source name, instead of `max_age`.
    pub source_max_age: BTreeMap<String, SignedDuration>,
    /// The last clean check (of any kind).
    pub max_check_age: Option<SignedDuration>,
    /// The last clean check that read every pack.
    pub max_read_data_age: Option<SignedDuration>,
    /// The newest archived WAL file.
    pub max_wal_age: Option<SignedDuration>,
}

/// Something `status` found wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// What kind: `snapshot_stale`, `snapshot_partial`, `snapshot_unreadable`, `check_failed`,
    /// `check_stale`, `read_data_stale`, `wal_stale`, `wal_gap`, `wal_record`.
    pub kind: &'static str,
    /// What it is about: a source `host/engine/name`, `check`, `wal`, a snapshot id.
    pub subject: String,
    /// One line saying what is wrong.
    pub message: String,
}

/// What is wrong with `s` under `limits`, judged at `s.time`.
pub fn problems(s: &Status, limits: &Limits) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut push = |kind, subject: String, message: String| out.push(Problem { kind, subject, message });
    let age = |t: Timestamp| s.time.duration_since(t);
    for src in &s.sources {
        let subject = format!("{}/{}/{}", src.host, src.engine, src.name);
        let limit = limits.source_max_age.get(&src.name).copied().or(limits.max_age);
        if let Some(max) = limit.filter(|m| age(src.newest_time) > *m) {
            push(
                "snapshot_stale",
                subject.clone(),
                format!(
                    "newest snapshot {} is {} old (limit {})",
                    src.newest_id.short(),
                    human(age(src.newest_time)),
                    human(max)
                ),
            );
        }
        if !src.newest_failed.is_empty() {
            push(
                "snapshot_partial",
                subject,
                format!(
                    "newest snapshot {} lacks {} (they failed)",
                    src.newest_id.short(),
                    src.newest_failed.join(", ")
                ),
            );
        }
    }
    for id in &s.unreadable_snapshots {
        push(
            "snapshot_unreadable",
            id.to_string(),
            "manifest cannot be read (see `dbbackup check`)".into(),
        );
    }
    if let Some(n) = s.checks.newest.as_ref().filter(|n| n.problems > 0) {
        push(
            "check_failed",
            "check".into(),
            format!(
                "the newest check ({} on {}) found {} problems",
                n.time, n.hostname, n.problems
            ),
        );
    }
    for (kind, last, limit, what) in [
        ("check_stale", &s.checks.last_clean, limits.max_check_age, "check"),
        (
            "read_data_stale",
            &s.checks.last_clean_read_data,
            limits.max_read_data_age,
            "check that read every pack",
        ),
    ] {
        let Some(max) = limit else { continue };
        match last {
            None => push(
                kind,
                "check".into(),
                format!("no clean {what} recorded (limit {})", human(max)),
            ),
            Some(c) if age(c.time) > max => push(
                kind,
                "check".into(),
                format!(
                    "last clean {what} was {} ago (limit {})",
                    human(age(c.time)),
                    human(max)
                ),
            ),
            Some(_) => {}
        }
    }
    wal_problems(s, limits, &mut push);
    out
}

fn wal_problems(s: &Status, limits: &Limits, push: &mut impl FnMut(&'static str, String, String)) {
    let Some(w) = &s.wal else {
        if let Some(max) = limits.max_wal_age {
            push(
                "wal_stale",
                "wal".into(),
                format!("no WAL archived (limit {})", human(max)),
            );
        }
        return;
    };
    if let Some(max) = limits.max_wal_age {
        match w.newest_time {
            Some(t) if s.time.duration_since(t) <= max => {}
            Some(t) => push(
                "wal_stale",
                "wal".into(),
                format!(
                    "newest WAL file was archived {} ago (limit {})",
                    human(s.time.duration_since(t)),
                    human(max)
                ),
            ),
            None => push(
                "wal_stale",
                "wal".into(),
                format!("no WAL archived (limit {})", human(max)),
            ),
        }
    }
    for g in &w.gaps {
        push(
            "wal_gap",
            "wal".into(),
            format!("segments {} .. {} are missing", g.from, g.to),
        );
    }
    if w.record_damaged {
        push(
            "wal_record",
            "wal".into(),
            "the WAL archive's record is damaged or missing (see `dbbackup check`)".into(),
        );
    }
}

/// A duration as people say it: `26h`, `3d 4h`, `45m`.
pub fn human(d: SignedDuration) -> String {
    let secs = d.as_secs().max(0);
    let (days, hours, mins) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    match (days, hours, mins) {
        (0, 0, m) => format!("{m}m"),
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

/// Parse an age limit: `26h`, `8d`, `1w`, `1d 12h`, `90m` (a day is 24 hours here).
pub fn parse_age(s: &str) -> Result<SignedDuration> {
    let bad = || crate::error::Error::usage(format!("`{s}` is not an age (e.g. 26h, 8d, 1w, 1d 12h)"));
    let span: jiff::Span = s.trim().parse().map_err(|_| bad())?;
    span.to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .ok()
        .filter(|d| d.is_positive())
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::check::ReadDataClass;
    use crate::format::snapshot::{Manifest, Source};
    use crate::format::Id;
    use crate::status::{sources, CheckRun, Checks, SourceStatus, WalStatus};
    use crate::wal::summary::Gap;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    fn hours(h: i64) -> SignedDuration {
        SignedDuration::from_hours(h)
    }

    fn source(name: &str, age_h: i64, failed: &[&str]) -> SourceStatus {
        SourceStatus {
            host: "db1".into(),
            engine: "postgresql".into(),
            name: name.into(),
            snapshots: 3,
            newest_id: Id([1; 32]),
            newest_time: at(-age_h * 3600),
            newest_failed: failed.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn run(age_h: i64, read_data: ReadDataClass, problems: u64) -> CheckRun {
        CheckRun {
            time: at(-age_h * 3600),
            hostname: "db1".into(),
            read_data,
            problems,
        }
    }

    fn kinds(p: &[Problem]) -> Vec<(&str, &str)> {
        p.iter().map(|p| (p.kind, p.subject.as_str())).collect()
    }

    #[test]
    fn ages_parse_with_days() {
        assert_eq!(parse_age("26h").unwrap(), hours(26));
        assert_eq!(parse_age("8d").unwrap(), hours(192));
        assert_eq!(parse_age("1w").unwrap(), hours(168));
        assert_eq!(parse_age("1d 12h").unwrap(), hours(36));
        for bad in ["", "soon", "-2h", "0s"] {
            assert!(parse_age(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn problems_follow_the_limits() {
        let s = Status {
            time: at(0),
            sources: vec![
                source("shop", 30, &[]),
                source("crm", 2, &["crm_old"]),
                source("logs", 100, &[]),
            ],
            checks: Checks {
                last_clean: Some(run(50, ReadDataClass::None, 0)),
                last_clean_read_data: None,
                newest: Some(run(1, ReadDataClass::Subset, 2)),
            },
            wal: Some(WalStatus {
                files: 10,
                newest_segment: Some("000000010000000000000009".into()),
                newest_time: Some(at(-7200)),
                gaps: vec![Gap {
                    from: "000000010000000000000004".into(),
                    to: "000000010000000000000005".into(),
                }],
                record_damaged: false,
            }),
            unreadable_snapshots: vec![],
        };
        // No limits: only what is broken whatever the age.
        assert_eq!(
            kinds(&problems(&s, &Limits::default())),
            [
                ("snapshot_partial", "db1/postgresql/crm"),
                ("check_failed", "check"),
                ("wal_gap", "wal")
            ]
        );
        let limits = Limits {
            max_age: Some(hours(26)),
            source_max_age: [("logs".to_string(), hours(24 * 7))].into(),
            max_check_age: Some(hours(48)),
            max_read_data_age: Some(hours(24 * 35)),
            max_wal_age: Some(hours(1)),
        };
        assert_eq!(
            kinds(&problems(&s, &limits)),
            [
                ("snapshot_stale", "db1/postgresql/shop"),
                ("snapshot_partial", "db1/postgresql/crm"),
                ("check_failed", "check"),
                ("check_stale", "check"),
                ("read_data_stale", "check"),
                ("wal_stale", "wal"),
                ("wal_gap", "wal"),
            ]
        );
        // Within every limit, nothing but what is broken.
        let relaxed = Limits {
            max_age: Some(hours(31)),
            source_max_age: [("logs".to_string(), hours(101))].into(),
            max_check_age: Some(hours(51)),
            max_read_data_age: None,
            max_wal_age: Some(hours(3)),
        };
        assert_eq!(problems(&s, &relaxed).len(), 3);
    }

    #[test]
    fn the_newest_snapshot_of_each_source_counts() {
        use crate::format::snapshot::Summary;
        let m = |name: &str, host: &str, secs: i64| Manifest {
            version: 1,
            time: at(secs),
            hostname: host.into(),
            username: "u".into(),
            name: name.into(),
            tags: vec![],
            source: Source::Stdin,
            tool_version: "0".into(),
            entries: vec![],
            summary: Summary::default(),
        };
        let list = vec![
            (Id([1; 32]), m("a", "h1", 10)),
            (Id([2; 32]), m("a", "h1", 30)),
            (Id([3; 32]), m("a", "h2", 20)),
            (Id([4; 32]), m("a", "h1", 5)),
        ];
        let s = sources(&list);
        assert_eq!(s.len(), 2, "{s:?}");
        assert_eq!(
            (s[0].host.as_str(), s[0].snapshots, s[0].newest_id),
            ("h1", 3, Id([2; 32]))
        );
        assert_eq!(
            (s[1].host.as_str(), s[1].snapshots, s[1].newest_id),
            ("h2", 1, Id([3; 32]))
        );
    }
}
