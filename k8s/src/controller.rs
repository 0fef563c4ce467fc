//! The controller: watches the API server, keeps the catalog in step with
//! it, writes each TieringPolicy's status, and records events. It runs in
//! every catalog replica and acts only while its replica leads the Raft
//! group (leadership comes from Raft: there is no second election).
//!
//! The watches run all the time (on followers too, so a new leader starts
//! with warm caches) and retry with back-off while the API server does not
//! answer. The catalog is compared with them only once each has listed at
//! least once, so an empty cache never reads as "everything was deleted";
//! while the API server is away the caches keep the last objects, the
//! catalog keeps the last policies and claims, and status catches up when
//! it answers.

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolume, PersistentVolumeClaim};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use strata_tiering::catalog::{CatalogClient, CatalogError, Command, LogEntry, Timestamp};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use crate::condition_types::{LAKE_UNREACHABLE, READY, SPACE_PRESSURE};
use crate::reconcile::{CatalogView, Verdict, catalog_name, plan};
use crate::{TieringPolicy, TieringPolicyStatus, policy_facts, status};

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct ControllerOptions {
    /// The field manager of its status patches and the reporter of its events.
    pub field_manager: String,
    /// Who it is among the replicas (the pod's name), for events.
    pub instance: Option<String>,
    /// How often it compares and refreshes status with no change seen.
    pub resync: Duration,
    /// Least time between two passes (a burst of watch events is one pass).
    pub min_interval: Duration,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        Self {
            field_manager: "strata-catalog".to_owned(),
            instance: None,
            resync: Duration::from_secs(30),
            min_interval: Duration::from_millis(500),
        }
    }
}

/// What stopped one pass of the controller (the next pass tries again).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControllerError {
    /// The catalog did not answer.
    #[error("catalog: {0}")]
    Catalog(#[from] CatalogError),
    /// The API server refused or did not answer.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

/// The controller of one catalog replica.
pub struct Controller<C> {
    client: Client,
    catalog: C,
    leads: Arc<dyn Fn() -> bool + Send + Sync>,
    options: ControllerOptions,
}

/// The three caches, and whether each has listed once.
struct Caches {
    policies: Store<TieringPolicy>,
    claims: Store<PersistentVolumeClaim>,
    volumes: Store<PersistentVolume>,
    changed: Arc<Notify>,
}

/// The status last written for each TieringPolicy, and when.
type Written = HashMap<(String, String), (Instant, TieringPolicyStatus)>;

impl<C: CatalogClient + Clone> Controller<C> {
    /// A controller over `catalog` that acts while `leads()` says its
    /// replica leads the catalog group.
    pub fn new(
        client: Client,
        catalog: C,
        leads: impl Fn() -> bool + Send + Sync + 'static,
        options: ControllerOptions,
    ) -> Self {
        Self {
            client,
            catalog,
            leads: Arc::new(leads),
            options,
        }
    }

    /// Runs until the task is dropped.
    pub async fn run(self) {
        let api_up = Arc::new(AtomicBool::new(true));
        let changed = Arc::new(Notify::new());
        let caches = Caches {
            policies: watch(Api::all(self.client.clone()), &changed, &api_up),
            claims: watch(Api::all(self.client.clone()), &changed, &api_up),
            volumes: watch(Api::all(self.client.clone()), &changed, &api_up),
            changed,
        };
        let recorder = Recorder::new(
            self.client.clone(),
            Reporter {
                controller: self.options.field_manager.clone(),
                instance: self.options.instance.clone(),
            },
        );
        let mut written = Written::new();
        let mut led = false;
        loop {
            tokio::select! {
                () = caches.changed.notified() => {}
                () = tokio::time::sleep(self.options.resync) => {}
            }
            let leads = (self.leads)();
            if leads != led {
                info!(
                    leads,
                    "kubernetes controller: {}",
                    if leads {
                        "this replica leads the catalog: reconciling"
                    } else {
                        "this replica no longer leads: standing by"
                    }
                );
                led = leads;
                written.clear();
            }
            if !leads || !caches.ready() {
                continue;
            }
            if let Err(e) = self.pass(&caches, &recorder, &mut written).await {
                warn!("kubernetes controller: {e}");
            }
            tokio::time::sleep(self.options.min_interval).await;
        }
    }

    /// One comparison: catalog commands, then status and events.
    async fn pass(
        &self,
        caches: &Caches,
        recorder: &Recorder,
        written: &mut Written,
    ) -> Result<(), ControllerError> {
        let policies = owned(&caches.policies);
        let claims = owned(&caches.claims);
        let volumes = owned(&caches.volumes);
        let view = self.catalog.read(CatalogView::of).await?;
        let plan = plan(&policies, &volumes, &claims, &view);
        for command in plan.commands {
            let what = describe(&command);
            let entry = LogEntry {
                by: None,
                at: Timestamp::now(),
                command,
            };
            match self.catalog.propose(entry).await? {
                Ok(_) => info!("kubernetes controller: {what}"),
                Err(refused) => {
                    warn!("kubernetes controller: the catalog refused to {what}: {refused}")
                }
            }
        }
        written.retain(|key, _| plan.verdicts.contains_key(key));
        for tp in &policies {
            let key = (tp.namespace().unwrap_or_default(), tp.name_any());
            let Some(verdict) = plan.verdicts.get(&key) else {
                continue;
            };
            if let Err(e) = self
                .write_status(tp, verdict, &volumes, recorder, written)
                .await
            {
                warn!(policy = %format!("{}/{}", key.0, key.1), "kubernetes controller: status: {e}");
            }
        }
        Ok(())
    }

    /// Writes a TieringPolicy's status if it changed (or the resync
    /// period passed), retrying a conflict with the object read anew.
    async fn write_status(
        &self,
        tp: &TieringPolicy,
        verdict: &Verdict,
        volumes: &[PersistentVolume],
        recorder: &Recorder,
        written: &mut Written,
    ) -> Result<(), ControllerError> {
        let (namespace, name) = (tp.namespace().unwrap_or_default(), tp.name_any());
        let api: Api<TieringPolicy> = Api::namespaced(self.client.clone(), &namespace);
        let catalog_name = catalog_name(&namespace, &name);
        let mut current = tp.clone();
        for attempt in 1..=3 {
            let now = Timestamp::now();
            let of = catalog_name.clone();
            let facts = self
                .catalog
                .read(move |s| policy_facts(s, &of, now))
                .await?;
            // The volume SpacePressure names: its claim gets the event too.
            let pressed = facts
                .as_ref()
                .and_then(|f| f.pressure.first())
                .map(|r| r.volume.clone());
            let new = status(
                current.metadata.generation,
                &catalog_name,
                verdict,
                facts.as_ref(),
                current.status.as_ref(),
                now,
            );
            let key = (namespace.clone(), name.clone());
            let fresh = written.get(&key).is_some_and(|(at, last)| {
                at.elapsed() < self.options.resync && same_but_ages(last, &new)
            });
            if fresh || current.status.as_ref() == Some(&new) {
                return Ok(());
            }
            let body = serde_json::json!({
                "apiVersion": "strata.io/v1alpha1",
                "kind": "TieringPolicy",
                "metadata": {
                    "name": name,
                    "resourceVersion": current.metadata.resource_version,
                },
                "status": new,
            });
            let params = PatchParams::apply(&self.options.field_manager);
            match api.patch_status(&name, &params, &Patch::Apply(&body)).await {
                Ok(_) => {
                    let pressed = pressed.as_deref();
                    events(
                        recorder,
                        tp,
                        current.status.as_ref(),
                        &new,
                        volumes,
                        pressed,
                    )
                    .await;
                    written.insert(key, (Instant::now(), new));
                    return Ok(());
                }
                Err(kube::Error::Api(e)) if e.code == 409 && attempt < 3 => {
                    debug!(policy = %format!("{namespace}/{name}"), "status conflict; reading the object again");
                    current = api.get_status(&name).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

impl Caches {
    fn ready(&self) -> bool {
        is_ready(&self.policies) && is_ready(&self.claims) && is_ready(&self.volumes)
    }
}

fn is_ready<K>(store: &Store<K>) -> bool
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    futures::FutureExt::now_or_never(store.wait_until_ready()).is_some_and(|r| r.is_ok())
}

/// Starts a watch of `api` into a cache; every event wakes the controller.
fn watch<K>(api: Api<K>, changed: &Arc<Notify>, api_up: &Arc<AtomicBool>) -> Store<K>
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    let (store, writer) = reflector::store();
    let stream =
        reflector::reflector(writer, watcher(api, watcher::Config::default())).default_backoff();
    let (changed, api_up) = (changed.clone(), api_up.clone());
    let kind = K::kind(&K::DynamicType::default()).into_owned();
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(_) => {
                    if !api_up.swap(true, Ordering::Relaxed) {
                        info!("kubernetes controller: the API server answers again");
                    }
                    changed.notify_one();
                }
                Err(e) => {
                    if api_up.swap(false, Ordering::Relaxed) {
                        warn!(
                            "kubernetes controller: watching {kind}: {e}; the catalog keeps the last policies and claims, and runs go on"
                        );
                    } else {
                        debug!("kubernetes controller: watching {kind}: {e}");
                    }
                }
            }
        }
    });
    store
}

fn owned<K: Resource + Clone>(store: &Store<K>) -> Vec<K>
where
    K::DynamicType: Eq + Hash + Clone,
{
    store.state().iter().map(|k| (**k).clone()).collect()
}

/// Equal but for how long the oldest file has waited: not worth a write
/// before the resync period.
fn same_but_ages(a: &TieringPolicyStatus, b: &TieringPolicyStatus) -> bool {
    let strip = |s: &TieringPolicyStatus| TieringPolicyStatus {
        oldest_pending_seconds: s.oldest_pending_seconds.map(|_| 0),
        ..s.clone()
    };
    strip(a) == strip(b)
}

fn describe(command: &Command) -> String {
    match command {
        Command::PutPolicy { name, .. } => format!("write policy {name}"),
        Command::DeletePolicy { name } => format!("remove policy {name}"),
        Command::PutClaim(c) => {
            format!("record claim {}/{} of volume {}", c.namespace, c.name, c.pv)
        }
        Command::DeleteClaim { pv } => format!("forget the claim of volume {pv}"),
        other => format!("{other:?}"),
    }
}

/// Events for what changed between two statuses: on the TieringPolicy,
/// and for a run or space pressure (on volume `pressed`) on the claim of
/// the volume concerned.
async fn events(
    recorder: &Recorder,
    tp: &TieringPolicy,
    old: Option<&TieringPolicyStatus>,
    new: &TieringPolicyStatus,
    volumes: &[PersistentVolume],
    pressed: Option<&str>,
) {
    let on = |kind: &str, s: Option<&TieringPolicyStatus>| {
        s.and_then(|s| s.conditions.iter().find(|c| c.type_ == kind))
            .map(|c| (c.status == "True", c.reason.clone(), c.message.clone()))
    };
    let mut out: Vec<(Event, Option<ObjectReference>)> = Vec::new();
    let policy_event = |type_, reason: &str, note: String| Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    if let Some((ready, reason, message)) = on(READY, Some(new))
        && on(READY, old).map(|o| (o.0, o.1)) != Some((ready, reason.clone()))
    {
        let type_ = if ready || reason == "Pending" {
            EventType::Normal
        } else {
            EventType::Warning
        };
        out.push((policy_event(type_, &reason, message), None));
    }
    for kind in [LAKE_UNREACHABLE, SPACE_PRESSURE] {
        if let Some((true, reason, message)) = on(kind, Some(new))
            && !on(kind, old).is_some_and(|o| o.0)
        {
            let claim = if kind == SPACE_PRESSURE {
                pressed.and_then(|v| claim_ref(volumes, v))
            } else {
                None
            };
            out.push((
                policy_event(EventType::Warning, &reason, message.clone()),
                None,
            ));
            if claim.is_some() {
                out.push((policy_event(EventType::Warning, &reason, message), claim));
            }
        }
    }
    if let Some(run) = &new.last_run
        && old.and_then(|o| o.last_run.as_ref()) != Some(run)
        && run.files > 0
    {
        let note = format!(
            "a run on volume {} chose {} file(s), {} bytes, to move to the lake ({} failed)",
            run.volume, run.files, run.bytes, run.errors
        );
        let moved = |secondary| Event {
            type_: EventType::Normal,
            reason: "Moving".to_owned(),
            note: Some(note.clone()),
            action: "Tier".to_owned(),
            secondary,
        };
        out.push((moved(None), None));
        if let Some(claim) = claim_ref(volumes, &run.volume) {
            out.push((moved(Some(tp.object_ref(&()))), Some(claim)));
        }
    }
    let recalled_before = old.map_or(0, |o| o.recalled_files);
    if new.recalled_files > recalled_before {
        out.push((
            policy_event(
                EventType::Normal,
                "Recalled",
                format!(
                    "{} more file(s) it moved were brought back from the lake ({} recalled now)",
                    new.recalled_files - recalled_before,
                    new.recalled_files
                ),
            ),
            None,
        ));
    }
    for (event, regarding) in out {
        let regarding = regarding.unwrap_or_else(|| tp.object_ref(&()));
        if let Err(e) = recorder.publish(&event, &regarding).await {
            debug!("kubernetes controller: event {}: {e}", event.reason);
        }
    }
}

/// The claim bound to PersistentVolume `pv`, as an object reference.
fn claim_ref(volumes: &[PersistentVolume], pv: &str) -> Option<ObjectReference> {
    let r = volumes
        .iter()
        .find(|v| v.metadata.name.as_deref() == Some(pv))?
        .spec
        .as_ref()?
        .claim_ref
        .clone()?;
    Some(ObjectReference {
        api_version: Some("v1".to_owned()),
        kind: Some("PersistentVolumeClaim".to_owned()),
        ..r
    })
}
