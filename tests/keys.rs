//! Issue 12, "Safe to expose", the half that asks who is calling: with API keys configured,
//! every route and RPC but health refuses a missing or unknown key (401, UNAUTHENTICATED)
//! and a key whose role is too low (403, PERMISSION_DENIED), and works with its role; shell
//! steps need `admin` and can be switched off; browsers open the event streams with a
//! single-use token. Real server, real clients (reqwest, tonic, tokio-tungstenite, the CLI).

mod common;

use std::{str::FromStr, time::Duration};

use claude_swarm::{
    api::{
        auth::{
            ApiKey, Keys, Role,
            access::{self, Access},
        },
        server::ServerOptions,
    },
    pb,
};
use common::{BIN, TestServer, config, simulated_agent};
use pbjson_types::FileDescriptorSet;
use prost::Message as _;
use reqwest::{Client, Method, RequestBuilder, StatusCode, header};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};
use tonic::{Code, codegen::http::uri::PathAndQuery, transport::Channel};

const WRONG_KEY: &str = "not-a-key-of-this-server";

/// The secret of the test key with `role`.
fn key(role: Role) -> String {
    format!("{role}-key-0123456789abcdef")
}

fn keys() -> Keys {
    Keys::new(
        Role::ALL
            .iter()
            .map(|role| ApiKey::from_entry(&format!("{role}er:{role}:{}", key(*role))).unwrap()),
    )
    .unwrap()
}

fn keyed(allow_commands: bool) -> ServerOptions {
    ServerOptions {
        keys: keys(),
        allow_commands,
        ..ServerOptions::default()
    }
}

async fn start(options: ServerOptions) -> TestServer {
    TestServer::start_with_options(config(2), simulated_agent(), options).await
}

fn base(server: &TestServer) -> String {
    format!("http://{}", server.addr)
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

/// The roles below the one `access` needs.
fn too_low(access: Access) -> Vec<Role> {
    match access {
        Access::Open => Vec::new(),
        Access::Key(needed) => Role::ALL.iter().copied().filter(|r| *r < needed).collect(),
    }
}

fn needed(access: Access) -> Option<Role> {
    match access {
        Access::Open => None,
        Access::Key(role) => Some(role),
    }
}

/// A REST refusal: its status, its error code and field, and (401) its challenge.
async fn refused(response: reqwest::Response, status: StatusCode, field: &str, what: &str) {
    assert_eq!(response.status(), status, "{what}");
    if status == StatusCode::UNAUTHORIZED {
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"claude-swarm\"",
            "{what}"
        );
    }
    let body: Value = response.json().await.unwrap();
    let code = match status {
        StatusCode::UNAUTHORIZED => "unauthenticated",
        _ => "forbidden",
    };
    assert_eq!(body["error"]["code"], code, "{what}: {body}");
    assert_eq!(body["error"]["field"], field, "{what}: {body}");
}

/// A gRPC call to `rpc` with an empty message and `key`, if any: how it ended.
async fn call(
    channel: Channel,
    rpc: &str,
    streaming: (bool, bool),
    key: Option<&str>,
) -> Result<(), tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = PathAndQuery::from_str(&format!("/{rpc}")).unwrap();
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let mut request = tonic::Request::new(());
    if let Some(key) = key {
        request
            .metadata_mut()
            .insert("authorization", bearer(key).parse().unwrap());
    }
    match streaming {
        (false, false) => grpc.unary(request, path, codec).await.map(drop),
        (false, true) => grpc.server_streaming(request, path, codec).await.map(drop),
        (true, _) => {
            let request = request.map(|()| tokio_stream::iter([()]));
            grpc.streaming(request, path, codec).await.map(drop)
        }
    }
}

/// `package.Service/Method` and (client, server) streaming of every method served.
fn every_rpc() -> Vec<(String, (bool, bool))> {
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
                    rpcs.push((
                        format!("{}.{}/{}", file.package(), service.name(), method.name()),
                        (method.client_streaming(), method.server_streaming()),
                    ));
                }
            }
        }
    }
    rpcs
}

/// A gRPC client channel that sends `key` on every call.
fn with_key(
    channel: Channel,
    key: &str,
) -> tonic::service::interceptor::InterceptedService<
    Channel,
    impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + Clone + use<>,
> {
    let value: tonic::metadata::AsciiMetadataValue = bearer(key).parse().unwrap();
    tonic::service::interceptor::InterceptedService::new(
        channel,
        move |mut r: tonic::Request<()>| {
            r.metadata_mut().insert("authorization", value.clone());
            Ok(r)
        },
    )
}

#[tokio::test]
async fn every_route_wants_a_key_of_its_role_and_works_with_one() {
    let server = start(keyed(true)).await;
    let http = Client::new();
    let admin = with_key(server.channel.clone(), &key(Role::Admin));
    let mut tasks = pb::task_service_client::TaskServiceClient::new(admin.clone());
    // A tool call waiting on a person, first, while an instance is free.
    let outside = tempfile::tempdir().unwrap();
    let asking = tasks
        .submit_task(pb::SubmitTaskRequest {
            task: Some(common::spec(&format!(
                "sim:ask={}",
                outside.path().join("marker").display()
            ))),
        })
        .await
        .unwrap()
        .into_inner()
        .task_id;
    let approval = {
        let mut events = pb::event_service_client::EventServiceClient::new(admin.clone());
        let request = pb::StreamEventsRequest {
            after_sequence: Some(0),
            task_id: asking,
            kinds: vec![pb::EventKind::ApprovalRequested as i32],
            ..Default::default()
        };
        let mut stream = events.stream_events(request).await.unwrap().into_inner();
        match stream.message().await.unwrap().unwrap().payload {
            Some(pb::event::Payload::Approval(a)) => a.id,
            other => panic!("an approval: {other:?}"),
        }
    };
    let hanging = tasks
        .submit_task(pb::SubmitTaskRequest {
            task: Some(common::spec("hold on sim:hang")),
        })
        .await
        .unwrap()
        .into_inner()
        .task_id;
    let workflow = pb::workflow_service_client::WorkflowServiceClient::new(admin.clone())
        .execute_workflow(pb::ExecuteWorkflowRequest {
            yaml: "name: held\ntasks:\n  - id: a\n    prompt: hold sim:hang\n".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .workflow_id;
    let instance = pb::instance_service_client::InstanceServiceClient::new(admin.clone())
        .list_instances(pb::ListInstancesRequest {})
        .await
        .unwrap()
        .into_inner()
        .instances[0]
        .id
        .clone();
    // Two schedules: DELETE removes one, the other routes use the one that stays.
    let mut schedules = Vec::new();
    for _ in 0..2 {
        let created = pb::schedule_service_client::ScheduleServiceClient::new(admin.clone())
            .create_schedule(pb::CreateScheduleRequest {
                cron: "0 3 * * *".into(),
                target: Some(pb::create_schedule_request::Target::Task(common::spec("x"))),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        schedules.push(created.id);
    }
    // Two webhooks, for the same reason.
    let mut webhooks = Vec::new();
    for _ in 0..2 {
        let created = pb::webhook_service_client::WebhookServiceClient::new(admin.clone())
            .create_webhook(pb::CreateWebhookRequest {
                url: "http://127.0.0.1:9/hook".into(),
                secret: "a-long-random-signing-secret".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        webhooks.push(created.id);
    }

    let no_key = http.get(format!("{}/openapi.json", base(&server)));
    refused(
        no_key.send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "Authorization",
        "the document",
    )
    .await;
    let doc: Value = http
        .get(format!("{}/openapi.json", base(&server)))
        .header(header::AUTHORIZATION, bearer(&key(Role::Read)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let Ok(method) = method.to_ascii_uppercase().parse::<Method>() else {
                continue;
            };
            if operation.get("responses").is_none() {
                continue;
            }
            checked += 1;
            let what = format!("{method} {path}");
            let access = access::operation(&method, path).access;
            let url = base(&server)
                + &path
                    .replace("/tasks/{id}", &format!("/tasks/{hanging}"))
                    .replace("/instances/{id}", &format!("/instances/{instance}"))
                    .replace("/workflows/{id}", &format!("/workflows/{workflow}"))
                    .replace("/approvals/{id}", &format!("/approvals/{approval}"))
                    .replace(
                        "/schedules/{id}",
                        &format!(
                            "/schedules/{}",
                            schedules[usize::from(method == Method::DELETE)]
                        ),
                    )
                    .replace(
                        "/webhooks/{id}",
                        &format!(
                            "/webhooks/{}",
                            webhooks[usize::from(method == Method::DELETE)]
                        ),
                    );
            let request = |key: Option<&str>| -> RequestBuilder {
                let mut request = http.request(method.clone(), &url);
                if let Some(example) =
                    operation.pointer("/requestBody/content/application~1json/example")
                {
                    request = request.json(example);
                }
                match key {
                    Some(key) => request.header(header::AUTHORIZATION, bearer(key)),
                    None => request,
                }
            };
            // Health, and the dashboard's files (the page asks for a key itself).
            if path == "/health" || path == "/" || path.starts_with("/assets/") {
                assert_eq!(access, Access::Open);
                let response = request(None).send().await.unwrap();
                assert_eq!(response.status(), StatusCode::OK, "{what}");
                continue;
            }
            assert!(
                operation["responses"].get("401").is_some(),
                "{what} documents its 401"
            );
            // What changes anything needs more than `read` (a stream token and a
            // validation are POSTs that change nothing).
            let reads = method == Method::GET
                || path == "/auth/stream-token"
                || path == "/workflows/validate";
            if !reads {
                assert!(too_low(access).contains(&Role::Read), "{what}: {access:?}");
            }
            for key in [None, Some(WRONG_KEY)] {
                let response = request(key).send().await.unwrap();
                refused(response, StatusCode::UNAUTHORIZED, "Authorization", &what).await;
            }
            for role in too_low(access) {
                let response = request(Some(&key(role))).send().await.unwrap();
                let what = format!("{what} as {role}");
                refused(response, StatusCode::FORBIDDEN, "Authorization", &what).await;
            }
            let right = key(needed(access).unwrap());
            if path == "/ws/stream" {
                let mut ws = format!("ws://{}/ws/stream?after=0", server.addr)
                    .into_client_request()
                    .unwrap();
                ws.headers_mut()
                    .insert("authorization", bearer(&right).parse().unwrap());
                let (_socket, response) = tokio_tungstenite::connect_async(ws).await.unwrap();
                assert_eq!(response.status().as_u16(), 101, "{what}");
                continue;
            }
            let response = request(Some(&right)).send().await.unwrap();
            let status = response.status();
            assert!(
                status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                "{what} with its role: {status}"
            );
            if reads {
                assert_eq!(status, StatusCode::OK, "{what}");
            }
        }
    }
    assert!(checked >= 22, "{checked} operations");
    server.stop().await;
}

#[tokio::test]
async fn every_rpc_wants_a_key_of_its_role_and_works_with_one() {
    let server = start(keyed(true)).await;
    let rpcs = every_rpc();
    assert!(rpcs.len() >= 20, "{} methods", rpcs.len());
    let unauthenticated = |outcome: &Result<(), tonic::Status>| matches!(outcome, Err(s) if s.code() == Code::Unauthenticated);
    for (rpc, streaming) in &rpcs {
        let access = access::operation(&Method::POST, &format!("/{rpc}")).access;
        let channel = || server.channel.clone();
        let Some(role) = needed(access) else {
            // Health: probes send no key.
            let outcome = call(channel(), rpc, *streaming, None).await;
            assert!(outcome.is_ok(), "{rpc}: {outcome:?}");
            continue;
        };
        for key in [None, Some(WRONG_KEY)] {
            let outcome = call(channel(), rpc, *streaming, key).await;
            assert!(unauthenticated(&outcome), "{rpc} with {key:?}: {outcome:?}");
        }
        for low in too_low(access) {
            let outcome = call(channel(), rpc, *streaming, Some(&key(low))).await;
            assert!(
                matches!(&outcome, Err(s) if s.code() == Code::PermissionDenied
                    && s.message().contains(&format!("has role {low}"))),
                "{rpc} as {low}: {outcome:?}"
            );
        }
        // An empty message: refused for what it says at most, not for who sends it.
        let outcome = call(channel(), rpc, *streaming, Some(&key(role))).await;
        assert!(
            !matches!(&outcome, Err(s) if matches!(s.code(), Code::Unauthenticated | Code::PermissionDenied)),
            "{rpc} as {role}: {outcome:?}"
        );
    }

    // grpc-web: the same answers, in the grpc-web framing.
    let http = Client::new();
    let status = format!("{}/claude_swarm.v1.SwarmService/GetStatus", base(&server));
    for (key, code) in [(None, "16"), (Some(key(Role::Read)), "0")] {
        let mut request = http
            .post(&status)
            .header(header::CONTENT_TYPE, "application/grpc-web+proto")
            .body(vec![0u8; 5]);
        if let Some(key) = &key {
            request = request.header(header::AUTHORIZATION, bearer(key));
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let in_head = response
            .headers()
            .get("grpc-status")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = response.bytes().await.unwrap();
        let trailer = String::from_utf8_lossy(&body).contains(&format!("grpc-status:{code}"));
        assert!(
            in_head.as_deref() == Some(code) || trailer,
            "{key:?}: {in_head:?}"
        );
    }
    server.stop().await;
}

/// The tasks the server holds, read with an admin key.
async fn task_count(server: &TestServer) -> usize {
    pb::task_service_client::TaskServiceClient::new(with_key(
        server.channel.clone(),
        &key(Role::Admin),
    ))
    .list_tasks(pb::ListTasksRequest::default())
    .await
    .unwrap()
    .into_inner()
    .tasks
    .len()
}

/// Each way a shell step can be asked for: (what, request) with `key`.
fn shell_requests(
    server: &TestServer,
    key: &str,
    marker: &str,
) -> Vec<(&'static str, RequestBuilder)> {
    let http = Client::new();
    let url = |path: &str| format!("{}{path}", base(server));
    let command = format!("touch '{marker}'");
    let yaml = format!("name: shell\ntasks:\n  - id: a\n    command: \"{command}\"\n");
    vec![
        (
            "command",
            http.post(url("/tasks"))
                .json(&json!({ "command": command })),
        ),
        (
            "task.command",
            http.post(url("/tasks"))
                .json(&json!({ "task": { "command": command } })),
        ),
        (
            "tasks[1].command",
            http.post(url("/tasks/batch"))
                .json(&json!({ "tasks": [{ "prompt": "p" }, { "command": command }] })),
        ),
        (
            "tasks[0].command",
            http.post(url("/workflows/execute"))
                .header(header::CONTENT_TYPE, "application/yaml")
                .body(yaml),
        ),
    ]
    .into_iter()
    .map(|(field, request)| (field, request.header(header::AUTHORIZATION, bearer(key))))
    .collect()
}

#[tokio::test]
async fn shell_steps_need_an_admin_key_on_every_surface() {
    let server = start(keyed(true)).await;
    let scratch = tempfile::tempdir().unwrap();
    let marker = scratch.path().join("ran");
    let marker_text = marker.display().to_string();
    for (field, request) in shell_requests(&server, &key(Role::Operate), &marker_text) {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{field}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "forbidden", "{body}");
        assert_eq!(body["error"]["field"], field, "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("needs an admin key") && message.contains("\"operateer\""),
            "{message}"
        );
    }
    let operate = with_key(server.channel.clone(), &key(Role::Operate));
    let status = pb::task_service_client::TaskServiceClient::new(operate.clone())
        .submit_task(pb::SubmitTaskRequest {
            task: Some(pb::TaskSpec {
                command: format!("touch '{marker_text}'"),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().starts_with("task.command:"), "{status:?}");
    let status = pb::workflow_service_client::WorkflowServiceClient::new(operate)
        .execute_workflow(pb::ExecuteWorkflowRequest {
            yaml: format!("name: s\ntasks:\n  - id: a\n    command: \"touch '{marker_text}'\"\n"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(task_count(&server).await, 0);
    assert!(!marker.exists());

    // The same requests with an admin key run.
    for (field, request) in shell_requests(&server, &key(Role::Admin), &marker_text) {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{field}");
    }
    assert_eq!(task_count(&server).await, 5);
    server.stop().await;
}

#[tokio::test]
async fn shell_steps_switched_off_are_refused_naming_the_field() {
    for options in [
        keyed(false),
        ServerOptions {
            allow_commands: false,
            ..ServerOptions::default()
        },
    ] {
        let server = start(options).await;
        let scratch = tempfile::tempdir().unwrap();
        let marker = scratch.path().join("ran");
        for (field, request) in
            shell_requests(&server, &key(Role::Admin), &marker.display().to_string())
        {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{field}");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["field"], field, "{body}");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("switched off on this server (allow_commands: false)"),
                "{body}"
            );
        }
        let status = pb::workflow_service_client::WorkflowServiceClient::new(with_key(
            server.channel.clone(),
            &key(Role::Admin),
        ))
        .validate_workflow(pb::ValidateWorkflowRequest {
            yaml: "name: s\ntasks:\n  - id: a\n    prompt: p\n  - id: b\n    command: ls\n".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains("tasks[1].command"), "{status:?}");
        assert_eq!(task_count(&server).await, 0);
        assert!(!marker.exists());
        server.stop().await;
    }
}

#[tokio::test]
async fn a_stream_token_opens_one_stream() {
    let server = start(keyed(true)).await;
    let http = Client::new();
    let url = format!("{}/auth/stream-token", base(&server));
    let token = |key: &str| {
        http.post(&url)
            .header(header::AUTHORIZATION, bearer(key))
            .send()
    };
    refused(
        http.post(&url).send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "Authorization",
        "a token without a key",
    )
    .await;
    let response = token(&key(Role::Read)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["expires_in"], 60);
    let sse_token = body["token"].as_str().unwrap().to_owned();

    // The route never sees `token` (it refuses parameters it does not know).
    let events = |token: &str| {
        http.get(format!(
            "{}/events?after=0&token={token}&kinds=task_completed",
            base(&server)
        ))
        .send()
    };
    let response = events(&sse_token).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    for bad in [sse_token.as_str(), "made-up"] {
        let response = events(bad).await.unwrap();
        refused(response, StatusCode::UNAUTHORIZED, "token", "a used token").await;
    }

    let body: Value = token(&key(Role::Read)).await.unwrap().json().await.unwrap();
    let ws_token = body["token"].as_str().unwrap().to_owned();
    let ws_url = format!("ws://{}/ws/stream?token={ws_token}&after=0", server.addr);
    let (_socket, response) = tokio_tungstenite::connect_async(ws_url.as_str())
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 101);
    match tokio_tungstenite::connect_async(ws_url.as_str()).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status().as_u16(), 401),
        other => panic!("a used token opened a second WebSocket: {other:?}"),
    }
    // A token is for the streams only.
    let status = http
        .get(format!("{}/status?token={ws_token}", base(&server)))
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), StatusCode::UNAUTHORIZED);
    server.stop().await;
}

#[tokio::test]
async fn a_page_on_an_allowed_origin_may_send_its_key() {
    let server = start(keyed(true)).await;
    let response = Client::new()
        .request(Method::OPTIONS, format!("{}/tasks", base(&server)))
        .header(header::ORIGIN, "http://localhost:5173")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let allowed = response.headers()[header::ACCESS_CONTROL_ALLOW_HEADERS]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(allowed.contains("authorization"), "{allowed}");
    server.stop().await;
}

/// Runs the binary with `args` (and no `SWARM_API_KEYS` from outside), bounded in time.
async fn run(args: &[&str], stdin: Option<&str>) -> std::process::Output {
    use tokio::io::AsyncWriteExt;
    let mut command = tokio::process::Command::new(BIN);
    command
        .args(args)
        .env_remove("SWARM_API_KEYS")
        .env_remove("SWARM_API_KEY")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).await.unwrap();
    }
    drop(input);
    tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("the command ended")
        .unwrap()
}

#[tokio::test]
async fn serve_refuses_to_listen_beyond_loopback_without_a_key() {
    let out = run(
        &[
            "serve",
            "--agent",
            "simulated",
            "--in-memory",
            "--listen",
            "0.0.0.0:0",
        ],
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("0.0.0.0:0 is not a loopback address")
            && stderr.contains("claude-swarm key new")
            && stderr.contains("--insecure"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_new_key_works_from_the_command_line() {
    let out = run(
        &["key", "new", "--name", "ci", "--role", "operate", "--json"],
        None,
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let made: Value = serde_json::from_slice(&out.stdout).unwrap();
    let secret = made["key"].as_str().unwrap();
    let sha256 = made["sha256"].as_str().unwrap();
    let hashed = run(&["key", "hash"], Some(&format!("{secret}\n"))).await;
    assert_eq!(String::from_utf8_lossy(&hashed.stdout).trim(), sha256);
    let out = run(&["key", "new", "--name", "ci", "--role", "root"], None).await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("role \"root\""));

    let options = ServerOptions {
        keys: Keys::new([ApiKey::hashed("ci", "operate", sha256).unwrap()]).unwrap(),
        ..ServerOptions::default()
    };
    let server = start(options).await;
    let address = base(&server);
    let status = ["status", "--json", "--server", &address];
    let out = run(&[&status[..], &["--api-key", secret]].concat(), None).await;
    assert!(out.status.success(), "{out:?}");
    let out = run(&status, None).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Unauthenticated"),
        "{out:?}"
    );
    server.stop().await;
}
