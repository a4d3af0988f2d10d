//! The real Claude Code CLI (npm `@anthropic-ai/claude-code@2.1.332`, installed into
//! `.tools/claude-code` by `scripts/setup`), as every real-CLI test finds it. These tests
//! fail, never skip, when it is missing; `SWARM_TEST_CLAUDE` points them at another binary.

use std::path::PathBuf;

/// The version `scripts/setup` installs.
pub const PINNED: &str = "2.1.332";

/// The real CLI; panics with what to do when it is missing.
pub fn claude() -> PathBuf {
    let path = match std::env::var_os("SWARM_TEST_CLAUDE") {
        Some(path) => PathBuf::from(path),
        None => concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/.tools/claude-code/node_modules/.bin/claude"
        )
        .into(),
    };
    assert!(
        path.is_file(),
        "the real Claude Code CLI is not at {}: run scripts/setup (it installs \
         @anthropic-ai/claude-code@{PINNED} into .tools/claude-code), or set SWARM_TEST_CLAUDE",
        path.display()
    );
    path
}
