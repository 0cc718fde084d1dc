//! Conformance checks of [`LedgerStore`](super::LedgerStore), the monthly ledger (月台账):
//! the facts of an area and month, month close (月结) with its frozen snapshot, closures,
//! cadres' last sync, the flag counts of the review queue and the month's unvisited
//! households. A backend runs them all with one `ledger_conformance_tests!` line.

use fieldsync_model::codes::{ReviewState, VisitMode};
use fieldsync_model::evidence::EvidenceFlag;
use fieldsync_model::ledger::{LockedOutcome, LockedSnapshot};
use fieldsync_model::review::Decision;
use fieldsync_model::sync::MutationPayload;
use time::Duration;
use time::macros::datetime;

use crate::store::conformance::{
    TOWNSHIP_ONE, TOWNSHIP_TWO, VILLAGE_ONE_A, VISIT_MONTH, VISIT_TIME, apply, batch, decision,
    push_visit, revise, seeded, visit,
};
use crate::store::{Heartbeat, LedgerArea, Store, StoreError};

fn township_one() -> LedgerArea {
    LedgerArea::Township(TOWNSHIP_ONE.into())
}

/// 2 April 2026 10:00 Beijing: March has ended.
const AFTER_MARCH: time::OffsetDateTime = datetime!(2026-04-02 02:00 UTC);

/// The facts of an area and month: its households with their primary cadre, the open
/// revisions of the month's visits (by check-in month, any mode), nothing from other areas
/// or months; a county sees all its townships.
pub async fn ledger_facts_cover_the_area_and_month(store: &dyn Store) {
    let fixture = seeded(store).await;
    let facts = store
        .ledger_facts(&township_one(), VISIT_MONTH)
        .await
        .expect("facts");
    let mut ids: Vec<&str> = facts
        .households
        .iter()
        .map(|household| household.household_id.as_str())
        .collect();
    ids.sort_unstable();
    let mut expected = vec![
        fixture.wang.household_id.as_str(),
        fixture.zhao.household_id.as_str(),
        fixture.li.household_id.as_str(),
    ];
    expected.sort_unstable();
    assert_eq!(ids, expected, "township one's households only");
    let wang = facts
        .households
        .iter()
        .find(|household| household.household_id == fixture.wang.household_id)
        .expect("wang");
    assert_eq!(
        wang.primary_cadre_user_id.as_deref(),
        Some(fixture.cadre_a.user_id.as_str())
    );
    assert_eq!(wang.primary_cadre_name.as_deref(), Some("张干部"));
    assert_eq!(wang.village_name, "东冲村");
    let zhao = facts
        .households
        .iter()
        .find(|household| household.household_id == fixture.zhao.household_id)
        .expect("zhao");
    assert_eq!(
        zhao.primary_cadre_user_id, None,
        "a secondary pairing is not the primary cadre"
    );
    assert!(facts.visits.is_empty() && facts.closures.is_empty() && facts.locked.is_empty());

    // March: an in-person visit to wang (returned, then re-submitted), a phone visit to
    // zhao and li's visit late on the 31st; April: li's visit ten minutes after midnight.
    let in_person = visit(&fixture.wang, VisitMode::InPerson, VISIT_TIME);
    push_visit(store, &fixture.cadre_a, "phone-a", 1, &in_person).await;
    store
        .decide(decision(
            &in_person,
            Decision::Return,
            &fixture.supervisor_one,
        ))
        .await
        .expect("return");
    let corrected = revise(&in_person);
    push_visit(store, &fixture.cadre_a, "phone-a", 2, &corrected).await;
    let by_phone = visit(
        &fixture.zhao,
        VisitMode::Phone,
        VISIT_TIME + Duration::hours(2),
    );
    push_visit(store, &fixture.cadre_a, "phone-a", 3, &by_phone).await;
    // 2026-03-31 23:30 Beijing is still March; 2026-04-01 00:10 Beijing is April.
    let last_evening = visit(
        &fixture.li,
        VisitMode::InPerson,
        datetime!(2026-03-31 15:30 UTC),
    );
    push_visit(store, &fixture.cadre_b, "phone-b", 1, &last_evening).await;
    let april = visit(
        &fixture.li,
        VisitMode::InPerson,
        datetime!(2026-03-31 16:10 UTC),
    );
    push_visit(store, &fixture.cadre_b, "phone-b", 2, &april).await;

    let facts = store
        .ledger_facts(&township_one(), VISIT_MONTH)
        .await
        .expect("facts");
    let mut seen: Vec<(String, u32, ReviewState, VisitMode)> = facts
        .visits
        .iter()
        .map(|visit| {
            (
                visit.visit_id.clone(),
                visit.revision,
                visit.state,
                visit.mode,
            )
        })
        .collect();
    seen.sort();
    let mut expected = vec![
        (
            in_person.visit_id.clone(),
            2,
            ReviewState::Submitted,
            VisitMode::InPerson,
        ),
        (
            by_phone.visit_id.clone(),
            1,
            ReviewState::Submitted,
            VisitMode::Phone,
        ),
        (
            last_evening.visit_id.clone(),
            1,
            ReviewState::Submitted,
            VisitMode::InPerson,
        ),
    ];
    expected.sort();
    assert_eq!(
        seen, expected,
        "superseded revisions and April's visit are left out"
    );
    let evening = facts
        .visits
        .iter()
        .find(|visit| visit.visit_id == last_evening.visit_id)
        .expect("evening visit");
    assert_eq!(evening.checkin_at, last_evening.checkin_at);
    assert_eq!(evening.author_name, "刘干部");
    assert_eq!(evening.submitted_at, VISIT_TIME + Duration::hours(3));

    let april_facts = store
        .ledger_facts(&township_one(), "2026-04")
        .await
        .expect("april");
    assert_eq!(
        april_facts
            .visits
            .iter()
            .map(|visit| visit.visit_id.as_str())
            .collect::<Vec<_>>(),
        vec![april.visit_id.as_str()]
    );

    let two = store
        .ledger_facts(&LedgerArea::Township(TOWNSHIP_TWO.into()), VISIT_MONTH)
        .await
        .expect("township two");
    assert_eq!(two.households.len(), 1);
    assert_eq!(two.households[0].household_id, fixture.chen.household_id);
    assert!(two.visits.is_empty(), "township one's visits never leak");

    let county = store
        .ledger_facts(
            &LedgerArea::County(crate::store::conformance::COUNTY.into()),
            VISIT_MONTH,
        )
        .await
        .expect("county");
    assert_eq!(county.households.len(), 4);
    assert_eq!(county.visits.len(), 3);
    let unknown = store
        .ledger_facts(&LedgerArea::Township("nowhere".into()), VISIT_MONTH)
        .await
        .expect("unknown area");
    assert!(unknown.households.is_empty() && unknown.visits.is_empty());
}

/// Month close freezes every slot as the state machine computes it at the close; bad
/// closes are typed errors that store nothing; later visits are stored but leave the
/// snapshot alone.
pub async fn ledger_month_close_freezes_the_slots(store: &dyn Store) {
    let fixture = seeded(store).await;
    let approved = visit(&fixture.wang, VisitMode::InPerson, VISIT_TIME);
    push_visit(store, &fixture.cadre_a, "phone-a", 1, &approved).await;
    store
        .decide(decision(
            &approved,
            Decision::Approve,
            &fixture.supervisor_one,
        ))
        .await
        .expect("approve");
    let waiting = visit(&fixture.li, VisitMode::InPerson, VISIT_TIME);
    push_visit(store, &fixture.cadre_b, "phone-b", 1, &waiting).await;
    let closer = &fixture.supervisor_one.user_id;

    // Refusals first: none of them may store anything.
    for (month, closed_at, what) in [
        (
            VISIT_MONTH,
            datetime!(2026-03-31 15:59 UTC),
            "the running month",
        ),
        ("2026-05", AFTER_MARCH, "a future month"),
        ("2026-13", AFTER_MARCH, "a malformed month"),
        ("2026-3", AFTER_MARCH, "a malformed month"),
    ] {
        let error = store
            .close_month(TOWNSHIP_ONE, month, closer, closed_at)
            .await
            .expect_err(what);
        assert!(
            matches!(&error, StoreError::InvalidValue { field, .. } if field == "month"),
            "{what}: {error:?}"
        );
    }
    let error = store
        .close_month("nowhere", VISIT_MONTH, closer, AFTER_MARCH)
        .await
        .expect_err("unknown township");
    assert!(matches!(error, StoreError::NotFound(_)), "{error:?}");
    let error = store
        .close_month(
            crate::store::conformance::VILLAGE_ONE_A,
            VISIT_MONTH,
            closer,
            AFTER_MARCH,
        )
        .await
        .expect_err("a village is not a township");
    assert!(matches!(error, StoreError::NotFound(_)), "{error:?}");
    assert!(
        store
            .month_closures(&township_one())
            .await
            .expect("closures")
            .is_empty()
    );

    let closure = store
        .close_month(TOWNSHIP_ONE, VISIT_MONTH, closer, AFTER_MARCH)
        .await
        .expect("close March");
    assert_eq!(closure.month, VISIT_MONTH);
    assert_eq!(closure.township_id, TOWNSHIP_ONE);
    assert_eq!(closure.township_name, "温泉镇");
    assert_eq!(closure.closed_by_name, "周审核");
    assert_eq!(closure.closed_at, AFTER_MARCH);
    assert_eq!(closure.household_count, 3);
    let error = store
        .close_month(
            TOWNSHIP_ONE,
            VISIT_MONTH,
            closer,
            AFTER_MARCH + Duration::days(1),
        )
        .await
        .expect_err("closing twice");
    assert!(matches!(error, StoreError::Conflict(_)), "{error:?}");

    let snapshot_of = |facts: &crate::store::LedgerFacts, household_id: &str| {
        facts
            .locked
            .iter()
            .find(|row| row.household.household_id == household_id)
            .map(|row| row.snapshot)
    };
    let facts = store
        .ledger_facts(&township_one(), VISIT_MONTH)
        .await
        .expect("facts");
    assert_eq!(facts.closures, vec![closure.clone()]);
    assert_eq!(facts.locked.len(), 3);
    assert_eq!(
        snapshot_of(&facts, &fixture.wang.household_id),
        Some(LockedSnapshot {
            outcome: LockedOutcome::Approved,
            visited_in_person: true,
            approved_in_person: true,
        })
    );
    assert_eq!(
        snapshot_of(&facts, &fixture.li.household_id),
        Some(LockedSnapshot {
            outcome: LockedOutcome::Overdue,
            visited_in_person: true,
            approved_in_person: false,
        }),
        "a visit still waiting at close leaves the slot overdue"
    );
    let wang_row = facts
        .locked
        .iter()
        .find(|row| row.household.household_id == fixture.wang.household_id)
        .expect("wang row");
    assert_eq!(
        wang_row.household.primary_cadre_name.as_deref(),
        Some("张干部")
    );
    assert_eq!(wang_row.household.village_name, "东冲村");

    // After the close: li's visit is approved and a late March visit to zhao arrives.
    store
        .decide(decision(
            &waiting,
            Decision::Approve,
            &fixture.supervisor_one,
        ))
        .await
        .expect("approve after close");
    let late = visit(&fixture.zhao, VisitMode::InPerson, VISIT_TIME);
    let mut late_batch = batch(
        &fixture.cadre_a,
        "phone-a",
        vec![apply(2, MutationPayload::SubmitVisit(late.clone()))],
    );
    late_batch.received_at = AFTER_MARCH + Duration::days(3);
    store.apply_push(late_batch).await.expect("late push");
    let after = store
        .ledger_facts(&township_one(), VISIT_MONTH)
        .await
        .expect("facts after");
    assert_eq!(after.locked, facts.locked, "the snapshot never changes");
    let stored_late = after
        .visits
        .iter()
        .find(|visit| visit.visit_id == late.visit_id)
        .expect("the late visit is stored");
    assert!(stored_late.submitted_at > closure.closed_at);

    // Township two's March is still open; closures list per area.
    let two = LedgerArea::Township(TOWNSHIP_TWO.into());
    assert!(store.month_closures(&two).await.expect("two").is_empty());
    store
        .close_month(
            TOWNSHIP_TWO,
            "2026-02",
            &fixture.supervisor_two.user_id,
            AFTER_MARCH,
        )
        .await
        .expect("close February in township two");
    let county = store
        .month_closures(&LedgerArea::County(
            crate::store::conformance::COUNTY.into(),
        ))
        .await
        .expect("county closures");
    assert_eq!(
        county
            .iter()
            .map(|closure| (closure.month.as_str(), closure.township_id.as_str()))
            .collect::<Vec<_>>(),
        vec![(VISIT_MONTH, TOWNSHIP_ONE), ("2026-02", TOWNSHIP_TWO)],
        "newest month first"
    );
    assert_eq!(
        store
            .month_closures(&township_one())
            .await
            .expect("one")
            .len(),
        1
    );
}

/// A cadre's last sync is the latest push or heartbeat of any of their devices; a cadre
/// who never synced has none; only the area's cadres are listed.
pub async fn ledger_cadre_last_syncs_take_the_latest_push_or_heartbeat(store: &dyn Store) {
    let fixture = seeded(store).await;
    let before = store
        .cadre_last_syncs(&township_one())
        .await
        .expect("last syncs");
    assert_eq!(before.len(), 2, "the two cadres of township one");
    assert!(before.iter().all(|cadre| cadre.last_sync_at.is_none()));

    let pushed = visit(&fixture.wang, VisitMode::InPerson, VISIT_TIME);
    push_visit(store, &fixture.cadre_a, "phone-a", 1, &pushed).await;
    let heartbeat_at = VISIT_TIME + Duration::days(2);
    store
        .record_heartbeat(
            "phone-a2",
            &fixture.cadre_a.user_id,
            Heartbeat::default(),
            heartbeat_at,
        )
        .await
        .expect("heartbeat");
    let heartbeat_b = VISIT_TIME - Duration::days(1);
    store
        .record_heartbeat(
            "phone-b",
            &fixture.cadre_b.user_id,
            Heartbeat::default(),
            heartbeat_b,
        )
        .await
        .expect("heartbeat b");
    let after = store
        .cadre_last_syncs(&township_one())
        .await
        .expect("last syncs");
    let of = |user_id: &str| {
        after
            .iter()
            .find(|cadre| cadre.user_id == user_id)
            .expect("listed")
            .last_sync_at
    };
    assert_eq!(
        of(&fixture.cadre_a.user_id),
        Some(heartbeat_at),
        "the later heartbeat of a second device"
    );
    assert_eq!(of(&fixture.cadre_b.user_id), Some(heartbeat_b));
    // A push later than every heartbeat wins.
    let later = visit(&fixture.li, VisitMode::InPerson, VISIT_TIME);
    let mut push = batch(
        &fixture.cadre_b,
        "phone-b",
        vec![apply(1, MutationPayload::SubmitVisit(later))],
    );
    push.received_at = VISIT_TIME + Duration::days(5);
    store.apply_push(push).await.expect("push");
    let latest = store
        .cadre_last_syncs(&LedgerArea::County(
            crate::store::conformance::COUNTY.into(),
        ))
        .await
        .expect("county");
    assert_eq!(latest.len(), 2, "township two has no cadres");
    assert_eq!(
        latest
            .iter()
            .find(|cadre| cadre.user_id == fixture.cadre_b.user_id)
            .and_then(|cadre| cadre.last_sync_at),
        Some(VISIT_TIME + Duration::days(5))
    );
    assert!(
        store
            .cadre_last_syncs(&LedgerArea::Township(TOWNSHIP_TWO.into()))
            .await
            .expect("two")
            .is_empty()
    );
}

/// Flag counts cover the visits waiting for review in the area, once per visit and flag.
pub async fn ledger_queue_flag_counts_cover_waiting_visits(store: &dyn Store) {
    let fixture = seeded(store).await;
    let far = visit(&fixture.wang, VisitMode::InPerson, VISIT_TIME);
    push_visit(store, &fixture.cadre_a, "phone-a", 1, &far).await;
    let also_far = visit(&fixture.li, VisitMode::InPerson, VISIT_TIME);
    push_visit(store, &fixture.cadre_b, "phone-b", 1, &also_far).await;
    let decided = visit(&fixture.zhao, VisitMode::InPerson, VISIT_TIME);
    push_visit(store, &fixture.cadre_a, "phone-a", 2, &decided).await;
    let gps_far = EvidenceFlag::GpsFar {
        distance_m: 900.0,
        allowed_m: 310.0,
    };
    store
        .save_visit_flags(
            &far.visit_id,
            1,
            vec![gps_far.clone(), EvidenceFlag::MockLocation],
        )
        .await
        .expect("flags");
    store
        .save_visit_flags(&also_far.visit_id, 1, vec![gps_far.clone()])
        .await
        .expect("flags");
    store
        .save_visit_flags(&decided.visit_id, 1, vec![gps_far])
        .await
        .expect("flags");
    store
        .decide(decision(
            &decided,
            Decision::Approve,
            &fixture.supervisor_one,
        ))
        .await
        .expect("approve");
    let counts = store
        .queue_flag_counts(&township_one())
        .await
        .expect("counts");
    assert_eq!(
        counts
            .iter()
            .map(|count| (count.code.as_str(), count.label_zh.as_str(), count.visits))
            .collect::<Vec<_>>(),
        vec![
            ("gps_far", "定位距农户过远", 2),
            ("mock_location", "模拟定位", 1)
        ],
        "the approved visit has left the queue"
    );
    assert!(
        store
            .queue_flag_counts(&LedgerArea::Township(TOWNSHIP_TWO.into()))
            .await
            .expect("two")
            .is_empty()
    );
}

/// The "not yet visited in person this month" list drops a household once an in-person
/// visit is submitted; phone visits and other months do not count.
pub async fn unvisited_households_before_and_after_an_in_person_visit(store: &dyn Store) {
    let fixture = seeded(store).await;
    let before = store
        .unvisited_households(TOWNSHIP_ONE, VISIT_MONTH)
        .await
        .expect("unvisited");
    let names: Vec<&str> = before.iter().map(|h| h.head_name.as_str()).collect();
    // Village 1a (李 sorts before 王 by code point), then village 1b.
    assert_eq!(names, vec!["李小梅", "王大山", "赵春花"]);
    let wang = &before[1];
    assert_eq!(wang.household_id, fixture.wang.household_id);
    assert_eq!(wang.village_id, VILLAGE_ONE_A);
    assert_eq!(wang.village_name, "东冲村");
    assert_eq!(wang.cadre_names, vec!["张干部".to_owned()]);

    let in_person = visit(&fixture.wang, VisitMode::InPerson, VISIT_TIME);
    let by_phone = visit(&fixture.zhao, VisitMode::Phone, VISIT_TIME);
    let last_month = visit(
        &fixture.li,
        VisitMode::InPerson,
        VISIT_TIME - Duration::days(30),
    );
    push_visit(store, &fixture.cadre_a, "device-a", 1, &in_person).await;
    push_visit(store, &fixture.cadre_a, "device-a", 2, &by_phone).await;
    push_visit(store, &fixture.cadre_b, "device-b", 1, &last_month).await;

    let after = store
        .unvisited_households(TOWNSHIP_ONE, VISIT_MONTH)
        .await
        .expect("unvisited");
    let names: Vec<&str> = after.iter().map(|h| h.head_name.as_str()).collect();
    assert_eq!(names, vec!["李小梅", "赵春花"]);

    // Approval keeps it counted; a return does not.
    store
        .decide(decision(
            &in_person,
            Decision::Return,
            &fixture.supervisor_one,
        ))
        .await
        .expect("return");
    let returned = store
        .unvisited_households(TOWNSHIP_ONE, VISIT_MONTH)
        .await
        .expect("unvisited");
    assert_eq!(returned.len(), 3, "a returned visit does not count");
    let corrected = revise(&in_person);
    push_visit(store, &fixture.cadre_a, "device-a", 3, &corrected).await;
    store
        .decide(decision(
            &corrected,
            Decision::Approve,
            &fixture.supervisor_one,
        ))
        .await
        .expect("approve");
    let approved = store
        .unvisited_households(TOWNSHIP_ONE, VISIT_MONTH)
        .await
        .expect("unvisited");
    assert_eq!(approved.len(), 2);

    let other_township = store
        .unvisited_households(TOWNSHIP_TWO, VISIT_MONTH)
        .await
        .expect("unvisited");
    assert_eq!(other_township.len(), 1);
    assert!(other_township[0].cadre_names.is_empty());
}

/// Registers every check above as one `#[tokio::test]` of the invoking backend, each on the
/// fresh store (and its guard) that `$fresh_store()` returns, or, written `async $fresh_store`,
/// on the store that `$fresh_store(test_name).await` returns (skipped when it is `None`).
#[cfg(test)]
macro_rules! ledger_conformance_tests {
    ($($fresh_store:tt)+) => {
        $crate::store::conformance::checks_as_tests!(
            $($fresh_store)+,
            ledger,
            [
                ledger_facts_cover_the_area_and_month,
                ledger_month_close_freezes_the_slots,
                ledger_cadre_last_syncs_take_the_latest_push_or_heartbeat,
                ledger_queue_flag_counts_cover_waiting_visits,
                unvisited_households_before_and_after_an_in_person_visit,
            ]
        );
    };
}
#[cfg(test)]
pub(crate) use ledger_conformance_tests;
