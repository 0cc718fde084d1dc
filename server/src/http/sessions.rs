//! Console pages about sessions: a user's devices in use (在用设备) with 注销此设备 /
//! 注销全部设备 (county administrator: any user of the county; township supervisor: the
//! cadres of the township), their JSON twins, and 修改密码 for every console user.
//!
//! Routes: `GET /console/users/{user_id}/devices`,
//! `POST /console/users/{user_id}/devices/{session_id}/revoke`,
//! `POST /console/users/{user_id}/devices/revoke-all`, JSON
//! `GET /console/api/users/{user_id}/devices`,
//! `POST /console/api/users/{user_id}/devices/{session_id}/revoke`,
//! `POST /console/api/users/{user_id}/devices/revoke-all`, and `GET|POST /console/password`.

use axum::Form;
use axum::Json;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use fieldsync_model::codes::{CodeList, Role};
use maud::{Markup, html};
use serde::Deserialize;

use super::display::beijing_minutes;
use super::views::{Nav, layout};
use super::{
    AnyConsoleUser, ApiError, ConsoleError, ConsoleState, api_principal, console_principal,
};
use crate::auth;
use crate::error::ServiceError;
use crate::sessions::{self, RevokeTarget, UserDevices};
use crate::store::{Principal, SessionKind};

/// Path of the password change page.
pub const PASSWORD_PATH: &str = "/console/password";

/// Roles that manage other users' devices.
const DEVICE_ADMIN_ROLES: &[Role] = &[Role::County, Role::Township];

/// `/console/users/{user_id}/devices`.
pub fn devices_path(user_id: &str) -> String {
    format!(
        "/console/users/{}/devices",
        utf8_percent_encode_path(user_id)
    )
}

/// Ids are UUIDs or plain codes; anything else is escaped so a link cannot break out of
/// its path segment.
pub(super) fn utf8_percent_encode_path(segment: &str) -> String {
    segment
        .bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
                (byte as char).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect()
}

/// A county administrator or township supervisor, for HTML pages.
#[derive(Debug, Clone)]
pub struct DeviceAdmin(pub Principal);

impl FromRequestParts<ConsoleState> for DeviceAdmin {
    type Rejection = ConsoleError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ConsoleState,
    ) -> Result<Self, Self::Rejection> {
        console_principal(parts, state, DEVICE_ADMIN_ROLES)
            .await
            .map(Self)
    }
}

/// A county administrator or township supervisor, for the JSON API.
#[derive(Debug, Clone)]
pub struct ApiDeviceAdmin(pub Principal);

impl FromRequestParts<ConsoleState> for ApiDeviceAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ConsoleState,
    ) -> Result<Self, Self::Rejection> {
        api_principal(parts, state, DEVICE_ADMIN_ROLES)
            .await
            .map(Self)
    }
}

/// Banner after a revoke.
#[derive(Debug, Default, Deserialize)]
pub struct DevicesQuery {
    #[serde(default)]
    revoked: Option<u64>,
}

/// `GET /console/users/{user_id}/devices`: 在用设备.
pub async fn devices_page(
    State(state): State<ConsoleState>,
    DeviceAdmin(principal): DeviceAdmin,
    Path(user_id): Path<String>,
    Query(query): Query<DevicesQuery>,
) -> Result<Response, ConsoleError> {
    let devices = sessions::user_devices(&state.app, &principal, &user_id).await?;
    Ok(render_devices(&principal, &devices, query.revoked).into_response())
}

/// `POST /console/users/{user_id}/devices/{session_id}/revoke`: 注销此设备.
pub async fn revoke_one_submit(
    State(state): State<ConsoleState>,
    DeviceAdmin(principal): DeviceAdmin,
    Path((user_id, session_id)): Path<(String, String)>,
) -> Result<Response, ConsoleError> {
    revoke_and_return(&state, &principal, &user_id, RevokeTarget::One(session_id)).await
}

/// `POST /console/users/{user_id}/devices/revoke-all`: 注销全部设备.
pub async fn revoke_all_submit(
    State(state): State<ConsoleState>,
    DeviceAdmin(principal): DeviceAdmin,
    Path(user_id): Path<String>,
) -> Result<Response, ConsoleError> {
    revoke_and_return(&state, &principal, &user_id, RevokeTarget::All).await
}

async fn revoke_and_return(
    state: &ConsoleState,
    principal: &Principal,
    user_id: &str,
    target: RevokeTarget,
) -> Result<Response, ConsoleError> {
    let back = devices_path(user_id);
    let ended = sessions::revoke(&state.app, principal, user_id, &target)
        .await
        .map_err(|error| ConsoleError::with_back_link(error, back.clone()))?;
    Ok(Redirect::to(&format!("{back}?revoked={ended}")).into_response())
}

/// `GET /console/api/users/{user_id}/devices`.
pub async fn devices_json(
    State(state): State<ConsoleState>,
    ApiDeviceAdmin(principal): ApiDeviceAdmin,
    Path(user_id): Path<String>,
) -> Result<Response, ApiError> {
    let devices = sessions::user_devices(&state.app, &principal, &user_id).await?;
    let sessions: Vec<serde_json::Value> = devices
        .sessions
        .iter()
        .map(|session| {
            serde_json::json!({
                "session_id": session.session_id,
                "kind": session.kind.as_str(),
                "device_id": session.device_id,
                "device_name": session.device_name,
                "app_version": session.app_version,
                "first_seen": rfc3339(session.created_at),
                "last_seen": rfc3339(session.last_seen_at),
                "last_ip": session.last_ip,
            })
        })
        .collect();
    Ok(Json(serde_json::json!({
        "user_id": devices.user_id,
        "display_name": devices.display_name,
        "sessions": sessions,
    }))
    .into_response())
}

/// `POST /console/api/users/{user_id}/devices/{session_id}/revoke` → `{"ended": 1}`.
pub async fn revoke_one_json(
    State(state): State<ConsoleState>,
    ApiDeviceAdmin(principal): ApiDeviceAdmin,
    Path((user_id, session_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let ended = sessions::revoke(
        &state.app,
        &principal,
        &user_id,
        &RevokeTarget::One(session_id),
    )
    .await?;
    Ok(Json(serde_json::json!({ "ended": ended })).into_response())
}

/// `POST /console/api/users/{user_id}/devices/revoke-all` → `{"ended": n}`.
pub async fn revoke_all_json(
    State(state): State<ConsoleState>,
    ApiDeviceAdmin(principal): ApiDeviceAdmin,
    Path(user_id): Path<String>,
) -> Result<Response, ApiError> {
    let ended = sessions::revoke(&state.app, &principal, &user_id, &RevokeTarget::All).await?;
    Ok(Json(serde_json::json!({ "ended": ended })).into_response())
}

fn rfc3339(instant: time::OffsetDateTime) -> String {
    instant
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn render_devices(principal: &Principal, devices: &UserDevices, revoked: Option<u64>) -> Markup {
    let base = devices_path(&devices.user_id);
    let title = format!("{}的在用设备", devices.display_name);
    layout(
        &title,
        Some(principal),
        Nav::None,
        html! {
            h1 { (title) }
            p.muted { (devices.role.label_zh()) " · 时间为北京时间。注销后，该设备须重新登录；手机上未上传的记录仍保留在手机上，重新登录后继续上传。" }
            @if let Some(revoked) = revoked {
                div.notice.info role="status" { "已注销 " (revoked) " 个会话。" }
            }
            @if devices.sessions.is_empty() {
                section.card { p.muted { "暂无在用设备。" } }
            } @else {
                table {
                    thead { tr {
                        th { "设备" } th { "应用版本" } th { "首次登录" } th { "最近使用" } th { "最近IP" } th { "" }
                    } }
                    tbody {
                        @for session in &devices.sessions {
                            tr {
                                td {
                                    @if session.kind == SessionKind::Console { "网页审核台" } @else { (session.device_name) }
                                    br; span.muted { (session.device_id) }
                                }
                                td { (session.app_version) }
                                td { (beijing_minutes(session.created_at)) }
                                td { (beijing_minutes(session.last_seen_at)) }
                                td { (session.last_ip) }
                                td {
                                    form method="post" action=(format!("{base}/{}/revoke", utf8_percent_encode_path(&session.session_id))) {
                                        (super::csrf::form_field())
                                        button type="submit" { "注销此设备" }
                                    }
                                }
                            }
                        }
                    }
                }
                form method="post" action=(format!("{base}/revoke-all")) {
                    (super::csrf::form_field())
                    button.primary type="submit" { "注销全部设备" }
                }
            }
        },
    )
}

/// Fields of the password form.
#[derive(Debug, Default, Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    old_password: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    confirm_password: String,
}

/// `GET /console/password`: 修改密码.
pub async fn password_page(AnyConsoleUser(session): AnyConsoleUser) -> Response {
    render_password(&session.principal, None, None).into_response()
}

/// `POST /console/password`: change the password; other sessions of the user end, this
/// console session stays.
pub async fn password_submit(
    State(state): State<ConsoleState>,
    AnyConsoleUser(session): AnyConsoleUser,
    Form(form): Form<PasswordForm>,
) -> Result<Response, ConsoleError> {
    if form.new_password != form.confirm_password {
        return Ok((
            StatusCode::BAD_REQUEST,
            render_password(&session.principal, Some("两次输入的新密码不一致"), None),
        )
            .into_response());
    }
    let outcome = auth::change_password(
        state.app.store.as_ref(),
        &state.app.login_guard.pool,
        &session,
        &form.old_password,
        &form.new_password,
        state.app.clock.now(),
    )
    .await;
    match outcome {
        Ok(ended) => Ok(render_password(
            &session.principal,
            None,
            Some(&format!("密码已修改，已注销其他 {ended} 个登录设备。")),
        )
        .into_response()),
        Err(error @ (auth::AuthError::WeakPassword(_) | auth::AuthError::WrongOldPassword)) => {
            Ok((
                StatusCode::BAD_REQUEST,
                render_password(&session.principal, Some(&error.to_string()), None),
            )
                .into_response())
        }
        Err(other) => Err(ServiceError::from(other).into()),
    }
}

fn render_password(principal: &Principal, error: Option<&str>, done: Option<&str>) -> Markup {
    layout(
        "修改密码",
        Some(principal),
        Nav::None,
        html! {
            section.card.login {
                h1 { "修改密码" }
                p.muted { "新密码至少 " (auth::MIN_PASSWORD_CHARS) " 个字符，且不能与原密码相同。修改后，您在其他设备上的登录将被注销。" }
                @if let Some(error) = error {
                    div.notice.error role="alert" { (error) }
                }
                @if let Some(done) = done {
                    div.notice.info role="status" { (done) }
                }
                form method="post" action=(PASSWORD_PATH) {
                    (super::csrf::form_field())
                    label { "原密码" input type="password" name="old_password" autocomplete="current-password" required; }
                    label { "新密码" input type="password" name="new_password" autocomplete="new-password" minlength=(auth::MIN_PASSWORD_CHARS) required; }
                    label { "确认新密码" input type="password" name="confirm_password" autocomplete="new-password" required; }
                    button.primary type="submit" { "修改密码" }
                }
            }
        },
    )
}
