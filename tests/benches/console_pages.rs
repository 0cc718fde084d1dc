//! Console page latency at township scale (issue 5 performance target): the dashboard
//! (工作台), the review queue (待审核) and the household page (户档案) must take ≤ 200 ms of
//! server time at p95 for a township of 5,000 households with 12 months of visits.
//!
//! The benchmark builds that township from the demo county (township 1's households and
//! cadres cloned until it holds 5,000 households, each cloned cadre pairing its clones), pushes
//! one in-person visit per household per month through the store for the 12 months up to the
//! reference month, decides most of the past months (approved, a few returned, a few left
//! waiting) and leaves 60 % of the current month submitted (the queue). Then it serves the
//! console on a real socket and times each page over loopback HTTP with a logged-in
//! supervisor: client-observed latency, so an upper bound on server time.
//!
//! Run: `cargo bench -p fieldsync-tests --bench console_pages` (see BENCHMARKS.md). Data is
//! written under `/dev/shm` when it exists (fsync there is free), else the temp dir: the
//! benchmark measures reads, not the disk.

use std::time::{Duration as StdDuration, Instant};

use fieldsync_model::codes::VisitMode;
use fieldsync_model::review::{Decision, DecisionRequest, ReturnReason};
use fieldsync_model::sync::MutationPayload;
use fieldsync_model::visit::Visit;
use fieldsync_server::AppState;
use fieldsync_server::demo::DEMO_PASSWORD;
use fieldsync_server::settings::Settings;
use fieldsync_server::store::conformance::{apply, batch, visit};
use fieldsync_server::store::{LedgerArea, PushBatch, QueueFilter, StoredDecision};
use fieldsync_tests::scaled_county::{ScaledCounty, SplitMix, scaled_township};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

/// Households of the benchmark township.
const HOUSEHOLDS: usize = 5_000;
/// Months of visits, ending with the reference month.
const MONTHS: i32 = 12;
/// The reference "now": late in November 2026, Beijing time.
const NOW: OffsetDateTime = datetime!(2026-11-25 02:00 UTC);
/// Timed requests per page (after the warm-up ones).
const REQUESTS: usize = 60;
const WARM_UP: usize = 5;
const TARGET_P95_MS: f64 = 200.0;

fn main() {
    fieldsync_tests::bench_main("console_pages", run);
}

/// The business month `back` months before the reference month, and a check-in time on a
/// spread-out day of it (10:00 Beijing).
fn month_checkin(back: i32, spread: u64) -> OffsetDateTime {
    let mut year = 2026;
    let mut month = 11 - back;
    while month < 1 {
        month += 12;
        year -= 1;
    }
    let day = 1 + (spread % 24) as u8;
    let date =
        time::Date::from_calendar_date(year, time::Month::try_from(month as u8).unwrap(), day)
            .expect("date");
    date.with_hms(2, 0, 0).expect("time").assume_utc()
}

async fn run() {
    let started = Instant::now();
    let root = if std::path::Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm").expect("shm dir")
    } else {
        tempfile::tempdir().expect("temp dir")
    };
    let clock = std::sync::Arc::new(fieldsync_server::clock::ManualClock::new(NOW));
    let settings = Settings {
        data_dir: root.path().to_owned(),
        listen_addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        metrics: fieldsync_server::settings::MetricsSettings {
            enabled: false,
            ..Default::default()
        },
        ..Settings::default()
    };
    let state = AppState::open_with_clock(settings, clock).expect("open");
    let ScaledCounty {
        seed,
        cadres: work,
        supervisor,
        ..
    } = scaled_township(HOUSEHOLDS);
    let supervisor_username = supervisor.username.clone();
    let (supervisor_id, township_id) = (supervisor.user_id, supervisor.area_id);
    state.store.load_seed(seed).await.expect("seed");
    let seeded_at = started.elapsed();

    // Visits: one per household and month, pushed per cadre and month.
    let mut random = SplitMix(7);
    let mut decided = (0usize, 0usize);
    let mut submitted_now = 0usize;
    let mut visits_total = 0usize;
    let mut sample_household = String::new();
    for (cadre_index, (cadre, households)) in work.iter().enumerate() {
        let device = format!("bench-device-{cadre_index}");
        let mut seq = 1u64;
        for back in (0..MONTHS).rev() {
            let mut entries = Vec::new();
            let mut month_visits: Vec<Visit> = Vec::new();
            for household in households {
                if back == 0 && random.next_u64() % 10 >= 6 {
                    continue; // not visited yet this month
                }
                let checkin = month_checkin(back, random.next_u64());
                let visit = visit(household, VisitMode::InPerson, checkin);
                entries.push(apply(seq, MutationPayload::SubmitVisit(visit.clone())));
                seq += 1;
                month_visits.push(visit);
            }
            if entries.is_empty() {
                continue;
            }
            let push = PushBatch {
                received_at: month_checkin(back, 27) + Duration::hours(8),
                ..batch(cadre, &device, entries)
            };
            state.store.apply_push(push).await.expect("push");
            visits_total += month_visits.len();
            for visit in month_visits {
                if sample_household.is_empty() {
                    sample_household = visit.household_id.clone();
                }
                if back == 0 {
                    submitted_now += 1;
                    continue;
                }
                let roll = random.next_u64() % 100;
                if roll < 2 {
                    continue; // still waiting: an old item in the queue
                }
                let (decision, reasons) = if roll < 5 {
                    decided.1 += 1;
                    (
                        Decision::Return,
                        vec![ReturnReason {
                            code: "content_too_short".into(),
                            field: "observed_situation".into(),
                        }],
                    )
                } else {
                    decided.0 += 1;
                    (Decision::Approve, Vec::new())
                };
                state
                    .store
                    .decide(StoredDecision {
                        request: DecisionRequest {
                            visit_id: visit.visit_id.clone(),
                            revision: visit.revision,
                            content_hash: visit.content_hash(),
                            decision,
                            reasons,
                            note: String::new(),
                            deadline: String::new(),
                        },
                        reviewer_user_id: supervisor_id.clone(),
                        decided_at: visit.checkout_at + Duration::days(2),
                    })
                    .await
                    .expect("decide");
            }
        }
    }
    let loaded_at = started.elapsed();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(fieldsync_server::serve(listener, state.clone(), async {
        let _ = stopped.await;
    }));
    let base = format!("http://{address}");
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let login = browser
        .post(format!("{base}/console/login"))
        .form(&[
            ("username", supervisor_username.as_str()),
            ("password", DEMO_PASSWORD),
        ])
        .send()
        .await
        .expect("login");
    assert!(login.status().is_redirection(), "login: {}", login.status());

    println!("## Console pages at township scale — run of {}", today());
    println!();
    println!(
        "Township: {HOUSEHOLDS} households, {} cadres, {visits_total} visits over {MONTHS} months \
         ({} approved, {} returned, {} waiting from past months, {submitted_now} submitted this \
         month). Seeded in {:.1} s, visits and decisions stored in {:.1} s (store API, SQLite \
         on {}).",
        work.len(),
        decided.0,
        decided.1,
        visits_total - submitted_now - decided.0 - decided.1,
        seeded_at.as_secs_f64(),
        (loaded_at - seeded_at).as_secs_f64(),
        root.path().display()
    );
    println!();
    println!(
        "Each page requested {WARM_UP} times to warm up, then {REQUESTS} times one after \
         another over loopback HTTP by a logged-in supervisor; client-observed time (an upper \
         bound on server time). Target: p95 ≤ {TARGET_P95_MS} ms."
    );
    println!();
    println!("| page | path | bytes | p50 | p95 | max | p95 ≤ 200 ms |");
    println!("|---|---|---|---|---|---|---|");
    let pages = [
        ("工作台 dashboard", "/console/dashboard".to_owned()),
        ("待审核 queue", "/console/queue".to_owned()),
        (
            "户档案 household page",
            format!("/console/households/{sample_household}"),
        ),
    ];
    for (name, path) in pages {
        let url = format!("{base}{path}");
        let mut bytes = 0usize;
        for _ in 0..WARM_UP {
            let response = browser.get(&url).send().await.expect("get");
            assert!(
                response.status().is_success(),
                "{path}: {}",
                response.status()
            );
            bytes = response.bytes().await.expect("body").len();
        }
        let mut times: Vec<StdDuration> = Vec::with_capacity(REQUESTS);
        for _ in 0..REQUESTS {
            let begun = Instant::now();
            let response = browser.get(&url).send().await.expect("get");
            assert!(response.status().is_success());
            let _ = response.bytes().await.expect("body");
            times.push(begun.elapsed());
        }
        times.sort();
        let at = |quantile: f64| {
            let index = ((times.len() as f64 * quantile).ceil() as usize).clamp(1, times.len()) - 1;
            times[index].as_secs_f64() * 1000.0
        };
        let p95 = at(0.95);
        println!(
            "| {name} | `{path}` | {bytes} | {:.1} ms | {p95:.1} ms | {:.1} ms | {} |",
            at(0.50),
            at(1.0),
            if p95 <= TARGET_P95_MS {
                "yes"
            } else {
                "**no**"
            }
        );
    }
    println!();

    // Where the time goes: the store calls behind those pages, in-process on the same data.
    println!(
        "Store calls behind those pages, in-process (no HTTP, no HTML), {STORE_CALLS} calls \
         each:"
    );
    println!();
    println!("| call | p50 | max |");
    println!("|---|---|---|");
    let area = LedgerArea::Township(township_id.clone());
    let month = "2026-11";
    let queue = || QueueFilter {
        limit: 50,
        ..QueueFilter::default()
    };
    report("ledger_facts (month)", || {
        state.store.ledger_facts(&area, month)
    })
    .await;
    report("queue_flag_counts", || state.store.queue_flag_counts(&area)).await;
    report("cadre_last_syncs", || state.store.cadre_last_syncs(&area)).await;
    report("review_queue (first 50)", || {
        state.store.review_queue(&township_id, queue())
    })
    .await;
    report("review_queue_facets", || {
        state
            .store
            .review_queue_facets(&township_id, queue(), vec![NOW - Duration::days(3)])
    })
    .await;
    report("household_dossier", || {
        state.store.household_dossier(&sample_household)
    })
    .await;
    println!();
    let _ = stop.send(());
    let _ = server.await;
}

/// Calls per store method in the breakdown.
const STORE_CALLS: usize = 20;

/// Time `call` [`STORE_CALLS`] times and print its median and maximum.
async fn report<T, E: std::fmt::Debug, F>(name: &str, call: impl Fn() -> F)
where
    F: std::future::Future<Output = Result<T, E>>,
{
    let mut times = Vec::with_capacity(STORE_CALLS);
    for _ in 0..STORE_CALLS {
        let begun = Instant::now();
        call().await.expect(name);
        times.push(begun.elapsed());
    }
    times.sort();
    println!(
        "| `{name}` | {:.1} ms | {:.1} ms |",
        times[STORE_CALLS / 2].as_secs_f64() * 1000.0,
        times[STORE_CALLS - 1].as_secs_f64() * 1000.0
    );
}

fn today() -> String {
    let now = OffsetDateTime::now_utc();
    format!("{}-{:02}-{:02}", now.year(), now.month() as u8, now.day())
}
