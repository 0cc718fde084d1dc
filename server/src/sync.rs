//! Push use case: decide, per mutation, whether it may be applied, before the store applies
//! the whole batch atomically. A malformed request (gaps in seq, a wrong device) fails as a
//! whole; a well-formed record that breaks a domain rule or lies outside the caller's scope
//! is rejected on its own, permanently, so one bad record never blocks the phone's queue.

use fieldsync_model::codes::Role;
use fieldsync_model::sync::{Mutation, MutationPayload, RejectCode};
use sha2::{Digest, Sha256};

use crate::AppState;
use crate::error::ServiceError;
use crate::store::{Principal, PushAction, PushBatch, PushEntry, PushResult};

/// Most mutations one push may carry; phones send small batches on 2G links.
pub const MAX_MUTATIONS_PER_PUSH: usize = 500;

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

/// Check the batch's shape, decide each mutation's action, and apply the batch.
pub async fn push(
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
    for (index, mutation) in input.mutations.iter().enumerate() {
        if mutation.seq != input.first_seq + index as u64 {
            return Err(ServiceError::invalid(
                format!("mutations[{index}].seq"),
                format!(
                    "expected {} (seqs are gap-free from first_seq)",
                    input.first_seq + index as u64
                ),
            ));
        }
        if uuid::Uuid::parse_str(&mutation.mutation_id).is_err() {
            return Err(ServiceError::invalid(
                format!("mutations[{index}].mutation_id"),
                "must be a UUID",
            ));
        }
    }

    let mut entries = Vec::with_capacity(input.mutations.len());
    for mutation in input.mutations {
        let action = match rejection_of(state, principal, &mutation.payload).await? {
            Some((code, message)) => PushAction::Reject { code, message },
            None => PushAction::Apply(mutation.payload),
        };
        entries.push(PushEntry {
            seq: mutation.seq,
            mutation_id: mutation.mutation_id,
            hlc: mutation.hlc,
            action,
        });
    }
    let batch = PushBatch {
        device_id: input.device_id,
        user_id: principal.user_id.clone(),
        batch_id: input.batch_id,
        fingerprint: input.fingerprint,
        entries,
        received_at: state.clock.now(),
    };
    Ok(state.store.apply_push(batch).await?)
}

/// Why this mutation must not be applied, if it must not.
async fn rejection_of(
    state: &AppState,
    principal: &Principal,
    payload: &MutationPayload,
) -> Result<Option<(RejectCode, String)>, ServiceError> {
    let invalid = match payload {
        MutationPayload::SubmitVisit(visit) => visit.validate().err(),
        MutationPayload::AddPhoto(photo) => photo.validate().err(),
        // Income registrations are validated while converting: the formula needs valid parts.
        MutationPayload::RegisterIncome(_) => None,
        // Checked against the stored card inside the store's transaction.
        MutationPayload::EditField(_) | MutationPayload::AddMember { .. } => None,
    };
    if let Some(invalid) = invalid {
        return Ok(Some((RejectCode::InvalidRecord, invalid.to_string())));
    }
    if let Some(household_id) = payload.household_id()
        && !state
            .store
            .is_paired(&principal.user_id, household_id)
            .await?
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
        return Ok(Some((
            RejectCode::HouseholdOutOfScope,
            format!(
                "走访 {} 不是您记录的 (the visit was recorded by someone else)",
                photo.visit_id
            ),
        )));
    }
    Ok(None)
}
