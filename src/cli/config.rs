//! `claude-swarm config show|check`: the configuration `serve` would use, read through the
//! same [`Config::load`] from the same flags, printed with its secrets masked or checked
//! as `serve` checks it before its port opens.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
};

use serde::Serialize;

use super::{CliResult, ConfigCommand};
use crate::config::{AgentKind, AgentMode, Config, default_data_dir};

/// What a secret is shown as.
const MASK: &str = "***";

pub(super) fn config(command: ConfigCommand, json: bool) -> CliResult {
    match command {
        ConfigCommand::Show(args) => {
            let config = Config::load(&args.overrides, args.listen)?;
            let shown = Shown::of(&config);
            if json {
                println!("{}", serde_json::to_string_pretty(&shown)?);
            } else {
                print!("{}", serde_norway::to_string(&shown)?);
            }
        }
        ConfigCommand::Check(args) => {
            super::checked(&args)?;
            println!("configuration is valid");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The effective configuration under the config file's keys, so a value can be copied
/// back into one. Secrets are masked: API keys show their name and role only, `agent_env`
/// and each account's `env` their names with `***` for each value.
#[derive(Serialize)]
struct Shown<'a> {
    listen: SocketAddr,
    agent: AgentKind,
    agent_mode: AgentMode,
    claude_command: &'a Path,
    instances: usize,
    max_instances: usize,
    /// Seconds.
    task_timeout: f64,
    working_directory: &'a Path,
    /// Seconds.
    stop_grace: f64,
    event_retention: usize,
    agent_env: BTreeMap<&'a str, &'static str>,
    cors_origins: &'a [String],
    allowed_hosts: &'a [String],
    /// Where `serve` keeps its state (its default when none is set); `null`: in memory.
    data_dir: Option<PathBuf>,
    in_memory: bool,
    budget_usd: Option<f64>,
    workspace_root: Option<&'a Path>,
    instance_memory_limit_mb: Option<u64>,
    task_retention: usize,
    keep_worktrees: bool,
    max_queued_tasks: usize,
    allow_agent_env_override: &'a [String],
    api_keys: Vec<ShownKey<'a>>,
    allow_commands: bool,
    /// `null`: no rate limit.
    rate_limit_per_second: Option<u32>,
    rate_limit_burst: Option<u32>,
    /// `null`: plaintext.
    tls_cert: Option<&'a Path>,
    tls_key: Option<&'a Path>,
    max_streams_per_key: usize,
    /// Seconds.
    request_timeout: f64,
    audit_retention: usize,
    permissions: ShownPermissions<'a>,
    accounts: Vec<ShownAccount<'a>>,
    webhooks: Vec<ShownWebhook<'a>>,
    /// The PostgreSQL URL, its password masked; `null`: SQLite in `data_dir`.
    store: Option<String>,
    /// This node's name and its lease (seconds), with a PostgreSQL store.
    node: Option<&'a str>,
    lease: Option<f64>,
}

/// The swarm-wide permission rules and the approvals' deadline (seconds).
#[derive(Serialize)]
struct ShownPermissions<'a> {
    allow: &'a [String],
    deny: &'a [String],
    /// `null`: ask (the default).
    ask: Option<bool>,
    approval_timeout: f64,
}

/// An account as shown: the names of its variables, each value `***`.
#[derive(Serialize)]
struct ShownAccount<'a> {
    name: &'a str,
    instances: usize,
    env: BTreeMap<&'a str, &'static str>,
}

/// A webhook as shown: its URL's scheme and host only (a URL may be a secret, Slack's
/// are), its secret masked.
#[derive(Serialize)]
struct ShownWebhook<'a> {
    name: &'a str,
    url: String,
    events: Vec<&'static str>,
    format: &'static str,
    secret: Option<&'static str>,
    timeout: f64,
    retry_backoff: f64,
    max_attempts: u32,
}

/// An API key as shown: never its secret or digest.
#[derive(Serialize)]
struct ShownKey<'a> {
    name: &'a str,
    role: &'static str,
}

impl<'a> Shown<'a> {
    fn of(config: &'a Config) -> Self {
        let engine = &config.engine;
        Self {
            listen: config.listen,
            agent: config.agent,
            agent_mode: config.agent_mode,
            claude_command: &config.claude_command,
            instances: engine.initial_instances,
            max_instances: engine.max_instances,
            task_timeout: engine.default_timeout.as_secs_f64(),
            working_directory: &engine.working_directory,
            stop_grace: config.stop_grace.as_secs_f64(),
            event_retention: engine.event_retention,
            agent_env: config
                .agent_env
                .iter()
                .map(|(name, _)| (name.as_str(), MASK))
                .collect(),
            cors_origins: &config.cors_origins,
            allowed_hosts: &config.allowed_hosts,
            data_dir: if config.in_memory {
                None
            } else {
                config.data_dir.clone().or_else(default_data_dir)
            },
            in_memory: config.in_memory,
            store: config
                .postgres
                .as_ref()
                .map(|t| crate::store::postgres::shown(&t.url)),
            node: config.postgres.as_ref().map(|t| t.node.as_str()),
            lease: config.postgres.as_ref().map(|t| t.lease.as_secs_f64()),
            budget_usd: engine.budget_usd,
            workspace_root: engine.workspace_root.as_deref(),
            instance_memory_limit_mb: config.instance_memory_limit.map(|b| b / (1024 * 1024)),
            task_retention: engine.task_retention,
            keep_worktrees: config.keep_worktrees,
            max_queued_tasks: engine.max_queued_tasks,
            allow_agent_env_override: &engine.allow_agent_env_override,
            api_keys: config
                .keys
                .callers()
                .into_iter()
                .map(|caller| ShownKey {
                    name: &caller.name,
                    role: caller.role.as_str(),
                })
                .collect(),
            allow_commands: config.allow_commands,
            rate_limit_per_second: config.rate_limit.map(|l| l.per_second.get()),
            rate_limit_burst: config.rate_limit.map(|l| l.burst.get()),
            tls_cert: config.serving.tls.as_ref().map(|t| t.cert.as_path()),
            tls_key: config.serving.tls.as_ref().map(|t| t.key.as_path()),
            max_streams_per_key: config.serving.max_streams_per_key,
            request_timeout: config.serving.request_timeout.as_secs_f64(),
            audit_retention: config.serving.audit_retention,
            permissions: ShownPermissions {
                allow: &engine.permissions.allow,
                deny: &engine.permissions.deny,
                ask: engine.permissions.ask,
                approval_timeout: engine.approval_timeout.as_secs_f64(),
            },
            accounts: engine
                .accounts
                .iter()
                .map(|account| ShownAccount {
                    name: &account.name,
                    instances: account.instances,
                    env: config
                        .accounts
                        .env
                        .get(&account.name)
                        .into_iter()
                        .flatten()
                        .map(|(name, _)| (name.as_str(), MASK))
                        .collect(),
                })
                .collect(),
            webhooks: config
                .webhooks
                .iter()
                .map(|w| ShownWebhook {
                    name: &w.name,
                    url: reqwest::Url::parse(&w.url).map_or_else(
                        |_| MASK.to_owned(),
                        |u| format!("{}://{}/{MASK}", u.scheme(), u.authority()),
                    ),
                    events: w.topics.iter().map(|t| t.as_str()).collect(),
                    format: w.format.as_str(),
                    secret: w.secret.as_ref().map(|_| MASK),
                    timeout: w.timeout.as_secs_f64(),
                    retry_backoff: w.retry_backoff.as_secs_f64(),
                    max_attempts: w.max_attempts,
                })
                .collect(),
        }
    }
}
