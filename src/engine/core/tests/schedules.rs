//! Schedules on the harness's clock: firing on time (and not before), fresh ids for each
//! run, the overlap policy, pausing, triggering by hand, and the missed-run policy at start.

use super::*;
use crate::engine::error::EngineError;
use crate::engine::schedule::{
    Cron, MissedPolicy, OverlapPolicy, Schedule, ScheduleSpec, ScheduleTarget,
};

/// The harness starts at 1_800_000_000 s, a multiple of ten minutes.
const TEN_MINUTES: Duration = Duration::from_secs(600);

fn every_ten_minutes(target: ScheduleTarget) -> ScheduleSpec {
    ScheduleSpec {
        name: "nightly".into(),
        cron: Cron::parse("*/10 * * * *", "UTC").unwrap(),
        target,
        missed: MissedPolicy::Skip,
        overlap: OverlapPolicy::Skip,
        paused: false,
    }
}

fn two_step_plan() -> ScheduleTarget {
    ScheduleTarget::Workflow(Box::new(plan(vec![
        spec("plan"),
        depending("build", &["plan"]),
    ])))
}

fn schedule_answer(turn: &Turn, call: CallId) -> Result<Schedule> {
    match reply(turn, call) {
        Some(Answer::Schedule(s)) => s.clone(),
        other => panic!("no schedule answer: {other:?}"),
    }
}

impl Harness {
    fn create_schedule(&mut self, spec: ScheduleSpec) -> (Schedule, Turn) {
        let (call, turn) = self.call(|call| Input::CreateSchedule {
            call,
            spec: Box::new(spec),
        });
        (schedule_answer(&turn, call).expect("created"), turn)
    }

    fn get_schedule(&mut self, id: &str) -> Schedule {
        let (call, turn) = self.call(|call| Input::GetSchedule {
            call,
            id: id.into(),
        });
        schedule_answer(&turn, call).expect("found")
    }

    fn workflows(&mut self) -> Vec<WorkflowInfo> {
        let (call, turn) = self.call(|call| Input::ListWorkflows { call });
        match reply(&turn, call) {
            Some(Answer::Workflows(Ok(all))) => all.clone(),
            other => panic!("no workflows: {other:?}"),
        }
    }

    /// Moves the clock to `at` and fires the schedule's timer.
    fn fire_schedule_at(&mut self, id: &str, at: SystemTime) -> Turn {
        self.now = at;
        self.fire(Timer::Schedule(id.into()))
    }
}

fn schedule_timer(turn: &Turn, id: &str) -> Option<Duration> {
    timers(turn)
        .into_iter()
        .find(|(t, _)| *t == Timer::Schedule(id.into()))
        .map(|(_, after)| after)
}

#[test]
fn a_schedule_fires_at_its_time_and_not_before() {
    let mut h = Harness::new(2);
    let start = h.now;
    let (schedule, turn) = h.create_schedule(every_ten_minutes(two_step_plan()));
    assert_eq!(schedule.next_fire_at, Some(start + TEN_MINUTES));
    // Armed at most a minute ahead, so a clock that jumps is noticed.
    assert_eq!(
        schedule_timer(&turn, &schedule.id),
        Some(Duration::from_secs(60))
    );
    // Fired early: nothing runs, the timer is armed again for what is left (capped).
    let early = h.fire_schedule_at(&schedule.id, start + Duration::from_secs(590));
    assert!(started(&early).is_empty());
    assert_eq!(
        schedule_timer(&early, &schedule.id),
        Some(Duration::from_secs(10))
    );
    assert!(h.workflows().is_empty());
    let due = h.fire_schedule_at(&schedule.id, start + TEN_MINUTES);
    let runs = h.workflows();
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(run.schedule_id.as_deref(), Some(schedule.id.as_str()));
    assert_eq!(run.name, "test");
    assert_eq!(run.task_ids.len(), 2);
    // The plan's own ids are replaced, and the dependency follows them.
    assert!(!run.task_ids.contains(&"plan".into()));
    assert_eq!(started(&due), [run.task_ids[0].clone()]);
    let build = h.task(&run.task_ids[1]);
    assert_eq!(build.spec.depends_on, [run.task_ids[0].clone()]);
    let after = h.get_schedule(&schedule.id);
    assert_eq!(after.runs, 1);
    assert_eq!(after.last_fired_at, Some(start + TEN_MINUTES));
    assert_eq!(after.last_workflow_id.as_ref(), Some(&run.id));
    assert_eq!(after.next_fire_at, Some(start + 2 * TEN_MINUTES));
    // The change is stored with the turn.
    assert_eq!(due.batch.schedules.len(), 1);
}

#[test]
fn a_run_due_while_the_last_one_goes_is_skipped_or_allowed() {
    let mut h = Harness::new(2);
    let start = h.now;
    let (skip, _) = h.create_schedule(every_ten_minutes(two_step_plan()));
    let (allow, _) = h.create_schedule(ScheduleSpec {
        overlap: OverlapPolicy::Allow,
        ..every_ten_minutes(two_step_plan())
    });
    for id in [&skip.id, &allow.id] {
        h.fire_schedule_at(id, start + TEN_MINUTES);
    }
    // Nothing has finished when both are due again.
    for id in [&skip.id, &allow.id] {
        h.fire_schedule_at(id, start + 2 * TEN_MINUTES);
    }
    let skipped = h.get_schedule(&skip.id);
    assert_eq!((skipped.runs, skipped.skipped_runs), (1, 1));
    assert_eq!(skipped.next_fire_at, Some(start + 3 * TEN_MINUTES));
    let allowed = h.get_schedule(&allow.id);
    assert_eq!((allowed.runs, allowed.skipped_runs), (2, 0));
    // By hand, too, the skip policy refuses while the run goes.
    let (call, turn) = h.call(|call| Input::TriggerSchedule {
        call,
        id: skip.id.clone(),
    });
    match reply(&turn, call) {
        Some(Answer::Workflow(Err(EngineError::FailedPrecondition(m)))) => {
            assert!(m.contains("still running"), "{m}");
        }
        other => panic!("refused: {other:?}"),
    }
    // Once the run is over, the next time runs again.
    let run = h.get_schedule(&skip.id).last_workflow_id.unwrap();
    let tasks = h
        .workflows()
        .into_iter()
        .find(|w| w.id == run)
        .unwrap()
        .task_ids;
    h.complete(&tasks[0]);
    h.complete(&tasks[1]);
    h.fire_schedule_at(&skip.id, start + 3 * TEN_MINUTES);
    assert_eq!(h.get_schedule(&skip.id).runs, 2);
}

#[test]
fn a_paused_schedule_waits_and_a_trigger_runs_it_anyway() {
    let mut h = Harness::new(1);
    let start = h.now;
    let task = TaskSpec::new("check the backups");
    let (schedule, _) = h.create_schedule(ScheduleSpec {
        paused: true,
        ..every_ten_minutes(ScheduleTarget::Task(Box::new(task)))
    });
    assert_eq!(schedule.next_fire_at, None);
    h.fire_schedule_at(&schedule.id, start + TEN_MINUTES);
    assert!(h.workflows().is_empty());
    let (call, turn) = h.call(|call| Input::TriggerSchedule {
        call,
        id: schedule.id.clone(),
    });
    let run = match reply(&turn, call) {
        Some(Answer::Workflow(Ok(run))) => run.clone(),
        other => panic!("a run: {other:?}"),
    };
    // One task, as a workflow named after the schedule.
    assert_eq!(run.name, "nightly");
    assert_eq!(run.task_ids.len(), 1);
    assert_eq!(h.task(&run.task_ids[0]).spec.prompt, "check the backups");
    // Resumed at 35 minutes: from the next time after now, not the ones it slept through.
    h.advance(Duration::from_secs(25 * 60));
    let (call, turn) = h.call(|call| Input::PauseSchedule {
        call,
        id: schedule.id.clone(),
        paused: false,
    });
    let resumed = schedule_answer(&turn, call).unwrap();
    assert_eq!(resumed.next_fire_at, Some(start + 4 * TEN_MINUTES));
    assert!(schedule_timer(&turn, &schedule.id).is_some());
}

#[test]
fn a_deleted_schedule_is_gone_and_its_timer_does_nothing() {
    let mut h = Harness::new(1);
    let start = h.now;
    let (schedule, _) = h.create_schedule(every_ten_minutes(two_step_plan()));
    let (call, turn) = h.call(|call| Input::DeleteSchedule {
        call,
        id: schedule.id.clone(),
    });
    schedule_answer(&turn, call).unwrap();
    assert_eq!(
        turn.batch.deleted_schedules,
        std::slice::from_ref(&schedule.id)
    );
    let fired = h.fire_schedule_at(&schedule.id, start + TEN_MINUTES);
    assert!(started(&fired).is_empty() && h.workflows().is_empty());
    let (call, turn) = h.call(|call| Input::GetSchedule {
        call,
        id: schedule.id.clone(),
    });
    assert!(matches!(
        schedule_answer(&turn, call),
        Err(EngineError::NotFound { .. })
    ));
}

#[test]
fn a_schedule_that_could_never_run_is_refused() {
    let mut h = Harness::new(1);
    let mut bad = TaskSpec::new("");
    bad.name = "empty".into();
    let (call, turn) = h.call(|call| Input::CreateSchedule {
        call,
        spec: Box::new(every_ten_minutes(ScheduleTarget::Task(Box::new(bad)))),
    });
    let error = schedule_answer(&turn, call).unwrap_err();
    assert_eq!(error.field(), Some("task.prompt"), "{error}");
    assert!(turn.batch.schedules.is_empty());
}

/// A schedule as the store kept it, due an hour before the restart.
fn missed(h: &Harness, missed: MissedPolicy) -> Schedule {
    let spec = ScheduleSpec {
        missed,
        ..every_ten_minutes(two_step_plan())
    };
    Schedule {
        next_fire_at: Some(h.now - Duration::from_secs(3600)),
        ..Schedule::new(
            format!("s-{missed}"),
            spec,
            h.now - Duration::from_secs(86_400),
        )
    }
}

#[test]
fn runs_missed_while_down_run_once_or_are_skipped() {
    let probe = Harness::new(0);
    let snapshot = Snapshot {
        schedules: vec![
            missed(&probe, MissedPolicy::RunOnce),
            missed(&probe, MissedPolicy::Skip),
        ],
        ..Snapshot::default()
    };
    let mut h = Harness::boot(
        EngineConfig {
            initial_instances: 1,
            ..EngineConfig::default()
        },
        snapshot,
    );
    let now = h.now;
    // Six times were missed; one run for run_once, none for skip.
    let runs = h.workflows();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].schedule_id.as_deref(), Some("s-run_once"));
    let once = h.get_schedule("s-run_once");
    assert_eq!((once.runs, once.last_fired_at), (1, Some(now)));
    let skip = h.get_schedule("s-skip");
    assert_eq!((skip.runs, skip.skipped_runs), (0, 1));
    for s in [once, skip] {
        assert_eq!(s.next_fire_at, Some(now + TEN_MINUTES));
    }
    // Both are stored as they are now, and armed.
    assert_eq!(h.booted.batch.schedules.len(), 2);
    assert!(schedule_timer(&h.booted, "s-skip").is_some());
}
