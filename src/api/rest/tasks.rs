//! `/tasks`: submit one or a batch, list with filters, show and cancel.

use axum::{
    body::Bytes,
    extract::{State, rejection::BytesRejection},
};
use serde_json::Value;

use super::{
    Gateway,
    error::{ApiError, ApiResult},
    json::{Id, Params, enum_name, from_json, json_body, respond},
};
use crate::pb;

/// The original service's flat body, or `{"task": {...}}` as in gRPC.
pub(super) async fn submit_task(
    State(g): State<Gateway>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let value = json_body(body)?;
    if value.get("task").is_some_and(Value::is_object) {
        let request: pb::SubmitTaskRequest = from_json(value, "")?;
        respond(&g.service.submit_task(request).await?)
    } else {
        respond(&g.service.submit_spec(from_json(value, "")?).await?)
    }
}

/// `{"tasks": [TaskSpec...]}`, or the original `{"prompts": [...], "working_directory", "priority"}`.
pub(super) async fn submit_tasks(
    State(g): State<Gateway>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let mut value = json_body(body)?;
    let request: pb::SubmitTasksRequest =
        match value.as_object_mut().and_then(|m| m.remove("prompts")) {
            Some(Value::Array(prompts)) => {
                // The other keys are settings every prompt shares: a task spec's fields.
                let shared: pb::TaskSpec = from_json(value, "")?;
                let tasks = prompts
                    .into_iter()
                    .enumerate()
                    .map(|(i, prompt)| match prompt {
                        Value::String(prompt) => Ok(pb::TaskSpec {
                            prompt,
                            ..shared.clone()
                        }),
                        _ => Err(ApiError::invalid(
                            &format!("prompts[{i}]"),
                            "must be a string",
                        )),
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
pub(super) async fn list_tasks(State(g): State<Gateway>, Params(params): Params) -> ApiResult {
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

pub(super) async fn get_task(State(g): State<Gateway>, Id(task_id): Id) -> ApiResult {
    respond(&g.service.get_task(pb::GetTaskRequest { task_id }).await?)
}

pub(super) async fn cancel_task(State(g): State<Gateway>, Id(task_id): Id) -> ApiResult {
    respond(
        &g.service
            .cancel_task(pb::CancelTaskRequest { task_id })
            .await?,
    )
}
