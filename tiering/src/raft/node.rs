//! A catalog replica: openraft over the RocksDB stores, serving
//! [`CatalogClient`] to the tiering engine.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use openraft::error::{ClientWriteError, Fatal, LinearizableReadError, RaftError};
use openraft::metrics::WaitError;
use openraft::{BasicNode, Config, Raft, ReadPolicy, ServerState, SnapshotPolicy};
use strata_proto::strata::v1::catalog_client::CatalogClient as CatalogGrpcClient;
use strata_proto::strata::v1::{ProposeRequest, ReadIndexRequest};
use strata_trust::SiteTls;
use tokio::sync::watch;
use tonic::Status;
use tonic::transport::Channel;

use super::error::RaftCatalogError;
use super::grpc::GrpcNetwork;
use super::identity::ReplicaIdentity;
use super::leader_link::LeaderLink;
use super::metrics::ReplicaTimings;
use super::network::NoNetwork;
use super::snapshot_store::SnapshotCounts;
use super::state_machine::{SharedState, StateMachineStore};
use super::types::{C, NodeId};
use crate::catalog::{Applied, CatalogClient, CatalogError, LogEntry, Rejected, State};

/// How a catalog replica runs.
#[derive(Clone, Debug)]
pub struct CatalogOptions {
    /// Take a snapshot every this many entries; each replica at an offset
    /// of its own within the period (its place among the members), so the
    /// replicas of a group take turns.
    pub snapshot_every: u64,
    /// Entries already in a snapshot that stay in the log after a purge (a
    /// lagging follower can catch up from them instead of a whole snapshot).
    pub logs_kept_after_snapshot: u64,
    /// How often a leader sends heartbeats.
    pub heartbeat_interval: Duration,
    /// A follower that hears no leader for a random time in this range
    /// starts an election; a restarted replica waits about this long before
    /// it leads again.
    pub election_timeout: (Duration, Duration),
    /// How long [`CatalogNode::open`] waits to become leader and apply the
    /// log it found.
    pub leader_timeout: Duration,
    /// Where other replicas reach this one (host:port; recorded in the
    /// membership).
    pub address: String,
    /// The group and this replica's id in it; recorded in the store when it
    /// is created, and a store recorded for another refuses to open.
    pub identity: ReplicaIdentity,
    /// How long a replica waits for another to accept a connection.
    pub connect_timeout: Duration,
    /// How long a replica that does not lead (a node agent's learner) keeps
    /// trying to reach a leader for a proposal or read of its own before it
    /// answers "unavailable" (an election takes about a second).
    pub leader_wait: Duration,
    /// The site's certificates: required by a replica of a networked group
    /// ([`CatalogNode::open_replica`]), which talks to its peers only over
    /// mutual TLS; a one-member group in-process needs none.
    pub tls: Option<SiteTls>,
}

/// How a replica of a networked group starts ([`CatalogNode::open_replica`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplicaStart {
    /// If the store is new, start a new group with this replica as its only
    /// member (the others are added with `strata ctl members add`).
    Bootstrap,
    /// Wait to be added to a group by its leader (a new store), or rejoin the
    /// group recorded in the store.
    Join,
    /// If the store is new, start the group with exactly these voters (id →
    /// address), this replica among them; every one of them is started with
    /// the same list, and together they elect a leader.
    Members(BTreeMap<NodeId, String>),
}

impl Default for CatalogOptions {
    fn default() -> Self {
        Self {
            snapshot_every: 10_000,
            logs_kept_after_snapshot: 1_000,
            heartbeat_interval: Duration::from_millis(100),
            election_timeout: (Duration::from_millis(500), Duration::from_millis(1000)),
            leader_timeout: Duration::from_secs(30),
            address: "localhost".to_owned(),
            identity: ReplicaIdentity::default(),
            connect_timeout: Duration::from_secs(2),
            leader_wait: Duration::from_secs(30),
            tls: None,
        }
    }
}

impl CatalogOptions {
    fn raft_config(&self) -> Result<Config, RaftCatalogError> {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let config = Config {
            cluster_name: self.identity.cluster.clone(),
            heartbeat_interval: ms(self.heartbeat_interval),
            election_timeout_min: ms(self.election_timeout.0),
            election_timeout_max: ms(self.election_timeout.1),
            // Each replica asks for its snapshots on its own schedule
            // (`snapshot_schedule`), so that a group's replicas take turns.
            snapshot_policy: SnapshotPolicy::Never,
            max_in_snapshot_log_to_keep: self.logs_kept_after_snapshot,
            ..Config::default()
        };
        Ok(config.validate()?)
    }
}

/// Where a replica stands, for metrics and status.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CatalogMetrics {
    /// This replica's id.
    pub node_id: NodeId,
    /// The current Raft term.
    pub term: u64,
    /// The leader this replica knows of.
    pub leader: Option<NodeId>,
    /// Whether this replica leads the group.
    pub is_leader: bool,
    /// `leader`, `candidate`, `follower`, `learner` (receives the log, never
    /// votes), `joining` (not a member yet) or `stopped`.
    pub role: &'static str,
    /// The index of the last entry in the log.
    pub last_log_index: Option<u64>,
    /// The index of the last committed entry.
    pub committed_index: Option<u64>,
    /// The index of the last entry applied to the catalog.
    pub applied_index: Option<u64>,
    /// The last index covered by the stored snapshot.
    pub snapshot_index: Option<u64>,
    /// The last index removed from the log.
    pub purged_index: Option<u64>,
    /// Why the replica stopped, if it did (a storage error names the record).
    pub stopped: Option<String>,
    /// On a leader: how many entries each other replica still lacks (the
    /// leader's last log index minus what the replica has matched).
    pub replication_lag: BTreeMap<NodeId, u64>,
    /// Snapshots this replica built (and compacted its log behind) since it
    /// started.
    pub snapshots_built: u64,
    /// Snapshots this replica received from a leader and installed since it
    /// started.
    pub snapshots_installed: u64,
}

/// A catalog replica: its log and snapshots in RocksDB under
/// `<data_dir>/catalog`, its state in memory. [`CatalogNode::open`] runs a
/// one-member group in-process (`strata up`, `strata node`);
/// [`CatalogNode::open_replica`] one replica of a networked group
/// (`strata catalog`).
///
/// Share it with `Arc`; call [`CatalogNode::shutdown`] to stop it and close
/// the store (dropping it leaves the Raft task to end with the runtime).
pub struct CatalogNode {
    raft: Raft<C, StateMachineStore>,
    shared: SharedState,
    snapshots: Arc<SnapshotCounts>,
    timings: ReplicaTimings,
    id: NodeId,
    cluster: String,
    /// Where the other replicas reach this one.
    address: String,
    /// Sees the store go once Raft has dropped it.
    closed: watch::Receiver<()>,
    dir: PathBuf,
    /// To the leader, when this replica does not lead.
    link: LeaderLink,
    /// The site's certificates (a networked replica).
    tls: Option<SiteTls>,
    leader_wait: Duration,
}

impl fmt::Debug for CatalogNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CatalogNode")
            .field("dir", &self.dir)
            .field("node_id", &self.id)
            .finish_non_exhaustive()
    }
}

/// How long a replica that does not lead waits to apply the log up to the
/// leader's read index.
const READ_INDEX_WAIT: Duration = Duration::from_secs(10);

/// How long [`CatalogNode::shutdown`] waits for the store to close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

impl CatalogNode {
    /// Opens (or creates) the catalog under `<data_dir>/catalog`, starts
    /// Raft as a group of one with no network, initializes the group if the
    /// store is fresh (never an existing one), and returns once this node
    /// leads and has applied the whole log it found.
    pub async fn open(data_dir: &Path, options: CatalogOptions) -> Result<Self, RaftCatalogError> {
        let node = Self::launch(data_dir, &options, NoNetwork).await?;
        if let Err(e) = node.start(&options).await {
            if let Err(stop) = node.shutdown().await {
                tracing::warn!(error = %stop, "catalog: stopping after a failed start");
            }
            return Err(e);
        }
        Ok(node)
    }

    /// Opens (or creates) the catalog under `<data_dir>/catalog` as one
    /// replica of a networked group (serve [`RaftService`](super::RaftService)
    /// for it at `options.address`). With [`ReplicaStart::Bootstrap`] a fresh
    /// store starts a new group of one, and this returns once it leads;
    /// otherwise the replica waits to be added, or rejoins the group its
    /// store records, and this returns at once (a leader is elected in the
    /// background).
    pub async fn open_replica(
        data_dir: &Path,
        options: CatalogOptions,
        start: ReplicaStart,
    ) -> Result<Self, RaftCatalogError> {
        let tls = options.tls.clone().ok_or_else(|| {
            RaftCatalogError::Options(
                "a replica of a networked group talks only over mutual TLS: give it the site's \
                 certificates (--tls-dir)"
                    .to_owned(),
            )
        })?;
        let network = GrpcNetwork::new(
            options.identity.cluster.clone(),
            options.connect_timeout,
            tls,
        );
        if let ReplicaStart::Members(members) = &start {
            check_initial_members(members, &options)?;
        }
        let addresses = network.addresses();
        let node = Self::launch(data_dir, &options, network).await?;
        tokio::spawn(super::addresses::follow_addresses(
            node.raft.clone(),
            addresses,
        ));
        let started = match start {
            // A new group of one: answer once it leads, so that members can
            // be added at once.
            ReplicaStart::Bootstrap => {
                let alone = BTreeMap::from([(node.id, options.address.clone())]);
                match node.initialize(alone).await {
                    Ok(true) => node.wait_to_lead(options.leader_timeout).await,
                    other => other.map(|_| ()),
                }
            }
            // The others may not be up yet: a leader is elected once a
            // majority is.
            ReplicaStart::Members(members) => node.initialize(members).await.map(|_| ()),
            ReplicaStart::Join => Ok(()),
        };
        if let Err(e) = started {
            if let Err(stop) = node.shutdown().await {
                tracing::warn!(error = %stop, "catalog: stopping after a failed start");
            }
            return Err(e);
        }
        tokio::spawn(super::held_log::record_voters_holding_log(
            node.raft.clone(),
            node.shared.clone(),
            node.id,
        ));
        Ok(node)
    }

    /// Checks the store's identity, opens the stores and starts Raft.
    async fn launch<N>(
        data_dir: &Path,
        options: &CatalogOptions,
        network: N,
    ) -> Result<Self, RaftCatalogError>
    where
        N: openraft::network::RaftNetworkFactory<C>,
        N::Network: openraft::network::NetSnapshot<C, SnapshotData = Vec<u8>>,
    {
        let dir = data_dir.join("catalog");
        let config = Arc::new(options.raft_config()?);
        let opened = {
            let dir = dir.clone();
            let identity = options.identity.clone();
            tokio::task::spawn_blocking(move || {
                super::identity::claim(&dir, &identity)?;
                super::open_stores_at(&dir)
            })
            .await
        };
        let (log, sm, store) = opened.map_err(|e| RaftCatalogError::Raft {
            dir: dir.clone(),
            op: "open the store",
            source: Box::new(e),
        })??;
        let shared = sm.shared();
        let snapshots = sm.snapshot_counts();
        let timings = sm.timings();
        // Only the stores hold the database: once Raft drops them it closes.
        let closed = store.closed();
        drop(store);
        let id = options.identity.node_id;
        match Raft::new(id, config, network, log, sm).await {
            Ok(raft) => {
                tokio::spawn(super::snapshot_schedule::trigger_snapshots(
                    raft.clone(),
                    id,
                    options.snapshot_every,
                    closed.clone(),
                ));
                Ok(CatalogNode {
                    raft,
                    shared,
                    snapshots,
                    timings,
                    id,
                    cluster: options.identity.cluster.clone(),
                    address: options.address.clone(),
                    closed,
                    dir,
                    link: LeaderLink::new(options.connect_timeout, options.tls.clone()),
                    tls: options.tls.clone(),
                    leader_wait: options.leader_wait,
                })
            }
            Err(e) => {
                // The stores were dropped; let the database close before
                // answering, so the caller may open the directory again.
                if let Err(stop) = wait_closed(&dir, closed).await {
                    tracing::warn!(error = %stop, "catalog: closing after a failed start");
                }
                Err(raft_error(&dir, "start", e))
            }
        }
    }

    /// Initializes a fresh store with `members` (id → address) as the
    /// group's voters; a store that already has a membership is left as it
    /// is. Answers whether it initialized.
    async fn initialize(
        &self,
        members: BTreeMap<NodeId, String>,
    ) -> Result<bool, RaftCatalogError> {
        let initialized = self
            .raft
            .is_initialized()
            .await
            .map_err(|e| raft_error(&self.dir, "read the membership", e))?;
        if !initialized {
            tracing::info!(
                dir = %self.dir.display(),
                cluster = %self.cluster,
                id = self.id,
                members = ?members,
                "catalog: initializing a new group"
            );
            let members: BTreeMap<NodeId, BasicNode> = members
                .into_iter()
                .map(|(id, addr)| (id, BasicNode::new(addr)))
                .collect();
            self.raft
                .initialize(members)
                .await
                .map_err(|e| raft_error(&self.dir, "initialize the group", e))?;
        }
        Ok(!initialized)
    }

    async fn start(&self, options: &CatalogOptions) -> Result<(), RaftCatalogError> {
        self.initialize(BTreeMap::from([(self.id, options.address.clone())]))
            .await?;
        let waited = options.leader_timeout;
        self.wait_to_lead(waited).await?;
        // Apply everything in the log now: an entry that does not decode
        // stops `open`, not the first proposal.
        match tokio::time::timeout(waited, self.raft.ensure_linearizable(ReadPolicy::ReadIndex))
            .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(raft_error(&self.dir, "apply the log", e)),
            Err(_) => Err(RaftCatalogError::NotLeader {
                dir: self.dir.clone(),
                waited,
                state: "leader, still applying the log".to_owned(),
            }),
        }
    }

    /// Waits until this replica leads (or stops).
    async fn wait_to_lead(&self, waited: Duration) -> Result<(), RaftCatalogError> {
        let leading = self
            .raft
            .wait(Some(waited))
            .metrics(
                |m| {
                    m.running_state.is_err()
                        || (m.state == ServerState::Leader && m.current_leader == Some(self.id))
                },
                "catalog replica leads",
            )
            .await;
        match leading {
            Ok(m) => m
                .running_state
                .map_err(|e| raft_error(&self.dir, "become leader", e)),
            Err(WaitError::Timeout(..)) => Err(RaftCatalogError::NotLeader {
                dir: self.dir.clone(),
                waited,
                state: format!("{:?}", self.raft.metrics().borrow_watched().state),
            }),
            Err(e) => Err(raft_error(&self.dir, "become leader", e)),
        }
    }

    /// Stops Raft and waits until the store is closed (so the directory
    /// can be opened again).
    pub async fn shutdown(&self) -> Result<(), RaftCatalogError> {
        self.raft
            .shutdown()
            .await
            .map_err(|e| raft_error(&self.dir, "shut down", e))?;
        wait_closed(&self.dir, self.closed.clone()).await
    }

    /// The store's directory (`<data_dir>/catalog`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// This replica's id in its group.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Where the other replicas reach this one (its advertised address).
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Whether the catalog, as this replica has applied it, records that
    /// replica `id` held the log as a voter.
    pub(crate) fn replica_held_log(&self, id: NodeId) -> bool {
        self.shared.read().state.replica_held_log(id)
    }

    /// Waits until the replica stops on its own (a storage error, a record
    /// that does not decode) or is shut down, and returns why; never
    /// returns while it runs.
    ///
    /// Watches the server metrics, which change with elections and
    /// membership only, and whose sender the Raft core drops when it stops;
    /// the full metrics change with every entry, and a waiter on them is
    /// woken (another thread, on a busy replica) for each.
    pub async fn stopped(&self) -> String {
        let mut server = self.raft.server_metrics();
        while server.changed().await.is_ok() {}
        let m = self.raft.metrics().borrow_watched().clone();
        m.running_state
            .err()
            .map_or_else(|| "stopped".to_owned(), |e| e.to_string())
    }

    /// Whether the membership this replica knows includes it (as a voter or
    /// a learner).
    pub fn is_member(&self) -> bool {
        self.member_address().is_some()
    }

    /// The address the membership this replica knows gives it, if it is a
    /// member.
    pub fn member_address(&self) -> Option<String> {
        let rx = self.raft.metrics();
        let m = rx.borrow_watched();
        m.membership_config
            .membership()
            .get_node(&self.id)
            .map(|n| n.addr.clone())
    }

    /// Waits up to `within` until this replica knows some membership (a new
    /// replica knows none until it is added).
    pub async fn wait_for_membership(&self, within: Duration) {
        let _ = self
            .raft
            .wait(Some(within))
            .metrics(
                |m| m.membership_config.membership().nodes().next().is_some(),
                "a membership is known",
            )
            .await;
    }

    /// The site's certificates this replica serves and connects with (none
    /// for a one-member group in-process).
    pub fn tls(&self) -> Option<&SiteTls> {
        self.tls.as_ref()
    }

    /// The name of this replica's group.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The server for the other replicas' Raft RPCs to this one (wrap it
    /// in `CatalogRaftServer::new`).
    pub fn raft_service(&self) -> super::RaftService {
        super::RaftService::new(self.raft.clone(), self.cluster.clone())
    }

    pub(crate) fn raft(&self) -> &Raft<C, StateMachineStore> {
        &self.raft
    }

    pub(crate) fn timings(&self) -> &ReplicaTimings {
        &self.timings
    }

    pub(crate) fn shared(&self) -> &SharedState {
        &self.shared
    }

    /// Where this replica stands now.
    pub fn metrics(&self) -> CatalogMetrics {
        let rx = self.raft.metrics();
        let m = rx.borrow_watched();
        let (snapshots_built, snapshots_installed) = self.snapshots.get();
        CatalogMetrics {
            snapshots_built,
            snapshots_installed,
            node_id: m.id,
            term: m.current_term,
            leader: m.current_leader,
            is_leader: m.state == ServerState::Leader,
            role: match m.state {
                ServerState::Leader => "leader",
                ServerState::Candidate => "candidate",
                ServerState::Follower => "follower",
                ServerState::Learner
                    if m.membership_config.membership().get_node(&m.id).is_some() =>
                {
                    "learner"
                }
                ServerState::Learner => "joining",
                ServerState::Shutdown => "stopped",
            },
            last_log_index: m.last_log_index,
            committed_index: m.local_committed.as_ref().map(|id| id.index),
            applied_index: m.last_applied.as_ref().map(|id| id.index),
            snapshot_index: m.snapshot.as_ref().map(|id| id.index),
            purged_index: m.purged.as_ref().map(|id| id.index),
            stopped: m.running_state.as_ref().err().map(|e| e.to_string()),
            replication_lag: m
                .replication
                .iter()
                .flatten()
                .filter(|(id, _)| **id != m.id)
                .map(|(id, matched)| {
                    let last = m.last_log_index.unwrap_or(0);
                    let have = matched.as_ref().map_or(0, |l| l.index);
                    (*id, last.saturating_sub(have))
                })
                .collect(),
        }
    }

    /// Why this replica has stopped, if it has: shut down (unavailable) or
    /// failed (its storage).
    fn stopped_now(&self) -> Option<CatalogError> {
        let rx = self.raft.metrics();
        let m = rx.borrow_watched();
        match m.running_state.as_ref().err()? {
            Fatal::Stopped => Some(CatalogError::Unavailable(format!(
                "catalog node {}: stopped",
                self.dir.display()
            ))),
            e => Some(CatalogError::Storage(format!(
                "catalog node {}: {e}",
                self.dir.display()
            ))),
        }
    }

    /// The status a stopped replica answers with.
    pub(crate) fn fatal_status(&self, e: &Fatal<C>) -> Status {
        Status::unavailable(format!("catalog replica {} stopped: {e}", self.id))
    }

    /// A client of the leader, unless this replica leads or the request was
    /// forwarded to it already (see [`LeaderLink::client`]).
    pub(crate) fn leader_client(
        &self,
        forwarded: bool,
        hint: Option<NodeId>,
    ) -> Result<CatalogGrpcClient<Channel>, Status> {
        self.link.client(&self.raft, self.id, forwarded, hint)
    }

    /// Makes sure reads after this reflect every write committed before it:
    /// `Ok(Ok(read_index))` on the leader, `Ok(Err(leader))` on a replica
    /// that must ask the leader it names (if it knows one).
    pub(crate) async fn linearize(&self) -> Result<Result<u64, Option<NodeId>>, Status> {
        match self.raft.ensure_linearizable(ReadPolicy::ReadIndex).await {
            Ok(read) => Ok(Ok(read.index())),
            Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(f))) => {
                Ok(Err(f.leader_id))
            }
            Err(RaftError::APIError(e)) => Err(Status::unavailable(format!(
                "catalog replica {}: {e}",
                self.id
            ))),
            Err(RaftError::Fatal(e)) => Err(self.fatal_status(&e)),
        }
    }

    /// Waits until this replica has applied every entry committed before
    /// the call: on the leader its read index; elsewhere the leader's,
    /// asked for (unless the request was `forwarded` here already).
    pub(crate) async fn catch_up(&self, forwarded: bool) -> Result<(), Status> {
        let Err(hint) = self.linearize().await? else {
            return Ok(());
        };
        let asked = self
            .leader_client(forwarded, hint)?
            .read_index(ReadIndexRequest {
                cluster: self.cluster.clone(),
            })
            .await;
        let index = LeaderLink::answer(self.id, asked)?.into_inner().index;
        self.raft
            .wait(Some(READ_INDEX_WAIT))
            .applied_index_at_least(Some(index), "applied up to the read index")
            .await
            .map_err(|e| {
                Status::unavailable(format!(
                    "catalog replica {}: not applied up to the leader's read index {index}: {e}",
                    self.id
                ))
            })?;
        Ok(())
    }

    /// One attempt at committing `entry`: here if this replica leads, else
    /// through the leader it knows (the entry encoded once, in
    /// `entry_json`).
    async fn propose_once(
        &self,
        entry: &LogEntry,
        entry_json: &mut Option<Vec<u8>>,
    ) -> Result<Result<Applied, Rejected>, Status> {
        let hint = match self.raft.client_write(entry.clone()).await {
            Ok(written) => return Ok(written.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => f.leader_id,
            // Discarded on a leader change, a membership change in
            // progress: nothing is known to be decided.
            Err(RaftError::APIError(e)) => {
                return Err(Status::unavailable(format!(
                    "catalog replica {}: {e}",
                    self.id
                )));
            }
            Err(RaftError::Fatal(e)) => return Err(self.fatal_status(&e)),
        };
        let json = match entry_json {
            Some(json) => json.clone(),
            None => entry_json
                .insert(
                    serde_json::to_vec(entry)
                        .map_err(|e| Status::internal(format!("encode the entry: {e}")))?,
                )
                .clone(),
        };
        let answer = self
            .leader_client(false, hint)?
            .propose(ProposeRequest {
                cluster: self.cluster.clone(),
                entry_json: json,
                // The leader commits it, or says it no longer leads.
                forwarded: true,
            })
            .await?
            .into_inner();
        serde_json::from_slice(&answer.result_json)
            .map_err(|e| Status::data_loss(format!("result_json from the leader: {e}")))
    }
}

/// An initial membership must hold this replica at the address it is
/// reached at.
fn check_initial_members(
    members: &BTreeMap<NodeId, String>,
    options: &CatalogOptions,
) -> Result<(), RaftCatalogError> {
    let id = options.identity.node_id;
    let problem = match members.get(&id) {
        None => format!("has no replica {id} (this one)"),
        Some(addr) if *addr != options.address => format!(
            "names {addr} for replica {id}, which is reached at {}",
            options.address
        ),
        Some(_) if members.contains_key(&0) => "has an id 0 (ids are 1 or more)".to_owned(),
        Some(_) => return Ok(()),
    };
    Err(RaftCatalogError::Options(format!(
        "initial members: {problem}"
    )))
}

/// Waits until the store is dropped and its database closed.
async fn wait_closed(dir: &Path, mut closed: watch::Receiver<()>) -> Result<(), RaftCatalogError> {
    // Nothing is ever sent: `changed` fails once the store is gone.
    let gone = async { while closed.changed().await.is_ok() {} };
    tokio::time::timeout(CLOSE_TIMEOUT, gone)
        .await
        .map_err(|_| RaftCatalogError::StillOpen {
            dir: dir.to_owned(),
            waited: CLOSE_TIMEOUT,
        })
}

fn raft_error<E>(dir: &Path, op: &'static str, e: E) -> RaftCatalogError
where
    E: std::error::Error + Send + Sync + 'static,
{
    RaftCatalogError::Raft {
        dir: dir.to_owned(),
        op,
        source: Box::new(e),
    }
}

impl CatalogClient for CatalogNode {
    /// Commits `entry` through this replica when it leads, else through the
    /// leader (a node agent's learner forwards every proposal). While no
    /// leader answers it tries again, for up to `leader_wait`: proposals are
    /// idempotent, so one that committed but whose answer was lost is
    /// applied again as a no-op.
    async fn propose(&self, entry: LogEntry) -> Result<Result<Applied, Rejected>, CatalogError> {
        let mut backoff = Backoff::new(self, "propose");
        let mut entry_json = None;
        loop {
            match self.propose_once(&entry, &mut entry_json).await {
                Ok(answer) => return Ok(answer),
                Err(status) => backoff.after(status).await?,
            }
        }
    }

    /// Reads this replica's own state once it has applied every entry
    /// committed before the call (the leader's read index; a learner asks
    /// the leader for it).
    async fn read<T, F>(&self, read: F) -> Result<T, CatalogError>
    where
        T: Send + 'static,
        F: FnOnce(&State) -> T + Send + 'static,
    {
        let mut backoff = Backoff::new(self, "read");
        while let Err(status) = self.catch_up(false).await {
            backoff.after(status).await?;
        }
        let applied = self.shared.read();
        Ok(read(&applied.state))
    }
}

/// The pauses between attempts to reach a leader: 50 ms, doubling to 1 s,
/// for up to the node's `leader_wait`.
struct Backoff<'a> {
    node: &'a CatalogNode,
    what: &'static str,
    deadline: tokio::time::Instant,
    pause: Duration,
}

impl<'a> Backoff<'a> {
    fn new(node: &'a CatalogNode, what: &'static str) -> Self {
        Self {
            node,
            what,
            deadline: tokio::time::Instant::now() + node.leader_wait,
            pause: Duration::from_millis(50),
        }
    }

    /// After a failed attempt: pauses before the next one, or answers the
    /// error when trying again cannot help (the replica stopped, the
    /// leader refused) or the time is up.
    async fn after(&mut self, status: Status) -> Result<(), CatalogError> {
        if let Some(stopped) = self.node.stopped_now() {
            return Err(stopped);
        }
        if !super::remote::retryable(status.code())
            || tokio::time::Instant::now() + self.pause >= self.deadline
        {
            return Err(CatalogError::Unavailable(format!(
                "catalog node {}: {}: {:?}: {}",
                self.node.dir.display(),
                self.what,
                status.code(),
                status.message()
            )));
        }
        tokio::time::sleep(self.pause).await;
        self.pause = (self.pause * 2).min(Duration::from_secs(1));
        Ok(())
    }
}
