//! The newest entries of the Raft log, kept in memory as they were
//! appended.
//!
//! Every write is read back twice soon after its append: by the leader's
//! replication, to send it on, and by the state machine worker, to apply it
//! once committed. Both reads are on the write's path to its answer, and
//! from RocksDB each costs an iterator and a JSON decode (tens of µs). From
//! here each is a clone.
//!
//! The tail held here is the log's own: the log store updates it in the
//! same call as every append, truncation and purge, and it answers a read
//! only when it also holds the log's last entry (it tracks where the log
//! ends, so an append that lands before the end does not fool it). Any other
//! range is read from RocksDB as before. It is bounded in entries and in
//! encoded bytes; the oldest go first.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};

use openraft::entry::RaftEntry;

use super::types::Entry;

/// Entries kept at most.
const MAX_ENTRIES: usize = 4096;
/// Encoded bytes (the log's JSON) of the entries kept, at most.
const MAX_BYTES: usize = 8 * 1024 * 1024;

/// The log's newest entries (see the module doc).
pub(crate) struct RecentEntries {
    tail: Mutex<Tail>,
    max_entries: usize,
    max_bytes: usize,
}

struct Tail {
    /// Consecutive entries with their encoded sizes, oldest first.
    entries: VecDeque<(Entry, usize)>,
    bytes: usize,
    /// The index after the log's last entry (whether or not it is held
    /// here); `None` while unknown.
    log_end: Option<u64>,
}

impl Tail {
    fn first(&self) -> Option<u64> {
        self.entries.front().map(|(e, _)| e.index())
    }

    /// The index after the last entry held.
    fn end(&self) -> Option<u64> {
        self.entries.back().map(|(e, _)| e.index() + 1)
    }

    /// Drops the newest entry held, if any.
    fn pop_newest(&mut self) {
        if let Some((_, size)) = self.entries.pop_back() {
            self.bytes -= size;
        }
    }

    /// Drops the oldest entry held, if any.
    fn pop_oldest(&mut self) {
        if let Some((_, size)) = self.entries.pop_front() {
            self.bytes -= size;
        }
    }

    /// Drops the entries from index `from` on.
    fn drop_from(&mut self, from: u64) {
        while self.end().is_some_and(|end| end > from) {
            self.pop_newest();
        }
    }

    /// Drops the entries up to and including index `through`.
    fn drop_through(&mut self, through: u64) {
        while self.first().is_some_and(|first| first <= through) {
            self.pop_oldest();
        }
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }
}

impl RecentEntries {
    /// An empty tail of a log whose entries end before index `log_end`
    /// (`None`: the log holds no entry).
    pub(crate) fn new(log_end: Option<u64>) -> RecentEntries {
        RecentEntries::bounded(log_end, MAX_ENTRIES, MAX_BYTES)
    }

    fn bounded(log_end: Option<u64>, max_entries: usize, max_bytes: usize) -> RecentEntries {
        RecentEntries {
            tail: Mutex::new(Tail {
                entries: VecDeque::new(),
                bytes: 0,
                log_end: Some(log_end.unwrap_or(0)),
            }),
            max_entries,
            max_bytes,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Tail> {
        // Every update leaves the tail consistent before it can panic.
        self.tail.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The log has just written `appended` (consecutive entries, each with
    /// its encoded size), over whatever it held at those indexes.
    pub(crate) fn appended(&self, appended: Vec<(Entry, usize)>) {
        let (Some(first), Some(last)) = (
            appended.first().map(|(e, _)| e.index()),
            appended.last().map(|(e, _)| e.index()),
        ) else {
            return;
        };
        let consecutive = appended
            .iter()
            .enumerate()
            .all(|(i, (e, _))| e.index() == first + i as u64);
        let mut tail = self.lock();
        if !consecutive {
            // Not what openraft appends; stop answering until the log's end
            // is known again.
            tail.clear();
            tail.log_end = None;
            return;
        }
        tail.log_end = tail.log_end.map(|end| end.max(last + 1));
        tail.drop_from(first);
        if tail.end().is_some_and(|end| end != first) {
            tail.clear();
        }
        for (entry, size) in appended {
            tail.bytes += size;
            tail.entries.push_back((entry, size));
        }
        while tail.entries.len() > self.max_entries || tail.bytes > self.max_bytes {
            tail.pop_oldest();
        }
    }

    /// The log is about to drop every entry from index `from` on.
    pub(crate) fn truncating(&self, from: u64) {
        let mut tail = self.lock();
        tail.drop_from(from);
        tail.log_end = tail.log_end.map(|end| end.min(from));
    }

    /// The log is about to drop every entry up to and including `through`.
    pub(crate) fn purging(&self, through: u64) {
        self.lock().drop_through(through);
    }

    /// The entries of `start..end` (`end` exclusive; `None`: to the end of
    /// the log) that the log holds, if they are all here; `None` when the
    /// range must be read from the log itself.
    pub(crate) fn get(&self, start: u64, end: Option<u64>) -> Option<Vec<Entry>> {
        let tail = self.lock();
        let (first, held_end) = (tail.first()?, tail.end()?);
        if start < first || tail.log_end != Some(held_end) {
            return None;
        }
        let end = end.map_or(held_end, |e| e.min(held_end));
        if start >= end {
            return Some(Vec::new());
        }
        let from = usize::try_from(start - first).ok()?;
        let to = usize::try_from(end - first).ok()?;
        Some(
            tail.entries
                .range(from..to)
                .map(|(e, _)| e.clone())
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use openraft::entry::RaftEntry;
    use openraft::testing::log_id;

    use super::RecentEntries;
    use crate::raft::types::{C, Entry, LogId};

    fn entry(term: u64, index: u64) -> (Entry, usize) {
        (Entry::new_blank(log_id::<C>(term, 1, index)), 100)
    }

    fn ids(entries: Option<Vec<Entry>>) -> Option<Vec<LogId>> {
        entries.map(|v| v.iter().map(RaftEntry::log_id).collect())
    }

    /// The log ids of (term, index) pairs.
    fn want(pairs: &[(u64, u64)]) -> Option<Vec<LogId>> {
        Some(pairs.iter().map(|&(t, i)| log_id::<C>(t, 1, i)).collect())
    }

    fn appended(recent: &RecentEntries, term: u64, indexes: std::ops::Range<u64>) {
        recent.appended(indexes.map(|i| entry(term, i)).collect());
    }

    #[test]
    fn answers_ranges_it_holds_whole_and_sends_the_rest_to_the_log() {
        let recent = RecentEntries::new(Some(10));
        assert_eq!(ids(recent.get(10, None)), None, "nothing held yet");
        appended(&recent, 1, 10..13);
        appended(&recent, 1, 13..15);
        assert_eq!(ids(recent.get(11, Some(13))), want(&[(1, 11), (1, 12)]));
        // Past the log's end: only what the log holds, as a log read gives.
        assert_eq!(ids(recent.get(13, None)), want(&[(1, 13), (1, 14)]));
        assert_eq!(ids(recent.get(14, Some(20))), want(&[(1, 14)]));
        assert_eq!(ids(recent.get(15, Some(20))), want(&[]));
        // Before the first entry held: the log's.
        assert_eq!(ids(recent.get(9, Some(12))), None);
    }

    #[test]
    fn a_truncation_and_an_overwrite_leave_the_log_s_own_entries() {
        let recent = RecentEntries::new(None);
        appended(&recent, 1, 0..6);
        recent.truncating(4);
        assert_eq!(ids(recent.get(2, None)), want(&[(1, 2), (1, 3)]));
        appended(&recent, 2, 4..5);
        assert_eq!(
            ids(recent.get(3, None)),
            want(&[(1, 3), (2, 4)]),
            "the new term's entry, not the truncated one"
        );
        // An append over the middle without a truncation first (openraft
        // truncates first; the tail does not rely on it): the log still
        // holds what was after it, so the tail must not answer for the end.
        appended(&recent, 2, 5..8);
        appended(&recent, 3, 6..7);
        assert_eq!(ids(recent.get(6, None)), None);
        assert_eq!(ids(recent.get(5, Some(7))), None);
    }

    #[test]
    fn purged_entries_are_the_log_s_to_answer_for() {
        let recent = RecentEntries::new(Some(1));
        appended(&recent, 1, 1..5);
        recent.purging(2);
        assert_eq!(ids(recent.get(2, None)), None);
        assert_eq!(ids(recent.get(3, None)), want(&[(1, 3), (1, 4)]));
    }

    #[test]
    fn a_gap_or_a_log_that_ends_elsewhere_is_never_answered_from_memory() {
        // The log ends at 20 but the first append seen starts at 30 (it
        // cannot, but the tail must not paper over it): the log's end is
        // then 31, and only 30.. is held.
        let recent = RecentEntries::new(Some(20));
        appended(&recent, 1, 30..31);
        assert_eq!(ids(recent.get(30, None)), want(&[(1, 30)]));
        appended(&recent, 1, 32..33);
        assert_eq!(ids(recent.get(30, None)), None, "31 is missing");
        assert_eq!(ids(recent.get(32, None)), want(&[(1, 32)]));
    }

    #[test]
    fn the_oldest_go_first_when_full() {
        let recent = RecentEntries::bounded(None, 3, 1_000);
        appended(&recent, 1, 0..5);
        assert_eq!(ids(recent.get(1, None)), None);
        assert_eq!(ids(recent.get(2, None)), want(&[(1, 2), (1, 3), (1, 4)]));
        let by_bytes = RecentEntries::bounded(None, 100, 250);
        appended(&by_bytes, 1, 0..5);
        assert_eq!(ids(by_bytes.get(2, None)), None);
        assert_eq!(ids(by_bytes.get(3, None)), want(&[(1, 3), (1, 4)]));
    }
}
