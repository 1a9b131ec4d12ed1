//! The figures of each command run, kept across runs for node_exporter's textfile collector:
//! `record` merges one run into a state file beside the metrics file (`<file>.json`, under an
//! exclusive lock, so concurrent jobs add up) and rewrites the metrics file atomically. Per
//! operation and source: the last run's time, duration, exit code and figures, the last
//! success; per operation: runs by status and failures, as counters.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use prometheus_client::encoding::EncodeLabelSet;
use serde::{Deserialize, Serialize};

use super::{unix_seconds, Page};
use crate::error::{Error, Result};

/// How a run ended (exit status 0, 3, 4, anything else).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Done.
    Ok,
    /// Partly done (some databases failed).
    Partial,
    /// Done, and found problems (check, status).
    Problems,
    /// Failed.
    Failed,
}

impl RunStatus {
    /// The word in labels and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Ok => "ok",
            RunStatus::Partial => "partial",
            RunStatus::Problems => "problems",
            RunStatus::Failed => "failed",
        }
    }
}

/// One command run.
#[derive(Clone, Debug)]
pub struct Run {
    /// The command (`snapshot`, `prune`, `wal-push`, ...).
    pub operation: String,
    /// The host it ran on, or the one its snapshot is filed under.
    pub host: String,
    /// Its source's name; empty for a command without one. (Not its engine: a run that
    /// fails before it reaches the server does not know it, and must count for the same
    /// source as the successful ones.)
    pub name: String,
    /// How it ended.
    pub status: RunStatus,
    /// Its exit status.
    pub exit_code: u8,
    /// When it ended.
    pub finished: Timestamp,
    /// How long it took.
    pub duration: Duration,
    /// Its result's figures, by the field names of the result (`bytes_read`, `bytes_new`,
    /// `bytes_stored`, `bytes_freed`, `bytes`, `problems`).
    pub figures: BTreeMap<String, u64>,
}

/// The result fields that become metrics: (field, metric, help).
const FIGURES: &[(&str, &str, &str)] = &[
    (
        "bytes_read",
        "dbbackup_last_read_bytes",
        "Bytes the last run read from its source",
    ),
    (
        "bytes_new",
        "dbbackup_last_new_bytes",
        "Bytes of the last run the repository did not hold yet",
    ),
    (
        "bytes_stored",
        "dbbackup_last_stored_bytes",
        "Bytes the last run added to storage (compressed, encrypted)",
    ),
    (
        "bytes_freed",
        "dbbackup_last_freed_bytes",
        "Bytes the last prune deleted from storage",
    ),
    ("bytes", "dbbackup_last_restored_bytes", "Bytes the last restore wrote"),
    (
        "problems",
        "dbbackup_last_problems",
        "Problems the last check or status found",
    ),
];

/// The state kept beside the metrics file.
#[derive(Serialize, Deserialize, Default, Debug)]
struct History {
    series: Vec<Series>,
    counts: Vec<Count>,
}

/// Operation and source.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet, Serialize, Deserialize)]
struct RunLabels {
    operation: String,
    host: String,
    name: String,
}

#[derive(Serialize, Deserialize, Debug)]
struct Series {
    labels: RunLabels,
    last_run: Timestamp,
    last_status: RunStatus,
    last_exit_code: u8,
    last_duration_seconds: f64,
    last_success: Option<Timestamp>,
    last_success_duration_seconds: Option<f64>,
    figures: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpStatus {
    operation: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Op {
    operation: String,
}

#[derive(Serialize, Deserialize, Debug)]
struct Count {
    operation: String,
    status: RunStatus,
    runs: u64,
}

impl History {
    fn add(&mut self, run: &Run) {
        let labels = RunLabels {
            operation: run.operation.clone(),
            host: run.host.clone(),
            name: run.name.clone(),
        };
        let i = match self.series.iter().position(|s| s.labels == labels) {
            Some(i) => i,
            None => {
                self.series.push(Series {
                    labels,
                    last_run: run.finished,
                    last_status: run.status,
                    last_exit_code: run.exit_code,
                    last_duration_seconds: 0.0,
                    last_success: None,
                    last_success_duration_seconds: None,
                    figures: BTreeMap::new(),
                });
                self.series.len() - 1
            }
        };
        let Some(s) = self.series.get_mut(i) else { return };
        s.last_run = run.finished;
        s.last_status = run.status;
        s.last_exit_code = run.exit_code;
        s.last_duration_seconds = run.duration.as_secs_f64();
        if run.status == RunStatus::Ok {
            s.last_success = Some(run.finished);
            s.last_success_duration_seconds = Some(run.duration.as_secs_f64());
        }
        let figures: BTreeMap<String, u64> = run
            .figures
            .iter()
            .filter(|(k, _)| FIGURES.iter().any(|(f, _, _)| f == k))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        if !figures.is_empty() {
            s.figures = figures;
        }
        match self
            .counts
            .iter_mut()
            .find(|c| c.operation == run.operation && c.status == run.status)
        {
            Some(c) => c.runs += 1,
            None => self.counts.push(Count {
                operation: run.operation.clone(),
                status: run.status,
                runs: 1,
            }),
        }
        self.series.sort_by(|a, b| a.labels.cmp(&b.labels));
        self.counts
            .sort_by(|a, b| (&a.operation, a.status).cmp(&(&b.operation, b.status)));
    }

    fn render(&self) -> Result<String> {
        let mut p = Page::new();
        let each = |f: &dyn Fn(&Series) -> Option<f64>| {
            self.series
                .iter()
                .filter_map(|s| Some((s.labels.clone(), f(s)?)))
                .collect::<Vec<_>>()
        };
        p.gauges(
            "dbbackup_last_run_timestamp_seconds",
            "When the last run of this operation and source ended",
            each(&|s| Some(unix_seconds(s.last_run))),
        );
        p.gauges(
            "dbbackup_last_run_duration_seconds",
            "How long the last run took",
            each(&|s| Some(s.last_duration_seconds)),
        );
        p.gauges(
            "dbbackup_last_run_exit_code",
            "Exit status of the last run (0 ok, 3 partly done, 4 problems found)",
            each(&|s| Some(f64::from(s.last_exit_code))),
        );
        p.gauges(
            "dbbackup_last_run_success",
            "1 when the last run succeeded, else 0",
            each(&|s| Some(f64::from(u8::from(s.last_status == RunStatus::Ok)))),
        );
        p.gauges(
            "dbbackup_last_success_timestamp_seconds",
            "When the last successful run ended",
            each(&|s| s.last_success.map(unix_seconds)),
        );
        p.gauges(
            "dbbackup_last_success_duration_seconds",
            "How long the last successful run took",
            each(&|s| s.last_success_duration_seconds),
        );
        for (field, metric, help) in FIGURES {
            p.gauges(metric, help, each(&|s| s.figures.get(*field).map(|v| *v as f64)));
        }
        p.counters(
            "dbbackup_runs",
            "Runs recorded in this metrics file, by operation and how they ended",
            self.counts.iter().map(|c| {
                let l = OpStatus {
                    operation: c.operation.clone(),
                    status: c.status.as_str().to_string(),
                };
                (l, c.runs)
            }),
        );
        let mut failures: BTreeMap<&str, u64> = BTreeMap::new();
        for c in &self.counts {
            let n = failures.entry(c.operation.as_str()).or_default();
            if c.status == RunStatus::Failed {
                *n += c.runs;
            }
        }
        p.counters(
            "dbbackup_failures",
            "Failed runs recorded in this metrics file, by operation",
            failures.into_iter().map(|(op, n)| {
                (
                    Op {
                        operation: op.to_string(),
                    },
                    n,
                )
            }),
        );
        p.render()
    }
}

/// The state file kept beside the metrics file `path`.
pub fn state_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".json");
    PathBuf::from(s)
}

/// Add `run` to the metrics file at `path` (Prometheus text, mode 0644 so that node_exporter
/// may read it: names and figures, no secret) and to its state file (0600). A state file that
/// cannot be parsed is started afresh (counters then restart, which Prometheus's `rate`
/// and `increase` expect); the run is never lost to it.
pub fn record(path: &Path, run: &Run) -> Result<()> {
    let state = state_path(path);
    let io = |what: &str, e| Error::io(format!("cannot {what} {}", state.display()), e);
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&state)
        .map_err(|e| io("open", e))?;
    f.lock().map_err(|e| io("lock", e))?;
    let mut text = String::new();
    f.read_to_string(&mut text).map_err(|e| io("read", e))?;
    let mut h = if text.trim().is_empty() {
        History::default()
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| {
            tracing::warn!(file = %state.display(), error = %e, "metrics state unreadable: starting it afresh");
            History::default()
        })
    };
    h.add(run);
    let page = h.render()?;
    let json = serde_json::to_vec(&h).map_err(|e| Error::general(format!("cannot encode metrics state: {e}")))?;
    f.set_len(0).map_err(|e| io("write", e))?;
    f.rewind().map_err(|e| io("write", e))?;
    f.write_all(&json)
        .and_then(|()| f.sync_all())
        .map_err(|e| io("write", e))?;
    write_readable(path, super::text_format(&page).as_bytes())
}

/// Replace `path` with `bytes` through a temp file in its directory, mode 0644.
pub fn write_readable(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |e| Error::io(format!("cannot write {}", path.display()), e);
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".dbbackup-metrics")
        .tempfile_in(dir)
        .map_err(io)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(io)?;
    tmp.write_all(bytes).map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(op: &str, name: &str, status: RunStatus, figures: &[(&str, u64)]) -> Run {
        Run {
            operation: op.into(),
            host: "h".into(),
            name: name.into(),
            status,
            exit_code: if status == RunStatus::Ok { 0 } else { 69 },
            finished: Timestamp::from_second(1_700_000_000).unwrap_or_default(),
            duration: Duration::from_millis(1500),
            figures: figures.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }

    #[test]
    fn runs_add_up_across_records_and_a_failure_keeps_the_last_success() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dbbackup.prom");
        record(&path, &run("snapshot", "shop", RunStatus::Ok, &[("bytes_read", 1000)])).unwrap();
        record(&path, &run("snapshot", "shop", RunStatus::Failed, &[])).unwrap();
        record(&path, &run("prune", "", RunStatus::Ok, &[("bytes_freed", 7)])).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let shop = r#"{operation="snapshot",host="h",name="shop"}"#;
        for line in [
            format!("dbbackup_last_success_timestamp_seconds{shop} 1700000000.0"),
            format!("dbbackup_last_run_exit_code{shop} 69.0"),
            format!("dbbackup_last_run_success{shop} 0.0"),
            format!("dbbackup_last_read_bytes{shop} 1000.0"),
            r#"dbbackup_last_freed_bytes{operation="prune",host="h",name=""} 7.0"#.to_string(),
            r#"dbbackup_runs_total{operation="snapshot",status="failed"} 1"#.to_string(),
            r#"dbbackup_runs_total{operation="snapshot",status="ok"} 1"#.to_string(),
            r#"dbbackup_failures_total{operation="snapshot"} 1"#.to_string(),
            r#"dbbackup_failures_total{operation="prune"} 0"#.to_string(),
        ] {
            assert!(text.lines().any(|l| l == line), "no line {line} in\n{text}");
        }
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        let mode = std::fs::metadata(state_path(&path)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn concurrent_records_all_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.prom");
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..25 {
                        record(&path, &run("check", "", RunStatus::Ok, &[])).unwrap();
                    }
                });
            }
        });
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains(r#"dbbackup_runs_total{operation="check",status="ok"} 200"#),
            "{text}"
        );
    }

    #[test]
    fn a_damaged_state_file_starts_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.prom");
        std::fs::write(state_path(&path), b"{ not json").unwrap();
        record(&path, &run("check", "", RunStatus::Ok, &[("problems", 0)])).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains(r#"dbbackup_runs_total{operation="check",status="ok"} 1"#),
            "{text}"
        );
    }
}
