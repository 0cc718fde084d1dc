//! The console's JSON twin, for automation (end-to-end tests, scripts, later the county
//! console). Same cookie session and the same review use cases as the HTML pages; errors
//! are `{"error": "..."}` with the status from [`super::status_for`].
//!
//! - `GET /console/api/queue[?village=ID][&cadre=USER_ID][&flag=CODE][&age=DAYS]` →
//!   `[QueueItemJson]`
//! - `GET /console/api/visits/{visit_id}` → `VisitJson` (with `correction`: the diff against
//!   the returned revision it supersedes)
//! - `POST /console/api/visits/{visit_id}/decision` with `DecisionInput` →
//!   `{"state": "approved"|"returned", "visit_id", "revision"}`
//! - `GET /console/api/conflicts` → `[ConflictJson]`
//! - `POST /console/api/conflicts/resolve` with `{"conflict_key", "value_json"}` (the value
//!   as JSON text, as in `FieldEdit.value_json`) → `{"conflict_key", "hlc", "device_id"}`
//! - `GET /console/api/devices` → `[DeviceJson]`

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use fieldsync_model::codes::{CodeList, VisitMode};
use fieldsync_model::evidence::{EvidenceFlag, FlagNames};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::forms::DecisionInput;
use super::pages::QueueQuery;
use super::{ApiError, ApiReviewer, ConsoleState};
use crate::error::ServiceError;
use crate::review;
use crate::store::QueueItem;

/// One evidence flag (DESIGN §5): stable code, Chinese label and detail sentence.
#[derive(Debug, Serialize)]
pub struct FlagJson {
    pub code: &'static str,
    pub label: &'static str,
    pub detail: String,
}

impl FlagJson {
    /// The flag with its text naming photos and visits as `names` says.
    fn named(flag: &EvidenceFlag, names: &FlagNames) -> Self {
        Self {
            code: flag.code(),
            label: flag.label_zh(),
            detail: flag.detail_named(names),
        }
    }
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
    pub cadre_user_id: String,
    pub cadre_name: String,
    /// `in_person`, `phone`, …
    pub mode: VisitMode,
    /// 入户, 电话, …
    pub mode_label: &'static str,
    #[serde(with = "time::serde::rfc3339")]
    pub submitted_at: OffsetDateTime,
    pub distance_m: Option<f64>,
    pub photo_count: u32,
    /// Codes of the revision's evidence flags.
    pub flag_codes: Vec<&'static str>,
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
            cadre_user_id: item.cadre_user_id,
            cadre_name: item.cadre_name,
            mode: item.mode,
            mode_label: item.mode.label_zh(),
            submitted_at: item.submitted_at,
            distance_m: item.distance_m,
            photo_count: item.photo_count,
            flag_codes: item.flags.iter().map(EvidenceFlag::code).collect(),
        }
    }
}

/// `GET /console/api/queue[?village=ID][&cadre=USER_ID][&flag=CODE][&age=DAYS]`: the
/// township's submitted visits, oldest first, filtered like the HTML queue (a malformed
/// `age` is a 400 naming the field).
pub async fn queue(
    State(state): State<ConsoleState>,
    ApiReviewer(principal): ApiReviewer,
    Query(query): Query<QueueQuery>,
) -> Result<Json<Vec<QueueItemJson>>, ApiError> {
    let filters = query.filters()?;
    let items = review::filtered_queue(&state.app, &principal, &filters).await?;
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
    /// False until the evidence checks have run for this revision.
    pub flags_computed: bool,
    /// Evidence flags of this revision; they never block a decision.
    pub flags: Vec<FlagJson>,
    /// The returned revision this one supersedes, when it is a correction.
    pub supersedes_revision: u32,
    /// What the correction changed, with the return's reasons; `null` for a first submission.
    pub correction: Option<CorrectionJson>,
}

/// A correction against the revision it supersedes.
#[derive(Debug, Serialize)]
pub struct CorrectionJson {
    pub returned_revision: u32,
    /// State of the superseded revision (`superseded` after a return was corrected).
    pub returned_state: &'static str,
    /// The decision on the returned revision: reasons with the fields they point at.
    pub reasons: Vec<ReasonJson>,
    pub note: String,
    pub deadline: String,
    pub changes: Vec<ChangeJson>,
    pub photos_added: Vec<String>,
    pub photos_removed: Vec<String>,
}

/// One return reason with its Chinese label and the field it points at.
#[derive(Debug, Serialize)]
pub struct ReasonJson {
    pub code: String,
    pub label: String,
    pub field: String,
    pub field_label: String,
}

/// One changed field: old → new as text.
#[derive(Debug, Serialize)]
pub struct ChangeJson {
    pub field: &'static str,
    pub label: String,
    pub old: String,
    pub new: String,
}

impl From<review::Correction> for CorrectionJson {
    fn from(correction: review::Correction) -> Self {
        let status = correction.returned.status;
        Self {
            returned_revision: correction.returned.visit.revision,
            returned_state: correction.returned.state.as_str(),
            reasons: status
                .reasons
                .into_iter()
                .map(|reason| ReasonJson {
                    label: fieldsync_model::review::return_reason_label(&reason.code).to_owned(),
                    field_label: fieldsync_model::visit_diff::visit_field_label(&reason.field)
                        .to_owned(),
                    code: reason.code,
                    field: reason.field,
                })
                .collect(),
            note: status.note,
            deadline: status.deadline,
            changes: correction
                .diff
                .changes
                .into_iter()
                .map(|change| ChangeJson {
                    field: change.field,
                    label: change.label_zh,
                    old: change.old,
                    new: change.new,
                })
                .collect(),
            photos_added: correction.diff.photos_added,
            photos_removed: correction.diff.photos_removed,
        }
    }
}

/// `GET /console/api/visits/{visit_id}`.
pub async fn visit(
    State(state): State<ConsoleState>,
    ApiReviewer(principal): ApiReviewer,
    Path(visit_id): Path<String>,
) -> Result<Json<VisitJson>, ApiError> {
    let detail = review::detail(&state.app, &principal, &visit_id).await?;
    let flag_names = review::flag_names(&state.app, &principal, &detail).await?;
    let correction = review::correction(&state.app, &detail)
        .await?
        .map(CorrectionJson::from);
    Ok(Json(VisitJson {
        supersedes_revision: detail.visit.supersedes_revision,
        correction,
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
        flags_computed: detail.flags.is_some(),
        flags: detail
            .flags
            .iter()
            .flatten()
            .map(|flag| FlagJson::named(flag, &flag_names))
            .collect(),
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

/// One write of a conflict.
#[derive(Debug, Serialize)]
pub struct ConflictWriteJson {
    pub value: serde_json::Value,
    /// The value in words (codes as Chinese labels).
    pub value_label: String,
    pub hlc: u64,
    pub device_id: String,
    /// The model the device gave at its latest login, or empty.
    pub device_name: String,
    /// How the console page names the device: model and the last four of its id.
    pub device_label: String,
    pub author_user_id: String,
    pub author_name: String,
}

/// One open conflict record.
#[derive(Debug, Serialize)]
pub struct ConflictJson {
    pub conflict_key: String,
    pub household_id: String,
    pub head_name: String,
    pub village_name: String,
    /// `household` or `member:<id>`.
    pub target: String,
    pub member_name: Option<String>,
    pub field: String,
    pub field_label: String,
    pub first: ConflictWriteJson,
    pub second: ConflictWriteJson,
    /// The register's value now.
    pub current_value: Option<serde_json::Value>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

fn write_json(
    field: &str,
    write: fieldsync_model::register::RegisterWrite,
    (author_name, device_name): (String, String),
) -> ConflictWriteJson {
    ConflictWriteJson {
        value_label: super::fields::value_zh(field, &write.value),
        value: write.value,
        hlc: write.stamp.hlc.as_u64(),
        device_label: super::display::device_label(&write.stamp.device_id, &device_name),
        device_name,
        device_id: write.stamp.device_id,
        author_user_id: write.author_user_id,
        author_name,
    }
}

/// `GET /console/api/conflicts`: the township's open conflict records, oldest first.
pub async fn conflicts(
    State(state): State<ConsoleState>,
    ApiReviewer(principal): ApiReviewer,
) -> Result<Json<Vec<ConflictJson>>, ApiError> {
    let conflicts = review::open_conflicts(&state.app, &principal).await?;
    Ok(Json(
        conflicts
            .into_iter()
            .map(|conflict| ConflictJson {
                field_label: super::fields::field_label_zh(&conflict.field).to_owned(),
                first: write_json(
                    &conflict.field,
                    conflict.first,
                    (conflict.first_author_name, conflict.first_device_name),
                ),
                second: write_json(
                    &conflict.field,
                    conflict.second,
                    (conflict.second_author_name, conflict.second_device_name),
                ),
                current_value: conflict.current.map(|write| write.value),
                target: conflict.target.as_key(),
                conflict_key: conflict.conflict_key,
                household_id: conflict.household_id,
                head_name: conflict.head_name,
                village_name: conflict.village_name,
                member_name: conflict.member_name,
                field: conflict.field,
                created_at: conflict.created_at,
            })
            .collect(),
    ))
}

/// Body of `POST /console/api/conflicts/resolve`.
#[derive(Debug, Deserialize)]
pub struct ResolveInput {
    pub conflict_key: String,
    /// The chosen value as JSON text.
    pub value_json: String,
}

/// `POST /console/api/conflicts/resolve`.
pub async fn resolve_conflict(
    State(state): State<ConsoleState>,
    ApiReviewer(principal): ApiReviewer,
    input: Result<Json<ResolveInput>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Json(input) =
        input.map_err(|rejection| ServiceError::invalid("body", rejection.body_text()))?;
    let value: serde_json::Value = serde_json::from_str(&input.value_json)
        .map_err(|error| ServiceError::invalid("value_json", format!("is not JSON: {error}")))?;
    let stamp = review::resolve_conflict(
        &state.app,
        &principal,
        &input.conflict_key,
        review::ConflictChoice::Custom(value),
    )
    .await?;
    Ok(Json(serde_json::json!({
        "conflict_key": input.conflict_key,
        "hlc": stamp.hlc.as_u64(),
        "device_id": stamp.device_id,
    })))
}

/// One device's latest heartbeat.
#[derive(Debug, Serialize)]
pub struct DeviceJson {
    pub device_id: String,
    pub device_name: String,
    pub user_id: String,
    pub cadre_name: String,
    pub unsent_mutations: u64,
    pub pending_uploads: u64,
    #[serde(with = "time::serde::rfc3339::option")]
    pub oldest_unsent_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub device_time: Option<OffsetDateTime>,
    /// device_time − server time at the heartbeat, in seconds.
    pub clock_skew_seconds: Option<i64>,
    pub last_error: String,
    pub app_version: String,
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen_at: OffsetDateTime,
}

/// `GET /console/api/devices`: the township's cadres' devices, oldest unsent data first.
pub async fn devices(
    State(state): State<ConsoleState>,
    ApiReviewer(principal): ApiReviewer,
) -> Result<Json<Vec<DeviceJson>>, ApiError> {
    let devices = review::device_backlog(&state.app, &principal).await?;
    Ok(Json(
        devices
            .into_iter()
            .map(|device| {
                let heartbeat = device.heartbeat;
                DeviceJson {
                    clock_skew_seconds: heartbeat
                        .device_time
                        .map(|time| (time - device.last_seen_at).whole_seconds()),
                    device_id: device.device_id,
                    device_name: device.device_name,
                    user_id: device.user_id,
                    cadre_name: device.cadre_name,
                    unsent_mutations: heartbeat.unsent_mutations,
                    pending_uploads: heartbeat.pending_uploads,
                    oldest_unsent_at: heartbeat.oldest_unsent_at,
                    device_time: heartbeat.device_time,
                    last_error: heartbeat.last_error,
                    app_version: heartbeat.app_version,
                    last_seen_at: device.last_seen_at,
                }
            })
            .collect(),
    ))
}
