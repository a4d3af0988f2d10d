//! The audit log: one row per state-changing call, in the `audit` table of the data
//! directory's `swarm.db` (or in memory, with no data directory).
//!
//! It is not engine state, so it does not go through the engine's `Store` port: the engine
//! never reads it, and its writes must never wait behind the engine's group commits or hold
//! them up. It has its own connection, on a thread of its own, fed through a channel: a
//! request hands its record over before its answer leaves (so a caller that reads the audit
//! after an answer finds the call there) and never waits for the disk. Records that arrive
//! together are written in one transaction. The oldest are deleted past `audit_retention`.

use std::path::Path;

use rusqlite::{Connection, OpenFlags, params};
use tokio::sync::{mpsc, oneshot};

use crate::engine::ports::StoreError;

/// The default of `audit_retention`.
pub const DEFAULT_AUDIT_RETENTION: usize = 100_000;

/// Records waiting for the writer; a request waits for room when it is full.
const BACKLOG: usize = 4096;

/// The most records a page holds.
const MAX_PAGE: usize = 1000;

/// One state-changing call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditRecord {
    /// Given by the log when it stores the record; grows.
    pub sequence: u64,
    /// When the call was answered, in milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// The key's name, or `anonymous`.
    pub key: String,
    /// The client's address, when known.
    pub client_address: Option<String>,
    /// The operation, as the role table names it.
    pub action: String,
    /// The tasks, instances or workflows it named or made.
    pub ids: Vec<String>,
    /// The gRPC status name or the HTTP status.
    pub outcome: String,
}

/// Which records to read: newest first.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    /// Only records at or after this time (milliseconds since the Unix epoch).
    pub since_ms: Option<i64>,
    pub key: Option<String>,
    pub action: Option<String>,
    /// Page size (clamped to 1..=1000; 0 means 100).
    pub limit: usize,
    /// Only records older than this sequence (the previous page's last).
    pub before: Option<u64>,
}

/// A page of records and, if more match, the sequence to continue before.
#[derive(Debug, Default)]
pub struct AuditPage {
    pub records: Vec<AuditRecord>,
    pub next_before: Option<u64>,
}

enum Op {
    Record(AuditRecord),
    List(AuditQuery, oneshot::Sender<Result<AuditPage, String>>),
    /// Answered once every record before it is written.
    Flush(oneshot::Sender<()>),
}

/// The handle requests record through; cheap to clone.
#[derive(Clone, Debug)]
pub struct AuditLog {
    ops: mpsc::Sender<Op>,
}

impl Default for AuditLog {
    /// In memory, with the default retention.
    fn default() -> Self {
        Self::open(None, DEFAULT_AUDIT_RETENTION).expect("an in-memory database opens")
    }
}

impl AuditLog {
    /// The log in `dir`'s `swarm.db` (opened by the store first, which makes it and keeps it
    /// private), or in memory without a directory. Keeps the newest `retention` records.
    pub fn open(dir: Option<&Path>, retention: usize) -> Result<Self, StoreError> {
        let (conn, path) = match dir {
            Some(dir) => {
                let path = dir.join("swarm.db");
                let conn = Connection::open_with_flags(
                    &path,
                    OpenFlags::SQLITE_OPEN_READ_WRITE
                        | OpenFlags::SQLITE_OPEN_CREATE
                        | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                );
                (conn, path.display().to_string())
            }
            None => (Connection::open_in_memory(), ":memory:".to_owned()),
        };
        let fail = |what: &'static str, cause: rusqlite::Error| StoreError::File {
            path: path.clone(),
            what,
            cause: cause.to_string(),
        };
        let conn = conn.map_err(|e| fail("cannot open the audit", e))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS audit (
                 sequence INTEGER PRIMARY KEY AUTOINCREMENT,
                 time_ms INTEGER NOT NULL,
                 key TEXT NOT NULL,
                 client_address TEXT,
                 action TEXT NOT NULL,
                 ids TEXT NOT NULL,
                 outcome TEXT NOT NULL
             );",
        )
        .map_err(|e| fail("cannot create the audit table", e))?;
        let (ops, rx) = mpsc::channel(BACKLOG);
        let writer = Writer {
            conn,
            retention: retention.max(1) as i64,
        };
        std::thread::Builder::new()
            .name("audit".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::File {
                path,
                what: "cannot start the audit's thread",
                cause: e.to_string(),
            })?;
        Ok(Self { ops })
    }

    /// Hands `record` to the writer (waiting only if it is far behind).
    pub async fn record(&self, record: AuditRecord) {
        if self.ops.send(Op::Record(record)).await.is_err() {
            tracing::error!("the audit's writer has stopped; a record is lost");
        }
    }

    /// Waits until every record handed over so far is written (a server that stops loses
    /// none it answered for).
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.ops.send(Op::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// The records `query` asks for, after every record handed over before it.
    pub async fn list(&self, query: AuditQuery) -> Result<AuditPage, String> {
        let (tx, rx) = oneshot::channel();
        self.ops
            .send(Op::List(query, tx))
            .await
            .map_err(|_| "the audit's writer has stopped".to_owned())?;
        rx.await
            .map_err(|_| "the audit's writer has stopped".to_owned())?
    }
}

/// Owns the connection, on its own thread.
struct Writer {
    conn: Connection,
    retention: i64,
}

impl Writer {
    fn run(mut self, mut ops: mpsc::Receiver<Op>) {
        let mut batch = Vec::new();
        while let Some(op) = ops.blocking_recv() {
            let mut next = Some(op);
            // Everything already waiting: records go in one transaction, in order with the
            // reads among them.
            while let Some(op) = next.take() {
                match op {
                    Op::Record(record) => batch.push(record),
                    Op::List(query, reply) => {
                        self.flush(&mut batch);
                        let _ = reply.send(self.list(&query).map_err(|e| e.to_string()));
                    }
                    Op::Flush(done) => {
                        self.flush(&mut batch);
                        let _ = done.send(());
                    }
                }
                next = ops.try_recv().ok();
            }
            self.flush(&mut batch);
        }
    }

    fn flush(&mut self, batch: &mut Vec<AuditRecord>) {
        if batch.is_empty() {
            return;
        }
        let written = self.insert(batch);
        if let Err(e) = written {
            tracing::error!(cause = %e, records = batch.len(), "audit records could not be stored");
        }
        batch.clear();
    }

    fn insert(&mut self, batch: &[AuditRecord]) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO audit (time_ms, key, client_address, action, ids, outcome)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for r in batch {
                let ids = serde_json::to_string(&r.ids).unwrap_or_else(|_| "[]".into());
                insert.execute(params![
                    r.time_ms,
                    r.key,
                    r.client_address,
                    r.action,
                    ids,
                    r.outcome
                ])?;
            }
        }
        tx.execute(
            "DELETE FROM audit WHERE sequence <= (SELECT MAX(sequence) FROM audit) - ?1",
            params![self.retention],
        )?;
        tx.commit()
    }

    fn list(&self, query: &AuditQuery) -> rusqlite::Result<AuditPage> {
        let limit = match query.limit {
            0 => 100,
            n => n.min(MAX_PAGE),
        };
        let mut select = self.conn.prepare_cached(
            "SELECT sequence, time_ms, key, client_address, action, ids, outcome FROM audit
             WHERE (?1 IS NULL OR time_ms >= ?1) AND (?2 IS NULL OR key = ?2)
               AND (?3 IS NULL OR action = ?3) AND (?4 IS NULL OR sequence < ?4)
             ORDER BY sequence DESC LIMIT ?5",
        )?;
        let rows = select.query_map(
            params![
                query.since_ms,
                query.key,
                query.action,
                query.before.map(|b| b as i64),
                limit as i64 + 1
            ],
            |row| {
                let ids: String = row.get(5)?;
                Ok(AuditRecord {
                    sequence: row.get::<_, i64>(0)? as u64,
                    time_ms: row.get(1)?,
                    key: row.get(2)?,
                    client_address: row.get(3)?,
                    action: row.get(4)?,
                    ids: serde_json::from_str(&ids).unwrap_or_default(),
                    outcome: row.get(6)?,
                })
            },
        )?;
        let mut records = rows.collect::<rusqlite::Result<Vec<_>>>()?;
        let next_before = (records.len() > limit).then(|| {
            records.truncate(limit);
            records.last().map_or(0, |r| r.sequence)
        });
        Ok(AuditPage {
            records,
            next_before,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: &str, action: &str, time_ms: i64) -> AuditRecord {
        AuditRecord {
            time_ms,
            key: key.into(),
            client_address: Some("127.0.0.1".into()),
            action: action.into(),
            ids: vec!["t1".into()],
            outcome: "OK".into(),
            ..AuditRecord::default()
        }
    }

    #[tokio::test]
    async fn records_page_newest_first_filter_and_keep_the_newest_retention() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(Some(dir.path()), 5).unwrap();
        for i in 0..7 {
            let key = if i % 2 == 0 { "ci" } else { "ops" };
            log.record(record(key, "POST /tasks", 1000 + i)).await;
        }
        let all = log.list(AuditQuery::default()).await.unwrap();
        let times: Vec<i64> = all.records.iter().map(|r| r.time_ms).collect();
        assert_eq!(times, [1006, 1005, 1004, 1003, 1002], "the newest five");
        assert_eq!(all.records[0].ids, ["t1"]);
        assert!(all.next_before.is_none());

        let first = log
            .list(AuditQuery {
                limit: 2,
                ..AuditQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(first.records.len(), 2);
        let rest = log
            .list(AuditQuery {
                limit: 10,
                before: first.next_before,
                ..AuditQuery::default()
            })
            .await
            .unwrap();
        let times: Vec<i64> = rest.records.iter().map(|r| r.time_ms).collect();
        assert_eq!(times, [1004, 1003, 1002]);

        let ci_since = log
            .list(AuditQuery {
                key: Some("ci".into()),
                since_ms: Some(1003),
                ..AuditQuery::default()
            })
            .await
            .unwrap();
        let times: Vec<i64> = ci_since.records.iter().map(|r| r.time_ms).collect();
        assert_eq!(times, [1006, 1004]);
        let none = log
            .list(AuditQuery {
                action: Some("DELETE /tasks/{id}".into()),
                ..AuditQuery::default()
            })
            .await
            .unwrap();
        assert!(none.records.is_empty());

        // Durable: a log opened again on the directory reads what was written.
        drop(log);
        let again = AuditLog::open(Some(dir.path()), 5).unwrap();
        assert_eq!(
            again
                .list(AuditQuery::default())
                .await
                .unwrap()
                .records
                .len(),
            5
        );
    }
}
