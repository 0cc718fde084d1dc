//! Resumable photo uploads over real gRPC with a real JPEG: an upload cut at any offset
//! resumes from the server's committed offset and stores the phone's exact bytes; a
//! corrupted chunk is refused and re-sent; two devices uploading the same photo at once end
//! with one blob.

use fieldsync_proto::v1;
use fieldsync_tests::{
    MediaUploader as Uploader, TestServer, UPLOAD_CHUNK as CHUNK, authorized, test_photo,
};
use rand::{Rng, SeedableRng};
use sha2::Digest;
use tonic::Code;

/// Fixed seed so every CI run cuts at the same offsets; a failure names the offset.
const CUT_SEED: u64 = 0x00c0_ffee_2026;
#[tokio::test]
async fn an_upload_cut_at_200_random_offsets_always_resumes_to_the_phones_exact_bytes() {
    let server = TestServer::start().await;
    let original = std::fs::read(test_photo("gps_DSCN0010.jpg")).expect("photo");
    let mut uploader = Uploader::login(&server, "cadre01").await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(CUT_SEED);
    for round in 0..200 {
        // Each round is a distinct, still valid JPEG: a comment segment (COM) carrying the
        // round number right after the start-of-image marker, so every round starts from
        // nothing on the server.
        let bytes = with_comment(&original, &format!("fieldsync upload round {round}"));
        let cut = rng.random_range(1..bytes.len() as u64);
        let started = uploader.start(&bytes).await;
        assert_eq!(started.committed_offset, 0, "round {round}");
        // Send up to the cut, as if the link dropped there mid-chunk.
        let mut offset = 0u64;
        while offset < cut {
            let end = (offset as usize + CHUNK).min(cut as usize);
            offset = uploader
                .put(&started.upload_id, offset, &bytes[offset as usize..end])
                .await
                .expect("chunk before the cut");
        }
        // Reconnect: ask where to continue instead of trusting local state.
        let resumed = uploader.start(&bytes).await;
        assert_eq!(
            resumed.upload_id, started.upload_id,
            "round {round}: same upload resumes"
        );
        assert_eq!(resumed.committed_offset, cut, "round {round}: cut at {cut}");
        let done = uploader
            .finish(&resumed.upload_id, resumed.committed_offset, &bytes)
            .await;
        let expected_sha = hex::encode(sha2::Sha256::digest(&bytes));
        assert_eq!(done.sha256, expected_sha, "round {round}, cut at {cut}");
        assert_eq!(
            server
                .state
                .blobs
                .read(&expected_sha)
                .await
                .expect("stored blob"),
            bytes,
            "round {round}: byte-exact"
        );
    }
}

#[tokio::test]
async fn a_corrupted_chunk_is_refused_and_the_resend_is_accepted() {
    let server = TestServer::start().await;
    let bytes = std::fs::read(test_photo("gps_DSCN0012.jpg")).expect("photo");
    let mut uploader = Uploader::login(&server, "cadre01").await;
    let started = uploader.start(&bytes).await;
    let chunk = &bytes[..CHUNK];
    let mut corrupted = chunk.to_vec();
    corrupted[100] ^= 0x40;
    let refused = uploader
        .media
        .put_chunk(authorized(
            v1::PutChunkRequest {
                client: Some(fieldsync_tests::client_info()),
                upload_id: started.upload_id.clone(),
                offset: 0,
                data: corrupted,
                crc32c: crc32c::crc32c(chunk),
            },
            &uploader.token,
        ))
        .await
        .expect_err("a chunk that does not match its CRC-32C");
    assert_eq!(refused.code(), Code::DataLoss);
    assert_eq!(
        uploader.start(&bytes).await.committed_offset,
        0,
        "nothing was committed"
    );

    // A chunk at the wrong offset names the committed one.
    let wrong = uploader
        .put(&started.upload_id, 4096, &bytes[4096..8192])
        .await
        .expect_err("wrong offset");
    assert_eq!(wrong.code(), Code::FailedPrecondition);
    assert_eq!(
        wrong
            .metadata()
            .get("fieldsync-committed-offset")
            .and_then(|value| value.to_str().ok()),
        Some("0")
    );

    let done = uploader.finish(&started.upload_id, 0, &bytes).await;
    assert_eq!(done.sha256, hex::encode(sha2::Sha256::digest(&bytes)));
}

#[tokio::test]
async fn two_devices_uploading_the_same_photo_at_once_end_with_one_blob() {
    let server = TestServer::start().await;
    let bytes = std::fs::read(test_photo("gps_DSCN0021.jpg")).expect("photo");
    let sha = hex::encode(sha2::Sha256::digest(&bytes));
    let mut first = Uploader::login(&server, "cadre01").await;
    let mut second = Uploader::login(&server, "cadre02").await;
    let (a, b) = (first.start(&bytes).await, second.start(&bytes).await);
    assert_ne!(a.upload_id, b.upload_id, "each device has its own upload");
    let (done_a, done_b) = tokio::join!(
        first.finish(&a.upload_id, 0, &bytes),
        second.finish(&b.upload_id, 0, &bytes)
    );
    assert_eq!(
        (done_a.sha256.as_str(), done_b.sha256.as_str()),
        (sha.as_str(), sha.as_str())
    );
    assert_eq!(server.state.blobs.read(&sha).await.expect("blob"), bytes);
    assert_eq!(server.blob_file_count(), 1, "one content-addressed blob");
    // A third device is told at once that the photo is already there.
    let mut third = Uploader::login(&server, "cadre03").await;
    let already = third.start(&bytes).await;
    assert!(already.complete);
}

/// `jpeg` with a COM segment inserted after SOI.
fn with_comment(jpeg: &[u8], comment: &str) -> Vec<u8> {
    let length = u16::try_from(comment.len() + 2).expect("short comment");
    let mut bytes = jpeg[..2].to_vec();
    bytes.extend_from_slice(&[0xFF, 0xFE]);
    bytes.extend_from_slice(&length.to_be_bytes());
    bytes.extend_from_slice(comment.as_bytes());
    bytes.extend_from_slice(&jpeg[2..]);
    bytes
}

#[tokio::test]
async fn a_visit_cannot_be_approved_before_its_photos_have_arrived() {
    let server = TestServer::start().await;
    let device = uuid::Uuid::now_v7().to_string();
    let token = server.login("cadre01", &device).await;
    let (households, _, _) = fieldsync_tests::pull_all(server.channel().await, &token).await;
    let bytes = std::fs::read(test_photo("Canon_40D.jpg")).expect("photo");
    let now = time::OffsetDateTime::now_utc();
    let wire = fieldsync_proto::convert::instant_to_wire;
    let (visit_id, photo_id) = (
        uuid::Uuid::now_v7().to_string(),
        uuid::Uuid::now_v7().to_string(),
    );
    let visit = v1::Visit {
        visit_id: visit_id.clone(),
        revision: 1,
        household_id: households[0].household_id.clone(),
        mode: v1::VisitMode::InPerson as i32,
        checkin_at: Some(wire(now - time::Duration::minutes(30))),
        checkout_at: Some(wire(now)),
        observed_situation: "户主在家，庄稼长势良好。".into(),
        photo_ids: vec![photo_id.clone()],
        recorded_at_device: Some(wire(now)),
        ..Default::default()
    };
    let photo = v1::PhotoRecord {
        photo_id,
        visit_id: visit_id.clone(),
        sha256: hex::encode(sha2::Sha256::digest(&bytes)),
        size_bytes: bytes.len() as u64,
        mime_type: "image/jpeg".into(),
        in_app_camera: true,
        ..Default::default()
    };
    let mutation = |seq: u64, payload| v1::Mutation {
        seq,
        mutation_id: uuid::Uuid::now_v7().to_string(),
        hlc: 1,
        payload: Some(payload),
    };
    let mut sync = v1::sync_client::SyncClient::new(server.channel().await);
    sync.push(authorized(
        v1::PushRequest {
            device_id: device.clone(),
            batch_id: uuid::Uuid::now_v7().to_string(),
            first_seq: 1,
            mutations: vec![
                mutation(1, v1::mutation::Payload::SubmitVisit(visit)),
                mutation(2, v1::mutation::Payload::AddPhoto(photo)),
            ],
            client: Some(fieldsync_tests::client_info()),
            ..Default::default()
        },
        &token,
    ))
    .await
    .expect("push");

    let supervisor = server
        .login("township1", &uuid::Uuid::now_v7().to_string())
        .await;
    let mut review = v1::review_client::ReviewClient::new(server.channel().await);
    let detail = review
        .get_visit(authorized(
            v1::GetVisitRequest {
                visit_id: visit_id.clone(),
            },
            &supervisor,
        ))
        .await
        .expect("a visit can be looked at while its media is pending")
        .into_inner();
    assert!(detail.photo_ids_received.is_empty());
    let approve = v1::DecideRequest {
        visit_id: visit_id.clone(),
        revision: 1,
        content_hash: detail.content_hash.clone(),
        decision: v1::Decision::Approve as i32,
        ..Default::default()
    };
    let refused = review
        .decide(authorized(approve.clone(), &supervisor))
        .await
        .expect_err("photo still uploading");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("still uploading"),
        "{}",
        refused.message()
    );

    // Once the bytes arrive, the same approval goes through.
    let mut uploader = Uploader::login(&server, "cadre01").await;
    let started = uploader.start(&bytes).await;
    uploader.finish(&started.upload_id, 0, &bytes).await;
    let approved = review
        .decide(authorized(approve, &supervisor))
        .await
        .expect("approve after upload")
        .into_inner();
    assert_eq!(approved.state, v1::ReviewState::Approved as i32);
}

#[tokio::test]
async fn an_app_too_old_to_say_its_schema_is_told_to_upgrade_before_uploading() {
    let server = TestServer::start().await;
    let mut uploader = Uploader::login(&server, "cadre01").await;
    let refused = uploader
        .media
        .start_upload(authorized(
            v1::StartUploadRequest {
                sha256: "0".repeat(64),
                size_bytes: 10,
                mime_type: "image/jpeg".into(),
                client: None,
            },
            &uploader.token,
        ))
        .await
        .expect_err("no client info");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("upgrade required"),
        "{}",
        refused.message()
    );
}
