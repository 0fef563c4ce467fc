//! A real `strata catalog` process runs its Kubernetes controller against
//! the stand-in API server (k8s/tests/support/apiserver.rs; not Kubernetes):
//! a TieringPolicy and a bound claim reach the Raft catalog, and the
//! policy's status comes back Ready, naming its catalog policy.

#[path = "../k8s/tests/support/apiserver.rs"]
mod apiserver;
mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, site, strata_bin};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use strata_k8s::TieringPolicy;
use tempfile::TempDir;

struct Replica {
    child: Child,
    log: std::path::PathBuf,
    _dir: TempDir,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Replica {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn start_replica(api_url: &str) -> Replica {
    let dir = TempDir::new().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: standin, cluster: {{server: \"{api_url}\"}}}}]\nusers: [{{name: test, user: {{}}}}]\ncontexts: [{{name: standin, context: {{cluster: standin, user: test, namespace: default}}}}]\ncurrent-context: standin\n"
        ),
    )
    .unwrap();
    let log = dir.path().join("replica.log");
    let addr = format!("127.0.0.1:{}", free_port());
    let child = Command::new(strata_bin())
        .args([
            "catalog",
            "--id",
            "1",
            "--bootstrap",
            "--listen",
            &addr,
            "--metrics-addr",
            "",
        ])
        .arg("--tls-dir")
        .arg(&site().replica)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .env("RUST_LOG", "info,openraft=warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    Replica {
        child,
        log,
        _dir: dir,
    }
}

#[tokio::test]
async fn a_catalog_replica_takes_tiering_policies_and_claims_from_the_api_server() {
    let server = apiserver::ApiServer::new().await;
    let pvc: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "cam-1", "namespace": "line-3", "labels": {"app": "vision"}},
        "spec": {"storageClassName": "strata-fast", "volumeName": "pvc-1"}
    }))
    .unwrap();
    let pv: PersistentVolume = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": "pvc-1"},
        "spec": {"csi": {"driver": "strata.io", "volumeHandle": "pvc-1"},
                 "claimRef": {"namespace": "line-3", "name": "cam-1"}}
    }))
    .unwrap();
    let tp: TieringPolicy = serde_yaml_ng::from_str(
        "apiVersion: strata.io/v1alpha1\nkind: TieringPolicy\nmetadata: {name: week-old-images, namespace: line-3}\nspec:\n  selector: {matchLabels: {app: vision}}\n  lake: {url: \"file:///srv/lake\"}\n  rules: [{name: images, include: [\"**/*.jpg\"], modifiedBefore: 7d, action: move}]\n",
    )
    .unwrap();
    server.insert(&pvc);
    server.insert(&pv);
    server.insert(&tp);
    let mut replica = start_replica(&server.url());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Ok(Some(exit)) = replica.child.try_wait() {
            panic!("the replica exited with {exit}: {}", replica.log_text());
        }
        let now: Option<TieringPolicy> = server.get(Some("line-3"), "week-old-images");
        if let Some(status) = now.and_then(|t| t.status)
            && status
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "no Ready status: {}",
            replica.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        status.catalog_policy.as_deref(),
        Some("line-3.week-old-images")
    );
    let log = replica.log_text();
    for line in [
        "kubernetes controller: write policy line-3.week-old-images",
        "kubernetes controller: record claim line-3/cam-1 of volume pvc-1",
    ] {
        assert!(log.contains(line), "{line:?} not in the log:\n{log}");
    }
}
