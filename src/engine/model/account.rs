//! Accounts: the identities the agent runs under (an API key, a logged-in config
//! directory), each with its share of the instances and its usage-limit state. The engine
//! knows an account by name only; its environment (the secrets) stays with the agent.

use std::time::SystemTime;

use super::words::words;

/// The account tasks and instances belong to when none are configured.
pub const DEFAULT_ACCOUNT: &str = "default";

/// Utilization (0 to 1) at or past which a warning lowers an account's concurrency.
pub const HIGH_UTILIZATION: f64 = 0.8;

/// An account as configured: its name and its share of the instances.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountSpec {
    pub name: String,
    /// Instances it gets at start, and its weight when the pool grows or shrinks.
    pub instances: usize,
}

words! {
    /// What an account's usage limit lets it do now.
    pub enum AccountStatus {
        /// Its instances take work.
        Active = "active",
        /// A warning with high utilization: at most half of its instances take work
        /// until the window resets.
        Limited = "limited",
        /// Requests are refused: its instances take no work until the reset.
        Paused = "paused",
    }
}

words! {
    /// The `status` of a usage-limit report.
    pub enum LimitStatus {
        Allowed = "allowed",
        Warning = "allowed_warning",
        Rejected = "rejected",
    }
}

/// What the agent learnt about an account's usage limit (Claude Code's
/// `rate_limit_event`), stripped of the CLI's words.
#[derive(Clone, Debug, PartialEq)]
pub struct LimitReport {
    pub status: LimitStatus,
    /// When the limiting window resets.
    pub resets_at: Option<SystemTime>,
    /// Which window (`five_hour`, `seven_day`, ...).
    pub window: Option<String>,
    /// The fraction of the window used.
    pub utilization: Option<f64>,
}

/// An account's state, as `GetStatus` shows it and the store keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct Account {
    pub name: String,
    /// Its configured share of the instances.
    pub instances: usize,
    /// The window of the last report (`five_hour`, ...).
    pub window: Option<String>,
    pub utilization: Option<f64>,
    /// When that window resets.
    pub resets_at: Option<SystemTime>,
    /// Refused until then: none of its instances takes work before.
    pub paused_until: Option<SystemTime>,
    /// A warning with high utilization holds it to half its instances until then.
    pub limited_until: Option<SystemTime>,
    /// `system/api_retry` lines its runs printed (the CLI retrying an API call).
    pub api_retries: u64,
    /// Runs that were refused and went back to the queue.
    pub refusals: u64,
}

impl Account {
    pub fn new(spec: &AccountSpec) -> Self {
        Self {
            name: spec.name.clone(),
            instances: spec.instances,
            window: None,
            utilization: None,
            resets_at: None,
            paused_until: None,
            limited_until: None,
            api_retries: 0,
            refusals: 0,
        }
    }

    /// Its state at `now`.
    pub fn status(&self, now: SystemTime) -> AccountStatus {
        if self.paused_until.is_some_and(|t| now < t) {
            AccountStatus::Paused
        } else if self.limited_until.is_some_and(|t| now < t) {
            AccountStatus::Limited
        } else {
            AccountStatus::Active
        }
    }

    /// The next moment its state changes by itself (a pause or a limit ending).
    pub fn next_change(&self, now: SystemTime) -> Option<SystemTime> {
        [self.paused_until, self.limited_until]
            .into_iter()
            .flatten()
            .filter(|t| now < *t)
            .min()
    }
}

/// An account as the swarm's status shows it: its state now and its live instances.
#[derive(Clone, Debug, PartialEq)]
pub struct AccountSummary {
    pub account: Account,
    pub status: AccountStatus,
    pub instances_live: u64,
}
