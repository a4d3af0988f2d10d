//! A burst of more events than the default `event_buffer` (16,384), while subscribers read
//! at full speed: every one of them gets every event, in order, with no gap, over gRPC and
//! the Server-Sent Events stream. The events are encoded once and
//! shared (`api::grpc::events`), and a subscriber reads the engine's shared window at its
//! own pace, so it is not cut off while its events are retained.

mod common;

use std::time::Duration;

use claude_swarm::{
    agent::instant::InstantAgent,
    engine::EngineConfig,
    pb::{self, EventKind as K},
};
use common::{TestServer, config, spec};
use tokio::task::JoinHandle;

const TASKS: usize = 4_000;
const SENTINEL: &str = "sentinel";

/// Reads from `after_sequence = 0` until the sentinel's submission; every sequence seen.
fn grpc_subscriber(server: &TestServer) -> JoinHandle<Vec<u64>> {
    let mut events = server.events();
    tokio::spawn(async move {
        let request = pb::StreamEventsRequest {
            after_sequence: Some(0),
            ..Default::default()
        };
        let mut stream = events.stream_events(request).await.unwrap().into_inner();
        let mut seen = Vec::new();
        loop {
            let event = stream
                .message()
                .await
                .unwrap_or_else(|e| panic!("cut off after {} events: {e}", seen.len()))
                .expect("the stream ended before the sentinel");
            seen.push(event.sequence);
            if event.task_id == SENTINEL && event.kind == K::TaskSubmitted as i32 {
                return seen;
            }
        }
    })
}

/// The same over Server-Sent Events: the `id:` of each event.
fn sse_subscriber(server: &TestServer) -> JoinHandle<Vec<u64>> {
    let url = format!("http://{}/events?after=0", server.addr);
    tokio::spawn(async move {
        let mut response = reqwest::get(url).await.unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        let mut seen = Vec::new();
        let mut id = None;
        let mut pending = Vec::new();
        while let Some(chunk) = response.chunk().await.unwrap() {
            pending.extend_from_slice(&chunk);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                let line = std::str::from_utf8(&line).unwrap().trim_end();
                if let Some(value) = line.strip_prefix("id:") {
                    id = Some(value.trim().parse::<u64>().unwrap());
                } else if let Some(value) = line.strip_prefix("data:") {
                    assert!(value.contains("\"sequence\""), "{value}");
                    seen.push(id.take().expect("an id before each data line"));
                    if value.contains(&format!("\"task_id\":\"{SENTINEL}\""))
                        && value.contains("\"kind\":\"task_submitted\"")
                    {
                        return seen;
                    }
                }
            }
        }
        panic!("the SSE stream ended after {} events", seen.len());
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_reading_at_full_speed_get_every_event_of_a_burst_in_order() {
    common::install_tls_provider();
    let server = TestServer::start_with_agent(config(8), InstantAgent::default()).await;
    let mut subscribers: Vec<_> = (0..4).map(|_| grpc_subscriber(&server)).collect();
    subscribers.push(sse_subscriber(&server));

    // The burst: batches submitted back to back, each task five events or more.
    let mut tasks = server.tasks();
    for batch in 0..TASKS / 500 {
        let specs = (0..500)
            .map(|i| spec(&format!("burst {batch}-{i}")))
            .collect();
        tasks
            .submit_tasks(pb::SubmitTasksRequest { tasks: specs })
            .await
            .unwrap();
    }
    // After the burst has run, the sentinel marks the end.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let status = server
            .swarm()
            .get_status(pb::GetStatusRequest {})
            .await
            .unwrap()
            .into_inner();
        if status.tasks.unwrap().completed as usize == TASKS {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the burst did not run"
        );
        tokio::task::yield_now().await;
    }
    tasks
        .submit_task(pb::SubmitTaskRequest {
            task: Some(pb::TaskSpec {
                id: SENTINEL.into(),
                ..spec("the end")
            }),
        })
        .await
        .unwrap();

    let mut counts = Vec::new();
    for subscriber in subscribers {
        let seen = tokio::time::timeout(Duration::from_secs(120), subscriber)
            .await
            .expect("a subscriber did not get the sentinel")
            .unwrap();
        let want: Vec<u64> = (1..=seen.len() as u64).collect();
        assert!(
            seen == want,
            "a gap or a reordering in {} events",
            seen.len()
        );
        counts.push(seen.len());
    }
    assert!(counts.windows(2).all(|w| w[0] == w[1]), "{counts:?}");
    assert!(
        counts[0] > EngineConfig::default().event_buffer,
        "the burst ({} events) must be larger than the default buffer",
        counts[0]
    );
    server.stop().await;
}
