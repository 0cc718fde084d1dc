//! Going live without the demo (issue 12), with the real `fieldsync-server` binary on real
//! folders: a folder nobody initialised is refused with what to run (and left uncreated);
//! `init` creates the county and its first administrator with a one-time password that is
//! printed once, refuses a second run, and refuses bad input changing nothing; the
//! administrator's first login must change that password; the server then serves.

use std::path::Path;

use fieldsync_tests::{
    ServerProcess, command_without_fieldsync_environment, csrf_token_in, server_binary,
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
    let dashboard = http
        .get(format!("{}/console/accounts", server.url()))
        .send()
        .await
        .expect("accounts");
    assert_eq!(dashboard.headers()["location"], "/console/password");
    let page = http
        .get(format!("{}/console/password", server.url()))
        .send()
        .await
        .expect("password page")
        .text()
        .await
        .expect("text");
    let token = csrf_token_in(&page).expect("csrf");
    let changed = http
        .post(format!("{}/console/password", server.url()))
        .header("x-csrf-token", &token)
        .form(&[
            ("old_password", password.as_str()),
            ("new_password", "县管理员的正式密码"),
            ("confirm_password", "县管理员的正式密码"),
        ])
        .send()
        .await
        .expect("change");
    assert_eq!(changed.status(), StatusCode::OK);
    let accounts = http
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
