//! Dispatch: ready tasks join their queue (shared, or pinned to one instance), and idle
//! instances take the most urgent, oldest one. Starting a run is an effect.

use std::cmp::Reverse;
use std::sync::Arc;

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
        let (priority, shared) = (task.spec.priority, task.id.clone());
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
                .push(priority, self.arrivals, shared);
        } else if let Some(account) = task.spec.account.clone() {
            self.account_queues
                .entry(account)
                .or_default()
                .push(priority, self.arrivals, shared);
        } else {
            self.queue.push(priority, self.arrivals, shared);
        }
        self.set_status(id, TaskStatus::Queued);
        self.publish_task(EventKind::TaskQueued, id);
    }

    /// Starts ready tasks on idle instances, longest idle first, whose account takes work,
    /// until one of the two runs out.
    pub(super) fn dispatch(&mut self) {
        if self.shutting_down || self.paused() {
            return;
        }
        let idle: Vec<String> = self.pool.idle().cloned().collect();
        for instance in idle {
            if !self.account_takes_work(&instance) {
                continue;
            }
            if let Some(task_id) = self.next_task_for(&instance) {
                self.start(task_id, &instance);
            }
        }
    }

    /// The most urgent, oldest ready task this instance may run: the best of the heads of
    /// the shared queue, the queue pinned to it and its account's queue.
    fn next_task_for(&mut self, instance: &str) -> Option<TaskId> {
        let account = self.pool.get(instance)?.account.clone();
        let tasks = &self.tasks;
        let ready = |id: &str| {
            tasks
                .get(id)
                .is_some_and(|e| e.task.status == TaskStatus::Queued)
        };
        let heads = [
            self.queue.peek(ready),
            self.pinned.get_mut(instance).and_then(|q| q.peek(ready)),
            self.account_queues
                .get_mut(&account)
                .and_then(|q| q.peek(ready)),
        ];
        let best = (0..heads.len())
            .filter_map(|i| heads[i].map(|(p, a)| (i, (p, Reverse(a)))))
            .max_by_key(|(_, key)| *key)
            .map(|(i, _)| i)?;
        match best {
            0 => self.queue.pop(ready),
            1 => self.pinned.get_mut(instance)?.pop(ready),
            _ => self.account_queues.get_mut(&account)?.pop(ready),
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
                Arc::make_mut(&mut entry.task).failure_class = Some(FailureClass::BudgetExhausted);
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
        let account = self
            .pool
            .get(instance_id)
            .map(|i| i.account.clone())
            .unwrap_or_default();
        let Some(entry) = self.tasks.get_mut(&task_id) else {
            return;
        };
        let task = Arc::make_mut(&mut entry.task);
        if let Some(text) = rendered {
            let spec = Arc::make_mut(&mut task.spec);
            match &mut spec.command {
                Some(command) => *command = text,
                None => spec.prompt = text,
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
                    ..AgentOptions::clone(&spec.options)
                },
                None => AgentOptions::clone(&spec.options),
            },
            isolation: spec.isolation,
            instance_id: instance_id.to_owned(),
            workflow_id: task.workflow_id.clone(),
            max_budget_usd,
            output_schema: spec.output_schema.clone(),
            account,
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
