//! `GET /metrics` after real work: a workflow on the simulated agent, a rate limit, calls
//! over REST, gRPC and grpc-web, refusals and open event streams, each counted as it
//! happened.

mod common;

use std::collections::BTreeMap;

use claude_swarm::pb;
use common::{TestServer, config};
use reqwest::{Client, StatusCode, header};
use serde_json::Value;

/// Each sample of an OpenMetrics text, by series (`name{labels}`).
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a series and a value");
            (series.to_owned(), value.parse().expect("a number"))
        })
        .collect()
}

async fn scrape(server: &TestServer) -> BTreeMap<String, f64> {
    let response = reqwest::get(format!("http://{}/metrics", server.addr))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
    );
    let text = response.text().await.unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");
    samples(&text)
}

fn get(samples: &BTreeMap<String, f64>, series: &str) -> f64 {
    *samples
        .get(series)
        .unwrap_or_else(|| panic!("no {series} in {samples:#?}"))
}

const WORKFLOW: &str = "name: measured\ntasks:\n  - id: plan\n    prompt: plan sim:cost=0.25\n  - id: build\n    prompt: build sim:cost=0.25\n    depends_on: [plan]\n  - id: test\n    prompt: test sim:cost=0.25\n    depends_on: [plan]\n";

#[tokio::test]
async fn a_scrape_after_a_workflow_counts_its_tasks_times_and_calls() {
    let server = TestServer::start(config(2)).await;
    let base = format!("http://{}", server.addr);
    let http = Client::new();
    let started: Value = http
        .post(format!("{base}/workflows/execute"))
        .header(header::CONTENT_TYPE, "application/yaml")
        .body(WORKFLOW)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for task in started["workflow"]["task_ids"].as_array().unwrap() {
        let task = server.wait(task.as_str().unwrap()).await;
        assert_eq!(common::status(&task), pb::TaskStatus::Completed);
    }
    // A usage limit: the only account pauses, and the task goes back to the queue (its
    // second TaskQueued).
    let limited = server.submit(common::spec("busy sim:rate_limit=600")).await;
    let mut queued = server
        .events()
        .stream_events(pb::StreamEventsRequest {
            after_sequence: Some(0),
            task_id: limited.id.clone(),
            kinds: vec![pb::EventKind::TaskQueued as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    for _ in 0..2 {
        tokio::time::timeout(std::time::Duration::from_secs(30), queued.message())
            .await
            .expect("queued within 30s")
            .unwrap()
            .expect("an event");
    }
    // One refusal, one gRPC call, one grpc-web call.
    let refused = http
        .get(format!("{base}/health"))
        .header(header::HOST, "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::MISDIRECTED_REQUEST);
    let status = server
        .swarm()
        .get_status(pb::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    let web = http
        .post(format!(
            "{base}/claude_swarm.v1.WorkflowService/ListWorkflows"
        ))
        .header(header::CONTENT_TYPE, "application/grpc-web+proto")
        .body(vec![0u8; 5])
        .send()
        .await
        .unwrap();
    assert_eq!(web.status(), StatusCode::OK);
    web.bytes().await.unwrap();

    let m = scrape(&server).await;
    for (state, count) in [
        ("completed", 3.0),
        ("failed", 0.0),
        ("pending", 0.0),
        ("queued", 1.0),
        ("running", 0.0),
    ] {
        assert_eq!(
            get(&m, &format!("swarm_tasks{{status=\"{state}\"}}")),
            count,
            "{state}"
        );
    }
    assert_eq!(get(&m, "swarm_queued_tasks{priority=\"normal\"}"), 1.0);
    assert_eq!(get(&m, "swarm_instances{status=\"idle\"}"), 2.0);
    assert_eq!(get(&m, "swarm_instances{status=\"busy\"}"), 0.0);
    assert_eq!(get(&m, "swarm_max_instances"), 8.0);
    assert_eq!(get(&m, "swarm_workflows_running"), 0.0);
    assert_eq!(get(&m, "swarm_cost_usd_total"), status.total_cost_usd);
    assert!(
        (status.total_cost_usd - 0.75).abs() < 1e-9,
        "{}",
        status.total_cost_usd
    );
    let usage = status.usage.unwrap();
    assert_eq!(
        get(&m, "swarm_tokens_total{kind=\"input\"}"),
        usage.input_tokens as f64
    );
    assert!(usage.input_tokens > 0);
    assert_eq!(get(&m, "swarm_turns_total"), status.turns as f64);
    assert_eq!(get(&m, "swarm_dispatch_paused{reason=\"rate_limit\"}"), 1.0);
    assert_eq!(get(&m, "swarm_dispatch_paused{reason=\"budget\"}"), 0.0);
    assert_eq!(get(&m, "swarm_account_paused{account=\"default\"}"), 1.0);
    assert_eq!(get(&m, "swarm_account_limited{account=\"default\"}"), 0.0);
    assert_eq!(
        get(&m, "swarm_account_refusals_total{account=\"default\"}"),
        1.0
    );
    assert_eq!(
        get(&m, "swarm_account_api_retries_total{account=\"default\"}"),
        0.0
    );
    assert!(get(&m, "swarm_uptime_seconds") > 0.0);

    // Every task waited in the queue once and ran once (the refused one has not ended).
    assert_eq!(get(&m, "swarm_task_queue_wait_seconds_count"), 4.0);
    assert_eq!(
        get(&m, "swarm_task_run_seconds_count{status=\"completed\"}"),
        3.0
    );
    assert_eq!(
        get(
            &m,
            "swarm_task_run_seconds_bucket{le=\"+Inf\",status=\"completed\"}"
        ),
        3.0
    );

    let requests = |operation: &str, code: &str| {
        get(
            &m,
            &format!("swarm_api_requests_total{{operation=\"{operation}\",code=\"{code}\"}}"),
        )
    };
    assert_eq!(requests("POST /workflows/execute", "200"), 1.0);
    assert_eq!(requests("GET /health", "421"), 1.0);
    assert_eq!(
        requests("claude_swarm.v1.SwarmService/GetStatus", "OK"),
        1.0
    );
    assert_eq!(
        requests("claude_swarm.v1.TaskService/SubmitTask", "OK"),
        1.0
    );
    assert_eq!(
        requests("claude_swarm.v1.WorkflowService/ListWorkflows", "OK"),
        1.0
    );
    assert_eq!(
        get(
            &m,
            "swarm_api_request_duration_seconds_count{operation=\"POST /workflows/execute\"}"
        ),
        1.0
    );
    server.stop().await;
}

#[tokio::test]
async fn open_event_streams_are_counted_on_every_surface() {
    let server = TestServer::start(config(1)).await;
    assert_eq!(get(&scrape(&server).await, "swarm_event_subscribers"), 0.0);
    let sse = reqwest::get(format!("http://{}/events", server.addr))
        .await
        .unwrap();
    assert_eq!(sse.status(), StatusCode::OK);
    let (_socket, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws/stream", server.addr))
        .await
        .unwrap();
    let grpc = server
        .events()
        .stream_events(pb::StreamEventsRequest::default())
        .await
        .unwrap();
    assert_eq!(get(&scrape(&server).await, "swarm_event_subscribers"), 3.0);
    drop((sse, grpc));
    server.stop().await;
}
