//! Tiering policies: which files on which volumes are cold, where they go,
//! when, and how fast. Pure: no I/O, no clock; callers pass the time in.
//!
//! A policy is written in YAML (later, as a TieringPolicy CRD's spec):
//!
//! ```yaml
//! name: cold-images
//! selector: {volumes: ["line-3/*"], labels: {app: inspection}}
//! schedule: "0 * * * *"
//! lake: {url: "s3://lake/site-a", credentials: env}
//! keyTemplate: "{site}/{namespace}/{pvc}/{path}"
//! rules:
//!   - name: images-older-than-7d
//!     include: ["**/*.jpg", "**/*.png"]
//!     exclude: ["tmp/**"]
//!     modifiedBefore: 7d
//!     action: move
//! watermarks: {high: 85%, low: 70%}
//! bandwidth:
//!   limit: 50MiB/s
//!   timetable:
//!     - {days: [mon-fri], hours: "08-18", limit: 5MiB/s}
//! ```
//!
//! [`parse_policy`] checks all of it and reports every error by its path
//! (`rules[0].modifiedBefore: expected a duration like 7d …`). [`PolicySpec`]
//! is the serde form, as written; [`Policy`] is the checked form that
//! evaluates files.
//!
//! Semantics worth knowing:
//! - Rules are tried in order; the first match wins. An empty `include`
//!   matches every file; `exclude` beats `include`. A rule must have at least
//!   one condition, so that no typo moves a whole volume.
//! - Globs match paths relative to the volume root; `*` stays within a
//!   segment, `**` crosses segments (`**/*.jpg` matches `c.jpg`).
//! - `modifiedBefore: 7d` matches files whose age is at least 7 days;
//!   `minSize` and `maxSize` are both inclusive.
//! - Watermarks: a run starts at `used >= high` and stops at `used <= low`.

mod bandwidth;
mod decode;
mod error;
mod key_template;
mod lake;
mod parse;
mod rules;
mod schedule;
mod selector;
mod spec;
mod units;
mod watermarks;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::SystemTime;

use crate::catalog::Claim;

pub use bandwidth::{Bandwidth, Weekday, Window};
pub use error::{PolicyError, PolicyErrors};
pub use key_template::{DEFAULT_KEY_TEMPLATE, KeyTemplate, KeyVars};
pub use lake::{Credentials, Lake};
pub use rules::{Action, Decision, FileFacts, Rule};
pub use schedule::Schedule;
pub use selector::{LabelSelector, VolumeSelector};
pub use spec::{
    BandwidthSpec, KubernetesOrigin, LabelRequirementSpec, LabelSelectorSpec, LakeSpec, PolicySpec,
    RuleSpec, SelectorSpec, WatermarksSpec, WindowSpec,
};
pub use watermarks::Watermarks;

/// Parses and checks a policy written in YAML; every error is reported.
pub fn parse_policy(yaml: &str) -> Result<Policy, PolicyErrors> {
    parse::parse_yaml(yaml)
}

/// A checked policy, ready to evaluate files.
#[derive(Debug, Clone)]
pub struct Policy {
    spec: PolicySpec,
    name: String,
    selector: VolumeSelector,
    schedule: Option<Schedule>,
    lake: Lake,
    key_template: KeyTemplate,
    rules: Vec<Rule>,
    watermarks: Option<Watermarks>,
    bandwidth: Bandwidth,
}

impl TryFrom<&PolicySpec> for Policy {
    type Error = PolicyErrors;

    /// Checks a policy already in its serde form (a CRD's spec, a stored copy).
    fn try_from(spec: &PolicySpec) -> Result<Self, Self::Error> {
        parse::from_spec(spec)
    }
}

impl Policy {
    /// The policy as written, to store or show.
    pub fn spec(&self) -> &PolicySpec {
        &self.spec
    }

    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Which volumes it applies to.
    pub fn selector(&self) -> &VolumeSelector {
        &self.selector
    }

    /// When it runs on a schedule, if it does.
    pub fn schedule(&self) -> Option<&Schedule> {
        self.schedule.as_ref()
    }

    /// Where files go.
    pub fn lake(&self) -> &Lake {
        &self.lake
    }

    /// How object keys are made ([`DEFAULT_KEY_TEMPLATE`] unless given).
    pub fn key_template(&self) -> &KeyTemplate {
        &self.key_template
    }

    /// The rules, in the order they are tried.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The free-space triggers, if any.
    pub fn watermarks(&self) -> Option<&Watermarks> {
        self.watermarks.as_ref()
    }

    /// The upload bandwidth.
    pub fn bandwidth(&self) -> &Bandwidth {
        &self.bandwidth
    }

    /// What to do with `file` at `now`: the first rule that matches, if any.
    pub fn evaluate(&self, file: &FileFacts<'_>, now: SystemTime) -> Option<Decision<'_>> {
        self.rules
            .iter()
            .enumerate()
            .find(|(_, rule)| rule.matches(file, now))
            .map(|(rule_index, rule)| Decision {
                rule_index,
                rule: rule.name(),
                action: rule.action(),
            })
    }

    /// Whether the policy applies to this volume, whose claim (for a CSI
    /// volume Kubernetes knows) is `claim`.
    pub fn selects_volume(
        &self,
        volume_id: &str,
        labels: &BTreeMap<String, String>,
        claim: Option<&Claim>,
    ) -> bool {
        self.selector.selects(volume_id, labels, claim)
    }

    /// The TieringPolicy it was made from, if the Kubernetes controller made it.
    pub fn kubernetes(&self) -> Option<&KubernetesOrigin> {
        self.spec.kubernetes.as_ref()
    }

    /// Whether a volume this full (0–100) should start a run; never without
    /// watermarks.
    pub fn should_start(&self, used_pct: f64) -> bool {
        self.watermarks.is_some_and(|w| w.should_start(used_pct))
    }

    /// Whether a watermark-triggered run should stop at this fullness;
    /// always without watermarks.
    pub fn should_stop(&self, used_pct: f64) -> bool {
        self.watermarks.is_none_or(|w| w.should_stop(used_pct))
    }

    /// The upload limit in bytes per second at `hour` of `day` (site-local
    /// time); `None` is unlimited, `Some(0)` paused.
    pub fn bandwidth_at(&self, day: Weekday, hour: u8) -> Option<u64> {
        self.bandwidth.limit_at(day, hour)
    }
}
