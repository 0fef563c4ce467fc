//! The catalog [`State`] as openraft's state machine.
//!
//! The state lives in memory, behind a lock shared with the
//! [`CatalogNode`](super::CatalogNode) for reads. It is not written on every
//! apply: it is made durable by snapshots (synced into RocksDB with their
//! last log id and membership), and on restart it is restored from the
//! latest snapshot, then openraft re-applies the log after it up to the
//! saved commit index. So the last applied log id and the last membership
//! are persisted exactly as far as the state they describe.

use std::io;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use futures::{Stream, TryStreamExt};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend};

use super::error::RaftCatalogError;
use super::metrics::ReplicaTimings;
use super::snapshot_store::SnapshotStore;
use super::store::Store;
use super::types::{C, CatalogResponse, LogId, Snapshot, SnapshotMeta, StoredMembership};
use crate::catalog::{Applied, State};

/// The applied state and where in the log it stands.
#[derive(Default)]
pub(crate) struct AppliedState {
    pub(crate) state: State,
    pub(crate) last_applied: Option<LogId>,
    pub(crate) membership: StoredMembership,
}

/// The applied state, shared between the state machine and the readers.
#[derive(Clone, Default)]
pub(crate) struct SharedState(Arc<RwLock<AppliedState>>);

impl SharedState {
    // A panic while holding the lock cannot leave the state half-changed:
    // `State::apply` decides before it mutates.
    pub(crate) fn read(&self) -> RwLockReadGuard<'_, AppliedState> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, AppliedState> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// The catalog's Raft state machine (openraft [`RaftStateMachine`]).
pub struct StateMachineStore {
    shared: SharedState,
    snapshots: Arc<SnapshotStore>,
    timings: ReplicaTimings,
}

/// Builds a snapshot of the applied state (openraft [`RaftSnapshotBuilder`]).
pub struct SnapshotBuilder {
    shared: SharedState,
    snapshots: Arc<SnapshotStore>,
    timings: ReplicaTimings,
}

/// A duration in milliseconds, to a tenth, for the log.
fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

fn show(id: Option<&LogId>) -> String {
    id.map_or_else(|| "(none)".to_owned(), |id| id.to_string())
}

/// The state a stored or received snapshot describes, checked against its
/// meta.
fn restore(store: &Store, meta: &SnapshotMeta, data: &[u8]) -> io::Result<State> {
    let state = State::from_snapshot(data).map_err(|e| {
        store.corrupt(format!(
            "snapshot up to log {}: {e}",
            show(meta.last_log_id.as_ref())
        ))
    })?;
    let want = meta.last_log_id.as_ref().map(|id| id.index);
    if state.last_applied() != want {
        return Err(store.corrupt(format!(
            "snapshot meta says it ends at log {}, its state at index {:?}",
            show(meta.last_log_id.as_ref()),
            state.last_applied()
        )));
    }
    Ok(state)
}

impl StateMachineStore {
    /// The state machine over `store`, restored from its latest snapshot.
    /// Blocking.
    pub(crate) fn open(store: Arc<Store>) -> Result<StateMachineStore, RaftCatalogError> {
        let snapshots = Arc::new(SnapshotStore::new(Arc::clone(&store)));
        let corrupt = |e: io::Error| RaftCatalogError::Corrupt {
            dir: store.dir().to_owned(),
            what: e.to_string(),
        };
        let applied = match snapshots.load().map_err(corrupt)? {
            None => AppliedState::default(),
            Some((meta, data)) => AppliedState {
                state: restore(&store, &meta, &data).map_err(corrupt)?,
                last_applied: meta.last_log_id,
                membership: meta.last_membership,
            },
        };
        Ok(StateMachineStore {
            shared: SharedState(Arc::new(RwLock::new(applied))),
            snapshots,
            timings: ReplicaTimings::default(),
        })
    }

    pub(crate) fn shared(&self) -> SharedState {
        self.shared.clone()
    }

    pub(crate) fn timings(&self) -> ReplicaTimings {
        self.timings.clone()
    }

    pub(crate) fn snapshot_counts(&self) -> Arc<super::snapshot_store::SnapshotCounts> {
        self.snapshots.counts()
    }

    /// Reads what this replica has applied (not a linearizable read: a
    /// follower may be behind its leader).
    pub fn read_applied<T>(&self, read: impl FnOnce(&State) -> T) -> T {
        read(&self.shared.read().state)
    }
}

impl RaftStateMachine<C> for StateMachineStore {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let applied = self.shared.read();
        Ok((applied.last_applied, applied.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<C>, io::Error>> + Unpin + OptionalSend,
    {
        // An entry that cannot be read (it does not decode) ends the stream
        // with an error: openraft stops this replica, nothing after it is
        // applied.
        while let Some((entry, responder)) = entries.try_next().await? {
            let log_id = entry.log_id();
            let index = log_id.index;
            let started = Instant::now();
            let response: CatalogResponse = {
                let mut applied = self.shared.write();
                let response = match entry.payload {
                    EntryPayload::Normal(ref cmd) => applied.state.apply_indexed(index, cmd),
                    EntryPayload::Blank => {
                        applied.state.skip_to(index);
                        Ok(Applied::Unchanged)
                    }
                    EntryPayload::Membership(ref m) => {
                        applied.state.skip_to(index);
                        applied.membership = StoredMembership::new(Some(log_id), m.clone());
                        Ok(Applied::Unchanged)
                    }
                };
                applied.last_applied = Some(log_id);
                response
            };
            self.timings.apply.observe(started.elapsed().as_secs_f64());
            if let Some(responder) = responder {
                responder.send(response);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            shared: self.shared.clone(),
            snapshots: Arc::clone(&self.snapshots),
            timings: self.timings.clone(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Vec<u8>,
    ) -> Result<(), io::Error> {
        let snapshots = Arc::clone(&self.snapshots);
        let meta = meta.clone();
        let (meta, state) = self
            .snapshots
            .store()
            .blocking(move |s| {
                // Validate before anything is replaced: a snapshot that does
                // not restore is a storage error, the old state stays.
                let state = restore(s, &meta, &snapshot)?;
                snapshots.save(&meta, &snapshot, true)?;
                Ok((meta, state))
            })
            .await?;
        let mut applied = self.shared.write();
        applied.state = state;
        applied.last_applied = meta.last_log_id;
        applied.membership = meta.last_membership;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let snapshots = Arc::clone(&self.snapshots);
        let stored = self
            .snapshots
            .store()
            .blocking(move |_| snapshots.load())
            .await?;
        Ok(stored.map(|(meta, snapshot)| Snapshot { meta, snapshot }))
    }
}

impl RaftSnapshotBuilder<C> for SnapshotBuilder {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let shared = self.shared.clone();
        let snapshots = Arc::clone(&self.snapshots);
        let histogram = self.timings.snapshot_build.clone();
        // Serialising a large catalog takes a while: on a blocking thread,
        // from a copy taken under the read lock. The state's maps are
        // persistent, so the copy is O(1) and applies do not wait for it.
        self.snapshots
            .store()
            .blocking(move |_| {
                let started = Instant::now();
                let (meta, state) = {
                    let applied = shared.read();
                    let meta = SnapshotMeta {
                        last_log_id: applied.last_applied,
                        last_membership: applied.membership.clone(),
                    };
                    (meta, applied.state.clone())
                };
                let copied = started.elapsed();
                let data = state.to_snapshot();
                drop(state);
                let encoded = started.elapsed();
                snapshots.save(&meta, &data, false)?;
                let total = started.elapsed();
                histogram.observe(total.as_secs_f64());
                tracing::info!(
                    up_to = %show(meta.last_log_id.as_ref()),
                    bytes = data.len(),
                    copy_ms = ms(copied),
                    encode_ms = ms(encoded - copied),
                    store_ms = ms(total - encoded),
                    "catalog snapshot built"
                );
                Ok(Snapshot {
                    meta,
                    snapshot: data,
                })
            })
            .await
    }
}
