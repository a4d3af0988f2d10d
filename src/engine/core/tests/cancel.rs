//! Cancelling a task in each of its states.

use super::*;
use crate::engine::EngineError;

fn cancel(h: &mut Harness, id: &str) -> (CallId, Turn) {
    h.call(|call| Input::CancelTask {
        call,
        id: id.into(),
    })
}

#[test]
fn pending_and_queued_tasks_are_cancelled_at_once() {
    let mut h = Harness::new(0);
    h.submit(vec![spec("queued"), depending("pending", &["queued"])]);
    assert_eq!(h.status("pending"), TaskStatus::Pending);
    let (call, turn) = cancel(&mut h, "pending");
    assert!(
        matches!(reply(&turn, call), Some(Answer::Task(Ok(t))) if t.status == TaskStatus::Cancelled)
    );
    let (call, turn) = cancel(&mut h, "queued");
    assert!(
        matches!(reply(&turn, call), Some(Answer::Task(Ok(t))) if t.status == TaskStatus::Cancelled)
    );
    // A cancelled queued task is never dispatched.
    let (_, turn) = h.call(|call| Input::Spawn {
        call,
        count: 1,
        working_directory: None,
    });
    assert!(started(&turn).is_empty());
}

#[test]
fn a_running_task_is_answered_once_its_run_has_ended() {
    let mut h = Harness::new(1);
    h.submit(vec![spec("running"), depending("after", &["running"])]);
    let (call, turn) = cancel(&mut h, "running");
    assert_eq!(stops(&turn), [("running".into(), StopReason::Cancelled)]);
    assert!(
        reply(&turn, call).is_none(),
        "not before its process is gone"
    );
    // A second cancel does not stop it twice, and is answered with the first.
    let (second, turn) = cancel(&mut h, "running");
    assert!(stops(&turn).is_empty());
    let turn = h.finish(
        "running",
        RunOutcome {
            status: TaskStatus::Cancelled,
            ..failure(FailureClass::Cancelled)
        },
    );
    for call in [call, second] {
        assert!(
            matches!(reply(&turn, call), Some(Answer::Task(Ok(t))) if t.status == TaskStatus::Cancelled),
            "{:?}",
            reply(&turn, call)
        );
    }
    assert_eq!(h.status("after"), TaskStatus::Skipped);
}

#[test]
fn a_finished_task_cannot_be_cancelled() {
    let mut h = Harness::new(1);
    h.submit(vec![spec("done")]);
    h.complete("done");
    let (call, turn) = cancel(&mut h, "done");
    assert!(matches!(
        reply(&turn, call),
        Some(Answer::Task(Err(EngineError::FailedPrecondition(_))))
    ));
    let (call, turn) = cancel(&mut h, "missing");
    assert!(matches!(
        reply(&turn, call),
        Some(Answer::Task(Err(EngineError::NotFound { .. })))
    ));
}
