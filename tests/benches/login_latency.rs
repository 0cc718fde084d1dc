//! Login latency (issue 11 §4): `Auth/Login` p95 at 100 in flight against a
//! `grpc.health.v1` Check at 100 in flight on the same real release `fieldsync-server`, with
//! the argon2id defaults of issue 11 (m = 7168 KiB, t = 5, p = 1) and, on a second server,
//! with the earlier defaults (m = 19456 KiB, t = 2, p = 1) for comparison. Before that it
//! times every argon2id configuration of the OWASP Password Storage Cheat Sheet on the
//! server's password pool (one worker), which is how the default was chosen.
//!
//! Each of the 1,000 logins is a fresh device of its own load-test cadre (seeded with
//! `fieldsync_loadgen::seed`, the shared password hashed at the parameters under test), so
//! every login verifies one full argon2id hash and writes one session row. The floor of the
//! login p95 is about `in_flight × hash time / hashing threads`: the pool hashes
//! `hashing_threads` (one per core) passwords at once and the rest wait in its queue. All
//! devices come from 127.0.0.1; every login succeeds, and the per-address failure limit is
//! raised (`FIELDSYNC_LOGIN__ADDRESS_FAILURES_BEFORE_LOCK=1000000`) so a stray failure
//! cannot lock the one shared address.
//!
//! Run: `cargo bench -p fieldsync-tests --bench login_latency` (see BENCHMARKS.md); it
//! prints a markdown section ready to paste. The hash timings run inside the bench process,
//! so they are release figures only in the `cargo bench` form; `-- --server-binary PATH`
//! runs another server build.

use fieldsync_loadgen::hash_costs;
use fieldsync_loadgen::machine::{cores, cpu_model, load_average, status_mib};
use fieldsync_loadgen::report::RunReport;
use fieldsync_loadgen::run::{Mix, RunOptions, run as run_devices};
use fieldsync_loadgen::seed::{SeedOptions, seed_county};
use fieldsync_server::settings::LoginSettings;
use fieldsync_tests::ServerProcess;

const LOGINS: usize = 1_000;
const IN_FLIGHT: usize = 100;
const HASH_ROUNDS: usize = 30;

fn main() {
    fieldsync_tests::bench_main("login_latency", bench);
}

/// What one server configuration measured.
struct Measured {
    label: String,
    health: RunReport,
    login: RunReport,
    peak_rss_mib: f64,
}

/// The server binary: `--server-binary PATH`, else the one of this build's profile.
fn server_binary() -> std::path::PathBuf {
    match std::env::args()
        .skip_while(|arg| arg != "--server-binary")
        .nth(1)
    {
        Some(path) => std::path::PathBuf::from(path),
        None => fieldsync_tests::server_binary(),
    }
}

async fn measure(label: &str, memory_kib: u32, iterations: u32) -> Measured {
    let root = tempfile::tempdir().expect("temp dir");
    let data_dir = root.path().join("data");
    let hashing = LoginSettings {
        argon2_memory_kib: memory_kib,
        argon2_iterations: iterations,
        ..LoginSettings::default()
    };
    seed_county(&SeedOptions {
        password_hashing: hashing,
        ..SeedOptions::new(data_dir.clone(), LOGINS, 1)
    })
    .await
    .expect("seed");
    let memory = memory_kib.to_string();
    let passes = iterations.to_string();
    let server = ServerProcess::start_binary(
        &server_binary(),
        &data_dir,
        false,
        &[
            ("FIELDSYNC_LOGIN__ADDRESS_FAILURES_BEFORE_LOCK", "1000000"),
            ("FIELDSYNC_LOGIN__ARGON2_MEMORY_KIB", &memory),
            ("FIELDSYNC_LOGIN__ARGON2_ITERATIONS", &passes),
        ],
    )
    .await;
    let options = |mix| RunOptions {
        in_flight: IN_FLIGHT,
        ..RunOptions::new(server.url(), LOGINS, mix)
    };
    let health = run_devices(&options(Mix::Health)).await.expect("health");
    let login = run_devices(&options(Mix::LoginOnly)).await.expect("login");
    let peak_rss_mib = status_mib(server.pid(), "VmHWM").unwrap_or(f64::NAN);
    drop(server);
    Measured {
        label: label.to_owned(),
        health,
        login,
        peak_rss_mib,
    }
}

async fn bench() {
    let load_at_start = load_average();
    let costs = hash_costs::measure(HASH_ROUNDS).await.expect("hash costs");
    let new_defaults = LoginSettings::default();
    let measured = [
        measure(
            "issue 11 default m = 7168 KiB, t = 5",
            new_defaults.argon2_memory_kib,
            new_defaults.argon2_iterations,
        )
        .await,
        measure("earlier default m = 19456 KiB, t = 2", 19_456, 2).await,
    ];
    let load_at_end = load_average();
    let threads = new_defaults.hashing_threads();

    println!("## Login latency (issue 11)\n");
    println!(
        "Machine: {} core(s), {}; load average (1/5/15 min) {load_at_start} at the start, \
         {load_at_end} at the end. Server: release `fieldsync-server`, {threads} hashing \
         thread(s).\n",
        cores(),
        cpu_model()
    );
    println!(
        "### One argon2id hash on the server's password pool ({HASH_ROUNDS} hashes each)\n\n{}",
        hash_costs::markdown(&costs)
    );
    println!(
        "\n### {LOGINS} logins (each a new device of its own cadre) vs {LOGINS} health Checks, \
         {IN_FLIGHT} in flight, same server\n"
    );
    println!(
        "| argon2id | health p50 | health p95 | login p50 | login p95 | login p99 | login max | \
         login p95 / health p95 | logins/s | errors | floor ≈ {IN_FLIGHT} × hash p50 / {threads} | peak RSS |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for run in &measured {
        let health = run.health.rpc("grpc.health.v1/Check").expect("health row");
        let login = run.login.rpc("Auth/Login").expect("login row");
        let hash_p50 = costs
            .iter()
            .find(|cost| run.label.contains(&format!("m = {} KiB", cost.memory_kib)))
            .map_or(f64::NAN, |cost| cost.p50_ms);
        println!(
            "| {} | {:.1} ms | {:.1} ms | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {:.0}× | \
             {:.1} | {} | {:.0} ms | {:.1} MiB |",
            run.label,
            health.p50_ms,
            health.p95_ms,
            login.p50_ms,
            login.p95_ms,
            login.p99_ms,
            login.max_ms,
            login.p95_ms / health.p95_ms,
            LOGINS as f64 / run.login.wall_seconds,
            run.login.total_errors() + run.health.total_errors(),
            IN_FLIGHT as f64 * hash_p50 / threads as f64,
            run.peak_rss_mib
        );
    }
}
