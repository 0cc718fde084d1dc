//! The audit log (审计日志) as something an operator can trust: its HMAC key, the note of how
//! many legacy (unkeyed) records open the chain, and verification of the whole chain
//! (`fieldsync-server audit verify`, daily) or of its tail (at start-up). The result is kept
//! in [`AuditHealth`] so the console can show county staff a red banner while it is broken.
//!
//! Why keyed: the old chain was `SHA-256(previous ‖ content)`, which anyone holding the
//! SQLite file can recompute after an edit. The HMAC key lives in the key folder, outside the
//! data folder, so an edited, deleted or reordered record cannot be re-signed without it.
//!
//! Why the legacy note lives in the key folder: records written before the chain was keyed
//! stay verifiable as plain SHA-256, but then an attacker could rewrite the *whole* chain as
//! plain SHA-256. The first time the server runs with its key it writes down how many legacy
//! records there are (`audit-hmac.legacy`); an unkeyed record beyond that count is a break.
//!
//! What it cannot see: removing the newest records (the tail) leaves a shorter chain that
//! still verifies. Operators who need that should keep the count printed by
//! `audit verify` elsewhere (e.g. in the daily backup report) and compare.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use fieldsync_model::access::{AuditContent, AuditKey, ChainBroken, ChainVerifier};
use time::OffsetDateTime;

use crate::AppState;
use crate::keys::{self, KeyError, SecretKey};
use crate::store::{Store, StoreError};

/// Name of the audit chain's key in the key folder (`audit-hmac.key`).
pub const AUDIT_KEY_NAME: &str = "audit-hmac";

/// Records checked at start-up: the newest ones, so start-up stays fast on a large log.
pub const STARTUP_TAIL_RECORDS: i64 = 1_000;

/// Records read per page while verifying.
const VERIFY_PAGE: u32 = 1_000;

/// How often the whole chain is verified while serving.
const FULL_VERIFY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);

/// The file in the key folder that records how many legacy records open the chain.
pub fn legacy_note_path(key_dir: &Path) -> PathBuf {
    key_dir.join(format!("{AUDIT_KEY_NAME}.legacy"))
}

/// Why the audit chain could not be checked (not: that it is broken).
#[derive(Debug, thiserror::Error)]
pub enum AuditSetupError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} does not hold a record count (expected `legacy_records=N`)")]
    MalformedNote { path: PathBuf },
    #[error("cannot read the audit log: {0}")]
    Store(#[from] StoreError),
}

/// How many legacy records the note in `key_dir` allows; `None` when there is no note yet.
pub fn read_legacy_note(key_dir: &Path) -> Result<Option<i64>, AuditSetupError> {
    let path = legacy_note_path(key_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(AuditSetupError::Io { path, source }),
    };
    text.trim()
        .strip_prefix("legacy_records=")
        .and_then(|count| count.parse::<i64>().ok())
        .filter(|count| *count >= 0)
        .map(Some)
        .ok_or(AuditSetupError::MalformedNote { path })
}

/// Write the legacy note the first time the server runs with its key: the number of unkeyed
/// records before the first keyed one (all of them when none is keyed yet). Returns the
/// count in force.
pub async fn ensure_legacy_note(store: &dyn Store, key_dir: &Path) -> Result<i64, AuditSetupError> {
    if let Some(count) = read_legacy_note(key_dir)? {
        return Ok(count);
    }
    let mut legacy_records = 0;
    let mut after_id = 0;
    'pages: loop {
        let page = store.audit_records(after_id, VERIFY_PAGE).await?;
        let Some(last) = page.last() else { break };
        after_id = last.audit_id;
        for record in &page {
            if !record.key_id.is_empty() {
                break 'pages;
            }
            legacy_records = record.audit_id;
        }
    }
    let path = legacy_note_path(key_dir);
    std::fs::write(&path, format!("legacy_records={legacy_records}\n"))
        .map_err(|source| AuditSetupError::Io { path, source })?;
    Ok(legacy_records)
}

/// What a verification covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyScope {
    /// Every record from the first.
    Full,
    /// The newest `n` records.
    Tail(i64),
}

/// A broken chain: the first bad record and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{problem}")]
pub struct ChainBreak {
    /// `audit_id` of the first bad record.
    pub audit_id: i64,
    pub problem: ChainBroken,
}

/// Verify the chain in `store` with `keys`, allowing `legacy_records` unkeyed records at its
/// start. `Ok(Ok(n))`: `n` records verified; `Ok(Err(..))`: the chain is broken there.
pub async fn verify_chain(
    store: &dyn Store,
    keys: &[SecretKey],
    legacy_records: i64,
    scope: VerifyScope,
) -> Result<Result<u64, ChainBreak>, StoreError> {
    let audit_keys: Vec<AuditKey<'_>> = keys
        .iter()
        .map(|key| AuditKey {
            key_id: &key.key_id,
            bytes: key.bytes(),
        })
        .collect();
    let (mut verifier, mut after_id) = match scope {
        VerifyScope::Full => (ChainVerifier::from_genesis(&audit_keys, legacy_records), 0),
        VerifyScope::Tail(records) => {
            let start = store.audit_last_id().await?.saturating_sub(records).max(0);
            let verifier = if start == 0 {
                ChainVerifier::from_genesis(&audit_keys, legacy_records)
            } else {
                ChainVerifier::from_tail(&audit_keys, legacy_records)
            };
            (verifier, start)
        }
    };
    loop {
        let page = store.audit_records(after_id, VERIFY_PAGE).await?;
        let Some(last) = page.last() else { break };
        after_id = last.audit_id;
        for record in &page {
            if let Err(problem) = verifier.check(&record.chained()) {
                return Ok(Err(ChainBreak {
                    audit_id: record.audit_id,
                    problem,
                }));
            }
        }
    }
    Ok(Ok(verifier.verified()))
}

/// The last verification's result, read by the console banner.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditCheck {
    /// When it ran; `None` before the first check.
    pub checked_at: Option<OffsetDateTime>,
    pub scope: Option<VerifyScope>,
    /// Records verified (up to the break when broken).
    pub verified: u64,
    /// The first bad record, in Chinese and English, when the chain is broken or could not
    /// be checked.
    pub broken: Option<String>,
}

/// Shared, cheap-to-clone holder of the latest [`AuditCheck`].
#[derive(Debug, Clone, Default)]
pub struct AuditHealth(Arc<Mutex<AuditCheck>>);

impl AuditHealth {
    pub fn latest(&self) -> AuditCheck {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The problem to show county staff, if any.
    pub fn broken(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .broken
            .clone()
    }

    fn set(&self, check: AuditCheck) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = check;
    }
}

/// The server's audit key, created the first time.
pub fn load_or_create_key(key_dir: &Path) -> Result<SecretKey, KeyError> {
    keys::load_or_create(key_dir, AUDIT_KEY_NAME).map(|(key, _created)| key)
}

/// Run one verification for the serving server and keep its result in `state.audit_health`;
/// a break is logged at error level. Never fails: a check that cannot run counts as broken,
/// because the log's integrity is then unknown.
pub async fn check_and_record(state: &AppState, scope: VerifyScope) -> AuditCheck {
    let key_dir = state.settings.key_dir();
    let outcome = match ensure_legacy_note(state.store.as_ref(), &key_dir).await {
        Ok(legacy_records) => verify_chain(
            state.store.as_ref(),
            std::slice::from_ref(&state.audit_key),
            legacy_records,
            scope,
        )
        .await
        .map_err(AuditSetupError::from),
        Err(error) => Err(error),
    };
    let mut check = AuditCheck {
        checked_at: Some(state.clock.now()),
        scope: Some(scope),
        ..AuditCheck::default()
    };
    match outcome {
        Ok(Ok(verified)) => {
            check.verified = verified;
            tracing::info!(?scope, verified, "audit chain verified");
        }
        Ok(Err(chain_break)) => {
            tracing::error!(
                audit_id = chain_break.audit_id,
                problem = %chain_break.problem,
                "审计日志校验失败 AUDIT CHAIN BROKEN: the audit log was tampered with or damaged"
            );
            check.broken = Some(chain_break.problem.to_string());
        }
        Err(error) => {
            tracing::error!(%error, "审计日志无法校验 audit chain could not be verified");
            check.broken = Some(format!("审计日志无法校验 (cannot verify): {error}"));
        }
    }
    state.audit_health.set(check.clone());
    check
}

/// Verify the whole chain once a day (the start-up check covers the tail).
pub(crate) async fn verify_full_chain_daily(state: AppState) {
    let mut daily = tokio::time::interval_at(
        tokio::time::Instant::now() + FULL_VERIFY_INTERVAL,
        FULL_VERIFY_INTERVAL,
    );
    loop {
        daily.tick().await;
        check_and_record(&state, VerifyScope::Full).await;
    }
}

/// The audit record of a county setting change (收入标准线 …): what changed, by whom.
pub fn settings_change_record(
    principal: &crate::store::Principal,
    at: OffsetDateTime,
    subject: &str,
    filter: String,
    detail: String,
) -> AuditContent {
    AuditContent {
        recorded_at_ms: i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX),
        actor_user_id: principal.user_id.clone(),
        actor_role: principal.role.as_str().to_owned(),
        area_id: principal.area_id.clone(),
        action: fieldsync_model::access::ACTION_SETTINGS_CHANGE.to_owned(),
        subject: subject.to_owned(),
        filter,
        row_count: 0,
        file_sha256: String::new(),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ExportStore, SqliteStore};

    fn content(subject: &str) -> AuditContent {
        AuditContent {
            recorded_at_ms: 1_770_000_000_000,
            actor_user_id: "u1".into(),
            actor_role: "county".into(),
            area_id: "c1".into(),
            action: fieldsync_model::access::ACTION_FULL_EXPORT.into(),
            subject: subject.into(),
            filter: String::new(),
            row_count: 1,
            file_sha256: String::new(),
            detail: String::new(),
        }
    }

    /// A log upgraded from the unkeyed chain: its legacy records stay verifiable up to the
    /// first keyed record, the count is noted in the key folder once, and more legacy
    /// records than noted are a break.
    #[tokio::test]
    async fn legacy_records_before_the_key_stay_verifiable_and_are_counted_once() {
        let data = tempfile::tempdir().expect("temp dir");
        let key_dir = tempfile::tempdir().expect("temp dir");
        let path = data.path().join("fieldsync.sqlite3");
        {
            let legacy = SqliteStore::open(&path, crate::store::sealed::PiiCipher::for_tests())
                .expect("open without key");
            legacy.append_audit(content("a")).await.expect("append");
            legacy.append_audit(content("b")).await.expect("append");
        }
        let key = load_or_create_key(key_dir.path()).expect("key");
        let store = SqliteStore::open_with_audit_key(
            &path,
            crate::store::sealed::PiiCipher::for_tests(),
            Some(key.clone()),
        )
        .expect("open");
        let keyed = store.append_audit(content("c")).await.expect("append");
        assert_eq!(keyed.key_id, key.key_id);
        assert_eq!(
            ensure_legacy_note(&store, key_dir.path())
                .await
                .expect("note"),
            2
        );
        assert_eq!(read_legacy_note(key_dir.path()).expect("read"), Some(2));
        store.append_audit(content("d")).await.expect("append");
        let keys = [key];
        assert_eq!(
            verify_chain(&store, &keys, 2, VerifyScope::Full)
                .await
                .expect("read"),
            Ok(4)
        );
        assert_eq!(
            verify_chain(&store, &keys, 2, VerifyScope::Tail(2))
                .await
                .expect("read"),
            Ok(2)
        );
        assert_eq!(
            verify_chain(&store, &keys, 1, VerifyScope::Full)
                .await
                .expect("read")
                .map_err(|chain_break| chain_break.audit_id),
            Err(2),
            "a second legacy record beyond the noted count"
        );
        // The note, once written, is not recomputed from a database that may be forged.
        std::fs::write(legacy_note_path(key_dir.path()), "legacy_records=0\n").expect("write");
        assert_eq!(
            ensure_legacy_note(&store, key_dir.path())
                .await
                .expect("note"),
            0
        );
        std::fs::write(legacy_note_path(key_dir.path()), "nonsense").expect("write");
        assert!(matches!(
            read_legacy_note(key_dir.path()),
            Err(AuditSetupError::MalformedNote { .. })
        ));
    }
}
