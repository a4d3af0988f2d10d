//! The ready queue (priority levels, FIFO within one) and the dependency rules.
//!
//! Removal is lazy: a cancelled task stays in its level until it reaches the front, where
//! `pop` skips it because the caller's `is_ready` says it is no longer queued. That keeps
//! push, pop and cancel O(1) amortised.

use std::collections::{HashMap, HashSet, VecDeque};

use crate::engine::model::task::{Priority, TaskId};

/// Tasks ready to run, by priority. Each entry carries a global arrival number so two
/// queues (the shared one and an instance's pinned one) can be merged fairly.
#[derive(Debug, Default)]
pub struct ReadyQueue {
    levels: [VecDeque<(u64, TaskId)>; Priority::COUNT],
}

impl ReadyQueue {
    pub fn push(&mut self, priority: Priority, arrival: u64, id: TaskId) {
        self.levels[priority.index()].push_back((arrival, id));
    }

    /// The most urgent, oldest entry still ready, as (priority, arrival), dropping stale
    /// entries on the way.
    pub fn peek(&mut self, is_ready: impl Fn(&str) -> bool) -> Option<(Priority, u64)> {
        for priority in Priority::DESCENDING {
            let level = &mut self.levels[priority.index()];
            while let Some((arrival, id)) = level.front() {
                if is_ready(id) {
                    return Some((priority, *arrival));
                }
                level.pop_front();
            }
        }
        None
    }

    /// Removes and returns the entry `peek` found.
    pub fn pop(&mut self, is_ready: impl Fn(&str) -> bool) -> Option<TaskId> {
        let (priority, _) = self.peek(is_ready)?;
        self.levels[priority.index()].pop_front().map(|(_, id)| id)
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.levels.iter().all(VecDeque::is_empty)
    }
}

/// Finds a cycle among new tasks whose dependencies may point at each other. Returns the
/// ids along the cycle, first id repeated at the end (`a -> b -> a`).
pub fn find_cycle<'a>(deps: &HashMap<&'a str, Vec<&'a str>>) -> Option<Vec<&'a str>> {
    // Iterative three-colour depth-first search, in a stable order for stable messages.
    let mut nodes: Vec<&str> = deps.keys().copied().collect();
    nodes.sort_unstable();
    let mut done: HashSet<&str> = HashSet::new();
    for start in nodes {
        if done.contains(start) {
            continue;
        }
        let mut path: Vec<&str> = vec![start];
        let mut on_path: HashSet<&str> = HashSet::from([start]);
        let mut cursors: Vec<usize> = vec![0];
        while let Some(&node) = path.last() {
            let cursor = cursors.last_mut().expect("cursor per path node");
            let next = deps.get(node).and_then(|d| d.get(*cursor)).copied();
            *cursor += 1;
            match next {
                Some(dep) if on_path.contains(dep) => {
                    let from = path.iter().position(|n| *n == dep).expect("on path");
                    let mut cycle = path[from..].to_vec();
                    cycle.push(dep);
                    return Some(cycle);
                }
                Some(dep) if deps.contains_key(dep) && !done.contains(dep) => {
                    path.push(dep);
                    on_path.insert(dep);
                    cursors.push(0);
                }
                Some(_) => {}
                None => {
                    done.insert(node);
                    on_path.remove(node);
                    path.pop();
                    cursors.pop();
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_then_fifo() {
        let mut q = ReadyQueue::default();
        q.push(Priority::Low, 0, "low".into());
        q.push(Priority::Normal, 1, "n1".into());
        q.push(Priority::Critical, 2, "crit".into());
        q.push(Priority::Normal, 3, "n2".into());
        q.push(Priority::High, 4, "high".into());
        let order: Vec<_> = std::iter::from_fn(|| q.pop(|_| true)).collect();
        assert_eq!(order, ["crit", "high", "n1", "n2", "low"]);
        assert!(q.is_empty());
    }

    #[test]
    fn stale_entries_are_skipped() {
        let mut q = ReadyQueue::default();
        q.push(Priority::High, 0, "gone".into());
        q.push(Priority::Normal, 1, "kept".into());
        assert_eq!(q.peek(|id| id != "gone"), Some((Priority::Normal, 1)));
        assert_eq!(q.pop(|id| id != "gone").as_deref(), Some("kept"));
        assert_eq!(q.pop(|_| true), None);
    }

    #[test]
    fn cycles_are_found_and_named() {
        let deps = HashMap::from([
            ("a", vec!["b"]),
            ("b", vec!["c"]),
            ("c", vec!["a"]),
            ("d", vec![]),
        ]);
        assert_eq!(find_cycle(&deps), Some(vec!["a", "b", "c", "a"]));
        let deps = HashMap::from([("a", vec!["a"])]);
        assert_eq!(find_cycle(&deps), Some(vec!["a", "a"]));
    }

    #[test]
    fn dags_and_outside_edges_have_no_cycle() {
        // "x" is an existing task outside the batch.
        let deps = HashMap::from([
            ("a", vec!["x"]),
            ("b", vec!["a", "x"]),
            ("c", vec!["a", "b"]),
            ("d", vec!["c", "b"]),
        ]);
        assert_eq!(find_cycle(&deps), None);
    }

    #[test]
    fn deep_chain_does_not_overflow() {
        let names: Vec<String> = (0..100_000).map(|i| format!("t{i}")).collect();
        let deps: HashMap<&str, Vec<&str>> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                (
                    n.as_str(),
                    if i == 0 {
                        vec![]
                    } else {
                        vec![names[i - 1].as_str()]
                    },
                )
            })
            .collect();
        assert_eq!(find_cycle(&deps), None);
    }
}
