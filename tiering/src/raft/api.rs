//! The catalog group's client API (`proto/strata/v1/catalog.proto`):
//! proposals, reads and membership changes, answered by any replica.
//!
//! A replica that is not the leader forwards writes and membership changes
//! to the leader it knows (one hop, marked `forwarded`, so two replicas with
//! different ideas of the leader cannot bounce a request between them). A
//! linearizable read asks the leader only for its read index and is answered
//! from this replica's state once it has applied that far; a stale read is
//! answered from this replica's applied state at once.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;

use openraft::async_runtime::WatchReceiver;
use openraft::error::{ChangeMembershipError, ClientWriteError, ForwardToLeader, RaftError};
use openraft::{BasicNode, ChangeMembers};
use strata_proto::strata::v1::catalog_client::CatalogClient as CatalogGrpcClient;
use strata_proto::strata::v1::catalog_server::Catalog;
use strata_proto::strata::v1::{
    AddMemberRequest, ListMembersRequest, ListMembersResponse, Member, ProposeRequest,
    ProposeResponse, ReadConsistency, ReadIndexRequest, ReadIndexResponse, ReadRequest,
    ReadResponse, RemoveMemberRequest,
};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

use super::identity::node_replica_id;
use super::leader_link::LeaderLink;
use super::node::CatalogNode;
use super::types::{C, NodeId};
use crate::catalog::{Command, LogEntry, Proposer, Timestamp};
use strata_trust::{Identity, Role};

/// Serves the client API for one replica.
///
/// Every call is authorized by the role of the caller's certificate
/// (`strata_trust`): anyone of the site may read; a proposal is recorded
/// with who made it, and applying it checks they may
/// ([`Proposer`](crate::catalog::Proposer)); membership changes are for
/// admins and replicas, except that a node agent may add its own learner.
#[derive(Debug, Clone)]
pub struct CatalogApi {
    node: Arc<CatalogNode>,
    /// Whole-state reads encoded at once.
    reads: Arc<tokio::sync::Semaphore>,
}

impl CatalogApi {
    /// The API of `node` (which forwards to the leader, giving up
    /// connecting after its `connect_timeout`).
    pub fn new(node: Arc<CatalogNode>) -> Self {
        Self {
            node,
            reads: Arc::new(tokio::sync::Semaphore::new(super::limits::READS_AT_ONCE)),
        }
    }

    fn check_cluster(&self, asked: &str) -> Result<(), Status> {
        let cluster = self.node.cluster();
        if asked.is_empty() || asked == cluster {
            Ok(())
        } else {
            Err(Status::failed_precondition(format!(
                "cluster: this replica belongs to {cluster:?}, the request is for {asked:?}"
            )))
        }
    }

    fn id(&self) -> NodeId {
        self.node.id()
    }

    /// Sends the request on to the leader, unless it was forwarded already.
    async fn forward<T, F, Fut>(
        &self,
        forwarded: bool,
        hint: Option<NodeId>,
        call: F,
    ) -> Result<Response<T>, Status>
    where
        F: FnOnce(CatalogGrpcClient<Channel>) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let answer = call(self.node.leader_client(forwarded, hint)?).await;
        LeaderLink::answer(self.id(), answer)
    }

    /// After replica `id` left the group: the catalog forgets that it held
    /// the log, so an empty store under that id may join afresh. Not
    /// recording it only leaves a stale entry, which refuses nothing while
    /// `id` is not a voter.
    async fn forget_replica(&self, id: NodeId) {
        let entry = LogEntry {
            by: None,
            at: Timestamp::now(),
            command: Command::ForgetReplica { id },
        };
        if let Err(e) = self.node.raft().client_write(entry).await {
            tracing::warn!(id, error = %e, "catalog: forgetting a removed replica");
        }
    }

    /// The members as this replica sees them now.
    fn members(&self) -> ListMembersResponse {
        let rx = self.node.raft().metrics();
        let m = rx.borrow_watched();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let matched = |id: &NodeId| {
            m.replication
                .as_ref()
                .and_then(|r| r.get(id))
                .and_then(|l| l.as_ref().map(|l| l.index))
        };
        let members = membership
            .nodes()
            .map(|(id, node)| Member {
                id: *id,
                address: node.addr.clone(),
                voter: voters.contains(id),
                leader: m.current_leader == Some(*id),
                matched_index: if *id == m.id && m.current_leader == Some(m.id) {
                    m.last_log_index
                } else {
                    matched(id)
                },
                held_log: self.node.replica_held_log(*id),
            })
            .collect();
        ListMembersResponse {
            members,
            leader_id: m.current_leader.unwrap_or(0),
            term: m.current_term,
            committed_index: m.local_committed.as_ref().map_or(0, |l| l.index),
            served_by: m.id,
        }
    }

    /// Commits a proposal here if this replica leads, else through the
    /// leader.
    async fn propose_here_or_forward(
        &self,
        caller: Identity,
        mut req: ProposeRequest,
    ) -> Result<Response<ProposeResponse>, Status> {
        self.check_cluster(&req.cluster)?;
        let mut entry: LogEntry = serde_json::from_slice(&req.entry_json)
            .map_err(|e| Status::invalid_argument(format!("entry_json: {e}")))?;
        // Who made the proposal is what their certificate says, never what
        // they say; a replica passes on the proposer it recorded.
        let by = match caller.role {
            Role::Replica => entry.by.clone(),
            Role::Node => Some(Proposer::Node(caller.name)),
            Role::Admin => Some(Proposer::Admin(caller.name)),
        };
        let rewritten = by != entry.by;
        entry.by = by.clone();
        let hint = match self.node.raft().client_write(entry).await {
            Ok(w) => {
                let result_json = serde_json::to_vec(&w.data)
                    .map_err(|e| Status::internal(format!("encode the answer: {e}")))?;
                return Ok(Response::new(ProposeResponse {
                    result_json,
                    index: w.log_id.index,
                    leader_id: self.id(),
                }));
            }
            Err(e) => self.write_error(e)?,
        };
        // Only a proposal passed on carries the proposer in its bytes (the
        // leader's own path above needs no second encoding).
        if rewritten {
            req.entry_json = with_proposer(&req.entry_json, by)?;
        }
        self.forward(req.forwarded, hint, |mut c| async move {
            c.propose(ProposeRequest {
                forwarded: true,
                ..req
            })
            .await
        })
        .await
    }

    /// Adds the member `req` names, or moves it to `req.address` when it is
    /// a member at another address (a replica or learner restarted where it
    /// is reached otherwise: a pod's new IP). `Ok(Err(hint))` when this
    /// replica does not lead: forward to the leader.
    async fn add_here(
        &self,
        caller: &Identity,
        req: &AddMemberRequest,
    ) -> Result<Result<ListMembersResponse, Option<NodeId>>, Status> {
        let known = self.members();
        let raft = self.node.raft();
        let member = known.members.iter().find(|m| m.id == req.id);
        if let Some(m) = member.filter(|m| m.address != req.address) {
            may_move(caller, m)?;
            self.check_move(&known, m, &req.address)?;
            let to = BTreeMap::from([(req.id, BasicNode::new(&req.address))]);
            if let Err(e) = raft
                .change_membership(ChangeMembers::SetNodes(to), false)
                .await
            {
                return self.write_error(e).map(Err);
            }
            tracing::info!(
                id = req.id,
                voter = m.voter,
                by = %caller,
                "catalog: member {} moved: {} → {}",
                req.id,
                m.address,
                req.address
            );
            // A member in the role asked for (or a voter asked to learn)
            // is done: its stream goes to the new address from the next
            // call on (`addresses::follow_addresses`).
            if m.voter || req.learner_only {
                return Ok(Ok(self.members()));
            }
        }
        // Blocking: returns once the learner has caught up with the log.
        let added = raft
            .add_learner(req.id, BasicNode::new(&req.address), true)
            .await;
        let hint = match added {
            Ok(_) if req.learner_only => return Ok(Ok(self.members())),
            Ok(_) => {
                let voters = ChangeMembers::AddVoterIds(BTreeSet::from([req.id]));
                match raft.change_membership(voters, false).await {
                    Ok(_) => return Ok(Ok(self.members())),
                    Err(e) => self.write_error(e)?,
                }
            }
            Err(e) => self.write_error(e)?,
        };
        Ok(Err(hint))
    }

    /// Whether member `m` may be moved to `address`: this replica moves
    /// itself only to the address it is served at, and no voter shares an
    /// address with another member (the leader would reach one replica
    /// under two ids, and count its vote twice: openraft's warning about
    /// `SetNodes`).
    fn check_move(
        &self,
        known: &ListMembersResponse,
        m: &Member,
        address: &str,
    ) -> Result<(), Status> {
        if m.id == self.id() && address != self.node.address() {
            return Err(Status::failed_precondition(format!(
                "address: replica {} is this one, reached at {}, not at {address}",
                m.id,
                self.node.address()
            )));
        }
        if let Some(other) = known
            .members
            .iter()
            .find(|o| o.id != m.id && o.address == address && (o.voter || m.voter))
        {
            return Err(Status::failed_precondition(format!(
                "address: {address} is where replica {} is reached; a voter shares its \
                 address with no other member",
                other.id
            )));
        }
        Ok(())
    }

    /// Maps the error of a write or membership change; `Ok(hint)` means
    /// forward to the leader.
    fn write_error(&self, e: RaftError<C, ClientWriteError<C>>) -> Result<Option<NodeId>, Status> {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(ForwardToLeader {
                leader_id,
                ..
            })) => Ok(leader_id),
            // The previous change is not committed yet: retryable.
            RaftError::APIError(ClientWriteError::ChangeMembershipError(
                ChangeMembershipError::InProgress(e),
            )) => Err(Status::unavailable(format!("membership: {e}; retry"))),
            RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
                Err(Status::failed_precondition(format!("membership: {e}")))
            }
            RaftError::APIError(e) => Err(Status::unavailable(format!(
                "catalog replica {}: {e}",
                self.id()
            ))),
            RaftError::Fatal(e) => Err(self.node.fatal_status(&e)),
        }
    }
}

#[tonic::async_trait]
impl Catalog for CatalogApi {
    async fn propose(
        &self,
        request: Request<ProposeRequest>,
    ) -> Result<Response<ProposeResponse>, Status> {
        let started = std::time::Instant::now();
        let caller = strata_trust::peer_identity(&request)?;
        let answer = self
            .propose_here_or_forward(caller, request.into_inner())
            .await;
        self.node
            .timings()
            .propose
            .observe(started.elapsed().as_secs_f64());
        answer
    }

    async fn read(&self, request: Request<ReadRequest>) -> Result<Response<ReadResponse>, Status> {
        strata_trust::peer_identity(&request)?;
        let req = request.into_inner();
        self.check_cluster(&req.cluster)?;
        let consistency = consistency(req.consistency)?;
        if consistency == ReadConsistency::Linearizable {
            // On a follower: the leader's read index, then this replica's
            // own state once it has applied that far.
            self.node.catch_up(req.forwarded).await?;
        }
        // Encoding a large catalog takes a while and a copy of it: off the
        // async workers, and only a few at once.
        let _turn = self
            .reads
            .acquire()
            .await
            .map_err(|_| Status::unavailable("catalog replica: stopping"))?;
        let shared = self.node.shared().clone();
        let (applied_index, state) = tokio::task::spawn_blocking(move || {
            let applied = shared.read();
            (
                applied.last_applied.as_ref().map_or(0, |l| l.index),
                applied.state.to_snapshot(),
            )
        })
        .await
        .map_err(|e| Status::internal(format!("encode the state: {e}")))?;
        Ok(Response::new(ReadResponse {
            applied_index,
            served_by: self.id(),
            state,
        }))
    }

    async fn read_index(
        &self,
        request: Request<ReadIndexRequest>,
    ) -> Result<Response<ReadIndexResponse>, Status> {
        strata_trust::peer_identity(&request)?;
        self.check_cluster(&request.get_ref().cluster)?;
        match self.node.linearize().await? {
            Ok(index) => Ok(Response::new(ReadIndexResponse {
                index,
                leader_id: self.id(),
            })),
            Err(leader) => Err(Status::unavailable(format!(
                "catalog replica {} is not the leader (it knows {leader:?}); ask the leader",
                self.id()
            ))),
        }
    }

    async fn list_members(
        &self,
        request: Request<ListMembersRequest>,
    ) -> Result<Response<ListMembersResponse>, Status> {
        strata_trust::peer_identity(&request)?;
        let req = request.into_inner();
        self.check_cluster(&req.cluster)?;
        let consistency = consistency(req.consistency)?;
        if consistency == ReadConsistency::Linearizable
            && let Err(hint) = self.node.linearize().await?
        {
            return self
                .forward(req.forwarded, hint, |mut c| async move {
                    c.list_members(ListMembersRequest {
                        forwarded: true,
                        ..req
                    })
                    .await
                })
                .await;
        }
        Ok(Response::new(self.members()))
    }

    async fn add_member(
        &self,
        request: Request<AddMemberRequest>,
    ) -> Result<Response<ListMembersResponse>, Status> {
        let caller = strata_trust::peer_identity(&request)?;
        let req = request.into_inner();
        self.check_cluster(&req.cluster)?;
        if req.id == 0 {
            return Err(Status::invalid_argument("id: must be 1 or more"));
        }
        may_add(&caller, &req)?;
        check_member_address(&req.address)
            .map_err(|why| Status::invalid_argument(format!("address: {why}")))?;
        let hint = match self.add_here(&caller, &req).await? {
            Ok(members) => return Ok(Response::new(members)),
            Err(hint) => hint,
        };
        self.forward(req.forwarded, hint, |mut c| async move {
            c.add_member(AddMemberRequest {
                forwarded: true,
                ..req
            })
            .await
        })
        .await
    }

    async fn remove_member(
        &self,
        request: Request<RemoveMemberRequest>,
    ) -> Result<Response<ListMembersResponse>, Status> {
        strata_trust::require_role(
            &request,
            "remove a member of the catalog group",
            &[Role::Admin, Role::Replica],
        )?;
        let req = request.into_inner();
        self.check_cluster(&req.cluster)?;
        let known = self.members();
        let Some(member) = known.members.iter().find(|m| m.id == req.id) else {
            return Err(Status::not_found(format!(
                "id: replica {} is not a member (members: {:?})",
                req.id,
                known.members.iter().map(|m| m.id).collect::<Vec<_>>()
            )));
        };
        let ids = BTreeSet::from([req.id]);
        let change = if member.voter {
            ChangeMembers::RemoveVoters(ids)
        } else {
            ChangeMembers::RemoveNodes(ids)
        };
        let hint = match self.node.raft().change_membership(change, false).await {
            Ok(_) => {
                self.forget_replica(req.id).await;
                return Ok(Response::new(self.members()));
            }
            Err(e) => self.write_error(e)?,
        };
        self.forward(req.forwarded, hint, |mut c| async move {
            c.remove_member(RemoveMemberRequest {
                forwarded: true,
                ..req
            })
            .await
        })
        .await
    }
}

/// `entry_json` (which decoded once already) with its proposer set to `by`.
fn with_proposer(entry_json: &[u8], by: Option<Proposer>) -> Result<Vec<u8>, Status> {
    let mut entry: LogEntry = serde_json::from_slice(entry_json)
        .map_err(|e| Status::invalid_argument(format!("entry_json: {e}")))?;
    entry.by = by;
    serde_json::to_vec(&entry).map_err(|e| Status::internal(format!("encode the entry: {e}")))
}

/// Whether `caller` may make the membership change `req`: an admin or a
/// replica (passing on an admin's request) may add anyone; a node agent
/// only its own learner, under the id its name gives it.
fn may_add(caller: &Identity, req: &AddMemberRequest) -> Result<(), Status> {
    match caller.role {
        Role::Admin | Role::Replica => Ok(()),
        Role::Node if !req.learner_only => Err(Status::permission_denied(format!(
            "add member {}: a {caller} certificate may add only its own learner, never a voter",
            req.id
        ))),
        Role::Node if req.id != node_replica_id(&caller.name) => {
            Err(Status::permission_denied(format!(
                "add member {}: a {caller} certificate may add only its own learner, whose id \
                 is {} (from the node's name)",
                req.id,
                node_replica_id(&caller.name)
            )))
        }
        Role::Node => Ok(()),
    }
}

/// Whether `caller` may move member `m` to another address: as it may add
/// it ([`may_add`]), except that a node certificate moves only a learner.
fn may_move(caller: &Identity, m: &Member) -> Result<(), Status> {
    if caller.role == Role::Node && m.voter {
        return Err(Status::permission_denied(format!(
            "move member {}: it is a voter, and a {caller} certificate may move only its own \
             learner",
            m.id
        )));
    }
    Ok(())
}

/// The `consistency` field of a request.
fn consistency(raw: i32) -> Result<ReadConsistency, Status> {
    ReadConsistency::try_from(raw)
        .map_err(|_| Status::invalid_argument(format!("consistency: unknown value {raw}")))
}

/// A member's address: `host:port` with a port from 1 to 65535; else what
/// is wrong with it (the address quoted).
pub fn check_member_address(addr: &str) -> Result<(), String> {
    let bad = |why: &str| format!("{addr:?} {why}");
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| bad("is not host:port"))?;
    if host.is_empty() || host.contains('/') {
        return Err(bad("has no host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(bad("has no port from 1 to 65535")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: NodeId, voter: bool) -> Member {
        Member {
            id,
            address: "10.0.0.7:7421".into(),
            voter,
            ..Default::default()
        }
    }

    #[test]
    fn a_node_certificate_moves_only_its_own_learner() {
        let node = Identity::new(Role::Node, "edge-a").unwrap();
        let own = node_replica_id("edge-a");
        let req = |id| AddMemberRequest {
            id,
            address: "10.0.0.9:7421".into(),
            learner_only: true,
            ..Default::default()
        };
        may_add(&node, &req(own)).unwrap();
        may_move(&node, &member(own, false)).unwrap();
        // Its own id made a voter by an admin: not the node's to move.
        let s = may_move(&node, &member(own, true)).unwrap_err();
        assert_eq!(s.code(), tonic::Code::PermissionDenied, "{s}");
        assert!(
            s.message().contains("it is a voter") && s.message().contains("node edge-a"),
            "{s}"
        );
        // Another node's learner: refused before anything is looked up.
        let other = node_replica_id("edge-b");
        let s = may_add(&node, &req(other)).unwrap_err();
        assert_eq!(s.code(), tonic::Code::PermissionDenied, "{s}");
        // Admins and replicas move anyone.
        for role in [Role::Admin, Role::Replica] {
            let name = if role == Role::Admin { "ops" } else { "" };
            let who = Identity::new(role, name).unwrap();
            may_move(&who, &member(2, true)).unwrap();
            may_move(&who, &member(other, false)).unwrap();
        }
    }
}
