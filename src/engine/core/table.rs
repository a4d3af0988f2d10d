//! The task table: every task the core holds, found by its id. An entry is keyed by its own
//! task's id, so the table keeps no second copy of each id; entries are boxed, and kept
//! with their hash, so that the table's growth moves small slots and reads nothing else (a
//! stall of the scheduler otherwise).

use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;

use super::Entry;

/// Task ids are chosen by clients: hashed with a keyed hash (SipHash, a random key per
/// table), so that nobody can make ids collide on purpose.
#[derive(Default)]
pub(super) struct TaskTable {
    table: HashTable<Slot>,
    hasher: RandomState,
}

/// An entry and its id's hash, kept so that growing the table moves 16 bytes per entry and
/// reads nothing else: rehashing each id would chase three pointers per entry (about 30 ms
/// at 100,000 tasks, inside a scheduler turn).
struct Slot {
    hash: u64,
    entry: Box<Entry>,
}

impl TaskTable {
    fn hash(&self, id: &str) -> u64 {
        self.hasher.hash_one(id)
    }

    pub(super) fn get(&self, id: &str) -> Option<&Entry> {
        let hash = self.hash(id);
        self.table
            .find(hash, |s| s.hash == hash && s.entry.task.id == id)
            .map(|s| &*s.entry)
    }

    pub(super) fn get_mut(&mut self, id: &str) -> Option<&mut Entry> {
        let hash = self.hash(id);
        self.table
            .find_mut(hash, |s| s.hash == hash && s.entry.task.id == id)
            .map(|s| &mut *s.entry)
    }

    pub(super) fn contains_key(&self, id: &str) -> bool {
        self.get(id).is_some()
    }

    /// Adds an entry under its task's id, in place of one with the same id.
    pub(super) fn insert(&mut self, entry: Entry) {
        let hash = self.hash(&entry.task.id);
        match self.table.entry(
            hash,
            |s| s.hash == hash && s.entry.task.id == entry.task.id,
            |s| s.hash,
        ) {
            hashbrown::hash_table::Entry::Occupied(mut old) => *old.get_mut().entry = entry,
            hashbrown::hash_table::Entry::Vacant(place) => {
                place.insert(Slot {
                    hash,
                    entry: Box::new(entry),
                });
            }
        }
    }

    pub(super) fn remove(&mut self, id: &str) -> Option<Box<Entry>> {
        let hash = self.hash(id);
        self.table
            .find_entry(hash, |s| s.hash == hash && s.entry.task.id == id)
            .ok()
            .map(|found| found.remove().0.entry)
    }

    /// Every entry, in no order.
    pub(super) fn values(&self) -> impl Iterator<Item = &Entry> {
        self.table.iter().map(|s| &*s.entry)
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::SystemTime};

    use super::{Entry, TaskTable};
    use crate::engine::model::task::{Task, TaskSpec};

    fn entry(id: &str, waiting_on: usize) -> Entry {
        let task = Task::new(id.into(), TaskSpec::new("p"), None, SystemTime::UNIX_EPOCH);
        Entry {
            task: Arc::new(task),
            waiting_on,
            dependents: Vec::new(),
            parent: None,
            dirty: false,
        }
    }

    #[test]
    fn entries_are_found_replaced_and_removed_by_their_own_id() {
        let mut table = TaskTable::default();
        for i in 0..1_000 {
            table.insert(entry(&format!("t{i}"), 0));
        }
        table.insert(entry("t7", 3));
        assert_eq!(table.values().count(), 1_000, "the same id replaces");
        assert_eq!(table.get("t7").map(|e| e.waiting_on), Some(3));
        table.get_mut("t8").expect("t8").waiting_on = 5;
        assert_eq!(table.get("t8").map(|e| e.waiting_on), Some(5));
        assert_eq!(
            table.remove("t7").map(|e| e.task.id.clone()),
            Some("t7".into())
        );
        assert!(!table.contains_key("t7") && table.remove("t7").is_none());
        assert!(table.contains_key("t999") && !table.contains_key("t1000"));
    }
}
