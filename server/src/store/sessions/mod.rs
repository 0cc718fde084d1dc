//! Sessions (登录会话) as their own store area (issue 12, "Store"): a session per (user,
//! device) with its access token digest, an optional rotating refresh token, last use, and
//! how it ended. [`Store`](super::Store) requires this trait, which keeps callers simple;
//! its conformance checks live in `conformance.rs` for every backend.

#[cfg(any(test, feature = "test-support"))]
pub mod conformance;
pub(crate) mod sqlite;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::store::{Principal, StoreResult};

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

#[async_trait]
pub trait SessionsStore: Send + Sync {
    /// Open a session and register its device (DESIGN §4).
    async fn create_session(&self, session: SessionRecord) -> StoreResult<()>;
    /// The session whose current access token has this digest, ended or expired or not.
    async fn find_session(&self, token_sha256: &str) -> StoreResult<Option<SessionLookup>>;
    /// Note that the session was used at `at` from `ip` (callers do this at most once a
    /// minute per session, so reads do not turn into writes).
    async fn touch_session(
        &self,
        session_id: &str,
        at: OffsetDateTime,
        ip: &str,
    ) -> StoreResult<()>;
    /// Rotate a refresh token atomically (two concurrent refreshes with the same token:
    /// one rotates, the other is reuse).
    async fn rotate_refresh(&self, rotation: RefreshRotation) -> StoreResult<RefreshOutcome>;
    /// End one session of `user_id` (logout or revoke). Returns false when there was no such
    /// live session of that user. Ending an ended session is not an error.
    async fn end_session(
        &self,
        user_id: &str,
        session_id: &str,
        reason: SessionEndReason,
        at: OffsetDateTime,
    ) -> StoreResult<bool>;
    /// End every live session of `user_id` except `keep_session_id`. Returns how many ended.
    async fn end_user_sessions(
        &self,
        user_id: &str,
        keep_session_id: Option<&str>,
        reason: SessionEndReason,
        at: OffsetDateTime,
    ) -> StoreResult<u64>;
    /// Delete the sessions whose last possible use (their end, or else the later of their
    /// access and refresh expiry) is before `before`, with their rotated refresh digests.
    /// Returns how many sessions went. A token of a purged session then reads as unknown
    /// (signed out) instead of naming why it ended.
    async fn purge_sessions(&self, before: OffsetDateTime) -> StoreResult<u64>;
    /// The user's live sessions (not ended, not past their last possible use at `now`),
    /// most recently seen first.
    async fn list_user_sessions(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> StoreResult<Vec<SessionInfo>>;
}
