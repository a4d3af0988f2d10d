//! A node's side of the link while another node owns the database: it finds the owner (its
//! address and the link secret, in the database), attaches, lends its instances and runs
//! what it is given with its own agent, sending every report back. When the link ends or
//! the owner is silent for a lease, every run it has is stopped (the owner hands them to
//! others) and it attaches again, to whichever node owns the database by then.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::{
    sync::{mpsc, oneshot, watch},
    task::JoinSet,
};
use tokio_stream::{StreamExt, wrappers::ReceiverStream};

use super::wire::{self, Down, ReportRow, Up};
use crate::{
    engine::{
        TaskId,
        ports::{Agent, OutputSink, PermissionDecision, RunEvent, RunRequest, StopReason},
    },
    pb::{LinkFrame, node_service_client::NodeServiceClient},
    store::rows::Row,
};

/// Where the owner is: its address and the database's link secret (`None` while no node
/// owns it). Blocking: it asks the database.
pub type FindOwner = Arc<dyn Fn() -> Option<(String, String)> + Send + Sync>;

/// This node, lending its instances to the owner.
pub struct Worker {
    pub node: String,
    pub instances: u32,
    pub agent: Arc<dyn Agent>,
    pub lease: Duration,
    pub find: FindOwner,
}

type Questions = Arc<std::sync::Mutex<HashMap<(TaskId, u64), oneshot::Sender<PermissionDecision>>>>;

impl Worker {
    /// Attaches to the owner (again and again) until `stop` turns true; returns once every
    /// run it started is over.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        while !*stop.borrow() {
            let find = self.find.clone();
            let owner = tokio::task::spawn_blocking(move || find())
                .await
                .ok()
                .flatten();
            if let Some((address, secret)) = owner {
                match self.attach(&address, secret, &mut stop).await {
                    Ok(()) => tracing::info!(owner = %address, "the link to the owner ended"),
                    Err(cause) => {
                        tracing::debug!(owner = %address, %cause, "cannot attach to the owner")
                    }
                }
            }
            tokio::select! {
                _ = stop.changed() => {}
                () = tokio::time::sleep(self.lease / 4) => {}
            }
        }
    }

    async fn attach(
        &self,
        address: &str,
        secret: String,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), String> {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
            .map_err(|e| e.to_string())?
            .connect_timeout(self.lease)
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        let (up, outbound) = mpsc::channel::<Up>(256);
        let hello = Up::Hello {
            node: self.node.clone(),
            instances: self.instances,
            secret,
        };
        up.send(hello).await.map_err(|e| e.to_string())?;
        let frames = ReceiverStream::new(outbound).map(|frame| LinkFrame {
            json: wire::encode(&frame),
        });
        // An owner frozen before it answers must not hold this node (nor its takeover).
        let mut client = NodeServiceClient::new(channel);
        let attached = tokio::select! {
            attached = tokio::time::timeout(self.lease, client.attach(frames)) => attached,
            _ = stop.changed() => return Ok(()),
        };
        let mut inbound = attached
            .map_err(|_| "the owner did not answer within the lease".to_owned())?
            .map_err(|e| e.message().to_owned())?
            .into_inner();
        tracing::info!(owner = %address, node = %self.node, "attached to the owner; lending {} instances", self.instances);
        let mut runs: HashMap<TaskId, (u32, oneshot::Sender<StopReason>)> = HashMap::new();
        let questions = Questions::default();
        // Set once the link is over: runs stopped then report nothing (the owner hands
        // their tasks back to the queue; a report of their stop would fail them there).
        let leaving = Arc::new(AtomicBool::new(false));
        let mut running = JoinSet::new();
        let mut lent = Vec::new();
        let mut ping = tokio::time::interval(self.lease / 3);
        // Silence is counted from the last frame heard, whatever is sent meanwhile.
        let mut heard = tokio::time::Instant::now();
        loop {
            let frame = tokio::select! {
                frame = tokio::time::timeout_at(heard + self.lease, inbound.message()) => frame,
                _ = ping.tick() => {
                    if up.send(Up::Ping).await.is_err() {
                        break;
                    }
                    continue;
                }
                _ = stop.changed() => break,
                Some(Ok((task, attempt))) = running.join_next() => {
                    if runs.get(&task).is_some_and(|(a, _)| *a == attempt) {
                        runs.remove(&task);
                    }
                    continue;
                }
            };
            let Ok(Ok(Some(frame))) = frame else {
                break;
            };
            heard = tokio::time::Instant::now();
            match wire::decode::<Down>(&frame.json) {
                Some(Down::Welcome { instances }) => lent = instances,
                Some(Down::Ping) => {}
                Some(Down::Run(row)) => {
                    let request: RunRequest = *row.into_domain();
                    let (stop_tx, stop_rx) = oneshot::channel();
                    runs.insert(request.task_id.clone(), (request.attempt, stop_tx));
                    running.spawn(run_one(
                        self.agent.clone(),
                        request,
                        stop_rx,
                        (up.clone(), leaving.clone()),
                        questions.clone(),
                    ));
                }
                Some(Down::Stop {
                    task,
                    attempt,
                    reason,
                }) => {
                    if runs.get(&task).is_some_and(|(a, _)| *a == attempt)
                        && let Some((_, stop)) = runs.remove(&task)
                    {
                        let _ = stop.send(reason.into_domain());
                    }
                }
                Some(Down::Answer {
                    task,
                    ask,
                    decision,
                }) => {
                    let waiting = questions
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&(task, ask));
                    if let Some(reply) = waiting {
                        let _ = reply.send(decision.into_domain());
                    }
                }
                Some(Down::Prepare {
                    instance,
                    account,
                    working_directory,
                }) => self.agent.prepare(&instance, &account, working_directory),
                Some(Down::Retire { instance }) => self.agent.retire(&instance),
                None => break,
            }
        }
        // The owner hands these runs to others: none of them may go on here.
        leaving.store(true, Ordering::SeqCst);
        for (_, (_, stop)) in runs.drain() {
            let _ = stop.send(StopReason::InstanceTerminated);
        }
        while running.join_next().await.is_some() {}
        for instance in lent {
            self.agent.retire(&instance);
        }
        Ok(())
    }
}

/// Runs one task with this node's agent, every report sent up the link; the last is its
/// outcome. Answers `(task, attempt)` once the run is over.
async fn run_one(
    agent: Arc<dyn Agent>,
    request: RunRequest,
    stop: oneshot::Receiver<StopReason>,
    (up, leaving): (mpsc::Sender<Up>, Arc<AtomicBool>),
    questions: Questions,
) -> (TaskId, u32) {
    let (task, attempt) = (request.task_id.clone(), request.attempt);
    let (sink, mut reports) = OutputSink::detached(task.clone());
    // A stop sender dropped without a word (the run is over anyway) stops nothing.
    let stop = Box::pin(async move {
        match stop.await {
            Ok(reason) => reason,
            Err(_) => std::future::pending().await,
        }
    });
    let report = |report: ReportRow| Up::Report {
        task: task.clone(),
        attempt,
        report,
    };
    let forward = async {
        let mut asked = 0;
        while let Some(event) = reports.next().await {
            let row = match event {
                RunEvent::Ask { request, reply } => {
                    asked += 1;
                    questions
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert((task.clone(), asked), reply);
                    ReportRow::Ask {
                        ask: asked,
                        request: Box::new(Row::from_domain(&*request)),
                    }
                }
                other => match ReportRow::of(&other, asked) {
                    Some(row) => row,
                    None => continue,
                },
            };
            let _ = up.send(report(row)).await;
        }
    };
    let (outcome, ()) = tokio::join!(agent.run(request, sink, stop), forward);
    let finished = ReportRow::of(&RunEvent::Finished(Box::new(outcome)), 0);
    if let Some(row) = finished.filter(|_| !leaving.load(Ordering::SeqCst)) {
        let _ = up.send(report(row)).await;
    }
    (task, attempt)
}
