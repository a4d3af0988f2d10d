//! The REST gateway and the HTTP live streams, driven by real HTTP and WebSocket clients.

mod common;

use claude_swarm::pb;
use common::{TestServer, config};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use tokio_stream::StreamExt;

struct Rest {
    base: String,
    http: Client,
}

impl Rest {
    fn new(server: &TestServer) -> Self {
        Self {
            base: format!("http://{}", server.addr),
            http: Client::new(),
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method.parse().unwrap(), url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text)
                .unwrap_or_else(|_| panic!("{method} {path}: not JSON: {text}")),
        )
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call("GET", path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call("POST", path, Some(body)).await
    }

    /// Polls the way the original service's documented clients do... but by waiting on
    /// the engine's events, then reading the task once.
    async fn finished(&self, server: &TestServer, id: &str) -> Value {
        server.wait(id).await;
        self.get(&format!("/tasks/{id}")).await.1
    }
}

#[tokio::test]
async fn original_service_requests_work_unchanged() {
    let server = TestServer::start(config(2)).await;
    let rest = Rest::new(&server);
    let (status, health) = rest.get("/health").await;
    assert_eq!(
        (status, health["status"].as_str()),
        (StatusCode::OK, Some("healthy"))
    );

    let (status, body) = rest
        .post(
            "/tasks",
            json!({
                "prompt": "Refactor the parser sim:cost=0.2",
                "name": "refactor",
                "working_directory": env!("CARGO_MANIFEST_DIR"),
                "priority": "high",
                "timeout": 60,
                "depends_on": [],
                "metadata": { "ticket": "ABC-1", "attempt": 1 }
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = body["task_id"].as_str().unwrap().to_owned();
    assert_eq!(body["task"]["priority"], "high");
    assert_eq!(body["task"]["metadata"]["attempt"], "1");
    let task = rest.finished(&server, &id).await;
    assert_eq!(task["status"], "completed");
    assert_eq!(task["result"]["cost_usd"], 0.2);
    assert_eq!(task["timeout"], 60.0);

    // The same task through gRPC has the same field values.
    let grpc = server.get(&id).await;
    assert_eq!(
        serde_json::to_value(&grpc).unwrap()["result"],
        task["result"]
    );
    assert_eq!(grpc.name, task["name"]);

    let (status, batch) = rest
        .post(
            "/tasks/batch",
            json!({ "prompts": ["one", "two", "three"], "priority": "low" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{batch}");
    let ids: Vec<String> = batch["task_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().into())
        .collect();
    assert_eq!(ids.len(), 3);
    for id in &ids {
        assert_eq!(rest.finished(&server, id).await["status"], "completed");
    }
    let (_, listed) = rest.get("/tasks?status=completed&limit=2").await;
    assert_eq!(listed["tasks"].as_array().unwrap().len(), 2);
    let token = listed["next_page_token"].as_str().unwrap();
    let (_, rest_page) = rest
        .get(&format!(
            "/tasks?status=completed&limit=10&page_token={token}"
        ))
        .await;
    assert_eq!(rest_page["tasks"].as_array().unwrap().len(), 2);
    let (_, low) = rest.get("/tasks?priority=low").await;
    assert_eq!(low["tasks"].as_array().unwrap().len(), 3);

    let (status, spawned) = rest.post("/instances/spawn", json!({ "count": 2 })).await;
    assert_eq!(status, StatusCode::OK, "{spawned}");
    assert_eq!(spawned["instances"].as_array().unwrap().len(), 2);
    let (_, listed) = rest.get("/instances").await;
    assert_eq!(listed["instances"].as_array().unwrap().len(), 4);
    let first = listed["instances"][0]["id"].as_str().unwrap().to_owned();
    let (_, one) = rest.get(&format!("/instances/{first}")).await;
    assert_eq!(one["status"], "idle");
    let (status, scaled) = rest.post("/instances/scale", json!({ "target": 3 })).await;
    assert_eq!(
        (status, scaled["instances"].as_array().unwrap().len()),
        (StatusCode::OK, 3)
    );
    let (status, gone) = rest
        .call("DELETE", &format!("/instances/{first}"), None)
        .await;
    assert_eq!(
        (status, gone["status"].as_str()),
        (StatusCode::OK, Some("terminated"))
    );

    let (_, status_doc) = rest.get("/status").await;
    assert_eq!(num(&status_doc["tasks"]["completed"]), 4);
    assert_eq!(num(&status_doc["instances"]["total"]), 2);
    server.stop().await;
}

#[tokio::test]
async fn workflows_over_rest() {
    let server = TestServer::start(config(2)).await;
    let rest = Rest::new(&server);
    let (status, by_path) = rest
        .post(
            "/workflows/execute",
            json!({ "workflow_path": "workflows/demo.yaml" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{by_path}");
    let workflow_id = by_path["workflow_id"].as_str().unwrap().to_owned();
    assert_eq!(by_path["workflow"]["status"], "running");

    let yaml = "name: inline\ntasks:\n  - id: a\n    prompt: wait sim:hang\n";
    let response = rest
        .http
        .post(format!("{}/workflows/execute", rest.base))
        .header("content-type", "application/yaml")
        .body(yaml)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let inline: Value = response.json().await.unwrap();
    let inline_id = inline["workflow_id"].as_str().unwrap().to_owned();
    let (status, cancelled) = rest
        .call("DELETE", &format!("/workflows/{inline_id}"), None)
        .await;
    assert_eq!(
        (status, cancelled["status"].as_str()),
        (StatusCode::OK, Some("cancelled"))
    );

    let (_, listed) = rest.get("/workflows").await;
    assert_eq!(listed["workflows"].as_array().unwrap().len(), 2);
    let (_, one) = rest.get(&format!("/workflows/{workflow_id}")).await;
    assert_eq!(one["name"], "demo pipeline");

    let (status, err) = rest
        .post(
            "/workflows/execute",
            json!({ "workflow_path": "../../etc/passwd" }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["error"]["field"], "workflow_path");
    server.stop().await;
}

#[tokio::test]
async fn a_workflow_is_validated_over_rest_without_running_it() {
    let server = TestServer::start(config(1)).await;
    let rest = Rest::new(&server);
    // The original format: 1-based pins, and a docker template claude-swarm leaves alone.
    let yaml = "name: images\ninstances: 2\ntasks:\n  - name: list\n    instance: 2\n    command: docker images --format \"{{ .Repository }}\"\n";
    let response = rest
        .http
        .post(format!("{}/workflows/validate", rest.base))
        .header("content-type", "application/yaml")
        .body(yaml)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let checked: Value = response.json().await.unwrap();
    assert_eq!(checked["name"], "images");
    assert_eq!(checked["task_count"], 1);
    let warning = &checked["warnings"][0];
    assert_eq!(warning["field"], "tasks[0].command", "{checked}");
    assert_eq!(warning["line"], 6, "{checked}");
    // Nothing ran.
    let (_, listed) = rest.get("/workflows").await;
    assert!(
        listed["workflows"].as_array().is_none_or(Vec::is_empty),
        "{listed}"
    );
    // A bad pin is refused naming its field and line, as JSON too.
    let bad =
        "name: images\ninstances: 2\ntasks:\n  - name: list\n    instance: 3\n    prompt: hi\n";
    let (status, err) = rest
        .post("/workflows/validate", json!({ "yaml": bad }))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert_eq!(err["error"]["field"], "tasks[0].instance", "{err}");
    assert!(
        err["error"]["message"].as_str().unwrap().contains("line 5"),
        "{err}"
    );
    server.stop().await;
}

#[tokio::test]
async fn errors_are_json_with_the_right_status_and_field() {
    let server = TestServer::start(config(1)).await;
    let rest = Rest::new(&server);
    let cases = [
        (
            "POST",
            "/tasks",
            Some(json!({ "prompt": "" })),
            StatusCode::BAD_REQUEST,
            Some("prompt"),
        ),
        (
            "POST",
            "/tasks",
            Some(json!({ "prompt": "x", "priority": "urgent" })),
            StatusCode::BAD_REQUEST,
            Some("priority"),
        ),
        (
            "POST",
            "/tasks",
            Some(json!({ "prompt": "x", "timeout": "soon" })),
            StatusCode::BAD_REQUEST,
            Some("timeout"),
        ),
        (
            "POST",
            "/tasks",
            Some(json!({ "prompt": "x", "timeout": -1 })),
            StatusCode::BAD_REQUEST,
            Some("timeout"),
        ),
        (
            "POST",
            "/tasks",
            Some(json!({ "prompt": "x", "depends_on": ["ghost"] })),
            StatusCode::BAD_REQUEST,
            Some("depends_on[0]"),
        ),
        (
            "POST",
            "/tasks/batch",
            Some(json!({ "prompts": "one" })),
            StatusCode::BAD_REQUEST,
            Some("prompts"),
        ),
        (
            "POST",
            "/instances/scale",
            Some(json!({ "target": -2 })),
            StatusCode::BAD_REQUEST,
            Some("target"),
        ),
        (
            "POST",
            "/instances/scale",
            Some(json!({})),
            StatusCode::BAD_REQUEST,
            Some("target"),
        ),
        (
            "POST",
            "/instances/spawn",
            Some(json!({ "count": 0 })),
            StatusCode::BAD_REQUEST,
            Some("count"),
        ),
        ("GET", "/tasks/nope", None, StatusCode::NOT_FOUND, None),
        ("DELETE", "/tasks/nope", None, StatusCode::NOT_FOUND, None),
        ("GET", "/instances/nope", None, StatusCode::NOT_FOUND, None),
        ("GET", "/workflows/nope", None, StatusCode::NOT_FOUND, None),
        (
            "GET",
            "/tasks?status=bogus",
            None,
            StatusCode::BAD_REQUEST,
            Some("status"),
        ),
        (
            "GET",
            "/tasks?limit=many",
            None,
            StatusCode::BAD_REQUEST,
            Some("limit"),
        ),
        ("GET", "/no/such/route", None, StatusCode::NOT_FOUND, None),
    ];
    for (method, path, body, want, field) in cases {
        let (status, err) = rest.call(method, path, body.clone()).await;
        assert_eq!(status, want, "{method} {path} {body:?}: {err}");
        assert!(
            err["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{err}"
        );
        assert_eq!(
            err["error"]["field"].as_str(),
            field,
            "{method} {path}: {err}"
        );
    }
    // Not JSON, wrong content type, too large.
    let url = format!("{}/tasks", rest.base);
    let r = rest
        .http
        .post(&url)
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = rest
        .http
        .post(&url)
        .header("content-type", "text/csv")
        .body("a,b")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let huge = json!({ "prompt": "x".repeat(claude_swarm::api::MAX_REQUEST_BYTES) });
    let r = rest.http.post(&url).json(&huge).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "payload_too_large");

    // A finished task cannot be cancelled: 409, and nothing changed.
    let (_, created) = rest.post("/tasks", json!({ "prompt": "quick" })).await;
    let id = created["task_id"].as_str().unwrap();
    server.wait(id).await;
    let (status, err) = rest.call("DELETE", &format!("/tasks/{id}"), None).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("failed_precondition"))
    );
    server.stop().await;
}

/// A 64-bit number, which the protobuf JSON mapping prints as a string.
fn num(value: &Value) -> u64 {
    value
        .as_u64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("{value}"))
}

/// Collects events until one of `kind` for the workflow arrives.
fn until_finished(events: &[Value]) -> bool {
    events
        .last()
        .is_some_and(|e| e["kind"] == "workflow_finished")
}

#[tokio::test]
async fn websocket_and_sse_deliver_every_event_in_order_and_resume() {
    let server = TestServer::start(config(3)).await;
    let rest = Rest::new(&server);
    let (_, started) = rest
        .post(
            "/workflows/execute",
            json!({ "workflow_path": "workflows/demo.yaml" }),
        )
        .await;
    let workflow_id = started["workflow_id"].as_str().unwrap().to_owned();

    // WebSocket: everything of the workflow from the start.
    let url = format!(
        "ws://{}/ws/stream?workflow_id={workflow_id}&after=0",
        server.addr
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let mut over_ws = Vec::new();
    while !until_finished(&over_ws) {
        let message = ws.next().await.unwrap().unwrap();
        over_ws.push(serde_json::from_str::<Value>(message.to_text().unwrap()).unwrap());
    }
    let sequences: Vec<u64> = over_ws.iter().map(|e| num(&e["sequence"])).collect();
    assert!(sequences.windows(2).all(|w| w[0] < w[1]), "{sequences:?}");
    let completed = over_ws
        .iter()
        .filter(|e| e["kind"] == "task_completed")
        .count();
    assert_eq!(completed, 5);

    // gRPC sees exactly the same events of the workflow.
    let request = pb::StreamEventsRequest {
        after_sequence: Some(0),
        workflow_id: workflow_id.clone(),
        ..Default::default()
    };
    let mut grpc = server
        .events()
        .stream_events(request)
        .await
        .unwrap()
        .into_inner();
    for want in &over_ws {
        assert_eq!(
            grpc.message().await.unwrap().unwrap().sequence,
            num(&want["sequence"])
        );
    }

    // SSE: the same events; then resume from the middle with Last-Event-ID.
    let sse = |last: Option<u64>| {
        let mut request = rest.http.get(format!(
            "{}/events?workflow_id={workflow_id}&after=0",
            rest.base
        ));
        if let Some(last) = last {
            request = rest
                .http
                .get(format!("{}/events?workflow_id={workflow_id}", rest.base))
                .header("Last-Event-ID", last);
        }
        request.send()
    };
    let read_sse = |response: reqwest::Response| async move {
        let mut body = response.bytes_stream();
        let mut buffer = String::new();
        let mut events: Vec<(u64, Value)> = Vec::new();
        while !events
            .last()
            .is_some_and(|(_, e)| e["kind"] == "workflow_finished")
        {
            buffer.push_str(std::str::from_utf8(&body.next().await.unwrap().unwrap()).unwrap());
            while let Some(end) = buffer.find("\n\n") {
                let frame: String = buffer.drain(..end + 2).collect();
                let id = frame
                    .lines()
                    .find_map(|l| l.strip_prefix("id: "))
                    .map(|s| s.parse().unwrap());
                let data = frame.lines().find_map(|l| l.strip_prefix("data: "));
                if let (Some(id), Some(data)) = (id, data) {
                    events.push((id, serde_json::from_str(data).unwrap()));
                }
            }
        }
        events
    };
    let all = read_sse(sse(None).await.unwrap()).await;
    assert_eq!(all.iter().map(|(id, _)| *id).collect::<Vec<_>>(), sequences);
    let middle = sequences[sequences.len() / 2];
    let resumed = read_sse(sse(Some(middle)).await.unwrap()).await;
    let expected: Vec<u64> = sequences.iter().copied().filter(|s| *s > middle).collect();
    assert_eq!(
        resumed.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        expected,
        "no gap, no duplicate"
    );

    let (status, err) = rest.get("/events?kinds=bogus").await;
    assert_eq!(
        (status, err["error"]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("kinds"))
    );
    server.stop().await;
}
