//! The small public error every boundary (gRPC, HTTP console) translates into its own
//! status. Inner errors (`StoreError`, `AuthError`, `BlobError`) convert into it; internal
//! details are logged once, here, and never sent to the caller.

use crate::auth::AuthError;
use crate::media::blobs::BlobError;
use crate::store::StoreError;

/// What went wrong, in the terms a caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller's session ended (revoked, logged out) or expired; `kind` is the
    /// machine-readable reason phones act on (`crate::auth::SessionEnd::kind`).
    #[error("{message}")]
    SessionEnded { kind: &'static str, message: String },
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{field}: {message}")]
    InvalidArgument { field: String, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// The device's clock is so far ahead that its edits would outrank everyone's for
    /// days; the whole batch is refused until the phone's time is corrected.
    #[error(
        "device clock wrong: 手机时间不正确，请校准后再同步 (the device clock is {} ahead of the server)",
        describe_ahead(*ahead_millis)
    )]
    DeviceClockWrong {
        ahead_millis: u64,
        server_time_ms: u64,
    },
    /// Too many failed logins (docs/security.md §3): wait `retry_after_secs` before trying
    /// again. gRPC RESOURCE_EXHAUSTED with `retry-after`, console 429 with `Retry-After`.
    #[error(
        "登录尝试过多，请 {retry_after_secs} 秒后再试 (too many login attempts; retry after {retry_after_secs} s)"
    )]
    Throttled { retry_after_secs: u64 },
    #[error("内部错误，请稍后重试 (internal error; retry later)")]
    Internal,
    #[error("服务暂时不可用，请稍后重试 (temporarily unavailable; retry later)")]
    Unavailable,
}

impl ServiceError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// "25 h 3 min" / "3 min": how far ahead a clock is, in words a cadre can act on.
fn describe_ahead(ahead_millis: u64) -> String {
    let minutes = ahead_millis / 60_000;
    match (minutes / 60, minutes % 60) {
        (0, minutes) => format!("{minutes} min"),
        (hours, 0) => format!("{hours} h"),
        (hours, minutes) => format!("{hours} h {minutes} min"),
    }
}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(what) => Self::NotFound(what),
            StoreError::Conflict(what) => Self::AlreadyExists(what),
            StoreError::BatchReused(batch) => Self::FailedPrecondition(format!(
                "batch_id {batch} was already used with different content"
            )),
            StoreError::StaleDecision(what) => Self::FailedPrecondition(what),
            StoreError::InvalidValue { field, message } => Self::InvalidArgument { field, message },
            // A row this request needs cannot be read: retrying reads the same row, so this
            // must not be the retryable UNAVAILABLE. The detail goes to the log only.
            StoreError::Corrupt(detail) => {
                tracing::error!(%detail, "stored data is corrupt");
                Self::FailedPrecondition(
                    "服务器数据异常，请联系管理员 (stored data for this request is damaged; \
                     contact the administrator)"
                        .into(),
                )
            }
            // A sealed value the server's keys cannot open (a wrong or missing key folder):
            // an operator problem that retrying does not cure; the phone keeps its outbox
            // and its next sync tries again.
            StoreError::Sealed(detail) => {
                tracing::error!(%detail, "personal data cannot be opened with the server's keys");
                Self::FailedPrecondition(
                    "服务器数据异常，请联系管理员 (stored data for this request cannot be read; \
                     contact the administrator)"
                        .into(),
                )
            }
            // A store task that died (a panic) is a server defect, not an outage.
            StoreError::Join(detail) => {
                tracing::error!(%detail, "storage task failed");
                Self::Internal
            }
            // Only what waiting can cure is left here: a busy or locked database, I/O, a
            // full disk (see `From<rusqlite::Error> for StoreError`).
            StoreError::Database {
                message: detail, ..
            } => {
                tracing::error!(%detail, "storage failure");
                Self::Unavailable
            }
        }
    }
}

impl From<AuthError> for ServiceError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::BadCredentials | AuthError::NoSession => {
                Self::Unauthenticated(error.to_string())
            }
            AuthError::Throttled { retry_after_secs } => Self::Throttled { retry_after_secs },
            AuthError::SessionEnded(end) => Self::SessionEnded {
                kind: end.kind(),
                message: error.to_string(),
            },
            AuthError::WeakPassword(message) => Self::invalid("new_password", message),
            AuthError::WrongOldPassword => Self::invalid("old_password", error.to_string()),
            AuthError::AccountDisabled => Self::PermissionDenied(error.to_string()),
            AuthError::Store(store) => store.into(),
            AuthError::Hashing(message) => {
                tracing::error!(%message, "password hashing failed");
                Self::Internal
            }
        }
    }
}

impl From<BlobError> for ServiceError {
    fn from(error: BlobError) -> Self {
        match error {
            BlobError::SizeMismatch { .. } | BlobError::HashMismatch { .. } => {
                Self::FailedPrecondition(error.to_string())
            }
            BlobError::BadName(name) => {
                Self::invalid("upload_id", format!("{name:?} is not a valid id"))
            }
            BlobError::Io(io) => {
                tracing::error!(error = %io, "blob storage failure");
                Self::Unavailable
            }
            // The object store is down, unreachable or misconfigured: the server's problem,
            // and the phone's upload resumes once it is fixed.
            BlobError::ObjectStore(error) => {
                tracing::error!(%error, "object store failure");
                Self::Unavailable
            }
            BlobError::Settings(message) => {
                tracing::error!(%message, "blob settings unusable");
                Self::Unavailable
            }
        }
    }
}
