//! The latest snapshot of the catalog, kept in the `snapshot` column family:
//! its openraft meta (last log id, membership) and the state's bytes,
//! written together into one table file (synced) that RocksDB then takes
//! in whole (ingestion: a synced manifest record), not through the
//! write-ahead log.
//!
//! The log's appends share the write-ahead log and wait for each other's
//! writes and syncs there: a snapshot (megabytes, and growing with the
//! catalog) written and synced through it held every append behind it. In
//! the catalog_group bench at 64 clients, each snapshot of a catalog of
//! ~10,000 volumes stalled all writes for 20–50 ms.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rocksdb::{DBCompressionType, IngestExternalFileOptions, Options, SstFileWriter};

use super::store::{CF_SNAPSHOT, Store};
use super::types::SnapshotMeta;

const KEY_META: &[u8] = b"meta";
const KEY_DATA: &[u8] = b"data";
/// The table file a snapshot is written to before RocksDB takes it in (it
/// moves the file into the database).
const INGEST_FILE: &str = "snapshot-ingest.sst";

/// Reads and replaces the stored snapshot. Blocking.
pub(crate) struct SnapshotStore {
    store: Arc<Store>,
    /// Serialises check-then-write: a snapshot built from an older state
    /// never replaces a newer one.
    write: Mutex<()>,
    counts: Arc<SnapshotCounts>,
}

/// How many snapshots a replica stored since it started. Shared apart from
/// the store, so that holding it does not keep the database open.
#[derive(Debug, Default)]
pub(crate) struct SnapshotCounts {
    /// Built from the applied state (and the log compacted behind it).
    built: AtomicU64,
    /// Received from a leader and installed.
    installed: AtomicU64,
}

impl SnapshotCounts {
    /// (built, installed).
    pub(crate) fn get(&self) -> (u64, u64) {
        (
            self.built.load(Ordering::Relaxed),
            self.installed.load(Ordering::Relaxed),
        )
    }
}

impl SnapshotStore {
    pub(crate) fn new(store: Arc<Store>) -> SnapshotStore {
        SnapshotStore {
            store,
            write: Mutex::new(()),
            counts: Arc::default(),
        }
    }

    /// The counts of snapshots stored since start.
    pub(crate) fn counts(&self) -> Arc<SnapshotCounts> {
        Arc::clone(&self.counts)
    }

    pub(crate) fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The stored snapshot, if any.
    pub(crate) fn load(&self) -> io::Result<Option<(SnapshotMeta, Vec<u8>)>> {
        let s = &self.store;
        let Some(meta) = s.get_json::<SnapshotMeta>(CF_SNAPSHOT, KEY_META)? else {
            return Ok(None);
        };
        let data = s
            .db()
            .get_cf(s.cf(CF_SNAPSHOT)?, KEY_DATA)
            .map_err(|e| s.rocks("read the snapshot", e))?
            .ok_or_else(|| s.corrupt(format!("snapshot meta {meta} is stored without its data")))?;
        Ok(Some((meta, data)))
    }

    /// Stores `data` as the snapshot described by `meta`, on disk when this
    /// returns. Unless `replace_newer`, a stored snapshot that covers more of
    /// the log is kept and `false` is returned.
    pub(crate) fn save(
        &self,
        meta: &SnapshotMeta,
        data: &[u8],
        replace_newer: bool,
    ) -> io::Result<bool> {
        let s = &self.store;
        let _guard = self.write.lock().unwrap_or_else(|e| e.into_inner());
        if !replace_newer
            && let Some(stored) = s.get_json::<SnapshotMeta>(CF_SNAPSHOT, KEY_META)?
            && stored.last_log_id > meta.last_log_id
        {
            return Ok(false);
        }
        let cf = s.cf(CF_SNAPSHOT)?;
        let meta_json = s.to_json("the snapshot meta", meta)?;
        // Both keys in one file, in key order; RocksDB takes it whole or
        // not at all. A file left over by a crash is written over here.
        let file = s.dir().join(INGEST_FILE);
        let table = || -> Result<(), rocksdb::Error> {
            let mut opts = Options::default();
            opts.set_compression_type(DBCompressionType::Lz4);
            let mut writer = SstFileWriter::create(&opts);
            writer.open(&file)?;
            writer.put(KEY_DATA, data)?;
            writer.put(KEY_META, &meta_json)?;
            // Syncs the file.
            writer.finish()
        };
        table().map_err(|e| s.rocks("write the snapshot's table file", e))?;
        let mut ingest = IngestExternalFileOptions::default();
        ingest.set_move_files(true);
        s.db()
            .ingest_external_file_cf_opts(cf, &ingest, vec![&file])
            .map_err(|e| s.rocks("store the snapshot", e))?;
        let count = if replace_newer {
            &self.counts.installed
        } else {
            &self.counts.built
        };
        count.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }
}
