//! `/instances`: list, spawn, scale, show and terminate agent processes.

use axum::{
    body::Bytes,
    extract::{State, rejection::BytesRejection},
};

use super::{
    Gateway,
    error::{ApiError, ApiResult},
    json::{Id, from_json, json_body, respond},
};
use crate::pb;

pub(super) async fn list_instances(State(g): State<Gateway>) -> ApiResult {
    respond(&g.service.list_instances().await?)
}

pub(super) async fn spawn_instances(
    State(g): State<Gateway>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let request = from_json(json_body(body)?, "")?;
    respond(&g.service.spawn_instances(request).await?)
}

pub(super) async fn scale_instances(
    State(g): State<Gateway>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let value = json_body(body)?;
    if value.get("target").is_none() {
        return Err(ApiError::invalid("target", "is required"));
    }
    respond(&g.service.scale_instances(from_json(value, "")?).await?)
}

pub(super) async fn get_instance(State(g): State<Gateway>, Id(instance_id): Id) -> ApiResult {
    respond(
        &g.service
            .get_instance(pb::GetInstanceRequest { instance_id })
            .await?,
    )
}

pub(super) async fn terminate_instance(State(g): State<Gateway>, Id(instance_id): Id) -> ApiResult {
    respond(
        &g.service
            .terminate_instance(pb::TerminateInstanceRequest { instance_id })
            .await?,
    )
}
