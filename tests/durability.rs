//! Durable state: a server child process is killed with SIGKILL at several points of a
//! run and restarted on the same data directory; nothing acknowledged is lost, no
//! completed result changes, and the event log has no gap.

mod common;

use std::{collections::HashMap, path::Path, process::Command, time::Duration};

use claude_swarm::pb::{
    self, EventKind as K, event_service_client::EventServiceClient,
    task_service_client::TaskServiceClient, workflow_service_client::WorkflowServiceClient,
};
use common::{BIN, serve::Served};

/// The server as durability needs it: with 4 instances.
async fn start(data: &Path) -> Served {
    Served::start(data, &["--instances", "4"]).await
}

/// Waits until `count` more tasks have completed (counted from events after `after`).
async fn wait_completions(server: &Served, after: u64, count: usize) -> u64 {
    let request = pb::StreamEventsRequest {
        after_sequence: Some(after),
        kinds: vec![K::TaskCompleted as i32],
        ..Default::default()
    };
    let mut stream = EventServiceClient::new(server.channel.clone())
        .stream_events(request)
        .await
        .unwrap()
        .into_inner();
    let mut last = after;
    for _ in 0..count {
        let event = tokio::time::timeout(Duration::from_secs(60), stream.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        last = event.sequence;
    }
    last
}

fn is_terminal(task: &pb::Task) -> bool {
    let s = pb::TaskStatus::try_from(task.status).unwrap();
    matches!(
        s,
        pb::TaskStatus::Completed
            | pb::TaskStatus::Failed
            | pb::TaskStatus::Cancelled
            | pb::TaskStatus::Skipped
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_loses_nothing_acknowledged() {
    let data = tempfile::tempdir().unwrap();
    // A few hundred tasks in layers; retries let work interrupted by a kill run again.
    let mut yaml =
        String::from("name: crash\ndefaults:\n  retries: 5\n  retry_backoff: 0.05\ntasks:\n");
    for i in 0..240 {
        yaml.push_str(&format!(
            "  - id: t{i}\n    prompt: step {i} sim:delay={}\n",
            10 + (i * 7) % 40
        ));
        if i >= 40 {
            yaml.push_str(&format!("    depends_on: [t{}]\n", i - 40));
        }
    }
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("seed {seed}");
    let mut random = seed | 1;
    let mut next = move |n: u64| {
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        random % n
    };

    let mut server = start(data.path()).await;
    let request = pb::ExecuteWorkflowRequest {
        yaml,
        ..Default::default()
    };
    let reply = WorkflowServiceClient::new(server.channel.clone())
        .execute_workflow(request)
        .await
        .unwrap()
        .into_inner();
    let workflow_id = reply.workflow_id;
    let mut acknowledged: Vec<String> = reply.workflow.unwrap().task_ids;
    let mut completed_before: HashMap<String, pb::Task> = HashMap::new();
    let mut last_seen = 0;

    for kill in 0..4 {
        // Acknowledged single submissions must survive too.
        let spec = pb::TaskSpec {
            prompt: format!("extra {kill}"),
            ..Default::default()
        };
        let task = TaskServiceClient::new(server.channel.clone())
            .submit_task(pb::SubmitTaskRequest { task: Some(spec) })
            .await
            .unwrap()
            .into_inner();
        acknowledged.push(task.task_id);
        last_seen = wait_completions(&server, last_seen, 5 + next(30) as usize).await;
        for task in server.all_tasks().await.into_values() {
            if task.status == pb::TaskStatus::Completed as i32 {
                completed_before.insert(task.id.clone(), task);
            }
        }
        server.kill();
        server = start(data.path()).await;
        // After a restart every acknowledged task is there.
        let tasks = server.all_tasks().await;
        for id in &acknowledged {
            assert!(
                tasks.contains_key(id),
                "kill {kill}: acknowledged task {id} was lost"
            );
        }
    }

    // Let it finish.
    let request = pb::StreamEventsRequest {
        after_sequence: Some(0),
        workflow_id: workflow_id.clone(),
        kinds: vec![K::WorkflowFinished as i32],
        ..Default::default()
    };
    let mut stream = EventServiceClient::new(server.channel.clone())
        .stream_events(request)
        .await
        .unwrap()
        .into_inner();
    let finished = tokio::time::timeout(Duration::from_secs(120), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let Some(pb::event::Payload::Workflow(workflow)) = finished.payload else {
        panic!()
    };
    assert_eq!(
        workflow.status,
        pb::WorkflowStatus::Completed as i32,
        "{:?}",
        workflow.task_counts
    );

    let tasks = server.all_tasks().await;
    for id in &acknowledged {
        let task = &tasks[id];
        assert!(
            is_terminal(task) || task.workflow_id.is_empty(),
            "{id} is not terminal: {task:?}"
        );
    }
    for (id, before) in &completed_before {
        let after = &tasks[id];
        assert_eq!(after.status, before.status, "{id} changed state");
        assert_eq!(
            after.result, before.result,
            "{id}'s completed result changed"
        );
        assert_eq!(
            after.attempts, before.attempts,
            "{id} ran again after it had completed"
        );
    }

    // The stored event log numbers every event once, with no gap across the restarts.
    let request = pb::StreamEventsRequest {
        after_sequence: Some(0),
        ..Default::default()
    };
    let mut stream = EventServiceClient::new(server.channel.clone())
        .stream_events(request)
        .await
        .unwrap()
        .into_inner();
    let mut expected = 1;
    while let Ok(Some(event)) = tokio::time::timeout(Duration::from_millis(500), stream.message())
        .await
        .unwrap_or(Ok(None))
    {
        assert_eq!(
            event.sequence, expected,
            "events are numbered once each, in order"
        );
        expected += 1;
    }
    assert!(
        expected > 1000,
        "the log holds the whole run ({expected} events)"
    );
    server.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_data_file_is_a_clear_error_at_start() {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("swarm.db"), vec![0x42; 8192]).unwrap();
    let out = Command::new(BIN)
        .args([
            "serve",
            "--agent",
            "simulated",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("swarm.db") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_return_the_same_task_across_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path()).await;
    let spec = pb::TaskSpec {
        prompt: "once".into(),
        idempotency_key: "job-42".into(),
        ..Default::default()
    };
    let mut tasks = TaskServiceClient::new(server.channel.clone());
    let first = tasks
        .submit_task(pb::SubmitTaskRequest {
            task: Some(spec.clone()),
        })
        .await
        .unwrap()
        .into_inner();
    let again = tasks
        .submit_task(pb::SubmitTaskRequest {
            task: Some(spec.clone()),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.task_id, again.task_id);
    server.kill();
    let server = start(data.path()).await;
    let mut tasks = TaskServiceClient::new(server.channel.clone());
    let after = tasks
        .submit_task(pb::SubmitTaskRequest { task: Some(spec) })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.task_id, after.task_id);
    assert_eq!(server.all_tasks().await.len(), 1);
    server.kill();
}
