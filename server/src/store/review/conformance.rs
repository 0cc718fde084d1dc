//! Conformance checks of [`ReviewStore`](super::ReviewStore), the review loop (审核闭环): the queue's filters by
//! village, cadre, flag and days waiting (each alone and combined), keyset "next", the
//! counts behind the filter bar, one stored revision with its decision, and a household's
//! earlier photos; the decisions, stale and double ones refused, and a returned visit's
//! way back to its cadre. A backend runs them all with one `review_conformance_tests!` line.

use fieldsync_model::codes::{ReviewState, VisitMode};
use fieldsync_model::evidence::EvidenceFlag;
use fieldsync_model::review::{Decision, DecisionRequest, ReturnReason};
use fieldsync_model::sync::MutationPayload;
use fieldsync_model::visit::Visit;
use time::Duration;
use time::macros::datetime;

use crate::store::conformance::{
    TOWNSHIP_ONE, TOWNSHIP_TWO, VILLAGE_ONE_A, VILLAGE_ONE_B, VISIT_TIME, apply,
    assert_all_applied, batch, decision, new_id, photo, principal, push_visit, revise, same_card,
    seeded, visit,
};
use crate::store::{
    PushBatch, QueueFilter, QueuePosition, ScopeCursor, Store, StoreError, StoredDecision,
    UploadRecord, UserRecord,
};

/// Push one visit (and its photos) received by the server at `received_at`.
async fn push_at(
    store: &dyn Store,
    user: &UserRecord,
    seq: u64,
    visit: &Visit,
    photos: &[fieldsync_model::visit::PhotoRecord],
    received_at: time::OffsetDateTime,
) {
    let mut entries = vec![apply(seq, MutationPayload::SubmitVisit(visit.clone()))];
    for (index, photo) in photos.iter().enumerate() {
        entries.push(apply(
            seq + 1 + index as u64,
            MutationPayload::AddPhoto(photo.clone()),
        ));
    }
    let device_id = format!("device-{}", user.username);
    let mut pushed = batch(user, &device_id, entries);
    pushed.received_at = received_at;
    let result = store.apply_push(pushed).await.expect("push");
    assert_all_applied(&result);
}

/// Make a photo's bytes "arrived" (its blob row exists).
async fn arrive(store: &dyn Store, user: &UserRecord, sha256: &str) {
    let upload = store
        .start_upload(UploadRecord {
            upload_id: new_id(),
            sha256: sha256.into(),
            size_bytes: 245_000,
            mime_type: "image/jpeg".into(),
            committed_offset: 0,
            complete: false,
            user_id: user.user_id.clone(),
            last_activity_at: VISIT_TIME,
        })
        .await
        .expect("start upload");
    store
        .complete_upload(&upload.upload_id, VISIT_TIME)
        .await
        .expect("complete upload");
}

fn ids(items: &[crate::store::QueueItem]) -> Vec<&String> {
    items.iter().map(|item| &item.visit_id).collect()
}

/// Every queue filter narrows in the store, alone and combined, and the counts of the
/// filter bar count each dimension with the other filters applied.
pub async fn review_loop_queue_filters_and_facets(store: &dyn Store) {
    let fixture = seeded(store).await;
    // Waiting since: wang 6 days, zhao 3 days, li 1 day (at `now`).
    let now = VISIT_TIME + Duration::days(7);
    let wang = visit(&fixture.wang, VisitMode::InPerson, VISIT_TIME);
    let zhao = visit(&fixture.zhao, VisitMode::Phone, VISIT_TIME);
    let li = visit(&fixture.li, VisitMode::InPerson, VISIT_TIME);
    push_at(
        store,
        &fixture.cadre_a,
        1,
        &wang,
        &[],
        now - Duration::days(6),
    )
    .await;
    push_at(
        store,
        &fixture.cadre_a,
        2,
        &zhao,
        &[],
        now - Duration::days(3),
    )
    .await;
    push_at(
        store,
        &fixture.cadre_b,
        1,
        &li,
        &[],
        now - Duration::days(1),
    )
    .await;
    store
        .save_visit_flags(
            &li.visit_id,
            1,
            vec![EvidenceFlag::GpsFar {
                distance_m: 900.0,
                allowed_m: 312.0,
            }],
        )
        .await
        .expect("flags");
    store
        .save_visit_flags(
            &wang.visit_id,
            1,
            vec![
                EvidenceFlag::GpsFar {
                    distance_m: 700.0,
                    allowed_m: 312.0,
                },
                EvidenceFlag::GpsMissing,
            ],
        )
        .await
        .expect("flags");
    let queue = |filter: QueueFilter| async move {
        store
            .review_queue(TOWNSHIP_ONE, filter)
            .await
            .expect("queue")
    };

    let all = queue(QueueFilter::default()).await;
    assert_eq!(
        ids(&all),
        [&wang.visit_id, &zhao.visit_id, &li.visit_id],
        "oldest first"
    );
    assert_eq!(all[2].cadre_user_id, fixture.cadre_b.user_id);
    assert_eq!(all[2].cadre_name, "刘干部");

    let village = queue(QueueFilter {
        village_id: Some(VILLAGE_ONE_A.into()),
        ..QueueFilter::default()
    })
    .await;
    assert_eq!(ids(&village), [&wang.visit_id, &li.visit_id]);
    let cadre = queue(QueueFilter {
        cadre_user_id: Some(fixture.cadre_b.user_id.clone()),
        ..QueueFilter::default()
    })
    .await;
    assert_eq!(ids(&cadre), [&li.visit_id]);
    let flagged = queue(QueueFilter {
        flag: Some("gps_far".into()),
        ..QueueFilter::default()
    })
    .await;
    assert_eq!(ids(&flagged), [&wang.visit_id, &li.visit_id]);
    let waiting_three_days = queue(QueueFilter {
        submitted_at_or_before: Some(now - Duration::days(3)),
        ..QueueFilter::default()
    })
    .await;
    assert_eq!(
        ids(&waiting_three_days),
        [&wang.visit_id, &zhao.visit_id],
        "exactly 3 days counts as waiting 3 days"
    );
    let combined = queue(QueueFilter {
        village_id: Some(VILLAGE_ONE_A.into()),
        cadre_user_id: Some(fixture.cadre_a.user_id.clone()),
        flag: Some("gps_far".into()),
        submitted_at_or_before: Some(now - Duration::days(2)),
        ..QueueFilter::default()
    })
    .await;
    assert_eq!(ids(&combined), [&wang.visit_id]);
    let nothing = queue(QueueFilter {
        village_id: Some(VILLAGE_ONE_B.into()),
        flag: Some("gps_far".into()),
        ..QueueFilter::default()
    })
    .await;
    assert!(nothing.is_empty());
    assert!(
        store
            .review_queue(TOWNSHIP_TWO, QueueFilter::default())
            .await
            .expect("other township")
            .is_empty(),
        "another township's queue never shows these"
    );

    // Keyset "next": after a position, whether or not that visit still waits.
    let after_wang = queue(QueueFilter {
        after: Some(QueuePosition {
            submitted_at: all[0].submitted_at,
            visit_id: wang.visit_id.clone(),
        }),
        ..QueueFilter::default()
    })
    .await;
    assert_eq!(ids(&after_wang), [&zhao.visit_id, &li.visit_id]);
    let next_in_village = queue(QueueFilter {
        village_id: Some(VILLAGE_ONE_A.into()),
        limit: 1,
        after: Some(QueuePosition {
            submitted_at: all[0].submitted_at,
            visit_id: wang.visit_id.clone(),
        }),
        ..QueueFilter::default()
    })
    .await;
    assert_eq!(ids(&next_in_village), [&li.visit_id]);

    // The filter bar's counts.
    let cutoffs = vec![
        now - Duration::days(1),
        now - Duration::days(3),
        now - Duration::days(7),
    ];
    let facets = store
        .review_queue_facets(TOWNSHIP_ONE, QueueFilter::default(), cutoffs.clone())
        .await
        .expect("facets");
    assert_eq!(facets.total, 3);
    let pairs = |counts: &[crate::store::FacetCount]| -> Vec<(String, String, u64)> {
        counts
            .iter()
            .map(|count| (count.key.clone(), count.label.clone(), count.count))
            .collect()
    };
    assert_eq!(
        pairs(&facets.by_village),
        [
            (VILLAGE_ONE_A.to_owned(), "东冲村".to_owned(), 2),
            (VILLAGE_ONE_B.to_owned(), "西河村".to_owned(), 1),
        ]
    );
    assert_eq!(
        pairs(&facets.by_cadre),
        [
            (fixture.cadre_b.user_id.clone(), "刘干部".to_owned(), 1),
            (fixture.cadre_a.user_id.clone(), "张干部".to_owned(), 2),
        ]
    );
    assert_eq!(
        pairs(&facets.by_flag),
        [
            ("gps_far".to_owned(), "定位距农户过远".to_owned(), 2),
            ("gps_missing".to_owned(), "缺少定位".to_owned(), 1),
        ]
    );
    assert_eq!(facets.by_age, [3, 2, 0]);

    // With a village chosen, the other dimensions count inside it; the village dimension
    // still shows every village (counted with the other filters).
    let in_village = store
        .review_queue_facets(
            TOWNSHIP_ONE,
            QueueFilter {
                village_id: Some(VILLAGE_ONE_A.into()),
                flag: Some("gps_far".into()),
                ..QueueFilter::default()
            },
            cutoffs,
        )
        .await
        .expect("facets");
    assert_eq!(in_village.total, 2);
    assert_eq!(
        pairs(&in_village.by_village),
        [(VILLAGE_ONE_A.to_owned(), "东冲村".to_owned(), 2)],
        "西河村 has no gps_far visit"
    );
    assert_eq!(in_village.by_cadre.len(), 2);
    assert_eq!(
        pairs(&in_village.by_flag),
        [
            ("gps_far".to_owned(), "定位距农户过远".to_owned(), 2),
            ("gps_missing".to_owned(), "缺少定位".to_owned(), 1),
        ]
    );
    assert_eq!(in_village.by_age, [2, 1, 0]);
    let other_township = store
        .review_queue_facets(TOWNSHIP_TWO, QueueFilter::default(), Vec::new())
        .await
        .expect("facets");
    assert_eq!(other_township.total, 0);
    assert!(other_township.by_village.is_empty() && other_township.by_age.is_empty());
}

/// A returned revision is read back with its decision after its correction arrived, and a
/// household's earlier photos are the received ones its latest revisions list, in the
/// asked months, newest first.
pub async fn review_loop_revision_and_photo_history(store: &dyn Store) {
    let fixture = seeded(store).await;
    let cadre = &fixture.cadre_a;
    // January: a visit with one received photo and one still uploading.
    let mut january = visit(
        &fixture.wang,
        VisitMode::InPerson,
        datetime!(2026-01-15 02:00 UTC),
    );
    let january_received = photo(&january.visit_id);
    let january_pending = photo(&january.visit_id);
    january.photo_ids = vec![
        january_received.photo_id.clone(),
        january_pending.photo_id.clone(),
    ];
    push_at(
        store,
        cadre,
        1,
        &january,
        &[january_received.clone(), january_pending.clone()],
        datetime!(2026-01-15 04:00 UTC),
    )
    .await;
    arrive(store, cadre, &january_received.sha256).await;
    // October of the year before: outside the months asked for.
    let mut october = visit(
        &fixture.wang,
        VisitMode::InPerson,
        datetime!(2025-10-15 02:00 UTC),
    );
    let october_photo = photo(&october.visit_id);
    october.photo_ids = vec![october_photo.photo_id.clone()];
    push_at(
        store,
        cadre,
        4,
        &october,
        std::slice::from_ref(&october_photo),
        datetime!(2025-10-15 04:00 UTC),
    )
    .await;
    arrive(store, cadre, &october_photo.sha256).await;

    // March: the visit under review, returned then corrected with a new photo.
    let mut march = visit(&fixture.wang, VisitMode::InPerson, VISIT_TIME);
    let march_photo = photo(&march.visit_id);
    march.photo_ids = vec![march_photo.photo_id.clone()];
    push_at(
        store,
        cadre,
        6,
        &march,
        std::slice::from_ref(&march_photo),
        VISIT_TIME + Duration::hours(2),
    )
    .await;
    arrive(store, cadre, &march_photo.sha256).await;
    let reasons = vec![
        ReturnReason {
            code: "content_too_short".into(),
            field: "observed_situation".into(),
        },
        ReturnReason {
            code: "photo_unclear".into(),
            field: "photo_ids".into(),
        },
    ];
    store
        .decide(StoredDecision {
            request: DecisionRequest {
                visit_id: march.visit_id.clone(),
                revision: 1,
                content_hash: march.content_hash(),
                decision: Decision::Return,
                reasons: reasons.clone(),
                note: "请补充收入情况并补拍".into(),
                deadline: "2026-03-20".into(),
            },
            reviewer_user_id: fixture.supervisor_one.user_id.clone(),
            decided_at: VISIT_TIME + Duration::days(1),
        })
        .await
        .expect("return");
    let mut corrected = revise(&march);
    let new_photo = photo(&march.visit_id);
    corrected.photo_ids.push(new_photo.photo_id.clone());
    push_at(
        store,
        cadre,
        8,
        &corrected,
        std::slice::from_ref(&new_photo),
        VISIT_TIME + Duration::days(2),
    )
    .await;

    let returned = store
        .visit_revision(&march.visit_id, 1)
        .await
        .expect("read")
        .expect("revision 1 is kept");
    assert_eq!(returned.visit, march);
    assert_eq!(returned.state, ReviewState::Superseded);
    assert_eq!(returned.content_hash, march.content_hash());
    assert_eq!(returned.status.reasons, reasons);
    assert_eq!(returned.status.note, "请补充收入情况并补拍");
    assert_eq!(returned.status.deadline, "2026-03-20");
    assert_eq!(returned.status.reviewer_name, "周审核");
    let latest = store
        .visit_revision(&march.visit_id, 2)
        .await
        .expect("read")
        .expect("revision 2");
    assert_eq!(latest.visit.supersedes_revision, 1);
    assert_eq!(latest.state, ReviewState::Submitted);
    assert_eq!(latest.status.reasons, Vec::new());
    assert_eq!(latest.submitted_at, VISIT_TIME + Duration::days(2));
    assert!(
        store
            .visit_revision(&march.visit_id, 3)
            .await
            .expect("read")
            .is_none()
    );
    assert!(
        store
            .visit_revision(&new_id(), 1)
            .await
            .expect("read")
            .is_none()
    );

    let months: Vec<String> = ["2026-03", "2026-02", "2026-01", "2025-12"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    let history = store
        .household_photo_history(
            &fixture.wang.household_id,
            &march.visit_id,
            months.clone(),
            36,
        )
        .await
        .expect("history");
    let photo_ids: Vec<&str> = history
        .iter()
        .map(|photo| photo.photo.photo_id.as_str())
        .collect();
    assert_eq!(
        photo_ids,
        [january_received.photo_id.as_str()],
        "only received photos of other visits in the asked months"
    );
    assert_eq!(history[0].business_month, "2026-01");
    assert_eq!(history[0].visit_id, january.visit_id);
    assert_eq!(history[0].state, ReviewState::Submitted);
    assert_eq!(history[0].checkin_at, january.checkin_at);

    // From the January visit's point of view, March's received photo is history too; the
    // correction's photo has not arrived.
    let from_january = store
        .household_photo_history(&fixture.wang.household_id, &january.visit_id, months, 36)
        .await
        .expect("history");
    let photo_ids: Vec<&str> = from_january
        .iter()
        .map(|photo| photo.photo.photo_id.as_str())
        .collect();
    assert_eq!(photo_ids, [march_photo.photo_id.as_str()]);
    assert!(
        store
            .household_photo_history(
                &fixture.li.household_id,
                &march.visit_id,
                vec!["2026-03".into()],
                36
            )
            .await
            .expect("history")
            .is_empty(),
        "another household's visits are never mixed in"
    );
}

/// The queue lists the township's submitted visits with what a reviewer needs; the detail
/// shows the latest revision; an approval reaches the cadre's pull.
pub async fn review_queue_detail_and_approve(store: &dyn Store) {
    let fixture = seeded(store).await;
    let visit = visit(&fixture.wang, VisitMode::InPerson, VISIT_TIME);
    let photo = photo(&visit.visit_id);
    let later = self::visit(&fixture.zhao, VisitMode::Phone, VISIT_TIME);
    let result = store
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
    assert_all_applied(&result);
    let second_batch = PushBatch {
        received_at: VISIT_TIME + Duration::hours(5),
        ..batch(
            &fixture.cadre_a,
            "device-a",
            vec![apply(3, MutationPayload::SubmitVisit(later.clone()))],
        )
    };
    store.apply_push(second_batch).await.expect("push later");

    let queue = store
        .review_queue(TOWNSHIP_ONE, QueueFilter::default())
        .await
        .expect("queue");
    assert_eq!(queue.len(), 2);
    let item = &queue[0];
    assert_eq!(item.visit_id, visit.visit_id, "oldest submission first");
    assert_eq!(item.revision, 1);
    assert_eq!(item.household_id, fixture.wang.household_id);
    assert_eq!(item.head_name, "王大山");
    assert_eq!(item.village_id, VILLAGE_ONE_A);
    assert_eq!(item.village_name, "东冲村");
    assert_eq!(item.cadre_name, "张干部");
    assert_eq!(item.mode, VisitMode::InPerson);
    assert_eq!(item.submitted_at, VISIT_TIME + Duration::hours(3));
    assert_eq!(item.photo_count, 1);
    let distance = item.distance_m.expect("distance computed");
    assert!((distance - 111.2).abs() < 1.0, "{distance}");
    assert_eq!(queue[1].mode, VisitMode::Phone);

    let village_b = store
        .review_queue(
            TOWNSHIP_ONE,
            QueueFilter {
                village_id: Some(VILLAGE_ONE_B.into()),
                ..QueueFilter::default()
            },
        )
        .await
        .expect("filtered queue");
    assert_eq!(village_b.len(), 1);
    assert_eq!(village_b[0].visit_id, later.visit_id);
    let second_page = store
        .review_queue(
            TOWNSHIP_ONE,
            QueueFilter {
                village_id: None,
                limit: 1,
                offset: 1,
                ..QueueFilter::default()
            },
        )
        .await
        .expect("paged queue");
    assert_eq!(second_page.len(), 1);
    assert_eq!(second_page[0].visit_id, later.visit_id);
    assert!(
        store
            .review_queue(TOWNSHIP_TWO, QueueFilter::default())
            .await
            .expect("other queue")
            .is_empty()
    );

    let detail = store
        .visit_detail(&visit.visit_id)
        .await
        .expect("detail")
        .expect("visit exists");
    assert_eq!(detail.visit, visit);
    assert!(same_card(&detail.household, &fixture.wang));
    assert_eq!(detail.cadre_user_id, fixture.cadre_a.user_id);
    assert_eq!(detail.cadre_name, "张干部");
    assert_eq!(detail.state, ReviewState::Submitted);
    assert_eq!(detail.content_hash, visit.content_hash());
    assert_eq!(detail.photos, vec![photo.clone()]);
    assert!(
        detail.photo_ids_received.is_empty(),
        "no bytes uploaded yet"
    );
    assert_eq!(detail.status.state, ReviewState::Submitted);
    assert_eq!(detail.status.decided_at, None);
    assert_eq!(store.visit_detail(&new_id()).await.expect("detail"), None);

    let cadre = principal(&fixture.cadre_a, "device-a");
    let before = store
        .pull_changes(&cadre, &ScopeCursor::default(), 1000)
        .await
        .expect("pull");
    let state = store
        .decide(decision(&visit, Decision::Approve, &fixture.supervisor_one))
        .await
        .expect("approve");
    assert_eq!(state, ReviewState::Approved);

    let queue = store
        .review_queue(TOWNSHIP_ONE, QueueFilter::default())
        .await
        .expect("queue");
    assert_eq!(queue.len(), 1, "the approved visit left the queue");
    let after = store
        .pull_changes(&cadre, &before.next_cursor, 1000)
        .await
        .expect("pull after approval");
    assert_eq!(after.visit_statuses.len(), 1);
    let status = &after.visit_statuses[0];
    assert_eq!(status.visit_id, visit.visit_id);
    assert_eq!(status.state, ReviewState::Approved);
    assert_eq!(status.reviewer_name, "周审核");
    assert_eq!(status.decided_at, Some(VISIT_TIME + Duration::days(1)));
}

/// Decisions on a stale revision, a wrong hash, an unknown visit, or an already decided
/// revision are refused.
pub async fn stale_and_double_decisions_are_refused(store: &dyn Store) {
    let fixture = seeded(store).await;
    let first = visit(&fixture.wang, VisitMode::InPerson, VISIT_TIME);
    push_visit(store, &fixture.cadre_a, "device-a", 1, &first).await;
    let second = revise(&first);
    push_visit(store, &fixture.cadre_a, "device-a", 2, &second).await;

    let stale = store
        .decide(decision(&first, Decision::Approve, &fixture.supervisor_one))
        .await;
    assert!(
        matches!(stale, Err(StoreError::StaleDecision(_))),
        "{stale:?}"
    );

    let mut wrong_hash = decision(&second, Decision::Approve, &fixture.supervisor_one);
    wrong_hash.request.content_hash = first.content_hash();
    let refused = store.decide(wrong_hash).await;
    assert!(
        matches!(refused, Err(StoreError::StaleDecision(_))),
        "{refused:?}"
    );

    let mut unknown = decision(&second, Decision::Approve, &fixture.supervisor_one);
    unknown.request.visit_id = new_id();
    let missing = store.decide(unknown).await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );

    let approved = store
        .decide(decision(
            &second,
            Decision::Approve,
            &fixture.supervisor_one,
        ))
        .await
        .expect("approve");
    assert_eq!(approved, ReviewState::Approved);
    let twice = store
        .decide(decision(&second, Decision::Return, &fixture.supervisor_one))
        .await;
    assert!(
        matches!(twice, Err(StoreError::StaleDecision(_))),
        "{twice:?}"
    );
    let detail = store
        .visit_detail(&first.visit_id)
        .await
        .expect("detail")
        .expect("exists");
    assert_eq!(detail.state, ReviewState::Approved);
}

/// A return carries its reasons to the cadre; the corrected revision supersedes it and goes
/// back into the queue.
pub async fn returned_visit_reaches_the_cadre_and_is_superseded(store: &dyn Store) {
    let fixture = seeded(store).await;
    let first = visit(&fixture.wang, VisitMode::InPerson, VISIT_TIME);
    push_visit(store, &fixture.cadre_a, "device-a", 1, &first).await;
    let cadre = principal(&fixture.cadre_a, "device-a");
    let cursor = store
        .pull_changes(&cadre, &ScopeCursor::default(), 1000)
        .await
        .expect("pull")
        .next_cursor;

    let state = store
        .decide(decision(&first, Decision::Return, &fixture.supervisor_one))
        .await
        .expect("return");
    assert_eq!(state, ReviewState::Returned);
    let pulled = store
        .pull_changes(&cadre, &cursor, 1000)
        .await
        .expect("pull");
    assert_eq!(pulled.visit_statuses.len(), 1);
    let status = &pulled.visit_statuses[0];
    assert_eq!(status.state, ReviewState::Returned);
    assert_eq!(status.household_id, fixture.wang.household_id);
    assert_eq!(
        status.reasons,
        vec![ReturnReason {
            code: "photo_unclear".into(),
            field: "photo_ids".into()
        }]
    );
    assert_eq!(status.note, "请补拍户主合影");
    assert_eq!(status.deadline, "2026-03-20");
    assert_eq!(status.reviewer_name, "周审核");
    assert!(
        store
            .review_queue(TOWNSHIP_ONE, QueueFilter::default())
            .await
            .expect("queue")
            .is_empty()
    );

    let second = revise(&first);
    push_visit(store, &fixture.cadre_a, "device-a", 2, &second).await;
    let pulled = store
        .pull_changes(&cadre, &pulled.next_cursor, 1000)
        .await
        .expect("pull");
    let states: Vec<(u32, ReviewState)> = pulled
        .visit_statuses
        .iter()
        .map(|status| (status.revision, status.state))
        .collect();
    assert_eq!(
        states,
        vec![(1, ReviewState::Superseded), (2, ReviewState::Submitted)]
    );
    let queue = store
        .review_queue(TOWNSHIP_ONE, QueueFilter::default())
        .await
        .expect("queue");
    assert_eq!(queue.len(), 1);
    assert_eq!(queue[0].revision, 2);
}

/// Registers every check above as one `#[tokio::test]` of the invoking backend, each on the
/// fresh store (and its guard) that `$fresh_store()` returns, or, written `async $fresh_store`,
/// on the store that `$fresh_store(test_name).await` returns (skipped when it is `None`).
#[cfg(test)]
macro_rules! review_conformance_tests {
    ($($fresh_store:tt)+) => {
        $crate::store::conformance::checks_as_tests!(
            $($fresh_store)+,
            review,
            [
                review_loop_queue_filters_and_facets,
                review_loop_revision_and_photo_history,
                review_queue_detail_and_approve,
                stale_and_double_decisions_are_refused,
                returned_visit_reaches_the_cadre_and_is_superseded,
            ]
        );
    };
}
#[cfg(test)]
pub(crate) use review_conformance_tests;
