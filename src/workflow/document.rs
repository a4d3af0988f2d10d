//! The document's shape as serde reads it (unknown keys refused everywhere), and how its
//! values become engine values: variables, `for_each` sources and the words of priorities,
//! policies and isolation modes.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, de::IgnoredAny};

use crate::engine::{
    model::{
        task::{Priority, TaskId},
        words::Word,
    },
    workflow::{FanOut, FanOutSource, MAX_ITEMS, items_of},
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Document {
    pub(super) name: String,
    #[serde(default)]
    pub(super) description: String,
    /// Decorative keys of the original format, accepted and ignored.
    #[serde(default, rename = "version")]
    pub(super) _version: Option<IgnoredAny>,
    #[serde(default, rename = "author")]
    pub(super) _author: Option<IgnoredAny>,
    #[serde(default, rename = "tags")]
    pub(super) _tags: Option<IgnoredAny>,
    pub(super) instances: Option<u32>,
    pub(super) priority: Option<String>,
    pub(super) on_failure: Option<String>,
    pub(super) budget_usd: Option<f64>,
    /// Tool permission rules for every task of the workflow.
    pub(super) permissions: Option<DocumentPolicy>,
    pub(super) on_permission_denied: Option<String>,
    #[serde(default)]
    pub(super) variables: BTreeMap<String, serde_norway::Value>,
    #[serde(default)]
    pub(super) defaults: Defaults,
    pub(super) tasks: Vec<DocumentTask>,
}

/// Settings every task gets unless it sets its own.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Defaults {
    pub(super) model: Option<String>,
    pub(super) timeout: Option<f64>,
    pub(super) retries: Option<u32>,
    pub(super) retry_backoff: Option<f64>,
    pub(super) priority: Option<String>,
    pub(super) working_directory: Option<String>,
    /// The original format's spelling of `working_directory`.
    pub(super) directory: Option<String>,
    pub(super) isolation: Option<String>,
    pub(super) permission_mode: Option<String>,
    pub(super) allowed_tools: Option<Vec<String>>,
    pub(super) max_turns: Option<u32>,
    pub(super) on_failure: Option<String>,
    pub(super) permissions: Option<DocumentPolicy>,
    pub(super) on_permission_denied: Option<String>,
}

/// `permissions:` of the workflow, its `defaults` or a task.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DocumentPolicy {
    #[serde(default)]
    pub(super) allow: Vec<String>,
    #[serde(default)]
    pub(super) deny: Vec<String>,
    pub(super) ask: Option<bool>,
}

impl From<DocumentPolicy> for crate::engine::PermissionPolicy {
    fn from(p: DocumentPolicy) -> Self {
        Self {
            allow: p.allow,
            deny: p.deny,
            ask: p.ask,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DocumentTask {
    pub(super) id: Option<String>,
    pub(super) name: Option<String>,
    #[serde(default, rename = "description")]
    pub(super) _description: Option<IgnoredAny>,
    pub(super) prompt: Option<String>,
    pub(super) command: Option<String>,
    #[serde(default)]
    pub(super) depends_on: Vec<String>,
    pub(super) priority: Option<String>,
    /// Seconds.
    pub(super) timeout: Option<f64>,
    pub(super) working_directory: Option<String>,
    /// The original format's spelling of `working_directory`.
    pub(super) directory: Option<String>,
    /// Pin to the workflow's Nth instance, numbered from 1 as in the original format.
    pub(super) instance: Option<usize>,
    pub(super) model: Option<String>,
    pub(super) allowed_tools: Option<Vec<String>>,
    pub(super) max_turns: Option<u32>,
    pub(super) retries: Option<u32>,
    pub(super) retry_backoff: Option<f64>,
    pub(super) permission_mode: Option<String>,
    pub(super) isolation: Option<String>,
    /// Run only on this account's instances (one of the server's `accounts`).
    pub(super) account: Option<String>,
    pub(super) on_failure: Option<String>,
    pub(super) permissions: Option<DocumentPolicy>,
    pub(super) on_permission_denied: Option<String>,
    pub(super) for_each: Option<ForEach>,
    /// Tasks of the workflow with the same name continue one conversation.
    pub(super) session: Option<String>,
    /// A JSON Schema (written as YAML or JSON) the answer must match.
    pub(super) output_schema: Option<serde_json::Value>,
    #[serde(default)]
    pub(super) labels: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) metadata: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ForEach {
    pub(super) items: Option<Vec<String>>,
    pub(super) var: Option<String>,
    pub(super) task: Option<String>,
    /// With `task`: the list at this path of its structured output (`.` for all of it).
    pub(super) output: Option<String>,
    pub(super) max_parallel: Option<usize>,
}

/// Why a mapping may not give both spellings of the working directory.
pub(super) const BOTH_DIRECTORIES: &str = "give working_directory or directory, not both";

/// The working directory and the key it is written under (`working_directory`, or
/// `directory` as in the original format); `Err` names the second key when both are given.
pub(super) fn directory<'a>(
    working_directory: &'a Option<String>,
    directory: &'a Option<String>,
) -> std::result::Result<Option<(&'static str, &'a str)>, &'static str> {
    match (working_directory, directory) {
        (Some(_), Some(_)) => Err("directory"),
        (Some(dir), None) => Ok(Some(("working_directory", dir))),
        (None, Some(dir)) => Ok(Some(("directory", dir))),
        (None, None) => Ok(None),
    }
}

/// A variable that cannot be used.
pub(super) struct BadVariable {
    pub(super) name: String,
    pub(super) reason: String,
    /// Whether the bad value is the document's (else an override's, which has no place in
    /// the document).
    pub(super) declared: bool,
}

/// Declared variables with overrides applied: each a list of values (one for a scalar).
pub(super) fn variables(
    declared: &BTreeMap<String, serde_norway::Value>,
    overrides: &BTreeMap<String, String>,
) -> std::result::Result<HashMap<String, Vec<String>>, BadVariable> {
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
        .ok_or_else(|| BadVariable {
            name: name.clone(),
            reason: "must be a string, a number, a boolean or a list of them".into(),
            declared: true,
        })?;
        vars.insert(name.clone(), values);
    }
    for (name, value) in overrides {
        let Some(current) = vars.get_mut(name) else {
            return Err(BadVariable {
                name: name.clone(),
                reason: format!("the workflow declares no variable {name:?}"),
                declared: false,
            });
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

pub(super) fn fan_out(
    f: &ForEach,
    vars: &HashMap<String, Vec<String>>,
    ids: &HashMap<String, TaskId>,
) -> std::result::Result<FanOut, (String, String)> {
    if f.output.is_some() && f.task.is_none() {
        return Err((
            ".output".into(),
            "needs task: the task whose output it is".into(),
        ));
    }
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
        (None, None, Some(task)) => match &f.output {
            None => FanOutSource::Result(ids[task].clone()),
            Some(path) => {
                let steps: Vec<String> = match path.trim() {
                    "" | "." => Vec::new(),
                    path => path.split('.').map(str::to_owned).collect(),
                };
                if steps.iter().any(|s| s.is_empty()) {
                    return Err((
                        ".output".into(),
                        format!("{path:?} is not a path (keys separated by '.')"),
                    ));
                }
                FanOutSource::Output(ids[task].clone(), steps)
            }
        },
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

/// A word of one of the engine's enums as workflow files spell it (any case, `-` for `_`),
/// read from that enum's one table.
pub(super) fn parse_word<E: Word>(word: &str) -> std::result::Result<E, String> {
    let normal = word.trim().to_ascii_lowercase().replace('-', "_");
    E::all()
        .iter()
        .copied()
        .find(|v| v.word() == normal)
        .ok_or_else(|| {
            let words: Vec<&str> = E::all().iter().map(|v| v.word()).collect();
            format!("{word:?} is not one of {}", words.join(", "))
        })
}

/// Also `PRIORITY_HIGH`, as the original service's API spells it.
pub(super) fn parse_priority(word: &str) -> std::result::Result<Priority, String> {
    Priority::from_word(word).map_or_else(|| parse_word(word), Ok)
}
