//! Each account's usage limit as metrics: whether it is paused or limited, how much of its
//! window is used, and the API retries and refusals of its runs.

use std::sync::atomic::AtomicU64;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use crate::engine::{SwarmStatus, model::account::AccountStatus};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AccountLabel {
    account: String,
}

/// Registers `account_paused`, `account_limited`, `account_utilization`,
/// `account_api_retries` and `account_refusals`, labelled by account.
pub(super) fn register(registry: &mut Registry, s: &SwarmStatus) {
    let paused = Family::<AccountLabel, Gauge>::default();
    let limited = Family::<AccountLabel, Gauge>::default();
    let utilization = Family::<AccountLabel, Gauge<f64, AtomicU64>>::default();
    let retries = Family::<AccountLabel, Counter>::default();
    let refusals = Family::<AccountLabel, Counter>::default();
    for summary in &s.accounts {
        let label = AccountLabel {
            account: summary.account.name.clone(),
        };
        let is = |status| i64::from(summary.status == status);
        paused.get_or_create(&label).set(is(AccountStatus::Paused));
        limited
            .get_or_create(&label)
            .set(is(AccountStatus::Limited));
        if let Some(used) = summary.account.utilization {
            utilization.get_or_create(&label).set(used);
        }
        retries
            .get_or_create(&label)
            .inc_by(summary.account.api_retries);
        refusals
            .get_or_create(&label)
            .inc_by(summary.account.refusals);
    }
    registry.register(
        "account_paused",
        "1 while the account's usage limit refuses requests: its instances take no work",
        paused,
    );
    registry.register(
        "account_limited",
        "1 while a warning with high utilization holds the account to half its instances",
        limited,
    );
    registry.register(
        "account_utilization",
        "The fraction of the account's limiting window used, as last reported",
        utilization,
    );
    registry.register(
        "account_api_retries",
        "API calls the CLI retried (system/api_retry lines), by account",
        retries,
    );
    registry.register(
        "account_refusals",
        "Runs the account's usage limit refused, which went back to the queue",
        refusals,
    );
}
