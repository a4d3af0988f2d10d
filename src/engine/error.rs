//! One vocabulary of failures for the whole engine. The API layer maps it once to gRPC
//! status codes and once to HTTP statuses.

use super::ports::StoreError;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    /// The request is malformed: `field` names what is wrong (`tasks[2].prompt`).
    #[error("invalid {field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    /// The caller may not ask for this (`field`, such as a shell `command`); the API layer
    /// decides who may do what, the engine only carries the answer.
    #[error("{field}: {reason}")]
    PermissionDenied { field: String, reason: String },
    /// No such task, instance or workflow.
    #[error("{kind} {id:?} not found")]
    NotFound { kind: &'static str, id: String },
    /// A client-chosen id is already taken.
    #[error("{kind} {id:?} already exists")]
    AlreadyExists { kind: &'static str, id: String },
    /// The request is well formed but the thing is in the wrong state for it
    /// (cancelling a finished task).
    #[error("{0}")]
    FailedPrecondition(String),
    /// Asked for events that are no longer retained, or a subscriber fell too far behind.
    #[error("{0}")]
    DataLoss(String),
    /// A configured bound would be passed: `limit` names the setting (`max_queued_tasks`).
    #[error("{reason} (limit: {limit})")]
    ResourceExhausted { limit: &'static str, reason: String },
    /// The engine is shutting down, or stopped.
    #[error("{0}")]
    Unavailable(String),
    /// The change could not be stored; nothing more is acknowledged.
    #[error("the change could not be stored: {0}")]
    Store(#[source] StoreError),
    /// A bug: the engine answered something it should not have. Logged with its cause;
    /// callers see only that something went wrong.
    #[error("internal error: {0}")]
    Internal(String),
}

// `StoreError` holds strings only, so equality on its text is enough for tests.
impl PartialEq for StoreError {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
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

    /// Prefixes the field of an `InvalidArgument` or `PermissionDenied` (`prompt` ->
    /// `tasks[3].prompt`).
    pub fn within(self, prefix: &str) -> Self {
        match self {
            Self::InvalidArgument { field, reason } => Self::InvalidArgument {
                field: format!("{prefix}.{field}"),
                reason,
            },
            Self::PermissionDenied { field, reason } => Self::PermissionDenied {
                field: format!("{prefix}.{field}"),
                reason,
            },
            other => other,
        }
    }

    /// The field a refused request names, if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::InvalidArgument { field, .. } | Self::PermissionDenied { field, .. } => {
                Some(field)
            }
            // The setting whose bound was reached (`max_queued_tasks`).
            Self::ResourceExhausted { limit, .. } => Some(limit),
            _ => None,
        }
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
