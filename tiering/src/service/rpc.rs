//! The RPC handlers: check the request, ask the catalog or the engine,
//! answer in protobuf.

use std::collections::BTreeMap;

use strata_proto::strata::v1 as pb;
use strata_proto::strata::v1::tiering_server::Tiering;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::info;

use super::convert::{self, now};
use super::engine::{Engine, Progress, RecallProgress, RecallRequest, RunRequest};
use super::validate;
use super::{TieringService, error};
use crate::catalog::{
    Applied, BacklogSummary, CatalogClient, Command, FileFilter, LogEntry, NODE_LABEL, State,
    Volume,
};
use crate::policy::parse_policy;

/// How many runs `Status` shows.
const STATUS_RUNS: usize = 10;

type Reply<T> = Result<Response<T>, Status>;

impl<C: CatalogClient, E: Engine> TieringService<C, E> {
    async fn read<T, F>(&self, read: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(&State) -> T + Send + 'static,
    {
        self.catalog.read(read).await.map_err(error::catalog)
    }

    /// Proposes `command` stamped with the system clock.
    async fn propose(&self, command: Command) -> Result<Applied, Status> {
        let entry = LogEntry {
            by: None,
            at: now(),
            command,
        };
        self.catalog
            .propose(entry)
            .await
            .map_err(error::catalog)?
            .map_err(error::rejected)
    }
}

/// Each volume's share of the backlog, in one pass over the backlog.
fn backlog_by_volume(
    state: &State,
    now: crate::catalog::Timestamp,
) -> BTreeMap<String, BacklogSummary> {
    let mut by: BTreeMap<String, BacklogSummary> = BTreeMap::new();
    for r in state.backlog_files() {
        let s = by.entry(r.key.volume.clone()).or_default();
        s.files += 1;
        s.bytes += r.size;
        // Oldest first: the first seen is the oldest.
        s.oldest_age.get_or_insert(r.intent_at.age_at(now));
    }
    by
}

fn volumes(state: &State, now: crate::catalog::Timestamp) -> Vec<pb::Volume> {
    let backlog = backlog_by_volume(state, now);
    state
        .volumes()
        .map(|v| {
            let b = backlog.get(&v.id).copied().unwrap_or_default();
            convert::volume(v, b)
        })
        .collect()
}

impl<C, E: Engine> TieringService<C, E> {
    /// Says of each volume the engine refuses why.
    fn note_refused(&self, volumes: &mut [pb::Volume]) {
        let refused = self.engine.refused();
        for v in volumes {
            if let Some(why) = refused.get(&v.id) {
                v.refused = why.clone();
            }
        }
    }
}

fn change(existed: bool, applied: Applied) -> pb::Change {
    match (existed, applied) {
        (_, Applied::Unchanged) => pb::Change::Unchanged,
        (false, Applied::Changed) => pb::Change::Created,
        (true, Applied::Changed) => pb::Change::Updated,
    }
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

#[tonic::async_trait]
impl<C: CatalogClient, E: Engine> Tiering for TieringService<C, E> {
    async fn status(&self, _: Request<pb::StatusRequest>) -> Reply<pb::StatusResponse> {
        let at = now();
        let (mut reply, policies, applied) = self
            .read(move |s| {
                let b = s.backlog(at);
                let reply = pb::StatusResponse {
                    volumes: volumes(s, at),
                    backlog: Some(convert::backlog(b)),
                    last_runs: s
                        .last_runs(STATUS_RUNS)
                        .into_iter()
                        .map(convert::run)
                        .collect(),
                    counts: s
                        .counts_by_state()
                        .into_iter()
                        .map(|(state, files, bytes)| pb::StateCount {
                            state: convert::file_state(state).into(),
                            files,
                            bytes,
                        })
                        .collect(),
                    now: Some(convert::timestamp(at)),
                    ..Default::default()
                };
                // Parsed outside the read: a read should hold the catalog briefly.
                let policies: Vec<_> = s.policies().cloned().collect();
                (reply, policies, s.last_applied())
            })
            .await?;
        self.note_refused(&mut reply.volumes);
        reply.policies = policies.iter().map(convert::policy).collect();
        reply.lake = match self.engine.lake_up() {
            None => pb::LakeReachability::Unknown,
            Some(true) => pb::LakeReachability::Up,
            Some(false) => pb::LakeReachability::Down,
        }
        .into();
        reply.site_timezone = self.engine.site_zone().map(|z| pb::SiteTimeZone {
            name: z.name().to_owned(),
            source: z.source().to_string(),
        });
        let info = (self.info)();
        reply.catalog = Some(pb::CatalogInfo {
            role: info.role,
            term: info.term,
            leader: info.leader,
            applied_index: info.applied_index.or(applied),
        });
        Ok(Response::new(reply))
    }

    async fn apply_policy(
        &self,
        request: Request<pb::ApplyPolicyRequest>,
    ) -> Reply<pb::ApplyPolicyResponse> {
        let yaml = request.into_inner().yaml;
        let policy = parse_policy(&yaml).map_err(|e| error::policy(&e))?;
        let name = policy.name().to_owned();
        let n = name.clone();
        let existed = self.read(move |s| s.policy(&n).is_some()).await?;
        let applied = self
            .propose(Command::PutPolicy {
                name: name.clone(),
                spec: yaml,
            })
            .await?;
        let change = change(existed, applied);
        info!(policy = %name, change = change.as_str_name(), "policy applied");
        Ok(Response::new(pb::ApplyPolicyResponse {
            name,
            change: change.into(),
        }))
    }

    async fn list_policies(
        &self,
        _: Request<pb::ListPoliciesRequest>,
    ) -> Reply<pb::ListPoliciesResponse> {
        let policies = self
            .read(|s| s.policies().cloned().collect::<Vec<_>>())
            .await?;
        Ok(Response::new(pb::ListPoliciesResponse {
            policies: policies.iter().map(convert::policy).collect(),
        }))
    }

    async fn delete_policy(
        &self,
        request: Request<pb::DeletePolicyRequest>,
    ) -> Reply<pb::DeletePolicyResponse> {
        let name = request.into_inner().name;
        validate::required("name", &name)?;
        let applied = self
            .propose(Command::DeletePolicy { name: name.clone() })
            .await?;
        if applied == Applied::Unchanged {
            return Err(Status::not_found(format!("policy {name}: not found")));
        }
        info!(policy = %name, "policy deleted");
        Ok(Response::new(pb::DeletePolicyResponse {}))
    }

    async fn add_volume(
        &self,
        request: Request<pb::AddVolumeRequest>,
    ) -> Reply<pb::AddVolumeResponse> {
        let req = request.into_inner();
        validate::volume_id("id", &req.id)?;
        validate::volume_path(&req.path)?;
        let mut labels: BTreeMap<String, String> = req.labels.into_iter().collect();
        validate::labels(&labels)?;
        if let Some(node) = &self.node {
            match labels.get(NODE_LABEL) {
                Some(other) if **other != **node => {
                    return Err(error::invalid(
                        "labels",
                        format!(
                            "{NODE_LABEL}={other}: this agent adds volumes of its own node \
                             ({node}) only"
                        ),
                    ));
                }
                _ => {
                    labels.insert(NODE_LABEL.to_owned(), node.to_string());
                }
            }
        }
        let path = req.path.trim_end_matches('/');
        let path = if path.is_empty() { "/" } else { path }.to_owned();
        match tokio::fs::metadata(&path).await {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(error::invalid("path", format!("{path}: not a directory"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(error::invalid("path", format!("{path}: no such directory")));
            }
            Err(e) => return Err(error::invalid("path", format!("{path}: {e}"))),
        }
        // Refused here, before it is registered, as the agent would refuse
        // to work on it (its volume roots, the catalog's own data).
        self.engine
            .check_volume_path(&path)
            .map_err(|why| error::invalid("path", why))?;
        let id = req.id;
        let i = id.clone();
        let existed = self.read(move |s| s.volume(&i).is_some()).await?;
        let applied = self
            .propose(Command::RegisterVolume(Volume {
                id: id.clone(),
                path: path.clone(),
                labels,
            }))
            .await?;
        let change = change(existed, applied);
        info!(volume = %id, %path, change = change.as_str_name(), "volume added");
        Ok(Response::new(pb::AddVolumeResponse {
            change: change.into(),
        }))
    }

    async fn list_volumes(
        &self,
        _: Request<pb::ListVolumesRequest>,
    ) -> Reply<pb::ListVolumesResponse> {
        let at = now();
        let mut volumes = self.read(move |s| volumes(s, at)).await?;
        self.note_refused(&mut volumes);
        Ok(Response::new(pb::ListVolumesResponse { volumes }))
    }

    async fn remove_volume(
        &self,
        request: Request<pb::RemoveVolumeRequest>,
    ) -> Reply<pb::RemoveVolumeResponse> {
        let id = request.into_inner().id;
        validate::required("id", &id)?;
        let applied = self
            .propose(Command::RemoveVolume { id: id.clone() })
            .await?;
        if applied == Applied::Unchanged {
            return Err(Status::not_found(format!("volume {id}: not registered")));
        }
        info!(volume = %id, "volume removed");
        Ok(Response::new(pb::RemoveVolumeResponse {}))
    }

    async fn list_files(
        &self,
        request: Request<pb::ListFilesRequest>,
    ) -> Reply<pb::ListFilesResponse> {
        let req = request.into_inner();
        let filter = FileFilter {
            state: convert::state_filter(req.state)?,
            volume: non_empty(req.volume),
            path_prefix: non_empty(req.path_prefix),
        };
        let after = validate::parse_page_token(&req.page_token)?;
        let limit = validate::page_size(req.limit);
        let reply = self
            .read(move |s| {
                let page = s.files(&filter, after.as_ref(), limit);
                pb::ListFilesResponse {
                    files: page.items.into_iter().map(convert::file).collect(),
                    next_page_token: page
                        .next
                        .as_ref()
                        .map(validate::page_token)
                        .unwrap_or_default(),
                }
            })
            .await?;
        Ok(Response::new(reply))
    }

    async fn run_now(&self, request: Request<pb::RunNowRequest>) -> Reply<pb::RunNowResponse> {
        let req = request.into_inner();
        let run = RunRequest {
            policy: non_empty(req.policy),
            volume: non_empty(req.volume),
        };
        let (p, v) = (run.policy.clone(), run.volume.clone());
        let (policy_known, volume_known) = self
            .read(move |s| {
                (
                    p.is_none_or(|p| s.policy(&p).is_some()),
                    v.is_none_or(|v| s.volume(&v).is_some()),
                )
            })
            .await?;
        if let (false, Some(p)) = (policy_known, &run.policy) {
            return Err(Status::not_found(format!("policy {p}: not found")));
        }
        if let (false, Some(v)) = (volume_known, &run.volume) {
            return Err(Status::not_found(format!("volume {v}: not registered")));
        }
        info!(policy = ?run.policy, volume = ?run.volume, "run now");
        let runs = self.engine.run_now(run).await.map_err(error::engine)?;
        Ok(Response::new(pb::RunNowResponse {
            runs: runs.iter().map(convert::run).collect(),
        }))
    }

    type RecallStream = ReceiverStream<Result<pb::RecallEvent, Status>>;

    async fn recall(&self, request: Request<pb::RecallRequest>) -> Reply<Self::RecallStream> {
        let req = request.into_inner();
        validate::required("volume", &req.volume)?;
        validate::glob(&req.glob)?;
        let v = req.volume.clone();
        if !self.read(move |s| s.volume(&v).is_some()).await? {
            return Err(Status::not_found(format!(
                "volume {}: not registered",
                req.volume
            )));
        }
        info!(volume = %req.volume, glob = %req.glob, "recall");
        let recall = RecallRequest {
            volume: req.volume,
            glob: req.glob,
        };
        let progress = Progress::new();
        let mut watch = progress.subscribe();
        let engine = self.engine.clone();
        let mut work = tokio::spawn(async move { engine.recall(recall, progress).await });
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            // The recall runs in its own task: a slow or vanished client
            // slows nothing and stops nothing, it only misses reports.
            let mut sent = RecallProgress::default();
            let outcome = loop {
                tokio::select! {
                    done = &mut work => break done,
                    changed = watch.changed() => {
                        if changed.is_err() {
                            break (&mut work).await;
                        }
                        sent = watch.borrow_and_update().clone();
                        let _ = tx.send(Ok(convert::recall_progress(sent.clone()))).await;
                    }
                }
            };
            // The last report may have come with the end.
            let last = watch.borrow().clone();
            if last != sent {
                let _ = tx.send(Ok(convert::recall_progress(last))).await;
            }
            let last = match outcome {
                Ok(Ok(o)) => Ok(convert::recall_result(o)),
                Ok(Err(e)) => Err(error::engine(e)),
                Err(join) => Err(Status::internal(format!("recall failed: {join}"))),
            };
            let _ = tx.send(last).await;
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
