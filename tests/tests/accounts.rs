//! Account management (账号管理, issue 12 §3) over real HTTP and real gRPC against a real
//! server on a real SQLite file: the county administrator creates accounts whose one-time
//! passwords must be changed first, resets a cadre's password, disables a cadre who left
//! (sessions end, pairings hand over, the phone purges the households), and every change
//! is audited. Separation of duties: the administrator approves no visit, cannot disable
//! themselves, supervisors cannot manage accounts, and every page an auditor opens is an
//! audit record. Bad forms get row-level messages and store nothing.

use fieldsync_proto::v1;
use fieldsync_server::demo::{DEMO_COUNTY_ADMIN, DEMO_COUNTY_ID, DEMO_PASSWORD};
use fieldsync_server::store::PairingFilter;
use fieldsync_tests::{
    TestServer, authorized, client_info, console_login, console_login_with, csrf_token_in,
    one_time_passwords_in,
};
use reqwest::StatusCode;

/// The first township of the demo county.
async fn first_township(server: &TestServer) -> String {
    server
        .state
        .store
        .list_areas(Some(DEMO_COUNTY_ID))
        .await
        .expect("areas")
        .remove(0)
        .area_id
}

/// Post the new-account form; the response (not followed).
async fn create_account(
    admin: &reqwest::Client,
    server: &TestServer,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    admin
        .post(format!("{}/console/accounts", server.url()))
        .form(fields)
        .send()
        .await
        .expect("create post")
}

/// The one-time password on a page that shows one.
fn one_time_password_in(page: &str) -> String {
    one_time_passwords_in(page)
        .pop()
        .expect("the page shows a one-time password")
}

/// A cookie client logged in with `password` (no redirects followed) and the login answer.
async fn browser_login(
    server: &TestServer,
    username: &str,
    password: &str,
) -> (reqwest::Client, reqwest::Response) {
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let response = http
        .post(format!("{}/console/login", server.url()))
        .form(&[("username", username), ("password", password)])
        .send()
        .await
        .expect("login");
    (http, response)
}

async fn grpc_login(
    server: &TestServer,
    username: &str,
    password: &str,
) -> Result<v1::LoginResponse, tonic::Status> {
    let mut auth = v1::auth_client::AuthClient::new(server.channel().await);
    auth.login(v1::LoginRequest {
        username: username.into(),
        password: password.into(),
        device_id: uuid::Uuid::now_v7().to_string(),
        device_name: "红米 Note 12".into(),
        client: Some(client_info()),
        wants_refresh_token: false,
    })
    .await
    .map(tonic::Response::into_inner)
}

async fn audit_actions(server: &TestServer) -> Vec<(String, String)> {
    server
        .state
        .store
        .audit_records(0, 10_000)
        .await
        .expect("audit")
        .into_iter()
        .map(|record| (record.content.action, record.content.subject))
        .collect()
}

async fn user_id_of(server: &TestServer, username: &str) -> String {
    server
        .state
        .store
        .find_user_by_username(username)
        .await
        .expect("store")
        .expect("user")
        .user_id
}

#[tokio::test]
async fn a_new_supervisor_must_change_the_one_time_password_before_any_page() {
    let server = TestServer::start().await;
    let admin = console_login(&server, DEMO_COUNTY_ADMIN).await;
    let township = first_township(&server).await;
    let response = create_account(
        &admin,
        &server,
        &[
            ("username", "zhangsup"),
            ("display_name", "张审核"),
            ("role", "township"),
            ("area_id", &township),
            ("phone", "13800001111"),
        ],
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let page = response.text().await.expect("page");
    assert!(page.contains("只显示这一次"), "{page}");
    let password = one_time_password_in(&page);
    assert_eq!(password.len(), 12);

    let (browser, login) = browser_login(&server, "zhangsup", &password).await;
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    assert_eq!(login.headers()["location"], "/console/password");
    // Every other page sends the user back to 修改密码 first.
    let queue = browser
        .get(format!("{}/console/queue", server.url()))
        .send()
        .await
        .expect("queue");
    assert_eq!(queue.status(), StatusCode::SEE_OTHER);
    assert_eq!(queue.headers()["location"], "/console/password");
    let password_page = browser
        .get(format!("{}/console/password", server.url()))
        .send()
        .await
        .expect("password page")
        .text()
        .await
        .expect("text");
    let token = csrf_token_in(&password_page).expect("csrf token");
    let changed = browser
        .post(format!("{}/console/password", server.url()))
        .header("x-csrf-token", &token)
        .form(&[
            ("old_password", password.as_str()),
            ("new_password", "乡镇审核员的新密码"),
            ("confirm_password", "乡镇审核员的新密码"),
        ])
        .send()
        .await
        .expect("change");
    assert_eq!(changed.status(), StatusCode::OK);
    let queue = browser
        .get(format!("{}/console/queue", server.url()))
        .send()
        .await
        .expect("queue");
    assert_eq!(queue.status(), StatusCode::OK, "the supervisor now reviews");

    let actions = audit_actions(&server).await;
    let supervisor_id = user_id_of(&server, "zhangsup").await;
    assert!(actions.contains(&("account_create".into(), supervisor_id)));
}

#[tokio::test]
async fn bad_account_forms_are_refused_with_a_message_and_store_nothing() {
    let server = TestServer::start().await;
    let admin = console_login(&server, DEMO_COUNTY_ADMIN).await;
    let township = first_township(&server).await;
    let before = server.state.store.account_count().await.expect("count");
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![
                ("username", "王大山家"),
                ("display_name", "王五"),
                ("role", "cadre"),
                ("area_id", &township),
            ],
            "用户名只能包含",
        ),
        (
            vec![
                ("username", "cadre01"),
                ("display_name", "重名"),
                ("role", "cadre"),
                ("area_id", &township),
            ],
            "用户名已被使用",
        ),
        (
            vec![
                ("username", "wangwu"),
                ("display_name", "王五"),
                ("role", "cadre"),
                ("area_id", DEMO_COUNTY_ID),
            ],
            "的区域应为乡镇",
        ),
        (
            vec![
                ("username", "wangwu"),
                ("display_name", "王五"),
                ("role", "cadre"),
                ("area_id", &township),
                ("id_number", "110105194912310021"),
            ],
            "身份证",
        ),
        (
            vec![
                ("username", "wangwu"),
                ("display_name", "王五"),
                ("role", "county"),
                ("area_id", "999999000000"),
            ],
            "",
        ),
        (
            vec![
                ("username", "wangwu"),
                ("display_name", "王五"),
                ("role", "township"),
                ("area_id", &township),
                ("rank", "1"),
            ],
            "只有帮扶干部有职级",
        ),
        (
            vec![
                ("username", "wangwu"),
                ("display_name", "王五"),
                ("role", "cadre"),
                ("area_id", &township),
                ("active_from", "2026-13-45"),
            ],
            "日期格式",
        ),
        (
            vec![
                ("username", "wangwu"),
                ("display_name", " "),
                ("role", "cadre"),
                ("area_id", &township),
            ],
            "姓名不能为空",
        ),
    ];
    for (fields, expected) in cases {
        let response = create_account(&admin, &server, &fields).await;
        let status = response.status();
        let page = response.text().await.expect("page");
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::NOT_FOUND,
            "{fields:?}: {status}"
        );
        assert!(
            page.contains(expected),
            "{fields:?}: expected {expected:?} in the page"
        );
        assert!(!page.contains("data-one-time-password"), "{fields:?}");
    }
    assert_eq!(
        server.state.store.account_count().await.expect("count"),
        before
    );
}

#[tokio::test]
async fn a_reset_password_is_one_time_and_ends_the_cadres_sessions() {
    let server = TestServer::start().await;
    let admin = console_login(&server, DEMO_COUNTY_ADMIN).await;
    let old = grpc_login(&server, "cadre02", DEMO_PASSWORD)
        .await
        .expect("login");
    assert!(!old.must_change_password);
    let cadre_id = user_id_of(&server, "cadre02").await;
    let reset = admin
        .post(format!(
            "{}/console/accounts/{cadre_id}/reset-password",
            server.url()
        ))
        .send()
        .await
        .expect("reset");
    assert_eq!(reset.status(), StatusCode::OK);
    let password = one_time_password_in(&reset.text().await.expect("page"));

    // The phone's old session ended; the old password no longer works.
    let mut sync = v1::sync_client::SyncClient::new(server.channel().await);
    let refused = sync
        .pull(authorized(
            v1::PullRequest {
                heartbeat: None,
                cursor: String::new(),
                client: Some(client_info()),
            },
            &old.token,
        ))
        .await
        .expect_err("the session ended");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    assert_eq!(
        grpc_login(&server, "cadre02", DEMO_PASSWORD)
            .await
            .expect_err("old password")
            .code(),
        tonic::Code::Unauthenticated
    );
    // The one-time password logs in and says it must be changed; the change uses it up.
    let fresh = grpc_login(&server, "cadre02", &password)
        .await
        .expect("one-time login");
    assert!(fresh.must_change_password);
    let mut auth = v1::auth_client::AuthClient::new(server.channel().await);
    auth.change_password(authorized(
        v1::ChangePasswordRequest {
            old_password: password.clone(),
            new_password: "干部的新密码2026".into(),
            client: Some(client_info()),
        },
        &fresh.token,
    ))
    .await
    .expect("change over gRPC");
    let after = grpc_login(&server, "cadre02", "干部的新密码2026")
        .await
        .expect("login");
    assert!(!after.must_change_password);
    assert!(
        audit_actions(&server)
            .await
            .contains(&("account_password_reset".into(), cadre_id))
    );
}

#[tokio::test]
async fn disabling_a_cadre_who_left_hands_the_households_over_and_blocks_the_login() {
    let server = TestServer::start().await;
    let admin = console_login(&server, DEMO_COUNTY_ADMIN).await;
    let phone = grpc_login(&server, "cadre03", DEMO_PASSWORD)
        .await
        .expect("login");
    let (households, _, _) = fieldsync_tests::pull_all(server.channel().await, &phone.token).await;
    assert!(!households.is_empty(), "the cadre has paired households");

    let cadre_id = user_id_of(&server, "cadre03").await;
    let disabled = admin
        .post(format!(
            "{}/console/accounts/{cadre_id}/disable",
            server.url()
        ))
        .send()
        .await
        .expect("disable");
    assert_eq!(disabled.status(), StatusCode::SEE_OTHER);
    let page = admin
        .get(format!(
            "{}{}",
            server.url(),
            disabled.headers()["location"].to_str().expect("location")
        ))
        .send()
        .await
        .expect("account page")
        .text()
        .await
        .expect("text");
    assert!(page.contains("账号已停用"), "{page}");
    assert!(
        page.contains(&format!("解除 {} 个结对", households.len())),
        "{page}"
    );

    let refused = grpc_login(&server, "cadre03", DEMO_PASSWORD)
        .await
        .expect_err("disabled");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    assert!(
        refused.message().contains("账号已停用"),
        "{}",
        refused.message()
    );
    let (browser, login) = browser_login(&server, "cadre03", DEMO_PASSWORD).await;
    drop(browser);
    assert_eq!(login.status(), StatusCode::FORBIDDEN);

    // Each household the cadre was 第一帮扶责任人 of now needs a new one.
    let needing = server
        .state
        .store
        .pairing_households(
            DEMO_COUNTY_ID,
            PairingFilter {
                township_id: None,
                village_id: None,
                only_problems: true,
                limit: 0,
            },
        )
        .await
        .expect("pairings");
    for household in &households {
        let row = needing
            .iter()
            .find(|row| row.household_id == household.household_id);
        assert!(
            row.is_some_and(|row| row.primaries.is_empty()),
            "{} needs a new primary",
            household.household_id
        );
    }
    assert!(
        audit_actions(&server)
            .await
            .contains(&("account_disable".into(), cadre_id.clone()))
    );
    // Re-enabling restores the login, not the pairings.
    let enabled = admin
        .post(format!(
            "{}/console/accounts/{cadre_id}/enable",
            server.url()
        ))
        .send()
        .await
        .expect("enable");
    assert_eq!(enabled.status(), StatusCode::SEE_OTHER);
    let again = grpc_login(&server, "cadre03", DEMO_PASSWORD)
        .await
        .expect("login again");
    let (households_now, _, _) =
        fieldsync_tests::pull_all(server.channel().await, &again.token).await;
    assert!(households_now.is_empty(), "pairings are not restored");
}

#[tokio::test]
async fn separation_of_duties_holds_at_the_edges() {
    let server = TestServer::start().await;
    let admin = console_login(&server, DEMO_COUNTY_ADMIN).await;
    let admin_id = user_id_of(&server, DEMO_COUNTY_ADMIN).await;
    // The administrator cannot disable themselves (no button, and the POST is refused).
    let own = admin
        .post(format!(
            "{}/console/accounts/{admin_id}/disable",
            server.url()
        ))
        .send()
        .await
        .expect("disable self");
    assert_eq!(own.status(), StatusCode::FORBIDDEN);
    assert!(
        !server
            .state
            .store
            .login_state(&admin_id)
            .await
            .expect("state")
            .expect("admin")
            .disabled
    );
    // The administrator approves no visit.
    let decision = admin
        .post(format!(
            "{}/console/api/visits/any-visit/decision",
            server.url()
        ))
        .json(&serde_json::json!({"revision": 1, "decision": "approve"}))
        .send()
        .await
        .expect("decision");
    assert_eq!(decision.status(), StatusCode::FORBIDDEN);
    // A supervisor does not manage accounts.
    let supervisor = console_login(&server, "township1").await;
    let accounts = supervisor
        .get(format!("{}/console/accounts", server.url()))
        .send()
        .await
        .expect("accounts");
    assert_eq!(accounts.status(), StatusCode::FORBIDDEN);

    // An auditor for the county: every page opened is an audit record.
    let created = create_account(
        &admin,
        &server,
        &[
            ("username", "shenji"),
            ("display_name", "审计员甲"),
            ("role", "auditor"),
            ("area_id", DEMO_COUNTY_ID),
        ],
    )
    .await;
    let password = one_time_password_in(&created.text().await.expect("page"));
    let auditor =
        console_login_with(&server.url(), "shenji", &password, "审计员的新密码2026").await;
    let ledger = auditor
        .get(format!("{}/console/dashboard?month=2026-03", server.url()))
        .send()
        .await
        .expect("dashboard");
    assert_eq!(ledger.status(), StatusCode::OK);
    let auditor_id = user_id_of(&server, "shenji").await;
    let views: Vec<_> = server
        .state
        .store
        .audit_records(0, 10_000)
        .await
        .expect("audit")
        .into_iter()
        .filter(|record| record.content.action == "auditor_view")
        .collect();
    assert!(
        views
            .iter()
            .any(|record| record.content.actor_user_id == auditor_id
                && record.content.subject == "/console/dashboard?month=2026-03"),
        "{views:?}"
    );
    // The auditor reads the accounts list and the areas (read-only, audited) but manages
    // nothing.
    let list = auditor
        .get(format!("{}/console/accounts", server.url()))
        .send()
        .await
        .expect("accounts");
    assert_eq!(list.status(), StatusCode::OK);
    let list = list.text().await.expect("text");
    assert!(
        list.contains("shenji") && !list.contains("新建账号"),
        "{list}"
    );
    let areas = auditor
        .get(format!("{}/console/areas", server.url()))
        .send()
        .await
        .expect("areas");
    assert_eq!(areas.status(), StatusCode::OK);
    let cadre_id = user_id_of(&server, "cadre01").await;
    for path in [
        format!("/console/accounts/{cadre_id}"),
        "/console/accounts/new".to_owned(),
        "/console/cadres/import".to_owned(),
        "/console/areas/import".to_owned(),
    ] {
        let refused = auditor
            .get(format!("{}{path}", server.url()))
            .send()
            .await
            .expect("page");
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{path}");
    }
    let refused = auditor
        .post(format!(
            "{}/console/accounts/{cadre_id}/disable",
            server.url()
        ))
        .send()
        .await
        .expect("disable");
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(
        !server
            .state
            .store
            .login_state(&cadre_id)
            .await
            .expect("state")
            .expect("cadre")
            .disabled
    );
}

/// The edit form shows an account's full phone (and ID number) so the administrator can
/// correct them; seeing a full value is an audited action (DESIGN §7), so opening the form
/// is an `account_view_full` record, and the list, which masks them, writes none.
#[tokio::test]
async fn opening_an_accounts_edit_form_with_full_values_is_audited() {
    let server = TestServer::start().await;
    let admin = console_login(&server, DEMO_COUNTY_ADMIN).await;
    let cadre_id = user_id_of(&server, "cadre02").await;
    let cadre = server
        .state
        .store
        .find_user_by_username("cadre02")
        .await
        .expect("store")
        .expect("cadre02");
    assert!(cadre.phone.len() >= 8, "the demo cadre has a phone");

    let list = admin
        .get(format!("{}/console/api/accounts", server.url()))
        .send()
        .await
        .expect("list");
    assert_eq!(list.status(), StatusCode::OK);
    let list = list.text().await.expect("json");
    assert!(!list.contains(&cadre.phone), "the list masks phones");
    let view_full = ("account_view_full".to_owned(), cadre_id.clone());
    assert!(!audit_actions(&server).await.contains(&view_full));

    let form = admin
        .get(format!("{}/console/accounts/{cadre_id}", server.url()))
        .send()
        .await
        .expect("form");
    assert_eq!(form.status(), StatusCode::OK);
    assert!(
        form.text().await.expect("page").contains(&cadre.phone),
        "the form shows the phone to correct"
    );
    let actions = audit_actions(&server).await;
    assert_eq!(
        actions
            .iter()
            .filter(|action| **action == view_full)
            .count(),
        1,
        "{actions:?}"
    );
}
