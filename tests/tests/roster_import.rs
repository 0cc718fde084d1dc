//! Roster import (建档立卡花名册导入) end to end: a county administrator uploads real XLSX and
//! CSV files to a real server over HTTP. A register of 5,000 households with 20 bad rows is
//! refused with exactly those rows named and nothing stored; the fixed file is applied once;
//! importing it again changes nothing; an updated file applies exactly its changes, which a
//! cadre's phone (a real client core) then pulls. Bad files are refused with typed errors.

use std::collections::BTreeSet;

use fieldsync_client::Client;
use fieldsync_model::codes::{
    CodeList, Disability, Health, HouseholdAttribute, LabourCapacity, PovertyCause, Relation,
    Schooling, Sex,
};
use fieldsync_model::household::Household;
use fieldsync_model::id_number::check_character;
use fieldsync_tests::{DEMO_PASSWORD, TestServer, console_login};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The template's columns, in the order these files write them.
const HEADERS: [&str; 23] = [
    "户编号",
    "乡镇",
    "行政村",
    "户主姓名",
    "联系电话",
    "住址",
    "户属性",
    "主要致贫原因",
    "次要致贫原因",
    "住房安全等级",
    "姓名",
    "与户主关系",
    "性别",
    "证件号码",
    "出生日期",
    "健康状况",
    "劳动技能",
    "在校生情况",
    "残疾类别",
    "残疾等级",
    "参加城乡居民医疗保险",
    "参加大病保险",
    "参加城乡居民养老保险",
];

fn column(header: &str) -> usize {
    HEADERS
        .iter()
        .position(|candidate| *candidate == header)
        .expect("a template header")
}

/// One sheet row: the cells as text, in [`HEADERS`] order.
type Row = Vec<String>;

/// Rows of one household: the household columns repeated on each member row.
fn household_rows(household: &Household, township_name: &str) -> Vec<Row> {
    household
        .current_members()
        .map(|member| {
            vec![
                household.national_household_number.clone(),
                township_name.to_owned(),
                household.village_name.clone(),
                household.head_name.clone(),
                household.phone.clone(),
                household.address.clone(),
                household.attribute.label_zh().to_owned(),
                household.main_cause.label_zh().to_owned(),
                household
                    .secondary_causes
                    .iter()
                    .map(|cause| cause.label_zh())
                    .collect::<Vec<_>>()
                    .join("、"),
                household
                    .housing_danger_level
                    .map(|level| level.label_zh().to_owned())
                    .unwrap_or_default(),
                member.name.clone(),
                member.relation.label_zh().to_owned(),
                member.sex.label_zh().to_owned(),
                member.id_number.clone(),
                member.birth_date.clone(),
                member.health.label_zh().to_owned(),
                member.labour_capacity.label_zh().to_owned(),
                member.schooling.label_zh().to_owned(),
                member.disability.label_zh().to_owned(),
                member.disability_grade.to_string(),
                yes_no(member.has_medical_insurance),
                yes_no(member.has_serious_illness_insurance),
                yes_no(member.has_pension_insurance),
            ]
        })
        .collect()
}

fn yes_no(flag: bool) -> String {
    if flag { "是" } else { "否" }.to_owned()
}

fn pick<T: Copy>(rng: &mut StdRng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

/// An 18-digit ID number with a valid check character; the sequence's parity is the sex.
fn id_number(region: u32, birth: &str, sequence: u32, sex: Sex) -> String {
    let parity = if sex == Sex::Male { 1 } else { 0 };
    let sequence = (sequence * 2 + parity) % 1000;
    let body = format!("{region:06}{}{sequence:03}", birth.replace('-', ""));
    format!("{body}{}", check_character(&body).expect("17 digits"))
}

const SURNAMES: &[&str] = &["王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周"];
const GIVEN: &[&str] = &[
    "建国", "秀英", "桂兰", "志强", "海燕", "春花", "大山", "小梅", "国庆",
];

/// Generated register rows of `count` new households in the county's villages, seeded.
fn generated_rows(count: usize, villages: &[(String, String)], rng: &mut StdRng) -> Vec<Row> {
    let mut rows = Vec::new();
    for index in 0..count {
        let (township, village) = &villages[index % villages.len()];
        let number = format!("9{:011}", 1 + index);
        let surname = pick(rng, SURNAMES);
        let size = rng.random_range(1..=4);
        let region = 130_000 + index as u32;
        let mut members: Vec<(String, Relation, Sex, String)> = Vec::new();
        for position in 0..size {
            let (relation, sex, year) = match position {
                0 => (Relation::Head, Sex::Male, rng.random_range(1940..1985)),
                1 => (Relation::Spouse, Sex::Female, rng.random_range(1940..1985)),
                _ if rng.random_bool(0.5) => {
                    (Relation::Son, Sex::Male, rng.random_range(1995..2020))
                }
                _ => (
                    Relation::Daughter,
                    Sex::Female,
                    rng.random_range(1995..2020),
                ),
            };
            let birth = format!(
                "{year}-{:02}-{:02}",
                rng.random_range(1..=12),
                rng.random_range(1..=28)
            );
            let name = format!("{surname}{}", pick(rng, GIVEN));
            members.push((name, relation, sex, birth));
        }
        let head_name = members[0].0.clone();
        let phone = format!("13{:09}", rng.random_range(0..1_000_000_000u64));
        let attribute = pick(rng, HouseholdAttribute::ALL);
        let cause = pick(rng, &PovertyCause::ALL[..11]);
        let housing = pick(rng, &["A级", "B级", "C级(局部危房)", ""]);
        for (position, (name, relation, sex, birth)) in members.into_iter().enumerate() {
            rows.push(vec![
                number.clone(),
                township.clone(),
                village.clone(),
                head_name.clone(),
                phone.clone(),
                format!("{village}{}组{}号", 1 + index % 7, 1 + index % 40),
                attribute.label_zh().into(),
                cause.label_zh().into(),
                if index % 3 == 0 {
                    "缺技术、缺资金".into()
                } else {
                    String::new()
                },
                housing.into(),
                name,
                relation.label_zh().into(),
                sex.label_zh().into(),
                id_number(region, &birth, position as u32, sex),
                birth,
                pick(rng, &Health::ALL[..3]).label_zh().into(),
                pick(rng, LabourCapacity::ALL).label_zh().into(),
                pick(rng, Schooling::ALL).label_zh().into(),
                Disability::None.label_zh().into(),
                "0".into(),
                yes_no(rng.random_bool(0.9)),
                yes_no(rng.random_bool(0.5)),
                yes_no(rng.random_bool(0.5)),
            ]);
        }
    }
    rows
}

/// A real XLSX of the rows. ID numbers are text (as the template formats them); the heads'
/// birth dates are real Excel date cells, the others text, as hand-kept registers mix both.
fn xlsx_of(rows: &[Row]) -> Vec<u8> {
    use rust_xlsxwriter::{ExcelDateTime, Format, Workbook};
    let mut workbook = Workbook::new();
    let sheet = workbook.add_worksheet();
    let date_format = Format::new().set_num_format("yyyy-mm-dd");
    for (position, header) in HEADERS.iter().enumerate() {
        sheet
            .write_string(0, position as u16, *header)
            .expect("header");
    }
    let birth_column = column("出生日期");
    let relation_column = column("与户主关系");
    for (index, row) in rows.iter().enumerate() {
        let sheet_row = 1 + index as u32;
        for (position, text) in row.iter().enumerate() {
            if text.is_empty() {
                continue;
            }
            let as_date = (position == birth_column && row[relation_column] == "户主")
                .then(|| ExcelDateTime::parse_from_str(text).ok())
                .flatten();
            match as_date {
                Some(date) => sheet
                    .write_datetime_with_format(sheet_row, position as u16, &date, &date_format)
                    .expect("date"),
                None => sheet
                    .write_string(sheet_row, position as u16, text)
                    .expect("cell"),
            };
        }
    }
    workbook.save_to_buffer().expect("xlsx")
}

fn csv_of(rows: &[Row], with_bom: bool) -> Vec<u8> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(HEADERS).expect("header");
    for row in rows {
        writer.write_record(row).expect("row");
    }
    let body = writer.into_inner().expect("csv");
    if with_bom {
        [b"\xEF\xBB\xBF".as_slice(), &body].concat()
    } else {
        body
    }
}

use fieldsync_tests::multipart_file_body as multipart;

/// The first few issues of a preview, for assertion messages.
fn first_issues(preview: &Value) -> String {
    preview["issues"]
        .as_array()
        .map(|issues| {
            issues
                .iter()
                .take(30)
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

struct Console<'a> {
    server: &'a TestServer,
    browser: reqwest::Client,
}

impl Console<'_> {
    /// Upload through the JSON twin: `Ok(job)` once the header is accepted, else the status
    /// and error body.
    async fn upload(&self, file_name: &str, bytes: &[u8]) -> Result<Value, (StatusCode, Value)> {
        let (content_type, body) = multipart(file_name, bytes);
        let response = self
            .browser
            .post(format!("{}/console/api/import", self.server.url()))
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
        let url = format!("{}/console/api/import/{job_id}", self.server.url());
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
            .post(format!(
                "{}/console/api/import/{job_id}/apply",
                self.server.url()
            ))
            .send()
            .await
            .expect("apply");
        (response.status(), response.json().await.expect("json"))
    }

    async fn page(&self, path: &str) -> (StatusCode, String) {
        let response = self
            .browser
            .get(format!("{}{path}", self.server.url()))
            .send()
            .await
            .expect("page");
        (response.status(), response.text().await.expect("html"))
    }
}

async fn county_households(server: &TestServer) -> usize {
    server
        .state
        .store
        .county_roster(fieldsync_server::demo::DEMO_COUNTY_ID)
        .await
        .expect("roster")
        .households
        .len()
}

async fn change_log_size(server: &TestServer) -> i64 {
    server
        .state
        .store
        .change_log_bounds()
        .await
        .expect("bounds")
        .scopes
        .values()
        .map(|bounds| bounds.newest_seq)
        .sum()
}

/// (township name, village name) of every demo village, and the township name of each
/// township id.
async fn villages(server: &TestServer) -> (Vec<(String, String)>, Vec<(String, String)>) {
    let store = &server.state.store;
    let townships = store
        .list_areas(Some(fieldsync_server::demo::DEMO_COUNTY_ID))
        .await
        .expect("townships");
    let mut villages = Vec::new();
    for township in &townships {
        for village in store
            .list_areas(Some(&township.area_id))
            .await
            .expect("villages")
        {
            villages.push((township.name.clone(), village.name));
        }
    }
    let names = townships
        .into_iter()
        .map(|township| (township.area_id, township.name))
        .collect();
    (villages, names)
}

/// Sabotage kinds that set one cell to a value the template refuses; the report names that
/// column. The other kinds (by number, below) need more than one cell or a computed value.
const ONE_BAD_CELL: [(usize, &str, &str); 13] = [
    (1, "健康状况", "很健康"),
    (2, "姓名", ""),
    (4, "出生日期", "1985-13-45"),
    (5, "行政村", "不存在村"),
    (6, "乡镇", "不存在镇"),
    (7, "户属性", "富裕户"),
    (8, "主要致贫原因", "因懒"),
    (12, "与户主关系", ""),
    (13, "与户主关系", "户主"),
    (14, "联系电话", "电话不详"),
    (15, "劳动技能", "特级劳动力"),
    (16, "在校生情况", "博士后"),
    (18, "参加城乡居民医疗保险", "也许"),
];

/// Which columns each of the 20 sabotaged rows must be reported under.
struct Sabotage {
    /// (row number as Excel shows it, column header)
    expected: BTreeSet<(u64, String)>,
}

/// Break 20 rows of `rows` in 20 different ways; each breaks exactly one cell rule.
/// `registered_elsewhere` is a member row of a stored household that is not in the file.
fn sabotage(rows: &mut [Row], registered_elsewhere: &Row) -> Sabotage {
    let mut expected = BTreeSet::new();
    let relation = column("与户主关系");
    // Spread over the file, on members that are not the head (member-only rules then
    // concern one row only).
    let mut targets = Vec::new();
    let mut index = 150;
    while targets.len() < 20 {
        while rows[index][relation] == "户主" {
            index += 1;
        }
        targets.push(index);
        index += 600;
    }
    let mut note = |index: usize, header: &str| {
        expected.insert((index as u64 + 2, header.to_owned()));
    };
    for (kind, &index) in targets.iter().enumerate() {
        let row = &mut rows[index];
        if let Some((_, header, value)) = ONE_BAD_CELL.iter().find(|(with, ..)| *with == kind) {
            row[column(header)] = (*value).to_owned();
            note(index, header);
            continue;
        }
        match kind {
            0 => {
                let id = &mut row[column("证件号码")];
                let last = if id.ends_with('0') { "1" } else { "0" };
                id.replace_range(17.., last);
                note(index, "证件号码");
            }
            3 => {
                // The same person as the row before: a duplicate ID within the file, named
                // on the later row.
                for header in ["证件号码", "性别", "出生日期"] {
                    rows[index][column(header)] = rows[index - 1][column(header)].clone();
                }
                note(index, "证件号码");
            }
            9 => {
                let sex = &mut row[column("性别")];
                *sex = if sex == "男" { "女" } else { "男" }.into();
                note(index, "性别");
            }
            10 => {
                let birth = &mut row[column("出生日期")];
                let day: u32 = birth[8..10].parse().expect("day");
                birth.replace_range(8..10, &format!("{:02}", if day == 1 { 2 } else { day - 1 }));
                note(index, "出生日期");
            }
            11 => {
                row[column("证件号码")].truncate(16);
                note(index, "证件号码");
            }
            17 => {
                row[column("残疾类别")] = "肢体残疾".into();
                row[column("残疾等级")] = "五级".into();
                note(index, "残疾等级");
            }
            _ => {
                // A person already registered in a demo household.
                for header in ["证件号码", "性别", "出生日期"] {
                    row[column(header)] = registered_elsewhere[column(header)].clone();
                }
                note(index, "证件号码");
            }
        }
    }
    Sabotage { expected }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_register_of_5000_households_is_checked_applied_once_and_updated_by_its_changes() {
    let server = TestServer::start().await;
    let console = Console {
        server: &server,
        browser: console_login(&server, "county").await,
    };
    // The cadre's phone holds its households before any import.
    let phone_folder = tempfile::tempdir().expect("temp dir");
    let phone = Client::open(phone_folder.path(), &server.url()).expect("client");
    phone.login("cadre01", DEMO_PASSWORD).await.expect("login");
    phone.sync().await.expect("first sync");
    let demo_id = phone.households().expect("households")[0]
        .household_id
        .clone();
    let demo_card = server
        .state
        .store
        .get_household(&demo_id)
        .await
        .expect("store")
        .expect("demo household");

    let (villages, township_names) = villages(&server).await;
    let township_of = |id: &str| {
        township_names
            .iter()
            .find(|(area_id, _)| area_id == id)
            .map(|(_, name)| name.clone())
            .expect("township")
    };
    let mut rng = StdRng::seed_from_u64(20_261_129);
    let mut rows = generated_rows(5_000, &villages, &mut rng);
    let generated = rows.len();
    // The demo household is in the register too, exactly as stored.
    let demo_rows = household_rows(&demo_card, &township_of(&demo_card.township_id));
    rows.extend(demo_rows.iter().cloned());
    let households_before = county_households(&server).await;
    let log_before = change_log_size(&server).await;

    // 1. Twenty bad rows: each is reported with its column, and nothing can be stored.
    let mut broken = rows.clone();
    let other_demo = server
        .state
        .store
        .county_roster(fieldsync_server::demo::DEMO_COUNTY_ID)
        .await
        .expect("roster")
        .households
        .into_iter()
        .find(|household| household.household_id != demo_id)
        .expect("another demo household");
    let other_rows = household_rows(&other_demo, &township_of(&other_demo.township_id));
    let sabotage = sabotage(&mut broken, &other_rows[0]);
    let job = console.dry_run("花名册-有错.xlsx", &xlsx_of(&broken)).await;
    let preview = &job["preview"];
    assert_eq!(preview["bad_rows"], 20, "{}", first_issues(preview));
    let reported: BTreeSet<(u64, String)> = preview["issues"]
        .as_array()
        .expect("issues")
        .iter()
        .map(|issue| {
            (
                issue["row_number"].as_u64().expect("row"),
                issue["column"].as_str().expect("column").to_owned(),
            )
        })
        .collect();
    assert_eq!(reported, sabotage.expected);
    assert!(
        preview["issues"]
            .as_array()
            .expect("issues")
            .iter()
            .all(|issue| !issue["reason"].as_str().unwrap_or_default().is_empty())
    );
    assert_eq!(job["can_apply"], false);
    let job_id = job["job_id"].as_str().expect("id");
    let (status, refused) = console.apply(job_id).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap_or_default()
            .contains("20行错误")
    );
    let (status, page) = console.page(&format!("/console/import/{job_id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("错误行") && page.contains("很健康"),
        "the bad rows are listed"
    );
    assert!(
        !page.contains("http-equiv=\"refresh\""),
        "a finished job does not refresh"
    );
    assert_eq!(county_households(&server).await, households_before);
    assert_eq!(change_log_size(&server).await, log_before);

    // 2. The fixed file: every new household and member, the demo rows unchanged.
    let good = xlsx_of(&rows);
    let job = console.dry_run("花名册.xlsx", &good).await;
    let preview = &job["preview"];
    assert_eq!(preview["bad_rows"], 0, "{}", first_issues(preview));
    assert_eq!(preview["new_households"], 5_000);
    assert_eq!(preview["new_members"], generated);
    assert_eq!(preview["changed_fields"], 0);
    assert_eq!(preview["unchanged_rows"], demo_rows.len());
    assert_eq!(job["can_apply"], true);
    assert_eq!(job["rows_read"], rows.len(), "progress counted every row");
    assert_eq!(job["rows_validated"], rows.len());
    assert_eq!(job["items_to_apply"], 5_000, "one item per new household");
    let job_id = job["job_id"].as_str().expect("id").to_owned();
    let (status, applying) = console.apply(&job_id).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{applying}");
    let applied = console.settled(&job_id).await;
    assert_eq!(applied["phase"], "applied", "{applied}");
    assert_eq!(applied["run"]["households_created"], 5_000);
    assert_eq!(applied["items_applied"], 5_000);
    let good_sha256 = hex::encode(Sha256::digest(&good));
    let audit = server
        .state
        .store
        .audit_records(0, 100)
        .await
        .expect("audit log");
    assert!(
        audit.iter().any(|record| record.content.action
            == fieldsync_model::access::ACTION_ROSTER_IMPORT
            && record.content.file_sha256 == good_sha256),
        "the applied import is in the hash-chained audit log: {audit:?}"
    );
    assert_eq!(county_households(&server).await, households_before + 5_000);
    let log_after_first = change_log_size(&server).await;
    assert_eq!(
        log_after_first - log_before,
        5_000,
        "one entry per new household"
    );
    let (status, again) = console.apply(&job_id).await;
    assert_eq!(status, StatusCode::CONFLICT, "applied once only: {again}");

    // 3. The same file again: 无变化, and nothing to apply.
    let job = console.dry_run("花名册.xlsx", &good).await;
    let preview = &job["preview"];
    assert_eq!(preview["no_changes"], true, "{preview}");
    assert_eq!(preview["new_households"], 0);
    assert_eq!(preview["changed_fields"], 0);
    assert_eq!(preview["unchanged_rows"], rows.len());
    let job_id = job["job_id"].as_str().expect("id");
    let (status, _) = console.apply(job_id).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (_, page) = console.page(&format!("/console/import/{job_id}")).await;
    assert!(page.contains("无变化"));
    assert_eq!(
        change_log_size(&server).await,
        log_after_first,
        "no change-log growth"
    );

    // 4. An updated register, as CSV (UTF-8 with BOM): the demo household's phone, one
    //    member's health, and one new member.
    let mut updated = rows.clone();
    let demo_first = generated;
    let new_phone = "13912345678";
    for row in &mut updated[demo_first..] {
        row[column("联系电话")] = new_phone.into();
    }
    let health_row = 3_001;
    let health = &mut updated[health_row][column("健康状况")];
    *health = if health == "患有大病" {
        "健康"
    } else {
        "患有大病"
    }
    .into();
    let expected_health = updated[health_row][column("健康状况")].clone();
    let mut newcomer = updated[4_000].clone();
    newcomer[column("姓名")] = "新生儿".into();
    newcomer[column("与户主关系")] = "之女".into();
    newcomer[column("性别")] = "女".into();
    newcomer[column("出生日期")] = "2026-01-15".into();
    newcomer[column("证件号码")] = id_number(990_001, "2026-01-15", 7, Sex::Female);
    newcomer[column("健康状况")] = "健康".into();
    updated.insert(4_001, newcomer);
    let job = console
        .dry_run("花名册-更新.csv", &csv_of(&updated, true))
        .await;
    let preview = &job["preview"];
    assert_eq!(preview["bad_rows"], 0, "{}", first_issues(preview));
    assert_eq!(preview["new_households"], 0);
    assert_eq!(preview["new_members"], 1);
    assert_eq!(
        preview["changed_fields"], 2,
        "{}",
        preview["sample_changes"]
    );
    let fields: BTreeSet<&str> = preview["sample_changes"]
        .as_array()
        .expect("sample")
        .iter()
        .map(|change| change["field"].as_str().expect("field"))
        .collect();
    assert_eq!(fields, BTreeSet::from(["health", "phone"]));
    // The JSON twin lists the phone change masked, old and new, as the page does.
    let phone_change = preview["sample_changes"]
        .as_array()
        .expect("sample")
        .iter()
        .find(|change| change["field"] == "phone")
        .expect("the phone change");
    assert_eq!(phone_change["new_value"], "139****5678");
    let old_phone = phone_change["old_value"].as_str().expect("old phone");
    assert!(
        old_phone.is_empty() || old_phone.contains('*'),
        "old phone masked: {old_phone}"
    );
    assert!(!job.to_string().contains(new_phone));
    let job_id = job["job_id"].as_str().expect("id").to_owned();
    let (status, page) = console.page(&format!("/console/import/{job_id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("139****5678"),
        "phone numbers are masked in the list"
    );
    assert!(!page.contains(new_phone));
    let (status, _) = console.apply(&job_id).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(console.settled(&job_id).await["phase"], "applied");
    assert_eq!(
        change_log_size(&server).await - log_after_first,
        3,
        "exactly the three changes were logged"
    );
    let roster = server
        .state
        .store
        .county_roster(fieldsync_server::demo::DEMO_COUNTY_ID)
        .await
        .expect("roster");
    let number_of = |row: &Row| row[column("户编号")].clone();
    let card_of = |number: &str| {
        roster
            .households
            .iter()
            .find(|household| household.national_household_number == number)
            .expect("stored")
    };
    let health_card = card_of(&number_of(&updated[health_row]));
    let member = health_card
        .members
        .iter()
        .find(|member| member.id_number == updated[health_row][column("证件号码")])
        .expect("member");
    assert_eq!(member.health.label_zh(), expected_health);
    assert!(
        card_of(&number_of(&updated[4_001]))
            .members
            .iter()
            .any(|member| member.name == "新生儿")
    );

    // 5. The cadre's phone pulls the changed field like any other edit.
    phone.sync().await.expect("sync");
    assert_eq!(
        phone
            .household(&demo_id)
            .expect("replica")
            .expect("on the phone")
            .phone,
        new_phone
    );
    let (_, page) = console.page("/console/import").await;
    assert!(
        page.contains("花名册-更新.csv") && page.contains("花名册.xlsx"),
        "the audit lists both runs"
    );
}

#[tokio::test]
async fn unreadable_files_are_refused_with_a_reason_and_store_nothing() {
    let server = TestServer::start().await;
    let console = Console {
        server: &server,
        browser: console_login(&server, "county").await,
    };
    let households_before = county_households(&server).await;
    let log_before = change_log_size(&server).await;

    // A PNG renamed .xlsx.
    let png_bytes: &[u8] =
        b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";
    // A zip that is not a workbook.
    let zip = {
        let mut writer = rust_xlsxwriter::Workbook::new();
        writer.add_worksheet();
        // A real XLSX with its workbook part renamed is a zip without a workbook.
        let mut bytes = writer.save_to_buffer().expect("xlsx");
        let needle = b"xl/workbook.xml";
        let mut position = 0;
        while let Some(found) = bytes[position..]
            .windows(needle.len())
            .position(|window| window == needle)
        {
            let at = position + found;
            bytes[at..at + needle.len()].copy_from_slice(b"xl/notabook.xml");
            position = at + needle.len();
        }
        bytes
    };
    let mut header_only: Vec<&str> = HEADERS.to_vec();
    header_only.retain(|header| *header != "证件号码");
    let missing_header = format!("{}\n", header_only.join(","));
    let gbk = b"\xbb\xa7\xb1\xe0\xba\xc5,\xd0\xd5\xc3\xfb\n".to_vec();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("照片.xlsx", png_bytes.to_vec(), "无法识别的文件格式"),
        ("压缩包.xlsx", zip, "Excel 工作簿"),
        ("空.xlsx", Vec::new(), "文件为空"),
        ("缺列.csv", missing_header.into_bytes(), "证件号码"),
        ("gbk.csv", gbk, "UTF-8"),
        ("截断.xlsx", xlsx_of(&[])[..300].to_vec(), "已损坏"),
    ];
    for (name, bytes, reason) in cases {
        let (status, error) = console
            .upload(name, &bytes)
            .await
            .expect_err("refused at upload");
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {error}");
        assert_eq!(error["field"], "file", "{name}: {error}");
        let message = error["error"].as_str().unwrap_or_default();
        assert!(message.contains(reason), "{name}: {message}");
    }
    // The HTML form shows the reason on the upload page.
    let (content_type, body) = multipart("空.csv", b"");
    let response = console
        .browser
        .post(format!("{}/console/import", server.url()))
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .body(body)
        .send()
        .await
        .expect("form upload");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.text().await.expect("html").contains("文件为空"));
    // Another role cannot import at all.
    let supervisor = console_login(&server, "township1").await;
    let (content_type, body) = multipart("x.csv", b"a,b\n");
    let response = supervisor
        .post(format!("{}/console/api/import", server.url()))
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .body(body)
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    assert_eq!(county_households(&server).await, households_before);
    assert_eq!(change_log_size(&server).await, log_before);
    assert!(
        server
            .state
            .store
            .import_runs(fieldsync_server::demo::DEMO_COUNTY_ID, 10)
            .await
            .expect("runs")
            .is_empty()
    );
}

#[tokio::test]
async fn a_csv_without_bom_imports_and_the_template_downloads() {
    let server = TestServer::start().await;
    let console = Console {
        server: &server,
        browser: console_login(&server, "county").await,
    };
    let (villages, _) = villages(&server).await;
    let mut rng = StdRng::seed_from_u64(7);
    let rows = generated_rows(12, &villages, &mut rng);
    let job = console.dry_run("小花名册.csv", &csv_of(&rows, false)).await;
    assert_eq!(job["preview"]["new_households"], 12);
    let job_id = job["job_id"].as_str().expect("id");
    // The HTML apply button path.
    let response = console
        .browser
        .post(format!("{}/console/import/{job_id}/apply", server.url()))
        .send()
        .await
        .expect("apply");
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        console.settled(job_id).await["run"]["households_created"],
        12
    );

    // The HTML form: an accepted file redirects to its job page, which shows the preview.
    let more = generated_rows(14, &villages, &mut rng);
    let (content_type, body) = multipart("表单.csv", &csv_of(&more[12..], true));
    let response = console
        .browser
        .post(format!("{}/console/import", server.url()))
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
    assert!(location.starts_with("/console/import/"), "{location}");
    let form_job = location.trim_start_matches("/console/import/");
    console.settled(form_job).await;
    let (status, page) = console.page(&location).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("预览") && page.contains("确认导入"), "{page}");
    // Unknown jobs are not found; other roles are refused.
    let (status, _) = console.page("/console/import/no-such-job").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A `wait` that is neither true nor false is a typed 400 naming it.
    let response = console
        .browser
        .get(format!(
            "{}/console/api/import/{form_job}?wait=yes",
            server.url()
        ))
        .send()
        .await
        .expect("job");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let refused: Value = response.json().await.expect("json error");
    assert_eq!(refused["field"], "wait", "{refused}");
    let supervisor = console_login(&server, "township1").await;
    let response = supervisor
        .get(format!("{}/console/import", server.url()))
        .send()
        .await
        .expect("page");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = supervisor
        .get(format!("{}/console/api/import/{form_job}", server.url()))
        .send()
        .await
        .expect("job");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    let response = console
        .browser
        .get(format!("{}/console/import/template.xlsx", server.url()))
        .send()
        .await
        .expect("template");
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response.bytes().await.expect("bytes");
    use calamine::Reader;
    let mut workbook: calamine::Xlsx<_> =
        calamine::Xlsx::new(std::io::Cursor::new(bytes.to_vec())).expect("a real xlsx");
    let sheet = workbook.worksheet_range("花名册").expect("sheet");
    let headers: Vec<String> = sheet
        .rows()
        .next()
        .expect("header row")
        .iter()
        .map(|cell| cell.to_string())
        .collect();
    assert_eq!(headers, HEADERS);
}
