//! Which volumes a policy applies to.
//!
//! A volume is selected by what its node says of it (its id and labels:
//! `selector.volumes`, `selector.labels`) and, for a CSI volume, by what
//! Kubernetes says of its claim (the catalog's [`Claim`]: `claimLabels`,
//! `storageClasses`, and a StorageClass's `strata.io/tiering-policy`).
//!
//! A policy made from a TieringPolicy (it has a `kubernetes` origin)
//! selects only claims of the origin's namespace: the volumes whose claim
//! matches its claim criteria, or whose StorageClass names it. With no
//! claim criteria, only the StorageClass route selects. A policy written
//! with `strata ctl` has no namespace bound: its claim criteria, if any,
//! narrow what its id and label criteria select, and a StorageClass that
//! names it adds the claim's volume.

use std::collections::BTreeMap;

use globset::GlobSet;

use crate::catalog::Claim;
use crate::mover::{LABEL_PVC_NAME, LABEL_PVC_NAMESPACE};

/// A validated volume selector.
#[derive(Debug, Clone)]
pub struct VolumeSelector {
    pub(crate) volumes: GlobSet,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) claim_labels: Option<LabelSelector>,
    pub(crate) storage_classes: Vec<String>,
    /// Set for a policy made from a TieringPolicy: only its namespace.
    pub(crate) namespace: Option<String>,
    /// The name a StorageClass's `strata.io/tiering-policy` must give to
    /// select through the class (the TieringPolicy's own name, or the
    /// policy's); `None` until the policy's name is known.
    pub(crate) class_policy: Option<String>,
}

impl Default for VolumeSelector {
    /// Selects every volume.
    fn default() -> Self {
        Self {
            volumes: GlobSet::empty(),
            labels: BTreeMap::new(),
            claim_labels: None,
            storage_classes: Vec::new(),
            namespace: None,
            class_policy: None,
        }
    }
}

/// A Kubernetes label selector: every `matchLabels` pair and every
/// expression must hold; an empty selector matches every claim.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    pub(crate) match_labels: BTreeMap<String, String>,
    pub(crate) expressions: Vec<Requirement>,
}

/// One `matchExpressions` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Requirement {
    pub(crate) key: String,
    pub(crate) op: Operator,
}

/// A requirement's operator, with its values where it takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Operator {
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
}

impl LabelSelector {
    /// Whether `labels` satisfy the selector.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.expressions.iter().all(|r| {
                let have = labels.get(&r.key);
                match &r.op {
                    Operator::In(values) => have.is_some_and(|h| values.contains(h)),
                    Operator::NotIn(values) => have.is_none_or(|h| !values.contains(h)),
                    Operator::Exists => have.is_some(),
                    Operator::DoesNotExist => have.is_none(),
                }
            })
    }
}

impl VolumeSelector {
    /// Whether the volume matches (see the module's documentation).
    pub fn selects(
        &self,
        volume_id: &str,
        labels: &BTreeMap<String, String>,
        claim: Option<&Claim>,
    ) -> bool {
        if let Some(ns) = &self.namespace
            && claim.is_none_or(|c| &c.namespace != ns)
        {
            return false;
        }
        let named = claim.is_some_and(|c| {
            c.class_policy.is_some() && c.class_policy.as_deref() == self.class_policy.as_deref()
        });
        if named {
            return true;
        }
        let by_claim = if self.has_claim_criteria() {
            claim.is_some_and(|c| self.claim_matches(c))
        } else {
            // A TieringPolicy without criteria selects through its class only.
            self.namespace.is_none()
        };
        by_claim && self.node_criteria(volume_id, labels)
    }

    fn has_claim_criteria(&self) -> bool {
        self.claim_labels.is_some() || !self.storage_classes.is_empty()
    }

    fn claim_matches(&self, c: &Claim) -> bool {
        self.claim_labels
            .as_ref()
            .is_none_or(|s| s.matches(&c.labels))
            && (self.storage_classes.is_empty()
                || c.storage_class
                    .as_ref()
                    .is_some_and(|sc| self.storage_classes.contains(sc)))
    }

    /// Its id, or for a PVC's volume `<namespace>/<pvc>`, matches one of
    /// the globs (or none are given), and it carries every selector label
    /// with the same value.
    fn node_criteria(&self, volume_id: &str, labels: &BTreeMap<String, String>) -> bool {
        let pvc = || {
            let ns = labels.get(LABEL_PVC_NAMESPACE)?;
            let name = labels.get(LABEL_PVC_NAME)?;
            Some(format!("{ns}/{name}"))
        };
        (self.volumes.is_empty()
            || self.volumes.is_match(volume_id)
            || pvc().is_some_and(|p| self.volumes.is_match(p)))
            && self
                .labels
                .iter()
                .all(|(k, v)| labels.get(k).is_some_and(|have| have == v))
    }
}
