//! The gRPC API against a real server on 127.0.0.1:0 running the simulated agent.

mod common;

use std::time::Duration;

use claude_swarm::pb::{self, EventKind as K, TaskStatus as S};
use common::{TestServer, config, group_alive, spec, status};
use tonic::Code;

#[tokio::test]
async fn a_task_runs_and_its_result_comes_back() {
    let server = TestServer::start(config(2)).await;
    let task = server
        .submit(pb::TaskSpec {
            name: "greet".into(),
            ..spec("say hi sim:cost=0.125 sim:tool")
        })
        .await;
    assert_eq!(task.name, "greet");
    let done = server.wait(&task.id).await;
    assert_eq!(status(&done), S::Completed, "{done:?}");
    let result = done.result.clone().unwrap();
    assert_eq!(result.text, "Simulated answer to: say hi");
    assert_eq!(result.cost_usd, 0.125);
    assert_eq!(result.num_turns, 2);
    assert_eq!(result.exit_code, Some(0));
    assert_eq!(result.session_id.len(), 36, "a uuid session id");
    assert!(result.usage.unwrap().output_tokens > 0);
    assert!(done.started_at.is_some() && done.completed_at.is_some());

    let status = server
        .swarm()
        .get_status(pb::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.tasks.unwrap().completed, 1);
    assert_eq!(status.total_cost_usd, 0.125);
    assert_eq!(status.agent, "simulated");
    // Tokens and turns are summed for the swarm and per instance.
    assert_eq!(status.turns, 2);
    let tokens = status.usage.unwrap();
    assert_eq!(tokens, done.result.as_ref().unwrap().usage.unwrap());
    let instance = server
        .instances()
        .get_instance(pb::GetInstanceRequest {
            instance_id: done.instance_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((instance.turns, instance.usage.unwrap()), (2, tokens));
    server.stop().await;
}

#[tokio::test]
async fn priorities_are_honoured_under_contention() {
    let server = TestServer::start(config(1)).await;
    // Keep the only instance busy while the others queue up.
    let blocker = server.submit(spec("block sim:delay=400")).await;
    server.wait_for(&blocker.id, K::TaskStarted).await;
    let mut ids = Vec::new();
    for (name, priority) in [
        ("low", pb::Priority::Low),
        ("normal-1", pb::Priority::Normal),
        ("critical", pb::Priority::Critical),
        ("high", pb::Priority::High),
        ("normal-2", pb::Priority::Unspecified),
    ] {
        let task = server
            .submit(pb::TaskSpec {
                name: name.into(),
                priority: priority as i32,
                ..spec(name)
            })
            .await;
        assert_eq!(status(&task), S::Queued);
        ids.push(task.id);
    }
    let mut started = Vec::new();
    for id in &ids {
        let event = server.wait_for(id, K::TaskStarted).await;
        let Some(pb::event::Payload::Task(task)) = event.payload else {
            panic!("task payload")
        };
        started.push((event.sequence, task.name));
    }
    started.sort();
    let order: Vec<_> = started.into_iter().map(|(_, name)| name).collect();
    assert_eq!(order, ["critical", "high", "normal-1", "normal-2", "low"]);
    server.stop().await;
}

#[tokio::test]
async fn dependencies_release_in_order_and_failures_skip_dependents() {
    let server = TestServer::start(config(3)).await;
    let batch = vec![
        pb::TaskSpec {
            id: "a".into(),
            ..spec("first sim:delay=100")
        },
        pb::TaskSpec {
            id: "b".into(),
            depends_on: vec!["a".into()],
            ..spec("second")
        },
        pb::TaskSpec {
            id: "c".into(),
            depends_on: vec!["a".into(), "b".into()],
            ..spec("third")
        },
        pb::TaskSpec {
            id: "bad".into(),
            ..spec("fails sim:error")
        },
        pb::TaskSpec {
            id: "after-bad".into(),
            depends_on: vec!["bad".into()],
            ..spec("never runs")
        },
        pb::TaskSpec {
            id: "after-after".into(),
            depends_on: vec!["after-bad".into()],
            ..spec("never runs either")
        },
    ];
    let reply = server
        .tasks()
        .submit_tasks(pb::SubmitTasksRequest { tasks: batch })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        reply.task_ids,
        ["a", "b", "c", "bad", "after-bad", "after-after"]
    );
    assert_eq!(status(&reply.tasks[1]), S::Pending);

    let a = server.wait("a").await;
    let b = server.wait("b").await;
    let c = server.wait("c").await;
    for t in [&a, &b, &c] {
        assert_eq!(status(t), S::Completed, "{t:?}");
    }
    let seconds = |t: &Option<pbjson_types::Timestamp>| {
        let t = t.as_ref().unwrap();
        t.seconds as f64 + t.nanos as f64 / 1e9
    };
    assert!(seconds(&b.started_at) >= seconds(&a.completed_at));
    assert!(seconds(&c.started_at) >= seconds(&b.completed_at));

    let bad = server.wait("bad").await;
    assert_eq!(status(&bad), S::Failed);
    assert!(bad.error.contains("API Error: 529"), "{}", bad.error);
    assert!(bad.result.unwrap().is_error);
    let skipped = server.wait("after-bad").await;
    assert_eq!(status(&skipped), S::Skipped);
    assert_eq!(skipped.error, "dependency bad was failed");
    let skipped = server.wait("after-after").await;
    assert_eq!(status(&skipped), S::Skipped);
    assert_eq!(skipped.error, "dependency after-bad was skipped");

    // A new task on a failed dependency is skipped at once, never stuck pending.
    let late = server
        .submit(pb::TaskSpec {
            depends_on: vec!["bad".into()],
            ..spec("late")
        })
        .await;
    assert_eq!(status(&late), S::Skipped);
    server.stop().await;
}

#[tokio::test]
async fn cancelling_a_running_task_stops_its_process_group() {
    let server = TestServer::start(config(1)).await;
    let task = server.submit(spec("wait forever sim:hang")).await;
    // The first output line comes after the process is up and its pid recorded.
    server.wait_for(&task.id, K::TaskOutput).await;
    let running = server.get(&task.id).await;
    assert_eq!(status(&running), S::Running);
    let instance = server
        .instances()
        .get_instance(pb::GetInstanceRequest {
            instance_id: running.instance_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let pid = instance.pid;
    assert!(pid > 0 && group_alive(pid));
    assert!(
        instance.memory_bytes > 0 && instance.processes >= 1,
        "{instance:?}"
    );

    let cancelled = server.cancel(&task.id).await;
    assert_eq!(status(&cancelled), S::Cancelled);
    assert!(
        !group_alive(pid),
        "the process group is gone once cancel answers"
    );

    // The instance is free again and takes the next task.
    let next = server.submit(spec("next")).await;
    assert_eq!(status(&server.wait(&next.id).await), S::Completed);

    // Cancelling a finished task is refused and changes nothing.
    let err = server
        .tasks()
        .cancel_task(pb::CancelTaskRequest {
            task_id: next.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(status(&server.get(&next.id).await), S::Completed);

    // Pending and queued tasks cancel at once; a dependent of a cancelled task is skipped.
    let blocker = server.submit(spec("hold sim:hang")).await;
    let queued = server
        .submit(pb::TaskSpec {
            id: "queued".into(),
            ..spec("queued")
        })
        .await;
    let pending = server
        .submit(pb::TaskSpec {
            depends_on: vec!["queued".into()],
            ..spec("pending")
        })
        .await;
    assert_eq!((status(&queued), status(&pending)), (S::Queued, S::Pending));
    let c = server.cancel("queued").await;
    assert_eq!(status(&c), S::Cancelled);
    let p = server.get(&pending.id).await;
    assert_eq!(
        (status(&p), p.error.as_str()),
        (S::Skipped, "dependency queued was cancelled")
    );
    server
        .tasks()
        .cancel_task(pb::CancelTaskRequest {
            task_id: blocker.id,
        })
        .await
        .unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_task_past_its_timeout_fails_and_its_process_is_stopped() {
    let server = TestServer::start(config(1)).await;
    let task = server
        .submit(pb::TaskSpec {
            timeout: 0.5,
            ..spec("hang sim:hang")
        })
        .await;
    let done = server.wait(&task.id).await;
    assert_eq!(status(&done), S::Failed);
    assert_eq!(done.error, "timed out after 0.5s");
    server.stop().await;
}

#[tokio::test]
async fn crashes_garbage_and_large_output_are_handled() {
    let server = TestServer::start(config(3)).await;
    let crash = server.submit(spec("crash sim:crash")).await;
    let garbage = server.submit(spec("noisy sim:garbage")).await;
    let large = server.submit(spec("big sim:large=200000")).await;
    let exit = server.submit(spec("exit sim:exit=3")).await;

    let crash = server.wait(&crash.id).await;
    assert_eq!(status(&crash), S::Failed);
    assert_eq!(
        crash.error,
        "agent was killed by signal 9 without a result line"
    );

    let garbage_done = server.wait(&garbage.id).await;
    assert_eq!(status(&garbage_done), S::Completed);
    let request = pb::StreamEventsRequest {
        after_sequence: Some(0),
        task_id: garbage.id.clone(),
        kinds: vec![K::TaskOutput as i32],
        ..Default::default()
    };
    let mut stream = server
        .events()
        .stream_events(request)
        .await
        .unwrap()
        .into_inner();
    let mut kinds = Vec::new();
    while kinds.last().map(String::as_str) != Some("result") {
        let Some(pb::event::Payload::Output(o)) = stream.message().await.unwrap().unwrap().payload
        else {
            panic!()
        };
        kinds.push(o.message_type);
    }
    assert_eq!(
        kinds,
        ["unparsed", "system", "unparsed", "assistant", "result"]
    );

    let large = server.wait(&large.id).await;
    assert_eq!(status(&large), S::Completed);
    assert_eq!(large.result.unwrap().text.len(), 200_000);

    let exit = server.wait(&exit.id).await;
    assert_eq!(status(&exit), S::Failed);
    assert_eq!(exit.error, "agent exited with code 3 after its result");
    server.stop().await;
}

#[tokio::test]
async fn instances_scale_spawn_and_terminate() {
    let server = TestServer::start(config(2)).await;
    let mut instances = server.instances();
    let scaled = instances
        .scale_instances(pb::ScaleInstancesRequest { target: 5 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(scaled.instances.len(), 5);
    let scaled = instances
        .scale_instances(pb::ScaleInstancesRequest { target: 1 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(scaled.instances.len(), 1);
    let spawned = instances
        .spawn_instances(pb::SpawnInstancesRequest {
            count: 2,
            working_directory: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(spawned.instances.len(), 2);
    let listed = instances
        .list_instances(pb::ListInstancesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.instances.len(), 3);

    for (target, field) in [(-1, "target"), (9, "target")] {
        let err = instances
            .scale_instances(pb::ScaleInstancesRequest { target })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains(field), "{}", err.message());
    }
    let err = instances
        .spawn_instances(pb::SpawnInstancesRequest {
            count: 0,
            working_directory: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::InvalidArgument, "invalid count: must be at least 1")
    );
    let err = instances
        .spawn_instances(pb::SpawnInstancesRequest {
            count: 6,
            working_directory: String::new(),
        })
        .await
        .unwrap_err();
    assert!(err.message().contains("maximum of 8"), "{}", err.message());

    // Terminating a busy instance fails its task cleanly.
    let task = server.submit(spec("hang sim:hang")).await;
    server.wait_for(&task.id, K::TaskOutput).await;
    let running = server.get(&task.id).await;
    let terminated = instances
        .terminate_instance(pb::TerminateInstanceRequest {
            instance_id: running.instance_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(terminated.status, pb::InstanceStatus::Terminated as i32);
    let failed = server.get(&task.id).await;
    assert_eq!(
        (status(&failed), failed.error.as_str()),
        (S::Failed, "its instance was terminated")
    );
    let err = instances
        .terminate_instance(pb::TerminateInstanceRequest {
            instance_id: running.instance_id,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let err = instances
        .get_instance(pb::GetInstanceRequest {
            instance_id: "inst-9999".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    server.stop().await;
}

#[tokio::test]
async fn bad_input_names_the_field_and_changes_nothing() {
    let server = TestServer::start(config(1)).await;
    server
        .submit(pb::TaskSpec {
            id: "known".into(),
            ..spec("known")
        })
        .await;
    let mut tasks = server.tasks();
    let cases: Vec<(Vec<pb::TaskSpec>, Code, &str)> = vec![
        (
            vec![spec("  ")],
            Code::InvalidArgument,
            "invalid tasks[0].prompt: must not be empty",
        ),
        (
            vec![pb::TaskSpec {
                depends_on: vec!["nope".into()],
                ..spec("x")
            }],
            Code::InvalidArgument,
            "invalid tasks[0].depends_on[0]: unknown task id \"nope\"",
        ),
        (
            vec![
                pb::TaskSpec {
                    id: "x".into(),
                    depends_on: vec!["y".into()],
                    ..spec("x")
                },
                pb::TaskSpec {
                    id: "y".into(),
                    depends_on: vec!["x".into()],
                    ..spec("y")
                },
            ],
            Code::InvalidArgument,
            "invalid tasks: dependency cycle: x -> y -> x",
        ),
        (
            vec![
                pb::TaskSpec {
                    id: "d".into(),
                    ..spec("x")
                },
                pb::TaskSpec {
                    id: "d".into(),
                    ..spec("y")
                },
            ],
            Code::InvalidArgument,
            "invalid tasks[1].id: \"d\" is used twice in this batch",
        ),
        (
            vec![pb::TaskSpec {
                id: "known".into(),
                ..spec("x")
            }],
            Code::AlreadyExists,
            "task \"known\" already exists",
        ),
        (
            vec![pb::TaskSpec {
                timeout: -5.0,
                ..spec("x")
            }],
            Code::InvalidArgument,
            "invalid tasks[0].timeout: must be a positive number of seconds, not -5",
        ),
        (
            vec![pb::TaskSpec {
                priority: 17,
                ..spec("x")
            }],
            Code::InvalidArgument,
            "invalid tasks[0].priority: 17 is not a known value",
        ),
        (
            vec![
                spec("fine"),
                pb::TaskSpec {
                    instance_id: "inst-0042".into(),
                    ..spec("x")
                },
            ],
            Code::InvalidArgument,
            "invalid tasks[1].instance_id: no live instance \"inst-0042\"",
        ),
        (
            vec![],
            Code::InvalidArgument,
            "invalid tasks: at least one task is required",
        ),
    ];
    for (batch, code, message) in cases {
        let err = tasks
            .submit_tasks(pb::SubmitTasksRequest { tasks: batch })
            .await
            .unwrap_err();
        assert_eq!((err.code(), err.message()), (code, message));
    }
    let err = tasks
        .submit_task(pb::SubmitTaskRequest {
            task: Some(spec("")),
        })
        .await
        .unwrap_err();
    assert_eq!(err.message(), "invalid task.prompt: must not be empty");
    let err = tasks
        .submit_task(pb::SubmitTaskRequest { task: None })
        .await
        .unwrap_err();
    assert_eq!(err.message(), "invalid task: is required");
    let err = tasks
        .get_task(pb::GetTaskRequest {
            task_id: "missing".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::NotFound, "task \"missing\" not found")
    );
    let err = tasks
        .cancel_task(pb::CancelTaskRequest {
            task_id: "missing".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = tasks
        .list_tasks(pb::ListTasksRequest {
            status: vec![99],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.message(), "invalid status: 99 is not a known value");
    let err = tasks
        .list_tasks(pb::ListTasksRequest {
            page_token: "zzz".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // Only the one good task exists: refused batches left no trace.
    let all = tasks
        .list_tasks(pb::ListTasksRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        all.tasks.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        ["known"]
    );
    server.stop().await;
}

#[tokio::test]
async fn list_tasks_filters_and_pages() {
    let server = TestServer::start(config(0)).await;
    let mut tasks = server.tasks();
    let specs = (0..25)
        .map(|i| pb::TaskSpec {
            priority: if i % 5 == 0 {
                pb::Priority::High
            } else {
                pb::Priority::Low
            } as i32,
            ..spec(&format!("task {i}"))
        })
        .collect();
    let ids = tasks
        .submit_tasks(pb::SubmitTasksRequest { tasks: specs })
        .await
        .unwrap()
        .into_inner()
        .task_ids;
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = tasks
            .list_tasks(pb::ListTasksRequest {
                limit: 10,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.tasks.into_iter().map(|t| t.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, ids);
    let high = tasks
        .list_tasks(pb::ListTasksRequest {
            priority: vec![pb::Priority::High as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(high.tasks.len(), 5);
    let queued = tasks
        .list_tasks(pb::ListTasksRequest {
            status: vec![S::Queued as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        queued.tasks.len(),
        25,
        "no instance: everything waits in the queue"
    );
    let status = server
        .swarm()
        .get_status(pb::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    let queue = status.queue.unwrap();
    assert_eq!((queue.high, queue.low), (5, 20));
    server.stop().await;
}

#[tokio::test]
async fn events_are_complete_ordered_and_resumable() {
    let server = TestServer::start(config(2)).await;
    let yaml = "name: events\ntasks:\n  - id: one\n    prompt: one sim:chunks=2\n  - id: two\n    prompt: two\n    depends_on: [one]\n  - id: three\n    prompt: three\n    depends_on: [one]\n";
    let reply = server
        .workflows()
        .execute_workflow(pb::ExecuteWorkflowRequest {
            yaml: yaml.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let workflow_id = reply.workflow_id;

    let request = pb::StreamEventsRequest {
        after_sequence: Some(0),
        ..Default::default()
    };
    let mut stream = server
        .events()
        .stream_events(request)
        .await
        .unwrap()
        .into_inner();
    let mut events = Vec::new();
    loop {
        let event = stream.message().await.unwrap().unwrap();
        let done = event.kind == K::WorkflowFinished as i32;
        events.push(event);
        if done {
            break;
        }
    }
    let sequences: Vec<u64> = events.iter().map(|e| e.sequence).collect();
    let expected: Vec<u64> = (1..=events.len() as u64).collect();
    assert_eq!(sequences, expected, "every event, in order, no gap");
    let Some(pb::event::Payload::Workflow(finished)) = &events.last().unwrap().payload else {
        panic!()
    };
    assert_eq!(finished.status, pb::WorkflowStatus::Completed as i32);
    assert_eq!(finished.task_counts.unwrap().completed, 3);

    for task_id in &reply.workflow.as_ref().unwrap().task_ids {
        let kinds: Vec<i32> = events
            .iter()
            .filter(|e| {
                &e.task_id == task_id && matches!(e.payload, Some(pb::event::Payload::Task(_)))
            })
            .map(|e| e.kind)
            .collect();
        let want = [
            K::TaskSubmitted,
            K::TaskQueued,
            K::TaskStarted,
            K::TaskCompleted,
        ]
        .map(|k| k as i32);
        assert_eq!(kinds, want, "task {task_id}");
        assert!(
            events
                .iter()
                .any(|e| &e.task_id == task_id && e.kind == K::TaskOutput as i32)
        );
        assert!(
            events
                .iter()
                .filter(|e| &e.task_id == task_id)
                .all(|e| e.workflow_id == workflow_id)
        );
    }

    // Reconnecting after sequence N yields exactly the events after N.
    let cut = events.len() as u64 / 2;
    let request = pb::StreamEventsRequest {
        after_sequence: Some(cut),
        ..Default::default()
    };
    let mut resumed = server
        .events()
        .stream_events(request)
        .await
        .unwrap()
        .into_inner();
    for want in &events[cut as usize..] {
        assert_eq!(
            resumed.message().await.unwrap().unwrap().sequence,
            want.sequence
        );
    }
    // Filters: only instance events for one instance.
    let request = pb::StreamEventsRequest {
        after_sequence: Some(0),
        instance_id: "inst-0001".into(),
        kinds: vec![K::InstanceSpawned as i32],
        ..Default::default()
    };
    let mut filtered = server
        .events()
        .stream_events(request)
        .await
        .unwrap()
        .into_inner();
    let spawned = filtered.message().await.unwrap().unwrap();
    assert_eq!(
        (spawned.instance_id.as_str(), spawned.sequence),
        ("inst-0001", 1)
    );
    server.stop().await;
}

#[tokio::test]
async fn workflows_run_list_and_cancel() {
    let server = TestServer::start(config(1)).await;
    let mut workflows = server.workflows();
    let yaml = "name: slow\ntasks:\n  - id: first\n    prompt: wait sim:hang\n  - id: second\n    prompt: after\n    depends_on: [first]\n  - id: other\n    prompt: queued behind first\n";
    let reply = workflows
        .execute_workflow(pb::ExecuteWorkflowRequest {
            yaml: yaml.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let first = &reply.workflow.as_ref().unwrap().task_ids[0];
    server.wait_for(first, K::TaskOutput).await;
    let cancelled = workflows
        .cancel_workflow(pb::CancelWorkflowRequest {
            workflow_id: reply.workflow_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cancelled.status, pb::WorkflowStatus::Cancelled as i32);
    assert_eq!(cancelled.task_counts.unwrap().cancelled, 3, "{cancelled:?}");
    let err = workflows
        .cancel_workflow(pb::CancelWorkflowRequest {
            workflow_id: reply.workflow_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let listed = workflows
        .list_workflows(pb::ListWorkflowsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.workflows.len(), 1);

    let err = workflows
        .execute_workflow(pb::ExecuteWorkflowRequest {
            yaml: "name: x\ntasks:\n  - id: a\n    prompt: p\n    depends_on: [a]\n".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("tasks[0].depends_on[0]"),
        "{}",
        err.message()
    );
    let err = workflows
        .get_workflow(pb::GetWorkflowRequest {
            workflow_id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    server.stop().await;
}

#[tokio::test]
async fn shutdown_ends_streams_and_stops_running_tasks() {
    let server = TestServer::start(config(1)).await;
    let task = server.submit(spec("hang sim:hang")).await;
    server.wait_for(&task.id, K::TaskOutput).await;
    let running = server.get(&task.id).await;
    let pid = server
        .instances()
        .get_instance(pb::GetInstanceRequest {
            instance_id: running.instance_id,
        })
        .await
        .unwrap()
        .into_inner()
        .pid;
    let mut stream = server
        .events()
        .stream_events(pb::StreamEventsRequest::default())
        .await
        .unwrap()
        .into_inner();
    tokio::time::timeout(Duration::from_secs(20), server.stop())
        .await
        .expect("bounded shutdown");
    assert!(!group_alive(pid));
    // The live stream ended instead of holding the server open.
    while let Ok(Some(_)) = stream.message().await {}
}

#[tokio::test]
async fn failures_carry_a_class_and_only_retryable_ones_are_retried() {
    let server = TestServer::start(config(4)).await;
    let with_retries = |prompt: &str| pb::TaskSpec {
        retries: 1,
        retry_backoff: 0.01,
        ..spec(prompt)
    };
    let cases = [
        (
            with_retries("login sim:auth"),
            pb::FailureClass::Authentication,
            1,
        ),
        (
            with_retries("busy sim:error=429"),
            pb::FailureClass::RateLimited,
            2,
        ),
        (
            with_retries("overloaded sim:error"),
            pb::FailureClass::ApiError,
            2,
        ),
        (
            with_retries("long sim:max_turns"),
            pb::FailureClass::MaxTurns,
            1,
        ),
        (
            with_retries("dies sim:crash"),
            pb::FailureClass::ProcessCrashed,
            2,
        ),
        (
            pb::TaskSpec {
                timeout: 0.2,
                ..spec("slow sim:hang")
            },
            pb::FailureClass::Timeout,
            1,
        ),
        (
            pb::TaskSpec {
                working_directory: "/no/such/dir".into(),
                ..with_retries("nowhere")
            },
            pb::FailureClass::SpawnFailed,
            1,
        ),
        (
            pb::TaskSpec {
                command: "exit 3".into(),
                ..with_retries("")
            },
            pb::FailureClass::CommandFailed,
            2,
        ),
    ];
    for (spec, class, attempts) in cases {
        let prompt = spec.prompt.clone();
        let task = server.submit(spec).await;
        let done = server.wait(&task.id).await;
        assert_eq!(status(&done), S::Failed, "{prompt}: {done:?}");
        assert_eq!(done.failure_class, class as i32, "{prompt}: {}", done.error);
        assert_eq!(
            done.attempts, attempts,
            "{prompt}: retried only when it may help"
        );
    }
    let rate_limited = server.submit(spec("busy sim:error=429")).await;
    let done = server.wait(&rate_limited.id).await;
    assert_eq!(done.result.unwrap().api_error_status, 429);
    let skipped = server
        .submit(pb::TaskSpec {
            depends_on: vec![rate_limited.id],
            ..spec("after")
        })
        .await;
    assert_eq!(skipped.failure_class, pb::FailureClass::Skipped as i32);
    server.stop().await;
}

#[tokio::test]
async fn a_rate_limit_holds_dispatching_until_it_lifts() {
    let server = TestServer::start(config(2)).await;
    let limited = server.submit(spec("busy sim:rate_limit=2")).await;
    // The refused run goes back to the queue (its second TaskQueued), not to a terminal
    // state, and uses up no attempt.
    let mut events = server
        .events()
        .stream_events(pb::StreamEventsRequest {
            after_sequence: Some(0),
            task_id: limited.id.clone(),
            kinds: vec![K::TaskQueued as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(30), events.message())
            .await
            .expect("an event within 30s")
            .unwrap()
            .expect("an event")
    };
    next().await;
    let requeued = next().await;
    let Some(pb::event::Payload::Task(requeued)) = requeued.payload else {
        panic!("no task in {requeued:?}")
    };
    assert_eq!(requeued.attempts, 0, "a refusal uses up no attempt");
    assert!(requeued.error.contains("usage limit"), "{}", requeued.error);
    let swarm = server
        .swarm()
        .get_status(pb::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    let until = swarm.dispatch_paused_until.expect("paused");
    assert_eq!(swarm.accounts.len(), 1);
    assert_eq!(swarm.accounts[0].state, pb::AccountState::Paused as i32);
    assert_eq!(swarm.accounts[0].refusals, 1);
    assert!(
        swarm.dispatch_paused_reason.contains("rate limited"),
        "{}",
        swarm.dispatch_paused_reason
    );
    // Submitted while paused: it waits in the queue, then starts once the limit lifts.
    let next = server.submit(spec("after the limit")).await;
    assert_eq!(status_of(&server, &next.id).await, S::Queued);
    let started = server.wait_for(&next.id, K::TaskStarted).await;
    let started_at = started.time.unwrap();
    assert!(
        started_at.seconds >= until.seconds,
        "started at {started_at:?}, the limit lifted at {until:?}"
    );
    assert_eq!(status(&server.wait(&next.id).await), S::Completed);
    // The refused task resumed its session after the reset and completed, on its first
    // counted attempt.
    let done = server.wait(&limited.id).await;
    assert_eq!(status(&done), S::Completed);
    assert_eq!(done.attempts, 1);
    assert!(done.started_at.unwrap().seconds >= until.seconds);
    server.stop().await;
}

async fn status_of(server: &TestServer, id: &str) -> S {
    status(&server.get(id).await)
}

#[tokio::test]
async fn a_spent_workflow_budget_starts_nothing_more() {
    let server = TestServer::start(config(1)).await;
    let yaml = "name: thrifty\nbudget_usd: 0.5\ntasks:\n  - id: costly\n    prompt: spend sim:cost=0.6\n  - id: next\n    prompt: more\n    depends_on: [costly]\n  - id: other\n    prompt: other sim:delay=50\n";
    let request = pb::ExecuteWorkflowRequest {
        yaml: yaml.into(),
        ..Default::default()
    };
    let reply = server
        .workflows()
        .execute_workflow(request)
        .await
        .unwrap()
        .into_inner();
    let ids = reply.workflow.unwrap().task_ids;
    let costly = server.wait(&ids[0]).await;
    assert_eq!(status(&costly), S::Completed);
    for id in &ids[1..] {
        let task = server.wait(id).await;
        assert_eq!(
            task.failure_class,
            pb::FailureClass::BudgetExhausted as i32,
            "{task:?}"
        );
        assert!(
            task.error.contains("budget of $0.50 is spent"),
            "{}",
            task.error
        );
    }
    let workflow = server
        .workflows()
        .get_workflow(pb::GetWorkflowRequest {
            workflow_id: reply.workflow_id,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(workflow.status, pb::WorkflowStatus::Failed as i32);
    server.stop().await;
}

#[tokio::test]
async fn working_directories_outside_the_workspace_root_are_refused() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("inside")).unwrap();
    let config = claude_swarm::engine::EngineConfig {
        working_directory: root.path().into(),
        workspace_root: Some(root.path().into()),
        ..config(1)
    };
    let server = TestServer::start(config).await;
    for outside in ["/etc", "inside/../..", "../"] {
        let spec = pb::TaskSpec {
            working_directory: outside.into(),
            ..spec("x")
        };
        let err = server
            .tasks()
            .submit_task(pb::SubmitTaskRequest { task: Some(spec) })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{outside}");
        assert!(
            err.message().contains("task.working_directory")
                && err.message().contains("outside the workspace root"),
            "{}",
            err.message()
        );
    }
    let inside = server
        .submit(pb::TaskSpec {
            working_directory: "inside".into(),
            ..spec("fine")
        })
        .await;
    assert_eq!(status(&server.wait(&inside.id).await), S::Completed);
    let err = server
        .instances()
        .spawn_instances(pb::SpawnInstancesRequest {
            count: 1,
            working_directory: "/tmp".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    server.stop().await;
}

#[tokio::test]
async fn finished_tasks_beyond_the_retention_are_compacted_away() {
    // One instance: tasks finish in the order they were submitted.
    let config = claude_swarm::engine::EngineConfig {
        task_retention: 3,
        ..config(1)
    };
    let server = TestServer::start(config).await;
    let mut ids = Vec::new();
    for i in 0..8 {
        ids.push(server.submit(spec(&format!("quick {i}"))).await.id);
    }
    let last = server.submit(spec("last")).await;
    server.wait(&last.id).await;
    let listed = server
        .tasks()
        .list_tasks(pb::ListTasksRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tasks;
    assert!(listed.len() <= 4, "{} tasks kept", listed.len());
    let err = server
        .tasks()
        .get_task(pb::GetTaskRequest {
            task_id: ids[0].clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let status = server
        .swarm()
        .get_status(pb::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(status.tasks.unwrap().completed <= 4);
    server.stop().await;
}
