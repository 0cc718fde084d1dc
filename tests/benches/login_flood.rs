//! Login flood (issue 10 item 3 target): the real `fieldsync-server --demo` binary takes
//! 1,000 gRPC logins with 64 in flight, and its peak RSS (VmHWM) must stay under 256 MiB.
//! Reports login p50/p95 next to a `grpc.health.v1.Health/Check` run at the same concurrency
//! (the anchor: what the server costs when no password is hashed).
//!
//! The logins cycle through every demo account, a quarter of them with a wrong password
//! (every fourth round of the cycle), so a success always follows a failure of the same
//! username and no username reaches its lock. All requests come from 127.0.0.1, so the
//! per-address limit is raised for this run with
//! `FIELDSYNC_LOGIN__ADDRESS_FAILURES_BEFORE_LOCK=1000000`; every other setting is the
//! default (argon2id m = 7168 KiB, t = 5, p = 1 since issue 11; one hashing thread per core).
//!
//! Run: `cargo bench -p fieldsync-tests --bench login_flood` (see BENCHMARKS.md), which
//! starts the release `fieldsync-server` next to the bench. `-- --server-binary PATH` runs
//! another build of the server instead (the load generator's own profile barely matters:
//! the server does the hashing).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fieldsync_proto::v1;
use fieldsync_tests::{ServerProcess, client_info};
use tonic::transport::Channel;

const REQUESTS: usize = 1_000;
const IN_FLIGHT: usize = 64;
const TARGET_PEAK_RSS_MIB: f64 = 256.0;

fn main() {
    fieldsync_tests::bench_main("login_flood", run);
}

/// One line of `/proc/PID/status` in MiB (`VmHWM`, `VmRSS`).
fn status_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"));
    kib / 1024.0
}

fn percentile(sorted: &[Duration], fraction: f64) -> f64 {
    let index = ((sorted.len() as f64 * fraction).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index].as_secs_f64() * 1000.0
}

/// What one phase measured.
struct Phase {
    latencies: Vec<Duration>,
    wall: Duration,
    /// Outcome counts by gRPC code name ("Ok" for success).
    outcomes: std::collections::BTreeMap<String, usize>,
}

/// Run `REQUESTS` calls of `call` with `IN_FLIGHT` workers, each on its own connection (as
/// 64 phones would be).
async fn phase<F, Fut>(server: &ServerProcess, call: F) -> Phase
where
    F: Fn(Channel, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), tonic::Status>> + Send,
{
    let call = Arc::new(call);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..IN_FLIGHT {
        let channel = server.channel().await;
        let (call, next) = (Arc::clone(&call), Arc::clone(&next));
        workers.spawn(async move {
            let mut results = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::SeqCst);
                if index >= REQUESTS {
                    return results;
                }
                let sent = Instant::now();
                let outcome = call(channel.clone(), index).await;
                let code = match outcome {
                    Ok(()) => "Ok".to_owned(),
                    Err(status) => format!("{:?}", status.code()),
                };
                results.push((sent.elapsed(), code));
            }
        });
    }
    let mut latencies = Vec::with_capacity(REQUESTS);
    let mut outcomes = std::collections::BTreeMap::new();
    for (latency, code) in workers.join_all().await.into_iter().flatten() {
        latencies.push(latency);
        *outcomes.entry(code).or_insert(0) += 1;
    }
    let wall = started.elapsed();
    latencies.sort();
    Phase {
        latencies,
        wall,
        outcomes,
    }
}

async fn run() {
    let data = tempfile::tempdir().expect("temp dir");
    let binary = match std::env::args()
        .skip_while(|arg| arg != "--server-binary")
        .nth(1)
    {
        Some(path) => std::path::PathBuf::from(path),
        None => fieldsync_tests::server_binary(),
    };
    let server = ServerProcess::start_binary(
        &binary,
        data.path(),
        true,
        &[("FIELDSYNC_LOGIN__ADDRESS_FAILURES_BEFORE_LOCK", "1000000")],
    )
    .await;
    let pid = server.pid();
    let accounts: Vec<String> = fieldsync_server::demo::demo_logins()
        .into_iter()
        .map(|login| login.username)
        .collect();
    let password = fieldsync_server::demo::DEMO_PASSWORD;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("model name")?.split(':').nth(1))
                .map(|name| name.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let started_rss = status_mib(pid, "VmRSS");

    let health = phase(&server, |channel, _index| async move {
        tonic_health::pb::health_client::HealthClient::new(channel)
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map(|_| ())
    })
    .await;
    let after_health_hwm = status_mib(pid, "VmHWM");

    let accounts = Arc::new(accounts);
    let login_accounts = Arc::clone(&accounts);
    let logins = phase(&server, move |channel, index| {
        let accounts = Arc::clone(&login_accounts);
        async move {
            let username = accounts[index % accounts.len()].clone();
            let wrong = (index / accounts.len()) % 4 == 3;
            v1::auth_client::AuthClient::new(channel)
                .login(v1::LoginRequest {
                    username,
                    password: if wrong { "wrong-password" } else { password }.into(),
                    device_id: uuid::Uuid::now_v7().to_string(),
                    device_name: "login-flood".into(),
                    client: Some(client_info()),
                    wants_refresh_token: false,
                })
                .await
                .map(|_| ())
        }
    })
    .await;
    let peak_hwm = status_mib(pid, "VmHWM");
    let end_rss = status_mib(pid, "VmRSS");

    println!("## Login flood: {REQUESTS} gRPC logins, {IN_FLIGHT} in flight\n");
    println!(
        "Machine: {cores} core(s), {cpu}; server: `{}` --demo (pid {pid}), {} demo accounts, one hashing thread per core.\n",
        binary.display(),
        accounts.len()
    );
    println!("| measure | health Check (anchor) | Login |");
    println!("|---|---|---|");
    let row =
        |name: &str, health: String, login: String| println!("| {name} | {health} | {login} |");
    row(
        "p50 latency",
        format!("{:.1} ms", percentile(&health.latencies, 0.50)),
        format!("{:.1} ms", percentile(&logins.latencies, 0.50)),
    );
    row(
        "p95 latency",
        format!("{:.1} ms", percentile(&health.latencies, 0.95)),
        format!("{:.1} ms", percentile(&logins.latencies, 0.95)),
    );
    row(
        "max latency",
        format!("{:.1} ms", percentile(&health.latencies, 1.0)),
        format!("{:.1} ms", percentile(&logins.latencies, 1.0)),
    );
    row(
        "throughput",
        format!("{:.0} /s", REQUESTS as f64 / health.wall.as_secs_f64()),
        format!("{:.1} /s", REQUESTS as f64 / logins.wall.as_secs_f64()),
    );
    row(
        "outcomes",
        format!("{:?}", health.outcomes),
        format!("{:?}", logins.outcomes),
    );
    row(
        "server peak RSS (VmHWM) after the phase",
        format!("{after_health_hwm:.1} MiB"),
        format!("{peak_hwm:.1} MiB"),
    );
    println!(
        "\nServer RSS after start: {started_rss:.1} MiB; after the flood: {end_rss:.1} MiB. \
         Peak RSS target < {TARGET_PEAK_RSS_MIB} MiB: {}.",
        if peak_hwm < TARGET_PEAK_RSS_MIB {
            "met"
        } else {
            "NOT met"
        }
    );
    drop(server);
}
