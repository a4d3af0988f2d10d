//! Workflows: a plan becomes its instances and one batch of tasks; its view is computed
//! from its tasks while it runs and frozen when it ends; cancel, fail-fast and its budget.

use super::{Answer, CallId, Core, Flow};
use crate::engine::{
    error::{EngineError, Result},
    model::{
        event::{EventKind, Payload},
        task::{FailureClass, TaskId, TaskSpec, TaskStatus, Usage, WorkflowId},
    },
    ports::{StopReason, WorkflowRecord},
    workflow::{WorkflowInfo, WorkflowPlan, WorkflowStatus},
};
use std::sync::Arc;

impl Core {
    pub(super) fn execute_workflow(&mut self, plan: WorkflowPlan) -> Result<WorkflowInfo> {
        self.start_workflow(plan, None)
    }

    /// Starts a workflow; a scheduled run names its schedule.
    pub(super) fn start_workflow(
        &mut self,
        plan: WorkflowPlan,
        schedule_id: Option<String>,
    ) -> Result<WorkflowInfo> {
        let WorkflowPlan {
            name,
            description,
            instances,
            mut tasks,
            pins,
            leaves,
            budget_usd,
            permissions,
        } = plan;
        // Instances the workflow wants come first: `instance: N` pins refer to them.
        let wanted = instances.map(|n| (n as usize).min(self.config.max_instances));
        let live = self.pool.live().count();
        let available = live.max(wanted.unwrap_or(0));
        for (i, pin) in pins.iter().enumerate() {
            if let Some(n) = pin
                && *n >= available
            {
                return Err(EngineError::invalid(
                    format!("tasks[{i}].instance"),
                    format!(
                        "instance {} does not exist: the workflow has {available} (numbered from 1)",
                        n + 1
                    ),
                ));
            }
        }
        // Pins are checked above; the rest is checked as for any batch, before anything
        // (instances included) is created.
        let unpinned: Vec<TaskSpec> = tasks
            .iter()
            .cloned()
            .map(|mut t| {
                t.instance_id = None;
                t
            })
            .collect();
        self.check(&unpinned, true)?;
        if let Some(wanted) = wanted {
            for _ in self.pool.active_count()..wanted {
                self.spawn_instance(None);
            }
        }
        let live: Vec<String> = self.pool.live().map(|i| i.id.clone()).collect();
        for (spec, pin) in tasks.iter_mut().zip(&pins) {
            spec.instance_id = pin.and_then(|n| live.get(n).cloned());
        }
        let id = self.new_id();
        let info = WorkflowInfo {
            id: id.clone(),
            name,
            description,
            status: WorkflowStatus::Running,
            task_ids: tasks.iter().filter_map(|t| t.id.clone()).collect(),
            created_at: self.now,
            completed_at: None,
            total_cost_usd: 0.0,
            task_counts: [0; TaskStatus::COUNT],
            outputs: Default::default(),
            budget_usd,
            usage: Usage::default(),
            turns: 0,
            permissions,
            schedule_id,
        };
        let flow = Flow {
            record: WorkflowRecord {
                info: info.clone(),
                cancelling: false,
                user_cancelled: false,
                leaves,
            },
            remaining: tasks.len(),
            cancel_waiters: Vec::new(),
        };
        self.workflows.insert(id.clone(), flow);
        self.workflow_order.push(id.clone());
        self.dirty_workflows.insert(id.clone());
        self.publish(
            EventKind::WorkflowStarted,
            None,
            None,
            Some(&id),
            Payload::Workflow(Box::new(info)),
        );
        self.submit(tasks, true, Some(&id))?;
        self.flow(&id).map(|f| self.workflow_info(f))
    }

    /// A running workflow's view is computed from its tasks; a finished one's was frozen
    /// when it finished (its tasks may since have been compacted away).
    pub(super) fn workflow_info(&self, flow: &Flow) -> WorkflowInfo {
        if flow.record.info.status == WorkflowStatus::Running {
            self.compute_workflow_info(&flow.record)
        } else {
            flow.record.info.clone()
        }
    }

    fn compute_workflow_info(&self, record: &WorkflowRecord) -> WorkflowInfo {
        let mut info = record.info.clone();
        info.task_counts = [0; TaskStatus::COUNT];
        info.total_cost_usd = 0.0;
        info.usage = Usage::default();
        info.turns = 0;
        info.outputs.clear();
        let tasks = info.task_ids.iter().filter_map(|id| self.tasks.get(id));
        let mut counts = [0; TaskStatus::COUNT];
        let (mut cost, mut usage, mut turns) = (0.0, Usage::default(), 0);
        for task in tasks.map(|e| &e.task) {
            counts[task.status.index()] += 1;
            // A for_each task's cost is its items' cost, counted with them.
            if let (None, Some(result)) = (&task.spec.fan_out, &task.result) {
                cost += result.cost_usd;
                usage.add(&result.usage);
                turns += u64::from(result.num_turns);
            }
        }
        (
            info.task_counts,
            info.total_cost_usd,
            info.usage,
            info.turns,
        ) = (counts, cost, usage, turns);
        for task in record
            .leaves
            .iter()
            .filter_map(|id| self.tasks.get(id))
            .map(|e| &e.task)
        {
            if let (TaskStatus::Completed, Some(result)) = (task.status, &task.result) {
                info.outputs
                    .insert(task.name().to_owned(), result.text.clone());
            }
        }
        info
    }

    /// One of the workflow's tasks is terminal; the last one ends the workflow.
    pub(super) fn workflow_task_done(&mut self, task_id: &str) {
        let Some(workflow_id) = self
            .tasks
            .get(task_id)
            .and_then(|e| e.task.workflow_id.clone())
        else {
            return;
        };
        let Some(flow) = self.workflows.get_mut(&workflow_id) else {
            return;
        };
        flow.remaining = flow.remaining.saturating_sub(1);
        if flow.remaining > 0 {
            return;
        }
        self.end_workflow(&workflow_id);
    }

    /// Freezes a workflow whose tasks are all terminal and tells whoever waits.
    pub(super) fn end_workflow(&mut self, workflow_id: &str) {
        let Some(flow) = self.workflows.get(workflow_id) else {
            return;
        };
        let all_completed = flow.record.info.task_ids.iter().all(|t| {
            self.tasks
                .get(t)
                .is_none_or(|e| e.task.status == TaskStatus::Completed)
        });
        let mut frozen = self.compute_workflow_info(&flow.record);
        frozen.status = match (all_completed, flow.record.user_cancelled) {
            (true, _) => WorkflowStatus::Completed,
            (false, true) => WorkflowStatus::Cancelled,
            (false, false) => WorkflowStatus::Failed,
        };
        frozen.completed_at = Some(self.now);
        let Some(flow) = self.workflows.get_mut(workflow_id) else {
            return;
        };
        flow.record.info = frozen.clone();
        let waiters = std::mem::take(&mut flow.cancel_waiters);
        self.dirty_workflows.insert(workflow_id.to_owned());
        // None of its tasks runs again: its conversations are not resumed by name.
        self.forget_sessions_of(workflow_id);
        for call in waiters {
            self.reply(call, Answer::Workflow(Ok(frozen.clone())));
        }
        self.publish(
            EventKind::WorkflowFinished,
            None,
            None,
            Some(workflow_id),
            Payload::Workflow(Box::new(frozen)),
        );
    }

    pub(super) fn cancel_workflow(&mut self, call: CallId, id: WorkflowId) {
        let Some(flow) = self.workflows.get_mut(&id) else {
            let error = EngineError::not_found("workflow", &id);
            return self.reply(call, Answer::Workflow(Err(error)));
        };
        if flow.record.info.status != WorkflowStatus::Running {
            let status = flow.record.info.status.as_str();
            let error =
                EngineError::FailedPrecondition(format!("workflow {id} is already {status}"));
            return self.reply(call, Answer::Workflow(Err(error)));
        }
        flow.record.user_cancelled = true;
        flow.cancel_waiters.push(call);
        self.abort_workflow(&id, "cancelled with its workflow");
    }

    /// A workflow whose spending reached its budget starts nothing more: its tasks not yet
    /// started fail (class budget_exhausted); running ones finish.
    pub(super) fn check_workflow_budget(&mut self, id: &str) {
        let Some(flow) = self.workflows.get(id) else {
            return;
        };
        let Some(budget) = flow.record.info.budget_usd else {
            return;
        };
        let spent = self.workflow_info(flow).total_cost_usd;
        if spent < budget || flow.record.info.status != WorkflowStatus::Running {
            return;
        }
        let reason =
            format!("not started: the workflow's budget of ${budget:.2} is spent (${spent:.4})");
        let waiting: Vec<TaskId> = self.unfinished(id, |s| {
            matches!(s, TaskStatus::Pending | TaskStatus::Queued)
        });
        for task in &waiting {
            if let Some(entry) = self.tasks.get_mut(task) {
                Arc::make_mut(&mut entry.task).failure_class = Some(FailureClass::BudgetExhausted);
            }
        }
        for task in waiting {
            self.finish(&task, TaskStatus::Failed, None, Some(reason.clone()));
        }
    }

    /// The workflow's tasks whose state passes `wanted`.
    fn unfinished(&self, id: &str, wanted: impl Fn(TaskStatus) -> bool) -> Vec<TaskId> {
        self.workflows
            .get(id)
            .map(|f| {
                f.record
                    .info
                    .task_ids
                    .iter()
                    .filter(|t| self.tasks.get(t).is_some_and(|e| wanted(e.task.status)))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Cancels every unfinished task of a workflow: pending and queued ones now, running
    /// ones once their process is stopped.
    pub(super) fn abort_workflow(&mut self, id: &str, reason: &str) {
        let Some(flow) = self.workflows.get_mut(id) else {
            return;
        };
        flow.record.cancelling = true;
        self.dirty_workflows.insert(id.to_owned());
        for task_id in self.unfinished(id, |s| !s.is_terminal()) {
            match self.tasks.get(&task_id).map(|e| e.task.status) {
                Some(TaskStatus::Pending | TaskStatus::Queued) => {
                    self.finish(
                        &task_id,
                        TaskStatus::Cancelled,
                        None,
                        Some(reason.to_owned()),
                    );
                }
                Some(TaskStatus::Running) => {
                    self.stop_running(&task_id, StopReason::Cancelled, None);
                }
                _ => {}
            }
        }
    }
}
