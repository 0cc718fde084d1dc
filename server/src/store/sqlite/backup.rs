//! Copies of the SQLite file for backups and upgrades (issue 12 §4), with SQLite's online
//! backup API (`rusqlite::backup`): the copy is one consistent snapshot of the database even
//! while the server keeps writing, because it is made in a single step inside one read
//! transaction (WAL readers never block the writer, and the writer never disturbs a reader's
//! snapshot). The orchestration (blob files, keys, manifest) lives in `crate::backup`; only
//! what needs SQL is here, by the "no SQL outside the store" invariant.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use super::BUSY_TIMEOUT;
use crate::store::{StoreError, StoreResult};

/// Pause between backup attempts when the source is briefly locked (a checkpoint in the
/// server holding the WAL index). Only the command-line backup and start-up ever wait here.
const LOCKED_RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Attempts before a locked source is reported instead of retried.
const LOCKED_RETRIES: u32 = 200;

/// What a database copy holds, read from the copy itself (so it matches the snapshot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseCopy {
    /// `PRAGMA user_version` of the copy: the schema version it was taken at.
    pub schema_version: i64,
    /// Every blob the copy records as stored (`blobs` table), sorted. Blob rows are written
    /// only after the blob file was fsynced and renamed into place, so each is on disk.
    pub stored_blobs: Vec<String>,
    /// Uploads that were in progress in the snapshot, rewound to offset 0 in the copy:
    /// their staging files are not part of a backup, so the phones send them again.
    pub uploads_rewound: usize,
}

/// Copy the live database at `source` into the new file `destination` while the server may
/// be writing, then check the copy (`PRAGMA integrity_check`), rewind its unfinished uploads
/// and read what it references. `destination` must not exist yet.
pub fn copy_live_database(source: &Path, destination: &Path) -> StoreResult<DatabaseCopy> {
    if destination.exists() {
        return Err(StoreError::database(format!(
            "backup target {} already exists",
            destination.display()
        )));
    }
    // Read-only: a backup process must never become a second writer of the server's file.
    let source_connection = Connection::open_with_flags(
        source,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    source_connection.busy_timeout(BUSY_TIMEOUT)?;
    copy_connection(&source_connection, destination)?;
    let copy = Connection::open(destination)?;
    check_copy(&copy, destination)?;
    // The copy is ours: in-progress uploads restart at 0 there (see DatabaseCopy).
    let uploads_rewound = copy.execute(
        "UPDATE uploads SET committed_offset = 0 WHERE complete = 0 AND committed_offset > 0",
        [],
    )?;
    let schema_version: i64 = copy.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let stored_blobs = {
        let mut statement = copy.prepare("SELECT sha256 FROM blobs ORDER BY sha256")?;
        let rows = statement.query_map([], |row| row.get::<_, String>(0))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()?
    };
    drop(copy);
    sync_file(destination)?;
    Ok(DatabaseCopy {
        schema_version,
        stored_blobs,
        uploads_rewound,
    })
}

/// Check a database file that is about to be served (a restore): it opens, passes the full
/// `PRAGMA integrity_check`, and its schema version is returned.
pub fn check_database_file(path: &Path) -> StoreResult<i64> {
    let connection = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    check_copy(&connection, path)?;
    Ok(connection.query_row("PRAGMA user_version", [], |row| row.get(0))?)
}

/// Before pending migrations change an existing database, copy it to
/// `<backups>/pre-migration-v<version>-<UTC time>.sqlite` (the file a county restores if an
/// upgrade goes wrong). Returns the copy's path.
pub(super) fn backup_before_migration(
    connection: &Connection,
    backups: &Path,
    from_version: i64,
) -> StoreResult<PathBuf> {
    std::fs::create_dir_all(backups).map_err(|error| {
        StoreError::database_caused_by(
            format!(
                "cannot create the pre-migration backup folder {}: {error}",
                backups.display()
            ),
            error,
        )
    })?;
    let stamp = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .map_err(|error| {
            StoreError::database_caused_by(format!("backup file name: {error}"), error)
        })?;
    // Two upgrades within one second (a retried start) must not overwrite the first copy.
    let mut destination = backups.join(format!("pre-migration-v{from_version}-{stamp}.sqlite"));
    let mut attempt = 1;
    while destination.exists() {
        attempt += 1;
        destination = backups.join(format!(
            "pre-migration-v{from_version}-{stamp}-{attempt}.sqlite"
        ));
    }
    copy_connection(connection, &destination)?;
    sync_file(&destination)?;
    Ok(destination)
}

/// The online backup itself: every page of `source` into a new file, in one step (one read
/// transaction, so one snapshot). A source locked by a checkpoint is retried briefly.
fn copy_connection(source: &Connection, destination: &Path) -> StoreResult<()> {
    let mut target = Connection::open(destination)?;
    {
        let backup = Backup::new(source, &mut target)?;
        step_to_the_end(&backup)?;
    }
    // The copy inherits the live file's WAL mode; a copy in rollback-journal mode is one
    // self-contained file at rest (no `-wal`/`-shm` beside it when opened for a look). The
    // server switches a restored file back to WAL when it opens it.
    let _mode: String = target.query_row("PRAGMA journal_mode = DELETE", [], |row| row.get(0))?;
    Ok(())
}

fn step_to_the_end(backup: &Backup<'_, '_>) -> StoreResult<()> {
    let mut retries = 0;
    loop {
        match backup.step(-1)? {
            StepResult::Done => return Ok(()),
            // More never happens with -1 (all pages); treat it like a retry to be safe.
            StepResult::More => {}
            StepResult::Busy | StepResult::Locked => {
                retries += 1;
                if retries > LOCKED_RETRIES {
                    return Err(StoreError::database(
                        "the database stayed locked; try the backup again",
                    ));
                }
                std::thread::sleep(LOCKED_RETRY_PAUSE);
            }
            // StepResult is non-exhaustive.
            _ => std::thread::sleep(LOCKED_RETRY_PAUSE),
        }
    }
}

fn check_copy(connection: &Connection, path: &Path) -> StoreResult<()> {
    let problems = {
        let mut statement = connection.prepare("PRAGMA integrity_check")?;
        let rows = statement.query_map([], |row| row.get::<_, String>(0))?;
        rows.take(5).collect::<rusqlite::Result<Vec<_>>>()?
    };
    if problems.len() == 1 && problems[0] == "ok" {
        return Ok(());
    }
    Err(StoreError::Corrupt(format!(
        "database copy {} fails PRAGMA integrity_check: {}",
        path.display(),
        problems.join("; ")
    )))
}

fn sync_file(path: &Path) -> StoreResult<()> {
    std::fs::File::open(path)
        .and_then(|file| file.sync_all())
        .map_err(|error| {
            StoreError::database_caused_by(
                format!("cannot sync {}: {error}", path.display()),
                error,
            )
        })
}
