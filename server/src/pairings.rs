//! Pairings management (结对管理, issue 5 item 6): the county admin (县级管理员) sees every
//! cadre's 8741 load and the households without exactly one first responsible cadre
//! (第一帮扶责任人), and makes a cadre a household's primary.
//!
//! The quota rules are pure ([`fieldsync_model::pairing`]); this module scopes everything to
//! the admin's county (households and cadres of other counties are answered as unknown),
//! refuses an assignment beyond the quota unless the admin ticked 超额确认 (then it is allowed
//! and written to the audit log in the same transaction), and leaves the hand-over to the
//! store's reassignment rules: the old cadre's phone gets a tombstone, the new cadre's phone
//! receives the household on its next pull. An assignment always leaves exactly one primary.
//! Helpers (第二帮扶责任人) are added and ended here too, with the same delivery to and purge
//! from their phones; they have no quota.

use fieldsync_model::CodeList;
use fieldsync_model::access::{ACTION_PAIRING_OVER_QUOTA, AuditContent};
use fieldsync_model::codes::Role;
use fieldsync_model::household::Household;
use fieldsync_model::pairing::{
    PrimaryProblem, QuotaOutcome, QuotaStatus, QuotaTable, check_primary_assignment,
    check_same_county, primary_problem,
};

use crate::AppState;
use crate::error::ServiceError;
use crate::store::{
    Area, CadreLoad, HouseholdPairings, PairingFilter, PrimaryAssignment, Principal, StoreError,
};

/// Households listed on one page of the pairing console.
pub const HOUSEHOLD_PAGE: u32 = 500;

/// The county the principal administers, or a permission error.
pub fn admin_county(principal: &Principal) -> Result<&str, ServiceError> {
    match principal.role {
        Role::County => Ok(&principal.area_id),
        _ => Err(ServiceError::PermissionDenied(
            "只有县级管理员可以管理结对 (only county administrators manage pairings)".into(),
        )),
    }
}

/// The quota table in force. One county scheme for now (通渭 8741); a per-county setting can
/// replace this without touching the rules.
pub fn quota_table() -> QuotaTable {
    QuotaTable::TONGWEI_8741
}

/// A cadre with their load against the quota.
#[derive(Debug, Clone, PartialEq)]
pub struct CadreQuota {
    pub cadre: CadreLoad,
    pub status: QuotaStatus,
}

/// A household with its pairings and, when it has not exactly one primary, the problem.
#[derive(Debug, Clone, PartialEq)]
pub struct HouseholdRow {
    pub household: HouseholdPairings,
    pub problem: Option<PrimaryProblem>,
}

/// What the pairing console shows.
#[derive(Debug, Clone, PartialEq)]
pub struct PairingsOverview {
    pub townships: Vec<Area>,
    /// Villages of the selected township (empty without one).
    pub villages: Vec<Area>,
    pub cadres: Vec<CadreQuota>,
    /// Households of the county (or filter) with a primary problem: the validation list.
    pub problems: Vec<HouseholdRow>,
    /// Households of the filter, at most [`HOUSEHOLD_PAGE`].
    pub households: Vec<HouseholdRow>,
}

fn household_rows(households: Vec<HouseholdPairings>) -> Vec<HouseholdRow> {
    households
        .into_iter()
        .map(|household| HouseholdRow {
            problem: primary_problem(u32::try_from(household.primaries.len()).unwrap_or(u32::MAX)),
            household,
        })
        .collect()
}

/// The pairing console's data for the admin, filtered by township and village (ids outside
/// the county select nothing).
pub async fn overview(
    app: &AppState,
    principal: &Principal,
    township_id: Option<String>,
    village_id: Option<String>,
) -> Result<PairingsOverview, ServiceError> {
    let county = admin_county(principal)?;
    let table = quota_table();
    let townships = app.store.list_areas(Some(county)).await?;
    let township_id = township_id.filter(|id| townships.iter().any(|area| &area.area_id == id));
    let villages = match &township_id {
        Some(township) => app.store.list_areas(Some(township)).await?,
        None => Vec::new(),
    };
    let village_id = village_id.filter(|id| villages.iter().any(|area| &area.area_id == id));
    let cadres = app
        .store
        .cadre_loads(county)
        .await?
        .into_iter()
        .filter(|cadre| {
            township_id
                .as_ref()
                .is_none_or(|township| &cadre.township_id == township)
        })
        .map(|cadre| CadreQuota {
            status: QuotaStatus::new(&table, cadre.rank, cadre.primary_count),
            cadre,
        })
        .collect();
    let filter = PairingFilter {
        township_id,
        village_id,
        only_problems: false,
        limit: HOUSEHOLD_PAGE,
    };
    let problems = app
        .store
        .pairing_households(
            county,
            PairingFilter {
                only_problems: true,
                ..filter.clone()
            },
        )
        .await?;
    let households = app.store.pairing_households(county, filter).await?;
    Ok(PairingsOverview {
        townships,
        villages,
        cadres,
        problems: household_rows(problems),
        households: household_rows(households),
    })
}

/// The admin's request: make `cadre_user_id` the household's 第一帮扶责任人.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignRequest {
    pub household_id: String,
    pub cadre_user_id: String,
    /// 超额确认: allow going beyond the quota (audited).
    pub confirm_over_quota: bool,
}

/// What an accepted assignment did.
#[derive(Debug, Clone, PartialEq)]
pub struct AssignOutcome {
    pub household_id: String,
    pub head_name: String,
    pub cadre_name: String,
    /// `true` when it went beyond the quota with 超额确认 (and was audited).
    pub over_quota: bool,
}

/// A household of the admin's county; one elsewhere is answered like an id that does not
/// exist.
async fn household_in_county(
    app: &AppState,
    county: &str,
    household_id: &str,
) -> Result<Household, ServiceError> {
    let not_found =
        || ServiceError::NotFound(format!("household {household_id} not found (未找到该户)"));
    let household = app
        .store
        .get_household(household_id)
        .await?
        .ok_or_else(not_found)?;
    let household_county = app
        .store
        .get_area(&household.township_id)
        .await?
        .and_then(|township| township.parent_id);
    if household_county.as_deref() != Some(county) {
        return Err(not_found());
    }
    Ok(household)
}

/// One household's pairings with every cadre of the county to choose from, for the
/// household's pairing page (the list page links there instead of carrying a cadre list per
/// row, which at county scale would be megabytes of HTML).
#[derive(Debug, Clone, PartialEq)]
pub struct HouseholdPairing {
    pub row: HouseholdRow,
    /// The county's cadres with their loads, the household's township first, then by
    /// township and name.
    pub cadres: Vec<CadreQuota>,
}

/// The pairing page of one household of the admin's county.
pub async fn household_pairing(
    app: &AppState,
    principal: &Principal,
    household_id: &str,
) -> Result<HouseholdPairing, ServiceError> {
    let county = admin_county(principal)?;
    let household = household_in_county(app, county, household_id).await?;
    let row = pairing_row(app, county, &household)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("household {household_id}")))?;
    let table = quota_table();
    let mut cadres: Vec<CadreQuota> = app
        .store
        .cadre_loads(county)
        .await?
        .into_iter()
        .map(|cadre| CadreQuota {
            status: QuotaStatus::new(&table, cadre.rank, cadre.primary_count),
            cadre,
        })
        .collect();
    // Stable: the store's order (township, name) is kept within each group.
    cadres.sort_by_key(|cadre| cadre.cadre.township_id != household.township_id);
    Ok(HouseholdPairing {
        row: household_rows(vec![row]).remove(0),
        cadres,
    })
}

/// One household's active pairings (read from its village's list).
async fn pairing_row(
    app: &AppState,
    county: &str,
    household: &Household,
) -> Result<Option<HouseholdPairings>, ServiceError> {
    Ok(app
        .store
        .pairing_households(
            county,
            PairingFilter {
                township_id: Some(household.township_id.clone()),
                village_id: Some(household.village_id.clone()),
                only_problems: false,
                limit: 0,
            },
        )
        .await?
        .into_iter()
        .find(|row| row.household_id == household.household_id))
}

/// The household and the cadre of a pairing request, both in the admin's county; households
/// and cadres elsewhere are answered as unknown, like ids that do not exist.
async fn household_and_cadre(
    app: &AppState,
    county: &str,
    household_id: &str,
    cadre_user_id: &str,
) -> Result<(Household, CadreLoad), ServiceError> {
    if household_id.trim().is_empty() {
        return Err(ServiceError::invalid("household_id", "请选择农户"));
    }
    if cadre_user_id.trim().is_empty() {
        return Err(ServiceError::invalid("cadre_user_id", "请选择帮扶干部"));
    }
    let household = household_in_county(app, county, household_id).await?;
    // Only the county's cadres are listed, so a cadre elsewhere is answered as unknown.
    let cadre = app
        .store
        .cadre_loads(county)
        .await?
        .into_iter()
        .find(|cadre| cadre.user_id == cadre_user_id)
        .ok_or_else(|| {
            ServiceError::NotFound(format!("cadre {cadre_user_id} not found (未找到该干部)"))
        })?;
    let cadre_county = app
        .store
        .get_area(&cadre.township_id)
        .await?
        .and_then(|township| township.parent_id);
    check_same_county(cadre_county.as_deref(), Some(county))
        .map_err(|refusal| ServiceError::FailedPrecondition(refusal.to_string()))?;
    Ok((household, cadre))
}

/// Make a cadre the household's primary, with the quota check and the hand-over rules.
pub async fn assign_primary(
    app: &AppState,
    principal: &Principal,
    request: &AssignRequest,
) -> Result<AssignOutcome, ServiceError> {
    let county = admin_county(principal)?;
    let (household, cadre) =
        household_and_cadre(app, county, &request.household_id, &request.cadre_user_id).await?;

    let current = pairing_row(app, county, &household).await?;
    let already_primary = current
        .as_ref()
        .is_some_and(|row| row.primaries.len() == 1 && row.primaries[0].0 == cadre.user_id);
    if already_primary {
        return Err(ServiceError::FailedPrecondition(
            fieldsync_model::pairing::PairingRefusal::AlreadyPrimary.to_string(),
        ));
    }

    let table = quota_table();
    let outcome = check_primary_assignment(
        &table,
        cadre.rank,
        cadre.primary_count,
        request.confirm_over_quota,
    )
    .map_err(|refusal| ServiceError::FailedPrecondition(refusal.to_string()))?;
    let now = app.clock.now();
    let (max_primary_count, audit) = match outcome {
        QuotaOutcome::Within => (table.quota(cadre.rank), None),
        QuotaOutcome::OverConfirmed { quota, count_after } => (
            None,
            Some(AuditContent {
                recorded_at_ms: i64::try_from(now.unix_timestamp_nanos() / 1_000_000)
                    .unwrap_or(i64::MAX),
                actor_user_id: principal.user_id.clone(),
                actor_role: principal.role.as_str().to_owned(),
                area_id: principal.area_id.clone(),
                action: ACTION_PAIRING_OVER_QUOTA.to_owned(),
                subject: household.household_id.clone(),
                filter: format!("cadre_user_id={}", cadre.user_id),
                row_count: 0,
                file_sha256: String::new(),
                detail: format!(
                    "超额确认：{}（{}，上限{}户）结对后共{}户，新增农户 {}",
                    cadre.display_name,
                    cadre.rank.map_or("无职级", |rank| rank.label_zh()),
                    quota,
                    count_after,
                    household.head_name
                ),
            }),
        ),
    };
    let over_quota = audit.is_some();
    app.store
        .assign_primary(PrimaryAssignment {
            household_id: household.household_id.clone(),
            cadre_user_id: cadre.user_id.clone(),
            at: now,
            max_primary_count,
            audit,
        })
        .await
        .map_err(|error| match error {
            // Another admin's assignment reached the quota (or made this cadre the primary)
            // between the check above and the write: refuse like the check would have.
            StoreError::Conflict(_) => ServiceError::FailedPrecondition(
                "该干部的结对数刚刚发生变化，已达上限或已是第一帮扶责任人，请刷新后重试".into(),
            ),
            other => other.into(),
        })?;
    Ok(AssignOutcome {
        household_id: household.household_id,
        head_name: household.head_name,
        cadre_name: cadre.display_name,
        over_quota,
    })
}

/// Add or end a helper (第二帮扶责任人) pairing.
#[derive(Debug, Clone, PartialEq)]
pub struct HelperRequest {
    pub household_id: String,
    pub cadre_user_id: String,
    /// `true` adds the helper, `false` ends the pairing.
    pub add: bool,
}

/// What an accepted helper change did, for the confirmation line.
#[derive(Debug, Clone, PartialEq)]
pub struct HelperOutcome {
    pub head_name: String,
    pub cadre_name: String,
    pub added: bool,
}

/// Add a helper (the household reaches the helper's phone at its next sync) or end a helper
/// pairing (the helper's phone purges the household). Helpers have no 8741 quota: the
/// quotas count 第一帮扶责任人 only, and the helper counts are shown beside them.
pub async fn set_helper(
    app: &AppState,
    principal: &Principal,
    request: &HelperRequest,
) -> Result<HelperOutcome, ServiceError> {
    let county = admin_county(principal)?;
    let (household, cadre) =
        household_and_cadre(app, county, &request.household_id, &request.cadre_user_id).await?;
    app.store
        .set_helper_pairing(
            &household.household_id,
            &cadre.user_id,
            request.add,
            app.clock.now(),
        )
        .await
        .map_err(|error| match error {
            StoreError::Conflict(_) if request.add => ServiceError::FailedPrecondition(format!(
                "{}已与该户结对，无需重复添加 (already paired with this household)",
                cadre.display_name
            )),
            StoreError::Conflict(_) => ServiceError::FailedPrecondition(format!(
                "{}是该户的第一帮扶责任人，请先另设第一帮扶责任人 (the primary is changed, not removed)",
                cadre.display_name
            )),
            StoreError::NotFound(_) if !request.add => ServiceError::NotFound(format!(
                "{}不是该户的帮扶干部 (no such helper pairing)",
                cadre.display_name
            )),
            other => other.into(),
        })?;
    Ok(HelperOutcome {
        head_name: household.head_name,
        cadre_name: cadre.display_name,
        added: request.add,
    })
}
