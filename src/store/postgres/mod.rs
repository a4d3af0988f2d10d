//! The PostgreSQL store (`--store postgres://...`): the same rows as SQLite (the JSON
//! documents of [`super::rows`]) in tables of a shared server, so that the swarm outlives
//! the machine it runs on. One node owns the database at a time ([`lease`]): any number of
//! nodes may point at it, and the others stand by until the owner's lease ends, then one of
//! them takes over, restores the state and runs again what was in flight. Every commit
//! carries the owner's epoch and every task row its attempt (the fencing token): a node
//! that wakes up after losing its lease cannot overwrite what its successor wrote.

mod lease;
mod schema;

use std::time::Duration;

use postgres::{Client, NoTls, Statement, Transaction};
use serde::de::DeserializeOwned;

use super::{
    approvals::{ApprovalRow, PolicyRow},
    event_rows::{self, EventRow},
    rows::{AccountRow, Row, TaskRecordRow, WorkflowRecordRow, encode},
    schedule_rows::ScheduleRow,
};
use crate::engine::ports::{Batch, Snapshot, Store, StoreError};

pub use lease::Lease;
pub use schema::VERSION as SCHEMA_VERSION;

/// Where and as whom a node keeps its state in PostgreSQL.
#[derive(Clone, Debug)]
pub struct Target {
    /// The connection URL (`postgres://user:password@host:port/database`).
    pub url: String,
    /// This node's name (`nodes` rows, logs).
    pub node: String,
    /// How long a silent owner keeps the database before another node takes it over.
    pub lease: Duration,
}

/// The text of an error, with the server's message when there is one.
fn cause(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

/// `url` without its password, for messages and logs.
pub fn shown(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => "the configured PostgreSQL URL".to_owned(),
    }
}

/// The owner's address and the link secret, once an owner has said where it listens.
pub fn owner(url: &str) -> Result<Option<(String, String)>, String> {
    let mut client = Client::connect(url, NoTls).map_err(|e| cause(&e))?;
    let row = client
        .query_opt(
            "SELECT n.address, m.secret FROM meta m JOIN nodes n ON n.epoch = m.epoch
             WHERE n.address IS NOT NULL",
            &[],
        )
        .map_err(|e| cause(&e))?;
    Ok(row.map(|row| (row.get(0), row.get(1))))
}

/// Records where the owner of `epoch` listens, for the other nodes to attach.
pub fn advertise(url: &str, node: &str, epoch: i64, address: &str) -> Result<(), String> {
    let mut client = Client::connect(url, NoTls).map_err(|e| cause(&e))?;
    client
        .execute(
            "UPDATE nodes SET address = $3 WHERE name = $1 AND epoch = $2",
            &[&node, &epoch, &address],
        )
        .map_err(|e| cause(&e))?;
    Ok(())
}

/// The statements of a commit, prepared once.
struct Statements {
    claim_revision: Statement,
    tasks: Statement,
    workflows: Statement,
    schedules: Statement,
    approvals: Statement,
    events: Statement,
}

pub struct PostgresStore {
    /// The URL without its password (messages).
    shown: String,
    client: Client,
    statements: Statements,
    lease: Lease,
    /// Events kept; older ones are deleted as new ones arrive.
    event_retention: i64,
    /// Events up to this sequence are deleted already: each commit deletes from here on,
    /// so the index scan never walks the dead entries of earlier deletions.
    trimmed: i64,
}

impl PostgresStore {
    /// Connects, migrates the database to this release's layout, and waits until this node
    /// owns it (see [`Lease`]).
    pub fn open(target: &Target, event_retention: u64) -> Result<Self, StoreError> {
        let shown = shown(&target.url);
        let fail = |what: &'static str| {
            let shown = shown.clone();
            move |e: postgres::Error| StoreError::File {
                path: shown,
                what,
                cause: cause(&e),
            }
        };
        let mut client = Client::connect(&target.url, NoTls).map_err(fail("cannot connect"))?;
        schema::migrate(&mut client, &shown)?;
        let lease = Lease::acquire(&target.url, &shown, &target.node, target.lease)?;
        // A node frozen in the middle of a commit must not hold rows locked past its lease.
        let lease_ms = target.lease.as_millis().max(1).to_string();
        client
            .execute(
                "SELECT set_config('idle_in_transaction_session_timeout', $1, false), \
                        set_config('application_name', $2, false)",
                &[&lease_ms, &format!("claude-swarm {}", target.node)],
            )
            .map_err(fail("cannot configure the session"))?;
        let statements = Statements::prepare(&mut client).map_err(fail("cannot prepare"))?;
        let trimmed: i64 = client
            .query_one("SELECT COALESCE(MIN(sequence), 1) - 1 FROM events", &[])
            .map_err(fail("cannot read the events"))?
            .get(0);
        Ok(Self {
            trimmed,
            shown,
            client,
            statements,
            lease,
            event_retention: i64::try_from(event_retention.max(1)).unwrap_or(i64::MAX),
        })
    }

    /// This owner's epoch and the database's link secret (see `crate::cluster`).
    pub fn link(&mut self) -> Result<(i64, String), StoreError> {
        let secret: String = self
            .client
            .query_one("SELECT secret FROM meta", &[])
            .map_err(self.error("read the link secret"))?
            .get(0);
        Ok((self.lease.epoch, secret))
    }

    /// Resolves once this node has lost the database to another (stop serving).
    pub fn lost(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.lease.lost()
    }

    fn error(&self, what: &'static str) -> impl Fn(postgres::Error) -> StoreError + '_ {
        move |e| StoreError::File {
            path: self.shown.clone(),
            what,
            cause: cause(&e),
        }
    }

    fn bodies<T: DeserializeOwned>(
        &mut self,
        sql: &str,
        kind: &'static str,
    ) -> Result<Vec<T>, StoreError> {
        let rows = self.client.query(sql, &[]).map_err(|e| StoreError::File {
            path: self.shown.clone(),
            what: "read",
            cause: cause(&e),
        })?;
        rows.iter()
            .map(|row| {
                serde_json::from_str(row.get::<_, &str>(0)).map_err(|e| StoreError::Row {
                    path: self.shown.clone(),
                    kind,
                    cause: e.to_string(),
                })
            })
            .collect()
    }
}

impl Statements {
    fn prepare(client: &mut Client) -> Result<Self, postgres::Error> {
        // Rows are written a table at a time from arrays: a few round trips per commit,
        // however large the batch.
        let keyed = |table: &str| {
            format!(
                "INSERT INTO {table} (id, position, revision, body)
                 SELECT id, nextval('positions'), $3, body
                 FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS r(id, body, n) ORDER BY n
                 ON CONFLICT (id) DO UPDATE SET revision = excluded.revision, body = excluded.body"
            )
        };
        Ok(Self {
            claim_revision: client
                .prepare("UPDATE meta SET revision = revision + 1 WHERE epoch = $1 RETURNING revision")?,
            // The fencing token: a task row is only replaced by a write about the same or a
            // later attempt.
            tasks: client.prepare(
                "INSERT INTO tasks (id, position, attempts, revision, body)
                 SELECT id, nextval('positions'), attempts, $4, body
                 FROM unnest($1::text[], $2::bigint[], $3::text[]) WITH ORDINALITY
                     AS r(id, attempts, body, n) ORDER BY n
                 ON CONFLICT (id) DO UPDATE SET attempts = excluded.attempts,
                     revision = excluded.revision, body = excluded.body
                 WHERE tasks.attempts <= excluded.attempts",
            )?,
            workflows: client.prepare(&keyed("workflows"))?,
            schedules: client.prepare(&keyed("schedules"))?,
            approvals: client.prepare(&keyed("approvals"))?,
            events: client.prepare(
                "INSERT INTO events (sequence, revision, body)
                 SELECT sequence, $3, body FROM unnest($1::bigint[], $2::text[]) AS r(sequence, body)
                 ON CONFLICT (sequence) DO UPDATE SET revision = excluded.revision, body = excluded.body",
            )?,
        })
    }
}

impl Store for PostgresStore {
    fn load(&mut self) -> Result<Snapshot, StoreError> {
        let tasks: Vec<TaskRecordRow> =
            self.bodies("SELECT body FROM tasks ORDER BY position", "task")?;
        let tasks: Vec<_> = tasks.into_iter().map(Row::into_domain).collect();
        let workflows: Vec<WorkflowRecordRow> =
            self.bodies("SELECT body FROM workflows ORDER BY position", "workflow")?;
        let events: Vec<EventRow> =
            self.bodies("SELECT body FROM events ORDER BY sequence", "event")?;
        let events = event_rows::rejoin(events, &tasks);
        let approvals: Vec<ApprovalRow> =
            self.bodies("SELECT body FROM approvals ORDER BY position", "approval")?;
        let policies: Vec<PolicyRow> =
            self.bodies("SELECT body FROM policies WHERE scope = 'swarm'", "policy")?;
        let schedules = self
            .bodies::<ScheduleRow>("SELECT body FROM schedules ORDER BY position", "schedule")?
            .into_iter()
            .map(|row| {
                row.into_schedule().map_err(|e| StoreError::Row {
                    path: self.shown.clone(),
                    kind: "schedule",
                    cause: e.to_string(),
                })
            })
            .collect::<Result<_, _>>()?;
        let accounts: Vec<AccountRow> =
            self.bodies("SELECT body FROM accounts ORDER BY name", "account")?;
        let total_cost_usd: f64 = self
            .client
            .query_one("SELECT total_cost_usd FROM meta", &[])
            .map_err(self.error("read the totals"))?
            .get(0);
        Ok(Snapshot {
            approvals: approvals.into_iter().map(Row::into_domain).collect(),
            swarm_policy: policies
                .into_iter()
                .next()
                .map(Row::into_domain)
                .unwrap_or_default(),
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
        let shown = self.shown.clone();
        let fail = |what: &'static str| {
            let shown = shown.clone();
            move |e: postgres::Error| StoreError::File {
                path: shown,
                what,
                cause: cause(&e),
            }
        };
        let mut tx = self.client.transaction().map_err(fail("begin"))?;
        let revision: Option<i64> = tx
            .query_opt(&self.statements.claim_revision, &[&self.lease.epoch])
            .map_err(fail("write"))?
            .map(|row| row.get(0));
        let Some(revision) = revision else {
            // Dropping the transaction rolls it back.
            return Err(StoreError::File {
                path: shown,
                what: "refused",
                cause: "another node has taken this database over (this node's lease ended)".into(),
            });
        };
        let trimmed = write(
            &mut tx,
            &self.statements,
            batch,
            revision,
            (self.trimmed, self.event_retention),
        )
        .map_err(|cause| StoreError::File {
            path: shown.clone(),
            what: "write",
            cause,
        })?;
        tx.commit().map_err(fail("commit"))?;
        self.trimmed = trimmed;
        Ok(())
    }
}

/// Writes `batch` as revision `revision` inside `tx`; refuses (the caller rolls back) a
/// task write about an attempt older than the stored one. The pair is the sequence events
/// are deleted up to and how many are kept; returns the new sequence deleted up to.
fn write(
    tx: &mut Transaction<'_>,
    statements: &Statements,
    batch: &Batch,
    revision: i64,
    (mut trimmed, event_retention): (i64, i64),
) -> Result<i64, String> {
    fn e(what: &'static str) -> impl Fn(postgres::Error) -> String {
        move |err| format!("{what}: {}", cause(&err))
    }
    fn keyed<'a>(
        tx: &mut Transaction<'_>,
        statement: &Statement,
        revision: i64,
        rows: impl Iterator<Item = (&'a str, Result<String, StoreError>)>,
    ) -> Result<(), String> {
        let (mut ids, mut bodies) = (Vec::new(), Vec::new());
        for (id, body) in rows {
            ids.push(id);
            bodies.push(body.map_err(|e| e.to_string())?);
        }
        if !ids.is_empty() {
            tx.execute(statement, &[&ids, &bodies, &revision])
                .map_err(e("write rows"))?;
        }
        Ok(())
    }
    if !batch.tasks.is_empty() {
        let mut ids = Vec::with_capacity(batch.tasks.len());
        let mut attempts = Vec::with_capacity(batch.tasks.len());
        let mut bodies = Vec::with_capacity(batch.tasks.len());
        for record in &batch.tasks {
            ids.push(record.task.id.as_str());
            attempts.push(i64::from(record.task.attempts));
            bodies.push(encode(&TaskRecordRow::from_domain(record)).map_err(|e| e.to_string())?);
        }
        let written = tx
            .execute(&statements.tasks, &[&ids, &attempts, &bodies, &revision])
            .map_err(e("write tasks"))?;
        if written != ids.len() as u64 {
            return Err(format!(
                "refused: {} of {} task writes are about an attempt older than the one stored \
                 (a later attempt was claimed elsewhere)",
                ids.len() as u64 - written,
                ids.len()
            ));
        }
    }
    keyed(
        tx,
        &statements.workflows,
        revision,
        batch.workflows.iter().map(|r| {
            (
                r.info.id.as_str(),
                encode(&WorkflowRecordRow::from_domain(r)),
            )
        }),
    )?;
    keyed(
        tx,
        &statements.schedules,
        revision,
        batch
            .schedules
            .iter()
            .map(|s| (s.id.as_str(), encode(&ScheduleRow::of(s)))),
    )?;
    keyed(
        tx,
        &statements.approvals,
        revision,
        batch
            .approvals
            .iter()
            .map(|a| (a.id.as_str(), encode(&ApprovalRow::from_domain(a)))),
    )?;
    if !batch.deleted_approvals.is_empty() {
        tx.execute(
            "DELETE FROM approvals WHERE id = ANY($1)",
            &[&batch.deleted_approvals],
        )
        .map_err(e("delete approvals"))?;
    }
    if !batch.deleted_schedules.is_empty() {
        tx.execute(
            "DELETE FROM schedules WHERE id = ANY($1)",
            &[&batch.deleted_schedules],
        )
        .map_err(e("delete schedules"))?;
    }
    if !batch.deleted_tasks.is_empty() {
        let ids: Vec<&str> = batch.deleted_tasks.iter().map(|id| id.as_str()).collect();
        tx.execute("DELETE FROM tasks WHERE id = ANY($1)", &[&ids])
            .map_err(e("delete tasks"))?;
    }
    if let Some(last) = batch.events.last() {
        let mut sequences = Vec::with_capacity(batch.events.len());
        let mut bodies = Vec::with_capacity(batch.events.len());
        for event in &batch.events {
            sequences.push(i64::try_from(event.sequence).map_err(|e| e.to_string())?);
            bodies.push(encode(&EventRow::of(event)).map_err(|e| e.to_string())?);
        }
        tx.execute(&statements.events, &[&sequences, &bodies, &revision])
            .map_err(e("write events"))?;
        let keep_after = i64::try_from(last.sequence).map_err(|e| e.to_string())? - event_retention;
        if keep_after > trimmed {
            tx.execute(
                "DELETE FROM events WHERE sequence > $1 AND sequence <= $2",
                &[&trimmed, &keep_after],
            )
            .map_err(e("compact events"))?;
            trimmed = keep_after;
        }
    }
    if let Some(policy) = &batch.swarm_policy {
        let body = encode(&PolicyRow::from_domain(policy)).map_err(|e| e.to_string())?;
        tx.execute(
            "INSERT INTO policies (scope, revision, body) VALUES ('swarm', $1, $2)
             ON CONFLICT (scope) DO UPDATE SET revision = excluded.revision, body = excluded.body",
            &[&revision, &body],
        )
        .map_err(e("write policy"))?;
    }
    for account in &batch.accounts {
        let body = encode(&AccountRow::from_domain(account)).map_err(|e| e.to_string())?;
        tx.execute(
            "INSERT INTO accounts (name, revision, body) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET revision = excluded.revision, body = excluded.body",
            &[&account.name, &revision, &body],
        )
        .map_err(e("write account"))?;
    }
    if let Some(spent) = batch.total_cost_usd {
        tx.execute("UPDATE meta SET total_cost_usd = $1", &[&spent])
            .map_err(e("write totals"))?;
    }
    Ok(trimmed)
}
