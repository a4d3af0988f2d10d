//! `isolation: worktree`: each task works on a branch of its own in a git worktree.

mod common;

use std::{path::Path, process::Command};

use claude_swarm::{engine::EngineConfig, pb};
use common::{TestServer, config, spec, status};

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=test", "-c", "user.email=test@localhost"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_task_gets_a_branch_with_its_changes_and_the_main_tree_is_untouched() {
    let repo = tempfile::tempdir().unwrap();
    git(repo.path(), &["init", "--quiet", "--initial-branch=main"]);
    std::fs::write(repo.path().join("README"), "hello\n").unwrap();
    git(repo.path(), &["add", "README"]);
    git(repo.path(), &["commit", "--quiet", "-m", "start"]);

    let server = TestServer::start(EngineConfig {
        working_directory: repo.path().into(),
        ..config(2)
    })
    .await;
    let isolated = |id: &str, command: &str| pb::TaskSpec {
        id: id.into(),
        command: command.into(),
        isolation: pb::Isolation::Worktree as i32,
        ..spec("")
    };
    server
        .submit(isolated(
            "one",
            "echo one > one.txt && echo changed >> README",
        ))
        .await;
    server.submit(isolated("two", "echo two > two.txt")).await;
    server.submit(isolated("none", "true")).await;
    for (id, files) in [("one", vec!["one.txt", "README"]), ("two", vec!["two.txt"])] {
        let done = server.wait(id).await;
        assert_eq!(status(&done), pb::TaskStatus::Completed, "{done:?}");
        let result = done.result.unwrap();
        assert_eq!(result.branch, format!("swarm/{id}"));
        for file in files {
            assert!(
                result.diff_stat.contains(file),
                "{id}: {}",
                result.diff_stat
            );
        }
        let log = git(repo.path(), &["log", "--format=%s", &format!("swarm/{id}")]);
        assert!(
            log.starts_with(&format!("claude-swarm task {id}\n")),
            "{log}"
        );
    }
    let nothing = server.wait("none").await;
    let nothing = nothing
        .result
        .clone()
        .unwrap_or_else(|| panic!("{nothing:?}"));
    assert_eq!(
        (nothing.branch.as_str(), nothing.diff_stat.as_str()),
        ("swarm/none", "")
    );
    // The main working tree saw none of it, and no worktree is left behind.
    assert_eq!(
        std::fs::read_to_string(repo.path().join("README")).unwrap(),
        "hello\n"
    );
    assert!(!repo.path().join("one.txt").exists());
    assert_eq!(git(repo.path(), &["status", "--porcelain"]), "");
    assert_eq!(git(repo.path(), &["worktree", "list"]).lines().count(), 1);

    // Outside a repository it fails at once, saying why.
    let plain = tempfile::tempdir().unwrap();
    let task = server
        .submit(pb::TaskSpec {
            working_directory: plain.path().to_string_lossy().into(),
            ..isolated("lost", "true")
        })
        .await;
    let done = server.wait(&task.id).await;
    assert_eq!(done.failure_class, pb::FailureClass::SpawnFailed as i32);
    assert!(
        done.error.contains("needs a git repository"),
        "{}",
        done.error
    );
    server.stop().await;
}
