//! Output helpers: the progress bar, tables, and JSON.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

use dbbackup::progress::{Progress, Work};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress bar drawn on stderr when it is a terminal.
pub struct Bar {
    bar: Option<ProgressBar>,
}

impl Bar {
    /// A bar, or a silent stand-in when `enabled` is false or stderr is not a terminal.
    pub fn new(enabled: bool) -> Bar {
        let on = enabled && std::io::stderr().is_terminal();
        Bar {
            bar: on.then(|| ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())),
        }
    }
}

/// The bar's look for a phase's work: a bar, a total and an ETA only for an exact byte total;
/// counts as counts; bytes without a total as bytes and rate.
pub fn template(work: Work) -> &'static str {
    match work {
        Work::Bytes(Some(_)) => {
            "{prefix} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
        }
        Work::Bytes(None) => "{prefix} [{elapsed_precise}] {bytes} {bytes_per_sec}",
        Work::Count(_) => "{prefix} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len}",
    }
}

impl Progress for Bar {
    fn start(&self, phase: &str, work: Work) {
        if let Some(b) = &self.bar {
            if let Ok(st) = ProgressStyle::with_template(template(work)) {
                b.set_style(st);
            }
            let total = match work {
                Work::Bytes(t) => t.unwrap_or(0),
                Work::Count(n) => n,
            };
            b.set_length(total);
            b.set_position(0);
            b.set_prefix(phase.to_string());
        }
    }
    fn advance(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }
    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// `-q`: result lines are not printed (JSON asked for with `--json` still is).
static QUIET: AtomicBool = AtomicBool::new(false);

/// Silence result lines (`-q`).
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// Whether result lines are silenced.
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// A `--json` result that goes out with the error when the command fails (`check` that
/// found damage): one JSON object on stdout either way.
static ON_FAILURE: std::sync::Mutex<Option<serde_json::Value>> = std::sync::Mutex::new(None);

/// Keep `v` (a JSON object) to be printed with the error the command is about to return.
pub fn with_failure<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    *dbbackup::util::lock_anyway(&ON_FAILURE) = Some(serde_json::to_value(v)?);
    Ok(())
}

/// Print `v` as the `--json` result, unless `then` is an error: then `v` goes out with it.
pub fn json_unless<T: serde::Serialize>(v: &T, then: anyhow::Result<()>) -> anyhow::Result<()> {
    match then {
        Ok(()) => json(v),
        Err(e) => {
            with_failure(v)?;
            Err(e)
        }
    }
}

/// What [`with_failure`] kept.
pub fn take_failure_result() -> Option<serde_json::Value> {
    dbbackup::util::lock_anyway(&ON_FAILURE).take()
}

/// Print a value as pretty JSON on stdout.
pub fn json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Print rows as an aligned table with a header.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < w.len() {
                w[i] = w[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect();
        say!("{}", s.join("  ").trim_end());
    };
    line(header.to_vec());
    line(
        w.iter()
            .map(|n| "-".repeat(*n))
            .collect::<Vec<_>>()
            .iter()
            .map(|s| s.as_str())
            .collect(),
    );
    for r in rows {
        line(r.iter().map(|s| s.as_str()).collect());
    }
}

/// After a listing or figures made of every snapshot that can be read: log why each of the
/// others could not be, then exit 65 (or the errors' kind) naming them.
pub fn unreadable_manifests(unreadable: &[(dbbackup::format::Id, dbbackup::Error)]) -> anyhow::Result<()> {
    for (id, e) in unreadable {
        tracing::error!(snapshot = %id, error = %e, "cannot read this snapshot's manifest");
    }
    match unreadable {
        [] => Ok(()),
        [(_, e), ..] => {
            let ids: Vec<String> = unreadable.iter().map(|(id, _)| id.short()).collect();
            Err(dbbackup::Error::new(
                e.kind(),
                format!(
                    "the manifest of {} snapshot(s) could not be read ({}); they are left out: run `dbbackup check`",
                    ids.len(),
                    ids.join(", ")
                ),
            )
            .into())
        }
    }
}

#[cfg(test)]
mod tests {
    use dbbackup::progress::Work;

    use super::template;

    /// Counts are never drawn as bytes, and only an exact byte total gets a bar and an ETA.
    #[test]
    fn bars_say_only_what_is_known() {
        let exact = template(Work::Bytes(Some(10)));
        assert!(exact.contains("{total_bytes}") && exact.contains("{eta}"));
        let open = template(Work::Bytes(None));
        assert!(open.contains("{bytes}") && open.contains("{bytes_per_sec}"));
        for t in ["{total_bytes}", "{eta}", "{wide_bar}", "{len}"] {
            assert!(!open.contains(t), "{t} without a total");
        }
        let count = template(Work::Count(4));
        assert!(count.contains("{human_pos}/{human_len}"));
        for t in ["bytes", "{eta}"] {
            assert!(!count.contains(t), "{t} in a count");
        }
        for w in [Work::Bytes(Some(1)), Work::Bytes(None), Work::Count(1)] {
            assert!(indicatif::ProgressStyle::with_template(template(w)).is_ok());
        }
    }
}
