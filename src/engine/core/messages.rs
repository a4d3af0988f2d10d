//! What goes in and out of the core: inputs (calls, run reports, timers), the effects the
//! actor executes, and the answers to callers.

use std::{path::PathBuf, time::Duration};

use super::{ApprovalQuery, Decision, SwarmStatus, TaskPage, TaskQuery};
use crate::engine::{
    error::Result,
    model::{
        account::{AccountSummary, LimitReport},
        approval::{Approval, ApprovalId, PermissionDenial},
        event::AgentOutput,
        instance::Instance,
        task::{Task, TaskId, TaskSpec, WorkflowId},
    },
    ports::{
        Batch, Leftover, PermissionDecision, PermissionRequest, RunOutcome, RunRequest, StopReason,
    },
    schedule::{Schedule, ScheduleId, ScheduleSpec},
    workflow::{WorkflowInfo, WorkflowPlan},
};

/// Names a caller waiting for an answer; chosen by the actor, unique among pending calls.
pub type CallId = u64;

/// Names a run's question about a tool call; chosen by the actor, unique among open ones.
pub type AskId = u64;

/// What arrives at the core.
#[derive(Debug)]
pub enum Input {
    Submit {
        call: CallId,
        specs: Vec<TaskSpec>,
        /// Field names in errors are `tasks[i].field` (else the spec's own).
        batch: bool,
    },
    GetTask {
        call: CallId,
        id: TaskId,
    },
    ListTasks {
        call: CallId,
        query: TaskQuery,
    },
    CancelTask {
        call: CallId,
        id: TaskId,
    },
    Spawn {
        call: CallId,
        count: u32,
        working_directory: Option<PathBuf>,
    },
    ListInstances {
        call: CallId,
    },
    GetInstance {
        call: CallId,
        id: String,
    },
    Terminate {
        call: CallId,
        id: String,
    },
    Scale {
        call: CallId,
        target: i64,
    },
    /// Another node's machine runs `count` instances for this swarm: answered with them.
    JoinNode {
        call: CallId,
        node: String,
        count: u32,
    },
    /// That node is gone (its link ended or went silent): its instances go, and its runs,
    /// once they end, go back to the queue.
    LeaveNode {
        call: CallId,
        node: String,
    },
    ExecuteWorkflow {
        call: CallId,
        plan: Box<WorkflowPlan>,
    },
    GetWorkflow {
        call: CallId,
        id: WorkflowId,
    },
    ListWorkflows {
        call: CallId,
    },
    CancelWorkflow {
        call: CallId,
        id: WorkflowId,
    },
    Status {
        call: CallId,
    },
    /// Stop every run and dispatch nothing more; answered once no run is left.
    Shutdown {
        call: CallId,
    },
    /// A run's agent process is up.
    RunStarted {
        task: TaskId,
        pid: Option<u32>,
    },
    /// A line of a run's output.
    Output {
        task: TaskId,
        output: Box<AgentOutput>,
    },
    /// A run is over.
    RunFinished {
        task: TaskId,
        outcome: Box<RunOutcome>,
    },
    /// A run reported its account's usage limit.
    Limit {
        task: TaskId,
        report: LimitReport,
    },
    /// A run's CLI retried an API call (`system/api_retry`).
    ApiRetry {
        task: TaskId,
    },
    /// A timer armed by an earlier [`Effect::ArmTimer`] is due.
    TimerFired(Timer),
    /// A run asks whether it may use a tool; answered by [`Effect::AnswerPermission`].
    PermissionAsked {
        task: TaskId,
        ask: AskId,
        request: Box<PermissionRequest>,
    },
    /// A run's agent refused a tool call on its own.
    PermissionDenied {
        task: TaskId,
        denial: Box<PermissionDenial>,
    },
    ListApprovals {
        call: CallId,
        query: ApprovalQuery,
    },
    GetApproval {
        call: CallId,
        id: ApprovalId,
    },
    DecideApproval {
        call: CallId,
        id: ApprovalId,
        decision: Box<Decision>,
    },
    CreateSchedule {
        call: CallId,
        spec: Box<ScheduleSpec>,
    },
    GetSchedule {
        call: CallId,
        id: ScheduleId,
    },
    ListSchedules {
        call: CallId,
    },
    /// Pause (`paused`) or resume a schedule.
    PauseSchedule {
        call: CallId,
        id: ScheduleId,
        paused: bool,
    },
    DeleteSchedule {
        call: CallId,
        id: ScheduleId,
    },
    /// Run a schedule now; answered with the run's workflow.
    TriggerSchedule {
        call: CallId,
        id: ScheduleId,
    },
    /// Lift an account's pause or limit now (a person knows it is over early).
    ResumeAccount {
        call: CallId,
        name: String,
    },
}

/// What the core asks the actor to do.
#[derive(Debug, PartialEq)]
pub enum Effect {
    /// Start a run; it reports back with `RunStarted`, `Output` and one `RunFinished`.
    StartRun {
        request: Box<RunRequest>,
        /// After this long the run reports `TimerFired(Timeout)`; the timer lives and dies
        /// with the run, so a finished run leaves none behind.
        timeout: Duration,
    },
    /// Stop a run; it still ends with `RunFinished`.
    StopRun { task: TaskId, reason: StopReason },
    /// Fire `timer` after `after` (replacing the same timer if armed).
    ArmTimer { after: Duration, timer: Timer },
    /// The instance is gone: the agent releases what it keeps for it.
    RetireInstance(String),
    /// End what is left of a run from before a restart; done before the next effect.
    Reap(Leftover),
    /// Answer a caller (once the turn's changes are stored).
    Reply { call: CallId, answer: Box<Answer> },
    /// A new instance: the agent may start its first process ahead of its first task, in
    /// the directory its tasks run in by default.
    PrepareInstance {
        instance: String,
        /// The account whose environment its processes get.
        account: String,
        working_directory: PathBuf,
    },
    /// Answer a run's question about a tool call.
    AnswerPermission {
        ask: AskId,
        decision: PermissionDecision,
    },
    /// Hold (or let go) the run's timeout: time spent waiting on a person does not count.
    HoldTimeout { task: TaskId, held: bool },
}

/// The timers the core uses; one of each kind per key at most.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Timer {
    /// A failed task's backoff is over: queue it again.
    Retry(TaskId),
    /// A running task's timeout (fired by its run, see [`Effect::StartRun`]).
    Timeout(TaskId),
    /// An approval's deadline.
    ApprovalExpiry(ApprovalId),
    /// A schedule's next fire time may have come.
    Schedule(ScheduleId),
    /// An account's pause or lowered concurrency may be over.
    Account(String),
}

/// An answer to a call, by the call's kind. It lives for one call (boxed in its effect),
/// so its variants are not boxed.
#[derive(Debug, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum Answer {
    Task(Result<Task>),
    Tasks(Result<Vec<Task>>),
    TaskPage(Result<TaskPage>),
    Instance(Result<Instance>),
    Instances(Result<Vec<Instance>>),
    Workflow(Result<WorkflowInfo>),
    Workflows(Result<Vec<WorkflowInfo>>),
    Status(Box<Result<SwarmStatus>>),
    Approval(Result<Approval>),
    Approvals(Result<Vec<Approval>>),
    Done,
    Schedule(Result<Schedule>),
    Schedules(Result<Vec<Schedule>>),
    Account(Result<AccountSummary>),
}

/// A turn's output: the changes to store, then the effects to execute.
#[derive(Debug, Default)]
pub struct Turn {
    pub batch: Batch,
    pub effects: Vec<Effect>,
}
