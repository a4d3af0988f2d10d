//! Issue 12, the rest of "safe to expose, safe to lose": TLS on the one port (tonic, curl
//! and the CLI over it, a plaintext client refused), live streams per key, request
//! timeouts, and the audit of every state-changing call (through gRPC, REST and the CLI,
//! kept across a restart). Real servers on 127.0.0.1:0, real clients.

mod common;

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
    time::Duration,
};

use claude_swarm::{
    api::{
        auth::{ApiKey, Keys},
        server::{self, ServerOptions},
        tls,
    },
    engine::Engine,
    pb::{
        self, audit_service_client::AuditServiceClient, event_service_client::EventServiceClient,
        swarm_service_client::SwarmServiceClient, task_service_client::TaskServiceClient,
    },
};
use common::{BIN, TestServer, config, simulated_agent, spec};
use reqwest::{Client, StatusCode};
use tokio::{net::TcpListener, sync::oneshot};
use tokio_stream::StreamExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tonic::{
    Code, Request,
    metadata::MetadataValue,
    transport::{Certificate, Channel, ClientTlsConfig},
};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

// ---- TLS ----------------------------------------------------------------------------------

/// A self-signed certificate for `localhost` and 127.0.0.1, and its key, as PEM files.
fn certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let made =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    (cert, key)
}

/// A server on 127.0.0.1:0 with `options`; stopped when the sender is dropped.
async fn serve(options: ServerOptions) -> (std::net::SocketAddr, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let engine = Engine::start(config(1), Arc::new(simulated_agent()));
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server::serve_with(listener, engine, options, async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

fn curl(args: &[&str]) -> std::process::Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl is installed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_grpc_rest_and_the_cli_and_refuses_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path());
    let options = ServerOptions {
        tls: Some(tls::server_config(&cert, &key).unwrap()),
        ..ServerOptions::default()
    };
    let (addr, _stop) = serve(options).await;
    let port = addr.port();

    // gRPC over TLS (HTTP/2 by ALPN), trusting the test's certificate.
    let pem = std::fs::read(&cert).unwrap();
    let channel = Channel::from_shared(format!("https://localhost:{port}"))
        .unwrap()
        .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let task = common::submit_on(&channel, spec("over tls")).await;
    let done = common::first_event(&channel, &task.id, &[pb::EventKind::TaskCompleted]).await;
    assert_eq!(done.task_id, task.id);
    let status = SwarmServiceClient::new(channel)
        .get_status(pb::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.tasks.unwrap().completed, 1);

    // REST over TLS, as HTTP/1.1 and as HTTP/2.
    let ca = cert.to_str().unwrap();
    for version in ["--http1.1", "--http2"] {
        let url = format!("https://127.0.0.1:{port}/tasks/{}", task.id);
        let out = curl(&["--cacert", ca, version, "-w", "\n%{http_version}", &url]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{version}: {out:?}");
        let (body, http) = stdout.rsplit_once('\n').unwrap();
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["status"], "completed", "{version}");
        assert_eq!(http, if version == "--http2" { "2" } else { "1.1" });
    }
    // A client that does not trust the certificate stops at the handshake.
    let out = curl(&[&format!("https://127.0.0.1:{port}/health")]);
    assert!(
        !out.status.success(),
        "an untrusted certificate was accepted"
    );

    // Plaintext is refused: REST and gRPC alike get no answer.
    let out = curl(&[&format!("http://127.0.0.1:{port}/health")]);
    assert!(
        !out.status.success(),
        "plaintext REST was answered: {out:?}"
    );
    let plain = Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await;
    if let Ok(plain) = plain {
        let answer = SwarmServiceClient::new(plain)
            .get_status(pb::GetStatusRequest {})
            .await;
        assert!(answer.is_err(), "plaintext gRPC was answered");
    }

    // The command line: `https://` with `--ca-cert` (or SWARM_CA_CERT); without it, the
    // certificate is not trusted and it says so.
    let cli = |extra: &[&str]| {
        Command::new(BIN)
            .args(["--server", &format!("https://localhost:{port}")])
            .args(extra)
            .args(["status", "--json"])
            .env_remove("SWARM_CA_CERT")
            .output()
            .unwrap()
    };
    let out = cli(&["--ca-cert", ca]);
    assert!(out.status.success(), "{out:?}");
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["tasks"]["completed"], "1");
    let out = cli(&[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot reach the server") && stderr.to_lowercase().contains("certificate"),
        "{stderr}"
    );
}

#[test]
fn config_check_names_the_tls_setting_at_fault_and_warns_of_a_key_others_read() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path());
    let missing = dir.path().join("missing.pem");
    let check = |args: &[&Path]| {
        let mut command = Command::new(BIN);
        command.args(["config", "check", "--agent", "simulated"]);
        for (flag, path) in ["--tls-cert", "--tls-key"].iter().zip(args) {
            command.arg(flag).arg(path);
        }
        command
            .env_remove("SWARM_TLS_CERT")
            .env_remove("SWARM_TLS_KEY");
        command.output().unwrap()
    };
    let out = check(&[&cert, &key]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("readable by other"));
    for (args, says) in [
        (
            vec![missing.as_path(), key.as_path()],
            "tls_cert: cannot read",
        ),
        (
            vec![cert.as_path(), missing.as_path()],
            "tls_key: cannot read",
        ),
        // A key is not a certificate, nor a certificate a key.
        (vec![key.as_path(), key.as_path()], "tls_cert:"),
        (vec![cert.as_path(), cert.as_path()], "tls_key:"),
        (vec![cert.as_path()], "tls_key: tls_cert is set"),
    ] {
        let out = check(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let out = check(&[&cert, &key]);
    assert_eq!(out.status.code(), Some(0), "a warning, not a refusal");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("readable by other users"), "{stderr}");
}

// ---- streams per key and request timeouts -------------------------------------------------

const READER: &str = "reader-key-0123456789";
const OTHER: &str = "other-key-0123456789";
const BOSS: &str = "boss-key-0123456789";
const CI: &str = "ci-key-0123456789";

fn keys() -> Keys {
    Keys::new(
        [
            format!("reader:read:{READER}"),
            format!("other:read:{OTHER}"),
            format!("boss:admin:{BOSS}"),
            format!("ci:operate:{CI}"),
        ]
        .iter()
        .map(|entry| ApiKey::from_entry(entry).unwrap()),
    )
    .unwrap()
}

fn with_key<T>(message: T, key: &str) -> Request<T> {
    let mut request = Request::new(message);
    let value: MetadataValue<_> = format!("Bearer {key}").parse().unwrap();
    request.metadata_mut().insert("authorization", value);
    request
}

/// Opens an event stream with `key`; the stream, or the status it was refused with.
async fn open_stream(
    channel: &Channel,
    key: &str,
) -> Result<tonic::Streaming<pb::Event>, tonic::Status> {
    EventServiceClient::new(channel.clone())
        .stream_events(with_key(pb::StreamEventsRequest::default(), key))
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_key_holds_at_most_max_streams_over_grpc_sse_and_websocket_together() {
    let options = ServerOptions {
        keys: keys(),
        max_streams_per_key: 2,
        ..ServerOptions::default()
    };
    let server = TestServer::start_with_options(config(1), simulated_agent(), options).await;
    let base = format!("http://{}", server.addr);
    let http = Client::new();
    // One gRPC stream and one SSE stream: the reader's two.
    let grpc = open_stream(&server.channel, READER).await.unwrap();
    let sse = http
        .get(format!("{base}/events"))
        .bearer_auth(READER)
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), StatusCode::OK);

    // A third, on any surface, is refused naming the limit.
    let refused = open_stream(&server.channel, READER).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(
        refused.message().contains("max_streams_per_key")
            && refused.message().contains("\"reader\""),
        "{}",
        refused.message()
    );
    let refused = http
        .get(format!("{base}/events"))
        .bearer_auth(READER)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["field"], "max_streams_per_key", "{body}");
    let mut ws = format!("ws://{}/ws/stream", server.addr)
        .into_client_request()
        .unwrap();
    ws.headers_mut()
        .insert("authorization", format!("Bearer {READER}").parse().unwrap());
    let ws_refused = tokio_tungstenite::connect_async(ws).await.unwrap_err();
    assert!(
        matches!(&ws_refused, tokio_tungstenite::tungstenite::Error::Http(r) if r.status() == 429),
        "{ws_refused:?}"
    );

    // Another key has its own count.
    let other = open_stream(&server.channel, OTHER).await;
    assert!(other.is_ok());

    // A stream that ends frees its place (once the server has seen it go).
    drop(sse);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let reopened = loop {
        match open_stream(&server.channel, READER).await {
            Ok(stream) => break stream,
            Err(status) if status.code() == Code::ResourceExhausted => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the closed stream's place was never freed"
                );
                tokio::task::yield_now().await;
            }
            Err(status) => panic!("{status}"),
        }
    };
    drop((grpc, reopened, other));
    server.stop().await;
}

/// Health is open to all, so its `Watch` streams count by client address, with every other
/// stream of that address: a hostile page or a careless script cannot hold them without end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_watches_count_against_max_streams_per_key_by_address() {
    let options = ServerOptions {
        max_streams_per_key: 2,
        ..ServerOptions::default()
    };
    let server = TestServer::start_with_options(config(1), simulated_agent(), options).await;
    let watch = || async {
        HealthClient::new(server.channel.clone())
            .watch(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map(tonic::Response::into_inner)
    };
    let mut first = watch().await.unwrap();
    let status = first.message().await.unwrap().unwrap();
    assert_eq!(status.status(), ServingStatus::Serving);
    let events = EventServiceClient::new(server.channel.clone())
        .stream_events(pb::StreamEventsRequest::default())
        .await
        .unwrap();

    // A third stream of this address, a watch or an event stream, is refused naming the
    // limit.
    let refused = watch().await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("max_streams_per_key"),
        "{}",
        refused.message()
    );
    let refused = EventServiceClient::new(server.channel.clone())
        .stream_events(pb::StreamEventsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    // A plain health check is no stream: still answered.
    let checked = HealthClient::new(server.channel.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(checked.into_inner().status(), ServingStatus::Serving);

    // A watch that ends frees its place (once the server has seen it go).
    drop(first);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let reopened = loop {
        match watch().await {
            Ok(stream) => break stream,
            Err(status) if status.code() == Code::ResourceExhausted => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the closed watch's place was never freed"
                );
                tokio::task::yield_now().await;
            }
            Err(status) => panic!("{status}"),
        }
    };
    drop((events, reopened));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_not_answered_within_request_timeout_is_cut_and_names_it_but_streams_run_on() {
    let options = ServerOptions {
        request_timeout: Duration::from_millis(300),
        ..ServerOptions::default()
    };
    let server = TestServer::start_with_options(config(1), simulated_agent(), options).await;
    let base = format!("http://{}", server.addr);
    // A body that starts and never ends: REST, then grpc-web.
    let stalled = |first: &[u8]| {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
        tx.try_send(Ok(first.to_vec())).unwrap();
        // Held by the caller, so the body stays open.
        (
            tx,
            reqwest::Body::wrap_stream(tokio_stream::wrappers::ReceiverStream::new(rx)),
        )
    };
    let (_hold, body) = stalled(b"{\"prompt\": ");
    let response = Client::new()
        .post(format!("{base}/tasks"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    let error: serde_json::Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "deadline_exceeded");
    assert_eq!(error["error"]["field"], "request_timeout");
    // A gRPC frame that announces 100 bytes and brings 10.
    let mut frame = vec![0, 0, 0, 0, 100];
    frame.extend_from_slice(&[0x0a; 10]);
    let (_hold, body) = stalled(&frame);
    let response = Client::new()
        .post(format!("{base}/claude_swarm.v1.TaskService/SubmitTask"))
        .header("content-type", "application/grpc-web+proto")
        .body(body)
        .send()
        .await
        .unwrap();
    let code = response.headers()["grpc-status"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(code, (Code::DeadlineExceeded as i32).to_string());
    let message = response.headers()["grpc-message"].to_str().unwrap();
    assert!(message.contains("request_timeout"), "{message}");

    // A stream opened now outlives the timeout: it sees a task that takes longer finish.
    let mut events = server
        .events()
        .stream_events(pb::StreamEventsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let slow = server.submit(spec("slow sim:delay=1500")).await;
    loop {
        let event = events.next().await.expect("the stream runs on").unwrap();
        if event.task_id == slow.id && event.kind == pb::EventKind::TaskCompleted as i32 {
            break;
        }
    }
    server.stop().await;
}

// ---- the audit ------------------------------------------------------------------------------

async fn list_audit(
    channel: &Channel,
    key: &str,
    request: pb::ListAuditRequest,
) -> Result<pb::ListAuditResponse, tonic::Status> {
    AuditServiceClient::new(channel.clone())
        .list_audit(with_key(request, key))
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_state_changing_call_is_audited_with_who_what_ids_and_outcome() {
    let options = ServerOptions {
        keys: keys(),
        ..ServerOptions::default()
    };
    let server = TestServer::start_with_options(config(1), simulated_agent(), options).await;
    let base = format!("http://{}", server.addr);
    let http = Client::new();

    let submitted = TaskServiceClient::new(server.channel.clone())
        .submit_task(with_key(
            pb::SubmitTaskRequest {
                task: Some(spec("audited")),
            },
            CI,
        ))
        .await
        .unwrap()
        .into_inner()
        .task_id;
    // Refused by the service (a shell step needs admin): recorded with its outcome.
    let refused = http
        .post(format!("{base}/tasks"))
        .bearer_auth(CI)
        .json(&serde_json::json!({"command": "true"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let missing = http
        .delete(format!("{base}/tasks/no-such-task"))
        .bearer_auth(CI)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    // Reads are not recorded.
    let read = http
        .get(format!("{base}/tasks"))
        .bearer_auth(READER)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK);

    let page = list_audit(&server.channel, BOSS, pb::ListAuditRequest::default())
        .await
        .unwrap();
    let seen: Vec<(&str, &str, &str, Vec<&str>)> = page
        .records
        .iter()
        .map(|r| {
            (
                r.key.as_str(),
                r.action.as_str(),
                r.outcome.as_str(),
                r.ids.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("ci", "DELETE /tasks/{id}", "404", vec!["no-such-task"]),
            ("ci", "POST /tasks", "403", vec![]),
            (
                "ci",
                "claude_swarm.v1.TaskService/SubmitTask",
                "OK",
                vec![submitted.as_str()]
            ),
        ]
    );
    for record in &page.records {
        assert_eq!(record.client_address, "127.0.0.1");
        assert!(record.time.is_some());
    }
    assert!(page.records[0].sequence > page.records[2].sequence);

    // Only admins read it; reading it is recorded too (it needs more than `read`).
    let denied = list_audit(&server.channel, CI, pb::ListAuditRequest::default())
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let rest = http
        .get(format!("{base}/audit?key=ci&action=POST%20/tasks"))
        .bearer_auth(BOSS)
        .send()
        .await
        .unwrap();
    assert_eq!(rest.status(), StatusCode::OK);
    let rest: serde_json::Value = rest.json().await.unwrap();
    let records = rest["records"].as_array().unwrap();
    assert_eq!(records.len(), 1, "{rest}");
    assert_eq!(records[0]["outcome"], "403");
    let paged = list_audit(
        &server.channel,
        BOSS,
        pb::ListAuditRequest {
            limit: 2,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(paged.records[0].action, "GET /audit");
    assert_eq!(
        paged.records[1].action,
        "claude_swarm.v1.AuditService/ListAudit"
    );
    assert_eq!(paged.records[1].key, "boss");
    assert!(!paged.next_page_token.is_empty());
    // The command line reads it too, with an admin key from the environment.
    let out = Command::new(BIN)
        .args([
            "--server", &base, "audit", "--json", "--key", "ci", "--limit", "2",
        ])
        .env("SWARM_API_KEY", BOSS)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let actions: Vec<&str> = shown["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["DELETE /tasks/{id}", "POST /tasks"]);
    let out = Command::new(BIN)
        .args(["--server", &base, "audit"])
        .env("SWARM_API_KEY", CI)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("PermissionDenied"));
    let bad = http
        .get(format!("{base}/audit?since=yesterday"))
        .bearer_auth(BOSS)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let bad: serde_json::Value = bad.json().await.unwrap();
    assert_eq!(bad["error"]["field"], "since");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_is_kept_in_the_data_directory_across_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let server = common::serve::Served::start(data.path(), &[]).await;
    let task = server.submit(spec("remember me")).await;
    server.terminate();
    let server = common::serve::Served::start(data.path(), &[]).await;
    let page = list_audit(&server.channel, "", pb::ListAuditRequest::default())
        .await
        .unwrap();
    let submit = page
        .records
        .iter()
        .find(|r| r.action == "claude_swarm.v1.TaskService/SubmitTask")
        .expect("the submission is in the audit");
    assert_eq!(submit.ids, std::slice::from_ref(&task.id));
    assert_eq!(submit.key, "anonymous");
    server.terminate();
}
