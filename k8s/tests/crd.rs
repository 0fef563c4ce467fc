//! The TieringPolicy CRD: what `strata crd` writes is what deploy/ carries,
//! and the schema's admission checks are where the controller expects them.

use serde::Deserialize;
use strata_k8s::{TieringPolicy, crd, crd_yaml};

#[test]
fn crd_yaml_is_the_committed_one() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/base/crd-tieringpolicy.yaml"
    );
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == crd_yaml(),
        "deploy/base/crd-tieringpolicy.yaml differs from what strata writes: run\n  \
         cargo run -- crd > deploy/base/crd-tieringpolicy.yaml"
    );
}

#[test]
fn crd_names_status_and_columns() {
    let crd = crd();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("tieringpolicies.strata.io")
    );
    assert_eq!(crd.spec.scope, "Namespaced");
    let v = &crd.spec.versions[0];
    assert_eq!(v.name, "v1alpha1");
    assert!(
        v.subresources
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some()
    );
    let columns: Vec<&str> = v
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(columns, ["Ready", "Volumes", "Backlog", "Last Run", "Age"]);
    let schema = serde_json::to_value(&v.schema).unwrap();
    let rules = schema
        .pointer("/openAPIV3Schema/properties/spec/properties/rules")
        .unwrap();
    assert_eq!(rules["minItems"], 1);
    assert_eq!(
        rules.pointer("/items/properties/action/enum").unwrap(),
        &serde_json::json!(["move", "copy"])
    );
    // Quantities accept bare numbers, as the CLI's documents do.
    assert_eq!(
        schema
            .pointer("/openAPIV3Schema/properties/spec/properties/watermarks/properties/high/x-kubernetes-int-or-string")
            .unwrap(),
        true
    );
    // A TieringPolicy round-trips through the derived types.
    let tp: TieringPolicy = serde_yaml_ng::from_str(
        "apiVersion: strata.io/v1alpha1\nkind: TieringPolicy\nmetadata: {name: week-old-images, namespace: line-3}\nspec:\n  selector: {matchLabels: {app: vision}}\n  schedule: \"0 * * * *\"\n  lake: {url: \"s3://plant-lake/line-3\", credentials: /etc/strata/lake/credentials}\n  rules:\n    - {name: images, include: [\"**/*.jpg\"], modifiedBefore: 7d, action: move}\n  watermarks: {high: 85%, low: 70}\n",
    )
    .unwrap();
    assert_eq!(tp.spec.watermarks.unwrap().low, "70");
}

/// Every TieringPolicy under deploy/ reads as the Rust type (unknown fields
/// refused) and passes the checks the controller makes before the catalog.
#[test]
fn deploy_examples_are_valid_tiering_policies() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/examples/tiering");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let value = serde_yaml_ng::Value::deserialize(doc).unwrap();
            if value.get("kind").and_then(|k| k.as_str()) != Some("TieringPolicy") {
                continue;
            }
            let tp: TieringPolicy = serde_yaml_ng::from_value(value)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            strata_k8s::reconcile::policy_spec(&tp)
                .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
            seen += 1;
        }
    }
    assert!(seen > 0, "no TieringPolicy under {dir}");
}
