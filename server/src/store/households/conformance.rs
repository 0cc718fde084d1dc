//! Conformance checks for the household, income-threshold and checklist methods of
//! [`Store`]: threshold rows (标准线), area scoping (township or county), arrival order of
//! income registrations, the latest visit check per household and one household's dossier.

use fieldsync_model::codes::{ReviewState, VisitMode};
use fieldsync_model::income::{IncomeComponents, IncomeRegistration, IncomeThreshold};
use fieldsync_model::review::{Decision, DecisionRequest};
use fieldsync_model::sync::MutationPayload;
use fieldsync_model::visit::CheckResult;
use time::Duration;

use crate::store::conformance::{
    COUNTY, TOWNSHIP_ONE, TOWNSHIP_TWO, VISIT_TIME, apply, assert_all_applied, batch, income,
    new_id, push_visit, revise, seeded, visit,
};
use crate::store::{Store, StoreError, StoredDecision};

fn threshold(
    year: i32,
    region: &str,
    poverty: Option<i64>,
    monitoring: Option<i64>,
) -> IncomeThreshold {
    IncomeThreshold {
        year,
        region: region.into(),
        poverty_line_yuan: poverty,
        monitoring_line_yuan: monitoring,
        source_note: format!("{year} {region}"),
    }
}

pub async fn income_thresholds_are_upserted_by_year_and_region(store: &dyn Store) {
    seeded(store).await;
    assert!(store.income_thresholds().await.expect("read").is_empty());
    let national_2026 = threshold(2026, "national", Some(4_000), Some(6_000));
    let county_2026 = threshold(2026, COUNTY, None, Some(7_000));
    let national_2025 = threshold(2025, "national", Some(3_900), None);
    for row in [&national_2026, &county_2026, &national_2025] {
        store.set_income_threshold(row.clone()).await.expect("set");
    }
    let changed = threshold(2026, "national", None, Some(6_500));
    store
        .set_income_threshold(changed.clone())
        .await
        .expect("replace");
    assert_eq!(
        store.income_thresholds().await.expect("read"),
        vec![national_2025, county_2026, changed],
        "one row per (year, region), by year then region"
    );
}

fn registration(household_id: &str, year: i32, quarter: u32, wage_fen: i64) -> IncomeRegistration {
    IncomeRegistration::new(
        new_id(),
        household_id.into(),
        year,
        quarter,
        2,
        IncomeComponents {
            wage_fen,
            ..IncomeComponents::default()
        },
    )
    .expect("valid registration")
}

pub async fn area_queries_cover_a_township_or_a_whole_county(store: &dyn Store) {
    let fixture = seeded(store).await;
    let names = |households: Vec<fieldsync_model::household::Household>| {
        households
            .into_iter()
            .map(|household| household.head_name)
            .collect::<Vec<_>>()
    };
    // Village 1a (王大山, 李小梅 by name order) before 1b (赵春花).
    let mut township_one = names(store.households_in_area(TOWNSHIP_ONE).await.expect("t1"));
    let expected_one = {
        let mut village_a = vec!["王大山".to_owned(), "李小梅".to_owned()];
        village_a.sort();
        village_a.push("赵春花".to_owned());
        village_a
    };
    assert_eq!(township_one, expected_one);
    assert_eq!(
        names(store.households_in_area(TOWNSHIP_TWO).await.expect("t2")),
        vec!["陈建国".to_owned()]
    );
    let mut county = names(store.households_in_area(COUNTY).await.expect("county"));
    county.sort();
    township_one.push("陈建国".to_owned());
    township_one.sort();
    assert_eq!(county, township_one);
    assert!(
        store
            .households_in_area("nowhere")
            .await
            .expect("unknown")
            .is_empty()
    );

    // Pushed and directly saved registrations share one arrival order.
    let wang_q1 = income(&fixture.wang, 2026, 1);
    let wang_2025 = income(&fixture.wang, 2025, 4);
    let result = store
        .apply_push(batch(
            &fixture.cadre_a,
            "device-a",
            vec![
                apply(1, MutationPayload::RegisterIncome(wang_q1.clone())),
                apply(2, MutationPayload::RegisterIncome(wang_2025)),
            ],
        ))
        .await
        .expect("push");
    assert_all_applied(&result);
    let wang_q1_fixed = registration(&fixture.wang.household_id, 2026, 1, 123_400);
    let chen_q1 = registration(&fixture.chen.household_id, 2026, 1, 50_000);
    store
        .save_income_registrations(vec![wang_q1_fixed.clone(), chen_q1.clone()])
        .await
        .expect("save");
    assert_eq!(
        store
            .area_income_registrations(TOWNSHIP_ONE, 2026)
            .await
            .expect("t1"),
        vec![wang_q1.clone(), wang_q1_fixed.clone()],
        "the correction comes after the registration it corrects"
    );
    assert_eq!(
        store
            .area_income_registrations(TOWNSHIP_TWO, 2026)
            .await
            .expect("t2"),
        vec![chen_q1.clone()]
    );
    assert_eq!(
        store
            .area_income_registrations(COUNTY, 2026)
            .await
            .expect("county"),
        vec![wang_q1, wang_q1_fixed, chen_q1]
    );
    assert!(
        store
            .area_income_registrations(TOWNSHIP_ONE, 2024)
            .await
            .expect("none")
            .is_empty()
    );
}

pub async fn saving_income_registrations_is_idempotent_and_all_or_nothing(store: &dyn Store) {
    let fixture = seeded(store).await;
    let first = registration(&fixture.zhao.household_id, 2026, 2, 80_000);
    store
        .save_income_registrations(vec![first.clone()])
        .await
        .expect("save");
    store
        .save_income_registrations(vec![first.clone()])
        .await
        .expect("the same registration again is skipped");

    let mut changed = first.clone();
    changed.components.wage_fen += 1;
    changed.net_fen += 1;
    let fresh = registration(&fixture.zhao.household_id, 2026, 3, 90_000);
    let conflict = store
        .save_income_registrations(vec![fresh.clone(), changed])
        .await
        .expect_err("a reused id with other content");
    assert!(matches!(conflict, StoreError::Conflict(_)), "{conflict:?}");

    let ghost = registration("no-such-household", 2026, 1, 1);
    let missing = store
        .save_income_registrations(vec![fresh.clone(), ghost])
        .await
        .expect_err("unknown household");
    assert!(matches!(missing, StoreError::NotFound(_)), "{missing:?}");

    assert_eq!(
        store
            .area_income_registrations(TOWNSHIP_ONE, 2026)
            .await
            .expect("read"),
        vec![first],
        "failed batches stored nothing"
    );
}

pub async fn the_latest_visit_check_is_the_latest_check_in(store: &dyn Store) {
    let fixture = seeded(store).await;
    let mut march = visit(&fixture.wang, VisitMode::InPerson, VISIT_TIME);
    march.wellbeing.drinking_water = CheckResult::Fail;
    let mut april = visit(
        &fixture.wang,
        VisitMode::InPerson,
        VISIT_TIME + Duration::days(31),
    );
    april.wellbeing.food = CheckResult::Fail;
    let mut april_earlier = visit(
        &fixture.wang,
        VisitMode::Phone,
        VISIT_TIME + Duration::days(30),
    );
    april_earlier.wellbeing.clothing = CheckResult::Fail;
    let mut zhao_visit = visit(&fixture.zhao, VisitMode::InPerson, VISIT_TIME);
    zhao_visit.wellbeing.housing_safety = CheckResult::Fail;
    let mut chen_visit = visit(&fixture.chen, VisitMode::InPerson, VISIT_TIME);
    chen_visit.wellbeing.basic_medical = CheckResult::Fail;
    push_visit(store, &fixture.cadre_a, "device-a", 1, &march).await;
    push_visit(store, &fixture.cadre_a, "device-a", 2, &april).await;
    push_visit(store, &fixture.cadre_a, "device-a", 3, &april_earlier).await;
    push_visit(store, &fixture.cadre_a, "device-a", 4, &zhao_visit).await;
    // A later revision's check replaces the first one's.
    let mut zhao_fixed = revise(&zhao_visit);
    zhao_fixed.wellbeing.housing_safety = CheckResult::Pass;
    push_visit(store, &fixture.cadre_a, "device-a", 5, &zhao_fixed).await;
    push_visit(store, &fixture.cadre_b, "device-b", 1, &chen_visit).await;

    let checks = store
        .latest_wellbeing_checks(TOWNSHIP_ONE)
        .await
        .expect("t1");
    assert_eq!(checks.len(), 2, "李小梅 has no visit: {checks:?}");
    let wang = checks
        .iter()
        .find(|check| check.household_id == fixture.wang.household_id)
        .expect("wang");
    assert_eq!(wang.visit_id, april.visit_id);
    assert_eq!(wang.checkin_at, april.checkin_at);
    assert_eq!(wang.check.food, CheckResult::Fail);
    assert_eq!(wang.check.clothing, CheckResult::NotChecked);
    let zhao = checks
        .iter()
        .find(|check| check.household_id == fixture.zhao.household_id)
        .expect("zhao");
    assert_eq!(zhao.check.housing_safety, CheckResult::Pass);

    let county = store.latest_wellbeing_checks(COUNTY).await.expect("county");
    assert_eq!(county.len(), 3);
    assert!(
        county
            .iter()
            .any(|check| check.household_id == fixture.chen.household_id
                && check.check.basic_medical == CheckResult::Fail)
    );
}

pub async fn a_dossier_gathers_cadres_income_visits_and_conflicts(store: &dyn Store) {
    let fixture = seeded(store).await;
    assert_eq!(
        store
            .household_dossier("no-such-household")
            .await
            .expect("read"),
        None
    );

    let older = visit(&fixture.wang, VisitMode::InPerson, VISIT_TIME);
    let newer = visit(
        &fixture.wang,
        VisitMode::Phone,
        VISIT_TIME + Duration::days(3),
    );
    push_visit(store, &fixture.cadre_a, "device-a", 1, &older).await;
    push_visit(store, &fixture.cadre_a, "device-a", 2, &newer).await;
    let revised = revise(&older);
    push_visit(store, &fixture.cadre_a, "device-a", 3, &revised).await;
    store
        .decide(StoredDecision {
            request: DecisionRequest {
                visit_id: revised.visit_id.clone(),
                revision: revised.revision,
                content_hash: revised.content_hash(),
                decision: Decision::Approve,
                reasons: Vec::new(),
                note: String::new(),
                deadline: String::new(),
            },
            reviewer_user_id: fixture.supervisor_one.user_id.clone(),
            decided_at: VISIT_TIME + Duration::days(4),
        })
        .await
        .expect("approve");
    let q2 = registration(&fixture.wang.household_id, 2026, 2, 10_000);
    let q1 = registration(&fixture.wang.household_id, 2026, 1, 20_000);
    store
        .save_income_registrations(vec![q2.clone(), q1.clone()])
        .await
        .expect("save");

    let dossier = store
        .household_dossier(&fixture.wang.household_id)
        .await
        .expect("read")
        .expect("wang exists");
    assert_eq!(dossier.household.household_id, fixture.wang.household_id);
    assert_eq!(dossier.cadres.len(), 1);
    assert_eq!(dossier.cadres[0].user_id, fixture.cadre_a.user_id);
    assert_eq!(dossier.cadres[0].display_name, "张干部");
    assert_eq!(dossier.cadres[0].phone, "13800000000");
    assert!(dossier.cadres[0].is_primary);
    assert_eq!(dossier.registrations, vec![q2, q1], "arrival order");
    let visits: Vec<(String, u32, ReviewState)> = dossier
        .visits
        .iter()
        .map(|item| (item.visit.visit_id.clone(), item.visit.revision, item.state))
        .collect();
    assert_eq!(
        visits,
        vec![
            (newer.visit_id.clone(), 1, ReviewState::Submitted),
            (older.visit_id.clone(), 2, ReviewState::Approved),
        ],
        "latest revision of each visit, latest check-in first"
    );
    assert!(
        dossier
            .visits
            .iter()
            .all(|item| item.cadre_name == "张干部")
    );
    assert_eq!(dossier.open_conflicts, 0);

    let zhao = store
        .household_dossier(&fixture.zhao.household_id)
        .await
        .expect("read")
        .expect("zhao exists");
    assert!(
        !zhao.cadres[0].is_primary,
        "zhao's pairing is not the primary one"
    );
    assert!(zhao.visits.is_empty() && zhao.registrations.is_empty());
}

/// Income registrations come back newest quarter first.
pub async fn income_registrations_newest_first(store: &dyn Store) {
    let fixture = seeded(store).await;
    let older = income(&fixture.wang, 2025, 4);
    let newest = income(&fixture.wang, 2026, 2);
    let middle = income(&fixture.wang, 2026, 1);
    let elsewhere = income(&fixture.zhao, 2026, 3);
    let result = store
        .apply_push(batch(
            &fixture.cadre_a,
            "device-a",
            vec![
                apply(1, MutationPayload::RegisterIncome(older.clone())),
                apply(2, MutationPayload::RegisterIncome(newest.clone())),
                apply(3, MutationPayload::RegisterIncome(middle.clone())),
                apply(4, MutationPayload::RegisterIncome(elsewhere)),
            ],
        ))
        .await
        .expect("push");
    assert_all_applied(&result);
    assert_eq!(
        store
            .income_registrations(&fixture.wang.household_id)
            .await
            .expect("income"),
        vec![newest, middle, older]
    );
    assert!(
        store
            .income_registrations(&fixture.chen.household_id)
            .await
            .expect("income")
            .is_empty()
    );
}

/// Registers every check above as one `#[tokio::test]` of the invoking backend, each on the
/// fresh store (and its guard) that `$fresh_store()` returns, or, written `async $fresh_store`,
/// on the store that `$fresh_store(test_name).await` returns (skipped when it is `None`).
#[cfg(test)]
macro_rules! households_conformance_tests {
    ($($fresh_store:tt)+) => {
        $crate::store::conformance::checks_as_tests!(
            $($fresh_store)+,
            households,
            [
                income_thresholds_are_upserted_by_year_and_region,
                area_queries_cover_a_township_or_a_whole_county,
                saving_income_registrations_is_idempotent_and_all_or_nothing,
                the_latest_visit_check_is_the_latest_check_in,
                a_dossier_gathers_cadres_income_visits_and_conflicts,
                income_registrations_newest_first,
            ]
        );
    };
}
#[cfg(test)]
pub(crate) use households_conformance_tests;
