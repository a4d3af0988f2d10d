//! The engine's data: tasks, instances, events and workflows, each enum with one table of
//! its words ([`words`]). Plain values: no I/O, no clock.

pub mod account;
pub mod event;
pub mod instance;
pub mod task;
pub mod words;
