//! Which snapshots a command means: a filter on source name, host, engine and tags, and
//! `latest` that refuses to guess between hosts or engines.

use crate::error::{Error, Hint, Result};
use crate::format::snapshot::Manifest;
use crate::format::Id;
use crate::repo::Repository;

/// Snapshots a command may mean. Empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotFilter {
    /// Source name.
    pub name: Option<String>,
    /// Host that took it.
    pub host: Option<String>,
    /// Engines (any of them): the recorded engine of database and physical snapshots
    /// (`postgresql`, `mysql`, `mariadb`), the source kind of others (`stdin`, `command`).
    pub engines: Vec<String>,
    /// Tags it must carry (all of them).
    pub tags: Vec<String>,
}

impl SnapshotFilter {
    /// Only source `name`, when given.
    pub fn named(name: Option<&str>) -> SnapshotFilter {
        SnapshotFilter {
            name: name.map(str::to_string),
            ..SnapshotFilter::default()
        }
    }

    /// Whether `m` passes.
    pub fn matches(&self, m: &Manifest) -> bool {
        self.name.as_ref().is_none_or(|n| &m.name == n)
            && self.host.as_ref().is_none_or(|h| &m.hostname == h)
            && (self.engines.is_empty() || self.engines.iter().any(|e| e == engine_of(m)))
            && self.tags.iter().all(|t| m.tags.contains(t))
    }

    /// The filter in words, for messages (`name shop, host db1`), or `None`.
    fn describe(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(n) = &self.name {
            parts.push(format!("name `{n}`"));
        }
        if let Some(h) = &self.host {
            parts.push(format!("host `{h}`"));
        }
        if !self.engines.is_empty() {
            parts.push(format!("engine {}", self.engines.join(" or ")));
        }
        for t in &self.tags {
            parts.push(format!("tag `{t}`"));
        }
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}

/// A snapshot's engine, or its source kind when it has none.
pub fn engine_of(m: &Manifest) -> &str {
    m.source.engine().unwrap_or(m.source.kind())
}

/// The newest of `matching` (oldest first), refusing when they come from more than one host
/// or engine: which of them is meant would be a guess.
pub fn latest(repo: &Repository, mut matching: Vec<(Id, Manifest)>, filter: &SnapshotFilter) -> Result<(Id, Manifest)> {
    let mut sources: Vec<(&str, &str, &str, &Id, &Manifest)> = Vec::new();
    for (id, m) in matching.iter().rev() {
        let key = (m.hostname.as_str(), engine_of(m), m.name.as_str());
        if !sources.iter().any(|s| (s.0, s.1, s.2) == key) {
            sources.push((key.0, key.1, key.2, id, m));
        }
    }
    let hosts_or_engines = sources
        .iter()
        .map(|s| (s.0, s.1))
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    if hosts_or_engines > 1 {
        let list: Vec<String> = sources
            .iter()
            .map(|(h, e, n, id, m)| {
                format!(
                    "{h}/{e}/{n}: {} ({})",
                    id.short(),
                    m.time.round(jiff::Unit::Second).unwrap_or(m.time)
                )
            })
            .collect();
        return Err(Error::usage(format!(
            "`latest` matches snapshots of {} hosts or engines, newest of each: {}",
            hosts_or_engines,
            list.join("; ")
        ))
        .with_hint(Hint::ChooseSource));
    }
    matching.pop().ok_or_else(|| {
        Error::not_found(match filter.describe() {
            Some(f) => format!("no snapshot with {f} in repository {}", repo.store().display()),
            None => format!("repository {} has no snapshots", repo.store().display()),
        })
    })
}
