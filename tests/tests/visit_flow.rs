//! One visit end to end, with real parts: a real server on a real socket with a temporary
//! SQLite file, two real client cores with their own SQLite files, and a real camera JPEG.
//! A cadre records offline, syncs, a supervisor decides through gRPC and through the
//! console's HTTP routes, and the decision reaches the phone.

use fieldsync_client::{Client, VisitState};
use fieldsync_proto::v1;
use fieldsync_tests::{
    DEMO_PASSWORD, TestServer, authorized, console_login, console_thumbnail, csrf_token_in,
    phone_of, test_photo, unreachable_url, visit_at_home,
};

fn state_of(client: &Client, visit_id: &str) -> VisitState {
    client
        .visit(visit_id)
        .expect("read")
        .expect("visit on phone")
        .state
}

async fn console_visit_json(
    browser: &reqwest::Client,
    server: &TestServer,
    visit_id: &str,
) -> serde_json::Value {
    let response = browser
        .get(format!("{}/console/api/visits/{visit_id}", server.url()))
        .send()
        .await
        .expect("visit json");
    assert!(response.status().is_success(), "{}", response.status());
    response.json().await.expect("json")
}

#[tokio::test]
async fn an_offline_visit_is_approved_through_grpc_and_the_console_and_the_phone_sees_it() {
    let server = TestServer::start().await;
    let (phone, _phone_dir) = phone_of(&server, "cadre01").await;
    let households = phone.households().expect("households");
    assert_eq!(
        households.len(),
        8,
        "cadre01 is paired with 8 households (8741 quota)"
    );

    // Record two visits with the server out of reach.
    let online_url = phone.server_url();
    phone
        .set_server_url(&unreachable_url().await)
        .expect("go offline");
    let first = phone
        .record_visit(visit_at_home(&phone, &households[0].household_id))
        .expect("record offline");
    let second = phone
        .record_visit(visit_at_home(&phone, &households[1].household_id))
        .expect("record offline");
    let error = phone.sync().await.expect_err("no server");
    assert!(error.is_unavailable(), "{error}");
    let status = phone.status().expect("status");
    assert_eq!(
        status.unsent_mutations, 4,
        "two visits and two photo records wait in the outbox"
    );
    assert_eq!(
        status.pending_uploads, 1,
        "the same JPEG twice is one blob to upload"
    );
    assert_eq!(state_of(&phone, &first), VisitState::Unsent);

    // Back in coverage: push, upload, pull.
    phone.set_server_url(&online_url).expect("go online");
    let report = phone.sync().await.expect("sync");
    assert_eq!(report.mutations_applied, 4);
    assert_eq!(report.uploads_completed, 1);
    let status = phone.status().expect("status");
    assert_eq!((status.unsent_mutations, status.pending_uploads), (0, 0));
    assert_eq!(state_of(&phone, &first), VisitState::Submitted);

    // The server holds the photo byte-exact under its SHA-256.
    let photo_bytes = std::fs::read(test_photo("gps_DSCN0010.jpg")).expect("photo");
    let sha256 = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&photo_bytes))
    };
    assert_eq!(
        server.state.blobs.read(&sha256).await.expect("blob"),
        photo_bytes
    );

    // The supervisor approves the first visit through gRPC.
    let (supervisor, mut review) = server.review_as("township1").await;
    let queue = review
        .list_queue(authorized(v1::ListQueueRequest::default(), &supervisor))
        .await
        .expect("queue")
        .into_inner();
    assert_eq!(queue.items.len(), 2);
    let item = queue
        .items
        .iter()
        .find(|item| item.visit_id == first)
        .expect("first visit queued");
    let distance = item.distance_m.expect("distance to the household");
    assert!(
        (25.0..45.0).contains(&distance),
        "0.0003° of latitude is about 33 m, got {distance}"
    );
    assert_eq!(item.photo_count, 1);
    let detail = review
        .get_visit(authorized(
            v1::GetVisitRequest {
                visit_id: first.clone(),
            },
            &supervisor,
        ))
        .await
        .expect("detail")
        .into_inner();
    assert_eq!(
        detail.photo_ids_received.len(),
        1,
        "the photo arrived before review"
    );
    assert!(
        detail
            .household
            .expect("household")
            .members
            .iter()
            .all(|member| !member.name.is_empty())
    );
    let decided = review
        .decide(authorized(
            v1::DecideRequest {
                visit_id: first.clone(),
                revision: 1,
                content_hash: detail.content_hash.clone(),
                decision: v1::Decision::Approve as i32,
                ..Default::default()
            },
            &supervisor,
        ))
        .await
        .expect("approve")
        .into_inner();
    assert_eq!(decided.state, v1::ReviewState::Approved as i32);

    // Deciding the same revision again is refused: it is no longer waiting.
    let again = review
        .decide(authorized(
            v1::DecideRequest {
                visit_id: first.clone(),
                revision: 1,
                content_hash: detail.content_hash,
                decision: v1::Decision::Return as i32,
                note: "重复".into(),
                ..Default::default()
            },
            &supervisor,
        ))
        .await
        .expect_err("already decided");
    assert_eq!(again.code(), tonic::Code::FailedPrecondition);

    // The second visit is approved in the console, through its HTML form route.
    let browser = console_login(&server, "township1").await;
    let queue_page = browser
        .get(format!("{}/console/queue", server.url()))
        .send()
        .await
        .expect("queue page");
    let queue_html = queue_page.text().await.expect("html");
    assert!(
        queue_html.contains(&second),
        "the queue page links the waiting visit"
    );
    let visit_json = console_visit_json(&browser, &server, &second).await;
    let content_hash = visit_json["content_hash"]
        .as_str()
        .expect("content hash")
        .to_owned();
    let photo_id = visit_json["photo_ids_received"][0]
        .as_str()
        .expect("photo received")
        .to_owned();
    let thumbnail_bytes = console_thumbnail(&browser, &server, &photo_id).await;
    assert!(
        thumbnail_bytes.len() < photo_bytes.len(),
        "a thumbnail is smaller than the original"
    );
    let response = browser
        .post(format!("{}/console/visits/{second}/decision", server.url()))
        .form(&[
            ("decision", "approve"),
            ("revision", "1"),
            ("content_hash", content_hash.as_str()),
        ])
        .send()
        .await
        .expect("decision post");
    assert_eq!(response.status(), reqwest::StatusCode::SEE_OTHER);
    assert_eq!(
        console_visit_json(&browser, &server, &second).await["state"],
        "approved"
    );

    // The phone's next sync shows both approvals.
    let report = phone.sync().await.expect("sync");
    assert!(report.visit_statuses_pulled >= 2);
    assert_eq!(state_of(&phone, &first), VisitState::Approved);
    assert_eq!(state_of(&phone, &second), VisitState::Approved);
    assert!(phone.tasks().expect("tasks").is_empty());

    // Nothing is lost over a server restart: the approvals are durable.
    let server = server.restart().await;
    let phone_after_restart = phone;
    phone_after_restart
        .set_server_url(&server.url())
        .expect("new port");
    phone_after_restart
        .sync()
        .await
        .expect("sync after restart");
    assert_eq!(state_of(&phone_after_restart, &first), VisitState::Approved);
}

#[tokio::test]
async fn a_returned_visit_becomes_a_task_and_its_fix_goes_back_to_the_queue() {
    let server = TestServer::start().await;
    let (phone, _phone_dir) = phone_of(&server, "cadre01").await;
    let (other_phone, _other_dir) = phone_of(&server, "cadre02").await;
    let household_id = phone.households().expect("households")[0]
        .household_id
        .clone();
    assert!(
        other_phone
            .households()
            .expect("households")
            .iter()
            .all(|household| household.household_id != household_id),
        "another cadre's phone never receives this household"
    );

    let visit_id = phone
        .record_visit(visit_at_home(&phone, &household_id))
        .expect("record");
    phone.sync().await.expect("sync");

    // The supervisor returns it with a reason attached to a field, through the console API.
    let browser = console_login(&server, "township1").await;
    let visit_json = console_visit_json(&browser, &server, &visit_id).await;
    let response = browser
        .post(format!(
            "{}/console/api/visits/{visit_id}/decision",
            server.url()
        ))
        .json(&serde_json::json!({
            "decision": "return",
            "revision": 1,
            "content_hash": visit_json["content_hash"],
            "reasons": [{"code": "content_too_short", "field": "observed_situation"}],
            "note": "请补充家庭收入变化情况",
            "deadline": "2026-12-10",
        }))
        .send()
        .await
        .expect("return");
    assert!(response.status().is_success(), "{}", response.status());

    // The return reaches the phone as a task.
    phone.sync().await.expect("sync");
    let tasks = phone.tasks().expect("tasks");
    assert_eq!(tasks.len(), 1);
    let task = &tasks[0];
    assert_eq!(task.visit_id, visit_id);
    assert_eq!(task.reasons[0].code, "content_too_short");
    assert_eq!(task.reasons[0].field, "observed_situation");
    assert_eq!(task.note, "请补充家庭收入变化情况");
    assert_eq!(task.deadline, "2026-12-10");
    assert_eq!(state_of(&phone, &visit_id), VisitState::Returned);

    // The cadre fixes it; the new revision supersedes the returned one.
    let revision = phone
        .resubmit_visit(&visit_id, |visit| {
            visit
                .observed_situation
                .push_str("本季度务工收入增加约3000元。");
        })
        .expect("fix");
    assert_eq!(revision, 2);
    phone.sync().await.expect("sync");
    assert!(phone.tasks().expect("tasks").is_empty());

    let (supervisor, mut review) = server.review_as("township1").await;
    let queue = review
        .list_queue(authorized(v1::ListQueueRequest::default(), &supervisor))
        .await
        .expect("queue")
        .into_inner();
    assert_eq!(queue.items.len(), 1);
    assert_eq!(
        (queue.items[0].visit_id.as_str(), queue.items[0].revision),
        (visit_id.as_str(), 2)
    );
    let detail = review
        .get_visit(authorized(
            v1::GetVisitRequest {
                visit_id: visit_id.clone(),
            },
            &supervisor,
        ))
        .await
        .expect("detail")
        .into_inner();
    let visit = detail.visit.expect("visit");
    assert_eq!(visit.supersedes_revision, 1);
    assert!(visit.observed_situation.contains("务工收入"));

    // A stale approval (of the returned revision 1) is refused.
    let stale = review
        .decide(authorized(
            v1::DecideRequest {
                visit_id: visit_id.clone(),
                revision: 1,
                content_hash: visit_json["content_hash"]
                    .as_str()
                    .unwrap_or_default()
                    .into(),
                decision: v1::Decision::Approve as i32,
                ..Default::default()
            },
            &supervisor,
        ))
        .await
        .expect_err("stale revision");
    assert_eq!(stale.code(), tonic::Code::FailedPrecondition);

    // A supervisor of the other township cannot see or decide it.
    let foreign = server
        .login("township2", &uuid::Uuid::now_v7().to_string())
        .await;
    let hidden = review
        .get_visit(authorized(
            v1::GetVisitRequest {
                visit_id: visit_id.clone(),
            },
            &foreign,
        ))
        .await
        .expect_err("other township");
    assert_eq!(hidden.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn console_logout_ends_the_session_on_the_server() {
    let server = TestServer::start().await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client");
    let login = http
        .post(format!("{}/console/login", server.url()))
        .form(&[("username", "township1"), ("password", DEMO_PASSWORD)])
        .send()
        .await
        .expect("login");
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .split(';')
        .next()
        .expect("name=value")
        .to_owned();
    let queue = |cookie: String| {
        http.get(format!("{}/console/api/queue", server.url()))
            .header("cookie", cookie)
            .send()
    };
    assert!(
        queue(cookie.clone())
            .await
            .expect("queue")
            .status()
            .is_success()
    );
    let page = http
        .get(format!("{}/console/login", server.url()))
        .header("cookie", cookie.clone())
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("page text");
    let csrf_token = csrf_token_in(&page).expect("the page carries the CSRF token");
    let logout = http
        .post(format!("{}/console/logout", server.url()))
        .header("cookie", cookie.clone())
        .header("x-csrf-token", csrf_token)
        .send()
        .await
        .expect("logout");
    assert_eq!(logout.status(), reqwest::StatusCode::SEE_OTHER);
    // A copy of the old cookie is worthless after logout.
    assert_eq!(
        queue(cookie).await.expect("queue").status(),
        reqwest::StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn an_edit_after_approval_is_a_new_revision_that_needs_approval_again() {
    let server = TestServer::start().await;
    let (phone, _phone_dir) = phone_of(&server, "cadre01").await;
    let household_id = phone.households().expect("households")[0]
        .household_id
        .clone();
    let visit_id = phone
        .record_visit(visit_at_home(&phone, &household_id))
        .expect("record");
    phone.sync().await.expect("sync");

    let (supervisor, mut review) = server.review_as("township1").await;
    let approved = review
        .get_visit(authorized(
            v1::GetVisitRequest {
                visit_id: visit_id.clone(),
            },
            &supervisor,
        ))
        .await
        .expect("detail")
        .into_inner();
    review
        .decide(authorized(
            v1::DecideRequest {
                visit_id: visit_id.clone(),
                revision: 1,
                content_hash: approved.content_hash.clone(),
                decision: v1::Decision::Approve as i32,
                ..Default::default()
            },
            &supervisor,
        ))
        .await
        .expect("approve");
    phone.sync().await.expect("sync");
    assert_eq!(state_of(&phone, &visit_id), VisitState::Approved);

    // The cadre learns more and amends the approved visit.
    let revision = phone
        .resubmit_visit(&visit_id, |visit| {
            visit.needs = "户主希望参加电商培训".into();
        })
        .expect("amend an approved visit");
    assert_eq!(revision, 2);
    phone.sync().await.expect("sync");

    // Revision 2 waits for approval; revision 1's approval stays frozen and cannot be
    // reused for the new content.
    let queue = review
        .list_queue(authorized(v1::ListQueueRequest::default(), &supervisor))
        .await
        .expect("queue")
        .into_inner();
    assert_eq!(queue.items.len(), 1);
    assert_eq!(queue.items[0].revision, 2);
    let stale = review
        .decide(authorized(
            v1::DecideRequest {
                visit_id: visit_id.clone(),
                revision: 1,
                content_hash: approved.content_hash,
                decision: v1::Decision::Approve as i32,
                ..Default::default()
            },
            &supervisor,
        ))
        .await
        .expect_err("an approval of the old revision does not cover the new one");
    assert_eq!(stale.code(), tonic::Code::FailedPrecondition);

    // The phone keeps its amendment: it is never reverted to the approved revision.
    phone.sync().await.expect("sync");
    let on_phone = phone.visit(&visit_id).expect("read").expect("visit");
    assert_eq!(on_phone.revision, 2);
    assert_eq!(on_phone.state, VisitState::Submitted);
    assert_eq!(
        on_phone.visit.expect("content").needs,
        "户主希望参加电商培训"
    );
}
