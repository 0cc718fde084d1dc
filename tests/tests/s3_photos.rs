//! Photos on a real S3-compatible object store (issue 15 §3). `.ci/run` starts moto's
//! standalone server from PyPI and exports `FIELDSYNC_TEST_S3_URL` (its endpoint); each test
//! makes a fresh bucket there, and prints that it was skipped when the variable is unset.
//! Nothing here is an in-process fake: the server talks S3 over HTTP to that server, and
//! the tests list the bucket over plain S3 requests (moto does not check signatures on
//! listings) and read objects through a client of their own.
//!
//! Covered: a photo uploaded by a real phone core over gRPC and another over tus land in
//! the bucket with their derived copies, and the console serves the thumbnail from there; a
//! hash mismatch leaves nothing visible; an upload cut on server A resumes on server B;
//! expiry removes staging objects; an unreachable store answers UNAVAILABLE.
//!
//! The resume test runs A and B one after the other on one SQLite database (B opens a copy
//! of A's database after A stopped): a SQLite store must be its file's only writer, so two
//! servers cannot share it at once. What B finds of A's upload is the `uploads` row and the
//! chunk objects in the bucket; nothing on A's disk.

use std::sync::Arc;

use fieldsync_proto::v1;
use fieldsync_server::clock::{Clock, ManualClock};
use fieldsync_server::media::blobs::Derived;
use fieldsync_server::media::uploads::{self, Started};
use fieldsync_server::settings::Settings;
use fieldsync_tests::s3::{blob_settings, bucket_reader, fresh_bucket, keys_in, s3_endpoint};
use fieldsync_tests::{
    MediaUploader, TestServer, UPLOAD_CHUNK, authorized, client_info, console_login,
    console_thumbnail, phone_of, test_photo, visit_at_home,
};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

async fn server_on(endpoint: &str, bucket: &str) -> TestServer {
    let blobs = blob_settings(endpoint, bucket);
    TestServer::start_with_settings(move |settings| settings.blobs = blobs).await
}

#[tokio::test]
async fn photos_sent_over_grpc_and_tus_are_stored_on_s3_and_the_console_serves_the_thumbnail() {
    let Some(endpoint) = s3_endpoint("s3 photos over grpc and tus") else {
        return;
    };
    let bucket = fresh_bucket(&endpoint).await;
    let server = server_on(&endpoint, &bucket).await;

    // gRPC: a real phone core records a visit with a photo and syncs.
    let (phone, _phone_dir) = phone_of(&server, "cadre01").await;
    let households = phone.households().expect("households");
    let visit_id = phone
        .record_visit(visit_at_home(&phone, &households[0].household_id))
        .expect("record");
    let report = phone.sync().await.expect("sync");
    assert_eq!(report.uploads_completed, 1, "{report:?}");
    let photo = std::fs::read(test_photo("gps_DSCN0010.jpg")).expect("photo");
    let sha256 = sha256_hex(&photo);
    let blob_key = format!("sha256/{}/{sha256}", &sha256[..2]);
    let keys = keys_in(&endpoint, &bucket).await;
    assert!(keys.contains(&blob_key), "{keys:?}");
    assert!(
        keys.contains(&format!("derived/{}/{sha256}.thumb.jpg", &sha256[..2])),
        "{keys:?}"
    );
    assert!(
        keys.contains(&format!("derived/{}/{sha256}.display.jpg", &sha256[..2])),
        "{keys:?}"
    );
    assert!(
        !keys.iter().any(|key| key.starts_with("staging/")),
        "the chunks are deleted once the blob is written: {keys:?}"
    );
    let scratch = tempfile::tempdir().expect("temp dir");
    let reader = bucket_reader(&endpoint, &bucket, scratch.path());
    assert_eq!(reader.read(&sha256).await.expect("blob"), photo);
    assert_eq!(server.blob_file_count(), 0, "no photo on the server's disk");

    // The console serves the thumbnail, read back from the bucket.
    let browser = console_login(&server, "township1").await;
    let visit: serde_json::Value = browser
        .get(format!("{}/console/api/visits/{visit_id}", server.url()))
        .send()
        .await
        .expect("visit json")
        .json()
        .await
        .expect("json");
    let photo_id = visit["photo_ids_received"][0]
        .as_str()
        .expect("photo received")
        .to_owned();
    let thumbnail = console_thumbnail(&browser, &server, &photo_id).await;
    let stored_thumbnail = reader
        .read_derived(&sha256, Derived::Thumbnail)
        .await
        .expect("read")
        .expect("thumbnail in the bucket");
    assert_eq!(thumbnail, stored_thumbnail);

    // tus: another photo in two PATCHes, the second completing it.
    let other = std::fs::read(test_photo("orientation_landscape_6.jpg")).expect("photo");
    let other_sha256 = sha256_hex(&other);
    let tus = Tus::new(&server, "cadre02").await;
    let location = tus.create(&other, &other_sha256).await;
    let half = other.len() / 2;
    let first = tus.patch(&location, 0, &other[..half]).await;
    assert_eq!(first.status(), reqwest::StatusCode::NO_CONTENT);
    let second = tus.patch(&location, half as u64, &other[half..]).await;
    assert_eq!(
        second.status(),
        reqwest::StatusCode::NO_CONTENT,
        "{second:?}"
    );
    assert_eq!(reader.read(&other_sha256).await.expect("blob"), other);
    assert!(
        server
            .state
            .store
            .blob_exists(&other_sha256)
            .await
            .expect("row")
    );
}

/// A tus uploader (the phone's background upload) against one server.
struct Tus {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Tus {
    async fn new(server: &TestServer, username: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: server.url(),
            token: server
                .login(username, &uuid::Uuid::now_v7().to_string())
                .await,
        }
    }

    async fn create(&self, bytes: &[u8], declared_sha256: &str) -> String {
        use base64::Engine;
        let encode = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
        let created = self
            .http
            .post(format!("{}/tus/uploads", self.base))
            .header("tus-resumable", "1.0.0")
            .bearer_auth(&self.token)
            .header("upload-length", bytes.len().to_string())
            .header(
                "upload-metadata",
                format!(
                    "sha256 {},filetype {}",
                    encode(declared_sha256),
                    encode("image/jpeg")
                ),
            )
            .send()
            .await
            .expect("POST");
        assert_eq!(
            created.status(),
            reqwest::StatusCode::CREATED,
            "{created:?}"
        );
        created.headers()["location"]
            .to_str()
            .expect("location")
            .to_owned()
    }

    async fn patch(&self, location: &str, offset: u64, data: &[u8]) -> reqwest::Response {
        self.http
            .patch(format!("{}{location}", self.base))
            .header("tus-resumable", "1.0.0")
            .bearer_auth(&self.token)
            .header("content-type", "application/offset+octet-stream")
            .header("upload-offset", offset.to_string())
            .body(data.to_vec())
            .send()
            .await
            .expect("PATCH")
    }
}

#[tokio::test]
async fn bytes_that_do_not_hash_to_the_declared_sha256_leave_nothing_in_the_bucket() {
    let Some(endpoint) = s3_endpoint("s3 hash mismatch") else {
        return;
    };
    let bucket = fresh_bucket(&endpoint).await;
    let server = server_on(&endpoint, &bucket).await;
    let tus = Tus::new(&server, "cadre01").await;
    let bytes = std::fs::read(test_photo("orientation_landscape_6.jpg")).expect("photo");
    let declared = sha256_hex(b"what the phone hashed before it re-encoded the photo");
    let location = tus.create(&bytes, &declared).await;
    let half = bytes.len() / 2;
    assert_eq!(
        tus.patch(&location, 0, &bytes[..half]).await.status(),
        reqwest::StatusCode::NO_CONTENT
    );
    assert!(
        keys_in(&endpoint, &bucket)
            .await
            .iter()
            .any(|key| key.starts_with("staging/")),
        "acknowledged chunks wait in the bucket"
    );
    let refused = tus.patch(&location, half as u64, &bytes[half..]).await;
    assert_eq!(refused.status().as_u16(), 460, "{refused:?}");
    assert_eq!(
        refused.headers()["upload-offset"],
        "0",
        "the upload starts over"
    );
    assert_eq!(
        keys_in(&endpoint, &bucket).await,
        Vec::<String>::new(),
        "no blob, no derived copy, no staged chunk"
    );
    assert!(
        !server
            .state
            .store
            .blob_exists(&declared)
            .await
            .expect("row")
    );
    assert!(
        !server
            .state
            .store
            .blob_exists(&sha256_hex(&bytes))
            .await
            .expect("row")
    );
}

#[tokio::test]
async fn an_upload_cut_on_server_a_is_resumed_on_server_b_from_the_bucket() {
    let Some(endpoint) = s3_endpoint("s3 resume on another server") else {
        return;
    };
    let bucket = fresh_bucket(&endpoint).await;
    let photo = std::fs::read(test_photo("mobile_jolla.jpg")).expect("photo");
    let sha256 = sha256_hex(&photo);

    // Server A acknowledges the first 40 % of the photo, then goes away.
    let server_a = server_on(&endpoint, &bucket).await;
    let mut media_a = MediaUploader::login(&server_a, "cadre01").await;
    let started = media_a.start(&photo).await;
    let cut_at = photo.len() * 2 / 5;
    let acknowledged = media_a.send(&started.upload_id, &photo, 0, cut_at).await;
    let settings_a = server_a.state.settings.as_ref().clone();
    let (data_a, keys_a) = server_a.stop_keeping_files().await;
    assert_eq!(
        std::fs::read_dir(data_a.path().join("blobs").join("uploads"))
            .map(|entries| entries.count())
            .unwrap_or(0),
        0,
        "A staged nothing on its own disk"
    );

    // Server B: `run()` on its own folder holding only a copy of A's database (the same
    // keys, the same bucket).
    let data_b = tempfile::tempdir().expect("temp dir");
    for name in ["fieldsync.sqlite3", "fieldsync.sqlite3-wal"] {
        let from = data_a.path().join(name);
        if from.is_file() {
            std::fs::copy(&from, data_b.path().join(name)).expect("copy the database");
        }
    }
    let settings_b = Settings {
        data_dir: data_b.path().to_owned(),
        key_dir: Some(keys_a.path().to_owned()),
        metrics: fieldsync_server::settings::MetricsSettings {
            enabled: false,
            ..settings_a.metrics.clone()
        },
        ..settings_a
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address_b = listener.local_addr().expect("address");
    let (stop_b, stopped_b) = tokio::sync::oneshot::channel::<()>();
    let server_b = tokio::spawn(fieldsync_server::run(listener, settings_b, async {
        let _ = stopped_b.await;
    }));
    let channel_b = tonic::transport::Endpoint::from_shared(format!("http://{address_b}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect to B");
    // B answers from the start; wait on health until its storage is open.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel_b.clone());
    let mut watch = health
        .watch(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("watch")
        .into_inner();
    while let Some(status) = watch.message().await.expect("health") {
        if status.status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32 {
            break;
        }
    }

    // The phone asks B where to continue: the same upload, at the offset A acknowledged
    // (the session, too, is the database's, so A's token works on B).
    let mut media_b = MediaUploader::new(channel_b.clone(), media_a.token.clone());
    let resumed = media_b.start(&photo).await;
    assert_eq!(resumed.upload_id, started.upload_id);
    assert_eq!(resumed.committed_offset, acknowledged);
    assert!(!resumed.complete);
    let completed = media_b
        .finish(&resumed.upload_id, acknowledged, &photo)
        .await;
    assert_eq!(completed.sha256, sha256);
    let scratch = tempfile::tempdir().expect("temp dir");
    assert_eq!(
        bucket_reader(&endpoint, &bucket, scratch.path())
            .read(&sha256)
            .await
            .expect("blob"),
        photo,
        "byte-exact: A's chunks and B's chunks in order"
    );
    let keys = keys_in(&endpoint, &bucket).await;
    assert!(
        !keys.iter().any(|key| key.starts_with("staging/")),
        "{keys:?}"
    );
    let _ = stop_b.send(());
    server_b.await.expect("B's task").expect("B stops cleanly");
}

#[tokio::test]
async fn expiry_removes_the_staging_objects_of_abandoned_uploads() {
    let Some(endpoint) = s3_endpoint("s3 expiry") else {
        return;
    };
    let bucket = fresh_bucket(&endpoint).await;
    let data = tempfile::tempdir().expect("temp dir");
    let keys = tempfile::tempdir().expect("temp dir");
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let state = fieldsync_server::AppState::open_with_clock(
        Settings {
            data_dir: data.path().to_owned(),
            key_dir: Some(keys.path().to_owned()),
            blobs: blob_settings(&endpoint, &bucket),
            ..Settings::default()
        },
        clock.clone(),
    )
    .expect("open state");
    let bytes = b"half of a photo that never arrives".to_vec();
    let Started::Upload(upload) = uploads::start(
        &state,
        "user-1",
        &sha256_hex(&bytes),
        bytes.len() as u64,
        "image/jpeg",
    )
    .await
    .expect("start") else {
        panic!("no blob yet");
    };
    let committed = state
        .blobs
        .append_chunk(&upload.upload_id, 0, bytes[..10].to_vec())
        .await
        .expect("chunk");
    state
        .store
        .set_upload_offset(&upload.upload_id, committed, clock.now())
        .await
        .expect("offset");
    // An orphan: chunks whose row is gone (a crash between the two steps).
    let orphan = uuid::Uuid::now_v7().to_string();
    state
        .blobs
        .append_chunk(&orphan, 0, b"orphan".to_vec())
        .await
        .expect("orphan");
    assert_eq!(
        state
            .blobs
            .staged_len(&upload.upload_id)
            .await
            .expect("len"),
        10
    );
    assert_eq!(keys_in(&endpoint, &bucket).await.len(), 2);

    let report = uploads::expire_abandoned(&state).await.expect("expire");
    assert_eq!(report.expired_uploads, 0, "nothing is old enough yet");
    assert_eq!(report.swept_files, 1, "the orphan goes at once");
    assert_eq!(keys_in(&endpoint, &bucket).await.len(), 1);

    clock.set(clock.now() + Duration::hours(73));
    let report = uploads::expire_abandoned(&state).await.expect("expire");
    assert_eq!(report.expired_uploads, 1);
    assert_eq!(keys_in(&endpoint, &bucket).await, Vec::<String>::new());
    assert_eq!(
        state
            .store
            .get_upload(&upload.upload_id)
            .await
            .expect("get"),
        None
    );
}

/// Needs no S3 server: the store's endpoint is a port where nothing listens.
#[tokio::test]
async fn an_unreachable_object_store_answers_unavailable_and_acknowledges_nothing() {
    let nowhere = fieldsync_tests::unreachable_url().await;
    let server = server_on(&nowhere, "no-such-bucket").await;
    let mut media = MediaUploader::login(&server, "cadre01").await;
    let photo = std::fs::read(test_photo("orientation_landscape_6.jpg")).expect("photo");
    let started = media.start(&photo).await;
    let error = media
        .put(&started.upload_id, 0, &photo[..UPLOAD_CHUNK])
        .await
        .expect_err("the store is down");
    assert_eq!(error.code(), tonic::Code::Unavailable, "{error:?}");
    let status = media
        .media
        .upload_status(authorized(
            v1::UploadStatusRequest {
                client: Some(client_info()),
                upload_id: started.upload_id.clone(),
            },
            &media.token,
        ))
        .await
        .expect("status")
        .into_inner();
    assert_eq!(status.committed_offset, 0, "nothing was acknowledged");
    // Every blob read maps the same way (the console's photo route, completion).
    let sha256 = sha256_hex(&photo);
    let error = server
        .state
        .blobs
        .contains(&sha256)
        .await
        .expect_err("unreachable");
    assert!(
        matches!(
            fieldsync_server::error::ServiceError::from(error),
            fieldsync_server::error::ServiceError::Unavailable
        ),
        "a retryable error, not a panic"
    );
}

/// A blob above one multipart part (5 MiB) is written in parts from the scratch file and
/// reads back whole; `vet` sees exactly the staged bytes before the blob exists.
#[tokio::test]
async fn a_blob_larger_than_one_part_is_written_in_parts_and_reads_back_whole() {
    let Some(endpoint) = s3_endpoint("s3 multipart blob") else {
        return;
    };
    let bucket = fresh_bucket(&endpoint).await;
    let scratch = tempfile::tempdir().expect("temp dir");
    let blobs = bucket_reader(&endpoint, &bucket, scratch.path());
    // Fixed pseudo-random bytes (no two parts alike), 6 MiB and a bit.
    let mut state = 0x2026_u32;
    let bytes: Vec<u8> = (0..6 * 1024 * 1024 + 123)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect();
    let sha256 = sha256_hex(&bytes);
    let upload_id = uuid::Uuid::now_v7().to_string();
    let mut offset = 0;
    for chunk in bytes.chunks(256 * 1024) {
        offset = blobs
            .append_chunk(&upload_id, offset, chunk.to_vec())
            .await
            .expect("chunk");
    }
    assert_eq!(
        blobs.staged_len(&upload_id).await.expect("len"),
        bytes.len() as u64
    );
    let expected = bytes.clone();
    let vetted = blobs
        .commit_vetted(&upload_id, &sha256, bytes.len() as u64, move |path| {
            let seen = std::fs::read(path)?;
            Ok(if seen == expected {
                Ok(seen.len())
            } else {
                Err("different bytes")
            })
        })
        .await
        .expect("commit");
    assert_eq!(vetted, Ok(bytes.len()));
    assert_eq!(blobs.read(&sha256).await.expect("blob"), bytes);
    assert_eq!(
        keys_in(&endpoint, &bucket).await,
        vec![format!("sha256/{}/{sha256}", &sha256[..2])],
        "only the blob is left"
    );
    assert_eq!(
        std::fs::read_dir(scratch.path().join("assembling"))
            .expect("scratch folder")
            .count(),
        0,
        "no scratch file is left"
    );
}
