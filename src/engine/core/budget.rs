//! What holds dispatching back: the swarm's budget once spent, and shutdown (an account's
//! usage limit holds back only its instances: see `accounts`); and the swarm's status,
//! which shows them.

use std::time::Duration;

use super::{Answer, CallId, Core, SwarmStatus};
use crate::engine::{
    model::{
        event::{Budget, EventKind, Payload},
        instance::{InstanceStatus, remote_node},
        task::TaskId,
    },
    ports::StopReason,
    workflow::WorkflowStatus,
};

impl Core {
    /// Whether dispatching is held: the swarm's budget is spent.
    pub(super) fn paused(&self) -> bool {
        self.budget_spent().is_some()
    }

    /// The spending just reached the swarm's budget: subscribers (and webhooks) are told.
    pub(super) fn budget_ran_out(&mut self) {
        let Some(budget_usd) = self.config.budget_usd else {
            return;
        };
        tracing::warn!(
            budget_usd,
            total_cost_usd = self.total_cost_usd,
            "the swarm's budget is spent: nothing more starts until budget_usd is raised"
        );
        let budget = Budget {
            budget_usd,
            total_cost_usd: self.total_cost_usd,
        };
        self.publish(
            EventKind::BudgetSpent,
            None,
            None,
            None,
            Payload::Budget(Box::new(budget)),
        );
    }

    /// Why nothing more may start, if the swarm's budget is spent.
    fn budget_spent(&self) -> Option<String> {
        let budget = self.config.budget_usd?;
        (self.total_cost_usd >= budget).then(|| {
            format!(
                "the swarm's budget of ${budget:.2} is spent (${:.2}); raise budget_usd to go on",
                self.total_cost_usd
            )
        })
    }

    /// What an attempt of `task` may spend (`--max-budget-usd`): the least of what is left
    /// of its own budget (after its earlier attempts), its workflow's and the swarm's, so
    /// that a runaway agent stops itself. `None` when no budget applies.
    pub(super) fn attempt_budget(&self, task: &str) -> Option<f64> {
        let task = &self.tasks.get(task)?.task;
        let own = task.spec.options.max_budget_usd.map(|budget| {
            let spent: f64 = task
                .history
                .iter()
                .filter_map(|a| a.result.as_ref())
                .map(|r| r.cost_usd)
                .sum();
            budget - spent
        });
        let workflow = task
            .workflow_id
            .as_ref()
            .and_then(|w| self.workflows.get(w))
            .and_then(|flow| {
                let budget = flow.record.info.budget_usd?;
                Some(budget - self.workflow_info(flow).total_cost_usd)
            });
        let swarm = self.config.budget_usd.map(|b| b - self.total_cost_usd);
        [own, workflow, swarm]
            .into_iter()
            .flatten()
            .reduce(f64::min)
            .map(|left| left.max(0.0))
    }

    pub(super) fn status(&self) -> SwarmStatus {
        let count = |status| self.pool.live().filter(|i| i.status == status).count() as u64;
        SwarmStatus {
            version: env!("CARGO_PKG_VERSION"),
            uptime: Duration::ZERO,
            agent: String::new(),
            instances_idle: count(InstanceStatus::Idle),
            instances_busy: count(InstanceStatus::Busy),
            instances_stopping: count(InstanceStatus::Stopping),
            max_instances: self.config.max_instances as u64,
            tasks: self.counts,
            queued: self.queued,
            workflows_running: self
                .workflows
                .values()
                .filter(|w| w.record.info.status == WorkflowStatus::Running)
                .count() as u64,
            total_cost_usd: self.total_cost_usd,
            paused: self.all_paused(),
            budget_spent: self.budget_spent(),
            budget_usd: self.config.budget_usd,
            usage: self.total_usage.clone(),
            turns: self.total_turns,
            accounts: self.account_summaries(),
            approvals_pending: self.approvals_pending(),
            instances_local: self
                .pool
                .live()
                .filter(|i| remote_node(&i.id).is_none())
                .count() as u64,
        }
    }

    /// Stops every run and dispatches nothing more; answers once no run is left.
    pub(super) fn shutdown(&mut self, call: CallId) {
        self.shutting_down = true;
        if self.running.is_empty() {
            return self.reply(call, Answer::Done);
        }
        self.shutdown_waiters.push(call);
        let running: Vec<TaskId> = self.running.keys().cloned().collect();
        for id in running {
            self.stop_running(&id, StopReason::Shutdown, None);
        }
    }
}
