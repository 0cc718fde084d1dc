//! Console routes of the monthly ledger (月台账): the dashboard (工作台), the ledger list
//! behind every dashboard number, the silent-cadre list, month close (月结) and their JSON
//! twins. Staff only (township supervisor: the township; county admin and auditor: the
//! county); month close is for township supervisors. Use cases live in [`crate::ledger`],
//! markup in [`super::ledger_views`].
//!
//! Routes:
//! - `GET /console/dashboard[?month=YYYY-MM]` (工作台; `GET /` lands staff here)
//! - `GET /console/ledger?month=&village=&cadre=&state=` (the list behind each number;
//!   `cadre=none` lists households without a first responsible cadre; `state` is one of
//!   `due submitted returned approved overdue visited locked late`)
//! - `GET /console/ledger/silent` (cadres with nothing synced for `silent_cadre_days`)
//! - `POST /console/ledger/close` (form `month`, `confirm=月结`; township supervisors)
//! - JSON: `GET /console/api/dashboard[?month=]`, `GET /console/api/ledger?...` (same
//!   parameters as the HTML list)

use axum::Form;
use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use fieldsync_model::CodeList;
use fieldsync_model::ledger::BusinessMonth;
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::ledger_views;
use super::{ApiError, ApiStaff, ConsoleError, ConsoleState, Reviewer, Staff};
use crate::error::ServiceError;
use crate::ledger::{
    self, LedgerFilter, LedgerRow, MonthLedger, NO_PRIMARY_CADRE, SilentCadre, StateFilter,
};
use crate::store::MonthClosure;
use crate::text::non_empty;

/// Path of the dashboard, where `GET /` lands staff.
pub const DASHBOARD_PATH: &str = "/console/dashboard";
/// Path of the ledger list.
pub const LEDGER_PATH: &str = "/console/ledger";

/// Query of the dashboard.
#[derive(Debug, Default, Deserialize)]
pub struct DashboardQuery {
    #[serde(default)]
    month: Option<String>,
    /// `all`: list every cadre's 入户率, not only the lowest ones.
    #[serde(default)]
    cadres: Option<String>,
}

/// Query of the ledger list. Every parameter is optional; empty means "all".
#[derive(Debug, Default, Deserialize)]
pub struct LedgerQuery {
    #[serde(default)]
    month: Option<String>,
    #[serde(default)]
    village: Option<String>,
    #[serde(default)]
    cadre: Option<String>,
    #[serde(default)]
    state: Option<String>,
    /// Set after a successful close, for the banner.
    #[serde(default)]
    closed: Option<String>,
}

/// The month and filter a ledger query names, validated.
fn parse_ledger_query(
    state: &ConsoleState,
    query: &LedgerQuery,
) -> Result<(BusinessMonth, LedgerFilter), ServiceError> {
    let month = ledger::month_or_current(&state.app, query.month.as_deref())?;
    let filter = LedgerFilter {
        village_id: non_empty(query.village.as_deref()),
        cadre_id: non_empty(query.cadre.as_deref()),
        state: StateFilter::parse(query.state.as_deref().unwrap_or(""))?,
    };
    Ok((month, filter))
}

/// A link to the ledger list with the given filters (`None` leaves a filter out).
pub fn ledger_link(
    month: BusinessMonth,
    village: Option<&str>,
    cadre: Option<&str>,
    state: Option<StateFilter>,
) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("month", &month.to_string());
    if let Some(village) = village {
        query.append_pair("village", village);
    }
    if let Some(cadre) = cadre {
        query.append_pair("cadre", cadre);
    }
    if let Some(state) = state {
        query.append_pair("state", state.as_str());
    }
    format!("{LEDGER_PATH}?{}", query.finish())
}

/// `GET /console/dashboard[?month=YYYY-MM]`.
pub async fn dashboard(
    State(state): State<ConsoleState>,
    Staff(principal): Staff,
    Query(query): Query<DashboardQuery>,
) -> Result<Response, ConsoleError> {
    let month = ledger::month_or_current(&state.app, query.month.as_deref())
        .map_err(|error| ConsoleError::with_back_link(error, DASHBOARD_PATH))?;
    let dashboard = ledger::dashboard(&state.app, &principal, month).await?;
    let area_name = area_name(&state, &principal.area_id).await;
    Ok(ledger_views::dashboard_page(&ledger_views::DashboardView {
        principal: &principal,
        area_name: &area_name,
        dashboard: &dashboard,
        now: state.app.clock.now(),
        all_cadres: query.cadres.as_deref() == Some("all"),
    })
    .into_response())
}

/// `GET /console/ledger?month=&village=&cadre=&state=`.
pub async fn ledger_list(
    State(state): State<ConsoleState>,
    Staff(principal): Staff,
    Query(query): Query<LedgerQuery>,
) -> Result<Response, ConsoleError> {
    let (month, filter) = parse_ledger_query(&state, &query)
        .map_err(|error| ConsoleError::with_back_link(error, LEDGER_PATH))?;
    let ledger = ledger::month_ledger(&state.app, &principal, month).await?;
    let area_name = area_name(&state, &principal.area_id).await;
    let now = state.app.clock.now();
    Ok(ledger_views::ledger_page(&ledger_views::LedgerView {
        principal: &principal,
        area_name: &area_name,
        ledger: &ledger,
        filter: &filter,
        month_has_ended: month.has_ended(now),
        just_closed: query.closed.is_some(),
    })
    .into_response())
}

/// `GET /console/ledger/silent`.
pub async fn silent_cadres(
    State(state): State<ConsoleState>,
    Staff(principal): Staff,
) -> Result<Response, ConsoleError> {
    let silent = ledger::silent_cadres(&state.app, &principal).await?;
    Ok(
        ledger_views::silent_page(&principal, &silent, state.app.settings.silent_cadre_days)
            .into_response(),
    )
}

/// Fields of the month-close form.
#[derive(Debug, Default, Deserialize)]
pub struct CloseForm {
    #[serde(default)]
    month: String,
    #[serde(default)]
    confirm: String,
}

/// `POST /console/ledger/close`: close the supervisor's township for the month, then show
/// the month's ledger.
pub async fn close_month(
    State(state): State<ConsoleState>,
    Reviewer(principal): Reviewer,
    Form(form): Form<CloseForm>,
) -> Result<Response, ConsoleError> {
    let back = match BusinessMonth::parse(form.month.trim()) {
        Ok(month) => ledger_link(month, None, None, None),
        Err(_) => LEDGER_PATH.to_owned(),
    };
    let closure = ledger::close_month(&state.app, &principal, &form.month, &form.confirm)
        .await
        .map_err(|error| ConsoleError::with_back_link(error, back))?;
    Ok(Redirect::to(&format!("{LEDGER_PATH}?month={}&closed=1", closure.month)).into_response())
}

async fn area_name(state: &ConsoleState, area_id: &str) -> String {
    match state.app.store.get_area(area_id).await {
        Ok(Some(area)) => area.name,
        _ => area_id.to_owned(),
    }
}

// ----- JSON twins -----

fn rfc3339(instant: OffsetDateTime) -> String {
    instant
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn closure_json(closure: &MonthClosure) -> Value {
    json!({
        "township_id": closure.township_id,
        "township_name": closure.township_name,
        "month": closure.month,
        "closed_by_user_id": closure.closed_by_user_id,
        "closed_by_name": closure.closed_by_name,
        "closed_at": rfc3339(closure.closed_at),
        "household_count": closure.household_count,
    })
}

fn row_json(row: &LedgerRow) -> Value {
    let household = &row.household;
    json!({
        "household_id": household.household_id,
        "head_name": household.head_name,
        "township_id": household.township_id,
        "village_id": household.village_id,
        "village_name": household.village_name,
        "primary_cadre_user_id": household.primary_cadre_user_id,
        "primary_cadre_name": household.primary_cadre_name,
        "state": row.slot.state.as_str(),
        "state_label": row.slot.state.label_zh(),
        "visited_in_person": row.slot.visited_in_person,
        "approved_in_person": row.slot.approved_in_person,
        "overdue": row.slot.is_overdue(),
        "visits": row.visits.iter().map(|visit| json!({
            "visit_id": visit.visit_id,
            "revision": visit.revision,
            "mode": visit.mode.label_zh(),
            "in_person": visit.mode == fieldsync_model::codes::VisitMode::InPerson,
            "state": visit.state.as_str(),
            "checkin_at": rfc3339(visit.checkin_at),
            "submitted_at": rfc3339(visit.submitted_at),
            "author_name": visit.author_name,
            "late_after_close": visit.late_after_close,
        })).collect::<Vec<_>>(),
    })
}

fn silent_json(silent: &SilentCadre) -> Value {
    json!({
        "user_id": silent.cadre.user_id,
        "display_name": silent.cadre.display_name,
        "township_id": silent.cadre.township_id,
        "last_sync_at": silent.cadre.last_sync_at.map(rfc3339),
        "days_silent": silent.days_silent,
    })
}

fn ledger_json(ledger: &MonthLedger, filter: &LedgerFilter) -> Value {
    let rows: Vec<Value> = ledger
        .rows
        .iter()
        .filter(|row| filter.matches(row))
        .map(row_json)
        .collect();
    json!({
        "month": ledger.month.to_string(),
        "closures": ledger.closures.iter().map(closure_json).collect::<Vec<_>>(),
        "count": rows.len(),
        "rows": rows,
    })
}

/// `GET /console/api/dashboard[?month=]`.
pub async fn api_dashboard(
    State(state): State<ConsoleState>,
    ApiStaff(principal): ApiStaff,
    Query(query): Query<DashboardQuery>,
) -> Result<Json<Value>, ApiError> {
    let month = ledger::month_or_current(&state.app, query.month.as_deref())?;
    let dashboard = ledger::dashboard(&state.app, &principal, month).await?;
    let totals = &dashboard.totals;
    Ok(Json(json!({
        "month": dashboard.month.to_string(),
        "totals": {
            "due": totals.due,
            "visited_in_person": totals.visited_in_person,
            "approved_in_person": totals.approved_in_person,
            "overdue": totals.overdue,
            "approved_rate_percent": totals.approved_rate_percent(),
        },
        "by_village": dashboard.coverage.by_village,
        "by_cadre": dashboard.coverage.by_cadre,
        "no_primary_cadre_group_id": NO_PRIMARY_CADRE,
        "closures": dashboard.closures.iter().map(closure_json).collect::<Vec<_>>(),
        "previous_month": dashboard.previous_month.to_string(),
        "previous_overdue": dashboard.previous_overdue.iter().map(row_json).collect::<Vec<_>>(),
        "flags": dashboard.flags.iter().map(|flag| json!({
            "code": flag.code,
            "label": flag.label_zh,
            "visits": flag.visits,
        })).collect::<Vec<_>>(),
        "silent_days": dashboard.silent_days,
        "silent_cadres": dashboard.silent_cadres.iter().map(silent_json).collect::<Vec<_>>(),
    })))
}

/// `GET /console/api/ledger?month=&village=&cadre=&state=`.
pub async fn api_ledger(
    State(state): State<ConsoleState>,
    ApiStaff(principal): ApiStaff,
    Query(query): Query<LedgerQuery>,
) -> Result<Json<Value>, ApiError> {
    let (month, filter) = parse_ledger_query(&state, &query)?;
    let ledger = ledger::month_ledger(&state.app, &principal, month).await?;
    Ok(Json(ledger_json(&ledger, &filter)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_links_carry_only_the_filters_given_and_are_encoded() {
        let month = BusinessMonth::parse("2026-03").expect("month");
        assert_eq!(
            ledger_link(month, None, None, None),
            "/console/ledger?month=2026-03"
        );
        assert_eq!(
            ledger_link(
                month,
                Some("v 1&x"),
                Some("none"),
                Some(StateFilter::Overdue)
            ),
            "/console/ledger?month=2026-03&village=v+1%26x&cadre=none&state=overdue"
        );
    }
}
