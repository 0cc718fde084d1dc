//! The audit log (审计日志) as an attacker with the SQLite file would meet it (issue #10
//! item 7): they drop the append-only triggers through a raw connection to the real file and
//! edit, delete, reorder or re-sign records. Every case is caught by the store-level
//! verification and by the real `fieldsync-server audit verify` binary, which names the
//! first bad record; a break found at start-up puts a red banner on every console page for
//! county staff, and only for them.

use std::path::{Path, PathBuf};

use fieldsync_model::access::{
    AuditContent, ChainBroken, GENESIS_HASH, chain_hash, keyed_chain_hash,
};
use fieldsync_model::codes::Role;
use fieldsync_server::audit::{self, ChainBreak, VerifyScope};
use fieldsync_server::demo::DEMO_COUNTY_ID;
use fieldsync_server::store::{SeedData, SqliteStore, UserRecord};
use fieldsync_tests::{
    DEMO_PASSWORD, TestServer, command_without_fieldsync_environment, console_login, server_binary,
};

/// Records the tests write before tampering.
const RECORDS: usize = 6;

fn content(index: usize) -> AuditContent {
    AuditContent {
        recorded_at_ms: 1_770_000_000_000 + index as i64,
        actor_user_id: "u-county".into(),
        actor_role: "county".into(),
        area_id: DEMO_COUNTY_ID.into(),
        action: "export_full".into(),
        subject: format!("visits-{index}.xlsx"),
        filter: "month=2026-03".into(),
        row_count: index as u64,
        file_sha256: "ab".repeat(32),
        detail: "导出完整身份证号和电话".into(),
    }
}

async fn server_with_records() -> TestServer {
    let server = TestServer::start().await;
    for index in 0..RECORDS {
        server
            .state
            .store
            .append_audit(content(index))
            .await
            .expect("append");
    }
    server
}

/// What the attacker does to the file, after dropping the triggers.
#[derive(Debug, Clone, Copy)]
enum Tamper {
    Nothing,
    EditRow,
    DeleteRow,
    ReorderRows,
    /// Edit a row and re-sign every record with a key of the attacker's own.
    RecomputeWithOtherKey,
    /// Edit a row and rewrite the whole chain as legacy plain SHA-256 records.
    RecomputeAsPlainSha256,
}

fn database(folder: &Path) -> PathBuf {
    folder.join("fieldsync.sqlite3")
}

/// A consistent copy of the live database in a folder of its own.
fn copy_database(server: &TestServer) -> tempfile::TempDir {
    let copy = tempfile::tempdir().expect("temp dir");
    let live = rusqlite::Connection::open(database(&server.data_path())).expect("open live");
    live.execute(
        "VACUUM INTO ?1",
        [database(copy.path()).to_str().expect("utf-8 path")],
    )
    .expect("vacuum into copy");
    copy
}

/// Drop the append-only triggers and apply `tamper`, as someone holding the file would.
fn tamper_with(path: &Path, tamper: Tamper) {
    let connection = rusqlite::Connection::open(path).expect("open raw");
    connection
        .execute_batch(
            "DROP TRIGGER IF EXISTS audit_log_no_update;
             DROP TRIGGER IF EXISTS audit_log_no_delete;",
        )
        .expect("drop triggers");
    match tamper {
        Tamper::Nothing => {}
        Tamper::EditRow => {
            connection
                .execute(
                    "UPDATE audit_log SET row_count = 9999 WHERE audit_id = 3",
                    [],
                )
                .expect("edit");
        }
        Tamper::DeleteRow => {
            connection
                .execute("DELETE FROM audit_log WHERE audit_id = 3", [])
                .expect("delete");
        }
        Tamper::ReorderRows => {
            // Swap rows 2 and 3 with their hashes, keeping the ids in place.
            connection
                .execute_batch(
                    "UPDATE audit_log SET audit_id = 1000 WHERE audit_id = 2;
                     UPDATE audit_log SET audit_id = 2 WHERE audit_id = 3;
                     UPDATE audit_log SET audit_id = 3 WHERE audit_id = 1000;",
                )
                .expect("reorder");
        }
        Tamper::RecomputeWithOtherKey | Tamper::RecomputeAsPlainSha256 => {
            connection
                .execute(
                    "UPDATE audit_log SET row_count = 9999 WHERE audit_id = 3",
                    [],
                )
                .expect("edit");
            let rows: Vec<(i64, AuditContent, String)> = {
                let mut statement = connection
                    .prepare(
                        "SELECT audit_id, recorded_at, actor_user_id, actor_role, area_id,
                                action, subject, filter, row_count, file_sha256, detail, key_id
                         FROM audit_log ORDER BY audit_id",
                    )
                    .expect("prepare");
                statement
                    .query_map([], |row| {
                        Ok((
                            row.get(0)?,
                            AuditContent {
                                recorded_at_ms: row.get(1)?,
                                actor_user_id: row.get(2)?,
                                actor_role: row.get(3)?,
                                area_id: row.get(4)?,
                                action: row.get(5)?,
                                subject: row.get(6)?,
                                filter: row.get(7)?,
                                row_count: row.get::<_, i64>(8)? as u64,
                                file_sha256: row.get(9)?,
                                detail: row.get(10)?,
                            },
                            row.get(11)?,
                        ))
                    })
                    .expect("query")
                    .collect::<Result<_, _>>()
                    .expect("rows")
            };
            let guessed_key = [0x42u8; 32];
            let mut previous = GENESIS_HASH.to_owned();
            for (audit_id, content, key_id) in rows {
                let (key_id, hash) = match tamper {
                    Tamper::RecomputeWithOtherKey => {
                        (key_id, keyed_chain_hash(&guessed_key, &previous, &content))
                    }
                    _ => (String::new(), chain_hash(&previous, &content)),
                };
                connection
                    .execute(
                        "UPDATE audit_log SET previous_hash = ?1, record_hash = ?2, key_id = ?3
                         WHERE audit_id = ?4",
                        rusqlite::params![previous, hash, key_id, audit_id],
                    )
                    .expect("re-sign");
                previous = hash;
            }
        }
    }
}

/// Verify the chain in `folder` through the store, with the server's key and legacy note.
async fn store_verify(folder: &Path, key_dir: &Path) -> Result<u64, ChainBreak> {
    let key = fieldsync_server::keys::load(key_dir, audit::AUDIT_KEY_NAME).expect("key");
    let legacy_records = audit::read_legacy_note(key_dir)
        .expect("note readable")
        .expect("the server wrote the legacy note at start-up");
    let store = SqliteStore::open(
        &database(folder),
        fieldsync_server::store::sealed::PiiCipher::load_or_create(key_dir).expect("pii keys"),
    )
    .expect("open copy");
    audit::verify_chain(&store, &[key], legacy_records, VerifyScope::Full)
        .await
        .expect("readable")
}

/// Run `fieldsync-server audit verify` on `folder`: exit code, stdout, stderr.
fn command_verify(folder: &Path, key_dir: &Path) -> (i32, String, String) {
    let output = command_without_fieldsync_environment(&server_binary())
        .args(["audit", "verify", "--data-dir"])
        .arg(folder)
        .arg("--key-dir")
        .arg(key_dir)
        .output()
        .expect("run fieldsync-server audit verify");
    (
        output.status.code().expect("exit code"),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn every_tampering_is_detected_by_the_store_and_by_the_audit_verify_command() {
    let server = server_with_records().await;
    let key_dir = server.key_path();
    let total = server.state.store.audit_last_id().await.expect("last id");
    assert!(total >= RECORDS as i64);

    // (tampering, expected first break)
    let cases: &[(Tamper, Option<ChainBroken>)] = &[
        (Tamper::Nothing, None),
        (
            Tamper::EditRow,
            Some(ChainBroken::HashMismatch { position: 3 }),
        ),
        (
            Tamper::DeleteRow,
            Some(ChainBroken::PreviousMismatch { position: 4 }),
        ),
        (
            Tamper::ReorderRows,
            Some(ChainBroken::PreviousMismatch { position: 2 }),
        ),
        (
            Tamper::RecomputeWithOtherKey,
            Some(ChainBroken::HashMismatch { position: 1 }),
        ),
        (
            Tamper::RecomputeAsPlainSha256,
            Some(ChainBroken::Unkeyed { position: 1 }),
        ),
    ];
    for (tamper, expected) in cases {
        let copy = copy_database(&server);
        tamper_with(&database(copy.path()), *tamper);

        let verified = store_verify(copy.path(), &key_dir).await;
        match expected {
            None => assert_eq!(verified, Ok(total as u64), "{tamper:?}"),
            Some(problem) => assert_eq!(
                verified.map_err(|chain_break| chain_break.problem),
                Err(problem.clone()),
                "{tamper:?}"
            ),
        }

        let (code, stdout, stderr) = command_verify(copy.path(), &key_dir);
        match expected {
            None => {
                assert_eq!(code, 0, "{tamper:?}: {stdout}{stderr}");
                assert!(
                    stdout.contains(&format!("{total} records verified")),
                    "{stdout}"
                );
            }
            Some(problem) => {
                assert_ne!(code, 0, "{tamper:?} must fail: {stdout}{stderr}");
                let position = match problem {
                    ChainBroken::PreviousMismatch { position }
                    | ChainBroken::HashMismatch { position }
                    | ChainBroken::UnknownKey { position, .. }
                    | ChainBroken::Unkeyed { position } => *position,
                };
                assert!(
                    stderr.contains(&format!("at record {position}:"))
                        && stderr.contains(&problem.to_string()),
                    "{tamper:?}: {stderr}"
                );
            }
        }
    }
}

#[tokio::test]
async fn the_command_without_the_key_cannot_pass_a_keyed_chain() {
    let server = server_with_records().await;
    let copy = copy_database(&server);
    // Another key folder holding a different key (and the same legacy note): every keyed
    // record names a key the verifier does not hold.
    let other_keys = tempfile::tempdir().expect("temp dir");
    fieldsync_server::keys::load_or_create(other_keys.path(), audit::AUDIT_KEY_NAME)
        .expect("other key");
    std::fs::copy(
        audit::legacy_note_path(&server.key_path()),
        audit::legacy_note_path(other_keys.path()),
    )
    .expect("copy note");
    // The personal-data keys are the server's own: only the audit key differs.
    for name in ["pii", "pii-index"] {
        std::fs::copy(
            fieldsync_server::keys::key_path(&server.key_path(), name),
            fieldsync_server::keys::key_path(other_keys.path(), name),
        )
        .expect("copy personal-data key");
    }
    let (code, _, stderr) = command_verify(copy.path(), other_keys.path());
    assert_ne!(code, 0);
    assert!(stderr.contains("at record 1:"), "{stderr}");
    assert!(stderr.contains("未知密钥"), "{stderr}");
}

async fn add_auditor(server: &TestServer) {
    server
        .state
        .store
        .load_seed(SeedData {
            users: vec![UserRecord {
                user_id: uuid::Uuid::now_v7().to_string(),
                username: "auditor".into(),
                display_name: "审计员".into(),
                password_hash: fieldsync_server::auth::hash_password(DEMO_PASSWORD).expect("hash"),
                role: Role::Auditor,
                area_id: DEMO_COUNTY_ID.into(),
                phone: String::new(),
                rank: None,
            }],
            ..SeedData::default()
        })
        .await
        .expect("add auditor");
}

async fn dashboard(server: &TestServer, username: &str) -> String {
    let browser = console_login(server, username).await;
    let response = browser
        .get(format!("{}/console/dashboard", server.url()))
        .send()
        .await
        .expect("dashboard");
    assert_eq!(response.status(), reqwest::StatusCode::OK, "{username}");
    response.text().await.expect("body")
}

const BANNER: &str = "审计日志校验失败";

#[tokio::test]
async fn a_chain_damaged_while_stopped_shows_county_staff_a_banner_after_start_up() {
    let server = server_with_records().await;
    add_auditor(&server).await;
    for username in ["county", "auditor", "township1"] {
        assert!(
            !dashboard(&server, username).await.contains(BANNER),
            "{username}: no banner on an intact chain"
        );
    }
    assert_eq!(server.state.audit_health.broken(), None);

    // Damage the live file, then restart: the start-up tail check finds it.
    tamper_with(&database(&server.data_path()), Tamper::EditRow);
    let server = server.restart().await;
    // The check runs before the server accepts connections, so once a page is answered the
    // start-up result is in place (no waiting needed).
    for username in ["county", "auditor"] {
        let page = dashboard(&server, username).await;
        assert!(page.contains(BANNER), "{username} sees the banner");
        assert!(
            page.contains("审计记录 3 "),
            "{username}: the banner names the record"
        );
    }
    let latest = server.state.audit_health.latest();
    assert_eq!(
        latest.scope,
        Some(VerifyScope::Tail(audit::STARTUP_TAIL_RECORDS))
    );
    let problem = latest.broken.expect("the start-up check saw the break");
    assert!(problem.contains("审计记录 3 "), "{problem}");
    assert!(
        !dashboard(&server, "township1").await.contains(BANNER),
        "township staff do not answer for the audit log"
    );
}

#[tokio::test]
async fn a_threshold_change_is_audited_and_the_chain_stays_verifiable() {
    let server = TestServer::start().await;
    let admin = console_login(&server, "county").await;
    let response = admin
        .post(format!("{}/console/thresholds", server.url()))
        .form(&[
            ("year", "2026"),
            ("region", "national"),
            ("poverty_line_yuan", "4800"),
            ("monitoring_line_yuan", "7000"),
            ("source_note", "测试文件"),
        ])
        .send()
        .await
        .expect("save threshold");
    assert_eq!(
        response.status(),
        reqwest::StatusCode::SEE_OTHER,
        "{:?}",
        response.text().await
    );
    let records = server
        .state
        .store
        .audit_records(0, 100)
        .await
        .expect("audit");
    let change = records
        .iter()
        .find(|record| record.content.action == "settings_change")
        .expect("a settings_change record");
    assert_eq!(change.content.subject, "income_thresholds");
    assert_eq!(change.content.filter, "year=2026 region=national");
    assert!(change.content.detail.contains("4800"), "{change:?}");
    assert_eq!(change.content.actor_role, "county");
    assert!(!change.key_id.is_empty(), "signed with the server key");
    let check = audit::check_and_record(&server.state, VerifyScope::Full).await;
    assert_eq!(check.broken, None);
    assert_eq!(check.verified, records.len() as u64);
}
