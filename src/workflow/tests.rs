//! The parser on small documents: what it builds, and what it refuses with which place.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use super::parse;
use crate::engine::{
    EngineError,
    task::Priority,
    workflow::{FanOut, FanOutSource, WorkflowPlan, items_of},
};

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
        message("name: x\ntasks:\n  - id: a\n    prompt: \"{{ oops\"\n").contains("never closed")
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
