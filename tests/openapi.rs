//! `GET /openapi.json` against what the server really serves: the same (method, path)
//! pairs as the router's table, each of them answering, and schemas that match the proto.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use claude_swarm::{api::rest, pb};
use common::{TestServer, config};
use pbjson_types::{
    DescriptorProto, EnumDescriptorProto, FileDescriptorSet, field_descriptor_proto::Type,
};
use prost::Message as _;
use reqwest::{Client, Method, StatusCode, header};
use serde_json::{Value, json};

async fn document(base: &str) -> Value {
    let response = reqwest::get(format!("{base}/openapi.json")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE].to_str().unwrap(),
        "application/json"
    );
    response.json().await.unwrap()
}

/// (method, path) of every operation the document lists.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if rest::OPENAPI_METHODS.contains(&method.as_str()) {
                routes.insert((method.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    routes
}

fn served() -> BTreeSet<(String, String)> {
    let table = rest::route_table();
    let set: BTreeSet<_> = table
        .iter()
        .map(|route| (route.method.to_string(), route.path.to_owned()))
        .collect();
    assert_eq!(set.len(), table.len(), "a route is listed twice: {table:?}");
    set
}

/// The document's `#/components/...` target of a `$ref`.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value["$ref"].as_str() {
        Some(reference) => {
            let pointer = reference.strip_prefix('#').expect("a local $ref");
            let target = doc
                .pointer(pointer)
                .unwrap_or_else(|| panic!("{reference} resolves"));
            resolve(doc, target)
        }
        None => value,
    }
}

fn is_fallback(status: StatusCode, body: &Value) -> bool {
    status == StatusCode::NOT_FOUND && body["error"]["message"] == "no such route"
}

#[tokio::test]
async fn the_document_lists_exactly_the_served_routes_and_each_answers() {
    let server = TestServer::start(config(2)).await;
    let base = format!("http://{}", server.addr);
    let http = Client::new();
    let doc = document(&base).await;
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(documented(&doc), served(), "documented vs served routes");

    // Real ids for the path parameters, so each route gets as far as its handler's work.
    let (task, workflow) = {
        let created: Value = http
            .post(format!("{base}/tasks"))
            .json(&json!({ "prompt": "quick" }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let task = created["task_id"].as_str().unwrap().to_owned();
        server.wait(&task).await;
        let started: Value = http
            .post(format!("{base}/workflows/execute"))
            .json(&json!({ "workflow_path": "workflows/demo.yaml" }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (task, started["workflow_id"].as_str().unwrap().to_owned())
    };
    // A tool call waiting on a person, for the approval routes (the decision's example
    // denies it).
    let outside = tempfile::tempdir().unwrap();
    let marker = outside.path().join("marker");
    let asking = server
        .submit(common::spec(&format!("sim:ask={}", marker.display())))
        .await;
    let requested = server
        .wait_for(&asking.id, pb::EventKind::ApprovalRequested)
        .await;
    let approval = match requested.payload {
        Some(pb::event::Payload::Approval(a)) => a.id,
        other => panic!("an approval: {other:?}"),
    };
    let instances: Value = http
        .get(format!("{base}/instances"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Not the one running the task that asks: terminating it would close the approval.
    let instance = instances["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["current_task_id"] != asking.id.as_str())
        .and_then(|i| i["id"].as_str())
        .unwrap()
        .to_owned();
    // Two schedules: DELETE removes one, the other routes use the one that stays.
    let mut schedules = Vec::new();
    for _ in 0..2 {
        let created: Value = http
            .post(format!("{base}/schedules"))
            .json(&json!({ "cron": "0 3 * * *", "task": { "prompt": "quick" } }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        schedules.push(created["id"].as_str().unwrap().to_owned());
    }
    let mut webhooks = Vec::new();
    for _ in 0..2 {
        let created: Value = http
            .post(format!("{base}/webhooks"))
            .json(
                &json!({ "url": "http://127.0.0.1:9/", "secret": "a-long-random-signing-secret" }),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        webhooks.push(created["id"].as_str().unwrap().to_owned());
    }

    for (method, path) in documented(&doc) {
        let operation = &doc["paths"][&path][method.to_ascii_lowercase()];
        let url = base.clone()
            + &path
                .replace("/tasks/{id}", &format!("/tasks/{task}"))
                .replace("/instances/{id}", &format!("/instances/{instance}"))
                .replace("/workflows/{id}", &format!("/workflows/{workflow}"))
                .replace("/approvals/{id}", &format!("/approvals/{approval}"))
                .replace("/accounts/{name}", "/accounts/default")
                .replace(
                    "/schedules/{id}",
                    &format!("/schedules/{}", schedules[usize::from(method == "DELETE")]),
                )
                .replace(
                    "/webhooks/{id}",
                    &format!("/webhooks/{}", webhooks[usize::from(method == "DELETE")]),
                );
        assert!(!url.contains('{'), "{path}: a path parameter is left");
        let what = format!("{method} {path}");
        assert!(
            operation["summary"].as_str().is_some_and(|s| !s.is_empty())
                && operation["operationId"].is_string(),
            "{what}: a summary and an operationId"
        );

        if path == "/ws/stream" {
            // A real upgrade is switched; a plain GET is a JSON 400, not the fallback.
            let ws_url = url.replacen("http://", "ws://", 1) + "?after=0";
            let (_socket, response) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
            assert_eq!(response.status().as_u16(), 101, "{what}");
            let plain = http.get(&url).send().await.unwrap();
            assert_eq!(plain.status(), StatusCode::BAD_REQUEST, "{what}");
            let body: Value = plain.json().await.unwrap();
            assert_eq!(body["error"]["code"], "bad_request", "{what}: {body}");
            continue;
        }

        let mut request = http.request(method.parse::<Method>().unwrap(), &url);
        if let Some(example) = operation
            .pointer("/requestBody/content/application~1json/example")
            .cloned()
        {
            request = request.json(&example);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let documented_statuses = operation["responses"].as_object().unwrap();
        assert!(
            documented_statuses.contains_key(status.as_str()),
            "{what}: {status} is not a documented response"
        );
        let content_type = response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_owned();
        let documented_type = resolve(&doc, &documented_statuses[status.as_str()])["content"]
            .as_object()
            .map(|c| c.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default();
        assert!(
            documented_type.iter().any(|t| content_type.starts_with(t)),
            "{what}: {content_type} is not among {documented_type:?}"
        );
        if path == "/events" {
            // An endless stream: its head is enough.
            assert_eq!(status, StatusCode::OK, "{what}");
            continue;
        }
        let text = response.text().await.unwrap();
        if content_type.starts_with("application/json") {
            let body: Value = serde_json::from_str(&text).unwrap();
            assert!(!is_fallback(status, &body), "{what}: the fallback answered");
            // The examples in the document are requests that work.
            if method != "DELETE" {
                assert_eq!(status, StatusCode::OK, "{what}: {body}");
            }
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn methods_a_path_does_not_document_are_json_405s() {
    let server = TestServer::start(config(1)).await;
    let base = format!("http://{}", server.addr);
    let http = Client::new();
    let doc = document(&base).await;
    let routes = documented(&doc);
    let paths: BTreeSet<&String> = routes.iter().map(|(_, p)| p).collect();
    for path in paths {
        let url = base.clone() + &path.replace("{id}", "nope");
        let allowed: BTreeSet<&str> = routes
            .iter()
            .filter(|(_, p)| p == path)
            .map(|(m, _)| m.as_str())
            .collect();
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            if allowed.contains(method) {
                continue;
            }
            let response = http
                .request(method.parse().unwrap(), &url)
                .send()
                .await
                .unwrap();
            assert_eq!(
                response.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
            let allow: BTreeSet<String> = response.headers()[header::ALLOW]
                .to_str()
                .unwrap()
                .split(',')
                .map(|m| m.trim().to_owned())
                .filter(|m| m != "HEAD")
                .collect();
            assert_eq!(
                allow,
                allowed.iter().map(|m| m.to_string()).collect(),
                "{method} {path}"
            );
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], "method_not_allowed");
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn the_docs_page_lists_every_route_and_fetches_nothing() {
    let server = TestServer::start(config(1)).await;
    let base = format!("http://{}", server.addr);
    let doc = document(&base).await;
    let response = reqwest::get(format!("{base}/docs")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = response.text().await.unwrap();
    for (method, path) in documented(&doc) {
        let summary = doc["paths"][&path][method.to_ascii_lowercase()]["summary"]
            .as_str()
            .unwrap();
        let row = format!("<td class=\"method\">{method}</td><td><code>{path}</code></td>");
        assert!(page.contains(&row), "{row}");
        assert!(page.contains(summary), "{summary}");
    }
    assert!(!page.contains("<script") && !page.contains("https://"));
    server.stop().await;
}

// ---- schemas against the proto ----------------------------------------------------------

struct Proto {
    messages: BTreeMap<String, DescriptorProto>,
    enums: BTreeMap<String, EnumDescriptorProto>,
}

impl Proto {
    fn load() -> Self {
        let set = FileDescriptorSet::decode(pb::FILE_DESCRIPTOR_SET).unwrap();
        let mut proto = Proto {
            messages: BTreeMap::new(),
            enums: BTreeMap::new(),
        };
        fn add(proto: &mut Proto, scope: &str, message: &DescriptorProto) {
            let name = format!("{scope}.{}", message.name());
            for nested in &message.nested_type {
                add(proto, &name, nested);
            }
            proto.messages.insert(name, message.clone());
        }
        for file in &set.file {
            for message in &file.message_type {
                add(&mut proto, file.package(), message);
            }
            for e in &file.enum_type {
                proto
                    .enums
                    .insert(format!("{}.{}", file.package(), e.name()), e.clone());
            }
        }
        proto
    }
}

/// The schemas a property's values may have: resolved, with arrays and alternatives
/// (`anyOf` of schemas, not of `required` lists) taken apart.
fn element<'a>(doc: &'a Value, schema: &'a Value) -> Vec<&'a Value> {
    let schema = resolve(doc, schema);
    if let Some(items) = schema.get("items") {
        return element(doc, items);
    }
    let alternatives = schema.get("type").is_none() && schema.get("properties").is_none();
    if let Some(options) = schema.get("anyOf").and_then(Value::as_array)
        && alternatives
    {
        return options.iter().flat_map(|o| element(doc, o)).collect();
    }
    vec![schema]
}

#[tokio::test]
async fn schemas_have_every_proto_field_with_its_json_mapping() {
    let server = TestServer::start(config(1)).await;
    let doc = document(&format!("http://{}", server.addr)).await;
    server.stop().await;
    let proto = Proto::load();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let mut messages_seen = BTreeSet::new();
    for (schema_name, schema) in schemas {
        if let Some(enum_name) = schema["x-proto-enum"].as_str() {
            let e = &proto.enums[enum_name];
            let prefix = e.value[0]
                .name()
                .strip_suffix("UNSPECIFIED")
                .expect("value 0 is UNSPECIFIED");
            let words: BTreeSet<String> = e
                .value
                .iter()
                .map(|v| v.name().strip_prefix(prefix).unwrap().to_ascii_lowercase())
                .collect();
            let names: BTreeSet<String> = e.value.iter().map(|v| v.name().to_owned()).collect();
            let listed: BTreeSet<String> = schema["enum"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect();
            for value in &listed {
                assert!(
                    words.contains(value) || names.contains(value),
                    "{schema_name}: {value} is not a value of {enum_name}"
                );
            }
            for v in e.value.iter().filter(|v| v.number() != 0) {
                let word = v.name().strip_prefix(prefix).unwrap().to_ascii_lowercase();
                assert!(listed.contains(&word), "{schema_name} lacks {word}");
            }
        }
        let Some(message_name) = schema["x-proto-message"].as_str() else {
            continue;
        };
        messages_seen.insert(message_name.to_owned());
        let message = &proto.messages[message_name];
        let properties = schema["properties"].as_object().unwrap();
        let fields: BTreeSet<&str> = message.field.iter().map(|f| f.name()).collect();
        let keys: BTreeSet<&str> = properties.keys().map(String::as_str).collect();
        assert_eq!(
            keys, fields,
            "{schema_name}: properties vs {message_name} fields"
        );
        for field in &message.field {
            let what = format!("{schema_name}.{}", field.name());
            let targets = element(&doc, &properties[field.name()]);
            let type_name = field.type_name().trim_start_matches('.');
            match field.r#type() {
                Type::Uint64 | Type::Int64 | Type::Fixed64 | Type::Sint64 | Type::Sfixed64 => {
                    assert!(
                        targets
                            .iter()
                            .all(|t| t["type"] == "string" && t["pattern"] == "^[0-9]+$"),
                        "{what}: 64-bit integers are strings"
                    );
                }
                Type::Enum => assert!(
                    targets
                        .iter()
                        .any(|t| t["x-proto-enum"].as_str() == Some(type_name)),
                    "{what}: the schema of {type_name}"
                ),
                Type::Message
                    if proto.messages[type_name]
                        .options
                        .as_ref()
                        .and_then(|o| o.map_entry)
                        == Some(true) =>
                {
                    assert!(
                        targets.iter().all(|t| t["type"] == "object"),
                        "{what}: a map"
                    );
                }
                Type::Message if type_name == "google.protobuf.Value" => assert!(
                    targets.iter().all(|t| t["x-proto-json-value"] == true),
                    "{what}: any JSON value"
                ),
                Type::Message if type_name == "google.protobuf.Timestamp" => assert!(
                    targets.iter().all(|t| t["format"] == "date-time"),
                    "{what}: a timestamp"
                ),
                Type::Message => assert!(
                    targets
                        .iter()
                        .any(|t| t["x-proto-message"].as_str() == Some(type_name)),
                    "{what}: the schema of {type_name}"
                ),
                Type::String => {
                    assert!(targets.iter().all(|t| t["type"] == "string"), "{what}")
                }
                Type::Bool => {
                    assert!(targets.iter().all(|t| t["type"] == "boolean"), "{what}")
                }
                Type::Uint32 | Type::Int32 | Type::Sint32 | Type::Fixed32 | Type::Sfixed32 => {
                    assert!(targets.iter().all(|t| t["type"] == "integer"), "{what}")
                }
                Type::Double | Type::Float => assert!(
                    targets.iter().any(|t| t["type"] == "number"),
                    "{what}: a number"
                ),
                other => panic!("{what}: {other:?} has no JSON mapping here"),
            }
        }
    }
    // Every message a REST route takes or gives has its schema.
    for message in [
        "TaskSpec",
        "Task",
        "TaskResult",
        "Usage",
        "SubmitTaskRequest",
        "SubmitTaskResponse",
        "SubmitTasksRequest",
        "SubmitTasksResponse",
        "ListTasksResponse",
        "Instance",
        "SpawnInstancesRequest",
        "SpawnInstancesResponse",
        "ListInstancesResponse",
        "ScaleInstancesRequest",
        "ScaleInstancesResponse",
        "Workflow",
        "TaskCounts",
        "ExecuteWorkflowRequest",
        "ExecuteWorkflowResponse",
        "ListWorkflowsResponse",
        "GetStatusResponse",
        "InstanceCounts",
        "QueueDepth",
        "Event",
        "AgentOutput",
        "Approval",
        "ListApprovalsResponse",
        "DecideApprovalRequest",
        "PermissionPolicy",
        "PermissionDenial",
        "Schedule",
        "ListSchedulesResponse",
        "TriggerScheduleResponse",
        "Webhook",
        "ListWebhooksResponse",
        "Delivery",
        "ListDeliveriesResponse",
    ] {
        let name = format!("claude_swarm.v1.{message}");
        assert!(messages_seen.contains(&name), "no schema for {name}");
    }
    // Query parameters carry the request messages' fields.
    for (path, message) in [
        ("/tasks", "ListTasksRequest"),
        ("/events", "StreamEventsRequest"),
        ("/ws/stream", "StreamEventsRequest"),
        ("/approvals", "ListApprovalsRequest"),
    ] {
        let parameters: BTreeSet<&str> = doc["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| resolve(&doc, p)["name"].as_str().unwrap())
            .collect();
        for field in &proto.messages[&format!("claude_swarm.v1.{message}")].field {
            assert!(
                parameters.contains(field.name()),
                "GET {path} lacks the parameter {}",
                field.name()
            );
        }
    }
}
