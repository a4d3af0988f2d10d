//! Start-up from a store's snapshot, and compaction of finished tasks.

use super::*;
use crate::engine::ports::TaskRecord;

fn record(id: &str, status: TaskStatus, attempts: u32, retries: u32) -> TaskRecord {
    let mut task = Task::new(
        id.into(),
        TaskSpec {
            retries,
            name: id.into(),
            ..spec(id)
        },
        None,
        SystemTime::UNIX_EPOCH,
    );
    task.status = status;
    task.attempts = attempts;
    TaskRecord {
        task: task.into(),
        parent: None,
    }
}

#[test]
fn work_in_flight_comes_back_after_a_crash() {
    let snapshot = Snapshot {
        tasks: vec![
            record("done", TaskStatus::Completed, 1, 0),
            record("was-running-may-retry", TaskStatus::Running, 1, 1),
            record("was-running-no-retry", TaskStatus::Running, 1, 0),
            record("queued-1", TaskStatus::Queued, 0, 0),
            record("queued-2", TaskStatus::Queued, 0, 0),
            TaskRecord {
                task: Task {
                    spec: depending("waits", &["queued-1"]).into(),
                    ..Task::clone(&record("waits", TaskStatus::Pending, 0, 0).task)
                }
                .into(),
                parent: None,
            },
        ],
        total_cost_usd: 0.25,
        ..Snapshot::default()
    };
    let config = EngineConfig {
        initial_instances: 0,
        ..EngineConfig::default()
    };
    let mut h = Harness::boot(config, snapshot);
    let failed = h.task("was-running-no-retry");
    assert_eq!(failed.status, TaskStatus::Failed);
    assert!(failed.error.unwrap().starts_with("interrupted"));
    assert_eq!(h.status("was-running-may-retry"), TaskStatus::Queued);
    assert_eq!(h.status("waits"), TaskStatus::Pending);
    let (_, turn) = h.call(|call| Input::Spawn {
        call,
        count: 1,
        working_directory: None,
    });
    // The restored queue keeps its order: the retried task was queued first.
    assert_eq!(started(&turn), ["was-running-may-retry"]);
    let order: Vec<TaskId> = ["was-running-may-retry", "queued-1", "queued-2"]
        .iter()
        .flat_map(|id| started(&h.complete(id)))
        .collect();
    assert_eq!(order, ["queued-1", "queued-2", "waits"]);
    let (call, turn) = h.call(|call| Input::Status { call });
    let Some(Answer::Status(status)) = reply(&turn, call) else {
        panic!()
    };
    assert_eq!(status.as_ref().as_ref().unwrap().total_cost_usd, 0.25);
}

#[test]
fn with_a_shared_store_a_run_cut_short_by_a_lost_node_runs_again() {
    let snapshot = Snapshot {
        tasks: vec![record("was-running-no-retry", TaskStatus::Running, 1, 0)],
        ..Snapshot::default()
    };
    let config = EngineConfig {
        initial_instances: 0,
        rerun_interrupted: true,
        ..EngineConfig::default()
    };
    let mut h = Harness::boot(config, snapshot);
    let task = h.task("was-running-no-retry");
    assert_eq!(task.status, TaskStatus::Queued);
    assert!(task.error.unwrap().contains("interrupted"));
    let (_, turn) = h.call(|call| Input::Spawn {
        call,
        count: 1,
        working_directory: None,
    });
    assert_eq!(started(&turn), ["was-running-no-retry"]);
    h.complete("was-running-no-retry");
    let task = h.task("was-running-no-retry");
    assert_eq!((task.status, task.attempts), (TaskStatus::Completed, 2));
}

#[test]
fn events_number_on_from_the_stored_ones() {
    let stored = crate::engine::Event {
        sequence: 41,
        time: SystemTime::UNIX_EPOCH,
        kind: crate::engine::EventKind::TaskSubmitted,
        task_id: None,
        instance_id: None,
        workflow_id: None,
        payload: crate::engine::Payload::Output(Box::default()),
        encoded: Default::default(),
    };
    let snapshot = Snapshot {
        events: vec![stored],
        ..Snapshot::default()
    };
    let mut h = Harness::boot(EngineConfig::default(), snapshot);
    let turn = h.submit(vec![spec("a")]);
    assert!(turn.batch.events[0].sequence > 41);
}

#[test]
fn finished_tasks_past_the_retention_are_compacted_away() {
    let mut h = Harness::with(EngineConfig {
        initial_instances: 1,
        task_retention: 2,
        ..EngineConfig::default()
    });
    h.submit(vec![spec("t1"), spec("t2"), spec("t3")]);
    h.complete("t1");
    h.complete("t2");
    let turn = h.complete("t3");
    assert_eq!(turn.batch.deleted_tasks, ["t1"]);
    let (call, turn) = h.call(|call| Input::GetTask {
        call,
        id: "t1".into(),
    });
    assert!(matches!(reply(&turn, call), Some(Answer::Task(Err(_)))));
    assert_eq!(h.status("t2"), TaskStatus::Completed);
}

#[test]
fn a_run_started_records_its_process_group_until_it_ends() {
    let mut h = Harness::new(1);
    h.submit(vec![spec("a")]);
    let turn = h.input(Input::RunStarted {
        task: "a".into(),
        pid: Some(4242),
    });
    // Stored with the task, in the turn that learned it.
    assert_eq!(turn.batch.tasks.len(), 1);
    assert_eq!(turn.batch.tasks[0].task.process_group, Some(4242));
    let turn = h.complete("a");
    let stored = turn.batch.tasks.iter().find(|r| r.task.id == "a").unwrap();
    assert_eq!(stored.task.process_group, None);
}

#[test]
fn what_a_crash_left_running_is_reaped_before_anything_runs_again() {
    let with_group = |id: &str, retries: u32, group: Option<u32>| {
        let mut record = record(id, TaskStatus::Running, 1, retries);
        let task = std::sync::Arc::make_mut(&mut record.task);
        task.instance_id = Some("inst-0003".into());
        task.process_group = group;
        record
    };
    let snapshot = Snapshot {
        tasks: vec![
            with_group("retried", 1, Some(4242)),
            with_group("failed", 0, Some(4343)),
            with_group("never-started", 1, None),
        ],
        ..Snapshot::default()
    };
    let h = Harness::boot(
        EngineConfig {
            initial_instances: 2,
            ..EngineConfig::default()
        },
        snapshot,
    );
    let order: Vec<String> = h
        .booted
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::Reap(leftover) => Some(format!(
                "reap {} {} {:?}",
                leftover.task_id, leftover.process_group, leftover.instance_id
            )),
            Effect::StartRun { request, .. } => Some(format!("start {}", request.task_id)),
            _ => None,
        })
        .collect();
    assert_eq!(
        order,
        [
            "reap retried 4242 Some(\"inst-0003\")",
            "reap failed 4343 Some(\"inst-0003\")",
            "start retried",
            "start never-started",
        ]
    );
    // Reaped once: the group is forgotten in the boot turn's records.
    assert!(
        h.booted
            .batch
            .tasks
            .iter()
            .all(|r| r.task.process_group.is_none())
    );
}
