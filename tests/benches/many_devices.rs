//! Many devices (issue 11 §5 target): 1,000 simulated phones, each its own install and its own
//! cadre account, run a cadre's day (`device-day`: Login, Pull of every page, Push of 2 visits
//! to its own households, Pull from the checkpoint) against the real release
//! `fieldsync-server` binary, 100 devices in flight. Reports p95 per RPC, errors by gRPC
//! code, and the server's peak RSS (VmHWM). Goal: 0 errors and peak RSS < 256 MiB.
//!
//! The county (the demo county plus 1,000 load-test cadres with 10 households each) is
//! seeded with `fieldsync_loadgen::seed` into an empty data folder before the server starts;
//! the devices are `fieldsync_loadgen::run` (raw gRPC, fixed seed 42). A `grpc.health.v1`
//! Check run of 1,000 devices at the same concurrency on the same server is the anchor.
//!
//! The data folder is on the ordinary disk (not /dev/shm): pushes and logins are durable
//! writes and their fsyncs are part of what a phone waits for. All devices come from
//! 127.0.0.1; every login here succeeds, so the per-address failure limit never triggers,
//! but it is raised (`FIELDSYNC_LOGIN__ADDRESS_FAILURES_BEFORE_LOCK=1000000`) so that a
//! stray failure cannot lock the one address every device shares. Every other setting is
//! the default.
//!
//! Run: `cargo bench -p fieldsync-tests --bench many_devices` (see BENCHMARKS.md); it prints
//! a markdown section ready to paste. `-- --server-binary PATH` runs another server build.

use fieldsync_loadgen::machine::{cores, cpu_model, load_average, status_mib};
use fieldsync_loadgen::run::{Mix, RunOptions, run as run_devices};
use fieldsync_loadgen::seed::{SeedOptions, seed_county};
use fieldsync_tests::ServerProcess;

const DEVICES: usize = 1_000;
const IN_FLIGHT: usize = 100;
const HOUSEHOLDS_PER_CADRE: usize = 10;
const SEED: u64 = 42;
const TARGET_PEAK_RSS_MIB: f64 = 256.0;

fn main() {
    fieldsync_tests::bench_main("many_devices", bench);
}

async fn bench() {
    let load_at_start = load_average();
    let root = tempfile::tempdir().expect("temp dir");
    let data_dir = root.path().join("data");
    let binary = match std::env::args()
        .skip_while(|arg| arg != "--server-binary")
        .nth(1)
    {
        Some(path) => std::path::PathBuf::from(path),
        None => fieldsync_tests::server_binary(),
    };
    let seeded = seed_county(&SeedOptions::new(
        data_dir.clone(),
        DEVICES,
        HOUSEHOLDS_PER_CADRE,
    ))
    .await
    .expect("seed the county");
    let server = ServerProcess::start_binary(
        &binary,
        &data_dir,
        false,
        &[("FIELDSYNC_LOGIN__ADDRESS_FAILURES_BEFORE_LOCK", "1000000")],
    )
    .await;
    let pid = server.pid();
    let rss_at_start = status_mib(pid, "VmRSS").unwrap_or(f64::NAN);

    let day = run_devices(&RunOptions {
        in_flight: IN_FLIGHT,
        seed: SEED,
        ..RunOptions::new(server.url(), DEVICES, Mix::DeviceDay)
    })
    .await
    .expect("device-day run");
    let peak_after_day = status_mib(pid, "VmHWM").unwrap_or(f64::NAN);
    let health = run_devices(&RunOptions {
        in_flight: IN_FLIGHT,
        seed: SEED,
        ..RunOptions::new(server.url(), DEVICES, Mix::Health)
    })
    .await
    .expect("health run");
    let rss_at_end = status_mib(pid, "VmRSS").unwrap_or(f64::NAN);
    let load_at_end = load_average();

    println!("## Many devices (issue 11)\n");
    println!(
        "Machine: {} core(s), {}; load average (1/5/15 min) {load_at_start} at the start, \
         {load_at_end} at the end.",
        cores(),
        cpu_model()
    );
    println!(
        "Server: `{}` (pid {pid}) on a county of {} households (the demo county plus {} \
         load-test cadres × {HOUSEHOLDS_PER_CADRE}), data on disk.\n",
        binary.display(),
        seeded.households,
        seeded.cadres
    );
    println!("### device-day\n\n{}", day.markdown());
    println!(
        "\n### Anchor: grpc.health.v1 Check on the same server\n\n{}",
        health.markdown()
    );
    let health_p95 = health
        .rpc("grpc.health.v1/Check")
        .map_or(f64::NAN, |rpc| rpc.p95_ms);
    println!("\n| RPC | p95 | p95 / health Check p95 |\n|---|---|---|");
    for rpc in day
        .rpcs
        .iter()
        .filter(|rpc| !rpc.rpc.starts_with("connect"))
    {
        println!(
            "| {} | {:.1} ms | {:.1}× |",
            rpc.rpc,
            rpc.p95_ms,
            rpc.p95_ms / health_p95
        );
    }
    println!(
        "\nServer RSS at start {rss_at_start:.1} MiB; peak (VmHWM) after the 1,000 device-days \
         {peak_after_day:.1} MiB; RSS at the end {rss_at_end:.1} MiB."
    );
    let errors = day.total_errors();
    println!(
        "Goal: 0 errors ({}: {errors}) and peak RSS < {TARGET_PEAK_RSS_MIB} MiB ({}: \
         {peak_after_day:.1} MiB).",
        if errors == 0 { "met" } else { "NOT met" },
        if peak_after_day < TARGET_PEAK_RSS_MIB {
            "met"
        } else {
            "NOT met"
        }
    );
    drop(server);
}
