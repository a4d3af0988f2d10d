//! The seam between the engine and whatever runs a task: the engine hands an [`Agent`] a
//! [`RunRequest`], a sink for its output and a stop signal, and gets a `RunOutcome` back.

use std::{future::Future, path::PathBuf, pin::Pin};

use super::{
    scheduler::OutputSink,
    task::{AgentOptions, Isolation, RunOutcome, StopReason, TaskId},
};

/// Everything an agent needs to run one task.
#[derive(Clone, Debug)]
pub struct RunRequest {
    pub task_id: TaskId,
    pub prompt: String,
    pub working_directory: PathBuf,
    pub model: Option<String>,
    pub allowed_tools: Vec<String>,
    pub max_turns: Option<u32>,
    pub permission_mode: Option<String>,
    /// Run this shell command instead of the agent.
    pub command: Option<String>,
    /// 1 for the first run, 2 for the first retry, ...
    pub attempt: u32,
    pub options: AgentOptions,
    pub isolation: Isolation,
    /// The instance it runs on.
    pub instance_id: String,
}

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Resolves when the run must stop (cancel, timeout, instance terminated, shutdown).
pub type StopSignal = BoxFuture<StopReason>;

/// Runs tasks. The default is a Claude Code CLI process per task.
pub trait Agent: Send + Sync + 'static {
    /// Runs one task to its end. Must return once `stop` resolves, after the work it
    /// started (a process group) is gone.
    fn run(&self, request: RunRequest, sink: OutputSink, stop: StopSignal)
    -> BoxFuture<RunOutcome>;

    /// What runs tasks, for status displays ("claude", "simulated").
    fn describe(&self) -> String;

    /// The instance is gone: release what the agent keeps for it (a long-lived process).
    fn retire(&self, _instance: &str) {}

    /// Restart the instance's process before its next task (it resumes its session).
    fn recycle(&self, _instance: &str) {}

    /// The engine stops: end everything the agent keeps, and resolve once it is gone.
    fn shutdown(&self) -> BoxFuture<()> {
        Box::pin(async {})
    }

    /// What the run with process id `pid` uses now, if the agent can tell.
    fn usage(&self, _pid: u32) -> Option<ResourceUse> {
        None
    }
}

/// Resources of a running agent's process tree.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ResourceUse {
    pub rss_bytes: u64,
    pub cpu_seconds: f64,
    pub processes: u32,
}
