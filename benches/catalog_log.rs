//! Catalog log compaction (issue 4: "disk use stays bounded"): 1,000,000
//! entries through a one-replica catalog with the default compaction
//! settings, then the size of its store on disk and how many entries its log
//! still holds. Prints figures, never asserts them.
//!
//! The entries are `RegisterVolume`s cycling over 1,000 volume ids with a new
//! path each time, so the catalog's state stays small and what is measured is
//! the log and its compaction (a snapshot every `snapshot_every` entries,
//! default 10,000, and the log purged behind it but for the last
//! `logs_kept_after_snapshot`, default 1,000). 64 proposals are in flight.
//!
//! ```text
//! source scripts/cargo-env.sh && cargo bench --bench catalog_log
//! STRATA_BENCH_LOG_ENTRIES=100000 cargo bench --bench catalog_log
//! ```

#[path = "common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{env_number, machine, strata_cache};
use futures::StreamExt;
use strata_tiering::catalog::{CatalogClient, Command, LogEntry, Timestamp, Volume};
use strata_tiering::raft::{CatalogNode, CatalogOptions};

const IN_FLIGHT: usize = 64;
const VOLUMES: u64 = 1000;

fn entry(n: u64) -> LogEntry {
    LogEntry {
        by: None,
        at: Timestamp::from_unix_nanos(1_000_000_000 + n),
        command: Command::RegisterVolume(Volume {
            id: format!("vol-{}", n % VOLUMES),
            path: format!("/mnt/line-{n}"),
            labels: BTreeMap::new(),
        }),
    }
}

/// Bytes on disk under `dir`: in all, in RocksDB's write-ahead log files
/// (`*.log`) and in its table files (`*.sst`).
#[derive(Default, Clone, Copy)]
struct Usage {
    total: u64,
    wal: u64,
    sst: u64,
}

fn usage(dir: &Path) -> Usage {
    let mut u = Usage::default();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let m = e.metadata().unwrap();
        if m.is_dir() {
            let sub = usage(&e.path());
            u.total += sub.total;
            u.wal += sub.wal;
            u.sst += sub.sst;
            continue;
        }
        u.total += m.len();
        match e.path().extension().and_then(|x| x.to_str()) {
            Some("log") => u.wal += m.len(),
            Some("sst") => u.sst += m.len(),
            _ => {}
        }
    }
    u
}

fn size_of(dir: &Path) -> u64 {
    usage(dir).total
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn main() {
    let entries = env_number("STRATA_BENCH_LOG_ENTRIES", 1_000_000);
    let base: PathBuf = strata_cache().join("bench");
    std::fs::create_dir_all(&base).unwrap();
    let dir = tempfile::Builder::new()
        .prefix("catalog-log-")
        .tempdir_in(&base)
        .unwrap();
    let options = CatalogOptions::default();
    println!(
        "catalog log: {entries} entries ({IN_FLIGHT} in flight) into one replica in {} \
         (fsync on; snapshot every {} entries, {} kept behind it); {}",
        dir.path().display(),
        options.snapshot_every,
        options.logs_kept_after_snapshot,
        machine()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let node = Arc::new(CatalogNode::open(dir.path(), options).await.unwrap());
        let store = node.dir().to_owned();
        let started = Instant::now();
        let mut peak = 0;
        let mut done = 0u64;
        let mut writes = futures::stream::iter(0..entries)
            .map(|n| {
                let node = node.clone();
                async move { node.propose(entry(n)).await }
            })
            .buffer_unordered(IN_FLIGHT);
        while let Some(answer) = writes.next().await {
            answer.expect("propose").expect("applied");
            done += 1;
            if done.is_multiple_of(50_000) {
                let now = size_of(&store);
                peak = peak.max(now);
                let m = node.metrics();
                println!(
                    "{done:>9} entries  {:>8.1} MiB on disk  log holds {:>6} entries  {:>6.0} entries/s",
                    mib(now),
                    m.last_log_index.unwrap_or(0) - m.purged_index.unwrap_or(0),
                    done as f64 / started.elapsed().as_secs_f64()
                );
            }
        }
        let elapsed = started.elapsed();
        // RocksDB compacts in the background: let it settle.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let m = node.metrics();
        let u = usage(&store);
        let end = u.total;
        println!(
            "\nafter {entries} entries in {:.0} s: {:.1} MiB on disk ({:.1} MiB write-ahead log, \
             {:.1} MiB tables; peak seen {:.1} MiB), the log holds {} entries (last {}, purged up \
             to {}), snapshot at {}, {} snapshots built",
            elapsed.as_secs_f64(),
            mib(end),
            mib(u.wal),
            mib(u.sst),
            mib(peak.max(end)),
            m.last_log_index.unwrap_or(0) - m.purged_index.unwrap_or(0),
            m.last_log_index.unwrap_or(0),
            m.purged_index.unwrap_or(0),
            m.snapshot_index.unwrap_or(0),
            m.snapshots_built
        );
        node.shutdown().await.unwrap();
    });
}
