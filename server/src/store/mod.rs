//! Storage: one [`Store`] trait that the rest of the server codes against, with an SQLite
//! implementation today and PostgreSQL later. No SQL may appear outside this module, and no
//! SQLite type may appear in the trait. New storage gets its own narrower trait instead of
//! growing `Store` ([`AreasStore`] in areas.rs), with its own conformance checks.

pub mod accounts;
pub mod areas;
/// Also built with the `test-support` feature, so end-to-end tests and benchmarks build
/// their data with the same fixtures instead of copies.
#[cfg(any(test, feature = "test-support"))]
pub mod conformance;
pub mod postgres;
pub(crate) mod push_record;
pub mod sealed;
pub mod search;
pub mod sessions;
pub mod sqlite;

use std::collections::BTreeMap;

use async_trait::async_trait;
use fieldsync_model::codes::{CadreRank, ReviewState, Role, VisitMode};
use fieldsync_model::evidence::{CadreVisitSummary, EvidenceFlag, OtherPhotoUse};
use fieldsync_model::hlc::Hlc;
use fieldsync_model::household::{GeoPoint, Household};
use fieldsync_model::income::{IncomeRegistration, IncomeThreshold};
use fieldsync_model::register::{FieldTarget, PendingConflict, RegisterWrite, Stamp};
use fieldsync_model::review::{DecisionRequest, VisitStatus};
use fieldsync_model::sync::{MutationOutcome, MutationPayload, RejectCode};
use fieldsync_model::visit::{PhotoRecord, Visit, WellbeingCheck};
use time::OffsetDateTime;

pub use crate::media::photo::CaptureTime;
pub use areas::AreasStore;
pub use search::{HouseholdQuery, SearchStore};
pub use sqlite::SqliteStore;

/// Errors of the storage layer. Callers map them to one public error at the boundary.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("batch id {0} was already used for different content")]
    BatchReused(String),
    #[error("stale decision: {0}")]
    StaleDecision(String),
    /// A value (e.g. a console resolution) that the field's rules refuse.
    #[error("{field}: {message}")]
    InvalidValue { field: String, message: String },
    #[error("background task failed: {0}")]
    Join(String),
    /// Personal data that does not open: the key folder lacks the key it was sealed with,
    /// or holds a different key under its name, or the value was tampered with or moved.
    #[error("personal data cannot be opened: {0}")]
    Sealed(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// An administrative area: county, township or village.
#[derive(Debug, Clone, PartialEq)]
pub struct Area {
    pub area_id: String,
    pub name: String,
    /// "county", "township" or "village".
    pub level: String,
    pub parent_id: Option<String>,
    /// Village centre, used by the demo and as a fallback map centre.
    pub centre: Option<GeoPoint>,
}

/// A user account.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    pub user_id: String,
    pub username: String,
    pub display_name: String,
    /// PHC string of an argon2id hash.
    pub password_hash: String,
    pub role: Role,
    /// Area the role is scoped to (township for supervisors, county for admins); for cadres
    /// the township they work in.
    pub area_id: String,
    pub phone: String,
    pub rank: Option<CadreRank>,
}

/// 结对 a cadre ↔ household pairing.
#[derive(Debug, Clone, PartialEq)]
pub struct Pairing {
    pub cadre_user_id: String,
    pub household_id: String,
    /// True for the 第一帮扶责任人.
    pub is_primary: bool,
}

/// Everything needed to create a county from scratch (demo seed or first import).
#[derive(Debug, Clone, Default)]
pub struct SeedData {
    pub areas: Vec<Area>,
    pub users: Vec<UserRecord>,
    pub households: Vec<Household>,
    pub pairings: Vec<Pairing>,
}

/// Who is calling, as resolved from a session token.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    pub user_id: String,
    pub display_name: String,
    pub role: Role,
    pub area_id: String,
    pub device_id: String,
}

/// What kind of client a session belongs to; decides how it expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    /// A phone or the CLI: short access token, optional refresh token.
    Device,
    /// A console browser: ends after idle time (`console_idle_minutes`).
    Console,
}

impl SessionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Device => "device",
            Self::Console => "console",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "device" => Some(Self::Device),
            "console" => Some(Self::Console),
            _ => None,
        }
    }
}

/// A new login session; only SHA-256 digests of its tokens are stored.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    /// Stable id of the session (tokens rotate, the session stays); shown to staff who
    /// revoke it, so it is random and not a token.
    pub session_id: String,
    pub kind: SessionKind,
    /// SHA-256 of the access (bearer) token.
    pub token_sha256: String,
    pub user_id: String,
    pub device_id: String,
    pub device_name: String,
    /// `ClientInfo.app_version` at login.
    pub app_version: String,
    /// Peer address at login (empty when unknown).
    pub ip: String,
    pub created_at: OffsetDateTime,
    /// When the access token expires.
    pub expires_at: OffsetDateTime,
    /// SHA-256 of the refresh token and its expiry; `None` for clients that do not refresh.
    pub refresh: Option<(String, OffsetDateTime)>,
}

/// Why a session ended before it expired (stored as text, shown in the audit log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEndReason {
    /// The user logged out on that device.
    LoggedOut,
    /// Staff revoked it from the console (注销设备).
    Revoked,
    /// The user changed the password on another session.
    PasswordChanged,
    /// A rotated refresh token was presented again: a copy is in someone else's hands.
    RefreshReused,
}

impl SessionEndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LoggedOut => "logged_out",
            Self::Revoked => "revoked",
            Self::PasswordChanged => "password_changed",
            Self::RefreshReused => "refresh_reused",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::LoggedOut,
            Self::Revoked,
            Self::PasswordChanged,
            Self::RefreshReused,
        ]
        .into_iter()
        .find(|reason| reason.as_str() == text)
    }
}

/// A session found by its access token, ended or not: [`crate::auth`] decides whether it
/// still admits the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionLookup {
    pub session_id: String,
    pub kind: SessionKind,
    pub principal: Principal,
    pub expires_at: OffsetDateTime,
    /// Whether the session has a refresh token (so an expired access token can be renewed).
    pub refreshable: bool,
    pub last_seen_at: OffsetDateTime,
    pub last_ip: String,
    pub ended: Option<SessionEndReason>,
}

/// One session as the "devices in use" (在用设备) page shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionInfo {
    pub session_id: String,
    pub kind: SessionKind,
    pub device_id: String,
    pub device_name: String,
    pub app_version: String,
    /// First seen: when the session was opened (login).
    pub created_at: OffsetDateTime,
    pub last_seen_at: OffsetDateTime,
    pub last_ip: String,
}

/// A refresh: replace the session's tokens if `old_refresh_sha256` is its current refresh
/// token and neither it nor the session has ended.
#[derive(Debug, Clone)]
pub struct RefreshRotation {
    pub old_refresh_sha256: String,
    pub new_token_sha256: String,
    pub new_expires_at: OffsetDateTime,
    pub new_refresh_sha256: String,
    pub new_refresh_expires_at: OffsetDateTime,
    pub app_version: String,
    pub ip: String,
    pub now: OffsetDateTime,
}

/// What a refresh found.
#[derive(Debug, Clone, PartialEq)]
pub enum RefreshOutcome {
    /// The tokens were replaced.
    Rotated(SessionLookup),
    /// The token had already been rotated away: the session has now been ended
    /// ([`SessionEndReason::RefreshReused`]); the caller audits it.
    Reused(SessionLookup),
    /// The session ended (or its refresh token expired) before this refresh.
    Ended(SessionLookup),
    /// Nothing is known about this token.
    Unknown,
}

/// What the sync service decided for one mutation before storage: apply it, or reject it
/// permanently (validation or scope) while still consuming its seq.
// A visit is much larger than the other payloads; batches are small and short-lived, so
// boxing would only add noise at every construction site.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum PushAction {
    Apply(MutationPayload),
    Reject { code: RejectCode, message: String },
}

/// One mutation of a batch, pre-checked by the sync service.
#[derive(Debug, Clone)]
pub struct PushEntry {
    pub seq: u64,
    pub mutation_id: String,
    pub hlc: u64,
    pub action: PushAction,
}

/// A batch to apply atomically.
#[derive(Debug, Clone)]
pub struct PushBatch {
    pub device_id: String,
    pub user_id: String,
    pub batch_id: String,
    /// Hex SHA-256 of the request's content; a reused batch id with another fingerprint is
    /// refused with [`StoreError::BatchReused`].
    pub fingerprint: String,
    pub entries: Vec<PushEntry>,
    pub received_at: OffsetDateTime,
}

/// Result of a batch: one outcome per entry, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct PushResult {
    pub outcomes: Vec<(u64, MutationOutcome)>,
    pub last_processed_seq: u64,
}

/// Changes in a caller's scope after a cursor.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PullChanges {
    pub households: Vec<Household>,
    pub visit_statuses: Vec<VisitStatus>,
    /// Households that left the caller's scope (reassigned); the phone purges them.
    pub removed_household_ids: Vec<String>,
    /// For every household in `households`: the 季度收入登记 in force, the latest to arrive
    /// for each (year, quarter), by year and quarter. The phone replaces what it held for
    /// those households.
    pub income_registrations: Vec<IncomeRegistration>,
    /// Cursor to resume from: per scope of the caller, the highest scope sequence included
    /// (or that scope's newest sequence when nothing more of it is in the caller's view).
    pub next_cursor: ScopeCursor,
    /// True when more changes remain after `next_cursor` in any scope.
    pub has_more: bool,
}

/// One in-progress or finished upload.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadRecord {
    pub upload_id: String,
    pub sha256: String,
    pub size_bytes: u64,
    pub mime_type: String,
    pub committed_offset: u64,
    pub complete: bool,
    pub user_id: String,
    /// Server time of the upload's latest sign of life (its start, a resume query, an
    /// acknowledged chunk). Abandoned uploads expire by it, so a slow upload that keeps
    /// moving on a 2G link never does.
    pub last_activity_at: OffsetDateTime,
}

/// One row of the review queue.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueItem {
    pub visit_id: String,
    pub revision: u32,
    pub household_id: String,
    pub head_name: String,
    pub village_id: String,
    pub village_name: String,
    /// Author of the latest revision (the cadre the queue's cadre filter matches).
    pub cadre_user_id: String,
    pub cadre_name: String,
    pub mode: VisitMode,
    pub submitted_at: OffsetDateTime,
    pub distance_m: Option<f64>,
    pub photo_count: u32,
    /// The revision's evidence flags in their order; empty when none were raised or they
    /// were not computed yet.
    pub flags: Vec<EvidenceFlag>,
}

/// Filters of the review queue; the township always comes from the caller's principal.
#[derive(Debug, Clone, Default)]
pub struct QueueFilter {
    pub village_id: Option<String>,
    pub limit: u32,
    /// Skip this many items (page token).
    pub offset: u32,
    /// Only visits whose latest revision carries this evidence flag code.
    pub flag: Option<String>,
    /// Only visits whose latest revision was written by this cadre (user id).
    pub cadre_user_id: Option<String>,
    /// Only visits submitted at or before this instant: waiting at least N days when it is
    /// "now − N days" (the caller computes it from the injected clock).
    pub submitted_at_or_before: Option<OffsetDateTime>,
    /// Keyset paging: only items after this position in queue order (the next item after
    /// the one on screen, whether or not that one is still waiting).
    pub after: Option<QueuePosition>,
}

/// A place in the review queue's order `(submitted_at, visit_id)`.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuePosition {
    pub submitted_at: OffsetDateTime,
    pub visit_id: String,
}

/// How many queue items one filter value would show.
#[derive(Debug, Clone, PartialEq)]
pub struct FacetCount {
    /// The filter value: village id, cadre user id or flag code.
    pub key: String,
    /// What to call it: village name, cadre name or the flag's Chinese label.
    pub label: String,
    pub count: u64,
}

/// Counts behind the queue's filter bar. Each dimension is counted with the *other* filters
/// applied, so the count beside a value is what choosing it would show.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueFacets {
    /// Items matching every filter.
    pub total: u64,
    /// Per village, in village name order (villages with nothing waiting are left out).
    pub by_village: Vec<FacetCount>,
    /// Per cadre (author of the latest revision), in name order.
    pub by_cadre: Vec<FacetCount>,
    /// Per evidence flag code, in code order.
    pub by_flag: Vec<FacetCount>,
    /// Per requested age cutoff (same order as asked): items submitted at or before it.
    pub by_age: Vec<u64>,
}

/// One stored revision of a visit with its review outcome (for the correction diff).
#[derive(Debug, Clone, PartialEq)]
pub struct VisitRevision {
    pub visit: Visit,
    pub state: ReviewState,
    pub content_hash: String,
    pub submitted_at: OffsetDateTime,
    /// The decision on this revision (reasons, note, deadline), when one was made.
    pub status: VisitStatus,
}

/// A received photo of another visit of the same household (the submission page's
/// "previous months" strip).
#[derive(Debug, Clone, PartialEq)]
pub struct HouseholdPhoto {
    pub photo: PhotoRecord,
    pub visit_id: String,
    /// The business month (YYYY-MM, Beijing time) of that visit.
    pub business_month: String,
    /// Review state of that visit's latest revision.
    pub state: ReviewState,
    pub checkin_at: OffsetDateTime,
}

/// A visit with what a reviewer needs to judge it.
#[derive(Debug, Clone, PartialEq)]
pub struct VisitDetail {
    /// The latest revision.
    pub visit: Visit,
    pub household: Household,
    pub cadre_user_id: String,
    pub cadre_name: String,
    pub state: ReviewState,
    pub content_hash: String,
    pub submitted_at: OffsetDateTime,
    pub distance_m: Option<f64>,
    pub photos: Vec<PhotoRecord>,
    /// Photo ids whose bytes have been uploaded completely.
    pub photo_ids_received: Vec<String>,
    /// The decision on this revision, when one was made.
    pub status: VisitStatus,
    /// Evidence flags of this revision (DESIGN §5), as last computed; `None` before the
    /// first computation. They inform the reviewer and never block a decision.
    pub flags: Option<Vec<EvidenceFlag>>,
}

/// What upload completion extracted from an accepted photo ([`crate::media::photo::prepare`]),
/// stored per blob (SHA-256): one blob may serve many photo rows.
#[derive(Debug, Clone, PartialEq)]
pub struct PhotoMeta {
    /// The type sniffed from the bytes (`image/jpeg`, `image/png`, `image/webp`).
    pub mime_type: String,
    /// Stored (not EXIF-rotated) dimensions.
    pub width: u32,
    pub height: u32,
    /// EXIF DateTimeOriginal, with OffsetTimeOriginal when the camera wrote one.
    pub exif_time: Option<CaptureTime>,
    /// EXIF GPS `(lat, lon)`, WGS-84.
    pub exif_gps: Option<(f64, f64)>,
    /// GPS (satellite) UTC time of the EXIF fix.
    pub gps_time: Option<OffsetDateTime>,
    pub make: Option<String>,
    pub model: Option<String>,
    /// EXIF orientation 1..=8.
    pub orientation: Option<u16>,
    /// 64-bit DCT perceptual hash.
    pub phash: u64,
    /// The photo has an EXIF block that could be read only in part
    /// ([`crate::media::photo::PhotoExif::damaged`]); the fields above are what parsed.
    pub exif_damaged: bool,
}

/// One photo of the visit being evaluated: its record and, once the bytes arrived and were
/// accepted, their metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct EvidencePhoto {
    pub record: PhotoRecord,
    /// True when the blob is stored (the photo is evidence); false while it uploads.
    pub arrived: bool,
    /// `None` while uploading, and for blobs stored before metadata was extracted.
    pub meta: Option<PhotoMeta>,
}

/// The phone's clock against the server's, as its latest heartbeat reported it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeviceClockReading {
    pub device_time: OffsetDateTime,
    /// Server time when that heartbeat arrived.
    pub server_time: OffsetDateTime,
}

/// Everything [`fieldsync_model::evidence::evaluate`] needs about one visit, gathered in one
/// read snapshot ([`Store::evidence_inputs`]).
#[derive(Debug, Clone, PartialEq)]
pub struct EvidenceInputs {
    /// The latest revision.
    pub visit: Visit,
    pub cadre_user_id: String,
    /// When the server received the latest revision.
    pub submitted_at: OffsetDateTime,
    /// When the server received the first revision (the 补录 check measures from it).
    pub first_submitted_at: OffsetDateTime,
    pub household_location: Option<GeoPoint>,
    /// This visit's photo records in upload order (arrived or not).
    pub photos: Vec<EvidencePhoto>,
    /// Photos of other visits with the same SHA-256 as one of this visit's photos, or a
    /// perceptual hash within `near_duplicate_max_bits` of one of them.
    pub other_photos: Vec<OtherPhotoUse>,
    /// The same cadre's other visits (latest revisions) checked in within
    /// [`CADRE_VISIT_WINDOW`] of this one.
    pub cadre_visits: Vec<CadreVisitSummary>,
    /// The latest heartbeat of the device that sent the latest revision, when it reported
    /// its clock.
    pub device_clock: Option<DeviceClockReading>,
}

/// A mutation of a push whose stored outcome makes a visit's evidence flags stale: a
/// submitted visit, or a photo added to one (with the photo's file).
#[derive(Debug, Clone, PartialEq)]
pub struct FlagTarget {
    pub seq: u64,
    pub visit_id: String,
    pub photo_sha256: Option<String>,
}

/// The evidence flag work a push carries into its write transaction
/// ([`Store::apply_push_with_flags`]).
#[derive(Debug, Clone)]
pub struct PushFlagWork {
    pub targets: Vec<FlagTarget>,
    pub settings: fieldsync_model::evidence::EvidenceSettings,
}

/// How far around a visit's check-in the cadre's other visits are gathered for the travel
/// and per-day checks: the neighbours that matter are hours away, the window leaves room
/// for a day boundary in any time zone.
pub const CADRE_VISIT_WINDOW: time::Duration = time::Duration::days(2);

/// A decision as stored, with who made it.
#[derive(Debug, Clone)]
pub struct StoredDecision {
    pub request: DecisionRequest,
    pub reviewer_user_id: String,
    pub decided_at: OffsetDateTime,
}

/// A household without an approved or submitted in-person visit this month.
#[derive(Debug, Clone, PartialEq)]
pub struct UnvisitedHousehold {
    pub household_id: String,
    pub head_name: String,
    pub village_id: String,
    pub village_name: String,
    pub cadre_names: Vec<String>,
}

/// A cadre actively paired with a household (结对帮扶干部), for the household page and card.
#[derive(Debug, Clone, PartialEq)]
pub struct PairedCadre {
    pub user_id: String,
    pub display_name: String,
    /// Full number; callers mask it unless the page may show it (the 明白卡 does).
    pub phone: String,
    pub rank: Option<CadreRank>,
    /// 第一帮扶责任人.
    pub is_primary: bool,
}

/// One visit of a household's history: its latest revision with its review state.
#[derive(Debug, Clone, PartialEq)]
pub struct HouseholdVisit {
    pub visit: Visit,
    pub state: ReviewState,
    pub cadre_name: String,
}

/// What the household page and the 明白卡 show about one household.
#[derive(Debug, Clone, PartialEq)]
pub struct HouseholdDossier {
    pub household: Household,
    /// Active pairings, primary first, then by name.
    pub cadres: Vec<PairedCadre>,
    /// Every income registration of the household, in arrival order (a correction of a
    /// quarter comes after the registration it corrects).
    pub registrations: Vec<IncomeRegistration>,
    /// Latest revision of each visit, latest check-in first.
    pub visits: Vec<HouseholdVisit>,
    /// Unresolved conflict records of the household.
    pub open_conflicts: u32,
}

/// The quick check of a household's latest visit ([`Store::latest_wellbeing_checks`]).
#[derive(Debug, Clone, PartialEq)]
pub struct LatestWellbeingCheck {
    pub household_id: String,
    pub visit_id: String,
    pub checkin_at: OffsetDateTime,
    pub check: WellbeingCheck,
}

/// One conflict record of a township's queue, with the names a reviewer needs.
#[derive(Debug, Clone, PartialEq)]
pub struct ConflictRecord {
    /// Stable identity ([`fieldsync_model::register::ConflictPair::key`]).
    pub conflict_key: String,
    pub household_id: String,
    pub head_name: String,
    pub village_name: String,
    pub target: FieldTarget,
    /// The member's name when the target is a member.
    pub member_name: Option<String>,
    pub field: String,
    /// The write with the smaller stamp.
    pub first: RegisterWrite,
    pub first_author_name: String,
    /// The name `first`'s device gave at its latest login (the phone's model), or empty.
    pub first_device_name: String,
    /// The write with the greater stamp (the last-writer-wins winner of the pair).
    pub second: RegisterWrite,
    pub second_author_name: String,
    pub second_device_name: String,
    /// What the register shows now: usually `second`, or a later write.
    pub current: Option<RegisterWrite>,
    pub created_at: OffsetDateTime,
}

/// A reviewer's choice for a conflicting register: stored as an ordinary register write by
/// the console device, so it syncs down to every phone like any other edit.
#[derive(Debug, Clone, PartialEq)]
pub struct ConflictResolution {
    pub conflict_key: String,
    /// The reviewer's township; a conflict elsewhere is answered as not found.
    pub township_id: String,
    pub value: serde_json::Value,
    pub reviewer_user_id: String,
    /// The stamp of the resolving write; the store moves its HLC past the register's current
    /// write if needed, so the resolution always takes effect.
    pub stamp: Stamp,
    pub resolved_at: OffsetDateTime,
}

/// The small status report a phone sends with every sync.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Heartbeat {
    pub unsent_mutations: u64,
    pub pending_uploads: u64,
    pub oldest_unsent_at: Option<OffsetDateTime>,
    pub device_time: Option<OffsetDateTime>,
    pub last_error: String,
    pub app_version: String,
}

/// The latest heartbeat of one device, with its cadre's name.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceBacklog {
    pub device_id: String,
    /// The name the device gave at its latest login, or empty.
    pub device_name: String,
    pub user_id: String,
    pub cadre_name: String,
    pub heartbeat: Heartbeat,
    /// Server time when the heartbeat arrived.
    pub last_seen_at: OffsetDateTime,
}

/// What one compaction of the change log did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeLogCompaction {
    pub superseded_deleted: u64,
    pub tombstones_deleted: u64,
    /// The floor of every scope that has one, after this compaction.
    pub floors: BTreeMap<String, i64>,
}

/// The range of cursors a pull can continue from in one scope.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScopeBounds {
    /// The highest scope sequence of an expired tombstone (0 before any expired).
    pub floor_seq: i64,
    /// The newest scope sequence ever issued (0 for a scope with no change yet).
    pub newest_seq: i64,
}

/// The range of cursors a pull can continue from, per scope (township).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeLogBounds {
    pub scopes: BTreeMap<String, ScopeBounds>,
}

/// Why a parsable cursor cannot be served incrementally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CursorOutOfRange {
    /// Below the scope's floor: the phone may have missed a removal that was compacted away.
    BelowFloor { scope_id: String },
    /// Beyond the newest sequence the scope ever issued (a server restored from a backup, or
    /// a scope this server does not know).
    AheadOfServer { scope_id: String },
}

impl ChangeLogBounds {
    /// The bounds of one scope; a scope never written has floor and newest 0.
    pub fn of(&self, scope_id: &str) -> ScopeBounds {
        self.scopes.get(scope_id).copied().unwrap_or_default()
    }

    /// Whether every scope of `cursor` can continue incrementally: a non-zero position below
    /// its scope's floor, or any position above its scope's newest sequence, cannot. A scope
    /// missing from the cursor starts at 0, which is always served.
    pub fn check(&self, cursor: &ScopeCursor) -> Result<(), CursorOutOfRange> {
        for (scope_id, seq) in cursor.iter() {
            let bounds = self.of(scope_id);
            if seq > 0 && seq < bounds.floor_seq {
                return Err(CursorOutOfRange::BelowFloor {
                    scope_id: scope_id.to_owned(),
                });
            }
            if seq > bounds.newest_seq {
                return Err(CursorOutOfRange::AheadOfServer {
                    scope_id: scope_id.to_owned(),
                });
            }
        }
        Ok(())
    }
}

/// Why a pull cursor could not be parsed. Every case answers the pull with RESET.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    /// A plain decimal: the single global sequence of servers before per-scope sequences.
    #[error("cursor from before per-scope sequences")]
    Legacy,
    #[error("unknown cursor version")]
    UnknownVersion,
    #[error("malformed cursor: {0}")]
    Malformed(&'static str),
}

/// A pull position: per scope (township), the highest scope sequence the phone has applied.
///
/// Text form (opaque to phones, which store it and send it back):
/// `v2:<scope_id>=<seq>[,<scope_id>=<seq>...]`, scopes in sorted order, with `%`, `,` and
/// `=` in a scope id written as `%25`, `%2C` and `%3D`. The empty string is a fresh download;
/// a scope missing from the cursor starts at 0.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeCursor {
    seqs: BTreeMap<String, i64>,
}

impl ScopeCursor {
    const PREFIX: &'static str = "v2:";

    pub fn parse(text: &str) -> Result<ScopeCursor, CursorError> {
        if text.is_empty() {
            return Ok(ScopeCursor::default());
        }
        let Some(body) = text.strip_prefix(Self::PREFIX) else {
            if text.bytes().all(|byte| byte.is_ascii_digit()) {
                return Err(CursorError::Legacy);
            }
            return Err(match text.split_once(':') {
                Some((version, _))
                    if version.len() > 1
                        && version.starts_with('v')
                        && version[1..].bytes().all(|byte| byte.is_ascii_digit()) =>
                {
                    CursorError::UnknownVersion
                }
                _ => CursorError::Malformed("no version prefix"),
            });
        };
        let mut cursor = ScopeCursor::default();
        if body.is_empty() {
            return Ok(cursor);
        }
        for entry in body.split(',') {
            let (scope, seq) = entry
                .split_once('=')
                .ok_or(CursorError::Malformed("an entry without '='"))?;
            let scope = unescape_scope(scope)?;
            if scope.is_empty() {
                return Err(CursorError::Malformed("an empty scope id"));
            }
            if seq.is_empty() || !seq.bytes().all(|byte| byte.is_ascii_digit()) {
                return Err(CursorError::Malformed("a sequence that is not a decimal"));
            }
            let seq = seq
                .parse::<i64>()
                .map_err(|_| CursorError::Malformed("a sequence out of range"))?;
            if cursor.seqs.insert(scope, seq).is_some() {
                return Err(CursorError::Malformed("a scope named twice"));
            }
        }
        Ok(cursor)
    }

    pub fn encode(&self) -> String {
        let entries: Vec<String> = self
            .seqs
            .iter()
            .map(|(scope, seq)| format!("{}={seq}", escape_scope(scope)))
            .collect();
        format!("{}{}", Self::PREFIX, entries.join(","))
    }

    /// The position in one scope; 0 (start of the scope) when the cursor does not name it.
    pub fn get(&self, scope_id: &str) -> i64 {
        self.seqs.get(scope_id).copied().unwrap_or(0)
    }

    pub fn set(&mut self, scope_id: &str, seq: i64) {
        self.seqs.insert(scope_id.to_owned(), seq);
    }

    /// The scopes the cursor names, in sorted order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, i64)> {
        self.seqs.iter().map(|(scope, seq)| (scope.as_str(), *seq))
    }

    pub fn is_empty(&self) -> bool {
        self.seqs.is_empty()
    }
}

fn escape_scope(scope: &str) -> String {
    let mut escaped = String::with_capacity(scope.len());
    for character in scope.chars() {
        match character {
            '%' => escaped.push_str("%25"),
            ',' => escaped.push_str("%2C"),
            '=' => escaped.push_str("%3D"),
            other => escaped.push(other),
        }
    }
    escaped
}

fn unescape_scope(text: &str) -> Result<String, CursorError> {
    let mut scope = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(index) = rest.find('%') {
        scope.push_str(&rest[..index]);
        let code = rest.get(index + 1..index + 3);
        scope.push(match code {
            Some("25") => '%',
            Some("2C") => ',',
            Some("3D") => '=',
            _ => return Err(CursorError::Malformed("a bad escape in a scope id")),
        });
        rest = &rest[index + 3..];
    }
    scope.push_str(rest);
    Ok(scope)
}

/// Which area a monthly-ledger (月台账) read covers: one township, or every township of a
/// county. Comes from the caller's principal, never from the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerArea {
    Township(String),
    County(String),
}

/// One household of a ledger read, with its first responsible cadre (第一帮扶责任人).
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerHousehold {
    pub household_id: String,
    pub head_name: String,
    pub township_id: String,
    pub village_id: String,
    pub village_name: String,
    pub primary_cadre_user_id: Option<String>,
    pub primary_cadre_name: Option<String>,
}

/// One open (not superseded) revision of a visit of the month: what the ledger state
/// machine needs, plus the names the lists show.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerVisit {
    pub visit_id: String,
    pub revision: u32,
    pub household_id: String,
    pub author_user_id: String,
    pub author_name: String,
    pub mode: VisitMode,
    pub state: ReviewState,
    pub checkin_at: OffsetDateTime,
    /// When the server received this revision.
    pub submitted_at: OffsetDateTime,
}

/// A township's month close (月结).
#[derive(Debug, Clone, PartialEq)]
pub struct MonthClosure {
    pub township_id: String,
    pub township_name: String,
    /// YYYY-MM.
    pub month: String,
    pub closed_by_user_id: String,
    pub closed_by_name: String,
    pub closed_at: OffsetDateTime,
    /// Slots frozen by the close.
    pub household_count: u32,
}

/// One slot as month close froze it: the household as it was then (names, village,
/// primary cadre) and the snapshot, so the locked figures never change.
#[derive(Debug, Clone, PartialEq)]
pub struct LockedLedgerRow {
    pub month: String,
    pub household: LedgerHousehold,
    pub snapshot: fieldsync_model::ledger::LockedSnapshot,
}

/// Everything the ledger needs for one area and month, read in one snapshot
/// ([`Store::ledger_facts`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LedgerFacts {
    /// The area's households now, by village, head name.
    pub households: Vec<LedgerHousehold>,
    /// Open revisions of the month's visits (business month of check-in) in the area.
    pub visits: Vec<LedgerVisit>,
    /// Closures of this month among the area's townships.
    pub closures: Vec<MonthClosure>,
    /// Frozen slots of the closed townships.
    pub locked: Vec<LockedLedgerRow>,
}

/// A cadre of the area with the latest time any of their devices pushed or reported a
/// heartbeat (`None` when never).
#[derive(Debug, Clone, PartialEq)]
pub struct CadreLastSync {
    pub user_id: String,
    pub display_name: String,
    pub township_id: String,
    pub last_sync_at: Option<OffsetDateTime>,
}

/// How many visits waiting for review carry one evidence flag.
#[derive(Debug, Clone, PartialEq)]
pub struct FlagCount {
    pub code: String,
    pub label_zh: String,
    pub visits: u32,
}

/// 导入记录: one applied roster import (建档立卡花名册导入), kept as its audit.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportRun {
    pub run_id: String,
    /// The county the import was applied to (the administrator's area).
    pub county_id: String,
    pub file_name: String,
    /// Hex SHA-256 of the uploaded bytes.
    pub file_sha256: String,
    pub file_bytes: u64,
    /// Non-empty data rows of the file.
    pub data_rows: u64,
    pub households_created: u64,
    pub members_created: u64,
    pub fields_changed: u64,
    pub unchanged_rows: u64,
    pub applied_by_user_id: String,
    /// The administrator's display name, as the store returns it (ignored on write).
    pub applied_by_name: String,
    pub applied_at: OffsetDateTime,
}

/// A validated roster import to store in one transaction ([`Store::apply_roster_import`]).
#[derive(Debug, Clone)]
pub struct RosterImportApply {
    /// The audit row to write (counts are taken from `plan` by the caller).
    pub run: ImportRun,
    pub plan: fieldsync_model::roster::ImportPlan,
    /// Stamp of every field write of the import: the server HLC and the import's writer
    /// device. The store moves it past a register's current write when needed, so an import
    /// always takes effect, like a console resolution.
    pub stamp: Stamp,
    /// Incremented once per applied item (household created, member added, field written),
    /// so a progress page can follow a long transaction.
    pub applied_items: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

// ----- ledger exports (台账导出), audit log (审计日志) and pairings (结对) -----

pub use fieldsync_model::access::AuditContent;

/// One stored record of the append-only, hash-chained audit log (DESIGN §7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Increasing in append order.
    pub audit_id: i64,
    pub content: AuditContent,
    pub previous_hash: String,
    pub record_hash: String,
    /// Id of the key whose HMAC `record_hash` is; empty for a legacy SHA-256 record.
    pub key_id: String,
}

impl AuditRecord {
    /// The record as the model's chain verifier reads it.
    pub fn chained(&self) -> fieldsync_model::access::ChainedRecord {
        fieldsync_model::access::ChainedRecord {
            position: self.audit_id,
            content: self.content.clone(),
            key_id: self.key_id.clone(),
            previous_hash: self.previous_hash.clone(),
            record_hash: self.record_hash.clone(),
        }
    }
}

/// Where the next page of an export continues (keyset paging): export rows come ordered by
/// village id, household id and then the row's own key (for visits the check-in time then
/// the visit id, [`VisitLedgerRow::row_key`]; `YYYY-Q` for income).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportCursor {
    pub village_id: String,
    pub household_id: String,
    pub row_key: String,
}

/// The household facts every ledger row repeats. Values are stored values (unmasked): the
/// export use case masks them for the caller's role.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportHousehold {
    pub household_id: String,
    pub township_id: String,
    pub township_name: String,
    pub village_id: String,
    pub village_name: String,
    /// 户编号.
    pub national_household_number: String,
    /// 户主.
    pub head_name: String,
    /// The head's 身份证号 ('' when the card has no head member).
    pub head_id_number: String,
    pub phone: String,
}

/// One row of the 走访台账: the latest revision of one visit in the month.
#[derive(Debug, Clone, PartialEq)]
pub struct VisitLedgerRow {
    pub household: ExportHousehold,
    pub visit: Visit,
    pub state: ReviewState,
    pub cadre_name: String,
    pub cadre_phone: String,
    /// Evidence flags of the revision; `None` before they were computed.
    pub flags: Option<Vec<EvidenceFlag>>,
    pub photo_count: u32,
    /// 审核人 and 审核时间: who decided on this revision and when; `None` while undecided.
    pub decision: Option<(String, OffsetDateTime)>,
    /// The row's place within its household, as the store orders it (check-in time, then
    /// visit id); opaque to callers, handed back in the cursor.
    pub row_key: String,
}

impl VisitLedgerRow {
    /// The cursor that continues after this row.
    pub fn cursor(&self) -> ExportCursor {
        ExportCursor {
            village_id: self.household.village_id.clone(),
            household_id: self.household.household_id.clone(),
            row_key: self.row_key.clone(),
        }
    }
}

/// One row of the 收入登记台账: the registration in force for one household and quarter
/// (the last one registered wins, as in [`fieldsync_model::income::latest_per_quarter`]).
#[derive(Debug, Clone, PartialEq)]
pub struct IncomeLedgerRow {
    pub household: ExportHousehold,
    pub registration: IncomeRegistration,
}

impl IncomeLedgerRow {
    /// The cursor that continues after this row.
    pub fn cursor(&self) -> ExportCursor {
        ExportCursor {
            village_id: self.household.village_id.clone(),
            household_id: self.household.household_id.clone(),
            row_key: income_row_key(self.registration.year, self.registration.quarter),
        }
    }
}

/// `YYYY-Q`: the order key of an income row within its household.
pub fn income_row_key(year: i32, quarter: u32) -> String {
    format!("{year:04}-{quarter}")
}

/// A cadre of the county with their pairing load (8741).
#[derive(Debug, Clone, PartialEq)]
pub struct CadreLoad {
    pub user_id: String,
    pub display_name: String,
    pub phone: String,
    pub township_id: String,
    pub township_name: String,
    pub rank: Option<CadreRank>,
    /// Active pairings as 第一帮扶责任人.
    pub primary_count: u32,
    /// Other active pairings (第二帮扶责任人).
    pub secondary_count: u32,
}

/// Filters of the pairing households list; the county comes from the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PairingFilter {
    pub township_id: Option<String>,
    pub village_id: Option<String>,
    /// Only households whose primary count is not exactly one.
    pub only_problems: bool,
    pub limit: u32,
}

/// One household with its active pairings.
#[derive(Debug, Clone, PartialEq)]
pub struct HouseholdPairings {
    pub household_id: String,
    pub head_name: String,
    pub township_id: String,
    pub township_name: String,
    pub village_id: String,
    pub village_name: String,
    /// User ids and names of the active 第一帮扶责任人 (normally exactly one).
    pub primaries: Vec<(String, String)>,
    /// User ids and names of the other active cadres.
    pub secondaries: Vec<(String, String)>,
}

/// Make a cadre the household's 第一帮扶责任人 (county action), with the hand-over rules of
/// [`Store::reassign_household`], and with an audit record in the same transaction when the
/// admin confirmed an assignment beyond the quota.
#[derive(Debug, Clone, PartialEq)]
pub struct PrimaryAssignment {
    pub household_id: String,
    pub cadre_user_id: String,
    pub at: OffsetDateTime,
    /// Refuse with `Conflict` when the cadre would then have more active primary pairings
    /// than this (re-checked inside the transaction, so two admins cannot race past it).
    pub max_primary_count: Option<u32>,
    /// Appended to the audit log in the same transaction (超额确认).
    pub audit: Option<AuditContent>,
}

/// The storage interface. Every method is a complete unit of work (its own transaction).
#[async_trait]
pub trait Store:
    accounts::AccountsStore
    + sessions::SessionsStore
    + search::SearchStore
    + Send
    + Sync
    + std::fmt::Debug
    + 'static
{
    /// True when no county has been loaded yet.
    async fn is_empty(&self) -> StoreResult<bool>;
    /// Load areas, users, households and pairings in one transaction.
    async fn load_seed(&self, seed: SeedData) -> StoreResult<()>;

    async fn find_user_by_username(&self, username: &str) -> StoreResult<Option<UserRecord>>;
    async fn find_user_by_id(&self, user_id: &str) -> StoreResult<Option<UserRecord>>;
    /// Replace a user's password hash (PHC string).
    async fn set_password_hash(&self, user_id: &str, password_hash: &str) -> StoreResult<()>;
    async fn list_areas(&self, parent_id: Option<&str>) -> StoreResult<Vec<Area>>;
    async fn get_area(&self, area_id: &str) -> StoreResult<Option<Area>>;
    async fn get_household(&self, household_id: &str) -> StoreResult<Option<Household>>;
    /// Whether the cadre is (actively) paired with the household.
    async fn is_paired(&self, cadre_user_id: &str, household_id: &str) -> StoreResult<bool>;
    /// Household id and author of a stored visit (any revision), if it exists.
    async fn visit_owner(&self, visit_id: &str) -> StoreResult<Option<(String, String)>>;

    /// Apply a pre-checked batch atomically: dedupe on (device, seq) and on batch id, insert
    /// records, advance the device's last processed seq, and log changes for pull.
    async fn apply_push(&self, batch: PushBatch) -> StoreResult<PushResult>;
    /// [`Store::apply_push`], and in the same write transaction the evidence flags of what
    /// the batch stored, as [`crate::evidence::refresh_after_push_in`] says (issue 11 §2: a
    /// push is one durable commit). Failing to compute flags never fails the push: the flag
    /// work is discarded (logged) and the batch still commits.
    async fn apply_push_with_flags(
        &self,
        batch: PushBatch,
        flags: PushFlagWork,
    ) -> StoreResult<PushResult>;

    /// Changes visible to the principal after `cursor`, at most `limit` change entries in
    /// all. Each scope (township) of the principal is read in scope-sequence order; a scope
    /// the cursor does not name starts at 0. The next cursor names exactly the principal's
    /// scopes: the townships of its households now, plus those of tombstones addressed to it.
    async fn pull_changes(
        &self,
        principal: &Principal,
        cursor: &ScopeCursor,
        limit: u32,
    ) -> StoreResult<PullChanges>;

    /// Create the upload, or return the existing one with that id after moving its latest
    /// activity forward to the record's `last_activity_at` (a resume query is a sign of life).
    async fn start_upload(&self, upload: UploadRecord) -> StoreResult<UploadRecord>;
    async fn get_upload(&self, upload_id: &str) -> StoreResult<Option<UploadRecord>>;
    async fn find_upload_by_sha256(
        &self,
        sha256: &str,
        user_id: &str,
    ) -> StoreResult<Option<UploadRecord>>;
    /// Record the committed offset and, as the upload's latest activity, `now`.
    async fn set_upload_offset(
        &self,
        upload_id: &str,
        committed_offset: u64,
        now: OffsetDateTime,
    ) -> StoreResult<()>;
    /// Mark the upload complete and record the blob as present.
    async fn complete_upload(&self, upload_id: &str, now: OffsetDateTime) -> StoreResult<()>;
    async fn blob_exists(&self, sha256: &str) -> StoreResult<bool>;
    /// Photo metadata by id (for serving thumbnails with an access check).
    async fn get_photo(&self, photo_id: &str) -> StoreResult<Option<PhotoRecord>>;
    /// Keep what upload completion extracted from an accepted blob (upsert by SHA-256).
    async fn save_photo_meta(&self, sha256: &str, meta: PhotoMeta) -> StoreResult<()>;
    /// The extracted metadata of a blob, if it was stored.
    async fn photo_meta(&self, sha256: &str) -> StoreResult<Option<PhotoMeta>>;
    /// Ids of the visits that have a photo record with this SHA-256, in id order.
    async fn visits_with_photo(&self, sha256: &str) -> StoreResult<Vec<String>>;
    /// The inputs of the evidence checks of a visit's latest revision, or `None` for an
    /// unknown visit. `near_duplicate_max_bits` bounds which other photos are returned as
    /// near duplicates (exact SHA-256 matches always are).
    async fn evidence_inputs(
        &self,
        visit_id: &str,
        near_duplicate_max_bits: u32,
    ) -> StoreResult<Option<EvidenceInputs>>;
    /// Recompute, in one write transaction, the flags of every visit with a photo of this
    /// file ([`crate::evidence::refresh_for_blob_in`]); run when its upload completed.
    async fn refresh_flags_of_blob(
        &self,
        sha256: &str,
        settings: fieldsync_model::evidence::EvidenceSettings,
    ) -> StoreResult<()>;
    /// How many write transactions this store has committed since it was opened: what the
    /// durability of an acknowledgement costs (tests pin one per push).
    fn committed_writes(&self) -> u64;
    /// Keep the evidence flags computed for one revision (replacing earlier ones).
    /// `NotFound` when the revision does not exist. Production keeps flags inside the push's
    /// or the upload's own transaction; this and [`Store::evidence_inputs`] run the same
    /// gathering and saving on their own, for the conformance suite and test set-ups.
    async fn save_visit_flags(
        &self,
        visit_id: &str,
        revision: u32,
        flags: Vec<EvidenceFlag>,
    ) -> StoreResult<()>;

    /// The township's latest revisions in state SUBMITTED, oldest first.
    async fn review_queue(
        &self,
        township_id: &str,
        filter: QueueFilter,
    ) -> StoreResult<Vec<QueueItem>>;
    async fn visit_detail(&self, visit_id: &str) -> StoreResult<Option<VisitDetail>>;
    /// Counts behind the queue's filter bar for `filter` (its `limit`, `offset` and `after`
    /// are ignored); `age_cutoffs` are instants, each counted as "submitted at or before".
    async fn review_queue_facets(
        &self,
        township_id: &str,
        filter: QueueFilter,
        age_cutoffs: Vec<OffsetDateTime>,
    ) -> StoreResult<QueueFacets>;
    /// One stored revision of a visit with its decision, or `None` when it does not exist.
    async fn visit_revision(
        &self,
        visit_id: &str,
        revision: u32,
    ) -> StoreResult<Option<VisitRevision>>;
    /// Received photos listed by the latest revision of the household's other visits in the
    /// given business months (YYYY-MM), newest month first, then newest visit, then photo
    /// order; at most `limit` photos.
    async fn household_photo_history(
        &self,
        household_id: &str,
        exclude_visit_id: &str,
        months: Vec<String>,
        limit: u32,
    ) -> StoreResult<Vec<HouseholdPhoto>>;
    /// Record a decision on the latest revision. Fails with `StaleDecision` when the revision
    /// or content hash is not the latest, or the revision was already decided.
    async fn decide(&self, decision: StoredDecision) -> StoreResult<ReviewState>;

    /// Households of the township without an in-person visit (submitted or approved) in the
    /// given month (YYYY-MM, Beijing time), grouped by village order.
    async fn unvisited_households(
        &self,
        township_id: &str,
        month: &str,
    ) -> StoreResult<Vec<UnvisitedHousehold>>;
    /// Latest income registrations of a household, newest first.
    async fn income_registrations(
        &self,
        household_id: &str,
    ) -> StoreResult<Vec<IncomeRegistration>>;

    // ----- households, income and the 两不愁三保障 checklist (server/src/households.rs) -----

    /// Every threshold row (标准线), by year then region. The table is small (a few rows per
    /// year), so callers resolve lines in memory with `income::resolve_line`.
    async fn income_thresholds(&self) -> StoreResult<Vec<IncomeThreshold>>;
    /// Insert or replace the row of `(year, region)`.
    async fn set_income_threshold(&self, threshold: IncomeThreshold) -> StoreResult<()>;
    /// Store income registrations that did not come through a phone push (the demo county,
    /// a later register import), in one transaction. A registration id already stored with
    /// the same content is skipped; with other content it is a `Conflict`. An unknown
    /// household is `NotFound`. Nothing is stored when any entry fails.
    async fn save_income_registrations(
        &self,
        registrations: Vec<IncomeRegistration>,
    ) -> StoreResult<()>;
    /// Households of an area: a township's, or every township's of a county (townships whose
    /// parent is `area_id`), ordered by village then head name.
    async fn households_in_area(&self, area_id: &str) -> StoreResult<Vec<Household>>;
    /// Income registrations of `year` for the households of an area (as
    /// [`Store::households_in_area`]), in arrival order so that a later correction of a
    /// quarter comes after the registration it corrects.
    async fn area_income_registrations(
        &self,
        area_id: &str,
        year: i32,
    ) -> StoreResult<Vec<IncomeRegistration>>;
    /// For each household of an area with at least one visit: the 两不愁三保障 quick check of
    /// its latest visit (latest check-in; the visit's latest revision, whatever its review
    /// state, because the check records what the cadre saw).
    async fn latest_wellbeing_checks(
        &self,
        area_id: &str,
    ) -> StoreResult<Vec<LatestWellbeingCheck>>;
    /// Everything the household page and the 明白卡 show, read in one snapshot; `None` for an
    /// unknown household.
    async fn household_dossier(&self, household_id: &str) -> StoreResult<Option<HouseholdDossier>>;

    /// Every write applied to one register, in server order.
    async fn register_history(
        &self,
        household_id: &str,
        target: &FieldTarget,
        field: &str,
    ) -> StoreResult<Vec<RegisterWrite>>;
    /// The greatest HLC of any stored register write (the server HLC starts past it after a
    /// restart), or [`Hlc::ZERO`].
    async fn max_register_hlc(&self) -> StoreResult<Hlc>;
    /// Unresolved conflict records of a township, oldest first.
    async fn open_conflicts(&self, township_id: &str) -> StoreResult<Vec<ConflictRecord>>;
    /// The user's own edits that are one side of an unresolved conflict record, oldest
    /// first, at most 100: what the pull tells their phones is waiting for a supervisor.
    async fn pending_conflicts(&self, user_id: &str) -> StoreResult<Vec<PendingConflict>>;
    /// Resolve a conflict in one transaction: write the chosen value to the register as an
    /// ordinary write (logged for pull), then mark every open conflict of that register
    /// resolved. Returns the stamp the write was stored with. `NotFound` for an unknown key,
    /// a conflict outside the township or one already resolved; `InvalidValue` when the
    /// value breaks the field's rules.
    async fn resolve_conflict(&self, resolution: ConflictResolution) -> StoreResult<Stamp>;

    /// Make `new_cadre_user_id` the household's primary cadre (county action): the old
    /// primary pairing is deactivated, and the change log gets a tombstone addressed to the
    /// old cadre (their next pull lists the id as removed) and a household entry (the new
    /// cadre's next pull delivers it). `NotFound` for an unknown household or cadre.
    async fn reassign_household(
        &self,
        household_id: &str,
        new_cadre_user_id: &str,
        at: OffsetDateTime,
    ) -> StoreResult<()>;

    /// Shrink the change log: delete entries superseded by a later entry for the same record
    /// (always safe), and tombstones written before `tombstones_before` (the horizon). In
    /// each scope, the highest deleted tombstone sequence becomes the scope's floor: a cursor
    /// below it may have missed a removal and must RESET.
    async fn compact_change_log(
        &self,
        tombstones_before: OffsetDateTime,
    ) -> StoreResult<ChangeLogCompaction>;

    /// Per scope, the change-log floor (0 before any tombstone expired; see
    /// [`Store::compact_change_log`]) and the newest scope sequence ever issued. A cursor
    /// outside `[floor, newest]` (0 excepted) in any scope cannot be served incrementally
    /// ([`ChangeLogBounds::check`]).
    async fn change_log_bounds(&self) -> StoreResult<ChangeLogBounds>;

    /// Keep the latest heartbeat of a device (upsert). A heartbeat that repeats the stored
    /// one (same counts, error, app version and device clock offset) less than a minute
    /// after it was stored is not written again: the phone sends one with every pull, and
    /// a durable write per pull would make every sync wait for the disk.
    async fn record_heartbeat(
        &self,
        device_id: &str,
        user_id: &str,
        heartbeat: Heartbeat,
        server_time: OffsetDateTime,
    ) -> StoreResult<()>;
    /// Latest heartbeats of the township's cadres' devices, oldest unsent data first
    /// (devices with nothing unsent last).
    async fn device_backlog(&self, township_id: &str) -> StoreResult<Vec<DeviceBacklog>>;

    /// Delete the incomplete uploads with no activity since `older_than` (abandoned: the
    /// phone gave up, or started over under a new id) and return their ids, so that their staging files
    /// can be removed. Complete uploads and blobs are never deleted: one blob serves many
    /// photo rows.
    async fn expire_uploads(&self, older_than: OffsetDateTime) -> StoreResult<Vec<String>>;

    /// The county's townships and villages and every stored household of the county, as the
    /// roster import validates and diffs against them.
    async fn county_roster(
        &self,
        county_id: &str,
    ) -> StoreResult<fieldsync_model::roster::CountyRoster>;
    /// Store a roster import in one transaction: new households (logged for pull), members
    /// added to stored households (logged), field changes as ordinary register writes
    /// (merged, conflict-checked against their `base_seq`, logged for pull), and the
    /// [`ImportRun`] row. `Conflict` when a new household's 户编号 exists by now (another
    /// import won the race); `InvalidValue` when a value breaks a field rule. Either way
    /// nothing is stored.
    async fn apply_roster_import(&self, apply: RosterImportApply) -> StoreResult<ImportRun>;
    /// The county's applied imports, newest first.
    async fn import_runs(&self, county_id: &str, limit: u32) -> StoreResult<Vec<ImportRun>>;

    /// The monthly ledger's facts for one area and month (YYYY-MM): households with their
    /// primary cadre, open visit revisions of the month, and the month's closures with their
    /// frozen slots. One read snapshot, a few indexed queries (no per-household query).
    async fn ledger_facts(&self, area: &LedgerArea, month: &str) -> StoreResult<LedgerFacts>;
    /// Close a township's month (月结): freeze every household's slot as
    /// [`fieldsync_model::ledger::derive_slot`] computes it at `closed_at`. `InvalidValue`
    /// (field `month`) for a malformed month or one that has not ended at `closed_at`,
    /// `NotFound` for an unknown township, `Conflict` when the month is already closed.
    async fn close_month(
        &self,
        township_id: &str,
        month: &str,
        closed_by_user_id: &str,
        closed_at: OffsetDateTime,
    ) -> StoreResult<MonthClosure>;
    /// Closures of the area's townships, newest month first.
    async fn month_closures(&self, area: &LedgerArea) -> StoreResult<Vec<MonthClosure>>;
    /// Every cadre of the area with their latest push or heartbeat, by name.
    async fn cadre_last_syncs(&self, area: &LedgerArea) -> StoreResult<Vec<CadreLastSync>>;
    /// Per evidence flag code, how many visits of the area wait for review (latest revision
    /// SUBMITTED) with that flag, by code.
    async fn queue_flag_counts(&self, area: &LedgerArea) -> StoreResult<Vec<FlagCount>>;

    /// Append one record to the audit log, chained to the newest record (one transaction, so
    /// concurrent appends never fork the chain). Returns the stored record.
    async fn append_audit(&self, content: AuditContent) -> StoreResult<AuditRecord>;
    /// Audit records with `audit_id > after_id`, oldest first, at most `limit`.
    async fn audit_records(&self, after_id: i64, limit: u32) -> StoreResult<Vec<AuditRecord>>;
    /// The newest record's `audit_id` (0 when the log is empty).
    async fn audit_last_id(&self) -> StoreResult<i64>;
    /// A page of the 走访台账: latest revisions of the visits of `month` (YYYY-MM, Beijing)
    /// of households in `area_id` (a township, or a county: its townships), after `after`,
    /// ordered by village id, household id, visit id.
    async fn export_visits(
        &self,
        area_id: &str,
        month: &str,
        after: Option<ExportCursor>,
        limit: u32,
    ) -> StoreResult<Vec<VisitLedgerRow>>;
    /// A page of the 收入登记台账: the registration in force per household and quarter of
    /// `year` (one quarter when given) in `area_id`, after `after`, ordered by village id,
    /// household id, quarter.
    async fn export_income(
        &self,
        area_id: &str,
        year: i32,
        quarter: Option<u32>,
        after: Option<ExportCursor>,
        limit: u32,
    ) -> StoreResult<Vec<IncomeLedgerRow>>;
    /// Every cadre of the county's townships with their active pairing counts, by township
    /// and name.
    async fn cadre_loads(&self, county_id: &str) -> StoreResult<Vec<CadreLoad>>;
    /// Households of the county with their active pairings, by village and head name.
    async fn pairing_households(
        &self,
        county_id: &str,
        filter: PairingFilter,
    ) -> StoreResult<Vec<HouseholdPairings>>;
    /// Make a cadre the household's 第一帮扶责任人 in one transaction (see
    /// [`PrimaryAssignment`]). `NotFound` for an unknown household or cadre; `Conflict` when
    /// the cadre is already its primary or the quota guard refuses.
    async fn assign_primary(&self, assignment: PrimaryAssignment) -> StoreResult<()>;
    /// Add (`active`) or end a 第二帮扶责任人 pairing of a cadre with a household, in one
    /// transaction. Adding: `NotFound` for an unknown household or cadre, `Conflict` when
    /// the two are already paired; the household is sent again, so the helper's phone
    /// receives it at its next pull. Ending: `NotFound` without an active pairing,
    /// `Conflict` for the 第一帮扶责任人 (change the primary instead); the helper's phone
    /// gets a tombstone that purges the household.
    async fn set_helper_pairing(
        &self,
        household_id: &str,
        cadre_user_id: &str,
        active: bool,
        at: OffsetDateTime,
    ) -> StoreResult<()>;
    /// Sizes an operator watches on `/metrics` (see [`OperationalCounts`]); cheap enough to
    /// read at every scrape.
    async fn operational_counts(&self) -> StoreResult<OperationalCounts>;
}

/// Queue sizes for monitoring (issue 12 §4).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OperationalCounts {
    /// Visit revisions waiting for a decision (待审核), county-wide.
    pub review_queue: u64,
    /// Photo uploads started and not complete.
    pub incomplete_uploads: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_in_their_text_form() {
        let mut cursor = ScopeCursor::default();
        assert_eq!(ScopeCursor::parse("").expect("empty"), cursor);
        assert_eq!(cursor.encode(), "v2:");
        assert_eq!(ScopeCursor::parse("v2:").expect("no scopes"), cursor);
        cursor.set("township-2", 7);
        cursor.set("township-1", 12);
        let text = cursor.encode();
        assert_eq!(text, "v2:township-1=12,township-2=7");
        assert_eq!(ScopeCursor::parse(&text).expect("parse"), cursor);
        assert_eq!(cursor.get("township-1"), 12);
        assert_eq!(cursor.get("township-3"), 0, "a missing scope starts at 0");

        let mut odd = ScopeCursor::default();
        odd.set("a,b=c%d 镇", 3);
        let text = odd.encode();
        assert_eq!(text, "v2:a%2Cb%3Dc%25d 镇=3");
        assert_eq!(ScopeCursor::parse(&text).expect("escaped"), odd);
    }

    #[test]
    fn cursors_the_server_never_issued_are_refused() {
        assert_eq!(ScopeCursor::parse("42"), Err(CursorError::Legacy));
        assert_eq!(ScopeCursor::parse("0"), Err(CursorError::Legacy));
        assert_eq!(
            ScopeCursor::parse("v3:t=1"),
            Err(CursorError::UnknownVersion)
        );
        for garbage in [
            "-5",
            "not-a-cursor",
            "v2:t",
            "v2:=3",
            "v2:t=",
            "v2:t=-1",
            "v2:t=+1",
            "v2:t=1,",
            "v2:t=1,t=2",
            "v2:t=99999999999999999999",
            "v2:t%2=1",
            "v2:t%41=1",
            "V2:t=1",
        ] {
            assert!(
                matches!(ScopeCursor::parse(garbage), Err(CursorError::Malformed(_))),
                "{garbage:?} -> {:?}",
                ScopeCursor::parse(garbage)
            );
        }
    }

    #[test]
    fn bounds_refuse_positions_below_the_floor_or_ahead_of_the_server() {
        let bounds = ChangeLogBounds {
            scopes: BTreeMap::from([
                (
                    "t1".to_owned(),
                    ScopeBounds {
                        floor_seq: 5,
                        newest_seq: 10,
                    },
                ),
                (
                    "t2".to_owned(),
                    ScopeBounds {
                        floor_seq: 0,
                        newest_seq: 3,
                    },
                ),
            ]),
        };
        let cursor = |entries: &[(&str, i64)]| {
            let mut cursor = ScopeCursor::default();
            for (scope, seq) in entries {
                cursor.set(scope, *seq);
            }
            cursor
        };
        assert_eq!(bounds.check(&ScopeCursor::default()), Ok(()));
        assert_eq!(bounds.check(&cursor(&[("t1", 5), ("t2", 3)])), Ok(()));
        assert_eq!(
            bounds.check(&cursor(&[("t1", 0), ("t2", 0)])),
            Ok(()),
            "a scope at 0 is a fresh download of that scope"
        );
        assert_eq!(
            bounds.check(&cursor(&[("t1", 4), ("t2", 3)])),
            Err(CursorOutOfRange::BelowFloor {
                scope_id: "t1".into()
            })
        );
        assert_eq!(
            bounds.check(&cursor(&[("t1", 10), ("t2", 4)])),
            Err(CursorOutOfRange::AheadOfServer {
                scope_id: "t2".into()
            })
        );
        assert_eq!(
            bounds.check(&cursor(&[("t9", 1)])),
            Err(CursorOutOfRange::AheadOfServer {
                scope_id: "t9".into()
            }),
            "a scope the server never wrote has issued nothing"
        );
    }
}
