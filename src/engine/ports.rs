//! The ports: the traits the engine calls and the types it hands them. `agent/` implements
//! [`Agent`] (how a task runs), `store/` implements [`Store`] (where state is kept). The
//! arrows point into the engine: nothing here knows a process, a protocol or a database.

use std::{future::Future, path::PathBuf, pin::Pin, sync::Arc, time::Duration};

use tokio::sync::{mpsc, oneshot};

use super::{
    actor::Msg,
    model::{
        account::{Account, LimitReport},
        approval::{Approval, ApprovalId, PermissionDenial, PermissionPolicy},
        event::{AgentOutput, Event},
        task::{AgentOptions, FailureClass, Isolation, Task, TaskId, TaskResult, TaskStatus},
    },
    schedule::{Schedule, ScheduleId},
    workflow::WorkflowInfo,
};

// ---- the agent port ---------------------------------------------------------------------

/// Everything an agent needs to run one task.
#[derive(Clone, Debug, PartialEq)]
pub struct RunRequest {
    pub task_id: TaskId,
    pub prompt: String,
    pub working_directory: PathBuf,
    pub model: Option<String>,
    pub allowed_tools: Vec<String>,
    pub max_turns: Option<u32>,
    pub permission_mode: Option<String>,
    /// Run this shell command instead of the agent.
    pub command: Option<String>,
    /// 1 for the first run, 2 for the first retry, ...
    pub attempt: u32,
    pub options: AgentOptions,
    pub isolation: Isolation,
    /// The instance it runs on.
    pub instance_id: String,
    /// The workflow the task belongs to, if any (for the run's log fields).
    pub workflow_id: Option<String>,
    /// The most this attempt may spend (`--max-budget-usd`): what is left of its task's,
    /// workflow's and swarm's budgets, the least of them. `None` when none is set.
    pub max_budget_usd: Option<f64>,
    /// A JSON Schema the answer must match (`--json-schema`).
    pub output_schema: Option<serde_json::Value>,
    /// The account its instance runs under: the agent sets that account's environment.
    pub account: String,
}

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Why a run was stopped from outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    Cancelled,
    TimedOut(Duration),
    InstanceTerminated,
    Shutdown,
}

/// Resolves when the run must stop (cancel, timeout, instance terminated, shutdown).
pub type StopSignal = BoxFuture<StopReason>;

/// How a run ended, as the agent judged it: the task's new state, what the run produced
/// and, when it did not complete, why (the failure class decides whether a retry may help).
#[derive(Clone, Debug, PartialEq)]
pub struct RunOutcome {
    pub status: TaskStatus,
    pub result: Option<TaskResult>,
    pub error: Option<String>,
    pub class: Option<FailureClass>,
}

impl RunOutcome {
    pub fn completed(result: TaskResult) -> Self {
        Self {
            status: TaskStatus::Completed,
            result: Some(result),
            error: None,
            class: None,
        }
    }

    pub fn failed(class: FailureClass, error: impl Into<String>) -> Self {
        Self {
            status: TaskStatus::Failed,
            result: None,
            error: Some(error.into()),
            class: Some(class),
        }
    }
}

/// What a run reports while it goes, in order, ending with `Finished`.
#[derive(Debug)]
pub enum RunEvent {
    /// The agent process is up.
    Started { pid: Option<u32> },
    /// One line of output.
    Output(Box<AgentOutput>),
    /// What the agent learnt of its account's usage limit.
    Limit(LimitReport),
    /// The agent retried an API call.
    ApiRetry,
    /// The run has been going for its task's timeout.
    TimedOut,
    /// The run is over.
    Finished(Box<RunOutcome>),
    /// The agent asks whether it may use a tool; the answer goes back on `reply`.
    Ask {
        request: Box<PermissionRequest>,
        reply: oneshot::Sender<PermissionDecision>,
    },
    /// The agent refused a tool call on its own (the CLI's `permission_denied`).
    Denied(Box<PermissionDenial>),
}

/// A tool call the agent asks permission for (Claude Code's `can_use_tool`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PermissionRequest {
    pub tool_name: String,
    /// The tool's input (a JSON object).
    pub input: serde_json::Value,
    /// The agent's `permission_suggestions`, as sent.
    pub suggestions: serde_json::Value,
    pub description: String,
    pub blocked_path: Option<String>,
    pub tool_use_id: String,
    /// The file the input names and the run's working directory, both with symlinks
    /// followed (as far as the path exists), when the agent could resolve them: path rules
    /// are held to both the written and the real path.
    pub resolved: Option<(PathBuf, PathBuf)>,
}

/// The answer to a [`PermissionRequest`].
#[derive(Clone, Debug, PartialEq)]
pub enum PermissionDecision {
    /// Run the tool, with this input instead of its own when set.
    Allow {
        updated_input: Option<serde_json::Value>,
    },
    /// Refuse it; the agent is told why.
    Deny { message: String },
}

/// Where an agent sends what it sees while a task runs. Sending waits when the engine is
/// busy, which slows a chatty agent down instead of buffering without bound.
#[derive(Clone)]
pub struct OutputSink {
    task_id: TaskId,
    tx: mpsc::Sender<Msg>,
}

impl OutputSink {
    pub(crate) fn new(task_id: TaskId, tx: mpsc::Sender<Msg>) -> Self {
        Self { task_id, tx }
    }

    /// A sink whose reports go to the returned receiver instead of an engine: a node that
    /// runs another node's task forwards them over its link.
    pub fn detached(task_id: TaskId) -> (Self, RunReports) {
        let (tx, rx) = mpsc::channel(64);
        (Self { task_id, tx }, RunReports(rx))
    }

    async fn send(&self, event: RunEvent) {
        // The engine gone means nobody listens any more: nothing to do.
        let _ = self.tx.send(Msg::Run(self.task_id.clone(), event)).await;
    }

    /// The agent process is up.
    pub async fn started(&self, pid: Option<u32>) {
        self.send(RunEvent::Started { pid }).await;
    }

    /// The account's usage limit, as the agent saw it: a refusal pauses the account.
    pub async fn limit(&self, report: LimitReport) {
        self.send(RunEvent::Limit(report)).await;
    }

    /// The agent retried an API call.
    pub async fn api_retry(&self) {
        self.send(RunEvent::ApiRetry).await;
    }

    /// One line of output.
    pub async fn output(&self, output: AgentOutput) {
        self.send(RunEvent::Output(Box::new(output))).await;
    }

    /// The run's timeout is up (sent by the engine's run wrapper).
    pub(crate) async fn timed_out(&self) {
        self.send(RunEvent::TimedOut).await;
    }

    /// Asks whether the run may use a tool, and waits for the answer: a rule's, or a
    /// person's (an approval), or the deadline's. A run the engine no longer hears is
    /// refused.
    pub async fn ask(&self, request: PermissionRequest) -> PermissionDecision {
        let (reply, answer) = oneshot::channel();
        let asked = RunEvent::Ask {
            request: Box::new(request),
            reply,
        };
        self.send(asked).await;
        answer.await.unwrap_or_else(|_| PermissionDecision::Deny {
            message: "claude-swarm stopped before the call was decided".into(),
        })
    }

    /// The agent refused a tool call on its own.
    pub async fn denied(&self, denial: PermissionDenial) {
        self.send(RunEvent::Denied(Box::new(denial))).await;
    }

    /// The run is over (sent by the engine's run wrapper, after `Agent::run` returns).
    pub(crate) async fn finished(&self, outcome: RunOutcome) {
        self.send(RunEvent::Finished(Box::new(outcome))).await;
    }
}

/// What a [`OutputSink::detached`] sink was told, in order.
pub struct RunReports(mpsc::Receiver<Msg>);

impl RunReports {
    /// The next report; `None` once every clone of the sink is gone.
    pub async fn next(&mut self) -> Option<RunEvent> {
        loop {
            match self.0.recv().await? {
                Msg::Run(_, event) => return Some(event),
                // Only runs' reports are sent on a detached sink.
                Msg::Call { .. } | Msg::Subscribe { .. } => continue,
            }
        }
    }
}

/// Runs tasks. The default is a Claude Code CLI process per instance.
pub trait Agent: Send + Sync + 'static {
    /// Runs one task to its end. Must return once `stop` resolves, after the work it
    /// started (a process group) is gone.
    fn run(&self, request: RunRequest, sink: OutputSink, stop: StopSignal)
    -> BoxFuture<RunOutcome>;

    /// What runs tasks, for status displays ("claude", "simulated").
    fn describe(&self) -> String;

    /// The instance is gone: release what the agent keeps for it (a long-lived process).
    fn retire(&self, _instance: &str) {}

    /// A new instance whose tasks run in `working_directory` unless they say otherwise:
    /// the agent may start a process ahead of the first task (it must not outlive
    /// [`Agent::retire`] or [`Agent::shutdown`]).
    fn prepare(&self, _instance: &str, _account: &str, _working_directory: PathBuf) {}

    /// The engine stops: end everything the agent keeps, and resolve once it is gone.
    fn shutdown(&self) -> BoxFuture<()> {
        Box::pin(async {})
    }

    /// End what is left of a run the store recorded as in flight when the server last
    /// stopped (its process group may have outlived a crash). Called at start, before the
    /// task runs again; done once it returns. The group is the agent's own only if it can
    /// tell: process ids are reused, so a group it cannot recognise is left alone.
    fn reap(&self, _leftover: &Leftover) {}

    /// What the run with process id `pid` uses now, if the agent can tell.
    fn usage(&self, _pid: u32) -> Option<ResourceUse> {
        None
    }
}

/// A run that was in flight when the server last stopped, as the store kept it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leftover {
    pub task_id: TaskId,
    /// The instance it ran on (that server's numbering).
    pub instance_id: Option<String>,
    /// The process group the agent reported when the run started.
    pub process_group: u32,
}

/// Resources of a running agent's process tree.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ResourceUse {
    pub rss_bytes: u64,
    pub cpu_seconds: f64,
    pub processes: u32,
}

// ---- the store port ---------------------------------------------------------------------

/// A task as the store keeps it: the task and its place in a `for_each`.
///
/// Queue semantics for a shared store: a record whose status is RUNNING is a claim of the
/// task by `task.instance_id` for attempt `task.attempts`; a terminal record completes or
/// fails that attempt, and a PENDING or QUEUED record with a higher `attempts` hands it
/// back. `attempts` is the fencing token: a store shared by several nodes accepts a write
/// about an attempt only while no later attempt has been claimed.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskRecord {
    /// Shared with the engine's copy and the event of the change.
    pub task: std::sync::Arc<Task>,
    /// The `for_each` task it is an item of.
    pub parent: Option<TaskId>,
}

/// A workflow as stored; what is left to run is derived from its tasks on load.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkflowRecord {
    pub info: WorkflowInfo,
    pub cancelling: bool,
    pub user_cancelled: bool,
    pub leaves: Vec<TaskId>,
}

/// Everything stored, in submission order.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub tasks: Vec<TaskRecord>,
    pub workflows: Vec<WorkflowRecord>,
    /// The most recent events, oldest first.
    pub events: Vec<Event>,
    /// Spent by the swarm so far (USD), kept across restarts.
    pub total_cost_usd: f64,
    /// Every approval, in the order they were asked.
    pub approvals: Vec<Approval>,
    /// Swarm-wide rules added at run time ("always"), besides the configured ones.
    pub swarm_policy: PermissionPolicy,
    /// Schedules, in creation order.
    pub schedules: Vec<Schedule>,
    /// Accounts' usage-limit state (a pause outlives a restart).
    pub accounts: Vec<Account>,
}

/// One turn's changes, stored all or nothing before anyone is answered (group commit).
#[derive(Debug, Default)]
pub struct Batch {
    /// Tasks that changed this turn, in the order they first changed.
    pub tasks: Vec<TaskRecord>,
    /// Tasks compacted away.
    pub deleted_tasks: Vec<TaskId>,
    pub workflows: Vec<WorkflowRecord>,
    pub events: Vec<Arc<Event>>,
    /// The swarm's total spending when it changed this turn.
    pub total_cost_usd: Option<f64>,
    /// Approvals that changed this turn.
    pub approvals: Vec<Approval>,
    /// Approvals gone with their compacted task.
    pub deleted_approvals: Vec<ApprovalId>,
    /// The swarm-wide rules added at run time, whole, when they changed this turn.
    pub swarm_policy: Option<PermissionPolicy>,
    /// Schedules created or changed this turn.
    pub schedules: Vec<Schedule>,
    pub deleted_schedules: Vec<ScheduleId>,
    /// Every account, when one changed this turn.
    pub accounts: Vec<Account>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
            && self.workflows.is_empty()
            && self.events.is_empty()
            && self.deleted_tasks.is_empty()
            && self.total_cost_usd.is_none()
            && self.approvals.is_empty()
            && self.deleted_approvals.is_empty()
            && self.swarm_policy.is_none()
            && self.schedules.is_empty()
            && self.deleted_schedules.is_empty()
            && self.accounts.is_empty()
    }
}

/// Why the store failed; once a commit fails the engine acknowledges nothing more.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The data file cannot be opened, read or written.
    #[error("data file {path}: {what}: {cause}")]
    File {
        path: String,
        what: &'static str,
        cause: String,
    },
    /// A stored row does not decode.
    #[error("data file {path}: a stored {kind} is unreadable: {cause}")]
    Row {
        path: String,
        kind: &'static str,
        cause: String,
    },
    /// The data was written by a newer claude-swarm.
    #[error("data file {path} has layout version {found}; this claude-swarm reads up to {known}")]
    Version {
        path: String,
        found: i64,
        known: i64,
    },
    /// The store's thread is gone.
    #[error("the store has stopped")]
    Stopped,
}

/// A durable home for the engine's state. Blocking: the engine calls it on a thread of
/// its own, never on the async runtime.
pub trait Store: Send + 'static {
    /// Everything stored so far (called once, at start).
    fn load(&mut self) -> Result<Snapshot, StoreError>;
    /// Stores a batch atomically: all of it or none.
    fn commit(&mut self, batch: &Batch) -> Result<(), StoreError>;
}
