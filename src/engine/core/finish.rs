//! How runs end: the outcome is recorded, the instance freed, a retryable failure waits
//! for its backoff, and a terminal state settles everything downstream (dependents
//! released, skipped or cancelled; `for_each` parents; workflows; fail-fast).

use std::sync::Arc;
use std::time::Duration;

use super::{Core, Effect, Timer, Waiter};
use crate::engine::{
    model::{
        event::EventKind,
        instance::InstanceStatus,
        task::{Attempt, FailureClass, FailurePolicy, TaskResult, TaskStatus, Usage, WorkflowId},
    },
    ports::{RunOutcome, StopReason},
};

/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

impl Core {
    /// `base` doubled for each attempt after the first, at most [`MAX_BACKOFF`], with ±20%
    /// jitter so that tasks failing together do not retry together.
    pub(super) fn backoff(&mut self, base: Duration, attempt: u32) -> Duration {
        let doubled = base.saturating_mul(1 << attempt.saturating_sub(1).min(16));
        let capped = doubled.min(MAX_BACKOFF);
        // xorshift64: cheap, and deterministic for a given seed (tests seed it).
        self.jitter ^= self.jitter << 13;
        self.jitter ^= self.jitter >> 7;
        self.jitter ^= self.jitter << 17;
        let jitter = 0.8 + (self.jitter % 1000) as f64 / 2500.0;
        capped.mul_f64(jitter)
    }

    /// A run's process is up: its instance shows the pid, and the task's record keeps the
    /// process group (the agent leads one per process), so that a server started after a
    /// crash can end what is left of it.
    pub(super) fn run_started(&mut self, task_id: &str, pid: Option<u32>) {
        if !self.running.contains_key(task_id) {
            return;
        }
        let Some(task) = self
            .tasks
            .get_mut(task_id)
            .map(|e| Arc::make_mut(&mut e.task))
        else {
            return;
        };
        task.process_group = pid;
        if let Some(instance) = task
            .instance_id
            .clone()
            .and_then(|id| self.pool.get_mut(&id))
        {
            instance.pid = pid;
        }
        self.mark_dirty(task_id);
    }

    /// A run ended: record it, free the instance, retry or finish, dispatch.
    pub(super) fn run_finished(&mut self, task_id: &str, outcome: RunOutcome) {
        let running = self.running.remove(task_id);
        let Some(task) = self
            .tasks
            .get_mut(task_id)
            .map(|e| Arc::make_mut(&mut e.task))
        else {
            return;
        };
        // Its processes are gone.
        task.process_group = None;
        let instance_id = task.instance_id.clone();
        let workflow = task.workflow_id.clone();
        // A run the server's shutdown stopped stays RUNNING, as a crash would leave it: the
        // next start retries it if its policy allows, else fails it as interrupted. A stop
        // must not cost a task the retries a crash would have given it.
        let interrupted = running.as_ref().and_then(|r| r.stop) == Some(StopReason::Shutdown)
            && outcome.status != TaskStatus::Completed;
        // Refused by its account's usage limit (and not stopped): back to the queue.
        let refused = running
            .as_ref()
            .is_some_and(|r| r.refused && r.stop.is_none())
            && outcome.status == TaskStatus::Failed;
        let lost = running.as_ref().is_some_and(|r| r.lost);
        let retry = outcome.status == TaskStatus::Failed
            && outcome.class.is_some_and(FailureClass::retryable)
            && task.counted_attempts() <= task.spec.retries;
        let (cost, usage, turns) = outcome
            .result
            .as_ref()
            .map_or((0.0, Usage::default(), 0), |r| {
                (r.cost_usd, r.usage.clone(), u64::from(r.num_turns))
            });
        self.account(instance_id.as_deref(), cost, &usage, turns, outcome.status);
        if let Some(result) = &outcome.result {
            self.record_session(task_id, &result.session_id);
        }
        if lost {
            self.requeue_lost(task_id);
        } else if interrupted {
            // Stored as it is, without the process group that is gone now.
            self.mark_dirty(task_id);
        } else {
            if let Some(entry) = self.tasks.get_mut(task_id) {
                Arc::make_mut(&mut entry.task).failure_class = outcome.class;
            }
            if refused {
                self.requeue_refused(task_id, outcome.result.as_ref());
            } else if retry {
                let error = outcome.error.unwrap_or_default();
                self.retry_later(task_id, outcome.result, error);
            } else {
                self.finish(task_id, outcome.status, outcome.result, outcome.error);
            }
        }
        if let Some(workflow) = workflow {
            self.check_workflow_budget(&workflow);
        }
        if let Some(id) = &instance_id {
            self.free_instance(id);
        }
        for waiter in running.map(|r| r.waiters).unwrap_or_default() {
            match waiter {
                Waiter::Cancel(call) => {
                    let value = self.task(task_id);
                    self.reply(call, super::Answer::Task(value));
                }
                Waiter::Terminate(call, instance) => {
                    let value = self.instance(&instance).cloned();
                    self.reply(call, super::Answer::Instance(value));
                }
            }
        }
        if self.shutting_down && self.running.is_empty() {
            for call in std::mem::take(&mut self.shutdown_waiters) {
                self.reply(call, super::Answer::Done);
            }
        }
        self.dispatch();
    }

    /// Adds a run's spending to its instance and the swarm.
    fn account(
        &mut self,
        instance: Option<&str>,
        cost: f64,
        usage: &Usage,
        turns: u64,
        status: TaskStatus,
    ) {
        self.total_usage.add(usage);
        self.total_turns += turns;
        if cost != 0.0 {
            let was_spent = self.paused();
            self.total_cost_usd += cost;
            self.cost_changed = true;
            if !was_spent && self.paused() {
                self.budget_ran_out();
            }
        }
        if let Some(instance) = instance.and_then(|id| self.pool.get_mut(id)) {
            instance.usage.add(usage);
            instance.turns += turns;
            instance.total_cost_usd += cost;
            if status == TaskStatus::Completed {
                instance.tasks_completed += 1;
            } else {
                instance.tasks_failed += 1;
            }
        }
    }

    /// The instance's run is over: back to idle, or gone if it was stopping or terminated.
    fn free_instance(&mut self, id: &str) {
        let was_terminated = self
            .pool
            .get(id)
            .is_some_and(|i| i.status == InstanceStatus::Terminated);
        let now_terminated = self
            .pool
            .release(id)
            .is_some_and(|i| i.status == InstanceStatus::Terminated);
        if now_terminated && !was_terminated {
            // Scaled down while busy: its process goes now.
            self.effects.push(Effect::RetireInstance(id.to_owned()));
        }
        if !was_terminated {
            self.publish_instance(id);
        }
    }

    /// Moves a task to a terminal state and settles everything downstream: dependents are
    /// released when it completed, skipped (or cancelled, in a cancelled workflow) when not.
    pub(super) fn finish(
        &mut self,
        id: &str,
        status: TaskStatus,
        result: Option<TaskResult>,
        error: Option<String>,
    ) {
        let mut work = vec![(self.shared_id(id), status, result, error)];
        let mut fail_fast: Vec<(WorkflowId, String)> = Vec::new();
        while let Some((id, status, result, error)) = work.pop() {
            let now = self.now;
            let Some(entry) = self.tasks.get(&id) else {
                continue;
            };
            if entry.task.status.is_terminal() {
                continue;
            }
            self.set_status(&id, status);
            self.release_session(&id);
            self.finished_tasks.push_back(id.clone());
            let Some(entry) = self.tasks.get_mut(&id) else {
                continue;
            };
            let task = Arc::make_mut(&mut entry.task);
            task.completed_at = Some(now);
            task.result = result.map(Box::new);
            task.error = error;
            if status != TaskStatus::Completed && task.failure_class.is_none() {
                task.failure_class = Some(match status {
                    TaskStatus::Cancelled => FailureClass::Cancelled,
                    TaskStatus::Skipped => FailureClass::Skipped,
                    _ => FailureClass::Interrupted,
                });
            }
            let dependents = std::mem::take(&mut entry.dependents);
            let parent = entry.parent.clone();
            if status == TaskStatus::Failed && entry.task.spec.on_failure == FailurePolicy::FailFast
            {
                fail_fast.extend(
                    entry
                        .task
                        .workflow_id
                        .clone()
                        .map(|w| (w, entry.task.name().to_owned())),
                );
            }
            let kind = match status {
                TaskStatus::Completed => EventKind::TaskCompleted,
                TaskStatus::Failed => EventKind::TaskFailed,
                TaskStatus::Cancelled => EventKind::TaskCancelled,
                _ => EventKind::TaskSkipped,
            };
            self.publish_task(kind, &id);
            self.workflow_task_done(&id);
            if let Some(parent) = parent {
                work.extend(self.child_done(&parent, &id));
            }
            for dependent in dependents {
                if status == TaskStatus::Completed {
                    let Some(entry) = self.tasks.get_mut(&dependent) else {
                        continue;
                    };
                    entry.waiting_on = entry.waiting_on.saturating_sub(1);
                    if entry.waiting_on == 0 && entry.task.status == TaskStatus::Pending {
                        self.enqueue(&dependent);
                    }
                } else {
                    let cancelling = self
                        .tasks
                        .get(&dependent)
                        .and_then(|e| e.task.workflow_id.as_ref())
                        .and_then(|w| self.workflows.get(w))
                        .is_some_and(|w| w.record.cancelling);
                    let (next, reason) = if cancelling {
                        (
                            TaskStatus::Cancelled,
                            "cancelled with its workflow".to_string(),
                        )
                    } else {
                        (
                            TaskStatus::Skipped,
                            format!("dependency {} was {status}", self.describe(&id)),
                        )
                    };
                    work.push((dependent, next, None, Some(reason)));
                }
            }
        }
        for (workflow, failed) in fail_fast {
            self.abort_workflow(
                &workflow,
                &format!("cancelled: task {failed} failed and the workflow fails fast"),
            );
        }
    }

    /// A failed run that has retries left waits, then queues again.
    fn retry_later(&mut self, id: &str, result: Option<TaskResult>, error: String) {
        let Some((base, attempt, of)) = self.tasks.get(id).map(|e| {
            let spec = &e.task.spec;
            (
                spec.retry_backoff.unwrap_or(Duration::from_secs(1)),
                e.task.attempts,
                spec.retries + 1,
            )
        }) else {
            return;
        };
        let delay = self.backoff(base, attempt);
        self.set_status(id, TaskStatus::Pending);
        let now = self.now;
        let Some(entry) = self.tasks.get_mut(id) else {
            return;
        };
        let task = Arc::make_mut(&mut entry.task);
        task.history.push(Attempt {
            attempt,
            started_at: task.started_at,
            ended_at: now,
            result: result.clone(),
            error: error.clone(),
            failure_class: task.failure_class,
            instance_id: task.instance_id.clone(),
        });
        task.result = result.map(Box::new);
        task.error = Some(format!(
            "attempt {attempt} of {of} failed: {error}; retrying in {:.1}s",
            delay.as_secs_f64()
        ));
        self.publish_task(EventKind::TaskRetrying, id);
        self.effects.push(Effect::ArmTimer {
            after: delay,
            timer: Timer::Retry(self.shared_id(id)),
        });
    }
}
