//! Account management use case (账号管理, issue 12 §3): the county administrator creates,
//! edits, disables and re-enables accounts of the county, resets passwords to one-time
//! passwords, and changes roles and areas. Every change is checked by the separation-of-
//! duties rules in `model::policy` and written to the audit log (审计日志).
//!
//! A cadre who leaves is disabled: their sessions end and their pairings end with the
//! reassignment hand-over (their phones receive tombstones; each household they were the
//! 第一帮扶责任人 of shows on the pairings page as needing a new one).

use fieldsync_model::codes::{CadreRank, CodeList, Role};
use fieldsync_model::policy::{self, AccountAction};
use time::OffsetDateTime;

use crate::AppState;
use crate::auth;
use crate::error::ServiceError;
use crate::store::accounts::{
    Account, AccountEdit, AccountFilter, CadreDetails, DisableOutcome, NewAccount,
};
use crate::store::{Area, Principal, StoreError};

pub const ACTION_ACCOUNT_CREATE: &str = "account_create";
pub const ACTION_ACCOUNT_EDIT: &str = "account_edit";
pub const ACTION_ACCOUNT_DISABLE: &str = "account_disable";
pub const ACTION_ACCOUNT_ENABLE: &str = "account_enable";
pub const ACTION_ACCOUNT_PASSWORD_RESET: &str = "account_password_reset";
/// The county admin opened an account's edit form, which shows its full ID number and phone.
pub const ACTION_ACCOUNT_VIEW_FULL: &str = "account_view_full";

/// What the account form carries (create and edit; the username only on create).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AccountForm {
    pub username: String,
    pub display_name: String,
    pub role: Option<Role>,
    pub area_id: String,
    pub phone: String,
    pub rank: Option<CadreRank>,
    pub unit: String,
    pub id_number: String,
    pub team_member: bool,
    pub active_from: String,
    pub active_to: String,
}

/// A created account and its one-time password, shown once to the administrator.
#[derive(Debug, Clone)]
pub struct CreatedAccount {
    pub account: Account,
    pub one_time_password: String,
}

/// The county of the administrator, or a refusal for every other role.
fn administrator_county<'a>(
    principal: &'a Principal,
    subject_user_id: &str,
    action: AccountAction,
) -> Result<&'a str, ServiceError> {
    policy::check_account_duty(principal.role, &principal.user_id, subject_user_id, action)
        .map_err(|refusal| ServiceError::PermissionDenied(refusal.to_string()))?;
    Ok(&principal.area_id)
}

/// An area of the county (the county itself, a township, or a village), else `NotFound`.
pub async fn area_in_county(
    app: &AppState,
    county: &str,
    area_id: &str,
) -> Result<Area, ServiceError> {
    let not_found = || ServiceError::NotFound(format!("area {area_id} (未找到该区域)"));
    let area = app.store.get_area(area_id).await?.ok_or_else(not_found)?;
    let mut ancestor = Some(area.area_id.clone());
    // County, township, village: at most two steps up.
    for _ in 0..3 {
        match ancestor {
            Some(ref id) if id == county => return Ok(area),
            Some(id) => ancestor = app.store.get_area(&id).await?.and_then(|a| a.parent_id),
            None => break,
        }
    }
    Err(not_found())
}

/// Check and normalise a form: the role's area level, a valid ID number, a plausible phone,
/// dates, a rank only for cadres.
async fn checked(
    app: &AppState,
    county: &str,
    form: &AccountForm,
) -> Result<(Role, CadreDetails), ServiceError> {
    let role = form
        .role
        .ok_or_else(|| ServiceError::invalid("role", "请选择角色"))?;
    if form.display_name.trim().is_empty() {
        return Err(ServiceError::invalid("display_name", "姓名不能为空"));
    }
    let area = area_in_county(app, county, form.area_id.trim()).await?;
    let level = policy::area_level_for_role(role);
    if area.level != level {
        return Err(ServiceError::invalid(
            "area_id",
            format!(
                "{}的区域应为{}，不是{} ({} accounts belong to a {level})",
                role.label_zh(),
                level_zh(level),
                level_zh(&area.level),
                role.as_str()
            ),
        ));
    }
    let id_number = form.id_number.trim().to_uppercase();
    if !id_number.is_empty() {
        fieldsync_model::id_number::validate(&id_number)
            .map_err(|error| ServiceError::invalid("id_number", error.to_string()))?;
    }
    let phone = form.phone.trim();
    let phone_ok = phone.is_empty()
        || (phone.len() <= 20
            && phone
                .chars()
                .all(|character| character.is_ascii_digit() || character == '-')
            && phone.chars().filter(char::is_ascii_digit).count() >= 7);
    if !phone_ok {
        return Err(ServiceError::invalid(
            "phone",
            "电话应为手机号或座机号 (digits and '-', at least 7 digits)",
        ));
    }
    for (field, date) in [
        ("active_from", &form.active_from),
        ("active_to", &form.active_to),
    ] {
        if !date.trim().is_empty() && fieldsync_model::roster::parse_date(date.trim()).is_none() {
            return Err(ServiceError::invalid(field, "日期格式应为 YYYY-MM-DD"));
        }
    }
    if form.rank.is_some() && role != Role::Cadre {
        return Err(ServiceError::invalid(
            "rank",
            "只有帮扶干部有职级 (rank is for cadres)",
        ));
    }
    let details = CadreDetails {
        unit: form.unit.trim().to_owned(),
        id_number,
        team_member: form.team_member,
        active_from: normalised_date(&form.active_from),
        active_to: normalised_date(&form.active_to),
    };
    Ok((role, details))
}

fn normalised_date(text: &str) -> String {
    fieldsync_model::roster::parse_date(text.trim()).unwrap_or_default()
}

/// 县 / 乡镇 / 村 for an area level.
pub fn level_zh(level: &str) -> &'static str {
    match level {
        "county" => "县",
        "township" => "乡镇",
        "village" => "村",
        _ => "区域",
    }
}

fn conflict_to_invalid(error: StoreError) -> ServiceError {
    match error {
        StoreError::Conflict(message) if message.contains("ID number") => {
            ServiceError::invalid("id_number", format!("该身份证号已有账号 ({message})"))
        }
        StoreError::Conflict(message) => {
            ServiceError::invalid("username", format!("用户名已被使用 ({message})"))
        }
        other => other.into(),
    }
}

/// The accounts of the county: for its administrator, and read-only for its auditor.
pub async fn list(
    app: &AppState,
    principal: &Principal,
    role: Option<Role>,
    include_disabled: bool,
) -> Result<Vec<Account>, ServiceError> {
    let county = match principal.role {
        Role::Auditor => &principal.area_id,
        _ => administrator_county(principal, "", AccountAction::Manage)?,
    };
    Ok(app
        .store
        .accounts(&AccountFilter {
            area_id: county.to_owned(),
            role,
            include_disabled,
        })
        .await?)
}

/// One account of the administrator's county; accounts elsewhere are answered as unknown.
pub async fn get(
    app: &AppState,
    principal: &Principal,
    user_id: &str,
) -> Result<Account, ServiceError> {
    let county = administrator_county(principal, user_id, AccountAction::Manage)?;
    account_in_county(app, county, user_id).await
}

/// One account for its edit form, which shows the account's full ID number (身份证号) and
/// phone so that the administrator can correct them: seeing a full value is an audited
/// action (DESIGN §7), so the view is recorded before the account is returned, and a view
/// that cannot be recorded is refused. Lists show the same fields masked.
pub async fn get_for_edit(
    app: &AppState,
    principal: &Principal,
    user_id: &str,
) -> Result<Account, ServiceError> {
    let account = get(app, principal, user_id).await?;
    audit(
        app,
        principal,
        ACTION_ACCOUNT_VIEW_FULL,
        &account,
        format!(
            "查看账号 {} 的完整身份证号和电话 (account opened for editing, full values shown)",
            account.username
        ),
        app.clock.now(),
    )
    .await?;
    Ok(account)
}

async fn account_in_county(
    app: &AppState,
    county: &str,
    user_id: &str,
) -> Result<Account, ServiceError> {
    let not_found = || ServiceError::NotFound(format!("account {user_id} (未找到该账号)"));
    let account = app.store.account(user_id).await?.ok_or_else(not_found)?;
    area_in_county(app, county, &account.area_id)
        .await
        .map_err(|_| not_found())?;
    Ok(account)
}

async fn hash_on_pool(app: &AppState, password: &str) -> Result<String, ServiceError> {
    app.login_guard.pool.hash(password).await.map_err(|error| {
        tracing::error!(%error, "password hashing failed");
        ServiceError::Internal
    })
}

async fn audit(
    app: &AppState,
    principal: &Principal,
    action: &str,
    subject: &Account,
    detail: String,
    now: OffsetDateTime,
) -> Result<(), ServiceError> {
    app.store
        .append_audit(auth::audit_record(
            principal,
            action,
            &subject.user_id,
            &format!("username={}", subject.username),
            detail,
            now,
        ))
        .await?;
    Ok(())
}

/// Create an account with a one-time password (must be changed at first login).
pub async fn create(
    app: &AppState,
    principal: &Principal,
    form: &AccountForm,
) -> Result<CreatedAccount, ServiceError> {
    let county = administrator_county(principal, "", AccountAction::Manage)?.to_owned();
    let username = form.username.trim().to_owned();
    policy::check_username(&username)
        .map_err(|error| ServiceError::invalid("username", error.to_string()))?;
    let (role, details) = checked(app, &county, form).await?;
    let one_time_password = crate::setup::one_time_password();
    let now = app.clock.now();
    let user_id = uuid::Uuid::now_v7().to_string();
    app.store
        .create_account(NewAccount {
            user_id: user_id.clone(),
            username,
            display_name: form.display_name.trim().to_owned(),
            role,
            area_id: form.area_id.trim().to_owned(),
            phone: form.phone.trim().to_owned(),
            rank: form.rank,
            details,
            password_hash: hash_on_pool(app, &one_time_password).await?,
            must_change_password: true,
            created_at: now,
        })
        .await
        .map_err(conflict_to_invalid)?;
    let account = account_in_county(app, &county, &user_id).await?;
    audit(
        app,
        principal,
        ACTION_ACCOUNT_CREATE,
        &account,
        format!(
            "新建账号 {}（{}，{}）(account created)",
            account.username,
            account.display_name,
            account.role.label_zh()
        ),
        now,
    )
    .await?;
    Ok(CreatedAccount {
        account,
        one_time_password,
    })
}

/// Edit name, contact, role, area and roster fields. Changing one's own role or area is
/// refused (separation of duties).
pub async fn edit(
    app: &AppState,
    principal: &Principal,
    user_id: &str,
    form: &AccountForm,
) -> Result<Account, ServiceError> {
    let county = administrator_county(principal, user_id, AccountAction::Manage)?.to_owned();
    let before = account_in_county(app, &county, user_id).await?;
    let (role, details) = checked(app, &county, form).await?;
    if role != before.role || form.area_id.trim() != before.area_id {
        administrator_county(principal, user_id, AccountAction::DisableOrRescope)?;
    }
    app.store
        .edit_account(
            user_id,
            AccountEdit {
                display_name: form.display_name.trim().to_owned(),
                phone: form.phone.trim().to_owned(),
                role,
                area_id: form.area_id.trim().to_owned(),
                rank: form.rank,
                details,
            },
        )
        .await
        .map_err(conflict_to_invalid)?;
    let after = account_in_county(app, &county, user_id).await?;
    let mut changes = Vec::new();
    if before.role != after.role {
        changes.push(format!(
            "角色 {} → {}",
            before.role.label_zh(),
            after.role.label_zh()
        ));
    }
    if before.area_id != after.area_id {
        changes.push(format!("区域 {} → {}", before.area_id, after.area_id));
    }
    if before.display_name != after.display_name {
        changes.push("姓名".to_owned());
    }
    if before.phone != after.phone {
        changes.push("电话".to_owned());
    }
    if before.details != after.details || before.rank != after.rank {
        changes.push("花名册信息".to_owned());
    }
    audit(
        app,
        principal,
        ACTION_ACCOUNT_EDIT,
        &after,
        format!(
            "修改账号 {}：{} (account edited)",
            after.username,
            changes.join("，")
        ),
        app.clock.now(),
    )
    .await?;
    Ok(after)
}

/// Disable an account: sessions end, a cadre's pairings end with the hand-over.
pub async fn disable(
    app: &AppState,
    principal: &Principal,
    user_id: &str,
) -> Result<DisableOutcome, ServiceError> {
    let county = administrator_county(principal, user_id, AccountAction::DisableOrRescope)?;
    let account = account_in_county(app, county, user_id).await?;
    let now = app.clock.now();
    let outcome = app
        .store
        .disable_account(user_id, now)
        .await
        .map_err(already_to_precondition)?;
    audit(
        app,
        principal,
        ACTION_ACCOUNT_DISABLE,
        &account,
        format!(
            "停用账号 {}：注销 {} 个登录，解除 {} 个结对 (account disabled)",
            account.username, outcome.sessions_ended, outcome.pairings_ended
        ),
        now,
    )
    .await?;
    Ok(outcome)
}

/// Re-enable a disabled account (its pairings stay ended).
pub async fn enable(
    app: &AppState,
    principal: &Principal,
    user_id: &str,
) -> Result<(), ServiceError> {
    let county = administrator_county(principal, user_id, AccountAction::DisableOrRescope)?;
    let account = account_in_county(app, county, user_id).await?;
    app.store
        .enable_account(user_id)
        .await
        .map_err(already_to_precondition)?;
    audit(
        app,
        principal,
        ACTION_ACCOUNT_ENABLE,
        &account,
        format!("启用账号 {} (account re-enabled)", account.username),
        app.clock.now(),
    )
    .await
}

/// Disabling a disabled account (or enabling an active one): a stale page, said plainly.
fn already_to_precondition(error: StoreError) -> ServiceError {
    match error {
        StoreError::Conflict(message) => ServiceError::invalid(
            "account",
            format!("账号状态已变化，请刷新页面 (account state changed: {message})"),
        ),
        other => other.into(),
    }
}

/// Reset a password to a new one-time password (returned, to hand over in person); every
/// session of the account ends.
pub async fn reset_password(
    app: &AppState,
    principal: &Principal,
    user_id: &str,
) -> Result<String, ServiceError> {
    let county = administrator_county(principal, user_id, AccountAction::Manage)?;
    let account = account_in_county(app, county, user_id).await?;
    let one_time_password = crate::setup::one_time_password();
    let now = app.clock.now();
    let ended = app
        .store
        .reset_password(user_id, &hash_on_pool(app, &one_time_password).await?, now)
        .await?;
    audit(
        app,
        principal,
        ACTION_ACCOUNT_PASSWORD_RESET,
        &account,
        format!(
            "重置密码 {}：注销 {ended} 个登录 (password reset to a one-time password)",
            account.username
        ),
        now,
    )
    .await?;
    Ok(one_time_password)
}
