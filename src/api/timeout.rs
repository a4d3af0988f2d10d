//! `request_timeout`: how long a call may take to be answered, on every surface. The clock
//! runs from the request's arrival (its body included: a client that sends slowly is cut
//! off too) until its answer starts. An event stream's answer starts at once and then lasts
//! as long as it is read, so streams are not cut; unary RPCs and REST calls are.
//!
//! Past it, gRPC and grpc-web callers hear DEADLINE_EXCEEDED, REST callers `504
//! deadline_exceeded`, both naming `request_timeout`. What the call asked for may still
//! happen (a submission already on its way to the engine); a retry with the same
//! `idempotency_key` is safe.

use std::time::Duration;

use axum::{
    body::Body,
    extract::{Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::rest::ApiError;

/// The default of `request_timeout`.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The layer's work: the answer within `limit`, or the refusal that names it.
pub async fn limit(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    let grpc_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .filter(|t| t.as_bytes().starts_with(b"application/grpc"))
        .cloned();
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            let message = format!(
                "request_timeout: {method} {path} was not answered within {} s (the work it \
                 asked for may still be done)",
                limit.as_secs_f64()
            );
            tracing::warn!(%method, path, "{message}");
            refusal(grpc_type, message)
        }
    }
}

fn refusal(grpc_type: Option<HeaderValue>, message: String) -> Response {
    match grpc_type {
        Some(grpc_type) => {
            let mut response = tonic::Status::deadline_exceeded(message).into_http::<Body>();
            // A grpc-web client wants its own type back.
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, grpc_type);
            response
        }
        None => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "deadline_exceeded",
            message,
            Some("request_timeout".to_owned()),
        )
        .into_response(),
    }
}
