//! `claude-swarm mcp`: an MCP server on standard input and output (the official Rust SDK,
//! `rmcp`) so that a Claude Code session can hand work to the swarm. It is a client of a
//! running server's gRPC API like every other client subcommand: the server's API keys and
//! roles apply to each tool call, and its refusals come back as tool errors.
//!
//! Tools: `submit_task`, `submit_workflow`, `get_task`, `wait_for_task` (follows the event
//! stream, with progress notifications when asked), `list_tasks`, `cancel_task`,
//! `get_workflow`, `get_status`. Results are the REST API's JSON (proto field names, enum
//! words), as text and as structured content.

mod args;
mod error;
mod wait;

use std::{process::ExitCode, sync::Arc};

use rmcp::{
    ErrorData, RoleServer, ServerHandler, ServiceExt,
    handler::server::tool::schema_for_type,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, Implementation, ListToolsResult,
        PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool, ToolAnnotations,
    },
    service::RequestContext,
};
use schemars::JsonSchema;
use serde_json::{Value, json};
use tonic::{codegen::InterceptedService, transport::Channel};

use self::{
    args::{
        DEFAULT_LIST_LIMIT, ListTasks, MAX_LIST_LIMIT, NoArguments, SubmitTask, SubmitWorkflow,
        TaskId, WaitForTask, WorkflowId, parse, word,
    },
    error::ToolError,
};
use super::{
    CliResult,
    client::{Bearer, Server},
};
use crate::{
    api::{convert, rest::to_json},
    engine::{Isolation, Priority, TaskStatus},
    pb::{
        self, event_service_client::EventServiceClient, swarm_service_client::SwarmServiceClient,
        task_service_client::TaskServiceClient, workflow_service_client::WorkflowServiceClient,
    },
};

type Authed = InterceptedService<Channel, Bearer>;

/// How the server introduces itself to the calling model.
const INSTRUCTIONS: &str = "claude-swarm runs a pool of Claude Code agents over a queue of \
tasks. Hand it work with submit_task (one prompt; the agent does not see this conversation, so \
say everything it needs) or submit_workflow (a YAML document of tasks that depend on each \
other). Tasks go PENDING (waiting on depends_on) or QUEUED, then RUNNING, then end COMPLETED, \
FAILED, CANCELLED or SKIPPED. wait_for_task waits for the end and returns the result; \
get_task, list_tasks and get_status look without waiting; cancel_task stops one.";

/// Serves MCP on stdin/stdout until the client closes stdin, talking to `server`.
pub(super) async fn serve(server: Server<'_>, allow_bypass_permissions: bool) -> CliResult {
    let bearer =
        Bearer::new(server.api_key).map_err(|_| "--api-key: not a key (printable ASCII)")?;
    // Lazy: the MCP client starts this with its session, perhaps before the swarm is up;
    // a call made while the server is down is a tool error that says so.
    let channel = server.endpoint()?.connect_lazy();
    let swarm = Swarm {
        tasks: TaskServiceClient::with_interceptor(channel.clone(), bearer.clone()),
        workflows: WorkflowServiceClient::with_interceptor(channel.clone(), bearer.clone()),
        events: EventServiceClient::with_interceptor(channel.clone(), bearer.clone()),
        status: SwarmServiceClient::with_interceptor(channel, bearer),
        server: server.url.into(),
        allow_bypass_permissions,
    };
    let running = swarm
        .serve(rmcp::transport::io::stdio_pipes())
        .await
        .map_err(|e| format!("the MCP client did not start a session: {e}"))?;
    let reason = running.waiting().await?;
    tracing::debug!(?reason, "the MCP session ended");
    Ok(ExitCode::SUCCESS)
}

/// The MCP server: gRPC clients of the swarm server, one per service.
struct Swarm {
    tasks: TaskServiceClient<Authed>,
    workflows: WorkflowServiceClient<Authed>,
    events: EventServiceClient<Authed>,
    status: SwarmServiceClient<Authed>,
    /// The server's URL, for errors that say it did not answer.
    server: Arc<str>,
    /// Whether a task may ask for `bypassPermissions` (`--allow-bypass-permissions`).
    allow_bypass_permissions: bool,
}

/// The permission mode in which an agent runs every tool without asking.
const BYPASS_PERMISSIONS: &str = "bypassPermissions";

/// What a tool answers: JSON for the model, or an error naming what is at fault.
type Outcome = Result<Value, ToolError>;

/// A tool's arguments, or what is wrong with them (reported as the tool's answer).
type Parsed<T> = Result<T, ToolError>;

impl ServerHandler for Swarm {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "claude-swarm",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tools()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        tools().into_iter().find(|t| t.name == name)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let name = request.name.as_ref();
        let arguments = request.arguments;
        let outcome = match name {
            "submit_task" => self.submit_task(parse(name, arguments)).await,
            "submit_workflow" => self.submit_workflow(parse(name, arguments)).await,
            "get_task" => self.get_task(parse(name, arguments)).await,
            "wait_for_task" => self.wait_for_task(parse(name, arguments), &context).await,
            "list_tasks" => self.list_tasks(parse(name, arguments)).await,
            "cancel_task" => self.cancel_task(parse(name, arguments)).await,
            "get_workflow" => self.get_workflow(parse(name, arguments)).await,
            "get_status" => self.get_status(parse(name, arguments)).await,
            // Not a tool of ours: the call cannot be routed, a protocol error.
            other => {
                return Err(ErrorData::invalid_params(
                    format!("no tool named {other:?}; tools/list names them"),
                    None,
                ));
            }
        };
        Ok(match outcome {
            Ok(value) => CallToolResult::structured(value),
            Err(error) => error.into_result(),
        }
        .into())
    }
}

/// Every tool, with its input schema and what a model needs to know to use it.
fn tools() -> Vec<Tool> {
    fn tool<T: JsonSchema + 'static>(
        name: &'static str,
        description: &'static str,
        hints: ToolAnnotations,
    ) -> Tool {
        let mut schema = Value::Object((*schema_for_type::<T>()).clone());
        unwrap_lines(&mut schema);
        let Value::Object(schema) = schema else {
            unreachable!("an object stays an object")
        };
        Tool::new(name, description, schema).with_annotations(hints)
    }
    let reads = ToolAnnotations::new().read_only(true).open_world(false);
    vec![
        tool::<SubmitTask>(
            "submit_task",
            "Hand one task to the swarm: a Claude Code agent runs `prompt` in \
             `working_directory`. Answers at once with the task (its `id`, its `status`); \
             follow it with wait_for_task. `depends_on` orders tasks, `priority` jumps the \
             queue. Arguments are the REST API's task fields.",
            ToolAnnotations::new()
                .read_only(false)
                .destructive(false)
                .idempotent(false),
        ),
        tool::<SubmitWorkflow>(
            "submit_workflow",
            "Submit a workflow: a YAML document of tasks that depend on each other, whose \
             prompts can use earlier results (`{{ tasks.NAME.result }}`). Answers at once \
             with the workflow (`id`, `task_ids`) and any warnings; follow its tasks with \
             wait_for_task or list_tasks(workflow_id). An invalid document is an error \
             naming the field, its line and its column. `validate_only` checks without \
             running.",
            ToolAnnotations::new()
                .read_only(false)
                .destructive(false)
                .idempotent(false),
        ),
        tool::<TaskId>(
            "get_task",
            "One task as it is now: status, result (`result.text`, cost, turns), error and \
             failure_class when it did not complete.",
            reads.clone(),
        ),
        tool::<WaitForTask>(
            "wait_for_task",
            "Wait until a task ends (COMPLETED, FAILED, CANCELLED or SKIPPED), at most \
             `timeout_seconds`, and return `{finished, task}` with its result. Sends progress \
             notifications (queued, started, output, retrying) when the call asks for them.",
            reads.clone(),
        ),
        tool::<ListTasks>(
            "list_tasks",
            "A page of tasks, oldest first, each in brief (prompt and result cut short; \
             get_task has all of one), with filters by status, priority and workflow. Pass \
             `next_page_token` back as `page_token` for the next page.",
            reads.clone(),
        ),
        tool::<TaskId>(
            "cancel_task",
            "Cancel a task that has not finished; a running agent is stopped before the \
             answer. Tasks that depend on it are skipped. A finished task is an error.",
            ToolAnnotations::new()
                .read_only(false)
                .destructive(true)
                .idempotent(false)
                .open_world(false),
        ),
        tool::<WorkflowId>(
            "get_workflow",
            "One workflow as it is now: status, task ids, counts of its tasks by state, cost, \
             and `outputs` (the results of its last tasks, by name) once it is done.",
            reads.clone(),
        ),
        tool::<NoArguments>(
            "get_status",
            "The swarm at a glance: instances idle and busy, tasks by state, the queue by \
             priority, running workflows, total cost, and whether dispatch is paused (rate \
             limit, budget).",
            reads,
        ),
    ]
}

impl Swarm {
    fn status_error<'a>(&'a self, strip: &'a str) -> impl Fn(tonic::Status) -> ToolError + 'a {
        move |status| ToolError::from_status(&status, &self.server, strip)
    }

    async fn task(&self, task_id: String) -> Result<pb::Task, ToolError> {
        let reply = self
            .tasks
            .clone()
            .get_task(pb::GetTaskRequest { task_id })
            .await;
        Ok(reply.map_err(self.status_error(""))?.into_inner())
    }

    async fn get_task(&self, a: Parsed<TaskId>) -> Outcome {
        Ok(to_json(&self.task(a?.task_id).await?))
    }

    async fn submit_task(&self, a: Parsed<SubmitTask>) -> Outcome {
        let a = a?;
        if a.permission_mode.as_deref() == Some(BYPASS_PERMISSIONS)
            && !self.allow_bypass_permissions
        {
            return Err(ToolError::invalid(
                "permission_mode",
                "bypassPermissions is refused through MCP unless `claude-swarm mcp` was \
                 started with --allow-bypass-permissions; name the tools the agent needs in \
                 `allowed_tools`, or use acceptEdits",
            ));
        }
        let priority = word("priority", &a.priority, Priority::from_word)?;
        let isolation = word("isolation", &a.isolation, |w| {
            Isolation::parse(&w.trim().to_ascii_lowercase())
        })?;
        let spec = pb::TaskSpec {
            prompt: a.prompt,
            name: a.name.unwrap_or_default(),
            id: a.id.unwrap_or_default(),
            priority: convert::to_pb(priority),
            working_directory: a.working_directory.unwrap_or_default(),
            depends_on: a.depends_on,
            model: a.model.unwrap_or_default(),
            timeout: a.timeout.unwrap_or_default(),
            labels: a.labels.into_iter().collect(),
            metadata: a.metadata.into_iter().collect(),
            allowed_tools: a.allowed_tools,
            max_turns: a.max_turns.unwrap_or_default(),
            retries: a.retries.unwrap_or_default(),
            retry_backoff: a.retry_backoff.unwrap_or_default(),
            permission_mode: a.permission_mode.unwrap_or_default(),
            idempotency_key: a.idempotency_key.unwrap_or_default(),
            isolation: convert::to_pb(isolation),
            ..Default::default()
        };
        let reply = self
            .tasks
            .clone()
            .submit_task(pb::SubmitTaskRequest { task: Some(spec) })
            .await
            .map_err(self.status_error("task."))?
            .into_inner();
        Ok(to_json(&reply.task.unwrap_or_default()))
    }

    async fn submit_workflow(&self, a: Parsed<SubmitWorkflow>) -> Outcome {
        let a = a?;
        // The server parses the document too (and is the one that decides); this is only
        // the rule that MCP hands the swarm prompts, not shell.
        let shell = crate::workflow::parse(&a.yaml, &a.variables)
            .ok()
            .and_then(|plan| plan.tasks.iter().position(|t| t.command.is_some()));
        if let Some(i) = shell {
            return Err(ToolError::invalid(
                &format!("tasks[{i}].command"),
                "workflows with shell command steps cannot be submitted through MCP; \
                 give each step a prompt instead",
            ));
        }
        let variables: std::collections::HashMap<_, _> = a.variables.into_iter().collect();
        let checked = self
            .workflows
            .clone()
            .validate_workflow(pb::ValidateWorkflowRequest {
                yaml: a.yaml.clone(),
                variables: variables.clone(),
            })
            .await
            .map_err(self.status_error(""))?
            .into_inner();
        let warnings = to_json(&checked)["warnings"].take();
        if a.validate_only {
            return Ok(json!({
                "valid": true,
                "name": checked.name,
                "task_count": checked.task_count,
                "warnings": warnings,
            }));
        }
        let reply = self
            .workflows
            .clone()
            .execute_workflow(pb::ExecuteWorkflowRequest {
                yaml: a.yaml,
                variables,
            })
            .await
            .map_err(self.status_error(""))?
            .into_inner();
        Ok(json!({
            "workflow": to_json(&reply.workflow.unwrap_or_default()),
            "warnings": warnings,
        }))
    }

    async fn list_tasks(&self, a: Parsed<ListTasks>) -> Outcome {
        let a = a?;
        let status = a
            .status
            .iter()
            .map(|w| {
                word("status", w, |w| {
                    let w = w.trim().to_ascii_lowercase();
                    TaskStatus::parse(w.strip_prefix("task_status_").unwrap_or(&w))
                })
                .map(convert::to_pb)
            })
            .collect::<Result<_, _>>()?;
        let priority = a
            .priority
            .iter()
            .map(|w| word("priority", w, Priority::from_word).map(convert::to_pb))
            .collect::<Result<_, _>>()?;
        let limit = a.limit.unwrap_or(DEFAULT_LIST_LIMIT);
        if !(1..=MAX_LIST_LIMIT).contains(&limit) {
            return Err(ToolError::invalid(
                "limit",
                format!("{limit} is not between 1 and {MAX_LIST_LIMIT}"),
            ));
        }
        let page = self
            .tasks
            .clone()
            .list_tasks(pb::ListTasksRequest {
                status,
                priority,
                workflow_id: a.workflow_id.unwrap_or_default(),
                limit,
                page_token: a.page_token.unwrap_or_default(),
            })
            .await
            .map_err(self.status_error(""))?
            .into_inner();
        Ok(json!({
            "tasks": page.tasks.iter().map(brief).collect::<Vec<_>>(),
            "next_page_token": page.next_page_token,
        }))
    }

    async fn cancel_task(&self, a: Parsed<TaskId>) -> Outcome {
        let a = a?;
        let task = self
            .tasks
            .clone()
            .cancel_task(pb::CancelTaskRequest { task_id: a.task_id })
            .await
            .map_err(self.status_error(""))?
            .into_inner();
        Ok(to_json(&task))
    }

    async fn get_workflow(&self, a: Parsed<WorkflowId>) -> Outcome {
        let a = a?;
        let workflow = self
            .workflows
            .clone()
            .get_workflow(pb::GetWorkflowRequest {
                workflow_id: a.workflow_id,
            })
            .await
            .map_err(self.status_error(""))?
            .into_inner();
        Ok(to_json(&workflow))
    }

    async fn get_status(&self, a: Parsed<NoArguments>) -> Outcome {
        a?;
        let status = self
            .status
            .clone()
            .get_status(pb::GetStatusRequest {})
            .await
            .map_err(self.status_error(""))?
            .into_inner();
        Ok(to_json(&status))
    }
}

/// Joins the lines of every `description` in a schema: they are doc comments, wrapped for
/// the source, not for the reader.
fn unwrap_lines(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                match value {
                    Value::String(text) if key == "description" => *text = text.replace('\n', " "),
                    value => unwrap_lines(value),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(unwrap_lines),
        _ => {}
    }
}

/// Characters of a prompt or result a `list_tasks` entry keeps.
const BRIEF_CHARS: usize = 200;

/// A task in brief for `list_tasks`: what tells tasks apart and how each ended, without the
/// whole prompt and result (a page of those could fill the model's context).
fn brief(task: &pb::Task) -> Value {
    let full = to_json(task);
    let mut brief = serde_json::Map::new();
    for key in [
        "id",
        "name",
        "status",
        "priority",
        "workflow_id",
        "depends_on",
        "labels",
        "created_at",
        "started_at",
        "completed_at",
        "attempts",
        "error",
        "failure_class",
    ] {
        if let Some(value) = full.get(key) {
            brief.insert(key.into(), value.clone());
        }
    }
    brief.insert("prompt".into(), json!(cut(&task.prompt)));
    if let Some(result) = &task.result {
        brief.insert("result_text".into(), json!(cut(&result.text)));
        brief.insert("cost_usd".into(), json!(result.cost_usd));
    }
    Value::Object(brief)
}

/// `text`, cut at [`BRIEF_CHARS`] characters with `…` when longer.
fn cut(text: &str) -> String {
    match text.char_indices().nth(BRIEF_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// The JSON object `arguments` of a tool call, for tests that build calls by hand.
#[cfg(test)]
fn arguments(value: Value) -> Option<rmcp::model::JsonObject> {
    match value {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_has_an_object_schema_and_a_description() {
        let tools = tools();
        let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
        assert_eq!(
            names,
            [
                "submit_task",
                "submit_workflow",
                "get_task",
                "wait_for_task",
                "list_tasks",
                "cancel_task",
                "get_workflow",
                "get_status"
            ]
        );
        for tool in &tools {
            assert_eq!(tool.input_schema["type"], "object", "{}", tool.name);
            assert!(tool.description.as_ref().is_some_and(|d| d.len() > 40));
        }
        let submit = &tools[0].input_schema;
        assert_eq!(submit["required"], json!(["prompt"]));
        assert_eq!(
            submit["properties"]["priority"]["enum"],
            json!(["low", "normal", "high", "critical"])
        );
        assert!(submit["properties"].get("command").is_none());
        assert_eq!(submit["additionalProperties"], json!(false));
        let described = submit["properties"]["allowed_tools"]["description"].as_str();
        assert!(described.is_some_and(|d| d.contains("or `Bash(git") && !d.contains('\n')));
    }

    #[test]
    fn a_bad_argument_is_named() {
        let error = |value| {
            parse::<SubmitTask>("submit_task", arguments(value))
                .unwrap_err()
                .into_result()
                .structured_content
                .unwrap()["error"]
                .clone()
        };
        let e = error(json!({}));
        assert_eq!(
            (e["field"].clone(), e["message"].clone()),
            (json!("prompt"), json!("invalid prompt: is required"))
        );
        let e = error(json!({"prompt": "x", "timout": 5}));
        assert_eq!(e["field"], "timout");
        assert!(e["message"].as_str().unwrap().contains("timeout"), "{e}");
        let e = error(json!({"prompt": "x", "command": "rm -rf /"}));
        assert_eq!(e["field"], "command");
        let e = error(json!({"prompt": "x", "depends_on": [1]}));
        assert_eq!(e["field"], "depends_on[0]", "{e}");
        let e = parse::<NoArguments>("get_status", arguments(json!({"x": 1}))).unwrap_err();
        assert!(
            e.into_result().content[0]
                .as_text()
                .unwrap()
                .text
                .contains("no arguments")
        );
    }

    #[test]
    fn a_brief_cuts_long_text() {
        let task = pb::Task {
            id: "t".into(),
            prompt: "é".repeat(500),
            status: pb::TaskStatus::Queued as i32,
            ..Default::default()
        };
        let b = brief(&task);
        assert_eq!(b["status"], "queued");
        assert_eq!(
            b["prompt"].as_str().unwrap().chars().count(),
            BRIEF_CHARS + 1
        );
    }
}
