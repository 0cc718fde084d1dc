//! Sessions and devices over real gRPC, real HTTP and real SQLite: logout, revocation from
//! the console with the phone's typed "signed out on the server" state (outbox kept),
//! refresh-token rotation and reuse detection, transparent refresh in the client core,
//! console idle expiry with the injected clock, password change, and the township scope of
//! revocation.

use std::sync::Arc;

use fieldsync_client::{Client, ClientError, SessionState, SignOutReason};
use fieldsync_model::access::{
    ACTION_PASSWORD_CHANGE, ACTION_REFRESH_TOKEN_REUSE, ACTION_SESSION_REVOKE,
};
use fieldsync_model::register::FieldTarget;
use fieldsync_proto::v1;
use fieldsync_server::clock::ManualClock;
use fieldsync_tests::{
    DEMO_PASSWORD, TestServer, authorized, client_info, console_login, phone_of,
};
use time::{Duration, OffsetDateTime};

async fn user_id_of(server: &TestServer, username: &str) -> String {
    server
        .state
        .store
        .find_user_by_username(username)
        .await
        .expect("store")
        .expect("demo user")
        .user_id
}

/// Queue one card edit on the phone (offline work that must survive a sign-out).
fn queue_an_edit(phone: &Client, phone_number: &str) -> usize {
    let household_id = phone.households().expect("households")[0]
        .household_id
        .clone();
    phone
        .edit_household_field(
            &household_id,
            FieldTarget::Household,
            "phone",
            phone_number.into(),
        )
        .expect("edit");
    phone.outbox().expect("outbox").len()
}

/// The `fieldsync-error` reason of a refused call.
fn error_kind(status: &tonic::Status) -> Option<String> {
    status
        .metadata()
        .get("fieldsync-error")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// A Pull with `token`: Ok, or the refusal.
async fn pull_with(server: &TestServer, token: &str) -> Result<(), tonic::Status> {
    let mut sync = v1::sync_client::SyncClient::new(server.channel().await);
    sync.pull(authorized(
        v1::PullRequest {
            heartbeat: None,
            cursor: String::new(),
            client: Some(client_info()),
        },
        token,
    ))
    .await
    .map(|_| ())
}

/// Log in over gRPC as an app that refreshes.
async fn login_refreshing(server: &TestServer, username: &str) -> v1::LoginResponse {
    let mut auth = v1::auth_client::AuthClient::new(server.channel().await);
    auth.login(v1::LoginRequest {
        username: username.into(),
        password: DEMO_PASSWORD.into(),
        device_id: uuid::Uuid::now_v7().to_string(),
        device_name: "红米 Note 12".into(),
        client: Some(client_info()),
        wants_refresh_token: true,
    })
    .await
    .expect("login")
    .into_inner()
}

async fn audit_actions(server: &TestServer) -> Vec<(String, String)> {
    server
        .state
        .store
        .audit_records(0, 1000)
        .await
        .expect("audit")
        .into_iter()
        .map(|record| (record.content.action, record.content.subject))
        .collect()
}

#[tokio::test]
async fn logout_ends_the_token_on_the_server_and_keeps_the_outbox() {
    let server = TestServer::start().await;
    let (phone, _folder) = phone_of(&server, "cadre01").await;
    let token = server
        .login("cadre01", &uuid::Uuid::now_v7().to_string())
        .await;
    let mut auth = v1::auth_client::AuthClient::new(server.channel().await);
    auth.logout(authorized(
        v1::LogoutRequest {
            client: Some(client_info()),
        },
        &token,
    ))
    .await
    .expect("logout over gRPC");
    let refused = pull_with(&server, &token).await.expect_err("token ended");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    assert_eq!(error_kind(&refused).as_deref(), Some("session_revoked"));

    // The client core: logout clears the session here, keeps the outbox.
    let queued = queue_an_edit(&phone, "13811112222");
    assert!(phone.logout().await.expect("logout"), "the server was told");
    assert_eq!(
        phone.session_state().expect("state"),
        SessionState::LoggedOut
    );
    assert_eq!(phone.outbox().expect("outbox").len(), queued);
    let error = phone.sync().await.expect_err("no session");
    assert!(matches!(error, ClientError::NotLoggedIn(_)), "{error:?}");
    // The same user logs in again: nothing is purged and the edit goes out.
    phone.login("cadre01", DEMO_PASSWORD).await.expect("login");
    phone.sync().await.expect("sync after login");
    assert!(phone.outbox().expect("outbox").is_empty());
}

#[tokio::test]
async fn revoke_from_the_console_signs_the_phone_out_and_keeps_its_outbox() {
    let server = TestServer::start().await;
    let (phone, _folder) = phone_of(&server, "cadre01").await;
    let queued = queue_an_edit(&phone, "13811112222");
    let cadre_id = user_id_of(&server, "cadre01").await;
    let browser = console_login(&server, "township1").await;

    let devices: serde_json::Value = browser
        .get(format!(
            "{}/console/api/users/{cadre_id}/devices",
            server.url()
        ))
        .send()
        .await
        .expect("devices")
        .json()
        .await
        .expect("json");
    let sessions = devices["sessions"].as_array().expect("sessions");
    let session = sessions
        .iter()
        .find(|session| session["device_id"] == phone.device_id())
        .unwrap_or_else(|| panic!("the phone's session is listed: {devices}"));
    assert_eq!(session["last_ip"], "127.0.0.1", "{session}");
    assert!(
        !session["app_version"]
            .as_str()
            .unwrap_or_default()
            .is_empty()
    );
    assert!(session["first_seen"].is_string() && session["last_seen"].is_string());
    let session_id = session["session_id"].as_str().expect("id").to_owned();

    // The HTML page lists it with both buttons, and the form revokes it.
    let page = browser
        .get(format!("{}/console/users/{cadre_id}/devices", server.url()))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(
        page.contains("在用设备") && page.contains("注销此设备") && page.contains("注销全部设备")
    );
    let revoked = browser
        .post(format!(
            "{}/console/users/{cadre_id}/devices/{session_id}/revoke",
            server.url()
        ))
        .send()
        .await
        .expect("revoke");
    assert_eq!(revoked.status(), reqwest::StatusCode::SEE_OTHER);

    let error = phone.sync().await.expect_err("signed out");
    assert!(
        matches!(
            error,
            ClientError::SignedOut {
                reason: SignOutReason::Revoked
            }
        ),
        "{error:?}"
    );
    assert_eq!(
        phone.status().expect("status").session,
        SessionState::SignedOutOnServer(SignOutReason::Revoked)
    );
    assert_eq!(phone.outbox().expect("outbox").len(), queued, "outbox kept");
    assert!(
        audit_actions(&server)
            .await
            .contains(&(ACTION_SESSION_REVOKE.to_owned(), cadre_id.clone())),
        "the revoke is audited"
    );
    // Logging in again sends what was kept.
    phone.login("cadre01", DEMO_PASSWORD).await.expect("login");
    phone.sync().await.expect("sync");
    assert!(phone.outbox().expect("outbox").is_empty());

    // 注销全部设备 through the JSON twin.
    let ended: serde_json::Value = browser
        .post(format!(
            "{}/console/api/users/{cadre_id}/devices/revoke-all",
            server.url()
        ))
        .send()
        .await
        .expect("revoke all")
        .json()
        .await
        .expect("json");
    assert!(ended["ended"].as_u64().unwrap_or_default() >= 1, "{ended}");
    assert!(matches!(
        phone.sync().await,
        Err(ClientError::SignedOut { .. })
    ));
}

#[tokio::test]
async fn a_supervisor_cannot_see_or_revoke_another_townships_cadre() {
    let server = TestServer::start().await;
    let own_area = server
        .state
        .store
        .find_user_by_username("township1")
        .await
        .expect("store")
        .expect("supervisor")
        .area_id;
    let mut other_cadre = None;
    for number in 1..=99 {
        let user = server
            .state
            .store
            .find_user_by_username(&format!("cadre{number:02}"))
            .await
            .expect("store");
        if let Some(user) = user
            && user.area_id != own_area
        {
            other_cadre = Some(user);
            break;
        }
    }
    let other_cadre = other_cadre.expect("a cadre of another township");
    let token = server
        .login(&other_cadre.username, &uuid::Uuid::now_v7().to_string())
        .await;
    let browser = console_login(&server, "township1").await;
    let base = format!(
        "{}/console/users/{}/devices",
        server.url(),
        other_cadre.user_id
    );
    let page = browser.get(&base).send().await.expect("page");
    assert_eq!(page.status(), reqwest::StatusCode::NOT_FOUND);
    let revoke_all = browser
        .post(format!("{base}/revoke-all"))
        .send()
        .await
        .expect("post");
    assert_eq!(revoke_all.status(), reqwest::StatusCode::NOT_FOUND);
    let api = browser
        .post(format!(
            "{}/console/api/users/{}/devices/revoke-all",
            server.url(),
            other_cadre.user_id
        ))
        .send()
        .await
        .expect("post");
    assert_eq!(api.status(), reqwest::StatusCode::NOT_FOUND);
    pull_with(&server, &token)
        .await
        .expect("the other township's cadre is still logged in");

    // The county administrator may.
    let county = console_login(&server, "county").await;
    let ended: serde_json::Value = county
        .post(format!(
            "{}/console/api/users/{}/devices/revoke-all",
            server.url(),
            other_cadre.user_id
        ))
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    assert_eq!(ended["ended"], 1, "{ended}");
    let refused = pull_with(&server, &token).await.expect_err("revoked");
    assert_eq!(error_kind(&refused).as_deref(), Some("session_revoked"));
}

#[tokio::test]
async fn refresh_rotates_the_pair_and_reusing_an_old_refresh_token_revokes_the_device() {
    let server = TestServer::start().await;
    let login = login_refreshing(&server, "cadre01").await;
    assert!(!login.refresh_token.is_empty());
    let expiry = login.token_expires_at.expect("access expiry");
    let refresh_expiry = login.refresh_token_expires_at.expect("refresh expiry");
    assert!(
        refresh_expiry.seconds - expiry.seconds > 24 * 3600,
        "the access token is short-lived, the refresh token long-lived"
    );
    pull_with(&server, &login.token)
        .await
        .expect("access works");

    let mut auth = v1::auth_client::AuthClient::new(server.channel().await);
    let rotated = auth
        .refresh(v1::RefreshRequest {
            refresh_token: login.refresh_token.clone(),
            client: Some(client_info()),
        })
        .await
        .expect("refresh")
        .into_inner();
    assert_ne!(rotated.token, login.token);
    assert_ne!(rotated.refresh_token, login.refresh_token);
    pull_with(&server, &rotated.token)
        .await
        .expect("new access works");
    assert!(
        pull_with(&server, &login.token).await.is_err(),
        "old access replaced"
    );

    // Someone replays the rotated-away refresh token: the whole session ends.
    let reused = auth
        .refresh(v1::RefreshRequest {
            refresh_token: login.refresh_token.clone(),
            client: Some(client_info()),
        })
        .await
        .expect_err("reuse refused");
    assert_eq!(reused.code(), tonic::Code::Unauthenticated);
    assert_eq!(error_kind(&reused).as_deref(), Some("session_revoked"));
    let refused = pull_with(&server, &rotated.token)
        .await
        .expect_err("revoked");
    assert_eq!(error_kind(&refused).as_deref(), Some("session_revoked"));
    let newest = auth
        .refresh(v1::RefreshRequest {
            refresh_token: rotated.refresh_token,
            client: Some(client_info()),
        })
        .await
        .expect_err("the newest refresh token is dead too");
    assert_eq!(error_kind(&newest).as_deref(), Some("session_revoked"));
    let cadre_id = user_id_of(&server, "cadre01").await;
    assert!(
        audit_actions(&server)
            .await
            .contains(&(ACTION_REFRESH_TOKEN_REUSE.to_owned(), cadre_id)),
        "reuse is audited"
    );
}

#[tokio::test]
async fn the_phone_refreshes_by_itself_when_its_access_token_expires() {
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let server = TestServer::start_with_clock(clock.clone()).await;
    let (phone, _folder) = phone_of(&server, "cadre01").await;
    let queued = queue_an_edit(&phone, "13811112222");
    assert!(queued > 0);
    // Past the 15-minute access token, twice: each sync refreshes once and goes through.
    for minutes in [20, 40] {
        clock.set(OffsetDateTime::now_utc() + Duration::minutes(minutes));
        phone.sync().await.expect("sync refreshes transparently");
        assert_eq!(
            phone.session_state().expect("state"),
            SessionState::LoggedIn
        );
    }
    assert!(phone.outbox().expect("outbox").is_empty());
    // Past the refresh token's 30 days: signed out, typed.
    clock.set(OffsetDateTime::now_utc() + Duration::days(31));
    queue_an_edit(&phone, "13933334444");
    let error = phone.sync().await.expect_err("expired");
    assert!(
        matches!(
            error,
            ClientError::SignedOut {
                reason: SignOutReason::Expired
            }
        ),
        "{error:?}"
    );
    assert_eq!(phone.outbox().expect("outbox").len(), 1, "outbox kept");
}

#[tokio::test]
async fn console_sessions_expire_after_idle_time_and_the_cookie_is_a_browser_session_cookie() {
    let start = OffsetDateTime::now_utc();
    let clock = Arc::new(ManualClock::new(start));
    let server = TestServer::start_with_clock(clock.clone()).await;

    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let login = plain
        .post(format!("{}/console/login", server.url()))
        .form(&[("username", "township1"), ("password", DEMO_PASSWORD)])
        .send()
        .await
        .expect("login");
    let cookie = login
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|value| value.to_str().ok())
        .expect("set-cookie")
        .to_owned();
    let lower = cookie.to_ascii_lowercase();
    assert!(
        !lower.contains("max-age") && !lower.contains("expires"),
        "a browser-session cookie: {cookie}"
    );

    let browser = console_login(&server, "township1").await;
    let dashboard = format!("{}/console/dashboard", server.url());
    // Active every 20 minutes: the session slides along.
    for minutes in [20, 40, 60] {
        clock.set(start + Duration::minutes(minutes));
        let page = browser.get(&dashboard).send().await.expect("page");
        assert_eq!(page.status(), reqwest::StatusCode::OK, "at +{minutes} min");
    }
    // 31 minutes idle: sent to the login page.
    clock.set(start + Duration::minutes(91));
    let page = browser.get(&dashboard).send().await.expect("page");
    assert_eq!(page.status(), reqwest::StatusCode::SEE_OTHER);
    assert_eq!(
        page.headers()
            .get(reqwest::header::LOCATION)
            .and_then(|value| value.to_str().ok()),
        Some("/console/login")
    );
}

#[tokio::test]
async fn password_change_over_grpc_ends_the_other_sessions_and_keeps_this_one() {
    let server = TestServer::start().await;
    let this_device = server
        .login("cadre01", &uuid::Uuid::now_v7().to_string())
        .await;
    let other_device = server
        .login("cadre01", &uuid::Uuid::now_v7().to_string())
        .await;
    let mut auth = v1::auth_client::AuthClient::new(server.channel().await);
    let change = |old: &str, new: &str| {
        authorized(
            v1::ChangePasswordRequest {
                old_password: old.into(),
                new_password: new.into(),
                client: Some(client_info()),
            },
            &this_device,
        )
    };
    let short = auth
        .change_password(change(DEMO_PASSWORD, "short"))
        .await
        .expect_err("too short");
    assert_eq!(short.code(), tonic::Code::InvalidArgument);
    assert!(short.message().contains("new_password"), "{short:?}");
    let wrong_old = auth
        .change_password(change("not-the-password", "a-much-better-password"))
        .await
        .expect_err("wrong old password");
    assert_eq!(wrong_old.code(), tonic::Code::InvalidArgument);
    assert!(
        wrong_old.message().contains("old_password"),
        "{wrong_old:?}"
    );
    pull_with(&server, &other_device)
        .await
        .expect("refusals end nothing");

    let answer = auth
        .change_password(change(DEMO_PASSWORD, "a-much-better-password"))
        .await
        .expect("change")
        .into_inner();
    assert_eq!(answer.other_sessions_ended, 1);
    pull_with(&server, &this_device)
        .await
        .expect("this session stays");
    let refused = pull_with(&server, &other_device).await.expect_err("ended");
    assert_eq!(error_kind(&refused).as_deref(), Some("session_revoked"));

    let login = |password: &'static str| {
        let channel = server.channel();
        async move {
            v1::auth_client::AuthClient::new(channel.await)
                .login(v1::LoginRequest {
                    username: "cadre01".into(),
                    password: password.into(),
                    device_id: uuid::Uuid::now_v7().to_string(),
                    device_name: "test".into(),
                    client: Some(client_info()),
                    wants_refresh_token: false,
                })
                .await
        }
    };
    assert!(
        login(DEMO_PASSWORD).await.is_err(),
        "the old password is gone"
    );
    login("a-much-better-password")
        .await
        .expect("the new one works");
    let cadre_id = user_id_of(&server, "cadre01").await;
    assert!(
        audit_actions(&server)
            .await
            .contains(&(ACTION_PASSWORD_CHANGE.to_owned(), cadre_id)),
        "audited"
    );
}

#[tokio::test]
async fn password_change_from_the_client_core_keeps_the_phone_logged_in() {
    let server = TestServer::start().await;
    let (phone, _folder) = phone_of(&server, "cadre01").await;
    let error = phone
        .change_password(DEMO_PASSWORD, "short")
        .await
        .expect_err("too short");
    assert!(matches!(error, ClientError::Invalid { .. }), "{error:?}");
    phone
        .change_password(DEMO_PASSWORD, "新的密码-2026")
        .await
        .expect("change");
    phone.sync().await.expect("still logged in");
    assert!(phone.logout().await.expect("logout"));
    phone
        .login("cadre01", "新的密码-2026")
        .await
        .expect("login with the new password");
}

#[tokio::test]
async fn password_change_in_the_console_keeps_the_console_session() {
    let server = TestServer::start().await;
    let phone_token = server
        .login("township1", &uuid::Uuid::now_v7().to_string())
        .await;
    let browser = console_login(&server, "township1").await;
    let form = browser
        .get(format!("{}/console/password", server.url()))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(form.contains("修改密码"));
    let mismatch = browser
        .post(format!("{}/console/password", server.url()))
        .form(&[
            ("old_password", DEMO_PASSWORD),
            ("new_password", "console-password-1"),
            ("confirm_password", "console-password-2"),
        ])
        .send()
        .await
        .expect("post");
    assert_eq!(mismatch.status(), reqwest::StatusCode::BAD_REQUEST);
    let changed = browser
        .post(format!("{}/console/password", server.url()))
        .form(&[
            ("old_password", DEMO_PASSWORD),
            ("new_password", "console-password-1"),
            ("confirm_password", "console-password-1"),
        ])
        .send()
        .await
        .expect("post");
    assert_eq!(changed.status(), reqwest::StatusCode::OK);
    assert!(changed.text().await.expect("html").contains("密码已修改"));
    let dashboard = browser
        .get(format!("{}/console/dashboard", server.url()))
        .send()
        .await
        .expect("page");
    assert_eq!(
        dashboard.status(),
        reqwest::StatusCode::OK,
        "this session stays"
    );
    let refused = pull_with(&server, &phone_token).await.expect_err("ended");
    assert_eq!(error_kind(&refused).as_deref(), Some("session_revoked"));
}

/// Path of the real `fieldsync` CLI in this test's profile folder, built once per test
/// process (this crate depends on the client core as a library only, so cargo does not
/// build its binary for us; see `fieldsync_tests::server_binary` for the same approach).
fn cli_binary() -> std::path::PathBuf {
    static BINARY: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BINARY
        .get_or_init(|| {
            let exe = std::env::current_exe().expect("test executable path");
            let profile_dir = exe
                .parent()
                .and_then(std::path::Path::parent)
                .expect("test executable inside target/<profile>/deps")
                .to_owned();
            let profile = match profile_dir.file_name().and_then(|name| name.to_str()) {
                Some("debug") | None => "dev".to_owned(),
                Some(other) => other.to_owned(),
            };
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let output = std::process::Command::new(cargo)
                .args(["build", "--quiet", "-p", "fieldsync-client"])
                .args(["--bin", "fieldsync", "--profile", &profile])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .output()
                .expect("run cargo build for the fieldsync CLI");
            assert!(
                output.status.success(),
                "cargo build -p fieldsync-client --bin fieldsync failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            profile_dir.join(format!("fieldsync{}", std::env::consts::EXE_SUFFIX))
        })
        .clone()
}

/// Run the CLI with `arguments`, the given environment and standard input; returns
/// (success, stdout + stderr).
async fn run_cli(
    data_dir: &std::path::Path,
    server: &TestServer,
    arguments: &[&str],
    environment: &[(&str, &str)],
    stdin: &str,
) -> (bool, String) {
    use tokio::io::AsyncWriteExt;
    let mut command = tokio::process::Command::new(cli_binary());
    command
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--server")
        .arg(server.url())
        .args(arguments)
        .env_remove("FIELDSYNC_PASSWORD")
        .env_remove("FIELDSYNC_NEW_PASSWORD")
        .env_remove("FIELDSYNC_SERVER")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (name, value) in environment {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("spawn the CLI");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.as_bytes())
        .await
        .expect("write stdin");
    drop(input);
    let output = child.wait_with_output().await.expect("CLI runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[tokio::test]
async fn the_cli_changes_the_password_from_the_environment_or_a_prompt_and_logs_out() {
    let server = TestServer::start().await;
    let folder = tempfile::tempdir().expect("temp dir");
    let (ok, text) = run_cli(
        folder.path(),
        &server,
        &["login", "cadre01"],
        &[("FIELDSYNC_PASSWORD", DEMO_PASSWORD)],
        "",
    )
    .await;
    assert!(ok, "{text}");
    let other_device = server
        .login("cadre01", &uuid::Uuid::now_v7().to_string())
        .await;

    // From the environment.
    let (ok, text) = run_cli(
        folder.path(),
        &server,
        &["password"],
        &[
            ("FIELDSYNC_PASSWORD", DEMO_PASSWORD),
            ("FIELDSYNC_NEW_PASSWORD", "cli-password-2026"),
        ],
        "",
    )
    .await;
    assert!(ok && text.contains("密码已修改"), "{text}");
    let refused = pull_with(&server, &other_device).await.expect_err("ended");
    assert_eq!(error_kind(&refused).as_deref(), Some("session_revoked"));

    // From the prompt (standard input); a too-short one is refused with a clear error.
    let (ok, text) = run_cli(
        folder.path(),
        &server,
        &["password"],
        &[],
        "cli-password-2026\nshort\n",
    )
    .await;
    assert!(!ok && text.contains("new_password"), "{text}");
    let (ok, text) = run_cli(
        folder.path(),
        &server,
        &["password"],
        &[],
        "cli-password-2026\nanother-password-1\n",
    )
    .await;
    assert!(ok, "{text}");

    let (ok, text) = run_cli(folder.path(), &server, &["logout"], &[], "").await;
    assert!(ok && text.contains("已退出登录"), "{text}");
    let (ok, text) = run_cli(folder.path(), &server, &["sync"], &[], "").await;
    assert!(!ok, "no session after logout: {text}");
    let (ok, text) = run_cli(
        folder.path(),
        &server,
        &["login", "cadre01"],
        &[("FIELDSYNC_PASSWORD", "another-password-1")],
        "",
    )
    .await;
    assert!(ok, "the newest password works: {text}");
}
