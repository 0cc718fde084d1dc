//! Access to sensitive fields (敏感信息) in lists and exports, and the hash chain of the
//! audit log (审计日志), as pure rules (DESIGN §7).
//!
//! DESIGN §7: ID numbers, phone numbers, bank accounts and health details are masked in
//! lists and exports (`110105********1234`, `138****5678`); seeing the full value is an
//! audited action. domain.md §3.2: public lists (公示名单) carry no ID, phone, bank or
//! health data at all.
//!
//! Who sees what, for lists and exports:
//!
//! | role | ID number / phone | health details |
//! |---|---|---|
//! | county admin (县级管理员), full export requested | full (audited) | full (audited) |
//! | county admin, default | masked | hidden |
//! | township supervisor (乡镇审核员) | masked | hidden |
//! | auditor (审计员) | masked, never full | hidden |
//! | cadre, village cadre | masked | hidden |
//!
//! Only the county admin may ask for full values ([`may_request_full`]); the request itself
//! is what makes the export an audited action. Over gRPC the same policy applies with one
//! addition: a cadre pulls full values for their own paired households ([`channel_disclosure`]).
//!
//! The audit log is append-only and each record carries `HMAC-SHA256(key, previous record
//! hash ‖ own content)` ([`keyed_chain_hash`]) under a server key kept outside the database,
//! so an edited, deleted or reordered record breaks the chain and cannot be re-signed
//! without the key ([`ChainVerifier`]). Records from before the key keep the unkeyed
//! `SHA-256` form ([`chain_hash`]) and verify only as the chain's opening prefix.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::CodeList;
use crate::codes::Role;
use crate::id_number;

/// A kind of sensitive field that lists and exports must protect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SensitiveField {
    /// 身份证号 (GB 11643).
    IdNumber,
    /// 联系电话 (mobile or landline).
    Phone,
    /// 健康状况 and illness details.
    Health,
}

/// How a sensitive value is disclosed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Disclosure {
    /// The value as stored.
    Full,
    /// The value with its middle replaced by `*` (ID numbers, phones).
    Masked,
    /// Not shown at all (health details have no meaningful masked form).
    Hidden,
}

/// Why a full (unmasked) export was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessDenied {
    #[error("{0}不能导出完整身份证号和电话，只有县级管理员可以（并会记录审计日志）")]
    FullValuesNotAllowed(&'static str),
}

/// Whether `role` may ask for full values at all. Only the county administrator may; the
/// auditor reviews records but never sees full values.
pub fn may_request_full(role: Role) -> bool {
    role == Role::County
}

/// Refuse a full-values request by any role but the county administrator.
pub fn check_full_request(role: Role) -> Result<(), AccessDenied> {
    if may_request_full(role) {
        Ok(())
    } else {
        Err(AccessDenied::FullValuesNotAllowed(role.label_zh()))
    }
}

/// How `field` is disclosed to `role` in a list or export; `full_requested` is the county
/// admin's explicit (audited) request. A request by any other role is ignored here: callers
/// refuse it first with [`check_full_request`], and this function never grants it.
pub fn disclosure(role: Role, field: SensitiveField, full_requested: bool) -> Disclosure {
    if full_requested && may_request_full(role) {
        return Disclosure::Full;
    }
    match field {
        SensitiveField::IdNumber | SensitiveField::Phone => Disclosure::Masked,
        SensitiveField::Health => Disclosure::Hidden,
    }
}

/// The value as `disclosure` allows it: `None` when hidden.
pub fn disclose(field: SensitiveField, disclosure: Disclosure, value: &str) -> Option<String> {
    match disclosure {
        Disclosure::Full => Some(value.to_owned()),
        Disclosure::Hidden => None,
        Disclosure::Masked => Some(match field {
            SensitiveField::IdNumber => id_number::mask(value),
            SensitiveField::Phone => mask_phone(value),
            SensitiveField::Health => "***".to_owned(),
        }),
    }
}

/// Mask a phone number for lists and exports: an 11-digit mobile keeps its first 3 and last
/// 4 digits (`138****5678`); any other number of 8 or more characters keeps its first 3 and
/// last 4 characters too (landlines such as `0851-12345678`); shorter ones become all `*`
/// because keeping 7 characters of them would reveal almost everything. Empty stays empty.
pub fn mask_phone(phone: &str) -> String {
    let characters: Vec<char> = phone.trim().chars().collect();
    if characters.len() < 8 {
        return "*".repeat(characters.len());
    }
    let head: String = characters[..3].iter().collect();
    let tail: String = characters[characters.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(characters.len() - 7))
}

// ----- audit log (审计日志) hash chain -----

/// The `previous_hash` of the first record: 64 zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What one audit record says, in the order it is hashed. Serialised as JSON (field order
/// fixed by this struct) for hashing, so every implementation hashes the same bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditContent {
    /// Unix milliseconds (UTC) when the action happened.
    pub recorded_at_ms: i64,
    pub actor_user_id: String,
    /// [`Role::as_str`] of the actor.
    pub actor_role: String,
    /// The actor's area (township or county id).
    pub area_id: String,
    /// What was done, e.g. [`ACTION_FULL_EXPORT`] or [`ACTION_PAIRING_OVER_QUOTA`].
    pub action: String,
    /// What it was done to: an export name (`visits.xlsx`) or a household id.
    pub subject: String,
    /// The filter or parameters, as canonical text (`month=2026-03`).
    pub filter: String,
    /// Rows exported (0 for actions that are not exports).
    pub row_count: u64,
    /// Hex SHA-256 of the exported file; empty for actions without a file.
    pub file_sha256: String,
    /// Free text in Chinese for the reader of the log.
    pub detail: String,
}

/// A county admin exported full ID numbers and phones.
pub const ACTION_FULL_EXPORT: &str = "export_full";
/// A county admin confirmed a pairing beyond the cadre's 8741 quota (超额确认).
pub const ACTION_PAIRING_OVER_QUOTA: &str = "pairing_over_quota";
/// A county admin applied a roster import (花名册导入): households and fields written.
pub const ACTION_ROSTER_IMPORT: &str = "roster_import";
/// A county admin applied an area import (行政区划导入): townships and villages written.
pub const ACTION_AREA_IMPORT: &str = "area_import";
/// A username or a client address reached the failed-login limit and was locked
/// (登录失败次数过多): `subject` is `username:…` or `address:…`, never a password.
pub const ACTION_LOGIN_THROTTLED: &str = "login_throttled";
/// Staff ended one or all of a user's device sessions (注销设备).
pub const ACTION_SESSION_REVOKE: &str = "session_revoke";
/// A user changed their password; their other sessions ended (修改密码).
pub const ACTION_PASSWORD_CHANGE: &str = "password_change";
/// A rotated refresh token was presented again, so the session it belonged to was ended.
pub const ACTION_REFRESH_TOKEN_REUSE: &str = "refresh_token_reuse";

/// A county admin changed a county setting (e.g. the income thresholds, 收入监测线).
pub const ACTION_SETTINGS_CHANGE: &str = "settings_change";

/// `SHA-256(previous_hash ‖ JSON(content))` as lower-case hex: the unkeyed hash of the
/// legacy chain (records written before the chain was keyed). Anyone can recompute it, so
/// on its own it only catches accidents; [`keyed_chain_hash`] is what new records use.
pub fn chain_hash(previous_hash: &str, content: &AuditContent) -> String {
    let mut hasher = Sha256::new();
    hasher.update(previous_hash.as_bytes());
    hasher.update(content_json(content).as_bytes());
    hex_lower(&hasher.finalize())
}

/// `HMAC-SHA256(key, previous_hash ‖ JSON(content))` as lower-case hex. The key lives
/// outside the database, so someone who can edit the SQLite file can still not recompute
/// a chain that verifies.
pub fn keyed_chain_hash(key: &[u8], previous_hash: &str, content: &AuditContent) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(previous_hash.as_bytes());
    mac.update(content_json(content).as_bytes());
    hex_lower(&mac.finalize().into_bytes())
}

fn content_json(content: &AuditContent) -> String {
    // Serialising a struct of strings and integers cannot fail.
    serde_json::to_string(content).unwrap_or_default()
}

/// One audit key as the verifier needs it: the id stored beside each record and the secret.
#[derive(Clone, Copy)]
pub struct AuditKey<'a> {
    pub key_id: &'a str,
    pub bytes: &'a [u8],
}

impl std::fmt::Debug for AuditKey<'_> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "AuditKey({}, [redacted])", self.key_id)
    }
}

/// The hash a new record gets: keyed with `key` when given (every server since the chain was
/// keyed), the legacy SHA-256 otherwise.
pub fn record_hash_for(
    key: Option<AuditKey<'_>>,
    previous_hash: &str,
    content: &AuditContent,
) -> String {
    match key {
        Some(key) => keyed_chain_hash(key.bytes, previous_hash, content),
        None => chain_hash(previous_hash, content),
    }
}

/// One stored record of the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainedRecord {
    /// 1-based place in the chain (the store's `audit_id`), used to name a bad record.
    pub position: i64,
    pub content: AuditContent,
    /// Id of the key whose HMAC `record_hash` is; empty for a legacy (unkeyed) record.
    pub key_id: String,
    pub previous_hash: String,
    pub record_hash: String,
}

/// Where a chain stops verifying, naming the record by its position (`audit_id`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainBroken {
    #[error(
        "审计记录 {position} 的前序哈希不匹配：之前的记录被删除、改动或调换了顺序 (record {position}: previous hash does not match the record before it: a record was deleted, edited or reordered)"
    )]
    PreviousMismatch { position: i64 },
    #[error(
        "审计记录 {position} 的内容与签名不符：记录被改动或用其他密钥重算 (record {position}: record hash does not match its content: edited, or recomputed without the key)"
    )]
    HashMismatch { position: i64 },
    #[error(
        "审计记录 {position} 使用了未知密钥 {key_id} (record {position}: signed with unknown key {key_id})"
    )]
    UnknownKey { position: i64, key_id: String },
    #[error(
        "审计记录 {position} 没有密钥签名，但链条此处应已签名 (record {position}: unkeyed where the chain must be keyed)"
    )]
    Unkeyed { position: i64 },
}

/// Checks a chain record by record, so a long chain can be read page by page.
///
/// Rules: each record links to the one before (the first of the whole chain to
/// [`GENESIS_HASH`]); a keyed record's hash is the HMAC under the key it names; an unkeyed
/// record is accepted only as the legacy prefix: at a position no later than
/// `legacy_records` (written down outside the database when the chain became keyed) and
/// never after a keyed record. So a chain rewritten as plain SHA-256 fails too.
#[derive(Debug)]
pub struct ChainVerifier<'k> {
    keys: &'k [AuditKey<'k>],
    legacy_records: i64,
    previous_hash: Option<String>,
    keyed_seen: bool,
    verified: u64,
}

impl<'k> ChainVerifier<'k> {
    /// Verify from the first record of the chain.
    pub fn from_genesis(keys: &'k [AuditKey<'k>], legacy_records: i64) -> Self {
        Self {
            keys,
            legacy_records,
            previous_hash: Some(GENESIS_HASH.to_owned()),
            keyed_seen: false,
            verified: 0,
        }
    }

    /// Verify a tail: the first record checked is trusted to link to whatever precedes it
    /// (its own hash is still checked).
    pub fn from_tail(keys: &'k [AuditKey<'k>], legacy_records: i64) -> Self {
        Self {
            previous_hash: None,
            ..Self::from_genesis(keys, legacy_records)
        }
    }

    /// Check the next record.
    pub fn check(&mut self, record: &ChainedRecord) -> Result<(), ChainBroken> {
        let position = record.position;
        if let Some(previous) = &self.previous_hash
            && record.previous_hash != *previous
        {
            return Err(ChainBroken::PreviousMismatch { position });
        }
        let expected = if record.key_id.is_empty() {
            if self.keyed_seen || position > self.legacy_records {
                return Err(ChainBroken::Unkeyed { position });
            }
            chain_hash(&record.previous_hash, &record.content)
        } else {
            let Some(key) = self.keys.iter().find(|key| key.key_id == record.key_id) else {
                return Err(ChainBroken::UnknownKey {
                    position,
                    key_id: record.key_id.clone(),
                });
            };
            self.keyed_seen = true;
            keyed_chain_hash(key.bytes, &record.previous_hash, &record.content)
        };
        if expected != record.record_hash {
            return Err(ChainBroken::HashMismatch { position });
        }
        self.previous_hash = Some(record.record_hash.clone());
        self.verified += 1;
        Ok(())
    }

    /// Records checked so far.
    pub fn verified(&self) -> u64 {
        self.verified
    }
}

/// Check a whole chain from its first record with `keys`; `legacy_records` unkeyed records
/// may open it (see [`ChainVerifier`]).
pub fn verify_keyed_chain(
    records: &[ChainedRecord],
    keys: &[AuditKey<'_>],
    legacy_records: i64,
) -> Result<u64, ChainBroken> {
    let mut verifier = ChainVerifier::from_genesis(keys, legacy_records);
    for record in records {
        verifier.check(record)?;
    }
    Ok(verifier.verified())
}

/// Check a whole legacy (unkeyed) chain: every record plain SHA-256.
pub fn verify_chain(records: &[ChainedRecord]) -> Result<(), ChainBroken> {
    verify_keyed_chain(records, &[], i64::MAX).map(|_| ())
}

// ----- the field policy of pulls to phones (gRPC) -----

/// Where a sensitive value is shown; the policy table test covers each one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// A console page (HTML).
    ConsolePage,
    /// The JSON twin of a console page.
    ConsoleJson,
    /// A gRPC pull to a phone.
    GrpcPull,
    /// A gRPC review call (`Review.GetVisit`): the visit's household as a review app shows
    /// it, masked as on the console.
    GrpcReview,
    /// A ledger export (台账导出); full only on the county admin's audited request.
    Export,
}

/// How `field` of a household reaches `role` over `channel`. `own_paired_household` is
/// true when the caller is the household's cadre (primary or helper pairing);
/// `full_requested` is the county admin's audited full-export request.
///
/// The console and exports follow [`disclosure`]. A pull gives a cadre full values for
/// their own paired households, because they need them at the door (an ID number to check
/// a member, a phone to call ahead); every staff role gets masked values over gRPC, and
/// the only way to a full value is the county admin's audited full export. A pull never
/// carries health details differently from today's card (the card has none beyond the
/// member's coded health status), so `Health` follows [`disclosure`] everywhere.
pub fn channel_disclosure(
    role: Role,
    field: SensitiveField,
    channel: Channel,
    own_paired_household: bool,
    full_requested: bool,
) -> Disclosure {
    match channel {
        Channel::GrpcPull => match (role, field) {
            (Role::Cadre, SensitiveField::IdNumber | SensitiveField::Phone)
                if own_paired_household =>
            {
                Disclosure::Full
            }
            _ => disclosure(role, field, false),
        },
        // A full value on a console page, its JSON twin or a review app is never shown:
        // only the export is the audited path.
        Channel::ConsolePage | Channel::ConsoleJson | Channel::GrpcReview => {
            disclosure(role, field, false)
        }
        Channel::Export => disclosure(role, field, full_requested),
    }
}

/// Apply `id_numbers` and `phones` disclosures to a household card as it leaves the server:
/// the household phone and every member's ID number. A hidden value becomes empty.
pub fn disclose_household(
    household: &mut crate::household::Household,
    id_numbers: Disclosure,
    phones: Disclosure,
) {
    household.phone = disclose(SensitiveField::Phone, phones, &household.phone).unwrap_or_default();
    for member in &mut household.members {
        member.id_number =
            disclose(SensitiveField::IdNumber, id_numbers, &member.id_number).unwrap_or_default();
        if id_numbers != Disclosure::Full {
            member.birth_date = birth_year_beside_masked_id(&member.birth_date);
        }
    }
}

/// A member's birth date as shown wherever their ID number is not shown in full: the year
/// only (`1949`), or nothing when the text does not start with one. The eight characters a
/// masked ID number hides (`110105********1234`) are the birth date (GB 11643), so the full
/// date beside it would give the whole number back.
pub fn birth_year_beside_masked_id(birth_date: &str) -> String {
    match birth_date.get(..4) {
        Some(year) if year.bytes().all(|byte| byte.is_ascii_digit()) => year.to_owned(),
        _ => String::new(),
    }
}

/// Whether a phone edit would write a masked value back over a real one: an edit of the
/// household phone or a member's ID number whose text looks masked ([`looks_masked`]).
pub fn writes_masked_value(field: &str, value: &str) -> bool {
    sensitive_field_named(field).is_some() && looks_masked(value)
}

/// A register value of `field` (a field edit, a conflict's competing value, an import's
/// change) as it leaves the server: a phone or ID number text disclosed as `disclosure_of`
/// its field allows (masked, or emptied when hidden); any other field's value unchanged.
pub fn disclose_register_value(
    field: &str,
    disclosure_of: impl Fn(SensitiveField) -> Disclosure,
    value: &mut serde_json::Value,
) {
    if let (Some(sensitive), serde_json::Value::String(text)) =
        (sensitive_field_named(field), value)
    {
        *text = disclose(sensitive, disclosure_of(sensitive), text).unwrap_or_default();
    }
}

/// The sensitive field a register field name holds, if any: a household's or member's
/// `phone` and a member's `id_number` (the values sealed at rest and masked on the way out).
pub fn sensitive_field_named(field: &str) -> Option<SensitiveField> {
    match field {
        "phone" => Some(SensitiveField::Phone),
        "id_number" => Some(SensitiveField::IdNumber),
        _ => None,
    }
}

/// Whether `value` looks like one of our masked forms (contains the mask character). A
/// real ID number or phone never contains `*`, so a masked value sent back from a phone is
/// refused instead of overwriting the real value.
pub fn looks_masked(value: &str) -> bool {
    value.contains('*')
}

fn hex_lower(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut text, byte| {
            let _ = write!(text, "{byte:02x}");
            text
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_county_admin_may_see_full_values_and_only_on_request() {
        for role in Role::ALL.iter().copied() {
            for field in [SensitiveField::IdNumber, SensitiveField::Phone] {
                assert_eq!(
                    disclosure(role, field, false),
                    Disclosure::Masked,
                    "{role:?}"
                );
            }
            assert_eq!(
                disclosure(role, SensitiveField::Health, false),
                Disclosure::Hidden
            );
            let expected = if role == Role::County {
                Disclosure::Full
            } else {
                Disclosure::Masked
            };
            assert_eq!(disclosure(role, SensitiveField::IdNumber, true), expected);
        }
        assert_eq!(
            disclosure(Role::Auditor, SensitiveField::Phone, true),
            Disclosure::Masked,
            "the auditor never gets full values"
        );
        assert!(check_full_request(Role::County).is_ok());
        assert!(check_full_request(Role::Auditor).is_err());
        assert!(check_full_request(Role::Township).is_err());
    }

    #[test]
    fn phones_keep_three_and_four_digits() {
        assert_eq!(mask_phone("13812345678"), "138****5678");
        assert_eq!(mask_phone(" 13812345678 "), "138****5678");
        assert_eq!(mask_phone("0851-12345678"), "085******5678");
        assert_eq!(mask_phone("1234567"), "*******");
        assert_eq!(mask_phone(""), "");
    }

    #[test]
    fn disclose_masks_hides_or_passes_through() {
        assert_eq!(
            disclose(
                SensitiveField::IdNumber,
                Disclosure::Masked,
                "11010519491231002X"
            ),
            Some("110105********002X".to_owned())
        );
        assert_eq!(
            disclose(SensitiveField::Phone, Disclosure::Full, "13812345678"),
            Some("13812345678".to_owned())
        );
        assert_eq!(
            disclose(SensitiveField::Health, Disclosure::Hidden, "慢性病"),
            None
        );
    }

    fn content(subject: &str) -> AuditContent {
        AuditContent {
            recorded_at_ms: 1_770_000_000_000,
            actor_user_id: "u1".into(),
            actor_role: "county".into(),
            area_id: "c1".into(),
            action: ACTION_FULL_EXPORT.into(),
            subject: subject.into(),
            filter: "month=2026-03".into(),
            row_count: 3,
            file_sha256: "ab".repeat(32),
            detail: String::new(),
        }
    }

    const KEY: [u8; 32] = [7; 32];
    const OTHER_KEY: [u8; 32] = [8; 32];

    /// A chain whose first `legacy` records are unkeyed and the rest keyed with `key`.
    fn chain_with(subjects: &[&str], legacy: usize, key: &[u8]) -> Vec<ChainedRecord> {
        let mut previous = GENESIS_HASH.to_owned();
        subjects
            .iter()
            .enumerate()
            .map(|(index, subject)| {
                let content = content(subject);
                let (key_id, record_hash) = if index < legacy {
                    (String::new(), chain_hash(&previous, &content))
                } else {
                    ("k1".to_owned(), keyed_chain_hash(key, &previous, &content))
                };
                let record = ChainedRecord {
                    position: index as i64 + 1,
                    content,
                    key_id,
                    previous_hash: previous.clone(),
                    record_hash: record_hash.clone(),
                };
                previous = record_hash;
                record
            })
            .collect()
    }

    fn chain(subjects: &[&str]) -> Vec<ChainedRecord> {
        chain_with(subjects, subjects.len(), &KEY)
    }

    /// Recompute every hash from `from` on, as an attacker who edited the file would.
    fn recompute(records: &mut [ChainedRecord], hash: impl Fn(&str, &AuditContent) -> String) {
        let mut previous = GENESIS_HASH.to_owned();
        for (index, record) in records.iter_mut().enumerate() {
            record.position = index as i64 + 1;
            record.previous_hash = previous.clone();
            record.record_hash = hash(&previous, &record.content);
            previous = record.record_hash.clone();
        }
    }

    #[test]
    fn a_chain_verifies_and_any_edit_or_removal_breaks_it() {
        let records = chain(&["visits.xlsx", "income.csv", "flags.xlsx"]);
        assert_eq!(verify_chain(&records), Ok(()));
        assert_eq!(records[0].record_hash.len(), 64);

        let mut edited = records.clone();
        edited[1].content.row_count = 4;
        assert_eq!(
            verify_chain(&edited),
            Err(ChainBroken::HashMismatch { position: 2 })
        );

        let mut removed = records.clone();
        removed.remove(1);
        assert_eq!(
            verify_chain(&removed),
            Err(ChainBroken::PreviousMismatch { position: 3 })
        );
    }

    #[test]
    fn a_keyed_chain_catches_edits_removals_reorders_and_recomputation_without_the_key() {
        let keys = [AuditKey {
            key_id: "k1",
            bytes: &KEY,
        }];
        let records = chain_with(&["a", "b", "c", "d"], 0, &KEY);
        assert_eq!(verify_keyed_chain(&records, &keys, 0), Ok(4));

        let mut edited = records.clone();
        edited[2].content.filter = "month=2026-04".into();
        assert_eq!(
            verify_keyed_chain(&edited, &keys, 0),
            Err(ChainBroken::HashMismatch { position: 3 })
        );

        let mut removed = records.clone();
        removed.remove(1);
        assert_eq!(
            verify_keyed_chain(&removed, &keys, 0),
            Err(ChainBroken::PreviousMismatch { position: 3 })
        );

        let mut reordered = records.clone();
        reordered.swap(1, 2);
        assert_eq!(
            verify_keyed_chain(&reordered, &keys, 0),
            Err(ChainBroken::PreviousMismatch { position: 3 })
        );

        // The attacker edits a record and recomputes every later hash with a key they guessed.
        let mut forged = records.clone();
        forged[1].content.row_count = 0;
        recompute(&mut forged, |previous, content| {
            keyed_chain_hash(&OTHER_KEY, previous, content)
        });
        assert_eq!(
            verify_keyed_chain(&forged, &keys, 0),
            Err(ChainBroken::HashMismatch { position: 1 })
        );

        // ... or rewrites the whole chain as plain SHA-256 (legacy) records.
        let mut as_legacy = records.clone();
        as_legacy[1].content.row_count = 0;
        recompute(&mut as_legacy, chain_hash);
        for record in &mut as_legacy {
            record.key_id.clear();
        }
        assert_eq!(
            verify_chain(&as_legacy),
            Ok(()),
            "plain SHA-256 is consistent"
        );
        assert_eq!(
            verify_keyed_chain(&as_legacy, &keys, 0),
            Err(ChainBroken::Unkeyed { position: 1 })
        );

        let mut unknown = records.clone();
        unknown[3].key_id = "k9".into();
        assert_eq!(
            verify_keyed_chain(&unknown, &keys, 0),
            Err(ChainBroken::UnknownKey {
                position: 4,
                key_id: "k9".into()
            })
        );
    }

    #[test]
    fn legacy_records_verify_only_as_the_prefix_before_the_first_keyed_record() {
        let keys = [AuditKey {
            key_id: "k1",
            bytes: &KEY,
        }];
        let records = chain_with(&["a", "b", "c", "d"], 2, &KEY);
        assert_eq!(verify_keyed_chain(&records, &keys, 2), Ok(4));
        assert_eq!(
            verify_keyed_chain(&records, &keys, 1),
            Err(ChainBroken::Unkeyed { position: 2 }),
            "more legacy records than were written down when the chain became keyed"
        );

        // A legacy edit recomputed up to the first keyed record breaks that record's link.
        let mut edited = records.clone();
        edited[0].content.subject = "x".into();
        edited[0].record_hash = chain_hash(GENESIS_HASH, &edited[0].content);
        edited[1].previous_hash = edited[0].record_hash.clone();
        edited[1].record_hash = chain_hash(&edited[1].previous_hash, &edited[1].content);
        assert_eq!(
            verify_keyed_chain(&edited, &keys, 2),
            Err(ChainBroken::PreviousMismatch { position: 3 })
        );

        // An unkeyed record after a keyed one is refused whatever the legacy count says.
        let mut mixed = chain_with(&["a", "b", "c"], 0, &KEY);
        mixed[2].key_id.clear();
        mixed[2].record_hash = chain_hash(&mixed[2].previous_hash, &mixed[2].content);
        assert_eq!(
            verify_keyed_chain(&mixed, &keys, 10),
            Err(ChainBroken::Unkeyed { position: 3 })
        );

        // A tail check trusts the link of its first record only.
        let mut tail = ChainVerifier::from_tail(&keys, 2);
        for record in &records[2..] {
            assert_eq!(tail.check(record), Ok(()));
        }
        assert_eq!(tail.verified(), 2);
    }

    /// The field policy as one table: role × field × channel, for a household the caller is
    /// or is not paired with, with and without a full-export request.
    #[test]
    fn field_policy_table_role_by_field_by_channel() {
        use Channel::*;
        use Disclosure::*;
        use SensitiveField::*;
        // (role, field, channel, own paired household, full requested, expected)
        let table: &[(Role, SensitiveField, Channel, bool, bool, Disclosure)] = &[
            // gRPC pull: the cadre's own households in full, everything else masked.
            (Role::Cadre, IdNumber, GrpcPull, true, false, Full),
            (Role::Cadre, Phone, GrpcPull, true, false, Full),
            (Role::Cadre, IdNumber, GrpcPull, false, false, Masked),
            (Role::Cadre, Phone, GrpcPull, false, false, Masked),
            (Role::Cadre, Health, GrpcPull, true, false, Hidden),
            (Role::Village, IdNumber, GrpcPull, false, false, Masked),
            (Role::Village, Phone, GrpcPull, false, false, Masked),
            (Role::Township, IdNumber, GrpcPull, false, false, Masked),
            (Role::Township, Phone, GrpcPull, false, false, Masked),
            (Role::County, IdNumber, GrpcPull, false, true, Masked),
            (Role::County, Phone, GrpcPull, false, true, Masked),
            (Role::Auditor, IdNumber, GrpcPull, false, false, Masked),
            (Role::Auditor, Phone, GrpcPull, false, false, Masked),
            // Console pages and their JSON twins: masked for everyone, even on request.
            (Role::County, IdNumber, ConsolePage, false, true, Masked),
            (Role::County, Phone, ConsoleJson, false, true, Masked),
            (Role::Township, IdNumber, ConsolePage, false, false, Masked),
            (Role::Township, Phone, ConsoleJson, false, false, Masked),
            (Role::Auditor, IdNumber, ConsoleJson, false, false, Masked),
            (Role::Cadre, IdNumber, ConsolePage, true, false, Masked),
            (Role::Village, Health, ConsolePage, false, false, Hidden),
            // A review app over gRPC: masked for every reviewer, even on request.
            (Role::Township, IdNumber, GrpcReview, false, false, Masked),
            (Role::Township, Phone, GrpcReview, false, false, Masked),
            (Role::County, IdNumber, GrpcReview, false, true, Masked),
            (Role::Township, Health, GrpcReview, false, false, Hidden),
            // Exports: full only for the county admin's audited request.
            (Role::County, IdNumber, Export, false, true, Full),
            (Role::County, Phone, Export, false, true, Full),
            (Role::County, Health, Export, false, true, Full),
            (Role::County, IdNumber, Export, false, false, Masked),
            (Role::Township, IdNumber, Export, false, true, Masked),
            (Role::Auditor, Phone, Export, false, true, Masked),
            (Role::Village, Phone, Export, false, true, Masked),
            (Role::Cadre, IdNumber, Export, true, true, Masked),
        ];
        for (role, field, channel, own, full, expected) in table.iter().copied() {
            assert_eq!(
                channel_disclosure(role, field, channel, own, full),
                expected,
                "{role:?} {field:?} {channel:?} own={own} full={full}"
            );
        }
        // Every role and field over gRPC: only the cadre's own households are ever full.
        for role in Role::ALL.iter().copied() {
            for field in [IdNumber, Phone, Health] {
                for own in [false, true] {
                    let got = channel_disclosure(role, field, GrpcPull, own, true);
                    let full_expected = role == Role::Cadre && own && field != Health;
                    assert_eq!(got == Full, full_expected, "{role:?} {field:?} own={own}");
                    let review = channel_disclosure(role, field, GrpcReview, own, true);
                    assert_ne!(review, Full, "{role:?} {field:?} own={own} over review");
                }
            }
        }
    }

    #[test]
    fn a_masked_id_number_is_shown_with_the_birth_year_only() {
        use crate::codes::{
            Disability, Health, HouseholdAttribute, LabourCapacity, PovertyCause, Relation,
            Schooling, Sex,
        };
        use crate::household::{Household, Member};
        let member = Member {
            member_id: "m".into(),
            name: "王大山".into(),
            relation: Relation::Son,
            sex: Sex::Male,
            birth_date: "1949-12-31".into(),
            id_number: "11010519491231002X".into(),
            health: Health::Healthy,
            labour_capacity: LabourCapacity::Ordinary,
            schooling: Schooling::NotInSchool,
            disability: Disability::None,
            disability_grade: 0,
            has_medical_insurance: true,
            has_serious_illness_insurance: true,
            has_pension_insurance: true,
            removed: false,
        };
        let household = Household {
            household_id: "h".into(),
            national_household_number: String::new(),
            head_name: "王大山".into(),
            township_id: "t".into(),
            village_id: "v".into(),
            village_name: "村".into(),
            address: String::new(),
            phone: "13811112222".into(),
            attribute: HouseholdAttribute::General,
            main_cause: PovertyCause::Illness,
            secondary_causes: Vec::new(),
            housing_danger_level: None,
            location: None,
            members: vec![member],
            measures: Vec::new(),
            server_seq: 0,
            field_seqs: Default::default(),
        };
        let mut masked = household.clone();
        disclose_household(&mut masked, Disclosure::Masked, Disclosure::Masked);
        assert_eq!(masked.members[0].id_number, "110105********002X");
        assert_eq!(masked.members[0].birth_date, "1949");
        assert_eq!(masked.phone, "138****2222");
        let mut full = household.clone();
        disclose_household(&mut full, Disclosure::Full, Disclosure::Full);
        assert_eq!(full, household, "full disclosure changes nothing");
        assert_eq!(birth_year_beside_masked_id(""), "");
        assert_eq!(birth_year_beside_masked_id("19x9-01-01"), "");
        assert_eq!(birth_year_beside_masked_id("2026-01-15"), "2026");
    }

    #[test]
    fn register_values_of_sensitive_fields_are_disclosed_and_others_kept() {
        let masked = |_| Disclosure::Masked;
        let mut phone = serde_json::json!("13811112222");
        disclose_register_value("phone", masked, &mut phone);
        assert_eq!(phone, "138****2222");
        let mut id = serde_json::json!("11010519491231002X");
        disclose_register_value("id_number", masked, &mut id);
        assert_eq!(id, "110105********002X");
        let mut hidden = serde_json::json!("13811112222");
        disclose_register_value("phone", |_| Disclosure::Hidden, &mut hidden);
        assert_eq!(hidden, "");
        let mut name = serde_json::json!("王建国");
        disclose_register_value("name", masked, &mut name);
        assert_eq!(name, "王建国");
        let mut full = serde_json::json!("13811112222");
        disclose_register_value("phone", |_| Disclosure::Full, &mut full);
        assert_eq!(full, "13811112222");
    }

    #[test]
    fn masked_values_are_recognised() {
        assert!(looks_masked(&id_number::mask("11010519491231002X")));
        assert!(looks_masked(&mask_phone("13812345678")));
        assert!(!looks_masked("11010519491231002X"));
        assert!(!looks_masked("13812345678"));
    }
}
