//! Server secrets kept outside the data folder: the audit chain's HMAC key and the key that
//! encrypts personal fields at rest. A backup of the data folder alone must not carry the
//! keys that protect it, so they live in `Settings::key_dir()` (by default a sibling
//! folder, `<data_dir>-keys`). Each key is 32 random bytes stored as one line of hex in
//! `<name>.key`, readable by the owner only, and known to records by its key id.

use std::io::Write;
use std::path::{Path, PathBuf};

use rand::RngCore;
use sha2::{Digest, Sha256};

/// A 256-bit secret and its public id. `Debug` never prints the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey {
    /// First 16 hex digits of SHA-256("fieldsync key id" || key): safe to store beside
    /// what the key protects, so a record names the key that sealed it.
    pub key_id: String,
    bytes: [u8; 32],
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "SecretKey({}, [redacted])", self.key_id)
    }
}

impl SecretKey {
    /// A key from raw bytes (tests and rotation).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"fieldsync key id");
        hasher.update(bytes);
        let key_id = hex::encode(&hasher.finalize()[..8]);
        Self { key_id, bytes }
    }

    /// A fresh random key.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Self::from_bytes(bytes)
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }
}

/// Why a key could not be read or created.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read or write key file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key file {path} does not hold 64 hex digits")]
    Malformed { path: PathBuf },
}

/// The path of key `name` in `key_dir`.
pub fn key_path(key_dir: &Path, name: &str) -> PathBuf {
    key_dir.join(format!("{name}.key"))
}

/// Read key `name` from `key_dir`.
pub fn load(key_dir: &Path, name: &str) -> Result<SecretKey, KeyError> {
    let path = key_path(key_dir, name);
    let text = std::fs::read_to_string(&path).map_err(|source| KeyError::Io {
        path: path.clone(),
        source,
    })?;
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut bytes).map_err(|_| KeyError::Malformed { path })?;
    Ok(SecretKey::from_bytes(bytes))
}

/// Read key `name` from `key_dir`, creating the folder and a fresh random key the first
/// time. Returns the key and whether it was created now.
pub fn load_or_create(key_dir: &Path, name: &str) -> Result<(SecretKey, bool), KeyError> {
    let path = key_path(key_dir, name);
    if path.exists() {
        return Ok((load(key_dir, name)?, false));
    }
    let key = SecretKey::generate();
    store(key_dir, name, &key)?;
    Ok((key, true))
}

/// Write `key` as key `name` in `key_dir` (owner-only permissions), durably.
pub fn store(key_dir: &Path, name: &str, key: &SecretKey) -> Result<(), KeyError> {
    let path = key_path(key_dir, name);
    let io_error = |source| KeyError::Io {
        path: path.clone(),
        source,
    };
    create_private_dir(key_dir).map_err(io_error)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&path).map_err(io_error)?;
    writeln!(file, "{}", hex::encode(key.bytes)).map_err(io_error)?;
    file.sync_all().map_err(io_error)
}

fn create_private_dir(key_dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(key_dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_created_once_then_read_back_unchanged() {
        let folder = tempfile::tempdir().unwrap();
        let key_dir = folder.path().join("keys");
        let (first, created) = load_or_create(&key_dir, "audit-hmac").unwrap();
        assert!(created);
        let (again, created_again) = load_or_create(&key_dir, "audit-hmac").unwrap();
        assert!(!created_again);
        assert_eq!(first, again);
        assert_eq!(first.key_id.len(), 16);
        assert!(!format!("{first:?}").contains(&hex::encode(first.bytes())));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(key_path(&key_dir, "audit-hmac"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "key readable by others: {mode:o}");
        }
    }

    #[test]
    fn a_damaged_key_file_is_an_error_not_a_new_key() {
        let folder = tempfile::tempdir().unwrap();
        std::fs::write(key_path(folder.path(), "pii"), "not hex\n").unwrap();
        assert!(matches!(
            load_or_create(folder.path(), "pii"),
            Err(KeyError::Malformed { .. })
        ));
    }
}
