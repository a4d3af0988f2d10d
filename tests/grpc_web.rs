//! grpc-web as a browser speaks it (HTTP/1.1, `application/grpc-web+proto`), driven by
//! `buf curl` (npm `@bufbuild/buf`, installed into `.tools/buf` by `scripts/setup`), and the
//! CORS preflights browsers send first.

mod common;

use std::{path::PathBuf, process::Stdio, time::Duration};

use common::{TestServer, config};
use reqwest::{Client, Method, StatusCode, header};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
};

/// `buf`; panics with what to do when it is missing.
fn buf() -> PathBuf {
    let path = match std::env::var_os("SWARM_TEST_BUF") {
        Some(path) => PathBuf::from(path),
        None => concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/.tools/buf/node_modules/.bin/buf"
        )
        .into(),
    };
    assert!(
        path.is_file(),
        "buf is not at {}: run scripts/setup (it installs @bufbuild/buf into .tools/buf), \
         or set SWARM_TEST_BUF",
        path.display()
    );
    path
}

/// `buf curl` of one method over grpc-web on HTTP/1.1, with the schema from `proto/`
/// (reflection would need HTTP/2), verbose so the exchange can be checked.
fn buf_curl(server: &TestServer, method: &str, request: &Value, headers: &[&str]) -> Command {
    let mut command = Command::new(buf());
    command
        .args([
            "curl",
            "--verbose",
            "--protocol",
            "grpcweb",
            "--http2-prior-knowledge=false",
            "--schema",
            concat!(env!("CARGO_MANIFEST_DIR"), "/proto"),
            "--data",
            &request.to_string(),
        ])
        .args(headers.iter().flat_map(|h| ["--header", h]))
        .arg(format!("http://{}/claude_swarm.v1.{method}", server.addr))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

struct Answer {
    code: Option<i32>,
    body: Value,
    /// buf's `--verbose` trace of the HTTP exchange.
    trace: String,
}

async fn call(server: &TestServer, method: &str, request: Value, headers: &[&str]) -> Answer {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        buf_curl(server, method, &request, headers).output(),
    )
    .await
    .expect("buf curl answers within 60s")
    .expect("buf runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let trace = String::from_utf8_lossy(&out.stderr).into_owned();
    // The answer is on stdout; an error status is printed as JSON after the trace.
    let text = match stdout.trim() {
        "" => trace.rfind("\n{").map_or("", |at| &trace[at..]),
        answer => answer,
    };
    Answer {
        code: out.status.code(),
        body: serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("{method}: not JSON ({e}): {stdout}\n{trace}")),
        trace,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_and_server_streaming_calls_over_grpc_web() {
    let server = TestServer::start(config(1)).await;

    let submitted = call(
        &server,
        "TaskService/SubmitTask",
        json!({ "task": { "prompt": "via grpc-web sim:cost=0.25", "priority": "PRIORITY_HIGH" } }),
        &[],
    )
    .await;
    assert_eq!(submitted.code, Some(0), "{}", submitted.trace);
    // Really grpc-web on HTTP/1.1, not gRPC on HTTP/2.
    assert!(
        submitted.trace.contains("< (#1) HTTP/1.1 200 OK"),
        "{}",
        submitted.trace
    );
    assert!(
        submitted
            .trace
            .contains("< (#1) Content-Type: application/grpc-web+proto"),
        "{}",
        submitted.trace
    );
    let id = submitted.body["taskId"].as_str().unwrap().to_owned();
    assert_eq!(submitted.body["task"]["priority"], "PRIORITY_HIGH");

    // Server streaming: every retained event of the task, then live ones. A live stream
    // never ends by itself, so read its first message and stop the client.
    let request = json!({
        "after_sequence": "0",
        "task_id": id,
        "kinds": ["EVENT_KIND_TASK_COMPLETED", "EVENT_KIND_TASK_FAILED"],
    });
    let mut child = buf_curl(&server, "EventService/StreamEvents", &request, &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("buf runs");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(60), async {
        // buf prints each message as indented JSON ending with a `}` line of its own.
        let mut text = String::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            text.push_str(&line);
            text.push('\n');
            if line == "}" {
                return serde_json::from_str::<Value>(&text).unwrap();
            }
        }
        panic!("the stream ended before a message: {text}");
    })
    .await
    .expect("the task's event within 60s");
    child.kill().await.unwrap();
    assert_eq!(first["kind"], "EVENT_KIND_TASK_COMPLETED", "{first}");
    assert_eq!(first["taskId"], id.as_str());
    assert!(first["sequence"].as_str().unwrap().parse::<u64>().unwrap() > 0);

    let task = call(
        &server,
        "TaskService/GetTask",
        json!({ "task_id": id }),
        &[],
    )
    .await;
    assert_eq!(task.code, Some(0), "{}", task.trace);
    assert_eq!(task.body["status"], "TASK_STATUS_COMPLETED");
    assert_eq!(task.body["result"]["costUsd"], 0.25);

    // Errors travel as grpc-web trailers: buf exits with the code shifted left by 3.
    let missing = call(
        &server,
        "TaskService/GetTask",
        json!({ "task_id": "nope" }),
        &[],
    )
    .await;
    assert_eq!(
        missing.code,
        Some((tonic::Code::NotFound as i32) << 3),
        "{}",
        missing.trace
    );
    assert_eq!(missing.body["code"], "not_found");

    // A browser page on a loopback origin may read the answer and its grpc-status.
    let from_page = call(
        &server,
        "SwarmService/GetStatus",
        json!({}),
        &["Origin: http://localhost:5173"],
    )
    .await;
    assert_eq!(from_page.code, Some(0), "{}", from_page.trace);
    assert_eq!(from_page.body["agent"], "simulated");
    let trace = from_page.trace.to_ascii_lowercase();
    assert!(
        trace.contains("< (#1) access-control-allow-origin: http://localhost:5173"),
        "{trace}"
    );
    assert!(trace.contains("grpc-status"), "{trace}");
    server.stop().await;
}

#[tokio::test]
async fn cors_preflights_are_allowed_from_loopback_origins_only() {
    let server = TestServer::start(config(1)).await;
    let http = Client::new();
    let preflight = |path: &str, origin: &str, headers: &str| {
        http.request(Method::OPTIONS, format!("http://{}{path}", server.addr))
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, headers)
            .send()
    };
    let grpc_web = "content-type,x-grpc-web,x-user-agent";
    for (path, headers) in [
        ("/claude_swarm.v1.TaskService/SubmitTask", grpc_web),
        ("/tasks", "content-type"),
    ] {
        for origin in [
            "http://localhost:5173",
            "http://127.0.0.1:8080",
            "http://[::1]:3000",
        ] {
            let response = preflight(path, origin, headers).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{origin} {path}");
            let allowed = response.headers();
            assert_eq!(
                allowed[header::ACCESS_CONTROL_ALLOW_ORIGIN],
                origin,
                "{origin} {path}"
            );
            assert!(
                allowed.contains_key(header::ACCESS_CONTROL_ALLOW_METHODS)
                    && allowed.contains_key(header::ACCESS_CONTROL_ALLOW_HEADERS),
                "{origin} {path}: {allowed:?}"
            );
        }
        for origin in [
            "http://evil.example",
            "http://localhost.evil.example",
            "null",
        ] {
            let response = preflight(path, origin, headers).await.unwrap();
            assert!(
                !response
                    .headers()
                    .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN),
                "{origin} {path}: {:?}",
                response.headers()
            );
        }
    }
    server.stop().await;
}
