//! Long-lived instances: one CLI process per instance, a task per user message, interrupts
//! that keep the process, and a replacement that resumes the session after a crash.

mod common;

use claude_swarm::{
    agent::{AgentCommand, ProcessAgent},
    config::SIMULATE_AGENT,
    pb::{self, TaskStatus as S},
};
use common::{BIN, TestServer, config, group_alive, spec, status};

fn long_lived() -> ProcessAgent {
    long_lived_with_limit(None)
}

/// Long-lived, restarting an instance whose process tree uses more than `memory_limit` bytes.
fn long_lived_with_limit(memory_limit: Option<u64>) -> ProcessAgent {
    ProcessAgent::new(AgentCommand {
        program: BIN.into(),
        leading_args: vec![SIMULATE_AGENT.into()],
        label: "simulated".into(),
        stop_grace: std::time::Duration::from_secs(2),
        env: Vec::new(),
        long_lived: true,
        keep_worktrees: false,
        memory_limit,
        workspace_root: None,
        accounts: Default::default(),
    })
}

#[tokio::test]
async fn tasks_share_the_instance_process_and_its_session() {
    let server = TestServer::start_with_agent(config(1), long_lived()).await;
    let first = server.submit(spec("one sim:delay=200")).await;
    let first_pid = server.pid_of(&first.id).await;
    let first = server.wait(&first.id).await;
    let second = server.submit(spec("two sim:delay=200")).await;
    let second_pid = server.pid_of(&second.id).await;
    let second = server.wait(&second.id).await;
    assert_eq!(
        (status(&first), status(&second)),
        (S::Completed, S::Completed)
    );
    assert_eq!(first_pid, second_pid, "one process for both tasks");
    assert_eq!(
        first.result.unwrap().session_id,
        second.result.unwrap().session_id
    );
    assert!(
        group_alive(first_pid),
        "the process waits for the next task"
    );

    // A task with flags of its own runs in a process of its own.
    let own = server
        .submit(pb::TaskSpec {
            model: "other-model".into(),
            ..spec("own sim:delay=200")
        })
        .await;
    let own_pid = server.pid_of(&own.id).await;
    assert_ne!(own_pid, first_pid);
    assert_eq!(status(&server.wait(&own.id).await), S::Completed);
    server.stop().await;
    assert!(
        !group_alive(first_pid),
        "shutdown ends the instance's process"
    );
}

#[tokio::test]
async fn an_interrupted_task_is_cancelled_and_the_process_lives_on() {
    let server = TestServer::start_with_agent(config(1), long_lived()).await;
    let hanging = server.submit(spec("wait sim:hang")).await;
    let pid = server.pid_of(&hanging.id).await;
    let cancelled = server.cancel(&hanging.id).await;
    assert_eq!(status(&cancelled), S::Cancelled);
    assert!(
        group_alive(pid),
        "the CLI answered the interrupt, so it stays"
    );
    let next = server.submit(spec("next sim:delay=300")).await;
    assert_eq!(server.pid_of(&next.id).await, pid);
    assert_eq!(status(&server.wait(&next.id).await), S::Completed);
    server.stop().await;
}

#[tokio::test]
async fn after_a_crash_the_replacement_resumes_the_session() {
    let server = TestServer::start_with_agent(config(1), long_lived()).await;
    let before = server.submit(spec("hello")).await;
    let session = server.wait(&before.id).await.result.unwrap().session_id;
    let crash = server.submit(spec("die sim:crash")).await;
    let crashed = server.wait(&crash.id).await;
    assert_eq!(
        crashed.failure_class,
        pb::FailureClass::ProcessCrashed as i32
    );
    let after = server.submit(spec("still there?")).await;
    let after = server.wait(&after.id).await;
    assert_eq!(status(&after), S::Completed);
    assert_eq!(
        after.result.unwrap().session_id,
        session,
        "the new process resumed the session"
    );

    // Terminating the instance ends its process group.
    let instance = after.instance_id;
    let pid = {
        let probe = server.submit(spec("probe sim:hang")).await;
        server.pid_of(&probe.id).await
    };
    server
        .instances()
        .terminate_instance(pb::TerminateInstanceRequest {
            instance_id: instance,
        })
        .await
        .unwrap();
    assert!(!group_alive(pid));
    server.stop().await;
}

#[tokio::test]
async fn an_instance_over_its_memory_limit_restarts_and_resumes_its_session() {
    let server = TestServer::start_with_agent(config(1), long_lived_with_limit(Some(1))).await;
    let first = server.submit(spec("one sim:delay=200")).await;
    let first_pid = server.pid_of(&first.id).await;
    let first = server.wait(&first.id).await;
    let second = server.submit(spec("two sim:delay=200")).await;
    let second_pid = server.pid_of(&second.id).await;
    let second = server.wait(&second.id).await;
    assert_ne!(first_pid, second_pid, "recycled between the tasks");
    assert_eq!(
        first.result.unwrap().session_id,
        second.result.unwrap().session_id
    );
    assert!(!group_alive(first_pid));
    server.stop().await;
}

#[tokio::test]
async fn a_line_too_long_to_read_fails_the_task_at_once_in_either_mode() {
    for (mode, agent) in [
        ("long-lived", long_lived()),
        ("per task", common::simulated_agent()),
    ] {
        let server = TestServer::start_with_agent(config(1), agent).await;
        // 17 MB of text: the assistant line and the result line are both over 16 MiB.
        let big = server.submit(spec("sim:large=17000000")).await;
        let big = server.wait(&big.id).await;
        assert_eq!(status(&big), S::Failed, "{mode}: {big:?}");
        assert_eq!(
            big.failure_class,
            pb::FailureClass::ProtocolError as i32,
            "{mode}: {}",
            big.error
        );
        assert!(
            big.error.contains("longer than 16 MiB"),
            "{mode}: {}",
            big.error
        );
        // The instance goes on with the next task.
        let next = server.submit(spec("after")).await;
        assert_eq!(status(&server.wait(&next.id).await), S::Completed, "{mode}");
        server.stop().await;
    }
}
