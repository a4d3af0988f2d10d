//! How long tasks wait and run, from the engine's events: one subscription, taken when the
//! server starts. A task's wait runs from its `task_queued` event to its `task_started`
//! (each attempt's); its run from `started_at` to `completed_at` of the task its terminal
//! event carries, by the state it ended in.

use std::{collections::HashMap, time::SystemTime};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{family::Family, histogram::Histogram},
    registry::{Registry, Unit},
};
use tokio::sync::{mpsc, oneshot, watch};

use crate::engine::{
    Engine, EngineError, Event, EventFilter, EventKind, Payload, TaskId, events::Subscription,
};

/// Bounds of the wait and run buckets, in seconds: from 10 ms to an hour.
const TASK_BUCKETS: [f64; 14] = [
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

fn task_histogram() -> Histogram {
    Histogram::new(TASK_BUCKETS)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndLabel {
    /// The state the task ended in.
    status: &'static str,
}

const KINDS: [EventKind; 6] = [
    EventKind::TaskQueued,
    EventKind::TaskStarted,
    EventKind::TaskCompleted,
    EventKind::TaskFailed,
    EventKind::TaskCancelled,
    EventKind::TaskSkipped,
];

/// Subscribes to `engine`'s task events, registers the histograms they fill, and follows
/// them until `shutdown`. Each message on the returned sender is answered once every event
/// sent before it was taken in.
pub(super) async fn follow(
    engine: &Engine,
    registry: &mut Registry,
    shutdown: watch::Receiver<bool>,
) -> mpsc::Sender<oneshot::Sender<()>> {
    let filter = EventFilter {
        kinds: KINDS.to_vec(),
        ..EventFilter::default()
    };
    // Subscribed before the server serves, so no task it is asked to run is missed.
    let events = engine.subscribe(None, filter.clone()).await;
    let waits = task_histogram();
    registry.register_with_unit(
        "task_queue_wait",
        "Time tasks waited queued before they started",
        Unit::Seconds,
        waits.clone(),
    );
    let runs: Family<EndLabel, Histogram, fn() -> Histogram> =
        Family::new_with_constructor(task_histogram);
    registry.register_with_unit(
        "task_run",
        "Time tasks ran, by the state they ended in",
        Unit::Seconds,
        runs.clone(),
    );
    let (catch_up, requests) = mpsc::channel(16);
    match events {
        Ok(events) => {
            let follower = Follower {
                engine: engine.clone(),
                filter,
                last: None,
                queued: HashMap::new(),
                waits,
                runs,
            };
            tokio::spawn(follower.run(events, requests, shutdown));
        }
        // The engine has stopped already; the server is about to say so and exit.
        Err(error) => tracing::error!(cause = %error, "task times cannot be followed"),
    }
    catch_up
}

struct Follower {
    engine: Engine,
    filter: EventFilter,
    /// The last event taken in, to resume after if the subscription falls behind.
    last: Option<u64>,
    /// When each task waiting in the queue was queued.
    queued: HashMap<TaskId, SystemTime>,
    waits: Histogram,
    runs: Family<EndLabel, Histogram, fn() -> Histogram>,
}

/// What to do after an event.
enum Next {
    Go,
    /// The subscription fell behind: subscribe again after the last event taken in.
    Resubscribe,
    /// The engine stopped.
    Stop,
}

impl Follower {
    async fn run(
        mut self,
        mut events: Subscription,
        mut requests: mpsc::Receiver<oneshot::Sender<()>>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            let next = tokio::select! {
                item = events.next() => self.take(item),
                Some(done) = requests.recv() => {
                    let next = self.take_sent(&mut events).await;
                    let _ = done.send(());
                    next
                }
                // The guard `wait_for` answers with must not live on in the select.
                () = async { drop(shutdown.wait_for(|down| *down).await) } => Next::Stop,
            };
            match next {
                Next::Go => {}
                Next::Stop => return,
                Next::Resubscribe => {
                    let again = match self.engine.subscribe(self.last, self.filter.clone()).await {
                        // Too far behind to resume: carry on with what comes next.
                        Err(EngineError::DataLoss(_)) => {
                            self.engine.subscribe(None, self.filter.clone()).await
                        }
                        other => other,
                    };
                    let Ok(again) = again else { return };
                    events = again;
                }
            }
        }
    }

    /// Takes in every event already sent, without waiting for more.
    async fn take_sent(&mut self, events: &mut Subscription) -> Next {
        loop {
            let item = tokio::select! {
                biased;
                item = events.next() => item,
                () = std::future::ready(()) => return Next::Go,
            };
            match self.take(item) {
                Next::Go => {}
                other => return other,
            }
        }
    }

    fn take(&mut self, item: Option<Result<std::sync::Arc<Event>, EngineError>>) -> Next {
        match item {
            None => Next::Stop,
            Some(Err(_)) => Next::Resubscribe,
            Some(Ok(event)) => {
                self.last = Some(event.sequence);
                self.record(&event);
                Next::Go
            }
        }
    }

    fn record(&mut self, event: &Event) {
        let Some(id) = &event.task_id else { return };
        match event.kind {
            EventKind::TaskQueued => {
                self.queued.insert(id.clone(), event.time);
            }
            EventKind::TaskStarted => {
                if let Some(since) = self.queued.remove(id) {
                    self.waits.observe(seconds(since, event.time));
                }
            }
            _ => {
                self.queued.remove(id);
                if let Payload::Task(task) = &event.payload
                    && let (Some(started), Some(ended)) = (task.started_at, task.completed_at)
                {
                    let label = EndLabel {
                        status: task.status.as_str(),
                    };
                    self.runs
                        .get_or_create(&label)
                        .observe(seconds(started, ended));
                }
            }
        }
    }
}

fn seconds(from: SystemTime, to: SystemTime) -> f64 {
    to.duration_since(from).unwrap_or_default().as_secs_f64()
}
