//! How runs end: skipped dependents, retries with backoff, timeouts, failure classes.

use super::*;

#[test]
fn dependents_of_a_failed_task_are_skipped_naming_it() {
    let mut h = Harness::new(1);
    h.submit(vec![
        spec("a"),
        depending("b", &["a"]),
        depending("c", &["b"]),
    ]);
    h.finish("a", failure(FailureClass::ApiError));
    let b = h.task("b");
    assert_eq!(b.status, TaskStatus::Skipped);
    assert_eq!(b.error.as_deref(), Some("dependency a was failed"));
    assert_eq!(b.failure_class, Some(FailureClass::Skipped));
    let c = h.task("c");
    assert_eq!(c.status, TaskStatus::Skipped);
    assert_eq!(c.error.as_deref(), Some("dependency b was skipped"));
    // A task submitted later on a failed dependency is skipped at once.
    h.submit(vec![depending("late", &["a"])]);
    assert_eq!(h.status("late"), TaskStatus::Skipped);
}

#[test]
fn a_retryable_failure_waits_its_backoff_then_runs_again() {
    let mut h = Harness::new(1);
    h.submit(vec![TaskSpec {
        retries: 2,
        retry_backoff: Some(Duration::from_secs(10)),
        ..spec("flaky")
    }]);
    let turn = h.finish("flaky", failure(FailureClass::ProcessCrashed));
    let task = h.task("flaky");
    assert_eq!(task.status, TaskStatus::Pending);
    assert_eq!(task.history.len(), 1);
    let armed = timers(&turn);
    let (timer, delay) = armed
        .iter()
        .find(|(t, _)| matches!(t, Timer::Retry(_)))
        .cloned()
        .expect("a retry timer");
    assert!(
        (8.0..=12.0).contains(&delay.as_secs_f64()),
        "10 s ± 20%: {delay:?}"
    );
    h.advance(delay);
    let turn = h.fire(timer);
    assert_eq!(started(&turn), ["flaky"]);
    assert_eq!(h.task("flaky").attempts, 2);
    // The second backoff doubles.
    let turn = h.finish("flaky", failure(FailureClass::Timeout));
    let (_, delay) = timers(&turn)
        .into_iter()
        .find(|(t, _)| matches!(t, Timer::Retry(_)))
        .unwrap();
    assert!((16.0..=24.0).contains(&delay.as_secs_f64()), "{delay:?}");
    h.fire(Timer::Retry("flaky".into()));
    // Out of retries: the third failure is final.
    h.finish("flaky", failure(FailureClass::ProcessCrashed));
    let task = h.task("flaky");
    assert_eq!(task.status, TaskStatus::Failed);
    assert_eq!(task.attempts, 3);
    assert_eq!(task.history.len(), 2);
}

#[test]
fn a_failure_that_a_retry_cannot_mend_is_final() {
    let mut h = Harness::new(1);
    h.submit(vec![TaskSpec {
        retries: 3,
        ..spec("auth")
    }]);
    h.finish("auth", failure(FailureClass::Authentication));
    let task = h.task("auth");
    assert_eq!(task.status, TaskStatus::Failed);
    assert_eq!(task.failure_class, Some(FailureClass::Authentication));
}

#[test]
fn a_task_past_its_timeout_is_stopped_and_fails_as_timed_out() {
    let mut h = Harness::new(1);
    let turn = h.submit(vec![TaskSpec {
        timeout: Some(Duration::from_secs(5)),
        ..spec("slow")
    }]);
    let timeout = turn.effects.iter().find_map(|e| match e {
        Effect::StartRun { timeout, .. } => Some(*timeout),
        _ => None,
    });
    assert_eq!(timeout, Some(Duration::from_secs(5)));
    h.advance(Duration::from_secs(5));
    let turn = h.fire(Timer::Timeout("slow".into()));
    assert_eq!(
        stops(&turn),
        [("slow".into(), StopReason::TimedOut(Duration::from_secs(5)))]
    );
    // The agent reports the stop it was given.
    h.finish("slow", failure(FailureClass::Timeout));
    assert_eq!(h.status("slow"), TaskStatus::Failed);
    // A timer that fires after the run ended stops nothing.
    assert!(stops(&h.fire(Timer::Timeout("slow".into()))).is_empty());
}

#[test]
fn a_finished_run_frees_its_instance_for_the_next_task() {
    let mut h = Harness::new(1);
    assert_eq!(started(&h.submit(vec![spec("a"), spec("b")])), ["a"]);
    let turn = h.complete("a");
    assert_eq!(started(&turn), ["b"]);
    let a = h.task("a");
    assert_eq!(a.status, TaskStatus::Completed);
    assert_eq!(a.result.unwrap().text, "result of a");
}

#[test]
fn a_task_changed_several_times_in_a_turn_is_stored_once_in_its_last_state() {
    let mut h = Harness::new(1);
    // Submitted, queued and started in one turn: one row, RUNNING.
    let turn = h.submit(vec![spec("a"), spec("b")]);
    let stored: Vec<(&str, TaskStatus)> = turn
        .batch
        .tasks
        .iter()
        .map(|r| (r.task.id.as_str(), r.task.status))
        .collect();
    assert_eq!(
        stored,
        [("a", TaskStatus::Running), ("b", TaskStatus::Queued)]
    );
    // A turn that changes nothing of them stores nothing of them.
    let (_, idle) = h.call(|call| Input::Status { call });
    assert!(idle.batch.tasks.is_empty());
    // The next change of each is stored again.
    let turn = h.complete("a");
    let stored: Vec<(&str, TaskStatus)> = turn
        .batch
        .tasks
        .iter()
        .map(|r| (r.task.id.as_str(), r.task.status))
        .collect();
    assert_eq!(
        stored,
        [("a", TaskStatus::Completed), ("b", TaskStatus::Running)]
    );
}
