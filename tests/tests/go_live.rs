//! Going live without the demo (issue 12), with the real `fieldsync-server` binary on real
//! folders: a folder nobody initialised is refused with what to run (and left uncreated);
//! `init` creates the county and its first administrator with a one-time password that is
//! printed once, refuses a second run, and refuses bad input changing nothing; the
//! administrator's first login must change that password; the server then serves.

use std::path::Path;

use fieldsync_tests::{
    ServerProcess, command_without_fieldsync_environment, console_login_with,
    one_time_passwords_in, server_binary,
};
use reqwest::StatusCode;

/// Run the server binary with `arguments` on `data_dir`: exit code, stdout, stderr.
fn run_server(data_dir: &Path, arguments: &[&str]) -> (i32, String, String) {
    let output = command_without_fieldsync_environment(&server_binary())
        .arg("--data-dir")
        .arg(data_dir)
        .args(arguments)
        .output()
        .expect("run fieldsync-server");
    (
        output.status.code().expect("exit code"),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `init` for 志丹县 on `data_dir`; the printed one-time password.
fn init_county(data_dir: &Path) -> String {
    let (code, stdout, stderr) = run_server(
        data_dir,
        &[
            "init",
            "--county-code",
            "610625000000",
            "--county-name",
            "志丹县",
            "--admin-username",
            "admin",
        ],
    );
    assert_eq!(code, 0, "init: {stdout}\n{stderr}");
    let marker = "one-time password: ";
    let start = stdout.find(marker).expect("the password is printed") + marker.len();
    stdout[start..]
        .split_whitespace()
        .next()
        .expect("password")
        .to_owned()
}

#[test]
fn an_uninitialised_folder_is_refused_with_what_to_run_and_not_created() {
    let parent = tempfile::tempdir().expect("temp dir");
    let data_dir = parent.path().join("county-data");
    let (code, stdout, stderr) = run_server(&data_dir, &["--listen", "127.0.0.1:0"]);
    assert_ne!(code, 0, "{stdout}");
    assert!(stderr.contains("尚未初始化"), "{stderr}");
    assert!(stderr.contains("fieldsync-server --data-dir"), "{stderr}");
    assert!(stderr.contains(" init "), "{stderr}");
    assert!(stderr.contains("--demo"), "{stderr}");
    assert!(!stderr.contains("stack backtrace"), "{stderr}");
    assert!(!data_dir.exists(), "a mistyped folder is not created");
}

#[test]
fn init_refuses_bad_input_and_a_second_run_changing_nothing() {
    let parent = tempfile::tempdir().expect("temp dir");
    let data_dir = parent.path().join("county-data");
    for (arguments, expected) in [
        (
            vec![
                "init",
                "--county-code",
                "61062500000",
                "--county-name",
                "志丹县",
            ],
            "12位",
        ),
        (
            vec![
                "init",
                "--county-code",
                "610625001000",
                "--county-name",
                "志丹县",
            ],
            "000000",
        ),
        (
            vec![
                "init",
                "--county-code",
                "610625000000",
                "--county-name",
                " ",
            ],
            "县名不能为空",
        ),
        (
            vec![
                "init",
                "--county-code",
                "610625000000",
                "--county-name",
                "志丹县",
                "--admin-username",
                "管理员",
            ],
            "用户名",
        ),
    ] {
        let (code, _, stderr) = run_server(&data_dir, &arguments);
        assert_ne!(code, 0, "{arguments:?}");
        assert!(stderr.contains(expected), "{arguments:?}: {stderr}");
        assert!(!data_dir.exists(), "{arguments:?}: nothing created");
    }
    // A password file whose first line breaks the password rules.
    let short = parent.path().join("short-password");
    std::fs::write(&short, "abc\n").expect("write");
    let (code, _, stderr) = run_server(
        &data_dir,
        &[
            "init",
            "--county-code",
            "610625000000",
            "--county-name",
            "志丹县",
            "--password-file",
            short.to_str().expect("utf-8 path"),
        ],
    );
    assert_ne!(code, 0);
    assert!(stderr.contains("密码文件"), "{stderr}");
    assert!(!data_dir.exists());

    let password = init_county(&data_dir);
    assert_eq!(password.len(), 12);
    let database = data_dir.join("fieldsync.sqlite3");
    let before = std::fs::read(&database).expect("database");
    let (code, _, stderr) = run_server(
        &data_dir,
        &[
            "init",
            "--county-code",
            "610625000000",
            "--county-name",
            "志丹县",
        ],
    );
    assert_ne!(code, 0);
    assert!(stderr.contains("已初始化"), "{stderr}");
    assert_eq!(
        std::fs::read(&database).expect("database"),
        before,
        "a second init changes nothing"
    );
}

#[test]
fn init_reads_the_first_password_from_a_file_and_never_prints_it() {
    let parent = tempfile::tempdir().expect("temp dir");
    let data_dir = parent.path().join("county-data");
    let file = parent.path().join("first-password");
    std::fs::write(&file, "县里定的初始密码2026\n").expect("write");
    let (code, stdout, stderr) = run_server(
        &data_dir,
        &[
            "init",
            "--county-code",
            "610625000000",
            "--county-name",
            "志丹县",
            "--password-file",
            file.to_str().expect("utf-8 path"),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(!stdout.contains("县里定的初始密码2026"), "{stdout}");
    assert!(!stderr.contains("县里定的初始密码2026"), "{stderr}");
    assert!(stdout.contains("密码取自文件"), "{stdout}");
}

#[tokio::test]
async fn the_first_administrator_changes_the_one_time_password_then_manages_the_county() {
    let parent = tempfile::tempdir().expect("temp dir");
    let data_dir = parent.path().join("county-data");
    let password = init_county(&data_dir);
    let server = ServerProcess::start(&data_dir, false).await;

    let http = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let login = http
        .post(format!("{}/console/login", server.url()))
        .form(&[("username", "admin"), ("password", password.as_str())])
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    assert_eq!(login.headers()["location"], "/console/password");
    let accounts = http
        .get(format!("{}/console/accounts", server.url()))
        .send()
        .await
        .expect("accounts");
    assert_eq!(
        accounts.headers()["location"],
        "/console/password",
        "every page waits for the new password"
    );

    let admin = console_login_with(&server.url(), "admin", &password, "县管理员的正式密码").await;
    let accounts = admin
        .get(format!("{}/console/accounts", server.url()))
        .send()
        .await
        .expect("accounts")
        .text()
        .await
        .expect("text");
    assert!(accounts.contains("账号管理"), "{accounts}");
    assert!(accounts.contains("admin"), "{accounts}");
    assert!(accounts.contains("共 1 个账号"), "{accounts}");
    assert!(
        !server.recent_output().contains(&password),
        "the one-time password is in no log"
    );
}

// ----- the whole go-live path (issue 12, "Done when") -----

async fn post_file(
    browser: &reqwest::Client,
    url: &str,
    name: &str,
    bytes: &[u8],
) -> reqwest::Response {
    let (content_type, body) = fieldsync_tests::multipart_file_body(name, bytes);
    browser
        .post(url)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("upload")
}

async fn json_of(response: reqwest::Response) -> serde_json::Value {
    let status = response.status();
    let text = response.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("{status}: {text}"))
}

/// Upload to a background import's JSON API, wait for the dry run, apply, wait again.
async fn import_and_apply(browser: &reqwest::Client, base: &str, name: &str, bytes: &[u8]) {
    let job = json_of(post_file(browser, base, name, bytes).await).await;
    let job_id = job["job_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{job}"))
        .to_owned();
    let ready = json_of(
        browser
            .get(format!("{base}/{job_id}?wait=true"))
            .send()
            .await
            .expect("job"),
    )
    .await;
    assert_eq!(ready["phase"], "ready", "{ready}");
    let applied = browser
        .post(format!("{base}/{job_id}/apply"))
        .send()
        .await
        .expect("apply");
    assert!(applied.status().is_success(), "{}", applied.status());
    let done = json_of(
        browser
            .get(format!("{base}/{job_id}?wait=true"))
            .send()
            .await
            .expect("job"),
    )
    .await;
    assert_eq!(done["phase"], "applied", "{done}");
}

fn areas_csv() -> String {
    [
        "统计用区划代码,名称,层级,上级区划代码,中心点纬度,中心点经度,坐标系,贫困村",
        "610625000000,志丹县,县,,,,,",
        "610625101000,保安镇,乡镇,610625000000,,,,",
        "610625101201,侯市村,村,610625101000,36.8230,108.7680,WGS-84,贫困村",
    ]
    .join("\n")
}

fn household_csv() -> Vec<u8> {
    use fieldsync_model::codes::{
        CodeList, Health, HouseholdAttribute, LabourCapacity, PovertyCause, Relation, Schooling,
        Sex,
    };
    let headers = fieldsync_tests::roster_headers();
    let body = "61062519650302001";
    let id_number = format!(
        "{body}{}",
        fieldsync_model::id_number::check_character(body).expect("digits")
    );
    let mut row = vec![String::new(); headers.len()];
    let mut set = |header: &str, value: &str| {
        let position = headers.iter().position(|h| *h == header).expect(header);
        row[position] = value.to_owned();
    };
    set("户编号", "610625101201001");
    set("乡镇", "保安镇");
    set("行政村", "侯市村");
    set("户主姓名", "高有福");
    set("户属性", HouseholdAttribute::ALL[0].label_zh());
    set("主要致贫原因", PovertyCause::ALL[0].label_zh());
    set("姓名", "高有福");
    set("与户主关系", Relation::Head.label_zh());
    set("性别", Sex::Male.label_zh());
    set("证件号码", &id_number);
    set("出生日期", "1965-03-02");
    set("健康状况", Health::ALL[0].label_zh());
    set("劳动技能", LabourCapacity::ALL[0].label_zh());
    set("在校生情况", Schooling::ALL[0].label_zh());
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(&headers).expect("header");
    writer.write_record(&row).expect("row");
    writer.into_inner().expect("csv")
}

/// From an empty folder, without the demo: init; the administrator logs in and changes
/// the password; areas, then cadres, then households are imported; a pairing is set; a
/// cadre logs in on a phone and records a visit that a new supervisor approves; the cadre's
/// password is reset; the cadre's phone is revoked; a backup taken while serving is
/// restored into a new folder, and a server on it has the approved visit and its photo.
#[tokio::test]
async fn a_county_goes_live_from_an_empty_folder_without_the_demo() {
    use fieldsync_client::{Client, NewVisit, SessionState};
    use fieldsync_model::codes::{Crs, LocationProvider, VisitMode};
    use fieldsync_model::visit::GpsFix;
    use time::{Duration, OffsetDateTime};

    let parent = tempfile::tempdir().expect("temp dir");
    let data_dir = parent.path().join("county-data");
    // 1. init
    let admin_password = init_county(&data_dir);
    let server = ServerProcess::start(&data_dir, false).await;
    let url = server.url();
    // 2. the administrator logs in and changes the one-time password
    let admin = console_login_with(&url, "admin", &admin_password, "县管理员的正式密码").await;

    // 3. areas, then cadres, then households
    import_and_apply(
        &admin,
        &format!("{url}/console/api/areas/import"),
        "志丹县区划.csv",
        areas_csv().as_bytes(),
    )
    .await;
    let cadre_body = "61062519800101123";
    let cadre_roster = format!(
        "姓名,手机号,身份证号,帮扶单位,职级,乡镇,驻村工作队\n高峰,13991110001,{cadre_body}{},县农业农村局,科级,保安镇,是\n",
        fieldsync_model::id_number::check_character(cadre_body).expect("digits")
    );
    let uploaded = post_file(
        &admin,
        &format!("{url}/console/cadres/import"),
        "帮扶干部花名册.csv",
        cadre_roster.as_bytes(),
    )
    .await;
    assert_eq!(uploaded.status(), StatusCode::SEE_OTHER);
    let plan = uploaded.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    let applied = admin
        .post(format!("{url}{plan}/apply"))
        .send()
        .await
        .expect("apply");
    assert_eq!(applied.status(), StatusCode::SEE_OTHER);
    let sheet = admin
        .get(format!("{url}{plan}"))
        .send()
        .await
        .expect("passwords")
        .text()
        .await
        .expect("text");
    let cadre_password = one_time_passwords_in(&sheet)
        .pop()
        .expect("the cadre's password");
    import_and_apply(
        &admin,
        &format!("{url}/console/api/import"),
        "建档立卡花名册.csv",
        &household_csv(),
    )
    .await;

    // A supervisor for the township, created on the accounts page.
    let created = admin
        .post(format!("{url}/console/accounts"))
        .form(&[
            ("username", "baoan-review"),
            ("display_name", "保安镇审核员"),
            ("role", "township"),
            ("area_id", "610625101000"),
        ])
        .send()
        .await
        .expect("create supervisor");
    assert_eq!(created.status(), StatusCode::OK);
    let supervisor_password = one_time_passwords_in(&created.text().await.expect("page"))
        .pop()
        .expect("password");

    // 4. pairing: the cadre becomes the household's 第一帮扶责任人
    let pairings = json_of(
        admin
            .get(format!("{url}/console/api/pairings"))
            .send()
            .await
            .expect("pairings"),
    )
    .await;
    let household_id = pairings["households"][0]["household_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{pairings}"))
        .to_owned();
    let cadre_id = pairings["cadres"][0]["user_id"]
        .as_str()
        .expect("cadre")
        .to_owned();
    let assigned = admin
        .post(format!("{url}/console/api/pairings/assign"))
        .json(&serde_json::json!({
            "household_id": household_id,
            "cadre_user_id": cadre_id,
            "confirm_over_quota": false,
        }))
        .send()
        .await
        .expect("assign");
    assert_eq!(assigned.status(), StatusCode::OK);

    // 5. the cadre logs in on a phone (changing the one-time password), records a visit
    let phone_folder = tempfile::tempdir().expect("temp dir");
    let phone = Client::open(phone_folder.path(), &url).expect("phone");
    let login = phone
        .login("13991110001", &cadre_password)
        .await
        .expect("login");
    assert!(login.must_change_password);
    phone
        .change_password(&cadre_password, "高峰的新密码2026")
        .await
        .expect("change on the phone");
    assert!(
        !phone
            .user()
            .expect("user")
            .expect("logged in")
            .must_change_password
    );
    phone.sync().await.expect("first sync");
    assert_eq!(phone.households().expect("households").len(), 1);
    let now = OffsetDateTime::now_utc();
    let visit_id = phone
        .record_visit(NewVisit {
            observed_situation: "户主在家，玉米已收，身体尚可，医保已续缴。".into(),
            plan_progress: "养羊项目进展正常。".into(),
            gps: Some(GpsFix {
                lat: 36.8231,
                lon: 108.7681,
                crs: Crs::Wgs84,
                accuracy_m: 8.0,
                provider: Some(LocationProvider::Gps),
                is_mock: false,
                fix_time: Some(now - Duration::minutes(20)),
            }),
            photo_paths: vec![fieldsync_tests::test_photo("gps_DSCN0010.jpg")],
            ..NewVisit::new(
                &household_id,
                VisitMode::InPerson,
                now - Duration::minutes(40),
                now,
            )
        })
        .expect("record");
    phone.sync().await.expect("sync the visit");

    // ... that the supervisor approves
    let supervisor = console_login_with(
        &url,
        "baoan-review",
        &supervisor_password,
        "审核员的正式密码",
    )
    .await;
    let visit = json_of(
        supervisor
            .get(format!("{url}/console/api/visits/{visit_id}"))
            .send()
            .await
            .expect("visit"),
    )
    .await;
    let decided = supervisor
        .post(format!("{url}/console/api/visits/{visit_id}/decision"))
        .json(&serde_json::json!({
            "decision": "approve",
            "revision": visit["revision"],
            "content_hash": visit["content_hash"],
        }))
        .send()
        .await
        .expect("approve");
    assert_eq!(
        decided.status(),
        StatusCode::OK,
        "{}",
        decided.text().await.unwrap_or_default()
    );

    // 6. the cadre's password is reset: the phone's session ends
    let reset = admin
        .post(format!("{url}/console/accounts/{cadre_id}/reset-password"))
        .send()
        .await
        .expect("reset");
    let new_one_time = one_time_passwords_in(&reset.text().await.expect("page"))
        .pop()
        .expect("password");
    assert!(phone.sync().await.is_err(), "the old session ended");
    assert!(matches!(
        phone.session_state().expect("state"),
        SessionState::SignedOutOnServer(_)
    ));
    let again = phone
        .login("13991110001", &new_one_time)
        .await
        .expect("login again");
    assert!(again.must_change_password);
    phone
        .change_password(&new_one_time, "高峰的第二个密码")
        .await
        .expect("change");
    phone.sync().await.expect("sync after the reset");

    // 7. the cadre's phone is revoked
    let revoked = admin
        .post(format!("{url}/console/users/{cadre_id}/devices/revoke-all"))
        .send()
        .await
        .expect("revoke");
    assert!(revoked.status().is_redirection() || revoked.status().is_success());
    assert!(phone.sync().await.is_err());
    assert!(matches!(
        phone.session_state().expect("state"),
        SessionState::SignedOutOnServer(_)
    ));

    // 8. a backup while serving, restored into a new folder, served again
    let backup_dir = parent.path().join("backup-1");
    let (code, stdout, stderr) = run_server(
        &data_dir,
        &["backup", backup_dir.to_str().expect("utf-8"), "--with-keys"],
    );
    assert_eq!(code, 0, "backup: {stdout}\n{stderr}");
    drop(server);
    let restored_dir = parent.path().join("restored");
    let (code, stdout, stderr) = run_server(
        &restored_dir,
        &["restore", backup_dir.to_str().expect("utf-8")],
    );
    assert_eq!(code, 0, "restore: {stdout}\n{stderr}");
    let restored = ServerProcess::start(&restored_dir, false).await;
    let supervisor =
        console_login_with(&restored.url(), "baoan-review", "审核员的正式密码", "").await;
    let visit = json_of(
        supervisor
            .get(format!("{}/console/api/visits/{visit_id}", restored.url()))
            .send()
            .await
            .expect("visit"),
    )
    .await;
    assert_eq!(visit["state"], "approved", "{visit}");
    let photo_id = visit["photo_ids_received"][0]
        .as_str()
        .unwrap_or_else(|| panic!("{visit}"))
        .to_owned();
    let photo = supervisor
        .get(format!(
            "{}/console/photos/{photo_id}/display",
            restored.url()
        ))
        .send()
        .await
        .expect("photo");
    assert_eq!(photo.status(), StatusCode::OK, "the photo came back too");
}
