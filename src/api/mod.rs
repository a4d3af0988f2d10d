//! Adapters only: convert, call the engine, map errors. No rule lives here.

pub mod audit;
pub mod auth;
pub mod convert;
pub mod dashboard;
pub mod error;
pub mod grpc;
pub mod guard;
pub mod metrics;
pub mod rate_limit;
pub mod rest;
pub mod server;
pub mod service;
pub mod stream_limit;
pub mod timeout;
pub mod tls;

use crate::engine::workflow::MAX_DOCUMENT_BYTES;

/// The largest request any surface takes: a REST body, or a gRPC or grpc-web message.
/// Twice the largest workflow document, so that a document of the largest size fits
/// however it comes (as a YAML body, a gRPC string, or JSON text with its escapes), and so
/// does a batch of as many tasks as a workflow may have (`MAX_TASKS`). Larger requests are
/// refused with 413 (`payload_too_large`) or RESOURCE_EXHAUSTED.
pub const MAX_REQUEST_BYTES: usize = 2 * MAX_DOCUMENT_BYTES;
