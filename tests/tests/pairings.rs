//! Pairings management (结对管理) end to end: a real server with the demo county, the county
//! admin's console over real HTTP and real client cores. The 8741 quota refuses an
//! assignment unless 超额确认 is ticked (then it is audited), a primary change moves the
//! household from the old cadre's phone to the new cadre's, the validation list shows a
//! household without a 第一帮扶责任人, a helper (第二帮扶责任人) added in the console reaches
//! the helper's phone and leaves it again when the pairing ends, and other roles get 403.

use fieldsync_model::access::ACTION_PAIRING_OVER_QUOTA;
use fieldsync_server::demo::DEMO_COUNTY_ID;
use fieldsync_server::store::SeedData;
use fieldsync_tests::{TestServer, console_login, phone_of};
use reqwest::StatusCode;
use serde_json::{Value, json};

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

async fn pairings_json(browser: &reqwest::Client, server: &TestServer, query: &str) -> Value {
    let response = browser
        .get(format!("{}/console/api/pairings{query}", server.url()))
        .send()
        .await
        .expect("pairings");
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("json")
}

/// POST a JSON body to a console API path; the status and the JSON answer.
async fn post_json(
    browser: &reqwest::Client,
    server: &TestServer,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    let response = browser
        .post(format!("{}{path}", server.url()))
        .json(&body)
        .send()
        .await
        .expect("post");
    let status = response.status();
    (status, response.json().await.expect("json body"))
}

async fn assign(
    browser: &reqwest::Client,
    server: &TestServer,
    household_id: &str,
    cadre_user_id: &str,
    confirm_over_quota: bool,
) -> (StatusCode, Value) {
    let body = json!({
        "household_id": household_id,
        "cadre_user_id": cadre_user_id,
        "confirm_over_quota": confirm_over_quota,
    });
    post_json(browser, server, "/console/api/pairings/assign", body).await
}

/// Store a household of township 1 that nobody is paired with.
async fn add_unpaired_household(server: &TestServer) -> (String, String) {
    let cadre01 = phone_of(server, "cadre01").await.0;
    let template_id = cadre01.households().expect("households")[0]
        .household_id
        .clone();
    let mut household = cadre01
        .household(&template_id)
        .expect("replica")
        .expect("household");
    household.household_id = uuid::Uuid::now_v7().to_string();
    household.head_name = "测试无责任人户".into();
    household.national_household_number = "5227310019990001".into();
    household.server_seq = 0;
    for member in &mut household.members {
        member.member_id = uuid::Uuid::now_v7().to_string();
    }
    server
        .state
        .store
        .load_seed(SeedData {
            households: vec![household.clone()],
            ..SeedData::default()
        })
        .await
        .expect("store the household");
    (household.household_id, household.township_id)
}

#[tokio::test]
async fn other_roles_cannot_manage_pairings() {
    let server = TestServer::start().await;
    for username in ["township1", "cadre01"] {
        let browser = console_login(&server, username).await;
        let page = browser
            .get(format!("{}/console/pairings", server.url()))
            .send()
            .await
            .expect("page");
        assert_eq!(page.status(), StatusCode::FORBIDDEN, "{username}");
        let api = browser
            .get(format!("{}/console/api/pairings", server.url()))
            .send()
            .await
            .expect("api");
        assert_eq!(api.status(), StatusCode::FORBIDDEN, "{username}");
        let household_page = browser
            .get(format!("{}/console/pairings/households/x", server.url()))
            .send()
            .await
            .expect("household page");
        assert_eq!(household_page.status(), StatusCode::FORBIDDEN, "{username}");
        for path in ["/console/pairings/assign", "/console/pairings/helpers"] {
            let post = browser
                .post(format!("{}{path}", server.url()))
                .form(&[
                    ("household_id", "x"),
                    ("cadre_user_id", "y"),
                    ("action", "add"),
                ])
                .send()
                .await
                .expect("post");
            assert_eq!(post.status(), StatusCode::FORBIDDEN, "{username} {path}");
        }
    }
    // The county admin's malformed JSON is a typed 400 naming the body, and nothing changes.
    let county = console_login(&server, "county").await;
    let before = pairings_json(&county, &server, "").await;
    let malformed = county
        .post(format!("{}/console/api/pairings/assign", server.url()))
        .header("content-type", "application/json")
        .body(r#"{"household_id": "x", "cadre_user_id": "y", "confirm_over_quota": "yes"}"#)
        .send()
        .await
        .expect("post");
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    let refused: Value = malformed.json().await.expect("json error");
    assert_eq!(refused["field"], "body", "{refused}");
    assert_eq!(pairings_json(&county, &server, "").await, before);
}

#[tokio::test]
async fn the_quota_refuses_unless_confirmed_and_the_override_is_audited() {
    let server = TestServer::start().await;
    let (household_id, township_id) = add_unpaired_household(&server).await;
    let admin = console_login(&server, "county").await;

    // The validation list shows the household without a 第一帮扶责任人.
    let overview = pairings_json(&admin, &server, "").await;
    let problem = overview["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .find(|row| row["household_id"] == household_id.as_str())
        .expect("the unpaired household is listed");
    assert_eq!(problem["problem"], "无第一帮扶责任人");
    let page = admin
        .get(format!(
            "{}/console/pairings?township={township_id}",
            server.url()
        ))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(page.contains("测试无责任人户") && page.contains("无第一帮扶责任人"));

    // A cadre at or beyond the quota.
    let full_cadre = overview["cadres"]
        .as_array()
        .expect("cadres")
        .iter()
        .find(|cadre| {
            cadre["quota"]
                .as_u64()
                .is_some_and(|quota| cadre["primary_count"].as_u64().unwrap_or(0) >= quota)
        })
        .expect("a cadre at the quota")
        .clone();
    let cadre_id = full_cadre["user_id"].as_str().expect("id").to_owned();
    let (status, body) = assign(&admin, &server, &household_id, &cadre_id, false).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"]
            .as_str()
            .expect("message")
            .contains("超额确认"),
        "{body}"
    );
    assert!(
        server
            .state
            .store
            .audit_records(0, 10)
            .await
            .expect("audit")
            .is_empty()
    );
    let still = pairings_json(&admin, &server, "").await;
    assert!(
        still["problems"]
            .as_array()
            .expect("problems")
            .iter()
            .any(|row| row["household_id"] == household_id.as_str()),
        "nothing changed"
    );

    let (status, body) = assign(&admin, &server, &household_id, &cadre_id, true).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["over_quota"], true);
    let records = server
        .state
        .store
        .audit_records(0, 10)
        .await
        .expect("audit");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].content.action, ACTION_PAIRING_OVER_QUOTA);
    assert_eq!(records[0].content.subject, household_id);
    assert_eq!(records[0].content.area_id, DEMO_COUNTY_ID);
    // The whole chain verifies under the server's key (keyed records only).
    assert!(records.iter().all(|record| !record.key_id.is_empty()));
    assert_eq!(
        fieldsync_server::audit::check_and_record(
            &server.state,
            fieldsync_server::audit::VerifyScope::Full
        )
        .await
        .broken,
        None
    );
    let after = pairings_json(&admin, &server, "").await;
    assert!(
        after["problems"]
            .as_array()
            .expect("problems")
            .iter()
            .all(|row| row["household_id"] != household_id.as_str()),
        "the household now has exactly one primary"
    );

    // Assigning the same primary again, or an unknown cadre, is refused.
    let (status, _) = assign(&admin, &server, &household_id, &cadre_id, true).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = assign(&admin, &server, &household_id, "no-such-cadre", true).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = assign(&admin, &server, "no-such-household", &cadre_id, true).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = assign(&admin, &server, "", &cadre_id, true).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_primary_change_moves_the_household_between_the_cadres_phones() {
    let server = TestServer::start().await;
    let (old_phone, _old_dir) = phone_of(&server, "cadre01").await;
    let (new_phone, _new_dir) = phone_of(&server, "cadre02").await;
    let moved = old_phone.households().expect("households")[0]
        .household_id
        .clone();
    assert!(new_phone.household(&moved).expect("replica").is_none());

    // Through the HTML form, as an admin would, with 超额确认 (a ranked demo cadre already
    // carries the full 8741 quota of the rank, so one more household is over it).
    let admin = console_login(&server, "county").await;
    let new_cadre = user_id_of(&server, "cadre02").await;
    let response = admin
        .post(format!("{}/console/pairings/assign", server.url()))
        .form(&[
            ("household_id", moved.as_str()),
            ("cadre_user_id", new_cadre.as_str()),
            ("confirm_over_quota", "1"),
        ])
        .send()
        .await
        .expect("assign");
    assert_eq!(response.status(), StatusCode::SEE_OTHER);

    old_phone.sync().await.expect("old phone syncs");
    new_phone.sync().await.expect("new phone syncs");
    assert!(
        old_phone.household(&moved).expect("replica").is_none(),
        "the old cadre's phone purged the household"
    );
    assert!(
        new_phone.household(&moved).expect("replica").is_some(),
        "the new cadre's phone received it"
    );
}

async fn set_helper(
    browser: &reqwest::Client,
    server: &TestServer,
    household_id: &str,
    cadre_user_id: &str,
    add: Value,
) -> (StatusCode, Value) {
    let body = json!({
        "household_id": household_id,
        "cadre_user_id": cadre_user_id,
        "add": add,
    });
    post_json(browser, server, "/console/api/pairings/helpers", body).await
}

#[tokio::test]
async fn a_helper_added_in_the_console_reaches_the_helpers_phone_and_leaves_it_when_ended() {
    let server = TestServer::start().await;
    let (primary_phone, _primary_dir) = phone_of(&server, "cadre01").await;
    let (helper_phone, _helper_dir) = phone_of(&server, "cadre02").await;
    let household_id = primary_phone.households().expect("households")[0]
        .household_id
        .clone();
    assert!(
        helper_phone
            .household(&household_id)
            .expect("replica")
            .is_none()
    );
    let admin = console_login(&server, "county").await;
    let helper = user_id_of(&server, "cadre02").await;
    let primary = user_id_of(&server, "cadre01").await;

    // Added through the household's pairing page, as an admin would: the list links there.
    let township = server
        .state
        .store
        .get_household(&household_id)
        .await
        .expect("store")
        .expect("household")
        .township_id;
    let household_page = format!("/console/pairings/households/{household_id}");
    let list = admin
        .get(format!(
            "{}/console/pairings?township={township}",
            server.url()
        ))
        .send()
        .await
        .expect("list")
        .text()
        .await
        .expect("html");
    assert!(
        list.contains(&household_page),
        "the list links to the household's page"
    );
    let before = admin
        .get(format!("{}{household_page}", server.url()))
        .send()
        .await
        .expect("household page");
    assert_eq!(before.status(), StatusCode::OK);
    let before = before.text().await.expect("html");
    assert!(
        before.contains(&format!("value=\"{helper}\"")),
        "cadre02 can be chosen"
    );
    let response = admin
        .post(format!("{}/console/pairings/helpers", server.url()))
        .form(&[
            ("household_id", household_id.as_str()),
            ("cadre_user_id", helper.as_str()),
            ("action", "add"),
            ("return_to", "household"),
        ])
        .send()
        .await
        .expect("add helper");
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let location = response
        .headers()
        .get("location")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        location.starts_with(&household_page) && location.contains("helper=added"),
        "{location}"
    );
    let page = admin
        .get(format!("{}{location}", server.url()))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(page.contains("已添加帮扶干部"), "confirmation shown");
    assert!(
        page.contains("解除"),
        "the helper can be removed from the page"
    );
    let unknown = admin
        .get(format!(
            "{}/console/pairings/households/no-such-household",
            server.url()
        ))
        .send()
        .await
        .expect("unknown household page");
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let listed = pairings_json(&admin, &server, &format!("?township={township}")).await;
    let row = listed["households"]
        .as_array()
        .expect("households")
        .iter()
        .find(|row| row["household_id"] == household_id.as_str())
        .expect("listed");
    assert_eq!(row["secondary_cadre_ids"], json!([helper]));
    assert_eq!(
        row["primary_cadre_ids"],
        json!([primary]),
        "primary unchanged"
    );

    helper_phone.sync().await.expect("helper syncs");
    assert!(
        helper_phone
            .household(&household_id)
            .expect("replica")
            .is_some(),
        "the helper's phone received the household"
    );

    // Refusals are typed and change nothing: a second add, ending the primary as a helper,
    // a malformed body and an unknown household.
    let (status, body) = set_helper(&admin, &server, &household_id, &helper, json!(true)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("已与该户结对"),
        "{body}"
    );
    let (status, body) = set_helper(&admin, &server, &household_id, &primary, json!(false)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("第一帮扶责任人"),
        "{body}"
    );
    let (status, body) = set_helper(&admin, &server, &household_id, &helper, json!("yes")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["field"], "body", "{body}");
    let (status, _) = set_helper(&admin, &server, "no-such-household", &helper, json!(true)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let bad_action = admin
        .post(format!("{}/console/pairings/helpers", server.url()))
        .form(&[
            ("household_id", household_id.as_str()),
            ("cadre_user_id", helper.as_str()),
            ("action", "promote"),
        ])
        .send()
        .await
        .expect("bad action");
    assert_eq!(bad_action.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        pairings_json(&admin, &server, &format!("?township={township}")).await,
        listed
    );

    // Ended through the JSON twin: the helper's phone purges the household, the primary's
    // phone keeps it.
    let (status, body) = set_helper(&admin, &server, &household_id, &helper, json!(false)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["added"], false);
    helper_phone.sync().await.expect("helper syncs again");
    assert!(
        helper_phone
            .household(&household_id)
            .expect("replica")
            .is_none(),
        "the helper's phone purged the household"
    );
    primary_phone.sync().await.expect("primary syncs");
    assert!(
        primary_phone
            .household(&household_id)
            .expect("replica")
            .is_some()
    );
}
