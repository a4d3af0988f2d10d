//! The core's rules, one by one: inputs in, effects out, no runtime, no clock (the harness
//! moves time by hand). Files by family, like the core's own.

mod accounts;
mod approvals;
mod budgets;
mod cancel;
mod dispatch;
mod finish;
mod instances;
mod restore;
mod schedules;
mod sessions;
mod shutdown;
mod structured;
mod submit;
mod workflows;

use std::time::{Duration, SystemTime};

use super::{Answer, CallId, Core, Effect, EngineConfig, Input, Timer, Turn};
use crate::engine::{
    error::Result,
    model::task::{FailureClass, Priority, Task, TaskId, TaskResult, TaskSpec, TaskStatus},
    ports::{RunOutcome, Snapshot, StopReason},
    workflow::{WorkflowInfo, WorkflowPlan},
};

/// A core with a hand-moved clock; every input is its own turn.
struct Harness {
    core: Core,
    now: SystemTime,
    next_call: CallId,
    /// The turn of the start-up (instances, what the snapshot held).
    booted: Turn,
}

impl Harness {
    fn new(instances: usize) -> Self {
        Self::with(EngineConfig {
            initial_instances: instances,
            max_instances: 8,
            ..EngineConfig::default()
        })
    }

    fn with(config: EngineConfig) -> Self {
        Self::boot(config, Snapshot::default())
    }

    fn boot(config: EngineConfig, snapshot: Snapshot) -> Self {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut core = Core::new(config, 42);
        core.boot(now, snapshot);
        let booted = core.end_turn();
        Self {
            core,
            now,
            next_call: 1,
            booted,
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    /// Handles one input as a turn of its own.
    fn input(&mut self, input: Input) -> Turn {
        self.core.handle(self.now, input);
        self.core.end_turn()
    }

    fn call(&mut self, input: impl FnOnce(CallId) -> Input) -> (CallId, Turn) {
        let call = self.next_call;
        self.next_call += 1;
        (call, self.input(input(call)))
    }

    fn submit_all(&mut self, specs: Vec<TaskSpec>) -> (Result<Vec<Task>>, Turn) {
        let (call, turn) = self.call(|call| Input::Submit {
            call,
            specs,
            batch: true,
        });
        match reply(&turn, call) {
            Some(Answer::Tasks(tasks)) => (tasks.clone(), turn),
            other => panic!("no answer to the submission: {other:?}"),
        }
    }

    /// Submits tasks that must be accepted; returns the turn.
    fn submit(&mut self, specs: Vec<TaskSpec>) -> Turn {
        let (tasks, turn) = self.submit_all(specs);
        tasks.expect("accepted");
        turn
    }

    fn task(&mut self, id: &str) -> Task {
        let (call, turn) = self.call(|call| Input::GetTask {
            call,
            id: id.into(),
        });
        match reply(&turn, call) {
            Some(Answer::Task(Ok(task))) => task.clone(),
            other => panic!("no task {id}: {other:?}"),
        }
    }

    fn status(&mut self, id: &str) -> TaskStatus {
        self.task(id).status
    }

    fn finish(&mut self, id: &str, outcome: RunOutcome) -> Turn {
        self.input(Input::RunFinished {
            task: id.into(),
            outcome: Box::new(outcome),
        })
    }

    fn complete(&mut self, id: &str) -> Turn {
        self.finish(id, ok(&format!("result of {id}")))
    }

    fn fire(&mut self, timer: Timer) -> Turn {
        self.input(Input::TimerFired(timer))
    }

    fn execute(&mut self, plan: WorkflowPlan) -> (Result<WorkflowInfo>, Turn) {
        let (call, turn) = self.call(|call| Input::ExecuteWorkflow {
            call,
            plan: Box::new(plan),
        });
        match reply(&turn, call) {
            Some(Answer::Workflow(info)) => (info.clone(), turn),
            other => panic!("no answer to the workflow: {other:?}"),
        }
    }
}

/// A spec with a chosen id.
fn spec(id: &str) -> TaskSpec {
    TaskSpec {
        id: Some(id.into()),
        ..TaskSpec::new(format!("prompt of {id}"))
    }
}

fn with_priority(id: &str, priority: Priority) -> TaskSpec {
    TaskSpec {
        priority,
        ..spec(id)
    }
}

fn depending(id: &str, on: &[&str]) -> TaskSpec {
    TaskSpec {
        depends_on: on.iter().map(|d| TaskId::from(*d)).collect(),
        ..spec(id)
    }
}

fn ok(text: &str) -> RunOutcome {
    RunOutcome::completed(TaskResult {
        text: text.into(),
        exit_code: Some(0),
        cost_usd: 0.0,
        ..TaskResult::default()
    })
}

fn failure(class: FailureClass) -> RunOutcome {
    RunOutcome::failed(class, format!("it failed ({class})"))
}

fn costing(text: &str, cost_usd: f64) -> RunOutcome {
    RunOutcome::completed(TaskResult {
        text: text.into(),
        cost_usd,
        exit_code: Some(0),
        ..TaskResult::default()
    })
}

/// A workflow of these tasks, no pins, no budget; leaves are the tasks nothing depends on.
fn plan(tasks: Vec<TaskSpec>) -> WorkflowPlan {
    let leaves = tasks
        .iter()
        .filter(|t| {
            !tasks
                .iter()
                .any(|o| o.depends_on.contains(t.id.as_ref().unwrap()))
        })
        .filter_map(|t| t.id.clone())
        .collect();
    WorkflowPlan {
        name: "test".into(),
        description: String::new(),
        instances: None,
        pins: vec![None; tasks.len()],
        tasks,
        leaves,
        budget_usd: None,
        permissions: Default::default(),
    }
}

/// The ids of the runs a turn started, in order.
fn started(turn: &Turn) -> Vec<TaskId> {
    turn.effects
        .iter()
        .filter_map(|e| match e {
            Effect::StartRun { request, .. } => Some(request.task_id.clone()),
            _ => None,
        })
        .collect()
}

/// The stops a turn asked for.
fn stops(turn: &Turn) -> Vec<(TaskId, StopReason)> {
    turn.effects
        .iter()
        .filter_map(|e| match e {
            Effect::StopRun { task, reason } => Some((task.clone(), *reason)),
            _ => None,
        })
        .collect()
}

/// The timers a turn armed.
fn timers(turn: &Turn) -> Vec<(Timer, Duration)> {
    turn.effects
        .iter()
        .filter_map(|e| match e {
            Effect::ArmTimer { after, timer } => Some((timer.clone(), *after)),
            _ => None,
        })
        .collect()
}

fn reply(turn: &Turn, call: CallId) -> Option<&Answer> {
    turn.effects.iter().find_map(|e| match e {
        Effect::Reply { call: c, answer } if *c == call => Some(answer.as_ref()),
        _ => None,
    })
}
