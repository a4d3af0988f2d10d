//! The actor: one tokio task that owns the [`Core`], feeds it what arrives (calls from
//! [`Engine`] handles, reports from runs, timers), and executes the effects of each turn:
//! the turn's changes are stored in one batch (group commit) before any caller is answered
//! or any event is sent, then runs are started or stopped and timers armed. It is the only
//! place in the engine that spawns or sleeps.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::StreamExt;
use tokio_util::time::{DelayQueue, delay_queue};

use super::{
    core::{Answer, CallId, Core, Effect, EngineConfig, Input, Timer, Turn},
    error::{EngineError, Result},
    events::{EventHub, Subscription},
    model::{event::EventFilter, task::TaskId},
    ports::{
        Agent, Batch, OutputSink, RunEvent, RunRequest, Snapshot, StopReason, StopSignal, Store,
        StoreError,
    },
};

/// Inputs handled in one turn at most, before their changes are stored together.
const MAX_TURN: usize = 1024;

/// What a handle sends the actor.
enum Msg {
    Call {
        call: CallId,
        input: Input,
        reply: oneshot::Sender<Answer>,
    },
    Subscribe {
        after: Option<u64>,
        filter: EventFilter,
        reply: oneshot::Sender<Result<Subscription>>,
    },
}

/// The handle to the engine. Cheap to clone; every surface (gRPC, REST, CLI) uses it.
#[derive(Clone)]
pub struct Engine {
    tx: mpsc::Sender<Msg>,
    next_call: Arc<AtomicU64>,
    /// To describe it, measure runs, and end what it keeps at shutdown.
    agent: Arc<dyn Agent>,
    started: Instant,
    /// Set once the actor has ended, with the reason.
    stopped: watch::Receiver<Option<String>>,
}

impl Engine {
    /// Starts the engine in memory on the current tokio runtime.
    pub fn start(config: EngineConfig, agent: Arc<dyn Agent>) -> Self {
        Self::launch(config, agent, None, Snapshot::default())
    }

    /// Starts the engine on a durable store: what it holds comes back first, and from then
    /// on every change is stored before it is acknowledged.
    pub fn start_durable(
        config: EngineConfig,
        agent: Arc<dyn Agent>,
        mut store: Box<dyn Store>,
    ) -> Result<Self, StoreError> {
        let snapshot = store.load()?;
        Ok(Self::launch(
            config,
            agent,
            Some(StoreThread::spawn(store)?),
            snapshot,
        ))
    }

    fn launch(
        config: EngineConfig,
        agent: Arc<dyn Agent>,
        store: Option<StoreThread>,
        snapshot: Snapshot,
    ) -> Self {
        let (tx, calls) = mpsc::channel(4096);
        let (runs_tx, runs) = mpsc::channel(4096);
        let mut hub = EventHub::new(config.event_retention, config.event_buffer);
        let seed = std::hash::BuildHasher::hash_one(&std::hash::RandomState::new(), 0u8);
        let mut core = Core::new(config, seed);
        hub.restore(
            core.boot(SystemTime::now(), snapshot)
                .into_iter()
                .map(Arc::new),
        );
        let actor = Actor {
            core,
            agent: agent.clone(),
            hub,
            store,
            store_failed: None,
            pending: HashMap::new(),
            stops: HashMap::new(),
            timers: DelayQueue::new(),
            timer_keys: HashMap::new(),
            runs_tx,
        };
        let (stopped_tx, stopped) = watch::channel(None);
        let running = tokio::spawn(actor.run(calls, runs));
        tokio::spawn(async move {
            let reason = match running.await {
                Ok(()) => "the engine stopped".to_owned(),
                Err(e) if e.is_panic() => {
                    let panic = e.into_panic();
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic".to_owned());
                    tracing::error!(cause = %what, "the engine's actor panicked");
                    format!("the engine failed: {what}")
                }
                Err(e) => format!("the engine was cancelled: {e}"),
            };
            let _ = stopped_tx.send(Some(reason));
        });
        Self {
            tx,
            next_call: Arc::new(AtomicU64::new(1)),
            agent,
            started: Instant::now(),
            stopped,
        }
    }

    /// Resolves once the engine's actor has ended, with the reason (it should not while
    /// any handle is alive: this is how `serve` learns of a bug and stops serving).
    pub fn stopped(&self) -> impl std::future::Future<Output = String> + Send + 'static {
        let mut stopped = self.stopped.clone();
        async move {
            match stopped.wait_for(Option::is_some).await {
                Ok(reason) => reason.clone().unwrap_or_default(),
                Err(_) => "the engine stopped".to_owned(),
            }
        }
    }

    fn gone(&self) -> EngineError {
        let reason = self.stopped.borrow().clone();
        EngineError::Unavailable(reason.unwrap_or_else(|| "the engine has stopped".into()))
    }

    async fn call<T: FromAnswer>(&self, input: impl FnOnce(CallId) -> Input) -> Result<T> {
        let call = self.next_call.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        let msg = Msg::Call {
            call,
            input: input(call),
            reply,
        };
        self.tx.send(msg).await.map_err(|_| self.gone())?;
        T::from_answer(answer.await.map_err(|_| self.gone())?)
    }

    /// Submits one task. Field names in errors are the spec's (`prompt`).
    pub async fn submit(&self, spec: super::model::task::TaskSpec) -> Result<super::Task> {
        let mut tasks: Vec<super::Task> = self
            .call(|call| Input::Submit {
                call,
                specs: vec![spec],
                batch: false,
            })
            .await?;
        tasks
            .pop()
            .ok_or_else(|| EngineError::Internal("a submission answered no task".into()))
    }

    /// Submits tasks all or nothing; they may depend on each other by client-chosen id.
    /// Field names in errors are `tasks[i].field`.
    pub async fn submit_batch(
        &self,
        specs: Vec<super::model::task::TaskSpec>,
    ) -> Result<Vec<super::Task>> {
        self.call(|call| Input::Submit {
            call,
            specs,
            batch: true,
        })
        .await
    }

    pub async fn task(&self, id: TaskId) -> Result<super::Task> {
        self.call(|call| Input::GetTask { call, id }).await
    }

    pub async fn list_tasks(&self, query: super::TaskQuery) -> Result<super::TaskPage> {
        self.call(|call| Input::ListTasks { call, query }).await
    }

    /// Cancels a task; for a running one, answers once its process group is gone.
    pub async fn cancel_task(&self, id: TaskId) -> Result<super::Task> {
        self.call(|call| Input::CancelTask { call, id }).await
    }

    pub async fn spawn_instances(
        &self,
        count: u32,
        working_directory: Option<std::path::PathBuf>,
    ) -> Result<Vec<super::Instance>> {
        self.call(|call| Input::Spawn {
            call,
            count,
            working_directory,
        })
        .await
    }

    /// Live instances in creation order, with what their running agents use now.
    pub async fn instances(&self) -> Result<Vec<super::Instance>> {
        let instances: Vec<super::Instance> =
            self.call(|call| Input::ListInstances { call }).await?;
        Ok(instances.into_iter().map(|i| self.measured(i)).collect())
    }

    pub async fn instance(&self, id: String) -> Result<super::Instance> {
        let instance = self.call(|call| Input::GetInstance { call, id }).await?;
        Ok(self.measured(instance))
    }

    fn measured(&self, mut instance: super::Instance) -> super::Instance {
        instance.resources = instance.pid.and_then(|pid| self.agent.usage(pid));
        instance
    }

    /// Stops an instance now; a task running on it fails. Answers once its process is gone.
    pub async fn terminate_instance(&self, id: String) -> Result<super::Instance> {
        self.call(|call| Input::Terminate { call, id }).await
    }

    /// Spawns or stops instances to reach `target` live ones; returns the live instances.
    pub async fn scale(&self, target: i64) -> Result<Vec<super::Instance>> {
        self.call(|call| Input::Scale { call, target }).await
    }

    pub async fn execute_workflow(
        &self,
        plan: super::workflow::WorkflowPlan,
    ) -> Result<super::WorkflowInfo> {
        self.call(|call| Input::ExecuteWorkflow {
            call,
            plan: Box::new(plan),
        })
        .await
    }

    pub async fn workflow(&self, id: String) -> Result<super::WorkflowInfo> {
        self.call(|call| Input::GetWorkflow { call, id }).await
    }

    pub async fn workflows(&self) -> Result<Vec<super::WorkflowInfo>> {
        self.call(|call| Input::ListWorkflows { call }).await
    }

    /// Cancels every unfinished task of the workflow; answers once none is running.
    pub async fn cancel_workflow(&self, id: String) -> Result<super::WorkflowInfo> {
        self.call(|call| Input::CancelWorkflow { call, id }).await
    }

    pub async fn status(&self) -> Result<super::SwarmStatus> {
        let mut status: super::SwarmStatus = self.call(|call| Input::Status { call }).await?;
        status.uptime = self.started.elapsed();
        status.agent = self.agent.describe();
        Ok(status)
    }

    /// Events after `after` (see [`EventHub::subscribe`]), then live ones.
    pub async fn subscribe(&self, after: Option<u64>, filter: EventFilter) -> Result<Subscription> {
        let (reply, answer) = oneshot::channel();
        let msg = Msg::Subscribe {
            after,
            filter,
            reply,
        };
        self.tx.send(msg).await.map_err(|_| self.gone())?;
        answer.await.map_err(|_| self.gone())?
    }

    /// Stops every running task (their processes are stopped, the tasks end CANCELLED)
    /// and stops dispatching. Waits at most `limit`.
    pub async fn shutdown(&self, limit: Duration) {
        let stopped = async {
            let _: Result<()> = self.call(|call| Input::Shutdown { call }).await;
            self.agent.shutdown().await;
        };
        let _ = tokio::time::timeout(limit, stopped).await;
    }
}

/// Takes the expected answer out of an [`Answer`].
trait FromAnswer: Sized {
    fn from_answer(answer: Answer) -> Result<Self>;
}

macro_rules! from_answer {
    ($($ty:ty => $variant:ident),+ $(,)?) => {$(
        impl FromAnswer for $ty {
            fn from_answer(answer: Answer) -> Result<Self> {
                match answer {
                    Answer::$variant(value) => value,
                    other => Err(unexpected(stringify!($variant), &other)),
                }
            }
        }
    )+};
}

from_answer! {
    super::Task => Task,
    Vec<super::Task> => Tasks,
    super::TaskPage => TaskPage,
    super::Instance => Instance,
    Vec<super::Instance> => Instances,
    super::WorkflowInfo => Workflow,
    Vec<super::WorkflowInfo> => Workflows,
}

impl FromAnswer for super::SwarmStatus {
    fn from_answer(answer: Answer) -> Result<Self> {
        match answer {
            Answer::Status(value) => *value,
            other => Err(unexpected("Status", &other)),
        }
    }
}

impl FromAnswer for () {
    fn from_answer(answer: Answer) -> Result<Self> {
        match answer {
            Answer::Done => Ok(()),
            other => Err(unexpected("Done", &other)),
        }
    }
}

fn unexpected(wanted: &str, got: &Answer) -> EngineError {
    EngineError::Internal(format!("expected a {wanted} answer, got {got:?}"))
}

/// The same kind of answer, failed with `error` (the turn could not be stored).
fn failed(answer: Answer, error: &EngineError) -> Answer {
    let e = error.clone();
    match answer {
        Answer::Task(_) => Answer::Task(Err(e)),
        Answer::Tasks(_) => Answer::Tasks(Err(e)),
        Answer::TaskPage(_) => Answer::TaskPage(Err(e)),
        Answer::Instance(_) => Answer::Instance(Err(e)),
        Answer::Instances(_) => Answer::Instances(Err(e)),
        Answer::Workflow(_) => Answer::Workflow(Err(e)),
        Answer::Workflows(_) => Answer::Workflows(Err(e)),
        Answer::Status(_) => Answer::Status(Box::new(Err(e))),
        Answer::Done => Answer::Done,
    }
}

struct Actor {
    core: Core,
    agent: Arc<dyn Agent>,
    hub: EventHub,
    /// Where state is kept across restarts; `None` keeps it in memory only.
    store: Option<StoreThread>,
    /// Set once a commit failed: nothing more is acknowledged.
    store_failed: Option<StoreError>,
    /// Callers waiting for their answer.
    pending: HashMap<CallId, oneshot::Sender<Answer>>,
    /// How to stop each run in flight.
    stops: HashMap<TaskId, oneshot::Sender<StopReason>>,
    timers: DelayQueue<Timer>,
    timer_keys: HashMap<Timer, delay_queue::Key>,
    /// Given to runs, to report back.
    runs_tx: mpsc::Sender<(TaskId, RunEvent)>,
}

impl Actor {
    /// Handles what has arrived (up to [`MAX_TURN`] inputs), then ends the turn. Runs until
    /// every handle is gone.
    async fn run(
        mut self,
        mut calls: mpsc::Receiver<Msg>,
        mut runs: mpsc::Receiver<(TaskId, RunEvent)>,
    ) {
        // The boot turn: restored work is stored and dispatched before the first call.
        self.end_turn().await;
        loop {
            tokio::select! {
                msg = calls.recv() => match msg {
                    Some(msg) => self.on_msg(msg),
                    None => break,
                },
                Some((task, event)) = runs.recv() => self.on_run(task, event),
                Some(expired) = self.timers.next(), if !self.timers.is_empty() => {
                    self.on_timer(expired.into_inner());
                }
            }
            for _ in 1..MAX_TURN {
                if let Ok(msg) = calls.try_recv() {
                    self.on_msg(msg);
                } else if let Ok((task, event)) = runs.try_recv() {
                    self.on_run(task, event);
                } else {
                    break;
                }
            }
            self.end_turn().await;
        }
    }

    fn handle(&mut self, input: Input) {
        self.core.handle(SystemTime::now(), input);
    }

    fn on_msg(&mut self, msg: Msg) {
        match msg {
            Msg::Call { call, input, reply } => {
                self.pending.insert(call, reply);
                self.handle(input);
            }
            Msg::Subscribe {
                after,
                filter,
                reply,
            } => {
                let _ = reply.send(self.hub.subscribe(after, filter));
            }
        }
    }

    fn on_run(&mut self, task: TaskId, event: RunEvent) {
        let input = match event {
            RunEvent::Started { pid } => Input::RunStarted { task, pid },
            RunEvent::Output(output) => Input::Output { task, output },
            RunEvent::RateLimited { until } => Input::RateLimited { until },
            RunEvent::Finished(outcome) => {
                self.stops.remove(&task);
                Input::RunFinished { task, outcome }
            }
        };
        self.handle(input);
    }

    fn on_timer(&mut self, timer: Timer) {
        self.timer_keys.remove(&timer);
        self.handle(Input::TimerFired(timer));
    }

    async fn end_turn(&mut self) {
        let Turn { batch, effects } = self.core.end_turn();
        let events = batch.events.clone();
        self.commit(batch).await;
        self.hub.broadcast(events);
        let failed_with = self.store_failed.clone().map(EngineError::Store);
        for effect in effects {
            match effect {
                Effect::StartRun(request) => self.start_run(*request),
                Effect::StopRun { task, reason } => {
                    if let Some(stop) = self.stops.remove(&task) {
                        let _ = stop.send(reason);
                    }
                }
                Effect::ArmTimer { after, timer } => match self.timer_keys.get(&timer) {
                    Some(key) => self.timers.reset(key, after),
                    None => {
                        let key = self.timers.insert(timer.clone(), after);
                        self.timer_keys.insert(timer, key);
                    }
                },
                Effect::DisarmTimer(timer) => {
                    if let Some(key) = self.timer_keys.remove(&timer) {
                        self.timers.remove(&key);
                    }
                }
                Effect::RetireInstance(id) => self.agent.retire(&id),
                Effect::Reply { call, answer } => {
                    let answer = match &failed_with {
                        Some(error) => failed(*answer, error),
                        None => *answer,
                    };
                    if let Some(reply) = self.pending.remove(&call) {
                        let _ = reply.send(answer);
                    }
                }
            }
        }
    }

    async fn commit(&mut self, batch: Batch) {
        let Some(store) = &self.store else { return };
        if self.store_failed.is_some() || batch.is_empty() {
            return;
        }
        if let Err(error) = store.commit(batch).await {
            tracing::error!(cause = %error, "storing state failed; refusing further changes");
            self.store_failed = Some(error);
        }
    }

    fn start_run(&mut self, request: RunRequest) {
        let task = request.task_id.clone();
        let (stop_tx, stop_rx) = oneshot::channel();
        self.stops.insert(task.clone(), stop_tx);
        let sink = OutputSink::new(task, self.runs_tx.clone());
        let agent = self.agent.clone();
        tokio::spawn(async move {
            // A dropped sender (the actor is gone) stops the run as a shutdown would.
            let stop: StopSignal =
                Box::pin(async move { stop_rx.await.unwrap_or(StopReason::Shutdown) });
            let outcome = agent.run(request, sink.clone(), stop).await;
            sink.finished(outcome).await;
        });
    }
}

/// Runs a [`Store`] on its own thread so its blocking I/O never stalls the async runtime.
struct StoreThread {
    tx: mpsc::UnboundedSender<(Batch, oneshot::Sender<Result<(), StoreError>>)>,
}

impl StoreThread {
    fn spawn(mut store: Box<dyn Store>) -> Result<Self, StoreError> {
        let (tx, mut rx) =
            mpsc::unbounded_channel::<(Batch, oneshot::Sender<Result<(), StoreError>>)>();
        std::thread::Builder::new()
            .name("swarm-store".into())
            .spawn(move || {
                while let Some((batch, done)) = rx.blocking_recv() {
                    let _ = done.send(store.commit(&batch));
                }
            })
            .map_err(|e| StoreError::File {
                path: String::new(),
                what: "cannot start the store's thread",
                cause: e.to_string(),
            })?;
        Ok(Self { tx })
    }

    /// Stores `batch`; resolves once it is durable.
    async fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send((batch, done))
            .map_err(|_| StoreError::Stopped)?;
        wait.await.map_err(|_| StoreError::Stopped)?
    }
}
