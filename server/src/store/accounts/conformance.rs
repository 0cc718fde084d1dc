//! Conformance checks of [`AccountsStore`](crate::store::accounts::AccountsStore): creating,
//! listing, editing, disabling and re-enabling accounts, one-time passwords, and the
//! refusals (taken username or ID number, unknown area). Every backend runs each check once
//! on a fresh store.

use fieldsync_model::codes::{CadreRank, Role};
use time::Duration;

use crate::store::accounts::{AccountEdit, AccountFilter, CadreDetails, NewAccount};
use crate::store::conformance::{
    COUNTY, TOWNSHIP_ONE, TOWNSHIP_TWO, VISIT_TIME, new_id, principal, seeded,
};
use crate::store::jobs::ImportJobRecord;
use crate::store::sessions::conformance::session_record;
use crate::store::{ScopeCursor, SessionEndReason, Store, StoreError};

/// A valid 18-digit ID number (GB 11643 check digit) for the cadre of these checks.
const CADRE_ID_NUMBER: &str = "11010519491231002X";

fn new_cadre(username: &str, id_number: &str) -> NewAccount {
    NewAccount {
        user_id: new_id(),
        username: username.into(),
        display_name: "孙丽".into(),
        role: Role::Cadre,
        area_id: TOWNSHIP_ONE.into(),
        phone: "13912345678".into(),
        rank: Some(CadreRank::SectionLevel),
        details: CadreDetails {
            unit: "县农业农村局".into(),
            id_number: id_number.into(),
            team_member: true,
            active_from: "2026-03-01".into(),
            active_to: String::new(),
        },
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".into(),
        must_change_password: true,
        created_at: VISIT_TIME,
    }
}

/// A created account reads back whole (ID number and phone opened), is listed under its
/// county and township but not the other township, and counts; a taken username, user id
/// or ID number is a `Conflict` and an unknown area `NotFound`, each leaving nothing behind.
pub async fn accounts_are_created_listed_and_refused_when_taken(store: &dyn Store) {
    let fixture = seeded(store).await;
    let before = store.account_count().await.expect("count");
    assert_eq!(before, 5, "the fixture's five users");
    let cadre = new_cadre("sunli", CADRE_ID_NUMBER);
    store
        .create_account(cadre.clone())
        .await
        .expect("create account");
    let read = store
        .account(&cadre.user_id)
        .await
        .expect("read")
        .expect("the account exists");
    assert_eq!(read.username, "sunli");
    assert_eq!(read.details, cadre.details);
    assert_eq!(read.phone, "13912345678");
    assert_eq!(read.rank, Some(CadreRank::SectionLevel));
    assert!(read.must_change_password);
    assert_eq!(read.disabled_at, None);
    assert_eq!(read.created_at, Some(VISIT_TIME));
    assert_eq!(store.account_count().await.expect("count"), before + 1);

    let listed = |area: &str, role: Option<Role>| {
        let filter = AccountFilter {
            area_id: area.into(),
            role,
            include_disabled: true,
        };
        async move {
            store
                .accounts(&filter)
                .await
                .expect("list")
                .into_iter()
                .map(|account| account.username)
                .collect::<Vec<_>>()
        }
    };
    let county = listed(COUNTY, None).await;
    assert_eq!(county.len(), 6, "{county:?}");
    assert_eq!(
        county[0], fixture.admin.username,
        "the admin first: {county:?}"
    );
    assert!(
        listed(TOWNSHIP_ONE, Some(Role::Cadre))
            .await
            .contains(&"sunli".to_owned())
    );
    assert!(
        !listed(TOWNSHIP_TWO, None)
            .await
            .contains(&"sunli".to_owned())
    );

    // Refusals, each with nothing stored.
    let mut same_username = new_cadre("sunli", "");
    same_username.display_name = "另一个孙丽".into();
    assert!(matches!(
        store.create_account(same_username).await,
        Err(StoreError::Conflict(_))
    ));
    let mut same_id_number = new_cadre("sunli2", &CADRE_ID_NUMBER.to_lowercase());
    same_id_number.display_name = "冒名".into();
    assert!(
        matches!(
            store.create_account(same_id_number).await,
            Err(StoreError::Conflict(_))
        ),
        "an ID number is one person whatever the case of its X"
    );
    let mut same_user_id = new_cadre("sunli3", "");
    same_user_id.user_id = cadre.user_id.clone();
    assert!(matches!(
        store.create_account(same_user_id).await,
        Err(StoreError::Conflict(_))
    ));
    let mut nowhere = new_cadre("sunli4", "");
    nowhere.area_id = "no-such-area".into();
    assert!(matches!(
        store.create_account(nowhere).await,
        Err(StoreError::NotFound(_))
    ));
}

/// A cadre import job claimed by `runner`, as the apply writes it: applied, its view
/// holding the one-time passwords.
fn applied_import_job(runner: &str) -> ImportJobRecord {
    ImportJobRecord {
        job_id: "cadre-plan-1".into(),
        kind: "cadres".into(),
        county_id: COUNTY.into(),
        runner: runner.into(),
        phase: "applied".into(),
        created_at: VISIT_TIME,
        heartbeat_at: VISIT_TIME,
        view_json: r#"{"credentials":[{"username":"batch1","one_time_password":"abcd-efgh"}]}"#
            .into(),
        plan_json: None,
    }
}

/// A cadre import writes its accounts and the job holding their one-time passwords in one
/// transaction: a batch with one taken username stores no account and leaves the job as
/// claimed; a job another runner took over stores no account either; otherwise both are
/// there together.
pub async fn accounts_and_their_import_job_are_written_together(store: &dyn Store) {
    seeded(store).await;
    store
        .create_account(new_cadre("sunli", CADRE_ID_NUMBER))
        .await
        .expect("create account");
    let before = store.account_count().await.expect("count");
    let ready = ImportJobRecord {
        runner: "dry-run".into(),
        phase: "ready".into(),
        view_json: "{}".into(),
        plan_json: Some("{}".into()),
        ..applied_import_job("dry-run")
    };
    store.save_import_job(&ready).await.expect("save the plan");
    store
        .claim_import_apply(&ready.kind, COUNTY, &ready.job_id, "apply-run", VISIT_TIME)
        .await
        .expect("claim")
        .expect("the ready plan is claimed");
    let job_phase = || async {
        store
            .import_job(&ready.kind, COUNTY, &ready.job_id)
            .await
            .expect("read job")
            .expect("job")
            .phase
    };
    let batch1_exists = || async {
        store
            .find_user_by_username("batch1")
            .await
            .expect("find")
            .is_some()
    };

    let with_taken_username = vec![new_cadre("batch1", ""), new_cadre("sunli", "")];
    assert!(matches!(
        store
            .create_accounts(with_taken_username, &applied_import_job("apply-run"))
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(!batch1_exists().await);
    assert_eq!(
        job_phase().await,
        "applying",
        "the job was not written either"
    );

    assert!(matches!(
        store
            .create_accounts(
                vec![new_cadre("batch1", "")],
                &applied_import_job("another-replica")
            )
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(!batch1_exists().await, "no accounts without their job");
    assert_eq!(store.account_count().await.expect("count"), before);

    store
        .create_accounts(
            vec![new_cadre("batch1", "")],
            &applied_import_job("apply-run"),
        )
        .await
        .expect("accounts and job");
    assert!(batch1_exists().await);
    let job = store
        .import_job(&ready.kind, COUNTY, &ready.job_id)
        .await
        .expect("read job")
        .expect("job");
    assert_eq!(job.phase, "applied");
    assert_eq!(job.view_json, applied_import_job("apply-run").view_json);
}

/// An edit changes name, contact, role, area and roster fields; an unknown area or account
/// is `NotFound`, and another account's ID number a `Conflict`.
pub async fn accounts_are_edited(store: &dyn Store) {
    let fixture = seeded(store).await;
    let cadre = new_cadre("sunli", CADRE_ID_NUMBER);
    store.create_account(cadre.clone()).await.expect("create");
    let edit = AccountEdit {
        display_name: "孙丽华".into(),
        phone: "13700000001".into(),
        role: Role::Township,
        area_id: TOWNSHIP_TWO.into(),
        rank: None,
        details: CadreDetails::default(),
    };
    store
        .edit_account(&cadre.user_id, edit.clone())
        .await
        .expect("edit");
    let read = store
        .account(&cadre.user_id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(
        (
            read.display_name.as_str(),
            read.phone.as_str(),
            read.role,
            read.area_id.as_str()
        ),
        ("孙丽华", "13700000001", Role::Township, TOWNSHIP_TWO)
    );
    assert_eq!(read.details, CadreDetails::default());
    let login = store
        .find_user_by_id(&cadre.user_id)
        .await
        .expect("find")
        .expect("exists");
    assert_eq!(
        (login.role, login.area_id.as_str()),
        (Role::Township, TOWNSHIP_TWO)
    );

    let mut elsewhere = edit.clone();
    elsewhere.area_id = "no-such-area".into();
    assert!(matches!(
        store.edit_account(&cadre.user_id, elsewhere).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.edit_account("no-such-user", edit.clone()).await,
        Err(StoreError::NotFound(_))
    ));
    // The ID number is now free again (the edit cleared it) and can go to cadre A, but then
    // not back to this account.
    let mut cadre_a_edit = edit.clone();
    cadre_a_edit.role = Role::Cadre;
    cadre_a_edit.area_id = TOWNSHIP_ONE.into();
    cadre_a_edit.details.id_number = CADRE_ID_NUMBER.into();
    store
        .edit_account(&fixture.cadre_a.user_id, cadre_a_edit)
        .await
        .expect("the freed ID number goes to cadre A");
    let mut back = edit;
    back.details.id_number = CADRE_ID_NUMBER.into();
    assert!(matches!(
        store.edit_account(&cadre.user_id, back).await,
        Err(StoreError::Conflict(_))
    ));
}

/// Disabling a cadre ends every session and every pairing (their phone receives the
/// hand-over tombstones at its next pull, and the household loses its 第一帮扶责任人);
/// login state says disabled; a second disable is a `Conflict`. Re-enabling restores the
/// login, not the pairings.
pub async fn disabling_an_account_ends_its_sessions_and_pairings(store: &dyn Store) {
    let fixture = seeded(store).await;
    let cadre = &fixture.cadre_a;
    store
        .create_session(session_record(cadre, "device-a", 'a', None))
        .await
        .expect("session");
    assert!(
        store
            .is_paired(&cadre.user_id, &fixture.wang.household_id)
            .await
            .expect("paired")
    );
    let at = VISIT_TIME + Duration::days(1);
    let outcome = store
        .disable_account(&cadre.user_id, at)
        .await
        .expect("disable");
    assert_eq!(outcome.sessions_ended, 1);
    assert_eq!(outcome.pairings_ended, 2, "wang (primary) and zhao");
    let session = store
        .find_session(&"a".repeat(64))
        .await
        .expect("find")
        .expect("the ended session is kept");
    assert_eq!(session.ended, Some(SessionEndReason::Revoked));
    for household in [&fixture.wang, &fixture.zhao] {
        assert!(
            !store
                .is_paired(&cadre.user_id, &household.household_id)
                .await
                .expect("paired"),
            "{}",
            household.head_name
        );
    }
    let state = store
        .login_state(&cadre.user_id)
        .await
        .expect("state")
        .expect("exists");
    assert!(state.disabled);
    let account = store
        .account(&cadre.user_id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(account.disabled_at, Some(at));
    assert!(matches!(
        store.disable_account(&cadre.user_id, at).await,
        Err(StoreError::Conflict(_))
    ));
    // The cadre's phone, still holding a cursor, is told to purge both households.
    let pulled = store
        .pull_changes(&principal(cadre, "device-a"), &ScopeCursor::default(), 1000)
        .await
        .expect("pull");
    let mut removed = pulled.removed_household_ids.clone();
    removed.sort();
    let mut expected = vec![
        fixture.wang.household_id.clone(),
        fixture.zhao.household_id.clone(),
    ];
    expected.sort();
    assert_eq!(removed, expected);
    // Disabled accounts are listed only when asked for.
    let active_only = AccountFilter {
        area_id: COUNTY.into(),
        role: Some(Role::Cadre),
        include_disabled: false,
    };
    let listed = store.accounts(&active_only).await.expect("list");
    assert!(
        listed
            .iter()
            .all(|account| account.user_id != cadre.user_id)
    );

    store.enable_account(&cadre.user_id).await.expect("enable");
    assert!(
        !store
            .login_state(&cadre.user_id)
            .await
            .expect("state")
            .expect("exists")
            .disabled
    );
    assert!(
        !store
            .is_paired(&cadre.user_id, &fixture.wang.household_id)
            .await
            .expect("paired")
    );
    assert!(matches!(
        store.enable_account(&cadre.user_id).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.disable_account("no-such-user", at).await,
        Err(StoreError::NotFound(_))
    ));
}

/// A reset sets a one-time password (must change) and ends every session; the user's own
/// change (`set_password_hash`) uses it up.
pub async fn a_password_reset_is_one_time(store: &dyn Store) {
    let fixture = seeded(store).await;
    let user = &fixture.supervisor_one;
    store
        .create_session(session_record(user, "browser", 'c', None))
        .await
        .expect("session");
    let ended = store
        .reset_password(&user.user_id, "$argon2id$reset", VISIT_TIME)
        .await
        .expect("reset");
    assert_eq!(ended, 1);
    let state = store
        .login_state(&user.user_id)
        .await
        .expect("state")
        .expect("exists");
    assert!(state.must_change_password && !state.disabled);
    assert_eq!(
        store
            .find_user_by_id(&user.user_id)
            .await
            .expect("find")
            .expect("exists")
            .password_hash,
        "$argon2id$reset"
    );
    store
        .set_password_hash(&user.user_id, "$argon2id$own")
        .await
        .expect("own change");
    assert!(
        !store
            .login_state(&user.user_id)
            .await
            .expect("state")
            .expect("exists")
            .must_change_password
    );
    assert!(matches!(
        store.reset_password("no-such-user", "x", VISIT_TIME).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        store.login_state("no-such-user").await.expect("state"),
        None
    );
}

/// A password hash can be replaced and the user found by id.
pub async fn passwords_change(store: &dyn Store) {
    let fixture = seeded(store).await;
    store
        .set_password_hash(&fixture.cadre_a.user_id, "$argon2id$new")
        .await
        .expect("set hash");
    let user = store
        .find_user_by_id(&fixture.cadre_a.user_id)
        .await
        .expect("find")
        .expect("exists");
    assert_eq!(user.password_hash, "$argon2id$new");
    assert!(matches!(
        store.set_password_hash("nobody", "x").await,
        Err(StoreError::NotFound(_))
    ));
}

/// Registers every check above as one `#[tokio::test]` of the invoking backend, each on the
/// fresh store (and its guard) that `$fresh_store()` returns, or, written `async $fresh_store`,
/// on the store that `$fresh_store(test_name).await` returns (skipped when it is `None`).
#[cfg(test)]
macro_rules! accounts_conformance_tests {
    ($($fresh_store:tt)+) => {
        $crate::store::conformance::checks_as_tests!(
            $($fresh_store)+,
            accounts,
            [
                passwords_change,
                accounts_are_created_listed_and_refused_when_taken,
                accounts_and_their_import_job_are_written_together,
                accounts_are_edited,
                disabling_an_account_ends_its_sessions_and_pairings,
                a_password_reset_is_one_time,
            ]
        );
    };
}
#[cfg(test)]
pub(crate) use accounts_conformance_tests;
