//! Long-lived instances: each instance keeps a Claude Code process started ahead of its
//! next task (`--input-format stream-json`, a fresh `--session-id`), waiting on stdin, so a
//! task pays no start-up time. The task is one user message on its stdin and ends with its
//! `result` line; then that process goes (its conversation is the task's own, never the
//! next one's) and the instance's next process starts at once, ready for the next task. A
//! cancel or timeout first asks the CLI to interrupt the turn (a `control_request`), so the
//! turn's result (and its cost) is read; if the CLI does not answer in time, stdin is
//! closed and the process group gets SIGTERM, then SIGKILL. Tasks that need flags of their
//! own (model, tools, options, a session to resume, a budget cap, an output schema,
//! isolation, shell steps) and retries run in a process of their own instead.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Instant,
};

use serde_json::json;
use tokio::{
    io::AsyncWriteExt,
    process::{Child, ChildStdin, ChildStdout, Command},
    sync::oneshot,
    task::JoinHandle,
};

use super::{
    ProcessAgent,
    child::{Line, LineReader, forward, prepare, read_tail, signal_group, spawn_error, terminate},
    control::{Control, PERMISSION_FLAGS},
    resources,
    verdict::ProcessExit,
};
use crate::engine::{
    AgentOptions, Isolation,
    ports::{OutputSink, RunOutcome, RunRequest, StopReason, StopSignal},
};

/// Each instance's processes, locked while a task runs on it.
pub type Slots = Mutex<HashMap<String, Arc<tokio::sync::Mutex<Slot>>>>;

/// An instance's processes.
#[derive(Default)]
pub struct Slot {
    /// Started ahead with a fresh session; it has run no task yet.
    spare: Option<Parked>,
    /// Processes that ran their task, on their way out; retiring the instance (and
    /// shutdown) waits for them.
    leaving: Vec<JoinHandle<()>>,
}

/// A running `claude -p --input-format stream-json` process.
pub struct Live {
    child: Child,
    /// Closed (taken) to ask the process to end.
    stdin: Option<ChildStdin>,
    lines: LineReader<ChildStdout>,
    pid: Option<u32>,
    cwd: PathBuf,
    stderr: Option<JoinHandle<String>>,
}

impl Drop for Live {
    fn drop(&mut self) {
        // Whatever it started goes with it.
        signal_group(self.pid, libc::SIGKILL);
    }
}

/// How long the end of a process's stderr is waited for once it has exited.
const TAIL_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// A process started ahead, held by a task of its own until a task takes it: one that
/// dies while it waits is reaped (and logged) then, not when the instance's next task
/// comes, which could be hours later.
struct Parked {
    take: oneshot::Sender<()>,
    /// The process when taken; `None` when it ended first.
    held: JoinHandle<Option<Live>>,
}

impl Parked {
    fn park(mut live: Live, instance: &str) -> Self {
        let (take, taken) = oneshot::channel();
        let instance = instance.to_owned();
        let held = tokio::spawn(async move {
            tokio::select! {
                // Taken, or the slot is gone (the process then goes with `live`).
                _ = taken => Some(live),
                status = live.child.wait() => {
                    let tail = live.stderr.take();
                    // What it started goes with it, and with them its hold on stderr.
                    drop(live);
                    tokio::spawn(async move {
                        let stderr = match tail {
                            Some(tail) => tokio::time::timeout(TAIL_WAIT, tail)
                                .await
                                .ok()
                                .and_then(Result::ok)
                                .unwrap_or_default(),
                            None => String::new(),
                        };
                        tracing::warn!(
                            instance,
                            status = ?status,
                            stderr = stderr.trim_end(),
                            "the instance's process started ahead ended before its task; the \
                             next task starts one of its own"
                        );
                    });
                    None
                }
            }
        });
        Self { take, held }
    }

    /// The process, if it is still running.
    async fn take(self) -> Option<Live> {
        let _ = self.take.send(());
        self.held.await.ok().flatten()
    }

    /// Ends the process as [`Live::leave`] does.
    fn leave(self, grace: std::time::Duration) -> JoinHandle<()> {
        tokio::spawn(async move {
            if let Some(live) = self.take().await {
                let _ = live.leave(grace).await;
            }
        })
    }
}

impl Live {
    /// Ends the process: stdin closed, which a CLI between turns answers by saving its
    /// session and exiting; after `grace`, SIGTERM to its group, then SIGKILL.
    fn leave(mut self, grace: std::time::Duration) -> JoinHandle<()> {
        tokio::spawn(async move {
            drop(self.stdin.take());
            if tokio::time::timeout(grace, self.child.wait())
                .await
                .is_err()
            {
                let _ = terminate(&mut self.child, self.pid, grace).await;
            }
        })
    }
}

impl ProcessAgent {
    /// Whether a task can run on its instance's process started ahead: it needs no flags
    /// of its own, and it is a first attempt (a retry starts from a clean process).
    pub(super) fn fits_live(&self, r: &RunRequest) -> bool {
        self.command.long_lived
            && r.command.is_none()
            && r.model.is_none()
            && r.allowed_tools.is_empty()
            && r.max_turns.is_none()
            && r.permission_mode.is_none()
            && r.options == AgentOptions::default()
            && r.max_budget_usd.is_none()
            && r.output_schema.is_none()
            && r.isolation == Isolation::None
            && r.attempt <= 1
    }

    /// Starts an instance's first process ahead of its first task.
    pub(super) fn prepare_live(&self, instance: &str, account: &str, dir: PathBuf) {
        if !self.command.long_lived {
            return;
        }
        // A task's directory is resolved the same way before it is compared with this one.
        let Ok(dir) = self.confine_dir(&dir) else {
            return;
        };
        let agent = self.clone();
        let instance = instance.to_owned();
        let account = account.to_owned();
        tokio::spawn(async move {
            let slot = agent.slot(&instance);
            let mut slot = slot.lock().await;
            if slot.spare.is_none() {
                agent.start_spare((&instance, &account), &mut slot, &dir);
            }
        });
    }

    /// Ends an instance's processes: stdin closed, then SIGTERM and SIGKILL to each group.
    pub(super) fn retire_live(&self, instance: &str) -> Option<tokio::task::JoinHandle<()>> {
        let slot = self
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(instance)?;
        let grace = self.command.stop_grace;
        Some(tokio::spawn(async move {
            let mut slot = slot.lock().await;
            if let Some(spare) = slot.spare.take() {
                slot.leaving.push(spare.leave(grace));
            }
            for leaving in std::mem::take(&mut slot.leaving) {
                let _ = leaving.await;
            }
        }))
    }

    /// Ends every instance's processes and waits until they are gone.
    pub(super) async fn shutdown_live(&self) {
        let instances: Vec<String> = self
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        for stopping in instances.iter().filter_map(|i| self.retire_live(i)) {
            let _ = stopping.await;
        }
    }

    fn slot(&self, instance: &str) -> Arc<tokio::sync::Mutex<Slot>> {
        let mut slots = self
            .live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        slots.entry(instance.to_owned()).or_default().clone()
    }

    /// Whether `slot` is still the instance's (it was not retired meanwhile).
    fn current(&self, instance: &str, slot: &Arc<tokio::sync::Mutex<Slot>>) -> bool {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(instance)
            .is_some_and(|s| Arc::ptr_eq(s, slot))
    }

    /// Starts the instance's next process in `dir`; a failure to start is logged, and the
    /// next task starts one of its own (and reports the failure).
    fn start_spare(&self, (instance, account): (&str, &str), slot: &mut Slot, dir: &Path) {
        slot.leaving.retain(|leaving| !leaving.is_finished());
        match self.spawn_live((instance, account), dir) {
            Ok(live) => slot.spare = Some(Parked::park(live, instance)),
            Err(e) => {
                tracing::warn!(instance, cause = %e, "cannot start the instance's next process");
            }
        }
    }

    fn spawn_live(&self, (instance, account): (&str, &str), dir: &Path) -> std::io::Result<Live> {
        let spec = &self.command;
        let mut cmd = Command::new(&spec.program);
        cmd.args(&spec.leading_args).args([
            "-p",
            "--input-format",
            "stream-json",
            "--output-format",
            "stream-json",
            "--verbose",
            "--session-id",
            &uuid::Uuid::new_v4().to_string(),
        ]);
        cmd.args(PERMISSION_FLAGS);
        // Tasks with options of their own never run here: no variables of theirs.
        prepare(
            &self.command,
            &mut cmd,
            dir,
            &Default::default(),
            (instance, account),
        );
        let mut child = cmd.spawn()?;
        let stdin = child.stdin.take();
        let lines = LineReader::new(child.stdout.take().expect("stdout is piped"));
        let stderr = child.stderr.take().map(|e| tokio::spawn(read_tail(e)));
        Ok(Live {
            pid: child.id(),
            child,
            stdin,
            lines,
            cwd: dir.to_owned(),
            stderr,
        })
    }

    /// The instance's spare if it can take this task: started in its directory, alive,
    /// and (with a memory limit) not grown past it while it waited.
    async fn take_spare(&self, slot: &mut Slot, dir: &Path) -> Option<Live> {
        let mut spare = slot.spare.take()?.take().await?;
        let alive = matches!(spare.child.try_wait(), Ok(None));
        let small = match (self.command.memory_limit, spare.pid) {
            (Some(limit), Some(pid)) => {
                resources::group_usage(pid).is_none_or(|u| u.rss_bytes <= limit)
            }
            _ => true,
        };
        if spare.cwd == dir && alive && small {
            return Some(spare);
        }
        slot.leaving.push(spare.leave(self.command.stop_grace));
        None
    }

    pub(super) async fn run_live(
        self,
        request: RunRequest,
        sink: OutputSink,
        stop: StopSignal,
    ) -> RunOutcome {
        self.exit_of_live(request, sink, stop).await.outcome()
    }

    async fn exit_of_live(
        self,
        request: RunRequest,
        sink: OutputSink,
        mut stop: StopSignal,
    ) -> ProcessExit {
        let started = Instant::now();
        let mut outcome = ProcessExit::default();
        let instance = request.instance_id.as_str();
        let dir = request.working_directory.as_path();
        let handle = self.slot(instance);
        let mut slot = handle.lock().await;
        let mut live = match self.take_spare(&mut slot, dir).await {
            Some(live) => live,
            // None ready (the first task, another directory, a process that died): a cold
            // start.
            None => match self.spawn_live((instance, &request.account), dir) {
                Ok(live) => live,
                Err(e) => {
                    outcome.failure = Some(spawn_error(&self.command, &e));
                    return outcome;
                }
            },
        };
        sink.started(live.pid).await;
        let message =
            json!({ "type": "user", "message": { "role": "user", "content": request.prompt } });
        let sent = match live.stdin.as_mut() {
            Some(stdin) => stdin
                .write_all(format!("{message}\n").as_bytes())
                .await
                .is_ok(),
            None => false,
        };
        // Whether the process is gone or must go now, its exit being part of the verdict.
        let mut ended = !sent;
        let mut control = Control::new(&request.working_directory);
        while !ended {
            tokio::select! {
                line = live.lines.next() => match line {
                    Ok(Some(line)) => {
                        if let Line::Text(text) = &line {
                            control.on_line(&sink, text).await;
                        }
                        forward(&sink, &mut outcome, None, line).await;
                        if outcome.result.is_some() {
                            // The turn ended as a clean exit would.
                            outcome.exit_code = Some(0);
                            break;
                        }
                        // Its output is out of step (the line may have been the result):
                        // the turn cannot end on its own, so the process goes now.
                        ended = outcome.line_too_long;
                    }
                    Ok(None) | Err(_) => ended = true,
                },
                answer = control.next_answer() => {
                    let written = match live.stdin.as_mut() {
                        Some(stdin) => stdin.write_all(answer.as_bytes()).await.is_ok(),
                        None => false,
                    };
                    ended = !written;
                }
                reason = &mut stop => {
                    outcome.stopped = Some(reason);
                    let answered =
                        interrupt(&mut live, &sink, &mut outcome, self.command.stop_grace).await;
                    ended = !(answered
                        && matches!(reason, StopReason::Cancelled | StopReason::TimedOut(_)));
                    break;
                }
            }
        }
        if ended {
            // The process is gone or must go: stdin closed, then the group stopped.
            drop(live.stdin.take());
            if outcome.stopped.is_some() || !matches!(live.child.try_wait(), Ok(Some(_))) {
                let status = terminate(&mut live.child, live.pid, self.command.stop_grace).await;
                if let Ok(status) = status {
                    use std::os::unix::process::ExitStatusExt;
                    outcome.exit_code = status.code();
                    outcome.signal = status.signal();
                }
            } else if let Ok(Some(status)) = live.child.try_wait() {
                use std::os::unix::process::ExitStatusExt;
                outcome.exit_code = status.code();
                outcome.signal = status.signal();
            }
            if let Some(stderr) = live.stderr.take()
                && let Ok(Ok(tail)) = tokio::time::timeout(TAIL_WAIT, stderr).await
            {
                outcome.stderr_tail = tail;
            }
        } else {
            // The turn is over and its conversation is this task's alone: the process
            // saves it (for a later `--resume`) and exits while the next task goes on.
            slot.leaving.push(live.leave(self.command.stop_grace));
        }
        // The instance's next process, ready before its next task arrives (unless the
        // instance is going, or the server is).
        let stopping = matches!(
            outcome.stopped,
            Some(StopReason::Shutdown | StopReason::InstanceTerminated)
        );
        if !stopping && self.current(instance, &handle) {
            self.start_spare((instance, &request.account), &mut slot, dir);
        }
        outcome.duration = started.elapsed();
        outcome
    }
}

/// Asks the CLI to interrupt its turn and waits up to `grace` for the turn's `result`.
/// Returns whether the process answered (and may be kept).
async fn interrupt(
    live: &mut Live,
    sink: &OutputSink,
    outcome: &mut ProcessExit,
    grace: std::time::Duration,
) -> bool {
    let request = json!({
        "type": "control_request",
        "request_id": uuid::Uuid::new_v4().to_string(),
        "request": { "subtype": "interrupt" },
    });
    let Some(stdin) = live.stdin.as_mut() else {
        return false;
    };
    if stdin
        .write_all(format!("{request}\n").as_bytes())
        .await
        .is_err()
    {
        return false;
    }
    let answered = tokio::time::timeout(grace, async {
        while let Ok(Some(line)) = live.lines.next().await {
            let before = outcome.result.is_some();
            forward(sink, outcome, None, line).await;
            if !before && outcome.result.is_some() {
                return true;
            }
        }
        false
    })
    .await;
    matches!(answered, Ok(true))
}
