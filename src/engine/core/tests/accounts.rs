//! Accounts: a refusal pauses only its account and hands the run back without using up an
//! attempt; a warning with high utilization halves the account's concurrency; tasks that
//! name an account run only there; pauses survive a restart.

use super::*;
use crate::engine::{
    model::{
        account::{Account, AccountSpec, AccountStatus, LimitReport, LimitStatus},
        event::{EventKind, Payload},
    },
    ports::RunRequest,
};

fn two_accounts() -> EngineConfig {
    accounts(&[("a", 1), ("b", 1)])
}

fn accounts(specs: &[(&str, usize)]) -> EngineConfig {
    EngineConfig {
        max_instances: 8,
        accounts: specs
            .iter()
            .map(|(name, instances)| AccountSpec {
                name: (*name).into(),
                instances: *instances,
            })
            .collect(),
        ..EngineConfig::default()
    }
}

fn report(status: LimitStatus, resets_at: SystemTime, utilization: Option<f64>) -> LimitReport {
    LimitReport {
        status,
        resets_at: Some(resets_at),
        window: Some("five_hour".into()),
        utilization,
    }
}

/// The failed run of a refused request, as the agent judges it: a 429 error result.
fn refused(session: &str) -> RunOutcome {
    RunOutcome {
        result: Some(TaskResult {
            text: "You've hit your 5-hour limit".into(),
            session_id: session.into(),
            is_error: true,
            api_error_status: Some(429),
            ..TaskResult::default()
        }),
        ..failure(FailureClass::RateLimited)
    }
}

fn requests(turn: &Turn) -> Vec<RunRequest> {
    turn.effects
        .iter()
        .filter_map(|e| match e {
            Effect::StartRun { request, .. } => Some((**request).clone()),
            _ => None,
        })
        .collect()
}

/// The accounts a turn's `account_changed` events name, with the state they show.
fn account_events(turn: &Turn) -> Vec<(String, AccountStatus)> {
    turn.batch
        .events
        .iter()
        .filter_map(|e| match (&e.kind, &e.payload) {
            (EventKind::AccountChanged, Payload::Account(a)) => {
                Some((a.account.name.clone(), a.status))
            }
            _ => None,
        })
        .collect()
}

fn swarm(h: &mut Harness) -> crate::engine::SwarmStatus {
    let (call, turn) = h.call(|call| Input::Status { call });
    let Some(Answer::Status(status)) = reply(&turn, call) else {
        panic!("no status")
    };
    status.as_ref().as_ref().unwrap().clone()
}

fn state(h: &mut Harness, account: &str) -> AccountStatus {
    swarm(h)
        .accounts
        .into_iter()
        .find(|a| a.account.name == account)
        .map(|a| a.status)
        .unwrap()
}

#[test]
fn instances_follow_the_accounts_shares() {
    let mut h = Harness::with(accounts(&[("a", 2), ("b", 1)]));
    let status = swarm(&mut h);
    let live: Vec<(String, u64)> = status
        .accounts
        .iter()
        .map(|a| (a.account.name.clone(), a.instances_live))
        .collect();
    assert_eq!(live, [("a".into(), 2), ("b".into(), 1)]);
    // Scaled up, the pool keeps the 2:1 ratio.
    let (_, _) = h.call(|call| Input::Scale { call, target: 6 });
    let live: Vec<u64> = swarm(&mut h)
        .accounts
        .iter()
        .map(|a| a.instances_live)
        .collect();
    assert_eq!(live, [4, 2]);
}

#[test]
fn a_refusal_pauses_only_its_account_and_the_task_resumes_its_session_after_the_reset() {
    let mut h = Harness::with(two_accounts());
    let turn = h.submit(vec![spec("t1"), spec("t2"), spec("t3")]);
    let accounts: Vec<(TaskId, String)> = requests(&turn)
        .into_iter()
        .map(|r| (r.task_id, r.account))
        .collect();
    assert_eq!(
        accounts,
        [("t1".into(), "a".into()), ("t2".into(), "b".into())]
    );
    let reset = h.now + Duration::from_secs(60);
    let turn = h.input(Input::Limit {
        task: "t1".into(),
        report: report(LimitStatus::Rejected, reset, None),
    });
    assert!(timers(&turn).contains(&(Timer::Account("a".into()), Duration::from_secs(60))));
    assert_eq!(turn.batch.accounts.len(), 2, "the pause is stored");
    assert_eq!(state(&mut h, "a"), AccountStatus::Paused);
    assert_eq!(state(&mut h, "b"), AccountStatus::Active);

    // The refused run goes back to the queue: no attempt used, its session kept.
    let turn = h.finish("t1", refused("session-1"));
    assert!(
        started(&turn).is_empty(),
        "a's instance takes nothing while paused"
    );
    let t1 = h.task("t1");
    assert_eq!(t1.status, TaskStatus::Queued);
    assert_eq!(t1.attempts, 0);
    assert_eq!(t1.failure_class, None);
    assert_eq!(t1.spec.options.resume_session.as_deref(), Some("session-1"));
    assert_eq!(t1.spec.account.as_deref(), Some("a"), "its session is a's");
    assert!(t1.error.as_deref().unwrap().contains("account a"));

    // b goes on: its next task is t3 (t1 waits for a).
    assert_eq!(started(&h.complete("t2")), ["t3"]);
    let status = swarm(&mut h);
    assert!(status.paused.is_none(), "one account still takes work");

    // An early timer changes nothing; at the reset t1 resumes on a.
    h.advance(Duration::from_secs(30));
    let early = h.fire(Timer::Account("a".into()));
    assert!(started(&early).is_empty() && account_events(&early).is_empty());
    h.advance(Duration::from_secs(30));
    let turn = h.fire(Timer::Account("a".into()));
    assert_eq!(account_events(&turn), [("a".into(), AccountStatus::Active)]);
    let resumed = requests(&turn);
    assert_eq!(resumed.len(), 1);
    assert_eq!(resumed[0].task_id, "t1");
    assert_eq!(resumed[0].account, "a");
    assert_eq!(resumed[0].attempt, 1, "the refused run did not count");
    assert_eq!(
        resumed[0].options.resume_session.as_deref(),
        Some("session-1")
    );
    h.complete("t1");
    assert_eq!(h.task("t1").attempts, 1);
    assert_eq!(state(&mut h, "a"), AccountStatus::Active);
}

#[test]
fn with_no_accounts_a_refusal_pauses_the_one_implicit_account() {
    let mut h = Harness::new(1);
    h.submit(vec![spec("a"), spec("b")]);
    let reset = h.now + Duration::from_secs(60);
    h.input(Input::Limit {
        task: "a".into(),
        report: report(LimitStatus::Rejected, reset, None),
    });
    let status = swarm(&mut h);
    assert_eq!(status.accounts.len(), 1);
    assert_eq!(status.accounts[0].account.name, "default");
    let (until, why) = status.paused.expect("everything is paused");
    assert_eq!(until, reset);
    assert!(why.contains("rate limited"), "{why}");
    assert!(started(&h.finish("a", refused("s"))).is_empty());
    h.advance(Duration::from_secs(60));
    // The oldest queued task first: b was waiting before a came back.
    assert_eq!(started(&h.fire(Timer::Account("default".into()))), ["b"]);
    assert_eq!(started(&h.complete("b")), ["a"]);
}

#[test]
fn a_refusal_without_a_session_is_not_pinned_and_a_stopped_run_is_not_handed_back() {
    let mut h = Harness::with(two_accounts());
    h.submit(vec![spec("t1"), spec("t2")]);
    let reset = h.now + Duration::from_secs(600);
    for task in ["t1", "t2"] {
        h.input(Input::Limit {
            task: task.into(),
            report: report(LimitStatus::Rejected, reset, None),
        });
    }
    // No result line, no session: it may run on any account later.
    h.finish("t1", failure(FailureClass::RateLimited));
    let t1 = h.task("t1");
    assert_eq!(
        (t1.status, t1.spec.account.clone()),
        (TaskStatus::Queued, None)
    );
    // A cancelled run is cancelled, refusal or not.
    let (_, _) = h.call(|call| Input::CancelTask {
        call,
        id: "t2".into(),
    });
    h.finish(
        "t2",
        RunOutcome {
            status: TaskStatus::Cancelled,
            ..failure(FailureClass::Cancelled)
        },
    );
    assert_eq!(h.status("t2"), TaskStatus::Cancelled);
    let status = swarm(&mut h);
    assert_eq!(status.paused.map(|(t, _)| t), Some(reset));
    assert_eq!(status.accounts[0].account.refusals, 1);
}

#[test]
fn a_task_naming_an_account_runs_only_on_its_instances() {
    let mut h = Harness::with(two_accounts());
    let turn = h.submit(vec![
        TaskSpec {
            account: Some("b".into()),
            ..spec("on-b")
        },
        TaskSpec {
            account: Some("b".into()),
            ..spec("also-on-b")
        },
    ]);
    let placed: Vec<(TaskId, String)> = requests(&turn)
        .into_iter()
        .map(|r| (r.task_id, r.account))
        .collect();
    assert_eq!(
        placed,
        [("on-b".into(), "b".into())],
        "a's instance stays idle"
    );
    assert_eq!(h.status("also-on-b"), TaskStatus::Queued);
    assert_eq!(started(&h.complete("on-b")), ["also-on-b"]);
}

#[test]
fn an_unknown_account_is_refused_naming_the_field_and_nothing_changes() {
    let mut h = Harness::with(two_accounts());
    let (result, turn) = h.submit_all(vec![
        spec("fine"),
        TaskSpec {
            account: Some("nope".into()),
            ..spec("bad")
        },
    ]);
    let error = result.unwrap_err().to_string();
    assert!(error.contains("tasks[1].account"), "{error}");
    assert!(
        error.contains("unknown account \"nope\" (configured: a, b)"),
        "{error}"
    );
    assert!(turn.batch.tasks.is_empty() && started(&turn).is_empty());
    // Pinned to an instance of another account: refused too.
    let (result, _) = h.submit_all(vec![TaskSpec {
        account: Some("b".into()),
        instance_id: Some("inst-0001".into()),
        ..spec("mismatch")
    }]);
    let error = result.unwrap_err().to_string();
    assert!(error.contains("belongs to account \"a\""), "{error}");
}

#[test]
fn a_warning_with_high_utilization_halves_the_accounts_concurrency_until_the_reset() {
    let mut h = Harness::with(accounts(&[("a", 4)]));
    let ids: Vec<String> = (1..=6).map(|i| format!("t{i}")).collect();
    let turn = h.submit(ids.iter().map(|id| spec(id)).collect());
    assert_eq!(started(&turn), ["t1", "t2", "t3", "t4"]);
    let reset = h.now + Duration::from_secs(3600);
    // A low one changes nothing.
    h.input(Input::Limit {
        task: "t1".into(),
        report: report(LimitStatus::Warning, reset, Some(0.5)),
    });
    assert_eq!(state(&mut h, "a"), AccountStatus::Active);
    let turn = h.input(Input::Limit {
        task: "t1".into(),
        report: report(LimitStatus::Warning, reset, Some(0.92)),
    });
    assert!(timers(&turn).contains(&(Timer::Account("a".into()), Duration::from_secs(3600))));
    assert_eq!(state(&mut h, "a"), AccountStatus::Limited);
    assert!(started(&h.complete("t1")).is_empty(), "3 busy, 2 allowed");
    assert!(started(&h.complete("t2")).is_empty(), "2 busy, 2 allowed");
    assert_eq!(started(&h.complete("t3")), ["t5"]);
    h.advance(Duration::from_secs(3600));
    assert_eq!(started(&h.fire(Timer::Account("a".into()))), ["t6"]);
    assert_eq!(state(&mut h, "a"), AccountStatus::Active);
    let summary = swarm(&mut h).accounts.remove(0);
    assert_eq!(summary.account.utilization, Some(0.92));
    assert_eq!(summary.account.window.as_deref(), Some("five_hour"));
}

#[test]
fn api_retries_are_counted_per_account() {
    let mut h = Harness::with(two_accounts());
    h.submit(vec![spec("t1"), spec("t2")]);
    for _ in 0..3 {
        h.input(Input::ApiRetry { task: "t2".into() });
    }
    let retries: Vec<u64> = swarm(&mut h)
        .accounts
        .iter()
        .map(|a| a.account.api_retries)
        .collect();
    assert_eq!(retries, [0, 3]);
}

#[test]
fn a_pause_survives_a_restart() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let paused = Account {
        paused_until: Some(now + Duration::from_secs(90)),
        api_retries: 4,
        ..Account::new(&AccountSpec {
            name: "a".into(),
            instances: 1,
        })
    };
    let gone = Account::new(&AccountSpec {
        name: "unconfigured now".into(),
        instances: 1,
    });
    let snapshot = Snapshot {
        accounts: vec![paused, gone],
        ..Snapshot::default()
    };
    let mut h = Harness::boot(two_accounts(), snapshot);
    assert!(
        timers(&h.booted).contains(&(Timer::Account("a".into()), Duration::from_secs(90))),
        "{:?}",
        h.booted.effects
    );
    let turn = h.submit(vec![TaskSpec {
        account: Some("a".into()),
        ..spec("on-a")
    }]);
    assert!(started(&turn).is_empty());
    let status = swarm(&mut h);
    assert_eq!(status.accounts.len(), 2, "only configured accounts");
    assert_eq!(status.accounts[0].status, AccountStatus::Paused);
    assert_eq!(status.accounts[0].account.api_retries, 4);
    h.advance(Duration::from_secs(90));
    assert_eq!(started(&h.fire(Timer::Account("a".into()))), ["on-a"]);
}

#[test]
fn a_reset_far_away_holds_an_account_at_most_eight_days() {
    let mut h = Harness::with(two_accounts());
    h.submit(vec![spec("t1")]);
    let century = h.now + Duration::from_secs(100 * 365 * 24 * 3600);
    let turn = h.input(Input::Limit {
        task: "t1".into(),
        report: report(LimitStatus::Rejected, century, None),
    });
    let eight_days = Duration::from_secs(8 * 24 * 3600);
    assert!(timers(&turn).contains(&(Timer::Account("a".into()), eight_days)));
    let a = swarm(&mut h).accounts.remove(0).account;
    assert_eq!(a.paused_until, Some(h.now + eight_days));
    assert_eq!(a.resets_at, Some(century), "shown as reported");
}

#[test]
fn a_pause_lifted_by_hand_lets_the_account_take_work_at_once_and_a_new_refusal_pauses_it_again() {
    let mut h = Harness::with(two_accounts());
    h.submit(vec![spec("t1"), spec("t2")]);
    let reset = h.now + Duration::from_secs(3600);
    let turn = h.input(Input::Limit {
        task: "t1".into(),
        report: report(LimitStatus::Rejected, reset, None),
    });
    assert_eq!(account_events(&turn), [("a".into(), AccountStatus::Paused)]);
    h.finish("t1", refused("session-1"));
    assert_eq!(state(&mut h, "a"), AccountStatus::Paused);
    assert_eq!(h.task("t1").status, TaskStatus::Queued);

    // Lifted an hour early: t1 starts on a in the same turn, resuming its session.
    let (call, turn) = h.call(|call| Input::ResumeAccount {
        call,
        name: "a".into(),
    });
    let Some(Answer::Account(Ok(summary))) = reply(&turn, call) else {
        panic!("no account in the answer")
    };
    assert_eq!(summary.status, AccountStatus::Active);
    assert_eq!(summary.account.paused_until, None);
    assert_eq!(turn.batch.accounts.len(), 2, "the lifted pause is stored");
    assert_eq!(account_events(&turn), [("a".into(), AccountStatus::Active)]);
    let resumed = requests(&turn);
    assert_eq!(resumed.len(), 1);
    assert_eq!(
        (resumed[0].task_id.as_str(), resumed[0].account.as_str()),
        ("t1", "a")
    );
    assert_eq!(
        resumed[0].options.resume_session.as_deref(),
        Some("session-1")
    );

    // The limit still held: the next refusal pauses a again, the attempt not counted.
    h.input(Input::Limit {
        task: "t1".into(),
        report: report(LimitStatus::Rejected, reset, None),
    });
    h.finish("t1", refused("session-1"));
    assert_eq!(state(&mut h, "a"), AccountStatus::Paused);
    assert_eq!(h.task("t1").attempts, 0);

    // An account that is not held back is answered as it is; an unknown one is not found.
    let (call, turn) = h.call(|call| Input::ResumeAccount {
        call,
        name: "b".into(),
    });
    let Some(Answer::Account(Ok(b))) = reply(&turn, call) else {
        panic!("no account in the answer")
    };
    assert_eq!(b.status, AccountStatus::Active);
    assert!(turn.batch.accounts.is_empty(), "nothing changed");
    assert!(account_events(&turn).is_empty());
    let (call, turn) = h.call(|call| Input::ResumeAccount {
        call,
        name: "c".into(),
    });
    let Some(Answer::Account(Err(e))) = reply(&turn, call) else {
        panic!("an unknown account was answered")
    };
    assert!(
        matches!(
            e,
            crate::engine::error::EngineError::NotFound {
                kind: "account",
                ..
            }
        ),
        "{e:?}"
    );
}
