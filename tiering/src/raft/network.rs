//! The network of a one-member catalog group: there is nobody to talk to.
//!
//! A group with one voter elects itself and commits alone, so openraft
//! never sends an RPC. Should it try (a member added before the network
//! exists), every RPC fails as [`Unreachable`], naming the target, and
//! openraft backs off. The tonic network that carries the replicated group
//! is issue 4; it replaces this factory, not the stores.

use std::future::Future;

use openraft::BasicNode;
use openraft::OptionalSend;
use openraft::error::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse};
use openraft::raft::{VoteRequest, VoteResponse};

use super::types::{C, NodeId, Snapshot, Vote};

/// Connects to no one: the network factory of a one-member group.
#[derive(Clone, Debug, Default)]
pub struct NoNetwork;

/// The "connection" to another replica; every RPC on it fails as unreachable.
#[derive(Clone, Debug)]
pub struct UnreachablePeer {
    target: NodeId,
    addr: String,
}

impl UnreachablePeer {
    fn unreachable(&self, rpc: &str) -> Unreachable<C> {
        Unreachable::from_string(format!(
            "{rpc} to catalog node {} at {:?}: this node runs a one-member group without a network",
            self.target, self.addr
        ))
    }
}

impl RaftNetworkFactory<C> for NoNetwork {
    type Network = UnreachablePeer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> UnreachablePeer {
        UnreachablePeer {
            target,
            addr: node.addr.clone(),
        }
    }
}

impl RaftNetworkV2<C> for UnreachablePeer {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<C>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<C>, RPCError<C>> {
        Err(RPCError::Unreachable(self.unreachable("append entries")))
    }

    async fn vote(
        &mut self,
        _rpc: VoteRequest<C>,
        _option: RPCOption,
    ) -> Result<VoteResponse<C>, RPCError<C>> {
        Err(RPCError::Unreachable(self.unreachable("vote")))
    }

    // The default would grant the pre-vote; an unreachable peer grants nothing.
    async fn pre_vote(
        &mut self,
        _rpc: VoteRequest<C>,
        _option: RPCOption,
    ) -> Result<VoteResponse<C>, RPCError<C>> {
        Err(RPCError::Unreachable(self.unreachable("pre-vote")))
    }

    async fn full_snapshot(
        &mut self,
        _vote: Vote,
        _snapshot: Snapshot,
        _cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<C>, StreamingError<C>> {
        Err(StreamingError::Unreachable(self.unreachable("snapshot")))
    }
}
