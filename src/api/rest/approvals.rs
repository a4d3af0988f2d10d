//! `/approvals`: the tool calls waiting on a person, one of them, and a decision on it.

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

/// `?state=pending&state=denied&task_id=..&workflow_id=..`; states may be comma-separated.
pub(super) async fn list_approvals(State(g): State<Gateway>, Params(params): Params) -> ApiResult {
    let mut request = pb::ListApprovalsRequest::default();
    for (key, value) in params {
        match key.as_str() {
            "state" => {
                for word in value.split(',').map(str::trim).filter(|w| !w.is_empty()) {
                    let name = enum_name("state", &Value::String(word.to_owned()))?;
                    let state = pb::ApprovalState::from_str_name(name.as_str().unwrap_or_default())
                        .ok_or_else(|| {
                            ApiError::invalid("state", format!("{word:?} is not a known value"))
                        })?;
                    request.state.push(state as i32);
                }
            }
            "task_id" | "taskId" => request.task_id = value,
            "workflow_id" | "workflowId" => request.workflow_id = value,
            other => {
                return Err(ApiError::invalid(
                    other,
                    "is not a query parameter of GET /approvals",
                ));
            }
        }
    }
    respond(&g.service.list_approvals(request).await?)
}

pub(super) async fn get_approval(State(g): State<Gateway>, Id(approval_id): Id) -> ApiResult {
    respond(
        &g.service
            .get_approval(pb::GetApprovalRequest { approval_id })
            .await?,
    )
}

/// `{"allow": true, "message": "...", "updated_input": {...}, "always": "task"}`; the id is
/// the path's.
pub(super) async fn decide_approval(
    State(g): State<Gateway>,
    Id(approval_id): Id,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let mut value = json_body(body)?;
    let Some(map) = value.as_object_mut() else {
        return Err(ApiError::invalid("", "the body must be a JSON object"));
    };
    if map.get("allow").is_none_or(|a| !a.is_boolean()) {
        return Err(ApiError::invalid("allow", "is required: true or false"));
    }
    if let Some(given) = map.get("approval_id").or_else(|| map.get("approvalId"))
        && given.as_str() != Some(approval_id.as_str())
    {
        return Err(ApiError::invalid(
            "approval_id",
            "differs from the id in the path",
        ));
    }
    map.insert("approval_id".into(), Value::String(approval_id));
    let request: pb::DecideApprovalRequest = from_json(value, "")?;
    respond(&g.service.decide_approval(request).await?)
}
