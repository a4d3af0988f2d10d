//! Group commit across turns: the turns waiting for the store are folded into one batch,
//! so a row changed in several of them is written once and they share one transaction.

use std::{
    collections::{HashMap, HashSet},
    hash::Hash,
};

use super::{model::task::TaskId, ports::Batch};

impl Batch {
    /// Folds turns' batches, oldest first, into as few batches as keep their meaning: a
    /// row changed in several keeps the latest value at the place it first changed, and a
    /// deletion followed by a later write of it wins over the write. The only pair not
    /// folded is one where a later turn writes a row an earlier one deleted (a schedule
    /// made again under its name): storing that as one write would keep the old row's
    /// place, so the later turn starts a batch of its own.
    /// Each turn comes with what waits for it (`T`), handed back with the batch it was
    /// folded into.
    pub fn fold<T>(turns: impl IntoIterator<Item = (Batch, T)>) -> Vec<(Batch, Vec<T>)> {
        let mut folded: Vec<(Folder, Vec<T>)> = Vec::new();
        for (turn, waiting) in turns {
            match folded.last_mut() {
                Some((open, all)) if !open.rewrites_deleted(&turn) => {
                    open.absorb(turn);
                    all.push(waiting);
                }
                _ => folded.push((Folder::new(turn), vec![waiting])),
            }
        }
        folded.into_iter().map(|(f, all)| (f.batch, all)).collect()
    }
}

/// A batch being folded, with where each of its rows is.
struct Folder {
    batch: Batch,
    tasks: Rows<TaskId>,
    workflows: Rows<String>,
    approvals: Rows<String>,
    schedules: Rows<String>,
}

/// Keys of one kind of row: their index in the batch's list, and which are deleted.
struct Rows<K> {
    written: HashMap<K, usize>,
    deleted: HashSet<K>,
}

impl<K: Clone + Eq + Hash> Rows<K> {
    fn of<'a>(written: impl Iterator<Item = &'a K>, deleted: impl Iterator<Item = &'a K>) -> Self
    where
        K: 'a,
    {
        Self {
            written: written.enumerate().map(|(i, k)| (k.clone(), i)).collect(),
            deleted: deleted.cloned().collect(),
        }
    }

    fn deletes_any<'a>(&self, mut keys: impl Iterator<Item = &'a K>) -> bool
    where
        K: 'a,
    {
        !self.deleted.is_empty() && keys.any(|k| self.deleted.contains(k))
    }

    /// Folds a later turn's rows (written, then deleted: a turn deletes after it writes)
    /// into `rows` and `deleted`.
    fn absorb<T>(
        &mut self,
        rows: &mut Vec<T>,
        deleted: &mut Vec<K>,
        later_rows: Vec<T>,
        later_deleted: Vec<K>,
        key: impl Fn(&T) -> &K,
    ) {
        for row in later_rows {
            match self.written.get(key(&row)) {
                Some(&i) => rows[i] = row,
                None => {
                    self.written.insert(key(&row).clone(), rows.len());
                    rows.push(row);
                }
            }
        }
        for id in later_deleted {
            if self.deleted.insert(id.clone()) {
                deleted.push(id);
            }
        }
    }
}

impl Folder {
    fn new(batch: Batch) -> Self {
        Self {
            tasks: Rows::of(
                batch.tasks.iter().map(|r| &r.task.id),
                batch.deleted_tasks.iter(),
            ),
            workflows: Rows::of(
                batch.workflows.iter().map(|w| &w.info.id),
                std::iter::empty(),
            ),
            approvals: Rows::of(
                batch.approvals.iter().map(|a| &a.id),
                batch.deleted_approvals.iter(),
            ),
            schedules: Rows::of(
                batch.schedules.iter().map(|s| &s.id),
                batch.deleted_schedules.iter(),
            ),
            batch,
        }
    }

    /// Whether `later` writes a row this batch deletes.
    fn rewrites_deleted(&self, later: &Batch) -> bool {
        self.tasks
            .deletes_any(later.tasks.iter().map(|r| &r.task.id))
            || self
                .approvals
                .deletes_any(later.approvals.iter().map(|a| &a.id))
            || self
                .schedules
                .deletes_any(later.schedules.iter().map(|s| &s.id))
    }

    fn absorb(&mut self, later: Batch) {
        let Batch {
            tasks,
            deleted_tasks,
            workflows,
            mut events,
            total_cost_usd,
            approvals,
            deleted_approvals,
            swarm_policy,
            schedules,
            deleted_schedules,
            accounts,
        } = later;
        let batch = &mut self.batch;
        self.tasks.absorb(
            &mut batch.tasks,
            &mut batch.deleted_tasks,
            tasks,
            deleted_tasks,
            |r| &r.task.id,
        );
        self.workflows.absorb(
            &mut batch.workflows,
            &mut Vec::new(),
            workflows,
            Vec::new(),
            |w| &w.info.id,
        );
        self.approvals.absorb(
            &mut batch.approvals,
            &mut batch.deleted_approvals,
            approvals,
            deleted_approvals,
            |a| &a.id,
        );
        self.schedules.absorb(
            &mut batch.schedules,
            &mut batch.deleted_schedules,
            schedules,
            deleted_schedules,
            |s| &s.id,
        );
        batch.events.append(&mut events);
        if total_cost_usd.is_some() {
            batch.total_cost_usd = total_cost_usd;
        }
        if swarm_policy.is_some() {
            batch.swarm_policy = swarm_policy;
        }
        if !accounts.is_empty() {
            batch.accounts = accounts;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::engine::{
        Task, TaskSpec, TaskStatus,
        ports::TaskRecord,
        schedule::{Cron, Schedule, ScheduleSpec, ScheduleTarget},
    };

    fn record(id: &str, status: TaskStatus) -> TaskRecord {
        let mut task = Task::new(id.into(), TaskSpec::new("p"), None, UNIX_EPOCH);
        task.status = status;
        TaskRecord {
            task: task.into(),
            parent: None,
        }
    }

    fn statuses(batch: &Batch) -> Vec<(&str, TaskStatus)> {
        batch
            .tasks
            .iter()
            .map(|r| (r.task.id.as_str(), r.task.status))
            .collect()
    }

    #[test]
    fn a_task_changed_in_several_turns_is_written_once_with_its_latest_state() {
        use TaskStatus::*;
        let turns = vec![
            Batch {
                tasks: vec![record("a", Queued), record("b", Queued)],
                total_cost_usd: Some(1.0),
                ..Batch::default()
            },
            Batch {
                tasks: vec![record("c", Queued), record("a", Running)],
                ..Batch::default()
            },
            Batch {
                tasks: vec![record("a", Completed)],
                deleted_tasks: vec!["b".into()],
                total_cost_usd: Some(2.5),
                ..Batch::default()
            },
        ];
        let folded = Batch::fold(turns.into_iter().zip(1..));
        assert_eq!(folded.len(), 1);
        let (batch, turns) = &folded[0];
        assert_eq!(turns, &[1, 2, 3]);
        assert_eq!(
            statuses(batch),
            [("a", Completed), ("b", Queued), ("c", Queued)]
        );
        assert_eq!(batch.deleted_tasks, ["b"]);
        assert_eq!(batch.total_cost_usd, Some(2.5));
    }

    fn schedule(id: &str, expression: &str) -> Schedule {
        let spec = ScheduleSpec {
            name: id.into(),
            cron: Cron::parse(expression, "UTC").unwrap(),
            target: ScheduleTarget::Task(Box::new(TaskSpec::new("p"))),
            missed: Default::default(),
            overlap: Default::default(),
            paused: false,
        };
        Schedule::new(id.into(), spec, UNIX_EPOCH)
    }

    #[test]
    fn a_row_written_again_after_its_deletion_starts_a_batch_of_its_own() {
        let turns = vec![
            Batch {
                schedules: vec![schedule("nightly", "0 3 * * *")],
                ..Batch::default()
            },
            Batch {
                deleted_schedules: vec!["nightly".into()],
                ..Batch::default()
            },
            Batch {
                schedules: vec![schedule("nightly", "0 4 * * *")],
                ..Batch::default()
            },
            Batch {
                tasks: vec![record("t", TaskStatus::Queued)],
                ..Batch::default()
            },
        ];
        let folded = Batch::fold(turns.into_iter().zip(1..));
        assert_eq!(folded.len(), 2);
        let ((first, first_turns), (second, second_turns)) = (&folded[0], &folded[1]);
        assert_eq!(
            (first_turns.as_slice(), second_turns.as_slice()),
            (&[1, 2][..], &[3, 4][..])
        );
        assert_eq!(first.deleted_schedules, ["nightly"]);
        assert_eq!(
            second.schedules[0].spec.cron,
            Cron::parse("0 4 * * *", "UTC").unwrap()
        );
        assert_eq!(second.tasks.len(), 1);
    }
}
