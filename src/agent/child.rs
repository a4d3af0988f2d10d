//! What every way of running needs of a child process: a clean environment, its own
//! process group, death with the server, stdout read as bounded lines and forwarded as they
//! come, stderr's tail, a stop that escalates from SIGTERM to SIGKILL for the whole group,
//! and the end of a group a crashed server left behind.

use std::{collections::BTreeMap, io, path::Path, process::Stdio, time::Duration};

use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader},
    process::{Child, Command},
};

use super::{
    AgentCommand, passed,
    protocol::{self, cut},
    resources,
    verdict::ProcessExit,
};
use crate::engine::{
    AgentOutput,
    ports::{Leftover, OutputSink},
};

/// The task a process per task runs (set for its whole tree).
pub(super) const TASK_VAR: &str = "SWARM_TASK_ID";
/// The attempt it is, from 1.
pub(super) const ATTEMPT_VAR: &str = "SWARM_ATTEMPT";
/// The instance a process belongs to (set for every agent process).
pub(super) const INSTANCE_VAR: &str = "SWARM_INSTANCE_ID";

/// Longest stdout line read. A longer one ends an agent's run at once (a protocol error: it
/// may have been the result); a shell step's is skipped (its result keeps 1 MiB anyway).
pub(super) const MAX_LINE: usize = 16 * 1024 * 1024;
/// Bytes of a shell step's stdout kept as its result.
const MAX_STDOUT_RESULT: usize = 1024 * 1024;
/// Bytes of stderr kept for error messages.
const STDERR_TAIL: usize = 4096;
/// How long to wait for the pipes to close once the process is gone.
pub(super) const DRAIN_LIMIT: Duration = Duration::from_secs(2);

/// A clean environment by construction (then the agent's variables, the account's, the
/// task's `env`, then the variables naming the run), stdio piped, its own process group,
/// and death with the server.
pub(super) fn prepare(
    command: &AgentCommand,
    cmd: &mut Command,
    dir: &Path,
    env: &BTreeMap<String, String>,
    (instance, account): (&str, &str),
) {
    let account_env = command.accounts.get(account).into_iter().flatten();
    cmd.env_clear()
        .envs(std::env::vars().filter(|(name, _)| passed(name)))
        .envs(command.env.iter().map(|(k, v)| (k, v)))
        .envs(account_env.map(|(k, v)| (k, v)))
        .envs(env)
        // Also how a server started after a crash recognises the group as its own.
        .env(INSTANCE_VAR, instance)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    die_with_the_server(cmd);
}

/// The kernel sends the child SIGKILL when the server dies, even by SIGKILL itself, which
/// runs no code of ours (`PR_SET_PDEATHSIG`).
///
/// The signal comes when the *thread* that spawned the child ends, not the process. Tokio
/// spawns on the calling thread (`Command::spawn` forks there, synchronously); agents are
/// spawned from async tasks, so on a runtime worker thread, and those live as long as the
/// runtime. A child must never be spawned from `spawn_blocking` or `block_in_place`: those
/// threads end when idle and would take the agent with them.
///
/// Only the process started here gets the signal, not what it starts (a shell step's
/// commands, the tools of an agent): those are ended by the next start, which kills what is
/// left of the recorded process group before the task runs again ([`reap`]).
fn die_with_the_server(cmd: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        let server = std::process::id();
        // SAFETY: between fork and exec the closure makes only async-signal-safe calls
        // (prctl, getppid) and allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(io::Error::last_os_error());
                }
                // The server died between the fork and the prctl: nothing would signal.
                if u32::try_from(libc::getppid()).ok() != Some(server) {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}

/// Ends what is left of a run from before a restart: the group is killed if one of its
/// processes is recognisably ours, because process ids are reused (after a reboot, a long
/// downtime) and a group that merely has the recorded number may be anyone's. Ours carry
/// the task's id (a process per task, and what it started) or, for a long-lived process,
/// which has no task id, the instance's. Returns how many processes were left.
pub(super) fn reap(leftover: &Leftover) -> usize {
    let members = resources::group_members(leftover.process_group);
    let ours = members.iter().any(|pid| {
        let environ = resources::environ(*pid);
        let var = |name: &str| {
            environ.iter().find_map(|entry| {
                entry
                    .strip_prefix(name.as_bytes())
                    .and_then(|rest| rest.strip_prefix(b"="))
            })
        };
        match var(TASK_VAR) {
            Some(task) => task == leftover.task_id.as_bytes(),
            None => leftover
                .instance_id
                .as_deref()
                .is_some_and(|instance| var(INSTANCE_VAR) == Some(instance.as_bytes())),
        }
    });
    if !ours {
        return 0;
    }
    signal_group(Some(leftover.process_group), libc::SIGKILL);
    members.len()
}

/// Sends one line on as an event; keeps the result line (agent) or the text (shell step).
pub(super) async fn forward(
    sink: &OutputSink,
    outcome: &mut ProcessExit,
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
            if let Some(report) = parsed.limit.clone() {
                sink.limit(report).await;
            }
            if parsed.api_retry {
                sink.api_retry().await;
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
        (Line::TooLong, shell) => {
            outcome.line_too_long = shell.is_none();
            AgentOutput {
                message_type: "unparsed".into(),
                text: format!("a line longer than {MAX_LINE} bytes was skipped"),
                ..AgentOutput::default()
            }
        }
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

    /// The process a command starts is SIGKILLed when the thread that started it ends;
    /// a thread ends as a server does (`tests/restart.rs` kills a whole server).
    #[cfg(target_os = "linux")]
    #[test]
    fn a_child_dies_with_the_thread_that_started_it() {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        let pid = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    let _entered = runtime.enter();
                    let mut cmd = Command::new("sleep");
                    cmd.arg("60");
                    die_with_the_server(&mut cmd);
                    // Set between fork and exec, so set once `spawn` returns.
                    cmd.spawn().unwrap().id().unwrap()
                })
                .join()
                .unwrap()
        });
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor; the
        // process is not reaped (nothing waits for it), so the pid is still its own.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
        assert!(fd >= 0, "pidfd_open: {}", io::Error::last_os_error());
        // SAFETY: the descriptor was just opened and is owned here only.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut poll = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd; the descriptor is readable once the process has ended.
        let ready = unsafe { libc::poll(&mut poll, 1, 20_000) };
        assert_eq!(
            ready, 1,
            "process {pid} outlived the thread that started it"
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
