//! Tasks: what a client asks for (`TaskSpec`), what the engine tracks (`Task`), and what a
//! run produced (`TaskResult`, `RunOutcome`).

use std::{collections::BTreeMap, path::PathBuf, time::Duration, time::SystemTime};

use super::{
    error::{EngineError, Result},
    workflow::{FanOut, Template},
};

pub type TaskId = String;
pub type InstanceId = String;
pub type WorkflowId = String;

/// Longest client-chosen id.
const MAX_ID_LEN: usize = 128;

/// CRITICAL > HIGH > NORMAL > LOW. The derive order makes `Ord` follow urgency.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
pub enum Priority {
    Low,
    #[default]
    Normal,
    High,
    Critical,
}

impl Priority {
    /// Most urgent first.
    pub const DESCENDING: [Priority; 4] = [
        Priority::Critical,
        Priority::High,
        Priority::Normal,
        Priority::Low,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    /// The lowercase word of the original service and of workflow files.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
            Priority::Critical => "critical",
        }
    }

    /// Accepts `low`/`LOW`/`PRIORITY_LOW` and the like.
    pub fn parse(word: &str) -> Option<Self> {
        let word = word.trim().to_ascii_lowercase();
        let word = word.strip_prefix("priority_").unwrap_or(&word);
        [
            Priority::Low,
            Priority::Normal,
            Priority::High,
            Priority::Critical,
        ]
        .into_iter()
        .find(|p| p.as_str() == word)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum TaskStatus {
    Pending,
    Queued,
    Running,
    Completed,
    Failed,
    Cancelled,
    Skipped,
}

impl TaskStatus {
    pub const ALL: [TaskStatus; 7] = [
        TaskStatus::Pending,
        TaskStatus::Queued,
        TaskStatus::Running,
        TaskStatus::Completed,
        TaskStatus::Failed,
        TaskStatus::Cancelled,
        TaskStatus::Skipped,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Failed | Self::Cancelled | Self::Skipped
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Skipped => "skipped",
        }
    }
}

/// What a client asks to run. Validated by [`TaskSpec::validate`] before the engine takes it.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct TaskSpec {
    /// Client-chosen id; generated when `None`.
    pub id: Option<TaskId>,
    /// Human-readable name; the id when empty.
    pub name: String,
    pub prompt: String,
    /// Directory the agent runs in; the instance's or the server's when `None`.
    pub working_directory: Option<PathBuf>,
    pub priority: Priority,
    /// Stop and fail the task after this long; the configured default when `None`.
    pub timeout: Option<Duration>,
    /// Run only on this instance.
    pub instance_id: Option<InstanceId>,
    /// Tasks that must complete first.
    pub depends_on: Vec<TaskId>,
    /// Free-form data kept with the task.
    pub metadata: BTreeMap<String, String>,
    /// `--model` for the agent.
    pub model: Option<String>,
    /// `--allowedTools` for the agent.
    pub allowed_tools: Vec<String>,
    /// `--max-turns` for the agent.
    pub max_turns: Option<u32>,
    /// Labels for filtering and grouping.
    pub labels: BTreeMap<String, String>,
    /// A shell command to run instead of the agent; its stdout is the result.
    pub command: Option<String>,
    /// Attempts after the first when a run fails.
    pub retries: u32,
    /// Wait before the first retry (doubling, with jitter); one second when `None`.
    pub retry_backoff: Option<Duration>,
    /// `--permission-mode` for the agent.
    pub permission_mode: Option<String>,
    /// What a failure does to the rest of the workflow.
    pub on_failure: FailurePolicy,
    /// How the prompt (or command) is rendered from upstream results when the task starts.
    pub template: Option<Template>,
    /// Run once per item instead of once.
    pub fan_out: Option<FanOut>,
    /// The same key on a later submission returns this task instead of a new one.
    pub idempotency_key: Option<String>,
    /// More Claude Code options.
    pub options: AgentOptions,
    /// Where the task runs: as it is, or in a git worktree of its own.
    pub isolation: Isolation,
}

/// Where a task runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Isolation {
    /// In the working directory as it is.
    #[default]
    None,
    /// In a new git worktree on a branch of its own.
    Worktree,
}

/// Claude Code options passed through as the CLI spells them.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct AgentOptions {
    pub fallback_model: Option<String>,
    pub disallowed_tools: Vec<String>,
    pub append_system_prompt: Option<String>,
    /// A file path or a JSON string.
    pub mcp_config: Option<String>,
    pub strict_mcp_config: bool,
    pub add_dirs: Vec<String>,
    pub max_budget_usd: Option<f64>,
    /// Extra variables for the agent process.
    pub env: BTreeMap<String, String>,
    /// Continue this session (`--resume=<id>`).
    pub resume_session: Option<String>,
    /// With `resume_session`: fork it into a new session.
    pub fork_session: bool,
}

impl AgentOptions {
    fn validate(&self) -> Result<()> {
        for name in self.env.keys() {
            let plain = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !plain {
                return Err(EngineError::invalid(
                    "options.env",
                    format!("{name:?} is not a variable name"),
                ));
            }
            if name == "CLAUDECODE" {
                return Err(EngineError::invalid(
                    "options.env",
                    "CLAUDECODE is never passed to agents",
                ));
            }
        }
        if let Some(session) = &self.resume_session
            && (session.is_empty()
                || !session
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-'))
        {
            return Err(EngineError::invalid(
                "options.resume_session",
                "must be a session id (letters, digits, '-')",
            ));
        }
        if self.fork_session && self.resume_session.is_none() {
            return Err(EngineError::invalid(
                "options.fork_session",
                "needs resume_session",
            ));
        }
        if let Some(budget) = self.max_budget_usd
            && !(budget.is_finite() && budget > 0.0)
        {
            return Err(EngineError::invalid(
                "options.max_budget_usd",
                "must be a positive number",
            ));
        }
        if self
            .disallowed_tools
            .iter()
            .chain(&self.add_dirs)
            .any(|t| t.trim().is_empty())
        {
            return Err(EngineError::invalid(
                "options",
                "tool names and directories must not be empty",
            ));
        }
        Ok(())
    }
}

/// What a task's failure does to the rest of its workflow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum FailurePolicy {
    /// Skip only the tasks that depend on it.
    #[default]
    Continue,
    /// Cancel every unfinished task of the workflow.
    FailFast,
}

/// Permission modes the CLI accepts.
pub const PERMISSION_MODES: [&str; 6] = [
    "acceptEdits",
    "auto",
    "bypassPermissions",
    "manual",
    "dontAsk",
    "plan",
];

impl TaskSpec {
    pub fn new(prompt: impl Into<String>) -> Self {
        Self {
            prompt: prompt.into(),
            ..Self::default()
        }
    }

    /// Rules that need no engine state. Field names are those of the API.
    pub fn validate(&self) -> Result<()> {
        match &self.command {
            Some(command) if command.trim().is_empty() => {
                return Err(EngineError::invalid("command", "must not be empty"));
            }
            Some(_) => {}
            None if self.prompt.trim().is_empty() => {
                return Err(EngineError::invalid("prompt", "must not be empty"));
            }
            None => {}
        }
        if let Some(mode) = &self.permission_mode
            && !PERMISSION_MODES.contains(&mode.as_str())
        {
            return Err(EngineError::invalid(
                "permission_mode",
                format!("{mode:?} is not one of {}", PERMISSION_MODES.join(", ")),
            ));
        }
        if self.retry_backoff == Some(Duration::ZERO) {
            return Err(EngineError::invalid("retry_backoff", "must be positive"));
        }
        if let Some(id) = &self.id {
            validate_id("id", id)?;
        }
        if self.timeout == Some(Duration::ZERO) {
            return Err(EngineError::invalid("timeout", "must be positive"));
        }
        for (i, dep) in self.depends_on.iter().enumerate() {
            if dep.is_empty() {
                return Err(EngineError::invalid(
                    format!("depends_on[{i}]"),
                    "must not be empty",
                ));
            }
            if self.depends_on[..i].contains(dep) {
                return Err(EngineError::invalid(
                    format!("depends_on[{i}]"),
                    format!("{dep:?} is listed twice"),
                ));
            }
            if self.id.as_deref() == Some(dep.as_str()) {
                return Err(EngineError::invalid(
                    format!("depends_on[{i}]"),
                    "a task cannot depend on itself",
                ));
            }
        }
        if self.allowed_tools.iter().any(|t| t.trim().is_empty()) {
            return Err(EngineError::invalid(
                "allowed_tools",
                "tool names must not be empty",
            ));
        }
        if self.max_turns == Some(0) {
            return Err(EngineError::invalid("max_turns", "must be positive"));
        }
        self.options.validate()
    }
}

/// Ids chosen by clients end up in URLs, logs and command lines: keep them plain.
pub fn validate_id(field: &str, id: &str) -> Result<()> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(EngineError::invalid(
            field,
            format!("must be 1 to {MAX_ID_LEN} characters"),
        ));
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(EngineError::invalid(
            field,
            format!("{id:?} may contain only letters, digits, '-', '_' and '.'"),
        ));
    }
    Ok(())
}

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_creation_input_tokens: u64,
    pub cache_read_input_tokens: u64,
}

impl Usage {
    /// Adds `other` in, for totals per instance, workflow and swarm.
    pub fn add(&mut self, other: &Usage) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cache_creation_input_tokens += other.cache_creation_input_tokens;
        self.cache_read_input_tokens += other.cache_read_input_tokens;
    }
}

/// What a run produced, from the agent's `result` line and its exit.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct TaskResult {
    pub text: String,
    pub session_id: String,
    pub cost_usd: f64,
    pub usage: Usage,
    pub num_turns: u32,
    pub duration: Duration,
    /// `None` when the process was killed by a signal or never started.
    pub exit_code: Option<i32>,
    pub is_error: bool,
    /// The HTTP status of an API error the agent reported.
    pub api_error_status: Option<u16>,
    /// With worktree isolation: the branch holding the changes, and their diff stat.
    pub branch: Option<String>,
    pub diff_stat: String,
}

/// A task as the engine tracks it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Task {
    pub id: TaskId,
    pub spec: TaskSpec,
    pub status: TaskStatus,
    pub workflow_id: Option<WorkflowId>,
    /// The instance that ran (or runs) it.
    pub instance_id: Option<InstanceId>,
    pub created_at: SystemTime,
    pub started_at: Option<SystemTime>,
    pub completed_at: Option<SystemTime>,
    pub result: Option<TaskResult>,
    /// Why it failed, was cancelled or skipped.
    pub error: Option<String>,
    /// Runs started so far (retries included).
    #[serde(default)]
    pub attempts: u32,
    /// Why it failed, was cancelled or skipped.
    #[serde(default)]
    pub failure_class: Option<FailureClass>,
    /// Earlier attempts that failed and were retried, oldest first.
    #[serde(default)]
    pub history: Vec<Attempt>,
}

/// One failed attempt of a task that was retried.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Attempt {
    pub attempt: u32,
    pub started_at: Option<SystemTime>,
    pub ended_at: SystemTime,
    pub result: Option<TaskResult>,
    pub error: String,
    pub failure_class: Option<FailureClass>,
    pub instance_id: Option<InstanceId>,
}

impl Task {
    /// A task just submitted: PENDING until its dependencies are settled.
    pub fn new(
        id: TaskId,
        spec: TaskSpec,
        workflow_id: Option<WorkflowId>,
        created_at: SystemTime,
    ) -> Self {
        Self {
            id,
            spec,
            status: TaskStatus::Pending,
            workflow_id,
            instance_id: None,
            created_at,
            started_at: None,
            completed_at: None,
            result: None,
            error: None,
            attempts: 0,
            failure_class: None,
            history: Vec::new(),
        }
    }
}

/// Why a run was stopped from outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    Cancelled,
    TimedOut(Duration),
    InstanceTerminated,
    Shutdown,
}

/// The agent's `result` line, reduced to what the engine keeps.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResultLine {
    pub text: String,
    pub session_id: String,
    pub cost_usd: f64,
    pub usage: Usage,
    pub num_turns: u32,
    pub is_error: bool,
    /// `terminal_reason` / `subtype`, for error messages.
    pub reason: String,
    /// `subtype` (`success`, `error_max_turns`, `error_max_budget_usd`, ...).
    pub subtype: String,
    /// `api_error_status`, when the API answered with an error.
    pub api_error_status: Option<u16>,
}

/// Why a task failed. Retries happen only for [`FailureClass::retryable`] ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum FailureClass {
    Authentication,
    ApiError,
    RateLimited,
    MaxTurns,
    BudgetExhausted,
    Timeout,
    Cancelled,
    ProcessCrashed,
    ProtocolError,
    SpawnFailed,
    Interrupted,
    CommandFailed,
    Skipped,
}

impl FailureClass {
    /// Whether running again may help.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            Self::ApiError
                | Self::RateLimited
                | Self::Timeout
                | Self::ProcessCrashed
                | Self::ProtocolError
                | Self::Interrupted
                | Self::CommandFailed
        )
    }
}

/// Everything the agent layer reports about one run.
#[derive(Clone, Debug, Default)]
pub struct RunOutcome {
    pub result: Option<ResultLine>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub stopped: Option<StopReason>,
    /// The process could not be started or read.
    pub failure: Option<String>,
    /// The end of what the process wrote to stderr.
    pub stderr_tail: String,
    pub duration: Duration,
    /// The `error` of an assistant line (`authentication_failed`, `rate_limit`, ...).
    pub agent_error: Option<String>,
    /// Stdout lines that were stream-json messages, and lines that were not.
    pub messages: usize,
    pub unparsed: usize,
    /// A shell step, not the agent.
    pub shell: bool,
    /// With worktree isolation: the branch and what changed on it.
    pub branch: Option<String>,
    pub diff_stat: String,
}

/// How a run ends for the task.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub status: TaskStatus,
    pub result: Option<TaskResult>,
    pub error: Option<String>,
    pub class: Option<FailureClass>,
}

impl RunOutcome {
    /// Success is decided by `is_error` and the exit code, never by `subtype` alone.
    pub fn verdict(&self) -> Verdict {
        let result = self.result.as_ref().map(|r| TaskResult {
            text: r.text.clone(),
            session_id: r.session_id.clone(),
            cost_usd: r.cost_usd,
            usage: r.usage.clone(),
            num_turns: r.num_turns,
            duration: self.duration,
            exit_code: self.exit_code,
            is_error: r.is_error,
            api_error_status: r.api_error_status,
            branch: self.branch.clone(),
            diff_stat: self.diff_stat.clone(),
        });
        use FailureClass as C;
        let (status, error, class) = match (self.stopped, &self.failure, &self.result) {
            (Some(StopReason::Cancelled), ..) => {
                (TaskStatus::Cancelled, "cancelled".to_string(), C::Cancelled)
            }
            (Some(StopReason::Shutdown), ..) => (
                TaskStatus::Cancelled,
                "cancelled: the server shut down".to_string(),
                C::Interrupted,
            ),
            (Some(StopReason::TimedOut(after)), ..) => (
                TaskStatus::Failed,
                format!("timed out after {}", seconds(after)),
                C::Timeout,
            ),
            (Some(StopReason::InstanceTerminated), ..) => (
                TaskStatus::Failed,
                "its instance was terminated".to_string(),
                C::Interrupted,
            ),
            (None, Some(failure), _) => (TaskStatus::Failed, failure.clone(), C::SpawnFailed),
            (None, None, Some(r)) if r.is_error => {
                let reason = if r.reason.is_empty() {
                    "error"
                } else {
                    &r.reason
                };
                let who = if self.shell { "command" } else { "agent" };
                (
                    TaskStatus::Failed,
                    format!("{who} reported an error ({reason}): {}", r.text),
                    self.error_class(r),
                )
            }
            (None, None, Some(_)) if self.exit_code == Some(0) => {
                return Verdict {
                    status: TaskStatus::Completed,
                    result,
                    error: None,
                    class: None,
                };
            }
            (None, None, Some(_)) => (
                TaskStatus::Failed,
                format!("agent {} after its result", self.exit_text()),
                C::ProcessCrashed,
            ),
            (None, None, None) => {
                let class = if self.unparsed > 0 && self.messages == 0 {
                    C::ProtocolError
                } else {
                    C::ProcessCrashed
                };
                let what = if class == C::ProtocolError {
                    " and printed no stream-json"
                } else {
                    ""
                };
                let error = format!(
                    "agent {} without a result line{what}{}",
                    self.exit_text(),
                    self.stderr_note()
                );
                (TaskStatus::Failed, error, class)
            }
        };
        Verdict {
            status,
            result,
            error: Some(error),
            class: Some(class),
        }
    }

    /// The class of an error result: what the CLI said, not how it said it.
    fn error_class(&self, r: &ResultLine) -> FailureClass {
        let text = r.text.to_ascii_lowercase();
        let agent_error = self.agent_error.as_deref().unwrap_or_default();
        if self.shell {
            FailureClass::CommandFailed
        } else if r.subtype == "error_max_turns" {
            FailureClass::MaxTurns
        } else if r.subtype == "error_max_budget_usd" {
            FailureClass::BudgetExhausted
        } else if agent_error == "authentication_failed"
            || text.contains("not logged in")
            || text.contains("invalid api key")
        {
            FailureClass::Authentication
        } else if r.api_error_status == Some(429)
            || agent_error.contains("rate_limit")
            || text.contains("rate limit")
        {
            FailureClass::RateLimited
        } else {
            FailureClass::ApiError
        }
    }

    fn exit_text(&self) -> String {
        match (self.exit_code, self.signal) {
            (_, Some(sig)) => format!("was killed by signal {sig}"),
            (Some(code), _) => format!("exited with code {code}"),
            (None, None) => "ended".to_string(),
        }
    }

    fn stderr_note(&self) -> String {
        let tail = self.stderr_tail.trim();
        if tail.is_empty() {
            String::new()
        } else {
            format!("; stderr: {tail}")
        }
    }
}

/// A positive, finite number of seconds small enough for a `Duration`; `None` otherwise
/// (zero, negative, NaN, infinite, or too large: `1e300` would overflow).
pub fn positive_seconds(value: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
}

/// Seconds since the Unix epoch.
pub fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `1.5s`, `30s`.
pub fn seconds(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(is_error: bool) -> ResultLine {
        ResultLine {
            text: "hi".into(),
            is_error,
            reason: "api_error".into(),
            ..Default::default()
        }
    }

    #[test]
    fn is_error_decides_not_subtype() {
        let out = RunOutcome {
            result: Some(result(true)),
            exit_code: Some(0),
            ..Default::default()
        };
        let v = out.verdict();
        assert_eq!(v.status, TaskStatus::Failed);
        assert!(v.error.unwrap().contains("api_error"));
        assert!(v.result.unwrap().is_error);
    }

    #[test]
    fn clean_result_and_exit_zero_completes() {
        let out = RunOutcome {
            result: Some(result(false)),
            exit_code: Some(0),
            ..Default::default()
        };
        assert_eq!(out.verdict().status, TaskStatus::Completed);
        let out = RunOutcome {
            result: Some(result(false)),
            exit_code: Some(3),
            ..Default::default()
        };
        assert_eq!(out.verdict().status, TaskStatus::Failed);
    }

    #[test]
    fn missing_result_line_fails_with_stderr() {
        let out = RunOutcome {
            signal: Some(9),
            stderr_tail: "boom".into(),
            ..Default::default()
        };
        let v = out.verdict();
        assert_eq!(v.status, TaskStatus::Failed);
        assert_eq!(
            v.error.unwrap(),
            "agent was killed by signal 9 without a result line; stderr: boom"
        );
    }

    #[test]
    fn stop_reasons_win() {
        let out = RunOutcome {
            stopped: Some(StopReason::Cancelled),
            result: Some(result(false)),
            exit_code: Some(0),
            ..Default::default()
        };
        assert_eq!(out.verdict().status, TaskStatus::Cancelled);
        let out = RunOutcome {
            stopped: Some(StopReason::TimedOut(Duration::from_millis(1500))),
            ..Default::default()
        };
        assert_eq!(out.verdict().error.unwrap(), "timed out after 1.5s");
    }

    #[test]
    fn spec_rules_name_the_field() {
        let mut spec = TaskSpec::new("  ");
        assert_eq!(spec.validate().unwrap_err().field(), Some("prompt"));
        spec.prompt = "x".into();
        spec.id = Some("a b".into());
        assert_eq!(spec.validate().unwrap_err().field(), Some("id"));
        spec.id = Some("a".into());
        spec.depends_on = vec!["b".into(), "b".into()];
        assert_eq!(spec.validate().unwrap_err().field(), Some("depends_on[1]"));
        spec.depends_on = vec!["a".into()];
        assert_eq!(spec.validate().unwrap_err().field(), Some("depends_on[0]"));
        spec.depends_on.clear();
        spec.timeout = Some(Duration::ZERO);
        assert_eq!(spec.validate().unwrap_err().field(), Some("timeout"));
    }

    #[test]
    fn priority_words() {
        assert_eq!(Priority::parse("HIGH"), Some(Priority::High));
        assert_eq!(Priority::parse("priority_low"), Some(Priority::Low));
        assert_eq!(Priority::parse("urgent"), None);
        assert!(Priority::Critical > Priority::High && Priority::Normal > Priority::Low);
    }
}
