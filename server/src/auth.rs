//! Passwords (argon2id), sessions bound to (user, device), and resolving a bearer token to
//! a [`Principal`]. Tokens are random 256-bit values; only their SHA-256 is stored, so a
//! leaked database does not leak live sessions.
//!
//! A phone that says it can refresh gets a short access token and a refresh token; each
//! refresh rotates both, and presenting a rotated refresh token again ends the session
//! (someone holds a copy). Older apps get one long token (`session_ttl_hours`). A console
//! session ends after `console_idle_minutes` without a request. A session that ended or
//! expired is refused with a typed [`SessionEnd`] the phone can act on.

use std::net::IpAddr;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use fieldsync_model::access::{ACTION_PASSWORD_CHANGE, ACTION_REFRESH_TOKEN_REUSE, AuditContent};
use rand::RngCore;
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use crate::login_guard::{LoginGuard, audit_lock, throttle_keys};
use crate::settings::{LoginSettings, Settings};
use crate::store::{
    Principal, RefreshOutcome, RefreshRotation, SessionEndReason, SessionKind, SessionLookup,
    SessionRecord, Store, StoreError,
};

/// Shortest password accepted at a password change (characters, not bytes).
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password accepted: argon2 hashes any length, but a megabyte "password" is an
/// attack on the hashing pool, not a password.
pub const MAX_PASSWORD_CHARS: usize = 128;
/// Last-seen time and address are written at most this often per session, so that every
/// request does not become a write.
pub const TOUCH_INTERVAL: Duration = Duration::minutes(1);

/// Why an existing session no longer admits its caller; sent to phones as the
/// `fieldsync-error` metadata value ([`SessionEnd::kind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// Ended on the server: logged out, revoked by staff, password changed, refresh reuse.
    Revoked(SessionEndReason),
    /// Past its lifetime (refresh token or long token expired, console idle).
    Expired,
    /// Only the short access token expired; the phone should refresh and retry.
    AccessTokenExpired,
}

impl SessionEnd {
    /// The machine-readable reason phones read.
    pub fn kind(self) -> &'static str {
        match self {
            Self::Revoked(_) => "session_revoked",
            Self::Expired => "session_expired",
            Self::AccessTokenExpired => "access_token_expired",
        }
    }
}

/// Why authentication failed. The public message never says whether the user exists.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("用户名或密码错误 (wrong username or password)")]
    BadCredentials,
    #[error("未登录或登录已过期 (missing or expired session token)")]
    NoSession,
    /// Too many failed logins for this username or from this address (docs/security.md §3).
    #[error(
        "登录尝试过多，请 {retry_after_secs} 秒后再试 (too many login attempts; retry after {retry_after_secs} s)"
    )]
    Throttled { retry_after_secs: u64 },
    #[error("{}", session_end_text(*.0))]
    SessionEnded(SessionEnd),
    #[error("{0}")]
    WeakPassword(String),
    /// The old password given at a password change is wrong. Not [`Self::BadCredentials`]:
    /// the caller's session is fine, so a phone must not think it was logged out.
    #[error("原密码错误 (old password is wrong)")]
    WrongOldPassword,
    #[error("password hashing failed: {0}")]
    Hashing(String),
    /// The password was right but the account is disabled (停用). Told only after the
    /// password checked out, so it reveals nothing to someone guessing.
    #[error("账号已停用，请联系县级管理员 (account disabled; ask the county administrator)")]
    AccountDisabled,
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn session_end_text(end: SessionEnd) -> &'static str {
    match end {
        SessionEnd::Revoked(SessionEndReason::LoggedOut) => {
            "已退出登录，请重新登录 (session ended by logout)"
        }
        SessionEnd::Revoked(SessionEndReason::PasswordChanged) => {
            "密码已修改，请用新密码重新登录 (session ended by a password change)"
        }
        SessionEnd::Revoked(_) => {
            "此设备已在服务器上注销，请重新登录 (session revoked on the server)"
        }
        SessionEnd::Expired => "登录已过期，请重新登录 (session expired)",
        SessionEnd::AccessTokenExpired => "访问令牌已过期 (access token expired; refresh it)",
    }
}

/// Lifetimes of sessions, from [`Settings`].
#[derive(Debug, Clone, Copy)]
pub struct SessionPolicy {
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    /// Tokens of apps that do not refresh, and the longest a console session may last.
    pub long_ttl: Duration,
    pub console_idle: Duration,
}

impl SessionPolicy {
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            access_ttl: Duration::minutes(i64::from(settings.access_token_minutes.max(1))),
            refresh_ttl: Duration::days(i64::from(settings.refresh_token_days.max(1))),
            long_ttl: Duration::hours(i64::from(settings.session_ttl_hours)),
            console_idle: Duration::minutes(i64::from(settings.console_idle_minutes.max(1))),
        }
    }
}

/// Who logs in from where.
#[derive(Debug, Clone)]
pub struct LoginDevice {
    pub kind: SessionKind,
    pub device_id: String,
    pub device_name: String,
    pub app_version: String,
    /// Peer address; empty when unknown.
    pub ip: String,
    /// The app can refresh (sends `LoginRequest.wants_refresh_token`).
    pub wants_refresh_token: bool,
}

/// Tokens handed to a client at login or refresh.
#[derive(Debug, Clone)]
pub struct IssuedTokens {
    pub session_id: String,
    pub access_token: String,
    pub access_expires_at: OffsetDateTime,
    /// The refresh token and its expiry, for apps that refresh.
    pub refresh: Option<(String, OffsetDateTime)>,
    /// The password is a one-time password: the console sends the user to 修改密码 first,
    /// and the phone is told in its login response.
    pub must_change_password: bool,
}

/// Hash a password with argon2id at the default parameters of [`LoginSettings`] (an OWASP
/// configuration) and a random salt (PHC string format), on the calling thread. For seeding
/// and tests; a running server hashes on its bounded pool ([`crate::password_pool`]) with
/// the configured parameters. Seeded accounts (the demo county) thus log in at the cost of
/// the current defaults, not the argon2 crate's own.
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    let mut salt_bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut salt_bytes);
    let salt = SaltString::encode_b64(&salt_bytes)
        .map_err(|error| AuthError::Hashing(error.to_string()))?;
    let defaults = LoginSettings::default();
    let params = Params::new(
        defaults.argon2_memory_kib,
        defaults.argon2_iterations,
        defaults.argon2_parallelism,
        None,
    )
    .map_err(|error| AuthError::Hashing(error.to_string()))?;
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| AuthError::Hashing(error.to_string()))
}

/// Check a password against a stored PHC hash on the calling thread (tests and tools; a
/// running server verifies on its bounded pool).
pub fn verify_password(password: &str, stored_hash: &str) -> bool {
    PasswordHash::new(stored_hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A fresh random session token (URL-safe base64 of 32 random bytes).
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The form a token is stored and looked up in.
pub fn token_sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Verify a username and password and open a session bound to `device.device_id`. Returns
/// the tokens and the principal.
///
/// Login under attack (docs/security.md §3): a username or client address (`peer`) that
/// failed too often is refused with [`AuthError::Throttled`] before any hash is computed;
/// the password check runs on the bounded pool of `guard`; an unknown username costs the
/// same hash as a known one and is counted the same way.
#[allow(clippy::too_many_arguments)]
pub async fn login(
    store: &dyn Store,
    guard: &LoginGuard,
    peer: Option<IpAddr>,
    username: &str,
    password: &str,
    device: &LoginDevice,
    policy: &SessionPolicy,
    now: OffsetDateTime,
) -> Result<(IssuedTokens, Principal), AuthError> {
    let keys = throttle_keys(username, peer);
    guard
        .check(&keys, now)
        .map_err(|retry_after_secs| AuthError::Throttled { retry_after_secs })?;
    let user = store.find_user_by_username(username.trim()).await?;
    // An unknown user is verified against a made-up hash with the same parameters, so
    // timing does not reveal which usernames exist.
    let stored_hash = user.as_ref().map(|user| user.password_hash.clone());
    let password_ok = guard.pool.verify(password, stored_hash).await;
    let user = match (user, password_ok) {
        (Some(user), true) => user,
        _ => {
            for locked in guard.record_failure(keys, now) {
                audit_lock(store, &locked, now).await;
            }
            return Err(AuthError::BadCredentials);
        }
    };
    guard.record_success(&keys[0]);
    let state = store
        .login_state(&user.user_id)
        .await?
        .ok_or(AuthError::BadCredentials)?;
    if state.disabled {
        return Err(AuthError::AccountDisabled);
    }
    let session_id = uuid::Uuid::now_v7().to_string();
    let access_token = new_token();
    let refresh = (device.kind == SessionKind::Device && device.wants_refresh_token)
        .then(|| (new_token(), now + policy.refresh_ttl));
    let access_expires_at = match (&refresh, device.kind) {
        (Some(_), _) => now + policy.access_ttl,
        // Console sessions also end on idle (checked in `authenticate`); this is their cap.
        (None, _) => now + policy.long_ttl,
    };
    store
        .create_session(SessionRecord {
            session_id: session_id.clone(),
            kind: device.kind,
            token_sha256: token_sha256(&access_token),
            user_id: user.user_id.clone(),
            device_id: device.device_id.clone(),
            device_name: device.device_name.clone(),
            app_version: device.app_version.clone(),
            ip: device.ip.clone(),
            created_at: now,
            expires_at: access_expires_at,
            refresh: refresh
                .as_ref()
                .map(|(token, expires_at)| (token_sha256(token), *expires_at)),
        })
        .await?;
    let principal = Principal {
        user_id: user.user_id,
        display_name: user.display_name,
        role: user.role,
        area_id: user.area_id,
        device_id: device.device_id.clone(),
    };
    let tokens = IssuedTokens {
        session_id,
        access_token,
        access_expires_at,
        refresh,
        must_change_password: state.must_change_password,
    };
    Ok((tokens, principal))
}

/// Resolve a bearer token to its principal (see [`authenticate_session`]).
pub async fn authenticate(
    store: &dyn Store,
    token: &str,
    policy: &SessionPolicy,
    ip: &str,
    now: OffsetDateTime,
) -> Result<Principal, AuthError> {
    authenticate_session(store, token, policy, ip, now)
        .await
        .map(|session| session.principal)
}

/// Resolve a bearer token to its live session, noting last-seen time and address at most
/// once per [`TOUCH_INTERVAL`]. An ended or expired session is a typed
/// [`AuthError::SessionEnded`]; an unknown token is [`AuthError::NoSession`].
pub async fn authenticate_session(
    store: &dyn Store,
    token: &str,
    policy: &SessionPolicy,
    ip: &str,
    now: OffsetDateTime,
) -> Result<SessionLookup, AuthError> {
    if token.is_empty() {
        return Err(AuthError::NoSession);
    }
    let session = store
        .find_session(&token_sha256(token))
        .await?
        .ok_or(AuthError::NoSession)?;
    if let Some(reason) = session.ended {
        return Err(AuthError::SessionEnded(SessionEnd::Revoked(reason)));
    }
    let idle_expired =
        session.kind == SessionKind::Console && now >= session.last_seen_at + policy.console_idle;
    if idle_expired {
        return Err(AuthError::SessionEnded(SessionEnd::Expired));
    }
    if now >= session.expires_at {
        return Err(AuthError::SessionEnded(if session.refreshable {
            SessionEnd::AccessTokenExpired
        } else {
            SessionEnd::Expired
        }));
    }
    if now >= session.last_seen_at + TOUCH_INTERVAL {
        // Bookkeeping only: a failed write must not refuse an otherwise valid request.
        if let Err(error) = store.touch_session(&session.session_id, now, ip).await {
            tracing::warn!(%error, "could not note session activity");
        }
    }
    Ok(session)
}

/// Exchange a refresh token for a new access and refresh token (rotation). Presenting a
/// token that was already rotated ends the session and is audited.
pub async fn refresh(
    store: &dyn Store,
    refresh_token: &str,
    app_version: &str,
    ip: &str,
    policy: &SessionPolicy,
    now: OffsetDateTime,
) -> Result<(IssuedTokens, Principal), AuthError> {
    if refresh_token.is_empty() {
        return Err(AuthError::NoSession);
    }
    let access_token = new_token();
    let new_refresh = new_token();
    let rotation = RefreshRotation {
        old_refresh_sha256: token_sha256(refresh_token),
        new_token_sha256: token_sha256(&access_token),
        new_expires_at: now + policy.access_ttl,
        new_refresh_sha256: token_sha256(&new_refresh),
        new_refresh_expires_at: now + policy.refresh_ttl,
        app_version: app_version.to_owned(),
        ip: ip.to_owned(),
        now,
    };
    match store.rotate_refresh(rotation.clone()).await? {
        RefreshOutcome::Rotated(session) => Ok((
            IssuedTokens {
                session_id: session.session_id,
                access_token,
                access_expires_at: rotation.new_expires_at,
                refresh: Some((new_refresh, rotation.new_refresh_expires_at)),
                // A refresh is not a login: the flag was reported when the session began.
                must_change_password: false,
            },
            session.principal,
        )),
        RefreshOutcome::Reused(session) => {
            tracing::warn!(
                session_id = %session.session_id,
                user_id = %session.principal.user_id,
                "a rotated refresh token was presented again; session ended"
            );
            store
                .append_audit(audit_record(
                    &session.principal,
                    ACTION_REFRESH_TOKEN_REUSE,
                    &session.principal.user_id,
                    &format!("session={}", session.session_id),
                    format!(
                        "刷新令牌被重复使用，已注销设备 {} 的会话 (refresh token reuse; address {ip})",
                        session.principal.device_id
                    ),
                    now,
                ))
                .await?;
            Err(AuthError::SessionEnded(SessionEnd::Revoked(
                SessionEndReason::RefreshReused,
            )))
        }
        RefreshOutcome::Ended(session) => Err(AuthError::SessionEnded(
            session
                .ended
                .map_or(SessionEnd::Expired, SessionEnd::Revoked),
        )),
        RefreshOutcome::Unknown => Err(AuthError::NoSession),
    }
}

/// End the caller's own session (logout).
pub async fn logout(
    store: &dyn Store,
    session: &SessionLookup,
    now: OffsetDateTime,
) -> Result<(), AuthError> {
    store
        .end_session(
            &session.principal.user_id,
            &session.session_id,
            SessionEndReason::LoggedOut,
            now,
        )
        .await?;
    Ok(())
}

/// Check a new password against the rules: at least [`MIN_PASSWORD_CHARS`] characters, at
/// most [`MAX_PASSWORD_CHARS`], not only whitespace, and different from the old one.
pub fn check_new_password(old_password: &str, new_password: &str) -> Result<(), AuthError> {
    let length = new_password.chars().count();
    if length < MIN_PASSWORD_CHARS {
        return Err(AuthError::WeakPassword(format!(
            "新密码至少{MIN_PASSWORD_CHARS}个字符 (new password: at least {MIN_PASSWORD_CHARS} characters)"
        )));
    }
    if length > MAX_PASSWORD_CHARS {
        return Err(AuthError::WeakPassword(format!(
            "新密码最多{MAX_PASSWORD_CHARS}个字符 (new password: at most {MAX_PASSWORD_CHARS} characters)"
        )));
    }
    if new_password.trim().is_empty() {
        return Err(AuthError::WeakPassword(
            "新密码不能全是空格 (new password: not only spaces)".to_owned(),
        ));
    }
    if new_password == old_password {
        return Err(AuthError::WeakPassword(
            "新密码不能与原密码相同 (new password: must differ from the old one)".to_owned(),
        ));
    }
    Ok(())
}

/// Change the caller's password after checking the old one; every other session of the
/// user ends (the current one stays). Audited. Returns how many sessions ended.
pub async fn change_password(
    store: &dyn Store,
    pool: &crate::password_pool::PasswordPool,
    session: &SessionLookup,
    old_password: &str,
    new_password: &str,
    now: OffsetDateTime,
) -> Result<u64, AuthError> {
    check_new_password(old_password, new_password)?;
    let user = store
        .find_user_by_id(&session.principal.user_id)
        .await?
        .ok_or(AuthError::NoSession)?;
    // Both hashes run on the bounded pool, like logins: a burst of password changes must
    // not grow memory either (docs/security.md §3).
    if !pool
        .verify(old_password, Some(user.password_hash.clone()))
        .await
    {
        return Err(AuthError::WrongOldPassword);
    }
    let new_hash = pool
        .hash(new_password)
        .await
        .map_err(|error| AuthError::Hashing(error.to_string()))?;
    store.set_password_hash(&user.user_id, &new_hash).await?;
    let ended = store
        .end_user_sessions(
            &user.user_id,
            Some(&session.session_id),
            SessionEndReason::PasswordChanged,
            now,
        )
        .await?;
    store
        .append_audit(audit_record(
            &session.principal,
            ACTION_PASSWORD_CHANGE,
            &user.user_id,
            &format!("session={}", session.session_id),
            format!(
                "修改密码，注销其他{ended}个会话 (password changed; {ended} other sessions ended)"
            ),
            now,
        ))
        .await?;
    Ok(ended)
}

/// An audit record of a session action by `actor`.
pub fn audit_record(
    actor: &Principal,
    action: &str,
    subject: &str,
    filter: &str,
    detail: String,
    now: OffsetDateTime,
) -> AuditContent {
    AuditContent {
        recorded_at_ms: i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX),
        actor_user_id: actor.user_id.clone(),
        actor_role: actor.role.as_str().to_owned(),
        area_id: actor.area_id.clone(),
        action: action.to_owned(),
        subject: subject.to_owned(),
        filter: filter.to_owned(),
        row_count: 0,
        file_sha256: String::new(),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_with_the_right_password() {
        let hash = hash_password("走访2026").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("走访2026", &hash));
        assert!(!verify_password("走访2025", &hash));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn new_passwords_follow_the_rules() {
        assert!(check_new_password("old-password", "走访密码很安全啊").is_ok());
        assert!(matches!(
            check_new_password("old-password", "short"),
            Err(AuthError::WeakPassword(_))
        ));
        assert!(check_new_password("old-password", "        ").is_err());
        assert!(check_new_password("same-password", "same-password").is_err());
        assert!(check_new_password("old", &"x".repeat(MAX_PASSWORD_CHARS + 1)).is_err());
    }

    #[test]
    fn session_ends_have_stable_machine_readable_kinds() {
        assert_eq!(
            SessionEnd::Revoked(SessionEndReason::Revoked).kind(),
            "session_revoked"
        );
        assert_eq!(SessionEnd::Expired.kind(), "session_expired");
        assert_eq!(
            SessionEnd::AccessTokenExpired.kind(),
            "access_token_expired"
        );
    }

    #[test]
    fn tokens_are_random_and_hashed_for_storage() {
        let (first, second) = (new_token(), new_token());
        assert_ne!(first, second);
        assert_eq!(token_sha256(&first).len(), 64);
        assert_ne!(token_sha256(&first), first);
    }
}
