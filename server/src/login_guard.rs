//! Login under attack (登录防护): the bounded password-hashing pool and the failed-login
//! throttle, held together in [`crate::AppState`] and used by [`crate::auth::login`] for
//! every gRPC and console login. See docs/security.md §3.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, PoisonError};

use fieldsync_model::access::{ACTION_LOGIN_THROTTLED, AuditContent};
use time::OffsetDateTime;

use crate::login_throttle::{Locked, LoginThrottle, ThrottleKey, ThrottleRules};
use crate::password_pool::{PasswordPool, PoolError};
use crate::settings::LoginSettings;
use crate::store::Store;

/// The hashing pool and the throttle table of one server.
#[derive(Debug)]
pub struct LoginGuard {
    /// Every argon2id hash and verification of this server runs here.
    pub pool: PasswordPool,
    throttle: Mutex<LoginThrottle>,
}

impl LoginGuard {
    /// Start the hashing workers; fails on argon2 parameters out of range.
    pub fn start(settings: &LoginSettings) -> Result<Self, PoolError> {
        Ok(Self {
            pool: PasswordPool::start(settings)?,
            throttle: Mutex::new(LoginThrottle::new(ThrottleRules::from(settings))),
        })
    }

    /// `Err(seconds to wait)` when the username or the address is locked now.
    pub fn check(&self, keys: &[ThrottleKey], now: OffsetDateTime) -> Result<(), u64> {
        self.throttle().check(keys, now)
    }

    /// Count a failed login against each key; returns the locks it caused.
    pub fn record_failure(&self, keys: Vec<ThrottleKey>, now: OffsetDateTime) -> Vec<Locked> {
        let mut throttle = self.throttle();
        keys.into_iter()
            .filter_map(|key| throttle.record_failure(key, now))
            .collect()
    }

    /// A successful login clears the username's failures.
    pub fn record_success(&self, username: &ThrottleKey) {
        self.throttle().record_success(username);
    }

    /// How many usernames and addresses the throttle remembers.
    pub fn remembered_keys(&self) -> usize {
        self.throttle().len()
    }

    fn throttle(&self) -> std::sync::MutexGuard<'_, LoginThrottle> {
        // The table holds plain counters; a panic elsewhere cannot leave it inconsistent.
        self.throttle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The throttle keys of one attempt: the username always, the address when known.
pub fn throttle_keys(username: &str, peer: Option<IpAddr>) -> Vec<ThrottleKey> {
    let mut keys = vec![ThrottleKey::username(username)];
    keys.extend(peer.map(ThrottleKey::Address));
    keys
}

/// The client's IP address from a request's extensions: axum's `ConnectInfo` that
/// [`crate::serve`] attaches to every connection (gRPC requests carry the same extensions).
/// `None` when the server was started without it; then only usernames are throttled.
pub fn peer_ip(extensions: &axum::http::Extensions) -> Option<IpAddr> {
    extensions
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|connect_info| connect_info.0.ip())
}

/// Write one audit record for a key that just reached the lock threshold. Repeated
/// doublings of the same lock are not audited again, so a flood cannot flood the log.
/// A failure to write is logged and does not change the login's answer.
pub async fn audit_lock(store: &dyn Store, locked: &Locked, now: OffsetDateTime) {
    if !locked.crossed_threshold {
        return;
    }
    let subject = locked.key.describe();
    tracing::warn!(
        %subject,
        failures = locked.failures,
        lock_secs = locked.lock.whole_seconds(),
        "login throttled after repeated failures"
    );
    let content = AuditContent {
        recorded_at_ms: i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX),
        actor_user_id: String::new(),
        actor_role: "anonymous".to_owned(),
        area_id: String::new(),
        action: ACTION_LOGIN_THROTTLED.to_owned(),
        subject,
        filter: format!("failures={}", locked.failures),
        row_count: 0,
        file_sha256: String::new(),
        detail: format!(
            "登录连续失败 {} 次，锁定 {} 秒",
            locked.failures,
            locked.lock.whole_seconds()
        ),
    };
    if let Err(error) = store.append_audit(content).await {
        tracing::error!(%error, "could not audit a login lock");
    }
}
