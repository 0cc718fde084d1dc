//! 走访记录 monthly visits, their GPS fix and photo records, with the structural checks a
//! visit must pass before the server stores it. Evidence *judgements* (too far, mock
//! location, reused photo) are flags for the reviewer, never rejections (DESIGN §5).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;
use time::OffsetDateTime;

use crate::codes::{
    Crs, LocationProvider, PhotoSubject, VisitExceptionReason, VisitMode, VisitType,
};

/// One location fix recorded with a visit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GpsFix {
    pub lat: f64,
    pub lon: f64,
    pub crs: Crs,
    pub accuracy_m: f64,
    pub provider: Option<LocationProvider>,
    pub is_mock: bool,
    #[serde(with = "time::serde::rfc3339::option")]
    pub fix_time: Option<OffsetDateTime>,
}

/// Tri-state result of one 两不愁三保障 item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckResult {
    #[default]
    NotChecked,
    Pass,
    Fail,
}

/// 两不愁三保障 + 饮水安全 quick check.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WellbeingCheck {
    pub food: CheckResult,
    pub clothing: CheckResult,
    pub compulsory_education: CheckResult,
    pub basic_medical: CheckResult,
    pub housing_safety: CheckResult,
    pub drinking_water: CheckResult,
    pub note: String,
}

impl WellbeingCheck {
    /// Items with their Chinese names, in the order officials list them.
    pub fn items(&self) -> [(&'static str, CheckResult); 6] {
        [
            ("不愁吃", self.food),
            ("不愁穿", self.clothing),
            ("义务教育有保障", self.compulsory_education),
            ("基本医疗有保障", self.basic_medical),
            ("住房安全有保障", self.housing_safety),
            ("饮水安全有保障", self.drinking_water),
        ]
    }
}

/// 信息变更 a household or member field change proposed during a visit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposedChange {
    pub target: String,
    pub field: String,
    pub old_value: String,
    pub new_value: String,
    pub reason: String,
}

/// One revision of a visit record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Visit {
    pub visit_id: String,
    pub revision: u32,
    /// The returned revision this one corrects; 0 for a first submission.
    pub supersedes_revision: u32,
    pub household_id: String,
    pub mode: VisitMode,
    pub exception_reason: Option<VisitExceptionReason>,
    pub visit_type: VisitType,
    #[serde(with = "time::serde::rfc3339")]
    pub checkin_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub checkout_at: OffsetDateTime,
    /// 生产生活情况.
    pub observed_situation: String,
    /// 帮扶计划实施情况.
    pub plan_progress: String,
    pub problems: String,
    pub actions: String,
    pub needs: String,
    pub policies_explained: Vec<String>,
    pub wellbeing: WellbeingCheck,
    pub proposed_changes: Vec<ProposedChange>,
    pub photo_ids: Vec<String>,
    pub gps: Option<GpsFix>,
    /// Device wall clock at save time: evidence only, never used for ordering.
    #[serde(with = "time::serde::rfc3339")]
    pub recorded_at_device: OffsetDateTime,
}

/// Minimum length of the visit's written content, in characters. The huatang app required
/// at least 5 characters of content (domain.md §1.7).
pub const MIN_CONTENT_CHARS: usize = 5;
/// Longest text a single content section may hold; protects storage and the console.
pub const MAX_SECTION_CHARS: usize = 10_000;
/// Longest visit the phone's form accepts, check-in to check-out, in minutes. A visit is one
/// sitting at the household; a day or more is a typo in the times (the late-record flag
/// already marks anything over `late_record_max_hours` for the supervisor).
pub const MAX_VISIT_MINUTES: i64 = 24 * 60;
/// Most photos one visit may reference.
pub const MAX_PHOTOS_PER_VISIT: usize = 20;

/// A visit that fails a structural check; `field` names the offending field as the protocol
/// spells it, so clients can point at it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{field}: {message}")]
pub struct InvalidField {
    pub field: &'static str,
    pub message: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> InvalidField {
    InvalidField {
        field,
        message: message.into(),
    }
}

/// True when `text` parses as a UUID (any version).
pub fn is_uuid(text: &str) -> bool {
    uuid::Uuid::parse_str(text).is_ok()
}

impl Visit {
    /// Structural validation. Evidence quality is judged by flags elsewhere.
    pub fn validate(&self) -> Result<(), InvalidField> {
        if !is_uuid(&self.visit_id) {
            return Err(invalid("visit_id", "must be a UUID"));
        }
        if self.household_id.trim().is_empty() {
            return Err(invalid("household_id", "is required"));
        }
        if self.revision == 0 {
            return Err(invalid("revision", "starts at 1"));
        }
        if self.supersedes_revision >= self.revision {
            return Err(invalid(
                "supersedes_revision",
                "must be lower than revision",
            ));
        }
        if self.mode != VisitMode::InPerson && self.exception_reason.is_none() {
            return Err(invalid(
                "exception_reason",
                "非入户走访必须说明原因 (a visit that is not in person needs an exception reason)",
            ));
        }
        let times = [
            ("checkin_at", Some(self.checkin_at)),
            ("checkout_at", Some(self.checkout_at)),
            ("recorded_at_device", Some(self.recorded_at_device)),
            ("gps.fix_time", self.gps.and_then(|gps| gps.fix_time)),
        ];
        for (field, instant) in times {
            if let Some(instant) = instant {
                crate::time_util::check_business_instant(instant)
                    .map_err(|message| invalid(field, message))?;
            }
        }
        if self.checkout_at < self.checkin_at {
            return Err(invalid("checkout_at", "is before checkin_at"));
        }
        let sections = [
            ("observed_situation", &self.observed_situation),
            ("plan_progress", &self.plan_progress),
            ("problems", &self.problems),
            ("actions", &self.actions),
            ("needs", &self.needs),
        ];
        for (field, text) in sections {
            if text.chars().count() > MAX_SECTION_CHARS {
                return Err(invalid(
                    field,
                    format!("is longer than {MAX_SECTION_CHARS} characters"),
                ));
            }
        }
        let content_chars: usize = sections
            .iter()
            .map(|(_, text)| text.trim().chars().count())
            .sum();
        if content_chars < MIN_CONTENT_CHARS {
            return Err(invalid(
                "observed_situation",
                format!(
                    "走访内容至少{MIN_CONTENT_CHARS}个字 (content needs at least {MIN_CONTENT_CHARS} characters)"
                ),
            ));
        }
        if self.photo_ids.len() > MAX_PHOTOS_PER_VISIT {
            return Err(invalid(
                "photo_ids",
                format!("at most {MAX_PHOTOS_PER_VISIT} photos"),
            ));
        }
        if let Some(bad) = self.photo_ids.iter().find(|id| !is_uuid(id)) {
            return Err(invalid("photo_ids", format!("{bad:?} is not a UUID")));
        }
        if let Some(gps) = &self.gps {
            if !crate::geo::is_valid_coordinate(gps.lat, gps.lon) {
                return Err(invalid(
                    "gps",
                    format!("impossible coordinate ({}, {})", gps.lat, gps.lon),
                ));
            }
            if !gps.accuracy_m.is_finite() || gps.accuracy_m < 0.0 {
                return Err(invalid(
                    "gps.accuracy_m",
                    "must be a non-negative number of metres",
                ));
            }
        }
        Ok(())
    }

    /// Hex SHA-256 of the revision's canonical content. An approval quotes it, so a
    /// supervisor can only approve exactly what they looked at.
    pub fn content_hash(&self) -> String {
        hash_of_canonical(&serde_json::to_string(self).unwrap_or_default())
    }

    /// The canonical JSON text of the revision and its [`content hash`](Self::content_hash),
    /// from one serialisation: the store keeps this very text as the visit's body.
    pub fn canonical_json_and_hash(&self) -> Result<(String, String), serde_json::Error> {
        let canonical = serde_json::to_string(self)?;
        let hash = hash_of_canonical(&canonical);
        Ok((canonical, hash))
    }

    /// The calendar month (YYYY-MM, Beijing time) the visit counts toward.
    pub fn business_month(&self) -> String {
        crate::time_util::business_month(self.checkin_at)
    }
}

/// serde_json writes struct fields in declaration order, so a visit's JSON text is canonical
/// for a given build; the hash is stored with the revision, never recomputed across versions.
fn hash_of_canonical(canonical: &str) -> String {
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

/// Metadata of one photo; bytes travel separately through the media upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhotoRecord {
    pub photo_id: String,
    pub visit_id: String,
    pub sha256: String,
    pub size_bytes: u64,
    pub mime_type: String,
    pub subject: Option<PhotoSubject>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub captured_at_device: Option<OffsetDateTime>,
    pub in_app_camera: bool,
}

/// Largest photo the server accepts, in bytes. A 12 MP phone JPEG is 3–6 MB; 32 MB leaves
/// room for 50 MP sensors without letting one upload fill a disk.
pub const MAX_PHOTO_BYTES: u64 = 32 * 1024 * 1024;

/// True when `text` is 64 lower-case hex characters.
pub fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl PhotoRecord {
    /// Structural validation of the metadata.
    pub fn validate(&self) -> Result<(), InvalidField> {
        if !is_uuid(&self.photo_id) {
            return Err(invalid("photo_id", "must be a UUID"));
        }
        if !is_uuid(&self.visit_id) {
            return Err(invalid("visit_id", "must be a UUID"));
        }
        if !is_sha256_hex(&self.sha256) {
            return Err(invalid("sha256", "must be 64 lower-case hex characters"));
        }
        if let Some(captured_at_device) = self.captured_at_device {
            crate::time_util::check_business_instant(captured_at_device)
                .map_err(|message| invalid("captured_at_device", message))?;
        }
        if self.size_bytes == 0 || self.size_bytes > MAX_PHOTO_BYTES {
            return Err(invalid(
                "size_bytes",
                format!("must be 1..={MAX_PHOTO_BYTES}"),
            ));
        }
        Ok(())
    }
}
