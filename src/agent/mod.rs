//! How a task runs on a process. Only this module knows Claude Code's stream-json protocol.

mod live;
pub mod process;
pub mod protocol;
pub mod resources;
pub mod simulated;
pub mod worktree;
