//! Workflows end to end over gRPC: data between tasks, fan-out, failure policies, retries,
//! variables, validation errors and warnings with their place, files written for the
//! original Python Claude Swarm, and a large generated workflow.

mod common;

use std::collections::HashMap;

use claude_swarm::pb::{self, EventKind as K, TaskStatus as S};
use common::{TestServer, config, status};
use tonic::Code;

/// Runs a workflow to its end; returns it and its tasks by name.
async fn run(
    server: &TestServer,
    yaml: &str,
    vars: &[(&str, &str)],
) -> (pb::Workflow, HashMap<String, pb::Task>) {
    let request = pb::ExecuteWorkflowRequest {
        yaml: yaml.into(),
        variables: vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    let reply = server
        .workflows()
        .execute_workflow(request)
        .await
        .unwrap()
        .into_inner();
    let events = pb::StreamEventsRequest {
        after_sequence: Some(0),
        workflow_id: reply.workflow_id.clone(),
        kinds: vec![K::WorkflowFinished as i32],
        ..Default::default()
    };
    let mut stream = server
        .events()
        .stream_events(events)
        .await
        .unwrap()
        .into_inner();
    let finished = tokio::time::timeout(std::time::Duration::from_secs(60), stream.message())
        .await
        .expect("the workflow finished within 60s")
        .unwrap()
        .unwrap();
    let Some(pb::event::Payload::Workflow(workflow)) = finished.payload else {
        panic!("a workflow payload")
    };
    let mut tasks = HashMap::new();
    let mut token = String::new();
    loop {
        let page = server
            .tasks()
            .list_tasks(pb::ListTasksRequest {
                workflow_id: workflow.id.clone(),
                limit: 1000,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        tasks.extend(page.tasks.into_iter().map(|t| (t.name.clone(), t)));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    (workflow, tasks)
}

fn text(task: &pb::Task) -> &str {
    task.result.as_ref().map_or("", |r| r.text.as_str())
}

#[tokio::test]
async fn results_flow_downstream_and_outputs_are_the_leaves() {
    let server = TestServer::start(config(2)).await;
    let yaml = r#"
name: data
variables:
  topic: parsers
tasks:
  - id: a
    prompt: "Name a topic sim:reply={{ vars.topic }}"
  - id: b
    prompt: "Summarise: {{ tasks.a.result }}"
    depends_on: [a]
  - id: c
    prompt: "Grandchild sees {{ tasks.a.result }} too"
    depends_on: [b]
"#;
    let (workflow, tasks) = run(&server, yaml, &[("topic", "lexers")]).await;
    assert_eq!(workflow.status, pb::WorkflowStatus::Completed as i32);
    assert_eq!(text(&tasks["a"]), "lexers");
    assert_eq!(tasks["b"].prompt, "Summarise: lexers");
    assert_eq!(text(&tasks["b"]), "Simulated answer to: Summarise: lexers");
    assert_eq!(
        text(&tasks["c"]),
        "Simulated answer to: Grandchild sees lexers too"
    );
    assert_eq!(workflow.outputs.keys().collect::<Vec<_>>(), ["c"]);
    assert_eq!(workflow.outputs["c"], text(&tasks["c"]));
    let total: f64 = tasks
        .values()
        .map(|t| t.result.as_ref().unwrap().cost_usd)
        .sum();
    assert!((workflow.total_cost_usd - total).abs() < 1e-12);
    let turns: u32 = tasks
        .values()
        .map(|t| t.result.as_ref().unwrap().num_turns)
        .sum();
    assert_eq!(workflow.turns, u64::from(turns));
    let output_tokens: u64 = tasks
        .values()
        .map(|t| t.result.as_ref().unwrap().usage.unwrap().output_tokens)
        .sum();
    assert_eq!(workflow.usage.unwrap().output_tokens, output_tokens);
    server.stop().await;
}

#[tokio::test]
async fn fan_out_runs_an_item_each_within_its_bound_and_dependents_wait_for_all() {
    let server = TestServer::start(config(4)).await;
    let yaml = r#"
name: fan
tasks:
  - id: list
    command: printf 'one\ntwo\nthree\nfour\nfive\n'
  - id: each
    prompt: "Handle {{ item }} as number {{ index }} sim:delay=150"
    for_each: { task: list, max_parallel: 2 }
  - id: after
    prompt: "All done: {{ tasks.each.result }}"
    depends_on: [each]
"#;
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
    let watch = pb::StreamEventsRequest {
        after_sequence: Some(0),
        workflow_id: reply.workflow_id.clone(),
        ..Default::default()
    };
    let mut stream = server
        .events()
        .stream_events(watch)
        .await
        .unwrap()
        .into_inner();
    let (mut running, mut most, mut items_done, mut after_started_when) = (0, 0, 0, None);
    loop {
        let event = stream.message().await.unwrap().unwrap();
        let kind = K::try_from(event.kind).unwrap();
        let Some(pb::event::Payload::Task(task)) = &event.payload else {
            if kind == K::WorkflowFinished {
                break;
            }
            continue;
        };
        let item = task.name.starts_with("each[");
        match kind {
            K::TaskStarted if item => {
                running += 1;
                most = most.max(running);
            }
            K::TaskCompleted if item => {
                running -= 1;
                items_done += 1;
            }
            K::TaskStarted if task.name == "after" => after_started_when = Some(items_done),
            _ => {}
        }
    }
    assert_eq!(most, 2, "at most max_parallel items at once");
    assert_eq!(
        after_started_when,
        Some(5),
        "the dependent started after every item"
    );
    let (_, tasks) = run(
        &server,
        "name: noop\ntasks:\n  - id: x\n    prompt: x\n",
        &[],
    )
    .await;
    assert_eq!(tasks.len(), 1);
    let list = server
        .tasks()
        .list_tasks(pb::ListTasksRequest {
            workflow_id: reply.workflow_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .tasks;
    let by_name: HashMap<_, _> = list.iter().map(|t| (t.name.as_str(), t)).collect();
    assert_eq!(
        by_name["each[2]"].prompt,
        "Handle three as number 2 sim:delay=150"
    );
    let results: Vec<String> = serde_json::from_str(text(by_name["each"])).unwrap();
    assert_eq!(results.len(), 5);
    assert_eq!(results[4], "Simulated answer to: Handle five as number 4");
    assert!(text(by_name["after"]).contains("Handle one as number 0"));
    server.stop().await;
}

#[tokio::test]
async fn fail_fast_cancels_the_rest_and_continue_skips_only_dependents() {
    let server = TestServer::start(config(3)).await;
    let yaml = r#"
name: fast
on_failure: fail_fast
tasks:
  - id: bad
    prompt: "break sim:error sim:delay=100"
  - id: slow
    prompt: "runs long sim:hang"
  - id: later
    prompt: "waits"
    depends_on: [slow]
"#;
    let (workflow, tasks) = run(&server, yaml, &[]).await;
    assert_eq!(workflow.status, pb::WorkflowStatus::Failed as i32);
    assert_eq!(status(&tasks["bad"]), S::Failed);
    assert_eq!(status(&tasks["slow"]), S::Cancelled, "{:?}", tasks["slow"]);
    assert_eq!(status(&tasks["later"]), S::Cancelled);
    assert!(
        tasks["later"].error.contains("task bad failed"),
        "{}",
        tasks["later"].error
    );

    let yaml = r#"
name: carry on
tasks:
  - id: bad
    prompt: "break sim:error"
  - id: dependent
    prompt: "needs bad"
    depends_on: [bad]
  - id: independent
    prompt: "fine sim:delay=100"
"#;
    let (workflow, tasks) = run(&server, yaml, &[]).await;
    assert_eq!(workflow.status, pb::WorkflowStatus::Failed as i32);
    assert_eq!(status(&tasks["dependent"]), S::Skipped);
    assert_eq!(status(&tasks["independent"]), S::Completed);
    server.stop().await;
}

#[tokio::test]
async fn retries_back_off_and_keep_count_of_attempts() {
    let server = TestServer::start(config(1)).await;
    let yaml = "name: retry\ntasks:\n  - id: flaky\n    prompt: try sim:flaky=2\n    retries: 2\n    retry_backoff: 0.05\n  - id: hopeless\n    prompt: never sim:error\n    retries: 1\n    retry_backoff: 0.05\n";
    let (_, tasks) = run(&server, yaml, &[]).await;
    assert_eq!(status(&tasks["flaky"]), S::Completed);
    assert_eq!(tasks["flaky"].attempts, 3);
    let history = &tasks["flaky"].history;
    assert_eq!(
        history.iter().map(|a| a.attempt).collect::<Vec<_>>(),
        [1, 2],
        "each failed attempt is kept"
    );
    assert!(
        history
            .iter()
            .all(|a| a.result.as_ref().unwrap().is_error && a.error.contains("529")),
        "{history:?}"
    );
    assert_eq!(status(&tasks["hopeless"]), S::Failed);
    assert_eq!(tasks["hopeless"].attempts, 2);
    let request = pb::StreamEventsRequest {
        after_sequence: Some(0),
        task_id: tasks["flaky"].id.clone(),
        kinds: vec![K::TaskRetrying as i32],
        ..Default::default()
    };
    let mut stream = server
        .events()
        .stream_events(request)
        .await
        .unwrap()
        .into_inner();
    for attempt in 1..=2 {
        let Some(pb::event::Payload::Task(t)) = stream.message().await.unwrap().unwrap().payload
        else {
            panic!()
        };
        assert!(
            t.error
                .starts_with(&format!("attempt {attempt} of 3 failed")),
            "{}",
            t.error
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn the_original_format_and_every_validation_error_has_a_place() {
    let server = TestServer::start(config(1)).await;
    let (workflow, tasks) = run(
        &server,
        include_str!("../workflows/original-format.yaml"),
        &[],
    )
    .await;
    assert_eq!(workflow.status, pb::WorkflowStatus::Completed as i32);
    assert_eq!(text(&tasks["Run the tests"]), "all tests passed");
    assert_eq!(
        text(&tasks["List the images"]),
        "docker images --format {{.Repository}}:{{.Tag}}"
    );
    assert_eq!(tasks.len(), 4);
    let pinned = &tasks["Review the code"];
    assert_eq!(
        pinned.instance_id, "inst-0002",
        "instance: 2 is the workflow's second instance"
    );

    let cases = [
        (
            "name: x\ntasks:\n  - id: a\n    prompt: p\n    colour: red\n",
            "unknown field `colour`",
            "line 5",
        ),
        (
            "name: x\ntasks:\n  - id: a\n    prompt: p\n    depends_on: [ghost]\n",
            "no task named \"ghost\"",
            "line 5, column 5",
        ),
        (
            "name: x\ntasks:\n  - id: a\n    prompt: p\n    depends_on: [a]\n",
            "cannot depend on itself",
            "line 5",
        ),
        (
            "name: x\ntasks:\n  - id: a\n    prompt: p\n    depends_on: [c]\n  - id: b\n    prompt: q\n    depends_on: [a]\n  - id: c\n    prompt: r\n    depends_on: [b]\n",
            "dependency cycle: a -> c -> b -> a",
            "line 5",
        ),
        (
            "name: x\ntasks:\n  - id: a\n    prompt: p\n  - id: a\n    prompt: q\n",
            "used by an earlier task",
            "line 5",
        ),
        (
            "name: x\ntasks:\n  - id: a\n    prompt: \"{{ tasks.b.result }}\"\n  - id: b\n    prompt: q\n",
            "not upstream",
            "line 4",
        ),
        (
            "name: x\ntasks:\n  - id: a\n    prompt: \"{{ vars.nonsense }}\"\n",
            "no variable \"nonsense\" is declared",
            "line 4",
        ),
        (
            "name: x\ntasks:\n  - id: a\n    prompt: p\n    timeout: -3\n",
            "positive number of seconds",
            "line 5",
        ),
        (
            "name: x\ntasks:\n  - id: a\n    prompt: p\n    max_turns: many\n",
            "invalid type",
            "line 5",
        ),
    ];
    for (yaml, what, place) in cases {
        let request = pb::ValidateWorkflowRequest {
            yaml: yaml.into(),
            ..Default::default()
        };
        let err = server
            .workflows()
            .validate_workflow(request)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(
            err.message().contains(what) && err.message().contains(place),
            "{yaml}\n=> {}",
            err.message()
        );
    }
    let ok = server
        .workflows()
        .validate_workflow(pb::ValidateWorkflowRequest {
            yaml: include_str!("../workflows/demo.yaml").into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((ok.name.as_str(), ok.task_count), ("demo pipeline", 5));
    server.stop().await;
}

#[tokio::test]
async fn a_thousand_task_generated_workflow_validates_and_completes() {
    let server = TestServer::start(config(8)).await;
    // Layers of 50 tasks, each depending on two tasks of the layer before.
    let mut yaml = String::from("name: big\ntasks:\n");
    for i in 0..1000 {
        yaml.push_str(&format!("  - id: t{i}\n    prompt: step {i}\n"));
        if i >= 50 {
            let base = (i / 50 - 1) * 50;
            yaml.push_str(&format!(
                "    depends_on: [t{}, t{}]\n",
                base + i % 50,
                base + (i + 1) % 50
            ));
        }
    }
    let (workflow, tasks) = run(&server, &yaml, &[]).await;
    assert_eq!(tasks.len(), 1000);
    assert_eq!(
        workflow.status,
        pb::WorkflowStatus::Completed as i32,
        "{:?}",
        workflow.task_counts
    );
    assert_eq!(workflow.task_counts.unwrap().completed, 1000);
    assert_eq!(workflow.outputs.len(), 50);
    server.stop().await;
}

#[tokio::test]
async fn upstream_results_reach_shell_steps_as_quoted_words_never_as_code() {
    let server = TestServer::start(config(2)).await;
    let yaml = r#"
name: quoting
tasks:
  - id: evil
    command: "printf '%s\n' 'a b' \"it's; touch /tmp/claude-swarm-pwned\""
  - id: echo
    command: "printf '[%s]' {{ tasks.evil.result }}"
    depends_on: [evil]
  - id: each
    command: "printf '<%s>' {{ item }}"
    for_each: { task: evil }
"#;
    let _ = std::fs::remove_file("/tmp/claude-swarm-pwned");
    let (workflow, tasks) = run(&server, yaml, &[]).await;
    assert_eq!(
        workflow.status,
        pb::WorkflowStatus::Completed as i32,
        "{tasks:?}"
    );
    assert_eq!(
        text(&tasks["echo"]),
        "[a b\nit's; touch /tmp/claude-swarm-pwned]"
    );
    assert_eq!(
        text(&tasks["each[1]"]),
        "<it's; touch /tmp/claude-swarm-pwned>"
    );
    assert!(!std::path::Path::new("/tmp/claude-swarm-pwned").exists());
    server.stop().await;
}

#[tokio::test]
async fn an_original_file_runs_with_pins_from_1_and_its_foreign_braces_as_written() {
    let server = TestServer::start(config(1)).await;
    let yaml = include_str!("fixtures/original-format/parallel-analysis.yaml");
    let validate = |yaml: String| {
        let mut workflows = server.workflows();
        async move {
            workflows
                .validate_workflow(pb::ValidateWorkflowRequest {
                    yaml,
                    ..Default::default()
                })
                .await
        }
    };

    // Validation accepts it and says what it kept as written, and where.
    let checked = validate(yaml.into()).await.unwrap().into_inner();
    assert_eq!(checked.task_count, 5);
    let places: Vec<_> = checked
        .warnings
        .iter()
        .map(|w| (w.field.as_str(), w.line, w.column))
        .collect();
    assert_eq!(
        places,
        [
            ("tasks[1].command", 20, 53),
            ("tasks[1].command", 20, 69),
            ("tasks[2].prompt", 29, 32),
            ("tasks[3].prompt", 36, 15),
        ]
    );
    assert!(
        checked.warnings[2]
            .message
            .starts_with("`{{ $labels.instance }}` is not a claude-swarm template"),
        "{:?}",
        checked.warnings[2]
    );

    let (workflow, tasks) = run(&server, yaml, &[]).await;
    assert_eq!(
        workflow.status,
        pb::WorkflowStatus::Completed as i32,
        "{tasks:?}"
    );
    // `instance: 1` to `instance: 4` are the workflow's four instances, in order.
    for (name, instance) in [
        ("Security Audit", "inst-0001"),
        ("Image Size Analysis", "inst-0002"),
        ("Alert Rules", "inst-0003"),
        ("Log Shipping", "inst-0004"),
    ] {
        assert_eq!(tasks[name].instance_id, instance, "{name}");
    }
    // The shell and the agent got the braces as written.
    assert_eq!(
        text(&tasks["Image Size Analysis"]),
        "docker images app:test --format {{.Repository}}:{{ .Size }}"
    );
    assert!(
        tasks["Alert Rules"]
            .prompt
            .contains("summary: \"Instance {{ $labels.instance }} down\"")
    );
    assert!(
        text(&tasks["Log Shipping"]).contains("tag: \"{{.Name}}\""),
        "{}",
        text(&tasks["Log Shipping"])
    );
    assert_eq!(
        workflow.outputs.keys().collect::<Vec<_>>(),
        ["Generate Summary Report"]
    );

    // Pins outside 1..=instances, or without `instances`, are refused with their line.
    for (from, to, what, place) in [
        (
            "instance: 4\n",
            "instance: 5\n",
            "must be 1 to 4",
            "line 37, column 5",
        ),
        (
            "instance: 1\n",
            "instance: 0\n",
            "must be 1 to 4",
            "line 15, column 5",
        ),
        (
            "instances: 4\n",
            "\n",
            "sets no `instances`",
            "line 15, column 5",
        ),
    ] {
        let err = validate(yaml.replacen(from, to, 1)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(
            err.message().contains(what) && err.message().contains(place),
            "{to:?}: {}",
            err.message()
        );
    }
    server.stop().await;
}
