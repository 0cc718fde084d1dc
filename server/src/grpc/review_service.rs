//! `fieldsync.v1.Review`: the township's queue, one visit's evidence, approve/return.

use fieldsync_model::CodeList;
use fieldsync_model::review::{Decision, DecisionRequest, ReturnReason};
use fieldsync_proto::convert::instant_to_wire;
use fieldsync_proto::v1;
use tonic::{Request, Response, Status};

use super::principal_of;
use crate::AppState;
use crate::store::QueueFilter;

/// Default page size of the queue when the caller does not say.
const DEFAULT_QUEUE_PAGE: u32 = 50;

#[derive(Debug)]
pub struct ReviewService {
    state: AppState,
}

impl ReviewService {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

#[tonic::async_trait]
impl v1::review_server::Review for ReviewService {
    async fn list_queue(
        &self,
        request: Request<v1::ListQueueRequest>,
    ) -> Result<Response<v1::ListQueueResponse>, Status> {
        let principal = principal_of(&self.state, &request).await?;
        let request = request.into_inner();
        let offset = if request.page_token.is_empty() {
            0
        } else {
            request.page_token.parse::<u32>().map_err(|_| {
                Status::invalid_argument("page_token: not a token this server issued")
            })?
        };
        let limit = if request.page_size == 0 {
            DEFAULT_QUEUE_PAGE
        } else {
            request.page_size
        };
        let filter = QueueFilter {
            village_id: Some(request.village_id).filter(|village| !village.is_empty()),
            limit,
            offset,
            ..QueueFilter::default()
        };
        let items = crate::review::queue(&self.state, &principal, filter).await?;
        let next_page_token = if items.len() as u32 >= limit.min(crate::review::MAX_QUEUE_PAGE) {
            offset.saturating_add(items.len() as u32).to_string()
        } else {
            String::new()
        };
        Ok(Response::new(v1::ListQueueResponse {
            items: items
                .into_iter()
                .map(|item| v1::QueueItem {
                    visit_id: item.visit_id,
                    revision: item.revision,
                    household_id: item.household_id,
                    head_name: item.head_name,
                    village_name: item.village_name,
                    cadre_name: item.cadre_name,
                    mode: item.mode.code(),
                    submitted_at: Some(instant_to_wire(item.submitted_at)),
                    distance_m: item.distance_m,
                    photo_count: item.photo_count,
                    flag_codes: item
                        .flags
                        .iter()
                        .map(|flag| flag.code().to_owned())
                        .collect(),
                })
                .collect(),
            next_page_token,
        }))
    }

    async fn get_visit(
        &self,
        request: Request<v1::GetVisitRequest>,
    ) -> Result<Response<v1::GetVisitResponse>, Status> {
        let principal = principal_of(&self.state, &request).await?;
        let detail = crate::review::detail_for_review_app(
            &self.state,
            &principal,
            &request.get_ref().visit_id,
        )
        .await?;
        let flag_names = crate::review::flag_names(&self.state, &principal, &detail).await?;
        Ok(Response::new(v1::GetVisitResponse {
            visit: Some((&detail.visit).into()),
            household: Some((&detail.household).into()),
            cadre_name: detail.cadre_name,
            state: detail.state.code(),
            content_hash: detail.content_hash,
            distance_m: detail.distance_m,
            photos: detail.photos.iter().map(Into::into).collect(),
            photo_ids_received: detail.photo_ids_received,
            flags: detail
                .flags
                .unwrap_or_default()
                .iter()
                .map(|flag| v1::EvidenceFlag {
                    code: flag.code().to_owned(),
                    label: flag.label_zh().to_owned(),
                    detail: flag.detail_named(&flag_names),
                })
                .collect(),
        }))
    }

    async fn decide(
        &self,
        request: Request<v1::DecideRequest>,
    ) -> Result<Response<v1::DecideResponse>, Status> {
        let principal = principal_of(&self.state, &request).await?;
        let request = request.into_inner();
        let decision = match v1::Decision::try_from(request.decision) {
            Ok(v1::Decision::Approve) => Decision::Approve,
            Ok(v1::Decision::Return) => Decision::Return,
            _ => {
                return Err(Status::invalid_argument(
                    "decision: must be APPROVE or RETURN",
                ));
            }
        };
        let decision_request = DecisionRequest {
            visit_id: request.visit_id,
            revision: request.revision,
            content_hash: request.content_hash,
            decision,
            reasons: request.reasons.iter().map(ReturnReason::from).collect(),
            note: request.note,
            deadline: request.deadline,
        };
        let state = crate::review::decide(&self.state, &principal, decision_request).await?;
        Ok(Response::new(v1::DecideResponse {
            state: state.code(),
        }))
    }
}
