//! openraft's own storage test suite (`openraft::testing::log::Suite`) run
//! against the catalog's RocksDB log store and state machine.

use std::io;

use openraft::testing::log::{StoreBuilder, Suite};
use openraft::{ErrorSubject, ErrorVerb, StorageError};
use strata_tiering::raft::{CatalogTypeConfig, LogStore, StateMachineStore, open_stores};
use tempfile::TempDir;

type C = CatalogTypeConfig;

/// Each suite case gets fresh stores in a fresh directory; the directory
/// goes when the case is done.
struct RocksBuilder;

impl StoreBuilder<C, LogStore, StateMachineStore, TempDir> for RocksBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<C>> {
        let err = |e: String| {
            StorageError::from_io_error(ErrorSubject::Store, ErrorVerb::Write, io::Error::other(e))
        };
        let dir = TempDir::new().map_err(|e| err(e.to_string()))?;
        let path = dir.path().to_owned();
        let (log, sm) = tokio::task::spawn_blocking(move || open_stores(&path))
            .await
            .map_err(|e| err(e.to_string()))?
            .map_err(|e| err(e.to_string()))?;
        Ok((dir, log, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite() {
    if let Err(e) = Suite::test_all(RocksBuilder).await {
        panic!("openraft storage suite: {e}");
    }
}
