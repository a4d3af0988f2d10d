//! Submission and dispatch: priorities, FIFO, dependencies, pins, templates, idempotency.

use super::*;
use crate::engine::{
    EngineError, EventKind,
    workflow::{Segment, Template},
};

#[test]
fn the_most_urgent_oldest_task_starts_first() {
    let mut h = Harness::new(0);
    h.submit(vec![
        with_priority("low", Priority::Low),
        with_priority("normal-1", Priority::Normal),
        with_priority("critical", Priority::Critical),
        with_priority("normal-2", Priority::Normal),
        with_priority("high", Priority::High),
    ]);
    let mut order = Vec::new();
    let (_, turn) = h.call(|call| Input::Spawn {
        call,
        count: 1,
        working_directory: None,
    });
    order.extend(started(&turn));
    while let Some(last) = order.last().cloned() {
        let next = started(&h.complete(&last));
        if next.is_empty() {
            break;
        }
        order.extend(next);
    }
    assert_eq!(order, ["critical", "high", "normal-1", "normal-2", "low"]);
}

#[test]
fn a_dependent_waits_until_its_dependencies_complete() {
    let mut h = Harness::new(2);
    let turn = h.submit(vec![spec("a"), spec("b"), depending("c", &["a", "b"])]);
    assert_eq!(started(&turn), ["a", "b"]);
    assert_eq!(h.status("c"), TaskStatus::Pending);
    assert!(started(&h.complete("a")).is_empty());
    assert_eq!(h.status("c"), TaskStatus::Pending);
    assert_eq!(started(&h.complete("b")), ["c"]);
}

#[test]
fn a_refused_batch_changes_nothing() {
    let mut h = Harness::new(1);
    let (result, turn) = h.submit_all(vec![spec("a"), depending("b", &["nope"])]);
    let error = result.unwrap_err();
    assert_eq!(error.field(), Some("tasks[1].depends_on[0]"));
    assert!(turn.batch.tasks.is_empty() && turn.batch.events.is_empty());
    assert!(started(&turn).is_empty());
    let (result, _) = h.submit_all(vec![depending("x", &["y"]), depending("y", &["x"])]);
    match result.unwrap_err() {
        EngineError::InvalidArgument { field, reason } => {
            assert_eq!(field, "tasks");
            assert!(reason.contains("x -> y -> x"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let (result, _) = h.submit_all(vec![spec("a")]);
    result.expect("a was never created");
}

#[test]
fn an_answer_comes_with_the_changes_it_acknowledges() {
    let mut h = Harness::new(1);
    let turn = h.submit(vec![spec("a")]);
    let stored: Vec<&str> = turn
        .batch
        .tasks
        .iter()
        .map(|r| r.task.id.as_str())
        .collect();
    assert_eq!(stored, ["a"]);
    let kinds: Vec<EventKind> = turn.batch.events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::TaskSubmitted,
            EventKind::TaskQueued,
            EventKind::TaskStarted,
            EventKind::InstanceStatusChanged,
        ]
    );
    let sequences: Vec<u64> = turn.batch.events.iter().map(|e| e.sequence).collect();
    assert!(
        sequences.windows(2).all(|w| w[1] == w[0] + 1),
        "{sequences:?}"
    );
}

#[test]
fn a_pinned_task_waits_for_its_instance() {
    let mut h = Harness::new(2);
    let first = h.submit(vec![spec("busy")]);
    assert_eq!(started(&first), ["busy"]);
    let busy_instance = h.task("busy").instance_id.unwrap();
    let pinned = TaskSpec {
        instance_id: Some(busy_instance.clone()),
        ..spec("pinned")
    };
    // The other instance is idle, but the task may run only on the busy one.
    assert!(started(&h.submit(vec![pinned])).is_empty());
    assert_eq!(h.status("pinned"), TaskStatus::Queued);
    assert_eq!(started(&h.complete("busy")), ["pinned"]);
    assert_eq!(h.task("pinned").instance_id, Some(busy_instance));
}

#[test]
fn upstream_results_fill_the_template_and_are_quoted_in_commands() {
    let mut h = Harness::new(1);
    let prompt = TaskSpec {
        template: Some(Template(vec![
            Segment::Text("summarise: ".into()),
            Segment::Result("up".into()),
        ])),
        ..depending("prompt", &["up"])
    };
    let command = TaskSpec {
        command: Some("echo".into()),
        template: Some(Template(vec![
            Segment::Text("echo ".into()),
            Segment::Result("up".into()),
        ])),
        ..depending("command", &["prompt"])
    };
    h.submit(vec![spec("up"), prompt, command]);
    let turn = h.finish("up", ok("it's $(rm -rf /)"));
    let request = turn.effects.iter().find_map(|e| match e {
        Effect::StartRun { request, .. } => Some(request.clone()),
        _ => None,
    });
    assert_eq!(request.unwrap().prompt, "summarise: it's $(rm -rf /)");
    let turn = h.complete("prompt");
    let request = turn.effects.iter().find_map(|e| match e {
        Effect::StartRun { request, .. } => Some(request.clone()),
        _ => None,
    });
    let command = request.unwrap().command.unwrap();
    // One single-quoted word: the upstream text cannot become shell code.
    assert_eq!(command, r"echo 'it'\''s $(rm -rf /)'");
}

#[test]
fn a_known_idempotency_key_returns_the_same_task() {
    let mut h = Harness::new(0);
    let keyed = |id: &str| TaskSpec {
        idempotency_key: Some("key-1".into()),
        ..spec(id)
    };
    let (first, _) = h.submit_all(vec![keyed("a")]);
    let (again, turn) = h.submit_all(vec![keyed("other-id")]);
    assert_eq!(first.unwrap()[0].id, again.unwrap()[0].id);
    assert!(turn.batch.tasks.is_empty(), "nothing new was stored");
    let (mixed, _) = h.submit_all(vec![keyed("x"), spec("y")]);
    assert_eq!(mixed.unwrap_err().field(), Some("tasks[0].idempotency_key"));
}

#[test]
fn listing_pages_through_tasks_in_submission_order() {
    let mut h = Harness::new(0);
    h.submit((0..5).map(|i| spec(&format!("t{i}"))).collect());
    let (call, turn) = h.call(|call| Input::ListTasks {
        call,
        query: crate::engine::TaskQuery {
            limit: 2,
            ..Default::default()
        },
    });
    let Some(Answer::TaskPage(Ok(page))) = reply(&turn, call) else {
        panic!("no page");
    };
    let ids: Vec<&str> = page.tasks.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["t0", "t1"]);
    let token = page.next_page_token.clone();
    let (call, turn) = h.call(|call| Input::ListTasks {
        call,
        query: crate::engine::TaskQuery {
            limit: 2,
            page_token: token,
            ..Default::default()
        },
    });
    let Some(Answer::TaskPage(Ok(page))) = reply(&turn, call) else {
        panic!("no page");
    };
    let ids: Vec<&str> = page.tasks.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["t2", "t3"]);
}
