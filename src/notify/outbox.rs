//! The durable side of webhooks, in tables of their own in the data file (`swarm.db`,
//! created when it opens; in memory without a data directory): the webhooks made through
//! the API, each webhook's cursor (the last event sequence it is done with) and its
//! delivery log. The events themselves are the engine's, replayed after the cursor on
//! start, so an outbox needs no copy of them.

use std::{
    path::Path,
    sync::Mutex,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

use super::webhook::{Delivery, DeliveryStatus, Format, Topic, Webhook};

pub struct Outbox {
    conn: Mutex<Connection>,
}

/// A failure of the outbox, with what it was doing.
pub type OutboxResult<T> = Result<T, String>;

fn err(what: &'static str) -> impl Fn(rusqlite::Error) -> String {
    move |e| format!("webhook outbox: {what}: {e}")
}

/// A webhook made through the API, as stored.
#[derive(Serialize, Deserialize)]
struct WebhookRow {
    id: String,
    name: String,
    url: String,
    topics: Vec<String>,
    secret: Option<String>,
    format: String,
    timeout_ms: u64,
    retry_backoff_ms: u64,
    max_attempts: u32,
    created_at: u64,
}

fn unix(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn time(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

impl Outbox {
    /// The outbox in `dir/swarm.db` (the engine's data file, opened by the store before),
    /// or in memory.
    pub fn open(dir: Option<&Path>) -> OutboxResult<Self> {
        let conn = match dir {
            Some(dir) => Connection::open(dir.join("swarm.db")).map_err(err("open"))?,
            None => Connection::open_in_memory().map_err(err("open"))?,
        };
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(err("configure"))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS webhooks (id TEXT PRIMARY KEY, body TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS webhook_cursors (webhook_id TEXT PRIMARY KEY, sequence INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS webhook_deliveries (
                 webhook_id TEXT NOT NULL, sequence INTEGER NOT NULL, topic TEXT, status TEXT NOT NULL,
                 attempts INTEGER NOT NULL, last_status_code INTEGER, last_error TEXT,
                 created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
                 PRIMARY KEY (webhook_id, sequence));",
        )
        .map_err(err("create tables"))?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> OutboxResult<T>) -> OutboxResult<T> {
        let conn = self
            .conn
            .lock()
            .map_err(|_| "webhook outbox: a writer panicked".to_owned())?;
        f(&conn)
    }

    /// The webhooks made through the API, oldest first.
    pub fn webhooks(&self) -> OutboxResult<Vec<Webhook>> {
        self.with(|conn| {
            let mut statement = conn
                .prepare("SELECT body FROM webhooks ORDER BY rowid")
                .map_err(err("read webhooks"))?;
            let bodies = statement
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(err("read webhooks"))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(err("read webhooks"))?;
            bodies
                .iter()
                .map(|body| {
                    let row: WebhookRow = serde_json::from_str(body)
                        .map_err(|e| format!("webhook outbox: a stored webhook: {e}"))?;
                    Ok(Webhook {
                        id: row.id,
                        name: row.name,
                        url: row.url,
                        topics: row.topics.iter().filter_map(|t| Topic::parse(t)).collect(),
                        secret: row.secret,
                        format: Format::parse(&row.format).unwrap_or_default(),
                        timeout: Duration::from_millis(row.timeout_ms),
                        retry_backoff: Duration::from_millis(row.retry_backoff_ms),
                        max_attempts: row.max_attempts,
                        from_config: false,
                        created_at: time(row.created_at),
                    })
                })
                .collect()
        })
    }

    pub fn add_webhook(&self, hook: &Webhook, cursor: u64) -> OutboxResult<()> {
        let row = WebhookRow {
            id: hook.id.clone(),
            name: hook.name.clone(),
            url: hook.url.clone(),
            topics: hook.topics.iter().map(|t| t.as_str().to_owned()).collect(),
            secret: hook.secret.clone(),
            format: hook.format.as_str().to_owned(),
            timeout_ms: hook.timeout.as_millis() as u64,
            retry_backoff_ms: hook.retry_backoff.as_millis() as u64,
            max_attempts: hook.max_attempts,
            created_at: unix(hook.created_at),
        };
        let body = serde_json::to_string(&row).map_err(|e| e.to_string())?;
        self.with(|conn| {
            conn.execute(
                "INSERT INTO webhooks (id, body) VALUES (?1, ?2)",
                params![hook.id, body],
            )
            .map_err(err("add a webhook"))?;
            conn.execute(
                "INSERT OR REPLACE INTO webhook_cursors (webhook_id, sequence) VALUES (?1, ?2)",
                params![hook.id, cursor as i64],
            )
            .map_err(err("add a webhook"))?;
            Ok(())
        })
    }

    /// Forgets a webhook made through the API, its cursor and its log.
    pub fn remove_webhook(&self, id: &str) -> OutboxResult<()> {
        self.with(|conn| {
            for sql in [
                "DELETE FROM webhooks WHERE id = ?1",
                "DELETE FROM webhook_cursors WHERE webhook_id = ?1",
                "DELETE FROM webhook_deliveries WHERE webhook_id = ?1",
            ] {
                conn.execute(sql, params![id])
                    .map_err(err("remove a webhook"))?;
            }
            Ok(())
        })
    }

    /// The last event sequence the webhook is done with.
    pub fn cursor(&self, id: &str) -> OutboxResult<Option<u64>> {
        self.with(|conn| {
            conn.query_row(
                "SELECT sequence FROM webhook_cursors WHERE webhook_id = ?1",
                params![id],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|s| s.map(|s| s as u64))
            .map_err(err("read a cursor"))
        })
    }

    pub fn set_cursor(&self, id: &str, sequence: u64) -> OutboxResult<()> {
        self.with(|conn| {
            conn.execute(
                "INSERT OR REPLACE INTO webhook_cursors (webhook_id, sequence) VALUES (?1, ?2)",
                params![id, sequence as i64],
            )
            .map_err(err("write a cursor"))?;
            Ok(())
        })
    }

    /// Writes a delivery's record (the log keeps the last 1000 of each webhook).
    pub fn record(&self, d: &Delivery) -> OutboxResult<()> {
        self.with(|conn| {
            conn.execute(
                "INSERT OR REPLACE INTO webhook_deliveries (webhook_id, sequence, topic, status, attempts,
                     last_status_code, last_error, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    d.webhook_id,
                    d.sequence as i64,
                    d.topic.map(Topic::as_str),
                    d.status.as_str(),
                    d.attempts,
                    d.last_status_code,
                    d.last_error,
                    unix(d.created_at) as i64,
                    unix(d.updated_at) as i64,
                ],
            )
            .map_err(err("write a delivery"))?;
            conn.execute(
                "DELETE FROM webhook_deliveries WHERE webhook_id = ?1 AND sequence <
                     (SELECT MIN(sequence) FROM (SELECT sequence FROM webhook_deliveries
                      WHERE webhook_id = ?1 ORDER BY sequence DESC LIMIT 1000))",
                params![d.webhook_id],
            )
            .map_err(err("trim the delivery log"))?;
            Ok(())
        })
    }

    /// The webhook's deliveries, newest first, `limit` at most.
    pub fn deliveries(&self, id: &str, limit: u32) -> OutboxResult<Vec<Delivery>> {
        self.select(
            "WHERE webhook_id = ?1 ORDER BY sequence DESC LIMIT ?2",
            params![id, limit],
        )
    }

    /// The stored record of one delivery, if any.
    pub fn delivery(&self, id: &str, sequence: u64) -> OutboxResult<Option<Delivery>> {
        let found = self.select(
            "WHERE webhook_id = ?1 AND sequence = ?2",
            params![id, sequence as i64],
        )?;
        Ok(found.into_iter().next())
    }

    fn select(&self, tail: &str, args: impl rusqlite::Params) -> OutboxResult<Vec<Delivery>> {
        let sql = format!(
            "SELECT webhook_id, sequence, topic, status, attempts, last_status_code, last_error,
                 created_at, updated_at FROM webhook_deliveries {tail}"
        );
        self.with(|conn| {
            let mut statement = conn.prepare(&sql).map_err(err("read deliveries"))?;
            statement
                .query_map(args, |r| {
                    Ok(Delivery {
                        webhook_id: r.get(0)?,
                        sequence: r.get::<_, i64>(1)? as u64,
                        topic: r
                            .get::<_, Option<String>>(2)?
                            .and_then(|t| Topic::parse(&t)),
                        status: DeliveryStatus::parse(&r.get::<_, String>(3)?)
                            .unwrap_or(DeliveryStatus::Failed),
                        attempts: r.get(4)?,
                        last_status_code: r.get(5)?,
                        last_error: r.get(6)?,
                        created_at: time(r.get::<_, i64>(7)? as u64),
                        updated_at: time(r.get::<_, i64>(8)? as u64),
                    })
                })
                .map_err(err("read deliveries"))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(err("read deliveries"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::webhook::WebhookSpec;

    fn delivery(sequence: u64, status: DeliveryStatus) -> Delivery {
        Delivery {
            webhook_id: "w".into(),
            sequence,
            topic: Some(Topic::TaskFailed),
            status,
            attempts: 1,
            last_status_code: Some(500),
            last_error: Some("the receiver answered HTTP 500".into()),
            created_at: UNIX_EPOCH,
            updated_at: UNIX_EPOCH,
        }
    }

    #[test]
    fn webhooks_cursors_and_the_log_outlive_the_connection() {
        let dir = tempfile::tempdir().unwrap();
        let spec = WebhookSpec {
            url: "https://example.com/hook".into(),
            secret: Some("0123456789abcdef".into()),
            events: vec!["task_failed".into()],
            ..WebhookSpec::default()
        };
        let hook = Webhook::new("w".into(), spec, false).unwrap();
        {
            let outbox = Outbox::open(Some(dir.path())).unwrap();
            outbox.add_webhook(&hook, 41).unwrap();
            outbox.set_cursor("w", 42).unwrap();
            for sequence in 0..1005 {
                outbox
                    .record(&delivery(sequence, DeliveryStatus::Failed))
                    .unwrap();
            }
            outbox
                .record(&delivery(1004, DeliveryStatus::Delivered))
                .unwrap();
        }
        let outbox = Outbox::open(Some(dir.path())).unwrap();
        let stored = outbox.webhooks().unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(
            (
                stored[0].url.as_str(),
                &stored[0].topics,
                stored[0].secret.is_some()
            ),
            (hook.url.as_str(), &hook.topics, true)
        );
        assert_eq!(outbox.cursor("w").unwrap(), Some(42));
        // The newest 1000 are kept, newest first; a record is replaced, not repeated.
        let log = outbox.deliveries("w", 2000).unwrap();
        assert_eq!(log.len(), 1000);
        assert_eq!(
            (log[0].sequence, log[0].status),
            (1004, DeliveryStatus::Delivered)
        );
        assert_eq!(log[999].sequence, 5);
        assert_eq!(outbox.delivery("w", 3).unwrap(), None);
        outbox.remove_webhook("w").unwrap();
        assert!(outbox.webhooks().unwrap().is_empty());
        assert_eq!(outbox.cursor("w").unwrap(), None);
        assert!(outbox.deliveries("w", 10).unwrap().is_empty());
    }
}
