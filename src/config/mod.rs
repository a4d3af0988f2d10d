//! Server configuration: defaults < config file (YAML) < environment (`SWARM_*`) < flags.
//! The environment and flags arrive together through clap (`env = ...`), so a flag wins
//! over its variable. Everything is checked before any port opens.

use std::{
    fmt,
    net::SocketAddr,
    num::NonZeroU32,
    path::{Path, PathBuf},
    time::Duration,
};

mod accounts;
mod nodes;
pub use nodes::host_name;

pub use accounts::{Accounts, CREDENTIALS};

use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::{
    api::{
        auth::{ApiKey, Keys},
        rate_limit::RateLimit,
    },
    engine::{
        EngineConfig,
        model::task::{GUARDED_ENV, guarded_env, positive_seconds},
    },
};

/// Which agent runs tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AgentKind {
    /// The real Claude Code CLI.
    Claude,
    /// The built-in simulation of the CLI (same stream-json protocol; no account needed).
    Simulated,
}

/// How instances run the CLI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum AgentMode {
    /// A process per instance started ahead of its next task (a fresh session each);
    /// tasks with flags of their own get their own.
    LongLived,
    /// A process per task.
    PerTask,
}

/// Settings shared by `serve` and `run`. Every one is optional: unset ones come from the
/// config file or the defaults.
#[derive(Args, Clone, Debug, Default)]
pub struct Overrides {
    /// YAML config file.
    #[arg(long, env = "SWARM_CONFIG")]
    pub config: Option<PathBuf>,
    /// Which agent runs tasks [default: claude].
    #[arg(long, env = "SWARM_AGENT", value_enum)]
    pub agent: Option<AgentKind>,
    /// How instances run the CLI [default: long-lived].
    #[arg(long, env = "SWARM_AGENT_MODE", value_enum)]
    pub agent_mode: Option<AgentMode>,
    /// The Claude Code command [default: claude].
    #[arg(long, env = "SWARM_CLAUDE_COMMAND")]
    pub claude_command: Option<PathBuf>,
    /// Instances spawned at start [default: 2].
    #[arg(long, env = "SWARM_INSTANCES")]
    pub instances: Option<usize>,
    /// Most live instances [default: 32].
    #[arg(long, env = "SWARM_MAX_INSTANCES")]
    pub max_instances: Option<usize>,
    /// Seconds before a task that sets no timeout is stopped [default: 1800].
    #[arg(long, env = "SWARM_TASK_TIMEOUT")]
    pub task_timeout: Option<f64>,
    /// Directory of tasks that name none [default: the current directory].
    #[arg(long, env = "SWARM_WORKING_DIRECTORY")]
    pub working_directory: Option<PathBuf>,
    /// Where state is kept across restarts [serve default: $XDG_DATA_HOME/claude-swarm or
    /// ~/.local/share/claude-swarm; run default: in memory].
    #[arg(long, env = "SWARM_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Keep state in memory only: a restart forgets everything.
    #[arg(long, conflicts_with = "data_dir")]
    pub in_memory: bool,
    /// `Host` names served besides loopback ones and the listen address, comma-separated
    /// (`name` or `name:port`) [default: none].
    #[arg(long, env = "SWARM_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Option<Vec<String>>,
    // ---- API keys and shell steps (issue 12) ----
    /// Whether tasks may run shell steps (`command`) [default: true].
    #[arg(long, env = "SWARM_ALLOW_COMMANDS")]
    pub allow_commands: Option<bool>,
    /// `SWARM_API_KEYS`: keys accepted besides the config file's, as comma-separated
    /// `name:role:key` entries. From the environment only: a flag would show keys to `ps`.
    #[arg(skip = std::env::var("SWARM_API_KEYS").ok())]
    pub api_keys: Option<String>,
    // ---- TLS (issue 12) ----
    /// PEM certificate chain to serve TLS with (`serve`; needs --tls-key) [default: none,
    /// plaintext].
    #[arg(long, env = "SWARM_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "SWARM_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    // ---- several nodes (issue 16) ----
    /// Keep state in PostgreSQL (`postgres://user:password@host/db`), shared with other
    /// nodes, instead of SQLite in the data directory [default: SQLite].
    #[arg(long, env = "SWARM_STORE", conflicts_with = "in_memory")]
    pub store: Option<String>,
    /// This node's name among the nodes of one database [default: the host name].
    #[arg(long, env = "SWARM_NODE_NAME")]
    pub node_name: Option<String>,
    /// Seconds a node that stops renewing keeps the database before another takes over
    /// [default: 10].
    #[arg(long, env = "SWARM_LEASE")]
    pub lease: Option<f64>,
}

/// The config file's shape. Unknown keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    agent: Option<AgentKind>,
    agent_mode: Option<AgentMode>,
    claude_command: Option<PathBuf>,
    instances: Option<usize>,
    max_instances: Option<usize>,
    task_timeout: Option<f64>,
    working_directory: Option<PathBuf>,
    /// Seconds between SIGTERM and SIGKILL when a task is stopped.
    stop_grace: Option<f64>,
    /// Events kept for replay.
    event_retention: Option<usize>,
    /// Variables set for every agent process.
    #[serde(default)]
    agent_env: std::collections::BTreeMap<String, String>,
    /// Browser origins allowed besides loopback ones (grpc-web and REST).
    #[serde(default)]
    cors_origins: Vec<String>,
    /// `Host` names served besides loopback ones and the listen address.
    #[serde(default)]
    allowed_hosts: Vec<String>,
    /// Where state is kept across restarts.
    data_dir: Option<PathBuf>,
    /// Once the swarm has spent this much (USD), nothing more is dispatched.
    budget_usd: Option<f64>,
    /// Working directories outside this directory are refused.
    workspace_root: Option<PathBuf>,
    /// A long-lived instance using more memory than this (MiB) after a task restarts.
    instance_memory_limit_mb: Option<u64>,
    /// Finished tasks kept; older ones are compacted away.
    task_retention: Option<usize>,
    /// Leave tasks' git worktrees in place when they end.
    #[serde(default)]
    keep_worktrees: bool,
    /// Most unfinished (pending, queued or running) tasks at once.
    max_queued_tasks: Option<usize>,
    /// Guarded variables (`PATH`, `LD_PRELOAD`, ...) a task's `options.env` may set.
    #[serde(default)]
    allow_agent_env_override: Vec<String>,
    // ---- API keys and shell steps (issue 12) ----
    /// Keys accepted; with none, nobody is asked for one.
    #[serde(default)]
    api_keys: Vec<FileKey>,
    /// Whether tasks may run shell steps (`command`).
    allow_commands: Option<bool>,
    /// Requests a second each key (each client address, without keys) may make.
    rate_limit_per_second: Option<u32>,
    /// Requests at once before a caller is held to `rate_limit_per_second`.
    rate_limit_burst: Option<u32>,
    // ---- TLS, stream and time limits, the audit (issue 12; see `serving`) ----
    /// PEM certificate chain of the port.
    tls_cert: Option<PathBuf>,
    /// Its PEM private key.
    tls_key: Option<PathBuf>,
    /// Event streams each key (each client address, without keys) may hold open.
    max_streams_per_key: Option<usize>,
    /// Seconds a call may take to be answered (streams excepted).
    request_timeout: Option<f64>,
    /// Audit records kept.
    audit_retention: Option<usize>,
    // ---- tool permissions (issue 13) ----
    /// Swarm-wide permission rules and the approvals' deadline.
    #[serde(default)]
    permissions: permissions::PermissionsSection,
    /// URLs the server posts events to.
    #[serde(default)]
    webhooks: Vec<webhooks::FileWebhook>,
    // ---- accounts (issue 13) ----
    /// The accounts instances run under, each with its environment and share.
    #[serde(default)]
    accounts: Vec<accounts::FileAccount>,
    // ---- several nodes (issue 16) ----
    /// A `postgres://` URL: state shared with other nodes.
    store: Option<String>,
    /// This node's name.
    node: Option<String>,
    /// Seconds a node that stops renewing keeps the database.
    lease: Option<f64>,
}

/// An `api_keys` entry: the key's SHA-256, never the key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKey {
    name: String,
    /// `read`, `operate` or `admin`.
    role: String,
    /// 64 hex digits, as `claude-swarm key new` or `key hash` print them.
    sha256: String,
}

/// The checked configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub agent: AgentKind,
    pub agent_mode: AgentMode,
    pub claude_command: PathBuf,
    pub stop_grace: Duration,
    /// Variables set for every agent process.
    pub agent_env: Vec<(String, String)>,
    /// Browser origins allowed besides loopback ones.
    pub cors_origins: Vec<String>,
    /// `Host` names served besides loopback ones and the listen address (`name` or
    /// `name:port`).
    pub allowed_hosts: Vec<String>,
    /// The data directory asked for, if any.
    pub data_dir: Option<PathBuf>,
    /// State in memory only (`--in-memory`).
    pub in_memory: bool,
    /// Leave tasks' git worktrees in place when they end.
    pub keep_worktrees: bool,
    /// A long-lived instance whose process tree uses more memory (bytes) after a task is
    /// restarted before the next one.
    pub instance_memory_limit: Option<u64>,
    /// The API keys accepted (the file's and `SWARM_API_KEYS`'); none: nobody is asked.
    pub keys: Keys,
    /// Whether tasks may run shell steps (`command`).
    pub allow_commands: bool,
    /// Requests each key (each client address, without keys) may make; `None`: no limit.
    pub rate_limit: Option<RateLimit>,
    /// TLS, the stream and time limits, the audit's retention.
    pub serving: Serving,
    /// The config file's webhooks, checked.
    pub webhooks: Vec<crate::notify::webhook::Webhook>,
    /// The accounts instances run under, with their variables (for the agent).
    pub accounts: Accounts,
    /// The PostgreSQL store shared with other nodes (`store`), instead of SQLite.
    pub postgres: Option<crate::store::postgres::Target>,
    pub engine: EngineConfig,
}

#[derive(Debug)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";

impl Config {
    pub fn load(overrides: &Overrides, listen: Option<SocketAddr>) -> Result<Self, ConfigError> {
        let file = match &overrides.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let defaults = EngineConfig::default();
        let (permissions, approval_timeout) = file.permissions.checked()?;
        let working_directory = match overrides
            .working_directory
            .clone()
            .or(file.working_directory)
        {
            Some(dir) => dir,
            None => std::env::current_dir()
                .map_err(|e| ConfigError(format!("no current directory: {e}")))?,
        };
        if !working_directory.is_dir() {
            return Err(ConfigError(format!(
                "working_directory: {} is not a directory",
                working_directory.display()
            )));
        }
        let max_instances = overrides
            .max_instances
            .or(file.max_instances)
            .unwrap_or(defaults.max_instances);
        if max_instances == 0 {
            return Err(ConfigError("max_instances: must be at least 1".into()));
        }
        let initial_instances = overrides
            .instances
            .or(file.instances)
            .unwrap_or(defaults.initial_instances);
        if initial_instances > max_instances {
            return Err(ConfigError(format!(
                "instances: {initial_instances} is more than max_instances ({max_instances})"
            )));
        }
        let default_timeout =
            seconds("task_timeout", overrides.task_timeout.or(file.task_timeout))?
                .unwrap_or(defaults.default_timeout);
        let stop_grace = seconds("stop_grace", file.stop_grace)?.unwrap_or(Duration::from_secs(5));
        let keys = api_keys(&file.api_keys, overrides.api_keys.as_deref())?;
        let rate_limit = rate_limit(file.rate_limit_per_second, file.rate_limit_burst)?;
        let serving = Serving::check(serving::Given {
            tls_cert: overrides.tls_cert.clone().or(file.tls_cert),
            tls_key: overrides.tls_key.clone().or(file.tls_key),
            max_streams_per_key: file.max_streams_per_key,
            request_timeout: file.request_timeout,
            audit_retention: file.audit_retention,
        })?;
        let webhooks = webhooks::webhooks(file.webhooks)?;
        let postgres = nodes::checked(nodes::Given {
            store: overrides.store.clone().or(file.store),
            node: overrides.node_name.clone().or(file.node),
            lease: overrides.lease.or(file.lease),
        })?;
        if postgres.is_some() && serving.tls.is_some() {
            return Err(ConfigError(
                "tls_cert: not with a shared store (store: postgres://...): the links between \
                 nodes and the requests they forward to the owner are plaintext HTTP/2. Run the \
                 nodes on a private network, or put a TLS proxy in front of each"
                    .into(),
            ));
        }
        let rerun_interrupted = postgres.is_some();
        let node = postgres
            .as_ref()
            .map(|p| p.node.clone())
            .unwrap_or_default();
        let accounts = accounts::checked(file.accounts)?;
        let shares: usize = accounts.specs.iter().map(|a| a.instances).sum();
        if shares > max_instances {
            return Err(ConfigError(format!(
                "accounts: their instances add up to {shares}, more than max_instances \
                 ({max_instances})"
            )));
        }
        Ok(Self {
            listen: listen
                .or(file.listen)
                .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default")),
            agent: overrides.agent.or(file.agent).unwrap_or(AgentKind::Claude),
            agent_mode: overrides
                .agent_mode
                .or(file.agent_mode)
                .unwrap_or(AgentMode::LongLived),
            claude_command: overrides
                .claude_command
                .clone()
                .or(file.claude_command)
                .unwrap_or_else(|| "claude".into()),
            stop_grace,
            agent_env: file.agent_env.into_iter().collect(),
            cors_origins: file.cors_origins,
            allowed_hosts: checked_hosts(
                overrides
                    .allowed_hosts
                    .clone()
                    .unwrap_or(file.allowed_hosts),
            )?,
            data_dir: overrides.data_dir.clone().or(file.data_dir),
            in_memory: overrides.in_memory,
            keep_worktrees: file.keep_worktrees,
            instance_memory_limit: file.instance_memory_limit_mb.map(|mb| mb * 1024 * 1024),
            keys,
            allow_commands: overrides
                .allow_commands
                .or(file.allow_commands)
                .unwrap_or(true),
            rate_limit,
            serving,
            webhooks,
            postgres,
            engine: EngineConfig {
                accounts: accounts.specs.clone(),
                initial_instances,
                max_instances,
                default_timeout,
                working_directory,
                event_retention: file.event_retention.unwrap_or(defaults.event_retention),
                workspace_root: match file.workspace_root {
                    Some(root) if !root.is_dir() => {
                        return Err(ConfigError(format!(
                            "workspace_root: {} is not a directory",
                            root.display()
                        )));
                    }
                    other => other,
                },
                task_retention: file.task_retention.unwrap_or(defaults.task_retention),
                max_queued_tasks: match file.max_queued_tasks {
                    Some(0) => {
                        return Err(ConfigError("max_queued_tasks: must be at least 1".into()));
                    }
                    other => other.unwrap_or(defaults.max_queued_tasks),
                },
                allow_agent_env_override: checked_env_overrides(file.allow_agent_env_override)?,
                permissions,
                approval_timeout,
                rerun_interrupted,
                node,
                budget_usd: match file.budget_usd {
                    Some(b) if !(b.is_finite() && b > 0.0) => {
                        return Err(ConfigError(
                            "budget_usd: must be a positive number of US dollars".into(),
                        ));
                    }
                    other => other,
                },
                ..defaults
            },
            accounts,
        })
    }
}

impl Config {
    /// Listening beyond loopback with no API key would let anyone who can reach the port
    /// run agents with a shell: refused, unless `insecure` (then only a warning).
    pub fn check_exposure(&self, insecure: bool) -> Result<(), ConfigError> {
        if self.listen.ip().to_canonical().is_loopback() || !self.keys.is_empty() {
            return Ok(());
        }
        if insecure {
            tracing::warn!(
                listen = %self.listen,
                "--insecure: serving beyond loopback with no API key; anyone who can reach \
                 this port can run agents with a shell"
            );
            return Ok(());
        }
        Err(ConfigError(format!(
            "listen: {} is not a loopback address and no API key is configured, so anyone who \
             can reach it could run agents with a shell. Add a key (`claude-swarm key new \
             --name NAME --role admin` prints one and its `api_keys` entry for the config \
             file; or set SWARM_API_KEYS=name:role:key), listen on 127.0.0.1, or pass \
             --insecure to serve without keys anyway",
            self.listen
        )))
    }
}

/// The config file's keys, then `SWARM_API_KEYS`' (`name:role:key`, comma-separated).
fn api_keys(file: &[FileKey], env: Option<&str>) -> Result<Keys, ConfigError> {
    let mut keys = Vec::new();
    for (i, key) in file.iter().enumerate() {
        let key = ApiKey::hashed(&key.name, &key.role, &key.sha256)
            .map_err(|e| ConfigError(format!("api_keys[{i}]: {e}")))?;
        keys.push(key);
    }
    let entries = env.unwrap_or_default().split(',');
    for (i, entry) in entries.filter(|e| !e.trim().is_empty()).enumerate() {
        let key = ApiKey::from_entry(entry)
            .map_err(|e| ConfigError(format!("SWARM_API_KEYS entry {}: {e}", i + 1)))?;
        keys.push(key);
    }
    Keys::new(keys).map_err(|e| ConfigError(format!("api_keys: {e}")))
}

/// A limit when `rate_limit_per_second` is set, of bursts of `rate_limit_burst` (as many
/// as a second's by default).
fn rate_limit(
    per_second: Option<u32>,
    burst: Option<u32>,
) -> Result<Option<RateLimit>, ConfigError> {
    let Some(per_second) = per_second else {
        return match burst {
            Some(_) => Err(ConfigError(
                "rate_limit_burst: has no effect without rate_limit_per_second".into(),
            )),
            None => Ok(None),
        };
    };
    let per_second = NonZeroU32::new(per_second).ok_or_else(|| {
        ConfigError("rate_limit_per_second: must be at least 1 (leave it out for no limit)".into())
    })?;
    let burst = match burst {
        None => per_second,
        Some(burst) => NonZeroU32::new(burst)
            .ok_or_else(|| ConfigError("rate_limit_burst: must be at least 1".into()))?,
    };
    Ok(Some(RateLimit { per_second, burst }))
}

/// `$XDG_DATA_HOME/claude-swarm`, else `~/.local/share/claude-swarm`.
pub fn default_data_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/share"))
        })?;
    Some(base.join("claude-swarm"))
}

/// The hidden subcommand that runs the simulated CLI.
pub const SIMULATE_AGENT: &str = "simulate-agent";

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
    serde_norway::from_str(&text)
        .map_err(|e| ConfigError(format!("config file {}: {e}", path.display())))
}

fn seconds(field: &str, value: Option<f64>) -> Result<Option<Duration>, ConfigError> {
    match value {
        None => Ok(None),
        Some(s) => positive_seconds(s).map(Some).ok_or_else(|| {
            ConfigError(format!(
                "{field}: must be a positive number of seconds, not {s}"
            ))
        }),
    }
}

/// Each entry names a variable that needs the leave: any other is a mistake (a typo, or a
/// variable tasks may set anyway).
fn checked_env_overrides(names: Vec<String>) -> Result<Vec<String>, ConfigError> {
    if let Some(name) = names.iter().find(|name| !guarded_env(name)) {
        return Err(ConfigError(format!(
            "allow_agent_env_override: {name:?} is not a guarded variable; tasks may set it \
             without leave (guarded: {})",
            GUARDED_ENV.join(", ")
        )));
    }
    Ok(names)
}

/// Each allowed host is a name or address with an optional port: no scheme, no path.
fn checked_hosts(hosts: Vec<String>) -> Result<Vec<String>, ConfigError> {
    for host in &hosts {
        let (name, port) = match host.rsplit_once(':') {
            Some((name, port)) if !name.ends_with(':') && !port.contains(']') => (name, Some(port)),
            _ => (host.as_str(), None),
        };
        let plain = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'));
        if !plain || port.is_some_and(|p| p.parse::<u16>().is_err()) {
            return Err(ConfigError(format!(
                "allowed_hosts: {host:?} is not a host name or address with an optional port \
                 (like `swarm.example.com` or `10.0.0.5:50051`)"
            )));
        }
    }
    Ok(hosts)
}

mod serving;

pub use serving::{Serving, Tls};
mod webhooks;

#[cfg(test)]
mod tests;

mod permissions;
