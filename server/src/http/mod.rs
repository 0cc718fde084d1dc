//! The supervisor console (审核台) v0: server-rendered HTML in Simplified Chinese, plus a
//! small JSON twin for automation, served on the same port as gRPC.
//!
//! Every page goes through the review use cases in [`crate::review`], which enforce the
//! township scope; this module only adds the session cookie, the role gate for HTML pages
//! and the translation of [`ServiceError`] into HTTP statuses (in [`status_for`], once).
//! Every state-changing console request passes one CSRF guard first ([`csrf`]): a
//! same-origin `Origin`/`Referer` and the session's token (form field `csrf_token` or header
//! `X-CSRF-Token`).
//!
//! Routes:
//! - `GET /`, `GET /console` → the dashboard (工作台) when logged in, else the login page
//! - `GET|POST /console/login`, `POST /console/logout`
//! - `GET /console/queue[?village=ID][&cadre=USER_ID][&flag=CODE][&age=DAYS]`,
//!   `GET /console/visits/{visit_id}[?same filters]` (the submission page, see
//!   `review_views.rs`), `POST /console/visits/{visit_id}/decision[?same filters]`,
//!   `GET /console/static/console.js` (keyboard shortcuts), `GET /console/photos/{photo_id}/thumb`,
//!   `GET /console/photos/{photo_id}/display`,
//!   `GET /console/unvisited`, `GET /console/conflicts`, `POST /console/conflicts/resolve`,
//!   `GET /console/devices`
//! - JSON: `GET /console/api/queue[?village=ID][&cadre=USER_ID][&flag=CODE][&age=DAYS]`,
//!   `GET /console/api/visits/{visit_id}` (with the correction diff),
//!   `POST /console/api/visits/{visit_id}/decision`, `GET /console/api/conflicts`,
//!   `POST /console/api/conflicts/resolve`, `GET /console/api/devices`
//! - Roster import (county administrator, see `roster.rs`): `GET|POST /console/import`,
//!   `GET /console/import/template.xlsx`, `GET /console/import/{job_id}`,
//!   `POST /console/import/{job_id}/apply`, JSON `POST /console/api/import`,
//!   `GET /console/api/import/{job_id}`, `POST /console/api/import/{job_id}/apply`
//! - Administrative areas (county administrator, see `areas.rs`): `GET /console/areas`,
//!   `GET|POST /console/areas/import`, `GET /console/areas/import/template.xlsx`,
//!   `GET /console/areas/import/{job_id}`, `POST /console/areas/import/{job_id}/apply`, JSON
//!   `GET /console/api/areas`, `POST /console/api/areas/import`,
//!   `GET /console/api/areas/import/{job_id}`, `POST /console/api/areas/import/{job_id}/apply`
//! - Sessions (see `sessions.rs`): `GET /console/users/{user_id}/devices` (在用设备) with
//!   revoke forms and JSON twins under `/console/api/users/…`, `GET|POST /console/password`
//! - Monthly ledger (月台账, see `ledger.rs`): `GET /console/dashboard`, `GET /console/ledger`,
//!   `GET /console/ledger/silent`, `POST /console/ledger/close`, JSON `GET /console/api/dashboard`,
//!   `GET /console/api/ledger`
//! - Household search (农户检索, see `search.rs`): `GET /console/search?q=…` (the header's
//!   search box on every page), JSON `GET /console/api/search?q=…`

mod accounts;
mod api;
mod areas;
mod audit_banner;
mod cadre_import;
pub mod csrf;
mod display;
mod exports;
mod fields;
mod forms;
mod households;
mod households_views;
mod ledger;
mod ledger_views;
mod map;
mod pages;
mod pairings;
mod review_views;
mod roster;
mod search;
mod sessions;
mod thumbnail;
pub mod tus;
mod views;

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use fieldsync_model::codes::{CodeList, Role};
use tokio::sync::Semaphore;

use crate::AppState;
use crate::auth;
use crate::error::ServiceError;
use crate::store::{Principal, SessionLookup};

/// Name of the console's session cookie.
pub const SESSION_COOKIE: &str = "fieldsync_session";
/// Device id the console's sessions are bound to.
pub const CONSOLE_DEVICE_ID: &str = "console";
/// Device name shown for console sessions.
pub const CONSOLE_DEVICE_NAME: &str = "web console";
/// Path of the login page; missing sessions are sent here.
pub const LOGIN_PATH: &str = "/console/login";
/// Path of the review queue, the console's home.
pub const QUEUE_PATH: &str = "/console/queue";
/// Path of the conflict records page.
pub const CONFLICTS_PATH: &str = "/console/conflicts";
/// Path of the keyboard-shortcut script, the only script the CSP allows (`script-src 'self'`).
pub const CONSOLE_JS_PATH: &str = "/console/static/console.js";

/// Thumbnails decoded at once. Each decode may use up to 512 MiB, so a burst of requests
/// for large photos must queue instead of exhausting memory.
const CONCURRENT_THUMBNAILS: usize = 2;

/// State of the console's routes: the shared server state plus console-only resources.
#[derive(Debug, Clone)]
pub struct ConsoleState {
    pub app: AppState,
    pub thumbnail_permits: Arc<Semaphore>,
    /// Derives each session's CSRF token (see [`csrf`]).
    pub csrf: Arc<csrf::CsrfKey>,
}

/// The console's routes with their state applied, ready to merge with the gRPC routes.
/// Fails only when the CSRF key cannot be read or created in the key folder.
pub fn router(state: AppState) -> Result<Router, crate::keys::KeyError> {
    let (csrf_key, _created) =
        crate::keys::load_or_create(&state.settings.key_dir(), csrf::KEY_NAME)?;
    let console_state = ConsoleState {
        app: state.clone(),
        thumbnail_permits: Arc::new(Semaphore::new(CONCURRENT_THUMBNAILS)),
        csrf: Arc::new(csrf::CsrfKey::new(csrf_key)),
    };
    Ok(Router::new()
        .route("/", get(pages::home))
        .route("/console", get(pages::home))
        .route("/console/", get(pages::home))
        .route(LOGIN_PATH, get(pages::login_form).post(pages::login_submit))
        .route("/console/logout", post(pages::logout))
        .route(ledger::DASHBOARD_PATH, get(ledger::dashboard))
        .route(ledger::LEDGER_PATH, get(ledger::ledger_list))
        .route("/console/ledger/silent", get(ledger::silent_cadres))
        .route("/console/ledger/close", post(ledger::close_month))
        .route("/console/api/dashboard", get(ledger::api_dashboard))
        .route("/console/api/ledger", get(ledger::api_ledger))
        .route(QUEUE_PATH, get(pages::queue))
        .route(CONSOLE_JS_PATH, get(pages::console_js))
        .route("/console/visits/{visit_id}", get(pages::visit_detail))
        .route(
            "/console/visits/{visit_id}/decision",
            post(pages::decision_submit),
        )
        .route(
            "/console/photos/{photo_id}/thumb",
            get(pages::photo_thumbnail),
        )
        .route(
            "/console/photos/{photo_id}/display",
            get(pages::photo_display),
        )
        .route("/console/unvisited", get(pages::unvisited))
        .route(CONFLICTS_PATH, get(pages::conflicts))
        .route("/console/conflicts/resolve", post(pages::resolve_conflict))
        .route("/console/devices", get(pages::devices))
        .route(
            roster::IMPORT_PATH,
            get(roster::import_page).post(roster::upload).layer(
                axum::extract::DefaultBodyLimit::max(roster::UPLOAD_BODY_LIMIT),
            ),
        )
        .route("/console/import/template.xlsx", get(roster::template))
        .route("/console/import/{job_id}", get(roster::job_page))
        .route("/console/import/{job_id}/apply", post(roster::apply))
        .route(
            "/console/api/import",
            post(roster::api_upload).layer(axum::extract::DefaultBodyLimit::max(
                roster::UPLOAD_BODY_LIMIT,
            )),
        )
        .route("/console/api/import/{job_id}", get(roster::api_job))
        .route(
            "/console/api/import/{job_id}/apply",
            post(roster::api_apply),
        )
        .route(areas::AREAS_PATH, get(areas::areas_page))
        .route("/console/api/areas", get(areas::api_areas))
        .route(
            areas::AREA_IMPORT_PATH,
            get(areas::import_page).post(areas::upload).layer(
                axum::extract::DefaultBodyLimit::max(roster::UPLOAD_BODY_LIMIT),
            ),
        )
        .route("/console/areas/import/template.xlsx", get(areas::template))
        .route("/console/areas/import/{job_id}", get(areas::job_page))
        .route("/console/areas/import/{job_id}/apply", post(areas::apply))
        .route(
            "/console/api/areas/import",
            post(areas::api_upload).layer(axum::extract::DefaultBodyLimit::max(
                roster::UPLOAD_BODY_LIMIT,
            )),
        )
        .route("/console/api/areas/import/{job_id}", get(areas::api_job))
        .route(
            "/console/api/areas/import/{job_id}/apply",
            post(areas::api_apply),
        )
        .route("/console/income", get(households::income))
        .route("/console/wellbeing", get(households::wellbeing))
        .route(
            households::THRESHOLDS_PATH,
            get(households::thresholds).post(households::save_threshold),
        )
        .route(
            "/console/households/{household_id}",
            get(households::household),
        )
        .route(
            "/console/households/{household_id}/card",
            get(households::household_card),
        )
        .route(
            "/console/households/{household_id}/income/settle",
            post(households::settle_income),
        )
        .route(
            "/console/api/households/{household_id}/income/settle",
            post(households::settle_income_json),
        )
        .route(
            "/console/api/households/{household_id}",
            get(households::household_json),
        )
        .route(search::SEARCH_PATH, get(search::search_page))
        .route("/console/api/search", get(search::search_json))
        .route("/console/api/conflicts", get(api::conflicts))
        .route(
            "/console/api/conflicts/resolve",
            post(api::resolve_conflict),
        )
        .route("/console/api/devices", get(api::devices))
        .route("/console/api/queue", get(api::queue))
        .route("/console/api/visits/{visit_id}", get(api::visit))
        .route(
            "/console/api/visits/{visit_id}/decision",
            post(api::decision),
        )
        .route("/console/exports", get(exports::exports_page))
        .route("/console/exports/{file}", get(exports::export_file))
        .route(pairings::PAIRINGS_PATH, get(pairings::pairings_page))
        .route("/console/pairings/assign", post(pairings::assign_submit))
        .route("/console/api/pairings", get(pairings::pairings_json))
        .route("/console/api/pairings/assign", post(pairings::assign_json))
        .route(pairings::HELPERS_PATH, post(pairings::helper_submit))
        .route(
            "/console/pairings/households/{household_id}",
            get(pairings::household_page),
        )
        .route("/console/api/pairings/helpers", post(pairings::helper_json))
        .route(
            accounts::ACCOUNTS_PATH,
            get(accounts::list_page).post(accounts::create_submit),
        )
        .route("/console/accounts/new", get(accounts::new_page))
        .route(
            "/console/accounts/{user_id}",
            get(accounts::account_page).post(accounts::edit_submit),
        )
        .route(
            "/console/accounts/{user_id}/disable",
            post(accounts::disable_submit),
        )
        .route(
            "/console/accounts/{user_id}/enable",
            post(accounts::enable_submit),
        )
        .route(
            "/console/accounts/{user_id}/reset-password",
            post(accounts::reset_submit),
        )
        .route("/console/api/accounts", get(accounts::list_json))
        .route(
            cadre_import::CADRE_IMPORT_PATH,
            get(cadre_import::upload_page)
                .post(cadre_import::upload)
                .layer(axum::extract::DefaultBodyLimit::max(
                    roster::UPLOAD_BODY_LIMIT,
                )),
        )
        .route(
            "/console/cadres/import/template.xlsx",
            get(cadre_import::template),
        )
        .route(
            "/console/cadres/import/{plan_id}",
            get(cadre_import::plan_page),
        )
        .route(
            "/console/cadres/import/{plan_id}/apply",
            post(cadre_import::apply),
        )
        .route(
            "/console/cadres/import/{plan_id}/passwords.xlsx",
            get(cadre_import::passwords_xlsx),
        )
        .route(
            "/console/users/{user_id}/devices",
            get(sessions::devices_page),
        )
        .route(
            "/console/users/{user_id}/devices/{session_id}/revoke",
            post(sessions::revoke_one_submit),
        )
        .route(
            "/console/users/{user_id}/devices/revoke-all",
            post(sessions::revoke_all_submit),
        )
        .route(
            "/console/api/users/{user_id}/devices",
            get(sessions::devices_json),
        )
        .route(
            "/console/api/users/{user_id}/devices/{session_id}/revoke",
            post(sessions::revoke_one_json),
        )
        .route(
            "/console/api/users/{user_id}/devices/revoke-all",
            post(sessions::revoke_all_json),
        )
        .route(
            sessions::PASSWORD_PATH,
            get(sessions::password_page).post(sessions::password_submit),
        )
        // Every console route, and only those: tus (bearer token) and gRPC merge below.
        .layer(axum::middleware::from_fn_with_state(
            console_state.clone(),
            csrf::guard,
        ))
        .layer(axum::middleware::map_response(security_headers))
        .layer(axum::middleware::from_fn_with_state(
            console_state.clone(),
            audit_banner::with_audit_result,
        ))
        .with_state(console_state)
        .merge(tus::router(state)))
}

/// HTTP status of each public error kind: the one place this mapping lives.
pub fn status_for(error: &ServiceError) -> StatusCode {
    match error {
        ServiceError::Unauthenticated(_) | ServiceError::SessionEnded { .. } => {
            StatusCode::UNAUTHORIZED
        }
        ServiceError::PermissionDenied(_) => StatusCode::FORBIDDEN,
        ServiceError::InvalidArgument { .. } => StatusCode::BAD_REQUEST,
        ServiceError::NotFound(_) => StatusCode::NOT_FOUND,
        ServiceError::FailedPrecondition(_)
        | ServiceError::AlreadyExists(_)
        | ServiceError::DeviceClockWrong { .. } => StatusCode::CONFLICT,
        ServiceError::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
        ServiceError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        ServiceError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// Why an HTML console request failed; renders as a Chinese error page (or a redirect to
/// the login page). Internal details were already logged where the `ServiceError` was
/// made, so nothing is logged here.
#[derive(Debug)]
pub enum ConsoleError {
    /// A use case refused or failed. `back_to` is a console path to offer as "返回".
    Service {
        error: ServiceError,
        back_to: Option<String>,
    },
    /// No valid session. Browsers navigating (GET) are redirected to the login page; other
    /// methods get a 401 page, because a redirect would silently drop the submitted form.
    LoginRequired { redirect: bool },
    /// Logged in, but the page is for other roles.
    WrongRole { allowed: Vec<Role> },
    /// Logged in with a one-time password: 修改密码 comes first (GET redirects there).
    PasswordChangeRequired { redirect: bool },
    /// The photo's metadata exists but its bytes have not been uploaded yet.
    PhotoPending,
    /// The photo's bytes cannot be turned into a thumbnail.
    Thumbnail(thumbnail::ThumbnailError),
}

impl From<ServiceError> for ConsoleError {
    fn from(error: ServiceError) -> Self {
        Self::Service {
            error,
            back_to: None,
        }
    }
}

impl ConsoleError {
    /// Offer a way back to `path` on the error page.
    pub fn with_back_link(error: ServiceError, path: impl Into<String>) -> Self {
        Self::Service {
            error,
            back_to: Some(path.into()),
        }
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        match self {
            Self::Service { error, back_to } => {
                let status = status_for(&error);
                let (title, message) = views::error_text(&error);
                (
                    status,
                    views::error_page(status, title, &message, back_to.as_deref()),
                )
                    .into_response()
            }
            Self::LoginRequired { redirect: true } => Redirect::to(LOGIN_PATH).into_response(),
            Self::LoginRequired { redirect: false } => (
                StatusCode::UNAUTHORIZED,
                views::error_page(
                    StatusCode::UNAUTHORIZED,
                    "请先登录",
                    "未登录或登录已过期，请重新登录。",
                    Some(LOGIN_PATH),
                ),
            )
                .into_response(),
            Self::PasswordChangeRequired { redirect: true } => {
                Redirect::to(sessions::PASSWORD_PATH).into_response()
            }
            Self::PasswordChangeRequired { redirect: false } => (
                StatusCode::FORBIDDEN,
                views::error_page(
                    StatusCode::FORBIDDEN,
                    "请先修改密码",
                    "您使用的是一次性密码，请先修改密码后再继续操作。",
                    Some(sessions::PASSWORD_PATH),
                ),
            )
                .into_response(),
            Self::WrongRole { allowed } => {
                let message = format!(
                    "此页面仅{}可用。请使用相应账号登录。",
                    role_labels_zh(&allowed)
                );
                (
                    StatusCode::FORBIDDEN,
                    views::error_page(
                        StatusCode::FORBIDDEN,
                        "无权访问",
                        &message,
                        Some(LOGIN_PATH),
                    ),
                )
                    .into_response()
            }
            Self::PhotoPending => (
                StatusCode::NOT_FOUND,
                [(header::CACHE_CONTROL, "no-store")],
                "照片上传中",
            )
                .into_response(),
            Self::Thumbnail(error) => {
                let status = match error {
                    thumbnail::ThumbnailError::Encode(_) => StatusCode::INTERNAL_SERVER_ERROR,
                    _ => StatusCode::UNPROCESSABLE_ENTITY,
                };
                (status, error.to_string()).into_response()
            }
        }
    }
}

/// Why a JSON API request failed: `{"error": "...", "field": "..."}` with the status from
/// [`status_for`]. A missing session is a 401, never a redirect.
#[derive(Debug)]
pub struct ApiError(pub ServiceError);

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        Self(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_for(&self.0);
        let body = match &self.0 {
            ServiceError::InvalidArgument { field, .. } => {
                serde_json::json!({ "error": self.0.to_string(), "field": field })
            }
            other => serde_json::json!({ "error": other.to_string() }),
        };
        (status, Json(body)).into_response()
    }
}

/// The session token from the `Cookie` header(s), if any.
fn session_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|cookies| cookies.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim().trim_matches('"'))
        .filter(|token| !token.is_empty())
}

/// The principal behind the request's session cookie: `Ok(None)` when there is no valid
/// session, `Err` only when the store could not answer.
async fn session_principal(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<Principal>, ServiceError> {
    Ok(console_session(state, headers, "")
        .await?
        .map(|session| session.principal))
}

/// The live console session behind the request's cookie (ended, idle or unknown: `None`).
/// Each request within the idle time keeps it alive (sliding expiry).
async fn console_session(
    state: &AppState,
    headers: &HeaderMap,
    ip: &str,
) -> Result<Option<SessionLookup>, ServiceError> {
    let Some(token) = session_token(headers) else {
        return Ok(None);
    };
    let policy = auth::SessionPolicy::from_settings(&state.settings);
    match auth::authenticate_session(state.store.as_ref(), token, &policy, ip, state.clock.now())
        .await
    {
        Ok(session) => Ok(Some(session)),
        Err(auth::AuthError::NoSession | auth::AuthError::SessionEnded(_)) => Ok(None),
        Err(other) => Err(other.into()),
    }
}

/// The browser's address for the session list: the connection's peer address, which
/// `serve` puts in the request's extensions. Forwarding headers are not trusted for it.
fn peer_ip(parts: &Parts) -> String {
    crate::login_guard::peer_ip(&parts.extensions)
        .map(|address| address.to_string())
        .unwrap_or_default()
}

/// The caller's live console session, for pages about the session itself (修改密码).
async fn console_session_of(
    parts: &Parts,
    state: &ConsoleState,
) -> Result<SessionLookup, ConsoleError> {
    console_session(&state.app, &parts.headers, &peer_ip(parts))
        .await?
        .ok_or(ConsoleError::LoginRequired {
            redirect: parts.method == Method::GET || parts.method == Method::HEAD,
        })
}

/// A logged-in console user of any role with their session (修改密码 is for everyone).
#[derive(Debug, Clone)]
pub struct AnyConsoleUser(pub SessionLookup);

impl FromRequestParts<ConsoleState> for AnyConsoleUser {
    type Rejection = ConsoleError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ConsoleState,
    ) -> Result<Self, Self::Rejection> {
        console_session_of(parts, state).await.map(Self)
    }
}

/// A logged-in township supervisor, for HTML pages.
#[derive(Debug, Clone)]
pub struct Reviewer(pub Principal);

impl FromRequestParts<ConsoleState> for Reviewer {
    type Rejection = ConsoleError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ConsoleState,
    ) -> Result<Self, Self::Rejection> {
        console_principal(parts, state, &[Role::Township])
            .await
            .map(Self)
    }
}

/// The logged-in principal when its role is one of `allowed`; otherwise the rejection of an
/// HTML page (login redirect for GET, 401 for forms, 403 for other roles).
async fn console_principal(
    parts: &Parts,
    state: &ConsoleState,
    allowed: &[Role],
) -> Result<Principal, ConsoleError> {
    let session = console_session(&state.app, &parts.headers, &peer_ip(parts)).await?;
    let navigating = parts.method == Method::GET || parts.method == Method::HEAD;
    match session.map(|session| session.principal) {
        None => Err(ConsoleError::LoginRequired {
            redirect: navigating,
        }),
        Some(principal) if must_change_password(state, &principal).await? => {
            Err(ConsoleError::PasswordChangeRequired {
                redirect: navigating,
            })
        }
        Some(principal) if allowed.contains(&principal.role) => {
            audit_auditor_view(state, parts, &principal).await?;
            Ok(principal)
        }
        Some(_) => Err(ConsoleError::WrongRole {
            allowed: allowed.to_vec(),
        }),
    }
}

/// The logged-in principal when its role is one of `allowed`, for the JSON API.
async fn api_principal(
    parts: &Parts,
    state: &ConsoleState,
    allowed: &[Role],
) -> Result<Principal, ApiError> {
    let session = console_session(&state.app, &parts.headers, &peer_ip(parts)).await?;
    match session.map(|session| session.principal) {
        None => Err(ApiError(ServiceError::Unauthenticated(
            "未登录或登录已过期 (missing or expired session)".into(),
        ))),
        Some(principal) if must_change_password(state, &principal).await? => {
            Err(ApiError(ServiceError::PermissionDenied(
                "请先修改一次性密码 (change the one-time password first: POST /console/password)"
                    .into(),
            )))
        }
        Some(principal) if allowed.contains(&principal.role) => {
            audit_auditor_view(state, parts, &principal).await?;
            Ok(principal)
        }
        Some(_) => Err(ApiError(ServiceError::PermissionDenied(format!(
            "仅{}可用 (roles: {})",
            role_labels_zh(allowed),
            allowed
                .iter()
                .map(|role| role.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )))),
    }
}

/// Audit action of a page an auditor (审计员) opened.
pub const ACTION_AUDITOR_VIEW: &str = "auditor_view";

/// Every page an auditor opens is an audit record (issue 12 §3): the path and query, before
/// the page is answered. A failure to record refuses the page rather than leave it unseen.
async fn audit_auditor_view(
    state: &ConsoleState,
    parts: &Parts,
    principal: &Principal,
) -> Result<(), ServiceError> {
    if principal.role != Role::Auditor {
        return Ok(());
    }
    let target = search::audit_target(&parts.uri).unwrap_or_else(|| {
        parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_owned(), ToString::to_string)
    });
    state
        .app
        .store
        .append_audit(crate::auth::audit_record(
            principal,
            ACTION_AUDITOR_VIEW,
            &target,
            parts.method.as_str(),
            format!("审计员查看 {target} (auditor opened a page)"),
            state.app.clock.now(),
        ))
        .await?;
    Ok(())
}

/// Whether the principal still holds a one-time password (every console page but 修改密码
/// waits for a new one). A vanished account reads as "no": its session fails elsewhere.
async fn must_change_password(
    state: &ConsoleState,
    principal: &Principal,
) -> Result<bool, ServiceError> {
    Ok(state
        .app
        .store
        .login_state(&principal.user_id)
        .await?
        .is_some_and(|login| login.must_change_password))
}

/// "乡镇审核员、县级管理员": the Chinese names of roles, for refusals.
fn role_labels_zh(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|role| role.label_zh())
        .collect::<Vec<_>>()
        .join("、")
}

/// Roles that see the console's area-wide pages (dashboards, ledgers, household pages,
/// exports): the township supervisor for the township, the county administrator and the
/// auditor (read-only, masked) for the county.
pub const STAFF_ROLES: &[Role] = &[Role::Township, Role::County, Role::Auditor];

/// A logged-in staff member (township supervisor, county administrator or auditor), for
/// HTML pages. Use [`Principal::area_id`] and the role to scope what is shown.
#[derive(Debug, Clone)]
pub struct Staff(pub Principal);

impl FromRequestParts<ConsoleState> for Staff {
    type Rejection = ConsoleError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ConsoleState,
    ) -> Result<Self, Self::Rejection> {
        console_principal(parts, state, STAFF_ROLES).await.map(Self)
    }
}

/// A logged-in staff member, for the JSON API.
#[derive(Debug, Clone)]
pub struct ApiStaff(pub Principal);

impl FromRequestParts<ConsoleState> for ApiStaff {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ConsoleState,
    ) -> Result<Self, Self::Rejection> {
        api_principal(parts, state, STAFF_ROLES).await.map(Self)
    }
}

/// A logged-in county administrator (县级管理员), for HTML pages: pairings, roster import.
#[derive(Debug, Clone)]
pub struct CountyAdmin(pub Principal);

impl FromRequestParts<ConsoleState> for CountyAdmin {
    type Rejection = ConsoleError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ConsoleState,
    ) -> Result<Self, Self::Rejection> {
        console_principal(parts, state, &[Role::County])
            .await
            .map(Self)
    }
}

/// Roles that read the county's set-up pages (行政区划, 账号管理 list): the county
/// administrator, and the auditor, read-only (every page an auditor opens is audited).
pub const COUNTY_READER_ROLES: &[Role] = &[Role::County, Role::Auditor];

/// A county administrator or auditor, for read-only HTML pages of the county's set-up.
#[derive(Debug, Clone)]
pub struct CountyReader(pub Principal);

impl FromRequestParts<ConsoleState> for CountyReader {
    type Rejection = ConsoleError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ConsoleState,
    ) -> Result<Self, Self::Rejection> {
        console_principal(parts, state, COUNTY_READER_ROLES)
            .await
            .map(Self)
    }
}

/// A county administrator or auditor, for the read-only JSON API of the county's set-up.
#[derive(Debug, Clone)]
pub struct ApiCountyReader(pub Principal);

impl FromRequestParts<ConsoleState> for ApiCountyReader {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ConsoleState,
    ) -> Result<Self, Self::Rejection> {
        api_principal(parts, state, COUNTY_READER_ROLES)
            .await
            .map(Self)
    }
}

/// A logged-in county administrator, for the JSON API.
#[derive(Debug, Clone)]
pub struct ApiCountyAdmin(pub Principal);

impl FromRequestParts<ConsoleState> for ApiCountyAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ConsoleState,
    ) -> Result<Self, Self::Rejection> {
        api_principal(parts, state, &[Role::County]).await.map(Self)
    }
}

/// A logged-in township supervisor, for the JSON API.
#[derive(Debug, Clone)]
pub struct ApiReviewer(pub Principal);

impl FromRequestParts<ConsoleState> for ApiReviewer {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ConsoleState,
    ) -> Result<Self, Self::Rejection> {
        api_principal(parts, state, &[Role::Township])
            .await
            .map(Self)
    }
}

/// `Set-Cookie` value that opens a console session. `SameSite=Strict` keeps cross-site form
/// posts from carrying the cookie; same-site ones (another port on this host) are stopped by
/// the CSRF token and origin check in [`csrf`]. `secure` (the server speaks TLS) adds
/// `Secure`, so the browser never sends the session over plain HTTP.
fn session_cookie(token: &str, secure: bool) -> String {
    format!(
        "{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/{}",
        secure_attribute(secure)
    )
}

/// `Set-Cookie` value that removes the console session from the browser.
fn cleared_session_cookie(secure: bool) -> String {
    format!(
        "{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{}",
        secure_attribute(secure)
    )
}

fn secure_attribute(secure: bool) -> &'static str {
    if secure { "; Secure" } else { "" }
}

/// Headers every console response carries: pages hold personal data (names, addresses,
/// masked ID numbers), so they are not cached or framed, and nothing external may load.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // `same-origin`, not `no-referrer`: URLs (which hold ids) still never leave for another
    // site, but the console's own form posts keep their `Origin` header, which the CSRF
    // check compares (under `no-referrer` browsers send `Origin: null`).
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    let is_html = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/html"));
    if is_html {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; script-src 'self'; img-src 'self'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_token_is_found_among_other_cookies() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("theme=dark; fieldsync_session=abc-DEF_1; lang=zh"),
        );
        assert_eq!(session_token(&headers), Some("abc-DEF_1"));
        let mut split = HeaderMap::new();
        split.append(header::COOKIE, HeaderValue::from_static("theme=dark"));
        split.append(
            header::COOKIE,
            HeaderValue::from_static("fieldsync_session=xyz"),
        );
        assert_eq!(session_token(&split), Some("xyz"));
        let mut empty = HeaderMap::new();
        empty.append(
            header::COOKIE,
            HeaderValue::from_static("fieldsync_session=; fieldsync_sessionx=1"),
        );
        assert_eq!(session_token(&empty), None);
        assert_eq!(session_token(&HeaderMap::new()), None);
    }

    #[test]
    fn every_error_kind_has_its_status() {
        assert_eq!(
            status_for(&ServiceError::Unauthenticated(String::new())),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status_for(&ServiceError::PermissionDenied(String::new())),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            status_for(&ServiceError::invalid("note", "x")),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status_for(&ServiceError::NotFound(String::new())),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status_for(&ServiceError::FailedPrecondition(String::new())),
            StatusCode::CONFLICT
        );
        assert_eq!(
            status_for(&ServiceError::AlreadyExists(String::new())),
            StatusCode::CONFLICT
        );
        assert_eq!(
            status_for(&ServiceError::Internal),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        assert_eq!(
            status_for(&ServiceError::Unavailable),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn the_session_cookie_is_http_only_and_same_site_strict() {
        let cookie = session_cookie("tok", false);
        assert_eq!(
            cookie,
            "fieldsync_session=tok; HttpOnly; SameSite=Strict; Path=/"
        );
        assert!(cleared_session_cookie(false).contains("Max-Age=0"));
        assert_eq!(
            session_cookie("tok", true),
            "fieldsync_session=tok; HttpOnly; SameSite=Strict; Path=/; Secure",
            "under TLS the cookie never travels over plain HTTP"
        );
        assert!(cleared_session_cookie(true).ends_with("; Secure"));
    }
}
