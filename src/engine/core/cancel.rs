//! Cancellation of one task, in each state, and the stop of a running one (an effect; the
//! callers waiting on it are answered when its run has ended).

use super::{Answer, CallId, Core, Effect, Waiter};
use crate::engine::{
    error::EngineError,
    model::task::{TaskId, TaskStatus},
    ports::StopReason,
};

impl Core {
    pub(super) fn cancel_task(&mut self, call: CallId, id: TaskId) {
        let status = match self.entry(&id) {
            Ok(entry) => entry.task.status,
            Err(e) => return self.reply(call, Answer::Task(Err(e))),
        };
        match status {
            TaskStatus::Pending | TaskStatus::Queued => {
                self.finish(&id, TaskStatus::Cancelled, None, Some("cancelled".into()));
                let value = self.task(&id);
                self.reply(call, Answer::Task(value));
            }
            TaskStatus::Running if self.fan_outs.contains_key(&id) => {
                self.cancel_children(&id);
                let value = self.task(&id);
                self.reply(call, Answer::Task(value));
            }
            TaskStatus::Running => {
                self.stop_running(&id, StopReason::Cancelled, Some(Waiter::Cancel(call)));
            }
            done => {
                let error = EngineError::FailedPrecondition(format!(
                    "task {id} is already {done}; only pending, queued or running tasks can be cancelled"
                ));
                self.reply(call, Answer::Task(Err(error)));
            }
        }
    }

    /// Asks a run to stop (once); `waiter` is answered when it has ended.
    pub(super) fn stop_running(&mut self, id: &str, reason: StopReason, waiter: Option<Waiter>) {
        let Some(running) = self.running.get_mut(id) else {
            return;
        };
        running.waiters.extend(waiter);
        if running.stop.is_none() {
            running.stop = Some(reason);
            self.effects.push(Effect::StopRun {
                task: self.shared_id(id),
                reason,
            });
        }
    }
}
