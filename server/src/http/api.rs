//! The console's JSON twin, for automation (end-to-end tests, scripts, later the county
//! console). Same cookie session and the same review use cases as the HTML pages; errors
//! are `{"error": "..."}` with the status from [`super::status_for`].
//!
//! - `GET /console/api/queue[?village=ID]` → `[QueueItemJson]`
//! - `GET /console/api/visits/{visit_id}` → `VisitJson`
//! - `POST /console/api/visits/{visit_id}/decision` with `DecisionInput` →
//!   `{"state": "approved"|"returned", "visit_id", "revision"}`

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use fieldsync_model::codes::{CodeList, VisitMode};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::forms::DecisionInput;
use super::pages::village_filter;
use super::{ApiError, ApiReviewer, ConsoleState};
use crate::error::ServiceError;
use crate::review;
use crate::store::{QueueFilter, QueueItem};

/// Query of the JSON queue.
#[derive(Debug, Default, Deserialize)]
pub struct QueueQuery {
    #[serde(default)]
    village: Option<String>,
}

/// One queue row.
#[derive(Debug, Serialize)]
pub struct QueueItemJson {
    pub visit_id: String,
    pub revision: u32,
    pub household_id: String,
    pub head_name: String,
    pub village_id: String,
    pub village_name: String,
    pub cadre_name: String,
    /// `in_person`, `phone`, …
    pub mode: VisitMode,
    /// 入户, 电话, …
    pub mode_label: &'static str,
    #[serde(with = "time::serde::rfc3339")]
    pub submitted_at: OffsetDateTime,
    pub distance_m: Option<f64>,
    pub photo_count: u32,
}

impl From<QueueItem> for QueueItemJson {
    fn from(item: QueueItem) -> Self {
        Self {
            visit_id: item.visit_id,
            revision: item.revision,
            household_id: item.household_id,
            head_name: item.head_name,
            village_id: item.village_id,
            village_name: item.village_name,
            cadre_name: item.cadre_name,
            mode: item.mode,
            mode_label: item.mode.label_zh(),
            submitted_at: item.submitted_at,
            distance_m: item.distance_m,
            photo_count: item.photo_count,
        }
    }
}

/// `GET /console/api/queue[?village=ID]`: the township's submitted visits, oldest first.
pub async fn queue(
    State(state): State<ConsoleState>,
    ApiReviewer(principal): ApiReviewer,
    Query(query): Query<QueueQuery>,
) -> Result<Json<Vec<QueueItemJson>>, ApiError> {
    let filter = QueueFilter {
        village_id: village_filter(query.village.as_deref()),
        limit: review::MAX_QUEUE_PAGE,
        offset: 0,
    };
    let items = review::queue(&state.app, &principal, filter).await?;
    Ok(Json(items.into_iter().map(QueueItemJson::from).collect()))
}

/// What a client needs to decide on a visit: the exact revision and content hash to quote.
#[derive(Debug, Serialize)]
pub struct VisitJson {
    pub visit_id: String,
    pub revision: u32,
    pub household_id: String,
    pub head_name: String,
    pub content_hash: String,
    /// `submitted`, `approved`, `returned` or `superseded`.
    pub state: &'static str,
    #[serde(with = "time::serde::rfc3339")]
    pub submitted_at: OffsetDateTime,
    pub distance_m: Option<f64>,
    pub photo_ids: Vec<String>,
    pub photo_ids_received: Vec<String>,
}

/// `GET /console/api/visits/{visit_id}`.
pub async fn visit(
    State(state): State<ConsoleState>,
    ApiReviewer(principal): ApiReviewer,
    Path(visit_id): Path<String>,
) -> Result<Json<VisitJson>, ApiError> {
    let detail = review::detail(&state.app, &principal, &visit_id).await?;
    Ok(Json(VisitJson {
        visit_id: detail.visit.visit_id,
        revision: detail.visit.revision,
        household_id: detail.household.household_id,
        head_name: detail.household.head_name,
        content_hash: detail.content_hash,
        state: detail.state.as_str(),
        submitted_at: detail.submitted_at,
        distance_m: detail.distance_m,
        photo_ids: detail.visit.photo_ids,
        photo_ids_received: detail.photo_ids_received,
    }))
}

/// Answer to a decision.
#[derive(Debug, Serialize)]
pub struct DecisionJson {
    /// `approved` or `returned`.
    pub state: &'static str,
    pub visit_id: String,
    pub revision: u32,
}

/// `POST /console/api/visits/{visit_id}/decision` with
/// `{decision, revision, content_hash, reasons: [{code, field}], note, deadline}`.
pub async fn decision(
    State(state): State<ConsoleState>,
    ApiReviewer(principal): ApiReviewer,
    Path(visit_id): Path<String>,
    body: Result<Json<DecisionInput>, JsonRejection>,
) -> Result<Json<DecisionJson>, ApiError> {
    // A malformed body is the caller's mistake: 400 with serde's explanation, in the same
    // `{error}` shape as every other failure instead of axum's plain-text rejection.
    let Json(input) =
        body.map_err(|rejection| ServiceError::invalid("body", rejection.body_text()))?;
    let request = input.into_request(&visit_id)?;
    let revision = request.revision;
    let new_state = review::decide(&state.app, &principal, request).await?;
    Ok(Json(DecisionJson {
        state: new_state.as_str(),
        visit_id,
        revision,
    }))
}
