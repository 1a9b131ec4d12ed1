//! `dbbackup forget [ID...] [--keep-* ...]`: remove snapshots by id, or those a retention
//! policy does not keep, group by group; `--dry-run` shows every decision and its reason.
//! Only snapshot manifests are removed; `prune` frees the space.

use dbbackup::repo::lock;
use dbbackup::retention::forget::{forget, ForgetRequest, PolicyRequest, Selection};
use dbbackup::retention::{Count, GroupBy, GroupPlan, Policy, Rule};
use dbbackup::Error;
use jiff::tz::TimeZone;

use super::{output, Ctx};

/// Retention rules, shared with `prune`.
#[derive(clap::Args, Debug, Clone)]
pub struct KeepArgs {
    /// Keep the N newest snapshots of each group (`all` for every one)
    #[arg(long, value_name = "N")]
    keep_last: Option<Count>,
    /// Keep the newest snapshot of each of the last N hours that have one
    #[arg(long, value_name = "N")]
    keep_hourly: Option<Count>,
    /// Keep the newest snapshot of each of the last N days that have one
    #[arg(long, value_name = "N")]
    keep_daily: Option<Count>,
    /// Keep the newest snapshot of each of the last N ISO weeks that have one
    #[arg(long, value_name = "N")]
    keep_weekly: Option<Count>,
    /// Keep the newest snapshot of each of the last N months that have one
    #[arg(long, value_name = "N")]
    keep_monthly: Option<Count>,
    /// Keep the newest snapshot of each of the last N years that have one
    #[arg(long, value_name = "N")]
    keep_yearly: Option<Count>,
    /// Keep every snapshot taken within this span before the group's newest (e.g. 7d, 2w,
    /// 1y6mo, 36h)
    #[arg(long, value_name = "SPAN")]
    keep_within: Option<jiff::Span>,
    /// Keep snapshots carrying all of these comma-separated tags (repeatable: any list)
    #[arg(long = "keep-tag", value_name = "TAG[,TAG]")]
    keep_tags: Vec<String>,
    /// Group snapshots by these fields before applying the rules: host, engine, name, tags
    /// (comma-separated; empty for a single group)
    #[arg(long, value_name = "FIELDS", default_value = "host,engine,name")]
    group_by: GroupBy,
    /// Time zone of the calendar buckets (IANA name, e.g. Europe/Berlin) [default: the
    /// system's]
    #[arg(long, env = "DBBACKUP_TIME_ZONE", value_name = "TZ")]
    time_zone: Option<String>,
    /// Only consider snapshots of this source name
    #[arg(long)]
    name: Option<String>,
    /// Only consider snapshots taken on this host (`--snapshot-host`, as in every command that
    /// selects snapshots; `--host` still works)
    #[arg(long = "snapshot-host", visible_alias = "host", value_name = "HOST")]
    host: Option<String>,
    /// Remove snapshots even when that empties a group (by default a policy that keeps
    /// nothing of a group is refused)
    #[arg(long)]
    allow_remove_all: bool,
}

impl KeepArgs {
    /// The policy these flags describe.
    pub fn policy(&self) -> Policy {
        let mut p = Policy::default();
        p.set(Rule::Last, self.keep_last);
        p.set(Rule::Hourly, self.keep_hourly);
        p.set(Rule::Daily, self.keep_daily);
        p.set(Rule::Weekly, self.keep_weekly);
        p.set(Rule::Monthly, self.keep_monthly);
        p.set(Rule::Yearly, self.keep_yearly);
        p.within = self.keep_within;
        p.tags = self
            .keep_tags
            .iter()
            .map(|l| {
                l.split(',')
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty())
                    .collect()
            })
            .collect();
        p
    }

    /// The bucket time zone.
    pub fn zone(&self) -> dbbackup::Result<TimeZone> {
        match &self.time_zone {
            Some(name) => TimeZone::get(name).map_err(|e| Error::usage(format!("--time-zone {name}: {e}"))),
            None => Ok(TimeZone::system()),
        }
    }

    /// The forget these flags ask for, checked before the repository is opened: `None`
    /// when they name no rule (prune then forgets nothing).
    pub fn request(&self, dry_run: bool) -> dbbackup::Result<Option<ForgetRequest>> {
        if self.policy().is_empty() {
            return Ok(None);
        }
        ForgetRequest::new(self.selection()?, dry_run).map(Some)
    }

    /// The snapshots the rules select (the library refuses an empty policy).
    fn selection(&self) -> dbbackup::Result<Selection> {
        Ok(Selection::Policy(PolicyRequest {
            policy: self.policy(),
            group_by: self.group_by,
            time_zone: self.zone()?,
            name: self.name.clone(),
            host: self.host.clone(),
            allow_remove_all: self.allow_remove_all,
        }))
    }
}

/// Arguments of `forget`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Snapshots to remove (ids or unique prefixes); without, the --keep-* rules decide
    #[arg(value_name = "ID")]
    ids: Vec<String>,
    #[command(flatten)]
    keep: KeepArgs,
    /// Show what would be kept and removed, and why, without removing anything
    #[arg(long, short = 'n')]
    dry_run: bool,
}

/// Print the plan as tables, one per group.
pub fn print_plan(plans: &[GroupPlan], tz: &TimeZone) {
    for g in plans {
        let keep = g.decisions.iter().filter(|d| d.keep).count();
        say!("{}: keep {keep}, remove {}", g.group, g.decisions.len() - keep);
        let rows: Vec<Vec<String>> = g
            .decisions
            .iter()
            .map(|d| {
                vec![
                    d.id.short(),
                    d.time.to_zoned(tz.clone()).strftime("%Y-%m-%d %H:%M:%S %Z").to_string(),
                    if d.keep { "keep" } else { "remove" }.to_string(),
                    d.reasons.join(", "),
                ]
            })
            .collect();
        output::table(&["ID", "Time", "Action", "Reasons"], &rows);
        if g.removes_all() {
            say!("warning: this removes every snapshot of the group");
        }
        say!();
    }
}

impl Args {
    /// What to forget: the ids given, or what the rules do not keep.
    fn request(&self) -> dbbackup::Result<ForgetRequest> {
        if self.ids.is_empty() {
            return ForgetRequest::new(self.keep.selection()?, self.dry_run);
        }
        if !self.keep.policy().is_empty() {
            return Err(Error::usage("give snapshot ids or --keep-* rules, not both"));
        }
        ForgetRequest::new(Selection::Ids(self.ids.clone()), self.dry_run)
    }
}

/// Run `forget`.
pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<()> {
    let req = a.request()?;
    let repo = ctx.open()?;
    let lock = lock::acquire(&repo, lock::Operation::Forget)?;
    let f = forget(&repo, &lock, &req)?;
    tracing::info!(
        target: super::outcome::RESULT,
        operation = "forget",
        status = "ok",
        dry_run = a.dry_run,
        forgotten = f.ids.len(),
        "snapshots forgotten"
    );
    let Some((plans, tz)) = &f.groups else {
        if ctx.g.json {
            return output::json(&serde_json::json!({
                "operation": "forget",
                "status": "ok",
                "dry_run": a.dry_run,
                "forgotten": f.ids,
            }));
        }
        for id in &f.ids {
            say!("{} {}", if a.dry_run { "would remove" } else { "removed" }, id.short());
        }
        if !a.dry_run {
            say!(
                "removed {} snapshots; run `dbbackup prune` to free their space",
                f.ids.len()
            );
        }
        return Ok(());
    };
    if ctx.g.json {
        return output::json(&serde_json::json!({
            "operation": "forget",
            "status": "ok",
            "dry_run": a.dry_run,
            "time_zone": tz.iana_name(),
            "groups": plans,
            "forgotten": f.ids,
        }));
    }
    print_plan(plans, tz);
    if a.dry_run {
        say!("dry run: {} snapshots would be removed", f.ids.len());
    } else {
        say!(
            "removed {} snapshots; run `dbbackup prune` to free their space",
            f.ids.len()
        );
    }
    Ok(())
}
