//! Model-based test of the client's sync state machine. A scripted fake server (behind the
//! `SyncTransport` seam) answers with pages, checkpoints, RESETs, 5xx, UNAVAILABLE,
//! timeouts, lost and replayed push responses, duplicated pages and stale cursors, in
//! random interleavings with local writes, server-side changes and clock jumps, all drawn
//! from a seeded RNG. A small reference model predicts the phone's replica. After every
//! step:
//! - the cursor never regresses and always names the last checkpoint the phone read, so
//!   pulled data is applied only at checkpoints (the replica equals the model's, which only
//!   moves at checkpoints);
//! - the outbox is never lost: every locally written mutation is still in the outbox or
//!   was acknowledged in a push response the phone received; the server applied each at
//!   most once, and the client never reused a batch id with other content;
//! - outbox HLCs grow with seq, even when the wall clock jumps back;
//! - no reset loop: a sync without injected faults (a RESET included) ends in a
//!   checkpoint at the server's head with everything sendable pushed.
//!
//! A failing seed is printed with the command that replays it alone:
//! `FIELDSYNC_SEED=<seed> cargo test -p fieldsync-client --test state_machine`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use common::{FakeClock, FakeServer, Fault, household, member};
use fieldsync_client::edits::AddMemberPayload;
use fieldsync_client::records::MutationKind;
use fieldsync_client::{Client, NewVisit};
use fieldsync_model::codes::{VisitExceptionReason, VisitMode};
use fieldsync_model::household::Household;
use fieldsync_model::register::{FieldEdit, FieldTarget, apply_value};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use time::OffsetDateTime;
use time::macros::datetime;

const SEEDS: u64 = 200;
const STEPS: usize = 30;
const START: OffsetDateTime = datetime!(2026-03-05 10:00 UTC);
const FAULTS: [Fault; 7] = [
    Fault::Unavailable,
    Fault::Timeout,
    Fault::Internal,
    Fault::LoseResponse,
    Fault::NoCheckpoint,
    Fault::DuplicatePages,
    Fault::StaleCursor,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_client_state_machine_keeps_its_invariants_for_200_seeds() {
    let seeds: Vec<u64> = match std::env::var("FIELDSYNC_SEED") {
        Ok(seed) => vec![seed.parse().expect("FIELDSYNC_SEED is a number")],
        Err(_) => (0..SEEDS).collect(),
    };
    // Seeds are independent; run a few at a time so 200 finish quickly.
    let mut failures = Vec::new();
    for chunk in seeds.chunks(8) {
        let handles: Vec<_> = chunk
            .iter()
            .map(|&seed| tokio::spawn(async move { (seed, run_case(seed).await) }))
            .collect();
        for handle in handles {
            let (seed, result) = handle.await.expect("case task");
            if let Err(message) = result {
                failures.push(format!(
                    "seed {seed}: {message}\n  replay: FIELDSYNC_SEED={seed} cargo test -p fieldsync-client --test state_machine"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The reference model of what the phone should hold.
#[derive(Debug, Default)]
struct Model {
    /// Every mutation id written on the phone.
    written: BTreeSet<String>,
    /// The replica: moves with local edits and at checkpoints only.
    replica: BTreeMap<String, Household>,
    checkpoints_seen: usize,
    cursor_seq: u64,
}

fn cursor_seq(cursor: &str) -> Result<u64, String> {
    cursor
        .strip_prefix('c')
        .and_then(|seq| seq.parse().ok())
        .ok_or_else(|| format!("unexpected cursor {cursor:?}"))
}

fn check(condition: bool, message: impl FnOnce() -> String) -> Result<(), String> {
    if condition { Ok(()) } else { Err(message()) }
}

/// The pending card edits in the phone's outbox (not held for hand-over), applied on top
/// of a pulled scope, as the model understands rebase.
fn rebase(
    mut scope: BTreeMap<String, Household>,
    client: &Client,
) -> Result<BTreeMap<String, Household>, String> {
    let handover: BTreeSet<u64> = client
        .status()
        .map_err(|error| error.to_string())?
        .handover
        .iter()
        .map(|item| item.seq)
        .collect();
    for entry in client.outbox().map_err(|error| error.to_string())? {
        if handover.contains(&entry.seq) {
            continue;
        }
        match entry.kind {
            MutationKind::EditField => {
                let edit: FieldEdit =
                    serde_json::from_str(&entry.payload_json).map_err(|e| e.to_string())?;
                if let Some(card) = scope.get_mut(&edit.household_id) {
                    let mut candidate = card.clone();
                    if apply_value(&mut candidate, &edit.target, &edit.field, &edit.value).is_ok() {
                        *card = candidate;
                    }
                }
            }
            MutationKind::AddMember => {
                let added: AddMemberPayload =
                    serde_json::from_str(&entry.payload_json).map_err(|e| e.to_string())?;
                if let Some(card) = scope.get_mut(&added.household_id)
                    && !card
                        .members
                        .iter()
                        .any(|m| m.member_id == added.member.member_id)
                {
                    card.members.push(added.member);
                }
            }
            _ => {}
        }
    }
    Ok(scope)
}

fn client_replica(client: &Client) -> Result<BTreeMap<String, Household>, String> {
    let mut replica = BTreeMap::new();
    for summary in client.households().map_err(|error| error.to_string())? {
        let card = client
            .household(&summary.household_id)
            .map_err(|error| error.to_string())?
            .ok_or("listed household has no card")?;
        replica.insert(summary.household_id, card);
    }
    Ok(replica)
}

/// Record the new outbox entries of a local write in the model.
fn note_written(model: &mut Model, client: &Client) -> Result<(), String> {
    for entry in client.outbox().map_err(|error| error.to_string())? {
        model.written.insert(entry.mutation_id);
    }
    Ok(())
}

async fn local_write(
    rng: &mut StdRng,
    model: &mut Model,
    client: &Client,
    step: usize,
) -> Result<String, String> {
    let ids: Vec<String> = model.replica.keys().cloned().collect();
    if ids.is_empty() {
        return Ok("write skipped (no households yet)".into());
    }
    let household_id = ids[rng.random_range(0..ids.len())].clone();
    let card = model.replica[&household_id].clone();
    let (description, result) = match rng.random_range(0..5) {
        0 => {
            let value = json!(format!("139{:08}", rng.random_range(0..100_000_000u32)));
            let result = client
                .edit_household_field(
                    &household_id,
                    FieldTarget::Household,
                    "phone",
                    value.clone(),
                )
                .map(|_| {
                    apply_value(
                        model.replica.get_mut(&household_id).expect("card"),
                        &FieldTarget::Household,
                        "phone",
                        &value,
                    )
                });
            ("edit phone", result.map(|_| ()))
        }
        1 => {
            let value = json!(format!("{}组", rng.random_range(1..9)));
            let result = client
                .edit_household_field(
                    &household_id,
                    FieldTarget::Household,
                    "address",
                    value.clone(),
                )
                .map(|_| {
                    apply_value(
                        model.replica.get_mut(&household_id).expect("card"),
                        &FieldTarget::Household,
                        "address",
                        &value,
                    )
                });
            ("edit address", result.map(|_| ()))
        }
        2 => {
            let result = client
                .add_member(&household_id, member("", &format!("成员{step}")))
                .map(|member_id| {
                    let mut added = member(&member_id, &format!("成员{step}"));
                    added.member_id = member_id;
                    model
                        .replica
                        .get_mut(&household_id)
                        .expect("card")
                        .members
                        .push(added);
                });
            ("add member", result)
        }
        3 => {
            let current: Vec<String> = card
                .current_members()
                .map(|m| m.member_id.clone())
                .collect();
            if current.is_empty() {
                return Ok("member edit skipped".into());
            }
            let member_id = current[rng.random_range(0..current.len())].clone();
            let value = json!(rng.random_range(1..=4));
            let target = FieldTarget::Member(member_id);
            let result = client
                .edit_household_field(&household_id, target.clone(), "health", value.clone())
                .map(|_| {
                    apply_value(
                        model.replica.get_mut(&household_id).expect("card"),
                        &target,
                        "health",
                        &value,
                    )
                });
            ("edit member health", result.map(|_| ()))
        }
        _ => {
            let now = START;
            let result = client
                .record_visit(NewVisit {
                    observed_situation: format!("电话回访 {step}"),
                    exception_reason: Some(VisitExceptionReason::WorkingAway),
                    ..NewVisit::new(household_id.clone(), VisitMode::Phone, now, now)
                })
                .map(|_| ());
            ("record visit", result)
        }
    };
    result.map_err(|error| format!("{description} on {household_id} failed: {error}"))?;
    note_written(model, client)?;
    Ok(format!("{description} on {household_id}"))
}

fn server_change(rng: &mut StdRng, server: &FakeServer, step: usize) -> String {
    let ids: Vec<String> = server.state().households.keys().cloned().collect();
    match rng.random_range(0..4) {
        0 | 1 if !ids.is_empty() => {
            let id = &ids[rng.random_range(0..ids.len())];
            let mut card = server.state().households[id].clone();
            card.head_name = format!("户主{step}");
            let seq = server.state().seq + 1;
            card.field_seqs
                .insert("household.head_name".into(), seq as i64);
            server.upsert_household(card);
            format!("server renames the head of {id}")
        }
        2 if ids.len() > 1 => {
            let id = &ids[rng.random_range(0..ids.len())];
            server.remove_household(id);
            format!("server reassigns {id} away")
        }
        _ => {
            let id = format!("hh-s{step}");
            server.upsert_household(household(&id, &format!("新户{step}")));
            format!("server adds {id}")
        }
    }
}

async fn run_case(seed: u64) -> Result<(), String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let server = FakeServer::new();
    for index in 0..3 {
        server.upsert_household(household(&format!("hh-{index}"), &format!("户主{index}")));
    }
    server.state().page_size = rng.random_range(1..4);
    let dir = tempfile::TempDir::new().map_err(|error| error.to_string())?;
    let clock = FakeClock::new(START);
    let client = Arc::new(
        Client::open_with_transport(&dir.path().join("phone"), server.clone(), clock.clone())
            .map_err(|error| error.to_string())?
            .with_rng_seed(seed),
    );
    client
        .login("cadre01", "demo123")
        .await
        .map_err(|error| error.to_string())?;
    let mut model = Model::default();
    let mut log: Vec<String> = Vec::new();

    for step in 0..STEPS + 2 {
        // The last two steps are clean syncs: the system must quiesce.
        let finishing = step >= STEPS;
        let action = if finishing { 3 } else { rng.random_range(0..6) };
        match action {
            0 | 1 => log.push(local_write(&mut rng, &mut model, &client, step).await?),
            2 => log.push(server_change(&mut rng, &server, step)),
            _ => {
                let fault = (!finishing && rng.random_bool(0.6))
                    .then(|| FAULTS[rng.random_range(0..FAULTS.len())]);
                let extra = (!finishing && fault.is_some() && rng.random_bool(0.3))
                    .then(|| FAULTS[rng.random_range(0..FAULTS.len())]);
                {
                    let mut state = server.state();
                    state.faults.clear();
                    state.faults.extend(fault.into_iter().chain(extra));
                }
                // Sometimes the cadre edits a card while the sync runs (between push and
                // pull), so a pull meets pending edits and must rebase them.
                let mid_sync_edit =
                    if !finishing && rng.random_bool(0.4) && !model.replica.is_empty() {
                        let ids: Vec<&String> = model.replica.keys().collect();
                        let household_id = ids[rng.random_range(0..ids.len())].clone();
                        let value = json!(format!("137{:08}", rng.random_range(0..100_000_000u32)));
                        let hook_client = client.clone();
                        let (hook_id, hook_value) = (household_id.clone(), value.clone());
                        let outcome = Arc::new(std::sync::Mutex::new(None));
                        let hook_outcome = outcome.clone();
                        server.set_hook(Some(Arc::new(move |call| {
                            let mut done = hook_outcome.lock().unwrap();
                            if call == "pull" && done.is_none() {
                                *done = Some(
                                    hook_client
                                        .edit_household_field(
                                            &hook_id,
                                            FieldTarget::Household,
                                            "phone",
                                            hook_value.clone(),
                                        )
                                        .map_err(|error| error.to_string()),
                                );
                            }
                        })));
                        Some((household_id, value, outcome))
                    } else {
                        None
                    };
                let resets_before = server.state().resets_sent;
                let checkpoints_before = server.state().delivered_checkpoints.len();
                let result = client.sync().await;
                server.set_hook(None);
                if let Some((household_id, value, outcome)) = mid_sync_edit {
                    let outcome = outcome.lock().unwrap().take();
                    match outcome {
                        None => log.push("mid-sync edit not reached (no pull)".into()),
                        Some(Err(error)) => {
                            return Err(format!("mid-sync edit of {household_id} failed: {error}"));
                        }
                        Some(Ok(_)) => {
                            log.push(format!("mid-sync edit of {household_id} phone"));
                            note_written(&mut model, &client)?;
                            if let Some(card) = model.replica.get_mut(&household_id) {
                                apply_value(card, &FieldTarget::Household, "phone", &value)
                                    .map_err(|error| error.to_string())?;
                            }
                        }
                    }
                }
                log.push(format!(
                    "sync with {fault:?} {extra:?} -> {:?}",
                    result.as_ref().map(|_| "ok").map_err(|e| e.to_string())
                ));
                let state = server.state();
                // Clean sync: a RESET (or nothing) must still end in a checkpoint at the head.
                let clean = fault.is_none()
                    || matches!(
                        (fault, extra),
                        (Some(Fault::StaleCursor | Fault::DuplicatePages), None)
                    );
                if clean {
                    check(result.is_ok(), || {
                        format!("a clean sync failed: {result:?}")
                    })?;
                    let cursor = client.pull_cursor().map_err(|e| e.to_string())?;
                    check(cursor == Some(format!("c{}", state.seq)), || {
                        format!(
                            "a clean sync ended at {cursor:?}, server head c{} (resets {})",
                            state.seq,
                            state.resets_sent - resets_before
                        )
                    })?;
                }
                // Pulled data moves only at a checkpoint the phone read.
                if state.delivered_checkpoints.len() > checkpoints_before {
                    let (_, scope) = state
                        .delivered_checkpoints
                        .last()
                        .cloned()
                        .ok_or("no checkpoint")?;
                    drop(state);
                    // Drafts of households that left the scope are held for hand-over.
                    let handover: BTreeSet<u64> = client
                        .status()
                        .map_err(|error| error.to_string())?
                        .handover
                        .iter()
                        .map(|item| item.seq)
                        .collect();
                    for entry in client.outbox().map_err(|error| error.to_string())? {
                        let card_edit = matches!(
                            entry.kind,
                            MutationKind::EditField | MutationKind::AddMember
                        );
                        if card_edit && !scope.contains_key(&entry.subject_id) {
                            check(handover.contains(&entry.seq), || {
                                format!(
                                    "seq {} of reassigned {} is not held for hand-over",
                                    entry.seq, entry.subject_id
                                )
                            })?;
                        }
                    }
                    model.replica = rebase(scope, &client)?;
                    model.checkpoints_seen += 1;
                }
            }
        }
        if rng.random_bool(0.3) {
            // The wall clock drifts forward, and sometimes jumps back.
            if rng.random_bool(0.2) {
                clock.set(clock_now(&clock) - Duration::from_secs(rng.random_range(60..7_200)));
            } else {
                clock.advance(Duration::from_secs(rng.random_range(1..600)));
            }
        }
        invariants(&mut model, &client, &server)
            .await
            .map_err(|message| {
                format!(
                    "after step {step}: {message}\n  steps:\n    {}",
                    log.join("\n    ")
                )
            })?;
    }
    // Quiesced: every write was acknowledged or is held for hand-over; the replica equals
    // the server's scope.
    let status = client.status().map_err(|e| e.to_string())?;
    check(status.unsent_mutations == 0, || {
        format!("{} unsent after quiesce", status.unsent_mutations)
    })?;
    let replica = client_replica(&client)?;
    let scope = server.state().households.clone();
    check(replica == scope, || {
        format!(
            "replica differs from the server after quiesce\n{}",
            log.join("\n")
        )
    })?;
    Ok(())
}

fn clock_now(clock: &FakeClock) -> OffsetDateTime {
    fieldsync_client::Clock::now(clock)
}

async fn invariants(model: &mut Model, client: &Client, server: &FakeServer) -> Result<(), String> {
    let outbox = client.outbox().map_err(|e| e.to_string())?;
    let state = server.state();
    check(state.violations.is_empty(), || {
        format!("protocol violations: {:?}", state.violations)
    })?;
    // The outbox is never lost.
    let in_outbox: BTreeSet<&String> = outbox.iter().map(|entry| &entry.mutation_id).collect();
    for id in &model.written {
        check(in_outbox.contains(id) || state.acked.contains(id), || {
            format!("mutation {id} vanished unacknowledged")
        })?;
    }
    let mut applied = BTreeSet::new();
    for mutation in &state.applied {
        check(applied.insert(&mutation.mutation_id), || {
            format!("mutation {} applied twice", mutation.mutation_id)
        })?;
    }
    // HLCs follow seq order.
    check(
        outbox
            .windows(2)
            .all(|pair| pair[0].hlc < pair[1].hlc && pair[0].seq < pair[1].seq),
        || {
            format!(
                "outbox order broken: {:?}",
                outbox.iter().map(|e| (e.seq, e.hlc)).collect::<Vec<_>>()
            )
        },
    )?;
    // The cursor never regresses and names the last checkpoint read.
    let cursor = client.pull_cursor().map_err(|e| e.to_string())?;
    match (&cursor, state.delivered_checkpoints.last()) {
        (None, None) => {}
        (Some(cursor), Some((delivered, _))) => {
            check(cursor == delivered, || {
                format!("cursor {cursor} is not the last checkpoint read ({delivered})")
            })?;
            let seq = cursor_seq(cursor)?;
            check(seq >= model.cursor_seq, || {
                format!("cursor regressed from c{} to {cursor}", model.cursor_seq)
            })?;
            model.cursor_seq = seq;
        }
        (cursor, delivered) => {
            return Err(format!(
                "cursor {cursor:?} but last checkpoint {delivered:?}"
            ));
        }
    }
    drop(state);
    // Pulled data only at checkpoints: the replica is exactly the model's.
    let replica = client_replica(client)?;
    if replica != model.replica {
        let differing: BTreeSet<&String> = replica
            .keys()
            .chain(model.replica.keys())
            .filter(|id| replica.get(*id) != model.replica.get(*id))
            .collect();
        return Err(format!("replica differs from the model for {differing:?}"));
    }
    Ok(())
}
