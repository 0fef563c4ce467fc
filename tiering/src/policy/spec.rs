//! The policy as users write it: plain serde structs, camelCase, the same
//! shape the TieringPolicy CRD's `spec` will have. Quantities stay strings
//! here (`7d`, `10MiB`, `85%`); [`Policy`](super::Policy) holds them parsed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A tiering policy as written in YAML (or a CRD's `spec`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicySpec {
    /// The policy's name: a DNS subdomain, like a Kubernetes object name.
    pub name: String,
    /// Which volumes the policy applies to; absent means every volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<SelectorSpec>,
    /// When the policy runs: a cron expression (`0 * * * *`), 5 or 6 fields.
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
    /// How fast uploads may go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<BandwidthSpec>,
    /// Set by the Kubernetes controller on a policy it made from a
    /// TieringPolicy: the object it came from. Such a policy selects only
    /// claims of that namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes: Option<KubernetesOrigin>,
}

/// The TieringPolicy a policy was made from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubernetesOrigin {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its `metadata.generation` when the policy was written.
    #[serde(default)]
    pub generation: i64,
}

/// Which volumes a policy applies to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SelectorSpec {
    /// Globs over volume ids; a PVC's volume also matches as
    /// `<namespace>/<pvc>` (`line-3/*`: every PVC of namespace `line-3`).
    /// Empty means any volume.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<String>,
    /// Labels the volume must all carry, with these values; empty means any.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// A Kubernetes label selector over the labels of the volume's
    /// PersistentVolumeClaim; `{}` selects every claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_labels: Option<LabelSelectorSpec>,
    /// The StorageClasses of the claims it selects; empty means any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub storage_classes: Vec<String>,
}

/// A Kubernetes label selector (the shape of `metav1.LabelSelector`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelectorSpec {
    /// Labels the claim must carry with these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Requirements that must all hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelRequirementSpec>,
}

/// One requirement of a label selector.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelRequirementSpec {
    /// The label's key.
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: String,
    /// The values for `In` and `NotIn` (at least one); none for the others.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// The data lake a policy moves files to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LakeSpec {
    /// Any `object_store` URL: `s3://bucket/prefix`, `file:///srv/lake`, …
    pub url: String,
    /// `env` (the default: the usual environment variables) or the absolute
    /// path of a credentials file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<String>,
}

/// One rule: which files, and what to do with them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleSpec {
    /// The rule's name, unique in the policy; decisions and metrics carry it.
    pub name: String,
    /// Globs over paths relative to the volume root; empty means every file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    /// Globs of files never matched, even when included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// Only files last modified at least this long ago (`7d`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "scalar::optional"
    )]
    #[cfg_attr(feature = "schema", schemars(schema_with = "scalar::schema"))]
    pub modified_before: Option<String>,
    /// Only files last read at least this long ago (`30d`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "scalar::optional"
    )]
    #[cfg_attr(feature = "schema", schemars(schema_with = "scalar::schema"))]
    pub accessed_before: Option<String>,
    /// Only files at least this large (`10MiB`), inclusive.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "scalar::optional"
    )]
    #[cfg_attr(feature = "schema", schemars(schema_with = "scalar::schema"))]
    pub min_size: Option<String>,
    /// Only files at most this large (`1GiB`), inclusive.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "scalar::optional"
    )]
    #[cfg_attr(feature = "schema", schemars(schema_with = "scalar::schema"))]
    pub max_size: Option<String>,
    /// `move` or `copy`.
    pub action: String,
}

/// Used-space percentages that start and stop a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WatermarksSpec {
    /// Start moving when the volume is this full (`85%`).
    #[serde(deserialize_with = "scalar::required")]
    #[cfg_attr(feature = "schema", schemars(schema_with = "scalar::schema"))]
    pub high: String,
    /// Stop once the volume is down to this (`70%`); below `high`.
    #[serde(deserialize_with = "scalar::required")]
    #[cfg_attr(feature = "schema", schemars(schema_with = "scalar::schema"))]
    pub low: String,
}

/// Upload bandwidth: a default limit and windows with their own.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BandwidthSpec {
    /// `50MiB/s`, or `unlimited` (the default).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "scalar::optional"
    )]
    #[cfg_attr(feature = "schema", schemars(schema_with = "scalar::schema"))]
    pub limit: Option<String>,
    /// Windows with their own limit; the first window that covers a time wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timetable: Vec<WindowSpec>,
}

/// A weekly window of the bandwidth timetable, in the site's local time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WindowSpec {
    /// Days (`mon`, `sat`) or ranges (`mon-fri`); empty means every day.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub days: Vec<String>,
    /// Hours `08-18` (from 08:00 up to 18:00; `22-06` wraps past midnight);
    /// absent means the whole day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours: Option<String>,
    /// The limit in this window: `5MiB/s`, `0B/s` (paused) or `unlimited`.
    #[serde(deserialize_with = "scalar::required")]
    #[cfg_attr(feature = "schema", schemars(schema_with = "scalar::schema"))]
    pub limit: String,
}

/// Quantities may be written as bare numbers (`minSize: 4096`, `high: 85`);
/// they are kept as their text.
mod scalar {
    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Text(String),
        Unsigned(u64),
        Signed(i64),
        Float(f64),
    }

    impl Scalar {
        fn into_text(self) -> String {
            match self {
                Self::Text(s) => s,
                Self::Unsigned(n) => n.to_string(),
                Self::Signed(n) => n.to_string(),
                Self::Float(n) => n.to_string(),
            }
        }
    }

    pub(super) fn required<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        Scalar::deserialize(d).map(Scalar::into_text)
    }

    pub(super) fn optional<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Option::<Scalar>::deserialize(d).map(|s| s.map(Scalar::into_text))
    }

    /// In a CRD's schema: a string, or a bare number (Kubernetes'
    /// int-or-string).
    #[cfg(feature = "schema")]
    pub(super) fn schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "x-kubernetes-int-or-string": true })
    }
}
