//! `{"error": {"code", "message", "field"}}`: every REST failure, with its HTTP status.

use axum::{
    Json,
    extract::rejection::BytesRejection,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::json;

use crate::{
    api::{
        MAX_REQUEST_BYTES,
        error::{codes, public_message},
    },
    engine::EngineError,
};

/// `{"error": {"code", "message", "field"}}` with the matching HTTP status.
#[derive(Debug)]
pub struct ApiError {
    pub(super) status: StatusCode,
    pub(super) code: &'static str,
    pub(super) message: String,
    pub(super) field: Option<String>,
}

impl ApiError {
    pub(crate) fn new(
        status: StatusCode,
        code: &'static str,
        message: String,
        field: Option<String>,
    ) -> Self {
        Self {
            status,
            code,
            message,
            field,
        }
    }

    pub(super) fn invalid(field: &str, reason: impl Into<String>) -> Self {
        EngineError::invalid(field, reason).into()
    }
}

impl From<EngineError> for ApiError {
    fn from(error: EngineError) -> Self {
        let (code, status) = codes(&error);
        let code = match code {
            tonic::Code::InvalidArgument => "invalid_argument",
            tonic::Code::PermissionDenied => "forbidden",
            tonic::Code::NotFound => "not_found",
            tonic::Code::AlreadyExists => "already_exists",
            tonic::Code::FailedPrecondition => "failed_precondition",
            tonic::Code::DataLoss => "data_loss",
            tonic::Code::ResourceExhausted => "resource_exhausted",
            tonic::Code::Internal => "internal",
            _ => "unavailable",
        };
        Self::new(
            status,
            code,
            public_message(&error),
            error.field().map(str::to_owned),
        )
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            let message = format!(
                "the body is larger than {MAX_REQUEST_BYTES} bytes, the most this server takes"
            );
            return Self::new(status, "payload_too_large", message, None);
        }
        Self::new(status, "bad_request", rejection.body_text(), None)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body =
            json!({ "error": { "code": self.code, "message": self.message, "field": self.field } });
        (self.status, Json(body)).into_response()
    }
}

pub(super) type ApiResult = Result<Response, ApiError>;
