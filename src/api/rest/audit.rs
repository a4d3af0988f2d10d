//! `GET /audit?since=&key=&action=&limit=&page_token=`: the audit, newest first (role
//! `admin`). Served outside the gateway: its state comes as an extension.

use axum::extract::Extension;
use serde_json::Value;

use super::{
    error::{ApiError, ApiResult},
    json::{Params, respond},
};
use crate::{api::audit::Audit, pb};

pub async fn list_audit(Extension(audit): Extension<Audit>, Params(params): Params) -> ApiResult {
    let mut request = pb::ListAuditRequest::default();
    for (key, value) in params {
        match key.as_str() {
            // An RFC 3339 time, as every time of the API prints.
            "since" => {
                request.since =
                    Some(serde_json::from_value(Value::String(value)).map_err(|_| {
                        ApiError::invalid(
                            "since",
                            "must be an RFC 3339 time (2026-01-31T12:00:00Z)",
                        )
                    })?)
            }
            "key" => request.key = value,
            "action" => request.action = value,
            "limit" => {
                request.limit = value
                    .parse()
                    .map_err(|_| ApiError::invalid("limit", "must be a whole number"))?
            }
            "page_token" | "pageToken" => request.page_token = value,
            other => {
                return Err(ApiError::invalid(
                    other,
                    "is not a query parameter of GET /audit",
                ));
            }
        }
    }
    respond(&audit.list(request).await?)
}
