//! The default store: one SQLite file in WAL mode. Rows hold JSON documents; the tables
//! are keyed so that a batch is a handful of upserts and appends in one transaction.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, params};

use super::{Batch, Snapshot, Store, StoreError, StoredTask, StoredWorkflow};
use crate::engine::events::Event;

/// Bumped when the layout changes; an unknown version is refused at start.
const SCHEMA_VERSION: i64 = 1;

pub struct SqliteStore {
    path: PathBuf,
    conn: Connection,
    /// Events kept; older ones are deleted as new ones arrive.
    event_retention: u64,
    /// Next position for new rows (submission order).
    next_position: i64,
}

impl SqliteStore {
    /// Opens (or creates) `swarm.db` in `dir`. A file that is not a claude-swarm database,
    /// or is corrupt, is a clear error, not a panic.
    pub fn open(dir: &Path, event_retention: u64) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError(format!(
                "cannot create the data directory {}: {e}",
                dir.display()
            ))
        })?;
        let path = dir.join("swarm.db");
        let fail = |what: &str, e: rusqlite::Error| {
            StoreError(format!("data file {}: {what}: {e}", path.display()))
        };
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| fail("cannot open", e))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| fail("not a usable database", e))?;
        // WAL with NORMAL survives a crash of this process (not a power cut) and keeps
        // commits cheap.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| fail("cannot configure", e))?;
        let integrity: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(|e| fail("corrupt", e))?;
        if integrity != "ok" {
            return Err(StoreError(format!(
                "data file {} is corrupt: {integrity}",
                path.display()
            )));
        }
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS tasks (id TEXT PRIMARY KEY, position INTEGER NOT NULL, body TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS workflows (id TEXT PRIMARY KEY, position INTEGER NOT NULL, body TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS events (sequence INTEGER PRIMARY KEY, body TEXT NOT NULL);
             INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', 1);",
        )
        .map_err(|e| fail("cannot create tables", e))?;
        let version: i64 = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| fail("cannot read the schema version", e))?;
        if version != SCHEMA_VERSION {
            return Err(StoreError(format!(
                "data file {} has layout version {version}; this claude-swarm reads version {SCHEMA_VERSION}",
                path.display()
            )));
        }
        let next_position: i64 = conn
            .query_row(
                "SELECT COALESCE(MAX(p), 0) + 1 FROM (SELECT MAX(position) AS p FROM tasks UNION ALL SELECT MAX(position) FROM workflows)",
                [],
                |r| r.get(0),
            )
            .map_err(|e| fail("cannot read positions", e))?;
        Ok(Self {
            path,
            conn,
            event_retention: event_retention.max(1),
            next_position,
        })
    }

    fn error(&self, what: &str, e: impl std::fmt::Display) -> StoreError {
        StoreError(format!("data file {}: {what}: {e}", self.path.display()))
    }
}

impl Store for SqliteStore {
    fn load(&mut self) -> Result<Snapshot, StoreError> {
        let mut snapshot = Snapshot::default();
        let mut rows = self
            .conn
            .prepare("SELECT body FROM tasks ORDER BY position")
            .map_err(|e| self.error("load", e))?;
        let tasks = rows
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(|e| self.error("load tasks", e))?
            .map(|body| {
                let body = body.map_err(|e| self.error("load tasks", e))?;
                serde_json::from_str::<StoredTask>(&body)
                    .map_err(|e| self.error("a task row is unreadable", e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        drop(rows);
        snapshot.tasks = tasks;
        let mut rows = self
            .conn
            .prepare("SELECT body FROM workflows ORDER BY position")
            .map_err(|e| self.error("load", e))?;
        let workflows = rows
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(|e| self.error("load workflows", e))?
            .map(|body| {
                let body = body.map_err(|e| self.error("load workflows", e))?;
                serde_json::from_str::<StoredWorkflow>(&body)
                    .map_err(|e| self.error("a workflow row is unreadable", e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        drop(rows);
        snapshot.workflows = workflows;
        let mut rows = self
            .conn
            .prepare("SELECT body FROM events ORDER BY sequence")
            .map_err(|e| self.error("load", e))?;
        let events = rows
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(|e| self.error("load events", e))?
            .map(|body| {
                let body = body.map_err(|e| self.error("load events", e))?;
                serde_json::from_str::<Event>(&body)
                    .map_err(|e| self.error("an event row is unreadable", e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        snapshot.events = events;
        Ok(snapshot)
    }

    fn commit(&mut self, batch: &Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction()
            .map_err(|e| StoreError(format!("begin: {e}")))?;
        {
            let mut upsert_task = tx
                .prepare_cached(
                    "INSERT INTO tasks (id, position, body) VALUES (?1, ?2, ?3)
                     ON CONFLICT(id) DO UPDATE SET body = excluded.body",
                )
                .map_err(|e| StoreError(format!("prepare: {e}")))?;
            for task in &batch.tasks {
                let body = serde_json::to_string(task)
                    .map_err(|e| StoreError(format!("encode task: {e}")))?;
                upsert_task
                    .execute(params![task.task.id, self.next_position, body])
                    .map_err(|e| StoreError(format!("write task: {e}")))?;
                self.next_position += 1;
            }
            let mut upsert_workflow = tx
                .prepare_cached(
                    "INSERT INTO workflows (id, position, body) VALUES (?1, ?2, ?3)
                     ON CONFLICT(id) DO UPDATE SET body = excluded.body",
                )
                .map_err(|e| StoreError(format!("prepare: {e}")))?;
            for workflow in &batch.workflows {
                let body = serde_json::to_string(workflow)
                    .map_err(|e| StoreError(format!("encode workflow: {e}")))?;
                upsert_workflow
                    .execute(params![workflow.info.id, self.next_position, body])
                    .map_err(|e| StoreError(format!("write workflow: {e}")))?;
                self.next_position += 1;
            }
            let mut delete_task = tx
                .prepare_cached("DELETE FROM tasks WHERE id = ?1")
                .map_err(|e| StoreError(format!("prepare: {e}")))?;
            for id in &batch.deleted_tasks {
                delete_task
                    .execute(params![id])
                    .map_err(|e| StoreError(format!("delete task: {e}")))?;
            }
            let mut append_event = tx
                .prepare_cached("INSERT OR REPLACE INTO events (sequence, body) VALUES (?1, ?2)")
                .map_err(|e| StoreError(format!("prepare: {e}")))?;
            for event in &batch.events {
                let body = serde_json::to_string(event.as_ref())
                    .map_err(|e| StoreError(format!("encode event: {e}")))?;
                append_event
                    .execute(params![event.sequence as i64, body])
                    .map_err(|e| StoreError(format!("write event: {e}")))?;
            }
            if let Some(last) = batch.events.last() {
                let keep_after = last.sequence.saturating_sub(self.event_retention) as i64;
                tx.execute(
                    "DELETE FROM events WHERE sequence <= ?1",
                    params![keep_after],
                )
                .map_err(|e| StoreError(format!("compact events: {e}")))?;
            }
        }
        tx.commit().map_err(|e| StoreError(format!("commit: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn compacted_tasks_are_deleted() {
        use crate::engine::task::{Task, TaskSpec};
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::open(dir.path(), 10).unwrap();
        let task = Task::new(
            "t1".into(),
            TaskSpec::new("p"),
            None,
            std::time::SystemTime::now(),
        );
        let batch = Batch {
            tasks: vec![StoredTask { task, parent: None }],
            ..Batch::default()
        };
        store.commit(&batch).unwrap();
        assert_eq!(store.load().unwrap().tasks.len(), 1);
        store
            .commit(&Batch {
                deleted_tasks: vec!["t1".into()],
                ..Batch::default()
            })
            .unwrap();
        assert!(store.load().unwrap().tasks.is_empty());
    }

    #[test]
    fn an_empty_directory_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::open(&dir.path().join("nested"), 10).unwrap();
        let snapshot = store.load().unwrap();
        assert!(snapshot.tasks.is_empty() && snapshot.events.is_empty());
    }
}
