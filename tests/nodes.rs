//! Nodes on one PostgreSQL (`--store postgres://...`): `claude-swarm serve` processes on
//! loopback with the simulated agent and a 2 s lease. One owns the database and runs the
//! swarm; the others attach to it and lend it their instances. Every node runs tasks; a
//! killed node's and a frozen node's runs finish elsewhere, each task once, in one event
//! order; a wrong link secret is refused. A killed owner's work, a workflow mid-way among
//! it, is finished by another node with nothing acknowledged lost; a frozen owner is fenced
//! out once its lease ends: it exits when it wakes, and every task completes exactly once,
//! in one event order with no gap; an owner stopped with SIGTERM hands its running and
//! queued work to another node.

mod common;

use std::{collections::HashMap, time::Duration};

use claude_swarm::pb::{
    self, EventKind, TaskStatus as S, workflow_service_client::WorkflowServiceClient,
};
use common::{
    TERMINAL, first_event, get_on,
    postgres::{Node, database_async, events_until, new_owner},
    spec, status, submit_on,
};

const NODE_ARGS: &[&str] = &["--instances", "3", "--lease", "2"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_finishes_a_killed_owners_work_and_workflow_with_nothing_lost() {
    let url = database_async().await;
    let mut owner = Node::spawn(&url, "a", NODE_ARGS);
    let a = owner.serving(Duration::from_secs(30)).await;
    let standbys = [
        Node::spawn(&url, "b", NODE_ARGS),
        Node::spawn(&url, "c", NODE_ARGS),
    ];
    let yaml = "name: across nodes
tasks:
  - id: plan
    prompt: plan sim:delay=300
  - id: build
    prompt: build sim:delay=2000
    depends_on: [plan]
  - id: check
    prompt: check sim:delay=300
    depends_on: [build]
";
    let workflow = WorkflowServiceClient::new(a.clone())
        .execute_workflow(pb::ExecuteWorkflowRequest {
            yaml: yaml.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let steps = workflow.workflow.clone().unwrap().task_ids;
    let mut tasks = Vec::new();
    for i in 0..4 {
        tasks.push(
            submit_on(&a, spec(&format!("work {i} sim:delay=2000")))
                .await
                .id,
        );
    }
    // Mid-workflow: its first step is done and the second runs on the owner.
    let build = steps[1].clone();
    first_event(&a, &build, &[EventKind::TaskStarted]).await;
    owner.signal(libc::SIGKILL);
    assert_eq!(
        owner.exit_code(Duration::from_secs(10)),
        None,
        "killed by a signal"
    );

    // The kill ends the owner's sessions at once: one standby takes over within the lease,
    // the other stands by still.
    let (_, b) = new_owner(&standbys, Duration::from_secs(15)).await;
    let finishing = async {
        for id in steps.iter().chain(&tasks) {
            first_event(&b, id, &TERMINAL).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(15), finishing)
        .await
        .expect("the killed owner's work finished elsewhere within 15 s");
    for id in steps.iter().chain(&tasks) {
        let task = get_on(&b, id).await;
        assert_eq!(status(&task), S::Completed, "{task:?}");
    }
    assert!(
        get_on(&b, &build).await.attempts >= 2,
        "build ran again on the standby"
    );
    let done = WorkflowServiceClient::new(b.clone())
        .get_workflow(pb::GetWorkflowRequest {
            workflow_id: workflow.workflow_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        done.status,
        pb::WorkflowStatus::Completed as i32,
        "{done:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_runs_tasks_and_a_killed_or_frozen_nodes_work_completes_once_elsewhere() {
    let url = database_async().await;
    let args = &["--instances", "2", "--lease", "2"];
    let owner = Node::spawn(&url, "a", args);
    let a = owner.serving(Duration::from_secs(30)).await;
    let frozen = Node::spawn(&url, "b", args);
    let mut killed = Node::spawn(&url, "c", args);
    // b and c attach to the owner and lend it their instances: its stream shows them.
    let lent = |prefix: &'static str| {
        move |e: &pb::Event| {
            e.kind == EventKind::InstanceSpawned as i32 && e.instance_id.starts_with(prefix)
        }
    };
    events_until(&a, 0, |seen| {
        seen.iter().filter(|e| lent("b/")(e)).count() == 2
            && seen.iter().filter(|e| lent("c/")(e)).count() == 2
    })
    .await;

    // GetStatus lists the nodes, the owner first, each with its instances.
    let swarm = pb::swarm_service_client::SwarmServiceClient::new(a.clone())
        .get_status(pb::GetStatusRequest::default())
        .await
        .unwrap()
        .into_inner();
    let nodes: Vec<(&str, bool, u32)> = swarm
        .nodes
        .iter()
        .map(|n| (n.name.as_str(), n.owner, n.instances))
        .collect();
    assert_eq!(nodes, [("a", true, 2), ("b", false, 2), ("c", false, 2)]);
    assert!(swarm.nodes.iter().all(|n| n.last_heard.is_some()));

    // Six tasks for six instances: every node runs two of them.
    let mut tasks = Vec::new();
    for i in 0..6 {
        tasks.push(
            submit_on(&a, spec(&format!("work {i} sim:delay=3000")))
                .await
                .id,
        );
    }
    let mut first_instance = HashMap::new();
    for id in &tasks {
        let started = first_event(&a, id, &[EventKind::TaskStarted]).await;
        first_instance.insert(id.clone(), started.instance_id);
    }
    let node_of = |instance: &str| match instance.split_once('/') {
        Some((node, _)) => node.to_owned(),
        None => "a".to_owned(),
    };
    let mut per_node: HashMap<String, usize> = HashMap::new();
    for instance in first_instance.values() {
        *per_node.entry(node_of(instance)).or_default() += 1;
    }
    assert_eq!(
        per_node,
        HashMap::from([("a".into(), 2), ("b".into(), 2), ("c".into(), 2)]),
        "{first_instance:?}"
    );

    // c is killed and b frozen past its lease, mid-run: the owner hands their runs to
    // the instances left; b wakes up after that, its late results refused.
    killed.signal(libc::SIGKILL);
    frozen.signal(libc::SIGSTOP);
    assert_eq!(killed.exit_code(Duration::from_secs(10)), None);
    let finishing = async {
        for id in &tasks {
            first_event(&a, id, &TERMINAL).await;
        }
    };
    // b wakes once the owner has dropped it (its instances terminated), not before.
    let thawed = async {
        events_until(&a, 0, |seen| {
            seen.iter()
                .filter(|e| {
                    e.kind == EventKind::InstanceTerminated as i32
                        && e.instance_id.starts_with("b/")
                })
                .count()
                == 2
        })
        .await;
        frozen.signal(libc::SIGCONT);
    };
    let (done, ()) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(15), finishing),
        thawed
    );
    done.expect("the lost nodes' tasks finish elsewhere within 15 s");

    // One stream on the owner saw every node's events, in one order with no gap, and
    // each task completed exactly once.
    let events = events_until(&a, 0, |seen| {
        seen.iter()
            .filter(|e| e.kind == EventKind::TaskCompleted as i32)
            .count()
            >= tasks.len()
    })
    .await;
    let sequences: Vec<u64> = events.iter().map(|e| e.sequence).collect();
    let expected: Vec<u64> = (sequences[0]..sequences[0] + sequences.len() as u64).collect();
    assert_eq!(sequences, expected);
    for id in &tasks {
        let completed: Vec<&pb::Event> = events
            .iter()
            .filter(|e| e.kind == EventKind::TaskCompleted as i32 && &e.task_id == id)
            .collect();
        assert_eq!(completed.len(), 1, "{id} completed once");
        let task = get_on(&a, id).await;
        assert_eq!(status(&task), S::Completed, "{task:?}");
        let first = &first_instance[id];
        if node_of(first) == "a" {
            assert_eq!(task.attempts, 1, "{task:?}");
        } else {
            // The lost node's attempt stays in the history, not counted against retries.
            assert_eq!(task.attempts, 2, "{task:?}");
            assert_eq!(
                task.history[0].failure_class,
                pb::FailureClass::NodeLost as i32,
                "{task:?}"
            );
            assert_ne!(
                &task.instance_id, first,
                "{id} ran on a lost node and finished elsewhere"
            );
        }
    }
    // Events of runs on b and c are in the owner's stream.
    for node in ["b/", "c/"] {
        assert!(
            events
                .iter()
                .any(|e| e.kind == EventKind::TaskStarted as i32 && e.instance_id.starts_with(node)),
            "{node}"
        );
    }
    drop(frozen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_link_refuses_a_caller_without_the_databases_secret() {
    use claude_swarm::pb::node_service_client::NodeServiceClient;
    let url = database_async().await;
    let owner = Node::spawn(&url, "a", NODE_ARGS);
    let a = owner.serving(Duration::from_secs(30)).await;
    let attach = |json: &str| {
        let mut client = NodeServiceClient::new(a.clone());
        let frame = pb::LinkFrame {
            json: json.as_bytes().to_vec(),
        };
        async move {
            client
                .attach(tokio_stream::iter([frame]))
                .await
                .expect_err("refused")
        }
    };
    let wrong = attach(r#"{"Hello":{"node":"evil","instances":50,"secret":"guess"}}"#).await;
    assert_eq!(wrong.code(), tonic::Code::PermissionDenied, "{wrong:?}");
    let garbage = attach("not a frame").await;
    assert_eq!(garbage.code(), tonic::Code::InvalidArgument, "{garbage:?}");
    // Calls that never say hello hold a place each until the lease is up: past
    // max_streams_per_key (32 by client address) they are refused at once.
    let mut waiting = Vec::new();
    for _ in 0..40 {
        let mut client = NodeServiceClient::new(a.clone());
        waiting.push(tokio::spawn(async move {
            client
                .attach(tokio_stream::pending::<pb::LinkFrame>())
                .await
                .expect_err("no hello")
                .code()
        }));
    }
    let mut codes = HashMap::new();
    for call in waiting {
        *codes.entry(call.await.unwrap()).or_insert(0) += 1;
    }
    assert_eq!(
        codes,
        HashMap::from([
            (tonic::Code::DeadlineExceeded, 32),
            (tonic::Code::ResourceExhausted, 8)
        ])
    );
    // Nothing was lent: the swarm has the owner's own instances only.
    let instances = pb::instance_service_client::InstanceServiceClient::new(a.clone())
        .list_instances(pb::ListInstancesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .instances;
    assert!(
        instances.iter().all(|i| !i.id.contains('/')),
        "{instances:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stopped_with_sigterm_exits_and_the_owner_runs_its_tasks_again() {
    let url = database_async().await;
    let owner = Node::spawn(&url, "a", &["--instances", "1", "--lease", "2"]);
    let a = owner.serving(Duration::from_secs(30)).await;
    let mut lender = Node::spawn(&url, "b", &["--instances", "1", "--lease", "2"]);
    events_until(&a, 0, |seen| {
        seen.iter()
            .any(|e| e.kind == EventKind::InstanceSpawned as i32 && e.instance_id.starts_with("b/"))
    })
    .await;
    let first = submit_on(&a, spec("first sim:delay=3000")).await.id;
    let second = submit_on(&a, spec("second sim:delay=3000")).await.id;
    let on_b = {
        let one = first_event(&a, &first, &[EventKind::TaskStarted]).await;
        let two = first_event(&a, &second, &[EventKind::TaskStarted]).await;
        if one.instance_id.starts_with("b/") {
            first.clone()
        } else {
            assert!(two.instance_id.starts_with("b/"), "{one:?} {two:?}");
            second.clone()
        }
    };
    lender.signal(libc::SIGTERM);
    assert_eq!(
        lender.exit_code(Duration::from_secs(10)),
        Some(0),
        "a node waiting for the lease stops cleanly"
    );
    first_event(&a, &on_b, &TERMINAL).await;
    let task = get_on(&a, &on_b).await;
    assert_eq!(status(&task), S::Completed, "{task:?}");
    assert_eq!(
        task.attempts, 2,
        "handed back by b, run again on a: {task:?}"
    );
    assert!(!task.instance_id.starts_with("b/"), "{task:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_owner_is_fenced_out_and_each_task_completes_once_in_one_event_order() {
    let url = database_async().await;
    let mut owner = Node::spawn(&url, "a", NODE_ARGS);
    let a = owner.serving(Duration::from_secs(30)).await;
    let standby = Node::spawn(&url, "b", NODE_ARGS);
    let mut tasks = Vec::new();
    for i in 0..3 {
        tasks.push(
            submit_on(&a, spec(&format!("slow {i} sim:delay=3000")))
                .await
                .id,
        );
    }
    for id in &tasks {
        first_event(&a, id, &[EventKind::TaskStarted]).await;
    }
    // Frozen past its lease: the server ends its sessions and the standby takes over.
    owner.signal(libc::SIGSTOP);
    let b = standby.serving(Duration::from_secs(20)).await;
    owner.signal(libc::SIGCONT);
    assert_eq!(
        owner.exit_code(Duration::from_secs(20)),
        Some(claude_swarm::app::LEASE_LOST),
        "the old owner learns it lost the lease and stops"
    );
    for id in &tasks {
        first_event(&b, id, &TERMINAL).await;
    }
    let ids: Vec<&String> = tasks.iter().collect();
    let events = events_until(&b, 0, |seen| {
        let completed = seen
            .iter()
            .filter(|e| e.kind == EventKind::TaskCompleted as i32)
            .count();
        completed >= ids.len()
    })
    .await;
    // One order for the swarm: the owner's stored events, then the successor's, no gap.
    let sequences: Vec<u64> = events.iter().map(|e| e.sequence).collect();
    let expected: Vec<u64> = (sequences[0]..sequences[0] + sequences.len() as u64).collect();
    assert_eq!(sequences, expected);
    let mut completions: HashMap<&str, usize> = HashMap::new();
    for event in &events {
        if event.kind == EventKind::TaskCompleted as i32 {
            *completions.entry(event.task_id.as_str()).or_default() += 1;
        }
    }
    for id in &tasks {
        assert_eq!(
            completions.get(id.as_str()),
            Some(&1),
            "{id} completed once"
        );
        let task = get_on(&b, id).await;
        assert_eq!(status(&task), S::Completed, "{task:?}");
        assert_eq!(
            task.attempts, 2,
            "attempt 1 died with the frozen owner's lease"
        );
    }
    // The first attempts' starts, stored by the owner, are in the same stream.
    let started_first = events
        .iter()
        .filter(|e| e.kind == EventKind::TaskStarted as i32)
        .count();
    assert_eq!(started_first, 2 * tasks.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_stopped_with_sigterm_hands_its_running_and_queued_work_to_a_standby() {
    let url = database_async().await;
    let mut owner = Node::spawn(&url, "a", NODE_ARGS);
    let a = owner.serving(Duration::from_secs(30)).await;
    let standby = Node::spawn(&url, "b", NODE_ARGS);
    // Three run on the owner's three instances, three wait in its queue.
    let mut tasks = Vec::new();
    for i in 0..6 {
        tasks.push(
            submit_on(&a, spec(&format!("long {i} sim:delay=1500")))
                .await
                .id,
        );
    }
    for id in &tasks[..3] {
        first_event(&a, id, &[EventKind::TaskStarted]).await;
    }
    owner.signal(libc::SIGTERM);
    assert_eq!(
        owner.exit_code(Duration::from_secs(20)),
        Some(0),
        "a clean stop"
    );
    let b = standby.serving(Duration::from_secs(15)).await;
    for id in &tasks {
        first_event(&b, id, &TERMINAL).await;
        let task = get_on(&b, id).await;
        assert_eq!(status(&task), S::Completed, "{task:?}");
    }
    for id in &tasks[..3] {
        assert_eq!(
            get_on(&b, id).await.attempts,
            2,
            "stopped on the owner, run again"
        );
    }
}

/// Any node's port serves the whole swarm: b, which does not own the database, forwards
/// every surface to the owner a (gRPC and its event stream, REST, SSE, the WebSocket) once
/// its own guard has screened the request by b's names. The owner sees the client, not b;
/// it trusts no forwarding without the database's link secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_nodes_port_sees_and_steers_the_whole_swarm_and_screens_what_it_forwards() {
    use serde_json::{Value, json};
    use tokio_stream::StreamExt as _;
    use tokio_tungstenite::tungstenite::{client::IntoClientRequest as _, http::HeaderValue};
    let url = database_async().await;
    let args = &["--instances", "1", "--lease", "2"];
    let owner = Node::spawn(&url, "a", args);
    let a = owner.serving(Duration::from_secs(30)).await;
    let forwarding = Node::spawn(&url, "b", args);
    events_until(&a, 0, |seen| {
        seen.iter()
            .any(|e| e.kind == EventKind::InstanceSpawned as i32 && e.instance_id.starts_with("b/"))
    })
    .await;
    let b = forwarding.connect().await;

    // gRPC on b: two tasks, one on each node's instance; b's stream shows both nodes'
    // events in the swarm's one order.
    let mut ids = Vec::new();
    for i in 0..2 {
        let task = submit_on(&b, spec(&format!("through b {i} sim:delay=1500"))).await;
        ids.push(task.id);
    }
    let events = events_until(&b, 0, |seen| {
        seen.iter()
            .filter(|e| e.kind == EventKind::TaskCompleted as i32)
            .count()
            == 2
    })
    .await;
    let sequences: Vec<u64> = events.iter().map(|e| e.sequence).collect();
    let expected: Vec<u64> = (sequences[0]..sequences[0] + sequences.len() as u64).collect();
    assert_eq!(sequences, expected);
    let mut on_b: Vec<bool> = events
        .iter()
        .filter(|e| e.kind == EventKind::TaskStarted as i32)
        .map(|e| e.instance_id.starts_with("b/"))
        .collect();
    on_b.sort();
    assert_eq!(on_b, [false, true], "one task on each node: {events:?}");

    // REST on b: the tasks and the nodes as the owner has them.
    let http = reqwest::Client::new();
    let base = format!("http://{}", forwarding.address());
    let get = |path: String| {
        let http = http.clone();
        async move {
            let response = http.get(path).send().await.unwrap();
            assert!(response.status().is_success(), "{response:?}");
            response.json::<Value>().await.unwrap()
        }
    };
    let task = get(format!("{base}/tasks/{}", ids[0])).await;
    assert_eq!(task["status"], "completed", "{task}");
    let swarm = get(format!("{base}/status")).await;
    let names: Vec<&str> = swarm["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b"], "{swarm}");

    // Steered through b by a client on 127.0.0.2: a long task submitted and cancelled.
    // The owner's audit names that client, not b.
    let elsewhere = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let submitted: Value = elsewhere
        .post(format!("{base}/tasks"))
        .json(&json!({ "prompt": "long sim:delay=60000" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let long = submitted["task_id"].as_str().expect("a task id").to_owned();
    first_event(&a, &long, &[EventKind::TaskStarted]).await;
    let cancel = elsewhere
        .delete(format!("{base}/tasks/{long}"))
        .send()
        .await
        .unwrap();
    assert!(cancel.status().is_success(), "{cancel:?}");
    first_event(&a, &long, &TERMINAL).await;
    assert_eq!(status(&get_on(&a, &long).await), S::Cancelled);
    let audit = get(format!("http://{}/audit", owner.address())).await;
    let callers: Vec<(&str, &str)> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap(),
                r["client_address"].as_str().unwrap(),
            )
        })
        .collect();
    for action in ["POST /tasks", "DELETE /tasks/{id}"] {
        assert!(
            callers.contains(&(action, "127.0.0.2")),
            "{action} from the client: {callers:?}"
        );
    }

    // SSE and the WebSocket on b replay the swarm's events from the start.
    let mut sse = http
        .get(format!("{base}/events?after=0"))
        .send()
        .await
        .unwrap()
        .bytes_stream();
    let mut text = String::new();
    while !text.contains("task_cancelled") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), sse.next())
            .await
            .expect("SSE keeps coming")
            .expect("the stream goes on")
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let ws_url = format!("ws://{}/ws/stream?after=0", forwarding.address());
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url.clone())
        .await
        .unwrap();
    let mut kinds = Vec::new();
    while !kinds.iter().any(|k| k == "task_cancelled") {
        let message = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("the WebSocket keeps coming")
            .unwrap()
            .unwrap();
        let event: Value = serde_json::from_str(message.to_text().unwrap()).unwrap();
        kinds.push(event["kind"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(
        kinds.iter().filter(|k| *k == "task_completed").count(),
        2,
        "{kinds:?}"
    );

    // b screens what a page could send against its user, by b's own names: none of it
    // reaches the owner.
    let tasks_before = get(format!("{base}/tasks?limit=100")).await["tasks"]
        .as_array()
        .unwrap()
        .len();
    let task_post = || http.post(format!("{base}/tasks"));
    let refused = [
        (
            task_post()
                .header("origin", "http://evil.example")
                .json(&json!({ "prompt": "x" })),
            403,
        ),
        (
            task_post()
                .header("host", "evil.example")
                .json(&json!({ "prompt": "x" })),
            421,
        ),
        (
            task_post()
                .header("content-type", "text/plain")
                .body(r#"{"prompt":"x"}"#),
            415,
        ),
    ];
    for (request, code) in refused {
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), code, "{response:?}");
    }
    let mut from_page = ws_url.into_client_request().unwrap();
    from_page
        .headers_mut()
        .insert("origin", HeaderValue::from_static("http://evil.example"));
    match tokio_tungstenite::connect_async(from_page).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 403)
        }
        other => panic!("a foreign page's WebSocket is refused: {other:?}"),
    }
    let tasks_after = get(format!("{base}/tasks?limit=100")).await["tasks"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(tasks_after, tasks_before);

    // The owner takes no forwarding without the database's link secret.
    let forged = http
        .get(format!("http://{}/status", owner.address()))
        .header("x-swarm-link-secret", "a guess")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 403, "{forged:?}");
}

/// Keys are the owner's to check: a node forwards a caller's key, and one without a key
/// (or with a wrong one) is refused as the owner would refuse it. A node asked at once,
/// before it has looked up the owner, waits for that look instead of failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nodes_port_leaves_the_owner_to_ask_who_is_calling() {
    const KEY: &str = "ci-key-0123456789abcdef";
    let url = database_async().await;
    let keys = [("SWARM_API_KEYS", "ci:operate:ci-key-0123456789abcdef")];
    let args = &["--instances", "1", "--lease", "2"];
    let owner = Node::spawn_with(&url, "a", args, &keys);
    owner.serving(Duration::from_secs(30)).await;
    let forwarding = Node::spawn_with(&url, "b", args, &keys);
    let status = format!("http://{}/status", forwarding.address());
    let http = reqwest::Client::new();
    let with_key = http.get(&status).bearer_auth(KEY).send().await.unwrap();
    assert_eq!(with_key.status().as_u16(), 200, "{with_key:?}");
    let without = http.get(&status).send().await.unwrap();
    assert_eq!(without.status().as_u16(), 401, "{without:?}");
    let wrong = http
        .get(&status)
        .bearer_auth("not-the-key-at-all")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401, "{wrong:?}");
    // gRPC the same way.
    let mut swarm = pb::swarm_service_client::SwarmServiceClient::new(forwarding.connect().await);
    let refused = swarm
        .get_status(pb::GetStatusRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    let mut request = tonic::Request::new(pb::GetStatusRequest::default());
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {KEY}").parse().unwrap());
    let answered = swarm.get_status(request).await.unwrap().into_inner();
    assert_eq!(answered.nodes[0].name, "a");
}

/// Approvals are the swarm's: a run on b asks for a tool, the question crosses the link to
/// the owner, a person decides through b's port, and the answer goes back to b's run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_asked_on_one_node_is_approved_through_another_and_runs_there() {
    use pb::approval_service_client::ApprovalServiceClient;
    let url = database_async().await;
    let args = &["--instances", "1", "--lease", "2"];
    let owner = Node::spawn(&url, "a", args);
    let a = owner.serving(Duration::from_secs(30)).await;
    let forwarding = Node::spawn(&url, "b", args);
    let spawned = events_until(&a, 0, |seen| {
        seen.iter()
            .any(|e| e.kind == EventKind::InstanceSpawned as i32 && e.instance_id.starts_with("b/"))
    })
    .await;
    let on_b = spawned.last().unwrap().instance_id.clone();
    let b = forwarding.connect().await;
    let outside = tempfile::tempdir().unwrap();
    let marker = outside.path().join("written-on-b");
    let task = submit_on(
        &b,
        pb::TaskSpec {
            instance_id: on_b.clone(),
            ..spec(&format!("write it sim:ask={}", marker.display()))
        },
    )
    .await;
    let asked = first_event(&b, &task.id, &[EventKind::ApprovalRequested]).await;
    let Some(pb::event::Payload::Approval(approval)) = asked.payload else {
        panic!("an approval: {asked:?}");
    };
    assert_eq!(approval.tool_name, "Bash");
    assert!(!marker.exists(), "nothing runs before the decision");
    ApprovalServiceClient::new(b.clone())
        .decide_approval(pb::DecideApprovalRequest {
            approval_id: approval.id.clone(),
            allow: true,
            ..Default::default()
        })
        .await
        .unwrap();
    first_event(&b, &task.id, &TERMINAL).await;
    let done = get_on(&a, &task.id).await;
    assert_eq!(status(&done), S::Completed, "{done:?}");
    assert_eq!(done.instance_id, on_b);
    assert!(marker.exists(), "b's run wrote it once allowed");
}

#[test]
fn config_show_masks_the_stores_password() {
    let out = std::process::Command::new(common::BIN)
        .args([
            "config",
            "show",
            "--json",
            "--agent",
            "simulated",
            "--node-name",
            "n1",
        ])
        .env("SWARM_STORE", "postgres://swarm:hunter2@db.internal/swarm")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["store"], "postgres://swarm:***@db.internal/swarm");
    assert_eq!(shown["node"], "n1");
    assert_eq!(shown["lease"], 10.0);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("hunter2"));
}
