//! How a [`PushResult`] is kept under its batch id (`push_batches.result`), the same text on
//! every backend, so a retried batch is answered with exactly what the first try answered.
//! `MutationOutcome` has no serde derives (the model stays free of storage concerns), so the
//! mapping lives here.

use fieldsync_model::sync::{MutationOutcome, RejectCode};
use serde::{Deserialize, Serialize};

use super::{PushResult, StoreError, StoreResult};

#[derive(Debug, Serialize, Deserialize)]
struct StoredPushResult {
    outcomes: Vec<StoredOutcome>,
    last_processed_seq: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredOutcome {
    seq: u64,
    /// "applied", "duplicate", "conflict_recorded" or "rejected".
    outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message: Option<String>,
}

const ALL_REJECT_CODES: [RejectCode; 6] = [
    RejectCode::HouseholdOutOfScope,
    RejectCode::UnknownHousehold,
    RejectCode::UnknownVisit,
    RejectCode::InvalidRecord,
    RejectCode::StaleRevision,
    RejectCode::IdReused,
];

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

fn parse_reject_code(name: &str) -> StoreResult<RejectCode> {
    ALL_REJECT_CODES
        .into_iter()
        .find(|code| code.as_str() == name)
        .ok_or_else(|| corrupt(format!("unknown reject code {name:?}")))
}

/// The outcome's name as stored in `applied_mutations.outcome` and the cached result.
pub(crate) fn outcome_name(outcome: &MutationOutcome) -> &'static str {
    match outcome {
        MutationOutcome::Applied => "applied",
        MutationOutcome::Duplicate => "duplicate",
        MutationOutcome::ConflictRecorded => "conflict_recorded",
        MutationOutcome::Rejected { .. } => "rejected",
    }
}

pub(crate) fn encode_push_result(result: &PushResult) -> StoreResult<String> {
    let stored = StoredPushResult {
        outcomes: result
            .outcomes
            .iter()
            .map(|(seq, outcome)| {
                let (code, message) = match outcome {
                    MutationOutcome::Rejected { code, message } => {
                        (Some(code.as_str().to_owned()), Some(message.clone()))
                    }
                    _ => (None, None),
                };
                StoredOutcome {
                    seq: *seq,
                    outcome: outcome_name(outcome).to_owned(),
                    code,
                    message,
                }
            })
            .collect(),
        last_processed_seq: result.last_processed_seq,
    };
    serde_json::to_string(&stored).map_err(|error| {
        StoreError::database_caused_by(format!("cannot encode record: {error}"), error)
    })
}

pub(crate) fn decode_push_result(text: &str) -> StoreResult<PushResult> {
    let stored: StoredPushResult = serde_json::from_str(text)
        .map_err(|error| corrupt(format!("cached push result: {error}")))?;
    let mut outcomes = Vec::with_capacity(stored.outcomes.len());
    for entry in stored.outcomes {
        let outcome = match entry.outcome.as_str() {
            "applied" => MutationOutcome::Applied,
            "duplicate" => MutationOutcome::Duplicate,
            "conflict_recorded" => MutationOutcome::ConflictRecorded,
            "rejected" => MutationOutcome::Rejected {
                code: parse_reject_code(entry.code.as_deref().unwrap_or_default())?,
                message: entry.message.unwrap_or_default(),
            },
            other => return Err(corrupt(format!("unknown mutation outcome {other:?}"))),
        };
        outcomes.push((entry.seq, outcome));
    }
    Ok(PushResult {
        outcomes,
        last_processed_seq: stored.last_processed_seq,
    })
}

/// A mutation refused on its own (its seq is still consumed), with the reason for the phone.
pub(crate) fn rejected(code: RejectCode, message: impl Into<String>) -> MutationOutcome {
    MutationOutcome::Rejected {
        code,
        message: message.into(),
    }
}

/// The answer to a mutation about a visit that `pusher` did not record: the first
/// revision's author owns a visit, and only they may correct it or attach photos to it. A
/// second cadre paired with the same household sees the visit in their pull, but a revision
/// from them would supersede the owner's open revision.
pub(crate) fn not_the_author(visit_id: &str) -> (RejectCode, String) {
    (
        RejectCode::HouseholdOutOfScope,
        format!("走访 {visit_id} 不是您记录的 (the visit was recorded by someone else)"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_results_round_trip_through_their_stored_form() {
        let result = PushResult {
            outcomes: ALL_REJECT_CODES
                .into_iter()
                .enumerate()
                .map(|(index, code)| {
                    (
                        index as u64 + 1,
                        MutationOutcome::Rejected {
                            code,
                            message: format!("message {index}"),
                        },
                    )
                })
                .chain([
                    (7, MutationOutcome::Applied),
                    (8, MutationOutcome::Duplicate),
                    (9, MutationOutcome::ConflictRecorded),
                ])
                .collect(),
            last_processed_seq: 9,
        };
        let stored = encode_push_result(&result).expect("encode");
        assert_eq!(decode_push_result(&stored).expect("decode"), result);
        assert!(matches!(
            decode_push_result(
                r#"{"outcomes":[{"seq":1,"outcome":"exploded"}],"last_processed_seq":1}"#
            ),
            Err(StoreError::Corrupt(_))
        ));
    }
}
