//! The PostgreSQL layout, as versioned SQL: each migration runs once, in order, inside
//! one transaction that holds a lock of its own, so nodes starting together on a new
//! database create it once. `schema_version` says how far a database has come.

use postgres::Client;

use crate::engine::ports::StoreError;

/// Migrations, oldest first; the version of a database is how many have run.
const MIGRATIONS: &[&str] = &[
    // 1: the first layout. Rows hold the JSON documents of `store::rows` (the same shapes
    // SQLite keeps); `revision` is the commit that last wrote a row, `attempts` a task's
    // fencing token; `meta` holds the one revision counter and the owner's epoch.
    "CREATE TABLE meta (
         id integer PRIMARY KEY CHECK (id = 1),
         revision bigint NOT NULL,
         epoch bigint NOT NULL,
         total_cost_usd double precision NOT NULL
     );
     INSERT INTO meta (id, revision, epoch, total_cost_usd) VALUES (1, 0, 0, 0);
     CREATE SEQUENCE positions;
     CREATE TABLE tasks (id text PRIMARY KEY, position bigint NOT NULL,
         attempts bigint NOT NULL, revision bigint NOT NULL, body text NOT NULL);
     CREATE TABLE workflows (id text PRIMARY KEY, position bigint NOT NULL,
         revision bigint NOT NULL, body text NOT NULL);
     CREATE TABLE schedules (id text PRIMARY KEY, position bigint NOT NULL,
         revision bigint NOT NULL, body text NOT NULL);
     CREATE TABLE approvals (id text PRIMARY KEY, position bigint NOT NULL,
         revision bigint NOT NULL, body text NOT NULL);
     CREATE TABLE accounts (name text PRIMARY KEY, revision bigint NOT NULL, body text NOT NULL);
     CREATE TABLE policies (scope text PRIMARY KEY, revision bigint NOT NULL, body text NOT NULL);
     CREATE TABLE events (sequence bigint PRIMARY KEY, revision bigint NOT NULL, body text NOT NULL);
     CREATE TABLE nodes (name text PRIMARY KEY, epoch bigint NOT NULL,
         started_at timestamptz NOT NULL, heartbeat timestamptz NOT NULL);",
    // 2: several nodes at work: the link secret a node shows the owner when it attaches
    // (only readers of the database know it), and where each node can be reached.
    "ALTER TABLE meta ADD COLUMN secret text NOT NULL
         DEFAULT gen_random_uuid()::text || gen_random_uuid()::text;
     ALTER TABLE nodes ADD COLUMN address text;",
    // 3: rows leave out what holds nothing and write a time as one number of nanoseconds
    // (`store::rows`, SQLite's layout 4). This code still reads the older rows; the
    // version moves so that an older node, which cannot read the new ones, refuses the
    // database instead of misreading it.
    "SELECT 1;",
];

/// The layout this code writes.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// Serializes migrations between nodes (`pg_advisory_xact_lock`); any constant of ours.
const MIGRATION_LOCK: i64 = 0x5357_4152_4d00_0001;

/// Brings the database at `url` up to [`VERSION`]; a newer one is refused.
pub fn migrate(client: &mut Client, url: &str) -> Result<(), StoreError> {
    let fail = |what: &'static str| {
        move |e: postgres::Error| StoreError::File {
            path: url.to_owned(),
            what,
            cause: super::cause(&e),
        }
    };
    let mut tx = client.transaction().map_err(fail("begin the migration"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(fail("lock for the migration"))?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version bigint NOT NULL)")
        .map_err(fail("create schema_version"))?;
    let found: i64 = tx
        .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])
        .map_err(fail("read schema_version"))?
        .get(0);
    if found > VERSION {
        return Err(StoreError::Version {
            path: url.to_owned(),
            found,
            known: VERSION,
        });
    }
    for (version, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.batch_execute(sql).map_err(fail("migrate"))?;
        tracing::info!(version = version + 1, "migrated the PostgreSQL store");
    }
    if found < VERSION {
        tx.execute("DELETE FROM schema_version", &[])
            .map_err(fail("write schema_version"))?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES ($1)",
            &[&VERSION],
        )
        .map_err(fail("write schema_version"))?;
    }
    tx.commit().map_err(fail("commit the migration"))
}
