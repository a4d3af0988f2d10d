//! The actor: one tokio task that owns the [`Core`], feeds it what arrives (calls from
//! `Engine` handles, reports from runs, timers), and executes the effects of each turn:
//! runs are started or stopped and timers armed as soon as the core asks, while answers and
//! events wait until the turn's changes are stored in one batch (group commit). Storing a
//! turn overlaps the next: while the store writes turn N, the actor handles what arrives
//! and sends the turns after it; the store thread folds every turn waiting by then into
//! one transaction ([`Batch::fold`]). Answers and events are released in turn order, each
//! once its own turn and every turn before it are stored. It is the only place in the engine
//! that spawns or sleeps.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::{Duration, SystemTime},
};

use tokio::sync::{mpsc, oneshot, oneshot::error::TryRecvError, watch};
use tokio_stream::StreamExt;
use tokio_util::time::{DelayQueue, delay_queue};
use tracing::Instrument as _;

use super::{
    core::{Answer, AskId, CallId, Core, Effect, EngineConfig, Input, Timer, Turn},
    error::{EngineError, Result},
    events::{EventHub, Subscription},
    model::{
        event::{Event, EventFilter},
        task::{FailureClass, TaskId, TaskStatus},
    },
    ports::{
        Agent, Batch, OutputSink, PermissionDecision, RunEvent, RunRequest, Snapshot, StopReason,
        StopSignal, Store, StoreError,
    },
};

/// Inputs handled in one turn at most, before their changes are stored together.
const MAX_TURN: usize = 1024;

/// Turns whose changes may wait to be stored at once: one being written, the rest behind
/// it, folded into the next transaction. A turn that would make more waits for the oldest
/// first. Two (one behind the other) stored a turn at a time when the store was the
/// bottleneck; sixteen let a slow commit gather the turns behind it (BENCHMARKS.md).
const MAX_UNSTORED: usize = 16;

/// A turn whose answers and events wait for its changes to be stored.
struct Unstored {
    /// Resolves once its batch is durable; `None` when it had nothing to store (it waits
    /// only for the turns before it).
    stored: Option<oneshot::Receiver<Result<(), StoreError>>>,
    events: Vec<Arc<Event>>,
    answers: Vec<(CallId, Box<Answer>)>,
}

/// What a handle sends the actor.
pub(crate) enum Msg {
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
    /// What a run reports (through its `OutputSink`).
    Run(TaskId, RunEvent),
}

/// Starts the actor on the current runtime: `snapshot` comes back first, then it takes
/// messages on the returned sender until every sender is gone. The receiver says why the
/// actor ended, once it has (it should not while a handle is alive: a panic is a bug).
pub(super) fn spawn(
    config: EngineConfig,
    agent: Arc<dyn Agent>,
    store: Option<StoreThread>,
    snapshot: Snapshot,
) -> (mpsc::Sender<Msg>, watch::Receiver<Option<String>>) {
    let (tx, calls) = mpsc::channel(4096);
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
        answers: Vec::new(),
        unstored: VecDeque::new(),
        stops: HashMap::new(),
        asks: HashMap::new(),
        next_ask: 1,
        holds: HashMap::new(),
        timers: DelayQueue::new(),
        timer_keys: HashMap::new(),
        tx: tx.downgrade(),
    };
    let (stopped_tx, stopped) = watch::channel(None);
    let running = tokio::spawn(actor.run(calls));
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
    (tx, stopped)
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
        Answer::Approval(_) => Answer::Approval(Err(e)),
        Answer::Approvals(_) => Answer::Approvals(Err(e)),
        Answer::Done => Answer::Done,
        Answer::Schedule(_) => Answer::Schedule(Err(e)),
        Answer::Schedules(_) => Answer::Schedules(Err(e)),
        Answer::Account(_) => Answer::Account(Err(e)),
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
    /// This turn's answers, sent once its changes are stored.
    answers: Vec<(CallId, Box<Answer>)>,
    /// Ended turns not yet released, oldest first.
    unstored: VecDeque<Unstored>,
    /// How to stop each run in flight.
    stops: HashMap<TaskId, oneshot::Sender<StopReason>>,
    /// Runs' open questions about tool calls, and the task that asked.
    asks: HashMap<AskId, (TaskId, oneshot::Sender<PermissionDecision>)>,
    next_ask: AskId,
    /// Holds each run's timeout while the core says it waits on a person.
    holds: HashMap<TaskId, watch::Sender<bool>>,
    timers: DelayQueue<Timer>,
    timer_keys: HashMap<Timer, delay_queue::Key>,
    /// Given to runs, to report back on the same channel as calls; weak, so the actor
    /// ends once every handle and every run is gone.
    tx: mpsc::WeakSender<Msg>,
}

impl Actor {
    /// Handles what has arrived (up to [`MAX_TURN`] inputs), then ends the turn. Runs until
    /// every handle is gone.
    async fn run(mut self, mut inbox: mpsc::Receiver<Msg>) {
        // The boot turn: restored work is stored and dispatched before the first call.
        self.end_turn().await;
        // Subscribers are woken once the engine is quiet (see `EventHub::wake_at`). One
        // timer, armed at most once per deadline: a busy engine's turns do not each arm one.
        let wake = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(wake);
        let mut armed = false;
        loop {
            if !armed && let Some(at) = self.hub.wake_at() {
                wake.as_mut().reset(at);
                armed = true;
            }
            tokio::select! {
                msg = inbox.recv() => match msg {
                    Some(msg) => self.on_msg(msg),
                    None => break,
                },
                // Any unreleased turn keeps this armed: one with nothing to store resolves
                // at once, so no answer waits for an input that may never come.
                stored = oldest(&mut self.unstored), if !self.unstored.is_empty() => {
                    self.release_oldest(stored);
                    self.release_stored();
                    continue;
                }
                Some(expired) = self.timers.next(), if !self.timers.is_empty() => {
                    self.on_timer(expired.into_inner());
                }
                () = &mut wake, if armed => {
                    armed = false;
                    // Events published since it was armed move the deadline: armed again.
                    if self.hub.wake_at().is_some_and(|at| at <= tokio::time::Instant::now()) {
                        self.hub.wake();
                    }
                    continue;
                }
            }
            for _ in 1..MAX_TURN {
                match inbox.try_recv() {
                    Ok(msg) => self.on_msg(msg),
                    Err(_) => break,
                }
            }
            self.end_turn().await;
        }
        while !self.unstored.is_empty() {
            self.release_one().await;
        }
    }

    /// Hands the core one input and carries out what it asked at once, except answers:
    /// those wait until the turn's changes are stored.
    fn handle(&mut self, input: Input) {
        self.core.handle(SystemTime::now(), input);
        for effect in self.core.take_effects() {
            self.execute(effect);
        }
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
            Msg::Run(task, event) => self.on_run(task, event),
        }
    }

    fn on_run(&mut self, task: TaskId, event: RunEvent) {
        let input = match event {
            RunEvent::Started { pid } => Input::RunStarted { task, pid },
            RunEvent::Output(output) => Input::Output { task, output },
            RunEvent::Limit(report) => Input::Limit { task, report },
            RunEvent::ApiRetry => Input::ApiRetry { task },
            RunEvent::TimedOut => Input::TimerFired(Timer::Timeout(task)),
            RunEvent::Finished(outcome) => {
                self.stops.remove(&task);
                self.holds.remove(&task);
                // Questions the run left open are answered by nobody now.
                self.asks.retain(|_, (asker, _)| *asker != task);
                Input::RunFinished { task, outcome }
            }
            RunEvent::Ask { request, reply } => {
                let ask = self.next_ask;
                self.next_ask += 1;
                self.asks.insert(ask, (task.clone(), reply));
                Input::PermissionAsked { task, ask, request }
            }
            RunEvent::Denied(denial) => Input::PermissionDenied { task, denial },
        };
        self.handle(input);
    }

    fn on_timer(&mut self, timer: Timer) {
        self.timer_keys.remove(&timer);
        self.handle(Input::TimerFired(timer));
    }

    /// Ends the turn: its effects are carried out, its batch goes to the store behind the
    /// turns before it, and whatever is stored by now is released.
    async fn end_turn(&mut self) {
        let Turn { batch, effects } = self.core.end_turn();
        for effect in effects {
            self.execute(effect);
        }
        let events = batch.events.clone();
        let stored = match &self.store {
            Some(store) if self.store_failed.is_none() && !batch.is_empty() => {
                Some(store.send(batch))
            }
            _ => None,
        };
        self.unstored.push_back(Unstored {
            stored,
            events,
            answers: std::mem::take(&mut self.answers),
        });
        self.release_stored();
        while self.unstored.len() > MAX_UNSTORED {
            self.release_one().await;
        }
    }

    /// Releases the oldest turns, as long as each is stored (or had nothing to store).
    fn release_stored(&mut self) {
        while let Some(turn) = self.unstored.front_mut() {
            let stored = match &mut turn.stored {
                None => Ok(()),
                Some(done) => match done.try_recv() {
                    Ok(stored) => stored,
                    Err(TryRecvError::Empty) => return,
                    Err(TryRecvError::Closed) => Err(StoreError::Stopped),
                },
            };
            self.release_oldest(stored);
        }
    }

    /// Waits for the oldest turn to be stored, then releases it and every turn behind it
    /// that is stored by now.
    async fn release_one(&mut self) {
        let stored = oldest(&mut self.unstored).await;
        self.release_oldest(stored);
        self.release_stored();
    }

    /// The oldest turn is stored (or its batch failed): its events go out, then its
    /// answers; once a commit fails, nothing more is acknowledged.
    fn release_oldest(&mut self, stored: Result<(), StoreError>) {
        let Some(turn) = self.unstored.pop_front() else {
            return;
        };
        if let Err(error) = stored
            && self.store_failed.is_none()
        {
            tracing::error!(cause = %error, "storing state failed; refusing further changes");
            self.store_failed = Some(error);
        }
        self.hub.broadcast(turn.events);
        let failed_with = self.store_failed.clone().map(EngineError::Store);
        for (call, answer) in turn.answers {
            let answer = match &failed_with {
                Some(error) => failed(*answer, error),
                None => *answer,
            };
            if let Some(reply) = self.pending.remove(&call) {
                let _ = reply.send(answer);
            }
        }
    }

    fn execute(&mut self, effect: Effect) {
        match effect {
            Effect::StartRun { request, timeout } => self.start_run(*request, timeout),
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
            Effect::RetireInstance(id) => self.agent.retire(&id),
            Effect::Reap(leftover) => self.agent.reap(&leftover),
            Effect::PrepareInstance {
                instance,
                account,
                working_directory,
            } => self.agent.prepare(&instance, &account, working_directory),
            Effect::Reply { call, answer } => self.answers.push((call, answer)),
            Effect::AnswerPermission { ask, decision } => {
                if let Some((_, reply)) = self.asks.remove(&ask) {
                    let _ = reply.send(decision);
                }
            }
            Effect::HoldTimeout { task, held } => {
                if let Some(hold) = self.holds.get(&task) {
                    hold.send_replace(held);
                }
            }
        }
    }

    fn start_run(&mut self, request: RunRequest, timeout: Duration) {
        let task = request.task_id.clone();
        let (stop_tx, stop_rx) = oneshot::channel();
        self.stops.insert(task.clone(), stop_tx);
        let (hold_tx, held) = watch::channel(false);
        self.holds.insert(task.clone(), hold_tx);
        let Some(tx) = self.tx.upgrade() else {
            // Every handle is gone: nobody would hear of this run.
            return;
        };
        // Whatever the agent logs of this run carries these fields.
        let span = tracing::info_span!(
            "run",
            task_id = %task,
            instance_id = %request.instance_id,
            workflow_id = request.workflow_id.as_deref(),
            attempt = request.attempt,
        );
        let sink = OutputSink::new(task, tx);
        let agent = self.agent.clone();
        let run = async move {
            // A dropped sender (the actor is gone) stops the run as a shutdown would.
            let stop: StopSignal =
                Box::pin(async move { stop_rx.await.unwrap_or(StopReason::Shutdown) });
            let run = agent.run(request, sink.clone(), stop);
            tokio::pin!(run);
            let outcome = match run_within(&mut run, timeout, held).await {
                Some(outcome) => outcome,
                None => {
                    // The core decides what a timeout does (it stops the run).
                    sink.timed_out().await;
                    run.await
                }
            };
            if outcome.status == TaskStatus::Failed {
                tracing::warn!(
                    class = outcome.class.map(FailureClass::as_str),
                    error = outcome.error.as_deref(),
                    "the run failed"
                );
            }
            sink.finished(outcome).await;
        };
        tokio::spawn(run.instrument(span));
    }
}

/// Resolves with how storing the oldest unstored turn went (at once when it had nothing
/// to store).
async fn oldest(unstored: &mut VecDeque<Unstored>) -> Result<(), StoreError> {
    match unstored.front_mut().and_then(|turn| turn.stored.as_mut()) {
        Some(done) => done.await.unwrap_or(Err(StoreError::Stopped)),
        None => Ok(()),
    }
}

/// Waits for `run` for at most `timeout`, not counting the time `held` says it waits on
/// a person; `None` once the time is up.
async fn run_within<F: std::future::Future + Unpin>(
    run: &mut F,
    timeout: Duration,
    mut held: watch::Receiver<bool>,
) -> Option<F::Output> {
    let mut left = timeout;
    loop {
        if *held.borrow_and_update() {
            tokio::select! {
                biased;
                outcome = &mut *run => return Some(outcome),
                changed = held.changed() => if changed.is_err() {
                    // The actor is gone: the time counts again.
                    return tokio::time::timeout(left, run).await.ok();
                },
            }
            continue;
        }
        let since = tokio::time::Instant::now();
        // Biased: a run that is over at its first poll never arms a timer.
        tokio::select! {
            biased;
            outcome = &mut *run => return Some(outcome),
            () = tokio::time::sleep(left) => return None,
            changed = held.changed() => {
                left = left.saturating_sub(since.elapsed());
                if changed.is_err() {
                    return tokio::time::timeout(left, run).await.ok();
                }
            }
        }
    }
}

/// Runs a [`Store`] on its own thread so its blocking I/O never stalls the async runtime.
pub(super) struct StoreThread {
    tx: mpsc::UnboundedSender<(Batch, oneshot::Sender<Result<(), StoreError>>)>,
}

impl StoreThread {
    pub(super) fn spawn(mut store: Box<dyn Store>) -> Result<Self, StoreError> {
        let (tx, mut rx) =
            mpsc::unbounded_channel::<(Batch, oneshot::Sender<Result<(), StoreError>>)>();
        std::thread::Builder::new()
            .name("swarm-store".into())
            .spawn(move || {
                // Once a batch fails, the ones sent behind it are refused: a later turn's
                // changes are never stored without an earlier one's.
                let mut failed: Option<StoreError> = None;
                while let Some(first) = rx.blocking_recv() {
                    // Every turn waiting by now is stored with this one (group commit
                    // across turns), each answered once all of them are.
                    let mut waiting = vec![first];
                    while let Ok(next) = rx.try_recv() {
                        waiting.push(next);
                    }
                    for (batch, answers) in Batch::fold(waiting) {
                        let stored = match &failed {
                            Some(error) => Err(error.clone()),
                            None => store.commit(&batch),
                        };
                        if let Err(error) = &stored {
                            failed.get_or_insert_with(|| error.clone());
                        }
                        for done in answers {
                            let _ = done.send(stored.clone());
                        }
                    }
                }
            })
            .map_err(|e| StoreError::File {
                path: String::new(),
                what: "cannot start the store's thread",
                cause: e.to_string(),
            })?;
        Ok(Self { tx })
    }

    /// Sends `batch` to be stored after the ones sent before it; the receiver resolves
    /// once it is durable (closed: the store's thread is gone).
    fn send(&self, batch: Batch) -> oneshot::Receiver<Result<(), StoreError>> {
        let (done, stored) = oneshot::channel();
        // A thread that is gone drops `done`: the receiver reads that as Stopped.
        let _ = self.tx.send((batch, done));
        stored
    }
}
