//! Passwords (argon2id), session tokens bound to (user, device), and resolving a bearer
//! token to a [`Principal`]. Tokens are random 256-bit values; only their SHA-256 is stored,
//! so a leaked database does not leak live sessions.

use std::net::IpAddr;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use crate::login_guard::{LoginGuard, audit_lock, throttle_keys};
use crate::store::{Principal, SessionRecord, Store, StoreError};

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
    #[error("password hashing failed: {0}")]
    Hashing(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Hash a password with argon2id at the library default parameters (OWASP's m = 19456 KiB,
/// t = 2, p = 1) and a random salt (PHC string format), on the calling thread. For seeding
/// and tests; a running server hashes on its bounded pool ([`crate::password_pool`]).
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    let mut salt_bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut salt_bytes);
    let salt = SaltString::encode_b64(&salt_bytes)
        .map_err(|error| AuthError::Hashing(error.to_string()))?;
    Argon2::default()
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

/// Verify a username and password and open a session bound to `device_id`. Returns the
/// token and the principal.
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
    device_id: &str,
    device_name: &str,
    ttl_hours: u32,
    now: OffsetDateTime,
) -> Result<(String, Principal), AuthError> {
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
    let token = new_token();
    store
        .create_session(SessionRecord {
            token_sha256: token_sha256(&token),
            user_id: user.user_id.clone(),
            device_id: device_id.to_owned(),
            device_name: device_name.to_owned(),
            created_at: now,
            expires_at: now + Duration::hours(i64::from(ttl_hours)),
        })
        .await?;
    let principal = Principal {
        user_id: user.user_id,
        display_name: user.display_name,
        role: user.role,
        area_id: user.area_id,
        device_id: device_id.to_owned(),
    };
    Ok((token, principal))
}

/// Resolve a bearer token to its principal.
pub async fn authenticate(
    store: &dyn Store,
    token: &str,
    now: OffsetDateTime,
) -> Result<Principal, AuthError> {
    if token.is_empty() {
        return Err(AuthError::NoSession);
    }
    store
        .find_session(&token_sha256(token), now)
        .await?
        .ok_or(AuthError::NoSession)
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
    fn tokens_are_random_and_hashed_for_storage() {
        let (first, second) = (new_token(), new_token());
        assert_ne!(first, second);
        assert_eq!(token_sha256(&first).len(), 64);
        assert_ne!(token_sha256(&first), first);
    }
}
