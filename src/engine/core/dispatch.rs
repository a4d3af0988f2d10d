//! Dispatch: ready tasks join their queue (shared, or pinned to one instance), and idle
//! instances take the most urgent, oldest one. Starting a run is an effect.

use std::cmp::Reverse;

use super::{Core, Effect, Running};
use crate::engine::{
    model::{
        event::EventKind,
        task::{AgentOptions, FailureClass, TaskId, TaskStatus},
    },
    ports::RunRequest,
    workflow::{Segment, output_at, output_text, shell_quote},
};

impl Core {
    /// A ready task joins its queue (or fails if its pinned instance is gone). A `for_each`
    /// task expands into its items instead.
    pub(super) fn enqueue(&mut self, id: &str) {
        let Some(task) = self.tasks.get(id).map(|e| &e.task) else {
            return;
        };
        if task.spec.fan_out.is_some() {
            self.expand(id);
            return;
        }
        if !self.take_session(id) {
            return;
        }
        let Some(task) = self.tasks.get(id).map(|e| &e.task) else {
            return;
        };
        let priority = task.spec.priority;
        self.arrivals += 1;
        if let Some(instance) = task.spec.instance_id.clone() {
            if !self.pool.get(&instance).is_some_and(|i| i.status.is_live()) {
                let reason = format!("its instance {instance} is gone");
                self.finish(id, TaskStatus::Failed, None, Some(reason));
                return;
            }
            self.pinned
                .entry(instance)
                .or_default()
                .push(priority, self.arrivals, id.to_owned());
        } else {
            self.queue.push(priority, self.arrivals, id.to_owned());
        }
        self.set_status(id, TaskStatus::Queued);
        self.publish_task(EventKind::TaskQueued, id);
    }

    /// Starts ready tasks on idle instances until one of the two runs out.
    pub(super) fn dispatch(&mut self) {
        if self.shutting_down || self.paused() {
            return;
        }
        while let Some(instance) = self.pool.first_idle().cloned() {
            let Some(task_id) = self.next_task_for(&instance) else {
                // The longest-idle instance has nothing: only pinned work could be left for
                // the others.
                let others: Vec<String> = self
                    .pinned
                    .keys()
                    .filter(|i| **i != instance && self.pool.is_idle(i))
                    .cloned()
                    .collect();
                for other in others {
                    if let Some(task_id) = self.next_task_for(&other) {
                        self.start(task_id, &other);
                    }
                }
                return;
            };
            self.start(task_id, &instance);
        }
    }

    /// The most urgent, oldest ready task this instance may run: the better of the shared
    /// queue's head and the head of the queue pinned to it.
    fn next_task_for(&mut self, instance: &str) -> Option<TaskId> {
        let tasks = &self.tasks;
        let ready = |id: &str| {
            tasks
                .get(id)
                .is_some_and(|e| e.task.status == TaskStatus::Queued)
        };
        let shared = self.queue.peek(ready);
        let pinned = self.pinned.get_mut(instance).and_then(|q| q.peek(ready));
        let take_pinned = match (shared, pinned) {
            (None, None) => return None,
            (Some(_), None) => false,
            (None, Some(_)) => true,
            (Some((sp, sa)), Some((pp, pa))) => (pp, Reverse(pa)) > (sp, Reverse(sa)),
        };
        if take_pinned {
            self.pinned.get_mut(instance)?.pop(ready)
        } else {
            self.queue.pop(ready)
        }
    }

    /// Upstream results filled into the task's template: they are all complete, or the
    /// task would not be ready. In a shell step each is one quoted word: agent output must
    /// never become shell code.
    fn render(&self, task_id: &str) -> Option<String> {
        let spec = &self.tasks.get(task_id)?.task.spec;
        let shell = spec.command.is_some();
        spec.template.as_ref().map(|template| {
            template.render(|segment| {
                let result = |id: &str| self.tasks.get(id).and_then(|e| e.task.result.as_ref());
                let text = match segment {
                    Segment::Result(id) => result(id).map(|r| r.text.clone()),
                    // A part the schema let the answer leave out is empty.
                    Segment::Output(id, path) => result(id)
                        .and_then(|r| r.structured_output.as_ref())
                        .and_then(|output| output_at(output, path))
                        .map(output_text),
                    _ => None,
                }
                .unwrap_or_default();
                if shell { shell_quote(&text) } else { text }
            })
        })
    }

    fn start(&mut self, task_id: TaskId, instance_id: &str) {
        let max_budget_usd = self.attempt_budget(&task_id);
        if let Some(left) = max_budget_usd
            && left <= 0.0
        {
            // Its own budget went on earlier attempts (the swarm's and the workflow's hold
            // dispatching back before this).
            if let Some(entry) = self.tasks.get_mut(&task_id) {
                entry.task.failure_class = Some(FailureClass::BudgetExhausted);
            }
            let reason = "not started: its budget (options.max_budget_usd) is spent".to_string();
            self.finish(&task_id, TaskStatus::Failed, None, Some(reason));
            return;
        }
        let rendered = self.render(&task_id);
        let resume = self.session_to_resume(&task_id);
        let instance_dir = self
            .pool
            .get(instance_id)
            .and_then(|i| i.working_directory.clone());
        let now = self.now;
        let default_timeout = self.config.default_timeout;
        let base_dir = self.config.working_directory.clone();
        let Some(entry) = self.tasks.get_mut(&task_id) else {
            return;
        };
        let task = &mut entry.task;
        if let Some(text) = rendered {
            match &mut task.spec.command {
                Some(command) => *command = text,
                None => task.spec.prompt = text,
            }
        }
        task.attempts += 1;
        task.failure_class = None;
        task.started_at = Some(now);
        task.instance_id = Some(instance_id.to_owned());
        let timeout = task.spec.timeout.unwrap_or(default_timeout);
        let spec = &task.spec;
        let request = RunRequest {
            task_id: task_id.clone(),
            prompt: spec.prompt.clone(),
            // Relative directories are taken from the configured working directory.
            working_directory: base_dir.join(
                spec.working_directory
                    .clone()
                    .or(instance_dir)
                    .unwrap_or_default(),
            ),
            model: spec.model.clone(),
            allowed_tools: spec.allowed_tools.clone(),
            max_turns: spec.max_turns,
            permission_mode: spec.permission_mode.clone(),
            command: spec.command.clone(),
            attempt: task.attempts,
            options: match resume {
                Some(session) => AgentOptions {
                    resume_session: Some(session),
                    ..spec.options.clone()
                },
                None => spec.options.clone(),
            },
            isolation: spec.isolation,
            instance_id: instance_id.to_owned(),
            workflow_id: task.workflow_id.clone(),
            max_budget_usd,
            output_schema: spec.output_schema.clone(),
        };
        self.pool.assign(instance_id, &task_id);
        self.set_status(&task_id, TaskStatus::Running);
        self.publish_task(EventKind::TaskStarted, &task_id);
        self.publish_instance(instance_id);
        self.running.insert(task_id.clone(), Running::default());
        self.effects.push(Effect::StartRun {
            request: Box::new(request),
            timeout,
        });
    }
}
