//! Workflow files: a YAML document turned into a validated [`WorkflowPlan`] whose task
//! specs point at each other by generated id. The engine runs plans and never reads YAML;
//! this module is the only place that knows the file format (`workflows/README.md`).
//!
//! Validation happens here, before anything runs: unknown keys, unknown or self
//! dependencies, cycles (named), duplicate ids, bad templates and bad types, each with the
//! line and column in the document. Prompts may use `{{ vars.NAME }}` (filled in now) and
//! `{{ tasks.KEY.result }}` of an upstream task, `{{ item }}` and `{{ index }}` in a
//! `for_each` task (filled in when the task starts).

mod document;
mod locate;
mod template;
#[cfg(test)]
mod tests;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    path::PathBuf,
    time::Duration,
};

/// What [`parse`] returns; the engine's type, named here for callers of the parser.
pub use crate::engine::workflow::WorkflowPlan;
use crate::engine::{
    error::{EngineError, Result},
    queue::find_cycle,
    task::{FailurePolicy, Isolation, Priority, TaskId, TaskSpec, positive_seconds},
    workflow::{MAX_DOCUMENT_BYTES, MAX_TASKS, Segment, Template},
};
use document::{Document, check_isolation, fan_out, parse_policy, parse_priority, variables};
use locate::Locator;
use template::{template, template_vars_only};

/// Parses and validates a workflow document, with `overrides` for its declared variables.
/// Dependencies name other tasks of the document by `id` (or `name` when it has no id).
pub fn parse(yaml: &str, overrides: &BTreeMap<String, String>) -> Result<WorkflowPlan> {
    if yaml.len() > MAX_DOCUMENT_BYTES {
        return Err(EngineError::invalid(
            "yaml",
            format!("the document is larger than {MAX_DOCUMENT_BYTES} bytes"),
        ));
    }
    let doc: Document =
        serde_norway::from_str(yaml).map_err(|e| EngineError::invalid("yaml", e.to_string()))?;
    let here = Locator::new(yaml);
    let top = |field: &str, reason: String| {
        EngineError::invalid(field, format!("{reason}{}", here.at(None, Some(field))))
    };
    if doc.name.trim().is_empty() {
        return Err(top("name", "must not be empty".into()));
    }
    if doc.tasks.is_empty() {
        return Err(top("tasks", "a workflow needs at least one task".into()));
    }
    if doc.tasks.len() > MAX_TASKS {
        return Err(top("tasks", format!("more than {MAX_TASKS} tasks")));
    }
    let vars =
        variables(&doc.variables, overrides).map_err(|(field, reason)| top(&field, reason))?;
    let budget_usd = match doc.budget_usd {
        Some(b) if !(b.is_finite() && b > 0.0) => {
            return Err(top(
                "budget_usd",
                "must be a positive number of US dollars".into(),
            ));
        }
        other => other,
    };
    let d = &doc.defaults;
    let default_priority = match doc.priority.as_deref().or(d.priority.as_deref()) {
        Some(word) => parse_priority(word).map_err(|reason| top("priority", reason))?,
        None => Priority::Normal,
    };
    let default_policy = match doc.on_failure.as_deref().or(d.on_failure.as_deref()) {
        Some(word) => parse_policy(word).map_err(|reason| top("on_failure", reason))?,
        None => FailurePolicy::Continue,
    };
    let default_isolation = match &d.isolation {
        Some(isolation) => check_isolation(isolation).map_err(|reason| top("defaults", reason))?,
        None => Isolation::None,
    };

    // Each task's key (id, else name) and its generated task id.
    let mut keys: Vec<String> = Vec::with_capacity(doc.tasks.len());
    let mut ids: HashMap<String, TaskId> = HashMap::new();
    for (i, task) in doc.tasks.iter().enumerate() {
        let blank = |k: &String| !k.trim().is_empty();
        let key = task
            .id
            .clone()
            .filter(blank)
            .or_else(|| task.name.clone().filter(blank))
            .ok_or_else(|| {
                EngineError::invalid(
                    format!("tasks[{i}].id"),
                    format!("each task needs an id or a name{}", here.at(Some(i), None)),
                )
            })?;
        if ids
            .insert(key.clone(), uuid::Uuid::now_v7().to_string())
            .is_some()
        {
            return Err(EngineError::invalid(
                format!("tasks[{i}].id"),
                format!(
                    "{key:?} is used by an earlier task{}",
                    here.at(
                        Some(i),
                        Some("id").filter(|_| task.id.is_some()).or(Some("name"))
                    )
                ),
            ));
        }
        keys.push(key);
    }

    // Dependencies by key (a for_each over a task's result depends on that task).
    let mut deps: Vec<Vec<String>> = Vec::with_capacity(doc.tasks.len());
    for (i, task) in doc.tasks.iter().enumerate() {
        let mut list = task.depends_on.clone();
        if let Some(source) = task.for_each.as_ref().and_then(|f| f.task.clone())
            && !list.contains(&source)
        {
            list.push(source);
        }
        for (j, dep) in list.iter().enumerate() {
            let field = if j < task.depends_on.len() {
                format!("tasks[{i}].depends_on[{j}]")
            } else {
                format!("tasks[{i}].for_each.task")
            };
            let key_name = if j < task.depends_on.len() {
                "depends_on"
            } else {
                "for_each"
            };
            if list[..j].contains(dep) {
                let reason = format!(
                    "{dep:?} is listed twice{}",
                    here.at(Some(i), Some(key_name))
                );
                return Err(EngineError::invalid(field, reason));
            }
            if !ids.contains_key(dep) {
                return Err(EngineError::invalid(
                    field,
                    format!(
                        "no task named {dep:?} in this workflow{}",
                        here.at(Some(i), Some(key_name))
                    ),
                ));
            }
            if *dep == keys[i] {
                return Err(EngineError::invalid(
                    field,
                    format!(
                        "a task cannot depend on itself{}",
                        here.at(Some(i), Some(key_name))
                    ),
                ));
            }
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
        return Err(EngineError::invalid(
            "tasks",
            format!(
                "dependency cycle: {}{}",
                cycle.join(" -> "),
                here.at(Some(first), Some("depends_on"))
            ),
        ));
    }
    let index: HashMap<&str, usize> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.as_str(), i))
        .collect();
    let upstream = |from: usize, target: &str| -> bool {
        let mut seen = HashSet::new();
        let mut stack = vec![from];
        while let Some(n) = stack.pop() {
            for dep in &deps[n] {
                if dep == target {
                    return true;
                }
                let next = index[dep.as_str()];
                if seen.insert(next) {
                    stack.push(next);
                }
            }
        }
        false
    };

    let depended_on: HashSet<&str> = deps.iter().flatten().map(String::as_str).collect();
    let mut tasks = Vec::with_capacity(doc.tasks.len());
    let mut pins = Vec::with_capacity(doc.tasks.len());
    for (i, task) in doc.tasks.into_iter().enumerate() {
        let bad = |key: &str, reason: String| {
            let field = format!("tasks[{i}].{key}");
            EngineError::invalid(
                field,
                format!(
                    "{reason}{}",
                    here.at(Some(i), Some(key.split(['.', '[']).next().unwrap_or(key)))
                ),
            )
        };
        let text_field = match (&task.prompt, &task.command) {
            (Some(_), Some(_)) => {
                return Err(bad(
                    "command",
                    "a task has a prompt or a command, not both".into(),
                ));
            }
            (None, None) => {
                return Err(bad(
                    "prompt",
                    "each task needs a prompt or a command".into(),
                ));
            }
            (Some(_), None) => "prompt",
            (None, Some(_)) => "command",
        };
        let raw = task
            .prompt
            .clone()
            .or(task.command.clone())
            .unwrap_or_default();
        let fan_out = match &task.for_each {
            None => None,
            Some(f) => {
                Some(fan_out(f, &vars, &ids).map_err(|(k, r)| bad(&format!("for_each{k}"), r))?)
            }
        };
        let segments = template(&raw, &vars, fan_out.is_some(), |key| {
            if !ids.contains_key(key) {
                return Err(format!("no task named {key:?} in this workflow"));
            }
            if !upstream(i, key) {
                return Err(format!(
                    "task {key:?} is not upstream of this task; add it to depends_on"
                ));
            }
            Ok(ids[key].clone())
        })
        .map_err(|reason| bad(text_field, format!("bad template: {reason}")))?;
        let plain = segments.iter().all(|s| matches!(s, Segment::Text(_)));
        let text = Template(segments.clone()).display();
        let template = (!plain).then_some(Template(segments));
        let directory = match task
            .working_directory
            .as_ref()
            .or(d.working_directory.as_ref())
        {
            Some(dir) => {
                let segments = template_vars_only(dir, &vars)
                    .map_err(|r| bad("working_directory", format!("bad template: {r}")))?;
                Some(PathBuf::from(segments))
            }
            None => None,
        };
        let seconds = |key: &str, value: Option<f64>| -> Result<Option<Duration>> {
            match value {
                None => Ok(None),
                Some(s) => positive_seconds(s)
                    .map(Some)
                    .ok_or_else(|| bad(key, "must be a positive number of seconds".into())),
            }
        };
        let isolation = match &task.isolation {
            Some(isolation) => check_isolation(isolation).map_err(|r| bad("isolation", r))?,
            None => default_isolation,
        };
        if let (Some(pin), Some(wanted)) = (task.instance, doc.instances)
            && pin >= wanted as usize
        {
            return Err(bad(
                "instance",
                format!("the workflow has {wanted} instances, numbered from 0"),
            ));
        }
        let spec = TaskSpec {
            id: Some(ids[&keys[i]].clone()),
            name: task.name.clone().unwrap_or_else(|| keys[i].clone()),
            prompt: if task.command.is_none() {
                text.clone()
            } else {
                String::new()
            },
            command: task.command.is_some().then(|| text.clone()),
            working_directory: directory,
            priority: match task.priority.as_deref() {
                Some(word) => parse_priority(word).map_err(|r| bad("priority", r))?,
                None => default_priority,
            },
            timeout: seconds("timeout", task.timeout.or(d.timeout))?,
            instance_id: None,
            depends_on: deps[i].iter().map(|k| ids[k].clone()).collect(),
            metadata: task.metadata,
            model: task.model.or(d.model.clone()),
            allowed_tools: task
                .allowed_tools
                .or(d.allowed_tools.clone())
                .unwrap_or_default(),
            max_turns: task.max_turns.or(d.max_turns),
            labels: task.labels,
            retries: task.retries.or(d.retries).unwrap_or(0),
            retry_backoff: seconds("retry_backoff", task.retry_backoff.or(d.retry_backoff))?,
            permission_mode: task.permission_mode.or(d.permission_mode.clone()),
            on_failure: match task.on_failure.as_deref() {
                Some(word) => parse_policy(word).map_err(|r| bad("on_failure", r))?,
                None => default_policy,
            },
            template,
            fan_out,
            idempotency_key: None,
            options: Default::default(),
            isolation,
        };
        spec.validate().map_err(|e| match e {
            EngineError::InvalidArgument { field, reason } => bad(&field, reason),
            other => other,
        })?;
        tasks.push(spec);
        pins.push(task.instance);
    }
    let leaves = keys
        .iter()
        .filter(|k| !depended_on.contains(k.as_str()))
        .map(|k| ids[k].clone())
        .collect();
    Ok(WorkflowPlan {
        name: doc.name,
        description: doc.description,
        instances: doc.instances,
        tasks,
        pins,
        leaves,
        budget_usd,
    })
}
