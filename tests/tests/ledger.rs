//! The monthly ledger (月台账) end to end: a real server on port 0 with the demo county and
//! an injected clock shared with real client cores, the console's HTTP routes and JSON
//! twins. Covers month boundaries in Beijing time, a visit recorded offline on the 31st and
//! synced on the 2nd, a returned-then-approved visit, overdue after the month end, month
//! close (月结) locking the snapshot while a late visit is stored and shown as 逾期补报,
//! refusals, dashboard numbers against the lists behind them, and township scoping.

use std::sync::{Arc, Mutex};

use fieldsync_client::{Client, NewVisit};
use fieldsync_model::codes::VisitMode;
use fieldsync_tests::{DEMO_PASSWORD, TestServer, console_login, unreachable_url};
use reqwest::StatusCode;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::datetime;

/// One clock for the server and the phones, moved by the test.
#[derive(Debug)]
struct TestClock(Mutex<OffsetDateTime>);

impl TestClock {
    fn set(&self, instant: OffsetDateTime) {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = instant;
    }
    fn get(&self) -> OffsetDateTime {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl fieldsync_server::clock::Clock for TestClock {
    fn now(&self) -> OffsetDateTime {
        self.get()
    }
}

impl fieldsync_client::Clock for TestClock {
    fn now(&self) -> OffsetDateTime {
        self.get()
    }
}

/// 2026-03-31 23:00 Beijing (15:00 UTC).
const MARCH_31_LATE: OffsetDateTime = datetime!(2026-03-31 15:00 UTC);
/// 2026-04-02 10:00 Beijing: March has ended.
const APRIL_2: OffsetDateTime = datetime!(2026-04-02 02:00 UTC);

async fn phone_of(
    server: &TestServer,
    clock: &Arc<TestClock>,
    username: &str,
) -> (Client, tempfile::TempDir) {
    let folder = tempfile::tempdir().expect("temp dir");
    let client =
        Client::open_with_clock(folder.path(), &server.url(), clock.clone()).expect("open client");
    client.login(username, DEMO_PASSWORD).await.expect("login");
    client.sync().await.expect("first sync");
    (client, folder)
}

/// An in-person visit of 30 minutes starting at `checkin`.
fn visit_at(household_id: &str, mode: VisitMode, checkin: OffsetDateTime) -> NewVisit {
    NewVisit {
        observed_situation: "户主在家，生产生活正常，医保已续缴。".into(),
        plan_progress: "养羊项目进展正常。".into(),
        exception_reason: (mode != VisitMode::InPerson)
            .then_some(fieldsync_model::codes::VisitExceptionReason::WorkingAway),
        ..NewVisit::new(
            household_id,
            mode,
            checkin,
            checkin + time::Duration::minutes(30),
        )
    }
}

async fn get_json(browser: &reqwest::Client, server: &TestServer, path: &str) -> Value {
    let response = browser
        .get(format!("{}{path}", server.url()))
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    response.json().await.expect("json")
}

async fn ledger(browser: &reqwest::Client, server: &TestServer, query: &str) -> Value {
    get_json(browser, server, &format!("/console/api/ledger?{query}")).await
}

fn row<'a>(ledger: &'a Value, household_id: &str) -> &'a Value {
    ledger["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|row| row["household_id"] == household_id)
        .unwrap_or_else(|| panic!("household {household_id} in {ledger}"))
}

async fn decide(browser: &reqwest::Client, server: &TestServer, visit_id: &str, decision: &str) {
    let visit = get_json(browser, server, &format!("/console/api/visits/{visit_id}")).await;
    let mut body = json!({
        "decision": decision,
        "revision": visit["revision"],
        "content_hash": visit["content_hash"],
    });
    if decision == "return" {
        body["reasons"] = json!([{"code": "content_too_short", "field": "observed_situation"}]);
        body["note"] = json!("请补充收入变化情况");
    }
    let response = browser
        .post(format!(
            "{}/console/api/visits/{visit_id}/decision",
            server.url()
        ))
        .json(&body)
        .send()
        .await
        .expect("decision");
    assert!(response.status().is_success(), "{}", response.status());
}

async fn close(
    browser: &reqwest::Client,
    server: &TestServer,
    month: &str,
    confirm: &str,
) -> reqwest::Response {
    browser
        .post(format!("{}/console/ledger/close", server.url()))
        .form(&[("month", month), ("confirm", confirm)])
        .send()
        .await
        .expect("close")
}

/// Every number of the dashboard equals the length of the list it links to.
async fn assert_dashboard_matches_lists(
    browser: &reqwest::Client,
    server: &TestServer,
    month: &str,
) -> Value {
    let dashboard = get_json(
        browser,
        server,
        &format!("/console/api/dashboard?month={month}"),
    )
    .await;
    let count = |ledger: &Value| ledger["count"].as_u64().expect("count");
    let totals = &dashboard["totals"];
    for (key, state) in [
        ("due", ""),
        ("visited_in_person", "visited"),
        ("approved_in_person", "approved"),
        ("overdue", "overdue"),
    ] {
        let list = ledger(browser, server, &format!("month={month}&state={state}")).await;
        assert_eq!(totals[key].as_u64(), Some(count(&list)), "total {key}");
    }
    for (group, parameter) in [("by_village", "village"), ("by_cadre", "cadre")] {
        for group_row in dashboard[group].as_array().expect("groups") {
            let id = group_row["group_id"].as_str().expect("id");
            for (key, state) in [
                ("due", ""),
                ("visited_in_person", "visited"),
                ("approved_in_person", "approved"),
                ("overdue", "overdue"),
            ] {
                let list = ledger(
                    browser,
                    server,
                    &format!("month={month}&{parameter}={id}&state={state}"),
                )
                .await;
                assert_eq!(
                    group_row[key].as_u64(),
                    Some(count(&list)),
                    "{group} {id} {key}"
                );
            }
        }
    }
    let previous = dashboard["previous_month"].as_str().expect("previous");
    let overdue = ledger(browser, server, &format!("month={previous}&state=overdue")).await;
    assert_eq!(
        dashboard["previous_overdue"]
            .as_array()
            .expect("list")
            .len() as u64,
        count(&overdue),
        "overdue of the previous month"
    );
    dashboard
}

#[tokio::test]
async fn month_boundaries_offline_sync_review_and_month_close() {
    let clock = Arc::new(TestClock(Mutex::new(MARCH_31_LATE)));
    let server = TestServer::start_with_clock(clock.clone()).await;
    let (phone, _phone_dir) = phone_of(&server, &clock, "cadre01").await;
    let households = phone.households().expect("households");
    let [first, second, third, ..] = households.as_slice() else {
        panic!("cadre01 has 8 households");
    };
    let (first, second, third) = (
        first.household_id.clone(),
        second.household_id.clone(),
        third.household_id.clone(),
    );

    // Offline on the evening of 31 March: a visit at 23:30 Beijing (15:30 UTC) belongs to
    // March; after midnight, a visit at 00:10 on 1 April (16:10 UTC) belongs to April, and a
    // phone visit on the 31st never counts toward the in-person rate.
    let online = phone.server_url();
    phone
        .set_server_url(&unreachable_url().await)
        .expect("offline");
    clock.set(datetime!(2026-03-31 16:00 UTC));
    let march_visit = phone
        .record_visit(visit_at(
            &first,
            VisitMode::InPerson,
            datetime!(2026-03-31 15:30 UTC),
        ))
        .expect("record March");
    let phone_call = phone
        .record_visit(visit_at(
            &third,
            VisitMode::Phone,
            datetime!(2026-03-31 14:00 UTC),
        ))
        .expect("record phone call");
    clock.set(datetime!(2026-03-31 16:40 UTC));
    let april_visit = phone
        .record_visit(visit_at(
            &second,
            VisitMode::InPerson,
            datetime!(2026-03-31 16:10 UTC),
        ))
        .expect("record April");

    // Synced on 2 April: the visits keep the months of their own check-in times.
    clock.set(APRIL_2);
    phone.set_server_url(&online).expect("online");
    phone.sync().await.expect("sync on the 2nd");

    let supervisor = console_login(&server, "township1").await;
    let march = ledger(&supervisor, &server, "month=2026-03").await;
    let first_row = row(&march, &first);
    assert_eq!(
        first_row["state"], "overdue",
        "March ended without an approved in-person visit"
    );
    assert_eq!(first_row["visited_in_person"], true);
    assert_eq!(first_row["visits"][0]["visit_id"], march_visit.as_str());
    assert_eq!(first_row["visits"][0]["state"], "submitted");
    assert!(
        row(&march, &second)["visits"]
            .as_array()
            .expect("visits")
            .is_empty(),
        "the 00:10 visit is April's"
    );
    let third_row = row(&march, &third);
    assert_eq!(third_row["visits"][0]["visit_id"], phone_call.as_str());
    assert_eq!(third_row["visits"][0]["in_person"], false);
    assert_eq!(third_row["visited_in_person"], false);
    let april = ledger(&supervisor, &server, "month=2026-04").await;
    assert_eq!(row(&april, &second)["state"], "submitted");
    assert_eq!(
        row(&april, &second)["visits"][0]["visit_id"],
        april_visit.as_str()
    );
    assert_eq!(
        row(&april, &first)["state"],
        "due",
        "April is still running"
    );

    // Returned, corrected on the phone, approved: the March slot becomes approved even
    // though the approval comes after the month end (the month is not closed yet).
    decide(&supervisor, &server, &march_visit, "return").await;
    let returned = ledger(&supervisor, &server, "month=2026-03").await;
    assert_eq!(row(&returned, &first)["state"], "overdue");
    assert_eq!(row(&returned, &first)["visited_in_person"], false);
    phone.sync().await.expect("sync the return");
    phone
        .resubmit_visit(&march_visit, |visit| {
            visit
                .observed_situation
                .push_str("本月务工收入增加约三千元。");
        })
        .expect("fix");
    phone.sync().await.expect("sync the fix");
    let resubmitted = ledger(&supervisor, &server, "month=2026-03").await;
    assert_eq!(row(&resubmitted, &first)["visits"][0]["revision"], 2);
    assert_eq!(row(&resubmitted, &first)["visits"][0]["state"], "submitted");
    decide(&supervisor, &server, &march_visit, "approve").await;
    decide(&supervisor, &server, &phone_call, "approve").await;
    let approved = ledger(&supervisor, &server, "month=2026-03").await;
    assert_eq!(row(&approved, &first)["state"], "approved");
    assert_eq!(
        row(&approved, &third)["state"],
        "overdue",
        "an approved phone visit does not count"
    );

    // The dashboard of April and of March: every number matches the list behind it.
    let april_dashboard = assert_dashboard_matches_lists(&supervisor, &server, "2026-04").await;
    assert_eq!(april_dashboard["totals"]["visited_in_person"], 1);
    assert_eq!(april_dashboard["totals"]["overdue"], 0);
    let previous_overdue = april_dashboard["previous_overdue"]
        .as_array()
        .expect("list");
    assert!(
        previous_overdue
            .iter()
            .all(|row| row["household_id"] != first.as_str()),
        "the approved household is not overdue"
    );
    assert!(
        previous_overdue
            .iter()
            .any(|row| row["household_id"] == third.as_str())
    );
    let march_dashboard = assert_dashboard_matches_lists(&supervisor, &server, "2026-03").await;
    assert_eq!(march_dashboard["totals"]["approved_in_person"], 1);
    let due = march_dashboard["totals"]["due"].as_u64().expect("due");
    assert_eq!(march_dashboard["totals"]["overdue"].as_u64(), Some(due - 1));
    let html = supervisor
        .get(format!("{}/console/dashboard?month=2026-03", server.url()))
        .send()
        .await
        .expect("dashboard page");
    assert_eq!(html.status(), StatusCode::OK);
    let html = html.text().await.expect("html");
    assert!(html.contains("工作台") && html.contains("入户率"));
    assert!(html.contains("/console/ledger?month=2026-03&amp;state=approved"));

    // Closing refusals change nothing: the running month, a future month, a malformed
    // month, a missing confirm text, and a county administrator.
    for (month, confirm, status) in [
        ("2026-04", "月结", StatusCode::BAD_REQUEST),
        ("2026-05", "月结", StatusCode::BAD_REQUEST),
        ("2026-13", "月结", StatusCode::BAD_REQUEST),
        ("2026-03", "", StatusCode::BAD_REQUEST),
        ("2026-03", "close", StatusCode::BAD_REQUEST),
    ] {
        let response = close(&supervisor, &server, month, confirm).await;
        assert_eq!(response.status(), status, "{month} {confirm:?}");
    }
    let county = console_login(&server, "county").await;
    let response = close(&county, &server, "2026-03", "月结").await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(
        ledger(&supervisor, &server, "month=2026-03").await["closures"]
            .as_array()
            .expect("closures")
            .is_empty()
    );

    // A second phone recorded a March visit offline and has not synced yet.
    clock.set(MARCH_31_LATE);
    let (late_phone, _late_dir) = phone_of(&server, &clock, "cadre02").await;
    let late_household = late_phone.households().expect("households")[0]
        .household_id
        .clone();
    late_phone
        .set_server_url(&unreachable_url().await)
        .expect("offline");
    let late_visit = late_phone
        .record_visit(visit_at(
            &late_household,
            VisitMode::InPerson,
            MARCH_31_LATE,
        ))
        .expect("record late");

    // Close March on 2 April. Console sessions end after 30 idle minutes, so the
    // supervisor logs in again after the clock jumps (days pass between these steps).
    clock.set(APRIL_2);
    let supervisor = console_login(&server, "township1").await;
    let response = close(&supervisor, &server, "2026-03", "月结").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let before = ledger(&supervisor, &server, "month=2026-03").await;
    assert!(before["closures"][0]["closed_by_name"].is_string());
    assert_eq!(before["closures"][0]["closed_at"], "2026-04-02T02:00:00Z");
    assert_eq!(row(&before, &first)["state"], "locked_approved");
    assert_eq!(row(&before, &late_household)["state"], "locked_overdue");
    let response = close(&supervisor, &server, "2026-03", "月结").await;
    assert_eq!(response.status(), StatusCode::CONFLICT, "closing twice");
    let page = supervisor
        .get(format!("{}/console/ledger?month=2026-03", server.url()))
        .send()
        .await
        .expect("ledger page")
        .text()
        .await
        .expect("html");
    assert!(
        page.contains("已月结") && page.contains("月结"),
        "who/when closed is shown"
    );
    let dashboard_before =
        get_json(&supervisor, &server, "/console/api/dashboard?month=2026-03").await;

    // The late visit arrives on 3 April: stored, shown as 逾期补报, the snapshot unchanged
    // even after it is approved.
    clock.set(APRIL_2 + time::Duration::days(1));
    let supervisor = console_login(&server, "township1").await;
    late_phone.set_server_url(&online).expect("online");
    late_phone.sync().await.expect("late sync");
    decide(&supervisor, &server, &late_visit, "approve").await;
    let after = ledger(&supervisor, &server, "month=2026-03").await;
    let late_row = row(&after, &late_household);
    assert_eq!(late_row["state"], "locked_overdue");
    assert_eq!(late_row["approved_in_person"], false);
    assert_eq!(late_row["visits"][0]["visit_id"], late_visit.as_str());
    assert_eq!(late_row["visits"][0]["late_after_close"], true);
    assert_eq!(
        late_row["visits"][0]["state"], "approved",
        "the visit is stored"
    );
    let late_list = ledger(&supervisor, &server, "month=2026-03&state=late").await;
    assert_eq!(late_list["count"], 1);
    let dashboard_after =
        get_json(&supervisor, &server, "/console/api/dashboard?month=2026-03").await;
    assert_eq!(dashboard_after["totals"], dashboard_before["totals"]);
    assert_eq!(
        dashboard_after["by_village"],
        dashboard_before["by_village"]
    );
    assert_eq!(dashboard_after["by_cadre"], dashboard_before["by_cadre"]);
    assert_dashboard_matches_lists(&supervisor, &server, "2026-03").await;
    let page = supervisor
        .get(format!(
            "{}/console/ledger?month=2026-03&state=late",
            server.url()
        ))
        .send()
        .await
        .expect("late page")
        .text()
        .await
        .expect("html");
    assert!(page.contains("逾期补报"));
    assert!(page.contains(&format!("/console/visits/{late_visit}")));
    assert!(page.contains(&format!("/console/households/{late_household}")));
}

#[tokio::test]
async fn scope_roles_and_bad_parameters() {
    let clock = Arc::new(TestClock(Mutex::new(APRIL_2)));
    let server = TestServer::start_with_clock(clock.clone()).await;
    let (phone, _dir) = phone_of(&server, &clock, "cadre01").await;
    let household = phone.households().expect("households")[0]
        .household_id
        .clone();
    phone
        .record_visit(visit_at(
            &household,
            VisitMode::InPerson,
            APRIL_2 - time::Duration::hours(2),
        ))
        .expect("record");
    phone.sync().await.expect("sync");

    let one = console_login(&server, "township1").await;
    let two = console_login(&server, "township2").await;
    let county = console_login(&server, "county").await;
    let ledger_one = ledger(&one, &server, "month=2026-04").await;
    let ledger_two = ledger(&two, &server, "month=2026-04").await;
    let ledger_county = ledger(&county, &server, "month=2026-04").await;
    let count = |ledger: &Value| ledger["count"].as_u64().expect("count");
    assert!(count(&ledger_one) > 0 && count(&ledger_two) > 0);
    assert_eq!(
        count(&ledger_county),
        count(&ledger_one) + count(&ledger_two)
    );
    let township_of = |ledger: &Value| -> std::collections::BTreeSet<String> {
        ledger["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .map(|row| row["township_id"].as_str().expect("id").to_owned())
            .collect()
    };
    assert_eq!(township_of(&ledger_one).len(), 1);
    assert!(township_of(&ledger_one).is_disjoint(&township_of(&ledger_two)));
    assert!(
        ledger_two["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .all(|row| row["household_id"] != household.as_str()),
        "township 2 never sees township 1's rows"
    );
    // Township 1's village asked for by township 2 is answered like an unknown village.
    let village = row(&ledger_one, &household)["village_id"]
        .as_str()
        .expect("village")
        .to_owned();
    let probe = ledger(&two, &server, &format!("month=2026-04&village={village}")).await;
    assert_eq!(count(&probe), 0);
    let dashboard_two = get_json(&two, &server, "/console/api/dashboard?month=2026-04").await;
    assert_eq!(dashboard_two["totals"]["visited_in_person"], 0);
    let dashboard_one = get_json(&one, &server, "/console/api/dashboard?month=2026-04").await;
    assert_eq!(dashboard_one["totals"]["visited_in_person"], 1);
    let dashboard_county = get_json(&county, &server, "/console/api/dashboard").await;
    assert_eq!(
        dashboard_county["month"], "2026-04",
        "the current month by default"
    );
    assert_eq!(dashboard_county["totals"]["visited_in_person"], 1);
    // cadre01 synced just now; the township's other cadres never did.
    let cadre01 = row(&ledger_one, &household)["primary_cadre_user_id"]
        .as_str()
        .expect("primary cadre")
        .to_owned();
    let silent = dashboard_one["silent_cadres"].as_array().expect("silent");
    assert!(!silent.is_empty());
    assert!(
        silent
            .iter()
            .all(|cadre| cadre["user_id"] != cadre01.as_str())
    );
    assert!(silent.iter().all(|cadre| cadre["last_sync_at"].is_null()));

    // Bad parameters are typed 400s naming the field.
    for (query, field) in [
        ("month=2026-13", "month"),
        ("month=March", "month"),
        ("month=2026-04&state=finished", "state"),
    ] {
        let response = one
            .get(format!("{}/console/api/ledger?{query}", server.url()))
            .send()
            .await
            .expect("bad");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["field"], field, "{query}");
    }
    let response = one
        .get(format!("{}/console/ledger?month=2026-00", server.url()))
        .send()
        .await
        .expect("bad html");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // Cadres are not staff; nobody without a session gets anything; staff land on the
    // dashboard.
    let cadre = console_login(&server, "cadre01").await;
    let response = cadre
        .get(format!("{}/console/api/dashboard", server.url()))
        .send()
        .await
        .expect("cadre");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let anonymous = reqwest::Client::new();
    let response = anonymous
        .get(format!("{}/console/api/ledger", server.url()))
        .send()
        .await
        .expect("anonymous");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = county
        .get(format!("{}/", server.url()))
        .send()
        .await
        .expect("home");
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        response.headers()["location"].to_str().expect("location"),
        "/console/dashboard"
    );
    let response = county
        .get(format!("{}/console/ledger/silent", server.url()))
        .send()
        .await
        .expect("silent page");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.text().await.expect("html").contains("未同步"));
}
