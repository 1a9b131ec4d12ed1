//! Metrics: `--metrics-file` records every command's run (its result event's figures, caught
//! by a tracing layer, with the exit status and duration) for node_exporter's textfile
//! collector; `dbbackup metrics print [--output FILE]` writes the repository's figures once;
//! `dbbackup metrics serve --listen ADDR` serves them over HTTP with `/health` and `/ready`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dbbackup::metrics::repository::{self, RepoFigures};
use dbbackup::metrics::runs::{Run, RunStatus};
use dbbackup::metrics::serve::{Served, Shared};
use dbbackup::repo::index::IndexCache;
use dbbackup::repo::lock::Operation;
use dbbackup::repo::session::{ReadLock, Session};
use dbbackup::repo::Repository;
use dbbackup::status::Limits;
use dbbackup::util::lock_anyway;
use dbbackup::{Error, ErrorKind};
use tracing::field::{Field, Visit};

use super::outcome::{PARTIAL, PROBLEMS, RESULT};
use super::{Ctx, Global};

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
    let page = repository::render(&read(&repo, &index, &limits)?, &[])?;
    match a.output {
        Some(path) => dbbackup::metrics::runs::write_readable(&path, page.as_bytes())?,
        None => print!("{page}"),
    }
    Ok(())
}

fn serve(ctx: &Ctx, a: ServeArgs) -> anyhow::Result<()> {
    let limits = super::status::limits(ctx, &a.limits);
    let repo = ctx.open()?;
    let index = ctx.index(&repo)?;
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

/// What the result events of this run said: numbers summed by field, words by field.
#[derive(Default)]
struct Captured {
    numbers: BTreeMap<String, u64>,
    words: BTreeMap<String, String>,
}

static CAPTURED: Mutex<Captured> = Mutex::new(Captured {
    numbers: BTreeMap::new(),
    words: BTreeMap::new(),
});

impl Visit for Captured {
    fn record_u64(&mut self, f: &Field, v: u64) {
        *self.numbers.entry(f.name().to_string()).or_default() += v;
    }
    fn record_i64(&mut self, f: &Field, v: i64) {
        if let Ok(v) = u64::try_from(v) {
            self.record_u64(f, v);
        }
    }
    fn record_str(&mut self, f: &Field, v: &str) {
        self.words.insert(f.name().to_string(), v.to_string());
    }
    fn record_debug(&mut self, f: &Field, v: &dyn std::fmt::Debug) {
        self.words.insert(f.name().to_string(), format!("{v:?}"));
    }
}

/// A tracing layer that keeps the fields of result events for the metrics file.
pub struct Capture;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() == RESULT {
            event.record(&mut *lock_anyway(&CAPTURED));
        }
    }
}

/// The source this run is about, known before it has a result (which says the same).
pub fn note_source(host: Option<&str>, name: &str) {
    let mut c = lock_anyway(&CAPTURED);
    if let Some(h) = host {
        c.words.insert("host".into(), h.to_string());
    }
    c.words.insert("source".into(), name.to_string());
}

/// Add this run to `--metrics-file`, when one is set; a failure to is a warning, never the
/// command's failure.
pub fn record_run(g: &Global, operation: &str, started: Instant, exit_code: u8) {
    let Some(path) = &g.metrics_file else { return };
    if operation == "metrics" {
        return;
    }
    let c = std::mem::take(&mut *lock_anyway(&CAPTURED));
    let word = |k: &str| c.words.get(k).cloned().unwrap_or_default();
    let status = match exit_code {
        0 => RunStatus::Ok,
        PARTIAL => RunStatus::Partial,
        PROBLEMS => RunStatus::Problems,
        _ => RunStatus::Failed,
    };
    let run = Run {
        operation: operation.to_string(),
        host: c.words.get("host").cloned().unwrap_or_else(dbbackup::util::hostname),
        name: word("source"),
        status,
        exit_code,
        finished: jiff::Timestamp::now(),
        duration: started.elapsed(),
        figures: c.numbers,
    };
    if let Err(e) = dbbackup::metrics::runs::record(path, &run) {
        tracing::warn!(error = %dbbackup::error::one_line(&e), "metrics file not written");
    }
}
