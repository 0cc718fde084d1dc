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
//! is what makes the export an audited action. The audit log is append-only and each record
//! carries `SHA-256(previous record hash ‖ own content)` ([`chain_hash`]), so an edited or
//! deleted record breaks every later hash ([`verify_chain`]).

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
/// Staff ended one or all of a user's device sessions (注销设备).
pub const ACTION_SESSION_REVOKE: &str = "session_revoke";
/// A user changed their password; their other sessions ended (修改密码).
pub const ACTION_PASSWORD_CHANGE: &str = "password_change";
/// A rotated refresh token was presented again, so the session it belonged to was ended.
pub const ACTION_REFRESH_TOKEN_REUSE: &str = "refresh_token_reuse";

/// `SHA-256(previous_hash ‖ JSON(content))` as lower-case hex.
pub fn chain_hash(previous_hash: &str, content: &AuditContent) -> String {
    // Serialising a struct of strings and integers cannot fail.
    let json = serde_json::to_string(content).unwrap_or_default();
    let mut hasher = Sha256::new();
    hasher.update(previous_hash.as_bytes());
    hasher.update(json.as_bytes());
    hex_lower(&hasher.finalize())
}

/// One stored record of the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainedRecord {
    pub content: AuditContent,
    pub previous_hash: String,
    pub record_hash: String,
}

/// Where a chain stops verifying.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainBroken {
    #[error("审计记录 {index} 的前序哈希不匹配 (record {index}: previous hash does not match)")]
    PreviousMismatch { index: usize },
    #[error("审计记录 {index} 的内容哈希不匹配 (record {index}: record hash does not match)")]
    HashMismatch { index: usize },
}

/// Check a whole chain from its first record: each record links to the one before (the
/// first to [`GENESIS_HASH`]) and its hash covers its content.
pub fn verify_chain(records: &[ChainedRecord]) -> Result<(), ChainBroken> {
    let mut previous = GENESIS_HASH.to_owned();
    for (index, record) in records.iter().enumerate() {
        if record.previous_hash != previous {
            return Err(ChainBroken::PreviousMismatch { index });
        }
        if chain_hash(&record.previous_hash, &record.content) != record.record_hash {
            return Err(ChainBroken::HashMismatch { index });
        }
        previous.clone_from(&record.record_hash);
    }
    Ok(())
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

    fn chain(subjects: &[&str]) -> Vec<ChainedRecord> {
        let mut previous = GENESIS_HASH.to_owned();
        subjects
            .iter()
            .map(|subject| {
                let content = content(subject);
                let record_hash = chain_hash(&previous, &content);
                let record = ChainedRecord {
                    content,
                    previous_hash: previous.clone(),
                    record_hash: record_hash.clone(),
                };
                previous = record_hash;
                record
            })
            .collect()
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
            Err(ChainBroken::HashMismatch { index: 1 })
        );

        let mut removed = records.clone();
        removed.remove(1);
        assert_eq!(
            verify_chain(&removed),
            Err(ChainBroken::PreviousMismatch { index: 1 })
        );
    }
}
