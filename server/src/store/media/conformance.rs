//! Conformance checks of [`MediaStore`](super::MediaStore): the upload lifecycle with its
//! offsets, resume and expiry, photo metadata round trips, and the evidence inputs and flags
//! of a visit. A backend runs them all with one `media_conformance_tests!` line.

use fieldsync_model::codes::VisitMode;
use fieldsync_model::evidence::EvidenceFlag;
use fieldsync_model::sync::MutationPayload;
use sha2::{Digest, Sha256};
use time::Duration;
use time::macros::datetime;

use crate::store::conformance::*;
use crate::store::{
    CaptureTime, DeviceClockReading, Heartbeat, PhotoMeta, QueueFilter, Store, StoreError,
    UploadRecord,
};

/// Start (idempotent), find by hash per user, advance, complete; the blob then counts as
/// received for the visit's photo.
pub async fn upload_lifecycle(store: &dyn Store) {
    let fixture = seeded(store).await;
    let visit = visit(&fixture.wang, VisitMode::InPerson, VISIT_TIME);
    let photo = photo(&visit.visit_id);
    store
        .apply_push(batch(
            &fixture.cadre_a,
            "device-a",
            vec![
                apply(1, MutationPayload::SubmitVisit(visit.clone())),
                apply(2, MutationPayload::AddPhoto(photo.clone())),
            ],
        ))
        .await
        .expect("push");

    let upload = UploadRecord {
        upload_id: new_id(),
        sha256: photo.sha256.clone(),
        size_bytes: photo.size_bytes,
        mime_type: photo.mime_type.clone(),
        committed_offset: 0,
        complete: false,
        user_id: fixture.cadre_a.user_id.clone(),
        last_activity_at: VISIT_TIME,
    };
    assert_eq!(
        store.start_upload(upload.clone()).await.expect("start"),
        upload
    );
    assert!(!store.blob_exists(&photo.sha256).await.expect("blob_exists"));

    store
        .set_upload_offset(&upload.upload_id, 65_536, VISIT_TIME + Duration::hours(1))
        .await
        .expect("advance");
    let restarted = store
        .start_upload(UploadRecord {
            committed_offset: 0,
            last_activity_at: VISIT_TIME + Duration::hours(2),
            ..upload.clone()
        })
        .await
        .expect("restart");
    assert_eq!(
        restarted.committed_offset, 65_536,
        "a restart resumes, never rewinds"
    );
    assert_eq!(
        restarted.last_activity_at,
        VISIT_TIME + Duration::hours(2),
        "a resume query is activity"
    );
    let late_retry = store
        .start_upload(UploadRecord {
            last_activity_at: VISIT_TIME,
            ..upload.clone()
        })
        .await
        .expect("late retry");
    assert_eq!(
        late_retry.last_activity_at,
        VISIT_TIME + Duration::hours(2),
        "activity never moves backwards"
    );

    let found = store
        .find_upload_by_sha256(&photo.sha256, &fixture.cadre_a.user_id)
        .await
        .expect("find")
        .expect("upload found");
    assert_eq!(found.upload_id, upload.upload_id);
    assert_eq!(
        store
            .find_upload_by_sha256(&photo.sha256, &fixture.cadre_b.user_id)
            .await
            .expect("find"),
        None,
        "uploads are found per user"
    );
    let newer = UploadRecord {
        upload_id: new_id(),
        ..upload.clone()
    };
    store
        .start_upload(newer.clone())
        .await
        .expect("start newer");
    let newest = store
        .find_upload_by_sha256(&photo.sha256, &fixture.cadre_a.user_id)
        .await
        .expect("find")
        .expect("found");
    assert_eq!(newest.upload_id, newer.upload_id);

    store
        .complete_upload(&upload.upload_id, VISIT_TIME + Duration::hours(4))
        .await
        .expect("complete");
    let completed = store
        .get_upload(&upload.upload_id)
        .await
        .expect("get")
        .expect("exists");
    assert!(completed.complete);
    assert_eq!(completed.committed_offset, completed.size_bytes);
    assert!(store.blob_exists(&photo.sha256).await.expect("blob_exists"));
    // Completing a second upload of the same bytes is harmless.
    store
        .complete_upload(&newer.upload_id, VISIT_TIME + Duration::hours(5))
        .await
        .expect("complete again");

    let detail = store
        .visit_detail(&visit.visit_id)
        .await
        .expect("detail")
        .expect("exists");
    assert_eq!(detail.photo_ids_received, vec![photo.photo_id.clone()]);

    assert_eq!(store.get_upload(&new_id()).await.expect("get"), None);
    let missing = store.complete_upload(&new_id(), VISIT_TIME).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );
    let missing = store.set_upload_offset(&new_id(), 1, VISIT_TIME).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );
}

/// Photo metadata round-trips exactly (local and offset EXIF times, all 64 hash bits) and
/// is replaced by a second save.
pub async fn photo_meta_round_trips(store: &dyn Store) {
    seeded(store).await;
    let sha = hex::encode(Sha256::digest(b"photo meta"));
    assert_eq!(store.photo_meta(&sha).await.expect("read"), None);
    let local = meta(
        0xF123_4567_89AB_CDEF,
        Some(CaptureTime::Local(datetime!(2008-10-22 16:28:39))),
    );
    store
        .save_photo_meta(&sha, local.clone())
        .await
        .expect("save");
    assert_eq!(store.photo_meta(&sha).await.expect("read"), Some(local));
    let offset = PhotoMeta {
        exif_time: Some(CaptureTime::Offset(datetime!(2026-03-10 10:05:00 +8))),
        exif_gps: None,
        gps_time: None,
        make: None,
        model: None,
        orientation: None,
        // A damaged block that kept only its capture time.
        exif_damaged: true,
        ..meta(1, None)
    };
    store
        .save_photo_meta(&sha, offset.clone())
        .await
        .expect("save again");
    assert_eq!(store.photo_meta(&sha).await.expect("read"), Some(offset));
}

/// Evidence inputs: the latest revision, the household's location, this visit's photos
/// (arrived or not, metadata only once arrived), other visits' photos with the same file or
/// a close perceptual hash (not distant ones), the same cadre's nearby visits, and the
/// device's clock reading. Flags are kept per revision and shown by the detail and queue.
pub async fn evidence_inputs_and_flags(store: &dyn Store) {
    let fixture = seeded(store).await;
    let device = "phone-a";
    let mut visit_one = visit(&fixture.wang, VisitMode::InPerson, VISIT_TIME);
    let arrived = photo(&visit_one.visit_id);
    let pending = photo(&visit_one.visit_id);
    visit_one.photo_ids = vec![arrived.photo_id.clone(), pending.photo_id.clone()];
    // The same cadre at another household the same morning, reusing the arrived file.
    let visit_two = visit(
        &fixture.zhao,
        VisitMode::InPerson,
        VISIT_TIME + Duration::hours(1),
    );
    let mut reused = photo(&visit_two.visit_id);
    reused.sha256 = arrived.sha256.clone();
    let similar = photo(&visit_two.visit_id);
    let distant = photo(&visit_two.visit_id);
    // A visit a month later is outside the cadre window.
    let visit_far = visit(
        &fixture.wang,
        VisitMode::InPerson,
        VISIT_TIME + Duration::days(30),
    );
    let result = store
        .apply_push(batch(
            &fixture.cadre_a,
            device,
            vec![
                apply(1, MutationPayload::SubmitVisit(visit_one.clone())),
                apply(2, MutationPayload::AddPhoto(arrived.clone())),
                apply(3, MutationPayload::AddPhoto(pending.clone())),
                apply(4, MutationPayload::SubmitVisit(visit_two.clone())),
                apply(5, MutationPayload::AddPhoto(reused.clone())),
                apply(6, MutationPayload::AddPhoto(similar.clone())),
                apply(7, MutationPayload::AddPhoto(distant.clone())),
                apply(8, MutationPayload::SubmitVisit(visit_far.clone())),
            ],
        ))
        .await
        .expect("push");
    assert_all_applied(&result);
    let base: u64 = 0x0123_4567_89AB_CDEF;
    const SIX_BANDS_APART: u64 = 1 | 1 << 9 | 1 << 18 | 1 << 27 | 1 << 36 | 1 << 45;
    store_blob(store, &fixture.cadre_a, &arrived.sha256).await;
    store
        .save_photo_meta(&arrived.sha256, meta(base, None))
        .await
        .expect("meta");
    store_blob(store, &fixture.cadre_a, &similar.sha256).await;
    store
        // Six bits apart, one in each of six hash bands: only the last band is equal.
        .save_photo_meta(&similar.sha256, meta(base ^ SIX_BANDS_APART, None))
        .await
        .expect("meta");
    store_blob(store, &fixture.cadre_a, &distant.sha256).await;
    store
        .save_photo_meta(&distant.sha256, meta(!base, None))
        .await
        .expect("meta");
    store
        .record_heartbeat(
            device,
            &fixture.cadre_a.user_id,
            Heartbeat {
                device_time: Some(VISIT_TIME + Duration::hours(3) + Duration::minutes(20)),
                ..Heartbeat::default()
            },
            VISIT_TIME + Duration::hours(3),
        )
        .await
        .expect("heartbeat");

    assert_eq!(
        store.evidence_inputs(&new_id(), 6).await.expect("unknown"),
        None
    );
    let inputs = store
        .evidence_inputs(&visit_one.visit_id, 6)
        .await
        .expect("inputs")
        .expect("known visit");
    assert_eq!(inputs.visit, visit_one);
    assert_eq!(inputs.cadre_user_id, fixture.cadre_a.user_id);
    assert_eq!(inputs.household_location, fixture.wang.location);
    let photos: Vec<(&str, bool, bool)> = inputs
        .photos
        .iter()
        .map(|photo| {
            (
                photo.record.photo_id.as_str(),
                photo.arrived,
                photo.meta.is_some(),
            )
        })
        .collect();
    assert_eq!(
        photos,
        vec![
            (arrived.photo_id.as_str(), true, true),
            (pending.photo_id.as_str(), false, false)
        ]
    );
    let mut others: Vec<&str> = inputs
        .other_photos
        .iter()
        .map(|other| other.photo_id.as_str())
        .collect();
    others.sort_unstable();
    let mut expected = vec![reused.photo_id.as_str(), similar.photo_id.as_str()];
    expected.sort_unstable();
    assert_eq!(
        others, expected,
        "the same file and a near duplicate, not a distant hash"
    );
    let widened = store
        .evidence_inputs(&visit_one.visit_id, 12)
        .await
        .expect("inputs")
        .expect("known visit");
    let mut widened: Vec<&str> = widened
        .other_photos
        .iter()
        .map(|other| other.photo_id.as_str())
        .collect();
    widened.sort_unstable();
    assert_eq!(widened, expected, "a wider threshold finds the same photos");
    let reuse = inputs
        .other_photos
        .iter()
        .find(|other| other.photo_id == reused.photo_id)
        .expect("reuse");
    assert_eq!(reuse.visit_id, visit_two.visit_id);
    assert_eq!(reuse.household_id, fixture.zhao.household_id);
    assert_eq!(reuse.month, VISIT_MONTH);
    let cadre: Vec<&str> = inputs
        .cadre_visits
        .iter()
        .map(|summary| summary.visit_id.as_str())
        .collect();
    assert_eq!(cadre, vec![visit_two.visit_id.as_str()]);
    assert_eq!(
        inputs.device_clock,
        Some(DeviceClockReading {
            device_time: VISIT_TIME + Duration::hours(3) + Duration::minutes(20),
            server_time: VISIT_TIME + Duration::hours(3),
        })
    );

    // Flags are kept per revision and shown with the latest one.
    let flags = vec![
        EvidenceFlag::MockLocation,
        EvidenceFlag::ClockSkew { skew_minutes: 20 },
    ];
    store
        .save_visit_flags(&visit_one.visit_id, 1, flags.clone())
        .await
        .expect("save flags");
    assert!(matches!(
        store
            .save_visit_flags(&visit_one.visit_id, 9, Vec::new())
            .await,
        Err(StoreError::NotFound(_))
    ));
    let detail = store
        .visit_detail(&visit_one.visit_id)
        .await
        .expect("detail")
        .expect("visit");
    assert_eq!(detail.flags, Some(flags.clone()));
    let untouched = store
        .visit_detail(&visit_two.visit_id)
        .await
        .expect("detail")
        .expect("visit");
    assert_eq!(untouched.flags, None, "not computed yet");
    let queue = store
        .review_queue(TOWNSHIP_ONE, QueueFilter::default())
        .await
        .expect("queue");
    let item = queue
        .iter()
        .find(|item| item.visit_id == visit_one.visit_id)
        .expect("in the queue");
    assert_eq!(item.flags, flags);
    let mocked = store
        .review_queue(
            TOWNSHIP_ONE,
            QueueFilter {
                flag: Some("mock_location".into()),
                ..QueueFilter::default()
            },
        )
        .await
        .expect("filtered queue");
    assert_eq!(
        mocked
            .iter()
            .map(|item| item.visit_id.as_str())
            .collect::<Vec<_>>(),
        vec![visit_one.visit_id.as_str()]
    );
    assert!(
        store
            .review_queue(
                TOWNSHIP_ONE,
                QueueFilter {
                    flag: Some("gps_far".into()),
                    ..QueueFilter::default()
                },
            )
            .await
            .expect("filtered queue")
            .is_empty()
    );

    // A new revision starts without flags until they are computed for it.
    let second = revise(&visit_one);
    push_visit(store, &fixture.cadre_a, device, 9, &second).await;
    let detail = store
        .visit_detail(&visit_one.visit_id)
        .await
        .expect("detail")
        .expect("visit");
    assert_eq!(detail.flags, None);

    let mut users = store
        .visits_with_photo(&arrived.sha256)
        .await
        .expect("visits with photo");
    users.sort();
    let mut expected = vec![visit_one.visit_id.clone(), visit_two.visit_id.clone()];
    expected.sort();
    assert_eq!(users, expected);
    assert!(
        store
            .visits_with_photo(&"f".repeat(64))
            .await
            .expect("none")
            .is_empty()
    );
}

/// Abandoned (incomplete) uploads created before the cutoff are deleted and their ids
/// returned; newer ones, complete ones and blobs stay (one blob serves many photo rows).
/// Upload rows are stamped when the store receives them, so the cutoffs here lie well
/// before and well after "now".
pub async fn abandoned_uploads_expire_and_complete_ones_stay(store: &dyn Store) {
    let fixture = seeded(store).await;
    let upload = |user_id: &str| {
        let content = new_id();
        UploadRecord {
            upload_id: new_id(),
            sha256: hex::encode(Sha256::digest(content.as_bytes())),
            size_bytes: 1_000,
            mime_type: "image/jpeg".into(),
            committed_offset: 0,
            complete: false,
            user_id: user_id.to_owned(),
            last_activity_at: VISIT_TIME,
        }
    };
    let abandoned = upload(&fixture.cadre_a.user_id);
    let other_user = upload(&fixture.cadre_b.user_id);
    let finished = upload(&fixture.cadre_a.user_id);
    let slow = upload(&fixture.cadre_a.user_id);
    for record in [&abandoned, &other_user, &finished, &slow] {
        store.start_upload(record.clone()).await.expect("start");
    }
    store
        .set_upload_offset(&abandoned.upload_id, 500, VISIT_TIME + Duration::hours(1))
        .await
        .expect("advance");
    // A slow upload on a 2G link: started at VISIT_TIME, still moving 100 hours later.
    store
        .set_upload_offset(&slow.upload_id, 900, VISIT_TIME + Duration::hours(100))
        .await
        .expect("advance slowly");
    store
        .complete_upload(&finished.upload_id, VISIT_TIME)
        .await
        .expect("complete");

    assert_eq!(
        store
            .expire_uploads(VISIT_TIME)
            .await
            .expect("expire nothing"),
        Vec::<String>::new(),
        "uploads active at or after the cutoff stay"
    );
    assert!(
        store
            .get_upload(&abandoned.upload_id)
            .await
            .expect("get")
            .is_some()
    );

    // 72 hours after the abandoned upload's last chunk, and long after the slow upload
    // *started*: only the idle ones go.
    let now = VISIT_TIME + Duration::hours(1) + Duration::hours(72);
    let mut expired = store
        .expire_uploads(now + Duration::hours(1))
        .await
        .expect("expire");
    expired.sort();
    let mut expected = vec![abandoned.upload_id.clone(), other_user.upload_id.clone()];
    expected.sort();
    assert_eq!(expired, expected, "every user's abandoned uploads expire");
    for gone in &expected {
        assert_eq!(store.get_upload(gone).await.expect("get"), None);
    }
    assert_eq!(
        store
            .find_upload_by_sha256(&abandoned.sha256, &fixture.cadre_a.user_id)
            .await
            .expect("find"),
        None,
        "a start after expiry begins a new upload"
    );
    let kept = store
        .get_upload(&finished.upload_id)
        .await
        .expect("get")
        .expect("complete uploads never expire");
    assert!(kept.complete);
    assert!(store.blob_exists(&finished.sha256).await.expect("blob"));
    let still_moving = store
        .get_upload(&slow.upload_id)
        .await
        .expect("get")
        .expect("an upload with recent chunks never expires, however old it is");
    assert_eq!(still_moving.committed_offset, 900);
    assert_eq!(
        store
            .expire_uploads(now + Duration::hours(1))
            .await
            .expect("expire again"),
        Vec::<String>::new(),
        "expiry is idempotent"
    );
}

/// Registers every check above as one `#[tokio::test]` of the invoking backend, each on the
/// fresh store (and its guard) that `$fresh_store()` returns, or, written `async $fresh_store`,
/// on the store that `$fresh_store(test_name).await` returns (skipped when it is `None`).
#[cfg(test)]
macro_rules! media_conformance_tests {
    ($($fresh_store:tt)+) => {
        $crate::store::conformance::checks_as_tests!(
            $($fresh_store)+,
            media,
            [
                upload_lifecycle,
                photo_meta_round_trips,
                evidence_inputs_and_flags,
                abandoned_uploads_expire_and_complete_ones_stay,
            ]
        );
    };
}
#[cfg(test)]
pub(crate) use media_conformance_tests;
