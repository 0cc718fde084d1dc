//! Personal data at rest (issue #10 item 6, docs/security.md "pii-rest"): ID numbers and
//! phone numbers never reach the server's files in plain text. Canary numbers enter through
//! every path (a phone's field edit and member add over real gRPC, a concurrent edit that
//! becomes a conflict record, a roster import through the console), and then the bytes of
//! the SQLite file and its WAL (while the server runs and after it stopped), the blob
//! folder, the captured logs and the masked exports are searched: no canary anywhere,
//! except in the audited full export, which must carry them.
//!
//! Also: key rotation reseals everything and old data still reads; the wrong key fails
//! with a typed error instead of garbage; the roster import's duplicate-ID check still
//! works (dry run in the county, and at apply time through the blind index).

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use fieldsync_model::codes::{Disability, Health, LabourCapacity, Relation, Schooling, Sex};
use fieldsync_model::household::Member;
use fieldsync_model::id_number::check_character;
use fieldsync_model::register::FieldTarget;
use fieldsync_server::settings::Settings;
use fieldsync_server::store::StoreError;
use fieldsync_server::store::sealed::PiiCipher;
use fieldsync_server::store::sqlite::SqliteStore;
use fieldsync_tests::{TestServer, console_login, phone_of};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Everything the server logs in this test binary, at every level.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let writer_logs = Arc::clone(&logs);
        tracing_subscriber::fmt()
            .with_max_level(tracing_subscriber::filter::LevelFilter::TRACE)
            .with_ansi(false)
            .with_writer(move || LogWriter(Arc::clone(&writer_logs)))
            .init();
        logs
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A valid 18-digit ID number in the demo county's region; odd sequences are male.
fn canary_id(birth: &str, sequence: u32) -> String {
    let body = format!("522731{}{sequence:03}", birth.replace('-', ""));
    format!("{body}{}", check_character(&body).expect("17 digits"))
}

fn member(name: &str, relation: Relation, id_number: &str, birth: &str) -> Member {
    Member {
        member_id: String::new(),
        name: name.into(),
        relation,
        sex: Sex::Male,
        birth_date: birth.into(),
        id_number: id_number.into(),
        health: Health::Healthy,
        labour_capacity: LabourCapacity::Ordinary,
        schooling: Schooling::NotInSchool,
        disability: Disability::None,
        disability_grade: 0,
        has_medical_insurance: true,
        has_serious_illness_insurance: false,
        has_pension_insurance: false,
        removed: false,
    }
}

/// Where each canary was found in `bytes`.
fn hits(bytes: &[u8], canaries: &[&str]) -> Vec<String> {
    canaries
        .iter()
        .filter(|canary| {
            bytes
                .windows(canary.len())
                .any(|window| window == canary.as_bytes())
        })
        .map(|canary| canary.to_string())
        .collect()
}

/// Every file under `folder` with the canaries it holds.
fn hits_in_folder(folder: &Path, canaries: &[&str]) -> Vec<(String, Vec<String>)> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(folder) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(hits_in_folder(&path, canaries));
        } else if let Ok(bytes) = std::fs::read(&path) {
            let in_file = hits(&bytes, canaries);
            if !in_file.is_empty() {
                found.push((path.display().to_string(), in_file));
            }
        }
    }
    found
}

/// The SQLite file and its WAL.
fn database_hits(data_dir: &Path, canaries: &[&str]) -> Vec<(String, Vec<String>)> {
    let mut found = Vec::new();
    for name in ["fieldsync.sqlite3", "fieldsync.sqlite3-wal"] {
        let path = data_dir.join(name);
        if let Ok(bytes) = std::fs::read(&path) {
            let in_file = hits(&bytes, canaries);
            if !in_file.is_empty() {
                found.push((name.to_owned(), in_file));
            }
        }
    }
    found
}

/// A one-household roster file (CSV) whose head has `id_number` and the household `phone`.
fn roster_csv(
    number: &str,
    township: &str,
    village: &str,
    phone: &str,
    id_number: &str,
) -> Vec<u8> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer
        .write_record(fieldsync_tests::roster_headers())
        .expect("header");
    writer
        .write_record([
            number,
            township,
            village,
            "金丝雀",
            phone,
            "测试组1号",
            "一般贫困户",
            "缺技术",
            "",
            "",
            "金丝雀",
            "户主",
            "男",
            id_number,
            &format!(
                "{}-{}-{}",
                &id_number[6..10],
                &id_number[10..12],
                &id_number[12..14]
            ),
            "健康",
            "普通劳动力",
            "非在校生",
            "无",
            "0",
            "是",
            "否",
            "否",
        ])
        .expect("row");
    writer.into_inner().expect("csv")
}

fn multipart(file_name: &str, bytes: &[u8]) -> (String, Vec<u8>) {
    let boundary = "fieldsync-pii-boundary-3c2a";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Upload a roster file and wait for its dry run; returns the settled job.
async fn dry_run(server: &TestServer, county: &reqwest::Client, bytes: &[u8]) -> Value {
    let (content_type, body) = multipart("金丝雀.csv", bytes);
    let response = county
        .post(format!("{}/console/api/import", server.url()))
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .body(body)
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let job: Value = response.json().await.expect("json");
    settled(server, county, job["job_id"].as_str().expect("job id")).await
}

async fn settled(server: &TestServer, county: &reqwest::Client, job_id: &str) -> Value {
    county
        .get(format!(
            "{}/console/api/import/{job_id}?wait=true",
            server.url()
        ))
        .send()
        .await
        .expect("job")
        .json()
        .await
        .expect("json")
}

async fn apply(server: &TestServer, county: &reqwest::Client, job_id: &str) -> Value {
    let response = county
        .post(format!(
            "{}/console/api/import/{job_id}/apply",
            server.url()
        ))
        .send()
        .await
        .expect("apply");
    assert!(response.status().is_success(), "{}", response.status());
    settled(server, county, job_id).await
}

/// The first township of the demo county and one of its villages, by name.
async fn a_village(server: &TestServer) -> (String, String) {
    let store = &server.state.store;
    let townships = store
        .list_areas(Some(fieldsync_server::demo::DEMO_COUNTY_ID))
        .await
        .expect("townships");
    let township = &townships[0];
    let village = store
        .list_areas(Some(&township.area_id))
        .await
        .expect("villages")
        .remove(0);
    (township.name.clone(), village.name)
}

async fn download(browser: &reqwest::Client, server: &TestServer, path: &str) -> Vec<u8> {
    let response = browser
        .get(format!("{}{path}", server.url()))
        .send()
        .await
        .expect("export");
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    response.bytes().await.expect("body").to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_numbers_from_every_entry_path_are_nowhere_in_plain_text_but_the_full_export() {
    let logs = captured_logs();
    let server = TestServer::start().await;
    let edited_phone = "13900990011";
    let conflicting_phone = "13900990033";
    let imported_phone = "13900990022";
    let edited_id = canary_id("1980-01-01", 991);
    let added_id = canary_id("1990-02-02", 997);
    let imported_id = canary_id("1970-03-03", 993);
    let canaries = [
        edited_phone,
        conflicting_phone,
        imported_phone,
        edited_id.as_str(),
        added_id.as_str(),
        imported_id.as_str(),
    ];

    // A cadre's phone edits the household phone and the head's ID number, and adds a member.
    let (phone, phone_dir) = phone_of(&server, "cadre01").await;
    let (other_phone, other_dir) = phone_of(&server, "cadre01").await;
    let household_id = phone.households().expect("households")[0]
        .household_id
        .clone();
    let card = phone
        .household(&household_id)
        .expect("card")
        .expect("on the phone");
    let head = card
        .current_members()
        .find(|member| member.relation == Relation::Head)
        .expect("a head")
        .member_id
        .clone();
    phone
        .edit_household_field(
            &household_id,
            FieldTarget::Household,
            "phone",
            json!(edited_phone),
        )
        .expect("edit phone");
    phone
        .edit_household_field(
            &household_id,
            FieldTarget::Member(head.clone()),
            "id_number",
            json!(edited_id),
        )
        .expect("edit id");
    phone
        .add_member(
            &household_id,
            member("金丝雀子", Relation::Son, &added_id, "1990-02-02"),
        )
        .expect("add member");
    // A 2026 income registration puts the household in the 2026 income export.
    phone
        .correct_income(
            &household_id,
            2026,
            1,
            fieldsync_model::income::IncomeComponents {
                wage_fen: 300_000,
                ..Default::default()
            },
        )
        .expect("income");
    // The second phone, offline meanwhile, sets another phone number: a conflict record
    // holding both values once both have synced.
    other_phone
        .edit_household_field(
            &household_id,
            FieldTarget::Household,
            "phone",
            json!(conflicting_phone),
        )
        .expect("concurrent edit");
    phone.sync().await.expect("sync");
    other_phone.sync().await.expect("sync other");
    phone.sync().await.expect("pull the other phone's edit");
    // The phones' own databases (client-core seals the same fields) hold none either.
    for folder in [phone_dir.path(), other_dir.path()] {
        assert_eq!(
            hits_in_folder(folder, &canaries),
            Vec::<(String, Vec<String>)>::new(),
            "plain personal data in a phone's data folder"
        );
    }
    let stored = server
        .state
        .store
        .get_household(&household_id)
        .await
        .expect("read")
        .expect("household");
    assert!(
        stored
            .current_members()
            .any(|member| member.id_number == added_id),
        "the store hands back plain values"
    );
    assert!(
        stored
            .current_members()
            .any(|member| member.id_number == edited_id)
    );
    let township_id = stored.township_id.clone();
    let conflicts = server
        .state
        .store
        .open_conflicts(&township_id)
        .await
        .expect("conflicts");
    assert!(
        conflicts.iter().any(|conflict| {
            let values = format!("{:?}", conflict);
            values.contains(edited_phone) && values.contains(conflicting_phone)
        }),
        "the conflict record reads back with both plain values"
    );

    // The county admin imports a new household through the console.
    let county = console_login(&server, "county").await;
    let (township, village) = a_village(&server).await;
    let job = dry_run(
        &server,
        &county,
        &roster_csv(
            "990000000001",
            &township,
            &village,
            imported_phone,
            &imported_id,
        ),
    )
    .await;
    assert_eq!(job["phase"], "ready", "{job}");
    let job = apply(&server, &county, job["job_id"].as_str().expect("id")).await;
    assert_eq!(job["phase"], "applied", "{job}");

    // While the server runs: the database file and its WAL hold no canary.
    assert_eq!(
        database_hits(&server.data_path(), &canaries),
        Vec::<(String, Vec<String>)>::new(),
        "plain personal data in the running server's database"
    );
    // Masked exports carry none; the audited full export carries them.
    let masked = download(&county, &server, "/console/exports/income.csv?year=2026").await;
    let supervisor = console_login(&server, "township1").await;
    let supervisor_masked = download(
        &supervisor,
        &server,
        "/console/exports/income.csv?year=2026",
    )
    .await;
    let visits_masked = download(
        &county,
        &server,
        "/console/exports/visits.csv?month=2026-03",
    )
    .await;
    for export in [&masked, &supervisor_masked, &visits_masked] {
        assert_eq!(
            hits(export, &canaries),
            Vec::<String>::new(),
            "masked export"
        );
    }
    let full = download(
        &county,
        &server,
        "/console/exports/income.csv?year=2026&full=1",
    )
    .await;
    let full_hits = hits(&full, &canaries);
    assert!(
        full_hits.contains(&edited_id),
        "the full export shows the edited head's ID number: {full_hits:?}"
    );
    // The export may have spilled rows to temporary files; none may stay behind with data.
    assert_eq!(
        hits_in_folder(&server.data_path().join("blobs"), &canaries),
        Vec::<(String, Vec<String>)>::new(),
        "blob folder"
    );

    // After the server stopped: the files it leaves behind, and everything it logged.
    let (data_dir, key_dir) = server.stop_keeping_files().await;
    assert_eq!(
        hits_in_folder(data_dir.path(), &canaries),
        Vec::<(String, Vec<String>)>::new(),
        "plain personal data in the stopped server's data folder"
    );
    let logged = logs
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    assert!(!logged.is_empty(), "the server's logs were captured");
    assert_eq!(hits(&logged, &canaries), Vec::<String>::new(), "logs");
    // The key folder is separate: without it the data folder does not open.
    assert!(key_dir.path().join("pii.key").exists());
    assert!(key_dir.path().join("pii-index.key").exists());
}

#[tokio::test]
async fn rotation_reseals_every_value_and_old_data_still_reads() {
    let server = TestServer::start().await;
    let (phone, _phone_dir) = phone_of(&server, "cadre01").await;
    let household_id = phone.households().expect("households")[0]
        .household_id
        .clone();
    phone
        .edit_household_field(
            &household_id,
            FieldTarget::Household,
            "phone",
            json!("13900990044"),
        )
        .expect("edit");
    phone.sync().await.expect("sync");
    let before = server
        .state
        .store
        .get_household(&household_id)
        .await
        .expect("read")
        .expect("household");
    // A stored import job (its preview and plan are sealed): rotation reseals it too.
    let admin = console_login(&server, fieldsync_server::demo::DEMO_COUNTY_ADMIN).await;
    let area_file = "统计用区划代码,名称,层级,上级区划代码\n522731101299,云上村,村,522731101000\n";
    let (content_type, body) =
        fieldsync_tests::multipart_file_body("行政区划.csv", area_file.as_bytes());
    let job: Value = admin
        .post(format!("{}/console/api/areas/import", server.url()))
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .body(body)
        .send()
        .await
        .expect("upload")
        .json()
        .await
        .expect("job");
    let job_id = job["job_id"].as_str().expect("job id").to_owned();
    let ready: Value = admin
        .get(format!(
            "{}/console/api/areas/import/{job_id}?wait=true",
            server.url()
        ))
        .send()
        .await
        .expect("job")
        .json()
        .await
        .expect("job");
    assert_eq!(ready["phase"], "ready", "{ready}");
    let county = fieldsync_server::demo::DEMO_COUNTY_ID;
    let job_before = server
        .state
        .store
        .import_job("areas", county, &job_id)
        .await
        .expect("read the job")
        .expect("stored");
    assert!(job_before.plan_json.is_some(), "a ready job keeps its plan");
    let (data_dir, key_dir) = server.stop_keeping_files().await;
    let old_key = std::fs::read_to_string(key_dir.path().join("pii.key")).expect("key");
    let database = std::fs::read(data_dir.path().join("fieldsync.sqlite3")).expect("db");

    let settings = Settings {
        data_dir: data_dir.path().to_owned(),
        key_dir: Some(key_dir.path().to_owned()),
        ..Settings::default()
    };
    let report = fieldsync_server::pii_rotation::rotate_pii_key(&settings)
        .await
        .expect("rotate");
    assert!(report.rows_resealed > 300, "{report:?}");
    assert_ne!(report.retired_key_id, report.new_key_id);
    let new_key = std::fs::read_to_string(key_dir.path().join("pii.key")).expect("key");
    assert_ne!(old_key, new_key);
    let retired = key_dir
        .path()
        .join(format!("pii-{}.key", report.retired_key_id));
    assert_eq!(std::fs::read_to_string(&retired).expect("retired"), old_key);
    // Every stored value now names the new key; none the old one.
    let after = std::fs::read(data_dir.path().join("fieldsync.sqlite3")).expect("db");
    let old_marker = format!("enc:v1:{}:", report.retired_key_id);
    let new_marker = format!("enc:v1:{}:", report.new_key_id);
    assert!(hits(&database, &[&old_marker]).len() == 1);
    assert_eq!(hits(&after, &[&old_marker]), Vec::<String>::new());
    assert_eq!(hits(&after, &[&new_marker]).len(), 1);

    // The data reads back the same with the rotated key folder.
    let cipher = PiiCipher::load_or_create(key_dir.path()).expect("keys");
    let store = SqliteStore::open(&settings.sqlite_path(), cipher).expect("open");
    use fieldsync_server::store::HouseholdsStore;
    let reread = store
        .get_household(&household_id)
        .await
        .expect("read")
        .expect("household");
    assert_eq!(reread, before);
    assert_eq!(reread.phone, "13900990044");
    use fieldsync_server::store::JobsStore;
    let job_after = store
        .import_job("areas", county, &job_id)
        .await
        .expect("the job opens with the new key")
        .expect("stored");
    assert_eq!(job_after, job_before);
    // A second rotation still reads values sealed two keys ago (backups).
    drop(store);
    let second = fieldsync_server::pii_rotation::rotate_pii_key(&settings)
        .await
        .expect("rotate again");
    assert_eq!(second.retired_key_id, report.new_key_id);
}

#[tokio::test]
async fn the_wrong_key_folder_fails_with_a_typed_error_not_garbage() {
    let server = TestServer::start().await;
    let (phone, _phone_dir) = phone_of(&server, "cadre01").await;
    let household_id = phone.households().expect("households")[0]
        .household_id
        .clone();
    let (data_dir, key_dir) = server.stop_keeping_files().await;
    let path = data_dir.path().join("fieldsync.sqlite3");

    // A fresh key folder (e.g. a backup restored without its keys): opening works (no key
    // is needed to open the file), but every personal value refuses to open.
    let other_keys = tempfile::tempdir().expect("temp dir");
    let cipher = PiiCipher::load_or_create(other_keys.path()).expect("keys");
    let store = SqliteStore::open(&path, cipher).expect("open");
    use fieldsync_server::store::{HouseholdsStore, RosterStore};
    match store.get_household(&household_id).await {
        Err(StoreError::Sealed(message)) => {
            assert!(message.contains("not in the key folder"), "{message}");
        }
        other => panic!("expected a sealed-value error, got {other:?}"),
    }
    drop(store);

    // With the right keys, a sealed number copied into another household's card (someone
    // with write access to the file swapping numbers between rows) does not open: the
    // associated data binds it to its row.
    let store = SqliteStore::open(
        &path,
        PiiCipher::load_or_create(key_dir.path()).expect("keys"),
    )
    .expect("open");
    let other_id = store
        .county_roster(fieldsync_server::demo::DEMO_COUNTY_ID)
        .await
        .expect("roster")
        .households
        .into_iter()
        .find(|household| household.household_id != household_id && !household.phone.is_empty())
        .expect("another household with a phone")
        .household_id;
    drop(store);
    let raw = rusqlite::Connection::open(&path).expect("raw open");
    let moved = raw
        .execute(
            "UPDATE households
                SET card = json_set(card, '$.phone',
                    (SELECT json_extract(card, '$.phone') FROM households WHERE household_id = ?1))
              WHERE household_id = ?2",
            rusqlite::params![other_id, household_id],
        )
        .expect("swap");
    assert_eq!(moved, 1);
    drop(raw);
    let store = SqliteStore::open(
        &path,
        PiiCipher::load_or_create(key_dir.path()).expect("keys"),
    )
    .expect("open");
    match store.get_household(&household_id).await {
        Err(StoreError::Sealed(message)) => {
            assert!(message.contains("wrong key or moved"), "{message}");
        }
        other => panic!("expected a sealed-value error, got {other:?}"),
    }
    assert!(
        store
            .get_household(&other_id)
            .await
            .expect("read")
            .is_some()
    );
}

#[tokio::test]
async fn the_roster_import_refuses_a_duplicate_id_number_in_the_dry_run_and_at_apply() {
    let server = TestServer::start().await;
    let county = console_login(&server, "county").await;
    let (township, village) = a_village(&server).await;

    // An ID number already stored in the county: the dry run names the row (the county
    // roster is read back in plain text through the store).
    let stored = server
        .state
        .store
        .county_roster(fieldsync_server::demo::DEMO_COUNTY_ID)
        .await
        .expect("roster")
        .households
        .remove(0);
    let taken = stored.members[0].id_number.clone();
    let job = dry_run(
        &server,
        &county,
        &roster_csv("990000000002", &township, &village, "13900990055", &taken),
    )
    .await;
    assert_eq!(job["phase"], "ready", "{job}");
    assert!(
        job.to_string().contains("该证件号码已登记在户编号"),
        "the dry run names the duplicate: {job}"
    );

    // A fresh number passes the dry run; a phone then adds a member with it to another
    // household before the import is applied. The apply-time check finds it through the
    // blind index (the numbers themselves are sealed) and the import stores nothing.
    let fresh = canary_id("1975-05-05", 995);
    let job = dry_run(
        &server,
        &county,
        &roster_csv("990000000003", &township, &village, "13900990066", &fresh),
    )
    .await;
    assert_eq!(job["phase"], "ready", "{job}");
    assert_eq!(job["preview"]["bad_rows"], 0, "{job}");
    let (phone, _phone_dir) = phone_of(&server, "cadre01").await;
    let household_id = phone.households().expect("households")[0]
        .household_id
        .clone();
    phone
        .add_member(
            &household_id,
            member("抢先", Relation::Son, &fresh, "1975-05-05"),
        )
        .expect("add");
    phone.sync().await.expect("sync");
    let job = apply(&server, &county, job["job_id"].as_str().expect("id")).await;
    assert_eq!(job["phase"], "failed", "{job}");
    assert!(job.to_string().contains("已登记在另一户"), "{job}");
    assert!(
        !job.to_string().contains(&fresh),
        "the message masks the number: {job}"
    );
    let roster = server
        .state
        .store
        .county_roster(fieldsync_server::demo::DEMO_COUNTY_ID)
        .await
        .expect("roster");
    assert!(
        roster
            .households
            .iter()
            .all(|household| household.national_household_number != "990000000003"),
        "nothing of the refused import was stored"
    );
}
