//! Session names: the tasks of a workflow that name the same `session` continue one
//! conversation. The first to run starts it; the session id its run reports is kept (and
//! found again in the stored results after a restart), and later tasks resume it
//! (`--resume=<id>`). They run one at a time, in the order they become ready: a task whose
//! session another task holds (queued, running, or waiting to retry) stays PENDING until
//! that one is terminal. A workflow's names are forgotten once it is over.

use std::collections::VecDeque;

use super::Core;
use crate::engine::model::task::{TaskId, TaskStatus, WorkflowId};

/// A session name in its scope: two workflows' `session: main` are two conversations.
pub(super) type SessionKey = (Option<WorkflowId>, String);

#[derive(Debug, Default)]
pub(super) struct Session {
    /// The session id the latest run of one of its tasks reported.
    id: Option<String>,
    /// The task that holds it, from queued until terminal.
    holder: Option<TaskId>,
    /// Ready tasks waiting for it, first come first served.
    waiting: VecDeque<TaskId>,
}

impl Core {
    fn session_key(&self, task: &str) -> Option<SessionKey> {
        let task = &self.tasks.get(task)?.task;
        Some((task.workflow_id.clone(), task.spec.session.clone()?))
    }

    /// Whether a ready `task` may queue now: it names no session, or it holds its session
    /// (taking it when free). Otherwise it waits for the session, PENDING.
    pub(super) fn take_session(&mut self, task: &str) -> bool {
        let Some(key) = self.session_key(task) else {
            return true;
        };
        let shared = self.shared_id(task);
        let session = self.sessions.entry(key).or_default();
        match &session.holder {
            None => {
                session.holder = Some(shared);
                true
            }
            Some(holder) if holder == task => true,
            Some(_) => {
                if !session.waiting.iter().any(|t| t == task) {
                    session.waiting.push_back(shared);
                }
                // A task restored as queued waits like the others.
                if self
                    .tasks
                    .get(task)
                    .is_some_and(|e| e.task.status == TaskStatus::Queued)
                {
                    self.set_status(task, TaskStatus::Pending);
                    self.mark_dirty(task);
                }
                false
            }
        }
    }

    /// `task` is terminal: its session goes to the next task waiting for it (a waiting
    /// task that ended leaves the line).
    pub(super) fn release_session(&mut self, task: &str) {
        let Some(key) = self.session_key(task) else {
            return;
        };
        let Some(session) = self.sessions.get_mut(&key) else {
            return;
        };
        if session.holder.as_deref() != Some(task) {
            session.waiting.retain(|t| t != task);
            return;
        }
        session.holder = None;
        let mut next = None;
        while let Some(candidate) = session.waiting.pop_front() {
            let ready = self
                .tasks
                .get(&candidate)
                .is_some_and(|e| e.task.status == TaskStatus::Pending && e.waiting_on == 0);
            if ready {
                next = Some(candidate);
                break;
            }
        }
        if let Some(next) = next {
            self.enqueue(&next);
            self.dispatch();
        }
    }

    /// A run of `task` reported `session_id`: later tasks of its session resume that.
    pub(super) fn record_session(&mut self, task: &str, session_id: &str) {
        if session_id.is_empty() {
            return;
        }
        if let Some(key) = self.session_key(task) {
            self.sessions.entry(key).or_default().id = Some(session_id.to_owned());
        }
    }

    /// A workflow is over: its session names are forgotten.
    pub(super) fn forget_sessions_of(&mut self, workflow: &str) {
        self.sessions
            .retain(|(owner, _), _| owner.as_deref() != Some(workflow));
    }

    /// The session a run of `task` continues: its session name's, unless the task says
    /// which one itself (`options.resume_session`).
    pub(super) fn session_to_resume(&self, task: &str) -> Option<String> {
        let entry = self.tasks.get(task)?;
        if entry.task.spec.options.resume_session.is_some() {
            return None;
        }
        self.sessions.get(&self.session_key(task)?)?.id.clone()
    }
}
