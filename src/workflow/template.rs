//! `{{ ... }}` holes in prompts, commands and directories.
//!
//! A hole runs from `{{` to the first `}}` after it. Only claude-swarm's own expressions are
//! holes: `vars.NAME`, `tasks.KEY.result`, `item` and `index` (the last two in a `for_each`
//! task), and the escape `'{{'` (or `"{{"`), which writes a literal `{{`. Anything else
//! between the braces is text for another tool (a Go template, a Prometheus rule, Jinja)
//! and is kept as written, with a note saying so; the original Python service substituted
//! nothing, and its files carry such text.

use std::collections::HashMap;

use crate::engine::{
    model::task::TaskId,
    workflow::{Segment, Template, shell_quote},
};

/// A `{{` the template kept as written because it is not one of claude-swarm's holes.
#[derive(Debug, PartialEq)]
pub(super) struct LeftAlone {
    /// Byte offset of its `{{` in the text.
    pub(super) offset: usize,
    /// As written: from `{{` to `}}`, or only `{{` when nothing closes it.
    pub(super) hole: String,
    /// Why it was kept, for the warning.
    pub(super) reason: String,
}

/// A text split into segments.
pub(super) struct Filled {
    pub(super) segments: Vec<Segment>,
    /// What looked like a hole but is not one of ours, in order.
    pub(super) left_alone: Vec<LeftAlone>,
}

/// What the text is: its holes are filled differently in a shell command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Text {
    /// A prompt, a directory: values go in as they are.
    Plain,
    /// A `command` for `sh -c`: every value goes in as single-quoted words, so no value
    /// (a variable set by whoever runs the workflow, a task's result, an item) can become
    /// shell code. Results and items are quoted when the task starts (the engine fills
    /// them); variables here, each of a list's values as a word of its own.
    Shell,
}

/// Splits `text` on its holes, filling variables now and resolving task references with
/// `task_ref`. An error is a hole of ours that cannot be filled (an undeclared variable, a
/// task that is not upstream).
pub(super) fn template(
    text: &str,
    kind: Text,
    vars: &HashMap<String, Vec<String>>,
    in_for_each: bool,
    task_ref: impl Fn(&str) -> std::result::Result<TaskId, String>,
) -> std::result::Result<Filled, String> {
    let mut segments = Vec::new();
    let mut left_alone = Vec::new();
    let push_text = |segments: &mut Vec<Segment>, s: &str| {
        if s.is_empty() {
            return;
        }
        match segments.last_mut() {
            Some(Segment::Text(t)) => t.push_str(s),
            _ => segments.push(Segment::Text(s.to_owned())),
        }
    };
    let mut done = 0;
    while let Some(open) = text[done..].find("{{").map(|at| done + at) {
        push_text(&mut segments, &text[done..open]);
        done = open;
        let Some(close) = text[open + 2..].find("}}").map(|at| open + 2 + at) else {
            left_alone.push(LeftAlone {
                offset: open,
                hole: "{{".into(),
                reason: "`{{` is never closed with `}}`; kept as written".into(),
            });
            break;
        };
        done = close + 2;
        let hole = &text[open..done];
        let expr = text[open + 2..close].trim();
        let parts: Vec<&str> = expr.split('.').collect();
        if let ["tasks", rest @ ..] = parts.as_slice()
            && let Some((key, path)) = output_ref(rest)
        {
            segments.push(Segment::Output(task_ref(&key)?, path));
            continue;
        }
        match parts.as_slice() {
            _ if expr == "'{{'" || expr == "\"{{\"" => push_text(&mut segments, "{{"),
            ["vars", name] if !name.is_empty() => {
                let values = vars
                    .get(*name)
                    .ok_or_else(|| format!("no variable {name:?} is declared"))?;
                let value = match kind {
                    Text::Plain => values.join(", "),
                    Text::Shell => values
                        .iter()
                        .map(|v| shell_quote(v))
                        .collect::<Vec<_>>()
                        .join(" "),
                };
                push_text(&mut segments, &value);
            }
            ["tasks", key @ .., "result"] if !key.is_empty() => {
                segments.push(Segment::Result(task_ref(&key.join("."))?))
            }
            ["item"] if in_for_each => segments.push(Segment::Item),
            ["index"] if in_for_each => segments.push(Segment::Index),
            ["item"] | ["index"] => {
                push_text(&mut segments, hole);
                left_alone.push(LeftAlone {
                    offset: open,
                    hole: hole.into(),
                    reason: format!(
                        "`{hole}` is filled only in the prompt or command of a for_each task; \
                         kept as written"
                    ),
                });
            }
            _ => {
                push_text(&mut segments, hole);
                left_alone.push(LeftAlone {
                    offset: open,
                    hole: hole.into(),
                    reason: format!(
                        "`{hole}` is not a claude-swarm template (vars.NAME, tasks.NAME.result, \
                         tasks.NAME.output.PATH, item, index); kept as written"
                    ),
                });
            }
        }
    }
    push_text(&mut segments, &text[done..]);
    Ok(Filled {
        segments,
        left_alone,
    })
}

/// `KEY.output` or `KEY.output.PATH` (after `tasks.`): the task's key and the path into its
/// structured output; `None` when it is neither (or a step of the path is empty).
fn output_ref(rest: &[&str]) -> Option<(String, Vec<String>)> {
    let at = rest.iter().skip(1).position(|p| *p == "output")? + 1;
    let path = &rest[at + 1..];
    if path.iter().any(|p| p.is_empty()) {
        return None;
    }
    let path = path.iter().map(|p| (*p).to_owned()).collect();
    Some((rest[..at].join("."), path))
}

/// A field where only variables may be used: its text, and what was kept as written.
pub(super) fn template_vars_only(
    text: &str,
    vars: &HashMap<String, Vec<String>>,
) -> std::result::Result<(String, Vec<LeftAlone>), String> {
    let filled = template(text, Text::Plain, vars, false, |_| {
        Err("only vars.NAME may be used here".into())
    })?;
    Ok((
        Template(filled.segments).render(|_| String::new()),
        filled.left_alone,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(text: &str) -> (String, Vec<String>) {
        let vars = HashMap::from([("app".to_string(), vec!["chess".to_string()])]);
        let filled = template(text, Text::Plain, &vars, false, |key| {
            Ok(format!("id-{key}").into())
        })
        .unwrap();
        (
            Template(filled.segments).display(),
            filled.left_alone.into_iter().map(|l| l.hole).collect(),
        )
    }

    #[test]
    fn text_for_other_tools_is_kept_as_written_and_noted() {
        let go = "docker images --format \"{{ .Repository }}:{{.Size}}\" for {{ vars.app }}";
        assert_eq!(
            fill(go),
            (
                "docker images --format \"{{ .Repository }}:{{.Size}}\" for chess".into(),
                vec!["{{ .Repository }}".into(), "{{.Size}}".into()]
            )
        );
        let prometheus = "summary: \"Instance {{ $labels.instance }} down\"";
        assert_eq!(fill(prometheus).0, prometheus);
        // A typo of one of ours is noted too.
        assert_eq!(
            fill("{{ task.plan.result }}").1,
            vec!["{{ task.plan.result }}"]
        );
        // item and index outside a for_each task: text for another tool (Ansible loops).
        assert_eq!(fill("- {{ item }}").0, "- {{ item }}");
        assert_eq!(fill("never {{ closed").0, "never {{ closed");
        assert_eq!(fill("never {{ closed").1, vec!["{{"]);
        assert_eq!(fill("}} alone").0, "}} alone");
    }

    #[test]
    fn structured_output_paths_are_holes() {
        assert_eq!(
            fill("files: {{ tasks.plan.output.files }}, all: {{ tasks.plan.output }}"),
            (
                "files: {{ tasks.id-plan.output.files }}, all: {{ tasks.id-plan.output }}".into(),
                vec![]
            )
        );
        assert_eq!(
            fill("{{ tasks.a.b.output.x.0 }}").0,
            "{{ tasks.id-a.b.output.x.0 }}"
        );
        // An empty step is not a path: kept as written, and noted.
        assert_eq!(fill("{{ tasks.plan.output..x }}").1.len(), 1);
    }

    #[test]
    fn the_escape_writes_a_literal_opening() {
        assert_eq!(
            fill("{{ '{{' }} vars.app }} is {{ vars.app }}, {{\"{{\"}}x}}"),
            ("{{ vars.app }} is chess, {{x}}".into(), vec![])
        );
        // The escaped text is not a hole, even before one of ours.
        let vars = HashMap::new();
        let filled = template(
            "{{'{{'}} tasks.a.result }}",
            Text::Plain,
            &vars,
            false,
            |_| Err("not called".into()),
        )
        .unwrap();
        assert_eq!(
            filled.segments,
            vec![Segment::Text("{{ tasks.a.result }}".into())]
        );
    }

    #[test]
    fn holes_of_ours_that_cannot_be_filled_are_errors() {
        let vars = HashMap::new();
        let refuse = |_: &str| Err("not upstream".to_string());
        assert_eq!(
            template("{{ vars.nope }}", Text::Plain, &vars, false, refuse).err(),
            Some("no variable \"nope\" is declared".into())
        );
        assert_eq!(
            template("{{ tasks.x.result }}", Text::Plain, &vars, false, refuse).err(),
            Some("not upstream".into())
        );
        let left = template("a {{ x }} b {{ y", Text::Plain, &vars, false, refuse)
            .unwrap()
            .left_alone;
        assert_eq!(
            left.iter().map(|l| l.offset).collect::<Vec<_>>(),
            vec![2, 12]
        );
    }

    #[test]
    fn variables_in_a_shell_command_are_quoted_words() {
        let vars = HashMap::from([
            ("name".to_string(), vec!["x'; rm -rf ~; echo '".to_string()]),
            (
                "files".to_string(),
                vec!["a b".to_string(), "$(id)".to_string()],
            ),
        ]);
        let shell = |text: &str| {
            let filled = template(text, Text::Shell, &vars, false, |_| Err(String::new())).unwrap();
            Template(filled.segments).display()
        };
        assert_eq!(
            shell("echo {{ vars.name }}"),
            r#"echo 'x'\''; rm -rf ~; echo '\'''"#
        );
        assert_eq!(shell("ls {{ vars.files }}"), "ls 'a b' '$(id)'");
        // A prompt gets the values as they are.
        let plain = template("{{ vars.files }}", Text::Plain, &vars, false, |_| {
            Err(String::new())
        })
        .unwrap();
        assert_eq!(Template(plain.segments).display(), "a b, $(id)");
    }
}
