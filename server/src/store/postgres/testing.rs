//! Fresh PostgreSQL databases for tests. Tests that need PostgreSQL read
//! `FIELDSYNC_TEST_DATABASE_URL` (`.ci/run` sets it to the machine's server) and print that
//! they were skipped where it is unset, so the SQLite suite always runs on its own.
//!
//! Each test binary gets its own database, named after the process (`fieldsync_t<pid>`),
//! created on first use; each store inside it gets its own schema, so every test starts
//! from an empty store without paying for a `CREATE DATABASE` each. Databases left by
//! binaries that are no longer running are dropped when the next one starts.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::OnceCell;
use tokio_postgres::NoTls;

use super::{PoolSettings, PostgresStore};
use crate::store::sealed::PiiCipher;

/// The variable naming the server tests may use (any database on it; `test` on CI).
pub const TEST_DATABASE_URL_VARIABLE: &str = "FIELDSYNC_TEST_DATABASE_URL";

/// The prefix of the databases this harness creates (and may drop once their process ends).
const DATABASE_PREFIX: &str = "fieldsync_t";

static BINARY_DATABASE: OnceCell<String> = OnceCell::const_new();
static NEXT_SCHEMA: AtomicU64 = AtomicU64::new(1);
static NEXT_DATABASE: AtomicU64 = AtomicU64::new(1);

/// The variable that runs the end-to-end tests' servers on PostgreSQL: the URL of a server
/// on which each test server gets a database of its own ([`fresh_database_url`]).
pub const E2E_DATABASE_URL_VARIABLE: &str = "FIELDSYNC_E2E_DATABASE_URL";

/// The server URL from the environment, or `None` after printing that `test_name` was
/// skipped.
pub fn test_server_url(test_name: &str) -> Option<String> {
    match std::env::var(TEST_DATABASE_URL_VARIABLE) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            println!("skipped {test_name}: {TEST_DATABASE_URL_VARIABLE} is not set");
            None
        }
    }
}

/// The URL of this test binary's own database on the server at `server_url`, created the
/// first time it is asked for.
pub async fn binary_database_url(server_url: &str) -> String {
    let name = BINARY_DATABASE
        .get_or_init(|| async {
            let name = format!("{DATABASE_PREFIX}{}", std::process::id());
            let (client, connection) = tokio_postgres::connect(server_url, NoTls)
                .await
                .unwrap_or_else(|error| panic!("connect to {TEST_DATABASE_URL_VARIABLE}: {error}"));
            tokio::spawn(connection);
            drop_databases_of_ended_binaries(&client).await;
            client
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await
                .expect("drop a leftover database of a reused process id");
            client
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await
                .expect("create the test binary's database");
            name
        })
        .await;
    let mut config: tokio_postgres::Config = server_url
        .parse()
        .expect("FIELDSYNC_TEST_DATABASE_URL is a PostgreSQL URL");
    config.dbname(name);
    config_to_url(&config, name)
}

/// Rebuild a URL for `config` with database `name` (tokio-postgres has no URL printer).
fn config_to_url(config: &tokio_postgres::Config, name: &str) -> String {
    let user = config.get_user().unwrap_or("postgres");
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        Some(tokio_postgres::config::Host::Unix(path)) => {
            // A socket folder goes in the query string.
            return format!("postgres://{user}@/{name}?host={}", path.display());
        }
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    match config.get_password() {
        Some(password) => format!(
            "postgres://{user}:{}@{host}:{port}/{name}",
            String::from_utf8_lossy(password)
        ),
        None => format!("postgres://{user}@{host}:{port}/{name}"),
    }
}

/// Drop `fieldsync_t<pid>` databases whose process has ended (a test binary cannot drop its
/// own database at exit: no async runs then).
async fn drop_databases_of_ended_binaries(client: &tokio_postgres::Client) {
    let rows = client
        .query(
            "SELECT datname FROM pg_database WHERE datname LIKE $1",
            &[&format!("{DATABASE_PREFIX}%")],
        )
        .await
        .expect("list test databases");
    for row in rows {
        let name: String = row.get(0);
        // `fieldsync_t<pid>` or `fieldsync_t<pid>_<n>` (see `fresh_database_url`).
        let Some(pid) = name
            .strip_prefix(DATABASE_PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|digits| digits.parse::<u32>().ok())
        else {
            continue;
        };
        let still_running = std::path::Path::new(&format!("/proc/{pid}")).exists();
        if !still_running {
            // Another binary starting at the same moment may drop it first.
            let _ = client
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
        }
    }
}

/// The URL of a new, empty database of this test binary on the server at `server_url`: a
/// whole server's storage, for end-to-end tests that hand it to a server as `database_url`.
pub async fn fresh_database_url(server_url: &str) -> String {
    let name = format!(
        "{DATABASE_PREFIX}{}_{}",
        std::process::id(),
        NEXT_DATABASE.fetch_add(1, Ordering::Relaxed)
    );
    let (client, connection) = tokio_postgres::connect(server_url, NoTls)
        .await
        .unwrap_or_else(|error| panic!("connect to {E2E_DATABASE_URL_VARIABLE}: {error}"));
    let connection = tokio::spawn(connection);
    drop_databases_of_ended_binaries(&client).await;
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .expect("drop a leftover database of a reused process id");
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create a test server's database");
    drop(client);
    let _ = connection.await;
    let config: tokio_postgres::Config = server_url
        .parse()
        .expect("the end-to-end database URL is a PostgreSQL URL");
    config_to_url(&config, &name)
}

/// A fresh, empty, migrated store in its own schema of this binary's database, or `None`
/// (after printing so) when no test server is configured.
pub async fn fresh_store(test_name: &str) -> Option<PostgresStore> {
    let server_url = test_server_url(test_name)?;
    Some(fresh_store_on(&server_url).await)
}

/// A fresh store on the server at `server_url` (see [`fresh_store`]).
pub async fn fresh_store_on(server_url: &str) -> PostgresStore {
    let (config, _schema) = fresh_schema(server_url).await;
    PostgresStore::connect_with_config(config, PiiCipher::for_tests(), PoolSettings::default())
        .await
        .expect("connect and migrate a fresh PostgreSQL store")
}

/// A new empty schema in this binary's database, and a connection configuration whose
/// search path is that schema (so two stores, e.g. two server replicas, can share it).
pub async fn fresh_schema(server_url: &str) -> (tokio_postgres::Config, String) {
    let database_url = binary_database_url(server_url).await;
    let schema = format!("store_{}", NEXT_SCHEMA.fetch_add(1, Ordering::Relaxed));
    let (client, connection) = tokio_postgres::connect(&database_url, NoTls)
        .await
        .expect("connect to the test binary's database");
    let connection = tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .expect("create a fresh schema");
    drop(client);
    let _ = connection.await;
    let mut config: tokio_postgres::Config =
        database_url.parse().expect("the harness built a valid URL");
    config.options(format!("-c search_path={schema}"));
    (config, schema)
}
