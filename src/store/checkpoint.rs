//! Checkpoints off the writer's path: copying the write-ahead log back into the database
//! file (and the two fsyncs that makes) runs on a thread and connection of its own, so a
//! commit only appends to the log.

use std::{
    path::{Path, PathBuf},
    sync::mpsc,
    thread::JoinHandle,
};

use rusqlite::{Connection, OpenFlags};

/// Row bytes written between two checkpoints: about SQLite's own default of 1,000 pages.
const CHECKPOINT_EVERY_BYTES: usize = 4 << 20;

/// Checkpoints run back to back at most, to catch up with a writer that keeps adding.
const MAX_ROUNDS: usize = 8;

/// Log pages past which the writer checkpoints by itself (64 MiB): only reached when this
/// thread falls behind.
pub const WRITER_CHECKPOINT_PAGES: i64 = 16_384;

/// The checkpointing thread of one store; dropping it stops the thread and waits for it
/// (closing the last connection checkpoints what is left).
pub struct Checkpointer {
    wake: Option<mpsc::SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
    /// Row bytes written since it was last woken.
    written: usize,
}

impl Checkpointer {
    pub fn start(path: &Path) -> std::io::Result<Self> {
        let (wake, woken) = mpsc::sync_channel::<()>(1);
        let path = path.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("swarm-checkpoint".into())
            .spawn(move || run(&path, &woken))?;
        Ok(Self {
            wake: Some(wake),
            thread: Some(thread),
            written: 0,
        })
    }

    /// Counts a commit's row bytes; past [`CHECKPOINT_EVERY_BYTES`] the thread is woken
    /// (at most one wake-up waits: a busy thread is not queued up).
    pub fn committed(&mut self, bytes: usize) {
        self.written += bytes;
        if self.written >= CHECKPOINT_EVERY_BYTES {
            self.written = 0;
            if let Some(wake) = &self.wake {
                let _ = wake.try_send(());
            }
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.wake.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(path: &PathBuf, woken: &mpsc::Receiver<()>) {
    let conn = match Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    ) {
        Ok(conn) => conn,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot open the data file to checkpoint it; the writer will");
            return;
        }
    };
    while woken.recv().is_ok() {
        // PASSIVE copies what is in the log without waiting for the writer, who starts the
        // log over only once all of it is copied: so again, while the writer added more
        // meanwhile (each round is shorter than the one before).
        for _ in 0..MAX_ROUNDS {
            match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
            }) {
                Ok((in_log, copied)) if copied < in_log => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::debug!(path = %path.display(), error = %e, "checkpoint did not run");
                    break;
                }
            }
        }
    }
}
