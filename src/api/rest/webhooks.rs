//! `/webhooks`: register (a `CreateWebhookRequest` as JSON), list, delete, and each one's
//! delivery log.

use axum::{
    body::Bytes,
    extract::{State, rejection::BytesRejection},
};

use super::{
    Gateway,
    error::ApiResult,
    json::{Id, Params, from_json, json_body, respond},
};
use crate::pb;

pub(super) async fn create_webhook(
    State(g): State<Gateway>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let request: pb::CreateWebhookRequest = from_json(json_body(body)?, "")?;
    respond(&g.service.create_webhook(request).await?)
}

pub(super) async fn list_webhooks(State(g): State<Gateway>) -> ApiResult {
    respond(&g.service.list_webhooks().await?)
}

pub(super) async fn delete_webhook(State(g): State<Gateway>, Id(webhook_id): Id) -> ApiResult {
    respond(
        &g.service
            .delete_webhook(pb::DeleteWebhookRequest { webhook_id })
            .await?,
    )
}

/// `?limit=N` (newest first, 100 by default).
pub(super) async fn list_deliveries(
    State(g): State<Gateway>,
    Id(webhook_id): Id,
    Params(params): Params,
) -> ApiResult {
    let limit = match params.iter().find(|(k, _)| k == "limit") {
        None => 0,
        Some((_, v)) => v.parse().map_err(|_| {
            super::error::ApiError::invalid("limit", format!("{v:?} is not a whole number"))
        })?,
    };
    respond(
        &g.service
            .list_deliveries(pb::ListDeliveriesRequest { webhook_id, limit })
            .await?,
    )
}
