//! The pool: scaling down idle instances first, terminating busy ones, pinned work.

use super::*;
use crate::engine::InstanceStatus;

fn instances(h: &mut Harness) -> Vec<crate::engine::Instance> {
    let (call, turn) = h.call(|call| Input::ListInstances { call });
    match reply(&turn, call) {
        Some(Answer::Instances(Ok(list))) => list.clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn scaling_down_stops_idle_instances_first_and_busy_ones_after_their_task() {
    let mut h = Harness::new(3);
    h.submit(vec![spec("a")]);
    let busy = h.task("a").instance_id.unwrap();
    let (_, turn) = h.call(|call| Input::Scale { call, target: 1 });
    let retired: Vec<&String> = turn
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::RetireInstance(id) => Some(id),
            _ => None,
        })
        .collect();
    assert_eq!(retired.len(), 2);
    assert!(!retired.contains(&&busy), "the busy one stays");
    let (_, turn) = h.call(|call| Input::Scale { call, target: 0 });
    assert!(
        !turn
            .effects
            .iter()
            .any(|e| matches!(e, Effect::RetireInstance(_)))
    );
    let live = instances(&mut h);
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].status, InstanceStatus::Stopping);
    // It finishes its task, then goes.
    let turn = h.complete("a");
    assert!(turn.effects.contains(&Effect::RetireInstance(busy)));
    assert!(instances(&mut h).is_empty());
    assert_eq!(h.status("a"), TaskStatus::Completed);
}

#[test]
fn terminating_a_busy_instance_stops_its_task_and_fails_tasks_pinned_to_it() {
    let mut h = Harness::new(1);
    h.submit(vec![spec("running")]);
    let instance = h.task("running").instance_id.unwrap();
    h.submit(vec![TaskSpec {
        instance_id: Some(instance.clone()),
        ..spec("pinned")
    }]);
    let (call, turn) = h.call(|call| Input::Terminate {
        call,
        id: instance.clone(),
    });
    assert_eq!(
        stops(&turn),
        [("running".into(), StopReason::InstanceTerminated)]
    );
    let pinned = h.task("pinned");
    assert_eq!(pinned.status, TaskStatus::Failed);
    assert!(pinned.error.unwrap().contains("was terminated"));
    let turn = h.finish("running", failure(FailureClass::Interrupted));
    assert!(matches!(
        reply(&turn, call),
        Some(Answer::Instance(Ok(i))) if i.status == InstanceStatus::Terminated
    ));
}

#[test]
fn spawning_past_the_maximum_is_refused_naming_the_count() {
    let mut h = Harness::new(7);
    let (call, turn) = h.call(|call| Input::Spawn {
        call,
        count: 2,
        working_directory: None,
    });
    match reply(&turn, call) {
        Some(Answer::Instances(Err(e))) => assert_eq!(e.field(), Some("count")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn another_nodes_instances_take_work_and_its_loss_hands_the_work_back_uncounted() {
    let mut h = Harness::new(0);
    h.submit(vec![TaskSpec {
        retries: 0,
        ..spec("a")
    }]);
    assert_eq!(h.status("a"), TaskStatus::Queued, "no instance yet");
    let (call, turn) = h.call(|call| Input::JoinNode {
        call,
        node: "b".into(),
        count: 2,
    });
    let Some(Answer::Instances(Ok(joined))) = reply(&turn, call) else {
        panic!("{:?}", reply(&turn, call));
    };
    assert_eq!(
        joined.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        ["b/inst-0001", "b/inst-0002"]
    );
    assert!(joined.iter().all(|i| i.node == "b"));
    assert_eq!(
        started(&turn),
        ["a"],
        "the queued task goes to the new node"
    );
    assert_eq!(h.task("a").instance_id.as_deref(), Some("b/inst-0001"));

    // The node is lost mid-run: its instances go, its run is stopped, and once the run
    // ends the task is queued again with its attempt not counted (it has no retry left).
    let (_, turn) = h.call(|call| Input::LeaveNode {
        call,
        node: "b".into(),
    });
    assert_eq!(stops(&turn), [("a".into(), StopReason::InstanceTerminated)]);
    assert!(instances(&mut h).is_empty());
    h.finish("a", failure(FailureClass::Interrupted));
    let task = h.task("a");
    assert_eq!(task.status, TaskStatus::Queued, "{task:?}");
    assert_eq!(
        task.attempts, 1,
        "the attempt number is the fencing token: it only grows"
    );
    assert_eq!(task.counted_attempts(), 0);
    assert_eq!(task.history[0].failure_class, Some(FailureClass::NodeLost));
    assert!(task.error.unwrap().contains("node b was lost"));

    // Another node joins: the task runs there, and completes once.
    let (_, turn) = h.call(|call| Input::JoinNode {
        call,
        node: "c".into(),
        count: 1,
    });
    assert_eq!(started(&turn), ["a"]);
    assert_eq!(h.task("a").instance_id.as_deref(), Some("c/inst-0003"));
    h.complete("a");
    let task = h.task("a");
    assert_eq!((task.status, task.attempts), (TaskStatus::Completed, 2));
    assert_eq!(task.counted_attempts(), 1);
}
