//! Event rows: what an event changed (ids and a task's changed fields), not a copy of the
//! task; the task is joined back in from the stored tasks when the events are read.

use std::{collections::HashMap, sync::Arc};

use serde::{Deserialize, Serialize};

use super::{
    approvals::{ApprovalRow, DenialRow},
    rows::{
        AccountSummaryRow, BudgetRow, InstanceRow, OutputRow, ResultRow, Row, TaskRow, TimeRow,
        Variant, WorkflowInfoRow,
    },
};
use crate::engine::{
    Event, EventKind, FailureClass, Payload, Task, TaskId, TaskSpec, TaskStatus, ports::TaskRecord,
};

/// Stored events with their tasks joined back in from the stored tasks (an event row keeps
/// the task's id, not a copy).
pub fn rejoin(events: Vec<EventRow>, tasks: &[TaskRecord]) -> Vec<Event> {
    let by_id: HashMap<&str, &Task> = tasks
        .iter()
        .map(|r| (r.task.id.as_str(), r.task.as_ref()))
        .collect();
    events
        .into_iter()
        .map(|row| row.into_event(|id| by_id.get(id).map(|t| (*t).clone())))
        .collect()
}

/// What a task event changed: its state and what came with it, not its spec.
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TaskChangeRow {
    status: Variant<TaskStatus>,
    attempts: u32,
    instance_id: Option<String>,
    started_at: Option<TimeRow>,
    completed_at: Option<TimeRow>,
    result: Option<Box<ResultRow>>,
    error: Option<String>,
    failure_class: Option<Variant<FailureClass>>,
}

impl TaskChangeRow {
    fn of(task: &Task) -> Self {
        Self {
            status: Row::from_domain(&task.status),
            attempts: task.attempts,
            instance_id: task.instance_id.clone(),
            started_at: Row::from_domain(&task.started_at),
            completed_at: Row::from_domain(&task.completed_at),
            result: Row::from_domain(&task.result),
            error: task.error.clone(),
            failure_class: Row::from_domain(&task.failure_class),
        }
    }

    /// `base` (the stored task, or a bare one when it was compacted away) as the event
    /// saw it.
    fn apply(self, mut base: Task) -> Task {
        base.status = self.status.into_domain();
        base.attempts = self.attempts;
        base.instance_id = self.instance_id;
        base.started_at = self.started_at.into_domain();
        base.completed_at = self.completed_at.into_domain();
        base.result = self.result.into_domain();
        base.error = self.error;
        base.failure_class = self.failure_class.into_domain();
        base
    }
}

/// An event's payload as layouts 2 to 4 store it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ChangeRow {
    Task(TaskChangeRow),
    Instance(InstanceRow),
    Workflow(WorkflowInfoRow),
    Output(OutputRow),
    Approval(Box<ApprovalRow>),
    Denial(DenialRow),
    Account(AccountSummaryRow),
    Budget(BudgetRow),
}

/// An event as layouts 2 to 4 store it (from layout 3, a commit's events are one row).
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EventRow {
    sequence: u64,
    time: TimeRow,
    kind: Variant<EventKind>,
    task_id: Option<TaskId>,
    instance_id: Option<String>,
    workflow_id: Option<String>,
    change: ChangeRow,
}

impl EventRow {
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    pub fn of(event: &Event) -> Self {
        Self {
            sequence: event.sequence,
            time: Row::from_domain(&event.time),
            kind: Row::from_domain(&event.kind),
            task_id: event.task_id.clone(),
            instance_id: event.instance_id.clone(),
            workflow_id: event.workflow_id.clone(),
            change: match &event.payload {
                Payload::Task(task) => ChangeRow::Task(TaskChangeRow::of(task)),
                Payload::Instance(i) => ChangeRow::Instance(Row::from_domain(i.as_ref())),
                Payload::Workflow(w) => ChangeRow::Workflow(Row::from_domain(w.as_ref())),
                Payload::Output(o) => ChangeRow::Output(Row::from_domain(o.as_ref())),
                Payload::Approval(a) => ChangeRow::Approval(Box::new(Row::from_domain(a.as_ref()))),
                Payload::Denial(d) => ChangeRow::Denial(Row::from_domain(d.as_ref())),
                Payload::Account(a) => ChangeRow::Account(Row::from_domain(a.as_ref())),
                Payload::Budget(b) => ChangeRow::Budget(Row::from_domain(b.as_ref())),
            },
        }
    }

    /// The event, its task rebuilt from `stored` (the task's row, if it is still kept).
    pub fn into_event(self, stored: impl FnOnce(&str) -> Option<Task>) -> Event {
        let time = self.time.into_domain();
        let payload = match self.change {
            ChangeRow::Task(change) => {
                let id = self.task_id.clone().unwrap_or_default();
                let base = stored(&id).unwrap_or_else(|| {
                    let spec = TaskSpec {
                        id: Some(id.clone()),
                        name: id.to_string(),
                        ..TaskSpec::default()
                    };
                    Task::new(id, spec, self.workflow_id.clone(), time)
                });
                Payload::Task(Arc::new(change.apply(base)))
            }
            ChangeRow::Instance(i) => Payload::Instance(Box::new(i.into_domain())),
            ChangeRow::Workflow(w) => Payload::Workflow(Box::new(w.into_domain())),
            ChangeRow::Output(o) => Payload::Output(Box::new(o.into_domain())),
            ChangeRow::Approval(a) => Payload::Approval(a.into_domain()),
            ChangeRow::Denial(d) => Payload::Denial(Box::new(d.into_domain())),
            ChangeRow::Account(a) => Payload::Account(Box::new(a.into_domain())),
            ChangeRow::Budget(b) => Payload::Budget(Box::new(b.into_domain())),
        };
        Event {
            sequence: self.sequence,
            time,
            kind: self.kind.into_domain(),
            task_id: self.task_id,
            instance_id: self.instance_id,
            workflow_id: self.workflow_id,
            payload,
            encoded: Default::default(),
        }
    }
}

/// Layout 1's event payload: whole values, a task included.
#[derive(Clone, Debug, Deserialize)]
enum PayloadV1 {
    Task(Box<TaskRow>),
    Instance(InstanceRow),
    Workflow(WorkflowInfoRow),
    Output(OutputRow),
}

/// An event as layout 1 stored it; read only, to migrate.
#[derive(Clone, Debug, Deserialize)]
pub struct EventRowV1 {
    sequence: u64,
    time: TimeRow,
    kind: Variant<EventKind>,
    task_id: Option<TaskId>,
    instance_id: Option<String>,
    workflow_id: Option<String>,
    payload: PayloadV1,
}

impl EventRowV1 {
    pub fn into_event(self) -> Event {
        Event {
            sequence: self.sequence,
            time: self.time.into_domain(),
            kind: self.kind.into_domain(),
            task_id: self.task_id,
            instance_id: self.instance_id,
            workflow_id: self.workflow_id,
            payload: match self.payload {
                PayloadV1::Task(t) => Payload::Task(t.into_domain().into()),
                PayloadV1::Instance(i) => Payload::Instance(Box::new(i.into_domain())),
                PayloadV1::Workflow(w) => Payload::Workflow(Box::new(w.into_domain())),
                PayloadV1::Output(o) => Payload::Output(Box::new(o.into_domain())),
            },
            encoded: Default::default(),
        }
    }
}
