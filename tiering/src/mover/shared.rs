//! What every task of a mover shares: the catalog (with timed proposals),
//! the options, the metrics and the loaded policies with their lakes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use crate::catalog::{
    Applied, BacklogSummary, CatalogClient, CatalogError, Command, LogEntry, Rejected,
};
use crate::lake::Lake;
use crate::metrics::TieringMetrics;
use crate::policy::{Action, Policy};

use super::MoverOptions;
use super::clock;
use super::confirm::Confirmer;
use super::error::MoverError;
use super::gate::VolumeGate;
use super::throttle::TokenBucket;

/// A loaded policy: its rules, its lake (paced by its bandwidth limit), and
/// whether that lake answered last time.
pub(crate) struct PolicyEntry {
    pub(crate) policy: Policy,
    pub(crate) lake: Lake,
    /// Batches the confirmation of its fresh uploads.
    pub(crate) confirmer: Arc<Confirmer>,
    up: AtomicBool,
}

impl PolicyEntry {
    pub(crate) fn name(&self) -> &str {
        self.policy.name()
    }

    /// The action of the rule named `rule`, if the policy still has it.
    pub(crate) fn action_of(&self, rule: &str) -> Option<Action> {
        self.policy
            .rules()
            .iter()
            .find(|r| r.name() == rule)
            .map(|r| r.action())
    }

    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub(crate) fn set_up(&self, up: bool, metrics: &TieringMetrics) {
        let was = self.up.swap(up, Ordering::Relaxed);
        if was != up {
            if up {
                tracing::info!(policy = self.name(), "lake answers again");
            } else {
                tracing::warn!(policy = self.name(), "lake unreachable; backlog waits");
            }
        }
        metrics.set_lake_up(self.name(), up);
    }
}

pub(crate) struct Inner<C> {
    pub(crate) catalog: C,
    pub(crate) options: MoverOptions,
    pub(crate) metrics: TieringMetrics,
    /// Which volumes tasks may touch.
    pub(crate) gate: Arc<VolumeGate>,
    policies: RwLock<BTreeMap<String, Arc<PolicyEntry>>>,
}

impl<C: CatalogClient> Inner<C> {
    pub(crate) fn new(catalog: C, options: MoverOptions) -> Self {
        Self {
            catalog,
            options,
            metrics: TieringMetrics::new(),
            gate: Arc::default(),
            policies: RwLock::new(BTreeMap::new()),
        }
    }

    pub(crate) fn add_policy(&self, policy: Policy, lake: Lake) {
        let bucket = Arc::new(TokenBucket::new(
            policy.bandwidth().clone(),
            self.options.site_zone.clone(),
        ));
        let lake = lake.with_throttle(bucket);
        let entry = PolicyEntry {
            confirmer: Arc::new(Confirmer::new(lake.clone(), self.options.confirm_window)),
            lake,
            policy,
            up: AtomicBool::new(true),
        };
        self.metrics.set_lake_up(entry.name(), true);
        let name = entry.name().to_owned();
        self.write().insert(name, Arc::new(entry));
    }

    pub(crate) fn remove_policy(&self, name: &str) {
        self.write().remove(name);
    }

    pub(crate) fn entry(&self, name: &str) -> Option<Arc<PolicyEntry>> {
        self.policies
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// A loaded policy whose lake is `location` (its own policy `prefer`
    /// first): whose lake configuration, credentials included, reads an
    /// object recorded in that lake.
    pub(crate) fn entry_for_lake(&self, location: &str, prefer: &str) -> Option<Arc<PolicyEntry>> {
        let policies = self.policies.read().unwrap_or_else(|e| e.into_inner());
        let here = |e: &&Arc<PolicyEntry>| e.lake.location() == location;
        policies
            .get(prefer)
            .filter(here)
            .or_else(|| policies.values().find(here))
            .cloned()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<PolicyEntry>>> {
        self.policies.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Proposes `command` stamped now, timing the commit.
    pub(crate) async fn propose(
        &self,
        command: Command,
    ) -> Result<Result<Applied, Rejected>, CatalogError> {
        let started = Instant::now();
        let entry = LogEntry {
            by: None,
            at: clock::now(),
            command,
        };
        let answer = self.catalog.propose(entry).await;
        self.metrics.proposed(started.elapsed());
        answer
    }

    /// Reads the backlog summary and sets the backlog gauges.
    pub(crate) async fn refresh_backlog(&self) -> Result<BacklogSummary, MoverError> {
        let now = clock::now();
        let scope = self.options.scope.clone();
        let summary = self
            .catalog
            .read(move |s| s.scoped_backlog(&scope, now))
            .await?;
        self.metrics.set_backlog(&summary);
        Ok(summary)
    }
}
