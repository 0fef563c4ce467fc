//! openraft's own storage test suite (`openraft::testing::log::Suite`) run
//! against the catalog's RocksDB log store and state machine, and the log
//! store reopened after it has written over recycled write-ahead log files.

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, RaftLogReader, RaftLogStorage};
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::testing::log_id;
use openraft::type_config::TypeConfigExt;
use openraft::{ErrorSubject, ErrorVerb, RaftTypeConfig, StorageError};
use strata_tiering::catalog::{Command, LogEntry, Timestamp, Volume};
use strata_tiering::raft::{CatalogTypeConfig, LogStore, StateMachineStore, open_stores};
use tempfile::TempDir;

type C = CatalogTypeConfig;
type Entry = <C as RaftTypeConfig>::Entry;

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

/// Opens the stores in `dir`, waiting for an earlier opening's database to
/// be closed (its writer thread lets go of it just after the drop).
async fn reopen(dir: &Path) -> (LogStore, StateMachineStore) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let path = dir.to_owned();
        match tokio::task::spawn_blocking(move || open_stores(&path))
            .await
            .unwrap()
        {
            Ok(stores) => return stores,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("open the stores in {}: {e}", dir.display()),
        }
    }
}

/// Entry `index`, about 1 MiB, its path telling its index.
fn big_entry(index: u64) -> Entry {
    let path = format!("/{index:08}/{}", "x".repeat(1 << 20));
    Entry::new_normal(
        log_id::<C>(1, 1, index),
        LogEntry {
            by: None,
            at: Timestamp::from_unix_nanos(index),
            command: Command::RegisterVolume(Volume {
                id: format!("vol-{index}"),
                path,
                labels: Default::default(),
            }),
        },
    )
}

/// The lines of the store's RocksDB info logs that contain `what`.
fn info_log_lines(dir: &Path, what: &str) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("LOG"))
        .map(|e| {
            std::fs::read_to_string(e.path())
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains(what))
                .count()
        })
        .sum()
}

/// Synced appends are what make a follower's acknowledgement; once the log
/// has filled its first write-ahead log files, RocksDB writes new ones over
/// old ones in place (so a sync carries no inode update). Every entry
/// acknowledged into a recycled file is there, byte for byte, after the
/// store is opened again and replays that file (the memtable holding the
/// last entries was never flushed), and nothing of the file's old contents
/// is read back as an entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_synced_into_recycled_wal_files_are_all_there_after_reopening() {
    let tmp = TempDir::new().unwrap();
    let (mut log, sm) = reopen(tmp.path()).await;
    let mut last = 0;
    // About 1 MiB an entry: past 32 MiB of WAL the oldest file is flushed
    // and put on the recycle list, and the switch after that reuses it.
    while info_log_lines(tmp.path(), "from recycle list") == 0 {
        assert!(
            last < 400,
            "no WAL file was reused after {last} MiB of entries"
        );
        let (tx, rx) = C::oneshot();
        let batch: Vec<_> = (last + 1..=last + 4).map(big_entry).collect();
        log.append(batch, IOFlushed::signal(tx)).await.unwrap();
        rx.await.unwrap().expect("the append is synced");
        last += 4;
    }
    // A few more, acknowledged one by one, all in the reused file.
    for index in last + 1..=last + 3 {
        let (tx, rx) = C::oneshot();
        log.append([big_entry(index)], IOFlushed::signal(tx))
            .await
            .unwrap();
        rx.await.unwrap().expect("the append is synced");
    }
    last += 3;
    drop((log, sm));

    let (mut log, _sm) = reopen(tmp.path()).await;
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_log_id.map(|id| id.index), Some(last));
    let mut reader = log.get_log_reader().await;
    // In slices, so at most 32 MiB of entries are held at once.
    for from in (1..=last).step_by(32) {
        let to = (from + 32).min(last + 1);
        let entries = reader.try_get_log_entries(from..to).await.unwrap();
        let indexes: Vec<u64> = entries.iter().map(|e| e.index()).collect();
        assert_eq!(indexes, (from..to).collect::<Vec<_>>());
        for entry in entries {
            assert_eq!(entry, big_entry(entry.index()), "entry {}", entry.index());
        }
    }
}
