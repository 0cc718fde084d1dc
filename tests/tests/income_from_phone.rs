//! 季登记 from the phone, end to end with real parts: a real server with the demo county, a
//! real client core logged in as cadre01, two quarters (and a correction) registered while
//! offline, one sync, and the township supervisor sees them in the household page's JSON.

use fieldsync_client::{Client, IncomeState};
use fieldsync_model::income::IncomeComponents;
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
    // The cadre notices a typo in Q3 and registers it again: the latest one counts.
    let q3 = phone
        .register_income(
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
