//! From what the API server holds to what the catalog should hold: pure
//! functions over plain objects, no I/O and no clock.
//!
//! - A TieringPolicy `p` in namespace `ns` becomes the catalog policy
//!   `<ns>.<p>`, its selection by claim, with a `kubernetes` origin that
//!   keeps it in `ns` whatever its selector says. An invalid one leaves the
//!   catalog's last valid version in force (status says why, by path); a
//!   suspended one is removed from the catalog; one whose catalog name an
//!   operator's policy (`strata ctl policy apply`) already has is refused.
//! - A PersistentVolume of driver `strata.io` bound to a claim that exists
//!   becomes a [`Claim`] record under its name: the claim's namespace, name,
//!   labels and StorageClass, and the StorageClass's
//!   `strata.io/tiering-policy` as the PV's volume attributes keep it.
//! - [`plan`] compares both with the catalog and answers the commands that
//!   make the catalog match, touching only what the controller owns:
//!   policies with a `kubernetes` origin and claims.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::ResourceExt;
use strata_tiering::catalog::{Claim, Command, State};
use strata_tiering::policy::{KubernetesOrigin, Policy, PolicySpec, SelectorSpec, parse_policy};

use crate::schema::MAX_NAME_LEN;
use crate::{TieringPolicy, TieringPolicySpec};

/// The CSI driver whose volumes the controller follows.
pub const DRIVER: &str = "strata.io";
/// The StorageClass parameter naming the TieringPolicy of a class's claims;
/// the CSI driver keeps it in the PV's volume attributes.
pub const CLASS_POLICY_PARAM: &str = "strata.io/tiering-policy";

/// A TieringPolicy's namespace and name.
pub type ObjectKey = (String, String);

/// The catalog name of TieringPolicy `name` in `namespace`.
pub fn catalog_name(namespace: &str, name: &str) -> String {
    format!("{namespace}.{name}")
}

/// What becomes of one TieringPolicy.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Valid: this policy is (or is being put) in the catalog.
    Valid(Box<PolicySpec>),
    /// Invalid, every error by its path in the object (`spec.rules[0].action: …`);
    /// the catalog keeps the version it had, if any.
    Invalid(Vec<String>),
    /// `spec.suspend`: not in the catalog.
    Suspended,
    /// An operator's policy of the same catalog name exists; nothing written.
    NameTaken(String),
}

/// The catalog's policy for a TieringPolicy, checked by the validator
/// `strata ctl` uses.
pub fn policy_spec(tp: &TieringPolicy) -> Result<PolicySpec, Vec<String>> {
    let namespace = tp.namespace().unwrap_or_default();
    let name = tp.name_any();
    if name.len() > MAX_NAME_LEN {
        return Err(vec![format!(
            "metadata.name: longer than {MAX_NAME_LEN} characters (the catalog name is <namespace>.<name>)"
        )]);
    }
    let TieringPolicySpec {
        selector,
        storage_class_names,
        schedule,
        lake,
        key_template,
        rules,
        watermarks,
        bandwidth,
        suspend: _,
    } = tp.spec.clone();
    let selector = (selector.is_some() || !storage_class_names.is_empty()).then(|| SelectorSpec {
        claim_labels: selector,
        storage_classes: storage_class_names,
        ..SelectorSpec::default()
    });
    let spec = PolicySpec {
        name: catalog_name(&namespace, &name),
        selector,
        schedule,
        lake,
        key_template,
        rules,
        watermarks,
        bandwidth,
        kubernetes: Some(KubernetesOrigin {
            namespace,
            name,
            generation: tp.metadata.generation.unwrap_or_default(),
        }),
    };
    match Policy::try_from(&spec) {
        Ok(_) => Ok(spec),
        Err(errors) => Err(errors
            .errors()
            .iter()
            .map(|e| format!("{}: {}", object_path(e.path()), e.reason()))
            .collect()),
    }
}

/// A path in the catalog's policy as the path in the TieringPolicy.
fn object_path(path: &str) -> String {
    let renamed = [
        ("selector.claimLabels", "selector"),
        ("selector.storageClasses", "storageClassNames"),
    ]
    .iter()
    .find_map(|(from, to)| path.strip_prefix(from).map(|rest| format!("{to}{rest}")));
    let path = renamed.unwrap_or_else(|| path.to_owned());
    if path.is_empty() {
        "spec".to_owned()
    } else {
        format!("spec.{path}")
    }
}

/// The claim record of a PersistentVolume, if it is one of strata's, bound
/// to a claim that exists.
pub fn claim_of(
    pv: &PersistentVolume,
    claims: &BTreeMap<ObjectKey, &PersistentVolumeClaim>,
) -> Option<Claim> {
    let spec = pv.spec.as_ref()?;
    let csi = spec.csi.as_ref().filter(|c| c.driver == DRIVER)?;
    let claim_ref = spec.claim_ref.as_ref()?;
    let key = (claim_ref.namespace.clone()?, claim_ref.name.clone()?);
    let pvc = claims.get(&key)?;
    // A claim of that name made anew after the PV's was deleted is not this PV's.
    if claim_ref.uid.is_some() && claim_ref.uid != pvc.metadata.uid {
        return None;
    }
    let storage_class = pvc
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.clone())
        .or_else(|| spec.storage_class_name.clone())
        .filter(|s| !s.is_empty());
    Some(Claim {
        pv: pv.name_any(),
        namespace: key.0,
        name: key.1,
        labels: pvc.labels().clone(),
        storage_class,
        class_policy: csi
            .volume_attributes
            .as_ref()
            .and_then(|a| a.get(CLASS_POLICY_PARAM).cloned()),
    })
}

/// What the catalog holds of what the controller owns.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CatalogView {
    /// Policies by catalog name: their spec, if it parses.
    pub policies: BTreeMap<String, Option<PolicySpec>>,
    /// Claims by PV name.
    pub claims: BTreeMap<String, Claim>,
}

impl CatalogView {
    /// Reads it from the catalog's state.
    pub fn of(state: &State) -> Self {
        Self {
            policies: state
                .policies()
                .map(|p| {
                    (
                        p.name.clone(),
                        parse_policy(&p.spec).ok().map(|p| p.spec().clone()),
                    )
                })
                .collect(),
            claims: state.claims().map(|c| (c.pv.clone(), c.clone())).collect(),
        }
    }
}

/// The commands that bring the catalog in step, and each policy's verdict.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// To propose, in order.
    pub commands: Vec<Command>,
    /// By TieringPolicy.
    pub verdicts: BTreeMap<ObjectKey, Verdict>,
}

/// Compares what the API server holds with what the catalog holds. Call it
/// only with complete lists (every watch has listed at least once): an
/// empty list here means "none exist", and their catalog records go.
pub fn plan(
    policies: &[TieringPolicy],
    volumes: &[PersistentVolume],
    claims: &[PersistentVolumeClaim],
    catalog: &CatalogView,
) -> Plan {
    let mut plan = Plan::default();
    let mut wanted = BTreeSet::new();
    for tp in policies {
        let key = (tp.namespace().unwrap_or_default(), tp.name_any());
        let name = catalog_name(&key.0, &key.1);
        let existing = catalog.policies.get(&name);
        let operators = existing.is_some_and(|s| s.as_ref().is_none_or(|s| s.kubernetes.is_none()));
        let verdict = if operators {
            Verdict::NameTaken(name.clone())
        } else if tp.spec.suspend {
            Verdict::Suspended
        } else {
            match policy_spec(tp) {
                Ok(spec) => {
                    wanted.insert(name.clone());
                    if existing.and_then(Option::as_ref) != Some(&spec) {
                        plan.commands.push(Command::PutPolicy {
                            name: name.clone(),
                            spec: serde_json::to_string(&spec).expect("a policy spec serialises"),
                        });
                    }
                    Verdict::Valid(Box::new(spec))
                }
                Err(errors) => {
                    // The catalog's last valid version stays in force.
                    wanted.insert(name.clone());
                    Verdict::Invalid(errors)
                }
            }
        };
        plan.verdicts.insert(key, verdict);
    }
    for (name, spec) in &catalog.policies {
        let ours = spec.as_ref().is_some_and(|s| s.kubernetes.is_some());
        if ours && !wanted.contains(name) {
            plan.commands
                .push(Command::DeletePolicy { name: name.clone() });
        }
    }

    let by_key: BTreeMap<ObjectKey, &PersistentVolumeClaim> = claims
        .iter()
        .map(|c| ((c.namespace().unwrap_or_default(), c.name_any()), c))
        .collect();
    let desired: BTreeMap<String, Claim> = volumes
        .iter()
        .filter_map(|pv| claim_of(pv, &by_key))
        .map(|c| (c.pv.clone(), c))
        .collect();
    for (pv, c) in &desired {
        if catalog.claims.get(pv) != Some(c) {
            plan.commands.push(Command::PutClaim(c.clone()));
        }
    }
    for pv in catalog.claims.keys() {
        if !desired.contains_key(pv) {
            plan.commands.push(Command::DeleteClaim { pv: pv.clone() });
        }
    }
    plan
}
