//! The review loop over real HTTP (审核闭环): the queue's filters (village, cadre, flag,
//! days waiting with the injected clock; each alone and combined, HTML and JSON), the
//! filter bar's counts, "next" keeping the filters, the correction diff after a return
//! reached the phone and came back, the script and the Content-Security-Policy. A real
//! server on port 0, real client cores, real SQLite files.

use std::collections::BTreeSet;
use std::sync::Arc;

use fieldsync_client::{Client, NewVisit};
use fieldsync_model::codes::{LocationProvider, VisitMode};
use fieldsync_model::visit::GpsFix;
use fieldsync_server::clock::ManualClock;
use fieldsync_tests::{TestServer, console_login, phone_of, test_photo};
use reqwest::StatusCode;
use time::{Duration, OffsetDateTime};

/// An in-person visit to the `index`-th household of the phone, `north_m` metres north of
/// its registered location, with the given photos.
fn visit_near_home(
    client: &Client,
    index: usize,
    north_m: f64,
    photos: Vec<std::path::PathBuf>,
) -> (NewVisit, String) {
    let household_id = client.households().expect("households")[index]
        .household_id
        .clone();
    let household = client
        .household(&household_id)
        .expect("read")
        .expect("on phone");
    let home = household.location.expect("demo households have a location");
    let now = OffsetDateTime::now_utc();
    let visit = NewVisit {
        observed_situation: "户主在家，秋粮已收，两位老人身体尚可。".into(),
        plan_progress: "养羊项目进展正常。".into(),
        gps: Some(GpsFix {
            lat: home.lat + north_m / 111_195.0,
            lon: home.lon,
            crs: home.crs,
            accuracy_m: 10.0,
            provider: Some(LocationProvider::Gps),
            is_mock: false,
            fix_time: Some(now - Duration::minutes(20)),
        }),
        photo_paths: photos,
        ..NewVisit::new(
            household_id,
            VisitMode::InPerson,
            now - Duration::minutes(40),
            now,
        )
    };
    (visit, household.village_id)
}

async fn get(browser: &reqwest::Client, server: &TestServer, path: &str) -> reqwest::Response {
    browser
        .get(format!("{}{path}", server.url()))
        .send()
        .await
        .expect("get")
}

/// The visit ids of the JSON queue with `query`.
async fn queue_ids(
    browser: &reqwest::Client,
    server: &TestServer,
    query: &str,
) -> BTreeSet<String> {
    let response = get(browser, server, &format!("/console/api/queue{query}")).await;
    assert_eq!(response.status(), StatusCode::OK, "{query}");
    let items: Vec<serde_json::Value> = response.json().await.expect("json");
    items
        .iter()
        .map(|item| item["visit_id"].as_str().expect("id").to_owned())
        .collect()
}

fn set(ids: &[&String]) -> BTreeSet<String> {
    ids.iter().map(|id| (*id).clone()).collect()
}

#[tokio::test]
async fn queue_filters_narrow_alone_and_combined_and_next_keeps_them() {
    let t0 = OffsetDateTime::now_utc();
    let clock = Arc::new(ManualClock::new(t0));
    let server = TestServer::start_with_clock(clock.clone()).await;
    let browser = console_login(&server, "township1").await;
    // Whatever else the demo county has waiting is not what this test is about.
    let baseline = queue_ids(&browser, &server, "").await;

    let (phone_a, _dir_a) = phone_of(&server, "cadre01").await;
    let (phone_b, _dir_b) = phone_of(&server, "cadre02").await;
    let (near, village_a1) = visit_near_home(&phone_a, 0, 30.0, Vec::new());
    let a1 = phone_a.record_visit(near).expect("record");
    let (far, village_a2) = visit_near_home(&phone_a, 1, 5_000.0, Vec::new());
    let a2 = phone_a.record_visit(far).expect("record");
    phone_a.sync().await.expect("sync a");
    // Cadre 2 syncs three days later (server time).
    clock.set(t0 + Duration::days(3));
    let (near_b, village_b1) = visit_near_home(&phone_b, 0, 20.0, Vec::new());
    let b1 = phone_b.record_visit(near_b).expect("record");
    phone_b.sync().await.expect("sync b");
    // The supervisor looks five days after the first sync (logging in again: console
    // sessions end after 30 idle minutes).
    clock.set(t0 + Duration::days(5));
    let browser = console_login(&server, "township1").await;

    let mine = |query: &str| {
        let browser = &browser;
        let server = &server;
        let baseline = &baseline;
        let query = query.to_owned();
        async move {
            queue_ids(browser, server, &query)
                .await
                .difference(baseline)
                .cloned()
                .collect::<BTreeSet<String>>()
        }
    };
    assert_eq!(mine("").await, set(&[&a1, &a2, &b1]));

    let items: Vec<serde_json::Value> = get(&browser, &server, "/console/api/queue")
        .await
        .json()
        .await
        .expect("json");
    let cadre_of = |visit_id: &str| {
        items
            .iter()
            .find(|item| item["visit_id"] == visit_id)
            .and_then(|item| item["cadre_user_id"].as_str())
            .expect("cadre id")
            .to_owned()
    };
    let cadre_a = cadre_of(&a1);
    let cadre_b = cadre_of(&b1);
    assert_ne!(cadre_a, cadre_b);

    // Each filter alone.
    assert_eq!(mine(&format!("?cadre={cadre_a}")).await, set(&[&a1, &a2]));
    assert_eq!(mine(&format!("?cadre={cadre_b}")).await, set(&[&b1]));
    let in_village: Vec<&String> = [(&a1, &village_a1), (&a2, &village_a2), (&b1, &village_b1)]
        .into_iter()
        .filter(|(_, village)| **village == village_a1)
        .map(|(id, _)| id)
        .collect();
    assert_eq!(
        mine(&format!("?village={village_a1}")).await,
        set(&in_village)
    );
    assert_eq!(mine("?flag=gps_far").await, set(&[&a2]));
    assert_eq!(mine("?age=3").await, set(&[&a1, &a2]), "b1 waited 2 days");
    assert_eq!(mine("?age=2").await, set(&[&a1, &a2, &b1]));
    assert_eq!(mine("?age=6").await, BTreeSet::new());
    // Combined.
    assert_eq!(
        mine(&format!("?cadre={cadre_a}&flag=gps_far&age=5")).await,
        set(&[&a2])
    );
    assert_eq!(
        mine(&format!("?cadre={cadre_b}&age=3")).await,
        BTreeSet::new()
    );
    let cadre_a_in_village: Vec<&String> = [(&a1, &village_a1), (&a2, &village_a2)]
        .into_iter()
        .filter(|(_, village)| **village == village_a1)
        .map(|(id, _)| id)
        .collect();
    assert_eq!(
        mine(&format!("?cadre={cadre_a}&village={village_a1}")).await,
        set(&cadre_a_in_village)
    );
    assert_eq!(
        mine(&format!("?cadre={cadre_b}&village={village_a1}")).await,
        if village_b1 == village_a1 {
            set(&[&b1])
        } else {
            BTreeSet::new()
        }
    );
    // A cadre of another township or an unknown one simply matches nothing.
    assert_eq!(mine("?cadre=nobody").await, BTreeSet::new());

    // A malformed age is refused with the field named, in JSON and in HTML.
    let bad = get(&browser, &server, "/console/api/queue?age=abc").await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = bad.json().await.expect("json");
    assert_eq!(body["field"], "age");
    let bad_page = get(&browser, &server, "/console/queue?age=-3").await;
    assert_eq!(bad_page.status(), StatusCode::BAD_REQUEST);
    assert!(bad_page.text().await.expect("text").contains("等待天数"));

    // The HTML filter bar shows the filters with their counts (other filters applied).
    let page = get(
        &browser,
        &server,
        &format!("/console/queue?cadre={cadre_a}"),
    )
    .await;
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page
        .headers()
        .get("content-security-policy")
        .and_then(|value| value.to_str().ok())
        .expect("csp")
        .to_owned();
    let html = page.text().await.expect("html");
    assert!(html.contains(r#"id="queue-filters""#));
    assert!(html.contains(&format!(r#"<option value="{cadre_a}" selected>"#)));
    assert!(
        html.contains("定位距农户过远（1）"),
        "flag count within cadre 1"
    );
    assert!(html.contains(&format!(r#"data-visit-id="{a1}""#)));
    assert!(!html.contains(&format!(r#"data-visit-id="{b1}""#)));
    assert!(
        html.contains(&format!("/console/visits/{a1}?cadre={cadre_a}")),
        "rows keep the filters"
    );
    assert!(html.contains(r#"<script src="/console/static/console.js" defer>"#));

    // The CSP allows this same-origin script and nothing else (no inline script).
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let script_directive = csp
        .split(';')
        .map(str::trim)
        .find(|directive| directive.starts_with("script-src"))
        .expect("script-src");
    assert_eq!(script_directive, "script-src 'self'");
    let script = get(&browser, &server, "/console/static/console.js").await;
    assert_eq!(script.status(), StatusCode::OK);
    assert!(
        script
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("text/javascript"))
    );
    assert!(script.text().await.expect("js").contains("approve-button"));

    // "Next" on the submission page follows the filtered queue: a1 → a2 within cadre 1,
    // and wraps from a2 back to a1.
    let detail = get(
        &browser,
        &server,
        &format!("/console/visits/{a1}?cadre={cadre_a}"),
    )
    .await
    .text()
    .await
    .expect("html");
    assert!(
        detail.contains(&format!(
            r#"id="next-item" rel="next" href="/console/visits/{a2}?cadre={cadre_a}""#
        )),
        "next within the cadre filter"
    );
    let last = get(
        &browser,
        &server,
        &format!("/console/visits/{a2}?cadre={cadre_a}"),
    )
    .await
    .text()
    .await
    .expect("html");
    assert!(last.contains(&format!(r#"href="/console/visits/{a1}?cadre={cadre_a}""#)));
    // The submission page: the offline map, and the household page link.
    assert!(detail.contains(r#"id="map-pin""#) && detail.contains(r#"id="map-scale""#));
    assert!(detail.contains("/console/households/"));

    // Approving a1 from the filtered page moves on to the next of the same filter.
    let visit_json: serde_json::Value =
        get(&browser, &server, &format!("/console/api/visits/{a1}"))
            .await
            .json()
            .await
            .expect("json");
    let response = browser
        .post(format!(
            "{}/console/visits/{a1}/decision?cadre={cadre_a}",
            server.url()
        ))
        .form(&[
            ("decision", "approve"),
            ("revision", "1"),
            (
                "content_hash",
                visit_json["content_hash"].as_str().expect("hash"),
            ),
        ])
        .send()
        .await
        .expect("approve");
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let location = response
        .headers()
        .get("location")
        .and_then(|value| value.to_str().ok())
        .expect("location");
    assert_eq!(
        location,
        format!("/console/visits/{a2}?cadre={cadre_a}&decided=approved")
    );
    assert_eq!(mine(&format!("?cadre={cadre_a}")).await, set(&[&a2]));
}

#[tokio::test]
async fn a_correction_shows_the_diff_against_the_returned_revision() {
    let server = TestServer::start().await;
    let (phone, _dir) = phone_of(&server, "cadre01").await;
    let (new_visit, _) = visit_near_home(&phone, 2, 25.0, vec![test_photo("gps_DSCN0010.jpg")]);
    let visit_id = phone.record_visit(new_visit).expect("record");
    phone.sync().await.expect("sync");

    // The supervisor returns it through the HTML form: two reasons on two fields.
    let browser = console_login(&server, "township1").await;
    let visit_json: serde_json::Value = get(
        &browser,
        &server,
        &format!("/console/api/visits/{visit_id}"),
    )
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(visit_json["correction"], serde_json::Value::Null);
    let page = get(&browser, &server, &format!("/console/visits/{visit_id}"))
        .await
        .text()
        .await
        .expect("html");
    assert!(page.contains(r#"value="content_too_short:observed_situation""#));
    let response = browser
        .post(format!(
            "{}/console/visits/{visit_id}/decision",
            server.url()
        ))
        .form(&[
            ("decision", "return"),
            ("revision", "1"),
            (
                "content_hash",
                visit_json["content_hash"].as_str().expect("hash"),
            ),
            ("reasons", "content_too_short:observed_situation"),
            ("reasons", "photo_unclear:photo_ids"),
            ("note", "请补充收入变化并补拍户主合影"),
            ("deadline", "2099-12-10"),
        ])
        .send()
        .await
        .expect("return");
    assert_eq!(response.status(), StatusCode::SEE_OTHER);

    // The phone gets the task with the reasons, their fields in Chinese, note and deadline.
    phone.sync().await.expect("sync");
    let tasks = phone.tasks().expect("tasks");
    assert_eq!(tasks.len(), 1);
    let task = &tasks[0];
    assert_eq!(task.visit_id, visit_id);
    let reasons: Vec<(&str, &str, &str, &str)> = task
        .reasons
        .iter()
        .map(|reason| {
            (
                reason.code.as_str(),
                reason.label_zh.as_str(),
                reason.field.as_str(),
                reason.field_label_zh.as_str(),
            )
        })
        .collect();
    assert_eq!(
        reasons,
        [
            (
                "content_too_short",
                "走访内容过于简单",
                "observed_situation",
                "生产生活情况"
            ),
            ("photo_unclear", "照片不清晰", "photo_ids", "走访照片"),
        ]
    );
    assert_eq!(task.note, "请补充收入变化并补拍户主合影");
    assert_eq!(task.deadline, "2099-12-10");

    // The cadre fixes the text and adds a photo; the correction links to revision 1.
    let revision = phone
        .resubmit_visit_with_photos(&visit_id, &[test_photo("gps_DSCN0012.jpg")], |visit| {
            visit.observed_situation = "户主在家，本季度务工收入增加约3000元。".into();
        })
        .expect("fix");
    assert_eq!(revision, 2);
    phone.sync().await.expect("sync");
    assert!(phone.tasks().expect("tasks").is_empty());

    let visit_json: serde_json::Value = get(
        &browser,
        &server,
        &format!("/console/api/visits/{visit_id}"),
    )
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(visit_json["revision"], 2);
    assert_eq!(visit_json["supersedes_revision"], 1);
    let correction = &visit_json["correction"];
    assert_eq!(correction["returned_revision"], 1);
    assert_eq!(correction["returned_state"], "superseded");
    assert_eq!(correction["note"], "请补充收入变化并补拍户主合影");
    assert_eq!(correction["reasons"][0]["field_label"], "生产生活情况");
    let changes = correction["changes"].as_array().expect("changes");
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0]["field"], "observed_situation");
    assert_eq!(changes[0]["old"], "户主在家，秋粮已收，两位老人身体尚可。");
    assert_eq!(changes[0]["new"], "户主在家，本季度务工收入增加约3000元。");
    assert_eq!(
        correction["photos_added"].as_array().expect("added").len(),
        1
    );
    assert_eq!(correction["photos_removed"], serde_json::json!([]));

    // The console page shows the diff with the reasons beside their fields.
    let page = get(&browser, &server, &format!("/console/visits/{visit_id}"))
        .await
        .text()
        .await
        .expect("html");
    assert!(page.contains(r#"id="correction""#));
    assert!(page.contains("整改对比"));
    assert!(page.contains("<del>户主在家，秋粮已收，两位老人身体尚可。</del>"));
    assert!(page.contains("<ins>户主在家，本季度务工收入增加约3000元。</ins>"));
    let diff_row = page
        .split(r#"<tr data-field="observed_situation">"#)
        .nth(1)
        .and_then(|rest| rest.split("</tr>").next())
        .expect("the observed_situation row");
    assert!(diff_row.contains("走访内容过于简单"), "{diff_row}");
    assert!(page.contains(r#"id="photos-added""#));
    assert!(page.contains("照片不清晰"));

    // And it is approved.
    let response = browser
        .post(format!(
            "{}/console/visits/{visit_id}/decision",
            server.url()
        ))
        .form(&[
            ("decision", "approve"),
            ("revision", "2"),
            (
                "content_hash",
                visit_json["content_hash"].as_str().expect("hash"),
            ),
        ])
        .send()
        .await
        .expect("approve");
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    phone.sync().await.expect("sync");
    assert_eq!(
        phone.visit(&visit_id).expect("read").expect("visit").state,
        fieldsync_client::VisitState::Approved
    );
}
