//! The engine's one error vocabulary, mapped once to gRPC and once to HTTP.

use axum::http::StatusCode;
use tonic::Code;

use crate::engine::EngineError;

/// The gRPC code and HTTP status of an engine error.
pub fn codes(error: &EngineError) -> (Code, StatusCode) {
    match error {
        EngineError::InvalidArgument { .. } => (Code::InvalidArgument, StatusCode::BAD_REQUEST),
        EngineError::PermissionDenied { .. } => (Code::PermissionDenied, StatusCode::FORBIDDEN),
        EngineError::NotFound { .. } => (Code::NotFound, StatusCode::NOT_FOUND),
        EngineError::AlreadyExists { .. } => (Code::AlreadyExists, StatusCode::CONFLICT),
        EngineError::FailedPrecondition(_) => (Code::FailedPrecondition, StatusCode::CONFLICT),
        EngineError::DataLoss(_) => (Code::DataLoss, StatusCode::GONE),
        EngineError::ResourceExhausted { .. } => {
            (Code::ResourceExhausted, StatusCode::TOO_MANY_REQUESTS)
        }
        EngineError::Unavailable(_) | EngineError::Store(_) => {
            (Code::Unavailable, StatusCode::SERVICE_UNAVAILABLE)
        }
        EngineError::Internal(_) => (Code::Internal, StatusCode::INTERNAL_SERVER_ERROR),
    }
}

/// What a client is told of an internal error (the cause is logged instead).
pub const INTERNAL_MESSAGE: &str = "something went wrong on the server; its log has the cause";

/// What a client is told: the error itself, except that internals never leak (the cause is
/// logged here instead).
pub fn public_message(error: &EngineError) -> String {
    match error {
        EngineError::Internal(_) | EngineError::Store(_) => {
            tracing::error!(cause = %error, "answering with an internal error");
            INTERNAL_MESSAGE.to_owned()
        }
        other => other.to_string(),
    }
}

impl From<EngineError> for tonic::Status {
    fn from(error: EngineError) -> Self {
        tonic::Status::new(codes(&error).0, public_message(&error))
    }
}
