//! Submission: every rule checked before anything changes (so a refused batch leaves no
//! trace), ids, idempotency keys, dependency wiring; and listing tasks page by page.

use std::{
    collections::{HashMap, HashSet},
    path::{Component, Path, PathBuf},
};

use super::{Core, Entry, queue::find_cycle};
use crate::engine::{
    error::{EngineError, Result},
    model::{
        event::EventKind,
        task::{Priority, Task, TaskId, TaskSpec, TaskStatus, WorkflowId, guarded_env},
    },
};

/// A page of `list_tasks`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskQuery {
    pub statuses: Vec<TaskStatus>,
    pub priorities: Vec<Priority>,
    pub workflow_id: Option<WorkflowId>,
    /// Page size (clamped to 1..=1000; 0 means 100).
    pub limit: usize,
    /// Where the previous page ended.
    pub page_token: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TaskPage {
    pub tasks: Vec<Task>,
    pub next_page_token: Option<String>,
}

impl Core {
    /// Refuses a working directory outside the configured workspace root. Relative
    /// directories are taken from the default working directory; `..` is resolved first.
    pub(super) fn inside_workspace(&self, dir: &Path) -> Result<()> {
        self.inside_workspace_as("working_directory", dir)
    }

    /// [`Self::inside_workspace`] for the directory in `field`.
    fn inside_workspace_as(&self, field: &str, dir: &Path) -> Result<()> {
        let Some(root) = &self.config.workspace_root else {
            return Ok(());
        };
        let normal = |path: &Path| -> PathBuf {
            let absolute = self.config.working_directory.join(path);
            let mut clean = PathBuf::new();
            for part in absolute.components() {
                match part {
                    Component::ParentDir => {
                        clean.pop();
                    }
                    Component::CurDir => {}
                    other => clean.push(other),
                }
            }
            clean.canonicalize().unwrap_or(clean)
        };
        if normal(dir).starts_with(normal(root)) {
            Ok(())
        } else {
            Err(EngineError::invalid(
                field,
                format!(
                    "{} is outside the workspace root {}",
                    dir.display(),
                    root.display()
                ),
            ))
        }
    }

    /// Checks every rule before changing anything, so a refused batch leaves no trace.
    pub(super) fn check(&self, specs: &[TaskSpec], batch: bool) -> Result<()> {
        let locate = |i: usize, e: EngineError| {
            if batch {
                e.within(&format!("tasks[{i}]"))
            } else {
                e
            }
        };
        if specs.is_empty() {
            return Err(EngineError::invalid(
                "tasks",
                "at least one task is required",
            ));
        }
        let mut new_ids: HashSet<&str> = HashSet::new();
        for (i, spec) in specs.iter().enumerate() {
            spec.validate().map_err(|e| locate(i, e))?;
            self.confined(spec).map_err(|e| locate(i, e))?;
            if let Some(id) = &spec.id {
                if self.tasks.contains_key(id) {
                    return Err(EngineError::AlreadyExists {
                        kind: "task",
                        id: id.to_string(),
                    });
                }
                if !new_ids.insert(id) {
                    return Err(locate(
                        i,
                        EngineError::invalid("id", format!("{id:?} is used twice in this batch")),
                    ));
                }
            }
            self.check_account(spec).map_err(|e| locate(i, e))?;
            if let Some(instance) = &spec.instance_id
                && !self.pool.get(instance).is_some_and(|x| x.status.is_live())
            {
                return Err(locate(
                    i,
                    EngineError::invalid("instance_id", format!("no live instance {instance:?}")),
                ));
            }
        }
        // A well-formed request that would pass the bound is refused as a whole.
        self.room_for(specs.len())?;
        for (i, spec) in specs.iter().enumerate() {
            for (j, dep) in spec.depends_on.iter().enumerate() {
                if !self.tasks.contains_key(dep) && !new_ids.contains(dep.as_str()) {
                    return Err(locate(
                        i,
                        EngineError::invalid(
                            format!("depends_on[{j}]"),
                            format!("unknown task id {dep:?}"),
                        ),
                    ));
                }
            }
        }
        let graph: HashMap<&str, Vec<&str>> = specs
            .iter()
            .filter_map(|s| {
                s.id.as_deref()
                    .map(|id| (id, s.depends_on.iter().map(|d| d.as_str()).collect()))
            })
            .collect();
        if let Some(cycle) = find_cycle(&graph) {
            let field = if batch { "tasks" } else { "depends_on" };
            return Err(EngineError::invalid(
                field,
                format!("dependency cycle: {}", cycle.join(" -> ")),
            ));
        }
        Ok(())
    }

    /// Refuses `count` more tasks when the unfinished ones would pass `max_queued_tasks`.
    fn room_for(&self, count: usize) -> Result<()> {
        let unfinished: u64 = [TaskStatus::Pending, TaskStatus::Queued, TaskStatus::Running]
            .iter()
            .map(|s| self.counts[s.index()])
            .sum();
        let limit = self.config.max_queued_tasks;
        if unfinished.saturating_add(count as u64) <= limit as u64 {
            return Ok(());
        }
        Err(EngineError::ResourceExhausted {
            limit: "max_queued_tasks",
            reason: format!(
                "{unfinished} tasks are pending, queued or running and this submission adds \
                 {count}, more than the {limit} the server takes at once"
            ),
        })
    }

    /// What the workspace root and the server's leave confine: the working directory and
    /// the agent's extra directories (`options.add_dirs`, relative to the working
    /// directory) inside the root, and no guarded variable in `options.env` unless
    /// `allow_agent_env_override` lists it.
    fn confined(&self, spec: &TaskSpec) -> Result<()> {
        let dir = spec.working_directory.clone().unwrap_or_default();
        if spec.working_directory.is_some() {
            self.inside_workspace(&dir)?;
        }
        for (i, extra) in spec.options.add_dirs.iter().enumerate() {
            self.inside_workspace_as(&format!("options.add_dirs[{i}]"), &dir.join(extra))?;
        }
        let allowed = &self.config.allow_agent_env_override;
        if let Some(name) = spec
            .options
            .env
            .keys()
            .find(|name| guarded_env(name) && !allowed.contains(name))
        {
            return Err(EngineError::invalid(
                "options.env",
                format!(
                    "{name} decides what the agent's processes load or where they connect; \
                     a task may set it only if the server's allow_agent_env_override lists it"
                ),
            ));
        }
        Ok(())
    }

    /// A retried submission (every task's idempotency key known) gets its tasks back; a
    /// batch mixing known and new keys is refused.
    fn known_submission(&self, specs: &[TaskSpec], batch: bool) -> Result<Option<Vec<Task>>> {
        let known: Vec<Option<&Entry>> = specs
            .iter()
            .map(|s| {
                s.idempotency_key
                    .as_ref()
                    .and_then(|k| self.idempotency.get(k))
                    .and_then(|id| self.tasks.get(id))
            })
            .collect();
        if let Some(i) = known.iter().position(Option::is_some) {
            if known.iter().all(Option::is_some) {
                return Ok(Some(
                    known
                        .into_iter()
                        .flatten()
                        .map(|e| Task::clone(&e.task))
                        .collect(),
                ));
            }
            let field = if batch {
                format!("tasks[{i}].idempotency_key")
            } else {
                "idempotency_key".into()
            };
            return Err(EngineError::invalid(
                field,
                "was used before, but other tasks of this batch are new",
            ));
        }
        let mut keys = HashSet::new();
        for (i, spec) in specs.iter().enumerate() {
            if let Some(key) = &spec.idempotency_key
                && !keys.insert(key)
            {
                return Err(EngineError::invalid(
                    format!("tasks[{i}].idempotency_key"),
                    "is used twice in this batch",
                ));
            }
        }
        Ok(None)
    }

    pub(super) fn submit(
        &mut self,
        specs: Vec<TaskSpec>,
        batch: bool,
        workflow: Option<&WorkflowId>,
    ) -> Result<Vec<Task>> {
        if self.shutting_down {
            return Err(EngineError::Unavailable(
                "the server is shutting down".into(),
            ));
        }
        if let Some(tasks) = self.known_submission(&specs, batch)? {
            return Ok(tasks);
        }
        self.check(&specs, batch)?;
        let mut ids = Vec::with_capacity(specs.len());
        for mut spec in specs {
            // The task's id is kept once, in the task (the spec's would be a copy).
            let id = spec.id.take().unwrap_or_else(|| self.new_id().into());
            if let Some(key) = &spec.idempotency_key {
                self.idempotency.insert(key.clone(), id.clone());
            }
            let task = Task::new(id.clone(), spec, workflow.cloned(), self.now);
            self.insert_task(task, None);
            ids.push(id);
        }
        // Wire up dependencies now that every new task exists.
        let doomed = self.wire_dependencies(&ids);
        for id in &ids {
            self.publish_task(EventKind::TaskSubmitted, id);
        }
        for (id, reason) in doomed {
            self.finish(&id, TaskStatus::Skipped, None, Some(reason));
        }
        for id in &ids {
            if self
                .tasks
                .get(id)
                .is_some_and(|e| e.task.status == TaskStatus::Pending && e.waiting_on == 0)
            {
                self.enqueue(id);
            }
        }
        self.dispatch();
        Ok(ids.iter().filter_map(|id| self.task(id).ok()).collect())
    }

    /// Links each of `ids` to its dependencies: a dependency still to finish counts it as
    /// waiting; a completed one (or one compacted away) is satisfied; one that ended
    /// otherwise dooms it, with the reason, for the caller to skip.
    pub(super) fn wire_dependencies(&mut self, ids: &[TaskId]) -> Vec<(TaskId, String)> {
        let mut doomed = Vec::new();
        for id in ids {
            let deps = self
                .tasks
                .get(id)
                .map(|e| e.task.spec.depends_on.clone())
                .unwrap_or_default();
            for dep in deps {
                match self.tasks.get_mut(&dep) {
                    None => {}
                    Some(e) if e.task.status == TaskStatus::Completed => {}
                    Some(e) if e.task.status.is_terminal() => {
                        doomed.push((
                            id.clone(),
                            format!("dependency {dep} was {}", e.task.status),
                        ));
                    }
                    Some(e) => {
                        e.dependents.push(id.clone());
                        if let Some(entry) = self.tasks.get_mut(id) {
                            entry.waiting_on += 1;
                        }
                    }
                }
            }
        }
        doomed
    }

    /// A new id (of a task, workflow or schedule): a UUIDv7 from the input's time, so ids sort by submission.
    pub(super) fn new_id(&self) -> String {
        let since = self
            .now
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let stamp =
            uuid::Timestamp::from_unix(uuid::NoContext, since.as_secs(), since.subsec_nanos());
        uuid::Uuid::new_v7(stamp).to_string()
    }

    /// Adds a PENDING task to the tables (its dependencies are wired by the caller).
    pub(super) fn insert_task(&mut self, task: Task, parent: Option<TaskId>) {
        self.counts[task.status.index()] += 1;
        self.order.push(task.id.clone());
        self.tasks.insert(Entry {
            task: std::sync::Arc::new(task),
            waiting_on: 0,
            dependents: Vec::new(),
            parent,
            dirty: false,
        });
    }

    pub(super) fn list_tasks(&self, query: TaskQuery) -> Result<TaskPage> {
        let limit = match query.limit {
            0 => 100,
            n => n.min(1000),
        };
        let start = match &query.page_token {
            None => 0,
            Some(token) => token
                .parse::<usize>()
                .ok()
                .filter(|n| *n <= self.order.len())
                .ok_or_else(|| {
                    EngineError::invalid("page_token", "not a token this server gave out")
                })?,
        };
        let mut tasks = Vec::new();
        let mut next = None;
        for (pos, id) in self.order.iter().enumerate().skip(start) {
            // Compacted tasks leave a gap in the order until it is rebuilt.
            let Some(task) = self.tasks.get(id).map(|e| &e.task) else {
                continue;
            };
            let wanted = (query.statuses.is_empty() || query.statuses.contains(&task.status))
                && (query.priorities.is_empty() || query.priorities.contains(&task.spec.priority))
                && (query.workflow_id.is_none() || query.workflow_id == task.workflow_id);
            if !wanted {
                continue;
            }
            if tasks.len() == limit {
                next = Some(pos.to_string());
                break;
            }
            tasks.push(Task::clone(task));
        }
        Ok(TaskPage {
            tasks,
            next_page_token: next,
        })
    }
}
