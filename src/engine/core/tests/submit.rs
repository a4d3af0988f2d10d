//! Submission rules that need the engine's state or settings: the bound on unfinished
//! tasks, and what the workspace root and the server's leave confine.

use std::path::PathBuf;

use super::*;
use crate::engine::EngineError;

fn refused(h: &mut Harness, specs: Vec<TaskSpec>) -> EngineError {
    h.submit_all(specs).0.expect_err("refused")
}

#[test]
fn unfinished_tasks_are_bounded_and_a_submission_past_the_bound_is_refused_whole() {
    let mut h = Harness::with(EngineConfig {
        initial_instances: 1,
        max_queued_tasks: 3,
        ..EngineConfig::default()
    });
    h.submit(vec![spec("running"), spec("queued")]);
    assert_eq!(h.status("running"), TaskStatus::Running);
    let err = refused(&mut h, vec![spec("x"), spec("y")]);
    assert!(
        matches!(
            &err,
            EngineError::ResourceExhausted {
                limit: "max_queued_tasks",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("2 tasks are pending, queued or running"),
        "{err}"
    );
    let (call, turn) = h.call(|call| Input::GetTask {
        call,
        id: "x".into(),
    });
    assert!(
        matches!(reply(&turn, call), Some(Answer::Task(Err(_)))),
        "nothing of it stays"
    );
    // A workflow counts the same.
    let (info, _) = h.execute(plan(vec![spec("w1"), spec("w2")]));
    assert!(matches!(info, Err(EngineError::ResourceExhausted { .. })));
    // Finished tasks make room.
    h.complete("running");
    h.submit(vec![spec("x"), spec("y")]);
}

#[test]
fn loader_and_path_variables_need_the_servers_leave() {
    let with_env = |id: &str, name: &str| {
        let mut spec = spec(id);
        spec.options.env.insert(name.into(), "/tmp/evil".into());
        spec
    };
    let mut h = Harness::new(1);
    for name in [
        "LD_PRELOAD",
        "PATH",
        "DYLD_INSERT_LIBRARIES",
        "NODE_OPTIONS",
    ] {
        let err = refused(&mut h, vec![spec("fine"), with_env("bad", name)]);
        assert_eq!(err.field(), Some("tasks[1].options.env"), "{name}");
        assert!(err.to_string().contains(name), "{err}");
    }
    h.submit(vec![with_env("plain", "RUST_LOG")]);

    let mut h = Harness::with(EngineConfig {
        allow_agent_env_override: vec!["PATH".into()],
        ..EngineConfig::default()
    });
    h.submit(vec![with_env("allowed", "PATH")]);
    assert_eq!(
        refused(&mut h, vec![with_env("still", "LD_PRELOAD")]).field(),
        Some("tasks[0].options.env")
    );
}

#[test]
fn extra_directories_stay_inside_the_workspace_root() {
    let root = std::env::temp_dir();
    let mut h = Harness::with(EngineConfig {
        working_directory: root.clone(),
        workspace_root: Some(root.clone()),
        ..EngineConfig::default()
    });
    let adding = |id: &str, dir: &str| {
        let mut spec = spec(id);
        spec.working_directory = Some(PathBuf::from("."));
        spec.options.add_dirs = vec![".".into(), dir.into()];
        spec
    };
    for outside in ["/etc", "../.."] {
        let err = refused(&mut h, vec![adding("bad", outside)]);
        assert_eq!(
            err.field(),
            Some("tasks[0].options.add_dirs[1]"),
            "{outside}"
        );
    }
    h.submit(vec![adding("fine", "sub")]);
}
