//! Events: every state change of tasks, instances and workflows, and the agent's output,
//! numbered by a sequence that only grows.

use std::{
    sync::{Arc, OnceLock},
    time::SystemTime,
};

use super::{
    account::AccountSummary,
    approval::{Approval, PermissionDenial},
    instance::Instance,
    task::{InstanceId, Task, TaskId, WorkflowId},
    words::words,
};
use crate::engine::workflow::WorkflowInfo;

words! {
    /// What happened.
    pub enum EventKind {
        TaskSubmitted = "task_submitted",
        TaskQueued = "task_queued",
        TaskStarted = "task_started",
        TaskOutput = "task_output",
        TaskCompleted = "task_completed",
        TaskFailed = "task_failed",
        TaskCancelled = "task_cancelled",
        TaskSkipped = "task_skipped",
        InstanceSpawned = "instance_spawned",
        InstanceStatusChanged = "instance_status_changed",
        InstanceTerminated = "instance_terminated",
        WorkflowStarted = "workflow_started",
        WorkflowFinished = "workflow_finished",
        TaskRetrying = "task_retrying",
        ApprovalRequested = "approval_requested",
        ApprovalDecided = "approval_decided",
        PermissionDenied = "permission_denied",
        /// An account was paused by its usage limit, limited by a warning, or let go again
        /// (at its reset, or by hand).
        AccountChanged = "account_changed",
        /// The swarm's budget is spent: nothing more starts until `budget_usd` is raised.
        BudgetSpent = "budget_spent",
    }
}

/// One line of the agent's stream-json output, ready to show.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AgentOutput {
    /// The line's `type`, or `unparsed` for a line that was not JSON.
    pub message_type: String,
    pub subtype: String,
    /// Text for display: assistant text, tool names, the result.
    pub text: String,
    /// The line itself, cut at [`AgentOutput::MAX_RAW`].
    pub raw: String,
    pub truncated: bool,
}

impl AgentOutput {
    /// Longest raw line kept in an event.
    pub const MAX_RAW: usize = 64 * 1024;
}

#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    /// Shared with the engine's own copy until that changes again.
    Task(Arc<Task>),
    Instance(Box<Instance>),
    Workflow(Box<WorkflowInfo>),
    Output(Box<AgentOutput>),
    Approval(Box<Approval>),
    Denial(Box<PermissionDenial>),
    Account(Box<AccountSummary>),
    Budget(Box<Budget>),
}

/// The swarm's budget and what its runs have spent.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Budget {
    pub budget_usd: f64,
    pub total_cost_usd: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub sequence: u64,
    pub time: SystemTime,
    pub kind: EventKind,
    pub task_id: Option<TaskId>,
    pub instance_id: Option<InstanceId>,
    pub workflow_id: Option<WorkflowId>,
    pub payload: Payload,
    /// The event as the API sends it, made once and shared by every subscriber.
    pub encoded: Encoded,
}

/// An event's forms on the wire, each made once by the first stream that needs it (the
/// engine never fills them): every subscriber then sends the same shared bytes instead
/// of converting and encoding the event again. Not part of the event's value: it compares
/// equal, clones empty and is not shown.
/// Boxed on first use, so that an event nobody streams carries a pointer and a flag for
/// them (16 bytes, against 48 unboxed).
#[derive(Default)]
pub struct Encoded(OnceLock<Box<Forms>>);

#[derive(Default)]
struct Forms {
    /// The protobuf encoding of the API's `Event` message (gRPC, grpc-web).
    proto: OnceLock<Arc<[u8]>>,
    /// Its REST JSON form (Server-Sent Events, the WebSocket).
    json: OnceLock<Arc<str>>,
}

impl Encoded {
    fn forms(&self) -> &Forms {
        self.0.get_or_init(Box::default)
    }

    /// The protobuf encoding, made by `encode` the first time.
    pub fn proto(&self, encode: impl FnOnce() -> Arc<[u8]>) -> Arc<[u8]> {
        self.forms().proto.get_or_init(encode).clone()
    }

    /// The REST JSON form, made by `encode` the first time.
    pub fn json(&self, encode: impl FnOnce() -> Arc<str>) -> Arc<str> {
        self.forms().json.get_or_init(encode).clone()
    }
}

impl Clone for Encoded {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for Encoded {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for Encoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Encoded")
    }
}

/// Which events a subscriber wants; empty fields match everything.
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    pub task_id: Option<TaskId>,
    pub workflow_id: Option<WorkflowId>,
    pub instance_id: Option<InstanceId>,
    pub kinds: Vec<EventKind>,
}

impl EventFilter {
    pub fn matches(&self, event: &Event) -> bool {
        fn field<T: PartialEq>(want: &Option<T>, have: &Option<T>) -> bool {
            want.is_none() || want == have
        }
        field(&self.task_id, &event.task_id)
            && field(&self.workflow_id, &event.workflow_id)
            && field(&self.instance_id, &event.instance_id)
            && (self.kinds.is_empty() || self.kinds.contains(&event.kind))
    }
}

#[cfg(test)]
mod tests {
    /// The window keeps up to `event_retention` events (100,000 by default), each in an
    /// `Arc`: with its counts an event fits a 160-byte allocation (mimalloc's size classes:
    /// 128, 160, 192).
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn an_event_and_its_counts_fit_in_160_bytes() {
        let size = 2 * std::mem::size_of::<usize>() + std::mem::size_of::<super::Event>();
        assert!(size <= 160, "an Arc<Event> takes {size} bytes");
    }
}
