//! One CLI process per task, in print mode with stream-json input: the prompt goes to
//! stdin as one user message, stream-json lines come back on stdout and are forwarded as
//! they arrive, and questions about tool calls (`can_use_tool`) are answered on stdin until
//! the `result` line, when stdin closes and the process ends. The result comes from the
//! `result` line and the exit code. The process leads its own process group, so a stop
//! (cancel, timeout) reaches everything it started.

use std::{os::unix::process::ExitStatusExt, time::Instant};

use tokio::{io::AsyncWriteExt, process::Command};

use super::{
    ProcessAgent,
    child::{
        ATTEMPT_VAR, DRAIN_LIMIT, Line, LineReader, TASK_VAR, forward, prepare, read_tail,
        signal_group, spawn_error, terminate,
    },
    control::{Control, PERMISSION_FLAGS},
    protocol::ResultLine,
    verdict::ProcessExit,
    worktree::Worktree,
};
use crate::engine::{
    Isolation,
    ports::{OutputSink, RunOutcome, RunRequest, StopSignal},
};

impl ProcessAgent {
    fn build(&self, request: &RunRequest) -> Command {
        let spec = &self.command;
        let mut cmd = match &request.command {
            Some(shell) => {
                let mut cmd = Command::new("sh");
                cmd.arg("-c").arg(shell);
                cmd
            }
            None => {
                let mut cmd = Command::new(&spec.program);
                cmd.args(&spec.leading_args)
                    .args([
                        "-p",
                        "--input-format",
                        "stream-json",
                        "--output-format",
                        "stream-json",
                        "--verbose",
                    ])
                    .args(PERMISSION_FLAGS);
                if let Some(model) = &request.model {
                    cmd.arg("--model").arg(model);
                }
                if !request.allowed_tools.is_empty() {
                    cmd.arg("--allowedTools")
                        .arg(request.allowed_tools.join(","));
                }
                if let Some(turns) = request.max_turns {
                    cmd.arg("--max-turns").arg(turns.to_string());
                }
                if let Some(mode) = &request.permission_mode {
                    cmd.arg("--permission-mode").arg(mode);
                }
                let o = &request.options;
                match &o.resume_session {
                    // The `=` form: an id starting with `-` cannot become a flag.
                    Some(session) => {
                        cmd.arg(format!("--resume={session}"));
                        if o.fork_session {
                            cmd.arg("--fork-session");
                        }
                    }
                    // A fresh session whose id is known before the first line arrives.
                    None => {
                        cmd.arg("--session-id")
                            .arg(uuid::Uuid::new_v4().to_string());
                    }
                }
                if let Some(model) = &o.fallback_model {
                    cmd.arg("--fallback-model").arg(model);
                }
                if !o.disallowed_tools.is_empty() {
                    cmd.arg("--disallowedTools")
                        .arg(o.disallowed_tools.join(","));
                }
                if let Some(prompt) = &o.append_system_prompt {
                    // Free text may start with `-`: the `=` form keeps it a value.
                    cmd.arg(format!("--append-system-prompt={prompt}"));
                }
                if let Some(config) = &o.mcp_config {
                    cmd.arg("--mcp-config").arg(config);
                }
                if o.strict_mcp_config {
                    cmd.arg("--strict-mcp-config");
                }
                for dir in &o.add_dirs {
                    cmd.arg(format!("--add-dir={dir}"));
                }
                // What is left of the task's, workflow's and swarm's budgets: the CLI stops
                // itself there (`error_max_budget_usd`).
                if let Some(budget) = request.max_budget_usd {
                    cmd.arg("--max-budget-usd").arg(budget.to_string());
                }
                if let Some(schema) = &request.output_schema {
                    // JSON text starts with `{` (or is `true`/`false`); the `=` form keeps it
                    // a value anyway.
                    cmd.arg(format!("--json-schema={schema}"));
                }
                cmd
            }
        };
        prepare(
            &self.command,
            &mut cmd,
            &request.working_directory,
            &request.options.env,
            (&request.instance_id, &request.account),
        );
        // Which task and which attempt this is, for scripts and the simulation.
        cmd.env(TASK_VAR, request.task_id.as_str())
            .env(ATTEMPT_VAR, request.attempt.to_string());
        cmd
    }

    pub(super) async fn run_process(
        self,
        request: RunRequest,
        sink: OutputSink,
        stop: StopSignal,
    ) -> RunOutcome {
        self.exit_of_process(request, sink, stop).await.outcome()
    }

    async fn exit_of_process(
        self,
        request: RunRequest,
        sink: OutputSink,
        mut stop: StopSignal,
    ) -> ProcessExit {
        let started = Instant::now();
        let mut outcome = ProcessExit {
            output_schema: request.output_schema.clone(),
            ..ProcessExit::default()
        };
        let worktree = match request.isolation {
            Isolation::None => None,
            Isolation::Worktree => {
                let made = {
                    let _one_at_a_time = self.worktrees.lock().await;
                    Worktree::create(&request.working_directory, &request.task_id).await
                };
                match made {
                    Ok(worktree) => Some(worktree),
                    Err(e) => {
                        outcome.failure = Some(e);
                        return outcome;
                    }
                }
            }
        };
        let mut request = request;
        if let Some(worktree) = &worktree {
            request.working_directory = worktree.run_in.clone();
            outcome.branch = Some(worktree.branch.clone());
        }
        let mut child = match self.build(&request).spawn() {
            Ok(child) => child,
            Err(e) => {
                outcome.failure = Some(spawn_error(&self.command, &e));
                return outcome;
            }
        };
        let pid = child.id();
        sink.started(pid).await;

        // A shell step's stdout is its result; the agent's is stream-json.
        let mut stdout_text = request.command.as_ref().map(|_| String::new());
        outcome.shell = request.command.is_some();
        // A shell step reads nothing; the agent reads its prompt as one user message and
        // its answers to `can_use_tool` until the result (closing stdin earlier would
        // refuse every question).
        let mut stdin = child.stdin.take().filter(|_| request.command.is_none());
        if let Some(pipe) = stdin.as_mut() {
            let message = serde_json::json!({
                "type": "user",
                "message": { "role": "user", "content": request.prompt },
            });
            let line = format!("{message}\n");
            tokio::select! {
                written = pipe.write_all(line.as_bytes()) => if written.is_err() {
                    stdin = None;
                },
                reason = &mut stop => outcome.stopped = Some(reason),
            }
        }
        let mut control = Control::new(&request.working_directory);
        let stderr = child.stderr.take().map(|e| tokio::spawn(read_tail(e)));
        let mut lines = LineReader::new(child.stdout.take().expect("stdout is piped"));

        let mut exited = None;
        while outcome.stopped.is_none() {
            tokio::select! {
                line = lines.next() => match line {
                    Ok(Some(line)) => {
                        if let (Line::Text(text), None) = (&line, &stdout_text) {
                            control.on_line(&sink, text).await;
                        }
                        forward(&sink, &mut outcome, stdout_text.as_mut(), line).await;
                        if outcome.line_too_long {
                            break;
                        }
                        if outcome.result.is_some() {
                            // The turn is over: the process ends once its input does.
                            stdin = None;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        outcome.failure = Some(format!("reading the agent's output failed: {e}"));
                        break;
                    }
                },
                status = child.wait(), if exited.is_none() => {
                    exited = Some(status);
                    // Whatever it left behind goes with it; this also closes the pipes of
                    // any grandchild still holding them.
                    signal_group(pid, libc::SIGKILL);
                }
                answer = control.next_answer(), if stdin.is_some() => {
                    if let Some(pipe) = stdin.as_mut()
                        && pipe.write_all(answer.as_bytes()).await.is_err()
                    {
                        stdin = None;
                    }
                }
                reason = &mut stop => {
                    outcome.stopped = Some(reason);
                    break;
                }
            }
        }
        drop(stdin);
        let status = match exited {
            Some(status) => status,
            // Stopped from outside, or its output cannot be followed any more.
            None if outcome.stopped.is_some() || outcome.line_too_long => {
                terminate(&mut child, pid, self.command.stop_grace).await
            }
            None => {
                // Stdout closed: the process is ending. It may still be stopped meanwhile.
                tokio::select! {
                    status = child.wait() => status,
                    reason = &mut stop => {
                        outcome.stopped = Some(reason);
                        terminate(&mut child, pid, self.command.stop_grace).await
                    }
                }
            }
        };
        signal_group(pid, libc::SIGKILL);
        if outcome.stopped.is_none() && !outcome.line_too_long {
            // Lines still in the pipe after the exit.
            let _ = tokio::time::timeout(DRAIN_LIMIT, async {
                while let Ok(Some(line)) = lines.next().await {
                    forward(&sink, &mut outcome, stdout_text.as_mut(), line).await;
                }
            })
            .await;
        }
        match status {
            Ok(status) => {
                outcome.exit_code = status.code();
                outcome.signal = status.signal();
            }
            Err(e) => outcome.failure = Some(format!("waiting for the agent failed: {e}")),
        }
        if let (Some(text), None, Some(code)) = (stdout_text, outcome.stopped, outcome.exit_code) {
            outcome.result = Some(ResultLine {
                text: text.trim_end().to_owned(),
                is_error: code != 0,
                reason: format!("exit code {code}"),
                ..ResultLine::default()
            });
        }
        if let Some(stderr) = stderr
            && let Ok(Ok(tail)) = tokio::time::timeout(DRAIN_LIMIT, stderr).await
        {
            outcome.stderr_tail = tail;
        }
        if let Some(worktree) = worktree {
            let _one_at_a_time = self.worktrees.lock().await;
            match worktree
                .finish(&request.task_id, self.command.keep_worktrees)
                .await
            {
                Ok(stat) => outcome.diff_stat = stat,
                Err(e) => outcome.stderr_tail = format!("{}\nworktree: {e}", outcome.stderr_tail),
            }
        }
        outcome.duration = started.elapsed();
        outcome
    }
}
