//! The tiering agent of one node: keeps the mover's policies in step with
//! the catalog, starts runs when a policy's schedule comes round or a volume
//! passes its high watermark, drains the backlog in between, and answers the
//! service's requests ([`Engine`]): run now, recall, lake reachability.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use crate::catalog::{CatalogClient, CatalogError, Claim, RunSummary, Volume};
use crate::lake::{Lake, LakeConfig};
use crate::mover::{Mover, MoverError, RunGoal};
use crate::policy::{Credentials, Policy, parse_policy};
use crate::service::{
    Engine, EngineError, Progress, RecallOutcome, RecallProgress, RecallRequest, RunRequest,
};
use crate::trigger::{self, Trigger};

/// How the agent works.
#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// How often schedules and watermarks are checked and the backlog drained.
    pub tick: Duration,
    /// Options for every `s3://` lake (`endpoint`, `region`, `path_style`,
    /// `allow_http`, …: see [`LakeConfig::parse`]); a policy names only the
    /// lake's URL and where its credentials come from.
    pub s3_options: Vec<(String, String)>,
}

impl Default for AgentOptions {
    fn default() -> Self {
        Self {
            tick: Duration::from_secs(10),
            s3_options: Vec::new(),
        }
    }
}

/// Why a policy stored in the catalog could not be loaded.
#[derive(Debug, Clone, thiserror::Error)]
#[error("policy {policy}: {reason}")]
pub struct LoadError {
    /// The policy's name.
    pub policy: String,
    /// What is wrong.
    pub reason: String,
}

/// The agent: a [`Mover`] and the loop that drives it.
pub struct Agent<C> {
    mover: Mover<C>,
    options: AgentOptions,
    started: SystemTime,
    state: Mutex<Loaded>,
    /// One run at a time: a scheduled run and a `run now` never overlap.
    runs: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Loaded {
    /// Policy name → (spec text as stored, parsed policy).
    policies: BTreeMap<String, (String, Policy)>,
    /// When each (policy, volume) was last checked.
    checked: HashMap<(String, String), SystemTime>,
    errors: BTreeMap<String, LoadError>,
}

impl<C: CatalogClient> Agent<C> {
    /// An agent driving `mover`.
    pub fn new(mover: Mover<C>, options: AgentOptions) -> Self {
        Self {
            mover,
            options,
            started: SystemTime::now(),
            state: Mutex::new(Loaded::default()),
            runs: tokio::sync::Mutex::new(()),
        }
    }

    /// The mover.
    pub fn mover(&self) -> &Mover<C> {
        &self.mover
    }

    fn loaded(&self) -> std::sync::MutexGuard<'_, Loaded> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Loads the catalog's policies into the mover (new and changed ones,
    /// each with its lake), unloads removed ones, and answers the policies
    /// that could not be loaded (bad lake options, unreadable credentials):
    /// those wait, with their backlog, until they can.
    pub async fn sync_policies(&self) -> Result<Vec<LoadError>, MoverError> {
        let stored: Vec<(String, String)> = self
            .mover
            .catalog()
            .read(|s| {
                s.policies()
                    .map(|p| (p.name.clone(), p.spec.clone()))
                    .collect()
            })
            .await?;
        let mut loaded = self.loaded();
        let names: Vec<String> = loaded.policies.keys().cloned().collect();
        for name in names {
            if !stored.iter().any(|(n, _)| *n == name) {
                loaded.policies.remove(&name);
                self.mover.remove_policy(&name);
                tracing::info!(policy = %name, "agent: policy removed");
            }
        }
        loaded
            .errors
            .retain(|n, _| stored.iter().any(|(s, _)| s == n));
        for (name, spec) in stored {
            if loaded.policies.get(&name).is_some_and(|(s, _)| *s == spec) {
                continue;
            }
            match self.load(&name, &spec) {
                Ok((policy, lake)) => {
                    self.mover.add_policy(policy.clone(), lake);
                    loaded.errors.remove(&name);
                    loaded.policies.insert(name.clone(), (spec, policy));
                    tracing::info!(policy = %name, "agent: policy loaded");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "agent: policy not loaded");
                    loaded.policies.remove(&name);
                    self.mover.remove_policy(&name);
                    loaded.errors.insert(name, e);
                }
            }
        }
        Ok(loaded.errors.values().cloned().collect())
    }

    fn load(&self, name: &str, spec: &str) -> Result<(Policy, Lake), LoadError> {
        let err = |reason: String| LoadError {
            policy: name.to_owned(),
            reason,
        };
        let policy = parse_policy(spec).map_err(|e| err(e.to_string()))?;
        let url = policy.lake().url().as_str().to_owned();
        let mut options: Vec<(String, String)> = Vec::new();
        if policy.lake().url().scheme() == "s3" {
            options.extend(self.options.s3_options.iter().cloned());
            options.retain(|(k, _)| k != "credentials");
            options.push((
                "credentials".into(),
                match policy.lake().credentials() {
                    Credentials::Env => "env".into(),
                    Credentials::File(p) => format!("file:{}", p.display()),
                },
            ));
        }
        let config = LakeConfig::parse(&url, options).map_err(|e| err(format!("lake: {e}")))?;
        let lake = Lake::open(&config).map_err(|e| err(format!("lake: {e}")))?;
        Ok((policy, lake))
    }

    /// One pass of the loop at `now`: sync the policies, start the runs that
    /// are due, drain the backlog, refresh the backlog metrics.
    pub async fn tick(
        &self,
        now: SystemTime,
    ) -> Result<Vec<(String, String, Trigger)>, MoverError> {
        self.sync_policies().await?;
        let _one_at_a_time = self.runs.lock().await;
        let volumes = self.volumes().await?;
        let claims = self.claims().await?;
        let last = self.last_run_starts().await?;
        // One statvfs per volume and tick, however many policies select it.
        let used: HashMap<&str, f64> = volumes
            .iter()
            .filter_map(|v| {
                let pct = trigger::used_percent(std::path::Path::new(&v.path)).ok()?;
                Some((v.id.as_str(), pct))
            })
            .collect();
        let mut due = Vec::new();
        {
            let mut loaded = self.loaded();
            let started = self.started;
            let zone = &self.mover.options().site_zone;
            let Loaded {
                policies, checked, ..
            } = &mut *loaded;
            for (name, (_, policy)) in policies.iter() {
                for v in &volumes {
                    if !policy.selects_volume(&v.id, &v.labels, claims.get(&v.id)) {
                        continue;
                    }
                    let key = (name.clone(), v.id.clone());
                    let since = checked
                        .get(&key)
                        .or_else(|| last.get(&key))
                        .copied()
                        .unwrap_or(started);
                    let used = used.get(v.id.as_str()).copied();
                    if let Some(t) = trigger::due(policy, since, now, used, zone) {
                        due.push((name.clone(), v.clone(), t));
                    }
                    checked.insert(key, now);
                }
            }
        }
        let mut ran = Vec::new();
        for (policy, volume, why) in due {
            tracing::info!(policy, volume = %volume.id, trigger = why.as_str(), "agent: run");
            let goal = match why {
                Trigger::Watermark(_) => self.goal_for(&policy, &volume),
                Trigger::Schedule(_) | Trigger::Manual => RunGoal::Everything,
            };
            match self.mover.run_policy_for(&policy, &volume, goal).await {
                Ok(r) => tracing::info!(
                    policy, volume = %volume.id, candidates = r.candidates, intents = r.intents,
                    released = r.drain.released, "agent: run done"
                ),
                Err(e) => {
                    tracing::warn!(policy, volume = %volume.id, error = %e, "agent: run failed")
                }
            }
            ran.push((policy, volume.id, why));
        }
        if let Err(e) = self.mover.drain(now).await {
            tracing::warn!(error = %e, "agent: drain failed");
        }
        self.mover.refresh_metrics().await?;
        Ok(ran)
    }

    /// What a watermark run on `volume` must free: the bytes above the
    /// policy's low mark (everything the rules pick when unknown).
    fn goal_for(&self, policy: &str, volume: &Volume) -> RunGoal {
        let low = self
            .loaded()
            .policies
            .get(policy)
            .and_then(|(_, p)| p.watermarks().map(|w| w.low()));
        let Some(low) = low else {
            return RunGoal::Everything;
        };
        match trigger::bytes_above(std::path::Path::new(&volume.path), low) {
            Ok(bytes) => RunGoal::FreeBytes(bytes),
            Err(e) => {
                tracing::warn!(volume = %volume.id, error = %e, "cannot read the volume's usage; the run moves every file the rules pick");
                RunGoal::Everything
            }
        }
    }

    /// What Kubernetes says of the registered volumes' claims, by volume id.
    async fn claims(&self) -> Result<HashMap<String, Claim>, CatalogError> {
        self.mover
            .catalog()
            .read(|s| {
                s.volumes()
                    .filter_map(|v| s.claim_of(v).map(|c| (v.id.clone(), c.clone())))
                    .collect()
            })
            .await
    }

    /// The registered volumes this agent works on: its node's, within its
    /// bounds, checked on disk now. A volume out of bounds is refused
    /// (logged when it first is, shown by [`Engine::refused`], skipped by
    /// the mover's drains and recalls too) and never touched.
    async fn volumes(&self) -> Result<Vec<Volume>, CatalogError> {
        let scope = self.mover.options().scope.clone();
        let of_node = scope.clone();
        let registered: Vec<Volume> = self
            .mover
            .catalog()
            .read(move |s| {
                s.volumes()
                    .filter(|v| of_node.is_this_nodes(v))
                    .cloned()
                    .collect()
            })
            .await?;
        for (id, _, _) in scope.refused() {
            if !registered.iter().any(|v| v.id == id) {
                scope.clear_refusal(&id);
            }
        }
        let mut ok = Vec::with_capacity(registered.len());
        for v in registered {
            match scope.bounds().check_on_disk(&v.path) {
                Ok(()) => {
                    if scope.clear_refusal(&v.id) {
                        tracing::info!(volume = %v.id, path = %v.path, "agent: volume within bounds again");
                    }
                    ok.push(v);
                }
                Err(why) => {
                    if scope.refuse(&v, why.clone()) {
                        tracing::warn!(
                            volume = %v.id, reason = %why,
                            "agent: volume refused; nothing in it is scanned, uploaded, released or recalled"
                        );
                    }
                }
            }
        }
        Ok(ok)
    }

    /// Why the agent does not work on `volume`, if it does not (checked on
    /// disk now).
    async fn refusal(&self, volume: &str) -> Result<Option<String>, CatalogError> {
        self.volumes().await?;
        Ok(self
            .mover
            .options()
            .scope
            .refused()
            .into_iter()
            .find(|(id, _, _)| id == volume)
            .map(|(_, _, why)| format!("volume {volume}: {why}; this agent does not work on it")))
    }

    /// When the newest recorded run of each (policy, volume) started.
    async fn last_run_starts(&self) -> Result<HashMap<(String, String), SystemTime>, MoverError> {
        Ok(self
            .mover
            .catalog()
            .read(|s| {
                let mut m: HashMap<(String, String), SystemTime> = HashMap::new();
                for r in s.last_runs(crate::catalog::State::MAX_RUNS) {
                    let t = r.started_at.to_system_time();
                    let e = m.entry((r.policy.clone(), r.volume.clone())).or_insert(t);
                    if t > *e {
                        *e = t;
                    }
                }
                m
            })
            .await?)
    }

    /// Ticks every [`AgentOptions::tick`] until `shutdown` resolves.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut every = tokio::time::interval(self.options.tick);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = every.tick() => {
                    if let Err(e) = self.tick(SystemTime::now()).await {
                        tracing::warn!(error = %e, "agent: tick failed");
                    }
                }
            }
        }
    }
}

fn engine_error(e: MoverError) -> EngineError {
    match e {
        MoverError::UnknownPolicy(p) => EngineError::NotFound(format!("policy {p}: not loaded")),
        MoverError::UnknownVolume(v) => {
            EngineError::NotFound(format!("volume {v}: not registered"))
        }
        MoverError::InvalidGlob(reason) => EngineError::Invalid {
            field: "glob".into(),
            reason,
        },
        e @ MoverError::OtherNode { .. } => EngineError::Busy(e.to_string()),
        MoverError::Withdrawn(v) => EngineError::Busy(format!(
            "volume {v}: being unmounted; try again once it is staged"
        )),
        MoverError::Catalog(e) => EngineError::Catalog(e),
        MoverError::Rejected(r) => EngineError::Rejected(r),
        other => EngineError::Internal(other.to_string()),
    }
}

impl<C: CatalogClient> Engine for Agent<C> {
    async fn run_now(&self, request: RunRequest) -> Result<Vec<RunSummary>, EngineError> {
        self.sync_policies().await.map_err(engine_error)?;
        let _one_at_a_time = self.runs.lock().await;
        if let Some(v) = &request.volume
            && let Some(why) = self.refusal(v).await?
        {
            return Err(EngineError::Busy(why));
        }
        let volumes = self.volumes().await?;
        let claims = self.claims().await?;
        let policies: Vec<(String, Policy)> = {
            let loaded = self.loaded();
            if let Some(p) = &request.policy
                && let Some(e) = loaded.errors.get(p)
            {
                return Err(EngineError::Busy(e.to_string()));
            }
            loaded
                .policies
                .iter()
                .filter(|(n, _)| request.policy.as_ref().is_none_or(|p| p == *n))
                .map(|(n, (_, p))| (n.clone(), p.clone()))
                .collect()
        };
        let mut ids = Vec::new();
        for (name, policy) in &policies {
            for v in volumes
                .iter()
                .filter(|v| request.volume.as_ref().is_none_or(|id| *id == v.id))
                .filter(|v| policy.selects_volume(&v.id, &v.labels, claims.get(&v.id)))
            {
                let r = self.mover.run_policy(name, v).await.map_err(engine_error)?;
                ids.push(r.run_id);
            }
        }
        let runs = self
            .mover
            .catalog()
            .read(move |s| {
                s.last_runs(crate::catalog::State::MAX_RUNS)
                    .into_iter()
                    .filter(|r| ids.contains(&r.id))
                    .cloned()
                    .collect()
            })
            .await?;
        Ok(runs)
    }

    async fn recall(
        &self,
        request: RecallRequest,
        progress: Progress,
    ) -> Result<RecallOutcome, EngineError> {
        self.sync_policies().await.map_err(engine_error)?;
        if let Some(why) = self.refusal(&request.volume).await? {
            return Err(EngineError::Busy(why));
        }
        let report = self
            .mover
            .recall(&request.volume, &request.glob, |p| {
                progress.report(RecallProgress {
                    files_done: p.files_done,
                    files_total: p.files_total,
                    bytes_done: p.bytes_done,
                    bytes_total: p.bytes_total,
                    current: None,
                })
            })
            .await
            .map_err(engine_error)?;
        Ok(RecallOutcome {
            matched: report.matched,
            files: report.recalled,
            bytes: report.bytes,
            already_local: report.already_local,
            conflicts: report.conflicts,
            failed: report.failed,
            failures: report
                .errors
                .iter()
                .map(|e| {
                    let (path, error) = e.split_once(": ").unwrap_or(("", e.as_str()));
                    crate::service::RecallFailure {
                        path: path.to_owned(),
                        error: error.to_owned(),
                    }
                })
                .collect(),
        })
    }

    fn check_volume_path(&self, path: &str) -> Result<(), String> {
        self.mover
            .options()
            .scope
            .bounds()
            .check_on_disk(path)
            .map_err(|e| e.to_string())
    }

    fn refused(&self) -> BTreeMap<String, String> {
        self.mover
            .options()
            .scope
            .refused()
            .into_iter()
            .map(|(id, _, why)| (id, why.to_string()))
            .collect()
    }

    fn site_zone(&self) -> Option<&crate::site_zone::SiteZone> {
        Some(&self.mover.options().site_zone)
    }

    fn lake_up(&self) -> Option<bool> {
        let loaded = self.loaded();
        let states: Vec<bool> = loaded
            .policies
            .keys()
            .filter_map(|p| self.mover.lake_up(p))
            .collect();
        if states.is_empty() {
            None
        } else {
            Some(states.iter().all(|up| *up))
        }
    }
}
