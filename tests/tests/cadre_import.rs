//! Cadre roster import (帮扶干部花名册导入, issue 12 §3) over real HTTP against a real server
//! and SQLite file: a sabotaged roster's dry run names every bad cell by row and column and
//! stores nothing; applying creates the good rows' accounts with one-time passwords that
//! log in and must be changed; the password sheet downloads as XLSX (audited, county
//! administrator only); a re-import creates nothing; GBK and non-roster files are refused.

use calamine::{Reader, Xlsx};
use fieldsync_proto::v1;
use fieldsync_server::demo::{DEMO_COUNTY_ADMIN, DEMO_COUNTY_ID};
use fieldsync_tests::{
    TestServer, client_info, console_login, multipart_file_body, one_time_passwords_in,
};
use reqwest::StatusCode;

const HEADER: &str = "姓名,手机号,身份证号,帮扶单位,职级,乡镇,驻村工作队,开始日期,结束日期";

/// ID number with a valid check digit for the 17 digits given.
fn id_number(body: &str) -> String {
    let check = fieldsync_model::id_number::check_character(body).expect("17 digits");
    format!("{body}{check}")
}

async fn township_names(server: &TestServer) -> (String, String) {
    let townships = server
        .state
        .store
        .list_areas(Some(DEMO_COUNTY_ID))
        .await
        .expect("areas");
    (townships[0].name.clone(), townships[1].area_id.clone())
}

/// A roster with three good rows and two bad ones (row numbers as Excel shows them: the
/// header is row 1).
async fn roster_csv(server: &TestServer) -> String {
    let (first_name, second_code) = township_names(server).await;
    let good = [
        format!(
            "孙丽,13912340001,{},县农业农村局,科级,{first_name},是,2026-03-01,",
            id_number("11010519800101123")
        ),
        format!(
            "李强,13912340002,{},县教育局,一般干部,{second_code},否,2026/3/1,2027-12-31",
            id_number("11010519810202234")
        ),
        format!(
            "周敏,13912340003,{},,,{first_name},,,",
            id_number("11010519820303345")
        ),
    ];
    let bad = [
        // Row 5: a mobile number one digit short.
        format!(
            "王五,1391234000,{},,科级,{first_name},是,,",
            id_number("11010519830404456")
        ),
        // Row 6: a wrong check digit and an unknown township.
        "赵六,13912340005,110105198405055671,,科级,不存在镇,是,,".to_owned(),
    ];
    let mut csv = format!("{HEADER}\n");
    for line in good
        .iter()
        .take(2)
        .chain(bad.iter())
        .chain(good.iter().skip(2))
    {
        csv.push_str(line);
        csv.push('\n');
    }
    csv
}

async fn upload(
    admin: &reqwest::Client,
    server: &TestServer,
    file_name: &str,
    bytes: &[u8],
) -> reqwest::Response {
    let (content_type, body) = multipart_file_body(file_name, bytes);
    admin
        .post(format!("{}/console/cadres/import", server.url()))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("upload")
}

async fn follow(
    admin: &reqwest::Client,
    server: &TestServer,
    response: &reqwest::Response,
) -> String {
    let location = response.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    admin
        .get(format!("{}{location}", server.url()))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("text")
}

fn number_in(page: &str, marker: &str) -> usize {
    let marker = format!("{marker}>");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("{marker} in page"))
        + marker.len();
    let end = page[start..].find('<').expect("end");
    page[start..start + end].parse().expect("number")
}

#[tokio::test]
async fn a_roster_is_checked_row_by_row_then_creates_accounts_with_one_time_passwords() {
    let server = TestServer::start().await;
    let admin = console_login(&server, DEMO_COUNTY_ADMIN).await;
    let before = server.state.store.account_count().await.expect("count");
    let csv = roster_csv(&server).await;

    let response = upload(&admin, &server, "花名册.csv", csv.as_bytes()).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let plan_path = response.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    let preview = follow(&admin, &server, &response).await;
    assert_eq!(number_in(&preview, "data-new-cadres"), 3);
    assert_eq!(number_in(&preview, "data-existing-cadres"), 0);
    assert_eq!(number_in(&preview, "data-bad-rows"), 2);
    for expected in [
        "<td>4</td><td>手机号</td>",
        "<td>5</td><td>身份证号</td>",
        "<td>5</td><td>乡镇</td>",
    ] {
        assert!(preview.contains(expected), "{expected} in the preview");
    }
    assert!(
        preview.contains("110105********") && !preview.contains(&id_number("11010519800101123")),
        "ID numbers are masked in the preview"
    );
    assert_eq!(
        server.state.store.account_count().await.expect("count"),
        before,
        "a dry run stores nothing"
    );

    // Another role cannot see the plan or apply it.
    let supervisor = console_login(&server, "township1").await;
    let refused = supervisor
        .post(format!("{}{plan_path}/apply", server.url()))
        .send()
        .await
        .expect("apply");
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    let applied = admin
        .post(format!("{}{plan_path}/apply", server.url()))
        .send()
        .await
        .expect("apply");
    assert_eq!(applied.status(), StatusCode::SEE_OTHER);
    let result = follow(&admin, &server, &applied).await;
    let passwords = one_time_passwords_in(&result);
    assert_eq!(passwords.len(), 3, "{result}");
    assert_eq!(
        server.state.store.account_count().await.expect("count"),
        before + 3
    );
    let again = admin
        .post(format!("{}{plan_path}/apply", server.url()))
        .send()
        .await
        .expect("apply twice");
    assert_eq!(again.status(), StatusCode::CONFLICT);
    assert_eq!(
        server.state.store.account_count().await.expect("count"),
        before + 3
    );

    // The first cadre logs in on a phone with the one-time password and is told to change it.
    let mut auth = v1::auth_client::AuthClient::new(server.channel().await);
    let login = auth
        .login(v1::LoginRequest {
            username: "13912340001".into(),
            password: passwords[0].clone(),
            device_id: uuid::Uuid::now_v7().to_string(),
            device_name: "红米 Note 12".into(),
            client: Some(client_info()),
            wants_refresh_token: false,
        })
        .await
        .expect("one-time login")
        .into_inner();
    assert!(login.must_change_password);
    let sun = server
        .state
        .store
        .account(&login.user_id)
        .await
        .expect("account")
        .expect("exists");
    assert_eq!(sun.details.unit, "县农业农村局");
    assert!(sun.details.team_member);
    assert_eq!(sun.details.active_from, "2026-03-01");
    let li = server
        .state
        .store
        .find_user_by_username("13912340002")
        .await
        .expect("find")
        .expect("李强");
    assert_eq!(
        li.area_id,
        township_names(&server).await.1,
        "a township by its code"
    );

    // The password sheet: XLSX, audited; the supervisor cannot download it.
    let forbidden = supervisor
        .get(format!("{}{plan_path}/passwords.xlsx", server.url()))
        .send()
        .await
        .expect("download");
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);
    let sheet = admin
        .get(format!("{}{plan_path}/passwords.xlsx", server.url()))
        .send()
        .await
        .expect("download");
    assert_eq!(sheet.status(), StatusCode::OK);
    let bytes = sheet.bytes().await.expect("bytes");
    let mut workbook = Xlsx::new(std::io::Cursor::new(bytes.to_vec())).expect("xlsx");
    let range = workbook.worksheet_range("一次性密码").expect("sheet");
    let rows: Vec<Vec<String>> = range
        .rows()
        .map(|row| row.iter().map(ToString::to_string).collect())
        .collect();
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert_eq!(rows[1][1], "孙丽");
    assert_eq!(rows[1][3], "13912340001");
    assert_eq!(rows[1][4], passwords[0]);
    let audit = server
        .state
        .store
        .audit_records(0, 10_000)
        .await
        .expect("audit");
    assert!(
        audit
            .iter()
            .any(|record| record.content.action == "cadre_roster_import"
                && record.content.row_count == 3)
    );
    assert!(
        audit
            .iter()
            .any(|record| record.content.action == "cadre_credentials_download")
    );
    assert!(
        audit
            .iter()
            .any(|record| record.content.action == "cadre_credentials_shown"
                && record.content.row_count == 3),
        "showing the passwords on the page is audited too"
    );

    // The same file again: the three are already accounts, nothing is created.
    let response = upload(&admin, &server, "花名册.csv", csv.as_bytes()).await;
    let preview = follow(&admin, &server, &response).await;
    assert_eq!(number_in(&preview, "data-new-cadres"), 0);
    assert_eq!(number_in(&preview, "data-existing-cadres"), 3);
    assert_eq!(number_in(&preview, "data-bad-rows"), 2);
}

#[tokio::test]
async fn files_that_are_not_a_roster_are_refused_with_the_reason() {
    let server = TestServer::start().await;
    let admin = console_login(&server, DEMO_COUNTY_ADMIN).await;
    let gbk = b"\xd0\xd5\xc3\xfb,\xca\xd6\xbb\xfa\xba\xc5\n".to_vec();
    for (name, bytes, expected) in [
        ("gbk.csv", gbk, "UTF-8"),
        ("empty.csv", Vec::new(), "空"),
        ("photo.csv", b"\x89PNG\r\n\x1a\n0000".to_vec(), "格式"),
        (
            "missing.csv",
            "姓名,乡镇\n孙丽,镇\n".as_bytes().to_vec(),
            "手机号",
        ),
    ] {
        let response = upload(&admin, &server, name, &bytes).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{name}");
        let page = response.text().await.expect("page");
        assert!(page.contains(expected), "{name}: {expected}");
    }
    let template = admin
        .get(format!(
            "{}/console/cadres/import/template.xlsx",
            server.url()
        ))
        .send()
        .await
        .expect("template");
    assert_eq!(template.status(), StatusCode::OK);
    // The template itself uploads as a roster whose only row (the example) names no real
    // township: one bad row, nothing else.
    let bytes = template.bytes().await.expect("bytes");
    let response = upload(&admin, &server, "template.xlsx", &bytes).await;
    let preview = follow(&admin, &server, &response).await;
    assert_eq!(number_in(&preview, "data-new-cadres"), 0);
    assert_eq!(number_in(&preview, "data-bad-rows"), 1);
}

#[tokio::test]
async fn a_checked_roster_and_its_passwords_survive_restarts() {
    let server = TestServer::start().await;
    let admin = console_login(&server, DEMO_COUNTY_ADMIN).await;
    let before = server.state.store.account_count().await.expect("count");
    let csv = roster_csv(&server).await;
    let response = upload(&admin, &server, "花名册.csv", csv.as_bytes()).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let plan_path = response.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();

    // Restarted between the dry run and the apply: the checked roster is still there.
    let server = server.restart().await;
    let preview = admin
        .get(format!("{}{plan_path}", server.url()))
        .send()
        .await
        .expect("plan page")
        .text()
        .await
        .expect("text");
    assert_eq!(number_in(&preview, "data-new-cadres"), 3, "{preview}");
    assert_eq!(number_in(&preview, "data-bad-rows"), 2);
    let applied = admin
        .post(format!("{}{plan_path}/apply", server.url()))
        .send()
        .await
        .expect("apply");
    assert_eq!(applied.status(), StatusCode::SEE_OTHER);
    let passwords = one_time_passwords_in(&follow(&admin, &server, &applied).await);
    assert_eq!(passwords.len(), 3);

    // Restarted after the apply: the same passwords can still be handed over, and the
    // roster is still applied once only.
    let server = server.restart().await;
    let page = admin
        .get(format!("{}{plan_path}", server.url()))
        .send()
        .await
        .expect("passwords page")
        .text()
        .await
        .expect("text");
    assert_eq!(one_time_passwords_in(&page), passwords);
    let again = admin
        .post(format!("{}{plan_path}/apply", server.url()))
        .send()
        .await
        .expect("apply again");
    assert_eq!(again.status(), StatusCode::CONFLICT);
    assert_eq!(
        server.state.store.account_count().await.expect("count"),
        before + 3
    );
    let unknown = admin
        .get(format!(
            "{}/console/cadres/import/0190b1c2-0000-7000-8000-000000000000",
            server.url()
        ))
        .send()
        .await
        .expect("unknown plan");
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
}
