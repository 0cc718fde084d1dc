//! fieldsync server library: gRPC (Auth, Sync, Media, Review, health, reflection) and the
//! supervisor console on one port. The binary `fieldsync-server` is a thin wrapper around
//! [`run`]; tests call [`run`] with a listener bound to port 0.

pub(crate) mod accounts;
pub(crate) mod area_import;
pub mod audit;
pub mod auth;
pub mod backup;
pub(crate) mod cadre_import;
pub mod clock;
pub mod demo;
pub mod error;
pub(crate) mod evidence;
pub(crate) mod export;
pub(crate) mod forwarded;
pub mod grpc;
pub(crate) mod households;
pub(crate) mod http;
pub(crate) mod import_jobs;
pub mod keys;
pub(crate) mod ledger;
pub mod logging;
pub(crate) mod login_guard;
pub(crate) mod login_throttle;
pub mod media;
pub mod monitoring;
pub(crate) mod pairings;
pub mod password_pool;
pub mod pii_rotation;
pub mod review;
pub(crate) mod roster_import;
pub(crate) mod search;
pub(crate) mod sessions;
pub mod settings;
pub mod setup;
pub mod store;
pub mod sync;
pub(crate) mod text;
pub mod tls;

use std::future::Future;

use axum::serve::ListenerExt;
use std::sync::{Arc, Mutex, PoisonError};

use fieldsync_model::hlc::{Hlc, unix_millis};

use crate::clock::{Clock, SystemClock};
use crate::media::blobs::BlobStore;
use crate::settings::Settings;
use crate::store::{SqliteStore, Store};

/// Shared state handed to every gRPC service and HTTP route.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    /// The administrative areas' own storage (the same database as `store`).
    pub areas: Arc<dyn store::AreasStore>,
    pub blobs: Arc<BlobStore>,
    pub settings: Arc<Settings>,
    pub clock: Arc<dyn Clock>,
    /// The server's hybrid logical clock. It only moves forward: by ticking at the server's
    /// wall time, and by observing HLCs of batches that committed (never of refused ones),
    /// so it is always past every stored write and a console resolution wins.
    pub hlc: Arc<Mutex<Hlc>>,
    /// The key new audit records are signed with (`audit-hmac` in the key folder).
    pub audit_key: keys::SecretKey,
    /// The latest audit chain verification, shown to county staff when it failed.
    pub audit_health: audit::AuditHealth,
    /// The bounded password-hashing pool and the failed-login throttle.
    pub login_guard: Arc<login_guard::LoginGuard>,
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot open storage: {0}")]
    Store(#[from] store::StoreError),
    #[error("cannot open blob storage: {0}")]
    Blobs(#[from] media::blobs::BlobError),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Tls(#[from] tls::TlsSetupError),
}

impl AppState {
    /// Open the embedded storage: the SQLite file under `data_dir`, and the blob folder there
    /// or the object store `settings.blobs` names. PostgreSQL (`database_url`) opens
    /// asynchronously: use [`open_state`].
    pub fn open(settings: Settings) -> Result<Self, ServerError> {
        Self::open_with_clock(settings, Arc::new(SystemClock))
    }

    /// Like [`AppState::open`] with an injected clock (tests).
    pub fn open_with_clock(settings: Settings, clock: Arc<dyn Clock>) -> Result<Self, ServerError> {
        if uses_postgres(&settings) {
            return Err(ServerError::Setup(
                "database_url names PostgreSQL, which opens asynchronously (open_state)".into(),
            ));
        }
        let keys = ServerKeys::load_or_create(&settings)?;
        let store = SqliteStore::open_with_audit_key(
            &settings.sqlite_path(),
            keys.pii,
            Some(keys.audit.clone()),
        )?;
        Self::assemble(settings, clock, keys.audit, store)
    }

    /// Open storage on the PostgreSQL server `database_url` names (issue 15): several
    /// replicas may share it. Personal-data and audit keys still come from the key folder,
    /// which every replica must hold the same copy of.
    pub async fn open_postgres(
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ServerError> {
        let keys = {
            let settings = settings.clone();
            tokio::task::spawn_blocking(move || ServerKeys::load_or_create(&settings))
                .await
                .map_err(|error| ServerError::Setup(format!("reading the key folder: {error}")))??
        };
        let store = store::postgres::PostgresStore::connect(
            &settings.database_url.0,
            settings.database_ca_file.as_deref(),
            keys.pii,
            store::postgres::PoolSettings::default(),
        )
        .await?
        .with_audit_key(keys.audit.clone());
        // Replicas share the database but each reads its own key folder: one started with
        // another folder could not open what the others sealed, and would seal new data
        // they cannot open. It stops here instead.
        match store.check_sealed_data_opens().await {
            Err(store::StoreError::Sealed(detail)) => {
                return Err(ServerError::Setup(format!(
                    "个人信息密钥与数据库不符 (the key folder {} lacks the keys this database was \
                     sealed with: {detail}); give every replica a copy of the first replica's \
                     key folder",
                    settings.key_dir().display()
                )));
            }
            other => other?,
        }
        Self::assemble(settings, clock, keys.audit, store)
    }

    /// The state around an opened store: blobs, the login guard and the clocks.
    fn assemble<S: Store + Clone>(
        settings: Settings,
        clock: Arc<dyn Clock>,
        audit_key: keys::SecretKey,
        store: S,
    ) -> Result<Self, ServerError> {
        let blobs = BlobStore::open(&settings.blobs, &settings.blob_dir())?;
        let login_guard = login_guard::LoginGuard::start(&settings.login)
            .map_err(|error| ServerError::Setup(format!("login settings: {error}")))?;
        Ok(Self {
            areas: Arc::new(store.clone()),
            store: Arc::new(store),
            blobs: Arc::new(blobs),
            settings: Arc::new(settings),
            clock,
            hlc: Arc::new(Mutex::new(Hlc::ZERO)),
            audit_key,
            audit_health: audit::AuditHealth::default(),
            login_guard: Arc::new(login_guard),
        })
    }

    /// Tick the server HLC at the current wall time and return the new reading.
    pub fn tick_hlc(&self) -> Hlc {
        let wall = unix_millis(self.clock.now());
        // A panic while holding the lock cannot leave a half-written u64 behind.
        let mut hlc = self.hlc.lock().unwrap_or_else(PoisonError::into_inner);
        *hlc = hlc.tick(wall);
        *hlc
    }

    /// Move the server HLC past `seen` (the greatest HLC of a committed batch).
    pub fn observe_hlc(&self, seen: Hlc) -> Hlc {
        let wall = unix_millis(self.clock.now());
        let mut hlc = self.hlc.lock().unwrap_or_else(PoisonError::into_inner);
        *hlc = hlc.observe(seen, wall);
        *hlc
    }

    /// The server HLC as it is now, without ticking it.
    pub fn current_hlc(&self) -> Hlc {
        *self.hlc.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Open the storage named by `settings` and serve gRPC and the console on `listener` until
/// `shutdown` resolves. The listener answers from the start: health NOT_SERVING and every
/// other call UNAVAILABLE while the storage opens and migrates ([`serve_when_open`]).
pub async fn run(
    listener: tokio::net::TcpListener,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let metrics_listener = monitoring::bind_metrics_listener(&settings.metrics).await?;
    let opening = open_state(settings.clone());
    serve_when_open(
        listener,
        metrics_listener,
        &settings,
        opening,
        |_| {},
        shutdown,
    )
    .await
}

/// Open the storage `settings` name: PostgreSQL when `database_url` is set, else SQLite
/// on a blocking thread (opening runs the migrations).
pub async fn open_state(settings: Settings) -> Result<AppState, ServerError> {
    open_state_with_clock(settings, Arc::new(SystemClock)).await
}

/// Like [`open_state`] with an injected clock (tests).
pub async fn open_state_with_clock(
    settings: Settings,
    clock: Arc<dyn Clock>,
) -> Result<AppState, ServerError> {
    if uses_postgres(&settings) {
        return AppState::open_postgres(settings, clock).await;
    }
    tokio::task::spawn_blocking(move || AppState::open_with_clock(settings, clock))
        .await
        .map_err(|error| ServerError::Setup(format!("opening the storage failed: {error}")))?
}

/// Whether `settings` keep the data on a PostgreSQL server rather than in SQLite.
pub fn uses_postgres(settings: &Settings) -> bool {
    !settings.database_url.0.trim().is_empty()
}

/// The server's secret keys from the key folder (created on first start).
struct ServerKeys {
    pii: store::sealed::PiiCipher,
    audit: keys::SecretKey,
}

impl ServerKeys {
    fn load_or_create(settings: &Settings) -> Result<Self, ServerError> {
        std::fs::create_dir_all(&settings.data_dir)?;
        // Personal data is sealed with keys from the key folder, outside the data folder.
        let pii = store::sealed::PiiCipher::load_or_create(&settings.key_dir())
            .map_err(|error| ServerError::Setup(format!("personal-data keys: {error}")))?;
        let audit = audit::load_or_create_key(&settings.key_dir())
            .map_err(|error| ServerError::Setup(format!("audit key: {error}")))?;
        Ok(Self { pii, audit })
    }
}

/// Serve an already opened [`AppState`] (tests inject a clock this way). `/metrics` is
/// served on `settings.metrics.listen_addr` when enabled; a metrics address that cannot be
/// bound stops start-up.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let metrics_listener = monitoring::bind_metrics_listener(&state.settings.metrics).await?;
    serve_with_metrics(listener, metrics_listener, state, shutdown).await
}

/// Like [`serve`], with the metrics address already bound (`None`: no `/metrics`), so a
/// test can bind port 0 and know where to scrape.
pub async fn serve_with_metrics(
    listener: tokio::net::TcpListener,
    metrics_listener: Option<tokio::net::TcpListener>,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let settings = state.settings.as_ref().clone();
    serve_when_open(
        listener,
        metrics_listener,
        &settings,
        async move { Ok(state) },
        |_| {},
        shutdown,
    )
    .await
}

/// The server's life on `listener` (issue 12 §4):
///
/// 1. **Starting.** The listener answers at once: `grpc.health.v1` NOT_SERVING, every other
///    gRPC call `UNAVAILABLE`, console pages 503, while `opening` opens the storage (schema
///    migrations, with their pre-migration copy) and prepares it (the binary seeds the demo
///    county here).
/// 2. **Serving.** The full gRPC and console routes replace the starting ones, health turns
///    SERVING, and `on_ready` runs (the binary prints its address then).
/// 3. **Shutdown.** When `shutdown` resolves, health reports NOT_SERVING at once; after
///    `shutdown_drain_secs` the listener closes (new connections are refused, HTTP/2
///    connections get GOAWAY so no new call starts on them) and calls in flight may finish
///    for `shutdown_deadline_secs`; then this returns even if some are still running.
///
/// `settings` must be those `opening` opens with (TLS, metrics and shutdown come from it
/// before the state exists).
pub async fn serve_when_open(
    listener: tokio::net::TcpListener,
    metrics_listener: Option<tokio::net::TcpListener>,
    settings: &Settings,
    opening: impl Future<Output = Result<AppState, ServerError>>,
    on_ready: impl FnOnce(&AppState),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    // Bad certificate or key files fail start-up before anything is served.
    let tls_config = tls::server_config(settings)?;
    let readiness = grpc::Readiness::not_serving().await;
    // The routes in force: the starting ones until the storage is open, then the full app.
    let full_app: Arc<std::sync::OnceLock<axum::Router>> = Arc::default();
    let app = {
        let full_app = full_app.clone();
        let starting = grpc::starting_routes(&readiness);
        axum::Router::new()
            .fallback_service(tower::service_fn(move |request: axum::extract::Request| {
                use tower::ServiceExt;
                let routes = full_app.get().unwrap_or(&starting).clone();
                routes.oneshot(request)
            }))
            // Behind trusted proxies the forwarded client replaces the TCP peer before any
            // route reads it (login throttle, session IPs, audit).
            .layer(axum::middleware::from_fn_with_state(
                Arc::new(settings.trusted_proxies.clone()),
                forwarded::client_address_layer,
            ))
            // Outermost: the request id and span wrap everything the request does.
            .layer(axum::middleware::from_fn(monitoring::request_layer))
    };
    let address = listener.local_addr()?;
    if let Some(warning) = tls::plain_text_warning(address, tls_config.is_some()) {
        tracing::warn!("{warning}");
    }

    // `closing` turns true when the listener is to close (after the drain).
    let (closing_sender, closing) = tokio::sync::watch::channel(false);
    let drain = std::time::Duration::from_secs(settings.shutdown_drain_secs);
    let deadline = std::time::Duration::from_secs(settings.shutdown_deadline_secs);
    let listener_shutdown = {
        let readiness = readiness.clone();
        async move {
            shutdown.await;
            readiness.set(false).await;
            tracing::info!(
                drain_secs = drain.as_secs(),
                "shutting down: health reports NOT_SERVING"
            );
            if !drain.is_zero() {
                tokio::time::sleep(drain).await;
            }
            let _ = closing_sender.send(true);
        }
    };
    let serving = async {
        match tls_config.clone() {
            Some(config) => tls::serve_tls(listener, app, config, listener_shutdown).await,
            None => {
                // ConnectInfo gives every request (console and gRPC) its TCP peer: the login
                // throttle keys addresses by it, and a session records it as its last IP.
                // TCP_NODELAY: small gRPC frames must not wait for a delayed ACK (issue 11).
                let listener = listener.tap_io(|stream| {
                    if let Err(error) = stream.set_nodelay(true) {
                        tracing::debug!(%error, "cannot set TCP_NODELAY");
                    }
                });
                axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
                )
                .with_graceful_shutdown(listener_shutdown)
                .await?;
            }
        }
        Ok::<(), ServerError>(())
    };
    let mut serving = std::pin::pin!(serving);
    tracing::info!(%address, tls = tls_config.is_some(), "fieldsync server starting: opening storage");

    // 1. Starting: serve the starting routes while the storage opens. A shutdown now ends
    //    the server before it ever served.
    //    `biased`: the opening is polled first, so a state that is already open (tests,
    //    `serve_with_metrics`) is taken before the listener accepts anything, and no request
    //    ever meets the starting routes once the caller holds an open state. (Accepting
    //    happens only while `serving` is polled.)
    let state = tokio::select! {
        biased;
        opened = opening => opened?,
        outcome = &mut serving => return outcome,
    };
    // 2. Serving.
    // The server HLC lives in memory; after a restart it must start past every stored write
    // so that a console resolution still outranks the writes it resolves.
    state.observe_hlc(state.store.max_register_hlc().await?);
    // The tail now, so a tampered log is reported before anyone is served; the whole chain
    // daily. A break never stops serving: phones must keep syncing while staff investigate.
    audit::check_and_record(
        &state,
        audit::VerifyScope::Tail(audit::STARTUP_TAIL_RECORDS),
    )
    .await;
    // Each replica verifies the chain itself (its console shows its own verdict); the jobs
    // that write run on one replica at a time.
    let audit_verification = tokio::spawn(audit::verify_full_chain_daily(state.clone()));
    let replica = replica_name(&state.settings)?;
    let maintenance = tokio::spawn(daily_on_lease(
        state.clone(),
        replica.clone(),
        "change-log-compaction",
        compact_change_log,
    ));
    let upload_expiry = tokio::spawn(daily_on_lease(
        state.clone(),
        replica.clone(),
        "upload-expiry",
        expire_uploads,
    ));
    let session_purge = tokio::spawn(daily_on_lease(
        state.clone(),
        replica,
        "session-purge",
        purge_sessions,
    ));
    let metrics_task = match (metrics_listener, monitoring::prometheus_handle()) {
        (Some(metrics_listener), Some(handle)) => Some(tokio::spawn(monitoring::serve_metrics(
            metrics_listener,
            handle,
            state.clone(),
            closed(closing.clone()),
        ))),
        _ => None,
    };
    let routes = http::router(state.clone())
        .map_err(|error| ServerError::Setup(format!("console CSRF key: {error}")))?
        .merge(grpc::routes(state.clone(), &readiness));
    // Set once, here; a second set cannot happen, and would be ignored.
    let _ = full_app.set(routes);
    readiness.set(true).await;
    tracing::info!(%address, tls = tls_config.is_some(), "fieldsync server listening");
    on_ready(&state);

    // 3. Until shutdown, with the deadline.
    let deadline_passed = async {
        closed(closing).await;
        tokio::time::sleep(deadline).await;
    };
    let outcome = tokio::select! {
        outcome = &mut serving => outcome,
        () = deadline_passed => {
            tracing::warn!(
                deadline_secs = deadline.as_secs(),
                "shutdown deadline passed with calls still in flight; stopping anyway"
            );
            Ok(())
        }
    };
    if let Some(metrics_task) = metrics_task {
        metrics_task.abort();
    }
    maintenance.abort();
    upload_expiry.abort();
    session_purge.abort();
    audit_verification.abort();
    outcome
}

/// Resolves on Ctrl-C (SIGINT) or, on Unix, SIGTERM (what `systemctl stop` sends), for the
/// binary's `shutdown`. A handler that cannot be installed is logged; the other still works.
pub async fn termination_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}

/// Resolves once `closing` is true. A sender dropped without closing means the server
/// itself has already stopped; nothing then waits on this.
async fn closed(mut closing: tokio::sync::watch::Receiver<bool>) {
    if closing.wait_for(|closing| *closing).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// How long a session is kept after its last possible use (its end, or its refresh
/// token's expiry): long enough for a phone that comes back after months to be told why it
/// was signed out (会话已结束), short enough that a county's logins do not pile up forever.
pub const SESSION_RETENTION: time::Duration = time::Duration::days(90);

/// Delete sessions past [`SESSION_RETENTION`] (daily, see [`daily_on_lease`]).
async fn purge_sessions(state: AppState) {
    match state
        .store
        .purge_sessions(state.clock.now() - SESSION_RETENTION)
        .await
    {
        Ok(purged) => tracing::info!(purged, "old sessions purged"),
        Err(error) => tracing::warn!(%error, "session purge failed"),
    }
}

/// How often the daily background jobs run.
const DAILY: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);

/// How long a replica holds a daily job's lease: under a day, so the holder renews it at
/// its next run, and a replica that stopped is replaced within two days at most.
const DAILY_LEASE: time::Duration = time::Duration::hours(23);

/// Whether this replica runs the daily job `job_name` now: it holds (or renewed) the job's
/// lease, so replicas sharing a database run it once between them (issue 15 §4). When the
/// lease cannot be read the job is skipped, not run twice; the next day tries again.
async fn leased_to_this_replica(state: &AppState, job_name: &str, replica: &str) -> bool {
    let now = state.clock.now();
    match state
        .store
        .take_job_lease(job_name, replica, now, now + DAILY_LEASE)
        .await
    {
        Ok(true) => true,
        Ok(false) => {
            tracing::info!(job_name, "another replica holds this job's lease; skipped");
            false
        }
        Err(error) => {
            tracing::warn!(%error, job_name, "cannot take this job's lease; skipped");
            false
        }
    }
}

/// The name this replica takes job leases under: kept in its data folder, so a restarted
/// replica keeps its leases and two replicas (each with its own folder) never share one.
fn replica_name(settings: &Settings) -> Result<Arc<str>, ServerError> {
    let path = settings.data_dir.join("replica-id");
    match std::fs::read_to_string(&path) {
        Ok(name) if !name.trim().is_empty() => Ok(Arc::from(name.trim())),
        Ok(_) | Err(_) => {
            let name = uuid::Uuid::now_v7().to_string();
            std::fs::create_dir_all(&settings.data_dir)?;
            std::fs::write(&path, &name)?;
            Ok(Arc::from(name.as_str()))
        }
    }
}

/// Run `job` at start and then once a day, each time only if this replica holds (or
/// renewed) the lease named `job_name`. A job logs its own failures and is retried the next
/// day; serving never depends on it.
async fn daily_on_lease<Job, Run>(
    state: AppState,
    replica: Arc<str>,
    job_name: &'static str,
    job: Job,
) where
    Job: Fn(AppState) -> Run,
    Run: std::future::Future<Output = ()>,
{
    let mut daily = tokio::time::interval(DAILY);
    loop {
        daily.tick().await;
        if leased_to_this_replica(&state, job_name, &replica).await {
            job(state.clone()).await;
        }
    }
}

/// Compact the change log (daily, see [`daily_on_lease`]): superseded entries go, and
/// tombstones older than the horizon expire (phones behind them RESET).
async fn compact_change_log(state: AppState) {
    let horizon =
        state.clock.now() - time::Duration::days(i64::from(state.settings.tombstone_horizon_days));
    match state.store.compact_change_log(horizon).await {
        Ok(report) => tracing::info!(?report, "change log compacted"),
        Err(error) => tracing::warn!(%error, "change log compaction failed"),
    }
}

/// Expire abandoned uploads (daily, see [`daily_on_lease`]): incomplete uploads older than
/// `upload_expiry_hours` go with their staged bytes ([`media::uploads::expire_abandoned`]).
/// Complete uploads and blobs are never collected.
async fn expire_uploads(state: AppState) {
    match media::uploads::expire_abandoned(&state).await {
        Ok(report) => tracing::info!(?report, "abandoned uploads expired"),
        Err(error) => tracing::warn!(%error, "upload expiry failed"),
    }
}

#[cfg(test)]
mod postgres_open_tests {
    //! Opening the server's state on PostgreSQL, against the real server (skipped where
    //! `FIELDSYNC_TEST_DATABASE_URL` is unset).

    use fieldsync_model::codes::Role;

    use super::*;
    use crate::settings::Secret;
    use crate::store::postgres::testing::{fresh_database_url, test_server_url};
    use crate::store::{Area, SeedData, UserRecord};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replica_with_another_key_folder_is_refused_before_it_serves() {
        let Some(server_url) =
            test_server_url("a_replica_with_another_key_folder_is_refused_before_it_serves")
        else {
            return;
        };
        let database_url = fresh_database_url(&server_url).await;
        let folders: Vec<tempfile::TempDir> = (0..5)
            .map(|_| tempfile::tempdir().expect("temp dir"))
            .collect();
        let settings = |data: &tempfile::TempDir, keys: &tempfile::TempDir| Settings {
            data_dir: data.path().to_owned(),
            key_dir: Some(keys.path().to_owned()),
            database_url: Secret(database_url.clone()),
            ..Settings::default()
        };
        let first = open_state(settings(&folders[0], &folders[1]))
            .await
            .expect("the first replica opens an empty database");
        first
            .store
            .load_seed(SeedData {
                areas: vec![Area {
                    area_id: "610625000000".into(),
                    name: "志丹县".into(),
                    level: "county".into(),
                    parent_id: None,
                    centre: None,
                }],
                users: vec![UserRecord {
                    user_id: "admin".into(),
                    username: "admin".into(),
                    display_name: "县级管理员".into(),
                    password_hash: "$argon2id$unused".into(),
                    role: Role::County,
                    area_id: "610625000000".into(),
                    phone: "13800000000".into(),
                    rank: None,
                }],
                ..SeedData::default()
            })
            .await
            .expect("seed");
        open_state(settings(&folders[2], &folders[1]))
            .await
            .expect("a second replica with the same key folder opens");
        let refused = open_state(settings(&folders[3], &folders[4]))
            .await
            .expect_err("a replica with a key folder of its own is refused");
        assert!(
            matches!(&refused, ServerError::Setup(message) if message.contains("key folder")),
            "{refused}"
        );
    }
}
