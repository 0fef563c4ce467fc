//! The TieringPolicy custom resource.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use strata_tiering::policy::{
    BandwidthSpec, LabelSelectorSpec, LakeSpec, RuleSpec, WatermarksSpec,
};

/// A tiering policy for the PersistentVolumeClaims of its namespace: which
/// files of their volumes are cold, where they go, when and how fast. The
/// fields are those of a `strata ctl policy apply` document, but for the
/// name (the object's) and the selection, which is by claim: `selector`
/// (a label selector over the namespace's claims), `storageClassNames`, or
/// a StorageClass whose parameter `strata.io/tiering-policy` names the
/// policy.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "strata.io",
    version = "v1alpha1",
    kind = "TieringPolicy",
    plural = "tieringpolicies",
    shortname = "tp",
    category = "strata",
    namespaced,
    status = "TieringPolicyStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Volumes","type":"integer","jsonPath":".status.volumes"}"#,
    printcolumn = r#"{"name":"Backlog","type":"integer","jsonPath":".status.backlogFiles"}"#,
    printcolumn = r#"{"name":"Last Run","type":"date","jsonPath":".status.lastRun.finishedAt"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TieringPolicySpec {
    /// The claims of this namespace it applies to, by their labels; `{}`
    /// selects every claim of the namespace. With neither `selector` nor
    /// `storageClassNames`, only claims whose StorageClass names this
    /// policy (`strata.io/tiering-policy`) are selected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelectorSpec>,
    /// Only claims of these StorageClasses (with `selector`: both must hold).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub storage_class_names: Vec<String>,
    /// When the policy runs: a cron expression in the site's time zone
    /// (`0 * * * *`; 5 fields, or 6 with seconds first, or `@hourly`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Where moved files go.
    pub lake: LakeSpec,
    /// The object key of a file in the lake; placeholders `{site}`,
    /// `{namespace}`, `{pvc}`, `{volume}` and `{path}` (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_template: Option<String>,
    /// Which files are cold and what to do with them; the first match wins.
    pub rules: Vec<RuleSpec>,
    /// Free-space triggers: above `high`, move the oldest first until `low`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermarks: Option<WatermarksSpec>,
    /// How fast uploads may go (the site's local time for the timetable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<BandwidthSpec>,
    /// Stop starting runs and drains for this policy (what it moved stays
    /// in the lake and can be recalled).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
}

/// What the catalog knows of a TieringPolicy, written by the controller.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TieringPolicyStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Degraded`, `LakeUnreachable`, `SpacePressure`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The policy's name in the catalog (`<namespace>.<name>`), as
    /// `strata ctl` shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_policy: Option<String>,
    /// Volumes it selects now.
    #[serde(default)]
    pub volumes: u32,
    /// Its most recent run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<LastRun>,
    /// Files moved by its runs the catalog keeps.
    #[serde(default)]
    pub files_moved: u64,
    /// Bytes moved by its runs the catalog keeps.
    #[serde(default)]
    pub bytes_moved: u64,
    /// Files it chose that wait for the lake.
    #[serde(default)]
    pub backlog_files: u64,
    /// Their bytes.
    #[serde(default)]
    pub backlog_bytes: u64,
    /// Files it moved that were brought back from the lake and stay recalled.
    #[serde(default)]
    pub recalled_files: u64,
    /// How long the oldest of them has waited, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_pending_seconds: Option<u64>,
}

/// The most recent run of a policy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastRun {
    /// The volume it ran on.
    pub volume: String,
    /// When it ended (RFC 3339).
    pub finished_at: String,
    /// Files it moved or copied.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Files it failed on.
    pub errors: u64,
}

/// The condition types of a TieringPolicy's status.
pub mod condition_types {
    /// The policy is valid and in the catalog as written.
    pub const READY: &str = "Ready";
    /// Some of its work fails (files that keep failing, an old version
    /// still in force).
    pub const DEGRADED: &str = "Degraded";
    /// Uploads to its lake fail.
    pub const LAKE_UNREACHABLE: &str = "LakeUnreachable";
    /// A volume it selects is above its high watermark.
    pub const SPACE_PRESSURE: &str = "SpacePressure";
}
