//! Long-lived instances: one Claude Code process per instance, started with
//! `--input-format stream-json` and kept alive; each task is one user message on its stdin
//! and ends with its `result` line. Spawning ahead removes start-up time from every task.
//! A cancel or timeout first asks the CLI to interrupt the turn (a `control_request`); the
//! process survives when the CLI answers in time, else stdin is closed and the process
//! group gets SIGTERM, then SIGKILL. A replacement for a process that died resumes its
//! session. Tasks that need flags of their own (model, tools, options, isolation, shell
//! steps) and retries run in a process of their own instead.

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

/// Each instance's process, locked while a task runs on it.
pub type Slots = Mutex<HashMap<String, Arc<tokio::sync::Mutex<Slot>>>>;

/// An instance's process, and what outlives it: the session and directory it had, so a
/// replacement can resume the session.
#[derive(Default)]
pub struct Slot {
    live: Option<Live>,
    session: Option<String>,
    cwd: Option<PathBuf>,
}

/// A running `claude -p --input-format stream-json` process.
pub struct Live {
    child: Child,
    /// Closed (taken) to ask the process to end.
    stdin: Option<ChildStdin>,
    lines: LineReader<ChildStdout>,
    pid: Option<u32>,
    /// The session it was started with, for a replacement to resume.
    session: String,
    cwd: PathBuf,
    stderr: Option<JoinHandle<String>>,
}

impl Drop for Live {
    fn drop(&mut self) {
        // Whatever it started goes with it.
        signal_group(self.pid, libc::SIGKILL);
    }
}

impl ProcessAgent {
    /// Whether a task can run on its instance's long-lived process: it needs no flags of
    /// its own, and it is a first attempt (a retry starts from a clean process).
    pub(super) fn fits_live(&self, r: &RunRequest) -> bool {
        self.command.long_lived
            && r.command.is_none()
            && r.model.is_none()
            && r.allowed_tools.is_empty()
            && r.max_turns.is_none()
            && r.permission_mode.is_none()
            && r.options == AgentOptions::default()
            && r.isolation == Isolation::None
            && r.attempt <= 1
    }

    /// Ends an instance's process: stdin closed, then SIGTERM and SIGKILL to its group.
    pub(super) fn retire_live(&self, instance: &str) -> Option<tokio::task::JoinHandle<()>> {
        let slot = self
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(instance)?;
        let grace = self.command.stop_grace;
        Some(tokio::spawn(async move {
            if let Some(mut live) = slot.lock().await.live.take() {
                drop(live.stdin.take());
                let _ = terminate(&mut live.child, live.pid, grace).await;
            }
        }))
    }

    /// Ends every instance's process and waits until they are gone.
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

    fn spawn_live(
        &self,
        instance: &str,
        dir: &Path,
        resume: Option<&str>,
    ) -> std::io::Result<Live> {
        let spec = &self.command;
        let mut cmd = Command::new(&spec.program);
        cmd.args(&spec.leading_args).args([
            "-p",
            "--input-format",
            "stream-json",
            "--output-format",
            "stream-json",
            "--verbose",
        ]);
        cmd.args(PERMISSION_FLAGS);
        let session = match resume {
            Some(session) => {
                cmd.arg(format!("--resume={session}"));
                session.to_owned()
            }
            None => {
                let session = uuid::Uuid::new_v4().to_string();
                cmd.arg("--session-id").arg(&session);
                session
            }
        };
        // Tasks with options of their own never run here: no variables of theirs.
        prepare(&self.command, &mut cmd, dir, &Default::default(), instance);
        let mut child = cmd.spawn()?;
        let stdin = child.stdin.take();
        let lines = LineReader::new(child.stdout.take().expect("stdout is piped"));
        let stderr = child.stderr.take().map(|e| tokio::spawn(read_tail(e)));
        Ok(Live {
            pid: child.id(),
            child,
            stdin,
            lines,
            session,
            cwd: dir.to_owned(),
            stderr,
        })
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
        let slot = self.slot(&request.instance_id);
        let mut slot = slot.lock().await;
        let usable = slot.live.as_mut().is_some_and(|live| {
            live.cwd == request.working_directory && matches!(live.child.try_wait(), Ok(None))
        });
        if !usable {
            // A process that died is replaced by one resuming its session; one in another
            // directory by a fresh one.
            slot.live = None;
            let resume = slot
                .session
                .clone()
                .filter(|_| slot.cwd.as_ref() == Some(&request.working_directory));
            match self.spawn_live(
                &request.instance_id,
                &request.working_directory,
                resume.as_deref(),
            ) {
                Ok(live) => {
                    slot.session = Some(live.session.clone());
                    slot.cwd = Some(live.cwd.clone());
                    slot.live = Some(live);
                }
                Err(e) => {
                    outcome.failure = Some(spawn_error(&self.command, &e));
                    return outcome;
                }
            }
        }
        let Some(live) = slot.live.as_mut() else {
            outcome.failure = Some("the instance's process is gone".into());
            return outcome;
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
                            // The process lives on; the turn ended as a clean exit would.
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
                    let keep = interrupt(live, &sink, &mut outcome, self.command.stop_grace).await;
                    if keep && matches!(reason, StopReason::Cancelled | StopReason::TimedOut(_)) {
                        outcome.duration = started.elapsed();
                        return outcome;
                    }
                    ended = true;
                }
            }
        }
        if !ended {
            // A process grown past the memory limit restarts before the next task (the
            // replacement resumes its session).
            let pid = slot.live.as_ref().and_then(|l| l.pid);
            if let Some(limit) = self.command.memory_limit
                && let Some(usage) = pid.and_then(resources::group_usage)
                && usage.rss_bytes > limit
                && let Some(mut live) = slot.live.take()
            {
                tracing::warn!(instance = %request.instance_id, rss = usage.rss_bytes, limit, "recycling an instance over its memory limit");
                let grace = self.command.stop_grace;
                tokio::spawn(async move {
                    drop(live.stdin.take());
                    let _ = terminate(&mut live.child, live.pid, grace).await;
                });
            }
        }
        if let Some(mut live) = slot.live.take_if(|_| ended) {
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
                && let Ok(Ok(tail)) =
                    tokio::time::timeout(std::time::Duration::from_secs(2), stderr).await
            {
                outcome.stderr_tail = tail;
            }
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
