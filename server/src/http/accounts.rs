//! 账号管理 (account management) pages for the county administrator: the county's accounts
//! by role, a new account, an account's page with 编辑 / 重置密码 / 停用 / 启用. A created or
//! reset account's one-time password is shown once, on the page that answers the form, to
//! hand over in person (it is never stored in clear and never shown again).
//!
//! Routes: `GET|POST /console/accounts`, `GET /console/accounts/new`,
//! `GET|POST /console/accounts/{user_id}`, `POST /console/accounts/{user_id}/disable`,
//! `POST /console/accounts/{user_id}/enable`, `POST /console/accounts/{user_id}/reset-password`,
//! and the JSON list `GET /console/api/accounts`.

use axum::Form;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use fieldsync_model::access::mask_phone;
use fieldsync_model::codes::{CadreRank, CodeList, Role};
use fieldsync_model::id_number;
use maud::{Markup, html};
use serde::Deserialize;

use super::display::beijing_minutes;
use super::views::{Nav, layout};
use super::{ApiCountyReader, ApiError, ConsoleError, ConsoleState, CountyAdmin, CountyReader};
use crate::accounts::{self, AccountForm};
use crate::error::ServiceError;
use crate::store::accounts::Account;
use crate::store::{Area, Principal};

/// Path of the accounts list.
pub const ACCOUNTS_PATH: &str = "/console/accounts";

/// `/console/accounts/{user_id}`.
pub fn account_path(user_id: &str) -> String {
    format!(
        "{ACCOUNTS_PATH}/{}",
        super::sessions::utf8_percent_encode_path(user_id)
    )
}

/// Filters of the list.
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    role: String,
    #[serde(default)]
    disabled: String,
}

/// The account form as posted (every field text; checked by the use case).
#[derive(Debug, Default, Deserialize)]
pub struct AccountFormFields {
    #[serde(default)]
    username: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    area_id: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    rank: String,
    #[serde(default)]
    unit: String,
    #[serde(default)]
    id_number: String,
    #[serde(default)]
    team_member: String,
    #[serde(default)]
    active_from: String,
    #[serde(default)]
    active_to: String,
}

impl AccountFormFields {
    fn to_form(&self) -> AccountForm {
        AccountForm {
            username: self.username.clone(),
            display_name: self.display_name.clone(),
            role: Role::parse(self.role.trim()),
            area_id: self.area_id.clone(),
            phone: self.phone.clone(),
            rank: self
                .rank
                .trim()
                .parse::<i32>()
                .ok()
                .and_then(CadreRank::from_code),
            unit: self.unit.clone(),
            id_number: self.id_number.clone(),
            team_member: !self.team_member.is_empty(),
            active_from: self.active_from.clone(),
            active_to: self.active_to.clone(),
        }
    }

    fn from_account(account: &Account) -> Self {
        Self {
            username: account.username.clone(),
            display_name: account.display_name.clone(),
            role: account.role.as_str().to_owned(),
            area_id: account.area_id.clone(),
            phone: account.phone.clone(),
            rank: account
                .rank
                .map(|rank| rank.code().to_string())
                .unwrap_or_default(),
            unit: account.details.unit.clone(),
            id_number: account.details.id_number.clone(),
            team_member: if account.details.team_member {
                "1".into()
            } else {
                String::new()
            },
            active_from: account.details.active_from.clone(),
            active_to: account.details.active_to.clone(),
        }
    }
}

/// Banners after an action on an account's page.
#[derive(Debug, Default, Deserialize)]
pub struct AccountQuery {
    #[serde(default)]
    saved: Option<u8>,
    #[serde(default)]
    disabled: Option<String>,
    #[serde(default)]
    enabled: Option<u8>,
}

/// The county's areas for the area picker: the county, its townships, their villages.
async fn county_areas(
    state: &ConsoleState,
    principal: &Principal,
) -> Result<Vec<Area>, ServiceError> {
    let store = &state.app.store;
    let mut areas = Vec::new();
    if let Some(county) = store.get_area(&principal.area_id).await? {
        areas.push(county);
    }
    for township in store.list_areas(Some(&principal.area_id)).await? {
        let villages = store.list_areas(Some(&township.area_id)).await?;
        areas.push(township);
        areas.extend(villages);
    }
    Ok(areas)
}

fn area_name(areas: &[Area], area_id: &str) -> String {
    areas
        .iter()
        .find(|area| area.area_id == area_id)
        .map_or_else(|| area_id.to_owned(), |area| area.name.clone())
}

/// `GET /console/accounts`: 账号管理.
pub async fn list_page(
    State(state): State<ConsoleState>,
    CountyReader(principal): CountyReader,
    Query(query): Query<ListQuery>,
) -> Result<Response, ConsoleError> {
    let role = Role::parse(query.role.trim());
    let include_disabled = !query.disabled.is_empty();
    let accounts = accounts::list(&state.app, &principal, role, include_disabled).await?;
    let areas = county_areas(&state, &principal).await?;
    let administrator = principal.role == Role::County;
    Ok(layout(
        "账号管理",
        Some(&principal),
        Nav::Accounts,
        html! {
            section.card {
                h1 { "账号管理" }
                p.muted { "新建、编辑、停用账号和重置密码。新账号和重置后的密码都是一次性密码，首次登录须修改。帮扶干部也可用“帮扶干部花名册”批量导入。" }
                // The auditor reads the list; managing accounts is the administrator's.
                @if administrator {
                    p {
                        a.button.primary href=(format!("{ACCOUNTS_PATH}/new")) { "新建账号" }
                        " "
                        a.button href=(super::cadre_import::CADRE_IMPORT_PATH) { "导入帮扶干部花名册" }
                    }
                }
                form.filters method="get" action=(ACCOUNTS_PATH) {
                    label { "角色 "
                        select name="role" {
                            option value="" { "全部" }
                            @for candidate in Role::ALL {
                                option value=(candidate.as_str()) selected[role == Some(*candidate)] { (candidate.label_zh()) }
                            }
                        }
                    }
                    label { input type="checkbox" name="disabled" value="1" checked[include_disabled]; " 含已停用" }
                    button type="submit" { "筛选" }
                }
                div.table-scroll {
                    table.accounts {
                        thead { tr { th { "用户名" } th { "姓名" } th { "角色" } th { "区域" } th { "电话" } th { "状态" } } }
                        tbody {
                            @for account in &accounts {
                                tr {
                                    td {
                                        @if administrator {
                                            a href=(account_path(&account.user_id)) { (account.username) }
                                        } @else {
                                            (account.username)
                                        }
                                    }
                                    td { (account.display_name) }
                                    td { (account.role.label_zh()) }
                                    td { (area_name(&areas, &account.area_id)) }
                                    td { (mask_phone(&account.phone)) }
                                    td { (status_badge(account)) }
                                }
                            }
                        }
                    }
                }
                p.muted { "共 " (accounts.len()) " 个账号" }
            }
        },
    )
    .into_response())
}

fn status_badge(account: &Account) -> Markup {
    html! {
        @if account.disabled_at.is_some() {
            span.badge.warn { "已停用" }
        } @else if account.must_change_password {
            span.badge { "待修改初始密码" }
        } @else {
            span.badge.ok { "正常" }
        }
    }
}

/// `GET /console/accounts/new`: 新建账号.
pub async fn new_page(
    State(state): State<ConsoleState>,
    CountyAdmin(principal): CountyAdmin,
) -> Result<Response, ConsoleError> {
    let areas = county_areas(&state, &principal).await?;
    Ok(render_form(
        &principal,
        &areas,
        None,
        &AccountFormFields::default(),
        None,
    )
    .into_response())
}

/// `POST /console/accounts`: create; the answer shows the one-time password once.
pub async fn create_submit(
    State(state): State<ConsoleState>,
    CountyAdmin(principal): CountyAdmin,
    Form(fields): Form<AccountFormFields>,
) -> Result<Response, ConsoleError> {
    match accounts::create(&state.app, &principal, &fields.to_form()).await {
        Ok(created) => Ok(render_one_time_password(
            &principal,
            &created.account,
            &created.one_time_password,
            "账号已创建",
        )
        .into_response()),
        Err(ServiceError::InvalidArgument { message, .. }) => {
            let areas = county_areas(&state, &principal).await?;
            Ok((
                StatusCode::BAD_REQUEST,
                render_form(&principal, &areas, None, &fields, Some(&message)),
            )
                .into_response())
        }
        Err(other) => Err(other.into()),
    }
}

/// `GET /console/accounts/{user_id}`: the account, its form and actions.
pub async fn account_page(
    State(state): State<ConsoleState>,
    CountyAdmin(principal): CountyAdmin,
    Path(user_id): Path<String>,
    Query(query): Query<AccountQuery>,
) -> Result<Response, ConsoleError> {
    let account = accounts::get_for_edit(&state.app, &principal, &user_id).await?;
    let areas = county_areas(&state, &principal).await?;
    let notice = if query.saved.is_some() {
        Some("已保存。".to_owned())
    } else if let Some(summary) = query.disabled {
        Some(format!("账号已停用（{summary}）。"))
    } else if query.enabled.is_some() {
        Some("账号已启用。原有结对不会恢复，请在结对管理中重新设置。".to_owned())
    } else {
        None
    };
    Ok(render_form(
        &principal,
        &areas,
        Some((&account, notice.as_deref())),
        &AccountFormFields::from_account(&account),
        None,
    )
    .into_response())
}

/// `POST /console/accounts/{user_id}`: save an edit.
pub async fn edit_submit(
    State(state): State<ConsoleState>,
    CountyAdmin(principal): CountyAdmin,
    Path(user_id): Path<String>,
    Form(fields): Form<AccountFormFields>,
) -> Result<Response, ConsoleError> {
    match accounts::edit(&state.app, &principal, &user_id, &fields.to_form()).await {
        Ok(_) => Ok(Redirect::to(&format!("{}?saved=1", account_path(&user_id))).into_response()),
        Err(
            ServiceError::InvalidArgument { message, .. } | ServiceError::PermissionDenied(message),
        ) => {
            let account = accounts::get(&state.app, &principal, &user_id).await?;
            let areas = county_areas(&state, &principal).await?;
            Ok((
                StatusCode::BAD_REQUEST,
                render_form(
                    &principal,
                    &areas,
                    Some((&account, None)),
                    &fields,
                    Some(&message),
                ),
            )
                .into_response())
        }
        Err(other) => Err(other.into()),
    }
}

fn back_to_account(error: ServiceError, user_id: &str) -> ConsoleError {
    ConsoleError::Service {
        error,
        back_to: Some(account_path(user_id)),
    }
}

/// `POST /console/accounts/{user_id}/disable`: 停用.
pub async fn disable_submit(
    State(state): State<ConsoleState>,
    CountyAdmin(principal): CountyAdmin,
    Path(user_id): Path<String>,
) -> Result<Response, ConsoleError> {
    let outcome = accounts::disable(&state.app, &principal, &user_id)
        .await
        .map_err(|error| back_to_account(error, &user_id))?;
    let summary = format!(
        "注销 {} 个登录，解除 {} 个结对",
        outcome.sessions_ended, outcome.pairings_ended
    );
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("disabled", &summary)
        .finish();
    Ok(Redirect::to(&format!("{}?{query}", account_path(&user_id))).into_response())
}

/// `POST /console/accounts/{user_id}/enable`: 启用.
pub async fn enable_submit(
    State(state): State<ConsoleState>,
    CountyAdmin(principal): CountyAdmin,
    Path(user_id): Path<String>,
) -> Result<Response, ConsoleError> {
    accounts::enable(&state.app, &principal, &user_id)
        .await
        .map_err(|error| back_to_account(error, &user_id))?;
    Ok(Redirect::to(&format!("{}?enabled=1", account_path(&user_id))).into_response())
}

/// `POST /console/accounts/{user_id}/reset-password`: 重置密码; the answer shows the new
/// one-time password once.
pub async fn reset_submit(
    State(state): State<ConsoleState>,
    CountyAdmin(principal): CountyAdmin,
    Path(user_id): Path<String>,
) -> Result<Response, ConsoleError> {
    let password = accounts::reset_password(&state.app, &principal, &user_id)
        .await
        .map_err(|error| back_to_account(error, &user_id))?;
    let account = accounts::get(&state.app, &principal, &user_id).await?;
    Ok(render_one_time_password(&principal, &account, &password, "密码已重置").into_response())
}

/// `GET /console/api/accounts`: the county's accounts (phones and ID numbers masked).
pub async fn list_json(
    State(state): State<ConsoleState>,
    ApiCountyReader(principal): ApiCountyReader,
    Query(query): Query<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let accounts = accounts::list(
        &state.app,
        &principal,
        Role::parse(query.role.trim()),
        !query.disabled.is_empty(),
    )
    .await?;
    Ok(Json(serde_json::json!({
        "accounts": accounts.iter().map(|account| serde_json::json!({
            "user_id": account.user_id,
            "username": account.username,
            "display_name": account.display_name,
            "role": account.role.as_str(),
            "area_id": account.area_id,
            "phone": mask_phone(&account.phone),
            "id_number": id_number::mask(&account.details.id_number),
            "rank": account.rank.map(|rank| rank.label_zh()),
            "unit": account.details.unit,
            "team_member": account.details.team_member,
            "disabled": account.disabled_at.is_some(),
            "must_change_password": account.must_change_password,
        })).collect::<Vec<_>>(),
    })))
}

fn render_one_time_password(
    principal: &Principal,
    account: &Account,
    password: &str,
    title: &str,
) -> Markup {
    layout(
        title,
        Some(principal),
        Nav::Accounts,
        html! {
            section.card {
                h1 { (title) }
                div.notice.info role="status" {
                    p { "账号 " strong { (account.username) } "（" (account.display_name) "，" (account.role.label_zh()) "）的一次性密码：" }
                    p.one-time-password { code data-one-time-password { (password) } }
                    p { "请当面交给本人。此密码只显示这一次；本人首次登录后必须修改。" }
                }
                p {
                    button type="button" onclick="window.print()" { "打印" }
                    " "
                    a href=(account_path(&account.user_id)) { "返回账号" }
                    " "
                    a href=(ACCOUNTS_PATH) { "账号列表" }
                }
            }
        },
    )
}

fn render_form(
    principal: &Principal,
    areas: &[Area],
    existing: Option<(&Account, Option<&str>)>,
    fields: &AccountFormFields,
    error: Option<&str>,
) -> Markup {
    let title = if existing.is_some() {
        "编辑账号"
    } else {
        "新建账号"
    };
    let action = existing.map_or_else(
        || ACCOUNTS_PATH.to_owned(),
        |(account, _)| account_path(&account.user_id),
    );
    layout(
        title,
        Some(principal),
        Nav::Accounts,
        html! {
            section.card {
                h1 { (title) }
                @if let Some((account, notice)) = existing {
                    @if let Some(notice) = notice {
                        div.notice.info role="status" { (notice) }
                    }
                    p.muted {
                        "用户名 " strong { (account.username) } " · " (status_badge(account))
                        @if let Some(created_at) = account.created_at { " · 创建于 " (beijing_minutes(created_at)) }
                        @if let Some(disabled_at) = account.disabled_at { " · 停用于 " (beijing_minutes(disabled_at)) }
                    }
                }
                @if let Some(error) = error {
                    div.notice.error role="alert" { (error) }
                }
                form.account-form method="post" action=(action) {
                    (super::csrf::form_field())
                    @if existing.is_none() {
                        label { "用户名（登录名）" input name="username" value=(fields.username) required autocomplete="off"; }
                    }
                    label { "姓名" input name="display_name" value=(fields.display_name) required; }
                    label { "角色"
                        select name="role" required {
                            option value="" { "请选择" }
                            @for role in Role::ALL {
                                option value=(role.as_str()) selected[fields.role == role.as_str()] { (role.label_zh()) }
                            }
                        }
                    }
                    label { "区域（帮扶干部、乡镇审核员：乡镇；村干部：村；县级管理员、审计员：县）"
                        select name="area_id" required {
                            @for area in areas {
                                option value=(area.area_id) selected[fields.area_id == area.area_id] {
                                    (accounts::level_zh(&area.level)) "：" (area.name)
                                }
                            }
                        }
                    }
                    label { "电话" input name="phone" value=(fields.phone) inputmode="tel"; }
                    fieldset {
                        legend { "帮扶干部信息（其他角色可不填）" }
                        label { "职级（8741）"
                            select name="rank" {
                                option value="" { "无" }
                                @for rank in CadreRank::ALL {
                                    option value=(rank.code()) selected[fields.rank == rank.code().to_string()] { (rank.label_zh()) }
                                }
                            }
                        }
                        label { "帮扶单位" input name="unit" value=(fields.unit); }
                        label { "身份证号" input name="id_number" value=(fields.id_number) autocomplete="off"; }
                        label { input type="checkbox" name="team_member" value="1" checked[!fields.team_member.is_empty()]; " 驻村工作队队员" }
                        label { "帮扶开始日期" input type="date" name="active_from" value=(fields.active_from); }
                        label { "帮扶结束日期" input type="date" name="active_to" value=(fields.active_to); }
                    }
                    button.primary type="submit" { (if existing.is_some() { "保存" } else { "创建账号" }) }
                }
                @if let Some((account, _)) = existing {
                    h2 { "账号操作" }
                    div.account-actions {
                        form method="post" action=(format!("{}/reset-password", account_path(&account.user_id))) {
                            (super::csrf::form_field())
                            button type="submit" { "重置密码" }
                        }
                        @if account.disabled_at.is_some() {
                            form method="post" action=(format!("{}/enable", account_path(&account.user_id))) {
                                (super::csrf::form_field())
                                button type="submit" { "启用" }
                            }
                        } @else if account.user_id != principal.user_id {
                            form method="post" action=(format!("{}/disable", account_path(&account.user_id))) {
                                (super::csrf::form_field())
                                button.danger type="submit" { "停用" }
                            }
                        }
                        a href=(super::sessions::devices_path(&account.user_id)) { "在用设备" }
                    }
                    p.muted { "停用后，此人所有登录立即失效；帮扶干部的结对同时解除，其手机在下次同步时移除这些农户，相关农户在结对管理中显示为需要新的第一帮扶责任人。" }
                }
                p { a href=(ACCOUNTS_PATH) { "返回账号列表" } }
            }
        },
    )
}
