//! Operations (issue 12 §4) over real sockets: an online backup taken while several phones
//! push and upload, restored into a new folder and served again; `/metrics` scraped after
//! real calls; the request id on gRPC and HTTP answers; readiness turning NOT_SERVING when
//! shutdown begins.
//!
//! The metrics recorder is one per process and every server of this test binary records
//! into it, so metric checks compare a series before and after (and allow more: other
//! tests may push at the same time).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use fieldsync_proto::v1;
use fieldsync_server::AppState;
use fieldsync_server::settings::{MetricsSettings, Settings};
use fieldsync_tests::{
    ServerProcess, TestServer, authorized, client_info, command_without_fieldsync_environment,
    push_applied, server_binary, wire_in_person_visit,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::Digest;
use tokio::sync::{Barrier, watch};

const CHUNK: usize = 64 * 1024;

/// Cadres pushing at once during the backup.
const PHONES: [&str; 3] = ["cadre01", "cadre02", "cadre03"];
/// Visits (each with one photo) every phone has acknowledged before the backup begins.
const VISITS_BEFORE_BACKUP: usize = 3;

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A small real JPEG with a seeded pattern and `comment` inside, so every call with another
/// comment gives another file (another blob).
fn jpeg(seed: u64, comment: &str) -> Vec<u8> {
    let (width, height) = (64u16, 48u16);
    let mut rng = StdRng::seed_from_u64(seed);
    let blocks: Vec<[u8; 3]> = (0..32).map(|_| rng.random()).collect();
    let mut pixels = Vec::with_capacity(usize::from(width) * usize::from(height) * 3);
    for y in 0..height {
        for x in 0..width {
            pixels.extend_from_slice(&blocks[usize::from(y / 12) * 8 + usize::from(x / 8)]);
        }
    }
    let mut encoded = Vec::new();
    jpeg_encoder::Encoder::new(&mut encoded, 90)
        .encode(&pixels, width, height, jpeg_encoder::ColorType::Rgb)
        .expect("encode JPEG");
    let mut bytes = encoded[..2].to_vec();
    bytes.extend_from_slice(&[0xFF, 0xFE]);
    bytes.extend_from_slice(&((comment.len() + 2) as u16).to_be_bytes());
    bytes.extend_from_slice(comment.as_bytes());
    bytes.extend_from_slice(&encoded[2..]);
    bytes
}

/// Upload `bytes` over gRPC Media and complete it; returns the start answer's `complete`
/// (true when the server already had the blob).
async fn upload(server_url: &str, token: &str, bytes: &[u8]) -> bool {
    let channel = tonic::transport::Channel::from_shared(server_url.to_owned())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut media = v1::media_client::MediaClient::new(channel);
    let started = media
        .start_upload(authorized(
            v1::StartUploadRequest {
                client: Some(client_info()),
                sha256: sha256_hex(bytes),
                size_bytes: bytes.len() as u64,
                mime_type: "image/jpeg".into(),
            },
            token,
        ))
        .await
        .expect("start")
        .into_inner();
    if started.complete {
        return true;
    }
    let mut offset = started.committed_offset as usize;
    while offset < bytes.len() {
        let end = (offset + CHUNK).min(bytes.len());
        let chunk = &bytes[offset..end];
        offset = media
            .put_chunk(authorized(
                v1::PutChunkRequest {
                    client: Some(client_info()),
                    upload_id: started.upload_id.clone(),
                    offset: offset as u64,
                    data: chunk.to_vec(),
                    crc32c: crc32c::crc32c(chunk),
                },
                token,
            ))
            .await
            .expect("chunk")
            .into_inner()
            .committed_offset as usize;
    }
    media
        .complete_upload(authorized(
            v1::CompleteUploadRequest {
                client: Some(client_info()),
                upload_id: started.upload_id,
            },
            token,
        ))
        .await
        .expect("complete");
    false
}

/// What one phone had acknowledged: visit ids and photo blobs, in order.
#[derive(Debug, Default, Clone)]
struct Acknowledged {
    visits: Vec<String>,
    photos: Vec<String>,
}

/// One phone: push a visit with a photo record, then upload the photo; repeat. After
/// [`VISITS_BEFORE_BACKUP`] it waits at `ready` (so the test knows what was acknowledged
/// before the backup began), then goes on until `stop` turns true.
async fn phone(
    server: Arc<TestServer>,
    index: usize,
    username: &'static str,
    ready: Arc<Barrier>,
    mut stop: watch::Receiver<bool>,
) -> (Acknowledged, Acknowledged) {
    let device_id = uuid::Uuid::now_v7().to_string();
    let token = server.login(username, &device_id).await;
    let (households, _, _) = fieldsync_tests::pull_all(server.channel().await, &token).await;
    assert!(!households.is_empty(), "{username} has households");
    let mut next_seq = 1;
    let (mut before, mut after) = (Acknowledged::default(), Acknowledged::default());
    for round in 0.. {
        if round == VISITS_BEFORE_BACKUP {
            ready.wait().await;
        }
        if round >= VISITS_BEFORE_BACKUP && *stop.borrow_and_update() {
            break;
        }
        let household = &households[round % households.len()];
        let bytes = jpeg(index as u64, &format!("{username} visit {round}"));
        let mut visit = wire_in_person_visit(&household.household_id);
        let photo = v1::PhotoRecord {
            photo_id: uuid::Uuid::now_v7().to_string(),
            visit_id: visit.visit_id.clone(),
            sha256: sha256_hex(&bytes),
            size_bytes: bytes.len() as u64,
            mime_type: "image/jpeg".into(),
            in_app_camera: true,
            ..Default::default()
        };
        visit.photo_ids = vec![photo.photo_id.clone()];
        next_seq = push_applied(
            &server,
            &token,
            &device_id,
            next_seq,
            vec![
                v1::mutation::Payload::SubmitVisit(visit.clone()),
                v1::mutation::Payload::AddPhoto(photo.clone()),
            ],
        )
        .await;
        upload(&server.url(), &token, &bytes).await;
        let acknowledged = if round < VISITS_BEFORE_BACKUP {
            &mut before
        } else {
            &mut after
        };
        acknowledged.visits.push(visit.visit_id);
        acknowledged.photos.push(photo.sha256);
    }
    (before, after)
}

fn settings_for(data_dir: &Path, key_dir: &Path) -> Settings {
    Settings {
        data_dir: data_dir.to_owned(),
        key_dir: Some(key_dir.to_owned()),
        metrics: MetricsSettings {
            enabled: false,
            ..MetricsSettings::default()
        },
        ..Settings::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_during_pushes_restores_every_acknowledged_visit_and_photo() {
    let server = Arc::new(TestServer::start().await);
    let ready = Arc::new(Barrier::new(PHONES.len() + 1));
    let (stop, stopped) = watch::channel(false);
    let phones: Vec<_> = PHONES
        .iter()
        .enumerate()
        .map(|(index, username)| {
            tokio::spawn(phone(
                server.clone(),
                index,
                username,
                ready.clone(),
                stopped.clone(),
            ))
        })
        .collect();
    // Every phone has its first visits and photos acknowledged; they keep pushing while the
    // backup runs.
    ready.wait().await;
    let root = tempfile::tempdir().expect("temp dir");
    let backup_dir = root.path().join("backup");
    let live_settings = server.state.settings.as_ref().clone();
    let report = {
        let backup_dir = backup_dir.clone();
        tokio::task::spawn_blocking(move || {
            fieldsync_server::backup::backup(
                &live_settings,
                &backup_dir,
                fieldsync_server::backup::BackupOptions { with_keys: true },
            )
        })
        .await
        .expect("backup thread")
        .expect("backup")
    };
    stop.send(true).expect("phones listening");
    let mut before = Acknowledged::default();
    let mut during_or_after = 0;
    for phone in phones {
        let (acknowledged_before, acknowledged_after) = phone.await.expect("phone");
        before.visits.extend(acknowledged_before.visits);
        before.photos.extend(acknowledged_before.photos);
        during_or_after += acknowledged_after.visits.len();
    }
    eprintln!(
        "backup: {} photos, {} uploads rewound; {} visits acknowledged during or after it",
        report.blobs_copied, report.uploads_rewound, during_or_after
    );
    assert!(report.missing_blobs.is_empty(), "{report:?}");

    // A live folder is never a restore target.
    let error = fieldsync_server::backup::restore(&live_settings_of(&server), &backup_dir)
        .expect_err("the live folder is refused");
    assert!(
        matches!(
            error,
            fieldsync_server::backup::RestoreError::DataFolderNotEmpty(_)
        ),
        "{error}"
    );
    assert!(error.to_string().contains("not empty"), "{error}");

    // Restore into a new folder with a new key folder, then serve it.
    let restored_settings = settings_for(
        &root.path().join("restored"),
        &root.path().join("restored-keys"),
    );
    let restored = {
        let (settings, backup_dir) = (restored_settings.clone(), backup_dir.clone());
        tokio::task::spawn_blocking(move || {
            fieldsync_server::backup::restore(&settings, &backup_dir)
        })
        .await
        .expect("restore thread")
        .expect("restore")
    };
    assert!(restored.keys_restored);
    {
        let database = rusqlite::Connection::open_with_flags(
            restored_settings.sqlite_path(),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open the restored file");
        let integrity: String = database
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .expect("integrity_check");
        assert_eq!(integrity, "ok");
    }
    let state = AppState::open(restored_settings).expect("open the restored folder");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let (shutdown, shutdown_signal) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(fieldsync_server::serve_with_metrics(
        listener,
        None,
        state.clone(),
        async {
            let _ = shutdown_signal.await;
        },
    ));

    assert_eq!(before.visits.len(), PHONES.len() * VISITS_BEFORE_BACKUP);
    for visit_id in &before.visits {
        assert!(
            state
                .store
                .visit_detail(visit_id)
                .await
                .expect("read")
                .is_some(),
            "acknowledged visit {visit_id} is missing after the restore"
        );
    }
    let distinct_photos: BTreeSet<&String> = before.photos.iter().collect();
    assert_eq!(distinct_photos.len(), before.photos.len());
    for sha256 in &before.photos {
        assert!(state.store.blob_exists(sha256).await.expect("read"));
        let bytes = state.blobs.read(sha256).await.expect("the photo file");
        assert_eq!(
            &sha256_hex(&bytes),
            sha256,
            "restored bytes are the photo's"
        );
    }
    // And over real gRPC: the restored server knows the first photo and asks for no bytes.
    let token_device = uuid::Uuid::now_v7().to_string();
    let token = {
        let channel = tonic::transport::Channel::from_shared(url.clone())
            .expect("url")
            .connect()
            .await
            .expect("connect to the restored server");
        v1::auth_client::AuthClient::new(channel)
            .login(v1::LoginRequest {
                username: PHONES[0].into(),
                password: fieldsync_tests::DEMO_PASSWORD.into(),
                device_id: token_device,
                device_name: "restored".into(),
                client: Some(client_info()),
                wants_refresh_token: false,
            })
            .await
            .expect("login on the restored server")
            .into_inner()
            .token
    };
    let first_photo = jpeg(0, &format!("{} visit 0", PHONES[0]));
    assert!(
        upload(&url, &token, &first_photo).await,
        "the restored server already holds the photo"
    );
    let _ = shutdown.send(());
    serving.await.expect("server task").expect("server runs");
}

/// The settings of a running test server (its data folder is live).
fn live_settings_of(server: &TestServer) -> Settings {
    server.state.settings.as_ref().clone()
}

/// The value of the series `name{labels}` in a Prometheus text page, 0 when absent.
fn series_value(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse::<f64>().ok())?
        })
        .unwrap_or(0.0)
}

async fn scrape(server: &TestServer) -> String {
    let address = server.metrics_address.expect("metrics are on");
    let response = reqwest::get(format!("http://{address}/metrics"))
        .await
        .expect("scrape /metrics");
    assert_eq!(response.status(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    response.text().await.expect("page")
}

#[tokio::test]
async fn metrics_after_real_calls_count_rpcs_pushes_uploads_flags_and_queues() {
    let server = TestServer::start().await;
    let push_ok = r#"fieldsync_grpc_requests_total{method="fieldsync.v1.Sync/Push",code="OK"}"#;
    let push_invalid =
        r#"fieldsync_grpc_requests_total{method="fieldsync.v1.Sync/Push",code="INVALID_ARGUMENT"}"#;
    let committed = r#"fieldsync_pushes_total{outcome="committed"}"#;
    let refused = r#"fieldsync_pushes_total{outcome="refused"}"#;
    let applied = r#"fieldsync_mutations_total{outcome="applied"}"#;
    let upload_bytes = "fieldsync_upload_bytes_total";
    let gps_missing = r#"fieldsync_evidence_flags_total{flag="gps_missing"}"#;
    let before = scrape(&server).await;

    let device_id = uuid::Uuid::now_v7().to_string();
    let token = server.login("cadre01", &device_id).await;
    let (households, _, _) = fieldsync_tests::pull_all(server.channel().await, &token).await;
    let bytes = jpeg(7, "metrics test photo");
    let mut visit = wire_in_person_visit(&households[0].household_id);
    let photo = v1::PhotoRecord {
        photo_id: uuid::Uuid::now_v7().to_string(),
        visit_id: visit.visit_id.clone(),
        sha256: sha256_hex(&bytes),
        size_bytes: bytes.len() as u64,
        mime_type: "image/jpeg".into(),
        in_app_camera: true,
        ..Default::default()
    };
    visit.photo_ids = vec![photo.photo_id.clone()];
    // A visit without a GPS fix: flagged gps_missing, never refused.
    let next_seq = push_applied(
        &server,
        &token,
        &device_id,
        1,
        vec![
            v1::mutation::Payload::SubmitVisit(visit),
            v1::mutation::Payload::AddPhoto(photo),
        ],
    )
    .await;
    upload(&server.url(), &token, &bytes).await;
    // A malformed push: refused as a whole with INVALID_ARGUMENT.
    let refusal = v1::sync_client::SyncClient::new(server.channel().await)
        .push(authorized(
            v1::PushRequest {
                device_id: device_id.clone(),
                batch_id: uuid::Uuid::now_v7().to_string(),
                first_seq: next_seq,
                mutations: Vec::new(),
                client: Some(client_info()),
                ..Default::default()
            },
            &token,
        ))
        .await
        .expect_err("an empty push is refused");
    assert_eq!(refusal.code(), tonic::Code::InvalidArgument);

    let after = scrape(&server).await;
    for (series, at_least) in [
        (push_ok, 1.0),
        (push_invalid, 1.0),
        (committed, 1.0),
        (refused, 1.0),
        (applied, 2.0),
        (upload_bytes, bytes.len() as f64),
        (gps_missing, 1.0),
    ] {
        let grown = series_value(&after, series) - series_value(&before, series);
        assert!(
            grown >= at_least,
            "{series} grew by {grown}, expected at least {at_least}\n{after}"
        );
    }
    // Latency histograms by method and code, and the store's gauges and lock wait.
    for present in [
        r#"fieldsync_grpc_request_duration_seconds_bucket{method="fieldsync.v1.Sync/Push",code="OK",le="0.1"}"#,
        r#"fieldsync_grpc_request_duration_seconds_count{method="fieldsync.v1.Media/CompleteUpload",code="OK"}"#,
        "fieldsync_db_write_lock_wait_seconds_count",
        "fieldsync_db_blocking_calls_in_flight",
        "fieldsync_runtime_alive_tasks",
        "fieldsync_runtime_global_queue_depth",
        "fieldsync_review_queue_visits",
        "fieldsync_upload_backlog",
        "fieldsync_ready",
        "# TYPE fieldsync_grpc_request_duration_seconds histogram",
    ] {
        assert!(
            after.lines().any(|line| line.starts_with(present)),
            "no {present} in\n{after}"
        );
    }
    assert!(series_value(&after, "fieldsync_review_queue_visits") >= 1.0);
    // Nothing personal: no household name or ID number reaches the page.
    assert!(!after.contains(&households[0].head_name));
}

#[tokio::test]
async fn every_answer_carries_a_request_id_and_a_callers_id_is_kept() {
    let server = TestServer::start().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel().await);
    let mut request = tonic::Request::new(tonic_health::pb::HealthCheckRequest {
        service: String::new(),
    });
    request
        .metadata_mut()
        .insert("x-request-id", "nginx-req-42".parse().expect("ascii"));
    let answer = health.check(request).await.expect("health check");
    assert_eq!(
        answer
            .metadata()
            .get("x-request-id")
            .and_then(|value| value.to_str().ok()),
        Some("nginx-req-42")
    );
    let generated = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health check");
    let generated_id = generated
        .metadata()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .expect("a generated id")
        .to_owned();
    let page = reqwest::get(format!("{}/console/login", server.url()))
        .await
        .expect("login page");
    let page_id = page
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .expect("the console answers with an id too")
        .to_owned();
    assert_ne!(page_id, generated_id, "ids are per request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_turns_not_serving_when_shutdown_begins_and_the_port_then_closes() {
    let server = TestServer::start_with_settings(|settings| {
        // The Watch stream below is a call in flight that never ends by itself.
        settings.shutdown_deadline_secs = 1;
    })
    .await;
    let url = server.url();
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel().await);
    let mut watch = health
        .watch(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("watch")
        .into_inner();
    let first = watch.message().await.expect("a status").expect("open");
    assert_eq!(
        first.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    let service_status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "fieldsync.v1.Sync".into(),
        })
        .await
        .expect("check")
        .into_inner()
        .status;
    assert_eq!(
        service_status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    // Shut down while the watch is open: it hears NOT_SERVING before anything closes.
    let stopping = tokio::spawn(server.stop_keeping_files());
    let next = watch
        .message()
        .await
        .expect("a status")
        .expect("still open");
    assert_eq!(
        next.status,
        tonic_health::pb::health_check_response::ServingStatus::NotServing as i32
    );
    let _folders = stopping.await.expect("the server stopped");
    // Stopped: new connections are refused.
    let refused = tonic::transport::Channel::from_shared(url)
        .expect("url")
        .connect()
        .await;
    assert!(refused.is_err(), "the port is closed after shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_storage_opens_health_is_not_serving_and_calls_are_unavailable() {
    let root = tempfile::tempdir().expect("temp dir");
    let settings = settings_for(&root.path().join("data"), &root.path().join("keys"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    // The storage opens (and migrates) only when the test says: the starting phase lasts
    // exactly as long as the checks below need, without any sleep.
    let (open_now, opened) = tokio::sync::oneshot::channel::<()>();
    let (ready_sender, ready) = tokio::sync::oneshot::channel::<()>();
    let (shutdown, shutdown_signal) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let opening = {
            let settings = settings.clone();
            async move {
                let _ = opened.await;
                fieldsync_server::open_state(settings).await
            }
        };
        fieldsync_server::serve_when_open(
            listener,
            None,
            &settings,
            opening,
            move |_| {
                let _ = ready_sender.send(());
            },
            async {
                let _ = shutdown_signal.await;
            },
        )
        .await
    });
    let channel = tonic::transport::Channel::from_shared(url.clone())
        .expect("url")
        .connect()
        .await
        .expect("the port answers while the storage opens");
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let check = || tonic_health::pb::HealthCheckRequest {
        service: String::new(),
    };
    let starting = health.check(check()).await.expect("health answers");
    assert_eq!(
        starting.into_inner().status,
        tonic_health::pb::health_check_response::ServingStatus::NotServing as i32
    );
    let login = v1::auth_client::AuthClient::new(channel.clone())
        .login(v1::LoginRequest {
            username: "anyone".into(),
            password: "whatever-password".into(),
            device_id: uuid::Uuid::now_v7().to_string(),
            device_name: "test".into(),
            client: Some(client_info()),
            wants_refresh_token: false,
        })
        .await
        .expect_err("no call is served while the storage opens");
    assert_eq!(login.code(), tonic::Code::Unavailable, "{login:?}");
    let page = reqwest::get(format!("{url}/console/login"))
        .await
        .expect("the console answers");
    assert_eq!(page.status(), 503);
    assert!(page.headers().contains_key("retry-after"));

    open_now.send(()).expect("the server waits to open");
    ready.await.expect("the server became ready");
    let serving = health.check(check()).await.expect("health answers");
    assert_eq!(
        serving.into_inner().status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    let page = reqwest::get(format!("{url}/console/login"))
        .await
        .expect("the console answers");
    assert_eq!(page.status(), 200);
    let _ = shutdown.send(());
    server.await.expect("server task").expect("server runs");
}

/// Run the real `fieldsync-server` with `arguments`; (succeeded, exit code, stdout + stderr).
fn run_server_command(arguments: &[&std::ffi::OsStr]) -> (bool, Option<i32>, String) {
    let output = command_without_fieldsync_environment(&server_binary())
        .args(arguments)
        .output()
        .expect("run fieldsync-server");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), output.status.code(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backup_and_restore_commands_work_beside_a_serving_binary() {
    let root = tempfile::tempdir().expect("temp dir");
    let data = root.path().join("data");
    // The real server process serves the data folder the whole time.
    let server = ServerProcess::start(&data, true).await;
    // Its /metrics address comes from its settings (the harness gives it port 0), and the
    // binary prints it before the console line.
    let output = server.recent_output();
    let metrics_url = output
        .lines()
        .find_map(|line| {
            line.split_once("监控 metrics: ")
                .map(|(_, url)| url.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no metrics line in:\n{output}"));
    let page = reqwest::get(&metrics_url)
        .await
        .expect("scrape the binary")
        .text()
        .await
        .expect("page");
    assert!(
        page.lines().any(|line| line == "fieldsync_ready 1"),
        "{page}"
    );
    let backup_dir = root.path().join("backup");
    let (ok, _, text) = run_server_command(&[
        "--data-dir".as_ref(),
        data.as_os_str(),
        "backup".as_ref(),
        backup_dir.as_os_str(),
    ]);
    assert!(ok && text.contains("备份完成"), "{text}");
    assert!(text.contains("does NOT include the key folder"), "{text}");
    assert!(backup_dir.join("manifest.json").is_file());

    // Restoring over the folder the server is using is refused, and says why.
    let (ok, code, text) = run_server_command(&[
        "--data-dir".as_ref(),
        data.as_os_str(),
        "restore".as_ref(),
        backup_dir.as_os_str(),
    ]);
    assert!(!ok && code == Some(1), "{text}");
    assert!(text.contains("is not empty"), "{text}");

    // A new folder, with the live key folder (the backup holds no keys), restores.
    let restored = root.path().join("restored");
    let key_dir = root.path().join("data-keys");
    let (ok, _, text) = run_server_command(&[
        "--data-dir".as_ref(),
        restored.as_os_str(),
        "--key-dir".as_ref(),
        key_dir.as_os_str(),
        "restore".as_ref(),
        backup_dir.as_os_str(),
    ]);
    assert!(ok && text.contains("恢复完成"), "{text}");
    assert!(restored.join("fieldsync.sqlite3").is_file());
    // The same audit chain verifies on the restored copy.
    let (ok, _, text) = run_server_command(&[
        "--data-dir".as_ref(),
        restored.as_os_str(),
        "--key-dir".as_ref(),
        key_dir.as_os_str(),
        "audit".as_ref(),
        "verify".as_ref(),
    ]);
    assert!(ok, "{text}");
    drop(server);
}

/// A log writer the test reads back.
#[derive(Clone, Default)]
struct CapturedLogs(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// On a current-thread runtime the server's tasks run on this thread, so the thread's
/// default subscriber (the server's own JSON subscriber) sees all of their lines.
#[tokio::test]
async fn json_log_lines_of_a_request_carry_its_request_id() {
    // While exactly one dispatcher is alive, tracing-core works out a new callsite's
    // interest from the default subscriber of whichever thread reaches it first. Another
    // test of this binary, on a thread with no subscriber, could then mark the server's
    // callsites "never" for the whole process, and this test would capture nothing (seen
    // once in CI). A second live dispatcher makes tracing ask every dispatcher instead.
    let _second_dispatcher = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
    let logs = CapturedLogs::default();
    let log_settings = Settings {
        log_format: fieldsync_server::settings::LogFormat::Json,
        log: "fieldsync_server=debug".into(),
        ..Settings::default()
    };
    let writer = logs.clone();
    let _logging = tracing::subscriber::set_default(fieldsync_server::logging::subscriber(
        &log_settings,
        move || writer.clone(),
        false,
    ));
    let server = TestServer::start().await;
    let page = reqwest::Client::new()
        .get(format!("{}/console/login", server.url()))
        .header("x-request-id", "ops-log-test-7")
        .send()
        .await
        .expect("login page");
    assert_eq!(page.status(), 200);

    let text = String::from_utf8(logs.0.lock().expect("logs").clone()).expect("UTF-8 logs");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).expect("every line is one JSON object"))
        .collect();
    let of_request: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|line| {
            line["spans"].as_array().is_some_and(|spans| {
                spans
                    .iter()
                    .any(|span| span["request_id"] == "ops-log-test-7")
            })
        })
        .collect();
    assert!(
        of_request
            .iter()
            .any(|line| line["fields"]["message"] == "request finished"
                && line["fields"]["status"] == 200),
        "no access line for the request in:\n{text}"
    );
    assert!(!text.contains('\u{1b}'), "no colour codes in JSON logs");
}

/// Issue 14 §8: a shell set up for the phone CLI (`FIELDSYNC_SERVER`) starts the server, an
/// unknown `FIELDSYNC_*` variable is named in a warning and ignored, and a typo in the
/// settings file stops the binary with one clear line and no backtrace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_environment_variables_warn_and_settings_errors_are_one_line() {
    let root = tempfile::tempdir().expect("temp dir");
    let server = fieldsync_tests::ServerProcess::start_binary(
        &server_binary(),
        &root.path().join("data"),
        true,
        &[
            ("FIELDSYNC_SERVER", "https://county.example:7700"),
            ("FIELDSYNC_NOT_A_SETTING", "1"),
        ],
    )
    .await;
    let health = reqwest::get(format!("{}/console/login", server.url()))
        .await
        .expect("the server serves");
    assert!(health.status().is_success());
    let output = server.kill();
    let warning = output
        .lines()
        .find(|line| line.contains("FIELDSYNC_NOT_A_SETTING"))
        .unwrap_or_else(|| panic!("no warning naming the variable in:\n{output}"));
    assert!(
        warning.contains("WARN") || warning.contains("warn"),
        "{warning}"
    );
    assert!(
        !output.contains("FIELDSYNC_SERVER"),
        "the CLI's own variable is not the server's concern:\n{output}"
    );

    let config = root.path().join("fieldsync.toml");
    std::fs::write(&config, "listen_adr = \"127.0.0.1:0\"\n").expect("write config");
    let output = command_without_fieldsync_environment(&server_binary())
        .env("RUST_BACKTRACE", "1")
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(root.path().join("other"))
        .output()
        .expect("run fieldsync-server");
    assert!(!output.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(text.trim().lines().count(), 1, "one line:\n{text}");
    assert!(
        text.contains("listen_adr") && text.contains("fieldsync.toml"),
        "{text}"
    );
    assert!(!text.contains("backtrace"), "{text}");
}
