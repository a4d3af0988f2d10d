//! The scheduler: one task owns every piece of mutable state (tasks, queue, pool,
//! workflows, events) and reacts to messages; [`Engine`] is the cheap, cloneable handle
//! everyone else holds. Nothing polls: submissions, run ends, cancels and timeouts each
//! arrive as a message and dispatching happens right there.

use std::{
    cmp::Reverse,
    collections::{HashMap, HashSet, VecDeque},
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use tokio::sync::{mpsc, oneshot};

use crate::store::{Batch, Snapshot, Store, StoreError, StoreWriter, StoredTask, StoredWorkflow};

use super::{
    error::{EngineError, Result},
    events::{AgentOutput, EventFilter, EventKind, EventLog, Payload, Subscription},
    pool::{Instance, InstanceStatus, Pool},
    queue::{ReadyQueue, find_cycle},
    run::{Agent, RunRequest},
    task::{
        Attempt, FailureClass, FailurePolicy, Priority, RunOutcome, StopReason, Task, TaskId,
        TaskResult, TaskSpec, TaskStatus, Usage, WorkflowId,
    },
    workflow::{
        FanOutSource, MAX_ITEMS, Template, WorkflowInfo, WorkflowPlan, WorkflowStatus, items_of,
        shell_quote,
    },
};

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
    /// A long-lived instance whose process tree uses more memory (bytes) after a task is
    /// restarted (resuming its session) before the next one.
    pub instance_memory_limit: Option<u64>,
    /// Finished tasks kept; older ones are compacted away (from memory and the store).
    pub task_retention: usize,
}

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
            instance_memory_limit: None,
            task_retention: 100_000,
        }
    }
}

/// A page of `list_tasks`.
#[derive(Clone, Debug, Default)]
pub struct TaskQuery {
    pub statuses: Vec<TaskStatus>,
    pub priorities: Vec<Priority>,
    pub workflow_id: Option<WorkflowId>,
    /// Page size (clamped to 1..=1000; 0 means 100).
    pub limit: usize,
    /// Where the previous page ended.
    pub page_token: Option<String>,
}

#[derive(Clone, Debug)]
pub struct TaskPage {
    pub tasks: Vec<Task>,
    pub next_page_token: Option<String>,
}

/// A snapshot of the whole swarm.
#[derive(Clone, Debug)]
pub struct SwarmStatus {
    pub version: &'static str,
    pub uptime: Duration,
    pub agent: String,
    pub instances_idle: u64,
    pub instances_busy: u64,
    pub instances_stopping: u64,
    pub max_instances: u64,
    /// Tasks per state, indexed by `TaskStatus::index`.
    pub tasks: [u64; 7],
    /// Queued tasks per priority, indexed by `Priority::index`.
    pub queued: [u64; 4],
    pub workflows_running: u64,
    pub total_cost_usd: f64,
    /// Nothing is dispatched before this time, and why.
    pub paused: Option<(SystemTime, String)>,
    /// Nothing more is dispatched: the swarm's budget is spent.
    pub budget_spent: Option<String>,
    pub budget_usd: Option<f64>,
    pub usage: Usage,
    pub turns: u64,
}

type Reply<T> = oneshot::Sender<Result<T>>;

/// How a task ends: its id, terminal state, result and reason.
type Ending = (TaskId, TaskStatus, Option<TaskResult>, Option<String>);

/// `base` doubled for each attempt after the first, at most five minutes, with ±20% jitter
/// so that tasks failing together do not retry together.
fn backoff(base: Duration, attempt: u32) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let doubled = base.saturating_mul(1 << attempt.saturating_sub(1).min(16));
    let capped = doubled.min(Duration::from_secs(300));
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let jitter = 0.8 + (random % 1000) as f64 / 2500.0;
    capped.mul_f64(jitter)
}

enum Msg {
    Submit {
        specs: Vec<TaskSpec>,
        batch: bool,
        reply: Reply<Vec<Task>>,
    },
    GetTask {
        id: TaskId,
        reply: Reply<Task>,
    },
    ListTasks {
        query: TaskQuery,
        reply: Reply<TaskPage>,
    },
    CancelTask {
        id: TaskId,
        reply: Reply<Task>,
    },
    Spawn {
        count: u32,
        working_directory: Option<PathBuf>,
        reply: Reply<Vec<Instance>>,
    },
    ListInstances {
        reply: Reply<Vec<Instance>>,
    },
    GetInstance {
        id: String,
        reply: Reply<Instance>,
    },
    Terminate {
        id: String,
        reply: Reply<Instance>,
    },
    Scale {
        target: i64,
        reply: Reply<Vec<Instance>>,
    },
    ExecuteWorkflow {
        plan: WorkflowPlan,
        reply: Reply<WorkflowInfo>,
    },
    GetWorkflow {
        id: WorkflowId,
        reply: Reply<WorkflowInfo>,
    },
    ListWorkflows {
        reply: Reply<Vec<WorkflowInfo>>,
    },
    CancelWorkflow {
        id: WorkflowId,
        reply: Reply<WorkflowInfo>,
    },
    Status {
        reply: Reply<SwarmStatus>,
    },
    Subscribe {
        after: Option<u64>,
        filter: EventFilter,
        reply: Reply<Subscription>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
    // From runners.
    Started {
        task_id: TaskId,
        pid: Option<u32>,
    },
    Output {
        task_id: TaskId,
        output: AgentOutput,
    },
    Finished {
        task_id: TaskId,
        outcome: Box<RunOutcome>,
    },
    /// A failed task's backoff is over.
    Retry {
        task_id: TaskId,
    },
    /// The agent reported a rate limit that lifts at `until`.
    RateLimited {
        until: SystemTime,
    },
    /// A dispatch pause may be over.
    Resume,
}

/// Where an agent sends what it sees while a task runs.
#[derive(Clone)]
pub struct OutputSink {
    task_id: TaskId,
    tx: mpsc::Sender<Msg>,
}

impl OutputSink {
    /// The agent process is up.
    pub async fn started(&self, pid: Option<u32>) {
        let _ = self
            .tx
            .send(Msg::Started {
                task_id: self.task_id.clone(),
                pid,
            })
            .await;
    }

    /// The account is rate limited until `until`: nothing more is dispatched before then.
    pub async fn rate_limited(&self, until: SystemTime) {
        let _ = self.tx.send(Msg::RateLimited { until }).await;
    }

    /// One line of output. Waits when the scheduler is busy, which slows a chatty agent
    /// down instead of buffering without bound.
    pub async fn output(&self, output: AgentOutput) {
        let _ = self
            .tx
            .send(Msg::Output {
                task_id: self.task_id.clone(),
                output,
            })
            .await;
    }
}

/// The handle to the engine. Cheap to clone; every surface (gRPC, REST, CLI) uses it.
#[derive(Clone)]
pub struct Engine {
    tx: mpsc::Sender<Msg>,
    /// To end what the agent keeps (long-lived processes) at shutdown.
    agent: Arc<dyn Agent>,
    started: Instant,
}

impl Engine {
    /// Starts the scheduler task on the current tokio runtime.
    pub fn start(config: EngineConfig, agent: Arc<dyn Agent>) -> Self {
        let (tx, rx) = mpsc::channel(4096);
        let state = State::new(config, agent, tx.downgrade());
        Self::launch(state, tx, rx, None)
    }

    /// Starts the engine on a durable store: what it holds comes back first (queued and
    /// pending tasks with their priorities and dependencies, workflows, the event log;
    /// tasks that were running are retried or failed as interrupted), and from then on
    /// every change is stored before it is acknowledged.
    pub fn start_durable(
        config: EngineConfig,
        agent: Arc<dyn Agent>,
        mut store: Box<dyn Store>,
    ) -> Result<Self, StoreError> {
        let snapshot = store.load()?;
        let (tx, rx) = mpsc::channel(4096);
        let mut state = State::new(config, agent, tx.downgrade());
        state.store = Some(StoreWriter::spawn(store));
        Ok(Self::launch(state, tx, rx, Some(snapshot)))
    }

    fn launch(
        mut state: State,
        tx: mpsc::Sender<Msg>,
        rx: mpsc::Receiver<Msg>,
        snapshot: Option<Snapshot>,
    ) -> Self {
        // Stored events first, so new ones number on from them; then the instances, so
        // restored tasks pinned to one find it.
        let snapshot = snapshot.map(|mut s| {
            state.events.restore(std::mem::take(&mut s.events));
            s
        });
        for _ in 0..state
            .config
            .initial_instances
            .min(state.config.max_instances)
        {
            state.spawn_instance(None);
        }
        if let Some(snapshot) = snapshot {
            state.restore(snapshot);
        }
        let agent = state.agent.clone();
        tokio::spawn(state.run(rx));
        Self {
            tx,
            agent,
            started: Instant::now(),
        }
    }

    async fn call<T>(&self, msg: impl FnOnce(Reply<T>) -> Msg) -> Result<T> {
        let (reply, rx) = oneshot::channel();
        let gone = || EngineError::Unavailable("the engine has stopped".into());
        self.tx.send(msg(reply)).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// Submits one task. Field names in errors are the spec's (`prompt`).
    pub async fn submit(&self, spec: TaskSpec) -> Result<Task> {
        let mut tasks = self
            .call(|reply| Msg::Submit {
                specs: vec![spec],
                batch: false,
                reply,
            })
            .await?;
        Ok(tasks.remove(0))
    }

    /// Submits tasks all or nothing; they may depend on each other by client-chosen id.
    /// Field names in errors are `tasks[i].field`.
    pub async fn submit_batch(&self, specs: Vec<TaskSpec>) -> Result<Vec<Task>> {
        self.call(|reply| Msg::Submit {
            specs,
            batch: true,
            reply,
        })
        .await
    }

    pub async fn task(&self, id: TaskId) -> Result<Task> {
        self.call(|reply| Msg::GetTask { id, reply }).await
    }

    pub async fn list_tasks(&self, query: TaskQuery) -> Result<TaskPage> {
        self.call(|reply| Msg::ListTasks { query, reply }).await
    }

    /// Cancels a task; for a running one, answers once its process group is gone.
    pub async fn cancel_task(&self, id: TaskId) -> Result<Task> {
        self.call(|reply| Msg::CancelTask { id, reply }).await
    }

    pub async fn spawn_instances(
        &self,
        count: u32,
        working_directory: Option<PathBuf>,
    ) -> Result<Vec<Instance>> {
        self.call(|reply| Msg::Spawn {
            count,
            working_directory,
            reply,
        })
        .await
    }

    /// Live instances in creation order.
    pub async fn instances(&self) -> Result<Vec<Instance>> {
        self.call(|reply| Msg::ListInstances { reply }).await
    }

    pub async fn instance(&self, id: String) -> Result<Instance> {
        self.call(|reply| Msg::GetInstance { id, reply }).await
    }

    /// Stops an instance now; a task running on it fails. Answers once its process is gone.
    pub async fn terminate_instance(&self, id: String) -> Result<Instance> {
        self.call(|reply| Msg::Terminate { id, reply }).await
    }

    /// Spawns or stops instances to reach `target` live ones; returns the live instances.
    pub async fn scale(&self, target: i64) -> Result<Vec<Instance>> {
        self.call(|reply| Msg::Scale { target, reply }).await
    }

    pub async fn execute_workflow(&self, plan: WorkflowPlan) -> Result<WorkflowInfo> {
        self.call(|reply| Msg::ExecuteWorkflow { plan, reply })
            .await
    }

    pub async fn workflow(&self, id: WorkflowId) -> Result<WorkflowInfo> {
        self.call(|reply| Msg::GetWorkflow { id, reply }).await
    }

    pub async fn workflows(&self) -> Result<Vec<WorkflowInfo>> {
        self.call(|reply| Msg::ListWorkflows { reply }).await
    }

    /// Cancels every unfinished task of the workflow; answers once none is running.
    pub async fn cancel_workflow(&self, id: WorkflowId) -> Result<WorkflowInfo> {
        self.call(|reply| Msg::CancelWorkflow { id, reply }).await
    }

    pub async fn status(&self) -> Result<SwarmStatus> {
        let mut status = self.call(|reply| Msg::Status { reply }).await?;
        status.uptime = self.started.elapsed();
        Ok(status)
    }

    /// Events after `after` (see [`EventLog::subscribe`]), then live ones.
    pub async fn subscribe(&self, after: Option<u64>, filter: EventFilter) -> Result<Subscription> {
        self.call(|reply| Msg::Subscribe {
            after,
            filter,
            reply,
        })
        .await
    }

    /// Stops every running task (their processes are stopped, the tasks end CANCELLED)
    /// and stops dispatching. Waits at most `limit`.
    pub async fn shutdown(&self, limit: Duration) {
        let (reply, rx) = oneshot::channel();
        let stopped = async {
            if self.tx.send(Msg::Shutdown { reply }).await.is_ok() {
                let _ = rx.await;
            }
            self.agent.shutdown().await;
        };
        let _ = tokio::time::timeout(limit, stopped).await;
    }
}

/// A task and its place in the dependency graph.
struct Entry {
    task: Task,
    /// Dependencies not yet completed.
    waiting_on: usize,
    /// Tasks that depend on this one.
    dependents: Vec<TaskId>,
    /// The `for_each` task this one is an item of.
    parent: Option<TaskId>,
}

/// A `for_each` task's items, released at most `max_parallel` at a time.
struct FanOutState {
    children: Vec<TaskId>,
    /// Children released so far (`children[..next]`).
    next: usize,
    /// Released children not yet terminal.
    active: usize,
    /// Children terminal so far.
    done: usize,
    max_parallel: usize,
}

/// Someone waiting for a running task's process to be gone.
enum Waiter {
    Cancel(Reply<Task>),
    Terminate(Reply<Instance>),
}

struct Running {
    /// Taken when the stop is sent.
    stop: Option<oneshot::Sender<StopReason>>,
    waiters: Vec<Waiter>,
}

struct WorkflowRecord {
    info: WorkflowInfo,
    /// Tasks not yet terminal.
    remaining: usize,
    /// Unfinished tasks are being cancelled (by a user, or a fail-fast failure).
    cancelling: bool,
    /// A user cancelled it (the end state is CANCELLED, not FAILED).
    user_cancelled: bool,
    /// Tasks nothing depends on: their results are the outputs.
    leaves: Vec<TaskId>,
    cancel_waiters: Vec<Reply<WorkflowInfo>>,
}

struct State {
    config: EngineConfig,
    agent: Arc<dyn Agent>,
    /// For runners; weak so the scheduler ends when every handle is gone.
    tx: mpsc::WeakSender<Msg>,
    tasks: HashMap<TaskId, Entry>,
    /// Task ids in submission order (listing and paging).
    order: Vec<TaskId>,
    queue: ReadyQueue,
    /// Ready tasks pinned to one instance.
    pinned: HashMap<String, ReadyQueue>,
    /// Arrival counter shared by all queues, for FIFO across them.
    arrivals: u64,
    pool: Pool,
    running: HashMap<TaskId, Running>,
    fan_outs: HashMap<TaskId, FanOutState>,
    /// Idempotency key -> the task submitted with it.
    idempotency: HashMap<String, TaskId>,
    workflows: HashMap<WorkflowId, WorkflowRecord>,
    workflow_order: Vec<WorkflowId>,
    /// Tasks per state.
    counts: [u64; 7],
    /// Queued tasks per priority.
    queued: [u64; 4],
    total_cost_usd: f64,
    /// Tokens and turns of every run.
    total_usage: Usage,
    total_turns: u64,
    events: EventLog,
    shutdown_waiters: Vec<oneshot::Sender<()>>,
    shutting_down: bool,
    /// Where state is kept across restarts; `None` keeps it in memory only.
    store: Option<StoreWriter>,
    /// Tasks changed this turn, in the order they first changed.
    dirty_tasks: Vec<TaskId>,
    dirty_task_set: HashSet<TaskId>,
    dirty_workflows: HashSet<WorkflowId>,
    /// Answers held back until this turn's changes are stored.
    outbox: Vec<Deferred>,
    /// Set once a commit failed: nothing more is acknowledged.
    store_failed: Option<StoreError>,
    /// No dispatching before this time (a rate limit), and why.
    paused_until: Option<(SystemTime, String)>,
    /// Finished tasks, oldest first, for compaction.
    finished_tasks: VecDeque<TaskId>,
    /// Compacted tasks still named in `order`.
    tombstones: usize,
    /// Compacted this turn, to delete from the store.
    deleted_tasks: Vec<TaskId>,
}

/// An answer waiting for its turn to be stored; given the store's error if that failed.
type Deferred = Box<dyn FnOnce(Option<&StoreError>) + Send>;

/// Messages handled in one turn at most, before their changes are stored together.
const MAX_TURN: usize = 1024;

impl State {
    fn new(config: EngineConfig, agent: Arc<dyn Agent>, tx: mpsc::WeakSender<Msg>) -> Self {
        let events = EventLog::new(config.event_retention, config.event_buffer);
        Self {
            config,
            agent,
            tx,
            tasks: HashMap::new(),
            order: Vec::new(),
            queue: ReadyQueue::default(),
            pinned: HashMap::new(),
            arrivals: 0,
            pool: Pool::default(),
            running: HashMap::new(),
            fan_outs: HashMap::new(),
            idempotency: HashMap::new(),
            workflows: HashMap::new(),
            workflow_order: Vec::new(),
            counts: [0; 7],
            queued: [0; 4],
            total_cost_usd: 0.0,
            total_usage: Usage::default(),
            total_turns: 0,
            events,
            shutdown_waiters: Vec::new(),
            shutting_down: false,
            store: None,
            dirty_tasks: Vec::new(),
            dirty_task_set: HashSet::new(),
            dirty_workflows: HashSet::new(),
            outbox: Vec::new(),
            store_failed: None,
            paused_until: None,
            finished_tasks: VecDeque::new(),
            tombstones: 0,
            deleted_tasks: Vec::new(),
        }
    }

    /// Handles what has arrived (up to [`MAX_TURN`] messages), stores the turn's changes
    /// in one batch (group commit), then answers and sends the turn's events.
    async fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        while let Some(msg) = rx.recv().await {
            self.handle(msg);
            for _ in 1..MAX_TURN {
                match rx.try_recv() {
                    Ok(msg) => self.handle(msg),
                    Err(_) => break,
                }
            }
            self.compact();
            self.commit().await;
        }
    }

    async fn commit(&mut self) {
        let events = self.events.take_unsent();
        let tasks: Vec<StoredTask> = self
            .dirty_tasks
            .drain(..)
            .filter_map(|id| self.tasks.get(&id))
            .map(|e| StoredTask {
                task: e.task.clone(),
                parent: e.parent.clone(),
            })
            .collect();
        self.dirty_task_set.clear();
        let workflows: Vec<StoredWorkflow> = self
            .dirty_workflows
            .drain()
            .filter_map(|id| self.workflows.get(&id))
            .map(|r| StoredWorkflow {
                info: r.info.clone(),
                cancelling: r.cancelling,
                user_cancelled: r.user_cancelled,
                leaves: r.leaves.clone(),
            })
            .collect();
        if let (Some(store), None) = (&self.store, &self.store_failed) {
            let batch = Batch {
                deleted_tasks: std::mem::take(&mut self.deleted_tasks),
                tasks,
                workflows,
                events: events.clone(),
            };
            if !batch.is_empty()
                && let Err(error) = store.commit(batch).await
            {
                tracing::error!(cause = %error, "storing state failed; refusing further changes");
                self.store_failed = Some(error);
            }
        }
        self.events.broadcast(events);
        let failed = self.store_failed.clone();
        for reply in self.outbox.drain(..) {
            reply(failed.as_ref());
        }
    }

    /// Answers once this turn's changes are stored (or with UNAVAILABLE if they cannot be).
    fn respond<T: Send + 'static>(&mut self, reply: Reply<T>, value: Result<T>) {
        self.outbox
            .push(Box::new(move |failed: Option<&StoreError>| {
                let value = match failed {
                    Some(error) => Err(EngineError::Unavailable(format!(
                        "the change could not be stored: {error}"
                    ))),
                    None => value,
                };
                let _ = reply.send(value);
            }));
    }

    /// Rebuilds the state from a store's snapshot. Runs before the first message.
    fn restore(&mut self, snapshot: Snapshot) {
        let mut by_parent: HashMap<TaskId, Vec<TaskId>> = HashMap::new();
        for stored in snapshot.tasks {
            let id = stored.task.id.clone();
            self.counts[stored.task.status.index()] += 1;
            if stored.task.status == TaskStatus::Queued {
                self.queued[stored.task.spec.priority.index()] += 1;
            }
            if let Some(parent) = &stored.parent {
                by_parent
                    .entry(parent.clone())
                    .or_default()
                    .push(id.clone());
            }
            self.order.push(id.clone());
            if let Some(key) = &stored.task.spec.idempotency_key {
                self.idempotency.insert(key.clone(), id.clone());
            }
            let entry = Entry {
                task: stored.task,
                waiting_on: 0,
                dependents: Vec::new(),
                parent: stored.parent,
            };
            self.tasks.insert(id, entry);
        }
        for stored in snapshot.workflows {
            let id = stored.info.id.clone();
            let remaining = stored
                .info
                .task_ids
                .iter()
                .filter(|t| {
                    self.tasks
                        .get(*t)
                        .is_some_and(|e| !e.task.status.is_terminal())
                })
                .count();
            let record = WorkflowRecord {
                info: stored.info,
                remaining,
                cancelling: stored.cancelling,
                user_cancelled: stored.user_cancelled,
                leaves: stored.leaves,
                cancel_waiters: Vec::new(),
            };
            self.workflow_order.push(id.clone());
            self.workflows.insert(id, record);
        }
        self.finished_tasks = self
            .order
            .iter()
            .filter(|id| self.tasks[*id].task.status.is_terminal())
            .cloned()
            .collect();
        // Dependencies of unfinished tasks.
        let open: Vec<TaskId> = self
            .order
            .iter()
            .filter(|id| !self.tasks[*id].task.status.is_terminal())
            .cloned()
            .collect();
        let mut doomed = Vec::new();
        for id in &open {
            for dep in self.tasks[id].task.spec.depends_on.clone() {
                match self.tasks.get_mut(&dep).map(|e| e.task.status) {
                    // Compacted away or completed: satisfied.
                    None | Some(TaskStatus::Completed) => {}
                    Some(status) if status.is_terminal() => {
                        doomed.push((
                            id.clone(),
                            format!("dependency {dep} was {}", status.as_str()),
                        ));
                    }
                    Some(_) => {
                        self.tasks
                            .get_mut(&dep)
                            .expect("present")
                            .dependents
                            .push(id.clone());
                        self.tasks.get_mut(id).expect("present").waiting_on += 1;
                    }
                }
            }
        }
        for (id, reason) in doomed {
            self.finish(&id, TaskStatus::Skipped, None, Some(reason));
        }
        // Work that was in flight: queued tasks queue again in their order; tasks that
        // were running are retried if they may be, else failed as interrupted.
        for id in open {
            let task = &self.tasks[&id].task;
            match task.status {
                TaskStatus::Running
                    if by_parent.contains_key(&id) || task.spec.fan_out.is_some() =>
                {
                    let children = by_parent.remove(&id).unwrap_or_default();
                    let statuses: Vec<TaskStatus> =
                        children.iter().map(|c| self.tasks[c].task.status).collect();
                    let next = statuses
                        .iter()
                        .filter(|s| **s != TaskStatus::Pending)
                        .count();
                    let done = statuses.iter().filter(|s| s.is_terminal()).count();
                    let max_parallel = task
                        .spec
                        .fan_out
                        .as_ref()
                        .map_or(usize::MAX, |f| f.max_parallel);
                    let total = children.len();
                    self.fan_outs.insert(
                        id.clone(),
                        FanOutState {
                            children,
                            next,
                            active: next - done,
                            done,
                            max_parallel,
                        },
                    );
                    if done == total {
                        // Every item ended before the crash; end the parent now.
                        if let Some(state) = self.fan_outs.get_mut(&id) {
                            state.done -= 1;
                            state.active += 1;
                        }
                        let last = self.fan_outs[&id].children.last().cloned();
                        if let Some(ending) = last.and_then(|child| self.child_done(&id, &child)) {
                            let (id, status, result, error) = ending;
                            self.finish(&id, status, result, error);
                        }
                    }
                }
                TaskStatus::Running if task.attempts <= task.spec.retries => {
                    let attempt = task.attempts;
                    self.set_status(&id, TaskStatus::Pending);
                    let task = &mut self.tasks.get_mut(&id).expect("present").task;
                    task.error = Some(format!(
                        "attempt {attempt} was interrupted by a restart; retrying"
                    ));
                    task.instance_id = None;
                    self.enqueue(&id);
                }
                TaskStatus::Running => {
                    let reason = "interrupted: the server stopped while it ran".to_string();
                    self.finish(&id, TaskStatus::Failed, None, Some(reason));
                }
                TaskStatus::Queued => {
                    self.set_status(&id, TaskStatus::Pending);
                    self.enqueue(&id);
                }
                TaskStatus::Pending
                    if self.tasks[&id].waiting_on == 0 && self.tasks[&id].parent.is_none() =>
                {
                    self.enqueue(&id);
                }
                _ => {}
            }
        }
        // Items of a for_each queue as their parent releases them.
        let parents: Vec<TaskId> = self.fan_outs.keys().cloned().collect();
        for parent in parents {
            let released: Vec<TaskId> =
                self.fan_outs[&parent].children[..self.fan_outs[&parent].next].to_vec();
            for child in released {
                if self.tasks[&child].task.status == TaskStatus::Pending {
                    self.enqueue(&child);
                }
            }
            self.release_children(&parent);
        }
        // Workflows whose last task ended just before the crash.
        let finished: Vec<WorkflowId> = self
            .workflows
            .values()
            .filter(|w| w.remaining == 0 && w.info.status == WorkflowStatus::Running)
            .map(|w| w.info.id.clone())
            .collect();
        for id in finished {
            if let Some(record) = self.workflows.get_mut(&id) {
                record.remaining = 1;
            }
            if let Some(last) = self.workflows[&id].info.task_ids.last().cloned() {
                self.workflow_task_done(&last);
            }
        }
        self.compact();
        self.dispatch();
    }

    /// Holds dispatching until `until` and wakes up then.
    fn pause_until(&mut self, until: SystemTime, reason: &str) {
        if self.paused_until.as_ref().is_some_and(|(t, _)| *t >= until) {
            return;
        }
        let stamp = crate::engine::task::unix_seconds(until);
        tracing::warn!(until = stamp, reason, "dispatching paused");
        self.paused_until = Some((until, format!("{reason} until unix time {stamp}")));
        if let Some(tx) = self.tx.upgrade() {
            let wait = until.duration_since(SystemTime::now()).unwrap_or_default();
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                let _ = tx.send(Msg::Resume).await;
            });
        }
    }

    /// Whether dispatching is held (a rate limit not yet lifted, or the budget spent).
    fn paused(&mut self) -> bool {
        if self.budget_spent().is_some() {
            return true;
        }
        match &self.paused_until {
            Some((until, _)) if SystemTime::now() < *until => true,
            Some(_) => {
                self.paused_until = None;
                false
            }
            None => false,
        }
    }

    /// Why nothing more may start, if the swarm's budget is spent.
    fn budget_spent(&self) -> Option<String> {
        let budget = self.config.budget_usd?;
        (self.total_cost_usd >= budget).then(|| {
            format!(
                "the swarm's budget of ${budget:.2} is spent (${:.2}); raise budget_usd to go on",
                self.total_cost_usd
            )
        })
    }

    /// Keeps at most `task_retention` finished tasks: the oldest go, once nothing needs
    /// them (their workflow and `for_each` are over). Their events stay in the event log.
    fn compact(&mut self) {
        while self.finished_tasks.len() > self.config.task_retention {
            let Some(id) = self.finished_tasks.front() else {
                return;
            };
            let Some(entry) = self.tasks.get(id) else {
                self.finished_tasks.pop_front();
                continue;
            };
            let workflow_running = entry.task.workflow_id.as_ref().is_some_and(|w| {
                self.workflows
                    .get(w)
                    .is_some_and(|w| w.info.status == WorkflowStatus::Running)
            });
            let item_running = entry
                .parent
                .as_ref()
                .is_some_and(|p| self.fan_outs.contains_key(p));
            if workflow_running || item_running {
                // Compacted later, once its workflow is over.
                return;
            }
            let id = self.finished_tasks.pop_front().expect("front");
            if let Some(entry) = self.tasks.remove(&id) {
                self.counts[entry.task.status.index()] -= 1;
                if let Some(key) = &entry.task.spec.idempotency_key {
                    self.idempotency.remove(key);
                }
            }
            self.deleted_tasks.push(id);
            self.tombstones += 1;
        }
        if self.tombstones > self.order.len() / 2 {
            let tasks = &self.tasks;
            self.order.retain(|id| tasks.contains_key(id));
            self.tombstones = 0;
        }
    }

    fn touch_workflow(&mut self, id: &str) {
        self.dirty_workflows.insert(id.to_owned());
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Submit {
                specs,
                batch,
                reply,
            } => {
                let value = self.submit(specs, batch, None);
                self.respond(reply, value);
            }
            Msg::GetTask { id, reply } => {
                let value = self.entry(&id).map(|e| e.task.clone());
                self.respond(reply, value);
            }
            Msg::ListTasks { query, reply } => {
                let value = self.list_tasks(query);
                self.respond(reply, value);
            }
            Msg::CancelTask { id, reply } => self.cancel_task(id, reply),
            Msg::Spawn {
                count,
                working_directory,
                reply,
            } => {
                let value = self.spawn(count, working_directory);
                self.respond(reply, value);
            }
            Msg::ListInstances { reply } => {
                let value = Ok(self.pool.live().map(|i| self.measured(i)).collect());
                self.respond(reply, value);
            }
            Msg::GetInstance { id, reply } => {
                let value = self.instance(&id).map(|i| self.measured(i));
                self.respond(reply, value);
            }
            Msg::Terminate { id, reply } => self.terminate(id, reply),
            Msg::Scale { target, reply } => {
                let value = self.scale(target);
                self.respond(reply, value);
            }
            Msg::ExecuteWorkflow { plan, reply } => {
                let value = self.execute_workflow(plan);
                self.respond(reply, value);
            }
            Msg::GetWorkflow { id, reply } => {
                let value = self.workflow(&id).map(|w| self.workflow_info(w));
                self.respond(reply, value);
            }
            Msg::ListWorkflows { reply } => {
                let all = self
                    .workflow_order
                    .iter()
                    .map(|id| self.workflow_info(&self.workflows[id]))
                    .collect();
                let value = Ok(all);
                self.respond(reply, value);
            }
            Msg::CancelWorkflow { id, reply } => self.cancel_workflow(id, reply),
            Msg::Status { reply } => {
                let value = Ok(self.status());
                self.respond(reply, value);
            }
            Msg::Subscribe {
                after,
                filter,
                reply,
            } => {
                let value = self.events.subscribe(after, filter);
                self.respond(reply, value);
            }
            Msg::Shutdown { reply } => self.shutdown(reply),
            Msg::Started { task_id, pid } => {
                let instance = self
                    .tasks
                    .get(&task_id)
                    .and_then(|e| e.task.instance_id.clone());
                if let Some(instance) = instance.and_then(|id| self.pool.get_mut(&id)) {
                    instance.pid = pid;
                }
            }
            Msg::Output { task_id, output } => {
                if let Some(entry) = self.tasks.get(&task_id) {
                    let task = &entry.task;
                    self.events.publish(
                        EventKind::TaskOutput,
                        Some(&task.id),
                        task.instance_id.as_deref(),
                        task.workflow_id.as_deref(),
                        Payload::Output(output),
                    );
                }
            }
            Msg::Finished { task_id, outcome } => self.finished(task_id, *outcome),
            Msg::RateLimited { until } => self.pause_until(until, "rate limited"),
            Msg::Resume => self.dispatch(),
            Msg::Retry { task_id } => {
                let ready = self
                    .tasks
                    .get(&task_id)
                    .is_some_and(|e| e.task.status == TaskStatus::Pending && e.waiting_on == 0);
                if ready {
                    self.enqueue(&task_id);
                    self.dispatch();
                }
            }
        }
    }

    // ---- lookups ---------------------------------------------------------------------

    /// Refuses a working directory outside the configured workspace root. Relative
    /// directories are taken from the default working directory; `..` is resolved first.
    fn inside_workspace(&self, dir: &std::path::Path) -> Result<()> {
        let Some(root) = &self.config.workspace_root else {
            return Ok(());
        };
        let normal = |path: &std::path::Path| -> PathBuf {
            let absolute = self.config.working_directory.join(path);
            let mut clean = PathBuf::new();
            for part in absolute.components() {
                match part {
                    std::path::Component::ParentDir => {
                        clean.pop();
                    }
                    std::path::Component::CurDir => {}
                    other => clean.push(other),
                }
            }
            clean.canonicalize().unwrap_or(clean)
        };
        if normal(dir).starts_with(normal(root)) {
            Ok(())
        } else {
            Err(EngineError::invalid(
                "working_directory",
                format!(
                    "{} is outside the workspace root {}",
                    dir.display(),
                    root.display()
                ),
            ))
        }
    }

    /// `name (id)`, or the id when the task has no name of its own.
    fn describe(&self, id: &str) -> String {
        match self.tasks.get(id).map(|e| e.task.spec.name.as_str()) {
            Some(name) if name != id => format!("{name} ({id})"),
            _ => id.to_owned(),
        }
    }

    /// An instance with what its running agent uses now.
    fn measured(&self, instance: &Instance) -> Instance {
        let mut instance = instance.clone();
        instance.resources = instance.pid.and_then(|pid| self.agent.usage(pid));
        instance
    }

    fn entry(&self, id: &str) -> Result<&Entry> {
        self.tasks
            .get(id)
            .ok_or_else(|| EngineError::not_found("task", id))
    }

    fn instance(&self, id: &str) -> Result<&Instance> {
        self.pool
            .get(id)
            .ok_or_else(|| EngineError::not_found("instance", id))
    }

    fn workflow(&self, id: &str) -> Result<&WorkflowRecord> {
        self.workflows
            .get(id)
            .ok_or_else(|| EngineError::not_found("workflow", id))
    }

    // ---- submission ------------------------------------------------------------------

    /// Checks every rule before changing anything, so a refused batch leaves no trace.
    fn check(&self, specs: &[TaskSpec], batch: bool) -> Result<()> {
        let at = |i: usize| {
            if batch {
                format!("tasks[{i}]")
            } else {
                String::new()
            }
        };
        let locate = |i: usize, e: EngineError| if batch { e.within(&at(i)) } else { e };
        if specs.is_empty() {
            return Err(EngineError::invalid(
                "tasks",
                "at least one task is required",
            ));
        }
        let mut new_ids: HashSet<&str> = HashSet::new();
        for (i, spec) in specs.iter().enumerate() {
            spec.validate().map_err(|e| locate(i, e))?;
            if let Some(dir) = &spec.working_directory {
                self.inside_workspace(dir).map_err(|e| locate(i, e))?;
            }
            if let Some(id) = &spec.id {
                if self.tasks.contains_key(id) {
                    return Err(EngineError::AlreadyExists {
                        kind: "task",
                        id: id.clone(),
                    });
                }
                if !new_ids.insert(id) {
                    return Err(locate(
                        i,
                        EngineError::invalid("id", format!("{id:?} is used twice in this batch")),
                    ));
                }
            }
            if let Some(instance) = &spec.instance_id
                && !self.pool.get(instance).is_some_and(|x| x.status.is_live())
            {
                return Err(locate(
                    i,
                    EngineError::invalid("instance_id", format!("no live instance {instance:?}")),
                ));
            }
        }
        for (i, spec) in specs.iter().enumerate() {
            for (j, dep) in spec.depends_on.iter().enumerate() {
                if !self.tasks.contains_key(dep) && !new_ids.contains(dep.as_str()) {
                    return Err(locate(
                        i,
                        EngineError::invalid(
                            format!("depends_on[{j}]"),
                            format!("unknown task id {dep:?}"),
                        ),
                    ));
                }
            }
        }
        let graph: HashMap<&str, Vec<&str>> = specs
            .iter()
            .filter_map(|s| {
                s.id.as_deref()
                    .map(|id| (id, s.depends_on.iter().map(String::as_str).collect()))
            })
            .collect();
        if let Some(cycle) = find_cycle(&graph) {
            let field = if batch { "tasks" } else { "depends_on" };
            return Err(EngineError::invalid(
                field,
                format!("dependency cycle: {}", cycle.join(" -> ")),
            ));
        }
        Ok(())
    }

    fn submit(
        &mut self,
        specs: Vec<TaskSpec>,
        batch: bool,
        workflow: Option<&WorkflowId>,
    ) -> Result<Vec<Task>> {
        if self.shutting_down {
            return Err(EngineError::Unavailable(
                "the server is shutting down".into(),
            ));
        }
        // A retried submission (every task's idempotency key known) gets its tasks back.
        let known: Vec<Option<&TaskId>> = specs
            .iter()
            .map(|s| {
                s.idempotency_key
                    .as_ref()
                    .and_then(|k| self.idempotency.get(k))
            })
            .collect();
        if known.iter().any(Option::is_some) {
            if known.iter().all(Option::is_some) {
                return Ok(known
                    .into_iter()
                    .flatten()
                    .map(|id| self.tasks[id].task.clone())
                    .collect());
            }
            let i = known
                .iter()
                .position(Option::is_some)
                .expect("one is known");
            let field = if batch {
                format!("tasks[{i}].idempotency_key")
            } else {
                "idempotency_key".into()
            };
            return Err(EngineError::invalid(
                field,
                "was used before, but other tasks of this batch are new",
            ));
        }
        let mut keys = HashSet::new();
        for (i, spec) in specs.iter().enumerate() {
            if let Some(key) = &spec.idempotency_key
                && !keys.insert(key)
            {
                return Err(EngineError::invalid(
                    format!("tasks[{i}].idempotency_key"),
                    "is used twice in this batch",
                ));
            }
        }
        self.check(&specs, batch)?;
        let now = SystemTime::now();
        let mut ids = Vec::with_capacity(specs.len());
        for mut spec in specs {
            let id = spec
                .id
                .clone()
                .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
            spec.id = Some(id.clone());
            if spec.name.is_empty() {
                spec.name = id.clone();
            }
            let task = Task::new(id.clone(), spec, workflow.cloned(), now);
            self.counts[TaskStatus::Pending.index()] += 1;
            self.tasks.insert(
                id.clone(),
                Entry {
                    task,
                    waiting_on: 0,
                    dependents: Vec::new(),
                    parent: None,
                },
            );
            self.order.push(id.clone());
            if let Some(key) = &self.tasks[&id].task.spec.idempotency_key {
                self.idempotency.insert(key.clone(), id.clone());
            }
            ids.push(id);
        }
        // Wire up dependencies now that every new task exists.
        let mut doomed: Vec<(TaskId, String)> = Vec::new();
        for id in &ids {
            let deps = self.tasks[id].task.spec.depends_on.clone();
            for dep in deps {
                let dep_entry = self.tasks.get_mut(&dep).expect("checked");
                match dep_entry.task.status {
                    TaskStatus::Completed => {}
                    status if status.is_terminal() => {
                        doomed.push((
                            id.clone(),
                            format!("dependency {dep} was {}", status.as_str()),
                        ));
                    }
                    _ => {
                        dep_entry.dependents.push(id.clone());
                        self.tasks.get_mut(id).expect("inserted").waiting_on += 1;
                    }
                }
            }
        }
        for id in &ids {
            self.publish_task(EventKind::TaskSubmitted, id);
        }
        for (id, reason) in doomed {
            self.finish(&id, TaskStatus::Skipped, None, Some(reason));
        }
        for id in &ids {
            let entry = &self.tasks[id];
            if entry.task.status == TaskStatus::Pending && entry.waiting_on == 0 {
                self.enqueue(id);
            }
        }
        self.dispatch();
        Ok(ids.iter().map(|id| self.tasks[id].task.clone()).collect())
    }

    fn list_tasks(&self, query: TaskQuery) -> Result<TaskPage> {
        let limit = match query.limit {
            0 => 100,
            n => n.min(1000),
        };
        let start = match &query.page_token {
            None => 0,
            Some(token) => token
                .parse::<usize>()
                .ok()
                .filter(|n| *n <= self.order.len())
                .ok_or_else(|| {
                    EngineError::invalid("page_token", "not a token this server gave out")
                })?,
        };
        let mut tasks = Vec::new();
        let mut next = None;
        for (pos, id) in self.order.iter().enumerate().skip(start) {
            // Compacted tasks leave a gap in the order until it is rebuilt.
            let Some(task) = self.tasks.get(id).map(|e| &e.task) else {
                continue;
            };
            let wanted = (query.statuses.is_empty() || query.statuses.contains(&task.status))
                && (query.priorities.is_empty() || query.priorities.contains(&task.spec.priority))
                && (query.workflow_id.is_none() || query.workflow_id == task.workflow_id);
            if !wanted {
                continue;
            }
            if tasks.len() == limit {
                next = Some(pos.to_string());
                break;
            }
            tasks.push(task.clone());
        }
        Ok(TaskPage {
            tasks,
            next_page_token: next,
        })
    }

    // ---- state changes ---------------------------------------------------------------

    fn set_status(&mut self, id: &str, status: TaskStatus) {
        let task = &mut self.tasks.get_mut(id).expect("known task").task;
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

    fn publish_task(&mut self, kind: EventKind, id: &str) {
        if self.dirty_task_set.insert(id.to_owned()) {
            self.dirty_tasks.push(id.to_owned());
        }
        let task = &self.tasks[id].task;
        self.events.publish(
            kind,
            Some(&task.id),
            task.instance_id.as_deref(),
            task.workflow_id.as_deref(),
            Payload::Task(Box::new(task.clone())),
        );
    }

    fn publish_instance(&mut self, id: &str) {
        let Some(instance) = self.pool.get(id) else {
            return;
        };
        let kind = match instance.status {
            InstanceStatus::Terminated => EventKind::InstanceTerminated,
            _ => EventKind::InstanceStatusChanged,
        };
        // An instance busy with a task shows up in that task's (and workflow's) stream too.
        let task = instance.current_task.as_deref();
        let workflow = task
            .and_then(|t| self.tasks.get(t))
            .and_then(|e| e.task.workflow_id.as_deref());
        self.events.publish(
            kind,
            task,
            Some(id),
            workflow,
            Payload::Instance(instance.clone()),
        );
    }

    /// A ready task joins its queue (or fails if its pinned instance is gone).
    fn enqueue(&mut self, id: &str) {
        if self.tasks[id].task.spec.fan_out.is_some() {
            self.expand(id);
            return;
        }
        let task = &self.tasks[id].task;
        let priority = task.spec.priority;
        if let Some(instance) = task.spec.instance_id.clone() {
            if !self.pool.get(&instance).is_some_and(|i| i.status.is_live()) {
                let reason = format!("its instance {instance} is gone");
                self.finish(id, TaskStatus::Failed, None, Some(reason));
                return;
            }
            self.arrivals += 1;
            self.pinned
                .entry(instance)
                .or_default()
                .push(priority, self.arrivals, id.to_owned());
        } else {
            self.arrivals += 1;
            self.queue.push(priority, self.arrivals, id.to_owned());
        }
        self.set_status(id, TaskStatus::Queued);
        self.publish_task(EventKind::TaskQueued, id);
    }

    /// Starts ready tasks on idle instances until one of the two runs out.
    fn dispatch(&mut self) {
        if self.shutting_down || self.paused() {
            return;
        }
        while let Some(instance) = self.pool.first_idle().cloned() {
            let Some(task_id) = self.next_task_for(&instance) else {
                // The longest-idle instance has nothing: only pinned work could be left for
                // the others.
                let others: Vec<String> = self
                    .pinned
                    .keys()
                    .filter(|i| **i != instance && self.pool.is_idle(i))
                    .cloned()
                    .collect();
                for other in others {
                    if let Some(task_id) = self.next_task_for(&other) {
                        self.start(task_id, &other);
                    }
                }
                return;
            };
            self.start(task_id, &instance);
        }
    }

    /// The most urgent, oldest ready task this instance may run: the better of the shared
    /// queue's head and the head of the queue pinned to it.
    fn next_task_for(&mut self, instance: &str) -> Option<TaskId> {
        let tasks = &self.tasks;
        let ready = |id: &str| {
            tasks
                .get(id)
                .is_some_and(|e| e.task.status == TaskStatus::Queued)
        };
        let shared = self.queue.peek(ready);
        let pinned = self.pinned.get_mut(instance).and_then(|q| q.peek(ready));
        let take_pinned = match (shared, pinned) {
            (None, None) => return None,
            (Some(_), None) => false,
            (None, Some(_)) => true,
            (Some((sp, sa)), Some((pp, pa))) => (pp, Reverse(pa)) > (sp, Reverse(sa)),
        };
        if take_pinned {
            self.pinned.get_mut(instance)?.pop(ready)
        } else {
            self.queue.pop(ready)
        }
    }

    fn start(&mut self, task_id: TaskId, instance_id: &str) {
        let Some(tx) = self.tx.upgrade() else { return };
        self.pool.assign(instance_id, &task_id);
        self.set_status(&task_id, TaskStatus::Running);
        let instance_dir = self
            .pool
            .get(instance_id)
            .and_then(|i| i.working_directory.clone());
        // Fill in upstream results: they are all complete, or this task would not be ready.
        // In a shell step each is one quoted word: agent output must never become shell code.
        let spec = &self.tasks[&task_id].task.spec;
        let shell = spec.command.is_some();
        let rendered = spec.template.as_ref().map(|template| {
            template.render(|id| {
                let text = self
                    .tasks
                    .get(id)
                    .and_then(|e| e.task.result.as_ref())
                    .map(|r| r.text.as_str())
                    .unwrap_or_default();
                if shell {
                    shell_quote(text)
                } else {
                    text.to_owned()
                }
            })
        });
        let entry = self.tasks.get_mut(&task_id).expect("queued task");
        let task = &mut entry.task;
        if let Some(text) = rendered {
            match &mut task.spec.command {
                Some(command) => *command = text,
                None => task.spec.prompt = text,
            }
        }
        task.attempts += 1;
        task.failure_class = None;
        task.started_at = Some(SystemTime::now());
        task.instance_id = Some(instance_id.to_owned());
        let timeout = task.spec.timeout.unwrap_or(self.config.default_timeout);
        let request = RunRequest {
            task_id: task_id.clone(),
            prompt: task.spec.prompt.clone(),
            // Relative directories are taken from the configured working directory.
            working_directory: self.config.working_directory.join(
                task.spec
                    .working_directory
                    .clone()
                    .or(instance_dir)
                    .unwrap_or_default(),
            ),
            model: task.spec.model.clone(),
            allowed_tools: task.spec.allowed_tools.clone(),
            max_turns: task.spec.max_turns,
            permission_mode: task.spec.permission_mode.clone(),
            command: task.spec.command.clone(),
            attempt: task.attempts,
            options: task.spec.options.clone(),
            isolation: task.spec.isolation,
            instance_id: instance_id.to_owned(),
        };
        self.publish_task(EventKind::TaskStarted, &task_id);
        self.publish_instance(instance_id);

        let (stop_tx, stop_rx) = oneshot::channel();
        self.running.insert(
            task_id.clone(),
            Running {
                stop: Some(stop_tx),
                waiters: Vec::new(),
            },
        );
        let agent = self.agent.clone();
        let sink = OutputSink {
            task_id: task_id.clone(),
            tx: tx.clone(),
        };
        tokio::spawn(async move {
            let stop = Box::pin(async move {
                tokio::select! {
                    reason = stop_rx => reason.unwrap_or(StopReason::Shutdown),
                    () = tokio::time::sleep(timeout) => StopReason::TimedOut(timeout),
                }
            });
            let outcome = agent.run(request, sink, stop).await;
            let _ = tx
                .send(Msg::Finished {
                    task_id,
                    outcome: Box::new(outcome),
                })
                .await;
        });
    }

    /// A run ended: record it, free the instance, release dependents, dispatch.
    fn finished(&mut self, task_id: TaskId, outcome: RunOutcome) {
        let running = self.running.remove(&task_id);
        let verdict = outcome.verdict();
        let cost = verdict.result.as_ref().map_or(0.0, |r| r.cost_usd);
        let instance_id = self
            .tasks
            .get(&task_id)
            .and_then(|e| e.task.instance_id.clone());
        let (usage, turns) = verdict
            .result
            .as_ref()
            .map_or((Usage::default(), 0), |r| (r.usage.clone(), r.num_turns));
        self.total_usage.add(&usage);
        self.total_turns += u64::from(turns);
        if let Some(instance) = instance_id.as_deref().and_then(|id| self.pool.get_mut(id)) {
            instance.usage.add(&usage);
            instance.turns += u64::from(turns);
            instance.total_cost_usd += cost;
            if verdict.status == TaskStatus::Completed {
                instance.tasks_completed += 1;
            } else {
                instance.tasks_failed += 1;
            }
        }
        self.total_cost_usd += cost;
        let task = &mut self.tasks.get_mut(&task_id).expect("known task").task;
        task.failure_class = verdict.class;
        let retryable = verdict.class.is_some_and(FailureClass::retryable);
        if verdict.status == TaskStatus::Failed
            && retryable
            && task.attempts <= task.spec.retries
            && !self.shutting_down
        {
            self.retry_later(&task_id, verdict.result, verdict.error.unwrap_or_default());
        } else {
            self.finish(&task_id, verdict.status, verdict.result, verdict.error);
        }
        if let Some(workflow) = self.tasks[&task_id].task.workflow_id.clone() {
            self.check_workflow_budget(&workflow);
        }
        if let Some(id) = &instance_id {
            let was_terminated = self
                .pool
                .get(id)
                .is_some_and(|i| i.status == InstanceStatus::Terminated);
            // A long-lived process grown past the memory limit restarts before the next task.
            let pid = self.pool.get(id).and_then(|i| i.pid);
            // Measured only when a limit is set: reading /proc is not free.
            if let Some(limit) = self.config.instance_memory_limit
                && let Some(usage) = pid.and_then(|p| self.agent.usage(p))
                && usage.rss_bytes > limit
            {
                tracing::warn!(instance = %id, rss = usage.rss_bytes, limit, "recycling an instance over its memory limit");
                self.agent.recycle(id);
            }
            let now_terminated = self
                .pool
                .release(id)
                .is_some_and(|i| i.status == InstanceStatus::Terminated);
            if now_terminated {
                // Scaled down while busy, or terminated: its process goes now.
                self.agent.retire(id);
            }
            if !was_terminated {
                self.publish_instance(id);
            }
        }
        for waiter in running.map(|r| r.waiters).unwrap_or_default() {
            match waiter {
                Waiter::Cancel(reply) => {
                    let value = Ok(self.tasks[&task_id].task.clone());
                    self.respond(reply, value);
                }
                Waiter::Terminate(reply) => {
                    let id = instance_id.as_deref().unwrap_or_default();
                    let value = self.instance(id).cloned();
                    self.respond(reply, value);
                }
            }
        }
        if self.shutting_down && self.running.is_empty() {
            for waiter in self.shutdown_waiters.drain(..) {
                let _ = waiter.send(());
            }
        }
        self.dispatch();
    }

    /// Moves a task to a terminal state and settles everything downstream: dependents are
    /// released when it completed, skipped (or cancelled, in a cancelled workflow) when not.
    fn finish(
        &mut self,
        id: &str,
        status: TaskStatus,
        result: Option<TaskResult>,
        error: Option<String>,
    ) {
        let mut work = vec![(id.to_owned(), status, result, error)];
        let mut fail_fast: Vec<(WorkflowId, String)> = Vec::new();
        while let Some((id, status, result, error)) = work.pop() {
            if self.tasks[&id].task.status.is_terminal() {
                continue;
            }
            self.set_status(&id, status);
            self.finished_tasks.push_back(id.clone());
            let entry = self.tasks.get_mut(&id).expect("known task");
            entry.task.completed_at = Some(SystemTime::now());
            entry.task.result = result;
            entry.task.error = error;
            if status != TaskStatus::Completed && entry.task.failure_class.is_none() {
                entry.task.failure_class = Some(match status {
                    TaskStatus::Cancelled => FailureClass::Cancelled,
                    TaskStatus::Skipped => FailureClass::Skipped,
                    _ => FailureClass::Interrupted,
                });
            }
            let dependents = std::mem::take(&mut entry.dependents);
            let kind = match status {
                TaskStatus::Completed => EventKind::TaskCompleted,
                TaskStatus::Failed => EventKind::TaskFailed,
                TaskStatus::Cancelled => EventKind::TaskCancelled,
                _ => EventKind::TaskSkipped,
            };
            self.publish_task(kind, &id);
            self.workflow_task_done(&id);
            let task = &self.tasks[&id].task;
            if status == TaskStatus::Failed && task.spec.on_failure == FailurePolicy::FailFast {
                fail_fast.extend(
                    task.workflow_id
                        .clone()
                        .map(|w| (w, task.spec.name.clone())),
                );
            }
            if let Some(parent) = self.tasks[&id].parent.clone() {
                work.extend(self.child_done(&parent, &id));
            }
            for dependent in dependents {
                if status == TaskStatus::Completed {
                    let entry = self.tasks.get_mut(&dependent).expect("known task");
                    entry.waiting_on -= 1;
                    if entry.waiting_on == 0 && entry.task.status == TaskStatus::Pending {
                        self.enqueue(&dependent);
                    }
                } else {
                    let cancelling = self.tasks[&dependent]
                        .task
                        .workflow_id
                        .as_ref()
                        .is_some_and(|w| self.workflows.get(w).is_some_and(|w| w.cancelling));
                    let (next, reason) = if cancelling {
                        (
                            TaskStatus::Cancelled,
                            "cancelled with its workflow".to_string(),
                        )
                    } else {
                        (
                            TaskStatus::Skipped,
                            format!("dependency {} was {}", self.describe(&id), status.as_str()),
                        )
                    };
                    work.push((dependent, next, None, Some(reason)));
                }
            }
        }
        for (workflow, failed) in fail_fast {
            self.abort_workflow(
                &workflow,
                &format!("cancelled: task {failed} failed and the workflow fails fast"),
            );
        }
    }

    /// A failed run that has retries left waits, then queues again.
    fn retry_later(&mut self, id: &str, result: Option<TaskResult>, error: String) {
        let Some(tx) = self.tx.upgrade() else { return };
        let task = &self.tasks[id].task;
        let base = task.spec.retry_backoff.unwrap_or(Duration::from_secs(1));
        let delay = backoff(base, task.attempts);
        let (attempt, of) = (task.attempts, task.spec.retries + 1);
        self.set_status(id, TaskStatus::Pending);
        let task = &mut self.tasks.get_mut(id).expect("known task").task;
        task.history.push(Attempt {
            attempt,
            started_at: task.started_at,
            ended_at: SystemTime::now(),
            result: result.clone(),
            error: error.clone(),
            failure_class: task.failure_class,
            instance_id: task.instance_id.clone(),
        });
        task.result = result;
        task.error = Some(format!(
            "attempt {attempt} of {of} failed: {error}; retrying in {:.1}s",
            delay.as_secs_f64()
        ));
        self.publish_task(EventKind::TaskRetrying, id);
        let task_id = id.to_owned();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(Msg::Retry { task_id }).await;
        });
    }

    // ---- for_each ----------------------------------------------------------------------

    /// A ready `for_each` task becomes one child task per item; it stays RUNNING (with no
    /// process of its own) until every child is terminal.
    fn expand(&mut self, id: &str) {
        let spec = self.tasks[id].task.spec.clone();
        let fan_out = spec.fan_out.clone().expect("a for_each task");
        let items = match &fan_out.source {
            FanOutSource::Items(items) => items.clone(),
            FanOutSource::Result(source) => items_of(
                self.tasks
                    .get(source)
                    .and_then(|e| e.task.result.as_ref())
                    .map_or("", |r| r.text.as_str()),
            ),
        };
        if items.len() > MAX_ITEMS {
            let reason = format!("for_each: {} items is more than {MAX_ITEMS}", items.len());
            self.finish(id, TaskStatus::Failed, None, Some(reason));
            return;
        }
        self.set_status(id, TaskStatus::Running);
        let parent = &mut self.tasks.get_mut(id).expect("known task").task;
        let now = SystemTime::now();
        parent.started_at = Some(now);
        parent.attempts = 1;
        let workflow = parent.workflow_id.clone();
        self.publish_task(EventKind::TaskStarted, id);
        let mut children = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            let child_id = format!("{id}.{index}");
            let item = if spec.command.is_some() {
                shell_quote(item)
            } else {
                item.clone()
            };
            let template = spec.template.as_ref().map(|t| t.bind(&item, index));
            let text = template.as_ref().map(Template::display);
            let child = TaskSpec {
                id: Some(child_id.clone()),
                name: format!("{}[{index}]", spec.name),
                prompt: match (&spec.command, &text) {
                    (None, Some(text)) => text.clone(),
                    _ => spec.prompt.clone(),
                },
                command: spec
                    .command
                    .as_ref()
                    .map(|c| text.clone().unwrap_or(c.clone())),
                depends_on: Vec::new(),
                fan_out: None,
                template,
                ..spec.clone()
            };
            let task = Task::new(child_id.clone(), child, workflow.clone(), now);
            self.counts[TaskStatus::Pending.index()] += 1;
            let entry = Entry {
                task,
                waiting_on: 0,
                dependents: Vec::new(),
                parent: Some(id.to_owned()),
            };
            self.tasks.insert(child_id.clone(), entry);
            self.order.push(child_id.clone());
            if let Some(record) = workflow.as_ref().and_then(|w| self.workflows.get_mut(w)) {
                record.remaining += 1;
                record.info.task_ids.push(child_id.clone());
                self.dirty_workflows.insert(record.info.id.clone());
            }
            self.publish_task(EventKind::TaskSubmitted, &child_id);
            children.push(child_id);
        }
        if children.is_empty() {
            let result = TaskResult {
                text: "[]".into(),
                exit_code: Some(0),
                ..Default::default()
            };
            self.finish(id, TaskStatus::Completed, Some(result), None);
            return;
        }
        let state = FanOutState {
            children,
            next: 0,
            active: 0,
            done: 0,
            max_parallel: fan_out.max_parallel,
        };
        self.fan_outs.insert(id.to_owned(), state);
        self.release_children(id);
    }

    /// Queues children of a `for_each` task up to its bound.
    fn release_children(&mut self, parent: &str) {
        loop {
            let Some(state) = self.fan_outs.get_mut(parent) else {
                return;
            };
            if state.active >= state.max_parallel || state.next >= state.children.len() {
                return;
            }
            let child = state.children[state.next].clone();
            state.next += 1;
            if self.tasks[&child].task.status == TaskStatus::Pending {
                state.active += 1;
                self.enqueue(&child);
            }
        }
    }

    /// A child of `parent` is terminal: release the next, or end the parent when it was the
    /// last. Returns the parent's end for the caller's work list.
    fn child_done(&mut self, parent: &str, child: &str) -> Option<Ending> {
        let state = self.fan_outs.get_mut(parent)?;
        let index: usize = child
            .rsplit('.')
            .next()
            .and_then(|i| i.parse().ok())
            .unwrap_or(usize::MAX);
        if index < state.next {
            state.active -= 1;
        }
        state.done += 1;
        if state.done < state.children.len() {
            self.release_children(parent);
            return None;
        }
        let state = self.fan_outs.remove(parent).expect("present");
        let children: Vec<&Task> = state.children.iter().map(|c| &self.tasks[c].task).collect();
        let texts: Vec<&str> = children
            .iter()
            .map(|t| t.result.as_ref().map_or("", |r| r.text.as_str()))
            .collect();
        let results = || children.iter().filter_map(|t| t.result.as_ref());
        let result = TaskResult {
            text: serde_json::to_string(&texts).expect("strings serialize"),
            cost_usd: results().map(|r| r.cost_usd).sum(),
            num_turns: results().map(|r| r.num_turns).sum(),
            exit_code: Some(0),
            ..Default::default()
        };
        let unfinished = children
            .iter()
            .filter(|t| t.status != TaskStatus::Completed)
            .count();
        let cancelled = children.iter().any(|t| t.status == TaskStatus::Cancelled);
        let (status, error) = match (unfinished, cancelled) {
            (0, _) => (TaskStatus::Completed, None),
            (_, true) => (TaskStatus::Cancelled, Some("cancelled".to_string())),
            (n, false) => (
                TaskStatus::Failed,
                Some(format!("{n} of {} items did not complete", children.len())),
            ),
        };
        Some((parent.to_owned(), status, Some(result), error))
    }

    // ---- cancellation ----------------------------------------------------------------

    fn cancel_task(&mut self, id: TaskId, reply: Reply<Task>) {
        let status = match self.entry(&id) {
            Ok(entry) => entry.task.status,
            Err(e) => {
                let value = Err(e);
                self.respond(reply, value);
                return;
            }
        };
        match status {
            TaskStatus::Pending | TaskStatus::Queued => {
                self.finish(&id, TaskStatus::Cancelled, None, Some("cancelled".into()));
                let value = Ok(self.tasks[&id].task.clone());
                self.respond(reply, value);
            }
            TaskStatus::Running if self.fan_outs.contains_key(&id) => {
                self.cancel_children(&id);
                let value = Ok(self.tasks[&id].task.clone());
                self.respond(reply, value);
            }
            TaskStatus::Running => {
                self.stop_running(&id, StopReason::Cancelled, Some(Waiter::Cancel(reply)))
            }
            done => {
                self.respond(reply, Err(EngineError::FailedPrecondition(format!(
                    "task {id} is already {}; only pending, queued or running tasks can be cancelled",
                    done.as_str()
                ))));
            }
        }
    }

    /// Cancels the unfinished items of a running `for_each` task; it ends with them.
    fn cancel_children(&mut self, parent: &str) {
        let children = self
            .fan_outs
            .get(parent)
            .map(|f| f.children.clone())
            .unwrap_or_default();
        for child in children {
            match self.tasks[&child].task.status {
                TaskStatus::Pending | TaskStatus::Queued => {
                    self.finish(
                        &child,
                        TaskStatus::Cancelled,
                        None,
                        Some("cancelled".into()),
                    );
                }
                TaskStatus::Running => self.stop_running(&child, StopReason::Cancelled, None),
                _ => {}
            }
        }
    }

    fn stop_running(&mut self, id: &str, reason: StopReason, waiter: Option<Waiter>) {
        if let Some(running) = self.running.get_mut(id) {
            if let Some(stop) = running.stop.take() {
                let _ = stop.send(reason);
            }
            running.waiters.extend(waiter);
        }
    }

    // ---- instances -------------------------------------------------------------------

    fn spawn_instance(&mut self, working_directory: Option<PathBuf>) -> Instance {
        let instance = self.pool.spawn(working_directory).clone();
        self.events.publish(
            EventKind::InstanceSpawned,
            None,
            Some(&instance.id),
            None,
            Payload::Instance(instance.clone()),
        );
        instance
    }

    fn spawn(&mut self, count: u32, working_directory: Option<PathBuf>) -> Result<Vec<Instance>> {
        if count == 0 {
            return Err(EngineError::invalid("count", "must be at least 1"));
        }
        let live = self.pool.active_count();
        let max = self.config.max_instances;
        if live + count as usize > max {
            return Err(EngineError::invalid(
                "count",
                format!("{count} more would exceed the maximum of {max} instances ({live} live)"),
            ));
        }
        if let Some(dir) = &working_directory {
            self.inside_workspace(dir)?;
        }
        if let Some(dir) = &working_directory
            && !dir.is_dir()
        {
            return Err(EngineError::invalid(
                "working_directory",
                format!("{} is not a directory", dir.display()),
            ));
        }
        let spawned = (0..count)
            .map(|_| self.spawn_instance(working_directory.clone()))
            .collect();
        self.dispatch();
        Ok(spawned)
    }

    fn scale(&mut self, target: i64) -> Result<Vec<Instance>> {
        let max = self.config.max_instances;
        if target < 0 {
            return Err(EngineError::invalid("target", "must be at least 0"));
        }
        let target = target as usize;
        if target > max {
            return Err(EngineError::invalid(
                "target",
                format!("must be at most the maximum of {max} instances"),
            ));
        }
        let active = self.pool.active_count();
        if target > active {
            for _ in active..target {
                self.spawn_instance(None);
            }
            self.dispatch();
        } else {
            for id in self.pool.scale_down_candidates(target) {
                if self.pool.is_idle(&id) {
                    self.retire(&id);
                } else {
                    self.pool.set_status(&id, InstanceStatus::Stopping);
                    self.publish_instance(&id);
                }
            }
        }
        Ok(self.pool.live().cloned().collect())
    }

    /// Terminates an instance and fails the tasks pinned to it.
    fn retire(&mut self, id: &str) {
        self.pool.set_status(id, InstanceStatus::Terminated);
        self.agent.retire(id);
        self.publish_instance(id);
        if let Some(mut queue) = self.pinned.remove(id) {
            let tasks = &self.tasks;
            let mut stranded = Vec::new();
            while let Some(task) = queue.pop(|t| {
                tasks
                    .get(t)
                    .is_some_and(|e| e.task.status == TaskStatus::Queued)
            }) {
                stranded.push(task);
            }
            for task in stranded {
                self.finish(
                    &task,
                    TaskStatus::Failed,
                    None,
                    Some(format!("its instance {id} was terminated")),
                );
            }
        }
    }

    fn terminate(&mut self, id: String, reply: Reply<Instance>) {
        let instance = match self.instance(&id) {
            Ok(i) => i.clone(),
            Err(e) => {
                let value = Err(e);
                self.respond(reply, value);
                return;
            }
        };
        if instance.status == InstanceStatus::Terminated {
            self.respond(
                reply,
                Err(EngineError::FailedPrecondition(format!(
                    "instance {id} is already terminated"
                ))),
            );
            return;
        }
        self.retire(&id);
        match instance.current_task {
            Some(task) => self.stop_running(
                &task,
                StopReason::InstanceTerminated,
                Some(Waiter::Terminate(reply)),
            ),
            None => {
                let value = self.instance(&id).cloned();
                self.respond(reply, value);
            }
        }
    }

    // ---- workflows -------------------------------------------------------------------

    fn execute_workflow(&mut self, plan: WorkflowPlan) -> Result<WorkflowInfo> {
        let WorkflowPlan {
            name,
            description,
            instances,
            mut tasks,
            pins,
            leaves,
            budget_usd,
        } = plan;
        // Instances the workflow wants come first: `instance: N` pins refer to them.
        let wanted = instances.map(|n| (n as usize).min(self.config.max_instances));
        let live: Vec<String> = self.pool.live().map(|i| i.id.clone()).collect();
        for (i, (spec, pin)) in tasks.iter_mut().zip(&pins).enumerate() {
            if let Some(n) = pin {
                let available = live.len().max(wanted.unwrap_or(0));
                if *n >= available {
                    return Err(EngineError::invalid(
                        format!("tasks[{i}].instance"),
                        format!(
                            "instance {n} does not exist: the workflow has {available} (numbered from 0)"
                        ),
                    ));
                }
                // Known after spawning below; a placeholder keeps `check` honest.
                spec.instance_id = live.get(*n).cloned();
            }
        }
        let unpinned_check: Vec<TaskSpec> = tasks
            .iter()
            .cloned()
            .map(|mut t| {
                t.instance_id = None;
                t
            })
            .collect();
        self.check(&unpinned_check, true)?;
        if let Some(wanted) = wanted {
            for _ in self.pool.active_count()..wanted {
                self.spawn_instance(None);
            }
        }
        let live: Vec<String> = self.pool.live().map(|i| i.id.clone()).collect();
        for (spec, pin) in tasks.iter_mut().zip(&pins) {
            spec.instance_id = pin.and_then(|n| live.get(n).cloned());
        }
        let id = uuid::Uuid::now_v7().to_string();
        let info = WorkflowInfo {
            id: id.clone(),
            name,
            description,
            status: WorkflowStatus::Running,
            task_ids: tasks.iter().filter_map(|t| t.id.clone()).collect(),
            created_at: SystemTime::now(),
            completed_at: None,
            total_cost_usd: 0.0,
            task_counts: [0; 7],
            outputs: Default::default(),
            budget_usd,
            usage: Usage::default(),
            turns: 0,
        };
        let record = WorkflowRecord {
            info: info.clone(),
            remaining: tasks.len(),
            cancelling: false,
            user_cancelled: false,
            leaves,
            cancel_waiters: Vec::new(),
        };
        self.workflows.insert(id.clone(), record);
        self.workflow_order.push(id.clone());
        self.touch_workflow(&id);
        self.events.publish(
            EventKind::WorkflowStarted,
            None,
            None,
            Some(&id),
            Payload::Workflow(info),
        );
        self.submit(tasks, true, Some(&id))?;
        Ok(self.workflow_info(&self.workflows[&id]))
    }

    /// A running workflow's view is computed from its tasks; a finished one's was frozen
    /// when it finished (its tasks may since have been compacted away).
    fn workflow_info(&self, record: &WorkflowRecord) -> WorkflowInfo {
        if record.info.status == WorkflowStatus::Running {
            self.compute_workflow_info(record)
        } else {
            record.info.clone()
        }
    }

    fn compute_workflow_info(&self, record: &WorkflowRecord) -> WorkflowInfo {
        let mut info = record.info.clone();
        info.task_counts = [0; 7];
        info.total_cost_usd = 0.0;
        info.usage = Usage::default();
        info.turns = 0;
        info.outputs.clear();
        for task in info
            .task_ids
            .iter()
            .filter_map(|id| self.tasks.get(id))
            .map(|e| &e.task)
        {
            info.task_counts[task.status.index()] += 1;
            // A for_each task's cost is its items' cost, counted with them.
            if let (None, Some(result)) = (&task.spec.fan_out, &task.result) {
                info.total_cost_usd += result.cost_usd;
                info.usage.add(&result.usage);
                info.turns += u64::from(result.num_turns);
            }
        }
        for task in record
            .leaves
            .iter()
            .filter_map(|id| self.tasks.get(id))
            .map(|e| &e.task)
        {
            if let (TaskStatus::Completed, Some(result)) = (task.status, &task.result) {
                info.outputs
                    .insert(task.spec.name.clone(), result.text.clone());
            }
        }
        info
    }

    fn workflow_task_done(&mut self, task_id: &str) {
        let Some(workflow_id) = self.tasks[task_id].task.workflow_id.clone() else {
            return;
        };
        let Some(record) = self.workflows.get_mut(&workflow_id) else {
            return;
        };
        record.remaining -= 1;
        if record.remaining > 0 {
            return;
        }
        let all_completed = record
            .info
            .task_ids
            .iter()
            .all(|t| self.tasks[t].task.status == TaskStatus::Completed);
        record.info.status = match (all_completed, record.user_cancelled) {
            (true, _) => WorkflowStatus::Completed,
            (false, true) => WorkflowStatus::Cancelled,
            (false, false) => WorkflowStatus::Failed,
        };
        record.info.completed_at = Some(SystemTime::now());
        self.dirty_workflows.insert(workflow_id.clone());
        let frozen = self.compute_workflow_info(&self.workflows[&workflow_id]);
        let record = self.workflows.get_mut(&workflow_id).expect("present");
        record.info = frozen;
        let waiters = std::mem::take(&mut record.cancel_waiters);
        let info = self.workflow_info(&self.workflows[&workflow_id]);
        for waiter in waiters {
            let value = Ok(info.clone());
            self.respond(waiter, value);
        }
        self.events.publish(
            EventKind::WorkflowFinished,
            None,
            None,
            Some(&workflow_id),
            Payload::Workflow(info),
        );
    }

    fn cancel_workflow(&mut self, id: WorkflowId, reply: Reply<WorkflowInfo>) {
        let record = match self.workflows.get_mut(&id) {
            Some(r) => r,
            None => {
                let value = Err(EngineError::not_found("workflow", &id));
                self.respond(reply, value);
                return;
            }
        };
        if record.info.status != WorkflowStatus::Running {
            let status = record.info.status.as_str();
            self.respond(
                reply,
                Err(EngineError::FailedPrecondition(format!(
                    "workflow {id} is already {status}"
                ))),
            );
            return;
        }
        record.user_cancelled = true;
        record.cancel_waiters.push(reply);
        self.abort_workflow(&id, "cancelled with its workflow");
    }

    /// A workflow whose spending reached its budget starts nothing more: its tasks not yet
    /// started fail (class budget_exhausted); running ones finish.
    fn check_workflow_budget(&mut self, id: &str) {
        let Some(record) = self.workflows.get(id) else {
            return;
        };
        let Some(budget) = record.info.budget_usd else {
            return;
        };
        let spent = self.workflow_info(record).total_cost_usd;
        if spent < budget || record.info.status != WorkflowStatus::Running {
            return;
        }
        let reason =
            format!("not started: the workflow's budget of ${budget:.2} is spent (${spent:.4})");
        let waiting: Vec<TaskId> = record
            .info
            .task_ids
            .iter()
            .filter(|t| {
                matches!(
                    self.tasks[*t].task.status,
                    TaskStatus::Pending | TaskStatus::Queued
                )
            })
            .cloned()
            .collect();
        for task in &waiting {
            self.tasks
                .get_mut(task)
                .expect("known task")
                .task
                .failure_class = Some(FailureClass::BudgetExhausted);
        }
        for task in waiting {
            self.finish(&task, TaskStatus::Failed, None, Some(reason.clone()));
        }
    }

    /// Cancels every unfinished task of a workflow: pending and queued ones now, running
    /// ones once their process is stopped.
    fn abort_workflow(&mut self, id: &str, reason: &str) {
        let Some(record) = self.workflows.get_mut(id) else {
            return;
        };
        record.cancelling = true;
        self.dirty_workflows.insert(id.to_owned());
        let task_ids = record.info.task_ids.clone();
        for task_id in task_ids {
            match self.tasks[&task_id].task.status {
                TaskStatus::Pending | TaskStatus::Queued => {
                    self.finish(
                        &task_id,
                        TaskStatus::Cancelled,
                        None,
                        Some(reason.to_owned()),
                    );
                }
                TaskStatus::Running => self.stop_running(&task_id, StopReason::Cancelled, None),
                _ => {}
            }
        }
    }

    // ---- status and shutdown ---------------------------------------------------------

    fn status(&self) -> SwarmStatus {
        let count = |status| self.pool.live().filter(|i| i.status == status).count() as u64;
        SwarmStatus {
            version: env!("CARGO_PKG_VERSION"),
            uptime: Duration::ZERO,
            agent: self.agent.describe(),
            instances_idle: count(InstanceStatus::Idle),
            instances_busy: count(InstanceStatus::Busy),
            instances_stopping: count(InstanceStatus::Stopping),
            max_instances: self.config.max_instances as u64,
            tasks: self.counts,
            queued: self.queued,
            workflows_running: self
                .workflows
                .values()
                .filter(|w| w.info.status == WorkflowStatus::Running)
                .count() as u64,
            total_cost_usd: self.total_cost_usd,
            paused: self.paused_until.clone(),
            budget_spent: self.budget_spent(),
            budget_usd: self.config.budget_usd,
            usage: self.total_usage.clone(),
            turns: self.total_turns,
        }
    }

    fn shutdown(&mut self, reply: oneshot::Sender<()>) {
        self.shutting_down = true;
        if self.running.is_empty() {
            let _ = reply.send(());
            return;
        }
        self.shutdown_waiters.push(reply);
        let running: Vec<TaskId> = self.running.keys().cloned().collect();
        for id in running {
            self.stop_running(&id, StopReason::Shutdown, None);
        }
    }
}
