//! Ledger exports (台账导出) end to end: a real server with the demo county, visits and income
//! registrations stored through the real store, exports downloaded over real HTTP by each
//! role and read back with calamine (XLSX) and the csv crate (CSV): headers, row counts,
//! totals against the store, masking per role, scope, the audited full export with its hash
//! chain, and typed errors for bad parameters.

use std::io::Cursor;

use calamine::{Data, Reader, Xlsx, open_workbook_from_rs};
use fieldsync_model::codes::{Role, VisitMode, VisitType};
use fieldsync_model::evidence::EvidenceFlag;
use fieldsync_model::income::{IncomeComponents, IncomeRegistration, latest_per_quarter};
use fieldsync_model::sync::MutationPayload;
use fieldsync_model::visit::{Visit, WellbeingCheck};
use fieldsync_proto::v1;
use fieldsync_server::demo::DEMO_COUNTY_ID;
use fieldsync_server::store::{
    HouseholdPairings, PairingFilter, PushAction, PushBatch, PushEntry, SeedData, UserRecord,
};
use fieldsync_tests::{DEMO_PASSWORD, TestServer, console_login};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use time::macros::datetime;

/// 10 March 2026, 10:00 Beijing.
const MARCH_VISIT: time::OffsetDateTime = datetime!(2026-03-10 02:00 UTC);

const VISIT_HEADERS: [&str; 18] = [
    "乡镇",
    "村",
    "户编号",
    "户主",
    "户主身份证号",
    "联系电话",
    "帮扶干部",
    "干部电话",
    "走访日期",
    "签到时间",
    "走访方式",
    "是否入户",
    "走访内容",
    "审核状态",
    "审核人",
    "审核时间",
    "核验提示",
    "照片数",
];

/// The demo county's townships, in id order.
async fn townships(server: &TestServer) -> Vec<String> {
    let mut ids: Vec<String> = server
        .state
        .store
        .list_areas(Some(DEMO_COUNTY_ID))
        .await
        .expect("areas")
        .into_iter()
        .map(|area| area.area_id)
        .collect();
    ids.sort();
    ids
}

/// The first `count` households of a township with exactly one primary cadre.
async fn paired_households(
    server: &TestServer,
    township_id: &str,
    count: usize,
) -> Vec<HouseholdPairings> {
    server
        .state
        .store
        .pairing_households(
            DEMO_COUNTY_ID,
            PairingFilter {
                township_id: Some(township_id.into()),
                ..PairingFilter::default()
            },
        )
        .await
        .expect("households")
        .into_iter()
        .filter(|row| row.primaries.len() == 1)
        .take(count)
        .collect()
}

fn visit_to(household_id: &str, mode: VisitMode) -> Visit {
    Visit {
        visit_id: uuid::Uuid::now_v7().to_string(),
        revision: 1,
        supersedes_revision: 0,
        household_id: household_id.into(),
        mode,
        exception_reason: (mode != VisitMode::InPerson)
            .then_some(fieldsync_model::codes::VisitExceptionReason::WorkingAway),
        visit_type: VisitType::Routine,
        checkin_at: MARCH_VISIT,
        checkout_at: MARCH_VISIT + time::Duration::minutes(40),
        observed_situation: "家中生产生活正常，养猪两头".into(),
        plan_progress: "产业帮扶资金已到位".into(),
        problems: String::new(),
        actions: "讲解医保报销政策".into(),
        needs: String::new(),
        policies_explained: vec!["医疗保障".into()],
        wellbeing: WellbeingCheck::default(),
        proposed_changes: Vec::new(),
        photo_ids: Vec::new(),
        gps: None,
        recorded_at_device: MARCH_VISIT + time::Duration::minutes(40),
    }
}

/// Store `payloads` as one batch of `cadre_user_id` (the real store, as a push would).
async fn store_batch(server: &TestServer, cadre_user_id: &str, payloads: Vec<MutationPayload>) {
    let batch_id = uuid::Uuid::now_v7().to_string();
    let entries = payloads
        .into_iter()
        .enumerate()
        .map(|(index, payload)| PushEntry {
            seq: index as u64 + 1,
            mutation_id: uuid::Uuid::now_v7().to_string(),
            hlc: index as u64 + 1,
            action: PushAction::Apply(payload),
        })
        .collect::<Vec<_>>();
    let count = entries.len();
    let result = server
        .state
        .store
        .apply_push(PushBatch {
            device_id: format!("phone-{batch_id}"),
            user_id: cadre_user_id.into(),
            fingerprint: hex::encode(Sha256::digest(batch_id.as_bytes())),
            batch_id,
            entries,
            received_at: MARCH_VISIT + time::Duration::hours(2),
        })
        .await
        .expect("store batch");
    assert_eq!(result.outcomes.len(), count);
    for (seq, outcome) in &result.outcomes {
        assert_eq!(
            *outcome,
            fieldsync_model::sync::MutationOutcome::Applied,
            "seq {seq} was not stored"
        );
    }
}

/// What the test stored, to compare the exports against.
struct Stored {
    township_one: String,
    township_one_heads: Vec<String>,
    township_two_heads: Vec<String>,
    /// Visit ids of township 1, and the one with a flag.
    township_one_visits: usize,
    flagged_visit_id: String,
    /// Income registrations of 2026 Q1 the test stored.
    county_income_rows: usize,
}

/// Three visits (one by phone) and three income registrations in township 1, two visits and
/// two registrations in township 2, all in March / Q1 2026; one evidence flag.
async fn store_ledger_data(server: &TestServer) -> Stored {
    let townships = townships(server).await;
    let (one, two) = (townships[0].clone(), townships[1].clone());
    let mut stored = Stored {
        township_one: one.clone(),
        township_one_heads: Vec::new(),
        township_two_heads: Vec::new(),
        township_one_visits: 0,
        flagged_visit_id: String::new(),
        county_income_rows: 0,
    };
    for (township, count) in [(&one, 3), (&two, 2)] {
        for (index, household) in paired_households(server, township, count)
            .await
            .into_iter()
            .enumerate()
        {
            let mode = if index == 1 {
                VisitMode::Phone
            } else {
                VisitMode::InPerson
            };
            let visit = visit_to(&household.household_id, mode);
            let registration = IncomeRegistration::new(
                uuid::Uuid::now_v7().to_string(),
                household.household_id.clone(),
                2026,
                1,
                3,
                IncomeComponents {
                    wage_fen: 300_000 + 12_345 * index as i64,
                    business_gross_fen: 100_000,
                    property_fen: 1_001,
                    transfer_fen: 90_000,
                    business_cost_fen: 40_000,
                },
            )
            .expect("valid registration");
            stored.county_income_rows += 1;
            store_batch(
                server,
                &household.primaries[0].0,
                vec![
                    MutationPayload::SubmitVisit(visit.clone()),
                    MutationPayload::RegisterIncome(registration),
                ],
            )
            .await;
            if township == &one {
                stored.township_one_heads.push(household.head_name.clone());
                stored.township_one_visits += 1;
                if index == 0 {
                    server
                        .state
                        .store
                        .save_visit_flags(&visit.visit_id, 1, vec![EvidenceFlag::GpsMissing])
                        .await
                        .expect("flag");
                    stored.flagged_visit_id = visit.visit_id.clone();
                }
            } else {
                stored.township_two_heads.push(household.head_name.clone());
            }
        }
    }
    stored
}

async fn download(
    browser: &reqwest::Client,
    server: &TestServer,
    path_and_query: &str,
) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let response = browser
        .get(format!("{}{path_and_query}", server.url()))
        .send()
        .await
        .expect("export request");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await.expect("body").to_vec();
    (status, headers, body)
}

/// The sheet as rows of text (numbers printed plainly).
fn xlsx_rows(bytes: &[u8]) -> Vec<Vec<Data>> {
    let mut workbook: Xlsx<_> = open_workbook_from_rs(Cursor::new(bytes.to_vec())).expect("xlsx");
    let range = workbook.worksheet_range("台账").expect("sheet 台账");
    range.rows().map(<[Data]>::to_vec).collect()
}

fn text(cell: &Data) -> String {
    match cell {
        Data::String(text) => text.clone(),
        Data::Empty => String::new(),
        other => other.to_string(),
    }
}

fn headers(rows: &[Vec<Data>]) -> Vec<String> {
    rows[1].iter().map(text).collect()
}

fn csv_records(bytes: &[u8]) -> (Vec<String>, Vec<Vec<String>>) {
    let bom = "\u{feff}".as_bytes();
    assert!(bytes.starts_with(bom), "CSV starts with a UTF-8 BOM");
    let mut reader = csv::Reader::from_reader(&bytes[bom.len()..]);
    let headers = reader
        .headers()
        .expect("headers")
        .iter()
        .map(str::to_owned)
        .collect();
    let rows = reader
        .records()
        .map(|record| record.expect("record").iter().map(str::to_owned).collect())
        .collect();
    (headers, rows)
}

/// Add an auditor (审计员) for the demo county.
async fn add_auditor(server: &TestServer) {
    server
        .state
        .store
        .load_seed(SeedData {
            users: vec![UserRecord {
                user_id: uuid::Uuid::now_v7().to_string(),
                username: "auditor".into(),
                display_name: "审计员".into(),
                password_hash: fieldsync_server::auth::hash_password(DEMO_PASSWORD).expect("hash"),
                role: Role::Auditor,
                area_id: DEMO_COUNTY_ID.into(),
                phone: String::new(),
                rank: None,
            }],
            ..SeedData::default()
        })
        .await
        .expect("add auditor");
}

#[tokio::test]
async fn the_township_visit_ledger_is_masked_scoped_and_reads_back_in_both_formats() {
    let server = TestServer::start().await;
    let stored = store_ledger_data(&server).await;
    let supervisor = console_login(&server, "township1").await;

    let (status, response_headers, body) = download(
        &supervisor,
        &server,
        "/console/exports/visits.xlsx?month=2026-03",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        response_headers[reqwest::header::CONTENT_DISPOSITION]
            .to_str()
            .expect("ascii")
            .starts_with("attachment;")
    );
    let rows = xlsx_rows(&body);
    let title = text(&rows[0][0]);
    assert!(
        title.contains("走访台账") && title.contains("2026年3月"),
        "{title}"
    );
    assert_eq!(headers(&rows), VISIT_HEADERS);
    let data = &rows[2..];
    assert_eq!(data.len(), stored.township_one_visits);
    for row in data {
        let id_number = text(&row[4]);
        assert!(
            id_number.len() == 18 && id_number.contains("********"),
            "masked ID: {id_number}"
        );
        let phone = text(&row[5]);
        assert!(phone.contains("****"), "masked phone: {phone}");
        assert!(
            stored.township_one_heads.contains(&text(&row[3])),
            "only township 1 households"
        );
    }
    assert!(
        data.iter()
            .all(|row| !stored.township_two_heads.contains(&text(&row[3]))),
        "another township's rows never appear"
    );
    let in_person = data.iter().filter(|row| text(&row[11]) == "是").count();
    assert_eq!(
        in_person,
        stored.township_one_visits - 1,
        "one visit by phone"
    );
    assert_eq!(
        data.iter().filter(|row| !text(&row[16]).is_empty()).count(),
        1,
        "the one flagged visit shows its flag"
    );

    let (status, _, body) = download(
        &supervisor,
        &server,
        "/console/exports/visits.csv?month=2026-03",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (csv_headers, csv_rows) = csv_records(&body);
    assert_eq!(csv_headers, VISIT_HEADERS);
    assert_eq!(csv_rows.len(), stored.township_one_visits);
    assert!(csv_rows.iter().all(|row| row[4].contains("********")));

    // The flags list has exactly the one stored flag.
    let (status, _, body) = download(
        &supervisor,
        &server,
        "/console/exports/flags.xlsx?month=2026-03",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let rows = xlsx_rows(&body);
    assert_eq!(rows.len(), 3, "title, header, one flag");
    assert_eq!(text(&rows[2][6]), "gps_missing");
    assert_eq!(text(&rows[2][9]), stored.flagged_visit_id);
}

/// What the store holds for 2026 Q1 in the county (the demo county may carry its own
/// registrations besides the test's): rows and the sum of 家庭纯收入 in fen.
async fn store_income_q1_2026(server: &TestServer) -> (usize, i64) {
    store_income_2026(server, Some(1)).await
}

/// Rows and net sum (fen) of 2026 (one quarter, or all): the registration in force per
/// household and quarter, by the model's rule (last registered wins) over the store's
/// arrival-ordered registrations of the county (`Store::area_income_registrations`).
async fn store_income_2026(server: &TestServer, quarter: Option<u32>) -> (usize, i64) {
    let registrations = server
        .state
        .store
        .area_income_registrations(DEMO_COUNTY_ID, 2026)
        .await
        .expect("registrations");
    let mut by_household: std::collections::BTreeMap<String, Vec<IncomeRegistration>> =
        std::collections::BTreeMap::new();
    for registration in registrations {
        by_household
            .entry(registration.household_id.clone())
            .or_default()
            .push(registration);
    }
    let (mut rows, mut net_fen) = (0, 0);
    for registrations in by_household.values() {
        for in_force in latest_per_quarter(registrations, 2026) {
            if quarter.is_none_or(|quarter| in_force.quarter == quarter) {
                rows += 1;
                net_fen += in_force.net_fen;
            }
        }
    }
    (rows, net_fen)
}

#[tokio::test]
async fn the_county_income_ledger_adds_up_to_what_the_store_holds() {
    let server = TestServer::start().await;
    let stored = store_ledger_data(&server).await;
    let admin = console_login(&server, "county").await;

    let (status, _, body) = download(
        &admin,
        &server,
        "/console/exports/income.xlsx?year=2026&quarter=1",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let rows = xlsx_rows(&body);
    let header = headers(&rows);
    let net_column = header
        .iter()
        .position(|name| name == "家庭纯收入(元)")
        .expect("net column");
    let data = &rows[2..rows.len() - 1];
    let (store_rows, store_net_fen) = store_income_q1_2026(&server).await;
    assert!(store_rows >= stored.county_income_rows);
    assert_eq!(data.len(), store_rows);
    let yuan = |cell: &Data| match cell {
        Data::Float(value) => *value,
        Data::Int(value) => *value as f64,
        other => panic!("not a number: {other:?}"),
    };
    let sum: f64 = data.iter().map(|row| yuan(&row[net_column])).sum();
    let expected = store_net_fen as f64 / 100.0;
    assert!((sum - expected).abs() < 0.005, "{sum} vs {expected}");
    let totals = rows.last().expect("totals row");
    assert_eq!(text(&totals[0]), "合计");
    assert!((yuan(&totals[net_column]) - expected).abs() < 0.005);
    // Masked by default, also for the county admin.
    assert!(data.iter().all(|row| text(&row[4]).contains("********")));

    let (status, _, body) =
        download(&admin, &server, "/console/exports/income.csv?year=2026").await;
    assert_eq!(status, StatusCode::OK);
    let (csv_headers, csv_rows) = csv_records(&body);
    assert_eq!(csv_headers, header);
    let csv_sum_fen: i64 = csv_rows
        .iter()
        .map(|row| {
            let (yuan, fen) = row[net_column].split_once('.').expect("two decimals");
            yuan.parse::<i64>().expect("yuan") * 100 + fen.parse::<i64>().expect("fen")
        })
        .sum();
    let (_, year_net_fen) = store_income_2026(&server, None).await;
    assert_eq!(csv_sum_fen, year_net_fen);
}

#[tokio::test]
async fn a_full_export_is_for_the_county_admin_only_and_is_audited_with_its_hash() {
    let server = TestServer::start().await;
    store_ledger_data(&server).await;
    add_auditor(&server).await;

    // The auditor gets masked values, and never full ones.
    let auditor = console_login(&server, "auditor").await;
    let (status, _, body) = download(
        &auditor,
        &server,
        "/console/exports/visits.xlsx?month=2026-03",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let rows = xlsx_rows(&body);
    assert!(rows.len() > 2);
    assert!(
        rows[2..]
            .iter()
            .all(|row| text(&row[4]).contains("********"))
    );
    let (status, _, _) = download(
        &auditor,
        &server,
        "/console/exports/visits.xlsx?month=2026-03&full=1",
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let supervisor = console_login(&server, "township1").await;
    let (status, _, _) = download(
        &supervisor,
        &server,
        "/console/exports/income.csv?year=2026&full=1",
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Refused exports leave no export record; the auditor's page views are recorded as such
    // (every page an auditor opens is audited, issue 12).
    let records = server
        .state
        .store
        .audit_records(0, 100)
        .await
        .expect("audit");
    assert!(
        records
            .iter()
            .all(|record| record.content.action == "auditor_view"),
        "refused requests leave no export record: {records:?}"
    );
    assert!(
        records
            .iter()
            .any(|record| record.content.subject.contains("full=1")),
        "the auditor's attempt is on record"
    );

    let admin = console_login(&server, "county").await;
    let (status, response_headers, body) = download(
        &admin,
        &server,
        "/console/exports/visits.xlsx?month=2026-03&full=1",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let rows = xlsx_rows(&body);
    let data = &rows[2..];
    assert!(
        data.iter().all(|row| {
            let id = text(&row[4]);
            id.len() == 18 && !id.contains('*')
        }),
        "full ID numbers"
    );
    assert!(data.iter().all(|row| !text(&row[5]).contains('*')));
    let file_sha256 = hex::encode(Sha256::digest(&body));
    assert_eq!(
        response_headers["x-fieldsync-sha256"]
            .to_str()
            .expect("ascii"),
        file_sha256
    );

    // A second full export extends the chain.
    let (status, _, csv_body) = download(
        &admin,
        &server,
        "/console/exports/income.csv?year=2026&quarter=1&full=1",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let records = server
        .state
        .store
        .audit_records(0, 100)
        .await
        .expect("audit");
    let records: Vec<_> = records
        .into_iter()
        .filter(|record| record.content.action != "auditor_view")
        .collect();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].content.file_sha256, file_sha256);
    assert_eq!(records[0].content.subject, "visits.xlsx");
    assert_eq!(records[0].content.filter, "month=2026-03");
    assert_eq!(records[0].content.row_count, data.len() as u64);
    assert_eq!(records[0].content.actor_role, "county");
    assert_eq!(
        records[1].content.file_sha256,
        hex::encode(Sha256::digest(&csv_body))
    );
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
}

#[tokio::test]
async fn bad_export_parameters_are_typed_errors() {
    let server = TestServer::start().await;
    let supervisor = console_login(&server, "township1").await;
    for (path, expected) in [
        (
            "/console/exports/visits.xlsx?month=2026-13",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/console/exports/visits.csv?month=march",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/console/exports/income.xlsx?year=2026&quarter=5",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/console/exports/income.xlsx?year=abc",
            StatusCode::BAD_REQUEST,
        ),
        // Outside the years a registration or threshold may be for (2000–2100).
        (
            "/console/exports/income.xlsx?year=2999",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/console/exports/visits.xlsx?month=2026-03&full=yes",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/console/exports/people.xlsx?month=2026-03",
            StatusCode::NOT_FOUND,
        ),
        (
            "/console/exports/visits.pdf?month=2026-03",
            StatusCode::NOT_FOUND,
        ),
    ] {
        let (status, _, body) = download(&supervisor, &server, path).await;
        assert_eq!(status, expected, "{path}");
        let page = String::from_utf8_lossy(&body);
        assert!(page.contains("<html"), "a Chinese error page for {path}");
    }
    // Not logged in: sent to the login page.
    let anonymous = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let (status, _, _) = download(&anonymous, &server, "/console/exports/visits.xlsx").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    // The page lists the exports.
    let (status, _, body) = download(&supervisor, &server, "/console/exports").await;
    assert_eq!(status, StatusCode::OK);
    let page = String::from_utf8(body).expect("utf-8");
    assert!(page.contains("走访台账") && page.contains("收入登记台账"));
    assert!(
        !page.contains("导出完整身份证号"),
        "only the county admin is offered full exports"
    );
}

#[tokio::test]
async fn the_coverage_export_lists_villages_and_cadres() {
    let server = TestServer::start().await;
    let stored = store_ledger_data(&server).await;
    let supervisor = console_login(&server, "township1").await;
    let (status, _, body) = download(
        &supervisor,
        &server,
        "/console/exports/coverage.xlsx?month=2026-03",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let rows = xlsx_rows(&body);
    assert_eq!(headers(&rows)[0], "统计口径");
    let villages = server
        .state
        .store
        .list_areas(Some(&stored.township_one))
        .await
        .expect("villages")
        .len();
    let by_village = rows[2..]
        .iter()
        .filter(|row| text(&row[0]) == "按村")
        .count();
    assert_eq!(by_village, villages);
    let totals = rows.last().expect("totals");
    assert_eq!(text(&totals[0]), "合计（按村）");
}

/// The Excel serial number of a Beijing date and time, as rust_xlsxwriter writes it.
fn excel_serial(year: u16, month: u8, day: u8, hour: u16, minute: u8) -> f64 {
    rust_xlsxwriter::ExcelDateTime::from_ymd(year, month, day)
        .and_then(|date| date.and_hms(hour, minute, 0))
        .expect("valid date")
        .to_excel()
}

#[tokio::test]
async fn visit_rows_are_sorted_typed_and_carry_content_and_reviewer() {
    let server = TestServer::start().await;
    let township = townships(&server).await[0].clone();
    let households = paired_households(&server, &township, 2).await;
    // The first household's three visits are stored latest first, so storage order (and
    // visit id order) is the reverse of visit time; the second household has one.
    let times = [
        MARCH_VISIT + time::Duration::days(2) + time::Duration::hours(4),
        MARCH_VISIT,
        MARCH_VISIT + time::Duration::days(1),
    ];
    let mut first_visits = Vec::new();
    for checkin in times {
        let mut visit = visit_to(&households[0].household_id, VisitMode::InPerson);
        visit.checkin_at = checkin;
        visit.checkout_at = checkin + time::Duration::minutes(40);
        visit.recorded_at_device = visit.checkout_at;
        store_batch(
            &server,
            &households[0].primaries[0].0,
            vec![MutationPayload::SubmitVisit(visit.clone())],
        )
        .await;
        first_visits.push(visit);
    }
    let mut other = visit_to(&households[1].household_id, VisitMode::InPerson);
    other.observed_situation = format!("{}。{}", "房屋安全，".repeat(20), "结尾");
    store_batch(
        &server,
        &households[1].primaries[0].0,
        vec![MutationPayload::SubmitVisit(other)],
    )
    .await;

    // The supervisor approves the earliest visit over gRPC.
    let (token, mut review) = server.review_as("township1").await;
    let earliest = &first_visits[1];
    let detail = review
        .get_visit(fieldsync_tests::authorized(
            v1::GetVisitRequest {
                visit_id: earliest.visit_id.clone(),
            },
            &token,
        ))
        .await
        .expect("visit")
        .into_inner();
    review
        .decide(fieldsync_tests::authorized(
            v1::DecideRequest {
                visit_id: earliest.visit_id.clone(),
                revision: 1,
                content_hash: detail.content_hash,
                decision: v1::Decision::Approve as i32,
                ..Default::default()
            },
            &token,
        ))
        .await
        .expect("approve");

    let supervisor = console_login(&server, "township1").await;
    let (status, _, body) = download(
        &supervisor,
        &server,
        "/console/exports/visits.xlsx?month=2026-03",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let rows = xlsx_rows(&body);
    assert_eq!(headers(&rows), VISIT_HEADERS);
    let data = &rows[2..];
    assert_eq!(data.len(), 4);

    // Sorted by village, household, then visit time: each household's rows are together
    // and in time order; the first household's three rows run 10, 11, 12 March.
    let numbers: Vec<String> = data.iter().map(|row| text(&row[2])).collect();
    let mut seen: Vec<&String> = Vec::new();
    for (index, number) in numbers.iter().enumerate() {
        if index > 0 && &numbers[index - 1] != number {
            assert!(
                !seen.contains(&number),
                "households are contiguous: {numbers:?}"
            );
        }
        seen.push(number);
    }
    let serial = |cell: &Data| match cell {
        Data::DateTime(at) => {
            assert!(
                at.is_datetime(),
                "a date/time cell, not a duration: {cell:?}"
            );
            at.as_f64()
        }
        other => panic!("a real date or time cell, got {other:?}"),
    };
    let first_rows: Vec<&Vec<Data>> = data
        .iter()
        .filter(|row| text(&row[3]) == households[0].head_name)
        .collect();
    assert_eq!(first_rows.len(), 3);
    let instants: Vec<f64> = first_rows
        .iter()
        .map(|row| serial(&row[8]) + serial(&row[9]))
        .collect();
    assert_eq!(
        instants,
        vec![
            excel_serial(2026, 3, 10, 10, 0),
            excel_serial(2026, 3, 11, 10, 0),
            excel_serial(2026, 3, 12, 14, 0),
        ],
        "date cells plus time cells, in visit-time order"
    );
    // The date cell is a whole day, the time cell a fraction of one.
    assert_eq!(serial(&first_rows[0][8]), excel_serial(2026, 3, 10, 0, 0));
    assert!((serial(&first_rows[0][9]) - 10.0 / 24.0).abs() < 1e-9);

    // 走访内容, 审核人, 审核时间: the approved row has a reviewer and a date-time; the others
    // are blank.
    assert_eq!(text(&first_rows[0][12]), "家中生产生活正常，养猪两头");
    assert_eq!(text(&first_rows[0][13]), "已通过");
    assert!(!text(&first_rows[0][14]).is_empty(), "审核人 named");
    let decided = serial(&first_rows[0][15]);
    assert!(decided > excel_serial(2026, 1, 1, 0, 0), "{decided}");
    for row in &first_rows[1..] {
        assert_eq!(row[14], Data::Empty);
        assert_eq!(row[15], Data::Empty);
    }
    let long = data
        .iter()
        .find(|row| text(&row[3]) == households[1].head_name)
        .expect("the second household");
    let content = text(&long[12]);
    assert!(
        content.ends_with('…') && content.chars().count() == 61,
        "{content}"
    );

    // CSV: the same values as ISO text.
    let (_, _, body) = download(
        &supervisor,
        &server,
        "/console/exports/visits.csv?month=2026-03",
    )
    .await;
    let (csv_headers, csv_rows) = csv_records(&body);
    assert_eq!(csv_headers, VISIT_HEADERS);
    let first_csv: Vec<&Vec<String>> = csv_rows
        .iter()
        .filter(|row| row[3] == households[0].head_name)
        .collect();
    assert_eq!(
        first_csv
            .iter()
            .map(|row| format!("{} {}", row[8], row[9]))
            .collect::<Vec<_>>(),
        ["2026-03-10 10:00", "2026-03-11 10:00", "2026-03-12 14:00"]
    );
    assert_eq!(first_csv[0][15].len(), "2026-03-10 10:00".len());

    // The flags list's visit time is a real date-time too.
    server
        .state
        .store
        .save_visit_flags(&earliest.visit_id, 1, vec![EvidenceFlag::GpsMissing])
        .await
        .expect("flag");
    let (_, _, body) = download(
        &supervisor,
        &server,
        "/console/exports/flags.xlsx?month=2026-03",
    )
    .await;
    let rows = xlsx_rows(&body);
    assert_eq!(serial(&rows[2][5]), excel_serial(2026, 3, 10, 10, 0));
}
