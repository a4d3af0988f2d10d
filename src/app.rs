//! The composition root: configuration -> agent -> store -> engine -> server. `serve` and
//! `run` start claude-swarm through here, so a setting means the same in both.

use std::{
    future::Future,
    io,
    path::{Path, PathBuf},
    sync::Arc,
};

use tokio::net::TcpListener;

use crate::{
    agent::{AgentCommand, ProcessAgent},
    api::server::{self, ServerOptions},
    config::{AgentKind, AgentMode, Config, ConfigError, SIMULATE_AGENT},
    engine::{Engine, ports::Agent},
    store::{audit::AuditLog, postgres::PostgresStore, sqlite::SqliteStore},
};

impl Config {
    /// The agent to run tasks with. A missing `claude` is an error that says what to do,
    /// never a silent switch to the simulation.
    pub fn agent(&self) -> Result<ProcessAgent, ConfigError> {
        let command = match self.agent {
            AgentKind::Claude => {
                let program = find_program(&self.claude_command).ok_or_else(|| {
                    ConfigError(format!(
                        "claude_command: the Claude Code CLI `{}` was not found on PATH. Install it with \
                         `npm install -g @anthropic-ai/claude-code@2.1.332`, point --claude-command \
                         (or SWARM_CLAUDE_COMMAND) at it, or try claude-swarm without an account \
                         with `--agent simulated`",
                        self.claude_command.display()
                    ))
                })?;
                AgentCommand {
                    program,
                    leading_args: Vec::new(),
                    label: "claude".into(),
                    stop_grace: self.stop_grace,
                    env: self.agent_env.clone(),
                    long_lived: self.agent_mode == AgentMode::LongLived,
                    keep_worktrees: self.keep_worktrees,
                    memory_limit: self.instance_memory_limit,
                    workspace_root: self.engine.workspace_root.clone(),
                    accounts: self.accounts.env.clone(),
                }
            }
            AgentKind::Simulated => AgentCommand {
                program: std::env::current_exe().map_err(|e| {
                    ConfigError(format!(
                        "cannot locate this executable for the simulated agent: {e}"
                    ))
                })?,
                leading_args: vec![SIMULATE_AGENT.into()],
                label: "simulated".into(),
                stop_grace: self.stop_grace,
                env: self.agent_env.clone(),
                long_lived: self.agent_mode == AgentMode::LongLived,
                keep_worktrees: self.keep_worktrees,
                memory_limit: self.instance_memory_limit,
                workspace_root: self.engine.workspace_root.clone(),
                accounts: self.accounts.env.clone(),
            },
        };
        Ok(ProcessAgent::new(command))
    }

    /// Starts the engine with `agent`: on the SQLite store in `data_dir` (or `default_dir`
    /// when none is set), or in memory with `--in-memory` or no directory at all.
    pub fn start_engine(
        &self,
        agent: Arc<dyn Agent>,
        default_dir: Option<PathBuf>,
    ) -> Result<Engine, ConfigError> {
        if let Some(target) = &self.postgres {
            return self.start_shared(target, agent);
        }
        match self.state_dir(default_dir) {
            None => Ok(Engine::start(self.engine.clone(), agent)),
            Some(dir) => {
                let store = SqliteStore::open(&dir, self.engine.event_retention as u64)
                    .map_err(|e| ConfigError(e.to_string()))?;
                Engine::start_durable(self.engine.clone(), agent, Box::new(store))
                    .map_err(|e| ConfigError(e.to_string()))
            }
        }
    }

    /// The engine on the PostgreSQL store of `target`, once this node owns the database
    /// (a standby waits here). Blocking calls leave the runtime's worker first. A node
    /// that loses its lease exits at once: its successor runs its work again, and whatever
    /// this node would still write is refused.
    fn start_shared(
        &self,
        target: &crate::store::postgres::Target,
        agent: Arc<dyn Agent>,
    ) -> Result<Engine, ConfigError> {
        let retention = self.engine.event_retention as u64;
        let engine = tokio::task::block_in_place(|| {
            let store = PostgresStore::open(target, retention)?;
            exit_when_lost(&store, &target.node);
            Engine::start_durable(self.engine.clone(), agent, Box::new(store))
        });
        engine.map_err(|e| ConfigError(e.to_string()))
    }

    /// Where state is kept: `data_dir` (or `default_dir` when none is set); `None` in memory
    /// (and, with a PostgreSQL store, unless a data directory is set: the audit and the
    /// webhooks' cursors are then this node's, in memory).
    fn state_dir(&self, default_dir: Option<PathBuf>) -> Option<PathBuf> {
        if self.postgres.is_some() {
            return self.data_dir.clone();
        }
        if self.in_memory {
            None
        } else {
            self.data_dir.clone().or(default_dir)
        }
    }

    /// The audit, in the same place as the engine's state (opened after it, so the store
    /// makes the file and keeps it private).
    pub fn audit_log(&self, default_dir: Option<PathBuf>) -> Result<AuditLog, ConfigError> {
        AuditLog::open(
            self.state_dir(default_dir).as_deref(),
            self.serving.audit_retention,
        )
        .map_err(|e| ConfigError(e.to_string()))
    }

    /// What the HTTP side needs of the configuration (the audit in memory: see
    /// [`Config::audit_log`]).
    pub fn server_options(&self) -> ServerOptions {
        ServerOptions {
            workspace_root: self.engine.working_directory.clone(),
            cors_origins: self.cors_origins.clone(),
            allowed_hosts: self.allowed_hosts.clone(),
            keys: self.keys.clone(),
            allow_commands: self.allow_commands,
            rate_limit: self.rate_limit,
            max_streams_per_key: self.serving.max_streams_per_key,
            request_timeout: self.serving.request_timeout,
            tls: self.serving.tls.as_ref().map(|tls| tls.config.clone()),
            audit: AuditLog::default(),
            webhooks: self.webhooks.clone(),
            data_dir: None,
            node_link: None,
        }
    }
}

/// The exit status of a node that lost its lease on a shared database (`EX_TEMPFAIL`).
pub const LEASE_LOST: i32 = 75;

/// `claude-swarm serve`: the configured agent and store, the engine, and every surface on
/// `listener` until `shutdown`.
pub async fn serve(
    config: &Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let default_dir = crate::config::default_data_dir();
    let engine = start(config, default_dir.clone()).map_err(io::Error::other)?;
    serve_engine(config, engine, listener, shutdown).await
}

/// `claude-swarm serve` on an engine already started (a node on a shared database takes
/// its port only once it owns the database: a standby refuses connections, never hangs).
pub async fn serve_engine(
    config: &Config,
    engine: Engine,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let default_dir = crate::config::default_data_dir();
    let options = ServerOptions {
        audit: config
            .audit_log(default_dir.clone())
            .map_err(io::Error::other)?,
        data_dir: config.state_dir(default_dir),
        ..config.server_options()
    };
    server::serve_with(listener, engine, options, shutdown).await
}

/// `claude-swarm serve` on a shared database. Its port opens at once. Until this node owns
/// the database, it lends its instances to the node that does (`crate::cluster::worker`)
/// and forwards every request on its port there (`crate::cluster::forward`). Once it owns
/// it (at once, when no other node does), it runs the swarm, with the other nodes'
/// instances attached over the node link, and serves every surface itself.
pub async fn serve_node(
    config: &Config,
    target: &crate::store::postgres::Target,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    use crate::cluster::{ClusterAgent, Links, forward::Forward, leader::NodeLink, worker::Worker};
    let local: Arc<dyn Agent> = Arc::new(config.agent()?);
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let address = listener.local_addr()?;
    // Two handles on the one socket: the forwarding side's goes when this node takes over.
    let (listener, forwarding) = {
        let socket = listener.into_std()?;
        let copy = socket.try_clone()?;
        (TcpListener::from_std(socket)?, TcpListener::from_std(copy)?)
    };
    let (stop_worker, stopping) = tokio::sync::watch::channel(false);
    let (found, owner) = tokio::sync::watch::channel(None);
    let url = target.url.clone();
    let worker = Worker {
        node: target.node.clone(),
        instances: u32::try_from(config.engine.initial_instances).unwrap_or(u32::MAX),
        agent: local.clone(),
        lease: target.lease,
        find: Arc::new(move || {
            let owner = crate::store::postgres::owner(&url).ok().flatten();
            found.send_replace(owner.clone());
            owner
        }),
    };
    let lending = tokio::spawn(worker.run(stopping.clone()));
    tracing::info!(address = %address, node = %target.node, "forwarding the API to the node that owns the database, until this one does");
    let forwarded = {
        let mut stopping = stopping;
        let done = async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        };
        let options = config.server_options();
        tokio::spawn(server::forward(
            forwarding,
            options,
            Forward::new(owner),
            done,
        ))
    };
    let stop_lending = || async {
        let _ = stop_worker.send(true);
        let _ = lending.await;
        if let Ok(Err(cause)) = forwarded.await {
            tracing::warn!(%cause, "the forwarding side of the port failed");
        }
    };
    let retention = config.engine.event_retention as u64;
    // A thread of its own, not the runtime's blocking pool: a node stopped while it waits
    // for the lease must not wait for that thread to exit.
    let (opened, opening) = tokio::sync::oneshot::channel();
    {
        let target = target.clone();
        std::thread::Builder::new()
            .name("swarm-lease-wait".into())
            .spawn(move || {
                let _ = opened.send(PostgresStore::open(&target, retention));
            })?;
    }
    let mut shutdown = Box::pin(shutdown);
    let store = tokio::select! {
        store = opening => store.map_err(|_| "the lease's thread ended")??,
        () = &mut shutdown => {
            stop_lending().await;
            return Ok(());
        }
    };
    // This node owns the database: what it ran for the last owner stops first (the swarm
    // runs those tasks again), then its engine starts.
    stop_lending().await;
    let mut store = store;
    let (epoch, secret) = tokio::task::block_in_place(|| store.link())?;
    exit_when_lost(&store, &target.node);
    let links = Arc::new(Links::default());
    let agent = Arc::new(ClusterAgent::new(local, links.clone()));
    let engine = tokio::task::block_in_place(|| {
        Engine::start_durable(config.engine.clone(), agent, Box::new(store))
    })?;
    log_listening(config, address);
    let advertised = advertised(address);
    let (url, node) = (target.url.clone(), target.node.clone());
    tokio::task::spawn_blocking(move || {
        crate::store::postgres::advertise(&url, &node, epoch, &advertised)
    })
    .await??;
    let default_dir = crate::config::default_data_dir();
    let options = ServerOptions {
        audit: config.audit_log(default_dir.clone())?,
        data_dir: config.state_dir(default_dir),
        node_link: Some(NodeLink::new(
            &target.node,
            engine.clone(),
            links,
            &secret,
            target.lease,
        )),
        ..config.server_options()
    };
    server::serve_with(listener, engine, options, shutdown).await?;
    Ok(())
}

/// A node that loses its lease exits at once: its successor runs its work again, and
/// whatever this node would still write is refused.
fn exit_when_lost(store: &PostgresStore, node: &str) {
    let lost = store.lost();
    let node = node.to_owned();
    tokio::spawn(async move {
        lost.await;
        tracing::error!(node = %node, "this node lost its lease on the database; exiting");
        std::process::exit(LEASE_LOST);
    });
}

/// Where the other nodes reach this one: the listen address, or this machine's host name
/// with its port when it listens on every address.
fn advertised(address: std::net::SocketAddr) -> String {
    if address.ip().is_unspecified() {
        format!("{}:{}", crate::config::host_name(), address.port())
    } else {
        address.to_string()
    }
}

/// The log lines that say where the server listens (tests and people read them).
pub fn log_listening(config: &Config, address: std::net::SocketAddr) {
    tracing::info!(address = %address, agent = ?config.agent, tls = config.serving.tls.is_some(), "serving gRPC, grpc-web and REST");
    let scheme = if config.serving.tls.is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!(url = %format!("{scheme}://{address}/"), "the dashboard");
}

/// The configured agent and the engine on it (`run` keeps state in memory unless a data
/// directory is configured).
pub fn start(config: &Config, default_dir: Option<PathBuf>) -> Result<Engine, ConfigError> {
    let agent = config.agent()?;
    config.start_engine(Arc::new(agent), default_dir)
}

/// `program` itself when it names a path, else the first match on PATH.
fn find_program(program: &Path) -> Option<PathBuf> {
    let is_file = |p: &Path| p.is_file();
    if program.components().count() > 1 {
        return is_file(program).then(|| program.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| is_file(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Overrides;

    #[test]
    fn missing_claude_is_a_clear_error() {
        let overrides = Overrides {
            claude_command: Some("claude-not-installed-here".into()),
            ..Default::default()
        };
        let config = Config::load(&overrides, None).unwrap();
        let err = config.agent().err().expect("no claude here").to_string();
        assert!(
            err.contains("was not found") && err.contains("--agent simulated"),
            "{err}"
        );
    }
}
