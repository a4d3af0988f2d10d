//! The engine in-process, no agent processes: the instant agent (shared with the benchmark
//! harness) behind a real server, and what happens when the engine's actor or its store fails.

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use claude_swarm::{
    agent::instant::InstantAgent,
    engine::{
        Engine, EngineError, EventFilter, FailureClass, TaskSpec,
        ports::{
            Agent, Batch, BoxFuture, OutputSink, RunOutcome, RunRequest, Snapshot, StopSignal,
            Store, StoreError,
        },
    },
    pb::{self, TaskStatus as S},
};
use common::{TestServer, config, spec, status};
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

#[tokio::test]
async fn a_chain_of_a_thousand_in_process_tasks_completes_in_order() {
    let server = TestServer::start_with_agent(config(4), InstantAgent::default()).await;
    let tasks: Vec<pb::TaskSpec> = (0..1000)
        .map(|i| pb::TaskSpec {
            id: format!("t{i}"),
            depends_on: if i == 0 {
                vec![]
            } else {
                vec![format!("t{}", i - 1)]
            },
            ..spec("step")
        })
        .collect();
    server
        .tasks()
        .submit_tasks(pb::SubmitTasksRequest { tasks })
        .await
        .unwrap();
    let last = server.wait("t999").await;
    assert_eq!(status(&last), S::Completed);
    let first = server.get("t0").await;
    let (first_end, last_start) = (first.completed_at.unwrap(), last.started_at.unwrap());
    assert!(
        (first_end.seconds, first_end.nanos) <= (last_start.seconds, last_start.nanos),
        "a dependent starts after its dependency ended"
    );
    server.stop().await;
}

/// An agent that runs tasks at once but panics when an instance is retired: a stand-in
/// for a bug in code the actor calls.
struct PanicsOnRetire(InstantAgent);

impl Agent for PanicsOnRetire {
    fn run(
        &self,
        request: RunRequest,
        sink: OutputSink,
        stop: StopSignal,
    ) -> BoxFuture<RunOutcome> {
        self.0.run(request, sink, stop)
    }

    fn describe(&self) -> String {
        "panics-on-retire".into()
    }

    fn retire(&self, _instance: &str) {
        panic!("retire went wrong");
    }
}

#[tokio::test]
async fn a_failed_engine_turns_health_not_serving_and_ends_serve_with_its_reason() {
    let server =
        TestServer::start_with_agent(config(1), PanicsOnRetire(InstantAgent::default())).await;
    let mut health = HealthClient::new(server.channel.clone());
    let mut watch = health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);
    let instance = server
        .instances()
        .list_instances(pb::ListInstancesRequest {})
        .await
        .unwrap()
        .into_inner()
        .instances[0]
        .id
        .clone();
    let error = server
        .instances()
        .terminate_instance(pb::TerminateInstanceRequest {
            instance_id: instance,
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::Unavailable, "{error:?}");
    let next = tokio::time::timeout(Duration::from_secs(10), watch.message())
        .await
        .expect("health changes")
        .unwrap()
        .unwrap();
    assert_eq!(next.status(), ServingStatus::NotServing);
    // The server then stops, with the reason as its error (`serve` exits non-zero).
    drop(watch);
    let ended = server.join().await.unwrap_err();
    assert!(ended.to_string().contains("retire went wrong"), "{ended}");
}

/// A store that stores nothing, counts its commits and, once told to, holds the next
/// commit until the test lets it go, then fails it.
struct FailingStore {
    commits: Arc<AtomicUsize>,
    fail: Arc<AtomicBool>,
    entered: std::sync::mpsc::Sender<()>,
    release: std::sync::mpsc::Receiver<()>,
}

impl Store for FailingStore {
    fn load(&mut self) -> Result<Snapshot, StoreError> {
        Ok(Snapshot::default())
    }

    fn commit(&mut self, _batch: &Batch) -> Result<(), StoreError> {
        self.commits.fetch_add(1, Ordering::SeqCst);
        if !self.fail.load(Ordering::SeqCst) {
            return Ok(());
        }
        let _ = self.entered.send(());
        let _ = self.release.recv();
        Err(StoreError::Stopped)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failed_commit_nothing_is_acknowledged_and_nothing_later_is_stored() {
    let commits = Arc::new(AtomicUsize::new(0));
    let fail = Arc::new(AtomicBool::new(false));
    let (entered_tx, entered) = std::sync::mpsc::channel();
    let (release, release_rx) = std::sync::mpsc::channel();
    let store = FailingStore {
        commits: commits.clone(),
        fail: fail.clone(),
        entered: entered_tx,
        release: release_rx,
    };
    // No instance: nothing runs, so only the calls below make turns.
    let engine = Engine::start_durable(
        config(0),
        Arc::new(InstantAgent::default()),
        Box::new(store),
    )
    .unwrap();
    engine.submit(TaskSpec::new("stored")).await.unwrap();
    fail.store(true, Ordering::SeqCst);
    let held = tokio::spawn({
        let engine = engine.clone();
        async move { engine.submit(TaskSpec::new("its commit fails")).await }
    });
    let entered = tokio::task::spawn_blocking(move || entered.recv())
        .await
        .unwrap();
    entered.unwrap();
    let stored_before = commits.load(Ordering::SeqCst);
    // A call made while that commit is held: its turn goes behind it, or after it.
    let behind = tokio::spawn({
        let engine = engine.clone();
        async move { engine.submit(TaskSpec::new("behind it")).await }
    });
    release.send(()).unwrap();
    let held = held.await.unwrap();
    let behind = behind.await.unwrap();
    assert!(matches!(held, Err(EngineError::Store(_))), "{held:?}");
    assert!(matches!(behind, Err(EngineError::Store(_))), "{behind:?}");
    // Not even a read is answered now, and the store was asked for nothing more.
    let read = engine.list_tasks(Default::default()).await;
    assert!(matches!(read, Err(EngineError::Store(_))), "{read:?}");
    assert_eq!(commits.load(Ordering::SeqCst), stored_before);
}

/// A store that stores nothing and, once armed, holds its next commit until the test lets
/// it go.
struct HeldStore {
    armed: Arc<AtomicBool>,
    entered: std::sync::mpsc::Sender<()>,
    release: Option<std::sync::mpsc::Receiver<()>>,
}

impl Store for HeldStore {
    fn load(&mut self) -> Result<Snapshot, StoreError> {
        Ok(Snapshot::default())
    }

    fn commit(&mut self, _batch: &Batch) -> Result<(), StoreError> {
        if self.armed.load(Ordering::SeqCst)
            && let Some(release) = self.release.take()
        {
            let _ = self.entered.send(());
            let _ = release.recv();
        }
        Ok(())
    }
}

/// An agent whose runs say nothing (no message reaches the actor) until they are stopped;
/// each start is told to the test.
struct SilentAgent(tokio::sync::mpsc::UnboundedSender<String>);

impl Agent for SilentAgent {
    fn run(
        &self,
        request: RunRequest,
        _sink: OutputSink,
        stop: StopSignal,
    ) -> BoxFuture<RunOutcome> {
        let _ = self.0.send(request.task_id.to_string());
        Box::pin(async move {
            stop.await;
            RunOutcome::failed(FailureClass::Interrupted, "stopped")
        })
    }

    fn describe(&self) -> String {
        "silent".into()
    }
}

/// A turn with nothing to store, queued behind a slow commit and followed by a turn that
/// did store, is released with it once those commits are done, even when nothing else ever
/// arrives (it was not: the actor waited for a next input that never came).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turns_behind_a_slow_commit_are_answered_when_nothing_follows_them() {
    let (entered_tx, entered) = std::sync::mpsc::channel();
    let (release, release_rx) = std::sync::mpsc::channel();
    let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
    let armed = Arc::new(AtomicBool::new(false));
    let engine = Engine::start_durable(
        config(2),
        Arc::new(SilentAgent(started_tx)),
        Box::new(HeldStore {
            armed: armed.clone(),
            entered: entered_tx,
            release: Some(release_rx),
        }),
    )
    .unwrap();
    // Answered once the boot turn is stored and released: only later commits are held.
    engine.list_tasks(Default::default()).await.unwrap();
    armed.store(true, Ordering::SeqCst);
    // Turn A: a task that starts at once; its commit is held.
    let first = tokio::spawn({
        let engine = engine.clone();
        async move { engine.submit(TaskSpec::new("a")).await }
    });
    tokio::task::spawn_blocking(move || entered.recv())
        .await
        .unwrap()
        .unwrap();
    started.recv().await.unwrap();
    // Turn B: a subscription, answered within its turn; nothing to store.
    engine
        .subscribe(None, EventFilter::default())
        .await
        .unwrap();
    // Turn C: a task that stores and starts on the second instance, then nothing more.
    let second = tokio::spawn({
        let engine = engine.clone();
        async move { engine.submit(TaskSpec::new("c")).await }
    });
    started.recv().await.unwrap();
    release.send(()).unwrap();
    let (first, second) = tokio::time::timeout(Duration::from_secs(20), async {
        (first.await.unwrap(), second.await.unwrap())
    })
    .await
    .expect("every call is answered once the held commit is done");
    assert!(first.is_ok() && second.is_ok(), "{first:?} {second:?}");
}
