//! Conformance checks for pairings management (结对管理) in [`Store`]: cadre loads, the
//! households list with its problem filter, and the primary assignment with its quota guard,
//! its audit record in the same transaction and the hand-over of the reassignment rules;
//! helper (第二帮扶责任人) pairings added and ended with delivery and tombstone.
//! A backend runs them all with one `pairings_conformance_tests!` line.

use fieldsync_model::access::{ACTION_PAIRING_OVER_QUOTA, AuditContent};

use crate::store::conformance::{COUNTY, TOWNSHIP_ONE, VISIT_TIME, new_id, principal, seeded};
use crate::store::{PairingFilter, PrimaryAssignment, ScopeCursor, Store, StoreError};

/// Loads count active primary and secondary pairings; the problem filter lists households
/// without exactly one primary.
pub async fn pairings_loads_and_problem_households(store: &dyn Store) {
    let fixture = seeded(store).await;
    let loads = store.cadre_loads(COUNTY).await.expect("loads");
    let load_a = loads
        .iter()
        .find(|load| load.user_id == fixture.cadre_a.user_id)
        .expect("cadre a");
    assert_eq!((load_a.primary_count, load_a.secondary_count), (1, 1));
    assert_eq!(load_a.township_name, "温泉镇");
    assert_eq!(loads.len(), 2, "only cadres");
    assert!(
        store
            .cadre_loads(TOWNSHIP_ONE)
            .await
            .expect("a township is not a county")
            .is_empty()
    );

    let problems = store
        .pairing_households(
            COUNTY,
            PairingFilter {
                only_problems: true,
                ..PairingFilter::default()
            },
        )
        .await
        .expect("problems");
    let ids: Vec<&str> = problems
        .iter()
        .map(|row| row.household_id.as_str())
        .collect();
    assert_eq!(
        ids,
        vec![
            fixture.zhao.household_id.as_str(),
            fixture.chen.household_id.as_str()
        ],
        "zhao has only a secondary, chen nobody"
    );
    let township = store
        .pairing_households(
            COUNTY,
            PairingFilter {
                township_id: Some(TOWNSHIP_ONE.into()),
                ..PairingFilter::default()
            },
        )
        .await
        .expect("township");
    assert_eq!(township.len(), 3);
    let zhao = township
        .iter()
        .find(|row| row.household_id == fixture.zhao.household_id)
        .expect("zhao");
    assert!(zhao.primaries.is_empty());
    assert_eq!(zhao.secondaries.len(), 1);
}

/// A primary assignment hands the household over (tombstone for the old cadre), is refused
/// by the quota guard or for the current primary, and writes its audit record atomically.
pub async fn pairings_assign_primary_guards_and_audits(store: &dyn Store) {
    let fixture = seeded(store).await;
    let cadre_a = principal(&fixture.cadre_a, "phone-a");
    let cursor_a = store
        .pull_changes(&cadre_a, &ScopeCursor::default(), 1000)
        .await
        .expect("first pull")
        .next_cursor;
    let assignment = |max: Option<u32>, audit: Option<AuditContent>| PrimaryAssignment {
        household_id: fixture.wang.household_id.clone(),
        cadre_user_id: fixture.cadre_b.user_id.clone(),
        at: VISIT_TIME,
        max_primary_count: max,
        audit,
    };
    // cadre B already has li as primary: a limit of 1 refuses a second one, and nothing moves.
    assert!(matches!(
        store.assign_primary(assignment(Some(1), None)).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(store.audit_records(0, 10).await.expect("audit").is_empty());

    let audit = AuditContent {
        recorded_at_ms: 1_773_100_000_000,
        actor_user_id: fixture.admin.user_id.clone(),
        actor_role: "county".into(),
        area_id: COUNTY.into(),
        action: ACTION_PAIRING_OVER_QUOTA.into(),
        subject: fixture.wang.household_id.clone(),
        filter: format!("cadre_user_id={}", fixture.cadre_b.user_id),
        row_count: 0,
        file_sha256: String::new(),
        detail: "超额确认".into(),
    };
    store
        .assign_primary(assignment(None, Some(audit.clone())))
        .await
        .expect("confirmed over quota");
    let records = store.audit_records(0, 10).await.expect("audit");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].content, audit);

    let wang = store
        .pairing_households(
            COUNTY,
            PairingFilter {
                village_id: Some(fixture.wang.village_id.clone()),
                ..PairingFilter::default()
            },
        )
        .await
        .expect("list")
        .into_iter()
        .find(|row| row.household_id == fixture.wang.household_id)
        .expect("wang");
    assert_eq!(
        wang.primaries
            .iter()
            .map(|(id, _)| id.as_str())
            .collect::<Vec<_>>(),
        vec![fixture.cadre_b.user_id.as_str()],
        "exactly one primary after the change"
    );
    // The old primary learns of the removal on their next pull.
    let old = store
        .pull_changes(&cadre_a, &cursor_a, 1000)
        .await
        .expect("pull");
    assert!(
        old.removed_household_ids
            .contains(&fixture.wang.household_id)
    );
    // Assigning the current primary again is a conflict.
    assert!(matches!(
        store.assign_primary(assignment(None, None)).await,
        Err(StoreError::Conflict(_))
    ));
}

/// A helper pairing reaches the helper's pull; ending it sends the helper a tombstone; the
/// primary cannot be ended as a helper, and a pair cannot be added twice.
pub async fn pairings_helpers_are_added_and_ended(store: &dyn Store) {
    let fixture = seeded(store).await;
    let helper = principal(&fixture.cadre_b, "device-b");
    let before = store
        .pull_changes(&helper, &ScopeCursor::default(), 100)
        .await
        .expect("helper's first pull");
    assert!(
        !before
            .households
            .iter()
            .any(|household| household.household_id == fixture.wang.household_id)
    );
    let cursor = before.next_cursor;
    let at = VISIT_TIME;
    store
        .set_helper_pairing(
            &fixture.wang.household_id,
            &fixture.cadre_b.user_id,
            true,
            at,
        )
        .await
        .expect("add helper");
    let added = store
        .pull_changes(&helper, &cursor, 100)
        .await
        .expect("pull after adding");
    let delivered: Vec<&str> = added
        .households
        .iter()
        .map(|household| household.household_id.as_str())
        .collect();
    assert_eq!(delivered, vec![fixture.wang.household_id.as_str()]);
    let cursor = added.next_cursor;

    let refusal = |result: Result<(), StoreError>| match result {
        Err(StoreError::Conflict(_)) => "conflict",
        Err(StoreError::NotFound(_)) => "not found",
        other => panic!("expected a refusal, got {other:?}"),
    };
    let set = |household: &str, cadre: &str, active: bool| {
        let (household, cadre) = (household.to_owned(), cadre.to_owned());
        async move {
            store
                .set_helper_pairing(&household, &cadre, active, at)
                .await
        }
    };
    assert_eq!(
        refusal(set(&fixture.wang.household_id, &fixture.cadre_b.user_id, true).await),
        "conflict",
        "already paired"
    );
    assert_eq!(
        refusal(set(&fixture.wang.household_id, &fixture.cadre_a.user_id, false).await),
        "conflict",
        "the primary is changed, not ended"
    );
    assert_eq!(
        refusal(set(&fixture.chen.household_id, &fixture.cadre_b.user_id, false).await),
        "not found",
        "no such pairing"
    );
    assert_eq!(
        refusal(set("no-such-household", &fixture.cadre_b.user_id, true).await),
        "not found"
    );
    assert_eq!(
        refusal(
            set(
                &fixture.wang.household_id,
                &fixture.supervisor_one.user_id,
                true
            )
            .await
        ),
        "not found",
        "only cadres are paired"
    );

    store
        .set_helper_pairing(
            &fixture.wang.household_id,
            &fixture.cadre_b.user_id,
            false,
            at,
        )
        .await
        .expect("end helper");
    let ended = store
        .pull_changes(&helper, &cursor, 100)
        .await
        .expect("pull after ending");
    assert_eq!(
        ended.removed_household_ids,
        vec![fixture.wang.household_id.clone()]
    );
    assert!(ended.households.is_empty());
    let loads = store.cadre_loads(COUNTY).await.expect("loads");
    let load_b = loads
        .iter()
        .find(|load| load.user_id == fixture.cadre_b.user_id)
        .expect("cadre b");
    assert_eq!((load_b.primary_count, load_b.secondary_count), (1, 0));
    // An ended pairing may be added again.
    store
        .set_helper_pairing(
            &fixture.wang.household_id,
            &fixture.cadre_b.user_id,
            true,
            at,
        )
        .await
        .expect("add again");
}

/// Reassigning a household: the old cadre's next pull lists it as removed (although it is
/// out of their scope now), the new cadre's next pull delivers it, and pushes from the old
/// cadre are out of scope.
pub async fn reassignment_purges_the_old_cadre_and_delivers_to_the_new(store: &dyn Store) {
    let fixture = seeded(store).await;
    let cadre_a = principal(&fixture.cadre_a, "phone-a");
    let cadre_b = principal(&fixture.cadre_b, "phone-b");
    let cursor_a = store
        .pull_changes(&cadre_a, &ScopeCursor::default(), 1000)
        .await
        .expect("a")
        .next_cursor;
    let cursor_b = store
        .pull_changes(&cadre_b, &ScopeCursor::default(), 1000)
        .await
        .expect("b")
        .next_cursor;

    store
        .reassign_household(
            &fixture.wang.household_id,
            &fixture.cadre_b.user_id,
            VISIT_TIME,
        )
        .await
        .expect("reassign");
    assert!(
        !store
            .is_paired(&fixture.cadre_a.user_id, &fixture.wang.household_id)
            .await
            .expect("a")
    );
    assert!(
        store
            .is_paired(&fixture.cadre_b.user_id, &fixture.wang.household_id)
            .await
            .expect("b")
    );

    let old = store
        .pull_changes(&cadre_a, &cursor_a, 1000)
        .await
        .expect("old cadre");
    assert_eq!(
        old.removed_household_ids,
        vec![fixture.wang.household_id.clone()]
    );
    assert!(
        old.households.is_empty(),
        "no PII of the household goes to the old cadre"
    );
    let new = store
        .pull_changes(&cadre_b, &cursor_b, 1000)
        .await
        .expect("new cadre");
    assert_eq!(new.households.len(), 1);
    assert_eq!(new.households[0].household_id, fixture.wang.household_id);
    assert!(new.removed_household_ids.is_empty());
    let township = store
        .pull_changes(
            &principal(&fixture.supervisor_one, "console"),
            &cursor_a,
            1000,
        )
        .await
        .expect("township");
    assert!(
        township.removed_household_ids.is_empty(),
        "tombstones go to their addressee only"
    );

    // Back to cadre A: a fresh pull of A delivers it and does not also remove it.
    store
        .reassign_household(
            &fixture.wang.household_id,
            &fixture.cadre_a.user_id,
            VISIT_TIME,
        )
        .await
        .expect("reassign back");
    let fresh = store
        .pull_changes(&cadre_a, &ScopeCursor::default(), 1000)
        .await
        .expect("fresh");
    assert!(
        fresh
            .households
            .iter()
            .any(|household| household.household_id == fixture.wang.household_id)
    );
    assert!(
        fresh.removed_household_ids.is_empty(),
        "{:?}",
        fresh.removed_household_ids
    );
    let b_again = store
        .pull_changes(&cadre_b, &new.next_cursor, 1000)
        .await
        .expect("b again");
    assert_eq!(
        b_again.removed_household_ids,
        vec![fixture.wang.household_id.clone()]
    );

    assert!(matches!(
        store
            .reassign_household(&new_id(), &fixture.cadre_a.user_id, VISIT_TIME)
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store
            .reassign_household(
                &fixture.wang.household_id,
                &fixture.supervisor_one.user_id,
                VISIT_TIME
            )
            .await,
        Err(StoreError::NotFound(_))
    ));
}

/// Registers every check above as one `#[tokio::test]` of the invoking backend, each on the
/// fresh store (and its guard) that `$fresh_store()` returns, or, written `async $fresh_store`,
/// on the store that `$fresh_store(test_name).await` returns (skipped when it is `None`).
#[cfg(test)]
macro_rules! pairings_conformance_tests {
    ($($fresh_store:tt)+) => {
        $crate::store::conformance::checks_as_tests!(
            $($fresh_store)+,
            pairings,
            [
                pairings_loads_and_problem_households,
                pairings_assign_primary_guards_and_audits,
                pairings_helpers_are_added_and_ended,
                reassignment_purges_the_old_cadre_and_delivers_to_the_new,
            ]
        );
    };
}
#[cfg(test)]
pub(crate) use pairings_conformance_tests;
