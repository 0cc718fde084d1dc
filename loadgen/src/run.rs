//! Simulated phones: each device is its own install (its own `device_id`, its own
//! connection) logging in with its own cadre account and running one script (the mix)
//! against a running server; `in_flight` devices run at once.
//!
//! Devices speak raw gRPC with the `fieldsync-proto` messages, not the client core: a client
//! core per device would keep a SQLite replica with durable writes per device, so 1,000 of
//! them on the same 2 cores would measure the phones' fsyncs, not the server. The messages
//! are the ones the client core sends (same services, same fields, a fresh device pushing
//! from seq 1), so the server does the same work.
//!
//! Every random choice (device ids, which households get visits, the visits' contents, think
//! jitter) comes from a generator seeded with `seed` and the device's index, so a run is
//! reproducible whatever order the devices get scheduled in. Errors are counted by gRPC code
//! (or as `Rejected:<code>` for a push mutation the server refused), never panicked on.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fieldsync_proto::v1;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::report::{OK, RpcSamples, RunReport, summarise};
use crate::seed::{LOAD_PASSWORD, load_username};

/// The per-device script.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mix {
    /// A cadre's day: Login, Pull (every page), Push of 2 visits to its own households, Pull
    /// from the checkpoint.
    DeviceDay,
    /// Login only (the argon2id path).
    LoginOnly,
    /// One `grpc.health.v1.Health/Check` per device: the anchor of what the server costs
    /// when it does no work.
    Health,
}

impl Mix {
    pub fn name(self) -> &'static str {
        match self {
            Self::DeviceDay => "device-day",
            Self::LoginOnly => "login-only",
            Self::Health => "health",
        }
    }

    /// The steps this mix reports, in script order.
    fn steps(self) -> &'static [Step] {
        match self {
            Self::DeviceDay => &[
                Step::Connect,
                Step::Login,
                Step::PullFirst,
                Step::Push,
                Step::PullAgain,
            ],
            Self::LoginOnly => &[Step::Connect, Step::Login],
            Self::Health => &[Step::Connect, Step::Health],
        }
    }
}

/// One measured step of a script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Connect,
    Login,
    PullFirst,
    Push,
    PullAgain,
    Health,
}

impl Step {
    const ALL: [Step; 6] = [
        Step::Connect,
        Step::Login,
        Step::PullFirst,
        Step::Push,
        Step::PullAgain,
        Step::Health,
    ];

    fn index(self) -> usize {
        Self::ALL
            .iter()
            .position(|step| *step == self)
            .expect("every step is in ALL")
    }

    fn name(self) -> &'static str {
        match self {
            Self::Connect => "connect (TCP/TLS)",
            Self::Login => "Auth/Login",
            Self::PullFirst => "Sync/Pull (first, every page)",
            Self::Push => "Sync/Push (2 visits)",
            Self::PullAgain => "Sync/Pull (from checkpoint)",
            Self::Health => "grpc.health.v1/Check",
        }
    }
}

/// What to run, against which servers.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Server URLs (`http://` or `https://`); device `i` uses `urls[i % urls.len()]`.
    pub urls: Vec<String>,
    /// Extra CA (PEM) for `https://` servers with a county certificate.
    pub ca_file: Option<PathBuf>,
    pub devices: usize,
    pub in_flight: usize,
    /// Mean pause between a device's RPCs (jittered ±50 %); 0 for none.
    pub think_ms: u64,
    pub seed: u64,
    pub mix: Mix,
    /// Seeded load-test cadres; device `i` logs in as cadre `i % cadres`.
    pub cadres: usize,
    pub password: String,
}

impl RunOptions {
    /// Defaults for a county seeded with [`crate::seed::seed_county`].
    pub fn new(url: String, devices: usize, mix: Mix) -> Self {
        Self {
            urls: vec![url],
            ca_file: None,
            devices,
            in_flight: 100,
            think_ms: 0,
            seed: 42,
            mix,
            cadres: devices,
            password: LOAD_PASSWORD.to_owned(),
        }
    }
}

/// Why a run could not start (a device's failures are counted, not returned).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("至少需要一个服务器地址 (no server URL given)")]
    NoServer,
    #[error("设备数、并发数和干部数都必须大于 0 (devices, in-flight and cadres must be > 0)")]
    NothingToRun,
    #[error("无效的服务器地址 {url}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("cannot read CA file {path}: {source}")]
    CaFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Run `options.devices` devices, `options.in_flight` at once, and summarise what they saw.
pub async fn run(options: &RunOptions) -> Result<RunReport, RunError> {
    if options.urls.is_empty() {
        return Err(RunError::NoServer);
    }
    if options.devices == 0 || options.in_flight == 0 || options.cadres == 0 {
        return Err(RunError::NothingToRun);
    }
    let ca = match &options.ca_file {
        Some(path) => Some(std::fs::read(path).map_err(|source| RunError::CaFile {
            path: path.clone(),
            source,
        })?),
        None => None,
    };
    let endpoints: Vec<Endpoint> = options
        .urls
        .iter()
        .map(|url| endpoint(url, ca.as_deref()))
        .collect::<Result<_, _>>()?;
    let endpoints = Arc::new(endpoints);
    let options = Arc::new(options.clone());
    let next_device = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..options.in_flight.min(options.devices) {
        let (endpoints, options, next_device) = (
            Arc::clone(&endpoints),
            Arc::clone(&options),
            Arc::clone(&next_device),
        );
        workers.spawn(async move {
            let mut samples = vec![RpcSamples::default(); Step::ALL.len()];
            let mut clean = 0usize;
            loop {
                let device_index = next_device.fetch_add(1, Ordering::SeqCst);
                if device_index >= options.devices {
                    return (samples, clean);
                }
                let endpoint = &endpoints[device_index % endpoints.len()];
                if run_device(device_index, endpoint, &options, &mut samples).await {
                    clean += 1;
                }
            }
        });
    }
    let mut all = vec![RpcSamples::default(); Step::ALL.len()];
    let mut devices_clean = 0;
    for (samples, clean) in workers.join_all().await {
        devices_clean += clean;
        for (total, part) in all.iter_mut().zip(samples) {
            total.merge(part);
        }
    }
    let wall_seconds = started.elapsed().as_secs_f64();
    let rpcs = options
        .mix
        .steps()
        .iter()
        .map(|step| summarise(step.name(), std::mem::take(&mut all[step.index()])))
        .collect();
    Ok(RunReport {
        mix: options.mix.name().to_owned(),
        devices: options.devices,
        in_flight: options.in_flight,
        think_ms: options.think_ms,
        seed: options.seed,
        wall_seconds,
        devices_clean,
        rpcs,
    })
}

/// A lazily connected endpoint for `url`; `https://` gets TLS with the Mozilla roots plus
/// the extra CA, never a plain-text fallback.
fn endpoint(url: &str, ca: Option<&[u8]>) -> Result<Endpoint, RunError> {
    let bad_url = |reason: String| RunError::BadUrl {
        url: url.to_owned(),
        reason,
    };
    let mut endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|error| bad_url(error.to_string()))?
        .tcp_nodelay(true);
    if url.starts_with("https://") {
        let mut tls = ClientTlsConfig::new().with_webpki_roots();
        if let Some(pem) = ca {
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|error| bad_url(error.to_string()))?;
    } else if !url.starts_with("http://") {
        return Err(bad_url("必须以 http:// 或 https:// 开头".into()));
    }
    Ok(endpoint)
}

/// The outcome name of a failed RPC.
fn code_name(status: &tonic::Status) -> String {
    format!("{:?}", status.code())
}

/// One device's script. Returns true when every step succeeded.
async fn run_device(
    device_index: usize,
    endpoint: &Endpoint,
    options: &RunOptions,
    samples: &mut [RpcSamples],
) -> bool {
    // The device's own stream: the same choices whichever worker runs it.
    let mut random = StdRng::seed_from_u64(
        options
            .seed
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(device_index as u64),
    );
    let device_id = uuid::Builder::from_random_bytes(random.random()).into_uuid();
    let mut record = |step: Step, latency: Duration, outcome: &str| {
        samples[step.index()].record(latency, outcome);
        outcome == OK
    };

    let sent = Instant::now();
    let channel = match endpoint.connect().await {
        Ok(channel) => {
            record(Step::Connect, sent.elapsed(), OK);
            channel
        }
        Err(_) => {
            // A transport error has no gRPC code.
            record(Step::Connect, sent.elapsed(), "ConnectFailed");
            return false;
        }
    };

    if options.mix == Mix::Health {
        let sent = Instant::now();
        let outcome = tonic_health::pb::health_client::HealthClient::new(channel)
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await;
        let name = outcome.map_or_else(|status| code_name(&status), |_| OK.to_owned());
        return record(Step::Health, sent.elapsed(), &name);
    }

    think(options.think_ms, &mut random).await;
    let sent = Instant::now();
    let login = v1::auth_client::AuthClient::new(channel.clone())
        .login(v1::LoginRequest {
            username: load_username(device_index % options.cadres),
            password: options.password.clone(),
            device_id: device_id.to_string(),
            device_name: format!("压测设备{device_index:05}"),
            client: Some(client_info()),
            wants_refresh_token: false,
        })
        .await;
    let token = match login {
        Ok(response) => {
            record(Step::Login, sent.elapsed(), OK);
            response.into_inner().token
        }
        Err(status) => {
            record(Step::Login, sent.elapsed(), &code_name(&status));
            return false;
        }
    };
    if options.mix == Mix::LoginOnly {
        return true;
    }

    let mut sync = v1::sync_client::SyncClient::new(channel);
    think(options.think_ms, &mut random).await;
    let sent = Instant::now();
    let (household_ids, cursor) = match pull(&mut sync, &token, String::new()).await {
        Ok(pulled) => {
            record(Step::PullFirst, sent.elapsed(), OK);
            pulled
        }
        Err(outcome) => {
            record(Step::PullFirst, sent.elapsed(), &outcome);
            return false;
        }
    };
    if household_ids.is_empty() {
        // Nothing to visit: the seeding and the run disagree about the accounts.
        record(Step::Push, Duration::ZERO, "NoHouseholdInScope");
        return false;
    }

    think(options.think_ms, &mut random).await;
    let request = push_request(&device_id, &token, &household_ids, &mut random);
    let sent = Instant::now();
    let push_ok = match sync.push(request).await {
        Ok(response) => {
            let response = response.into_inner();
            let refused = response
                .results
                .iter()
                .find(|result| result.outcome != v1::MutationOutcome::Applied as i32);
            let outcome = match refused {
                Some(result) => format!("Rejected:{}", result.reject_code),
                None if response.results.len() != VISITS_PER_PUSH => "MissingResults".into(),
                None => OK.to_owned(),
            };
            record(Step::Push, sent.elapsed(), &outcome)
        }
        Err(status) => record(Step::Push, sent.elapsed(), &code_name(&status)),
    };

    think(options.think_ms, &mut random).await;
    let sent = Instant::now();
    let pull_ok = match pull(&mut sync, &token, cursor).await {
        Ok(_) => record(Step::PullAgain, sent.elapsed(), OK),
        Err(outcome) => record(Step::PullAgain, sent.elapsed(), &outcome),
    };
    push_ok && pull_ok
}

/// Visits in the device-day push.
const VISITS_PER_PUSH: usize = 2;

/// What cadres write after a visit; one is picked per visit.
const OBSERVATIONS: [&str; 4] = [
    "户主在家，秋粮已收，家中老人身体尚可。",
    "家中两人外出务工，留守老人按时服药，住房安全。",
    "养殖的三头牛长势良好，已联系合作社收购。",
    "孩子在镇中学住校，营养餐按时发放，无辍学风险。",
];

/// A push of [`VISITS_PER_PUSH`] in-person visits to households picked from the device's
/// scope, from seq 1 (a fresh install).
fn push_request(
    device_id: &uuid::Uuid,
    token: &str,
    household_ids: &[String],
    random: &mut StdRng,
) -> tonic::Request<v1::PushRequest> {
    let now = time::OffsetDateTime::now_utc();
    let wire_now = fieldsync_proto::convert::instant_to_wire(now);
    let hlc = u64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(0) << 16;
    let mutations = (0..VISITS_PER_PUSH)
        .map(|index| {
            let household_id = household_ids[random.random_range(0..household_ids.len())].clone();
            let minutes_ago = random.random_range(20..180);
            let visit = v1::Visit {
                visit_id: uuid::Builder::from_random_bytes(random.random())
                    .into_uuid()
                    .to_string(),
                revision: 1,
                household_id,
                mode: v1::VisitMode::InPerson as i32,
                r#type: v1::VisitType::Routine as i32,
                checkin_at: Some(fieldsync_proto::convert::instant_to_wire(
                    now - time::Duration::minutes(minutes_ago),
                )),
                checkout_at: Some(fieldsync_proto::convert::instant_to_wire(
                    now - time::Duration::minutes(minutes_ago - 15),
                )),
                observed_situation: OBSERVATIONS[random.random_range(0..OBSERVATIONS.len())]
                    .to_owned(),
                recorded_at_device: Some(wire_now),
                ..Default::default()
            };
            v1::Mutation {
                seq: index as u64 + 1,
                mutation_id: uuid::Builder::from_random_bytes(random.random())
                    .into_uuid()
                    .to_string(),
                hlc: hlc + index as u64,
                payload: Some(v1::mutation::Payload::SubmitVisit(visit)),
            }
        })
        .collect();
    authorized(
        v1::PushRequest {
            device_id: device_id.to_string(),
            batch_id: uuid::Builder::from_random_bytes(random.random())
                .into_uuid()
                .to_string(),
            first_seq: 1,
            mutations,
            client: Some(client_info()),
            ..Default::default()
        },
        token,
    )
}

/// Pull every page from `cursor` up to the checkpoint. Returns the ids of the households
/// received and the new cursor; an error is the outcome name to count.
async fn pull(
    sync: &mut v1::sync_client::SyncClient<Channel>,
    token: &str,
    cursor: String,
) -> Result<(Vec<String>, String), String> {
    let request = authorized(
        v1::PullRequest {
            cursor,
            client: Some(client_info()),
            ..Default::default()
        },
        token,
    );
    let mut stream = sync
        .pull(request)
        .await
        .map_err(|status| code_name(&status))?
        .into_inner();
    let mut household_ids = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(frame)) => match frame.frame {
                Some(v1::pull_response::Frame::Page(page)) => household_ids.extend(
                    page.households
                        .into_iter()
                        .map(|household| household.household_id),
                ),
                Some(v1::pull_response::Frame::Checkpoint(checkpoint)) => {
                    return Ok((household_ids, checkpoint.cursor));
                }
                Some(v1::pull_response::Frame::Reset(_)) => return Err("Reset".into()),
                None => return Err("EmptyFrame".into()),
            },
            Ok(None) => return Err("NoCheckpoint".into()),
            Err(status) => return Err(code_name(&status)),
        }
    }
}

/// Pause about `think_ms` (uniform in 0.5–1.5 × `think_ms`), as a person between screens.
async fn think(think_ms: u64, random: &mut StdRng) {
    if think_ms == 0 {
        return;
    }
    let jittered = random.random_range(think_ms / 2..=think_ms + think_ms / 2);
    tokio::time::sleep(Duration::from_millis(jittered)).await;
}

/// The client info the load generator sends: the current schema, its own app version.
fn client_info() -> v1::ClientInfo {
    v1::ClientInfo {
        schema_version: fieldsync_proto::SCHEMA_VERSION,
        app_version: concat!("loadgen-", env!("CARGO_PKG_VERSION")).into(),
    }
}

/// `message` with a bearer token.
fn authorized<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = format!("Bearer {token}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}
