//! One task of the document turned into a task spec, with what it inherits filled in.

use std::{collections::HashMap, path::PathBuf, time::Duration};

use super::{
    At, Locator, Notes,
    document::{
        BOTH_DIRECTORIES, Document, DocumentTask, directory, fan_out, parse_priority, parse_word,
    },
    graph::Graph,
    invalid,
    template::{Text, template, template_vars_only},
};
use crate::engine::{
    error::{EngineError, Result},
    model::{
        approval::{DenialPolicy, PermissionPolicy},
        task::{FailurePolicy, Isolation, Priority, TaskSpec, positive_seconds},
    },
    workflow::{Segment, Template},
};

/// What a task that sets nothing gets: the document's top-level keys, else its `defaults`,
/// already checked.
pub(super) struct Inherited {
    /// `instances`: pins are numbered from 1 to this.
    pub(super) instances: Option<u32>,
    pub(super) priority: Priority,
    pub(super) on_failure: FailurePolicy,
    pub(super) isolation: Isolation,
    pub(super) timeout: Option<Duration>,
    pub(super) retry_backoff: Option<Duration>,
    /// With its variables filled in.
    pub(super) working_directory: Option<PathBuf>,
    pub(super) model: Option<String>,
    pub(super) allowed_tools: Option<Vec<String>>,
    pub(super) max_turns: Option<u32>,
    pub(super) retries: Option<u32>,
    pub(super) permission_mode: Option<String>,
    /// The workflow's permission rules (top-level `permissions`, else `defaults.permissions`).
    pub(super) permissions: PermissionPolicy,
    pub(super) on_permission_denied: DenialPolicy,
}

impl Inherited {
    /// The top-level keys, else `defaults`, each checked (both are, even when the top-level
    /// key wins) and reported with its own field and place.
    pub(super) fn read(
        doc: &Document,
        here: &Locator,
        vars: &HashMap<String, Vec<String>>,
        notes: &mut Notes,
    ) -> Result<Self> {
        let d = &doc.defaults;
        let under = |key: &str, reason: String| {
            // `allowed_tools[1]` is found at its key, `allowed_tools`.
            let at = key.split(['.', '[']).next().unwrap_or(key);
            invalid(
                here,
                &format!("defaults.{key}"),
                At::Under("defaults", at),
                reason,
            )
        };
        let priority = word(here, "priority", &doc.priority, &d.priority, parse_priority)?;
        let on_failure = word(
            here,
            "on_failure",
            &doc.on_failure,
            &d.on_failure,
            parse_word::<FailurePolicy>,
        )?;
        let on_permission_denied = word(
            here,
            "on_permission_denied",
            &doc.on_permission_denied,
            &d.on_permission_denied,
            parse_word::<DenialPolicy>,
        )?;
        let permissions = match (&doc.permissions, &d.permissions) {
            (Some(top), _) => {
                let policy = PermissionPolicy::from(top.clone());
                policy.validate("permissions").map_err(|e| match e {
                    EngineError::InvalidArgument { field, reason } => {
                        invalid(here, &field, At::Top("permissions"), reason)
                    }
                    other => other,
                })?;
                policy
            }
            (None, Some(defaults)) => {
                let policy = PermissionPolicy::from(defaults.clone());
                policy.validate("permissions").map_err(|e| match e {
                    EngineError::InvalidArgument { field, reason } => under(&field, reason),
                    other => other,
                })?;
                policy
            }
            (None, None) => PermissionPolicy::default(),
        };
        let seconds = |key: &str, value: Option<f64>| match value {
            None => Ok(None),
            Some(s) => positive_seconds(s)
                .map(Some)
                .ok_or_else(|| under(key, "must be a positive number of seconds".into())),
        };
        // The keys the engine checks on a task spec, checked once here for `defaults`.
        let probe = TaskSpec {
            prompt: "defaults".into(),
            permission_mode: d.permission_mode.clone(),
            allowed_tools: d.allowed_tools.clone().unwrap_or_default(),
            max_turns: d.max_turns,
            ..TaskSpec::default()
        };
        probe.validate().map_err(|e| match e {
            EngineError::InvalidArgument { field, reason } => under(&field, reason),
            other => other,
        })?;
        let working_directory = match directory(&d.working_directory, &d.directory) {
            Err(key) => return Err(under(key, BOTH_DIRECTORIES.into())),
            Ok(None) => None,
            Ok(Some((key, raw))) => {
                let (dir, left) = template_vars_only(raw, vars)
                    .map_err(|r| under(key, format!("bad template: {r}")))?;
                let field = format!("defaults.{key}");
                notes.note(here, &field, At::Under("defaults", key), raw, left);
                Some(PathBuf::from(dir))
            }
        };
        Ok(Self {
            instances: doc.instances,
            priority: priority.unwrap_or(Priority::Normal),
            on_failure: on_failure.unwrap_or(FailurePolicy::Continue),
            isolation: match &d.isolation {
                Some(word) => parse_word::<Isolation>(word).map_err(|r| under("isolation", r))?,
                None => Isolation::None,
            },
            timeout: seconds("timeout", d.timeout)?,
            retry_backoff: seconds("retry_backoff", d.retry_backoff)?,
            working_directory,
            model: d.model.clone(),
            allowed_tools: d.allowed_tools.clone(),
            max_turns: d.max_turns,
            retries: d.retries,
            permission_mode: d.permission_mode.clone(),
            permissions,
            on_permission_denied: on_permission_denied.unwrap_or_default(),
        })
    }
}

/// A word set at the top level and in `defaults`: both are checked, the top-level one wins.
fn word<T>(
    here: &Locator,
    key: &str,
    top: &Option<String>,
    default: &Option<String>,
    read: impl Fn(&str) -> std::result::Result<T, String>,
) -> Result<Option<T>> {
    let top_value = top.as_deref().map(&read).transpose();
    let top_value = top_value.map_err(|r| invalid(here, key, At::Top(key), r))?;
    let default_value = default.as_deref().map(&read).transpose().map_err(|r| {
        invalid(
            here,
            &format!("defaults.{key}"),
            At::Under("defaults", key),
            r,
        )
    })?;
    Ok(top_value.or(default_value))
}

/// The spec of the `i`th task and the index (from 0, as the engine counts) of the
/// workflow instance it is pinned to.
pub(super) fn build(
    i: usize,
    task: DocumentTask,
    graph: &Graph,
    inherited: &Inherited,
    vars: &HashMap<String, Vec<String>>,
    here: &Locator,
    notes: &mut Notes,
) -> Result<(TaskSpec, Option<usize>)> {
    let key_of = |key: &str| key.split(['.', '[']).next().unwrap_or(key).to_owned();
    let bad = |key: &str, reason: String| {
        invalid(
            here,
            &format!("tasks[{i}].{key}"),
            At::Task(i, Some(&key_of(key))),
            reason,
        )
    };
    let (text_field, raw) = match (&task.prompt, &task.command) {
        (Some(_), Some(_)) => {
            let reason = "a task has a prompt or a command, not both".into();
            return Err(bad("command", reason));
        }
        (None, None) => {
            return Err(bad(
                "prompt",
                "each task needs a prompt or a command".into(),
            ));
        }
        (Some(prompt), None) => ("prompt", prompt),
        (None, Some(command)) => ("command", command),
    };
    let fan_out = match &task.for_each {
        None => None,
        Some(f) => {
            Some(fan_out(f, vars, &graph.ids).map_err(|(k, r)| bad(&format!("for_each{k}"), r))?)
        }
    };
    let kind = if text_field == "command" {
        Text::Shell
    } else {
        Text::Plain
    };
    let filled = template(raw, kind, vars, fan_out.is_some(), |key| {
        if !graph.ids.contains_key(key) {
            return Err(format!("no task named {key:?} in this workflow"));
        }
        if !graph.upstream(i, key) {
            return Err(format!(
                "task {key:?} is not upstream of this task; add it to depends_on"
            ));
        }
        Ok(graph.ids[key].clone())
    })
    .map_err(|reason| bad(text_field, format!("bad template: {reason}")))?;
    let field = format!("tasks[{i}].{text_field}");
    let at = At::Task(i, Some(text_field));
    notes.note(here, &field, at, raw, filled.left_alone);
    let segments = filled.segments;
    let plain = segments.iter().all(|s| matches!(s, Segment::Text(_)));
    let text = Template(segments.clone()).display();
    let template = (!plain).then_some(Template(segments));

    let working_directory = match directory(&task.working_directory, &task.directory) {
        Err(key) => return Err(bad(key, BOTH_DIRECTORIES.into())),
        Ok(None) => inherited.working_directory.clone(),
        Ok(Some((key, raw))) => {
            let (dir, left) = template_vars_only(raw, vars)
                .map_err(|r| bad(key, format!("bad template: {r}")))?;
            let field = format!("tasks[{i}].{key}");
            notes.note(here, &field, At::Task(i, Some(key)), raw, left);
            Some(PathBuf::from(dir))
        }
    };
    let seconds = |key: &str, value: Option<f64>, default: Option<Duration>| match value {
        None => Ok(default),
        Some(s) => positive_seconds(s)
            .map(Some)
            .ok_or_else(|| bad(key, "must be a positive number of seconds".into())),
    };
    let pin = match (task.instance, inherited.instances) {
        (None, _) => None,
        (Some(_), None) => {
            return Err(bad(
                "instance",
                "pins the task to one of the workflow's instances, but the workflow sets no \
                 `instances`; add `instances: N` at the top (pins are numbered from 1 to N)"
                    .into(),
            ));
        }
        (Some(pin), Some(wanted)) if pin == 0 || pin > wanted as usize => {
            let reason = match wanted {
                0 => "the workflow asks for no instances (`instances: 0`) to pin to".into(),
                1 => "must be 1: the workflow has 1 instance, numbered from 1".into(),
                n => format!("must be 1 to {n}: the workflow has {n} instances, numbered from 1"),
            };
            return Err(bad("instance", reason));
        }
        // The engine counts the workflow's instances from 0.
        (Some(pin), Some(_)) => Some(pin - 1),
    };
    let spec = TaskSpec {
        id: Some(graph.ids[&graph.keys[i]].clone()),
        name: graph.names[i].clone(),
        prompt: if task.command.is_none() {
            text.clone()
        } else {
            String::new()
        },
        command: task.command.is_some().then(|| text.clone()),
        working_directory,
        priority: match task.priority.as_deref() {
            Some(word) => parse_priority(word).map_err(|r| bad("priority", r))?,
            None => inherited.priority,
        },
        timeout: seconds("timeout", task.timeout, inherited.timeout)?,
        instance_id: None,
        depends_on: graph.deps[i].iter().map(|k| graph.ids[k].clone()).collect(),
        metadata: task.metadata,
        model: task.model.or(inherited.model.clone()),
        allowed_tools: task
            .allowed_tools
            .or(inherited.allowed_tools.clone())
            .unwrap_or_default(),
        max_turns: task.max_turns.or(inherited.max_turns),
        labels: task.labels,
        retries: task.retries.or(inherited.retries).unwrap_or(0),
        retry_backoff: seconds("retry_backoff", task.retry_backoff, inherited.retry_backoff)?,
        permission_mode: task.permission_mode.or(inherited.permission_mode.clone()),
        on_failure: match task.on_failure.as_deref() {
            Some(word) => parse_word::<FailurePolicy>(word).map_err(|r| bad("on_failure", r))?,
            None => inherited.on_failure,
        },
        template,
        fan_out: fan_out.map(Box::new),
        idempotency_key: None,
        options: Default::default(),
        isolation: match &task.isolation {
            Some(word) => parse_word::<Isolation>(word).map_err(|r| bad("isolation", r))?,
            None => inherited.isolation,
        },
        session: task.session,
        output_schema: task.output_schema,
        // The workflow's rules apply to it from the workflow; these are its own.
        permissions: task
            .permissions
            .map(PermissionPolicy::from)
            .unwrap_or_default()
            .into(),
        on_permission_denied: match task.on_permission_denied.as_deref() {
            Some(word) => {
                parse_word::<DenialPolicy>(word).map_err(|r| bad("on_permission_denied", r))?
            }
            None => inherited.on_permission_denied,
        },
        // Checked against the server's accounts when the workflow is executed.
        account: task.account.clone().filter(|a| !a.is_empty()),
    };
    spec.validate().map_err(|e| match e {
        EngineError::InvalidArgument { field, reason } => bad(&field, reason),
        other => other,
    })?;
    Ok((spec, pin))
}
