//! Small RPC (issue 11 §5): a Pull with an up-to-date cursor and a unary Review call must
//! answer within 3× a `grpc.health.v1` Check on the same server (p50), at 1 and at 32
//! concurrent callers, over real TCP on loopback.
//!
//! The server holds the demo county cloned to 5,000 households (`fieldsync_tests::
//! scaled_county`) in a SQLite file on disk (every durable write pays its fsync). Each caller
//! has its own HTTP/2 connection, as each phone does. Calls per caller run back to back; the
//! latency is client-observed (request sent to last frame received).
//!
//! - Health: `grpc.health.v1.Health/Check` (tonic-health), the reference.
//! - Pull: `Sync.Pull` with the cursor of the caller's previous pull, as a phone syncs when
//!   nothing changed; with the heartbeat the phone core sends on every pull
//!   (`client-core` `sync::pull`), and once more without it. Each caller is a different
//!   cadre. Production path: `Sync.Pull` → `sync::pull::page` → `pull_changes_in`.
//! - Review: `Review.GetVisit` of a submitted visit by the township supervisor. A
//!   console-less review app lists the queue once per screen (50 items a page) but opens
//!   every visit it judges, so GetVisit is the Review call it makes most.
//!
//! Run: `cargo bench -p fieldsync-tests --bench small_rpc` (prints a markdown table).

use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use fieldsync_model::codes::VisitMode;
use fieldsync_proto::v1;
use fieldsync_server::store::conformance::{VISIT_TIME, push_visit, visit};
use fieldsync_tests::scaled_county::{ScaledServer, Storage, scaled_county, serve_scaled};
use fieldsync_tests::{authorized, client_info};
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const HOUSEHOLDS: usize = 5_000;
/// Calls of each RPC by a lone caller, and by each of the 32 concurrent callers.
const CALLS_ALONE: usize = 1_000;
const CALLS_EACH_OF_MANY: usize = 100;
const WARM_UP: usize = 20;
const CALLERS: [usize; 2] = [1, 32];
const GOAL_P50_RATIO: f64 = 3.0;

fn main() {
    fieldsync_tests::bench_main("small_rpc", run);
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Rpc {
    Health,
    PullWithHeartbeat,
    PullWithoutHeartbeat,
    GetVisit,
}

impl Rpc {
    fn label(self) -> &'static str {
        match self {
            Rpc::Health => "grpc.health.v1 Check (reference)",
            Rpc::PullWithHeartbeat => "Sync.Pull, up-to-date cursor, with heartbeat (as the phone)",
            Rpc::PullWithoutHeartbeat => "Sync.Pull, up-to-date cursor, no heartbeat",
            Rpc::GetVisit => "Review.GetVisit",
        }
    }
}

/// One caller: its own connection, token and (for Pull) cursor.
#[derive(Clone)]
struct Caller {
    channel: Channel,
    cadre_token: String,
    cursor: String,
    supervisor_token: String,
    visit_id: String,
}

async fn pull_to_checkpoint(caller: &Caller, heartbeat: bool) -> String {
    let mut sync = v1::sync_client::SyncClient::new(caller.channel.clone());
    let mut stream = sync
        .pull(authorized(
            v1::PullRequest {
                cursor: caller.cursor.clone(),
                client: Some(client_info()),
                heartbeat: heartbeat.then(|| v1::DeviceHeartbeat {
                    unsent_mutations: 0,
                    pending_uploads: 0,
                    oldest_unsent_at: None,
                    device_time: None,
                    last_error: String::new(),
                }),
            },
            &caller.cadre_token,
        ))
        .await
        .expect("pull")
        .into_inner();
    while let Some(frame) = stream.message().await.expect("frame") {
        match frame.frame {
            Some(v1::pull_response::Frame::Checkpoint(checkpoint)) => return checkpoint.cursor,
            Some(v1::pull_response::Frame::Page(_)) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
    panic!("pull ended without a checkpoint")
}

async fn call(caller: &Caller, rpc: Rpc) {
    match rpc {
        Rpc::Health => {
            let status = HealthClient::new(caller.channel.clone())
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .expect("health check")
                .into_inner()
                .status;
            assert_eq!(status, 1, "SERVING");
        }
        Rpc::PullWithHeartbeat | Rpc::PullWithoutHeartbeat => {
            let cursor = pull_to_checkpoint(caller, rpc == Rpc::PullWithHeartbeat).await;
            assert_eq!(
                cursor, caller.cursor,
                "nothing changed, so the cursor stays"
            );
        }
        Rpc::GetVisit => {
            let answer = v1::review_client::ReviewClient::new(caller.channel.clone())
                .get_visit(authorized(
                    v1::GetVisitRequest {
                        visit_id: caller.visit_id.clone(),
                    },
                    &caller.supervisor_token,
                ))
                .await
                .expect("get visit")
                .into_inner();
            assert!(answer.visit.is_some());
        }
    }
}

/// Latencies of `calls` calls by each caller, all callers at once.
async fn measure(callers: &[Caller], rpc: Rpc, calls: usize) -> Vec<StdDuration> {
    let mut tasks = Vec::new();
    for caller in callers {
        let caller = caller.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..WARM_UP {
                call(&caller, rpc).await;
            }
            let mut times = Vec::with_capacity(calls);
            for _ in 0..calls {
                let begun = Instant::now();
                call(&caller, rpc).await;
                times.push(begun.elapsed());
            }
            times
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("caller"));
    }
    all.sort();
    all
}

fn quantile(sorted: &[StdDuration], at: f64) -> f64 {
    let index = ((sorted.len() as f64 * at).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index].as_secs_f64() * 1000.0
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
    let county = scaled_county(HOUSEHOLDS);
    let supervisor = county.supervisor.clone();
    // A submitted visit in the supervisor's township, pushed through the store.
    let (author, own) = county
        .cadres
        .iter()
        .find(|(cadre, own)| cadre.area_id == supervisor.area_id && !own.is_empty())
        .expect("a cadre of the supervisor's township")
        .clone();
    let submitted = visit(&own[0], VisitMode::InPerson, VISIT_TIME);
    let cadres: Vec<String> = county
        .cadres
        .iter()
        .take(*CALLERS.iter().max().expect("callers"))
        .map(|(cadre, _)| cadre.username.clone())
        .collect();
    let server: Arc<ScaledServer> = Arc::new(serve_scaled(county.seed, Storage::Disk).await);
    push_visit(
        server.state.store.as_ref(),
        &author,
        "bench-author-device",
        1,
        &submitted,
    )
    .await;
    let supervisor_token = server.login(&supervisor.username).await;
    let mut callers = Vec::new();
    for cadre in &cadres {
        let mut caller = Caller {
            channel: server.channel().await,
            cadre_token: server.login(cadre).await,
            cursor: String::new(),
            supervisor_token: supervisor_token.clone(),
            visit_id: submitted.visit_id.clone(),
        };
        caller.cursor = pull_to_checkpoint(&caller, true).await;
        callers.push(caller);
    }

    let load_at_start = loadavg();
    let mut rows = Vec::new();
    for &count in &CALLERS {
        let calls = if count == 1 {
            CALLS_ALONE
        } else {
            CALLS_EACH_OF_MANY
        };
        let active = &callers[..count];
        let mut health = None;
        for rpc in [
            Rpc::Health,
            Rpc::PullWithHeartbeat,
            Rpc::PullWithoutHeartbeat,
            Rpc::GetVisit,
        ] {
            let times = measure(active, rpc, calls).await;
            let (p50, p95) = (quantile(&times, 0.50), quantile(&times, 0.95));
            let (health_p50, health_p95) = *health.get_or_insert((p50, p95));
            rows.push((
                rpc,
                count,
                times.len(),
                p50,
                p95,
                p50 / health_p50,
                p95 / health_p95,
            ));
        }
    }
    let load_at_end = loadavg();

    println!("## Small RPC (issue 11)");
    println!();
    println!(
        "{HOUSEHOLDS} households, SQLite on disk; each caller on its own connection over \
         loopback TCP, calls back to back after {WARM_UP} warm-up calls. Load average \
         (1/5/15 min): {load_at_start} at the start, {load_at_end} at the end."
    );
    println!();
    println!("| RPC | callers | calls | p50 | p95 | p50 ÷ health | p95 ÷ health | p50 ≤ 3× |");
    println!("|---|---|---|---|---|---|---|---|");
    for (rpc, count, calls, p50, p95, p50_ratio, p95_ratio) in rows {
        println!(
            "| {} | {count} | {calls} | {p50:.2} ms | {p95:.2} ms | {p50_ratio:.1}× | {p95_ratio:.1}× | {} |",
            rpc.label(),
            if rpc == Rpc::Health {
                "—"
            } else if p50_ratio <= GOAL_P50_RATIO {
                "yes"
            } else {
                "**no**"
            }
        );
    }
}
