//! Use cases of the monthly ledger (月台账): the ledger of an area and month, 入户率
//! coverage by village and by cadre, the dashboard (工作台) and month close (月结).
//!
//! Scope comes from the principal: a township supervisor sees their township, the county
//! administrator and the auditor see the county. The state machine itself is pure and lives
//! in [`fieldsync_model::ledger`]; this module gathers the facts from the store and applies
//! it. Month close is for township supervisors only and needs the confirm text 月结.

use std::collections::{BTreeMap, HashMap};

use fieldsync_model::codes::{ReviewState, Role, VisitMode};
use fieldsync_model::ledger::{
    BusinessMonth, CoverageCounts, LedgerError, Slot, SlotState, SlotVisit, check_close,
    derive_slot, is_late_after_close,
};
use time::OffsetDateTime;

use crate::AppState;
use crate::error::ServiceError;
use crate::store::{
    CadreLastSync, FlagCount, LedgerArea, LedgerFacts, LedgerHousehold, MonthClosure, Principal,
};

/// The text a supervisor types to confirm a month close.
pub const CLOSE_CONFIRM_TEXT: &str = "月结";

/// Group id of the households without a first responsible cadre in [`Coverage::by_cadre`].
pub const NO_PRIMARY_CADRE: &str = "none";

/// 入户率 counts of one village or one cadre. Rates are computed by callers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CoverageRow {
    pub group_id: String,
    pub group_name: String,
    /// Households due a visit that month (every household of the group; frozen at close).
    pub due: u32,
    /// Households with an in-person visit waiting for review or approved.
    pub visited_in_person: u32,
    /// Households with an approved in-person visit (what 入户率 counts).
    pub approved_in_person: u32,
    /// Households whose month ended without an approved in-person visit.
    pub overdue: u32,
}

/// 入户率 of an area for one month, by village and by first responsible cadre
/// (第一帮扶责任人; households without one are grouped under [`NO_PRIMARY_CADRE`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Coverage {
    /// YYYY-MM.
    pub month: String,
    pub by_village: Vec<CoverageRow>,
    pub by_cadre: Vec<CoverageRow>,
}

/// One visit of a ledger row (an open revision).
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerRowVisit {
    pub visit_id: String,
    pub revision: u32,
    pub mode: VisitMode,
    pub state: ReviewState,
    pub checkin_at: OffsetDateTime,
    pub submitted_at: OffsetDateTime,
    pub author_name: String,
    /// 逾期补报: reached the server after the month was closed; not in the snapshot.
    pub late_after_close: bool,
}

/// One household's slot for the month.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerRow {
    /// The household as it is now, or as it was at close for a closed month.
    pub household: LedgerHousehold,
    pub slot: Slot,
    pub visits: Vec<LedgerRowVisit>,
}

impl LedgerRow {
    pub fn has_late_visit(&self) -> bool {
        self.visits.iter().any(|visit| visit.late_after_close)
    }
}

/// The ledger of an area for one month.
#[derive(Debug, Clone, PartialEq)]
pub struct MonthLedger {
    pub month: BusinessMonth,
    pub rows: Vec<LedgerRow>,
    /// Closures of this month among the area's townships.
    pub closures: Vec<MonthClosure>,
}

/// Which rows a ledger list shows, by slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateFilter {
    /// The live states, as named by [`SlotState::as_str`].
    Due,
    Submitted,
    Returned,
    /// An approved in-person visit (live or frozen at close).
    Approved,
    /// Overdue (live or frozen at close).
    Overdue,
    /// An in-person visit waiting or approved.
    Visited,
    /// Closed by 月结.
    Locked,
    /// Has a visit that arrived after the close (逾期补报).
    Late,
}

impl StateFilter {
    pub const ALL: [StateFilter; 8] = [
        Self::Due,
        Self::Submitted,
        Self::Returned,
        Self::Approved,
        Self::Overdue,
        Self::Visited,
        Self::Locked,
        Self::Late,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Due => "due",
            Self::Submitted => "submitted",
            Self::Returned => "returned",
            Self::Approved => "approved",
            Self::Overdue => "overdue",
            Self::Visited => "visited",
            Self::Locked => "locked",
            Self::Late => "late",
        }
    }

    pub fn label_zh(self) -> &'static str {
        match self {
            Self::Due => "待走访",
            Self::Submitted => "待审核",
            Self::Returned => "已退回",
            Self::Approved => "已入户（审核通过）",
            Self::Overdue => "逾期未走访",
            Self::Visited => "已入户（含待审核）",
            Self::Locked => "已月结",
            Self::Late => "逾期补报",
        }
    }

    /// Parse the URL value; empty means no filter.
    pub fn parse(text: &str) -> Result<Option<Self>, ServiceError> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(None);
        }
        Self::ALL
            .into_iter()
            .find(|filter| filter.as_str() == text)
            .map(Some)
            .ok_or_else(|| {
                ServiceError::invalid(
                    "state",
                    format!(
                        "未知的状态筛选 {text:?} (unknown state; one of {})",
                        Self::ALL.map(Self::as_str).join(", ")
                    ),
                )
            })
    }

    pub fn matches(self, row: &LedgerRow) -> bool {
        let slot = &row.slot;
        match self {
            Self::Due => slot.state == SlotState::Due,
            Self::Submitted => slot.state == SlotState::Submitted,
            Self::Returned => slot.state == SlotState::Returned,
            Self::Approved => slot.approved_in_person,
            Self::Overdue => slot.is_overdue(),
            Self::Visited => slot.visited_in_person,
            Self::Locked => matches!(slot.state, SlotState::Locked(_)),
            Self::Late => row.has_late_visit(),
        }
    }
}

/// Filters of the ledger list; each is optional and they combine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerFilter {
    pub village_id: Option<String>,
    /// A cadre's user id, or [`NO_PRIMARY_CADRE`].
    pub cadre_id: Option<String>,
    pub state: Option<StateFilter>,
}

impl LedgerFilter {
    pub fn matches(&self, row: &LedgerRow) -> bool {
        self.village_id
            .as_ref()
            .is_none_or(|village| &row.household.village_id == village)
            && self
                .cadre_id
                .as_ref()
                .is_none_or(|cadre| cadre_group_id(&row.household) == cadre)
            && self.state.is_none_or(|state| state.matches(row))
    }
}

/// A cadre with nothing synced for the configured number of days.
#[derive(Debug, Clone, PartialEq)]
pub struct SilentCadre {
    pub cadre: CadreLastSync,
    /// Whole days since the last sync; `None` when the cadre never synced.
    pub days_silent: Option<i64>,
}

/// Everything the dashboard (工作台) shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Dashboard {
    pub month: BusinessMonth,
    pub coverage: Coverage,
    pub totals: CoverageCounts,
    pub closures: Vec<MonthClosure>,
    /// The month before `month`, whose overdue households are listed.
    pub previous_month: BusinessMonth,
    pub previous_overdue: Vec<LedgerRow>,
    pub flags: Vec<FlagCount>,
    pub silent_days: u32,
    pub silent_cadres: Vec<SilentCadre>,
}

/// The ledger area of a staff principal; other roles are refused.
pub fn area_of(principal: &Principal) -> Result<LedgerArea, ServiceError> {
    match principal.role {
        Role::Township => Ok(LedgerArea::Township(principal.area_id.clone())),
        Role::County | Role::Auditor => Ok(LedgerArea::County(principal.area_id.clone())),
        Role::Cadre | Role::Village => Err(ServiceError::PermissionDenied(
            "仅乡镇审核员、县级管理员和审计员可查看台账 (staff only)".into(),
        )),
    }
}

/// Parse a `YYYY-MM` month from a request.
pub fn parse_month(text: &str) -> Result<BusinessMonth, ServiceError> {
    BusinessMonth::parse(text.trim())
        .map_err(|error| ServiceError::invalid("month", error.to_string()))
}

/// The month a request names, or the current business month when it names none.
pub fn month_or_current(app: &AppState, text: Option<&str>) -> Result<BusinessMonth, ServiceError> {
    match text.map(str::trim).filter(|text| !text.is_empty()) {
        Some(text) => parse_month(text),
        None => Ok(BusinessMonth::of(app.clock.now())),
    }
}

fn cadre_group_id(household: &LedgerHousehold) -> &str {
    household
        .primary_cadre_user_id
        .as_deref()
        .unwrap_or(NO_PRIMARY_CADRE)
}

fn cadre_group_name(household: &LedgerHousehold) -> String {
    match (
        &household.primary_cadre_user_id,
        &household.primary_cadre_name,
    ) {
        (None, _) => "（未落实第一帮扶责任人）".to_owned(),
        (Some(_), Some(name)) => name.clone(),
        (Some(id), None) => id.clone(),
    }
}

/// Build the month's rows from the store's facts at `now`: open townships from their
/// households now, closed townships from the snapshot taken at close.
pub fn build_ledger(month: BusinessMonth, facts: LedgerFacts, now: OffsetDateTime) -> MonthLedger {
    let closed_at: HashMap<&str, OffsetDateTime> = facts
        .closures
        .iter()
        .map(|closure| (closure.township_id.as_str(), closure.closed_at))
        .collect();
    let mut visits_by_household: HashMap<String, Vec<crate::store::LedgerVisit>> = HashMap::new();
    for visit in facts.visits {
        visits_by_household
            .entry(visit.household_id.clone())
            .or_default()
            .push(visit);
    }
    let mut rows = Vec::new();
    let mut row_for =
        |household: LedgerHousehold, lock: Option<&fieldsync_model::ledger::LockedSnapshot>| {
            let township_closed_at = closed_at.get(household.township_id.as_str()).copied();
            let visits = visits_by_household
                .remove(&household.household_id)
                .unwrap_or_default();
            let slot_visits: Vec<SlotVisit> = visits
                .iter()
                .map(|visit| SlotVisit {
                    visit_id: visit.visit_id.clone(),
                    mode: visit.mode,
                    review: visit.state,
                    checkin_at: visit.checkin_at,
                    received_at: visit.submitted_at,
                })
                .collect();
            let slot = derive_slot(month, &slot_visits, lock, now);
            let visits = visits
                .into_iter()
                .zip(&slot_visits)
                .map(|(visit, slot_visit)| LedgerRowVisit {
                    late_after_close: is_late_after_close(slot_visit, township_closed_at),
                    visit_id: visit.visit_id,
                    revision: visit.revision,
                    mode: visit.mode,
                    state: visit.state,
                    checkin_at: visit.checkin_at,
                    submitted_at: visit.submitted_at,
                    author_name: visit.author_name,
                })
                .collect();
            rows.push(LedgerRow {
                household,
                slot,
                visits,
            });
        };
    for household in facts.households {
        if !closed_at.contains_key(household.township_id.as_str()) {
            row_for(household, None);
        }
    }
    for locked in facts.locked {
        row_for(locked.household, Some(&locked.snapshot));
    }
    rows.sort_by(|a, b| {
        (
            &a.household.township_id,
            &a.household.village_id,
            &a.household.head_name,
            &a.household.household_id,
        )
            .cmp(&(
                &b.household.township_id,
                &b.household.village_id,
                &b.household.head_name,
                &b.household.household_id,
            ))
    });
    MonthLedger {
        month,
        rows,
        closures: facts.closures,
    }
}

/// The ledger of the principal's area for `month`, every household.
pub async fn month_ledger(
    app: &AppState,
    principal: &Principal,
    month: BusinessMonth,
) -> Result<MonthLedger, ServiceError> {
    let area = area_of(principal)?;
    let facts = app.store.ledger_facts(&area, &month.to_string()).await?;
    Ok(build_ledger(month, facts, app.clock.now()))
}

/// Group a ledger's rows into 入户率 counts by village and by primary cadre.
pub fn coverage_of(ledger: &MonthLedger) -> (Coverage, CoverageCounts) {
    let mut villages: BTreeMap<(String, String), CoverageCounts> = BTreeMap::new();
    let mut cadres: BTreeMap<(String, String), CoverageCounts> = BTreeMap::new();
    let mut totals = CoverageCounts::default();
    for row in &ledger.rows {
        let household = &row.household;
        villages
            .entry((household.village_id.clone(), household.village_name.clone()))
            .or_default()
            .add(&row.slot);
        cadres
            .entry((
                cadre_group_name(household),
                cadre_group_id(household).to_owned(),
            ))
            .or_default()
            .add(&row.slot);
        totals.add(&row.slot);
    }
    let row = |group_id: String, group_name: String, counts: CoverageCounts| CoverageRow {
        group_id,
        group_name,
        due: counts.due,
        visited_in_person: counts.visited_in_person,
        approved_in_person: counts.approved_in_person,
        overdue: counts.overdue,
    };
    let coverage = Coverage {
        month: ledger.month.to_string(),
        by_village: villages
            .into_iter()
            .map(|((id, name), counts)| row(id, name, counts))
            .collect(),
        // By cadre name (then id), the order a supervisor scans a list of people in.
        by_cadre: cadres
            .into_iter()
            .map(|((name, id), counts)| row(id, name, counts))
            .collect(),
    };
    (coverage, totals)
}

/// 入户率 of the principal's area for `month` (YYYY-MM), by village and by cadre. Used by
/// the dashboard and by the 入户率 export.
pub async fn coverage(
    app: &AppState,
    principal: &Principal,
    month: &str,
) -> Result<Coverage, ServiceError> {
    let month = parse_month(month)?;
    let ledger = month_ledger(app, principal, month).await?;
    Ok(coverage_of(&ledger).0)
}

/// The dashboard of the principal's area for `month`.
pub async fn dashboard(
    app: &AppState,
    principal: &Principal,
    month: BusinessMonth,
) -> Result<Dashboard, ServiceError> {
    let area = area_of(principal)?;
    let now = app.clock.now();
    let previous_month = month.previous();
    let (month_text, previous_text) = (month.to_string(), previous_month.to_string());
    // Independent reads; the store runs each in its own read snapshot.
    let (facts, previous_facts, flags, cadres) = tokio::try_join!(
        app.store.ledger_facts(&area, &month_text),
        app.store.ledger_facts(&area, &previous_text),
        app.store.queue_flag_counts(&area),
        app.store.cadre_last_syncs(&area),
    )?;
    let ledger = build_ledger(month, facts, now);
    let (coverage, totals) = coverage_of(&ledger);
    let previous = build_ledger(previous_month, previous_facts, now);
    let previous_overdue = previous
        .rows
        .into_iter()
        .filter(|row| row.slot.is_overdue())
        .collect();
    let silent_days = app.settings.silent_cadre_days;
    Ok(Dashboard {
        month,
        coverage,
        totals,
        closures: ledger.closures,
        previous_month,
        previous_overdue,
        flags,
        silent_days,
        silent_cadres: silent_cadres_of(cadres, silent_days, now),
    })
}

/// Cadres whose last sync is `days` or more ago (or who never synced), longest silent first.
pub fn silent_cadres_of(
    cadres: Vec<CadreLastSync>,
    days: u32,
    now: OffsetDateTime,
) -> Vec<SilentCadre> {
    let limit = time::Duration::days(i64::from(days));
    let mut silent: Vec<SilentCadre> = cadres
        .into_iter()
        .filter(|cadre| cadre.last_sync_at.is_none_or(|last| now - last >= limit))
        .map(|cadre| SilentCadre {
            days_silent: cadre.last_sync_at.map(|last| (now - last).whole_days()),
            cadre,
        })
        .collect();
    // Never synced first, then the longest silence.
    silent.sort_by_key(|silent| {
        (
            silent.days_silent.map_or(i64::MIN, |days| -days),
            silent.cadre.display_name.clone(),
        )
    });
    silent
}

/// The silent cadres of the principal's area now.
pub async fn silent_cadres(
    app: &AppState,
    principal: &Principal,
) -> Result<Vec<SilentCadre>, ServiceError> {
    let area = area_of(principal)?;
    let cadres = app.store.cadre_last_syncs(&area).await?;
    Ok(silent_cadres_of(
        cadres,
        app.settings.silent_cadre_days,
        app.clock.now(),
    ))
}

/// Close the supervisor's township for `month` (月结): only township supervisors, only a
/// month that has ended, only once, and only with the confirm text [`CLOSE_CONFIRM_TEXT`].
pub async fn close_month(
    app: &AppState,
    principal: &Principal,
    month: &str,
    confirm: &str,
) -> Result<MonthClosure, ServiceError> {
    if principal.role != Role::Township {
        return Err(ServiceError::PermissionDenied(
            "仅乡镇审核员可以月结 (township supervisors only)".into(),
        ));
    }
    let month = parse_month(month)?;
    if confirm.trim() != CLOSE_CONFIRM_TEXT {
        return Err(ServiceError::invalid(
            "confirm",
            format!("请输入“{CLOSE_CONFIRM_TEXT}”确认 (type {CLOSE_CONFIRM_TEXT} to confirm)"),
        ));
    }
    check_close(month, app.clock.now()).map_err(|error| match error {
        LedgerError::InvalidMonth(_) | LedgerError::MonthNotEnded { .. } => {
            ServiceError::invalid("month", error.to_string())
        }
    })?;
    let closure = app
        .store
        .close_month(
            &principal.area_id,
            &month.to_string(),
            &principal.user_id,
            app.clock.now(),
        )
        .await
        .map_err(|error| match error {
            crate::store::StoreError::Conflict(_) => ServiceError::AlreadyExists(format!(
                "{} 已月结，不能重复月结 (already closed)",
                month.label_zh()
            )),
            other => other.into(),
        })?;
    tracing::info!(
        township = %closure.township_id,
        month = %closure.month,
        households = closure.household_count,
        "month closed"
    );
    Ok(closure)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn cadre(name: &str, last: Option<OffsetDateTime>) -> CadreLastSync {
        CadreLastSync {
            user_id: name.into(),
            display_name: name.into(),
            township_id: "t".into(),
            last_sync_at: last,
        }
    }

    #[test]
    fn silent_cadres_are_those_past_the_limit_never_synced_first() {
        let now = datetime!(2026-04-10 02:00 UTC);
        let silent = silent_cadres_of(
            vec![
                cadre("recent", Some(now - time::Duration::days(6))),
                cadre("exactly", Some(now - time::Duration::days(7))),
                cadre("long", Some(now - time::Duration::days(30))),
                cadre("never", None),
            ],
            7,
            now,
        );
        assert_eq!(
            silent
                .iter()
                .map(|silent| (silent.cadre.display_name.as_str(), silent.days_silent))
                .collect::<Vec<_>>(),
            vec![("never", None), ("long", Some(30)), ("exactly", Some(7))]
        );
    }

    #[test]
    fn state_filters_parse_and_refuse_unknown_names() {
        for filter in StateFilter::ALL {
            assert_eq!(
                StateFilter::parse(filter.as_str()).expect("known"),
                Some(filter)
            );
        }
        assert_eq!(StateFilter::parse(" ").expect("empty"), None);
        let error = StateFilter::parse("approve").expect_err("unknown");
        assert!(
            matches!(error, ServiceError::InvalidArgument { ref field, .. } if field == "state")
        );
    }

    #[test]
    fn months_are_validated_with_a_typed_error() {
        assert_eq!(parse_month("2026-03").expect("ok").to_string(), "2026-03");
        for bad in ["2026-13", "March", "", "2026-3"] {
            assert!(
                matches!(parse_month(bad), Err(ServiceError::InvalidArgument { ref field, .. }) if field == "month"),
                "{bad:?}"
            );
        }
    }
}
