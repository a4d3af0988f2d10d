//! The engine's one error vocabulary, mapped once to gRPC and once to HTTP.

use axum::http::StatusCode;
use tonic::Code;

use crate::engine::EngineError;

/// The gRPC code and HTTP status of an engine error.
pub fn codes(error: &EngineError) -> (Code, StatusCode) {
    match error {
        EngineError::InvalidArgument { .. } => (Code::InvalidArgument, StatusCode::BAD_REQUEST),
        EngineError::NotFound { .. } => (Code::NotFound, StatusCode::NOT_FOUND),
        EngineError::AlreadyExists { .. } => (Code::AlreadyExists, StatusCode::CONFLICT),
        EngineError::FailedPrecondition(_) => (Code::FailedPrecondition, StatusCode::CONFLICT),
        EngineError::DataLoss(_) => (Code::DataLoss, StatusCode::GONE),
        EngineError::Unavailable(_) => (Code::Unavailable, StatusCode::SERVICE_UNAVAILABLE),
    }
}

impl From<EngineError> for tonic::Status {
    fn from(error: EngineError) -> Self {
        tonic::Status::new(codes(&error).0, error.to_string())
    }
}
