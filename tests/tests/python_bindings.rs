//! The phone bindings from Python (issue 13): the generated Python module of
//! `fieldsync-client-ffi`, loaded with the real shared library, against a real server on a
//! real socket with the demo county. The scenario itself is `tests/python/
//! test_fieldsync_client.py`, run with pytest in two stages: everything up to a revocation,
//! then (after this test revokes cadre01's sessions from the console) the sign-out.
//!
//! pytest comes from PyPI (`pip install pytest`, done by `.ci/run`). Without it the test says
//! it was skipped, unless `FIELDSYNC_REQUIRE_PYTHON=1` (set by CI) makes that a failure.

use std::path::{Path, PathBuf};

use fieldsync_tests::{
    TestServer, client_ffi_artifacts, command_without_fieldsync_environment, console_login,
};

/// pytest's exit code when every selected test passed.
const PYTEST_PASSED: i32 = 0;

fn python() -> PathBuf {
    PathBuf::from("python3")
}

/// Whether `python3 -m pytest` runs here.
fn pytest_available() -> bool {
    command_without_fieldsync_environment(&python())
        .args(["-m", "pytest", "--version"])
        .output()
        .is_ok_and(|output| output.status.success())
}

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root above tests/")
        .to_owned()
}

/// Generate the Python bindings from the built library into `out_dir`, next to a copy of
/// the library (the generated module loads it from its own folder).
fn generate_python_bindings(out_dir: &Path) {
    let (library, bindgen) = client_ffi_artifacts();
    let output = command_without_fieldsync_environment(&bindgen)
        .args(["generate", "--library"])
        .arg(&library)
        .args(["--language", "python", "--out-dir"])
        .arg(out_dir)
        .current_dir(repository_root())
        .output()
        .expect("run uniffi-bindgen");
    assert!(
        output.status.success(),
        "uniffi-bindgen generate failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let library_name = library.file_name().expect("library file name");
    std::fs::copy(&library, out_dir.join(library_name)).expect("copy the library");
    assert!(
        out_dir.join("fieldsync_client_ffi.py").is_file(),
        "the module is generated"
    );
}

/// The folders both stages share: the generated bindings, the phone's data folder (kept
/// between the stages like an app's), and scratch space.
#[derive(Debug, Clone)]
struct StageFolders {
    bindings: PathBuf,
    data_dir: PathBuf,
    work_dir: PathBuf,
}

/// Run one stage off the async runtime, so the server in this process keeps serving.
async fn stage(server_url: String, folders: StageFolders, selection: &'static str) {
    tokio::task::spawn_blocking(move || run_pytest(&server_url, &folders, selection))
        .await
        .expect("pytest stage");
}

/// Run the pytest tests whose names contain `selection`; panics with pytest's output when
/// any fails.
fn run_pytest(server_url: &str, folders: &StageFolders, selection: &str) {
    let StageFolders {
        bindings,
        data_dir,
        work_dir,
    } = folders;
    let test_file = repository_root().join("tests/python/test_fieldsync_client.py");
    let output: std::process::Output = command_without_fieldsync_environment(&python())
        .args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-k",
            selection,
        ])
        .arg(&test_file)
        .env("PYTHONPATH", bindings)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("FIELDSYNC_PY_SERVER_URL", server_url)
        .env("FIELDSYNC_PY_DATA_DIR", data_dir)
        .env(
            "FIELDSYNC_PY_PHOTOS",
            repository_root().join("testdata/photos"),
        )
        .env("FIELDSYNC_PY_WORK_DIR", work_dir)
        .current_dir(work_dir)
        .output()
        .expect("run pytest");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        output.status.code(),
        Some(PYTEST_PASSED),
        "pytest -k {selection} failed:\n{printed}"
    );
    // pytest exits 0 only when tests ran and passed, but a selection matching nothing is
    // exit 5; say what ran.
    println!(
        "pytest -k {selection}: {}",
        printed.lines().last().unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_app_logs_in_records_a_visit_with_a_photo_syncs_cancels_and_is_signed_out() {
    if !pytest_available() {
        assert!(
            std::env::var("FIELDSYNC_REQUIRE_PYTHON").as_deref() != Ok("1"),
            "FIELDSYNC_REQUIRE_PYTHON=1 but `python3 -m pytest` is not available (pip install pytest)"
        );
        println!(
            "python_bindings: skipped, `python3 -m pytest` is not available (pip install pytest)"
        );
        return;
    }
    let server = TestServer::start().await;
    let bindings = tempfile::tempdir().expect("temp dir");
    let data_dir = tempfile::tempdir().expect("temp dir");
    let work_dir = tempfile::tempdir().expect("temp dir");
    // Building and generating block; keep them off the runtime the server runs on.
    let bindings_path = bindings.path().to_owned();
    tokio::task::spawn_blocking(move || generate_python_bindings(&bindings_path))
        .await
        .expect("generate bindings");

    let folders = StageFolders {
        bindings: bindings.path().to_owned(),
        data_dir: data_dir.path().to_owned(),
        work_dir: work_dir.path().to_owned(),
    };
    stage(server.url(), folders.clone(), "before_revocation").await;

    // 注销全部设备 for cadre01 from the console, as a township supervisor would.
    let cadre_id = server
        .state
        .store
        .find_user_by_username("cadre01")
        .await
        .expect("store")
        .expect("demo user")
        .user_id;
    let browser = console_login(&server, "township1").await;
    let ended = browser
        .post(format!(
            "{}/console/api/users/{cadre_id}/devices/revoke-all",
            server.url()
        ))
        .send()
        .await
        .expect("revoke all");
    assert!(ended.status().is_success(), "{:?}", ended.status());

    stage(server.url(), folders, "after_revocation").await;
}
