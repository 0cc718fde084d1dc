//! `fieldsync-server keys rotate-pii`: replace the key that seals personal data at rest
//! (身份证号, 联系电话; `store/sealed.rs`) and reseal every stored value with the new key.
//!
//! Order of steps, so that a crash at any point leaves every value readable and a second
//! run finishes the job:
//! 1. the current key is copied to `pii-<key_id>.key` (retired, still opens old values);
//! 2. the new key is written to `pii-next.key` and renamed over `pii.key` (atomic);
//! 3. the database is opened with the new key plus every retired key, and every value not
//!    sealed with the new key is resealed in one transaction; the file is then rewritten
//!    (VACUUM) and the WAL truncated so the old ciphertexts leave no copies.
//!
//! Retired keys are kept: backups taken before the rotation are sealed with them. Delete a
//! retired key file only when no backup sealed with it is kept any more.

use crate::keys::{self, KeyError, SecretKey};
use crate::settings::Settings;
use crate::store::StoreError;
use crate::store::sealed::{PII_KEY_NAME, PiiCipher};
use crate::store::sqlite::SqliteStore;

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationReport {
    pub retired_key_id: String,
    pub new_key_id: String,
    /// Rows rewritten (a card counts once however many numbers it holds).
    pub rows_resealed: u64,
}

/// Why a rotation stopped. Every value stays readable whichever step failed.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error("key folder: {0}")]
    Keys(#[from] KeyError),
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("{0} values are still sealed with another key after resealing")]
    Incomplete(u64),
}

/// Rotate the personal-data key of the server configured by `settings`. Run it while the
/// server is stopped (a running server keeps sealing with the key it loaded, which stays
/// readable as a retired key; a second rotation or restart-and-rotate picks those up).
pub async fn rotate_pii_key(settings: &Settings) -> Result<RotationReport, RotationError> {
    let key_dir = settings.key_dir();
    let (old, _) = keys::load_or_create(&key_dir, PII_KEY_NAME)?;
    keys::store(&key_dir, &retired_name(&old), &old)?;
    let new = SecretKey::generate();
    keys::store(&key_dir, "pii-next", &new)?;
    std::fs::rename(
        keys::key_path(&key_dir, "pii-next"),
        keys::key_path(&key_dir, PII_KEY_NAME),
    )
    .map_err(|source| KeyError::Io {
        path: keys::key_path(&key_dir, PII_KEY_NAME),
        source,
    })?;
    let cipher = PiiCipher::load_or_create(&key_dir)?;
    std::fs::create_dir_all(&settings.data_dir).map_err(|source| KeyError::Io {
        path: settings.data_dir.clone(),
        source,
    })?;
    let store = SqliteStore::open(&settings.sqlite_path(), cipher)?;
    let (rows_resealed, stale) = store.reseal_personal_data().await?;
    if stale > 0 {
        return Err(RotationError::Incomplete(stale));
    }
    Ok(RotationReport {
        retired_key_id: old.key_id,
        new_key_id: new.key_id,
        rows_resealed,
    })
}

/// The file name (without `.key`) a retired key is kept under.
pub fn retired_name(key: &SecretKey) -> String {
    format!("{PII_KEY_NAME}-{}", key.key_id)
}
