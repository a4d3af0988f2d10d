//! Start-up: the initial instances, then what a store kept. Queued and pending tasks come
//! back in their order with their priorities and dependencies; tasks that were running have
//! what is left of their processes ended, then are retried if they may be, else failed as
//! interrupted; `for_each` parents and workflows whose last task ended just before the
//! crash are settled.

use std::sync::Arc;
use std::{collections::HashMap, time::SystemTime};

use super::{Core, Effect, Entry, Flow, TaskTable, fanout::FanOutState};
use crate::engine::{
    model::{
        event::Event,
        task::{TaskId, TaskStatus},
    },
    ports::{Leftover, Snapshot},
    workflow::WorkflowStatus,
};

impl Core {
    /// Spawns the initial instances and takes back `snapshot` (empty for a new swarm).
    /// Returns the stored events, for the event hub; new ones number on from them.
    pub fn boot(&mut self, now: SystemTime, mut snapshot: Snapshot) -> Vec<Event> {
        self.now = now;
        let events = std::mem::take(&mut snapshot.events);
        if let Some(last) = events.last() {
            self.next_sequence = self.next_sequence.max(last.sequence + 1);
        }
        // Instances first, so restored tasks pinned to one find it.
        // With accounts configured, each brings its share.
        let initial = match self.config.accounts.as_slice() {
            [] => self.config.initial_instances,
            accounts => accounts.iter().map(|a| a.instances).sum(),
        };
        for _ in 0..initial.min(self.config.max_instances) {
            self.spawn_instance(None);
        }
        let approvals = std::mem::take(&mut snapshot.approvals);
        let swarm = std::mem::take(&mut snapshot.swarm_policy);
        self.restore(snapshot);
        self.restore_approvals(approvals, swarm);
        events
    }

    fn restore(&mut self, mut snapshot: Snapshot) {
        self.total_cost_usd = snapshot.total_cost_usd;
        self.restore_accounts(std::mem::take(&mut snapshot.accounts));
        let mut by_parent: HashMap<TaskId, Vec<TaskId>> = HashMap::new();
        for record in snapshot.tasks {
            let task = record.task;
            let id = task.id.clone();
            if task.status == TaskStatus::Queued {
                self.queued[task.spec.priority.index()] += 1;
            }
            if let Some(parent) = &record.parent {
                by_parent
                    .entry(parent.clone())
                    .or_default()
                    .push(id.clone());
            }
            if let Some(key) = &task.spec.idempotency_key {
                self.idempotency.insert(key.clone(), id.clone());
            }
            self.counts[task.status.index()] += 1;
            self.order.push(id.clone());
            let entry = Entry {
                task,
                waiting_on: 0,
                dependents: Vec::new(),
                parent: record.parent,
                dirty: false,
            };
            self.tasks.insert(entry);
        }
        for record in snapshot.workflows {
            let id = record.info.id.clone();
            let remaining = record
                .info
                .task_ids
                .iter()
                .filter(|t| {
                    self.tasks
                        .get(t)
                        .is_some_and(|e| !e.task.status.is_terminal())
                })
                .count();
            let flow = Flow {
                record,
                remaining,
                cancel_waiters: Vec::new(),
            };
            self.workflow_order.push(id.clone());
            self.workflows.insert(id, flow);
        }
        let status_of = |tasks: &TaskTable, id: &str| tasks.get(id).map(|e| e.task.status);
        self.finished_tasks = self
            .order
            .iter()
            .filter(|id| status_of(&self.tasks, id).is_some_and(TaskStatus::is_terminal))
            .cloned()
            .collect();
        let open: Vec<TaskId> = self
            .order
            .iter()
            .filter(|id| status_of(&self.tasks, id).is_some_and(|s| !s.is_terminal()))
            .cloned()
            .collect();
        for (id, reason) in self.wire_dependencies(&open) {
            self.finish(&id, TaskStatus::Skipped, None, Some(reason));
        }
        self.restore_sessions();
        for id in open {
            self.resume(&id, &mut by_parent);
        }
        // Items of a for_each queue as their parent releases them.
        let parents: Vec<TaskId> = self.fan_outs.keys().cloned().collect();
        for parent in parents {
            let released: Vec<TaskId> = self
                .fan_outs
                .get(&parent)
                .map(|f| f.children[..f.next].to_vec())
                .unwrap_or_default();
            for child in released {
                if status_of(&self.tasks, &child) == Some(TaskStatus::Pending) {
                    self.enqueue(&child);
                }
            }
            self.release_children(&parent);
        }
        // Workflows whose last task ended just before the crash.
        let finished: Vec<String> = self
            .workflows
            .values()
            .filter(|w| w.remaining == 0 && w.record.info.status == WorkflowStatus::Running)
            .map(|w| w.record.info.id.clone())
            .collect();
        for id in finished {
            self.end_workflow(&id);
        }
        self.restore_schedules(snapshot.schedules);
        self.dispatch();
    }

    /// Session names resume what their tasks' runs last reported, as stored with them.
    fn restore_sessions(&mut self) {
        let mut reported: Vec<(Option<SystemTime>, TaskId, String)> = self
            .tasks
            .values()
            .map(|e| &e.task)
            .filter(|t| t.spec.session.is_some())
            // A workflow that is over resumes nothing (see `forget_sessions_of`).
            .filter(|t| {
                t.workflow_id.as_ref().is_none_or(|w| {
                    self.workflows
                        .get(w)
                        .is_some_and(|f| f.record.info.status == WorkflowStatus::Running)
                })
            })
            .filter_map(|t| {
                let result = t
                    .result
                    .as_deref()
                    .or_else(|| t.history.last().and_then(|a| a.result.as_ref()))?;
                Some((t.started_at, t.id.clone(), result.session_id.clone()))
            })
            .collect();
        reported.sort();
        for (_, task, session) in reported {
            self.record_session(&task, &session);
        }
    }

    /// Work that was in flight when the store last wrote.
    fn resume(&mut self, id: &str, by_parent: &mut HashMap<TaskId, Vec<TaskId>>) {
        self.reap(id);
        let Some(entry) = self.tasks.get(id) else {
            return;
        };
        let task = &entry.task;
        match task.status {
            TaskStatus::Running if by_parent.contains_key(id) || task.spec.fan_out.is_some() => {
                let max_parallel = task
                    .spec
                    .fan_out
                    .as_ref()
                    .map_or(usize::MAX, |f| f.max_parallel);
                let children = by_parent.remove(id).unwrap_or_default();
                self.resume_fan_out(id, children, max_parallel);
            }
            TaskStatus::Running
                if task.counted_attempts() <= task.spec.retries
                    || self.config.rerun_interrupted =>
            {
                let attempt = task.attempts;
                self.set_status(id, TaskStatus::Pending);
                if let Some(entry) = self.tasks.get_mut(id) {
                    Arc::make_mut(&mut entry.task).error = Some(format!(
                        "attempt {attempt} was interrupted by a restart; retrying"
                    ));
                    Arc::make_mut(&mut entry.task).instance_id = None;
                }
                self.enqueue(id);
            }
            TaskStatus::Running => {
                let reason = "interrupted: the server stopped while it ran".to_string();
                self.finish(id, TaskStatus::Failed, None, Some(reason));
            }
            TaskStatus::Queued => {
                self.set_status(id, TaskStatus::Pending);
                self.enqueue(id);
            }
            TaskStatus::Pending if entry.waiting_on == 0 && entry.parent.is_none() => {
                self.enqueue(id);
            }
            _ => {}
        }
    }

    /// A run's process group may have outlived the server that started it (a crash): it is
    /// ended before anything is dispatched, so that no attempt runs beside a new one.
    fn reap(&mut self, id: &str) {
        let Some(task) = self.tasks.get_mut(id).map(|e| Arc::make_mut(&mut e.task)) else {
            return;
        };
        if let Some(process_group) = task.process_group.take() {
            self.effects.push(Effect::Reap(Leftover {
                task_id: task.id.clone(),
                instance_id: task.instance_id.clone(),
                process_group,
            }));
            self.mark_dirty(id);
        }
    }

    fn resume_fan_out(&mut self, id: &str, children: Vec<TaskId>, max_parallel: usize) {
        let statuses: Vec<TaskStatus> = children
            .iter()
            .filter_map(|c| self.tasks.get(c).map(|e| e.task.status))
            .collect();
        let next = statuses
            .iter()
            .filter(|s| **s != TaskStatus::Pending)
            .count();
        let done = statuses.iter().filter(|s| s.is_terminal()).count();
        let total = children.len();
        let last = children.last().cloned();
        self.fan_outs.insert(
            self.shared_id(id),
            FanOutState {
                children,
                next,
                active: next - done,
                done,
                max_parallel,
            },
        );
        if done == total {
            // Every item ended before the crash: end the parent now, as its last item would.
            if let Some(state) = self.fan_outs.get_mut(id) {
                state.done = state.done.saturating_sub(1);
                state.active += 1;
            }
            if let Some((id, status, result, error)) =
                last.and_then(|child| self.child_done(id, &child))
            {
                self.finish(&id, status, result, error);
            }
        }
    }
}
