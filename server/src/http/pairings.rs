//! Console handlers of pairings management (结对管理) for the county admin. The rules and
//! the scope live in [`crate::pairings`] and [`fieldsync_model::pairing`].
//!
//! Routes (county admin only; other roles get 403):
//! - `GET /console/pairings[?township=ID][&village=ID]`: cadres with rank, 8741 quota, current
//!   count and over-quota mark; households without exactly one 第一帮扶责任人; with a
//!   township selected, the households with their pairings.
//! - `POST /console/pairings/assign` (form: `household_id`, `cadre_user_id`,
//!   `confirm_over_quota=1` for 超额确认): set the primary; an assignment beyond the quota
//!   is refused (409, Chinese message) unless confirmed, and then it is audited.
//! - `GET /console/pairings/households/{household_id}`: one household's pairings, with the
//!   forms to set its primary and to add or end helpers (every cadre of the county to
//!   choose from, the household's township first). The list links there.
//! - `POST /console/pairings/helpers` (form: `household_id`, `cadre_user_id`,
//!   `action=add|remove`): add a helper (第二帮扶责任人) or end a helper pairing; the
//!   helper's phone receives or purges the household at its next sync.
//! - JSON twin: `GET /console/api/pairings[?township=ID][&village=ID]`,
//!   `POST /console/api/pairings/assign` (JSON body with the same fields,
//!   `confirm_over_quota` boolean), `POST /console/api/pairings/helpers` (JSON
//!   `{household_id, cadre_user_id, add}`).

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Form, Json};
use fieldsync_model::CodeList;
use fieldsync_model::access::mask_phone;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Value, json};

use super::views::{Nav, layout};
use super::{ApiCountyAdmin, ApiError, ConsoleError, ConsoleState, CountyAdmin};
use crate::error::ServiceError;
use crate::pairings::{self, AssignRequest, HelperRequest, HouseholdRow, PairingsOverview};
use crate::store::Principal;
use crate::text::non_empty;

/// Path of the pairings page.
pub const PAIRINGS_PATH: &str = "/console/pairings";

/// Form target of adding and ending helper (第二帮扶责任人) pairings.
pub const HELPERS_PATH: &str = "/console/pairings/helpers";

/// Filters of the pairings page, as text (unknown ids simply select nothing).
#[derive(Debug, Default, Deserialize)]
pub struct PairingsQuery {
    #[serde(default)]
    township: Option<String>,
    #[serde(default)]
    village: Option<String>,
    #[serde(default)]
    assigned: Option<String>,
    /// `added` or `removed` after a helper change.
    #[serde(default)]
    helper: Option<String>,
}

/// `GET /console/pairings`.
pub async fn pairings_page(
    State(state): State<ConsoleState>,
    CountyAdmin(principal): CountyAdmin,
    Query(query): Query<PairingsQuery>,
) -> Result<Response, ConsoleError> {
    let township = non_empty(query.township.as_deref());
    let village = non_empty(query.village.as_deref());
    let overview =
        pairings::overview(&state.app, &principal, township.clone(), village.clone()).await?;
    let content = pairings_view(
        &overview,
        township.as_deref(),
        village.as_deref(),
        query.assigned.is_some(),
        query.helper.as_deref(),
    );
    Ok(layout("结对管理", Some(&principal), Nav::Pairings, content).into_response())
}

fn problem_cell(row: &HouseholdRow) -> Markup {
    html! {
        @if let Some(problem) = row.problem {
            span.badge.warn { (problem.label_zh()) }
        } @else {
            "正常"
        }
    }
}

/// The pairing page of one household (`GET /console/pairings/households/{id}`).
pub fn household_path(household_id: &str) -> String {
    format!("{PAIRINGS_PATH}/households/{household_id}")
}

/// `GET /console/pairings/households/{household_id}`.
pub async fn household_page(
    State(state): State<ConsoleState>,
    CountyAdmin(principal): CountyAdmin,
    Path(household_id): Path<String>,
    Query(query): Query<PairingsQuery>,
) -> Result<Response, ConsoleError> {
    let pairing = pairings::household_pairing(&state.app, &principal, &household_id).await?;
    let content = household_view(&pairing, query.assigned.is_some(), query.helper.as_deref());
    Ok(layout("调整结对", Some(&principal), Nav::Pairings, content).into_response())
}

/// A cadre choice: name, township, and the 8741 load against the quota.
fn cadre_option_label(cadre: &pairings::CadreQuota) -> String {
    format!(
        "{}（{}，{}/{}）",
        cadre.cadre.display_name,
        cadre.cadre.township_name,
        cadre.status.count,
        cadre
            .status
            .quota
            .map_or("不限".to_owned(), |quota| quota.to_string())
    )
}

fn household_view(
    pairing: &pairings::HouseholdPairing,
    assigned: bool,
    helper: Option<&str>,
) -> Markup {
    let household = &pairing.row.household;
    let hidden = html! {
        input type="hidden" name="household_id" value=(household.household_id);
        input type="hidden" name="return_to" value="household";
    };
    let paired = |user_id: &str| {
        household
            .primaries
            .iter()
            .chain(&household.secondaries)
            .any(|(id, _)| id == user_id)
    };
    html! {
        p { a href=(format!("{PAIRINGS_PATH}?township={}", household.township_id)) { "← 返回结对管理" } }
        h1 { "调整结对：" (super::views::household_name_link(&household.household_id, &household.head_name)) }
        p.muted { (household.village_name) " · 户ID " (household.household_id) }
        (notices(assigned, helper))
        section.card {
            h2 { "第一帮扶责任人" }
            p { "当前：" (names(&household.primaries)) " · 状态：" (problem_cell(&pairing.row)) }
            form.assign method="post" action="/console/pairings/assign" {
                (super::csrf::form_field())
                (hidden)
                select name="cadre_user_id" required aria-label="新的第一帮扶责任人" {
                    option value="" { "选择干部（本乡镇在前）" }
                    @for cadre in &pairing.cadres {
                        option value=(cadre.cadre.user_id) { (cadre_option_label(cadre)) }
                    }
                }
                label { input type="checkbox" name="confirm_over_quota" value="1"; " 超额确认" }
                button type="submit" { "设为第一帮扶责任人" }
            }
            p.hint { "原第一帮扶责任人的手机将在下次同步时移除该户，未上传的草稿标记为需移交。" }
        }
        section.card {
            h2 { "其他帮扶干部（第二帮扶责任人）" }
            @if household.secondaries.is_empty() {
                p.muted { "暂无。" }
            }
            @for (cadre_user_id, name) in &household.secondaries {
                form.helper method="post" action=(HELPERS_PATH) {
                    (super::csrf::form_field())
                    (hidden)
                    input type="hidden" name="cadre_user_id" value=(cadre_user_id);
                    input type="hidden" name="action" value="remove";
                    (name) " "
                    button type="submit" title="解除该干部与该户的结对" { "解除" }
                }
            }
            form.helper method="post" action=(HELPERS_PATH) {
                (super::csrf::form_field())
                (hidden)
                input type="hidden" name="action" value="add";
                select name="cadre_user_id" required aria-label="添加帮扶干部" {
                    option value="" { "选择干部（本乡镇在前）" }
                    @for cadre in &pairing.cadres {
                        @if !paired(&cadre.cadre.user_id) {
                            option value=(cadre.cadre.user_id) { (cadre_option_label(cadre)) }
                        }
                    }
                }
                " "
                button type="submit" { "添加帮扶干部" }
            }
            p.hint { "帮扶干部的手机将在下次同步时收到该户；解除后将移除该户。帮扶干部不计入8741上限。" }
        }
    }
}

/// The confirmation lines after an assignment or a helper change.
fn notices(assigned: bool, helper: Option<&str>) -> Markup {
    html! {
        @if assigned {
            div.notice.info role="status" { "已更新第一帮扶责任人。原干部的手机将在下次同步时移除该户。" }
        }
        @match helper {
            Some("added") => div.notice.info role="status" { "已添加帮扶干部。该干部的手机将在下次同步时收到该户。" },
            Some("removed") => div.notice.info role="status" { "已解除帮扶干部结对。该干部的手机将在下次同步时移除该户。" },
            _ => {}
        }
    }
}

fn names(cadres: &[(String, String)]) -> String {
    cadres
        .iter()
        .map(|(_, name)| name.as_str())
        .collect::<Vec<_>>()
        .join("、")
}

fn pairings_view(
    overview: &PairingsOverview,
    township: Option<&str>,
    village: Option<&str>,
    assigned: bool,
    helper: Option<&str>,
) -> Markup {
    html! {
        h1 { "结对管理" }
        p.hint {
            "8741 结对上限（通渭模式）：正县级 8 户、副县级 7 户、科级 4 户、一般干部 1 户；"
            "无职级的乡镇驻村干部兜底联系，不设上限。每户必须有且只有一名第一帮扶责任人。"
        }
        (notices(assigned, helper))
        form.filters method="get" action=(PAIRINGS_PATH) {
            label { "乡镇 "
                select name="township" {
                    option value="" { "全部" }
                    @for area in &overview.townships {
                        option value=(area.area_id) selected[township == Some(area.area_id.as_str())] { (area.name) }
                    }
                }
            }
            @if !overview.villages.is_empty() {
                " "
                label { "村 "
                    select name="village" {
                        option value="" { "全部" }
                        @for area in &overview.villages {
                            option value=(area.area_id) selected[village == Some(area.area_id.as_str())] { (area.name) }
                        }
                    }
                }
            }
            " "
            button type="submit" { "筛选" }
        }
        section.card {
            h2 { "第一帮扶责任人异常的农户（" (overview.problems.len()) "户）" }
            @if overview.problems.is_empty() {
                p { "没有异常：每户都有且只有一名第一帮扶责任人。" }
            } @else {
                table.pairing-problems {
                    thead { tr { th { "乡镇" } th { "村" } th { "户主" } th { "第一帮扶责任人" } th { "问题" } } }
                    tbody {
                        @for row in &overview.problems {
                            tr {
                                td { (row.household.township_name) }
                                td { (row.household.village_name) }
                                td { (super::views::household_name_link(&row.household.household_id, &row.household.head_name)) }
                                td { (names(&row.household.primaries)) }
                                td { (problem_cell(row)) }
                            }
                        }
                    }
                }
            }
        }
        section.card {
            h2 { "帮扶干部结对情况" }
            table.pairing-cadres {
                thead { tr { th { "乡镇" } th { "姓名" } th { "电话" } th { "职级" } th { "上限" } th { "第一责任户数" } th { "第二责任户数" } th { "状态" } } }
                tbody {
                    @for row in &overview.cadres {
                        tr.over-quota[row.status.is_over()] {
                            td { (row.cadre.township_name) }
                            td {
                                (row.cadre.display_name)
                                " " a.muted href=(super::sessions::devices_path(&row.cadre.user_id)) { "在用设备" }
                            }
                            td { (mask_phone(&row.cadre.phone)) }
                            td { (row.cadre.rank.map_or("无职级（兜底）", |rank| rank.label_zh())) }
                            td { (row.status.quota.map_or("不限".to_owned(), |quota| quota.to_string())) }
                            td { (row.status.count) }
                            td { (row.cadre.secondary_count) }
                            td {
                                @if row.status.is_over() {
                                    span.badge.warn { "超额 " (row.status.over_by()) " 户" }
                                } @else { "正常" }
                            }
                        }
                    }
                }
            }
        }
        @if township.is_some() {
            section.card {
                h2 { "农户与帮扶干部" }
                table.pairing-households {
                    thead { tr { th { "村" } th { "户主" } th { "第一帮扶责任人" } th { "其他帮扶干部（第二帮扶责任人）" } th { "状态" } th { "结对" } } }
                    tbody {
                        @for row in &overview.households {
                            tr {
                                td { (row.household.village_name) }
                                td { (super::views::household_name_link(&row.household.household_id, &row.household.head_name)) }
                                td { (names(&row.household.primaries)) }
                                td { (names(&row.household.secondaries)) }
                                td { (problem_cell(row)) }
                                td { a href=(household_path(&row.household.household_id)) { "调整结对 →" } }
                            }
                        }
                    }
                }
            }
        } @else {
            p.hint { "选择乡镇后可逐户调整结对（第一帮扶责任人与其他帮扶干部）。" }
        }
    }
}

/// Fields of the assign form. Defaults turn a missing field into a typed error.
#[derive(Debug, Default, Deserialize)]
pub struct AssignForm {
    #[serde(default)]
    household_id: String,
    #[serde(default)]
    cadre_user_id: String,
    #[serde(default)]
    confirm_over_quota: Option<String>,
    #[serde(default)]
    township: Option<String>,
    #[serde(default)]
    village: Option<String>,
    /// `household`: return to the household's pairing page.
    #[serde(default)]
    return_to: Option<String>,
}

/// Where a form returns to: the household's pairing page when it was sent from there,
/// else the pairings list with the form's filters.
fn form_back(
    household_id: &str,
    return_to: Option<&String>,
    township: Option<&String>,
    village: Option<&String>,
) -> String {
    if return_to.map(|text| text.trim()) == Some("household") && !household_id.trim().is_empty() {
        return household_path(household_id.trim());
    }
    back_path(township, village)
}

/// The pairings page with a form's filters, to return to.
fn back_path(township: Option<&String>, village: Option<&String>) -> String {
    let mut parameters = form_urlencoded::Serializer::new(String::new());
    if let Some(township) = non_empty(township.map(String::as_str)) {
        parameters.append_pair("township", &township);
    }
    if let Some(village) = non_empty(village.map(String::as_str)) {
        parameters.append_pair("village", &village);
    }
    let parameters = parameters.finish();
    if parameters.is_empty() {
        PAIRINGS_PATH.to_owned()
    } else {
        format!("{PAIRINGS_PATH}?{parameters}")
    }
}

/// `POST /console/pairings/assign`.
pub async fn assign_submit(
    State(state): State<ConsoleState>,
    CountyAdmin(principal): CountyAdmin,
    Form(form): Form<AssignForm>,
) -> Result<Response, ConsoleError> {
    let back = form_back(
        &form.household_id,
        form.return_to.as_ref(),
        form.township.as_ref(),
        form.village.as_ref(),
    );
    let request = AssignRequest {
        household_id: form.household_id.trim().to_owned(),
        cadre_user_id: form.cadre_user_id.trim().to_owned(),
        confirm_over_quota: form.confirm_over_quota.as_deref() == Some("1"),
    };
    pairings::assign_primary(&state.app, &principal, &request)
        .await
        .map_err(|error| ConsoleError::with_back_link(error, back.clone()))?;
    let separator = if back.contains('?') { '&' } else { '?' };
    Ok(Redirect::to(&format!("{back}{separator}assigned=1")).into_response())
}

/// Fields of the helper forms. Defaults turn a missing field into a typed error.
#[derive(Debug, Default, Deserialize)]
pub struct HelperForm {
    #[serde(default)]
    household_id: String,
    #[serde(default)]
    cadre_user_id: String,
    /// `add` or `remove`.
    #[serde(default)]
    action: String,
    #[serde(default)]
    township: Option<String>,
    #[serde(default)]
    village: Option<String>,
    /// `household`: return to the household's pairing page.
    #[serde(default)]
    return_to: Option<String>,
}

/// `add` → true, `remove` → false, anything else a typed error.
fn helper_action(action: &str) -> Result<bool, ServiceError> {
    match action.trim() {
        "add" => Ok(true),
        "remove" => Ok(false),
        _ => Err(ServiceError::invalid(
            "action",
            "应为 add（添加）或 remove（解除）",
        )),
    }
}

/// `POST /console/pairings/helpers`.
pub async fn helper_submit(
    State(state): State<ConsoleState>,
    CountyAdmin(principal): CountyAdmin,
    Form(form): Form<HelperForm>,
) -> Result<Response, ConsoleError> {
    let back = form_back(
        &form.household_id,
        form.return_to.as_ref(),
        form.township.as_ref(),
        form.village.as_ref(),
    );
    let outcome = async {
        let request = HelperRequest {
            household_id: form.household_id.trim().to_owned(),
            cadre_user_id: form.cadre_user_id.trim().to_owned(),
            add: helper_action(&form.action)?,
        };
        pairings::set_helper(&state.app, &principal, &request).await
    }
    .await
    .map_err(|error| ConsoleError::with_back_link(error, back.clone()))?;
    let separator = if back.contains('?') { '&' } else { '?' };
    let done = if outcome.added { "added" } else { "removed" };
    Ok(Redirect::to(&format!("{back}{separator}helper={done}")).into_response())
}

/// JSON body of the helper call.
#[derive(Debug, Default, Deserialize)]
pub struct HelperBody {
    #[serde(default)]
    household_id: String,
    #[serde(default)]
    cadre_user_id: String,
    /// `true` adds the helper, `false` ends the pairing.
    add: Option<bool>,
}

/// `POST /console/api/pairings/helpers`.
pub async fn helper_json(
    State(state): State<ConsoleState>,
    ApiCountyAdmin(principal): ApiCountyAdmin,
    body: Result<Json<HelperBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(body) =
        body.map_err(|rejection| ServiceError::invalid("body", rejection.body_text()))?;
    let request = HelperRequest {
        household_id: body.household_id.trim().to_owned(),
        cadre_user_id: body.cadre_user_id.trim().to_owned(),
        add: body
            .add
            .ok_or_else(|| ServiceError::invalid("add", "is required (true or false)"))?,
    };
    let outcome = pairings::set_helper(&state.app, &principal, &request).await?;
    Ok(Json(json!({
        "household_id": request.household_id,
        "cadre_user_id": request.cadre_user_id,
        "head_name": outcome.head_name,
        "cadre_name": outcome.cadre_name,
        "added": outcome.added,
    })))
}

fn overview_json(overview: &PairingsOverview) -> Value {
    let household = |row: &HouseholdRow| {
        json!({
            "household_id": row.household.household_id,
            "head_name": row.household.head_name,
            "township_id": row.household.township_id,
            "village_id": row.household.village_id,
            "village_name": row.household.village_name,
            "primary_cadre_ids": row.household.primaries.iter().map(|(id, _)| id).collect::<Vec<_>>(),
            "secondary_cadre_ids": row.household.secondaries.iter().map(|(id, _)| id).collect::<Vec<_>>(),
            "problem": row.problem.map(|problem| problem.label_zh()),
        })
    };
    json!({
        "cadres": overview.cadres.iter().map(|row| json!({
            "user_id": row.cadre.user_id,
            "display_name": row.cadre.display_name,
            "phone": mask_phone(&row.cadre.phone),
            "township_id": row.cadre.township_id,
            "rank": row.cadre.rank.map(|rank| rank.label_zh()),
            "quota": row.status.quota,
            "primary_count": row.status.count,
            "secondary_count": row.cadre.secondary_count,
            "over_by": row.status.over_by(),
        })).collect::<Vec<_>>(),
        "problems": overview.problems.iter().map(household).collect::<Vec<_>>(),
        "households": overview.households.iter().map(household).collect::<Vec<_>>(),
    })
}

/// `GET /console/api/pairings`.
pub async fn pairings_json(
    State(state): State<ConsoleState>,
    ApiCountyAdmin(principal): ApiCountyAdmin,
    Query(query): Query<PairingsQuery>,
) -> Result<Json<Value>, ApiError> {
    let overview = pairings::overview(
        &state.app,
        &principal,
        non_empty(query.township.as_deref()),
        non_empty(query.village.as_deref()),
    )
    .await?;
    Ok(Json(overview_json(&overview)))
}

/// JSON body of the assign call.
#[derive(Debug, Default, Deserialize)]
pub struct AssignBody {
    #[serde(default)]
    household_id: String,
    #[serde(default)]
    cadre_user_id: String,
    #[serde(default)]
    confirm_over_quota: bool,
}

/// `POST /console/api/pairings/assign`.
pub async fn assign_json(
    State(state): State<ConsoleState>,
    ApiCountyAdmin(principal): ApiCountyAdmin,
    body: Result<Json<AssignBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    // A malformed body gets the API's `{error, field}` 400, not axum's plain-text rejection.
    let Json(body) =
        body.map_err(|rejection| ServiceError::invalid("body", rejection.body_text()))?;
    let outcome = assign(&state, &principal, body).await?;
    Ok(Json(outcome))
}

async fn assign(
    state: &ConsoleState,
    principal: &Principal,
    body: AssignBody,
) -> Result<Value, ApiError> {
    let request = AssignRequest {
        household_id: body.household_id.trim().to_owned(),
        cadre_user_id: body.cadre_user_id.trim().to_owned(),
        confirm_over_quota: body.confirm_over_quota,
    };
    let outcome = pairings::assign_primary(&state.app, principal, &request).await?;
    Ok(json!({
        "household_id": outcome.household_id,
        "head_name": outcome.head_name,
        "cadre_name": outcome.cadre_name,
        "over_quota": outcome.over_quota,
    }))
}
