//! Harness for fieldsync's end-to-end tests: a real server on a real socket (port 0) with a
//! temporary SQLite file and blob folder, seeded with the demo county, plus helpers to talk
//! to it over real gRPC.

pub mod s3;
pub mod scaled_county;

use std::net::SocketAddr;
use std::path::PathBuf;

use fieldsync_proto::v1;
use fieldsync_server::AppState;
use fieldsync_server::settings::Settings;
use tokio::sync::oneshot;
use tonic::transport::Channel;

/// Password of every demo account.
pub use fieldsync_server::demo::DEMO_PASSWORD;

/// A running server; dropping it stops the server and deletes its data.
#[derive(Debug)]
pub struct TestServer {
    pub address: SocketAddr,
    /// Where this server serves `/metrics` (port 0 bound by the harness), unless a test
    /// turned metrics off.
    pub metrics_address: Option<SocketAddr>,
    pub state: AppState,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    data_dir: tempfile::TempDir,
    /// The server's key folder, outside the data folder as in production.
    key_dir: tempfile::TempDir,
}

impl TestServer {
    /// Start a server with the demo county on 127.0.0.1:0.
    pub async fn start() -> Self {
        let data_dir = tempfile::tempdir().expect("temp dir");
        Self::start_in(data_dir, tempfile::tempdir().expect("temp dir")).await
    }

    /// Start a server with the demo county whose wall clock is `clock` (tests that move time:
    /// queue ages, deadlines, month ends).
    pub async fn start_with_clock(
        clock: std::sync::Arc<dyn fieldsync_server::clock::Clock>,
    ) -> Self {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let key_dir = tempfile::tempdir().expect("temp dir");
        Self::start_in_with_clock(data_dir, key_dir, Some(clock)).await
    }

    /// Start a server with the demo county whose settings `configure` changes first (TLS
    /// certificate files, …). [`TestServer::url`] is `https://` when TLS is on.
    pub async fn start_with_settings(configure: impl FnOnce(&mut Settings)) -> Self {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let key_dir = tempfile::tempdir().expect("temp dir");
        Self::start_configured(data_dir, key_dir, None, configure).await
    }

    /// Start a server with the demo county whose store is a new PostgreSQL database of its
    /// own on the server at `server_url` (any database URL on that server; see
    /// `postgres::testing::fresh_database_url`), whatever the environment says: for a
    /// benchmark that compares the PostgreSQL backend with a PostgreSQL anchor in one run and
    /// must not depend on `FIELDSYNC_E2E_DATABASE_URL` being set (or change it at run time).
    pub async fn start_on_postgres(server_url: &str) -> Self {
        let database_url =
            fieldsync_server::store::postgres::testing::fresh_database_url(server_url).await;
        let data_dir = tempfile::tempdir().expect("temp dir");
        let key_dir = tempfile::tempdir().expect("temp dir");
        Self::start_configured(data_dir, key_dir, None, |settings| {
            settings.database_url = fieldsync_server::settings::Secret(database_url);
        })
        .await
    }

    /// Start a server whose store holds only `seed` instead of the demo county (tests that
    /// build a county from scratch, e.g. a county area and its admin before the area
    /// import). Every user's password is [`DEMO_PASSWORD`] unless the seed says otherwise.
    pub async fn start_with_seed(seed: fieldsync_server::store::SeedData) -> Self {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let key_dir = tempfile::tempdir().expect("temp dir");
        Self::start_seeded(data_dir, key_dir, None, |_| {}, Some(seed)).await
    }

    async fn start_in(data_dir: tempfile::TempDir, key_dir: tempfile::TempDir) -> Self {
        Self::start_in_with_clock(data_dir, key_dir, None).await
    }

    async fn start_in_with_clock(
        data_dir: tempfile::TempDir,
        key_dir: tempfile::TempDir,
        clock: Option<std::sync::Arc<dyn fieldsync_server::clock::Clock>>,
    ) -> Self {
        Self::start_configured(data_dir, key_dir, clock, |_| {}).await
    }

    async fn start_configured(
        data_dir: tempfile::TempDir,
        key_dir: tempfile::TempDir,
        clock: Option<std::sync::Arc<dyn fieldsync_server::clock::Clock>>,
        configure: impl FnOnce(&mut Settings),
    ) -> Self {
        Self::start_seeded(data_dir, key_dir, clock, configure, None).await
    }

    /// Start with `seed` loaded into an empty store, or the demo county when `None`.
    async fn start_seeded(
        data_dir: tempfile::TempDir,
        key_dir: tempfile::TempDir,
        clock: Option<std::sync::Arc<dyn fieldsync_server::clock::Clock>>,
        configure: impl FnOnce(&mut Settings),
        seed: Option<fieldsync_server::store::SeedData>,
    ) -> Self {
        let mut settings = Settings {
            data_dir: data_dir.path().to_owned(),
            key_dir: Some(key_dir.path().to_owned()),
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            // Many servers share a test process: each gets its own /metrics port.
            metrics: fieldsync_server::settings::MetricsSettings {
                enabled: true,
                listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            },
            ..Settings::default()
        };
        // With FIELDSYNC_E2E_DATABASE_URL set, every test server keeps its data in a new
        // PostgreSQL database of its own instead of the SQLite file (issue 15: the same
        // end-to-end tests on both backends); a restarted server keeps its database.
        configure(&mut settings);
        if let Ok(server_url) =
            std::env::var(fieldsync_server::store::postgres::testing::E2E_DATABASE_URL_VARIABLE)
            && !server_url.trim().is_empty()
            && settings.database_url.0.is_empty()
        {
            settings.database_url = fieldsync_server::settings::Secret(
                fieldsync_server::store::postgres::testing::fresh_database_url(&server_url).await,
            );
        }
        let clock =
            clock.unwrap_or_else(|| std::sync::Arc::new(fieldsync_server::clock::SystemClock));
        let state = fieldsync_server::open_state_with_clock(settings, clock)
            .await
            .expect("open state");
        match seed {
            Some(seed) => {
                state.store.load_seed(seed).await.expect("load the seed");
            }
            None => {
                fieldsync_server::demo::seed_demo_if_empty(state.store.as_ref())
                    .await
                    .expect("seed demo county");
            }
        }
        // Binding before spawning means connections queue in the kernel until the server
        // accepts them: no readiness polling or sleeps needed.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let metrics_listener =
            fieldsync_server::monitoring::bind_metrics_listener(&state.settings.metrics)
                .await
                .expect("bind the metrics address");
        let metrics_address = metrics_listener
            .as_ref()
            .map(|listener| listener.local_addr().expect("metrics address"));
        let (shutdown, shutdown_signal) = oneshot::channel::<()>();
        let served_state = state.clone();
        let task = tokio::spawn(async move {
            fieldsync_server::serve_with_metrics(listener, metrics_listener, served_state, async {
                let _ = shutdown_signal.await;
            })
            .await
            .expect("server runs");
        });
        Self {
            address,
            metrics_address,
            state,
            shutdown: Some(shutdown),
            task: Some(task),
            data_dir,
            key_dir,
        }
    }

    /// Stop the server and start a new one on the same data folder (a restart).
    pub async fn restart(mut self) -> Self {
        self.stop().await;
        let old_data =
            std::mem::replace(&mut self.data_dir, tempfile::tempdir().expect("temp dir"));
        let old_keys = std::mem::replace(&mut self.key_dir, tempfile::tempdir().expect("temp dir"));
        // On PostgreSQL the data is in the server's database, not its folder: keep it.
        let database_url = self.state.settings.database_url.clone();
        Self::start_configured(old_data, old_keys, None, move |settings| {
            settings.database_url = database_url;
        })
        .await
    }

    /// Stop the server and hand back its data and key folders, so a test can read the files
    /// a stopped server leaves behind (e.g. that the database holds no plain personal data).
    pub async fn stop_keeping_files(mut self) -> (tempfile::TempDir, tempfile::TempDir) {
        self.stop().await;
        let data_dir =
            std::mem::replace(&mut self.data_dir, tempfile::tempdir().expect("temp dir"));
        let key_dir = std::mem::replace(&mut self.key_dir, tempfile::tempdir().expect("temp dir"));
        (data_dir, key_dir)
    }

    async fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.state.settings.tls_enabled() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.address)
    }

    /// How many complete blob files the server holds (content-addressed originals).
    pub fn blob_file_count(&self) -> usize {
        fn walk(folder: &std::path::Path) -> usize {
            std::fs::read_dir(folder)
                .map(|entries| {
                    entries
                        .flatten()
                        .map(|entry| {
                            let path = entry.path();
                            if path.is_dir() { walk(&path) } else { 1 }
                        })
                        .sum()
                })
                .unwrap_or(0)
        }
        walk(&self.data_path().join("blobs").join("sha256"))
    }

    /// Log in as a township supervisor on a fresh device and open a Review client.
    pub async fn review_as(
        &self,
        username: &str,
    ) -> (
        String,
        v1::review_client::ReviewClient<tonic::transport::Channel>,
    ) {
        let token = self
            .login(username, &uuid::Uuid::now_v7().to_string())
            .await;
        (
            token,
            v1::review_client::ReviewClient::new(self.channel().await),
        )
    }

    pub fn data_path(&self) -> PathBuf {
        self.data_dir.path().to_owned()
    }

    /// The server's key folder (outside the data folder).
    pub fn key_path(&self) -> PathBuf {
        self.key_dir.path().to_owned()
    }

    /// A gRPC channel to the server.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .expect("url")
            .connect()
            .await
            .expect("connect")
    }

    /// Log in over gRPC and return the bearer token.
    pub async fn login(&self, username: &str, device_id: &str) -> String {
        let mut auth = v1::auth_client::AuthClient::new(self.channel().await);
        auth.login(v1::LoginRequest {
            username: username.into(),
            password: DEMO_PASSWORD.into(),
            device_id: device_id.into(),
            device_name: "test".into(),
            client: Some(client_info()),
            wants_refresh_token: false,
        })
        .await
        .expect("login")
        .into_inner()
        .token
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// The client info a current app sends.
pub fn client_info() -> v1::ClientInfo {
    v1::ClientInfo {
        schema_version: fieldsync_proto::SCHEMA_VERSION,
        app_version: "test".into(),
    }
}

/// Wrap a message with a bearer token.
pub fn authorized<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii token"),
    );
    request
}

/// A real client core (the phone) in a temporary folder, logged in as `username` against
/// `server`, with its scope pulled. Keep the folder alive as long as the client.
pub async fn phone_of(
    server: &TestServer,
    username: &str,
) -> (fieldsync_client::Client, tempfile::TempDir) {
    let folder = tempfile::tempdir().expect("temp dir");
    let client = fieldsync_client::Client::open(folder.path(), &server.url()).expect("open client");
    client.login(username, DEMO_PASSWORD).await.expect("login");
    client.sync().await.expect("first sync");
    (client, folder)
}

/// Size of the chunks [`MediaUploader`] sends (a phone on a weak link).
pub const UPLOAD_CHUNK: usize = 16 * 1024;

/// One phone session's raw gRPC `Media` calls: start, chunks, completion.
#[derive(Debug)]
pub struct MediaUploader {
    pub media: v1::media_client::MediaClient<Channel>,
    pub token: String,
}

impl MediaUploader {
    /// Log in as `username` on a fresh device of `server`.
    pub async fn login(server: &TestServer, username: &str) -> Self {
        let token = server
            .login(username, &uuid::Uuid::now_v7().to_string())
            .await;
        Self::new(server.channel().await, token)
    }

    /// A session's token against any server's channel (another replica, say).
    pub fn new(channel: Channel, token: String) -> Self {
        Self {
            media: v1::media_client::MediaClient::new(channel),
            token,
        }
    }

    pub async fn start(&mut self, bytes: &[u8]) -> v1::StartUploadResponse {
        use sha2::Digest;
        self.media
            .start_upload(authorized(
                v1::StartUploadRequest {
                    client: Some(client_info()),
                    sha256: hex::encode(sha2::Sha256::digest(bytes)),
                    size_bytes: bytes.len() as u64,
                    mime_type: "image/jpeg".into(),
                },
                &self.token,
            ))
            .await
            .expect("start")
            .into_inner()
    }

    pub async fn put(
        &mut self,
        upload_id: &str,
        offset: u64,
        data: &[u8],
    ) -> Result<u64, tonic::Status> {
        self.media
            .put_chunk(authorized(
                v1::PutChunkRequest {
                    client: Some(client_info()),
                    upload_id: upload_id.into(),
                    offset,
                    data: data.to_vec(),
                    crc32c: crc32c::crc32c(data),
                },
                &self.token,
            ))
            .await
            .map(|response| response.into_inner().committed_offset)
    }

    /// Send `bytes[offset..end]` in [`UPLOAD_CHUNK`]s from the committed `offset`; returns
    /// the committed offset after the last chunk.
    pub async fn send(
        &mut self,
        upload_id: &str,
        bytes: &[u8],
        mut offset: u64,
        end: usize,
    ) -> u64 {
        while (offset as usize) < end {
            let chunk_end = (offset as usize + UPLOAD_CHUNK).min(end);
            offset = self
                .put(upload_id, offset, &bytes[offset as usize..chunk_end])
                .await
                .expect("chunk");
        }
        offset
    }

    /// Send from `offset` to the end in chunks, then complete.
    pub async fn finish(
        &mut self,
        upload_id: &str,
        offset: u64,
        bytes: &[u8],
    ) -> v1::CompleteUploadResponse {
        self.send(upload_id, bytes, offset, bytes.len()).await;
        self.media
            .complete_upload(authorized(
                v1::CompleteUploadRequest {
                    client: Some(client_info()),
                    upload_id: upload_id.into(),
                },
                &self.token,
            ))
            .await
            .expect("complete")
            .into_inner()
    }
}

/// An in-person visit at the household's registered location with one real photo.
pub fn visit_at_home(
    client: &fieldsync_client::Client,
    household_id: &str,
) -> fieldsync_client::NewVisit {
    let household = client
        .household(household_id)
        .expect("read")
        .expect("household on phone");
    let home = household.location.expect("demo households have a location");
    let now = time::OffsetDateTime::now_utc();
    fieldsync_client::NewVisit {
        observed_situation: "户主在家，秋粮已收，两位老人身体尚可，医保已续缴。".into(),
        plan_progress: "养羊项目进展正常，已出栏5只。".into(),
        gps: Some(fieldsync_model::visit::GpsFix {
            lat: home.lat + 0.0003,
            lon: home.lon,
            crs: fieldsync_model::codes::Crs::Wgs84,
            accuracy_m: 8.0,
            provider: Some(fieldsync_model::codes::LocationProvider::Gps),
            is_mock: false,
            fix_time: Some(now - time::Duration::minutes(20)),
        }),
        photo_paths: vec![test_photo("gps_DSCN0010.jpg")],
        ..fieldsync_client::NewVisit::new(
            household_id,
            fieldsync_model::codes::VisitMode::InPerson,
            now - time::Duration::minutes(40),
            now,
        )
    }
}

/// The console's thumbnail of a photo (`/console/photos/{photo_id}/thumb`), checked to be
/// served as a JPEG.
pub async fn console_thumbnail(
    browser: &reqwest::Client,
    server: &TestServer,
    photo_id: &str,
) -> Vec<u8> {
    console_thumbnail_at(browser, &server.url(), photo_id).await
}

/// [`console_thumbnail`] from the console at `server_url` (a server process, a replica).
pub async fn console_thumbnail_at(
    browser: &reqwest::Client,
    server_url: &str,
    photo_id: &str,
) -> Vec<u8> {
    let thumbnail = browser
        .get(format!("{server_url}/console/photos/{photo_id}/thumb"))
        .send()
        .await
        .expect("thumbnail");
    assert_eq!(thumbnail.headers()["content-type"], "image/jpeg");
    thumbnail.bytes().await.expect("bytes").to_vec()
}

/// A URL where nothing listens (the port was bound and released, so connecting is refused):
/// a phone that is offline.
pub async fn unreachable_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    drop(listener);
    format!("http://{address}")
}

/// Push `payloads` over real gRPC as one batch from `device_id`, with seqs from `first_seq`,
/// and insist that the server answered for every one and applied each. Returns the next seq.
pub async fn push_applied(
    server: &TestServer,
    token: &str,
    device_id: &str,
    first_seq: u64,
    payloads: Vec<v1::mutation::Payload>,
) -> u64 {
    push_applied_on(
        server.channel().await,
        token,
        device_id,
        first_seq,
        payloads,
    )
    .await
}

/// [`push_applied`] over `channel` (a server process, a replica).
pub async fn push_applied_on(
    channel: Channel,
    token: &str,
    device_id: &str,
    first_seq: u64,
    payloads: Vec<v1::mutation::Payload>,
) -> u64 {
    let sent = payloads.len();
    let response = push_answered(channel, token, device_id, first_seq, payloads).await;
    for result in &response.results {
        assert_eq!(
            result.outcome,
            v1::MutationOutcome::Applied as i32,
            "seq {} was not applied: {} {}",
            result.seq,
            result.reject_code,
            result.reject_message
        );
    }
    first_seq + sent as u64
}

/// Push `payloads` over real gRPC as one batch from `device_id`, with seqs from
/// `first_seq`, and return the server's answer whatever each outcome (one result per
/// mutation is checked).
pub async fn push_answered(
    channel: Channel,
    token: &str,
    device_id: &str,
    first_seq: u64,
    payloads: Vec<v1::mutation::Payload>,
) -> v1::PushResponse {
    let sent = payloads.len();
    let mutations: Vec<v1::Mutation> = payloads
        .into_iter()
        .zip(first_seq..)
        .map(|(payload, seq)| v1::Mutation {
            seq,
            mutation_id: uuid::Uuid::now_v7().to_string(),
            hlc: 1,
            payload: Some(payload),
        })
        .collect();
    let response = v1::sync_client::SyncClient::new(channel)
        .push(authorized(
            v1::PushRequest {
                device_id: device_id.into(),
                batch_id: uuid::Uuid::now_v7().to_string(),
                first_seq,
                mutations,
                client: Some(client_info()),
                ..Default::default()
            },
            token,
        ))
        .await
        .expect("push")
        .into_inner();
    assert_eq!(response.results.len(), sent, "one result per mutation");
    response
}

/// A console import job (`url` ends in its job id) once it stops running. The server holds
/// each `?wait=true` request until the job stops or for at most a minute, so a long apply
/// (5,000 households on a busy PostgreSQL) takes more than one wait; ten are allowed.
pub async fn settled_import_job(browser: &reqwest::Client, url: &str) -> serde_json::Value {
    let mut job = serde_json::Value::Null;
    for _ in 0..10 {
        job = browser
            .get(format!("{url}?wait=true"))
            .send()
            .await
            .expect("job")
            .json()
            .await
            .expect("json");
        if !matches!(
            job["phase"].as_str(),
            Some("reading" | "validating" | "comparing" | "applying")
        ) {
            return job;
        }
    }
    panic!("still running after ten waits: {job}")
}

/// Pull the caller's whole scope from an empty cursor.
pub async fn pull_all(
    channel: Channel,
    token: &str,
) -> (Vec<v1::Household>, Vec<v1::VisitStatus>, String) {
    let mut sync = v1::sync_client::SyncClient::new(channel);
    let mut stream = sync
        .pull(authorized(
            v1::PullRequest {
                cursor: String::new(),
                client: Some(client_info()),
                ..Default::default()
            },
            token,
        ))
        .await
        .expect("pull")
        .into_inner();
    let (mut households, mut statuses) = (Vec::new(), Vec::new());
    while let Some(frame) = stream.message().await.expect("frame") {
        match frame.frame {
            Some(v1::pull_response::Frame::Page(page)) => {
                households.extend(page.households);
                statuses.extend(page.visit_statuses);
            }
            Some(v1::pull_response::Frame::Checkpoint(checkpoint)) => {
                return (households, statuses, checkpoint.cursor);
            }
            other => panic!("unexpected frame {other:?}"),
        }
    }
    panic!("pull ended without a checkpoint")
}

/// A console session: a cookie-keeping HTTP client (no redirects followed) logged in through
/// the console's login form, which sends the session's CSRF token in `X-CSRF-Token` on every
/// request as a script would, so tests can post forms and JSON alike.
pub async fn console_login(server: &TestServer, username: &str) -> reqwest::Client {
    console_session(server, username).await.with_token_header()
}

/// A logged-in console session whose client does NOT send the CSRF token by itself (tests of
/// the CSRF check choose what to send), and the token read from a console page.
#[derive(Debug)]
pub struct ConsoleSession {
    /// Cookie-keeping client, no redirects followed, no token header.
    pub http: reqwest::Client,
    /// The session's CSRF token, from `<meta name="csrf-token">`.
    pub csrf_token: String,
    jar: std::sync::Arc<reqwest::cookie::Jar>,
}

impl ConsoleSession {
    /// A client on the same cookies that sends `X-CSRF-Token` with every request.
    pub fn with_token_header(&self) -> reqwest::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            "x-csrf-token",
            self.csrf_token.parse().expect("token is a header value"),
        );
        reqwest::Client::builder()
            .cookie_provider(self.jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .default_headers(headers)
            .build()
            .expect("http client")
    }
}

/// Log in through the console's login form and read the session's CSRF token from a page.
pub async fn console_session(server: &TestServer, username: &str) -> ConsoleSession {
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let http = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client");
    let response = http
        .post(format!("{}/console/login", server.url()))
        .form(&[("username", username), ("password", DEMO_PASSWORD)])
        .send()
        .await
        .expect("login post");
    assert_eq!(
        response.status(),
        reqwest::StatusCode::SEE_OTHER,
        "login redirects to the queue"
    );
    let page = http
        .get(format!("{}/console/login", server.url()))
        .send()
        .await
        .expect("a console page")
        .text()
        .await
        .expect("page text");
    let csrf_token = csrf_token_in(&page).expect("a logged-in page carries the CSRF token");
    ConsoleSession {
        http,
        csrf_token,
        jar,
    }
}

/// The CSRF token in a console page's `<meta name="csrf-token" content="...">`.
pub fn csrf_token_in(page: &str) -> Option<String> {
    let marker = r#"name="csrf-token" content=""#;
    let start = page.find(marker)? + marker.len();
    let length = page[start..].find('"')?;
    Some(page[start..start + length].to_owned())
}

/// Absolute path of a test photo in the repository's `testdata/photos` (see its README).
pub fn test_photo(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/photos")
        .join(name)
}

/// A well-formed in-person visit on the wire for `household_id`: checked in 45 minutes ago,
/// checked out now, no GPS fix or photos (tests add what they need with `..`).
pub fn wire_in_person_visit(household_id: &str) -> v1::Visit {
    let now = time::OffsetDateTime::now_utc();
    let wire_now = fieldsync_proto::convert::instant_to_wire(now);
    v1::Visit {
        visit_id: uuid::Uuid::now_v7().to_string(),
        revision: 1,
        household_id: household_id.into(),
        mode: v1::VisitMode::InPerson as i32,
        r#type: v1::VisitType::Routine as i32,
        checkin_at: Some(fieldsync_proto::convert::instant_to_wire(
            now - time::Duration::minutes(45),
        )),
        checkout_at: Some(wire_now),
        observed_situation: "户主在家，秋粮已收，家中老人身体尚可。".into(),
        recorded_at_device: Some(wire_now),
        ..Default::default()
    }
}

/// The roster import template's column headers, in template order (the model's
/// `roster::Column::ALL`), for tests that write a roster file.
pub fn roster_headers() -> Vec<&'static str> {
    fieldsync_model::roster::Column::ALL
        .iter()
        .map(|column| column.header_zh())
        .collect()
}

/// A command for `binary` without the test's own `FIELDSYNC_*` variables: flags set
/// everything a test cares about, and settings from the environment the tests run in (CI
/// sets `FIELDSYNC_REQUIRE_BROWSER`, `FIELDSYNC_TEST_DATABASE_URL`) would only make the run
/// depend on where it happens, and an unknown one would add a warning to the output.
pub fn command_without_fieldsync_environment(binary: &std::path::Path) -> std::process::Command {
    let mut command = std::process::Command::new(binary);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("FIELDSYNC_") {
            command.env_remove(name);
        }
    }
    command
}

/// The `main` of a benchmark binary: `cargo bench` passes `--bench` and the benchmark runs
/// on a multi-threaded runtime; run without it (as `cargo test --all-targets` does) it
/// says it was skipped and exits at once, so a test run never spends minutes on it.
pub fn bench_main<F: std::future::Future>(name: &str, bench: impl FnOnce() -> F) {
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("{name}: benchmark skipped (run it with `cargo bench`)");
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(bench());
}

/// Path of the real `fieldsync-server` binary in this test's profile folder
/// (`target/<profile>/fieldsync-server`), made up to date once per test process.
///
/// This crate depends on `fieldsync-server` only as a library, so `cargo test -p
/// fieldsync-tests` does not build the binary (and `CARGO_BIN_EXE_*` exists only for a
/// package's own binaries). `cargo test --workspace` does build it; when the binary is
/// missing or older than any workspace source file, the first call runs `cargo build -p
/// fieldsync-server --bin fieldsync-server` for the same profile, so a stale binary is never
/// tested. (The check avoids that nested build when it is not needed: with `-p`, cargo unifies
/// features differently from a workspace build and would compile part of the tree again.)
pub fn server_binary() -> PathBuf {
    static BINARY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    workspace_binary(&BINARY, "fieldsync-server", "fieldsync-server")
}

/// Path of the real `fieldsync` field-app CLI (package `fieldsync-client`), made up to date
/// once per test process exactly like [`server_binary`].
pub fn cli_binary() -> PathBuf {
    static BINARY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    workspace_binary(&BINARY, "fieldsync-client", "fieldsync")
}

fn workspace_binary(
    cell: &'static std::sync::OnceLock<PathBuf>,
    package: &str,
    name: &str,
) -> PathBuf {
    cell.get_or_init(|| {
        let file_name = format!("{name}{}", std::env::consts::EXE_SUFFIX);
        let mut built = workspace_artifacts(package, &["--bin", name], &[file_name]);
        built.remove(0)
    })
    .clone()
}

/// The phone bindings' shared library (`libfieldsync_client_ffi.so` on Linux) and the
/// workspace's `uniffi-bindgen` binary, made up to date once per test process exactly like
/// [`server_binary`]. The Python binding tests load the one and generate with the other.
pub fn client_ffi_artifacts() -> (PathBuf, PathBuf) {
    static ARTIFACTS: std::sync::OnceLock<(PathBuf, PathBuf)> = std::sync::OnceLock::new();
    ARTIFACTS
        .get_or_init(|| {
            let library = format!(
                "{}fieldsync_client_ffi{}",
                std::env::consts::DLL_PREFIX,
                std::env::consts::DLL_SUFFIX
            );
            let bindgen = format!("uniffi-bindgen{}", std::env::consts::EXE_SUFFIX);
            let mut built = workspace_artifacts(
                "fieldsync-client-ffi",
                &["--lib", "--bin", "uniffi-bindgen"],
                &[library, bindgen],
            );
            let bindgen = built.remove(1);
            (built.remove(0), bindgen)
        })
        .clone()
}

/// Paths of `file_names` in this test's profile folder (`target/<profile>/`), built with
/// `cargo build -p package target_args` first when any is missing or older than a workspace
/// source file.
fn workspace_artifacts(package: &str, target_args: &[&str], file_names: &[String]) -> Vec<PathBuf> {
    // Test binaries live in target/<profile>/deps/.
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("test executable inside target/<profile>/deps")
        .to_owned();
    let artifacts: Vec<PathBuf> = file_names
        .iter()
        .map(|file_name| profile_dir.join(file_name))
        .collect();
    let profile = match profile_dir.file_name().and_then(|name| name.to_str()) {
        Some("debug") | None => "dev".to_owned(),
        Some(other) => other.to_owned(),
    };
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root above tests/");
    let oldest_built = artifacts
        .iter()
        .map(|artifact| std::fs::metadata(artifact).and_then(|metadata| metadata.modified()))
        .collect::<Result<Vec<_>, _>>()
        .ok()
        .and_then(|times| times.into_iter().min());
    if let Some(built_at) = oldest_built
        && newest_source_change(workspace).is_some_and(|changed| changed <= built_at)
    {
        return artifacts;
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = std::process::Command::new(cargo)
        .args(["build", "--quiet", "-p", package])
        .args(target_args)
        .args(["--profile", &profile])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo build for a workspace artifact");
    assert!(
        output.status.success(),
        "cargo build -p {package} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for artifact in &artifacts {
        assert!(
            artifact.is_file(),
            "{} not found after building it",
            artifact.display()
        );
    }
    artifacts
}

/// Latest modification time of the workspace's sources (every file outside `target/`, hidden
/// folders and the `tests/` crate, which the server does not depend on).
fn newest_source_change(workspace: &std::path::Path) -> Option<std::time::SystemTime> {
    fn walk(folder: &std::path::Path, newest: &mut Option<std::time::SystemTime>) {
        let Ok(entries) = std::fs::read_dir(folder) else {
            return;
        };
        for entry in entries.flatten() {
            let Ok(file_type) = entry.file_type() else {
                continue;
            };
            if file_type.is_dir() {
                walk(&entry.path(), newest);
            } else if let Ok(modified) = entry.metadata().and_then(|metadata| metadata.modified()) {
                *newest = (*newest).max(Some(modified));
            }
        }
    }
    let mut newest = None;
    for entry in std::fs::read_dir(workspace).ok()?.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name == "target" || name == "tests" || name.starts_with('.') {
            continue;
        }
        if entry.file_type().ok()?.is_dir() {
            walk(&entry.path(), &mut newest);
        } else {
            newest = newest.max(entry.metadata().and_then(|m| m.modified()).ok());
        }
    }
    newest
}

/// The real `fieldsync-server` binary running as a child process on 127.0.0.1:0.
///
/// Readiness is the `控制台 console: http://ADDR/` line the binary prints once its listener
/// is bound and its storage is open; connections made after that queue in the kernel until
/// the server accepts them. Its output (stdout and stderr) is drained in background threads
/// so a chatty server never blocks on a full pipe; the last lines are kept for diagnostics.
/// Dropping it kills the process (SIGKILL) and reaps it.
#[derive(Debug)]
pub struct ServerProcess {
    pub address: SocketAddr,
    child: std::process::Child,
    output: std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<String>>>,
}

/// How many output lines a [`ServerProcess`] keeps for diagnostics.
const KEPT_OUTPUT_LINES: usize = 200;

impl ServerProcess {
    /// Start the binary on `data_dir`; with `demo`, it seeds the demo county if the folder is
    /// empty. Returns once the server has printed its address.
    pub async fn start(data_dir: &std::path::Path, demo: bool) -> Self {
        Self::start_binary(&server_binary(), data_dir, demo, &[]).await
    }

    /// Like [`ServerProcess::start`] with a given server binary (the login flood benchmark
    /// runs a release build) and `FIELDSYNC_*` settings given explicitly (it raises the
    /// per-address throttle this way).
    pub async fn start_binary(
        binary: &std::path::Path,
        data_dir: &std::path::Path,
        demo: bool,
        environment: &[(&str, &str)],
    ) -> Self {
        use std::io::BufRead;
        use std::process::Stdio;

        let mut command = command_without_fieldsync_environment(binary);
        command
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Several servers may run at once: /metrics on a free port unless the caller says.
        command.env("FIELDSYNC_METRICS__LISTEN_ADDR", "127.0.0.1:0");
        command.envs(environment.iter().copied());
        if demo {
            command.arg("--demo");
        }
        let mut child = command.spawn().expect("spawn fieldsync-server");
        let output = std::sync::Arc::new(std::sync::Mutex::new(
            std::collections::VecDeque::with_capacity(KEPT_OUTPUT_LINES),
        ));
        let keep = |output: &std::sync::Mutex<std::collections::VecDeque<String>>, line: String| {
            let mut kept = output
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if kept.len() == KEPT_OUTPUT_LINES {
                kept.pop_front();
            }
            kept.push_back(line);
        };

        let (address_sender, address_receiver) = oneshot::channel::<SocketAddr>();
        let stdout = child.stdout.take().expect("piped stdout");
        let stdout_output = output.clone();
        std::thread::spawn(move || {
            let mut address_sender = Some(address_sender);
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(address) = console_address(&line)
                    && let Some(sender) = address_sender.take()
                {
                    let _ = sender.send(address);
                }
                keep(&stdout_output, line);
            }
            // Dropping an unused sender tells the waiting test that the server exited.
        });
        let stderr = child.stderr.take().expect("piped stderr");
        let stderr_output = output.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                keep(&stderr_output, line);
            }
        });

        // Not a readiness poll: a guard so a wedged start fails instead of hanging CI.
        let address =
            match tokio::time::timeout(std::time::Duration::from_secs(120), address_receiver).await
            {
                Ok(Ok(address)) => address,
                outcome => {
                    let _ = child.kill();
                    let status = child.wait();
                    let kept = output
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    panic!(
                        "fieldsync-server did not print its address ({}; exit {status:?}); \
                         output:\n{}",
                        if outcome.is_err() {
                            "timed out"
                        } else {
                            "exited"
                        },
                        kept.iter().cloned().collect::<Vec<_>>().join("\n")
                    );
                }
            };
        Self {
            address,
            child,
            output,
        }
    }

    /// Operating-system process id of the server.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// A gRPC channel to the server.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .expect("url")
            .connect()
            .await
            .expect("connect")
    }

    /// Log in over gRPC and return the bearer token.
    pub async fn login(&self, username: &str, device_id: &str) -> String {
        let mut auth = v1::auth_client::AuthClient::new(self.channel().await);
        auth.login(v1::LoginRequest {
            username: username.into(),
            password: DEMO_PASSWORD.into(),
            device_id: device_id.into(),
            device_name: "test".into(),
            client: Some(client_info()),
            wants_refresh_token: false,
        })
        .await
        .unwrap_or_else(|status| {
            panic!(
                "login {username}: {status:?}\nserver output:\n{}",
                self.recent_output()
            )
        })
        .into_inner()
        .token
    }

    /// `kill -9` the server (SIGKILL on Unix: no shutdown code runs) and reap it. Blocking;
    /// returns the server's last output lines.
    pub fn kill(mut self) -> String {
        self.kill_and_reap();
        self.recent_output()
    }

    /// The last lines the server printed.
    pub fn recent_output(&self) -> String {
        let kept = self
            .output
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        kept.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    fn kill_and_reap(&mut self) {
        // An error here means the process already exited; wait() still reaps it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill_and_reap();
    }
}

/// The address in the binary's `控制台 console: http(s)://ADDR/ …` line.
fn console_address(line: &str) -> Option<SocketAddr> {
    let rest = line.split_once("控制台 console: ")?.1;
    let rest = rest
        .strip_prefix("https://")
        .or_else(|| rest.strip_prefix("http://"))?;
    rest.split('/').next()?.parse().ok()
}

/// A `multipart/form-data` body with one `file` part, as a browser posts an upload form
/// (reqwest's multipart feature is off): the content type and the body.
pub fn multipart_file_body(file_name: &str, bytes: &[u8]) -> (String, Vec<u8>) {
    let boundary = "fieldsync-upload-boundary-7d1f";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// The one-time passwords on a console page that shows them (`data-one-time-password`).
pub fn one_time_passwords_in(page: &str) -> Vec<String> {
    page.split("data-one-time-password>")
        .skip(1)
        .map(|rest| rest[..rest.find('<').expect("end of the password")].to_owned())
        .collect()
}

/// A console browser of the server at `url`, logged in as `username` with `password`: a
/// cookie client (no redirects followed) that sends the session's CSRF token on every
/// request. When the console sends the user to 修改密码 first (a one-time password), the
/// password is changed to `new_password`.
pub async fn console_login_with(
    url: &str,
    username: &str,
    password: &str,
    new_password: &str,
) -> reqwest::Client {
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let plain = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client");
    let login = plain
        .post(format!("{url}/console/login"))
        .form(&[("username", username), ("password", password)])
        .send()
        .await
        .expect("login");
    assert_eq!(
        login.status(),
        reqwest::StatusCode::SEE_OTHER,
        "{username} logs in"
    );
    let must_change = login.headers()["location"] == "/console/password";
    let page = plain
        .get(format!("{url}/console/password"))
        .send()
        .await
        .expect("password page")
        .text()
        .await
        .expect("page text");
    let token = csrf_token_in(&page).expect("a logged-in page carries the CSRF token");
    if must_change {
        let changed = plain
            .post(format!("{url}/console/password"))
            .header("x-csrf-token", &token)
            .form(&[
                ("old_password", password),
                ("new_password", new_password),
                ("confirm_password", new_password),
            ])
            .send()
            .await
            .expect("password change");
        assert_eq!(
            changed.status(),
            reqwest::StatusCode::OK,
            "{username} changes the one-time password"
        );
    }
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        "x-csrf-token",
        token.parse().expect("token is a header value"),
    );
    reqwest::Client::builder()
        .cookie_provider(jar)
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(headers)
        .build()
        .expect("http client")
}
