//! Accounts and their usage limits. Every instance belongs to one account (new instances go
//! to the account furthest below its share); a task naming an account waits in that
//! account's queue and runs only on its instances. A refusal (a `rejected` report) pauses
//! only that account until its reset: its instances take no work, and the run that hit
//! it goes back to the queue without using up an attempt, to resume its session on that
//! account (where the session is kept) once the limit lifts. A warning with high utilization holds the account to half of its
//! instances until its window resets. With no accounts configured there is one, `default`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{Core, Effect, Timer};
use crate::engine::{
    error::{EngineError, Result},
    model::{
        account::{
            Account, AccountSpec, AccountStatus, AccountSummary, DEFAULT_ACCOUNT, HIGH_UTILIZATION,
            LimitReport, LimitStatus,
        },
        event::{EventKind, Payload},
        instance::InstanceStatus,
        task::{TaskResult, TaskSpec, TaskStatus, unix_seconds},
    },
};

/// How long a refusal that names no reset time pauses its account.
const PAUSE_WITHOUT_RESET: Duration = Duration::from_secs(60);

/// The longest a report holds an account back: a little more than the longest window (seven
/// days). A reset further away is a CLI's or clock's error, and a timer that far would be
/// past what the actor's timers take.
const MAX_HOLD: Duration = Duration::from_secs(8 * 24 * 3600);

/// What holds an account back: its pause and its limit, each with its end.
fn held(account: &Account) -> (Option<SystemTime>, Option<SystemTime>) {
    (account.paused_until, account.limited_until)
}

/// The accounts of a configuration: the configured ones, or the one implicit account.
pub(super) fn configured(specs: &[AccountSpec], initial_instances: usize) -> Vec<Account> {
    if specs.is_empty() {
        let implicit = AccountSpec {
            name: DEFAULT_ACCOUNT.to_owned(),
            instances: initial_instances.max(1),
        };
        return vec![Account::new(&implicit)];
    }
    specs.iter().map(Account::new).collect()
}

impl Core {
    pub(super) fn account_named(&self, name: &str) -> Option<&Account> {
        self.accounts.iter().find(|a| a.name == name)
    }

    fn account_mut(&mut self, name: &str) -> Option<&mut Account> {
        self.accounts.iter_mut().find(|a| a.name == name)
    }

    /// The account a new instance joins: the one with the fewest live instances for its
    /// share (the first configured on a tie).
    pub(super) fn account_for_new_instance(&self) -> String {
        let live = |name: &str| {
            self.pool
                .live()
                .filter(|i| i.status != InstanceStatus::Stopping && i.account == name)
                .count()
        };
        self.accounts
            .iter()
            .min_by(|a, b| {
                let load = |x: &Account| live(&x.name) as f64 / x.instances.max(1) as f64;
                load(a).total_cmp(&load(b))
            })
            .map_or_else(|| DEFAULT_ACCOUNT.to_owned(), |a| a.name.clone())
    }

    /// A task may name only a configured account, and one its pinned instance belongs to.
    pub(super) fn check_account(&self, spec: &TaskSpec) -> Result<()> {
        let Some(name) = &spec.account else {
            return Ok(());
        };
        if self.account_named(name).is_none() {
            let known: Vec<&str> = self.accounts.iter().map(|a| a.name.as_str()).collect();
            return Err(EngineError::invalid(
                "account",
                format!(
                    "unknown account {name:?} (configured: {})",
                    known.join(", ")
                ),
            ));
        }
        if let Some(instance) = spec.instance_id.as_deref().and_then(|i| self.pool.get(i))
            && instance.account != *name
        {
            return Err(EngineError::invalid(
                "account",
                format!(
                    "instance {} belongs to account {:?}, not {name:?}",
                    instance.id, instance.account
                ),
            ));
        }
        Ok(())
    }

    /// Whether the instance's account lets it take a task now: not paused, and under its
    /// lowered concurrency when limited.
    pub(super) fn account_takes_work(&self, instance: &str) -> bool {
        let Some(account) = self
            .pool
            .get(instance)
            .and_then(|i| self.account_named(&i.account))
        else {
            return true;
        };
        match account.status(self.now) {
            AccountStatus::Active => true,
            AccountStatus::Paused => false,
            AccountStatus::Limited => {
                let (mut live, mut busy) = (0usize, 0usize);
                for i in self.pool.live().filter(|i| i.account == account.name) {
                    live += 1;
                    busy += usize::from(i.status == InstanceStatus::Busy);
                }
                busy < live.div_ceil(2).max(1)
            }
        }
    }

    /// A run reported its account's usage limit.
    pub(super) fn limit_reported(&mut self, task_id: &str, report: LimitReport) {
        let Some(name) = self.account_of_run(task_id) else {
            return;
        };
        let now = self.now;
        let latest = now + MAX_HOLD;
        let Some(account) = self.account_mut(&name) else {
            return;
        };
        let before = held(account);
        account.window = report.window.clone().or(account.window.take());
        account.utilization = report.utilization.or(account.utilization);
        account.resets_at = report.resets_at.or(account.resets_at);
        match report.status {
            LimitStatus::Rejected => {
                let until = report
                    .resets_at
                    .filter(|t| *t > now)
                    .unwrap_or(now + PAUSE_WITHOUT_RESET)
                    .min(latest);
                account.paused_until = Some(account.paused_until.map_or(until, |t| t.max(until)));
                tracing::warn!(
                    account = %name,
                    until = unix_seconds(until),
                    "usage limit reached: the account's instances take no work until it resets"
                );
                if let Some(run) = self.running.get_mut(task_id) {
                    run.refused = true;
                }
            }
            LimitStatus::Warning => {
                let high = report.utilization.is_none_or(|u| u >= HIGH_UTILIZATION);
                account.limited_until = match (high, report.resets_at) {
                    (true, Some(reset)) if reset > now => Some(reset.min(latest)),
                    (true, _) => Some(now + PAUSE_WITHOUT_RESET),
                    (false, _) => None,
                };
            }
            LimitStatus::Allowed => account.limited_until = None,
        }
        let changed = self.account_named(&name).map(held) != Some(before);
        self.accounts_changed = true;
        self.arm_account_timer(&name);
        if changed {
            self.publish_account(&name);
        }
    }

    /// A run's CLI retried an API call.
    pub(super) fn api_retried(&mut self, task_id: &str) {
        if let Some(name) = self.account_of_run(task_id)
            && let Some(account) = self.account_mut(&name)
        {
            account.api_retries += 1;
            self.accounts_changed = true;
        }
    }

    fn account_of_run(&self, task_id: &str) -> Option<String> {
        let task = &self.tasks.get(task_id)?.task;
        let instance = self.pool.get(task.instance_id.as_deref()?)?;
        Some(instance.account.clone())
    }

    /// Wakes up when the account's pause or limit ends.
    pub(super) fn arm_account_timer(&mut self, name: &str) {
        let Some(at) = self
            .account_named(name)
            .and_then(|a| a.next_change(self.now))
        else {
            return;
        };
        self.effects.push(Effect::ArmTimer {
            after: at.duration_since(self.now).unwrap_or(Duration::ZERO),
            timer: Timer::Account(name.to_owned()),
        });
    }

    /// An account's pause or limit may be over: dispatch, and wait for the next change.
    pub(super) fn account_timer(&mut self, name: &str) {
        let now = self.now;
        if let Some(account) = self.account_mut(name) {
            let ended = |t: &mut Option<SystemTime>| t.take_if(|t| *t <= now).is_some();
            let paused_ended = ended(&mut account.paused_until);
            let limit_ended = ended(&mut account.limited_until);
            if paused_ended || limit_ended {
                self.accounts_changed = true;
                self.publish_account(name);
            }
        }
        self.arm_account_timer(name);
        self.dispatch();
    }

    /// Tells subscribers (and webhooks) the account's state.
    fn publish_account(&mut self, name: &str) {
        if let Some(account) = self.account_named(name) {
            let summary = Box::new(self.summary(account));
            self.publish(
                EventKind::AccountChanged,
                None,
                None,
                None,
                Payload::Account(summary),
            );
        }
    }

    /// Each account with its state now and its live instances.
    pub(super) fn account_summaries(&self) -> Vec<AccountSummary> {
        self.accounts.iter().map(|a| self.summary(a)).collect()
    }

    fn summary(&self, account: &Account) -> AccountSummary {
        AccountSummary {
            status: account.status(self.now),
            instances_live: self
                .pool
                .live()
                .filter(|i| i.account == account.name)
                .count() as u64,
            account: account.clone(),
        }
    }

    /// Lifts the account's pause and limit now: a person knows the limit is over before
    /// the reset the CLI reported (a plan changed, a limit raised). Its instances take work
    /// at once; if the limit still holds, the next run's refusal pauses it again (and that
    /// run goes back to the queue, its attempt not counted).
    pub(super) fn resume_account(&mut self, name: &str) -> Result<AccountSummary> {
        let Some(account) = self.account_mut(name) else {
            return Err(EngineError::NotFound {
                kind: "account",
                id: name.to_owned(),
            });
        };
        let lifted = account.paused_until.take().is_some() | account.limited_until.take().is_some();
        if lifted {
            tracing::info!(account = %name, "the account's usage limit was lifted by hand");
            self.accounts_changed = true;
            self.publish_account(name);
            self.dispatch();
        }
        let account = self.account_named(name).expect("found above");
        Ok(self.summary(account))
    }

    /// Nothing can be dispatched before then because every account is paused, and why.
    pub(super) fn all_paused(&self) -> Option<(SystemTime, String)> {
        let mut until: Option<SystemTime> = None;
        for account in &self.accounts {
            match account.paused_until {
                Some(t) if self.now < t => until = Some(until.map_or(t, |u| u.min(t))),
                _ => return None,
            }
        }
        let until = until?;
        let what = if self.accounts.len() == 1 {
            "rate limited".to_owned()
        } else {
            "every account is rate limited".to_owned()
        };
        Some((
            until,
            format!("{what} until unix time {}", unix_seconds(until)),
        ))
    }

    /// A run its account's limit refused goes back to the queue: the attempt is not
    /// counted, and the next run resumes the session the refused one had.
    pub(super) fn requeue_refused(&mut self, id: &str, result: Option<&TaskResult>) {
        let account = self.account_of_run(id).unwrap_or_default();
        let until = self
            .account_named(&account)
            .and_then(|a| a.paused_until)
            .map_or(0, unix_seconds);
        if let Some(a) = self.account_mut(&account) {
            a.refusals += 1;
            self.accounts_changed = true;
        }
        let Some(entry) = self.tasks.get_mut(id) else {
            return;
        };
        let task = Arc::make_mut(&mut entry.task);
        task.attempts = task.attempts.saturating_sub(1);
        task.failure_class = None;
        task.started_at = None;
        let session = result
            .map(|r| r.session_id.clone())
            .filter(|s| !s.is_empty() && task.spec.command.is_none());
        let resumes = match session {
            Some(session) => {
                let spec = Arc::make_mut(&mut task.spec);
                spec.options.resume_session = Some(session.clone());
                // The refused run already forked, if it was asked to: continue that fork.
                spec.options.fork_session = false;
                // The session lives with the account (its config directory): it goes on
                // there, once the account's limit lifts.
                spec.account = Some(account.clone());
                format!("; it resumes session {session} on it")
            }
            None => String::new(),
        };
        task.error = Some(format!(
            "account {account} reached its usage limit; back in the queue until it resets \
             (unix time {until}){resumes}"
        ));
        self.set_status(id, TaskStatus::Pending);
        self.enqueue(id);
    }

    /// Restores stored account state for accounts still configured; the rest is dropped.
    pub(super) fn restore_accounts(&mut self, stored: Vec<Account>) {
        for old in stored {
            let Some(account) = self.account_mut(&old.name) else {
                continue;
            };
            let instances = account.instances;
            *account = Account { instances, ..old };
            let name = account.name.clone();
            self.arm_account_timer(&name);
        }
    }
}
