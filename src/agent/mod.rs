//! How a task runs on a process. Only this module knows Claude Code's stream-json protocol.

pub mod process;
pub mod protocol;
pub mod resources;
pub mod simulated;
pub mod worktree;
