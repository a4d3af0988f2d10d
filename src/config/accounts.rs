//! The `accounts:` section: the identities the agent runs under, each with its environment
//! (its credentials, maybe its own `ANTHROPIC_BASE_URL`) and its share of the instances.
//!
//! ```yaml
//! accounts:
//!   - name: team
//!     instances: 3
//!     env: { ANTHROPIC_API_KEY: sk-ant-... }
//!   - name: personal
//!     instances: 1
//!     env: { CLAUDE_CONFIG_DIR: /home/me/.claude-personal }
//! ```
//!
//! An account's variables come from the operator's file, so unlike a task's `options.env`
//! they may set guarded ones (`ANTHROPIC_BASE_URL`, `CLAUDE_CONFIG_DIR`, proxies).

use std::{collections::BTreeMap, path::Path};

use serde::Deserialize;

use super::ConfigError;
use crate::engine::model::account::AccountSpec;

/// Variables that log the CLI in; an account needs one of them.
pub const CREDENTIALS: &[&str] = &[
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "CLAUDE_CONFIG_DIR",
];

/// An `accounts` entry as the file writes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileAccount {
    name: String,
    /// Instances it gets at start, and its weight when the pool is scaled.
    #[serde(default = "one")]
    instances: usize,
    #[serde(default)]
    env: BTreeMap<String, String>,
}

fn one() -> usize {
    1
}

/// The checked accounts: for the engine (names and shares) and for the agent (variables).
#[derive(Clone, Debug, Default)]
pub struct Accounts {
    pub specs: Vec<AccountSpec>,
    /// Each account's variables, by name.
    pub env: BTreeMap<String, Vec<(String, String)>>,
}

/// Names are ids on every surface (status, `account` of a task): short and plain.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with(['-', '.'])
}

pub(super) fn checked(file: Vec<FileAccount>) -> Result<Accounts, ConfigError> {
    let mut accounts = Accounts::default();
    for (i, account) in file.into_iter().enumerate() {
        let at = |field: &str| format!("accounts[{i}].{field}");
        if !valid_name(&account.name) {
            return Err(ConfigError(format!(
                "{}: {:?} is not a valid account name (letters, digits, `-`, `_`, `.`; at \
                 most 64; not starting with `-` or `.`)",
                at("name"),
                account.name
            )));
        }
        if accounts.env.contains_key(&account.name) {
            return Err(ConfigError(format!(
                "{}: account {:?} is configured twice",
                at("name"),
                account.name
            )));
        }
        if account.instances == 0 {
            return Err(ConfigError(format!(
                "{}: must be at least 1",
                at("instances")
            )));
        }
        for (name, value) in &account.env {
            if name.is_empty() || name.contains(['=', '\0']) {
                return Err(ConfigError(format!(
                    "{}: {name:?} is not a variable name",
                    at("env")
                )));
            }
            if value.contains('\0') {
                return Err(ConfigError(format!(
                    "{}: the value of {name} holds a NUL byte, which no process can be given",
                    at("env")
                )));
            }
        }
        let credential = CREDENTIALS.iter().find(|c| {
            account
                .env
                .get(**c)
                .is_some_and(|value| !value.trim().is_empty())
        });
        match credential {
            None => {
                return Err(ConfigError(format!(
                    "{}: account {:?} has no credentials: set one of {}",
                    at("env"),
                    account.name,
                    CREDENTIALS.join(", ")
                )));
            }
            Some(&"CLAUDE_CONFIG_DIR") => {
                let dir = Path::new(&account.env["CLAUDE_CONFIG_DIR"]);
                if !dir.is_dir() {
                    return Err(ConfigError(format!(
                        "{}: CLAUDE_CONFIG_DIR {} of account {:?} is not a directory (log in \
                         with `CLAUDE_CONFIG_DIR={} claude` first)",
                        at("env"),
                        dir.display(),
                        account.name,
                        dir.display()
                    )));
                }
            }
            Some(_) => {}
        }
        accounts.specs.push(AccountSpec {
            name: account.name.clone(),
            instances: account.instances,
        });
        accounts
            .env
            .insert(account.name, account.env.into_iter().collect());
    }
    Ok(accounts)
}

#[cfg(test)]
mod tests {
    use super::super::{Config, Overrides};

    fn load(yaml: &str) -> Result<Config, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("swarm.yaml");
        std::fs::write(&path, yaml).unwrap();
        let overrides = Overrides {
            config: Some(path),
            ..Default::default()
        };
        Config::load(&overrides, None).map_err(|e| e.to_string())
    }

    #[test]
    fn accounts_are_checked_naming_the_field() {
        let config_dir = tempfile::tempdir().unwrap();
        let ok = format!(
            "max_instances: 4\naccounts:\n  - name: team\n    instances: 3\n    env:\n      \
             ANTHROPIC_API_KEY: sk-secret\n      ANTHROPIC_BASE_URL: http://127.0.0.1:9\n  \
             - name: me\n    env: {{ CLAUDE_CONFIG_DIR: {} }}\n",
            config_dir.path().display()
        );
        let config = load(&ok).unwrap();
        let shares: Vec<(&str, usize)> = config
            .engine
            .accounts
            .iter()
            .map(|a| (a.name.as_str(), a.instances))
            .collect();
        assert_eq!(shares, [("team", 3), ("me", 1)]);
        // A guarded variable is fine here: the operator wrote it.
        assert!(
            config.accounts.env["team"]
                .contains(&("ANTHROPIC_BASE_URL".into(), "http://127.0.0.1:9".into()))
        );
        for (yaml, field, what) in [
            (
                "accounts:\n  - name: a\n    env: { ANTHROPIC_BASE_URL: http://x }\n",
                "accounts[0].env:",
                "has no credentials",
            ),
            (
                "accounts:\n  - name: a\n    env: { ANTHROPIC_API_KEY: '  ' }\n",
                "accounts[0].env:",
                "has no credentials",
            ),
            (
                "accounts:\n  - name: a\n    env: { CLAUDE_CONFIG_DIR: /no/such/dir }\n",
                "accounts[0].env:",
                "is not a directory",
            ),
            (
                "accounts:\n  - name: a\n    env: { ANTHROPIC_API_KEY: k }\n  - name: a\n    \
                 env: { ANTHROPIC_API_KEY: k }\n",
                "accounts[1].name:",
                "configured twice",
            ),
            (
                "accounts:\n  - name: 'bad name'\n    env: { ANTHROPIC_API_KEY: k }\n",
                "accounts[0].name:",
                "not a valid account name",
            ),
            (
                "accounts:\n  - name: a\n    instances: 0\n    env: { ANTHROPIC_API_KEY: k }\n",
                "accounts[0].instances:",
                "at least 1",
            ),
            (
                "max_instances: 2\naccounts:\n  - name: a\n    instances: 3\n    env: { \
                 ANTHROPIC_API_KEY: k }\n",
                "accounts:",
                "more than max_instances",
            ),
            (
                "accounts:\n  - name: a\n    env: { ANTHROPIC_API_KEY: \"k\\0\" }\n",
                "accounts[0].env:",
                "NUL byte",
            ),
            (
                "accounts:\n  - name: a\n    token: k\n",
                "accounts",
                "unknown field `token`",
            ),
        ] {
            let error = load(yaml).unwrap_err();
            assert!(
                error.contains(field) && error.contains(what),
                "{yaml}: {error}"
            );
        }
    }
}
