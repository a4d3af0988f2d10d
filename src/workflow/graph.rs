//! The tasks as a graph: each task's key (its `id`, else its `name`) and generated id, its
//! name, its dependencies by key, checked for unknown keys and cycles.

use std::collections::{HashMap, HashSet, hash_map::Entry};

use super::{At, Locator, document::DocumentTask, invalid};
use crate::engine::{TaskId, error::Result, find_cycle};

pub(super) struct Graph {
    /// Each task's key, by position in the document.
    pub(super) keys: Vec<String>,
    /// Each task's name: what the API shows and the workflow's outputs are keyed by.
    pub(super) names: Vec<String>,
    /// The generated task id of each key.
    pub(super) ids: HashMap<String, TaskId>,
    /// Each task's dependencies by key (a `for_each` over a task's result depends on it).
    pub(super) deps: Vec<Vec<String>>,
    /// Position of each key.
    index: HashMap<String, usize>,
}

impl Graph {
    pub(super) fn new(tasks: &[DocumentTask], here: &Locator) -> Result<Self> {
        let mut keys: Vec<String> = Vec::with_capacity(tasks.len());
        let mut ids: HashMap<String, TaskId> = HashMap::new();
        for (i, task) in tasks.iter().enumerate() {
            let blank = |k: &String| !k.trim().is_empty();
            let Some(key) = task
                .id
                .clone()
                .filter(blank)
                .or_else(|| task.name.clone().filter(blank))
            else {
                let reason = "each task needs an id or a name".into();
                return Err(invalid(
                    here,
                    &format!("tasks[{i}].id"),
                    At::Task(i, None),
                    reason,
                ));
            };
            if ids
                .insert(key.clone(), uuid::Uuid::now_v7().to_string().into())
                .is_some()
            {
                let spelled = if task.id.is_some() { "id" } else { "name" };
                return Err(invalid(
                    here,
                    &format!("tasks[{i}].id"),
                    At::Task(i, Some(spelled)),
                    format!("{key:?} is used by an earlier task"),
                ));
            }
            keys.push(key);
        }

        // Outputs are keyed by name, so two tasks may not share one.
        let names: Vec<String> = tasks
            .iter()
            .zip(&keys)
            .map(|(task, key)| task.name.clone().unwrap_or_else(|| key.clone()))
            .collect();
        let mut first_named: HashMap<&str, usize> = HashMap::new();
        for (i, name) in names.iter().enumerate() {
            let first = match first_named.entry(name) {
                Entry::Occupied(first) => *first.get(),
                Entry::Vacant(vacant) => {
                    vacant.insert(i);
                    continue;
                }
            };
            let spelled = if tasks[i].name.is_some() {
                "name"
            } else {
                "id"
            };
            return Err(invalid(
                here,
                &format!("tasks[{i}].name"),
                At::Task(i, Some(spelled)),
                format!(
                    "{name:?} is also the name of tasks[{first}]; names must be unique, as \
                     they key the workflow's outputs"
                ),
            ));
        }

        let mut deps: Vec<Vec<String>> = Vec::with_capacity(tasks.len());
        for (i, task) in tasks.iter().enumerate() {
            let mut list = task.depends_on.clone();
            if let Some(source) = task.for_each.as_ref().and_then(|f| f.task.clone())
                && !list.contains(&source)
            {
                list.push(source);
            }
            for (j, dep) in list.iter().enumerate() {
                let (field, key) = if j < task.depends_on.len() {
                    (format!("tasks[{i}].depends_on[{j}]"), "depends_on")
                } else {
                    (format!("tasks[{i}].for_each.task"), "for_each")
                };
                let reason = if list[..j].contains(dep) {
                    format!("{dep:?} is listed twice")
                } else if !ids.contains_key(dep) {
                    format!("no task named {dep:?} in this workflow")
                } else if *dep == keys[i] {
                    "a task cannot depend on itself".into()
                } else {
                    continue;
                };
                return Err(invalid(here, &field, At::Task(i, Some(key)), reason));
            }
            deps.push(list);
        }
        let graph: HashMap<&str, Vec<&str>> = keys
            .iter()
            .zip(&deps)
            .map(|(k, d)| (k.as_str(), d.iter().map(String::as_str).collect()))
            .collect();
        if let Some(cycle) = find_cycle(&graph) {
            let first = keys.iter().position(|k| k == cycle[0]).unwrap_or(0);
            return Err(invalid(
                here,
                "tasks",
                At::Task(first, Some("depends_on")),
                format!("dependency cycle: {}", cycle.join(" -> ")),
            ));
        }
        let index = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.clone(), i))
            .collect();
        Ok(Self {
            keys,
            names,
            ids,
            deps,
            index,
        })
    }

    /// Whether the task with key `target` is upstream of the task at `from`.
    pub(super) fn upstream(&self, from: usize, target: &str) -> bool {
        let mut seen = HashSet::new();
        let mut stack = vec![from];
        while let Some(n) = stack.pop() {
            for dep in &self.deps[n] {
                if dep == target {
                    return true;
                }
                let next = self.index[dep.as_str()];
                if seen.insert(next) {
                    stack.push(next);
                }
            }
        }
        false
    }

    /// Tasks no other task depends on: the workflow's outputs.
    pub(super) fn leaves(&self) -> Vec<TaskId> {
        let depended_on: HashSet<&str> = self.deps.iter().flatten().map(String::as_str).collect();
        self.keys
            .iter()
            .filter(|k| !depended_on.contains(k.as_str()))
            .map(|k| self.ids[k].clone())
            .collect()
    }
}
