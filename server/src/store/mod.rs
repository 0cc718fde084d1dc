//! Storage, one folder per area: each holds its trait and records (`mod.rs`), its SQLite
//! implementation next to its SQL (`sqlite.rs`) and its conformance checks with the macro a
//! backend invokes in one line (`conformance.rs`). [`Store`] combines the area traits, so
//! the rest of the server holds one `Arc<dyn Store>`. No SQL may appear outside this
//! module, and no SQLite type may appear in a trait, so a PostgreSQL implementation can pass
//! the same conformance suite.

pub mod accounts;
pub mod areas;
/// The shared fixture of every area's checks, and `checks_as_tests!`. Also built with the
/// `test-support` feature, so end-to-end tests and benchmarks build their data with the same
/// fixtures instead of copies.
#[cfg(any(test, feature = "test-support"))]
pub mod conformance;
pub(crate) mod evidence_rows;
pub mod export;
pub mod households;
pub mod jobs;
pub mod ledger;
pub mod media;
pub mod pairings;
pub mod postgres;
pub(crate) mod push_record;
pub mod review;
pub mod roster;
pub mod sealed;
pub mod search;
pub mod sessions;
pub mod sqlite;
pub mod sync;

use fieldsync_model::codes::{CadreRank, Role};
use fieldsync_model::household::{GeoPoint, Household};

pub use crate::media::photo::CaptureTime;
pub use accounts::AccountsStore;
pub use areas::AreasStore;
pub use export::{
    AuditRecord, ExportCursor, ExportHousehold, ExportStore, IncomeLedgerRow, VisitLedgerRow,
};
pub use households::{
    HouseholdDossier, HouseholdVisit, HouseholdsStore, LatestWellbeingCheck, PairedCadre,
};
pub use jobs::JobsStore;
pub use ledger::{
    CadreLastSync, FlagCount, LedgerArea, LedgerFacts, LedgerHousehold, LedgerStore, LedgerVisit,
    LockedLedgerRow, MonthClosure, UnvisitedHousehold,
};
pub use media::{
    CADRE_VISIT_WINDOW, DeviceClockReading, EvidenceInputs, EvidencePhoto, FlagTarget, MediaStore,
    PhotoMeta, UploadRecord,
};
pub use pairings::{CadreLoad, HouseholdPairings, PairingFilter, PairingsStore, PrimaryAssignment};
pub use review::{
    FacetCount, HouseholdPhoto, OperationalCounts, QueueFacets, QueueFilter, QueueItem,
    QueuePosition, ReviewStore, StoredDecision, VisitDetail, VisitRevision,
};
pub use roster::{ImportRun, RosterImportApply, RosterStore};
pub use search::{HouseholdQuery, SearchStore};
pub use sessions::{
    RefreshOutcome, RefreshRotation, SessionEndReason, SessionInfo, SessionKind, SessionLookup,
    SessionRecord, SessionsStore,
};
pub use sqlite::SqliteStore;
pub use sync::{
    ChangeLogBounds, ChangeLogCompaction, ConflictRecord, ConflictResolution, CursorError,
    CursorOutOfRange, DeviceBacklog, Heartbeat, PullChanges, PushAction, PushBatch, PushEntry,
    PushFlagWork, PushResult, ScopeBounds, ScopeCursor, SyncStore,
};

/// Errors of the storage layer. Callers map them to one public error at the boundary.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A failure that waiting can cure (busy, locked, I/O, full disk). `message` reads as
    /// before (it names the cause); the backend's own error is kept as the source, so a
    /// caller can still tell what it was.
    #[error("database error: {message}")]
    Database {
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },
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

/// A record as the JSON text every backend stores. A value serde cannot write is the
/// caller's (`InvalidValue`): retrying would fail the same way.
pub(crate) fn encode_json<T: serde::Serialize>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|error| StoreError::InvalidValue {
        field: "record".into(),
        message: format!("cannot encode record: {error}"),
    })
}

/// A stored JSON record; text that does not decode is corrupt data, named by `what`.
pub(crate) fn decode_json<T: serde::de::DeserializeOwned>(
    text: &str,
    what: &str,
) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|error| StoreError::Corrupt(format!("{what}: {error}")))
}

/// Stored evidence flags; a flag this server does not know (written by a newer one) is
/// skipped rather than making the visit unreadable.
pub(crate) fn decode_flags(
    text: &str,
) -> StoreResult<Vec<fieldsync_model::evidence::EvidenceFlag>> {
    let values: Vec<serde_json::Value> = decode_json(text, "evidence flags")?;
    Ok(values
        .into_iter()
        .filter_map(|value| serde_json::from_value(value).ok())
        .collect())
}

/// A stored review state.
pub(crate) fn parse_state(name: &str) -> StoreResult<fieldsync_model::codes::ReviewState> {
    fieldsync_model::codes::ReviewState::parse(name)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown review state {name:?}")))
}

/// Unix milliseconds, the time representation every backend stores. Out of range is the
/// caller's value (`InvalidValue`), never a storage fault.
pub(crate) fn to_millis(instant: time::OffsetDateTime) -> StoreResult<i64> {
    i64::try_from(instant.unix_timestamp_nanos() / 1_000_000).map_err(|_| {
        StoreError::InvalidValue {
            field: "timestamp".into(),
            message: format!("{instant} is out of range"),
        }
    })
}

/// The instant of stored Unix milliseconds; one that no instant has is corrupt data.
pub(crate) fn from_millis(millis: i64) -> StoreResult<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .map_err(|error| StoreError::Corrupt(format!("timestamp {millis}: {error}")))
}

impl StoreError {
    /// A `Database` failure described in words only (no lower-level error to keep).
    pub fn database(message: impl Into<String>) -> Self {
        Self::Database {
            message: message.into(),
            source: None,
        }
    }

    /// A `Database` failure caused by `source`, which is kept for the error chain.
    pub fn database_caused_by(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Database {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }
}

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

// ----- ledger exports (台账导出), audit log (审计日志) and pairings (结对) -----

pub use fieldsync_model::access::AuditContent;

/// The whole storage interface: every area trait. Callers hold an `Arc<dyn Store>`; a
/// backend implements the area traits and gets `Store` from the blanket impl below.
pub trait Store:
    accounts::AccountsStore
    + areas::AreasStore
    + export::ExportStore
    + households::HouseholdsStore
    + jobs::JobsStore
    + ledger::LedgerStore
    + media::MediaStore
    + pairings::PairingsStore
    + review::ReviewStore
    + roster::RosterStore
    + search::SearchStore
    + sessions::SessionsStore
    + sync::SyncStore
    + Send
    + Sync
    + std::fmt::Debug
    + 'static
{
}

impl<Backend> Store for Backend where
    Backend: accounts::AccountsStore
        + areas::AreasStore
        + export::ExportStore
        + households::HouseholdsStore
        + jobs::JobsStore
        + ledger::LedgerStore
        + media::MediaStore
        + pairings::PairingsStore
        + review::ReviewStore
        + roster::RosterStore
        + search::SearchStore
        + sessions::SessionsStore
        + sync::SyncStore
        + Send
        + Sync
        + std::fmt::Debug
        + 'static
{
}
