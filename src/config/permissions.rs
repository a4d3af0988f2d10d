//! `permissions:` in the config file: the swarm-wide tool permission rules, and how long an
//! approval waits for a person.

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, seconds};
use crate::engine::{DEFAULT_APPROVAL_TIMEOUT, EngineError, PermissionPolicy};

/// The section as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PermissionsSection {
    /// Rules whose calls run without asking, for every task.
    #[serde(default)]
    allow: Vec<String>,
    /// Rules whose calls are refused, for every task; deny wins over allow.
    #[serde(default)]
    deny: Vec<String>,
    /// `false`: what no rule decides is refused at once (no approvals).
    ask: Option<bool>,
    /// Seconds an approval waits for a person before it is denied.
    approval_timeout: Option<f64>,
}

impl PermissionsSection {
    /// The swarm's policy and the approvals' deadline, checked: a rule that does not parse
    /// is an error naming `permissions.allow[i]`.
    pub(super) fn checked(self) -> Result<(PermissionPolicy, Duration), ConfigError> {
        let policy = PermissionPolicy {
            allow: self.allow,
            deny: self.deny,
            ask: self.ask,
        };
        policy.validate("permissions").map_err(|e| match e {
            EngineError::InvalidArgument { field, reason } => {
                ConfigError(format!("{field}: {reason}"))
            }
            other => ConfigError(other.to_string()),
        })?;
        let timeout = seconds("permissions.approval_timeout", self.approval_timeout)?
            .unwrap_or(DEFAULT_APPROVAL_TIMEOUT);
        Ok((policy, timeout))
    }
}
