//! The catalog replica's Raft state as Prometheus series, read from
//! [`CatalogNode::metrics`] at every scrape (nothing to keep up to date):
//!
//! | series | type | labels |
//! |---|---|---|
//! | `strata_catalog_term` | gauge | |
//! | `strata_catalog_leader_id` | gauge (0: no leader known) | |
//! | `strata_catalog_is_leader` | gauge (0/1) | |
//! | `strata_catalog_last_log_index` | gauge | |
//! | `strata_catalog_committed_index` | gauge | |
//! | `strata_catalog_applied_index` | gauge | |
//! | `strata_catalog_snapshot_index` | gauge | |
//! | `strata_catalog_purged_index` | gauge | |
//! | `strata_catalog_stopped` | gauge (1: stopped, e.g. by a storage error) | |
//! | `strata_catalog_replication_lag_entries` | gauge, on the leader | `follower` |
//! | `strata_catalog_snapshots_built_total` | counter (since the replica started) | |
//! | `strata_catalog_snapshots_installed_total` | counter (received from a leader) | |
//! | `strata_catalog_role` | gauge, 1 for the replica's role | `role`: `leader`, `candidate`, `follower`, `learner`, `joining`, `stopped` |
//! | `strata_catalog_apply_duration_seconds` | histogram: applying one entry to the catalog | |
//! | `strata_catalog_propose_duration_seconds` | histogram: a proposal through the client API, from receipt to its applied answer (forwarding included) | |
//! | `strata_catalog_snapshot_build_duration_seconds` | histogram: building one snapshot (copy of the state, encoding, storing) | |
//!
//! Apply latency as the engine sees it is
//! `strata_tiering_catalog_propose_duration_seconds`.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::node::{CatalogMetrics, CatalogNode};

/// Scrapes one replica.
pub struct CatalogCollector {
    node: Arc<CatalogNode>,
}

impl fmt::Debug for CatalogCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CatalogCollector").finish_non_exhaustive()
    }
}

impl CatalogCollector {
    /// Registers the series of `node` under a `catalog` sub-registry of
    /// `registry` (which carries the process's `strata` prefix).
    pub fn register(node: Arc<CatalogNode>, registry: &mut Registry) {
        let sub = registry.sub_registry_with_prefix("catalog");
        let timings = node.timings().clone();
        sub.register(
            "apply_duration_seconds",
            "Time to apply one entry to the catalog.",
            timings.apply,
        );
        sub.register(
            "propose_duration_seconds",
            "A proposal through the client API, from receipt to its applied answer \
             (forwarding to the leader included).",
            timings.propose,
        );
        sub.register(
            "snapshot_build_duration_seconds",
            "Building one snapshot: copying the applied state, encoding it and storing it.",
            timings.snapshot_build,
        );
        sub.register_collector(Box::new(CatalogCollector { node }));
    }
}

/// The replica's latency histograms, shared by the state machine (apply),
/// the client API (propose) and the collector.
#[derive(Clone, Debug)]
pub(crate) struct ReplicaTimings {
    pub(crate) apply: Histogram,
    pub(crate) propose: Histogram,
    pub(crate) snapshot_build: Histogram,
}

impl Default for ReplicaTimings {
    fn default() -> Self {
        Self {
            // 1 µs to about 0.5 s.
            apply: Histogram::new(exponential_buckets(0.000_001, 2.0, 20)),
            // 50 µs to about 26 s.
            propose: Histogram::new(exponential_buckets(0.000_05, 2.0, 20)),
            // 1 ms to about 65 s.
            snapshot_build: Histogram::new(exponential_buckets(0.001, 2.0, 17)),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Role {
    role: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Follower {
    follower: String,
}

/// The plain gauges of a replica: (name, help, value).
fn gauges(m: &CatalogMetrics) -> [(&'static str, &'static str, i64); 9] {
    let n = |v: Option<u64>| v.map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX));
    [
        ("term", "The current Raft term.", n(Some(m.term))),
        (
            "leader_id",
            "The leader this replica knows of (0: none).",
            n(Some(m.leader.unwrap_or(0))),
        ),
        (
            "is_leader",
            "1 if this replica leads the group.",
            i64::from(m.is_leader),
        ),
        (
            "last_log_index",
            "Index of the last entry in the log (-1: empty).",
            n(m.last_log_index),
        ),
        (
            "committed_index",
            "Index of the last committed entry (-1: none).",
            n(m.committed_index),
        ),
        (
            "applied_index",
            "Index of the last entry applied to the catalog (-1: none).",
            n(m.applied_index),
        ),
        (
            "snapshot_index",
            "Last index covered by the stored snapshot (-1: none).",
            n(m.snapshot_index),
        ),
        (
            "purged_index",
            "Last index removed from the log (-1: none).",
            n(m.purged_index),
        ),
        (
            "stopped",
            "1 if the replica stopped (a storage error names the record in the log).",
            i64::from(m.stopped.is_some()),
        ),
    ]
}

impl Collector for CatalogCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let m = self.node.metrics();
        for (name, help, value) in gauges(&m) {
            let gauge = ConstGauge::new(value);
            let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(metric)?;
        }
        for (name, help, value) in [
            (
                "snapshots_built",
                "Snapshots this replica built (compacting its log) since it started.",
                m.snapshots_built,
            ),
            (
                "snapshots_installed",
                "Snapshots received from a leader and installed since it started.",
                m.snapshots_installed,
            ),
        ] {
            let counter = ConstCounter::new(value);
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        let mut family = encoder.encode_descriptor(
            "role",
            "1 for this replica's role (leader, candidate, follower, learner, joining, stopped).",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        ConstGauge::new(1i64).encode(family.encode_family(&Role { role: m.role })?)?;
        let mut family = encoder.encode_descriptor(
            "replication_lag_entries",
            "On the leader: entries a follower still lacks.",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for (id, lag) in &m.replication_lag {
            let labels = Follower {
                follower: id.to_string(),
            };
            let gauge = ConstGauge::new(i64::try_from(*lag).unwrap_or(i64::MAX));
            gauge.encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
