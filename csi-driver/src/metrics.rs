//! The node's Prometheus metrics (prometheus-client), served on `/metrics`.

use std::borrow::Cow;
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

fn latency_histogram() -> Histogram {
    // 1 ms … ~33 s
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// CSI request counters and latencies, labelled with the node.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily,
    ready: Gauge,
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
            "1 when every configured volume group answers (what Probe reports)",
            ready.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            ready,
        }
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

    /// Set the readiness gauge.
    pub fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
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
    }
}
