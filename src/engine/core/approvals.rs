//! Tool permissions: a run's `can_use_tool` question is answered by the task's policy (its
//! own rules, its workflow's, the swarm's; deny wins), else it becomes an approval that a
//! person decides before its deadline. Time spent waiting on a person is held off the run's
//! timeout. A decision that could not reach its run (the run ended, the server restarted)
//! is given to the task's next identical question, so none is lost.

use std::sync::Arc;
use std::{
    collections::{HashMap, HashSet},
    path::PathBuf,
    time::Duration,
};

use serde_json::Value;

use super::{AskId, Core, Effect, Timer};
use crate::engine::{
    error::{EngineError, Result},
    model::{
        approval::{
            Approval, ApprovalId, ApprovalState, DenialPolicy, PermissionDenial, PermissionPolicy,
            PolicyScope, Rule, ToolCall, asks, decide,
        },
        event::{EventKind, Payload},
        task::{FailureClass, TaskId, TaskStatus},
    },
    ports::{PermissionDecision, PermissionRequest, RunOutcome},
};

/// Which approvals a listing wants; empty fields match all.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ApprovalQuery {
    pub states: Vec<ApprovalState>,
    pub task_id: Option<TaskId>,
    pub workflow_id: Option<String>,
}

/// A person's decision on an approval.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub allow: bool,
    pub message: String,
    /// The input to run the tool with instead (an allow only; a JSON object).
    pub updated_input: Option<Value>,
    /// Also add the rule that covers this call to this policy.
    pub always: Option<PolicyScope>,
    /// Who decided (the API key's name).
    pub by: String,
}

/// The approvals and what the runs are waiting on.
#[derive(Debug, Default)]
pub(super) struct Book {
    all: HashMap<ApprovalId, Approval>,
    order: Vec<ApprovalId>,
    /// Pending approvals a run is waiting on, and its question.
    waiting: HashMap<ApprovalId, AskId>,
    /// Swarm-wide rules added at run time ("always"), besides the configured ones.
    swarm_added: PermissionPolicy,
    dirty: Vec<ApprovalId>,
    dirty_set: HashSet<ApprovalId>,
    swarm_dirty: bool,
    /// Each task's approvals, so they go with it when it is compacted.
    by_task: HashMap<TaskId, Vec<ApprovalId>>,
    /// Forgotten since the last turn's batch.
    deleted: Vec<ApprovalId>,
    /// Ids in `order` no longer in `all`, swept once they are half of it.
    tombstones: usize,
}

impl Book {
    fn touch(&mut self, id: &str) {
        if self.dirty_set.insert(id.to_owned()) {
            self.dirty.push(id.to_owned());
        }
    }

    fn insert(&mut self, approval: Approval) {
        let id = approval.id.clone();
        self.order.push(id.clone());
        self.by_task
            .entry(approval.task_id.clone())
            .or_default()
            .push(id.clone());
        self.all.insert(id, approval);
    }

    /// Forgets `task`'s approvals, from memory and (through the batch) from the store.
    fn forget_task(&mut self, task: &str) {
        for id in self.by_task.remove(task).unwrap_or_default() {
            if self.all.remove(&id).is_some() {
                self.tombstones += 1;
            }
            self.waiting.remove(&id);
            self.deleted.push(id);
        }
        if self.tombstones > self.order.len() / 2 {
            let all = &self.all;
            self.order.retain(|id| all.contains_key(id));
            self.tombstones = 0;
        }
    }
}

impl Core {
    /// How many approvals wait on a person.
    pub(super) fn approvals_pending(&self) -> u64 {
        let pending = self.approvals.all.values();
        pending
            .filter(|a| a.state == ApprovalState::Pending)
            .count() as u64
    }

    /// The approvals and swarm rules that changed this turn, for the batch.
    /// This turn's approval changes: those that changed (a forgotten one is not written
    /// again), those forgotten, and the swarm-wide rules when they changed.
    pub(super) fn approval_changes(
        &mut self,
    ) -> (Vec<Approval>, Vec<ApprovalId>, Option<PermissionPolicy>) {
        let book = &mut self.approvals;
        book.dirty_set.clear();
        let changed = book
            .dirty
            .drain(..)
            .filter_map(|id| book.all.get(&id).cloned())
            .collect();
        let swarm = std::mem::take(&mut book.swarm_dirty).then(|| book.swarm_added.clone());
        (changed, std::mem::take(&mut book.deleted), swarm)
    }

    /// A task compacted away takes its approvals with it.
    pub(super) fn forget_approvals_of(&mut self, task: &str) {
        self.approvals.forget_task(task);
    }

    /// The stored approvals come back; those of a task that will not run again are closed,
    /// the others wait (their task's rerun asks again) with their deadlines armed.
    pub(super) fn restore_approvals(&mut self, approvals: Vec<Approval>, swarm: PermissionPolicy) {
        self.approvals.swarm_added = swarm;
        for approval in approvals {
            self.approvals.insert(approval);
        }
        // Those of a task compacted away before its approvals went with it.
        let orphans: Vec<TaskId> = self
            .approvals
            .by_task
            .keys()
            .filter(|task| !self.tasks.contains_key(task))
            .cloned()
            .collect();
        for task in orphans {
            self.approvals.forget_task(&task);
        }
        let pending: Vec<(ApprovalId, TaskId)> = self
            .approvals
            .all
            .values()
            .filter(|a| a.state == ApprovalState::Pending)
            .map(|a| (a.id.clone(), a.task_id.clone()))
            .collect();
        for (id, task) in pending {
            let status = self.tasks.get(&task).map(|e| e.task.status);
            match status {
                Some(s) if !s.is_terminal() => {
                    let left = self.approvals.all[&id]
                        .expires_at
                        .duration_since(self.now)
                        .unwrap_or_default();
                    self.effects.push(Effect::ArmTimer {
                        after: left,
                        timer: Timer::ApprovalExpiry(id),
                    });
                }
                _ => self.close(&id, status),
            }
        }
    }

    pub(super) fn list_approvals(&self, query: &ApprovalQuery) -> Vec<Approval> {
        self.approvals
            .order
            .iter()
            .filter_map(|id| self.approvals.all.get(id))
            .filter(|a| query.states.is_empty() || query.states.contains(&a.state))
            .filter(|a| query.task_id.as_ref().is_none_or(|t| *t == a.task_id))
            .filter(|a| {
                query
                    .workflow_id
                    .as_ref()
                    .is_none_or(|w| a.workflow_id.as_ref() == Some(w))
            })
            .cloned()
            .collect()
    }

    pub(super) fn get_approval(&self, id: &str) -> Result<Approval> {
        self.approvals
            .all
            .get(id)
            .cloned()
            .ok_or_else(|| EngineError::not_found("approval", id))
    }

    /// The directory the task's run works in, as dispatch chose it.
    fn run_directory(&self, task: &str) -> PathBuf {
        let Some(entry) = self.tasks.get(task) else {
            return self.config.working_directory.clone();
        };
        let instance_dir = entry
            .task
            .instance_id
            .as_deref()
            .and_then(|i| self.pool.get(i))
            .and_then(|i| i.working_directory.clone());
        self.config.working_directory.join(
            entry
                .task
                .spec
                .working_directory
                .clone()
                .or(instance_dir)
                .unwrap_or_default(),
        )
    }

    /// The task's policies, most specific first.
    fn policies(&self, task: &str) -> Vec<(PolicyScope, PermissionPolicy)> {
        let mut levels = Vec::new();
        let Some(entry) = self.tasks.get(task) else {
            return levels;
        };
        levels.push((
            PolicyScope::Task,
            PermissionPolicy::clone(&entry.task.spec.permissions),
        ));
        if let Some(flow) = entry
            .task
            .workflow_id
            .as_ref()
            .and_then(|w| self.workflows.get(w))
        {
            levels.push((PolicyScope::Workflow, flow.record.info.permissions.clone()));
        }
        let mut swarm = self.config.permissions.clone();
        for rule in &self.approvals.swarm_added.allow {
            swarm.add(true, rule);
        }
        for rule in &self.approvals.swarm_added.deny {
            swarm.add(false, rule);
        }
        levels.push((PolicyScope::Swarm, swarm));
        levels
    }

    /// What a rule (or `ask: false`) says of this call; `None`: a person decides.
    fn ruled(
        &self,
        task: &str,
        tool: &str,
        input: &Value,
        resolved: Option<&(PathBuf, PathBuf)>,
    ) -> Option<(bool, String)> {
        let levels = self.policies(task);
        let borrowed: Vec<(PolicyScope, &PermissionPolicy)> =
            levels.iter().map(|(s, p)| (*s, p)).collect();
        let cwd = self.run_directory(task);
        let call = ToolCall {
            tool,
            input,
            cwd: &cwd,
            resolved: resolved.map(|(path, cwd)| (path.as_path(), cwd.as_path())),
        };
        if let Some(verdict) = decide(&borrowed, call) {
            let how = if verdict.allow { "allowed" } else { "denied" };
            return Some((
                verdict.allow,
                format!(
                    "{how} by the rule {} ({} policy)",
                    verdict.rule, verdict.scope
                ),
            ));
        }
        (!asks(&borrowed)).then(|| {
            (
                false,
                format!("{tool} needs approval, and the task's policy does not ask (ask: false)"),
            )
        })
    }

    /// A run asks whether it may use a tool.
    pub(super) fn permission_asked(
        &mut self,
        task_id: TaskId,
        ask: AskId,
        request: PermissionRequest,
    ) {
        let running = self.running.contains_key(&task_id)
            && self
                .tasks
                .get(&task_id)
                .is_some_and(|e| e.task.status == TaskStatus::Running);
        if !running {
            self.answer(ask, deny("the task is not running"));
            return;
        }
        let ruled = self.ruled(
            &task_id,
            &request.tool_name,
            &request.input,
            request.resolved.as_ref(),
        );
        if let Some((allow, why)) = ruled {
            if allow {
                self.answer(
                    ask,
                    PermissionDecision::Allow {
                        updated_input: None,
                    },
                );
            } else {
                self.denied(&task_id, &request, &why);
                self.answer(ask, deny(&why));
            }
            return;
        }
        // The same question asked before, its answer not yet given to a run: a rerun after
        // a restart, or after the run that asked ended.
        let earlier = self.approvals.order.iter().find(|id| {
            self.approvals.all.get(*id).is_some_and(|a| {
                a.task_id == task_id
                    && a.tool_name == request.tool_name
                    && a.input == request.input
                    && !self.approvals.waiting.contains_key(*id)
                    && (a.state == ApprovalState::Pending || !a.delivered)
            })
        });
        if let Some(id) = earlier.cloned() {
            let approval = &self.approvals.all[&id];
            if approval.state == ApprovalState::Pending {
                self.approvals.waiting.insert(id, ask);
                self.hold(&task_id);
            } else {
                let decision = decision_of(approval);
                if let Some(a) = self.approvals.all.get_mut(&id) {
                    a.delivered = true;
                }
                self.approvals.touch(&id);
                if let PermissionDecision::Deny { message } = &decision {
                    let message = message.clone();
                    self.denied(&task_id, &request, &message);
                }
                self.answer(ask, decision);
            }
            return;
        }
        let Some(task) = self.tasks.get(&task_id).map(|e| &e.task) else {
            return;
        };
        let id = format!("apr-{}", self.next_sequence);
        let timeout = self.config.approval_timeout;
        let approval = Approval {
            id: id.clone(),
            task_id: task_id.clone(),
            workflow_id: task.workflow_id.clone(),
            attempt: task.attempts,
            tool_name: request.tool_name,
            input: request.input,
            suggestions: request.suggestions,
            description: request.description,
            blocked_path: request.blocked_path,
            tool_use_id: request.tool_use_id,
            requested_at: self.now,
            expires_at: self.now + timeout,
            state: ApprovalState::Pending,
            decided_by: None,
            decided_at: None,
            message: String::new(),
            updated_input: None,
            rule_added: None,
            delivered: false,
        };
        let instance = task.instance_id.clone();
        self.approvals.insert(approval.clone());
        self.approvals.waiting.insert(id.clone(), ask);
        self.approvals.touch(&id);
        self.publish_owned(
            EventKind::ApprovalRequested,
            Some(task_id.clone()),
            instance,
            approval.workflow_id.clone(),
            Payload::Approval(Box::new(approval)),
        );
        self.effects.push(Effect::ArmTimer {
            after: timeout,
            timer: Timer::ApprovalExpiry(id),
        });
        self.hold(&task_id);
    }

    /// A person decides.
    pub(super) fn decide_approval(
        &mut self,
        id: &str,
        decision: super::Decision,
    ) -> Result<Approval> {
        let approval = self.get_approval(id)?;
        if approval.state != ApprovalState::Pending {
            let by = approval
                .decided_by
                .as_deref()
                .map(|b| format!(" by {b}"))
                .unwrap_or_default();
            return Err(EngineError::FailedPrecondition(format!(
                "approval_id: approval {id} is already {}{by}; nothing was changed",
                approval.state
            )));
        }
        if let Some(input) = &decision.updated_input {
            if !decision.allow {
                return Err(EngineError::invalid(
                    "updated_input",
                    "only an allow runs the tool, with an edited input",
                ));
            }
            if !input.is_object() {
                return Err(EngineError::invalid(
                    "updated_input",
                    "must be a JSON object (the tool's input)",
                ));
            }
        }
        let rule = Rule::for_call(&approval.tool_name, &approval.input, &approval.suggestions);
        let added = match decision.always {
            None => None,
            Some(PolicyScope::Task) => {
                if let Some(entry) = self.tasks.get_mut(&approval.task_id) {
                    Arc::make_mut(&mut Arc::make_mut(&mut entry.task).spec)
                        .permissions
                        .add(decision.allow, &rule);
                }
                self.mark_dirty(&approval.task_id);
                Some(PolicyScope::Task)
            }
            Some(PolicyScope::Workflow) => {
                let flow = approval
                    .workflow_id
                    .as_ref()
                    .and_then(|w| self.workflows.get_mut(w));
                let Some(flow) = flow else {
                    return Err(EngineError::invalid(
                        "always",
                        format!("task {} belongs to no workflow", approval.task_id),
                    ));
                };
                flow.record.info.permissions.add(decision.allow, &rule);
                let workflow = flow.record.info.id.clone();
                self.dirty_workflows.insert(workflow);
                Some(PolicyScope::Workflow)
            }
            Some(PolicyScope::Swarm) => {
                self.approvals.swarm_added.add(decision.allow, &rule);
                self.approvals.swarm_dirty = true;
                Some(PolicyScope::Swarm)
            }
        };
        let state = if decision.allow {
            ApprovalState::Allowed
        } else {
            ApprovalState::Denied
        };
        let message = match (decision.allow, decision.message.trim()) {
            (false, "") => format!("denied by {}", decision.by),
            (_, text) => text.to_owned(),
        };
        let rule_added = added.map(|scope| format!("{scope}:{rule}"));
        let decided = self.settle(
            id,
            state,
            &decision.by,
            message,
            decision.updated_input,
            rule_added,
        );
        if added.is_some() {
            self.settle_by_rules();
        }
        decided
    }

    /// An approval's deadline passed.
    pub(super) fn approval_expired(&mut self, id: &str) {
        let pending = self
            .approvals
            .all
            .get(id)
            .is_some_and(|a| a.state == ApprovalState::Pending && a.expires_at <= self.now);
        if pending {
            let message = format!(
                "not decided within {}: denied",
                crate::engine::model::task::seconds(self.config.approval_timeout)
            );
            let _ = self.settle(id, ApprovalState::Expired, "deadline", message, None, None);
        }
    }

    /// A rule added by "always" may decide other approvals still waiting.
    fn settle_by_rules(&mut self) {
        let waiting: Vec<ApprovalId> = self.approvals.waiting.keys().cloned().collect();
        for id in waiting {
            let Some(a) = self.approvals.all.get(&id) else {
                continue;
            };
            // Without the resolved path the question came with, only rules that need none
            // decide here; a path rule allows nothing it could not check.
            if let Some((allow, why)) = self
                .ruled(&a.task_id, &a.tool_name, &a.input, None)
                .filter(|(allow, _)| !allow || !touches_files(&a.tool_name))
            {
                let state = if allow {
                    ApprovalState::Allowed
                } else {
                    ApprovalState::Denied
                };
                let _ = self.settle(&id, state, "rule", why, None, None);
            }
        }
    }

    /// Records a decision, tells the run waiting on it (if any) and everyone else.
    fn settle(
        &mut self,
        id: &str,
        state: ApprovalState,
        by: &str,
        message: String,
        updated_input: Option<Value>,
        rule_added: Option<String>,
    ) -> Result<Approval> {
        let now = self.now;
        let ask = self.approvals.waiting.remove(id);
        let Some(approval) = self.approvals.all.get_mut(id) else {
            return Err(EngineError::not_found("approval", id));
        };
        approval.state = state;
        approval.decided_by = Some(by.to_owned());
        approval.decided_at = Some(now);
        approval.message = message;
        approval.updated_input = updated_input;
        approval.rule_added = rule_added;
        approval.delivered = ask.is_some();
        let approval = approval.clone();
        self.approvals.touch(id);
        if let Some(ask) = ask {
            let decision = decision_of(&approval);
            if matches!(decision, PermissionDecision::Deny { .. }) {
                let request = PermissionRequest {
                    tool_name: approval.tool_name.clone(),
                    input: approval.input.clone(),
                    tool_use_id: approval.tool_use_id.clone(),
                    ..PermissionRequest::default()
                };
                self.denied(&approval.task_id, &request, &approval.message);
            }
            self.answer(ask, decision);
            self.hold(&approval.task_id);
        }
        let instance = self
            .tasks
            .get(&approval.task_id)
            .and_then(|e| e.task.instance_id.clone());
        self.publish_owned(
            EventKind::ApprovalDecided,
            Some(approval.task_id.clone()),
            instance,
            approval.workflow_id.clone(),
            Payload::Approval(Box::new(approval.clone())),
        );
        Ok(approval)
    }

    /// A task that will not run again (or whose approval cannot matter) closes its pending
    /// approvals.
    fn close(&mut self, id: &str, status: Option<TaskStatus>) {
        let why = match status {
            Some(TaskStatus::Cancelled) => "closed: the task was cancelled".to_owned(),
            Some(s) => format!("closed: the task ended ({s}) before a decision"),
            None => "closed: the task is gone".to_owned(),
        };
        let _ = self.settle(id, ApprovalState::Expired, "claude-swarm", why, None, None);
        if let Some(a) = self.approvals.all.get_mut(id) {
            // Nothing will ask again: nothing to hand on.
            a.delivered = true;
        }
    }

    /// A run ended: its questions are gone with it. The approvals of a task that is over
    /// close; those of a task that runs again wait for its rerun.
    pub(super) fn approvals_after_run(&mut self, task: &str) {
        let mine: Vec<ApprovalId> = self
            .approvals
            .waiting
            .keys()
            .filter(|id| {
                self.approvals
                    .all
                    .get(*id)
                    .is_some_and(|a| a.task_id == task)
            })
            .cloned()
            .collect();
        for id in &mine {
            self.approvals.waiting.remove(id);
        }
        let status = self.tasks.get(task).map(|e| e.task.status);
        if status.is_some_and(TaskStatus::is_terminal) {
            let pending: Vec<ApprovalId> = self
                .approvals
                .order
                .iter()
                .filter(|id| {
                    self.approvals
                        .all
                        .get(*id)
                        .is_some_and(|a| a.task_id == task && a.state == ApprovalState::Pending)
                })
                .cloned()
                .collect();
            for id in pending {
                self.close(&id, status);
            }
        }
    }

    /// With `on_permission_denied: fail`, a run that completed with refused tool calls fails.
    pub(super) fn judge_denials(&self, task: &str, mut outcome: RunOutcome) -> RunOutcome {
        let fail = self
            .tasks
            .get(task)
            .is_some_and(|e| e.task.spec.on_permission_denied == DenialPolicy::Fail);
        let denials = outcome
            .result
            .as_ref()
            .map(|r| r.permission_denials.as_slice())
            .unwrap_or_default();
        if fail && outcome.status == TaskStatus::Completed && !denials.is_empty() {
            let calls: Vec<String> = denials
                .iter()
                .map(|d| match d.input.get("command").and_then(Value::as_str) {
                    Some(command) => format!("{}({command})", d.tool_name),
                    None => d.tool_name.clone(),
                })
                .collect();
            outcome.status = TaskStatus::Failed;
            outcome.class = Some(FailureClass::PermissionDenied);
            outcome.error = Some(format!(
                "{} tool call(s) were refused: {} (on_permission_denied: fail)",
                calls.len(),
                calls.join(", ")
            ));
        }
        outcome
    }

    /// The agent refused a call on its own: an event.
    pub(super) fn agent_denied(&mut self, task: &str, denial: PermissionDenial) {
        self.publish_denial(task, denial);
    }

    fn denied(&mut self, task: &str, request: &PermissionRequest, message: &str) {
        let denial = PermissionDenial {
            tool_name: request.tool_name.clone(),
            tool_use_id: request.tool_use_id.clone(),
            input: request.input.clone(),
            message: message.to_owned(),
        };
        self.publish_denial(task, denial);
    }

    fn publish_denial(&mut self, task: &str, denial: PermissionDenial) {
        let Some(entry) = self.tasks.get(task) else {
            return;
        };
        let (instance, workflow) = (
            entry.task.instance_id.clone(),
            entry.task.workflow_id.clone(),
        );
        self.publish_owned(
            EventKind::PermissionDenied,
            Some(self.shared_id(task)),
            instance,
            workflow,
            Payload::Denial(Box::new(denial)),
        );
    }

    fn answer(&mut self, ask: AskId, decision: PermissionDecision) {
        self.effects
            .push(Effect::AnswerPermission { ask, decision });
    }

    /// Holds the task's timeout while one of its questions waits on a person.
    fn hold(&mut self, task: &str) {
        let held = self.approvals.waiting.keys().any(|id| {
            self.approvals
                .all
                .get(id)
                .is_some_and(|a| a.task_id == task)
        });
        self.effects.push(Effect::HoldTimeout {
            task: self.shared_id(task),
            held,
        });
    }
}

/// Tools whose calls name a file, which path rules (and symlinks) concern.
fn touches_files(tool: &str) -> bool {
    matches!(
        tool,
        "Read" | "Glob" | "Grep" | "Edit" | "MultiEdit" | "Write" | "NotebookEdit"
    )
}

fn deny(message: &str) -> PermissionDecision {
    PermissionDecision::Deny {
        message: message.to_owned(),
    }
}

/// What a decided approval tells the run.
fn decision_of(approval: &Approval) -> PermissionDecision {
    match approval.state {
        ApprovalState::Allowed => PermissionDecision::Allow {
            updated_input: approval.updated_input.clone(),
        },
        _ => deny(if approval.message.is_empty() {
            "denied"
        } else {
            &approval.message
        }),
    }
}

/// How long approvals wait for a person by default.
pub const DEFAULT_APPROVAL_TIMEOUT: Duration = Duration::from_secs(60 * 60);
