//! Limits that agree across surfaces: one request size for REST and gRPC, requests tonic
//! cannot decode answered as the caller's mistake, the bound on unfinished tasks, and the
//! rate each key (or client address) may call at.

mod common;

use std::num::NonZeroU32;

use claude_swarm::{
    api::{
        MAX_REQUEST_BYTES,
        auth::{ApiKey, Keys},
        rate_limit::RateLimit,
        server::ServerOptions,
    },
    engine::{EngineConfig, workflow::MAX_DOCUMENT_BYTES},
    pb,
};
use common::{TestServer, config, simulated_agent, spec};
use prost::bytes::{Buf, BufMut};
use reqwest::{Client, StatusCode, header};
use serde_json::{Value, json};
use tonic::{
    Code,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    transport::Channel,
};

/// A workflow document of exactly `size` bytes: one quick task, padded with a comment.
fn document(size: usize) -> String {
    let head = "name: big\ntasks:\n  - id: a\n    prompt: hi\n# ";
    let mut doc = head.to_owned();
    doc.push_str(&"x".repeat(size - head.len() - 1));
    doc.push('\n');
    assert_eq!(doc.len(), size);
    doc
}

#[tokio::test]
async fn the_largest_workflow_document_is_taken_on_every_surface_and_a_larger_request_is_refused() {
    let server = TestServer::start(config(1)).await;
    let doc = document(MAX_DOCUMENT_BYTES);
    let http = Client::new();
    let url = format!("http://{}/workflows/execute", server.addr);
    // As a YAML body, as JSON text, and as a gRPC message.
    let yaml = http
        .post(&url)
        .header(header::CONTENT_TYPE, "application/yaml")
        .body(doc.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(yaml.status(), StatusCode::OK);
    let json = http
        .post(&url)
        .json(&json!({ "yaml": doc }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        json.status(),
        StatusCode::OK,
        "{}",
        json.text().await.unwrap()
    );
    server
        .workflows()
        .execute_workflow(pb::ExecuteWorkflowRequest {
            yaml: doc,
            ..Default::default()
        })
        .await
        .expect("a 4 MiB document over gRPC");

    let over = "y".repeat(MAX_REQUEST_BYTES + 1);
    let refused = http
        .post(&url)
        .header(header::CONTENT_TYPE, "application/yaml")
        .body(over.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "payload_too_large");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&MAX_REQUEST_BYTES.to_string()),
        "{body}"
    );
    let err = server
        .workflows()
        .execute_workflow(pb::ExecuteWorkflowRequest {
            yaml: over,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message().contains(&MAX_REQUEST_BYTES.to_string()),
        "{err:?}"
    );
    server.stop().await;
}

/// Sends bytes as they are: a message tonic's own codec would never write.
#[derive(Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;

    fn encoder(&mut self) -> Raw {
        Raw
    }

    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, buf: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        buf.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        Ok(Some(buf.copy_to_bytes(buf.remaining()).to_vec()))
    }
}

async fn submit_raw(channel: &Channel, message: Vec<u8>) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    let path = "/claude_swarm.v1.TaskService/SubmitTask".parse().unwrap();
    grpc.unary(tonic::Request::new(message), path, Raw)
        .await
        .expect_err("refused")
}

#[tokio::test]
async fn a_request_that_does_not_decode_is_the_callers_mistake_not_an_internal_error() {
    let server = TestServer::start(config(1)).await;
    // SubmitTaskRequest { task: TaskSpec { prompt: <bytes> } }, field 1 in field 1.
    let not_utf8 = vec![0x0a, 0x04, 0x0a, 0x02, 0xff, 0xfe];
    let cut_short = vec![0x0a, 0x10, 0x0a];
    for (what, message) in [("not UTF-8", not_utf8), ("cut short", cut_short)] {
        let status = submit_raw(&server.channel, message).await;
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        assert!(
            status
                .message()
                .starts_with("the request could not be decoded"),
            "{what}: {status:?}"
        );
    }
    let status = submit_raw(&server.channel, vec![0; MAX_REQUEST_BYTES + 1]).await;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");

    // grpc-web: a frame whose length says more than the body holds.
    let mut frame = vec![0u8];
    frame.extend_from_slice(&100u32.to_be_bytes());
    frame.extend_from_slice(&[0x0a, 0x02]);
    let response = Client::new()
        .post(format!(
            "http://{}/claude_swarm.v1.TaskService/SubmitTask",
            server.addr
        ))
        .header(header::CONTENT_TYPE, "application/grpc-web+proto")
        .body(frame)
        .send()
        .await
        .unwrap();
    let code = response
        .headers()
        .get("grpc-status")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(
        code,
        Some((Code::InvalidArgument as i32).to_string()),
        "{:?}",
        response.headers()
    );
    // An error of the engine's own is untouched.
    let err = server
        .tasks()
        .submit_task(pb::SubmitTaskRequest {
            task: Some(spec(" ")),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("prompt"), "{err:?}");
    server.stop().await;
}

#[tokio::test]
async fn unfinished_tasks_are_bounded_on_every_surface() {
    let server = TestServer::start(EngineConfig {
        max_queued_tasks: 2,
        ..config(0)
    })
    .await;
    server.submit(spec("one")).await;
    let err = server
        .tasks()
        .submit_tasks(pb::SubmitTasksRequest {
            tasks: vec![spec("two"), spec("three")],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("max_queued_tasks"), "{err:?}");
    let response = Client::new()
        .post(format!("http://{}/tasks/batch", server.addr))
        .json(&json!({ "prompts": ["two", "three"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "resource_exhausted");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_queued_tasks"),
        "{body}"
    );
    // Within the bound it is taken.
    server.submit(spec("two")).await;
    server.stop().await;
}

/// One request a second on average, in bursts of `burst`: a test's few requests, made
/// within milliseconds, see no refill.
fn rate(burst: u32) -> Option<RateLimit> {
    Some(RateLimit {
        per_second: NonZeroU32::MIN,
        burst: NonZeroU32::new(burst).unwrap(),
    })
}

#[tokio::test]
async fn each_key_makes_its_burst_of_requests_and_the_next_hears_the_limit_on_every_surface() {
    let (a, b) = ("key-a-0123456789abcdef", "key-b-0123456789abcdef");
    let keys = Keys::new([
        ApiKey::from_entry(&format!("a:read:{a}")).unwrap(),
        ApiKey::from_entry(&format!("b:read:{b}")).unwrap(),
    ])
    .unwrap();
    let options = ServerOptions {
        keys,
        rate_limit: rate(3),
        ..ServerOptions::default()
    };
    let server = TestServer::start_with_options(config(1), simulated_agent(), options).await;
    let http = Client::new();
    let get = |path: &str, key: &str| {
        http.get(format!("http://{}{path}", server.addr))
            .bearer_auth(key)
            .send()
    };
    for _ in 0..3 {
        assert_eq!(get("/tasks", a).await.unwrap().status(), StatusCode::OK);
    }
    let refused = get("/tasks", a).await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        refused.headers()[header::RETRY_AFTER],
        "1",
        "at one a second"
    );
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "resource_exhausted", "{body}");
    assert_eq!(body["error"]["field"], "rate_limit_per_second", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("rate_limit_per_second: the key \"a\" is over 1 requests a second"),
        "{message}"
    );
    // Health is open to all, and another key has its own bucket.
    assert_eq!(get("/health", a).await.unwrap().status(), StatusCode::OK);
    for _ in 0..3 {
        assert_eq!(get("/status", b).await.unwrap().status(), StatusCode::OK);
    }
    let mut request = tonic::Request::new(pb::GetStatusRequest {});
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {b}").parse().unwrap());
    let status = server.swarm().get_status(request).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("rate_limit_per_second"),
        "{status:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn without_keys_each_client_address_has_a_bucket() {
    let options = ServerOptions {
        rate_limit: rate(2),
        ..ServerOptions::default()
    };
    let server = TestServer::start_with_options(config(1), simulated_agent(), options).await;
    let http = Client::new();
    let url = format!("http://{}/tasks", server.addr);
    for _ in 0..2 {
        assert_eq!(
            http.get(&url).send().await.unwrap().status(),
            StatusCode::OK
        );
    }
    let refused = http.get(&url).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let body: Value = refused.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("the address 127.0.0.1"), "{message}");
    server.stop().await;
}
