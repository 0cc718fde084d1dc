//! 季登记 from the phone, end to end with real parts: a real server with the demo county, a
//! real client core logged in as cadre01, two quarters (and a correction) registered while
//! offline, one sync, and the township supervisor sees them in the household page's JSON.
//! A second phone learns from its pull which quarters are registered, is refused a second
//! registration of one, and replaces it only as an explicit correction (更正), which then
//! reaches the first phone.

use fieldsync_client::{Client, ClientError, IncomeState};
use fieldsync_model::income::{IncomeComponents, IncomeRegistration};
use fieldsync_tests::{DEMO_PASSWORD, TestServer, console_login, unreachable_url};

const YEAR: i32 = 2025;

#[tokio::test]
async fn quarters_registered_offline_reach_the_household_page_after_one_sync() {
    let server = TestServer::start().await;
    let folder = tempfile::tempdir().expect("temp dir");
    let phone = Client::open(folder.path(), &server.url()).expect("open client");
    phone.login("cadre01", DEMO_PASSWORD).await.expect("login");
    phone.sync().await.expect("first sync");
    let household = phone
        .households()
        .expect("households")
        .into_iter()
        .find(|household| household.member_count > 0)
        .expect("cadre01 has a household with members");
    let size = u32::try_from(household.member_count).expect("size");

    // In the fields: no signal.
    phone
        .set_server_url(&unreachable_url().await)
        .expect("go offline");
    // Q3: 务工 3,200.50 + 养殖 1,800 − 饲料 600; Q4: 低保 900 + 分红 150.
    let first_q3 = phone
        .register_income(
            &household.household_id[..12],
            YEAR,
            3,
            IncomeComponents {
                wage_fen: 320_050,
                business_gross_fen: 180_000,
                business_cost_fen: 60_000,
                ..IncomeComponents::default()
            },
        )
        .expect("register Q3");
    let q4 = phone
        .register_income(
            &household.household_id,
            YEAR,
            4,
            IncomeComponents {
                transfer_fen: 90_000,
                property_fen: 15_000,
                ..IncomeComponents::default()
            },
        )
        .expect("register Q4");
    // The cadre notices a typo in Q3. Registering the quarter again is refused, saying
    // what is registered; the correction (更正) replaces it, and the latest one counts.
    let again = phone
        .register_income(
            &household.household_id,
            YEAR,
            3,
            IncomeComponents::default(),
        )
        .expect_err("Q3 is registered");
    match again {
        ClientError::IncomeAlreadyRegistered {
            year,
            quarter,
            net_fen,
            on_this_phone,
            ..
        } => assert_eq!(
            (year, quarter, net_fen, on_this_phone),
            (YEAR, 3, first_q3.net_fen, true)
        ),
        other => panic!("expected IncomeAlreadyRegistered, got {other:?}"),
    }
    assert!(again.to_string().contains("已登记"), "{again}");
    assert_eq!(phone.outbox().expect("outbox").len(), 2, "nothing queued");
    let q3 = phone
        .correct_income(
            &household.household_id,
            YEAR,
            3,
            IncomeComponents {
                wage_fen: 320_050,
                business_gross_fen: 180_000,
                business_cost_fen: 65_000,
                ..IncomeComponents::default()
            },
        )
        .expect("correct Q3");
    assert_eq!(
        first_q3.household_id, household.household_id,
        "prefix resolved"
    );
    assert_eq!(q3.household_size, size);
    let offline = phone.sync().await.expect_err("offline");
    assert!(offline.is_unavailable(), "{offline:?}");
    assert_eq!(phone.outbox().expect("outbox").len(), 3, "kept offline");

    // Back in signal.
    phone.set_server_url(&server.url()).expect("go online");
    let report = phone.sync().await.expect("sync");
    assert_eq!(report.mutations_applied, 3, "{report:?}");
    assert!(report.rejected.is_empty(), "{report:?}");
    assert!(phone.outbox().expect("outbox").is_empty());
    let local = phone
        .income_registrations(Some(&household.household_id))
        .expect("local registrations");
    assert_eq!(local.len(), 3);
    assert!(local.iter().all(|row| row.state == IncomeState::Sent));

    // The township supervisor's household page (JSON twin).
    let supervisor = console_login(&server, "township1").await;
    let response = supervisor
        .get(format!(
            "{}/console/api/households/{}",
            server.url(),
            household.household_id
        ))
        .send()
        .await
        .expect("api");
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let json: serde_json::Value = response.json().await.expect("json");
    let year = json["income"]
        .as_array()
        .expect("income years")
        .iter()
        .find(|year| year["annual"]["year"] == YEAR)
        .unwrap_or_else(|| panic!("{YEAR} is listed: {}", json["income"]))
        .clone();
    let quarters = year["annual"]["quarters"].as_array().expect("quarters");
    let ids: Vec<(&str, u64)> = quarters
        .iter()
        .map(|quarter| {
            (
                quarter["registration_id"].as_str().expect("id"),
                quarter["quarter"].as_u64().expect("quarter"),
            )
        })
        .collect();
    assert_eq!(
        ids,
        vec![
            (q3.registration_id.as_str(), 3),
            (q4.registration_id.as_str(), 4)
        ],
        "the correction replaced the first Q3"
    );
    assert_eq!(quarters[0]["components"]["wage_fen"], 320_050);
    assert_eq!(quarters[0]["components"]["business_cost_fen"], 65_000);
    assert_eq!(quarters[0]["net_fen"], q3.net_fen);
    assert_eq!(quarters[0]["net_fen"], 435_050);
    assert_eq!(quarters[1]["net_fen"], 105_000);
    assert_eq!(quarters[1]["household_size"], size);
    // 年汇总: Q3 + Q4 = 540,050 fen, annualised × 4 / 2.
    assert_eq!(year["annual"]["net_fen"], 540_050);
    assert_eq!(year["annual"]["projected_net_fen"], 1_080_100);
}

/// Registrations by household for one quarter, as one phone's server view holds them.
fn server_view(phone: &Client, household_id: &str) -> Vec<(u32, String, i64)> {
    phone
        .server_income_registrations(Some(household_id))
        .expect("server view")
        .into_iter()
        .filter(|registration| registration.year == YEAR)
        .map(|registration| {
            (
                registration.quarter,
                registration.registration_id,
                registration.net_fen,
            )
        })
        .collect()
}

#[tokio::test]
async fn a_second_phone_sees_registered_quarters_and_replaces_one_only_as_a_correction() {
    let server = TestServer::start().await;
    let first_folder = tempfile::tempdir().expect("temp dir");
    let first = Client::open(first_folder.path(), &server.url()).expect("open first");
    first.login("cadre01", DEMO_PASSWORD).await.expect("login");
    first.sync().await.expect("first sync");
    let household_id = first
        .households()
        .expect("households")
        .into_iter()
        .find(|household| household.member_count > 0)
        .expect("a household with members")
        .household_id;
    assert!(
        server_view(&first, &household_id).is_empty(),
        "the tour households start without {YEAR} registrations"
    );
    let q1 = first
        .register_income(
            &household_id,
            YEAR,
            1,
            IncomeComponents {
                wage_fen: 250_000,
                ..IncomeComponents::default()
            },
        )
        .expect("register Q1");
    first.sync().await.expect("send Q1");
    // The pull after the push brings the phone's own registration back as the server's.
    assert_eq!(
        server_view(&first, &household_id),
        vec![(1, q1.registration_id.clone(), 250_000)]
    );

    // The cadre's replacement phone (or the second helper's): a fresh install, one sync.
    let second_folder = tempfile::tempdir().expect("temp dir");
    let second = Client::open(second_folder.path(), &server.url()).expect("open second");
    second.login("cadre01", DEMO_PASSWORD).await.expect("login");
    second.sync().await.expect("second phone's first sync");
    assert_eq!(
        server_view(&second, &household_id),
        vec![(1, q1.registration_id.clone(), 250_000)],
        "the second phone knows Q1 is registered"
    );
    let refused = second
        .register_income(
            &household_id,
            YEAR,
            1,
            IncomeComponents {
                wage_fen: 260_000,
                ..IncomeComponents::default()
            },
        )
        .expect_err("Q1 is registered by the other phone");
    match &refused {
        ClientError::IncomeAlreadyRegistered {
            net_fen,
            on_this_phone,
            ..
        } => assert_eq!((*net_fen, *on_this_phone), (250_000, false)),
        other => panic!("expected IncomeAlreadyRegistered, got {other:?}"),
    }
    assert!(refused.to_string().contains("其他设备登记"), "{refused}");
    assert!(
        second.outbox().expect("outbox").is_empty(),
        "nothing queued"
    );
    // Another quarter is free to register; the correction of Q1 is explicit.
    second
        .register_income(
            &household_id,
            YEAR,
            2,
            IncomeComponents {
                transfer_fen: 30_000,
                ..IncomeComponents::default()
            },
        )
        .expect("Q2 is free");
    let corrected = second
        .correct_income(
            &household_id,
            YEAR,
            1,
            IncomeComponents {
                wage_fen: 260_000,
                ..IncomeComponents::default()
            },
        )
        .expect("correct Q1");
    let report = second.sync().await.expect("send");
    assert_eq!(report.mutations_applied, 2, "{report:?}");

    // The first phone's next sync shows the correction in force, not its own Q1.
    first.sync().await.expect("first phone syncs again");
    let view = server_view(&first, &household_id);
    assert_eq!(view.len(), 2, "{view:?}");
    assert_eq!(view[0], (1, corrected.registration_id.clone(), 260_000));
    assert_eq!(view[1].0, 2);
    match first.register_income(&household_id, YEAR, 1, IncomeComponents::default()) {
        Err(ClientError::IncomeAlreadyRegistered {
            net_fen,
            on_this_phone,
            ..
        }) => assert_eq!((net_fen, on_this_phone), (260_000, false)),
        other => panic!("expected IncomeAlreadyRegistered, got {other:?}"),
    }
}

/// The year's entry of the township supervisor's household page JSON.
async fn supervisor_year(server: &TestServer, household_id: &str) -> serde_json::Value {
    let supervisor = console_login(server, "township1").await;
    let json: serde_json::Value = supervisor
        .get(format!(
            "{}/console/api/households/{household_id}",
            server.url()
        ))
        .send()
        .await
        .expect("api")
        .json()
        .await
        .expect("json");
    json["income"]
        .as_array()
        .expect("income years")
        .iter()
        .find(|year| year["annual"]["year"] == YEAR)
        .unwrap_or_else(|| panic!("{YEAR} is listed: {}", json["income"]))
        .clone()
}

/// Both phones out of signal register `quarter` (first, then second), so neither can know
/// of the other's entry; then both come back and sync, the first phone's push arriving first.
async fn register_on_both_offline(
    server: &TestServer,
    phones: [&Client; 2],
    household_id: &str,
    quarter: u32,
    figures: [IncomeComponents; 2],
) -> (IncomeRegistration, IncomeRegistration) {
    let offline = unreachable_url().await;
    let mut registered = Vec::new();
    for (phone, components) in phones.into_iter().zip(figures) {
        phone.set_server_url(&offline).expect("offline");
        registered.push(
            phone
                .register_income(household_id, YEAR, quarter, components)
                .expect("registered offline"),
        );
    }
    for phone in phones {
        phone.set_server_url(&server.url()).expect("online");
        phone.sync().await.expect("sync");
    }
    let second = registered.pop().expect("two registrations");
    let first = registered.pop().expect("two registrations");
    (first, second)
}

#[tokio::test]
async fn two_phones_disagreeing_on_a_quarter_are_shown_until_corrected_or_settled() {
    let server = TestServer::start().await;
    let (first_folder, second_folder) = (
        tempfile::tempdir().expect("temp dir"),
        tempfile::tempdir().expect("temp dir"),
    );
    let first = Client::open(first_folder.path(), &server.url()).expect("open first");
    let second = Client::open(second_folder.path(), &server.url()).expect("open second");
    for phone in [&first, &second] {
        phone.login("cadre01", DEMO_PASSWORD).await.expect("login");
        phone.sync().await.expect("first sync");
    }
    let household_id = first
        .households()
        .expect("households")
        .into_iter()
        .find(|household| household.member_count > 0)
        .expect("a household with members")
        .household_id;
    let wages = |wage_fen| IncomeComponents {
        wage_fen,
        ..IncomeComponents::default()
    };
    let (from_first, from_second) = register_on_both_offline(
        &server,
        [&first, &second],
        &household_id,
        1,
        [wages(200_000), wages(260_000)],
    )
    .await;

    // The later arrival is in force, and the supervisor sees that it replaced the other
    // without knowing of it.
    let year = supervisor_year(&server, &household_id).await;
    let quarters = year["annual"]["quarters"].as_array().expect("quarters");
    assert_eq!(quarters.len(), 1);
    assert_eq!(quarters[0]["registration_id"], from_second.registration_id);
    let replacements = year["unannounced_replacements"]
        .as_array()
        .expect("replacements");
    assert_eq!(replacements.len(), 1, "{year}");
    assert_eq!(
        replacements[0]["replaced"]["registration_id"],
        from_first.registration_id
    );
    assert_eq!(
        replacements[0]["by"]["registration_id"],
        from_second.registration_id
    );
    let supervisor = console_login(&server, "township1").await;
    let page = supervisor
        .get(format!(
            "{}/console/households/{household_id}",
            server.url()
        ))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(page.contains("两份登记互不知情"), "the page warns");
    assert!(
        page.contains("2,600.00") && page.contains("2,000.00"),
        "both figures"
    );

    // The first phone learns of the other entry at its next sync and corrects the quarter
    // on purpose: the correction names what it replaces, and the warning is gone.
    first.sync().await.expect("first phone pulls");
    assert!(matches!(
        first.register_income(&household_id, YEAR, 1, wages(230_000)),
        Err(ClientError::IncomeAlreadyRegistered {
            on_this_phone: false,
            ..
        })
    ));
    let corrected = first
        .correct_income(&household_id, YEAR, 1, wages(230_000))
        .expect("correct");
    assert_eq!(
        corrected.supersedes_registration_id.as_deref(),
        Some(from_second.registration_id.as_str())
    );
    first.sync().await.expect("send the correction");
    let year = supervisor_year(&server, &household_id).await;
    assert_eq!(
        year["annual"]["quarters"][0]["registration_id"],
        corrected.registration_id
    );
    assert_eq!(
        year["unannounced_replacements"],
        serde_json::json!([]),
        "{year}"
    );

    // Q2: the two phones disagree again; this time the township supervisor settles it in
    // the console, keeping the first phone's figures, and both phones receive the choice.
    let (q2_first, q2_second) = register_on_both_offline(
        &server,
        [&first, &second],
        &household_id,
        2,
        [wages(150_000), wages(175_000)],
    )
    .await;
    let year = supervisor_year(&server, &household_id).await;
    assert_eq!(
        year["unannounced_replacements"][0]["by"]["registration_id"],
        q2_second.registration_id
    );
    // Only the township supervisor settles: the county admin is refused and nothing changes.
    let county = console_login(&server, "county").await;
    let refused = county
        .post(format!(
            "{}/console/api/households/{household_id}/income/settle",
            server.url()
        ))
        .json(&serde_json::json!({ "registration_id": q2_first.registration_id }))
        .send()
        .await
        .expect("county tries");
    assert_eq!(refused.status(), reqwest::StatusCode::FORBIDDEN);
    let page = supervisor
        .get(format!(
            "{}/console/households/{household_id}",
            server.url()
        ))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(
        page.contains("以先到的一份为准"),
        "the supervisor can settle"
    );
    let settled = supervisor
        .post(format!(
            "{}/console/households/{household_id}/income/settle",
            server.url()
        ))
        .form(&[("registration_id", q2_first.registration_id.as_str())])
        .send()
        .await
        .expect("settle");
    assert_eq!(settled.status(), reqwest::StatusCode::SEE_OTHER);
    let year = supervisor_year(&server, &household_id).await;
    assert_eq!(
        year["unannounced_replacements"],
        serde_json::json!([]),
        "{year}"
    );
    let q2 = year["annual"]["quarters"]
        .as_array()
        .expect("quarters")
        .iter()
        .find(|quarter| quarter["quarter"] == 2)
        .expect("Q2")
        .clone();
    assert_eq!(q2["components"]["wage_fen"], 150_000, "{q2}");
    // Settling again has nothing left to settle: a typed refusal.
    let again = supervisor
        .post(format!(
            "{}/console/api/households/{household_id}/income/settle",
            server.url()
        ))
        .json(&serde_json::json!({ "registration_id": q2_second.registration_id }))
        .send()
        .await
        .expect("settle again");
    assert_eq!(again.status(), reqwest::StatusCode::CONFLICT);
    second.sync().await.expect("second phone pulls the choice");
    let in_force = second
        .server_income_registrations(Some(&household_id))
        .expect("server view")
        .into_iter()
        .find(|registration| registration.year == YEAR && registration.quarter == 2)
        .expect("Q2 on the phone");
    assert_eq!(in_force.components.wage_fen, 150_000);
}
