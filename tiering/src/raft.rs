//! The catalog's Raft: openraft over RocksDB, one replica in-process or a
//! networked group of `strata catalog` replicas.
//!
//! The [`catalog`](crate::catalog) state machine is deterministic and does
//! no I/O; this module makes it durable and (later) replicated:
//!
//! - [`types`](CatalogTypeConfig): log entries are [`LogEntry`](crate::catalog::LogEntry)s,
//!   answers are [`CatalogResponse`]s, replicas are `u64` ids with an address;
//! - [`LogStore`]: the log, vote and commit index in RocksDB, written in
//!   order by one thread; votes and appended entries are fsynced before
//!   openraft is told (one WAL sync per append batch);
//! - [`StateMachineStore`]: the state in memory, made durable by snapshots
//!   in RocksDB, restored from the latest one on restart;
//! - [`NoNetwork`]: a one-member group sends no RPCs;
//! - [`GrpcNetwork`] and [`RaftService`]: the replicas of a larger group
//!   talk openraft's RPCs over tonic (`proto/strata/v1/raft.proto`);
//! - [`CatalogNode`]: opens all of it under `<data_dir>/catalog` (checking
//!   the store's [`ReplicaIdentity`]) and serves
//!   [`CatalogClient`](crate::catalog::CatalogClient);
//! - [`CatalogApi`] and [`RemoteCatalog`]: the group's client API
//!   (`proto/strata/v1/catalog.proto`), any replica answering and
//!   forwarding to the leader, and its client.
//!
//! A record that does not decode (a log entry, a snapshot, a vote) is a
//! storage error: the replica stops with a message naming the record, and
//! never applies it.

mod addresses;
mod api;
mod error;
mod grpc;
mod held_log;
mod identity;
mod leader_link;
mod limits;
mod log_store;
mod metrics;
mod network;
mod node;
mod recent;
mod remote;
mod replica;
mod snapshot_schedule;
mod snapshot_store;
mod state_machine;
mod store;
mod types;
mod writer;

use std::path::Path;
use std::sync::Arc;

pub use api::{CatalogApi, check_member_address};
pub use error::RaftCatalogError;
pub use grpc::{GrpcNetwork, GrpcPeer, RaftService};
pub use identity::{DEFAULT_CLUSTER, ReplicaIdentity, node_replica_id};
pub use log_store::{LogReader, LogStore};
pub use metrics::CatalogCollector;
pub use network::{NoNetwork, UnreachablePeer};
pub use node::{CatalogMetrics, CatalogNode, CatalogOptions, ReplicaStart};
pub use remote::{RemoteCatalog, RemoteState};
pub use replica::{JoinAs, join_group, refuse_lost_voter, serve_replica};
pub use state_machine::{SnapshotBuilder, StateMachineStore};
pub use types::{CatalogResponse, CatalogTypeConfig, NodeId, SINGLE_NODE_ID};

/// Opens (or creates) the RocksDB store in `dir` and returns openraft's two
/// stores over it, the state machine restored from the latest snapshot.
/// [`CatalogNode::open`] does this for `<data_dir>/catalog`; this is for
/// tests of the stores (openraft's suite) and tools.
///
/// Blocking: call it from a blocking thread in async code. The stores use
/// tokio's blocking pool, so they need a tokio runtime.
pub fn open_stores(dir: &Path) -> Result<(LogStore, StateMachineStore), RaftCatalogError> {
    let (log, sm, _) = open_stores_at(dir)?;
    Ok((log, sm))
}

fn open_stores_at(
    dir: &Path,
) -> Result<(LogStore, StateMachineStore, Arc<store::Store>), RaftCatalogError> {
    let store = store::Store::open(dir)?;
    let log = LogStore::new(Arc::clone(&store)).map_err(|source| RaftCatalogError::Io {
        dir: dir.to_owned(),
        op: "start the log writer thread",
        source,
    })?;
    let sm = StateMachineStore::open(Arc::clone(&store))?;
    Ok((log, sm, store))
}
