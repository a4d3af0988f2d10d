//! Issue 13, the MCP server: `claude-swarm mcp --server URL` answers `tools/list` and
//! `tools/call` from real MCP clients, the official Python `mcp` package
//! (`tests/mcp/client.py`, installed into `.tools/mcp-venv` by `scripts/setup`) and raw
//! JSON-RPC lines, against a real server with the simulated agent. Tool calls go through the
//! server's API, so its keys and roles apply; bad arguments are tool errors naming the field.

mod common;

use std::{
    io::{BufRead, BufReader, Write},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use claude_swarm::{
    api::{
        auth::{ApiKey, Keys},
        server::ServerOptions,
    },
    pb::{self, TaskStatus as S},
};
use common::real_cli::claude;
use common::{
    BIN, TestServer, config,
    fake_api::{FakeApi, Reply, TOOL_ANSWER_PREFIX},
    simulated_agent, status,
};
use serde_json::{Value, json};

/// The venv's Python, with `mcp` installed; panics with what to do when it is missing.
fn python() -> PathBuf {
    let path = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/.tools/mcp-venv/bin/python"
    ));
    assert!(
        path.is_file(),
        "the Python MCP client is not at {}: run scripts/setup (it installs mcp into \
         .tools/mcp-venv)",
        path.display()
    );
    path
}

/// Runs one scenario of `tests/mcp/client.py` against `server` and returns what it printed.
async fn scenario(server: &TestServer, name: &str, key: Option<&str>) -> Value {
    let mut command = tokio::process::Command::new(python());
    command
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp/client.py"))
        .args([BIN, &format!("http://{}", server.addr), name])
        .env_remove("SWARM_API_KEY")
        .kill_on_drop(true);
    if let Some(key) = key {
        command.env("SWARM_API_KEY", key);
    }
    let out = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("the scenario ends")
        .unwrap();
    assert!(
        out.status.success(),
        "{name}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{name}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The `{"error": {...}}` of a tool error, checking that it is one.
fn error(call: &Value) -> &Value {
    assert_eq!(call["is_error"], true, "a tool error: {call}");
    let error = &call["structured"]["error"];
    let text: Value = serde_json::from_str(call["text"][0].as_str().unwrap()).unwrap();
    assert_eq!(&text["error"], error, "the text says the same");
    error
}

fn ok(call: &Value) -> &Value {
    assert_eq!(call["is_error"], false, "a result: {call}");
    &call["structured"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_mcp_client_submits_waits_gets_lists_and_cancels() {
    let server = TestServer::start(config(2)).await;
    let out = scenario(&server, "roundtrip", None).await;

    // tools/list names every tool, each with an object schema of its arguments.
    let tools = out["tools"].as_object().unwrap();
    let names: Vec<&str> = tools.keys().map(String::as_str).collect();
    for name in [
        "submit_task",
        "submit_workflow",
        "get_task",
        "wait_for_task",
        "list_tasks",
        "cancel_task",
        "get_workflow",
        "get_status",
    ] {
        let tool = &tools[name];
        assert_eq!(tool["schema"]["type"], "object", "{name}: {tool}");
        assert!(tool["description"].as_str().unwrap().len() > 40, "{name}");
        assert!(names.contains(&name));
    }
    let submit = &tools["submit_task"]["schema"];
    assert_eq!(submit["required"], json!(["prompt"]));
    assert_eq!(
        submit["properties"]["priority"]["enum"],
        json!(["low", "normal", "high", "critical"])
    );
    assert!(submit["properties"].get("command").is_none(), "{submit}");
    assert_eq!(
        tools["wait_for_task"]["schema"]["required"],
        json!(["task_id"])
    );

    // submit -> wait -> get: the task ran on the server and its result comes back.
    let submitted = ok(&out["submit"]);
    let id = submitted["id"].as_str().unwrap();
    assert_eq!(submitted["name"], "from-mcp");
    assert_eq!(submitted["priority"], "high");
    assert_eq!(submitted["labels"], json!({"via": "mcp"}));
    let on_server = server.get(id).await;
    assert_eq!(status(&on_server), S::Completed);
    assert_eq!(on_server.priority, pb::Priority::High as i32);
    assert_eq!(on_server.timeout, 60.0);

    let waited = ok(&out["wait"]);
    assert_eq!(waited["finished"], true);
    assert_eq!(waited["task"]["status"], "completed");
    assert_eq!(waited["task"]["result"]["text"], "pong");
    let got = ok(&out["get"]);
    assert_eq!(got["id"], id);
    assert_eq!(got["result"]["text"], "pong");

    // The wait sent progress from the event stream: started, then the agent's output.
    let progress = out["progress"].as_array().unwrap();
    let messages: Vec<&str> = progress
        .iter()
        .map(|p| p["message"].as_str().unwrap())
        .collect();
    assert!(
        messages.iter().any(|m| m.starts_with("started on ")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.starts_with("output (assistant)")),
        "{messages:?}"
    );
    let values: Vec<f64> = progress
        .iter()
        .map(|p| p["progress"].as_f64().unwrap())
        .collect();
    assert!(values.windows(2).all(|w| w[0] < w[1]), "{values:?}");

    // list_tasks: a bounded page of briefs, filtered.
    let list = ok(&out["list"]);
    let tasks = list["tasks"].as_array().unwrap();
    assert!(
        tasks
            .iter()
            .any(|t| t["id"] == id && t["result_text"] == "pong")
    );
    assert!(tasks.iter().all(|t| t["status"] == "completed"));
    assert!(tasks.len() <= 5);
    assert!(ok(&out["status"])["tasks"]["completed"].as_str().is_some());

    // Errors are tool errors that name the field, with the REST API's code words.
    let e = error(&out["cancel_finished"]);
    assert_eq!(e["code"], "failed_precondition", "{e}");
    let e = error(&out["bad_priority"]);
    assert_eq!(
        (&e["code"], &e["field"]),
        (&json!("invalid_argument"), &json!("priority"))
    );
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("low, normal, high, critical")
    );
    let e = error(&out["shell"]);
    assert_eq!(e["field"], "command");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("cannot be submitted through MCP")
    );
    let e = error(&out["unknown_dependency"]);
    assert_eq!(e["field"], "depends_on[0]", "{e}");
    assert!(e["message"].as_str().unwrap().contains("nope"), "{e}");
    assert_eq!(error(&out["missing_prompt"])["field"], "prompt");
    let e = error(&out["bypass"]);
    assert_eq!(e["field"], "permission_mode");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("--allow-bypass-permissions"),
        "{e}"
    );
    assert_eq!(error(&out["bad_limit"])["field"], "limit");
    assert_eq!(error(&out["unknown_task"])["code"], "not_found");

    // A wait that runs out says so and returns the task as it is; cancel stops it.
    let short = ok(&out["wait_short"]);
    assert_eq!(short["finished"], false);
    assert_eq!(short["task"]["id"], "hangs");
    assert_eq!(ok(&out["cancel"])["status"], "cancelled");
    assert_eq!(status(&server.get("hangs").await), S::Cancelled);

    // Workflows: submitted, followed to the end; an invalid one names field, line and column.
    let workflow = ok(&out["workflow"]);
    assert_eq!(workflow["workflow"]["name"], "pair");
    let second = ok(&out["workflow_wait"]);
    assert_eq!(second["task"]["status"], "completed");
    assert!(
        second["task"]["result"]["text"]
            .as_str()
            .unwrap()
            .contains("first"),
        "{second}"
    );
    assert_eq!(ok(&out["workflow_get"])["status"], "completed");
    let e = error(&out["workflow_invalid"]);
    assert_eq!(e["code"], "invalid_argument");
    assert_eq!(e["field"], "tasks[0].depends_on[0]", "{e}");
    assert_eq!((&e["line"], &e["column"]), (&json!(5), &json!(5)), "{e}");
    let e = error(&out["workflow_shell"]);
    assert_eq!(e["field"], "tasks[0].command", "{e}");
    let valid = ok(&out["workflow_validate"]);
    assert_eq!(valid["valid"], true);
    assert_eq!(valid["warnings"][0]["line"], 4, "{valid}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_whose_role_is_too_low_gets_the_servers_refusal_as_a_tool_error() {
    let options = ServerOptions {
        keys: Keys::new([ApiKey::from_entry("viewer:read:read-key-0123456789abcdef").unwrap()])
            .unwrap(),
        ..ServerOptions::default()
    };
    let server = TestServer::start_with_options(config(1), simulated_agent(), options).await;
    let out = scenario(&server, "denied", Some("read-key-0123456789abcdef")).await;
    let e = error(&out["submit"]);
    assert_eq!(e["code"], "forbidden", "{e}");
    assert!(e["message"].as_str().unwrap().contains("operate"), "{e}");
    // Reading is what the key may do, and nothing was submitted.
    let counts = &ok(&out["status"])["tasks"];
    assert!(
        counts
            .as_object()
            .is_none_or(|c| c.values().all(|v| v == "0")),
        "{counts}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_down_is_a_tool_error_not_a_failed_session() {
    // A port nothing listens on: bind one, note it, close it.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut command = tokio::process::Command::new(python());
    let out = command
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp/client.py"))
        .args([BIN, &format!("http://{addr}"), "unreachable"])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out["tools"].as_array().unwrap().len(), 8);
    let e = error(&out["status"]);
    assert_eq!(e["code"], "unavailable", "{e}");
    assert!(
        e["message"].as_str().unwrap().contains(&addr.to_string()),
        "{e}"
    );
}

/// `claude-swarm mcp` spoken to in raw JSON-RPC lines.
struct Raw {
    child: Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Drop for Raw {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Raw {
    fn start(server: &TestServer) -> Self {
        let mut child = Command::new(BIN)
            .args(["mcp", "--server", &format!("http://{}", server.addr)])
            .env_remove("SWARM_API_KEY")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut raw = Self { child, lines };
        raw.send(
            json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "raw", "version": "1"}}}),
        );
        let init = raw.receive();
        assert_eq!(
            init["result"]["serverInfo"]["name"], "claude-swarm",
            "{init}"
        );
        raw.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        raw
    }

    fn send(&mut self, message: Value) {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{message}").unwrap();
        stdin.flush().unwrap();
    }

    /// The next message (blocking; the tests' deadlines are on the server side).
    fn receive(&mut self) -> Value {
        let line = self.lines.next().expect("a line").unwrap();
        serde_json::from_str(&line).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_wait_lets_go_and_closing_stdin_ends_the_server_mid_wait() {
    let server = TestServer::start(config(1)).await;
    let hung = server.submit(common::spec("sim:hang")).await;
    let mut raw = tokio::task::block_in_place(|| Raw::start(&server));
    tokio::task::block_in_place(|| {
        raw.send(
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
            "name": "get_task", "arguments": {"task_id": hung.id}}}),
        );
        let got = raw.receive();
        assert_eq!(got["id"], 1);
        assert_eq!(
            got["result"]["structuredContent"]["id"],
            hung.id.as_str(),
            "{got}"
        );
        // An unknown tool cannot be routed: a protocol error, not a tool result.
        raw.send(
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": "rm_rf", "arguments": {}}}),
        );
        let unknown = raw.receive();
        assert_eq!(unknown["error"]["code"], -32602, "{unknown}");
        // A wait for a task that never ends, then the client goes away.
        raw.send(
            json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
            "name": "wait_for_task", "arguments": {"task_id": hung.id, "timeout_seconds": 3600}}}),
        );
    });
    // The wait is in flight once the server has its subscriber.
    until(&server, true).await;
    // The client cancels it: the wait ends and its event stream with it.
    tokio::task::block_in_place(|| {
        raw.send(
            json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
            "params": {"requestId": 3, "reason": "changed my mind"}}),
        );
    });
    until(&server, false).await;
    // Another wait, and the client goes away with it in flight.
    tokio::task::block_in_place(|| {
        raw.send(
            json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {
            "name": "wait_for_task", "arguments": {"task_id": hung.id}}}),
        );
    });
    until(&server, true).await;
    drop(raw.child.stdin.take());
    let pid = raw.child.id();
    // Its exit, waited on (not polled) on a blocking thread, for 30s at most.
    let waiting = tokio::task::spawn_blocking(move || raw.child.wait());
    let status = match tokio::time::timeout(Duration::from_secs(30), waiting).await {
        Ok(status) => status.unwrap().unwrap(),
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
            panic!("claude-swarm mcp ({pid}) outlived its stdin")
        }
    };
    assert!(status.success(), "{status}");
    server.cancel(&hung.id).await;
    server.stop().await;
}

/// Polls (with a deadline) until an event stream is open on the server, or none is.
async fn until(server: &TestServer, open: bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while subscribed(server).await != open {
        assert!(
            Instant::now() < deadline,
            "event streams open: {open} within 30s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether an event stream is open on the server (`swarm_event_subscribers` > 0).
async fn subscribed(server: &TestServer) -> bool {
    let body = reqwest::get(format!("http://{}/metrics", server.addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    body.lines()
        .filter(|l| l.starts_with("swarm_event_subscribers"))
        .any(|l| l.split_whitespace().last().is_some_and(|v| v != "0"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_claude_hands_a_task_to_the_swarm_through_mcp() {
    let server = TestServer::start(config(1)).await;
    // The model (the fake API) asks for our tool; the CLI calls it through `claude-swarm mcp`.
    let api = FakeApi::start(Reply::CallTool {
        name: "mcp__swarm__submit_task".into(),
        input: json!({"prompt": "sim:reply=docs-written write the docs", "name": "via-claude"}),
    })
    .await;
    let home = tempfile::TempDir::new().unwrap();
    let mcp_config = json!({"mcpServers": {"swarm": {
        "type": "stdio",
        "command": BIN,
        "args": ["mcp", "--server", format!("http://{}", server.addr)],
    }}});
    let mut command = tokio::process::Command::new(claude());
    command
        .args([
            "-p",
            "hand the docs to the swarm",
            "--output-format",
            "json",
        ])
        .arg("--mcp-config")
        .arg(mcp_config.to_string())
        .args([
            "--strict-mcp-config",
            "--allowedTools",
            "mcp__swarm__submit_task",
        ])
        .current_dir(home.path())
        .env("HOME", home.path())
        .env("ANTHROPIC_BASE_URL", api.url())
        .env("ANTHROPIC_API_KEY", "test-key")
        .env("CLAUDE_CODE_MAX_RETRIES", "0")
        .env("DISABLE_TELEMETRY", "1")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env_remove("CLAUDECODE")
        .env_remove("CLAUDE_CONFIG_DIR")
        .env_remove("ANTHROPIC_AUTH_TOKEN")
        .env_remove("CLAUDE_CODE_OAUTH_TOKEN")
        .env_remove("SWARM_API_KEY")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("claude ends")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}: {stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );

    // The task exists in the swarm, as the model asked for it, and it ran.
    let page = server
        .tasks()
        .list_tasks(pb::ListTasksRequest::default())
        .await
        .unwrap()
        .into_inner();
    let [task] = page.tasks.as_slice() else {
        panic!("one task: {:?}", page.tasks)
    };
    assert_eq!(task.name, "via-claude");
    let done = server.wait(&task.id).await;
    assert_eq!(status(&done), S::Completed);
    assert_eq!(done.result.unwrap().text, "docs-written");

    // The tool's answer went back to the model: the second request carries the task's id.
    let requests = api.requests();
    let last = requests.last().expect("requests").to_string();
    assert!(
        last.contains("tool_result") && last.contains(&task.id),
        "{last}"
    );
    let result: Value = serde_json::from_str(&stdout).unwrap();
    assert!(
        result["result"]
            .as_str()
            .is_some_and(|r| r.starts_with(TOOL_ANSWER_PREFIX) && r.contains(&task.id)),
        "{result}"
    );
}
