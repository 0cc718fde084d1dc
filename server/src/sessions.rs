//! Sessions and devices (在用设备) as staff see them: a user's live sessions, and revoking
//! one or all of them (注销设备), each revoke audited. Scope: a county administrator manages
//! every user of the county, a township supervisor the cadres of the township; anyone else,
//! or a user outside that area, is "not found" so ids reveal nothing.

use fieldsync_model::access::ACTION_SESSION_REVOKE;
use fieldsync_model::codes::Role;
use time::OffsetDateTime;

use crate::AppState;
use crate::auth::audit_record;
use crate::error::ServiceError;
use crate::store::{Principal, SessionEndReason, SessionInfo, SessionKind, UserRecord};

/// Which sessions to end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeTarget {
    /// One session (one device) by its session id.
    One(String),
    /// Every live session of the user (注销全部设备).
    All,
}

/// A user and their live sessions.
#[derive(Debug, Clone)]
pub struct UserDevices {
    pub user_id: String,
    pub display_name: String,
    pub role: Role,
    pub sessions: Vec<SessionInfo>,
}

/// The user's live sessions, for staff whose scope covers the user.
pub async fn user_devices(
    app: &AppState,
    actor: &Principal,
    user_id: &str,
) -> Result<UserDevices, ServiceError> {
    let user = user_in_scope(app, actor, user_id).await?;
    let now = app.clock.now();
    let console_idle = crate::auth::SessionPolicy::from_settings(&app.settings).console_idle;
    // A console session that idled out can no longer be used; it is not "in use".
    let sessions = app
        .store
        .list_user_sessions(&user.user_id, now)
        .await?
        .into_iter()
        .filter(|session| {
            session.kind != SessionKind::Console || session.last_seen_at + console_idle > now
        })
        .collect();
    Ok(UserDevices {
        user_id: user.user_id,
        display_name: user.display_name,
        role: user.role,
        sessions,
    })
}

/// End one or all of a user's sessions and audit it. Returns how many ended. An unknown
/// session id of this user is "not found".
pub async fn revoke(
    app: &AppState,
    actor: &Principal,
    user_id: &str,
    target: &RevokeTarget,
) -> Result<u64, ServiceError> {
    let user = user_in_scope(app, actor, user_id).await?;
    let now: OffsetDateTime = app.clock.now();
    let (ended, filter, detail) = match target {
        RevokeTarget::One(session_id) => {
            let device = app
                .store
                .list_user_sessions(&user.user_id, now)
                .await?
                .into_iter()
                .find(|session| &session.session_id == session_id);
            let Some(device) = device else {
                return Err(ServiceError::NotFound(format!(
                    "该设备未在使用 (no live session {session_id} of this user)"
                )));
            };
            app.store
                .end_session(&user.user_id, session_id, SessionEndReason::Revoked, now)
                .await?;
            (
                1,
                format!("session={session_id}"),
                format!(
                    "注销{}的设备 {}（{}）",
                    user.display_name, device.device_name, device.device_id
                ),
            )
        }
        RevokeTarget::All => {
            let ended = app
                .store
                .end_user_sessions(&user.user_id, None, SessionEndReason::Revoked, now)
                .await?;
            (
                ended,
                "all".to_owned(),
                format!("注销{}的全部设备（{ended}个会话）", user.display_name),
            )
        }
    };
    app.store
        .append_audit(audit_record(
            actor,
            ACTION_SESSION_REVOKE,
            &user.user_id,
            &filter,
            detail,
            now,
        ))
        .await?;
    Ok(ended)
}

/// The user when `actor` may manage their devices; otherwise "not found".
async fn user_in_scope(
    app: &AppState,
    actor: &Principal,
    user_id: &str,
) -> Result<UserRecord, ServiceError> {
    let not_found = || {
        ServiceError::NotFound(format!(
            "用户不存在或不在您的管辖范围内 (user {user_id} not found in your area)"
        ))
    };
    let user = app
        .store
        .find_user_by_id(user_id)
        .await?
        .ok_or_else(not_found)?;
    let in_scope = match actor.role {
        Role::County => area_within(app, &user.area_id, &actor.area_id).await?,
        Role::Township => user.role == Role::Cadre && user.area_id == actor.area_id,
        Role::Cadre | Role::Village | Role::Auditor => false,
    };
    if in_scope { Ok(user) } else { Err(not_found()) }
}

/// Whether `area_id` is `ancestor_id` or lies under it (village → township → county).
async fn area_within(
    app: &AppState,
    area_id: &str,
    ancestor_id: &str,
) -> Result<bool, ServiceError> {
    let mut current = Some(area_id.to_owned());
    // Areas are at most three levels deep; the bound also stops a corrupt cycle.
    for _ in 0..4 {
        let Some(id) = current else {
            return Ok(false);
        };
        if id == ancestor_id {
            return Ok(true);
        }
        current = app
            .store
            .get_area(&id)
            .await?
            .and_then(|area| area.parent_id);
    }
    Ok(false)
}
