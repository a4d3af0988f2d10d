//! What outlives a server and what the next start does with it: agents die with a server
//! killed by SIGKILL, what they started is ended before their task runs again, and a
//! graceful stop keeps the retries a crash would keep.

mod common;

use std::time::Duration;

use claude_swarm::{
    agent::resources::group_members,
    pb::{self, TaskStatus as S},
};
use common::{serve::Served, spec, status};

/// Waits until process `pid` has ended (its pidfd turns readable), at most `limit`.
async fn ended(pid: u32, limit: Duration) -> bool {
    tokio::task::spawn_blocking(move || {
        // SAFETY: pidfd_open and poll take no pointers but the one to `fd`, which lives here.
        unsafe {
            let fd = libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) as i32;
            if fd < 0 {
                // No such process: it is gone already.
                return true;
            }
            let mut wait = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            let ready = libc::poll(&mut wait, 1, limit.as_millis() as i32);
            libc::close(fd);
            ready == 1
        }
    })
    .await
    .unwrap()
}

/// Kills what a failed test would leave behind.
struct Groups(Vec<u32>);

impl Drop for Groups {
    fn drop(&mut self) {
        for group in &self.0 {
            if !group_members(*group).is_empty() {
                // SAFETY: killpg has no memory effects.
                unsafe {
                    libc::killpg(*group as i32, libc::SIGKILL);
                }
            }
        }
    }
}

/// A shell step that, on its first attempt, leaves a `sleep` in its process group (a
/// process the server did not start itself) and waits for it; later attempts just finish.
fn leaves_a_sleep(retries: u32) -> pb::TaskSpec {
    pb::TaskSpec {
        command: r#"if [ "$SWARM_ATTEMPT" = 1 ]; then sleep 120 & fi; echo up; wait; echo done"#
            .into(),
        retries,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_die_with_a_killed_server_and_what_they_left_is_ended_before_the_retry() {
    let data = tempfile::tempdir().unwrap();
    let server = Served::start(data.path(), &["--instances", "2"]).await;
    // An agent on its instance's long-lived process, and a shell step in a process of its own.
    let agent = server.submit(spec("wait sim:hang")).await;
    let step = server.submit(leaves_a_sleep(1)).await;
    let agent_pid = server.pid_of(&agent.id).await;
    let step_group = server.pid_of(&step.id).await;
    let mut groups = Groups(vec![agent_pid, step_group]);
    let sleep: Vec<u32> = group_members(step_group)
        .into_iter()
        .filter(|pid| *pid != step_group)
        .collect();
    assert_eq!(
        sleep.len(),
        1,
        "the step's group holds its shell and a sleep"
    );

    server.kill();
    // The processes the server started die with it.
    assert!(
        ended(agent_pid, Duration::from_secs(10)).await,
        "the agent outlived the server"
    );
    assert!(ended(step_group, Duration::from_secs(10)).await);
    // What they started is not signalled by the kernel: it is still there.
    assert_eq!(group_members(step_group), sleep);

    let server = Served::start(data.path(), &["--instances", "2"]).await;
    let retried = server.wait(&step.id).await;
    assert_eq!(status(&retried), S::Completed, "{retried:?}");
    assert_eq!(retried.attempts, 2);
    assert_eq!(retried.result.unwrap().text, "up\ndone");
    assert!(
        ended(sleep[0], Duration::from_secs(10)).await,
        "the first attempt's sleep was ended by the restart"
    );
    // Nothing of the first server is left to clean up.
    groups.0.clear();
    // The agent's task had no retries left: failed as interrupted, as after any crash.
    let failed = server.wait(&agent.id).await;
    assert_eq!(status(&failed), S::Failed);
    assert_eq!(failed.failure_class, pb::FailureClass::Interrupted as i32);
    server.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_keeps_the_retries_a_crash_would_keep() {
    let data = tempfile::tempdir().unwrap();
    let server = Served::start(data.path(), &["--instances", "2"]).await;
    let step = server.submit(leaves_a_sleep(1)).await;
    let agent = server.submit(spec("wait sim:hang")).await;
    let mut groups = Groups(vec![
        server.pid_of(&step.id).await,
        server.pid_of(&agent.id).await,
    ]);
    let processes: Vec<u32> = groups.0.iter().flat_map(|g| group_members(*g)).collect();
    assert_eq!(processes.len(), 3, "the shell, its sleep and the agent");

    server.terminate();
    for pid in processes {
        assert!(
            ended(pid, Duration::from_secs(10)).await,
            "a graceful stop ends its runs"
        );
    }
    groups.0.clear();

    let server = Served::start(data.path(), &["--instances", "2"]).await;
    // Interrupted with a retry left: it runs again and completes.
    let step = server.wait(&step.id).await;
    assert_eq!(status(&step), S::Completed, "{step:?}");
    assert_eq!(step.attempts, 2);
    // Without one: failed as interrupted, as after a crash (not cancelled by anyone).
    let agent = server.wait(&agent.id).await;
    assert_eq!(status(&agent), S::Failed, "{agent:?}");
    assert_eq!(agent.failure_class, pb::FailureClass::Interrupted as i32);
    server.terminate();
}
