//! `/schedules`: create (a workflow as `workflow_yaml` text or a `workflow_path` inside the
//! workspace root, or one `task`), list, show, pause, resume, delete, trigger now.

use axum::{
    body::Bytes,
    extract::{State, rejection::BytesRejection},
};
use serde_json::Value;

use super::{
    Gateway,
    error::{ApiError, ApiResult},
    json::{Id, from_json, json_body, respond},
    workflows::read_workflow,
};
use crate::pb;

/// A `CreateScheduleRequest` in JSON; `workflow_path` stands for `workflow_yaml` read from
/// that file.
pub(super) async fn create_schedule(
    State(g): State<Gateway>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let mut value = json_body(body)?;
    if let Some(map) = value.as_object_mut()
        && let Some(path) = map.remove("workflow_path")
    {
        let Value::String(path) = path else {
            return Err(ApiError::invalid("workflow_path", "must be a string"));
        };
        if map.contains_key("workflow_yaml") || map.contains_key("task") {
            return Err(ApiError::invalid(
                "workflow_path",
                "give one of `workflow_path`, `workflow_yaml` and `task`",
            ));
        }
        let yaml = read_workflow(&g.workspace_root, &path)?;
        map.insert("workflow_yaml".into(), Value::String(yaml));
    }
    let request: pb::CreateScheduleRequest = from_json(value, "")?;
    respond(&g.service.create_schedule(request).await?)
}

pub(super) async fn list_schedules(State(g): State<Gateway>) -> ApiResult {
    respond(&g.service.list_schedules().await?)
}

pub(super) async fn get_schedule(State(g): State<Gateway>, Id(schedule_id): Id) -> ApiResult {
    respond(
        &g.service
            .get_schedule(pb::GetScheduleRequest { schedule_id })
            .await?,
    )
}

pub(super) async fn pause_schedule(State(g): State<Gateway>, Id(schedule_id): Id) -> ApiResult {
    respond(
        &g.service
            .pause_schedule(pb::PauseScheduleRequest { schedule_id })
            .await?,
    )
}

pub(super) async fn resume_schedule(State(g): State<Gateway>, Id(schedule_id): Id) -> ApiResult {
    respond(
        &g.service
            .resume_schedule(pb::ResumeScheduleRequest { schedule_id })
            .await?,
    )
}

pub(super) async fn delete_schedule(State(g): State<Gateway>, Id(schedule_id): Id) -> ApiResult {
    respond(
        &g.service
            .delete_schedule(pb::DeleteScheduleRequest { schedule_id })
            .await?,
    )
}

pub(super) async fn trigger_schedule(State(g): State<Gateway>, Id(schedule_id): Id) -> ApiResult {
    respond(
        &g.service
            .trigger_schedule(pb::TriggerScheduleRequest { schedule_id })
            .await?,
    )
}
