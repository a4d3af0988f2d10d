//! The REST gateway: the documented HTTP routes over the same [`Service`] as gRPC.
//!
//! Bodies and responses are the API messages in the protobuf JSON mapping with the proto
//! field names; enum values print as the original service's lowercase words
//! (`"status": "completed"`) and are accepted as words or as proto enum names. Requests of
//! the original Python service are accepted as they are.

use std::{convert::Infallible, path::PathBuf, sync::LazyLock};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{
        FromRequestParts, Path, Query, State,
        rejection::BytesRejection,
        ws::{Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection},
    },
    handler::Handler,
    http::{HeaderMap, Method, StatusCode, header, request::Parts},
    response::{
        Html, IntoResponse, Response,
        sse::{Event as SseEvent, KeepAlive, Sse},
    },
    routing::{MethodFilter, MethodRouter, on},
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Map, Value, json};
use tokio_stream::StreamExt;

use super::{error::codes, service::Service};
use crate::{engine::EngineError, pb};

/// What the REST routes need besides the service.
#[derive(Clone)]
struct Gateway {
    service: Service,
    /// `workflow_path` must point inside this directory.
    workspace_root: PathBuf,
}

/// The OpenAPI 3.1 document of every route [`router`] serves, served at `GET /openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// One REST operation: a method, a path (`{id}` is a path parameter, in axum and in
/// OpenAPI alike) and the handler serving it.
struct Endpoint {
    method: Method,
    path: &'static str,
    handler: MethodRouter<Gateway>,
}

fn endpoint<H, T>(method: Method, path: &'static str, handler: H) -> Endpoint
where
    H: Handler<T, Gateway>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone()).expect("a method axum routes on");
    Endpoint {
        method,
        path,
        handler: on(filter, handler),
    }
}

/// Every REST operation, once. [`router`] serves exactly these and [`route_table`] lists
/// exactly these; a test holds `openapi.json` to the same list.
fn endpoints() -> Vec<Endpoint> {
    use Method as M;
    vec![
        endpoint(M::GET, "/health", health),
        endpoint(M::GET, "/status", status),
        endpoint(M::GET, "/openapi.json", openapi),
        endpoint(M::GET, "/docs", docs),
        endpoint(M::GET, "/instances", list_instances),
        endpoint(M::POST, "/instances/spawn", spawn_instances),
        endpoint(M::POST, "/instances/scale", scale_instances),
        endpoint(M::GET, "/instances/{id}", get_instance),
        endpoint(M::DELETE, "/instances/{id}", terminate_instance),
        endpoint(M::POST, "/tasks", submit_task),
        endpoint(M::GET, "/tasks", list_tasks),
        endpoint(M::POST, "/tasks/batch", submit_tasks),
        endpoint(M::GET, "/tasks/{id}", get_task),
        endpoint(M::DELETE, "/tasks/{id}", cancel_task),
        endpoint(M::GET, "/workflows", list_workflows),
        endpoint(M::POST, "/workflows/execute", execute_workflow),
        endpoint(M::GET, "/workflows/{id}", get_workflow),
        endpoint(M::DELETE, "/workflows/{id}", cancel_workflow),
        endpoint(M::GET, "/events", sse_events),
        endpoint(M::GET, "/ws/stream", ws_events),
    ]
}

/// The (method, path) of every operation [`router`] serves. A `GET` route answers `HEAD`
/// too, and browsers' CORS preflights (`OPTIONS`) are answered in front of every route.
pub fn route_table() -> Vec<(Method, &'static str)> {
    endpoints()
        .into_iter()
        .map(|e| (e.method, e.path))
        .collect()
}

pub fn router(service: Service, workspace_root: PathBuf) -> Router {
    endpoints()
        .into_iter()
        .fold(Router::new(), |router, e| router.route(e.path, e.handler))
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(Gateway {
            service,
            workspace_root,
        })
}

/// A JSON 404 for any path no route serves.
pub async fn not_found() -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such route".into(),
        None,
    )
    .into_response()
}

/// A JSON 405 for a method a path does not serve (axum adds the `Allow` header).
async fn method_not_allowed(method: Method) -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not served here"),
        None,
    )
    .into_response()
}

// ---- errors -----------------------------------------------------------------------------

/// `{"error": {"code", "message", "field"}}` with the matching HTTP status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: String, field: Option<String>) -> Self {
        Self {
            status,
            code,
            message,
            field,
        }
    }

    fn invalid(field: &str, reason: impl Into<String>) -> Self {
        EngineError::invalid(field, reason).into()
    }
}

impl From<EngineError> for ApiError {
    fn from(error: EngineError) -> Self {
        let (code, status) = codes(&error);
        let code = match code {
            tonic::Code::InvalidArgument => "invalid_argument",
            tonic::Code::NotFound => "not_found",
            tonic::Code::AlreadyExists => "already_exists",
            tonic::Code::FailedPrecondition => "failed_precondition",
            tonic::Code::DataLoss => "data_loss",
            _ => "unavailable",
        };
        Self::new(
            status,
            code,
            error.to_string(),
            error.field().map(str::to_owned),
        )
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        let status = rejection.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "payload_too_large"
        } else {
            "bad_request"
        };
        Self::new(status, code, rejection.body_text(), None)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body =
            json!({ "error": { "code": self.code, "message": self.message, "field": self.field } });
        (self.status, Json(body)).into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

// ---- JSON conventions -------------------------------------------------------------------

/// Enum-valued fields and the prefix of their proto value names.
const ENUM_FIELDS: [(&str, &[&str]); 7] = [
    (
        "status",
        &["TASK_STATUS_", "INSTANCE_STATUS_", "WORKFLOW_STATUS_"],
    ),
    ("priority", &["PRIORITY_"]),
    ("kind", &["EVENT_KIND_"]),
    ("kinds", &["EVENT_KIND_"]),
    ("on_failure", &["FAILURE_POLICY_"]),
    ("failure_class", &["FAILURE_CLASS_"]),
    ("isolation", &["ISOLATION_"]),
];

/// Maps of free-form strings, left alone.
const FREE_FORM: [&str; 3] = ["metadata", "labels", "env"];

/// An API message as REST JSON: proto field names, enums as lowercase words.
fn to_json(message: &impl Serialize) -> Value {
    fn words(value: &mut Value, prefixes: &[&str]) {
        match value {
            Value::String(s) => {
                if let Some(rest) = prefixes.iter().find_map(|p| s.strip_prefix(p)) {
                    *s = rest.to_ascii_lowercase();
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| words(v, prefixes)),
            _ => {}
        }
    }
    fn walk(value: &mut Value) {
        match value {
            Value::Object(map) => {
                for (key, value) in map.iter_mut() {
                    if let Some((_, prefixes)) = ENUM_FIELDS.iter().find(|(k, _)| k == key) {
                        words(value, prefixes);
                    } else if !FREE_FORM.contains(&key.as_str()) {
                        walk(value);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let mut value = serde_json::to_value(message).expect("API messages serialize");
    walk(&mut value);
    value
}

fn respond(message: &impl Serialize) -> ApiResult {
    Ok(Json(to_json(message)).into_response())
}

/// The proto enum name for a word (`high` -> `PRIORITY_HIGH`); names and numbers pass.
fn enum_name(field: &str, value: &Value) -> Result<Value, ApiError> {
    let (_, prefixes) = ENUM_FIELDS
        .iter()
        .find(|(k, _)| *k == field)
        .expect("enum field");
    let Value::String(word) = value else {
        return Ok(value.clone());
    };
    let upper = word.trim().to_ascii_uppercase();
    for prefix in *prefixes {
        let name = if upper.starts_with(prefix) {
            upper.clone()
        } else {
            format!("{prefix}{upper}")
        };
        let known = match *prefix {
            "TASK_STATUS_" => pb::TaskStatus::from_str_name(&name).is_some(),
            "INSTANCE_STATUS_" => pb::InstanceStatus::from_str_name(&name).is_some(),
            "WORKFLOW_STATUS_" => pb::WorkflowStatus::from_str_name(&name).is_some(),
            "PRIORITY_" => pb::Priority::from_str_name(&name).is_some(),
            "FAILURE_POLICY_" => pb::FailurePolicy::from_str_name(&name).is_some(),
            "FAILURE_CLASS_" => pb::FailureClass::from_str_name(&name).is_some(),
            "ISOLATION_" => pb::Isolation::from_str_name(&name).is_some(),
            _ => pb::EventKind::from_str_name(&name).is_some(),
        };
        if known {
            return Ok(Value::String(name));
        }
    }
    Err(ApiError::invalid(
        field,
        format!("{word:?} is not a known value"),
    ))
}

/// REST JSON to an API message: words to enum names, free-form values to strings, and a
/// type error names the field it is in.
fn from_json<T: DeserializeOwned>(mut value: Value, prefix: &str) -> Result<T, ApiError> {
    fn walk(value: &mut Value, path: &str) -> Result<(), ApiError> {
        if let Value::Object(map) = value {
            for (key, value) in map.iter_mut() {
                let here = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                if ENUM_FIELDS.iter().any(|(k, _)| k == key) {
                    let named = match &*value {
                        Value::Array(items) => Value::Array(
                            items
                                .iter()
                                .map(|v| enum_name(key, v))
                                .collect::<Result<_, _>>()
                                .map_err(|e| at(e, &here))?,
                        ),
                        single => enum_name(key, single).map_err(|e| at(e, &here))?,
                    };
                    *value = named;
                } else if FREE_FORM.contains(&key.as_str()) {
                    if let Value::Object(entries) = value {
                        for entry in entries.values_mut() {
                            if !entry.is_string() {
                                *entry = Value::String(entry.to_string());
                            }
                        }
                    }
                } else if let Value::Array(items) = value {
                    for (i, item) in items.iter_mut().enumerate() {
                        walk(item, &format!("{here}[{i}]"))?;
                    }
                } else {
                    walk(value, &here)?;
                }
            }
        }
        Ok(())
    }
    fn at(mut error: ApiError, path: &str) -> ApiError {
        error.message = error
            .message
            .replacen(error.field.as_deref().unwrap_or_default(), path, 1);
        error.field = Some(path.to_owned());
        error
    }
    walk(&mut value, prefix)?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = match (prefix.is_empty(), path.as_str()) {
            (_, ".") => prefix.to_owned(),
            (true, p) => p.to_owned(),
            (false, p) => format!("{prefix}.{p}"),
        };
        ApiError::invalid(&field, e.into_inner().to_string())
    })
}

/// The body as JSON; 415 for another content type, 400 with a reason for bad JSON.
fn json_body(headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    let body = body?;
    if let Some(kind) = content_type(headers)
        && kind != "application/json"
    {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("expected application/json, not {kind}"),
            None,
        ));
    }
    let value: Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("the body is not JSON: {e}"),
            None,
        )
    })?;
    if !value.is_object() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the body must be a JSON object".into(),
            None,
        ));
    }
    Ok(value)
}

/// A path's `{id}`; one that does not decode (not UTF-8) is a JSON 400.
struct Id(String);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|r| ApiError::new(r.status(), "bad_request", r.body_text(), None))?;
        Ok(Self(id))
    }
}

/// The query string as (key, value) pairs in order, keys repeating for lists.
struct Params(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(pairs) = Query::from_request_parts(parts, state)
            .await
            .map_err(|r| ApiError::new(r.status(), "bad_request", r.body_text(), None))?;
        Ok(Self(pairs))
    }
}

fn content_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(
        value
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase(),
    )
}

// ---- routes -----------------------------------------------------------------------------

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn docs() -> Html<&'static str> {
    static PAGE: LazyLock<String> = LazyLock::new(|| docs_page(OPENAPI));
    Html(PAGE.as_str())
}

/// The keys of an OpenAPI path item that are operations.
pub const OPENAPI_METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// A plain page listing the document's operations by tag: no script, nothing fetched.
fn docs_page(document: &str) -> String {
    fn escape(text: &str) -> String {
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    }
    let doc: Value = serde_json::from_str(document).expect("openapi.json is JSON");
    let text = |v: &Value| escape(v.as_str().unwrap_or_default());
    let operations: Vec<(&str, &String, &Value)> = doc["paths"]
        .as_object()
        .into_iter()
        .flatten()
        .flat_map(|(path, item)| {
            item.as_object()
                .into_iter()
                .flatten()
                .filter(|(method, _)| OPENAPI_METHODS.contains(&method.as_str()))
                .map(move |(method, op)| (method.as_str(), path, op))
        })
        .collect();
    let mut sections = String::new();
    for tag in doc["tags"].as_array().into_iter().flatten() {
        sections.push_str(&format!(
            "<h2>{}</h2>\n<p>{}</p>\n<table>\n",
            text(&tag["name"]),
            text(&tag["description"])
        ));
        for (method, path, op) in &operations {
            if op["tags"]
                .as_array()
                .is_some_and(|t| t.contains(&tag["name"]))
            {
                sections.push_str(&format!(
                    "<tr><td class=\"method\">{}</td><td><code>{}</code></td>\
                     <td>{}<div class=\"more\">{}</div></td></tr>\n",
                    method.to_ascii_uppercase(),
                    escape(path),
                    text(&op["summary"]),
                    text(&op["description"]),
                ));
            }
        }
        sections.push_str("</table>\n");
    }
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\n\
         <style>body{{font-family:sans-serif;margin:2em;max-width:70em}}\
         table{{border-collapse:collapse;width:100%}}\
         td{{padding:.3em .8em;vertical-align:top;border-bottom:1px solid #ddd}}\
         .method{{font-weight:bold;font-family:monospace;width:5em}}\
         .more{{color:#555;font-size:90%}}</style>\n\
         </head><body><h1>{title} <small>{version}</small></h1>\n<p>{summary}</p>\n\
         <p>The OpenAPI 3.1 document: <a href=\"/openapi.json\">/openapi.json</a>. \
         gRPC and grpc-web are served on this port too \
         (<code>proto/claude_swarm/v1/swarm.proto</code>, or reflection).</p>\n\
         {sections}</body></html>\n",
        title = text(&doc["info"]["title"]),
        version = text(&doc["info"]["version"]),
        summary = text(&doc["info"]["summary"]),
    )
}

async fn health() -> Response {
    Json(json!({ "status": "healthy", "version": env!("CARGO_PKG_VERSION") })).into_response()
}

async fn status(State(g): State<Gateway>) -> ApiResult {
    respond(&g.service.get_status().await?)
}

async fn list_instances(State(g): State<Gateway>) -> ApiResult {
    respond(&g.service.list_instances().await?)
}

async fn spawn_instances(
    State(g): State<Gateway>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let request = from_json(json_body(&headers, body)?, "")?;
    respond(&g.service.spawn_instances(request).await?)
}

async fn scale_instances(
    State(g): State<Gateway>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let value = json_body(&headers, body)?;
    if value.get("target").is_none() {
        return Err(ApiError::invalid("target", "is required"));
    }
    respond(&g.service.scale_instances(from_json(value, "")?).await?)
}

async fn get_instance(State(g): State<Gateway>, Id(instance_id): Id) -> ApiResult {
    respond(
        &g.service
            .get_instance(pb::GetInstanceRequest { instance_id })
            .await?,
    )
}

async fn terminate_instance(State(g): State<Gateway>, Id(instance_id): Id) -> ApiResult {
    respond(
        &g.service
            .terminate_instance(pb::TerminateInstanceRequest { instance_id })
            .await?,
    )
}

/// The original service's flat body, or `{"task": {...}}` as in gRPC.
async fn submit_task(
    State(g): State<Gateway>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let mut value = json_body(&headers, body)?;
    match value.get_mut("task") {
        Some(task) if task.is_object() => {
            let request = pb::SubmitTaskRequest {
                task: Some(from_json(task.take(), "task")?),
            };
            respond(&g.service.submit_task(request).await?)
        }
        _ => respond(&g.service.submit_spec(from_json(value, "")?).await?),
    }
}

/// `{"tasks": [TaskSpec...]}`, or the original `{"prompts": [...], "working_directory", "priority"}`.
async fn submit_tasks(
    State(g): State<Gateway>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let mut value = json_body(&headers, body)?;
    let request: pb::SubmitTasksRequest =
        match value.as_object_mut().and_then(|m| m.remove("prompts")) {
            Some(Value::Array(prompts)) => {
                let shared: Map<String, Value> = value.as_object().cloned().unwrap_or_default();
                let tasks = prompts
                    .into_iter()
                    .enumerate()
                    .map(|(i, prompt)| {
                        let mut spec = shared.clone();
                        spec.insert("prompt".into(), prompt);
                        from_json::<pb::TaskSpec>(Value::Object(spec), &format!("prompts[{i}]"))
                    })
                    .collect::<Result<_, _>>()?;
                pb::SubmitTasksRequest { tasks }
            }
            Some(_) => return Err(ApiError::invalid("prompts", "must be a list of strings")),
            None => from_json(value, "")?,
        };
    respond(&g.service.submit_tasks(request).await?)
}

/// `?status=completed&status=failed&priority=high&workflow_id=..&limit=10&page_token=..`;
/// lists may also be comma-separated.
async fn list_tasks(State(g): State<Gateway>, Params(params): Params) -> ApiResult {
    let mut request = pb::ListTasksRequest::default();
    for (key, value) in params {
        let words = || value.split(',').map(str::trim).filter(|w| !w.is_empty());
        let enum_value = |field: &str, word: &str| -> Result<i32, ApiError> {
            let name = enum_name(field, &Value::String(word.to_owned()))?;
            let name = name.as_str().unwrap_or_default();
            match field {
                "status" => pb::TaskStatus::from_str_name(name).map(|s| s as i32),
                _ => pb::Priority::from_str_name(name).map(|p| p as i32),
            }
            .ok_or_else(|| ApiError::invalid(field, format!("{word:?} is not a known value")))
        };
        match key.as_str() {
            "status" => {
                for word in words() {
                    request.status.push(enum_value("status", word)?);
                }
            }
            "priority" => {
                for word in words() {
                    request.priority.push(enum_value("priority", word)?);
                }
            }
            "workflow_id" | "workflowId" => request.workflow_id = value,
            "limit" => {
                request.limit = value
                    .parse()
                    .map_err(|_| ApiError::invalid("limit", "must be a whole number"))?
            }
            "page_token" | "pageToken" => request.page_token = value,
            other => {
                return Err(ApiError::invalid(
                    other,
                    "is not a query parameter of GET /tasks",
                ));
            }
        }
    }
    respond(&g.service.list_tasks(request).await?)
}

async fn get_task(State(g): State<Gateway>, Id(task_id): Id) -> ApiResult {
    respond(&g.service.get_task(pb::GetTaskRequest { task_id }).await?)
}

async fn cancel_task(State(g): State<Gateway>, Id(task_id): Id) -> ApiResult {
    respond(
        &g.service
            .cancel_task(pb::CancelTaskRequest { task_id })
            .await?,
    )
}

/// A YAML body (`application/yaml`, `text/yaml`), or JSON `{"yaml": "..."}` or the
/// original `{"workflow_path": "..."}` (a file inside the workspace root).
async fn execute_workflow(
    State(g): State<Gateway>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let mut variables = Default::default();
    let yaml = match content_type(&headers).as_deref() {
        Some(
            "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml" | "text/plain",
        ) => String::from_utf8(body?.to_vec())
            .map_err(|_| ApiError::invalid("yaml", "the body is not UTF-8"))?,
        _ => {
            let value = json_body(&headers, body)?;
            if let Some(vars) = value.get("variables") {
                variables =
                    from_json::<pb::ExecuteWorkflowRequest>(json!({ "variables": vars }), "")?
                        .variables;
            }
            match (value.get("yaml"), value.get("workflow_path")) {
                (Some(Value::String(yaml)), _) => yaml.clone(),
                (_, Some(Value::String(path))) => read_workflow(&g.workspace_root, path)?,
                _ => {
                    return Err(ApiError::invalid(
                        "yaml",
                        "give the workflow as `yaml` text or a `workflow_path`",
                    ));
                }
            }
        }
    };
    respond(
        &g.service
            .execute_workflow(pb::ExecuteWorkflowRequest { yaml, variables })
            .await?,
    )
}

fn read_workflow(root: &std::path::Path, path: &str) -> Result<String, ApiError> {
    let root = root
        .canonicalize()
        .map_err(|e| ApiError::invalid("workflow_path", format!("workspace root: {e}")))?;
    let full = root
        .join(path)
        .canonicalize()
        .map_err(|_| ApiError::invalid("workflow_path", format!("{path:?} does not exist")))?;
    if !full.starts_with(&root) {
        return Err(ApiError::invalid(
            "workflow_path",
            format!("{path:?} is outside the workspace root"),
        ));
    }
    std::fs::read_to_string(&full)
        .map_err(|e| ApiError::invalid("workflow_path", format!("cannot read {path:?}: {e}")))
}

async fn list_workflows(State(g): State<Gateway>) -> ApiResult {
    respond(&g.service.list_workflows().await?)
}

async fn get_workflow(State(g): State<Gateway>, Id(workflow_id): Id) -> ApiResult {
    respond(
        &g.service
            .get_workflow(pb::GetWorkflowRequest { workflow_id })
            .await?,
    )
}

async fn cancel_workflow(State(g): State<Gateway>, Id(workflow_id): Id) -> ApiResult {
    respond(
        &g.service
            .cancel_workflow(pb::CancelWorkflowRequest { workflow_id })
            .await?,
    )
}

// ---- live streams -----------------------------------------------------------------------

/// `?task_id=&workflow_id=&instance_id=&kinds=task_completed,task_failed&after=N`.
fn stream_request(
    params: Vec<(String, String)>,
    last_event_id: Option<&str>,
) -> Result<pb::StreamEventsRequest, ApiError> {
    let mut request = pb::StreamEventsRequest::default();
    let sequence = |field: &str, value: &str| -> Result<u64, ApiError> {
        value
            .trim()
            .parse()
            .map_err(|_| ApiError::invalid(field, "must be a sequence number"))
    };
    if let Some(id) = last_event_id {
        request.after_sequence = Some(sequence("Last-Event-ID", id)?);
    }
    for (key, value) in params {
        match key.as_str() {
            "task_id" => request.task_id = value,
            "workflow_id" => request.workflow_id = value,
            "instance_id" => request.instance_id = value,
            "after" | "after_sequence" => request.after_sequence = Some(sequence(&key, &value)?),
            "kinds" | "kind" => {
                for word in value.split(',').map(str::trim).filter(|w| !w.is_empty()) {
                    let name = enum_name("kinds", &Value::String(word.to_owned()))?;
                    let kind = pb::EventKind::from_str_name(name.as_str().unwrap_or_default())
                        .ok_or_else(|| {
                            ApiError::invalid("kinds", format!("{word:?} is not a known value"))
                        })?;
                    request.kinds.push(kind as i32);
                }
            }
            other => {
                return Err(ApiError::invalid(
                    other,
                    "is not a query parameter of the event stream",
                ));
            }
        }
    }
    Ok(request)
}

/// Server-Sent Events: `id` is the sequence number, `event` the kind, `data` the event.
async fn sse_events(
    State(g): State<Gateway>,
    headers: HeaderMap,
    Params(params): Params,
) -> ApiResult {
    let last = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    let feed = g
        .service
        .stream_events(stream_request(params, last)?)
        .await?;
    let events = feed.map(|item| {
        Ok::<_, Infallible>(match item {
            Ok(event) => {
                let data = to_json(&event);
                SseEvent::default()
                    .id(event.sequence.to_string())
                    .event(data["kind"].as_str().unwrap_or("event"))
                    .data(data.to_string())
            }
            Err(error) => {
                let error = ApiError::from(error);
                SseEvent::default()
                    .event("error")
                    .data(json!({ "code": error.code, "message": error.message }).to_string())
            }
        })
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// A WebSocket carrying one JSON event per text message.
async fn ws_events(
    State(g): State<Gateway>,
    Params(params): Params,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult {
    let request = stream_request(params, None)?;
    let ws = ws.map_err(|r| {
        let code = match r.status() {
            StatusCode::UPGRADE_REQUIRED => "upgrade_required",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            _ => "bad_request",
        };
        ApiError::new(r.status(), code, r.body_text(), None)
    })?;
    let mut feed = g.service.stream_events(request).await?;
    Ok(ws.on_upgrade(|mut socket: WebSocket| async move {
        loop {
            tokio::select! {
                item = feed.next() => {
                    let Some(item) = item else { break };
                    let text = match item {
                        Ok(event) => to_json(&event).to_string(),
                        Err(error) => {
                            let error = ApiError::from(error);
                            let text = json!({ "error": { "code": error.code, "message": error.message } }).to_string();
                            let _ = socket.send(Message::Text(text.into())).await;
                            break;
                        }
                    };
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                incoming = socket.recv() => match incoming {
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                },
            }
        }
        let _ = socket.send(Message::Close(None)).await;
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_lists_exactly_the_routes_served() {
        let doc: Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
        let mut documented: Vec<(String, String)> = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("a path item").keys() {
                if OPENAPI_METHODS.contains(&method.as_str()) {
                    documented.push((method.to_ascii_uppercase(), path.clone()));
                }
            }
        }
        let mut served: Vec<(String, String)> = route_table()
            .into_iter()
            .map(|(method, path)| (method.to_string(), path.to_owned()))
            .collect();
        documented.sort();
        served.sort();
        assert_eq!(documented, served);
        let page = docs_page(OPENAPI);
        for (method, path) in &served {
            assert!(page.contains(&format!(
                "<td class=\"method\">{method}</td><td><code>{path}</code>"
            )));
        }
    }

    #[test]
    fn enums_print_as_words_but_free_form_maps_stay() {
        let task = pb::Task {
            status: pb::TaskStatus::Completed as i32,
            priority: pb::Priority::High as i32,
            metadata: [("status".to_string(), "TASK_STATUS_FAILED".to_string())].into(),
            ..Default::default()
        };
        let value = to_json(&task);
        assert_eq!(value["status"], "completed");
        assert_eq!(value["priority"], "high");
        assert_eq!(value["metadata"]["status"], "TASK_STATUS_FAILED");
    }

    #[test]
    fn every_enum_field_of_the_api_prints_as_words() {
        use pbjson_types::{FileDescriptorSet, field_descriptor_proto::Type};
        use prost::Message as _;
        let set = FileDescriptorSet::decode(pb::FILE_DESCRIPTOR_SET).expect("descriptors");
        let api: Vec<_> = set
            .file
            .iter()
            .filter(|f| f.package() == "claude_swarm.v1")
            .collect();
        // `.claude_swarm.v1.FailurePolicy` -> `FAILURE_POLICY_` (from its value 0's name).
        let prefixes: std::collections::HashMap<String, String> = api
            .iter()
            .flat_map(|f| &f.enum_type)
            .map(|e| {
                let zero = e.value[0].name();
                let prefix = zero
                    .strip_suffix("UNSPECIFIED")
                    .expect("value 0 is UNSPECIFIED");
                (format!(".claude_swarm.v1.{}", e.name()), prefix.to_owned())
            })
            .collect();
        for message in api.iter().flat_map(|f| &f.message_type) {
            for field in message.field.iter().filter(|f| f.r#type() == Type::Enum) {
                let (_, known) = ENUM_FIELDS
                    .iter()
                    .find(|(k, _)| *k == field.name())
                    .unwrap_or_else(|| {
                        panic!("{}.{} is not in ENUM_FIELDS", message.name(), field.name())
                    });
                let prefix = &prefixes[field.type_name()];
                assert!(
                    known.contains(&prefix.as_str()),
                    "{}: {prefix}",
                    field.name()
                );
            }
        }
        let task = pb::Task {
            on_failure: pb::FailurePolicy::FailFast as i32,
            ..Default::default()
        };
        assert_eq!(to_json(&task)["on_failure"], "fail_fast");
        let spec: pb::TaskSpec =
            from_json(json!({ "prompt": "p", "on_failure": "fail_fast" }), "").unwrap();
        assert_eq!(spec.on_failure, pb::FailurePolicy::FailFast as i32);
    }

    #[test]
    fn words_names_and_camel_case_are_accepted() {
        let spec: pb::TaskSpec = from_json(
            json!({ "prompt": "p", "priority": "critical", "workingDirectory": "/tmp", "metadata": { "n": 3 } }),
            "",
        )
        .unwrap();
        assert_eq!(spec.priority, pb::Priority::Critical as i32);
        assert_eq!(spec.working_directory, "/tmp");
        assert_eq!(spec.metadata["n"], "3");
        let spec: pb::TaskSpec =
            from_json(json!({ "prompt": "p", "priority": "PRIORITY_LOW" }), "").unwrap();
        assert_eq!(spec.priority, pb::Priority::Low as i32);
    }

    #[test]
    fn bad_values_name_their_field() {
        let err = from_json::<pb::TaskSpec>(json!({ "prompt": "p", "priority": "urgent" }), "")
            .unwrap_err();
        assert_eq!(err.field.as_deref(), Some("priority"));
        let err =
            from_json::<pb::TaskSpec>(json!({ "prompt": "p", "timeout": "soon" }), "").unwrap_err();
        assert_eq!(err.field.as_deref(), Some("timeout"), "{err:?}");
        let err = from_json::<pb::SubmitTasksRequest>(
            json!({ "tasks": [{ "prompt": "p", "max_turns": -1 }] }),
            "",
        )
        .unwrap_err();
        assert_eq!(err.field.as_deref(), Some("tasks[0].max_turns"), "{err:?}");
    }
}
