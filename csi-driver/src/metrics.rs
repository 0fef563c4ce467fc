//! The node's Prometheus metrics (prometheus-client), served on `/metrics`.
//!
//! Three kinds of series, all in the `strata_` namespace with the `node` label:
//! - request metrics, updated as requests finish (`csi_requests_total`,
//!   `csi_request_duration_seconds`) and LVM command latency
//!   ([`observe_lvm_command`], fed by the one place every command passes);
//! - the inventory (VGs, thin pools, volumes, snapshots), computed at scrape
//!   time from one cached LVM report ([`crate::inventory`]);
//! - the orphan scan's findings ([`Metrics::set_orphans`]).

use std::borrow::Cow;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: String,
}

type HistogramFamily = Family<MethodLabels, Histogram, fn() -> Histogram>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LvmLabels {
    operation: &'static str,
    backend: &'static str,
}

type LvmFamily = Family<LvmLabels, Histogram, fn() -> Histogram>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabel {
    device_class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    device_class: String,
    reason: &'static str,
}

/// LVM command latency. Process-wide: the LVM backend is opened before any
/// driver (and its registry) exists, and every registry shows the same series.
static LVM_COMMANDS: LazyLock<LvmFamily> =
    LazyLock::new(|| Family::new_with_constructor(latency_histogram));

/// The `operation` label of an lvm subcommand: the words strata runs, and
/// `other` for anything else (the label set stays small whatever comes in).
fn lvm_operation(subcommand: &str) -> &'static str {
    const KNOWN: [&str; 12] = [
        "lvs", "vgs", "pvs", "lvcreate", "lvremove", "lvextend", "lvchange", "lvrename",
        "vgcreate", "pvcreate", "vgextend", "version",
    ];
    KNOWN
        .iter()
        .find(|k| **k == subcommand)
        .copied()
        .unwrap_or("other")
}

/// Record one LVM command: `subcommand` is its first word (`lvs`,
/// `lvcreate`, …), `backend` the runner's name (`cli` or `lvm2cmd`).
pub fn observe_lvm_command(backend: &'static str, subcommand: &str, elapsed: Duration) {
    LVM_COMMANDS
        .get_or_create(&LvmLabels {
            operation: lvm_operation(subcommand),
            backend,
        })
        .observe(elapsed.as_secs_f64());
}

/// What the orphan scan reports: [`crate::orphans::OrphanKind`] label values.
pub const ORPHAN_KINDS: [&str; 4] = ["volume", "mount", "staging_dir", "publish_dir"];

fn latency_histogram() -> Histogram {
    // 1 ms … ~33 s
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// The node's registry: request counters and latencies, LVM command
/// latency, the scrape-time inventory and the orphan counts, labelled with
/// the node.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily,
    ready: Gauge,
    class_ready: Family<ClassLabel, Gauge>,
    expand_refused: Family<RefusalLabels, Counter>,
    orphans: Family<KindLabel, Gauge>,
    owners_known: Gauge,
    /// The cached LVM report the inventory series are encoded from.
    pub(crate) inventory: Arc<crate::inventory::InventoryCache>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new("")
    }
}

impl Metrics {
    /// Metrics for node `node` (its id becomes the `node` label of every series).
    pub fn new(node: &str) -> Self {
        let mut registry = Registry::with_prefix_and_labels(
            "strata",
            [(Cow::Borrowed("node"), Cow::Owned(node.to_owned()))].into_iter(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let ready = Gauge::default();
        registry.register(
            "csi_requests",
            "CSI requests by method and gRPC code",
            requests.clone(),
        );
        registry.register(
            "csi_request_duration_seconds",
            "CSI request latency by method",
            latency.clone(),
        );
        registry.register(
            "node_ready",
            "1 when every configured device class can take volumes (its volume group, and thin pool, are there)",
            ready.clone(),
        );
        let class_ready = Family::<ClassLabel, Gauge>::default();
        registry.register(
            "csi_device_class_ready",
            "1 when the device class can take volumes on this node, 0 when its volume group or thin pool is missing",
            class_ready.clone(),
        );
        let expand_refused = Family::<RefusalLabels, Counter>::default();
        registry.register(
            "csi_expand_refused",
            "NodeExpandVolume calls refused for want of room, by device class and reason (volume_group_full, thin_pool_full, thin_pool_past_mark)",
            expand_refused.clone(),
        );
        registry.register(
            "lvm_command_duration_seconds",
            "LVM command latency by operation (the lvm subcommand) and backend",
            LVM_COMMANDS.clone(),
        );
        let orphans = Family::<KindLabel, Gauge>::default();
        registry.register(
            "orphans",
            "Orphans the last scan found, by kind (volume, mount, staging_dir, publish_dir)",
            orphans.clone(),
        );
        let owners_known = Gauge::default();
        registry.register(
            "orphan_scan_owners_known",
            "1 when the last orphan scan could list the PersistentVolumes (0: LVs were not judged)",
            owners_known.clone(),
        );
        let inventory = Arc::new(crate::inventory::InventoryCache::default());
        registry.register_collector(Box::new(inventory.clone()));
        Metrics {
            registry,
            requests,
            latency,
            ready,
            class_ready,
            expand_refused,
            orphans,
            owners_known,
            inventory,
        }
    }

    /// Set the orphan counts by kind (every kind of [`ORPHAN_KINDS`] is set,
    /// absent ones to 0) and whether the owners were known.
    pub fn set_orphans(&self, counts: &[(&'static str, usize)], owners_known: bool) {
        for kind in ORPHAN_KINDS {
            let n = counts
                .iter()
                .filter(|(k, _)| *k == kind)
                .map(|(_, n)| *n)
                .sum::<usize>();
            self.orphans
                .get_or_create(&KindLabel { kind })
                .set(n as i64);
        }
        self.owners_known.set(i64::from(owners_known));
    }

    /// Record one finished request.
    pub fn observe(&self, method: &str, code: tonic::Code, elapsed: Duration) {
        let code = format!("{code:?}");
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_owned(),
                code,
            })
            .inc();
        self.latency
            .get_or_create(&MethodLabels {
                method: method.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Set the node's readiness gauge (every device class ready).
    pub fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    /// Set one device class's readiness gauge.
    pub fn set_class_ready(&self, device_class: &str, ready: bool) {
        self.class_ready
            .get_or_create(&ClassLabel {
                device_class: device_class.to_owned(),
            })
            .set(i64::from(ready));
    }

    /// Count one expansion refused for want of room (`reason`: a
    /// [`crate::expansion::RefusedBecause`] label).
    pub fn expand_refused(&self, device_class: &str, reason: &'static str) {
        self.expand_refused
            .get_or_create(&RefusalLabels {
                device_class: device_class.to_owned(),
                reason,
            })
            .inc();
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_with_node_label() {
        let m = Metrics::new("edge-1");
        m.observe("CreateVolume", tonic::Code::Ok, Duration::from_millis(3));
        m.observe(
            "CreateVolume",
            tonic::Code::ResourceExhausted,
            Duration::from_millis(1),
        );
        m.set_ready(true);
        m.set_class_ready("fast", true);
        m.set_class_ready("edge", false);
        m.expand_refused("fast", "volume_group_full");
        m.expand_refused("fast", "volume_group_full");
        let text = m.encode();
        assert!(
            text.contains(
                r#"strata_csi_requests_total{node="edge-1",method="CreateVolume",code="Ok"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"code="ResourceExhausted"} 1"#), "{text}");
        assert!(text.contains(r#"strata_csi_request_duration_seconds_count{node="edge-1",method="CreateVolume"} 2"#), "{text}");
        assert!(
            text.contains(r#"strata_node_ready{node="edge-1"} 1"#),
            "{text}"
        );
        for line in [
            r#"strata_csi_device_class_ready{node="edge-1",device_class="fast"} 1"#,
            r#"strata_csi_device_class_ready{node="edge-1",device_class="edge"} 0"#,
            r#"strata_csi_expand_refused_total{node="edge-1",device_class="fast",reason="volume_group_full"} 2"#,
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }

    #[test]
    fn lvm_commands_are_timed_by_operation_and_backend() {
        observe_lvm_command("cli", "lvcreate", Duration::from_millis(40));
        observe_lvm_command("lvm2cmd", "no-such-thing", Duration::from_millis(1));
        let text = Metrics::new("edge-2").encode();
        assert!(
            text.contains(r#"strata_lvm_command_duration_seconds_count{node="edge-2",operation="lvcreate",backend="cli"}"#),
            "{text}"
        );
        assert!(
            text.contains(r#"operation="other",backend="lvm2cmd"}"#),
            "{text}"
        );
    }

    #[test]
    fn orphans_are_counted_by_kind() {
        let m = Metrics::new("edge-3");
        m.set_orphans(&[("volume", 2), ("mount", 1)], true);
        let text = m.encode();
        for line in [
            r#"strata_orphans{node="edge-3",kind="volume"} 2"#,
            r#"strata_orphans{node="edge-3",kind="mount"} 1"#,
            r#"strata_orphans{node="edge-3",kind="staging_dir"} 0"#,
            r#"strata_orphan_scan_owners_known{node="edge-3"} 1"#,
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
