//! Two cadres and a supervisor over real gRPC, with real client cores: the household's
//! first responsible cadre (第一帮扶责任人) and a second one (第二帮扶责任人) both change its
//! phone number while offline. The server keeps both values, records the conflict for the
//! township, the supervisor settles it in the console, and both phones converge.

use fieldsync_client::Client;
use fieldsync_model::register::FieldTarget;
use fieldsync_server::store::{Pairing, SeedData};
use fieldsync_tests::{TestServer, console_login, phone_of};

fn phone_number_on(client: &Client, household_id: &str) -> String {
    client
        .household(household_id)
        .expect("read replica")
        .expect("household on the phone")
        .phone
}

async fn user_id_of(server: &TestServer, username: &str) -> String {
    server
        .state
        .store
        .find_user_by_username(username)
        .await
        .expect("store")
        .expect("demo user")
        .user_id
}

/// Make `username` the household's second responsible cadre (第二帮扶责任人).
async fn pair_as_second_cadre(server: &TestServer, username: &str, household_id: &str) {
    server
        .state
        .store
        .load_seed(SeedData {
            pairings: vec![Pairing {
                cadre_user_id: user_id_of(server, username).await,
                household_id: household_id.to_owned(),
                is_primary: false,
            }],
            ..SeedData::default()
        })
        .await
        .expect("add the second pairing");
}

#[tokio::test]
async fn concurrent_edits_by_two_cadres_are_settled_by_the_supervisor_and_both_phones_converge() {
    let server = TestServer::start().await;
    let (first_cadre, _first_dir) = phone_of(&server, "cadre01").await;
    let household_id = first_cadre.households().expect("households")[0]
        .household_id
        .clone();

    // cadre02 (same township) becomes the household's second responsible cadre.
    pair_as_second_cadre(&server, "cadre02", &household_id).await;
    let (second_cadre, _second_dir) = phone_of(&server, "cadre02").await;
    let original = phone_number_on(&second_cadre, &household_id);
    assert_eq!(original, phone_number_on(&first_cadre, &household_id));

    // Both edit the same field without seeing each other's change.
    first_cadre
        .edit_household_field(
            &household_id,
            FieldTarget::Household,
            "phone",
            "13811112222".into(),
        )
        .expect("first edit");
    second_cadre
        .edit_household_field(
            &household_id,
            FieldTarget::Household,
            "phone",
            "13933334444".into(),
        )
        .expect("second edit");
    assert_eq!(
        phone_number_on(&first_cadre, &household_id),
        "13811112222",
        "applied locally at once"
    );
    first_cadre.sync().await.expect("first sync");
    second_cadre.sync().await.expect("second sync");
    first_cadre
        .sync()
        .await
        .expect("first pulls the second's edit");

    // Nothing was overwritten silently: the supervisor sees both values (masked, as on every
    // console list).
    let browser = console_login(&server, "township1").await;
    let conflicts: serde_json::Value = browser
        .get(format!("{}/console/api/conflicts", server.url()))
        .send()
        .await
        .expect("conflicts")
        .json()
        .await
        .expect("json");
    let conflicts = conflicts.as_array().expect("a list");
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    let values = [
        conflicts[0]["first"]["value"].as_str().unwrap_or_default(),
        conflicts[0]["second"]["value"].as_str().unwrap_or_default(),
    ];
    assert!(
        values.contains(&"138****2222") && values.contains(&"139****4444"),
        "{values:?}"
    );
    // Before the decision, both phones already agree (last writer wins), whoever won.
    let interim = phone_number_on(&first_cadre, &household_id);
    assert_eq!(
        interim,
        phone_number_on(&second_cadre, &household_id),
        "LWW converges"
    );

    // The supervisor types the number the household confirmed by phone.
    let key = conflicts[0]["conflict_key"]
        .as_str()
        .expect("key")
        .to_owned();
    let resolved = browser
        .post(format!("{}/console/conflicts/resolve", server.url()))
        .form(&[
            ("conflict_key", key.as_str()),
            ("choice", "custom"),
            ("custom_value", "13700005555"),
        ])
        .send()
        .await
        .expect("resolve");
    assert_eq!(resolved.status(), reqwest::StatusCode::SEE_OTHER);

    first_cadre.sync().await.expect("sync");
    second_cadre.sync().await.expect("sync");
    assert_eq!(phone_number_on(&first_cadre, &household_id), "13700005555");
    assert_eq!(phone_number_on(&second_cadre, &household_id), "13700005555");
    assert_eq!(
        server
            .state
            .store
            .get_household(&household_id)
            .await
            .expect("store")
            .expect("household")
            .phone,
        "13700005555"
    );
    let open: serde_json::Value = browser
        .get(format!("{}/console/api/conflicts", server.url()))
        .send()
        .await
        .expect("conflicts")
        .json()
        .await
        .expect("json");
    assert_eq!(
        open.as_array().map(Vec::len),
        Some(0),
        "the conflict is settled"
    );
}

/// The household's second responsible cadre sees the first cadre's visit in their pull, but
/// a revision of it from their phone is REJECTED (it would supersede the author's open
/// revision under their own name); the supervisor still reviews the author's revision.
#[tokio::test]
async fn a_second_cadre_cannot_revise_the_first_cadres_visit() {
    use fieldsync_proto::v1;
    use fieldsync_tests::{
        authorized, pull_all, push_answered, push_applied, wire_in_person_visit,
    };

    let server = TestServer::start().await;
    let first_device = uuid::Uuid::now_v7().to_string();
    let first_token = server.login("cadre01", &first_device).await;
    let (households, _, _) = pull_all(server.channel().await, &first_token).await;
    let household_id = households[0].household_id.clone();
    pair_as_second_cadre(&server, "cadre02", &household_id).await;
    let visit = wire_in_person_visit(&household_id);
    push_applied(
        &server,
        &first_token,
        &first_device,
        1,
        vec![v1::mutation::Payload::SubmitVisit(visit.clone())],
    )
    .await;

    let second_device = uuid::Uuid::now_v7().to_string();
    let second_token = server.login("cadre02", &second_device).await;
    let (_, statuses, _) = pull_all(server.channel().await, &second_token).await;
    assert!(
        statuses
            .iter()
            .any(|status| status.visit_id == visit.visit_id),
        "the second cadre's pull lists the visit"
    );
    let revision = v1::Visit {
        revision: 2,
        supersedes_revision: 1,
        observed_situation: "第二帮扶人改写的记录".into(),
        ..visit.clone()
    };
    let answer = push_answered(
        server.channel().await,
        &second_token,
        &second_device,
        1,
        vec![v1::mutation::Payload::SubmitVisit(revision)],
    )
    .await;
    assert_eq!(
        answer.results[0].outcome,
        v1::MutationOutcome::Rejected as i32
    );
    assert_eq!(answer.results[0].reject_code, "household_out_of_scope");
    assert!(
        answer.results[0].reject_message.contains("不是您记录的"),
        "{}",
        answer.results[0].reject_message
    );

    let (supervisor, mut review) = server.review_as("township1").await;
    let detail = review
        .get_visit(authorized(
            v1::GetVisitRequest {
                visit_id: visit.visit_id.clone(),
            },
            &supervisor,
        ))
        .await
        .expect("detail")
        .into_inner();
    let shown = detail.visit.expect("visit");
    assert_eq!(shown.revision, 1);
    assert_eq!(shown.observed_situation, visit.observed_situation);
    assert_eq!(detail.state, v1::ReviewState::Submitted as i32);
}
