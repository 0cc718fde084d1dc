//! Client-level tests on real SQLite files in temporary directories. None needs a server:
//! "offline" is a URL pointing at a port nobody listens on.

use std::path::PathBuf;
use std::sync::Arc;

use fieldsync_model::codes::{Crs, LocationProvider, ReviewState, VisitMode};
use fieldsync_model::review::{ReturnReason, VisitStatus};
use fieldsync_model::visit::GpsFix;
use time::macros::datetime;

use super::*;
use crate::records::{MutationKind, PulledPage};

#[derive(Debug)]
struct FixedClock(OffsetDateTime);

impl Clock for FixedClock {
    fn now(&self) -> OffsetDateTime {
        self.0
    }
}

const NOW: OffsetDateTime = datetime!(2026-03-05 10:00 UTC);

/// A URL on a port that was just free, so connecting is refused at once.
fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

/// A phone that has never synced: no households yet.
fn open_unsynced_client(dir: &tempfile::TempDir) -> Client {
    Client::open_with_clock(
        &dir.path().join("phone"),
        &closed_port_url(),
        Arc::new(FixedClock(NOW)),
    )
    .unwrap()
}

/// A phone whose first pull brought households `hh-1` and `hh-2`.
fn open_client(dir: &tempfile::TempDir) -> Client {
    let client = open_unsynced_client(dir);
    if client.households().unwrap().is_empty() {
        let page = PulledPage {
            households: vec![household("hh-1", "张三"), household("hh-2", "李四")],
            ..PulledPage::default()
        };
        client
            .store
            .apply_pull(&[page], "c0", None, 0, NOW)
            .unwrap();
    }
    client
}

fn household(id: &str, head: &str) -> Household {
    Household {
        household_id: id.into(),
        national_household_number: String::new(),
        head_name: head.into(),
        township_id: "t1".into(),
        village_id: "v1".into(),
        village_name: "石板村".into(),
        address: String::new(),
        phone: String::new(),
        attribute: fieldsync_model::codes::HouseholdAttribute::General,
        main_cause: fieldsync_model::codes::PovertyCause::Illness,
        secondary_causes: vec![],
        housing_danger_level: None,
        location: None,
        members: vec![],
        measures: vec![],
        server_seq: 1,
        field_seqs: Default::default(),
    }
}

fn write_photo(dir: &tempfile::TempDir, name: &str, body: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE0];
    bytes.extend_from_slice(body);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn in_person_visit(household_id: &str, photos: Vec<PathBuf>) -> NewVisit {
    NewVisit {
        observed_situation: "户主在家, 玉米已收, 家中两头猪长势良好".into(),
        gps: Some(GpsFix {
            lat: 26.58,
            lon: 106.71,
            crs: Crs::Wgs84,
            accuracy_m: 8.0,
            provider: Some(LocationProvider::Gps),
            is_mock: false,
            fix_time: Some(NOW),
        }),
        photo_paths: photos,
        ..NewVisit::new(
            household_id,
            VisitMode::InPerson,
            datetime!(2026-03-05 09:30 UTC),
            NOW,
        )
    }
}

fn seqs(client: &Client) -> Vec<u64> {
    client
        .outbox()
        .unwrap()
        .iter()
        .map(|entry| entry.seq)
        .collect()
}

#[tokio::test]
async fn recording_works_offline_and_sync_reports_unavailable_with_the_outbox_intact() {
    let dir = tempfile::TempDir::new().unwrap();
    let client = open_client(&dir);
    // A stored token lets sync get as far as the network.
    client.store.meta_set(meta_key::TOKEN, "token-1").unwrap();
    let photo = write_photo(&dir, "a.jpg", b"first photo");
    let visit_id = client
        .record_visit(in_person_visit("hh-1", vec![photo.clone()]))
        .unwrap();

    let error = client.sync().await.unwrap_err();
    assert!(error.is_unavailable(), "{error:?}");
    assert_eq!(seqs(&client), vec![1, 2]);
    let status = client.status().unwrap();
    assert_eq!(status.unsent_mutations, 2);
    assert_eq!(status.pending_uploads, 1);
    assert!(status.last_error.is_some());
    // The failed sync is not a sync: the time stays that of the households' pull.
    assert_eq!(status.last_sync_at, Some(NOW));

    let visit = client.visit(&visit_id).unwrap().unwrap();
    assert_eq!(visit.state, VisitState::Unsent);
    assert_eq!(visit.pending_mutations, 2);
    // The photo is kept byte-exact under its SHA-256.
    let body = visit.visit.unwrap();
    assert_eq!(body.photo_ids.len(), 1);
    let kept = client.data_dir().join(PHOTOS_DIR);
    assert_eq!(std::fs::read_dir(kept).unwrap().count(), 1);
}

#[tokio::test]
async fn sync_without_a_login_says_not_logged_in() {
    let dir = tempfile::TempDir::new().unwrap();
    let client = open_client(&dir);
    assert!(matches!(
        client.sync().await,
        Err(ClientError::NotLoggedIn(_))
    ));
}

#[test]
fn a_missing_photo_leaves_no_visit_and_no_outbox_entry_and_seqs_stay_gap_free() {
    let dir = tempfile::TempDir::new().unwrap();
    let client = open_client(&dir);
    let good = write_photo(&dir, "good.jpg", b"good");
    let missing = dir.path().join("does-not-exist.jpg");

    let error = client
        .record_visit(in_person_visit("hh-1", vec![good.clone(), missing]))
        .unwrap_err();
    assert!(matches!(error, ClientError::Io { .. }), "{error:?}");
    assert!(client.visits().unwrap().is_empty());
    assert!(client.outbox().unwrap().is_empty());

    client
        .record_visit(in_person_visit("hh-1", vec![good.clone()]))
        .unwrap();
    let second = write_photo(&dir, "second.jpg", b"second");
    client
        .record_visit(in_person_visit("hh-2", vec![good, second]))
        .unwrap();
    assert_eq!(seqs(&client), vec![1, 2, 3, 4, 5]);
    let kinds: Vec<MutationKind> = client
        .outbox()
        .unwrap()
        .iter()
        .map(|entry| entry.kind)
        .collect();
    assert_eq!(
        kinds,
        vec![
            MutationKind::SubmitVisit,
            MutationKind::AddPhoto,
            MutationKind::SubmitVisit,
            MutationKind::AddPhoto,
            MutationKind::AddPhoto,
        ]
    );
    // The same picture attached to two visits is uploaded once.
    assert_eq!(client.status().unwrap().pending_uploads, 2);
}

#[test]
fn an_invalid_form_stores_nothing() {
    let dir = tempfile::TempDir::new().unwrap();
    let client = open_client(&dir);
    let phone_call_without_reason = NewVisit {
        mode: VisitMode::Phone,
        ..in_person_visit("hh-1", vec![])
    };
    let error = client.record_visit(phone_call_without_reason).unwrap_err();
    assert!(
        matches!(&error, ClientError::Invalid { field, .. } if field == "exception_reason"),
        "{error:?}"
    );
    assert!(client.outbox().unwrap().is_empty());
}

#[test]
fn the_device_id_and_the_outbox_survive_reopening() {
    let dir = tempfile::TempDir::new().unwrap();
    let (device_id, visit_id) = {
        let client = open_client(&dir);
        let visit_id = client
            .record_visit(in_person_visit("hh-1", vec![]))
            .unwrap();
        (client.device_id().to_owned(), visit_id)
    };
    let reopened = open_client(&dir);
    assert_eq!(reopened.device_id(), device_id);
    assert!(uuid::Uuid::parse_str(&device_id).is_ok());
    assert_eq!(seqs(&reopened), vec![1]);
    assert_eq!(
        reopened.resolve_visit_id(&visit_id[..13]).unwrap(),
        visit_id
    );
    reopened
        .record_visit(in_person_visit("hh-1", vec![]))
        .unwrap();
    assert_eq!(seqs(&reopened), vec![1, 2]);
}

fn returned_status(visit_id: &str, revision: u32) -> VisitStatus {
    VisitStatus {
        visit_id: visit_id.to_owned(),
        revision,
        household_id: "hh-1".into(),
        state: ReviewState::Returned,
        reasons: vec![ReturnReason {
            code: "gps_far".into(),
            field: "gps".into(),
        }],
        note: "请补充户主合影".into(),
        deadline: "2026-03-10".into(),
        reviewer_name: "王审核".into(),
        decided_at: Some(NOW),
    }
}

fn pull_statuses(client: &Client, statuses: Vec<VisitStatus>, cursor: &str) {
    let page = PulledPage {
        visit_statuses: statuses,
        ..PulledPage::default()
    };
    client
        .store
        .apply_pull(&[page], cursor, None, 0, NOW)
        .unwrap();
}

#[test]
fn a_returned_visit_becomes_a_task_and_its_correction_supersedes_the_returned_revision() {
    let dir = tempfile::TempDir::new().unwrap();
    let client = open_client(&dir);
    let visit_id = client
        .record_visit(in_person_visit("hh-1", vec![]))
        .unwrap();

    // Pretend the push went through and the supervisor returned revision 1.
    let entries = client.outbox().unwrap();
    let ack = records::PushAck {
        results: entries
            .iter()
            .map(|entry| (entry.seq, records::PushOutcome::Applied))
            .collect(),
        last_processed_seq: entries.last().unwrap().seq,
        server_time: None,
        receipt: "r1".into(),
        server_hlc: 0,
    };
    client.store.open_batch("b1", 1, 1, NOW).unwrap();
    client.store.apply_push_ack("b1", &ack, NOW).unwrap();
    assert_eq!(
        client.visit(&visit_id).unwrap().unwrap().state,
        VisitState::Submitted
    );
    pull_statuses(&client, vec![returned_status(&visit_id, 1)], "c1");

    let tasks = client.tasks().unwrap();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].visit_id, visit_id);
    assert_eq!(tasks[0].reasons[0].label_zh, "定位距农户过远");
    assert_eq!(tasks[0].deadline, "2026-03-10");

    let photo = write_photo(&dir, "with-head.jpg", b"with head");
    let revision = client
        .resubmit_visit_with_photos(&visit_id, &[photo], |visit| {
            visit.observed_situation = "补充: 与户主合影, 重新定位".into();
        })
        .unwrap();
    assert_eq!(revision, 2);
    let summary = client.visit(&visit_id).unwrap().unwrap();
    let body = summary.visit.unwrap();
    assert_eq!((body.revision, body.supersedes_revision), (2, 1));
    assert_eq!(body.photo_ids.len(), 1);
    assert_eq!(summary.state, VisitState::Unsent);
    assert!(client.tasks().unwrap().is_empty());
    assert_eq!(seqs(&client), vec![2, 3]);

    // A late status about revision 1 must not overwrite the pending correction.
    pull_statuses(&client, vec![returned_status(&visit_id, 1)], "c2");
    let summary = client.visit(&visit_id).unwrap().unwrap();
    assert_eq!((summary.revision, summary.state), (2, VisitState::Unsent));
}

#[test]
fn a_reset_drops_the_replica_but_keeps_the_outbox_and_own_visits() {
    let dir = tempfile::TempDir::new().unwrap();
    let client = open_client(&dir);
    let visit_id = client
        .record_visit(in_person_visit("hh-1", vec![]))
        .unwrap();
    pull_statuses(
        &client,
        vec![VisitStatus {
            visit_id: "0190d7a8-0000-7000-8000-00000000beef".into(),
            state: ReviewState::Approved,
            ..returned_status("x", 1)
        }],
        "c1",
    );
    assert_eq!(client.visits().unwrap().len(), 2);

    client.store.reset_replica().unwrap();
    let visits = client.visits().unwrap();
    assert_eq!(visits.len(), 1);
    assert_eq!(visits[0].visit_id, visit_id);
    assert_eq!(seqs(&client), vec![1]);
    assert_eq!(client.store.meta_get(meta_key::CURSOR).unwrap(), None);
}

#[test]
fn households_resolve_by_unique_prefix_and_show_this_months_in_person_visits() {
    let dir = tempfile::TempDir::new().unwrap();
    let client = open_unsynced_client(&dir);
    let page = PulledPage {
        households: vec![household("hh-100", "张三"), household("hh-200", "李四")],
        ..PulledPage::default()
    };
    client
        .store
        .apply_pull(&[page], "c1", None, 0, NOW)
        .unwrap();
    assert_eq!(client.resolve_household_id("hh-1").unwrap(), "hh-100");
    assert!(matches!(
        client.resolve_household_id("hh-"),
        Err(ClientError::Invalid { .. })
    ));
    assert!(matches!(
        client.resolve_household_id("zz"),
        Err(ClientError::UnknownHousehold { household }) if household == "zz"
    ));

    client
        .record_visit(in_person_visit("hh-100", vec![]))
        .unwrap();
    let summaries = client.households().unwrap();
    let visited: Vec<(&str, bool)> = summaries
        .iter()
        .map(|summary| {
            (
                summary.household_id.as_str(),
                summary.visited_in_person_this_month,
            )
        })
        .collect();
    assert_eq!(visited, vec![("hh-100", true), ("hh-200", false)]);
    assert!(client.status().unwrap().last_sync_at.is_some());
}

#[test]
fn the_client_and_its_sync_future_can_move_between_threads() {
    fn assert_send_sync<T: Send + Sync>(_: &T) {}
    fn assert_send<T: Send>(_: &T) {}
    let dir = tempfile::TempDir::new().unwrap();
    let client = open_client(&dir);
    assert_send_sync(&client);
    let sync = client.sync();
    assert_send(&sync);
    let login = client.login("cadre01", "demo123");
    assert_send(&login);
}

#[test]
fn an_unknown_household_is_refused_and_before_the_first_sync_the_refusal_says_why() {
    let dir = tempfile::TempDir::new().unwrap();
    let client = open_unsynced_client(&dir);
    let error = client
        .record_visit(in_person_visit("hh-1", vec![]))
        .unwrap_err();
    assert!(
        matches!(&error, ClientError::HouseholdsNotSynced { household } if household == "hh-1"),
        "{error:?}"
    );
    assert!(error.to_string().contains("尚未下载帮扶对象"), "{error}");
    assert!(error.to_string().contains("sync once"), "{error}");
    let client = open_client(&dir);
    let error = client
        .record_visit(in_person_visit("zzzz", vec![]))
        .unwrap_err();
    assert!(
        matches!(&error, ClientError::UnknownHousehold { household } if household == "zzzz"),
        "{error:?}"
    );
    assert!(error.to_string().contains("未找到帮扶户"), "{error}");
    // A unique prefix is the household; the visit is stored under the full id.
    let visit_id = client
        .record_visit(in_person_visit(" hh-2", vec![]))
        .unwrap();
    let stored = client.visit(&visit_id).unwrap().unwrap();
    assert_eq!(stored.household_id, "hh-2");
    assert_eq!(seqs(&client), vec![1], "only the good visit was queued");
}

#[test]
fn impossible_locations_negative_accuracy_and_overlong_visits_are_refused_in_both_languages() {
    let dir = tempfile::TempDir::new().unwrap();
    let client = open_client(&dir);
    let with_fix = |lat: f64, lon: f64, accuracy_m: f64| {
        let mut visit = in_person_visit("hh-1", vec![]);
        if let Some(fix) = visit.gps.as_mut() {
            fix.lat = lat;
            fix.lon = lon;
            fix.accuracy_m = accuracy_m;
        }
        visit
    };
    for (lat, lon) in [(91.0, 106.7), (26.5, -180.5), (f64::NAN, 106.7)] {
        let error = client.record_visit(with_fix(lat, lon, 8.0)).unwrap_err();
        assert!(
            matches!(error, ClientError::ImpossibleLocation { .. }),
            "{lat}, {lon}: {error:?}"
        );
        let text = error.to_string();
        assert!(text.contains("定位坐标无效") && text.contains("impossible location"));
    }
    for accuracy_m in [-1.0, f64::NAN] {
        let error = client
            .record_visit(with_fix(26.58, 106.71, accuracy_m))
            .unwrap_err();
        assert!(
            matches!(error, ClientError::InvalidAccuracy { .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("定位精度无效"));
    }
    let too_long = NewVisit {
        checkin_at: NOW - time::Duration::minutes(fieldsync_model::visit::MAX_VISIT_MINUTES + 1),
        ..in_person_visit("hh-1", vec![])
    };
    let error = client.record_visit(too_long).unwrap_err();
    assert!(
        matches!(
            error,
            ClientError::VisitTooLong { minutes, max_minutes }
                if minutes == max_minutes + 1
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("走访时长") && error.to_string().contains("limit"));
    let a_full_day = NewVisit {
        checkin_at: NOW - time::Duration::minutes(fieldsync_model::visit::MAX_VISIT_MINUTES),
        ..in_person_visit("hh-1", vec![])
    };
    client.record_visit(a_full_day).unwrap();
    assert_eq!(seqs(&client), vec![1], "nothing refused was stored");
}

#[test]
fn a_photo_that_is_not_an_image_stores_nothing() {
    let dir = tempfile::TempDir::new().unwrap();
    let client = open_client(&dir);
    let text = dir.path().join("notes.jpg");
    std::fs::write(&text, "不是照片").unwrap();
    let good = write_photo(&dir, "good.jpg", b"good");
    let error = client
        .record_visit(in_person_visit("hh-1", vec![good, text]))
        .unwrap_err();
    assert!(
        matches!(error, ClientError::PhotoNotAnImage { .. }),
        "{error:?}"
    );
    assert!(client.visits().unwrap().is_empty());
    assert!(client.outbox().unwrap().is_empty());
    assert_eq!(client.status().unwrap().pending_uploads, 0);
}

#[test]
fn a_draft_can_drop_or_replace_a_photo_in_a_new_revision_but_not_invent_one() {
    let dir = tempfile::TempDir::new().unwrap();
    let client = open_client(&dir);
    let first = write_photo(&dir, "first.jpg", b"first");
    let second = write_photo(&dir, "second.jpg", b"second");
    let visit_id = client
        .record_visit(in_person_visit("hh-1", vec![first, second]))
        .unwrap();
    let photo_ids = client
        .visit(&visit_id)
        .unwrap()
        .unwrap()
        .visit
        .unwrap()
        .photo_ids;

    let replacement = write_photo(&dir, "replacement.jpg", b"replacement");
    assert_eq!(
        client
            .replace_visit_photo(&visit_id, &photo_ids[0], &replacement)
            .unwrap(),
        2
    );
    let body = client.visit(&visit_id).unwrap().unwrap().visit.unwrap();
    assert_eq!(body.photo_ids.len(), 2);
    assert_ne!(
        body.photo_ids[0], photo_ids[0],
        "the new photo takes its place"
    );
    assert_eq!(body.photo_ids[1], photo_ids[1]);
    assert_eq!((body.revision, body.supersedes_revision), (2, 1));

    assert_eq!(
        client.remove_visit_photo(&visit_id, &photo_ids[1]).unwrap(),
        3
    );
    let body = client.visit(&visit_id).unwrap().unwrap().visit.unwrap();
    assert_eq!(body.photo_ids.len(), 1);
    assert!(matches!(
        client.remove_visit_photo(&visit_id, &photo_ids[1]),
        Err(ClientError::NotFound(_))
    ));
    let invented = client
        .resubmit_visit(&visit_id, |visit| {
            visit
                .photo_ids
                .push("0190d7a8-0000-7000-8000-00000000beef".into())
        })
        .unwrap_err();
    assert!(
        matches!(&invented, ClientError::Invalid { field, .. } if field == "photo_ids"),
        "{invented:?}"
    );
    // Revision 1 with both photos, the replacement's revision, the removal's revision.
    let kinds: Vec<MutationKind> = client.outbox().unwrap().iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![
            MutationKind::SubmitVisit,
            MutationKind::AddPhoto,
            MutationKind::AddPhoto,
            MutationKind::SubmitVisit,
            MutationKind::AddPhoto,
            MutationKind::SubmitVisit,
        ]
    );
}
