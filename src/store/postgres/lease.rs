//! The lease: which node owns the database. The owner holds a session lock
//! (`pg_advisory_lock`) on a connection of its own and heartbeats its `nodes` row on it every
//! third of the lease; the server ends that session once it has been idle for a whole lease
//! (`idle_session_timeout`), so a node that is killed, frozen or cut off lets go within the
//! lease. Taking the lock bumps the database's epoch: the store's every commit carries the
//! epoch it was given and is refused once another node has taken over (fencing).

use std::{
    sync::mpsc,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use postgres::{Client, NoTls};
use tokio::sync::watch;

use crate::engine::ports::StoreError;

/// The lock that makes a node the owner; any constant of ours.
const OWNER_LOCK: i64 = 0x5357_4152_4d00_0002;

/// What the owner knows of its lease.
pub struct Lease {
    /// This node's epoch: every commit carries it.
    pub epoch: i64,
    /// Turns `true` once the lease is lost (the session ended or another node took over).
    lost: watch::Receiver<bool>,
    /// Dropped to end the heartbeat (which ends the session, releasing the lock).
    stop: Option<mpsc::Sender<()>>,
    heartbeat: Option<JoinHandle<()>>,
}

impl Lease {
    /// Waits until this node owns the database at `url` (at once when no other node does),
    /// then takes it over under a new epoch and keeps the lease with heartbeats.
    pub fn acquire(
        url: &str,
        shown: &str,
        node: &str,
        lease: Duration,
    ) -> Result<Self, StoreError> {
        let fail = |what: &'static str| {
            move |e: postgres::Error| StoreError::File {
                path: shown.to_owned(),
                what,
                cause: super::cause(&e),
            }
        };
        let mut client = Client::connect(url, NoTls).map_err(fail("cannot connect"))?;
        let lease_ms = lease.as_millis().max(1).to_string();
        client
            .execute(
                "SELECT set_config('idle_session_timeout', $1, false), \
                        set_config('application_name', $2, false)",
                &[&lease_ms, &format!("claude-swarm lease {node}")],
            )
            .map_err(fail("cannot configure the lease session"))?;
        let owned: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&OWNER_LOCK])
            .map_err(fail("cannot take the lease"))?
            .get(0);
        if !owned {
            let holder = client
                .query_opt(
                    "SELECT name, heartbeat::text FROM nodes ORDER BY epoch DESC LIMIT 1",
                    &[],
                )
                .ok()
                .flatten()
                .map(|row| {
                    format!(
                        "{} (last heartbeat {})",
                        row.get::<_, String>(0),
                        row.get::<_, String>(1)
                    )
                })
                .unwrap_or_else(|| "another node".to_owned());
            tracing::warn!(holder = %holder, "standing by: another node owns this database; taking over when its lease ends");
            client
                .execute("SELECT pg_advisory_lock($1)", &[&OWNER_LOCK])
                .map_err(fail("cannot wait for the lease"))?;
        }
        let mut tx = client.transaction().map_err(fail("cannot take over"))?;
        let epoch: i64 = tx
            .query_one("UPDATE meta SET epoch = epoch + 1 RETURNING epoch", &[])
            .map_err(fail("cannot take over"))?
            .get(0);
        tx.execute(
            "INSERT INTO nodes (name, epoch, started_at, heartbeat) VALUES ($1, $2, now(), now())
             ON CONFLICT (name) DO UPDATE SET epoch = excluded.epoch,
                 started_at = excluded.started_at, heartbeat = excluded.heartbeat",
            &[&node, &epoch],
        )
        .map_err(fail("cannot record this node"))?;
        tx.commit().map_err(fail("cannot take over"))?;
        tracing::info!(node, epoch, "this node owns the database");
        let (lost_tx, lost) = watch::channel(false);
        let (stop, stopped) = mpsc::channel::<()>();
        let node = node.to_owned();
        let every = lease / 3;
        let heartbeat = std::thread::Builder::new()
            .name("swarm-lease".into())
            .spawn(move || {
                let mut next = Instant::now() + every;
                loop {
                    match stopped.recv_timeout(next.saturating_duration_since(Instant::now())) {
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        // Dropped: the store is closing; ending the session releases the lock.
                        _ => return,
                    }
                    next += every;
                    let beat = client.execute(
                        "UPDATE nodes SET heartbeat = now() WHERE name = $1 AND epoch = $2",
                        &[&node, &epoch],
                    );
                    match beat {
                        Ok(1) => {}
                        Ok(_) => {
                            tracing::error!(node = %node, "another node took this database over");
                            let _ = lost_tx.send(true);
                            return;
                        }
                        Err(e) => {
                            tracing::error!(node = %node, cause = %super::cause(&e), "the lease is lost");
                            let _ = lost_tx.send(true);
                            return;
                        }
                    }
                }
            })
            .map_err(|e| StoreError::File {
                path: shown.to_owned(),
                what: "cannot start the lease's thread",
                cause: e.to_string(),
            })?;
        Ok(Self {
            epoch,
            lost,
            stop: Some(stop),
            heartbeat: Some(heartbeat),
        })
    }

    /// Resolves once the lease is lost: the node must stop (its commits are refused).
    pub fn lost(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut lost = self.lost.clone();
        async move {
            if lost.wait_for(|lost| *lost).await.is_err() {
                // The store closed without losing its lease (a clean stop): never.
                std::future::pending::<()>().await;
            }
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(heartbeat) = self.heartbeat.take() {
            let _ = heartbeat.join();
        }
    }
}
