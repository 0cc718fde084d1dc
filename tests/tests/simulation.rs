//! Deterministic simulation of sync (issue 3).
//!
//! One real server (a real `AppState` over a real SQLite file and blob folder, served by
//! `fieldsync_server::serve` on a loopback socket) and three real client cores (each with its
//! own SQLite file) share one fake clock and one seeded RNG. The phones talk to the server
//! through [`FaultyTransport`], which wraps the real `GrpcTransport` (real gRPC underneath)
//! and drops requests, drops responses, duplicates requests, holds requests back and
//! delivers them later (delay and reorder), re-delivers stale copies, tears pull streams
//! before their checkpoint and cuts phones off (partitions). Phones are killed (also in the
//! middle of a sync, after the server committed and before the phone heard back) and
//! reopened from their data folder; the server is stopped and restarted on the same data
//! folder on a new port, sometimes staying down for a few steps. A supervisor approves and
//! returns visits, and cadres correct returned visits (new revisions).
//!
//! Everything runs on one task, one action at a time, and every call is awaited before the
//! next step, so a seed replays the same schedule of actions and faults. (Record ids are
//! UUIDv7s and differ between runs; device ids are fixed per seed because they break HLC
//! ties.) After the schedule the network heals and every phone syncs until nothing moves
//! (quiesce); then:
//!
//! 1. every mutation a phone saw acknowledged (its outbox entry went away) is on the server
//!    exactly once: one `applied_mutations` row per `(device_id, seq)` with the same
//!    mutation id and no rejection, one register write per field edit, one visit row per
//!    `(visit_id, revision)`, one photo row per photo, one member row per added member;
//! 2. no duplicate visits or photos, and every photo's bytes arrived;
//! 3. every phone's household cards equal the server's `get_household`, and every visit on
//!    a phone has the server's latest revision and review state;
//! 4. the conflict records are exactly the pairs of concurrent writes (ground truth from the
//!    harness: the later-applied write's author had not pulled the earlier one) from
//!    different devices with different values.
//!
//! Seeds are independent worlds and run on up to 4 threads (one single-threaded runtime
//! each). A failure prints `SIMULATION FAILED seed=N step=K: <what>` with the last actions.
//! `FIELDSYNC_SIM_SEED=N` runs only seed N (replay); `FIELDSYNC_SIM_SEEDS=K` runs seeds
//! 1..=K; `FIELDSYNC_SIM_TRACE=1` prints every action.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use fieldsync_client::edits::AddMemberPayload;
use fieldsync_client::records::{
    LoginGrant, LoginRequest, MutationKind, OutboxEntry, PullFrame, PullRequest, PushAck,
    PushBatch, UploadPosition,
};
use fieldsync_client::{
    ChunkRefused, Client, ClientError, ClientResult, GrpcTransport, NewVisit, PullFrames,
    SyncTransport, VisitState,
};
use fieldsync_model::codes::{
    Disability, Health, LabourCapacity, Relation, ReviewState, Role, Schooling, Sex, VisitMode,
};
use fieldsync_model::household::{Household, Member};
use fieldsync_model::register::{FieldEdit, FieldTarget};
use fieldsync_model::review::{Decision, DecisionRequest, ReturnReason};
use fieldsync_model::visit::{PhotoRecord, Visit};
use fieldsync_server::AppState;
use fieldsync_server::settings::Settings;
use fieldsync_server::store::{Pairing, Principal, QueueFilter, SeedData};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};
use tokio::sync::{Notify, oneshot};

/// Seeds in the default run.
const DEFAULT_SEEDS: u64 = 200;
/// Scheduled actions per seed (before quiesce).
const STEPS: usize = 40;
const PHONES: usize = 3;
/// Quiesce rounds (every phone syncs once per round) before giving up.
const QUIESCE_ROUNDS: usize = 8;
/// First instant of every run: 2025-06-10 09:00 Beijing time.
const START_UNIX: i64 = 1_749_517_200;

type SimResult<T> = Result<T, String>;

// ---------------------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------------------

/// The one fake clock of a run: the server's clock, and the base of every phone's clock.
#[derive(Debug)]
struct SimClock(Mutex<OffsetDateTime>);

impl SimClock {
    fn read(&self) -> OffsetDateTime {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn advance(&self, by: Duration) {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) += by;
    }
}

impl fieldsync_server::clock::Clock for SimClock {
    fn now(&self) -> OffsetDateTime {
        self.read()
    }
}

impl fieldsync_client::Clock for SimClock {
    fn now(&self) -> OffsetDateTime {
        self.read()
    }
}

/// A phone's wall clock: the shared clock plus this phone's skew. Skews stay below the
/// server's 5-minute clamp, so the HLC a phone sends is the HLC the server stores.
#[derive(Debug)]
struct PhoneClock {
    shared: Arc<SimClock>,
    skew_secs: Mutex<i64>,
}

impl PhoneClock {
    fn set_skew(&self, seconds: i64) {
        *self
            .skew_secs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = seconds;
    }
}

impl fieldsync_client::Clock for PhoneClock {
    fn now(&self) -> OffsetDateTime {
        let skew = *self
            .skew_secs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.shared.read() + Duration::seconds(skew)
    }
}

// ---------------------------------------------------------------------------------------
// The faulty network
// ---------------------------------------------------------------------------------------

/// What the network does with one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Deliver,
    /// The request never reaches the server.
    DropRequest,
    /// The server handles the request; the answer is lost.
    DropResponse,
    /// The request reaches the server twice; the phone hears the second answer.
    Duplicate,
    /// The request is held in the network and delivered later (after other steps); the
    /// phone times out.
    Hold,
    /// The phone dies during this call, after the request was (or was not) delivered.
    Crash {
        deliver: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Login,
    Push,
    Pull,
    Upload,
}

/// A push request travelling in the network.
#[derive(Debug)]
struct Held {
    phone: usize,
    token: String,
    batch: PushBatch,
}

/// Counts of injected faults, summed over all seeds at the end.
#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    dropped_requests: u64,
    dropped_responses: u64,
    duplicated: u64,
    held: u64,
    stale_copies: u64,
    held_delivered: u64,
    torn_pulls: u64,
    partitioned_calls: u64,
    phone_crashes_mid_sync: u64,
    phone_restarts: u64,
    server_restarts: u64,
    server_down_steps: u64,
    conflicts: u64,
    visits: u64,
    edits: u64,
    decisions: u64,
    corrections: u64,
}

impl Stats {
    fn add(&mut self, other: &Stats) {
        self.dropped_requests += other.dropped_requests;
        self.dropped_responses += other.dropped_responses;
        self.duplicated += other.duplicated;
        self.held += other.held;
        self.stale_copies += other.stale_copies;
        self.held_delivered += other.held_delivered;
        self.torn_pulls += other.torn_pulls;
        self.partitioned_calls += other.partitioned_calls;
        self.phone_crashes_mid_sync += other.phone_crashes_mid_sync;
        self.phone_restarts += other.phone_restarts;
        self.server_restarts += other.server_restarts;
        self.server_down_steps += other.server_down_steps;
        self.conflicts += other.conflicts;
        self.visits += other.visits;
        self.edits += other.edits;
        self.decisions += other.decisions;
        self.corrections += other.corrections;
    }
}

/// The network's state, shared by every phone's transport.
#[derive(Debug)]
struct Network {
    rng: StdRng,
    /// No faults at all (setup and quiesce).
    quiet: bool,
    /// Per phone: steps left cut off from the server.
    offline: [u32; PHONES],
    held: Vec<Held>,
    /// `(phone, calls to let through first, deliver the fatal call)`.
    crash: Option<(usize, u32, bool)>,
    stats: Stats,
}

impl Network {
    fn fate(&mut self, phone: usize, call: Call) -> Fate {
        if let Some((crash_phone, calls_left, deliver)) = self.crash.as_mut()
            && *crash_phone == phone
        {
            if *calls_left == 0 {
                let deliver = *deliver;
                self.crash = None;
                self.stats.phone_crashes_mid_sync += 1;
                return Fate::Crash { deliver };
            }
            *calls_left -= 1;
        }
        if self.quiet {
            return Fate::Deliver;
        }
        if self.offline[phone] > 0 {
            self.stats.partitioned_calls += 1;
            return Fate::DropRequest;
        }
        let roll: f64 = self.rng.random();
        let fate = match call {
            Call::Login => {
                if roll < 0.1 {
                    Fate::DropRequest
                } else if roll < 0.2 {
                    Fate::DropResponse
                } else {
                    Fate::Deliver
                }
            }
            Call::Push => {
                if roll < 0.07 {
                    Fate::DropRequest
                } else if roll < 0.15 {
                    Fate::DropResponse
                } else if roll < 0.21 {
                    Fate::Duplicate
                } else if roll < 0.27 {
                    Fate::Hold
                } else {
                    Fate::Deliver
                }
            }
            Call::Pull => {
                if roll < 0.05 {
                    Fate::DropRequest
                } else if roll < 0.11 {
                    Fate::DropResponse
                } else if roll < 0.15 {
                    Fate::Duplicate
                } else {
                    Fate::Deliver
                }
            }
            Call::Upload => {
                if roll < 0.05 {
                    Fate::DropRequest
                } else if roll < 0.10 {
                    Fate::DropResponse
                } else if roll < 0.15 {
                    Fate::Duplicate
                } else {
                    Fate::Deliver
                }
            }
        };
        match fate {
            Fate::DropRequest => self.stats.dropped_requests += 1,
            Fate::DropResponse => self.stats.dropped_responses += 1,
            Fate::Duplicate => self.stats.duplicated += 1,
            Fate::Hold => self.stats.held += 1,
            Fate::Deliver | Fate::Crash { .. } => {}
        }
        fate
    }

    /// After a delivered push: sometimes the network keeps a copy and re-delivers it later.
    fn keep_stale_copy(&mut self) -> bool {
        let keep = !self.quiet && self.rng.random_bool(0.06);
        if keep {
            self.stats.stale_copies += 1;
        }
        keep
    }
}

fn lost(what: &str) -> ClientError {
    ClientError::Unavailable {
        server_url: "sim://network".into(),
        message: format!("simulated network fault: {what}"),
    }
}

/// A phone's network: the real gRPC transport with faults injected around it.
#[derive(Debug)]
struct FaultyTransport {
    phone: usize,
    inner: GrpcTransport,
    net: Arc<Mutex<Network>>,
    crashed: Arc<Notify>,
}

impl FaultyTransport {
    fn fate(&self, call: Call) -> Fate {
        self.net
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .fate(self.phone, call)
    }

    /// The phone dies here: tell the scheduler, and never return.
    async fn die<T>(&self) -> T {
        self.crashed.notify_one();
        std::future::pending::<T>().await
    }

    /// Run one unary call under `fate` (Hold is treated like a dropped request).
    async fn unary<T, F, Fut>(&self, fate: Fate, call: F) -> ClientResult<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = ClientResult<T>>,
    {
        match fate {
            Fate::Deliver => call().await,
            Fate::DropRequest | Fate::Hold => Err(lost("request dropped")),
            Fate::DropResponse => {
                let _ = call().await;
                Err(lost("response dropped"))
            }
            Fate::Duplicate => {
                let _ = call().await;
                call().await
            }
            Fate::Crash { deliver } => {
                if deliver {
                    let _ = call().await;
                }
                self.die().await
            }
        }
    }
}

#[async_trait]
impl SyncTransport for FaultyTransport {
    async fn login(&self, request: &LoginRequest) -> ClientResult<LoginGrant> {
        let fate = self.fate(Call::Login);
        self.unary(fate, || self.inner.login(request)).await
    }

    // Session calls pass straight through: the simulated clock can run past the access
    // token's lifetime, and the phone must then refresh as a real one would.
    async fn refresh(
        &self,
        refresh_token: &str,
    ) -> ClientResult<fieldsync_client::records::RefreshedTokens> {
        self.inner.refresh(refresh_token).await
    }

    async fn logout(&self, token: &str) -> ClientResult<()> {
        self.inner.logout(token).await
    }

    async fn push(&self, token: &str, batch: &PushBatch) -> ClientResult<PushAck> {
        match self.fate(Call::Push) {
            Fate::Hold => {
                self.net
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .held
                    .push(Held {
                        phone: self.phone,
                        token: token.to_owned(),
                        batch: batch.clone(),
                    });
                Err(lost("request delayed in the network"))
            }
            Fate::Deliver => {
                let result = self.inner.push(token, batch).await;
                let mut net = self
                    .net
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                if net.keep_stale_copy() {
                    net.held.push(Held {
                        phone: self.phone,
                        token: token.to_owned(),
                        batch: batch.clone(),
                    });
                }
                result
            }
            fate => self.unary(fate, || self.inner.push(token, batch)).await,
        }
    }

    async fn pull(&self, token: &str, request: &PullRequest) -> ClientResult<Box<dyn PullFrames>> {
        let fate = self.fate(Call::Pull);
        let (fate, tear) = match fate {
            // A lost pull answer is a stream torn before its checkpoint.
            Fate::DropResponse => (Fate::Deliver, true),
            other => (other, false),
        };
        let inner = self.unary(fate, || self.inner.pull(token, request)).await?;
        Ok(Box::new(FaultyFrames {
            inner,
            tear,
            net: self.net.clone(),
        }))
    }

    async fn start_upload(
        &self,
        token: &str,
        sha256: &str,
        size_bytes: u64,
        mime_type: &str,
    ) -> ClientResult<UploadPosition> {
        let fate = self.fate(Call::Upload);
        self.unary(fate, || {
            self.inner
                .start_upload(token, sha256, size_bytes, mime_type)
        })
        .await
    }

    async fn put_chunk(
        &self,
        token: &str,
        upload_id: &str,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<u64, ChunkRefused> {
        let send = || self.inner.put_chunk(token, upload_id, offset, data.clone());
        match self.fate(Call::Upload) {
            Fate::Deliver => send().await,
            Fate::DropRequest | Fate::Hold => {
                Err(ChunkRefused::Other(lost("chunk request dropped")))
            }
            Fate::DropResponse => {
                let _ = send().await;
                Err(ChunkRefused::Other(lost("chunk response dropped")))
            }
            Fate::Duplicate => {
                let _ = send().await;
                send().await
            }
            Fate::Crash { deliver } => {
                if deliver {
                    let _ = send().await;
                }
                self.die().await
            }
        }
    }

    async fn complete_upload(&self, token: &str, upload_id: &str) -> ClientResult<(String, u64)> {
        let fate = self.fate(Call::Upload);
        self.unary(fate, || self.inner.complete_upload(token, upload_id))
            .await
    }

    async fn upload_status(&self, token: &str, upload_id: &str) -> ClientResult<UploadPosition> {
        let fate = self.fate(Call::Upload);
        self.unary(fate, || self.inner.upload_status(token, upload_id))
            .await
    }
}

/// A pull stream that may be torn just before its checkpoint.
#[derive(Debug)]
struct FaultyFrames {
    inner: Box<dyn PullFrames>,
    tear: bool,
    net: Arc<Mutex<Network>>,
}

#[async_trait]
impl PullFrames for FaultyFrames {
    async fn next_frame(&mut self) -> ClientResult<Option<PullFrame>> {
        let frame = self.inner.next_frame().await?;
        if self.tear && matches!(frame, Some(PullFrame::Checkpoint { .. })) {
            self.net
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .stats
                .torn_pulls += 1;
            return Err(lost("pull stream torn before its checkpoint"));
        }
        Ok(frame)
    }
}

// ---------------------------------------------------------------------------------------
// The county
// ---------------------------------------------------------------------------------------

/// One township, one village, four households and three cadres whose pairings overlap, so
/// the same fields get edited concurrently from several phones.
#[derive(Debug)]
struct County {
    seed: SeedData,
    supervisor: Principal,
    /// `(username, user_id)` of the three cadres.
    cadres: Vec<(String, String)>,
}

fn county() -> &'static County {
    static COUNTY: OnceLock<County> = OnceLock::new();
    COUNTY.get_or_init(|| {
        let demo = fieldsync_server::demo::generate_demo_county(fieldsync_server::demo::DEMO_SEED);
        let township = demo
            .seed
            .areas
            .iter()
            .find(|area| area.level == "township")
            .expect("a township")
            .clone();
        let village = demo
            .seed
            .areas
            .iter()
            .find(|area| {
                area.level == "village" && area.parent_id.as_deref() == Some(&township.area_id)
            })
            .expect("a village")
            .clone();
        let county_area = demo
            .seed
            .areas
            .iter()
            .find(|area| Some(&area.area_id) == township.parent_id.as_ref())
            .expect("the county")
            .clone();
        let households: Vec<Household> = demo
            .seed
            .households
            .iter()
            .filter(|household| household.village_id == village.area_id)
            .take(4)
            .cloned()
            .collect();
        assert_eq!(households.len(), 4, "the demo village has 4+ households");
        // argon2 is slow on purpose (tens of ms per login in debug builds, three logins per
        // seed). The server verifies with the parameters stored in the PHC string, so the
        // simulation hashes the shared password ONCE with the smallest argon2id cost.
        let password_hash = cheap_password_hash(fieldsync_server::demo::DEMO_PASSWORD);
        let mut supervisor = demo
            .seed
            .users
            .iter()
            .find(|user| user.role == Role::Township && user.area_id == township.area_id)
            .expect("a township supervisor")
            .clone();
        supervisor.password_hash.clone_from(&password_hash);
        let mut cadres: Vec<_> = demo
            .seed
            .users
            .iter()
            .filter(|user| user.role == Role::Cadre && user.area_id == township.area_id)
            .take(PHONES)
            .cloned()
            .collect();
        assert_eq!(cadres.len(), PHONES);
        for cadre in &mut cadres {
            cadre.password_hash.clone_from(&password_hash);
        }
        // household index -> (cadre index, primary)
        let plan: [&[(usize, bool)]; 4] = [
            &[(0, true), (1, false), (2, false)],
            &[(0, true), (1, false)],
            &[(1, true), (2, false)],
            &[(2, true), (0, false)],
        ];
        let pairings = plan
            .iter()
            .zip(&households)
            .flat_map(|(cadre_list, household)| {
                cadre_list.iter().map(|(cadre, is_primary)| Pairing {
                    cadre_user_id: cadres[*cadre].user_id.clone(),
                    household_id: household.household_id.clone(),
                    is_primary: *is_primary,
                })
            })
            .collect();
        let principal = Principal {
            user_id: supervisor.user_id.clone(),
            display_name: supervisor.display_name.clone(),
            role: Role::Township,
            area_id: township.area_id.clone(),
            device_id: "sim-console".into(),
        };
        let mut users = vec![supervisor];
        users.extend(cadres.iter().cloned());
        County {
            supervisor: principal,
            cadres: cadres
                .iter()
                .map(|cadre| (cadre.username.clone(), cadre.user_id.clone()))
                .collect(),
            seed: SeedData {
                areas: vec![county_area, township, village],
                users,
                households,
                pairings,
            },
        }
    })
}

/// An argon2id PHC string with minimal cost (8 KiB, 1 pass); test accounts only.
fn cheap_password_hash(password: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let params = argon2::Params::new(8, 1, 1, None).expect("argon2 parameters");
    let argon2 = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::encode_b64(b"fieldsync-sim-salt").expect("salt");
    let hash = argon2
        .hash_password(password.as_bytes(), &salt)
        .expect("hash the password")
        .to_string();
    assert!(
        fieldsync_server::auth::verify_password(password, &hash),
        "the server accepts the cheap hash"
    );
    hash
}

// ---------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------

#[derive(Debug)]
struct SimServer {
    state: AppState,
    url: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), fieldsync_server::ServerError>>,
    /// Read-only connection for the checks and the ground truth (never written).
    db: rusqlite::Connection,
}

impl SimServer {
    async fn start(data_dir: &Path, clock: Arc<SimClock>) -> SimResult<Self> {
        let settings = Settings {
            data_dir: data_dir.to_owned(),
            // Many servers share the test process: no /metrics on the fixed port.
            metrics: fieldsync_server::settings::MetricsSettings {
                enabled: false,
                ..Default::default()
            },
            ..Settings::default()
        };
        let sqlite_path = settings.sqlite_path();
        let key_dir = settings.key_dir();
        let state = AppState::open_with_clock(settings, clock)
            .map_err(|error| format!("server does not open: {error}"))?;
        if state
            .store
            .is_empty()
            .await
            .map_err(|error| error.to_string())?
        {
            state
                .store
                .load_seed(county().seed.clone())
                .await
                .map_err(|error| format!("seed: {error}"))?;
        }
        // Bound before serving: connections queue in the kernel, no readiness wait needed.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|error| format!("bind: {error}"))?;
        let address = listener
            .local_addr()
            .map_err(|error| format!("address: {error}"))?;
        let (shutdown, signal) = oneshot::channel::<()>();
        let task = tokio::spawn(fieldsync_server::serve(listener, state.clone(), async {
            let _ = signal.await;
        }));
        let db = rusqlite::Connection::open_with_flags(
            &sqlite_path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .map_err(|error| format!("open the server database read-only: {error}"))?;
        // Phone numbers are sealed at rest; the checks compare plain values.
        let pii = fieldsync_server::store::sealed::PiiCipher::load_or_create(&key_dir)
            .map_err(|error| format!("personal-data keys: {error}"))?;
        fieldsync_server::store::sqlite::register_pii_functions(&db, &pii)
            .map_err(|error| format!("pii functions: {error}"))?;
        Ok(Self {
            state,
            url: format!("http://{address}"),
            shutdown: Some(shutdown),
            task,
            db,
        })
    }

    async fn stop(mut self) -> SimResult<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        match self.task.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(format!("server stopped with an error: {error}")),
            Err(error) => Err(format!("server task failed: {error}")),
        }
    }

    /// The newest change-log sequence: everything a pull at this moment delivers.
    fn max_change_seq(&self) -> SimResult<i64> {
        self.db
            .query_row("SELECT COALESCE(MAX(seq), 0) FROM change_log", [], |row| {
                row.get(0)
            })
            .map_err(|error| format!("read change_log: {error}"))
    }
}

// ---------------------------------------------------------------------------------------
// Phones and the harness's own log
// ---------------------------------------------------------------------------------------

/// A field edit as the harness logged it.
#[derive(Debug, Clone)]
struct EditRecord {
    edit: FieldEdit,
    /// Ground truth: the server's change-log sequence at this phone's last successful sync
    /// before the edit. The phone had seen exactly the writes at or below it.
    known_seq: i64,
}

/// One outbox entry the harness saw created.
#[derive(Debug, Clone)]
struct Created {
    entry: OutboxEntry,
    /// The entry left the outbox: the server's answer covered it.
    acked: bool,
    edit: Option<EditRecord>,
}

#[derive(Debug)]
struct Phone {
    device_id: String,
    dir: PathBuf,
    clock: Arc<PhoneClock>,
    client: Client,
    crashed: Arc<Notify>,
    households: Vec<String>,
    created: BTreeMap<u64, Created>,
    known_seq: i64,
}

fn open_client(
    index: usize,
    dir: &Path,
    url: &Arc<Mutex<String>>,
    net: &Arc<Mutex<Network>>,
    clock: &Arc<PhoneClock>,
    seed: u64,
    generation: u64,
) -> SimResult<(Client, Arc<Notify>)> {
    let crashed = Arc::new(Notify::new());
    let transport = Arc::new(FaultyTransport {
        phone: index,
        inner: GrpcTransport::new(url.clone()),
        net: net.clone(),
        crashed: crashed.clone(),
    });
    let client = Client::open_with_transport(dir, transport, clock.clone())
        .map_err(|error| format!("phone {index} does not open: {error}"))?
        .with_rng_seed(seed.wrapping_mul(31).wrapping_add(generation));
    Ok((client, crashed))
}

/// A fixed device id per (seed, phone): device ids break ties between equal HLCs, so they
/// must not change between a run and its replay.
fn device_id_for(seed: u64, phone: usize) -> String {
    format!("0197a000-0000-7000-8000-{:012x}", seed * 16 + phone as u64)
}

// ---------------------------------------------------------------------------------------
// The world
// ---------------------------------------------------------------------------------------

#[derive(Debug)]
struct World {
    seed: u64,
    rng: StdRng,
    clock: Arc<SimClock>,
    net: Arc<Mutex<Network>>,
    url: Arc<Mutex<String>>,
    server: Option<SimServer>,
    server_down_for: u32,
    server_dir: PathBuf,
    phones: Vec<Phone>,
    /// Every visit id in the order the harness created it (deterministic picks).
    visit_order: Vec<String>,
    generation: u64,
    step: usize,
    trace: Vec<String>,
    verbose: bool,
    stats: Stats,
    _root: tempfile::TempDir,
}

impl World {
    async fn new(seed: u64) -> SimResult<Self> {
        // Real SQLite files, on tmpfs when there is one: fsync is free there, and durability
        // across power loss is the crash test's business, not this one's.
        let shm = Path::new("/dev/shm");
        let root = if shm.is_dir() {
            tempfile::tempdir_in(shm)
        } else {
            tempfile::tempdir()
        }
        .map_err(|error| format!("temp dir: {error}"))?;
        let clock = Arc::new(SimClock(Mutex::new(
            OffsetDateTime::from_unix_timestamp(START_UNIX).map_err(|error| error.to_string())?,
        )));
        let server_dir = root.path().join("server");
        let server = SimServer::start(&server_dir, clock.clone()).await?;
        let url = Arc::new(Mutex::new(server.url.clone()));
        let net = Arc::new(Mutex::new(Network {
            rng: StdRng::seed_from_u64(seed ^ 0x0005_EED0_F4E7),
            quiet: true,
            offline: [0; PHONES],
            held: Vec::new(),
            crash: None,
            stats: Stats::default(),
        }));
        let mut rng = StdRng::seed_from_u64(seed);
        let mut phones = Vec::new();
        for (index, (username, user_id)) in county().cadres.iter().enumerate() {
            let dir = root.path().join(format!("phone-{index}"));
            let phone_clock = Arc::new(PhoneClock {
                shared: clock.clone(),
                skew_secs: Mutex::new(rng.random_range(-180..=240)),
            });
            // Create the database, then fix the device id before anything uses it.
            drop(open_client(index, &dir, &url, &net, &phone_clock, seed, 0)?);
            let device_id = device_id_for(seed, index);
            rusqlite::Connection::open(dir.join(fieldsync_client::DATABASE_FILE))
                .and_then(|connection| {
                    connection.execute(
                        "UPDATE meta SET value = ?1 WHERE key = 'device_id'",
                        [&device_id],
                    )
                })
                .map_err(|error| format!("set the device id: {error}"))?;
            let (client, crashed) = open_client(index, &dir, &url, &net, &phone_clock, seed, 1)?;
            if client.device_id() != device_id {
                return Err(format!(
                    "phone {index} kept device id {}",
                    client.device_id()
                ));
            }
            client
                .login(username, fieldsync_server::demo::DEMO_PASSWORD)
                .await
                .map_err(|error| format!("phone {index} login: {error}"))?;
            let households = county()
                .seed
                .pairings
                .iter()
                .filter(|pairing| &pairing.cadre_user_id == user_id)
                .map(|pairing| pairing.household_id.clone())
                .collect();
            phones.push(Phone {
                device_id,
                dir,
                clock: phone_clock,
                client,
                crashed,
                households,
                created: BTreeMap::new(),
                known_seq: 0,
            });
        }
        let mut world = Self {
            seed,
            rng,
            clock,
            net,
            url,
            server: Some(server),
            server_down_for: 0,
            server_dir,
            phones,
            visit_order: Vec::new(),
            generation: 1,
            step: 0,
            trace: Vec::new(),
            verbose: std::env::var_os("FIELDSYNC_SIM_TRACE").is_some(),
            stats: Stats::default(),
            _root: root,
        };
        for index in 0..PHONES {
            world
                .sync_phone(index)
                .await
                .map_err(|error| format!("phone {index} first sync on a quiet network: {error}"))?;
        }
        world.network().quiet = false;
        Ok(world)
    }

    fn network(&self) -> std::sync::MutexGuard<'_, Network> {
        self.net
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn note(&mut self, action: String) {
        if self.verbose {
            eprintln!("seed={} step={} {action}", self.seed, self.step);
        }
        self.trace.push(format!("step {}: {action}", self.step));
    }

    fn server(&self) -> SimResult<&SimServer> {
        self.server
            .as_ref()
            .ok_or_else(|| "the server is down".to_owned())
    }

    // ---- the schedule ----

    async fn run(&mut self) -> SimResult<()> {
        for step in 1..=STEPS {
            self.step = step;
            self.tick_outages().await?;
            self.random_action().await?;
        }
        self.step = STEPS + 1;
        self.quiesce().await?;
        self.check().await
    }

    /// Partitions heal and a downed server comes back after their number of steps.
    async fn tick_outages(&mut self) -> SimResult<()> {
        {
            let mut net = self.network();
            for offline in &mut net.offline {
                *offline = offline.saturating_sub(1);
            }
        }
        if self.server.is_none() {
            self.stats.server_down_steps += 1;
            self.server_down_for = self.server_down_for.saturating_sub(1);
            if self.server_down_for == 0 {
                self.start_server().await?;
            }
        }
        Ok(())
    }

    async fn random_action(&mut self) -> SimResult<()> {
        let phone = self.rng.random_range(0..PHONES);
        let roll = self.rng.random_range(0..100);
        match roll {
            0..=13 => self.record_visit(phone),
            14..=33 => self.edit_field(phone),
            34..=36 => self.add_member(phone),
            37..=38 => self.remove_member(phone),
            39..=62 => self.sync_step(phone).await,
            63..=65 => self.sync_and_crash(phone).await,
            66..=68 => self.restart_phone(phone),
            69..=71 => self.restart_server().await,
            72..=75 => {
                let steps = self.rng.random_range(1..=6);
                self.network().offline[phone] = steps;
                self.note(format!("partition phone {phone} for {steps} steps"));
                Ok(())
            }
            76..=80 => self.deliver_held().await,
            81..=86 => {
                let seconds = self.rng.random_range(1..=1_200);
                self.clock.advance(Duration::seconds(seconds));
                self.note(format!("advance the clock {seconds} s"));
                Ok(())
            }
            87..=88 => {
                let skew = self.rng.random_range(-180..=240);
                self.phones[phone].clock.set_skew(skew);
                self.note(format!("phone {phone} clock skew now {skew} s"));
                Ok(())
            }
            89..=94 => self.review().await,
            _ => self.correct_returned_visit(phone),
        }
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() {
            None
        } else {
            Some(&items[self.rng.random_range(0..items.len())])
        }
    }

    fn record_visit(&mut self, index: usize) -> SimResult<()> {
        let households = self.phones[index].households.clone();
        let household_id = self.pick(&households).cloned().ok_or("no households")?;
        const SITUATIONS: [&str; 3] = [
            "户主在家，秋粮已收，身体尚可。",
            "电话联系，家中老人身体稳定。",
            "养羊项目进展正常，已出栏5只。",
        ];
        let situation = SITUATIONS[self.rng.random_range(0..SITUATIONS.len())];
        let photo_roll = self.rng.random_range(0..10);
        let photos: Vec<PathBuf> = match photo_roll {
            0..=4 => Vec::new(),
            5..=8 => vec![fieldsync_tests::test_photo("Canon_40D.jpg")],
            _ => vec![
                fieldsync_tests::test_photo("Canon_40D.jpg"),
                fieldsync_tests::test_photo("mobile_jolla.jpg"),
            ],
        };
        let phone = &self.phones[index];
        let now = fieldsync_client::Clock::now(phone.clock.as_ref());
        let visit = NewVisit {
            observed_situation: situation.into(),
            photo_paths: photos.clone(),
            ..NewVisit::new(
                household_id.clone(),
                VisitMode::InPerson,
                now - Duration::minutes(40),
                now - Duration::minutes(5),
            )
        };
        let visit_id = phone
            .client
            .record_visit(visit)
            .map_err(|error| format!("phone {index} record_visit: {error}"))?;
        self.visit_order.push(visit_id.clone());
        self.stats.visits += 1;
        self.note(format!(
            "phone {index} records visit {visit_id} at {household_id} with {} photos",
            photos.len()
        ));
        self.refresh_outbox(index)
    }

    /// A field and a value from small sets, so equal and different concurrent values both
    /// happen.
    fn random_edit(&mut self, card: &Household) -> (FieldTarget, &'static str, Value) {
        let members: Vec<String> = card
            .members
            .iter()
            .map(|member| member.member_id.clone())
            .collect();
        let choice = self.rng.random_range(0..10);
        let mut value_of =
            |options: &[Value]| options[self.rng.random_range(0..options.len())].clone();
        match choice {
            0..=2 => (
                FieldTarget::Household,
                "phone",
                value_of(&[
                    json!("13800000001"),
                    json!("13800000002"),
                    json!("13900000003"),
                ]),
            ),
            3..=4 => (
                FieldTarget::Household,
                "head_name",
                value_of(&[json!("王建国"), json!("王建华")]),
            ),
            5..=6 => (
                FieldTarget::Household,
                "housing_danger_level",
                value_of(&[json!(1), json!(2), json!(3), Value::Null]),
            ),
            _ if members.is_empty() => (
                FieldTarget::Household,
                "address",
                value_of(&[json!("一组12号"), json!("二组3号")]),
            ),
            7..=8 => {
                let member = members[self.rng.random_range(0..members.len())].clone();
                let value = [json!(1), json!(2), json!(3)][self.rng.random_range(0..3)].clone();
                (FieldTarget::Member(member), "health", value)
            }
            _ => {
                let member = members[self.rng.random_range(0..members.len())].clone();
                let value = [json!(true), json!(false)][self.rng.random_range(0..2)].clone();
                (FieldTarget::Member(member), "has_medical_insurance", value)
            }
        }
    }

    fn card(&self, index: usize, household_id: &str) -> SimResult<Household> {
        self.phones[index]
            .client
            .household(household_id)
            .map_err(|error| format!("phone {index} reads {household_id}: {error}"))?
            .ok_or_else(|| format!("phone {index} lost household {household_id}"))
    }

    fn edit_field(&mut self, index: usize) -> SimResult<()> {
        let households = self.phones[index].households.clone();
        // Half the edits go to the household all three cadres share, so concurrent edits of
        // one field are common.
        let shared = &county().seed.households[0].household_id;
        let household_id = if self.rng.random_bool(0.5) {
            shared.clone()
        } else {
            self.pick(&households).cloned().ok_or("no households")?
        };
        let card = self.card(index, &household_id)?;
        let (target, field, value) = self.random_edit(&card);
        let seq = self.phones[index]
            .client
            .edit_household_field(&household_id, target.clone(), field, value.clone())
            .map_err(|error| format!("phone {index} edits {field}: {error}"))?;
        self.stats.edits += 1;
        self.note(format!(
            "phone {index} sets {household_id} {} {field} = {value} (seq {seq}, base {})",
            target.as_key(),
            card.field_seq(&target, field)
        ));
        self.refresh_outbox(index)
    }

    fn add_member(&mut self, index: usize) -> SimResult<()> {
        let households = self.phones[index].households.clone();
        let household_id = self.pick(&households).cloned().ok_or("no households")?;
        const NAMES: [&str; 3] = ["王小明", "王小红", "王秀兰"];
        let name = NAMES[self.rng.random_range(0..NAMES.len())];
        let member = Member {
            member_id: String::new(),
            name: name.into(),
            relation: Relation::Daughter,
            sex: Sex::Female,
            birth_date: "2012-05-01".into(),
            id_number: String::new(),
            health: Health::Healthy,
            labour_capacity: LabourCapacity::None,
            schooling: Schooling::Primary,
            disability: Disability::None,
            disability_grade: 0,
            has_medical_insurance: true,
            has_serious_illness_insurance: false,
            has_pension_insurance: false,
            removed: false,
        };
        let member_id = self.phones[index]
            .client
            .add_member(&household_id, member)
            .map_err(|error| format!("phone {index} add_member: {error}"))?;
        self.note(format!(
            "phone {index} adds member {member_id} ({name}) to {household_id}"
        ));
        self.refresh_outbox(index)
    }

    fn remove_member(&mut self, index: usize) -> SimResult<()> {
        let households = self.phones[index].households.clone();
        let household_id = self.pick(&households).cloned().ok_or("no households")?;
        let card = self.card(index, &household_id)?;
        let members: Vec<String> = card
            .members
            .iter()
            .filter(|member| !member.removed)
            .map(|member| member.member_id.clone())
            .collect();
        let Some(member_id) = self.pick(&members).cloned() else {
            return Ok(());
        };
        let seq = self.phones[index]
            .client
            .remove_member(&household_id, &member_id)
            .map_err(|error| format!("phone {index} remove_member: {error}"))?;
        self.stats.edits += 1;
        self.note(format!(
            "phone {index} removes member {member_id} of {household_id} (seq {seq})"
        ));
        self.refresh_outbox(index)
    }

    /// Learn new outbox entries and which ones the server's answers covered.
    fn refresh_outbox(&mut self, index: usize) -> SimResult<()> {
        let phone = &mut self.phones[index];
        let outbox = phone
            .client
            .outbox()
            .map_err(|error| format!("phone {index} outbox: {error}"))?;
        let present: BTreeSet<u64> = outbox.iter().map(|entry| entry.seq).collect();
        for entry in outbox {
            match phone.created.get_mut(&entry.seq) {
                Some(known) if known.acked => {
                    return Err(format!(
                        "phone {index}: acknowledged seq {} is back in the outbox",
                        entry.seq
                    ));
                }
                Some(known) => {
                    if known.entry.mutation_id != entry.mutation_id
                        || known.entry.payload_json != entry.payload_json
                    {
                        return Err(format!(
                            "phone {index}: outbox seq {} changed its mutation",
                            entry.seq
                        ));
                    }
                    known.entry.hlc = entry.hlc;
                    if let Some(edit) = known.edit.as_mut() {
                        edit.edit = serde_json::from_str(&entry.payload_json)
                            .map_err(|error| format!("edit payload: {error}"))?;
                    }
                }
                None => {
                    let expected = phone.created.keys().next_back().map_or(1, |last| last + 1);
                    if entry.seq != expected {
                        return Err(format!(
                            "phone {index}: new outbox seq {} but expected {expected} (seqs are gap-free)",
                            entry.seq
                        ));
                    }
                    let edit = match entry.kind {
                        MutationKind::EditField => Some(EditRecord {
                            edit: serde_json::from_str(&entry.payload_json)
                                .map_err(|error| format!("edit payload: {error}"))?,
                            known_seq: phone.known_seq,
                        }),
                        _ => None,
                    };
                    phone.created.insert(
                        entry.seq,
                        Created {
                            entry,
                            acked: false,
                            edit,
                        },
                    );
                }
            }
        }
        for (seq, created) in &mut phone.created {
            if !present.contains(seq) {
                created.acked = true;
            }
        }
        Ok(())
    }

    /// One sync. `Ok(true)` when it succeeded; a failure the phone reports as transient is
    /// `Ok(false)`; anything else (a refusal, a protocol error) fails the run.
    async fn sync_phone(&mut self, index: usize) -> SimResult<bool> {
        let result = self.phones[index].client.sync().await;
        self.after_sync(index, result).await
    }

    async fn after_sync(
        &mut self,
        index: usize,
        result: ClientResult<fieldsync_client::SyncReport>,
    ) -> SimResult<bool> {
        self.refresh_outbox(index)?;
        let outcome = match result {
            Ok(report) => {
                if !report.rejected.is_empty() {
                    return Err(format!(
                        "phone {index}: the server rejected {:?}",
                        report.rejected
                    ));
                }
                if !report.upload_failures.is_empty() {
                    return Err(format!(
                        "phone {index}: uploads failed {:?}",
                        report.upload_failures
                    ));
                }
                // Everything on the server right now was in this pull.
                self.phones[index].known_seq = self.server()?.max_change_seq()?;
                self.note(format!("phone {index} synced: {report:?}"));
                true
            }
            Err(ClientError::NotLoggedIn(message)) => {
                return Err(format!("phone {index} lost its session: {message}"));
            }
            Err(error) if error.is_transient() => {
                self.note(format!("phone {index} sync failed: {error}"));
                false
            }
            Err(error) => return Err(format!("phone {index} sync: {error}")),
        };
        let status = self.phones[index]
            .client
            .status()
            .map_err(|error| format!("phone {index} status: {error}"))?;
        if let Some(refused) = status.wedged.iter().find(|item| item.rejected) {
            return Err(format!("phone {index}: a record was refused: {refused:?}"));
        }
        if !status.handover.is_empty() {
            return Err(format!(
                "phone {index}: unexpected hand-over items {:?}",
                status.handover
            ));
        }
        Ok(outcome)
    }

    async fn sync_step(&mut self, index: usize) -> SimResult<()> {
        self.sync_phone(index).await.map(|_| ())
    }

    /// Sync, and kill the phone at its k-th network call (after or before the server got
    /// the request); then reopen it from its data folder.
    async fn sync_and_crash(&mut self, index: usize) -> SimResult<()> {
        let calls_first = self.rng.random_range(0..4);
        let deliver = self.rng.random_bool(0.6);
        self.network().crash = Some((index, calls_first, deliver));
        let crashed = self.phones[index].crashed.clone();
        let result = tokio::select! {
            biased;
            () = crashed.notified() => None,
            result = self.phones[index].client.sync() => Some(result),
        };
        self.network().crash = None;
        match result {
            Some(result) => {
                self.note(format!(
                    "phone {index} sync (crash armed after {calls_first} calls did not fire)"
                ));
                self.after_sync(index, result).await.map(|_| ())
            }
            None => {
                self.note(format!(
                    "phone {index} killed during sync at call {} (request delivered: {deliver})",
                    calls_first + 1
                ));
                self.reopen_phone(index)
            }
        }
    }

    fn restart_phone(&mut self, index: usize) -> SimResult<()> {
        self.note(format!("restart phone {index}"));
        self.reopen_phone(index)
    }

    fn reopen_phone(&mut self, index: usize) -> SimResult<()> {
        self.stats.phone_restarts += 1;
        self.generation += 1;
        let phone = &self.phones[index];
        // Drop the old client first (the process died), then open the same folder.
        let placeholder = open_client(
            index,
            &phone.dir,
            &self.url,
            &self.net,
            &phone.clock,
            self.seed,
            self.generation,
        )?;
        let (client, crashed) = placeholder;
        let old = std::mem::replace(&mut self.phones[index].client, client);
        drop(old);
        self.phones[index].crashed = crashed;
        if self.phones[index].client.device_id() != self.phones[index].device_id {
            return Err(format!("phone {index} changed its device id on restart"));
        }
        self.refresh_outbox(index)
    }

    async fn start_server(&mut self) -> SimResult<()> {
        let server = SimServer::start(&self.server_dir, self.clock.clone()).await?;
        *self
            .url
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = server.url.clone();
        self.note(format!("server up at {}", server.url));
        self.server = Some(server);
        Ok(())
    }

    async fn stop_server(&mut self) -> SimResult<()> {
        if let Some(server) = self.server.take() {
            server.stop().await?;
            self.stats.server_restarts += 1;
        }
        Ok(())
    }

    /// Stop the server; it comes back at once or after a few steps.
    async fn restart_server(&mut self) -> SimResult<()> {
        if self.server.is_none() {
            return Ok(());
        }
        self.stop_server().await?;
        let down_for = if self.rng.random_bool(0.5) {
            0
        } else {
            self.rng.random_range(1..=4)
        };
        self.note(format!("server stopped (down for {down_for} steps)"));
        if down_for == 0 {
            self.start_server().await?;
        } else {
            self.server_down_for = down_for;
        }
        Ok(())
    }

    /// The network delivers one request it held back (a delayed or stale duplicate push).
    async fn deliver_held(&mut self) -> SimResult<()> {
        let held = {
            let mut net = self
                .net
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if net.held.is_empty() {
                return Ok(());
            }
            let index = self.rng.random_range(0..net.held.len());
            net.held.remove(index)
        };
        self.deliver(held).await
    }

    async fn deliver(&mut self, held: Held) -> SimResult<()> {
        if self.server.is_none() {
            self.note(format!(
                "held push of phone {} seqs {}.. lost (server down)",
                held.phone, held.batch.first_seq
            ));
            return Ok(());
        }
        let wire = GrpcTransport::new(self.url.clone());
        let result = wire.push(&held.token, &held.batch).await;
        self.stats.held_delivered += 1;
        match result {
            Ok(ack) => {
                self.note(format!(
                    "network delivers held push of phone {} batch {} seqs {}..={}: {:?}",
                    held.phone,
                    held.batch.batch_id,
                    held.batch.first_seq,
                    held.batch.first_seq + held.batch.mutations.len() as u64 - 1,
                    ack.results
                ));
                Ok(())
            }
            // The access token it carries may have expired or been rotated away while it
            // was held (the clock moves, phones refresh). Refused at the door, nothing was
            // applied, and the phone still holds those entries and sends them again.
            Err(error @ (ClientError::AccessTokenExpired(_) | ClientError::NotLoggedIn(_))) => {
                self.note(format!(
                    "held push of phone {} seqs {}.. refused: its token is no longer valid ({error})",
                    held.phone, held.batch.first_seq
                ));
                Ok(())
            }
            Err(error) => Err(format!(
                "a delayed duplicate of phone {}'s batch {} (seqs from {}) was refused: {error}",
                held.phone, held.batch.batch_id, held.batch.first_seq
            )),
        }
    }

    /// The supervisor approves or returns a submitted visit (the console's use case).
    async fn review(&mut self) -> SimResult<()> {
        let Some(server) = self.server.as_ref() else {
            return Ok(());
        };
        let state = server.state.clone();
        let principal = county().supervisor.clone();
        let queue = fieldsync_server::review::queue(
            &state,
            &principal,
            QueueFilter {
                limit: 200,
                ..QueueFilter::default()
            },
        )
        .await
        .map_err(|error| format!("review queue: {error}"))?;
        // Pick in harness order, not id order (ids are UUIDv7 and differ between runs).
        let mut candidates: Vec<(usize, String)> = queue
            .iter()
            .filter_map(|item| {
                self.visit_order
                    .iter()
                    .position(|id| *id == item.visit_id)
                    .map(|order| (order, item.visit_id.clone()))
            })
            .collect();
        candidates.sort();
        let Some((_, visit_id)) = self.pick(&candidates).cloned() else {
            return Ok(());
        };
        let detail = fieldsync_server::review::detail(&state, &principal, &visit_id)
            .await
            .map_err(|error| format!("visit detail: {error}"))?;
        let approve = self.rng.random_bool(0.4);
        let request = DecisionRequest {
            visit_id: visit_id.clone(),
            revision: detail.visit.revision,
            content_hash: detail.content_hash.clone(),
            decision: if approve {
                Decision::Approve
            } else {
                Decision::Return
            },
            reasons: if approve {
                Vec::new()
            } else {
                vec![ReturnReason {
                    code: "content_too_short".into(),
                    field: "observed_situation".into(),
                }]
            },
            note: String::new(),
            deadline: String::new(),
        };
        let photos_pending = detail
            .visit
            .photo_ids
            .iter()
            .any(|photo_id| !detail.photo_ids_received.contains(photo_id));
        if approve && photos_pending {
            // Evidence nobody has seen cannot be approved: the server must refuse, and the
            // supervisor waits for the photos (a return would still be allowed).
            match fieldsync_server::review::decide(&state, &principal, request).await {
                Err(fieldsync_server::error::ServiceError::FailedPrecondition(message))
                    if message.contains("still uploading") =>
                {
                    self.note(format!("supervisor waits for the photos of {visit_id}"));
                    return Ok(());
                }
                other => {
                    return Err(format!(
                        "approving {visit_id} before its photos arrived gave {other:?}"
                    ));
                }
            }
        }
        let decided = fieldsync_server::review::decide(&state, &principal, request)
            .await
            .map_err(|error| format!("decide {visit_id}: {error}"))?;
        self.stats.decisions += 1;
        self.note(format!(
            "supervisor decides {visit_id} r{}: {decided:?}",
            detail.visit.revision
        ));
        Ok(())
    }

    /// The cadre corrects a returned visit: a new revision.
    fn correct_returned_visit(&mut self, first: usize) -> SimResult<()> {
        for offset in 0..PHONES {
            let index = (first + offset) % PHONES;
            if self.correct_on(index)? {
                break;
            }
        }
        Ok(())
    }

    /// Correct one of this phone's returned visits; false when it has none it can correct.
    fn correct_on(&mut self, index: usize) -> SimResult<bool> {
        let tasks = self.phones[index]
            .client
            .tasks()
            .map_err(|error| format!("phone {index} tasks: {error}"))?;
        // Only the phone that recorded a visit holds its content and can correct it.
        let mut own: Vec<(usize, String)> = Vec::new();
        for task in &tasks {
            let has_body = self.phones[index]
                .client
                .visit(&task.visit_id)
                .map_err(|error| error.to_string())?
                .is_some_and(|summary| summary.visit.is_some());
            if let Some(order) = self.visit_order.iter().position(|id| *id == task.visit_id)
                && has_body
            {
                own.push((order, task.visit_id.clone()));
            }
        }
        own.sort();
        let Some((_, visit_id)) = self.pick(&own).cloned() else {
            return Ok(false);
        };
        let revision = self.phones[index]
            .client
            .resubmit_visit(&visit_id, |visit| {
                visit.problems = "已补充走访内容。".into();
            })
            .map_err(|error| format!("phone {index} corrects {visit_id}: {error}"))?;
        self.stats.corrections += 1;
        self.note(format!(
            "phone {index} corrects {visit_id}: revision {revision}"
        ));
        self.refresh_outbox(index)?;
        Ok(true)
    }

    // ---- quiesce ----

    async fn quiesce(&mut self) -> SimResult<()> {
        self.note("quiesce: heal the network".into());
        {
            let mut net = self.network();
            net.quiet = true;
            net.offline = [0; PHONES];
            net.crash = None;
        }
        if self.server.is_none() {
            self.start_server().await?;
        }
        let held: Vec<Held> = std::mem::take(&mut self.network().held);
        for message in held {
            self.deliver(message).await?;
        }
        for round in 0..QUIESCE_ROUNDS {
            let mut moved = false;
            for index in 0..PHONES {
                let result = self.phones[index].client.sync().await;
                let report = match &result {
                    Ok(report) => report.clone(),
                    Err(error) => {
                        return Err(format!(
                            "quiesce round {round}: phone {index} sync failed on a healed network: {error}"
                        ));
                    }
                };
                self.after_sync(index, result).await?;
                moved |= report.batches_pushed > 0
                    || report.uploads_completed > 0
                    || report.households_pulled > 0
                    || report.visit_statuses_pulled > 0
                    || report.households_removed > 0
                    || report.resets > 0;
            }
            if !moved {
                return Ok(());
            }
        }
        Err(format!(
            "did not converge within {QUIESCE_ROUNDS} quiet sync rounds"
        ))
    }

    // ---- the checks ----

    async fn check(&mut self) -> SimResult<()> {
        self.check_outboxes_empty()?;
        self.check_mutations_exactly_once()?;
        self.check_records()?;
        self.check_replicas().await?;
        self.stats.conflicts += self.check_conflicts()?;
        Ok(())
    }

    fn check_outboxes_empty(&self) -> SimResult<()> {
        for (index, phone) in self.phones.iter().enumerate() {
            let status = phone
                .client
                .status()
                .map_err(|error| format!("phone {index} status: {error}"))?;
            if status.unsent_mutations != 0 || status.pending_uploads != 0 {
                return Err(format!(
                    "after quiesce phone {index} still has {} unsent mutations and {} pending uploads",
                    status.unsent_mutations, status.pending_uploads
                ));
            }
            if let Some(unacked) = phone.created.values().find(|created| !created.acked) {
                return Err(format!(
                    "after quiesce phone {index} seq {} was never acknowledged",
                    unacked.entry.seq
                ));
            }
        }
        Ok(())
    }

    /// Invariant 1: one `applied_mutations` row per acknowledged `(device_id, seq)`, with the
    /// phone's mutation id, never a rejection; the device's processed seq is the last one.
    fn check_mutations_exactly_once(&self) -> SimResult<()> {
        let db = &self.server()?.db;
        for (index, phone) in self.phones.iter().enumerate() {
            let mut statement = db
                .prepare(
                    "SELECT seq, mutation_id, outcome FROM applied_mutations
                     WHERE device_id = ?1 ORDER BY seq",
                )
                .map_err(|error| error.to_string())?;
            let rows: Vec<(u64, String, String)> = statement
                .query_map([&phone.device_id], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })
                .and_then(Iterator::collect)
                .map_err(|error| error.to_string())?;
            let mut server: BTreeMap<u64, Vec<(String, String)>> = BTreeMap::new();
            for (seq, mutation_id, outcome) in rows {
                server.entry(seq).or_default().push((mutation_id, outcome));
            }
            for (seq, created) in &phone.created {
                match server.get(seq).map(Vec::as_slice) {
                    Some([(mutation_id, outcome)]) => {
                        if *mutation_id != created.entry.mutation_id {
                            return Err(format!(
                                "phone {index} seq {seq}: server holds mutation {mutation_id}, phone sent {}",
                                created.entry.mutation_id
                            ));
                        }
                        if outcome.contains("reject") {
                            return Err(format!(
                                "phone {index} seq {seq} ({:?}) was rejected: {outcome}",
                                created.entry.kind
                            ));
                        }
                    }
                    Some(many) => {
                        return Err(format!(
                            "phone {index} seq {seq} processed {} times",
                            many.len()
                        ));
                    }
                    None => {
                        return Err(format!(
                            "phone {index} seq {seq} ({:?} {}) was acknowledged but is not on the server",
                            created.entry.kind, created.entry.subject_id
                        ));
                    }
                }
            }
            if let Some(extra) = server.keys().find(|seq| !phone.created.contains_key(seq)) {
                return Err(format!(
                    "phone {index}: the server processed seq {extra} that the phone never created"
                ));
            }
            let last: Option<u64> = db
                .query_row(
                    "SELECT last_processed_seq FROM devices WHERE device_id = ?1",
                    [&phone.device_id],
                    |row| row.get(0),
                )
                .map_err(|error| format!("devices row of phone {index}: {error}"))
                .ok();
            let expected = phone.created.keys().next_back().copied().unwrap_or(0);
            if expected > 0 && last != Some(expected) {
                return Err(format!(
                    "phone {index}: server last_processed_seq {last:?}, phone's last seq {expected}"
                ));
            }
        }
        Ok(())
    }

    /// Invariants 1 and 2 for records: every field edit is one register write; every visit
    /// revision, photo and added member exists exactly once; every photo's bytes arrived.
    fn check_records(&self) -> SimResult<()> {
        let db = &self.server()?.db;
        // Register writes, keyed by their stamp.
        let mut statement = db
            .prepare(
                "SELECT household_id, target_key, field,
                        pii_open(value_json, 'register/' || household_id || '/' || target_key
                                             || '/' || field),
                        hlc, device_id, base_seq
                 FROM register_writes",
            )
            .map_err(|error| error.to_string())?;
        type WriteRow = (String, String, String, String, i64, String, i64);
        let writes: Vec<WriteRow> = statement
            .query_map([], |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                    row.get(5)?,
                    row.get(6)?,
                ))
            })
            .and_then(Iterator::collect)
            .map_err(|error| error.to_string())?;
        let mut by_stamp: HashMap<(String, i64), Vec<&WriteRow>> = HashMap::new();
        for write in &writes {
            by_stamp
                .entry((write.5.clone(), write.4))
                .or_default()
                .push(write);
        }
        let mut edits = 0;
        for (index, phone) in self.phones.iter().enumerate() {
            for created in phone.created.values() {
                let Some(record) = &created.edit else {
                    continue;
                };
                edits += 1;
                let edit = &record.edit;
                let hlc = i64::try_from(created.entry.hlc).map_err(|error| error.to_string())?;
                let rows = by_stamp
                    .get(&(phone.device_id.clone(), hlc))
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                let [row] = rows else {
                    return Err(format!(
                        "phone {index} seq {} edit of {} {}: {} register writes with its stamp",
                        created.entry.seq,
                        edit.target.as_key(),
                        edit.field,
                        rows.len()
                    ));
                };
                let value: Value =
                    serde_json::from_str(&row.3).map_err(|error| error.to_string())?;
                if row.0 != edit.household_id
                    || row.1 != edit.target.as_key()
                    || row.2 != edit.field
                    || value != edit.value
                    || row.6 != edit.base_seq
                {
                    return Err(format!(
                        "phone {index} seq {} stored as {row:?}, sent {edit:?}",
                        created.entry.seq
                    ));
                }
            }
        }
        if writes.len() != edits {
            return Err(format!(
                "{} register writes on the server, the phones made {edits} edits",
                writes.len()
            ));
        }

        // Visits: one row per (visit_id, revision) that a phone submitted, nothing else.
        let mut expected_visits: BTreeSet<(String, u32)> = BTreeSet::new();
        let mut expected_photos: BTreeMap<String, String> = BTreeMap::new();
        for phone in &self.phones {
            for created in phone.created.values() {
                match created.entry.kind {
                    MutationKind::SubmitVisit => {
                        let visit: Visit = serde_json::from_str(&created.entry.payload_json)
                            .map_err(|error| error.to_string())?;
                        expected_visits.insert((visit.visit_id, visit.revision));
                    }
                    MutationKind::AddPhoto => {
                        let photo: PhotoRecord = serde_json::from_str(&created.entry.payload_json)
                            .map_err(|error| error.to_string())?;
                        expected_photos.insert(photo.photo_id, photo.sha256);
                    }
                    _ => {}
                }
            }
        }
        let mut statement = db
            .prepare("SELECT visit_id, revision FROM visits")
            .map_err(|error| error.to_string())?;
        let visit_rows: Vec<(String, u32)> = statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .and_then(Iterator::collect)
            .map_err(|error| error.to_string())?;
        let stored: BTreeSet<(String, u32)> = visit_rows.iter().cloned().collect();
        if stored.len() != visit_rows.len() || stored != expected_visits {
            return Err(format!(
                "visits on the server {visit_rows:?} != submitted revisions {expected_visits:?}"
            ));
        }
        let mut statement = db
            .prepare(
                "SELECT p.photo_id, p.sha256, EXISTS (SELECT 1 FROM blobs b WHERE b.sha256 = p.sha256)
                 FROM photos p",
            )
            .map_err(|error| error.to_string())?;
        let photo_rows: Vec<(String, String, bool)> = statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .and_then(Iterator::collect)
            .map_err(|error| error.to_string())?;
        let stored_photos: BTreeMap<String, String> = photo_rows
            .iter()
            .map(|(id, sha, _)| (id.clone(), sha.clone()))
            .collect();
        if stored_photos.len() != photo_rows.len() || stored_photos != expected_photos {
            return Err(format!(
                "photos on the server {photo_rows:?} != recorded photos {expected_photos:?}"
            ));
        }
        if let Some(missing) = photo_rows.iter().find(|row| !row.2) {
            return Err(format!("photo {} has no uploaded bytes", missing.0));
        }
        Ok(())
    }

    /// Invariant 3: every replica equals the server; added members appear once; visit
    /// states match.
    async fn check_replicas(&self) -> SimResult<()> {
        let server = self.server()?;
        let store = server.state.store.clone();
        let mut added: BTreeMap<String, (String, usize)> = BTreeMap::new();
        for phone in &self.phones {
            for created in phone.created.values() {
                if created.entry.kind == MutationKind::AddMember {
                    let payload: AddMemberPayload =
                        serde_json::from_str(&created.entry.payload_json)
                            .map_err(|error| error.to_string())?;
                    added
                        .entry(payload.member.member_id)
                        .or_insert((payload.household_id, 0))
                        .1 += 1;
                }
            }
        }
        for (member_id, (household_id, _)) in &added {
            let card = store
                .get_household(household_id)
                .await
                .map_err(|error| error.to_string())?
                .ok_or("household gone")?;
            let copies = card
                .members
                .iter()
                .filter(|member| &member.member_id == member_id)
                .count();
            if copies != 1 {
                return Err(format!(
                    "member {member_id} appears {copies} times on {household_id}"
                ));
            }
        }
        for (index, phone) in self.phones.iter().enumerate() {
            let listed = phone
                .client
                .households()
                .map_err(|error| error.to_string())?;
            let listed: BTreeSet<String> = listed
                .into_iter()
                .map(|summary| summary.household_id)
                .collect();
            let paired: BTreeSet<String> = phone.households.iter().cloned().collect();
            if listed != paired {
                return Err(format!(
                    "phone {index} holds households {listed:?}, paired with {paired:?}"
                ));
            }
            for household_id in &phone.households {
                let on_server = store
                    .get_household(household_id)
                    .await
                    .map_err(|error| error.to_string())?
                    .ok_or_else(|| format!("server lost {household_id}"))?;
                let on_phone = self.card(index, household_id)?;
                if on_phone != on_server {
                    return Err(format!(
                        "phone {index} replica of {household_id} differs from the server:\n{}",
                        card_diff(&on_phone, &on_server)
                    ));
                }
            }
            let visits = phone.client.visits().map_err(|error| error.to_string())?;
            for summary in visits {
                let detail = store
                    .visit_detail(&summary.visit_id)
                    .await
                    .map_err(|error| error.to_string())?
                    .ok_or_else(|| {
                        format!(
                            "phone {index} shows visit {} unknown to the server",
                            summary.visit_id
                        )
                    })?;
                let expected = match detail.state {
                    ReviewState::Submitted => VisitState::Submitted,
                    ReviewState::Approved => VisitState::Approved,
                    ReviewState::Returned => VisitState::Returned,
                    ReviewState::Superseded => VisitState::Superseded,
                };
                if summary.revision != detail.visit.revision || summary.state != expected {
                    return Err(format!(
                        "phone {index} shows visit {} r{} {:?}; the server has r{} {:?}",
                        summary.visit_id,
                        summary.revision,
                        summary.state,
                        detail.visit.revision,
                        detail.state
                    ));
                }
            }
        }
        Ok(())
    }

    /// Invariant 4: conflict records are exactly the concurrent pairs with different values
    /// from different devices. Ground truth: the later-applied write's author had not
    /// pulled the earlier one (its known change seq was below the earlier write's seq).
    fn check_conflicts(&self) -> SimResult<u64> {
        let db = &self.server()?.db;
        // Server seq of every write, by stamp.
        let mut statement = db
            .prepare("SELECT device_id, hlc, server_seq FROM register_writes")
            .map_err(|error| error.to_string())?;
        let seqs: HashMap<(String, u64), i64> = statement
            .query_map([], |row| {
                Ok((
                    (row.get::<_, String>(0)?, row.get::<_, i64>(1)? as u64),
                    row.get(2)?,
                ))
            })
            .and_then(Iterator::collect)
            .map_err(|error| error.to_string())?;
        struct Write<'a> {
            device_id: &'a str,
            hlc: u64,
            edit: &'a FieldEdit,
            known_seq: i64,
            server_seq: i64,
        }
        let mut registers: BTreeMap<(String, String, String), Vec<Write<'_>>> = BTreeMap::new();
        for phone in &self.phones {
            for created in phone.created.values() {
                let Some(record) = &created.edit else {
                    continue;
                };
                let server_seq = *seqs
                    .get(&(phone.device_id.clone(), created.entry.hlc))
                    .ok_or("edit missing on the server")?;
                registers
                    .entry((
                        record.edit.household_id.clone(),
                        record.edit.target.as_key(),
                        record.edit.field.clone(),
                    ))
                    .or_default()
                    .push(Write {
                        device_id: &phone.device_id,
                        hlc: created.entry.hlc,
                        edit: &record.edit,
                        known_seq: record.known_seq,
                        server_seq,
                    });
            }
        }
        let mut expected: BTreeMap<String, String> = BTreeMap::new();
        for ((household_id, target_key, field), writes) in &registers {
            for (position, a) in writes.iter().enumerate() {
                for b in &writes[position + 1..] {
                    if a.device_id == b.device_id || a.edit.value == b.edit.value {
                        continue;
                    }
                    let (earlier, later) = if a.server_seq < b.server_seq {
                        (a, b)
                    } else {
                        (b, a)
                    };
                    if later.known_seq >= earlier.server_seq {
                        continue; // causally ordered: the later author had pulled it
                    }
                    if later.edit.base_seq >= earlier.server_seq {
                        return Err(format!(
                            "ground truth: {} seq-{} write quoted base_seq {} but its phone had only pulled up to {}",
                            later.device_id, later.server_seq, later.edit.base_seq, later.known_seq
                        ));
                    }
                    let (first, second) = if (a.hlc, a.device_id) < (b.hlc, b.device_id) {
                        (a, b)
                    } else {
                        (b, a)
                    };
                    let key = format!(
                        "{household_id}|{target_key}|{field}|{}@{}|{}@{}",
                        first.hlc, first.device_id, second.hlc, second.device_id
                    );
                    expected.insert(
                        key,
                        format!(
                            "{} = {} by {} (applied at {}) vs {} by {} (applied at {}, had pulled up to {})",
                            field,
                            earlier.edit.value,
                            earlier.device_id,
                            earlier.server_seq,
                            later.edit.value,
                            later.device_id,
                            later.server_seq,
                            later.known_seq
                        ),
                    );
                }
            }
        }
        let mut statement = db
            .prepare("SELECT conflict_key FROM conflicts")
            .map_err(|error| error.to_string())?;
        let actual: BTreeSet<String> = statement
            .query_map([], |row| row.get(0))
            .and_then(Iterator::collect)
            .map_err(|error| error.to_string())?;
        for (key, what) in &expected {
            if !actual.contains(key) {
                return Err(format!(
                    "concurrent edit without a conflict record: {what} (key {key})"
                ));
            }
        }
        if let Some(extra) = actual.iter().find(|key| !expected.contains_key(*key)) {
            return Err(format!(
                "conflict record {extra} for writes that were not concurrent or not different"
            ));
        }
        Ok(expected.len() as u64)
    }
}

/// Field-by-field difference of two cards, for failure messages.
fn card_diff(phone: &Household, server: &Household) -> String {
    let phone_json = serde_json::to_value(phone).unwrap_or_default();
    let server_json = serde_json::to_value(server).unwrap_or_default();
    let (Value::Object(phone_map), Value::Object(server_map)) = (phone_json, server_json) else {
        return format!("phone {phone:?}\nserver {server:?}");
    };
    let mut lines = Vec::new();
    for (key, server_value) in &server_map {
        let phone_value = phone_map.get(key).cloned().unwrap_or(Value::Null);
        if phone_value != *server_value {
            lines.push(format!(
                "  {key}: phone {phone_value} / server {server_value}"
            ));
        }
    }
    lines.join("\n")
}

// ---------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------

async fn run_seed(seed: u64) -> Result<Stats, String> {
    let mut world = match World::new(seed).await {
        Ok(world) => world,
        Err(message) => return Err(format!("SIMULATION FAILED seed={seed} step=0: {message}")),
    };
    let result = world.run().await;
    let mut stats = world.stats;
    stats.add(&world.network().stats);
    if let Some(server) = world.server.take() {
        let _ = server.stop().await;
    }
    match result {
        Ok(()) => Ok(stats),
        Err(message) => {
            let tail: Vec<&String> = world.trace.iter().rev().take(25).rev().collect();
            Err(format!(
                "SIMULATION FAILED seed={seed} step={}: {message}\n  last actions:\n    {}\n  replay: FIELDSYNC_SIM_SEED={seed} FIELDSYNC_SIM_TRACE=1 cargo test -p fieldsync-tests --test simulation",
                world.step,
                tail.iter()
                    .map(|line| line.as_str())
                    .collect::<Vec<_>>()
                    .join("\n    ")
            ))
        }
    }
}

/// Run `seeds` on `threads` worker threads, each with its own single-threaded runtime. A
/// seed's world is independent of every other seed's, so spreading seeds over threads does
/// not change what any seed does.
fn run_seeds(seeds: &[u64], threads: usize) -> Vec<(u64, Result<Stats, String>)> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                loop {
                    let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(&seed) = seeds.get(index) else {
                        break;
                    };
                    let result = runtime.block_on(run_seed(seed));
                    if let Err(message) = &result {
                        eprintln!("{message}");
                    }
                    results
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .push((seed, result));
                }
            });
        }
    });
    let mut results = results
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    results.sort_by_key(|(seed, _)| *seed);
    results
}

#[test]
fn phones_and_server_converge_under_faults_for_every_seed() {
    let seeds: Vec<u64> = match std::env::var("FIELDSYNC_SIM_SEED") {
        Ok(seed) => vec![seed.trim().parse().expect("FIELDSYNC_SIM_SEED is a number")],
        Err(_) => {
            let count = std::env::var("FIELDSYNC_SIM_SEEDS")
                .ok()
                .and_then(|text| text.trim().parse().ok())
                .unwrap_or(DEFAULT_SEEDS);
            (1..=count).collect()
        }
    };
    let threads = std::thread::available_parallelism().map_or(1, |count| count.get().min(4));
    let started = std::time::Instant::now();
    let results = run_seeds(&seeds, threads);
    let mut totals = Stats::default();
    let mut failures = Vec::new();
    for (seed, result) in &results {
        match result {
            Ok(stats) => totals.add(stats),
            Err(_) => failures.push(*seed),
        }
    }
    eprintln!(
        "simulation: {} seeds x {STEPS} steps on {threads} threads in {:.1?}; totals: {totals:?}",
        seeds.len(),
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "SIMULATION FAILED for seeds {failures:?} (each printed above with its step; replay one with FIELDSYNC_SIM_SEED=N)"
    );
}
