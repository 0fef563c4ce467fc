//! A device class changing state, as a Kubernetes Event on this node's Node
//! object ([`crate::readiness::ClassEvents`]), so `kubectl describe node`
//! shows why the node offers no room for a class.
//!
//! Best effort: an Event that cannot be posted is logged and dropped (the
//! log line and the gauge of [`crate::readiness`] say the same). Events go
//! where the kubelet puts the Node's own, the `default` namespace, with the
//! kubelet's reference to a Node (its name as uid), which is what `kubectl
//! describe node` looks for. The ServiceAccount needs `create` on core
//! `events` there. Like [`crate::owners::KubeOwners`] this is only
//! compile-checked on the project's machines (no API server runs there);
//! the Event itself is built by the pure [`node_event`], tested.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use tracing::warn;

use crate::identity::DRIVER_NAME;
use crate::readiness::{ClassEvents, ClassState};

/// The namespace the kubelet records a Node's events in.
const NODE_EVENTS_NAMESPACE: &str = "default";

/// How long one Event may take to post.
const POST_TIMEOUT: Duration = Duration::from_secs(10);

/// Posts each change as an Event through the Kubernetes API.
#[derive(Clone)]
pub struct KubeNodeEvents {
    client: kube::Client,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for KubeNodeEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeNodeEvents").finish_non_exhaustive()
    }
}

impl KubeNodeEvents {
    /// A client from the in-cluster ServiceAccount (or `KUBECONFIG` /
    /// `~/.kube/config`), posting from the current runtime; `None` when
    /// there is neither.
    pub async fn try_default() -> Option<Self> {
        let client = kube::Client::try_default().await.ok()?;
        Some(KubeNodeEvents {
            client,
            runtime: tokio::runtime::Handle::current(),
        })
    }
}

impl ClassEvents for KubeNodeEvents {
    fn changed(&self, node: &str, state: &ClassState) {
        let event = node_event(node, state, Timestamp::now());
        let client = self.client.clone();
        let class = state.class.clone();
        // Never waits here: the caller may hold a request or a report.
        self.runtime.spawn(async move {
            let api: kube::Api<Event> = kube::Api::namespaced(client, NODE_EVENTS_NAMESPACE);
            let posted = tokio::time::timeout(
                POST_TIMEOUT,
                api.create(&kube::api::PostParams::default(), &event),
            )
            .await;
            let problem = match posted {
                Ok(Ok(_)) => return,
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no answer within {}s", POST_TIMEOUT.as_secs()),
            };
            warn!(device_class = %class, "cannot post the device class's Event on the Node: {problem}");
        });
    }
}

/// The Event telling that `state` is the new state of its class on `node`:
/// `Warning DeviceClassNotReady` with the reason, or `Normal DeviceClassReady`.
pub fn node_event(node: &str, state: &ClassState, now: Timestamp) -> Event {
    let (type_, reason, message) = match &state.problem {
        Some(problem) => (
            "Warning",
            "DeviceClassNotReady",
            format!("{} cannot take volumes: {problem}", state.describe()),
        ),
        None => (
            "Normal",
            "DeviceClassReady",
            format!("{} can take volumes again", state.describe()),
        ),
    };
    Event {
        metadata: ObjectMeta {
            generate_name: Some(format!("{node}.strata-")),
            namespace: Some(NODE_EVENTS_NAMESPACE.to_owned()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".to_owned()),
            kind: Some("Node".to_owned()),
            name: Some(node.to_owned()),
            // The kubelet's convention for a Node, which `kubectl describe
            // node` matches events by.
            uid: Some(node.to_owned()),
            ..ObjectReference::default()
        },
        type_: Some(type_.to_owned()),
        reason: Some(reason.to_owned()),
        message: Some(message),
        source: Some(EventSource {
            component: Some(DRIVER_NAME.to_owned()),
            host: Some(node.to_owned()),
        }),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        count: Some(1),
        ..Event::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_an_event_on_the_node() {
        let now = Timestamp::from_second(1_796_686_915).unwrap();
        let down = ClassState {
            class: "fast".into(),
            volume_group: "strata-fast".into(),
            problem: Some("volume group \"strata-fast\" not found on this node".into()),
        };
        let e = node_event("edge-1", &down, now);
        assert_eq!(e.type_.as_deref(), Some("Warning"));
        assert_eq!(e.reason.as_deref(), Some("DeviceClassNotReady"));
        assert_eq!(
            e.message.as_deref(),
            Some(
                "device class \"fast\" (volume group \"strata-fast\") cannot take volumes: volume group \"strata-fast\" not found on this node"
            )
        );
        let o = &e.involved_object;
        assert_eq!(
            (o.kind.as_deref(), o.name.as_deref(), o.uid.as_deref()),
            (Some("Node"), Some("edge-1"), Some("edge-1"))
        );
        assert_eq!(o.namespace, None, "a Node has no namespace");
        assert_eq!(e.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(e.metadata.generate_name.as_deref(), Some("edge-1.strata-"));
        assert_eq!(e.first_timestamp, Some(Time(now)));
        let up = ClassState {
            problem: None,
            ..down
        };
        let e = node_event("edge-1", &up, now);
        assert_eq!(
            (e.type_.as_deref(), e.reason.as_deref()),
            (Some("Normal"), Some("DeviceClassReady"))
        );
    }
}
