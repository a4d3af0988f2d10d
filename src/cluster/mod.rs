//! Several nodes on one PostgreSQL database, every one of them running tasks. The node that
//! owns the database (its lease, see `store::postgres`) runs the swarm's one engine; every
//! other node attaches to it over the node link ([`leader`], [`worker`]) and lends it its
//! instances: the owner's scheduler dispatches to them like to its own (by priority, then
//! first come, across the whole swarm), and [`ClusterAgent`] sends their runs over the link.
//! A node whose link ends or goes silent for a lease loses its instances; what ran there
//! goes back to the queue, and reports of those runs that arrive late are refused. When the
//! owner goes, a node takes the database over and the others attach to it. Every node
//! serves its port: one that does not own the database forwards it there ([`forward`]).

pub mod forward;
pub mod leader;
mod wire;
pub mod worker;

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::SystemTime,
};

use tokio::sync::mpsc;

use crate::{
    engine::{
        FailureClass, TaskId,
        model::instance::remote_node,
        ports::{
            Agent, BoxFuture, Leftover, OutputSink, PermissionDecision, ResourceUse, RunOutcome,
            RunRequest, StopSignal,
        },
    },
    store::rows::Row,
};
use wire::{Down, ReportRow};

/// The nodes attached to this one (the owner), by name.
#[derive(Default)]
pub struct Links {
    nodes: Mutex<HashMap<String, Link>>,
}

struct Link {
    /// Tells this attachment from a later one of the same node.
    session: u64,
    /// The instances it lends, and when a frame of it last arrived.
    instances: u32,
    heard: SystemTime,
    down: mpsc::Sender<Down>,
    /// Runs in flight there, by task: the attempt and where its reports go.
    runs: HashMap<TaskId, (u32, mpsc::Sender<ReportRow>)>,
}

impl std::fmt::Debug for Links {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let nodes = self.nodes.lock().expect("links lock");
        f.debug_list().entries(nodes.keys()).finish()
    }
}

impl Links {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Link>> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `node` attaches as `session`, in place of any earlier attachment.
    fn attach(&self, node: &str, session: u64, instances: u32, down: mpsc::Sender<Down>) {
        let link = Link {
            session,
            instances,
            heard: SystemTime::now(),
            down,
            runs: HashMap::new(),
        };
        self.lock().insert(node.to_owned(), link);
    }

    /// `node`'s attachment `session` is over: its runs hear nothing more (and end).
    fn detach(&self, node: &str, session: u64) {
        let mut nodes = self.lock();
        if nodes.get(node).is_some_and(|l| l.session == session) {
            nodes.remove(node);
        }
    }

    /// A frame of `node`'s `session` arrived now.
    fn heard(&self, node: &str, session: u64) {
        if let Some(link) = self.lock().get_mut(node).filter(|l| l.session == session) {
            link.heard = SystemTime::now();
        }
    }

    /// Whether `session` is `node`'s current attachment.
    fn is_current(&self, node: &str, session: u64) -> bool {
        self.lock().get(node).is_some_and(|l| l.session == session)
    }

    /// A report from `node`'s `session` about `task`'s `attempt`, to the run waiting for it.
    /// Anything else (a run the owner gave up on, an older attempt) is refused: `false`.
    fn route(
        &self,
        node: &str,
        session: u64,
        task: &str,
        attempt: u32,
    ) -> Option<mpsc::Sender<ReportRow>> {
        let nodes = self.lock();
        let link = nodes.get(node).filter(|l| l.session == session)?;
        let (current, tx) = link.runs.get(task)?;
        (*current == attempt).then(|| tx.clone())
    }

    fn start_run(
        &self,
        node: &str,
        task: &str,
        attempt: u32,
        reports: mpsc::Sender<ReportRow>,
    ) -> Option<mpsc::Sender<Down>> {
        let mut nodes = self.lock();
        let link = nodes.get_mut(node)?;
        link.runs.insert(task.into(), (attempt, reports));
        Some(link.down.clone())
    }

    fn end_run(&self, node: &str, task: &str, attempt: u32) {
        if let Some(link) = self.lock().get_mut(node)
            && link.runs.get(task).is_some_and(|(a, _)| *a == attempt)
        {
            link.runs.remove(task);
        }
    }

    fn send(&self, node: &str, frame: Down) {
        if let Some(link) = self.lock().get(node) {
            // A node that cannot take a frame now is about to be dropped as silent.
            let _ = link.down.try_send(frame);
        }
    }

    /// The nodes attached now, by name: the instances each lends and when it was last
    /// heard from.
    pub fn attached(&self) -> Vec<(String, u32, SystemTime)> {
        let mut nodes: Vec<_> = self
            .lock()
            .iter()
            .map(|(name, link)| (name.clone(), link.instances, link.heard))
            .collect();
        nodes.sort_by(|a, b| a.0.cmp(&b.0));
        nodes
    }
}

/// This node's agent for its own instances, the link for other nodes'.
pub struct ClusterAgent {
    local: Arc<dyn Agent>,
    links: Arc<Links>,
}

impl ClusterAgent {
    pub fn new(local: Arc<dyn Agent>, links: Arc<Links>) -> Self {
        Self { local, links }
    }
}

impl Agent for ClusterAgent {
    fn run(
        &self,
        request: RunRequest,
        sink: OutputSink,
        stop: StopSignal,
    ) -> BoxFuture<RunOutcome> {
        let Some(node) = remote_node(&request.instance_id).map(str::to_owned) else {
            return self.local.run(request, sink, stop);
        };
        let links = self.links.clone();
        Box::pin(remote_run(links, node, request, sink, stop))
    }

    fn describe(&self) -> String {
        self.local.describe()
    }

    fn retire(&self, instance: &str) {
        match remote_node(instance) {
            Some(node) => self.links.send(
                node,
                Down::Retire {
                    instance: instance.to_owned(),
                },
            ),
            None => self.local.retire(instance),
        }
    }

    fn prepare(&self, instance: &str, account: &str, working_directory: PathBuf) {
        match remote_node(instance) {
            Some(node) => self.links.send(
                node,
                Down::Prepare {
                    instance: instance.to_owned(),
                    account: account.to_owned(),
                    working_directory,
                },
            ),
            None => self.local.prepare(instance, account, working_directory),
        }
    }

    fn shutdown(&self) -> BoxFuture<()> {
        self.local.shutdown()
    }

    fn reap(&self, leftover: &Leftover) {
        // Another node's runs leave nothing on this machine (their pids are not kept).
        if leftover
            .instance_id
            .as_deref()
            .and_then(remote_node)
            .is_none()
        {
            self.local.reap(leftover);
        }
    }

    fn usage(&self, pid: u32) -> Option<ResourceUse> {
        self.local.usage(pid)
    }
}

/// A run on `node`: the request goes down the link, its reports come back to `sink`, a
/// stop goes down too. The run ends with its `Finished` report, or as interrupted once the
/// node's link is gone (the engine then hands the task back to the queue).
async fn remote_run(
    links: Arc<Links>,
    node: String,
    request: RunRequest,
    sink: OutputSink,
    stop: StopSignal,
) -> RunOutcome {
    let lost = || {
        RunOutcome::failed(
            FailureClass::Interrupted,
            format!("node {node} was lost while it ran this task"),
        )
    };
    let (task, attempt) = (request.task_id.clone(), request.attempt);
    let (reports_tx, mut reports) = mpsc::channel(64);
    let Some(down) = links.start_run(&node, &task, attempt, reports_tx) else {
        return lost();
    };
    if down
        .send(Down::Run(Box::new(Row::from_domain(&request))))
        .await
        .is_err()
    {
        links.end_run(&node, &task, attempt);
        return lost();
    }
    let mut stop = Some(stop);
    let outcome = loop {
        let report = tokio::select! {
            report = reports.recv() => report,
            reason = async { stop.as_mut().expect("armed").await }, if stop.is_some() => {
                stop = None;
                let reason = Row::from_domain(&reason);
                let _ = down.send(Down::Stop { task: task.clone(), attempt, reason }).await;
                continue;
            }
        };
        let Some(report) = report else { break lost() };
        match report {
            // The pid is the other machine's: nothing here may signal it.
            ReportRow::Started { .. } => sink.started(None).await,
            ReportRow::Output(output) => sink.output(output.into_domain()).await,
            ReportRow::Limit(limit) => sink.limit(limit.into_domain()).await,
            ReportRow::ApiRetry => sink.api_retry().await,
            ReportRow::Denied(denial) => sink.denied(denial.into_domain()).await,
            ReportRow::Ask { ask, request } => {
                let (sink, down, task) = (sink.clone(), down.clone(), task.clone());
                tokio::spawn(async move {
                    let decision: PermissionDecision = sink.ask(*request.into_domain()).await;
                    let decision = Row::from_domain(&decision);
                    let _ = down
                        .send(Down::Answer {
                            task,
                            ask,
                            decision,
                        })
                        .await;
                });
            }
            ReportRow::Finished(outcome) => break *outcome.into_domain(),
        }
    };
    links.end_run(&node, &task, attempt);
    outcome
}
