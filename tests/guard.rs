//! Issue 12, "Safe to expose", the browser-facing half: a web page the user visits must not
//! be able to drive the server on 127.0.0.1. Every route and RPC refuses a foreign `Host`
//! (DNS rebinding); state-changing calls and the event streams refuse a foreign `Origin`;
//! bodies a browser may send without a CORS preflight (`text/plain`, forms, no type) are
//! refused. Real server, real clients (reqwest, tonic, tokio-tungstenite, curl).

mod common;

use std::{collections::BTreeSet, path::Path, str::FromStr};

use claude_swarm::{api::server::ServerOptions, pb};
use common::{TestServer, config, simulated_agent};
use pbjson_types::FileDescriptorSet;
use prost::Message as _;
use reqwest::{Client, Method, StatusCode, header};
use serde_json::{Value, json};
use tokio::process::Command;
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};
use tonic::{
    Code,
    codegen::http::uri::PathAndQuery,
    transport::{Channel, Endpoint},
};

const EVIL_HOST: &str = "evil.example.com";
const EVIL_ORIGIN: &str = "http://evil.example";

fn base(server: &TestServer) -> String {
    format!("http://{}", server.addr)
}

/// The JSON error body of a refusal, checked to name `field` and to mention `value`.
async fn refusal(response: reqwest::Response, status: StatusCode, field: &str, value: &str) {
    let what = format!("{} {}", response.status(), response.url());
    assert_eq!(response.status(), status, "{what}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["field"], field, "{what}: {body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(value), "{what}: {message}");
}

/// A channel whose requests name `authority` in `:authority`, as a DNS-rebound page's would.
async fn channel_as(server: &TestServer, authority: &str) -> Channel {
    Endpoint::from_shared(base(server))
        .unwrap()
        .origin(format!("http://{authority}").parse().unwrap())
        .connect()
        .await
        .unwrap()
}

/// One RPC the server serves: its path and whether the client streams.
struct Rpc {
    path: String,
    client_streaming: bool,
    server_streaming: bool,
}

/// Every method of every service in the server's descriptor sets: the API, health and
/// both reflection versions.
fn every_rpc() -> Vec<Rpc> {
    let sets = [
        pb::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ];
    let mut rpcs = Vec::new();
    for set in sets {
        for file in FileDescriptorSet::decode(set).unwrap().file {
            for service in &file.service {
                for method in &service.method {
                    rpcs.push(Rpc {
                        path: format!("/{}.{}/{}", file.package(), service.name(), method.name()),
                        client_streaming: method.client_streaming(),
                        server_streaming: method.server_streaming(),
                    });
                }
            }
        }
    }
    rpcs
}

/// Calls `rpc` with an empty message (and `origin`, if any); the status it ends with.
async fn call(channel: Channel, rpc: &Rpc, origin: Option<&str>) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = PathAndQuery::from_str(&rpc.path).unwrap();
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let mut request = tonic::Request::new(());
    if let Some(origin) = origin {
        request
            .metadata_mut()
            .insert("origin", origin.parse().unwrap());
    }
    let outcome = match (rpc.client_streaming, rpc.server_streaming) {
        (false, false) => grpc.unary(request, path, codec).await.map(drop),
        (false, true) => grpc.server_streaming(request, path, codec).await.map(drop),
        (true, _) => {
            let request = request.map(|()| tokio_stream::iter([()]));
            grpc.streaming(request, path, codec).await.map(drop)
        }
    };
    outcome.expect_err(&rpc.path)
}

/// (method, path, operation) of every operation in the served OpenAPI document.
async fn documented_operations(server: &TestServer) -> Vec<(Method, String, Value)> {
    let doc: Value = reqwest::get(format!("{}/openapi.json", base(server)))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut operations = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if let Ok(method) = method.to_ascii_uppercase().parse::<Method>()
                && operation.get("responses").is_some()
            {
                operations.push((method, path.clone(), operation.clone()));
            }
        }
    }
    operations
}

/// A live event stream: switched to a WebSocket or answered as Server-Sent Events.
fn is_stream(operation: &Value) -> bool {
    let responses = operation["responses"].as_object().unwrap();
    responses.contains_key("101")
        || responses
            .values()
            .any(|r| r.pointer("/content/text~1event-stream").is_some())
}

#[tokio::test]
async fn every_route_and_rpc_refuses_a_foreign_host_and_every_call_that_acts_a_foreign_origin() {
    let server = TestServer::start(config(2)).await;
    let http = Client::new();
    // Real ids, and a task and a workflow that would still be running if a refused call
    // got through to cancel them.
    let hanging = server.submit(common::spec("hold on sim:hang")).await.id;
    let workflow = server
        .workflows()
        .execute_workflow(pb::ExecuteWorkflowRequest {
            yaml: "name: held\ntasks:\n  - id: a\n    prompt: hold sim:hang\n".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .workflow_id;
    let instances = || async {
        let list = server
            .instances()
            .list_instances(pb::ListInstancesRequest {})
            .await
            .unwrap()
            .into_inner();
        list.instances
            .into_iter()
            .map(|i| i.id)
            .collect::<BTreeSet<_>>()
    };
    let before = instances().await;
    let instance = before.first().unwrap().clone();

    let operations = documented_operations(&server).await;
    assert!(operations.len() >= 20, "{} operations", operations.len());
    let mut origin_checked = 0;
    for (method, path, operation) in &operations {
        let url = base(&server)
            + &path
                .replace("/tasks/{id}", &format!("/tasks/{hanging}"))
                .replace("/instances/{id}", &format!("/instances/{instance}"))
                .replace("/workflows/{id}", &format!("/workflows/{workflow}"));
        // The documented example: a request that works when it is let through.
        let request = || {
            let request = http.request(method.clone(), &url);
            match operation.pointer("/requestBody/content/application~1json/example") {
                Some(example) => request.json(example),
                None => request,
            }
        };
        let foreign_host = request()
            .header(header::HOST, EVIL_HOST)
            .send()
            .await
            .unwrap();
        refusal(
            foreign_host,
            StatusCode::MISDIRECTED_REQUEST,
            "Host",
            EVIL_HOST,
        )
        .await;
        let documented = |status: &str| operation["responses"].get(status).is_some();
        assert!(documented("421"), "{method} {path} documents its 421");
        if method != Method::GET || is_stream(operation) {
            assert!(documented("403"), "{method} {path} documents its 403");
            origin_checked += 1;
            let foreign_origin = request()
                .header(header::ORIGIN, EVIL_ORIGIN)
                .send()
                .await
                .unwrap();
            refusal(foreign_origin, StatusCode::FORBIDDEN, "Origin", EVIL_ORIGIN).await;
        }
    }
    // Eleven POST or DELETE operations (a stream token's issue, a workflow's validation
    // and an approval's decision among them), the one that lifts an account's pause, the
    // five that change schedules, the two that change webhooks, and the two event streams.
    assert_eq!(origin_checked, 21);

    // gRPC over HTTP/2 (a foreign `:authority`, or a foreign `Origin`) and grpc-web.
    let rpcs = every_rpc();
    assert!(rpcs.len() >= 20, "{} methods", rpcs.len());
    let rebound = channel_as(&server, &format!("{EVIL_HOST}:{}", server.addr.port())).await;
    for rpc in &rpcs {
        let status = call(rebound.clone(), rpc, None).await;
        assert_eq!(
            status.code(),
            Code::PermissionDenied,
            "{}: {status:?}",
            rpc.path
        );
        assert!(status.message().contains(EVIL_HOST), "{status:?}");
        let status = call(server.channel.clone(), rpc, Some(EVIL_ORIGIN)).await;
        assert_eq!(
            status.code(),
            Code::PermissionDenied,
            "{}: {status:?}",
            rpc.path
        );
        assert!(status.message().contains(EVIL_ORIGIN), "{status:?}");
        for (name, value) in [(header::HOST, EVIL_HOST), (header::ORIGIN, EVIL_ORIGIN)] {
            let response = http
                .post(format!("{}{}", base(&server), rpc.path))
                .header(header::CONTENT_TYPE, "application/grpc-web+proto")
                .header(name.clone(), value)
                .body(vec![0u8; 5])
                .send()
                .await
                .unwrap();
            let headers = response.headers();
            assert_eq!(
                (response.status(), headers["grpc-status"].to_str().unwrap()),
                (StatusCode::OK, "7"),
                "grpc-web {} with {name}: {value}",
                rpc.path
            );
            assert_eq!(
                headers[header::CONTENT_TYPE],
                "application/grpc-web+proto",
                "{}",
                rpc.path
            );
        }
    }

    // Nothing any refused call asked for happened.
    assert_eq!(instances().await, before);
    let tasks = server
        .tasks()
        .list_tasks(pb::ListTasksRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tasks;
    assert_eq!(tasks.len(), 2, "{tasks:?}");
    assert!(
        tasks
            .iter()
            .all(|t| common::status(t) == pb::TaskStatus::Running),
        "{tasks:?}"
    );
    let workflows = server
        .workflows()
        .list_workflows(pb::ListWorkflowsRequest {})
        .await
        .unwrap()
        .into_inner()
        .workflows;
    assert_eq!(workflows.len(), 1);
    assert_eq!(workflows[0].status, pb::WorkflowStatus::Running as i32);
    server.stop().await;
}

/// Lists the server's tasks and workflows: both empty when nothing was submitted.
async fn nothing_submitted(server: &TestServer) {
    let tasks = server
        .tasks()
        .list_tasks(pb::ListTasksRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tasks;
    assert!(tasks.is_empty(), "{tasks:?}");
    let workflows = server
        .workflows()
        .list_workflows(pb::ListWorkflowsRequest {})
        .await
        .unwrap()
        .into_inner()
        .workflows;
    assert!(workflows.is_empty(), "{workflows:?}");
}

/// The content types a page may send cross-site without a preflight, and none at all.
const SIMPLE_TYPES: [Option<&str>; 5] = [
    Some("text/plain"),
    Some("text/plain; charset=UTF-8"),
    Some("application/x-www-form-urlencoded"),
    Some("multipart/form-data; boundary=x"),
    None,
];

fn touch(marker: &Path) -> String {
    format!("touch '{}'", marker.display())
}

#[tokio::test]
async fn a_workflow_a_page_can_post_without_a_preflight_is_refused_and_does_not_run() {
    let server = TestServer::start(config(1)).await;
    let scratch = tempfile::tempdir().unwrap();
    let marker = scratch.path().join("ran");
    let yaml = format!(
        "name: drive-by\ntasks:\n  - id: a\n    command: \"{}\"\n",
        touch(&marker)
    );
    let http = Client::new();
    let url = format!("{}/workflows/execute", base(&server));
    for kind in SIMPLE_TYPES {
        let mut request = http.post(&url).body(yaml.clone());
        if let Some(kind) = kind {
            request = request.header(header::CONTENT_TYPE, kind);
        }
        let response = request.send().await.unwrap();
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unsupported_media_type", "{kind:?}");
        assert_eq!(body["error"]["field"], "Content-Type", "{kind:?}");
        let message = body["error"]["message"].as_str().unwrap();
        for accepted in ["application/json", "application/yaml", "application/x-yaml"] {
            assert!(message.contains(accepted), "{kind:?}: {message}");
        }
    }
    nothing_submitted(&server).await;
    assert!(!marker.exists());

    // The same workflow as YAML is accepted and its command runs: the checks above would
    // have seen a run.
    for kind in ["application/yaml", "application/x-yaml"] {
        let response = http
            .post(&url)
            .header(header::CONTENT_TYPE, kind)
            .body(yaml.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{kind}");
        let body: Value = response.json().await.unwrap();
        let task = body["workflow"]["task_ids"][0].as_str().unwrap();
        assert_eq!(
            common::status(&server.wait(task).await),
            pb::TaskStatus::Completed
        );
    }
    assert!(marker.exists());
    server.stop().await;
}

#[tokio::test]
async fn a_task_without_a_json_content_type_is_refused_and_does_not_run() {
    let server = TestServer::start(config(1)).await;
    let scratch = tempfile::tempdir().unwrap();
    let marker = scratch.path().join("ran");
    let task = json!({ "command": touch(&marker) });
    let http = Client::new();
    let url = format!("{}/tasks", base(&server));
    for kind in SIMPLE_TYPES {
        let mut request = http.post(&url).body(task.to_string());
        if let Some(kind) = kind {
            request = request.header(header::CONTENT_TYPE, kind);
        }
        let response = request.send().await.unwrap();
        let found = kind.map_or("no Content-Type".to_owned(), |k| {
            k.split(';').next().unwrap().to_owned()
        });
        assert_eq!(
            response.status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{kind:?}"
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["field"], "Content-Type");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("application/json") && message.contains(&found),
            "{message}"
        );
    }
    nothing_submitted(&server).await;
    assert!(!marker.exists());

    let response = http.post(&url).json(&task).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let id = body["task_id"].as_str().unwrap();
    assert_eq!(
        common::status(&server.wait(id).await),
        pb::TaskStatus::Completed
    );
    assert!(marker.exists());
    server.stop().await;
}

#[tokio::test]
async fn a_grpc_route_takes_only_grpc_so_a_page_cannot_post_a_frame_as_text() {
    let server = TestServer::start(config(1)).await;
    let scratch = tempfile::tempdir().unwrap();
    let marker = scratch.path().join("ran");
    let request = pb::SubmitTaskRequest {
        task: Some(pb::TaskSpec {
            command: touch(&marker),
            ..Default::default()
        }),
    };
    // A gRPC frame: no compression, the length, the message.
    let message = request.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    let http = Client::new();
    for kind in SIMPLE_TYPES {
        let mut request = http
            .post(format!(
                "{}/claude_swarm.v1.TaskService/SubmitTask",
                base(&server)
            ))
            .body(frame.clone());
        if let Some(kind) = kind {
            request = request.header(header::CONTENT_TYPE, kind);
        }
        let response = request.send().await.unwrap();
        refusal(
            response,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type",
            "application/grpc",
        )
        .await;
    }
    nothing_submitted(&server).await;
    assert!(!marker.exists());
    server.stop().await;
}

#[tokio::test]
async fn the_event_streams_refuse_foreign_origins() {
    let server = TestServer::start(config(1)).await;
    let ws_url = format!("ws://{}/ws/stream?after=0", server.addr);
    let with_origin = |origin: &str| {
        let mut request = ws_url.as_str().into_client_request().unwrap();
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
        request
    };
    for origin in [EVIL_ORIGIN, "null", "http://localhost.evil.example"] {
        match tokio_tungstenite::connect_async(with_origin(origin)).await {
            Err(tungstenite::Error::Http(response)) => {
                assert_eq!(response.status().as_u16(), 403, "{origin}");
                let body = String::from_utf8(response.body().clone().unwrap()).unwrap();
                assert!(body.contains("Origin") && body.contains(origin), "{body}");
            }
            other => panic!("{origin}: the WebSocket was not refused: {other:?}"),
        }
        let sse = Client::new()
            .get(format!("{}/events?after=0", base(&server)))
            .header(header::ORIGIN, origin)
            .send()
            .await
            .unwrap();
        refusal(sse, StatusCode::FORBIDDEN, "Origin", origin).await;
    }
    // Loopback pages, and clients that send no Origin, are served.
    let (_socket, response) =
        tokio_tungstenite::connect_async(with_origin("http://localhost:5173"))
            .await
            .unwrap();
    assert_eq!(response.status().as_u16(), 101);
    let (_socket, response) = tokio_tungstenite::connect_async(ws_url.as_str())
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 101);
    let sse = Client::new()
        .get(format!("{}/events?after=0", base(&server)))
        .header(header::ORIGIN, "http://127.0.0.1:3000")
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), StatusCode::OK);
    assert_eq!(sse.headers()[header::CONTENT_TYPE], "text/event-stream");
    server.stop().await;
}

#[tokio::test]
async fn a_foreign_host_is_misdirected_on_every_protocol() {
    let server = TestServer::start(config(1)).await;
    let port = server.addr.port();
    let http = Client::new();
    let health = |host: String| {
        http.get(format!("{}/health", base(&server)))
            .header(header::HOST, host)
            .send()
    };
    for host in [
        format!("{EVIL_HOST}:{port}"),
        EVIL_HOST.to_owned(),
        format!("localhost.{EVIL_HOST}:{port}"),
        format!("127.0.0.1.{EVIL_HOST}"),
        format!("[::2]:{port}"),
        "10.0.0.1".to_owned(),
    ] {
        refusal(
            health(host.clone()).await.unwrap(),
            StatusCode::MISDIRECTED_REQUEST,
            "Host",
            &host,
        )
        .await;
    }
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "LOCALHOST".to_owned(),
        "localhost.".to_owned(),
        "127.8.9.10:1".to_owned(),
        format!("[::1]:{port}"),
    ] {
        let response = health(host.clone()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{host}");
    }

    let mut request = format!("ws://{}/ws/stream", server.addr)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("host", EVIL_HOST.parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status().as_u16(), 421),
        other => panic!("the WebSocket was not refused: {other:?}"),
    }

    let rebound = channel_as(&server, &format!("{EVIL_HOST}:{port}")).await;
    let status = pb::task_service_client::TaskServiceClient::new(rebound)
        .submit_task(pb::SubmitTaskRequest {
            task: Some(common::spec("from a rebound page")),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains(EVIL_HOST), "{status:?}");
    nothing_submitted(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn configured_hosts_and_origins_are_served() {
    let options = ServerOptions {
        allowed_hosts: vec!["Swarm.Example.com".into(), "proxy.example:8443".into()],
        cors_origins: vec!["https://dash.example".into()],
        ..ServerOptions::default()
    };
    let server = TestServer::start_with_options(config(1), simulated_agent(), options).await;
    let port = server.addr.port();
    let http = Client::new();
    let get = |host: &str| {
        http.get(format!("{}/health", base(&server)))
            .header(header::HOST, host)
            .send()
    };
    for host in [
        "swarm.example.com",
        &format!("swarm.example.com:{port}"),
        "SWARM.EXAMPLE.COM.:1",
        "proxy.example:8443",
    ] {
        assert_eq!(get(host).await.unwrap().status(), StatusCode::OK, "{host}");
    }
    for host in ["proxy.example", "proxy.example:9000", "example.com"] {
        refusal(
            get(host).await.unwrap(),
            StatusCode::MISDIRECTED_REQUEST,
            "Host",
            host,
        )
        .await;
    }

    let post = |host: String, origin: &str| {
        http.post(format!("{}/tasks", base(&server)))
            .header(header::HOST, host)
            .header(header::ORIGIN, origin)
            .json(&json!({ "prompt": "from a page" }))
            .send()
    };
    // A page served under an allowed host calling its own origin, and a configured origin.
    let own = format!("swarm.example.com:{port}");
    let response = post(own.clone(), &format!("http://{own}")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = post(format!("127.0.0.1:{port}"), "https://dash.example")
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://dash.example"
    );
    // An allowed host is not an allowed origin for another host.
    let response = post(format!("127.0.0.1:{port}"), &format!("http://{own}"))
        .await
        .unwrap();
    refusal(response, StatusCode::FORBIDDEN, "Origin", &own).await;
    server.stop().await;
}

/// `curl` as the README uses it: `Host: 127.0.0.1:PORT` (or `localhost:PORT`), JSON
/// declared on every body.
#[tokio::test]
async fn curl_as_documented_passes() {
    let server = TestServer::start(config(1)).await;
    let port = server.addr.port();
    let curl = |args: &[&str]| {
        let mut command = Command::new("curl");
        command
            .args(["--silent", "--show-error", "--verbose"])
            .args(args);
        command.output()
    };
    let out = curl(&[&format!("{}/health", base(&server))]).await.unwrap();
    assert!(out.status.success());
    let trace = String::from_utf8_lossy(&out.stderr);
    assert!(
        trace.contains(&format!("> Host: 127.0.0.1:{port}")),
        "{trace}"
    );

    let out = curl(&[
        &format!("localhost:{port}/tasks"),
        "-H",
        "content-type: application/json",
        "-d",
        r#"{"prompt": "via curl"}"#,
    ])
    .await
    .unwrap();
    let trace = String::from_utf8_lossy(&out.stderr);
    assert!(
        trace.contains(&format!("> Host: localhost:{port}")),
        "{trace}"
    );
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = created["task_id"].as_str().unwrap().to_owned();
    server.wait(&id).await;
    let out = curl(&["-X", "DELETE", &format!("localhost:{port}/tasks/{id}")])
        .await
        .unwrap();
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    // The task finished already: the cancel got as far as the engine.
    assert_eq!(answer["error"]["code"], "failed_precondition", "{answer}");

    // `-d` without a type sends a form: refused, and the answer says what to send.
    let out = curl(&[
        &format!("localhost:{port}/tasks"),
        "-d",
        r#"{"prompt": "via curl"}"#,
    ])
    .await
    .unwrap();
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        answer["error"]["code"], "unsupported_media_type",
        "{answer}"
    );
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("application/x-www-form-urlencoded"),
        "{answer}"
    );
    server.stop().await;
}
