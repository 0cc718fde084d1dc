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
use fieldsync_model::codes::{LocationProvider, VisitMode};
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
    browser
        .wait()
        .at_most(ELEMENT_LIMIT)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|error| panic!("{css} never appeared: {error}"))
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
    if let Some(reason) = missing_browser() {
        if std::env::var("FIELDSYNC_REQUIRE_BROWSER").as_deref() == Ok("1") {
            panic!("FIELDSYNC_REQUIRE_BROWSER=1 but the browser test cannot run: {reason}");
        }
        println!("skipped: {reason}");
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
