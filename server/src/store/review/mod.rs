//! The review area of the store (审核): the township's queue of submitted revisions with
//! its filters and facet counts, one visit's detail and stored revisions, a household's
//! earlier photos, and the supervisor's decision. SQLite in `sqlite.rs`, the checks every
//! backend passes in `conformance.rs`, the filter bar's counting both backends share in
//! `facets.rs`.

#[cfg(any(test, feature = "test-support"))]
pub mod conformance;
pub(in crate::store) mod facets;
pub(crate) mod sqlite;

use async_trait::async_trait;
use fieldsync_model::codes::{ReviewState, VisitMode};
use fieldsync_model::evidence::EvidenceFlag;
use fieldsync_model::household::Household;
use fieldsync_model::review::{DecisionRequest, VisitStatus};
use fieldsync_model::visit::{PhotoRecord, Visit};
use time::OffsetDateTime;

use crate::store::StoreResult;

/// One row of the review queue.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueItem {
    pub visit_id: String,
    pub revision: u32,
    pub household_id: String,
    pub head_name: String,
    pub village_id: String,
    pub village_name: String,
    /// Author of the latest revision (the cadre the queue's cadre filter matches).
    pub cadre_user_id: String,
    pub cadre_name: String,
    pub mode: VisitMode,
    pub submitted_at: OffsetDateTime,
    pub distance_m: Option<f64>,
    pub photo_count: u32,
    /// The revision's evidence flags in their order; empty when none were raised or they
    /// were not computed yet.
    pub flags: Vec<EvidenceFlag>,
}

/// Filters of the review queue; the township always comes from the caller's principal.
#[derive(Debug, Clone, Default)]
pub struct QueueFilter {
    pub village_id: Option<String>,
    pub limit: u32,
    /// Skip this many items (page token).
    pub offset: u32,
    /// Only visits whose latest revision carries this evidence flag code.
    pub flag: Option<String>,
    /// Only visits whose latest revision was written by this cadre (user id).
    pub cadre_user_id: Option<String>,
    /// Only visits submitted at or before this instant: waiting at least N days when it is
    /// "now − N days" (the caller computes it from the injected clock).
    pub submitted_at_or_before: Option<OffsetDateTime>,
    /// Keyset paging: only items after this position in queue order (the next item after
    /// the one on screen, whether or not that one is still waiting).
    pub after: Option<QueuePosition>,
}

/// A place in the review queue's order `(submitted_at, visit_id)`.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuePosition {
    pub submitted_at: OffsetDateTime,
    pub visit_id: String,
}

/// How many queue items one filter value would show.
#[derive(Debug, Clone, PartialEq)]
pub struct FacetCount {
    /// The filter value: village id, cadre user id or flag code.
    pub key: String,
    /// What to call it: village name, cadre name or the flag's Chinese label.
    pub label: String,
    pub count: u64,
}

/// Counts behind the queue's filter bar. Each dimension is counted with the *other* filters
/// applied, so the count beside a value is what choosing it would show.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueFacets {
    /// Items matching every filter.
    pub total: u64,
    /// Per village, in village name order (villages with nothing waiting are left out).
    pub by_village: Vec<FacetCount>,
    /// Per cadre (author of the latest revision), in name order.
    pub by_cadre: Vec<FacetCount>,
    /// Per evidence flag code, in code order.
    pub by_flag: Vec<FacetCount>,
    /// Per requested age cutoff (same order as asked): items submitted at or before it.
    pub by_age: Vec<u64>,
}

/// One stored revision of a visit with its review outcome (for the correction diff).
#[derive(Debug, Clone, PartialEq)]
pub struct VisitRevision {
    pub visit: Visit,
    pub state: ReviewState,
    pub content_hash: String,
    pub submitted_at: OffsetDateTime,
    /// The decision on this revision (reasons, note, deadline), when one was made.
    pub status: VisitStatus,
}

/// A received photo of another visit of the same household (the submission page's
/// "previous months" strip).
#[derive(Debug, Clone, PartialEq)]
pub struct HouseholdPhoto {
    pub photo: PhotoRecord,
    pub visit_id: String,
    /// The business month (YYYY-MM, Beijing time) of that visit.
    pub business_month: String,
    /// Review state of that visit's latest revision.
    pub state: ReviewState,
    pub checkin_at: OffsetDateTime,
}

/// A visit with what a reviewer needs to judge it.
#[derive(Debug, Clone, PartialEq)]
pub struct VisitDetail {
    /// The latest revision.
    pub visit: Visit,
    pub household: Household,
    pub cadre_user_id: String,
    pub cadre_name: String,
    pub state: ReviewState,
    pub content_hash: String,
    pub submitted_at: OffsetDateTime,
    pub distance_m: Option<f64>,
    pub photos: Vec<PhotoRecord>,
    /// Photo ids whose bytes have been uploaded completely.
    pub photo_ids_received: Vec<String>,
    /// The decision on this revision, when one was made.
    pub status: VisitStatus,
    /// Evidence flags of this revision (DESIGN §5), as last computed; `None` before the
    /// first computation. They inform the reviewer and never block a decision.
    pub flags: Option<Vec<EvidenceFlag>>,
}

/// A decision as stored, with who made it.
#[derive(Debug, Clone)]
pub struct StoredDecision {
    pub request: DecisionRequest,
    pub reviewer_user_id: String,
    pub decided_at: OffsetDateTime,
}

/// Queue sizes for monitoring (issue 12 §4).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OperationalCounts {
    /// Visit revisions waiting for a decision (待审核), county-wide.
    pub review_queue: u64,
    /// Photo uploads started and not complete.
    pub incomplete_uploads: u64,
}

/// Storage of the review loop. Every method is a complete unit of work.
#[async_trait]
pub trait ReviewStore: Send + Sync {
    /// The township's latest revisions in state SUBMITTED, oldest first.
    async fn review_queue(
        &self,
        township_id: &str,
        filter: QueueFilter,
    ) -> StoreResult<Vec<QueueItem>>;
    async fn visit_detail(&self, visit_id: &str) -> StoreResult<Option<VisitDetail>>;
    /// Counts behind the queue's filter bar for `filter` (its `limit`, `offset` and `after`
    /// are ignored); `age_cutoffs` are instants, each counted as "submitted at or before".
    async fn review_queue_facets(
        &self,
        township_id: &str,
        filter: QueueFilter,
        age_cutoffs: Vec<OffsetDateTime>,
    ) -> StoreResult<QueueFacets>;
    /// One stored revision of a visit with its decision, or `None` when it does not exist.
    async fn visit_revision(
        &self,
        visit_id: &str,
        revision: u32,
    ) -> StoreResult<Option<VisitRevision>>;
    /// Received photos listed by the latest revision of the household's other visits in the
    /// given business months (YYYY-MM), newest month first, then newest visit, then photo
    /// order; at most `limit` photos.
    async fn household_photo_history(
        &self,
        household_id: &str,
        exclude_visit_id: &str,
        months: Vec<String>,
        limit: u32,
    ) -> StoreResult<Vec<HouseholdPhoto>>;
    /// Record a decision on the latest revision. Fails with `StaleDecision` when the revision
    /// or content hash is not the latest, or the revision was already decided.
    async fn decide(&self, decision: StoredDecision) -> StoreResult<ReviewState>;

    /// Sizes an operator watches on `/metrics` (see [`OperationalCounts`]): the review queue,
    /// with the incomplete uploads read in the same snapshot; cheap enough to read at every
    /// scrape.
    async fn operational_counts(&self) -> StoreResult<OperationalCounts>;
}
