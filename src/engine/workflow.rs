//! Workflows: a YAML document turned into a validated list of task specs whose
//! dependencies point at each other, plus the workflow record the scheduler keeps.

use std::{
    collections::BTreeMap, collections::HashMap, path::PathBuf, time::Duration, time::SystemTime,
};

use serde::Deserialize;

use super::{
    error::{EngineError, Result},
    task::{Priority, TaskId, TaskSpec, WorkflowId},
};

/// Largest workflow document accepted.
pub const MAX_DOCUMENT_BYTES: usize = 4 * 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkflowStatus {
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl WorkflowStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

/// A workflow as clients see it.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkflowInfo {
    pub id: WorkflowId,
    pub name: String,
    pub description: String,
    pub status: WorkflowStatus,
    pub task_ids: Vec<TaskId>,
    pub created_at: SystemTime,
    pub completed_at: Option<SystemTime>,
    pub total_cost_usd: f64,
    /// Tasks per state, indexed by `TaskStatus::index`.
    pub task_counts: [u64; 7],
}

/// A parsed, validated workflow ready to submit.
#[derive(Clone, Debug)]
pub struct WorkflowPlan {
    pub name: String,
    pub description: String,
    /// Instances the workflow wants live.
    pub instances: Option<u32>,
    /// Task specs with ids set and dependencies mapped to those ids.
    pub tasks: Vec<TaskSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    name: String,
    #[serde(default)]
    description: String,
    instances: Option<u32>,
    /// Default priority of the tasks.
    priority: Option<String>,
    tasks: Vec<DocumentTask>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DocumentTask {
    id: Option<String>,
    name: Option<String>,
    prompt: String,
    #[serde(default)]
    depends_on: Vec<String>,
    priority: Option<String>,
    /// Seconds.
    timeout: Option<f64>,
    #[serde(alias = "directory")]
    working_directory: Option<PathBuf>,
    model: Option<String>,
    #[serde(default)]
    allowed_tools: Vec<String>,
    max_turns: Option<u32>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
}

/// Parses and validates a workflow document. Dependencies name other tasks of the same
/// document by `id` (or `name` when it has no id).
pub fn parse(yaml: &str) -> Result<WorkflowPlan> {
    if yaml.len() > MAX_DOCUMENT_BYTES {
        return Err(EngineError::invalid(
            "yaml",
            format!("the document is larger than {MAX_DOCUMENT_BYTES} bytes"),
        ));
    }
    let doc: Document =
        serde_norway::from_str(yaml).map_err(|e| EngineError::invalid("yaml", e.to_string()))?;
    if doc.name.trim().is_empty() {
        return Err(EngineError::invalid("name", "must not be empty"));
    }
    if doc.tasks.is_empty() {
        return Err(EngineError::invalid(
            "tasks",
            "a workflow needs at least one task",
        ));
    }
    let default_priority = match &doc.priority {
        Some(word) => parse_priority("priority", word)?,
        None => Priority::Normal,
    };

    // Each task's key (id, else name) -> its generated task id.
    let mut ids: HashMap<String, TaskId> = HashMap::new();
    for (i, task) in doc.tasks.iter().enumerate() {
        let key = task_key(i, task)?;
        if ids
            .insert(key.clone(), uuid::Uuid::now_v7().to_string())
            .is_some()
        {
            return Err(EngineError::invalid(
                format!("tasks[{i}].id"),
                format!("{key:?} is used twice"),
            ));
        }
    }

    let mut tasks = Vec::with_capacity(doc.tasks.len());
    for (i, task) in doc.tasks.into_iter().enumerate() {
        let field = |name: &str| format!("tasks[{i}].{name}");
        let key = task_key(i, &task)?;
        let mut depends_on = Vec::with_capacity(task.depends_on.len());
        for (j, dep) in task.depends_on.iter().enumerate() {
            let id = ids.get(dep).ok_or_else(|| {
                EngineError::invalid(
                    format!("tasks[{i}].depends_on[{j}]"),
                    format!("no task named {dep:?} in this workflow"),
                )
            })?;
            depends_on.push(id.clone());
        }
        let timeout = match task.timeout {
            None => None,
            Some(secs) if secs.is_finite() && secs > 0.0 => Some(Duration::from_secs_f64(secs)),
            Some(_) => {
                return Err(EngineError::invalid(
                    field("timeout"),
                    "must be a positive number of seconds",
                ));
            }
        };
        let priority = match &task.priority {
            Some(word) => parse_priority(&field("priority"), word)?,
            None => default_priority,
        };
        let spec = TaskSpec {
            id: Some(ids[&key].clone()),
            name: task.name.unwrap_or_else(|| key.clone()),
            prompt: task.prompt,
            working_directory: task.working_directory,
            priority,
            timeout,
            instance_id: None,
            depends_on,
            metadata: task.metadata,
            model: task.model,
            allowed_tools: task.allowed_tools,
            max_turns: task.max_turns,
            labels: task.labels,
        };
        spec.validate()
            .map_err(|e| e.within(&format!("tasks[{i}]")))?;
        tasks.push(spec);
    }
    Ok(WorkflowPlan {
        name: doc.name,
        description: doc.description,
        instances: doc.instances,
        tasks,
    })
}

fn task_key(i: usize, task: &DocumentTask) -> Result<String> {
    task.id
        .clone()
        .or_else(|| task.name.clone())
        .filter(|k| !k.trim().is_empty())
        .ok_or_else(|| {
            EngineError::invalid(format!("tasks[{i}].id"), "each task needs an id or a name")
        })
}

fn parse_priority(field: &str, word: &str) -> Result<Priority> {
    Priority::parse(word).ok_or_else(|| {
        EngineError::invalid(
            field,
            format!("{word:?} is not one of low, normal, high, critical"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_generated_ids() {
        let plan = parse(
            "name: demo\npriority: high\ntasks:\n  - name: plan step\n    prompt: plan\n  - id: build\n    prompt: build\n    depends_on: [plan step]\n    priority: low\n    timeout: 2.5\n",
        )
        .unwrap();
        assert_eq!(plan.tasks.len(), 2);
        assert_eq!(plan.tasks[0].priority, Priority::High);
        assert_eq!(plan.tasks[1].priority, Priority::Low);
        assert_eq!(
            plan.tasks[1].depends_on,
            vec![plan.tasks[0].id.clone().unwrap()]
        );
        assert_eq!(plan.tasks[1].name, "build");
        assert_eq!(plan.tasks[1].timeout, Some(Duration::from_millis(2500)));
    }

    #[test]
    fn bad_documents_name_the_field() {
        let err = |y: &str| parse(y).unwrap_err();
        assert_eq!(err("name: x\ntasks: []\n").field(), Some("tasks"));
        assert_eq!(
            err("name: x\ntasks:\n  - id: a\n    prompt: p\n    depends_on: [b]\n").field(),
            Some("tasks[0].depends_on[0]")
        );
        assert_eq!(
            err("name: x\ntasks:\n  - id: a\n    prompt: p\n  - id: a\n    prompt: q\n").field(),
            Some("tasks[1].id")
        );
        assert_eq!(
            err("name: x\ntasks:\n  - id: a\n    prompt: ''\n").field(),
            Some("tasks[0].prompt")
        );
        assert_eq!(
            err("name: x\ntasks:\n  - id: a\n    prompt: p\n    priority: urgent\n").field(),
            Some("tasks[0].priority")
        );
        let unknown = err("name: x\nbogus: 1\ntasks:\n  - id: a\n    prompt: p\n");
        assert!(unknown.to_string().contains("bogus"), "{unknown}");
        assert!(unknown.to_string().contains("line 2"), "{unknown}");
    }
}
