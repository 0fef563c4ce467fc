//! Catalog benchmark (issue 3, "Performance"): file records committed per
//! second through the one-replica Raft group, against the disk's own synced
//! write rate. Prints figures and ratios, never asserts them.
//!
//! A real [`CatalogNode`] (production options: every append synced before it
//! commits) runs in a temporary directory under `$STRATA_CACHE/bench`, on
//! disk. Each record is a `RecordIntent` of its own file, proposed one at a
//! time, then with 16 (the mover's default concurrency) and 64 proposals in
//! flight (the catalog has no many-files command: proposals in flight are
//! its batching, one append and one fsync for all the entries that arrived
//! together). Beside each row, in the same run and on the same disk, the
//! baseline: raw RocksDB writes with `sync = true` of the same serialized
//! record, one per write, then as `WriteBatch`es of 16 and 64; the two sides
//! of a row take turns in slices. Latency is per proposal (catalog) or per
//! write (RocksDB).
//!
//! `STRATA_BENCH_CATALOG_RECORDS` sets the records per row (default 4000);
//! `STRATA_BENCH_CATALOG_DIR` another parent directory (`/dev/shm` shows the
//! cost of Raft without the disk's).
//!
//! ```text
//! source scripts/cargo-env.sh && cargo bench --bench catalog
//! STRATA_BENCH_CATALOG_RECORDS=1000 cargo bench --bench catalog
//! ```

#[path = "common/mod.rs"]
mod common;

use common::{env_number, machine, strata_cache};
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use rocksdb::{DB, DBCompressionType, Options, WriteBatch, WriteOptions};
use strata_tiering::catalog::{
    Applied, CatalogClient, Command, FileKey, Intent, LogEntry, Ownership, Sha256, Timestamp,
    Volume,
};
use strata_tiering::raft::{CatalogNode, CatalogOptions};

const VOLUME: &str = "vol-bench";
/// Proposals in flight (catalog) and records per `WriteBatch` (RocksDB).
const BATCHES: [usize; 3] = [1, 16, 64];
/// Each row alternates catalog and RocksDB this many times, so that a burst
/// of other I/O on the disk weighs on both sides alike.
const SLICES: usize = 8;

/// Time spent and per-operation latencies of one side of a row.
#[derive(Default)]
struct Timing {
    elapsed: Duration,
    latencies: Vec<Duration>,
}

fn main() {
    let records = env_number("STRATA_BENCH_CATALOG_RECORDS", 4000) as usize;
    let base = std::env::var_os("STRATA_BENCH_CATALOG_DIR")
        .map_or_else(|| strata_cache().join("bench"), PathBuf::from);
    std::fs::create_dir_all(&base).expect("create the bench directory");
    let dir = tempfile::Builder::new()
        .prefix("catalog-")
        .tempdir_in(&base)
        .expect("temporary directory");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let node = runtime.block_on(open_node(dir.path()));
    let raw = open_raw(&dir.path().join("raw"));
    println!(
        "catalog: {records} records per row in {SLICES} turns, in {} (fsync on); {}",
        dir.path().display(),
        machine()
    );
    println!(
        "{:<22}{:>11}{:>9}{:>9}   {:<22}{:>11}{:>9}{:>9}   {:>11}",
        "catalog (1 replica)",
        "records/s",
        "p50 ms",
        "p99 ms",
        "RocksDB sync",
        "records/s",
        "p50 ms",
        "p99 ms",
        "catalog/raw"
    );
    let slice = records.div_ceil(SLICES) as u64;
    let mut next = 0u64;
    for batch in BATCHES {
        let (mut catalog, mut raw_row) = (Timing::default(), Timing::default());
        for _ in 0..SLICES {
            let range = next..next + slice;
            runtime.block_on(catalog_run(&mut catalog, &node, range.clone(), batch));
            raw_run(&mut raw_row, &raw, range, batch);
            next += slice;
        }
        let records = slice as usize * SLICES;
        let (catalog, raw_row) = (catalog.row(records), raw_row.row(records));
        let (catalog_name, raw_name) = if batch == 1 {
            ("one at a time".to_owned(), "put, one per write".to_owned())
        } else {
            (
                format!("{batch} in flight"),
                format!("WriteBatch of {batch}"),
            )
        };
        println!(
            "{catalog_name:<22}{:>11.0}{:>9.2}{:>9.2}   {raw_name:<22}{:>11.0}{:>9.2}{:>9.2}   {:>11.2}",
            catalog.records_per_s,
            ms(catalog.p50),
            ms(catalog.p99),
            raw_row.records_per_s,
            ms(raw_row.p50),
            ms(raw_row.p99),
            catalog.records_per_s / raw_row.records_per_s
        );
    }
    runtime
        .block_on(node.shutdown())
        .expect("shut the catalog down");
}

async fn open_node(dir: &Path) -> Arc<CatalogNode> {
    let node = CatalogNode::open(dir, CatalogOptions::default())
        .await
        .expect("open the catalog");
    let volume = Command::RegisterVolume(Volume {
        id: VOLUME.into(),
        path: "/mnt/bench".into(),
        labels: BTreeMap::new(),
    });
    let answer = node.propose(entry(volume)).await.expect("register");
    assert_eq!(answer, Ok(Applied::Changed), "register the volume");
    Arc::new(node)
}

/// Proposes the records numbered `range`, `in_flight` at a time.
async fn catalog_run(
    timing: &mut Timing,
    node: &Arc<CatalogNode>,
    range: Range<u64>,
    in_flight: usize,
) {
    let end = range.end;
    let next = Arc::new(AtomicU64::new(range.start));
    let start = Instant::now();
    let tasks: Vec<_> = (0..in_flight)
        .map(|_| {
            let (node, next) = (Arc::clone(node), Arc::clone(&next));
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= end {
                        return latencies;
                    }
                    let t = Instant::now();
                    let answer = node.propose(record(i)).await.expect("propose");
                    latencies.push(t.elapsed());
                    assert_eq!(answer, Ok(Applied::Changed), "record {i}");
                }
            })
        })
        .collect();
    for task in tasks {
        timing.latencies.extend(task.await.expect("proposer task"));
    }
    timing.elapsed += start.elapsed();
}

/// Writes the records numbered `range` with `sync`, `batch` per write.
fn raw_run(timing: &mut Timing, db: &DB, range: Range<u64>, batch: usize) {
    let mut sync = WriteOptions::default();
    sync.set_sync(true);
    let indexes: Vec<u64> = range.collect();
    let start = Instant::now();
    for chunk in indexes.chunks(batch) {
        let t = Instant::now();
        let mut write = WriteBatch::default();
        for &i in chunk {
            let value = serde_json::to_vec(&record(i)).expect("encode a record");
            write.put(i.to_be_bytes(), value);
        }
        db.write_opt(write, &sync).expect("RocksDB write");
        timing.latencies.push(t.elapsed());
    }
    timing.elapsed += start.elapsed();
}

/// A database with the catalog store's options (lz4, no other tuning).
fn open_raw(dir: &Path) -> DB {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.set_compression_type(DBCompressionType::Lz4);
    DB::open(&opts, dir).expect("open RocksDB")
}

/// The intent of file number `i`: its own path, move and content.
fn record(i: u64) -> LogEntry {
    let path = format!(
        "a{:02}/b{:02}/c{:02}/f{i:07}.jpg",
        i / 10_000 % 100,
        i / 100 % 100,
        i % 100
    );
    let mut sha = [0u8; 32];
    for (n, b) in sha.iter_mut().enumerate() {
        *b = (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (n % 8 * 8)) as u8 ^ n as u8;
    }
    let sha256 = Sha256(sha);
    entry(Command::RecordIntent(Intent {
        key: FileKey::new(VOLUME, path.clone()),
        move_id: i + 1,
        size: 1_000_000 + i,
        mtime_ns: 1_700_000_000_000_000_000 + i as i64,
        ino: 10_000 + i,
        dev: 2049,
        ctime_ns: 1_700_000_000_000_000_000 + i as i64,
        sha256,
        owner: Some(Ownership {
            uid: 1000,
            gid: 1000,
            mode: 0o644,
        }),
        lake_key: format!("site-a/{VOLUME}/{path}/{sha256}"),
        policy: "cold-images".into(),
        rule: "older-than-7d".into(),
    }))
}

fn entry(command: Command) -> LogEntry {
    LogEntry {
        by: None,
        at: Timestamp::from_system_time(SystemTime::now()),
        command,
    }
}

/// Records per second and per-operation latencies of one row.
struct Row {
    records_per_s: f64,
    p50: Duration,
    p99: Duration,
}

impl Timing {
    fn row(mut self, records: usize) -> Row {
        self.latencies.sort();
        let at = |p: f64| self.latencies[((self.latencies.len() - 1) as f64 * p).round() as usize];
        Row {
            records_per_s: records as f64 / self.elapsed.as_secs_f64(),
            p50: at(0.50),
            p99: at(0.99),
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
