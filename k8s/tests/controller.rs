//! The controller's kube-rs paths against the stand-in API server (not
//! Kubernetes: see support/apiserver.rs), over an in-memory catalog: what
//! reaches the catalog, what status and events reach the API server, and
//! what happens when the API server goes away, comes back, compacts its
//! history or answers a status patch with a conflict.

#[path = "support/apiserver.rs"]
mod apiserver;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use apiserver::ApiServer;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use strata_k8s::{Controller, ControllerOptions, TieringPolicy, TieringPolicyStatus};
use strata_tiering::catalog::{CatalogClient, Claim, MemoryCatalog};
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(15);

fn policy(spec_yaml: &str) -> TieringPolicy {
    serde_yaml_ng::from_str(&format!(
        "apiVersion: strata.io/v1alpha1\nkind: TieringPolicy\nmetadata: {{name: week-old-images, namespace: line-3}}\nspec:\n{spec_yaml}"
    ))
    .unwrap()
}

const SPEC: &str = "  selector: {matchLabels: {app: vision}}\n  schedule: \"0 * * * *\"\n  lake: {url: \"file:///srv/lake\"}\n  rules: [{name: images, include: [\"**/*.jpg\"], modifiedBefore: 7d, action: move}]\n";

fn claim_and_volume() -> (PersistentVolumeClaim, PersistentVolume) {
    let pvc: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "cam-1", "namespace": "line-3", "labels": {"app": "vision"}},
        "spec": {"storageClassName": "strata-fast", "volumeName": "pvc-1",
                 "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    }))
    .unwrap();
    let pv: PersistentVolume = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": "pvc-1"},
        "spec": {"storageClassName": "strata-fast",
                 "csi": {"driver": "strata.io", "volumeHandle": "pvc-1",
                         "volumeAttributes": {"strata.io/tiering-policy": "week-old-images"}},
                 "claimRef": {"namespace": "line-3", "name": "cam-1"}}
    }))
    .unwrap();
    (pvc, pv)
}

struct Running {
    task: JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn run(server: &ApiServer, catalog: &MemoryCatalog, leads: Arc<AtomicBool>) -> Running {
    let controller = Controller::new(
        server.client(),
        catalog.clone(),
        move || leads.load(Ordering::Relaxed),
        ControllerOptions {
            resync: Duration::from_millis(300),
            min_interval: Duration::from_millis(20),
            ..ControllerOptions::default()
        },
    );
    Running {
        task: tokio::spawn(controller.run()),
    }
}

async fn until<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(t) = probe().await {
            return t;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn catalog_policy(catalog: &MemoryCatalog) -> Option<String> {
    catalog
        .read(|s| s.policy("line-3.week-old-images").map(|p| p.spec.clone()))
        .await
        .unwrap()
}

async fn catalog_claims(catalog: &MemoryCatalog) -> BTreeMap<String, Claim> {
    catalog
        .read(|s| s.claims().map(|c| (c.pv.clone(), c.clone())).collect())
        .await
        .unwrap()
}

fn status_of(server: &ApiServer) -> Option<(Option<i64>, TieringPolicyStatus)> {
    let tp: TieringPolicy = server.get(Some("line-3"), "week-old-images")?;
    Some((tp.metadata.generation, tp.status?))
}

fn ready(s: &TieringPolicyStatus) -> Option<(&str, &str)> {
    s.conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| (c.status.as_str(), c.reason.as_str()))
}

#[tokio::test]
async fn controller_writes_the_catalog_then_status_and_events() {
    let server = ApiServer::new().await;
    let (pvc, pv) = claim_and_volume();
    server.insert(&pvc);
    server.insert(&pv);
    server.insert(&policy(SPEC));
    server.conflict_next_status_patches(2);
    let catalog = MemoryCatalog::new();
    let _c = run(&server, &catalog, Arc::new(AtomicBool::new(true)));

    let spec = until("the policy in the catalog", async || {
        catalog_policy(&catalog).await
    })
    .await;
    assert!(spec.contains("\"namespace\":\"line-3\""), "{spec}");
    let claims = until("the claim in the catalog", async || {
        Some(catalog_claims(&catalog).await).filter(|c| !c.is_empty())
    })
    .await;
    let c = &claims["pvc-1"];
    assert_eq!((c.namespace.as_str(), c.name.as_str()), ("line-3", "cam-1"));
    assert_eq!(c.labels.get("app").map(String::as_str), Some("vision"));
    assert_eq!(c.class_policy.as_deref(), Some("week-old-images"));

    // Two conflicts first: the status still arrives, by server-side apply.
    let (generation, status) = until("status Ready", async || {
        status_of(&server).filter(|(_, s)| ready(s) == Some(("True", "InCatalog")))
    })
    .await;
    assert_eq!(status.observed_generation, generation);
    assert_eq!(
        status.catalog_policy.as_deref(),
        Some("line-3.week-old-images")
    );
    assert!(
        server.status_patches() >= 3,
        "{} status patches",
        server.status_patches()
    );
    let requests = server.requests();
    let applies: Vec<_> = requests
        .iter()
        .filter(|r| r.method == "PATCH" && r.path.ends_with("/status"))
        .collect();
    assert!(
        applies
            .iter()
            .all(|r| r.param("fieldManager") == Some("strata-catalog")),
        "{applies:?}"
    );
    let events = until("an event", async || {
        Some(
            server
                .requests()
                .into_iter()
                .filter(|r| r.method == "POST" && r.path.contains("/events"))
                .count(),
        )
        .filter(|n| *n > 0)
    })
    .await;
    assert!(events >= 1);
}

#[tokio::test]
async fn an_invalid_change_keeps_the_last_valid_policy_and_status_says_where() {
    let server = ApiServer::new().await;
    let first = server.insert(&policy(SPEC));
    let catalog = MemoryCatalog::new();
    let _c = run(&server, &catalog, Arc::new(AtomicBool::new(true)));
    let good = until("the policy in the catalog", async || {
        catalog_policy(&catalog).await
    })
    .await;
    let mut bad = first.clone();
    bad.spec.rules[0].action = "shred".into();
    server.update(&bad);
    let (generation, status) = until("status InvalidSpec", async || {
        status_of(&server).filter(|(_, s)| ready(s) == Some(("False", "InvalidSpec")))
    })
    .await;
    assert_eq!(status.observed_generation, generation);
    assert!(
        generation > first.metadata.generation,
        "a spec change is a new generation"
    );
    let message = &status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .message;
    assert!(message.starts_with("spec.rules[0].action:"), "{message}");
    let degraded = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .unwrap();
    assert_eq!(degraded.reason, "OldVersionInForce");
    assert_eq!(
        catalog_policy(&catalog).await,
        Some(good),
        "the last valid version stays"
    );
}

/// The API server goes away: nothing is removed from the catalog and the
/// controller comes back to it by itself; a history compacted meanwhile
/// (410 Gone on the resumed watch) is relisted.
#[tokio::test]
async fn the_api_server_away_and_back_loses_nothing() {
    let server = ApiServer::new().await;
    let (pvc, pv) = claim_and_volume();
    server.insert(&pvc);
    server.insert(&pv);
    let tp = server.insert(&policy(SPEC));
    let catalog = MemoryCatalog::new();
    let _c = run(&server, &catalog, Arc::new(AtomicBool::new(true)));
    until("the claim in the catalog", async || {
        Some(catalog_claims(&catalog).await).filter(|c| c.len() == 1)
    })
    .await;
    until("the policy", async || catalog_policy(&catalog).await).await;

    server.stop().await;
    // Many resync periods with the API server away: everything stays.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(catalog_policy(&catalog).await.is_some());
    assert_eq!(catalog_claims(&catalog).await.len(), 1);

    // Meanwhile the claim is deleted and the history compacted; back, the
    // watch is told its version is too old, relists, and the claim goes.
    server.delete(&pvc);
    let mut changed = tp.clone();
    changed.spec.schedule = Some("30 * * * *".into());
    let changed = server.update(&changed);
    server.compact();
    server.start().await;
    until("the claim gone", async || {
        catalog_claims(&catalog).await.is_empty().then_some(())
    })
    .await;
    let spec = until("the new schedule", async || {
        catalog_policy(&catalog)
            .await
            .filter(|s| s.contains("30 * * * *"))
    })
    .await;
    assert!(spec.contains(&format!(
        "\"generation\":{}",
        changed.metadata.generation.unwrap()
    )));
    until("status of the new generation", async || {
        status_of(&server)
            .filter(|(g, s)| s.observed_generation == *g && ready(s) == Some(("True", "InCatalog")))
    })
    .await;
}

/// A controller that starts while the API server is away compares
/// nothing: an empty cache is not "every TieringPolicy was deleted".
#[tokio::test]
async fn nothing_is_compared_before_the_first_list() {
    let server = ApiServer::new().await;
    let tp = server.insert(&policy(SPEC));
    let catalog = MemoryCatalog::new();
    let leads = Arc::new(AtomicBool::new(true));
    {
        let _c = run(&server, &catalog, leads.clone());
        until("the policy", async || catalog_policy(&catalog).await).await;
    }
    server.stop().await;
    let _c = run(&server, &catalog, leads);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        catalog_policy(&catalog).await.is_some(),
        "removed on an empty cache"
    );
    // Deleted for real: it goes once the API server answers.
    server.delete(&tp);
    server.start().await;
    until("the policy removed", async || {
        catalog_policy(&catalog).await.is_none().then_some(())
    })
    .await;
}

/// A replica that does not lead writes nothing; when it leads, it does.
#[tokio::test]
async fn only_the_leader_acts() {
    let server = ApiServer::new().await;
    server.insert(&policy(SPEC));
    let catalog = MemoryCatalog::new();
    let leads = Arc::new(AtomicBool::new(false));
    let _c = run(&server, &catalog, leads.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(catalog_policy(&catalog).await, None);
    assert_eq!(server.status_patches(), 0);
    leads.store(true, Ordering::Relaxed);
    until("the policy", async || catalog_policy(&catalog).await).await;
}
