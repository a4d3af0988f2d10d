//! Webhooks against a real server and a receiver on 127.0.0.1: deliveries arrive signed
//! (checked here with HMAC-SHA256 over `<t>.<body>`), only for the topics asked for, and
//! are retried after a 500; a receiver that hangs holds up no other webhook; a Slack body;
//! bad webhooks are refused naming the field; and a delivery pending when the server stops
//! is made after it starts again; an approval waiting on a person is posted to a webhook
//! that asks for them.

mod common;

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::IntoResponse,
};
use claude_swarm::{
    api::server::ServerOptions,
    notify::{
        SIGNATURE_HEADER,
        webhook::{Webhook, WebhookSpec},
    },
    pb,
};
use common::{TestServer, config, serve::Served, simulated_agent, spec, status};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::mpsc;

const SECRET: &str = "test-signing-secret-0123456789";

/// What the receiver answers, request by request (then `Ok`).
#[derive(Clone, Copy, Debug)]
enum Answer {
    Ok,
    Fail,
    Hang,
}

#[derive(Debug)]
struct Hit {
    headers: HeaderMap,
    body: Bytes,
}

impl Hit {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    fn header(&self, name: &str) -> &str {
        self.headers[name].to_str().unwrap()
    }
}

#[derive(Clone)]
struct Script {
    answers: Arc<Mutex<VecDeque<Answer>>>,
    then: Arc<Mutex<Answer>>,
    hits: mpsc::UnboundedSender<Hit>,
}

async fn answer(
    State(script): State<Script>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let _ = script.hits.send(Hit { headers, body });
    let next = script.answers.lock().unwrap().pop_front();
    let then = *script.then.lock().unwrap();
    match next.unwrap_or(then) {
        Answer::Ok => StatusCode::NO_CONTENT,
        Answer::Fail => StatusCode::INTERNAL_SERVER_ERROR,
        Answer::Hang => std::future::pending().await,
    }
}

/// A receiver on 127.0.0.1:0 answering `answers` in turn, then `then`.
async fn receiver(
    answers: &[Answer],
    then: Answer,
) -> (String, Script, mpsc::UnboundedReceiver<Hit>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let script = Script {
        answers: Arc::new(Mutex::new(answers.iter().copied().collect())),
        then: Arc::new(Mutex::new(then)),
        hits: tx,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .fallback(answer)
        .with_state(script.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), script, rx)
}

async fn next_hit(hits: &mut mpsc::UnboundedReceiver<Hit>) -> Hit {
    tokio::time::timeout(Duration::from_secs(30), hits.recv())
        .await
        .expect("a delivery within 30s")
        .expect("the receiver runs")
}

/// The signature check a receiver does (README): HMAC-SHA256 of `<t>.<body>`.
fn verify(hit: &Hit) {
    let header = hit.header(SIGNATURE_HEADER);
    let (t, v1) = header
        .split_once(',')
        .and_then(|(t, v)| Some((t.strip_prefix("t=")?, v.strip_prefix("v1=")?)))
        .unwrap_or_else(|| panic!("{header}"));
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(&hit.body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(v1, expected, "the signature of {header}");
}

fn configured(name: &str, url: &str, events: &[&str], backoff: f64) -> Webhook {
    Webhook::new(
        format!("config:{name}"),
        WebhookSpec {
            name: name.into(),
            url: url.into(),
            events: events.iter().map(|e| e.to_string()).collect(),
            secret: Some(SECRET.into()),
            retry_backoff: Some(backoff),
            ..WebhookSpec::default()
        },
        true,
    )
    .unwrap()
}

async fn with_webhooks(hooks: Vec<Webhook>) -> TestServer {
    let options = ServerOptions {
        webhooks: hooks,
        ..ServerOptions::default()
    };
    TestServer::start_with_options(config(2), simulated_agent(), options).await
}

async fn deliveries(server: &TestServer, id: &str) -> Vec<Value> {
    let url = format!("http://{}/webhooks/{id}/deliveries", server.addr);
    let body: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    body["deliveries"].as_array().cloned().unwrap_or_default()
}

/// Polls the delivery log until `done` holds of its newest entry, for 30s at most.
async fn settled(server: &TestServer, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(newest) = deliveries(server, id).await.into_iter().next()
            && done(&newest)
        {
            return newest;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the log of {id} did not settle"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn deliveries_arrive_signed_for_their_topics_and_are_retried_after_a_500() {
    let (url, _script, mut hits) = receiver(&[Answer::Fail], Answer::Ok).await;
    let server = with_webhooks(vec![configured("ci", &url, &["task_completed"], 0.05)]).await;
    // A failed task first: not a topic of this webhook, so the first delivery is the
    // completed one's.
    let failed = server.submit(spec("no sim:error")).await;
    server.wait(&failed.id).await;
    let task = server.submit(spec("yes sim:reply=fine")).await;
    server.wait(&task.id).await;
    let first = next_hit(&mut hits).await;
    let second = next_hit(&mut hits).await;
    for hit in [&first, &second] {
        verify(hit);
        assert_eq!(hit.header("content-type"), "application/json");
        assert_eq!(hit.header("x-swarm-event"), "task_completed");
    }
    // The same delivery, retried after the 500.
    assert_eq!(
        first.header("x-swarm-delivery"),
        second.header("x-swarm-delivery")
    );
    let body = second.json();
    assert_eq!(body["topic"], "task_completed");
    assert_eq!(body["event"]["task"]["id"], task.id.as_str(), "{body}");
    assert_eq!(body["event"]["task"]["result"]["text"], "fine");
    assert_eq!(
        body["id"],
        format!("config:ci:{}", body["sequence"].as_u64().unwrap())
    );
    let logged = settled(&server, "config:ci", |d| d["status"] == "delivered").await;
    assert_eq!(logged["attempts"], 2, "{logged}");
    assert_eq!(logged["last_status_code"], 204);
    assert_eq!(logged["topic"], "task_completed");
    // A configured webhook is changed in the config file, not through the API.
    let refused = reqwest::Client::new()
        .delete(format!("http://{}/webhooks/config:ci", server.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    server.stop().await;
}

#[tokio::test]
async fn a_hanging_receiver_holds_up_nobody_else() {
    let (hanging, _script, mut hung) = receiver(&[], Answer::Hang).await;
    let (good, _good_script, mut hits) = receiver(&[], Answer::Ok).await;
    let (slack, _slack_script, mut slack_hits) = receiver(&[], Answer::Ok).await;
    let server = TestServer::start(config(1)).await;
    let http = reqwest::Client::new();
    let create = |body: Value| {
        let http = http.clone();
        let url = format!("http://{}/webhooks", server.addr);
        async move {
            let response = http.post(url).json(&body).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            response.json::<Value>().await.unwrap()
        }
    };
    let stuck = create(json!({
        "name": "stuck", "url": hanging, "secret": SECRET,
        "timeout": 0.2, "retry_backoff": 0.05, "max_attempts": 2,
    }))
    .await;
    create(json!({"name": "fine", "url": good, "secret": SECRET, "events": ["workflow_failed"]}))
        .await;
    create(json!({"name": "chat", "url": slack, "format": "slack", "events": ["task_failed"]}))
        .await;
    let listed: Value = http
        .get(format!("http://{}/webhooks", server.addr))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = listed["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["stuck", "fine", "chat"]);
    assert_eq!(listed["webhooks"][0]["signed"], true);
    assert!(
        listed.to_string().find(SECRET).is_none(),
        "the secret is never shown"
    );

    let started = server
        .workflows()
        .execute_workflow(pb::ExecuteWorkflowRequest {
            yaml: "name: pair\ntasks:\n  - id: a\n    prompt: one\n  - id: b\n    prompt: two sim:error\n"
                .into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // The stuck receiver has the first event and keeps it; the others get theirs.
    let held = next_hit(&mut hung).await;
    verify(&held);
    let chat = next_hit(&mut slack_hits).await;
    assert!(chat.headers.get(SIGNATURE_HEADER).is_none());
    let text = chat.json()["text"].as_str().unwrap().to_owned();
    assert!(text.contains("task b") && text.contains("failed"), "{text}");
    let done = next_hit(&mut hits).await;
    verify(&done);
    let body = done.json();
    assert_eq!(body["topic"], "workflow_failed");
    assert_eq!(
        body["event"]["workflow"]["id"],
        started.workflow_id.as_str()
    );
    // The stuck one gives up after its attempts, each cut off by its timeout.
    let id = stuck["id"].as_str().unwrap();
    let given_up = settled(&server, id, |d| d["status"] == "failed").await;
    assert_eq!(given_up["attempts"], 2, "{given_up}");
    assert!(
        given_up["last_error"]
            .as_str()
            .unwrap()
            .contains("no answer within"),
        "{given_up}"
    );
    server.stop().await;
}

#[tokio::test]
async fn bad_webhooks_are_refused_naming_the_field() {
    let server = TestServer::start(config(1)).await;
    let http = reqwest::Client::new();
    let url = format!("http://{}/webhooks", server.addr);
    for (body, field) in [
        (
            json!({"url": "ftp://example.com/x", "secret": SECRET}),
            "url",
        ),
        (
            json!({"url": "javascript:alert(1)", "secret": SECRET}),
            "url",
        ),
        (
            json!({"url": "http://example.com/x", "secret": "too short"}),
            "secret",
        ),
        (json!({"url": "http://example.com/x"}), "secret"),
        (
            json!({"url": "http://example.com/x", "secret": SECRET, "events": ["task_exploded"]}),
            "events",
        ),
        (
            json!({"url": "http://example.com/x", "secret": SECRET, "timeout": -1}),
            "timeout",
        ),
    ] {
        let response = http.post(&url).json(&body).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let error: Value = response.json().await.unwrap();
        let named = error["error"]["field"].as_str().unwrap_or_default();
        assert!(named.starts_with(field), "{body}: {error}");
    }
    let listed: Value = http.get(&url).send().await.unwrap().json().await.unwrap();
    assert!(
        listed["webhooks"].as_array().is_none_or(Vec::is_empty),
        "{listed}"
    );
    // The command line refuses the same, and lists what it made.
    let cli = async |args: &[&str]| {
        let out = tokio::process::Command::new(common::BIN)
            .args(["--server", &format!("http://{}", server.addr)])
            .args(args)
            .output()
            .await
            .unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };
    let (code, _, err) = cli(&[
        "webhook",
        "create",
        "gopher://example.com/",
        "--secret",
        SECRET,
    ])
    .await;
    assert_eq!(code, Some(2));
    assert!(err.contains("url"), "{err}");
    let (code, _, err) = cli(&[
        "webhook",
        "create",
        "http://127.0.0.1:9/x",
        "--name",
        "ops",
        "--event",
        "task_failed",
        "--secret",
        SECRET,
    ])
    .await;
    assert_eq!(code, Some(0), "{err}");
    let (code, out, _) = cli(&["webhook", "list"]).await;
    assert_eq!(code, Some(0));
    assert!(
        out.contains("ops") && out.contains("task_failed") && !out.contains(SECRET),
        "{out}"
    );
    let missing = http
        .get(format!("{url}/nope/deliveries"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    server.stop().await;
}

/// The first delivery of webhook `config:ci` that `wanted` accepts, waiting up to 30 s.
async fn delivery_where(served: &Served, wanted: impl Fn(&pb::Delivery) -> bool) -> pb::Delivery {
    let log = pb::webhook_service_client::WebhookServiceClient::new(served.channel.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let entries = log
            .clone()
            .list_deliveries(pb::ListDeliveriesRequest {
                webhook_id: "config:ci".into(),
                limit: 10,
            })
            .await
            .unwrap()
            .into_inner()
            .deliveries;
        if let Some(entry) = entries.into_iter().find(&wanted) {
            return entry;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no such delivery within 30s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_pending_at_a_restart_is_made_after_it() {
    let (url, script, mut hits) = receiver(&[], Answer::Fail).await;
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("swarm.yaml");
    // A long backoff: the next attempt is the restart's.
    std::fs::write(
        &file,
        format!(
            "webhooks:\n  - name: ci\n    url: {url}\n    secret: {SECRET}\n    events: [task_completed]\n    retry_backoff: 600\n"
        ),
    )
    .unwrap();
    let state = data.path().join("state");
    let args = ["--config", file.to_str().unwrap(), "--instances", "1"];
    let served = Served::start(&state, &args).await;
    let task = served.submit(spec("deliver me sim:reply=later")).await;
    served.wait(&task.id).await;
    let refused = next_hit(&mut hits).await;
    verify(&refused);
    // The refusal is on record before the server stops (an attempt still in flight at a
    // stop is not counted, and is made again after it).
    delivery_where(&served, |d| d.attempts == 1 && d.last_status_code != 0).await;
    served.terminate();
    // The receiver is back; the server too.
    *script.then.lock().unwrap() = Answer::Ok;
    let served = Served::start(&state, &args).await;
    let delivered = next_hit(&mut hits).await;
    verify(&delivered);
    assert_eq!(
        delivered.header("x-swarm-delivery"),
        refused.header("x-swarm-delivery")
    );
    assert_eq!(delivered.json()["event"]["task"]["id"], task.id.as_str());
    let entry = delivery_where(&served, |d| {
        d.status == pb::DeliveryStatus::Delivered as i32
    })
    .await;
    assert_eq!(entry.attempts, 2);
    // Exactly once more: nothing else was pending.
    served.terminate();
    assert!(hits.try_recv().is_err());
}

#[tokio::test]
async fn an_approval_waiting_on_a_person_is_posted_to_its_webhook() {
    let (url, _script, mut hits) = receiver(&[], Answer::Ok).await;
    let server = with_webhooks(vec![configured("ask", &url, &["approval_requested"], 0.05)]).await;
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("marker");
    let task = server
        .submit(spec(&format!("write it sim:ask={}", marker.display())))
        .await;
    let hit = next_hit(&mut hits).await;
    verify(&hit);
    assert_eq!(hit.header("x-swarm-event"), "approval_requested");
    let body = hit.json();
    assert_eq!(body["topic"], "approval_requested");
    let approval = &body["event"]["approval"];
    assert_eq!(approval["task_id"], task.id.as_str(), "{body}");
    assert_eq!(approval["tool_name"], "Bash", "{body}");
    assert!(approval["id"].as_str().is_some_and(|id| !id.is_empty()));
    // Nothing ran while it waits; cancelling the task closes the approval.
    assert!(!marker.exists());
    server.cancel(&task.id).await;
    server.wait(&task.id).await;
    server.stop().await;
}

#[tokio::test]
async fn an_account_paused_by_its_usage_limit_is_posted_to_its_webhook_and_only_then() {
    let (url, _script, mut hits) = receiver(&[], Answer::Ok).await;
    let server = with_webhooks(vec![configured("limits", &url, &["account_paused"], 0.05)]).await;
    // The only account's API refuses: it is paused for two minutes.
    let limited = server.submit(spec("limited sim:rate_limit=120")).await;
    let hit = next_hit(&mut hits).await;
    verify(&hit);
    assert_eq!(hit.header("x-swarm-event"), "account_paused");
    let body = hit.json();
    let account = &body["event"]["account"];
    assert_eq!(account["name"], "default", "{body}");
    assert_eq!(account["state"], "ACCOUNT_STATE_PAUSED", "{body}");
    assert!(account["paused_until"].is_string(), "{body}");
    assert_eq!(
        body["event"]["kind"], "EVENT_KIND_ACCOUNT_CHANGED",
        "{body}"
    );
    // Lifted by hand: the account's next change is an event, but not a pause, so not
    // posted; the next delivery is the next pause's.
    let resumed = reqwest::Client::new()
        .post(format!("http://{}/accounts/default/resume", server.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(resumed.status(), StatusCode::OK);
    assert_eq!(
        status(&server.wait(&limited.id).await),
        pb::TaskStatus::Completed
    );
    let again = server
        .submit(spec("limited again sim:rate_limit=120"))
        .await;
    let next = next_hit(&mut hits).await.json();
    assert_eq!(
        next["event"]["account"]["state"], "ACCOUNT_STATE_PAUSED",
        "the lift was not posted: {next}"
    );
    assert!(
        next["sequence"].as_u64() > body["sequence"].as_u64(),
        "{next}"
    );
    server.cancel(&again.id).await;
    server.stop().await;
}

#[tokio::test]
async fn a_spent_budget_is_posted_to_its_webhook() {
    let (url, _script, mut hits) = receiver(&[], Answer::Ok).await;
    let options = ServerOptions {
        webhooks: vec![configured("money", &url, &["budget_spent"], 0.05)],
        ..ServerOptions::default()
    };
    let config = claude_swarm::engine::EngineConfig {
        budget_usd: Some(0.5),
        ..config(1)
    };
    let server = TestServer::start_with_options(config, simulated_agent(), options).await;
    let spender = server.submit(spec("spend sim:cost=0.6")).await;
    assert_eq!(
        status(&server.wait(&spender.id).await),
        pb::TaskStatus::Completed
    );
    let hit = next_hit(&mut hits).await;
    verify(&hit);
    assert_eq!(hit.header("x-swarm-event"), "budget_spent");
    let body = hit.json();
    assert_eq!(body["event"]["budget"]["budget_usd"], 0.5, "{body}");
    assert_eq!(body["event"]["budget"]["total_cost_usd"], 0.6, "{body}");
    // Nothing more starts.
    let waiting = server.submit(spec("after")).await;
    assert_eq!(
        status(&server.get(&waiting.id).await),
        pb::TaskStatus::Queued
    );
    server.stop().await;
}
