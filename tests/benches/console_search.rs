//! Household search (农户检索) latency at county scale (issue 14 performance target): the
//! console's search page must answer in ≤ 50 ms at p95 for a county of 10,000 households.
//!
//! The benchmark clones the demo county to 10,000 households (both townships; every clone with
//! its own 户编号 and valid ID numbers), stores them through the store API (which indexes them),
//! serves the console on a real socket and times `GET /console/search?q=…` over loopback HTTP
//! as the logged-in county administrator (the widest scope: the whole county) and as the first
//! township's supervisor. The queries are a fixed mix drawn from the stored households with a
//! fixed seed: whole head names, two-character given names, single surname characters (the
//! vaguest query: hundreds of matches), 拼音 initials, six digits of a 户编号, the last four and
//! six characters of an ID number and whole ID numbers. Client-observed time, so an upper
//! bound on server time; then the store call alone, in-process.
//!
//! Run: `cargo bench -p fieldsync-tests --bench console_search` (see BENCHMARKS.md). Data is
//! written under `/dev/shm` when it exists: the benchmark measures reads, not the disk.

use std::time::{Duration as StdDuration, Instant};

use fieldsync_server::demo::DEMO_PASSWORD;
use fieldsync_server::store::search::SEARCH_LIMIT;
use fieldsync_server::store::{HouseholdQuery, LedgerArea};
use fieldsync_tests::scaled_county::{
    ScaledCounty, SplitMix, Storage, scaled_county, serve_scaled,
};
use time::OffsetDateTime;

/// Households of the benchmark county.
const HOUSEHOLDS: usize = 10_000;
/// Queries of each kind (each timed once per pass).
const PER_KIND: usize = 12;
/// Timed passes over the whole query mix (after one warm-up pass).
const PASSES: usize = 3;
const TARGET_P95_MS: f64 = 50.0;

fn main() {
    fieldsync_tests::bench_main("console_search", run);
}

/// The query mix: (kind, query text).
fn queries(county: &ScaledCounty) -> Vec<(&'static str, String)> {
    let households = &county.seed.households;
    let mut random = SplitMix(14);
    let mut pick = || &households[(random.next_u64() % households.len() as u64) as usize];
    let mut mix = Vec::new();
    for _ in 0..PER_KIND {
        let household = pick();
        // The clones' head names end in their round number (王大山3); people type names.
        let head: String = household
            .head_name
            .chars()
            .filter(|c| !c.is_ascii_digit())
            .collect();
        let given: String = head.chars().skip(1).take(2).collect();
        let surname: String = head.chars().take(1).collect();
        let member = household
            .current_members()
            .find(|member| member.id_number.len() == 18)
            .expect("a member with an ID number");
        let number = &household.national_household_number;
        mix.push(("姓名 whole head name", head.clone()));
        mix.push(("名 given name (2 chars)", given));
        mix.push(("姓 surname (1 char)", surname));
        mix.push((
            "拼音首字母 initials",
            fieldsync_server::store::search::name_initials(&head),
        ));
        mix.push(("户编号 6 digits", number[number.len() - 6..].to_owned()));
        mix.push(("身份证后4位 last 4", member.id_number[14..].to_owned()));
        mix.push(("身份证后6位 last 6", member.id_number[12..].to_owned()));
        mix.push(("身份证号 whole number", member.id_number.clone()));
    }
    mix
}

fn percentile(times: &mut [StdDuration], quantile: f64) -> f64 {
    times.sort();
    let index = ((times.len() as f64 * quantile).ceil() as usize).clamp(1, times.len()) - 1;
    times[index].as_secs_f64() * 1000.0
}

async fn run() {
    let started = Instant::now();
    let county = scaled_county(HOUSEHOLDS);
    let mix = queries(&county);
    let (admin, supervisor) = (county.county_admin.clone(), county.supervisor.clone());
    let server = serve_scaled(county.seed, Storage::Memory).await;
    let seeded_at = started.elapsed();

    println!("## Household search at county scale — run of {}", today());
    println!();
    println!(
        "County: {HOUSEHOLDS} households, indexed while stored; seeded in {:.1} s. {} queries \
         ({PER_KIND} of each kind), {PASSES} timed passes after one warm-up pass, one after \
         another over loopback HTTP; client-observed time. Target: p95 ≤ {TARGET_P95_MS} ms.",
        seeded_at.as_secs_f64(),
        mix.len()
    );
    println!();
    println!("| who (scope) | kind | p50 | p95 | max | mean hits |");
    println!("|---|---|---|---|---|---|");
    let mut all_times = Vec::new();
    for (who, user) in [
        ("县级管理员 (county)", &admin),
        ("乡镇审核员 (township)", &supervisor),
    ] {
        let browser = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let login = browser
            .post(format!("{}/console/login", server.url))
            .form(&[
                ("username", user.username.as_str()),
                ("password", DEMO_PASSWORD),
            ])
            .send()
            .await
            .expect("login");
        assert!(login.status().is_redirection(), "login: {}", login.status());
        let mut by_kind: Vec<(&str, Vec<StdDuration>, usize)> = Vec::new();
        for pass in 0..=PASSES {
            for (kind, query) in &mix {
                let begun = Instant::now();
                let response = browser
                    .get(format!("{}/console/search", server.url))
                    .query(&[("q", query)])
                    .send()
                    .await
                    .expect("search");
                assert!(
                    response.status().is_success(),
                    "{query}: {}",
                    response.status()
                );
                let page = response.text().await.expect("page");
                let elapsed = begun.elapsed();
                if pass == 0 {
                    continue;
                }
                let hits = page.matches("<a class=\"household\"").count();
                match by_kind.iter_mut().find(|(name, _, _)| name == kind) {
                    Some((_, times, total)) => {
                        times.push(elapsed);
                        *total += hits;
                    }
                    None => by_kind.push((kind, vec![elapsed], hits)),
                }
                all_times.push(elapsed);
            }
        }
        for (kind, mut times, hits) in by_kind {
            let count = times.len();
            println!(
                "| {who} | {kind} | {:.1} ms | {:.1} ms | {:.1} ms | {:.0} |",
                percentile(&mut times, 0.50),
                percentile(&mut times, 0.95),
                percentile(&mut times, 1.0),
                hits as f64 / count as f64
            );
        }
    }
    let p95 = percentile(&mut all_times, 0.95);
    println!();
    println!(
        "All {} requests: p50 {:.1} ms, p95 {p95:.1} ms, max {:.1} ms — target p95 ≤ \
         {TARGET_P95_MS} ms: {}.",
        all_times.len(),
        percentile(&mut all_times, 0.50),
        percentile(&mut all_times, 1.0),
        if p95 <= TARGET_P95_MS {
            "met"
        } else {
            "**not met**"
        }
    );
    println!();

    // The store call alone, county-wide, in-process.
    let area = LedgerArea::County(admin.area_id.clone());
    let mut store_times = Vec::new();
    for (_, query) in &mix {
        let parsed = HouseholdQuery::parse(query).expect("query");
        let begun = Instant::now();
        server
            .state
            .store
            .search_households(&area, &parsed, SEARCH_LIMIT + 1)
            .await
            .expect("search");
        store_times.push(begun.elapsed());
    }
    println!(
        "`search_households` alone (county-wide, in-process, {} calls): p50 {:.1} ms, p95 \
         {:.1} ms, max {:.1} ms.",
        store_times.len(),
        percentile(&mut store_times, 0.50),
        percentile(&mut store_times, 0.95),
        percentile(&mut store_times, 1.0)
    );
}

fn today() -> String {
    let now = OffsetDateTime::now_utc();
    format!(
        "{}-{:02}-{:02} {:02}:{:02} UTC",
        now.year(),
        now.month() as u8,
        now.day(),
        now.hour(),
        now.minute()
    )
}
