//! `{{ ... }}` holes in prompts, commands and directories.

use std::collections::HashMap;

use crate::engine::{
    task::TaskId,
    workflow::{Segment, Template},
};

/// Splits `text` on `{{ ... }}`, filling variables now and resolving task references with
/// `task_ref`.
pub(super) fn template(
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
pub(super) fn template_vars_only(
    text: &str,
    vars: &HashMap<String, Vec<String>>,
) -> std::result::Result<String, String> {
    let segments = template(text, vars, false, |_| {
        Err("only vars.NAME may be used here".into())
    })?;
    Ok(Template(segments).render(|_| String::new()))
}
