//! Retention policies: which snapshots to keep, by count (`last`), by calendar bucket (hour,
//! day, ISO week, month, year, in a chosen time zone), by age relative to the newest snapshot
//! of the group (`within`), or by tag. The rules are restic's: walking a group newest first,
//! a bucket rule keeps the first snapshot of every bucket value while its count lasts, and the
//! oldest snapshot when the count is not used up; a snapshot is kept when any rule keeps it.

pub mod forget;

use std::collections::BTreeMap;
use std::str::FromStr;

use jiff::tz::TimeZone;
use jiff::{Span, Timestamp, Zoned};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::snapshot::Manifest;
use crate::format::Id;

/// How many buckets a rule keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// This many.
    N(u32),
    /// Every bucket.
    All,
}

impl FromStr for Count {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Count, String> {
        match s {
            "all" | "unlimited" | "-1" => Ok(Count::All),
            n => n
                .parse()
                .map(Count::N)
                .map_err(|_| format!("`{s}` is not a count (a number, or `all`)")),
        }
    }
}

/// The calendar and count rules, in the order they are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rule {
    /// The N newest snapshots.
    Last,
    /// One per hour.
    Hourly,
    /// One per day.
    Daily,
    /// One per ISO 8601 week.
    Weekly,
    /// One per month.
    Monthly,
    /// One per year.
    Yearly,
}

impl Rule {
    /// Every rule.
    pub const ALL: [Rule; 6] = [
        Rule::Last,
        Rule::Hourly,
        Rule::Daily,
        Rule::Weekly,
        Rule::Monthly,
        Rule::Yearly,
    ];

    /// Its name in reasons (`daily`).
    pub fn name(self) -> &'static str {
        match self {
            Rule::Last => "last",
            Rule::Hourly => "hourly",
            Rule::Daily => "daily",
            Rule::Weekly => "weekly",
            Rule::Monthly => "monthly",
            Rule::Yearly => "yearly",
        }
    }

    /// The bucket of the `nr`-th newest snapshot, taken at `t`.
    fn bucket(self, t: &Zoned, nr: usize) -> i64 {
        let (y, m, d, h) = (t.year() as i64, t.month() as i64, t.day() as i64, t.hour() as i64);
        match self {
            Rule::Last => nr as i64,
            Rule::Hourly => ((y * 100 + m) * 100 + d) * 100 + h,
            Rule::Daily => (y * 100 + m) * 100 + d,
            Rule::Weekly => {
                let w = t.date().iso_week_date();
                w.year() as i64 * 100 + w.week() as i64
            }
            Rule::Monthly => y * 100 + m,
            Rule::Yearly => y,
        }
    }
}

/// A retention policy. Empty when no rule is set.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Counts per rule.
    pub counts: BTreeMap<Rule, Count>,
    /// Keep snapshots newer than the group's newest minus this span.
    pub within: Option<Span>,
    /// Keep snapshots carrying every tag of any of these lists.
    pub tags: Vec<Vec<String>>,
}

impl Policy {
    /// Set the count of `rule`.
    pub fn set(&mut self, rule: Rule, n: Option<Count>) {
        if let Some(n) = n {
            self.counts.insert(rule, n);
        }
    }

    /// Whether no rule is set (such a policy keeps nothing and is refused).
    pub fn is_empty(&self) -> bool {
        self.counts.values().all(|c| *c == Count::N(0)) && self.within.is_none() && self.tags.is_empty()
    }
}

/// A snapshot as retention sees it.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Its id.
    pub id: Id,
    /// When it was taken.
    pub time: Timestamp,
    /// Its tags.
    pub tags: Vec<String>,
}

/// Whether to keep a snapshot, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The snapshot.
    pub id: Id,
    /// When it was taken.
    pub time: Timestamp,
    /// Kept (true) or to remove.
    pub keep: bool,
    /// The rules that keep it (`daily`, `within 7d`, `tag nightly`).
    pub reasons: Vec<String>,
}

/// Apply `policy` to one group of snapshots; decisions newest first (equal times ordered by id,
/// highest first, so the outcome never depends on listing order).
pub fn apply(policy: &Policy, snaps: &[Candidate], tz: &TimeZone) -> Result<Vec<Decision>> {
    let mut list: Vec<&Candidate> = snaps.iter().collect();
    list.sort_by(|a, b| b.time.cmp(&a.time).then(b.id.cmp(&a.id)));
    let Some(newest) = list.first() else {
        return Ok(Vec::new());
    };
    let cutoff = match &policy.within {
        Some(span) => Some(
            newest
                .time
                .to_zoned(tz.clone())
                .checked_sub(*span)
                .map_err(|e| Error::usage(format!("span of the `within` rule {span}: {e}")))?
                .timestamp(),
        ),
        None => None,
    };
    let mut buckets: Vec<(Rule, Count, Option<i64>)> = policy.counts.iter().map(|(r, c)| (*r, *c, None)).collect();
    let mut out = Vec::with_capacity(list.len());
    for (nr, s) in list.iter().enumerate() {
        let mut reasons = Vec::new();
        for want in &policy.tags {
            if want.iter().all(|t| s.tags.contains(t)) {
                reasons.push(format!("tag {}", want.join(",")));
            }
        }
        if let (Some(cutoff), Some(span)) = (cutoff, &policy.within) {
            if s.time > cutoff {
                reasons.push(format!("within {span:#}"));
            }
        }
        let local = s.time.to_zoned(tz.clone());
        for (rule, count, last) in buckets.iter_mut() {
            if *count == Count::N(0) {
                continue;
            }
            let val = rule.bucket(&local, nr);
            // The oldest snapshot is kept while counts remain: the longest history possible.
            if Some(val) != *last || nr == list.len() - 1 {
                *last = Some(val);
                if let Count::N(n) = count {
                    *n -= 1;
                }
                reasons.push(rule.name().to_string());
            }
        }
        out.push(Decision {
            id: s.id,
            time: s.time,
            keep: !reasons.is_empty(),
            reasons,
        });
    }
    Ok(out)
}

/// Which manifest fields put snapshots in the same group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupBy {
    /// By host name.
    pub host: bool,
    /// By database engine (none for `--stdin` / `--from-command` snapshots).
    pub engine: bool,
    /// By source name.
    pub name: bool,
    /// By the set of tags.
    pub tags: bool,
}

impl Default for GroupBy {
    fn default() -> GroupBy {
        GroupBy {
            host: true,
            engine: true,
            name: true,
            tags: false,
        }
    }
}

impl FromStr for GroupBy {
    type Err = String;

    /// A comma-separated list of `host`, `engine`, `name`, `tags`; empty: one group.
    fn from_str(s: &str) -> std::result::Result<GroupBy, String> {
        let mut g = GroupBy {
            host: false,
            engine: false,
            name: false,
            tags: false,
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "host" => g.host = true,
                "engine" => g.engine = true,
                "name" => g.name = true,
                "tags" => g.tags = true,
                other => return Err(format!("cannot group by `{other}`: use host, engine, name, tags")),
            }
        }
        Ok(g)
    }
}

/// The values a group shares (unset fields are not grouped by).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Default)]
pub struct GroupKey {
    /// Host name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Engine (`-` for stream snapshots).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    /// Source name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Sorted tags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

impl GroupKey {
    /// The group of `m`.
    pub fn of(m: &Manifest, by: GroupBy) -> GroupKey {
        GroupKey {
            host: by.host.then(|| m.hostname.clone()),
            engine: by.engine.then(|| m.source.engine().unwrap_or("-").to_string()),
            name: by.name.then(|| m.name.clone()),
            tags: by.tags.then(|| {
                let mut t = m.tags.clone();
                t.sort();
                t.dedup();
                t
            }),
        }
    }
}

impl std::fmt::Display for GroupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(h) = &self.host {
            parts.push(format!("host {h}"));
        }
        if let Some(e) = &self.engine {
            parts.push(format!("engine {e}"));
        }
        if let Some(n) = &self.name {
            parts.push(format!("name {n}"));
        }
        if let Some(t) = &self.tags {
            parts.push(format!("tags [{}]", t.join(",")));
        }
        if parts.is_empty() {
            parts.push("all snapshots".into());
        }
        f.write_str(&parts.join(", "))
    }
}

/// One group's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct GroupPlan {
    /// What its snapshots share.
    pub group: GroupKey,
    /// Newest first.
    pub decisions: Vec<Decision>,
}

impl GroupPlan {
    /// Whether the policy removes every snapshot of the group.
    pub fn removes_all(&self) -> bool {
        !self.decisions.is_empty() && self.decisions.iter().all(|d| !d.keep)
    }
}

/// Group `manifests` by `by` and apply `policy` to each group.
pub fn plan(policy: &Policy, manifests: &[(Id, Manifest)], by: GroupBy, tz: &TimeZone) -> Result<Vec<GroupPlan>> {
    let mut groups: BTreeMap<GroupKey, Vec<Candidate>> = BTreeMap::new();
    for (id, m) in manifests {
        groups.entry(GroupKey::of(m, by)).or_default().push(Candidate {
            id: *id,
            time: m.time,
            tags: m.tags.clone(),
        });
    }
    groups
        .into_iter()
        .map(|(group, snaps)| {
            Ok(GroupPlan {
                decisions: apply(policy, &snaps, tz)?,
                group,
            })
        })
        .collect()
}
