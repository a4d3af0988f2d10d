//! Tasks: what a client asks for (`TaskSpec`), what the engine tracks (`Task`), and what a
//! run produced (`TaskResult`, `RunOutcome`).

use std::{collections::BTreeMap, path::PathBuf, sync::Arc, time::Duration, time::SystemTime};

use super::{
    approval::{DenialPolicy, PermissionDenial, PermissionPolicy},
    rare::{Empty, Rare},
    words::words,
};
use crate::engine::{
    error::{EngineError, Result},
    workflow::{FanOut, Template},
};

pub use super::id::TaskId;
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
    /// Client-chosen id; generated when `None`. Taken into `Task::id` at submission.
    pub id: Option<TaskId>,
    /// Human-readable name; the id when empty ([`Task::name`]).
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
    pub fan_out: Option<Box<FanOut>>,
    /// The same key on a later submission returns this task instead of a new one.
    pub idempotency_key: Option<String>,
    /// More Claude Code options.
    pub options: Rare<AgentOptions>,
    /// Where the task runs: as it is, or in a git worktree of its own.
    pub isolation: Isolation,
    /// A conversation shared by name with the other tasks of its workflow that name it:
    /// the first to run starts it, later ones resume it, one at a time.
    pub session: Option<String>,
    /// A JSON Schema the answer must match (`--json-schema`); the result then keeps the
    /// answer as `structured_output`.
    pub output_schema: Option<serde_json::Value>,
    /// Tool permission rules of this task (its workflow's and the swarm's apply too).
    pub permissions: Rare<PermissionPolicy>,
    /// Whether a refused tool call fails a task that otherwise completed.
    pub on_permission_denied: DenialPolicy,
    /// Run only on this account's instances; on any account not paused when `None`.
    pub account: Option<String>,
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

impl Empty for AgentOptions {
    fn empty() -> &'static Self {
        static EMPTY: AgentOptions = AgentOptions {
            fallback_model: None,
            disallowed_tools: Vec::new(),
            append_system_prompt: None,
            mcp_config: None,
            strict_mcp_config: false,
            add_dirs: Vec::new(),
            max_budget_usd: None,
            env: BTreeMap::new(),
            resume_session: None,
            fork_session: false,
        };
        &EMPTY
    }
}

/// Variables claude-swarm sets itself, which `options.env` may not: `CLAUDECODE` is never
/// passed (a CLI started from inside Claude Code would act as nested), the others name the
/// run to its processes.
pub const RESERVED_ENV: [&str; 4] = [
    "CLAUDECODE",
    "SWARM_TASK_ID",
    "SWARM_ATTEMPT",
    "SWARM_INSTANCE_ID",
];

/// Variables `options.env` may set only when the server lists them in
/// `allow_agent_env_override`: they decide which programs and libraries the agent's
/// processes load (the dynamic loader, `PATH`, interpreters' start-up hooks), where the CLI
/// reads its settings and hooks, what git runs, and where the agent's traffic (and its API
/// key) goes. Names ending in `_` are prefixes; case does not matter.
pub const GUARDED_ENV: &[&str] = &[
    "LD_",
    "DYLD_",
    "PATH",
    "IFS",
    "BASH_ENV",
    "ENV",
    "SHELLOPTS",
    "BASHOPTS",
    "NODE_OPTIONS",
    "NODE_PATH",
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "PERL5LIB",
    "PERL5OPT",
    "PERLLIB",
    "RUBYLIB",
    "RUBYOPT",
    "GCONV_PATH",
    "HOME",
    "CLAUDE_CONFIG_DIR",
    "GIT_SSH",
    "GIT_SSH_COMMAND",
    "GIT_EXEC_PATH",
    "GIT_ASKPASS",
    "GIT_CONFIG_",
    "ANTHROPIC_BASE_URL",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NODE_EXTRA_CA_CERTS",
    "NODE_TLS_REJECT_UNAUTHORIZED",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];

/// Whether `options.env` needs the server's leave to set `name` (see [`GUARDED_ENV`]).
pub fn guarded_env(name: &str) -> bool {
    let name = name.to_ascii_uppercase();
    GUARDED_ENV.iter().any(|g| {
        if g.ends_with('_') {
            name.starts_with(g)
        } else {
            name == *g
        }
    })
}

/// A value the CLI reads after its flag (`--model VALUE`) may not look like a flag
/// (`--dangerously-skip-permissions`): the CLI 2.1.332 takes the next argument as the value
/// whatever it is, but another version or parser may not, and no model, tool or path
/// starts with `-`.
fn not_a_flag(field: &str, value: &str) -> Result<()> {
    if value.trim_start().starts_with('-') {
        return Err(EngineError::invalid(
            field,
            format!(
                "{value:?} starts with '-': it could be read as a command-line flag, and no \
                 model, tool or path starts with one"
            ),
        ));
    }
    Ok(())
}

/// Each of `values` (an empty one is refused too), as `field[i]`.
fn each_not_a_flag(field: &str, values: &[String], what: &str) -> Result<()> {
    for (i, value) in values.iter().enumerate() {
        let field = format!("{field}[{i}]");
        if value.trim().is_empty() {
            return Err(EngineError::invalid(
                field,
                format!("{what} must not be empty"),
            ));
        }
        not_a_flag(&field, value)?;
    }
    Ok(())
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
            if RESERVED_ENV.contains(&name.as_str()) {
                return Err(EngineError::invalid(
                    "options.env",
                    format!("{name} is set by claude-swarm, never by a task"),
                ));
            }
        }
        if let Some(model) = &self.fallback_model {
            not_a_flag("options.fallback_model", model)?;
        }
        if let Some(config) = &self.mcp_config {
            not_a_flag("options.mcp_config", config)?;
        }
        each_not_a_flag(
            "options.disallowed_tools",
            &self.disallowed_tools,
            "tool names",
        )?;
        each_not_a_flag("options.add_dirs", &self.add_dirs, "directories")?;
        if let Some(session) = &self.resume_session
            && !session_id_shaped(session)
        {
            return Err(EngineError::invalid(
                "options.resume_session",
                format!(
                    "{session:?} is not a session id: one looks like \
                     123e4567-e89b-12d3-a456-426614174000 (a UUID, as `result.session_id` shows)"
                ),
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
        if let Some(model) = &self.model {
            not_a_flag("model", model)?;
        }
        each_not_a_flag("allowed_tools", &self.allowed_tools, "tool names")?;
        if self.max_turns == Some(0) {
            return Err(EngineError::invalid("max_turns", "must be positive"));
        }
        if let Some(name) = &self.session {
            validate_id("session", name)?;
        }
        if let Some(schema) = &self.output_schema {
            if self.command.is_some() {
                return Err(EngineError::invalid(
                    "output_schema",
                    "a shell step (command) has no structured answer",
                ));
            }
            super::schema::check(schema)
                .map_err(|why| EngineError::invalid("output_schema", why))?;
        }
        self.permissions.validate("permissions")?;
        self.options.validate()
    }
}

/// A session id as the CLI makes them: a UUID in its hyphenated form, nothing else (it
/// ends up on a command line).
pub fn session_id_shaped(id: &str) -> bool {
    id.len() == 36
        && id.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Ids chosen by clients end up in URLs, logs and command lines: keep them plain.
pub fn validate_id(field: &str, id: &str) -> Result<()> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(EngineError::invalid(
            field,
            format!("must be 1 to {MAX_ID_LEN} characters"),
        ));
    }
    // They name directories too (a task's worktree), and mean something there.
    if id == "." || id == ".." {
        return Err(EngineError::invalid(
            field,
            format!("{id:?} is not an id: it names a directory"),
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
    /// With an `output_schema`: the answer, matching it.
    pub structured_output: Option<serde_json::Value>,
    /// Tool calls the agent was refused during the run.
    pub permission_denials: Vec<PermissionDenial>,
}

/// A task as the engine tracks it.
#[derive(Clone, Debug, PartialEq)]
pub struct Task {
    pub id: TaskId,
    /// Shared by every version of the task (its events, the store's records): a spec
    /// changes only when a run renders its template or resumes on another account.
    pub spec: Arc<TaskSpec>,
    pub status: TaskStatus,
    pub workflow_id: Option<WorkflowId>,
    /// The instance that ran (or runs) it.
    pub instance_id: Option<InstanceId>,
    pub created_at: SystemTime,
    pub started_at: Option<SystemTime>,
    pub completed_at: Option<SystemTime>,
    pub result: Option<Box<TaskResult>>,
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
    /// Its name: the spec's, or its id when the spec gives none (kept once, in `id`).
    pub fn name(&self) -> &str {
        if self.spec.name.is_empty() {
            &self.id
        } else {
            &self.spec.name
        }
    }

    /// Attempts that count against its retries: all but those its node's loss cut short.
    pub fn counted_attempts(&self) -> u32 {
        let lost = self
            .history
            .iter()
            .filter(|a| a.failure_class == Some(FailureClass::NodeLost))
            .count();
        self.attempts
            .saturating_sub(u32::try_from(lost).unwrap_or(u32::MAX))
    }

    /// A task just submitted: PENDING until its dependencies are settled.
    pub fn new(
        id: TaskId,
        spec: TaskSpec,
        workflow_id: Option<WorkflowId>,
        created_at: SystemTime,
    ) -> Self {
        Self {
            id,
            spec: Arc::new(spec),
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
        OutputInvalid = "output_invalid",
        PermissionDenied = "permission_denied",
        /// The node it ran on was lost: the attempt does not count against its retries.
        NodeLost = "node_lost",
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
                | Self::OutputInvalid
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

    /// Every task the server holds has one spec, shared by its versions: the parts most
    /// tasks leave empty are boxed ([`Rare`]), so that it fits a 512-byte allocation with
    /// its `Arc` counts (mimalloc's size classes: 512, then 640).
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_spec_and_its_counts_fit_in_512_bytes() {
        // An `Arc`'s allocation: the strong and weak counts, then the value.
        let size = 2 * std::mem::size_of::<usize>() + std::mem::size_of::<TaskSpec>();
        assert!(size <= 512, "an Arc<TaskSpec> takes {size} bytes");
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
        spec.timeout = None;
        for id in [".", ".."] {
            spec.id = Some(id.into());
            assert_eq!(spec.validate().unwrap_err().field(), Some("id"), "{id}");
        }
        spec.id = Some("a.b".into());
        spec.validate().unwrap();
    }

    #[test]
    fn values_the_cli_would_read_as_flags_are_refused_naming_the_field() {
        let bad = |change: fn(&mut TaskSpec)| {
            let mut spec = TaskSpec::new("p");
            change(&mut spec);
            spec.validate().unwrap_err().field().map(str::to_owned)
        };
        let flag = "--dangerously-skip-permissions".to_string();
        assert_eq!(
            bad(|s| s.model = Some("--dangerously-skip-permissions".into())),
            Some("model".into())
        );
        assert_eq!(
            bad(|s| s.allowed_tools = vec!["Read".into(), "--foo".into()]),
            Some("allowed_tools[1]".into())
        );
        assert_eq!(
            bad(|s| s.options.fallback_model = Some(" -x".into())),
            Some("options.fallback_model".into())
        );
        assert_eq!(
            bad(|s| s.options.disallowed_tools = vec!["-p".into()]),
            Some("options.disallowed_tools[0]".into())
        );
        assert_eq!(
            bad(|s| s.options.add_dirs = vec!["/tmp".into(), "".into()]),
            Some("options.add_dirs[1]".into())
        );
        assert_eq!(
            bad(|s| s.options.mcp_config = Some("--strict".into())),
            Some("options.mcp_config".into())
        );
        assert_eq!(
            bad(|s| s.permission_mode = Some("--dangerously-skip-permissions".into())),
            Some("permission_mode".into())
        );
        let mut spec = TaskSpec::new("p");
        spec.model = Some("claude-opus-4".into());
        spec.options.mcp_config = Some(r#"{"mcpServers": {}}"#.into());
        spec.options.append_system_prompt = Some(flag);
        spec.validate().unwrap();
    }

    #[test]
    fn variables_claude_swarm_sets_are_refused_and_loader_ones_are_guarded() {
        for name in RESERVED_ENV {
            let mut spec = TaskSpec::new("p");
            spec.options.env.insert(name.into(), "x".into());
            let err = spec.validate().unwrap_err();
            assert_eq!(err.field(), Some("options.env"));
            assert!(err.to_string().contains(name), "{err}");
        }
        for name in [
            "LD_PRELOAD",
            "ld_library_path",
            "PATH",
            "DYLD_INSERT_LIBRARIES",
            "NODE_OPTIONS",
            "GIT_CONFIG_COUNT",
        ] {
            assert!(guarded_env(name), "{name}");
        }
        for name in [
            "RUST_LOG",
            "PATHX",
            "MY_PATH",
            "GIT_AUTHOR_NAME",
            "ANTHROPIC_MODEL",
        ] {
            assert!(!guarded_env(name), "{name}");
        }
    }

    #[test]
    fn priority_words() {
        assert_eq!(Priority::from_word("HIGH"), Some(Priority::High));
        assert_eq!(Priority::from_word("priority_low"), Some(Priority::Low));
        assert_eq!(Priority::from_word("urgent"), None);
        assert!(Priority::Critical > Priority::High && Priority::Normal > Priority::Low);
    }
}
