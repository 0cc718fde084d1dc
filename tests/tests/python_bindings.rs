//! The phone bindings from Python (issue 13): the generated Python module of
//! `fieldsync-client-ffi`, loaded with the real shared library, against a real server on a
//! real socket with the demo county. The scenario itself is `tests/python/
//! test_fieldsync_client.py`, run with pytest in stages, with the supervisor's decisions in
//! between, as a township supervisor makes them (Review gRPC) and the console (revocation):
//!
//! 1. `before_return`: login, pull, refusals, a full visit with a photo, sync with progress,
//!    cancel and resume, the OS background-upload pattern, income. The visit id is left in
//!    the work folder.
//! 2. This test returns the visit (two reasons: the photo and 生产生活情况).
//! 3. `after_return`: the task appears; the visit is fixed (a named field changed, the photo
//!    replaced) and synced.
//! 4. This test checks revision 2 carries only the new photo, and approves it.
//! 5. `after_approval`: the phone sees it approved.
//! 6. This test revokes cadre01's sessions from the console; `after_revocation`: the phone
//!    sees `SignedOutByServer`.
//!
//! pytest comes from PyPI (`pip install pytest`, done by `.ci/run`). Without it the test says
//! it was skipped, unless `FIELDSYNC_REQUIRE_PYTHON=1` (set by CI) makes that a failure.

use std::path::{Path, PathBuf};

use fieldsync_proto::v1;
use fieldsync_tests::{
    TestServer, authorized, client_ffi_artifacts, command_without_fieldsync_environment,
    console_login, test_photo,
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

/// The supervisor's view of one visit.
async fn get_visit(
    review: &mut v1::review_client::ReviewClient<tonic::transport::Channel>,
    token: &str,
    visit_id: &str,
) -> v1::GetVisitResponse {
    review
        .get_visit(authorized(
            v1::GetVisitRequest {
                visit_id: visit_id.to_owned(),
            },
            token,
        ))
        .await
        .expect("get visit")
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_app_records_syncs_is_returned_fixes_is_approved_and_is_signed_out() {
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
    stage(server.url(), folders.clone(), "before_return").await;

    // The township supervisor returns the visit: the photo and 生产生活情况 must be redone.
    let visit_id = std::fs::read_to_string(work_dir.path().join("visit_id.txt"))
        .expect("stage one leaves the visit id")
        .trim()
        .to_owned();
    let (supervisor, mut review) = server.review_as("township1").await;
    let detail = get_visit(&mut review, &supervisor, &visit_id).await;
    let first_photo_ids = detail.visit.as_ref().expect("visit").photo_ids.clone();
    assert_eq!(first_photo_ids.len(), 1);
    review
        .decide(authorized(
            v1::DecideRequest {
                visit_id: visit_id.clone(),
                revision: 1,
                content_hash: detail.content_hash,
                decision: v1::Decision::Return as i32,
                reasons: vec![
                    v1::ReturnReason {
                        code: "photo_unclear".into(),
                        field: "photo_ids".into(),
                    },
                    v1::ReturnReason {
                        code: "content_too_short".into(),
                        field: "observed_situation".into(),
                    },
                ],
                note: "请重拍户主合影，补充收入情况".into(),
                deadline: String::new(),
            },
            &supervisor,
        ))
        .await
        .expect("return");

    stage(server.url(), folders.clone(), "after_return").await;

    // Revision 2 carries the new photo in place of the returned one, and its bytes arrived.
    let detail = get_visit(&mut review, &supervisor, &visit_id).await;
    let visit = detail.visit.as_ref().expect("visit");
    assert_eq!((visit.revision, visit.supersedes_revision), (2, 1));
    assert!(visit.observed_situation.contains("务工收入"), "{visit:?}");
    assert_eq!(visit.photo_ids.len(), 1);
    assert!(
        !first_photo_ids.contains(&visit.photo_ids[0]),
        "the photo was replaced"
    );
    let replacement = std::fs::read(test_photo("Canon_40D.jpg")).expect("photo");
    let replacement_sha256 = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&replacement))
    };
    // (The detail lists every photo record of the visit; the revision names the new one.)
    let current = detail
        .photos
        .iter()
        .find(|photo| photo.photo_id == visit.photo_ids[0])
        .expect("the photo record of revision 2");
    assert_eq!(current.sha256, replacement_sha256);
    assert!(
        detail.photo_ids_received.contains(&visit.photo_ids[0]),
        "the new photo's bytes arrived"
    );
    review
        .decide(authorized(
            v1::DecideRequest {
                visit_id: visit_id.clone(),
                revision: 2,
                content_hash: detail.content_hash,
                decision: v1::Decision::Approve as i32,
                ..Default::default()
            },
            &supervisor,
        ))
        .await
        .expect("approve");

    stage(server.url(), folders.clone(), "after_approval").await;

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
