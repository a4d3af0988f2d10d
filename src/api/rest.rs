//! The REST gateway: the documented HTTP routes over the same engine.

use axum::{Json, Router, http::StatusCode, response::IntoResponse, routing::get};
use serde_json::json;

use crate::engine::Engine;

pub fn router(engine: Engine) -> Router {
    Router::new()
        .route("/health", get(health))
        .with_state(engine)
}

async fn health() -> impl IntoResponse {
    Json(json!({ "status": "healthy" }))
}

/// A JSON 404 for any path no route serves.
pub async fn not_found() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "error": { "code": "not_found", "message": "no such route" } })),
    )
}
