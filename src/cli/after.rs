//! Around a command: the `before` hook; then, once it ended, the metrics file, the `after`,
//! `on_success` and `on_failure` hooks and the notifications. What they tell of the run comes
//! from its result event, caught by a tracing layer, with the exit status and duration.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dbbackup::hooks::When;
use dbbackup::metrics::runs::{Run, RunStatus};
use dbbackup::notify::Event;
use dbbackup::util::lock_anyway;
use tracing::field::{Field, Visit};

use super::config::{FileSettings, HookConfig};
use super::outcome::{PARTIAL, PROBLEMS, RESULT};
use super::Global;

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

/// A tracing layer that keeps the fields of result events.
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

/// A `before` hook failed: the command did not run.
#[derive(Debug)]
pub struct BeforeHookFailed(pub String);

impl std::fmt::Display for BeforeHookFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}; nothing was done", self.0)
    }
}

impl std::error::Error for BeforeHookFailed {}

/// The exit status of a run whose `before` hook failed.
pub const BEFORE_HOOK: u8 = 5;

const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(600);

fn timeout(h: &HookConfig) -> Duration {
    h.timeout
        .and_then(|t| Duration::try_from(t).ok())
        .unwrap_or(DEFAULT_HOOK_TIMEOUT)
}

/// Run the `before` hook of `operation`, if the config file has one.
pub fn before(file: &FileSettings, operation: &str) -> anyhow::Result<()> {
    let Some(h) = file.hooks.get(operation) else {
        return Ok(());
    };
    let Some(cmd) = &h.before else { return Ok(()) };
    let env = [("DBBACKUP_HOST".to_string(), dbbackup::util::hostname())];
    dbbackup::hooks::run(When::Before, operation, cmd, &env, timeout(h))
        .map_err(|e| BeforeHookFailed(dbbackup::error::one_line(&e)).into())
}

/// How a run ended.
pub struct Ended<'a> {
    /// The command's name.
    pub operation: &'a str,
    /// When it started.
    pub started: Instant,
    /// Its exit status.
    pub code: u8,
    /// Why it failed or was partly done.
    pub message: Option<String>,
}

fn status_of(code: u8) -> RunStatus {
    match code {
        0 => RunStatus::Ok,
        PARTIAL => RunStatus::Partial,
        PROBLEMS => RunStatus::Problems,
        _ => RunStatus::Failed,
    }
}

/// The run as notifications and hooks tell it.
fn event(end: &Ended<'_>) -> Event {
    let c = std::mem::take(&mut *lock_anyway(&CAPTURED));
    Event {
        operation: end.operation.to_string(),
        status: status_of(end.code).as_str().to_string(),
        exit_code: end.code,
        host: c.words.get("host").cloned().unwrap_or_else(dbbackup::util::hostname),
        source: c.words.get("source").cloned().unwrap_or_default(),
        snapshot_id: c.words.get("snapshot_id").cloned(),
        message: end.message.clone(),
        duration_seconds: end.started.elapsed().as_secs_f64(),
        time: jiff::Timestamp::now(),
        figures: c.numbers,
    }
}

/// Everything after the command: the metrics file, hooks, notifications. Their failures are
/// warnings: the exit status stays the command's.
pub fn finish(g: &Global, file: Option<&FileSettings>, rt: Option<&tokio::runtime::Runtime>, end: &Ended<'_>) {
    let ev = event(end);
    record_run(g, &ev);
    let Some(file) = file else { return };
    run_after_hooks(file, &ev);
    if let Some(rt) = rt {
        super::notify::send_all(rt, &file.notify, &ev);
    }
}

/// An interrupted run (SIGTERM from a systemd timeout, SIGINT), recorded in the metrics file as
/// the failure it is, from the signal's cleanup once the command's own cleanup is done. Hooks
/// and notifications are not run while the process is being stopped. A closed standard output
/// (`ls | head`) is no failure and is not recorded.
pub fn interrupted(g: &Global, operation: &str, started: std::time::Instant) {
    let code = super::signals::SIGNAL_STATUS.load(std::sync::atomic::Ordering::SeqCst);
    if code == 0 {
        return;
    }
    let name = if code == 130 { "SIGINT" } else { "SIGTERM" };
    let end = Ended {
        operation,
        started,
        code,
        message: Some(format!("interrupted by {name}")),
    };
    record_run(g, &event(&end));
}

/// Add this run to `--metrics-file`, when one is set (not for `metrics serve`, which never
/// ends on its own, nor `metrics print`).
fn record_run(g: &Global, ev: &Event) {
    let Some(path) = &g.metrics_file else { return };
    if ev.operation == "metrics" {
        return;
    }
    let run = Run {
        operation: ev.operation.clone(),
        host: ev.host.clone(),
        name: ev.source.clone(),
        status: status_of(ev.exit_code),
        exit_code: ev.exit_code,
        finished: ev.time,
        duration: Duration::from_secs_f64(ev.duration_seconds),
        figures: ev.figures.clone(),
    };
    if let Err(e) = dbbackup::metrics::runs::record(path, &run) {
        tracing::warn!("metrics file not written: {}", dbbackup::error::one_line(&e));
    }
}

/// The hooks' environment: the run's facts and figures as `DBBACKUP_*` variables.
fn hook_env(ev: &Event) -> Vec<(String, String)> {
    let mut env = vec![
        ("DBBACKUP_STATUS".to_string(), ev.status.clone()),
        ("DBBACKUP_EXIT_CODE".to_string(), ev.exit_code.to_string()),
        ("DBBACKUP_HOST".to_string(), ev.host.clone()),
        ("DBBACKUP_SOURCE".to_string(), ev.source.clone()),
        (
            "DBBACKUP_SNAPSHOT_ID".to_string(),
            ev.snapshot_id.clone().unwrap_or_default(),
        ),
        (
            "DBBACKUP_DURATION_SECONDS".to_string(),
            format!("{:.3}", ev.duration_seconds),
        ),
        ("DBBACKUP_ERROR".to_string(), ev.message.clone().unwrap_or_default()),
    ];
    for (k, v) in &ev.figures {
        if k.starts_with("bytes") || k == "problems" {
            env.push((format!("DBBACKUP_{}", k.to_uppercase()), v.to_string()));
        }
    }
    env
}

fn run_after_hooks(file: &FileSettings, ev: &Event) {
    let Some(h) = file.hooks.get(&ev.operation) else { return };
    let env = hook_env(ev);
    let then = if ev.status == "ok" {
        (When::OnSuccess, &h.on_success)
    } else {
        (When::OnFailure, &h.on_failure)
    };
    for (when, cmd) in [(When::After, &h.after), then] {
        let Some(cmd) = cmd else { continue };
        if let Err(e) = dbbackup::hooks::run(when, &ev.operation, cmd, &env, timeout(h)) {
            tracing::warn!("{}", dbbackup::error::one_line(&e));
        }
    }
}
