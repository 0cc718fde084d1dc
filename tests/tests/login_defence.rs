//! Login under attack (issue 10 item 3), over real gRPC and the real console on port 0:
//! repeated failures are throttled by username and by client address with a `retry-after`,
//! the back-off ends when the (injected) clock passes it, an unknown user is answered exactly
//! like a wrong password, the console answers 429 with `Retry-After`, every lock is audited,
//! and the hashing pool never runs more hashes at once than it has threads.

use std::sync::Arc;

use fieldsync_model::access::ACTION_LOGIN_THROTTLED;
use fieldsync_proto::v1;
use fieldsync_server::clock::ManualClock;
use fieldsync_tests::{DEMO_PASSWORD, TestServer, client_info};
use time::{Duration, OffsetDateTime};
use tonic::Code;

fn start_time() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_790_000_000).expect("valid instant")
}

fn login_request(username: &str, password: &str) -> tonic::Request<v1::LoginRequest> {
    tonic::Request::new(v1::LoginRequest {
        username: username.into(),
        password: password.into(),
        device_id: uuid::Uuid::now_v7().to_string(),
        device_name: "test".into(),
        client: Some(client_info()),
        wants_refresh_token: false,
    })
}

async fn login_status(
    server: &TestServer,
    username: &str,
    password: &str,
) -> Result<v1::LoginResponse, tonic::Status> {
    v1::auth_client::AuthClient::new(server.channel().await)
        .login(login_request(username, password))
        .await
        .map(tonic::Response::into_inner)
}

fn retry_after(status: &tonic::Status) -> u64 {
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    status
        .metadata()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| panic!("retry-after metadata on {status:?}"))
}

async fn throttle_audits(server: &TestServer) -> Vec<String> {
    server
        .state
        .store
        .audit_records(0, 1000)
        .await
        .expect("audit records")
        .into_iter()
        .filter(|record| record.content.action == ACTION_LOGIN_THROTTLED)
        .map(|record| record.content.subject)
        .collect()
}

#[tokio::test]
async fn twenty_wrong_passwords_then_the_right_one_is_throttled_until_the_back_off_passes() {
    let clock = Arc::new(ManualClock::new(start_time()));
    let server = TestServer::start_with_clock(clock.clone()).await;
    let mut answers = Vec::new();
    for _ in 0..20 {
        let status = login_status(&server, "cadre01", "wrong")
            .await
            .expect_err("wrong password");
        answers.push(status.code());
    }
    // Five failures are checked (and cost a hash each); the lock follows the fifth, and the
    // fifteen attempts during the lock are refused before any hash.
    assert_eq!(answers[..5], [Code::Unauthenticated; 5]);
    assert_eq!(answers[5..], [Code::ResourceExhausted; 15]);
    let refused = login_status(&server, "cadre01", DEMO_PASSWORD)
        .await
        .expect_err("the right password is refused while locked");
    assert_eq!(retry_after(&refused), 1);
    assert!(
        refused.message().contains("登录尝试过多，请 1 秒后再试"),
        "{}",
        refused.message()
    );

    // After the wait a wrong password is checked again and doubles the lock.
    clock.set(start_time() + Duration::seconds(1));
    let status = login_status(&server, "cadre01", "wrong")
        .await
        .expect_err("wrong password");
    assert_eq!(status.code(), Code::Unauthenticated);
    let refused = login_status(&server, "cadre01", DEMO_PASSWORD)
        .await
        .expect_err("locked again");
    assert_eq!(retry_after(&refused), 2, "the back-off doubles");

    clock.set(start_time() + Duration::seconds(3));
    let granted = login_status(&server, "cadre01", DEMO_PASSWORD)
        .await
        .expect("the right password after the back-off");
    assert!(!granted.token.is_empty());
    // The success cleared the username's failures: one wrong password is just wrong.
    let status = login_status(&server, "cadre01", "wrong")
        .await
        .expect_err("wrong password");
    assert_eq!(status.code(), Code::Unauthenticated);

    assert_eq!(
        throttle_audits(&server).await,
        vec!["username:cadre01".to_owned()],
        "the lock is audited once, when the threshold is crossed"
    );
}

#[tokio::test]
async fn an_unknown_user_is_answered_and_throttled_exactly_like_a_wrong_password() {
    let server = TestServer::start_with_clock(Arc::new(ManualClock::new(start_time()))).await;
    let pool = &server.state.login_guard.pool;

    let before = pool.jobs_started();
    let wrong = login_status(&server, "cadre01", "wrong")
        .await
        .expect_err("wrong password");
    assert_eq!(
        pool.jobs_started() - before,
        1,
        "one hash for a wrong password"
    );
    let before = pool.jobs_started();
    let unknown = login_status(&server, "nobody-here", "wrong")
        .await
        .expect_err("unknown user");
    assert_eq!(
        pool.jobs_started() - before,
        1,
        "one hash, with the same parameters, for an unknown user"
    );
    assert_eq!(wrong.code(), Code::Unauthenticated);
    assert_eq!(unknown.code(), wrong.code());
    assert_eq!(unknown.message(), wrong.message());

    // Unknown names are counted and locked the same way, so probing them is throttled too.
    for _ in 0..4 {
        login_status(&server, "nobody-here", "wrong")
            .await
            .expect_err("unknown user");
    }
    let locked_unknown = login_status(&server, "nobody-here", "wrong")
        .await
        .expect_err("locked");
    for _ in 0..4 {
        login_status(&server, "cadre01", "wrong")
            .await
            .expect_err("wrong password");
    }
    let locked_known = login_status(&server, "cadre01", "wrong")
        .await
        .expect_err("locked");
    assert_eq!(retry_after(&locked_unknown), retry_after(&locked_known));
    assert_eq!(locked_unknown.message(), locked_known.message());
}

#[tokio::test]
async fn one_address_guessing_many_usernames_is_locked_for_every_username() {
    let clock = Arc::new(ManualClock::new(start_time()));
    let server = TestServer::start_with_clock(clock.clone()).await;
    // Twenty different made-up names, one attempt each: no username reaches its limit, but
    // the address (127.0.0.1, the TCP peer) does.
    for index in 0..20 {
        let status = login_status(&server, &format!("guess{index:02}"), "wrong")
            .await
            .expect_err("unknown user");
        assert_eq!(status.code(), Code::Unauthenticated, "attempt {index}");
    }
    let refused = login_status(&server, "township1", DEMO_PASSWORD)
        .await
        .expect_err("the address is locked for every username");
    assert_eq!(retry_after(&refused), 1);
    assert_eq!(
        throttle_audits(&server).await,
        vec!["address:127.0.0.1".to_owned()]
    );
    clock.set(start_time() + Duration::seconds(1));
    login_status(&server, "township1", DEMO_PASSWORD)
        .await
        .expect("the address lock ended");
}

#[tokio::test]
async fn the_console_login_answers_429_with_retry_after_once_throttled() {
    let server = TestServer::start_with_clock(Arc::new(ManualClock::new(start_time()))).await;
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client");
    let post = |password: &'static str| {
        browser
            .post(format!("{}/console/login", server.url()))
            .form(&[("username", "township1"), ("password", password)])
            .send()
    };
    for _ in 0..5 {
        let response = post("wrong").await.expect("post");
        assert_eq!(response.status(), reqwest::StatusCode::UNAUTHORIZED);
    }
    let response = post(DEMO_PASSWORD).await.expect("post");
    assert_eq!(response.status(), reqwest::StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok()),
        Some("1")
    );
    let page = response.text().await.expect("body");
    assert!(page.contains("登录尝试过多，请 1 秒后再试"), "{page}");
    assert!(
        page.contains("name=\"password\""),
        "the login form is shown again"
    );
}

#[tokio::test]
async fn concurrent_logins_never_run_more_hashes_than_the_pool_has_threads() {
    let server = TestServer::start().await;
    let pool = &server.state.login_guard.pool;
    let before = pool.jobs_started();
    let mut logins = tokio::task::JoinSet::new();
    for index in 0..16 {
        let channel = server.channel().await;
        // Distinct usernames, alternating right and wrong passwords: none is throttled
        // (the address stays under its limit of 20 failures).
        let (username, password) = if index % 2 == 0 {
            (format!("cadre{:02}", index / 2 + 1), DEMO_PASSWORD)
        } else {
            (format!("nobody{index:02}"), "wrong")
        };
        logins.spawn(async move {
            v1::auth_client::AuthClient::new(channel)
                .login(v1::LoginRequest {
                    username,
                    password: password.into(),
                    device_id: uuid::Uuid::now_v7().to_string(),
                    device_name: "test".into(),
                    client: Some(client_info()),
                    wants_refresh_token: false,
                })
                .await
                .map(|_| ())
                .map_err(|status| status.code())
        });
    }
    let outcomes = logins.join_all().await;
    let granted = outcomes.iter().filter(|outcome| outcome.is_ok()).count();
    assert_eq!(granted, 8, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|outcome| matches!(outcome, Ok(()) | Err(Code::Unauthenticated))),
        "{outcomes:?}"
    );
    assert_eq!(pool.jobs_started() - before, 16, "one hash per login");
    assert!(
        (1..=pool.threads()).contains(&pool.peak_in_flight()),
        "peak {} hashes at once with {} threads",
        pool.peak_in_flight(),
        pool.threads()
    );
}

/// A gRPC login that says it was forwarded for `client` (what nginx adds with
/// `grpc_set_header X-Forwarded-For $proxy_add_x_forwarded_for`).
async fn login_forwarded_for(
    server: &TestServer,
    client: &str,
    username: &str,
    password: &str,
) -> Result<v1::LoginResponse, tonic::Status> {
    let mut request = login_request(username, password);
    request
        .metadata_mut()
        .insert("x-forwarded-for", client.parse().expect("metadata value"));
    v1::auth_client::AuthClient::new(server.channel().await)
        .login(request)
        .await
        .map(tonic::Response::into_inner)
}

/// Three failures lock an address for ten minutes, while usernames stay unlocked: so a
/// lock seen below is the address's, and no test waits on a real clock.
fn strict_address_limit(settings: &mut fieldsync_server::settings::Settings) {
    settings.login.address_failures_before_lock = 3;
    settings.login.username_failures_before_lock = 100;
    settings.login.first_lock_secs = 600;
}

/// Three failed logins under made-up usernames, forwarded for these addresses in turn;
/// then the right password of `township1`, forwarded for `then_from`, must be refused as
/// throttled.
async fn three_failures_then_locked(
    server: &TestServer,
    forwarded_for: [&str; 3],
    then_from: &str,
) {
    for (index, client) in forwarded_for.into_iter().enumerate() {
        let status = login_forwarded_for(server, client, &format!("guess{index}"), "x")
            .await
            .expect_err("unknown user");
        assert_eq!(status.code(), Code::Unauthenticated, "attempt {index}");
    }
    let refused = login_forwarded_for(server, then_from, "township1", DEMO_PASSWORD)
        .await
        .expect_err("the address is locked");
    assert_eq!(refused.code(), Code::ResourceExhausted);
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_is_throttled_and_recorded_apart() {
    let server = TestServer::start_with_settings(|settings| {
        strict_address_limit(settings);
        settings.trusted_proxies =
            fieldsync_server::settings::TrustedProxies::parse(["127.0.0.1".to_owned()])
                .expect("proxy list");
    })
    .await;
    // A guesser behind the proxy: its address is locked after three failures…
    let guesser = "203.0.113.7";
    three_failures_then_locked(&server, [guesser; 3], guesser).await;
    assert_eq!(
        throttle_audits(&server).await,
        vec!["address:203.0.113.7".to_owned()],
        "the lock names the client, not the proxy"
    );
    // …while a cadre behind the same proxy, from another address, still logs in, and the
    // session records the cadre's own address (在用设备 shows it).
    let granted = login_forwarded_for(&server, "198.51.100.20", "township1", DEMO_PASSWORD)
        .await
        .expect("another client behind the same proxy is not locked");
    let session = server
        .state
        .store
        .find_session(&fieldsync_server::auth::token_sha256(&granted.token))
        .await
        .expect("store")
        .expect("session");
    assert_eq!(session.last_ip, "198.51.100.20");
}

#[tokio::test]
async fn without_trusted_proxies_a_forged_forwarded_address_changes_nothing() {
    let server = TestServer::start_with_settings(strict_address_limit).await;
    // An attacker rotating made-up X-Forwarded-For values is still one address: 127.0.0.1.
    three_failures_then_locked(
        &server,
        ["203.0.113.1", "203.0.113.2", "203.0.113.3"],
        "203.0.113.4",
    )
    .await;
    assert_eq!(
        throttle_audits(&server).await,
        vec!["address:127.0.0.1".to_owned()]
    );
}

#[tokio::test]
async fn the_console_cookie_is_secure_when_a_trusted_proxy_forwarded_https_only() {
    let server = TestServer::start_with_settings(|settings| {
        settings.trusted_proxies =
            fieldsync_server::settings::TrustedProxies::parse(["127.0.0.0/8".to_owned()])
                .expect("proxy list");
    })
    .await;
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client");
    let login_cookie = |scheme: &'static str| {
        let request = browser
            .post(format!("{}/console/login", server.url()))
            .header("x-forwarded-for", "198.51.100.30")
            .form(&[("username", "township1"), ("password", DEMO_PASSWORD)]);
        let request = if scheme.is_empty() {
            request
        } else {
            request.header("x-forwarded-proto", scheme)
        };
        async move {
            let response = request.send().await.expect("post");
            assert_eq!(response.status(), reqwest::StatusCode::SEE_OTHER);
            response
                .headers()
                .get(reqwest::header::SET_COOKIE)
                .and_then(|value| value.to_str().ok())
                .expect("session cookie")
                .to_owned()
        }
    };
    assert!(login_cookie("https").await.ends_with("; Secure"));
    assert!(!login_cookie("http").await.contains("Secure"));
    assert!(!login_cookie("").await.contains("Secure"));
}
