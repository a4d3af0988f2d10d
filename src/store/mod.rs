//! Durable state behind a trait. The scheduler hands the store one batch of changes per
//! turn (group commit) and answers its callers only once the batch is stored, so an
//! acknowledged submission survives a crash. SQLite in WAL mode is the default; the trait
//! keeps queue semantics out of the storage engine so another store (PostgreSQL, to share
//! one queue between nodes) can take its place.

pub mod sqlite;

use std::{fmt, sync::Arc, thread};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::engine::{
    events::Event,
    task::{Task, TaskId},
    workflow::WorkflowInfo,
};

/// A task as stored: the task and its place in a `for_each`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StoredTask {
    pub task: Task,
    /// The `for_each` task it is an item of.
    pub parent: Option<TaskId>,
}

/// A workflow as stored; what is left to run is derived from its tasks on load.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StoredWorkflow {
    pub info: WorkflowInfo,
    pub cancelling: bool,
    pub user_cancelled: bool,
    pub leaves: Vec<TaskId>,
}

/// Everything stored, in submission order.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub tasks: Vec<StoredTask>,
    pub workflows: Vec<StoredWorkflow>,
    /// The most recent events, oldest first.
    pub events: Vec<Event>,
}

/// One turn's changes. Tasks and workflows are whole rows (upserts); events are appended.
#[derive(Debug, Default)]
pub struct Batch {
    pub tasks: Vec<StoredTask>,
    /// Tasks compacted away.
    pub deleted_tasks: Vec<TaskId>,
    pub workflows: Vec<StoredWorkflow>,
    pub events: Vec<Arc<Event>>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
            && self.workflows.is_empty()
            && self.events.is_empty()
            && self.deleted_tasks.is_empty()
    }
}

#[derive(Debug, Clone)]
pub struct StoreError(pub String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StoreError {}

/// A durable home for the engine's state.
pub trait Store: Send + 'static {
    /// Everything stored so far (called once, at start).
    fn load(&mut self) -> Result<Snapshot, StoreError>;
    /// Stores a batch atomically: all of it or none.
    fn commit(&mut self, batch: &Batch) -> Result<(), StoreError>;
}

/// Runs a [`Store`] on its own thread so its blocking I/O never stalls the async runtime.
#[derive(Clone)]
pub struct StoreWriter {
    tx: mpsc::UnboundedSender<(Batch, oneshot::Sender<Result<(), StoreError>>)>,
}

impl StoreWriter {
    pub fn spawn(mut store: Box<dyn Store>) -> Self {
        let (tx, mut rx) =
            mpsc::unbounded_channel::<(Batch, oneshot::Sender<Result<(), StoreError>>)>();
        thread::Builder::new()
            .name("swarm-store".into())
            .spawn(move || {
                while let Some((batch, done)) = rx.blocking_recv() {
                    let _ = done.send(store.commit(&batch));
                }
            })
            .expect("the store thread starts");
        Self { tx }
    }

    /// Stores `batch`; resolves once it is durable.
    pub async fn commit(&self, batch: Batch) -> Result<(), StoreError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send((batch, done))
            .map_err(|_| StoreError("the store thread has stopped".into()))?;
        wait.await
            .map_err(|_| StoreError("the store thread has stopped".into()))?
    }
}
