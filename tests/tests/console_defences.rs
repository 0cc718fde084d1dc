//! Console defences end to end, over real HTTP against a real server with the demo county:
//! - CSRF (跨站请求伪造): a post with the victim's cookie but a foreign `Origin` (another
//!   app on the same host, another port) or without this session's token is refused with
//!   403 and changes nothing in the store; the same post from the console's own origin with
//!   the token works. Forms, JSON and the multipart roster upload alike.
//! - CSV injection: a head-of-household name edited on a phone to a formula, pushed through
//!   the real sync path, comes out of `visits.csv` as `'=...` and out of `visits.xlsx` as a
//!   string cell, never a formula.

use std::io::Cursor;

use calamine::{Data, Reader, Xlsx, open_workbook_from_rs};
use fieldsync_client::{Client, NewVisit};
use fieldsync_model::codes::{LocationProvider, VisitMode};
use fieldsync_model::register::FieldTarget;
use fieldsync_model::visit::GpsFix;
use fieldsync_server::demo::DEMO_COUNTY_ID;
use fieldsync_server::store::PairingFilter;
use fieldsync_tests::{ConsoleSession, TestServer, console_session, phone_of};
use reqwest::StatusCode;
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime, UtcOffset};

/// Record and sync an in-person visit at the phone's first household; its id and check-in.
async fn submitted_visit(phone: &Client) -> (String, OffsetDateTime) {
    let household_id = phone.households().expect("households")[0]
        .household_id
        .clone();
    let home = phone
        .household(&household_id)
        .expect("read")
        .expect("on phone")
        .location
        .expect("location");
    let now = OffsetDateTime::now_utc();
    let check_in = now - Duration::minutes(40);
    let visit_id = phone
        .record_visit(NewVisit {
            observed_situation: "户主在家，身体尚可，家中养羊12只。".into(),
            plan_progress: "养羊项目进展正常，已出栏5只。".into(),
            gps: Some(GpsFix {
                lat: home.lat + 0.0004,
                lon: home.lon + 0.0002,
                crs: home.crs,
                accuracy_m: 12.0,
                provider: Some(LocationProvider::Gps),
                is_mock: false,
                fix_time: Some(now - Duration::minutes(20)),
            }),
            ..NewVisit::new(household_id, VisitMode::InPerson, check_in, now)
        })
        .expect("record");
    phone.sync().await.expect("sync");
    (visit_id, check_in)
}

/// A port on this host that is not the server's: "another app on the same host".
fn foreign_origin(server: &TestServer) -> String {
    format!("http://127.0.0.1:{}", server.address.port() + 1)
}

fn own_origin(server: &TestServer) -> String {
    format!("http://127.0.0.1:{}", server.address.port())
}

async fn visit_json(session: &ConsoleSession, server: &TestServer, visit_id: &str) -> Value {
    session
        .with_token_header()
        .get(format!("{}/console/api/visits/{visit_id}", server.url()))
        .send()
        .await
        .expect("visit json")
        .json()
        .await
        .expect("json")
}

/// The return form's fields for `visit`, with `csrf_token` when given.
fn return_form(visit: &Value, csrf_token: Option<&str>) -> Vec<(String, String)> {
    let mut fields = vec![
        ("decision".to_owned(), "return".to_owned()),
        ("revision".to_owned(), visit["revision"].to_string()),
        (
            "content_hash".to_owned(),
            visit["content_hash"].as_str().expect("hash").to_owned(),
        ),
        (
            "reasons".to_owned(),
            "content_too_short:observed_situation".to_owned(),
        ),
        ("note".to_owned(), "请补充收入变化".to_owned()),
        ("deadline".to_owned(), "2099-12-10".to_owned()),
    ];
    if let Some(token) = csrf_token {
        fields.push(("csrf_token".to_owned(), token.to_owned()));
    }
    fields
}

fn return_json(visit: &Value) -> Value {
    json!({
        "decision": "return",
        "revision": visit["revision"],
        "content_hash": visit["content_hash"],
        "reasons": [{"code": "content_too_short", "field": "observed_situation"}],
        "note": "请补充收入变化",
        "deadline": "2099-12-10",
    })
}

async fn review_state(server: &TestServer, visit_id: &str) -> String {
    let detail = server
        .state
        .store
        .visit_detail(visit_id)
        .await
        .expect("store")
        .expect("visit");
    format!("{:?}", detail.state)
}

#[tokio::test]
async fn a_forged_decision_is_refused_and_changes_nothing_and_the_real_one_works() {
    let server = TestServer::start().await;
    let (phone, _phone_dir) = phone_of(&server, "cadre01").await;
    let (visit_id, _) = submitted_visit(&phone).await;
    let supervisor = console_session(&server, "township1").await;
    let visit = visit_json(&supervisor, &server, &visit_id).await;
    let before = review_state(&server, &visit_id).await;
    let form_path = format!("{}/console/visits/{visit_id}/decision", server.url());
    let json_path = format!("{}/console/api/visits/{visit_id}/decision", server.url());
    let token = supervisor.csrf_token.clone();

    // (1) The victim's cookie and even the right token, but posted from another origin.
    let forged = supervisor
        .http
        .post(&form_path)
        .header("origin", foreign_origin(&server))
        .form(&return_form(&visit, Some(&token)))
        .send()
        .await
        .expect("forged form");
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert!(
        forged
            .text()
            .await
            .expect("page")
            .contains("请求来源不可信")
    );
    let forged_json = supervisor
        .http
        .post(&json_path)
        .header("origin", "null")
        .header("x-csrf-token", &token)
        .json(&return_json(&visit))
        .send()
        .await
        .expect("forged json");
    assert_eq!(forged_json.status(), StatusCode::FORBIDDEN);
    let answer: Value = forged_json.json().await.expect("typed json error");
    assert_eq!(answer["reason"], "foreign_origin");
    // Without Origin, a foreign Referer is refused too.
    let by_referer = supervisor
        .http
        .post(&form_path)
        .header(
            "referer",
            format!("{}/attack.html", foreign_origin(&server)),
        )
        .form(&return_form(&visit, Some(&token)))
        .send()
        .await
        .expect("forged by referer");
    assert_eq!(by_referer.status(), StatusCode::FORBIDDEN);

    // (2) The right origin, but no token or a wrong one.
    let other_session = console_session(&server, "township1").await;
    for (name, csrf_token) in [
        ("missing", None),
        ("wrong", Some("00".repeat(32))),
        ("another session's", Some(other_session.csrf_token.clone())),
    ] {
        let response = supervisor
            .http
            .post(&form_path)
            .header("origin", own_origin(&server))
            .form(&return_form(&visit, csrf_token.as_deref()))
            .send()
            .await
            .expect("post");
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{name} token");
        assert!(
            response
                .text()
                .await
                .expect("page")
                .contains("页面已过期，请刷新后重试"),
            "{name} token"
        );
    }
    let tokenless_json = supervisor
        .http
        .post(&json_path)
        .header("origin", own_origin(&server))
        .json(&return_json(&visit))
        .send()
        .await
        .expect("json without token");
    assert_eq!(tokenless_json.status(), StatusCode::FORBIDDEN);
    let answer: Value = tokenless_json.json().await.expect("typed json error");
    assert_eq!(answer["reason"], "csrf_token_missing");
    let wrong_json = supervisor
        .http
        .post(&json_path)
        .header("x-csrf-token", &other_session.csrf_token)
        .json(&return_json(&visit))
        .send()
        .await
        .expect("json with another session's token");
    assert_eq!(wrong_json.status(), StatusCode::FORBIDDEN);
    let answer: Value = wrong_json.json().await.expect("typed json error");
    assert_eq!(answer["reason"], "csrf_token_invalid");

    // Nothing changed: the visit was not returned and the phone has no task.
    assert_eq!(review_state(&server, &visit_id).await, before);
    phone.sync().await.expect("sync");
    assert!(phone.tasks().expect("tasks").is_empty());

    // (3) The console's own origin with the session's token: the return goes through.
    let real = supervisor
        .http
        .post(&form_path)
        .header("origin", own_origin(&server))
        .form(&return_form(&visit, Some(&token)))
        .send()
        .await
        .expect("real form");
    assert_eq!(real.status(), StatusCode::SEE_OTHER);
    assert_ne!(review_state(&server, &visit_id).await, before);
    phone.sync().await.expect("sync");
    assert_eq!(phone.tasks().expect("tasks").len(), 1, "the return arrived");
}

/// Secondary (helper) cadres paired with `household_id`, from the store.
async fn helpers_of(server: &TestServer, household_id: &str) -> Vec<String> {
    server
        .state
        .store
        .pairing_households(
            DEMO_COUNTY_ID,
            PairingFilter {
                limit: 10_000,
                ..PairingFilter::default()
            },
        )
        .await
        .expect("store")
        .into_iter()
        .find(|household| household.household_id == household_id)
        .expect("the household")
        .secondaries
        .into_iter()
        .map(|(user_id, _)| user_id)
        .collect()
}

#[tokio::test]
async fn a_forged_helper_pairing_is_refused_and_the_real_one_is_added() {
    let server = TestServer::start().await;
    let (primary_phone, _primary_dir) = phone_of(&server, "cadre01").await;
    let household_id = primary_phone.households().expect("households")[0]
        .household_id
        .clone();
    let helper = server
        .state
        .store
        .find_user_by_username("cadre02")
        .await
        .expect("store")
        .expect("demo user")
        .user_id;
    let admin = console_session(&server, "county").await;
    let form = |csrf_token: Option<&str>| {
        let mut fields = vec![
            ("household_id", household_id.clone()),
            ("cadre_user_id", helper.clone()),
            ("action", "add".to_owned()),
        ];
        if let Some(token) = csrf_token {
            fields.push(("csrf_token", token.to_owned()));
        }
        fields
    };
    let form_path = format!("{}/console/pairings/helpers", server.url());
    let json_path = format!("{}/console/api/pairings/helpers", server.url());
    let body = json!({"household_id": household_id, "cadre_user_id": helper, "add": true});

    let forged = admin
        .http
        .post(&form_path)
        .header("origin", foreign_origin(&server))
        .form(&form(Some(&admin.csrf_token)))
        .send()
        .await
        .expect("forged form");
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let forged_json = admin
        .http
        .post(&json_path)
        .header("origin", foreign_origin(&server))
        .header("x-csrf-token", &admin.csrf_token)
        .json(&body)
        .send()
        .await
        .expect("forged json");
    assert_eq!(forged_json.status(), StatusCode::FORBIDDEN);
    let tokenless = admin
        .http
        .post(&form_path)
        .header("origin", own_origin(&server))
        .form(&form(None))
        .send()
        .await
        .expect("tokenless form");
    assert_eq!(tokenless.status(), StatusCode::FORBIDDEN);
    let tokenless_json = admin
        .http
        .post(&json_path)
        .json(&body)
        .send()
        .await
        .expect("tokenless json");
    assert_eq!(tokenless_json.status(), StatusCode::FORBIDDEN);
    assert!(
        !helpers_of(&server, &household_id).await.contains(&helper),
        "no pairing was added"
    );

    let real = admin
        .http
        .post(&form_path)
        .header("origin", own_origin(&server))
        .form(&form(Some(&admin.csrf_token)))
        .send()
        .await
        .expect("real form");
    assert_eq!(real.status(), StatusCode::SEE_OTHER);
    assert!(helpers_of(&server, &household_id).await.contains(&helper));
    // The JSON twin with the header (a script; no Origin at all) works too: ending it.
    let ended = admin
        .http
        .post(&json_path)
        .header("x-csrf-token", &admin.csrf_token)
        .json(&json!({"household_id": household_id, "cadre_user_id": helper, "add": false}))
        .send()
        .await
        .expect("json end");
    assert!(ended.status().is_success(), "{}", ended.status());
    assert!(!helpers_of(&server, &household_id).await.contains(&helper));
}

/// A multipart roster upload: the token must be in its `csrf_token` part.
fn roster_multipart(csrf_token: Option<&str>) -> (String, Vec<u8>) {
    let boundary = "FieldSync-CSRF-Test-Boundary-41c9";
    let mut body = String::new();
    if let Some(token) = csrf_token {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\n{token}\r\n"
        ));
    }
    body.push_str(&format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"empty.csv\"\r\nContent-Type: text/csv\r\n\r\n\r\n--{boundary}--\r\n"
    ));
    (
        format!("multipart/form-data; boundary={boundary}"),
        body.into_bytes(),
    )
}

#[tokio::test]
async fn the_multipart_roster_upload_needs_the_token_in_its_form() {
    let server = TestServer::start().await;
    let admin = console_session(&server, "county").await;
    let upload = |csrf_token: Option<String>| {
        let (content_type, body) = roster_multipart(csrf_token.as_deref());
        admin
            .http
            .post(format!("{}/console/import", server.url()))
            .header("origin", own_origin(&server))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let refused = upload(None).await.expect("upload");
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let passed = upload(Some(admin.csrf_token.clone()))
        .await
        .expect("upload");
    // Past the guard, the import itself judges the (empty) file.
    assert_eq!(passed.status(), StatusCode::BAD_REQUEST);
    assert!(passed.text().await.expect("page").contains("文件为空"));
}

#[tokio::test]
async fn a_formula_typed_on_a_phone_is_text_in_the_csv_and_xlsx_exports() {
    let server = TestServer::start().await;
    let (phone, _phone_dir) = phone_of(&server, "cadre01").await;
    let household_id = phone.households().expect("households")[0]
        .household_id
        .clone();
    let formula = r#"=HYPERLINK("http://x","y")"#;
    phone
        .edit_household_field(
            &household_id,
            FieldTarget::Household,
            "head_name",
            json!(formula),
        )
        .expect("edit on the phone");
    let (_, check_in) = submitted_visit(&phone).await;
    assert_eq!(
        server
            .state
            .store
            .get_household(&household_id)
            .await
            .expect("store")
            .expect("household")
            .head_name,
        formula,
        "the edit reached the server through the real push path"
    );
    let beijing = check_in.to_offset(UtcOffset::from_hms(8, 0, 0).expect("offset"));
    let month = format!("{}-{:02}", beijing.year(), u8::from(beijing.month()));
    let supervisor = console_session(&server, "township1")
        .await
        .with_token_header();

    let csv = supervisor
        .get(format!(
            "{}/console/exports/visits.csv?month={month}",
            server.url()
        ))
        .send()
        .await
        .expect("csv");
    assert_eq!(csv.status(), StatusCode::OK);
    let bytes = csv.bytes().await.expect("body");
    let raw = String::from_utf8(bytes.to_vec()).expect("utf-8");
    assert!(
        raw.contains(r#""'=HYPERLINK(""http://x"",""y"")""#),
        "quoted, with a leading ': {raw}"
    );
    let bom = "\u{feff}".as_bytes();
    let mut reader = csv::Reader::from_reader(&bytes[bom.len()..]);
    let cells: Vec<String> = reader
        .records()
        .flat_map(|record| {
            record
                .expect("record")
                .iter()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(cells.contains(&format!("'{formula}")), "{cells:?}");
    assert!(
        cells
            .iter()
            .all(|cell| !cell.starts_with(['=', '+', '@', '\t', '\r'])),
        "no cell starts a formula: {cells:?}"
    );

    let xlsx = supervisor
        .get(format!(
            "{}/console/exports/visits.xlsx?month={month}",
            server.url()
        ))
        .send()
        .await
        .expect("xlsx");
    assert_eq!(xlsx.status(), StatusCode::OK);
    let bytes = xlsx.bytes().await.expect("body").to_vec();
    let mut workbook: Xlsx<_> = open_workbook_from_rs(Cursor::new(bytes)).expect("xlsx");
    let values = workbook.worksheet_range("台账").expect("sheet");
    assert!(
        values
            .cells()
            .any(|(_, _, cell)| *cell == Data::String(formula.to_owned())),
        "the name is a string cell, as typed"
    );
    let formulas = workbook.worksheet_formula("台账").expect("formulas");
    assert!(
        formulas.cells().all(|(_, _, formula)| formula.is_empty()),
        "no cell of the export is a formula"
    );
}
