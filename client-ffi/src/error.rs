//! `FieldsyncError`: the one error type of the binding surface, as stable codes with the
//! fields an app needs to show its own localised text (the Chinese/English words of the
//! core's `ClientError` stay in `message` for logs only). The mapping from `ClientError`
//! is one exhaustive `match`, so a new core error cannot reach the apps unmapped.

use fieldsync_client::{ClientError, SignOutReason, TlsFailure};

/// Everything a call of the bindings can fail with. The variant name is the stable code
/// (Kotlin/Swift/Python see `FieldsyncError.NotSignedIn` and so on).
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum FieldsyncError {
    /// No session on this device: show the login screen.
    #[error("not signed in: {message}")]
    NotSignedIn { message: String },
    /// Login refused: unknown username or wrong password (or a disabled account).
    #[error("wrong username or password: {message}")]
    WrongCredentials { message: String },
    /// The server ended this device's session (注销设备, password changed elsewhere, or
    /// expired): log in again; unsent records are kept. `reason` is `session_revoked` or
    /// `session_expired`.
    #[error("signed out by the server: {reason}")]
    SignedOutByServer { reason: String },
    /// Too many failed logins: wait `retry_after_secs`, never retry on your own.
    #[error("login throttled for {retry_after_secs} s: {message}")]
    LoginThrottled {
        retry_after_secs: u64,
        message: String,
    },
    /// The phone's clock is ahead of the server's: ask the cadre to fix it; data is safe.
    #[error("device clock is {ahead_minutes} minutes ahead of the server")]
    ClockWrong {
        ahead_minutes: u64,
        /// The server's time (unix ms) when it refused, when it said.
        server_time_ms: Option<u64>,
    },
    /// No connection to the server: keep working offline, sync later.
    #[error("server unreachable: {message}")]
    Offline { message: String },
    /// A plain `http://` address beyond this device: refused before connecting.
    #[error("refusing plain http to {server_url}")]
    InsecureHttp { server_url: String },
    /// The TLS handshake failed. `failure` is `untrusted_certificate`, `not_tls` or
    /// `handshake`.
    #[error("TLS failed ({failure}): {message}")]
    TlsFailed { failure: String, message: String },
    /// The server refuses this app version: update the app.
    #[error("app upgrade required: {message}")]
    UpgradeRequired { message: String },
    /// The server refused the request; `code` is the gRPC status name
    /// (`InvalidArgument`, `PermissionDenied`, ...).
    #[error("server refused ({code}): {message}")]
    ServerRefused { code: String, message: String },
    /// The server answered something this client cannot use.
    #[error("protocol error: {message}")]
    Protocol { message: String },
    /// Another sync of this install is running.
    #[error("a sync is already running")]
    SyncInProgress,
    /// The app cancelled the sync; the next one resumes.
    #[error("sync cancelled")]
    Cancelled,
    /// A form field fails a check; `field` names it.
    #[error("invalid {field}: {message}")]
    Invalid { field: String, message: String },
    /// The household id (or prefix) is not on this phone.
    #[error("unknown household {household_id}: {message}")]
    UnknownHousehold {
        household_id: String,
        message: String,
    },
    /// The phone has not downloaded its households yet, so the id cannot be checked: sync
    /// once with signal, then record. Nothing was saved.
    #[error("households not downloaded yet; cannot check {household_id}")]
    HouseholdsNotSynced { household_id: String },
    /// A location fix that cannot exist (latitude outside −90…90, longitude outside
    /// −180…180, or NaN). Nothing was saved.
    #[error("impossible location ({latitude}, {longitude})")]
    ImpossibleLocation { latitude: f64, longitude: f64 },
    /// A location accuracy that is negative or NaN. Nothing was saved.
    #[error("invalid location accuracy {accuracy_m} m")]
    InvalidAccuracy { accuracy_m: f64 },
    /// Check-in to check-out is longer than the form allows. Nothing was saved.
    #[error("visit lasts {duration_minutes} minutes, more than {max_minutes}")]
    VisitTooLong {
        duration_minutes: i64,
        max_minutes: i64,
    },
    /// A visit, task or other record that is not on this phone.
    #[error("not found: {message}")]
    NotFound { message: String },
    /// The file is not a JPEG, PNG or WebP image (checked from its bytes by the server's
    /// rules). `reason` says what it is instead (for logs). Nothing was saved.
    #[error("not an image: {path}: {reason}")]
    PhotoNotAnImage { path: String, reason: String },
    /// A HEIC/HEIF photo: convert it to JPEG first (docs/mobile.md shows how). Nothing was
    /// saved.
    #[error("HEIC photo needs conversion to JPEG: {path}")]
    PhotoHeicNeedsConversion { path: String },
    /// 季登记: the quarter already has a registration in force; correct it explicitly.
    #[error("Q{quarter} {year} already registered for {household_id}")]
    QuarterAlreadyRegistered {
        household_id: String,
        year: i32,
        quarter: u32,
        net_fen: i64,
        on_this_phone: bool,
    },
    /// An income registration that breaks the model's rules.
    #[error("invalid income registration: {message}")]
    InvalidIncome { message: String },
    /// The local state does not allow it now (e.g. fixing a visit that was not returned).
    #[error("not allowed now: {message}")]
    NotAllowed { message: String },
    /// Reading or writing local files or the local database failed.
    #[error("local storage error: {message}")]
    Storage { message: String },
    /// Local data that no longer parses (a bug or a damaged file).
    #[error("corrupt local data: {message}")]
    Corrupt { message: String },
}

impl From<ClientError> for FieldsyncError {
    fn from(error: ClientError) -> Self {
        let message = error.to_string();
        match error {
            ClientError::Unavailable { message, .. } => Self::Offline { message },
            ClientError::InsecureHttp { server_url } => Self::InsecureHttp { server_url },
            ClientError::Tls { failure, .. } => Self::TlsFailed {
                failure: tls_failure_code(failure).to_owned(),
                message,
            },
            ClientError::NotLoggedIn(message) | ClientError::AccessTokenExpired(message) => {
                Self::NotSignedIn { message }
            }
            ClientError::LoginThrottled {
                retry_after_secs,
                message,
            } => Self::LoginThrottled {
                retry_after_secs,
                message,
            },
            ClientError::SignedOut { reason } => Self::SignedOutByServer {
                reason: sign_out_code(reason).to_owned(),
            },
            ClientError::UpgradeRequired(message) => Self::UpgradeRequired { message },
            ClientError::Rejected(message) => Self::ServerRefused {
                code: "InvalidArgument".to_owned(),
                message,
            },
            ClientError::DeviceClockWrong {
                ahead_minutes,
                server_time_ms,
            } => Self::ClockWrong {
                ahead_minutes,
                server_time_ms,
            },
            ClientError::SyncInProgress => Self::SyncInProgress,
            ClientError::Cancelled => Self::Cancelled,
            ClientError::Invalid { field, message } => Self::Invalid { field, message },
            ClientError::InvalidIncome(_) => Self::InvalidIncome { message },
            ClientError::IncomeAlreadyRegistered {
                household_id,
                year,
                quarter,
                net_fen,
                on_this_phone,
            } => Self::QuarterAlreadyRegistered {
                household_id,
                year,
                quarter,
                net_fen,
                on_this_phone,
            },
            ClientError::UnknownHousehold { household } => Self::UnknownHousehold {
                household_id: household,
                message,
            },
            ClientError::HouseholdsNotSynced { household } => Self::HouseholdsNotSynced {
                household_id: household,
            },
            ClientError::ImpossibleLocation { lat, lon } => Self::ImpossibleLocation {
                latitude: lat,
                longitude: lon,
            },
            ClientError::InvalidAccuracy { accuracy_m } => Self::InvalidAccuracy { accuracy_m },
            ClientError::VisitTooLong {
                minutes,
                max_minutes,
            } => Self::VisitTooLong {
                duration_minutes: minutes,
                max_minutes,
            },
            ClientError::PhotoNotAnImage { path, reason } => Self::PhotoNotAnImage {
                path: path.to_string_lossy().into_owned(),
                reason,
            },
            ClientError::PhotoHeicNeedsConversion { path, .. } => Self::PhotoHeicNeedsConversion {
                path: path.to_string_lossy().into_owned(),
            },
            ClientError::NotFound(message) => Self::NotFound { message },
            ClientError::NotAllowed(message) => Self::NotAllowed { message },
            ClientError::Io { .. } | ClientError::Database(_) => Self::Storage { message },
            ClientError::Corrupt(message) => Self::Corrupt { message },
            ClientError::Server { code, message } => Self::ServerRefused { code, message },
            ClientError::Protocol(message) => Self::Protocol { message },
        }
    }
}

fn sign_out_code(reason: SignOutReason) -> &'static str {
    reason.as_str()
}

fn tls_failure_code(failure: TlsFailure) -> &'static str {
    match failure {
        TlsFailure::UntrustedCertificate => "untrusted_certificate",
        TlsFailure::NotTls => "not_tls",
        TlsFailure::Handshake => "handshake",
    }
}

/// Result alias of the binding surface.
pub type FieldsyncResult<T> = Result<T, FieldsyncError>;
