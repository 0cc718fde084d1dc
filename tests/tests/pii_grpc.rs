//! Personal data over gRPC (issue #10 item 5): a Pull applies the console's field policy.
//! Each role pulls its whole scope over real gRPC; for staff roles (village, township,
//! county, auditor) the decoded messages are scanned for full ID numbers (any 18-character
//! run that passes the GB 11643 check) and every household phone is masked; a cadre gets the
//! full values of their own paired households, which mask to exactly what staff see. The
//! township supervisor's `Review.GetVisit` answer is scanned the same way. A masked value
//! pushed back by a phone is REJECTED and the stored value is kept.

use std::collections::HashMap;

use fieldsync_model::access::mask_phone;
use fieldsync_model::codes::Role;
use fieldsync_model::id_number;
use fieldsync_proto::v1;
use fieldsync_server::demo::{DEMO_COUNTY_ID, DEMO_TOUR_CADRE};
use fieldsync_server::store::{SeedData, UserRecord};
use fieldsync_tests::{
    DEMO_PASSWORD, TestServer, authorized, pull_all, push_answered, push_applied,
    wire_in_person_visit,
};

/// Every full ID number in `text`: 18-character runs of 17 digits and a check character
/// that pass GB 11643 (so a long household number or area code does not count).
fn full_id_numbers(text: &str) -> Vec<String> {
    let characters: Vec<char> = text.chars().collect();
    let mut found = Vec::new();
    for start in 0..characters.len().saturating_sub(17) {
        let window = &characters[start..start + 18];
        let shape = window[..17].iter().all(char::is_ascii_digit)
            && matches!(window[17], '0'..='9' | 'X' | 'x');
        let window: String = window.iter().collect();
        let bounded = start == 0 || !characters[start - 1].is_ascii_digit();
        if shape && bounded && id_number::validate(&window).is_ok() {
            found.push(window);
        }
    }
    found
}

async fn add_user(server: &TestServer, username: &str, role: Role, area_id: &str) {
    server
        .state
        .store
        .load_seed(SeedData {
            users: vec![UserRecord {
                user_id: uuid::Uuid::now_v7().to_string(),
                username: username.into(),
                display_name: username.into(),
                password_hash: fieldsync_server::auth::hash_password(DEMO_PASSWORD).expect("hash"),
                role,
                area_id: area_id.into(),
                phone: String::new(),
                rank: None,
            }],
            ..SeedData::default()
        })
        .await
        .expect("add user");
}

async fn pull_as(server: &TestServer, username: &str) -> Vec<v1::Household> {
    let token = server
        .login(username, &uuid::Uuid::now_v7().to_string())
        .await;
    pull_all(server.channel().await, &token).await.0
}

#[tokio::test]
async fn staff_pull_masked_values_and_a_cadre_pulls_full_values_of_own_households() {
    let server = TestServer::start().await;
    let cadre_households = pull_as(&server, DEMO_TOUR_CADRE).await;
    assert!(!cadre_households.is_empty());
    let village_id = cadre_households[0].village_id.clone();
    add_user(&server, "auditor", Role::Auditor, DEMO_COUNTY_ID).await;
    add_user(&server, "village1", Role::Village, &village_id).await;

    // The cadre: full values, valid ID numbers, at the door.
    let mut full_ids = 0;
    for household in &cadre_households {
        assert!(!household.phone.contains('*'), "{}", household.phone);
        for member in &household.members {
            assert!(
                id_number::validate(&member.id_number).is_ok(),
                "cadre sees the full ID number: {}",
                member.id_number
            );
            full_ids += 1;
        }
    }
    assert!(full_ids > 0);
    assert!(
        !full_id_numbers(&format!("{cadre_households:?}")).is_empty(),
        "the scan finds full ID numbers where they are allowed"
    );
    let cadre_view: HashMap<&str, &v1::Household> = cadre_households
        .iter()
        .map(|household| (household.household_id.as_str(), household))
        .collect();

    for username in ["village1", "township1", "county", "auditor"] {
        let households = pull_as(&server, username).await;
        assert!(!households.is_empty(), "{username} has a scope");
        let decoded = format!("{households:?}");
        assert_eq!(
            full_id_numbers(&decoded),
            Vec::<String>::new(),
            "{username} pulled full ID numbers"
        );
        let mut compared = 0;
        for household in &households {
            assert!(
                household.phone.is_empty() || household.phone.contains('*'),
                "{username}: unmasked phone {}",
                household.phone
            );
            for member in &household.members {
                assert!(
                    member.id_number.is_empty() || member.id_number.contains('*'),
                    "{username}: unmasked ID {}",
                    member.id_number
                );
            }
            // The same household as its cadre sees it masks to exactly this.
            if let Some(full) = cadre_view.get(household.household_id.as_str()) {
                assert_eq!(household.phone, mask_phone(&full.phone));
                for (masked, full) in household.members.iter().zip(&full.members) {
                    assert_eq!(masked.id_number, id_number::mask(&full.id_number));
                    // The masked digits are the birth date: staff get the year only.
                    assert_eq!(full.birth_date.len(), 10, "{}", full.birth_date);
                    assert_eq!(masked.birth_date, full.birth_date[..4]);
                }
                compared += 1;
            }
        }
        assert!(
            compared > 0,
            "{username}'s scope holds the tour cadre's households"
        );
    }
}

/// DESIGN §7: auditors read everything, masked, and their reads are audited: a pull by an
/// auditor is one `auditor_pull` record, written before the pull is served; another staff
/// role's pull (masked, nothing to audit) writes none.
#[tokio::test]
async fn an_auditors_pull_is_audited_and_a_supervisors_is_not() {
    let server = TestServer::start().await;
    add_user(&server, "auditor", Role::Auditor, DEMO_COUNTY_ID).await;
    let store = &server.state.store;
    let auditor_pulls = |records: &[fieldsync_server::store::AuditRecord]| {
        records
            .iter()
            .filter(|record| record.content.action == "auditor_pull")
            .cloned()
            .collect::<Vec<_>>()
    };
    let before = store.audit_last_id().await.expect("last id");
    assert!(!pull_as(&server, "township1").await.is_empty());
    let after_supervisor = store.audit_records(before, 1000).await.expect("records");
    assert_eq!(auditor_pulls(&after_supervisor).len(), 0);

    let households = pull_as(&server, "auditor").await;
    assert!(!households.is_empty(), "the auditor reads the county");
    let records = store.audit_records(before, 1000).await.expect("records");
    let pulls = auditor_pulls(&records);
    assert_eq!(pulls.len(), 1, "{records:?}");
    let auditor = store
        .find_user_by_username("auditor")
        .await
        .expect("store")
        .expect("auditor");
    assert_eq!(pulls[0].content.actor_user_id, auditor.user_id);
    assert_eq!(pulls[0].content.actor_role, "auditor");
    assert_eq!(pulls[0].content.subject, DEMO_COUNTY_ID);
}

#[tokio::test]
async fn a_supervisor_reviewing_a_visit_sees_the_household_masked() {
    let server = TestServer::start().await;
    let device_id = uuid::Uuid::now_v7().to_string();
    let cadre_token = server.login(DEMO_TOUR_CADRE, &device_id).await;
    let (households, _, _) = pull_all(server.channel().await, &cadre_token).await;
    // The household with the most members, so that every member's number is checked.
    let full = households
        .iter()
        .filter(|household| !household.phone.is_empty())
        .max_by_key(|household| household.members.len())
        .expect("a household with a phone");
    assert!(full.members.len() > 1, "{} members", full.members.len());
    let visit = wire_in_person_visit(&full.household_id);
    push_applied(
        &server,
        &cadre_token,
        &device_id,
        1,
        vec![v1::mutation::Payload::SubmitVisit(visit.clone())],
    )
    .await;

    let (supervisor, mut review) = server.review_as("township1").await;
    let answer = review
        .get_visit(authorized(
            v1::GetVisitRequest {
                visit_id: visit.visit_id.clone(),
            },
            &supervisor,
        ))
        .await
        .expect("the supervisor opens the visit")
        .into_inner();
    assert_eq!(
        full_id_numbers(&format!("{answer:?}")),
        Vec::<String>::new(),
        "GetVisit carried full ID numbers"
    );
    let household = answer.household.expect("household");
    assert_eq!(household.household_id, full.household_id);
    assert_eq!(household.phone, mask_phone(&full.phone));
    assert_ne!(household.phone, full.phone);
    assert_eq!(household.members.len(), full.members.len());
    for (masked, full) in household.members.iter().zip(&full.members) {
        assert_eq!(masked.member_id, full.member_id);
        assert_eq!(masked.name, full.name, "names are not masked");
        assert_eq!(masked.id_number, id_number::mask(&full.id_number));
        assert_ne!(masked.id_number, full.id_number);
        assert_eq!(
            masked.birth_date,
            full.birth_date[..4],
            "the birth year only"
        );
    }

    // Masking is on the way out only: the cadre still pulls the full card.
    let (again, _, _) = pull_all(server.channel().await, &cadre_token).await;
    let kept = again
        .iter()
        .find(|candidate| candidate.household_id == full.household_id)
        .expect("still in scope");
    assert_eq!(kept.phone, full.phone);
    for (kept, full) in kept.members.iter().zip(&full.members) {
        assert_eq!(kept.id_number, full.id_number);
    }
}

#[tokio::test]
async fn a_masked_phone_pushed_back_is_rejected_and_the_real_value_kept() {
    let server = TestServer::start().await;
    let device_id = uuid::Uuid::now_v7().to_string();
    let token = server.login(DEMO_TOUR_CADRE, &device_id).await;
    let (households, _, _) = pull_all(server.channel().await, &token).await;
    let household = &households[0];
    let real_phone = household.phone.clone();
    assert!(!real_phone.is_empty() && !real_phone.contains('*'));
    let masked = mask_phone(&real_phone);

    let response = push_answered(
        server.channel().await,
        &token,
        &device_id,
        1,
        vec![v1::mutation::Payload::EditField(v1::FieldEdit {
            household_id: household.household_id.clone(),
            member_id: String::new(),
            field: "phone".into(),
            value_json: format!("\"{masked}\""),
            base_seq: 0,
        })],
    )
    .await;
    assert_eq!(response.results.len(), 1);
    let result = &response.results[0];
    assert_eq!(result.outcome, v1::MutationOutcome::Rejected as i32);
    assert_eq!(result.reject_code, "invalid_record");
    assert!(
        result.reject_message.contains("打码"),
        "{}",
        result.reject_message
    );

    let (after, _, _) = pull_all(server.channel().await, &token).await;
    let kept = after
        .iter()
        .find(|candidate| candidate.household_id == household.household_id)
        .expect("still in scope");
    assert_eq!(kept.phone, real_phone, "the real value is kept");
}
