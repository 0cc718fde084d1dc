//! Personal data sealed at rest (等保 2.0 level 3, PIPL): ID numbers (身份证号) and phone
//! numbers (联系电话) are encrypted field by field before they reach a database file, and
//! opened again when read, so the domain and the use cases only ever see plain values.
//!
//! - AES-256-GCM with a random 96-bit nonce per value. The associated data names the
//!   table, field and row the value belongs to, so a sealed value copied into another row
//!   (or another field) fails to open instead of showing someone else's number.
//! - Stored form `enc:v1:<key_id>:<base64(nonce || ciphertext)>`: self-describing, so key
//!   rotation finds every value sealed with an old key, and a value whose key is missing
//!   fails loudly with [`SealError::UnknownKey`] rather than returning garbage.
//! - A keyed blind index (HMAC-SHA256 with the separate key `pii-index`, truncated to 128
//!   bits) answers "who holds this ID number" without storing the number.
//!
//! Keys live in the key folder (`keys.rs`), outside the data folder: `pii.key` is the
//! current key, `pii-<key_id>.key` are retired keys kept readable until rotation finished,
//! and `pii-index.key` keys the blind index (never rotated with `pii`: the index would have
//! to be rebuilt from the plain values).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use crate::keys::{self, KeyError, SecretKey};

/// Prefix of every sealed value (format version 1).
pub const SEALED_PREFIX: &str = "enc:v1:";

/// Name of the current personal-data key in the key folder.
pub const PII_KEY_NAME: &str = "pii";
/// Name of the blind-index key in the key folder.
pub const PII_INDEX_KEY_NAME: &str = "pii-index";

/// Bytes of the blind index kept (hex-encoded: 32 digits). 128 bits: collisions between
/// two real ID numbers are out of reach, and the index cannot be reversed without the key.
const BLIND_INDEX_BYTES: usize = 16;

const NONCE_BYTES: usize = 12;

/// Why a stored value could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Sealed with a key the key folder does not hold (a wrong or lost key folder).
    #[error("sealed value in {context} names key {key_id}, which is not in the key folder")]
    UnknownKey { key_id: String, context: String },
    /// The key is known but the value does not open: tampered, moved from another row, or
    /// a different key under the same file name.
    #[error("sealed value in {context} does not open with key {key_id} (wrong key or moved)")]
    WrongKeyOrTampered { key_id: String, context: String },
    #[error("sealed value in {context} is malformed")]
    Malformed { context: String },
}

/// The personal-data keys: the current key seals, every known key opens.
#[derive(Clone)]
pub struct PiiCipher {
    inner: Arc<PiiKeys>,
}

struct PiiKeys {
    current: SecretKey,
    /// Every key that may open a value, by key id (the current one included).
    by_id: HashMap<String, SecretKey>,
    index: SecretKey,
}

impl std::fmt::Debug for PiiCipher {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("PiiCipher")
            .field("current_key_id", &self.inner.current.key_id)
            .field("known_keys", &self.inner.by_id.len())
            .finish()
    }
}

impl PiiCipher {
    /// A cipher from explicit keys (tests, rotation).
    pub fn from_keys(current: SecretKey, retired: Vec<SecretKey>, index: SecretKey) -> Self {
        let mut by_id: HashMap<String, SecretKey> = retired
            .into_iter()
            .map(|key| (key.key_id.clone(), key))
            .collect();
        by_id.insert(current.key_id.clone(), current.clone());
        Self {
            inner: Arc::new(PiiKeys {
                current,
                by_id,
                index,
            }),
        }
    }

    /// Fixed keys for unit tests of stores opened without a key folder.
    pub fn for_tests() -> Self {
        Self::from_keys(
            SecretKey::from_bytes([7; 32]),
            Vec::new(),
            SecretKey::from_bytes([9; 32]),
        )
    }

    /// Load `pii.key`, `pii-index.key` (both created the first time) and every retired
    /// `pii-<key_id>.key` from `key_dir`.
    pub fn load_or_create(key_dir: &Path) -> Result<Self, KeyError> {
        let (current, _) = keys::load_or_create(key_dir, PII_KEY_NAME)?;
        let (index, _) = keys::load_or_create(key_dir, PII_INDEX_KEY_NAME)?;
        Self::with_retired(key_dir, current, index)
    }

    /// Like [`PiiCipher::load_or_create`], but a missing key is an error: for maintenance
    /// commands, which must never mint keys in a folder the operator may have mistyped.
    pub fn load(key_dir: &Path) -> Result<Self, KeyError> {
        let current = keys::load(key_dir, PII_KEY_NAME)?;
        let index = keys::load(key_dir, PII_INDEX_KEY_NAME)?;
        Self::with_retired(key_dir, current, index)
    }

    fn with_retired(
        key_dir: &Path,
        current: SecretKey,
        index: SecretKey,
    ) -> Result<Self, KeyError> {
        let retired = retired_key_names(key_dir)?
            .iter()
            .map(|name| keys::load(key_dir, name))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::from_keys(current, retired, index))
    }

    pub fn current_key_id(&self) -> &str {
        &self.inner.current.key_id
    }

    /// Seal `plain` for the place named by `context` (table/field/row). The empty string
    /// stays empty: "no phone given" is not personal data, and keeping it lets the column
    /// defaults stand.
    pub fn seal(&self, plain: &str, context: &str) -> String {
        if plain.is_empty() {
            return String::new();
        }
        let key = &self.inner.current;
        let cipher = Aes256Gcm::new(key.bytes().into());
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain.as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            // AES-GCM fails only for messages beyond 64 GiB.
            .unwrap_or_default();
        let mut body = Vec::with_capacity(NONCE_BYTES + sealed.len());
        body.extend_from_slice(&nonce);
        body.extend_from_slice(&sealed);
        format!("{SEALED_PREFIX}{}:{}", key.key_id, BASE64.encode(body))
    }

    /// Open a stored value sealed for `context`. A value without the sealed prefix is
    /// plain text written before encryption at rest (the store seals those on open), and is
    /// returned as it is.
    pub fn open(&self, stored: &str, context: &str) -> Result<String, SealError> {
        let Some(rest) = stored.strip_prefix(SEALED_PREFIX) else {
            return Ok(stored.to_owned());
        };
        let malformed = || SealError::Malformed {
            context: context.to_owned(),
        };
        let (key_id, body) = rest.split_once(':').ok_or_else(malformed)?;
        let key = self
            .inner
            .by_id
            .get(key_id)
            .ok_or_else(|| SealError::UnknownKey {
                key_id: key_id.to_owned(),
                context: context.to_owned(),
            })?;
        let body = BASE64.decode(body).map_err(|_| malformed())?;
        if body.len() < NONCE_BYTES {
            return Err(malformed());
        }
        let (nonce, sealed) = body.split_at(NONCE_BYTES);
        let plain = Aes256Gcm::new(key.bytes().into())
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SealError::WrongKeyOrTampered {
                key_id: key_id.to_owned(),
                context: context.to_owned(),
            })?;
        String::from_utf8(plain).map_err(|_| malformed())
    }

    /// Whether `stored` needs sealing again with the current key: plain text, or sealed
    /// with a retired key.
    pub fn needs_reseal(&self, stored: &str) -> bool {
        if stored.is_empty() {
            return false;
        }
        match stored.strip_prefix(SEALED_PREFIX) {
            None => true,
            Some(rest) => !rest.starts_with(&format!("{}:", self.inner.current.key_id)),
        }
    }

    /// Keyed blind index of a value of `kind` (e.g. "id_number"): equal values give equal
    /// indexes, and nothing about the value can be read back without the index key.
    pub fn blind_index(&self, kind: &str, value: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.inner.index.bytes())
            .expect("HMAC takes keys of any length");
        mac.update(kind.as_bytes());
        mac.update(&[0]);
        mac.update(value.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..BLIND_INDEX_BYTES])
    }
}

/// Whether `stored` is in the sealed form.
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(SEALED_PREFIX)
}

/// Key names (`pii-<key_id>`) of the retired personal-data keys in `key_dir`.
pub fn retired_key_names(key_dir: &Path) -> Result<Vec<String>, KeyError> {
    let entries = match std::fs::read_dir(key_dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(KeyError::Io {
                path: key_dir.to_owned(),
                source,
            });
        }
    };
    let mut names = Vec::new();
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(name) = file_name
            .to_str()
            .and_then(|name| name.strip_suffix(".key"))
        else {
            continue;
        };
        if let Some(key_id) = name.strip_prefix("pii-")
            && key_id.len() == 16
            && key_id.bytes().all(|byte| byte.is_ascii_hexdigit())
        {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Associated data of a household card's phone (联系电话).
pub(in crate::store) fn card_phone_context(household_id: &str) -> String {
    format!("households.phone/{household_id}")
}

/// Associated data of a member's ID number (身份证号) in a household card.
pub(in crate::store) fn card_id_number_context(household_id: &str, member_id: &str) -> String {
    format!("households.id_number/{household_id}/{member_id}")
}

/// The card as stored: phone and every member's ID number sealed.
pub(in crate::store) fn sealed_card_json(
    pii: &PiiCipher,
    household: &fieldsync_model::household::Household,
) -> crate::store::StoreResult<String> {
    let mut card = household.clone();
    card.phone = pii.seal(&card.phone, &card_phone_context(&card.household_id));
    for member in &mut card.members {
        member.id_number = pii.seal(
            &member.id_number,
            &card_id_number_context(&card.household_id, &member.member_id),
        );
    }
    serde_json::to_string(&card).map_err(|error| {
        crate::store::StoreError::database_caused_by(
            format!("cannot encode household card: {error}"),
            error,
        )
    })
}

/// A stored card decoded once and its sealed values opened in place; `server_seq` is the
/// column's, which every logged change updates. PostgreSQL reads every card this way, and
/// SQLite its hot reads (a review's GetVisit), where opening in SQL first and decoding the
/// opened text after cost two parses of the card (issue 11 small-RPC profile).
pub(in crate::store) fn open_card(
    pii: &PiiCipher,
    card: &str,
    server_seq: i64,
) -> crate::store::StoreResult<fieldsync_model::household::Household> {
    use crate::store::StoreError;
    let mut household: fieldsync_model::household::Household = serde_json::from_str(card)
        .map_err(|error| StoreError::Corrupt(format!("household card: {error}")))?;
    let sealed_error = |error: SealError| StoreError::Sealed(error.to_string());
    household.phone = pii
        .open(
            &household.phone,
            &card_phone_context(&household.household_id),
        )
        .map_err(sealed_error)?;
    for member in &mut household.members {
        member.id_number = pii
            .open(
                &member.id_number,
                &card_id_number_context(&household.household_id, &member.member_id),
            )
            .map_err(sealed_error)?;
    }
    household.server_seq = server_seq;
    Ok(household)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_opens_only_in_its_own_place_and_with_its_own_key() {
        let cipher = PiiCipher::for_tests();
        let sealed = cipher.seal("110105194912310021", "households/id_number/h1/m1");
        assert!(sealed.starts_with(SEALED_PREFIX));
        assert!(!sealed.contains("110105194912310021"));
        assert_eq!(
            cipher.open(&sealed, "households/id_number/h1/m1").unwrap(),
            "110105194912310021"
        );
        // Two seals of one value differ (random nonce): equal numbers are not visible.
        assert_ne!(
            sealed,
            cipher.seal("110105194912310021", "households/id_number/h1/m1")
        );
        assert!(matches!(
            cipher.open(&sealed, "households/id_number/h2/m1"),
            Err(SealError::WrongKeyOrTampered { .. })
        ));
        let other = PiiCipher::from_keys(
            SecretKey::from_bytes([1; 32]),
            Vec::new(),
            SecretKey::from_bytes([9; 32]),
        );
        assert!(matches!(
            other.open(&sealed, "households/id_number/h1/m1"),
            Err(SealError::UnknownKey { .. })
        ));
        assert_eq!(cipher.seal("", "x"), "");
        assert_eq!(cipher.open("13800000000", "x").unwrap(), "13800000000");
    }

    #[test]
    fn a_retired_key_still_opens_and_is_marked_for_resealing() {
        let old = SecretKey::from_bytes([1; 32]);
        let index = SecretKey::from_bytes([9; 32]);
        let before = PiiCipher::from_keys(old.clone(), Vec::new(), index.clone());
        let sealed = before.seal("13800000000", "users/phone/u1");
        let after = PiiCipher::from_keys(SecretKey::from_bytes([2; 32]), vec![old], index);
        assert_eq!(
            after.open(&sealed, "users/phone/u1").unwrap(),
            "13800000000"
        );
        assert!(after.needs_reseal(&sealed));
        assert!(!before.needs_reseal(&sealed));
        assert_eq!(
            before.blind_index("id_number", "1"),
            after.blind_index("id_number", "1")
        );
    }
}
