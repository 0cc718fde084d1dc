//! Crash test (issue 3): `kill -9` the real `fieldsync-server` process at random points
//! during ingest, [`KILLS`] times, with the SQLite file kept between restarts.
//!
//! Two phones (cadre01 and cadre02, one uploader each) push batches of 1–20 visits with
//! gap-free seqs, back to back, over real gRPC. A seeded RNG picks, for every round, how many
//! pushes are acknowledged before the kill and how many microseconds later the SIGKILL lands,
//! so it hits the server anywhere: between requests, before the commit, between the commit and
//! the response. After each kill, with the server down, the test opens the SQLite file
//! read-only and checks:
//!
//! - `PRAGMA integrity_check` is ok;
//! - every acknowledged batch is present exactly once (its seqs in `applied_mutations`, its
//!   visits in `visits`, its response in `push_batches`);
//! - the batch that was in flight is all-or-nothing, and nothing never sent is visible.
//!
//! Then the server restarts on the same folder and each phone retries its unacknowledged
//! batch with the same `batch_id` and content, which must be acknowledged (its outcomes
//! APPLIED, or the cached/duplicate answer when the commit had landed before the kill).
//! At the end every batch ever created is acknowledged and the store holds each device's
//! seqs 1..=N and its visits exactly once.
//!
//! The seed fixes batch sizes, ids, kill points and delays; where exactly a kill lands still
//! depends on real timing. A failure names the seed and round; set `FIELDSYNC_CRASH_SEED` to
//! explore or replay another seed.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fieldsync_proto::v1;
use fieldsync_tests::{ServerProcess, authorized, client_info, pull_all};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rusqlite::OptionalExtension;
use tokio::sync::watch;

/// The seed of the default test run.
const DEFAULT_SEED: u64 = 0x00f1_e1d5_c0de_0003;
/// How many times the server is killed (the issue asks for 50 in CI).
const KILLS: usize = 50;
/// The phones: one device each, one uploader per device.
const PHONES: [&str; 2] = ["cadre01", "cadre02"];
/// Acknowledged pushes (over both phones) before the kill is armed: 0..=this.
const MAX_ACKS_BEFORE_KILL: usize = 6;
/// Delay between arming and the SIGKILL, in microseconds: 0..=this. One push of 1–20 visits
/// takes a few milliseconds (two fsyncs with `synchronous=FULL`), so this spans the whole of
/// the next push on either phone.
const MAX_KILL_DELAY_US: u64 = 12_000;
/// Visits per batch: 1..=this.
const MAX_VISITS_PER_BATCH: usize = 20;
/// Name of the server's SQLite file inside its data folder.
const DATABASE_FILE: &str = "fieldsync.sqlite3";

/// One batch in a phone's outbox; it keeps its id and content across retries.
#[derive(Debug, Clone)]
struct Batch {
    request: v1::PushRequest,
    visit_ids: Vec<String>,
    /// Sent at least once, so the server may have committed it.
    attempted: bool,
}

impl Batch {
    fn first_seq(&self) -> u64 {
        self.request.first_seq
    }

    fn last_seq(&self) -> u64 {
        self.request.first_seq + self.request.mutations.len() as u64 - 1
    }

    fn seqs(&self) -> std::ops::RangeInclusive<u64> {
        self.first_seq()..=self.last_seq()
    }
}

/// The phone side as the crash test models it: an outbox of batches and what was acknowledged.
#[derive(Debug)]
struct Phone {
    username: &'static str,
    device_id: String,
    token: String,
    households: Vec<String>,
    next_seq: u64,
    outbox: VecDeque<Batch>,
    acknowledged: Vec<Batch>,
}

impl Phone {
    /// Append new batches until the outbox holds at least `wanted`.
    fn top_up(&mut self, wanted: usize, rng: &mut StdRng) {
        while self.outbox.len() < wanted {
            let count = rng.random_range(1..=MAX_VISITS_PER_BATCH);
            let first_seq = self.next_seq;
            let visits: Vec<v1::Visit> = (0..count)
                .map(|_| {
                    let household = &self.households[rng.random_range(0..self.households.len())];
                    in_person_visit(random_uuid(rng), household)
                })
                .collect();
            let visit_ids = visits.iter().map(|visit| visit.visit_id.clone()).collect();
            let mutations = visits
                .into_iter()
                .enumerate()
                .map(|(index, visit)| v1::Mutation {
                    seq: first_seq + index as u64,
                    mutation_id: random_uuid(rng),
                    hlc: 1,
                    payload: Some(v1::mutation::Payload::SubmitVisit(visit)),
                })
                .collect();
            self.next_seq += count as u64;
            self.outbox.push_back(Batch {
                request: v1::PushRequest {
                    device_id: self.device_id.clone(),
                    batch_id: random_uuid(rng),
                    first_seq,
                    mutations,
                    client: Some(client_info()),
                    ..Default::default()
                },
                visit_ids,
                attempted: false,
            });
        }
    }

    fn last_acknowledged_seq(&self) -> u64 {
        self.acknowledged.last().map_or(0, Batch::last_seq)
    }
}

fn random_uuid(rng: &mut StdRng) -> String {
    uuid::Builder::from_random_bytes(rng.random())
        .into_uuid()
        .to_string()
}

fn in_person_visit(visit_id: String, household_id: &str) -> v1::Visit {
    let now = time::OffsetDateTime::now_utc();
    let wire_now = fieldsync_proto::convert::instant_to_wire(now);
    v1::Visit {
        visit_id,
        revision: 1,
        household_id: household_id.into(),
        mode: v1::VisitMode::InPerson as i32,
        r#type: v1::VisitType::Routine as i32,
        checkin_at: Some(fieldsync_proto::convert::instant_to_wire(
            now - time::Duration::minutes(45),
        )),
        checkout_at: Some(wire_now),
        observed_situation: "户主在家，秋粮已收，家中老人身体尚可。".into(),
        gps: Some(v1::GpsFix {
            lat: 26.4,
            lon: 107.4,
            crs: v1::Crs::Wgs84 as i32,
            accuracy_m: 10.0,
            ..Default::default()
        }),
        recorded_at_device: Some(wire_now),
        ..Default::default()
    }
}

/// Progress of one round's uploaders: acknowledged pushes and finished uploaders.
#[derive(Debug, Default, Clone, Copy)]
struct Progress {
    acknowledged: usize,
    finished: usize,
}

/// What one uploader did until its first failure (or until its outbox ran dry).
#[derive(Debug)]
struct UploadRun {
    acknowledged: Vec<(Batch, v1::PushResponse)>,
    outbox: VecDeque<Batch>,
    failure: Option<(tonic::Status, Instant)>,
}

/// A phone's single uploader: push the outbox front to back, each batch once, and stop at the
/// first failure (the server was killed; the batch stays in the outbox for the retry).
async fn upload(
    channel: tonic::transport::Channel,
    token: String,
    mut outbox: VecDeque<Batch>,
    progress: Arc<watch::Sender<Progress>>,
) -> UploadRun {
    let mut sync = v1::sync_client::SyncClient::new(channel);
    let mut acknowledged = Vec::new();
    let mut failure = None;
    while let Some(batch) = outbox.front_mut() {
        batch.attempted = true;
        match sync.push(authorized(batch.request.clone(), &token)).await {
            Ok(response) => {
                let batch = outbox.pop_front().expect("front batch");
                acknowledged.push((batch, response.into_inner()));
                progress.send_modify(|progress| progress.acknowledged += 1);
            }
            Err(status) => {
                failure = Some((status, Instant::now()));
                break;
            }
        }
    }
    progress.send_modify(|progress| progress.finished += 1);
    UploadRun {
        acknowledged,
        outbox,
        failure,
    }
}

/// Counters printed at the end (run with `--nocapture` to see them).
#[derive(Debug, Default)]
struct Stats {
    acknowledged_pushes: usize,
    /// Pushes cut off by the kill (sent on a connection that died).
    cut_off: usize,
    /// ... of which the server had committed before it died (only the response was lost).
    committed_but_unacknowledged: usize,
    /// Pushes refused because the server was already gone (never delivered).
    refused: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_ingest_loses_no_acknowledged_batch_and_shows_no_partial_one() {
    let seed = std::env::var("FIELDSYNC_CRASH_SEED")
        .ok()
        .map(|text| {
            let text = text.trim();
            match text.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => text.parse(),
            }
            .expect("FIELDSYNC_CRASH_SEED is a u64 (decimal or 0x-hex)")
        })
        .unwrap_or(DEFAULT_SEED);
    eprintln!("crash test: seed {seed:#x} (replay with FIELDSYNC_CRASH_SEED={seed:#x})");
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(seed);
    // The data folder sits inside a temporary root, so the key folder the server keeps
    // beside it (`<data>-keys`) is removed with the root.
    let root = tempfile::tempdir().expect("temp dir");
    let data_dir = root.path().join("data");
    let database = data_dir.join(DATABASE_FILE);

    // First start seeds the demo county; later starts reuse the folder without --demo.
    let mut server = ServerProcess::start(&data_dir, true).await;
    let mut phones = Vec::new();
    for username in PHONES {
        let device_id = random_uuid(&mut rng);
        let token = server.login(username, &device_id).await;
        let (channel, pull_token) = (server.channel().await, token.clone());
        // In a task, so a failed pull can be reported with the server's log.
        let pull = tokio::spawn(async move { pull_all(channel, &pull_token).await }).await;
        let (households, _, _) = pull.unwrap_or_else(|error| {
            panic!(
                "seed {seed:#x}, setup: {username} pull failed: {error}\nserver output:\n{}",
                server.recent_output()
            )
        });
        assert!(!households.is_empty(), "{username} has paired households");
        phones.push(Phone {
            username,
            device_id,
            token,
            households: households
                .into_iter()
                .map(|household| household.household_id)
                .collect(),
            next_seq: 1,
            outbox: VecDeque::new(),
            acknowledged: Vec::new(),
        });
    }

    let mut stats = Stats::default();
    for round in 1..=KILLS {
        let at = format!("seed {seed:#x}, round {round}/{KILLS}");
        let kill_after = rng.random_range(0..=MAX_ACKS_BEFORE_KILL);
        let kill_delay = Duration::from_micros(rng.random_range(0..=MAX_KILL_DELAY_US));
        // Captured by the test harness and shown only on failure, with the seed line above.
        eprintln!("{at}: kill after {kill_after} acknowledged pushes + {kill_delay:?}");
        // Enough queued work that neither uploader runs dry before the kill lands.
        for phone in &mut phones {
            phone.top_up(kill_after + 6, &mut rng);
        }

        let (progress_sender, mut progress) = watch::channel(Progress::default());
        let progress_sender = Arc::new(progress_sender);
        let mut uploaders = Vec::new();
        for phone in &mut phones {
            uploaders.push(tokio::spawn(upload(
                server.channel().await,
                phone.token.clone(),
                std::mem::take(&mut phone.outbox),
                progress_sender.clone(),
            )));
        }
        progress
            .wait_for(|progress| {
                progress.acknowledged >= kill_after || progress.finished == PHONES.len()
            })
            .await
            .expect("uploaders report progress");
        // Sleeping here injects the fault at a random point; it waits for nothing.
        let (killed_at, server_output) = tokio::task::spawn_blocking(move || {
            std::thread::sleep(kill_delay);
            let killed_at = Instant::now();
            (killed_at, server.kill())
        })
        .await
        .expect("kill task");

        let mut refused = Vec::new();
        for (phone, uploader) in phones.iter_mut().zip(uploaders) {
            let run = uploader.await.expect("uploader task");
            // A failed connect means this attempt never reached the server.
            refused.push(run.failure.as_ref().is_some_and(|(status, _)| {
                status.code() == tonic::Code::Unavailable && status.message().contains("connect")
            }));
            if let Some((status, failed_at)) = &run.failure {
                assert!(
                    *failed_at >= killed_at,
                    "{at}: {} push failed before the kill: {status:?}\nserver output:\n{server_output}",
                    phone.username
                );
            }
            for (batch, response) in run.acknowledged {
                check_first_response(&at, phone, &batch, &response);
                stats.acknowledged_pushes += 1;
                phone.acknowledged.push(batch);
            }
            phone.outbox = run.outbox;
        }

        // The server is down: what is on disk now is what survived the crash.
        let committed = check_store_after_crash(&at, &database, &phones);
        for ((phone, committed), refused) in phones.iter().zip(&committed).zip(&refused) {
            match (committed, refused) {
                (Some(true), true) => panic!(
                    "{at}: {} batch refused at connect time yet stored",
                    phone.username
                ),
                (Some(true), false) => {
                    stats.cut_off += 1;
                    stats.committed_but_unacknowledged += 1;
                }
                (Some(false), false) => stats.cut_off += 1,
                (Some(false), true) => stats.refused += 1,
                (None, _) => {}
            }
        }

        server = ServerProcess::start(&data_dir, false).await;
        for (index, (phone, committed)) in phones.iter_mut().zip(committed).enumerate() {
            // One phone logs in again; the other keeps its token, which must have survived.
            if index == 0 {
                phone.token = server.login(phone.username, &phone.device_id).await;
            }
            if let Some(committed) = committed {
                retry_in_flight_batch(&at, &server, phone, committed).await;
            }
        }
    }

    // Quiesce: the phones send everything still queued, then the store is checked once more.
    let at = format!("seed {seed:#x}, after the last round");
    for phone in &mut phones {
        let run = upload(
            server.channel().await,
            phone.token.clone(),
            std::mem::take(&mut phone.outbox),
            Arc::new(watch::channel(Progress::default()).0),
        )
        .await;
        if let Some((status, _)) = run.failure {
            panic!(
                "{at}: {} could not drain its outbox: {status:?}",
                phone.username
            );
        }
        for (batch, response) in run.acknowledged {
            check_first_response(&at, phone, &batch, &response);
            phone.acknowledged.push(batch);
        }
    }
    let server_output = server.kill();
    let committed = check_store_after_crash(&at, &database, &phones);
    assert!(
        committed.iter().all(Option::is_none),
        "{at}: nothing in flight at the end\n{server_output}"
    );
    for phone in &phones {
        assert!(
            phone.outbox.is_empty(),
            "{at}: {} retries complete",
            phone.username
        );
        assert_eq!(
            phone.last_acknowledged_seq(),
            phone.next_seq - 1,
            "{at}: every seq of {} acknowledged",
            phone.username
        );
    }
    eprintln!(
        "crash test: {KILLS} kills in {:.1?}; {} pushes acknowledged between kills; {} cut off \
         by a kill ({} of them committed, only the response lost), {} refused by a dead server; \
         {} visits stored",
        started.elapsed(),
        stats.acknowledged_pushes,
        stats.cut_off,
        stats.committed_but_unacknowledged,
        stats.refused,
        phones.iter().map(|phone| phone.next_seq - 1).sum::<u64>()
    );
}

/// A first (never retried) push is answered APPLIED for every visit, in order.
fn check_first_response(at: &str, phone: &Phone, batch: &Batch, response: &v1::PushResponse) {
    let outcomes: Vec<(u64, i32)> = response
        .results
        .iter()
        .map(|result| (result.seq, result.outcome))
        .collect();
    let expected: Vec<(u64, i32)> = batch
        .seqs()
        .map(|seq| (seq, v1::MutationOutcome::Applied as i32))
        .collect();
    assert_eq!(
        outcomes, expected,
        "{at}: {} batch {} applied whole: {response:?}",
        phone.username, batch.request.batch_id
    );
    assert_eq!(
        response.last_processed_seq,
        batch.last_seq(),
        "{at}: {} last_processed_seq after batch {}",
        phone.username,
        batch.request.batch_id
    );
}

/// After a restart, re-send the batch that was in flight at the kill with the same id and
/// content, as a phone does after an unknown outcome. It must be acknowledged now.
async fn retry_in_flight_batch(
    at: &str,
    server: &ServerProcess,
    phone: &mut Phone,
    committed: bool,
) {
    let batch = phone
        .outbox
        .pop_front()
        .expect("in-flight batch at the outbox front");
    let mut sync = v1::sync_client::SyncClient::new(server.channel().await);
    let response = sync
        .push(authorized(batch.request.clone(), &phone.token))
        .await
        .unwrap_or_else(|status| {
            panic!(
                "{at}: {} retry of batch {} after restart failed: {status:?}\nserver output:\n{}",
                phone.username,
                batch.request.batch_id,
                server.recent_output()
            )
        })
        .into_inner();
    for (result, seq) in response.results.iter().zip(batch.seqs()) {
        assert_eq!(result.seq, seq, "{at}: retry results in seq order");
        let outcome = v1::MutationOutcome::try_from(result.outcome);
        let acceptable = if committed {
            // The cached response (APPLIED) or a fresh dedupe (DUPLICATE): stored once either way.
            matches!(
                outcome,
                Ok(v1::MutationOutcome::Applied | v1::MutationOutcome::Duplicate)
            )
        } else {
            outcome == Ok(v1::MutationOutcome::Applied)
        };
        assert!(
            acceptable,
            "{at}: {} retry of batch {} (committed before the kill: {committed}) answered \
             {outcome:?} for seq {seq}: {response:?}",
            phone.username, batch.request.batch_id
        );
    }
    assert_eq!(
        response.results.len(),
        batch.request.mutations.len(),
        "{at}: one result per mutation on retry"
    );
    assert_eq!(
        response.last_processed_seq,
        batch.last_seq(),
        "{at}: {} last_processed_seq after the retry",
        phone.username
    );
    phone.acknowledged.push(batch);
}

/// Check the store on disk with the server down. Returns, per phone, whether the batch in
/// flight at the kill was committed (`None` when no batch was in flight).
fn check_store_after_crash(at: &str, database: &Path, phones: &[Phone]) -> Vec<Option<bool>> {
    // Read-only: the test looks at what survived and never writes the server's file.
    let connection = rusqlite::Connection::open_with_flags(
        database,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .unwrap_or_else(|error| panic!("{at}: open {} read-only: {error}", database.display()));
    let integrity: Vec<String> = connection
        .prepare("PRAGMA integrity_check")
        .and_then(|mut statement| {
            statement
                .query_map([], |row| row.get(0))?
                .collect::<Result<_, _>>()
        })
        .unwrap_or_else(|error| panic!("{at}: integrity_check: {error}"));
    assert_eq!(integrity, ["ok"], "{at}: PRAGMA integrity_check");

    phones
        .iter()
        .map(|phone| check_phone_after_crash(at, &connection, phone))
        .collect()
}

fn check_phone_after_crash(
    at: &str,
    connection: &rusqlite::Connection,
    phone: &Phone,
) -> Option<bool> {
    let who = format!("{at}: {} (device {})", phone.username, phone.device_id);
    let applied: BTreeMap<u64, (String, String)> = query_rows(
        &who,
        connection,
        "SELECT seq, batch_id, outcome FROM applied_mutations WHERE device_id = ?1",
        &phone.device_id,
        |row| Ok((row.get::<_, i64>(0)? as u64, (row.get(1)?, row.get(2)?))),
    )
    .into_iter()
    .collect();
    let visit_rows: Vec<(String, u32)> = query_rows(
        &who,
        connection,
        "SELECT visit_id, revision FROM visits WHERE device_id = ?1",
        &phone.device_id,
        |row| Ok((row.get(0)?, row.get(1)?)),
    );
    let stored_visits: HashSet<&str> = visit_rows.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        stored_visits.len(),
        visit_rows.len(),
        "{who}: no visit is stored twice: {visit_rows:?}"
    );
    let cached_batches: HashSet<String> = query_rows(
        &who,
        connection,
        "SELECT batch_id FROM push_batches WHERE device_id = ?1",
        &phone.device_id,
        |row| row.get(0),
    )
    .into_iter()
    .collect();

    // How much of a batch is on disk: (seqs, visits, response cached).
    let presence = |batch: &Batch| {
        let seqs = batch
            .seqs()
            .filter(|seq| {
                applied.get(seq).is_some_and(|(batch_id, outcome)| {
                    batch_id == &batch.request.batch_id && outcome == "applied"
                })
            })
            .count();
        let visits = batch
            .visit_ids
            .iter()
            .filter(|id| stored_visits.contains(id.as_str()))
            .count();
        (
            seqs,
            visits,
            cached_batches.contains(&batch.request.batch_id),
        )
    };

    let mut expected_seqs = 0usize;
    let mut expected_visits = 0usize;
    for batch in &phone.acknowledged {
        let whole = (batch.request.mutations.len(), batch.visit_ids.len(), true);
        assert_eq!(
            presence(batch),
            whole,
            "{who}: acknowledged batch {} (seqs {:?}) is stored whole",
            batch.request.batch_id,
            batch.seqs()
        );
        expected_seqs += whole.0;
        expected_visits += whole.1;
    }
    let mut in_flight = None;
    for batch in &phone.outbox {
        let found = presence(batch);
        let whole = (batch.request.mutations.len(), batch.visit_ids.len(), true);
        let committed = if found == whole {
            true
        } else if found == (0, 0, false) {
            false
        } else {
            panic!(
                "{who}: unacknowledged batch {} (seqs {:?}) is partly visible: {found:?} of \
                 {whole:?} (seqs, visits, cached response)",
                batch.request.batch_id,
                batch.seqs()
            );
        };
        if batch.attempted {
            assert!(
                in_flight.is_none(),
                "{who}: one uploader has at most one batch in flight"
            );
            in_flight = Some(committed);
            if committed {
                expected_seqs += whole.0;
                expected_visits += whole.1;
            }
        } else {
            assert!(
                !committed,
                "{who}: batch {} was never sent but is stored",
                batch.request.batch_id
            );
        }
    }

    assert_eq!(
        applied.len(),
        expected_seqs,
        "{who}: applied_mutations holds exactly the acknowledged (and committed in-flight) seqs"
    );
    assert!(
        applied.keys().copied().eq(1..=expected_seqs as u64),
        "{who}: processed seqs are gap-free from 1: {:?}",
        applied.keys().collect::<Vec<_>>()
    );
    assert_eq!(
        visit_rows.len(),
        expected_visits,
        "{who}: visits holds exactly the acknowledged (and committed in-flight) visits"
    );
    let last_processed_seq: Option<i64> = connection
        .query_row(
            "SELECT last_processed_seq FROM devices WHERE device_id = ?1",
            [&phone.device_id],
            |row| row.get(0),
        )
        .optional()
        .unwrap_or_else(|error| panic!("{who}: read devices: {error}"));
    assert_eq!(
        last_processed_seq.unwrap_or(0),
        expected_seqs as i64,
        "{who}: devices.last_processed_seq matches the stored seqs"
    );
    in_flight
}

fn query_rows<T>(
    at: &str,
    connection: &rusqlite::Connection,
    sql: &str,
    device_id: &str,
    map: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Vec<T> {
    connection
        .prepare(sql)
        .and_then(|mut statement| {
            statement
                .query_map([device_id], map)?
                .collect::<Result<_, _>>()
        })
        .unwrap_or_else(|error| panic!("{at}: {sql}: {error}"))
}
