//! The command line: `serve`, `run` (a workflow in-process), and client subcommands that
//! talk to a running server over gRPC. Tables for people, `--json` for scripts.

mod approvals;
mod audit;
mod client;
mod config;
mod key;
mod mcp;
mod print;
mod progress;
mod schedule;
mod webhook;
mod workflow;

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::{
    api::server,
    config::{Config, ConfigError, Overrides},
};

#[derive(Parser, Debug)]
#[command(
    name = "claude-swarm",
    version,
    about = "Run a pool of Claude Code agents over a queue of prompts"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Server to talk to (client subcommands).
    #[arg(
        long,
        global = true,
        env = "SWARM_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    server: String,
    /// API key for the server (client subcommands). Prefer SWARM_API_KEY: `ps` shows flags.
    #[arg(long, global = true, env = "SWARM_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// PEM certificate(s) to trust for an `https://` server besides the system's roots (a
    /// self-signed server certificate, or its CA).
    #[arg(long, global = true, env = "SWARM_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// How log lines are written to standard error (`SWARM_LOG` chooses which).
    #[arg(
        long,
        global = true,
        env = "SWARM_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text
    )]
    log_format: LogFormat,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// For people: one line of text an event, in colour on a terminal.
    Text,
    /// For log collectors: one JSON object a line, with the event's fields and its spans'.
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve gRPC, grpc-web and REST on one port.
    Serve(ServeArgs),
    /// Show or check the configuration `serve` would use (it takes the same flags).
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Run a workflow file in this process, end to end; exits non-zero if a task did not complete.
    Run {
        file: PathBuf,
        /// Set a workflow variable (repeatable).
        #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
        vars: Vec<(String, String)>,
        #[command(flatten)]
        overrides: Overrides,
    },
    /// Show the swarm's status.
    Status,
    /// Lift an account's usage-limit pause now, before the reset its runs reported (needs
    /// an admin key); if the limit still holds, the next refused run pauses it again.
    #[command(name = "resume-account")]
    ResumeAccount {
        /// A name from the server's `accounts` (`default` when none are configured).
        name: String,
    },
    /// Submit one task.
    Submit {
        prompt: String,
        #[arg(long)]
        name: Option<String>,
        /// low, normal, high or critical.
        #[arg(long, default_value = "normal")]
        priority: String,
        /// Seconds.
        #[arg(long)]
        timeout: Option<f64>,
        /// Task ids that must complete first.
        #[arg(long = "depends-on")]
        depends_on: Vec<String>,
        #[arg(long)]
        working_directory: Option<String>,
        #[arg(long)]
        model: Option<String>,
        /// A JSON Schema (JSON text) the answer must match; the result keeps the answer as
        /// its structured output.
        #[arg(long)]
        output_schema: Option<String>,
        /// Continue this session (a `result.session_id` of an earlier task).
        #[arg(long)]
        resume_session: Option<String>,
        /// Run only on this account's instances (one of the server's `accounts`).
        #[arg(long)]
        account: Option<String>,
        /// Wait for the task to finish and print it.
        #[arg(long)]
        wait: bool,
    },
    /// List, show or cancel tasks.
    #[command(subcommand)]
    Task(TaskCommand),
    /// List, spawn, scale or terminate instances.
    #[command(subcommand)]
    Instance(InstanceCommand),
    /// Run, show, list or cancel workflows on the server.
    #[command(subcommand)]
    Workflow(WorkflowCommand),
    /// Run workflows (or one task) on a cron schedule.
    #[command(subcommand)]
    Schedule(schedule::ScheduleCommand),
    /// Post events to URLs, and read their delivery logs.
    #[command(subcommand)]
    Webhook(webhook::WebhookCommand),
    /// Make API keys for the server's `api_keys` (or SWARM_API_KEYS).
    #[command(subcommand)]
    Key(KeyCommand),
    /// Serve MCP on stdin/stdout for a Claude Code session, as a client of the server:
    /// `claude mcp add swarm -- claude-swarm mcp --server http://127.0.0.1:50051`.
    Mcp {
        /// Let tool calls submit tasks with `permission_mode: bypassPermissions` (an agent
        /// that runs every tool unasked); refused by default.
        #[arg(long)]
        allow_bypass_permissions: bool,
    },
    /// The server's audit: who changed what, newest first (needs an admin key).
    Audit {
        /// Only records at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Only calls made with this key (its name; `anonymous` without keys).
        #[arg(long)]
        key: Option<String>,
        /// Only this action (`POST /tasks`, `claude_swarm.v1.TaskService/CancelTask`).
        #[arg(long)]
        action: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// List approvals: tool calls waiting on a person (and the ones decided).
    Approvals {
        /// Only these states (pending, allowed, denied, expired); repeatable.
        #[arg(long)]
        state: Vec<String>,
        #[arg(long)]
        task: Option<String>,
        #[arg(long)]
        workflow: Option<String>,
    },
    /// Allow a pending approval: the tool runs.
    Approve {
        id: String,
        /// Also add the rule covering this call to the task's (default), workflow's or
        /// swarm's policy (swarm needs an admin key).
        #[arg(long, value_name = "SCOPE", num_args = 0..=1)]
        always: Option<Option<String>>,
        #[arg(long)]
        message: Option<String>,
        /// Run the tool with this input instead (a JSON object).
        #[arg(long, value_name = "JSON")]
        input: Option<String>,
    },
    /// Deny a pending approval: the tool does not run, and the agent is told why.
    Deny {
        id: String,
        /// Sent to the agent.
        #[arg(long)]
        message: Option<String>,
        /// Also add a deny rule for this call to the task's (default), workflow's or
        /// swarm's policy.
        #[arg(long, value_name = "SCOPE", num_args = 0..=1)]
        always: Option<Option<String>>,
    },
    /// Print events as they happen.
    Watch {
        #[arg(long)]
        task: Option<String>,
        #[arg(long)]
        workflow: Option<String>,
        #[arg(long)]
        instance: Option<String>,
        /// Replay retained events after this sequence number first.
        #[arg(long)]
        after: Option<u64>,
    },
}

/// Where `serve` takes its configuration from; `config show` and `config check` take the
/// same, so they read exactly what `serve` would.
#[derive(Args, Debug)]
struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:50051].
    #[arg(long, env = "SWARM_LISTEN")]
    listen: Option<SocketAddr>,
    /// Serve beyond loopback even with no API key (anyone who can reach the port can
    /// run agents with a shell).
    #[arg(long)]
    insecure: bool,
    #[command(flatten)]
    overrides: Overrides,
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Print the effective configuration (defaults < file < environment < flags) as YAML,
    /// or JSON with `--json`; API keys show their name and role, `agent_env` values `***`.
    Show(ServeArgs),
    /// Check the configuration as `serve` does before it opens its port (the agent command
    /// included): exits 0 if it is valid, else non-zero with the error naming the key.
    Check(ServeArgs),
}

#[derive(Subcommand, Debug)]
enum KeyCommand {
    /// Print a new random key, its SHA-256 and the config entry that accepts it.
    New {
        /// Names the key in the server's logs and errors.
        #[arg(long)]
        name: String,
        /// read, operate or admin.
        #[arg(long)]
        role: String,
    },
    /// Print the SHA-256 of a key read from standard input, for `api_keys[].sha256`.
    Hash,
}

#[derive(Subcommand, Debug)]
enum TaskCommand {
    List {
        /// Only tasks in this state (repeatable).
        #[arg(long)]
        status: Vec<String>,
        #[arg(long)]
        workflow: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    Get {
        id: String,
    },
    Cancel {
        id: String,
    },
}

#[derive(Subcommand, Debug)]
enum InstanceCommand {
    List,
    Spawn {
        #[arg(long, default_value_t = 1)]
        count: u32,
        #[arg(long)]
        working_directory: Option<String>,
    },
    Scale {
        target: i32,
    },
    Terminate {
        id: String,
    },
}

#[derive(Subcommand, Debug)]
enum WorkflowCommand {
    /// Submit a workflow file and follow it to its end.
    Run {
        file: PathBuf,
        /// Set a workflow variable (repeatable).
        #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
        vars: Vec<(String, String)>,
    },
    /// Check a workflow file without running anything (locally; no server needed).
    Validate {
        file: PathBuf,
        #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
        vars: Vec<(String, String)>,
    },
    Get {
        id: String,
    },
    List,
    Cancel {
        id: String,
    },
}

impl Cli {
    /// How log lines are written (`--log-format`, `SWARM_LOG_FORMAT`).
    pub fn log_format(&self) -> LogFormat {
        self.log_format
    }

    /// Talks to a server (as opposed to being one, or running a workflow in-process).
    pub fn is_client(&self) -> bool {
        !matches!(self.command, Command::Serve(_) | Command::Run { .. })
    }
}

type CliResult = Result<ExitCode, Box<dyn std::error::Error>>;

pub async fn main(cli: Cli) -> ExitCode {
    let json = cli.json;
    // Progress lines on stderr would break JSON documents on stdout, or JSON log lines.
    let quiet = json || cli.log_format == LogFormat::Json;
    let outcome = match cli.command {
        Command::Serve(args) => serve(&args).await,
        Command::Config(command) => config::config(command, json),
        Command::Run {
            file,
            vars,
            overrides,
        } => workflow::run_local(&file, &vars, &overrides, json, quiet).await,
        Command::Workflow(WorkflowCommand::Validate { file, vars }) => {
            workflow::validate(&file, &vars)
        }
        Command::Key(command) => key::key(command, json),
        command => {
            let server = client::Server {
                url: &cli.server,
                api_key: cli.api_key.as_deref(),
                ca_cert: cli.ca_cert.as_deref(),
            };
            match command {
                Command::Mcp {
                    allow_bypass_permissions,
                } => mcp::serve(server, allow_bypass_permissions).await,
                command => client::client(command, server, json, quiet).await,
            }
        }
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            match e.downcast_ref::<tonic::Status>() {
                Some(status) => eprintln!("error: {:?}: {}", status.code(), status.message()),
                None => eprintln!("error: {e}"),
            }
            ExitCode::from(2)
        }
    }
}

/// The configuration `serve` runs with, checked as it is before the port opens.
fn checked(args: &ServeArgs) -> Result<Config, ConfigError> {
    let config = Config::load(&args.overrides, args.listen)?;
    config.check_exposure(args.insecure)?;
    // The agent is checked before the port opens: a missing `claude` is reported first.
    config.agent()?;
    Ok(config)
}

async fn serve(args: &ServeArgs) -> CliResult {
    let config = checked(args)?;
    if let Some(target) = &config.postgres {
        crate::app::serve_node(&config, target, server::shutdown_signal())
            .await
            .map_err(|e| e.to_string())?;
        return Ok(ExitCode::SUCCESS);
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    crate::app::log_listening(&config, listener.local_addr()?);
    crate::app::serve(&config, listener, server::shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// `NAME=VALUE` of `--var`.
fn parse_var(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!("{text:?} is not NAME=VALUE")),
    }
}
