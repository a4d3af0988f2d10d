//! The frames of the node link, as JSON: the engine's run requests and reports in the same
//! row shapes the stores keep ([`crate::store::rows`]), so a field has one encoding.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    engine::{
        FailureClass, Isolation, TaskId, TaskStatus,
        model::account::{LimitReport, LimitStatus},
        ports::{
            PermissionDecision, PermissionRequest, RunEvent, RunOutcome, RunRequest, StopReason,
        },
    },
    store::{
        approvals::DenialRow,
        rows::{DurationRow, OptionsRow, OutputRow, ResultRow, Row, TimeRow, Variant, mirror},
    },
};

/// From a node to the owner.
#[derive(Debug, Serialize, Deserialize)]
pub enum Up {
    /// The first frame: who it is, what it lends, and the database's link secret.
    Hello {
        node: String,
        instances: u32,
        secret: String,
    },
    Ping,
    /// What a run of `task`'s `attempt` reports; a report of any other attempt is refused.
    Report {
        task: TaskId,
        attempt: u32,
        report: ReportRow,
    },
}

/// From the owner to a node.
#[derive(Debug, Serialize, Deserialize)]
pub enum Down {
    /// The instances the node's machine runs, as the swarm names them.
    Welcome {
        instances: Vec<String>,
    },
    Ping,
    Run(Box<RunRow>),
    Stop {
        task: TaskId,
        attempt: u32,
        reason: StopRow,
    },
    /// The answer to a run's question [`ReportRow::Ask`] `ask`.
    Answer {
        task: TaskId,
        ask: u64,
        decision: DecisionRow,
    },
    Prepare {
        instance: String,
        account: String,
        working_directory: PathBuf,
    },
    Retire {
        instance: String,
    },
}

mirror! {
    RunRow <=> RunRequest {
        task_id: TaskId,
        prompt: String,
        working_directory: PathBuf,
        model: Option<String>,
        allowed_tools: Vec<String>,
        max_turns: Option<u32>,
        permission_mode: Option<String>,
        command: Option<String>,
        attempt: u32,
        options: OptionsRow,
        isolation: Variant<Isolation>,
        instance_id: String,
        workflow_id: Option<String>,
        max_budget_usd: Option<f64>,
        output_schema: Option<Value>,
        account: String,
    }
}

mirror! {
    OutcomeRow <=> RunOutcome {
        status: Variant<TaskStatus>,
        result: Option<ResultRow>,
        error: Option<String>,
        class: Option<Variant<FailureClass>>,
    }
}

mirror! {
    LimitRow <=> LimitReport {
        status: Variant<LimitStatus>,
        resets_at: Option<TimeRow>,
        window: Option<String>,
        utilization: Option<f64>,
    }
}

/// A run's question about a tool call.
#[derive(Debug, Serialize, Deserialize)]
pub struct RequestRow {
    tool_name: String,
    input: Value,
    suggestions: Value,
    description: String,
    blocked_path: Option<String>,
    tool_use_id: String,
    resolved: Option<(PathBuf, PathBuf)>,
}

impl Row for RequestRow {
    type Domain = PermissionRequest;
    fn from_domain(r: &PermissionRequest) -> Self {
        Self {
            tool_name: r.tool_name.clone(),
            input: r.input.clone(),
            suggestions: r.suggestions.clone(),
            description: r.description.clone(),
            blocked_path: r.blocked_path.clone(),
            tool_use_id: r.tool_use_id.clone(),
            resolved: r.resolved.clone(),
        }
    }
    fn into_domain(self) -> PermissionRequest {
        PermissionRequest {
            tool_name: self.tool_name,
            input: self.input,
            suggestions: self.suggestions,
            description: self.description,
            blocked_path: self.blocked_path,
            tool_use_id: self.tool_use_id,
            resolved: self.resolved,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub enum DecisionRow {
    Allow { updated_input: Option<Value> },
    Deny { message: String },
}

impl Row for DecisionRow {
    type Domain = PermissionDecision;
    fn from_domain(d: &PermissionDecision) -> Self {
        match d {
            PermissionDecision::Allow { updated_input } => Self::Allow {
                updated_input: updated_input.clone(),
            },
            PermissionDecision::Deny { message } => Self::Deny {
                message: message.clone(),
            },
        }
    }
    fn into_domain(self) -> PermissionDecision {
        match self {
            Self::Allow { updated_input } => PermissionDecision::Allow { updated_input },
            Self::Deny { message } => PermissionDecision::Deny { message },
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub enum StopRow {
    Cancelled,
    TimedOut(DurationRow),
    InstanceTerminated,
    Shutdown,
}

impl Row for StopRow {
    type Domain = StopReason;
    fn from_domain(r: &StopReason) -> Self {
        match r {
            StopReason::Cancelled => Self::Cancelled,
            StopReason::TimedOut(after) => Self::TimedOut(Row::from_domain(after)),
            StopReason::InstanceTerminated => Self::InstanceTerminated,
            StopReason::Shutdown => Self::Shutdown,
        }
    }
    fn into_domain(self) -> StopReason {
        match self {
            Self::Cancelled => StopReason::Cancelled,
            Self::TimedOut(after) => StopReason::TimedOut(after.into_domain()),
            Self::InstanceTerminated => StopReason::InstanceTerminated,
            Self::Shutdown => StopReason::Shutdown,
        }
    }
}

/// A run's report, without the reply channel of a question (its answer comes back as
/// [`Down::Answer`]).
#[derive(Debug, Serialize, Deserialize)]
pub enum ReportRow {
    Started { pid: Option<u32> },
    Output(OutputRow),
    Limit(LimitRow),
    ApiRetry,
    Ask { ask: u64, request: Box<RequestRow> },
    Denied(DenialRow),
    Finished(Box<OutcomeRow>),
}

impl ReportRow {
    /// `event` as sent; a question is numbered `ask` (its reply stays with the sender).
    pub fn of(event: &RunEvent, ask: u64) -> Option<Self> {
        Some(match event {
            RunEvent::Started { pid } => Self::Started { pid: *pid },
            RunEvent::Output(output) => Self::Output(Row::from_domain(&**output)),
            RunEvent::Limit(report) => Self::Limit(Row::from_domain(report)),
            RunEvent::ApiRetry => Self::ApiRetry,
            RunEvent::Ask { request, .. } => Self::Ask {
                ask,
                request: Box::new(Row::from_domain(&**request)),
            },
            RunEvent::Denied(denial) => Self::Denied(Row::from_domain(&**denial)),
            RunEvent::Finished(outcome) => Self::Finished(Box::new(Row::from_domain(&**outcome))),
            // The owner's own run wrapper times the run.
            RunEvent::TimedOut => return None,
        })
    }
}

/// A frame as sent on the link.
pub fn encode(frame: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(frame).expect("link frames always encode")
}

/// A frame as received; `None` for one that does not decode (logged, then the link ends).
pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Option<T> {
    match serde_json::from_slice(bytes) {
        Ok(frame) => Some(frame),
        Err(e) => {
            tracing::warn!(cause = %e, "a node link frame does not decode");
            None
        }
    }
}
