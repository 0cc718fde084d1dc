//! 季登记 on the phone over the scripted fake network: `register_income` checks the model's
//! rules before anything is queued, enqueues one `RegisterIncome` outbox entry exactly like a
//! visit (same outbox, gap-free seq, HLC, UUIDv7 ids), works offline, and `sync` pushes it
//! and records the server's answer on the local registration.

mod common;

use std::sync::Arc;

use common::{FakeClock, FakeServer, household, member};
use fieldsync_client::records::MutationKind;
use fieldsync_client::{Client, ClientError, IncomeState, NewVisit};
use fieldsync_model::codes::VisitMode;
use fieldsync_model::hlc::Hlc;
use fieldsync_model::income::{IncomeComponents, IncomeError, IncomeRegistration};
use fieldsync_model::sync::MutationPayload;
use time::OffsetDateTime;
use time::macros::datetime;

const NOW: OffsetDateTime = datetime!(2026-07-05 10:00 UTC);

struct Phone {
    _dir: tempfile::TempDir,
    client: Client,
    server: Arc<FakeServer>,
}

/// A logged-in phone with three households pulled: hh-1 (head + spouse), hh-2 (head only)
/// and hh-empty (its only member removed).
async fn phone() -> Phone {
    let server = FakeServer::new();
    // The fake server's clock agrees with the phone's (a July day: Q2 is being registered).
    server.state().server_ms = (NOW.unix_timestamp() * 1000) as u64;
    let mut two = household("hh-1", "张三");
    two.members.push(member("hh-1-m2", "李梅"));
    server.upsert_household(two);
    server.upsert_household(household("hh-2", "李四"));
    let mut empty = household("hh-empty", "王五");
    for member in &mut empty.members {
        member.removed = true;
    }
    server.upsert_household(empty);
    let dir = tempfile::TempDir::new().unwrap();
    let client = Client::open_with_transport(
        &dir.path().join("phone"),
        server.clone(),
        FakeClock::new(NOW),
    )
    .unwrap()
    .with_rng_seed(7);
    client.login("cadre01", "demo123").await.unwrap();
    client.sync().await.unwrap();
    assert_eq!(client.households().unwrap().len(), 3);
    Phone {
        _dir: dir,
        client,
        server,
    }
}

/// 务工 3,200.50 + 养殖 1,800 + 分红 150 + 低保 900 − 饲料 600.
fn q3_income() -> IncomeComponents {
    IncomeComponents {
        wage_fen: 320_050,
        business_gross_fen: 180_000,
        property_fen: 15_000,
        transfer_fen: 90_000,
        business_cost_fen: 60_000,
    }
}

fn is_uuid_v7(text: &str) -> bool {
    uuid::Uuid::parse_str(text).is_ok_and(|id| id.get_version_num() == 7)
}

#[tokio::test]
async fn a_registration_is_checked_derived_and_queued_like_a_visit() {
    let phone = phone().await;
    let client = &phone.client;
    // A visit first, so the registration must take the next seq of the SAME outbox.
    let visit_id = client
        .record_visit(NewVisit {
            observed_situation: "电话回访, 外出务工收入稳定".into(),
            exception_reason: Some(fieldsync_model::codes::VisitExceptionReason::WorkingAway),
            ..NewVisit::new(
                "hh-1",
                VisitMode::Phone,
                NOW - time::Duration::minutes(10),
                NOW,
            )
        })
        .unwrap();

    let registration = client
        .register_income("hh-1", 2026, 3, q3_income())
        .unwrap();
    assert_eq!(registration.household_id, "hh-1");
    assert_eq!((registration.year, registration.quarter), (2026, 3));
    assert_eq!(
        registration.household_size, 2,
        "current members of the card"
    );
    assert_eq!(registration.components, q3_income());
    // 320,050 + 180,000 + 15,000 + 90,000 − 60,000 = 545,050 fen; / 2 = 272,525.
    assert_eq!(registration.net_fen, 545_050);
    assert_eq!(registration.per_capita_net_fen, 272_525);
    assert!(is_uuid_v7(&registration.registration_id));

    let outbox = client.outbox().unwrap();
    assert_eq!(outbox.len(), 2);
    let (visit_entry, income_entry) = (&outbox[0], &outbox[1]);
    assert_eq!(visit_entry.kind, MutationKind::SubmitVisit);
    assert_eq!(visit_entry.subject_id, visit_id);
    assert_eq!(income_entry.kind, MutationKind::RegisterIncome);
    assert_eq!(income_entry.seq, visit_entry.seq + 1, "gap-free seqs");
    assert!(income_entry.hlc > visit_entry.hlc, "HLC advances");
    assert_eq!(
        Hlc::from_u64(income_entry.hlc).millis() / 1000,
        NOW.unix_timestamp() as u64
    );
    assert!(is_uuid_v7(&income_entry.mutation_id));
    assert_eq!(income_entry.subject_id, registration.registration_id);
    let queued: IncomeRegistration = serde_json::from_str(&income_entry.payload_json).unwrap();
    assert_eq!(queued, registration);
    assert_eq!(client.status().unwrap().unsent_mutations, 2);

    let listed = client.income_registrations(Some("hh-1")).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].registration, registration);
    assert_eq!(listed[0].state, IncomeState::Unsent);
    assert_eq!(listed[0].recorded_at, Some(NOW));
    assert!(
        client
            .income_registrations(Some("hh-2"))
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn bad_input_is_a_typed_error_and_queues_nothing() {
    let phone = phone().await;
    let client = &phone.client;
    let income = |error: ClientError| match error {
        ClientError::InvalidIncome(error) => error,
        other => panic!("expected InvalidIncome, got {other:?}"),
    };

    let unknown = client.register_income("hh-9", 2026, 1, q3_income());
    assert!(
        matches!(unknown, Err(ClientError::UnknownHousehold { .. })),
        "{unknown:?}"
    );
    // "hh-" matches three households.
    let ambiguous = client.register_income("hh-", 2026, 1, q3_income());
    assert!(
        matches!(&ambiguous, Err(ClientError::Invalid { field, .. }) if field == "household"),
        "{ambiguous:?}"
    );
    for quarter in [0, 5] {
        let error = client
            .register_income("hh-1", 2026, quarter, q3_income())
            .unwrap_err();
        assert_eq!(income(error), IncomeError::BadQuarter(quarter));
    }
    let negative = IncomeComponents {
        transfer_fen: -1,
        ..q3_income()
    };
    let error = client
        .register_income("hh-1", 2026, 2, negative)
        .unwrap_err();
    assert_eq!(income(error), IncomeError::NegativeComponent("transfer"));
    let overflowing = IncomeComponents {
        wage_fen: i64::MAX,
        business_gross_fen: 1,
        ..IncomeComponents::default()
    };
    let error = client
        .register_income("hh-1", 2026, 2, overflowing)
        .unwrap_err();
    assert_eq!(income(error), IncomeError::Overflow);
    // "hh-e" is a unique prefix of hh-empty, which has no current member.
    let error = client
        .register_income("hh-e", 2026, 2, q3_income())
        .unwrap_err();
    assert_eq!(income(error), IncomeError::EmptyHousehold);
    let bad_year = client.register_income("hh-1", 20266, 2, q3_income());
    assert!(
        matches!(&bad_year, Err(ClientError::Invalid { field, .. }) if field == "year"),
        "{bad_year:?}"
    );

    assert!(client.outbox().unwrap().is_empty(), "nothing queued");
    assert!(client.income_registrations(None).unwrap().is_empty());
    // Refusals consumed no seq: the next good registration is seq 1.
    client
        .register_income("hh-2", 2026, 2, q3_income())
        .unwrap();
    assert_eq!(client.outbox().unwrap()[0].seq, 1);
}

#[tokio::test]
async fn registrations_made_offline_are_pushed_by_sync_and_their_fate_is_kept() {
    let phone = phone().await;
    let client = &phone.client;
    // Offline: the fake network fails the next push, like no signal.
    phone.server.fault(common::Fault::Unavailable);
    let q2 = client
        .register_income("hh-1", 2026, 2, q3_income())
        .unwrap();
    let q3 = client
        .register_income(
            "hh-1",
            2026,
            3,
            IncomeComponents {
                wage_fen: 100,
                ..IncomeComponents::default()
            },
        )
        .unwrap();
    let elsewhere = client
        .register_income("hh-2", 2026, 2, q3_income())
        .unwrap();
    let error = client.sync().await.unwrap_err();
    assert!(error.is_unavailable(), "{error:?}");
    assert_eq!(client.outbox().unwrap().len(), 3, "kept for the next sync");
    assert!(
        client
            .income_registrations(None)
            .unwrap()
            .iter()
            .all(|row| row.state == IncomeState::Unsent)
    );

    // hh-2 was reassigned away without the phone knowing: the server refuses that one.
    phone.server.state().refuse_household = Some("hh-2".into());
    let report = client.sync().await.unwrap();
    assert_eq!(report.mutations_applied, 2);
    assert_eq!(report.rejected.len(), 1);
    assert_eq!(report.rejected[0].kind, MutationKind::RegisterIncome);
    assert!(client.outbox().unwrap().is_empty());

    let pushed: Vec<IncomeRegistration> = phone
        .server
        .state()
        .applied
        .iter()
        .filter_map(|mutation| match &mutation.payload {
            MutationPayload::RegisterIncome(registration) => Some(registration.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(pushed, vec![q2.clone(), q3.clone()]);

    let listed = client.income_registrations(None).unwrap();
    let states: Vec<(&str, IncomeState)> = listed
        .iter()
        .map(|row| (row.registration.registration_id.as_str(), row.state))
        .collect();
    assert_eq!(
        states,
        vec![
            (q2.registration_id.as_str(), IncomeState::Sent),
            (q3.registration_id.as_str(), IncomeState::Sent),
            (elsewhere.registration_id.as_str(), IncomeState::Rejected),
        ]
    );
    let (code, _message) = listed[2].rejection.clone().expect("the refusal is kept");
    assert_eq!(code, "household_out_of_scope");
    assert!(
        client
            .status()
            .unwrap()
            .wedged
            .iter()
            .any(|item| item.rejected && item.subject_id == elsewhere.registration_id)
    );
}
