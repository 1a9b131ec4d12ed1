//! `dbbackup metrics print [--output FILE]` writes the repository's figures once in
//! Prometheus's text format; `dbbackup metrics serve --listen ADDR` serves them over HTTP with
//! `/health` and `/ready`. (`--metrics-file`, the figures of each run, is in `after.rs`.)

use std::path::PathBuf;
use std::time::{Duration, Instant};

use dbbackup::metrics::repository::{self, RepoFigures};
use dbbackup::metrics::serve::{Served, Shared};
use dbbackup::repo::index::IndexCache;
use dbbackup::repo::lock::Operation;
use dbbackup::repo::session::{ReadLock, Session};
use dbbackup::repo::Repository;
use dbbackup::status::Limits;
use dbbackup::util::lock_anyway;
use dbbackup::{Error, ErrorKind};

use super::Ctx;

/// `dbbackup metrics`.
#[derive(clap::Subcommand, Debug)]
pub enum MetricsCmd {
    /// Write the repository's figures once, in Prometheus's text format
    Print(PrintArgs),
    /// Serve the repository's figures on /metrics, with /health and /ready, refreshed on an
    /// interval
    Serve(ServeArgs),
}

/// Arguments of `metrics print`.
#[derive(clap::Args, Debug)]
pub struct PrintArgs {
    /// Write to this file atomically (mode 0644, for node_exporter's textfile collector)
    /// instead of standard output
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
    #[command(flatten)]
    limits: super::status::Args,
}

/// Arguments of `metrics serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1:9187", value_name = "ADDR")]
    listen: std::net::SocketAddr,
    /// Read the repository's figures this often (sources, sizes, checks, WAL)
    #[arg(long, default_value = "5m", value_parser = super::parse_duration, value_name = "DURATION")]
    interval: Duration,
    /// Probe the repository (one read of its config) this often, for /health
    #[arg(long, default_value = "30s", value_parser = super::parse_duration, value_name = "DURATION")]
    probe_interval: Duration,
    #[command(flatten)]
    limits: super::status::Args,
}

/// Run `metrics print` or `metrics serve`.
pub fn run(ctx: &Ctx, c: MetricsCmd) -> anyhow::Result<()> {
    match c {
        MetricsCmd::Print(a) => print(ctx, a),
        MetricsCmd::Serve(a) => serve(ctx, a),
    }
}

fn read(repo: &Repository, index: &IndexCache, limits: &Limits) -> dbbackup::Result<RepoFigures> {
    let session = Session::begin_reading(repo, index, Operation::Check, ReadLock::Skip)?;
    repository::read(&session, limits)
}

fn print(ctx: &Ctx, a: PrintArgs) -> anyhow::Result<()> {
    let limits = super::status::limits(ctx, &a.limits);
    let repo = ctx.open()?;
    let index = ctx.index(&repo)?;
    // Prometheus's text format: for node_exporter's textfile collector, or a person.
    let page = dbbackup::metrics::text_format(&repository::render(&read(&repo, &index, &limits)?, &[])?);
    match a.output {
        Some(path) => dbbackup::metrics::runs::write_readable(&path, page.as_bytes())?,
        None => print!("{page}"),
    }
    Ok(())
}

fn serve(ctx: &Ctx, a: ServeArgs) -> anyhow::Result<()> {
    let limits = super::status::limits(ctx, &a.limits);
    let listener = std::net::TcpListener::bind(a.listen)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| Error::new(ErrorKind::Unavailable, format!("cannot listen on {}: {e}", a.listen)))?;
    let shared = Shared::default();
    let listener = {
        let _entered = ctx.rt.enter();
        tokio::net::TcpListener::from_std(listener)
            .map_err(|e| Error::new(ErrorKind::Unavailable, format!("cannot listen on {}: {e}", a.listen)))?
    };
    ctx.rt.spawn(dbbackup::metrics::serve::serve(listener, shared.clone()));
    say!("serving metrics on http://{}/metrics (also /health, /ready)", a.listen);
    let (repo, index) = open_when_there(ctx, &shared, a.probe_interval)?;
    let mut last: Option<(RepoFigures, f64)> = None;
    let mut next_read = Instant::now();
    loop {
        let probe = Repository::read_config(repo.store()).map(|_| ());
        if Instant::now() >= next_read || probe.is_err() {
            let began = Instant::now();
            let got = probe.and_then(|()| read(&repo, &index, &limits));
            let ok = got.is_ok();
            publish(&shared, got, began.elapsed(), &mut last);
            if ok {
                next_read = Instant::now() + a.interval;
            }
        } else {
            lock_anyway(&shared).health = Some(Ok(()));
        }
        std::thread::sleep(a.probe_interval.min(a.interval));
    }
}

/// Open the repository, waiting while its storage cannot be reached or it is not there yet (a
/// host booting before its network or the bucket's first `init`): meanwhile `/health` answers
/// 503 with the reason. A wrong password or a bad setting ends the command, as they will not
/// mend by themselves.
fn open_when_there(ctx: &Ctx, shared: &Shared, every: Duration) -> anyhow::Result<(Repository, IndexCache)> {
    let mut said = false;
    loop {
        let opened = ctx.open().and_then(|r| Ok((ctx.index(&r)?, r)));
        match opened {
            Ok((index, repo)) => return Ok((repo, index)),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::Unavailable | ErrorKind::NotFound | ErrorKind::Temporary
                ) =>
            {
                if !said {
                    tracing::warn!(error = %e, "cannot open the repository yet: /health answers 503 until it can");
                    said = true;
                }
                lock_anyway(shared).health = Some(Err(dbbackup::error::one_line(&e)));
                std::thread::sleep(every);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Put a reading (or why there is none) where the server finds it. A failed reading keeps the
/// last figures, with `dbbackup_up 0`.
fn publish(shared: &Shared, got: dbbackup::Result<RepoFigures>, took: Duration, last: &mut Option<(RepoFigures, f64)>) {
    let up = got.is_ok();
    let mut s: std::sync::MutexGuard<'_, Served> = lock_anyway(shared);
    match got {
        Ok(f) => {
            let now = jiff::Timestamp::now().as_millisecond() as f64 / 1000.0;
            s.problems = Some(
                f.problems
                    .iter()
                    .map(|p| format!("{} {}: {}", p.kind, p.subject, p.message))
                    .collect(),
            );
            s.health = Some(Ok(()));
            *last = Some((f, now));
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the repository's figures");
            s.health = Some(Err(dbbackup::error::one_line(&e)));
        }
    }
    let Some((f, at)) = last.as_ref() else { return };
    let extra = [
        (
            "dbbackup_up",
            "1 when the last reading of the repository succeeded",
            f64::from(u8::from(up)),
        ),
        (
            "dbbackup_metrics_read_timestamp_seconds",
            "When the figures were read",
            *at,
        ),
        (
            "dbbackup_metrics_read_duration_seconds",
            "How long the last reading took",
            took.as_secs_f64(),
        ),
    ];
    match repository::render(f, &extra) {
        Ok(page) => s.metrics = Some(page),
        Err(e) => tracing::warn!(error = %e, "cannot render the metrics page"),
    }
}
