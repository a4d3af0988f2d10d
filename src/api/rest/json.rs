//! The REST JSON conventions: proto field names, enums as lowercase words both ways, and
//! errors that name the field; plus the extractors of bodies, path ids and query strings.

use axum::{
    Json,
    body::Bytes,
    extract::{FromRequestParts, Path, Query, rejection::BytesRejection},
    http::{StatusCode, request::Parts},
    response::IntoResponse,
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

use super::error::{ApiError, ApiResult};
use crate::pb;

/// The type of every JSON body.
pub(super) const JSON: &str = "application/json";

/// Enum-valued fields and the prefix of their proto value names.
const ENUM_FIELDS: [(&str, &[&str]); 15] = [
    (
        "status",
        &[
            "TASK_STATUS_",
            "INSTANCE_STATUS_",
            "WORKFLOW_STATUS_",
            "DELIVERY_STATUS_",
        ],
    ),
    ("on_permission_denied", &["DENIAL_POLICY_"]),
    ("state", &["APPROVAL_STATE_", "ACCOUNT_STATE_"]),
    ("always", &["POLICY_SCOPE_"]),
    ("priority", &["PRIORITY_"]),
    ("kind", &["EVENT_KIND_"]),
    ("kinds", &["EVENT_KIND_"]),
    ("on_failure", &["FAILURE_POLICY_"]),
    ("failure_class", &["FAILURE_CLASS_"]),
    ("isolation", &["ISOLATION_"]),
    ("missed", &["MISSED_RUN_POLICY_"]),
    ("overlap", &["OVERLAP_POLICY_"]),
    ("events", &["WEBHOOK_TOPIC_"]),
    ("topic", &["WEBHOOK_TOPIC_"]),
    ("format", &["WEBHOOK_FORMAT_"]),
];

/// Maps of free-form strings, left alone.
const FREE_FORM: [&str; 3] = ["metadata", "labels", "env"];

/// JSON values of the caller's or the agent's (`google.protobuf.Value`: a schema, a
/// tool's input, the CLI's suggestions), left as they are: a schema's `"status"` property
/// is not our enum.
const JSON_VALUES: [&str; 5] = [
    "output_schema",
    "structured_output",
    "input",
    "updated_input",
    "permission_suggestions",
];

/// An API message as REST JSON: proto field names, enums as lowercase words.
pub fn to_json(message: &impl Serialize) -> Value {
    fn words(value: &mut Value, prefixes: &[&str]) {
        match value {
            Value::String(s) => {
                if let Some(rest) = prefixes.iter().find_map(|p| s.strip_prefix(p)) {
                    *s = rest.to_ascii_lowercase();
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| words(v, prefixes)),
            _ => {}
        }
    }
    fn walk(value: &mut Value) {
        match value {
            Value::Object(map) => {
                for (key, value) in map.iter_mut() {
                    if let Some((_, prefixes)) = ENUM_FIELDS.iter().find(|(k, _)| k == key) {
                        words(value, prefixes);
                    } else if !FREE_FORM.contains(&key.as_str())
                        && !JSON_VALUES.contains(&key.as_str())
                    {
                        walk(value);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let mut value = serde_json::to_value(message).expect("API messages serialize");
    walk(&mut value);
    value
}

pub(super) fn respond(message: &impl Serialize) -> ApiResult {
    Ok(Json(to_json(message)).into_response())
}

/// The proto enum name for a word (`high` -> `PRIORITY_HIGH`); names and numbers pass.
pub(super) fn enum_name(field: &str, value: &Value) -> Result<Value, ApiError> {
    let (_, prefixes) = ENUM_FIELDS
        .iter()
        .find(|(k, _)| *k == field)
        .expect("enum field");
    let Value::String(word) = value else {
        return Ok(value.clone());
    };
    let upper = word.trim().to_ascii_uppercase();
    for prefix in *prefixes {
        let name = if upper.starts_with(prefix) {
            upper.clone()
        } else {
            format!("{prefix}{upper}")
        };
        let known = match *prefix {
            "TASK_STATUS_" => pb::TaskStatus::from_str_name(&name).is_some(),
            "INSTANCE_STATUS_" => pb::InstanceStatus::from_str_name(&name).is_some(),
            "WORKFLOW_STATUS_" => pb::WorkflowStatus::from_str_name(&name).is_some(),
            "PRIORITY_" => pb::Priority::from_str_name(&name).is_some(),
            "FAILURE_POLICY_" => pb::FailurePolicy::from_str_name(&name).is_some(),
            "FAILURE_CLASS_" => pb::FailureClass::from_str_name(&name).is_some(),
            "ISOLATION_" => pb::Isolation::from_str_name(&name).is_some(),
            "DENIAL_POLICY_" => pb::DenialPolicy::from_str_name(&name).is_some(),
            "APPROVAL_STATE_" => pb::ApprovalState::from_str_name(&name).is_some(),
            "ACCOUNT_STATE_" => pb::AccountState::from_str_name(&name).is_some(),
            "POLICY_SCOPE_" => pb::PolicyScope::from_str_name(&name).is_some(),
            "MISSED_RUN_POLICY_" => pb::MissedRunPolicy::from_str_name(&name).is_some(),
            "OVERLAP_POLICY_" => pb::OverlapPolicy::from_str_name(&name).is_some(),
            "WEBHOOK_TOPIC_" => pb::WebhookTopic::from_str_name(&name).is_some(),
            "WEBHOOK_FORMAT_" => pb::WebhookFormat::from_str_name(&name).is_some(),
            "DELIVERY_STATUS_" => pb::DeliveryStatus::from_str_name(&name).is_some(),
            _ => pb::EventKind::from_str_name(&name).is_some(),
        };
        if known {
            return Ok(Value::String(name));
        }
    }
    Err(ApiError::invalid(
        field,
        format!("{word:?} is not a known value"),
    ))
}

/// REST JSON to an API message: words to enum names, free-form values to strings, and a
/// type error names the field it is in.
pub(super) fn from_json<T: DeserializeOwned>(
    mut value: Value,
    prefix: &str,
) -> Result<T, ApiError> {
    fn walk(value: &mut Value, path: &str) -> Result<(), ApiError> {
        if let Value::Object(map) = value {
            for (key, value) in map.iter_mut() {
                let here = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                if JSON_VALUES.contains(&key.as_str()) {
                    continue;
                }
                if ENUM_FIELDS.iter().any(|(k, _)| k == key) {
                    let named = match &*value {
                        Value::Array(items) => Value::Array(
                            items
                                .iter()
                                .map(|v| enum_name(key, v))
                                .collect::<Result<_, _>>()
                                .map_err(|e| at(e, &here))?,
                        ),
                        single => enum_name(key, single).map_err(|e| at(e, &here))?,
                    };
                    *value = named;
                } else if JSON_VALUES.contains(&key.as_str()) {
                    // Taken as it is: the tool's own keys are not ours to check.
                } else if FREE_FORM.contains(&key.as_str()) {
                    if let Value::Object(entries) = value {
                        for entry in entries.values_mut() {
                            if !entry.is_string() {
                                *entry = Value::String(entry.to_string());
                            }
                        }
                    }
                } else if let Value::Array(items) = value {
                    for (i, item) in items.iter_mut().enumerate() {
                        walk(item, &format!("{here}[{i}]"))?;
                    }
                } else {
                    walk(value, &here)?;
                }
            }
        }
        Ok(())
    }
    fn at(mut error: ApiError, path: &str) -> ApiError {
        error.message = error
            .message
            .replacen(error.field.as_deref().unwrap_or_default(), path, 1);
        error.field = Some(path.to_owned());
        error
    }
    walk(&mut value, prefix)?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let join = |a: &str, b: &str| match (a, b) {
            ("" | ".", b) => b.to_owned(),
            (a, "" | ".") => a.to_owned(),
            (a, b) => format!("{a}.{b}"),
        };
        let field = join(prefix, &path);
        let reason = e.into_inner().to_string();
        ApiError::invalid(&field, unknown_field(&reason).unwrap_or(reason))
    })
}

/// For serde's "unknown field `timout`, expected one of `prompt`, `timeout`, ..." (the path
/// names the key already): a reason suggesting the field it was likely meant to be.
fn unknown_field(reason: &str) -> Option<String> {
    let rest = reason.strip_prefix("unknown field `")?;
    let (key, rest) = rest.split_once('`')?;
    let known: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    let near = known
        .iter()
        .map(|k| (edit_distance(key, k), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min();
    let reason = match near {
        Some((_, k)) => format!("is not a field here; did you mean `{k}`?"),
        None => {
            // Each field is listed twice, as proto and as JSON (lowerCamelCase) name.
            let proto: Vec<&str> = known
                .into_iter()
                .filter(|k| !k.contains(char::is_uppercase))
                .collect();
            format!("is not a field here; known fields: {}", proto.join(", "))
        }
    };
    Some(reason)
}

/// Levenshtein distance, for suggestions.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// The body as a JSON object; 400 with a reason for anything else. (The content type
/// was checked in front of every route, by [`crate::api::guard`].)
pub(super) fn json_body(body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    let body = body?;
    let value: Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("the body is not JSON: {e}"),
            None,
        )
    })?;
    if !value.is_object() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the body must be a JSON object".into(),
            None,
        ));
    }
    Ok(value)
}

/// A path's `{id}`; one that does not decode (not UTF-8) is a JSON 400.
pub(super) struct Id(pub(super) String);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|r| ApiError::new(r.status(), "bad_request", r.body_text(), None))?;
        Ok(Self(id))
    }
}

/// The query string as (key, value) pairs in order, keys repeating for lists.
pub(super) struct Params(pub(super) Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(pairs) = Query::from_request_parts(parts, state)
            .await
            .map_err(|r| ApiError::new(r.status(), "bad_request", r.body_text(), None))?;
        Ok(Self(pairs))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn enums_print_as_words_but_free_form_maps_stay() {
        let task = pb::Task {
            status: pb::TaskStatus::Completed as i32,
            priority: pb::Priority::High as i32,
            metadata: [("status".to_string(), "TASK_STATUS_FAILED".to_string())].into(),
            ..Default::default()
        };
        let value = to_json(&task);
        assert_eq!(value["status"], "completed");
        assert_eq!(value["priority"], "high");
        assert_eq!(value["metadata"]["status"], "TASK_STATUS_FAILED");
    }

    #[test]
    fn every_enum_field_of_the_api_prints_as_words() {
        use pbjson_types::{FileDescriptorSet, field_descriptor_proto::Type};
        use prost::Message as _;
        let set = FileDescriptorSet::decode(pb::FILE_DESCRIPTOR_SET).expect("descriptors");
        let api: Vec<_> = set
            .file
            .iter()
            .filter(|f| f.package() == "claude_swarm.v1")
            .collect();
        // `.claude_swarm.v1.FailurePolicy` -> `FAILURE_POLICY_` (from its value 0's name).
        let prefixes: std::collections::HashMap<String, String> = api
            .iter()
            .flat_map(|f| &f.enum_type)
            .map(|e| {
                let zero = e.value[0].name();
                let prefix = zero
                    .strip_suffix("UNSPECIFIED")
                    .expect("value 0 is UNSPECIFIED");
                (format!(".claude_swarm.v1.{}", e.name()), prefix.to_owned())
            })
            .collect();
        for message in api.iter().flat_map(|f| &f.message_type) {
            for field in message.field.iter().filter(|f| f.r#type() == Type::Enum) {
                let (_, known) = ENUM_FIELDS
                    .iter()
                    .find(|(k, _)| *k == field.name())
                    .unwrap_or_else(|| {
                        panic!("{}.{} is not in ENUM_FIELDS", message.name(), field.name())
                    });
                let prefix = &prefixes[field.type_name()];
                assert!(
                    known.contains(&prefix.as_str()),
                    "{}: {prefix}",
                    field.name()
                );
            }
        }
        let task = pb::Task {
            on_failure: pb::FailurePolicy::FailFast as i32,
            ..Default::default()
        };
        assert_eq!(to_json(&task)["on_failure"], "fail_fast");
        let spec: pb::TaskSpec =
            from_json(json!({ "prompt": "p", "on_failure": "fail_fast" }), "").unwrap();
        assert_eq!(spec.on_failure, pb::FailurePolicy::FailFast as i32);
    }

    #[test]
    fn words_names_and_camel_case_are_accepted() {
        let spec: pb::TaskSpec = from_json(
            json!({ "prompt": "p", "priority": "critical", "workingDirectory": "/tmp", "metadata": { "n": 3 } }),
            "",
        )
        .unwrap();
        assert_eq!(spec.priority, pb::Priority::Critical as i32);
        assert_eq!(spec.working_directory, "/tmp");
        assert_eq!(spec.metadata["n"], "3");
        let spec: pb::TaskSpec =
            from_json(json!({ "prompt": "p", "priority": "PRIORITY_LOW" }), "").unwrap();
        assert_eq!(spec.priority, pb::Priority::Low as i32);
    }

    #[test]
    fn bad_values_name_their_field() {
        let err = from_json::<pb::TaskSpec>(json!({ "prompt": "p", "priority": "urgent" }), "")
            .unwrap_err();
        assert_eq!(err.field.as_deref(), Some("priority"));
        let err =
            from_json::<pb::TaskSpec>(json!({ "prompt": "p", "timeout": "soon" }), "").unwrap_err();
        assert_eq!(err.field.as_deref(), Some("timeout"), "{err:?}");
        let err = from_json::<pb::SubmitTasksRequest>(
            json!({ "tasks": [{ "prompt": "p", "max_turns": -1 }] }),
            "",
        )
        .unwrap_err();
        assert_eq!(err.field.as_deref(), Some("tasks[0].max_turns"), "{err:?}");
    }

    #[test]
    fn unknown_fields_are_refused_naming_the_field_and_the_one_meant() {
        let err = from_json::<pb::TaskSpec>(json!({ "prompt": "x", "timout": 5 }), "").unwrap_err();
        assert_eq!(err.field.as_deref(), Some("timout"), "{err:?}");
        assert!(err.message.contains("did you mean `timeout`"), "{err:?}");
        let err = from_json::<pb::SubmitTasksRequest>(
            json!({ "tasks": [{ "prompt": "p", "options": { "evn": {} } }] }),
            "",
        )
        .unwrap_err();
        assert_eq!(
            err.field.as_deref(),
            Some("tasks[0].options.evn"),
            "{err:?}"
        );
        let err =
            from_json::<pb::TaskSpec>(json!({ "prompt": "p", "zzzzzz": 1 }), "task").unwrap_err();
        assert_eq!(err.field.as_deref(), Some("task.zzzzzz"), "{err:?}");
        assert!(
            err.message.contains("known fields: prompt, name"),
            "{err:?}"
        );
        // Both spellings of a field stay accepted.
        from_json::<pb::TaskSpec>(
            json!({ "prompt": "p", "working_directory": "/tmp", "dependsOn": [] }),
            "",
        )
        .unwrap();
    }
}
