//! The TieringPolicy CRD in a real kube-apiserver: it is accepted and
//! established, the example policy under deploy/examples/ is stored and
//! reads back as written, and the API server's own admission refuses what
//! the CRD's schema forbids (an enum value it lacks, a CEL rule broken).
//!
//! Runs only where `KUBE_APISERVER_BIN` and `ETCD_BIN` name the binaries
//! (see `common::real_apiserver`); elsewhere it passes having printed that
//! it did not run.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::real_apiserver::RealApiServer;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams};
use kube::{Client, ResourceExt};
use strata_k8s::TieringPolicy;

fn repo_file(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Creates the CRD from deploy/base/ and waits until it is Established.
async fn install_crd(client: &Client) {
    let crd: CustomResourceDefinition =
        serde_yaml_ng::from_str(&repo_file("deploy/base/crd-tieringpolicy.yaml")).unwrap();
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    // Where the API server refuses the CRD itself (a CEL rule over its cost
    // budget, say), its message says why.
    if let Err(e) = crds.create(&PostParams::default(), &crd).await {
        panic!("the API server refused the CRD: {e}");
    }
    let start = Instant::now();
    loop {
        let now = crds.get(&crd.name_any()).await.unwrap();
        let conditions = now.status.and_then(|s| s.conditions).unwrap_or_default();
        if conditions
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
        {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "CRD {} not Established within 30 s: {conditions:?}",
            crd.name_any()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The API server's refusal of `object`: its HTTP code and message.
async fn refusal(api: &Api<DynamicObject>, object: serde_json::Value) -> (u16, String) {
    let object: DynamicObject = serde_json::from_value(object).unwrap();
    match api.create(&PostParams::default(), &object).await {
        Ok(o) => panic!("the API server stored {}: {o:?}", o.name_any()),
        Err(kube::Error::Api(status)) => (status.code, status.message),
        Err(e) => panic!("creating {}: {e}", object.name_any()),
    }
}

#[tokio::test]
async fn crd_admits_the_example_policy_and_refuses_invalid_ones() {
    let dir = tempfile::tempdir().unwrap();
    let Some(server) = RealApiServer::start(dir.path()).await else {
        return;
    };
    let client = server.client().await;
    install_crd(&client).await;

    let namespace: Namespace =
        serde_yaml_ng::from_str(&repo_file("deploy/examples/tiering/namespace.yaml")).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();

    let policy: TieringPolicy =
        serde_yaml_ng::from_str(&repo_file("deploy/examples/tiering/tieringpolicy.yaml")).unwrap();
    let ns = policy.namespace().expect("the example names its namespace");
    assert_eq!(ns, namespace.name_any());
    let policies = Api::<TieringPolicy>::namespaced(client.clone(), &ns);
    policies
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();
    let back = policies.get(&policy.name_any()).await.unwrap();
    assert_eq!(back.spec, policy.spec, "the policy reads back as written");
    assert!(back.status.is_none(), "nothing has written its status yet");

    // What the typed spec cannot express goes as plain JSON.
    let raw = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        &ns,
        &ApiResource::erase::<TieringPolicy>(&()),
    );
    let example = serde_json::to_value(&policy).unwrap();
    let named = |name: &str| {
        let mut v = example.clone();
        v["metadata"] = serde_json::json!({ "name": name, "namespace": ns });
        v
    };

    // An action outside the enum (move, copy).
    let mut shred = named("shred");
    shred["spec"]["rules"][0]["action"] = "shred".into();
    let (code, message) = refusal(&raw, shred).await;
    assert_eq!(code, 422, "{message}");
    assert!(
        message.contains("spec.rules[0].action") && message.contains("shred"),
        "{message}"
    );

    // Two rules of one name: the CEL rule on spec.rules.
    let mut twice = named("twice");
    let rule = twice["spec"]["rules"][0].clone();
    twice["spec"]["rules"] = serde_json::json!([rule.clone(), rule]);
    let (code, message) = refusal(&raw, twice).await;
    assert_eq!(code, 422, "{message}");
    assert!(message.contains("rule names must be unique"), "{message}");

    let stored: Vec<String> = policies
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|p| p.name_any())
        .collect();
    assert_eq!(stored, [policy.name_any()]);
    println!(
        "real kube-apiserver at {}: CRD established, {}/{} stored and read back, \
         action shred and duplicate rule names refused (422)",
        server.url(),
        ns,
        policy.name_any()
    );
}
