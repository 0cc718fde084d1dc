//! The client core over a scripted fake network (the `SyncTransport` seam): HLC stamping
//! and observing, the typed clock refusal, household card edits with rebase, purge on
//! reassignment with hand-over, the retry policy, one sync per install, and the status
//! screen's stuck items and heartbeat. No sockets, no sleeps: the clock is injected.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{FakeClock, FakeServer, Fault, household, member};
use fieldsync_client::records::MutationKind;
use fieldsync_client::{Client, ClientError, HandoverItem, NewVisit, Sleeper};
use fieldsync_model::codes::VisitMode;
use fieldsync_model::hlc::Hlc;
use fieldsync_model::register::FieldTarget;
use fieldsync_model::sync::MutationPayload;
use serde_json::json;
use time::OffsetDateTime;
use time::macros::datetime;

const NOW: OffsetDateTime = datetime!(2026-03-05 10:00 UTC);

struct Phone {
    _dir: tempfile::TempDir,
    client: Arc<Client>,
    clock: Arc<FakeClock>,
    server: Arc<FakeServer>,
}

/// A logged-in phone with hh-1 and hh-2 pulled from the fake server.
async fn phone() -> Phone {
    let server = FakeServer::new();
    server.upsert_household(household("hh-1", "张三"));
    server.upsert_household(household("hh-2", "李四"));
    let dir = tempfile::TempDir::new().unwrap();
    let clock = FakeClock::new(NOW);
    let client =
        Client::open_with_transport(&dir.path().join("phone"), server.clone(), clock.clone())
            .unwrap()
            .with_rng_seed(1);
    client.login("cadre01", "demo123").await.unwrap();
    client.sync().await.unwrap();
    assert_eq!(client.households().unwrap().len(), 2);
    Phone {
        _dir: dir,
        client: Arc::new(client),
        clock,
        server,
    }
}

fn outbox_hlcs(client: &Client) -> Vec<u64> {
    client
        .outbox()
        .unwrap()
        .iter()
        .map(|entry| entry.hlc)
        .collect()
}

fn set_phone(client: &Client, value: &str) -> u64 {
    client
        .edit_household_field("hh-1", FieldTarget::Household, "phone", json!(value))
        .unwrap()
}

#[tokio::test]
async fn every_mutation_ticks_the_stored_hlc_and_server_answers_pull_it_forward() {
    let phone = phone().await;
    set_phone(&phone.client, "13900000001");
    set_phone(&phone.client, "13900000002");
    let hlcs = outbox_hlcs(&phone.client);
    assert!(
        hlcs[0] < hlcs[1],
        "same wall time, strictly increasing: {hlcs:?}"
    );
    assert_eq!(
        Hlc::from_u64(hlcs[0]).millis(),
        NOW.unix_timestamp() as u64 * 1000
    );

    // The server's HLC is an hour ahead: after the push the phone's next stamp follows it.
    let server_ahead = Hlc::from_parts(common::SERVER_MS + 3_600_000, 9);
    phone.server.state().hlc = server_ahead;
    phone.client.sync().await.unwrap();
    set_phone(&phone.client, "13900000003");
    assert!(outbox_hlcs(&phone.client)[0] > server_ahead.as_u64());
}

#[tokio::test]
async fn a_wall_clock_jumping_back_mid_sync_never_moves_the_hlc_back_or_reorders_the_outbox() {
    let phone = phone().await;
    set_phone(&phone.client, "13900000001");
    let before = outbox_hlcs(&phone.client);
    // In the middle of the push the phone's clock jumps back a day, and the answer is lost.
    let clock = phone.clock.clone();
    phone.server.set_hook(Some(Arc::new(move |call| {
        if call == "push" {
            clock.set(NOW - time::Duration::days(1));
        }
    })));
    phone.server.fault(Fault::LoseResponse);
    assert!(phone.client.sync().await.unwrap_err().is_unavailable());
    phone.server.set_hook(None);
    set_phone(&phone.client, "13900000002");
    let after = outbox_hlcs(&phone.client);
    assert_eq!(after[0], before[0], "the unsent entry keeps its stamp");
    assert!(after[1] > after[0], "order follows seq: {after:?}");
    let seqs: Vec<u64> = phone
        .client
        .outbox()
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert!(seqs.windows(2).all(|pair| pair[0] < pair[1]));
    // The retry re-sends the same batch, then the new entry; the server ends in seq order.
    phone.client.sync().await.unwrap();
    let state = phone.server.state();
    let applied: Vec<u64> = state.applied.iter().map(|m| m.seq).collect();
    assert_eq!(applied, vec![1, 2]);
    assert!(state.violations.is_empty(), "{:?}", state.violations);
    assert_eq!(state.households["hh-1"].phone, "13900000002");
}

#[tokio::test]
async fn a_phone_set_to_2099_gets_the_clock_error_in_words_and_keeps_its_outbox() {
    let phone = phone().await;
    phone.clock.set(datetime!(2099-01-01 08:00 UTC));
    set_phone(&phone.client, "13900000001");
    let error = phone.client.sync().await.unwrap_err();
    let ClientError::DeviceClockWrong { ahead_minutes, .. } = error else {
        panic!("expected the clock error, got {error:?}");
    };
    assert!(ahead_minutes > 60 * 24 * 365 * 70, "{ahead_minutes}");
    let text = error.to_string();
    assert!(text.starts_with("手机时间不正确：比服务器快约 "), "{text}");
    assert!(
        text.contains("小时。请在手机设置中校准时间后再同步。"),
        "{text}"
    );
    assert!(text.contains("Your data is safe"), "{text}");
    let status = phone.client.status().unwrap();
    assert_eq!(status.unsent_mutations, 1);
    assert_eq!(status.last_error.as_deref(), Some(text.as_str()));
    assert!(phone.server.state().applied.is_empty());
    assert!(!error.is_transient(), "waiting does not fix a clock");

    // The cadre fixes the clock: the outbox is re-stamped and goes out.
    phone.clock.set(NOW + time::Duration::minutes(10));
    phone.client.sync().await.unwrap();
    let state = phone.server.state();
    assert_eq!(state.applied.len(), 1);
    let sent = Hlc::from_u64(state.applied[0].hlc);
    assert!(
        sent.millis() <= common::SERVER_MS + 24 * 3_600_000,
        "{sent:?}"
    );
    assert_eq!(state.households["hh-1"].phone, "13900000001");
    assert!(state.violations.is_empty(), "{:?}", state.violations);
}

#[tokio::test]
async fn a_day_of_skew_is_refused_but_an_hour_is_accepted() {
    let phone = phone().await;
    phone.clock.set(NOW + time::Duration::hours(1));
    set_phone(&phone.client, "13900000001");
    phone.client.sync().await.unwrap();
    phone.clock.set(NOW + time::Duration::hours(26));
    set_phone(&phone.client, "13900000002");
    let error = phone.client.sync().await.unwrap_err();
    assert!(
        matches!(error, ClientError::DeviceClockWrong { ahead_minutes, .. } if (25 * 60..27 * 60).contains(&ahead_minutes)),
        "{error:?}"
    );
    assert!(error.to_string().contains("约 26 小时"), "{error}");
    // The cadre overcorrects to a day slow: the server only refuses clocks that run ahead,
    // and the refused entry is re-stamped from the server's time, so it goes out.
    phone.clock.set(NOW - time::Duration::days(1));
    phone.client.sync().await.unwrap();
    let state = phone.server.state();
    assert_eq!(state.households["hh-1"].phone, "13900000002");
    let sent = Hlc::from_u64(state.applied[1].hlc).millis();
    assert!(
        (common::SERVER_MS..common::SERVER_MS + 60_000).contains(&sent),
        "{sent}"
    );
}

#[tokio::test]
async fn field_edits_are_validated_applied_at_once_and_queued_with_the_seq_they_saw() {
    let phone = phone().await;
    let client = &phone.client;
    let error = client
        .edit_household_field("hh-1", FieldTarget::Household, "attribute", json!("poor"))
        .unwrap_err();
    assert!(
        matches!(&error, ClientError::Invalid { field, .. } if field == "attribute"),
        "{error:?}"
    );
    let error = client
        .edit_household_field(
            "hh-1",
            FieldTarget::Household,
            "favourite_food",
            json!("面"),
        )
        .unwrap_err();
    assert!(error.to_string().contains("favourite_food"), "{error}");
    assert!(matches!(
        client.edit_household_field("hh-9", FieldTarget::Household, "phone", json!("1")),
        Err(ClientError::NotFound(_))
    ));
    assert!(
        client.outbox().unwrap().is_empty(),
        "nothing stored for refused edits"
    );

    // A first edit, pushed: the server's field seq comes back with the next pull.
    set_phone(client, "13900000001");
    assert_eq!(
        client.household("hh-1").unwrap().unwrap().phone,
        "13900000001"
    );
    client.sync().await.unwrap();
    let seen = client
        .household("hh-1")
        .unwrap()
        .unwrap()
        .field_seq(&FieldTarget::Household, "phone");
    assert!(seen > 0);

    set_phone(client, "13900000002");
    let new_member = client.add_member("hh-1", member("", "张小花")).unwrap();
    client
        .edit_household_field(
            "hh-1",
            FieldTarget::Member(new_member.clone()),
            "health",
            json!(2),
        )
        .unwrap();
    client.remove_member("hh-1", "hh-1-m1").unwrap();
    let card = client.household("hh-1").unwrap().unwrap();
    assert_eq!(card.members.len(), 2);
    assert!(card.members[0].removed);
    assert_eq!(card.current_members().count(), 1);
    let kinds: Vec<MutationKind> = client.outbox().unwrap().iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![
            MutationKind::EditField,
            MutationKind::AddMember,
            MutationKind::EditField,
            MutationKind::EditField
        ]
    );
    client.sync().await.unwrap();
    let state = phone.server.state();
    let MutationPayload::EditField(edit) = &state.applied[1].payload else {
        panic!("{:?}", state.applied[1]);
    };
    assert_eq!(
        edit.base_seq, seen,
        "the edit quotes the field seq the phone saw"
    );
    let server_card = &state.households["hh-1"];
    assert_eq!(
        server_card,
        &client.household("hh-1").unwrap().unwrap(),
        "converged"
    );
}

#[tokio::test]
async fn a_pull_keeps_pending_local_edits_on_top_of_the_pulled_card() {
    let phone = phone().await;
    // The console renames the head while the cadre, mid-sync, changes the phone number.
    let mut renamed = household("hh-1", "张大山");
    renamed.field_seqs.insert("household.head_name".into(), 40);
    phone.server.upsert_household(renamed);
    let client = phone.client.clone();
    phone.server.set_hook(Some(Arc::new(move |call| {
        if call == "pull" {
            set_phone(&client, "13911112222");
        }
    })));
    phone.client.sync().await.unwrap();
    phone.server.set_hook(None);
    let card = phone.client.household("hh-1").unwrap().unwrap();
    assert_eq!(card.head_name, "张大山", "the pulled change is applied");
    assert_eq!(card.phone, "13911112222", "the pending edit is not lost");
    assert_eq!(
        card.field_seqs["household.head_name"], 40,
        "pulled field seqs kept"
    );
    assert_eq!(phone.client.status().unwrap().unsent_mutations, 1);
    phone.client.sync().await.unwrap();
    assert_eq!(phone.server.state().households["hh-1"].phone, "13911112222");
}

#[tokio::test]
async fn reassignment_purges_the_card_and_flags_unsent_drafts_for_handover() {
    let phone = phone().await;
    phone.server.remove_household("hh-2");
    let client = phone.client.clone();
    phone.server.set_hook(Some(Arc::new(move |call| {
        if call == "pull" {
            client
                .edit_household_field("hh-2", FieldTarget::Household, "address", json!("二组"))
                .unwrap();
            client
                .record_visit(NewVisit {
                    observed_situation: "户主外出务工".into(),
                    exception_reason: Some(
                        fieldsync_model::codes::VisitExceptionReason::WorkingAway,
                    ),
                    ..NewVisit::new("hh-2", VisitMode::Phone, NOW, NOW)
                })
                .unwrap();
        }
    })));
    let report = phone.client.sync().await.unwrap();
    phone.server.set_hook(None);
    assert_eq!(report.households_removed, 1);
    assert_eq!(phone.client.household("hh-2").unwrap(), None, "PII purged");
    let status = phone.client.status().unwrap();
    assert_eq!(status.unsent_mutations, 0);
    assert_eq!(status.handover.len(), 2);
    assert!(
        status
            .handover
            .iter()
            .all(|item| item.household_id == "hh-2")
    );
    assert_eq!(HandoverItem::LABEL_ZH, "需移交");
    assert_eq!(phone.client.outbox().unwrap().len(), 2, "drafts are kept");
    // They are never pushed.
    phone.client.sync().await.unwrap();
    assert!(phone.server.state().applied.is_empty());
}

#[derive(Debug, Default)]
struct RecordingSleeper {
    clock: Option<Arc<FakeClock>>,
    slept: Mutex<Vec<Duration>>,
}

#[async_trait::async_trait]
impl Sleeper for RecordingSleeper {
    async fn sleep(&self, duration: Duration) {
        self.slept.lock().unwrap().push(duration);
        if let Some(clock) = &self.clock {
            clock.advance(duration);
        }
    }
}

#[tokio::test]
async fn every_failure_backs_off_with_jitter_and_success_resets_it() {
    let phone = phone().await;
    let client = &phone.client;
    assert_eq!(client.next_sync_due().unwrap(), None);
    // Pull-only failures count too: nothing new was written.
    for failures in 1..=6u32 {
        phone.server.fault(Fault::Unavailable);
        client.sync().await.unwrap_err();
        let status = client.status().unwrap();
        assert_eq!(status.consecutive_failures, failures);
        let due = client.next_sync_due().unwrap().unwrap();
        let ceiling = Duration::from_secs(2) * 2u32.pow(failures - 1);
        assert!(due >= NOW && due <= NOW + ceiling, "{failures}: {due}");
        assert_eq!(status.next_sync_due, Some(due));
    }
    client.sync().await.unwrap();
    let status = client.status().unwrap();
    assert_eq!(
        (status.consecutive_failures, status.next_sync_due),
        (0, None)
    );
    assert_eq!(status.last_error, None);
}

#[tokio::test]
async fn sync_until_quiet_waits_out_the_backoff_without_sleeping_for_real() {
    let phone = phone().await;
    set_phone(&phone.client, "13900000001");
    for fault in [Fault::Unavailable, Fault::Internal, Fault::Timeout] {
        phone.server.fault(fault);
    }
    let sleeper = RecordingSleeper {
        clock: Some(phone.clock.clone()),
        ..RecordingSleeper::default()
    };
    phone.client.sync_until_quiet(10, &sleeper).await.unwrap();
    let slept = sleeper.slept.lock().unwrap().clone();
    assert!(slept.len() <= 3, "{slept:?}");
    assert!(
        slept.iter().all(|delay| *delay <= Duration::from_secs(8)),
        "{slept:?}"
    );
    assert_eq!(phone.server.state().applied.len(), 1);

    // Giving up after the attempt budget returns the last error; the outbox stays.
    set_phone(&phone.client, "13900000002");
    for _ in 0..3 {
        phone.server.fault(Fault::Unavailable);
    }
    let error = phone
        .client
        .sync_until_quiet(3, &sleeper)
        .await
        .unwrap_err();
    assert!(error.is_unavailable());
    assert_eq!(phone.client.status().unwrap().unsent_mutations, 1);
    assert_eq!(phone.client.status().unwrap().consecutive_failures, 3);
}

#[tokio::test]
async fn a_second_sync_on_the_same_install_is_refused_while_the_first_runs() {
    let phone = phone().await;
    set_phone(&phone.client, "13900000001");
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    *phone.server.gate.lock().unwrap() = Some(gate.clone());
    let first = {
        let client = phone.client.clone();
        tokio::spawn(async move { client.sync().await })
    };
    phone.server.push_started.notified().await;
    // Another Client on the same data dir (as another process would be).
    let other = Client::open_with_transport(
        phone.client.data_dir(),
        phone.server.clone(),
        phone.clock.clone(),
    )
    .unwrap();
    assert!(matches!(
        other.sync().await,
        Err(ClientError::SyncInProgress)
    ));
    assert!(matches!(
        phone.client.sync().await,
        Err(ClientError::SyncInProgress)
    ));
    gate.add_permits(10);
    first.await.unwrap().unwrap();
    other.sync().await.unwrap();
    assert_eq!(phone.server.state().applied.len(), 1, "pushed once");
    assert_eq!(
        phone.client.status().unwrap().last_error,
        None,
        "a refused second sync is not an error of the first"
    );
}

#[tokio::test]
async fn status_shows_stuck_and_refused_items_with_their_saved_error() {
    let phone = phone().await;
    set_phone(&phone.client, "13900000001");
    for _ in 0..3 {
        phone.server.fault(Fault::Internal);
        phone.client.sync().await.unwrap_err();
        phone.clock.advance(Duration::from_secs(60));
    }
    let status = phone.client.status().unwrap();
    assert_eq!(status.wedged.len(), 1, "{:?}", status.wedged);
    let stuck = &status.wedged[0];
    assert_eq!(
        (stuck.attempts, stuck.rejected, stuck.label_zh()),
        (3, false, "卡住")
    );
    assert!(
        stuck.error.contains("database is locked"),
        "{}",
        stuck.error
    );
    assert_eq!(stuck.since, Some(NOW), "since the first failure");

    phone.server.state().refuse_household = Some("hh-1".into());
    phone.client.sync().await.unwrap();
    let status = phone.client.status().unwrap();
    assert_eq!(status.unsent_mutations, 0);
    assert_eq!(status.wedged.len(), 1);
    let refused = &status.wedged[0];
    assert!(refused.rejected && refused.label_zh() == "被拒收");
    assert!(
        refused.error.starts_with("household_out_of_scope"),
        "{}",
        refused.error
    );
    assert_eq!(refused.household_id, "hh-1");
}

#[tokio::test]
async fn a_heartbeat_rides_on_every_push_and_pull_and_a_retry_resends_it_unchanged() {
    let phone = phone().await;
    phone.clock.advance(Duration::from_secs(30));
    set_phone(&phone.client, "13900000001");
    phone.server.fault(Fault::LoseResponse);
    phone.client.sync().await.unwrap_err();
    phone.clock.advance(Duration::from_secs(300));
    phone.client.sync().await.unwrap();
    let state = phone.server.state();
    assert_eq!(state.push_heartbeats.len(), 2);
    let first = state.push_heartbeats[0].clone().expect("heartbeat on push");
    assert_eq!(
        state.push_heartbeats[1].as_ref(),
        Some(&first),
        "same bytes on retry"
    );
    assert_eq!(first.unsent_mutations, 1);
    assert_eq!(
        first.oldest_unsent_at,
        Some(NOW + time::Duration::seconds(30))
    );
    assert_eq!(first.device_time, Some(NOW + time::Duration::seconds(30)));
    let pull = state
        .pull_heartbeats
        .last()
        .cloned()
        .flatten()
        .expect("heartbeat on pull");
    assert_eq!(pull.unsent_mutations, 0);
    assert_eq!(pull.device_time, Some(NOW + time::Duration::seconds(330)));
    assert!(state.violations.is_empty(), "{:?}", state.violations);
}

#[tokio::test]
async fn a_household_reassigned_while_the_phone_lagged_past_the_horizon_is_handed_over_after_reset()
{
    let phone = phone().await;
    phone.server.remove_household("hh-2");
    // The phone's cursor is now older than the tombstone horizon: it gets RESET and a full
    // snapshot, which simply lacks hh-2.
    phone.server.fault(Fault::StaleCursor);
    let client = phone.client.clone();
    phone.server.set_hook(Some(Arc::new(move |call| {
        if call == "pull" && client.status().unwrap().unsent_mutations == 0 {
            client
                .edit_household_field("hh-2", FieldTarget::Household, "address", json!("三组"))
                .unwrap();
        }
    })));
    let report = phone.client.sync().await.unwrap();
    phone.server.set_hook(None);
    assert_eq!(report.resets, 1);
    assert_eq!(phone.client.household("hh-2").unwrap(), None);
    assert_eq!(phone.client.households().unwrap().len(), 1);
    let status = phone.client.status().unwrap();
    assert_eq!((status.unsent_mutations, status.handover.len()), (0, 1));
}
