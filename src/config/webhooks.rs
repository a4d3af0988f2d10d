//! The `webhooks:` section: URLs the server posts events to, each checked as the API
//! checks one (`notify::webhook::Webhook::new`), errors naming `webhooks[i].field`.

use serde::Deserialize;

use super::ConfigError;
use crate::notify::webhook::{Format, Webhook, WebhookSpec};

/// A `webhooks` entry of the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileWebhook {
    /// Names it in logs and in its id (`config:NAME`); the entry's place when absent.
    name: Option<String>,
    /// `http://` or `https://`.
    url: String,
    /// `task_completed`, `task_failed`, `workflow_completed`, `workflow_failed`,
    /// `approval_requested`, `account_paused`, `budget_spent`; all when empty.
    #[serde(default)]
    events: Vec<String>,
    /// The HMAC-SHA256 key of `X-Swarm-Signature` (16 bytes at least), or
    secret: Option<String>,
    /// the variable that holds it.
    secret_env: Option<String>,
    /// `json` (default) or `slack`.
    format: Option<String>,
    /// Seconds an attempt may take (10).
    timeout: Option<f64>,
    /// Seconds before the first retry, doubling up to five minutes (1).
    retry_backoff: Option<f64>,
    /// Attempts before a delivery is given up (10).
    max_attempts: Option<u32>,
}

/// The checked webhooks of the file, in order.
pub(super) fn webhooks(file: Vec<FileWebhook>) -> Result<Vec<Webhook>, ConfigError> {
    let mut hooks: Vec<Webhook> = Vec::new();
    for (i, entry) in file.into_iter().enumerate() {
        let at =
            |field: &str, reason: String| ConfigError(format!("webhooks[{i}].{field}: {reason}"));
        let secret = match (entry.secret, entry.secret_env) {
            (Some(_), Some(_)) => {
                return Err(at("secret", "give secret or secret_env, not both".into()));
            }
            (Some(secret), None) => Some(secret),
            (None, Some(var)) => Some(
                std::env::var(&var)
                    .map_err(|_| at("secret_env", format!("the variable {var} is not set")))?,
            ),
            (None, None) => None,
        };
        let format = match entry.format.as_deref() {
            None => Format::default(),
            Some(word) => Format::parse(word)
                .ok_or_else(|| at("format", format!("{word:?} is not json or slack")))?,
        };
        let name = entry.name.unwrap_or_else(|| i.to_string());
        let spec = WebhookSpec {
            name: name.clone(),
            url: entry.url,
            events: entry.events,
            secret,
            format,
            timeout: entry.timeout,
            retry_backoff: entry.retry_backoff,
            max_attempts: entry.max_attempts,
        };
        let hook = Webhook::new(format!("config:{name}"), spec, true).map_err(|e| {
            let field = e.field().unwrap_or("url").to_owned();
            let reason = match &e {
                crate::engine::EngineError::InvalidArgument { reason, .. } => reason.clone(),
                other => other.to_string(),
            };
            at(&field, reason)
        })?;
        if hooks.iter().any(|h| h.id == hook.id) {
            return Err(at("name", format!("{name:?} names an earlier webhook too")));
        }
        hooks.push(hook);
    }
    Ok(hooks)
}
