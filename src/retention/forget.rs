//! Forgetting snapshots (repo-format §8.4): by id, or those a retention policy does not keep,
//! group by group. Only manifests and their registry copies are removed; prune frees the
//! space. Runs under a lock of an operation that removes (forget, or prune forgetting first),
//! so no prune restores a copy while it is being removed.

use jiff::tz::TimeZone;

use super::{plan, GroupBy, GroupPlan, Policy};
use crate::error::{Error, Hint, Result};
use crate::format::Id;
use crate::repo::lock::LockGuard;
use crate::repo::Repository;

/// Which snapshots to forget.
#[derive(Debug, Clone)]
pub enum Selection {
    /// These snapshots, by id or unique id prefix (never `latest`).
    Ids(Vec<String>),
    /// Those `policy` keeps in none of their groups.
    Policy(PolicyRequest),
}

/// A retention policy, and the snapshots it applies to.
#[derive(Debug, Clone)]
pub struct PolicyRequest {
    /// What to keep (not empty).
    pub policy: Policy,
    /// How snapshots are grouped before the policy is applied.
    pub group_by: GroupBy,
    /// Time zone of the calendar buckets.
    pub time_zone: TimeZone,
    /// Only snapshots of this source name.
    pub name: Option<String>,
    /// Only snapshots taken on this host.
    pub host: Option<String>,
    /// Remove every snapshot of a group when the policy keeps none of them.
    pub allow_remove_all: bool,
}

/// A forget to run: what to remove, and whether only to say so.
#[derive(Debug, Clone)]
pub struct ForgetRequest {
    /// The snapshots.
    pub selection: Selection,
    /// Decide and report; remove nothing.
    pub dry_run: bool,
}

impl ForgetRequest {
    /// A request for `selection`, checked before any repository is opened: ids are never
    /// `latest` (a script's off-by-one would forget the newest backup), a policy keeps
    /// something.
    pub fn new(selection: Selection, dry_run: bool) -> Result<ForgetRequest> {
        match &selection {
            Selection::Ids(ids) if ids.iter().any(|s| s == "latest") => {
                return Err(Error::usage("name snapshots by id to forget them, not `latest`"))
            }
            Selection::Ids(ids) if ids.is_empty() => return Err(Error::usage("no snapshot to forget named")),
            Selection::Policy(p) if p.policy.is_empty() => {
                return Err(Error::usage("no retention rule given; nothing would be kept").with_hint(Hint::KeepRules))
            }
            _ => {}
        }
        Ok(ForgetRequest { selection, dry_run })
    }
}

/// What a forget decided and did.
#[derive(Debug, Clone)]
pub struct Forgotten {
    /// Snapshots removed (a dry run: that would be), sorted for ids, newest first per group
    /// for a policy.
    pub ids: Vec<Id>,
    /// For a policy: every group's decisions, and the buckets' time zone.
    pub groups: Option<(Vec<GroupPlan>, TimeZone)>,
}

/// Forget what `req` selects, under `lock` (forget's, or prune's).
pub fn forget(repo: &Repository, lock: &LockGuard, req: &ForgetRequest) -> Result<Forgotten> {
    if !lock.operation().removes() {
        return Err(Error::general(format!(
            "a {} lock does not allow removing snapshots",
            lock.operation()
        )));
    }
    let out = match &req.selection {
        Selection::Ids(specs) => {
            let mut ids = Vec::new();
            for spec in specs {
                ids.push(repo.find_snapshot(spec, None)?.0);
            }
            ids.sort();
            ids.dedup();
            Forgotten { ids, groups: None }
        }
        Selection::Policy(p) => {
            let plans = decide(repo, p, req.dry_run)?;
            let ids = plans
                .iter()
                .flat_map(|g| g.decisions.iter().filter(|d| !d.keep).map(|d| d.id))
                .collect();
            Forgotten {
                ids,
                groups: Some((plans, p.time_zone.clone())),
            }
        }
    };
    if !req.dry_run {
        for id in &out.ids {
            repo.remove_snapshot(id)?;
            tracing::info!(snapshot = %id, "removed");
        }
    }
    Ok(out)
}

/// Apply the policy to the selected snapshots, group by group; an error when it empties a
/// group without `allow_remove_all` (a dry run only reports it).
fn decide(repo: &Repository, p: &PolicyRequest, dry_run: bool) -> Result<Vec<GroupPlan>> {
    let manifests: Vec<_> = repo
        .manifests()?
        .into_iter()
        .filter(|(_, m)| p.name.as_ref().is_none_or(|n| &m.name == n))
        .filter(|(_, m)| p.host.as_ref().is_none_or(|h| &m.hostname == h))
        .collect();
    let plans = plan(&p.policy, &manifests, p.group_by, &p.time_zone)?;
    let emptied: Vec<String> = plans
        .iter()
        .filter(|g| g.removes_all())
        .map(|g| g.group.to_string())
        .collect();
    if !emptied.is_empty() && !p.allow_remove_all && !dry_run {
        return Err(Error::usage(format!(
            "the policy keeps no snapshot of {}; refusing to remove them all",
            emptied.join("; ")
        ))
        .with_hint(Hint::AllowRemoveAll));
    }
    Ok(plans)
}
