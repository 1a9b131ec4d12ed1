//! `dbbackup restore [SNAPSHOT] --pgdata DIR [--pitr --target-time T | --target-lsn L |
//! --target-name N]`: a physical snapshot into a PostgreSQL data directory, optionally set up
//! to replay the WAL archive up to a recovery target.

use std::path::Path;

use dbbackup::format::snapshot::{PhysicalSource, Source};
use dbbackup::repo::session::Session;
use dbbackup::sources::physical::{prepare_pgdata, restore_pgdata};
use dbbackup::util::human_bytes;
use dbbackup::wal::pitr::{self, shell_quote, RecoveryTarget, TargetAction};
use dbbackup::Error;

use super::{output, Ctx};

/// Arguments of physical and point-in-time restores.
#[derive(clap::Args, Debug)]
pub struct PgArgs {
    /// Set the restored cluster up to replay archived WAL (restore_command, recovery.signal)
    #[arg(long, requires = "pgdata")]
    pitr: bool,
    /// Recover up to this time (RFC 3339, or `YYYY-MM-DD HH:MM:SS` UTC)
    #[arg(long, requires = "pitr", group = "recovery_target")]
    target_time: Option<String>,
    /// Recover up to this WAL position (like 0/3000060)
    #[arg(long, requires = "pitr", group = "recovery_target")]
    target_lsn: Option<String>,
    /// Recover up to this restore point (pg_create_restore_point)
    #[arg(long, requires = "pitr", group = "recovery_target")]
    target_name: Option<String>,
    /// What the server does at the target
    #[arg(long, value_enum, default_value_t = Action::Pause, requires = "pitr")]
    target_action: Action,
}

/// `--target-action` values.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Action {
    /// Stay read-only in recovery until pg_wal_replay_resume() (PostgreSQL's default)
    Pause,
    /// End recovery and accept writes
    Promote,
    /// Stop the server
    Shutdown,
}

/// The `restore_command` for the restored server: this binary, the same repository and the
/// same password source (a file or a command, never the password itself).
fn restore_command(ctx: &Ctx) -> anyhow::Result<(String, Option<&'static str>)> {
    let exe = std::env::current_exe().map_err(|e| Error::io("cannot find the dbbackup executable", e))?;
    let repo = ctx.g.repo.clone().ok_or_else(|| Error::config("no repository given"))?;
    // The server runs restore_command in the data directory: a relative path would not do.
    let repo = if repo.contains("://") {
        repo
    } else {
        std::path::absolute(&repo).map_or(repo, |p| p.to_string_lossy().into_owned())
    };
    let mut cmd = vec![shell_quote(&exe.to_string_lossy()), "--repo".into(), shell_quote(&repo)];
    let mut note = None;
    if let Some(c) = &ctx.g.config {
        cmd.extend(["--config".into(), shell_quote(&c.to_string_lossy())]);
    }
    if let Some(f) = &ctx.g.password_file {
        let abs = std::path::absolute(f).unwrap_or_else(|_| f.clone());
        cmd.extend(["--password-file".into(), shell_quote(&abs.to_string_lossy())]);
    } else if let Some(c) = &ctx.g.password_command {
        cmd.extend(["--password-command".into(), shell_quote(c)]);
    } else {
        note = Some(
            "restore_command names no password source: the server's environment must set DBBACKUP_PASSWORD \
             (or use --password-file when restoring)",
        );
    }
    if let Some(d) = &ctx.g.cache_dir {
        let abs = std::path::absolute(d).unwrap_or_else(|_| d.clone());
        cmd.extend(["--cache-dir".into(), shell_quote(&abs.to_string_lossy())]);
    }
    cmd.extend(["-q".into(), "wal".into(), "fetch".into(), "%f".into(), "%p".into()]);
    Ok((cmd.join(" "), note))
}

/// The recovery target the arguments name (checked before the repository is opened).
pub fn target(a: &PgArgs) -> anyhow::Result<RecoveryTarget> {
    Ok(if let Some(t) = &a.target_time {
        RecoveryTarget::Time(super::snapshot::parse_time(t)?)
    } else if let Some(l) = &a.target_lsn {
        RecoveryTarget::Lsn(l.parse()?)
    } else if let Some(n) = &a.target_name {
        RecoveryTarget::Name(n.clone())
    } else {
        RecoveryTarget::Latest
    })
}

/// Check that physical snapshot `id` can start a recovery to `goal`; the newest timeline
/// the archive holds for it.
fn pitr_base(
    session: &Session<'_>,
    id: &dbbackup::format::Id,
    p: &PhysicalSource,
    goal: &RecoveryTarget,
) -> anyhow::Result<u32> {
    let newest_tli = pitr::check_timeline(session, p)?;
    if let RecoveryTarget::Time(t) = goal {
        if p.finished >= *t {
            return Err(Error::usage(format!(
                "snapshot {} finished at {}, after the target {t}; choose an older one",
                id.short(),
                p.finished
            ))
            .into());
        }
    }
    Ok(newest_tli)
}

/// The snapshot asked for: an id, `latest`, or none (PITR picks the base), among those the
/// filter passes.
pub struct Which<'a> {
    /// As given.
    pub snapshot: Option<&'a str>,
    /// `--name`, `--snapshot-host`, `--tag`.
    pub filter: dbbackup::repo::select::SnapshotFilter,
}

/// Run a physical or point-in-time restore.
pub fn run(
    ctx: &Ctx,
    session: &Session<'_>,
    which: Which<'_>,
    dir: &Path,
    force: bool,
    a: &PgArgs,
    goal: RecoveryTarget,
) -> anyhow::Result<()> {
    let repo = session.repo();
    let (id, m) = match which.snapshot {
        Some(s) => repo.select_snapshot(s, &which.filter)?,
        None => {
            let (id, m, _) = pitr::choose_base(repo, &goal)?;
            (id, m)
        }
    };
    let Source::Physical(p) = &m.source else {
        return Err(Error::usage(format!(
            "snapshot {} is not a physical snapshot; --pgdata restores those (`snapshot --physical`)",
            id.short()
        ))
        .into());
    };
    let newest_tli = if a.pitr {
        pitr_base(session, &id, p, &goal)?
    } else {
        p.timeline
    };
    dbbackup::preflight::ensure_readable(session, &m.entries)?;
    prepare_pgdata(dir, force)?;
    let n = restore_pgdata(session, &m, dir, &ctx.progress())?;
    let mut note = None;
    if a.pitr {
        let (cmd, n) = restore_command(ctx)?;
        note = n;
        let action = match a.target_action {
            Action::Pause => TargetAction::Pause,
            Action::Promote => TargetAction::Promote,
            Action::Shutdown => TargetAction::Shutdown,
        };
        pitr::write_recovery(dir, &cmd, &goal, action)?;
    }
    if let Some(n) = note {
        tracing::warn!("{n}");
    }
    tracing::info!(
        target: super::outcome::RESULT,
        operation = "restore",
        status = "ok",
        snapshot_id = %id,
        source = %m.name,
        bytes = n,
        pitr = a.pitr,
        "physical snapshot restored"
    );
    if ctx.g.json {
        return output::json(&serde_json::json!({
            "operation": "restore",
            "status": "ok",
            "snapshot_id": id,
            "pgdata": dir,
            "bytes": n,
            "start_lsn": p.start_lsn,
            "stop_lsn": p.stop_lsn,
            "timeline": p.timeline,
            "pitr": a.pitr,
            "recovery_timeline": newest_tli,
        }));
    }
    print_restored(&id, p, n, dir, a.pitr.then_some(&goal));
    Ok(())
}

/// The lines saying what was restored and how the server will start.
fn print_restored(id: &dbbackup::format::Id, p: &PhysicalSource, n: u64, dir: &Path, goal: Option<&RecoveryTarget>) {
    say!(
        "restored physical snapshot {} ({}, taken {}) into {}, every chunk verified",
        id.short(),
        human_bytes(n),
        p.finished,
        dir.display()
    );
    if let Some(goal) = goal {
        say!(
            "recovery is set up (restore_command, recovery.signal): start PostgreSQL on {} and it replays the archive {}",
            dir.display(),
            match goal {
                RecoveryTarget::Latest => "to its end".to_string(),
                RecoveryTarget::Time(t) => format!("up to {t}"),
                RecoveryTarget::Lsn(l) => format!("up to LSN {l}"),
                RecoveryTarget::Name(n) => format!("up to restore point `{n}`"),
            }
        );
    } else {
        say!("start PostgreSQL on it: it recovers to the end of the backup from the WAL the snapshot holds");
    }
}
