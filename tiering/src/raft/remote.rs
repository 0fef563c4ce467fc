//! The catalog group seen from outside it: [`RemoteCatalog`] is a
//! [`CatalogClient`] over the client API of `strata catalog` replicas
//! (`proto/strata/v1/catalog.proto`), for node agents, `strata ctl` and
//! tests.
//!
//! Each request goes to one replica (which forwards it to the leader if it
//! must); a replica that does not answer, or answers UNAVAILABLE, is passed
//! over for the next one. Proposals are idempotent in the catalog's state
//! machine, so sending one again after a lost answer is safe.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use strata_proto::strata::v1::catalog_client::CatalogClient as CatalogGrpcClient;
use strata_proto::strata::v1::{
    AddMemberRequest, ListMembersRequest, ListMembersResponse, ProposeRequest, ReadConsistency,
    ReadRequest, RemoveMemberRequest,
};
use strata_trust::{Expect, Role, SiteTls, TlsConnector};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use super::types::NodeId;
use crate::catalog::{Applied, CatalogClient, CatalogError, LogEntry, Rejected, State};

/// A state read from a replica.
#[derive(Debug, Clone)]
pub struct RemoteState {
    /// The log index the state reflects.
    pub applied_index: u64,
    /// The replica that answered.
    pub served_by: NodeId,
    /// The catalog's state.
    pub state: State,
}

/// Clients of some replicas of one catalog group.
#[derive(Debug)]
pub struct RemoteCatalog {
    replicas: Vec<(String, CatalogGrpcClient<Channel>)>,
    cluster: String,
    timeout: Duration,
    /// The replica to try first (the last one that answered).
    next: AtomicUsize,
}

impl RemoteCatalog {
    /// Clients of the replicas at `addrs` (`host:port`, or URLs), connected
    /// lazily; a call that no replica can answer gives up after `timeout`
    /// (an election takes about a second). `cluster`,
    /// when not empty, is checked by every replica. Every connection is
    /// mutual TLS with `tls`'s certificate, to servers that hold a replica
    /// certificate of the same site.
    pub fn new(
        addrs: &[String],
        cluster: &str,
        timeout: Duration,
        tls: &SiteTls,
    ) -> Result<Self, String> {
        if addrs.is_empty() {
            return Err("catalog: no replica address given".to_owned());
        }
        let replicas = addrs
            .iter()
            .map(|a| {
                // The scheme is only a name here: the connector speaks TLS.
                let host_port = a
                    .strip_prefix("https://")
                    .or_else(|| a.strip_prefix("http://"))
                    .unwrap_or(a);
                let connector = TlsConnector::new(tls, Expect::role(Role::Replica))
                    .map_err(|e| format!("TLS: {e}"))?;
                let channel = Endpoint::from_shared(format!("http://{host_port}"))
                    .map_err(|e| format!("catalog address {a:?}: {e}"))?
                    .connect_timeout(timeout)
                    .tcp_nodelay(true)
                    .connect_with_connector_lazy(connector);
                Ok((
                    a.clone(),
                    CatalogGrpcClient::new(channel)
                        .max_decoding_message_size(super::limits::STATE_READ)
                        .max_encoding_message_size(super::limits::API_REQUEST),
                ))
            })
            .collect::<Result<_, String>>()?;
        Ok(Self {
            replicas,
            cluster: cluster.to_owned(),
            timeout,
            next: AtomicUsize::new(0),
        })
    }

    /// Calls the replicas in turn, from the last one that answered, until
    /// one answers with something other than UNAVAILABLE, a broken
    /// connection or a timeout; when
    /// none does, tries them all again after a pause (50 ms, doubling to
    /// 1 s) until `timeout` has passed since the call began.
    async fn call<T, F, Fut>(&self, what: &str, f: F) -> Result<T, Status>
    where
        F: Fn(CatalogGrpcClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let n = self.replicas.len();
        let deadline = Instant::now() + self.timeout;
        let mut pause = Duration::from_millis(50);
        loop {
            let first = self.next.load(Ordering::Relaxed) % n;
            let mut last = Status::unavailable("no replica tried");
            for k in 0..n {
                let i = (first + k) % n;
                let (addr, client) = &self.replicas[i];
                let left = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, f(client.clone())).await {
                    Ok(Ok(answer)) => {
                        self.next.store(i, Ordering::Relaxed);
                        return Ok(answer.into_inner());
                    }
                    // UNAVAILABLE: no leader, or the replica is down;
                    // UNKNOWN or CANCELLED: the connection broke during the
                    // call (a replica killed, or the leader a replica
                    // forwarded to). Either way the next replica is asked;
                    // a proposal that did commit is applied again as a
                    // no-op (proposals are idempotent).
                    Ok(Err(s)) if retryable(s.code()) => {
                        last = Status::unavailable(format!("{addr}: {}", s.message()));
                    }
                    Ok(Err(s)) => {
                        return Err(Status::new(s.code(), format!("{addr}: {}", s.message())));
                    }
                    Err(_) => {
                        last = Status::unavailable(format!(
                            "{addr}: no answer to {what} within {:?}",
                            self.timeout
                        ));
                    }
                }
            }
            if Instant::now() + pause >= deadline {
                return Err(last);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    /// The whole state, linearizable or as some replica has applied it.
    pub async fn read_state(&self, consistency: ReadConsistency) -> Result<RemoteState, Status> {
        let answer = self
            .call("read", |mut c| {
                let cluster = self.cluster.clone();
                async move {
                    c.read(ReadRequest {
                        cluster,
                        consistency: consistency.into(),
                        forwarded: false,
                    })
                    .await
                }
            })
            .await?;
        let state = State::from_snapshot(&answer.state).map_err(|e| {
            Status::data_loss(format!("state from replica {}: {e}", answer.served_by))
        })?;
        Ok(RemoteState {
            applied_index: answer.applied_index,
            served_by: answer.served_by,
            state,
        })
    }

    /// The group's members.
    pub async fn members(
        &self,
        consistency: ReadConsistency,
    ) -> Result<ListMembersResponse, Status> {
        self.call("list members", |mut c| {
            let cluster = self.cluster.clone();
            async move {
                c.list_members(ListMembersRequest {
                    cluster,
                    consistency: consistency.into(),
                    forwarded: false,
                })
                .await
            }
        })
        .await
    }

    /// Adds replica `id` at `address`: a learner until it has caught up,
    /// then a voter unless `learner_only`.
    pub async fn add_member(
        &self,
        id: NodeId,
        address: &str,
        learner_only: bool,
    ) -> Result<ListMembersResponse, Status> {
        self.call("add member", |mut c| {
            let req = AddMemberRequest {
                cluster: self.cluster.clone(),
                id,
                address: address.to_owned(),
                learner_only,
                forwarded: false,
            };
            async move { c.add_member(req).await }
        })
        .await
    }

    /// Removes replica `id` from the group.
    pub async fn remove_member(&self, id: NodeId) -> Result<ListMembersResponse, Status> {
        self.call("remove member", |mut c| {
            let req = RemoveMemberRequest {
                cluster: self.cluster.clone(),
                id,
                forwarded: false,
            };
            async move { c.remove_member(req).await }
        })
        .await
    }

    /// Commits `entry`; the answer, and the index it was committed at.
    pub async fn propose_indexed(
        &self,
        entry: &LogEntry,
    ) -> Result<(Result<Applied, Rejected>, u64), Status> {
        let entry_json = serde_json::to_vec(entry)
            .map_err(|e| Status::invalid_argument(format!("entry: {e}")))?;
        let answer = self
            .call("propose", |mut c| {
                let req = ProposeRequest {
                    cluster: self.cluster.clone(),
                    entry_json: entry_json.clone(),
                    forwarded: false,
                };
                async move { c.propose(req).await }
            })
            .await?;
        let result = serde_json::from_slice(&answer.result_json)
            .map_err(|e| Status::data_loss(format!("result_json: {e}")))?;
        Ok((result, answer.index))
    }
}

/// Codes after which another replica, or the same one later, may answer.
pub(crate) fn retryable(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::DeadlineExceeded
    )
}

fn unavailable(s: Status) -> CatalogError {
    CatalogError::Unavailable(format!("{:?}: {}", s.code(), s.message()))
}

impl CatalogClient for RemoteCatalog {
    async fn propose(&self, entry: LogEntry) -> Result<Result<Applied, Rejected>, CatalogError> {
        self.propose_indexed(&entry)
            .await
            .map(|(answer, _)| answer)
            .map_err(unavailable)
    }

    /// Reads the whole state from the leader (O(state) per call: fine for
    /// status and tests; an agent that reads often should keep a replica).
    async fn read<T, F>(&self, read: F) -> Result<T, CatalogError>
    where
        T: Send + 'static,
        F: FnOnce(&State) -> T + Send + 'static,
    {
        let remote = self
            .read_state(ReadConsistency::Linearizable)
            .await
            .map_err(unavailable)?;
        Ok(read(&remote.state))
    }
}
