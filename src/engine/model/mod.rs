//! The engine's data: tasks, instances, events, workflows and approvals, each enum with one table of
//! its words ([`words`]). Plain values: no I/O, no clock.

pub mod account;
pub mod approval;
pub mod event;
pub mod id;
pub mod instance;
pub mod rare;
pub mod schema;
pub mod task;
pub mod words;
