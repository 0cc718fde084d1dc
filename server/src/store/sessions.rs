//! Sessions (登录会话) as their own store area (issue 12, "Store"): a session per (user,
//! device) with its access token digest, an optional rotating refresh token, last use, and
//! how it ended. [`Store`](super::Store) requires this trait, which keeps callers simple;
//! its conformance checks live in `conformance/sessions.rs` for every backend.

use async_trait::async_trait;
use time::OffsetDateTime;

use super::{
    RefreshOutcome, RefreshRotation, SessionEndReason, SessionInfo, SessionLookup, SessionRecord,
    StoreResult,
};

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
    /// The user's live sessions (not ended, not past their last possible use at `now`),
    /// most recently seen first.
    async fn list_user_sessions(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> StoreResult<Vec<SessionInfo>>;
}
