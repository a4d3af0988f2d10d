//! Approvals end to end with the simulated agent, which speaks the CLI's control protocol
//! (`sim:ask=PATH`: a Bash call writing PATH asks `can_use_tool` and, allowed, runs): over
//! gRPC, REST and the command line, with deadlines, rules, "always", keys and a restart.

mod common;

use std::{path::Path, time::Duration};

use claude_swarm::{
    api::{
        auth::{ApiKey, Keys},
        server::ServerOptions,
    },
    engine::EngineConfig,
    pb::{
        self, EventKind as K, TaskStatus as S, approval_service_client::ApprovalServiceClient,
        event_service_client::EventServiceClient,
    },
};
use common::{BIN, TestServer, config, serve::Served, simulated_agent, spec, status};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tonic::{Request, transport::Channel};

fn asking(marker: &Path) -> pb::TaskSpec {
    spec(&format!("write it sim:ask={}", marker.display()))
}

fn approvals(channel: &Channel) -> ApprovalServiceClient<Channel> {
    ApprovalServiceClient::new(channel.clone())
}

/// The approval of the task's first `approval_requested` event.
async fn requested(server: &TestServer, task: &str) -> pb::Approval {
    match server.wait_for(task, K::ApprovalRequested).await.payload {
        Some(pb::event::Payload::Approval(a)) => a,
        other => panic!("an approval for {task}: {other:?}"),
    }
}

/// Approvals waiting on a person, as `GetStatus` and `/metrics` count them.
async fn pending_counts(server: &TestServer) -> (u64, f64) {
    let status = server
        .swarm()
        .get_status(pb::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    let text = reqwest::get(format!("http://{}/metrics", server.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let metric = text
        .lines()
        .find_map(|l| l.strip_prefix("swarm_approvals_pending "))
        .unwrap_or_else(|| panic!("no swarm_approvals_pending in\n{text}"));
    (status.approvals_pending, metric.trim().parse().unwrap())
}

fn decision(id: &str, allow: bool) -> pb::DecideApprovalRequest {
    pb::DecideApprovalRequest {
        approval_id: id.into(),
        allow,
        ..Default::default()
    }
}

#[tokio::test]
async fn allowed_the_tool_runs_and_denied_it_does_not() {
    let server = TestServer::start(config(2)).await;
    let outside = tempfile::tempdir().unwrap();
    let (yes, no) = (outside.path().join("yes"), outside.path().join("no"));
    let allowed = server.submit(asking(&yes)).await;
    let denied = server.submit(asking(&no)).await;
    let a = requested(&server, &allowed.id).await;
    let d = requested(&server, &denied.id).await;
    assert_eq!(a.tool_name, "Bash");
    let input = serde_json::to_value(a.input.as_ref().unwrap()).unwrap();
    assert_eq!(
        input["command"],
        format!("touch {} && echo wrote-it", yes.display())
    );
    assert_eq!(a.blocked_path, yes.display().to_string());
    assert!(!a.permission_suggestions.as_ref().unwrap().values.is_empty());

    // Both wait: listed as pending, the tasks still running, nothing on disk.
    let pending = approvals(&server.channel)
        .list_approvals(pb::ListApprovalsRequest {
            state: vec![pb::ApprovalState::Pending as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .approvals;
    // In the order they were asked, which two parallel runs do not fix.
    let mut ids: Vec<&str> = pending.iter().map(|a| a.id.as_str()).collect();
    ids.sort_unstable();
    let mut want = [a.id.as_str(), d.id.as_str()];
    want.sort_unstable();
    assert_eq!(ids, want);
    assert_eq!(status(&server.get(&allowed.id).await), S::Running);
    assert!(!yes.exists() && !no.exists());
    assert_eq!(
        pending_counts(&server).await,
        (2, 2.0),
        "status and /metrics"
    );

    approvals(&server.channel)
        .decide_approval(decision(&a.id, true))
        .await
        .unwrap();
    let mut deny = decision(&d.id, false);
    deny.message = "not outside the project".into();
    let decided = approvals(&server.channel)
        .decide_approval(deny)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(decided.state, pb::ApprovalState::Denied as i32);
    assert_eq!(decided.decided_by, "anonymous");

    let done = server.wait(&allowed.id).await;
    assert_eq!(status(&done), S::Completed, "{}", done.error);
    assert!(yes.exists(), "the allowed command ran");
    let result = done.result.unwrap();
    assert_eq!(result.text, "tool said: wrote-it");
    assert!(result.permission_denials.is_empty());

    let refused = server.wait(&denied.id).await;
    assert_eq!(pending_counts(&server).await, (0, 0.0), "none left waiting");
    assert_eq!(status(&refused), S::Completed);
    assert!(!no.exists(), "the denied command did not run");
    let result = refused.result.unwrap();
    assert_eq!(result.text, "tool said: not outside the project");
    assert_eq!(result.permission_denials.len(), 1);
    assert_eq!(result.permission_denials[0].tool_name, "Bash");
    let event = server.wait_for(&denied.id, K::PermissionDenied).await;
    match event.payload {
        Some(pb::event::Payload::Denial(denial)) => {
            assert_eq!(denial.message, "not outside the project")
        }
        other => panic!("a denial: {other:?}"),
    }

    // Decided is decided.
    let again = approvals(&server.channel)
        .decide_approval(decision(&a.id, false))
        .await
        .unwrap_err();
    assert_eq!(again.code(), tonic::Code::FailedPrecondition);
    assert!(
        again.message().contains("already allowed"),
        "{}",
        again.message()
    );
    server.stop().await;
}

#[tokio::test]
async fn rules_deadlines_and_ask_false_decide_without_a_person() {
    let server = TestServer::start(EngineConfig {
        approval_timeout: Duration::from_millis(300),
        ..config(3)
    })
    .await;
    let outside = tempfile::tempdir().unwrap();
    let (ruled, late, unasked) = (
        outside.path().join("ruled"),
        outside.path().join("late"),
        outside.path().join("unasked"),
    );
    let by_rule = server
        .submit(pb::TaskSpec {
            permissions: Some(pb::PermissionPolicy {
                allow: vec![format!("Bash(touch {} && echo wrote-it)", ruled.display())],
                ..Default::default()
            }),
            ..asking(&ruled)
        })
        .await;
    let expiring = server
        .submit(pb::TaskSpec {
            on_permission_denied: pb::DenialPolicy::Fail as i32,
            ..asking(&late)
        })
        .await;
    let not_asked = server
        .submit(pb::TaskSpec {
            permissions: Some(pb::PermissionPolicy {
                ask: Some(false),
                ..Default::default()
            }),
            ..asking(&unasked)
        })
        .await;

    let done = server.wait(&by_rule.id).await;
    assert_eq!(status(&done), S::Completed, "{}", done.error);
    assert!(ruled.exists());

    let expired = server.wait(&expiring.id).await;
    assert_eq!(status(&expired), S::Failed);
    assert_eq!(
        expired.failure_class,
        pb::FailureClass::PermissionDenied as i32
    );
    assert!(!late.exists());
    let listed = approvals(&server.channel)
        .list_approvals(pb::ListApprovalsRequest {
            task_id: expiring.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .approvals;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, pb::ApprovalState::Expired as i32);
    assert_eq!(listed[0].decided_by, "deadline");
    assert!(listed[0].message.contains("not decided within"));

    let refused = server.wait(&not_asked.id).await;
    assert_eq!(status(&refused), S::Completed);
    assert!(!unasked.exists());
    assert_eq!(refused.result.unwrap().permission_denials.len(), 1);
    let none = approvals(&server.channel)
        .list_approvals(pb::ListApprovalsRequest {
            task_id: not_asked.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .approvals;
    assert!(none.is_empty(), "ask: false makes no approval");
    server.stop().await;
}

#[tokio::test]
async fn time_spent_waiting_on_a_person_is_not_the_tasks() {
    let server = TestServer::start(config(2)).await;
    let outside = tempfile::tempdir().unwrap();
    let marker = outside.path().join("marker");
    let task = server
        .submit(pb::TaskSpec {
            timeout: 1.0,
            ..asking(&marker)
        })
        .await;
    let approval = requested(&server, &task.id).await;
    // A control with the same timeout, started after the question: once it has timed out,
    // more than the asking task's whole timeout has passed while it waited on a person.
    let control = server
        .submit(pb::TaskSpec {
            timeout: 1.0,
            ..spec("sim:hang")
        })
        .await;
    let control = server.wait(&control.id).await;
    assert_eq!(control.failure_class, pb::FailureClass::Timeout as i32);
    assert_eq!(status(&server.get(&task.id).await), S::Running);
    approvals(&server.channel)
        .decide_approval(decision(&approval.id, true))
        .await
        .unwrap();
    let done = server.wait(&task.id).await;
    assert_eq!(status(&done), S::Completed, "{}", done.error);
    assert!(marker.exists());
    server.stop().await;
}

#[tokio::test]
async fn rest_lists_gets_and_decides_and_bad_decisions_name_their_field() {
    let server = TestServer::start(config(2)).await;
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::new();
    let outside = tempfile::tempdir().unwrap();
    let marker = outside.path().join("marker");
    let task = server.submit(asking(&marker)).await;
    let approval = requested(&server, &task.id).await;

    let listed: Value = http
        .get(format!(
            "{base}/approvals?state=pending&task_id={}",
            task.id
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["approvals"][0]["id"], approval.id.as_str());
    assert_eq!(listed["approvals"][0]["state"], "pending");
    assert_eq!(
        listed["approvals"][0]["input"]["command"],
        format!("touch {} && echo wrote-it", marker.display())
    );
    let one: Value = http
        .get(format!("{base}/approvals/{}", approval.id))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["tool_name"], "Bash");
    let missing = http
        .get(format!("{base}/approvals/apr-0"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    let decide = |body: Value| {
        http.post(format!("{base}/approvals/{}/decision", approval.id))
            .json(&body)
            .send()
    };
    for (body, field) in [
        (
            json!({ "allow": true, "updated_input": "rm -rf /" }),
            "updated_input",
        ),
        (json!({ "allow": true, "always": "everywhere" }), "always"),
        (json!({ "allow": "yes" }), "allow"),
        (json!({ "allow": true, "always": "workflow" }), "always"),
    ] {
        let response = decide(body.clone()).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["field"], field, "{body}: {error}");
    }
    // Nothing changed: it is still pending, and an edited input runs.
    let edited = outside.path().join("edited");
    let response = decide(json!({
        "allow": true,
        "updated_input": { "command": format!("touch {}", edited.display()) },
    }))
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let decided: Value = response.json().await.unwrap();
    assert_eq!(decided["state"], "allowed");
    let done = server.wait(&task.id).await;
    assert_eq!(status(&done), S::Completed, "{}", done.error);
    assert!(edited.exists() && !marker.exists(), "the edited input ran");
    let again = decide(json!({ "allow": false })).await.unwrap();
    assert_eq!(again.status(), StatusCode::CONFLICT);
    server.stop().await;
}

const OPERATE: &str = "operate-key-0123456789";
const ADMIN: &str = "admin-key-0123456789";

#[tokio::test]
async fn always_adds_the_rule_and_a_swarm_wide_one_needs_admin() {
    let keys = Keys::new([
        ApiKey::from_entry(&format!("ops:operate:{OPERATE}")).unwrap(),
        ApiKey::from_entry(&format!("root:admin:{ADMIN}")).unwrap(),
    ])
    .unwrap();
    let options = ServerOptions {
        keys,
        ..ServerOptions::default()
    };
    let server = TestServer::start_with_options(config(2), simulated_agent(), options).await;
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::new();
    let get = |path: String| {
        let request = http.get(format!("{base}{path}")).bearer_auth(OPERATE);
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let outside = tempfile::tempdir().unwrap();
    let marker = outside.path().join("marker");
    let submit = || {
        let request = http
            .post(format!("{base}/tasks"))
            .bearer_auth(OPERATE)
            .json(&json!({ "prompt": format!("sim:ask={}", marker.display()) }));
        async move {
            let created: Value = request.send().await.unwrap().json().await.unwrap();
            created["task_id"].as_str().unwrap().to_owned()
        }
    };
    // Waits for one of the task's events over gRPC, with the operate key.
    let event = |task: String, kinds: Vec<K>| {
        let channel = server.channel.clone();
        async move {
            let mut events = EventServiceClient::with_interceptor(channel, |mut r: Request<()>| {
                let value = format!("Bearer {OPERATE}").parse().unwrap();
                r.metadata_mut().insert("authorization", value);
                Ok(r)
            });
            let request = pb::StreamEventsRequest {
                after_sequence: Some(0),
                task_id: task,
                kinds: kinds.into_iter().map(|k| k as i32).collect(),
                ..Default::default()
            };
            let mut stream = events.stream_events(request).await.unwrap().into_inner();
            stream.message().await.unwrap().unwrap()
        }
    };
    let first = submit().await;
    let approval = match event(first.clone(), vec![K::ApprovalRequested])
        .await
        .payload
    {
        Some(pb::event::Payload::Approval(a)) => a.id,
        other => panic!("an approval: {other:?}"),
    };
    let listed = get(format!("/approvals?task_id={first}")).await;
    assert_eq!(listed["approvals"][0]["id"], approval.as_str());

    let decide = |key: &'static str| {
        http.post(format!("{base}/approvals/{approval}/decision"))
            .bearer_auth(key)
            .json(&json!({ "allow": true, "always": "swarm" }))
            .send()
    };
    let refused = decide(OPERATE).await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["field"], "always", "{error}");
    let allowed = decide(ADMIN).await.unwrap();
    assert_eq!(allowed.status(), StatusCode::OK);
    let decided: Value = allowed.json().await.unwrap();
    assert_eq!(decided["decided_by"], "root");
    assert_eq!(
        decided["rule_added"],
        format!("swarm:Bash(touch {} && echo wrote-it)", marker.display())
    );
    event(first, vec![K::TaskCompleted]).await;

    // The next identical call, of another task, is decided by the rule: no approval.
    std::fs::remove_file(&marker).unwrap();
    let next = submit().await;
    let finished = event(next.clone(), vec![K::TaskCompleted, K::TaskFailed]).await;
    assert_eq!(finished.kind, K::TaskCompleted as i32);
    assert!(marker.exists(), "the rule allowed it");
    let listed = get(format!("/approvals?task_id={next}")).await;
    // An empty list is left out of the JSON, as every empty repeated field.
    assert_eq!(listed, json!({}), "the rule decided it");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_command_line_lists_approves_and_denies() {
    let server = TestServer::start(config(2)).await;
    let url = format!("http://{}", server.addr);
    let outside = tempfile::tempdir().unwrap();
    let (yes, no) = (outside.path().join("yes"), outside.path().join("no"));
    let allowed = server.submit(asking(&yes)).await;
    let denied = server.submit(asking(&no)).await;
    let a = requested(&server, &allowed.id).await;
    let d = requested(&server, &denied.id).await;
    let cli = |args: &[&str]| {
        let output = std::process::Command::new(BIN)
            .args(["--server", &url])
            .args(args)
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, out, _) = cli(&["approvals", "--state", "pending"]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains(&a.id) && out.contains(&d.id) && out.contains("pending"),
        "{out}"
    );
    assert!(
        out.contains(&format!("Bash(touch {}", yes.display())),
        "{out}"
    );

    let (code, out, err) = cli(&["approve", &a.id, "--always"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("allowed") && out.contains("added task:Bash("),
        "{out}"
    );
    let (code, out, err) = cli(&["deny", &d.id, "--message", "no writes outside"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("denied"), "{out}");
    let (code, _, err) = cli(&["deny", &d.id]);
    assert_eq!(code, Some(2));
    assert!(err.contains("already denied"), "{err}");

    server.wait(&allowed.id).await;
    server.wait(&denied.id).await;
    assert!(yes.exists() && !no.exists());
    let (code, out, _) = cli(&["task", "get", &denied.id]);
    assert_eq!(code, Some(0));
    assert!(out.contains("denied:    Bash(touch"), "{out}");
    let (_, out, _) = cli(&["task", "list"]);
    assert!(out.contains("DENIED"), "{out}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pending_approval_survives_a_restart_and_its_decision_is_not_lost() {
    let data = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let marker = outside.path().join("marker");
    let server = Served::start(data.path(), &["--instances", "1"]).await;
    let task = server
        .submit(pb::TaskSpec {
            retries: 1,
            ..asking(&marker)
        })
        .await;
    let first = match server
        .event(&task.id, &[K::ApprovalRequested])
        .await
        .payload
    {
        Some(pb::event::Payload::Approval(a)) => a,
        other => panic!("an approval: {other:?}"),
    };
    server.terminate();

    // The next start: the approval is still pending, and a decision now reaches the rerun.
    let server = Served::start(data.path(), &["--instances", "1"]).await;
    let kept = approvals(&server.channel)
        .get_approval(pb::GetApprovalRequest {
            approval_id: first.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(kept.state, pb::ApprovalState::Pending as i32);
    approvals(&server.channel)
        .decide_approval(decision(&first.id, true))
        .await
        .unwrap();
    let done = server.wait(&task.id).await;
    assert_eq!(status(&done), S::Completed, "{}", done.error);
    assert!(
        marker.exists(),
        "the decision made after the restart ran the tool"
    );
    let all = approvals(&server.channel)
        .list_approvals(pb::ListApprovalsRequest {
            task_id: task.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .approvals;
    assert_eq!(all.len(), 1, "the rerun reused the stored approval");
    server.terminate();
}

#[tokio::test]
async fn cancelling_a_task_closes_its_pending_approval() {
    let server = TestServer::start(config(1)).await;
    let outside = tempfile::tempdir().unwrap();
    let task = server.submit(asking(&outside.path().join("x"))).await;
    let approval = requested(&server, &task.id).await;
    server.cancel(&task.id).await;
    let closed = approvals(&server.channel)
        .get_approval(pb::GetApprovalRequest {
            approval_id: approval.id,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(closed.state, pb::ApprovalState::Expired as i32);
    assert!(closed.message.contains("cancelled"), "{}", closed.message);
    server.stop().await;
}
