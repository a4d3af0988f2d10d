//! Workflows: a YAML document turned into a validated list of task specs whose
//! dependencies point at each other, plus the workflow record the scheduler keeps.
//!
//! Validation happens here, before anything runs: unknown keys, unknown or self
//! dependencies, cycles (named), duplicate ids, bad templates and bad types, each with the
//! line and column in the document. Prompts may use `{{ vars.NAME }}` (filled in now) and
//! `{{ tasks.KEY.result }}` of an upstream task, `{{ item }}` and `{{ index }}` in a
//! `for_each` task (filled in when the task starts).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    path::PathBuf,
    time::{Duration, SystemTime},
};

use serde::{Deserialize, de::IgnoredAny};

use super::{
    error::{EngineError, Result},
    find_cycle,
    model::task::{
        FailurePolicy, Isolation, Priority, TaskId, TaskSpec, TaskStatus, Usage, WorkflowId,
        positive_seconds,
    },
    model::words::words,
};

/// Largest workflow document accepted.
pub const MAX_DOCUMENT_BYTES: usize = 4 * 1024 * 1024;
/// Most tasks in one document.
pub const MAX_TASKS: usize = 100_000;
/// Most items one `for_each` expands to.
pub const MAX_ITEMS: usize = 10_000;

// ---- templates ----------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
pub enum Segment {
    Text(String),
    /// The result text of this (upstream) task.
    Result(TaskId),
    /// The current `for_each` item.
    Item,
    /// The current `for_each` index, from 0.
    Index,
}

/// A prompt or command with holes filled when the task starts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Template(pub Vec<Segment>);

impl Template {
    /// The text, with each upstream result from `result_of`.
    pub fn render(&self, result_of: impl Fn(&str) -> String) -> String {
        self.0
            .iter()
            .map(|segment| match segment {
                Segment::Text(text) => text.clone(),
                Segment::Result(id) => result_of(id),
                Segment::Item | Segment::Index => String::new(),
            })
            .collect()
    }

    /// The text with its holes shown as `{{ ... }}`, for display before it runs.
    pub fn display(&self) -> String {
        self.0
            .iter()
            .map(|segment| match segment {
                Segment::Text(text) => text.clone(),
                Segment::Result(id) => format!("{{{{ tasks.{id}.result }}}}"),
                Segment::Item => "{{ item }}".to_owned(),
                Segment::Index => "{{ index }}".to_owned(),
            })
            .collect()
    }

    /// This template for one `for_each` item.
    pub fn bind(&self, item: &str, index: usize) -> Template {
        Template(
            self.0
                .iter()
                .map(|segment| match segment {
                    Segment::Item => Segment::Text(item.to_owned()),
                    Segment::Index => Segment::Text(index.to_string()),
                    other => other.clone(),
                })
                .collect(),
        )
    }
}

/// `text` as one single-quoted shell word.
pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// Splits text into items: a JSON array (strings as they are, other values as JSON), or
/// else its non-empty lines.
pub fn items_of(text: &str) -> Vec<String> {
    if let Ok(serde_json::Value::Array(values)) = serde_json::from_str(text.trim()) {
        return values
            .into_iter()
            .map(|v| match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            })
            .collect();
    }
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Where a `for_each` task's items come from.
#[derive(Clone, Debug, PartialEq)]
pub enum FanOutSource {
    Items(Vec<String>),
    /// The items of an upstream task's result (see [`items_of`]).
    Result(TaskId),
}

#[derive(Clone, Debug, PartialEq)]
pub struct FanOut {
    pub source: FanOutSource,
    /// Most items running at once.
    pub max_parallel: usize,
}

// ---- the workflow record ------------------------------------------------------------------

words! {
    /// Where a workflow is: running until every task is terminal.
    pub enum WorkflowStatus {
        Running = "running",
        Completed = "completed",
        Failed = "failed",
        Cancelled = "cancelled",
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
    pub task_counts: [u64; TaskStatus::COUNT],
    /// Result text of the tasks nothing depends on, by task name.
    pub outputs: BTreeMap<String, String>,
    /// Once its tasks cost this much, tasks not yet started fail.
    pub budget_usd: Option<f64>,
    /// Tokens and turns of its tasks (computed, like the cost).
    pub usage: Usage,
    pub turns: u64,
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
    /// For each task, the index of the workflow instance it is pinned to (`instance: N`).
    pub pins: Vec<Option<usize>>,
    /// Tasks no other task depends on: the workflow's outputs.
    pub leaves: Vec<TaskId>,
    /// Spending bound in USD.
    pub budget_usd: Option<f64>,
}

// ---- the document -------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    name: String,
    #[serde(default)]
    description: String,
    /// Decorative keys of the original format, accepted and ignored.
    #[serde(default, rename = "version")]
    _version: Option<IgnoredAny>,
    #[serde(default, rename = "author")]
    _author: Option<IgnoredAny>,
    #[serde(default, rename = "tags")]
    _tags: Option<IgnoredAny>,
    instances: Option<u32>,
    priority: Option<String>,
    on_failure: Option<String>,
    budget_usd: Option<f64>,
    #[serde(default)]
    variables: BTreeMap<String, serde_norway::Value>,
    #[serde(default)]
    defaults: Defaults,
    tasks: Vec<DocumentTask>,
}

/// Settings every task gets unless it sets its own.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Defaults {
    model: Option<String>,
    timeout: Option<f64>,
    retries: Option<u32>,
    retry_backoff: Option<f64>,
    priority: Option<String>,
    #[serde(alias = "directory")]
    working_directory: Option<String>,
    isolation: Option<String>,
    permission_mode: Option<String>,
    allowed_tools: Option<Vec<String>>,
    max_turns: Option<u32>,
    on_failure: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DocumentTask {
    id: Option<String>,
    name: Option<String>,
    #[serde(default, rename = "description")]
    _description: Option<IgnoredAny>,
    prompt: Option<String>,
    command: Option<String>,
    #[serde(default)]
    depends_on: Vec<String>,
    priority: Option<String>,
    /// Seconds.
    timeout: Option<f64>,
    #[serde(alias = "directory")]
    working_directory: Option<String>,
    /// Pin to the workflow's Nth instance (from 0).
    instance: Option<usize>,
    model: Option<String>,
    allowed_tools: Option<Vec<String>>,
    max_turns: Option<u32>,
    retries: Option<u32>,
    retry_backoff: Option<f64>,
    permission_mode: Option<String>,
    isolation: Option<String>,
    on_failure: Option<String>,
    for_each: Option<ForEach>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ForEach {
    items: Option<Vec<String>>,
    var: Option<String>,
    task: Option<String>,
    max_parallel: Option<usize>,
}

/// Finds where things are in the document, for error messages. Works on the block style
/// workflows are written in; elsewhere it falls back to the task's or document's start.
struct Locator<'a> {
    lines: Vec<&'a str>,
    /// Line index where each task item starts.
    task_starts: Vec<usize>,
}

impl<'a> Locator<'a> {
    fn new(text: &'a str) -> Self {
        let lines: Vec<&str> = text.lines().collect();
        let mut task_starts = Vec::new();
        if let Some(tasks_line) = lines.iter().position(|l| l.trim_end() == "tasks:") {
            let mut indent = None;
            for (n, line) in lines.iter().enumerate().skip(tasks_line + 1) {
                let trimmed = line.trim_start();
                if trimmed.is_empty() || trimmed.starts_with('#') {
                    continue;
                }
                let here = line.len() - trimmed.len();
                if here == 0 && !trimmed.starts_with('-') {
                    break;
                }
                if trimmed.starts_with('-') && *indent.get_or_insert(here) == here {
                    task_starts.push(n);
                }
            }
        }
        Self { lines, task_starts }
    }

    /// ` (line L, column C)` of `key` inside task `task` (or of the task, or of the top
    /// level key when `task` is `None`).
    fn at(&self, task: Option<usize>, key: Option<&str>) -> String {
        let (from, to) = match task {
            Some(i) => match self.task_starts.get(i) {
                Some(start) => (
                    *start,
                    self.task_starts
                        .get(i + 1)
                        .copied()
                        .unwrap_or(self.lines.len()),
                ),
                None => return String::new(),
            },
            None => (0, self.lines.len()),
        };
        let found = key.and_then(|key| {
            (from..to).find_map(|n| {
                let line = self.lines[n];
                let body = line.trim_start().trim_start_matches('-').trim_start();
                let top_level = task.is_some() || line.len() == line.trim_start().len();
                (top_level && body.starts_with(key) && body[key.len()..].starts_with(':'))
                    .then(|| (n, line.len() - body.len()))
            })
        });
        let (line, column) = match (found, task) {
            (Some(position), _) => position,
            (None, Some(_)) => (
                from,
                self.lines[from].len() - self.lines[from].trim_start().len(),
            ),
            (None, None) => return String::new(),
        };
        format!(" (line {}, column {})", line + 1, column + 1)
    }
}

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

/// Declared variables with overrides applied: each a list of values (one for a scalar).
fn variables(
    declared: &BTreeMap<String, serde_norway::Value>,
    overrides: &BTreeMap<String, String>,
) -> std::result::Result<HashMap<String, Vec<String>>, (String, String)> {
    use serde_norway::Value as V;
    let scalar = |v: &V| match v {
        V::String(s) => Some(s.clone()),
        V::Number(n) => Some(n.to_string()),
        V::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    let mut vars = HashMap::new();
    for (name, value) in declared {
        let values = match value {
            V::Sequence(items) => items.iter().map(scalar).collect::<Option<Vec<_>>>(),
            V::Null => Some(Vec::new()),
            other => scalar(other).map(|s| vec![s]),
        }
        .ok_or_else(|| {
            (
                format!("variables.{name}"),
                "must be a string, a number, a boolean or a list of them".into(),
            )
        })?;
        vars.insert(name.clone(), values);
    }
    for (name, value) in overrides {
        let Some(current) = vars.get_mut(name) else {
            return Err((
                format!("variables.{name}"),
                format!("the workflow declares no variable {name:?}"),
            ));
        };
        *current = if matches!(declared.get(name), Some(V::Sequence(_))) {
            items_of_list(value)
        } else {
            vec![value.clone()]
        };
    }
    Ok(vars)
}

/// A list given on a command line: a JSON array, or comma-separated.
fn items_of_list(text: &str) -> Vec<String> {
    if text.trim_start().starts_with('[') {
        return items_of(text);
    }
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn fan_out(
    f: &ForEach,
    vars: &HashMap<String, Vec<String>>,
    ids: &HashMap<String, TaskId>,
) -> std::result::Result<FanOut, (String, String)> {
    let source = match (&f.items, &f.var, &f.task) {
        (Some(items), None, None) => FanOutSource::Items(items.clone()),
        (None, Some(var), None) => {
            let values = vars
                .get(var)
                .ok_or_else(|| (".var".to_string(), format!("no variable {var:?}")))?;
            let items = if values.len() == 1 {
                items_of(&values[0])
            } else {
                values.clone()
            };
            FanOutSource::Items(items)
        }
        (None, None, Some(task)) => FanOutSource::Result(ids[task].clone()),
        _ => {
            return Err((
                String::new(),
                "give exactly one of items, var or task".into(),
            ));
        }
    };
    if let FanOutSource::Items(items) = &source
        && items.len() > MAX_ITEMS
    {
        return Err((String::new(), format!("more than {MAX_ITEMS} items")));
    }
    let max_parallel = match f.max_parallel {
        Some(0) => return Err((".max_parallel".into(), "must be at least 1".into())),
        Some(n) => n,
        None => usize::MAX,
    };
    Ok(FanOut {
        source,
        max_parallel,
    })
}

/// Splits `text` on `{{ ... }}`, filling variables now and resolving task references with
/// `task_ref`.
fn template(
    text: &str,
    vars: &HashMap<String, Vec<String>>,
    in_for_each: bool,
    task_ref: impl Fn(&str) -> std::result::Result<TaskId, String>,
) -> std::result::Result<Vec<Segment>, String> {
    let mut segments = Vec::new();
    let mut rest = text;
    let push_text = |segments: &mut Vec<Segment>, s: &str| {
        if s.is_empty() {
            return;
        }
        match segments.last_mut() {
            Some(Segment::Text(t)) => t.push_str(s),
            _ => segments.push(Segment::Text(s.to_owned())),
        }
    };
    while let Some(open) = rest.find("{{") {
        push_text(&mut segments, &rest[..open]);
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or_else(|| format!("`{{{{` at byte {open} is never closed with `}}}}`"))?;
        let expr = after[..close].trim();
        let parts: Vec<&str> = expr.split('.').collect();
        match parts.as_slice() {
            ["vars", name] => {
                let values = vars
                    .get(*name)
                    .ok_or_else(|| format!("no variable {name:?} is declared"))?;
                push_text(&mut segments, &values.join(", "));
            }
            ["tasks", key @ .., "result"] if !key.is_empty() => {
                segments.push(Segment::Result(task_ref(&key.join("."))?))
            }
            ["item"] if in_for_each => segments.push(Segment::Item),
            ["index"] if in_for_each => segments.push(Segment::Index),
            ["item"] | ["index"] => {
                return Err(format!(
                    "`{{{{ {expr} }}}}` is only defined in a for_each task"
                ));
            }
            _ => {
                return Err(format!(
                    "`{{{{ {expr} }}}}` is not one of vars.NAME, tasks.NAME.result, item, index"
                ));
            }
        }
        rest = &after[close + 2..];
    }
    push_text(&mut segments, rest);
    Ok(segments)
}

/// A field where only variables may be used.
fn template_vars_only(
    text: &str,
    vars: &HashMap<String, Vec<String>>,
) -> std::result::Result<String, String> {
    let segments = template(text, vars, false, |_| {
        Err("only vars.NAME may be used here".into())
    })?;
    Ok(Template(segments).render(|_| String::new()))
}

fn check_isolation(word: &str) -> std::result::Result<Isolation, String> {
    match word {
        "none" => Ok(Isolation::None),
        "worktree" => Ok(Isolation::Worktree),
        other => Err(format!(
            "{other:?} is not an isolation mode (none, worktree)"
        )),
    }
}

fn parse_priority(word: &str) -> std::result::Result<Priority, String> {
    Priority::from_word(word)
        .ok_or_else(|| format!("{word:?} is not one of low, normal, high, critical"))
}

fn parse_policy(word: &str) -> std::result::Result<FailurePolicy, String> {
    match word.trim().to_ascii_lowercase().replace('-', "_").as_str() {
        "continue" => Ok(FailurePolicy::Continue),
        "fail_fast" => Ok(FailurePolicy::FailFast),
        _ => Err(format!("{word:?} is not one of continue, fail_fast")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(yaml: &str) -> WorkflowPlan {
        parse(yaml, &BTreeMap::new()).unwrap()
    }

    fn err(yaml: &str) -> EngineError {
        parse(yaml, &BTreeMap::new()).unwrap_err()
    }

    #[test]
    fn names_map_to_generated_ids() {
        let plan = plan(
            "name: demo\npriority: high\ntasks:\n  - name: plan step\n    prompt: plan\n  - id: build\n    prompt: build\n    depends_on: [plan step]\n    priority: low\n    timeout: 2.5\n",
        );
        assert_eq!(plan.tasks.len(), 2);
        assert_eq!(plan.tasks[0].priority, Priority::High);
        assert_eq!(plan.tasks[1].priority, Priority::Low);
        assert_eq!(
            plan.tasks[1].depends_on,
            vec![plan.tasks[0].id.clone().unwrap()]
        );
        assert_eq!(plan.tasks[1].name, "build");
        assert_eq!(plan.tasks[1].timeout, Some(Duration::from_millis(2500)));
        assert_eq!(plan.leaves, vec![plan.tasks[1].id.clone().unwrap()]);
    }

    #[test]
    fn the_original_format_runs_unchanged() {
        let plan = plan(
            "# A workflow of the original service\nname: Build and test\nversion: \"1.0\"\ninstances: 2\npriority: normal\ntasks:\n  - name: Install deps\n    command: npm ci\n    directory: ./web\n    instance: 0\n    description: decorative\n  - name: Run the tests\n    prompt: Fix what fails\n    depends_on: [Install deps]\n    timeout: 300\n    priority: critical\n",
        );
        assert_eq!(plan.tasks[0].command.as_deref(), Some("npm ci"));
        assert_eq!(
            plan.tasks[0].working_directory,
            Some(PathBuf::from("./web"))
        );
        assert_eq!(plan.pins, vec![Some(0), None]);
        assert_eq!(plan.tasks[1].priority, Priority::Critical);
    }

    #[test]
    fn templates_variables_and_fan_out() {
        let mut vars = BTreeMap::new();
        vars.insert("repo".to_string(), "acme/app".to_string());
        let plan = parse(
            "name: t\nvariables:\n  repo: default/repo\n  files: [a.rs, b.rs]\ntasks:\n  - id: plan\n    prompt: Plan {{ vars.repo }}\n  - id: each\n    prompt: \"Do {{ item }} ({{index}}) per {{ tasks.plan.result }}\"\n    depends_on: [plan]\n    for_each: { var: files, max_parallel: 1 }\n  - id: split\n    prompt: \"{{ item }}\"\n    for_each: { task: plan }\n",
            &vars,
        )
        .unwrap();
        assert_eq!(plan.tasks[0].prompt, "Plan acme/app");
        assert!(plan.tasks[0].template.is_none());
        let t = plan.tasks[1].template.as_ref().unwrap();
        let bound = t.bind("a.rs", 0);
        assert_eq!(bound.render(|_| "PLAN".into()), "Do a.rs (0) per PLAN");
        assert_eq!(
            plan.tasks[1].fan_out,
            Some(FanOut {
                source: FanOutSource::Items(vec!["a.rs".into(), "b.rs".into()]),
                max_parallel: 1
            })
        );
        // A for_each over a task's result depends on it.
        assert_eq!(
            plan.tasks[2].depends_on,
            vec![plan.tasks[0].id.clone().unwrap()]
        );
        assert_eq!(items_of("[\"x\", 2]"), vec!["x", "2"]);
        assert_eq!(items_of("one\n\n two \n"), vec!["one", "two"]);
    }

    #[test]
    fn bad_documents_name_the_field_and_the_place() {
        let message = |y: &str| err(y).to_string();
        assert_eq!(err("name: x\ntasks: []\n").field(), Some("tasks"));
        assert_eq!(
            message("name: x\ntasks:\n  - id: a\n    prompt: p\n    depends_on: [b]\n"),
            "invalid tasks[0].depends_on[0]: no task named \"b\" in this workflow (line 5, column 5)"
        );
        assert_eq!(
            message("name: x\ntasks:\n  - id: a\n    prompt: p\n  - id: a\n    prompt: q\n"),
            "invalid tasks[1].id: \"a\" is used by an earlier task (line 5, column 5)"
        );
        assert_eq!(
            message("name: x\ntasks:\n  - id: a\n    prompt: p\n    depends_on: [a]\n"),
            "invalid tasks[0].depends_on[0]: a task cannot depend on itself (line 5, column 5)"
        );
        assert_eq!(
            message(
                "name: x\ntasks:\n  - id: a\n    prompt: p\n    depends_on: [b]\n  - id: b\n    prompt: q\n    depends_on: [a]\n"
            ),
            "invalid tasks: dependency cycle: a -> b -> a (line 5, column 5)"
        );
        assert_eq!(
            message(
                "name: x\ntasks:\n  - id: a\n    prompt: p\n  - id: b\n    prompt: \"{{ tasks.a.result }}\"\n"
            ),
            "invalid tasks[1].prompt: bad template: task \"a\" is not upstream of this task; add it to depends_on (line 6, column 5)"
        );
        assert!(
            message("name: x\ntasks:\n  - id: a\n    prompt: \"{{ vars.nope }}\"\n")
                .contains("no variable \"nope\"")
        );
        assert!(
            message("name: x\ntasks:\n  - id: a\n    prompt: \"{{ item }}\"\n")
                .contains("only defined in a for_each")
        );
        assert!(
            message("name: x\ntasks:\n  - id: a\n    prompt: \"{{ oops\"\n")
                .contains("never closed")
        );
        assert_eq!(
            err("name: x\ntasks:\n  - id: a\n    prompt: p\n    priority: urgent\n").field(),
            Some("tasks[0].priority")
        );
        let unknown = message("name: x\nbogus: 1\ntasks:\n  - id: a\n    prompt: p\n");
        assert!(
            unknown.contains("bogus") && unknown.contains("line 2"),
            "{unknown}"
        );
        let typed = message("name: x\ntasks:\n  - id: a\n    prompt: p\n    timeout: soon\n");
        assert!(typed.contains("line 5"), "{typed}");
        let both = err("name: x\ntasks:\n  - id: a\n    prompt: p\n    command: ls\n");
        assert_eq!(both.field(), Some("tasks[0].command"));
        let vars = BTreeMap::from([("nope".to_string(), "1".to_string())]);
        assert_eq!(
            parse("name: x\ntasks:\n  - id: a\n    prompt: p\n", &vars)
                .unwrap_err()
                .field(),
            Some("variables.nope")
        );
    }

    #[test]
    fn alias_bombs_are_refused_by_limits() {
        // Ten levels of ten references each: 10^10 strings if expanded.
        let mut yaml =
            String::from("name: bomb\nvariables:\n  a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            yaml.push_str(&format!("  a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"));
        }
        yaml.push_str("tasks:\n  - id: a\n    prompt: p\n");
        let error = err(&yaml).to_string();
        assert!(error.contains("repetition limit"), "{error}");
    }
}
