//! The default store: one SQLite file in WAL mode. Rows hold JSON documents of the row
//! types in [`super::rows`]; the tables are keyed so that a batch is a handful of upserts
//! and appends in one transaction. A file of an older layout is migrated when it opens.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use rusqlite::{Connection, OpenFlags, Transaction, params};
use serde::de::DeserializeOwned;

use super::{
    checkpoint::{Checkpointer, WRITER_CHECKPOINT_PAGES},
    event_rows::{self, EventRow, EventRowV1},
    rows::{AccountRow, Row, TaskRecordRow, WorkflowRecordRow, encode},
    schedule_rows::ScheduleRow,
};
use crate::engine::ports::{Batch, Snapshot, Store, StoreError};

/// The layout this code writes. 1: the first release (events held whole tasks).
/// 2: events hold what changed; the swarm's spending is kept.
/// 3: a commit's events are one row (a JSON array, keyed by the last one's sequence); the
/// single-event rows of layout 2 are read as they are.
/// 4: rows leave out what holds nothing, and a time is one number of nanoseconds; the
/// rows of layouts 2 and 3 are read as they are.
const SCHEMA_VERSION: i64 = 4;

pub struct SqliteStore {
    path: PathBuf,
    conn: Connection,
    /// Events kept; older ones are deleted as new ones arrive.
    event_retention: u64,
    /// Next position for new rows (submission order).
    next_position: i64,
    checkpointer: Checkpointer,
}

impl SqliteStore {
    /// Opens (or creates) `swarm.db` in `dir`, readable by this user only. A file that is
    /// not a claude-swarm database, is corrupt, or was written by a newer release, is a
    /// clear error, not a panic; one of an older layout is migrated.
    pub fn open(dir: &Path, event_retention: u64) -> Result<Self, StoreError> {
        let path = dir.join("swarm.db");
        let fail = |what: &'static str, cause: String| StoreError::File {
            path: path.display().to_string(),
            what,
            cause,
        };
        std::fs::create_dir_all(dir)
            .map_err(|e| fail("cannot create the data directory", e.to_string()))?;
        // Prompts, results and agent variables are in here: this user's only.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| fail("cannot restrict the data directory", e.to_string()))?;
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| fail("cannot open", e.to_string()))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| fail("not a usable database", e.to_string()))?;
        // WAL with NORMAL survives a crash of this process (not a power cut) and keeps
        // commits cheap.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| fail("cannot configure", e.to_string()))?;
        // The checkpointer's thread copies the log back; the writer only when it lags.
        conn.pragma_update(None, "wal_autocheckpoint", WRITER_CHECKPOINT_PAGES)
            .map_err(|e| fail("cannot configure", e.to_string()))?;
        let integrity: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(|e| fail("corrupt", e.to_string()))?;
        if integrity != "ok" {
            return Err(fail("corrupt", integrity));
        }
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS tasks (id TEXT PRIMARY KEY, position INTEGER NOT NULL, body TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS workflows (id TEXT PRIMARY KEY, position INTEGER NOT NULL, body TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS events (sequence INTEGER PRIMARY KEY, body TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS totals (key TEXT PRIMARY KEY, value REAL NOT NULL);
             CREATE TABLE IF NOT EXISTS schedules (id TEXT PRIMARY KEY, position INTEGER NOT NULL, body TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS accounts (name TEXT PRIMARY KEY, body TEXT NOT NULL);",
        )
        .map_err(|e| fail("cannot create tables", e.to_string()))?;
        super::approvals::create(&conn).map_err(|e| fail("cannot create tables", e.to_string()))?;
        for file in ["swarm.db", "swarm.db-wal", "swarm.db-shm"] {
            let file = dir.join(file);
            if file.exists() {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| fail("cannot restrict the data file", e.to_string()))?;
            }
        }
        let checkpointer = Checkpointer::start(&path)
            .map_err(|e| fail("cannot start the checkpointing thread", e.to_string()))?;
        let mut store = Self {
            path,
            conn,
            event_retention: event_retention.max(1),
            next_position: 0,
            checkpointer,
        };
        store.migrate()?;
        store.next_position = store
            .conn
            .query_row(
                "SELECT COALESCE(MAX(p), 0) + 1 FROM (SELECT MAX(position) AS p FROM tasks UNION ALL SELECT MAX(position) FROM workflows)",
                [],
                |r| r.get(0),
            )
            .map_err(|e| store.error("cannot read positions", e))?;
        Ok(store)
    }

    fn error(&self, what: &'static str, e: impl std::fmt::Display) -> StoreError {
        StoreError::File {
            path: self.path.display().to_string(),
            what,
            cause: e.to_string(),
        }
    }

    fn unreadable(&self, kind: &'static str, e: impl std::fmt::Display) -> StoreError {
        StoreError::Row {
            path: self.path.display().to_string(),
            kind,
            cause: e.to_string(),
        }
    }

    /// Brings an older layout up to [`SCHEMA_VERSION`] in one transaction; a new file
    /// starts at it.
    fn migrate(&mut self) -> Result<(), StoreError> {
        let version: Option<i64> = self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .ok();
        match version {
            None => {
                self.conn
                    .execute(
                        "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)",
                        params![SCHEMA_VERSION],
                    )
                    .map_err(|e| self.error("cannot write the schema version", e))?;
                Ok(())
            }
            Some(SCHEMA_VERSION) => Ok(()),
            // This code reads layouts 2 and 3 as they are (one event or a commit's events
            // to a row; times as two numbers); only the version moves, so that an older
            // release, which cannot read what this one writes, refuses the file.
            Some(2 | 3) => set_version(&self.conn)
                .map_err(|e| self.error("cannot write the schema version", e)),
            Some(1) => self.migrate_1_to_2(),
            Some(found) => Err(StoreError::Version {
                path: self.path.display().to_string(),
                found,
                known: SCHEMA_VERSION,
            }),
        }
    }

    /// Layout 1 -> 2 (and so 4): every event row keeps only what changed; the swarm's
    /// spending so far is the sum over the tasks still stored (layout 1 did not keep it).
    fn migrate_1_to_2(&mut self) -> Result<(), StoreError> {
        let events: Vec<(i64, String)> = self.rows("SELECT sequence, body FROM events")?;
        let tasks: Vec<TaskRecordRow> = self
            .rows::<String>("SELECT body FROM tasks")?
            .into_iter()
            .map(|body| decode(&body).map_err(|e| self.unreadable("task", e)))
            .collect::<Result<_, _>>()?;
        let spent: f64 = tasks
            .iter()
            .filter_map(|t| t.task.0.result.as_ref())
            .map(|r| r.cost_usd)
            .sum();
        let mut rewritten = Vec::with_capacity(events.len());
        for (sequence, body) in events {
            let old: EventRowV1 = decode(&body).map_err(|e| self.unreadable("event", e))?;
            rewritten.push((sequence, encode(&EventRow::of(&old.into_event()))?));
        }
        let path = self.path.display().to_string();
        let fail = |what: &'static str| {
            let path = path.clone();
            move |e: rusqlite::Error| StoreError::File {
                path,
                what,
                cause: e.to_string(),
            }
        };
        let tx = self.conn.transaction().map_err(fail("begin migration"))?;
        for (sequence, body) in &rewritten {
            tx.execute(
                "UPDATE events SET body = ?2 WHERE sequence = ?1",
                params![sequence, body],
            )
            .map_err(fail("migrate an event"))?;
        }
        tx.execute(
            "INSERT OR REPLACE INTO totals (key, value) VALUES ('total_cost_usd', ?1)",
            params![spent],
        )
        .map_err(fail("migrate the totals"))?;
        set_version(&tx).map_err(fail("migrate the schema version"))?;
        tx.commit().map_err(fail("commit the migration"))?;
        tracing::info!(path = %self.path.display(), "migrated the data file from layout 1 to 2");
        Ok(())
    }

    fn rows<T: RowValue>(&self, sql: &str) -> Result<Vec<T>, StoreError> {
        let mut statement = self.conn.prepare(sql).map_err(|e| self.error("read", e))?;
        let rows = statement
            .query_map([], T::read)
            .map_err(|e| self.error("read", e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.error("read", e))?;
        Ok(rows)
    }

    fn bodies<T: DeserializeOwned>(
        &self,
        sql: &str,
        kind: &'static str,
    ) -> Result<Vec<T>, StoreError> {
        self.rows::<String>(sql)?
            .iter()
            .map(|body| decode(body).map_err(|e| self.unreadable(kind, e)))
            .collect()
    }
}

/// What one query row is read as.
trait RowValue: Sized {
    fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self>;
}

impl RowValue for String {
    fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        row.get(0)
    }
}

impl RowValue for (i64, String) {
    fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok((row.get(0)?, row.get(1)?))
    }
}

fn decode<T: DeserializeOwned>(body: &str) -> serde_json::Result<T> {
    serde_json::from_str(body)
}

impl Store for SqliteStore {
    fn load(&mut self) -> Result<Snapshot, StoreError> {
        let tasks: Vec<TaskRecordRow> =
            self.bodies("SELECT body FROM tasks ORDER BY position", "task")?;
        let tasks: Vec<_> = tasks.into_iter().map(Row::into_domain).collect();
        let workflows: Vec<WorkflowRecordRow> =
            self.bodies("SELECT body FROM workflows ORDER BY position", "workflow")?;
        let mut events = Vec::new();
        for body in self.rows::<String>("SELECT body FROM events ORDER BY sequence")? {
            let read = if body.starts_with('[') {
                decode::<Vec<EventRow>>(&body)
            } else {
                decode::<EventRow>(&body).map(|row| vec![row])
            };
            events.extend(read.map_err(|e| self.unreadable("event", e))?);
        }
        // A commit's row is kept while its last event is: drop the older ones in it.
        let keep_after = events.last().map_or(0, |last| {
            last.sequence().saturating_sub(self.event_retention)
        });
        events.retain(|e| e.sequence() > keep_after);
        let events = event_rows::rejoin(events, &tasks);
        let total_cost_usd = self
            .conn
            .query_row(
                "SELECT value FROM totals WHERE key = 'total_cost_usd'",
                [],
                |r| r.get(0),
            )
            .unwrap_or(0.0);
        let (approvals, swarm_policy) =
            super::approvals::load(&self.conn).map_err(|e| self.unreadable("approval", e))?;
        let schedules = self
            .bodies::<ScheduleRow>("SELECT body FROM schedules ORDER BY position", "schedule")?
            .into_iter()
            .map(|row| {
                row.into_schedule()
                    .map_err(|e| self.unreadable("schedule", e))
            })
            .collect::<Result<_, _>>()?;
        let accounts: Vec<AccountRow> =
            self.bodies("SELECT body FROM accounts ORDER BY name", "account")?;
        Ok(Snapshot {
            approvals,
            swarm_policy,
            accounts: accounts.into_iter().map(Row::into_domain).collect(),
            events,
            workflows: workflows.into_iter().map(Row::into_domain).collect(),
            tasks,
            total_cost_usd,
            schedules,
        })
    }

    fn commit(&mut self, batch: &Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let path = self.path.display().to_string();
        let tx = self.conn.transaction().map_err(|e| StoreError::File {
            path: path.clone(),
            what: "begin",
            cause: e.to_string(),
        })?;
        let written =
            write(&tx, batch, &mut self.next_position, self.event_retention).map_err(|e| {
                StoreError::File {
                    path: path.clone(),
                    what: "write",
                    cause: e,
                }
            })?;
        tx.commit().map_err(|e| StoreError::File {
            path,
            what: "commit",
            cause: e.to_string(),
        })?;
        self.checkpointer.committed(written);
        Ok(())
    }
}

fn set_version(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE meta SET value = ?1 WHERE key = 'schema_version'",
        params![SCHEMA_VERSION],
    )
    .map(drop)
}

/// Stores each `(id, body)` in `table`: a new row takes the next position (submission
/// order), a known one keeps its position and gets the new body. Returns the bytes written.
fn upsert<'a>(
    tx: &Transaction,
    table: &str,
    rows: impl Iterator<Item = (&'a str, Result<String, String>)>,
    next_position: &mut i64,
) -> Result<usize, String> {
    let mut statement = tx
        .prepare_cached(&format!(
            "INSERT INTO {table} (id, position, body) VALUES (?1, ?2, ?3)
             ON CONFLICT(id) DO UPDATE SET body = excluded.body"
        ))
        .map_err(|e| format!("prepare: {e}"))?;
    let mut written = 0;
    for (id, body) in rows {
        let body = body?;
        written += body.len();
        statement
            .execute(params![id, *next_position, body])
            .map_err(|e| format!("write {table}: {e}"))?;
        *next_position += 1;
    }
    Ok(written)
}

/// Writes `batch` in `tx`; returns about how many bytes of rows that was.
fn write(
    tx: &Transaction<'_>,
    batch: &Batch,
    next_position: &mut i64,
    event_retention: u64,
) -> Result<usize, String> {
    fn e(what: &'static str) -> impl Fn(rusqlite::Error) -> String {
        move |err| format!("{what}: {err}")
    }
    let tasks = batch.tasks.iter().map(|r| {
        let body = encode(&TaskRecordRow::from_domain(r)).map_err(|e| e.to_string());
        (r.task.id.as_str(), body)
    });
    let mut written = upsert(tx, "tasks", tasks, next_position)?;
    let workflows = batch.workflows.iter().map(|r| {
        let body = encode(&WorkflowRecordRow::from_domain(r)).map_err(|e| e.to_string());
        (r.info.id.as_str(), body)
    });
    written += upsert(tx, "workflows", workflows, next_position)?;
    let schedules = batch.schedules.iter().map(|s| {
        let body = encode(&ScheduleRow::of(s)).map_err(|e| e.to_string());
        (s.id.as_str(), body)
    });
    written += upsert(tx, "schedules", schedules, next_position)?;
    let mut delete_schedule = tx
        .prepare_cached("DELETE FROM schedules WHERE id = ?1")
        .map_err(e("prepare"))?;
    for id in &batch.deleted_schedules {
        delete_schedule
            .execute(params![id])
            .map_err(e("delete schedule"))?;
    }
    let mut delete_task = tx
        .prepare_cached("DELETE FROM tasks WHERE id = ?1")
        .map_err(e("prepare"))?;
    for id in &batch.deleted_tasks {
        delete_task
            .execute(params![id.as_str()])
            .map_err(e("delete task"))?;
    }
    if let Some(last) = batch.events.last() {
        // One row for the commit's events: one B-tree insert instead of one per event.
        let rows: Vec<EventRow> = batch.events.iter().map(|e| EventRow::of(e)).collect();
        let body = encode(&rows).map_err(|e| e.to_string())?;
        written += body.len();
        tx.prepare_cached("INSERT OR REPLACE INTO events (sequence, body) VALUES (?1, ?2)")
            .map_err(e("prepare"))?
            .execute(params![last.sequence as i64, body])
            .map_err(e("write events"))?;
        let keep_after = last.sequence.saturating_sub(event_retention) as i64;
        tx.execute(
            "DELETE FROM events WHERE sequence <= ?1",
            params![keep_after],
        )
        .map_err(e("compact events"))?;
    }
    super::approvals::write(
        tx,
        &batch.approvals,
        &batch.deleted_approvals,
        batch.swarm_policy.as_ref(),
    )?;
    let mut upsert_account = tx
        .prepare_cached("INSERT OR REPLACE INTO accounts (name, body) VALUES (?1, ?2)")
        .map_err(e("prepare"))?;
    for account in &batch.accounts {
        let body = encode(&AccountRow::from_domain(account)).map_err(|e| e.to_string())?;
        upsert_account
            .execute(params![account.name, body])
            .map_err(e("write account"))?;
    }
    if let Some(spent) = batch.total_cost_usd {
        tx.execute(
            "INSERT OR REPLACE INTO totals (key, value) VALUES ('total_cost_usd', ?1)",
            params![spent],
        )
        .map_err(e("write totals"))?;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Task, TaskSpec, TaskStatus, ports::TaskRecord};

    #[test]
    fn a_corrupt_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("swarm.db"),
            b"this is not a database, just text padded out....",
        )
        .unwrap();
        let err = SqliteStore::open(dir.path(), 10)
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("swarm.db"), "{err}");
    }

    #[test]
    fn compacted_tasks_are_deleted_and_spending_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::open(dir.path(), 10).unwrap();
        let task = Task::new(
            "t1".into(),
            TaskSpec::new("p"),
            None,
            std::time::SystemTime::now(),
        );
        let batch = Batch {
            tasks: vec![TaskRecord {
                task: task.into(),
                parent: None,
            }],
            total_cost_usd: Some(0.6),
            ..Batch::default()
        };
        store.commit(&batch).unwrap();
        let snapshot = store.load().unwrap();
        assert_eq!(snapshot.tasks.len(), 1);
        assert_eq!(snapshot.total_cost_usd, 0.6);
        store
            .commit(&Batch {
                deleted_tasks: vec!["t1".into()],
                ..Batch::default()
            })
            .unwrap();
        assert!(store.load().unwrap().tasks.is_empty());
    }

    #[test]
    fn sessions_schemas_and_structured_output_are_kept() {
        use crate::engine::{
            TaskResult,
            workflow::{FanOut, FanOutSource, Segment, Template},
        };
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::open(dir.path(), 10).unwrap();
        let path = vec!["files".to_string()];
        let spec = TaskSpec {
            session: Some("main".into()),
            output_schema: Some(serde_json::json!({"type": "object", "required": ["files"]})),
            template: Some(Template(vec![
                Segment::Text("all: ".into()),
                Segment::Output("plan".into(), path.clone()),
            ])),
            fan_out: Some(Box::new(FanOut {
                source: FanOutSource::Output("plan".into(), path),
                max_parallel: 2,
            })),
            ..TaskSpec::new("p")
        };
        let mut task = Task::new("t1".into(), spec, Some("w".into()), std::time::UNIX_EPOCH);
        task.status = TaskStatus::Completed;
        task.result = Some(Box::new(TaskResult {
            session_id: "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9".into(),
            structured_output: Some(serde_json::json!({"files": ["a.rs"]})),
            ..TaskResult::default()
        }));
        let record = TaskRecord {
            task: task.into(),
            parent: None,
        };
        store
            .commit(&Batch {
                tasks: vec![record.clone()],
                ..Batch::default()
            })
            .unwrap();
        assert_eq!(store.load().unwrap().tasks, vec![record]);
    }

    fn version(store: &SqliteStore) -> i64 {
        store
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .unwrap()
    }

    fn task_event(sequence: u64, task: &Task) -> std::sync::Arc<crate::engine::Event> {
        std::sync::Arc::new(crate::engine::Event {
            sequence,
            time: std::time::UNIX_EPOCH,
            kind: crate::engine::EventKind::TaskQueued,
            task_id: Some(task.id.clone()),
            instance_id: None,
            workflow_id: None,
            payload: crate::engine::Payload::Task(task.clone().into()),
            encoded: Default::default(),
        })
    }

    /// A commit's events are one row, so retention deletes whole rows: what a kept row
    /// holds beyond the retention is dropped on load, and a layout 2 row (one event) is
    /// read beside them.
    #[test]
    fn events_come_back_in_order_and_within_retention() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::open(dir.path(), 6).unwrap();
        let task = Task::new("t1".into(), TaskSpec::new("p"), None, std::time::UNIX_EPOCH);
        store
            .conn
            .execute(
                "INSERT INTO events (sequence, body) VALUES (1, ?1)",
                params![encode(&EventRow::of(&task_event(1, &task))).unwrap()],
            )
            .unwrap();
        let commit = |store: &mut SqliteStore, sequences: std::ops::Range<u64>| {
            let events = sequences.map(|s| task_event(s, &task)).collect();
            store
                .commit(&Batch {
                    events,
                    ..Batch::default()
                })
                .unwrap();
        };
        let sequences = |store: &mut SqliteStore| -> Vec<u64> {
            let events = store.load().unwrap().events;
            events.iter().map(|e| e.sequence).collect()
        };
        let rows = |store: &SqliteStore| -> i64 {
            store
                .conn
                .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
                .unwrap()
        };
        commit(&mut store, 2..4);
        commit(&mut store, 4..7);
        assert_eq!(rows(&store), 3);
        assert_eq!(sequences(&mut store), [1, 2, 3, 4, 5, 6]);
        commit(&mut store, 7..9);
        assert_eq!(
            rows(&store),
            3,
            "the row of event 1 went, the one of 2-3 is kept"
        );
        assert_eq!(sequences(&mut store), [3, 4, 5, 6, 7, 8]);
    }

    /// Layout 3 wrote every field and a time as two numbers; such a file opens as layout
    /// 4 and reads as it was.
    #[test]
    fn a_layout_3_file_opens_and_reads_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), 10).unwrap();
        let time = r#"{"secs_since_epoch":1800000000,"nanos_since_epoch":5}"#;
        let nulls = r#""instance_id":null,"started_at":null,"completed_at":null,"result":null,"error":null"#;
        let task = format!(
            r#"{{"task":{{"id":"t1","spec":{{"prompt":"p","retries":0,"model":null}},"status":"Pending","workflow_id":null,"created_at":{time},{nulls}}},"parent":null}}"#
        );
        let events = format!(
            r#"[{{"sequence":1,"time":{time},"kind":"TaskSubmitted","task_id":"t1","instance_id":null,"workflow_id":null,"change":{{"Task":{{"status":"Pending","attempts":0,{nulls},"failure_class":null}}}}}}]"#
        );
        store
            .conn
            .execute_batch(&format!(
                "INSERT INTO tasks (id, position, body) VALUES ('t1', 1, '{task}');
                 INSERT INTO events (sequence, body) VALUES (1, '{events}');
                 UPDATE meta SET value = 3 WHERE key = 'schema_version';"
            ))
            .unwrap();
        drop(store);
        let mut store = SqliteStore::open(dir.path(), 10).unwrap();
        assert_eq!(version(&store), 4);
        let snapshot = store.load().unwrap();
        let at = std::time::UNIX_EPOCH + std::time::Duration::new(1_800_000_000, 5);
        let expected = Task::new("t1".into(), TaskSpec::new("p"), None, at);
        assert_eq!(*snapshot.tasks[0].task, expected);
        assert_eq!(snapshot.events.len(), 1);
        assert_eq!(snapshot.events[0].time, at);
        match &snapshot.events[0].payload {
            crate::engine::Payload::Task(t) => assert_eq!(**t, expected),
            other => panic!("not a task event: {other:?}"),
        }
    }

    #[test]
    fn an_empty_directory_starts_empty_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("nested");
        let mut store = SqliteStore::open(&data, 10).unwrap();
        let snapshot = store.load().unwrap();
        assert!(snapshot.tasks.is_empty() && snapshot.events.is_empty());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join("swarm.db")), 0o600);
    }

    /// `tests/fixtures/data-v1` was written by the first release (layout 1): two completed
    /// tasks (one of the `hello` workflow), two queued (high, normal) and one pending on
    /// the normal one, with 27 events.
    #[test]
    fn a_layout_1_data_directory_opens_and_migrates() {
        let dir = tempfile::tempdir().unwrap();
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/data-v1");
        std::fs::copy(fixture.join("swarm.db"), dir.path().join("swarm.db")).unwrap();
        let mut store = SqliteStore::open(dir.path(), 1000).unwrap();
        let snapshot = store.load().unwrap();
        let statuses: Vec<TaskStatus> = snapshot.tasks.iter().map(|t| t.task.status).collect();
        use TaskStatus::*;
        assert_eq!(statuses, [Completed, Completed, Queued, Queued, Pending]);
        assert_eq!(snapshot.workflows.len(), 1);
        assert_eq!(snapshot.events.len(), 27);
        assert!(snapshot.total_cost_usd > 0.0);
        let pending = &snapshot.tasks[4].task;
        assert_eq!(pending.spec.depends_on, [snapshot.tasks[3].task.id.clone()]);
        assert_eq!(pending.spec.prompt, "waits on it");
        // Events kept their tasks' state at the time, their spec from the task row.
        let first = snapshot
            .events
            .iter()
            .find_map(|e| match &e.payload {
                crate::engine::Payload::Task(t) => Some(t),
                _ => None,
            })
            .unwrap();
        assert_eq!(first.status, Pending);
        assert!(!first.spec.prompt.is_empty());
        drop(store);
        // Opening again finds the current layout and changes nothing.
        let mut again = SqliteStore::open(dir.path(), 1000).unwrap();
        assert_eq!(again.load().unwrap().events.len(), 27);
        assert_eq!(version(&again), SCHEMA_VERSION);
    }

    #[test]
    fn a_newer_layout_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(SqliteStore::open(dir.path(), 10).unwrap());
        let conn = Connection::open(dir.path().join("swarm.db")).unwrap();
        conn.execute(
            "UPDATE meta SET value = 99 WHERE key = 'schema_version'",
            [],
        )
        .unwrap();
        drop(conn);
        let err = SqliteStore::open(dir.path(), 10).err().unwrap().to_string();
        assert!(err.contains("layout version 99"), "{err}");
    }
}
