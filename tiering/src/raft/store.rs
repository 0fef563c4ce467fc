//! The catalog's RocksDB database: one directory, three column families.
//!
//! | column family | key | value |
//! |---|---|---|
//! | `log` | log index, 8 bytes big-endian (iteration is log order) | the openraft entry, JSON |
//! | `meta` | `vote`, `committed`, `last_purged`, `format` | JSON (`format`: a version string) |
//! | `snapshot` | `meta`, `data` | openraft snapshot meta (JSON), [`State::to_snapshot`] bytes |
//!
//! Everything here blocks. Reads, syncs and large writes run on a blocking
//! thread ([`Store::blocking`]) or the log writer's own thread, never on the
//! async workers; the one exception is [`Store::write_unsynced`], a small
//! batch into the memtable and the WAL's buffer (microseconds).
//!
//! [`State::to_snapshot`]: crate::catalog::State::to_snapshot

use std::io;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::entry::RaftEntry;
use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, DB, DBCompressionType, DBRecoveryMode, Direction,
    IteratorMode, Options,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use super::error::RaftCatalogError;
use super::types::{Entry, LogId};

pub(crate) const CF_LOG: &str = "log";
pub(crate) const CF_META: &str = "meta";
pub(crate) const CF_SNAPSHOT: &str = "snapshot";

pub(crate) const KEY_VOTE: &[u8] = b"vote";
pub(crate) const KEY_COMMITTED: &[u8] = b"committed";
pub(crate) const KEY_LAST_PURGED: &[u8] = b"last_purged";
const KEY_FORMAT: &[u8] = b"format";
/// Written into a fresh store; an existing store must carry the same.
const FORMAT: &[u8] = b"strata-catalog-raft/1";

/// The opened database and where it lives (for error messages).
pub(crate) struct Store {
    // Fields drop in order: the database is closed before `closed` tells.
    db: DB,
    dir: PathBuf,
    /// Never sent on: its receivers see it go when the store is closed.
    closed: watch::Sender<()>,
}

/// The key of the log entry at `index`.
pub(crate) fn log_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// The write-ahead log's size at most (before it forces flushes).
const MAX_TOTAL_WAL_SIZE: u64 = 32 * 1024 * 1024;

/// Obsolete write-ahead log files kept to be written over by the next ones
/// (each about [`MAX_TOTAL_WAL_SIZE`] on disk). One is enough: a full WAL
/// file's memtables are flushed long before the next one is full.
const WAL_FILES_RECYCLED: usize = 1;

impl Store {
    /// Opens (or creates) the database in `dir`.
    pub(crate) fn open(dir: &Path) -> Result<Arc<Store>, RaftCatalogError> {
        std::fs::create_dir_all(dir).map_err(|source| RaftCatalogError::Io {
            dir: dir.to_owned(),
            op: "create the directory",
            source,
        })?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_compression_type(DBCompressionType::Lz4);
        opts.set_keep_log_file_num(4);
        // A write-ahead log file is deleted only once every column family
        // with data in it has flushed its memtable. The meta family (vote,
        // committed index) takes a few bytes per write and would never fill
        // its memtable, so it would pin every log file there ever was: the
        // store grew by ≈ 200 bytes per entry, purged or not. Past this
        // size RocksDB flushes the families holding the oldest log file.
        opts.set_max_total_wal_size(MAX_TOTAL_WAL_SIZE);
        // Every acknowledged append waits for an fdatasync of the WAL. While
        // a WAL file grows, that sync also writes the file's inode (its new
        // size): ≈ 250 µs a sync on this kind of disk against ≈ 180 µs for
        // a file written over in place. With recycling, RocksDB starts each
        // new WAL file by writing over an obsolete one (its records carry
        // the file's number, so old records past the new end are told
        // apart on replay). It recycles only in point-in-time recovery,
        // RocksDB's default mode, set here so that it stays so.
        opts.set_wal_recovery_mode(DBRecoveryMode::PointInTime);
        opts.set_recycle_log_file_num(WAL_FILES_RECYCLED);
        let cfs = [CF_LOG, CF_META, CF_SNAPSHOT].map(|name| {
            let mut cf = Options::default();
            cf.set_compression_type(DBCompressionType::Lz4);
            ColumnFamilyDescriptor::new(name, cf)
        });
        let db =
            DB::open_cf_descriptors(&opts, dir, cfs).map_err(|source| RaftCatalogError::Open {
                dir: dir.to_owned(),
                source,
            })?;
        let store = Store {
            db,
            dir: dir.to_owned(),
            closed: watch::Sender::new(()),
        };
        store
            .check_format()
            .map_err(|e| RaftCatalogError::Corrupt {
                dir: dir.to_owned(),
                what: e.to_string(),
            })?;
        Ok(Arc::new(store))
    }

    /// A fresh store gets this build's format marker; an existing one must
    /// already carry it.
    fn check_format(&self) -> io::Result<()> {
        let meta = self.cf(CF_META)?;
        match self
            .db
            .get_cf(meta, KEY_FORMAT)
            .map_err(|e| self.rocks("read the format marker", e))?
        {
            Some(found) if found == FORMAT => Ok(()),
            Some(found) => Err(self.corrupt(format!(
                "store format {:?}, this build reads {:?}",
                String::from_utf8_lossy(&found),
                String::from_utf8_lossy(FORMAT)
            ))),
            None => {
                let empty = [CF_LOG, CF_META, CF_SNAPSHOT]
                    .iter()
                    .try_fold(true, |acc, cf| {
                        let cf = self.cf(cf)?;
                        Ok::<_, io::Error>(
                            acc && self
                                .db
                                .iterator_cf(cf, IteratorMode::Start)
                                .next()
                                .is_none(),
                        )
                    })?;
                if !empty {
                    return Err(self.corrupt("records present but no format marker".into()));
                }
                let mut sync = rocksdb::WriteOptions::default();
                sync.set_sync(true);
                self.db
                    .put_cf_opt(meta, KEY_FORMAT, FORMAT, &sync)
                    .map_err(|e| self.rocks("write the format marker", e))
            }
        }
    }

    /// Resolves (with an error) once this store is dropped and its database
    /// closed, so that the directory can be opened again.
    pub(crate) fn closed(&self) -> watch::Receiver<()> {
        self.closed.subscribe()
    }

    /// The directory of the database.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The database.
    pub(crate) fn db(&self) -> &DB {
        &self.db
    }

    /// Writes `batch` into the memtable and the WAL, not synced, on the
    /// calling task: for the small writes on the path of every append and
    /// commit, where a hop to the writer thread and back cost more than the
    /// write. The writer thread's next WAL sync covers it.
    pub(crate) fn write_unsynced(&self, op: &str, batch: rocksdb::WriteBatch) -> io::Result<()> {
        self.db.write(batch).map_err(|e| self.rocks(op, e))
    }

    /// A column family (all three exist once `open` succeeded).
    pub(crate) fn cf(&self, name: &str) -> io::Result<&ColumnFamily> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| self.corrupt(format!("column family {name} is missing")))
    }

    /// Runs blocking store work on tokio's blocking pool.
    pub(crate) async fn blocking<T, F>(self: &Arc<Self>, f: F) -> io::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> io::Result<T> + Send + 'static,
    {
        let store = Arc::clone(self);
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| io::Error::other(format!("catalog store task failed: {e}")))?
    }

    /// An error for data that cannot be trusted, naming the store.
    pub(crate) fn corrupt(&self, what: String) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("catalog store {}: {what}", self.dir.display()),
        )
    }

    /// An error of RocksDB while doing `op`, naming the store.
    pub(crate) fn rocks(&self, op: &str, e: rocksdb::Error) -> io::Error {
        io::Error::other(format!("catalog store {}: {op}: {e}", self.dir.display()))
    }

    /// Reads and decodes the JSON value at `key`.
    pub(crate) fn get_json<T: DeserializeOwned>(
        &self,
        cf: &str,
        key: &[u8],
    ) -> io::Result<Option<T>> {
        let what = String::from_utf8_lossy(key);
        let Some(bytes) = self
            .db
            .get_pinned_cf(self.cf(cf)?, key)
            .map_err(|e| self.rocks(&format!("read {cf}/{what}"), e))?
        else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| self.corrupt(format!("{cf}/{what} does not decode: {e}")))
    }

    /// Encodes `value` as JSON for `key` (encoding plain data cannot fail,
    /// but the error is still reported, never unwrapped).
    pub(crate) fn to_json<T: Serialize>(&self, what: &str, value: &T) -> io::Result<Vec<u8>> {
        serde_json::to_vec(value).map_err(|e| {
            io::Error::other(format!(
                "catalog store {}: encode {what}: {e}",
                self.dir.display()
            ))
        })
    }

    /// Decodes the log entry stored under `key`, checking that it is the
    /// entry of that index. A failure stops the replica: applying garbage,
    /// or skipping an entry, would silently fork its state.
    pub(crate) fn decode_entry(&self, key: &[u8], value: &[u8]) -> io::Result<Entry> {
        let index = self.key_index(key)?;
        let entry: Entry = serde_json::from_slice(value).map_err(|e| {
            self.corrupt(format!(
                "log entry at index {index} does not decode ({e}); this replica stops rather than apply it"
            ))
        })?;
        if entry.index() != index {
            return Err(self.corrupt(format!(
                "log entry stored at index {index} is the entry of index {}",
                entry.index()
            )));
        }
        Ok(entry)
    }

    fn key_index(&self, key: &[u8]) -> io::Result<u64> {
        let bytes: [u8; 8] = key
            .try_into()
            .map_err(|_| self.corrupt(format!("log key {key:02x?} is not 8 bytes")))?;
        Ok(u64::from_be_bytes(bytes))
    }

    /// The log entries with an index in `range`, in order. Entries may be
    /// missing only at the start (purged) and at the end (not yet
    /// appended); a hole inside is an error. One RocksDB iterator reads
    /// them all, so the result is one consistent view.
    pub(crate) fn read_entries(&self, range: (Bound<u64>, Bound<u64>)) -> io::Result<Vec<Entry>> {
        let start = match range.0 {
            Bound::Included(i) => i,
            Bound::Excluded(i) => match i.checked_add(1) {
                Some(i) => i,
                None => return Ok(Vec::new()),
            },
            Bound::Unbounded => 0,
        };
        let end_incl = match range.1 {
            Bound::Included(i) => Some(i),
            Bound::Excluded(0) => return Ok(Vec::new()),
            Bound::Excluded(i) => Some(i - 1),
            Bound::Unbounded => None,
        };
        let mut entries = Vec::new();
        let key = log_key(start);
        let iter = self.db.iterator_cf(
            self.cf(CF_LOG)?,
            IteratorMode::From(&key, Direction::Forward),
        );
        for item in iter {
            let (k, v) = item.map_err(|e| self.rocks("read the log", e))?;
            let index = self.key_index(&k)?;
            if end_incl.is_some_and(|end| index > end) {
                break;
            }
            if let Some(prev) = entries.last().map(|e: &Entry| e.index())
                && index != prev + 1
            {
                return Err(self.corrupt(format!(
                    "log has a hole: index {prev} is followed by {index}"
                )));
            }
            entries.push(self.decode_entry(&k, &v)?);
        }
        Ok(entries)
    }

    /// The key and value of the last entry in the log, if any.
    fn last_log_item(&self) -> io::Result<Option<KeyValue>> {
        let mut iter = self.db.iterator_cf(self.cf(CF_LOG)?, IteratorMode::End);
        iter.next()
            .transpose()
            .map_err(|e| self.rocks("read the last log entry", e))
    }

    /// The index of the last entry in the log, if any, read from its key
    /// alone (the entry itself is checked when it is read).
    pub(crate) fn last_log_index(&self) -> io::Result<Option<u64>> {
        self.last_log_item()?
            .map(|(k, _)| self.key_index(&k))
            .transpose()
    }

    /// The id of the last entry in the log, if any.
    pub(crate) fn last_log_id(&self) -> io::Result<Option<LogId>> {
        self.last_log_item()?
            .map(|(k, v)| Ok(self.decode_entry(&k, &v)?.log_id()))
            .transpose()
    }
}

/// A key and its value as RocksDB's iterators give them.
type KeyValue = (Box<[u8]>, Box<[u8]>);

#[cfg(test)]
mod tests {
    use std::ops::Bound::{Excluded, Included, Unbounded};

    use openraft::entry::RaftEntry;
    use openraft::testing::log_id;
    use rocksdb::WriteBatch;

    use super::{CF_LOG, Store, log_key};
    use crate::catalog::{Command, LogEntry, Timestamp};
    use crate::raft::types::{C, Entry};

    fn entry(index: u64) -> Entry {
        Entry::new_normal(
            log_id::<C>(1, 1, index),
            LogEntry {
                by: None,
                at: Timestamp::from_unix_nanos(index),
                command: Command::RemoveVolume {
                    id: format!("vol-{index}"),
                },
            },
        )
    }

    fn store_with(
        indexes: impl IntoIterator<Item = u64>,
    ) -> (tempfile::TempDir, std::sync::Arc<Store>) {
        let dir = tempfile::TempDir::new().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut batch = WriteBatch::default();
        for i in indexes {
            let value = store.to_json("a log entry", &entry(i)).unwrap();
            batch.put_cf(store.cf(CF_LOG).unwrap(), log_key(i), value);
        }
        store.write_unsynced("test", batch).unwrap();
        (dir, store)
    }

    fn indexes(store: &Store, range: (std::ops::Bound<u64>, std::ops::Bound<u64>)) -> Vec<u64> {
        let entries = store.read_entries(range).unwrap();
        for e in &entries {
            assert_eq!(*e, entry(e.index()));
        }
        entries.iter().map(|e| e.index()).collect()
    }

    /// Reads give the entries the log holds in the range, missing ones only
    /// at the start (purged) and at the end (not yet appended).
    #[test]
    fn reads_give_the_entries_the_log_holds_in_the_range() {
        let (_dir, store) = store_with(10..=20);
        assert_eq!(
            indexes(&store, (Included(12), Included(15))),
            vec![12, 13, 14, 15]
        );
        assert_eq!(
            indexes(&store, (Included(5), Excluded(13))),
            vec![10, 11, 12]
        );
        assert_eq!(
            indexes(&store, (Included(18), Included(30))),
            vec![18, 19, 20]
        );
        assert_eq!(
            indexes(&store, (Included(1), Included(5))),
            Vec::<u64>::new()
        );
        assert_eq!(
            indexes(&store, (Included(21), Included(25))),
            Vec::<u64>::new()
        );
        assert_eq!(indexes(&store, (Excluded(19), Unbounded)), vec![20]);
        assert_eq!(
            indexes(&store, (Included(0), Included(1000))),
            (10..=20).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_hole_in_the_log_is_an_error_naming_both_sides() {
        let (_dir, store) = store_with((1..=3).chain(5..=6));
        for range in [(Included(1), Included(6)), (Included(2), Unbounded)] {
            let err = store.read_entries(range).unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{range:?}");
            assert!(
                err.to_string()
                    .contains("log has a hole: index 3 is followed by 5"),
                "{range:?}: {err}"
            );
        }
        // Missing entries at the ends are no hole.
        assert_eq!(indexes(&store, (Included(5), Included(9))), vec![5, 6]);
    }
}
