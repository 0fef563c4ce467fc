//! Which voters have held the log, recorded in the catalog itself.
//!
//! A replica that comes back on an empty store must not take its old seat
//! as a voter (it forgot its vote and log); one that starts for the first
//! time must. What tells them apart is whether some leader ever saw it
//! acknowledge the log. A leader's own replication progress says so only
//! for that leader's term, so the leader also commits it
//! ([`Command::RecordReplicaHeldLog`]): every later leader then knows too,
//! and `refuse_lost_voter` asks for it through `ListMembers`.

use std::time::Duration;

use openraft::Raft;
use openraft::async_runtime::WatchReceiver;
use openraft::error::{ClientWriteError, RaftError};

use super::state_machine::{SharedState, StateMachineStore};
use super::types::{C, NodeId};
use crate::catalog::{Command, LogEntry, Timestamp};

/// How often a leader looks for voters to record.
const EVERY: Duration = Duration::from_secs(1);

/// While replica `me` leads, commits each voter it has seen acknowledge the
/// log (itself included) that the catalog does not list yet. Ends when the
/// Raft core stops.
pub(crate) async fn record_voters_holding_log(
    raft: Raft<C, StateMachineStore>,
    shared: SharedState,
    me: NodeId,
) {
    // The core drops the sender of its server metrics when it stops.
    let mut server = raft.server_metrics();
    loop {
        tokio::select! {
            () = tokio::time::sleep(EVERY) => {}
            changed = server.changed() => match changed {
                Ok(()) => continue,
                Err(_) => return,
            },
        }
        for id in unrecorded(&raft, &shared, me) {
            let entry = LogEntry {
                by: None,
                at: Timestamp::now(),
                command: Command::RecordReplicaHeldLog { id },
            };
            match raft.client_write(entry).await {
                Ok(_) => tracing::info!(id, "catalog: replica recorded as holding the log"),
                Err(RaftError::Fatal(_)) => return,
                // No longer the leader: the next one records it.
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => break,
                Err(e) => {
                    tracing::warn!(id, error = %e, "catalog: recording a voter that holds the log");
                    break;
                }
            }
        }
    }
}

/// The voters this leader has seen acknowledge the log and the catalog
/// does not list; nothing when `me` does not lead.
fn unrecorded(raft: &Raft<C, StateMachineStore>, shared: &SharedState, me: NodeId) -> Vec<NodeId> {
    let rx = raft.metrics();
    let m = rx.borrow_watched();
    if m.current_leader != Some(me) {
        return Vec::new();
    }
    let acked = |id: &NodeId| {
        *id == me
            || m.replication
                .as_ref()
                .and_then(|r| r.get(id))
                .is_some_and(Option::is_some)
    };
    let applied = shared.read();
    m.membership_config
        .membership()
        .voter_ids()
        .filter(|id| acked(id) && !applied.state.replica_held_log(*id))
        .collect()
}
