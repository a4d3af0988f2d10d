//! Schedules as the engine keeps them: a cron expression in a time zone, what each run
//! starts (a validated workflow plan, or one task spec run as a workflow of one), and the
//! policies for runs missed while the server was down and for a run that is due while the
//! previous one still goes. Every run is an ordinary workflow, linked to its schedule by
//! [`WorkflowInfo::schedule_id`](super::workflow::WorkflowInfo::schedule_id).
//!
//! The next fire time is a pure function of the expression, the zone and the time now
//! (croner in a chrono-tz zone), so the core computes it from the time it is handed.

use std::{
    collections::HashMap,
    str::FromStr,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use chrono::{DateTime, TimeZone, Utc};

use super::{
    error::{EngineError, Result},
    model::{
        task::{TaskId, TaskSpec, WorkflowId},
        words::words,
    },
    workflow::{FanOutSource, Segment, WorkflowPlan},
};

pub type ScheduleId = String;

words! {
    /// What a restart does about runs that fell due while the server was down.
    #[derive(Default)]
    pub enum MissedPolicy {
        /// Nothing: the schedule goes on from its next time.
        #[default]
        Skip = "skip",
        /// One run at start, however many were missed.
        RunOnce = "run_once",
    }
}

words! {
    /// What a run that falls due does while the schedule's previous run still goes.
    #[derive(Default)]
    pub enum OverlapPolicy {
        /// No run this time; counted in `skipped_runs`.
        #[default]
        Skip = "skip",
        /// Another run beside it.
        Allow = "allow",
    }
}

/// A cron expression checked against its time zone.
#[derive(Clone, Debug)]
pub struct Cron {
    expression: String,
    time_zone: chrono_tz::Tz,
    parsed: croner::Cron,
}

impl PartialEq for Cron {
    fn eq(&self, other: &Self) -> bool {
        self.expression == other.expression && self.time_zone == other.time_zone
    }
}

impl Cron {
    /// Five fields (minute hour day-of-month month day-of-week), or six with seconds
    /// first, or `@daily`-style names; an IANA zone (`Europe/Paris`), `UTC` when empty.
    /// Errors name `cron` or `time_zone`.
    pub fn parse(expression: &str, time_zone: &str) -> Result<Self> {
        let zone = if time_zone.trim().is_empty() {
            "UTC"
        } else {
            time_zone.trim()
        };
        let time_zone = chrono_tz::Tz::from_str(zone).map_err(|_| {
            EngineError::invalid(
                "time_zone",
                format!("{zone:?} is not an IANA time zone (like `UTC` or `Europe/Paris`)"),
            )
        })?;
        let parsed = croner::Cron::from_str(expression).map_err(|e| {
            EngineError::invalid(
                "cron",
                format!("{expression:?} is not a cron expression: {e}"),
            )
        })?;
        let cron = Self {
            expression: expression.trim().to_owned(),
            time_zone,
            parsed,
        };
        // An expression that matches no time at all (`0 0 30 2 *`) is a mistake too.
        if cron
            .next_after(UNIX_EPOCH + Duration::from_secs(946_684_800))
            .is_none()
        {
            return Err(EngineError::invalid(
                "cron",
                format!("{expression:?} never matches a time"),
            ));
        }
        Ok(cron)
    }

    pub fn expression(&self) -> &str {
        &self.expression
    }

    pub fn time_zone(&self) -> &str {
        self.time_zone.name()
    }

    /// The first time the expression matches strictly after `time`, in its zone.
    pub fn next_after(&self, time: SystemTime) -> Option<SystemTime> {
        let since = time.duration_since(UNIX_EPOCH).ok()?;
        let utc = Utc
            .timestamp_opt(since.as_secs() as i64, since.subsec_nanos())
            .single()?;
        let local: DateTime<chrono_tz::Tz> = utc.with_timezone(&self.time_zone);
        let next = self.parsed.find_next_occurrence(&local, false).ok()?;
        let next = next.with_timezone(&Utc);
        let secs = u64::try_from(next.timestamp()).ok()?;
        Some(UNIX_EPOCH + Duration::new(secs, next.timestamp_subsec_nanos()))
    }
}

/// What each run of a schedule starts.
#[derive(Clone, Debug, PartialEq)]
pub enum ScheduleTarget {
    Workflow(Box<WorkflowPlan>),
    /// Run as a workflow of this one task, named after the schedule.
    Task(Box<TaskSpec>),
}

/// What a caller asks for.
#[derive(Clone, Debug, PartialEq)]
pub struct ScheduleSpec {
    pub name: String,
    pub cron: Cron,
    pub target: ScheduleTarget,
    pub missed: MissedPolicy,
    pub overlap: OverlapPolicy,
    /// Created paused: it fires only once resumed (or triggered by hand).
    pub paused: bool,
}

/// A schedule and how its runs went.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    pub id: ScheduleId,
    pub spec: ScheduleSpec,
    pub created_at: SystemTime,
    /// When it fires next; `None` while paused (or when the expression has no more times).
    pub next_fire_at: Option<SystemTime>,
    /// When a run last started (by the clock, a restart's catch-up, or by hand).
    pub last_fired_at: Option<SystemTime>,
    /// The workflow of the last run.
    pub last_workflow_id: Option<WorkflowId>,
    /// Runs started.
    pub runs: u64,
    /// Runs not started because the previous one still went (overlap: skip), or that a
    /// restart skipped (missed: skip).
    pub skipped_runs: u64,
    /// Why the last run could not start, if it could not (a full queue, say).
    pub last_error: Option<String>,
}

impl Schedule {
    /// A schedule that has not run yet (and has no next time until it is armed).
    pub fn new(id: ScheduleId, spec: ScheduleSpec, created_at: SystemTime) -> Self {
        Self {
            id,
            spec,
            created_at,
            next_fire_at: None,
            last_fired_at: None,
            last_workflow_id: None,
            runs: 0,
            skipped_runs: 0,
            last_error: None,
        }
    }
}

impl ScheduleTarget {
    /// The plan of one run, with fresh ids (from `fresh`) for its tasks, wired to each
    /// other as the original ones were.
    pub fn plan(&self, name: &str, mut fresh: impl FnMut() -> TaskId) -> WorkflowPlan {
        let plan = match self {
            ScheduleTarget::Workflow(plan) => (**plan).clone(),
            ScheduleTarget::Task(spec) => {
                let mut spec = (**spec).clone();
                let id = spec.id.clone().unwrap_or_else(|| TaskId::from("task"));
                if spec.name.is_empty() {
                    spec.name = name.to_owned();
                }
                spec.id = Some(id.clone());
                WorkflowPlan {
                    name: name.to_owned(),
                    description: format!("a run of the schedule {name}"),
                    instances: None,
                    tasks: vec![spec],
                    pins: vec![None],
                    leaves: vec![id],
                    budget_usd: None,
                    permissions: Default::default(),
                }
            }
        };
        reidentify(plan, &mut fresh)
    }
}

/// `plan` with every task id replaced by a fresh one, everywhere it is named.
fn reidentify(mut plan: WorkflowPlan, fresh: &mut impl FnMut() -> TaskId) -> WorkflowPlan {
    let ids: HashMap<TaskId, TaskId> = plan
        .tasks
        .iter()
        .filter_map(|t| t.id.clone())
        .map(|old| (old, fresh()))
        .collect();
    let map = |id: &mut TaskId| {
        if let Some(new) = ids.get(id) {
            id.clone_from(new);
        }
    };
    for task in &mut plan.tasks {
        if let Some(id) = &mut task.id {
            map(id);
        }
        task.depends_on.iter_mut().for_each(map);
        if let Some(template) = &mut task.template {
            for segment in &mut template.0 {
                if let Segment::Result(id) = segment {
                    map(id);
                }
            }
        }
        if let Some(fan_out) = &mut task.fan_out
            && let FanOutSource::Result(id) = &mut fan_out.source
        {
            map(id);
        }
        // A key would make every run after the first return the first run's task.
        task.idempotency_key = None;
    }
    plan.leaves.iter_mut().for_each(map);
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn the_next_time_is_in_the_schedules_zone() {
        // 2026-01-15T12:00:00Z; 09:00 in Tokyo (UTC+9) is 00:00 UTC.
        let cron = Cron::parse("0 9 * * *", "Asia/Tokyo").unwrap();
        let next = cron.next_after(at(1_768_478_400)).unwrap();
        assert_eq!(next, at(1_768_521_600));
        let utc = Cron::parse("*/15 * * * *", "").unwrap();
        assert_eq!(utc.time_zone(), "UTC");
        assert_eq!(utc.next_after(at(1_768_478_400)), Some(at(1_768_479_300)));
        let seconds = Cron::parse("*/5 * * * * *", "UTC").unwrap();
        assert_eq!(
            seconds.next_after(at(1_768_478_401)),
            Some(at(1_768_478_405))
        );
    }

    #[test]
    fn bad_expressions_and_zones_name_their_field() {
        let field = |e: EngineError| e.field().map(str::to_owned);
        assert_eq!(
            field(Cron::parse("every day", "UTC").unwrap_err()).as_deref(),
            Some("cron")
        );
        assert_eq!(
            field(Cron::parse("61 * * * *", "UTC").unwrap_err()).as_deref(),
            Some("cron")
        );
        assert_eq!(
            field(Cron::parse("0 0 30 2 *", "UTC").unwrap_err()).as_deref(),
            Some("cron")
        );
        let zone = Cron::parse("0 * * * *", "Mars/Olympus").unwrap_err();
        assert!(zone.to_string().contains("Mars/Olympus"), "{zone}");
        assert_eq!(field(zone).as_deref(), Some("time_zone"));
    }
}
