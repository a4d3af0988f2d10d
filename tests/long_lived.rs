//! Long-lived instances: a process per task started ahead (ready on stdin with a fresh
//! session), interrupts, a crash, termination and shutdown that leave no process behind.

mod common;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use claude_swarm::{
    agent::{AgentCommand, ProcessAgent},
    config::SIMULATE_AGENT,
    engine::EngineConfig,
    pb::{self, TaskStatus as S},
};
use common::{BIN, TestServer, config, group_alive, spec, status};
use tempfile::TempDir;

fn long_lived() -> ProcessAgent {
    long_lived_with_limit(None)
}

/// Long-lived, not using a process started ahead whose tree grew past `memory_limit` bytes.
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

/// One instance whose tasks run in a directory of this test's own, so that its processes
/// can be told from other tests'.
fn one_instance() -> (EngineConfig, TempDir, PathBuf) {
    let dir = TempDir::new().unwrap();
    let real = dir.path().canonicalize().unwrap();
    let config = EngineConfig {
        working_directory: real.clone(),
        ..config(1)
    };
    (config, dir, real)
}

/// The live processes this test binary started that run in `dir`.
fn processes_in(dir: &Path) -> Vec<u32> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            stat_field(*pid, 1).and_then(|p| p.parse::<u32>().ok()) == Some(me)
                && std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == dir)
        })
        .collect()
}

/// Field `n` (0: state, 1: ppid, ...) of `/proc/pid/stat` after the command's closing
/// paren.
fn stat_field(pid: u32, n: usize) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(n).map(str::to_owned)
}

/// Polls until `done` holds, for at most ten seconds.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The one process in `dir` other than `except`: the instance's next one, started ahead.
async fn spare_in(dir: &Path, except: &[u32]) -> u32 {
    let mut spare = None;
    until("a process started ahead", || {
        let found: Vec<u32> = processes_in(dir)
            .into_iter()
            .filter(|p| !except.contains(p))
            .collect();
        spare = (found.len() == 1).then(|| found[0]);
        spare.is_some()
    })
    .await;
    spare.unwrap_or_default()
}

#[tokio::test]
async fn each_task_gets_a_process_started_ahead_with_a_session_of_its_own() {
    let (config, _dir, dir) = one_instance();
    let server = TestServer::start_with_agent(config, long_lived()).await;
    // The instance's first process starts with the instance, before any task.
    let ready = spare_in(&dir, &[]).await;
    let first = server.submit(spec("one sim:delay=200")).await;
    let first_pid = server.pid_of(&first.id).await;
    assert_eq!(
        first_pid, ready,
        "the first task ran on the process started ahead"
    );
    let first = server.wait(&first.id).await;
    // Its process goes; the next one is already waiting when the next task comes.
    let next = spare_in(&dir, &[first_pid]).await;
    until("the first task's process is gone", || {
        !group_alive(first_pid)
    })
    .await;
    let second = server.submit(spec("two sim:delay=200")).await;
    let second_pid = server.pid_of(&second.id).await;
    let second = server.wait(&second.id).await;
    assert_eq!(
        (status(&first), status(&second)),
        (S::Completed, S::Completed)
    );
    assert_eq!(second_pid, next, "no start-up wait: it was started ahead");
    assert_ne!(
        first.result.unwrap().session_id,
        second.result.unwrap().session_id,
        "unrelated tasks do not share a conversation"
    );

    // A task with flags of its own runs in a process of its own; the spare waits on.
    let spare = spare_in(&dir, &[first_pid, second_pid]).await;
    let own = server
        .submit(pb::TaskSpec {
            model: "other-model".into(),
            ..spec("own sim:delay=200")
        })
        .await;
    let own_pid = server.pid_of(&own.id).await;
    assert_ne!(own_pid, spare);
    assert_eq!(status(&server.wait(&own.id).await), S::Completed);
    assert!(
        group_alive(spare),
        "the process started ahead is still ready"
    );
    server.stop().await;
    assert!(
        !group_alive(spare),
        "shutdown ends the process started ahead"
    );
    assert_eq!(
        processes_in(&dir),
        Vec::<u32>::new(),
        "nothing is left behind"
    );
}

#[tokio::test]
async fn an_interrupted_task_is_cancelled_and_the_next_task_gets_a_fresh_process() {
    let (config, _dir, dir) = one_instance();
    let server = TestServer::start_with_agent(config, long_lived()).await;
    let hanging = server.submit(spec("wait sim:hang")).await;
    let pid = server.pid_of(&hanging.id).await;
    let cancelled = server.cancel(&hanging.id).await;
    assert_eq!(status(&cancelled), S::Cancelled);
    until("the interrupted task's process is gone", || {
        !group_alive(pid)
    })
    .await;
    let next = server.submit(spec("next sim:delay=300")).await;
    let next_pid = server.pid_of(&next.id).await;
    assert_ne!(
        next_pid, pid,
        "the cancelled conversation is not the next task's"
    );
    assert_eq!(status(&server.wait(&next.id).await), S::Completed);
    server.stop().await;
    assert_eq!(processes_in(&dir), Vec::<u32>::new());
}

#[tokio::test]
async fn after_a_crash_the_next_task_runs_and_terminating_ends_every_process() {
    let (config, _dir, dir) = one_instance();
    let server = TestServer::start_with_agent(config, long_lived()).await;
    let crash = server.submit(spec("die sim:crash")).await;
    let crashed = server.wait(&crash.id).await;
    assert_eq!(
        crashed.failure_class,
        pb::FailureClass::ProcessCrashed as i32
    );
    let after = server.submit(spec("still there?")).await;
    let after = server.wait(&after.id).await;
    assert_eq!(status(&after), S::Completed);

    // Terminating the instance ends its running process and the one started ahead.
    let instance = after.instance_id;
    let probe = server.submit(spec("probe sim:hang")).await;
    let pid = server.pid_of(&probe.id).await;
    server
        .instances()
        .terminate_instance(pb::TerminateInstanceRequest {
            instance_id: instance,
        })
        .await
        .unwrap();
    assert!(!group_alive(pid));
    until("no process of the instance is left", || {
        processes_in(&dir).is_empty()
    })
    .await;
    server.stop().await;
}

#[tokio::test]
async fn a_process_started_ahead_that_grew_past_the_memory_limit_is_not_used() {
    let (config, _dir, dir) = one_instance();
    let server = TestServer::start_with_agent(config, long_lived_with_limit(Some(1))).await;
    let ready = spare_in(&dir, &[]).await;
    let task = server.submit(spec("one sim:delay=200")).await;
    let pid = server.pid_of(&task.id).await;
    assert_ne!(pid, ready, "over 1 byte: replaced");
    assert_eq!(status(&server.wait(&task.id).await), S::Completed);
    server.stop().await;
    assert_eq!(processes_in(&dir), Vec::<u32>::new());
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

#[tokio::test]
async fn a_process_started_ahead_goes_with_a_scale_down_and_one_that_died_is_replaced() {
    let (config, _dir, dir) = one_instance();
    let server = TestServer::start_with_agent(config, long_lived()).await;
    // Killed while it waited: it is reaped at once, not left a zombie until the next task
    // (which starts a process of its own).
    let ready = spare_in(&dir, &[]).await;
    unsafe { libc::kill(ready as i32, libc::SIGKILL) };
    until("the killed process is reaped", || {
        stat_field(ready, 1).and_then(|p| p.parse::<u32>().ok()) != Some(std::process::id())
    })
    .await;
    let task = server.submit(spec("after a death")).await;
    let pid = server.pid_of(&task.id).await;
    assert_ne!(pid, ready);
    assert_eq!(status(&server.wait(&task.id).await), S::Completed);
    // Scaling the idle instance away ends the process it started ahead.
    let spare = spare_in(&dir, &[ready, pid]).await;
    server
        .instances()
        .scale_instances(pb::ScaleInstancesRequest { target: 0 })
        .await
        .unwrap();
    until("the scaled-down instance's process is gone", || {
        !group_alive(spare) && processes_in(&dir).is_empty()
    })
    .await;
    server.stop().await;
}
