//! The review loop in a real browser: headless Debian `chromium` driven through
//! `/usr/bin/chromedriver` (WebDriver, via fantoccini), interleaved with real client cores
//! against a real server on port 0.
//!
//! Two cadres submit visits from their phones; a supervisor logs in through the login form,
//! returns one visit with a reason on a field, a note and a deadline (clicking 退回), and
//! approves the other with the `a` keyboard shortcut. The cadre's phone syncs, shows the
//! task, fixes the visit and re-submits; the supervisor sees the diff and approves.
//! Screenshots of the queue, the submission page and the diff are saved under
//! `target/screenshots/` (or `$CARGO_TARGET_DIR/screenshots/`) for review.
//!
//! Without chromium or chromedriver the test prints "skipped: ..." and passes, unless
//! `FIELDSYNC_REQUIRE_BROWSER=1` (set by `.ci/run`), where it fails with the reason.
//! Nothing is ever downloaded.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration as StdDuration;

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::{Client as Browser, ClientBuilder, Locator};
use fieldsync_client::{Client, NewVisit, VisitState};
use fieldsync_model::codes::{
    CodeList, Disability, Health, HouseholdAttribute, LabourCapacity, LocationProvider,
    PovertyCause, Relation, Schooling, Sex, VisitMode,
};
use fieldsync_model::income::IncomeComponents;
use fieldsync_model::register::FieldTarget;
use fieldsync_model::visit::GpsFix;
use fieldsync_tests::{DEMO_PASSWORD, TestServer, phone_of, test_photo};
use time::{Duration, OffsetDateTime};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Upper bound for chromedriver to report readiness; it normally takes well under a second.
const DRIVER_START_LIMIT: StdDuration = StdDuration::from_secs(60);
/// Upper bound for a page element to appear after a navigation the browser started itself.
const ELEMENT_LIMIT: StdDuration = StdDuration::from_secs(30);

/// A running chromedriver on a free loopback port; killed when dropped.
struct Chromedriver {
    _child: Child,
    url: String,
}

/// Why the browser test cannot run here, or `None` when it can.
fn missing_browser() -> Option<String> {
    [CHROMIUM, CHROMEDRIVER]
        .iter()
        .find(|path| !Path::new(path).exists())
        .map(|path| {
            format!(
                "{path} is missing (install the Debian packages chromium chromium-driver fonts-noto-cjk, as .ci/run does)"
            )
        })
}

/// Whether the browser tests can run; when they cannot, says why (skipped), or fails the
/// test when `FIELDSYNC_REQUIRE_BROWSER=1` (as .ci/run sets it).
fn browser_can_run() -> bool {
    let Some(reason) = missing_browser() else {
        return true;
    };
    if std::env::var("FIELDSYNC_REQUIRE_BROWSER").as_deref() == Ok("1") {
        panic!("FIELDSYNC_REQUIRE_BROWSER=1 but the browser test cannot run: {reason}");
    }
    println!("skipped: {reason}");
    false
}

/// Start chromedriver and wait for its "started successfully" line (no sleeping).
async fn start_chromedriver() -> Chromedriver {
    // Bind port 0 to learn a free port, then hand it to chromedriver.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port();
    let mut child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn chromedriver");
    let stdout = child.stdout.take().expect("chromedriver stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    let ready = tokio::time::timeout(DRIVER_START_LIMIT, async {
        while let Some(line) = lines.next_line().await.expect("read chromedriver") {
            let started = line.contains("started successfully");
            seen.push(line);
            if started {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        matches!(ready, Ok(true)),
        "chromedriver did not report readiness: {seen:?}"
    );
    // Keep draining its output so a full pipe never blocks it.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Chromedriver {
        _child: child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

/// A headless chromium session, in Chinese, tall enough to show a submission page.
async fn open_browser(driver: &Chromedriver) -> Browser {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".to_owned(),
        serde_json::json!({
            "binary": CHROMIUM,
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--lang=zh-CN",
                "--window-size=1280,3000",
            ],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("open a chromium session")
}

/// `target/screenshots/` of this workspace (or of `$CARGO_TARGET_DIR`).
fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let folder = target.join("screenshots");
    std::fs::create_dir_all(&folder).expect("screenshot folder");
    folder
}

async fn screenshot(browser: &Browser, name: &str) {
    let png = browser.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let path = screenshot_dir().join(name);
    std::fs::write(&path, png).expect("write screenshot");
    println!("screenshot: {}", path.display());
}

/// Press one key on the page (not in a form field), as a person would.
async fn press(browser: &Browser, key: char) {
    browser
        .perform_actions(
            KeyActions::new("keyboard".to_owned())
                .then(KeyAction::Down { value: key })
                .then(KeyAction::Up { value: key }),
        )
        .await
        .expect("press a key");
}

async fn wait_for(browser: &Browser, css: &str) -> fantoccini::elements::Element {
    match browser
        .wait()
        .at_most(ELEMENT_LIMIT)
        .for_element(Locator::Css(css))
        .await
    {
        Ok(element) => element,
        Err(error) => panic!(
            "{css} never appeared ({error}); the page says: {}",
            page_text(browser).await
        ),
    }
}

/// The text of the page's `<main>`, for failure messages.
async fn page_text(browser: &Browser) -> String {
    match browser.find(Locator::Css("main")).await {
        Ok(main) => main.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Record an in-person visit with one real photo at the phone's first household, synced.
async fn submit_visit(phone: &Client, photo: &str) -> String {
    let household_id = phone.households().expect("households")[0]
        .household_id
        .clone();
    let home = phone
        .household(&household_id)
        .expect("read")
        .expect("on phone")
        .location
        .expect("location");
    let now = OffsetDateTime::now_utc();
    let visit_id = phone
        .record_visit(NewVisit {
            observed_situation: "户主在家，身体尚可。".into(),
            plan_progress: "养羊项目进展正常，已出栏5只。".into(),
            gps: Some(GpsFix {
                lat: home.lat + 0.0004,
                lon: home.lon + 0.0002,
                crs: home.crs,
                accuracy_m: 12.0,
                provider: Some(LocationProvider::Gps),
                is_mock: false,
                fix_time: Some(now - Duration::minutes(20)),
            }),
            photo_paths: vec![test_photo(photo)],
            ..NewVisit::new(
                household_id,
                VisitMode::InPerson,
                now - Duration::minutes(40),
                now,
            )
        })
        .expect("record");
    phone.sync().await.expect("sync");
    visit_id
}

#[tokio::test]
async fn a_supervisor_returns_and_approves_in_the_browser_and_the_fix_comes_back() {
    if !browser_can_run() {
        return;
    }
    let server = TestServer::start().await;
    let (phone_one, _dir_one) = phone_of(&server, "cadre01").await;
    let (phone_two, _dir_two) = phone_of(&server, "cadre02").await;
    let returned_id = submit_visit(&phone_one, "gps_DSCN0010.jpg").await;
    let approved_id = submit_visit(&phone_two, "gps_DSCN0021.jpg").await;

    let driver = start_chromedriver().await;
    let browser = open_browser(&driver).await;
    let base = server.url();

    // Log in through the form.
    browser
        .goto(&format!("{base}/console/login"))
        .await
        .expect("login page");
    browser
        .find(Locator::Css("input[name=username]"))
        .await
        .expect("username")
        .send_keys("township1")
        .await
        .expect("type");
    browser
        .find(Locator::Css("input[name=password]"))
        .await
        .expect("password")
        .send_keys(DEMO_PASSWORD)
        .await
        .expect("type");
    browser
        .find(Locator::Css("button[type=submit].primary"))
        .await
        .expect("login button")
        .click()
        .await
        .expect("log in");
    wait_for(&browser, "form[action='/console/logout']").await;

    // The queue, with its filter bar; both visits wait.
    browser
        .goto(&format!("{base}/console/queue"))
        .await
        .expect("queue");
    wait_for(&browser, "#queue-filters").await;
    for visit_id in [&returned_id, &approved_id] {
        browser
            .find(Locator::Css(&format!("tr[data-visit-id='{visit_id}']")))
            .await
            .expect("the visit is in the queue");
    }
    assert_eq!(
        browser
            .find(Locator::Css("html"))
            .await
            .expect("html")
            .attr("data-shortcuts")
            .await
            .expect("attr")
            .as_deref(),
        Some("on"),
        "the same-origin script ran under the CSP"
    );
    screenshot(&browser, "review-queue.png").await;

    // The submission page: map, photos, the form. "?" shows the shortcut help.
    browser
        .goto(&format!("{base}/console/visits/{returned_id}"))
        .await
        .expect("visit page");
    wait_for(&browser, "svg.location-map #map-pin").await;
    wait_for(&browser, "#photos-this-visit img").await;
    let help = browser
        .find(Locator::Id("shortcut-help"))
        .await
        .expect("help box");
    assert!(!help.is_displayed().await.expect("displayed"));
    press(&browser, '?').await;
    assert!(
        help.is_displayed().await.expect("displayed"),
        "? opens the help"
    );
    press(&browser, '?').await;
    screenshot(&browser, "review-submission.png").await;

    // Return it: `r` jumps to the reasons; tick "too short" on 生产生活情况, note, deadline.
    press(&browser, 'r').await;
    browser
        .find(Locator::Css(
            "input[name=reasons][value='content_too_short:observed_situation']",
        ))
        .await
        .expect("reason checkbox")
        .click()
        .await
        .expect("tick");
    browser
        .find(Locator::Id("return-note"))
        .await
        .expect("note")
        .send_keys("请补充本季度收入变化")
        .await
        .expect("type note");
    // A date input's typing order depends on the locale; set the value as the picker would.
    browser
        .execute(
            "document.getElementById('return-deadline').value = arguments[0]; return true;",
            vec![serde_json::json!("2099-12-10")],
        )
        .await
        .expect("set the deadline");
    browser
        .find(Locator::Id("return-button"))
        .await
        .expect("return button")
        .click()
        .await
        .expect("return");
    wait_for(&browser, "div.notice.info[role=status]").await;

    // Approve the other one with the keyboard: `a` presses the enabled approve button.
    browser
        .goto(&format!("{base}/console/visits/{approved_id}"))
        .await
        .expect("second visit");
    let approve = wait_for(&browser, "#approve-button").await;
    assert!(approve.is_enabled().await.expect("enabled"));
    press(&browser, 'a').await;
    wait_for(&browser, "#queue-filters").await;
    let landed = browser.current_url().await.expect("url");
    assert!(
        landed.as_str().contains("decided=approved"),
        "after the last waiting item the queue shows the outcome: {landed}"
    );

    // The return reaches the cadre's phone as a task.
    phone_one.sync().await.expect("sync");
    let tasks = phone_one.tasks().expect("tasks");
    assert_eq!(tasks.len(), 1);
    let task = &tasks[0];
    assert_eq!(task.visit_id, returned_id);
    assert_eq!(task.reasons.len(), 1);
    assert_eq!(task.reasons[0].code, "content_too_short");
    assert_eq!(task.reasons[0].label_zh, "走访内容过于简单");
    assert_eq!(task.reasons[0].field, "observed_situation");
    assert_eq!(task.reasons[0].field_label_zh, "生产生活情况");
    assert_eq!(task.note, "请补充本季度收入变化");
    assert_eq!(task.deadline, "2099-12-10");
    phone_two.sync().await.expect("sync");
    assert_eq!(
        phone_two
            .visit(&approved_id)
            .expect("read")
            .expect("visit")
            .state,
        VisitState::Approved
    );

    // The cadre fixes it and re-submits.
    let revision = phone_one
        .resubmit_visit(&returned_id, |visit| {
            visit.observed_situation =
                "户主在家，身体尚可。本季度外出务工收入增加约3000元。".into();
        })
        .expect("fix");
    assert_eq!(revision, 2);
    phone_one.sync().await.expect("sync");
    assert!(phone_one.tasks().expect("tasks").is_empty());

    // The supervisor sees the diff beside the reason, and approves.
    browser
        .goto(&format!("{base}/console/visits/{returned_id}"))
        .await
        .expect("corrected visit");
    let diff = wait_for(&browser, "#correction").await;
    let diff_text = diff.text().await.expect("diff text");
    assert!(diff_text.contains("整改对比"), "{diff_text}");
    assert!(diff_text.contains("户主在家，身体尚可。"), "{diff_text}");
    assert!(diff_text.contains("收入增加约3000元"), "{diff_text}");
    assert!(diff_text.contains("走访内容过于简单"), "{diff_text}");
    assert!(diff_text.contains("请补充本季度收入变化"), "{diff_text}");
    screenshot(&browser, "review-diff.png").await;
    browser
        .find(Locator::Id("approve-button"))
        .await
        .expect("approve button")
        .click()
        .await
        .expect("approve");
    wait_for(&browser, "#queue-filters").await;
    browser.close().await.expect("close the browser");

    phone_one.sync().await.expect("sync");
    let summary = phone_one.visit(&returned_id).expect("read").expect("visit");
    assert_eq!((summary.state, summary.revision), (VisitState::Approved, 2));
}

/// Wait for the `role="status"` notice with `text`: the page a form redirected to after it
/// succeeded.
async fn wait_for_notice(browser: &Browser, text: &str) {
    let xpath = format!("//div[@role='status' and contains(., '{text}')]");
    if let Err(error) = browser
        .wait()
        .at_most(ELEMENT_LIMIT)
        .for_element(Locator::XPath(&xpath))
        .await
    {
        panic!(
            "notice {text} never appeared ({error}); the page says: {}",
            page_text(browser).await
        );
    }
}

/// Log in through the login form as `username`.
async fn log_in(browser: &Browser, base: &str, username: &str) {
    browser
        .goto(&format!("{base}/console/login"))
        .await
        .expect("login page");
    wait_for(browser, "input[name=username]")
        .await
        .send_keys(username)
        .await
        .expect("type");
    browser
        .find(Locator::Css("input[name=password]"))
        .await
        .expect("password")
        .send_keys(DEMO_PASSWORD)
        .await
        .expect("type");
    browser
        .find(Locator::Css("button[type=submit].primary"))
        .await
        .expect("login button")
        .click()
        .await
        .expect("log in");
    wait_for(browser, "form[action='/console/logout']").await;
}

/// Press the logout button in the header and land on the login page.
async fn log_out(browser: &Browser) {
    browser
        .find(Locator::Css("form[action='/console/logout'] button"))
        .await
        .expect("logout button")
        .click()
        .await
        .expect("log out");
    wait_for(browser, "input[name=username]").await;
}

async fn click(browser: &Browser, css: &str) {
    wait_for(browser, css)
        .await
        .click()
        .await
        .unwrap_or_else(|error| panic!("click {css}: {error}"));
}

/// A one-household roster (花名册) CSV of a new household in the demo county's first village.
async fn one_household_roster(server: &TestServer, folder: &Path) -> PathBuf {
    let store = &server.state.store;
    let township = store
        .list_areas(Some(fieldsync_server::demo::DEMO_COUNTY_ID))
        .await
        .expect("townships")
        .into_iter()
        .next()
        .expect("a township");
    let village = store
        .list_areas(Some(&township.area_id))
        .await
        .expect("villages")
        .into_iter()
        .next()
        .expect("a village");
    let body = "13000019700101123";
    let id_number = format!(
        "{body}{}",
        fieldsync_model::id_number::check_character(body).expect("17 digits")
    );
    let headers = fieldsync_tests::roster_headers();
    let row = [
        "900000000001".to_owned(),
        township.name.clone(),
        village.name.clone(),
        "浏览器测试户".to_owned(),
        "13800001111".to_owned(),
        format!("{}一组1号", village.name),
        HouseholdAttribute::ALL[0].label_zh().to_owned(),
        PovertyCause::Illness.label_zh().to_owned(),
        String::new(),
        String::new(),
        "浏览器测试户".to_owned(),
        Relation::Head.label_zh().to_owned(),
        Sex::Male.label_zh().to_owned(),
        id_number,
        "1970-01-01".to_owned(),
        Health::ALL[0].label_zh().to_owned(),
        LabourCapacity::ALL[0].label_zh().to_owned(),
        Schooling::ALL[0].label_zh().to_owned(),
        Disability::None.label_zh().to_owned(),
        "0".to_owned(),
        "是".to_owned(),
        "否".to_owned(),
        "是".to_owned(),
    ];
    let text = format!("\u{feff}{}\n{}\n", headers.join(","), row.join(","));
    let path = folder.join("花名册-浏览器.csv");
    std::fs::write(&path, text).expect("write roster");
    path
}

/// Every `<form method="post">` of the console, submitted at least once in the real browser,
/// each carrying its hidden CSRF token: login and logout (layout), the review decision
/// (covered above too), conflict resolution, income settling, month closing (township
/// supervisor); thresholds, primary assignment, helper add and end, roster upload and apply
/// (county administrator).
#[tokio::test]
async fn every_console_form_works_in_the_browser_with_its_csrf_token() {
    if !browser_can_run() {
        return;
    }
    let server = TestServer::start().await;
    let files = tempfile::tempdir().expect("temp dir");
    // Two phones of the same cadre edit the same field and register the same quarter's
    // income without seeing each other: a conflict record and an income disagreement.
    let (phone_one, _dir_one) = phone_of(&server, "cadre01").await;
    let (phone_two, _dir_two) = phone_of(&server, "cadre01").await;
    let household_id = phone_one
        .households()
        .expect("households")
        .into_iter()
        .find(|household| household.member_count > 0)
        .expect("a household with members")
        .household_id;
    for (phone, number, wage_fen) in [
        (&phone_one, "13811112222", 200_000),
        (&phone_two, "13933334444", 260_000),
    ] {
        phone
            .edit_household_field(
                &household_id,
                FieldTarget::Household,
                "phone",
                serde_json::json!(number),
            )
            .expect("edit");
        phone
            .register_income(
                &household_id,
                2025,
                1,
                IncomeComponents {
                    wage_fen,
                    ..IncomeComponents::default()
                },
            )
            .expect("register income");
    }
    phone_one.sync().await.expect("sync");
    phone_two.sync().await.expect("sync");
    let roster = one_household_roster(&server, files.path()).await;
    let user_id = |username: &'static str| {
        let store = server.state.store.clone();
        async move {
            store
                .find_user_by_username(username)
                .await
                .expect("store")
                .expect("demo user")
                .user_id
        }
    };
    let (cadre01, cadre02) = (user_id("cadre01").await, user_id("cadre02").await);

    let driver = start_chromedriver().await;
    let browser = open_browser(&driver).await;
    let base = server.url();

    // The township supervisor: resolve the conflict, settle the income, close last month.
    log_in(&browser, &base, "township1").await;
    browser
        .goto(&format!("{base}/console/conflicts"))
        .await
        .expect("conflicts");
    click(
        &browser,
        "form[action='/console/conflicts/resolve'] input[name=choice][value=first]",
    )
    .await;
    click(
        &browser,
        "form[action='/console/conflicts/resolve'] button[type=submit]",
    )
    .await;
    wait_for_notice(&browser, "已处理").await;

    browser
        .goto(&format!("{base}/console/households/{household_id}"))
        .await
        .expect("household page");
    click(&browser, "form.settle-income button[type=submit]").await;
    wait_for_notice(&browser, "已确认该季度的收入登记").await;

    let beijing_now =
        OffsetDateTime::now_utc().to_offset(time::UtcOffset::from_hms(8, 0, 0).expect("offset"));
    let last_month = beijing_now.date().replace_day(1).expect("day 1") - Duration::days(1);
    let month = format!("{}-{:02}", last_month.year(), u8::from(last_month.month()));
    browser
        .goto(&format!("{base}/console/ledger?month={month}"))
        .await
        .expect("ledger");
    wait_for(
        &browser,
        "form[action='/console/ledger/close'] input[name=confirm]",
    )
    .await
    .send_keys("月结")
    .await
    .expect("type the confirmation");
    click(
        &browser,
        "form[action='/console/ledger/close'] button[type=submit]",
    )
    .await;
    wait_for_notice(&browser, "已月结").await;
    log_out(&browser).await;

    // The county administrator: a threshold, a primary, a helper added and ended, a roster.
    log_in(&browser, &base, "county").await;
    browser
        .goto(&format!("{base}/console/thresholds"))
        .await
        .expect("thresholds");
    wait_for(&browser, "form.thresholds input[name=poverty_line_yuan]")
        .await
        .send_keys("4800")
        .await
        .expect("type the line");
    click(&browser, "form.thresholds button[type=submit]").await;
    wait_for(&browser, "div.notice.info[role=status]").await;

    let pairing_page = format!("{base}/console/pairings/households/{household_id}");
    browser.goto(&pairing_page).await.expect("pairing page");
    wait_for(&browser, "form.assign select[name=cadre_user_id]")
        .await
        .select_by_value(&cadre02)
        .await
        .expect("choose cadre02");
    // cadre02 may already be at the 8741 quota: 超额确认 (harmless when within it).
    click(&browser, "form.assign input[name=confirm_over_quota]").await;
    click(&browser, "form.assign button[type=submit]").await;
    wait_for_notice(&browser, "已更新第一帮扶责任人").await;
    wait_for(&browser, "form.helper select[name=cadre_user_id]")
        .await
        .select_by_value(&cadre01)
        .await
        .expect("choose cadre01");
    click(&browser, "form.helper button[type=submit]:not([title])").await;
    wait_for_notice(&browser, "已添加帮扶干部").await;
    click(&browser, "form.helper button[type=submit][title]").await;
    wait_for_notice(&browser, "已解除帮扶干部结对").await;

    browser
        .goto(&format!("{base}/console/import"))
        .await
        .expect("import page");
    wait_for(&browser, "form.import input[type=file]")
        .await
        .send_keys(&roster.display().to_string())
        .await
        .expect("choose the file");
    click(&browser, "form.import button[type=submit]").await;
    // The job page refreshes itself until the dry run is done, then offers the apply button.
    click(&browser, "form[action$='/apply'] button[type=submit]").await;
    browser
        .wait()
        .at_most(ELEMENT_LIMIT)
        .for_element(Locator::XPath("//*[contains(., '已导入：新增 1 户')]"))
        .await
        .expect("the roster was applied");
    log_out(&browser).await;
    browser.close().await.expect("close the browser");

    // What the forms did is in the store.
    let store = &server.state.store;
    let runs = store
        .import_runs(fieldsync_server::demo::DEMO_COUNTY_ID, 10)
        .await
        .expect("store");
    assert_eq!(runs.len(), 1);
    assert_eq!(
        runs[0].households_created, 1,
        "the roster's household was created"
    );
    let pairings = store
        .pairing_households(
            fieldsync_server::demo::DEMO_COUNTY_ID,
            fieldsync_server::store::PairingFilter {
                limit: 10_000,
                ..Default::default()
            },
        )
        .await
        .expect("store")
        .into_iter()
        .find(|household| household.household_id == household_id)
        .expect("household");
    assert_eq!(
        pairings
            .primaries
            .iter()
            .map(|(id, _)| id.as_str())
            .collect::<Vec<_>>(),
        [cadre02.as_str()]
    );
    assert!(
        pairings.secondaries.is_empty(),
        "the helper was added, then ended"
    );
}

/// Width of the phone viewport the console must fit (an iPhone 12–15 is 390 CSS pixels).
const PHONE_WIDTH: u32 = 390;
/// Height of the phone viewport: taller than a phone, so one screenshot shows more of a page.
const PHONE_HEIGHT: u32 = 1600;

/// A headless chromium session that lays pages out as a phone does: `PHONE_WIDTH` CSS
/// pixels wide, the page's `<meta name="viewport">` honoured, touch events on.
async fn open_phone_browser(driver: &Chromedriver) -> Browser {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".to_owned(),
        serde_json::json!({
            "binary": CHROMIUM,
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--lang=zh-CN",
            ],
            "mobileEmulation": {
                "deviceMetrics": { "width": PHONE_WIDTH, "height": PHONE_HEIGHT, "pixelRatio": 1.0, "touch": true },
                "userAgent": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36",
            },
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("open a phone-sized chromium session")
}

const LAYOUT_SCRIPT: &str = r#"
const root = document.documentElement;
const visible = (element) => {
  const style = getComputedStyle(element);
  const rect = element.getBoundingClientRect();
  return style.display !== 'none' && style.visibility !== 'hidden' && (rect.width > 0 || rect.height > 0);
};
const describe = (element) => {
  const rect = element.getBoundingClientRect();
  return `${element.tagName.toLowerCase()}.${element.className} [${Math.round(rect.left)}..${Math.round(rect.right)}] ${(element.textContent || '').trim().slice(0, 30)}`;
};
const header = document.querySelector('header.top');
let headerBackground = '';
let headerOverflow = [];
if (header) {
  const box = header.getBoundingClientRect();
  headerBackground = getComputedStyle(header).backgroundColor;
  headerOverflow = Array.from(header.querySelectorAll('*')).filter(visible).filter((element) => {
    const rect = element.getBoundingClientRect();
    return rect.left < box.left - 1 || rect.right > box.right + 1 || rect.top < box.top - 1 || rect.bottom > box.bottom + 1;
  }).map(describe);
}
const widest = Array.from(document.body.querySelectorAll('*')).filter(visible)
  .filter((element) => element.getBoundingClientRect().right > root.clientWidth + 1)
  .sort((a, b) => b.getBoundingClientRect().right - a.getBoundingClientRect().right)
  .slice(0, 8).map(describe);
return {
  scroll_width: root.scrollWidth,
  inner_width: window.innerWidth,
  header_background: headerBackground,
  header_overflow: headerOverflow,
  widest: widest,
};
"#;

/// Open `path`, wait for `ready`, check that nothing widens the page past the viewport and
/// that the header keeps its contents on its own background, and save a screenshot as
/// `pages/{viewport}-{name}.png`.
async fn check_page(
    browser: &Browser,
    base: &str,
    viewport: &str,
    name: &str,
    path: &str,
    ready: &str,
) {
    browser
        .goto(&format!("{base}{path}"))
        .await
        .unwrap_or_else(|error| panic!("open {path}: {error}"));
    wait_for(browser, ready).await;
    let value = browser
        .execute(LAYOUT_SCRIPT, Vec::new())
        .await
        .unwrap_or_else(|error| panic!("measure {path}: {error}"));
    let number = |key: &str| {
        value[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} in {value}"))
    };
    let texts = |key: &str| -> Vec<String> {
        value[key]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|item| item.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (scroll_width, inner_width) = (number("scroll_width"), number("inner_width"));
    let header_background = value["header_background"].as_str().unwrap_or_default();
    let header_overflow = texts("header_overflow");
    // A phone browser zooms out to fit a page wider than the screen, which widens
    // `innerWidth` with it: on the phone the window must stay exactly the phone's width.
    let screen_width = if viewport == "phone" {
        f64::from(PHONE_WIDTH)
    } else {
        inner_width
    };
    assert!(
        scroll_width <= screen_width && inner_width <= screen_width,
        "{viewport} {path}: the page scrolls sideways ({scroll_width} px of content, a {inner_width} px window, the screen {screen_width} px); widest: {:#?}",
        texts("widest")
    );
    assert!(
        header_overflow.is_empty(),
        "{viewport} {path}: header elements outside the header's background: {header_overflow:#?}"
    );
    // The 明白卡 is a document without the console's header.
    assert!(
        header_background.is_empty() && path.ends_with("/card")
            || !matches!(
                header_background,
                "" | "rgba(0, 0, 0, 0)" | "rgb(255, 255, 255)"
            ),
        "{viewport} {path}: the header has its own dark background, not {header_background:?}"
    );
    let png = browser.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let folder = screenshot_dir().join("pages");
    std::fs::create_dir_all(&folder).expect("screenshot folder");
    std::fs::write(folder.join(format!("{viewport}-{name}.png")), png).expect("write screenshot");
}

/// One console page to check: screenshot name, path, and an element that shows it is ready.
struct Page {
    name: &'static str,
    path: String,
    ready: &'static str,
}

fn page(name: &'static str, path: impl Into<String>, ready: &'static str) -> Page {
    Page {
        name,
        path: path.into(),
        ready,
    }
}

/// The path the browser is on now (after a form redirected it).
async fn current_path(browser: &Browser) -> String {
    browser.current_url().await.expect("url").path().to_owned()
}

/// Upload `file` through the upload form `form` of `form_path`, wait for `ready` on the page
/// the form leads to (the import job or plan page) and return that page's path.
async fn upload_through(
    browser: &Browser,
    base: &str,
    form_path: &str,
    form: &str,
    file: &Path,
    ready: &str,
) -> String {
    browser
        .goto(&format!("{base}{form_path}"))
        .await
        .expect("upload page");
    wait_for(browser, &format!("{form} input[type=file]"))
        .await
        .send_keys(&file.display().to_string())
        .await
        .expect("choose the file");
    click(browser, &format!("{form} button[type=submit]")).await;
    wait_for(browser, ready).await;
    current_path(browser).await
}

/// A small 行政区划 file: one new village in the demo county's first township.
async fn one_village_area_file(server: &TestServer, folder: &Path) -> PathBuf {
    let township = server
        .state
        .store
        .list_areas(Some(fieldsync_server::demo::DEMO_COUNTY_ID))
        .await
        .expect("townships")
        .into_iter()
        .next()
        .expect("a township");
    let village_code = format!("{}998", &township.area_id[..9]);
    let text = format!(
        "\u{feff}统计用区划代码,名称,层级,上级区划代码\n{village_code},浏览器测试村,村,{}\n",
        township.area_id
    );
    let path = folder.join("行政区划-浏览器.csv");
    std::fs::write(&path, text).expect("write area file");
    path
}

/// A small 帮扶干部花名册: one new cadre of the demo county's first township.
async fn one_cadre_roster(server: &TestServer, folder: &Path) -> PathBuf {
    let township = server
        .state
        .store
        .list_areas(Some(fieldsync_server::demo::DEMO_COUNTY_ID))
        .await
        .expect("townships")
        .into_iter()
        .next()
        .expect("a township");
    let body = "11010519800101123";
    let id_number = format!(
        "{body}{}",
        fieldsync_model::id_number::check_character(body).expect("17 digits")
    );
    let text = format!(
        "\u{feff}姓名,手机号,身份证号,帮扶单位,职级,乡镇,驻村工作队,开始日期,结束日期\n孙丽,13912340001,{id_number},县农业农村局,科级,{},是,2026-03-01,\n",
        township.name
    );
    let path = folder.join("帮扶干部花名册-浏览器.csv");
    std::fs::write(&path, text).expect("write cadre roster");
    path
}

/// Log out from any page, at any width: back to a page with the header, and on a phone the
/// menu opened first (the logout button is in it).
async fn log_out_from_anywhere(browser: &Browser, base: &str) {
    browser
        .goto(&format!("{base}/console/password"))
        .await
        .expect("a page with the header");
    let toggle = wait_for(browser, "label.nav-toggle-label").await;
    if toggle.is_displayed().await.expect("displayed") {
        toggle.click().await.expect("open the menu");
    }
    log_out(browser).await;
}

/// Check every page of `pages` in the desktop and the phone session, both logged in as
/// `username`, then log both out.
async fn check_pages_as(
    desktop: &Browser,
    phone: &Browser,
    base: &str,
    username: &str,
    pages: &[Page],
) {
    for (viewport, browser) in [("desktop", desktop), ("phone", phone)] {
        log_in(browser, base, username).await;
        for page in pages {
            check_page(
                browser,
                base,
                viewport,
                &format!("{username}-{}", page.name),
                &page.path,
                page.ready,
            )
            .await;
        }
    }
}

/// Every console page, at a desk's width (1280 px) and at a phone's (390 px): no page
/// scrolls sideways, the header keeps its white text on its own background, the phone's
/// menu opens and closes without the script's help, and the review buttons are big enough
/// for a thumb. Screenshots land in `target/screenshots/pages/`.
#[tokio::test]
async fn every_console_page_fits_a_phone_and_a_desk() {
    if !browser_can_run() {
        return;
    }
    let server = TestServer::start().await;
    let files = tempfile::tempdir().expect("temp dir");
    // A visit with a photo and a fix (the submission page's photos and map), and a conflict.
    let (phone_one, _dir_one) = phone_of(&server, "cadre01").await;
    let (phone_two, _dir_two) = phone_of(&server, "cadre01").await;
    let visit_id = submit_visit(&phone_one, "gps_DSCN0010.jpg").await;
    let household_id = phone_one.households().expect("households")[0]
        .household_id
        .clone();
    for (phone, number) in [(&phone_one, "13811112222"), (&phone_two, "13933334444")] {
        phone
            .edit_household_field(
                &household_id,
                FieldTarget::Household,
                "phone",
                serde_json::json!(number),
            )
            .expect("edit");
        phone.sync().await.expect("sync");
    }
    let store = &server.state.store;
    let cadre = store
        .find_user_by_username("cadre01")
        .await
        .expect("store")
        .expect("demo cadre");
    let township_id = cadre.area_id.clone();
    let roster = one_household_roster(&server, files.path()).await;
    let area_file = one_village_area_file(&server, files.path()).await;
    let cadre_roster = one_cadre_roster(&server, files.path()).await;

    let driver = start_chromedriver().await;
    let desktop = open_browser(&driver).await;
    let phone = open_phone_browser(&driver).await;
    let base = server.url();

    // Logged out: the login page.
    for (viewport, browser) in [("desktop", &desktop), ("phone", &phone)] {
        check_page(
            browser,
            &base,
            viewport,
            "login",
            "/console/login",
            "input[name=username]",
        )
        .await;
    }

    // The township supervisor's pages.
    let township_pages = [
        page("dashboard", "/console/dashboard", "section.totals"),
        page("queue", "/console/queue", "#queue-table"),
        page(
            "visit",
            format!("/console/visits/{visit_id}"),
            "svg.location-map",
        ),
        page(
            "household",
            format!("/console/households/{household_id}"),
            "main h1",
        ),
        page(
            "card",
            format!("/console/households/{household_id}/card"),
            "article.mingbaika",
        ),
        page("ledger", "/console/ledger", "table.ledger"),
        page("silent", "/console/ledger/silent", "main h1"),
        page("unvisited", "/console/unvisited", "main h1"),
        page(
            "conflicts",
            "/console/conflicts",
            "form[action='/console/conflicts/resolve']",
        ),
        page("devices", "/console/devices", "main h1"),
        page("income", "/console/income", "main h1"),
        page("wellbeing", "/console/wellbeing", "main h1"),
        page("exports", "/console/exports", "main h1"),
        page(
            "cadre-devices",
            format!("/console/users/{}/devices", cadre.user_id),
            "main h1",
        ),
        page("password", "/console/password", "input[type=password]"),
        page(
            "not-found",
            "/console/households/no-such-household",
            "div.notice.error",
        ),
    ];
    check_pages_as(&desktop, &phone, &base, "township1", &township_pages).await;

    // On the phone the menu is folded away, and the label opens it (no script needed).
    phone
        .goto(&format!("{base}/console/queue"))
        .await
        .expect("queue");
    let first_link = wait_for(&phone, "header.top nav a").await;
    assert!(
        !first_link.is_displayed().await.expect("displayed"),
        "the phone's menu starts folded"
    );
    click(&phone, "label.nav-toggle-label").await;
    assert!(
        first_link.is_displayed().await.expect("displayed"),
        "the 菜单 button opens the menu"
    );
    screenshot(&phone, "pages/phone-menu-open.png").await;
    // The decision buttons are thumb-sized on the phone.
    phone
        .goto(&format!("{base}/console/visits/{visit_id}"))
        .await
        .expect("visit");
    for button in ["#approve-button", "#return-button"] {
        let height = phone
            .execute(
                "return document.querySelector(arguments[0]).getBoundingClientRect().height;",
                vec![serde_json::json!(button)],
            )
            .await
            .expect("measure")
            .as_f64()
            .expect("a height");
        assert!(height >= 44.0, "{button} is {height} px tall on a phone");
    }
    for browser in [&desktop, &phone] {
        log_out_from_anywhere(browser, &base).await;
    }

    // The county administrator's pages, with an import job and a cadre roster plan.
    log_in(&desktop, &base, "county").await;
    let roster_job = upload_through(
        &desktop,
        &base,
        "/console/import",
        "form.import",
        &roster,
        "form[action$='/apply']",
    )
    .await;
    let area_job = upload_through(
        &desktop,
        &base,
        "/console/areas/import",
        "form.import",
        &area_file,
        "form[action$='/apply']",
    )
    .await;
    let cadre_plan = upload_through(
        &desktop,
        &base,
        "/console/cadres/import",
        "form[action='/console/cadres/import']",
        &cadre_roster,
        "form[action$='/apply']",
    )
    .await;
    log_out(&desktop).await;
    let county_pages = [
        page("dashboard", "/console/dashboard", "section.totals"),
        page(
            "household",
            format!("/console/households/{household_id}"),
            "main h1",
        ),
        page("ledger", "/console/ledger", "table.ledger"),
        page("income", "/console/income", "main h1"),
        page("wellbeing", "/console/wellbeing", "main h1"),
        page("thresholds", "/console/thresholds", "form.thresholds"),
        page("exports", "/console/exports", "main h1"),
        page("pairings", "/console/pairings", "main h1"),
        page(
            "pairings-township",
            format!("/console/pairings?township={township_id}"),
            "main table",
        ),
        page(
            "pairing-household",
            format!("/console/pairings/households/{household_id}"),
            "form.assign",
        ),
        page("areas", "/console/areas", "main table"),
        page("area-import", "/console/areas/import", "form.import"),
        page("area-import-job", area_job, "form[action$='/apply']"),
        page("roster-import", "/console/import", "form.import"),
        page("roster-import-job", roster_job, "form[action$='/apply']"),
        page("accounts", "/console/accounts", "main table"),
        page("account-new", "/console/accounts/new", "main form"),
        page(
            "account",
            format!("/console/accounts/{}", cadre.user_id),
            "main form",
        ),
        page("cadre-import", "/console/cadres/import", "input[type=file]"),
        page("cadre-import-plan", cadre_plan, "form[action$='/apply']"),
        page(
            "cadre-devices",
            format!("/console/users/{}/devices", cadre.user_id),
            "main h1",
        ),
        page("password", "/console/password", "input[type=password]"),
    ];
    check_pages_as(&desktop, &phone, &base, "county", &county_pages).await;
    for browser in [&desktop, &phone] {
        log_out_from_anywhere(browser, &base).await;
    }

    // The auditor's read-only pages (the demo county has no auditor: one is added).
    store
        .load_seed(fieldsync_server::store::SeedData {
            users: vec![fieldsync_server::store::UserRecord {
                user_id: uuid::Uuid::now_v7().to_string(),
                username: "auditor".into(),
                display_name: "审计员".into(),
                password_hash: fieldsync_server::auth::hash_password(DEMO_PASSWORD).expect("hash"),
                role: fieldsync_model::codes::Role::Auditor,
                area_id: fieldsync_server::demo::DEMO_COUNTY_ID.into(),
                phone: String::new(),
                rank: None,
            }],
            ..Default::default()
        })
        .await
        .expect("add an auditor");
    let auditor_pages = [
        page("dashboard", "/console/dashboard", "section.totals"),
        page(
            "household",
            format!("/console/households/{household_id}"),
            "main h1",
        ),
        page("areas", "/console/areas", "main table"),
        page("accounts", "/console/accounts", "main table"),
    ];
    check_pages_as(&desktop, &phone, &base, "auditor", &auditor_pages).await;
    desktop.close().await.expect("close the desktop browser");
    phone.close().await.expect("close the phone browser");
}

/// The header's search box in a real browser: a township supervisor types a head's name,
/// sees the household, clicks through to its page (户档案); on a phone, another township's
/// household is not found, by 户编号 or by name.
#[tokio::test]
async fn a_supervisor_finds_a_household_from_the_header_search_box() {
    if !browser_can_run() {
        return;
    }
    let server = TestServer::start().await;
    let store = &server.state.store;
    let township_of = |username: &'static str| {
        let store = store.clone();
        async move {
            store
                .find_user_by_username(username)
                .await
                .expect("store")
                .expect("demo supervisor")
                .area_id
        }
    };
    let (own_township, other_township) = (
        township_of("township1").await,
        township_of("township2").await,
    );
    let first_household = |township_id: String| {
        let store = store.clone();
        async move {
            let row = store
                .pairing_households(
                    fieldsync_server::demo::DEMO_COUNTY_ID,
                    fieldsync_server::store::PairingFilter {
                        township_id: Some(township_id),
                        limit: 1,
                        ..Default::default()
                    },
                )
                .await
                .expect("store")
                .into_iter()
                .next()
                .expect("a household");
            store
                .get_household(&row.household_id)
                .await
                .expect("store")
                .expect("household")
        }
    };
    let own = first_household(own_township).await;
    let other = first_household(other_township.clone()).await;
    // A name that no household of township1 shares, so "not found" is about scope.
    let other_pairings = store
        .pairing_households(
            fieldsync_server::demo::DEMO_COUNTY_ID,
            fieldsync_server::store::PairingFilter {
                limit: 100_000,
                ..Default::default()
            },
        )
        .await
        .expect("store");
    let other_name_is_unique = other_pairings
        .iter()
        .filter(|row| row.head_name == other.head_name)
        .all(|row| row.township_id == other_township);

    let driver = start_chromedriver().await;
    let desktop = open_browser(&driver).await;
    let base = server.url();
    log_in(&desktop, &base, "township1").await;
    let search_box = wait_for(&desktop, "header.top form.search input[name=q]").await;
    search_box.send_keys(&own.head_name).await.expect("type");
    click(&desktop, "header.top form.search button[type=submit]").await;
    let results = wait_for(&desktop, "#search-results").await;
    assert!(
        results.text().await.expect("text").contains(&own.head_name),
        "the household is listed"
    );
    screenshot(&desktop, "search-results.png").await;
    click(
        &desktop,
        &format!(
            "#search-results a[href='/console/households/{}']",
            own.household_id
        ),
    )
    .await;
    let heading = wait_for(&desktop, "main h1").await;
    assert!(
        heading.text().await.expect("text").contains(&own.head_name),
        "the link leads to the household page"
    );
    assert!(
        desktop
            .current_url()
            .await
            .expect("url")
            .path()
            .ends_with(&own.household_id)
    );
    desktop.close().await.expect("close");

    let phone = open_phone_browser(&driver).await;
    log_in(&phone, &base, "township1").await;
    let mut queries = vec![other.national_household_number.clone()];
    if other_name_is_unique {
        queries.push(other.head_name.clone());
    }
    for query in queries {
        // Start each search from a page without results, so the wait below can only find
        // the new results page (not the previous one while the browser is navigating).
        phone
            .goto(&format!("{base}/console"))
            .await
            .expect("dashboard");
        // The search box is in the phone's header without opening the menu.
        let search_box = wait_for(&phone, "header.top form.search input[name=q]").await;
        assert!(search_box.is_displayed().await.expect("displayed"));
        search_box.send_keys(&query).await.expect("type");
        click(&phone, "header.top form.search button[type=submit]").await;
        let results = wait_for(&phone, "#search-results").await;
        let text = results.text().await.expect("text");
        assert!(text.contains("没有找到"), "{query}: {text}");
        assert!(
            phone
                .find(Locator::Css(&format!(
                    "a[href='/console/households/{}']",
                    other.household_id
                )))
                .await
                .is_err(),
            "no link to another township's household"
        );
    }
    screenshot(&phone, "search-out-of-scope-phone.png").await;
    phone.close().await.expect("close");
}
