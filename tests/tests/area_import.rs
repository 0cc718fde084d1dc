//! Area import (行政区划导入) end to end: a server whose store holds only the county and its
//! administrator (no demo seed) gets its townships and villages from an XLSX uploaded over
//! real HTTP with a console session; the existing roster import then puts households into
//! the imported villages, and a cadre is paired with one. Sabotaged files (bad codes,
//! duplicates, missing parents, level mismatches, a GBK CSV) are reported row by row and
//! store nothing; a dry run stores nothing; a failed apply stores nothing; a village left
//! out of a later file is reported and kept.

use std::collections::BTreeSet;

use fieldsync_model::access::ACTION_AREA_IMPORT;
use fieldsync_model::areas::{AreaEntry, AreaLevel};
use fieldsync_model::codes::{
    CodeList, Health, HouseholdAttribute, LabourCapacity, PovertyCause, Relation, Role, Schooling,
    Sex,
};
use fieldsync_model::id_number::check_character;
use fieldsync_server::store::{Area, SeedData, UserRecord};
use fieldsync_tests::multipart_file_body as multipart;
use fieldsync_tests::{DEMO_PASSWORD, TestServer, console_login, console_session, roster_headers};
use reqwest::StatusCode;
use serde_json::{Value, json};

const COUNTY: &str = "522731000000";
const ADMIN: &str = "county-admin";

/// The columns these files write (a subset of the template, in another order than it, as
/// hand-made sheets do).
const AREA_HEADERS: [&str; 11] = [
    "统计用区划代码",
    "名称",
    "层级",
    "上级区划代码",
    "中心点纬度",
    "中心点经度",
    "坐标系",
    "贫困村",
    "出列年份",
    "总户数",
    "建档立卡贫困户数",
];

type Row = Vec<String>;

fn area_row(cells: &[&str]) -> Row {
    let mut row: Row = cells.iter().map(|cell| (*cell).to_owned()).collect();
    row.resize(AREA_HEADERS.len(), String::new());
    row
}

/// The county's hierarchy: the county row, two townships, four villages with attributes.
fn county_rows() -> Vec<Row> {
    vec![
        area_row(&["522731000000", "示范县", "县"]),
        area_row(&["522731101000", "城关镇", "乡镇", "522731000000"]),
        area_row(&[
            "522731101201",
            "新寨村",
            "村",
            "522731101000",
            "26.4102",
            "107.4701",
            "GCJ-02",
            "贫困村",
            "2019",
            "412",
            "96",
        ]),
        area_row(&[
            "522731101202",
            "老寨村",
            "村",
            "522731101000",
            "26.4203",
            "107.4802",
            "GCJ-02",
            "非贫困村",
            "",
            "230",
            "12",
        ]),
        area_row(&["522731102000", "河东乡", "乡镇", "522731000000"]),
        area_row(&[
            "522731102201",
            "河东村",
            "村",
            "522731102000",
            "",
            "",
            "",
            "贫困村",
            "2020",
        ]),
        area_row(&["522731102202", "坪上村", "村", "522731102000"]),
    ]
}

/// A real XLSX of the rows with the code columns as text cells.
fn xlsx_of(rows: &[Row]) -> Vec<u8> {
    let mut workbook = rust_xlsxwriter::Workbook::new();
    let sheet = workbook.add_worksheet();
    for (position, header) in AREA_HEADERS.iter().enumerate() {
        sheet
            .write_string(0, position as u16, *header)
            .expect("header");
    }
    for (index, row) in rows.iter().enumerate() {
        for (position, text) in row.iter().enumerate() {
            if !text.is_empty() {
                sheet
                    .write_string(1 + index as u32, position as u16, text)
                    .expect("cell");
            }
        }
    }
    workbook.save_to_buffer().expect("xlsx")
}

/// A server holding only the county and its administrator (password [`DEMO_PASSWORD`]).
async fn bare_county() -> TestServer {
    let admin = UserRecord {
        user_id: uuid::Uuid::now_v7().to_string(),
        username: ADMIN.into(),
        display_name: "县管理员".into(),
        password_hash: fieldsync_server::auth::hash_password(DEMO_PASSWORD).expect("hash"),
        role: Role::County,
        area_id: COUNTY.into(),
        phone: String::new(),
        rank: None,
    };
    TestServer::start_with_seed(SeedData {
        areas: vec![Area {
            area_id: COUNTY.into(),
            name: "示范县".into(),
            level: "county".into(),
            parent_id: None,
            centre: None,
        }],
        users: vec![admin],
        ..SeedData::default()
    })
    .await
}

/// The JSON twin of an import (areas or roster), driven like a script would.
struct Importer<'a> {
    server: &'a TestServer,
    browser: reqwest::Client,
    /// `/console/api/areas/import` or `/console/api/import`.
    base: &'static str,
}

impl Importer<'_> {
    async fn upload(&self, file_name: &str, bytes: &[u8]) -> Result<Value, (StatusCode, Value)> {
        let (content_type, body) = multipart(file_name, bytes);
        let response = self
            .browser
            .post(format!("{}{}", self.server.url(), self.base))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .expect("upload");
        let status = response.status();
        let json: Value = response.json().await.expect("json");
        if status == StatusCode::ACCEPTED {
            Ok(json)
        } else {
            Err((status, json))
        }
    }

    /// The job once it stops running.
    async fn settled(&self, job_id: &str) -> Value {
        let url = format!("{}{}/{job_id}", self.server.url(), self.base);
        fieldsync_tests::settled_import_job(&self.browser, &url).await
    }

    async fn dry_run(&self, file_name: &str, bytes: &[u8]) -> Value {
        let job = self.upload(file_name, bytes).await.expect("accepted");
        let job = self.settled(job["job_id"].as_str().expect("id")).await;
        assert_eq!(job["phase"], "ready", "{job}");
        job
    }

    async fn apply(&self, job_id: &str) -> (StatusCode, Value) {
        let response = self
            .browser
            .post(format!("{}{}/{job_id}/apply", self.server.url(), self.base))
            .send()
            .await
            .expect("apply");
        (response.status(), response.json().await.expect("json"))
    }

    /// Dry run, apply, and the applied job.
    async fn import(&self, file_name: &str, bytes: &[u8]) -> Value {
        let job = self.dry_run(file_name, bytes).await;
        assert_eq!(
            job["preview"]["bad_rows"], 0,
            "{}",
            job["preview"]["issues"]
        );
        let job_id = job["job_id"].as_str().expect("id").to_owned();
        let (status, body) = self.apply(&job_id).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        let applied = self.settled(&job_id).await;
        assert_eq!(applied["phase"], "applied", "{applied}");
        applied
    }
}

async fn stored_areas(server: &TestServer) -> Vec<AreaEntry> {
    server
        .state
        .areas
        .county_areas(COUNTY)
        .await
        .expect("county areas")
}

async fn audit_actions(server: &TestServer) -> Vec<String> {
    server
        .state
        .store
        .audit_records(0, 100)
        .await
        .expect("audit")
        .into_iter()
        .map(|record| record.content.action)
        .collect()
}

/// Roster rows (template order, required columns filled) of one household of `size`
/// members in a village.
fn household_rows(number: &str, township: &str, village: &str, region: u32) -> Vec<Row> {
    let headers = roster_headers();
    let members = [
        ("王大山", Relation::Head, Sex::Male, "1965-03-02"),
        ("李秀英", Relation::Spouse, Sex::Female, "1967-11-20"),
    ];
    members
        .iter()
        .enumerate()
        .map(|(position, (name, relation, sex, birth))| {
            let parity = u32::from(*sex == Sex::Male);
            let sequence = (position as u32 * 2 + parity) % 1000;
            let body = format!("{region:06}{}{sequence:03}", birth.replace('-', ""));
            let id_number = format!("{body}{}", check_character(&body).expect("17 digits"));
            let mut row = vec![String::new(); headers.len()];
            let mut set = |header: &str, value: &str| {
                let position = headers
                    .iter()
                    .position(|candidate| *candidate == header)
                    .expect("a roster header");
                row[position] = value.to_owned();
            };
            set("户编号", number);
            set("乡镇", township);
            set("行政村", village);
            set("户主姓名", "王大山");
            set("户属性", HouseholdAttribute::ALL[0].label_zh());
            set("主要致贫原因", PovertyCause::ALL[0].label_zh());
            set("姓名", name);
            set("与户主关系", relation.label_zh());
            set("性别", sex.label_zh());
            set("证件号码", &id_number);
            set("出生日期", birth);
            set("健康状况", Health::ALL[0].label_zh());
            set("劳动技能", LabourCapacity::ALL[0].label_zh());
            set("在校生情况", Schooling::ALL[0].label_zh());
            row
        })
        .collect()
}

fn roster_csv(rows: &[Row]) -> Vec<u8> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(roster_headers()).expect("header");
    for row in rows {
        writer.write_record(row).expect("row");
    }
    writer.into_inner().expect("csv")
}

#[tokio::test]
async fn areas_then_households_then_pairings_on_a_county_that_starts_without_villages() {
    let server = bare_county().await;
    let browser = console_login(&server, ADMIN).await;
    let areas = Importer {
        server: &server,
        browser: browser.clone(),
        base: "/console/api/areas/import",
    };

    // The county admin sees the new pages in the navigation; nothing is imported yet.
    let page = browser
        .get(format!("{}/console/areas", server.url()))
        .send()
        .await
        .expect("areas page");
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().await.expect("html");
    assert!(page.contains(r#"href="/console/areas""#) && page.contains("尚未导入乡镇和行政村"));

    // The template downloads as a workbook whose first header is the code.
    let template = browser
        .get(format!(
            "{}/console/areas/import/template.xlsx",
            server.url()
        ))
        .send()
        .await
        .expect("template");
    assert_eq!(template.status(), StatusCode::OK);
    assert!(
        template
            .bytes()
            .await
            .expect("bytes")
            .starts_with(b"PK\x03\x04")
    );

    // Dry run: everything is new, nothing is stored yet.
    let file = xlsx_of(&county_rows());
    let job = areas.dry_run("示范县行政区划.xlsx", &file).await;
    let preview = &job["preview"];
    assert_eq!(preview["bad_rows"], 0, "{}", preview["issues"]);
    assert_eq!(preview["data_rows"], 7);
    assert_eq!(preview["new_townships"], 2);
    assert_eq!(preview["new_villages"], 4);
    assert_eq!(preview["unchanged_rows"], 1, "the county row itself");
    assert_eq!(preview["crs"], "GCJ-02");
    assert_eq!(job["can_apply"], true);
    assert_eq!(
        stored_areas(&server).await.len(),
        1,
        "a dry run stores nothing"
    );

    let (status, _) = areas.apply(job["job_id"].as_str().expect("id")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let applied = areas.settled(job["job_id"].as_str().expect("id")).await;
    assert_eq!(applied["phase"], "applied", "{applied}");
    assert_eq!(applied["run"]["areas_created"], 6);

    let stored = stored_areas(&server).await;
    let codes: Vec<&str> = stored.iter().map(|area| area.area_id.as_str()).collect();
    assert_eq!(
        codes,
        [
            "522731000000",
            "522731101000",
            "522731101201",
            "522731101202",
            "522731102000",
            "522731102201",
            "522731102202"
        ]
    );
    let xinzhai = &stored[2];
    assert_eq!(xinzhai.level, AreaLevel::Village);
    assert_eq!(xinzhai.parent_id.as_deref(), Some("522731101000"));
    assert_eq!(xinzhai.attributes.is_poor_village, Some(true));
    assert_eq!(xinzhai.attributes.exit_year, Some(2019));
    assert_eq!(xinzhai.attributes.poor_households, Some(96));
    let centre = xinzhai.centre.expect("centre");
    assert_eq!((centre.lat, centre.lon), (26.4102, 107.4701));
    assert_eq!(audit_actions(&server).await, [ACTION_AREA_IMPORT]);

    // The same file again: no changes, nothing to apply.
    let again = areas.dry_run("示范县行政区划.xlsx", &file).await;
    assert_eq!(again["preview"]["no_changes"], true, "{again}");
    assert_eq!(again["can_apply"], false);
    let (status, _) = areas.apply(again["job_id"].as_str().expect("id")).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(stored_areas(&server).await, stored);
    assert_eq!(audit_actions(&server).await.len(), 1);

    // The roster import now finds the imported townships and villages by name.
    let roster = Importer {
        server: &server,
        browser: browser.clone(),
        base: "/console/api/import",
    };
    let mut rows = household_rows("522731101201001", "城关镇", "新寨村", 522_731);
    rows.extend(household_rows(
        "522731102201001",
        "河东乡",
        "河东村",
        522_732,
    ));
    let imported = roster.import("花名册.csv", &roster_csv(&rows)).await;
    assert_eq!(imported["run"]["households_created"], 2, "{imported}");
    let county = server
        .state
        .store
        .county_roster(COUNTY)
        .await
        .expect("roster");
    let places: BTreeSet<(String, String)> = county
        .households
        .iter()
        .map(|household| (household.township_id.clone(), household.village_id.clone()))
        .collect();
    assert_eq!(
        places,
        BTreeSet::from([
            ("522731101000".into(), "522731101201".into()),
            ("522731102000".into(), "522731102201".into()),
        ])
    );

    // A cadre of 城关镇 (through the Store API: the cadre roster import is another part of
    // issue 12) becomes the 第一帮扶责任人 of the 新寨村 household.
    let cadre = UserRecord {
        user_id: uuid::Uuid::now_v7().to_string(),
        username: "cadre-chengguan".into(),
        display_name: "张帮扶".into(),
        password_hash: fieldsync_server::auth::hash_password(DEMO_PASSWORD).expect("hash"),
        role: Role::Cadre,
        area_id: "522731101000".into(),
        phone: "13800000001".into(),
        rank: Some(fieldsync_model::codes::CadreRank::General),
    };
    server
        .state
        .store
        .load_seed(SeedData {
            users: vec![cadre.clone()],
            ..SeedData::default()
        })
        .await
        .expect("add the cadre");
    let household_id = county
        .households
        .iter()
        .find(|household| household.village_id == "522731101201")
        .expect("the 新寨村 household")
        .household_id
        .clone();
    let response = browser
        .post(format!("{}/console/api/pairings/assign", server.url()))
        .json(&json!({
            "household_id": household_id,
            "cadre_user_id": cadre.user_id,
            "confirm_over_quota": false,
        }))
        .send()
        .await
        .expect("assign");
    assert_eq!(response.status(), StatusCode::OK);
    let pairings: Value = browser
        .get(format!("{}/console/api/pairings", server.url()))
        .send()
        .await
        .expect("pairings")
        .json()
        .await
        .expect("json");
    let loaded = pairings["cadres"]
        .as_array()
        .expect("cadres")
        .iter()
        .find(|row| row["user_id"] == cadre.user_id.as_str())
        .expect("the cadre is listed")
        .clone();
    assert_eq!(loaded["primary_count"], 1, "{loaded}");

    // The hierarchy page lists what was imported, with the attributes in words.
    let page = browser
        .get(format!("{}/console/areas", server.url()))
        .send()
        .await
        .expect("areas page")
        .text()
        .await
        .expect("html");
    assert!(page.contains("河东乡") && page.contains("坪上村") && page.contains("非贫困村"));

    // 新寨村 becomes 新寨社区: its household's card (and so the phones) gets the new name.
    let mut renamed = county_rows();
    renamed[2][1] = "新寨社区".into();
    let applied = areas.import("更名.xlsx", &xlsx_of(&renamed)).await;
    assert_eq!(applied["run"]["areas_renamed"], 1, "{applied}");
    let county = server
        .state
        .store
        .county_roster(COUNTY)
        .await
        .expect("roster");
    let card = county
        .households
        .iter()
        .find(|household| household.household_id == household_id)
        .expect("the household");
    assert_eq!(card.village_name, "新寨社区");
}

/// (row, column, kind) of every issue in a preview.
fn issue_keys(preview: &Value) -> BTreeSet<(u64, String, String)> {
    preview["issues"]
        .as_array()
        .expect("issues")
        .iter()
        .map(|issue| {
            (
                issue["row_number"].as_u64().expect("row"),
                issue["column"].as_str().expect("column").to_owned(),
                issue["kind"].as_str().expect("kind").to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn sabotaged_area_files_are_reported_row_by_row_and_store_nothing() {
    let server = bare_county().await;
    let browser = console_login(&server, ADMIN).await;
    let areas = Importer {
        server: &server,
        browser,
        base: "/console/api/areas/import",
    };
    areas
        .import("行政区划.xlsx", &xlsx_of(&county_rows()))
        .await;
    let stored = stored_areas(&server).await;
    let audits = audit_actions(&server).await;

    // Sheet rows: header is row 1, so county_rows()[i] is row i + 2; the bad rows follow.
    let mut rows = county_rows();
    rows.push(area_row(&["52273110120", "短码村", "村"])); // row 9
    rows.push(area_row(&["522731101201", "重复村", "村"])); // row 10
    rows.push(area_row(&["522731109201", "孤村", "村", "522731109000"])); // row 11
    rows.push(area_row(&["522731102203", "错层村", "乡镇"])); // row 12
    rows.push(area_row(&["522732101201", "邻县村", "村"])); // row 13
    rows.push(area_row(&[
        "522731102204",
        "错上级村",
        "村",
        "522731101000",
    ])); // row 14
    rows.push(area_row(&[
        "522731102205",
        "百度村",
        "村",
        "",
        "26.4",
        "107.4",
        "BD-09",
    ])); // row 15
    let job = areas.dry_run("坏文件.xlsx", &xlsx_of(&rows)).await;
    let preview = &job["preview"];
    let expected: BTreeSet<(u64, String, String)> = [
        (9, "统计用区划代码", "bad_code"),
        (10, "统计用区划代码", "duplicate_code"),
        (11, "上级区划代码", "missing_parent"),
        (12, "层级", "level_mismatch"),
        (13, "统计用区划代码", "outside_county"),
        (14, "上级区划代码", "parent_mismatch"),
        (15, "坐标系", "bad_crs"),
    ]
    .into_iter()
    .map(|(row, column, kind)| (row, column.to_owned(), kind.to_owned()))
    .collect();
    assert_eq!(issue_keys(preview), expected, "{}", preview["issues"]);
    assert_eq!(preview["bad_rows"], 7);
    for issue in preview["issues"].as_array().expect("issues") {
        assert!(
            issue["reason"]
                .as_str()
                .is_some_and(|reason| !reason.is_empty())
                && issue["reason_en"]
                    .as_str()
                    .is_some_and(|reason| reason.starts_with("row ")),
            "a Chinese and an English reason: {issue}"
        );
    }
    assert_eq!(job["can_apply"], false);
    let (status, body) = areas.apply(job["job_id"].as_str().expect("id")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["error"].as_str().expect("message").contains("7行错误"));
    assert_eq!(stored_areas(&server).await, stored, "nothing changed");
    assert_eq!(audit_actions(&server).await, audits);

    // A GBK CSV is refused at upload with the advice, before any job exists.
    let gbk_csv = b"\xcd\xb3\xbc\xc6\xd3\xc3\xc7\xf8\xbb\xae\xb4\xfa\xc2\xeb,\xc3\xfb\xb3\xc6\n522731101203,\xd0\xc2\xb4\xe5\n";
    let (status, body) = areas
        .upload("gbk.csv", gbk_csv)
        .await
        .expect_err("GBK refused");
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"].as_str().expect("message").contains("GBK"),
        "{body}"
    );
    assert_eq!(stored_areas(&server).await, stored);

    // The HTML form refuses a post without the session's CSRF token.
    let session = console_session(&server, ADMIN).await;
    let (content_type, body) = multipart("行政区划.xlsx", &xlsx_of(&county_rows()));
    let response = session
        .http
        .post(format!("{}/console/areas/import", server.url()))
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .body(body)
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    // A later file without 坪上村 and with 新寨村 renamed: the rename is a change, the
    // missing village is reported, and after the apply it is still there.
    let mut later = county_rows();
    later.retain(|row| row[0] != "522731102202");
    later[2][1] = "新寨社区".into();
    let job = areas.dry_run("新版.xlsx", &xlsx_of(&later)).await;
    let preview = &job["preview"];
    assert_eq!(preview["bad_rows"], 0, "{}", preview["issues"]);
    assert_eq!(preview["renamed_areas"], 1);
    assert_eq!(preview["changes"][0]["old_value"], "新寨村");
    assert_eq!(preview["changes"][0]["new_value"], "新寨社区");
    assert_eq!(
        preview["missing"],
        json!([{ "area_id": "522731102202", "name": "坪上村", "level": "village" }])
    );
    let page = areas
        .browser
        .get(format!(
            "{}/console/areas/import/{}",
            server.url(),
            job["job_id"].as_str().expect("id")
        ))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(page.contains("文件中缺少的村") && page.contains("坪上村"));
    let (status, _) = areas.apply(job["job_id"].as_str().expect("id")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let applied = areas.settled(job["job_id"].as_str().expect("id")).await;
    assert_eq!(applied["run"]["areas_missing"], 1, "{applied}");
    let after = stored_areas(&server).await;
    assert!(
        after
            .iter()
            .any(|area| area.area_id == "522731102202" && area.name == "坪上村"),
        "a village missing from the file is never deleted"
    );
    assert!(after.iter().any(|area| area.name == "新寨社区"));
    assert_eq!(after.len(), stored.len());

    // A failed apply stores nothing: two previews add the same township, the first one
    // applied wins, the second fails as a whole (its other new village stays out too).
    let stored = after;
    let mut first = county_rows();
    first.push(area_row(&["522731103000", "新设镇", "乡镇"]));
    let mut second = first.clone();
    second.push(area_row(&["522731103201", "新设村", "村"]));
    let first_job = areas.dry_run("一.xlsx", &xlsx_of(&first)).await;
    let second_job = areas.dry_run("二.xlsx", &xlsx_of(&second)).await;
    let audits = audit_actions(&server).await;
    let (status, _) = areas.apply(first_job["job_id"].as_str().expect("id")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    areas
        .settled(first_job["job_id"].as_str().expect("id"))
        .await;
    let with_first = stored_areas(&server).await;
    assert_eq!(with_first.len(), stored.len() + 1);
    let (status, _) = areas
        .apply(second_job["job_id"].as_str().expect("id"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let failed = areas
        .settled(second_job["job_id"].as_str().expect("id"))
        .await;
    assert_eq!(failed["phase"], "failed", "{failed}");
    assert!(
        failed["error"]
            .as_str()
            .expect("error")
            .contains("未写入任何数据")
    );
    assert_eq!(stored_areas(&server).await, with_first);
    assert_eq!(audit_actions(&server).await.len(), audits.len() + 1);
}

#[tokio::test]
async fn other_roles_cannot_see_or_import_areas() {
    let server = TestServer::start().await;
    let supervisor = console_login(&server, "township1").await;
    for path in [
        "/console/areas",
        "/console/areas/import",
        "/console/api/areas",
    ] {
        let response = supervisor
            .get(format!("{}{path}", server.url()))
            .send()
            .await
            .expect("get");
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path}");
    }
    let (content_type, body) = multipart("行政区划.xlsx", &xlsx_of(&county_rows()));
    let response = supervisor
        .post(format!("{}/console/api/areas/import", server.url()))
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .body(body)
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_html_form_previews_and_applies_and_the_template_has_every_column() {
    let server = bare_county().await;
    let browser = console_login(&server, ADMIN).await;
    let areas = Importer {
        server: &server,
        browser: browser.clone(),
        base: "/console/api/areas/import",
    };

    // The template's header row is every template column, code first.
    let template = browser
        .get(format!(
            "{}/console/areas/import/template.xlsx",
            server.url()
        ))
        .send()
        .await
        .expect("template")
        .bytes()
        .await
        .expect("bytes");
    use calamine::Reader;
    let mut workbook: calamine::Xlsx<_> =
        calamine::Xlsx::new(std::io::Cursor::new(template.to_vec())).expect("a real xlsx");
    let sheet = workbook.worksheet_range("行政区划").expect("sheet");
    let headers: Vec<String> = sheet
        .rows()
        .next()
        .expect("header row")
        .iter()
        .map(|cell| cell.to_string())
        .collect();
    let expected: Vec<&str> = fieldsync_model::areas::AreaColumn::ALL
        .iter()
        .map(|column| column.header_zh())
        .collect();
    assert_eq!(headers, expected);

    // The form: upload redirects to the job page, which previews and offers the apply.
    let (content_type, body) = multipart("行政区划.xlsx", &xlsx_of(&county_rows()));
    let response = browser
        .post(format!("{}/console/areas/import", server.url()))
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .body(body)
        .send()
        .await
        .expect("form upload");
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let location = response.headers()[reqwest::header::LOCATION]
        .to_str()
        .expect("ascii")
        .to_owned();
    let job_id = location
        .strip_prefix("/console/areas/import/")
        .expect("the job page")
        .to_owned();
    areas.settled(&job_id).await;
    let page = browser
        .get(format!("{}{location}", server.url()))
        .send()
        .await
        .expect("job page")
        .text()
        .await
        .expect("html");
    assert!(
        page.contains("预览") && page.contains("确认导入（写入 6 个区划）"),
        "{page}"
    );
    let response = browser
        .post(format!("{}{location}/apply", server.url()))
        .send()
        .await
        .expect("apply");
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(areas.settled(&job_id).await["phase"], "applied");
    let page = browser
        .get(format!("{}/console/areas/import", server.url()))
        .send()
        .await
        .expect("upload page")
        .text()
        .await
        .expect("html");
    assert!(
        page.contains("行政区划.xlsx") && page.contains("县管理员"),
        "the run is listed"
    );

    // A bad file through the form re-renders it with the reason and a 400.
    let (content_type, body) = multipart("图片.xlsx", b"\x89PNG\r\n\x1a\n\0\0\0\0");
    let response = browser
        .post(format!("{}/console/areas/import", server.url()))
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .body(body)
        .send()
        .await
        .expect("form upload");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(
        response
            .text()
            .await
            .expect("html")
            .contains("系统数据未作任何改动")
    );

    // Unknown jobs are not found; a `wait` that is neither true nor false is a typed 400.
    let response = browser
        .get(format!("{}/console/areas/import/no-such-job", server.url()))
        .send()
        .await
        .expect("page");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = browser
        .get(format!(
            "{}/console/api/areas/import/{job_id}?wait=yes",
            server.url()
        ))
        .send()
        .await
        .expect("job");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

/// Rewrite a stored import job's phase and heartbeat through the store, as a runner that
/// stopped mid-way leaves it (fault injected: no server process dies here).
async fn leave_job_as_if_its_runner_died(
    server: &TestServer,
    job_id: &str,
    phase: &str,
    heartbeat_age: time::Duration,
) {
    let store = &server.state.store;
    let mut record = store
        .import_job("areas", COUNTY, job_id)
        .await
        .expect("read the job")
        .expect("the job is stored");
    record.phase = phase.to_owned();
    record.heartbeat_at = server.state.clock.now() - heartbeat_age;
    store
        .save_import_job(&record)
        .await
        .expect("rewrite the job");
}

#[tokio::test]
async fn import_jobs_survive_a_restart_and_a_job_whose_runner_died_reads_as_interrupted() {
    let server = bare_county().await;
    let browser = console_login(&server, ADMIN).await;
    let importer = Importer {
        server: &server,
        browser: browser.clone(),
        base: "/console/api/areas/import",
    };
    let ready = importer
        .dry_run("行政区划.xlsx", &xlsx_of(&county_rows()))
        .await;
    let ready_id = ready["job_id"].as_str().expect("id").to_owned();
    let other = importer
        .dry_run("行政区划-2.xlsx", &xlsx_of(&county_rows()))
        .await;
    let other_id = other["job_id"].as_str().expect("id").to_owned();

    // A restart: the jobs are in the store, with their previews and plans.
    let server = server.restart().await;
    let importer = Importer {
        server: &server,
        browser: browser.clone(),
        base: "/console/api/areas/import",
    };
    let after_restart = importer.settled(&ready_id).await;
    assert_eq!(after_restart["phase"], "ready");
    assert_eq!(
        after_restart["preview"], ready["preview"],
        "the same preview"
    );
    assert_eq!(after_restart["can_apply"], true);
    let (status, body) = importer.apply(&ready_id).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let applied = importer.settled(&ready_id).await;
    assert_eq!(applied["phase"], "applied", "{applied}");
    assert_eq!(applied["run"]["areas_created"], 6, "{applied}");
    assert_eq!(
        stored_areas(&server).await.len(),
        7,
        "county, 2 townships, 4 villages"
    );
    let (status, body) = importer.apply(&ready_id).await;
    assert_eq!(status, StatusCode::CONFLICT, "applied once only: {body}");

    // A dry run whose runner stopped writing 31 s ago reads as interrupted and cannot be
    // applied; one written a second ago still runs.
    leave_job_as_if_its_runner_died(&server, &other_id, "comparing", time::Duration::seconds(1))
        .await;
    let (status, running) = job_json(&importer, &other_id).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(running["phase"], "comparing", "a live runner: {running}");
    leave_job_as_if_its_runner_died(&server, &other_id, "comparing", time::Duration::seconds(31))
        .await;
    let interrupted = importer.settled(&other_id).await;
    assert_eq!(interrupted["phase"], "failed", "{interrupted}");
    assert!(
        interrupted["error"]
            .as_str()
            .expect("reason")
            .contains("已中断"),
        "{interrupted}"
    );
    let (status, body) = importer.apply(&other_id).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    // An apply interrupted with no run in the import audit is not declared unwritten: the
    // administrator is asked to check the import list.
    leave_job_as_if_its_runner_died(&server, &other_id, "applying", time::Duration::minutes(5))
        .await;
    let unsure = importer.settled(&other_id).await;
    assert_eq!(unsure["phase"], "failed", "{unsure}");
    assert!(
        unsure["error"].as_str().expect("reason").contains("核对"),
        "{unsure}"
    );

    // An apply whose runner died after the import committed reads as applied, with its run
    // from the import audit; nothing is applied twice.
    leave_job_as_if_its_runner_died(&server, &ready_id, "applying", time::Duration::minutes(5))
        .await;
    let recovered = importer.settled(&ready_id).await;
    assert_eq!(recovered["phase"], "applied", "{recovered}");
    assert_eq!(recovered["run"]["run_id"], ready_id.as_str());
    assert_eq!(stored_areas(&server).await.len(), 7);

    // An unknown id is a 404 (another county's job too: the conformance suite checks the
    // store answers it like an unknown one).
    let (status, _) = job_json(&importer, "0190b1c2-0000-7000-8000-000000000000").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn job_json(importer: &Importer<'_>, job_id: &str) -> (StatusCode, Value) {
    let response = importer
        .browser
        .get(format!(
            "{}{}/{job_id}",
            importer.server.url(),
            importer.base
        ))
        .send()
        .await
        .expect("job");
    (response.status(), response.json().await.expect("json"))
}
