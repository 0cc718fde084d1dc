//! The load generator against the real `fieldsync-server` binary: a county seeded by
//! `fieldsync_loadgen::seed` before start-up serves every simulated device's day without an
//! error, and refused logins are counted by gRPC code instead of stopping the run. Also:
//! an account whose stored hash was made with the argon2id defaults before issue 11
//! (m = 19456 KiB, t = 2) still logs in under the new defaults.

use argon2::password_hash::{PasswordHasher, SaltString};
use fieldsync_loadgen::run::{Mix, RunOptions, run};
use fieldsync_loadgen::seed::{SeedOptions, load_username, seed_county};
use fieldsync_proto::v1;
use fieldsync_tests::{ServerProcess, TestServer, client_info, server_binary};

const CADRES: usize = 12;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_devices_run_a_whole_day_against_the_server_binary_and_refusals_are_counted() {
    let root = tempfile::tempdir().expect("temp dir");
    let data_dir = root.path().join("data");
    let summary = seed_county(&SeedOptions::new(data_dir.clone(), CADRES, 3))
        .await
        .expect("seed");
    assert_eq!(summary.last_username, load_username(CADRES - 1));
    let seeding_again = seed_county(&SeedOptions::new(data_dir.clone(), CADRES, 3)).await;
    assert!(
        matches!(
            seeding_again,
            Err(fieldsync_loadgen::seed::SeedError::NotEmpty(_))
        ),
        "a seeded folder is never seeded twice: {seeding_again:?}"
    );

    let server = ServerProcess::start_binary(&server_binary(), &data_dir, false, &[]).await;
    let options = RunOptions {
        in_flight: 4,
        ..RunOptions::new(server.url(), CADRES, Mix::DeviceDay)
    };
    let report = run(&options).await.expect("run");
    assert_eq!(report.total_errors(), 0, "{}", report.markdown());
    assert_eq!(report.devices_clean, CADRES);
    for rpc in &report.rpcs {
        assert_eq!(rpc.calls, CADRES, "{}", rpc.rpc);
    }

    // A refused login is an outcome to count, not a reason to stop.
    let wrong_password = RunOptions {
        password: "not-the-password".into(),
        ..RunOptions::new(server.url(), 3, Mix::LoginOnly)
    };
    let refused = run(&wrong_password).await.expect("run");
    let login = refused.rpc("Auth/Login").expect("login row");
    assert_eq!(login.calls, 3);
    assert_eq!(login.errors_by_code.get("Unauthenticated"), Some(&3));
    assert_eq!(refused.devices_clean, 0);

    let health = run(&RunOptions::new(server.url(), 5, Mix::Health))
        .await
        .expect("run");
    assert_eq!(health.total_errors(), 0, "{}", health.markdown());
}

#[tokio::test]
async fn a_password_hashed_with_the_argon2id_defaults_before_issue_11_still_logs_in() {
    let server = TestServer::start().await;
    let user = server
        .state
        .store
        .find_user_by_username("cadre01")
        .await
        .expect("store")
        .expect("demo cadre");
    // The argon2 crate's default is OWASP's m = 19456 KiB, t = 2, p = 1: the server's
    // default until issue 11 changed it to m = 7168 KiB, t = 5.
    let salt = SaltString::encode_b64(b"an old salt 16 b").expect("salt");
    let old_hash = argon2::Argon2::default()
        .hash_password("旧的密码2025".as_bytes(), &salt)
        .expect("hash")
        .to_string();
    assert!(old_hash.contains("$m=19456,t=2,p=1$"), "{old_hash}");
    server
        .state
        .store
        .set_password_hash(&user.user_id, &old_hash)
        .await
        .expect("store the old hash");
    let new_default = server
        .state
        .login_guard
        .pool
        .hash("新的密码")
        .await
        .expect("hash");
    assert!(new_default.contains("$m=7168,t=5,p=1$"), "{new_default}");

    let mut auth = v1::auth_client::AuthClient::new(server.channel().await);
    let login = |password: &str| v1::LoginRequest {
        username: "cadre01".into(),
        password: password.into(),
        device_id: uuid::Uuid::now_v7().to_string(),
        device_name: "old-hash".into(),
        client: Some(client_info()),
        wants_refresh_token: false,
    };
    let answer = auth
        .login(login("旧的密码2025"))
        .await
        .expect("the old hash still verifies");
    assert_eq!(answer.into_inner().user_id, user.user_id);
    let wrong = auth.login(login("旧的密码2024")).await.expect_err("wrong");
    assert_eq!(wrong.code(), tonic::Code::Unauthenticated);
}
