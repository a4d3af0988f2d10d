//! Approvals with the real Claude Code CLI 2.1.332, offline against the fake Messages API:
//! the API asks for a Bash call that writes outside the working directory, which the CLI
//! will not run without permission. It asks us (`--permission-prompt-tool stdio`); we
//! answer from the task's rules, or a person decides the approval, or its deadline does.
//! The file on disk says whether the tool ran. Fails, never skips, when the CLI is missing
//! (`SWARM_TEST_CLAUDE` points elsewhere).

mod common;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use claude_swarm::{
    engine::EngineConfig,
    pb::{self, EventKind as K, TaskStatus as S, approval_service_client::ApprovalServiceClient},
};
use common::real_cli::offline_agent;
use common::{
    TestServer, config,
    fake_api::{FakeApi, Reply, TOOL_ANSWER_PREFIX},
    spec, status,
};
use tempfile::TempDir;

/// The fake API asking for a write of `marker`, a scratch HOME and working directory, and
/// our server running the real CLI.
struct Rig {
    server: TestServer,
    /// Outside the working directory: where the Bash call writes.
    marker: PathBuf,
    command: String,
    _api: FakeApi,
    _dirs: [TempDir; 3],
}

impl Rig {
    async fn start(long_lived: bool, tune: impl FnOnce(&mut EngineConfig)) -> Self {
        let (home, work, outside) = (
            TempDir::new().unwrap(),
            TempDir::new().unwrap(),
            TempDir::new().unwrap(),
        );
        let marker = outside.path().join("marker");
        let command = format!("touch {} && echo wrote-it", marker.display());
        let api = FakeApi::start(Reply::ToolUseOf(command.clone())).await;
        let agent = offline_agent(home.path(), &api.url(), long_lived);
        let mut config = EngineConfig {
            working_directory: work.path().into(),
            ..config(1)
        };
        tune(&mut config);
        let server = TestServer::start_with_agent(config, agent).await;
        Self {
            server,
            marker,
            command,
            _api: api,
            _dirs: [home, work, outside],
        }
    }

    fn approvals(&self) -> ApprovalServiceClient<tonic::transport::Channel> {
        ApprovalServiceClient::new(self.server.channel.clone())
    }

    async fn requested(&self, task: &str) -> pb::Approval {
        match self
            .server
            .wait_for(task, K::ApprovalRequested)
            .await
            .payload
        {
            Some(pb::event::Payload::Approval(a)) => a,
            other => panic!("an approval: {other:?}"),
        }
    }

    async fn decide(&self, id: &str, allow: bool, message: &str, always: pb::PolicyScope) {
        self.approvals()
            .decide_approval(pb::DecideApprovalRequest {
                approval_id: id.into(),
                allow,
                message: message.into(),
                always: always as i32,
                ..Default::default()
            })
            .await
            .unwrap();
    }

    async fn approvals_of(&self, task: &str) -> Vec<pb::Approval> {
        self.approvals()
            .list_approvals(pb::ListApprovalsRequest {
                task_id: task.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .approvals
    }
}

fn input_command(input: Option<&pbjson_types::Struct>) -> String {
    let value = serde_json::to_value(input.unwrap()).unwrap();
    value["command"].as_str().unwrap_or_default().to_owned()
}

fn exists(path: &Path) -> bool {
    path.exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_needs_permission_waits_and_once_allowed_runs() {
    let rig = Rig::start(false, |_| {}).await;
    let task = rig.server.submit(spec("write the marker")).await;
    let approval = rig.requested(&task.id).await;
    assert_eq!(approval.tool_name, "Bash");
    assert_eq!(input_command(approval.input.as_ref()), rig.command);
    assert_eq!(approval.state, pb::ApprovalState::Pending as i32);
    let suggestions = approval.permission_suggestions.as_ref().unwrap();
    assert!(
        !suggestions.values.is_empty(),
        "the CLI's suggestions are kept"
    );
    assert!(!exists(&rig.marker), "nothing ran before the decision");
    assert_eq!(status(&rig.server.get(&task.id).await), S::Running);

    rig.decide(&approval.id, true, "", pb::PolicyScope::Unspecified)
        .await;
    let done = rig.server.wait(&task.id).await;
    assert_eq!(status(&done), S::Completed, "{}", done.error);
    assert!(exists(&rig.marker), "the allowed command ran");
    let result = done.result.unwrap();
    assert_eq!(result.text, format!("{TOOL_ANSWER_PREFIX}wrote-it"));
    assert!(result.permission_denials.is_empty());
    rig.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_on_a_long_lived_instance_it_does_not_run_and_the_result_says_so() {
    let rig = Rig::start(true, |_| {}).await;
    let task = rig.server.submit(spec("write the marker")).await;
    let approval = rig.requested(&task.id).await;
    rig.decide(
        &approval.id,
        false,
        "not outside the project",
        pb::PolicyScope::Unspecified,
    )
    .await;
    let done = rig.server.wait(&task.id).await;
    assert_eq!(status(&done), S::Completed, "{}", done.error);
    assert!(!exists(&rig.marker), "the denied command did not run");
    let result = done.result.unwrap();
    assert_eq!(
        result.text,
        format!("{TOOL_ANSWER_PREFIX}not outside the project")
    );
    assert_eq!(result.permission_denials.len(), 1);
    let denial = &result.permission_denials[0];
    assert_eq!(denial.tool_name, "Bash");
    assert_eq!(input_command(denial.input.as_ref()), rig.command);
    let event = rig.server.wait_for(&task.id, K::PermissionDenied).await;
    assert!(matches!(event.payload, Some(pb::event::Payload::Denial(_))));
    rig.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_nobody_decides_expires_and_fails_a_task_that_says_so() {
    let rig = Rig::start(false, |c| c.approval_timeout = Duration::from_millis(500)).await;
    let task = rig
        .server
        .submit(pb::TaskSpec {
            on_permission_denied: pb::DenialPolicy::Fail as i32,
            ..spec("write the marker")
        })
        .await;
    let done = rig.server.wait(&task.id).await;
    assert_eq!(status(&done), S::Failed);
    assert_eq!(
        done.failure_class,
        pb::FailureClass::PermissionDenied as i32
    );
    assert!(done.error.contains("touch"), "{}", done.error);
    assert!(!exists(&rig.marker));
    let approvals = rig.approvals_of(&task.id).await;
    assert_eq!(approvals.len(), 1);
    assert_eq!(approvals[0].state, pb::ApprovalState::Expired as i32);
    assert_eq!(approvals[0].decided_by, "deadline");
    rig.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_decides_without_an_approval_and_always_adds_one() {
    let rig = Rig::start(false, |_| {}).await;
    // The task's own rule allows the exact command: no approval, the file appears.
    let ruled = rig
        .server
        .submit(pb::TaskSpec {
            permissions: Some(pb::PermissionPolicy {
                allow: vec![format!("Bash({})", rig.command)],
                ..Default::default()
            }),
            ..spec("write the marker")
        })
        .await;
    let done = rig.server.wait(&ruled.id).await;
    assert_eq!(status(&done), S::Completed, "{}", done.error);
    assert!(exists(&rig.marker));
    assert!(rig.approvals_of(&ruled.id).await.is_empty());
    std::fs::remove_file(&rig.marker).unwrap();

    // A person allows one "always" for the swarm: the next task's call needs nobody.
    let first = rig.server.submit(spec("write the marker")).await;
    let approval = rig.requested(&first.id).await;
    rig.decide(&approval.id, true, "", pb::PolicyScope::Swarm)
        .await;
    assert_eq!(status(&rig.server.wait(&first.id).await), S::Completed);
    std::fs::remove_file(&rig.marker).unwrap();
    let next = rig.server.submit(spec("write the marker again")).await;
    let done = rig.server.wait(&next.id).await;
    assert_eq!(status(&done), S::Completed, "{}", done.error);
    assert!(exists(&rig.marker), "the rule \"always\" added allowed it");
    assert!(rig.approvals_of(&next.id).await.is_empty());
    rig.server.stop().await;
}
