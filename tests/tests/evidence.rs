//! Photo evidence over real gRPC and the console (issue 4 items 1–4): upload completion
//! refuses what is not a safe photo before any blob exists and extracts EXIF and a perceptual
//! hash from what it accepts; evidence flags are computed on submission and when photos
//! arrive, shown by the Review API and the console, and never block a decision.

use fieldsync_proto::convert::instant_to_wire;
use fieldsync_proto::v1;
use fieldsync_server::media::blobs::Derived;
use fieldsync_server::media::photo::synthetic;
use fieldsync_server::store::CaptureTime;
use fieldsync_tests::{
    TestServer, authorized, client_info, console_login, push_applied, test_photo,
};
use sha2::Digest;
use time::{Duration, OffsetDateTime};
use tonic::Code;
use tonic::transport::Channel;

const CHUNK: usize = 64 * 1024;

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A phone's media client (the small pattern of tests/uploads.rs).
struct Uploader {
    media: v1::media_client::MediaClient<Channel>,
    token: String,
}

impl Uploader {
    async fn new(server: &TestServer, token: &str) -> Self {
        Self {
            media: v1::media_client::MediaClient::new(server.channel().await),
            token: token.to_owned(),
        }
    }

    async fn start(&mut self, bytes: &[u8]) -> v1::StartUploadResponse {
        self.media
            .start_upload(authorized(
                v1::StartUploadRequest {
                    client: Some(client_info()),
                    sha256: sha256_hex(bytes),
                    size_bytes: bytes.len() as u64,
                    // What the phone declares; the server sniffs the bytes at completion.
                    mime_type: "image/jpeg".into(),
                },
                &self.token,
            ))
            .await
            .expect("start")
            .into_inner()
    }

    /// Send every byte and complete; the completion's answer is returned.
    async fn upload(
        &mut self,
        bytes: &[u8],
    ) -> (String, Result<v1::CompleteUploadResponse, tonic::Status>) {
        let started = self.start(bytes).await;
        let mut offset = started.committed_offset as usize;
        while offset < bytes.len() {
            let end = (offset + CHUNK).min(bytes.len());
            let chunk = &bytes[offset..end];
            offset = self
                .media
                .put_chunk(authorized(
                    v1::PutChunkRequest {
                        client: Some(client_info()),
                        upload_id: started.upload_id.clone(),
                        offset: offset as u64,
                        data: chunk.to_vec(),
                        crc32c: crc32c::crc32c(chunk),
                    },
                    &self.token,
                ))
                .await
                .expect("chunk")
                .into_inner()
                .committed_offset as usize;
        }
        let completed = self
            .media
            .complete_upload(authorized(
                v1::CompleteUploadRequest {
                    client: Some(client_info()),
                    upload_id: started.upload_id.clone(),
                },
                &self.token,
            ))
            .await
            .map(tonic::Response::into_inner);
        (started.upload_id, completed)
    }

    async fn committed_offset(&mut self, upload_id: &str) -> u64 {
        self.media
            .upload_status(authorized(
                v1::UploadStatusRequest {
                    client: Some(client_info()),
                    upload_id: upload_id.into(),
                },
                &self.token,
            ))
            .await
            .expect("status")
            .into_inner()
            .committed_offset
    }
}

/// A cadre's phone: pushes visits and photo records.
struct Phone {
    device_id: String,
    token: String,
    next_seq: u64,
    households: Vec<v1::Household>,
}

impl Phone {
    async fn login(server: &TestServer, username: &str) -> Self {
        let device_id = uuid::Uuid::now_v7().to_string();
        let token = server.login(username, &device_id).await;
        let (households, _, _) = fieldsync_tests::pull_all(server.channel().await, &token).await;
        Self {
            device_id,
            token,
            next_seq: 1,
            households,
        }
    }

    async fn push(&mut self, server: &TestServer, payloads: Vec<v1::mutation::Payload>) {
        self.next_seq = push_applied(
            server,
            &self.token,
            &self.device_id,
            self.next_seq,
            payloads,
        )
        .await;
    }
}

/// An in-person visit at `household` from `checkin` for 40 minutes with a fix at `fix`.
fn visit(
    household: &v1::Household,
    checkin: OffsetDateTime,
    fix: Option<v1::GpsFix>,
    photo_ids: Vec<String>,
) -> v1::Visit {
    v1::Visit {
        visit_id: uuid::Uuid::now_v7().to_string(),
        revision: 1,
        household_id: household.household_id.clone(),
        mode: v1::VisitMode::InPerson as i32,
        checkin_at: Some(instant_to_wire(checkin)),
        checkout_at: Some(instant_to_wire(checkin + Duration::minutes(40))),
        observed_situation: "户主在家，庄稼长势良好，家中无危房。".into(),
        photo_ids,
        gps: fix,
        recorded_at_device: Some(instant_to_wire(checkin + Duration::minutes(40))),
        ..Default::default()
    }
}

/// A fix `north_m` metres north of the household's registered location.
fn fix_near(household: &v1::Household, north_m: f64, is_mock: bool) -> v1::GpsFix {
    let home = household.location.expect("demo households have a location");
    v1::GpsFix {
        lat: home.lat + north_m / 111_000.0,
        lon: home.lon,
        crs: home.crs,
        accuracy_m: 10.0,
        provider: v1::LocationProvider::Gps as i32,
        is_mock,
        fix_time: None,
    }
}

/// Attach one photo of `bytes` to `visit`: the visit and its photo record, to push together.
fn with_one_photo(visit: &mut v1::Visit, bytes: &[u8]) -> Vec<v1::mutation::Payload> {
    let photo = photo_record(&visit.visit_id, bytes);
    visit.photo_ids = vec![photo.photo_id.clone()];
    vec![
        v1::mutation::Payload::SubmitVisit(visit.clone()),
        v1::mutation::Payload::AddPhoto(photo),
    ]
}

fn photo_record(visit_id: &str, bytes: &[u8]) -> v1::PhotoRecord {
    v1::PhotoRecord {
        photo_id: uuid::Uuid::now_v7().to_string(),
        visit_id: visit_id.into(),
        sha256: sha256_hex(bytes),
        size_bytes: bytes.len() as u64,
        mime_type: "image/jpeg".into(),
        in_app_camera: true,
        ..Default::default()
    }
}

struct Supervisor {
    review: v1::review_client::ReviewClient<Channel>,
    token: String,
}

impl Supervisor {
    async fn login(server: &TestServer) -> Self {
        Self {
            review: v1::review_client::ReviewClient::new(server.channel().await),
            token: server
                .login("township1", &uuid::Uuid::now_v7().to_string())
                .await,
        }
    }

    async fn get(&mut self, visit_id: &str) -> v1::GetVisitResponse {
        self.review
            .get_visit(authorized(
                v1::GetVisitRequest {
                    visit_id: visit_id.into(),
                },
                &self.token,
            ))
            .await
            .expect("get visit")
            .into_inner()
    }

    async fn flag_codes(&mut self, visit_id: &str) -> Vec<String> {
        self.get(visit_id)
            .await
            .flags
            .into_iter()
            .map(|flag| flag.code)
            .collect()
    }
}

// ----- step 1: upload completion validates and extracts -----

#[tokio::test]
async fn unsafe_files_are_refused_at_completion_and_leave_no_blob() {
    let server = TestServer::start().await;
    let token = server
        .login("cadre01", &uuid::Uuid::now_v7().to_string())
        .await;
    let mut uploader = Uploader::new(&server, &token).await;
    let jpeg = std::fs::read(test_photo("Canon_40D.jpg")).expect("photo");
    let mut polyglot = jpeg.clone();
    // A ZIP archive appended after the JPEG's end: local file header, name, data.
    polyglot.extend_from_slice(b"PK\x03\x04\x14\x00\x00\x00\x00\x00");
    polyglot.extend_from_slice(&[0u8; 16]);
    polyglot.extend_from_slice(b"payload.sh#!/bin/sh\necho owned\n");
    polyglot.extend_from_slice(&[0x41; 96]);
    let svg = br#"<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><script>alert(1)</script></svg>"#.to_vec();
    let heic = synthetic::heif_header(b"heic");
    for (bytes, code) in [
        (svg, "markup_not_image"),
        (polyglot, "trailing_data"),
        (heic, "heic_needs_conversion"),
    ] {
        let sha256 = sha256_hex(&bytes);
        let (upload_id, completed) = uploader.upload(&bytes).await;
        let refused = completed.expect_err(code);
        assert_eq!(refused.code(), Code::InvalidArgument, "{code}: {refused:?}");
        assert!(
            refused
                .message()
                .starts_with(&format!("photo rejected ({code}): ")),
            "{code}: {}",
            refused.message()
        );
        assert_eq!(
            uploader.committed_offset(&upload_id).await,
            0,
            "{code}: the upload starts over"
        );
        assert!(
            !server.state.store.blob_exists(&sha256).await.expect("blob"),
            "{code}: no blob row"
        );
        assert!(
            !server
                .state
                .blobs
                .contains(&sha256)
                .await
                .expect("contains"),
            "{code}: no blob file"
        );
        assert_eq!(
            server
                .state
                .blobs
                .staged_len(&upload_id)
                .await
                .expect("staged"),
            0,
            "{code}: staged bytes discarded"
        );
        assert_eq!(
            server.state.store.photo_meta(&sha256).await.expect("meta"),
            None
        );
        // Asking again does not suddenly find a photo.
        assert!(!uploader.start(&bytes).await.complete, "{code}");
    }
}

#[tokio::test]
async fn a_real_jpeg_is_stored_byte_exact_with_its_exif_and_perceptual_hash() {
    let server = TestServer::start().await;
    let token = server
        .login("cadre01", &uuid::Uuid::now_v7().to_string())
        .await;
    let mut uploader = Uploader::new(&server, &token).await;
    let bytes = std::fs::read(test_photo("gps_DSCN0010.jpg")).expect("photo");
    let sha256 = sha256_hex(&bytes);
    let (_, completed) = uploader.upload(&bytes).await;
    assert_eq!(completed.expect("accepted").sha256, sha256);
    assert_eq!(
        server.state.blobs.read(&sha256).await.expect("blob"),
        bytes,
        "byte-exact"
    );
    let meta = server
        .state
        .store
        .photo_meta(&sha256)
        .await
        .expect("read")
        .expect("metadata stored");
    assert_eq!(meta.mime_type, "image/jpeg");
    assert_eq!((meta.width, meta.height), (640, 480));
    let (lat, lon) = meta.exif_gps.expect("EXIF GPS");
    assert!(
        (lat - 43.467).abs() < 0.01 && (lon - 11.885).abs() < 0.01,
        "{lat}, {lon}"
    );
    match meta.exif_time {
        Some(CaptureTime::Local(local)) => assert_eq!(local.year(), 2008, "{local}"),
        other => panic!("expected a local EXIF time, got {other:?}"),
    }
    assert_eq!(meta.make.as_deref().map(str::trim), Some("NIKON"));
    assert_ne!(meta.phash, 0);
    // The console's copies were made once, at completion, and carry no EXIF.
    let thumbnail = server
        .state
        .blobs
        .read_derived(&sha256, Derived::Thumbnail)
        .await
        .expect("read")
        .expect("thumbnail stored");
    assert!(thumbnail.starts_with(&[0xFF, 0xD8]));
    assert!(!thumbnail.windows(4).any(|window| window == b"Exif"));
    assert!(
        server
            .state
            .blobs
            .read_derived(&sha256, Derived::Display)
            .await
            .expect("read")
            .is_some()
    );
}

/// Issue 14 §6: a real photo with one broken EXIF entry (as a careless editor's re-save
/// leaves it) keeps every tag that parses; its EXIF is stored and flagged as damaged, not
/// missing, and its capture time and GPS are still checked.
#[tokio::test]
async fn a_photo_with_one_broken_exif_tag_keeps_its_time_and_gps_and_is_flagged_as_damaged() {
    let original = std::fs::read(test_photo("gps_DSCN0010.jpg")).expect("photo");
    let bytes = synthetic::break_exif_entry(&original, 0x010F).expect("IFD0 has Make");
    let sha256 = sha256_hex(&bytes);
    let server = TestServer::start().await;
    let mut phone = Phone::login(&server, "cadre01").await;
    let mut uploader = Uploader::new(&server, &phone.token).await;
    assert_eq!(
        uploader.upload(&bytes).await.1.expect("accepted").sha256,
        sha256
    );
    let meta = server
        .state
        .store
        .photo_meta(&sha256)
        .await
        .expect("read")
        .expect("metadata stored");
    assert!(meta.exif_damaged, "{meta:?}");
    assert_eq!(meta.make, None, "the broken tag is dropped");
    assert_eq!(meta.model.as_deref(), Some("COOLPIX P6000"));
    assert!(meta.exif_gps.is_some(), "GPS still read");
    assert!(
        matches!(meta.exif_time, Some(CaptureTime::Local(local)) if local.year() == 2008),
        "capture time still read: {:?}",
        meta.exif_time
    );
    assert_eq!(
        meta.gps_time,
        Some(time::macros::datetime!(2008-10-23 14:27:07 UTC))
    );

    let household = phone.households[0].clone();
    let mut visit = visit(
        &household,
        OffsetDateTime::now_utc() - Duration::hours(1),
        Some(fix_near(&household, 20.0, false)),
        Vec::new(),
    );
    phone
        .push(&server, with_one_photo(&mut visit, &bytes))
        .await;
    let mut supervisor = Supervisor::login(&server).await;
    let flags = supervisor.get(&visit.visit_id).await.flags;
    let codes: Vec<&str> = flags.iter().map(|flag| flag.code.as_str()).collect();
    let damaged = flags
        .iter()
        .find(|flag| flag.code == "photo_exif_damaged")
        .unwrap_or_else(|| panic!("damaged EXIF is flagged: {codes:?}"));
    assert_eq!(damaged.label, "照片EXIF信息损坏");
    assert_eq!(
        damaged.detail,
        "照片1的 EXIF 信息部分损坏，可能经编辑软件改存过；能读出的拍摄时间和地点已照常核验。"
    );
    assert!(!codes.contains(&"photo_exif_missing"), "{codes:?}");
    // What parsed is still evidence: the 2008 capture time, the photo's GPS in Italy, and its
    // satellite time, which this real camera's own clock missed by 30 hours (the record
    // sends no capture time, so the EXIF one, read as Beijing time, stands in).
    let satellite = flags
        .iter()
        .find(|flag| flag.code == "satellite_time_mismatch")
        .unwrap_or_else(|| panic!("the EXIF GPS time is still read: {codes:?}"));
    assert_eq!(
        satellite.detail,
        "照片1的 GPS 卫星时间为 2008-10-23 22:27，手机记录的拍摄时间比它慢 1 天 5 小时，手机时间可能被调过。"
    );
    assert!(codes.contains(&"photo_exif_time_outside"), "{codes:?}");
    assert!(codes.contains(&"photo_exif_gps_far"), "{codes:?}");
    let browser = console_login(&server, "township1").await;
    let page = browser
        .get(format!(
            "{}/console/visits/{}",
            server.url(),
            visit.visit_id
        ))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(page.contains("照片EXIF信息损坏"), "the console shows it");
}

/// The phone's own clock, which the cadre can set.
#[derive(Debug)]
struct PhoneClock(std::sync::Mutex<OffsetDateTime>);

impl PhoneClock {
    fn set(&self, instant: OffsetDateTime) {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = instant;
    }
}

impl fieldsync_client::Clock for PhoneClock {
    fn now(&self) -> OffsetDateTime {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Issue 14 §6: the cadre sets the phone's clock back five days, records a visit there,
/// and puts the clock right before syncing. The heartbeat then shows a correct clock and
/// five days is no late record (补录), but the fix's satellite time gives it away.
#[tokio::test]
async fn a_clock_set_back_to_record_a_visit_and_restored_before_syncing_is_caught_by_satellite_time()
 {
    let server_now = time::macros::datetime!(2026-11-09 09:30 +08:00);
    let server = TestServer::start_with_clock(std::sync::Arc::new(
        fieldsync_server::clock::ManualClock::new(server_now),
    ))
    .await;
    // Right before and after: only the recording happens on a wrong clock.
    let phone_clock = std::sync::Arc::new(PhoneClock(std::sync::Mutex::new(server_now)));
    let folder = tempfile::tempdir().expect("temp dir");
    let phone = fieldsync_client::Client::open_with_clock(
        folder.path(),
        &server.url(),
        phone_clock.clone(),
    )
    .expect("open client");
    phone
        .login("cadre01", fieldsync_tests::DEMO_PASSWORD)
        .await
        .expect("login");
    phone.sync().await.expect("first sync");

    // Two hours ago, at the household, with the clock five days back: the visit is saved
    // when the cadre leaves, the fix was taken 20 minutes before.
    let recorded = server_now - Duration::hours(2);
    let back = Duration::days(5);
    phone_clock.set(recorded - back);
    let household_id = phone.households().expect("households")[0]
        .household_id
        .clone();
    let home = phone
        .household(&household_id)
        .expect("read")
        .and_then(|household| household.location)
        .expect("demo households have a location");
    let visit_id = phone
        .record_visit(fieldsync_client::NewVisit {
            observed_situation: "户主在家，秋粮已收，家中无危房。".into(),
            gps: Some(fieldsync_model::visit::GpsFix {
                lat: home.lat + 0.0002,
                lon: home.lon,
                crs: home.crs,
                accuracy_m: 8.0,
                provider: Some(fieldsync_model::codes::LocationProvider::Gps),
                is_mock: false,
                // The GNSS receiver's time: the satellites' clock, not the phone's.
                fix_time: Some(recorded - Duration::minutes(20)),
            }),
            ..fieldsync_client::NewVisit::new(
                household_id.clone(),
                fieldsync_model::codes::VisitMode::InPerson,
                recorded - back - Duration::minutes(40),
                recorded - back - Duration::minutes(5),
            )
        })
        .expect("record");
    // The clock is put right before the phone syncs.
    phone_clock.set(server_now);
    phone.sync().await.expect("sync");

    let mut supervisor = Supervisor::login(&server).await;
    let flags = supervisor.get(&visit_id).await.flags;
    let codes: Vec<&str> = flags.iter().map(|flag| flag.code.as_str()).collect();
    assert!(
        !codes.contains(&"clock_skew"),
        "the heartbeat saw a right clock: {codes:?}"
    );
    assert!(
        !codes.contains(&"late_record"),
        "five days is not late: {codes:?}"
    );
    let flag = flags
        .iter()
        .find(|flag| flag.code == "satellite_time_mismatch")
        .unwrap_or_else(|| panic!("the set-back clock is caught: {codes:?}"));
    assert_eq!(flag.label, "设备时间与卫星时间不符");
    // The fix came 15 minutes before check-out by the satellites' clock, five days after
    // it by the phone's.
    assert_eq!(
        flag.detail,
        "定位卫星时间为 2026-11-09 07:10，手机记录的签到签退时间比它慢 4 天 23 小时，手机时间可能被调过。"
    );
}

// ----- steps 2 and 3: flags -----

#[tokio::test]
async fn an_honest_visit_with_a_real_photo_has_no_flags() {
    let bytes = std::fs::read(test_photo("Canon_40D.jpg")).expect("photo");
    // The visit happened when the camera says the photo was taken (its EXIF local time,
    // read as Beijing time), at the household, and reached the server an hour later: the
    // server's clock stands there, so the visit is no late record (补录).
    let prepared = fieldsync_server::media::photo::prepare(
        &bytes,
        &fieldsync_server::media::photo::Limits::default(),
        1600,
    )
    .expect("a good photo");
    let taken = match fieldsync_server::media::pipeline::photo_meta(&prepared).exif_time {
        Some(CaptureTime::Local(local)) => local.assume_offset(time::macros::offset!(+8)),
        Some(CaptureTime::Offset(instant)) => instant,
        None => panic!("Canon_40D.jpg has an EXIF time"),
    };
    let server = TestServer::start_with_clock(std::sync::Arc::new(
        fieldsync_server::clock::ManualClock::new(taken + Duration::hours(1)),
    ))
    .await;
    let mut phone = Phone::login(&server, "cadre01").await;
    let mut uploader = Uploader::new(&server, &phone.token).await;
    uploader.upload(&bytes).await.1.expect("accepted");
    let household = phone.households[0].clone();
    let mut honest = visit(
        &household,
        taken - Duration::minutes(10),
        Some(fix_near(&household, 20.0, false)),
        Vec::new(),
    );
    phone
        .push(&server, with_one_photo(&mut honest, &bytes))
        .await;
    let mut supervisor = Supervisor::login(&server).await;
    let detail = supervisor.get(&honest.visit_id).await;
    assert_eq!(detail.photo_ids_received.len(), 1);
    assert_eq!(detail.flags, Vec::new());
}

#[tokio::test]
async fn a_mock_far_fix_is_flagged_in_the_review_api_and_the_console_and_can_still_be_approved() {
    let server = TestServer::start().await;
    let mut phone = Phone::login(&server, "cadre01").await;
    let household = phone.households[0].clone();
    let now = OffsetDateTime::now_utc();
    let far = visit(
        &household,
        now - Duration::hours(1),
        Some(fix_near(&household, 5_000.0, true)),
        Vec::new(),
    );
    phone
        .push(
            &server,
            vec![v1::mutation::Payload::SubmitVisit(far.clone())],
        )
        .await;

    let mut supervisor = Supervisor::login(&server).await;
    let detail = supervisor.get(&far.visit_id).await;
    let codes: Vec<&str> = detail.flags.iter().map(|flag| flag.code.as_str()).collect();
    assert!(codes.contains(&"gps_far"), "{codes:?}");
    assert!(codes.contains(&"mock_location"), "{codes:?}");
    let gps_far = detail
        .flags
        .iter()
        .find(|flag| flag.code == "gps_far")
        .expect("gps_far");
    assert_eq!(gps_far.label, "定位距农户过远");
    // About 5 km away: written in kilometres with one decimal, as the location plot does.
    assert!(
        gps_far.detail.starts_with("定位距农户登记位置 5.0 公里"),
        "{}",
        gps_far.detail
    );

    let queue = supervisor
        .review
        .list_queue(authorized(
            v1::ListQueueRequest::default(),
            &supervisor.token,
        ))
        .await
        .expect("queue")
        .into_inner();
    let item = queue
        .items
        .iter()
        .find(|item| item.visit_id == far.visit_id)
        .expect("queued");
    assert!(item.flag_codes.iter().any(|code| code == "mock_location"));

    // The console's JSON twin, its queue filter and its HTML page show the same flags.
    let browser = console_login(&server, "township1").await;
    let json: serde_json::Value = browser
        .get(format!(
            "{}/console/api/visits/{}",
            server.url(),
            far.visit_id
        ))
        .send()
        .await
        .expect("api")
        .json()
        .await
        .expect("json");
    let api_codes: Vec<&str> = json["flags"]
        .as_array()
        .expect("flags")
        .iter()
        .filter_map(|flag| flag["code"].as_str())
        .collect();
    assert!(api_codes.contains(&"gps_far"), "{json}");
    assert!(api_codes.contains(&"mock_location"), "{json}");
    assert_eq!(json["flags_computed"], true);
    let filtered: serde_json::Value = browser
        .get(format!(
            "{}/console/api/queue?flag=mock_location",
            server.url()
        ))
        .send()
        .await
        .expect("api queue")
        .json()
        .await
        .expect("json");
    let ids: Vec<&str> = filtered
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|item| item["visit_id"].as_str())
        .collect();
    assert_eq!(ids, vec![far.visit_id.as_str()]);
    let none: serde_json::Value = browser
        .get(format!(
            "{}/console/api/queue?flag=photo_reused",
            server.url()
        ))
        .send()
        .await
        .expect("api queue")
        .json()
        .await
        .expect("json");
    assert_eq!(none.as_array().map(Vec::len), Some(0));
    let page = browser
        .get(format!("{}/console/visits/{}", server.url(), far.visit_id))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(page.contains("核验提示"), "detail page");
    assert!(page.contains("定位距农户过远") && page.contains("模拟定位"));
    let queue_page = browser
        .get(format!("{}/console/queue?flag=gps_far", server.url()))
        .send()
        .await
        .expect("queue page")
        .text()
        .await
        .expect("html");
    assert!(
        queue_page.contains("flag=mock_location"),
        "badges link to the filter"
    );
    // The dashboard's flag counts link into the township's queue; the county sees the same
    // counts without a link it could not open (the queue is township-only).
    let dashboard_of = |browser: reqwest::Client| {
        let url = format!("{}/console/dashboard", server.url());
        async move {
            browser
                .get(url)
                .send()
                .await
                .expect("dashboard")
                .text()
                .await
                .expect("html")
        }
    };
    let township_dashboard = dashboard_of(browser.clone()).await;
    assert!(township_dashboard.contains("/console/queue?flag=mock_location"));
    let county_dashboard = dashboard_of(console_login(&server, "county").await).await;
    assert!(
        county_dashboard.contains("模拟定位"),
        "county sees the flag"
    );
    assert!(!county_dashboard.contains("/console/queue?flag="));
    assert!(county_dashboard.contains("由各乡镇审核员在审核队列中处理"));

    // Flags never block: the supervisor may approve.
    let approved = supervisor
        .review
        .decide(authorized(
            v1::DecideRequest {
                visit_id: far.visit_id.clone(),
                revision: 1,
                content_hash: detail.content_hash,
                decision: v1::Decision::Approve as i32,
                ..Default::default()
            },
            &supervisor.token,
        ))
        .await
        .expect("approve despite flags")
        .into_inner();
    assert_eq!(approved.state, v1::ReviewState::Approved as i32);
}

#[tokio::test]
async fn the_same_photo_on_another_households_visit_is_flagged_when_its_upload_completes() {
    let server = TestServer::start().await;
    let mut phone = Phone::login(&server, "cadre01").await;
    let bytes = std::fs::read(test_photo("gps_DSCN0012.jpg")).expect("photo");
    let now = OffsetDateTime::now_utc();
    let (first_home, second_home) = (phone.households[0].clone(), phone.households[1].clone());
    assert_ne!(first_home.household_id, second_home.household_id);
    let mut first = visit(
        &first_home,
        now - Duration::hours(3),
        Some(fix_near(&first_home, 10.0, false)),
        Vec::new(),
    );
    let mut second = visit(
        &second_home,
        now - Duration::hours(1),
        Some(fix_near(&second_home, 10.0, false)),
        Vec::new(),
    );
    let mut payloads = with_one_photo(&mut first, &bytes);
    payloads.extend(with_one_photo(&mut second, &bytes));
    phone.push(&server, payloads).await;
    let mut supervisor = Supervisor::login(&server).await;
    // The photo is still uploading: nothing about it is judged yet.
    let before = supervisor.flag_codes(&second.visit_id).await;
    assert!(
        !before.iter().any(|code| code.starts_with("photo")),
        "{before:?}"
    );

    let mut uploader = Uploader::new(&server, &phone.token).await;
    uploader.upload(&bytes).await.1.expect("accepted");
    let after = supervisor.get(&second.visit_id).await;
    let reused = after
        .flags
        .iter()
        .find(|flag| flag.code == "photo_reused")
        .unwrap_or_else(|| panic!("photo_reused on the second visit: {:?}", after.flags));
    // Named as a reviewer reads it: the photo by its place in the visit, the other visit
    // by household and Beijing date (same cadre, so no cadre name); never a raw id.
    let first_day = (now - Duration::hours(3)).to_offset(time::macros::offset!(+8));
    assert_eq!(
        reused.detail,
        format!(
            "照片1与{}户 {}月{}日的走访的照片是同一文件。",
            first_home.head_name,
            u8::from(first_day.month()),
            first_day.day()
        )
    );
    for flag in &after.flags {
        assert!(!flag.detail.contains(&first.visit_id), "{}", flag.detail);
        assert!(
            !flag.detail.contains(&second.photo_ids[0]),
            "{}",
            flag.detail
        );
    }
    // The console's JSON twin names them the same way.
    let browser = console_login(&server, "township1").await;
    let json: serde_json::Value = browser
        .get(format!(
            "{}/console/api/visits/{}",
            server.url(),
            second.visit_id
        ))
        .send()
        .await
        .expect("api")
        .json()
        .await
        .expect("json");
    let api_reused = json["flags"]
        .as_array()
        .expect("flags")
        .iter()
        .find(|flag| flag["code"] == "photo_reused")
        .expect("photo_reused in JSON");
    assert_eq!(api_reused["detail"], reused.detail.as_str());
    assert!(
        supervisor
            .flag_codes(&first.visit_id)
            .await
            .contains(&"photo_reused".to_owned()),
        "both visits sharing the file are flagged"
    );
}

#[tokio::test]
async fn a_visit_synced_late_reflags_the_cadres_neighbouring_visit() {
    let server = TestServer::start().await;
    let mut phone = Phone::login(&server, "cadre01").await;
    let mut supervisor = Supervisor::login(&server).await;
    let morning = (OffsetDateTime::now_utc() - Duration::hours(6))
        .replace_nanosecond(0)
        .expect("ns");
    // The earlier visit's fix is 30 km away; the later one starts 10 minutes after the
    // earlier one ended, at the next household: 180 km/h.
    let earlier = visit(
        &phone.households[0].clone(),
        morning,
        Some(fix_near(&phone.households[0], 30_000.0, false)),
        Vec::new(),
    );
    let later = visit(
        &phone.households[1].clone(),
        morning + Duration::minutes(50),
        Some(fix_near(&phone.households[1], 10.0, false)),
        Vec::new(),
    );
    phone
        .push(
            &server,
            vec![v1::mutation::Payload::SubmitVisit(later.clone())],
        )
        .await;
    assert!(
        !supervisor
            .flag_codes(&later.visit_id)
            .await
            .contains(&"impossible_travel".to_owned()),
        "alone, the later visit is plausible"
    );
    // The earlier visit was recorded offline and syncs afterwards.
    phone
        .push(
            &server,
            vec![v1::mutation::Payload::SubmitVisit(earlier.clone())],
        )
        .await;
    assert!(
        supervisor
            .flag_codes(&earlier.visit_id)
            .await
            .contains(&"impossible_travel".to_owned())
    );
    assert!(
        supervisor
            .flag_codes(&later.visit_id)
            .await
            .contains(&"impossible_travel".to_owned()),
        "the neighbour already stored is re-flagged when the late visit arrives"
    );
}

#[tokio::test]
async fn crossing_the_daily_limit_flags_the_days_earlier_visits_too() {
    let server = TestServer::start().await;
    let mut phone = Phone::login(&server, "cadre01").await;
    let mut supervisor = Supervisor::login(&server).await;
    let limit = server.state.settings.evidence.max_in_person_visits_per_day as usize;
    assert!(
        limit >= 1,
        "the check below runs when the day reaches the limit"
    );
    // Yesterday 08:00 Beijing (00:00 UTC), one visit every 50 minutes at the next household.
    let start = (OffsetDateTime::now_utc() - Duration::days(1)).replace_time(time::Time::MIDNIGHT);
    let households = phone.households.clone();
    let mut visit_ids = Vec::new();
    for index in 0..=limit {
        let household = &households[index % households.len()];
        let visit = visit(
            household,
            start + Duration::minutes(50 * index as i64),
            Some(fix_near(household, 10.0, false)),
            Vec::new(),
        );
        visit_ids.push(visit.visit_id.clone());
        phone
            .push(&server, vec![v1::mutation::Payload::SubmitVisit(visit)])
            .await;
        if index + 1 == limit {
            for visit_id in &visit_ids {
                assert!(
                    !supervisor
                        .flag_codes(visit_id)
                        .await
                        .contains(&"too_many_visits_in_day".to_owned()),
                    "{limit} visits in a day are allowed"
                );
            }
        }
    }
    for visit_id in &visit_ids {
        assert!(
            supervisor
                .flag_codes(visit_id)
                .await
                .contains(&"too_many_visits_in_day".to_owned()),
            "visit {visit_id} of a day with {} visits",
            limit + 1
        );
    }
}

#[tokio::test]
async fn a_late_record_is_flagged_from_the_servers_receipt_and_shown_in_the_console_json() {
    // The server's clock, not the phone's, decides when a visit was submitted.
    let received = time::macros::datetime!(2026-11-09 09:30 +08:00);
    let clock = std::sync::Arc::new(fieldsync_server::clock::ManualClock::new(received));
    let server = TestServer::start_with_clock(clock.clone()).await;
    let max_days = i64::from(server.state.settings.evidence.late_record_max_days);
    let mut phone = Phone::login(&server, "cadre01").await;
    let household = phone.households[0].clone();
    let fix = Some(fix_near(&household, 20.0, false));
    // Checked in 69 days before it reached the server; the phone claims it recorded it at
    // check-out, which changes nothing.
    let backdated = visit(&household, received - Duration::days(69), fix, Vec::new());
    // Exactly at the limit: not late.
    let on_the_limit = visit(
        &phone.households[1].clone(),
        received - Duration::days(max_days),
        Some(fix_near(&phone.households[1], 20.0, false)),
        Vec::new(),
    );
    // Recorded on time but claiming a 100,000-minute visit.
    let mut endless = visit(
        &phone.households[2].clone(),
        received - Duration::hours(2),
        Some(fix_near(&phone.households[2], 20.0, false)),
        Vec::new(),
    );
    endless.checkout_at = Some(instant_to_wire(
        received - Duration::hours(2) + Duration::minutes(100_000),
    ));
    phone
        .push(
            &server,
            vec![
                v1::mutation::Payload::SubmitVisit(backdated.clone()),
                v1::mutation::Payload::SubmitVisit(on_the_limit.clone()),
                v1::mutation::Payload::SubmitVisit(endless.clone()),
            ],
        )
        .await;

    let browser = console_login(&server, "township1").await;
    let flags_of = |visit_id: String| {
        let browser = browser.clone();
        let url = format!("{}/console/api/visits/{visit_id}", server.url());
        async move {
            let json: serde_json::Value = browser
                .get(url)
                .send()
                .await
                .expect("api")
                .json()
                .await
                .expect("json");
            json["flags"].as_array().cloned().unwrap_or_default()
        }
    };
    let late = |flags: &[serde_json::Value]| {
        flags
            .iter()
            .find(|flag| flag["code"] == "late_record")
            .cloned()
    };

    let backdated_flags = flags_of(backdated.visit_id.clone()).await;
    let flag = late(&backdated_flags).expect("the backdated visit is a late record");
    assert_eq!(flag["label"], "补录", "{flag}");
    assert_eq!(
        flag["detail"],
        format!(
            "签到于 2026-09-01 09:30，服务器 2026-11-09 09:30 才收到，相隔 69 天 0 小时，超过 {max_days} 天，可能是事后补录。"
        ),
        "the receipt time is the server's: {flag}"
    );

    assert_eq!(
        late(&flags_of(on_the_limit.visit_id.clone()).await),
        None,
        "exactly the limit is not late"
    );

    let endless_flags = flags_of(endless.visit_id.clone()).await;
    let flag = late(&endless_flags).expect("the endless visit is a late record");
    assert_eq!(
        flag["detail"],
        format!(
            "走访时长 1666 小时 40 分钟，超过 {} 小时，可能是事后补录。",
            server.state.settings.evidence.late_record_max_hours
        ),
        "{flag}"
    );

    // Shown like the other flags, and never blocking: the supervisor can still approve.
    let mut supervisor = Supervisor::login(&server).await;
    let detail = supervisor.get(&backdated.visit_id).await;
    let shown = detail
        .flags
        .iter()
        .find(|flag| flag.code == "late_record")
        .expect("the Review API shows it too")
        .clone();
    assert_eq!(shown.label, "补录");
    assert!(shown.detail.contains("相隔 69 天"), "{}", shown.detail);
    let page = browser
        .get(format!(
            "{}/console/visits/{}",
            server.url(),
            backdated.visit_id
        ))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(page.contains("补录"), "the console page shows the flag");
    let approved = supervisor
        .review
        .decide(authorized(
            v1::DecideRequest {
                visit_id: backdated.visit_id.clone(),
                revision: 1,
                content_hash: detail.content_hash,
                decision: v1::Decision::Approve as i32,
                ..Default::default()
            },
            &supervisor.token,
        ))
        .await
        .expect("approve despite the late record")
        .into_inner();
    assert_eq!(approved.state, v1::ReviewState::Approved as i32);
}
