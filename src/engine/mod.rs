//! The domain: tasks, the ready queue and dependency rules, the instance pool, workflows,
//! events and the scheduler that owns them. No tonic, axum or wire types in here.

pub mod error;
pub mod events;
pub mod pool;
pub mod queue;
pub mod run;
pub mod scheduler;
pub mod task;
pub mod workflow;

pub use error::EngineError;
pub use scheduler::{Engine, EngineConfig};
