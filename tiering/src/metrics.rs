//! The tiering metrics (prometheus-client): scans, uploads, verifications,
//! releases, abandons, recalls, the backlog, lake reachability and catalog
//! latency.
//!
//! Every name lives in the `strata_tiering_` namespace: [`TieringMetrics::register`]
//! puts them under a `tiering` sub-registry of the process's registry, which
//! carries the `strata` prefix (as the node's does):
//!
//! | series | type | labels |
//! |---|---|---|
//! | `strata_tiering_scan_files_total` | counter | `policy` |
//! | `strata_tiering_scan_candidates_total` | counter | `policy` |
//! | `strata_tiering_scan_duration_seconds` | histogram | `policy` |
//! | `strata_tiering_upload_bytes_total` | counter | `policy` |
//! | `strata_tiering_upload_objects_total` | counter | `policy` |
//! | `strata_tiering_upload_failures_total` | counter | `policy`, `reason` |
//! | `strata_tiering_verifications_total` | counter | `result` (`ok`, `failed`) |
//! | `strata_tiering_verified_by_total` | counter | `by` (`listing`, `head`, `read_back`) |
//! | `strata_tiering_releases_total` | counter | `policy` |
//! | `strata_tiering_released_bytes_total` | counter | `policy` |
//! | `strata_tiering_abandons_total` | counter | `policy` |
//! | `strata_tiering_recall_files_total` | counter | |
//! | `strata_tiering_recall_bytes_total` | counter | |
//! | `strata_tiering_backlog_files` | gauge | |
//! | `strata_tiering_backlog_bytes` | gauge | |
//! | `strata_tiering_oldest_pending_seconds` | gauge | |
//! | `strata_tiering_lake_up` | gauge | `policy` |
//! | `strata_tiering_catalog_propose_duration_seconds` | histogram | |
//!
//! The metric handles are shared: a clone of [`TieringMetrics`] updates the
//! same series.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::catalog::BacklogSummary;
use crate::lake::VerifiedBy;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabel {
    policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    policy: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ByLabel {
    by: &'static str,
}

type HistogramFamily = Family<PolicyLabel, Histogram, fn() -> Histogram>;

fn scan_histogram() -> Histogram {
    // 10 ms … ~3 h
    Histogram::new(exponential_buckets(0.01, 2.0, 21))
}

fn propose_histogram() -> Histogram {
    // 100 µs … ~13 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

/// Why an upload step failed, as the `reason` label of
/// `strata_tiering_upload_failures_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureReason {
    /// The lake did not answer (network, timeout, server error).
    Unreachable,
    /// A different object already sits under the key.
    Conflict,
    /// The lake answered with another size or checksum.
    Mismatch,
    /// The local file could not be read.
    LocalIo,
    /// Anything else the lake refused (permissions, a bad key).
    Refused,
    /// An archive verified earlier was missing or different when looked at
    /// again before its release; it is uploaded again, nothing released.
    Lost,
}

impl FailureReason {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unreachable => "unreachable",
            Self::Conflict => "conflict",
            Self::Mismatch => "mismatch",
            Self::LocalIo => "local_io",
            Self::Refused => "refused",
            Self::Lost => "lost",
        }
    }
}

/// The tiering agent's metrics.
#[derive(Clone)]
pub struct TieringMetrics {
    scan_files: Family<PolicyLabel, Counter>,
    scan_candidates: Family<PolicyLabel, Counter>,
    scan_duration: HistogramFamily,
    upload_bytes: Family<PolicyLabel, Counter>,
    upload_objects: Family<PolicyLabel, Counter>,
    upload_failures: Family<FailureLabels, Counter>,
    verifications: Family<ResultLabel, Counter>,
    verified_by: Family<ByLabel, Counter>,
    releases: Family<PolicyLabel, Counter>,
    released_bytes: Family<PolicyLabel, Counter>,
    abandons: Family<PolicyLabel, Counter>,
    recall_files: Counter,
    recall_bytes: Counter,
    backlog_files: Gauge,
    backlog_bytes: Gauge,
    oldest_pending: Gauge<f64, AtomicU64>,
    lake_up: Family<PolicyLabel, Gauge>,
    propose_latency: Histogram,
}

impl std::fmt::Debug for TieringMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieringMetrics").finish_non_exhaustive()
    }
}

impl Default for TieringMetrics {
    fn default() -> Self {
        Self::new()
    }
}

fn policy(p: &str) -> PolicyLabel {
    PolicyLabel {
        policy: p.to_owned(),
    }
}

impl TieringMetrics {
    /// Fresh series, not yet registered anywhere.
    pub fn new() -> Self {
        Self {
            scan_files: Family::default(),
            scan_candidates: Family::default(),
            scan_duration: Family::new_with_constructor(scan_histogram),
            upload_bytes: Family::default(),
            upload_objects: Family::default(),
            upload_failures: Family::default(),
            verifications: Family::default(),
            verified_by: Family::default(),
            releases: Family::default(),
            released_bytes: Family::default(),
            abandons: Family::default(),
            recall_files: Counter::default(),
            recall_bytes: Counter::default(),
            backlog_files: Gauge::default(),
            backlog_bytes: Gauge::default(),
            oldest_pending: Gauge::default(),
            lake_up: Family::default(),
            propose_latency: propose_histogram(),
        }
    }

    /// Registers every series under the `tiering` sub-registry of `registry`
    /// (pass the process's registry, prefixed `strata`).
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("tiering");
        r.register(
            "scan_files",
            "Settled regular files reported by volume scans",
            self.scan_files.clone(),
        );
        r.register(
            "scan_candidates",
            "Scanned files a policy rule chose to move or copy",
            self.scan_candidates.clone(),
        );
        r.register(
            "scan_duration_seconds",
            "Time to walk a volume",
            self.scan_duration.clone(),
        );
        r.register(
            "upload_bytes",
            "Bytes written to the lake",
            self.upload_bytes.clone(),
        );
        r.register(
            "upload_objects",
            "Objects written to the lake",
            self.upload_objects.clone(),
        );
        r.register(
            "upload_failures",
            "Failed upload, verify or archive steps, by reason",
            self.upload_failures.clone(),
        );
        r.register(
            "verifications",
            "Lake objects read back and compared, by result",
            self.verifications.clone(),
        );
        r.register(
            "verified_by",
            "Lake objects verified, by what settled it: a listing (batched), a HEAD, or the content read back",
            self.verified_by.clone(),
        );
        r.register(
            "releases",
            "Local files removed after their lake copy was verified and recorded",
            self.releases.clone(),
        );
        r.register(
            "released_bytes",
            "Local bytes freed by releases",
            self.released_bytes.clone(),
        );
        r.register(
            "abandons",
            "Moves abandoned because the file changed (hot again, kept local)",
            self.abandons.clone(),
        );
        r.register(
            "recall_files",
            "Files brought back from the lake",
            self.recall_files.clone(),
        );
        r.register(
            "recall_bytes",
            "Bytes brought back from the lake",
            self.recall_bytes.clone(),
        );
        r.register(
            "backlog_files",
            "Files waiting for the lake (intent or uploaded)",
            self.backlog_files.clone(),
        );
        r.register(
            "backlog_bytes",
            "Bytes waiting for the lake",
            self.backlog_bytes.clone(),
        );
        r.register(
            "oldest_pending_seconds",
            "Age of the oldest backlog entry",
            self.oldest_pending.clone(),
        );
        r.register(
            "lake_up",
            "1 while the policy's lake answers, 0 after a transient failure",
            self.lake_up.clone(),
        );
        r.register(
            "catalog_propose_duration_seconds",
            "Time for a catalog proposal to be committed and applied",
            self.propose_latency.clone(),
        );
    }

    /// The backlog gauges, from the catalog's summary.
    pub fn set_backlog(&self, summary: &BacklogSummary) {
        self.backlog_files.set(clamp(summary.files));
        self.backlog_bytes.set(clamp(summary.bytes));
        self.oldest_pending
            .set(summary.oldest_age.map_or(0.0, |d| d.as_secs_f64()));
    }

    pub(crate) fn scanned(&self, p: &str, files: u64, candidates: u64, walk: Duration) {
        self.scan_files.get_or_create(&policy(p)).inc_by(files);
        self.scan_candidates
            .get_or_create(&policy(p))
            .inc_by(candidates);
        self.scan_duration
            .get_or_create(&policy(p))
            .observe(walk.as_secs_f64());
    }

    pub(crate) fn uploaded(&self, p: &str, bytes: u64) {
        self.upload_bytes.get_or_create(&policy(p)).inc_by(bytes);
        self.upload_objects.get_or_create(&policy(p)).inc();
    }

    pub(crate) fn upload_failed(&self, p: &str, reason: FailureReason) {
        self.upload_failures
            .get_or_create(&FailureLabels {
                policy: p.to_owned(),
                reason: reason.as_str().to_owned(),
            })
            .inc();
    }

    pub(crate) fn verified(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.verifications
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    pub(crate) fn verified_by(&self, by: VerifiedBy) {
        self.verified_by
            .get_or_create(&ByLabel { by: by.as_str() })
            .inc();
    }

    pub(crate) fn released(&self, p: &str, bytes: u64) {
        self.releases.get_or_create(&policy(p)).inc();
        self.released_bytes.get_or_create(&policy(p)).inc_by(bytes);
    }

    pub(crate) fn abandoned(&self, p: &str) {
        self.abandons.get_or_create(&policy(p)).inc();
    }

    pub(crate) fn recalled(&self, bytes: u64) {
        self.recall_files.inc();
        self.recall_bytes.inc_by(bytes);
    }

    pub(crate) fn set_lake_up(&self, p: &str, up: bool) {
        self.lake_up.get_or_create(&policy(p)).set(i64::from(up));
    }

    pub(crate) fn proposed(&self, took: Duration) {
        self.propose_latency.observe(took.as_secs_f64());
    }
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_names_are_in_the_tiering_namespace() {
        let m = TieringMetrics::new();
        let mut registry = Registry::with_prefix("strata");
        m.register(&mut registry);
        m.scanned("cold", 10, 3, Duration::from_millis(20));
        m.uploaded("cold", 4096);
        m.upload_failed("cold", FailureReason::Unreachable);
        m.verified(true);
        m.verified(false);
        m.verified_by(VerifiedBy::Listing);
        m.released("cold", 4096);
        m.abandoned("cold");
        m.recalled(4096);
        m.set_lake_up("cold", false);
        m.proposed(Duration::from_millis(2));
        m.set_backlog(&BacklogSummary {
            files: 2,
            bytes: 8192,
            oldest_age: Some(Duration::from_secs(90)),
        });
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for want in [
            r#"strata_tiering_scan_files_total{policy="cold"} 10"#,
            r#"strata_tiering_scan_candidates_total{policy="cold"} 3"#,
            r#"strata_tiering_scan_duration_seconds_count{policy="cold"} 1"#,
            r#"strata_tiering_upload_bytes_total{policy="cold"} 4096"#,
            r#"strata_tiering_upload_objects_total{policy="cold"} 1"#,
            r#"strata_tiering_upload_failures_total{policy="cold",reason="unreachable"} 1"#,
            r#"strata_tiering_verifications_total{result="ok"} 1"#,
            r#"strata_tiering_verifications_total{result="failed"} 1"#,
            r#"strata_tiering_verified_by_total{by="listing"} 1"#,
            r#"strata_tiering_releases_total{policy="cold"} 1"#,
            r#"strata_tiering_released_bytes_total{policy="cold"} 4096"#,
            r#"strata_tiering_abandons_total{policy="cold"} 1"#,
            "strata_tiering_recall_files_total 1",
            "strata_tiering_recall_bytes_total 4096",
            "strata_tiering_backlog_files 2",
            "strata_tiering_backlog_bytes 8192",
            "strata_tiering_oldest_pending_seconds 90.0",
            r#"strata_tiering_lake_up{policy="cold"} 0"#,
            "strata_tiering_catalog_propose_duration_seconds_count 1",
        ] {
            assert!(text.contains(want), "missing {want}:\n{text}");
        }
    }
}
