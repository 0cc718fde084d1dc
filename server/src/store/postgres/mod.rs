//! PostgreSQL backend (issue 15 §2), for a province's data on an engine operators already
//! run. A pool of `tokio-postgres` connections (deadpool); every store method is one
//! transaction on one pooled connection, with no blocking-pool hop.
//!
//! What SQLite's single writer made free is explicit here:
//! - a scope's change sequence comes from its `scope_counters` row, which the writing
//!   transaction locks just before its commit (`change_log::number_pending_changes`) and
//!   holds until then, so sequences become visible in the order they were issued;
//! - writes that lose a deadlock or a serialization check are retried whole
//!   (`write_transaction!`), never half-applied;
//! - migrations take an advisory lock, so replicas starting together migrate once.
//!
//! The SQL is one file per concern; `area_traits.rs` assembles it into the area traits. The
//! server picks this backend when `database_url` is set ([`crate::open_state`]).

/// Run `$body` in one read-committed transaction on a pooled connection and commit it,
/// trying the whole transaction again when it lost a race ([`PostgresStore::retry_write`]).
/// Inside `$body`, `$transaction` is a `&Transaction` and `?` converts into [`WriteError`].
/// (A macro, not a method taking an async closure: such a closure borrowing the
/// transaction cannot be proven `Send` for every lifetime, which `async_trait` requires.)
macro_rules! write_transaction {
    ($store:expr, |$transaction:ident| $body:block) => {{
        let mut connection = $store.connection().await?;
        let mut attempt = 1;
        loop {
            let owned_transaction = connection.transaction().await?;
            let outcome: Result<_, $crate::store::postgres::WriteError> = async {
                let $transaction = &owned_transaction;
                $body
            }
            .await;
            // The change-log entries this transaction wrote get their scope numbers last,
            // so the scope counters stay locked only from here to the commit.
            let outcome = match outcome {
                Ok(value) => {
                    $crate::store::postgres::change_log::number_pending_changes(&owned_transaction)
                        .await
                        .map(|()| value)
                }
                Err(error) => Err(error),
            };
            let outcome = match outcome {
                Ok(value) => owned_transaction
                    .commit()
                    .await
                    .map(|()| {
                        $store
                            .committed_writes
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        value
                    })
                    .map_err($crate::store::postgres::WriteError::Postgres),
                Err(error) => Err(error),
            };
            if $crate::store::postgres::PostgresStore::retry_write(&outcome, attempt) {
                attempt += 1;
                continue;
            }
            break outcome.map_err($crate::store::StoreError::from);
        }
    }};
}

mod accounts;
mod area_traits;
mod audit;
mod basics;
pub(crate) mod change_log;
#[cfg(test)]
mod conformance_runs;
mod evidence;
mod export;
mod households;
mod households_area;
mod imports;
mod jobs;
mod ledger;
mod lookups;
mod pairings;
mod photo_meta;
mod pull;
mod push;
#[cfg(test)]
mod replicas;
mod review;
mod search;
mod sessions;
mod sync_area;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
mod uploads;

use std::time::Duration;

use std::path::Path;

use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

use super::sealed::PiiCipher;
use super::{StoreError, StoreResult};

/// The schema, in order. A version is applied once, inside one transaction with its record in
/// `fieldsync_schema`.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "baseline", include_str!("migrations/0001_baseline.sql")),
    (
        2,
        "import_jobs",
        include_str!("migrations/0002_import_jobs.sql"),
    ),
    (
        3,
        "scope_numbers_at_commit",
        include_str!("migrations/0003_scope_numbers_at_commit.sql"),
    ),
];

/// Advisory lock key taken while migrating (any constant; "fsync-mg" in ASCII).
const MIGRATION_LOCK_KEY: i64 = 0x6673_796e_632d_6d67;

/// How often a write that lost a deadlock or serialization race is tried again before the
/// error is returned (each try is a whole transaction; nothing of a lost try remains).
const WRITE_ATTEMPTS: u32 = 5;

/// Connection-pool settings for [`PostgresStore::connect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    /// Most connections this server holds open at once. PostgreSQL's default limit is 100
    /// connections for every replica together.
    pub max_connections: usize,
    /// How long a store call waits for a free connection before failing (retryable).
    pub wait_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 16,
            wait_timeout: Duration::from_secs(10),
        }
    }
}

/// The PostgreSQL store. Cheap to clone: the pool and the keys are shared.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    pii: std::sync::Arc<PiiCipher>,
    /// Signs new audit records (see `crate::audit`); `None` writes legacy unkeyed records.
    audit_key: Option<std::sync::Arc<crate::keys::SecretKey>>,
    /// Write transactions committed through this store (`write_transaction!`).
    committed_writes: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password; the pool's status is what helps in a log.
        let status = self.pool.status();
        formatter
            .debug_struct("PostgresStore")
            .field("connections", &status.size)
            .field("idle", &status.available)
            .finish_non_exhaustive()
    }
}

/// The error with what the server said (tokio-postgres's own text is only "db error").
fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(database) => format!(
            "{} ({}){}",
            database.message(),
            database.code().code(),
            database
                .detail()
                .map(|detail| format!(": {detail}"))
                .unwrap_or_default()
        ),
        None => error.to_string(),
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> Self {
        let Some(code) = error.code() else {
            // No SQLSTATE: the connection broke (waiting may cure it), or a row or parameter
            // did not convert, which is this server's defect and the same on every retry.
            return if is_conversion_error(&error) {
                StoreError::Corrupt(describe(&error))
            } else {
                StoreError::database_caused_by(describe(&error), error)
            };
        };
        if code.code().starts_with("42") {
            // Syntax error or access rule violation: a statement this server cannot run,
            // never cured by retrying (phones would retry UNAVAILABLE forever).
            return StoreError::Corrupt(describe(&error));
        }
        if *code == SqlState::UNIQUE_VIOLATION
            || *code == SqlState::FOREIGN_KEY_VIOLATION
            || *code == SqlState::CHECK_VIOLATION
            || *code == SqlState::NOT_NULL_VIOLATION
            || *code == SqlState::STRING_DATA_RIGHT_TRUNCATION
            || *code == SqlState::NUMERIC_VALUE_OUT_OF_RANGE
            || *code == SqlState::CHARACTER_NOT_IN_REPERTOIRE
        {
            return StoreError::InvalidValue {
                field: "record".into(),
                message: format!("refused by the database: {}", describe(&error)),
            };
        }
        if *code == SqlState::DATA_CORRUPTED || *code == SqlState::INDEX_CORRUPTED {
            return StoreError::Corrupt(describe(&error));
        }
        StoreError::database_caused_by(describe(&error), error)
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        match error {
            deadpool_postgres::PoolError::Backend(error) => error.into(),
            other => StoreError::database(format!("no database connection: {other}")),
        }
    }
}

/// Whether a client-side error is a value that did not convert between a Rust type and a
/// column or parameter (tokio-postgres exposes its error kinds only through `Display`).
fn is_conversion_error(error: &tokio_postgres::Error) -> bool {
    let text = error.to_string();
    [
        "error deserializing column",
        "error serializing parameter",
        "invalid column",
        "expected ",
    ]
    .iter()
    .any(|start| text.starts_with(start))
}

/// A TLS connector that trusts only the CA certificates in the PEM file `ca_file` and
/// checks the server's name against its certificate.
fn verifying_tls(ca_file: &Path) -> StoreResult<tokio_postgres_rustls::MakeRustlsConnect> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let unusable = |detail: String| {
        StoreError::database(format!("database_ca_file {}: {detail}", ca_file.display()))
    };
    let pem = std::fs::read(ca_file).map_err(|error| unusable(error.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(&pem) {
        let certificate = certificate.map_err(|error| unusable(error.to_string()))?;
        roots
            .add(certificate)
            .map_err(|error| unusable(error.to_string()))?;
    }
    if roots.is_empty() {
        return Err(unusable("holds no PEM certificate".to_owned()));
    }
    // ring, as for the server's own TLS (`tls.rs`): aws-lc-rs needs cmake and a C build.
    #[allow(deprecated)]
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| unusable(error.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// True for the errors a whole transaction may simply be tried again after.
fn is_retryable(error: &tokio_postgres::Error) -> bool {
    error.code().is_some_and(|code| {
        *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::T_R_DEADLOCK_DETECTED
            // Two replicas inserting the same key: the loser's next try reads the winner's
            // committed row in its checks (every write checks before it inserts) and
            // answers from it, e.g. a duplicate instead of a second application.
            || *code == SqlState::UNIQUE_VIOLATION
    })
}

impl PostgresStore {
    /// Connect to `url` (`postgres://user@host:port/database`), bring the schema up to date
    /// and return the store. `pii` seals and opens personal data at this boundary, exactly as
    /// the SQLite store does, so sealed values are the same text on both backends.
    ///
    /// With `sslmode=require` in the URL every connection is encrypted (rustls) and the
    /// server's certificate must verify against `ca_file`, host name included; without it
    /// (or with `disable`/`prefer`) connections are plain, for a database on the same host or
    /// private network.
    pub async fn connect(
        url: &str,
        ca_file: Option<&Path>,
        pii: PiiCipher,
        pool: PoolSettings,
    ) -> StoreResult<Self> {
        let config: tokio_postgres::Config = url.parse().map_err(|error| {
            StoreError::database_caused_by(
                format!("database_url is not a PostgreSQL URL: {error}"),
                error,
            )
        })?;
        let tls = if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
            let ca_file = ca_file.ok_or_else(|| {
                StoreError::database(
                    "database_url asks for sslmode=require, but database_ca_file is not set \
                     (the CA certificate the PostgreSQL server's certificate is checked against)",
                )
            })?;
            Some(verifying_tls(ca_file)?)
        } else {
            None
        };
        Self::connect_with_tls(config, tls, pii, pool).await
    }

    /// Like [`PostgresStore::connect`], from a parsed configuration, unencrypted (tests set
    /// the schema search path through it).
    pub async fn connect_with_config(
        config: tokio_postgres::Config,
        pii: PiiCipher,
        pool: PoolSettings,
    ) -> StoreResult<Self> {
        Self::connect_with_tls(config, None, pii, pool).await
    }

    async fn connect_with_tls(
        config: tokio_postgres::Config,
        tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
        pii: PiiCipher,
        pool: PoolSettings,
    ) -> StoreResult<Self> {
        let manager_config = ManagerConfig {
            // A connection that broke is found by the next statement on it and the call
            // fails retryably; checking every checkout would cost a round trip per call.
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match tls {
            Some(tls) => Manager::from_config(config, tls, manager_config),
            None => Manager::from_config(config, NoTls, manager_config),
        };
        let pool = Pool::builder(manager)
            .max_size(pool.max_connections)
            .wait_timeout(Some(pool.wait_timeout))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|error| StoreError::database(format!("connection pool: {error}")))?;
        let store = Self {
            pool,
            pii: std::sync::Arc::new(pii),
            audit_key: None,
            committed_writes: std::sync::Arc::default(),
        };
        store.apply_migrations().await?;
        Ok(store)
    }

    /// A pooled connection.
    async fn connection(&self) -> StoreResult<Object> {
        Ok(self.pool.get().await?)
    }

    /// The keys personal values are sealed with.
    fn pii(&self) -> &PiiCipher {
        &self.pii
    }

    /// Sign new audit records with `audit_key` (the server always passes its key).
    pub fn with_audit_key(mut self, audit_key: crate::keys::SecretKey) -> Self {
        self.audit_key = Some(std::sync::Arc::new(audit_key));
        self
    }

    fn audit_key(&self) -> Option<&crate::keys::SecretKey> {
        self.audit_key.as_deref()
    }

    /// Apply every migration newer than the database, each in its own transaction under the
    /// migration lock, so two replicas starting at once apply each version once.
    async fn apply_migrations(&self) -> StoreResult<()> {
        let mut connection = self.connection().await?;
        connection
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS fieldsync_schema (
                     version     INTEGER PRIMARY KEY,
                     name        TEXT NOT NULL,
                     applied_at  TIMESTAMPTZ NOT NULL DEFAULT now())",
            )
            .await
            .or_else(|error| {
                // Two replicas creating the table at once: one of them loses the race on the
                // catalog's unique index, and the table is there either way.
                if error.code() == Some(&SqlState::UNIQUE_VIOLATION) {
                    Ok(())
                } else {
                    Err(error)
                }
            })?;
        let newest = MIGRATIONS.last().map_or(0, |(version, ..)| *version);
        for (version, name, sql) in MIGRATIONS {
            let transaction = connection.transaction().await?;
            transaction
                .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK_KEY])
                .await?;
            let current: i32 = transaction
                .query_one(
                    "SELECT COALESCE(MAX(version), 0) FROM fieldsync_schema",
                    &[],
                )
                .await?
                .get(0);
            if current > newest {
                return Err(StoreError::database(format!(
                    "database schema version {current} is newer than this server knows \
                     ({newest}); upgrade the server"
                )));
            }
            if *version <= current {
                continue;
            }
            transaction.batch_execute(sql).await.map_err(|error| {
                StoreError::database_caused_by(
                    format!("migration {version} {name}: {}", describe(&error)),
                    error,
                )
            })?;
            transaction
                .execute(
                    "INSERT INTO fieldsync_schema (version, name) VALUES ($1, $2)",
                    &[version, name],
                )
                .await?;
            transaction.commit().await?;
            tracing::info!(version, name, "PostgreSQL schema migrated");
        }
        Ok(())
    }

    /// Whether a write that ended in `outcome` on try `attempt` is tried again: it lost a
    /// deadlock, a serialization check or a unique-key race, and tries remain.
    fn retry_write<T>(outcome: &Result<T, WriteError>, attempt: u32) -> bool {
        match outcome {
            Err(WriteError::Postgres(error)) if is_retryable(error) && attempt < WRITE_ATTEMPTS => {
                tracing::debug!(%error, attempt, "write lost a race; trying again");
                true
            }
            _ => false,
        }
    }
}

/// The error of a write's body: a database error (retried when it is a lost race) or a
/// store error the body decided on.
#[derive(Debug)]
pub(crate) enum WriteError {
    Postgres(tokio_postgres::Error),
    Store(StoreError),
}

impl From<tokio_postgres::Error> for WriteError {
    fn from(error: tokio_postgres::Error) -> Self {
        WriteError::Postgres(error)
    }
}

impl From<StoreError> for WriteError {
    fn from(error: StoreError) -> Self {
        WriteError::Store(error)
    }
}

impl From<WriteError> for StoreError {
    fn from(error: WriteError) -> Self {
        match error {
            WriteError::Postgres(error) => error.into(),
            WriteError::Store(error) => error,
        }
    }
}

/// Statements prepared once per pooled connection and reused: tokio-postgres prepares a
/// statement given as text on every call, one more round trip each, which made seeding a
/// county and every push several times slower than the same work on SQLite. Only for SQL
/// whose text comes from a finite set (constants and column lists); text that embeds values
/// would fill the cache.
pub(crate) trait PreparedOnce: GenericClient {
    async fn execute_cached(
        &self,
        sql: &str,
        parameters: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64, tokio_postgres::Error> {
        let statement = self.prepare_cached(sql).await?;
        self.execute(&statement, parameters).await
    }

    async fn query_cached(
        &self,
        sql: &str,
        parameters: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
        let statement = self.prepare_cached(sql).await?;
        self.query(&statement, parameters).await
    }

    async fn query_opt_cached(
        &self,
        sql: &str,
        parameters: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Option<tokio_postgres::Row>, tokio_postgres::Error> {
        let statement = self.prepare_cached(sql).await?;
        self.query_opt(&statement, parameters).await
    }

    async fn query_one_cached(
        &self,
        sql: &str,
        parameters: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<tokio_postgres::Row, tokio_postgres::Error> {
        let statement = self.prepare_cached(sql).await?;
        self.query_one(&statement, parameters).await
    }
}

impl<Client: GenericClient> PreparedOnce for Client {}

/// Change-log kinds, as SQLite writes them.
const CHANGE_KIND_HOUSEHOLD: &str = "household";
const CHANGE_KIND_VISIT_STATUS: &str = "visit_status";
const CHANGE_KIND_REMOVED: &str = "removed";

/// The townships of the county `$1` (for roles and reads scoped to a county).
const COUNTY_TOWNSHIPS_SQL: &str =
    "SELECT area_id FROM areas WHERE parent_id = $1 AND level = 'township'";

/// The context users.phone is sealed under (the same text as SQLite's).
fn user_phone_context(user_id: &str) -> String {
    format!("users.phone/{user_id}")
}

use super::{decode_flags, decode_json, encode_json, from_millis, parse_state, to_millis};

#[cfg(test)]
mod error_mapping_tests {
    //! Which PostgreSQL failures a phone may retry: only what waiting can cure is
    //! `StoreError::Database` (UNAVAILABLE); a statement the server cannot run, or a value
    //! that does not convert, is permanent. Skipped where `FIELDSYNC_TEST_DATABASE_URL` is
    //! unset.

    use super::testing::fresh_store;
    use crate::store::StoreError;

    #[tokio::test]
    async fn server_defects_are_permanent_and_a_lost_connection_is_not() {
        let Some(store) =
            fresh_store("server_defects_are_permanent_and_a_lost_connection_is_not").await
        else {
            return;
        };
        let connection = store.connection().await.expect("connection");
        let undefined_column = connection
            .query("SELECT no_such_column FROM areas", &[])
            .await
            .expect_err("undefined column");
        assert!(matches!(
            StoreError::from(undefined_column),
            StoreError::Corrupt(_)
        ));
        let row = connection
            .query_one("SELECT 'text'::TEXT AS value", &[])
            .await
            .expect("row");
        let wrong_type = row.try_get::<_, i64>("value").expect_err("wrong type");
        assert!(matches!(
            StoreError::from(wrong_type),
            StoreError::Corrupt(_)
        ));
        let unknown_column = row
            .try_get::<_, String>("nothing")
            .expect_err("no such column");
        assert!(matches!(
            StoreError::from(unknown_column),
            StoreError::Corrupt(_)
        ));
        // A connection the server ended: waiting (a new connection) cures it.
        let backend: i32 = connection
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .expect("pid")
            .get(0);
        let other = store.connection().await.expect("second connection");
        other
            .execute("SELECT pg_terminate_backend($1)", &[&backend])
            .await
            .expect("terminate");
        let closed = connection
            .query_one("SELECT 1", &[])
            .await
            .expect_err("terminated connection");
        assert!(matches!(
            StoreError::from(closed),
            StoreError::Database { .. }
        ));
    }
}

#[cfg(test)]
mod tls_tests {
    //! TLS from the server to PostgreSQL against the local test server, which Debian's
    //! package sets up with `ssl = on` and its self-signed "snakeoil" certificate for the
    //! name `localhost`. Skipped (with a line saying so) where `FIELDSYNC_TEST_DATABASE_URL`
    //! is unset or that server does not offer TLS.

    use std::path::PathBuf;

    use super::testing::{fresh_database_url, test_server_url};
    use super::{PoolSettings, PostgresStore};
    use crate::store::sealed::PiiCipher;

    /// The certificate the test server presents, when it offers TLS and the file is readable.
    async fn server_certificate(server_url: &str) -> Option<PathBuf> {
        let (client, connection) = tokio_postgres::connect(server_url, tokio_postgres::NoTls)
            .await
            .expect("connect to the test server");
        tokio::spawn(connection);
        let ssl: String = client.query_one("SHOW ssl", &[]).await.ok()?.get(0);
        let file: String = client
            .query_one("SHOW ssl_cert_file", &[])
            .await
            .ok()?
            .get(0);
        let file = PathBuf::from(file);
        (ssl == "on" && std::fs::read(&file).is_ok()).then_some(file)
    }

    #[tokio::test]
    async fn sslmode_require_encrypts_and_verifies_the_servers_certificate() {
        let test = "TLS to PostgreSQL";
        let Some(server_url) = test_server_url(test) else {
            return;
        };
        let Some(certificate) = server_certificate(&server_url).await else {
            println!(
                "{test}: skipped, the test server does not offer TLS with a readable certificate"
            );
            return;
        };
        // The certificate names `localhost`: connect by that name, as verify-full checks it.
        let database_url = fresh_database_url(&server_url)
            .await
            .replace("@127.0.0.1:", "@localhost:");
        let separator = if database_url.contains('?') { '&' } else { '?' };
        let encrypted_url = format!("{database_url}{separator}sslmode=require");

        let store = PostgresStore::connect(
            &encrypted_url,
            Some(&certificate),
            PiiCipher::for_tests(),
            PoolSettings::default(),
        )
        .await
        .expect("connect over TLS and migrate");
        let connection = store.connection().await.expect("a pooled connection");
        let encrypted: bool = connection
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .expect("read pg_stat_ssl")
            .get(0);
        assert!(encrypted, "the server sees an encrypted connection");

        // A certificate signed by someone else (any public CA) is refused, not trusted.
        let public_roots = PathBuf::from("/etc/ssl/certs/ca-certificates.crt");
        if public_roots.exists() {
            let refused = PostgresStore::connect(
                &encrypted_url,
                Some(&public_roots),
                PiiCipher::for_tests(),
                PoolSettings::default(),
            )
            .await;
            assert!(
                refused.is_err(),
                "an unverified server certificate is refused"
            );
        }
        // sslmode=require without a CA file is a setup error naming the setting.
        let Err(missing) = PostgresStore::connect(
            &encrypted_url,
            None,
            PiiCipher::for_tests(),
            PoolSettings::default(),
        )
        .await
        else {
            panic!("connected without a CA file");
        };
        assert!(
            missing.to_string().contains("database_ca_file"),
            "{missing}"
        );
        // A CA file that holds no certificate is refused with its path.
        let empty = tempfile::NamedTempFile::new().expect("temp file");
        let Err(unusable) = PostgresStore::connect(
            &encrypted_url,
            Some(empty.path()),
            PiiCipher::for_tests(),
            PoolSettings::default(),
        )
        .await
        else {
            panic!("connected with an empty CA file");
        };
        assert!(
            unusable.to_string().contains("no PEM certificate"),
            "{unusable}"
        );
    }
}
