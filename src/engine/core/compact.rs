//! Compaction: at most `task_retention` finished tasks are kept; the oldest go, with their
//! approvals (from memory and, through the batch, from the store), once nothing needs them.

use super::Core;
use crate::engine::workflow::WorkflowStatus;

impl Core {
    pub(super) fn compact(&mut self) {
        while self.finished_tasks.len() > self.config.task_retention {
            let Some(id) = self.finished_tasks.front() else {
                return;
            };
            let Some(entry) = self.tasks.get(id) else {
                self.finished_tasks.pop_front();
                continue;
            };
            let workflow_running = entry.task.workflow_id.as_ref().is_some_and(|w| {
                self.workflows
                    .get(w)
                    .is_some_and(|w| w.record.info.status == WorkflowStatus::Running)
            });
            let item_running = entry
                .parent
                .as_ref()
                .is_some_and(|p| self.fan_outs.contains_key(p));
            if workflow_running || item_running {
                // Compacted later, once its workflow is over.
                return;
            }
            let Some(id) = self.finished_tasks.pop_front() else {
                return;
            };
            if let Some(entry) = self.tasks.remove(&id) {
                self.counts[entry.task.status.index()] -= 1;
                if let Some(key) = &entry.task.spec.idempotency_key {
                    self.idempotency.remove(key);
                }
            }
            self.forget_approvals_of(&id);
            self.deleted_tasks.push(id);
            self.tombstones += 1;
        }
        if self.tombstones > self.order.len() / 2 {
            let tasks = &self.tasks;
            self.order.retain(|id| tasks.contains_key(id));
            self.tombstones = 0;
        }
    }
}
