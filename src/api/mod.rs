//! Adapters only: convert, call the engine, map errors. No rule lives here.

pub mod auth;
pub mod convert;
pub mod error;
pub mod grpc;
pub mod guard;
pub mod metrics;
pub mod rest;
pub mod server;
pub mod service;
