//! The Raft log and vote on RocksDB: openraft's [`RaftLogStorage`] and
//! [`RaftLogReader`].
//!
//! Writes go through the [`LogWriter`] thread (in order, group commit),
//! except appends, written in place and synced by that thread. Reads of the
//! newest entries are answered from memory ([`RecentEntries`]); other reads
//! of a few entries run in place, longer ones on tokio's blocking pool.

use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::sync::Arc;

use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{OptionalSend, RaftTypeConfig};
use rocksdb::WriteBatch;

use super::recent::RecentEntries;
use super::store::{CF_LOG, CF_META, KEY_COMMITTED, KEY_LAST_PURGED, KEY_VOTE, Store, log_key};
use super::types::{C, Entry, LogId, Vote};
use super::writer::{Durability, LogWriter};

/// The catalog's Raft log store (openraft [`RaftLogStorage`]).
pub struct LogStore {
    store: Arc<Store>,
    writer: LogWriter,
    recent: Arc<RecentEntries>,
}

/// A reader of the catalog's Raft log (openraft [`RaftLogReader`]); cheap
/// to clone.
#[derive(Clone)]
pub struct LogReader {
    store: Arc<Store>,
    recent: Arc<RecentEntries>,
}

impl LogStore {
    pub(crate) fn new(store: Arc<Store>) -> io::Result<LogStore> {
        let log_end = store.last_log_index()?.map(|index| index + 1);
        let writer = LogWriter::spawn(Arc::clone(&store))?;
        Ok(LogStore {
            store,
            writer,
            recent: Arc::new(RecentEntries::new(log_end)),
        })
    }
}

/// The most entries read on the async worker itself.
const INLINE_READ_ENTRIES: u64 = 64;

/// How many indexes a bounded range covers (None: unbounded).
fn span(range: (std::ops::Bound<u64>, std::ops::Bound<u64>)) -> Option<u64> {
    match start_end(range) {
        Some((first, after)) => after.map(|after| after.saturating_sub(first)),
        None => Some(0),
    }
}

fn bounds<RB: RangeBounds<u64>>(range: &RB) -> (std::ops::Bound<u64>, std::ops::Bound<u64>) {
    (range.start_bound().cloned(), range.end_bound().cloned())
}

/// A range as its first index and the index after its last (`None`: to
/// the end of the log); `None` for a range that starts after every index.
fn start_end(
    (start, end): (std::ops::Bound<u64>, std::ops::Bound<u64>),
) -> Option<(u64, Option<u64>)> {
    use std::ops::Bound::{Excluded, Included, Unbounded};
    let first = match start {
        Included(i) => i,
        Excluded(i) => i.checked_add(1)?,
        Unbounded => 0,
    };
    let after = match end {
        Included(i) => i.checked_add(1),
        Excluded(i) => Some(i),
        Unbounded => None,
    };
    Some((first, after))
}

impl RaftLogReader<C> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let range = bounds(&range);
        // The entries a write has just appended, read back to be sent on
        // and to be applied: from memory.
        if let Some((start, end)) = start_end(range)
            && let Some(entries) = self.recent.get(start, end)
        {
            return Ok(entries);
        }
        // A leader reads the few entries it just appended to send them on:
        // from RocksDB's memtable that takes microseconds, less than the hop
        // to a blocking thread and back. A long range (a follower catching
        // up) may reach the disk: on the blocking pool.
        if span(range).is_some_and(|n| n <= INLINE_READ_ENTRIES) {
            return self.store.read_entries(range);
        }
        self.store.blocking(move |s| s.read_entries(range)).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        self.store.blocking(|s| s.get_json(CF_META, KEY_VOTE)).await
    }
}

impl RaftLogStorage<C> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<C>, io::Error> {
        self.store
            .blocking(|s| {
                let last_purged_log_id: Option<LogId> = s.get_json(CF_META, KEY_LAST_PURGED)?;
                let last_log_id = s.last_log_id()?.or(last_purged_log_id);
                Ok(LogState {
                    last_purged_log_id,
                    last_log_id,
                })
            })
            .await
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        LogReader {
            store: Arc::clone(&self.store),
            recent: Arc::clone(&self.recent),
        }
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let mut batch = WriteBatch::default();
        batch.put_cf(
            self.store.cf(CF_META)?,
            KEY_VOTE,
            self.store.to_json("the vote", vote)?,
        );
        // A vote is a promise to the other replicas: on disk before it is
        // acknowledged.
        self.writer
            .write("save the vote", batch, Durability::Synced)
            .await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        let meta = self.store.cf(CF_META)?;
        let mut batch = WriteBatch::default();
        match committed {
            Some(c) => batch.put_cf(meta, KEY_COMMITTED, self.store.to_json("committed", &c)?),
            None => batch.delete_cf(meta, KEY_COMMITTED),
        }
        // Not synced on its own: it is only a hint of how far to re-apply on
        // restart, and it reaches the disk with the next append's sync. The
        // entries it names were synced before they could be committed.
        // Written here, like an append: every earlier write was awaited, so
        // the order holds.
        self.store.write_unsynced("save committed", batch)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        self.store
            .blocking(|s| s.get_json(CF_META, KEY_COMMITTED))
            .await
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<C>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = <C as RaftTypeConfig>::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let log = self.store.cf(CF_LOG)?;
        let mut batch = WriteBatch::default();
        let mut written = Vec::new();
        for entry in entries {
            let index = openraft::entry::RaftEntry::index(&entry);
            let value = self.store.to_json("a log entry", &entry)?;
            written.push((entry, value.len()));
            batch.put_cf(log, log_key(index), value);
        }
        // Written here, so a leader sends the entries on without waiting for
        // a thread hop; every earlier write was awaited, so the order holds.
        // The writer thread's next WAL sync covers it and then calls back.
        if let Err(e) = self.store.write_unsynced("append", batch) {
            callback.io_completed(Err(io::Error::new(e.kind(), e.to_string())));
            return Err(e);
        }
        self.recent.appended(written);
        self.writer.sync_later("append", callback);
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = match &last_log_id {
            Some(id) => match id.index.checked_add(1) {
                Some(i) => i,
                None => return Ok(()),
            },
            None => 0,
        };
        let log = self.store.cf(CF_LOG)?;
        let mut batch = WriteBatch::default();
        // One atomic batch: no hole is ever visible. Not synced on its own:
        // the entries appended after it are synced after it (one WAL).
        batch.delete_range_cf(log, log_key(from), log_key(u64::MAX));
        batch.delete_cf(log, log_key(u64::MAX));
        self.recent.truncating(from);
        self.writer
            .write("truncate the log", batch, Durability::Visible)
            .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let log = self.store.cf(CF_LOG)?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(log, log_key(0), log_key(log_id.index.saturating_add(1)));
        self.recent.purging(log_id.index);
        batch.delete_cf(log, log_key(log_id.index));
        batch.put_cf(
            self.store.cf(CF_META)?,
            KEY_LAST_PURGED,
            self.store.to_json("last purged", &log_id)?,
        );
        // Losing a purge in a crash only keeps entries longer; the snapshot
        // that covers them was synced before openraft asked for the purge.
        self.writer
            .write("purge the log", batch, Durability::Visible)
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::ops::Bound::{Excluded, Included, Unbounded};

    use super::span;

    #[test]
    fn span_counts_the_indexes_of_a_bounded_range() {
        assert_eq!(span((Included(5), Excluded(8))), Some(3));
        assert_eq!(span((Included(5), Included(8))), Some(4));
        assert_eq!(span((Excluded(5), Included(8))), Some(3));
        assert_eq!(span((Included(9), Excluded(8))), Some(0));
        assert_eq!(span((Unbounded, Excluded(3))), Some(3));
        assert_eq!(span((Included(1), Unbounded)), None);
    }
}
