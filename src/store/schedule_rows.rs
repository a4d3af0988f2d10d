//! Stored shapes of schedules (their own table, added beside layout 2's: a file without it
//! simply has no schedules). A schedule keeps its cron expression and zone as text, checked
//! again when it is read, and its plan as task rows of the same shape tasks are stored in.

use serde::{Deserialize, Serialize};

use super::{
    approvals::PolicyRow,
    rows::{Row, SpecRow, TimeRow, Variant},
};
use crate::engine::{
    TaskId,
    error::Result,
    schedule::{Cron, MissedPolicy, OverlapPolicy, Schedule, ScheduleSpec, ScheduleTarget},
    workflow::WorkflowPlan,
};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PlanRow {
    name: String,
    description: String,
    instances: Option<u32>,
    tasks: Vec<SpecRow>,
    pins: Vec<Option<usize>>,
    leaves: Vec<TaskId>,
    budget_usd: Option<f64>,
    /// The workflow's own permission rules (absent in rows from before approvals).
    #[serde(default)]
    permissions: PolicyRow,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum TargetRow {
    Workflow(PlanRow),
    Task(Box<SpecRow>),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScheduleRow {
    id: String,
    name: String,
    cron: String,
    time_zone: String,
    target: TargetRow,
    missed: Variant<MissedPolicy>,
    overlap: Variant<OverlapPolicy>,
    paused: bool,
    created_at: TimeRow,
    next_fire_at: Option<TimeRow>,
    last_fired_at: Option<TimeRow>,
    last_workflow_id: Option<String>,
    runs: u64,
    skipped_runs: u64,
    last_error: Option<String>,
}

impl ScheduleRow {
    pub fn of(s: &Schedule) -> Self {
        let target = match &s.spec.target {
            ScheduleTarget::Task(spec) => TargetRow::Task(Box::new(SpecRow::from_domain(spec))),
            ScheduleTarget::Workflow(plan) => TargetRow::Workflow(PlanRow {
                name: plan.name.clone(),
                description: plan.description.clone(),
                instances: plan.instances,
                tasks: Row::from_domain(&plan.tasks),
                pins: plan.pins.clone(),
                leaves: plan.leaves.clone(),
                budget_usd: plan.budget_usd,
                permissions: PolicyRow::from_domain(&plan.permissions),
            }),
        };
        Self {
            id: s.id.clone(),
            name: s.spec.name.clone(),
            cron: s.spec.cron.expression().to_owned(),
            time_zone: s.spec.cron.time_zone().to_owned(),
            target,
            missed: Row::from_domain(&s.spec.missed),
            overlap: Row::from_domain(&s.spec.overlap),
            paused: s.spec.paused,
            created_at: Row::from_domain(&s.created_at),
            next_fire_at: Row::from_domain(&s.next_fire_at),
            last_fired_at: Row::from_domain(&s.last_fired_at),
            last_workflow_id: s.last_workflow_id.clone(),
            runs: s.runs,
            skipped_runs: s.skipped_runs,
            last_error: s.last_error.clone(),
        }
    }

    /// The schedule; its expression and zone are checked again (a zone the time zone
    /// database no longer knows is an unreadable row, not a silent UTC).
    pub fn into_schedule(self) -> Result<Schedule> {
        let target = match self.target {
            TargetRow::Task(spec) => ScheduleTarget::Task(Box::new((*spec).into_domain())),
            TargetRow::Workflow(plan) => ScheduleTarget::Workflow(Box::new(WorkflowPlan {
                name: plan.name,
                description: plan.description,
                instances: plan.instances,
                tasks: plan.tasks.into_domain(),
                pins: plan.pins,
                leaves: plan.leaves,
                budget_usd: plan.budget_usd,
                permissions: plan.permissions.into_domain(),
            })),
        };
        Ok(Schedule {
            id: self.id,
            spec: ScheduleSpec {
                name: self.name,
                cron: Cron::parse(&self.cron, &self.time_zone)?,
                target,
                missed: self.missed.into_domain(),
                overlap: self.overlap.into_domain(),
                paused: self.paused,
            },
            created_at: self.created_at.into_domain(),
            next_fire_at: self.next_fire_at.into_domain(),
            last_fired_at: self.last_fired_at.into_domain(),
            last_workflow_id: self.last_workflow_id,
            runs: self.runs,
            skipped_runs: self.skipped_runs,
            last_error: self.last_error,
        })
    }
}
