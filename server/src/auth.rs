//! Passwords (argon2id), session tokens bound to (user, device), and resolving a bearer
//! token to a [`Principal`]. Tokens are random 256-bit values; only their SHA-256 is stored,
//! so a leaked database does not leak live sessions.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use crate::store::{Principal, SessionRecord, Store, StoreError};

/// Why authentication failed. The public message never says whether the user exists.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("用户名或密码错误 (wrong username or password)")]
    BadCredentials,
    #[error("未登录或登录已过期 (missing or expired session token)")]
    NoSession,
    #[error("password hashing failed: {0}")]
    Hashing(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Hash a password with argon2id and a random salt (PHC string format).
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

/// Check a password against a stored PHC hash.
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
pub async fn login(
    store: &dyn Store,
    username: &str,
    password: &str,
    device_id: &str,
    device_name: &str,
    ttl_hours: u32,
    now: OffsetDateTime,
) -> Result<(String, Principal), AuthError> {
    let user = store.find_user_by_username(username.trim()).await?;
    // Verify against a dummy hash when the user is unknown, so timing does not reveal
    // which usernames exist. Hashing is CPU-bound, so it runs off the async threads.
    let stored_hash = user.as_ref().map(|user| user.password_hash.clone());
    let password = password.to_owned();
    let password_ok = tokio::task::spawn_blocking(move || {
        let hash = stored_hash.unwrap_or_else(dummy_hash);
        verify_password(&password, &hash)
    })
    .await
    .unwrap_or(false);
    let user = match (user, password_ok) {
        (Some(user), true) => user,
        _ => return Err(AuthError::BadCredentials),
    };
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

/// argon2id hash of a random string nobody knows, computed once; verifying against it costs
/// the same as verifying a real user's password, which equalises login timing.
fn dummy_hash() -> String {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY
        .get_or_init(|| hash_password(&new_token()).unwrap_or_default())
        .clone()
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
