//! Property tests at the wire edge, from fixed seeds:
//!
//! - Arbitrary prost `PushRequest`s (absurd seqs, timestamps at the ends of time, unknown
//!   codes, garbage ids, huge integers) thrown at the push use case — the wire → domain
//!   conversion, then `sync::push` — on a real SQLite store. No panic; every answer is typed
//!   (outcomes, or a `ServiceError` that is never the retryable INTERNAL / UNAVAILABLE); and
//!   the same device's next good batch still applies afterwards.
//! - Arbitrary bytes and damaged valid messages decoded as every request (and the pull
//!   response a phone decodes), then converted to domain types and validated: no panic.

use fieldsync_model::hlc::{Hlc, unix_millis};
use fieldsync_model::sync::Mutation;
use fieldsync_proto::convert::{ConvertError, optional_instant};
use fieldsync_proto::v1;
use fieldsync_server::AppState;
use fieldsync_server::error::ServiceError;
use fieldsync_server::store::{Principal, PushResult};
use fieldsync_server::sync::{PushInput, fingerprint};
use fieldsync_tests::{TestServer, pull_all};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, RngSeed, TestRunner};
use prost::Message;

/// The fixed seed every property runs from ("wedgefre" in ASCII).
const SEED: u64 = 0x7765_6467_6566_7265;
/// Push cases: each is two real SQLite write transactions; this stays well under a minute
/// in a debug build.
const PUSH_CASES: u32 = 200;
/// Decode cases: pure, cheap.
const DECODE_CASES: u32 = 2_000;

fn config(cases: u32) -> Config {
    Config {
        cases,
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: RngSeed::Fixed(SEED),
        failure_persistence: None,
        ..Config::default()
    }
}

// ---- strategies for prost types ----------------------------------------------------------

/// Timestamps a buggy or hostile phone could send. Tame: present and convertible (plausible,
/// the epoch, the end of year 9999), so the record reaches the domain checks. Wild: also
/// absent, and anything at all (including nanos out of range).
fn timestamp(wild: bool) -> BoxedStrategy<Option<prost_types::Timestamp>> {
    let stamp = |seconds: i64, nanos: i32| Some(prost_types::Timestamp { seconds, nanos });
    let tame = prop_oneof![
        12 => (1_700_000_000i64..1_800_000_000, 0i32..1_000_000_000)
            .prop_map(move |(s, n)| stamp(s, n)),
        1 => Just(stamp(0, 0)),
        1 => Just(stamp(253_402_300_000, 0)),
        1 => Just(stamp(253_402_300_799, 999_999_999)),
    ];
    if !wild {
        return tame.boxed();
    }
    prop_oneof![
        6 => tame,
        1 => Just(None),
        1 => Just(stamp(-377_705_116_800, 0)),
        1 => Just(stamp(i64::MAX, i32::MAX)),
        1 => Just(stamp(i64::MIN, i32::MIN)),
        1 => (any::<i64>(), any::<i32>()).prop_map(move |(s, n)| stamp(s, n)),
    ]
    .boxed()
}

fn edge_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..10,
        Just(i64::MAX as u64),
        Just(1u64 << 63),
        Just(u64::MAX),
        any::<u64>(),
    ]
}

fn edge_i64() -> impl Strategy<Value = i64> {
    prop_oneof![-3i64..100_000, Just(i64::MIN), Just(i64::MAX), any::<i64>()]
}

fn edge_u32() -> impl Strategy<Value = u32> {
    prop_oneof![0u32..6, Just(u32::MAX), any::<u32>()]
}

/// Known codes (1..=3 exist in every code list); wild also 0 and anything.
fn code(wild: bool) -> BoxedStrategy<i32> {
    if wild {
        prop_oneof![6 => 1i32..4, 1 => Just(0), 1 => any::<i32>()].boxed()
    } else {
        (1i32..4).boxed()
    }
}

fn uuid_text() -> impl Strategy<Value = String> {
    any::<u128>().prop_map(|bits| uuid::Uuid::from_u128(bits).to_string())
}

fn id(known: Vec<String>) -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(known),
        2 => uuid_text(),
        1 => "\\PC{0,16}",
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("户主在家，秋粮已收，家中老人身体尚可。".to_owned()),
        "\\PC{0,40}",
    ]
}

fn gps(wild: bool) -> impl Strategy<Value = Option<v1::GpsFix>> {
    proptest::option::of(
        (
            prop_oneof![Just(26.4), any::<f64>()],
            prop_oneof![Just(107.4), any::<f64>()],
            code(wild),
            prop_oneof![Just(10.0), any::<f64>()],
            code(wild),
            any::<bool>(),
            timestamp(wild),
        )
            .prop_map(|(lat, lon, crs, accuracy_m, provider, is_mock, fix_time)| {
                v1::GpsFix {
                    lat,
                    lon,
                    crs,
                    accuracy_m,
                    provider,
                    is_mock,
                    fix_time,
                }
            }),
    )
}

/// A visit that passes every check except, maybe, its times (tame timestamps include the
/// epoch and the end of year 9999) and the order of check-in and check-out.
fn tame_visit(households: Vec<String>) -> impl Strategy<Value = v1::Visit> {
    (
        uuid_text(),
        proptest::sample::select(households),
        timestamp(false),
        timestamp(false),
        timestamp(false),
        proptest::option::of(timestamp(false)),
    )
        .prop_map(
            |(visit_id, household_id, checkin_at, checkout_at, recorded_at_device, fix_time)| {
                v1::Visit {
                    visit_id,
                    revision: 1,
                    household_id,
                    mode: v1::VisitMode::InPerson as i32,
                    r#type: v1::VisitType::Routine as i32,
                    checkin_at,
                    checkout_at,
                    observed_situation: "户主在家，秋粮已收，家中老人身体尚可。".into(),
                    gps: fix_time.map(|fix_time| v1::GpsFix {
                        lat: 26.4,
                        lon: 107.4,
                        crs: v1::Crs::Wgs84 as i32,
                        accuracy_m: 10.0,
                        fix_time,
                        ..Default::default()
                    }),
                    recorded_at_device,
                    ..Default::default()
                }
            },
        )
}

fn visit(households: Vec<String>, wild: bool) -> impl Strategy<Value = v1::Visit> {
    (
        (
            prop_oneof![uuid_text(), "\\PC{0,8}"],
            edge_u32(),
            edge_u32(),
            id(households),
            prop_oneof![Just(v1::VisitMode::InPerson as i32), code(wild)],
            code(wild),
            code(wild),
        ),
        (
            timestamp(wild),
            timestamp(wild),
            timestamp(wild),
            text(),
            proptest::collection::vec(prop_oneof![uuid_text(), "\\PC{0,4}"], 0..3),
            gps(wild),
        ),
    )
        .prop_map(
            |(
                (visit_id, revision, supersedes_revision, household_id, mode, reason, kind),
                (checkin_at, checkout_at, recorded_at_device, observed_situation, photo_ids, gps),
            )| v1::Visit {
                visit_id,
                revision,
                supersedes_revision,
                household_id,
                mode,
                exception_reason: reason,
                r#type: kind,
                checkin_at,
                checkout_at,
                observed_situation,
                photo_ids,
                gps,
                recorded_at_device,
                ..Default::default()
            },
        )
}

fn photo(wild: bool) -> impl Strategy<Value = v1::PhotoRecord> {
    (
        uuid_text(),
        uuid_text(),
        prop_oneof![Just("ab".repeat(32)), "[0-9a-f]{0,64}"],
        edge_u64(),
        code(wild),
        timestamp(wild),
    )
        .prop_map(
            |(photo_id, visit_id, sha256, size_bytes, subject, captured_at_device)| {
                v1::PhotoRecord {
                    photo_id,
                    visit_id,
                    sha256,
                    size_bytes,
                    mime_type: "image/jpeg".into(),
                    subject,
                    captured_at_device,
                    in_app_camera: true,
                }
            },
        )
}

fn income(households: Vec<String>, wild: bool) -> impl Strategy<Value = v1::IncomeRegistration> {
    let fen = || -> BoxedStrategy<i64> {
        if wild {
            edge_i64().boxed()
        } else {
            (0i64..10_000_000).boxed()
        }
    };
    (
        if wild {
            prop_oneof![uuid_text(), "\\PC{0,4}"].boxed()
        } else {
            uuid_text().boxed()
        },
        id(households),
        if wild {
            prop_oneof![2020i32..2030, any::<i32>()].boxed()
        } else {
            (2020i32..2030).boxed()
        },
        if wild {
            edge_u32().boxed()
        } else {
            (1u32..5).boxed()
        },
        if wild {
            edge_u32().boxed()
        } else {
            (1u32..9).boxed()
        },
        (fen(), fen(), fen(), fen(), fen()),
    )
        .prop_map(
            |(registration_id, household_id, year, quarter, household_size, fen)| {
                v1::IncomeRegistration {
                    registration_id,
                    household_id,
                    year,
                    quarter,
                    household_size,
                    wage_fen: fen.0,
                    business_gross_fen: fen.1,
                    property_fen: fen.2,
                    transfer_fen: fen.3,
                    business_cost_fen: fen.4,
                    ..Default::default()
                }
            },
        )
}

fn field_edit(households: Vec<String>, wild: bool) -> impl Strategy<Value = v1::FieldEdit> {
    (
        id(households),
        prop_oneof![Just(String::new()), "\\PC{0,8}"],
        prop_oneof![
            Just("phone".to_owned()),
            Just("address".to_owned()),
            "\\PC{0,8}"
        ],
        if wild {
            prop_oneof![
                Just("\"13800000000\"".to_owned()),
                Just("1e999999".to_owned()),
                Just("[[[[[[[[]]]]]]]]".to_owned()),
                "\\PC{0,12}",
            ]
            .boxed()
        } else {
            prop_oneof![
                Just("\"13800000000\"".to_owned()),
                Just("\"某某村3组\"".to_owned()),
                Just("null".to_owned()),
                Just("[[[[[[[[]]]]]]]]".to_owned()),
                any::<i64>().prop_map(|number| number.to_string()),
            ]
            .boxed()
        },
        edge_i64(),
    )
        .prop_map(
            |(household_id, member_id, field, value_json, base_seq)| v1::FieldEdit {
                household_id,
                member_id,
                field,
                value_json,
                base_seq,
            },
        )
}

fn member(wild: bool) -> impl Strategy<Value = v1::Member> {
    (
        prop_oneof![uuid_text(), "\\PC{0,4}"],
        "\\PC{0,8}",
        (
            code(wild),
            code(wild),
            code(wild),
            code(wild),
            code(wild),
            code(wild),
        ),
        edge_u32(),
        "\\PC{0,20}",
    )
        .prop_map(
            |(member_id, name, codes, disability_grade, id_number)| v1::Member {
                member_id,
                name,
                relation: codes.0,
                sex: codes.1,
                health: codes.2,
                labour_capacity: codes.3,
                schooling: codes.4,
                disability: codes.5,
                disability_grade,
                id_number,
                ..Default::default()
            },
        )
}

fn payload(
    households: Vec<String>,
    wild: bool,
) -> impl Strategy<Value = Option<v1::mutation::Payload>> {
    use v1::mutation::Payload;
    prop_oneof![
        u32::from(wild) => Just(None),
        16 => visit(households.clone(), wild).prop_map(|visit| Some(Payload::SubmitVisit(visit))),
        16 * u32::from(!wild) => tame_visit(households.clone())
            .prop_map(|visit| Some(Payload::SubmitVisit(visit))),
        6 => photo(wild).prop_map(|photo| Some(Payload::AddPhoto(photo))),
        6 => income(households.clone(), wild)
            .prop_map(|income| Some(Payload::RegisterIncome(income))),
        8 => field_edit(households.clone(), wild).prop_map(|edit| Some(Payload::EditField(edit))),
        6 => (
            id(households),
            if wild { proptest::option::of(member(wild)).boxed() } else { member(wild).prop_map(Some).boxed() },
        ).prop_map(
            |(household_id, member)| Some(Payload::AddMember(v1::AddMember { household_id, member }))
        ),
    ]
}

/// How a generated request picks its seqs, resolved against the device's real next seq when
/// the case runs (the strategy cannot know it).
#[derive(Debug, Clone)]
enum SeqChoice {
    /// The device's next seq, consecutive: the common, well-formed case.
    Next,
    /// Already processed: a retry or a stale phone.
    Back(u64),
    /// A gap ahead of the device's last seq (allowed: a lost batch).
    Ahead(u64),
    /// Seqs a request may not carry: 0, or beyond SQLite's i64.
    Invalid(u64),
    /// Each mutation picks its own seq.
    Scattered(Vec<u64>),
}

fn seq_choice() -> impl Strategy<Value = SeqChoice> {
    prop_oneof![
        6 => Just(SeqChoice::Next),
        1 => (1u64..4).prop_map(SeqChoice::Back),
        1 => (1u64..3).prop_map(SeqChoice::Ahead),
        2 => prop_oneof![
            Just(0u64),
            Just(i64::MAX as u64 + 1),
            Just((1u64 << 63) + 5),
            Just(u64::MAX),
        ]
        .prop_map(SeqChoice::Invalid),
        1 => proptest::collection::vec(edge_u64(), 6).prop_map(SeqChoice::Scattered),
    ]
}

/// A push request with its seqs still to resolve.
#[derive(Debug, Clone)]
struct GeneratedPush {
    request: v1::PushRequest,
    seqs: SeqChoice,
}

/// Tame and wild pushes half and half: wild ones mostly fail conversion (INVALID_ARGUMENT),
/// tame ones reach the use case and the store.
fn push_request(
    households: Vec<String>,
    device_id: String,
) -> impl Strategy<Value = GeneratedPush> {
    prop_oneof![
        push_request_of(households.clone(), device_id.clone(), false),
        push_request_of(households, device_id, true),
    ]
}

fn push_request_of(
    households: Vec<String>,
    device_id: String,
    wild: bool,
) -> impl Strategy<Value = GeneratedPush> {
    // Tame pushes are well-formed envelopes (this device, fresh ids, its next seqs, a
    // current clock); only their records carry edge values.
    let mutation = (
        prop_oneof![4 => uuid_text(), u32::from(wild) => "\\PC{0,6}"],
        prop_oneof![
            3 => Just(None),
            u32::from(wild) => edge_u64().prop_map(Some),
        ],
        payload(households, wild),
    );
    (
        prop_oneof![8 => Just(device_id), u32::from(wild) => uuid_text()],
        prop_oneof![8 => uuid_text(), u32::from(wild) => "\\PC{0,6}"],
        proptest::collection::vec(mutation, usize::from(!wild)..4),
        if wild {
            seq_choice().boxed()
        } else {
            Just(SeqChoice::Next).boxed()
        },
        proptest::option::of((edge_u64(), edge_u64(), timestamp(wild), timestamp(wild))),
    )
        .prop_map(
            |(device_id, batch_id, mutations, seqs, heartbeat)| GeneratedPush {
                request: v1::PushRequest {
                    device_id,
                    batch_id,
                    first_seq: 0,
                    mutations: mutations
                        .into_iter()
                        .map(|(mutation_id, hlc, payload)| v1::Mutation {
                            seq: 0,
                            mutation_id,
                            // None: a plausible HLC stamped when the case runs.
                            hlc: hlc.unwrap_or(0),
                            payload,
                        })
                        .collect(),
                    heartbeat: heartbeat.map(|(unsent, pending, oldest, device_time)| {
                        v1::DeviceHeartbeat {
                            unsent_mutations: unsent,
                            pending_uploads: pending,
                            oldest_unsent_at: oldest,
                            device_time,
                            last_error: String::new(),
                        }
                    }),
                    client: Some(fieldsync_tests::client_info()),
                },
                seqs,
            },
        )
}

// ---- the push use case as the gRPC edge runs it -------------------------------------------

/// What the edge can answer: a conversion failure is INVALID_ARGUMENT naming the field.
#[derive(Debug)]
enum EdgeAnswer {
    Outcomes(PushResult),
    InvalidWire(ConvertError),
    Refused(ServiceError),
}

/// The gRPC adapter's steps (conversion, fingerprint, use case), minus the socket.
async fn push_as_the_edge(
    state: &AppState,
    principal: &Principal,
    request: &v1::PushRequest,
) -> EdgeAnswer {
    if let Some(heartbeat) = &request.heartbeat {
        for (field, stamp) in [
            ("oldest_unsent_at", &heartbeat.oldest_unsent_at),
            ("device_time", &heartbeat.device_time),
        ] {
            if let Err(error) = optional_instant(stamp, field) {
                return EdgeAnswer::InvalidWire(error.within("heartbeat"));
            }
        }
    }
    let mut mutations = Vec::with_capacity(request.mutations.len());
    for (index, wire) in request.mutations.iter().enumerate() {
        match Mutation::try_from(wire) {
            Ok(mutation) => mutations.push(mutation),
            Err(error) => {
                return EdgeAnswer::InvalidWire(error.within(&format!("mutations[{index}]")));
            }
        }
    }
    let input = PushInput {
        device_id: request.device_id.clone(),
        batch_id: request.batch_id.clone(),
        first_seq: request.first_seq,
        mutations,
        fingerprint: fingerprint(&request.encode_to_vec()),
    };
    match fieldsync_server::sync::push(state, principal, input).await {
        Ok(result) => EdgeAnswer::Outcomes(result),
        Err(error) => EdgeAnswer::Refused(error),
    }
}

/// A visit that must apply, for `household_id`, at `seq`.
fn good_batch(device_id: &str, household_id: &str, seq: u64, hlc: u64) -> v1::PushRequest {
    v1::PushRequest {
        device_id: device_id.into(),
        batch_id: uuid::Uuid::now_v7().to_string(),
        first_seq: seq,
        mutations: vec![v1::Mutation {
            seq,
            mutation_id: uuid::Uuid::now_v7().to_string(),
            hlc,
            payload: Some(v1::mutation::Payload::SubmitVisit(
                fieldsync_tests::wire_in_person_visit(household_id),
            )),
        }],
        client: Some(fieldsync_tests::client_info()),
        ..Default::default()
    }
}

/// Run `body` on a thread with a larger stack: in a debug build, generating values of these
/// nested prost strategies needs more than the 2 MiB a test thread gets.
fn with_large_stack(body: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(32 << 20)
        .spawn(body)
        .expect("spawn")
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
}

#[test]
fn arbitrary_pushes_get_typed_answers_and_never_wedge_the_device() {
    with_large_stack(arbitrary_pushes);
}

fn arbitrary_pushes() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let server = runtime.block_on(TestServer::start());
    let device_id = uuid::Uuid::now_v7().to_string();
    let token = runtime.block_on(server.login("cadre01", &device_id));
    let (households, _, _) = runtime.block_on(pull_all(runtime.block_on(server.channel()), &token));
    let paired: Vec<String> = households
        .iter()
        .map(|household| household.household_id.clone())
        .collect();
    let principal = runtime
        .block_on(fieldsync_server::auth::authenticate(
            server.state.store.as_ref(),
            &token,
            &fieldsync_server::auth::SessionPolicy::from_settings(&server.state.settings),
            "127.0.0.1",
            time::OffsetDateTime::now_utc(),
        ))
        .expect("principal");
    let next_seq = std::cell::Cell::new(1u64);
    // How often each kind of answer came back, so the test shows the generator reaches all.
    let seen = std::cell::RefCell::new(std::collections::BTreeMap::<&str, u32>::new());
    let count = |kind: &'static str| *seen.borrow_mut().entry(kind).or_default() += 1;
    let now_hlc = || Hlc::from_parts(unix_millis(time::OffsetDateTime::now_utc()), 0).as_u64();

    let mut runner = TestRunner::new(config(PUSH_CASES));
    let result = runner.run(
        &push_request(paired.clone(), device_id.clone()),
        |GeneratedPush { mut request, seqs }| {
            let next = next_seq.get();
            let first = match &seqs {
                SeqChoice::Next => next,
                SeqChoice::Back(back) => next.saturating_sub(*back).max(1),
                SeqChoice::Ahead(gap) => next + gap,
                SeqChoice::Invalid(seq) => *seq,
                SeqChoice::Scattered(seqs) => seqs[0],
            };
            request.first_seq = first;
            for (index, mutation) in request.mutations.iter_mut().enumerate() {
                mutation.seq = match &seqs {
                    SeqChoice::Scattered(seqs) => seqs[index],
                    _ => first.wrapping_add(index as u64),
                };
                if mutation.hlc == 0 {
                    mutation.hlc = now_hlc();
                }
            }
            let sent = request.mutations.len();
            match runtime.block_on(push_as_the_edge(&server.state, &principal, &request)) {
                EdgeAnswer::Outcomes(result) => {
                    prop_assert_eq!(result.outcomes.len(), sent, "one outcome per mutation");
                    prop_assert!(result.last_processed_seq >= next - 1, "seq never goes back");
                    for (_, outcome) in &result.outcomes {
                        count(match outcome {
                            fieldsync_model::sync::MutationOutcome::Rejected { .. } => "rejected",
                            _ => "stored",
                        });
                    }
                    next_seq.set(result.last_processed_seq + 1);
                }
                EdgeAnswer::InvalidWire(error) => {
                    count("invalid wire");
                    prop_assert!(
                        error.field.starts_with("mutations[")
                            || error.field.starts_with("heartbeat"),
                        "{}",
                        error
                    );
                }
                EdgeAnswer::Refused(error) => {
                    count("refused");
                    prop_assert!(
                        !matches!(error, ServiceError::Internal | ServiceError::Unavailable),
                        "a malformed push got a retryable answer: {error:?}"
                    );
                }
            }
            // Whatever came before, the device's next good batch applies.
            let seq = next_seq.get();
            let household = &paired[seq as usize % paired.len()];
            let good = good_batch(&device_id, household, seq, now_hlc());
            match runtime.block_on(push_as_the_edge(&server.state, &principal, &good)) {
                EdgeAnswer::Outcomes(result) => {
                    prop_assert_eq!(
                        &result.outcomes,
                        &vec![(seq, fieldsync_model::sync::MutationOutcome::Applied)]
                    );
                    next_seq.set(result.last_processed_seq + 1);
                }
                other => prop_assert!(false, "the good batch at seq {seq} failed: {other:?}"),
            }
            Ok(())
        },
    );
    if let Err(failure) = result {
        panic!("{failure}");
    }
    assert!(
        next_seq.get() > PUSH_CASES as u64,
        "every good batch applied"
    );
    let seen = seen.into_inner();
    for kind in ["stored", "rejected", "invalid wire", "refused"] {
        assert!(
            seen.get(kind).copied().unwrap_or(0) > 0,
            "no {kind} answer: {seen:?}"
        );
    }
    eprintln!("answers: {seen:?}");
}

// ---- decoding arbitrary bytes -------------------------------------------------------------

/// Decode `bytes` as `M`; a decode error is the typed INVALID_ARGUMENT the codec answers.
fn decode<M: Message + Default>(bytes: &[u8]) -> Option<M> {
    M::decode(bytes).ok()
}

/// Everything the server does with a decoded push before the store: conversion, then the
/// domain's own checks and the Beijing-time helpers that once panicked at year 9999.
fn convert_push(request: &v1::PushRequest) {
    if let Some(heartbeat) = &request.heartbeat {
        let _ = optional_instant(&heartbeat.oldest_unsent_at, "oldest_unsent_at");
        let _ = optional_instant(&heartbeat.device_time, "device_time");
    }
    for wire in &request.mutations {
        let Ok(mutation) = Mutation::try_from(wire) else {
            continue;
        };
        match &mutation.payload {
            fieldsync_model::sync::MutationPayload::SubmitVisit(visit) => {
                let _ = visit.validate();
                let _ = visit.business_month();
                let _ = fieldsync_model::time_util::beijing_minutes(visit.checkin_at);
                let _ = fieldsync_model::time_util::beijing_minutes(visit.checkout_at);
                let _ = fieldsync_model::ledger::BusinessMonth::of(visit.checkin_at).end();
                let _ = fieldsync_model::evidence::business_date(visit.recorded_at_device);
                let _ = visit.content_hash();
            }
            fieldsync_model::sync::MutationPayload::AddPhoto(photo) => {
                let _ = photo.validate();
            }
            _ => {}
        }
        let _ = v1::Mutation::from(&mutation);
    }
}

/// What a phone does with a decoded pull frame.
fn convert_pull(response: &v1::PullResponse) {
    if let Some(v1::pull_response::Frame::Page(page)) = &response.frame {
        for household in &page.households {
            let _ = fieldsync_model::household::Household::try_from(household);
        }
        for status in &page.visit_statuses {
            let _ = fieldsync_model::review::VisitStatus::try_from(status);
        }
        for registration in &page.income_registrations {
            let _ = fieldsync_model::income::IncomeRegistration::try_from(registration);
        }
    }
}

fn decode_everything(bytes: &[u8]) {
    if let Some(push) = decode::<v1::PushRequest>(bytes) {
        convert_push(&push);
    }
    if let Some(pull) = decode::<v1::PullResponse>(bytes) {
        convert_pull(&pull);
    }
    let _ = decode::<v1::PullRequest>(bytes);
    let _ = decode::<v1::LoginRequest>(bytes);
    let _ = decode::<v1::StartUploadRequest>(bytes);
    let _ = decode::<v1::PutChunkRequest>(bytes);
    let _ = decode::<v1::CompleteUploadRequest>(bytes);
    let _ = decode::<v1::UploadStatusRequest>(bytes);
    let _ = decode::<v1::ListQueueRequest>(bytes);
    let _ = decode::<v1::GetVisitRequest>(bytes);
    let _ = decode::<v1::DecideRequest>(bytes);
}

/// Valid encoded requests to damage: a push carrying one of each payload kind.
fn valid_encodings() -> Vec<Vec<u8>> {
    let households = vec!["h-1".to_owned()];
    let mut runner = TestRunner::new(config(1));
    (0..16)
        .map(|_| {
            let generated = push_request(households.clone(), "device".into())
                .new_tree(&mut runner)
                .expect("value")
                .current();
            generated.request.encode_to_vec()
        })
        .collect()
}

#[test]
fn arbitrary_bytes_decode_and_convert_without_panicking() {
    with_large_stack(arbitrary_bytes);
}

fn arbitrary_bytes() {
    let mut runner = TestRunner::new(config(DECODE_CASES));
    let result = runner.run(&proptest::collection::vec(any::<u8>(), 0..512), |bytes| {
        decode_everything(&bytes);
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }

    // Random bytes rarely get past the first field; damaged real messages reach deep into
    // the conversion.
    let valid = valid_encodings();
    let damage = (
        0..valid.len(),
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        any::<prop::sample::Index>(),
    );
    let mut runner = TestRunner::new(config(DECODE_CASES));
    let result = runner.run(&damage, |(which, flips, cut)| {
        let mut bytes = valid[which].clone();
        if bytes.is_empty() {
            return Ok(());
        }
        for (index, value) in flips {
            let at = index.index(bytes.len());
            bytes[at] = value;
        }
        decode_everything(&bytes);
        let cut = cut.index(bytes.len());
        decode_everything(&bytes[..cut]);
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
}
