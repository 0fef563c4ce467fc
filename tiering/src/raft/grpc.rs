//! The catalog group's network: openraft's RPCs between replicas over tonic
//! (`proto/strata/v1/raft.proto`), each request and answer the JSON the
//! catalog also keeps in its log.
//!
//! [`GrpcNetwork`] is the client side: one lazily connected channel per
//! peer, every call bounded by openraft's own deadline (so no RPC can hang
//! the Raft core), log entries replicated over one long-lived stream per
//! peer (the leader sends the next batch before the last one is answered,
//! and a batch costs a frame each way instead of a call), a snapshot
//! streamed in 1 MiB chunks and given up when openraft cancels it.
//! [`RaftService`] is the server side, answering for one replica's
//! [`Raft`]. Both ends carry a cluster name; a message from another cluster
//! is refused before it reaches Raft.
//!
//! A peer whose member moved ([`super::addresses`]) connects to the new
//! address at its next call.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Stream, StreamExt};
use openraft::base::{BoxFuture, BoxStream};
use openraft::error::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::StreamAppendResult;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse};
use openraft::raft::{VoteRequest, VoteResponse};
use openraft::{BasicNode, OptionalSend, Raft};
use serde::Serialize;
use serde::de::DeserializeOwned;
use strata_proto::strata::v1::catalog_raft_client::CatalogRaftClient;
use strata_proto::strata::v1::catalog_raft_server::CatalogRaft;
use strata_proto::strata::v1::{RaftMessage, SnapshotChunk};
use strata_trust::{Expect, Role, SiteTls, TlsConnector};
use tokio::sync::watch;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status, Streaming};

use super::addresses::Addresses;
use super::state_machine::StateMachineStore;
use super::types::{C, NodeId, Snapshot, SnapshotMeta, Vote};

/// Bytes of snapshot data per streamed chunk.
const SNAPSHOT_CHUNK: usize = 1024 * 1024;

/// Connects to the other replicas of one cluster, over mutual TLS.
#[derive(Clone, Debug)]
pub struct GrpcNetwork {
    cluster: String,
    connect_timeout: Duration,
    tls: SiteTls,
    /// The members' addresses as the membership this replica knows has
    /// them, kept by [`super::addresses::follow_addresses`].
    addresses: watch::Sender<Addresses>,
}

impl GrpcNetwork {
    /// A network for the replicas of `cluster`, presenting `tls`'s
    /// certificate; a connection attempt gives up after `connect_timeout`.
    pub fn new(cluster: impl Into<String>, connect_timeout: Duration, tls: SiteTls) -> Self {
        Self {
            cluster: cluster.into(),
            connect_timeout,
            tls,
            addresses: watch::Sender::new(Addresses::new()),
        }
    }

    /// Where [`super::addresses::follow_addresses`] writes the members'
    /// addresses.
    pub(crate) fn addresses(&self) -> watch::Sender<Addresses> {
        self.addresses.clone()
    }

    /// A client of the Raft RPCs of `target` at `addr`, or why none can be
    /// made to that address.
    fn connect(&self, target: NodeId, addr: &str) -> Result<CatalogRaftClient<Channel>, String> {
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| format!("address {addr:?}: {e}"))?;
        let tls =
            TlsConnector::new(&self.tls, raft_peer(target)).map_err(|e| format!("TLS: {e}"))?;
        let channel = endpoint
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            .connect_with_connector_lazy(tls);
        Ok(CatalogRaftClient::new(channel)
            .max_decoding_message_size(super::limits::RAFT_MESSAGE)
            .max_encoding_message_size(super::limits::RAFT_MESSAGE))
    }
}

/// The servers a replica sends Raft RPCs to: a replica, or the node agent
/// whose learner has `target`'s id (a node certificate for another node
/// cannot pose as it).
fn raft_peer(target: NodeId) -> Expect {
    Expect::matching(
        format!("a replica certificate, or the node certificate of learner {target}"),
        move |id| match id.role {
            Role::Replica => true,
            Role::Node => super::identity::node_replica_id(&id.name) == target,
            Role::Admin => false,
        },
    )
}

/// The channel to one peer.
#[derive(Clone, Debug)]
pub struct GrpcPeer {
    target: NodeId,
    addr: String,
    cluster: String,
    /// `Err` when the address is not one a channel can be made to.
    client: Result<CatalogRaftClient<Channel>, String>,
    /// To connect again when the member moves.
    network: GrpcNetwork,
    /// The members' addresses; a change seen here that gives `target`
    /// another address than `addr` moves this peer there.
    addresses: watch::Receiver<Addresses>,
}

impl RaftNetworkFactory<C> for GrpcNetwork {
    type Network = GrpcPeer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> GrpcPeer {
        // `node` is as recent as any address book entry: only a change
        // after this one may move the peer (`subscribe` marks the book's
        // present entries seen).
        GrpcPeer {
            target,
            addr: node.addr.clone(),
            cluster: self.cluster.clone(),
            client: self.connect(target, &node.addr),
            network: self.clone(),
            addresses: self.addresses.subscribe(),
        }
    }
}

impl GrpcPeer {
    fn client(&mut self) -> Result<CatalogRaftClient<Channel>, Unreachable<C>> {
        self.follow_move();
        self.client
            .clone()
            .map_err(|e| Unreachable::from_string(format!("catalog node {}: {e}", self.target)))
    }

    /// The address this peer sends to.
    pub fn address(&self) -> &str {
        &self.addr
    }

    /// Connects to the target's new address if the membership moved it
    /// since this peer last looked.
    pub(super) fn follow_move(&mut self) {
        if !self.addresses.has_changed().unwrap_or(false) {
            return;
        }
        let moved = self
            .addresses
            .borrow_and_update()
            .get(&self.target)
            .filter(|addr| **addr != self.addr)
            .cloned();
        if let Some(addr) = moved {
            tracing::info!(
                id = self.target,
                from = %self.addr,
                to = %addr,
                "catalog: sending to a member that moved at its new address"
            );
            self.client = self.network.connect(self.target, &addr);
            self.addr = addr;
        }
    }

    fn message<T: Serialize>(&self, rpc: &T) -> Result<RaftMessage, NetworkError<C>> {
        Ok(RaftMessage {
            cluster: self.cluster.clone(),
            json: serde_json::to_vec(rpc).map_err(|e| NetworkError::new(&e))?,
        })
    }

    /// One unary call, bounded by openraft's soft deadline.
    async fn call<Req, Resp, F, Fut>(
        &mut self,
        what: &str,
        rpc: &Req,
        option: &RPCOption,
        send: F,
    ) -> Result<Resp, RPCError<C>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        F: FnOnce(CatalogRaftClient<Channel>, RaftMessage) -> Fut,
        Fut: Future<Output = Result<Response<RaftMessage>, Status>>,
    {
        let message = self.message(rpc)?;
        let deadline = option.soft_ttl();
        let answer = tokio::time::timeout(deadline, send(self.client()?, message))
            .await
            .map_err(|_| {
                NetworkError::from_string(format!(
                    "{what} to catalog node {} at {}: no answer within {deadline:?}",
                    self.target, self.addr
                ))
            })?;
        let answer = answer.map_err(|s| self.status_error(what, &s))?;
        decode(&answer.into_inner().json).map_err(|e| {
            RPCError::Network(NetworkError::from_string(format!(
                "{what} answer from catalog node {}: {e}",
                self.target
            )))
        })
    }

    fn status_error(&self, what: &str, s: &Status) -> RPCError<C> {
        let msg = format!(
            "{what} to catalog node {} at {}: {}: {}",
            self.target,
            self.addr,
            s.code(),
            s.message()
        );
        match s.code() {
            // Refused connections and a replica that is stopping: back off.
            tonic::Code::Unavailable | tonic::Code::FailedPrecondition => {
                RPCError::Unreachable(Unreachable::from_string(msg))
            }
            _ => RPCError::Network(NetworkError::from_string(msg)),
        }
    }
}

impl RaftNetworkV2<C> for GrpcPeer {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<C>, RPCError<C>> {
        self.call("append entries", &rpc, &option, |mut c, m| async move {
            c.append_entries(m).await
        })
        .await
    }

    /// One `StreamAppend` call carries a whole replication session (and
    /// each heartbeat its own). Answers come back in the order sent; the
    /// session fails when the oldest unanswered request has waited longer
    /// than openraft's soft deadline (an idle stream, with nothing
    /// unanswered, may wait as long as it likes).
    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<'s, Result<BoxStream<'s, Result<StreamAppendResult<C>, RPCError<C>>>, RPCError<C>>>
    where
        S: Stream<Item = AppendEntriesRequest<C>> + OptionalSend + Unpin + 'static,
    {
        Box::pin(async move {
            let deadline = option.soft_ttl();
            let mut client = self.client()?;
            let session = AppendSession::default();
            let requests = session.requests(input, self.cluster.clone());
            let answers = tokio::time::timeout(deadline, client.stream_append(requests))
                .await
                .map_err(|_| {
                    NetworkError::from_string(format!(
                        "stream append to catalog node {} at {}: no answer within {deadline:?}",
                        self.target, self.addr
                    ))
                })?
                .map_err(|s| self.status_error("stream append", &s))?
                .into_inner();
            let answers = session.answers(self.clone(), answers, deadline);
            Ok(Box::pin(answers) as BoxStream<'s, _>)
        })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<C>,
        option: RPCOption,
    ) -> Result<VoteResponse<C>, RPCError<C>> {
        self.call(
            "vote",
            &rpc,
            &option,
            |mut c, m| async move { c.vote(m).await },
        )
        .await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<C>,
        option: RPCOption,
    ) -> Result<VoteResponse<C>, RPCError<C>> {
        self.call("pre-vote", &rpc, &option, |mut c, m| async move {
            c.pre_vote(m).await
        })
        .await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<C>, StreamingError<C>> {
        let encode = |what: &str, v: serde_json::Result<Vec<u8>>| {
            v.map_err(|e| NetworkError::from_string(format!("snapshot {what}: {e}")))
        };
        let vote_json = encode("vote", serde_json::to_vec(&vote))?;
        let meta_json = encode("metadata", serde_json::to_vec(&snapshot.meta))?;
        let data = snapshot.snapshot;
        let mut chunks: Vec<SnapshotChunk> = data
            .chunks(SNAPSHOT_CHUNK)
            .map(|piece| SnapshotChunk {
                data: piece.to_vec(),
                ..SnapshotChunk::default()
            })
            .collect();
        if chunks.is_empty() {
            chunks.push(SnapshotChunk::default());
        }
        chunks[0].cluster = self.cluster.clone();
        chunks[0].vote_json = vote_json;
        chunks[0].meta_json = meta_json;
        let mut client = self.client()?;
        let send = client.install_snapshot(futures::stream::iter(chunks));
        tokio::select! {
            answer = send => {
                let answer = answer.map_err(|s| match self.status_error("snapshot", &s) {
                    RPCError::Unreachable(u) => StreamingError::Unreachable(u),
                    other => StreamingError::Network(NetworkError::from_string(other.to_string())),
                })?;
                decode(&answer.into_inner().json).map_err(|e| {
                    StreamingError::Network(NetworkError::from_string(format!(
                        "snapshot answer from catalog node {}: {e}",
                        self.target
                    )))
                })
            }
            closed = cancel => Err(StreamingError::Closed(closed)),
        }
    }
}

/// What the two halves of one `StreamAppend` call share: when each
/// unanswered request was sent, and why the requests stopped early.
#[derive(Clone, Default)]
struct AppendSession {
    sent: Arc<Mutex<VecDeque<Instant>>>,
    unsendable: Arc<Mutex<Option<String>>>,
}

impl AppendSession {
    /// `input` as messages for the wire, each sending time noted; a request
    /// that does not encode ends them (and the session reports why).
    ///
    /// A request without entries (a heartbeat, or the leader's new commit
    /// index right after a commit) first lets the tasks already waiting run:
    /// on a replica's one thread those include the answer to the write that
    /// was just committed, which then goes out before the followers are
    /// told.
    fn requests<S>(&self, input: S, cluster: String) -> impl Stream<Item = RaftMessage> + use<S>
    where
        S: Stream<Item = AppendEntriesRequest<C>> + Send + Unpin + 'static,
    {
        let session = self.clone();
        input
            .then(|rpc| async move {
                if rpc.entries.is_empty() {
                    tokio::task::yield_now().await;
                }
                rpc
            })
            .scan((), move |_, rpc| {
                let message = match serde_json::to_vec(&rpc) {
                    Ok(json) => {
                        lock(&session.sent).push_back(Instant::now());
                        Some(RaftMessage {
                            cluster: cluster.clone(),
                            json,
                        })
                    }
                    Err(e) => {
                        *lock(&session.unsendable) = Some(format!("append entries: {e}"));
                        None
                    }
                };
                std::future::ready(message)
            })
    }

    /// The decoded answers; ends at the first error.
    fn answers(
        self,
        peer: GrpcPeer,
        answers: Streaming<RaftMessage>,
        deadline: Duration,
    ) -> impl Stream<Item = Result<StreamAppendResult<C>, RPCError<C>>> + Send + 'static {
        futures::stream::unfold(Some(answers), move |answers| {
            let (session, peer) = (self.clone(), peer.clone());
            async move {
                let mut answers = answers?;
                let item = session.next_answer(&peer, &mut answers, deadline).await?;
                let go_on = item.is_ok();
                Some((item, go_on.then_some(answers)))
            }
        })
    }

    async fn next_answer(
        &self,
        peer: &GrpcPeer,
        answers: &mut Streaming<RaftMessage>,
        deadline: Duration,
    ) -> Option<Result<StreamAppendResult<C>, RPCError<C>>> {
        let network = |msg: String| {
            RPCError::Network(NetworkError::from_string(format!(
                "stream append to catalog node {} at {}: {msg}",
                peer.target, peer.addr
            )))
        };
        loop {
            match tokio::time::timeout(deadline, answers.next()).await {
                Ok(Some(Ok(m))) => {
                    lock(&self.sent).pop_front();
                    return Some(decode(&m.json).map_err(|e| network(format!("answer: {e}"))));
                }
                Ok(Some(Err(s))) => return Some(Err(peer.status_error("stream append", &s))),
                Ok(None) => return lock(&self.unsendable).take().map(|e| Err(network(e))),
                Err(_) => {
                    let oldest = lock(&self.sent).front().copied();
                    if oldest.is_some_and(|t| t.elapsed() >= deadline) {
                        return Some(Err(network(format!("no answer within {deadline:?}"))));
                    }
                }
            }
        }
    }
}

/// The lock of a value no holder can leave half-changed.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn decode<T: DeserializeOwned>(json: &[u8]) -> Result<T, serde_json::Error> {
    serde_json::from_slice(json)
}

/// Answers the Raft RPCs of one replica.
#[derive(Clone)]
pub struct RaftService {
    raft: Raft<C, StateMachineStore>,
    cluster: String,
}

impl RaftService {
    /// Serves `raft` to the replicas of `cluster`. Wrap it in
    /// `CatalogRaftServer::new` to add it to a tonic server.
    pub fn new(raft: Raft<C, StateMachineStore>, cluster: impl Into<String>) -> Self {
        Self {
            raft,
            cluster: cluster.into(),
        }
    }

    fn check_cluster(&self, cluster: &str) -> Result<(), Status> {
        if cluster == self.cluster {
            Ok(())
        } else {
            Err(Status::failed_precondition(format!(
                "cluster: this replica belongs to {:?}, the message to {cluster:?}",
                self.cluster
            )))
        }
    }

    /// Only replicas vote, replicate and install snapshots.
    fn authorize<T>(request: &Request<T>, what: &str) -> Result<(), Status> {
        strata_trust::require_role(request, what, &[Role::Replica]).map(|_| ())
    }

    fn request<T: DeserializeOwned>(&self, m: &RaftMessage) -> Result<T, Status> {
        self.check_cluster(&m.cluster)?;
        decode(&m.json).map_err(|e| Status::invalid_argument(format!("json: {e}")))
    }

    fn answer<T: Serialize>(&self, value: &T) -> Result<Response<RaftMessage>, Status> {
        let json = serde_json::to_vec(value).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(RaftMessage {
            cluster: self.cluster.clone(),
            json,
        }))
    }
}

/// A replica that cannot answer (stopped, or stopping after a storage error).
fn stopped(e: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("catalog replica: {e}"))
}

/// The answers of one `StreamAppend` call.
type AnswerStream = Pin<Box<dyn Stream<Item = Result<RaftMessage, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl CatalogRaft for RaftService {
    type StreamAppendStream = AnswerStream;

    /// Hands the requests to openraft as they arrive (it pipelines them)
    /// and sends each answer back in order. A request that does not decode
    /// or names another cluster ends the requests; the stream then ends,
    /// after the answers to those before it, with that error.
    async fn stream_append(
        &self,
        request: Request<Streaming<RaftMessage>>,
    ) -> Result<Response<AnswerStream>, Status> {
        Self::authorize(&request, "replicate the log")?;
        let refused: Arc<Mutex<Option<Status>>> = Arc::default();
        let (service, refusal) = (self.clone(), refused.clone());
        let requests = request.into_inner().scan((), move |_, message| {
            let rpc = message.and_then(|m| service.request::<AppendEntriesRequest<C>>(&m));
            std::future::ready(match rpc {
                Ok(rpc) => Some(rpc),
                Err(s) => {
                    *lock(&refusal) = Some(s);
                    None
                }
            })
        });
        let service = self.clone();
        let answers = self.raft.stream_append(requests).map(move |answer| {
            service
                .answer(&answer.map_err(stopped)?)
                .map(Response::into_inner)
        });
        let refusal = futures::stream::once(async move { lock(&refused).take() })
            .filter_map(|s| std::future::ready(s.map(Err)));
        Ok(Response::new(Box::pin(answers.chain(refusal))))
    }

    async fn append_entries(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        Self::authorize(&request, "replicate the log")?;
        let rpc = self.request(request.get_ref())?;
        let resp = self.raft.append_entries(rpc).await.map_err(stopped)?;
        self.answer(&resp)
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        Self::authorize(&request, "vote")?;
        let rpc = self.request(request.get_ref())?;
        let resp = self.raft.vote(rpc).await.map_err(stopped)?;
        self.answer(&resp)
    }

    async fn pre_vote(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        Self::authorize(&request, "vote")?;
        let rpc = self.request(request.get_ref())?;
        let resp = self.raft.pre_vote(rpc).await.map_err(stopped)?;
        self.answer(&resp)
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<RaftMessage>, Status> {
        Self::authorize(&request, "install a snapshot")?;
        let mut stream = request.into_inner();
        let first = stream
            .next()
            .await
            .ok_or_else(|| Status::invalid_argument("snapshot: no chunk"))??;
        self.check_cluster(&first.cluster)?;
        let vote: Vote = decode(&first.vote_json)
            .map_err(|e| Status::invalid_argument(format!("vote_json: {e}")))?;
        let meta: SnapshotMeta = decode(&first.meta_json)
            .map_err(|e| Status::invalid_argument(format!("meta_json: {e}")))?;
        let mut data = first.data;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?.data;
            if data.len() + chunk.len() > super::limits::SNAPSHOT {
                return Err(Status::resource_exhausted(format!(
                    "snapshot: larger than the {} MiB a replica accepts",
                    super::limits::SNAPSHOT >> 20
                )));
            }
            data.extend_from_slice(&chunk);
        }
        let snapshot = Snapshot {
            meta,
            snapshot: data,
        };
        let resp = self
            .raft
            .install_full_snapshot(vote, snapshot)
            .await
            .map_err(stopped)?;
        self.answer(&resp)
    }
}
