//! Prometheus metrics: the figures of each command run, kept across runs in a file for
//! node_exporter's textfile collector ([`runs`]); the figures of the repository, read from it
//! ([`repository`]); both rendered with `prometheus-client`; and the HTTP endpoint that serves
//! them with `/health` and `/ready` ([`serve`]). Names follow Prometheus's conventions
//! (`dbbackup_…_seconds`, `_bytes`, `_total`); docs/operations.md lists them.

use std::collections::HashSet;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Metric, Registry};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub mod repository;
pub mod runs;
pub mod serve;

/// The labels of one source: the host that took its snapshots, the engine and the name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet, Serialize, Deserialize)]
pub struct SourceLabels {
    /// Host.
    pub host: String,
    /// Engine (`postgresql`, `mariadb`, ...) or source kind (`stdin`, ...); empty for a
    /// command that has no source.
    pub engine: String,
    /// Source name; empty for a command that has no source.
    pub name: String,
}

/// One metrics page under construction.
pub(crate) struct Page {
    registry: Registry,
}

type GaugeF = Gauge<f64, AtomicU64>;

impl Page {
    pub(crate) fn new() -> Page {
        Page {
            registry: Registry::default(),
        }
    }

    fn add(&mut self, name: &str, help: &str, m: impl Metric) {
        self.registry.register(name, help, m);
    }

    /// One gauge without labels.
    pub(crate) fn gauge(&mut self, name: &str, help: &str, v: f64) {
        let g = GaugeF::default();
        g.set(v);
        self.add(name, help, g);
    }

    /// A gauge per label set; nothing when there are no rows.
    pub(crate) fn gauges<L>(&mut self, name: &str, help: &str, rows: impl IntoIterator<Item = (L, f64)>)
    where
        L: EncodeLabelSet + Clone + Hash + Eq + Debug + Send + Sync + 'static,
    {
        let f = Family::<L, GaugeF>::default();
        let mut any = false;
        for (l, v) in rows {
            f.get_or_create(&l).set(v);
            any = true;
        }
        if any {
            self.add(name, help, f);
        }
    }

    /// A counter per label set (`name` without `_total`, which the encoder adds).
    pub(crate) fn counters<L>(&mut self, name: &str, help: &str, rows: impl IntoIterator<Item = (L, u64)>)
    where
        L: EncodeLabelSet + Clone + Hash + Eq + Debug + Send + Sync + 'static,
    {
        let f = Family::<L, Counter>::default();
        for (l, v) in rows {
            f.get_or_create(&l).inc_by(v);
        }
        self.add(name, help, f);
    }

    /// The page in OpenMetrics text (for a scraper that asks for it; [`text_format`] turns it
    /// into what node_exporter's textfile collector reads).
    pub(crate) fn render(self) -> Result<String> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .map_err(|_| Error::general("cannot encode the metrics page"))?;
        Ok(out)
    }
}

/// An OpenMetrics page (what [`Page::render`] gives, and what Prometheus asks `metrics serve`
/// for) in Prometheus's text format 0.0.4, the only one node_exporter's textfile collector
/// reads: without the `# EOF` and `# UNIT` lines that format does not have, and with a
/// counter's HELP and TYPE under the name its samples carry (`_total`), or the counter would
/// be read as an untyped series without help.
pub fn text_format(openmetrics: &str) -> String {
    let counters: HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| Some((p, line.strip_prefix(p)?)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let renamed = counters.contains(name) && !name.ends_with("_total");
                let suffix = if renamed { "_total" } else { "" };
                let sep = if tail.is_empty() { "" } else { " " };
                out.push_str(&format!("{prefix}{name}{suffix}{sep}{tail}\n"));
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// Seconds since the Unix epoch, as metrics carry time.
pub(crate) fn unix_seconds(t: jiff::Timestamp) -> f64 {
    t.as_millisecond() as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_keep_their_type_in_the_text_format() {
        let mut p = Page::new();
        p.gauge("dbbackup_up", "Up", 1.0);
        p.counters(
            "dbbackup_runs",
            "Runs",
            [(
                SourceLabels {
                    host: "h".into(),
                    engine: "e".into(),
                    name: "n".into(),
                },
                3,
            )],
        );
        let om = p.render().unwrap();
        assert!(
            om.contains("# TYPE dbbackup_runs counter") && om.ends_with("# EOF\n"),
            "{om}"
        );
        let text = text_format(&om);
        assert!(
            text.contains("# HELP dbbackup_runs_total Runs.\n# TYPE dbbackup_runs_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("dbbackup_runs_total{host=\"h\",engine=\"e\",name=\"n\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE dbbackup_up gauge\ndbbackup_up 1.0\n"), "{text}");
        assert!(!text.contains("# EOF"), "{text}");
    }
}
