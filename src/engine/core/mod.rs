//! The rules as a plain state machine. [`Core::handle`] takes one [`Input`] (a call, a run
//! starting, a line of output, a run ending, a timer) with the time it arrived, changes the
//! state and records [`Effect`]s (start this run, stop that one, arm a timer, answer that
//! caller); [`Core::end_turn`] hands them out together with the turn's [`Batch`] of changes
//! to store and events to publish. No tokio, no clock, no I/O: the actor executes the
//! effects, and the unit tests in `tests/` feed inputs and read effects.
//!
//! One file per family of transitions: `submit` (validation, ids, idempotency, listing),
//! `dispatch` (the ready queues, starting runs), `finish` (run results, retries, terminal
//! states and dependents), `fanout` (`for_each`), `cancel`, `workflows`, `instances`,
//! `budget` (budgets, shutdown, status), `accounts` (accounts' shares and usage limits:
//! pauses, lowered concurrency, refused runs handed back), `sessions` (workflow session
//! names), `restore`, `compact`, `approvals` (tool permissions: rules, approvals,
//! deadlines) and `schedules`.

mod accounts;
mod approvals;
mod budget;
mod cancel;
mod compact;
mod dispatch;
mod fanout;
mod finish;
mod instances;
mod messages;
mod pool;
mod queue;
mod restore;
mod schedules;
mod sessions;
mod submit;
mod table;
mod workflows;

#[cfg(test)]
mod tests;

use std::{
    collections::{HashMap, HashSet, VecDeque},
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime},
};

use super::{
    error::{EngineError, Result},
    model::{
        account::{Account, AccountSpec, AccountSummary},
        approval::PermissionPolicy,
        event::{Event, EventKind, Payload},
        instance::Instance,
        task::{Priority, Task, TaskId, TaskStatus, Usage, WorkflowId},
    },
    ports::{Batch, StopReason, TaskRecord, WorkflowRecord},
    schedule::{Schedule, ScheduleId},
};
use pool::Pool;
use queue::ReadyQueue;
use table::TaskTable;

pub use approvals::{ApprovalQuery, DEFAULT_APPROVAL_TIMEOUT, Decision};
pub use messages::{Answer, AskId, CallId, Effect, Input, Timer, Turn};
pub use queue::find_cycle;
pub use submit::{TaskPage, TaskQuery};

/// Settings the engine needs; filled from the server configuration.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Instances spawned at start.
    pub initial_instances: usize,
    /// Most live instances at once.
    pub max_instances: usize,
    /// Timeout of tasks that set none.
    pub default_timeout: Duration,
    /// Directory of tasks and instances that set none.
    pub working_directory: PathBuf,
    /// Events kept for replay.
    pub event_retention: usize,
    /// How far a live subscriber may fall behind before it is told it lost events.
    pub event_buffer: usize,
    /// Once this much is spent (USD), nothing more is dispatched.
    pub budget_usd: Option<f64>,
    /// When set, working directories outside it are refused.
    pub workspace_root: Option<PathBuf>,
    /// Finished tasks kept; older ones are compacted away (from memory and the store).
    pub task_retention: usize,
    /// Most unfinished (pending, queued or running) tasks at once; a submission that would
    /// pass it is refused whole (`for_each` items, made from accepted work, are not).
    pub max_queued_tasks: usize,
    /// Variables of [`GUARDED_ENV`](crate::engine::model::task::GUARDED_ENV) that a task's
    /// `options.env` may set all the same.
    pub allow_agent_env_override: Vec<String>,
    /// The swarm-wide tool permission rules (the configured ones).
    pub permissions: PermissionPolicy,
    /// How long an approval waits for a person before it is denied.
    pub approval_timeout: Duration,
    /// The accounts instances run under; none: one implicit account (`default`).
    pub accounts: Vec<AccountSpec>,
    /// Runs found in flight at start run again even with no retry left: with a shared
    /// store they were cut short by the loss of another node, not by a crash of their own.
    pub rerun_interrupted: bool,
    /// This node's name among the nodes of one database (its instances show it); empty on
    /// a server of its own.
    pub node: String,
}

/// Default of [`EngineConfig::max_queued_tasks`]: room for a workflow of the largest size
/// ([`MAX_TASKS`](crate::engine::workflow::MAX_TASKS)), about 160 MiB of memory at the
/// 1.64 KB a queued task takes (`BENCHMARKS.md`, figure 6).
const DEFAULT_MAX_QUEUED_TASKS: usize = crate::engine::workflow::MAX_TASKS;

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            initial_instances: 2,
            max_instances: 32,
            default_timeout: Duration::from_secs(30 * 60),
            working_directory: PathBuf::from("."),
            event_retention: 100_000,
            event_buffer: 16_384,
            budget_usd: None,
            workspace_root: None,
            task_retention: 100_000,
            max_queued_tasks: DEFAULT_MAX_QUEUED_TASKS,
            allow_agent_env_override: Vec::new(),
            permissions: PermissionPolicy::default(),
            approval_timeout: DEFAULT_APPROVAL_TIMEOUT,
            accounts: Vec::new(),
            rerun_interrupted: false,
            node: String::new(),
        }
    }
}

/// A snapshot of the whole swarm.
#[derive(Clone, Debug, PartialEq)]
pub struct SwarmStatus {
    pub version: &'static str,
    /// Filled in by the engine handle.
    pub uptime: Duration,
    /// Filled in by the engine handle.
    pub agent: String,
    pub instances_idle: u64,
    pub instances_busy: u64,
    pub instances_stopping: u64,
    pub max_instances: u64,
    /// Tasks per state, indexed by `TaskStatus::index`.
    pub tasks: [u64; TaskStatus::COUNT],
    /// Queued tasks per priority, indexed by `Priority::index`.
    pub queued: [u64; Priority::COUNT],
    pub workflows_running: u64,
    pub total_cost_usd: f64,
    /// Nothing is dispatched before this time, and why.
    pub paused: Option<(SystemTime, String)>,
    /// Nothing more is dispatched: the swarm's budget is spent.
    pub budget_spent: Option<String>,
    pub budget_usd: Option<f64>,
    pub usage: Usage,
    pub turns: u64,
    /// Each account's usage-limit state, in configuration order.
    pub accounts: Vec<AccountSummary>,
    /// Approvals waiting on a person.
    pub approvals_pending: u64,
    /// Live instances this node runs itself (not on a node attached to it).
    pub instances_local: u64,
}

/// A task and its place in the dependency graph.
struct Entry {
    /// Shared with the events and store records of its changes: a change makes a copy
    /// only while one of those still holds the last one (`Arc::make_mut`).
    task: Arc<Task>,
    /// Dependencies not yet completed.
    waiting_on: usize,
    /// Tasks that depend on this one.
    dependents: Vec<TaskId>,
    /// The `for_each` task this one is an item of.
    parent: Option<TaskId>,
    /// Changed this turn: in `dirty_tasks`, to be stored. A flag rather than a set of ids,
    /// so that ending a turn costs what changed, not the capacity a big batch left behind.
    dirty: bool,
}

/// Someone waiting for a running task's process to be gone.
#[derive(Debug)]
enum Waiter {
    Cancel(CallId),
    Terminate(CallId, String),
}

/// A run in flight.
#[derive(Debug, Default)]
struct Running {
    /// Why a stop was asked for (once is enough).
    stop: Option<StopReason>,
    waiters: Vec<Waiter>,
    /// Its account's usage limit refused it: it goes back to the queue when it ends.
    refused: bool,
    /// The node it ran on was lost: it goes back to the queue when it ends.
    lost: bool,
}

/// A workflow's record and what its progress needs.
struct Flow {
    record: WorkflowRecord,
    /// Tasks not yet terminal.
    remaining: usize,
    /// Calls waiting for a cancel to settle.
    cancel_waiters: Vec<CallId>,
}

/// The whole mutable state of the swarm.
pub struct Core {
    config: EngineConfig,
    /// The time of the input being handled.
    now: SystemTime,
    tasks: TaskTable,
    /// Task ids in submission order (listing and paging).
    order: Vec<TaskId>,
    queue: ReadyQueue,
    /// Ready tasks pinned to one instance.
    pinned: HashMap<String, ReadyQueue>,
    /// Arrival counter shared by all queues, for FIFO across them.
    arrivals: u64,
    pool: Pool,
    running: HashMap<TaskId, Running>,
    fan_outs: HashMap<TaskId, fanout::FanOutState>,
    /// Workflow session names: the id to resume, who holds each, who waits.
    sessions: HashMap<sessions::SessionKey, sessions::Session>,
    /// Idempotency key -> the task submitted with it.
    idempotency: HashMap<String, TaskId>,
    workflows: HashMap<WorkflowId, Flow>,
    workflow_order: Vec<WorkflowId>,
    /// Tasks per state.
    counts: [u64; TaskStatus::COUNT],
    /// Queued tasks per priority.
    queued: [u64; Priority::COUNT],
    total_cost_usd: f64,
    /// Tokens and turns of every run.
    total_usage: Usage,
    total_turns: u64,
    next_sequence: u64,
    shutdown_waiters: Vec<CallId>,
    shutting_down: bool,
    /// Accounts and their usage-limit state, in configuration order.
    accounts: Vec<Account>,
    /// Ready tasks that name an account, by account.
    account_queues: HashMap<String, ReadyQueue>,
    /// An account's state changed this turn: store them.
    accounts_changed: bool,
    /// Finished tasks, oldest first, for compaction.
    finished_tasks: VecDeque<TaskId>,
    /// Compacted tasks still named in `order`.
    tombstones: usize,
    /// State of the jitter of retry backoffs (xorshift).
    jitter: u64,
    schedules: HashMap<ScheduleId, Schedule>,
    /// Schedule ids in creation order.
    schedule_order: Vec<ScheduleId>,
    // ---- this turn's output ----
    effects: Vec<Effect>,
    events: Vec<Arc<Event>>,
    /// Tasks changed this turn, in the order they first changed.
    dirty_tasks: Vec<TaskId>,
    dirty_workflows: HashSet<WorkflowId>,
    deleted_tasks: Vec<TaskId>,
    cost_changed: bool,
    /// Approvals, and the questions of runs waiting on them.
    approvals: approvals::Book,
    dirty_schedules: HashSet<ScheduleId>,
    deleted_schedules: Vec<ScheduleId>,
}

impl Core {
    /// An empty swarm. `seed` makes the jitter of retry backoffs vary between runs.
    pub fn new(config: EngineConfig, seed: u64) -> Self {
        Self {
            now: SystemTime::UNIX_EPOCH,
            tasks: TaskTable::default(),
            order: Vec::new(),
            queue: ReadyQueue::default(),
            pinned: HashMap::new(),
            arrivals: 0,
            pool: Pool::default(),
            running: HashMap::new(),
            fan_outs: HashMap::new(),
            sessions: HashMap::new(),
            idempotency: HashMap::new(),
            workflows: HashMap::new(),
            workflow_order: Vec::new(),
            counts: [0; TaskStatus::COUNT],
            queued: [0; Priority::COUNT],
            total_cost_usd: 0.0,
            total_usage: Usage::default(),
            total_turns: 0,
            next_sequence: 1,
            shutdown_waiters: Vec::new(),
            shutting_down: false,
            accounts: accounts::configured(&config.accounts, config.initial_instances),
            account_queues: HashMap::new(),
            accounts_changed: false,
            finished_tasks: VecDeque::new(),
            tombstones: 0,
            jitter: seed | 1,
            schedules: HashMap::new(),
            schedule_order: Vec::new(),
            effects: Vec::new(),
            events: Vec::new(),
            dirty_tasks: Vec::new(),
            dirty_workflows: HashSet::new(),
            deleted_tasks: Vec::new(),
            cost_changed: false,
            approvals: approvals::Book::default(),
            dirty_schedules: HashSet::new(),
            deleted_schedules: Vec::new(),
            config,
        }
    }

    /// Handles one input that arrived at `now`.
    pub fn handle(&mut self, now: SystemTime, input: Input) {
        self.now = now;
        match input {
            Input::Submit { call, specs, batch } => {
                let value = self.submit(specs, batch, None);
                self.reply(call, Answer::Tasks(value));
            }
            Input::GetTask { call, id } => {
                let value = self.task(&id);
                self.reply(call, Answer::Task(value));
            }
            Input::ListTasks { call, query } => {
                let value = self.list_tasks(query);
                self.reply(call, Answer::TaskPage(value));
            }
            Input::CancelTask { call, id } => self.cancel_task(call, id),
            Input::Spawn {
                call,
                count,
                working_directory,
            } => {
                let value = self.spawn(count, working_directory);
                self.reply(call, Answer::Instances(value));
            }
            Input::ListInstances { call } => {
                let value = Ok(self.pool.live().cloned().collect());
                self.reply(call, Answer::Instances(value));
            }
            Input::GetInstance { call, id } => {
                let value = self.instance(&id).cloned();
                self.reply(call, Answer::Instance(value));
            }
            Input::Terminate { call, id } => self.terminate(call, id),
            Input::JoinNode { call, node, count } => {
                let value = self.join_node(&node, count);
                self.reply(call, Answer::Instances(Ok(value)));
            }
            Input::LeaveNode { call, node } => {
                self.leave_node(&node);
                self.reply(call, Answer::Done);
            }
            Input::Scale { call, target } => {
                let value = self.scale(target);
                self.reply(call, Answer::Instances(value));
            }
            Input::ExecuteWorkflow { call, plan } => {
                let value = self.execute_workflow(*plan);
                self.reply(call, Answer::Workflow(value));
            }
            Input::GetWorkflow { call, id } => {
                let value = self.flow(&id).map(|w| self.workflow_info(w));
                self.reply(call, Answer::Workflow(value));
            }
            Input::ListWorkflows { call } => {
                let all = self
                    .workflow_order
                    .iter()
                    .filter_map(|id| self.workflows.get(id))
                    .map(|w| self.workflow_info(w))
                    .collect();
                self.reply(call, Answer::Workflows(Ok(all)));
            }
            Input::CancelWorkflow { call, id } => self.cancel_workflow(call, id),
            Input::Status { call } => {
                let value = Ok(self.status());
                self.reply(call, Answer::Status(Box::new(value)));
            }
            Input::Shutdown { call } => self.shutdown(call),
            Input::RunStarted { task, pid } => self.run_started(&task, pid),
            Input::Output { task, output } => {
                if let Some(entry) = self.tasks.get(&task) {
                    let (instance, workflow) = (
                        entry.task.instance_id.clone(),
                        entry.task.workflow_id.clone(),
                    );
                    self.publish(
                        EventKind::TaskOutput,
                        Some(&task),
                        instance.as_deref(),
                        workflow.as_deref(),
                        Payload::Output(output),
                    );
                }
            }
            Input::RunFinished { task, outcome } => {
                let outcome = self.judge_denials(&task, *outcome);
                self.run_finished(&task, outcome);
                self.approvals_after_run(&task);
            }
            Input::Limit { task, report } => self.limit_reported(&task, report),
            Input::ApiRetry { task } => self.api_retried(&task),
            Input::TimerFired(timer) => self.timer_fired(timer),
            Input::PermissionAsked { task, ask, request } => {
                self.permission_asked(task, ask, *request);
            }
            Input::PermissionDenied { task, denial } => self.agent_denied(&task, *denial),
            Input::ListApprovals { call, query } => {
                let value = Ok(self.list_approvals(&query));
                self.reply(call, Answer::Approvals(value));
            }
            Input::GetApproval { call, id } => {
                let value = self.get_approval(&id);
                self.reply(call, Answer::Approval(value));
            }
            Input::DecideApproval { call, id, decision } => {
                let value = self.decide_approval(&id, *decision);
                self.reply(call, Answer::Approval(value));
            }
            Input::CreateSchedule { call, spec } => {
                let value = self.create_schedule(*spec);
                self.reply(call, Answer::Schedule(value));
            }
            Input::GetSchedule { call, id } => {
                let value = self.schedule(&id).cloned();
                self.reply(call, Answer::Schedule(value));
            }
            Input::ListSchedules { call } => {
                let value = Ok(self.list_schedules());
                self.reply(call, Answer::Schedules(value));
            }
            Input::PauseSchedule { call, id, paused } => {
                let value = self.set_schedule_paused(&id, paused);
                self.reply(call, Answer::Schedule(value));
            }
            Input::DeleteSchedule { call, id } => {
                let value = self.delete_schedule(&id);
                self.reply(call, Answer::Schedule(value));
            }
            Input::TriggerSchedule { call, id } => self.trigger_schedule(call, &id),
            Input::ResumeAccount { call, name } => {
                let value = self.resume_account(&name);
                self.reply(call, Answer::Account(value));
            }
        }
    }

    /// The effects recorded so far, for an actor that carries out runs and timers as they
    /// come (answers among them still wait for the turn's commit).
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// Ends a turn: compacts, and hands out what to store and what is left to do.
    pub fn end_turn(&mut self) -> Turn {
        self.compact();
        let mut tasks = Vec::with_capacity(self.dirty_tasks.len());
        for id in self.dirty_tasks.drain(..) {
            if let Some(e) = self.tasks.get_mut(&id)
                && std::mem::take(&mut e.dirty)
            {
                tasks.push(TaskRecord {
                    task: e.task.clone(),
                    parent: e.parent.clone(),
                });
            }
        }
        let workflows = self
            .dirty_workflows
            .drain()
            .filter_map(|id| self.workflows.get(&id))
            .map(|f| f.record.clone())
            .collect();
        let (approvals, deleted_approvals, swarm_policy) = self.approval_changes();
        let batch = Batch {
            approvals,
            deleted_approvals,
            swarm_policy,
            tasks,
            deleted_tasks: std::mem::take(&mut self.deleted_tasks),
            workflows,
            events: std::mem::take(&mut self.events),
            total_cost_usd: std::mem::take(&mut self.cost_changed).then_some(self.total_cost_usd),
            schedules: self
                .dirty_schedules
                .drain()
                .filter_map(|id| self.schedules.get(&id))
                .cloned()
                .collect(),
            deleted_schedules: std::mem::take(&mut self.deleted_schedules),
            accounts: if std::mem::take(&mut self.accounts_changed) {
                self.accounts.clone()
            } else {
                Vec::new()
            },
        };
        Turn {
            batch,
            effects: std::mem::take(&mut self.effects),
        }
    }

    fn timer_fired(&mut self, timer: Timer) {
        match timer {
            Timer::Retry(task) => {
                let ready = self
                    .tasks
                    .get(&task)
                    .is_some_and(|e| e.task.status == TaskStatus::Pending && e.waiting_on == 0);
                if ready {
                    self.enqueue(&task);
                    self.dispatch();
                }
            }
            Timer::Timeout(task) => {
                let timeout = self
                    .tasks
                    .get(&task)
                    .map(|e| e.task.spec.timeout.unwrap_or(self.config.default_timeout));
                if let Some(after) = timeout {
                    self.stop_running(&task, StopReason::TimedOut(after), None);
                }
            }
            Timer::ApprovalExpiry(id) => self.approval_expired(&id),
            Timer::Schedule(id) => self.schedule_due(&id),
            Timer::Account(name) => self.account_timer(&name),
        }
    }

    // ---- shared helpers --------------------------------------------------------------

    fn reply(&mut self, call: CallId, answer: Answer) {
        self.effects.push(Effect::Reply {
            call,
            answer: Box::new(answer),
        });
    }

    fn entry(&self, id: &str) -> Result<&Entry> {
        self.tasks
            .get(id)
            .ok_or_else(|| EngineError::not_found("task", id))
    }

    fn task(&self, id: &str) -> Result<Task> {
        self.entry(id).map(|e| Task::clone(&e.task))
    }

    fn instance(&self, id: &str) -> Result<&Instance> {
        self.pool
            .get(id)
            .ok_or_else(|| EngineError::not_found("instance", id))
    }

    fn flow(&self, id: &str) -> Result<&Flow> {
        self.workflows
            .get(id)
            .ok_or_else(|| EngineError::not_found("workflow", id))
    }

    /// `name (id)`, or the id when the task has no name of its own.
    fn describe(&self, id: &str) -> String {
        match self.tasks.get(id).map(|e| e.task.name()) {
            Some(name) if name != id => format!("{name} ({id})"),
            _ => id.to_owned(),
        }
    }

    /// Moves a known task to `status`, keeping the counters right.
    fn set_status(&mut self, id: &str, status: TaskStatus) {
        let Some(entry) = self.tasks.get_mut(id) else {
            return;
        };
        let task = Arc::make_mut(&mut entry.task);
        let priority = task.spec.priority.index();
        if task.status == TaskStatus::Queued {
            self.queued[priority] -= 1;
        }
        if status == TaskStatus::Queued {
            self.queued[priority] += 1;
        }
        self.counts[task.status.index()] -= 1;
        self.counts[status.index()] += 1;
        task.status = status;
    }

    /// The task's own id, shared (a copy of its own when no task has it).
    fn shared_id(&self, id: &str) -> TaskId {
        self.tasks
            .get(id)
            .map_or_else(|| id.into(), |e| e.task.id.clone())
    }

    fn mark_dirty(&mut self, id: &str) {
        if let Some(entry) = self.tasks.get_mut(id)
            && !std::mem::replace(&mut entry.dirty, true)
        {
            self.dirty_tasks.push(entry.task.id.clone());
        }
    }

    fn publish(
        &mut self,
        kind: EventKind,
        task_id: Option<&str>,
        instance_id: Option<&str>,
        workflow_id: Option<&str>,
        payload: Payload,
    ) {
        self.publish_owned(
            kind,
            task_id.map(TaskId::from),
            instance_id.map(str::to_owned),
            workflow_id.map(str::to_owned),
            payload,
        );
    }

    fn publish_owned(
        &mut self,
        kind: EventKind,
        task_id: Option<TaskId>,
        instance_id: Option<String>,
        workflow_id: Option<String>,
        payload: Payload,
    ) {
        let event = Event {
            sequence: self.next_sequence,
            time: self.now,
            kind,
            task_id,
            instance_id,
            workflow_id,
            payload,
            encoded: Default::default(),
        };
        self.next_sequence += 1;
        self.events.push(Arc::new(event));
    }

    /// The task changed: store it this turn and tell subscribers.
    fn publish_task(&mut self, kind: EventKind, id: &str) {
        self.mark_dirty(id);
        let Some(task) = self.tasks.get(id).map(|e| Arc::clone(&e.task)) else {
            return;
        };
        let (task_id, instance, workflow) = (
            Some(task.id.clone()),
            task.instance_id.clone(),
            task.workflow_id.clone(),
        );
        self.publish_owned(kind, task_id, instance, workflow, Payload::Task(task));
    }
}
