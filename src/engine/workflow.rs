//! Workflows as the engine runs them: the validated plan it is handed, the templates it
//! fills when a task starts, `for_each` fan-outs, and the workflow record clients see.
//!
//! Reading workflow files (YAML) is not the engine's business: `crate::workflow` turns a
//! document into a [`WorkflowPlan`], and the engine never looks back at the document.

use std::{collections::BTreeMap, time::SystemTime};

use super::model::{
    approval::PermissionPolicy,
    task::{TaskId, TaskSpec, TaskStatus, Usage, WorkflowId},
    words::words,
};

/// Largest workflow document accepted.
pub const MAX_DOCUMENT_BYTES: usize = 4 * 1024 * 1024;
/// Most tasks in one document.
pub const MAX_TASKS: usize = 100_000;
/// Most items one `for_each` expands to.
pub const MAX_ITEMS: usize = 10_000;

// ---- templates ----------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
pub enum Segment {
    Text(String),
    /// The result text of this (upstream) task.
    Result(TaskId),
    /// The value at this path of the (upstream) task's structured output (the whole of it
    /// when the path is empty): a string as it is, anything else as JSON.
    Output(TaskId, Vec<String>),
    /// The current `for_each` item.
    Item,
    /// The current `for_each` index, from 0.
    Index,
}

/// A prompt or command with holes filled when the task starts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Template(pub Vec<Segment>);

impl Template {
    /// The text, with each upstream result (or part of its structured output) from
    /// `value_of`.
    pub fn render(&self, value_of: impl Fn(&Segment) -> String) -> String {
        self.0
            .iter()
            .map(|segment| match segment {
                Segment::Text(text) => text.clone(),
                Segment::Result(_) | Segment::Output(..) => value_of(segment),
                Segment::Item | Segment::Index => String::new(),
            })
            .collect()
    }

    /// The text with its holes shown as `{{ ... }}`, for display before it runs.
    pub fn display(&self) -> String {
        self.0
            .iter()
            .map(|segment| match segment {
                Segment::Text(text) => text.clone(),
                Segment::Result(id) => format!("{{{{ tasks.{id}.result }}}}"),
                Segment::Output(id, path) => {
                    let path: String = path.iter().map(|p| format!(".{p}")).collect();
                    format!("{{{{ tasks.{id}.output{path} }}}}")
                }
                Segment::Item => "{{ item }}".to_owned(),
                Segment::Index => "{{ index }}".to_owned(),
            })
            .collect()
    }

    /// This template for one `for_each` item.
    pub fn bind(&self, item: &str, index: usize) -> Template {
        Template(
            self.0
                .iter()
                .map(|segment| match segment {
                    Segment::Item => Segment::Text(item.to_owned()),
                    Segment::Index => Segment::Text(index.to_string()),
                    other => other.clone(),
                })
                .collect(),
        )
    }
}

/// `text` as one single-quoted shell word.
pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// Splits text into items: a JSON array (strings as they are, other values as JSON), or
/// else its non-empty lines.
pub fn items_of(text: &str) -> Vec<String> {
    if let Ok(serde_json::Value::Array(values)) = serde_json::from_str(text.trim()) {
        return values
            .into_iter()
            .map(|v| match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            })
            .collect();
    }
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The value at `path` of a structured output (`None` when a step is missing): keys of
/// objects, indexes of arrays.
pub fn output_at<'a>(
    output: &'a serde_json::Value,
    path: &[String],
) -> Option<&'a serde_json::Value> {
    path.iter().try_fold(output, |value, step| match value {
        serde_json::Value::Array(items) => step.parse::<usize>().ok().and_then(|i| items.get(i)),
        other => other.get(step),
    })
}

/// A structured output value as text: a string as it is, anything else as JSON.
pub fn output_text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Where a `for_each` task's items come from.
#[derive(Clone, Debug, PartialEq)]
pub enum FanOutSource {
    Items(Vec<String>),
    /// The items of an upstream task's result (see [`items_of`]).
    Result(TaskId),
    /// The list at this path of an upstream task's structured output (each element a
    /// string as it is, anything else as JSON).
    Output(TaskId, Vec<String>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct FanOut {
    pub source: FanOutSource,
    /// Most items running at once.
    pub max_parallel: usize,
}

// ---- the workflow record ------------------------------------------------------------------

words! {
    /// Where a workflow is: running until every task is terminal.
    pub enum WorkflowStatus {
        Running = "running",
        Completed = "completed",
        Failed = "failed",
        Cancelled = "cancelled",
    }
}

/// A workflow as clients see it.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkflowInfo {
    pub id: WorkflowId,
    pub name: String,
    pub description: String,
    pub status: WorkflowStatus,
    pub task_ids: Vec<TaskId>,
    pub created_at: SystemTime,
    pub completed_at: Option<SystemTime>,
    pub total_cost_usd: f64,
    /// Tasks per state, indexed by `TaskStatus::index`.
    pub task_counts: [u64; TaskStatus::COUNT],
    /// Result text of the tasks nothing depends on, by task name.
    pub outputs: BTreeMap<String, String>,
    /// Once its tasks cost this much, tasks not yet started fail.
    pub budget_usd: Option<f64>,
    /// Tokens and turns of its tasks (computed, like the cost).
    pub usage: Usage,
    pub turns: u64,
    /// Tool permission rules for every task of the workflow.
    pub permissions: PermissionPolicy,
    /// The schedule this workflow is a run of, if any.
    pub schedule_id: Option<String>,
}

/// A parsed, validated workflow ready to submit.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkflowPlan {
    pub name: String,
    pub description: String,
    /// Instances the workflow wants live.
    pub instances: Option<u32>,
    /// Task specs with ids set and dependencies mapped to those ids.
    pub tasks: Vec<TaskSpec>,
    /// For each task, the index of the workflow instance it is pinned to (`instance: N`).
    pub pins: Vec<Option<usize>>,
    /// Tasks no other task depends on: the workflow's outputs.
    pub leaves: Vec<TaskId>,
    /// Spending bound in USD.
    pub budget_usd: Option<f64>,
    /// Tool permission rules for every task (`permissions`, or `defaults.permissions`).
    pub permissions: PermissionPolicy,
}
