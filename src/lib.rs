//! claude-swarm runs a pool of Claude Code CLI processes and feeds them a queue of
//! prompts: priorities, dependencies, workflows, cancellation, timeouts and live events.
//!
//! # Layout
//!
//! - [`engine`]: the domain. Tasks and their states, the ready queue and dependency rules,
//!   the instance pool, workflows, numbered events, and the scheduler task that owns all of
//!   it behind the cheap [`engine::Engine`] handle. Knows nothing of gRPC, HTTP or the CLI.
//! - [`workflow`]: the workflow file format. Reads a YAML document, checks it (each error
//!   naming the field, the line and the column) and hands the engine a plan, with warnings
//!   for `{{ }}` text it kept as written; the engine never reads YAML.
//! - [`agent`]: how a task runs on a process. The stream-json protocol of Claude Code, the
//!   process wrapper (process groups, stop escalation), and the simulated CLI that speaks
//!   the same protocol for demos and tests.
//! - [`api`]: thin adapters. One conversion between engine types and the API messages,
//!   one error mapping, the gRPC services, the REST gateway, and the server that puts them
//!   all on one port.
//! - [`config`]: typed settings from defaults, a YAML file, `SWARM_*` variables and flags.
//! - [`cli`]: the command line: `serve`, `run`, and the client subcommands.
//! - [`pb`]: the code generated from `proto/`, and its descriptor set for reflection.

pub mod agent;
pub mod api;
pub mod cli;
pub mod config;
pub mod engine;
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
