//! Quarterly income (季登记), the projection flag, thresholds (标准线), the household page,
//! the printable 明白卡 and the 两不愁三保障 counts, end to end: a real server on port 0 with
//! the demo county, a cadre pushing income and visits over real gRPC (client-core has no
//! income API yet, so income goes through a raw `RegisterIncome` push as a phone would send
//! it), and supervisors and the county admin in the console over real HTTP.
//!
//! Income is registered for 2024, a year the demo county has no registrations for, so the
//! numbers on the pages are exactly the ones this test pushed.

use fieldsync_model::id_number;
use fieldsync_proto::v1;
use fieldsync_tests::{TestServer, console_login, pull_all, push_applied};
use reqwest::StatusCode;

const YEAR: i32 = 2024;

/// Push mutations from one phone as one batch and insist every one was applied.
async fn push(
    server: &TestServer,
    token: &str,
    device_id: &str,
    payloads: Vec<v1::mutation::Payload>,
) {
    push_applied(server, token, device_id, 1, payloads).await;
}

/// One quarter's income of `household_size` people, all wages, in fen.
fn quarter_income(
    household_id: &str,
    quarter: u32,
    household_size: u32,
    wage_fen: i64,
) -> v1::mutation::Payload {
    v1::mutation::Payload::RegisterIncome(v1::IncomeRegistration {
        registration_id: uuid::Uuid::now_v7().to_string(),
        household_id: household_id.into(),
        year: YEAR,
        quarter,
        household_size,
        wage_fen,
        ..Default::default()
    })
}

async fn get(browser: &reqwest::Client, server: &TestServer, path: &str) -> (StatusCode, String) {
    let response = browser
        .get(format!("{}{path}", server.url()))
        .send()
        .await
        .expect("get");
    let status = response.status();
    (status, response.text().await.expect("body"))
}

/// Members not removed: the household size the projection divides by.
async fn current_size(server: &TestServer, household_id: &str) -> u32 {
    let household = server
        .state
        .store
        .get_household(household_id)
        .await
        .expect("read")
        .expect("household exists");
    household.current_members().count() as u32
}

#[tokio::test]
async fn income_over_two_quarters_flags_the_household_below_the_line_on_every_page() {
    let server = TestServer::start().await;

    // The county admin sets 2024's monitoring line; a malformed form changes nothing.
    let county = console_login(&server, "county").await;
    let bad = county
        .post(format!("{}/console/thresholds", server.url()))
        .form(&[
            ("year", "2024"),
            ("region", "national"),
            ("poverty_line_yuan", "四千"),
            ("monitoring_line_yuan", ""),
        ])
        .send()
        .await
        .expect("bad post");
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert!(
        bad.text()
            .await
            .expect("body")
            .contains("poverty_line_yuan")
    );
    let elsewhere = county
        .post(format!("{}/console/thresholds", server.url()))
        .form(&[
            ("year", "2024"),
            ("region", "510000000000"),
            ("monitoring_line_yuan", "9000"),
        ])
        .send()
        .await
        .expect("other province");
    assert_eq!(
        elsewhere.status(),
        StatusCode::BAD_REQUEST,
        "another province is not this county's to set"
    );
    let before = server
        .state
        .store
        .income_thresholds()
        .await
        .expect("thresholds");
    assert!(
        before.iter().all(|row| row.year != YEAR),
        "nothing stored for 2024 by bad forms"
    );
    let saved = county
        .post(format!("{}/console/thresholds", server.url()))
        .form(&[
            ("year", "2024"),
            ("region", "national"),
            ("poverty_line_yuan", ""),
            ("monitoring_line_yuan", "7,000"),
            ("source_note", "测试"),
        ])
        .send()
        .await
        .expect("post");
    assert_eq!(saved.status(), StatusCode::SEE_OTHER);
    let (status, page) = get(&county, &server, "/console/thresholds").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("7,000") && page.contains("测试"),
        "the saved row is listed"
    );
    let supervisor = console_login(&server, "township1").await;
    let (status, _) = get(&supervisor, &server, "/console/thresholds").await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "thresholds are the county admin's"
    );

    // cadre01 registers two quarters for two of their households.
    let device = uuid::Uuid::now_v7().to_string();
    let token = server.login("cadre01", &device).await;
    let (households, _, _) = pull_all(server.channel().await, &token).await;
    assert!(households.len() >= 2, "cadre01 has households");
    let low = households[0].household_id.clone();
    let high = households[1].household_id.clone();
    let low_size = current_size(&server, &low).await;
    let high_size = current_size(&server, &high).await;
    // Per person and quarter: 1,700 yuan → 6,800 a year, below 7,000 × 1.1 = 7,700;
    // 2,000 yuan → 8,000 a year, above it.
    let low_quarter = i64::from(low_size) * 170_000;
    let high_quarter = i64::from(high_size) * 200_000;
    push(
        &server,
        &token,
        &device,
        vec![
            quarter_income(&low, 1, low_size, low_quarter),
            quarter_income(&low, 2, low_size, low_quarter),
            quarter_income(&high, 1, high_size, high_quarter),
            quarter_income(&high, 2, high_size, high_quarter),
        ],
    )
    .await;

    // JSON twin: the projection and the flag, naming the monitoring line.
    let year_of = |json: &serde_json::Value| -> serde_json::Value {
        json["income"]
            .as_array()
            .expect("income years")
            .iter()
            .find(|year| year["annual"]["year"] == YEAR)
            .expect("2024 is listed")
            .clone()
    };
    let low_json: serde_json::Value = supervisor
        .get(format!("{}/console/api/households/{low}", server.url()))
        .send()
        .await
        .expect("api")
        .json()
        .await
        .expect("json");
    let low_year = year_of(&low_json);
    assert_eq!(
        low_year["annual"]["quarters"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(low_year["annual"]["projected_per_capita_net_fen"], 680_000);
    assert_eq!(low_year["flag"]["line"]["kind"], "monitoring");
    assert_eq!(low_year["flag"]["line"]["yuan"], 7_000);
    assert_eq!(low_year["flag"]["threshold_fen"], 770_000);
    let high_json: serde_json::Value = supervisor
        .get(format!("{}/console/api/households/{high}", server.url()))
        .send()
        .await
        .expect("api")
        .json()
        .await
        .expect("json");
    let high_year = year_of(&high_json);
    assert_eq!(high_year["annual"]["projected_per_capita_net_fen"], 800_000);
    assert!(high_year["flag"].is_null(), "above line × 1.1: {high_year}");

    // The household page shows the quarters, the projection and the flag; everything
    // sensitive is masked.
    let (status, page) = get(&supervisor, &server, &format!("/console/households/{low}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("一季度") && page.contains("二季度"),
        "both quarters are listed"
    );
    assert!(page.contains("6,800.00"), "the projected per-capita income");
    assert!(
        page.contains("低于防止返贫监测线"),
        "the flag names the line"
    );
    assert!(page.contains("<svg"), "the inline chart");
    assert!(
        page.contains(&format!("/console/households/{low}/card")),
        "a 打印 link to the card"
    );
    let stored = server
        .state
        .store
        .get_household(&low)
        .await
        .expect("read")
        .expect("low");
    assert!(
        stored
            .current_members()
            .any(|member| member.id_number.len() == 18),
        "the masking checks below need members with ID numbers"
    );
    let cadre = server
        .state
        .store
        .find_user_by_username("cadre01")
        .await
        .expect("read")
        .expect("cadre01");
    for member in stored.current_members() {
        assert!(
            !page.contains(&member.id_number),
            "full ID number of {} leaked",
            member.name
        );
        // The digits the mask hides are the birth date: the page shows the year only.
        assert_eq!(member.birth_date.len(), 10, "{}", member.birth_date);
        assert!(
            !page.contains(&member.birth_date),
            "full birth date of {} beside the masked ID number",
            member.name
        );
        assert!(page.contains(&format!("{}年", &member.birth_date[..4])));
        assert!(
            page.contains(&id_number::mask(&member.id_number)),
            "masked ID number shown"
        );
    }
    assert!(
        stored.phone.len() >= 8 && cadre.phone.len() >= 8,
        "demo phones are real numbers"
    );
    assert!(!page.contains(&stored.phone), "household phone is masked");
    assert!(
        !page.contains(&cadre.phone),
        "cadre phone is masked on the household page"
    );
    let json_text = low_json.to_string();
    assert!(!json_text.contains(&cadre.phone) && !json_text.contains(&stored.phone));
    for member in stored.current_members() {
        assert!(!json_text.contains(&member.id_number));
        assert!(!json_text.contains(&member.birth_date));
    }
    let (_, high_page) = get(&supervisor, &server, &format!("/console/households/{high}")).await;
    assert!(high_page.contains("8,000.00") && high_page.contains("未低于预警线"));

    // The income page lists the flagged household first and links to both pages.
    let (status, income) = get(&supervisor, &server, "/console/income?year=2024").await;
    assert_eq!(status, StatusCode::OK);
    let low_at = income
        .find(&format!("/console/households/{low}"))
        .expect("low listed");
    let high_at = income
        .find(&format!("/console/households/{high}"))
        .expect("high listed");
    assert!(low_at < high_at, "flagged first");
    assert!(
        income.contains("预警 <strong class=\"bad\">1</strong> 户"),
        "exactly one flag"
    );
    let (status, _) = get(&supervisor, &server, "/console/income?year=20x4").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = get(&supervisor, &server, "/console/income?year=1899").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // The 明白卡: print CSS, no navigation, the cadre's phone in full, ID numbers masked.
    let (status, card) = get(
        &supervisor,
        &server,
        &format!("/console/households/{low}/card"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        card.contains("@media print") && card.contains("size: A4"),
        "print CSS"
    );
    assert!(card.contains("帮扶明白卡"));
    assert!(
        !card.contains("<header class=\"top\""),
        "no console navigation on the card"
    );
    assert!(
        card.contains(&cadre.phone),
        "the household can call its cadre"
    );
    for member in stored.current_members() {
        assert!(!card.contains(&member.id_number));
        assert!(!card.contains(&member.birth_date));
    }
    assert!(
        card.contains("6,800.00"),
        "income breakdown with the projection"
    );

    // Another township's supervisor gets 404, exactly as for an unknown id; a cadre gets 403.
    let other = console_login(&server, "township2").await;
    for path in [
        format!("/console/households/{low}"),
        format!("/console/households/{low}/card"),
        format!("/console/api/households/{low}"),
        "/console/households/no-such-household".to_owned(),
    ] {
        let (status, body) = get(&other, &server, &path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(!body.contains(&stored.head_name), "{path} leaks nothing");
    }
    let (_, other_income) = get(&other, &server, "/console/income?year=2024").await;
    assert!(
        !other_income.contains(&low),
        "township 2's income page lists none of township 1"
    );
    let (status, _) = get(&county, &server, &format!("/console/households/{low}")).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the county admin sees the whole county"
    );
    let cadre_browser = console_login(&server, "cadre01").await;
    let (status, _) = get(
        &cadre_browser,
        &server,
        &format!("/console/households/{low}"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

/// The number shown in the count cell that links to `href` (HTML-escaped `&`).
fn count_behind(page: &str, village_id: &str, item: &str) -> u32 {
    let href = format!("/console/wellbeing?village={village_id}&amp;item={item}\">");
    match page.find(&href) {
        Some(at) => page[at + href.len()..]
            .split('<')
            .next()
            .and_then(|digits| digits.trim().parse().ok())
            .expect("a number in the link"),
        None => 0,
    }
}

fn visit_with_unsafe_water(household_id: &str) -> v1::Visit {
    let now = time::OffsetDateTime::now_utc();
    let wire_now = fieldsync_proto::convert::instant_to_wire(now);
    v1::Visit {
        visit_id: uuid::Uuid::now_v7().to_string(),
        revision: 1,
        household_id: household_id.into(),
        mode: v1::VisitMode::InPerson as i32,
        r#type: v1::VisitType::Routine as i32,
        checkin_at: Some(fieldsync_proto::convert::instant_to_wire(
            now - time::Duration::minutes(40),
        )),
        checkout_at: Some(wire_now),
        observed_situation: "入户查看，水窖干涸，需到两公里外挑水。".into(),
        wellbeing: Some(v1::WellbeingCheck {
            drinking_water: v1::CheckResult::Fail as i32,
            food: v1::CheckResult::Pass as i32,
            ..Default::default()
        }),
        recorded_at_device: Some(wire_now),
        ..Default::default()
    }
}

#[tokio::test]
async fn wellbeing_counts_link_to_the_households_behind_them() {
    let server = TestServer::start().await;
    let supervisor = console_login(&server, "township1").await;
    let device = uuid::Uuid::now_v7().to_string();
    let token = server.login("cadre01", &device).await;
    let (households, _, _) = pull_all(server.channel().await, &token).await;
    let household = households.first().expect("cadre01 has households").clone();
    let village = household.village_id.clone();

    let (status, before) = get(&supervisor, &server, "/console/wellbeing").await;
    assert_eq!(status, StatusCode::OK);
    let water_before = count_behind(&before, &village, "drinking_water");
    assert_eq!(water_before, 0, "no visit has checked water yet");

    push(
        &server,
        &token,
        &device,
        vec![v1::mutation::Payload::SubmitVisit(visit_with_unsafe_water(
            &household.household_id,
        ))],
    )
    .await;

    let (_, after) = get(&supervisor, &server, "/console/wellbeing").await;
    assert_eq!(count_behind(&after, &village, "drinking_water"), 1);
    let (status, list) = get(
        &supervisor,
        &server,
        &format!("/console/wellbeing?village={village}&item=drinking_water"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list.matches("class=\"wellbeing-row\"").count(), 1);
    assert!(list.contains(&format!("data-household=\"{}\"", household.household_id)));
    assert!(list.contains("最近一次走访核查：饮水安全有保障不达标"));

    // Every count of the table links to exactly as many households as it shows.
    let uninsured = count_behind(&after, &village, "basic_medical");
    let (_, medical) = get(
        &supervisor,
        &server,
        &format!("/console/wellbeing?village={village}&item=basic_medical"),
    )
    .await;
    assert_eq!(
        medical.matches("class=\"wellbeing-row\"").count() as u32,
        uninsured
    );

    // The grand total of "any item" links to every failing household of the township.
    let marker = "href=\"/console/wellbeing?item=any\">";
    let at = after
        .find(marker)
        .expect("the any-item total links to its list");
    let any_total: usize = after[at + marker.len()..]
        .split('<')
        .next()
        .and_then(|digits| digits.trim().parse().ok())
        .expect("a number");
    let (_, any_list) = get(&supervisor, &server, "/console/wellbeing?item=any").await;
    assert_eq!(
        any_list.matches("class=\"wellbeing-row\"").count(),
        any_total
    );
    assert!(any_list.contains(&household.household_id));

    // The household page shows the failing item.
    let (_, page) = get(
        &supervisor,
        &server,
        &format!("/console/households/{}", household.household_id),
    )
    .await;
    assert!(page.contains("data-item=\"drinking_water\""));

    // Bad filters: an unknown item is a 400, another township's village a 404.
    let (status, _) = get(&supervisor, &server, "/console/wellbeing?item=water").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let township_two = server
        .state
        .store
        .find_user_by_username("township2")
        .await
        .expect("read")
        .expect("township2")
        .area_id;
    let foreign = server
        .state
        .store
        .households_in_area(&township_two)
        .await
        .expect("township 2")
        .first()
        .map(|household| household.village_id.clone())
        .expect("township 2 has households");
    let (status, _) = get(
        &supervisor,
        &server,
        &format!("/console/wellbeing?village={foreign}"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The county admin sees the same household counted in the county view.
    let county = console_login(&server, "county").await;
    let (_, county_page) = get(&county, &server, "/console/wellbeing").await;
    assert_eq!(count_behind(&county_page, &village, "drinking_water"), 1);
}

/// The 明白卡 is handed to the household: its 帮扶记录 lists approved visits only, never one
/// still awaiting review.
#[tokio::test]
async fn the_household_card_lists_approved_visits_only() {
    let server = TestServer::start().await;
    let device = uuid::Uuid::now_v7().to_string();
    let token = server.login("cadre01", &device).await;
    let (households, _, _) = pull_all(server.channel().await, &token).await;
    let household_id = households
        .first()
        .expect("cadre01 has households")
        .household_id
        .clone();
    let mut approved = visit_with_unsafe_water(&household_id);
    approved.actions = "协调村里送水，联系水利站修水窖。".into();
    let mut waiting = visit_with_unsafe_water(&household_id);
    waiting.actions = "尚待审核的帮扶内容。".into();
    push(
        &server,
        &token,
        &device,
        vec![
            v1::mutation::Payload::SubmitVisit(approved.clone()),
            v1::mutation::Payload::SubmitVisit(waiting.clone()),
        ],
    )
    .await;

    let card_path = format!("/console/households/{household_id}/card");
    let supervisor = console_login(&server, "township1").await;
    let (status, before) = get(&supervisor, &server, &card_path).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        !before.contains("尚待审核的帮扶内容"),
        "nothing approved yet"
    );
    assert!(!before.contains("协调村里送水"));
    assert!(before.contains("暂无审核通过的走访记录"));

    let (review_token, mut review) = server.review_as("township1").await;
    let detail = review
        .get_visit(fieldsync_tests::authorized(
            v1::GetVisitRequest {
                visit_id: approved.visit_id.clone(),
            },
            &review_token,
        ))
        .await
        .expect("visit")
        .into_inner();
    review
        .decide(fieldsync_tests::authorized(
            v1::DecideRequest {
                visit_id: approved.visit_id.clone(),
                revision: 1,
                content_hash: detail.content_hash,
                decision: v1::Decision::Approve as i32,
                ..Default::default()
            },
            &review_token,
        ))
        .await
        .expect("approve");

    let (_, card) = get(&supervisor, &server, &card_path).await;
    assert!(
        card.contains("协调村里送水"),
        "the approved visit is on the card"
    );
    assert!(
        !card.contains("尚待审核的帮扶内容"),
        "the visit awaiting review is not"
    );
    // The console's household page still shows both, with their states.
    let (_, page) = get(
        &supervisor,
        &server,
        &format!("/console/households/{household_id}"),
    )
    .await;
    assert!(page.contains(&approved.visit_id) && page.contains(&waiting.visit_id));
}
