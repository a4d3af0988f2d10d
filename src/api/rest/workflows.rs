//! `/workflows`: execute or validate (YAML, inline or a file in the workspace root), list,
//! show, cancel.

use axum::{
    body::Bytes,
    extract::{State, rejection::BytesRejection},
    http::HeaderMap,
};
use serde_json::{Value, json};

use super::{
    Gateway,
    error::{ApiError, ApiResult},
    json::{Id, JSON, from_json, json_body, respond},
};
use crate::{api::guard::media_type, pb};

/// The body types `POST /workflows/execute` takes: JSON, or the workflow itself as YAML.
/// Each needs a CORS preflight, which `text/plain` (a form's type) would not.
pub(super) const BODY_TYPES: &[&str] = &[
    JSON,
    "application/yaml",
    "application/x-yaml",
    "text/yaml",
    "text/x-yaml",
];

/// The keys of a JSON body: the workflow as `yaml` text or (as the original service had
/// it) a `workflow_path`, and the `variables` to set.
const JSON_KEYS: [&str; 3] = ["yaml", "workflow_path", "variables"];

/// A YAML body (one of [`BODY_TYPES`]), or JSON `{"yaml": "..."}` or the original
/// `{"workflow_path": "..."}` (a file inside the workspace root).
pub(super) async fn execute_workflow(
    State(g): State<Gateway>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let (yaml, variables) = document(&g, &headers, body)?;
    respond(
        &g.service
            .execute_workflow(pb::ExecuteWorkflowRequest { yaml, variables })
            .await?,
    )
}

/// The same body as `execute`; checks it and runs nothing: the workflow's name, its task
/// count, and warnings (with line and column) for `{{ }}` text it would keep as written.
pub(super) async fn validate_workflow(
    State(g): State<Gateway>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let (yaml, variables) = document(&g, &headers, body)?;
    respond(
        &g.service
            .validate_workflow(pb::ValidateWorkflowRequest { yaml, variables })
            .await?,
    )
}

/// The workflow document of a request body and the variables to set.
fn document(
    g: &Gateway,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(String, std::collections::HashMap<String, String>), ApiError> {
    let mut variables = Default::default();
    let yaml = match media_type(headers).as_deref() {
        Some(JSON) | None => {
            let value = json_body(body)?;
            let unknown = value
                .as_object()
                .and_then(|m| m.keys().find(|k| !JSON_KEYS.contains(&k.as_str())));
            if let Some(key) = unknown {
                return Err(ApiError::invalid(
                    key,
                    format!(
                        "is not a field here; known fields: {}",
                        JSON_KEYS.join(", ")
                    ),
                ));
            }
            if let Some(vars) = value.get("variables") {
                variables =
                    from_json::<pb::ExecuteWorkflowRequest>(json!({ "variables": vars }), "")?
                        .variables;
            }
            match (value.get("yaml"), value.get("workflow_path")) {
                (Some(Value::String(yaml)), _) => yaml.clone(),
                (_, Some(Value::String(path))) => read_workflow(&g.workspace_root, path)?,
                _ => {
                    return Err(ApiError::invalid(
                        "yaml",
                        "give the workflow as `yaml` text or a `workflow_path`",
                    ));
                }
            }
        }
        Some(_) => String::from_utf8(body?.to_vec())
            .map_err(|_| ApiError::invalid("yaml", "the body is not UTF-8"))?,
    };
    Ok((yaml, variables))
}

pub(super) fn read_workflow(root: &std::path::Path, path: &str) -> Result<String, ApiError> {
    let root = root
        .canonicalize()
        .map_err(|e| ApiError::invalid("workflow_path", format!("workspace root: {e}")))?;
    let full = root
        .join(path)
        .canonicalize()
        .map_err(|_| ApiError::invalid("workflow_path", format!("{path:?} does not exist")))?;
    if !full.starts_with(&root) {
        return Err(ApiError::invalid(
            "workflow_path",
            format!("{path:?} is outside the workspace root"),
        ));
    }
    std::fs::read_to_string(&full)
        .map_err(|e| ApiError::invalid("workflow_path", format!("cannot read {path:?}: {e}")))
}

pub(super) async fn list_workflows(State(g): State<Gateway>) -> ApiResult {
    respond(&g.service.list_workflows().await?)
}

pub(super) async fn get_workflow(State(g): State<Gateway>, Id(workflow_id): Id) -> ApiResult {
    respond(
        &g.service
            .get_workflow(pb::GetWorkflowRequest { workflow_id })
            .await?,
    )
}

pub(super) async fn cancel_workflow(State(g): State<Gateway>, Id(workflow_id): Id) -> ApiResult {
    respond(
        &g.service
            .cancel_workflow(pb::CancelWorkflowRequest { workflow_id })
            .await?,
    )
}
