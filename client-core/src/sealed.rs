//! Personal data sealed at rest on the phone (等保 2.0 level 3, PIPL; docs/security.md
//! "pii-rest"): a lost or stolen phone's database file must not give away the ID numbers
//! (身份证号) and phone numbers (联系电话) of the households on it.
//!
//! Same scheme as the server's `store/sealed.rs`: AES-256-GCM, random 96-bit nonce, the
//! row named in the associated data, stored as `enc:v1:<key_id>:<base64(nonce||ct)>`.
//! The household card's `phone` and every member's `id_number` are sealed inside the card
//! JSON; outbox payloads of card edits (`edit_field`, `add_member`) are sealed whole.
//!
//! The key: for now a random 32-byte key in `pii.key` (hex) in the phone's data folder,
//! created on first open and readable by the owner only. The hook for the app is
//! [`PhoneKey::from_bytes`] with `Client::open_with_pii_key`: an Android app hands in a key
//! unwrapped with an Android Keystore key, an iOS app one from the Keychain
//! (kSecAttrAccessibleAfterFirstUnlockThisDeviceOnly), so the key never sits next to the data.

use std::io::Write;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rand::RngCore;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{ClientError, ClientResult};

const SEALED_PREFIX: &str = "enc:v1:";
const NONCE_BYTES: usize = 12;

/// File name of the default key in the phone's data folder.
pub const PHONE_KEY_FILE: &str = "pii.key";

/// Text every open failure's message starts with.
pub(crate) const SEAL_FAILURE_MARKER: &str = "sealed value in";

/// The phone's personal-data key. `Debug` never prints the bytes.
#[derive(Clone)]
pub struct PhoneKey {
    key_id: String,
    bytes: [u8; 32],
}

impl std::fmt::Debug for PhoneKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "PhoneKey({}, [redacted])", self.key_id)
    }
}

impl PhoneKey {
    /// A key supplied by the app (Android Keystore / iOS Keychain).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"fieldsync key id");
        hasher.update(bytes);
        Self {
            key_id: hex::encode(&hasher.finalize()[..8]),
            bytes,
        }
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Read `pii.key` from `data_dir`, creating it (owner-only) the first time.
    pub fn load_or_create(data_dir: &Path) -> ClientResult<Self> {
        let path = data_dir.join(PHONE_KEY_FILE);
        if path.exists() {
            let text =
                std::fs::read_to_string(&path).map_err(|error| ClientError::io(&path, error))?;
            let mut bytes = [0u8; 32];
            hex::decode_to_slice(text.trim(), &mut bytes).map_err(|_| {
                ClientError::corrupt(format!("{} does not hold 64 hex digits", path.display()))
            })?;
            return Ok(Self::from_bytes(bytes));
        }
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options
            .open(&path)
            .map_err(|error| ClientError::io(&path, error))?;
        writeln!(file, "{}", hex::encode(bytes)).map_err(|error| ClientError::io(&path, error))?;
        file.sync_all()
            .map_err(|error| ClientError::io(&path, error))?;
        Ok(Self::from_bytes(bytes))
    }

    /// Seal `plain` for `context`; the empty string stays empty.
    pub(crate) fn seal(&self, plain: &str, context: &str) -> String {
        if plain.is_empty() {
            return String::new();
        }
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = Aes256Gcm::new((&self.bytes).into())
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain.as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            // AES-GCM fails only for messages beyond 64 GiB.
            .unwrap_or_default();
        let mut body = nonce.to_vec();
        body.extend_from_slice(&sealed);
        format!("{SEALED_PREFIX}{}:{}", self.key_id, BASE64.encode(body))
    }

    /// Open a stored value; text without the prefix is plain (written before sealing).
    pub(crate) fn open(&self, stored: &str, context: &str) -> Result<String, String> {
        let Some(rest) = stored.strip_prefix(SEALED_PREFIX) else {
            return Ok(stored.to_owned());
        };
        let failure = |why: &str| format!("{SEAL_FAILURE_MARKER} {context} {why}");
        let (key_id, body) = rest
            .split_once(':')
            .ok_or_else(|| failure("is malformed"))?;
        if key_id != self.key_id {
            return Err(failure(&format!(
                "was sealed with key {key_id}, not this phone's key {}",
                self.key_id
            )));
        }
        let body = BASE64.decode(body).map_err(|_| failure("is malformed"))?;
        if body.len() < NONCE_BYTES {
            return Err(failure("is malformed"));
        }
        let (nonce, sealed) = body.split_at(NONCE_BYTES);
        let plain = Aes256Gcm::new((&self.bytes).into())
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| failure("does not open (wrong key or moved)"))?;
        String::from_utf8(plain).map_err(|_| failure("is malformed"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CardStep {
    Seal,
    Open,
    /// Seal values still plain (the schema upgrade), leave sealed ones.
    SealPlain,
}

fn transform_card(key: &PhoneKey, card: &str, step: CardStep) -> Result<String, String> {
    let mut value: Value =
        serde_json::from_str(card).map_err(|error| format!("household card: {error}"))?;
    let household_id = value
        .get("household_id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let transform = |text: &str, context: &str| -> Result<String, String> {
        match step {
            CardStep::Seal => Ok(key.seal(text, context)),
            CardStep::Open => key.open(text, context),
            CardStep::SealPlain if text.starts_with(SEALED_PREFIX) => Ok(text.to_owned()),
            CardStep::SealPlain => Ok(key.seal(text, context)),
        }
    };
    if let Some(Value::String(phone)) = value.get_mut("phone") {
        *phone = transform(phone, &format!("households.phone/{household_id}"))?;
    }
    if let Some(Value::Array(members)) = value.get_mut("members") {
        for member in members {
            let member_id = member
                .get("member_id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            if let Some(Value::String(id_number)) = member.get_mut("id_number") {
                *id_number = transform(
                    id_number,
                    &format!("households.id_number/{household_id}/{member_id}"),
                )?;
            }
        }
    }
    serde_json::to_string(&value).map_err(|error| format!("household card: {error}"))
}

/// Outbox kinds whose payload carries personal data (card edits).
const SEALED_OUTBOX_KINDS: &[&str] = &["edit_field", "add_member"];

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct FunctionError(String);

fn failed(message: String) -> rusqlite::Error {
    rusqlite::Error::UserFunctionError(Box::new(FunctionError(message)))
}

fn text(context: &rusqlite::functions::Context<'_>, index: usize) -> rusqlite::Result<String> {
    Ok(context.get::<Option<String>>(index)?.unwrap_or_default())
}

/// Register the phone's `pii_*` SQL functions: `pii_seal_card(body)`,
/// `pii_open_card(body)`, `pii_seal_plain_card(body)`, `pii_seal_payload(kind, payload,
/// context)`, `pii_open(value, context)`.
pub(crate) fn register_functions(
    connection: &rusqlite::Connection,
    key: &PhoneKey,
) -> rusqlite::Result<()> {
    use rusqlite::functions::FunctionFlags;
    let deterministic = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    let random = FunctionFlags::SQLITE_UTF8;
    for (name, step, flags) in [
        ("pii_seal_card", CardStep::Seal, random),
        ("pii_open_card", CardStep::Open, deterministic),
        ("pii_seal_plain_card", CardStep::SealPlain, random),
    ] {
        let key = key.clone();
        connection.create_scalar_function(name, 1, flags, move |context| {
            transform_card(&key, &text(context, 0)?, step).map_err(failed)
        })?;
    }
    let sealing_key = key.clone();
    connection.create_scalar_function("pii_seal_payload", 3, random, move |context| {
        let kind = text(context, 0)?;
        let payload = text(context, 1)?;
        if !SEALED_OUTBOX_KINDS.contains(&kind.as_str()) || payload.starts_with(SEALED_PREFIX) {
            return Ok(payload);
        }
        Ok(sealing_key.seal(&payload, &text(context, 2)?))
    })?;
    let opening_key = key.clone();
    connection.create_scalar_function("pii_open", 2, deterministic, move |context| {
        opening_key
            .open(&text(context, 0)?, &text(context, 1)?)
            .map_err(failed)
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_card_round_trips_and_its_numbers_are_sealed() {
        let key = PhoneKey::from_bytes([3; 32]);
        let card = r#"{"household_id":"h1","phone":"13900990011","members":[{"member_id":"m1","id_number":"522731198001019910"}]}"#;
        let sealed = transform_card(&key, card, CardStep::Seal).unwrap();
        assert!(!sealed.contains("13900990011") && !sealed.contains("522731198001019910"));
        let opened = transform_card(&key, &sealed, CardStep::Open).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&opened).unwrap(),
            serde_json::from_str::<Value>(card).unwrap()
        );
        let other = PhoneKey::from_bytes([4; 32]);
        assert!(transform_card(&other, &sealed, CardStep::Open).is_err());
        assert_eq!(
            transform_card(&key, &sealed, CardStep::SealPlain).unwrap(),
            sealed,
            "sealed values are not sealed twice"
        );
    }
}
