//! The openraft type configuration of the catalog group: what a log entry
//! carries, what applying it answers, how nodes are named.

use std::fmt;

use openraft::vote::RaftLeaderId;

use crate::catalog::{Applied, Command, LogEntry, Rejected};

/// A replica's id in the catalog group. A one-replica site uses
/// [`SINGLE_NODE_ID`]; larger groups number their replicas (issue 4).
pub type NodeId = u64;

/// The id of the only replica of a one-member group.
pub const SINGLE_NODE_ID: NodeId = 1;

/// What the state machine answers for one entry: the command was applied
/// (changed or already in effect) or refused with a typed reason. Blank and
/// membership entries answer `Ok(Applied::Unchanged)`.
pub type CatalogResponse = Result<Applied, Rejected>;

openraft::declare_raft_types!(
    /// openraft's types for the catalog: the log carries [`LogEntry`]s, the
    /// state machine answers [`CatalogResponse`]s, replicas are `u64` ids
    /// with a [`openraft::BasicNode`] address (where the tonic network of
    /// issue 4 reaches them).
    pub CatalogTypeConfig:
        D = LogEntry,
        R = CatalogResponse,
        NodeId = u64,
        Node = openraft::BasicNode,
);

pub(crate) type C = CatalogTypeConfig;
pub(crate) type LeaderId = <C as openraft::RaftTypeConfig>::LeaderId;
pub(crate) type LogId = openraft::LogId<<LeaderId as RaftLeaderId>::Committed>;
pub(crate) type Entry = <C as openraft::RaftTypeConfig>::Entry;
pub(crate) type Vote = <C as openraft::RaftTypeConfig>::Vote;
pub(crate) type StoredMembership =
    openraft::StoredMembership<<LeaderId as RaftLeaderId>::Committed, NodeId, openraft::BasicNode>;
pub(crate) type SnapshotMeta =
    openraft::SnapshotMeta<<LeaderId as RaftLeaderId>::Committed, NodeId, openraft::BasicNode>;
pub(crate) type Snapshot =
    openraft::Snapshot<<LeaderId as RaftLeaderId>::Committed, NodeId, openraft::BasicNode, Vec<u8>>;

// openraft requires `Display` of its app data (for its logs and traces): a
// one-line summary, never the whole command.
impl fmt::Display for LogEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = self.at.unix_nanos();
        match &self.command {
            Command::RecordIntent(i) => write!(f, "RecordIntent {} at {at}", i.key),
            Command::MarkUploaded { key, .. } => write!(f, "MarkUploaded {key} at {at}"),
            Command::MarkArchived { key, .. } => write!(f, "MarkArchived {key} at {at}"),
            Command::MarkReleased { key, .. } => write!(f, "MarkReleased {key} at {at}"),
            Command::MarkAbandoned { key, .. } => write!(f, "MarkAbandoned {key} at {at}"),
            Command::RecordFailure { key, attempt, .. } => {
                write!(f, "RecordFailure {key} attempt {attempt} at {at}")
            }
            Command::MarkRecalled { key, .. } => write!(f, "MarkRecalled {key} at {at}"),
            Command::PutPolicy { name, .. } => write!(f, "PutPolicy {name} at {at}"),
            Command::DeletePolicy { name } => write!(f, "DeletePolicy {name} at {at}"),
            Command::RecordRun(run) => write!(f, "RecordRun {} at {at}", run.id),
            Command::RegisterVolume(v) => write!(f, "RegisterVolume {} at {at}", v.id),
            Command::RemoveVolume { id } => write!(f, "RemoveVolume {id} at {at}"),
            Command::PutClaim(c) => write!(f, "PutClaim {} at {at}", c.pv),
            Command::DeleteClaim { pv } => write!(f, "DeleteClaim {pv} at {at}"),
            Command::RecordReplicaHeldLog { id } => {
                write!(f, "RecordReplicaHeldLog {id} at {at}")
            }
            Command::ForgetReplica { id } => write!(f, "ForgetReplica {id} at {at}"),
        }
    }
}
