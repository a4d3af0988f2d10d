//! What a request may not do to the agent it starts, refused naming the field: misspelled
//! fields on REST, values the CLI would read as flags, variables that decide what the agent
//! loads; and a working directory that a symlink moved outside the workspace root after
//! the task was accepted.

mod common;

use claude_swarm::{
    agent::{AgentCommand, ProcessAgent},
    config::SIMULATE_AGENT,
    engine::EngineConfig,
    pb::{self, FailureClass, TaskStatus as S},
};
use common::{BIN, TestServer, config, spec, status};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use tonic::Code;

async fn post(server: &TestServer, path: &str, body: Value) -> (StatusCode, Value) {
    let response = Client::new()
        .post(format!("http://{}{path}", server.addr))
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap())
}

#[tokio::test]
async fn misspelled_fields_are_refused_on_rest_naming_the_field() {
    let server = TestServer::start(config(0)).await;
    let (status, body) = post(
        &server,
        "/tasks",
        json!({ "prompt": "x", "timout": 5, "prority": "critical" }),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let field = body["error"]["field"].as_str().unwrap();
    assert!(["timout", "prority"].contains(&field), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("did you mean"),
        "{body}"
    );
    for (path, request, field) in [
        (
            "/tasks",
            json!({ "task": { "prompt": "x" }, "priority": "high" }),
            "priority",
        ),
        (
            "/tasks",
            json!({ "prompt": "x", "options": { "envv": {} } }),
            "options.envv",
        ),
        (
            "/tasks/batch",
            json!({ "prompts": ["a"], "working_dir": "/tmp" }),
            "working_dir",
        ),
        (
            "/tasks/batch",
            json!({ "tasks": [{ "prompt": "a", "retry": 2 }] }),
            "tasks[0].retry",
        ),
        ("/instances/spawn", json!({ "cuont": 1 }), "cuont"),
        (
            "/workflows/execute",
            json!({ "yml": "name: x\ntasks: []\n" }),
            "yml",
        ),
    ] {
        let (status, body) = post(&server, path, request).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(body["error"]["field"], field, "{path}: {body}");
    }
    // The original service's own names stay accepted.
    let (status, body) = post(
        &server,
        "/tasks/batch",
        json!({ "prompts": ["a", "b"], "working_directory": env!("CARGO_MANIFEST_DIR"), "priority": "low" }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    server.stop().await;
}

#[tokio::test]
async fn values_the_cli_would_read_as_flags_and_guarded_variables_are_refused() {
    let server = TestServer::start(config(0)).await;
    let (status, body) = post(
        &server,
        "/tasks",
        json!({ "prompt": "x", "model": "--dangerously-skip-permissions" }),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "model");
    let refused = |spec: pb::TaskSpec| {
        let mut tasks = server.tasks();
        async move {
            tasks
                .submit_task(pb::SubmitTaskRequest { task: Some(spec) })
                .await
                .unwrap_err()
        }
    };
    let flagged = pb::TaskSpec {
        allowed_tools: vec!["Read".into(), "--foo".into()],
        ..spec("x")
    };
    let err = refused(flagged).await;
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("allowed_tools[1]"), "{err:?}");
    for (name, field) in [
        ("LD_PRELOAD", "options.env"),
        ("SWARM_TASK_ID", "options.env"),
    ] {
        let spec = pb::TaskSpec {
            options: Some(pb::AgentOptions {
                env: [(name.to_string(), "/tmp/x".to_string())].into(),
                ..Default::default()
            }),
            ..spec("x")
        };
        let err = refused(spec).await;
        assert_eq!(err.code(), Code::InvalidArgument, "{name}");
        assert!(
            err.message().contains(field) && err.message().contains(name),
            "{err:?}"
        );
    }
    let err = refused(pb::TaskSpec {
        id: "..".into(),
        ..spec("x")
    })
    .await;
    assert!(err.message().contains("task.id"), "{err:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_directory_a_symlink_moved_out_of_the_workspace_root_is_refused_when_the_run_starts() {
    let root = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("inside")).unwrap();
    let link = root.path().join("link");
    std::os::unix::fs::symlink(root.path().join("inside"), &link).unwrap();
    let agent = ProcessAgent::new(AgentCommand {
        program: BIN.into(),
        leading_args: vec![SIMULATE_AGENT.into()],
        label: "simulated".into(),
        stop_grace: std::time::Duration::from_secs(2),
        env: Vec::new(),
        long_lived: false,
        keep_worktrees: false,
        memory_limit: None,
        accounts: Default::default(),
        workspace_root: Some(root.path().into()),
    });
    let config = EngineConfig {
        working_directory: root.path().into(),
        workspace_root: Some(root.path().into()),
        ..config(1)
    };
    let server = TestServer::start_with_agent(config, agent).await;
    let pwd = |dir: &str| pb::TaskSpec {
        command: "pwd".into(),
        working_directory: dir.into(),
        ..Default::default()
    };
    // Through the link while it points inside: accepted, and run in the resolved directory.
    let fine = server.wait(&server.submit(pwd("link")).await.id).await;
    assert_eq!(status(&fine), S::Completed, "{fine:?}");
    let resolved = root.path().join("inside").canonicalize().unwrap();
    assert_eq!(fine.result.unwrap().text, resolved.display().to_string());

    // Accepted while the link points inside; it points outside by the time it runs.
    let blocker = server.submit(spec("hold the instance sim:hang")).await;
    server
        .wait_for(&blocker.id, pb::EventKind::TaskOutput)
        .await;
    let moved = server.submit(pwd("link")).await;
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(outside.path(), &link).unwrap();
    server.cancel(&blocker.id).await;
    let moved = server.wait(&moved.id).await;
    assert_eq!(status(&moved), S::Failed, "{moved:?}");
    assert_eq!(moved.failure_class, FailureClass::SpawnFailed as i32);
    assert!(
        moved.error.contains("outside the workspace root"),
        "{}",
        moved.error
    );
    server.stop().await;
}
