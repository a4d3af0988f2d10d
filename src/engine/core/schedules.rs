//! Schedules: a timer per schedule, armed for its next fire time (at most
//! [`RECHECK`] ahead, so that a wall clock that jumps is noticed); a run is a workflow
//! started from the schedule's plan with fresh ids, unless the previous run still goes
//! and the overlap policy says skip. At start, a schedule whose time passed while the
//! server was down runs once or not at all, as its missed-run policy says.

use std::time::Duration;

use super::{Answer, CallId, Core, Effect, Timer};
use crate::engine::{
    error::{EngineError, Result},
    schedule::{MissedPolicy, OverlapPolicy, Schedule, ScheduleSpec, ScheduleTarget},
    workflow::{WorkflowInfo, WorkflowStatus},
};

/// The longest a schedule's timer is armed for: when it fires early (the clock was moved,
/// the machine slept), it is armed again for what is left.
pub(super) const RECHECK: Duration = Duration::from_secs(60);

/// Why a run starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cause {
    /// Its time came.
    Due,
    /// Its time passed while the server was down (missed: run_once).
    Missed,
    /// TriggerNow.
    ByHand,
}

impl Core {
    pub(super) fn create_schedule(&mut self, spec: ScheduleSpec) -> Result<Schedule> {
        let name = match (&spec.target, spec.name.trim()) {
            (_, name) if !name.is_empty() => name.to_owned(),
            (ScheduleTarget::Workflow(plan), _) => plan.name.clone(),
            (ScheduleTarget::Task(task), _) if !task.name.is_empty() => task.name.clone(),
            (ScheduleTarget::Task(_), _) => "scheduled task".to_owned(),
        };
        // A run's tasks are checked as any submission's, now, so that a schedule that
        // could never run is refused instead of failing every time it fires.
        let plan = spec.target.plan(&name, || self.new_id().into());
        let unpinned: Vec<_> = plan
            .tasks
            .iter()
            .cloned()
            .map(|mut t| {
                t.instance_id = None;
                t
            })
            .collect();
        match &spec.target {
            ScheduleTarget::Task(_) => self.check(&unpinned, false).map_err(|e| e.within("task")),
            ScheduleTarget::Workflow(_) => self.check(&unpinned, true),
        }?;
        let id = self.new_id();
        let paused = spec.paused;
        let mut schedule = Schedule::new(id.clone(), ScheduleSpec { name, ..spec }, self.now);
        if !paused {
            schedule.next_fire_at = schedule.spec.cron.next_after(self.now);
        }
        self.schedules.insert(id.clone(), schedule);
        self.schedule_order.push(id.clone());
        self.arm_schedule(&id);
        self.dirty_schedules.insert(id.clone());
        self.schedule(&id).cloned()
    }

    pub(super) fn schedule(&self, id: &str) -> Result<&Schedule> {
        self.schedules
            .get(id)
            .ok_or_else(|| EngineError::not_found("schedule", id))
    }

    pub(super) fn list_schedules(&self) -> Vec<Schedule> {
        self.schedule_order
            .iter()
            .filter_map(|id| self.schedules.get(id))
            .cloned()
            .collect()
    }

    /// Pauses (no run until resumed) or resumes (from the next time after now: what fell
    /// due while it was paused does not run).
    pub(super) fn set_schedule_paused(&mut self, id: &str, paused: bool) -> Result<Schedule> {
        let now = self.now;
        let schedule = self
            .schedules
            .get_mut(id)
            .ok_or_else(|| EngineError::not_found("schedule", id))?;
        if schedule.spec.paused != paused {
            schedule.spec.paused = paused;
            schedule.next_fire_at = if paused {
                None
            } else {
                schedule.spec.cron.next_after(now)
            };
            self.dirty_schedules.insert(id.to_owned());
            self.arm_schedule(id);
        }
        self.schedule(id).cloned()
    }

    /// Removes a schedule; its runs so far stay, still naming it.
    pub(super) fn delete_schedule(&mut self, id: &str) -> Result<Schedule> {
        let schedule = self
            .schedules
            .remove(id)
            .ok_or_else(|| EngineError::not_found("schedule", id))?;
        self.schedule_order.retain(|s| s != id);
        self.dirty_schedules.remove(id);
        self.deleted_schedules.push(id.to_owned());
        Ok(schedule)
    }

    /// A run now, paused or not; refused while the previous run goes if overlap is skip.
    pub(super) fn trigger_schedule(&mut self, call: CallId, id: &str) {
        let answer = match self.schedule(id) {
            Err(e) => Err(e),
            Ok(schedule) => match self.still_running(schedule) {
                Some(previous) => Err(EngineError::FailedPrecondition(format!(
                    "the schedule's previous run (workflow {previous}) is still running and its \
                     overlap policy is skip"
                ))),
                None => self.run_schedule(id, Cause::ByHand),
            },
        };
        self.reply(call, Answer::Workflow(answer));
    }

    /// The schedule's timer fired: run if its time has come (else it fired early: wait on).
    pub(super) fn schedule_due(&mut self, id: &str) {
        let Some(schedule) = self.schedules.get(id) else {
            return;
        };
        let Some(due) = schedule.next_fire_at.filter(|_| !schedule.spec.paused) else {
            return;
        };
        if self.now < due {
            return self.arm_schedule(id);
        }
        self.fire(id, Cause::Due);
    }

    /// At start: arms every schedule, and settles the ones whose time passed while the
    /// server was down by their missed-run policy.
    pub(super) fn restore_schedules(&mut self, schedules: Vec<Schedule>) {
        for schedule in schedules {
            let id = schedule.id.clone();
            self.schedule_order.push(id.clone());
            self.schedules.insert(id, schedule);
        }
        for id in self.schedule_order.clone() {
            let Some(schedule) = self.schedules.get(&id) else {
                continue;
            };
            let missed = schedule
                .next_fire_at
                .filter(|due| !schedule.spec.paused && *due <= self.now);
            match (missed, schedule.spec.missed) {
                (None, _) => self.arm_schedule(&id),
                (Some(_), MissedPolicy::RunOnce) => self.fire(&id, Cause::Missed),
                (Some(_), MissedPolicy::Skip) => {
                    if let Some(schedule) = self.schedules.get_mut(&id) {
                        schedule.skipped_runs += 1;
                        schedule.next_fire_at = schedule.spec.cron.next_after(self.now);
                    }
                    self.dirty_schedules.insert(id.clone());
                    self.arm_schedule(&id);
                }
            }
        }
    }

    /// A run (or a skipped one, by the overlap policy), then the next time.
    fn fire(&mut self, id: &str, cause: Cause) {
        let overlapping = self.schedule(id).ok().and_then(|s| self.still_running(s));
        if overlapping.is_some() {
            if let Some(schedule) = self.schedules.get_mut(id) {
                schedule.skipped_runs += 1;
            }
        } else if let Err(error) = self.run_schedule(id, cause) {
            tracing::warn!(schedule_id = id, cause = %error, "a scheduled run could not start");
        }
        if let Some(schedule) = self.schedules.get_mut(id) {
            schedule.next_fire_at = schedule.spec.cron.next_after(self.now);
        }
        self.dirty_schedules.insert(id.to_owned());
        self.arm_schedule(id);
    }

    /// Starts one run: the plan with fresh ids, as a workflow that names the schedule.
    fn run_schedule(&mut self, id: &str, cause: Cause) -> Result<WorkflowInfo> {
        let Some(schedule) = self.schedules.get(id) else {
            return Err(EngineError::not_found("schedule", id));
        };
        let name = schedule.spec.name.clone();
        let target = schedule.spec.target.clone();
        let plan = target.plan(&name, || self.new_id().into());
        let started = self.start_workflow(plan, Some(id.to_owned()));
        let now = self.now;
        if let Some(schedule) = self.schedules.get_mut(id) {
            match &started {
                Ok(info) => {
                    schedule.runs += 1;
                    schedule.last_fired_at = Some(now);
                    schedule.last_workflow_id = Some(info.id.clone());
                    schedule.last_error = None;
                }
                Err(error) => {
                    schedule.last_error = Some(match cause {
                        Cause::Missed => format!("the run missed during a restart: {error}"),
                        Cause::Due | Cause::ByHand => error.to_string(),
                    });
                }
            }
        }
        self.dirty_schedules.insert(id.to_owned());
        started
    }

    /// The schedule's last run, if it still goes and its overlap policy is skip.
    fn still_running(&self, schedule: &Schedule) -> Option<String> {
        if schedule.spec.overlap == OverlapPolicy::Allow {
            return None;
        }
        let last = schedule.last_workflow_id.as_ref()?;
        self.workflows
            .get(last)
            .filter(|w| w.record.info.status == WorkflowStatus::Running)
            .map(|_| last.clone())
    }

    /// Arms the schedule's timer for its next time (at most [`RECHECK`] ahead).
    fn arm_schedule(&mut self, id: &str) {
        let Some(due) = self.schedules.get(id).and_then(|s| s.next_fire_at) else {
            return;
        };
        let after = due
            .duration_since(self.now)
            .unwrap_or(Duration::ZERO)
            .min(RECHECK);
        self.effects.push(Effect::ArmTimer {
            after,
            timer: Timer::Schedule(id.to_owned()),
        });
    }
}
