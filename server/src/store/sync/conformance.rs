//! Conformance checks of [`SyncStore`](super::SyncStore): push dedupe and replay, rejected
//! and reused entries, revisions, pull scope and paging, register merges and conflicts,
//! heartbeats, memoised reads, reassignment-free scope sequences and compaction. A backend
//! runs them all with one `sync_conformance_tests!` line.

use fieldsync_model::codes::{Relation, ReviewState, VisitMode};
use fieldsync_model::hlc::Hlc;
use fieldsync_model::household::Member;
use fieldsync_model::income::IncomeRegistration;
use fieldsync_model::register::{FieldEdit, FieldTarget, Stamp};
use fieldsync_model::sync::{MutationOutcome, MutationPayload, RejectCode};
use fieldsync_model::visit::{PhotoRecord, Visit};
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};

use crate::store::conformance::*;
use crate::store::sessions::conformance::session_record;
use crate::store::{
    ConflictResolution, Heartbeat, PushAction, PushBatch, PushEntry, PushResult, QueueFilter,
    ScopeCursor, SessionEndReason, Store, StoreError,
};

/// Compaction drops superseded change-log entries without losing any current record, keeps
/// tombstones until the horizon, and then raises the floor past them.
pub async fn compaction_keeps_current_records_and_expires_old_tombstones(store: &dyn Store) {
    let fixture = seeded(store).await;
    let cadre_a = principal(&fixture.cadre_a, "phone-a");
    let cadre_b = principal(&fixture.cadre_b, "phone-b");
    let households_of = |changes: &super::PullChanges| {
        let mut ids: Vec<String> = changes
            .households
            .iter()
            .map(|household| household.household_id.clone())
            .collect();
        ids.sort();
        ids
    };
    let cursor_a = store
        .pull_changes(&cadre_a, &ScopeCursor::default(), 1000)
        .await
        .expect("a")
        .next_cursor;
    store
        .reassign_household(
            &fixture.wang.household_id,
            &fixture.cadre_b.user_id,
            VISIT_TIME,
        )
        .await
        .expect("reassign");
    let scope_a = households_of(
        &store
            .pull_changes(&cadre_a, &ScopeCursor::default(), 1000)
            .await
            .expect("a"),
    );
    let scope_b = households_of(
        &store
            .pull_changes(&cadre_b, &ScopeCursor::default(), 1000)
            .await
            .expect("b"),
    );

    // Before the horizon: superseded entries go, the tombstone stays, no floor.
    let early = store
        .compact_change_log(VISIT_TIME - Duration::days(1))
        .await
        .expect("compact");
    assert!(
        early.superseded_deleted > 0,
        "the reassignment superseded the seed's household entry"
    );
    assert_eq!(early.tombstones_deleted, 0);
    assert!(early.floors.is_empty(), "{early:?}");
    assert_eq!(
        households_of(
            &store
                .pull_changes(&cadre_a, &ScopeCursor::default(), 1000)
                .await
                .expect("a")
        ),
        scope_a
    );
    assert_eq!(
        households_of(
            &store
                .pull_changes(&cadre_b, &ScopeCursor::default(), 1000)
                .await
                .expect("b")
        ),
        scope_b,
        "a fresh download still sees every current household"
    );
    assert_eq!(
        store
            .pull_changes(&cadre_a, &cursor_a, 1000)
            .await
            .expect("old cursor")
            .removed_household_ids,
        vec![fixture.wang.household_id.clone()],
        "a phone inside the horizon still learns of the removal"
    );

    // Past the horizon: the tombstone expires and the floor moves past the old cursor.
    let late = store
        .compact_change_log(VISIT_TIME + Duration::days(1))
        .await
        .expect("compact");
    assert_eq!(late.tombstones_deleted, 1);
    let floor = late.floors.get(TOWNSHIP_ONE).copied().unwrap_or(0);
    assert!(
        floor > cursor_a.get(TOWNSHIP_ONE),
        "{late:?} vs cursor {cursor_a:?}"
    );
    assert_eq!(
        late.floors.keys().collect::<Vec<_>>(),
        vec![TOWNSHIP_ONE],
        "the tombstone was in wang's township; township two has no floor"
    );
    let bounds = store.change_log_bounds().await.expect("bounds");
    assert_eq!(bounds.of(TOWNSHIP_ONE).floor_seq, floor);
    assert_eq!(bounds.of(TOWNSHIP_TWO).floor_seq, 0);
    assert!(
        bounds.check(&cursor_a).is_err(),
        "the old cursor is below its township's floor"
    );
    let again = store
        .compact_change_log(VISIT_TIME + Duration::days(1))
        .await
        .expect("compact again");
    assert_eq!(
        (
            again.superseded_deleted,
            again.tombstones_deleted,
            &again.floors
        ),
        (0, 0, &late.floors),
        "compaction is idempotent"
    );
    assert_eq!(
        households_of(
            &store
                .pull_changes(&cadre_b, &ScopeCursor::default(), 1000)
                .await
                .expect("b")
        ),
        scope_b
    );
}

/// A visit and its photo apply; re-sending the same (device, seq) in a new batch is a
/// duplicate and stores nothing new.
pub async fn push_applies_and_dedupes_resent_seqs(store: &dyn Store) {
    let fixture = seeded(store).await;
    let visit = visit(&fixture.wang, VisitMode::InPerson, VISIT_TIME);
    let photo = photo(&visit.visit_id);
    let entries = vec![
        apply(1, MutationPayload::SubmitVisit(visit.clone())),
        apply(2, MutationPayload::AddPhoto(photo.clone())),
    ];
    let first = store
        .apply_push(batch(&fixture.cadre_a, "device-a", entries.clone()))
        .await
        .expect("push");
    assert_eq!(
        first,
        PushResult {
            outcomes: vec![(1, MutationOutcome::Applied), (2, MutationOutcome::Applied)],
            last_processed_seq: 2,
        }
    );
    assert_eq!(
        store.visit_owner(&visit.visit_id).await.expect("owner"),
        Some((
            fixture.wang.household_id.clone(),
            fixture.cadre_a.user_id.clone()
        ))
    );
    assert_eq!(
        store.get_photo(&photo.photo_id).await.expect("photo"),
        Some(photo.clone())
    );

    let resent = store
        .apply_push(batch(&fixture.cadre_a, "device-a", entries))
        .await
        .expect("re-push");
    assert_eq!(
        resent,
        PushResult {
            outcomes: vec![
                (1, MutationOutcome::Duplicate),
                (2, MutationOutcome::Duplicate)
            ],
            last_processed_seq: 2,
        }
    );
    let queue = store
        .review_queue(TOWNSHIP_ONE, QueueFilter::default())
        .await
        .expect("queue");
    assert_eq!(queue.len(), 1, "the re-sent visit must not be stored twice");
    assert_eq!(queue[0].photo_count, 1);

    // The same seq from another device is a different mutation.
    let other_device_visit = self::visit(&fixture.zhao, VisitMode::InPerson, VISIT_TIME);
    let other = store
        .apply_push(batch(
            &fixture.cadre_a,
            "device-a2",
            vec![apply(1, MutationPayload::SubmitVisit(other_device_visit))],
        ))
        .await
        .expect("push from another device");
    assert_eq!(other.outcomes, vec![(1, MutationOutcome::Applied)]);
    assert_eq!(other.last_processed_seq, 1);
}

/// A batch id replayed with the same fingerprint gets the stored answer; with another
/// fingerprint it is refused.
pub async fn same_batch_id_replays_or_is_refused(store: &dyn Store) {
    let fixture = seeded(store).await;
    let visit = visit(&fixture.wang, VisitMode::InPerson, VISIT_TIME);
    let original = batch(
        &fixture.cadre_a,
        "device-a",
        vec![
            apply(1, MutationPayload::SubmitVisit(visit.clone())),
            PushEntry {
                seq: 2,
                mutation_id: new_id(),
                hlc: 2,
                action: PushAction::Reject {
                    code: RejectCode::InvalidRecord,
                    message: "gps.accuracy_m: must be a non-negative number".into(),
                },
            },
        ],
    );
    let first = store.apply_push(original.clone()).await.expect("push");
    let replay = store.apply_push(original.clone()).await.expect("replay");
    assert_eq!(
        replay, first,
        "a replay returns the stored result unchanged"
    );
    assert_eq!(
        replay.outcomes[0],
        (1, MutationOutcome::Applied),
        "the replay answers as the first time, not with DUPLICATE"
    );

    let tampered = PushBatch {
        fingerprint: "0".repeat(64),
        ..original.clone()
    };
    match store.apply_push(tampered).await {
        Err(StoreError::BatchReused(batch_id)) => assert_eq!(batch_id, original.batch_id),
        other => panic!("expected BatchReused, got {other:?}"),
    }
}

/// A pre-rejected entry still consumes its seq, so one bad record never blocks the queue.
pub async fn rejected_entry_consumes_its_seq(store: &dyn Store) {
    let fixture = seeded(store).await;
    let reject = PushEntry {
        seq: 1,
        mutation_id: new_id(),
        hlc: 1,
        action: PushAction::Reject {
            code: RejectCode::HouseholdOutOfScope,
            message: "not your household".into(),
        },
    };
    let result = store
        .apply_push(batch(&fixture.cadre_a, "device-a", vec![reject.clone()]))
        .await
        .expect("push");
    assert_eq!(result.last_processed_seq, 1);
    assert_eq!(
        result.outcomes,
        vec![(
            1,
            MutationOutcome::Rejected {
                code: RejectCode::HouseholdOutOfScope,
                message: "not your household".into()
            }
        )]
    );
    let again = store
        .apply_push(batch(&fixture.cadre_a, "device-a", vec![reject]))
        .await
        .expect("push again");
    assert_eq!(again.outcomes, vec![(1, MutationOutcome::Duplicate)]);

    // An empty batch reports the device's progress without changing it.
    let empty = store
        .apply_push(batch(&fixture.cadre_a, "device-a", Vec::new()))
        .await
        .expect("empty push");
    assert_eq!(empty.last_processed_seq, 1);
}

/// References to records the server does not have are rejected per mutation, not per batch.
pub async fn unknown_references_are_rejected(store: &dyn Store) {
    let fixture = seeded(store).await;
    let ghost_household = household("无此户", TOWNSHIP_ONE, VILLAGE_ONE_A, 30.7);
    let orphan_photo = photo(&new_id());
    let result = store
        .apply_push(batch(
            &fixture.cadre_a,
            "device-a",
            vec![
                apply(1, MutationPayload::AddPhoto(orphan_photo.clone())),
                apply(
                    2,
                    MutationPayload::SubmitVisit(visit(
                        &ghost_household,
                        VisitMode::InPerson,
                        VISIT_TIME,
                    )),
                ),
                apply(
                    3,
                    MutationPayload::RegisterIncome(income(&ghost_household, 2026, 1)),
                ),
                apply(
                    4,
                    MutationPayload::RegisterIncome(income(&fixture.wang, 2026, 1)),
                ),
            ],
        ))
        .await
        .expect("push");
    let codes: Vec<Option<RejectCode>> = result
        .outcomes
        .iter()
        .map(|(_, o)| rejected_code(o))
        .collect();
    assert_eq!(
        codes,
        vec![
            Some(RejectCode::UnknownVisit),
            Some(RejectCode::UnknownHousehold),
            Some(RejectCode::UnknownHousehold),
            None
        ]
    );
    assert_eq!(result.outcomes[3].1, MutationOutcome::Applied);
    assert_eq!(result.last_processed_seq, 4);
    assert_eq!(
        store
            .get_photo(&orphan_photo.photo_id)
            .await
            .expect("photo"),
        None
    );
}

/// An id reused for different content is rejected; identical content is a duplicate.
pub async fn reused_ids_are_rejected(store: &dyn Store) {
    let fixture = seeded(store).await;
    let visit = visit(&fixture.wang, VisitMode::InPerson, VISIT_TIME);
    let photo = photo(&visit.visit_id);
    let registration = income(&fixture.wang, 2026, 1);
    let first = store
        .apply_push(batch(
            &fixture.cadre_a,
            "device-a",
            vec![
                apply(1, MutationPayload::SubmitVisit(visit.clone())),
                apply(2, MutationPayload::AddPhoto(photo.clone())),
                apply(3, MutationPayload::RegisterIncome(registration.clone())),
            ],
        ))
        .await
        .expect("push");
    assert_all_applied(&first);

    let changed_visit = Visit {
        needs: "希望提供技能培训".into(),
        ..visit.clone()
    };
    let changed_photo = PhotoRecord {
        size_bytes: photo.size_bytes + 1,
        ..photo.clone()
    };
    let changed_income = IncomeRegistration {
        household_size: 4,
        ..registration.clone()
    };
    // A visit id reused for another household is a collision too.
    let moved_visit = Visit {
        household_id: fixture.zhao.household_id.clone(),
        revision: 2,
        supersedes_revision: 1,
        ..visit.clone()
    };
    let result = store
        .apply_push(batch(
            &fixture.cadre_a,
            "device-a",
            vec![
                apply(4, MutationPayload::SubmitVisit(changed_visit)),
                apply(5, MutationPayload::AddPhoto(changed_photo)),
                apply(6, MutationPayload::RegisterIncome(changed_income)),
                apply(7, MutationPayload::SubmitVisit(visit.clone())),
                apply(8, MutationPayload::AddPhoto(photo.clone())),
                apply(9, MutationPayload::RegisterIncome(registration.clone())),
                apply(10, MutationPayload::SubmitVisit(moved_visit)),
            ],
        ))
        .await
        .expect("push");
    let outcomes: Vec<MutationOutcome> = result.outcomes.into_iter().map(|(_, o)| o).collect();
    let codes: Vec<Option<RejectCode>> = outcomes.iter().map(rejected_code).collect();
    assert_eq!(
        codes,
        vec![
            Some(RejectCode::IdReused),
            Some(RejectCode::IdReused),
            Some(RejectCode::IdReused),
            None,
            None,
            None,
            Some(RejectCode::IdReused),
        ]
    );
    assert_eq!(&outcomes[3..6], &[const { MutationOutcome::Duplicate }; 3]);
    assert_eq!(
        store
            .income_registrations(&fixture.wang.household_id)
            .await
            .expect("income"),
        vec![registration]
    );
}

/// A new revision supersedes an open older one; an older revision arriving late is stale.
pub async fn new_revision_supersedes_the_old_one(store: &dyn Store) {
    let fixture = seeded(store).await;
    let first = visit(&fixture.wang, VisitMode::InPerson, VISIT_TIME);
    push_visit(store, &fixture.cadre_a, "device-a", 1, &first).await;
    let second = revise(&first);
    push_visit(store, &fixture.cadre_a, "device-a", 2, &second).await;

    let queue = store
        .review_queue(TOWNSHIP_ONE, QueueFilter::default())
        .await
        .expect("queue");
    assert_eq!(queue.len(), 1);
    assert_eq!(
        (queue[0].visit_id.as_str(), queue[0].revision),
        (first.visit_id.as_str(), 2)
    );

    let detail = store
        .visit_detail(&first.visit_id)
        .await
        .expect("detail")
        .expect("visit exists");
    assert_eq!(detail.visit, second);
    assert_eq!(detail.state, ReviewState::Submitted);
    assert_eq!(detail.content_hash, second.content_hash());

    // The phone learns that revision 1 was superseded.
    let pulled = store
        .pull_changes(
            &principal(&fixture.cadre_a, "device-a"),
            &ScopeCursor::default(),
            1000,
        )
        .await
        .expect("pull");
    let states: Vec<(u32, ReviewState)> = pulled
        .visit_statuses
        .iter()
        .filter(|status| status.visit_id == first.visit_id)
        .map(|status| (status.revision, status.state))
        .collect();
    assert!(states.contains(&(1, ReviewState::Superseded)), "{states:?}");
    assert!(states.contains(&(2, ReviewState::Submitted)), "{states:?}");

    // Revision 3 stored first, then a never-seen revision 2 of another visit: stale.
    let other = visit(&fixture.zhao, VisitMode::InPerson, VISIT_TIME);
    let other_three = Visit {
        revision: 3,
        supersedes_revision: 2,
        ..other.clone()
    };
    push_visit(store, &fixture.cadre_a, "device-a", 3, &other_three).await;
    let other_two = Visit {
        revision: 2,
        supersedes_revision: 1,
        ..other
    };
    let late = store
        .apply_push(batch(
            &fixture.cadre_a,
            "device-a",
            vec![apply(4, MutationPayload::SubmitVisit(other_two))],
        ))
        .await
        .expect("push");
    assert_eq!(
        rejected_code(&late.outcomes[0].1),
        Some(RejectCode::StaleRevision)
    );
}

/// A visit belongs to the author of its first revision: another cadre (a second cadre
/// paired with the same household sees the visit in their pull) cannot push a revision of
/// it, which would supersede the author's open revision, nor resend one of its revisions.
/// Nothing stored changes, and the author can still correct their visit.
pub async fn only_the_author_revises_a_visit(store: &dyn Store) {
    let fixture = seeded(store).await;
    let first = visit(&fixture.wang, VisitMode::InPerson, VISIT_TIME);
    push_visit(store, &fixture.cadre_a, "device-a", 1, &first).await;

    let taken_over = revise(&first);
    let answer = store
        .apply_push(batch(
            &fixture.cadre_b,
            "device-b",
            vec![
                apply(1, MutationPayload::SubmitVisit(taken_over)),
                apply(2, MutationPayload::SubmitVisit(first.clone())),
            ],
        ))
        .await
        .expect("push answered");
    for (_, outcome) in &answer.outcomes {
        assert_eq!(
            rejected_code(outcome),
            Some(RejectCode::HouseholdOutOfScope),
            "{outcome:?}"
        );
    }
    let detail = store
        .visit_detail(&first.visit_id)
        .await
        .expect("detail")
        .expect("visit exists");
    assert_eq!(
        detail.visit, first,
        "the author's revision is still the latest"
    );
    assert_eq!(detail.state, ReviewState::Submitted);
    assert_eq!(detail.cadre_user_id, fixture.cadre_a.user_id);

    let corrected = revise(&first);
    push_visit(store, &fixture.cadre_a, "device-a", 2, &corrected).await;
    let detail = store
        .visit_detail(&first.visit_id)
        .await
        .expect("detail")
        .expect("visit exists");
    assert_eq!(detail.visit, corrected);
}

/// A cadre's pull holds only paired households; a supervisor's only the township; the
/// county sees everything; the cursor advances past what was delivered.
pub async fn pull_is_scoped_to_the_principal(store: &dyn Store) {
    let fixture = seeded(store).await;
    let cadre_a = principal(&fixture.cadre_a, "device-a");
    let first = store
        .pull_changes(&cadre_a, &ScopeCursor::default(), 1000)
        .await
        .expect("pull");
    let mut ids: Vec<&str> = first
        .households
        .iter()
        .map(|h| h.household_id.as_str())
        .collect();
    ids.sort_unstable();
    let mut expected = vec![
        fixture.wang.household_id.as_str(),
        fixture.zhao.household_id.as_str(),
    ];
    expected.sort_unstable();
    assert_eq!(ids, expected, "cadre A gets exactly the paired households");
    assert!(!first.has_more);
    assert!(first.next_cursor.get(TOWNSHIP_ONE) > 0);
    assert_eq!(
        first
            .next_cursor
            .iter()
            .map(|(scope, _)| scope)
            .collect::<Vec<_>>(),
        vec![TOWNSHIP_ONE],
        "the cursor names exactly the cadre's townships"
    );
    let wang = first
        .households
        .iter()
        .find(|h| h.household_id == fixture.wang.household_id)
        .expect("wang delivered");
    assert!(same_card(wang, &fixture.wang));

    // Cadre B visits li; cadre A must not see that status, cadre B must.
    let li_visit = visit(&fixture.li, VisitMode::InPerson, VISIT_TIME);
    push_visit(store, &fixture.cadre_b, "device-b", 1, &li_visit).await;
    let again = store
        .pull_changes(&cadre_a, &first.next_cursor, 1000)
        .await
        .expect("pull again");
    assert!(again.households.is_empty());
    assert!(
        again.visit_statuses.is_empty(),
        "{:?}",
        again.visit_statuses
    );
    assert!(
        again.next_cursor.get(TOWNSHIP_ONE) > first.next_cursor.get(TOWNSHIP_ONE),
        "an empty pull moves past changes outside the scope, so a quiet phone stays ahead of \
         the compaction floor"
    );
    let quiet = store
        .pull_changes(&cadre_a, &again.next_cursor, 1000)
        .await
        .expect("pull once more");
    assert_eq!(
        quiet.next_cursor, again.next_cursor,
        "nothing new: the cursor stays"
    );

    let cadre_b = store
        .pull_changes(
            &principal(&fixture.cadre_b, "device-b"),
            &ScopeCursor::default(),
            1000,
        )
        .await
        .expect("pull b");
    let b_ids: Vec<&str> = cadre_b
        .households
        .iter()
        .map(|h| h.household_id.as_str())
        .collect();
    assert_eq!(b_ids, vec![fixture.li.household_id.as_str()]);
    assert_eq!(cadre_b.visit_statuses.len(), 1);
    assert_eq!(cadre_b.visit_statuses[0].visit_id, li_visit.visit_id);
    assert_eq!(cadre_b.visit_statuses[0].state, ReviewState::Submitted);

    let township_two = store
        .pull_changes(
            &principal(&fixture.supervisor_two, "console"),
            &ScopeCursor::default(),
            1000,
        )
        .await
        .expect("pull township");
    let t2_ids: Vec<&str> = township_two
        .households
        .iter()
        .map(|h| h.household_id.as_str())
        .collect();
    assert_eq!(t2_ids, vec![fixture.chen.household_id.as_str()]);
    assert!(township_two.visit_statuses.is_empty());

    let township_one = store
        .pull_changes(
            &principal(&fixture.supervisor_one, "console"),
            &ScopeCursor::default(),
            1000,
        )
        .await
        .expect("pull township one");
    assert_eq!(township_one.households.len(), 3);
    assert_eq!(township_one.visit_statuses.len(), 1);

    let county = store
        .pull_changes(
            &principal(&fixture.admin, "console"),
            &ScopeCursor::default(),
            1000,
        )
        .await
        .expect("pull county");
    assert_eq!(county.households.len(), 4);
}

/// Small pages: `has_more` until the end, each page starting after the previous cursor.
pub async fn pull_pages_with_cursor_and_has_more(store: &dyn Store) {
    let fixture = seeded(store).await;
    let supervisor = principal(&fixture.supervisor_one, "console");
    let mut cursor = ScopeCursor::default();
    let mut delivered = Vec::new();
    let mut pages = 0;
    loop {
        let page = store
            .pull_changes(&supervisor, &cursor, 1)
            .await
            .expect("pull page");
        pages += 1;
        assert!(page.households.len() <= 1);
        assert!(
            page.next_cursor.get(TOWNSHIP_ONE) > cursor.get(TOWNSHIP_ONE),
            "the cursor advances on every non-empty page"
        );
        cursor = page.next_cursor;
        delivered.extend(page.households.into_iter().map(|h| h.household_id));
        if !page.has_more {
            break;
        }
        assert!(pages < 10, "paging does not terminate");
    }
    assert_eq!(pages, 3);
    delivered.sort_unstable();
    let mut expected = vec![
        fixture.wang.household_id.clone(),
        fixture.zhao.household_id.clone(),
        fixture.li.household_id.clone(),
    ];
    expected.sort_unstable();
    assert_eq!(delivered, expected);
    let tail = store
        .pull_changes(&supervisor, &cursor, 1)
        .await
        .expect("pull tail");
    assert_eq!(tail.next_cursor, cursor);
    assert!(!tail.has_more && tail.households.is_empty());
}

/// A push carries its evidence flags into its own write transaction: one commit stores the
/// batch and the flags of every visit it submitted (and of the one-step neighbours), and
/// an upload completion recomputes every visit of the file in one more commit.
pub async fn push_with_flags_is_one_commit(store: &dyn Store) {
    let fixture = seeded(store).await;
    let settings = fieldsync_model::evidence::EvidenceSettings::default();
    let mut morning = visit(&fixture.wang, VisitMode::InPerson, VISIT_TIME);
    let afternoon = visit(
        &fixture.zhao,
        VisitMode::InPerson,
        VISIT_TIME + Duration::hours(4),
    );
    let shared = photo(&morning.visit_id);
    morning.photo_ids = vec![shared.photo_id.clone()];
    let targets = vec![
        crate::store::FlagTarget {
            seq: 1,
            visit_id: morning.visit_id.clone(),
            photo_sha256: None,
        },
        crate::store::FlagTarget {
            seq: 2,
            visit_id: morning.visit_id.clone(),
            photo_sha256: Some(shared.sha256.clone()),
        },
        crate::store::FlagTarget {
            seq: 3,
            visit_id: afternoon.visit_id.clone(),
            photo_sha256: None,
        },
    ];
    let before = store.committed_writes();
    let result = store
        .apply_push_with_flags(
            batch(
                &fixture.cadre_a,
                "phone-a",
                vec![
                    apply(1, MutationPayload::SubmitVisit(morning.clone())),
                    apply(2, MutationPayload::AddPhoto(shared.clone())),
                    apply(3, MutationPayload::SubmitVisit(afternoon.clone())),
                ],
            ),
            super::PushFlagWork {
                targets,
                settings: settings.clone(),
            },
        )
        .await
        .expect("push");
    assert_all_applied(&result);
    assert_eq!(store.committed_writes() - before, 1, "one durable commit");
    for visit_id in [&morning.visit_id, &afternoon.visit_id] {
        let detail = store
            .visit_detail(visit_id)
            .await
            .expect("detail")
            .expect("visit");
        let flags = detail.flags.expect("computed with the push");
        let inputs = store
            .evidence_inputs(visit_id, settings.near_duplicate_max_bits)
            .await
            .expect("inputs")
            .expect("known");
        assert_eq!(flags, crate::evidence::flags_of(&inputs, &settings));
    }

    store_blob(store, &fixture.cadre_a, &shared.sha256).await;
    store
        .save_photo_meta(&shared.sha256, meta(7, None))
        .await
        .expect("meta");
    let before = store.committed_writes();
    store
        .refresh_flags_of_blob(&shared.sha256, settings.clone())
        .await
        .expect("refresh");
    assert_eq!(store.committed_writes() - before, 1, "one durable commit");
    let inputs = store
        .evidence_inputs(&morning.visit_id, settings.near_duplicate_max_bits)
        .await
        .expect("inputs")
        .expect("known");
    assert!(inputs.photos[0].arrived);
    let detail = store
        .visit_detail(&morning.visit_id)
        .await
        .expect("detail")
        .expect("visit");
    assert_eq!(
        detail.flags,
        Some(crate::evidence::flags_of(&inputs, &settings)),
        "the arrived photo is judged"
    );
}

/// A registration logs a change of its household: a cadre whose cursor is past the
/// household pulls it again, with the registration in force for each quarter (a
/// correction replaces the first), so every phone in scope knows which quarters are taken.
pub async fn registered_income_reaches_the_pull_with_its_household(store: &dyn Store) {
    let fixture = seeded(store).await;
    let cadre = principal(&fixture.cadre_a, "device-a");
    let first_download = store
        .pull_changes(&cadre, &ScopeCursor::default(), 100)
        .await
        .expect("first pull");
    assert!(!first_download.has_more);
    assert!(
        first_download.income_registrations.is_empty(),
        "nothing registered yet"
    );
    let cursor = first_download.next_cursor;
    let q1 = income(&fixture.wang, 2026, 1);
    let mut q1_corrected = income(&fixture.wang, 2026, 1);
    q1_corrected.components.wage_fen += 10_000;
    let q4_last_year = income(&fixture.wang, 2025, 4);
    let result = store
        .apply_push(batch(
            &fixture.cadre_a,
            "device-a",
            vec![
                apply(1, MutationPayload::RegisterIncome(q1)),
                apply(2, MutationPayload::RegisterIncome(q4_last_year.clone())),
                apply(3, MutationPayload::RegisterIncome(q1_corrected.clone())),
            ],
        ))
        .await
        .expect("push");
    assert_all_applied(&result);
    let changes = store
        .pull_changes(&cadre, &cursor, 100)
        .await
        .expect("pull after registering");
    let households: Vec<&str> = changes
        .households
        .iter()
        .map(|household| household.household_id.as_str())
        .collect();
    assert_eq!(households, vec![fixture.wang.household_id.as_str()]);
    assert_eq!(
        changes.income_registrations,
        vec![q4_last_year, q1_corrected],
        "the registration in force per quarter, by year and quarter"
    );
    assert!(
        changes.households[0].server_seq > fixture.wang.server_seq,
        "the household's sequence moved with the registration"
    );
}

/// Two concurrent phone edits converge on the greater (hlc, device) whichever arrives
/// first, and the same conflict record (smaller stamp first) is written either way.
pub async fn register_writes_converge_in_either_order(store: &dyn Store) {
    let fixture = seeded(store).await;
    let early = json!("13811110000");
    let late = json!("13922220000");
    // wang gets A then B; zhao gets B then A.
    let a_wang = household_edit(&fixture.wang, "phone", early.clone(), 0);
    let b_wang = household_edit(&fixture.wang, "phone", late.clone(), 0);
    assert_eq!(
        push_at(store, &fixture.cadre_a, "phone-a", 1, 1_000, a_wang).await,
        MutationOutcome::Applied
    );
    assert_eq!(
        push_at(store, &fixture.cadre_b, "phone-b", 1, 2_000, b_wang).await,
        MutationOutcome::ConflictRecorded
    );
    let a_zhao = household_edit(&fixture.zhao, "phone", early.clone(), 0);
    let b_zhao = household_edit(&fixture.zhao, "phone", late.clone(), 0);
    assert_eq!(
        push_at(store, &fixture.cadre_b, "phone-b", 2, 2_000, b_zhao).await,
        MutationOutcome::Applied
    );
    assert_eq!(
        push_at(store, &fixture.cadre_a, "phone-a", 2, 1_000, a_zhao).await,
        MutationOutcome::ConflictRecorded,
        "the losing write is kept and flagged, not dropped"
    );
    for household in [&fixture.wang, &fixture.zhao] {
        let stored = card(store, household).await;
        assert_eq!(stored.phone, "13922220000", "{}", household.head_name);
        let history = store
            .register_history(&household.household_id, &FieldTarget::Household, "phone")
            .await
            .expect("history");
        assert_eq!(history.len(), 2, "both writes are kept");
        assert_eq!(
            stored.field_seq(&FieldTarget::Household, "phone"),
            history
                .iter()
                .map(|write| write.server_seq)
                .max()
                .unwrap_or(0),
            "the field sequence is the last write's, winner or not"
        );
        assert_eq!(
            stored.server_seq,
            stored.field_seq(&FieldTarget::Household, "phone")
        );
    }
    let conflicts = store.open_conflicts(TOWNSHIP_ONE).await.expect("conflicts");
    assert_eq!(conflicts.len(), 2);
    for conflict in &conflicts {
        assert_eq!(conflict.field, "phone");
        assert_eq!(conflict.first.value, early);
        assert_eq!(conflict.second.value, late);
        assert_eq!(conflict.first_author_name, fixture.cadre_a.display_name);
        assert_eq!(conflict.second_author_name, fixture.cadre_b.display_name);
        // These devices never logged in: no model to name them by.
        assert_eq!(conflict.first_device_name, "");
        assert_eq!(conflict.second_device_name, "");
        assert_eq!(
            conflict.current.as_ref().map(|write| &write.value),
            Some(&late)
        );
    }
    // Each author is told about both conflicts, naming the device of their own edit.
    for (author, device) in [(&fixture.cadre_a, "phone-a"), (&fixture.cadre_b, "phone-b")] {
        let pending = store
            .pending_conflicts(&author.user_id)
            .await
            .expect("pending");
        let mut households: Vec<&str> = pending
            .iter()
            .map(|pending| pending.household_id.as_str())
            .collect();
        households.sort_unstable();
        let mut expected = vec![
            fixture.wang.household_id.as_str(),
            fixture.zhao.household_id.as_str(),
        ];
        expected.sort_unstable();
        assert_eq!(households, expected, "{}", author.display_name);
        for pending in &pending {
            assert_eq!(pending.target, FieldTarget::Household);
            assert_eq!(pending.field, "phone");
            assert_eq!(pending.device_id, device);
        }
    }
    assert!(
        store
            .pending_conflicts(&fixture.supervisor_one.user_id)
            .await
            .expect("pending")
            .is_empty(),
        "someone who edited nothing waits for nothing"
    );
    assert!(
        store
            .open_conflicts(TOWNSHIP_TWO)
            .await
            .expect("t2")
            .is_empty(),
        "conflicts stay in their township"
    );
    let cadre_a = store
        .pull_changes(
            &principal(&fixture.cadre_a, "phone-a"),
            &ScopeCursor::default(),
            1000,
        )
        .await
        .expect("pull");
    let pulled = cadre_a
        .households
        .iter()
        .find(|household| household.household_id == fixture.wang.household_id)
        .expect("wang delivered");
    assert_eq!(pulled.phone, "13922220000", "the merged value syncs down");
}

/// No conflict when the author had seen the other write, wrote the same value, or is the
/// same device; unknown households and bad values are rejected naming the field.
pub async fn no_conflict_for_seen_same_value_or_same_device(store: &dyn Store) {
    let fixture = seeded(store).await;
    let wang = &fixture.wang;
    let edit =
        |field: &str, value: Value, base_seq: i64| household_edit(wang, field, value, base_seq);
    assert_eq!(
        push_at(
            store,
            &fixture.cadre_a,
            "phone-a",
            1,
            1_000,
            edit("phone", json!("1"), 0)
        )
        .await,
        MutationOutcome::Applied
    );
    let seen = card(store, wang)
        .await
        .field_seq(&FieldTarget::Household, "phone");
    assert_eq!(
        push_at(
            store,
            &fixture.cadre_b,
            "phone-b",
            1,
            900,
            edit("phone", json!("2"), seen)
        )
        .await,
        MutationOutcome::Applied,
        "the author saw the other write: an ordinary overwrite (it still loses by HLC)"
    );
    assert_eq!(
        push_at(
            store,
            &fixture.cadre_a,
            "phone-a",
            2,
            1_000,
            edit("address", json!("五组"), 0)
        )
        .await,
        MutationOutcome::Applied
    );
    assert_eq!(
        push_at(
            store,
            &fixture.cadre_b,
            "phone-b",
            2,
            2_000,
            edit("address", json!("五组"), 0)
        )
        .await,
        MutationOutcome::Applied,
        "the same value is no conflict"
    );
    assert_eq!(
        push_at(
            store,
            &fixture.cadre_a,
            "phone-a",
            3,
            1_000,
            edit("main_cause", json!(1), 0)
        )
        .await,
        MutationOutcome::Applied
    );
    assert_eq!(
        push_at(
            store,
            &fixture.cadre_a,
            "phone-a",
            4,
            2_000,
            edit("main_cause", json!(2), 0)
        )
        .await,
        MutationOutcome::Applied,
        "one device's own edits never conflict"
    );
    assert!(
        store
            .open_conflicts(TOWNSHIP_ONE)
            .await
            .expect("conflicts")
            .is_empty()
    );

    let mut stranger = wang.clone();
    stranger.household_id = new_id();
    let unknown = push_at(
        store,
        &fixture.cadre_a,
        "phone-a",
        5,
        3_000,
        household_edit(&stranger, "phone", json!("3"), 0),
    )
    .await;
    assert_eq!(rejected_code(&unknown), Some(RejectCode::UnknownHousehold));
    let bad = push_at(
        store,
        &fixture.cadre_a,
        "phone-a",
        6,
        3_000,
        edit("main_cause", json!(9999), 0),
    )
    .await;
    assert_eq!(rejected_code(&bad), Some(RejectCode::InvalidRecord));
    let MutationOutcome::Rejected { message, .. } = bad else {
        unreachable!()
    };
    assert!(message.contains("main_cause"), "{message}");
}

/// A write with a stamp already stored (same HLC, same device) is a duplicate, even under a
/// new seq, and changes nothing.
pub async fn duplicate_register_write_is_not_applied_twice(store: &dyn Store) {
    let fixture = seeded(store).await;
    let payload = household_edit(&fixture.wang, "phone", json!("13800001111"), 0);
    assert_eq!(
        push_at(
            store,
            &fixture.cadre_a,
            "phone-a",
            1,
            5_000,
            payload.clone()
        )
        .await,
        MutationOutcome::Applied
    );
    let before = card(store, &fixture.wang).await;
    assert_eq!(
        push_at(store, &fixture.cadre_a, "phone-a", 2, 5_000, payload).await,
        MutationOutcome::Duplicate
    );
    assert_eq!(card(store, &fixture.wang).await, before);
    let history = store
        .register_history(&fixture.wang.household_id, &FieldTarget::Household, "phone")
        .await
        .expect("history");
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].stamp.hlc, Hlc::from_parts(5_000, 0));
    assert_eq!(history[0].author_user_id, fixture.cadre_a.user_id);
}

/// Members are add-wins rows; removal is the `removed` field (a tombstone register).
pub async fn member_add_wins_and_removal_is_a_tombstone(store: &dyn Store) {
    let fixture = seeded(store).await;
    let mut child = fixture.wang.members[0].clone();
    child.member_id = new_id();
    child.name = "王小明".into();
    child.relation = Relation::Son;
    child.id_number = String::new();
    let add = |member: Member| MutationPayload::AddMember {
        household_id: fixture.wang.household_id.clone(),
        member,
    };
    assert_eq!(
        push_at(
            store,
            &fixture.cadre_a,
            "phone-a",
            1,
            1_000,
            add(child.clone())
        )
        .await,
        MutationOutcome::Applied
    );
    assert_eq!(
        push_at(
            store,
            &fixture.cadre_b,
            "phone-b",
            1,
            1_100,
            add(child.clone())
        )
        .await,
        MutationOutcome::Duplicate,
        "the same row added twice is one row"
    );
    let mut renamed = child.clone();
    renamed.name = "王晓明".into();
    assert_eq!(
        push_at(store, &fixture.cadre_b, "phone-b", 2, 1_200, add(renamed)).await,
        MutationOutcome::Applied
    );
    let stored = card(store, &fixture.wang).await;
    assert_eq!(stored.members.len(), 2);
    assert_eq!(
        stored.members[1].name, "王小明",
        "edits travel as field writes, not re-adds"
    );

    let mut nameless = child.clone();
    nameless.member_id = new_id();
    nameless.name = " ".into();
    let outcome = push_at(store, &fixture.cadre_a, "phone-a", 2, 1_300, add(nameless)).await;
    assert_eq!(rejected_code(&outcome), Some(RejectCode::InvalidRecord));
    let mut bad_id = child.clone();
    bad_id.member_id = new_id();
    bad_id.id_number = "110105194912310021".into();
    let outcome = push_at(store, &fixture.cadre_a, "phone-a", 3, 1_400, add(bad_id)).await;
    assert_eq!(rejected_code(&outcome), Some(RejectCode::InvalidRecord));

    let remove = MutationPayload::EditField(FieldEdit {
        household_id: fixture.wang.household_id.clone(),
        target: FieldTarget::Member(child.member_id.clone()),
        field: "removed".into(),
        value: json!(true),
        base_seq: 0,
    });
    assert_eq!(
        push_at(store, &fixture.cadre_a, "phone-a", 4, 2_000, remove).await,
        MutationOutcome::Applied
    );
    let stored = card(store, &fixture.wang).await;
    assert_eq!(stored.members.len(), 2, "the row stays as a tombstone");
    assert_eq!(stored.current_members().count(), 1);
    assert!(stored.field_seq(&FieldTarget::Member(child.member_id.clone()), "removed") > 0);
    let ghost = MutationPayload::EditField(FieldEdit {
        household_id: fixture.wang.household_id.clone(),
        target: FieldTarget::Member(new_id()),
        field: "name".into(),
        value: json!("无此人"),
        base_seq: 0,
    });
    let outcome = push_at(store, &fixture.cadre_a, "phone-a", 5, 2_100, ghost).await;
    assert_eq!(rejected_code(&outcome), Some(RejectCode::InvalidRecord));
}

/// After losing a write, the phone quotes the field sequence it pulled (which covers the
/// loser too), so its next edit is an ordinary overwrite, not another conflict.
pub async fn stale_base_seq_after_a_losing_write(store: &dyn Store) {
    let fixture = seeded(store).await;
    let wang = &fixture.wang;
    assert_eq!(
        push_at(
            store,
            &fixture.cadre_a,
            "phone-a",
            1,
            3_000,
            household_edit(wang, "phone", json!("A"), 0)
        )
        .await,
        MutationOutcome::Applied
    );
    assert_eq!(
        push_at(
            store,
            &fixture.cadre_b,
            "phone-b",
            1,
            2_000,
            household_edit(wang, "phone", json!("B"), 0)
        )
        .await,
        MutationOutcome::ConflictRecorded
    );
    let after = card(store, wang).await;
    assert_eq!(after.phone, "A", "the older HLC loses");
    let seen = after.field_seq(&FieldTarget::Household, "phone");
    assert_eq!(
        push_at(
            store,
            &fixture.cadre_b,
            "phone-b",
            2,
            4_000,
            household_edit(wang, "phone", json!("C"), seen)
        )
        .await,
        MutationOutcome::Applied
    );
    assert_eq!(card(store, wang).await.phone, "C");
    assert_eq!(
        store
            .open_conflicts(TOWNSHIP_ONE)
            .await
            .expect("open")
            .len(),
        1
    );
    // A phone still quoting 0 has seen neither A nor C: one conflict per unseen value.
    assert_eq!(
        push_at(
            store,
            &fixture.cadre_a,
            "phone-a",
            2,
            5_000,
            household_edit(wang, "phone", json!("D"), 0)
        )
        .await,
        MutationOutcome::ConflictRecorded
    );
    assert_eq!(
        store
            .open_conflicts(TOWNSHIP_ONE)
            .await
            .expect("open")
            .len(),
        3
    );
}

/// Resolving writes the chosen value as an ordinary register write that wins, closes every
/// open conflict of the register, and reaches the phones through pull.
pub async fn resolving_a_conflict_writes_the_choice_and_closes_the_register(store: &dyn Store) {
    let fixture = seeded(store).await;
    let wang = &fixture.wang;
    // Asked before the conflicting writes (every pull asks), so a store that keeps the
    // answer must drop it when they land.
    assert!(
        store
            .pending_conflicts(&fixture.cadre_b.user_id)
            .await
            .expect("pending")
            .is_empty()
    );
    push_at(
        store,
        &fixture.cadre_a,
        "phone-a",
        1,
        3_000,
        household_edit(wang, "phone", json!("A"), 0),
    )
    .await;
    push_at(
        store,
        &fixture.cadre_b,
        "phone-b",
        1,
        2_000,
        household_edit(wang, "phone", json!("B"), 0),
    )
    .await;
    push_at(
        store,
        &fixture.cadre_b,
        "phone-b",
        2,
        2_500,
        household_edit(wang, "phone", json!("C"), 0),
    )
    .await;
    let open = store.open_conflicts(TOWNSHIP_ONE).await.expect("open");
    assert_eq!(open.len(), 2);
    let pending_of =
        |user_id: String| async move { store.pending_conflicts(&user_id).await.expect("pending") };
    // cadre_b wrote both later edits: one entry per conflict, never one per side.
    assert_eq!(pending_of(fixture.cadre_b.user_id.clone()).await.len(), 2);
    let cadre_a = principal(&fixture.cadre_a, "phone-a");
    let cursor = store
        .pull_changes(&cadre_a, &ScopeCursor::default(), 1000)
        .await
        .expect("pull")
        .next_cursor;

    let resolution = |key: &str, township: &str, value: Value| ConflictResolution {
        conflict_key: key.to_owned(),
        township_id: township.to_owned(),
        value,
        reviewer_user_id: fixture.supervisor_one.user_id.clone(),
        // Deliberately older than the writes: the store must still make it win.
        stamp: Stamp {
            hlc: Hlc::from_parts(10, 0),
            device_id: "console".into(),
        },
        resolved_at: VISIT_TIME,
    };
    let key = open[0].conflict_key.clone();
    assert!(matches!(
        store
            .resolve_conflict(resolution(&key, TOWNSHIP_TWO, json!("B")))
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store
            .resolve_conflict(resolution(&key, TOWNSHIP_ONE, json!(12)))
            .await,
        Err(StoreError::InvalidValue { .. })
    ));
    let stamp = store
        .resolve_conflict(resolution(&key, TOWNSHIP_ONE, json!("B")))
        .await
        .expect("resolve");
    assert!(stamp.hlc > Hlc::from_parts(3_000, 0), "{stamp:?}");
    assert!(
        store
            .open_conflicts(TOWNSHIP_ONE)
            .await
            .expect("open")
            .is_empty()
    );
    for user in [&fixture.cadre_a, &fixture.cadre_b] {
        assert!(
            pending_of(user.user_id.clone()).await.is_empty(),
            "settled: nothing waits for {}",
            user.display_name
        );
    }
    let stored = card(store, wang).await;
    assert_eq!(stored.phone, "B");
    let history = store
        .register_history(&wang.household_id, &FieldTarget::Household, "phone")
        .await
        .expect("history");
    let last = history.last().expect("the resolution is a write");
    assert_eq!(last.stamp.device_id, "console");
    assert_eq!(last.author_user_id, fixture.supervisor_one.user_id);
    assert_eq!(
        stored.field_seq(&FieldTarget::Household, "phone"),
        last.server_seq
    );
    assert!(
        matches!(
            store
                .resolve_conflict(resolution(&open[1].conflict_key, TOWNSHIP_ONE, json!("C")))
                .await,
            Err(StoreError::NotFound(_))
        ),
        "the register's other conflicts were closed by the same resolution"
    );
    let pulled = store
        .pull_changes(&cadre_a, &cursor, 1000)
        .await
        .expect("pull again");
    assert_eq!(pulled.households.len(), 1);
    assert_eq!(pulled.households[0].phone, "B");
}

/// Heartbeats are kept per device (latest wins) and listed for the cadres' township, the
/// oldest unsent data first.
pub async fn heartbeats_list_the_oldest_unsent_data_first(store: &dyn Store) {
    let fixture = seeded(store).await;
    let heartbeat = |unsent: u64, oldest: Option<OffsetDateTime>| Heartbeat {
        unsent_mutations: unsent,
        pending_uploads: 1,
        oldest_unsent_at: oldest,
        device_time: Some(VISIT_TIME + Duration::minutes(7)),
        last_error: "网络连接失败".into(),
        app_version: "1.2.0".into(),
    };
    store
        .record_heartbeat(
            "phone-a",
            &fixture.cadre_a.user_id,
            heartbeat(3, Some(VISIT_TIME)),
            VISIT_TIME,
        )
        .await
        .expect("a");
    store
        .record_heartbeat(
            "phone-b",
            &fixture.cadre_b.user_id,
            heartbeat(0, None),
            VISIT_TIME,
        )
        .await
        .expect("b");
    store
        .record_heartbeat(
            "phone-a",
            &fixture.cadre_a.user_id,
            heartbeat(5, Some(VISIT_TIME - Duration::days(9))),
            VISIT_TIME + Duration::hours(1),
        )
        .await
        .expect("a again");
    let backlog = store.device_backlog(TOWNSHIP_ONE).await.expect("backlog");
    let devices: Vec<&str> = backlog.iter().map(|row| row.device_id.as_str()).collect();
    assert_eq!(devices, vec!["phone-a", "phone-b"]);
    assert_eq!(
        backlog[0].heartbeat.unsent_mutations, 5,
        "the latest heartbeat wins"
    );
    assert_eq!(
        backlog[0].heartbeat.oldest_unsent_at,
        Some(VISIT_TIME - Duration::days(9))
    );
    assert_eq!(backlog[0].cadre_name, fixture.cadre_a.display_name);
    assert_eq!(backlog[0].last_seen_at, VISIT_TIME + Duration::hours(1));
    assert_eq!(backlog[0].heartbeat.app_version, "1.2.0");
    assert!(
        store
            .device_backlog(TOWNSHIP_TWO)
            .await
            .expect("t2")
            .is_empty()
    );
}

/// A phone sends a heartbeat with every pull: one that repeats the stored heartbeat within
/// a minute is not written again (last seen stays), while a changed count, a moved device
/// clock or a minute gone by is written.
pub async fn a_repeated_heartbeat_is_not_rewritten_within_a_minute(store: &dyn Store) {
    let fixture = seeded(store).await;
    let heartbeat = |unsent: u64, device_time: OffsetDateTime| Heartbeat {
        unsent_mutations: unsent,
        device_time: Some(device_time),
        app_version: "1.2.0".into(),
        ..Heartbeat::default()
    };
    let last_seen = || async {
        let backlog = store.device_backlog(TOWNSHIP_ONE).await.expect("backlog");
        let row = backlog
            .iter()
            .find(|row| row.device_id == "phone-a")
            .expect("phone-a reported in");
        (row.last_seen_at, row.heartbeat.unsent_mutations)
    };
    let record = |unsent: u64, device_time: OffsetDateTime, at: OffsetDateTime| {
        let cadre = fixture.cadre_a.user_id.clone();
        async move {
            store
                .record_heartbeat("phone-a", &cadre, heartbeat(unsent, device_time), at)
                .await
                .expect("heartbeat");
        }
    };
    record(0, VISIT_TIME, VISIT_TIME).await;
    // The same report 30 s later, the phone's clock running with the server's.
    let later = VISIT_TIME + Duration::seconds(30);
    record(0, later, later).await;
    assert_eq!(last_seen().await, (VISIT_TIME, 0), "unchanged: not written");
    // The phone's clock jumped by two minutes: written, so the console sees the new offset.
    record(0, later + Duration::minutes(2), later).await;
    assert_eq!(last_seen().await, (later, 0), "a moved clock is written");
    // A new unsent record: written at once.
    let next = later + Duration::seconds(5);
    record(1, next + Duration::minutes(2), next).await;
    assert_eq!(last_seen().await, (next, 1), "a changed count is written");
    // A minute later the same report is written again, so last seen moves on.
    let minute_on = next + Duration::seconds(60);
    record(1, minute_on + Duration::minutes(2), minute_on).await;
    assert_eq!(
        last_seen().await,
        (minute_on, 1),
        "refreshed after a minute"
    );
}

/// A read asked again after a write answers with what the write did, however often the
/// same read was asked before it (the SQLite store answers repeated reads from memory while
/// nothing was written: sqlite/memo.rs). Covers the reads every phone call repeats: the
/// session lookup, the change-log bounds, an up-to-date pull and the stored heartbeat.
pub async fn repeated_reads_see_every_write_in_between(store: &dyn Store) {
    let fixture = seeded(store).await;
    let record = session_record(&fixture.cadre_a, "phone-a", 'a', None);
    store.create_session(record.clone()).await.expect("create");
    let token = "a".repeat(64);
    for _ in 0..3 {
        let live = store
            .find_session(&token)
            .await
            .expect("find")
            .expect("live");
        assert_eq!(live.ended, None);
    }
    let ended = store
        .end_session(
            &fixture.cadre_a.user_id,
            &record.session_id,
            SessionEndReason::Revoked,
            VISIT_TIME,
        )
        .await
        .expect("end");
    assert!(ended);
    let after = store
        .find_session(&token)
        .await
        .expect("find")
        .expect("kept");
    assert_eq!(
        after.ended,
        Some(SessionEndReason::Revoked),
        "the revocation is seen at once"
    );

    let cadre_b = principal(&fixture.cadre_b, "phone-b");
    let cursor = store
        .pull_changes(&cadre_b, &ScopeCursor::default(), 1000)
        .await
        .expect("first pull")
        .next_cursor;
    let bounds_before = store.change_log_bounds().await.expect("bounds");
    for _ in 0..3 {
        let nothing = store
            .pull_changes(&cadre_b, &cursor, 1000)
            .await
            .expect("up to date");
        assert!(
            nothing.households.is_empty() && !nothing.has_more,
            "{nothing:?}"
        );
        assert_eq!(
            store.change_log_bounds().await.expect("bounds"),
            bounds_before
        );
    }
    store
        .reassign_household(
            &fixture.wang.household_id,
            &fixture.cadre_b.user_id,
            VISIT_TIME,
        )
        .await
        .expect("reassign");
    let delivered = store
        .pull_changes(&cadre_b, &cursor, 1000)
        .await
        .expect("after the write");
    assert!(
        delivered
            .households
            .iter()
            .any(|household| household.household_id == fixture.wang.household_id),
        "the household reassigned to the cadre arrives on the same cursor: {delivered:?}"
    );
    assert_ne!(
        store.change_log_bounds().await.expect("bounds"),
        bounds_before
    );

    let backlog_count = || async {
        store
            .device_backlog(TOWNSHIP_ONE)
            .await
            .expect("backlog")
            .iter()
            .find(|row| row.device_id == "phone-a")
            .map(|row| row.heartbeat.unsent_mutations)
    };
    for unsent in [3, 3, 0] {
        store
            .record_heartbeat(
                "phone-a",
                &fixture.cadre_a.user_id,
                Heartbeat {
                    unsent_mutations: unsent,
                    ..Heartbeat::default()
                },
                VISIT_TIME,
            )
            .await
            .expect("heartbeat");
        assert_eq!(backlog_count().await, Some(unsent));
    }
}

/// A visit later in a push than an edit of its household's location is measured from the
/// new location, and one before the edit from the old (a push reads each household's place
/// once, and afresh after any mutation that may change a household).
pub async fn a_visit_after_a_location_edit_in_the_same_push_is_measured_from_the_new_place(
    store: &dyn Store,
) {
    let fixture = seeded(store).await;
    let home = fixture
        .wang
        .location
        .expect("the fixture household has a location");
    let before = visit(&fixture.wang, VisitMode::InPerson, VISIT_TIME);
    let after = visit(
        &fixture.wang,
        VisitMode::InPerson,
        VISIT_TIME + Duration::hours(2),
    );
    // The household is re-surveyed at the spot the visits' fixes name (0.001° north).
    let moved = serde_json::json!({
        "lat": home.lat + 0.001,
        "lon": home.lon,
        "crs": fieldsync_model::codes::CodeList::code(home.crs),
    });
    let result = store
        .apply_push(batch(
            &fixture.cadre_a,
            "device-a",
            vec![
                apply(1, MutationPayload::SubmitVisit(before.clone())),
                apply(
                    2,
                    household_edit(&fixture.wang, "location", moved, fixture.wang.server_seq),
                ),
                apply(3, MutationPayload::SubmitVisit(after.clone())),
            ],
        ))
        .await
        .expect("push");
    assert_all_applied(&result);
    let distance_of = |visit_id: String| async move {
        store
            .visit_detail(&visit_id)
            .await
            .expect("detail")
            .expect("stored")
            .distance_m
            .expect("distance computed")
    };
    let from_old = distance_of(before.visit_id.clone()).await;
    assert!((from_old - 111.2).abs() < 1.0, "{from_old}");
    let from_new = distance_of(after.visit_id.clone()).await;
    assert!(
        from_new < 1.0,
        "measured from the moved location: {from_new}"
    );
}

/// Each township has its own change sequence: the seed numbers each from 1, a write in one
/// moves only that township's sequence, and a pull's cursor position in a township moves
/// only when that township changes.
pub async fn townships_advance_their_sequences_independently(store: &dyn Store) {
    let fixture = seeded(store).await;
    let newest = |bounds: &super::ChangeLogBounds| {
        (
            bounds.of(TOWNSHIP_ONE).newest_seq,
            bounds.of(TOWNSHIP_TWO).newest_seq,
        )
    };
    let seeded_bounds = store.change_log_bounds().await.expect("bounds");
    assert_eq!(
        newest(&seeded_bounds),
        (3, 1),
        "wang, zhao and li are 1..=3 of township one; chen is 1 of township two"
    );
    let county = principal(&fixture.admin, "console");
    let supervisor_two = principal(&fixture.supervisor_two, "console");
    let everything = store
        .pull_changes(&county, &ScopeCursor::default(), 1000)
        .await
        .expect("county");
    assert_eq!(everything.households.len(), 4);
    assert_eq!(
        everything.next_cursor.encode(),
        format!("v2:{TOWNSHIP_ONE}=3,{TOWNSHIP_TWO}=1"),
        "the county's cursor names every township"
    );
    let two = store
        .pull_changes(&supervisor_two, &ScopeCursor::default(), 1000)
        .await
        .expect("township two");
    assert_eq!(two.next_cursor.encode(), format!("v2:{TOWNSHIP_TWO}=1"));

    // A write in township one.
    let wang_visit = visit(&fixture.wang, VisitMode::InPerson, VISIT_TIME);
    push_visit(store, &fixture.cadre_a, "phone-a", 1, &wang_visit).await;
    let after_one = store.change_log_bounds().await.expect("bounds");
    assert_eq!(newest(&after_one), (4, 1), "township two did not move");
    let quiet = store
        .pull_changes(&supervisor_two, &two.next_cursor, 1000)
        .await
        .expect("township two again");
    assert!(quiet.households.is_empty() && quiet.visit_statuses.is_empty());
    assert_eq!(
        quiet.next_cursor, two.next_cursor,
        "a write in township one leaves township two's position alone"
    );

    // A write in township two.
    let outcome = push_at(
        store,
        &fixture.cadre_b,
        "phone-b",
        1,
        1_000,
        household_edit(&fixture.chen, "phone", json!("13711112222"), 0),
    )
    .await;
    assert_eq!(outcome, MutationOutcome::Applied);
    let after_two = store.change_log_bounds().await.expect("bounds");
    assert_eq!(newest(&after_two), (4, 2), "township one did not move");
    let county_next = store
        .pull_changes(&county, &everything.next_cursor, 1000)
        .await
        .expect("county again");
    assert_eq!(county_next.households.len(), 1);
    assert_eq!(
        county_next.households[0].household_id,
        fixture.chen.household_id
    );
    assert_eq!(county_next.visit_statuses.len(), 1);
    assert_eq!(county_next.visit_statuses[0].visit_id, wang_visit.visit_id);
    assert_eq!(
        (
            county_next.next_cursor.get(TOWNSHIP_ONE),
            county_next.next_cursor.get(TOWNSHIP_TWO)
        ),
        (4, 2)
    );
    assert_eq!(store.change_log_bounds().await.expect("bounds"), after_two);
}

/// The cursor's text form round-trips, and a township missing from a cursor (a cadre newly
/// paired in another township) is read from its start, with no RESET.
pub async fn a_township_missing_from_the_cursor_starts_at_zero(store: &dyn Store) {
    let fixture = seeded(store).await;
    let cadre_a = principal(&fixture.cadre_a, "phone-a");
    let first = store
        .pull_changes(&cadre_a, &ScopeCursor::default(), 1000)
        .await
        .expect("first");
    let text = first.next_cursor.encode();
    assert_eq!(text, format!("v2:{TOWNSHIP_ONE}=3"));
    let cursor = ScopeCursor::parse(&text).expect("the server reads its own cursor");
    assert_eq!(cursor, first.next_cursor);
    let quiet = store
        .pull_changes(&cadre_a, &cursor, 1000)
        .await
        .expect("quiet");
    assert!(quiet.households.is_empty());
    assert_eq!(quiet.next_cursor, cursor);

    // Cadre A takes over chen, in township two.
    store
        .reassign_household(
            &fixture.chen.household_id,
            &fixture.cadre_a.user_id,
            VISIT_TIME,
        )
        .await
        .expect("pair in township two");
    let bounds = store.change_log_bounds().await.expect("bounds");
    assert_eq!(
        bounds.check(&cursor),
        Ok(()),
        "the old cursor is still good"
    );
    let next = store
        .pull_changes(&cadre_a, &cursor, 1000)
        .await
        .expect("after the new pairing");
    let ids: Vec<&str> = next
        .households
        .iter()
        .map(|household| household.household_id.as_str())
        .collect();
    assert_eq!(ids, vec![fixture.chen.household_id.as_str()]);
    assert!(next.removed_household_ids.is_empty());
    assert_eq!(
        next.next_cursor.encode(),
        format!(
            "v2:{TOWNSHIP_ONE}=3,{TOWNSHIP_TWO}={}",
            bounds.of(TOWNSHIP_TWO).newest_seq
        )
    );
    assert_eq!(
        ScopeCursor::parse(&next.next_cursor.encode()).expect("parse"),
        next.next_cursor
    );

    // Paging over two townships: one entry per page still reaches both, and `has_more`
    // stays true until the last township is read.
    let mut paged = ScopeCursor::default();
    let mut delivered = Vec::new();
    for _ in 0..10 {
        let page = store.pull_changes(&cadre_a, &paged, 1).await.expect("page");
        delivered.extend(page.households.into_iter().map(|h| h.household_id));
        paged = page.next_cursor;
        if !page.has_more {
            break;
        }
    }
    // chen has two entries (seed and pairing), so with one entry per page it comes twice.
    delivered.sort();
    delivered.dedup();
    let mut expected = vec![
        fixture.wang.household_id.clone(),
        fixture.zhao.household_id.clone(),
        fixture.chen.household_id.clone(),
    ];
    expected.sort();
    assert_eq!(delivered, expected);
    assert_eq!(paged, next.next_cursor);
}

/// Registers every check above as one `#[tokio::test]` of the invoking backend, each on the
/// fresh store (and its guard) that `$fresh_store()` returns, or, written `async $fresh_store`,
/// on the store that `$fresh_store(test_name).await` returns (skipped when it is `None`).
#[cfg(test)]
macro_rules! sync_conformance_tests {
    ($($fresh_store:tt)+) => {
        $crate::store::conformance::checks_as_tests!(
            $($fresh_store)+,
            sync,
            [
                compaction_keeps_current_records_and_expires_old_tombstones,
                push_applies_and_dedupes_resent_seqs,
                same_batch_id_replays_or_is_refused,
                rejected_entry_consumes_its_seq,
                unknown_references_are_rejected,
                reused_ids_are_rejected,
                new_revision_supersedes_the_old_one,
                only_the_author_revises_a_visit,
                pull_is_scoped_to_the_principal,
                pull_pages_with_cursor_and_has_more,
                push_with_flags_is_one_commit,
                registered_income_reaches_the_pull_with_its_household,
                register_writes_converge_in_either_order,
                no_conflict_for_seen_same_value_or_same_device,
                duplicate_register_write_is_not_applied_twice,
                member_add_wins_and_removal_is_a_tombstone,
                stale_base_seq_after_a_losing_write,
                resolving_a_conflict_writes_the_choice_and_closes_the_register,
                heartbeats_list_the_oldest_unsent_data_first,
                a_repeated_heartbeat_is_not_rewritten_within_a_minute,
                repeated_reads_see_every_write_in_between,
                a_visit_after_a_location_edit_in_the_same_push_is_measured_from_the_new_place,
                townships_advance_their_sequences_independently,
                a_township_missing_from_the_cursor_starts_at_zero,
            ]
        );
    };
}
#[cfg(test)]
pub(crate) use sync_conformance_tests;
