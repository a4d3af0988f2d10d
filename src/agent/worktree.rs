//! Git worktrees for tasks run with `isolation: worktree`: each task works on a branch of
//! its own (`swarm/<task id>`) in a worktree kept inside the repository's git directory, so
//! parallel agents never edit the same files. When the run ends its changes are committed
//! to that branch and the worktree directory is removed; the branch stays.

use std::path::{Path, PathBuf};

use tokio::process::Command;

/// A worktree made for one run.
pub struct Worktree {
    /// The repository's top level.
    top: PathBuf,
    /// The worktree's directory.
    path: PathBuf,
    pub branch: String,
    /// Where the task runs inside it (the working directory's place in the repository).
    pub run_in: PathBuf,
}

async fn git(dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .output()
        .await
        .map_err(|e| format!("cannot run git: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
    } else {
        Err(format!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Worktree {
    /// Makes a worktree of the repository holding `working_directory`, at its HEAD, on a
    /// fresh branch for `task_id` (a retry starts over from HEAD).
    pub async fn create(working_directory: &Path, task_id: &str) -> Result<Self, String> {
        let top = PathBuf::from(
            git(working_directory, &["rev-parse", "--show-toplevel"])
                .await
                .map_err(|e| format!("isolation: worktree needs a git repository: {e}"))?,
        );
        let common = PathBuf::from(
            git(
                &top,
                &["rev-parse", "--path-format=absolute", "--git-common-dir"],
            )
            .await?,
        );
        let path = common.join("swarm-worktrees").join(task_id);
        if path.exists() {
            let _ = git(
                &top,
                &["worktree", "remove", "--force", &path.to_string_lossy()],
            )
            .await;
        }
        let branch = format!("swarm/{task_id}");
        git(
            &top,
            &[
                "worktree",
                "add",
                "--quiet",
                "-B",
                &branch,
                &path.to_string_lossy(),
                "HEAD",
            ],
        )
        .await?;
        let relative = working_directory
            .canonicalize()
            .ok()
            .and_then(|dir| {
                dir.strip_prefix(top.canonicalize().ok()?)
                    .ok()
                    .map(Path::to_path_buf)
            })
            .unwrap_or_default();
        Ok(Self {
            run_in: path.join(relative),
            top,
            path,
            branch,
        })
    }

    /// Commits what the run changed to the branch, removes the worktree directory unless
    /// `keep`, and returns the diff stat (empty when nothing changed).
    pub async fn finish(self, task_id: &str, keep: bool) -> Result<String, String> {
        let dir = &self.path;
        git(dir, &["add", "-A"]).await?;
        let changed = !git(dir, &["status", "--porcelain"]).await?.is_empty();
        let stat = if changed {
            let message = format!("claude-swarm task {task_id}");
            git(
                dir,
                &[
                    "-c",
                    "user.name=claude-swarm",
                    "-c",
                    "user.email=claude-swarm@localhost",
                    "commit",
                    "--quiet",
                    "-m",
                    &message,
                ],
            )
            .await?;
            git(dir, &["diff", "--stat", "HEAD~1", "HEAD"]).await?
        } else {
            String::new()
        };
        if !keep {
            git(
                &self.top,
                &["worktree", "remove", "--force", &dir.to_string_lossy()],
            )
            .await?;
        }
        Ok(stat)
    }
}
