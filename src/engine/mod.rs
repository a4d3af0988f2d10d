//! The domain: tasks, the ready queue and dependency rules, the instance pool, workflows
//! and events. No tonic, axum, sqlite or process code in here, and no import from the
//! adapters around it (`agent`, `store`, `api`, `cli`, `config`).
//!
//! - [`model`]: the data, each enum with one table of its words.
//! - `core`: the rules as a plain state machine (input in, effects out; no tokio, no clock).
//! - [`actor`]: owns the core and executes its effects; [`Engine`] is its cheap handle.
//! - [`ports`]: the traits the engine calls ([`ports::Agent`], [`ports::Store`]).
//! - [`events`]: the hub that replays stored events and feeds live subscribers.
//! - [`workflow`]: what a workflow is at run time (templates, `for_each`, its record).
//! - [`schedule`]: cron schedules of workflows (or one task) and their policies.
//! - [`error`]: one vocabulary of failures.

mod actor;
mod batch;
mod core;
pub mod error;
pub mod events;
pub mod handle;
pub mod model;
pub mod ports;
pub mod schedule;
pub mod workflow;

pub use core::{
    ApprovalQuery, DEFAULT_APPROVAL_TIMEOUT, Decision, EngineConfig, SwarmStatus, TaskPage,
    TaskQuery, find_cycle,
};
pub use error::EngineError;
pub use handle::Engine;
pub use model::{
    approval::{
        Approval, ApprovalId, ApprovalState, DenialPolicy, PermissionDenial, PermissionPolicy,
        PolicyScope,
    },
    event::{AgentOutput, Encoded, Event, EventFilter, EventKind, Payload},
    instance::{Instance, InstanceStatus},
    task::{
        AgentOptions, Attempt, FailureClass, FailurePolicy, Isolation, Priority, Task, TaskId,
        TaskResult, TaskSpec, TaskStatus, Usage,
    },
};
pub use workflow::WorkflowInfo;
