//! What each tool takes: one struct per tool, read from the call's arguments with errors that
//! name the argument, and the JSON Schema `tools/list` shows (generated from the same struct,
//! so the two cannot drift apart). Enum words come from the engine's tables.

use std::collections::BTreeMap;

use rmcp::model::JsonObject;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, de::DeserializeOwned};

use super::error::ToolError;
use crate::engine::{Isolation, Priority, TaskStatus, model::words::Word};

/// Most tasks one `list_tasks` page shows: a page is read by a model, whose context is small.
pub(super) const MAX_LIST_LIMIT: u32 = 100;
/// Tasks a `list_tasks` page shows when the call names no `limit`.
pub(super) const DEFAULT_LIST_LIMIT: u32 = 20;
/// How long `wait_for_task` waits when the call names no `timeout_seconds`.
pub(super) const DEFAULT_WAIT_SECONDS: f64 = 300.0;
/// The longest wait one call may ask for; a longer one is a second call.
pub(super) const MAX_WAIT_SECONDS: f64 = 3600.0;

/// Submit one task: the REST API's task fields (same names, same words), less the shell
/// `command` (a model hands the swarm prompts, not shell) and the per-task agent `options`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SubmitTask {
    /// What the Claude Code agent is asked to do: the whole instruction, with the context it
    /// needs (it does not see this conversation). Required, not blank.
    pub prompt: String,
    /// A short human-readable name for lists and logs (defaults to the id).
    pub name: Option<String>,
    /// An id of your choosing (letters, digits, '-', '_', '.'; at most 128 characters), so
    /// that later tasks can name it in `depends_on` before you have seen it; generated when
    /// absent. An id already taken is refused.
    pub id: Option<String>,
    /// How urgent: critical > high > normal > low (default normal); first come, first
    /// served within a level.
    #[serde(default = "normal")]
    #[schemars(schema_with = "priority_word")]
    pub priority: String,
    /// The directory the agent works in (default: the server's). A server with a
    /// `workspace_root` refuses directories outside it.
    pub working_directory: Option<String>,
    /// Ids of tasks that must complete first; the task waits (PENDING) until they have, and
    /// is SKIPPED if one of them does not complete. Unknown ids and cycles are refused.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// The model the agent uses (`--model`), such as `sonnet` or `opus`.
    pub model: Option<String>,
    /// Seconds before the task is stopped and failed (default: the server's, 1800).
    #[serde(alias = "timeout_seconds")]
    #[schemars(range(min = 0.0))]
    pub timeout: Option<f64>,
    /// Labels for filtering and grouping (string values).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Free-form data kept with the task (string values).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Tools the agent may use without asking (`--allowedTools`), such as `Read`, `Edit` or
    /// `Bash(git diff:*)`.
    #[serde(default)]
    pub allowed_tools: Vec<String>,
    /// At most this many agent turns (`--max-turns`).
    pub max_turns: Option<u32>,
    /// Attempts after the first when a run fails for a reason that may pass (API errors,
    /// rate limits, timeouts, crashes).
    pub retries: Option<u32>,
    /// Seconds before the first retry; doubles each time (default 1).
    #[schemars(range(min = 0.0))]
    pub retry_backoff: Option<f64>,
    /// The agent's `--permission-mode` (acceptEdits, auto, manual, dontAsk, plan;
    /// bypassPermissions only when `claude-swarm mcp` runs with --allow-bypass-permissions).
    pub permission_mode: Option<String>,
    /// A key that makes a retried submission safe: a second submission with the same key
    /// returns the task made by the first instead of a new one.
    pub idempotency_key: Option<String>,
    /// `worktree` runs the task in a git worktree of its own on branch `swarm/<task id>`
    /// (its changes are committed there); `none` (the default) in the directory as it is.
    #[serde(default = "no_isolation")]
    #[schemars(schema_with = "isolation_word")]
    pub isolation: String,
}

/// Submit a workflow document.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SubmitWorkflow {
    /// The workflow document, as YAML text: `name`, and `tasks` each with `name` and
    /// `prompt`, optionally `depends_on` (task names), `{{ tasks.NAME.result }}` templates,
    /// `for_each`, `retries`, `priority`, `variables` and `defaults`.
    pub yaml: String,
    /// Values for the document's declared variables, overriding their defaults.
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// Only check the document (errors and warnings, with line and column); run nothing.
    #[serde(default)]
    pub validate_only: bool,
}

/// One task, by id.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TaskId {
    /// The task's id, as `submit_task` or `list_tasks` returned it.
    pub task_id: String,
}

/// Wait for a task to finish.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct WaitForTask {
    /// The task's id, as `submit_task` or `list_tasks` returned it.
    pub task_id: String,
    /// Seconds to wait at most (default 300, at most 3600). When they pass first, the
    /// answer says `finished: false` with the task as it is; call again to wait longer.
    #[schemars(range(min = 0.0, max = 3600.0))]
    pub timeout_seconds: Option<f64>,
}

/// A page of tasks.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ListTasks {
    /// Only tasks in these states (any when empty or absent).
    #[serde(default)]
    #[schemars(schema_with = "status_words")]
    pub status: Vec<String>,
    /// Only tasks of these priorities (any when empty or absent).
    #[serde(default)]
    #[schemars(schema_with = "priority_words")]
    pub priority: Vec<String>,
    /// Only the tasks of this workflow.
    pub workflow_id: Option<String>,
    /// Tasks on this page (default 20, at most 100), oldest first.
    #[schemars(range(min = 1, max = 100))]
    pub limit: Option<u32>,
    /// The `next_page_token` of the previous page, for the next one.
    pub page_token: Option<String>,
}

/// One workflow, by id.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct WorkflowId {
    /// The workflow's id, as `submit_workflow` returned it.
    pub workflow_id: String,
}

/// No arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NoArguments {}

/// A tool's arguments as `T`; a missing, mistyped or unknown argument is a tool error that
/// names it (a model reads those and corrects the call; a protocol error it would not see).
pub(super) fn parse<T: DeserializeOwned>(
    tool: &str,
    arguments: Option<JsonObject>,
) -> Result<T, ToolError> {
    let value = serde_json::Value::Object(arguments.unwrap_or_default());
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let reason = e.into_inner().to_string();
        match unknown(&reason) {
            Some("command") => ToolError::invalid(
                "command",
                "shell commands cannot be submitted through MCP: describe the work in \
                 `prompt` and the agent does it (with `allowed_tools` if it needs them)",
            ),
            Some(name) => ToolError::invalid(
                name,
                format!("is not an argument of {tool}; {}", known(&reason)),
            ),
            None if path.is_empty() || path == "." => match missing(&reason) {
                Some(name) => ToolError::invalid(name, "is required"),
                None => ToolError::invalid("arguments", reason),
            },
            None => ToolError::invalid(&path, reason),
        }
    })
}

/// The key of serde's "unknown field `timout`, expected one of ...".
fn unknown(reason: &str) -> Option<&str> {
    reason.strip_prefix("unknown field `")?.split('`').next()
}

/// "the arguments are: a, b, c", from serde's "..., expected one of `a`, `b`, `c`".
fn known(reason: &str) -> String {
    let names: Vec<&str> = reason.split('`').skip(3).step_by(2).collect();
    match names.as_slice() {
        [] => "it takes no arguments".to_owned(),
        names => format!("the arguments are: {}", names.join(", ")),
    }
}

/// The key of serde's "missing field `prompt`".
fn missing(reason: &str) -> Option<&str> {
    reason.strip_prefix("missing field `")?.split('`').next()
}

/// `word` as the engine's `E`, with `from_word`'s spellings; else an error naming `field` and
/// listing the words.
pub(super) fn word<E: Word>(
    field: &str,
    word: &str,
    parse: impl Fn(&str) -> Option<E>,
) -> Result<E, ToolError> {
    parse(word).ok_or_else(|| {
        ToolError::invalid(
            field,
            format!("{word:?} is not one of {}", words::<E>().join(", ")),
        )
    })
}

fn normal() -> String {
    Priority::default().as_str().to_owned()
}

fn no_isolation() -> String {
    Isolation::default().as_str().to_owned()
}

fn words<E: Word>() -> Vec<&'static str> {
    E::all().iter().map(|v| v.word()).collect()
}

fn one_of<E: Word>() -> Schema {
    json_schema!({"type": "string", "enum": words::<E>()})
}

fn priority_word(_: &mut SchemaGenerator) -> Schema {
    one_of::<Priority>()
}

fn isolation_word(_: &mut SchemaGenerator) -> Schema {
    one_of::<Isolation>()
}

fn priority_words(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "array", "items": one_of::<Priority>()})
}

fn status_words(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "array", "items": one_of::<TaskStatus>()})
}
