//! Runs a task as a Claude Code CLI process in print mode: the prompt goes to stdin,
//! stream-json lines come back on stdout and are forwarded as they arrive; the result
//! comes from the `result` line and the exit code. The process leads its own process
//! group, so a stop (cancel, timeout) reaches everything it started: SIGTERM to the
//! group, then SIGKILL after a grace period.

use std::{
    io,
    os::unix::process::ExitStatusExt,
    path::PathBuf,
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader},
    process::{Child, Command},
};

use super::{
    live,
    protocol::{self, cut},
    resources,
    worktree::Worktree,
};
use crate::engine::{
    events::AgentOutput,
    run::{Agent, BoxFuture, ResourceUse, RunRequest, StopSignal},
    scheduler::OutputSink,
    task::{Isolation, ResultLine, RunOutcome},
};

/// Longest stdout line read; longer ones are reported and skipped.
const MAX_LINE: usize = 16 * 1024 * 1024;
/// Bytes of a shell step's stdout kept as its result.
const MAX_STDOUT_RESULT: usize = 1024 * 1024;
/// Bytes of stderr kept for error messages.
const STDERR_TAIL: usize = 4096;
/// How long to wait for the pipes to close once the process is gone.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);

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
    /// Keep one CLI process per instance (`--input-format stream-json`) for the tasks that
    /// need no flags of their own; otherwise a process per task.
    pub long_lived: bool,
    /// Leave a task's git worktree in place when it ends (its branch is kept either way).
    pub keep_worktrees: bool,
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
    pub(super) command: Arc<AgentCommand>,
    /// Each instance's long-lived CLI process, when it has one.
    pub(super) live: Arc<live::Slots>,
}

impl ProcessAgent {
    pub fn new(command: AgentCommand) -> Self {
        Self {
            command: Arc::new(command),
            live: Arc::default(),
        }
    }

    /// A clean environment by construction, stdio piped, its own process group.
    pub(super) fn prepare(&self, cmd: &mut Command, dir: &std::path::Path) {
        cmd.env_clear()
            .envs(std::env::vars().filter(|(name, _)| passed(name)))
            .envs(self.command.env.iter().map(|(k, v)| (k, v)))
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
    }

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
                cmd.args(&spec.leading_args).args([
                    "-p",
                    "--output-format",
                    "stream-json",
                    "--verbose",
                ]);
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
                    cmd.arg("--append-system-prompt").arg(prompt);
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
                if let Some(budget) = o.max_budget_usd {
                    cmd.arg("--max-budget-usd").arg(budget.to_string());
                }
                cmd
            }
        };
        self.prepare(&mut cmd, &request.working_directory);
        // Which task and which attempt this is, for scripts and the simulation.
        cmd.env("SWARM_TASK_ID", &request.task_id)
            .env("SWARM_ATTEMPT", request.attempt.to_string())
            .envs(&request.options.env);
        cmd
    }

    async fn run_process(
        self,
        request: RunRequest,
        sink: OutputSink,
        mut stop: StopSignal,
    ) -> RunOutcome {
        let started = Instant::now();
        let mut outcome = RunOutcome::default();
        let worktree = match request.isolation {
            Isolation::None => None,
            Isolation::Worktree => {
                match Worktree::create(&request.working_directory, &request.task_id).await {
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
        if let Some(mut stdin) = child.stdin.take() {
            let prompt = if request.command.is_some() {
                String::new()
            } else {
                request.prompt.clone()
            };
            // A child that never reads its stdin must not block us.
            tokio::spawn(async move {
                let _ = stdin.write_all(prompt.as_bytes()).await;
            });
        }
        let stderr = child.stderr.take().map(|e| tokio::spawn(read_tail(e)));
        let mut lines = LineReader::new(child.stdout.take().expect("stdout is piped"));

        let mut exited = None;
        loop {
            tokio::select! {
                line = lines.next() => match line {
                    Ok(Some(line)) => forward(&sink, &mut outcome, stdout_text.as_mut(), line).await,
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
                reason = &mut stop => {
                    outcome.stopped = Some(reason);
                    break;
                }
            }
        }
        let status = match exited {
            Some(status) => status,
            None if outcome.stopped.is_some() => {
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
        if outcome.stopped.is_none() {
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

impl Agent for ProcessAgent {
    fn run(
        &self,
        request: RunRequest,
        sink: OutputSink,
        stop: StopSignal,
    ) -> BoxFuture<RunOutcome> {
        if !request.working_directory.is_dir() {
            let failure = format!(
                "working directory {} does not exist",
                request.working_directory.display()
            );
            return Box::pin(async move {
                RunOutcome {
                    failure: Some(failure),
                    ..RunOutcome::default()
                }
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

    fn recycle(&self, instance: &str) {
        self.recycle_live(instance);
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
}

/// Sends one line on as an event; keeps the result line (agent) or the text (shell step).
pub(super) async fn forward(
    sink: &OutputSink,
    outcome: &mut RunOutcome,
    stdout_text: Option<&mut String>,
    line: Line,
) {
    let output = match (line, stdout_text) {
        (Line::Text(text), Some(collected)) => {
            if collected.len() + text.len() < MAX_STDOUT_RESULT {
                collected.push_str(&text);
                collected.push('\n');
            }
            AgentOutput {
                message_type: "stdout".into(),
                truncated: text.len() > AgentOutput::MAX_RAW,
                raw: cut(&text, AgentOutput::MAX_RAW).to_owned(),
                text,
                ..AgentOutput::default()
            }
        }
        (Line::Text(text), None) => {
            let parsed = protocol::parse_line(&text);
            if let Some(until) = parsed.limited_until {
                sink.rate_limited(std::time::UNIX_EPOCH + Duration::from_secs(until))
                    .await;
            }
            match parsed.output.message_type.as_str() {
                "unparsed" => outcome.unparsed += 1,
                "assistant" if !parsed.output.subtype.is_empty() => {
                    outcome.messages += 1;
                    outcome.agent_error = Some(parsed.output.subtype.clone());
                }
                _ => outcome.messages += 1,
            }
            if let Some(result) = parsed.result {
                outcome.result = Some(result);
            }
            parsed.output
        }
        (Line::TooLong, _) => AgentOutput {
            message_type: "unparsed".into(),
            text: format!("a line longer than {MAX_LINE} bytes was skipped"),
            ..AgentOutput::default()
        },
    };
    sink.output(output).await;
}

pub(super) fn spawn_error(command: &AgentCommand, e: &io::Error) -> String {
    let program = command.program.display();
    if e.kind() == io::ErrorKind::NotFound {
        format!(
            "agent command `{program}` not found: install Claude Code \
             (`npm install -g @anthropic-ai/claude-code@2.1.332`), point `agent.command` \
             (or SWARM_CLAUDE_COMMAND) at it, or run with `--agent simulated`"
        )
    } else {
        format!("could not start agent command `{program}`: {e}")
    }
}

/// SIGTERM to the group, SIGKILL after `grace`; returns the exit status.
pub(super) async fn terminate(
    child: &mut Child,
    pid: Option<u32>,
    grace: Duration,
) -> io::Result<std::process::ExitStatus> {
    signal_group(pid, libc::SIGTERM);
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            signal_group(pid, libc::SIGKILL);
            child.wait().await
        }
    }
}

/// Signals the process group led by `pid` (the child was started with `process_group(0)`).
pub(super) fn signal_group(pid: Option<u32>, signal: i32) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        // SAFETY: killpg has no memory effects; a group that is already gone gives ESRCH.
        unsafe {
            libc::killpg(pid, signal);
        }
    }
}

pub(super) async fn read_tail(mut stderr: impl AsyncRead + Unpin) -> String {
    let mut tail: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = stderr.read(&mut buf).await {
        if n == 0 {
            break;
        }
        tail.extend_from_slice(&buf[..n]);
        if tail.len() > STDERR_TAIL {
            tail.drain(..tail.len() - STDERR_TAIL);
        }
    }
    let text = String::from_utf8_lossy(&tail);
    cut(text.trim(), STDERR_TAIL).to_owned()
}

pub(super) enum Line {
    Text(String),
    TooLong,
}

/// Reads newline-separated lines of bounded length. Cancel-safe: a partial line survives
/// a `select!` that picks another branch.
pub(super) struct LineReader<R> {
    reader: BufReader<R>,
    buf: Vec<u8>,
    overflow: bool,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    pub(super) fn new(reader: R) -> Self {
        Self {
            reader: BufReader::with_capacity(64 * 1024, reader),
            buf: Vec::new(),
            overflow: false,
        }
    }

    pub(super) async fn next(&mut self) -> io::Result<Option<Line>> {
        loop {
            let available = self.reader.fill_buf().await?;
            if available.is_empty() {
                return Ok(self.take_line());
            }
            let (chunk, found) = match available.iter().position(|b| *b == b'\n') {
                Some(i) => (&available[..i], Some(i + 1)),
                None => (available, None),
            };
            if !self.overflow {
                if self.buf.len() + chunk.len() > MAX_LINE {
                    self.overflow = true;
                    self.buf = Vec::new();
                } else {
                    self.buf.extend_from_slice(chunk);
                }
            }
            let consumed = found.unwrap_or(available.len());
            self.reader.consume(consumed);
            if found.is_some()
                && let Some(line) = self.take_line()
            {
                return Ok(Some(line));
            }
        }
    }

    /// The line gathered so far; `None` when there is none (blank lines are skipped).
    fn take_line(&mut self) -> Option<Line> {
        if std::mem::take(&mut self.overflow) {
            self.buf.clear();
            return Some(Line::TooLong);
        }
        let bytes = std::mem::take(&mut self.buf);
        let text = String::from_utf8_lossy(&bytes);
        let text = text.trim_end_matches('\r');
        (!text.trim().is_empty()).then(|| Line::Text(text.to_owned()))
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

    #[tokio::test]
    async fn lines_are_split_bounded_and_blank_ones_skipped() {
        let big = "y".repeat(MAX_LINE + 1);
        let input = format!("one\n\n two \r\n{big}\nlast");
        let mut reader = LineReader::new(input.as_bytes());
        let mut seen = Vec::new();
        while let Some(line) = reader.next().await.unwrap() {
            seen.push(match line {
                Line::Text(t) => t,
                Line::TooLong => "<too long>".into(),
            });
        }
        assert_eq!(seen, ["one", " two ", "<too long>", "last"]);
    }
}
