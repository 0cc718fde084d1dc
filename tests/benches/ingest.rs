//! Durable visit ingest (issue 11 §2 and §5): visits per second through the production
//! push path, `Sync.Push` over real gRPC (a real socket) → `sync::push` →
//! `Store::apply_push_with_flags` (`apply_push_in` and the evidence flags in the same write
//! transaction), against a real SQLite file on disk in WAL mode with `synchronous=FULL`, at
//! batch 1/10/100 × 1/8 devices.
//!
//! The anchor in the same run: raw rusqlite inserting the same rows (the same visit JSON
//! bodies) into a table of the same shape, with the same durability (WAL,
//! `synchronous=FULL`, one transaction per batch; for 8 devices, 8 threads each with its own
//! connection to one file). The ratio is fieldsync ÷ anchor; the goal (≥ 0.5× at batch 100)
//! is judged against it.
//!
//! A second anchor, for reading the gap: raw rusqlite writing the rows a push itself writes
//! (visit row, change-log entry and scope sequence, applied mutation, flags; device and
//! push record per batch) into fieldsync's own migrated schema with all its indexes. What
//! separates fieldsync from it is the push's logic; what separates it from the bare table is
//! the schema.
//!
//! The visits are realistic: each device is a demo cadre pushing in-person visits to their
//! own paired households, with a GCJ-02 fix (as Chinese phones report) within 150 m of the
//! household and check-ins spread through working days, so the evidence rules (distance,
//! travel between consecutive visits, per-day count, duration) do their real work.
//!
//! Run: `cargo bench -p fieldsync-tests --bench ingest` (prints a markdown table; see
//! BENCHMARKS.md). The data files live in the system temp folder (`TMPDIR`), which must be
//! a real disk, not tmpfs: durability is the point.
//!
//! PostgreSQL mode (issue 15 §5): with `INGEST_POSTGRES_URL` set to a PostgreSQL server URL
//! (e.g. `postgres://postgres@127.0.0.1:5432/test`), each configuration's server keeps its
//! store in a new database of its own on that server (`TestServer::start_on_postgres`), so
//! the pushes run `Store::apply_push_with_flags` → `postgres/push.rs` `apply_push_in` and
//! `postgres/evidence.rs`. The anchor is then the real `psql` binary running
//! `\copy … FROM 'file'` of the same rows (the same visit JSON bodies, written to CSV files
//! before the clock starts) into a table of the shape of the PostgreSQL `visits` table
//! (primary key `(visit_id, revision)` only) in another new database on the same server:
//! one `\copy` (one `psql` process, one connection, one transaction) per batch, the devices'
//! batches in parallel, one thread per device. A second reference line in the same run is a
//! single bulk `\copy` of every row of the configuration. The server's own durability
//! settings (`fsync`, `synchronous_commit`) apply to both sides alike.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fieldsync_model::CodeList;
use fieldsync_model::codes::{Crs, VisitMode, VisitType};
use fieldsync_model::geo;
use fieldsync_model::household::GeoPoint;
use fieldsync_model::visit::{GpsFix, Visit, WellbeingCheck};
use fieldsync_proto::v1;
use fieldsync_tests::{TestServer, authorized, client_info, pull_all};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use time::OffsetDateTime;
use time::macros::datetime;

/// Visits each device sends per configuration, by batch size: enough pushes for a steady
/// rate, few enough for a short run at batch 1.
fn visits_per_device(batch: usize) -> usize {
    // `INGEST_VISITS=N` overrides the count, for a profile dominated by the pushes.
    if let Some(count) = std::env::var("INGEST_VISITS")
        .ok()
        .and_then(|count| count.parse().ok())
    {
        return count;
    }
    match batch {
        1 => 150,
        10 => 400,
        _ => 1_000,
    }
}

const BATCHES: [usize; 3] = [1, 10, 100];
const DEVICES: [usize; 2] = [1, 8];

/// Check-ins start here (a Monday in Beijing) and move on through working days.
const FIRST_CHECKIN: OffsetDateTime = datetime!(2026-09-07 08:30 +08:00);

fn main() {
    fieldsync_tests::bench_main("ingest", run);
}

/// One device's phone: a logged-in cadre and the visits it will push, already on the wire.
struct Phone {
    token: String,
    device_id: String,
    visits: Vec<Visit>,
}

/// The cadre's visits: one household after another (theirs), in person, a fix near the
/// house, 35–70 minutes each, 20–60 minutes between, 8:30 to 17:30 on working days.
fn plan_visits(seed: u64, households: &[(String, GeoPoint)], count: usize) -> Vec<Visit> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut checkin = FIRST_CHECKIN;
    let mut visits = Vec::with_capacity(count);
    for index in 0..count {
        let (household_id, home) = &households[index % households.len()];
        let minutes = rng.random_range(35..70);
        let checkout = checkin + time::Duration::minutes(minutes);
        let home = geo::to_wgs84(home);
        let near = GeoPoint {
            lat: home.lat + rng.random_range(-0.001..0.001),
            lon: home.lon + rng.random_range(-0.001..0.001),
            crs: Crs::Wgs84,
        };
        let reported = geo::to_gcj02(&near);
        visits.push(Visit {
            visit_id: uuid::Uuid::now_v7().to_string(),
            revision: 1,
            supersedes_revision: 0,
            household_id: household_id.clone(),
            mode: VisitMode::InPerson,
            exception_reason: None,
            visit_type: VisitType::Routine,
            checkin_at: checkin,
            checkout_at: checkout,
            observed_situation: "户主在家，秋粮已收，家中老人身体尚可。".into(),
            plan_progress: "养鸡三十只。".into(),
            problems: String::new(),
            actions: "讲解医保报销政策。".into(),
            needs: String::new(),
            policies_explained: vec!["医疗保障".into(), "产业奖补".into()],
            wellbeing: WellbeingCheck::default(),
            proposed_changes: Vec::new(),
            photo_ids: Vec::new(),
            gps: Some(GpsFix {
                lat: reported.lat,
                lon: reported.lon,
                crs: Crs::Gcj02,
                accuracy_m: rng.random_range(5.0..30.0),
                provider: None,
                is_mock: false,
                fix_time: Some(checkin + time::Duration::minutes(2)),
            }),
            recorded_at_device: checkout,
        });
        checkin = checkout + time::Duration::minutes(rng.random_range(20..60));
        let local = checkin.to_offset(fieldsync_model::time_util::BEIJING);
        if local.hour() >= 17 {
            // Next working day, 8:30.
            let mut next = local.date().next_day().expect("date");
            while matches!(
                next.weekday(),
                time::Weekday::Saturday | time::Weekday::Sunday
            ) {
                next = next.next_day().expect("date");
            }
            checkin = next
                .with_hms(8, 30, 0)
                .expect("time")
                .assume_offset(fieldsync_model::time_util::BEIJING);
        }
    }
    visits
}

/// Log in `devices` demo cadres (each with households) on a fresh server and plan their
/// visits.
async fn phones(server: &TestServer, devices: usize, count: usize) -> Vec<Phone> {
    let mut phones = Vec::new();
    for number in 1..=40 {
        if phones.len() == devices {
            break;
        }
        let username = format!("cadre{number:02}");
        let device_id = uuid::Uuid::now_v7().to_string();
        let token = server.login(&username, &device_id).await;
        let (households, _, _) = pull_all(server.channel().await, &token).await;
        let mut located = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for household in &households {
            if !seen.insert(household.household_id.clone()) {
                continue;
            }
            let stored = server
                .state
                .store
                .get_household(&household.household_id)
                .await
                .expect("household")
                .expect("stored");
            if let Some(location) = stored.location {
                located.push((stored.household_id, location));
            }
        }
        if located.is_empty() {
            continue;
        }
        let visits = plan_visits(number as u64, &located, count);
        phones.push(Phone {
            token,
            device_id,
            visits,
        });
    }
    assert_eq!(phones.len(), devices, "enough demo cadres with households");
    phones
}

/// Push every phone's visits in batches of `batch`, all phones at once; wall time.
async fn push_all(server: &TestServer, phones: Vec<Phone>, batch: usize) -> Duration {
    let mut channels = Vec::new();
    for _ in &phones {
        channels.push(server.channel().await);
    }
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (phone, channel) in phones.into_iter().zip(channels) {
        tasks.spawn(async move {
            let mut sync = v1::sync_client::SyncClient::new(channel);
            let mut seq = 1u64;
            for chunk in phone.visits.chunks(batch) {
                let mutations: Vec<v1::Mutation> = chunk
                    .iter()
                    .map(|visit| {
                        let mutation = v1::Mutation {
                            seq,
                            mutation_id: uuid::Uuid::now_v7().to_string(),
                            hlc: 1,
                            payload: Some(v1::mutation::Payload::SubmitVisit(v1::Visit::from(
                                visit,
                            ))),
                        };
                        seq += 1;
                        mutation
                    })
                    .collect();
                let response = sync
                    .push(authorized(
                        v1::PushRequest {
                            device_id: phone.device_id.clone(),
                            batch_id: uuid::Uuid::now_v7().to_string(),
                            first_seq: seq - chunk.len() as u64,
                            mutations,
                            client: Some(client_info()),
                            ..Default::default()
                        },
                        &phone.token,
                    ))
                    .await
                    .expect("push")
                    .into_inner();
                assert!(
                    response
                        .results
                        .iter()
                        .all(|result| result.outcome == v1::MutationOutcome::Applied as i32),
                    "every visit applied"
                );
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("phone");
    }
    started.elapsed()
}

/// One visit as the anchors write it: the values of the row fieldsync's push stores.
struct AnchorRow {
    visit_id: String,
    household_id: String,
    body: String,
    business_month: String,
    checkin_at_ms: i64,
    checkout_at_ms: i64,
    gps: (f64, f64, i32),
}

impl AnchorRow {
    fn of(visit: &Visit) -> Self {
        let millis = |instant: OffsetDateTime| (instant.unix_timestamp_nanos() / 1_000_000) as i64;
        let gps = visit.gps.as_ref().expect("every planned visit has a fix");
        AnchorRow {
            visit_id: visit.visit_id.clone(),
            household_id: visit.household_id.clone(),
            body: serde_json::to_string(visit).expect("json"),
            business_month: visit.business_month(),
            checkin_at_ms: millis(visit.checkin_at),
            checkout_at_ms: millis(visit.checkout_at),
            gps: (gps.lat, gps.lon, gps.crs.code()),
        }
    }
}

/// Which table the raw inserts go to.
#[derive(Clone)]
enum AnchorSchema {
    /// A bare `visits` table (primary key only): the goal's anchor.
    Bare,
    /// fieldsync's own file (a copy of the server's database after the run, with the rows
    /// the pushes wrote deleted: the demo county, every index and foreign key): the rows one
    /// push writes per visit (visit row, change-log entry with its scope sequence, applied
    /// mutation, flags) and per batch (device, push record), by plain SQL with no logic
    /// around it.
    Production(PathBuf),
}

/// An anchor: the same visits inserted with raw rusqlite, one transaction per batch, one
/// thread and connection per device, into a new (warmed) file in `folder`.
fn anchor(
    folder: &Path,
    rows: Arc<Vec<Vec<AnchorRow>>>,
    batch: usize,
    schema: AnchorSchema,
) -> Duration {
    let path = folder.join("anchor.sqlite");
    if let AnchorSchema::Production(server_file) = &schema {
        std::fs::copy(server_file, &path).expect("copy the server's database");
        rusqlite::Connection::open(&path)
            .and_then(|connection| {
                connection.execute_batch(
                    "DELETE FROM visits; DELETE FROM change_log WHERE kind = 'visit_status';
                     DELETE FROM applied_mutations; DELETE FROM push_batches;",
                )
            })
            .expect("remove the pushed rows");
    }
    {
        let connection = rusqlite::Connection::open(&path).expect("open");
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
                 CREATE TABLE IF NOT EXISTS visits (
                     visit_id TEXT NOT NULL, revision INTEGER NOT NULL,
                     household_id TEXT NOT NULL, author_user_id TEXT NOT NULL,
                     device_id TEXT NOT NULL, body TEXT NOT NULL, content_hash TEXT NOT NULL,
                     state TEXT NOT NULL, mode INTEGER NOT NULL, business_month TEXT NOT NULL,
                     submitted_at INTEGER NOT NULL, checkin_at_ms INTEGER,
                     PRIMARY KEY (visit_id, revision));
                 CREATE TABLE warm_up (body TEXT NOT NULL);",
            )
            .expect("schema");
        // Warm the file as the server's is warm (its demo county was written before the
        // run): a fresh WAL grows with every commit, and an fsync that also changes the
        // file's size costs a filesystem journal commit that a WAL reusing its space after a
        // checkpoint does not pay. 8 MiB of commits (past the 4 MiB auto-checkpoint).
        let filler = "x".repeat(865);
        for _ in 0..100 {
            let transaction = connection.unchecked_transaction().expect("begin");
            for _ in 0..100 {
                transaction
                    .execute("INSERT INTO warm_up VALUES (?1)", [&filler])
                    .expect("warm up");
            }
            transaction.commit().expect("commit");
        }
    }
    let started = Instant::now();
    let threads: Vec<_> = (0..rows.len())
        .map(|device| {
            let (rows, path, schema) = (Arc::clone(&rows), path.clone(), schema.clone());
            std::thread::spawn(move || {
                let mut connection = rusqlite::Connection::open(&path).expect("open");
                connection
                    .busy_timeout(Duration::from_secs(30))
                    .expect("busy timeout");
                connection
                    .execute_batch("PRAGMA synchronous = FULL;")
                    .expect("pragma");
                let device_id = format!("device-{device}");
                let mut seq = 0i64;
                for chunk in rows[device].chunks(batch) {
                    let transaction = connection
                        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                        .expect("begin");
                    for row in chunk {
                        seq += 1;
                        match schema {
                            AnchorSchema::Bare => insert_bare(&transaction, row),
                            AnchorSchema::Production(_) => {
                                insert_production(&transaction, row, &device_id, seq)
                            }
                        }
                    }
                    if let AnchorSchema::Production(_) = schema {
                        transaction
                            .prepare_cached(
                                "INSERT INTO devices (device_id, user_id, last_processed_seq,
                                                      last_seen_at)
                                 VALUES (?1, 'cadre', ?2, 0)
                                 ON CONFLICT (device_id) DO UPDATE SET
                                     last_processed_seq = excluded.last_processed_seq",
                            )
                            .and_then(|mut statement| {
                                statement.execute(rusqlite::params![device_id, seq])
                            })
                            .expect("device");
                        transaction
                            .prepare_cached(
                                "INSERT INTO push_batches (batch_id, device_id, fingerprint,
                                                           result, received_at)
                                 VALUES (?1, ?2, '', '{}', 0)",
                            )
                            .and_then(|mut statement| {
                                statement.execute(rusqlite::params![
                                    uuid::Uuid::now_v7().to_string(),
                                    device_id
                                ])
                            })
                            .expect("push record");
                    }
                    transaction.commit().expect("commit");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("anchor thread");
    }
    started.elapsed()
}

fn insert_bare(transaction: &rusqlite::Transaction<'_>, row: &AnchorRow) {
    transaction
        .prepare_cached(
            "INSERT INTO visits VALUES
             (?1, 1, ?2, 'cadre', 'device', ?3, 'hash', 'submitted', 1, '2026-09', 0, 0)",
        )
        .and_then(|mut insert| {
            insert.execute(rusqlite::params![row.visit_id, row.household_id, row.body])
        })
        .expect("insert");
}

/// The rows `apply_push_in` and the flag work write for one new visit, as plain SQL.
fn insert_production(
    transaction: &rusqlite::Transaction<'_>,
    row: &AnchorRow,
    device_id: &str,
    seq: i64,
) {
    let run = || -> rusqlite::Result<()> {
        transaction
            .prepare_cached(
                "INSERT INTO visits (visit_id, revision, household_id, author_user_id, device_id,
                                     body, content_hash, state, mode, business_month,
                                     submitted_at, distance_m, checkin_at_ms, checkin_sub_ms_ns,
                                     checkout_at_ms, checkout_sub_ms_ns, gps_lat, gps_lon,
                                     gps_crs, evidence_flags)
                 VALUES (?1, 1, ?2, 'cadre', ?3, ?4, 'hash', 'submitted', 1, ?5, 0, 42.0, ?6, 0,
                         ?7, 0, ?8, ?9, ?10, '[]')",
            )?
            .execute(rusqlite::params![
                row.visit_id,
                row.household_id,
                device_id,
                row.body,
                row.business_month,
                row.checkin_at_ms,
                row.checkout_at_ms,
                row.gps.0,
                row.gps.1,
                row.gps.2
            ])?;
        // As `next_scope_seq` numbers an entry: bump the township's counter, read it back.
        transaction
            .prepare_cached(
                "INSERT INTO scope_counters (scope_id, last_seq) VALUES ('township', 1)
                 ON CONFLICT (scope_id) DO UPDATE SET last_seq = last_seq + 1",
            )?
            .execute([])?;
        let scope_seq: i64 = transaction
            .prepare_cached("SELECT last_seq FROM scope_counters WHERE scope_id = 'township'")?
            .query_row([], |found| found.get(0))?;
        transaction
            .prepare_cached(
                "INSERT INTO change_log (household_id, kind, entity_id, revision, addressed_to,
                                         logged_at, scope_id, scope_seq)
                 VALUES (?1, 'visit_status', ?2, 1, NULL, 0, 'township', ?3)",
            )?
            .execute(rusqlite::params![row.household_id, row.visit_id, scope_seq])?;
        transaction
            .prepare_cached(
                "INSERT INTO applied_mutations (device_id, seq, mutation_id, batch_id, outcome)
                 VALUES (?1, ?2, ?3, 'batch', 'applied')",
            )?
            .execute(rusqlite::params![device_id, seq, row.visit_id])?;
        // The flags (none) went in with the row, as a push stores a visit whose flags the
        // same transaction computes.
        Ok(())
    };
    run().expect("production rows");
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

async fn run() {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|line| {
            line.strip_prefix("model name")?
                .split(':')
                .nth(1)
                .map(str::trim)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |cores| cores.get());
    let temp = std::env::temp_dir();
    println!(
        "machine: {cores} cores, {cpu}; data files under {}",
        temp.display()
    );
    println!("load average at start: {}", loadavg());
    // PostgreSQL mode: a separate function, so the SQLite mode stays exactly as it was.
    if let Ok(server_url) = std::env::var(POSTGRES_URL_VARIABLE)
        && !server_url.trim().is_empty()
    {
        run_on_postgres(server_url.trim()).await;
        return;
    }
    let mut rows_out = Vec::new();
    let mut body_bytes = 0;
    let only = std::env::var("INGEST_CONFIGS").ok();
    for devices in DEVICES {
        for batch in BATCHES {
            // `INGEST_CONFIGS=100x1,100x8` runs only those (batch × devices) configurations.
            if let Some(only) = &only
                && !only
                    .split(',')
                    .any(|config| config.trim() == format!("{batch}x{devices}"))
            {
                continue;
            }
            let count = visits_per_device(batch);
            let server = TestServer::start().await;
            let phones = phones(&server, devices, count).await;
            let rows: Arc<Vec<Vec<AnchorRow>>> = Arc::new(
                phones
                    .iter()
                    .map(|phone| phone.visits.iter().map(AnchorRow::of).collect())
                    .collect(),
            );
            body_bytes = rows[0][0].body.len();
            let total = (devices * count) as f64;
            let fieldsync = push_all(&server, phones, batch).await;
            let (data_dir, _key_dir) = server.stop_keeping_files().await;
            let server_file = data_dir.path().join("fieldsync.sqlite3");
            let mut anchors = Vec::new();
            for schema in [AnchorSchema::Bare, AnchorSchema::Production(server_file)] {
                let folder = tempfile::tempdir().expect("temp dir");
                let folder_path = folder.path().to_owned();
                let rows = Arc::clone(&rows);
                let took =
                    tokio::task::spawn_blocking(move || anchor(&folder_path, rows, batch, schema))
                        .await
                        .expect("anchor");
                anchors.push(total / took.as_secs_f64());
            }
            let ours = total / fieldsync.as_secs_f64();
            let (bare, production) = (anchors[0], anchors[1]);
            eprintln!(
                "batch {batch} × {devices}: fieldsync {ours:.0}/s, bare anchor {bare:.0}/s, \
                 production-schema anchor {production:.0}/s (load {})",
                loadavg()
            );
            rows_out.push((batch, devices, ours, bare, production));
        }
    }
    println!("load average at end: {}", loadavg());
    println!("visit JSON body: {body_bytes} bytes");
    println!();
    println!(
        "| batch × devices | fieldsync visits/s | bare table visits/s | ratio (goal) | \
         production schema visits/s | ratio |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (batch, devices, ours, bare, production) in rows_out {
        println!(
            "| {batch} × {devices} | {ours:.0} | {bare:.0} | {:.2}× | {production:.0} | {:.2}× |",
            ours / bare,
            ours / production
        );
    }
}

/// The variable that switches the benchmark to PostgreSQL (a server URL; see the module
/// documentation).
const POSTGRES_URL_VARIABLE: &str = "INGEST_POSTGRES_URL";

/// The anchor tables: the shape of the PostgreSQL `visits` table (0001_baseline.sql, every
/// column, `COLLATE "C"` on the text ones) with its primary key and nothing else: no
/// foreign key, no secondary index, as the SQLite mode's bare table. One for the per-batch
/// `\copy`, one for the bulk `\copy`.
const POSTGRES_ANCHOR_SCHEMA: &str = r#"
    CREATE TABLE anchor_per_batch (
        visit_id TEXT COLLATE "C" NOT NULL, revision INTEGER NOT NULL,
        household_id TEXT COLLATE "C" NOT NULL, author_user_id TEXT COLLATE "C" NOT NULL,
        device_id TEXT COLLATE "C" NOT NULL, body TEXT COLLATE "C" NOT NULL,
        content_hash TEXT COLLATE "C" NOT NULL, state TEXT COLLATE "C" NOT NULL,
        mode INTEGER NOT NULL, business_month TEXT COLLATE "C" NOT NULL,
        submitted_at BIGINT NOT NULL, distance_m DOUBLE PRECISION,
        evidence_flags TEXT COLLATE "C", checkin_at_ms BIGINT, checkin_sub_ms_ns INTEGER,
        checkout_at_ms BIGINT, checkout_sub_ms_ns INTEGER, gps_lat DOUBLE PRECISION,
        gps_lon DOUBLE PRECISION, gps_crs INTEGER,
        PRIMARY KEY (visit_id, revision));
    CREATE TABLE anchor_bulk (LIKE anchor_per_batch INCLUDING ALL);
"#;

/// Run the real `psql` on `database_url` with one command; panics with psql's own message
/// when it fails (a benchmark with a broken anchor must not print a ratio).
fn psql(database_url: &str, command: &str) -> String {
    let output = std::process::Command::new("psql")
        // No ~/.psqlrc, quiet, unaligned tuples only, stop at the first error.
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(database_url)
        .arg("-c")
        .arg(command)
        .output()
        .expect("run psql (the PostgreSQL client must be installed)");
    assert!(
        output.status.success(),
        "psql -c {command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// `\copy` of one CSV file into `table`, as a psql meta-command (client-side file).
fn copy_command(table: &str, file: &Path) -> String {
    format!(
        "\\copy {table} FROM '{}' WITH (FORMAT csv, ENCODING 'UTF8')",
        file.display()
    )
}

/// Write `rows` to a CSV file at `path` (see [`write_rows`]).
fn write_csv(path: &Path, device_id: &str, rows: &[AnchorRow]) {
    let mut writer = csv::Writer::from_path(path).expect("create a CSV file");
    write_rows(&mut writer, device_id, rows);
    writer.flush().expect("flush a CSV file");
}

/// Write `rows` as CSV, one line per visit with every column of the visits table, valued as
/// a push stores them (the JSON body and its SHA-256, the visit's month, check-in/out
/// instants and fix; placeholders for the author, distance and flags).
fn write_rows(writer: &mut csv::Writer<std::fs::File>, device_id: &str, rows: &[AnchorRow]) {
    use sha2::Digest;
    let submitted_at = (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    for row in rows {
        let content_hash = hex::encode(sha2::Sha256::digest(row.body.as_bytes()));
        writer
            .write_record([
                row.visit_id.as_str(),
                "1",
                &row.household_id,
                "cadre",
                device_id,
                &row.body,
                &content_hash,
                "submitted",
                "1",
                &row.business_month,
                &submitted_at.to_string(),
                "42.0",
                "[]",
                &row.checkin_at_ms.to_string(),
                "0",
                &row.checkout_at_ms.to_string(),
                "0",
                &row.gps.0.to_string(),
                &row.gps.1.to_string(),
                &row.gps.2.to_string(),
            ])
            .expect("write a CSV row");
    }
}

/// What the PostgreSQL anchors measured for one configuration.
struct PostgresAnchors {
    /// Visits per second, one `\copy` per batch, devices in parallel.
    per_batch: f64,
    /// Visits per second, one `\copy` of every row.
    bulk: f64,
    /// Milliseconds of one `psql` run that does no work (`SELECT 1`): process start,
    /// connection and backend start, which every per-batch `\copy` also pays.
    psql_start_ms: f64,
}

/// The `psql \copy` anchors for the rows of one configuration, in the new, empty database
/// at `database_url`, with the CSV files in `folder`. Blocking: run it off the async runtime.
fn postgres_anchors(
    database_url: &str,
    folder: &Path,
    rows: &[Vec<AnchorRow>],
    batch: usize,
) -> PostgresAnchors {
    psql(database_url, POSTGRES_ANCHOR_SCHEMA);
    // The files are written before the clock starts: the anchor is the database's work.
    let mut files_by_device = Vec::new();
    for (device, device_rows) in rows.iter().enumerate() {
        let device_id = format!("device-{device}");
        let mut files = Vec::new();
        for (number, chunk) in device_rows.chunks(batch).enumerate() {
            let path = folder.join(format!("device{device}-batch{number}.csv"));
            write_csv(&path, &device_id, chunk);
            files.push(path);
        }
        files_by_device.push(files);
    }
    let all_rows_file = folder.join("all.csv");
    {
        let mut writer = csv::Writer::from_path(&all_rows_file).expect("create a CSV file");
        for (device, device_rows) in rows.iter().enumerate() {
            write_rows(&mut writer, &format!("device-{device}"), device_rows);
        }
        writer.flush().expect("flush a CSV file");
    }
    let total = rows.iter().map(Vec::len).sum::<usize>() as f64;

    // The fixed cost of one psql run, serially, for reading the per-batch line.
    let probes = 20;
    let started = Instant::now();
    for _ in 0..probes {
        psql(database_url, "SELECT 1");
    }
    let psql_start_ms = started.elapsed().as_secs_f64() * 1000.0 / probes as f64;

    let started = Instant::now();
    let threads: Vec<_> = files_by_device
        .into_iter()
        .map(|files| {
            let database_url = database_url.to_owned();
            std::thread::spawn(move || {
                for file in files {
                    psql(&database_url, &copy_command("anchor_per_batch", &file));
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("anchor thread");
    }
    let per_batch = total / started.elapsed().as_secs_f64();

    let started = Instant::now();
    psql(database_url, &copy_command("anchor_bulk", &all_rows_file));
    let bulk = total / started.elapsed().as_secs_f64();

    // Every row arrived, in both tables.
    for table in ["anchor_per_batch", "anchor_bulk"] {
        let count: usize = psql(database_url, &format!("SELECT count(*) FROM {table}"))
            .parse()
            .expect("a count");
        assert_eq!(count as f64, total, "every row copied into {table}");
    }
    PostgresAnchors {
        per_batch,
        bulk,
        psql_start_ms,
    }
}

/// The PostgreSQL mode: fieldsync on PostgreSQL against `psql \copy` of the same rows.
async fn run_on_postgres(server_url: &str) {
    let server_settings = psql(
        server_url,
        "SELECT string_agg(name || '=' || setting, ', ' ORDER BY name) FROM pg_settings \
         WHERE name IN ('server_version', 'fsync', 'synchronous_commit', 'wal_sync_method', \
                        'full_page_writes', 'shared_buffers')",
    );
    println!("PostgreSQL at {server_url}: {server_settings}");
    let mut rows_out = Vec::new();
    let mut body_bytes = 0;
    let only = std::env::var("INGEST_CONFIGS").ok();
    for devices in DEVICES {
        for batch in BATCHES {
            if let Some(only) = &only
                && !only
                    .split(',')
                    .any(|config| config.trim() == format!("{batch}x{devices}"))
            {
                continue;
            }
            let count = visits_per_device(batch);
            let server = TestServer::start_on_postgres(server_url).await;
            let phones = phones(&server, devices, count).await;
            let rows: Vec<Vec<AnchorRow>> = phones
                .iter()
                .map(|phone| phone.visits.iter().map(AnchorRow::of).collect())
                .collect();
            body_bytes = rows[0][0].body.len();
            let total = (devices * count) as f64;
            let fieldsync = push_all(&server, phones, batch).await;
            // Stop the server (and close its pool) before the anchors run.
            drop(server.stop_keeping_files().await);
            let anchor_database =
                fieldsync_server::store::postgres::testing::fresh_database_url(server_url).await;
            let folder = tempfile::tempdir().expect("temp dir");
            let folder_path = folder.path().to_owned();
            let anchors = tokio::task::spawn_blocking(move || {
                postgres_anchors(&anchor_database, &folder_path, &rows, batch)
            })
            .await
            .expect("anchors");
            let ours = total / fieldsync.as_secs_f64();
            eprintln!(
                "batch {batch} × {devices}: fieldsync {ours:.0}/s, psql \\copy per batch {:.0}/s, \
                 one bulk \\copy {:.0}/s, psql start {:.1} ms (load {})",
                anchors.per_batch,
                anchors.bulk,
                anchors.psql_start_ms,
                loadavg()
            );
            rows_out.push((batch, devices, ours, anchors));
        }
    }
    println!("load average at end: {}", loadavg());
    println!("visit JSON body: {body_bytes} bytes");
    println!();
    println!(
        "| batch × devices | fieldsync visits/s | psql \\copy per batch visits/s | ratio (goal) | \
         one bulk \\copy visits/s | ratio | psql start, ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (batch, devices, ours, anchors) in rows_out {
        println!(
            "| {batch} × {devices} | {ours:.0} | {:.0} | {:.2}× | {:.0} | {:.2}× | {:.1} |",
            anchors.per_batch,
            ours / anchors.per_batch,
            anchors.bulk,
            ours / anchors.bulk,
            anchors.psql_start_ms
        );
    }
}
