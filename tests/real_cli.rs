//! The real Claude Code CLI (npm `@anthropic-ai/claude-code@2.1.332`, installed into
//! `.tools/claude-code` by `scripts/setup`) end to end through our server, offline: every
//! run talks to the fake Messages API of `common/fake_api.rs` on 127.0.0.1, with a scratch
//! HOME so no host login or settings are read.
//!
//! These tests fail, never skip, when the CLI is missing. `SWARM_TEST_CLAUDE` points them
//! at another binary.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Write,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use claude_swarm::{
    agent::{AgentCommand, ProcessAgent},
    pb::{self, EventKind as K, TaskStatus as S},
};
use common::real_cli::{PINNED, claude, offline_env};
use common::{
    TestServer, config,
    fake_api::{
        FakeApi, INPUT_TOKENS, OUTPUT_TOKENS, Reply, TOOL_ANSWER_PREFIX, TOOL_COMMAND, TOOL_OUTPUT,
    },
    group_alive, spec, status,
};
use serde_json::Value;
use tempfile::TempDir;

/// Variables that would log the CLI in from the host; blanked for the not-logged-in run.
const HOST_LOGIN: &[&str] = &[
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "CLAUDE_CODE_OAUTH_TOKEN",
];

/// The environment the CLI gets offline ([`offline_env`]), logged in or not.
fn cli_env(home: &Path, api: &FakeApi, logged_in: bool) -> Vec<(String, String)> {
    let mut env = offline_env(home, &api.url());
    if logged_in {
        env.push(("ANTHROPIC_API_KEY".into(), "test-key".into()));
    } else {
        // The agent passes our ANTHROPIC_* and CLAUDE_* variables through: a login the host
        // happens to have must not reach this run. (An empty key counts as none.)
        env.extend(
            HOST_LOGIN
                .iter()
                .filter(|name| std::env::var_os(name).is_some())
                .map(|name| (name.to_string(), String::new())),
        );
    }
    env
}

/// The fake API, a scratch HOME and working directory, and our server running the real CLI.
struct Rig {
    api: FakeApi,
    server: TestServer,
    _work: TempDir,
    _home: TempDir,
}

impl Rig {
    async fn start(reply: Reply) -> Self {
        Self::start_as(reply, true).await
    }

    async fn start_as(reply: Reply, logged_in: bool) -> Self {
        Self::start_with(reply, logged_in, false).await
    }

    async fn start_with(reply: Reply, logged_in: bool, long_lived: bool) -> Self {
        let program = claude();
        let api = FakeApi::start(reply).await;
        let home = TempDir::new().unwrap();
        let work = TempDir::new().unwrap();
        let agent = ProcessAgent::new(AgentCommand {
            program,
            leading_args: vec![],
            label: "claude".into(),
            stop_grace: Duration::from_secs(2),
            env: cli_env(home.path(), &api, logged_in),
            long_lived,
            keep_worktrees: false,
            memory_limit: None,
            workspace_root: None,
            accounts: Default::default(),
        });
        let config = claude_swarm::engine::EngineConfig {
            working_directory: work.path().into(),
            ..config(1)
        };
        let server = TestServer::start_with_agent(config, agent).await;
        Self {
            api,
            server,
            _work: work,
            _home: home,
        }
    }

    /// Submits a task and waits for its end, collecting the agent's output lines.
    async fn run(&self, spec: pb::TaskSpec) -> (pb::Task, Vec<pb::AgentOutput>) {
        let task = self.server.submit(spec).await;
        let outputs = outputs(&self.server, &task.id).await;
        (self.server.get(&task.id).await, outputs)
    }
}

/// The task's output lines, replayed and then live, until its terminal event.
async fn outputs(server: &TestServer, id: &str) -> Vec<pb::AgentOutput> {
    let request = pb::StreamEventsRequest {
        after_sequence: Some(0),
        task_id: id.into(),
        kinds: [
            K::TaskOutput,
            K::TaskCompleted,
            K::TaskFailed,
            K::TaskCancelled,
            K::TaskSkipped,
        ]
        .map(|k| k as i32)
        .to_vec(),
        ..Default::default()
    };
    let mut stream = server
        .events()
        .stream_events(request)
        .await
        .unwrap()
        .into_inner();
    let mut lines = Vec::new();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(30), stream.message())
            .await
            .expect("the task ends within 30s")
            .unwrap()
            .expect("an event");
        match event.payload {
            Some(pb::event::Payload::Output(output)) => lines.push(output),
            _ => return lines,
        }
    }
}

fn types(lines: &[pb::AgentOutput]) -> Vec<&str> {
    lines.iter().map(|l| l.message_type.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_answer_completes_with_its_text_session_cost_and_usage() {
    let rig = Rig::start(Reply::Text("Hello from the fake API".into())).await;
    let (done, lines) = rig.run(spec("say hi")).await;

    assert_eq!(status(&done), S::Completed, "{done:?}");
    assert_eq!(done.error, "");
    let result = done.result.clone().unwrap();
    assert_eq!(result.text, "Hello from the fake API");
    assert!(!result.is_error);
    assert_eq!(result.exit_code, Some(0));
    assert_eq!(result.num_turns, 1);
    assert!(
        uuid::Uuid::parse_str(&result.session_id).is_ok(),
        "a uuid session id: {:?}",
        result.session_id
    );
    assert!(
        result.cost_usd > 0.0,
        "the CLI prices the usage: {result:?}"
    );
    let usage = result.usage.unwrap();
    assert_eq!(
        (usage.input_tokens, usage.output_tokens),
        (INPUT_TOKENS, OUTPUT_TOKENS)
    );

    // Every line went through our parser: init, the answer, the result.
    assert_eq!(
        types(&lines),
        ["system", "assistant", "result"],
        "{lines:?}"
    );
    assert_eq!(lines[0].subtype, "init");
    assert!(lines[0].text.contains(&result.session_id), "{:?}", lines[0]);
    assert_eq!(lines[1].text, "Hello from the fake API");

    // One streaming request carrying the prompt, and no other traffic.
    assert_eq!(rig.api.hits(), ["POST /v1/messages?beta=true"]);
    let requests = rig.api.requests();
    assert_eq!(requests[0]["stream"], true);
    assert!(
        requests[0]["messages"].to_string().contains("say hi"),
        "the prompt reaches the API"
    );
    rig.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_system_prompt_that_starts_like_a_flag_reaches_the_api_as_text() {
    let rig = Rig::start(Reply::Text("ok".into())).await;
    let options = pb::AgentOptions {
        append_system_prompt: "--dangerously-skip-permissions is not a flag here".into(),
        ..Default::default()
    };
    let (done, _) = rig
        .run(pb::TaskSpec {
            options: Some(options),
            ..spec("say hi")
        })
        .await;
    assert_eq!(status(&done), S::Completed, "{done:?}");
    let system = rig.api.requests()[0]["system"].to_string();
    assert!(
        system.contains("--dangerously-skip-permissions is not a flag here"),
        "{system}"
    );
    rig.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_resumes_the_session_of_an_earlier_one() {
    let rig = Rig::start(Reply::Text("first answer".into())).await;
    let (first, _) = rig.run(spec("remember the word pelican")).await;
    assert_eq!(status(&first), S::Completed, "{first:?}");
    let session = first.result.unwrap().session_id;

    let options = pb::AgentOptions {
        resume_session: session.clone(),
        ..Default::default()
    };
    let (second, _) = rig
        .run(pb::TaskSpec {
            options: Some(options),
            ..spec("what was the word?")
        })
        .await;
    assert_eq!(status(&second), S::Completed, "{second:?}");
    assert_eq!(
        second.result.unwrap().session_id,
        session,
        "the same session continues"
    );
    // The second request to the API carries the first conversation.
    let requests = rig.api.requests();
    let history = requests.last().unwrap()["messages"].to_string();
    assert!(
        history.contains("pelican") && history.contains("first answer"),
        "{history}"
    );

    let options = pb::AgentOptions {
        resume_session: session.clone(),
        fork_session: true,
        ..Default::default()
    };
    let (forked, _) = rig
        .run(pb::TaskSpec {
            options: Some(options),
            ..spec("and now?")
        })
        .await;
    assert_eq!(status(&forked), S::Completed, "{forked:?}");
    assert_ne!(
        forked.result.unwrap().session_id,
        session,
        "a fork gets a session of its own"
    );
    rig.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_lived_instance_answers_an_interrupt_and_its_next_task_starts_afresh() {
    let slow = Reply::Slow {
        parts: (0..30).map(|i| format!("part {i} ")).collect(),
        every: Duration::from_millis(300),
    };
    let rig = Rig::start_with(slow, true, true).await;
    let server = &rig.server;
    let task = server.submit(spec("tell a long story about otters")).await;
    server.wait_for(&task.id, K::TaskOutput).await;
    let running = server.get(&task.id).await;
    let instance = running.instance_id.clone();
    let pid = server
        .instances()
        .get_instance(pb::GetInstanceRequest {
            instance_id: instance.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .pid;
    let cancelled = server.cancel(&task.id).await;
    assert_eq!(status(&cancelled), S::Cancelled);
    // The CLI answered the interrupt, so the turn's result (and cost) was read.
    assert!(cancelled.result.is_some(), "{cancelled:?}");

    rig.api.set_reply(Reply::Text("short answer".into()));
    let (next, _) = rig.run(spec("just say done")).await;
    assert_eq!(status(&next), S::Completed, "{next:?}");
    assert_eq!(next.instance_id, instance);
    assert_eq!(next.result.unwrap().text, "short answer");
    // A fresh conversation: the new request does not carry the cancelled task's prompt.
    let history = rig.api.requests().last().unwrap()["messages"].to_string();
    assert!(
        !history.contains("otters") && history.contains("just say done"),
        "{history}"
    );
    rig.server.stop().await;
    assert!(!group_alive(pid), "shutdown ends the instance's processes");
}

/// All `tool_result` blocks of a request's messages, as JSON text.
fn tool_results(request: &Value) -> Vec<String> {
    request["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["content"].as_array())
        .flatten()
        .filter(|b| b["type"] == "tool_result")
        .map(Value::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_call_runs_for_real_and_its_output_goes_back_to_the_api() {
    let rig = Rig::start(Reply::ToolUse).await;
    let (done, lines) = rig
        .run(pb::TaskSpec {
            // Running as root, the CLI refuses to skip permissions; an allowed tool runs.
            allowed_tools: vec!["Bash".into()],
            ..spec("run the echo")
        })
        .await;

    assert_eq!(status(&done), S::Completed, "{done:?}");
    let result = done.result.clone().unwrap();
    assert_eq!(result.text, format!("{TOOL_ANSWER_PREFIX}{TOOL_OUTPUT}"));
    assert!(result.num_turns >= 2, "{result:?}");
    assert!(!result.is_error && result.cost_usd > 0.0, "{result:?}");
    let usage = result.usage.unwrap();
    assert_eq!(
        (usage.input_tokens, usage.output_tokens),
        (2 * INPUT_TOKENS, 2 * OUTPUT_TOKENS),
        "usage summed over both requests"
    );

    // The tool call and its result went through our parser.
    let call = lines
        .iter()
        .find(|l| l.message_type == "assistant" && l.text.starts_with("[tool Bash]"))
        .unwrap_or_else(|| panic!("a Bash tool call line: {lines:?}"));
    assert!(call.text.contains(TOOL_COMMAND), "{call:?}");
    let tool_result = lines
        .iter()
        .find(|l| l.message_type == "user")
        .unwrap_or_else(|| panic!("a tool result line: {lines:?}"));
    assert_eq!(tool_result.text, format!("[tool result] {TOOL_OUTPUT}"));
    assert_eq!(lines.last().unwrap().message_type, "result");

    // The command really ran: the second request carries its output.
    let requests = rig.api.requests();
    assert_eq!(requests.len(), 2, "{:?}", rig.api.hits());
    assert!(tool_results(&requests[0]).is_empty());
    let results = tool_results(&requests[1]);
    assert!(
        results.len() == 1 && results[0].contains(TOOL_OUTPUT) && results[0].contains("toolu_"),
        "{results:?}"
    );
    rig.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overloaded_api_fails_the_task_with_the_status() {
    let rig = Rig::start(Reply::Overloaded).await;
    let (done, lines) = rig.run(spec("say hi")).await;

    assert_eq!(status(&done), S::Failed, "{done:?}");
    assert!(done.error.contains("529"), "{}", done.error);
    let result = done.result.clone().unwrap();
    assert!(result.is_error, "{result:?}");
    assert!(result.text.starts_with("API Error: 529"), "{result:?}");
    assert_eq!(result.exit_code, Some(1));
    assert_eq!(result.api_error_status, 529);
    assert_eq!(done.failure_class, pb::FailureClass::ApiError as i32);
    assert_eq!(lines.last().unwrap().message_type, "result");
    // CLAUDE_CODE_MAX_RETRIES=0: one attempt.
    assert_eq!(rig.api.requests().len(), 1, "{:?}", rig.api.hits());
    rig.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_login_the_task_fails_with_not_logged_in() {
    let rig = Rig::start_as(Reply::Text("never sent".into()), false).await;
    let (done, _) = rig.run(spec("say hi")).await;

    assert_eq!(status(&done), S::Failed, "{done:?}");
    assert!(done.error.contains("Not logged in"), "{}", done.error);
    let result = done.result.clone().unwrap();
    assert!(result.is_error, "{result:?}");
    assert_eq!(result.text, "Not logged in · Please run /login");
    assert_eq!(result.exit_code, Some(1));
    assert_eq!(done.failure_class, pb::FailureClass::Authentication as i32);
    assert!(rig.api.requests().is_empty(), "{:?}", rig.api.hits());
    rig.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_slow_answer_stops_the_cli_process_group() {
    let rig = Rig::start(Reply::Slow {
        parts: (0..30).map(|i| format!("part {i} ")).collect(),
        every: Duration::from_millis(500),
    })
    .await;
    let server = &rig.server;
    let task = server.submit(spec("answer slowly")).await;
    // The init line comes once the process is up and its pid recorded.
    let first = server.wait_for(&task.id, K::TaskOutput).await;
    let Some(pb::event::Payload::Output(first)) = first.payload else {
        panic!("an output payload")
    };
    assert_eq!(
        (first.message_type.as_str(), first.subtype.as_str()),
        ("system", "init")
    );
    let running = server.get(&task.id).await;
    assert_eq!(status(&running), S::Running);
    let pid = server
        .instances()
        .get_instance(pb::GetInstanceRequest {
            instance_id: running.instance_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .pid;
    assert!(pid > 0 && group_alive(pid));

    let asked = Instant::now();
    let cancelled = server.cancel(&task.id).await;
    assert_eq!(status(&cancelled), S::Cancelled);
    assert!(
        !group_alive(pid),
        "the process group is gone once cancel answers"
    );
    // SIGTERM is enough: no wait for the SIGKILL grace.
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(status(&server.wait(&task.id).await), S::Cancelled);
    rig.server.stop().await;
}

/// Top-level keys of each line kind (`system/init`, `assistant`, `user`, `result`, ...).
fn key_sets(stdout: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut sets: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        let value: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: a JSON line: {line}"));
        let object = value.as_object().expect("an object per line");
        let mut kind = object["type"].as_str().unwrap().to_owned();
        if kind == "system" {
            kind = format!("system/{}", object["subtype"].as_str().unwrap_or(""));
        }
        sets.entry(kind).or_default().extend(object.keys().cloned());
    }
    sets
}

/// Runs `program args` with `prompt` on stdin, only PATH and `env` in its environment;
/// returns stdout after checking it exited 0.
fn print_mode(
    program: &Path,
    args: &[&str],
    env: &[(String, String)],
    cwd: &Path,
    prompt: &str,
) -> String {
    let mut child = Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(prompt.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{} exited {}: {stdout}\n{}",
        program.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

const PRINT_MODE: [&str; 4] = ["-p", "--output-format", "stream-json", "--verbose"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulated_agent_prints_every_key_the_real_cli_prints() {
    let program = claude();
    let api = FakeApi::start(Reply::Text("hi from the fake".into())).await;
    let home = TempDir::new().unwrap();
    let work = TempDir::new().unwrap();
    let env = cli_env(home.path(), &api, true);
    let cwd = work.path().to_owned();
    let sim = |prompt: &'static str| {
        let (env, cwd) = (env.clone(), cwd.clone());
        let mut args = vec![claude_swarm::config::SIMULATE_AGENT];
        args.extend(PRINT_MODE);
        tokio::task::spawn_blocking(move || {
            key_sets(&print_mode(
                Path::new(common::BIN),
                &args,
                &env,
                &cwd,
                prompt,
            ))
        })
    };
    let real = |extra: &'static [&'static str]| {
        let (program, env, cwd) = (program.clone(), env.clone(), cwd.clone());
        let mut args = PRINT_MODE.to_vec();
        args.extend(extra);
        tokio::task::spawn_blocking(move || {
            key_sets(&print_mode(&program, &args, &env, &cwd, "say hi"))
        })
    };

    // A plain answer, then a tool call (the simulation's `sim:tool`).
    let plain = (real(&[]).await.unwrap(), sim("say hi").await.unwrap());
    assert_eq!(api.requests().len(), 1, "the real CLI asked the fake");
    api.set_reply(Reply::ToolUse);
    let tool = (
        real(&["--allowedTools", "Bash"]).await.unwrap(),
        sim("say hi sim:tool").await.unwrap(),
    );
    assert_eq!(api.requests().len(), 3, "a tool call and the answer");

    let mut missing = Vec::new();
    for (run, (real, simulated), kinds) in [
        (
            "plain answer",
            plain,
            &["system/init", "assistant", "result"][..],
        ),
        (
            "tool call",
            tool,
            &["system/init", "assistant", "user", "result"][..],
        ),
    ] {
        for kind in kinds {
            let real_keys = real
                .get(*kind)
                .unwrap_or_else(|| panic!("{run}: the real CLI printed a {kind} line: {real:?}"));
            let sim_keys = simulated
                .get(*kind)
                .unwrap_or_else(|| panic!("{run}: the simulation printed a {kind} line"));
            let lacking: Vec<_> = real_keys.difference(sim_keys).collect();
            if !lacking.is_empty() {
                missing.push(format!("{run}, {kind} line: {lacking:?}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "the simulated agent lacks keys the real CLI {PINNED} prints:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_installed_cli_is_the_pinned_version() {
    let home = TempDir::new().unwrap();
    let out = Command::new(claude())
        .arg("--version")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .output()
        .unwrap();
    let version = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && version.trim() == format!("{PINNED} (Claude Code)"),
        "{version} {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
