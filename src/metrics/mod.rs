//! Prometheus metrics: the figures of each command run, kept across runs in a file for
//! node_exporter's textfile collector ([`runs`]); the figures of the repository, read from it
//! ([`repository`]); both rendered with `prometheus-client`; and the HTTP endpoint that serves
//! them with `/health` and `/ready` ([`serve`]). Names follow Prometheus's conventions
//! (`dbbackup_…_seconds`, `_bytes`, `_total`); docs/operations.md lists them.

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

    /// The page in the text exposition format (OpenMetrics, which Prometheus and
    /// node_exporter's textfile collector read).
    pub(crate) fn render(self) -> Result<String> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .map_err(|_| Error::general("cannot encode the metrics page"))?;
        Ok(out)
    }
}

/// Seconds since the Unix epoch, as metrics carry time.
pub(crate) fn unix_seconds(t: jiff::Timestamp) -> f64 {
    t.as_millisecond() as f64 / 1000.0
}
