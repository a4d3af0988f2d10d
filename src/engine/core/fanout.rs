//! `for_each`: a ready fan-out task becomes one child task per item, released at most
//! `max_parallel` at a time; it stays RUNNING (with no process of its own) until every
//! child is terminal, and its result is the list of the children's results.

use super::Core;
use crate::engine::{
    model::{
        event::EventKind,
        task::{Task, TaskId, TaskResult, TaskSpec, TaskStatus},
    },
    ports::StopReason,
    workflow::{FanOutSource, MAX_ITEMS, Template, items_of, output_at, output_text, shell_quote},
};
use std::sync::Arc;

/// What a JSON value is, for an error.
fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

/// A `for_each` task's items, released at most `max_parallel` at a time.
pub(super) struct FanOutState {
    pub(super) children: Vec<TaskId>,
    /// Children released so far (`children[..next]`).
    pub(super) next: usize,
    /// Released children not yet terminal.
    pub(super) active: usize,
    /// Children terminal so far.
    pub(super) done: usize,
    pub(super) max_parallel: usize,
}

/// How a task ends: its id, terminal state, result and reason.
pub(super) type Ending = (TaskId, TaskStatus, Option<TaskResult>, Option<String>);

impl Core {
    /// Expands a ready `for_each` task into its items.
    pub(super) fn expand(&mut self, id: &str) {
        let Some((spec, parent_name)) = self
            .tasks
            .get(id)
            .map(|e| (e.task.spec.clone(), e.task.name().to_owned()))
        else {
            return;
        };
        let Some(fan_out) = spec.fan_out.clone() else {
            return;
        };
        let items = match &fan_out.source {
            FanOutSource::Items(items) => items.clone(),
            FanOutSource::Result(source) => items_of(
                self.tasks
                    .get(source)
                    .and_then(|e| e.task.result.as_ref())
                    .map_or("", |r| r.text.as_str()),
            ),
            FanOutSource::Output(source, path) => {
                let value = self
                    .tasks
                    .get(source)
                    .and_then(|e| e.task.result.as_ref())
                    .and_then(|r| r.structured_output.as_ref())
                    .and_then(|output| output_at(output, path));
                match value {
                    Some(serde_json::Value::Array(values)) => {
                        values.iter().map(output_text).collect()
                    }
                    other => {
                        let found = other.map_or("nothing", |v| json_kind(v));
                        let at = path.join(".");
                        let reason = format!(
                            "for_each: the structured output of {source} has {found} at {:?}, not a list",
                            if at.is_empty() { "." } else { &at }
                        );
                        self.finish(id, TaskStatus::Failed, None, Some(reason));
                        return;
                    }
                }
            }
        };
        if items.len() > MAX_ITEMS {
            let reason = format!("for_each: {} items is more than {MAX_ITEMS}", items.len());
            self.finish(id, TaskStatus::Failed, None, Some(reason));
            return;
        }
        self.set_status(id, TaskStatus::Running);
        let now = self.now;
        let Some(parent) = self.tasks.get_mut(id).map(|e| Arc::make_mut(&mut e.task)) else {
            return;
        };
        parent.started_at = Some(now);
        parent.attempts = 1;
        let workflow = parent.workflow_id.clone();
        self.publish_task(EventKind::TaskStarted, id);
        let mut children = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            let child_id = TaskId::from(format!("{id}.{index}"));
            let item = if spec.command.is_some() {
                shell_quote(item)
            } else {
                item.clone()
            };
            let template = spec.template.as_ref().map(|t| t.bind(&item, index));
            let text = template.as_ref().map(Template::display);
            let child = TaskSpec {
                id: None,
                name: format!("{}[{index}]", parent_name),
                prompt: match (&spec.command, &text) {
                    (None, Some(text)) => text.clone(),
                    _ => spec.prompt.clone(),
                },
                command: spec
                    .command
                    .as_ref()
                    .map(|c| text.clone().unwrap_or(c.clone())),
                depends_on: Vec::new(),
                fan_out: None,
                template,
                ..TaskSpec::clone(&spec)
            };
            let task = Task::new(child_id.clone(), child, workflow.clone(), now);
            self.insert_task(task, Some(self.shared_id(id)));
            if let Some(flow) = workflow.as_ref().and_then(|w| self.workflows.get_mut(w)) {
                flow.remaining += 1;
                flow.record.info.task_ids.push(child_id.clone());
                self.dirty_workflows.insert(flow.record.info.id.clone());
            }
            self.publish_task(EventKind::TaskSubmitted, &child_id);
            children.push(child_id);
        }
        if children.is_empty() {
            let result = TaskResult {
                text: "[]".into(),
                exit_code: Some(0),
                ..Default::default()
            };
            self.finish(id, TaskStatus::Completed, Some(result), None);
            return;
        }
        let state = FanOutState {
            children,
            next: 0,
            active: 0,
            done: 0,
            max_parallel: fan_out.max_parallel,
        };
        self.fan_outs.insert(self.shared_id(id), state);
        self.release_children(id);
    }

    /// Queues children of a `for_each` task up to its bound.
    pub(super) fn release_children(&mut self, parent: &str) {
        loop {
            let Some(state) = self.fan_outs.get_mut(parent) else {
                return;
            };
            if state.active >= state.max_parallel || state.next >= state.children.len() {
                return;
            }
            let child = state.children[state.next].clone();
            state.next += 1;
            if self
                .tasks
                .get(&child)
                .is_some_and(|e| e.task.status == TaskStatus::Pending)
            {
                state.active += 1;
                self.enqueue(&child);
            }
        }
    }

    /// A child of `parent` is terminal: release the next, or end the parent when it was the
    /// last. Returns the parent's end for the caller's work list.
    pub(super) fn child_done(&mut self, parent: &str, child: &str) -> Option<Ending> {
        let state = self.fan_outs.get_mut(parent)?;
        // Children are `<parent>.<index>`.
        let index = child
            .rsplit('.')
            .next()
            .and_then(|i| i.parse::<usize>().ok());
        if index.is_some_and(|i| i < state.next) {
            state.active = state.active.saturating_sub(1);
        }
        state.done += 1;
        if state.done < state.children.len() {
            self.release_children(parent);
            return None;
        }
        let state = self.fan_outs.remove(parent)?;
        let children: Vec<&Task> = state
            .children
            .iter()
            .filter_map(|c| self.tasks.get(c).map(|e| e.task.as_ref()))
            .collect();
        let texts: Vec<&str> = children
            .iter()
            .map(|t| t.result.as_ref().map_or("", |r| r.text.as_str()))
            .collect();
        let results = || children.iter().filter_map(|t| t.result.as_ref());
        let result = TaskResult {
            text: serde_json::Value::from(texts).to_string(),
            cost_usd: results().map(|r| r.cost_usd).sum(),
            num_turns: results().map(|r| r.num_turns).sum(),
            exit_code: Some(0),
            ..Default::default()
        };
        let unfinished = children
            .iter()
            .filter(|t| t.status != TaskStatus::Completed)
            .count();
        let cancelled = children.iter().any(|t| t.status == TaskStatus::Cancelled);
        let (status, error) = match (unfinished, cancelled) {
            (0, _) => (TaskStatus::Completed, None),
            (_, true) => (TaskStatus::Cancelled, Some("cancelled".to_string())),
            (n, false) => (
                TaskStatus::Failed,
                Some(format!("{n} of {} items did not complete", children.len())),
            ),
        };
        Some((self.shared_id(parent), status, Some(result), error))
    }

    /// Cancels the unfinished items of a running `for_each` task; it ends with them.
    pub(super) fn cancel_children(&mut self, parent: &str) {
        let children = self
            .fan_outs
            .get(parent)
            .map(|f| f.children.clone())
            .unwrap_or_default();
        for child in children {
            match self.tasks.get(&child).map(|e| e.task.status) {
                Some(TaskStatus::Pending | TaskStatus::Queued) => {
                    self.finish(
                        &child,
                        TaskStatus::Cancelled,
                        None,
                        Some("cancelled".into()),
                    );
                }
                Some(TaskStatus::Running) => {
                    self.stop_running(&child, StopReason::Cancelled, None);
                }
                _ => {}
            }
        }
    }
}
