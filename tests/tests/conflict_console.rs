//! Concurrent edits over real gRPC reach the supervisor as a conflict record; the supervisor
//! resolves it in the console and every phone converges on the choice at its next pull.
//! The phones are told which of their edits wait for the supervisor, and the console names
//! each side's phone by model and the last four characters of its id.
//! Also: the heartbeat riding on a push shows up on the console's "unsent data" page.

use fieldsync_client::Client;
use fieldsync_model::hlc::{Hlc, unix_millis};
use fieldsync_model::register::FieldTarget;
use fieldsync_proto::convert::instant_to_wire;
use fieldsync_proto::v1;
use fieldsync_tests::{
    DEMO_PASSWORD, TestServer, authorized, client_info, console_login, pull_all,
};

fn phone_edit(
    device_id: &str,
    household_id: &str,
    phone: &str,
    hlc: Hlc,
    heartbeat: Option<v1::DeviceHeartbeat>,
) -> v1::PushRequest {
    v1::PushRequest {
        device_id: device_id.into(),
        batch_id: uuid::Uuid::now_v7().to_string(),
        first_seq: 1,
        mutations: vec![v1::Mutation {
            seq: 1,
            mutation_id: uuid::Uuid::now_v7().to_string(),
            hlc: hlc.as_u64(),
            payload: Some(v1::mutation::Payload::EditField(v1::FieldEdit {
                household_id: household_id.into(),
                member_id: String::new(),
                field: "phone".into(),
                value_json: format!("\"{phone}\""),
                // Neither phone has seen the other's edit.
                base_seq: 0,
            })),
        }],
        client: Some(client_info()),
        heartbeat,
    }
}

async fn household_phone(server: &TestServer, token: &str, household_id: &str) -> String {
    let (households, _, _) = pull_all(server.channel().await, token).await;
    households
        .into_iter()
        .find(|household| household.household_id == household_id)
        .expect("household still in scope")
        .phone
}

#[tokio::test]
async fn a_conflict_is_resolved_in_the_console_and_both_phones_converge() {
    let server = TestServer::start().await;
    let (device_a, device_b) = (
        uuid::Uuid::now_v7().to_string(),
        uuid::Uuid::now_v7().to_string(),
    );
    let token_a = server.login("cadre01", &device_a).await;
    let token_b = server.login("cadre01", &device_b).await;
    let (households, _, _) = pull_all(server.channel().await, &token_a).await;
    let household = households.first().expect("cadre01 has households").clone();

    let now = time::OffsetDateTime::now_utc();
    let mut sync = v1::sync_client::SyncClient::new(server.channel().await);
    let first = sync
        .push(authorized(
            phone_edit(
                &device_a,
                &household.household_id,
                "13811112222",
                Hlc::from_parts(unix_millis(now), 0),
                None,
            ),
            &token_a,
        ))
        .await
        .expect("push a")
        .into_inner();
    assert_eq!(
        first.results[0].outcome,
        v1::MutationOutcome::Applied as i32
    );
    let heartbeat = v1::DeviceHeartbeat {
        unsent_mutations: 2,
        pending_uploads: 1,
        oldest_unsent_at: Some(instant_to_wire(now - time::Duration::days(4))),
        device_time: Some(instant_to_wire(now + time::Duration::minutes(10))),
        last_error: "网络连接超时".into(),
    };
    let second = sync
        .push(authorized(
            phone_edit(
                &device_b,
                &household.household_id,
                "13933334444",
                Hlc::from_parts(unix_millis(now) + 1, 0),
                Some(heartbeat),
            ),
            &token_b,
        ))
        .await
        .expect("push b")
        .into_inner();
    assert_eq!(
        second.results[0].outcome,
        v1::MutationOutcome::ConflictRecorded as i32
    );
    assert_eq!(
        household_phone(&server, &token_a, &household.household_id).await,
        "13933334444",
        "until resolved, the later edit is shown"
    );

    let browser = console_login(&server, "township1").await;
    let page = browser
        .get(format!("{}/console/conflicts", server.url()))
        .send()
        .await
        .expect("conflicts page");
    assert!(page.status().is_success(), "{}", page.status());
    let html = page.text().await.expect("html");
    for expected in [
        "冲突记录",
        "联系电话",
        household.head_name.as_str(),
        "138****2222",
        "139****4444",
        "当前生效",
    ] {
        assert!(html.contains(expected), "the page shows {expected}");
    }
    // Phones are masked on the list, as on every console page (DESIGN §7).
    for full in ["13811112222", "13933334444"] {
        assert!(!html.contains(full), "the page shows the full phone {full}");
    }
    let conflicts: serde_json::Value = browser
        .get(format!("{}/console/api/conflicts", server.url()))
        .send()
        .await
        .expect("conflicts json")
        .json()
        .await
        .expect("json");
    let conflicts = conflicts.as_array().expect("a list");
    assert_eq!(conflicts.len(), 1);
    let key = conflicts[0]["conflict_key"]
        .as_str()
        .expect("key")
        .to_owned();
    assert_eq!(conflicts[0]["first"]["value"], "138****2222");
    assert_eq!(conflicts[0]["second"]["value"], "139****4444");
    assert_eq!(conflicts[0]["current_value"], "139****4444");
    assert_eq!(conflicts[0]["field_label"], "联系电话");
    let listed = serde_json::to_string(&conflicts).expect("json text");
    for full in ["13811112222", "13933334444"] {
        assert!(
            !listed.contains(full),
            "the JSON shows the full phone {full}"
        );
    }

    // A masked value typed back as the settled value is refused, and nothing changes.
    let masked_back = browser
        .post(format!("{}/console/conflicts/resolve", server.url()))
        .form(&[
            ("conflict_key", key.as_str()),
            ("choice", "custom"),
            ("custom_value", "138****2222"),
        ])
        .send()
        .await
        .expect("resolve with a masked value");
    assert_eq!(masked_back.status(), reqwest::StatusCode::BAD_REQUEST);
    assert!(
        masked_back.text().await.expect("html").contains("打码"),
        "the page says why"
    );
    assert_eq!(
        household_phone(&server, &token_a, &household.household_id).await,
        "13933334444",
        "the masked value was not written"
    );

    // The supervisor confirms the older value (值 A).
    let resolved = resolve_with_first_value(&browser, &server, &key).await;
    assert_eq!(resolved.status(), reqwest::StatusCode::SEE_OTHER);
    let again = browser
        .post(format!("{}/console/conflicts/resolve", server.url()))
        .form(&[("conflict_key", key.as_str()), ("choice", "second")])
        .send()
        .await
        .expect("resolve twice");
    assert_eq!(
        again.status(),
        reqwest::StatusCode::NOT_FOUND,
        "a resolved conflict cannot be resolved again"
    );

    for token in [&token_a, &token_b] {
        assert_eq!(
            household_phone(&server, token, &household.household_id).await,
            "13811112222",
            "every phone converges on the supervisor's choice"
        );
    }
    let left: serde_json::Value = browser
        .get(format!("{}/console/api/conflicts", server.url()))
        .send()
        .await
        .expect("conflicts json")
        .json()
        .await
        .expect("json");
    assert_eq!(left.as_array().map(Vec::len), Some(0));

    let devices = browser
        .get(format!("{}/console/devices", server.url()))
        .send()
        .await
        .expect("devices page")
        .text()
        .await
        .expect("html");
    assert!(devices.contains("设备未上传数据"));
    assert!(devices.contains("网络连接超时"));
    assert!(devices.contains("4 天"), "oldest unsent age in days");
    assert!(devices.contains("快 10 分"), "the phone's clock skew");
    let api: serde_json::Value = browser
        .get(format!("{}/console/api/devices", server.url()))
        .send()
        .await
        .expect("devices json")
        .json()
        .await
        .expect("json");
    let first_row = &api.as_array().expect("a list")[0];
    assert_eq!(
        first_row["device_id"],
        device_b.as_str(),
        "oldest unsent first"
    );
    assert_eq!(first_row["unsent_mutations"], 2);
}

/// The last four characters of a device id, as the console shows them.
/// The supervisor keeps the first side's value of conflict `key` (确认值 A) in the console.
async fn resolve_with_first_value(
    browser: &reqwest::Client,
    server: &TestServer,
    key: &str,
) -> reqwest::Response {
    browser
        .post(format!("{}/console/conflicts/resolve", server.url()))
        .form(&[
            ("conflict_key", key),
            ("choice", "first"),
            ("custom_value", ""),
        ])
        .send()
        .await
        .expect("resolve")
}

fn tail(device_id: &str) -> &str {
    &device_id[device_id.len() - 4..]
}

/// Issue 14 §4: one cadre edits the same household field on two phones before either has
/// seen the other's edit. The second phone's sync says its edit became a conflict; its sync
/// report and status list the edit as waiting for the supervisor (and so does the first
/// phone's after its next pull: the conflict is half its edit too); the console names both
/// phones by model and the last four of their ids; after the supervisor's choice the next
/// pull empties the lists.
#[tokio::test]
async fn a_conflicting_edit_waits_on_the_phone_and_the_console_names_both_devices() {
    let server = TestServer::start().await;
    let (folder_a, folder_b) = (
        tempfile::tempdir().expect("temp dir"),
        tempfile::tempdir().expect("temp dir"),
    );
    let phone_a = Client::open(folder_a.path(), &server.url()).expect("open a");
    let phone_b = Client::open(folder_b.path(), &server.url()).expect("open b");
    phone_a.set_device_model("Redmi Note 12").expect("model a");
    phone_b.set_device_model("HUAWEI nova 9").expect("model b");
    for phone in [&phone_a, &phone_b] {
        phone.login("cadre01", DEMO_PASSWORD).await.expect("login");
        let report = phone.sync().await.expect("first sync");
        assert!(report.pending_conflicts.is_empty());
    }
    let household_id = phone_a.households().expect("households")[0]
        .household_id
        .clone();
    phone_a
        .edit_household_field(
            &household_id,
            FieldTarget::Household,
            "phone",
            serde_json::json!("13811112222"),
        )
        .expect("edit on a");
    phone_b
        .edit_household_field(
            &household_id,
            FieldTarget::Household,
            "phone",
            serde_json::json!("13933334444"),
        )
        .expect("edit on b");

    let first = phone_a.sync().await.expect("sync a");
    assert_eq!(first.conflicts_recorded, 0);
    assert!(first.pending_conflicts.is_empty());
    let second = phone_b.sync().await.expect("sync b");
    assert_eq!(
        second.mutations_applied, 1,
        "a conflicting edit is still applied"
    );
    assert_eq!(second.conflicts_recorded, 1);
    let [pending] = second.pending_conflicts.as_slice() else {
        panic!("one pending conflict: {:?}", second.pending_conflicts);
    };
    assert_eq!(pending.household_id, household_id);
    assert_eq!(pending.target, FieldTarget::Household);
    assert_eq!(pending.field, "phone");
    assert_eq!(pending.device_id, phone_b.device_id(), "made on this phone");
    assert_eq!(
        phone_b.status().expect("status").pending_conflicts,
        second.pending_conflicts,
        "the status screen says the same until the next pull"
    );
    // The field-app CLI's status says it in words, with the household's name.
    let head_name = phone_b
        .household(&household_id)
        .expect("read")
        .expect("household on the phone")
        .head_name;
    let output =
        fieldsync_tests::command_without_fieldsync_environment(&fieldsync_tests::cli_binary())
            .arg("--data-dir")
            .arg(folder_b.path())
            .arg("--server")
            .arg(server.url())
            .arg("status")
            .output()
            .expect("run fieldsync status");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{printed}");
    assert!(
        printed.contains(&format!(
            "待审核 conflict: {head_name}户 phone: 与他人的修改冲突，等待乡镇审核员处理"
        )) && printed.contains("edited on this device"),
        "{printed}"
    );
    let again = phone_a.sync().await.expect("sync a again");
    assert_eq!(again.pending_conflicts.len(), 1, "{again:?}");
    assert_eq!(phone_a.status().expect("status").pending_conflicts.len(), 1);

    let browser = console_login(&server, "township1").await;
    let html = browser
        .get(format!("{}/console/conflicts", server.url()))
        .send()
        .await
        .expect("conflicts page")
        .text()
        .await
        .expect("html");
    let label_a = format!("Redmi Note 12（尾号 {}）", tail(phone_a.device_id()));
    let label_b = format!("HUAWEI nova 9（尾号 {}）", tail(phone_b.device_id()));
    assert!(html.contains("<th>设备</th>"), "a device column");
    for label in [&label_a, &label_b] {
        assert!(html.contains(label.as_str()), "the page names {label}");
    }
    let conflicts: serde_json::Value = browser
        .get(format!("{}/console/api/conflicts", server.url()))
        .send()
        .await
        .expect("conflicts json")
        .json()
        .await
        .expect("json");
    let conflict = &conflicts.as_array().expect("a list")[0];
    let mut labels: Vec<&str> = ["first", "second"]
        .iter()
        .filter_map(|side| conflict[side]["device_label"].as_str())
        .collect();
    labels.sort_unstable();
    let mut expected = vec![label_a.as_str(), label_b.as_str()];
    expected.sort_unstable();
    assert_eq!(labels, expected);
    assert!(
        ["first", "second"]
            .iter()
            .any(|side| conflict[side]["device_name"] == "Redmi Note 12")
    );

    // The supervisor decides; the next pull tells both phones nothing waits any more.
    let key = conflict["conflict_key"].as_str().expect("key").to_owned();
    let resolved = resolve_with_first_value(&browser, &server, &key).await;
    assert_eq!(resolved.status(), reqwest::StatusCode::SEE_OTHER);
    for phone in [&phone_a, &phone_b] {
        assert!(
            phone
                .sync()
                .await
                .expect("sync")
                .pending_conflicts
                .is_empty()
        );
        assert!(phone.status().expect("status").pending_conflicts.is_empty());
    }
}
