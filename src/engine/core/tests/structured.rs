//! Structured output downstream: template paths filled when a task starts, and `for_each`
//! over a list of it.

use serde_json::json;

use super::*;
use crate::engine::workflow::{FanOut, FanOutSource, Segment, Template};

fn structured(value: serde_json::Value) -> RunOutcome {
    RunOutcome::completed(TaskResult {
        text: value.to_string(),
        structured_output: Some(value),
        exit_code: Some(0),
        ..TaskResult::default()
    })
}

fn over_files(id: &str, command: bool) -> TaskSpec {
    let mut spec = TaskSpec {
        depends_on: vec!["plan".into()],
        fan_out: Some(Box::new(FanOut {
            source: FanOutSource::Output("plan".into(), vec!["files".into()]),
            max_parallel: usize::MAX,
        })),
        template: Some(Template(vec![
            Segment::Text("review ".into()),
            Segment::Item,
        ])),
        ..spec(id)
    };
    if command {
        spec.command = Some("review".into());
    }
    spec
}

#[test]
fn paths_of_the_structured_output_fill_prompts_and_commands() {
    let mut h = Harness::new(2);
    let output = |path: &[&str]| {
        Segment::Output("plan".into(), path.iter().map(|p| p.to_string()).collect())
    };
    let prompt = TaskSpec {
        depends_on: vec!["plan".into()],
        template: Some(Template(vec![
            Segment::Text("n=".into()),
            output(&["n"]),
            Segment::Text(" first=".into()),
            output(&["files", "0"]),
            Segment::Text(" all=".into()),
            output(&["files"]),
            Segment::Text(" missing=".into()),
            output(&["nope"]),
        ])),
        ..spec("prompt")
    };
    let command = TaskSpec {
        depends_on: vec!["plan".into()],
        command: Some("echo".into()),
        template: Some(Template(vec![
            Segment::Text("echo ".into()),
            output(&["files", "1"]),
        ])),
        ..spec("command")
    };
    h.execute(plan(vec![spec("plan"), prompt, command]))
        .0
        .unwrap();
    h.finish(
        "plan",
        structured(json!({"n": 3, "files": ["a.rs", "it's; rm -rf ~"]})),
    );
    assert_eq!(
        h.task("prompt").spec.prompt,
        r#"n=3 first=a.rs all=["a.rs","it's; rm -rf ~"] missing="#
    );
    assert_eq!(
        h.task("command").spec.command.as_deref(),
        Some(r"echo 'it'\''s; rm -rf ~'"),
        "one quoted word"
    );
}

#[test]
fn for_each_fans_out_over_a_list_of_the_structured_output() {
    let mut h = Harness::new(4);
    h.execute(plan(vec![spec("plan"), over_files("each", false)]))
        .0
        .unwrap();
    let turn = h.finish("plan", structured(json!({"files": ["a.rs", {"b": 1}]})));
    assert_eq!(started(&turn), ["each.0", "each.1"]);
    assert_eq!(h.task("each.0").spec.prompt, "review a.rs");
    assert_eq!(h.task("each.1").spec.prompt, r#"review {"b":1}"#);
}

#[test]
fn for_each_over_something_that_is_not_a_list_fails_saying_what_it_found() {
    let mut h = Harness::new(2);
    h.execute(plan(vec![spec("plan"), over_files("each", true)]))
        .0
        .unwrap();
    h.finish("plan", structured(json!({"files": "a.rs"})));
    let each = h.task("each");
    assert_eq!(each.status, TaskStatus::Failed);
    let error = each.error.unwrap();
    assert!(
        error.contains("a string") && error.contains("files"),
        "{error}"
    );

    // No structured output at all (the task had no schema): nothing there.
    let mut h = Harness::new(2);
    h.execute(plan(vec![spec("plan"), over_files("each", false)]))
        .0
        .unwrap();
    h.complete("plan");
    let error = h.task("each").error.unwrap();
    assert!(error.contains("nothing"), "{error}");
}
