//! claude-swarm runs a pool of Claude Code CLI processes and feeds them a queue of
//! prompts: priorities, dependencies, workflows, cancellation, timeouts and live events.
//!
//! # Layout
//!
//! The engine is the core and owns its ports; everything else is an adapter around it.
//! Arrows point into [`engine`]: it imports nothing from the modules below it.
//!
//! - [`engine`]: the domain. `engine::model` holds the data (tasks, instances, accounts,
//!   events, each enum with one table of its words); `engine::core` the rules as a plain state
//!   machine (an input and its time in, effects out: no tokio, no clock, unit-tested rule
//!   by rule; `engine::model::approval` holds the permission rules and approvals, the
//!   core's `approvals` family decides tool calls); [`engine::actor`] the one task that owns the core and executes its effects
//!   (runs, timers, group commits, replies) behind the cheap [`engine::Engine`] handle;
//!   [`engine::ports`] the traits the engine calls (`Agent`, `Store`) and their types;
//!   [`engine::schedule`] cron schedules (a core family arms a timer per schedule).
//! - [`agent`]: implements the `Agent` port. Claude Code's stream-json protocol, how a
//!   run's end becomes a failure class (`agent::verdict`), one file per way of running a
//!   process (per task, long-lived) and what both need of a child (a clean environment,
//!   its own process group, death with the server, the end of a group a crash left
//!   behind), the control protocol (`agent::control`: the CLI's `can_use_tool` questions
//!   asked of the engine and answered on stdin), the simulated CLI, and an instant
//!   in-process agent.
//! - [`store`]: implements the `Store` port on SQLite; stored rows are their own versioned
//!   types, migrated when an older data directory opens (approvals, added swarm rules,
//!   schedules and accounts have tables of their own). Beside it, outside the port,
//!   `store::audit`: the audit log's table, with its own connection and writer thread.
//!   `store::postgres` implements the port on PostgreSQL (`--store postgres://...`) with the
//!   same rows: nodes on one database, one owning it under a lease (heartbeats, an epoch
//!   and each task's attempt as fencing tokens), the others standing by to take over.
//! - [`workflow`]: the workflow file format. Reads a YAML document, checks it (each error
//!   naming the field, the line and the column) and hands the engine a plan, with warnings
//!   for `{{ }}` text it kept as written; the engine never reads YAML.
//! - [`api`]: thin adapters. One conversion between engine types and the API messages,
//!   one error mapping, the guard every request passes (Host, Origin, API keys, content
//!   types, the rate limit), `api::auth` (keys, roles, and the one table of the role each
//!   RPC and route needs; stream tokens), `api::rate_limit` (a token bucket per key or
//!   client address), `api::metrics` (`/metrics`, the request-counting layer),
//!   `api::stream_limit` (live streams per key), `api::timeout` (`request_timeout`),
//!   `api::audit` (the layer that records state-changing calls, and `ListAudit`),
//!   `api::tls` (rustls on the port), `api::dashboard` (the dashboard's files from
//!   `clients/web/dist/`, embedded and served locked down), the gRPC services (among them
//!   `CallerService`, which tells a caller its key's role), the REST gateway, and the
//!   server that puts them all on one port.
//! - [`notify`]: webhooks: a worker per webhook follows the engine's events from a cursor
//!   kept in the data file and posts them signed, retried with backoff; a delivery log.
//! - [`config`]: typed settings from defaults, a YAML file, `SWARM_*` variables and flags,
//!   checked before any port opens; `config::serving` holds TLS, the stream and time
//!   limits and the audit's retention.
//! - [`app`]: the composition root: config -> agent -> store -> engine -> server.
//! - [`cli`]: the command line: `serve`, `run`, `config show|check`, `key`, and the client
//!   subcommands (`audit`, `schedule ...` and `mcp` among them: `mcp` is an MCP server on
//!   stdio for a Claude Code session, a client of the gRPC API like the others), over TLS
//!   for an `https://` server.
//! - [`pb`]: the code generated from `proto/`, and its descriptor set for reflection.

pub mod agent;
pub mod api;
pub mod app;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod engine;
pub mod notify;
pub mod store;
pub mod workflow;

/// Code generated from `proto/claude_swarm/v1/*.proto`. Nothing else includes it.
pub mod pb {
    #![allow(clippy::all, clippy::pedantic)]
    tonic::include_proto!("claude_swarm.v1");
    include!(concat!(env!("OUT_DIR"), "/claude_swarm.v1.serde.rs"));

    /// For gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("claude_swarm_descriptor");
}
