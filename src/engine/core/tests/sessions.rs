//! Workflow session names (one conversation, one task at a time, resumed by id) and the
//! budget each attempt is given.

use super::*;
use crate::engine::{
    ports::{RunRequest, TaskRecord, WorkflowRecord},
    workflow::WorkflowStatus,
};

const S1: &str = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9";

/// The requests of the runs a turn started.
fn requests(turn: &Turn) -> Vec<RunRequest> {
    turn.effects
        .iter()
        .filter_map(|e| match e {
            Effect::StartRun { request, .. } => Some((**request).clone()),
            _ => None,
        })
        .collect()
}

fn in_session(id: &str, session: &str) -> TaskSpec {
    TaskSpec {
        session: Some(session.into()),
        ..spec(id)
    }
}

fn with_session_id(outcome: RunOutcome, session_id: &str) -> RunOutcome {
    let mut outcome = outcome;
    if let Some(result) = outcome.result.as_mut() {
        result.session_id = session_id.into();
    }
    outcome
}

#[test]
fn tasks_naming_one_session_run_one_at_a_time_and_resume_it() {
    let mut h = Harness::new(3);
    let (info, turn) = h.execute(plan(vec![
        in_session("a", "main"),
        in_session("b", "main"),
        spec("c"),
    ]));
    info.unwrap();
    let first = requests(&turn);
    // a starts its conversation; b waits for it although an instance is idle; c runs.
    assert_eq!(
        first.iter().map(|r| r.task_id.as_str()).collect::<Vec<_>>(),
        ["a", "c"]
    );
    assert_eq!(first[0].options.resume_session, None);
    assert_eq!(h.status("b"), TaskStatus::Pending);
    let turn = h.finish("a", with_session_id(ok("told"), S1));
    let next = requests(&turn);
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].task_id, "b");
    assert_eq!(next[0].options.resume_session.as_deref(), Some(S1));
}

#[test]
fn a_finished_workflow_forgets_its_session_names() {
    let mut h = Harness::new(1);
    let (info, _) = h.execute(plan(vec![in_session("a", "main"), in_session("b", "main")]));
    let workflow = info.unwrap().id;
    h.finish("a", with_session_id(ok("told"), S1));
    assert!(
        h.core
            .sessions
            .keys()
            .any(|(w, _)| w.as_ref() == Some(&workflow)),
        "kept while the workflow runs"
    );
    h.finish("b", ok("done"));
    assert_eq!(
        h.core.workflows[&workflow].record.info.status,
        WorkflowStatus::Completed
    );
    assert!(h.core.sessions.is_empty(), "{:?}", h.core.sessions);
}

#[test]
fn a_session_name_is_its_workflows_own() {
    let mut h = Harness::new(2);
    h.execute(plan(vec![in_session("a", "main")])).0.unwrap();
    let (_, turn) = h.execute(plan(vec![in_session("b", "main")]));
    let started = requests(&turn);
    assert_eq!(started.len(), 1, "the other workflow's main is not held");
    assert_eq!(started[0].options.resume_session, None);
}

#[test]
fn a_failed_holder_hands_the_session_on_and_waiters_that_end_leave_the_line() {
    let mut h = Harness::new(1);
    h.execute(plan(vec![
        in_session("a", "main"),
        in_session("b", "main"),
        in_session("c", "main"),
    ]))
    .0
    .unwrap();
    // b is cancelled while it waits: c is next.
    let (_, _) = h.call(|call| Input::CancelTask {
        call,
        id: "b".into(),
    });
    assert_eq!(h.status("b"), TaskStatus::Cancelled);
    let turn = h.finish(
        "a",
        with_session_id(
            RunOutcome {
                result: Some(TaskResult::default()),
                ..failure(FailureClass::ApiError)
            },
            S1,
        ),
    );
    let next = requests(&turn);
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].task_id, "c");
    assert_eq!(
        next[0].options.resume_session.as_deref(),
        Some(S1),
        "the conversation a's run had goes on"
    );
}

#[test]
fn a_task_resuming_a_session_of_its_own_keeps_it() {
    let mut h = Harness::new(1);
    let own = "11111111-2222-4333-8444-555555555555";
    let mut b = in_session("b", "main");
    b.options.resume_session = Some(own.into());
    b.depends_on = vec!["a".into()];
    h.execute(plan(vec![in_session("a", "main"), b])).0.unwrap();
    let turn = h.finish("a", with_session_id(ok("x"), S1));
    assert_eq!(
        requests(&turn)[0].options.resume_session.as_deref(),
        Some(own)
    );
}

#[test]
fn after_a_restart_a_session_name_resumes_what_its_stored_results_say() {
    let workflow = "wf-1".to_string();
    let task = |id: &str, status: TaskStatus| {
        let mut task = Task::new(
            id.into(),
            in_session(id, "main"),
            Some(workflow.clone()),
            SystemTime::UNIX_EPOCH,
        );
        task.status = status;
        task
    };
    let mut done = task("a", TaskStatus::Completed);
    done.started_at = Some(SystemTime::UNIX_EPOCH);
    done.result = Some(Box::new(TaskResult {
        session_id: S1.into(),
        ..TaskResult::default()
    }));
    let waiting = task("b", TaskStatus::Queued);
    let info = WorkflowInfo {
        id: workflow.clone(),
        name: "w".into(),
        description: String::new(),
        status: WorkflowStatus::Running,
        task_ids: vec!["a".into(), "b".into()],
        created_at: SystemTime::UNIX_EPOCH,
        completed_at: None,
        total_cost_usd: 0.0,
        task_counts: Default::default(),
        outputs: Default::default(),
        budget_usd: None,
        usage: Default::default(),
        turns: 0,
        permissions: Default::default(),
        schedule_id: None,
    };
    let snapshot = Snapshot {
        tasks: [done, waiting]
            .into_iter()
            .map(|task| TaskRecord {
                task: task.into(),
                parent: None,
            })
            .collect(),
        workflows: vec![WorkflowRecord {
            info,
            cancelling: false,
            user_cancelled: false,
            leaves: vec!["b".into()],
        }],
        ..Snapshot::default()
    };
    let h = Harness::boot(
        EngineConfig {
            initial_instances: 1,
            ..EngineConfig::default()
        },
        snapshot,
    );
    let started = requests(&h.booted);
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].task_id, "b");
    assert_eq!(started[0].options.resume_session.as_deref(), Some(S1));
}

#[test]
fn each_attempt_may_spend_what_is_left_of_the_least_budget() {
    let mut h = Harness::with(EngineConfig {
        initial_instances: 1,
        budget_usd: Some(1.0),
        ..EngineConfig::default()
    });
    let turn = h.submit(vec![spec("a")]);
    assert_eq!(requests(&turn)[0].max_budget_usd, Some(1.0), "the swarm's");
    let mut own = spec("b");
    own.options.max_budget_usd = Some(0.5);
    h.submit(vec![own, spec("c")]);
    let turn = h.finish("a", costing("spent", 0.75));
    assert_eq!(
        requests(&turn)[0].max_budget_usd,
        Some(0.25),
        "the swarm's rest"
    );
    let turn = h.finish("b", costing("spent", 0.0));
    assert_eq!(requests(&turn)[0].max_budget_usd, Some(0.25));

    // A workflow's rest, when it is the least.
    let mut h = Harness::new(1);
    let mut plan = plan(vec![spec("x"), spec("y")]);
    plan.budget_usd = Some(0.5);
    let (_, turn) = h.execute(plan);
    assert_eq!(requests(&turn)[0].max_budget_usd, Some(0.5));
    let turn = h.finish("x", costing("spent", 0.125));
    assert_eq!(requests(&turn)[0].max_budget_usd, Some(0.375));

    // No budget anywhere: no cap.
    let mut h = Harness::new(1);
    assert_eq!(requests(&h.submit(vec![spec("z")]))[0].max_budget_usd, None);
}

#[test]
fn a_retry_whose_own_budget_went_on_earlier_attempts_does_not_start() {
    let mut h = Harness::new(1);
    let mut a = spec("a");
    a.retries = 1;
    a.options.max_budget_usd = Some(0.5);
    h.submit(vec![a]);
    let spent = RunOutcome {
        result: Some(TaskResult {
            cost_usd: 0.5,
            ..TaskResult::default()
        }),
        ..failure(FailureClass::ApiError)
    };
    h.finish("a", spent);
    let turn = h.fire(Timer::Retry("a".into()));
    assert!(requests(&turn).is_empty());
    let task = h.task("a");
    assert_eq!(task.status, TaskStatus::Failed);
    assert_eq!(task.failure_class, Some(FailureClass::BudgetExhausted));
}
