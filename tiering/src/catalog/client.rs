//! How the tiering engine talks to the catalog, wherever it runs: in this
//! process over the Raft log ([`crate::raft`]), or the plain state machine in
//! memory ([`MemoryCatalog`], for tests of the engine's logic that do not
//! need durability).

use std::future::Future;
use std::sync::{Arc, Mutex};

use super::command::LogEntry;
use super::outcome::{Applied, Rejected};
use super::state::State;

/// Why the catalog could not answer. A [`Rejected`] command is not an error
/// of the catalog: it is the answer to that command.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// No leader or no quorum right now (an election, a partition, shutdown):
    /// nothing was decided, try again later.
    #[error("catalog unavailable: {0}")]
    Unavailable(String),
    /// The catalog's storage failed; this replica has stopped.
    #[error("catalog storage failed: {0}")]
    Storage(String),
}

/// A catalog the engine can write to and read from.
///
/// Writes are proposals to the log: `propose` returns once the entry is
/// committed and applied, with the state machine's answer. Reads run a
/// function over the applied state and see every write acknowledged before
/// the read started (linearizable).
pub trait CatalogClient: Send + Sync + 'static {
    /// Commits `entry` and answers what applying it did.
    fn propose(
        &self,
        entry: LogEntry,
    ) -> impl Future<Output = Result<Result<Applied, Rejected>, CatalogError>> + Send;

    /// Runs `read` over the current state.
    fn read<T, F>(&self, read: F) -> impl Future<Output = Result<T, CatalogError>> + Send
    where
        T: Send + 'static,
        F: FnOnce(&State) -> T + Send + 'static;
}

/// The catalog state machine held in memory, applied in call order: no log,
/// no durability. For tests of the engine's decisions and for tools that
/// need a scratch catalog; a real node uses the Raft catalog.
#[derive(Clone, Default)]
pub struct MemoryCatalog {
    inner: Arc<Mutex<(u64, State)>>,
}

impl MemoryCatalog {
    /// An empty catalog.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, State)> {
        // A panic while holding the lock cannot leave the state half-changed:
        // State::apply decides before it mutates.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl CatalogClient for MemoryCatalog {
    async fn propose(&self, entry: LogEntry) -> Result<Result<Applied, Rejected>, CatalogError> {
        let mut guard = self.lock();
        let (index, state) = &mut *guard;
        *index += 1;
        Ok(state.apply_indexed(*index, &entry))
    }

    async fn read<T, F>(&self, read: F) -> Result<T, CatalogError>
    where
        T: Send + 'static,
        F: FnOnce(&State) -> T + Send + 'static,
    {
        Ok(read(&self.lock().1))
    }
}

/// A shared catalog is a catalog: the mover, the agent and the service can
/// hold one node between them.
impl<T: CatalogClient> CatalogClient for Arc<T> {
    fn propose(
        &self,
        entry: LogEntry,
    ) -> impl Future<Output = Result<Result<Applied, Rejected>, CatalogError>> + Send {
        T::propose(self, entry)
    }

    fn read<R, F>(&self, read: F) -> impl Future<Output = Result<R, CatalogError>> + Send
    where
        R: Send + 'static,
        F: FnOnce(&State) -> R + Send + 'static,
    {
        T::read(self, read)
    }
}
