//! Two replicas on one PostgreSQL database (issue 15 §2): two stores, each with its own
//! connection pool, as two server instances have. Devices push at once through either
//! replica, some batches through both at the same moment (a phone retrying on another
//! replica while the first is still applying), while a third party pulls incrementally.
//! The property is the deterministic simulation's: both replicas converge, and no
//! acknowledged mutation is lost or applied twice. Skipped (with a line saying so) where
//! `FIELDSYNC_TEST_DATABASE_URL` is unset.

use super::PreparedOnce;
use std::collections::BTreeSet;

use fieldsync_model::codes::VisitMode;
use fieldsync_model::sync::{MutationOutcome, MutationPayload};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use time::Duration;

use super::testing::{fresh_schema, test_server_url};
use super::{PoolSettings, PostgresStore};
use crate::store::conformance::{self, apply, batch, principal, visit};
use crate::store::sealed::PiiCipher;
use crate::store::{PushBatch, PushResult, ScopeCursor};

const DEVICES_PER_CADRE: usize = 3;
const BATCHES_PER_DEVICE: usize = 8;
const VISITS_PER_BATCH: usize = 3;

async fn replica(config: &tokio_postgres::Config) -> PostgresStore {
    PostgresStore::connect_with_config(
        config.clone(),
        PiiCipher::for_tests(),
        PoolSettings::default(),
    )
    .await
    .expect("connect a replica")
}

/// Every visit id and revision a pull from `cursor` delivers, following pages to the end.
async fn drain(
    store: &PostgresStore,
    reader: &crate::store::Principal,
    cursor: &mut ScopeCursor,
    seen: &mut BTreeSet<(String, u32)>,
) {
    loop {
        let page = store
            .pull_changes(reader, cursor, 50)
            .await
            .expect("pull a page");
        for status in &page.visit_statuses {
            seen.insert((status.visit_id.clone(), status.revision));
        }
        *cursor = page.next_cursor;
        if !page.has_more {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_pushing_at_once_lose_nothing_and_apply_nothing_twice() {
    let Some(server_url) =
        test_server_url("two_replicas_pushing_at_once_lose_nothing_and_apply_nothing_twice")
    else {
        return;
    };
    let (config, _schema) = fresh_schema(&server_url).await;
    let replica_a = replica(&config).await;
    let replica_b = replica(&config).await;
    let fixture = conformance::fixture();
    replica_a
        .load_seed(fixture.seed.clone())
        .await
        .expect("seed through replica A");

    // Every device's batches, planned up front with a fixed seed: which replica each goes
    // to, and whether it is also sent to the other one at the same moment.
    let mut random = StdRng::seed_from_u64(15);
    let mut plans: Vec<Vec<(PushBatch, bool, bool)>> = Vec::new();
    let cadres = [
        (
            &fixture.cadre_a,
            vec![fixture.wang.clone(), fixture.zhao.clone()],
        ),
        (&fixture.cadre_b, vec![fixture.li.clone()]),
    ];
    let mut all_visits = BTreeSet::new();
    for (cadre, households) in &cadres {
        for device in 0..DEVICES_PER_CADRE {
            let device_id = format!("{}-phone-{device}", cadre.user_id);
            let mut seq = 0;
            let mut batches = Vec::new();
            for batch_index in 0..BATCHES_PER_DEVICE {
                let mut entries = Vec::new();
                for visit_index in 0..VISITS_PER_BATCH {
                    seq += 1;
                    let household = &households[(batch_index + visit_index) % households.len()];
                    let checkin = conformance::VISIT_TIME
                        + Duration::minutes((seq * 50) as i64)
                        + Duration::days(device as i64);
                    let visit = visit(household, VisitMode::InPerson, checkin);
                    all_visits.insert((visit.visit_id.clone(), visit.revision));
                    entries.push(apply(seq, MutationPayload::SubmitVisit(visit)));
                }
                // An income registration rewrites the household card: register traffic on
                // the households all devices share.
                seq += 1;
                let quarter = 1 + (batch_index % 4) as u32;
                entries.push(apply(
                    seq,
                    MutationPayload::RegisterIncome(conformance::income(
                        &households[batch_index % households.len()],
                        2026,
                        quarter,
                    )),
                ));
                batches.push((
                    batch(cadre, &device_id, entries),
                    random.random_bool(0.5),
                    random.random_bool(0.3),
                ));
            }
            plans.push(batches);
        }
    }

    // The supervisor of township 1 pulls incrementally from replica B the whole time.
    let reader = principal(&fixture.supervisor_one, "console");
    let pushing_done = std::sync::Arc::new(tokio::sync::Notify::new());
    let puller = {
        let replica_b = replica_b.clone();
        let reader = reader.clone();
        let pushing_done = std::sync::Arc::clone(&pushing_done);
        tokio::spawn(async move {
            let mut cursor = ScopeCursor::default();
            let mut seen = BTreeSet::new();
            let finished = pushing_done.notified();
            tokio::pin!(finished);
            loop {
                drain(&replica_b, &reader, &mut cursor, &mut seen).await;
                tokio::select! {
                    () = &mut finished => break,
                    () = tokio::task::yield_now() => {}
                }
            }
            // What committed before the pushes ended, read after they did.
            drain(&replica_b, &reader, &mut cursor, &mut seen).await;
            seen
        })
    };

    let mut devices = Vec::new();
    for batches in plans.clone() {
        let (replica_a, replica_b) = (replica_a.clone(), replica_b.clone());
        devices.push(tokio::spawn(async move {
            let mut results: Vec<PushResult> = Vec::new();
            for (batch, to_a, also_other) in batches {
                let (first, second) = if to_a {
                    (&replica_a, &replica_b)
                } else {
                    (&replica_b, &replica_a)
                };
                let result = if also_other {
                    let (one, two) =
                        tokio::join!(first.apply_push(batch.clone()), second.apply_push(batch));
                    let (one, two) = (one.expect("push"), two.expect("push again"));
                    // The same answer from both: the second waited and read the cache.
                    assert_eq!(one, two, "one batch, two replicas, two different answers");
                    one
                } else {
                    first.apply_push(batch).await.expect("push")
                };
                results.push(result);
            }
            results
        }));
    }
    let mut acknowledged = Vec::new();
    for device in devices {
        acknowledged.push(device.await.expect("a device task"));
    }
    pushing_done.notify_one();
    let pulled_incrementally = puller.await.expect("the puller task");

    // Every acknowledged entry was applied exactly once.
    for results in &acknowledged {
        for result in results {
            for (seq, outcome) in &result.outcomes {
                assert_eq!(
                    outcome,
                    &MutationOutcome::Applied,
                    "entry {seq}: {result:?}"
                );
            }
        }
    }
    let connection = replica_a.connection().await.expect("connection");
    let count = |sql: &'static str| {
        let connection = &connection;
        async move {
            connection
                .query_one_cached(sql, &[])
                .await
                .expect("count")
                .get::<_, i64>(0)
        }
    };
    let devices = (cadres.len() * DEVICES_PER_CADRE) as i64;
    let batches = devices * BATCHES_PER_DEVICE as i64;
    assert_eq!(
        count("SELECT COUNT(*) FROM visits").await,
        batches * VISITS_PER_BATCH as i64
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM income_registrations").await,
        batches
    );
    assert_eq!(count("SELECT COUNT(*) FROM push_batches").await, batches);
    assert_eq!(
        count("SELECT COUNT(*) FROM applied_mutations").await,
        batches * (VISITS_PER_BATCH as i64 + 1)
    );

    // The incremental puller missed nothing (no cursor passed an entry committed later),
    // and both replicas answer a full pull alike.
    assert_eq!(pulled_incrementally, all_visits);
    let full_pull = |store: PostgresStore| {
        let reader = reader.clone();
        async move {
            let mut seen = BTreeSet::new();
            drain(&store, &reader, &mut ScopeCursor::default(), &mut seen).await;
            seen
        }
    };
    assert_eq!(full_pull(replica_a.clone()).await, all_visits);
    assert_eq!(full_pull(replica_b.clone()).await, all_visits);

    // Replaying every batch, on the other replica this time, answers from the cache.
    for (plan, results) in plans.into_iter().zip(&acknowledged) {
        for ((batch, to_a, _), result) in plan.into_iter().zip(results) {
            let other = if to_a { &replica_b } else { &replica_a };
            assert_eq!(&other.apply_push(batch).await.expect("replay"), result);
        }
    }
    assert_eq!(
        count("SELECT COUNT(*) FROM visits").await,
        batches * VISITS_PER_BATCH as i64
    );
}

/// Two supervisors approve the same visit on two replicas at the same moment: one decision
/// is stored, the other is told it is stale, and the cadre's pull on either replica shows
/// the one decision.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_supervisors_deciding_on_two_replicas_get_one_decision() {
    use fieldsync_model::codes::ReviewState;
    use fieldsync_model::review::{Decision, DecisionRequest};

    use crate::store::{QueueFilter, StoreError, StoredDecision};

    let Some(server_url) =
        test_server_url("two_supervisors_deciding_on_two_replicas_get_one_decision")
    else {
        return;
    };
    let (config, _schema) = fresh_schema(&server_url).await;
    let replica_a = replica(&config).await;
    let replica_b = replica(&config).await;
    let fixture = conformance::fixture();
    replica_a
        .load_seed(fixture.seed.clone())
        .await
        .expect("seed");
    let submitted = visit(&fixture.wang, VisitMode::InPerson, conformance::VISIT_TIME);
    replica_b
        .apply_push(batch(
            &fixture.cadre_a,
            "phone-a",
            vec![apply(1, MutationPayload::SubmitVisit(submitted.clone()))],
        ))
        .await
        .expect("push");

    // Both replicas list it in the township's queue and show the same detail.
    for replica in [&replica_a, &replica_b] {
        let queue = replica
            .review_queue(conformance::TOWNSHIP_ONE, QueueFilter::default())
            .await
            .expect("queue");
        assert_eq!(
            queue.iter().map(|item| &item.visit_id).collect::<Vec<_>>(),
            vec![&submitted.visit_id]
        );
        assert!(
            replica
                .review_queue(conformance::TOWNSHIP_TWO, QueueFilter::default())
                .await
                .expect("queue")
                .is_empty(),
            "another township's queue must not list it"
        );
    }
    let detail = replica_a
        .visit_detail(&submitted.visit_id)
        .await
        .expect("detail")
        .expect("the visit exists");
    assert_eq!(detail.visit, submitted);
    assert_eq!(detail.household.household_id, fixture.wang.household_id);
    assert_eq!(detail.state, ReviewState::Submitted);

    let decision = |reviewer: &str, verdict: Decision| StoredDecision {
        request: DecisionRequest {
            visit_id: submitted.visit_id.clone(),
            revision: 1,
            content_hash: detail.content_hash.clone(),
            decision: verdict,
            reasons: Vec::new(),
            note: "核实无误".into(),
            deadline: String::new(),
        },
        reviewer_user_id: reviewer.to_owned(),
        decided_at: conformance::VISIT_TIME + Duration::days(1),
    };
    let (one, two) = tokio::join!(
        replica_a.decide(decision(&fixture.supervisor_one.user_id, Decision::Approve)),
        replica_b.decide(decision(&fixture.admin.user_id, Decision::Approve)),
    );
    let outcomes = [one, two];
    assert_eq!(
        outcomes
            .iter()
            .filter(|outcome| matches!(outcome, Ok(ReviewState::Approved)))
            .count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes
            .iter()
            .filter(|outcome| matches!(outcome, Err(StoreError::StaleDecision(_))))
            .count(),
        1,
        "{outcomes:?}"
    );

    let cadre = principal(&fixture.cadre_a, "phone-a");
    for replica in [&replica_a, &replica_b] {
        let page = replica
            .pull_changes(&cadre, &ScopeCursor::default(), 100)
            .await
            .expect("pull");
        let status = page
            .visit_statuses
            .iter()
            .find(|status| status.visit_id == submitted.visit_id)
            .expect("the cadre's pull carries the decision");
        assert_eq!(status.state, ReviewState::Approved);
        assert!(
            replica
                .review_queue(conformance::TOWNSHIP_ONE, QueueFilter::default())
                .await
                .expect("queue")
                .is_empty(),
            "a decided visit leaves the queue"
        );
    }
}

/// Many apply requests for one ready import job, on two replicas at once (a double click,
/// or a retry through the load balancer while the first is still being claimed): exactly one
/// gets the plan; every other finds the job no longer ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn applies_of_one_import_job_claimed_at_once_on_two_replicas_hand_out_one_plan() {
    use crate::store::jobs::{ImportJobRecord, JobsStore};
    let Some(server_url) = test_server_url(
        "applies_of_one_import_job_claimed_at_once_on_two_replicas_hand_out_one_plan",
    ) else {
        return;
    };
    let (config, _schema) = fresh_schema(&server_url).await;
    let replica_a = replica(&config).await;
    let replica_b = replica(&config).await;
    let ready = ImportJobRecord {
        job_id: "job-1".to_owned(),
        kind: "roster".to_owned(),
        county_id: "county-1".to_owned(),
        runner: "dry-run".to_owned(),
        phase: "ready".to_owned(),
        created_at: conformance::VISIT_TIME,
        heartbeat_at: conformance::VISIT_TIME,
        view_json: "{}".to_owned(),
        plan_json: Some(r#"{"new_households":[]}"#.to_owned()),
    };
    replica_a
        .save_import_job(&ready)
        .await
        .expect("a ready job");
    let claims: Vec<_> = (0..16)
        .map(|attempt| {
            let replica = if attempt % 2 == 0 {
                replica_a.clone()
            } else {
                replica_b.clone()
            };
            tokio::spawn(async move {
                replica
                    .claim_import_apply(
                        "roster",
                        "county-1",
                        "job-1",
                        &format!("runner-{attempt}"),
                        conformance::VISIT_TIME,
                    )
                    .await
                    .expect("claim")
            })
        })
        .collect();
    let mut winners = Vec::new();
    for claim in claims {
        if let Some(claimed) = claim.await.expect("claim task") {
            winners.push(claimed);
        }
    }
    assert_eq!(winners.len(), 1, "one apply gets the plan: {winners:?}");
    assert_eq!(winners[0].plan_json, ready.plan_json);
    let stored = replica_b
        .import_job("roster", "county-1", "job-1")
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(
        stored.runner, winners[0].runner,
        "the winner runs the apply"
    );
    assert_eq!(stored.plan_json, None);
}
