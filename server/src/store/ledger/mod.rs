//! The monthly ledger (月台账) area of the store: 入户率 facts of one area and month, month
//! close (月结) with its frozen snapshot, closures, cadres' last sync, the review queue's
//! flag counts, and the households not yet visited in a month. SQLite in `sqlite.rs`, the
//! checks every backend passes in `conformance.rs`.

#[cfg(any(test, feature = "test-support"))]
pub mod conformance;
pub(crate) mod sqlite;

use std::collections::{BTreeMap, HashMap, HashSet};

use async_trait::async_trait;
use fieldsync_model::codes::{ReviewState, VisitMode};
use fieldsync_model::evidence::EvidenceFlag;
use fieldsync_model::ledger::{BusinessMonth, LockedOutcome, SlotVisit, derive_slot};
use time::OffsetDateTime;

use crate::store::{StoreError, StoreResult};

/// A household without an approved or submitted in-person visit this month.
#[derive(Debug, Clone, PartialEq)]
pub struct UnvisitedHousehold {
    pub household_id: String,
    pub head_name: String,
    pub village_id: String,
    pub village_name: String,
    pub cadre_names: Vec<String>,
}

/// Which area a monthly-ledger (月台账) read covers: one township, or every township of a
/// county. Comes from the caller's principal, never from the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerArea {
    Township(String),
    County(String),
}

/// One household of a ledger read, with its first responsible cadre (第一帮扶责任人).
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerHousehold {
    pub household_id: String,
    pub head_name: String,
    pub township_id: String,
    pub village_id: String,
    pub village_name: String,
    pub primary_cadre_user_id: Option<String>,
    pub primary_cadre_name: Option<String>,
}

/// One open (not superseded) revision of a visit of the month: what the ledger state
/// machine needs, plus the names the lists show.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerVisit {
    pub visit_id: String,
    pub revision: u32,
    pub household_id: String,
    pub author_user_id: String,
    pub author_name: String,
    pub mode: VisitMode,
    pub state: ReviewState,
    pub checkin_at: OffsetDateTime,
    /// When the server received this revision.
    pub submitted_at: OffsetDateTime,
}

/// A township's month close (月结).
#[derive(Debug, Clone, PartialEq)]
pub struct MonthClosure {
    pub township_id: String,
    pub township_name: String,
    /// YYYY-MM.
    pub month: String,
    pub closed_by_user_id: String,
    pub closed_by_name: String,
    pub closed_at: OffsetDateTime,
    /// Slots frozen by the close.
    pub household_count: u32,
}

/// One slot as month close froze it: the household as it was then (names, village,
/// primary cadre) and the snapshot, so the locked figures never change.
#[derive(Debug, Clone, PartialEq)]
pub struct LockedLedgerRow {
    pub month: String,
    pub household: LedgerHousehold,
    pub snapshot: fieldsync_model::ledger::LockedSnapshot,
}

/// Everything the ledger needs for one area and month, read in one snapshot
/// ([`Store::ledger_facts`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LedgerFacts {
    /// The area's households now, by village, head name.
    pub households: Vec<LedgerHousehold>,
    /// Open revisions of the month's visits (business month of check-in) in the area.
    pub visits: Vec<LedgerVisit>,
    /// Closures of this month among the area's townships.
    pub closures: Vec<MonthClosure>,
    /// Frozen slots of the closed townships.
    pub locked: Vec<LockedLedgerRow>,
}

/// A cadre of the area with the latest time any of their devices pushed or reported a
/// heartbeat (`None` when never).
#[derive(Debug, Clone, PartialEq)]
pub struct CadreLastSync {
    pub user_id: String,
    pub display_name: String,
    pub township_id: String,
    pub last_sync_at: Option<OffsetDateTime>,
}

/// How many visits waiting for review carry one evidence flag.
#[derive(Debug, Clone, PartialEq)]
pub struct FlagCount {
    pub code: String,
    pub label_zh: String,
    pub visits: u32,
}

/// Storage of the monthly ledger. Every method is a complete unit of work.
#[async_trait]
pub trait LedgerStore: Send + Sync {
    /// Households of the township without an in-person visit (submitted or approved) in the
    /// given month (YYYY-MM, Beijing time), grouped by village order.
    async fn unvisited_households(
        &self,
        township_id: &str,
        month: &str,
    ) -> StoreResult<Vec<UnvisitedHousehold>>;
    /// The monthly ledger's facts for one area and month (YYYY-MM): households with their
    /// primary cadre, open visit revisions of the month, and the month's closures with their
    /// frozen slots. One read snapshot, a few indexed queries (no per-household query).
    async fn ledger_facts(&self, area: &LedgerArea, month: &str) -> StoreResult<LedgerFacts>;
    /// Close a township's month (月结): freeze every household's slot as
    /// [`fieldsync_model::ledger::derive_slot`] computes it at `closed_at`. `InvalidValue`
    /// (field `month`) for a malformed month or one that has not ended at `closed_at`,
    /// `NotFound` for an unknown township, `Conflict` when the month is already closed.
    async fn close_month(
        &self,
        township_id: &str,
        month: &str,
        closed_by_user_id: &str,
        closed_at: OffsetDateTime,
    ) -> StoreResult<MonthClosure>;
    /// Closures of the area's townships, newest month first.
    async fn month_closures(&self, area: &LedgerArea) -> StoreResult<Vec<MonthClosure>>;
    /// Every cadre of the area with their latest push or heartbeat, by name.
    async fn cadre_last_syncs(&self, area: &LedgerArea) -> StoreResult<Vec<CadreLastSync>>;
    /// Per evidence flag code, how many visits of the area wait for review (latest revision
    /// SUBMITTED) with that flag, by code.
    async fn queue_flag_counts(&self, area: &LedgerArea) -> StoreResult<Vec<FlagCount>>;
}

/// One household's frozen row of a month close (月结): its outcome and in-person flags.
pub(crate) struct ClosedSlot<'a> {
    pub household: &'a LedgerHousehold,
    /// `approved` or `overdue`, as `ledger_snapshots.outcome` stores it.
    pub outcome: &'static str,
    pub visited_in_person: bool,
    pub approved_in_person: bool,
}

/// The frozen rows of a township month closed at `closed_at`: each household's slot derived
/// from its visits of the month (pure; each backend writes the rows in its own SQL).
pub(crate) fn closed_slots(
    business_month: BusinessMonth,
    households: &[LedgerHousehold],
    visits: Vec<LedgerVisit>,
    closed_at: OffsetDateTime,
) -> StoreResult<Vec<ClosedSlot<'_>>> {
    let mut visits_by_household: HashMap<String, Vec<SlotVisit>> = HashMap::new();
    for visit in visits {
        visits_by_household
            .entry(visit.household_id.clone())
            .or_default()
            .push(SlotVisit {
                visit_id: visit.visit_id,
                mode: visit.mode,
                review: visit.state,
                checkin_at: visit.checkin_at,
                received_at: visit.submitted_at,
            });
    }
    let no_visits = Vec::new();
    households
        .iter()
        .map(|household| {
            let visits = visits_by_household
                .get(&household.household_id)
                .unwrap_or(&no_visits);
            let snapshot = derive_slot(business_month, visits, None, closed_at)
                .snapshot_for_close(business_month)
                .map_err(|error| StoreError::InvalidValue {
                    field: "month".into(),
                    message: error.to_string(),
                })?;
            Ok(ClosedSlot {
                household,
                outcome: match snapshot.outcome {
                    LockedOutcome::Approved => "approved",
                    LockedOutcome::Overdue => "overdue",
                },
                visited_in_person: snapshot.visited_in_person,
                approved_in_person: snapshot.approved_in_person,
            })
        })
        .collect()
}

/// The queue's flag counts from each waiting visit's flags: per flag, how many visits carry
/// it, in code order (pure; each backend reads and decodes the rows).
pub(crate) fn flag_counts(
    visits: impl IntoIterator<Item = (String, Vec<EvidenceFlag>)>,
) -> Vec<FlagCount> {
    let mut counts: BTreeMap<&'static str, (&'static str, HashSet<String>)> = BTreeMap::new();
    for (visit_id, flags) in visits {
        for flag in flags {
            counts
                .entry(flag.code())
                .or_insert_with(|| (flag.label_zh(), HashSet::new()))
                .1
                .insert(visit_id.clone());
        }
    }
    counts
        .into_iter()
        .map(|(code, (label_zh, visits))| FlagCount {
            code: code.to_owned(),
            label_zh: label_zh.to_owned(),
            visits: u32::try_from(visits.len()).unwrap_or(u32::MAX),
        })
        .collect()
}
