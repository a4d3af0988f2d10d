//! Tool permissions: rules answer at once, the rest become approvals that a person, a
//! deadline, a cancel or a restart settles; the run's timeout is held meanwhile.

use serde_json::json;

use super::*;
use crate::engine::{
    EngineError, EventKind, Payload,
    model::approval::{Approval, ApprovalState, DenialPolicy, PermissionPolicy, PolicyScope},
    ports::{PermissionDecision, PermissionRequest, TaskRecord},
};

use super::super::{ApprovalQuery, DEFAULT_APPROVAL_TIMEOUT, Decision};

fn request(command: &str) -> PermissionRequest {
    PermissionRequest {
        tool_name: "Bash".into(),
        input: json!({ "command": command, "description": "print a marker" }),
        suggestions: json!([{ "type": "addRules", "rules": [{ "toolName": "Bash", "ruleContent": command }], "behavior": "allow", "destination": "localSettings" }]),
        description: "print a marker".into(),
        blocked_path: Some("/outside/marker".into()),
        tool_use_id: "toolu_1".into(),
        resolved: None,
    }
}

fn ask(h: &mut Harness, task: &str, ask: u64, command: &str) -> Turn {
    h.input(Input::PermissionAsked {
        task: task.into(),
        ask,
        request: Box::new(request(command)),
    })
}

fn answers(turn: &Turn) -> Vec<(u64, PermissionDecision)> {
    turn.effects
        .iter()
        .filter_map(|e| match e {
            Effect::AnswerPermission { ask, decision } => Some((*ask, decision.clone())),
            _ => None,
        })
        .collect()
}

fn holds(turn: &Turn) -> Vec<bool> {
    turn.effects
        .iter()
        .filter_map(|e| match e {
            Effect::HoldTimeout { held, .. } => Some(*held),
            _ => None,
        })
        .collect()
}

fn kinds(turn: &Turn) -> Vec<EventKind> {
    turn.batch.events.iter().map(|e| e.kind).collect()
}

fn requested(turn: &Turn) -> Approval {
    turn.batch
        .events
        .iter()
        .find_map(|e| match (&e.kind, &e.payload) {
            (EventKind::ApprovalRequested, Payload::Approval(a)) => Some((**a).clone()),
            _ => None,
        })
        .expect("an approval was requested")
}

fn decide(h: &mut Harness, id: &str, decision: Decision) -> Result<Approval> {
    let (call, turn) = h.call(|call| Input::DecideApproval {
        call,
        id: id.into(),
        decision: Box::new(decision),
    });
    match reply(&turn, call) {
        Some(Answer::Approval(a)) => a.clone(),
        other => panic!("no answer: {other:?}"),
    }
}

fn allow() -> Decision {
    Decision {
        allow: true,
        message: String::new(),
        updated_input: None,
        always: None,
        by: "ci".into(),
    }
}

fn running(h: &mut Harness, spec: TaskSpec) {
    let id = spec.id.clone().unwrap();
    let turn = h.submit(vec![spec]);
    assert_eq!(started(&turn), [id]);
}

#[test]
fn an_unruled_call_waits_on_a_person_with_its_timeout_held() {
    let mut h = Harness::new(1);
    running(&mut h, spec("a"));
    let turn = ask(&mut h, "a", 7, "touch /outside/marker");
    assert!(answers(&turn).is_empty(), "nobody answered yet");
    assert_eq!(holds(&turn), [true]);
    let approval = requested(&turn);
    assert_eq!(approval.state, ApprovalState::Pending);
    assert_eq!(approval.task_id, "a");
    assert_eq!(approval.expires_at, h.now + DEFAULT_APPROVAL_TIMEOUT);
    assert_eq!(
        timers(&turn),
        [(
            Timer::ApprovalExpiry(approval.id.clone()),
            DEFAULT_APPROVAL_TIMEOUT
        )]
    );
    assert_eq!(
        turn.batch.approvals,
        std::slice::from_ref(&approval),
        "stored"
    );

    let edited = json!({ "command": "touch /outside/other" });
    let (call, turn) = h.call(|call| Input::DecideApproval {
        call,
        id: approval.id.clone(),
        decision: Box::new(Decision {
            updated_input: Some(edited.clone()),
            ..allow()
        }),
    });
    assert_eq!(
        answers(&turn),
        [(
            7,
            PermissionDecision::Allow {
                updated_input: Some(edited)
            }
        )]
    );
    assert_eq!(holds(&turn), [false]);
    assert_eq!(kinds(&turn), [EventKind::ApprovalDecided]);
    let Some(Answer::Approval(Ok(decided))) = reply(&turn, call) else {
        panic!("decided");
    };
    assert_eq!(decided.state, ApprovalState::Allowed);
    assert_eq!(decided.decided_by.as_deref(), Some("ci"));
    assert!(decided.delivered);
}

#[test]
fn rules_decide_at_once_and_deny_wins_across_levels() {
    let mut h = Harness::with(EngineConfig {
        initial_instances: 1,
        permissions: PermissionPolicy {
            deny: vec!["Bash(rm:*)".into()],
            ..Default::default()
        },
        ..EngineConfig::default()
    });
    running(
        &mut h,
        TaskSpec {
            permissions: PermissionPolicy {
                allow: vec!["Bash".into()],
                ..Default::default()
            }
            .into(),
            ..spec("a")
        },
    );
    let turn = ask(&mut h, "a", 1, "ls -la");
    assert_eq!(
        answers(&turn),
        [(
            1,
            PermissionDecision::Allow {
                updated_input: None
            }
        )]
    );
    assert!(turn.batch.approvals.is_empty());
    let turn = ask(&mut h, "a", 2, "echo x && rm -rf /");
    let [(2, PermissionDecision::Deny { message })] = &answers(&turn)[..] else {
        panic!("denied: {:?}", answers(&turn));
    };
    assert!(
        message.contains("Bash(rm:*)") && message.contains("swarm"),
        "{message}"
    );
    assert_eq!(kinds(&turn), [EventKind::PermissionDenied]);
}

#[test]
fn a_path_rule_does_not_allow_a_write_through_a_symlink_out_of_it() {
    let mut h = Harness::new(1);
    running(
        &mut h,
        TaskSpec {
            permissions: PermissionPolicy {
                allow: vec!["Edit(src/**)".into()],
                ..Default::default()
            }
            .into(),
            ..spec("a")
        },
    );
    let edit = |resolved: &str| PermissionRequest {
        tool_name: "Write".into(),
        input: json!({ "file_path": "src/link/passwd", "content": "x" }),
        resolved: Some((resolved.into(), "/real".into())),
        ..request("")
    };
    let turn = h.input(Input::PermissionAsked {
        task: "a".into(),
        ask: 1,
        request: Box::new(edit("/real/src/link/passwd")),
    });
    assert_eq!(
        answers(&turn),
        [(
            1,
            PermissionDecision::Allow {
                updated_input: None
            }
        )]
    );
    let turn = h.input(Input::PermissionAsked {
        task: "a".into(),
        ask: 2,
        request: Box::new(edit("/etc/passwd")),
    });
    assert!(answers(&turn).is_empty(), "a person decides");
    assert_eq!(requested(&turn).tool_name, "Write");
}

#[test]
fn ask_false_refuses_what_no_rule_decides() {
    let mut h = Harness::new(1);
    running(
        &mut h,
        TaskSpec {
            permissions: PermissionPolicy {
                ask: Some(false),
                ..Default::default()
            }
            .into(),
            ..spec("a")
        },
    );
    let turn = ask(&mut h, "a", 1, "touch /outside/marker");
    assert!(
        matches!(&answers(&turn)[..], [(1, PermissionDecision::Deny { message })] if message.contains("ask: false"))
    );
    assert!(turn.batch.approvals.is_empty());
}

#[test]
fn an_undecided_approval_expires_denied() {
    let mut h = Harness::with(EngineConfig {
        initial_instances: 1,
        approval_timeout: Duration::from_secs(30),
        ..EngineConfig::default()
    });
    running(&mut h, spec("a"));
    let approval = requested(&ask(&mut h, "a", 3, "touch /outside/marker"));
    h.advance(Duration::from_secs(30));
    let turn = h.fire(Timer::ApprovalExpiry(approval.id.clone()));
    assert!(
        matches!(&answers(&turn)[..], [(3, PermissionDecision::Deny { message })] if message.contains("not decided within 30s"))
    );
    assert_eq!(
        kinds(&turn),
        [EventKind::PermissionDenied, EventKind::ApprovalDecided]
    );
    let err = decide(&mut h, &approval.id, allow()).unwrap_err();
    assert!(
        matches!(err, EngineError::FailedPrecondition(ref m) if m.contains("already expired")),
        "{err}"
    );
}

#[test]
fn bad_decisions_name_their_field_and_change_nothing() {
    let mut h = Harness::new(1);
    running(&mut h, spec("a"));
    let approval = requested(&ask(&mut h, "a", 1, "touch /outside/marker"));
    let not_object = Decision {
        updated_input: Some(json!("rm -rf /")),
        ..allow()
    };
    let err = decide(&mut h, &approval.id, not_object).unwrap_err();
    assert_eq!(err.field(), Some("updated_input"));
    let no_workflow = Decision {
        always: Some(PolicyScope::Workflow),
        ..allow()
    };
    assert_eq!(
        decide(&mut h, &approval.id, no_workflow)
            .unwrap_err()
            .field(),
        Some("always")
    );
    assert!(matches!(
        decide(&mut h, "apr-nope", allow()),
        Err(EngineError::NotFound { .. })
    ));
    let (call, turn) = h.call(|call| Input::GetApproval {
        call,
        id: approval.id.clone(),
    });
    assert!(
        matches!(reply(&turn, call), Some(Answer::Approval(Ok(a))) if a.state == ApprovalState::Pending)
    );
    decide(
        &mut h,
        &approval.id,
        Decision {
            allow: false,
            ..allow()
        },
    )
    .unwrap();
    let err = decide(&mut h, &approval.id, allow()).unwrap_err();
    assert!(err.to_string().contains("already denied by ci"), "{err}");
}

#[test]
fn always_adds_the_rule_that_decides_the_next_call() {
    let mut h = Harness::new(1);
    running(&mut h, spec("a"));
    let approval = requested(&ask(
        &mut h,
        "a",
        1,
        "touch /outside/marker && echo wrote-it",
    ));
    let decided = decide(
        &mut h,
        &approval.id,
        Decision {
            always: Some(PolicyScope::Task),
            ..allow()
        },
    )
    .unwrap();
    assert_eq!(
        decided.rule_added.as_deref(),
        Some("task:Bash(touch /outside/marker && echo wrote-it)")
    );
    assert_eq!(
        h.task("a").spec.permissions.allow,
        ["Bash(touch /outside/marker && echo wrote-it)"]
    );
    let turn = ask(&mut h, "a", 2, "touch /outside/marker && echo wrote-it");
    assert_eq!(
        answers(&turn),
        [(
            2,
            PermissionDecision::Allow {
                updated_input: None
            }
        )]
    );
    assert!(turn.batch.approvals.is_empty(), "no second approval");
    // A swarm-wide rule is stored for the next start.
    let other = requested(&ask(&mut h, "a", 3, "touch /elsewhere"));
    let (call, turn) = h.call(|call| Input::DecideApproval {
        call,
        id: other.id.clone(),
        decision: Box::new(Decision {
            allow: false,
            always: Some(PolicyScope::Swarm),
            ..allow()
        }),
    });
    assert!(matches!(reply(&turn, call), Some(Answer::Approval(Ok(_)))));
    assert_eq!(
        turn.batch.swarm_policy.as_ref().map(|p| p.deny.clone()),
        Some(vec!["Bash(touch /elsewhere)".to_string()])
    );
}

#[test]
fn cancelling_a_task_closes_its_approvals() {
    let mut h = Harness::new(1);
    running(&mut h, spec("a"));
    let approval = requested(&ask(&mut h, "a", 1, "touch /outside/marker"));
    h.call(|call| Input::CancelTask {
        call,
        id: "a".into(),
    });
    let cancelled = RunOutcome {
        status: TaskStatus::Cancelled,
        ..RunOutcome::failed(FailureClass::Cancelled, "cancelled")
    };
    let turn = h.finish("a", cancelled);
    let closed = turn
        .batch
        .approvals
        .iter()
        .find(|a| a.id == approval.id)
        .unwrap();
    assert_eq!(closed.state, ApprovalState::Expired);
    assert!(closed.message.contains("cancelled"), "{}", closed.message);
    let (call, turn) = h.call(|call| Input::ListApprovals {
        call,
        query: ApprovalQuery {
            states: vec![ApprovalState::Pending],
            ..ApprovalQuery::default()
        },
    });
    assert!(matches!(reply(&turn, call), Some(Answer::Approvals(Ok(list))) if list.is_empty()));
}

#[test]
fn a_pending_approval_survives_a_restart_and_its_decision_reaches_the_rerun() {
    // Before the restart: the task was running and asked.
    let mut before = Harness::new(1);
    running(
        &mut before,
        TaskSpec {
            retries: 1,
            ..spec("a")
        },
    );
    let approval = requested(&ask(&mut before, "a", 1, "touch /outside/marker"));
    let mut task = before.task("a");
    task.status = TaskStatus::Running;
    let snapshot = Snapshot {
        tasks: vec![TaskRecord {
            task: task.into(),
            parent: None,
        }],
        approvals: vec![approval.clone()],
        ..Snapshot::default()
    };
    let mut h = Harness::boot(
        EngineConfig {
            initial_instances: 1,
            ..EngineConfig::default()
        },
        snapshot,
    );
    assert_eq!(started(&h.booted), ["a"], "the task runs again");
    assert!(
        timers(&h.booted)
            .iter()
            .any(|(t, _)| *t == Timer::ApprovalExpiry(approval.id.clone())),
        "its deadline is armed again"
    );
    // Decided while no run waits: kept for the rerun's identical question.
    let decided = decide(&mut h, &approval.id, allow()).unwrap();
    assert!(!decided.delivered);
    let turn = ask(&mut h, "a", 9, "touch /outside/marker");
    assert_eq!(
        answers(&turn),
        [(
            9,
            PermissionDecision::Allow {
                updated_input: None
            }
        )]
    );
    assert!(turn.batch.approvals.iter().all(|a| a.delivered));
}

#[test]
fn a_rerun_waits_on_the_approval_its_first_run_left_pending() {
    let mut h = Harness::new(1);
    running(
        &mut h,
        TaskSpec {
            retries: 1,
            ..spec("a")
        },
    );
    let approval = requested(&ask(&mut h, "a", 1, "touch /outside/marker"));
    h.finish("a", failure(FailureClass::ProcessCrashed));
    h.fire(Timer::Retry("a".into()));
    let turn = ask(&mut h, "a", 2, "touch /outside/marker");
    assert!(
        turn.batch.approvals.is_empty(),
        "the same approval, not a new one"
    );
    assert_eq!(holds(&turn), [true]);
    let (_, turn) = h.call(|call| Input::DecideApproval {
        call,
        id: approval.id.clone(),
        decision: Box::new(allow()),
    });
    assert_eq!(
        answers(&turn),
        [(
            2,
            PermissionDecision::Allow {
                updated_input: None
            }
        )]
    );
}

#[test]
fn on_permission_denied_fail_fails_a_run_with_refusals() {
    let mut h = Harness::new(1);
    running(
        &mut h,
        TaskSpec {
            on_permission_denied: DenialPolicy::Fail,
            ..spec("a")
        },
    );
    let mut outcome = ok("tool said: refused");
    if let Some(result) = outcome.result.as_mut() {
        result.permission_denials = vec![crate::engine::PermissionDenial {
            tool_name: "Bash".into(),
            input: json!({ "command": "touch /outside/marker" }),
            ..Default::default()
        }];
    }
    h.finish("a", outcome);
    let task = h.task("a");
    assert_eq!(task.status, TaskStatus::Failed);
    assert_eq!(task.failure_class, Some(FailureClass::PermissionDenied));
    assert!(task.error.unwrap().contains("Bash(touch /outside/marker)"));
    assert_eq!(task.result.unwrap().permission_denials.len(), 1);
}

#[test]
fn always_for_the_workflow_decides_its_other_tasks_calls() {
    let mut h = Harness::new(2);
    let (info, turn) = h.execute(plan(vec![spec("a"), spec("b")]));
    let workflow = info.unwrap().id;
    assert_eq!(started(&turn).len(), 2);
    let approval = requested(&ask(&mut h, "a", 1, "touch /outside/marker"));
    assert_eq!(approval.workflow_id.as_deref(), Some(workflow.as_str()));
    decide(
        &mut h,
        &approval.id,
        Decision {
            always: Some(PolicyScope::Workflow),
            ..allow()
        },
    )
    .unwrap();
    let (call, turn) = h.call(|call| Input::GetWorkflow {
        call,
        id: workflow.clone(),
    });
    let Some(Answer::Workflow(Ok(info))) = reply(&turn, call) else {
        panic!("the workflow");
    };
    assert_eq!(info.permissions.allow, ["Bash(touch /outside/marker)"]);
    let turn = ask(&mut h, "b", 2, "touch /outside/marker");
    assert_eq!(
        answers(&turn),
        [(
            2,
            PermissionDecision::Allow {
                updated_input: None
            }
        )]
    );
}

#[test]
fn a_compacted_task_takes_its_approvals_with_it() {
    let mut h = Harness::with(EngineConfig {
        initial_instances: 1,
        task_retention: 1,
        ..EngineConfig::default()
    });
    running(&mut h, spec("a"));
    let approval = requested(&ask(&mut h, "a", 1, "touch /outside/marker"));
    decide(&mut h, &approval.id, allow()).unwrap();
    h.complete("a");
    running(&mut h, spec("b"));
    let turn = h.complete("b");
    assert_eq!(turn.batch.deleted_tasks, ["a"]);
    assert_eq!(
        turn.batch.deleted_approvals,
        std::slice::from_ref(&approval.id)
    );
    assert!(turn.batch.approvals.iter().all(|a| a.id != approval.id));
    let (call, turn) = h.call(|call| Input::ListApprovals {
        call,
        query: ApprovalQuery::default(),
    });
    assert!(matches!(reply(&turn, call), Some(Answer::Approvals(Ok(list))) if list.is_empty()));
    let (call, turn) = h.call(|call| Input::GetApproval {
        call,
        id: approval.id.clone(),
    });
    assert!(matches!(
        reply(&turn, call),
        Some(Answer::Approval(Err(EngineError::NotFound { .. })))
    ));
}

#[test]
fn approvals_stored_for_a_task_compacted_before_are_forgotten_at_boot() {
    let mut before = Harness::new(1);
    running(&mut before, spec("gone"));
    let approval = requested(&ask(&mut before, "gone", 1, "touch /outside/marker"));
    let h = Harness::boot(
        EngineConfig::default(),
        Snapshot {
            approvals: vec![approval.clone()],
            ..Snapshot::default()
        },
    );
    assert_eq!(h.booted.batch.deleted_approvals, [approval.id]);
}
