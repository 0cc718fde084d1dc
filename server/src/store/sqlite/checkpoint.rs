//! WAL checkpoints off the write path (issue 11 §2).
//!
//! By default SQLite checkpoints inside the commit that grows the WAL past 1,000 pages: that
//! commit copies every page of the log back into the database file and fsyncs it before it
//! returns, so one push in every few paid for the writes of all the pushes before it. Here the
//! writer connection's WAL hook only notes how long the log has grown; once it passes
//! [`CHECKPOINT_AFTER_FRAMES`], the store wakes a thread of its own that runs a `PASSIVE`
//! checkpoint on its own connection while the writer goes on with the next transaction.
//!
//! Durability does not change: a commit is durable when its WAL frames are synced (the
//! writer's `synchronous = FULL`), whoever copies them into the database file later. A
//! `PASSIVE` checkpoint never waits for readers or the writer; what it cannot copy yet (pages a
//! reader's snapshot still needs) it copies next time, exactly as the automatic checkpoint
//! would. When the store is dropped its thread ends, and SQLite checkpoints what is left when
//! the last connection closes.

use std::cell::Cell;
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use rusqlite::Connection;

use crate::store::StoreResult;

/// SQLite's own automatic checkpoint threshold (`wal_autocheckpoint` defaults to 1,000
/// pages, 4 MiB at the default page size): the WAL grows no larger than before.
pub(in crate::store) const CHECKPOINT_AFTER_FRAMES: i32 = 1_000;

thread_local! {
    /// Frames in the WAL after the last commit on this thread's writer connection, as the
    /// WAL hook reported it. The hook runs inside `COMMIT` on the thread that commits, and
    /// [`frames_after_last_commit`] is read on that same thread right after: a plain function
    /// pointer (all `sqlite3_wal_hook` takes through rusqlite) has nowhere else to put it.
    static FRAMES_AFTER_COMMIT: Cell<i32> = const { Cell::new(0) };
}

fn note_wal_frames(_wal: &rusqlite::hooks::Wal, frames: std::ffi::c_int) -> rusqlite::Result<()> {
    FRAMES_AFTER_COMMIT.with(|cell| cell.set(frames));
    Ok(())
}

/// Replace the writer's automatic checkpoint with the WAL-size note above. (Registering a
/// WAL hook is what turns `wal_autocheckpoint` off: SQLite keeps one hook per connection.)
pub(in crate::store) fn take_checkpoints_off_the_writer(writer: &Connection) {
    writer.wal_hook(Some(note_wal_frames));
}

/// The WAL length the last commit on this thread reported, and forget it (so a later write
/// that commits nothing, such as a rolled-back one, is not read as a long WAL again).
pub(in crate::store) fn frames_after_last_commit() -> i32 {
    FRAMES_AFTER_COMMIT.with(|cell| cell.replace(0))
}

/// The handle the store keeps: wakes the checkpoint thread, and counts finished
/// checkpoints so a test can wait for one without sleeping.
#[derive(Debug)]
pub(in crate::store) struct Checkpointer {
    wake: SyncSender<()>,
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "read by tests waiting for a checkpoint")
    )]
    finished: Arc<(Mutex<u64>, Condvar)>,
}

impl Checkpointer {
    /// Open the checkpoint connection to `path` and start its thread.
    pub(in crate::store) fn start(path: &Path) -> StoreResult<Checkpointer> {
        let connection = Connection::open(path)?;
        connection.busy_timeout(super::BUSY_TIMEOUT)?;
        // A checkpoint on a FULL connection syncs the WAL before copying and the database
        // file after, as the writer's automatic checkpoint did.
        connection.execute_batch("PRAGMA synchronous = FULL")?;
        // Capacity 1: requests made while one is pending fold into it.
        let (wake, requests) = sync_channel(1);
        let finished = Arc::new((Mutex::new(0), Condvar::new()));
        let counter = Arc::clone(&finished);
        std::thread::Builder::new()
            .name("fieldsync-sqlite-checkpoint".into())
            .spawn(move || checkpoint_when_asked(&connection, &requests, &counter))
            .map_err(|error| {
                crate::store::StoreError::database(format!(
                    "cannot start the checkpoint thread: {error}"
                ))
            })?;
        Ok(Checkpointer { wake, finished })
    }

    /// After a commit: wake the thread when the WAL has grown past the threshold.
    pub(in crate::store) fn after_commit(&self, frames: i32) {
        if frames < CHECKPOINT_AFTER_FRAMES {
            return;
        }
        match self.wake.try_send(()) {
            // Full: a checkpoint is already asked for and will see these frames too.
            Ok(()) | Err(TrySendError::Full(())) => {}
            Err(TrySendError::Disconnected(())) => {
                tracing::warn!("the checkpoint thread has stopped; the WAL is not checkpointed");
            }
        }
    }

    /// Checkpoints finished so far.
    #[cfg(test)]
    pub(in crate::store) fn finished(&self) -> u64 {
        *self
            .finished
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Block until more than `seen` checkpoints have finished.
    #[cfg(test)]
    pub(in crate::store) fn wait_past(&self, seen: u64) -> u64 {
        let (count, changed) = &*self.finished;
        let count = count.lock().unwrap_or_else(PoisonError::into_inner);
        *changed
            .wait_while(count, |count| *count <= seen)
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The thread: one `PASSIVE` checkpoint per request, until the store drops its sender.
fn checkpoint_when_asked(
    connection: &Connection,
    requests: &Receiver<()>,
    finished: &(Mutex<u64>, Condvar),
) {
    while requests.recv().is_ok() {
        // (busy, frames in the WAL, frames copied): logged when the copy fell short, which
        // a long-running reader causes and the next checkpoint makes up.
        let outcome = connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, i64>(2)?,
            ))
        });
        match outcome {
            Ok((_, frames, copied)) if copied < frames => {
                tracing::debug!(
                    frames,
                    copied,
                    "WAL checkpoint left frames a reader still needs"
                );
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "WAL checkpoint failed; retried after the next commits")
            }
        }
        let (count, changed) = finished;
        *count.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::tests::open_temp_store;

    fn file_size(path: &Path) -> u64 {
        std::fs::metadata(path).expect("file metadata").len()
    }

    /// About 6 MiB of new pages, well past the threshold, in `transactions` commits.
    fn filler_statements(transactions: usize) -> Vec<String> {
        let rows_per_transaction = 1_500 / transactions;
        (0..transactions)
            .map(|_| {
                format!(
                    "WITH RECURSIVE row_number (n) AS (
                         SELECT 1 UNION ALL
                         SELECT n + 1 FROM row_number WHERE n < {rows_per_transaction})
                     INSERT INTO filler (body) SELECT randomblob(4000) FROM row_number;"
                )
            })
            .collect()
    }

    /// The commit that grows the WAL past the threshold returns without copying it into the
    /// database file; nothing copies it until the checkpoint thread is asked.
    #[tokio::test]
    async fn a_commit_on_the_writer_never_checkpoints_the_wal_itself() {
        let (directory, store) = open_temp_store();
        let database = directory.path().join("fieldsync.sqlite3");
        let wal = directory.path().join("fieldsync.sqlite3-wal");
        let writer = store.inner.writer.lock().expect("writer");
        writer
            .execute_batch("CREATE TABLE filler (body BLOB NOT NULL)")
            .expect("filler table");
        let database_before = file_size(&database);
        // Written on the writer directly, bypassing `write`, so the thread is never woken.
        writer
            .execute_batch(&format!("BEGIN; {} COMMIT;", filler_statements(1)[0]))
            .expect("filler rows");
        assert!(
            frames_after_last_commit() >= CHECKPOINT_AFTER_FRAMES,
            "the WAL hook reports the grown WAL"
        );
        assert!(file_size(&wal) > 6_000_000, "the rows are in the WAL");
        assert_eq!(
            file_size(&database),
            database_before,
            "no checkpoint copied them into the database file"
        );
    }

    /// Writes through the store that grow the WAL past the threshold wake the checkpoint
    /// thread, which copies the pages into the database file.
    #[tokio::test]
    async fn writes_that_grow_the_wal_are_checkpointed_by_the_checkpoint_thread() {
        let (directory, store) = open_temp_store();
        let database = directory.path().join("fieldsync.sqlite3");
        store
            .write(|transaction| {
                Ok(transaction.execute_batch("CREATE TABLE filler (body BLOB NOT NULL)")?)
            })
            .await
            .expect("filler table");
        let checkpoints_before = store.inner.checkpointer.finished();
        let database_before = file_size(&database);
        for statement in filler_statements(4) {
            store
                .write(move |transaction| Ok(transaction.execute_batch(&statement)?))
                .await
                .expect("filler rows");
        }
        let inner = Arc::clone(&store.inner);
        tokio::task::spawn_blocking(move || inner.checkpointer.wait_past(checkpoints_before))
            .await
            .expect("waited for a checkpoint");
        assert!(
            file_size(&database) > database_before + 4_000_000,
            "the checkpoint copied the WAL's pages into the database file"
        );
        let rows: i64 = store
            .read(|connection| {
                Ok(connection.query_row("SELECT COUNT(*) FROM filler", [], |row| row.get(0))?)
            })
            .await
            .expect("count");
        assert_eq!(rows, 1_500);
    }
}
