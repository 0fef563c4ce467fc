//! The TieringPolicy CRD as `deploy/` carries it: the schema kube derives
//! from the Rust types, plus what the API server can check at admission
//! (enums, patterns, CEL rules). Everything else is checked by the policy
//! module, the validator `strata ctl` uses, and reported in `status`.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde_json::{Value, json};

use crate::TieringPolicy;

/// Longest TieringPolicy name: its catalog name `<namespace>.<name>` must
/// stay a DNS subdomain (253) with the longest namespace (63).
pub(crate) const MAX_NAME_LEN: usize = 253 - 63 - 1;

/// Most rules a policy may have: the API server bounds what a CEL rule
/// may cost, and checking that rule names are unique compares every pair.
const MAX_RULES: usize = 64;

/// Additions to the derived schema: (JSON pointer into the spec's schema,
/// keyword, value). Every list and every string a CEL rule reads has a
/// bound, so the API server's estimate of each rule's cost stays within
/// its budget; checks that would need an unbounded pattern match (the
/// int-or-string durations and percentages) are left to the validator,
/// which reports them in `status` by path.
fn additions() -> Vec<(&'static str, &'static str, Value)> {
    let day = "(mon|tue|wed|thu|fri|sat|sun)";
    vec![
        (
            "",
            "x-kubernetes-validations",
            json!([{
                "rule": format!("size(self.metadata.name) <= {MAX_NAME_LEN}"),
                "message": format!("a TieringPolicy's name has at most {MAX_NAME_LEN} characters (its catalog name is <namespace>.<name>)"),
            }]),
        ),
        ("/properties/spec/properties/rules", "minItems", json!(1)),
        (
            "/properties/spec/properties/rules",
            "maxItems",
            json!(MAX_RULES),
        ),
        (
            "/properties/spec/properties/rules/items/properties/name",
            "maxLength",
            json!(253),
        ),
        (
            "/properties/spec/properties/rules/items/properties/include",
            "maxItems",
            json!(256),
        ),
        (
            "/properties/spec/properties/rules/items/properties/exclude",
            "maxItems",
            json!(256),
        ),
        (
            "/properties/spec/properties/storageClassNames",
            "maxItems",
            json!(64),
        ),
        (
            "/properties/spec/properties/storageClassNames/items",
            "maxLength",
            json!(253),
        ),
        (
            "/properties/spec/properties/selector/properties/matchLabels",
            "maxProperties",
            json!(64),
        ),
        (
            "/properties/spec/properties/selector/properties/matchExpressions",
            "maxItems",
            json!(64),
        ),
        (
            "/properties/spec/properties/selector/properties/matchExpressions/items/properties/values",
            "maxItems",
            json!(64),
        ),
        (
            "/properties/spec/properties/bandwidth/properties/timetable",
            "maxItems",
            json!(64),
        ),
        (
            "/properties/spec/properties/bandwidth/properties/timetable/items/properties/days",
            "maxItems",
            json!(7),
        ),
        (
            "/properties/spec/properties/rules",
            "x-kubernetes-validations",
            json!([{
                "rule": "self.all(r, self.exists_one(s, s.name == r.name))",
                "message": "rule names must be unique",
            }]),
        ),
        (
            "/properties/spec/properties/rules/items/properties/name",
            "minLength",
            json!(1),
        ),
        (
            "/properties/spec/properties/rules/items/properties/action",
            "enum",
            json!(["move", "copy"]),
        ),
        (
            "/properties/spec/properties/lake/properties/url",
            "pattern",
            json!("^(s3|file)://"),
        ),
        (
            "/properties/spec/properties/lake/properties/credentials",
            "pattern",
            json!("^(env|/.*)$"),
        ),
        (
            "/properties/spec/properties/storageClassNames/items",
            "minLength",
            json!(1),
        ),
        (
            "/properties/spec/properties/bandwidth/properties/timetable/items/properties/hours",
            "pattern",
            json!("^[0-9]{2}-[0-9]{2}$"),
        ),
        (
            "/properties/spec/properties/bandwidth/properties/timetable/items/properties/days/items",
            "pattern",
            json!(format!("^{day}(-{day})?$")),
        ),
        (
            "/properties/spec/properties/selector/properties/matchExpressions/items/properties/operator",
            "enum",
            json!(["In", "NotIn", "Exists", "DoesNotExist"]),
        ),
        (
            "/properties/spec/properties/selector/properties/matchExpressions/items",
            "x-kubernetes-validations",
            json!([{
                "rule": "self.operator in ['In', 'NotIn'] ? has(self.values) && size(self.values) > 0 : !has(self.values) || size(self.values) == 0",
                "message": "In and NotIn need values; Exists and DoesNotExist take none",
            }]),
        ),
    ]
}

/// The CRD, with the admission checks added.
pub fn crd() -> CustomResourceDefinition {
    let mut value = serde_json::to_value(TieringPolicy::crd()).expect("a CRD serialises");
    {
        let schema = value
            .pointer_mut("/spec/versions/0/schema/openAPIV3Schema")
            .expect("kube derives an openAPIV3Schema");
        for (at, keyword, add) in additions() {
            let node = schema
                .pointer_mut(at)
                .unwrap_or_else(|| panic!("the derived schema has no {at}"));
            node.as_object_mut()
                .unwrap_or_else(|| panic!("{at} is not an object"))
                .insert(keyword.to_owned(), add);
        }
    }
    serde_json::from_value(value).expect("the CRD with additions is a CRD")
}

/// The CRD as YAML, with a header saying where it comes from.
pub fn crd_yaml() -> String {
    let body = serde_yaml_ng::to_string(&crd()).expect("a CRD serialises");
    format!(
        "# The TieringPolicy CRD, generated from strata's Rust types by `strata crd`.\n\
         # Do not edit: change k8s/src/crd.rs or k8s/src/schema.rs and run\n\
         #   strata crd > deploy/base/crd-tieringpolicy.yaml\n\
         # (the test command fails when this file differs from what strata writes).\n{body}"
    )
}
