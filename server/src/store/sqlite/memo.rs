//! Answers of a few hot reads kept under the store's write generation, so that the RPCs a
//! phone makes most (a session lookup on every call, the change-log bounds, the stored
//! heartbeat, the caller's pending conflicts and an up-to-date pull on every sync) do not
//! each wait for a blocking-pool hop and a read transaction when nothing was written since
//! the same read (issue 11, small RPC benchmark).
//!
//! Correctness rests on two facts. The store is its file's only writer (one writer
//! connection behind a mutex), and every write transaction bumps the generation *after* it
//! commits or rolls back. A reader notes the generation *before* it opens its read
//! snapshot, so an answer is only ever filed under a generation whose data it saw or an
//! older one: a memoized answer is exactly what a fresh read would return, and the first
//! write of any kind makes every memoized answer a miss.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// How many writes have finished on the writer connection (committed or rolled back).
#[derive(Debug, Default)]
pub(in crate::store) struct WriteGeneration(AtomicU64);

impl WriteGeneration {
    /// The generation to file a read under: taken before the read's snapshot opens.
    pub(in crate::store) fn current(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    /// Called after every write transaction ends, whatever its outcome.
    pub(in crate::store) fn advance(&self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }
}

/// Read answers by key, each valid only while the generation it was read under is current.
#[derive(Debug)]
pub(in crate::store) struct Memo<K, V> {
    entries: Mutex<HashMap<K, (u64, V)>>,
    /// Entries kept at most; when full, stale entries go first, then all of them.
    capacity: usize,
}

impl<K: Eq + Hash, V: Clone> Memo<K, V> {
    pub(in crate::store) fn with_capacity(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// The answer filed under `key`, if it was read under the `current` generation.
    pub(in crate::store) fn get(&self, key: &K, current: u64) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(key)
            .filter(|(generation, _)| *generation == current)
            .map(|(_, value)| value.clone())
    }

    /// File `value` under `key`, as read under `generation` (noted before the read began).
    pub(in crate::store) fn put(&self, key: K, generation: u64, value: V) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, (kept, _)| *kept >= generation);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(key, (generation, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_used_only_while_no_write_has_ended_since_its_read_began() {
        let generation = WriteGeneration::default();
        let memo = Memo::with_capacity(8);
        let before_read = generation.current();
        memo.put("key", before_read, 1);
        assert_eq!(memo.get(&"key", generation.current()), Some(1));
        generation.advance();
        assert_eq!(memo.get(&"key", generation.current()), None);
    }

    #[test]
    fn a_read_that_overlapped_a_write_is_filed_under_the_older_generation_and_never_used() {
        let generation = WriteGeneration::default();
        let memo = Memo::with_capacity(8);
        // The reader notes the generation, then a write ends while its snapshot is open.
        let noted = generation.current();
        generation.advance();
        memo.put("key", noted, "maybe stale");
        assert_eq!(memo.get(&"key", generation.current()), None);
    }

    #[test]
    fn a_full_memo_drops_stale_entries_first_and_never_grows_past_its_capacity() {
        let generation = WriteGeneration::default();
        let memo = Memo::with_capacity(2);
        memo.put(1, generation.current(), "old");
        generation.advance();
        memo.put(2, generation.current(), "two");
        memo.put(3, generation.current(), "three");
        assert_eq!(memo.get(&2, generation.current()), Some("two"));
        assert_eq!(memo.get(&3, generation.current()), Some("three"));
        memo.put(4, generation.current(), "four");
        let kept = memo.entries.lock().expect("memo").len();
        assert!(kept <= 2, "{kept}");
        assert_eq!(memo.get(&4, generation.current()), Some("four"));
    }
}
