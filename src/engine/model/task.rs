//! Tasks: what a client asks for (`TaskSpec`), what the engine tracks (`Task`), and what a
//! run produced (`TaskResult`, `RunOutcome`).

use std::{collections::BTreeMap, path::PathBuf, time::Duration, time::SystemTime};

use super::words::words;
use crate::engine::{
    error::{EngineError, Result},
    workflow::{FanOut, Template},
};

pub type TaskId = String;
pub type InstanceId = String;
pub type WorkflowId = String;

/// Longest client-chosen id.
const MAX_ID_LEN: usize = 128;

words! {
    /// CRITICAL > HIGH > NORMAL > LOW. The declaration order makes `Ord` follow urgency.
    #[derive(Default)]
    pub enum Priority {
        Low = "low",
        #[default]
        Normal = "normal",
        High = "high",
        Critical = "critical",
    }
}

impl Priority {
    /// Most urgent first.
    pub const DESCENDING: [Priority; 4] = [
        Priority::Critical,
        Priority::High,
        Priority::Normal,
        Priority::Low,
    ];

    /// Accepts `low`, `LOW`, `PRIORITY_LOW` and the like (the original service's spellings).
    pub fn from_word(word: &str) -> Option<Self> {
        let word = word.trim().to_ascii_lowercase();
        Self::parse(word.strip_prefix("priority_").unwrap_or(&word))
    }
}

words! {
    /// A task's state: PENDING (waiting on dependencies), QUEUED, RUNNING, then one
    /// terminal state.
    pub enum TaskStatus {
        Pending = "pending",
        Queued = "queued",
        Running = "running",
        Completed = "completed",
        Failed = "failed",
        Cancelled = "cancelled",
        Skipped = "skipped",
    }
}

impl TaskStatus {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Failed | Self::Cancelled | Self::Skipped
        )
    }
}

/// What a client asks to run. Validated by [`TaskSpec::validate`] before the engine takes it.
#[derive(Clone, Debug, Default, PartialEq)]
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

words! {
    /// Where a task runs.
    #[derive(Default)]
    pub enum Isolation {
        /// In the working directory as it is.
        #[default]
        None = "none",
        /// In a new git worktree on a branch of its own.
        Worktree = "worktree",
    }
}

/// Claude Code options passed through as the CLI spells them.
#[derive(Clone, Debug, Default, PartialEq)]
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

words! {
    /// What a task's failure does to the rest of its workflow.
    #[derive(Default)]
    pub enum FailurePolicy {
        /// Skip only the tasks that depend on it.
        #[default]
        Continue = "continue",
        /// Cancel every unfinished task of the workflow.
        FailFast = "fail_fast",
    }
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

#[derive(Clone, Debug, Default, PartialEq)]
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
#[derive(Clone, Debug, Default, PartialEq)]
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
#[derive(Clone, Debug, PartialEq)]
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
    pub attempts: u32,
    /// Why it failed, was cancelled or skipped.
    pub failure_class: Option<FailureClass>,
    /// Earlier attempts that failed and were retried, oldest first.
    pub history: Vec<Attempt>,
    /// The process group of the run in flight, as its agent reported it. Stored, so that a
    /// server started after a crash can end what is left of it before the task runs again.
    pub process_group: Option<u32>,
}

/// One failed attempt of a task that was retried.
#[derive(Clone, Debug, PartialEq)]
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
            process_group: None,
        }
    }
}

words! {
    /// Why a task failed. Retries happen only for [`FailureClass::retryable`] ones.
    pub enum FailureClass {
        Authentication = "authentication",
        ApiError = "api_error",
        RateLimited = "rate_limited",
        MaxTurns = "max_turns",
        BudgetExhausted = "budget_exhausted",
        Timeout = "timeout",
        Cancelled = "cancelled",
        ProcessCrashed = "process_crashed",
        ProtocolError = "protocol_error",
        SpawnFailed = "spawn_failed",
        Interrupted = "interrupted",
        CommandFailed = "command_failed",
        Skipped = "skipped",
    }
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
        assert_eq!(Priority::from_word("HIGH"), Some(Priority::High));
        assert_eq!(Priority::from_word("priority_low"), Some(Priority::Low));
        assert_eq!(Priority::from_word("urgent"), None);
        assert!(Priority::Critical > Priority::High && Priority::Normal > Priority::Low);
    }
}
