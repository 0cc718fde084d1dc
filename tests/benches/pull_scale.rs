//! Pull scale (issue 11 §5): a full pull (every page from an empty cursor, as a new phone or
//! a reset one does) must cost the same per household at every county size: time per
//! household flat within 25 % from 324 to 20,000 households.
//!
//! For each size the demo county is cloned to that many households (both townships,
//! `fieldsync_tests::scaled_county`), stored through the store API and served by the real
//! server on a loopback port. Then, over real gRPC, the county admin (the "county pull"), the
//! first township's supervisor (the "township pull") and one cadre each pull their whole
//! scope from an empty cursor until the checkpoint. Production path driven:
//! `Sync.Pull` → `grpc::sync_service::stream_scope` → `sync::pull::page` →
//! `SqliteStore::pull_changes` → `store::sqlite::pull::pull_changes_in`, 200 entries a page.
//!
//! The reference, side by side in the same run, is the smallest county: each row's time per
//! household is divided by that of the same principal at 324 households.
//!
//! Run: `cargo bench -p fieldsync-tests --bench pull_scale` (prints a markdown table).
//! `PULL_SCALE_SIZES=324,5000` limits the sizes.

use std::time::{Duration, Instant};

use fieldsync_proto::v1;
use fieldsync_tests::scaled_county::{ScaledServer, Storage, scaled_county, serve_scaled};
use fieldsync_tests::{authorized, client_info};
use prost::Message;

const SIZES: [usize; 4] = [324, 5_000, 10_000, 20_000];
/// Timed full pulls per principal and size (after one warm-up pull); the median is reported.
const RUNS: usize = 11;
/// The goal: time per household within 25 % of the smallest county's.
const FLAT_WITHIN: f64 = 0.25;

fn main() {
    fieldsync_tests::bench_main("pull_scale", run);
}

/// What one full pull delivered.
#[derive(Default, Clone, Copy)]
struct Pulled {
    households: usize,
    pages: usize,
    bytes: usize,
}

/// Pull the caller's whole scope from an empty cursor over one connection.
async fn full_pull(server: &ScaledServer, token: &str) -> (Pulled, Duration) {
    let channel = server.channel().await;
    let mut sync = v1::sync_client::SyncClient::new(channel);
    let begun = Instant::now();
    let mut stream = sync
        .pull(authorized(
            v1::PullRequest {
                cursor: String::new(),
                client: Some(client_info()),
                ..Default::default()
            },
            token,
        ))
        .await
        .expect("pull")
        .into_inner();
    let mut pulled = Pulled::default();
    while let Some(frame) = stream.message().await.expect("frame") {
        pulled.bytes += frame.encoded_len();
        match frame.frame {
            Some(v1::pull_response::Frame::Page(page)) => {
                pulled.pages += 1;
                pulled.households += page.households.len();
            }
            Some(v1::pull_response::Frame::Checkpoint(_)) => return (pulled, begun.elapsed()),
            other => panic!("unexpected frame {other:?}"),
        }
    }
    panic!("pull ended without a checkpoint")
}

struct Row {
    size: usize,
    principal: &'static str,
    pulled: Pulled,
    median: Duration,
}

impl Row {
    fn micros_per_household(&self) -> f64 {
        self.median.as_secs_f64() * 1e6 / self.pulled.households.max(1) as f64
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".into())
}

async fn run() {
    let sizes: Vec<usize> = match std::env::var("PULL_SCALE_SIZES") {
        Ok(list) => list
            .split(',')
            .map(|size| size.trim().parse().expect("PULL_SCALE_SIZES: numbers"))
            .collect(),
        Err(_) => SIZES.to_vec(),
    };
    let load_at_start = loadavg();
    let mut rows: Vec<Row> = Vec::new();
    for &size in &sizes {
        let county = scaled_county(size);
        let (admin, supervisor) = (
            county.county_admin.username.clone(),
            county.supervisor.username.clone(),
        );
        // The cadre with the most households: a phone's first sync.
        let cadre = county
            .cadres
            .iter()
            .max_by_key(|(_, own)| own.len())
            .map(|(cadre, _)| cadre.username.clone())
            .expect("a cadre");
        let seeding = Instant::now();
        let server = serve_scaled(county.seed, Storage::Memory).await;
        eprintln!(
            "pull_scale: {size} households stored in {:.1} s",
            seeding.elapsed().as_secs_f64()
        );
        for (principal, username) in [
            ("county admin (county pull)", admin),
            ("township supervisor (township pull)", supervisor),
            ("cadre (phone's first sync)", cadre),
        ] {
            let token = server.login(&username).await;
            let (pulled, _) = full_pull(&server, &token).await;
            let mut times = Vec::with_capacity(RUNS);
            for _ in 0..RUNS {
                let (again, time) = full_pull(&server, &token).await;
                assert_eq!(
                    again.households, pulled.households,
                    "the same scope each time"
                );
                times.push(time);
            }
            times.sort();
            rows.push(Row {
                size,
                principal,
                pulled,
                median: times[RUNS / 2],
            });
        }
    }
    let load_at_end = loadavg();

    println!("## Pull scale (issue 11)");
    println!();
    println!(
        "Full pulls from an empty cursor over real gRPC (loopback), median of {RUNS} after one \
         warm-up. Load average (1/5/15 min): {load_at_start} at the start, {load_at_end} at \
         the end."
    );
    println!();
    println!(
        "| county households | principal | households pulled | pages | bytes | median | µs per household | vs smallest county |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for row in &rows {
        let reference = rows
            .iter()
            .find(|other| other.principal == row.principal)
            .expect("the smallest county's row");
        println!(
            "| {} | {} | {} | {} | {} | {:.1} ms | {:.1} | {:.2}× |",
            row.size,
            row.principal,
            row.pulled.households,
            row.pulled.pages,
            row.pulled.bytes,
            row.median.as_secs_f64() * 1000.0,
            row.micros_per_household(),
            row.micros_per_household() / reference.micros_per_household()
        );
    }
    println!();
    for principal in [
        "county admin (county pull)",
        "township supervisor (township pull)",
    ] {
        let per_household: Vec<f64> = rows
            .iter()
            .filter(|row| row.principal == principal)
            .map(Row::micros_per_household)
            .collect();
        let lowest = per_household.iter().copied().fold(f64::INFINITY, f64::min);
        let highest = per_household.iter().copied().fold(0.0, f64::max);
        let spread = highest / lowest - 1.0;
        println!(
            "- {principal}: time per household from {lowest:.1} to {highest:.1} µs, spread \
             {:.0} % (goal ≤ {:.0} %): {}",
            spread * 100.0,
            FLAT_WITHIN * 100.0,
            if spread <= FLAT_WITHIN {
                "met"
            } else {
                "**not met**"
            }
        );
    }
}
