//! Workflow files: a YAML document turned into a validated [`WorkflowPlan`] whose task
//! specs point at each other by generated id. The engine runs plans and never reads YAML;
//! this module is the only place that knows the file format (`workflows/README.md`).
//!
//! Validation happens here, before anything runs: unknown keys, unknown or self
//! dependencies, cycles (named), duplicate keys and names, holes of ours that cannot be
//! filled, bad words and bad types, each with the line and column in the document. Prompts
//! may use `{{ vars.NAME }}` (filled in now) and `{{ tasks.KEY.result }}` of an upstream
//! task, `{{ item }}` and `{{ index }}` in a `for_each` task (filled in when the task
//! starts); other `{{ ... }}` text is kept as written and reported as a [`Warning`].
//!
//! Files of the original Python Claude Swarm are read as they were meant: `name` as the
//! key, `directory`, decorative keys, and `instance: N` pins numbered from 1.

mod document;
mod graph;
mod locate;
mod task;
mod template;
#[cfg(test)]
mod tests;

use std::{collections::BTreeMap, fmt};

/// What [`parse`] returns; the engine's type, named here for callers of the parser.
pub use crate::engine::workflow::WorkflowPlan;
use crate::engine::{
    error::{EngineError, Result},
    workflow::{MAX_DOCUMENT_BYTES, MAX_TASKS},
};
use document::{Document, variables};
use graph::Graph;
pub use locate::Place;
use locate::{At, Locator, suffix};
use task::Inherited;
use template::LeftAlone;

/// Something a valid document does that is probably not meant: `{{ ... }}` text that is
/// not one of claude-swarm's templates, kept as written (a typo such as
/// `{{ task.plan.result }}` shows up here).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// The field, named as errors name it: `tasks[2].command`.
    pub field: String,
    /// What was kept as written, and why.
    pub message: String,
    /// Where it is, when the document shows it (the value's key when the text is not
    /// written out on one line).
    pub place: Option<Place>,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}{}", self.field, self.message, suffix(self.place))
    }
}

/// A valid document: the plan to run, and what to tell the person who wrote it.
#[derive(Clone, Debug)]
pub struct Checked {
    pub plan: WorkflowPlan,
    /// In document order.
    pub warnings: Vec<Warning>,
}

/// Parses and validates a workflow document, with `overrides` for its declared variables.
/// Dependencies name other tasks of the document by `id` (or `name` when it has no id).
pub fn parse(yaml: &str, overrides: &BTreeMap<String, String>) -> Result<WorkflowPlan> {
    check(yaml, overrides).map(|checked| checked.plan)
}

/// [`parse`], keeping the warnings.
pub fn check(yaml: &str, overrides: &BTreeMap<String, String>) -> Result<Checked> {
    if yaml.len() > MAX_DOCUMENT_BYTES {
        return Err(EngineError::invalid(
            "yaml",
            format!("the document is larger than {MAX_DOCUMENT_BYTES} bytes"),
        ));
    }
    let doc: Document =
        serde_norway::from_str(yaml).map_err(|e| EngineError::invalid("yaml", e.to_string()))?;
    let here = Locator::new(yaml);
    let top = |key: &str, reason: String| invalid(&here, key, At::Top(key), reason);
    if doc.name.trim().is_empty() {
        return Err(top("name", "must not be empty".into()));
    }
    if doc.tasks.is_empty() {
        return Err(top("tasks", "a workflow needs at least one task".into()));
    }
    if doc.tasks.len() > MAX_TASKS {
        return Err(top("tasks", format!("more than {MAX_TASKS} tasks")));
    }
    let vars = variables(&doc.variables, overrides).map_err(|bad| {
        let field = format!("variables.{}", bad.name);
        if bad.declared {
            invalid(&here, &field, At::Under("variables", &bad.name), bad.reason)
        } else {
            EngineError::invalid(field, bad.reason)
        }
    })?;
    let budget_usd = match doc.budget_usd {
        Some(b) if !(b.is_finite() && b > 0.0) => {
            return Err(top(
                "budget_usd",
                "must be a positive number of US dollars".into(),
            ));
        }
        other => other,
    };
    let mut notes = Notes::default();
    let inherited = Inherited::read(&doc, &here, &vars, &mut notes)?;
    let graph = Graph::new(&doc.tasks, &here)?;
    let mut tasks = Vec::with_capacity(doc.tasks.len());
    let mut pins = Vec::with_capacity(doc.tasks.len());
    for (i, document_task) in doc.tasks.into_iter().enumerate() {
        let (spec, pin) = task::build(
            i,
            document_task,
            &graph,
            &inherited,
            &vars,
            &here,
            &mut notes,
        )?;
        tasks.push(spec);
        pins.push(pin);
    }
    Ok(Checked {
        plan: WorkflowPlan {
            name: doc.name,
            description: doc.description,
            instances: doc.instances,
            tasks,
            pins,
            leaves: graph.leaves(),
            budget_usd,
            permissions: inherited.permissions.clone(),
        },
        warnings: notes.into_warnings(),
    })
}

/// An invalid-argument error for `field`, ending with the place of `at`.
fn invalid(here: &Locator, field: &str, at: At, reason: String) -> EngineError {
    EngineError::invalid(field, format!("{reason}{}", suffix(here.place(at))))
}

/// Most warnings listed for one document; the rest are counted in one more. Placing a
/// warning scans the document, so a document of nothing but `{{x}}` stays cheap to check.
const MAX_WARNINGS: usize = 100;

/// The warnings of one document, as they are found.
#[derive(Default)]
struct Notes {
    listed: Vec<Warning>,
    unlisted: usize,
}

impl Notes {
    /// Notes what a template kept as written in `text` (the value of `at`).
    fn note(&mut self, here: &Locator, field: &str, at: At, text: &str, left: Vec<LeftAlone>) {
        for LeftAlone {
            offset,
            hole,
            reason,
        } in left
        {
            if self.listed.len() == MAX_WARNINGS {
                self.unlisted += 1;
                continue;
            }
            let nth = text[..offset].matches(hole.as_str()).count();
            self.listed.push(Warning {
                field: field.to_owned(),
                message: reason,
                place: here.place_in_value(at, &hole, nth),
            });
        }
    }

    /// In document order, the count of unlisted ones last.
    fn into_warnings(self) -> Vec<Warning> {
        let mut warnings = self.listed;
        warnings.sort_by_key(|w| (w.place.is_none(), w.place));
        if self.unlisted > 0 {
            warnings.push(Warning {
                field: "yaml".into(),
                message: format!(
                    "{} more pieces of `{{{{ }}}}` text kept as written are not listed",
                    self.unlisted
                ),
                place: None,
            });
        }
        warnings
    }
}
