//! Workflows and fan-out: fail-fast, cancel, budgets, `for_each`, outputs, pins.

use super::*;
use crate::engine::{
    FailurePolicy, TaskStatus as S,
    workflow::{FanOut, FanOutSource, Segment, Template, WorkflowStatus},
};

fn workflow(h: &mut Harness, id: &str) -> WorkflowInfo {
    let (call, turn) = h.call(|call| Input::GetWorkflow {
        call,
        id: id.into(),
    });
    match reply(&turn, call) {
        Some(Answer::Workflow(Ok(info))) => info.clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_workflow_completes_with_its_leaves_as_outputs() {
    let mut h = Harness::new(2);
    let (info, _) = h.execute(plan(vec![spec("a"), depending("b", &["a"])]));
    let id = info.unwrap().id;
    h.complete("a");
    let turn = h.complete("b");
    let finished = turn
        .batch
        .events
        .iter()
        .any(|e| e.kind == crate::engine::EventKind::WorkflowFinished);
    assert!(finished);
    let info = workflow(&mut h, &id);
    assert_eq!(info.status, WorkflowStatus::Completed);
    assert_eq!(
        info.outputs.get("b").map(String::as_str),
        Some("result of b")
    );
    assert_eq!(info.task_counts[S::Completed.index()], 2);
}

#[test]
fn a_fail_fast_failure_cancels_the_rest_of_its_workflow() {
    let mut h = Harness::new(2);
    let (info, _) = h.execute(plan(vec![
        TaskSpec {
            on_failure: FailurePolicy::FailFast,
            ..spec("a")
        },
        spec("b"),
        spec("c"),
    ]));
    let id = info.unwrap().id;
    let turn = h.finish("a", failure(FailureClass::ApiError));
    assert_eq!(stops(&turn), [("b".into(), StopReason::Cancelled)]);
    assert_eq!(h.status("c"), S::Cancelled);
    h.finish(
        "b",
        RunOutcome {
            status: S::Cancelled,
            ..failure(FailureClass::Cancelled)
        },
    );
    assert_eq!(workflow(&mut h, &id).status, WorkflowStatus::Failed);
}

#[test]
fn cancelling_a_workflow_answers_once_nothing_runs() {
    let mut h = Harness::new(1);
    let (info, _) = h.execute(plan(vec![spec("a"), depending("b", &["a"])]));
    let id = info.unwrap().id;
    let (call, turn) = h.call(|call| Input::CancelWorkflow {
        call,
        id: id.clone(),
    });
    assert_eq!(stops(&turn), [("a".into(), StopReason::Cancelled)]);
    assert!(reply(&turn, call).is_none());
    let turn = h.finish(
        "a",
        RunOutcome {
            status: S::Cancelled,
            ..failure(FailureClass::Cancelled)
        },
    );
    assert!(matches!(
        reply(&turn, call),
        Some(Answer::Workflow(Ok(w))) if w.status == WorkflowStatus::Cancelled
    ));
    assert_eq!(h.status("b"), S::Cancelled);
}

#[test]
fn a_spent_workflow_budget_fails_the_tasks_not_started() {
    let mut h = Harness::new(1);
    let (info, _) = h.execute(WorkflowPlan {
        budget_usd: Some(1.0),
        ..plan(vec![spec("a"), spec("b"), depending("c", &["a"])])
    });
    info.unwrap();
    h.finish("a", costing("expensive", 1.5));
    for id in ["b", "c"] {
        let task = h.task(id);
        assert_eq!(task.status, S::Failed, "{id}");
        assert_eq!(task.failure_class, Some(FailureClass::BudgetExhausted));
    }
}

#[test]
fn for_each_runs_its_items_at_most_max_parallel_at_a_time() {
    let mut h = Harness::new(4);
    let fan = TaskSpec {
        fan_out: Some(Box::new(FanOut {
            source: FanOutSource::Items(vec!["x".into(), "y".into(), "z".into()]),
            max_parallel: 2,
        })),
        template: Some(Template(vec![Segment::Text("do ".into()), Segment::Item])),
        ..spec("each")
    };
    let (info, turn) = h.execute(plan(vec![fan, depending("after", &["each"])]));
    info.unwrap();
    assert_eq!(started(&turn), ["each.0", "each.1"]);
    assert_eq!(h.status("each"), S::Running);
    assert_eq!(started(&h.finish("each.0", ok("X"))), ["each.2"]);
    h.finish("each.1", ok("Y"));
    let turn = h.finish("each.2", ok("Z"));
    assert_eq!(started(&turn), ["after"]);
    let each = h.task("each");
    assert_eq!(each.status, S::Completed);
    assert_eq!(each.result.unwrap().text, r#"["X","Y","Z"]"#);
    assert_eq!(h.task("each.2").spec.prompt, "do z");
}

#[test]
fn a_pin_names_the_workflows_instance_by_position() {
    let mut h = Harness::new(1);
    let mut pinned = plan(vec![spec("on-second")]);
    pinned.instances = Some(2);
    pinned.pins = vec![Some(1)];
    let (info, turn) = h.execute(pinned);
    info.unwrap();
    assert_eq!(started(&turn), ["on-second"]);
    assert_eq!(
        h.task("on-second").instance_id.as_deref(),
        Some("inst-0002")
    );
    let mut too_far = plan(vec![spec("nowhere")]);
    too_far.pins = vec![Some(5)];
    let (info, _) = h.execute(too_far);
    assert_eq!(info.unwrap_err().field(), Some("tasks[0].instance"));
}
