//! How a task runs on a process: implements the engine's `Agent` port. Only this module
//! knows Claude Code's stream-json protocol ([`protocol`]), its control messages and how a
//! run's end becomes a failure class ([`verdict`]).
//!
//! One file per way of running a CLI process: `process` (one process per task, print mode)
//! and `live` (per instance, its next process started ahead, a task per process and
//! session, the prompt a user message on its stdin); `child` has
//! what both need of a child process (environment, process group, bounded lines, stops).

mod child;
mod control;
pub mod instant;
mod live;
mod process;
pub mod protocol;
pub mod resources;
pub mod simulated;
pub mod verdict;
pub mod worktree;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use crate::engine::ports::{
    Agent, BoxFuture, Leftover, OutputSink, ResourceUse, RunOutcome, RunRequest, StopSignal,
};

/// How to start the agent.
#[derive(Clone, Debug)]
pub struct AgentCommand {
    /// The program (`claude`, or this binary for the simulation).
    pub program: PathBuf,
    /// Arguments before the CLI's own (`simulate-agent`).
    pub leading_args: Vec<String>,
    /// Shown in status ("claude", "simulated").
    pub label: String,
    /// Between SIGTERM and SIGKILL.
    pub stop_grace: Duration,
    /// Variables set for the agent on top of the ones passed through (see [`PASSED_ENV`]).
    pub env: Vec<(String, String)>,
    /// Keep a CLI process per instance started ahead (`--input-format stream-json`, a
    /// fresh session) for the next task that needs no flags of its own; otherwise a
    /// process per task.
    pub long_lived: bool,
    /// Leave a task's git worktree in place when it ends (its branch is kept either way).
    pub keep_worktrees: bool,
    /// A process started ahead whose tree grew past this (bytes) while it waited is not
    /// used: the task gets a new one.
    pub memory_limit: Option<u64>,
    /// When set, a run whose directories resolve (symlinks followed) outside it is refused
    /// as it starts, and the agent runs in the resolved directory.
    pub workspace_root: Option<PathBuf>,
    /// Each account's variables (its credentials, `ANTHROPIC_BASE_URL`, ...), set on the
    /// processes of its instances after [`Self::env`]. The engine knows accounts by name
    /// only.
    pub accounts: BTreeMap<String, Vec<(String, String)>>,
}

/// The only variables of ours an agent process sees (plus [`AgentCommand::env`]): what a
/// CLI needs to find its tools, its login and the API. Prefixes end with `_`.
/// `CLAUDECODE` is never passed: a CLI started from inside Claude Code would act as nested.
pub const PASSED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LC_",
    "TZ",
    "TMPDIR",
    "TERM",
    "XDG_",
    "ANTHROPIC_",
    "CLAUDE_",
    "DISABLE_",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "NODE_EXTRA_CA_CERTS",
    "AWS_",
    "GOOGLE_",
    "CLOUD_ML_REGION",
];

/// Whether our variable `name` is passed to agents.
fn passed(name: &str) -> bool {
    name != "CLAUDECODE"
        && PASSED_ENV.iter().any(|p| {
            if p.ends_with('_') {
                name.starts_with(p)
            } else {
                name == *p
            }
        })
}

/// An [`Agent`] that runs one CLI process per task.
#[derive(Clone)]
pub struct ProcessAgent {
    pub(crate) command: Arc<AgentCommand>,
    /// Each instance's long-lived CLI process, when it has one.
    pub(crate) live: Arc<live::Slots>,
    /// Held while a worktree is made or put away: git's shared worktree metadata does not
    /// take two of those at once.
    pub(crate) worktrees: Arc<tokio::sync::Mutex<()>>,
}

impl ProcessAgent {
    pub fn new(command: AgentCommand) -> Self {
        Self {
            command: Arc::new(command),
            live: Arc::default(),
            worktrees: Arc::default(),
        }
    }

    /// With a workspace root, the run's directories are resolved (symlinks followed) and
    /// must still be inside it; the run then uses the resolved paths, so a link changed
    /// later does not matter. The engine checked their names at submission, but a link may
    /// point elsewhere by now.
    fn confine(&self, request: &mut RunRequest) -> Result<(), String> {
        let Some(root) = &self.command.workspace_root else {
            return Ok(());
        };
        let real_root = resolve(root)?;
        let dir = inside(
            "working directory",
            &request.working_directory,
            root,
            &real_root,
        )?;
        for extra in &mut request.options.add_dirs {
            let real = inside(
                "options.add_dirs entry",
                &dir.join(&*extra),
                root,
                &real_root,
            )?;
            *extra = real.display().to_string();
        }
        request.working_directory = dir;
        Ok(())
    }

    /// A directory as [`ProcessAgent::confine`] makes a run's: resolved, when there is a
    /// workspace root, and inside it.
    fn confine_dir(&self, dir: &Path) -> Result<PathBuf, String> {
        match &self.command.workspace_root {
            Some(root) => inside("working directory", dir, root, &resolve(root)?),
            None => Ok(dir.to_owned()),
        }
    }
}

fn resolve(path: &Path) -> Result<PathBuf, String> {
    path.canonicalize()
        .map_err(|e| format!("cannot resolve {}: {e}", path.display()))
}

/// `path` resolved, if that is inside `real_root` (the workspace `root` resolved).
fn inside(what: &str, path: &Path, root: &Path, real_root: &Path) -> Result<PathBuf, String> {
    let real = resolve(path)?;
    if real.starts_with(real_root) {
        Ok(real)
    } else {
        Err(format!(
            "{what} {} resolves to {}, outside the workspace root {}",
            path.display(),
            real.display(),
            root.display()
        ))
    }
}

impl Agent for ProcessAgent {
    fn run(
        &self,
        mut request: RunRequest,
        sink: OutputSink,
        stop: StopSignal,
    ) -> BoxFuture<RunOutcome> {
        let checked = if request.working_directory.is_dir() {
            self.confine(&mut request)
        } else {
            Err(format!(
                "working directory {} does not exist",
                request.working_directory.display()
            ))
        };
        if let Err(failure) = checked {
            return Box::pin(async move {
                RunOutcome::failed(crate::engine::FailureClass::SpawnFailed, failure)
            });
        }
        if self.fits_live(&request) {
            Box::pin(self.clone().run_live(request, sink, stop))
        } else {
            Box::pin(self.clone().run_process(request, sink, stop))
        }
    }

    fn retire(&self, instance: &str) {
        self.retire_live(instance);
    }

    fn prepare(&self, instance: &str, account: &str, working_directory: PathBuf) {
        self.prepare_live(instance, account, working_directory);
    }

    fn shutdown(&self) -> BoxFuture<()> {
        let agent = self.clone();
        Box::pin(async move { agent.shutdown_live().await })
    }

    fn describe(&self) -> String {
        self.command.label.clone()
    }

    fn usage(&self, pid: u32) -> Option<ResourceUse> {
        resources::group_usage(pid)
    }

    fn reap(&self, leftover: &Leftover) {
        let left = child::reap(leftover);
        if left > 0 {
            tracing::warn!(
                task_id = %leftover.task_id,
                process_group = leftover.process_group,
                processes = left,
                "ended what was left of a run from before the restart"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_variables_pass() {
        assert!(passed("PATH") && passed("ANTHROPIC_API_KEY") && passed("CLAUDE_CODE_MAX_RETRIES"));
        assert!(
            !passed("CLAUDECODE") && !passed("SWARM_SERVER") && !passed("PATHX") && !passed("AWS")
        );
    }
}
