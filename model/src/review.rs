//! 审核 review decisions on visit revisions, and the status a phone sees.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::codes::ReviewState;

/// A supervisor's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// 通过.
    Approve,
    /// 退回.
    Return,
}

/// A reason code attached to one field of the visit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnReason {
    pub code: String,
    pub field: String,
}

/// Reason codes the console offers, with their Chinese labels. Clients may send others; the
/// label then falls back to the code.
pub const RETURN_REASON_CODES: &[(&str, &str)] = &[
    ("photo_not_at_household", "照片不在农户家中"),
    ("photo_unclear", "照片不清晰"),
    ("gps_far", "定位距农户过远"),
    ("gps_missing", "缺少定位"),
    ("content_too_short", "走访内容过于简单"),
    ("income_inconsistent", "收入情况前后不一致"),
    ("wrong_household", "走访对象有误"),
    ("other", "其他"),
];

/// Chinese label of a reason code.
pub fn return_reason_label(code: &str) -> &str {
    RETURN_REASON_CODES
        .iter()
        .find(|(known, _)| *known == code)
        .map_or(code, |(_, label)| label)
}

/// A decision as the reviewer gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionRequest {
    pub visit_id: String,
    pub revision: u32,
    pub content_hash: String,
    pub decision: Decision,
    pub reasons: Vec<ReturnReason>,
    pub note: String,
    /// YYYY-MM-DD or empty.
    pub deadline: String,
}

/// The review status of one visit revision, as the phone shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisitStatus {
    pub visit_id: String,
    pub revision: u32,
    pub household_id: String,
    pub state: ReviewState,
    pub reasons: Vec<ReturnReason>,
    pub note: String,
    pub deadline: String,
    pub reviewer_name: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub decided_at: Option<OffsetDateTime>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_reason_codes_have_chinese_labels_and_unknown_ones_fall_back() {
        assert_eq!(return_reason_label("gps_far"), "定位距农户过远");
        assert_eq!(return_reason_label("made_up"), "made_up");
    }
}
