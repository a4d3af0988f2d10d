//! The command line and grpcurl, as a user runs them.

mod common;

use std::process::Command;

use common::{BIN, TestServer, config};

#[test]
fn every_example_workflow_runs_to_completion() {
    let mut ran = 0;
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/workflows")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let out = Command::new(BIN)
            .args(["run", "--agent", "simulated", "--json"])
            .arg(&path)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}: {}\n{}",
            path.display(),
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        let tasks = report["tasks"].as_array().unwrap();
        assert!(!tasks.is_empty());
        for task in tasks {
            assert_eq!(task["status"], "TASK_STATUS_COMPLETED", "{task}");
        }
        ran += 1;
    }
    assert!(ran > 0, "workflows/ holds examples");
}

#[test]
fn a_failing_workflow_exits_non_zero_with_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fails.yaml");
    std::fs::write(&path, "name: fails\ntasks:\n  - id: bad\n    prompt: boom sim:error\n  - id: next\n    prompt: after\n    depends_on: [bad]\n").unwrap();
    let out = Command::new(BIN)
        .args(["run", "--agent", "simulated"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("failed") && stdout.contains("skipped"),
        "{stdout}"
    );
    assert!(stdout.contains("workflow fails"), "{stdout}");
}

#[test]
fn a_missing_claude_is_a_clear_error_not_a_simulation() {
    let out = Command::new(BIN)
        .args([
            "run",
            "workflows/demo.yaml",
            "--claude-command",
            "no-such-claude-here",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("SWARM_AGENT")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("`no-such-claude-here` was not found on PATH"),
        "{stderr}"
    );
    assert!(stderr.contains("--agent simulated"), "{stderr}");
}

#[test]
fn an_invalid_workflow_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "name: bad\ntasks:\n  - id: a\n    prompt: p\n    colour: blue\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["run", "--agent", "simulated"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown field `colour`") && stderr.contains("line 5"),
        "{stderr}"
    );
}

#[test]
fn run_refuses_shell_steps_when_commands_are_switched_off() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let path = dir.path().join("shell.yaml");
    std::fs::write(
        &path,
        format!(
            "name: shell\ntasks:\n  - id: plan\n    prompt: p\n  - id: touch\n    command: touch {}\n",
            marker.display()
        ),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["run", "--agent", "simulated", "--allow-commands", "false"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("tasks[1].command") && stderr.contains("allow_commands: false"),
        "{stderr}"
    );
    assert!(!marker.exists(), "the shell step ran");
    // Allowed (the default), the same workflow runs its step.
    let out = Command::new(BIN)
        .args(["run", "--agent", "simulated"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(marker.exists());
}

/// A page of tasks larger than tonic's 4 MiB default reaches the command line whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_page_past_four_mib_is_listed() {
    let server = TestServer::start(config(1)).await;
    let blocker = server.submit(common::spec("hold sim:hang")).await;
    let big = "x".repeat(1024 * 1024);
    for i in 0..6 {
        let mut spec = common::spec(&format!("{i} {big}"));
        spec.depends_on = vec![blocker.id.clone()];
        server.submit(spec).await;
    }
    let (ok, out, err) = client(&server, &["task", "list", "--json", "--limit", "10"]);
    assert!(ok, "{err}");
    assert!(out.len() > 6 * 1024 * 1024, "{} bytes", out.len());
    let page: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(page["tasks"].as_array().unwrap().len(), 7);
    server.cancel(&blocker.id).await;
    server.stop().await;
}

fn client(server: &TestServer, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .arg("--server")
        .arg(format!("http://{}", server.addr))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_subcommands_drive_a_server() {
    let server = TestServer::start(config(2)).await;
    let (ok, out, err) = client(
        &server,
        &[
            "submit",
            "hello from the cli sim:cost=0.5",
            "--name",
            "cli",
            "--wait",
            "--json",
        ],
    );
    assert!(ok, "{out}{err}");
    let task: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(task["status"], "TASK_STATUS_COMPLETED");
    assert_eq!(task["result"]["cost_usd"], 0.5);
    let id = task["id"].as_str().unwrap().to_owned();

    let (ok, out, _) = client(&server, &["task", "get", &id]);
    assert!(
        ok && out.contains("status:    completed") && out.contains("$0.500000"),
        "{out}"
    );
    let (ok, out, _) = client(&server, &["task", "list", "--status", "completed"]);
    assert!(ok && out.contains(&id), "{out}");
    let (ok, _, err) = client(&server, &["task", "cancel", &id]);
    assert!(!ok && err.contains("FailedPrecondition"), "{err}");
    let (ok, out, _) = client(&server, &["instance", "scale", "3"]);
    assert!(ok && out.lines().count() == 4, "{out}");
    let (ok, out, _) = client(&server, &["status"]);
    assert!(
        ok && out.contains("1 completed") && out.contains("3 idle"),
        "{out}"
    );
    // The one implicit account, with its usage-limit columns.
    let account = out.lines().skip_while(|l| !l.starts_with("ACCOUNT")).nth(1);
    assert!(
        account.is_some_and(|l| l.starts_with("default") && l.contains("active")),
        "{out}"
    );
    // Lifting a pause of an account that is not held back answers it as it is.
    let (ok, out, err) = client(&server, &["resume-account", "default"]);
    assert!(
        ok && out
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("default") && l.contains("active")),
        "{out}{err}"
    );
    let (ok, _, err) = client(&server, &["resume-account", "nope"]);
    assert!(!ok && err.contains("NotFound"), "{err}");
    let (ok, _, err) = client(&server, &["submit", "x", "--account", "nope"]);
    assert!(
        !ok && err.contains("account") && err.contains("unknown account \"nope\""),
        "{err}"
    );
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/workflows/demo.yaml");
    let (ok, out, err) = client(&server, &["workflow", "run", demo]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("workflow demo pipeline") && out.contains("completed in"),
        "{out}"
    );
    let (ok, out, _) = client(&server, &["workflow", "list"]);
    assert!(
        ok && out.contains("demo pipeline") && out.contains("5/5"),
        "{out}"
    );
    // `watch` follows events live until stopped: read until the task's completion shows.
    let mut watch = Command::new(BIN)
        .arg("--server")
        .arg(format!("http://{}", server.addr))
        .args(["watch", "--after", "0", "--task", &id])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = std::io::BufRead::lines(std::io::BufReader::new(watch.stdout.take().unwrap()));
    let seen: Vec<String> = lines
        .map(Result::unwrap)
        .take_while(|l| !l.contains("task_completed"))
        .collect();
    watch.kill().unwrap();
    watch.wait().unwrap();
    assert!(seen.iter().any(|l| l.contains("task_started")), "{seen:?}");
    assert!(
        seen.iter()
            .any(|l| l.contains("task_output") && l.contains("result")),
        "{seen:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_lists_every_service_and_runs_a_task() {
    let server = TestServer::start(config(1)).await;
    let addr = server.addr.to_string();
    let out = Command::new("grpcurl")
        .args(["-plaintext", &addr, "list"])
        .output()
        .expect("grpcurl is installed (scripts/setup)");
    let listed = String::from_utf8_lossy(&out.stdout);
    for service in [
        "claude_swarm.v1.EventService",
        "claude_swarm.v1.InstanceService",
        "claude_swarm.v1.SwarmService",
        "claude_swarm.v1.TaskService",
        "claude_swarm.v1.WorkflowService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(
            listed.lines().any(|l| l == service),
            "{service} missing from:\n{listed}"
        );
    }
    let out = Command::new("grpcurl")
        .args([
            "-plaintext",
            "-d",
            r#"{"task":{"prompt":"via grpcurl sim:cost=0.75"}}"#,
            &addr,
        ])
        .arg("claude_swarm.v1.TaskService/SubmitTask")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let done = server.wait(reply["taskId"].as_str().unwrap()).await;
    let result = done.result.unwrap();
    assert_eq!(
        (result.cost_usd, result.text.as_str()),
        (0.75, "Simulated answer to: via grpcurl")
    );
    assert!(!result.session_id.is_empty());
    let out = Command::new("grpcurl")
        .args(["-plaintext", &addr, "grpc.health.v1.Health/Check"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("SERVING"));
    server.stop().await;
}

/// `claude-swarm config ...` with only the variables given: nothing from the tester's own
/// environment (a `SWARM_*` of theirs) reaches it.
fn config_command(
    args: &[&str],
    env: &[(&str, &str)],
    home: &std::path::Path,
) -> std::process::Output {
    Command::new(BIN)
        .arg("config")
        .args(args)
        .env_clear()
        .env("HOME", home)
        .envs(env.iter().copied())
        .current_dir(home)
        .output()
        .unwrap()
}

#[test]
fn config_show_prints_what_serve_would_use_with_secrets_masked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swarm.yaml");
    let hash = "ab".repeat(32);
    std::fs::write(
        &path,
        format!(
            "instances: 3\nmax_instances: 4\nagent: simulated\nrate_limit_per_second: 7\n\
             agent_env:\n  ANTHROPIC_API_KEY: sk-secret-value\n\
             api_keys:\n  - name: dash\n    role: read\n    sha256: {hash}\n\
             webhooks:\n  - name: chat\n    url: https://hooks.slack.com/services/T0/sekrit-path\n    format: slack\n"
        ),
    )
    .unwrap();
    let config = path.to_str().unwrap();
    // The file < the environment < flags.
    let env = [
        ("SWARM_INSTANCES", "2"),
        ("SWARM_MAX_INSTANCES", "9"),
        ("SWARM_API_KEYS", "ci:operate:env-key-0123456789"),
    ];
    let args = ["show", "--config", config, "--max-instances", "5"];
    let json = config_command(&[&args[..], &["--json"]].concat(), &env, dir.path());
    let yaml = config_command(&args, &env, dir.path());
    for out in [&json, &yaml] {
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        for secret in [
            "sk-secret-value",
            "env-key-0123456789",
            hash.as_str(),
            "sekrit-path",
        ] {
            assert!(!stdout.contains(secret), "{secret} is shown: {stdout}");
        }
    }
    let from_json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let from_yaml: serde_json::Value = serde_norway::from_slice(&yaml.stdout).unwrap();
    assert_eq!(from_json, from_yaml);
    assert_eq!(from_json["instances"], 2);
    assert_eq!(from_json["max_instances"], 5);
    assert_eq!(from_json["agent"], "simulated");
    assert_eq!(from_json["listen"], "127.0.0.1:50051");
    assert_eq!(from_json["agent_env"]["ANTHROPIC_API_KEY"], "***");
    assert_eq!(from_json["rate_limit_per_second"], 7);
    assert_eq!(from_json["max_streams_per_key"], 32);
    assert_eq!(from_json["request_timeout"], 30.0);
    assert_eq!(from_json["tls_cert"], serde_json::Value::Null);
    assert_eq!(
        from_json["rate_limit_burst"], 7,
        "a second's worth by default"
    );
    assert_eq!(
        from_json["api_keys"],
        serde_json::json!([{"name": "ci", "role": "operate"}, {"name": "dash", "role": "read"}])
    );
    let hook = &from_json["webhooks"][0];
    assert_eq!(hook["url"], "https://hooks.slack.com/***");
    assert_eq!(
        (&hook["name"], &hook["format"]),
        (&"chat".into(), &"slack".into())
    );
}

#[test]
fn config_check_passes_a_good_configuration_and_names_the_key_of_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swarm.yaml");
    let config = path.to_str().unwrap();
    let check = |file: &str, args: &[&str]| {
        std::fs::write(&path, file).unwrap();
        config_command(
            &[&["check", "--config", config][..], args].concat(),
            &[],
            dir.path(),
        )
    };
    let out = check("agent: simulated\n", &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "configuration is valid\n"
    );
    for (file, args, says) in [
        (
            "agent: simulated\nmax_instances: 0\n",
            &[][..],
            "error: max_instances: must be at least 1",
        ),
        ("agent: simulated\nbogus: 1\n", &[], "unknown field `bogus`"),
        (
            "agent: simulated\nwebhooks:\n  - url: ftp://example.com/x\n    secret: 0123456789abcdef\n",
            &[],
            "error: webhooks[0].url: \"ftp://example.com/x\" is not an http(s) URL",
        ),
        (
            "agent: simulated\nwebhooks:\n  - url: http://example.com/x\n    secret: short\n",
            &[],
            "error: webhooks[0].secret: is 5 bytes",
        ),
        (
            "agent: simulated\n",
            &["--listen", "0.0.0.0:0"],
            "error: listen: 0.0.0.0:0",
        ),
        // As `serve` does, it looks for the agent command.
        (
            "claude_command: no-such-claude-here\n",
            &[],
            "error: claude_command:",
        ),
    ] {
        let out = check(file, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{file}: {stderr}");
        assert!(stderr.contains(says), "{file}: {stderr}");
        assert!(out.stdout.is_empty(), "{file}");
    }
}

#[test]
fn logs_are_json_lines_and_a_failed_run_names_its_class_and_task() {
    let json_lines = |stderr: &[u8]| -> Vec<serde_json::Value> {
        String::from_utf8_lossy(stderr)
            .lines()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: not JSON: {line}"))
            })
            .collect()
    };
    let run = |file: &std::path::Path| {
        Command::new(BIN)
            .args(["run", "--agent", "simulated", "--log-format", "json"])
            .arg(file)
            .env("SWARM_LOG", "claude_swarm=info")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap()
    };
    let out = run("workflows/hello.yaml".as_ref());
    assert!(out.status.success(), "{out:?}");
    json_lines(&out.stderr);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fails.yaml");
    std::fs::write(
        &path,
        "name: fails\ntasks:\n  - id: bad\n    prompt: boom sim:error\n",
    )
    .unwrap();
    let out = run(&path);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let lines = json_lines(&out.stderr);
    let failed = lines
        .iter()
        .find(|l| l["fields"]["message"] == "the run failed")
        .unwrap_or_else(|| panic!("no failed run logged: {lines:?}"));
    assert_eq!(failed["level"], "WARN", "{failed}");
    assert!(failed["fields"]["class"].is_string(), "{failed}");
    let span = &failed["span"];
    assert_eq!(span["name"], "run", "{failed}");
    for field in ["task_id", "instance_id", "workflow_id"] {
        assert!(span[field].is_string(), "{field}: {failed}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_takes_an_output_schema_and_a_session_to_resume() {
    let server = TestServer::start(config(1)).await;
    let (ok, out, err) = client(
        &server,
        &[
            "submit",
            r#"plan sim:reply={"files":["a.rs"]}"#,
            "--output-schema",
            r#"{"type": "object", "required": ["files"]}"#,
            "--wait",
            "--json",
        ],
    );
    assert!(ok, "{out}{err}");
    let task: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(task["status"], "TASK_STATUS_COMPLETED", "{task}");
    assert_eq!(
        task["result"]["structured_output"],
        serde_json::json!({"files": ["a.rs"]})
    );
    let session = task["result"]["session_id"].as_str().unwrap().to_owned();
    let (ok, out, err) = client(
        &server,
        &[
            "submit",
            "again",
            "--resume-session",
            &session,
            "--wait",
            "--json",
        ],
    );
    assert!(ok, "{out}{err}");
    let again: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(again["options"]["resume_session"], session.as_str());
    // Refused before anything is sent, or by the server naming the field.
    let (ok, _, err) = client(&server, &["submit", "p", "--output-schema", "{nope"]);
    assert!(!ok && err.contains("--output-schema is not JSON"), "{err}");
    let (ok, _, err) = client(
        &server,
        &["submit", "p", "--output-schema", r#"{"type": 1}"#],
    );
    assert!(!ok && err.contains("output_schema"), "{err}");
    let (ok, _, err) = client(&server, &["submit", "p", "--resume-session", "--x"]);
    assert!(!ok, "{err}");
    server.stop().await;
}

#[test]
fn config_show_masks_each_accounts_env_and_check_names_the_account_at_fault() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swarm.yaml");
    std::fs::write(
        &path,
        "agent: simulated\naccounts:\n  - name: team\n    instances: 2\n    env:\n      \
         ANTHROPIC_API_KEY: sk-account-secret\n      ANTHROPIC_BASE_URL: http://127.0.0.1:9\n",
    )
    .unwrap();
    let config = path.to_str().unwrap();
    let out = config_command(&["show", "--config", config, "--json"], &[], dir.path());
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("sk-account-secret"), "{stdout}");
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        shown["accounts"],
        serde_json::json!([{"name": "team", "instances": 2, "env": {
            "ANTHROPIC_API_KEY": "***", "ANTHROPIC_BASE_URL": "***"
        }}])
    );
    std::fs::write(
        &path,
        "agent: simulated\naccounts:\n  - name: team\n    env: { ANTHROPIC_BASE_URL: http://x }\n",
    )
    .unwrap();
    let out = config_command(&["check", "--config", config], &[], dir.path());
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("accounts[0].env") && stderr.contains("no credentials"),
        "{stderr}"
    );
}
