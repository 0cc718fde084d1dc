//! fieldsync client core: the phone-side library shared by the apps and the `fieldsync` CLI.
//!
//! A [`Client`] owns one data directory: a local SQLite database (replica of the cadre's
//! paired households, the cadre's own visits, photos, pending uploads and the outbox) and
//! byte-exact copies of the photos. Recording a visit never needs the network: the visit,
//! its photo records and their outbox entries are written in one transaction, and
//! [`Client::sync`] later pushes the outbox, uploads the photo bytes and pulls the scope.
//!
//! Household cards are edited field by field ([`Client::edit_household_field`],
//! [`Client::add_member`], [`Client::remove_member`]): applied locally at once, queued with
//! the field's `base_seq`, and kept on top of pulled cards until the server has them.
//!
//! Quarterly income (季登记) is registered the same way ([`Client::register_income`]): checked
//! with the model's formula, queued as a `RegisterIncome` mutation and kept locally with its
//! fate ([`Client::income_registrations`]).
//!
//! Module map: `store` (all SQL), `transport` (the [`SyncTransport`] seam and its gRPC
//! implementation, all protobuf/tonic), `sync` (pure planning, retry policy + execution),
//! `edits` (card edits and rebase), `photos` (import and hashing), `hlc` (mutation clock),
//! `income` (local registrations, exact yuan ⇄ fen text), `records` (plain types between
//! modules), `error`.

pub mod edits;
pub mod error;
pub mod hlc;
pub mod income;
pub mod photos;
pub mod progress;
pub mod records;
pub mod sealed;
pub mod store;
pub mod sync;
pub mod transport;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use fieldsync_model::CodeList;
use fieldsync_model::codes::{ReviewState, Role, VisitExceptionReason, VisitMode, VisitType};
use fieldsync_model::household::Household;
use fieldsync_model::income::{IncomeComponents, IncomeRegistration};
use fieldsync_model::review::{VisitStatus, return_reason_label};
use fieldsync_model::visit::{GpsFix, PhotoRecord, ProposedChange, Visit, WellbeingCheck};
use rand::SeedableRng;
use rand::rngs::StdRng;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub use crate::error::{ClientError, ClientResult, TlsFailure};
pub use crate::income::{IncomeState, LocalIncome, YuanError, format_fen, parse_yuan};
pub use crate::progress::{CancelSync, IgnoreProgress, SyncObserver, SyncPhase};
pub use crate::records::{Heartbeat, OutboxEntry, SignOutReason, VisitState};
pub use crate::store::RejectedMutation;
pub use crate::sync::{SyncChanges, SyncReport};

use crate::edits::CardEdit;
use crate::records::{LoginRequest, MutationKind};
use crate::store::{PhotoWrite, Store, VisitWrite, meta_key};
pub use crate::transport::{
    ChunkRefused, GrpcTransport, LinkOptions, PullFrames, SyncTransport, check_server_url,
};
use fieldsync_model::household::Member;
use fieldsync_model::register::FieldTarget;

/// Name of the database file inside the data dir.
pub const DATABASE_FILE: &str = "fieldsync-client.db";
/// Folder of photo copies inside the data dir.
pub const PHOTOS_DIR: &str = "photos";

/// Source of "now", injectable so tests are deterministic.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> OffsetDateTime;
}

/// The device's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// Who is logged in on this device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginInfo {
    pub user_id: String,
    pub username: String,
    pub display_name: String,
    pub role: Option<Role>,
    pub area_id: String,
    pub device_id: String,
    /// The password is a one-time password that must be changed (修改密码) before the
    /// cadre goes on: the app shows the change-password screen first.
    pub must_change_password: bool,
}

/// A visit form as the cadre fills it in. Build with [`NewVisit::new`] and set the rest
/// with struct update syntax.
#[derive(Debug, Clone, PartialEq)]
pub struct NewVisit {
    pub household_id: String,
    pub mode: VisitMode,
    /// Required when `mode` is not in person.
    pub exception_reason: Option<VisitExceptionReason>,
    pub visit_type: VisitType,
    pub checkin_at: OffsetDateTime,
    pub checkout_at: OffsetDateTime,
    /// 生产生活情况.
    pub observed_situation: String,
    /// 帮扶计划实施情况.
    pub plan_progress: String,
    pub problems: String,
    pub actions: String,
    pub needs: String,
    pub policies_explained: Vec<String>,
    pub wellbeing: WellbeingCheck,
    pub proposed_changes: Vec<ProposedChange>,
    pub gps: Option<GpsFix>,
    /// Photo files to attach; each is copied into the data dir.
    pub photo_paths: Vec<PathBuf>,
    /// True when the photos come from the app's own camera screen (the CLI stands in for it).
    pub photos_from_in_app_camera: bool,
}

impl NewVisit {
    /// A routine visit with empty content sections, no GPS and no photos.
    pub fn new(
        household_id: impl Into<String>,
        mode: VisitMode,
        checkin_at: OffsetDateTime,
        checkout_at: OffsetDateTime,
    ) -> Self {
        Self {
            household_id: household_id.into(),
            mode,
            exception_reason: None,
            visit_type: VisitType::Routine,
            checkin_at,
            checkout_at,
            observed_situation: String::new(),
            plan_progress: String::new(),
            problems: String::new(),
            actions: String::new(),
            needs: String::new(),
            policies_explained: Vec::new(),
            wellbeing: WellbeingCheck::default(),
            proposed_changes: Vec::new(),
            gps: None,
            photo_paths: Vec::new(),
            photos_from_in_app_camera: true,
        }
    }
}

/// One household of the replica, as the list screen shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HouseholdSummary {
    pub household_id: String,
    pub head_name: String,
    pub village_name: String,
    /// Members not removed.
    pub member_count: usize,
    /// An in-person visit (入户) with check-in in the current month (Beijing time) is on the
    /// phone and was not refused.
    pub visited_in_person_this_month: bool,
}

/// One visit on the phone with its review state.
#[derive(Debug, Clone, PartialEq)]
pub struct VisitSummary {
    pub visit_id: String,
    pub revision: u32,
    pub household_id: String,
    pub head_name: Option<String>,
    pub state: VisitState,
    /// Outbox entries of this visit or its photos not yet accepted by the server.
    pub pending_mutations: u64,
    /// The latest revision's content, when it was recorded on this phone.
    pub visit: Option<Visit>,
    /// The latest review status pulled from the server.
    pub status: Option<VisitStatus>,
    /// `(code, message)` when the server refused the visit.
    pub rejection: Option<(String, String)>,
}

/// One photo of a visit as kept on the phone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPhoto {
    pub photo_id: String,
    pub sha256: String,
    pub mime_type: String,
    pub size_bytes: u64,
    /// The byte-exact copy in the data dir (what is uploaded and what the app shows).
    pub local_path: PathBuf,
    /// The server holds the bytes.
    pub uploaded: bool,
}

/// One reason a visit was returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskReason {
    pub code: String,
    pub field: String,
    /// Chinese label of the code (falls back to the code).
    pub label_zh: String,
    /// Chinese name of the field ("生产生活情况"; "整体" when the reason names none).
    pub field_label_zh: String,
}

/// A returned visit the cadre must fix (待整改).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub visit_id: String,
    pub revision: u32,
    pub household_id: String,
    pub head_name: Option<String>,
    pub reasons: Vec<TaskReason>,
    pub note: String,
    /// YYYY-MM-DD or empty.
    pub deadline: String,
    pub reviewer_name: String,
    pub decided_at: Option<OffsetDateTime>,
}

/// Sync health of this device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub device_id: String,
    pub server_url: String,
    pub user: Option<LoginInfo>,
    /// Outbox entries that the next sync will push (hand-over drafts not included).
    pub unsent_mutations: u64,
    pub pending_uploads: u64,
    pub households: usize,
    pub last_sync_at: Option<OffsetDateTime>,
    pub last_error: Option<String>,
    pub last_receipt: Option<String>,
    /// Records that keep failing or were refused, with the saved error (卡住/被拒收).
    pub wedged: Vec<WedgedItem>,
    /// Unsent drafts of households reassigned to another cadre (需移交): kept, not pushed.
    pub handover: Vec<HandoverItem>,
    /// Syncs failed in a row, and when the next automatic one is due.
    pub consecutive_failures: u32,
    pub next_sync_due: Option<OffsetDateTime>,
    /// Whether this device holds a session the server accepts (as far as it last said).
    pub session: SessionState,
    /// The user's own field edits that clashed with a concurrent edit from another device
    /// and wait for a township supervisor to choose (冲突记录, 等待审核员处理), as the last
    /// pull said. The card may show the other value until then; the entry disappears at the
    /// first pull after the supervisor decided.
    pub pending_conflicts: Vec<fieldsync_model::register::PendingConflict>,
}

/// The device's session as the app shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// A token is stored; syncs use it (and refresh it when it expires).
    LoggedIn,
    /// No token: never logged in, or logged out on this device.
    LoggedOut,
    /// The server ended the session (已在服务器上注销) or it expired; log in again. The
    /// outbox is kept.
    SignedOutOnServer(SignOutReason),
}

/// One record that is not getting through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WedgedItem {
    pub seq: u64,
    pub kind: MutationKind,
    pub subject_id: String,
    pub household_id: String,
    /// The saved error: the last transport error, or the server's refusal.
    pub error: String,
    /// Failed push attempts (0 for a refusal, which is final).
    pub attempts: u64,
    /// When it started failing, or when it was refused.
    pub since: Option<OffsetDateTime>,
    /// True when the server refused it permanently (被拒收); false while it is retried.
    pub rejected: bool,
}

impl WedgedItem {
    /// The Chinese label the app shows.
    pub fn label_zh(&self) -> &'static str {
        if self.rejected { "被拒收" } else { "卡住" }
    }
}

/// One unsent draft whose household was reassigned away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandoverItem {
    pub seq: u64,
    pub kind: MutationKind,
    pub subject_id: String,
    pub household_id: String,
    pub saved_at: Option<OffsetDateTime>,
}

impl HandoverItem {
    /// 需移交: hand it over to the household's new cadre.
    pub const LABEL_ZH: &'static str = "需移交";
}

/// Folder (inside the data dir) of the remaining-bytes files of resumed background uploads.
pub const UPLOAD_TAILS_DIR: &str = "upload-tails";
/// The server's tus endpoint, relative to the server URL (`server/src/http/tus.rs`).
pub const TUS_UPLOADS_PATH: &str = "/tus/uploads";

/// One photo upload for an OS background uploader: send `file_path` with `method` to
/// `upload_url` with `headers`; the server answers 204 when it took the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackgroundUpload {
    /// The photo's SHA-256: name the OS task with it, and report it back when done.
    pub sha256: String,
    /// `<server>/tus/uploads/<upload id>`.
    pub upload_url: String,
    /// Always `PATCH` (tus 1.0).
    pub method: String,
    /// The photo copy in the data dir, or the rest of it from `offset`.
    pub file_path: PathBuf,
    /// Bytes the server already holds; the file starts there.
    pub offset: u64,
    /// The photo's whole size.
    pub size_bytes: u64,
    /// `Tus-Resumable`, `Authorization`, `Content-Type`, `Upload-Offset`, `Upload-Metadata`.
    pub headers: Vec<(String, String)>,
}

/// What [`Client::background_uploads`] found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BackgroundUploads {
    pub uploads: Vec<BackgroundUpload>,
    /// Photos whose record the server has not accepted yet; listed by a later call.
    pub waiting_for_push: u64,
}

/// Standard base64 with padding (tus `Upload-Metadata` values).
fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Years an income registration may be for: the model's range, which the console and the
/// county's thresholds accept too.
pub use fieldsync_model::income::INCOME_YEARS;

/// Shortest new password (the server's rule; checked here first to save a round trip).
pub const MIN_PASSWORD_CHARS: usize = 8;

/// Refusals shown in `status()`, newest first.
const STATUS_REJECTIONS: u64 = 20;

/// Waits between sync attempts; injectable so tests never sleep.
#[async_trait::async_trait]
pub trait Sleeper: Send + Sync {
    async fn sleep(&self, duration: std::time::Duration);
}

/// Sleeps on the tokio timer.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioSleeper;

#[async_trait::async_trait]
impl Sleeper for TokioSleeper {
    async fn sleep(&self, duration: std::time::Duration) {
        tokio::time::sleep(duration).await;
    }
}

/// Name of the lock file that makes one sync per install.
pub const SYNC_LOCK_FILE: &str = "sync.lock";

/// The phone-side client core over one data directory.
#[derive(Debug)]
pub struct Client {
    data_dir: PathBuf,
    store: Store,
    device_id: String,
    /// Shared with the gRPC transport, so `set_server_url` takes effect at the next call.
    server_url: Arc<Mutex<String>>,
    transport: Arc<dyn SyncTransport>,
    clock: Arc<dyn Clock>,
    /// Randomness for retry jitter; seedable so simulations replay exactly.
    rng: Mutex<StdRng>,
}

impl Client {
    /// Open (or create) the client in `data_dir`, talking to `server_url`.
    pub fn open(data_dir: &Path, server_url: &str) -> ClientResult<Self> {
        Self::open_with_clock(data_dir, server_url, Arc::new(SystemClock))
    }

    /// [`Client::open`] with an injected clock.
    pub fn open_with_clock(
        data_dir: &Path,
        server_url: &str,
        clock: Arc<dyn Clock>,
    ) -> ClientResult<Self> {
        Self::open_with_clock_and_options(data_dir, server_url, LinkOptions::default(), clock)
    }

    /// [`Client::open`] with [`LinkOptions`]: an extra CA file for `https://` (a county's own
    /// CA) and whether plain `http://` beyond loopback is allowed. The options are kept with
    /// the server URL.
    pub fn open_with_options(
        data_dir: &Path,
        server_url: &str,
        options: LinkOptions,
    ) -> ClientResult<Self> {
        Self::open_with_clock_and_options(data_dir, server_url, options, Arc::new(SystemClock))
    }

    /// [`Client::open_with_options`] with an injected clock.
    pub fn open_with_clock_and_options(
        data_dir: &Path,
        server_url: &str,
        options: LinkOptions,
        clock: Arc<dyn Clock>,
    ) -> ClientResult<Self> {
        let shared_url = Arc::new(Mutex::new(server_url.to_owned()));
        let transport = Arc::new(GrpcTransport::with_options(
            shared_url.clone(),
            options.clone(),
        ));
        let client = Self::open_inner(data_dir, shared_url, transport, clock)?;
        client.store.meta_set(meta_key::SERVER_URL, server_url)?;
        let ca_file = options
            .ca_file
            .as_deref()
            .map(|path| path.to_string_lossy().into_owned())
            .unwrap_or_default();
        client.store.meta_set(meta_key::CA_FILE, &ca_file)?;
        client.store.meta_set(
            meta_key::ALLOW_INSECURE_HTTP,
            if options.allow_insecure_http {
                "true"
            } else {
                "false"
            },
        )?;
        Ok(client)
    }

    /// The link options kept with the server URL (defaults when none were stored).
    pub fn link_options(&self) -> ClientResult<LinkOptions> {
        let ca_file = self
            .store
            .meta_get(meta_key::CA_FILE)?
            .filter(|path| !path.is_empty())
            .map(PathBuf::from);
        let allow_insecure_http = self
            .store
            .meta_get(meta_key::ALLOW_INSECURE_HTTP)?
            .as_deref()
            == Some("true");
        Ok(LinkOptions {
            ca_file,
            allow_insecure_http,
        })
    }

    /// Open over any [`SyncTransport`] (a fake network in simulations). The server URL is
    /// whatever was stored before; it is only informational here.
    pub fn open_with_transport(
        data_dir: &Path,
        transport: Arc<dyn SyncTransport>,
        clock: Arc<dyn Clock>,
    ) -> ClientResult<Self> {
        let shared_url = Arc::new(Mutex::new(String::new()));
        let client = Self::open_inner(data_dir, shared_url, transport, clock)?;
        if let Some(stored) = client.store.meta_get(meta_key::SERVER_URL)? {
            *client
                .server_url
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = stored;
        }
        Ok(client)
    }

    /// [`Client::open`] with the personal-data key supplied by the app (unwrapped with an
    /// Android Keystore key, or read from the iOS Keychain) instead of the default
    /// `pii.key` file in `data_dir`. The same key must be supplied on every open.
    pub fn open_with_pii_key(
        data_dir: &Path,
        server_url: &str,
        key: &sealed::PhoneKey,
    ) -> ClientResult<Self> {
        let shared_url = Arc::new(Mutex::new(server_url.to_owned()));
        let transport = Arc::new(GrpcTransport::new(shared_url.clone()));
        let client = Self::open_keyed(
            data_dir,
            shared_url,
            transport,
            Arc::new(SystemClock),
            Some(key),
        )?;
        client.store.meta_set(meta_key::SERVER_URL, server_url)?;
        Ok(client)
    }

    fn open_inner(
        data_dir: &Path,
        server_url: Arc<Mutex<String>>,
        transport: Arc<dyn SyncTransport>,
        clock: Arc<dyn Clock>,
    ) -> ClientResult<Self> {
        Self::open_keyed(data_dir, server_url, transport, clock, None)
    }

    fn open_keyed(
        data_dir: &Path,
        server_url: Arc<Mutex<String>>,
        transport: Arc<dyn SyncTransport>,
        clock: Arc<dyn Clock>,
        key: Option<&sealed::PhoneKey>,
    ) -> ClientResult<Self> {
        std::fs::create_dir_all(data_dir).map_err(|error| ClientError::io(data_dir, error))?;
        let database = data_dir.join(DATABASE_FILE);
        let store = match key {
            Some(key) => Store::open_with_key(&database, key)?,
            None => Store::open(&database)?,
        };
        let device_id = store.ensure_device_id(|| uuid::Uuid::now_v7().to_string())?;
        Ok(Self {
            data_dir: data_dir.to_owned(),
            store,
            device_id,
            server_url,
            transport,
            clock,
            rng: Mutex::new(StdRng::from_os_rng()),
        })
    }

    /// Seed the jitter randomness, so a simulation replays the same retry schedule.
    pub fn with_rng_seed(self, seed: u64) -> Self {
        Self {
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            ..self
        }
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// This install's device id (a UUID generated once and kept).
    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    /// The server this client talks to.
    pub fn server_url(&self) -> String {
        self.server_url
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Point the client at another server (e.g. a test server on a new port).
    pub fn set_server_url(&self, server_url: &str) -> ClientResult<()> {
        self.store.meta_set(meta_key::SERVER_URL, server_url)?;
        *self
            .server_url
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = server_url.to_owned();
        Ok(())
    }

    /// The phone's model (Android `Build.MODEL`, e.g. "Redmi Note 12"; iOS the device
    /// name the app chooses), sent as `device_name` at every later login. The console names
    /// a device by it with the last four characters of its id, e.g. beside each side of a
    /// conflict record (冲突记录) and on 在用设备. Empty goes back to the generic name.
    pub fn set_device_model(&self, model: &str) -> ClientResult<()> {
        self.store.meta_set(meta_key::DEVICE_MODEL, model.trim())
    }

    /// Log in; the token (bound to this device) and the user are stored locally. A
    /// different user may log in only when the outbox is empty, because pending records
    /// would otherwise be pushed under the new user's name.
    pub async fn login(&self, username: &str, password: &str) -> ClientResult<LoginInfo> {
        let previous_user_id = self.store.meta_get(meta_key::USER_ID)?;
        let previous_username = self.store.meta_get(meta_key::USERNAME)?;
        if previous_username
            .as_deref()
            .is_some_and(|previous| previous != username)
            && self.store.outbox_len()? > 0
        {
            return Err(ClientError::NotAllowed(format!(
                "{} unsent records belong to {}; sync them before another user logs in",
                self.store.outbox_len()?,
                previous_username.unwrap_or_default()
            )));
        }
        let grant = self
            .transport
            .login(&LoginRequest {
                username: username.to_owned(),
                password: password.to_owned(),
                device_id: self.device_id.clone(),
                device_name: self
                    .store
                    .meta_get(meta_key::DEVICE_MODEL)?
                    .filter(|model| !model.is_empty())
                    .unwrap_or_else(device_name),
            })
            .await?;
        let user_changed = previous_user_id
            .as_deref()
            .is_some_and(|previous| previous != grant.user_id);
        let role = grant.role.map(|role| role.as_str()).unwrap_or_default();
        // Forget any earlier session (and its signed-out note) before storing the new one.
        self.store.end_local_session(None)?;
        self.store.save_login(
            &[
                (meta_key::TOKEN, &grant.token),
                (
                    meta_key::REFRESH_TOKEN,
                    grant.refresh_token.as_deref().unwrap_or_default(),
                ),
                (meta_key::USER_ID, &grant.user_id),
                (meta_key::USERNAME, username),
                (meta_key::DISPLAY_NAME, &grant.display_name),
                (meta_key::ROLE, role),
                (meta_key::AREA_ID, &grant.area_id),
                (
                    meta_key::MUST_CHANGE_PASSWORD,
                    if grant.must_change_password {
                        "true"
                    } else {
                        ""
                    },
                ),
            ],
            user_changed,
        )?;
        Ok(LoginInfo {
            user_id: grant.user_id,
            username: username.to_owned(),
            display_name: grant.display_name,
            role: grant.role,
            area_id: grant.area_id,
            device_id: self.device_id.clone(),
            must_change_password: grant.must_change_password,
        })
    }

    /// The logged-in user, if any.
    pub fn user(&self) -> ClientResult<Option<LoginInfo>> {
        let Some(user_id) = self.store.meta_get(meta_key::USER_ID)? else {
            return Ok(None);
        };
        let text =
            |key| -> ClientResult<String> { Ok(self.store.meta_get(key)?.unwrap_or_default()) };
        Ok(Some(LoginInfo {
            user_id,
            username: text(meta_key::USERNAME)?,
            display_name: text(meta_key::DISPLAY_NAME)?,
            role: Role::parse(&text(meta_key::ROLE)?),
            area_id: text(meta_key::AREA_ID)?,
            device_id: self.device_id.clone(),
            must_change_password: text(meta_key::MUST_CHANGE_PASSWORD)? == "true",
        }))
    }

    /// Log out: end the session on the server, then forget the tokens here. The user's
    /// records, the outbox included, stay on the phone (a different user's login purges
    /// them). Returns false when the server could not be told (offline): the tokens are
    /// forgotten anyway, and the server-side session runs out by itself.
    pub async fn logout(&self) -> ClientResult<bool> {
        let told_server = match self.store.meta_get(meta_key::TOKEN)? {
            Some(token) if !token.is_empty() => {
                match self
                    .with_session(|token| async move { self.transport.logout(&token).await })
                    .await
                {
                    Ok(()) => true,
                    // Already ended on the server: the goal is reached.
                    Err(ClientError::SignedOut { .. } | ClientError::NotLoggedIn(_)) => true,
                    Err(error) => {
                        tracing::warn!(%error, "logout could not reach the server");
                        false
                    }
                }
            }
            _ => true,
        };
        self.store.end_local_session(None)?;
        Ok(told_server)
    }

    /// Change the password (修改密码). The server ends the user's other sessions; this one
    /// stays. Returns how many other sessions ended. The new password needs at least 8
    /// characters (checked here first, and again by the server).
    pub async fn change_password(
        &self,
        old_password: &str,
        new_password: &str,
    ) -> ClientResult<u32> {
        if new_password.chars().count() < MIN_PASSWORD_CHARS {
            return Err(ClientError::Invalid {
                field: "new_password".into(),
                message: format!(
                    "新密码至少{MIN_PASSWORD_CHARS}个字符 (at least {MIN_PASSWORD_CHARS} characters)"
                ),
            });
        }
        let ended = self
            .with_session(|token| async move {
                self.transport
                    .change_password(&token, old_password, new_password)
                    .await
            })
            .await?;
        // A one-time password is used up by the change.
        self.store.meta_set(meta_key::MUST_CHANGE_PASSWORD, "")?;
        Ok(ended)
    }

    /// The device's session state.
    pub fn session_state(&self) -> ClientResult<SessionState> {
        if let Some(reason) = self
            .store
            .meta_get(meta_key::SIGNED_OUT)?
            .as_deref()
            .and_then(SignOutReason::parse)
        {
            return Ok(SessionState::SignedOutOnServer(reason));
        }
        Ok(match self.store.meta_get(meta_key::TOKEN)? {
            Some(token) if !token.is_empty() => SessionState::LoggedIn,
            _ => SessionState::LoggedOut,
        })
    }

    /// Run `call` with the access token. When the server says only the access token
    /// expired, refresh once (persisting the new pair before using it) and retry. When the
    /// server ended the session, forget the tokens and note why; the outbox stays.
    async fn with_session<T, F, Fut>(&self, call: F) -> ClientResult<T>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = ClientResult<T>>,
    {
        let token = self.access_token()?;
        let result = match call(token).await {
            Err(ClientError::AccessTokenExpired(_)) => match self.refresh_session().await {
                Ok(token) => call(token).await,
                Err(error) => Err(error),
            },
            other => other,
        };
        if let Err(ClientError::SignedOut { reason }) = &result {
            self.store.end_local_session(Some(reason.as_str()))?;
        }
        result
    }

    /// The stored access token, or why there is none.
    fn access_token(&self) -> ClientResult<String> {
        match self.session_state()? {
            SessionState::SignedOutOnServer(reason) => Err(ClientError::SignedOut { reason }),
            SessionState::LoggedOut => Err(ClientError::NotLoggedIn(
                "请先登录 run `fieldsync login` first".into(),
            )),
            SessionState::LoggedIn => Ok(self.store.meta_get(meta_key::TOKEN)?.unwrap_or_default()),
        }
    }

    /// Exchange the refresh token for a new pair and store it before it is used, so a crash
    /// between the two never leaves the phone holding only the rotated-away token.
    async fn refresh_session(&self) -> ClientResult<String> {
        let refresh_token = self
            .store
            .meta_get(meta_key::REFRESH_TOKEN)?
            .filter(|token| !token.is_empty())
            .ok_or(ClientError::SignedOut {
                reason: SignOutReason::Expired,
            })?;
        let pair = self.transport.refresh(&refresh_token).await?;
        self.store.save_login(
            &[
                (meta_key::TOKEN, &pair.token),
                (meta_key::REFRESH_TOKEN, &pair.refresh_token),
            ],
            false,
        )?;
        Ok(pair.token)
    }

    /// The households of the local replica, by village then head name.
    pub fn households(&self) -> ClientResult<Vec<HouseholdSummary>> {
        let month = fieldsync_model::time_util::business_month(self.clock.now());
        let visits = self.store.list_visits()?;
        let visited: std::collections::HashSet<&str> = visits
            .iter()
            .filter(|row| row.state != VisitState::Rejected)
            .filter_map(|row| row.body.as_ref())
            .filter(|visit| visit.mode == VisitMode::InPerson && visit.business_month() == month)
            .map(|visit| visit.household_id.as_str())
            .collect();
        Ok(self
            .store
            .households()?
            .into_iter()
            .map(|household| HouseholdSummary {
                member_count: household.current_members().count(),
                visited_in_person_this_month: visited.contains(household.household_id.as_str()),
                household_id: household.household_id,
                head_name: household.head_name,
                village_name: household.village_name,
            })
            .collect())
    }

    /// One household of the replica with its members and measures.
    pub fn household(&self, household_id: &str) -> ClientResult<Option<Household>> {
        self.store.household(household_id)
    }

    /// A household id from an id or a unique prefix of one, among the households on this
    /// phone. None matching is [`ClientError::UnknownHousehold`] once the phone has pulled
    /// its households, and [`ClientError::HouseholdsNotSynced`] before the first pull (the
    /// id cannot be checked yet); several matching is [`ClientError::Invalid`].
    pub fn resolve_household_id(&self, id_or_prefix: &str) -> ClientResult<String> {
        let id_or_prefix = id_or_prefix.trim();
        let matches = if id_or_prefix.is_empty() {
            Vec::new()
        } else {
            self.store.household_ids_with_prefix(id_or_prefix)?
        };
        if matches.is_empty() {
            let household = id_or_prefix.to_owned();
            return Err(if self.households_synced()? {
                ClientError::UnknownHousehold { household }
            } else {
                ClientError::HouseholdsNotSynced { household }
            });
        }
        resolve_unique("household", id_or_prefix, matches)
    }

    /// Whether this phone has pulled its households at least once (for the current user).
    pub fn households_synced(&self) -> ClientResult<bool> {
        Ok(self.store.meta_get(meta_key::LAST_SYNC_AT)?.is_some())
    }

    /// A visit id from an id or a unique prefix of one.
    pub fn resolve_visit_id(&self, id_or_prefix: &str) -> ClientResult<String> {
        resolve_unique(
            "visit",
            id_or_prefix,
            self.store.visit_ids_with_prefix(id_or_prefix)?,
        )
    }

    /// Record a visit. Works offline: checks the form, reads each photo and checks its type
    /// from the bytes, copies it into the data dir (so the camera file may be deleted), then
    /// writes the visit, its photo records, the pending uploads and the outbox entries
    /// (SubmitVisit, then one AddPhoto per photo) in ONE transaction. Returns the new visit
    /// id. Nothing is stored when anything is wrong:
    ///
    /// - the household (id or unique prefix) is not on the phone:
    ///   [`ClientError::UnknownHousehold`], or [`ClientError::HouseholdsNotSynced`] before
    ///   the first sync;
    /// - the location is impossible ([`ClientError::ImpossibleLocation`],
    ///   [`ClientError::InvalidAccuracy`]) or the visit is longer than the form allows
    ///   ([`ClientError::VisitTooLong`]);
    /// - a photo is not an image ([`ClientError::PhotoNotAnImage`]), is HEIC
    ///   ([`ClientError::PhotoHeicNeedsConversion`]) or cannot be read;
    /// - the model's checks fail ([`ClientError::Invalid`] naming the field).
    pub fn record_visit(&self, new_visit: NewVisit) -> ClientResult<String> {
        let household_id = self.resolve_household_id(&new_visit.household_id)?;
        check_visit_form(
            new_visit.gps.as_ref(),
            new_visit.checkin_at,
            new_visit.checkout_at,
        )?;
        let visit_id = uuid::Uuid::now_v7().to_string();
        let now = self.clock.now();
        let photos = self.prepare_photos(
            &visit_id,
            &new_visit.photo_paths,
            new_visit.photos_from_in_app_camera,
        )?;
        let visit = Visit {
            visit_id: visit_id.clone(),
            revision: 1,
            supersedes_revision: 0,
            household_id,
            mode: new_visit.mode,
            exception_reason: new_visit.exception_reason,
            visit_type: new_visit.visit_type,
            checkin_at: new_visit.checkin_at,
            checkout_at: new_visit.checkout_at,
            observed_situation: new_visit.observed_situation,
            plan_progress: new_visit.plan_progress,
            problems: new_visit.problems,
            actions: new_visit.actions,
            needs: new_visit.needs,
            policies_explained: new_visit.policies_explained,
            wellbeing: new_visit.wellbeing,
            proposed_changes: new_visit.proposed_changes,
            photo_ids: photos
                .iter()
                .map(|photo| photo.record.photo_id.clone())
                .collect(),
            gps: new_visit.gps,
            recorded_at_device: now,
        };
        visit.validate()?;
        self.store.record_visit_revision(&VisitWrite {
            visit,
            expected_previous_revision: None,
            photos,
            now,
        })?;
        Ok(visit_id)
    }

    /// Correct a returned visit, or amend a waiting or approved one: the new revision is the
    /// latest revision + 1 and supersedes it (an approved revision stays approved; the new
    /// one goes back to the supervisor). `edit` changes the content (ids and revisions are kept right whatever
    /// it does). Returns the new revision number.
    pub fn resubmit_visit(
        &self,
        visit_id: &str,
        edit: impl FnOnce(&mut Visit),
    ) -> ClientResult<u32> {
        self.resubmit_visit_with_photos(visit_id, &[], edit)
    }

    /// [`Client::resubmit_visit`] that also attaches new photos (checked and copied as in
    /// [`Client::record_visit`]). `edit` may drop photos from `photo_ids` (remove, or with a
    /// new file, replace); it cannot add ids that the previous revision did not have.
    pub fn resubmit_visit_with_photos(
        &self,
        visit_id: &str,
        photo_paths: &[PathBuf],
        edit: impl FnOnce(&mut Visit),
    ) -> ClientResult<u32> {
        self.revise_visit_with(visit_id, photo_paths, |visit, new_photo_ids| {
            edit(visit);
            visit.photo_ids.extend(new_photo_ids.iter().cloned());
        })
    }

    /// The one way a visit gets a new revision (整改, or amending a draft or a waiting
    /// visit): `edit` gets the latest revision's content and the ids of the photos made
    /// from `photo_paths` (checked and copied as in [`Client::record_visit`]), and sets the
    /// new content, `photo_ids` included: keep, drop, re-order, or put a new id in an old
    /// one's place (each id must be a previous photo or a new one). The visit id,
    /// household and revision numbers are kept right whatever `edit` does, and the form is
    /// checked as at record time. Returns the new revision number.
    pub fn revise_visit_with(
        &self,
        visit_id: &str,
        photo_paths: &[PathBuf],
        edit: impl FnOnce(&mut Visit, &[String]),
    ) -> ClientResult<u32> {
        let row = self
            .store
            .visit(visit_id)?
            .ok_or_else(|| ClientError::NotFound(format!("visit {visit_id}")))?;
        // A returned visit is corrected; a waiting one is amended before review; an approved
        // one is amended into a new revision that needs approval again (the approved
        // revision stays frozen on the server). An unsent draft is amended into a new
        // revision queued behind the first: the outbox sends revision 1 first, and the
        // server keeps the latest. Refused or superseded rows have nothing current to build
        // on.
        if !matches!(
            row.state,
            VisitState::Unsent
                | VisitState::Returned
                | VisitState::Submitted
                | VisitState::Approved
        ) {
            return Err(ClientError::NotAllowed(format!(
                "visit {visit_id} is {}, it cannot be amended",
                row.state
            )));
        }
        let Some(previous) = row.body else {
            return Err(ClientError::NotAllowed(format!(
                "visit {visit_id} was not recorded on this device; its content is not here"
            )));
        };
        let now = self.clock.now();
        let photos = self.prepare_photos(visit_id, photo_paths, true)?;
        let new_photo_ids: Vec<String> = photos
            .iter()
            .map(|photo| photo.record.photo_id.clone())
            .collect();
        let mut visit = previous.clone();
        edit(&mut visit, &new_photo_ids);
        // Photos can be dropped (or re-ordered), never invented: an id must be one of the
        // previous revision's or a new one.
        if let Some(unknown) = visit.photo_ids.iter().find(|photo_id| {
            !previous.photo_ids.contains(photo_id) && !new_photo_ids.contains(photo_id)
        }) {
            return Err(ClientError::Invalid {
                field: "photo_ids".into(),
                message: format!(
                    "照片 {unknown} 不属于该走访 photo {unknown} is not a photo of visit {visit_id}"
                ),
            });
        }
        visit.visit_id = previous.visit_id;
        visit.household_id = previous.household_id;
        visit.revision = row.revision + 1;
        visit.supersedes_revision = row.revision;
        visit.recorded_at_device = now;
        check_visit_form(visit.gps.as_ref(), visit.checkin_at, visit.checkout_at)?;
        visit.validate()?;
        let revision = visit.revision;
        self.store.record_visit_revision(&VisitWrite {
            visit,
            expected_previous_revision: Some(row.revision),
            photos,
            now,
        })?;
        Ok(revision)
    }

    /// Remove one photo from a draft or returned visit: a new revision without it. Returns
    /// the new revision number.
    pub fn remove_visit_photo(&self, visit_id: &str, photo_id: &str) -> ClientResult<u32> {
        self.replace_visit_photo_inner(visit_id, photo_id, None)
    }

    /// Replace one photo of a draft or returned visit with the file at `path` (checked and
    /// copied like any new photo): a new revision with the new photo in the old one's
    /// place. Returns the new revision number.
    pub fn replace_visit_photo(
        &self,
        visit_id: &str,
        photo_id: &str,
        path: &Path,
    ) -> ClientResult<u32> {
        self.replace_visit_photo_inner(visit_id, photo_id, Some(path))
    }

    fn replace_visit_photo_inner(
        &self,
        visit_id: &str,
        photo_id: &str,
        path: Option<&Path>,
    ) -> ClientResult<u32> {
        let current = self
            .visit(visit_id)?
            .and_then(|summary| summary.visit)
            .ok_or_else(|| ClientError::NotFound(format!("visit {visit_id}")))?;
        let Some(position) = current.photo_ids.iter().position(|id| id == photo_id) else {
            return Err(ClientError::NotFound(format!(
                "photo {photo_id} of visit {visit_id}"
            )));
        };
        let paths: Vec<PathBuf> = path.map(Path::to_owned).into_iter().collect();
        self.revise_visit_with(visit_id, &paths, |visit, new_photo_ids| {
            // The new photo takes the replaced one's place.
            visit
                .photo_ids
                .splice(position..=position, new_photo_ids.iter().cloned());
        })
    }

    /// Read, hash, validate and copy photos. No database change happens here, so a missing
    /// file aborts the recording before anything is stored.
    fn prepare_photos(
        &self,
        visit_id: &str,
        paths: &[PathBuf],
        in_app_camera: bool,
    ) -> ClientResult<Vec<PhotoWrite>> {
        let originals = paths
            .iter()
            .map(|path| photos::read_photo(path))
            .collect::<ClientResult<Vec<_>>>()?;
        let photos_dir = self.data_dir.join(PHOTOS_DIR);
        originals
            .into_iter()
            .map(|original| {
                let imported = photos::store_photo(&photos_dir, &original)?;
                let record = PhotoRecord {
                    photo_id: uuid::Uuid::now_v7().to_string(),
                    visit_id: visit_id.to_owned(),
                    sha256: imported.sha256,
                    size_bytes: imported.size_bytes,
                    mime_type: imported.mime_type,
                    subject: None,
                    captured_at_device: imported.modified_at,
                    in_app_camera,
                };
                record.validate()?;
                Ok(PhotoWrite {
                    record,
                    local_path: imported.local_path,
                })
            })
            .collect()
    }

    /// Push the outbox, upload pending photos, pull the scope. Records the outcome in
    /// `status()` (last sync time, or last error and the backoff before the next automatic
    /// attempt). An unreachable server is [`ClientError::Unavailable`] and leaves the outbox
    /// intact. Only one sync per install runs at a time: a second one, from this process or
    /// another, gets [`ClientError::SyncInProgress`] at once.
    pub async fn sync(&self) -> ClientResult<SyncReport> {
        self.sync_with_progress(&IgnoreProgress, &CancelSync::new())
            .await
    }

    /// [`Client::sync`] that reports its progress to `observer` and stops with
    /// [`ClientError::Cancelled`] soon after `cancel` is set (between network steps). A
    /// cancelled sync is not a failure: it schedules no backoff and leaves `status()`'s
    /// last error as it was.
    pub async fn sync_with_progress(
        &self,
        observer: &dyn SyncObserver,
        cancel: &CancelSync,
    ) -> ClientResult<SyncReport> {
        let _lock = self.lock_sync()?;
        let result = self.sync_inner(observer, cancel).await;
        if matches!(result, Err(ClientError::Cancelled)) {
            return result;
        }
        if let Err(note_error) = self.record_outcome(result.as_ref().err()) {
            // The sync's own error is more useful than a failure to note it.
            tracing::warn!(%note_error, "could not record the sync outcome");
        }
        result
    }

    /// Take `<data_dir>/sync.lock` for the duration of a sync. The OS releases it when the
    /// file is closed, so a crashed sync never leaves the install locked.
    fn lock_sync(&self) -> ClientResult<std::fs::File> {
        let path = self.data_dir.join(SYNC_LOCK_FILE);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|error| ClientError::io(&path, error))?;
        match file.try_lock() {
            Ok(()) => Ok(file),
            Err(std::fs::TryLockError::WouldBlock) => Err(ClientError::SyncInProgress),
            Err(std::fs::TryLockError::Error(error)) => Err(ClientError::io(&path, error)),
        }
    }

    /// After any sync: clear or save the error, and reset or extend the backoff. Every
    /// failure schedules the next attempt, not only those after new data was written.
    fn record_outcome(&self, error: Option<&ClientError>) -> ClientResult<()> {
        let Some(error) = error else {
            self.store.meta_delete(meta_key::LAST_ERROR)?;
            self.store.meta_delete(meta_key::CONSECUTIVE_FAILURES)?;
            self.store.meta_delete(meta_key::NEXT_ATTEMPT_AT)?;
            return Ok(());
        };
        self.store
            .meta_set(meta_key::LAST_ERROR, &error.to_string())?;
        let failures = self.consecutive_failures()?;
        let delay = {
            let mut rng = self
                .rng
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            sync::next_retry_delay(failures, &mut *rng)
        };
        let due = self.clock.now() + delay;
        self.store.meta_set(
            meta_key::CONSECUTIVE_FAILURES,
            &(failures.saturating_add(1)).to_string(),
        )?;
        self.store
            .meta_set(meta_key::NEXT_ATTEMPT_AT, &format_rfc3339(due))?;
        Ok(())
    }

    fn consecutive_failures(&self) -> ClientResult<u32> {
        Ok(self
            .store
            .meta_get(meta_key::CONSECUTIVE_FAILURES)?
            .and_then(|text| text.parse().ok())
            .unwrap_or(0))
    }

    /// When the next automatic sync should run after failures; `None` when the last sync
    /// succeeded (or none failed), i.e. sync whenever there is something to do.
    pub fn next_sync_due(&self) -> ClientResult<Option<OffsetDateTime>> {
        Ok(self
            .store
            .meta_get(meta_key::NEXT_ATTEMPT_AT)?
            .and_then(|text| OffsetDateTime::parse(&text, &Rfc3339).ok()))
    }

    /// Sync, and after a failure that waiting can cure, wait out the backoff (with
    /// `sleeper`) and try again, up to `max_attempts` syncs in all. Returns the first
    /// successful report, or the last error. Errors that need the cadre (log in, update the
    /// app, fix the clock) and a sync already running stop at once.
    pub async fn sync_until_quiet(
        &self,
        max_attempts: u32,
        sleeper: &dyn Sleeper,
    ) -> ClientResult<SyncReport> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            if let Some(due) = self.next_sync_due()? {
                let wait = due - self.clock.now();
                if wait.is_positive() {
                    sleeper.sleep(wait.try_into().unwrap_or_default()).await;
                }
            }
            match self.sync().await {
                Ok(report) => return Ok(report),
                Err(error) if error.is_transient() && attempt < max_attempts.max(1) => {
                    tracing::info!(%error, attempt, "sync failed; backing off");
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn sync_inner(
        &self,
        observer: &dyn SyncObserver,
        cancel: &CancelSync,
    ) -> ClientResult<SyncReport> {
        // Re-running a sync after a refresh is safe: batches keep their ids and the server
        // dedupes, uploads resume from the server's offset.
        self.with_session(|token| async move {
            sync::run(&sync::SyncContext {
                store: &self.store,
                transport: self.transport.as_ref(),
                token: &token,
                device_id: &self.device_id,
                clock: self.clock.as_ref(),
                observer,
                cancel,
            })
            .await
        })
        .await
    }

    // ---- photo uploads by the OS (WorkManager, background URLSession) ----

    /// The pending photo uploads as requests an OS background uploader can send by itself
    /// while the app is suspended: one tus `PATCH` each, of a file, to a URL, with headers.
    ///
    /// Needs the network: the outbox is pushed first (the server takes a photo's bytes only
    /// after its photo record), then each ready upload is started or resumed on the server
    /// (idempotent on the SHA-256), so the URL names the server's upload and the offset is
    /// the server's committed offset. When bytes were already committed, the file is a copy
    /// of the rest of the photo (from that offset) in the data dir. Photos whose record is
    /// not accepted yet are counted in `waiting_for_push` and listed after a later call.
    ///
    /// Hand each upload to the OS, and when the OS says it finished, call
    /// [`Client::background_upload_finished`]. A later [`Client::sync`] picks up anything the
    /// OS did not finish (from the server's offset), so nothing depends on the OS succeeding.
    /// The headers carry the access token, which is short-lived: list right before handing
    /// over, and list again after a `401`.
    pub async fn background_uploads(&self) -> ClientResult<BackgroundUploads> {
        let _lock = self.lock_sync()?;
        let (token, (started, waiting_for_push)) = self
            .with_session(|token| async move {
                let started = sync::start_background_uploads(&sync::SyncContext {
                    store: &self.store,
                    transport: self.transport.as_ref(),
                    token: &token,
                    device_id: &self.device_id,
                    clock: self.clock.as_ref(),
                    observer: &IgnoreProgress,
                    cancel: &CancelSync::new(),
                })
                .await?;
                Ok((token, started))
            })
            .await?;
        let base_url = self.server_url();
        let uploads = started
            .into_iter()
            .map(|upload| self.background_upload(&base_url, &token, upload))
            .collect::<ClientResult<Vec<_>>>()?;
        Ok(BackgroundUploads {
            uploads,
            waiting_for_push,
        })
    }

    /// The OS uploader finished the upload of `sha256` (the `PATCH` answered 204): check
    /// with the server that it holds the whole photo, and if so mark it uploaded here.
    /// Returns true when the server has it; false when it does not have every byte yet
    /// (list the uploads again, or let the next sync finish it).
    pub async fn background_upload_finished(&self, sha256: &str) -> ClientResult<bool> {
        let done = self
            .with_session(|token| async move {
                sync::confirm_background_upload(
                    &sync::SyncContext {
                        store: &self.store,
                        transport: self.transport.as_ref(),
                        token: &token,
                        device_id: &self.device_id,
                        clock: self.clock.as_ref(),
                        observer: &IgnoreProgress,
                        cancel: &CancelSync::new(),
                    },
                    sha256,
                )
                .await
            })
            .await?;
        if done {
            self.remove_upload_tails(sha256)?;
        }
        Ok(done)
    }

    /// The request for one started upload; a resumed one gets a file of the remaining bytes.
    fn background_upload(
        &self,
        base_url: &str,
        token: &str,
        upload: sync::StartedUpload,
    ) -> ClientResult<BackgroundUpload> {
        self.remove_upload_tails(&upload.sha256)?;
        let file_path = if upload.committed_offset == 0 {
            upload.local_path.clone()
        } else {
            let bytes = std::fs::read(&upload.local_path)
                .map_err(|error| ClientError::io(&upload.local_path, error))?;
            let start = usize::try_from(upload.committed_offset).unwrap_or(usize::MAX);
            let rest = bytes
                .get(start..)
                .ok_or_else(|| ClientError::corrupt("committed offset beyond the photo"))?;
            let tail = self.data_dir.join(UPLOAD_TAILS_DIR).join(format!(
                "{}.from-{}",
                upload.sha256, upload.committed_offset
            ));
            photos::write_file_durably(&tail, rest)?;
            tail
        };
        let metadata = format!(
            "sha256 {},filetype {}",
            base64_encode(upload.sha256.as_bytes()),
            base64_encode(upload.mime_type.as_bytes())
        );
        let headers = vec![
            ("Tus-Resumable".to_owned(), "1.0.0".to_owned()),
            ("Authorization".to_owned(), format!("Bearer {token}")),
            (
                "Content-Type".to_owned(),
                "application/offset+octet-stream".to_owned(),
            ),
            (
                "Upload-Offset".to_owned(),
                upload.committed_offset.to_string(),
            ),
            ("Upload-Metadata".to_owned(), metadata),
        ];
        Ok(BackgroundUpload {
            upload_url: format!(
                "{}{TUS_UPLOADS_PATH}/{}",
                base_url.trim_end_matches('/'),
                upload.upload_id
            ),
            method: "PATCH".to_owned(),
            file_path,
            offset: upload.committed_offset,
            size_bytes: upload.size_bytes,
            headers,
            sha256: upload.sha256,
        })
    }

    /// Delete the remaining-bytes files made for `sha256`'s background uploads.
    fn remove_upload_tails(&self, sha256: &str) -> ClientResult<()> {
        let folder = self.data_dir.join(UPLOAD_TAILS_DIR);
        let Ok(entries) = std::fs::read_dir(&folder) else {
            return Ok(());
        };
        let prefix = format!("{sha256}.from-");
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                std::fs::remove_file(entry.path())
                    .map_err(|error| ClientError::io(entry.path(), error))?;
            }
        }
        Ok(())
    }

    /// Counts and times for the status screen.
    pub fn status(&self) -> ClientResult<Status> {
        Ok(Status {
            device_id: self.device_id.clone(),
            server_url: self.server_url(),
            user: self.user()?,
            unsent_mutations: self.store.sendable_outbox_len()?,
            pending_uploads: self.store.pending_upload_count()?,
            households: self.store.households()?.len(),
            last_sync_at: self
                .store
                .meta_get(meta_key::LAST_SYNC_AT)?
                .and_then(|text| OffsetDateTime::parse(&text, &Rfc3339).ok()),
            last_error: self.store.meta_get(meta_key::LAST_ERROR)?,
            last_receipt: self.store.meta_get(meta_key::LAST_RECEIPT)?,
            wedged: self.wedged()?,
            handover: self
                .store
                .handover_entries()?
                .into_iter()
                .map(|note| HandoverItem {
                    seq: note.seq,
                    kind: note.kind,
                    subject_id: note.subject_id,
                    household_id: note.household_id,
                    saved_at: note.saved_at,
                })
                .collect(),
            consecutive_failures: self.consecutive_failures()?,
            next_sync_due: self.next_sync_due()?,
            session: self.session_state()?,
            pending_conflicts: self.store.pending_conflicts()?,
        })
    }

    /// Stuck outbox entries (oldest first), then refusals (newest first).
    fn wedged(&self) -> ClientResult<Vec<WedgedItem>> {
        let stuck = self
            .store
            .wedged_entries()?
            .into_iter()
            .map(|note| WedgedItem {
                seq: note.seq,
                kind: note.kind,
                subject_id: note.subject_id,
                household_id: note.household_id,
                error: note.last_error.unwrap_or_default(),
                attempts: note.attempts,
                since: note.failing_since,
                rejected: false,
            });
        let refused = self
            .store
            .rejections(STATUS_REJECTIONS)?
            .into_iter()
            .map(|rejection| WedgedItem {
                seq: rejection.seq,
                kind: rejection.kind,
                subject_id: rejection.subject_id,
                household_id: rejection.household_id,
                error: format!("{}: {}", rejection.code, rejection.message),
                attempts: 0,
                since: rejection.rejected_at,
                rejected: true,
            });
        Ok(stuck.chain(refused).collect())
    }

    // ---- household card edits ----

    /// Set one household or member field. Validated against the local card (a bad value is
    /// [`ClientError::Invalid`] naming the field), applied to the card at once, and queued
    /// with the `base_seq` the card showed, all in one transaction. Works offline.
    /// Returns the outbox seq.
    pub fn edit_household_field(
        &self,
        household_id: &str,
        target: FieldTarget,
        field: &str,
        value: serde_json::Value,
    ) -> ClientResult<u64> {
        self.store.write_card_edit(
            household_id,
            CardEdit::Field {
                target,
                field: field.to_owned(),
                value,
            },
            self.clock.now(),
        )
    }

    /// Add a member to a household (a new UUIDv7 is used when `member.member_id` is
    /// empty). Returns the member id.
    pub fn add_member(&self, household_id: &str, mut member: Member) -> ClientResult<String> {
        if member.member_id.trim().is_empty() {
            member.member_id = uuid::Uuid::now_v7().to_string();
        }
        let member_id = member.member_id.clone();
        self.store
            .write_card_edit(household_id, CardEdit::AddMember(member), self.clock.now())?;
        Ok(member_id)
    }

    /// Remove a member: the `removed` tombstone field set to true. Returns the outbox seq.
    pub fn remove_member(&self, household_id: &str, member_id: &str) -> ClientResult<u64> {
        self.edit_household_field(
            household_id,
            FieldTarget::Member(member_id.to_owned()),
            "removed",
            serde_json::Value::Bool(true),
        )
    }

    // ---- quarterly income (季登记) ----

    /// Register one quarter's income of a household (id or unique prefix). Works offline:
    /// the household size is the number of current members on the local card, the model's
    /// formula derives net and per-capita net, and the registration is written with its
    /// `RegisterIncome` outbox entry (next seq, HLC stamp, UUIDv7 mutation and registration
    /// ids) in ONE transaction; [`Client::sync`] pushes it.
    ///
    /// A quarter is registered once: the server keeps the latest registration per quarter,
    /// so a second one replaces the first. A quarter that already has one in force (made on
    /// this phone, or by any device as of the last sync) is refused with
    /// [`ClientError::IncomeAlreadyRegistered`], saying what is registered;
    /// [`Client::correct_income`] replaces it on purpose.
    ///
    /// Errors, with nothing stored: [`ClientError::UnknownHousehold`] for a household not on the
    /// phone, [`ClientError::Invalid`] (field `year`) for a year outside 2000–2100, and
    /// [`ClientError::InvalidIncome`] with the model's [`IncomeError`] for a quarter outside
    /// 1–4, a negative component, a household without current members, or an overflow.
    ///
    /// [`IncomeError`]: fieldsync_model::income::IncomeError
    pub fn register_income(
        &self,
        household: &str,
        year: i32,
        quarter: u32,
        components: IncomeComponents,
    ) -> ClientResult<IncomeRegistration> {
        self.write_income(household, year, quarter, components, false)
    }

    /// 更正: register a quarter's income again, replacing the registration in force (this
    /// phone's or another device's). Same checks and errors as [`Client::register_income`],
    /// without [`ClientError::IncomeAlreadyRegistered`].
    pub fn correct_income(
        &self,
        household: &str,
        year: i32,
        quarter: u32,
        components: IncomeComponents,
    ) -> ClientResult<IncomeRegistration> {
        self.write_income(household, year, quarter, components, true)
    }

    fn write_income(
        &self,
        household: &str,
        year: i32,
        quarter: u32,
        components: IncomeComponents,
        correction: bool,
    ) -> ClientResult<IncomeRegistration> {
        let household_id = self.resolve_household_id(household.trim())?;
        if !INCOME_YEARS.contains(&year) {
            return Err(ClientError::Invalid {
                field: "year".into(),
                message: format!(
                    "年度应在{}到{}之间 (year must be {}–{}, got {year})",
                    INCOME_YEARS.start(),
                    INCOME_YEARS.end(),
                    INCOME_YEARS.start(),
                    INCOME_YEARS.end()
                ),
            });
        }
        let (registration, _seq) = self.store.write_income_registration(
            &household_id,
            correction,
            |household_size| {
                Ok(IncomeRegistration::new(
                    uuid::Uuid::now_v7().to_string(),
                    household_id.clone(),
                    year,
                    quarter,
                    household_size,
                    components,
                )?)
            },
            self.clock.now(),
        )?;
        Ok(registration)
    }

    /// The registrations in force on the server at the last sync, by any device: all
    /// households on the phone, or one (exact id), by household, year and quarter. With
    /// [`Client::income_registrations`] (this phone's own, with their fate) this is what
    /// the household's 季登记 screen shows.
    pub fn server_income_registrations(
        &self,
        household_id: Option<&str>,
    ) -> ClientResult<Vec<IncomeRegistration>> {
        self.store.server_income_registrations(household_id)
    }

    /// Income registrations made on this phone, with whether the server has them: all of
    /// them, or one household's (exact id), by household, year, quarter and save order.
    pub fn income_registrations(
        &self,
        household_id: Option<&str>,
    ) -> ClientResult<Vec<LocalIncome>> {
        self.store.income_registrations(household_id)
    }

    /// Every visit on the phone with its review state, newest first.
    pub fn visits(&self) -> ClientResult<Vec<VisitSummary>> {
        Ok(self
            .store
            .list_visits()?
            .into_iter()
            .map(|row| VisitSummary {
                visit_id: row.visit_id,
                revision: row.revision,
                household_id: row.household_id,
                head_name: row.head_name,
                state: row.state,
                pending_mutations: row.pending_mutations,
                visit: row.body,
                status: row.status,
                rejection: row.rejection,
            })
            .collect())
    }

    /// One visit with its review state.
    pub fn visit(&self, visit_id: &str) -> ClientResult<Option<VisitSummary>> {
        Ok(self
            .visits()?
            .into_iter()
            .find(|summary| summary.visit_id == visit_id))
    }

    /// The photos of a visit's latest revision, in order, with their local copies.
    pub fn visit_photos(&self, visit_id: &str) -> ClientResult<Vec<LocalPhoto>> {
        let Some(visit) = self.visit(visit_id)?.and_then(|summary| summary.visit) else {
            return Ok(Vec::new());
        };
        let mut photos = Vec::with_capacity(visit.photo_ids.len());
        for photo_id in &visit.photo_ids {
            let Some((record, local_path, uploaded)) = self.store.photo(photo_id)? else {
                return Err(ClientError::corrupt(format!(
                    "visit {visit_id} names photo {photo_id}, which is not stored"
                )));
            };
            photos.push(LocalPhoto {
                photo_id: record.photo_id,
                sha256: record.sha256,
                mime_type: record.mime_type,
                size_bytes: record.size_bytes,
                local_path,
                uploaded,
            });
        }
        Ok(photos)
    }

    /// Returned visits to fix (待整改): latest known state is RETURNED and no correction is
    /// waiting in the outbox.
    pub fn tasks(&self) -> ClientResult<Vec<Task>> {
        Ok(self
            .visits()?
            .into_iter()
            .filter(|summary| summary.state == VisitState::Returned)
            .map(|summary| {
                let status = summary.status.unwrap_or_else(|| VisitStatus {
                    visit_id: summary.visit_id.clone(),
                    revision: summary.revision,
                    household_id: summary.household_id.clone(),
                    state: ReviewState::Returned,
                    reasons: Vec::new(),
                    note: String::new(),
                    deadline: String::new(),
                    reviewer_name: String::new(),
                    decided_at: None,
                });
                Task {
                    reasons: status
                        .reasons
                        .iter()
                        .map(|reason| TaskReason {
                            label_zh: return_reason_label(&reason.code).to_owned(),
                            field_label_zh: fieldsync_model::visit_diff::visit_field_label(
                                &reason.field,
                            )
                            .to_owned(),
                            code: reason.code.clone(),
                            field: reason.field.clone(),
                        })
                        .collect(),
                    visit_id: summary.visit_id,
                    revision: summary.revision,
                    household_id: summary.household_id,
                    head_name: summary.head_name,
                    note: status.note,
                    deadline: status.deadline,
                    reviewer_name: status.reviewer_name,
                    decided_at: status.decided_at,
                }
            })
            .collect())
    }

    /// The pull cursor of the last applied checkpoint (for diagnostics and tests); `None`
    /// before the first checkpoint.
    pub fn pull_cursor(&self) -> ClientResult<Option<String>> {
        self.store.meta_get(meta_key::CURSOR)
    }

    /// The outbox in seq order (for diagnostics and tests).
    pub fn outbox(&self) -> ClientResult<Vec<OutboxEntry>> {
        self.store.outbox_entries()
    }
}

/// Label of a visit mode with its Chinese name, e.g. "入户 in-person".
pub fn visit_mode_label(mode: VisitMode) -> String {
    let english = match mode {
        VisitMode::InPerson => "in-person",
        VisitMode::Phone => "phone",
        VisitMode::WechatVideo => "wechat-video",
        VisitMode::GroupMeeting => "group-meeting",
        VisitMode::Proxy => "proxy",
    };
    format!("{} {english}", mode.label_zh())
}

fn format_rfc3339(instant: OffsetDateTime) -> String {
    instant
        .format(&Rfc3339)
        .unwrap_or_else(|_| instant.unix_timestamp().to_string())
}

fn device_name() -> String {
    format!(
        "fieldsync-client {} ({})",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS
    )
}

/// The phone-side checks of a visit form that the model's structural validation does not
/// type: a location that can exist, a non-negative accuracy, and a duration within the
/// form's limit ([`fieldsync_model::visit::MAX_VISIT_MINUTES`]). Each has its own error
/// with a message in both languages.
pub fn check_visit_form(
    gps: Option<&GpsFix>,
    checkin_at: OffsetDateTime,
    checkout_at: OffsetDateTime,
) -> ClientResult<()> {
    if let Some(fix) = gps {
        if !fieldsync_model::geo::is_valid_coordinate(fix.lat, fix.lon) {
            return Err(ClientError::ImpossibleLocation {
                lat: fix.lat,
                lon: fix.lon,
            });
        }
        if !fix.accuracy_m.is_finite() || fix.accuracy_m < 0.0 {
            return Err(ClientError::InvalidAccuracy {
                accuracy_m: fix.accuracy_m,
            });
        }
    }
    let minutes = (checkout_at - checkin_at).whole_minutes();
    let max_minutes = fieldsync_model::visit::MAX_VISIT_MINUTES;
    if minutes > max_minutes {
        return Err(ClientError::VisitTooLong {
            minutes,
            max_minutes,
        });
    }
    Ok(())
}

fn resolve_unique(what: &str, id_or_prefix: &str, matches: Vec<String>) -> ClientResult<String> {
    if let Some(exact) = matches.iter().find(|candidate| *candidate == id_or_prefix) {
        return Ok(exact.clone());
    }
    match matches.len() {
        0 => Err(ClientError::NotFound(format!(
            "{what} {id_or_prefix:?} is not on this phone"
        ))),
        1 => Ok(matches.into_iter().next().unwrap_or_default()),
        count => Err(ClientError::Invalid {
            field: what.to_owned(),
            message: format!("{id_or_prefix:?} matches {count} {what}s; type more characters"),
        }),
    }
}

#[cfg(test)]
mod tests;
