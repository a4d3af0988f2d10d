//! Implements the engine's `Store` port. The engine hands the store one batch of changes
//! per turn (group commit) and answers its callers only once the batch is stored, so an
//! acknowledged submission survives a crash. SQLite in WAL mode is the default; stored
//! shapes are their own versioned types ([`rows`]), separate from the engine's.
//! The audit of API calls lives next to it ([`audit`]), in the same file, outside the port.
//! [`postgres`] keeps the same rows in PostgreSQL, for nodes that share one database.

pub(crate) mod approvals;
pub mod audit;
mod checkpoint;
pub mod event_rows;
pub mod postgres;
pub mod rows;
pub mod schedule_rows;
pub mod sqlite;
