//! The actor: one tokio task that owns the [`Core`], feeds it what arrives (calls from
//! `Engine` handles, reports from runs, timers), and executes the effects of each turn:
//! the turn's changes are stored in one batch (group commit) before any caller is answered
//! or any event is sent, then runs are started or stopped and timers armed. It is the only
//! place in the engine that spawns or sleeps.

use std::{collections::HashMap, sync::Arc, time::SystemTime};

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
pub(super) enum Msg {
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

/// Starts the actor on the current runtime: `snapshot` comes back first, then it takes
/// messages on the returned sender until every sender is gone. The receiver says why the
/// actor ended, once it has (it should not while a handle is alive: a panic is a bug).
pub(super) fn spawn(
    config: EngineConfig,
    agent: Arc<dyn Agent>,
    store: Option<Box<dyn Store>>,
    snapshot: Snapshot,
) -> Result<(mpsc::Sender<Msg>, watch::Receiver<Option<String>>), StoreError> {
    let store = store.map(StoreThread::spawn).transpose()?;
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
    Ok((tx, stopped))
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
                Effect::Reap(leftover) => self.agent.reap(&leftover),
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
