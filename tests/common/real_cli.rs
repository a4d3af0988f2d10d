//! The real Claude Code CLI (npm `@anthropic-ai/claude-code@2.1.332`, installed into
//! `.tools/claude-code` by `scripts/setup`), as every real-CLI test finds it. These tests
//! fail, never skip, when it is missing; `SWARM_TEST_CLAUDE` points them at another binary.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use claude_swarm::agent::{AgentCommand, ProcessAgent};

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

/// The environment the real CLI gets offline, on top of the agent's allow-list: a scratch
/// `home`, the fake API at `api_url`, no retries, telemetry or background traffic (without
/// that the CLI also sends `HEAD /api/hello`). No API key: the caller adds one or not.
pub fn offline_env(home: &Path, api_url: &str) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("HOME", home.display().to_string()),
        ("ANTHROPIC_BASE_URL", api_url.to_owned()),
        ("CLAUDE_CODE_MAX_RETRIES", "0".into()),
        ("DISABLE_TELEMETRY", "1".into()),
        ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    if std::env::var_os("CLAUDE_CONFIG_DIR").is_some() {
        // Passed through otherwise, and it would take the place of the scratch HOME.
        env.push((
            "CLAUDE_CONFIG_DIR".into(),
            home.join(".claude").display().to_string(),
        ));
    }
    env
}

/// The real CLI as our agent, offline ([`offline_env`]) with a dummy key.
pub fn offline_agent(home: &Path, api_url: &str, long_lived: bool) -> ProcessAgent {
    let mut env = offline_env(home, api_url);
    env.push(("ANTHROPIC_API_KEY".into(), "test-key".into()));
    ProcessAgent::new(AgentCommand {
        program: claude(),
        leading_args: vec![],
        label: "claude".into(),
        stop_grace: Duration::from_secs(2),
        env,
        long_lived,
        keep_worktrees: false,
        memory_limit: None,
        workspace_root: None,
        accounts: Default::default(),
    })
}
