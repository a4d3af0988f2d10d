//! A graceful stop keeps what a crash would keep: runs it interrupts stay RUNNING with their
//! attempts, and the next start retries them as it retries a crash's.

use super::*;
use crate::engine::{Payload, ports::TaskRecord};

fn retrying(id: &str, retries: u32) -> TaskSpec {
    TaskSpec {
        retries,
        ..spec(id)
    }
}

/// What the agent reports for a run the shutdown stopped.
fn stopped_by_shutdown() -> RunOutcome {
    RunOutcome::failed(
        FailureClass::Interrupted,
        "interrupted: the server shut down",
    )
}

#[test]
fn runs_a_shutdown_stops_stay_running_and_run_again_after_the_restart() {
    let mut h = Harness::new(2);
    h.submit(vec![retrying("may-retry", 1), retrying("last-try", 0)]);
    let (call, turn) = h.call(|call| Input::Shutdown { call });
    let mut stopped = stops(&turn);
    stopped.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        stopped,
        [
            ("last-try".into(), StopReason::Shutdown),
            ("may-retry".into(), StopReason::Shutdown)
        ]
    );
    let first = h.finish("may-retry", stopped_by_shutdown());
    let last = h.finish("last-try", stopped_by_shutdown());
    assert!(matches!(reply(&last, call), Some(Answer::Done)));
    // Nothing terminal, no retry: what is stored is what a crash would have left.
    let mut stored: Vec<TaskRecord> = Vec::new();
    for turn in [&first, &last] {
        assert!(
            turn.batch
                .events
                .iter()
                .all(|e| !matches!(e.payload, Payload::Task(_))),
            "no task event: {:?}",
            turn.batch.events
        );
        assert!(timers(turn).is_empty());
        stored.extend(turn.batch.tasks.iter().cloned());
    }
    assert_eq!(stored.len(), 2);
    for record in &stored {
        assert_eq!(
            record.task.status,
            TaskStatus::Running,
            "{}",
            record.task.id
        );
        assert_eq!(record.task.attempts, 1);
        assert_eq!(record.task.failure_class, None);
    }
    assert_eq!(h.status("may-retry"), TaskStatus::Running);

    // The next start treats them as it treats a crash's.
    let snapshot = Snapshot {
        tasks: stored,
        ..Snapshot::default()
    };
    let mut h = Harness::boot(
        EngineConfig {
            initial_instances: 1,
            ..EngineConfig::default()
        },
        snapshot,
    );
    assert_eq!(started(&h.booted), ["may-retry"]);
    let retried = h.task("may-retry");
    assert_eq!((retried.status, retried.attempts), (TaskStatus::Running, 2));
    let failed = h.task("last-try");
    assert_eq!(failed.status, TaskStatus::Failed);
    assert_eq!(failed.failure_class, Some(FailureClass::Interrupted));
}

#[test]
fn a_run_that_completed_before_the_stop_reached_it_is_recorded_as_usual() {
    let mut h = Harness::new(2);
    h.submit(vec![retrying("done", 0), retrying("cut-short", 1)]);
    h.submit(vec![spec("waiting")]);
    h.call(|call| Input::Shutdown { call });
    let turn = h.complete("done");
    assert_eq!(h.status("done"), TaskStatus::Completed);
    assert!(
        started(&turn).is_empty(),
        "nothing is dispatched while stopping"
    );
    // Whatever a stopped run reports besides a result, it is left as a crash would leave it.
    h.finish("cut-short", failure(FailureClass::ApiError));
    assert_eq!(h.status("cut-short"), TaskStatus::Running);
    assert_eq!(h.status("waiting"), TaskStatus::Queued);
}
