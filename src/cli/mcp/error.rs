//! A failed tool call as the calling model reads it: an MCP tool error (`isError: true`)
//! whose content is `{"error": {"code", "message", "field", "line", "column"}}`, with the
//! REST API's code words. The server's own refusals (a bad field, a role too low, an unknown
//! id) come through as they are, so its keys and roles apply to MCP calls unchanged.

use rmcp::model::CallToolResult;
use serde_json::{Map, Value, json};
use tonic::{Code, Status};

#[derive(Debug)]
pub(super) struct ToolError {
    /// The REST API's word for the failure (`invalid_argument`, `forbidden`, `not_found`).
    code: &'static str,
    /// What went wrong, naming the field when one is at fault.
    message: String,
    /// The argument (or, in a workflow document, the field path) at fault.
    field: Option<String>,
    /// Where in a workflow document the fault is, from 1.
    place: Option<(u32, u32)>,
}

impl ToolError {
    /// A bad argument, found before anything is sent to the server.
    pub(super) fn invalid(field: &str, reason: impl std::fmt::Display) -> Self {
        Self {
            code: "invalid_argument",
            message: format!("invalid {field}: {reason}"),
            field: Some(field.to_owned()),
            place: None,
        }
    }

    /// The wait (or what it waited on) ended before an answer: the client cancelled the call,
    /// or the server is going away.
    pub(super) fn cancelled(message: &str) -> Self {
        Self {
            code: "cancelled",
            message: message.to_owned(),
            field: None,
            place: None,
        }
    }

    /// The server's answer. `strip` is the prefix its field names carry that the tool's
    /// arguments do not (`task.`: submit_task's arguments are the task's fields).
    pub(super) fn from_status(status: &Status, server: &str, strip: &str) -> Self {
        let message = status.message();
        let code = match status.code() {
            Code::InvalidArgument => "invalid_argument",
            Code::PermissionDenied => "forbidden",
            Code::Unauthenticated => "unauthenticated",
            Code::NotFound => "not_found",
            Code::AlreadyExists => "already_exists",
            Code::FailedPrecondition => "failed_precondition",
            Code::ResourceExhausted => "resource_exhausted",
            Code::DataLoss => "data_loss",
            Code::Unavailable => "unavailable",
            _ => "internal",
        };
        let message = match status.code() {
            // The engine says `invalid FIELD: reason`.
            Code::InvalidArgument => message.replacen(&format!("invalid {strip}"), "invalid ", 1),
            Code::Unauthenticated => {
                format!("{message} (give `claude-swarm mcp` the key in SWARM_API_KEY or --api-key)")
            }
            Code::Unavailable => format!("the swarm server at {server} did not answer: {message}"),
            _ => message.to_owned(),
        };
        let field = (code == "invalid_argument")
            .then(|| message.strip_prefix("invalid ")?.split_once(": "))
            .flatten()
            .map(|(field, _)| field.to_owned());
        let place = place(&message);
        Self {
            code,
            message,
            field,
            place,
        }
    }

    /// The tool result that carries it.
    pub(super) fn into_result(self) -> CallToolResult {
        let mut error = Map::new();
        error.insert("code".into(), json!(self.code));
        error.insert("message".into(), json!(self.message));
        if let Some(field) = self.field {
            error.insert("field".into(), json!(field));
        }
        if let Some((line, column)) = self.place {
            error.insert("line".into(), json!(line));
            error.insert("column".into(), json!(column));
        }
        CallToolResult::structured_error(json!({ "error": Value::Object(error) }))
    }
}

/// The `(line L, column C)` a workflow error ends with (`workflow::locate` writes it).
fn place(message: &str) -> Option<(u32, u32)> {
    let (_, rest) = message.rsplit_once("(line ")?;
    let (line, rest) = rest.split_once(", column ")?;
    let column = rest.strip_suffix(')')?;
    Some((line.parse().ok()?, column.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workflow_error_carries_its_line_and_column() {
        let status = Status::invalid_argument(
            "invalid tasks[1].depends_on[0]: unknown task \"nope\" (line 7, column 9)",
        );
        let error = ToolError::from_status(&status, "http://x", "");
        assert_eq!(error.field.as_deref(), Some("tasks[1].depends_on[0]"));
        assert_eq!(error.place, Some((7, 9)));
    }

    #[test]
    fn a_task_field_is_named_as_the_tool_argument() {
        let status = Status::invalid_argument("invalid task.priority: nope");
        let error = ToolError::from_status(&status, "http://x", "task.");
        assert_eq!(error.message, "invalid priority: nope");
        assert_eq!(error.field.as_deref(), Some("priority"));
        assert_eq!(error.place, None);
    }
}
