//! Review (审核) use cases shared by the gRPC `Review` service and the console: the
//! township's queue, one visit's evidence, and approve/return; the conflict records of the
//! township and their resolution; the devices still holding unsent data. Access is checked
//! here, once, so every boundary enforces the same rules.

use fieldsync_model::codes::{ReviewState, Role};
use fieldsync_model::register::Stamp;
use fieldsync_model::review::{Decision, DecisionRequest};
use serde_json::Value;

use crate::AppState;
use crate::error::ServiceError;
use crate::store::{
    ConflictRecord, ConflictResolution, DeviceBacklog, Principal, QueueFilter, QueueItem,
    StoredDecision, UnvisitedHousehold, VisitDetail,
};

/// Device id of register writes made in the console (conflict resolutions): the tie-break
/// half of their stamp, and how phones and the history tell them apart.
pub const CONSOLE_WRITER_DEVICE: &str = "console";

/// Largest page of the queue one call returns.
pub const MAX_QUEUE_PAGE: u32 = 200;

/// The township a reviewer may act on, or a permission error for other roles.
pub fn reviewer_township(principal: &Principal) -> Result<&str, ServiceError> {
    match principal.role {
        Role::Township => Ok(&principal.area_id),
        _ => Err(ServiceError::PermissionDenied(
            "只有乡镇审核员可以审核走访 (only township supervisors review visits)".into(),
        )),
    }
}

/// The caller's queue of submitted visits, oldest first.
pub async fn queue(
    state: &AppState,
    principal: &Principal,
    mut filter: QueueFilter,
) -> Result<Vec<QueueItem>, ServiceError> {
    let township = reviewer_township(principal)?;
    filter.limit = filter.limit.clamp(1, MAX_QUEUE_PAGE);
    Ok(state.store.review_queue(township, filter).await?)
}

/// One visit with its evidence, if it belongs to the caller's township. A visit in another
/// township is reported as not found so that ids outside the scope reveal nothing.
pub async fn detail(
    state: &AppState,
    principal: &Principal,
    visit_id: &str,
) -> Result<VisitDetail, ServiceError> {
    let township = reviewer_township(principal)?;
    match state.store.visit_detail(visit_id).await? {
        Some(detail) if detail.household.township_id == township => Ok(detail),
        _ => Err(ServiceError::NotFound(format!(
            "visit {visit_id} not found"
        ))),
    }
}

/// Approve or return one exact revision.
pub async fn decide(
    state: &AppState,
    principal: &Principal,
    request: DecisionRequest,
) -> Result<ReviewState, ServiceError> {
    let visit = detail(state, principal, &request.visit_id).await?;
    // A photo is evidence only once all its bytes arrived and verified; approving before
    // that would approve something nobody has seen. Returning is always possible.
    let still_uploading = visit
        .visit
        .photo_ids
        .iter()
        .filter(|photo_id| !visit.photo_ids_received.contains(photo_id))
        .count();
    if request.decision == Decision::Approve && still_uploading > 0 {
        return Err(ServiceError::FailedPrecondition(format!(
            "照片尚未上传完成，暂不能通过 ({still_uploading} photo(s) still uploading; approve after they arrive)"
        )));
    }
    if request.decision == Decision::Return
        && request.reasons.is_empty()
        && request.note.trim().is_empty()
    {
        return Err(ServiceError::invalid(
            "reasons",
            "退回必须说明原因 (a return needs at least one reason or a note)",
        ));
    }
    if !request.deadline.is_empty()
        && time::Date::parse(
            &request.deadline,
            time::macros::format_description!("[year]-[month]-[day]"),
        )
        .is_err()
    {
        return Err(ServiceError::invalid("deadline", "must be YYYY-MM-DD"));
    }
    let decided_at = state.clock.now();
    Ok(state
        .store
        .decide(StoredDecision {
            request,
            reviewer_user_id: principal.user_id.clone(),
            decided_at,
        })
        .await?)
}

/// Households of the caller's township not yet visited in person this month (Beijing time).
pub async fn unvisited_this_month(
    state: &AppState,
    principal: &Principal,
) -> Result<Vec<UnvisitedHousehold>, ServiceError> {
    let township = reviewer_township(principal)?;
    let month = fieldsync_model::time_util::business_month(state.clock.now());
    Ok(state.store.unvisited_households(township, &month).await?)
}

/// Unresolved conflict records of the caller's township, oldest first.
pub async fn open_conflicts(
    state: &AppState,
    principal: &Principal,
) -> Result<Vec<ConflictRecord>, ServiceError> {
    let township = reviewer_township(principal)?;
    Ok(state.store.open_conflicts(township).await?)
}

/// Which value a reviewer chose for a conflict.
#[derive(Debug, Clone, PartialEq)]
pub enum ConflictChoice {
    /// The write with the smaller stamp.
    First,
    /// The write with the greater stamp.
    Second,
    /// A value the reviewer typed (already converted to the register's JSON).
    Custom(Value),
}

/// Resolve one open conflict of the caller's township. The choice becomes an ordinary
/// register write by the console, stamped with the server HLC (past every stored write),
/// so it wins, closes every open conflict of the register, and syncs down to the phones.
pub async fn resolve_conflict(
    state: &AppState,
    principal: &Principal,
    conflict_key: &str,
    choice: ConflictChoice,
) -> Result<Stamp, ServiceError> {
    let township = reviewer_township(principal)?.to_owned();
    let not_found = || ServiceError::NotFound(format!("conflict {conflict_key} not found"));
    let value = match choice {
        ConflictChoice::Custom(value) => value,
        picked => {
            let conflict = state
                .store
                .open_conflicts(&township)
                .await?
                .into_iter()
                .find(|conflict| conflict.conflict_key == conflict_key)
                .ok_or_else(not_found)?;
            if picked == ConflictChoice::First {
                conflict.first.value
            } else {
                conflict.second.value
            }
        }
    };
    let stamp = state
        .store
        .resolve_conflict(ConflictResolution {
            conflict_key: conflict_key.to_owned(),
            township_id: township,
            value,
            reviewer_user_id: principal.user_id.clone(),
            stamp: Stamp {
                hlc: state.tick_hlc(),
                device_id: CONSOLE_WRITER_DEVICE.to_owned(),
            },
            resolved_at: state.clock.now(),
        })
        .await?;
    // The store may have moved the stamp past a write the server HLC had not seen (after a
    // restart); keep the server clock ahead of it.
    state.observe_hlc(stamp.hlc);
    Ok(stamp)
}

/// Devices of the caller's township's cadres, oldest unsent data first.
pub async fn device_backlog(
    state: &AppState,
    principal: &Principal,
) -> Result<Vec<DeviceBacklog>, ServiceError> {
    let township = reviewer_township(principal)?;
    Ok(state.store.device_backlog(township).await?)
}
