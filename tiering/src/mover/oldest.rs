//! Oldest-first selection for a watermark run: of the files a policy's
//! `move` rules pick, the least recently used ones whose sizes add up to the
//! bytes that bring the volume down to its low watermark. Memory is bounded
//! by the files selected, not by the files scanned.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::SystemTime;

/// One candidate, ordered by its last use (newest on top of the heap).
struct Entry<T> {
    last_use: SystemTime,
    size: u64,
    item: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl<T> Eq for Entry<T> {}
impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl<T> Ord for Entry<T> {
    fn cmp(&self, o: &Self) -> Ordering {
        // Larger files first among equals: fewer files for the same bytes.
        (self.last_use, std::cmp::Reverse(self.size)).cmp(&(o.last_use, std::cmp::Reverse(o.size)))
    }
}

/// Keeps the oldest items whose sizes reach `need` bytes.
pub(crate) struct OldestFirst<T> {
    need: u64,
    total: u64,
    heap: BinaryHeap<Entry<T>>,
}

impl<T> OldestFirst<T> {
    pub(crate) fn new(need: u64) -> Self {
        Self {
            need,
            total: 0,
            heap: BinaryHeap::new(),
        }
    }

    pub(crate) fn offer(&mut self, last_use: SystemTime, size: u64, item: T) {
        if self.total >= self.need
            && self
                .heap
                .peek()
                .is_some_and(|newest| last_use >= newest.last_use)
        {
            return; // newer than everything already enough
        }
        self.total += size;
        self.heap.push(Entry {
            last_use,
            size,
            item,
        });
        // Drop the newest while the rest still reach the need.
        while let Some(newest) = self.heap.peek() {
            if self.total - newest.size < self.need {
                break;
            }
            self.total -= newest.size;
            self.heap.pop();
        }
    }

    /// The selected items, oldest first, and whether they reach the need.
    pub(crate) fn finish(self) -> (Vec<T>, bool) {
        let enough = self.total >= self.need;
        let items = self
            .heap
            .into_sorted_vec()
            .into_iter()
            .map(|e| e.item)
            .collect();
        (items, enough)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn picks_the_oldest_until_the_need_is_met() {
        let mut o = OldestFirst::new(250);
        for (t, size, name) in [
            (50, 100, "e"),
            (10, 100, "a"),
            (40, 100, "d"),
            (20, 100, "b"),
            (30, 100, "c"),
        ] {
            o.offer(at(t), size, name);
        }
        assert_eq!(o.finish(), (vec!["a", "b", "c"], true));
    }

    #[test]
    fn takes_everything_when_not_enough_and_nothing_when_nothing_is_needed() {
        let mut o = OldestFirst::new(1_000);
        o.offer(at(2), 10, "y");
        o.offer(at(1), 10, "x");
        assert_eq!(o.finish(), (vec!["x", "y"], false));
        let mut o = OldestFirst::new(0);
        o.offer(at(1), 10, "x");
        assert_eq!(o.finish(), (Vec::<&str>::new(), true));
    }

    #[test]
    fn holds_no_more_than_it_selects() {
        let mut o = OldestFirst::new(5 * 4096);
        for i in 0..100_000u64 {
            // newest first: the worst order for the heap
            o.offer(at(1_000_000 - i), 4096, i);
            assert!(o.heap.len() <= 6, "{} kept at {i}", o.heap.len());
        }
        let (items, enough) = o.finish();
        assert!(enough);
        assert_eq!(items, vec![99_999, 99_998, 99_997, 99_996, 99_995]);
    }
}
