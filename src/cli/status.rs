//! `dbbackup status [--max-age 26h] [--max-check-age 8d] [--max-read-data-age 35d]
//! [--max-wal-age 1h]`: per source the newest snapshot and its age, the last checks, WAL
//! archiving; with limits (flags, or `[status]` in the config file) a monitoring probe that
//! exits 4 and names each problem.

use dbbackup::status::{human, parse_age, problems, status, CheckRun, Limits, Problem, Status};
use jiff::SignedDuration;

use super::outcome::Unfinished;
use super::{output, Ctx};

/// Arguments of `status`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A source whose newest snapshot is older than this is a problem (26h, 8d, 1w; per
    /// source: `[status.sources.NAME] max_age` in the config file)
    #[arg(long, value_parser = age, value_name = "AGE")]
    max_age: Option<SignedDuration>,
    /// No clean `check` for this long is a problem
    #[arg(long, value_parser = age, value_name = "AGE")]
    max_check_age: Option<SignedDuration>,
    /// No clean `check --read-data` for this long is a problem
    #[arg(long, value_parser = age, value_name = "AGE")]
    max_read_data_age: Option<SignedDuration>,
    /// No WAL file archived for this long is a problem
    #[arg(long, value_parser = age, value_name = "AGE")]
    max_wal_age: Option<SignedDuration>,
}

fn age(s: &str) -> Result<SignedDuration, String> {
    parse_age(s).map_err(|e| e.to_string())
}

/// The limits: flags, else the config file's `[status]`.
pub fn limits(ctx: &Ctx, a: &Args) -> Limits {
    let file = &ctx.file.status;
    Limits {
        max_age: a.max_age.or(file.max_age),
        source_max_age: file
            .sources
            .iter()
            .filter_map(|(n, s)| Some((n.clone(), s.max_age?)))
            .collect(),
        max_check_age: a.max_check_age.or(file.max_check_age),
        max_read_data_age: a.max_read_data_age.or(file.max_read_data_age),
        max_wal_age: a.max_wal_age.or(file.max_wal_age),
    }
}

/// Run `status`.
pub fn run(ctx: &Ctx, a: Args) -> anyhow::Result<()> {
    let limits = limits(ctx, &a);
    let repo = ctx.open()?;
    let s = status(&repo)?;
    let found = problems(&s, &limits);
    tracing::info!(
        target: super::outcome::RESULT,
        operation = "status",
        status = if found.is_empty() { "ok" } else { "problems" },
        sources = s.sources.len(),
        problems = found.len(),
        "status read"
    );
    if !found.is_empty() {
        let n = found.len();
        *ctx.unfinished.borrow_mut() = Some(Unfinished::Problems(format!(
            "{n} problem{}: {}",
            if n == 1 { "" } else { "s" },
            found.iter().map(|p| p.kind).collect::<Vec<_>>().join(", ")
        )));
    }
    if ctx.g.json {
        return output::json(&json(&s, &found));
    }
    print(&s, &found);
    Ok(())
}

/// The `--json` document: the status, ages in seconds, and the problems.
fn json(s: &Status, found: &[Problem]) -> serde_json::Value {
    let secs = |t: jiff::Timestamp| s.time.duration_since(t).as_secs();
    let sources: Vec<_> = s
        .sources
        .iter()
        .map(|src| {
            let mut v = serde_json::to_value(src).unwrap_or_default();
            v["newest_age_seconds"] = secs(src.newest_time).into();
            v
        })
        .collect();
    let mut checks = serde_json::to_value(&s.checks).unwrap_or_default();
    for (k, c) in [
        ("last_clean", &s.checks.last_clean),
        ("last_clean_read_data", &s.checks.last_clean_read_data),
        ("newest", &s.checks.newest),
    ] {
        if let Some(c) = c {
            checks[k]["age_seconds"] = secs(c.time).into();
        }
    }
    let mut wal = serde_json::to_value(&s.wal).unwrap_or_default();
    if let Some(t) = s.wal.as_ref().and_then(|w| w.newest_time) {
        wal["newest_age_seconds"] = secs(t).into();
    }
    serde_json::json!({
        "operation": "status",
        "status": if found.is_empty() { "ok" } else { "problems" },
        "time": s.time,
        "sources": sources,
        "checks": checks,
        "wal": wal,
        "unreadable_snapshots": s.unreadable_snapshots,
        "problems": found,
    })
}

/// The human view: a table of sources, then checks, WAL and problems.
fn print(s: &Status, found: &[Problem]) {
    let ago = |t: jiff::Timestamp| format!("{} ago", human(s.time.duration_since(t)));
    let rows: Vec<Vec<String>> = s
        .sources
        .iter()
        .map(|src| {
            vec![
                src.host.clone(),
                src.engine.clone(),
                src.name.clone(),
                src.newest_id.short(),
                src.newest_time.strftime("%Y-%m-%d %H:%M UTC").to_string(),
                ago(src.newest_time),
                src.snapshots.to_string(),
            ]
        })
        .collect();
    output::table(&["Host", "Engine", "Name", "Newest", "Time", "Age", "Snapshots"], &rows);
    let run = |c: &Option<CheckRun>| match c {
        Some(c) => format!(
            "{} ({}, on {})",
            c.time.strftime("%Y-%m-%d %H:%M UTC"),
            ago(c.time),
            c.hostname
        ),
        None => "never recorded".to_string(),
    };
    say!("last clean check            {}", run(&s.checks.last_clean));
    say!("last clean read-data check  {}", run(&s.checks.last_clean_read_data));
    match &s.wal {
        Some(w) => say!(
            "WAL                         {} files, newest {} archived {}",
            w.files,
            w.newest_segment.as_deref().unwrap_or("(no segment)"),
            w.newest_time.map_or("never".to_string(), ago)
        ),
        None => say!("WAL                         nothing archived"),
    }
    if found.is_empty() {
        say!("no problems");
    }
    for p in found {
        say!("PROBLEM {} {}: {}", p.kind, p.subject, p.message);
    }
}
