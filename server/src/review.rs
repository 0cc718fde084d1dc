//! Review (审核) use cases shared by the gRPC `Review` service and the console: the
//! township's queue, one visit's evidence, and approve/return. Access is checked here, once,
//! so both boundaries enforce the same rules.

use fieldsync_model::codes::{ReviewState, Role};
use fieldsync_model::review::{Decision, DecisionRequest};

use crate::AppState;
use crate::error::ServiceError;
use crate::store::{
    Principal, QueueFilter, QueueItem, StoredDecision, UnvisitedHousehold, VisitDetail,
};

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
    detail(state, principal, &request.visit_id).await?;
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
