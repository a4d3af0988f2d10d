//! Accounts end to end: two accounts, each with its environment, on a real server. A usage
//! limit that refuses requests on one pauses only that one; the task that hit it goes back
//! to the queue without using up an attempt and completes, resuming its session, after the
//! reset. Once with the simulated CLI (the account's environment makes it refuse), once
//! with the real `claude` 2.1.332 against two fake Messages APIs, one of which answers 429
//! with the unified rate-limit headers until its reset.

mod common;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use claude_swarm::{
    agent::{AgentCommand, ProcessAgent},
    engine::{EngineConfig, model::account::AccountSpec},
    pb::{self, AccountState, TaskStatus as S},
};
use common::real_cli::claude;
use common::{
    TestServer, config,
    fake_api::{FakeApi, Reply},
    simulated_command, spec, status,
};
use tempfile::TempDir;
use tonic::Code;

fn two_accounts() -> EngineConfig {
    EngineConfig {
        accounts: ["a", "b"]
            .map(|name| AccountSpec {
                name: name.into(),
                instances: 1,
            })
            .into(),
        ..config(0)
    }
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

async fn swarm(server: &TestServer) -> pb::GetStatusResponse {
    server
        .swarm()
        .get_status(pb::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner()
}

fn account<'a>(status: &'a pb::GetStatusResponse, name: &str) -> &'a pb::AccountStatus {
    status.accounts.iter().find(|a| a.name == name).unwrap()
}

/// Polls the status (with a deadline) until `done` holds for it.
async fn status_until(
    server: &TestServer,
    what: &str,
    done: impl Fn(&pb::GetStatusResponse) -> bool,
) -> pb::GetStatusResponse {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = swarm(server).await;
        if done(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "{what} within 60s: {status:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The id of the live instance of `account`.
async fn instance_of(server: &TestServer, account: &str) -> String {
    let instances = server
        .instances()
        .list_instances(pb::ListInstancesRequest {})
        .await
        .unwrap()
        .into_inner()
        .instances;
    instances
        .into_iter()
        .find(|i| i.account == account)
        .map(|i| i.id)
        .unwrap()
}

/// The simulated agent with two accounts, where a's API refuses every new session for
/// `seconds` (reporting that reset); a resumed session is not refused (see
/// `agent::simulated`).
fn refusing_on_a(seconds: u64) -> ProcessAgent {
    ProcessAgent::new(AgentCommand {
        accounts: BTreeMap::from([
            (
                "a".into(),
                env(&[("SWARM_SIM_RATE_LIMIT", &seconds.to_string())]),
            ),
            ("b".into(), Vec::new()),
        ]),
        ..simulated_command()
    })
}

fn paused(status: &pb::GetStatusResponse, name: &str) -> bool {
    account(status, name).state == AccountState::Paused as i32
}

#[tokio::test]
async fn a_refusal_on_one_of_two_accounts_pauses_only_it_and_the_task_completes_after_the_reset() {
    let server = TestServer::start_with_agent(two_accounts(), refusing_on_a(2)).await;
    let (on_a, on_b) = (
        instance_of(&server, "a").await,
        instance_of(&server, "b").await,
    );
    let limited = server
        .submit(pb::TaskSpec {
            account: "a".into(),
            ..spec("first on a")
        })
        .await;
    let swarm_now = status_until(&server, "account a paused", |s| paused(s, "a")).await;
    let until = account(&swarm_now, "a").paused_until.expect("paused until");
    // The refused run ends just after the report: then the task is back in the queue.
    let deadline = Instant::now() + Duration::from_secs(60);
    let waiting = loop {
        let task = server.get(&limited.id).await;
        if status(&task) == S::Queued && !task.error.is_empty() {
            break task;
        }
        assert!(
            Instant::now() < deadline,
            "queued again within 60s: {task:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(!paused(&swarm_now, "b"), "only a is paused");
    assert!(
        swarm_now.dispatch_paused_until.is_none(),
        "b still takes work"
    );
    assert_eq!(waiting.attempts, 0);
    assert!(waiting.error.contains("usage limit"), "{}", waiting.error);

    // While a is paused, work that names no account runs on b.
    let other = server.submit(spec("anywhere")).await;
    let other = server.wait(&other.id).await;
    assert_eq!(status(&other), S::Completed);
    assert_eq!(other.instance_id, on_b);

    // After the reset the refused task resumes its session on a and completes, on its first
    // counted attempt.
    let done = server.wait(&limited.id).await;
    assert_eq!(status(&done), S::Completed, "{done:?}");
    assert_eq!(done.attempts, 1);
    assert_eq!(done.instance_id, on_a);
    assert!(done.started_at.unwrap().seconds >= until.seconds);
    let session = done.options.unwrap().resume_session;
    assert!(!session.is_empty());
    assert_eq!(done.result.unwrap().session_id, session);
    let after = swarm(&server).await;
    let a = account(&after, "a");
    assert_eq!(a.state, AccountState::Active as i32);
    assert_eq!((a.refusals, a.window.as_str()), (1, "five_hour"));
    server.stop().await;
}

#[tokio::test]
async fn a_pause_lifted_by_hand_over_rest_lets_the_task_complete_before_the_reset() {
    // The reset is an hour away.
    let server = TestServer::start_with_agent(two_accounts(), refusing_on_a(3600)).await;
    let limited = server
        .submit(pb::TaskSpec {
            account: "a".into(),
            ..spec("first on a")
        })
        .await;
    let paused_now = status_until(&server, "account a paused", |s| paused(s, "a")).await;
    let until = account(&paused_now, "a")
        .paused_until
        .expect("paused until");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        until.seconds > now + 3000,
        "paused for about an hour: {until:?}"
    );

    let http = reqwest::Client::new();
    let base = format!("http://{}", server.addr);
    let resumed = http
        .post(format!("{base}/accounts/a/resume"))
        .send()
        .await
        .unwrap();
    assert_eq!(resumed.status(), 200);
    let body: serde_json::Value = resumed.json().await.unwrap();
    assert_eq!(body["name"], "a");
    assert_eq!(body["state"], "active", "{body}");
    assert!(body.get("paused_until").is_none(), "{body}");

    // The task resumes its session on a at once, an hour before the reported reset.
    let done = server.wait(&limited.id).await;
    assert_eq!(status(&done), S::Completed, "{done:?}");
    assert_eq!(done.attempts, 1, "the refused run did not count");
    assert!(done.completed_at.unwrap().seconds < until.seconds);
    assert!(!paused(&swarm(&server).await, "a"));

    // An unknown account is not found, on either surface; an empty name names the field.
    let unknown = http
        .post(format!("{base}/accounts/nope/resume"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let refused = server
        .swarm()
        .resume_account(pb::ResumeAccountRequest { name: "".into() })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().contains("name"), "{}", refused.message());
    let missing = server
        .swarm()
        .resume_account(pb::ResumeAccountRequest {
            name: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    server.stop().await;
}

#[tokio::test]
async fn warnings_and_api_retries_show_per_account_and_unknown_accounts_are_refused() {
    let server = TestServer::start(two_accounts()).await;
    let task = server
        .submit(pb::TaskSpec {
            account: "b".into(),
            ..spec("busy sim:api_retry=3 sim:rate_warn=0.95")
        })
        .await;
    assert_eq!(status(&server.wait(&task.id).await), S::Completed);
    let after = swarm(&server).await;
    let b = account(&after, "b");
    assert_eq!(b.state, AccountState::Limited as i32);
    assert_eq!(b.api_retries, 3);
    assert_eq!(b.utilization, Some(0.95));
    assert!(b.resets_at.is_some());
    let a = account(&after, "a");
    assert_eq!((a.state, a.api_retries), (AccountState::Active as i32, 0));

    let refused = server
        .tasks()
        .submit_task(pb::SubmitTaskRequest {
            task: Some(pb::TaskSpec {
                account: "nope".into(),
                ..spec("x")
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("account") && refused.message().contains("\"nope\""),
        "{}",
        refused.message()
    );

    // Workflow tasks may name an account too, checked when the workflow is executed.
    let execute = |yaml: &str| {
        let mut workflows = server.workflows();
        let request = pb::ExecuteWorkflowRequest {
            yaml: yaml.into(),
            ..Default::default()
        };
        async move { workflows.execute_workflow(request).await }
    };
    let refused = execute("name: w\ntasks:\n  - id: x\n    prompt: p\n    account: nope\n")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("tasks[0].account"),
        "{}",
        refused.message()
    );
    let on_b = instance_of(&server, "b").await;
    let started = execute("name: w\ntasks:\n  - id: on-b\n    prompt: p\n    account: b\n")
        .await
        .unwrap()
        .into_inner();
    let id = &started.workflow.unwrap().task_ids[0];
    let done = server.wait(id).await;
    assert_eq!(
        (status(&done), done.instance_id, done.account),
        (S::Completed, on_b, "b".into())
    );
    server.stop().await;
}

// ---- the real CLI ---------------------------------------------------------------------

#[tokio::test]
async fn real_cli_a_usage_limit_on_one_of_two_accounts_pauses_only_it_and_the_session_resumes() {
    let resets_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        // Far enough ahead that a loaded machine's CLI start (seconds) does not reach it
        // first: a reset already past when reported pauses for a minute instead.
        + 10;
    let api_a = FakeApi::start(Reply::LimitedUntil {
        resets_at,
        then: "a again after the reset".into(),
    })
    .await;
    let api_b = FakeApi::start(Reply::Text("b answers".into())).await;
    let home = TempDir::new().unwrap();
    let work = TempDir::new().unwrap();
    // A scratch HOME, no retries or background traffic, and no login of the host's: each
    // account brings its own (a subscription token: only those get the unified headers).
    let mut common = env(&[
        ("HOME", &home.path().display().to_string()),
        ("CLAUDE_CODE_MAX_RETRIES", "0"),
        ("DISABLE_TELEMETRY", "1"),
        ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
        ("ANTHROPIC_API_KEY", ""),
        ("ANTHROPIC_AUTH_TOKEN", ""),
    ]);
    if std::env::var_os("CLAUDE_CONFIG_DIR").is_some() {
        common.push((
            "CLAUDE_CONFIG_DIR".into(),
            home.path().join(".claude").display().to_string(),
        ));
    }
    let account_env = |api: &FakeApi, token: &str| {
        env(&[
            ("ANTHROPIC_BASE_URL", &api.url()),
            ("CLAUDE_CODE_OAUTH_TOKEN", token),
        ])
    };
    let agent = ProcessAgent::new(AgentCommand {
        program: claude(),
        leading_args: vec![],
        label: "claude".into(),
        stop_grace: Duration::from_secs(2),
        env: common,
        long_lived: false,
        keep_worktrees: false,
        memory_limit: None,
        workspace_root: None,
        accounts: BTreeMap::from([
            ("a".into(), account_env(&api_a, "sk-ant-oat01-fake-a")),
            ("b".into(), account_env(&api_b, "sk-ant-oat01-fake-b")),
        ]),
    });
    let config = EngineConfig {
        working_directory: work.path().into(),
        ..two_accounts()
    };
    let server = TestServer::start_with_agent(config, agent).await;
    let on_b = instance_of(&server, "b").await;
    let limited = server
        .submit(pb::TaskSpec {
            account: "a".into(),
            ..spec("remember the word kestrel")
        })
        .await;
    let swarm_now = status_until(&server, "account a paused", |s| paused(s, "a")).await;
    let a = account(&swarm_now, "a");
    assert_eq!(a.paused_until.as_ref().unwrap().seconds, resets_at as i64);
    assert_eq!(a.window, "five_hour");
    assert!(!paused(&swarm_now, "b"));

    let other = server.submit(spec("say something")).await;
    let other = server.wait(&other.id).await;
    assert_eq!(status(&other), S::Completed, "{other:?}");
    assert_eq!(other.instance_id, on_b);
    assert_eq!(other.result.unwrap().text, "b answers");

    let done = server.wait(&limited.id).await;
    assert_eq!(status(&done), S::Completed, "{done:?}");
    assert_eq!(done.attempts, 1);
    assert_eq!(done.result.unwrap().text, "a again after the reset");
    // The second request to a's API continued the refused run's session: it carries the
    // conversation so far, not just the prompt.
    let requests = api_a.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    let messages = requests[1]["messages"].as_array().unwrap();
    assert!(messages.len() > 1, "{messages:?}");
    assert!(api_b.requests().len() == 1);
    server.stop().await;
}

// ---- through `serve`, across a restart ---------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_and_the_refused_task_survive_a_restart_of_serve() {
    use claude_swarm::pb::swarm_service_client::SwarmServiceClient;
    use common::serve::Served;

    let data = TempDir::new().unwrap();
    let config = data.path().join("swarm.yaml");
    // The accounts come from the file, as an operator writes them; a's API (simulated)
    // refuses new sessions for 4 seconds.
    std::fs::write(
        &config,
        "accounts:\n  - name: a\n    env: { ANTHROPIC_API_KEY: fake-a, SWARM_SIM_RATE_LIMIT: '4' }\n  \
         - name: b\n    env: { ANTHROPIC_API_KEY: fake-b }\n",
    )
    .unwrap();
    let args = ["--config", config.to_str().unwrap()];
    let server = Served::start(data.path(), &args).await;
    let limited = server
        .submit(pb::TaskSpec {
            account: "a".into(),
            ..spec("first on a")
        })
        .await;
    let status_of = async |channel: &tonic::transport::Channel| {
        SwarmServiceClient::new(channel.clone())
            .get_status(pb::GetStatusRequest {})
            .await
            .unwrap()
            .into_inner()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    // Killed once the pause is stored and the task is back in the queue.
    let until = loop {
        let now = status_of(&server.channel).await;
        let task = server.get(&limited.id).await;
        if paused(&now, "a") && status(&task) == S::Queued && !task.error.is_empty() {
            break account(&now, "a").paused_until.unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "a paused within 60s: {now:?} {task:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    server.kill();

    let server = Served::start(data.path(), &args).await;
    let restarted = status_of(&server.channel).await;
    let a = account(&restarted, "a");
    assert_eq!(a.paused_until.as_ref(), Some(&until), "the pause is kept");
    assert_eq!(a.refusals, 1);
    let waiting = server.get(&limited.id).await;
    assert_eq!((status(&waiting), waiting.attempts), (S::Queued, 0));
    // The pause's event was stored with it, and is replayed with its account.
    use claude_swarm::pb::event_service_client::EventServiceClient;
    let mut replay = EventServiceClient::new(server.channel.clone())
        .stream_events(pb::StreamEventsRequest {
            after_sequence: Some(0),
            kinds: vec![pb::EventKind::AccountChanged as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let event = replay.message().await.unwrap().expect("the pause's event");
    let Some(pb::event::Payload::Account(paused_event)) = event.payload else {
        panic!("an account_changed event without its account: {event:?}")
    };
    assert_eq!(
        (paused_event.name.as_str(), paused_event.state),
        ("a", AccountState::Paused as i32)
    );
    assert_eq!(paused_event.paused_until.as_ref(), Some(&until));
    drop(replay);
    let done = server.wait(&limited.id).await;
    assert_eq!(status(&done), S::Completed, "{done:?}");
    assert_eq!(done.attempts, 1);
    assert!(done.started_at.unwrap().seconds >= until.seconds);
    server.terminate();
}
