//! One webhook's worker: it follows the engine's events from its cursor, posts each one
//! it wants (signed, with a timeout per attempt), retries with backoff until a 2xx or its
//! attempts run out, and only then moves its cursor on. Each webhook has its own worker,
//! so a receiver that hangs or fails holds up nobody else's deliveries.

use std::{sync::Arc, time::SystemTime};

use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use tokio::sync::watch;

use super::{
    outbox::Outbox,
    webhook::{Delivery, DeliveryStatus, Format, Topic, Webhook},
};
use crate::{
    engine::workflow::WorkflowStatus,
    engine::{
        Engine, EngineError, Event, EventFilter, EventKind, Payload, WorkflowInfo,
        model::{account::AccountStatus, task::unix_seconds},
    },
    pb,
};

/// The header that carries `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
pub const SIGNATURE_HEADER: &str = "x-swarm-signature";

/// The events a webhook's topics can come from.
const KINDS: [EventKind; 6] = [
    EventKind::TaskCompleted,
    EventKind::TaskFailed,
    EventKind::WorkflowFinished,
    EventKind::ApprovalRequested,
    EventKind::AccountChanged,
    EventKind::BudgetSpent,
];

/// The topic of an event, if it has one.
pub fn topic_of(event: &Event) -> Option<Topic> {
    match (event.kind, &event.payload) {
        (EventKind::TaskCompleted, _) => Some(Topic::TaskCompleted),
        (EventKind::TaskFailed, _) => Some(Topic::TaskFailed),
        (EventKind::WorkflowFinished, Payload::Workflow(w)) => Some(match w.status {
            WorkflowStatus::Completed => Topic::WorkflowCompleted,
            _ => Topic::WorkflowFailed,
        }),
        (EventKind::ApprovalRequested, _) => Some(Topic::ApprovalRequested),
        (EventKind::AccountChanged, Payload::Account(a)) => {
            (a.status == AccountStatus::Paused).then_some(Topic::AccountPaused)
        }
        (EventKind::BudgetSpent, _) => Some(Topic::BudgetSpent),
        _ => None,
    }
}

/// `t=<unix>,v1=<hex>`: the HMAC-SHA256 under `secret` of `"<t>.<body>"`.
pub fn signature(secret: &str, unix: u64, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(format!("{unix}.").as_bytes());
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={unix},v1={hex}")
}

/// The body posted for `event`.
fn body(hook: &Webhook, topic: Topic, event: &Event) -> Vec<u8> {
    let value = match hook.format {
        Format::Json => json!({
            "id": format!("{}:{}", hook.id, event.sequence),
            "topic": topic.as_str(),
            "sequence": event.sequence,
            "time": crate::api::convert::timestamp(event.time),
            "event": pb::Event::from(event),
        }),
        Format::Slack => json!({ "text": slack_text(topic, event) }),
    };
    serde_json::to_vec(&value).expect("JSON values serialize")
}

fn slack_text(topic: Topic, event: &Event) -> String {
    match &event.payload {
        Payload::Task(t) => {
            let what = match topic {
                Topic::TaskCompleted => "completed".to_owned(),
                _ => format!(
                    "failed: {}",
                    t.error.as_deref().unwrap_or("no reason given")
                ),
            };
            format!("claude-swarm: task {} ({}) {what}", t.name(), t.id)
        }
        Payload::Workflow(w) => workflow_text(w),
        Payload::Approval(a) => format!(
            "claude-swarm: task {} asks to use {} (approval {}): claude-swarm approve {} or deny {}",
            a.task_id, a.tool_name, a.id, a.id, a.id
        ),
        Payload::Account(a) => format!(
            "claude-swarm: account {} reached its usage limit; its instances take no work until \
             unix time {} (or `claude-swarm resume-account {}`)",
            a.account.name,
            a.account.paused_until.map_or(0, unix_seconds),
            a.account.name
        ),
        Payload::Budget(b) => format!(
            "claude-swarm: the swarm's budget of ${:.2} is spent (${:.2}); nothing more starts \
             until budget_usd is raised",
            b.budget_usd, b.total_cost_usd
        ),
        _ => format!("claude-swarm: {}", topic.as_str()),
    }
}

fn workflow_text(w: &WorkflowInfo) -> String {
    let done = w.task_counts[crate::engine::TaskStatus::Completed.index()];
    format!(
        "claude-swarm: workflow {} ({}) {}: {done}/{} tasks completed, ${:.4}",
        w.name,
        w.id,
        w.status.as_str(),
        w.task_ids.len(),
        w.total_cost_usd
    )
}

/// What a worker needs.
pub struct Worker {
    pub hook: Webhook,
    pub engine: Engine,
    pub outbox: Arc<Outbox>,
    pub client: reqwest::Client,
    pub shutdown: watch::Receiver<bool>,
}

impl Worker {
    /// Runs until the engine or the server stops (or the task is aborted: a deleted hook).
    pub async fn run(mut self) {
        loop {
            let cursor = match self.outbox.cursor(&self.hook.id) {
                Ok(cursor) => cursor,
                Err(e) => {
                    return tracing::error!(webhook = %self.hook.id, cause = %e, "webhook stopped");
                }
            };
            let filter = EventFilter {
                kinds: KINDS.to_vec(),
                ..EventFilter::default()
            };
            let (mut subscription, from_now) =
                match self.engine.subscribe(cursor, filter.clone()).await {
                    Ok(s) => (s, cursor.is_none()),
                    Err(EngineError::DataLoss(why)) => {
                        // Compacted before it could be delivered: say so in the log, go on.
                        let lost = cursor.map_or(0, |c| c + 1);
                        self.lost(lost, &why);
                        match self.engine.subscribe(None, filter).await {
                            Ok(s) => (s, true),
                            Err(_) => return,
                        }
                    }
                    Err(_) => return,
                };
            if from_now {
                // A new webhook (or one whose events were compacted away) starts from now.
                let _ = self
                    .outbox
                    .set_cursor(&self.hook.id, subscription.position());
            }
            loop {
                let next = tokio::select! {
                    next = subscription.next() => next,
                    _ = self.shutdown.wait_for(|down| *down) => return,
                };
                match next {
                    None => return,
                    // Fell behind the live feed: take up again from the cursor.
                    Some(Err(_)) => break,
                    Some(Ok(event)) => {
                        if let Some(topic) = topic_of(&event).filter(|t| self.hook.wants(*t))
                            && !self.deliver(topic, &event).await
                        {
                            return;
                        }
                        if let Err(e) = self.outbox.set_cursor(&self.hook.id, event.sequence) {
                            return tracing::error!(webhook = %self.hook.id, cause = %e, "webhook stopped");
                        }
                    }
                }
            }
        }
    }

    fn lost(&self, sequence: u64, why: &str) {
        let now = SystemTime::now();
        let record = Delivery {
            webhook_id: self.hook.id.clone(),
            sequence,
            topic: None,
            status: DeliveryStatus::Failed,
            attempts: 0,
            last_status_code: None,
            last_error: Some(format!("not delivered: {why}")),
            created_at: now,
            updated_at: now,
        };
        tracing::warn!(webhook = %self.hook.id, why, "webhook events lost to compaction");
        let _ = self.outbox.record(&record);
    }

    /// Posts `event` until it is delivered or its attempts run out; false when the server
    /// stops first (the delivery is taken up again at the next start).
    async fn deliver(&self, topic: Topic, event: &Event) -> bool {
        let now = SystemTime::now();
        let mut record = match self.outbox.delivery(&self.hook.id, event.sequence) {
            Ok(Some(known)) if known.status != DeliveryStatus::Pending => return true,
            Ok(Some(known)) => known,
            _ => Delivery {
                webhook_id: self.hook.id.clone(),
                sequence: event.sequence,
                topic: Some(topic),
                status: DeliveryStatus::Pending,
                attempts: 0,
                last_status_code: None,
                last_error: None,
                created_at: now,
                updated_at: now,
            },
        };
        let body = body(&self.hook, topic, event);
        let mut shutdown = self.shutdown.clone();
        while record.attempts < self.hook.max_attempts {
            record.attempts += 1;
            let outcome = tokio::select! {
                outcome = self.post(topic, event.sequence, &body) => outcome,
                _ = shutdown.wait_for(|down| *down) => return false,
            };
            record.updated_at = SystemTime::now();
            match outcome {
                Ok(code) if (200..300).contains(&code) => {
                    record.status = DeliveryStatus::Delivered;
                    record.last_status_code = Some(code);
                    record.last_error = None;
                    let _ = self.outbox.record(&record);
                    return true;
                }
                Ok(code) => {
                    record.last_status_code = Some(code);
                    record.last_error = Some(format!("the receiver answered HTTP {code}"));
                }
                Err(e) => {
                    record.last_status_code = None;
                    record.last_error = Some(e);
                }
            }
            if record.attempts >= self.hook.max_attempts {
                break;
            }
            let _ = self.outbox.record(&record);
            let wait = self.hook.backoff(record.attempts);
            tracing::warn!(
                webhook = %self.hook.id,
                sequence = event.sequence,
                attempt = record.attempts,
                error = record.last_error.as_deref(),
                retry_in_ms = wait.as_millis() as u64,
                "webhook delivery failed; retrying"
            );
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = shutdown.wait_for(|down| *down) => return false,
            }
        }
        record.status = DeliveryStatus::Failed;
        let _ = self.outbox.record(&record);
        true
    }

    /// One attempt: the HTTP status of the answer, or why there was none.
    async fn post(&self, topic: Topic, sequence: u64, body: &[u8]) -> Result<u16, String> {
        let mut request = self
            .client
            .post(&self.hook.url)
            .timeout(self.hook.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("x-swarm-event", topic.as_str())
            .header("x-swarm-delivery", format!("{}:{sequence}", self.hook.id))
            .body(body.to_vec());
        if let Some(secret) = &self.hook.secret {
            let unix = crate::engine::model::task::unix_seconds(SystemTime::now());
            request = request.header(SIGNATURE_HEADER, signature(secret, unix, body));
        }
        let response = request.send().await.map_err(|e| {
            if e.is_timeout() {
                format!("no answer within {:?}", self.hook.timeout)
            } else {
                format!("cannot reach the receiver: {e}")
            }
        })?;
        Ok(response.status().as_u16())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checked against `printf %s '1700000000.{"a":1}' | openssl dgst -sha256 -hmac
    /// 0123456789abcdef`, the verification the README shows.
    #[test]
    fn the_signature_is_hmac_sha256_of_the_time_and_the_body() {
        let sig = signature("0123456789abcdef", 1_700_000_000, b"{\"a\":1}");
        assert_eq!(
            sig,
            "t=1700000000,v1=9eb18f493f8ec135d9eb2dad817c369bb4e9cbfa818657897a7437c1cd8c3a23"
        );
    }
}
