//! The parser on small documents: what it builds, and what it refuses with which place.

use std::{collections::BTreeMap, time::Duration};

use super::{Checked, check, parse};
use crate::engine::{
    EngineError,
    model::task::Priority,
    workflow::{FanOut, FanOutSource, WorkflowPlan, items_of},
};

/// A file in the format of the original Python Claude Swarm.
const ORIGINAL: &str = include_str!("../../tests/fixtures/original-format/parallel-analysis.yaml");

/// [`ORIGINAL`] with the first `from` replaced by `to`.
fn original_with(from: &str, to: &str) -> String {
    assert!(ORIGINAL.contains(from), "{from:?} is in the fixture");
    ORIGINAL.replacen(from, to, 1)
}

fn message(yaml: &str) -> String {
    err(yaml).to_string()
}

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
        plan.tasks[1].fan_out.as_deref(),
        Some(&FanOut {
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
        yaml.push_str(&format!(
            "  a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    yaml.push_str("tasks:\n  - id: a\n    prompt: p\n");
    let error = err(&yaml).to_string();
    assert!(error.contains("repetition limit"), "{error}");
}

#[test]
fn an_original_file_keeps_its_foreign_braces_and_pins_from_1() {
    let Checked { plan, warnings } = check(ORIGINAL, &BTreeMap::new()).unwrap();
    assert_eq!(plan.instances, Some(4));
    // The file's instance 1 is the first of the workflow's instances: index 0 to the engine.
    assert_eq!(plan.pins, vec![Some(0), Some(1), Some(2), Some(3), None]);
    assert_eq!(
        plan.tasks[1].command.as_deref(),
        Some("echo 'docker images app:test --format {{.Repository}}:{{ .Size }}'")
    );
    assert!(plan.tasks[1].template.is_none(), "nothing to fill in");
    assert!(
        plan.tasks[2]
            .prompt
            .contains("summary: \"Instance {{ $labels.instance }} down\"")
    );
    assert!(plan.tasks[3].prompt.contains("tag: \"{{.Name}}\""));
    let seen: Vec<(&str, &str, usize, usize)> = warnings
        .iter()
        .map(|w| {
            let place = w.place.expect("each is written out on one line");
            let hole = w.message.split('`').nth(1).unwrap_or_default();
            (w.field.as_str(), hole, place.line, place.column)
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("tasks[1].command", "{{.Repository}}", 20, 53),
            ("tasks[1].command", "{{ .Size }}", 20, 69),
            ("tasks[2].prompt", "{{ $labels.instance }}", 29, 32),
            ("tasks[3].prompt", "{{.Name}}", 36, 15),
        ]
    );
    assert_eq!(
        warnings[0].to_string(),
        "tasks[1].command: `{{.Repository}}` is not a claude-swarm template (vars.NAME, \
         tasks.NAME.result, tasks.NAME.output.PATH, item, index); kept as written (line 20, column 53)"
    );
}

#[test]
fn pins_are_numbered_from_1_to_instances_and_need_instances() {
    let numbered = "must be 1 to 4: the workflow has 4 instances, numbered from 1";
    assert_eq!(
        message(&original_with("    instance: 4\n", "    instance: 5\n")),
        format!("invalid tasks[3].instance: {numbered} (line 37, column 5)")
    );
    assert_eq!(
        message(&original_with("    instance: 1\n", "    instance: 0\n")),
        format!("invalid tasks[0].instance: {numbered} (line 15, column 5)")
    );
    assert_eq!(
        message(&original_with("instances: 4\n", "instances: 1\n")),
        "invalid tasks[1].instance: must be 1: the workflow has 1 instance, numbered from 1 \
         (line 21, column 5)"
    );
    assert!(
        message(&original_with("instances: 4\n", "instances: 0\n"))
            .starts_with("invalid tasks[0].instance: the workflow asks for no instances")
    );
    // Without `instances` there is nothing to pin to; said at validation, with the line.
    assert_eq!(
        message(&original_with("instances: 4\n", "\n")),
        "invalid tasks[0].instance: pins the task to one of the workflow's instances, but the \
         workflow sets no `instances`; add `instances: N` at the top (pins are numbered from 1 \
         to N) (line 15, column 5)"
    );
}

#[test]
fn only_our_own_templates_are_filled_and_typos_are_warned_about() {
    let yaml = original_with(
        "    prompt: \"Based on the reviews, generate a comprehensive summary report.\"\n",
        "    prompt: \"Summarise {{ task.Security Audit.result }} and {{ tasks.Security Audit.result }}, \
         written as {{ '{{' }} tasks.Security Audit.result }}\"\n",
    );
    let Checked { plan, warnings } = check(&yaml, &BTreeMap::new()).unwrap();
    let summary = plan.tasks[4].template.as_ref().expect("a hole of ours");
    assert_eq!(
        summary.render(|_| "AUDIT".into()),
        "Summarise {{ task.Security Audit.result }} and AUDIT, written as \
         {{ tasks.Security Audit.result }}"
    );
    assert_eq!(warnings.len(), 5);
    let typo = &warnings[4];
    assert_eq!(typo.field, "tasks[4].prompt");
    assert!(
        typo.message
            .starts_with("`{{ task.Security Audit.result }}` is not")
    );
    assert_eq!(typo.place.map(|p| (p.line, p.column)), Some((41, 24)));

    // `{{ item }}` outside a for_each task is text for another tool (an Ansible loop).
    let ansible = original_with(
        "    command: \"echo 'docker",
        "    command: \"ansible all -m debug -a 'msg={{ item }}' && echo 'docker",
    );
    let Checked { warnings, .. } = check(&ansible, &BTreeMap::new()).unwrap();
    assert!(
        warnings[0]
            .message
            .starts_with("`{{ item }}` is filled only in the prompt or command of a for_each")
    );
    // A directory, in defaults too, keeps foreign text and says where.
    let directory = original_with(
        "instances: 4\n",
        "instances: 4\ndefaults:\n  directory: \"/srv/{{ .Env }}\"\n",
    );
    let Checked { plan, warnings } = check(&directory, &BTreeMap::new()).unwrap();
    assert_eq!(
        plan.tasks[2].working_directory,
        Some(std::path::PathBuf::from("/srv/{{ .Env }}"))
    );
    assert_eq!(
        (
            warnings[0].field.as_str(),
            warnings[0].place.map(|p| (p.line, p.column))
        ),
        ("defaults.directory", Some((11, 20)))
    );
}

#[test]
fn defaults_are_checked_even_when_a_top_level_key_wins() {
    let with = |lines: &str| original_with("instances: 4\n", &format!("instances: 4\n{lines}"));
    assert_eq!(
        message(&with("priority: normal\ndefaults:\n  priority: urgent\n")),
        "invalid defaults.priority: \"urgent\" is not one of low, normal, high, critical \
         (line 12, column 3)"
    );
    assert_eq!(
        message(&with(
            "on_failure: continue\ndefaults:\n  on_failure: retry\n"
        )),
        "invalid defaults.on_failure: \"retry\" is not one of continue, fail_fast (line 12, column 3)"
    );
    assert_eq!(
        message(&with("priority: urgent\ndefaults:\n  priority: low\n")),
        "invalid priority: \"urgent\" is not one of low, normal, high, critical (line 10, column 1)"
    );
    let plan = plan(&with("priority: low\ndefaults:\n  priority: high\n"));
    assert_eq!(
        plan.tasks[0].priority,
        Priority::Low,
        "the top-level key wins"
    );
}

#[test]
fn every_error_the_document_can_place_has_its_line() {
    let with = |lines: &str| original_with("instances: 4\n", &format!("instances: 4\n{lines}"));
    let cases = [
        ("variables:\n  env: {a: 1}\n", "variables.env", 11, 3),
        ("defaults:\n  timeout: -1\n", "defaults.timeout", 11, 3),
        (
            "defaults:\n  retry_backoff: 0\n",
            "defaults.retry_backoff",
            11,
            3,
        ),
        (
            "defaults:\n  isolation: container\n",
            "defaults.isolation",
            11,
            3,
        ),
        (
            "defaults:\n  model: opus\n  permission_mode: yolo\n",
            "defaults.permission_mode",
            12,
            3,
        ),
        ("defaults:\n  max_turns: 0\n", "defaults.max_turns", 11, 3),
        (
            "defaults:\n  allowed_tools: [Read, \" \"]\n",
            "defaults.allowed_tools[1]",
            11,
            3,
        ),
        (
            "defaults:\n  working_directory: \"{{ tasks.x.result }}\"\n",
            "defaults.working_directory",
            11,
            3,
        ),
        (
            "defaults:\n  directory: a\n  working_directory: b\n",
            "defaults.directory",
            11,
            3,
        ),
        ("budget_usd: 0\n", "budget_usd", 10, 1),
    ];
    for (lines, field, line, column) in cases {
        let error = err(&with(lines));
        assert_eq!(error.field(), Some(field), "{lines}");
        let place = format!("(line {line}, column {column})");
        assert!(error.to_string().ends_with(&place), "{lines}: {error}");
    }
    assert!(
        message(&original_with(
            "name: \"Parallel Code Analysis\"",
            "name: \" \""
        ))
        .ends_with("(line 6, column 1)")
    );
    // Flow-style tasks: the `tasks:` key at least.
    assert!(
        message("name: x\ntasks: [{id: a, prompt: p, depends_on: [b]}]\n")
            .ends_with("(line 2, column 1)")
    );
    // An override is not in the document, so it has no place.
    let overrides = BTreeMap::from([("nope".to_string(), "1".to_string())]);
    assert_eq!(
        parse(ORIGINAL, &overrides).unwrap_err().to_string(),
        "invalid variables.nope: the workflow declares no variable \"nope\""
    );
}

#[test]
fn two_tasks_may_not_share_a_name_as_outputs_are_keyed_by_name() {
    let second = format!(
        "{ORIGINAL}\n  - id: audit-again\n    name: \"Security Audit\"\n    prompt: again\n"
    );
    assert_eq!(
        message(&second),
        "invalid tasks[5].name: \"Security Audit\" is also the name of tasks[0]; names must be \
         unique, as they key the workflow's outputs (line 50, column 5)"
    );
    // A name defaults to the id, so an id can take another task's name too.
    assert_eq!(
        err("name: x\ntasks:\n  - id: b\n    name: a\n    prompt: p\n  - id: a\n    prompt: q\n")
            .to_string(),
        "invalid tasks[1].name: \"a\" is also the name of tasks[0]; names must be unique, as they \
         key the workflow's outputs (line 6, column 5)"
    );
}

#[test]
fn warnings_are_listed_up_to_a_bound_and_the_rest_counted() {
    let holes = "{{x}} ".repeat(5000);
    let yaml = original_with(
        "    prompt: \"Based on the reviews, generate a comprehensive summary report.\"\n",
        &format!("    prompt: \"{holes}\"\n"),
    );
    let warnings = check(&yaml, &BTreeMap::new()).unwrap().warnings;
    assert_eq!(warnings.len(), 101);
    // The fixture's own four come first, in document order.
    assert_eq!(warnings[3].place.map(|p| p.line), Some(36));
    assert_eq!(
        warnings[99].place.map(|p| (p.line, p.column)),
        Some((41, 14 + 95 * 6))
    );
    assert_eq!(
        warnings[100].to_string(),
        "yaml: 4904 more pieces of `{{ }}` text kept as written are not listed"
    );
}

#[test]
fn a_variable_reaches_a_shell_step_as_quoted_words_never_as_code() {
    let mut vars = BTreeMap::new();
    vars.insert("target".to_string(), "x; touch pwned".to_string());
    let plan = parse(
        "name: t\nvariables:\n  target: .\ntasks:\n  - id: ls\n    command: ls {{ vars.target }}\n  - id: ask\n    prompt: Look at {{ vars.target }}\n",
        &vars,
    )
    .unwrap();
    assert_eq!(
        plan.tasks[0].command.as_deref(),
        Some("ls 'x; touch pwned'")
    );
    assert_eq!(plan.tasks[1].prompt, "Look at x; touch pwned");
}

#[test]
fn permissions_come_from_the_workflow_its_defaults_and_each_task() {
    use crate::engine::DenialPolicy;
    let plan = plan(
        "name: p\npermissions:\n  allow: [\"Bash(npm test:*)\"]\n  ask: false\ndefaults:\n  on_permission_denied: fail\ntasks:\n  - id: a\n    prompt: a\n    permissions: { deny: [\"Edit(src/**)\"] }\n  - id: b\n    prompt: b\n    on_permission_denied: continue\n",
    );
    assert_eq!(plan.permissions.allow, ["Bash(npm test:*)"]);
    assert_eq!(plan.permissions.ask, Some(false));
    assert_eq!(plan.tasks[0].permissions.deny, ["Edit(src/**)"]);
    assert_eq!(plan.tasks[0].on_permission_denied, DenialPolicy::Fail);
    assert_eq!(plan.tasks[1].on_permission_denied, DenialPolicy::Continue);
    let defaults = plan_of_defaults();
    assert_eq!(defaults.permissions.deny, ["WebFetch"]);
}

fn plan_of_defaults() -> WorkflowPlan {
    plan(
        "name: p\ndefaults:\n  permissions: { deny: [WebFetch] }\ntasks:\n  - id: a\n    prompt: a\n",
    )
}

#[test]
fn a_rule_that_does_not_parse_is_placed() {
    let e =
        err("name: p\npermissions:\n  allow: [\"Bash(ls\"]\ntasks:\n  - id: a\n    prompt: a\n");
    assert_eq!(e.field(), Some("permissions.allow[0]"));
    assert!(e.to_string().contains("line 2"), "{e}");
    let e = err(
        "name: p\ntasks:\n  - id: a\n    prompt: a\n    permissions: { deny: [\"Task(x)\"] }\n",
    );
    assert_eq!(e.field(), Some("tasks[0].permissions.deny[0]"));
    let e = err("name: p\ntasks:\n  - id: a\n    prompt: a\n    on_permission_denied: explode\n");
    assert_eq!(e.field(), Some("tasks[0].on_permission_denied"));
}
