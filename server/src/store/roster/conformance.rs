//! Conformance checks for the roster import methods of [`Store`] (花名册导入): the county
//! snapshot, the one-transaction apply (new households and members logged for pull, field
//! changes as register writes under the usual conflict rules, the `import_runs` audit) and
//! the all-or-nothing refusal.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use fieldsync_model::codes::{Health, Relation, Sex};
use fieldsync_model::hlc::Hlc;
use fieldsync_model::household::{Household, Member};
use fieldsync_model::register::{FieldTarget, Stamp};
use fieldsync_model::roster::{FieldChange, ImportPlan, NewMember};
use fieldsync_model::sync::MutationOutcome;
use serde_json::json;

use crate::store::conformance::{
    COUNTY, Fixture, TOWNSHIP_ONE, TOWNSHIP_TWO, VILLAGE_TWO_A, VISIT_TIME, household,
    household_edit, new_id, principal, push_at, seeded,
};
use crate::store::{ImportRun, RosterImportApply, ScopeCursor, Store, StoreError};

const IMPORT_DEVICE: &str = "roster-import";

fn run(fixture: &Fixture, plan: &ImportPlan) -> ImportRun {
    ImportRun {
        run_id: new_id(),
        county_id: COUNTY.into(),
        file_name: "花名册.xlsx".into(),
        file_sha256: "ab".repeat(32),
        file_bytes: 1234,
        data_rows: 9,
        households_created: plan.new_households.len() as u64,
        members_created: plan.new_member_count() as u64,
        fields_changed: plan.field_changes.len() as u64,
        unchanged_rows: plan.unchanged_rows,
        applied_by_user_id: fixture.admin.user_id.clone(),
        applied_by_name: String::new(),
        applied_at: VISIT_TIME,
    }
}

fn apply_of(fixture: &Fixture, plan: ImportPlan, millis: u64) -> RosterImportApply {
    RosterImportApply {
        run: run(fixture, &plan),
        plan,
        stamp: Stamp {
            hlc: Hlc::from_parts(millis, 0),
            device_id: IMPORT_DEVICE.into(),
        },
        applied_items: Arc::new(AtomicU64::new(0)),
    }
}

fn phone_change(card: &Household, new_phone: &str) -> FieldChange {
    FieldChange {
        household_id: card.household_id.clone(),
        national_household_number: card.national_household_number.clone(),
        row_number: 2,
        target: FieldTarget::Household,
        field: "phone".to_owned(),
        old_value: json!(card.phone),
        new_value: json!(new_phone),
        base_seq: card.field_seq(&FieldTarget::Household, "phone"),
    }
}

/// The fixture households all share one head ID number; a household an import creates
/// needs its own, or the apply-time duplicate check (blind index) refuses it.
fn give_own_id_number(card: &mut Household, first_17_digits: &str) {
    let check = fieldsync_model::id_number::check_character(first_17_digits).expect("17 digits");
    card.members[0].id_number = format!("{first_17_digits}{check}");
}

fn child(name: &str) -> Member {
    Member {
        member_id: new_id(),
        name: name.into(),
        relation: Relation::Son,
        sex: Sex::Male,
        birth_date: "2010-03-03".into(),
        id_number: String::new(),
        health: Health::Healthy,
        labour_capacity: fieldsync_model::codes::LabourCapacity::None,
        schooling: fieldsync_model::codes::Schooling::Primary,
        disability: fieldsync_model::codes::Disability::None,
        disability_grade: 0,
        has_medical_insurance: true,
        has_serious_illness_insurance: true,
        has_pension_insurance: false,
        removed: false,
    }
}

async fn newest_seqs(store: &dyn Store) -> (i64, i64) {
    let bounds = store.change_log_bounds().await.expect("bounds");
    (
        bounds.of(TOWNSHIP_ONE).newest_seq,
        bounds.of(TOWNSHIP_TWO).newest_seq,
    )
}

pub async fn roster_snapshot_lists_the_county_areas_and_households(store: &dyn Store) {
    let fixture = seeded(store).await;
    let roster = store.county_roster(COUNTY).await.expect("roster");
    assert_eq!(roster.townships.len(), 2);
    assert_eq!(roster.villages.len(), 3);
    assert!(
        roster
            .villages
            .iter()
            .all(|village| village.parent_id.as_deref() == Some(TOWNSHIP_ONE)
                || village.parent_id.as_deref() == Some(TOWNSHIP_TWO))
    );
    let mut ids: Vec<&str> = roster
        .households
        .iter()
        .map(|household| household.household_id.as_str())
        .collect();
    ids.sort_unstable();
    let mut expected = vec![
        fixture.wang.household_id.as_str(),
        fixture.zhao.household_id.as_str(),
        fixture.li.household_id.as_str(),
        fixture.chen.household_id.as_str(),
    ];
    expected.sort_unstable();
    assert_eq!(ids, expected);
    let other = store
        .county_roster(TOWNSHIP_ONE)
        .await
        .expect("not a county");
    assert!(other.townships.is_empty() && other.households.is_empty());
    assert!(
        store
            .import_runs(COUNTY, 10)
            .await
            .expect("runs")
            .is_empty()
    );
}

pub async fn roster_import_applies_everything_and_logs_it_for_pull(store: &dyn Store) {
    let fixture = seeded(store).await;
    let before = newest_seqs(store).await;
    let mut new_card = household("孙家旺", TOWNSHIP_TWO, VILLAGE_TWO_A, 30.812);
    new_card.national_household_number = "4212230020010099".into();
    give_own_id_number(&mut new_card, "42122319600101001");
    let son = child("赵小虎");
    let plan = ImportPlan {
        new_households: vec![new_card.clone()],
        new_members: vec![NewMember {
            household_id: fixture.zhao.household_id.clone(),
            row_number: 7,
            member: son.clone(),
        }],
        field_changes: vec![phone_change(&fixture.wang, "13711112222")],
        unchanged_rows: 4,
    };
    let apply = apply_of(&fixture, plan, 5_000);
    let progress = Arc::clone(&apply.applied_items);
    let stored_run = store.apply_roster_import(apply).await.expect("apply");
    assert_eq!(progress.load(Ordering::Relaxed), 3, "one per item");
    assert_eq!(stored_run.households_created, 1);
    assert_eq!(stored_run.applied_by_name, fixture.admin.display_name);

    let wang = store
        .get_household(&fixture.wang.household_id)
        .await
        .expect("read")
        .expect("wang");
    assert_eq!(wang.phone, "13711112222");
    let history = store
        .register_history(&wang.household_id, &FieldTarget::Household, "phone")
        .await
        .expect("history");
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].stamp.device_id, IMPORT_DEVICE);
    assert_eq!(history[0].author_user_id, fixture.admin.user_id);
    let zhao = store
        .get_household(&fixture.zhao.household_id)
        .await
        .expect("read")
        .expect("zhao");
    assert!(
        zhao.members
            .iter()
            .any(|member| member.member_id == son.member_id)
    );
    let stored_new = store
        .get_household(&new_card.household_id)
        .await
        .expect("read")
        .expect("the new household");
    assert_eq!(stored_new.national_household_number, "4212230020010099");
    assert!(stored_new.server_seq > 0);

    // Logged: two changes in township one (wang's phone, zhao's member), one in township two.
    let after = newest_seqs(store).await;
    assert_eq!((after.0 - before.0, after.1 - before.1), (2, 1));
    let supervisor_two = principal(&fixture.supervisor_two, "console");
    let pulled = store
        .pull_changes(&supervisor_two, &ScopeCursor::default(), 1000)
        .await
        .expect("pull");
    assert!(
        pulled
            .households
            .iter()
            .any(|household| household.household_id == new_card.household_id)
    );
    let cadre_a = principal(&fixture.cadre_a, "phone-a");
    let pulled = store
        .pull_changes(&cadre_a, &ScopeCursor::default(), 1000)
        .await
        .expect("pull");
    let pulled_wang = pulled
        .households
        .iter()
        .find(|household| household.household_id == fixture.wang.household_id)
        .expect("wang is the cadre's");
    assert_eq!(pulled_wang.phone, "13711112222");

    let runs = store.import_runs(COUNTY, 10).await.expect("runs");
    assert_eq!(runs, vec![stored_run]);
    assert!(
        store
            .import_runs(TOWNSHIP_ONE, 10)
            .await
            .expect("runs")
            .is_empty()
    );
}

pub async fn a_roster_import_that_fails_stores_nothing(store: &dyn Store) {
    let fixture = seeded(store).await;
    let before = newest_seqs(store).await;
    // Valid first items, then a new household whose 户编号 is already stored: the whole
    // import is refused, including the writes before it.
    let mut fresh = household("钱多多", TOWNSHIP_TWO, VILLAGE_TWO_A, 30.813);
    fresh.national_household_number = "4212230020010100".into();
    give_own_id_number(&mut fresh, "42122319600101002");
    let mut duplicate = household("冒名户", TOWNSHIP_TWO, VILLAGE_TWO_A, 30.814);
    duplicate.national_household_number = fixture.wang.national_household_number.clone();
    let plan = ImportPlan {
        new_households: vec![fresh.clone(), duplicate],
        new_members: Vec::new(),
        field_changes: vec![phone_change(&fixture.wang, "13711112222")],
        unchanged_rows: 0,
    };
    let refused = store
        .apply_roster_import(apply_of(&fixture, plan, 5_000))
        .await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "{refused:?}"
    );
    assert!(
        store
            .get_household(&fresh.household_id)
            .await
            .expect("read")
            .is_none()
    );
    // A value the field rules refuse (an address longer than 200 characters) also rolls
    // back everything.
    let mut too_long = phone_change(&fixture.wang, "");
    too_long.field = "address".to_owned();
    too_long.new_value = json!("长".repeat(201));
    let plan = ImportPlan {
        new_households: vec![fresh.clone()],
        new_members: Vec::new(),
        field_changes: vec![phone_change(&fixture.wang, "13711112222"), too_long],
        unchanged_rows: 0,
    };
    let refused = store
        .apply_roster_import(apply_of(&fixture, plan, 5_000))
        .await;
    assert!(
        matches!(refused, Err(StoreError::InvalidValue { .. })),
        "{refused:?}"
    );
    let wang = store
        .get_household(&fixture.wang.household_id)
        .await
        .expect("read")
        .expect("wang");
    assert_eq!(wang.phone, fixture.wang.phone);
    assert_eq!(newest_seqs(store).await, before, "nothing was logged");
    assert!(
        store
            .import_runs(COUNTY, 10)
            .await
            .expect("runs")
            .is_empty()
    );
}

pub async fn an_import_over_an_unseen_phone_edit_is_a_conflict_and_still_wins(store: &dyn Store) {
    let fixture = seeded(store).await;
    // The dry run saw wang's phone at base 0; a cadre edits it before the apply.
    let change = phone_change(&fixture.wang, "13711112222");
    let outcome = push_at(
        store,
        &fixture.cadre_a,
        "phone-a",
        1,
        9_000,
        household_edit(&fixture.wang, "phone", json!("13899990000"), 0),
    )
    .await;
    assert_eq!(outcome, MutationOutcome::Applied);
    let plan = ImportPlan {
        new_households: Vec::new(),
        new_members: Vec::new(),
        field_changes: vec![change],
        unchanged_rows: 0,
    };
    // Stamped before the phone's write: the store moves it past, so the import wins.
    store
        .apply_roster_import(apply_of(&fixture, plan, 1_000))
        .await
        .expect("apply");
    let wang = store
        .get_household(&fixture.wang.household_id)
        .await
        .expect("read")
        .expect("wang");
    assert_eq!(wang.phone, "13711112222");
    let conflicts = store.open_conflicts(TOWNSHIP_ONE).await.expect("conflicts");
    assert_eq!(conflicts.len(), 1, "the cadre's value is not lost silently");
    assert_eq!(conflicts[0].field, "phone");
}

/// Registers every check above as one `#[tokio::test]` of the invoking backend, each on the
/// fresh store (and its guard) that `$fresh_store()` returns, or, written `async $fresh_store`,
/// on the store that `$fresh_store(test_name).await` returns (skipped when it is `None`).
#[cfg(test)]
macro_rules! roster_conformance_tests {
    ($($fresh_store:tt)+) => {
        $crate::store::conformance::checks_as_tests!(
            $($fresh_store)+,
            roster,
            [
                roster_snapshot_lists_the_county_areas_and_households,
                roster_import_applies_everything_and_logs_it_for_pull,
                a_roster_import_that_fails_stores_nothing,
                an_import_over_an_unseen_phone_edit_is_a_conflict_and_still_wins,
            ]
        );
    };
}
#[cfg(test)]
pub(crate) use roster_conformance_tests;
