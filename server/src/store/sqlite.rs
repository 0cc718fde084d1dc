//! SQLite implementation of [`Store`](super::Store): the default, embedded storage.
//!
//! Durability first (DESIGN §3): WAL journal, `synchronous=FULL`, so a push acknowledged to a
//! phone survives a power cut. One writer connection behind a mutex serialises every write
//! transaction (SQLite allows one writer anyway; queueing in-process avoids busy retries),
//! and a small pool of read-only connections serves reads concurrently with the writer.
//! Every call runs in `tokio::task::spawn_blocking` so SQLite never blocks the async runtime.
//!
//! Schema changes are numbered SQL files in `migrations/`, embedded at build time and applied
//! in order, each in its own transaction, with the version kept in `PRAGMA user_version`.

use crate::store::search::sqlite as search;
/// SQL: the ids of the townships of the county bound as `?1` (a township bound as `?1` has
/// none). A macro, so `const` SQL can `concat!` it: every county-wide query then agrees on
/// what the county's townships are.
macro_rules! county_townships_sql {
    () => {
        "SELECT area_id FROM areas WHERE parent_id = ?1 AND level = 'township'"
    };
}
pub(in crate::store) use county_townships_sql;

pub mod backup;
pub(in crate::store) mod checkpoint;
pub(in crate::store) mod evidence;
pub(in crate::store) mod memo;
pub(in crate::store) mod pull;
pub(in crate::store) mod push;
pub(in crate::store) mod sealing;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use fieldsync_model::CodeList;
use fieldsync_model::codes::{CadreRank, Crs, Role};
use fieldsync_model::hlc::Hlc;
use fieldsync_model::household::{GeoPoint, Household, Member, field_seq_key};
use fieldsync_model::register::{
    FieldEdit, FieldTarget, PendingConflict, RegisterWrite, Stamp, apply_value, current, merge,
    validate_edit,
};
use fieldsync_model::review::{ReturnReason, VisitStatus};
use fieldsync_model::sync::{MutationOutcome, RejectCode};
use rusqlite::{
    Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior, params,
};
use time::OffsetDateTime;

use super::push_record::rejected;
use super::{
    Area, ChangeLogBounds, ConflictRecord, ConflictResolution, DeviceBacklog, Heartbeat,
    PullChanges, PushBatch, ScopeBounds, SessionLookup, StoreError, StoreResult, UserRecord,
};
use crate::store::households::sqlite as households;
use crate::store::sealed::PiiCipher;
use sealing::{CONFLICT_CONTEXT_SQL, REGISTER_CONTEXT_SQL, USER_PHONE_CONTEXT_SQL};

/// The embedded migrations, in order. The number is the `user_version` the database has
/// after the file ran; never edit a released file, add a new one.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "initial", include_str!("migrations/0001_initial.sql")),
    (
        2,
        "registers",
        include_str!("migrations/0002_registers.sql"),
    ),
    (3, "removals", include_str!("migrations/0003_removals.sql")),
    (4, "horizon", include_str!("migrations/0004_horizon.sql")),
    (
        5,
        "scope_sequences",
        include_str!("migrations/0005_scope_sequences.sql"),
    ),
    (
        6,
        "photo_meta",
        include_str!("migrations/0006_photo_meta.sql"),
    ),
    (
        7,
        "upload_expiry",
        include_str!("migrations/0007_upload_expiry.sql"),
    ),
    (8, "ledger", include_str!("migrations/0008_ledger.sql")),
    (
        9,
        "income_thresholds",
        include_str!("migrations/0009_income_thresholds.sql"),
    ),
    (
        10,
        "import_runs",
        include_str!("migrations/0010_import_runs.sql"),
    ),
    (
        11,
        "audit_log",
        include_str!("migrations/0011_audit_log.sql"),
    ),
    (
        13,
        "upload_activity",
        include_str!("migrations/0013_upload_activity.sql"),
    ),
    (
        14,
        "phash_bands",
        include_str!("migrations/0014_phash_bands.sql"),
    ),
    (
        15,
        "visit_checkin",
        include_str!("migrations/0015_visit_checkin.sql"),
    ),
    (16, "sessions", include_str!("migrations/0016_sessions.sql")),
    (
        17,
        "audit_key",
        include_str!("migrations/0017_audit_key.sql"),
    ),
    (
        18,
        "pii_at_rest",
        include_str!("migrations/0018_pii_at_rest.sql"),
    ),
    (
        19,
        "visit_evidence_columns",
        include_str!("migrations/0019_visit_evidence_columns.sql"),
    ),
    (
        20,
        "cadre_pull_index",
        include_str!("migrations/0020_cadre_pull_index.sql"),
    ),
    (
        21,
        "village_attributes",
        include_str!("migrations/0021_village_attributes.sql"),
    ),
    (22, "accounts", include_str!("migrations/0022_accounts.sql")),
    (
        23,
        "household_search",
        include_str!("migrations/0023_household_search.sql"),
    ),
    (
        24,
        "exif_damaged",
        include_str!("migrations/0024_exif_damaged.sql"),
    ),
    (
        25,
        "conflict_authors",
        include_str!("migrations/0025_conflict_authors.sql"),
    ),
    (
        26,
        "drop_author_month_index",
        include_str!("migrations/0026_drop_author_month_index.sql"),
    ),
    (
        27,
        "job_leases",
        include_str!("migrations/0027_job_leases.sql"),
    ),
    (
        28,
        "import_jobs",
        include_str!("migrations/0028_import_jobs.sql"),
    ),
    (
        29,
        "narrow_push_rows",
        include_str!("migrations/0029_narrow_push_rows.sql"),
    ),
];

/// The migration after which plain personal data already stored is sealed (in Rust: SQL
/// cannot encrypt), in the migration's own transaction.
const PII_AT_REST_VERSION: i64 = 18;

/// The migration after which the evidence columns of stored visits are filled (in Rust:
/// SQL cannot read RFC 3339 nanoseconds exactly), in the migration's own transaction.
const EVIDENCE_COLUMNS_VERSION: i64 = 19;

/// The migration after which the households already stored are indexed for the console's
/// search (in Rust: ID-number tails are in sealed cards), in the migration's own transaction.
const HOUSEHOLD_SEARCH_VERSION: i64 = 23;

/// Read-only connections kept open for reuse. Reads beyond this many at once open a
/// connection for the call and close it afterwards, so a burst never waits on the pool.
/// Opening one (file, schema parse, SQL functions, no cached statements) costs far more
/// than a small read, so the pool covers 32 concurrent callers (issue 11 small-RPC
/// benchmark: with 4, Pull at 32 callers was dominated by opening connections); an idle
/// connection holds little more than the pages it last read.
const READER_POOL_SIZE: usize = 32;

/// Prepared statements kept per pooled reader connection (rusqlite's default is 16).
const READER_STATEMENT_CACHE: usize = 64;

/// Prepared statements kept per writer connection (rusqlite's default is 16).
const WRITER_STATEMENT_CACHE: usize = 128;

/// How long a connection waits for a lock held by another process before failing. The
/// in-process writer mutex means this only matters for external tools holding the file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest pull page, so a phone asking for "everything" cannot make one huge response.
const MAX_PULL_LIMIT: u32 = 10_000;

const CHANGE_KIND_HOUSEHOLD: &str = "household";
pub(in crate::store) const CHANGE_KIND_VISIT_STATUS: &str = "visit_status";
/// A reassignment tombstone, addressed to the cadre who lost the household.
pub(in crate::store) const CHANGE_KIND_REMOVED: &str = "removed";

/// The SQLite store. Cheap to clone: clones share the same connections.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(in crate::store) inner: Arc<Connections>,
}

#[derive(Debug)]
pub(in crate::store) struct Connections {
    pub(in crate::store) path: PathBuf,
    /// Registered on every connection as the `pii_*` SQL functions (sqlite/sealing.rs).
    pub(in crate::store) pii: PiiCipher,
    pub(in crate::store) writer: Mutex<Connection>,
    pub(in crate::store) readers: Mutex<Vec<Connection>>,
    /// The key new audit records are signed with (HMAC); `None` only for stores opened
    /// without one (unit tests, tools), which append legacy SHA-256 records.
    pub(in crate::store) audit_key: Option<crate::keys::SecretKey>,
    /// Transactions committed on the writer connection (its commit hook counts them).
    pub(in crate::store) committed_writes: Arc<AtomicU64>,
    /// Checkpoints the WAL on its own thread once a commit has grown it (sqlite/checkpoint.rs).
    pub(in crate::store) checkpointer: checkpoint::Checkpointer,
    /// Bumped after every write transaction ends; the memos below are valid only within one.
    pub(in crate::store) write_generation: memo::WriteGeneration,
    /// Session lookups by token hash: every authenticated call makes one.
    pub(in crate::store) sessions: memo::Memo<String, Option<SessionLookup>>,
    /// The change-log bounds every pull checks its cursor against.
    pub(in crate::store) change_log_bounds: memo::Memo<(), ChangeLogBounds>,
    /// Each device's stored heartbeat, which every pull compares its new one with.
    pub(in crate::store) heartbeats: memo::Memo<String, Option<StoredHeartbeat>>,
    /// Pulls that found nothing new, by caller scope, cursor and page size: what a phone
    /// polling with an up-to-date cursor asks again and again.
    pub(in crate::store) up_to_date_pulls: memo::Memo<UpToDatePullKey, PullChanges>,
    /// Each user's edits waiting in a conflict, which every pull's checkpoint carries.
    pub(in crate::store) pending_conflicts: memo::Memo<String, Vec<PendingConflict>>,
}

/// Who pulled (what decides the scope), from where, and the page size.
pub(in crate::store) type UpToDatePullKey = (String, &'static str, String, String, u32);

/// Memo capacities: a county has a few thousand devices, each with one live token.
const MEMO_CAPACITY: usize = 16_384;

/// Sort SQLite failures by whether waiting can cure them. Only a busy or locked database,
/// I/O trouble, a full disk or memory pressure are `Database` (answered as retryable
/// UNAVAILABLE). A constraint the input broke or a value SQLite cannot hold fails the same
/// way on every retry, so it is `InvalidValue`; a damaged file or a row this build cannot
/// read is `Corrupt`. Phones retry UNAVAILABLE forever, so a permanent cause must never
/// land there.
impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        // SQLite hands a `pii_*` function's failure back as text only: recognise it, so a
        // wrong or missing key is reported as such and never as garbage data.
        if let rusqlite::Error::SqliteFailure(_, Some(message)) = &error
            && message.contains(sealing::SEAL_FAILURE_MARKER)
        {
            return StoreError::Sealed(message.clone());
        }
        match &error {
            rusqlite::Error::SqliteFailure(failure, _) => match failure.code {
                ErrorCode::ConstraintViolation
                | ErrorCode::TooBig
                | ErrorCode::TypeMismatch
                | ErrorCode::ParameterOutOfRange => StoreError::InvalidValue {
                    field: "record".into(),
                    message: format!("refused by the database: {error}"),
                },
                ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => corrupt(&error),
                _ => StoreError::database_caused_by(error.to_string(), error),
            },
            rusqlite::Error::ToSqlConversionFailure(_) => StoreError::InvalidValue {
                field: "record".into(),
                message: format!("a value cannot be stored: {error}"),
            },
            rusqlite::Error::IntegralValueOutOfRange(..)
            | rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::Utf8Error(..) => corrupt(&error),
            _ => StoreError::database_caused_by(error.to_string(), error),
        }
    }
}

pub(in crate::store) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

pub(in crate::store) use crate::store::{
    decode_flags, decode_json, encode_json, from_millis, parse_state, to_millis,
};

/// SQLite integers are signed; a u64 beyond i64::MAX cannot be stored faithfully.
/// Too large is the caller's value, not a storage fault, so it is `InvalidValue` (never the
/// retryable UNAVAILABLE).
pub(in crate::store) fn to_sql_integer(value: u64, what: &str) -> StoreResult<i64> {
    i64::try_from(value).map_err(|_| StoreError::InvalidValue {
        field: what.to_owned(),
        message: format!("{value} is too large (at most {})", i64::MAX),
    })
}

pub(in crate::store) fn from_sql_unsigned<T: TryFrom<i64>>(
    value: i64,
    what: &str,
) -> StoreResult<T> {
    T::try_from(value).map_err(|_| corrupt(format!("{what} {value} is out of range")))
}

pub(in crate::store) fn parse_role(name: &str) -> StoreResult<Role> {
    Role::parse(name).ok_or_else(|| corrupt(format!("unknown role {name:?}")))
}

impl SqliteStore {
    /// Open (creating if needed) the database at `path`, set the durability pragmas and bring
    /// the schema up to date. `pii` seals and opens personal data (ID and phone numbers) at
    /// this boundary; it must hold the keys the database was sealed with.
    ///
    /// A damaged file is refused (`StoreError::Corrupt` naming the file): serving it would
    /// answer phones from a database that silently lost rows.
    pub fn open(path: &Path, pii: PiiCipher) -> StoreResult<SqliteStore> {
        Self::open_with_audit_key(path, pii, None)
    }

    /// Like [`SqliteStore::open`], signing new audit records with `audit_key` (the server
    /// always passes its key; see `crate::audit`).
    pub fn open_with_audit_key(
        path: &Path,
        pii: PiiCipher,
        audit_key: Option<crate::keys::SecretKey>,
    ) -> StoreResult<SqliteStore> {
        let mut writer = Connection::open(path)?;
        // Another process holding the file briefly must not read as damage.
        writer.busy_timeout(BUSY_TIMEOUT)?;
        check_integrity(&writer, path)?;
        configure_writer(&writer)?;
        sealing::register_functions(&writer, &pii)?;
        // Pre-migration copies go beside the database, in the data folder's `backups/`.
        let pre_migration_backups = path.parent().map(|folder| folder.join("backups"));
        apply_migrations(&mut writer, pre_migration_backups.as_deref())?;
        // A push runs a few dozen distinct statements per visit kind; keep them all prepared.
        writer.set_prepared_statement_cache_capacity(WRITER_STATEMENT_CACHE);
        let committed_writes = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&committed_writes);
        writer.commit_hook(Some(move || {
            counter.fetch_add(1, Ordering::Relaxed);
            // false: let the commit go ahead.
            false
        }));
        let checkpointer = checkpoint::Checkpointer::start(path)?;
        checkpoint::take_checkpoints_off_the_writer(&writer);
        Ok(SqliteStore {
            inner: Arc::new(Connections {
                path: path.to_path_buf(),
                pii,
                writer: Mutex::new(writer),
                readers: Mutex::new(Vec::with_capacity(READER_POOL_SIZE)),
                audit_key,
                committed_writes,
                checkpointer,
                write_generation: memo::WriteGeneration::default(),
                sessions: memo::Memo::with_capacity(MEMO_CAPACITY),
                change_log_bounds: memo::Memo::with_capacity(1),
                heartbeats: memo::Memo::with_capacity(MEMO_CAPACITY),
                up_to_date_pulls: memo::Memo::with_capacity(MEMO_CAPACITY),
                pending_conflicts: memo::Memo::with_capacity(MEMO_CAPACITY),
            }),
        })
    }

    /// Seal every personal value still plain and reseal every value sealed with a retired
    /// key, in one write transaction, then rewrite the file and empty the WAL so the old
    /// forms do not linger in free pages (key rotation). Returns (values rewritten, values
    /// still stale afterwards: 0 unless a key is missing).
    pub async fn reseal_personal_data(&self) -> StoreResult<(u64, u64)> {
        let rewritten = self.write(sealing::reseal_all).await?;
        let connections = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let writer = connections
                .writer
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let scrubbed = scrub_free_pages(&writer);
            connections.write_generation.advance();
            scrubbed?;
            sealing::stale_value_count(&writer)
        })
        .await
        .map_err(|error| StoreError::Join(error.to_string()))?
        .map(|stale| (rewritten, stale))
    }

    /// Run `work` on a pooled read-only connection in a blocking thread.
    pub(in crate::store) async fn read<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let connections = Arc::clone(&self.inner);
        let in_flight = crate::monitoring::blocking_call_started();
        // The caller's request span, so lines logged in the blocking call carry its id.
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _in_flight = in_flight;
            let _span = span.enter();
            let connection = connections.checkout_reader()?;
            // One read transaction per call, so a call that runs several queries (a pull
            // reads the change log, then cards and statuses) sees a single WAL snapshot.
            // Dropping it rolls back, which for a read only ends the snapshot.
            let result = connection
                .unchecked_transaction()
                .map_err(StoreError::from)
                .and_then(|snapshot| work(&snapshot));
            connections.return_reader(connection);
            result
        })
        .await
        .map_err(|error| StoreError::Join(error.to_string()))?
    }

    /// Like [`SqliteStore::read`], answering from `memo` while no write has ended since the
    /// same read under `key` (sqlite/memo.rs).
    pub(in crate::store) async fn read_memoized<K, T, F>(
        &self,
        memo: fn(&Connections) -> &memo::Memo<K, T>,
        key: K,
        work: F,
    ) -> StoreResult<T>
    where
        K: Eq + std::hash::Hash,
        T: Clone + Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let generation = self.inner.write_generation.current();
        if let Some(answer) = memo(&self.inner).get(&key, generation) {
            return Ok(answer);
        }
        let answer = self.read(work).await?;
        memo(&self.inner).put(key, generation, answer.clone());
        Ok(answer)
    }

    /// Run `work` in one immediate write transaction on the writer connection, committing
    /// when it returns `Ok` and rolling back (on drop) when it returns `Err`.
    pub(in crate::store) async fn write<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> StoreResult<T> + Send + 'static,
    {
        let connections = Arc::clone(&self.inner);
        let in_flight = crate::monitoring::blocking_call_started();
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _in_flight = in_flight;
            let _span = span.enter();
            // The single writer is the store's one queue: how long a write waits here is
            // what the phones feel when the county is busy (`/metrics`).
            let waiting_since = std::time::Instant::now();
            // A panic in an earlier write poisons the mutex, but its transaction was rolled
            // back when it unwound, so the connection is still sound to use.
            let mut writer = connections
                .writer
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            crate::monitoring::record_write_lock_wait(waiting_since.elapsed());
            let outcome = (|| {
                let transaction =
                    writer.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let value = work(&transaction)?;
                transaction.commit()?;
                Ok(value)
            })();
            // After the transaction ended (committed, or rolled back on drop): a read that
            // began before this point never has its answer used again (sqlite/memo.rs).
            connections.write_generation.advance();
            drop(writer);
            connections
                .checkpointer
                .after_commit(checkpoint::frames_after_last_commit());
            outcome
        })
        .await
        .map_err(|error| StoreError::Join(error.to_string()))?
    }
}

impl Connections {
    fn checkout_reader(&self) -> StoreResult<Connection> {
        let pooled = self
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        match pooled {
            Some(connection) => Ok(connection),
            None => open_reader(&self.path, &self.pii),
        }
    }

    fn return_reader(&self, connection: Connection) {
        let mut readers = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
        if readers.len() < READER_POOL_SIZE {
            readers.push(connection);
        }
    }
}

fn configure_writer(connection: &Connection) -> StoreResult<()> {
    connection.busy_timeout(BUSY_TIMEOUT)?;
    // journal_mode answers with the mode in force; anything but "wal" (e.g. a filesystem
    // without shared memory) would silently weaken the durability promise, so refuse it.
    let mode: String = connection.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::database(format!(
            "could not enable WAL journal mode (got {mode:?})"
        )));
    }
    connection.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
    Ok(())
}

/// Most problems `PRAGMA quick_check` lists in the start-up error; the first few are enough
/// to recognise the damage, and the full list is one `sqlite3` command away.
const MAX_INTEGRITY_PROBLEMS_SHOWN: usize = 5;

/// `PRAGMA quick_check` at start-up: b-tree structure, page links and record formats of every
/// table and index (it skips only the cross-check of index contents against tables, which
/// would make start-up as slow as a full `integrity_check`). A file that fails it, or that
/// is not a database at all, is refused with what to do.
fn check_integrity(connection: &Connection, path: &Path) -> StoreResult<()> {
    let refuse = |problems: String| {
        StoreError::Corrupt(format!(
            "database file {} is damaged ({problems}); the server will not serve it. Stop the \
             server, keep this file for analysis, and restore the newest backup in its place \
             (数据库文件已损坏，请从备份恢复)",
            path.display()
        ))
    };
    let problems = (|| -> rusqlite::Result<Vec<String>> {
        let mut statement = connection.prepare("PRAGMA quick_check")?;
        let rows = statement.query_map([], |row| row.get::<_, String>(0))?;
        rows.take(MAX_INTEGRITY_PROBLEMS_SHOWN).collect()
    })()
    .map_err(|error| match StoreError::from(error) {
        StoreError::Corrupt(detail) => refuse(format!("PRAGMA quick_check failed: {detail}")),
        // Busy, I/O: not evidence of damage; reported as it is.
        other => other,
    })?;
    if problems.len() == 1 && problems[0] == "ok" {
        return Ok(());
    }
    Err(refuse(format!(
        "PRAGMA quick_check: {}",
        problems.join("; ")
    )))
}

fn open_reader(path: &Path, pii: &PiiCipher) -> StoreResult<Connection> {
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    connection.busy_timeout(BUSY_TIMEOUT)?;
    connection.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
    sealing::register_functions(&connection, pii)?;
    // Pooled readers serve every console page and RPC: keep their statements prepared
    // (parsing SQL showed in the small-RPC profile).
    connection.set_prepared_statement_cache_capacity(READER_STATEMENT_CACHE);
    Ok(connection)
}

/// Register the `pii_*` SQL functions (sqlite/sealing.rs) on a connection opened outside
/// the store, so a tool or test reading the file directly can open sealed values, e.g.
/// `pii_open(value_json, 'register/' || household_id || '/' || target_key || '/' || field)`.
pub fn register_pii_functions(connection: &Connection, pii: &PiiCipher) -> StoreResult<()> {
    sealing::register_functions(connection, pii)
}

/// Rewrite the database file (VACUUM) and truncate the WAL, so values replaced by their
/// sealed form leave no copy in free pages or old WAL frames.
fn scrub_free_pages(connection: &Connection) -> StoreResult<()> {
    connection.execute_batch("VACUUM;")?;
    // wal_checkpoint answers with a row (busy, log frames, checkpointed frames).
    connection.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    Ok(())
}

/// Bring the schema to the newest embedded version. Safe to run on every open: applied
/// migrations are skipped, and each pending one commits atomically with its version bump.
///
/// When an existing database (version > 0) has pending migrations and `pre_migration_backups`
/// is given, the file is first copied there (`backup::backup_before_migration`): each
/// migration is atomic, but a migration that is *wrong* commits happily, and then the copy
/// is the way back. A new, empty database has nothing to lose and is not copied.
fn apply_migrations(
    connection: &mut Connection,
    pre_migration_backups: Option<&Path>,
) -> StoreResult<()> {
    let current: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let newest = MIGRATIONS.last().map_or(0, |(version, _, _)| *version);
    if current > newest {
        return Err(StoreError::database(format!(
            "database schema version {current} is newer than this server knows ({newest}); \
             upgrade the server"
        )));
    }
    if current > 0
        && current < newest
        && let Some(backups) = pre_migration_backups
    {
        let copy = backup::backup_before_migration(connection, backups, current)?;
        tracing::info!(
            from_version = current,
            to_version = newest,
            backup = %copy.display(),
            "database copied before schema migrations"
        );
    }
    let mut sealed_stored_data = false;
    for (version, name, sql) in MIGRATIONS {
        if *version <= current {
            continue;
        }
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        transaction.execute_batch(sql).map_err(|error| {
            StoreError::database_caused_by(format!("migration {version} {name}: {error}"), error)
        })?;
        // PRAGMA takes no bound parameters; the version is our own constant.
        if *version == PII_AT_REST_VERSION {
            sealed_stored_data = sealing::reseal_all(&transaction)? > 0;
        }
        if *version == EVIDENCE_COLUMNS_VERSION {
            evidence::backfill_evidence_columns(&transaction)?;
        }
        if *version == HOUSEHOLD_SEARCH_VERSION {
            search::rebuild_search_index(&transaction)?;
        }
        transaction.execute_batch(&format!("PRAGMA user_version = {version}"))?;
        transaction.commit()?;
    }
    if sealed_stored_data {
        scrub_free_pages(connection)?;
    }
    Ok(())
}

// ----- row helpers shared by reads and writes -----

/// The next sequence of a scope (township), allocated inside the caller's write
/// transaction. The upsert's update takes the scope's counter row, which is what keeps
/// a scope's numbers visible in allocation order under concurrent writers (PostgreSQL) too;
/// a free-running sequence could become visible out of order and make a pull skip rows.
fn next_scope_seq(connection: &Connection, scope_id: &str) -> StoreResult<i64> {
    // A push of 100 visits logs 100 changes, so this runs per entry. Not an upsert with
    // RETURNING: SQLite collects RETURNING rows in a temporary b-tree it creates and drops
    // for every call, which cost more than the counter itself (issue 11 §2 profile). The
    // counter row is one page, already dirty after the first entry of a transaction.
    let bumped = connection
        .prepare_cached("UPDATE scope_counters SET last_seq = last_seq + 1 WHERE scope_id = ?1")?
        .execute(params![scope_id])?;
    if bumped == 0 {
        connection
            .prepare_cached("INSERT INTO scope_counters (scope_id, last_seq) VALUES (?1, 1)")?
            .execute(params![scope_id])?;
        return Ok(1);
    }
    Ok(connection
        .prepare_cached("SELECT last_seq FROM scope_counters WHERE scope_id = ?1")?
        .query_row(params![scope_id], |row| row.get(0))?)
}

/// One change-log entry to write.
struct ChangeEntry<'a> {
    /// The household's township: the scope the entry is pulled in.
    scope_id: &'a str,
    household_id: &'a str,
    kind: &'a str,
    entity_id: &'a str,
    revision: u32,
    /// For tombstones: the user they are for.
    addressed_to: Option<&'a str>,
    /// When a tombstone was written (unix ms; the horizon counts from it); 0 for other
    /// kinds, which never expire.
    logged_at: i64,
}

/// Write a change-log entry at its scope's next sequence; returns its global row id (`seq`).
fn log_entry(connection: &Connection, entry: &ChangeEntry<'_>) -> StoreResult<i64> {
    let scope_seq = next_scope_seq(connection, entry.scope_id)?;
    connection
        .prepare_cached(
            "INSERT INTO change_log (household_id, kind, entity_id, revision, addressed_to,
                                     logged_at, scope_id, scope_seq)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![
            entry.household_id,
            entry.kind,
            entry.entity_id,
            entry.revision,
            entry.addressed_to,
            entry.logged_at,
            entry.scope_id,
            scope_seq
        ])?;
    Ok(connection.last_insert_rowid())
}

/// Log a change of a household in township `scope_id`; returns its global row id (`seq`).
pub(in crate::store) fn log_change(
    connection: &Connection,
    scope_id: &str,
    household_id: &str,
    kind: &str,
    entity_id: &str,
    revision: u32,
) -> StoreResult<i64> {
    log_entry(
        connection,
        &ChangeEntry {
            scope_id,
            household_id,
            kind,
            entity_id,
            revision,
            addressed_to: None,
            logged_at: 0,
        },
    )
}

/// The township of a stored household (the scope its changes are logged in).
pub(in crate::store) fn township_of(
    connection: &Connection,
    household_id: &str,
) -> StoreResult<String> {
    connection
        .query_row(
            "SELECT township_id FROM households WHERE household_id = ?1",
            params![household_id],
            |row| row.get(0),
        )
        .optional()?
        .ok_or_else(|| corrupt(format!("change for missing household {household_id}")))
}

pub(in crate::store) const AREA_COLUMNS: &str =
    "area_id, name, level, parent_id, centre_lat, centre_lon, centre_crs";

pub(in crate::store) fn query_areas(
    connection: &Connection,
    sql: &str,
    parameters: impl rusqlite::Params,
) -> StoreResult<Vec<Area>> {
    let mut statement = connection.prepare(sql)?;
    let rows = statement.query_map(parameters, |row| {
        let latitude: Option<f64> = row.get(4)?;
        let longitude: Option<f64> = row.get(5)?;
        let crs_code: Option<i32> = row.get(6)?;
        let area = Area {
            area_id: row.get(0)?,
            name: row.get(1)?,
            level: row.get(2)?,
            parent_id: row.get(3)?,
            centre: None,
        };
        Ok((area, latitude, longitude, crs_code))
    })?;
    let mut areas = Vec::new();
    for row in rows {
        let (mut area, latitude, longitude, crs_code) = row?;
        area.centre = match (latitude, longitude, crs_code) {
            (Some(lat), Some(lon), Some(code)) => {
                let crs = Crs::from_code(code)
                    .ok_or_else(|| corrupt(format!("area {}: unknown CRS {code}", area.area_id)))?;
                Some(GeoPoint { lat, lon, crs })
            }
            _ => None,
        };
        areas.push(area);
    }
    Ok(areas)
}

pub(in crate::store) fn load_household(
    connection: &Connection,
    household_id: &str,
) -> StoreResult<Option<Household>> {
    let row: Option<(String, i64)> = connection
        .prepare_cached(
            "SELECT pii_open_card(card), server_seq FROM households WHERE household_id = ?1",
        )?
        .query_row(params![household_id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    row.map(|(card, server_seq)| decode_household(&card, server_seq))
        .transpose()
}

/// [`load_household`] for reads that hold the cipher: the stored card is decoded once and
/// its sealed values opened in Rust ([`crate::store::sealed::open_card`], as on
/// PostgreSQL), instead of opened by `pii_open_card` in SQL and then decoded, which parses
/// the card twice. Hot reads use it (a review's GetVisit: issue 11 small-RPC profile).
pub(in crate::store) fn load_household_opening_in_rust(
    connection: &Connection,
    pii: &PiiCipher,
    household_id: &str,
) -> StoreResult<Option<Household>> {
    let row: Option<(String, i64)> = connection
        .prepare_cached("SELECT card, server_seq FROM households WHERE household_id = ?1")?
        .query_row(params![household_id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    row.map(|(card, server_seq)| crate::store::sealed::open_card(pii, &card, server_seq))
        .transpose()
}

/// A household's township and registered location, without opening its sealed fields or
/// decoding the whole card (the push and evidence paths need only these two). The location
/// object is the card's own JSON text, decoded by the same serde as the card.
pub(in crate::store) fn household_place(
    connection: &Connection,
    household_id: &str,
) -> StoreResult<Option<(String, Option<GeoPoint>)>> {
    let row: Option<(String, Option<String>)> = connection
        .prepare_cached(
            "SELECT township_id, json_extract(card, '$.location') FROM households
             WHERE household_id = ?1",
        )?
        .query_row(params![household_id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    row.map(|(township_id, location)| {
        let location = location
            .map(|text| decode_json::<GeoPoint>(&text, "household location"))
            .transpose()?;
        Ok((township_id, location))
    })
    .transpose()
}

pub(in crate::store) fn decode_household(card: &str, server_seq: i64) -> StoreResult<Household> {
    let mut household: Household = decode_json(card, "household card")?;
    // The column is authoritative: it is updated with every logged change of the household.
    household.server_seq = server_seq;
    Ok(household)
}

pub(in crate::store) fn household_exists(
    connection: &Connection,
    household_id: &str,
) -> StoreResult<bool> {
    Ok(connection
        .query_row(
            "SELECT 1 FROM households WHERE household_id = ?1",
            params![household_id],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// The review status of one revision: its state plus the decision on it, if any.
pub(in crate::store) fn load_visit_status(
    connection: &Connection,
    visit_id: &str,
    revision: u32,
) -> StoreResult<Option<VisitStatus>> {
    type StatusRow = (
        String,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<i64>,
    );
    let row: Option<StatusRow> = connection
        .prepare_cached(
            "SELECT v.household_id, v.state, d.reasons, d.note, d.deadline,
                    COALESCE(u.display_name, d.reviewer_user_id), d.decided_at
             FROM visits v
             LEFT JOIN decisions d ON d.visit_id = v.visit_id AND d.revision = v.revision
             LEFT JOIN users u ON u.user_id = d.reviewer_user_id
             WHERE v.visit_id = ?1 AND v.revision = ?2",
        )?
        .query_row(params![visit_id, revision], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
                row.get(5)?,
                row.get(6)?,
            ))
        })
        .optional()?;
    let Some((household_id, state, reasons, note, deadline, reviewer_name, decided_at)) = row
    else {
        return Ok(None);
    };
    let reasons: Vec<ReturnReason> = match reasons {
        Some(text) => decode_json(&text, "decision reasons")?,
        None => Vec::new(),
    };
    Ok(Some(VisitStatus {
        visit_id: visit_id.to_owned(),
        revision,
        household_id,
        state: parse_state(&state)?,
        reasons,
        note: note.unwrap_or_default(),
        deadline: deadline.unwrap_or_default(),
        reviewer_name: reviewer_name.unwrap_or_default(),
        decided_at: decided_at.map(from_millis).transpose()?,
    }))
}

pub(in crate::store) fn load_user(
    connection: &Connection,
    where_clause: &str,
    key: &str,
) -> StoreResult<Option<UserRecord>> {
    type UserRow = (
        String,
        String,
        String,
        String,
        String,
        String,
        String,
        Option<i32>,
    );
    let sql = format!(
        "SELECT user_id, username, display_name, password_hash, role, area_id,
                pii_open(phone, {USER_PHONE_CONTEXT_SQL}), rank
         FROM users WHERE {where_clause}"
    );
    let row: Option<UserRow> = connection
        .query_row(&sql, params![key], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
                row.get(5)?,
                row.get(6)?,
                row.get(7)?,
            ))
        })
        .optional()?;
    let Some((user_id, username, display_name, password_hash, role, area_id, phone, rank)) = row
    else {
        return Ok(None);
    };
    let rank = rank
        .map(|code| {
            CadreRank::from_code(code)
                .ok_or_else(|| corrupt(format!("user {user_id}: unknown rank {code}")))
        })
        .transpose()?;
    Ok(Some(UserRecord {
        role: parse_role(&role)?,
        user_id,
        username,
        display_name,
        password_hash,
        area_id,
        phone,
        rank,
    }))
}

/// Store a new household and log it for pull (seed and roster import).
pub(in crate::store) fn insert_household(
    transaction: &Transaction<'_>,
    household: &Household,
) -> StoreResult<()> {
    // Logging first gives the household its server_seq, so the stored card and the column
    // agree from the start, and a phone whose scope contains it receives it on its next pull.
    let seq = log_household_change(transaction, household)?;
    let mut card = household.clone();
    card.server_seq = seq;
    transaction.execute(
        "INSERT INTO households (household_id, township_id, village_id, head_name, card,
                                 server_seq)
         VALUES (?1, ?2, ?3, ?4, pii_seal_card(?5), ?6)",
        params![
            card.household_id,
            card.township_id,
            card.village_id,
            card.head_name,
            encode_json(&card)?,
            seq
        ],
    )?;
    refresh_household_indexes(transaction, &card)
}

pub(in crate::store) use push::apply_push_in;

// ----- field registers -----

fn hlc_to_sql(hlc: Hlc) -> StoreResult<i64> {
    to_sql_integer(hlc.as_u64(), "hlc")
}

pub(in crate::store) fn hlc_from_sql(value: i64) -> StoreResult<Hlc> {
    Ok(Hlc::from_u64(from_sql_unsigned(value, "hlc")?))
}

/// Every write of one register, in the order the server applied them.
pub(in crate::store) fn register_history_in(
    connection: &Connection,
    household_id: &str,
    target_key: &str,
    field: &str,
) -> StoreResult<Vec<RegisterWrite>> {
    let mut statement = connection.prepare(&format!(
        "SELECT pii_open(value_json, {REGISTER_CONTEXT_SQL}), hlc, device_id,
                    author_user_id, base_seq, server_seq
             FROM register_writes
             WHERE household_id = ?1 AND target_key = ?2 AND field = ?3
             ORDER BY server_seq, hlc, device_id"
    ))?;
    let rows = statement.query_map(params![household_id, target_key, field], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, i64>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, String>(3)?,
            row.get::<_, i64>(4)?,
            row.get::<_, i64>(5)?,
        ))
    })?;
    let mut history = Vec::new();
    for row in rows {
        let (value_json, hlc, device_id, author_user_id, base_seq, server_seq) = row?;
        history.push(RegisterWrite {
            value: decode_json(&value_json, "register value")?,
            stamp: Stamp {
                hlc: hlc_from_sql(hlc)?,
                device_id,
            },
            author_user_id,
            base_seq,
            server_seq,
        });
    }
    Ok(history)
}

/// Store the card (with its new server sequence) after a change logged at `seq`.
///
/// `seq` is the change log's global row id, not the scope sequence. A household's
/// `server_seq`, its `field_seqs` and the `server_seq` of its register writes only need to be
/// comparable within that one household (a phone's `base_seq` against the writes it may not
/// have seen), and the global row id increases in commit order there, because SQLite has one
/// writer and every writer of a household takes that household's row. Keeping it avoids
/// renumbering stored writes and the `base_seq` of edits still queued on phones; a
/// PostgreSQL store must draw it after locking the household row. (A per-township sequence
/// would work as well, since a household lives in one township, but buys nothing here.)
fn save_household(
    transaction: &Transaction<'_>,
    card: &mut Household,
    seq: i64,
) -> StoreResult<()> {
    card.server_seq = seq;
    transaction.execute(
        "UPDATE households SET card = pii_seal_card(?2), head_name = ?3, server_seq = ?4
         WHERE household_id = ?1",
        params![card.household_id, encode_json(&*card)?, card.head_name, seq],
    )?;
    refresh_household_indexes(transaction, card)
}

/// Rebuild what is derived from a card just written: the ID numbers' blind index and the
/// household's search document, in the card's own transaction.
fn refresh_household_indexes(transaction: &Transaction<'_>, card: &Household) -> StoreResult<()> {
    sealing::refresh_id_index(transaction, card)?;
    search::refresh_search_document(transaction, card)
}

/// Log a change of the household at its township's next sequence; returns the sequence.
fn log_household_change(transaction: &Transaction<'_>, card: &Household) -> StoreResult<i64> {
    log_change(
        transaction,
        &card.township_id,
        &card.household_id,
        CHANGE_KIND_HOUSEHOLD,
        &card.household_id,
        0,
    )
}

/// Log a change of the household and save the card with its sequence, so every phone in
/// scope pulls the household again (with what hangs off it).
pub(in crate::store) fn resend_household(
    transaction: &Transaction<'_>,
    card: &mut Household,
) -> StoreResult<()> {
    let seq = log_household_change(transaction, card)?;
    save_household(transaction, card, seq)
}

/// What storing one register write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::store) enum RegisterOutcome {
    /// A write with the same stamp is already stored.
    Duplicate,
    /// Stored at `seq`; `conflicts` concurrent writes with other values were found.
    Written { conflicts: usize },
}

/// One register write, already validated against `card`: merge it into the register's
/// history, store it at the household's next change sequence, show it on the card if it
/// wins, record conflicts for the township, and save the card.
#[allow(clippy::too_many_arguments)]
pub(in crate::store) fn write_register(
    transaction: &Transaction<'_>,
    card: &mut Household,
    target: &FieldTarget,
    field: &str,
    value: &serde_json::Value,
    stamp: Stamp,
    author_user_id: &str,
    base_seq: i64,
    created_at: i64,
) -> StoreResult<RegisterOutcome> {
    let target_key = target.as_key();
    let hlc = hlc_to_sql(stamp.hlc)?;
    let stored = transaction
        .query_row(
            "SELECT 1 FROM register_writes
             WHERE household_id = ?1 AND target_key = ?2 AND field = ?3 AND hlc = ?4
               AND device_id = ?5",
            params![card.household_id, target_key, field, hlc, stamp.device_id],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    if stored {
        return Ok(RegisterOutcome::Duplicate);
    }
    let history = register_history_in(transaction, &card.household_id, &target_key, field)?;
    // The write takes the household's next change sequence, so a phone quoting it as
    // base_seq provably saw this write and everything before it.
    let seq = log_household_change(transaction, card)?;
    let incoming = RegisterWrite {
        value: value.clone(),
        stamp,
        author_user_id: author_user_id.to_owned(),
        base_seq,
        server_seq: seq,
    };
    let outcome = merge(&card.household_id, target, field, &history, &incoming);
    transaction.execute(
        "INSERT INTO register_writes (household_id, target_key, field, value_json, hlc, device_id,
                                      author_user_id, base_seq, server_seq)
         VALUES (?1, ?2, ?3, pii_seal_field(?3, ?4, ?10), ?5, ?6, ?7, ?8, ?9)",
        params![
            card.household_id,
            target_key,
            field,
            encode_json(&incoming.value)?,
            hlc,
            incoming.stamp.device_id,
            incoming.author_user_id,
            base_seq,
            seq,
            sealing::register_context(&card.household_id, &target_key, field)
        ],
    )?;
    if outcome.incoming_wins {
        apply_value(card, target, field, value).map_err(|invalid| StoreError::InvalidValue {
            field: invalid.field.to_owned(),
            message: invalid.message,
        })?;
    }
    // Even a losing write moves the field's sequence: the phone that quotes it next has
    // seen every write so far, the loser included.
    card.field_seqs.insert(field_seq_key(target, field), seq);
    for pair in &outcome.conflicts {
        transaction.execute(
            "INSERT OR IGNORE INTO conflicts (conflict_key, household_id, township_id, target_key,
                                              field, first_json, second_json, created_at,
                                              first_author_user_id, second_author_user_id)
             VALUES (?1, ?2, ?3, ?4, ?5, pii_seal_field(?5, ?6, ?9), pii_seal_field(?5, ?7, ?9),
                     ?8, ?10, ?11)",
            params![
                pair.key(),
                card.household_id,
                card.township_id,
                target_key,
                field,
                encode_json(&pair.first)?,
                encode_json(&pair.second)?,
                created_at,
                sealing::conflict_context(&pair.key()),
                pair.first.author_user_id,
                pair.second.author_user_id,
            ],
        )?;
    }
    save_household(transaction, card, seq)?;
    Ok(RegisterOutcome::Written {
        conflicts: outcome.conflicts.len(),
    })
}

fn edit_field(
    transaction: &Transaction<'_>,
    batch: &PushBatch,
    hlc: u64,
    edit: &FieldEdit,
    received_at: i64,
) -> StoreResult<MutationOutcome> {
    let Some(mut card) = load_household(transaction, &edit.household_id)? else {
        return Ok(rejected(
            RejectCode::UnknownHousehold,
            format!("household {} is unknown", edit.household_id),
        ));
    };
    if let Err(invalid) = validate_edit(&card, edit) {
        return Ok(rejected(
            RejectCode::InvalidRecord,
            format!("{} {}: {invalid}", edit.target.as_key(), edit.field),
        ));
    }
    let stamp = Stamp {
        hlc: Hlc::from_u64(hlc),
        device_id: batch.device_id.clone(),
    };
    Ok(
        match write_register(
            transaction,
            &mut card,
            &edit.target,
            &edit.field,
            &edit.value,
            stamp,
            &batch.user_id,
            edit.base_seq,
            received_at,
        )? {
            RegisterOutcome::Duplicate => MutationOutcome::Duplicate,
            RegisterOutcome::Written { conflicts: 0 } => MutationOutcome::Applied,
            RegisterOutcome::Written { .. } => MutationOutcome::ConflictRecorded,
        },
    )
}

/// Add-wins member rows: a new id is appended; an id already on the card keeps its stored
/// row (a retry is a duplicate; other differences are edits, which travel as field writes).
pub(in crate::store) fn add_member(
    transaction: &Transaction<'_>,
    household_id: &str,
    member: &Member,
) -> StoreResult<MutationOutcome> {
    let Some(mut card) = load_household(transaction, household_id)? else {
        return Ok(rejected(
            RejectCode::UnknownHousehold,
            format!("household {household_id} is unknown"),
        ));
    };
    if let Some(existing) = card
        .members
        .iter()
        .find(|existing| existing.member_id == member.member_id)
    {
        return Ok(if existing == member {
            MutationOutcome::Duplicate
        } else {
            MutationOutcome::Applied
        });
    }
    if member.member_id.trim().is_empty() {
        return Ok(rejected(
            RejectCode::InvalidRecord,
            "member_id: is required",
        ));
    }
    if member.name.trim().is_empty() {
        return Ok(rejected(RejectCode::InvalidRecord, "name: is required"));
    }
    if !member.id_number.is_empty()
        && let Err(error) = fieldsync_model::id_number::validate(&member.id_number)
    {
        return Ok(rejected(
            RejectCode::InvalidRecord,
            format!("id_number: {error}"),
        ));
    }
    card.members.push(member.clone());
    resend_household(transaction, &mut card)?;
    Ok(MutationOutcome::Applied)
}

pub(in crate::store) fn resolve_conflict_in(
    transaction: &Transaction<'_>,
    resolution: &ConflictResolution,
) -> StoreResult<Stamp> {
    let not_found = || StoreError::NotFound(format!("conflict {}", resolution.conflict_key));
    let row: Option<(String, String, String, String, Option<i64>)> = transaction
        .query_row(
            "SELECT household_id, township_id, target_key, field, resolved_at
             FROM conflicts WHERE conflict_key = ?1",
            params![resolution.conflict_key],
            |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                ))
            },
        )
        .optional()?;
    let Some((household_id, township_id, target_key, field, resolved_at)) = row else {
        return Err(not_found());
    };
    // Another township's conflict is answered like an unknown one; a resolved one is gone
    // from the queue, so a second resolution (double submit) cannot overwrite newer edits.
    if township_id != resolution.township_id || resolved_at.is_some() {
        return Err(not_found());
    }
    let target = FieldTarget::parse_key(&target_key)
        .ok_or_else(|| corrupt(format!("conflict target {target_key:?}")))?;
    let mut card = load_household(transaction, &household_id)?
        .ok_or_else(|| corrupt(format!("conflict names missing household {household_id}")))?;
    let edit = FieldEdit {
        household_id: household_id.clone(),
        target: target.clone(),
        field: field.clone(),
        value: resolution.value.clone(),
        // The current field sequence: the reviewer saw every write, so this conflicts with
        // nothing.
        base_seq: card.field_seq(&target, &field),
    };
    validate_edit(&card, &edit).map_err(|invalid| StoreError::InvalidValue {
        field: "value".into(),
        message: invalid.to_string(),
    })?;
    let history = register_history_in(transaction, &household_id, &target_key, &field)?;
    let mut stamp = resolution.stamp.clone();
    // The server HLC is normally past every stored write already; after a restart it may
    // not be, and a resolution that lost to the write it resolves would be no resolution.
    if let Some(shown) = current(&history)
        && stamp <= shown.stamp
    {
        stamp.hlc = shown.stamp.hlc.tick(0);
    }
    let resolved_at = to_millis(resolution.resolved_at)?;
    write_register(
        transaction,
        &mut card,
        &target,
        &field,
        &edit.value,
        stamp.clone(),
        &resolution.reviewer_user_id,
        edit.base_seq,
        resolved_at,
    )?;
    let resolution_json = encode_json(&serde_json::json!({
        "value": edit.value,
        "hlc": stamp.hlc,
        "device_id": stamp.device_id,
    }))?;
    transaction.execute(
        &format!(
            "UPDATE conflicts
                SET resolved_at = ?4, resolved_by = ?5,
                    resolution_json = pii_seal_field(field, ?6, {CONFLICT_CONTEXT_SQL})
              WHERE household_id = ?1 AND target_key = ?2 AND field = ?3 AND resolved_at IS NULL"
        ),
        params![
            household_id,
            target_key,
            field,
            resolved_at,
            resolution.reviewer_user_id,
            resolution_json
        ],
    )?;
    Ok(stamp)
}

pub(in crate::store) fn display_name_of(
    connection: &Connection,
    user_id: &str,
) -> StoreResult<String> {
    let name: Option<String> = connection
        .query_row(
            "SELECT display_name FROM users WHERE user_id = ?1",
            params![user_id],
            |row| row.get(0),
        )
        .optional()?;
    Ok(name.unwrap_or_else(|| user_id.to_owned()))
}

/// The name a device gave at its latest login (`LoginRequest.device_name`: the phone's
/// model), or empty when it never logged in here.
fn device_name_of(connection: &Connection, device_id: &str) -> StoreResult<String> {
    Ok(connection
        .prepare_cached(
            "SELECT device_name FROM sessions WHERE device_id = ?1
             ORDER BY created_at DESC LIMIT 1",
        )?
        .query_row(params![device_id], |row| row.get(0))
        .optional()?
        .unwrap_or_default())
}

/// Most pending conflicts one pull reports: a phone shows a short list, and a user with
/// more has a supervisor to talk to anyway.
const MAX_PENDING_CONFLICTS: i64 = 100;

/// The query of [`pending_conflicts_in`]: one probe of each partial author index of
/// migration 0025 (its plan is pinned by a test); UNION keeps a conflict whose both sides
/// are the user's from appearing twice.
fn pending_conflicts_sql() -> String {
    let side = |author: &str| {
        format!(
            "SELECT conflict_key, household_id, target_key, field, created_at,
                    pii_open(first_json, {CONFLICT_CONTEXT_SQL}),
                    pii_open(second_json, {CONFLICT_CONTEXT_SQL})
             FROM conflicts
             WHERE resolved_at IS NULL AND {author}_author_user_id = ?1"
        )
    };
    format!(
        "{} UNION {} ORDER BY created_at, conflict_key LIMIT {MAX_PENDING_CONFLICTS}",
        side("first"),
        side("second")
    )
}

/// `user_id`'s own edits in open conflict records, oldest first.
pub(in crate::store) fn pending_conflicts_in(
    connection: &Connection,
    user_id: &str,
) -> StoreResult<Vec<PendingConflict>> {
    let mut statement = connection.prepare_cached(&pending_conflicts_sql())?;
    let rows = statement.query_map(params![user_id], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, String>(3)?,
            row.get::<_, i64>(4)?,
            row.get::<_, String>(5)?,
            row.get::<_, String>(6)?,
        ))
    })?;
    let mut pending = Vec::new();
    for row in rows {
        let (key, household_id, target_key, field, created_at, first, second) = row?;
        let target = FieldTarget::parse_key(&target_key)
            .ok_or_else(|| corrupt(format!("conflict {key}: target {target_key:?}")))?;
        let first: RegisterWrite = decode_json(&first, "conflict write")?;
        let second: RegisterWrite = decode_json(&second, "conflict write")?;
        // The user's own side; when both are theirs (two phones), the later one.
        let own = if second.author_user_id == user_id {
            second
        } else {
            first
        };
        pending.push(PendingConflict {
            household_id,
            target,
            field,
            recorded_at: from_millis(created_at)?,
            device_id: own.stamp.device_id,
        });
    }
    Ok(pending)
}

pub(in crate::store) fn open_conflicts_in(
    connection: &Connection,
    township_id: &str,
) -> StoreResult<Vec<ConflictRecord>> {
    type ConflictRow = (
        (String, String, String, String),
        (String, String, String, String, i64),
    );
    let mut statement = connection.prepare(&format!(
        "SELECT c.conflict_key, c.household_id, h.head_name,
                COALESCE(a.name, json_extract(h.card, '$.village_name'), ''),
                c.target_key, c.field, pii_open(c.first_json, {CONFLICT_CONTEXT_SQL}),
                pii_open(c.second_json, {CONFLICT_CONTEXT_SQL}), c.created_at
         FROM conflicts c
         JOIN households h ON h.household_id = c.household_id
         LEFT JOIN areas a ON a.area_id = h.village_id
         WHERE c.township_id = ?1 AND c.resolved_at IS NULL
         ORDER BY c.created_at, c.conflict_key"
    ))?;
    let rows: Vec<ConflictRow> = statement
        .query_map(params![township_id], |row| {
            Ok((
                (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?),
                (
                    row.get(4)?,
                    row.get(5)?,
                    row.get(6)?,
                    row.get(7)?,
                    row.get(8)?,
                ),
            ))
        })?
        .collect::<Result<_, _>>()?;
    let mut records = Vec::with_capacity(rows.len());
    for (
        (conflict_key, household_id, head_name, village_name),
        (target_key, field, first_json, second_json, created_at),
    ) in rows
    {
        let target = FieldTarget::parse_key(&target_key)
            .ok_or_else(|| corrupt(format!("conflict target {target_key:?}")))?;
        let first: RegisterWrite = decode_json(&first_json, "conflict write")?;
        let second: RegisterWrite = decode_json(&second_json, "conflict write")?;
        let member_name = match &target {
            FieldTarget::Household => None,
            FieldTarget::Member(member_id) => {
                load_household(connection, &household_id)?.and_then(|card| {
                    card.members
                        .into_iter()
                        .find(|member| &member.member_id == member_id)
                        .map(|member| member.name)
                })
            }
        };
        let history = register_history_in(connection, &household_id, &target_key, &field)?;
        records.push(ConflictRecord {
            first_author_name: display_name_of(connection, &first.author_user_id)?,
            second_author_name: display_name_of(connection, &second.author_user_id)?,
            first_device_name: device_name_of(connection, &first.stamp.device_id)?,
            second_device_name: device_name_of(connection, &second.stamp.device_id)?,
            current: current(&history).cloned(),
            created_at: from_millis(created_at)?,
            conflict_key,
            household_id,
            head_name,
            village_name,
            target,
            member_name,
            field,
            first,
            second,
        });
    }
    Ok(records)
}

pub(in crate::store) fn optional_millis(
    instant: Option<OffsetDateTime>,
) -> StoreResult<Option<i64>> {
    instant.map(to_millis).transpose()
}

pub(in crate::store) fn record_heartbeat_in(
    transaction: &Transaction<'_>,
    device_id: &str,
    user_id: &str,
    heartbeat: &Heartbeat,
    server_time: OffsetDateTime,
) -> StoreResult<()> {
    transaction.execute(
        "INSERT INTO device_heartbeats (device_id, user_id, unsent_mutations, pending_uploads,
                                        oldest_unsent_at, device_time, last_error, app_version,
                                        server_time)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (device_id) DO UPDATE SET
             user_id = excluded.user_id,
             unsent_mutations = excluded.unsent_mutations,
             pending_uploads = excluded.pending_uploads,
             oldest_unsent_at = excluded.oldest_unsent_at,
             device_time = excluded.device_time,
             last_error = excluded.last_error,
             app_version = excluded.app_version,
             server_time = excluded.server_time",
        params![
            device_id,
            user_id,
            to_sql_integer(heartbeat.unsent_mutations, "unsent mutations")?,
            to_sql_integer(heartbeat.pending_uploads, "pending uploads")?,
            optional_millis(heartbeat.oldest_unsent_at)?,
            optional_millis(heartbeat.device_time)?,
            heartbeat.last_error,
            heartbeat.app_version,
            to_millis(server_time)?
        ],
    )?;
    Ok(())
}

/// How long a repeated heartbeat is not written again (see [`heartbeat_unchanged`]).
const HEARTBEAT_REWRITE_AFTER_MILLIS: i64 = 60_000;

/// Whether the device's stored heartbeat already says what `heartbeat` says: the same user,
/// counts, oldest unsent record, last error and app version, a device clock offset within
/// a minute of the stored one, stored less than a minute ago. The phone sends a heartbeat
/// with every pull; writing an unchanged one again would make each sync wait for a durable
/// commit (an fsync) while the console learns nothing new.
pub(in crate::store) fn heartbeat_unchanged(
    stored: Option<&StoredHeartbeat>,
    user_id: &str,
    heartbeat: &Heartbeat,
    server_time: OffsetDateTime,
) -> StoreResult<bool> {
    let Some(stored) = stored else {
        return Ok(false);
    };
    let now = to_millis(server_time)?;
    let clock_offset_kept = match (stored.device_time, optional_millis(heartbeat.device_time)?) {
        (None, None) => true,
        (Some(stored_device), Some(device)) => {
            ((device - now) - (stored_device - stored.server_time)).abs()
                < HEARTBEAT_REWRITE_AFTER_MILLIS
        }
        _ => false,
    };
    Ok(stored.user_id == user_id
        && stored.unsent_mutations
            == to_sql_integer(heartbeat.unsent_mutations, "unsent mutations")?
        && stored.pending_uploads == to_sql_integer(heartbeat.pending_uploads, "pending uploads")?
        && stored.oldest_unsent_at == optional_millis(heartbeat.oldest_unsent_at)?
        && stored.last_error == heartbeat.last_error
        && stored.app_version == heartbeat.app_version
        && clock_offset_kept
        && (stored.server_time..stored.server_time + HEARTBEAT_REWRITE_AFTER_MILLIS).contains(&now))
}

/// A device's heartbeat as stored (times in Unix milliseconds).
#[derive(Debug, Clone)]
pub(in crate::store) struct StoredHeartbeat {
    user_id: String,
    unsent_mutations: i64,
    pending_uploads: i64,
    oldest_unsent_at: Option<i64>,
    device_time: Option<i64>,
    last_error: String,
    app_version: String,
    server_time: i64,
}

pub(in crate::store) fn stored_heartbeat_in(
    connection: &Connection,
    device_id: &str,
) -> StoreResult<Option<StoredHeartbeat>> {
    Ok(connection
        .prepare_cached(
            "SELECT user_id, unsent_mutations, pending_uploads, oldest_unsent_at, device_time,
                    last_error, app_version, server_time
             FROM device_heartbeats WHERE device_id = ?1",
        )?
        .query_row(params![device_id], |row| {
            Ok(StoredHeartbeat {
                user_id: row.get(0)?,
                unsent_mutations: row.get(1)?,
                pending_uploads: row.get(2)?,
                oldest_unsent_at: row.get(3)?,
                device_time: row.get(4)?,
                last_error: row.get(5)?,
                app_version: row.get(6)?,
                server_time: row.get(7)?,
            })
        })
        .optional()?)
}

pub(in crate::store) fn device_backlog_in(
    connection: &Connection,
    township_id: &str,
) -> StoreResult<Vec<DeviceBacklog>> {
    type BacklogRow = (
        (String, String, String, i64, i64),
        (Option<i64>, Option<i64>, String, String, i64, String),
    );
    let mut statement = connection.prepare(
        "SELECT d.device_id, d.user_id, u.display_name, d.unsent_mutations, d.pending_uploads,
                d.oldest_unsent_at, d.device_time, d.last_error, d.app_version, d.server_time,
                COALESCE((SELECT s.device_name FROM sessions s WHERE s.device_id = d.device_id
                          ORDER BY s.created_at DESC LIMIT 1), '')
         FROM device_heartbeats d
         JOIN users u ON u.user_id = d.user_id
         WHERE u.area_id = ?1 AND u.role = ?2
         ORDER BY d.oldest_unsent_at IS NULL, d.oldest_unsent_at, d.server_time, d.device_id",
    )?;
    let rows: Vec<BacklogRow> = statement
        .query_map(params![township_id, Role::Cadre.as_str()], |row| {
            Ok((
                (
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                ),
                (
                    row.get(5)?,
                    row.get(6)?,
                    row.get(7)?,
                    row.get(8)?,
                    row.get(9)?,
                    row.get(10)?,
                ),
            ))
        })?
        .collect::<Result<_, _>>()?;
    rows.into_iter()
        .map(
            |(
                (device_id, user_id, cadre_name, unsent, pending),
                (oldest, device_time, last_error, app_version, server_time, device_name),
            )| {
                Ok(DeviceBacklog {
                    heartbeat: Heartbeat {
                        unsent_mutations: from_sql_unsigned(unsent, "unsent mutations")?,
                        pending_uploads: from_sql_unsigned(pending, "pending uploads")?,
                        oldest_unsent_at: oldest.map(from_millis).transpose()?,
                        device_time: device_time.map(from_millis).transpose()?,
                        last_error,
                        app_version,
                    },
                    last_seen_at: from_millis(server_time)?,
                    device_id,
                    device_name,
                    user_id,
                    cadre_name,
                })
            },
        )
        .collect()
}

// ----- pull -----

/// The newest sequence ever issued in a scope (its counter, which never goes back when
/// compaction deletes the newest rows); 0 for a scope never written.
fn newest_scope_seq(connection: &Connection, scope_id: &str) -> StoreResult<i64> {
    Ok(connection
        .query_row(
            "SELECT last_seq FROM scope_counters WHERE scope_id = ?1",
            params![scope_id],
            |row| row.get(0),
        )
        .optional()?
        .unwrap_or(0))
}

/// Every scope's floor, for scopes that have one.
pub(in crate::store) fn scope_floors_in(
    connection: &Connection,
) -> StoreResult<BTreeMap<String, i64>> {
    let mut statement =
        connection.prepare("SELECT scope_id, floor_seq FROM scope_floors ORDER BY scope_id")?;
    let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(in crate::store) fn change_log_bounds_in(
    connection: &Connection,
) -> StoreResult<ChangeLogBounds> {
    let mut statement = connection.prepare(
        "SELECT scope_counters.scope_id, last_seq, COALESCE(floor_seq, 0)
         FROM scope_counters LEFT JOIN scope_floors USING (scope_id)
         ORDER BY scope_counters.scope_id",
    )?;
    let rows = statement.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            ScopeBounds {
                newest_seq: row.get(1)?,
                floor_seq: row.get(2)?,
            },
        ))
    })?;
    Ok(ChangeLogBounds {
        scopes: rows.collect::<Result<_, _>>()?,
    })
}

pub(in crate::store) fn reassign_household_in(
    transaction: &Transaction<'_>,
    household_id: &str,
    new_cadre_user_id: &str,
    at: OffsetDateTime,
) -> StoreResult<()> {
    let Some(mut card) = load_household(transaction, household_id)? else {
        return Err(StoreError::NotFound(format!("household {household_id}")));
    };
    match load_user(transaction, "user_id = ?1", new_cadre_user_id)? {
        Some(user) if user.role == Role::Cadre => {}
        _ => return Err(StoreError::NotFound(format!("cadre {new_cadre_user_id}"))),
    }
    let old_cadres: Vec<String> = {
        let mut statement = transaction.prepare(
            "SELECT cadre_user_id FROM pairings
             WHERE household_id = ?1 AND is_primary = 1 AND active = 1 AND cadre_user_id <> ?2
             ORDER BY cadre_user_id",
        )?;
        let rows =
            statement.query_map(params![household_id, new_cadre_user_id], |row| row.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    transaction.execute(
        "UPDATE pairings SET active = 0
         WHERE household_id = ?1 AND is_primary = 1 AND cadre_user_id <> ?2",
        params![household_id, new_cadre_user_id],
    )?;
    transaction.execute(
        "INSERT INTO pairings (cadre_user_id, household_id, is_primary, active)
         VALUES (?1, ?2, 1, 1)
         ON CONFLICT (cadre_user_id, household_id) DO UPDATE SET is_primary = 1, active = 1",
        params![new_cadre_user_id, household_id],
    )?;
    for old_cadre in &old_cadres {
        tombstone_unless_paired(transaction, &card, old_cadre, at)?;
    }
    // A household entry after the pairing change, so the new cadre's cursor (which may be
    // past every earlier entry of this household) still reaches it.
    resend_household(transaction, &mut card)
}

/// After a pairing of `cadre` with the household ended: unless the cadre keeps another
/// active pairing with it (a primary who stays as a helper), address a tombstone to the
/// cadre so their phone purges the household and flags its drafts for hand-over.
pub(in crate::store) fn tombstone_unless_paired(
    transaction: &Transaction<'_>,
    card: &Household,
    cadre_user_id: &str,
    at: OffsetDateTime,
) -> StoreResult<()> {
    let still_paired = transaction
        .query_row(
            "SELECT 1 FROM pairings WHERE cadre_user_id = ?1 AND household_id = ?2 AND active = 1",
            params![cadre_user_id, card.household_id],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    if still_paired {
        return Ok(());
    }
    // The tombstone belongs to the household's township scope; the cadre keeps reading that
    // scope until it expires (see `principal_scopes`).
    log_entry(
        transaction,
        &ChangeEntry {
            scope_id: &card.township_id,
            household_id: &card.household_id,
            kind: CHANGE_KIND_REMOVED,
            entity_id: &card.household_id,
            revision: 0,
            addressed_to: Some(cadre_user_id),
            logged_at: to_millis(at)?,
        },
    )?;
    Ok(())
}

// ----- review -----

// ----- photo metadata and evidence -----

#[cfg(test)]
pub(in crate::store) mod tests {
    use super::*;
    use crate::store::conformance;
    use crate::store::{AccountsStore, AreasStore, HouseholdsStore, ReviewStore, SyncStore};
    use fieldsync_model::codes::VisitMode;
    use fieldsync_model::sync::MutationPayload;
    use fieldsync_model::visit::Visit;
    use tempfile::TempDir;

    /// A store on a fresh file in a temporary folder (kept alive by the returned guard).
    pub(in crate::store) fn open_temp_store() -> (TempDir, SqliteStore) {
        let directory = TempDir::new().expect("temp dir");
        let store = SqliteStore::open(
            &directory.path().join("fieldsync.sqlite3"),
            PiiCipher::for_tests(),
        )
        .expect("open store");
        (directory, store)
    }

    // Every area's conformance checks, each a `#[tokio::test]` on a fresh database file.
    crate::store::accounts::conformance::accounts_conformance_tests!(open_temp_store);
    crate::store::areas::conformance::areas_conformance_tests!(open_temp_store);
    crate::store::export::conformance::export_conformance_tests!(open_temp_store);
    crate::store::households::conformance::households_conformance_tests!(open_temp_store);
    crate::store::jobs::conformance::jobs_conformance_tests!(open_temp_store);
    crate::store::ledger::conformance::ledger_conformance_tests!(open_temp_store);
    crate::store::media::conformance::media_conformance_tests!(open_temp_store);
    crate::store::pairings::conformance::pairings_conformance_tests!(open_temp_store);
    crate::store::review::conformance::review_conformance_tests!(open_temp_store);
    crate::store::roster::conformance::roster_conformance_tests!(open_temp_store);
    crate::store::search::conformance::search_conformance_tests!(open_temp_store);
    crate::store::sessions::conformance::sessions_conformance_tests!(open_temp_store);
    crate::store::sync::conformance::sync_conformance_tests!(open_temp_store);

    fn user_version(connection: &Connection) -> i64 {
        connection
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .expect("user_version")
    }

    /// The hot read that opens the card in Rust gives exactly the household the SQL path
    /// gives (sealed phones and ID numbers opened, the column's server_seq), and a sealed
    /// value moved in from another household fails both ways as [`StoreError::Sealed`].
    #[tokio::test]
    async fn opening_a_card_in_rust_reads_the_same_household_as_opening_it_in_sql() {
        let (_directory, store) = open_temp_store();
        let fixture = conformance::seeded(&store).await;
        let writer = store.inner.writer.lock().expect("writer");
        for household in [&fixture.wang, &fixture.zhao, &fixture.li, &fixture.chen] {
            let by_sql = load_household(&writer, &household.household_id)
                .expect("SQL path")
                .expect("stored");
            let in_rust =
                load_household_opening_in_rust(&writer, &store.inner.pii, &household.household_id)
                    .expect("Rust path")
                    .expect("stored");
            assert_eq!(in_rust, by_sql);
            assert_eq!(in_rust.phone, household.phone, "opened, not sealed");
        }
        assert_eq!(
            load_household_opening_in_rust(&writer, &store.inner.pii, "no-such-household")
                .expect("read"),
            None
        );
        writer
            .execute(
                "UPDATE households SET card = json_set(card, '$.phone',
                     (SELECT json_extract(card, '$.phone') FROM households WHERE household_id = ?2))
                 WHERE household_id = ?1",
                params![fixture.wang.household_id, fixture.zhao.household_id],
            )
            .expect("move a sealed phone");
        assert!(matches!(
            load_household_opening_in_rust(&writer, &store.inner.pii, &fixture.wang.household_id),
            Err(StoreError::Sealed(_))
        ));
        assert!(matches!(
            load_household(&writer, &fixture.wang.household_id),
            Err(StoreError::Sealed(_))
        ));
    }

    #[tokio::test]
    async fn durability_pragmas_are_set_on_the_writer_and_readers() {
        let (_directory, store) = open_temp_store();
        let writer = store.inner.writer.lock().expect("writer");
        let journal_mode: String = writer
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))
            .expect("journal_mode");
        assert_eq!(journal_mode.to_lowercase(), "wal");
        // 2 is FULL (0 OFF, 1 NORMAL, 3 EXTRA).
        let synchronous: i64 = writer
            .query_row("PRAGMA synchronous", [], |row| row.get(0))
            .expect("synchronous");
        assert_eq!(synchronous, 2);
        let foreign_keys: i64 = writer
            .query_row("PRAGMA foreign_keys", [], |row| row.get(0))
            .expect("foreign_keys");
        assert_eq!(foreign_keys, 1);
        drop(writer);

        let reader = store.inner.checkout_reader().expect("reader");
        let reader_journal: String = reader
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))
            .expect("journal_mode");
        assert_eq!(reader_journal.to_lowercase(), "wal");
        assert!(
            reader.execute("DELETE FROM areas", []).is_err(),
            "pooled connections are read-only"
        );
        store.inner.return_reader(reader);
    }

    #[tokio::test]
    async fn reopening_keeps_data_and_migrations_are_idempotent() {
        let directory = TempDir::new().expect("temp dir");
        let path = directory.path().join("fieldsync.sqlite3");
        let fixture = {
            let store = SqliteStore::open(&path, PiiCipher::for_tests()).expect("open");
            conformance::seeded(&store).await
        };
        let newest = MIGRATIONS
            .last()
            .map(|(version, _, _)| *version)
            .expect("a migration");

        let store = SqliteStore::open(&path, PiiCipher::for_tests()).expect("reopen");
        assert!(!store.is_empty().await.expect("is_empty"));
        let household = store
            .get_household(&fixture.wang.household_id)
            .await
            .expect("get")
            .expect("survived the reopen");
        assert_eq!(household.head_name, fixture.wang.head_name);

        let mut writer = store.inner.writer.lock().expect("writer");
        assert_eq!(user_version(&writer), newest);
        apply_migrations(&mut writer, None).expect("migrations run again");
        apply_migrations(&mut writer, None).expect("and again");
        assert_eq!(user_version(&writer), newest);
    }

    #[tokio::test]
    async fn rebuilding_the_change_log_never_reuses_a_sequence_number() {
        let directory = TempDir::new().expect("temp dir");
        let path = directory.path().join("fieldsync.sqlite3");
        {
            // A database as migration 2 left it, whose newest change was deleted.
            let mut connection = Connection::open(&path).expect("raw open");
            apply_old_migrations(&mut connection, 2);
            for _ in 0..3 {
                connection
                    .execute(
                        "INSERT INTO change_log (household_id, kind, entity_id, revision)
                         VALUES ('h', 'household', 'h', 0)",
                        [],
                    )
                    .expect("log");
            }
            connection
                .execute("DELETE FROM change_log WHERE seq = 3", [])
                .expect("delete the newest");
        }
        let store = SqliteStore::open(&path, PiiCipher::for_tests()).expect("migrate");
        let writer = store.inner.writer.lock().expect("writer");
        let kept: i64 = writer
            .query_row("SELECT COUNT(*) FROM change_log", [], |row| row.get(0))
            .expect("count");
        assert_eq!(kept, 2, "every change survives the rebuild");
        let next = log_change(&writer, "t", "h", CHANGE_KIND_HOUSEHOLD, "h", 0).expect("log");
        assert_eq!(next, 4, "seq 3 was handed out once and is never reused");
    }

    /// Apply the first `count` migrations to a raw connection, as an older server left the
    /// file, so a migration test can store rows of the old shape before the store opens it.
    fn apply_old_migrations(connection: &mut Connection, count: usize) {
        for (version, _, sql) in &MIGRATIONS[..count] {
            let transaction = connection.transaction().expect("transaction");
            transaction.execute_batch(sql).expect("old migration");
            transaction
                .execute_batch(&format!("PRAGMA user_version = {version}"))
                .expect("version");
            transaction.commit().expect("commit");
        }
    }

    /// Issue 12 §4: a database made by the oldest migration is upgraded to the newest at
    /// open, and a copy of it as it was is left in the data folder's `backups/` first.
    #[tokio::test]
    async fn the_oldest_schema_upgrades_to_the_newest_after_a_pre_migration_copy() {
        let directory = TempDir::new().expect("temp dir");
        let path = directory.path().join("fieldsync.sqlite3");
        {
            let mut connection = Connection::open(&path).expect("raw open");
            apply_old_migrations(&mut connection, 1);
            connection
                .execute(
                    "INSERT INTO areas (area_id, name, level) VALUES ('a-old', '旧乡', 'township')",
                    [],
                )
                .expect("an old row");
        }
        let newest = MIGRATIONS
            .last()
            .map(|(version, _, _)| *version)
            .expect("a migration");
        let store = SqliteStore::open(&path, PiiCipher::for_tests()).expect("upgrade");
        assert_eq!(
            user_version(&store.inner.writer.lock().expect("writer")),
            newest
        );
        let copies: Vec<PathBuf> = std::fs::read_dir(directory.path().join("backups"))
            .expect("a backups folder")
            .map(|entry| entry.expect("entry").path())
            .collect();
        assert_eq!(copies.len(), 1, "one copy: {copies:?}");
        let name = copies[0].file_name().expect("name").to_string_lossy();
        assert!(name.starts_with("pre-migration-v1-"), "{name}");
        assert_eq!(backup::check_database_file(&copies[0]).expect("opens"), 1);
        let copy = Connection::open(&copies[0]).expect("open the copy");
        let kept: String = copy
            .query_row(
                "SELECT name FROM areas WHERE area_id = 'a-old'",
                [],
                |row| row.get(0),
            )
            .expect("the old row is in the copy");
        assert_eq!(kept, "旧乡");
        drop(copy);
        drop(store);

        // Opening the up-to-date database again copies nothing more; a new file never.
        SqliteStore::open(&path, PiiCipher::for_tests()).expect("reopen");
        let fresh = TempDir::new().expect("temp dir");
        SqliteStore::open(
            &fresh.path().join("fieldsync.sqlite3"),
            PiiCipher::for_tests(),
        )
        .expect("new database");
        assert_eq!(
            std::fs::read_dir(directory.path().join("backups"))
                .expect("backups")
                .count(),
            1
        );
        assert!(!fresh.path().join("backups").exists());
    }

    #[tokio::test]
    async fn visit_checkin_times_are_backfilled_from_the_stored_bodies() {
        let directory = TempDir::new().expect("temp dir");
        let path = directory.path().join("fieldsync.sqlite3");
        let before_checkin_column = MIGRATIONS
            .iter()
            .position(|(_, name, _)| *name == "visit_checkin")
            .expect("the migration");
        {
            let mut connection = Connection::open(&path).expect("raw open");
            apply_old_migrations(&mut connection, before_checkin_column);
            // Rows without their household: only the body matters here.
            connection
                .execute_batch("PRAGMA foreign_keys = OFF")
                .expect("no foreign keys");
            // 23:30 Beijing on 31 March, as phones write it, and the same instant in UTC
            // with fractional seconds.
            for (visit_id, checkin) in [
                ("v-offset", "2026-03-31T23:30:00+08:00"),
                ("v-utc", "2026-03-31T15:30:00.250Z"),
            ] {
                connection
                    .execute(
                        "INSERT INTO visits (visit_id, revision, household_id, author_user_id,
                                             device_id, body, content_hash, state, mode,
                                             business_month, submitted_at)
                         VALUES (?1, 1, 'h', 'u', 'd', ?2, 'x', 'submitted', 1, '2026-03', 0)",
                        params![visit_id, format!(r#"{{"checkin_at":"{checkin}"}}"#)],
                    )
                    .expect("old visit");
            }
        }
        let store = SqliteStore::open(&path, PiiCipher::for_tests()).expect("migrate");
        let writer = store.inner.writer.lock().expect("writer");
        let expected = to_millis(time::macros::datetime!(2026-03-31 15:30 UTC)).expect("ms");
        for (visit_id, extra) in [("v-offset", 0), ("v-utc", 250)] {
            let backfilled: i64 = writer
                .query_row(
                    "SELECT checkin_at_ms FROM visits WHERE visit_id = ?1",
                    params![visit_id],
                    |row| row.get(0),
                )
                .expect("backfilled");
            assert_eq!(backfilled, expected + extra, "{visit_id}");
        }
    }

    /// Migration 0025 fills the author columns of conflicts recorded before it from their
    /// JSON, opening the sealed ones (phone and ID number) first, so an open conflict from
    /// before the upgrade still reaches its authors' phones.
    #[tokio::test]
    async fn conflict_authors_are_backfilled_from_sealed_and_plain_records() {
        let directory = TempDir::new().expect("temp dir");
        let path = directory.path().join("fieldsync.sqlite3");
        let before = MIGRATIONS
            .iter()
            .position(|(_, name, _)| *name == "conflict_authors")
            .expect("the migration");
        let write = |user: &str, device: &str, hlc: u64| {
            serde_json::to_string(&RegisterWrite {
                value: serde_json::json!(format!("value of {user}")),
                stamp: Stamp {
                    hlc: Hlc::from_u64(hlc),
                    device_id: device.to_owned(),
                },
                author_user_id: user.to_owned(),
                base_seq: 0,
                server_seq: i64::try_from(hlc).expect("small"),
            })
            .expect("json")
        };
        {
            let mut connection = Connection::open(&path).expect("raw open");
            sealing::register_functions(&connection, &PiiCipher::for_tests()).expect("pii");
            apply_old_migrations(&mut connection, before);
            connection
                .execute_batch("PRAGMA foreign_keys = OFF")
                .expect("no foreign keys");
            for (key, field) in [("k-phone", "phone"), ("k-address", "address")] {
                connection
                    .execute(
                        "INSERT INTO conflicts (conflict_key, household_id, township_id,
                                                target_key, field, first_json, second_json,
                                                created_at)
                         VALUES (?1, 'h', 't', 'household', ?2,
                                 pii_seal_field(?2, ?3, 'conflict/' || ?1),
                                 pii_seal_field(?2, ?4, 'conflict/' || ?1), 5)",
                        params![key, field, write("u-a", "d-a", 1), write("u-b", "d-b", 2)],
                    )
                    .expect("old conflict");
            }
            let stored: String = connection
                .query_row(
                    "SELECT first_json FROM conflicts WHERE conflict_key = 'k-phone'",
                    [],
                    |row| row.get(0),
                )
                .expect("stored");
            assert!(!stored.starts_with('{'), "the phone conflict is sealed");
        }
        let store = SqliteStore::open(&path, PiiCipher::for_tests()).expect("migrate");
        for (user, device) in [("u-a", "d-a"), ("u-b", "d-b")] {
            let pending = store.pending_conflicts(user).await.expect("pending");
            let mut fields: Vec<&str> = pending.iter().map(|p| p.field.as_str()).collect();
            fields.sort_unstable();
            assert_eq!(fields, ["address", "phone"], "{user}");
            assert!(pending.iter().all(|p| p.device_id == device), "{pending:?}");
        }
        assert!(
            store
                .pending_conflicts("u-c")
                .await
                .expect("none")
                .is_empty()
        );
        // A phone's pull asks this every time: two index probes, never a scan of every
        // conflict ever recorded.
        let writer = store.inner.writer.lock().expect("writer");
        let plan: Vec<String> = writer
            .prepare(&format!("EXPLAIN QUERY PLAN {}", pending_conflicts_sql()))
            .expect("explain")
            .query_map(params!["u-a"], |row| row.get::<_, String>(3))
            .expect("plan")
            .collect::<Result<_, _>>()
            .expect("rows");
        for index in [
            "conflicts_open_by_first_author",
            "conflicts_open_by_second_author",
        ] {
            assert!(
                plan.iter()
                    .any(|step| step.starts_with("SEARCH conflicts USING INDEX")
                        && step.contains(index)),
                "{plan:?}"
            );
        }
        assert!(
            !plan.iter().any(|step| step.starts_with("SCAN")),
            "{plan:?}"
        );
    }

    /// Migration 0019 fills the evidence columns of stored visits from their bodies,
    /// exactly (nanoseconds below the millisecond, the fix as sent), and leaves a body that
    /// does not decode with NULL columns instead of refusing to start.
    #[tokio::test]
    async fn visit_evidence_columns_are_backfilled_exactly_from_the_stored_bodies() {
        let directory = TempDir::new().expect("temp dir");
        let path = directory.path().join("fieldsync.sqlite3");
        let before = MIGRATIONS
            .iter()
            .position(|(version, _, _)| *version == EVIDENCE_COLUMNS_VERSION)
            .expect("the migration");
        let checkin = time::macros::datetime!(2026-03-31 23:30:00.123_456_789 +08:00);
        let body = serde_json::to_string(&Visit {
            visit_id: "v-good".into(),
            revision: 1,
            supersedes_revision: 0,
            household_id: "h".into(),
            mode: VisitMode::InPerson,
            exception_reason: None,
            visit_type: fieldsync_model::codes::VisitType::Routine,
            checkin_at: checkin,
            checkout_at: checkin + time::Duration::minutes(41),
            observed_situation: "户主在家".into(),
            plan_progress: String::new(),
            problems: String::new(),
            actions: String::new(),
            needs: String::new(),
            policies_explained: Vec::new(),
            wellbeing: Default::default(),
            proposed_changes: Vec::new(),
            photo_ids: Vec::new(),
            gps: Some(fieldsync_model::visit::GpsFix {
                lat: 26.5,
                lon: 106.7,
                crs: Crs::Gcj02,
                accuracy_m: 10.0,
                provider: None,
                is_mock: false,
                fix_time: None,
            }),
            recorded_at_device: checkin,
        })
        .expect("body");
        {
            let mut connection = Connection::open(&path).expect("raw open");
            apply_old_migrations(&mut connection, before);
            connection
                .execute_batch("PRAGMA foreign_keys = OFF")
                .expect("no foreign keys");
            for (visit_id, body) in [("v-good", body.as_str()), ("v-bad", "{not json")] {
                connection
                    .execute(
                        "INSERT INTO visits (visit_id, revision, household_id, author_user_id,
                                             device_id, body, content_hash, state, mode,
                                             business_month, submitted_at, checkin_at_ms)
                         VALUES (?1, 1, 'h', 'u', 'd', ?2, 'x', 'submitted', 1, '2026-03', 0,
                                 1774971000123)",
                        params![visit_id, body],
                    )
                    .expect("old visit");
            }
        }
        let store = SqliteStore::open(&path, PiiCipher::for_tests()).expect("migrate");
        let writer = store.inner.writer.lock().expect("writer");
        type Filled = (
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<f64>,
            Option<f64>,
            Option<i32>,
        );
        let filled = |visit_id: &str| -> Filled {
            writer
                .query_row(
                    "SELECT checkin_at_ms, checkin_sub_ms_ns, checkout_at_ms, checkout_sub_ms_ns,
                            gps_lat, gps_lon, gps_crs
                     FROM visits WHERE visit_id = ?1",
                    params![visit_id],
                    |row| {
                        Ok((
                            row.get(0)?,
                            row.get(1)?,
                            row.get(2)?,
                            row.get(3)?,
                            row.get(4)?,
                            row.get(5)?,
                            row.get(6)?,
                        ))
                    },
                )
                .expect("row")
        };
        let checkin_ms = to_millis(checkin).expect("ms");
        assert_eq!(
            filled("v-good"),
            (
                Some(checkin_ms),
                Some(456_789),
                Some(checkin_ms + 41 * 60_000),
                Some(456_789),
                Some(26.5),
                Some(106.7),
                Some(Crs::Gcj02.code()),
            )
        );
        assert_eq!(
            filled("v-bad"),
            (Some(1_774_971_000_123), None, None, None, None, None, None),
            "left for the body reader, which reports it as before"
        );
    }

    /// Households stored before the search index existed are indexed by migration 0023.
    #[tokio::test]
    async fn households_stored_before_the_search_index_are_indexed_at_upgrade() {
        use crate::store::SearchStore;
        let directory = TempDir::new().expect("temp dir");
        let path = directory.path().join("fieldsync.sqlite3");
        let before = MIGRATIONS
            .iter()
            .position(|(version, _, _)| *version == HOUSEHOLD_SEARCH_VERSION)
            .expect("the migration");
        let household = conformance::household("王大山", "t1", "v1", 30.0);
        {
            let mut connection = Connection::open(&path).expect("raw open");
            apply_old_migrations(&mut connection, before);
            // A plain card, as a database written before sealing holds (it opens to itself).
            connection
                .execute(
                    "INSERT INTO households (household_id, township_id, village_id, head_name,
                                             card, server_seq)
                     VALUES (?1, 't1', 'v1', ?2, ?3, 1)",
                    params![
                        household.household_id,
                        household.head_name,
                        serde_json::to_string(&household).expect("card")
                    ],
                )
                .expect("old household");
        }
        let store = SqliteStore::open(&path, PiiCipher::for_tests()).expect("migrate");
        let area = super::super::LedgerArea::Township("t1".into());
        for text in ["大山", "wds", "002X"] {
            let query = crate::store::HouseholdQuery::parse(text).expect("query");
            let found = store
                .search_households(&area, &query, 10)
                .await
                .expect("search");
            assert_eq!(
                found
                    .iter()
                    .map(|found| found.household_id.as_str())
                    .collect::<Vec<_>>(),
                [household.household_id.as_str()],
                "{text}"
            );
        }
    }

    /// Flag work that fails (here: a neighbour's stored mode is not a number) is rolled back
    /// to its savepoint and logged; the push itself commits, once, with every visit stored.
    #[tokio::test]
    async fn failing_flag_work_never_rolls_back_the_push() {
        let (_directory, store) = open_temp_store();
        let fixture = conformance::seeded(&store).await;
        let settings = fieldsync_model::evidence::EvidenceSettings::default();
        let earlier =
            conformance::visit(&fixture.wang, VisitMode::InPerson, conformance::VISIT_TIME);
        conformance::push_visit(&store, &fixture.cadre_a, "phone-a", 1, &earlier).await;
        {
            let writer = store.inner.writer.lock().expect("writer");
            writer
                .execute(
                    "UPDATE visits SET mode = 'not a mode' WHERE visit_id = ?1",
                    params![earlier.visit_id],
                )
                .expect("damage the row");
        }
        let later = conformance::visit(
            &fixture.zhao,
            VisitMode::InPerson,
            conformance::VISIT_TIME + time::Duration::hours(2),
        );
        let before = store.committed_writes();
        let result = store
            .apply_push_with_flags(
                conformance::batch(
                    &fixture.cadre_a,
                    "phone-a",
                    vec![conformance::apply(
                        2,
                        MutationPayload::SubmitVisit(later.clone()),
                    )],
                ),
                super::super::PushFlagWork {
                    targets: vec![super::super::FlagTarget {
                        seq: 2,
                        visit_id: later.visit_id.clone(),
                        photo_sha256: None,
                    }],
                    settings,
                },
            )
            .await
            .expect("the push commits");
        conformance::assert_all_applied(&result);
        assert_eq!(store.committed_writes() - before, 1);
        let detail = store
            .visit_detail(&later.visit_id)
            .await
            .expect("detail")
            .expect("stored");
        assert_eq!(
            detail.flags, None,
            "the flag work was rolled back, not the push"
        );
    }

    /// A database written before encryption at rest (migrations up to 15, plain numbers in
    /// a card, a register value and a user) comes out of migration 18 with every number
    /// sealed in the file, still readable through the store, and in the blind index.
    #[tokio::test]
    async fn migration_18_seals_plain_personal_data_already_stored() {
        let directory = TempDir::new().expect("temp dir");
        let path = directory.path().join("fieldsync.sqlite3");
        let mut card = conformance::household("王大山", "t1", "v1", 30.7);
        card.phone = "13900990099".into();
        card.members[0].id_number = "11010519491231002X".into();
        {
            let mut connection = Connection::open(&path).expect("raw open");
            for (version, _, sql) in MIGRATIONS.iter().filter(|(version, _, _)| *version < 18) {
                let transaction = connection.transaction().expect("transaction");
                transaction.execute_batch(sql).expect("old migration");
                transaction
                    .execute_batch(&format!("PRAGMA user_version = {version}"))
                    .expect("version");
                transaction.commit().expect("commit");
            }
            connection
                .execute(
                    "INSERT INTO households (household_id, township_id, village_id, head_name,
                                             card, server_seq)
                     VALUES (?1, 't1', 'v1', '王大山', ?2, 1)",
                    params![card.household_id, encode_json(&card).expect("json")],
                )
                .expect("plain card");
            connection
                .execute(
                    "INSERT INTO register_writes (household_id, target_key, field, value_json,
                                                  hlc, device_id, author_user_id, base_seq,
                                                  server_seq)
                     VALUES (?1, 'household', 'phone', '\"13900990099\"', 1, 'd', 'u', 0, 1)",
                    params![card.household_id],
                )
                .expect("plain register value");
            connection
                .execute(
                    "INSERT INTO users (user_id, username, display_name, password_hash, role,
                                        area_id, phone)
                     VALUES ('u1', 'cadre', '干部', 'x', 'cadre', 't1', '13900990098')",
                    [],
                )
                .expect("plain user phone");
        }
        let store = SqliteStore::open(&path, PiiCipher::for_tests()).expect("migrate");
        let read = store
            .get_household(&card.household_id)
            .await
            .expect("read")
            .expect("household");
        assert_eq!(read.phone, "13900990099");
        assert_eq!(read.members[0].id_number, "11010519491231002X");
        let user = store
            .find_user_by_username("cadre")
            .await
            .expect("user")
            .expect("exists");
        assert_eq!(user.phone, "13900990098");
        {
            let writer = store.inner.writer.lock().expect("writer");
            assert_eq!(sealing::stale_value_count(&writer).expect("count"), 0);
            let holders = sealing::households_holding_id_number(&writer, "11010519491231002x", "")
                .expect("blind index");
            assert_eq!(holders, vec![card.household_id.clone()]);
        }
        drop(store);
        for file in ["fieldsync.sqlite3", "fieldsync.sqlite3-wal"] {
            let bytes = std::fs::read(directory.path().join(file)).unwrap_or_default();
            for plain in ["13900990099", "13900990098", "11010519491231002X"] {
                assert!(
                    !bytes
                        .windows(plain.len())
                        .any(|window| window == plain.as_bytes()),
                    "{plain} still in plain text in {file}"
                );
            }
        }
    }

    #[tokio::test]
    async fn scope_sequences_are_backfilled_per_township_in_the_old_order() {
        let directory = TempDir::new().expect("temp dir");
        let path = directory.path().join("fieldsync.sqlite3");
        {
            // A database as migration 4 left it: a seeded county, a compacted entry and an
            // expired tombstone (global floor 6).
            let mut connection = Connection::open(&path).expect("raw open");
            apply_old_migrations(&mut connection, 4);
            connection
                .execute_batch(
                    "INSERT INTO households (household_id, township_id, village_id, head_name,
                                             card, server_seq)
                     VALUES ('h1', 't1', 'v1', 'a', '{}', 5), ('h2', 't2', 'v2', 'b', '{}', 4),
                            ('h3', 't1', 'v1', 'c', '{}', 3);
                     INSERT INTO change_log (seq, household_id, kind, entity_id, revision)
                     VALUES (1, 'h1', 'household', 'h1', 0), (2, 'h2', 'household', 'h2', 0),
                            (3, 'h3', 'household', 'h3', 0), (4, 'h2', 'household', 'h2', 0),
                            (5, 'h1', 'household', 'h1', 0);
                     DELETE FROM change_log WHERE seq = 2;
                     UPDATE change_log_floor SET floor_seq = 6;",
                )
                .expect("old rows");
        }
        let store = SqliteStore::open(&path, PiiCipher::for_tests()).expect("migrate");
        let rows: Vec<(i64, String, i64)> = {
            let writer = store.inner.writer.lock().expect("writer");
            let mut statement = writer
                .prepare("SELECT seq, scope_id, scope_seq FROM change_log ORDER BY seq")
                .expect("prepare");
            statement
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
                .expect("rows")
                .collect::<Result<_, _>>()
                .expect("collect")
        };
        assert_eq!(
            rows,
            vec![
                (1, "t1".into(), 1),
                (3, "t1".into(), 2),
                (4, "t2".into(), 1),
                (5, "t1".into(), 3),
            ]
        );
        let bounds = store.change_log_bounds().await.expect("bounds");
        assert_eq!(
            bounds.of("t1"),
            ScopeBounds {
                floor_seq: 0,
                newest_seq: 3
            },
            "every old cursor resets anyway, so the old global floor is not carried over"
        );
        assert_eq!(bounds.of("t2").newest_seq, 1);
        let writer = store.inner.writer.lock().expect("writer");
        let next = log_change(&writer, "t2", "h2", CHANGE_KIND_HOUSEHOLD, "h2", 0).expect("log");
        assert_eq!(next, 6, "the global row id continues");
        let t2_seq: i64 = writer
            .query_row(
                "SELECT scope_seq FROM change_log WHERE seq = ?1",
                params![next],
                |row| row.get(0),
            )
            .expect("scope seq");
        assert_eq!(t2_seq, 2, "township t2 continues from its own counter");
    }

    #[tokio::test]
    async fn a_database_from_a_newer_server_is_refused() {
        let directory = TempDir::new().expect("temp dir");
        let path = directory.path().join("fieldsync.sqlite3");
        drop(SqliteStore::open(&path, PiiCipher::for_tests()).expect("open"));
        let connection = Connection::open(&path).expect("raw open");
        connection
            .execute_batch("PRAGMA user_version = 999")
            .expect("bump version");
        drop(connection);
        match SqliteStore::open(&path, PiiCipher::for_tests()) {
            Err(StoreError::Database { message, .. }) => {
                assert!(message.contains("999"), "{message}")
            }
            other => panic!("expected a schema version error, got {other:?}"),
        }
    }

    /// Overwrite the b-tree page header of the first index (lowest root page) with an
    /// invalid page type: deterministic damage that `PRAGMA quick_check` reports while the
    /// schema on page 1 still reads.
    fn damage_first_index_page(path: &Path) -> String {
        let connection = Connection::open(path).expect("raw open");
        // Fold the WAL into the main file so the damage is not masked by a newer page copy.
        connection
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode = DELETE;")
            .expect("checkpoint");
        let page_size: u64 = connection
            .query_row("PRAGMA page_size", [], |row| row.get(0))
            .expect("page size");
        let (name, root_page): (String, u64) = connection
            .query_row(
                "SELECT name, rootpage FROM sqlite_master
                  WHERE type = 'index' AND rootpage > 1 ORDER BY rootpage LIMIT 1",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .expect("an index");
        drop(connection);
        let mut bytes = std::fs::read(path).expect("read database");
        let header = usize::try_from((root_page - 1) * page_size).expect("offset");
        // Byte 0 is the page type (2, 5, 10 or 13); 0x55 is none of them.
        bytes[header] = 0x55;
        bytes[header + 3] = 0xff;
        bytes[header + 4] = 0xff;
        std::fs::write(path, bytes).expect("write damage");
        name
    }

    #[tokio::test]
    async fn a_damaged_database_is_refused_at_start_up_naming_the_file() {
        let directory = TempDir::new().expect("temp dir");
        let path = directory.path().join("fieldsync.sqlite3");
        {
            let store = SqliteStore::open(&path, PiiCipher::for_tests()).expect("open");
            conformance::seeded(&store).await;
        }
        let damaged_index = damage_first_index_page(&path);
        let message = match SqliteStore::open(&path, PiiCipher::for_tests()) {
            Err(StoreError::Corrupt(message)) => message,
            Err(other) => panic!("expected a damaged-file error, got {other:?}"),
            Ok(_) => panic!("a damaged file (index {damaged_index}) was served"),
        };
        assert!(
            message.contains(&path.display().to_string()),
            "names the file: {message}"
        );
        assert!(message.contains("quick_check"), "{message}");
        assert!(message.contains("restore the newest backup"), "{message}");
        // A server error, not a phone's: the gRPC edge would never see this store at all,
        // and the public error for corruption is not the retryable UNAVAILABLE.
        assert!(!matches!(
            crate::error::ServiceError::from(StoreError::Corrupt(message)),
            crate::error::ServiceError::Unavailable | crate::error::ServiceError::Internal
        ));

        // A file that is not a database at all is refused the same way.
        let garbage = directory.path().join("not-a-database.sqlite3");
        std::fs::write(&garbage, vec![0x42; 8192]).expect("write garbage");
        match SqliteStore::open(&garbage, PiiCipher::for_tests()) {
            Err(StoreError::Corrupt(message)) => {
                assert!(message.contains("not-a-database.sqlite3"), "{message}");
            }
            Err(other) => panic!("expected a damaged-file error, got {other:?}"),
            Ok(_) => panic!("garbage was opened as a database"),
        }
    }

    #[tokio::test]
    async fn values_sqlite_cannot_hold_are_permanent_errors_not_unavailable() {
        let error = to_sql_integer(1 << 63, "seq").expect_err("too large");
        assert!(matches!(&error, StoreError::InvalidValue { field, .. } if field == "seq"));
        assert!(matches!(
            crate::error::ServiceError::from(error),
            crate::error::ServiceError::InvalidArgument { .. }
        ));
        let connection = Connection::open_in_memory().expect("memory db");
        connection
            .execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)")
            .expect("table");
        connection
            .execute("INSERT INTO t (name) VALUES ('a')", [])
            .expect("first row");
        let duplicate = connection
            .execute("INSERT INTO t (name) VALUES ('a')", [])
            .expect_err("unique");
        assert!(matches!(
            StoreError::from(duplicate),
            StoreError::InvalidValue { .. }
        ));
        let busy = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        );
        assert!(matches!(
            crate::error::ServiceError::from(StoreError::from(busy)),
            crate::error::ServiceError::Unavailable
        ));
    }

    #[tokio::test]
    async fn corrupt_rows_are_errors_not_panics() {
        let (_directory, store) = open_temp_store();
        let fixture = conformance::seeded(&store).await;
        {
            let writer = store.inner.writer.lock().expect("writer");
            writer
                .execute(
                    "UPDATE households SET card = '{not json' WHERE household_id = ?1",
                    params![fixture.wang.household_id],
                )
                .expect("corrupt the card");
            writer
                .execute(
                    "UPDATE users SET role = 'emperor' WHERE user_id = ?1",
                    params![fixture.admin.user_id],
                )
                .expect("corrupt the role");
        }
        let household = store.get_household(&fixture.wang.household_id).await;
        assert!(
            matches!(household, Err(StoreError::Corrupt(_))),
            "{household:?}"
        );
        let user = store.find_user_by_username(&fixture.admin.username).await;
        assert!(matches!(user, Err(StoreError::Corrupt(_))), "{user:?}");
    }

    #[test]
    fn migrations_are_listed_in_increasing_version_order() {
        // A database remembers only its newest version (user_version): a migration listed
        // after a higher one would be skipped by databases that already ran the higher one.
        for pair in super::MIGRATIONS.windows(2) {
            assert!(
                pair[0].0 < pair[1].0,
                "{} is listed before {}",
                pair[0].1,
                pair[1].1
            );
        }
    }

    #[test]
    fn hashes_within_six_bits_always_share_a_band() {
        use rand::{Rng, SeedableRng};
        let mut random = rand::rngs::StdRng::seed_from_u64(20_261_129);
        for _ in 0..20_000 {
            let hash: u64 = random.random();
            let mut other = hash;
            for _ in 0..6 {
                other ^= 1u64 << random.random_range(0..64);
            }
            let (ours, theirs) = (
                crate::store::media::phash_bands(hash),
                crate::store::media::phash_bands(other),
            );
            assert!(
                ours.iter().zip(theirs).any(|(a, b)| *a == b),
                "{hash:016x} and {other:016x} share no band"
            );
        }
        // Seven flipped bits, one per band, share none: why wider settings scan everything.
        let spread = (0..7).fold(0u64, |bits, band| bits | 1 << (9 * band));
        let (ours, theirs) = (
            crate::store::media::phash_bands(0),
            crate::store::media::phash_bands(spread),
        );
        assert!(ours.iter().zip(theirs).all(|(a, b)| *a != b));
    }

    #[tokio::test]
    async fn reads_run_concurrently_beyond_the_pool_size() {
        let (_directory, store) = open_temp_store();
        let fixture = conformance::seeded(&store).await;
        let reads = (0..(READER_POOL_SIZE * 3)).map(|_| {
            let store = store.clone();
            let household_id = fixture.zhao.household_id.clone();
            tokio::spawn(async move { store.get_household(&household_id).await })
        });
        for read in reads.collect::<Vec<_>>() {
            let household = read.await.expect("join").expect("read");
            assert!(household.is_some());
        }
        let pooled = store.inner.readers.lock().expect("pool").len();
        assert!(pooled <= READER_POOL_SIZE, "{pooled}");
    }
}
