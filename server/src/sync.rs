//! Push and pull use cases. Push: decide, per mutation, whether it may be applied, before the store applies
//! the whole batch atomically. A malformed request (gaps in seq, a wrong device) fails as a
//! whole; a well-formed record that breaks a domain rule or lies outside the caller's scope
//! is rejected on its own, permanently, so one bad record never blocks the phone's queue.
//!
//! Clocks (DESIGN §4): every mutation's HLC is checked against the server's wall clock
//! before anything is read or written. One HLC more than 24 h ahead refuses the whole batch
//! with a typed "device clock wrong" error; HLCs 5 min–24 h ahead are stored clamped. Only a
//! committed batch moves the server's own HLC forward.
//!
//! Pull (`pull.rs`, issue #10 item 5): a page of the caller's scope leaves the server under
//! the same field policy as the console (`channel_disclosure` over `Channel::GrpcPull`): a cadre
//! gets full ID numbers and phones for their own paired households, every staff role gets
//! them masked. A masked value can therefore reach a phone, so push refuses an edit that
//! would write one back.

use fieldsync_model::access::{looks_masked, writes_masked_value};
use fieldsync_model::codes::Role;
use fieldsync_model::hlc::{Hlc, IncomingHlc, check_incoming, unix_millis};
use fieldsync_model::sync::{Mutation, MutationPayload, RejectCode};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

pub mod pull;

use crate::AppState;
use crate::error::ServiceError;
use crate::store::{
    FlagTarget, Heartbeat, Principal, PushAction, PushBatch, PushEntry, PushFlagWork, PushResult,
};

/// Most mutations one push may carry; phones send small batches on 2G links.
pub const MAX_MUTATIONS_PER_PUSH: usize = 500;

/// Highest seq a device may use: the store keeps seqs as SQLite INTEGER, a signed 64-bit
/// number.
pub const MAX_SEQ: u64 = i64::MAX as u64;

/// A push as received at the edge, already converted to model types.
#[derive(Debug, Clone)]
pub struct PushInput {
    pub device_id: String,
    pub batch_id: String,
    pub first_seq: u64,
    pub mutations: Vec<Mutation>,
    /// Hex SHA-256 of the request bytes that carried this batch.
    pub fingerprint: String,
}

/// Fingerprint of a push request's encoded bytes, used to tell a retry from a reused id.
pub fn fingerprint(encoded_request: &[u8]) -> String {
    hex::encode(Sha256::digest(encoded_request))
}

/// Check the batch's shape, decide each mutation's action, and apply the batch. Every
/// batch is counted on `/metrics`: committed (with its mutations by outcome) or refused.
pub async fn push(
    state: &AppState,
    principal: &Principal,
    input: PushInput,
) -> Result<PushResult, ServiceError> {
    let result = checked_push(state, principal, input).await;
    crate::monitoring::record_push(result.as_ref().ok().map(|result| &result.outcomes[..]));
    result
}

async fn checked_push(
    state: &AppState,
    principal: &Principal,
    input: PushInput,
) -> Result<PushResult, ServiceError> {
    if principal.role != Role::Cadre {
        return Err(ServiceError::PermissionDenied(
            "只有帮扶干部可以上传走访记录 (only cadres push visit records)".into(),
        ));
    }
    if input.device_id != principal.device_id {
        return Err(ServiceError::invalid(
            "device_id",
            "does not match the device this session was opened on",
        ));
    }
    if uuid::Uuid::parse_str(&input.batch_id).is_err() {
        return Err(ServiceError::invalid("batch_id", "must be a UUID"));
    }
    if input.mutations.is_empty() {
        return Err(ServiceError::invalid("mutations", "must not be empty"));
    }
    if input.mutations.len() > MAX_MUTATIONS_PER_PUSH {
        return Err(ServiceError::invalid(
            "mutations",
            format!("at most {MAX_MUTATIONS_PER_PUSH} per push"),
        ));
    }
    if input.first_seq == 0 {
        return Err(ServiceError::invalid("first_seq", "seq starts at 1"));
    }
    // The store keeps seqs in SQLite INTEGER (i64). A seq past i64::MAX can never be stored,
    // so it is the request's fault and must not surface as a retryable storage failure.
    if input.first_seq > MAX_SEQ {
        return Err(ServiceError::invalid(
            "first_seq",
            format!("must be at most {MAX_SEQ}"),
        ));
    }
    for (index, mutation) in input.mutations.iter().enumerate() {
        let expected = input
            .first_seq
            .checked_add(index as u64)
            .filter(|seq| *seq <= MAX_SEQ);
        let Some(expected) = expected else {
            return Err(ServiceError::invalid(
                format!("mutations[{index}].seq"),
                format!("must be at most {MAX_SEQ}"),
            ));
        };
        if mutation.seq != expected {
            return Err(ServiceError::invalid(
                format!("mutations[{index}].seq"),
                format!("expected {expected} (seqs are gap-free from first_seq)"),
            ));
        }
        if uuid::Uuid::parse_str(&mutation.mutation_id).is_err() {
            return Err(ServiceError::invalid(
                format!("mutations[{index}].mutation_id"),
                "must be a UUID",
            ));
        }
    }

    let received_at = state.clock.now();
    let hlcs = usable_hlcs(&input.mutations, unix_millis(received_at))?;
    // Whose evidence flags the batch makes stale, by seq; the store recomputes them inside
    // the batch's own write transaction for the mutations it stored (DESIGN §5: flags are
    // computed on submission).
    let flag_targets: Vec<FlagTarget> = input
        .mutations
        .iter()
        .filter_map(|mutation| match &mutation.payload {
            MutationPayload::SubmitVisit(visit) => Some(FlagTarget {
                seq: mutation.seq,
                visit_id: visit.visit_id.clone(),
                photo_sha256: None,
            }),
            MutationPayload::AddPhoto(photo) => Some(FlagTarget {
                seq: mutation.seq,
                visit_id: photo.visit_id.clone(),
                photo_sha256: Some(photo.sha256.clone()),
            }),
            _ => None,
        })
        .collect();

    let mut entries = Vec::with_capacity(input.mutations.len());
    // A batch names the same few households again and again: ask the store once each.
    let mut paired: HashMap<String, bool> = HashMap::new();
    for (mutation, hlc) in input.mutations.into_iter().zip(&hlcs) {
        let action = match rejection_of(state, principal, &mutation.payload, &mut paired).await? {
            Some((code, message)) => PushAction::Reject { code, message },
            None => PushAction::Apply(mutation.payload),
        };
        entries.push(PushEntry {
            seq: mutation.seq,
            mutation_id: mutation.mutation_id,
            hlc: hlc.as_u64(),
            action,
        });
    }
    let batch = PushBatch {
        device_id: input.device_id,
        user_id: principal.user_id.clone(),
        batch_id: input.batch_id,
        fingerprint: input.fingerprint,
        entries,
        received_at,
    };
    let flag_work = PushFlagWork {
        targets: flag_targets,
        settings: state.settings.evidence.clone(),
    };
    let result = state.store.apply_push_with_flags(batch, flag_work).await?;
    // Only now, with the batch durable, may its clocks move the server's HLC.
    if let Some(highest) = hlcs.iter().max() {
        state.observe_hlc(*highest);
    }
    Ok(result)
}

/// The HLC to store for each mutation, or the typed clock error when any of them is more
/// than 24 h ahead of `server_millis` (the batch is then refused whole, so the phone's
/// queue stays intact for after the clock is fixed).
///
/// Within a batch the stored HLCs strictly increase: clamping pulls several distinct
/// future times onto the same server millisecond, and a phone's outbox is in its own HLC
/// order, so a later edit must still outrank the same device's earlier one.
pub fn usable_hlcs(mutations: &[Mutation], server_millis: u64) -> Result<Vec<Hlc>, ServiceError> {
    let mut worst_ahead = None;
    let mut usable = Vec::with_capacity(mutations.len());
    let mut previous: Option<Hlc> = None;
    for mutation in mutations {
        let hlc = match check_incoming(Hlc::from_u64(mutation.hlc), server_millis) {
            IncomingHlc::Accepted(hlc) | IncomingHlc::Clamped { used: hlc, .. } => hlc,
            IncomingHlc::DeviceClockWrong { ahead_millis } => {
                worst_ahead = worst_ahead.max(Some(ahead_millis));
                continue;
            }
        };
        // tick(0) of an HLC is its successor: the wall time 0 never leads.
        let hlc = match previous {
            Some(previous) if hlc <= previous => previous.tick(0),
            _ => hlc,
        };
        previous = Some(hlc);
        usable.push(hlc);
    }
    match worst_ahead {
        Some(ahead_millis) => Err(ServiceError::DeviceClockWrong {
            ahead_millis,
            server_time_ms: server_millis,
        }),
        None => Ok(usable),
    }
}

/// Keep the device's latest heartbeat for the console's "unsent data" view. Best effort:
/// the heartbeat is a report about the sync, so failing to store it must not fail the sync
/// (and it is kept even when the batch was refused, e.g. for a wrong clock, which is exactly
/// what supervisors need to see).
pub async fn record_heartbeat(state: &AppState, principal: &Principal, heartbeat: Heartbeat) {
    if let Err(error) = state
        .store
        .record_heartbeat(
            &principal.device_id,
            &principal.user_id,
            heartbeat,
            state.clock.now(),
        )
        .await
    {
        tracing::warn!(%error, device_id = %principal.device_id, "could not store a heartbeat");
    }
}

/// Why this mutation must not be applied, if it must not.
async fn rejection_of(
    state: &AppState,
    principal: &Principal,
    payload: &MutationPayload,
    paired: &mut HashMap<String, bool>,
) -> Result<Option<(RejectCode, String)>, ServiceError> {
    let invalid = match payload {
        MutationPayload::SubmitVisit(visit) => {
            visit.validate().err().map(|error| error.to_string())
        }
        MutationPayload::AddPhoto(photo) => photo.validate().err().map(|error| error.to_string()),
        // Income registrations are validated while converting: the formula needs valid parts.
        MutationPayload::RegisterIncome(_) => None,
        // A base_seq counts writes the phone has seen; a negative one is no count at all.
        MutationPayload::EditField(edit) if edit.base_seq < 0 => Some(format!(
            "base_seq: {} is negative (it counts the writes the phone has seen)",
            edit.base_seq
        )),
        // Checked against the stored card inside the store's transaction.
        MutationPayload::EditField(_) | MutationPayload::AddMember { .. } => None,
    };
    if let Some(invalid) = invalid {
        return Ok(Some((RejectCode::InvalidRecord, invalid)));
    }
    if let Some(field) = masked_write_back(payload) {
        return Ok(Some((
            RejectCode::InvalidRecord,
            format!(
                "{field} 是打码后的值，不能覆盖真实信息 (a masked {field} must not overwrite the real value)"
            ),
        )));
    }
    let is_paired = match payload.household_id() {
        None => true,
        Some(household_id) => match paired.get(household_id) {
            Some(known) => *known,
            None => {
                let known = state
                    .store
                    .is_paired(&principal.user_id, household_id)
                    .await?;
                paired.insert(household_id.to_owned(), known);
                known
            }
        },
    };
    if let Some(household_id) = payload.household_id()
        && !is_paired
    {
        // Unknown and unpaired households get the same answer, so ids outside the caller's
        // scope reveal nothing.
        return Ok(Some((
            RejectCode::HouseholdOutOfScope,
            format!("农户 {household_id} 不是您的结对帮扶户 (household is not paired with you)"),
        )));
    }
    if let MutationPayload::AddPhoto(photo) = payload
        && let Some((_, author)) = state.store.visit_owner(&photo.visit_id).await?
        && author != principal.user_id
    {
        return Ok(Some(crate::store::push_record::not_the_author(
            &photo.visit_id,
        )));
    }
    Ok(None)
}

/// The field a mutation would overwrite with a masked value (`138****5678`), if any.
fn masked_write_back(payload: &MutationPayload) -> Option<&'static str> {
    match payload {
        MutationPayload::EditField(edit) => {
            let value = edit.value.as_str()?;
            writes_masked_value(&edit.field, value).then_some(match edit.field.as_str() {
                "phone" => "phone",
                _ => "id_number",
            })
        }
        MutationPayload::AddMember { member, .. } => {
            looks_masked(&member.id_number).then_some("id_number")
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fieldsync_model::hlc::{CLAMP_AHEAD_MILLIS, REJECT_AHEAD_MILLIS};

    const NOW: u64 = 1_790_000_000_000;
    const HOUR: u64 = 3_600_000;

    fn mutation(hlc: Hlc) -> Mutation {
        Mutation {
            seq: 1,
            mutation_id: "0190b4a0-0000-7000-8000-000000000001".into(),
            hlc: hlc.as_u64(),
            payload: MutationPayload::EditField(fieldsync_model::register::FieldEdit {
                household_id: "h".into(),
                target: fieldsync_model::register::FieldTarget::Household,
                field: "phone".into(),
                value: serde_json::json!("13800000000"),
                base_seq: 0,
            }),
        }
    }

    #[test]
    fn masked_phones_and_id_numbers_are_never_written_back() {
        let edit = |field: &str, value: &str| {
            MutationPayload::EditField(fieldsync_model::register::FieldEdit {
                household_id: "h".into(),
                target: fieldsync_model::register::FieldTarget::Household,
                field: field.into(),
                value: serde_json::json!(value),
                base_seq: 0,
            })
        };
        assert_eq!(
            masked_write_back(&edit("phone", "138****5678")),
            Some("phone")
        );
        assert_eq!(
            masked_write_back(&edit("id_number", "110105********002X")),
            Some("id_number")
        );
        assert_eq!(masked_write_back(&edit("phone", "13812345678")), None);
        assert_eq!(masked_write_back(&edit("address", "3组*号")), None);
    }

    #[test]
    fn skewed_but_plausible_clocks_are_accepted_and_the_far_future_is_clamped() {
        let behind = Hlc::from_parts(NOW - 24 * HOUR, 3);
        let ahead = Hlc::from_parts(NOW + HOUR, 9);
        let hlcs = usable_hlcs(&[mutation(behind), mutation(ahead)], NOW).expect("accepted");
        assert_eq!(hlcs[0], behind, "a slow clock is used as sent");
        assert_eq!(
            hlcs[1],
            Hlc::from_parts(NOW + CLAMP_AHEAD_MILLIS, 9),
            "an hour ahead is clamped to the 5-minute ceiling"
        );
    }

    #[test]
    fn clamped_hlcs_of_one_batch_stay_strictly_increasing() {
        let first = Hlc::from_parts(NOW + HOUR, 0);
        let second = Hlc::from_parts(NOW + HOUR + 1, 0);
        let hlcs = usable_hlcs(&[mutation(first), mutation(second)], NOW).expect("accepted");
        assert!(hlcs[0] < hlcs[1], "{hlcs:?}");
        assert_eq!(hlcs[0], Hlc::from_parts(NOW + CLAMP_AHEAD_MILLIS, 0));
    }

    #[test]
    fn one_mutation_a_day_ahead_refuses_the_whole_batch_with_the_worst_skew() {
        let fine = Hlc::from_parts(NOW, 0);
        let wrong = Hlc::from_parts(NOW + 25 * HOUR, 0);
        let year_2099 = Hlc::from_parts(4_070_908_800_000, 0);
        match usable_hlcs(&[mutation(fine), mutation(wrong)], NOW) {
            Err(ServiceError::DeviceClockWrong {
                ahead_millis,
                server_time_ms,
            }) => {
                assert_eq!(ahead_millis, 25 * HOUR);
                assert_eq!(server_time_ms, NOW);
            }
            other => panic!("expected a clock error, got {other:?}"),
        }
        let error = usable_hlcs(&[mutation(year_2099)], NOW).expect_err("2099 is refused");
        let message = error.to_string();
        assert!(message.starts_with("device clock wrong:"), "{message}");
        assert!(
            message.contains("手机时间不正确，请校准后再同步"),
            "{message}"
        );
        assert!(
            usable_hlcs(
                &[mutation(Hlc::from_parts(NOW + REJECT_AHEAD_MILLIS, 0))],
                NOW
            )
            .is_ok(),
            "exactly 24 h ahead is still clamped, not refused"
        );
    }

    #[test]
    fn the_error_says_how_far_ahead_in_hours_and_minutes() {
        let error = ServiceError::DeviceClockWrong {
            ahead_millis: 25 * HOUR + 3 * 60_000,
            server_time_ms: NOW,
        };
        assert!(error.to_string().contains("25 h 3 min"), "{error}");
    }
}
