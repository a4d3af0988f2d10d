//! `GET /metrics`: the swarm in the OpenMetrics text format, which Prometheus scrapes.
//!
//! - From the engine's status, read at each scrape: tasks by state, queued tasks by
//!   priority, instances by state, running workflows, the cost, tokens and turns of every
//!   run so far, whether dispatching is paused (a rate limit, or the budget), uptime.
//! - From the requests ([`record`], the outermost layer, so refusals count too): requests
//!   by operation (as [`auth::access`](super::auth::access) names it) and code (the HTTP
//!   status, or the gRPC status name), with their durations.
//! - From the service: event streams open now (gRPC, SSE, WebSocket).
//! - From the engine's events, followed from the start ([`tasks`]): how long tasks waited
//!   in the queue and how long they ran.

mod accounts;
mod layer;
mod tasks;

use std::{
    sync::{Arc, atomic::AtomicU64},
    time::Duration,
};

use axum::{
    Extension,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use prometheus_client::{
    encoding::{
        EncodeLabelSet,
        text::{encode_eof, encode_registry},
    },
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::{Registry, Unit},
};
use tokio::sync::{mpsc, oneshot, watch};

pub(crate) use layer::code_name;
pub use layer::record;

use super::rest::ApiError;
use crate::engine::{Engine, EngineError, Priority, SwarmStatus, TaskStatus};

/// What `/metrics` answers with.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Bounds of the request duration buckets, in seconds.
const REQUEST_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    /// The operation, as the access table names it.
    operation: &'static str,
    /// The HTTP status (`200`), or the gRPC status name (`OK`, `PermissionDenied`).
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// The metrics kept between scrapes, and how to read the rest.
pub struct Metrics {
    /// Requests, streams and task times; the status metrics are made at each scrape.
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Histograms<OperationLabels>,
    subscribers: Gauge,
    engine: Engine,
    /// Asks the task follower to take in the events sent so far, so a scrape shows every
    /// task that ended before it.
    catch_up: mpsc::Sender<oneshot::Sender<()>>,
}

impl Metrics {
    /// The metrics of `engine`, following its task events until `shutdown`.
    pub async fn start(engine: Engine, shutdown: watch::Receiver<bool>) -> Arc<Self> {
        let mut registry = Registry::with_prefix("swarm");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "api_requests",
            "API requests by operation and code (HTTP status or gRPC status), refusals included",
            requests.clone(),
        );
        let durations: Histograms<OperationLabels> =
            Family::new_with_constructor(|| Histogram::new(REQUEST_BUCKETS));
        registry.register_with_unit(
            "api_request_duration",
            "Time from a request to its response (gRPC: to its status)",
            Unit::Seconds,
            durations.clone(),
        );
        let subscribers = Gauge::default();
        registry.register(
            "event_subscribers",
            "Event streams open now (gRPC, Server-Sent Events, WebSocket)",
            subscribers.clone(),
        );
        let catch_up = tasks::follow(&engine, &mut registry, shutdown).await;
        Arc::new(Self {
            registry,
            requests,
            durations,
            subscribers,
            engine,
            catch_up,
        })
    }

    /// The gauge of open event streams, for the service to keep.
    pub fn subscribers(&self) -> Gauge {
        self.subscribers.clone()
    }

    fn observe_request(&self, operation: &'static str, code: String, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels { operation, code })
            .inc();
        self.durations
            .get_or_create(&OperationLabels { operation })
            .observe(took.as_secs_f64());
    }

    /// Every metric, as text.
    pub async fn render(&self) -> Result<String, EngineError> {
        let status = self.engine.status().await?;
        let (done, caught_up) = oneshot::channel();
        if self.catch_up.send(done).await.is_ok() {
            // An error means the follower has stopped (shutdown): nothing more to take in.
            let _ = caught_up.await;
        }
        let mut now = Registry::with_prefix("swarm");
        register_status(&mut now, &status);
        let mut text = String::new();
        encode_registry(&mut text, &now)
            .and_then(|()| encode_registry(&mut text, &self.registry))
            .and_then(|()| encode_eof(&mut text))
            .map_err(|e| EngineError::Internal(format!("encoding the metrics: {e}")))?;
        Ok(text)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PriorityLabel {
    priority: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

fn as_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn gauge(value: u64) -> Gauge {
    let gauge = Gauge::default();
    gauge.set(as_i64(value));
    gauge
}

/// A gauge per label, set to its value.
fn gauges<L: Clone + std::hash::Hash + Eq>(
    values: impl IntoIterator<Item = (L, u64)>,
) -> Family<L, Gauge> {
    let family = Family::<L, Gauge>::default();
    for (label, value) in values {
        family.get_or_create(&label).set(as_i64(value));
    }
    family
}

/// The engine's status as metrics, made anew for each scrape.
fn register_status(registry: &mut Registry, s: &SwarmStatus) {
    let tasks = TaskStatus::ALL.iter().map(|status| {
        let label = StatusLabel {
            status: status.as_str(),
        };
        (label, s.tasks[status.index()])
    });
    registry.register("tasks", "Tasks by state", gauges(tasks));
    let queued = Priority::ALL.iter().map(|priority| {
        let label = PriorityLabel {
            priority: priority.as_str(),
        };
        (label, s.queued[priority.index()])
    });
    registry.register("queued_tasks", "Queued tasks by priority", gauges(queued));
    let instances = [
        ("idle", s.instances_idle),
        ("busy", s.instances_busy),
        ("stopping", s.instances_stopping),
    ]
    .map(|(status, count)| (StatusLabel { status }, count));
    registry.register("instances", "Live instances by state", gauges(instances));
    registry.register(
        "max_instances",
        "The configured most live instances",
        gauge(s.max_instances),
    );
    registry.register(
        "workflows_running",
        "Workflows not yet finished",
        gauge(s.workflows_running),
    );
    let paused = [
        ("rate_limit", s.paused.is_some()),
        ("budget", s.budget_spent.is_some()),
    ]
    .map(|(reason, is)| (ReasonLabel { reason }, u64::from(is)));
    registry.register(
        "dispatch_paused",
        "1 while nothing is dispatched: a rate limit until it lifts, or the budget is spent",
        gauges(paused),
    );
    accounts::register(registry, s);
    registry.register(
        "approvals_pending",
        "Tool calls waiting on a person's decision",
        gauge(s.approvals_pending),
    );

    let cost = Counter::<f64, AtomicU64>::default();
    cost.inc_by(s.total_cost_usd);
    registry.register("cost_usd", "US dollars spent by every run so far", cost);
    let tokens = Family::<KindLabel, Counter>::default();
    for (kind, count) in [
        ("input", s.usage.input_tokens),
        ("output", s.usage.output_tokens),
        ("cache_creation_input", s.usage.cache_creation_input_tokens),
        ("cache_read_input", s.usage.cache_read_input_tokens),
    ] {
        tokens.get_or_create(&KindLabel { kind }).inc_by(count);
    }
    registry.register("tokens", "Tokens of every run so far, by kind", tokens);
    let turns = Counter::<u64>::default();
    turns.inc_by(s.turns);
    registry.register("turns", "Agent turns of every run so far", turns);
    let uptime = Gauge::<f64, AtomicU64>::default();
    uptime.set(s.uptime.as_secs_f64());
    registry.register_with_unit(
        "uptime",
        "Time since the engine started",
        Unit::Seconds,
        uptime,
    );
}

/// `GET /metrics`.
pub async fn metrics(Extension(metrics): Extension<Arc<Metrics>>) -> Response {
    match metrics.render().await {
        Ok(text) => (StatusCode::OK, [(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(error) => ApiError::from(error).into_response(),
    }
}
