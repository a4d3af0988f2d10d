//! What a webhook is: where it posts, which events it wants, how its body looks and how
//! it is signed; and one delivery's record. Checked once here for the config file and the
//! API alike, each error naming its field.

use std::time::{Duration, SystemTime};

use crate::engine::{
    EngineError,
    model::{task::positive_seconds, words::words},
};

words! {
    /// The events a webhook may ask for.
    pub enum Topic {
        TaskCompleted = "task_completed",
        TaskFailed = "task_failed",
        WorkflowCompleted = "workflow_completed",
        /// A workflow that ended failed or cancelled.
        WorkflowFailed = "workflow_failed",
        /// A tool call waits on a person's decision.
        ApprovalRequested = "approval_requested",
        /// An account's usage limit refused a request: its instances take no work until
        /// the reset (or until an admin lifts the pause).
        AccountPaused = "account_paused",
        /// The swarm's budget is spent: nothing more starts until `budget_usd` is raised.
        BudgetSpent = "budget_spent",
    }
}

words! {
    /// The body of a delivery.
    #[derive(Default)]
    pub enum Format {
        /// `{"id", "topic", "sequence", "time", "event"}`: the event as the API shows it.
        #[default]
        Json = "json",
        /// `{"text": "..."}`, which Slack's (and Mattermost's, Discord's `/slack`)
        /// incoming webhooks take.
        Slack = "slack",
    }
}

words! {
    /// Where a delivery is.
    pub enum DeliveryStatus {
        /// Not yet answered with a 2xx; retried with backoff.
        Pending = "pending",
        Delivered = "delivered",
        /// Every attempt failed, or the event was gone before it could be sent.
        Failed = "failed",
    }
}

/// Shortest secret accepted: an HMAC key that can be guessed signs nothing.
pub const MIN_SECRET_BYTES: usize = 16;

/// What a caller (the config file or the API) asks for.
#[derive(Clone, Debug, Default)]
pub struct WebhookSpec {
    pub name: String,
    pub url: String,
    /// Event words; empty means every topic.
    pub events: Vec<String>,
    pub secret: Option<String>,
    pub format: Format,
    /// Seconds each attempt may take; 10 when `None`.
    pub timeout: Option<f64>,
    /// Seconds before the first retry, doubling up to five minutes; 1 when `None`.
    pub retry_backoff: Option<f64>,
    /// Attempts before a delivery is given up; 10 when `None`.
    pub max_attempts: Option<u32>,
}

/// A checked webhook.
#[derive(Clone, Debug, PartialEq)]
pub struct Webhook {
    pub id: String,
    pub name: String,
    pub url: String,
    /// Empty: every topic.
    pub topics: Vec<Topic>,
    /// The HMAC-SHA256 key of `X-Swarm-Signature`.
    pub secret: Option<String>,
    pub format: Format,
    pub timeout: Duration,
    pub retry_backoff: Duration,
    pub max_attempts: u32,
    /// From the config file (changed there, not through the API).
    pub from_config: bool,
    pub created_at: SystemTime,
}

/// The longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

impl Webhook {
    /// Checks `spec`; errors name `url`, `events[i]`, `secret`, `timeout`, ...
    pub fn new(id: String, spec: WebhookSpec, from_config: bool) -> Result<Self, EngineError> {
        let url = spec.url.trim();
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| EngineError::invalid("url", format!("{url:?} is not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(EngineError::invalid(
                "url",
                format!("{url:?} is not an http(s) URL with a host"),
            ));
        }
        let topics = spec
            .events
            .iter()
            .enumerate()
            .map(|(i, word)| {
                Topic::parse(word.trim()).ok_or_else(|| {
                    let known: Vec<&str> = Topic::ALL.iter().map(|t| t.as_str()).collect();
                    EngineError::invalid(
                        format!("events[{i}]"),
                        format!("{word:?} is not one of {}", known.join(", ")),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let secret = spec.secret.filter(|s| !s.is_empty());
        match &secret {
            Some(s) if s.len() < MIN_SECRET_BYTES => {
                return Err(EngineError::invalid(
                    "secret",
                    format!(
                        "is {} bytes; a signing secret needs at least {MIN_SECRET_BYTES}",
                        s.len()
                    ),
                ));
            }
            None if spec.format == Format::Json => {
                return Err(EngineError::invalid(
                    "secret",
                    format!(
                        "a json webhook is signed: give a secret of at least {MIN_SECRET_BYTES} bytes"
                    ),
                ));
            }
            _ => {}
        }
        let seconds = |field: &str, value: Option<f64>, default: f64| {
            let value = value.unwrap_or(default);
            positive_seconds(value).ok_or_else(|| {
                EngineError::invalid(
                    field,
                    format!("must be a positive number of seconds, not {value}"),
                )
            })
        };
        let max_attempts = spec.max_attempts.unwrap_or(10);
        if max_attempts == 0 {
            return Err(EngineError::invalid("max_attempts", "must be at least 1"));
        }
        Ok(Self {
            name: if spec.name.trim().is_empty() {
                parsed.host_str().unwrap_or_default().to_owned()
            } else {
                spec.name.trim().to_owned()
            },
            id,
            url: url.to_owned(),
            topics,
            secret,
            format: spec.format,
            timeout: seconds("timeout", spec.timeout, 10.0)?,
            retry_backoff: seconds("retry_backoff", spec.retry_backoff, 1.0)?,
            max_attempts,
            from_config,
            created_at: SystemTime::now(),
        })
    }

    pub fn wants(&self, topic: Topic) -> bool {
        self.topics.is_empty() || self.topics.contains(&topic)
    }

    /// The wait after failed attempt `attempt` (from 1): the backoff, doubling, capped.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(20));
        self.retry_backoff.saturating_mul(factor).min(MAX_BACKOFF)
    }
}

/// One event's delivery to one webhook.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    pub webhook_id: String,
    /// The event's sequence number.
    pub sequence: u64,
    pub topic: Option<Topic>,
    pub status: DeliveryStatus,
    pub attempts: u32,
    /// The last answer's HTTP status, if there was an answer.
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(url: &str) -> WebhookSpec {
        WebhookSpec {
            url: url.into(),
            secret: Some("a-secret-of-32-bytes-or-so......".into()),
            ..WebhookSpec::default()
        }
    }

    fn field(spec: WebhookSpec) -> String {
        Webhook::new("w".into(), spec, false)
            .unwrap_err()
            .field()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn bad_webhooks_name_their_field() {
        assert_eq!(field(spec("ftp://example.com/hook")), "url");
        assert_eq!(field(spec("not a url")), "url");
        assert_eq!(field(spec("file:///etc/passwd")), "url");
        let short = WebhookSpec {
            secret: Some("short".into()),
            ..spec("https://example.com/hook")
        };
        assert_eq!(field(short), "secret");
        let unsigned = WebhookSpec {
            secret: None,
            ..spec("https://example.com/hook")
        };
        assert_eq!(field(unsigned), "secret");
        let topic = WebhookSpec {
            events: vec!["task_failed".into(), "task_exploded".into()],
            ..spec("https://example.com/hook")
        };
        assert_eq!(field(topic), "events[1]");
        let timeout = WebhookSpec {
            timeout: Some(-1.0),
            ..spec("http://127.0.0.1:9/hook")
        };
        assert_eq!(field(timeout), "timeout");
        // Slack's hooks take no signature: no secret is fine there.
        let slack = WebhookSpec {
            secret: None,
            format: Format::Slack,
            ..spec("https://hooks.slack.com/services/T/B/X")
        };
        assert!(Webhook::new("w".into(), slack, false).is_ok());
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let hook = Webhook::new("w".into(), spec("http://127.0.0.1:9/"), false).unwrap();
        assert_eq!(hook.backoff(1), Duration::from_secs(1));
        assert_eq!(hook.backoff(4), Duration::from_secs(8));
        assert_eq!(hook.backoff(40), MAX_BACKOFF);
    }
}
