//! One vocabulary of failures for the whole engine. The API layer maps it once to gRPC
//! status codes and once to HTTP statuses.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum EngineError {
    /// The request is malformed: `field` names what is wrong (`tasks[2].prompt`).
    InvalidArgument { field: String, reason: String },
    /// No such task, instance or workflow.
    NotFound { kind: &'static str, id: String },
    /// A client-chosen id is already taken.
    AlreadyExists { kind: &'static str, id: String },
    /// The request is well formed but the thing is in the wrong state for it
    /// (cancelling a finished task).
    FailedPrecondition(String),
    /// Asked for events that are no longer retained, or a subscriber fell too far behind.
    DataLoss(String),
    /// The engine is shutting down.
    Unavailable(String),
}

impl EngineError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub fn not_found(kind: &'static str, id: impl Into<String>) -> Self {
        Self::NotFound {
            kind,
            id: id.into(),
        }
    }

    /// Prefixes the field of an `InvalidArgument` (`prompt` -> `tasks[3].prompt`).
    pub fn within(self, prefix: &str) -> Self {
        match self {
            Self::InvalidArgument { field, reason } => Self::InvalidArgument {
                field: format!("{prefix}.{field}"),
                reason,
            },
            other => other,
        }
    }

    /// The field a bad request names, if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::InvalidArgument { field, .. } => Some(field),
            _ => None,
        }
    }
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidArgument { field, reason } => write!(f, "invalid {field}: {reason}"),
            Self::NotFound { kind, id } => write!(f, "{kind} {id:?} not found"),
            Self::AlreadyExists { kind, id } => write!(f, "{kind} {id:?} already exists"),
            Self::FailedPrecondition(msg) | Self::DataLoss(msg) | Self::Unavailable(msg) => {
                f.write_str(msg)
            }
        }
    }
}

impl std::error::Error for EngineError {}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
