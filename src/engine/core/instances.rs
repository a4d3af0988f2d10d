//! The instance pool's transitions: spawn, scale (down idle-first), terminate (a busy one's
//! task fails), and the tasks pinned to an instance that goes.

use std::path::PathBuf;
use std::sync::Arc;

use super::{Answer, CallId, Core, Effect, Waiter};
use crate::engine::{
    error::{EngineError, Result},
    model::{
        event::{EventKind, Payload},
        instance::{Instance, InstanceStatus, remote_node},
        task::{Attempt, FailureClass, TaskId, TaskStatus},
    },
    ports::StopReason,
};

impl Core {
    pub(super) fn publish_instance(&mut self, id: &str) {
        let Some(instance) = self.pool.get(id) else {
            return;
        };
        let kind = match instance.status {
            InstanceStatus::Terminated => EventKind::InstanceTerminated,
            _ => EventKind::InstanceStatusChanged,
        };
        // An instance busy with a task shows up in that task's (and workflow's) stream too.
        let task = instance.current_task.clone();
        let workflow = task
            .as_deref()
            .and_then(|t| self.tasks.get(t))
            .and_then(|e| e.task.workflow_id.clone());
        let payload = Payload::Instance(Box::new(instance.clone()));
        self.publish(
            kind,
            task.as_deref(),
            Some(id),
            workflow.as_deref(),
            payload,
        );
    }

    pub(super) fn spawn_instance(&mut self, working_directory: Option<PathBuf>) -> Instance {
        let node = std::mem::take(&mut self.config.node);
        let instance = self.spawn_on((&node, false), working_directory);
        self.config.node = node;
        instance
    }

    /// An instance on `node`: this one's (`remote` false), or another's.
    fn spawn_on(&mut self, node: (&str, bool), working_directory: Option<PathBuf>) -> Instance {
        let account = self.account_for_new_instance();
        let instance = self
            .pool
            .spawn(working_directory, account, node, self.now)
            .clone();
        // Relative directories are taken from the configured one, as a run's are.
        let working_directory = self
            .config
            .working_directory
            .join(instance.working_directory.clone().unwrap_or_default());
        self.effects.push(Effect::PrepareInstance {
            instance: instance.id.clone(),
            account: instance.account.clone(),
            working_directory,
        });
        self.publish(
            EventKind::InstanceSpawned,
            None,
            Some(&instance.id),
            None,
            Payload::Instance(Box::new(instance.clone())),
        );
        instance
    }

    pub(super) fn spawn(
        &mut self,
        count: u32,
        working_directory: Option<PathBuf>,
    ) -> Result<Vec<Instance>> {
        if count == 0 {
            return Err(EngineError::invalid("count", "must be at least 1"));
        }
        let live = self.pool.active_count();
        let max = self.config.max_instances;
        if live + count as usize > max {
            return Err(EngineError::invalid(
                "count",
                format!("{count} more would exceed the maximum of {max} instances ({live} live)"),
            ));
        }
        if let Some(dir) = &working_directory {
            self.inside_workspace(dir)?;
            if !dir.is_dir() {
                return Err(EngineError::invalid(
                    "working_directory",
                    format!("{} is not a directory", dir.display()),
                ));
            }
        }
        let spawned = (0..count)
            .map(|_| self.spawn_instance(working_directory.clone()))
            .collect();
        self.dispatch();
        Ok(spawned)
    }

    pub(super) fn scale(&mut self, target: i64) -> Result<Vec<Instance>> {
        let max = self.config.max_instances;
        let target = usize::try_from(target)
            .map_err(|_| EngineError::invalid("target", "must be at least 0"))?;
        if target > max {
            return Err(EngineError::invalid(
                "target",
                format!("must be at most the maximum of {max} instances"),
            ));
        }
        let active = self.pool.active_count();
        if target > active {
            for _ in active..target {
                self.spawn_instance(None);
            }
            self.dispatch();
        } else {
            for id in self.pool.scale_down_candidates(target) {
                if self.pool.is_idle(&id) {
                    self.retire(&id);
                } else {
                    self.pool.set_status(&id, InstanceStatus::Stopping);
                    self.publish_instance(&id);
                }
            }
        }
        Ok(self.pool.live().cloned().collect())
    }

    /// Terminates an instance and fails the tasks pinned to it.
    pub(super) fn retire(&mut self, id: &str) {
        self.pool.set_status(id, InstanceStatus::Terminated);
        self.effects.push(Effect::RetireInstance(id.to_owned()));
        self.publish_instance(id);
        if let Some(mut queue) = self.pinned.remove(id) {
            let tasks = &self.tasks;
            let mut stranded = Vec::new();
            while let Some(task) = queue.pop(|t| {
                tasks
                    .get(t)
                    .is_some_and(|e| e.task.status == TaskStatus::Queued)
            }) {
                stranded.push(task);
            }
            for task in stranded {
                self.finish(
                    &task,
                    TaskStatus::Failed,
                    None,
                    Some(format!("its instance {id} was terminated")),
                );
            }
        }
    }

    /// `count` instances on another node's machine (at most `max_instances`, the most a
    /// node may ask for); they take work as soon as they exist.
    pub(super) fn join_node(&mut self, node: &str, count: u32) -> Vec<Instance> {
        let count = count.min(u32::try_from(self.config.max_instances).unwrap_or(u32::MAX));
        let joined = (0..count)
            .map(|_| self.spawn_on((node, true), None))
            .collect();
        self.dispatch();
        joined
    }

    /// `node` is gone: its instances are terminated, and what ran on them is handed back
    /// to the queue once its run ends (the attempt does not count: the task did nothing
    /// wrong).
    pub(super) fn leave_node(&mut self, node: &str) {
        let gone: Vec<(String, Option<TaskId>)> = self
            .pool
            .live()
            .filter(|i| remote_node(&i.id) == Some(node))
            .map(|i| (i.id.clone(), i.current_task.clone()))
            .collect();
        for (id, task) in gone {
            self.retire(&id);
            if let Some(task) = task
                && let Some(run) = self.running.get_mut(&task)
            {
                run.lost = true;
                self.stop_running(&task, StopReason::InstanceTerminated, None);
            }
        }
    }

    /// A run whose node was lost goes back to the queue: the attempt stays in its history
    /// as `node_lost`, which does not count against its retries. (The attempt number still
    /// grows: it is the fencing token of every report about a run.)
    pub(super) fn requeue_lost(&mut self, id: &str) {
        let now = self.now;
        let Some(entry) = self.tasks.get_mut(id) else {
            return;
        };
        let task = Arc::make_mut(&mut entry.task);
        let node = task
            .instance_id
            .as_deref()
            .and_then(remote_node)
            .unwrap_or_default()
            .to_owned();
        let error = format!("node {node} was lost while it ran this task");
        task.history.push(Attempt {
            attempt: task.attempts,
            started_at: task.started_at,
            ended_at: now,
            result: None,
            error: error.clone(),
            failure_class: Some(FailureClass::NodeLost),
            instance_id: task.instance_id.clone(),
        });
        task.failure_class = None;
        task.started_at = None;
        task.error = Some(format!("{error}; back in the queue"));
        self.set_status(id, TaskStatus::Pending);
        self.enqueue(id);
    }

    pub(super) fn terminate(&mut self, call: CallId, id: String) {
        let instance = match self.instance(&id) {
            Ok(i) => i.clone(),
            Err(e) => return self.reply(call, Answer::Instance(Err(e))),
        };
        if instance.status == InstanceStatus::Terminated {
            let error =
                EngineError::FailedPrecondition(format!("instance {id} is already terminated"));
            return self.reply(call, Answer::Instance(Err(error)));
        }
        self.retire(&id);
        match instance.current_task {
            Some(task) if self.running.contains_key(&task) => self.stop_running(
                &task,
                StopReason::InstanceTerminated,
                Some(Waiter::Terminate(call, id)),
            ),
            _ => {
                let value = self.instance(&id).cloned();
                self.reply(call, Answer::Instance(value));
            }
        }
    }
}
