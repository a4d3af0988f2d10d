//! Sessions, structured output and budgets with the real Claude Code CLI 2.1.332, offline
//! against the fake Messages API (`common/fake_api.rs`): unrelated tasks on one long-lived
//! instance never see each other's conversation, a workflow's `session:` pair does, a
//! structured answer flows into the prompts downstream and fans out, an answer without
//! one fails retryably, and `--max-budget-usd` stops a run inside the CLI. Bad schemas and
//! session ids are refused naming the field (with the simulated agent).

mod common;

use std::{collections::HashMap, time::Duration};

use claude_swarm::pb::{self, EventKind as K, TaskStatus as S};
use common::real_cli::{claude, offline_agent};
use common::{
    TestServer, config,
    fake_api::{FakeApi, Reply, STRUCTURED_OUTPUT_TOOL},
    spec, status,
};
use serde_json::{Value, json};
use tempfile::TempDir;
use tonic::Code;

/// The fake API, scratch HOME and working directory, and our server running the real CLI.
struct Rig {
    api: FakeApi,
    server: TestServer,
    _work: TempDir,
    _home: TempDir,
}

impl Rig {
    async fn start(reply: Reply, long_lived: bool) -> Self {
        let api = FakeApi::start(reply).await;
        let home = TempDir::new().unwrap();
        let work = TempDir::new().unwrap();
        let agent = offline_agent(home.path(), &api.url(), long_lived);
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

    async fn run(&self, spec: pb::TaskSpec) -> pb::Task {
        let task = self.server.submit(spec).await;
        self.server.wait(&task.id).await
    }

    /// Runs a workflow to its end; its tasks by name.
    async fn workflow(&self, yaml: &str) -> HashMap<String, pb::Task> {
        let reply = self
            .server
            .workflows()
            .execute_workflow(pb::ExecuteWorkflowRequest {
                yaml: yaml.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let request = pb::StreamEventsRequest {
            after_sequence: Some(0),
            workflow_id: reply.workflow_id.clone(),
            kinds: vec![K::WorkflowFinished as i32],
            ..Default::default()
        };
        let mut events = self
            .server
            .events()
            .stream_events(request)
            .await
            .unwrap()
            .into_inner();
        let finished = tokio::time::timeout(Duration::from_secs(120), events.message())
            .await
            .expect("the workflow finishes within 120s")
            .unwrap()
            .unwrap();
        let Some(pb::event::Payload::Workflow(workflow)) = finished.payload else {
            panic!("a workflow payload")
        };
        let mut tasks = HashMap::new();
        for id in workflow.task_ids {
            let task = self.server.get(&id).await;
            tasks.insert(task.name.clone(), task);
        }
        tasks
    }

    /// The messages of each request to the API, as JSON text.
    fn conversations(&self) -> Vec<String> {
        self.api
            .requests()
            .iter()
            .map(|r| r["messages"].to_string())
            .collect()
    }

    /// The conversation of the request that carried `text`; panics when none did.
    fn conversation_with(&self, text: &str) -> String {
        let all = self.conversations();
        all.iter()
            .find(|c| c.contains(text))
            .cloned()
            .unwrap_or_else(|| panic!("no request carried {text:?}: {all:#?}"))
    }
}

fn value(json: Value) -> pbjson_types::Value {
    serde_json::from_value(json).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrelated_tasks_on_one_long_lived_instance_never_see_each_others_conversation() {
    let rig = Rig::start(Reply::Text("noted".into()), true).await;
    let first = rig.run(spec("remember the word pelican")).await;
    let second = rig.run(spec("what word were you told?")).await;
    assert_eq!(
        (status(&first), status(&second)),
        (S::Completed, S::Completed),
        "{first:?} {second:?}"
    );
    assert_eq!(first.instance_id, second.instance_id, "one instance");
    let asked = rig.conversation_with("what word were you told?");
    assert!(!asked.contains("pelican"), "{asked}");
    assert_ne!(
        first.result.unwrap().session_id,
        second.result.unwrap().session_id
    );
    rig.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_pair_of_a_workflow_continues_one_conversation() {
    let rig = Rig::start(Reply::Text("noted".into()), true).await;
    let tasks = rig
        .workflow(
            r#"
name: pair
tasks:
  - id: tell
    prompt: remember the word pelican
    session: main
  - id: ask
    prompt: what word were you told?
    session: main
  - id: stranger
    prompt: which word did they give you, stranger?
"#,
        )
        .await;
    for task in tasks.values() {
        assert_eq!(status(task), S::Completed, "{task:?}");
    }
    let asked = rig.conversation_with("what word were you told?");
    assert!(
        asked.contains("pelican") && asked.contains("noted"),
        "the pair shares its conversation: {asked}"
    );
    let stranger = rig.conversation_with("stranger?");
    assert!(!stranger.contains("pelican"), "{stranger}");
    let session = |name: &str| tasks[name].result.clone().unwrap().session_id;
    assert_eq!(session("tell"), session("ask"));
    assert_ne!(session("tell"), session("stranger"));
    assert_eq!(tasks["ask"].session, "main");
    rig.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn structured_output_flows_into_the_prompts_downstream_and_fans_out() {
    let files = json!({"files": ["a.rs", "b.rs"]});
    let rig = Rig::start(Reply::Structured(files.clone()), true).await;
    let tasks = rig
        .workflow(
            r#"
name: structured
tasks:
  - id: plan
    prompt: list the files to review
    output_schema:
      type: object
      properties:
        files: {type: array, items: {type: string}}
      required: [files]
  - id: summary
    prompt: "Summarise the review of {{ tasks.plan.output.files }} please"
    depends_on: [plan]
  - id: each
    prompt: "Review {{ item }} closely"
    for_each: {task: plan, output: files}
"#,
        )
        .await;
    for task in tasks.values() {
        assert_eq!(status(task), S::Completed, "{task:?}");
    }
    let plan = tasks["plan"].result.clone().unwrap();
    let output: Value = serde_json::to_value(plan.structured_output.unwrap()).unwrap();
    assert_eq!(output, files);
    // The CLI offered the schema to the model as its StructuredOutput tool.
    let requests = rig.api.requests();
    let offered = requests[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == STRUCTURED_OUTPUT_TOOL)
        .expect("the StructuredOutput tool")
        .clone();
    assert_eq!(offered["input_schema"]["required"], json!(["files"]));
    rig.conversation_with(r#"Summarise the review of [\"a.rs\",\"b.rs\"] please"#);
    rig.conversation_with("Review a.rs closely");
    rig.conversation_with("Review b.rs closely");
    rig.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_without_structured_output_fails_with_a_retryable_class() {
    let rig = Rig::start(Reply::Text("just prose".into()), false).await;
    let schema = json!({"type": "object", "required": ["files"]});
    let task = rig
        .run(pb::TaskSpec {
            output_schema: Some(value(schema)),
            retries: 1,
            retry_backoff: 0.1,
            ..spec("list the files")
        })
        .await;
    assert_eq!(status(&task), S::Failed, "{task:?}");
    assert_eq!(task.failure_class, pb::FailureClass::OutputInvalid as i32);
    assert!(
        task.error.contains("no structured output"),
        "{}",
        task.error
    );
    assert_eq!(task.attempts, 2, "the class is retryable");
    rig.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_cap_stops_the_run_inside_the_cli() {
    let rig = Rig::start(Reply::Text("an expensive answer".into()), true).await;
    let task = rig
        .run(pb::TaskSpec {
            options: Some(pb::AgentOptions {
                max_budget_usd: 0.0001,
                ..Default::default()
            }),
            ..spec("spend a lot")
        })
        .await;
    assert_eq!(status(&task), S::Failed, "{task:?}");
    assert_eq!(task.failure_class, pb::FailureClass::BudgetExhausted as i32);
    assert!(task.error.contains("budget"), "{}", task.error);
    rig.server.stop().await;
}

#[tokio::test]
async fn bad_schemas_and_session_ids_are_refused_naming_the_field() {
    let server = TestServer::start(config(1)).await;
    let refused = |spec: pb::TaskSpec| {
        let mut tasks = server.tasks();
        async move {
            tasks
                .submit_task(pb::SubmitTaskRequest { task: Some(spec) })
                .await
                .unwrap_err()
        }
    };
    for (schema, why) in [
        (json!({"type": "nope"}), "not a valid JSON Schema"),
        (json!("object"), "must be a JSON Schema"),
        (
            json!({"$ref": "file:///etc/passwd"}),
            "not a valid JSON Schema",
        ),
    ] {
        let error = refused(pb::TaskSpec {
            output_schema: Some(value(schema.clone())),
            ..spec("p")
        })
        .await;
        assert_eq!(error.code(), Code::InvalidArgument, "{schema}");
        assert!(
            error.message().contains("output_schema") && error.message().contains(why),
            "{schema}: {}",
            error.message()
        );
    }
    for id in [
        "abc",
        "--dangerously-skip-permissions",
        "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f",
    ] {
        let error = refused(pb::TaskSpec {
            options: Some(pb::AgentOptions {
                resume_session: id.into(),
                ..Default::default()
            }),
            ..spec("p")
        })
        .await;
        assert_eq!(error.code(), Code::InvalidArgument, "{id}");
        assert!(
            error.message().contains("options.resume_session"),
            "{id}: {}",
            error.message()
        );
    }
    // REST takes the schema as JSON, and names the field the same way.
    let http = reqwest::Client::new();
    let response = http
        .post(format!("http://{}/tasks", server.addr))
        .json(&json!({"prompt": "p", "output_schema": {"type": 7}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(body.to_string().contains("output_schema"), "{body}");
    // Nothing was kept.
    let listed = server
        .tasks()
        .list_tasks(pb::ListTasksRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.tasks.is_empty(), "{listed:?}");
    // A valid schema over REST is kept as JSON, a `status` property and all.
    let schema = json!({"type": "object", "properties": {"status": {"enum": ["low"]}}});
    let response = http
        .post(format!("http://{}/tasks", server.addr))
        .json(&json!({"prompt": "p", "output_schema": schema}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["task"]["output_schema"], schema, "{body}");
    server.stop().await;
}

/// `scripts/bench-warm-start` (BENCHMARKS.md's warm vs cold figure) runs end to end on a
/// tiny size; what it measures is not checked here.
#[test]
fn the_warm_start_benchmark_runs() {
    let out = std::process::Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/bench-warm-start"
    ))
    .args(["--tasks", "1", "--gap", "0.2"])
    .env("SWARM_BIN", common::BIN)
    .env("CLAUDE", claude())
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for row in [
        "| warm (long-lived, started ahead) |",
        "| cold (a process per task) |",
    ] {
        assert!(stdout.contains(row), "{stdout}");
    }
}
