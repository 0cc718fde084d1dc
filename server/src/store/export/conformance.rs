//! Conformance checks for the ledger exports (台账导出) and the audit log (审计日志) part of
//! [`Store`]: export pages are scoped to the area, keep only latest revisions and the
//! registration in force, page with their cursor without gaps or repeats, and the audit log
//! appends a verifiable hash chain. A backend runs them all with one
//! `export_conformance_tests!` line.

use fieldsync_model::access::{
    ACTION_FULL_EXPORT, AuditContent, ChainedRecord, GENESIS_HASH, verify_chain,
};
use fieldsync_model::codes::VisitMode;
use fieldsync_model::sync::MutationPayload;

use crate::store::conformance::{
    COUNTY, TOWNSHIP_ONE, TOWNSHIP_TWO, VISIT_MONTH, VISIT_TIME, apply, batch, income, push_visit,
    revise, seeded, visit,
};
use crate::store::{AuditRecord, ExportCursor, Store};

/// Visits of the month, latest revision only, from the area's households only; a county
/// sees its townships; paging with the cursor returns every row exactly once.
pub async fn export_visits_are_scoped_latest_and_paged(store: &dyn Store) {
    let fixture = seeded(store).await;
    let first = visit(&fixture.wang, VisitMode::InPerson, VISIT_TIME);
    push_visit(store, &fixture.cadre_a, "phone-a", 1, &first).await;
    let second = revise(&first);
    push_visit(store, &fixture.cadre_a, "phone-a", 2, &second).await;
    let zhao = visit(&fixture.zhao, VisitMode::Phone, VISIT_TIME);
    push_visit(store, &fixture.cadre_a, "phone-a", 3, &zhao).await;
    let li = visit(&fixture.li, VisitMode::InPerson, VISIT_TIME);
    push_visit(store, &fixture.cadre_b, "phone-b", 1, &li).await;
    let april = visit(
        &fixture.li,
        VisitMode::InPerson,
        VISIT_TIME + time::Duration::days(31),
    );
    push_visit(store, &fixture.cadre_b, "phone-b", 2, &april).await;

    let rows = store
        .export_visits(TOWNSHIP_ONE, VISIT_MONTH, None, 100)
        .await
        .expect("export");
    assert_eq!(rows.len(), 3, "wang (latest revision), zhao, li; not April");
    let wang_row = rows
        .iter()
        .find(|row| row.visit.visit_id == first.visit_id)
        .expect("wang's visit");
    assert_eq!(wang_row.visit.revision, 2);
    assert_eq!(wang_row.cadre_name, fixture.cadre_a.display_name);
    assert_eq!(wang_row.household.head_id_number, "11010519491231002X");
    assert_eq!(wang_row.household.phone, fixture.wang.phone);
    assert_eq!(wang_row.household.township_name, "温泉镇");
    assert_eq!(wang_row.household.village_name, "东冲村");

    assert!(
        store
            .export_visits(TOWNSHIP_TWO, VISIT_MONTH, None, 100)
            .await
            .expect("other township")
            .is_empty()
    );
    let county = store
        .export_visits(COUNTY, VISIT_MONTH, None, 100)
        .await
        .expect("county");
    assert_eq!(county.len(), 3);

    let mut paged = Vec::new();
    let mut cursor: Option<ExportCursor> = None;
    loop {
        let page = store
            .export_visits(COUNTY, VISIT_MONTH, cursor.clone(), 1)
            .await
            .expect("page");
        let Some(last) = page.last() else { break };
        cursor = Some(last.cursor());
        paged.extend(page);
    }
    assert_eq!(
        paged, county,
        "pages of one row give the same rows in order"
    );
}

/// The registration in force per quarter (the last registered), scoped and filtered.
pub async fn export_income_keeps_the_registration_in_force(store: &dyn Store) {
    let fixture = seeded(store).await;
    let q1 = income(&fixture.wang, 2026, 1);
    let mut correction = income(&fixture.wang, 2026, 1);
    correction.components.wage_fen = 10_000;
    let correction = fieldsync_model::income::IncomeRegistration::new(
        correction.registration_id,
        correction.household_id,
        2026,
        1,
        3,
        correction.components,
    )
    .expect("valid");
    let q2 = income(&fixture.wang, 2026, 2);
    let chen = income(&fixture.chen, 2026, 1);
    let last_year = income(&fixture.li, 2025, 4);
    let result = store
        .apply_push(batch(
            &fixture.cadre_a,
            "phone-a",
            vec![
                apply(1, MutationPayload::RegisterIncome(q1)),
                apply(2, MutationPayload::RegisterIncome(correction.clone())),
                apply(3, MutationPayload::RegisterIncome(q2.clone())),
                apply(4, MutationPayload::RegisterIncome(chen)),
                apply(5, MutationPayload::RegisterIncome(last_year)),
            ],
        ))
        .await
        .expect("push income");
    assert_eq!(result.outcomes.len(), 5);

    let year = store
        .export_income(TOWNSHIP_ONE, 2026, None, None, 100)
        .await
        .expect("year");
    let registrations: Vec<_> = year.iter().map(|row| row.registration.clone()).collect();
    assert_eq!(registrations, vec![correction, q2.clone()]);
    let quarter = store
        .export_income(TOWNSHIP_ONE, 2026, Some(2), None, 100)
        .await
        .expect("quarter");
    assert_eq!(quarter.len(), 1);
    assert_eq!(quarter[0].registration, q2);
    let first_page = store
        .export_income(TOWNSHIP_ONE, 2026, None, None, 1)
        .await
        .expect("page");
    let rest = store
        .export_income(TOWNSHIP_ONE, 2026, None, Some(first_page[0].cursor()), 10)
        .await
        .expect("rest");
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].registration.quarter, 2);
    assert_eq!(
        store
            .export_income(COUNTY, 2026, None, None, 100)
            .await
            .expect("county")
            .len(),
        3
    );
}

fn audit_content(subject: &str) -> AuditContent {
    AuditContent {
        recorded_at_ms: 1_773_100_000_000,
        actor_user_id: "admin".into(),
        actor_role: "county".into(),
        area_id: COUNTY.into(),
        action: ACTION_FULL_EXPORT.into(),
        subject: subject.into(),
        filter: "month=2026-03".into(),
        row_count: 7,
        file_sha256: "ab".repeat(32),
        detail: "导出完整身份证号和电话".into(),
    }
}

/// Appends chain from the genesis hash, read back in order, and verify.
pub async fn audit_log_appends_a_verifiable_chain(store: &dyn Store) {
    let first = store
        .append_audit(audit_content("visits.xlsx"))
        .await
        .expect("append");
    assert_eq!(first.previous_hash, GENESIS_HASH);
    let second = store
        .append_audit(audit_content("income.csv"))
        .await
        .expect("append");
    assert_eq!(second.previous_hash, first.record_hash);
    let records = store.audit_records(0, 100).await.expect("read");
    assert_eq!(records, vec![first.clone(), second.clone()]);
    let chained: Vec<ChainedRecord> = records.iter().map(AuditRecord::chained).collect();
    assert_eq!(verify_chain(&chained), Ok(()));
    assert_eq!(
        store
            .audit_records(first.audit_id, 100)
            .await
            .expect("after")
            .len(),
        1
    );
}

/// Registers every check above as one `#[tokio::test]` of the invoking backend, each on the
/// fresh store (and its guard) that `$fresh_store()` returns, or, written `async $fresh_store`,
/// on the store that `$fresh_store(test_name).await` returns (skipped when it is `None`).
#[cfg(test)]
macro_rules! export_conformance_tests {
    ($($fresh_store:tt)+) => {
        $crate::store::conformance::checks_as_tests!(
            $($fresh_store)+,
            export,
            [
                export_visits_are_scoped_latest_and_paged,
                export_income_keeps_the_registration_in_force,
                audit_log_appends_a_verifiable_chain,
            ]
        );
    };
}
#[cfg(test)]
pub(crate) use export_conformance_tests;
