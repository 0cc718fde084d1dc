//! Handlers of the HTML console: login/logout, the queue, one visit's detail, the decision
//! form, photo thumbnails and display copies and the "not visited in person this month"
//! list. Rendering lives in [`super::views`]; access checks live in [`crate::review`].

use axum::Form;
use axum::extract::{Path, Query, RawForm, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use fieldsync_model::review::Decision;
use fieldsync_model::visit::is_uuid;
use serde::Deserialize;

use super::forms::parse_decision_form;
use super::review_views;
use super::thumbnail::make_thumbnail;
use super::views;
use super::{
    CONFLICTS_PATH, CONSOLE_DEVICE_ID, CONSOLE_DEVICE_NAME, ConsoleError, ConsoleState, LOGIN_PATH,
    QUEUE_PATH, Reviewer, cleared_session_cookie, session_cookie, session_principal, session_token,
};
use crate::auth;
use crate::error::ServiceError;
use crate::media::blobs::Derived;
use crate::review;
use crate::store::{QueuePosition, SessionKind};

/// `GET /`: the dashboard (工作台) for a logged-in user, the login page for everyone else.
/// Supervisors reach the queue from the navigation.
pub async fn home(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
) -> Result<Redirect, ConsoleError> {
    Ok(match session_principal(&state.app, &headers).await? {
        Some(_) => Redirect::to(super::ledger::DASHBOARD_PATH),
        None => Redirect::to(LOGIN_PATH),
    })
}

/// `GET /console/login`.
pub async fn login_form() -> Response {
    views::login_page("", None).into_response()
}

/// Fields of the login form. Defaults keep a form with a missing field from becoming an
/// opaque 422: it is answered with the login page instead.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

/// `POST /console/login`: open a console session and set the cookie.
pub async fn login_submit(
    State(state): State<ConsoleState>,
    extensions: axum::http::Extensions,
    Form(form): Form<LoginForm>,
) -> Result<Response, ConsoleError> {
    if form.username.trim().is_empty() || form.password.is_empty() {
        return Ok((
            StatusCode::BAD_REQUEST,
            views::login_page(&form.username, Some("请输入用户名和密码")),
        )
            .into_response());
    }
    let app = &state.app;
    let outcome = auth::login(
        app.store.as_ref(),
        &app.login_guard,
        crate::login_guard::peer_ip(&extensions),
        &form.username,
        &form.password,
        &auth::LoginDevice {
            kind: SessionKind::Console,
            device_id: CONSOLE_DEVICE_ID.to_owned(),
            device_name: CONSOLE_DEVICE_NAME.to_owned(),
            app_version: String::new(),
            ip: extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map_or_else(String::new, |info| info.0.ip().to_string()),
            wants_refresh_token: false,
        },
        &auth::SessionPolicy::from_settings(&app.settings),
        app.clock.now(),
    )
    .await;
    match outcome {
        Ok((tokens, _principal)) => {
            let cookie = HeaderValue::from_str(&session_cookie(
                &tokens.access_token,
                browser_uses_https(&app.settings, &extensions),
            ))
            .map_err(|_| ServiceError::Internal)?;
            // Every role gets its session and lands on the dashboard (工作台), which answers
            // roles without console pages with a clear 403 page instead of a misleading
            // "wrong password"; a one-time password goes to 修改密码 first.
            let landing = if tokens.must_change_password {
                super::sessions::PASSWORD_PATH
            } else {
                super::ledger::DASHBOARD_PATH
            };
            Ok(([(header::SET_COOKIE, cookie)], Redirect::to(landing)).into_response())
        }
        Err(auth::AuthError::AccountDisabled) => Ok((
            StatusCode::FORBIDDEN,
            views::login_page(&form.username, Some("账号已停用，请联系县级管理员")),
        )
            .into_response()),
        Err(auth::AuthError::BadCredentials) => Ok((
            StatusCode::UNAUTHORIZED,
            views::login_page(&form.username, Some("用户名或密码错误")),
        )
            .into_response()),
        // Locked after repeated failures: 429 with how long to wait, on the login page
        // so the user can try again there once the time is up.
        Err(auth::AuthError::Throttled { retry_after_secs }) => Ok((
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, HeaderValue::from(retry_after_secs))],
            views::login_page(
                &form.username,
                Some(&format!("登录尝试过多，请 {retry_after_secs} 秒后再试")),
            ),
        )
            .into_response()),
        Err(other) => Err(ServiceError::from(other).into()),
    }
}

/// Whether the browser reached the console over HTTPS: the server speaks TLS itself, or a
/// trusted proxy says so. The session cookie is then `Secure`.
fn browser_uses_https(
    settings: &crate::settings::Settings,
    extensions: &axum::http::Extensions,
) -> bool {
    settings.tls_enabled()
        || extensions
            .get::<crate::forwarded::ForwardedHttps>()
            .is_some()
}

/// `POST /console/logout`: forget the session in the browser.
pub async fn logout(
    State(state): State<ConsoleState>,
    extensions: axum::http::Extensions,
    headers: HeaderMap,
) -> Response {
    // End the session on the server too, so a copied cookie stops working at logout and
    // not only when it idles out. The cookie is cleared even if storage fails.
    if session_token(&headers).is_some() {
        let ended = match super::console_session(&state.app, &headers, "").await {
            Ok(Some(session)) => {
                auth::logout(state.app.store.as_ref(), &session, state.app.clock.now())
                    .await
                    .map_err(ServiceError::from)
            }
            Ok(None) => Ok(()),
            Err(error) => Err(error),
        };
        if let Err(error) = ended {
            tracing::warn!(%error, "could not end a console session");
        }
    }
    let secure = browser_uses_https(&state.app.settings, &extensions);
    match HeaderValue::from_str(&cleared_session_cookie(secure)) {
        Ok(cookie) => ([(header::SET_COOKIE, cookie)], Redirect::to(LOGIN_PATH)).into_response(),
        Err(_) => Redirect::to(LOGIN_PATH).into_response(),
    }
}

/// Query of the queue page: the filters (`village`, `cadre`, `flag`, `age`) plus the banner
/// after a decision. Values are read as text so a malformed one gets a clear error page.
#[derive(Debug, Default, Deserialize)]
pub struct QueueQuery {
    /// Village filter; empty means the whole township.
    #[serde(default)]
    village: Option<String>,
    /// Cadre (user id) filter.
    #[serde(default)]
    cadre: Option<String>,
    /// Set after a decision when no item was left to move on to.
    #[serde(default)]
    decided: Option<String>,
    /// Evidence flag code filter (`?flag=gps_far`); empty means every visit.
    #[serde(default)]
    flag: Option<String>,
    /// Waiting at least this many days.
    #[serde(default)]
    age: Option<String>,
}

impl QueueQuery {
    /// The review use case's filters.
    pub fn filters(&self) -> Result<review::QueueFilters, ServiceError> {
        review::QueueFilters::parse(
            self.village.as_deref(),
            self.cadre.as_deref(),
            self.flag.as_deref(),
            self.age.as_deref(),
        )
    }
}

/// `GET /console/queue[?village=ID][&cadre=USER_ID][&flag=CODE][&age=DAYS]`.
pub async fn queue(
    State(state): State<ConsoleState>,
    Reviewer(principal): Reviewer,
    Query(query): Query<QueueQuery>,
) -> Result<Response, ConsoleError> {
    let app = &state.app;
    let filters = query
        .filters()
        .map_err(|error| ConsoleError::with_back_link(error, QUEUE_PATH))?;
    let items = review::filtered_queue(app, &principal, &filters).await?;
    let facets = review::queue_facets(app, &principal, &filters).await?;
    let township_name = app
        .store
        .get_area(&principal.area_id)
        .await
        .map_err(ServiceError::from)?
        .map(|area| area.name);
    let villages = app
        .store
        .list_areas(Some(&principal.area_id))
        .await
        .map_err(ServiceError::from)?;
    let view = review_views::QueueView {
        principal: &principal,
        township_name: township_name.as_deref().unwrap_or(""),
        villages: &villages,
        filters: &filters,
        facets: &facets,
        items: &items,
        radius_m: app.settings.evidence.household_radius_m,
        decided: decided_notice(query.decided.as_deref()),
        truncated: items.len() >= review::MAX_QUEUE_PAGE as usize,
        now: app.clock.now(),
    };
    Ok(review_views::queue_page(&view).into_response())
}

/// The "previous item was approved/returned" banner, from the redirect's query.
fn decided_notice(decided: Option<&str>) -> Option<&'static str> {
    match decided {
        Some("approved") => Some("上一条走访已通过。"),
        Some("returned") => Some("上一条走访已退回，将作为整改任务发送给帮扶干部。"),
        _ => None,
    }
}

/// `GET /console/visits/{visit_id}[?village=…&cadre=…&flag=…&age=…][&decided=…]`: the
/// submission page. The queue's filters ride along so "next" follows the same list.
pub async fn visit_detail(
    State(state): State<ConsoleState>,
    Reviewer(principal): Reviewer,
    Path(visit_id): Path<String>,
    Query(query): Query<QueueQuery>,
) -> Result<Response, ConsoleError> {
    let app = &state.app;
    let back = |error| ConsoleError::with_back_link(error, QUEUE_PATH);
    if !is_uuid(&visit_id) {
        return Err(back(ServiceError::NotFound(format!(
            "visit {visit_id} not found"
        ))));
    }
    let filters = query.filters().map_err(back)?;
    let detail = review::detail(app, &principal, &visit_id)
        .await
        .map_err(back)?;
    let position = QueuePosition {
        submitted_at: detail.submitted_at,
        visit_id: visit_id.clone(),
    };
    let next = review::next_in_queue(app, &principal, &filters, &position).await?;
    let correction = review::correction(app, &detail).await?;
    let history = review::photo_history(app, &detail).await?;
    let photo_points = review::photo_gps_points(app, &detail).await?;
    let flag_names = review::flag_names(app, &principal, &detail).await?;
    let view = review_views::DetailView {
        principal: &principal,
        detail: &detail,
        radius_m: app.settings.evidence.household_radius_m,
        decided: decided_notice(query.decided.as_deref()),
        now: app.clock.now(),
        filters: &filters,
        next_visit_id: next.as_deref(),
        correction: correction.as_ref(),
        history: &history,
        photo_points: &photo_points,
        flag_names: &flag_names,
    };
    Ok(review_views::detail_page(&view).into_response())
}

/// `POST /console/visits/{visit_id}/decision[?filters]` (form: `decision`, `revision`,
/// `content_hash`, repeated `reasons` as `code` or `code:field`, `note`, `deadline`). On
/// success moves on to the next item of the same filtered queue.
pub async fn decision_submit(
    State(state): State<ConsoleState>,
    Reviewer(principal): Reviewer,
    Path(visit_id): Path<String>,
    Query(query): Query<QueueQuery>,
    RawForm(body): RawForm,
) -> Result<Redirect, ConsoleError> {
    let app = &state.app;
    let back_to = if is_uuid(&visit_id) {
        format!("/console/visits/{visit_id}")
    } else {
        QUEUE_PATH.to_owned()
    };
    // Filters that do not parse only cost the "next" link its filters, never the decision.
    let filters = query.filters().unwrap_or_default();
    let request = parse_decision_form(&body)
        .and_then(|input| input.into_request(&visit_id))
        .map_err(|error| ConsoleError::with_back_link(error, back_to.clone()))?;
    let decision = request.decision;
    // The decided visit's place in the queue, read before the decision changes its state.
    let submitted_at = review::detail(app, &principal, &visit_id)
        .await
        .map_err(|error| ConsoleError::with_back_link(error, back_to.clone()))?
        .submitted_at;
    review::decide(app, &principal, request)
        .await
        .map_err(|error| ConsoleError::with_back_link(error, back_to.clone()))?;
    let decided = match decision {
        Decision::Approve => "approved",
        Decision::Return => "returned",
    };
    let position = QueuePosition {
        submitted_at,
        visit_id: visit_id.clone(),
    };
    let next = review::next_in_queue(app, &principal, &filters, &position).await?;
    let with_decided = |path: String| {
        let separator = if path.contains('?') { '&' } else { '?' };
        format!("{path}{separator}decided={decided}")
    };
    Ok(match next {
        Some(next_id) => Redirect::to(&with_decided(review_views::visit_path(&next_id, &filters))),
        None => Redirect::to(&with_decided(review_views::queue_path(&filters))),
    })
}

/// `GET /console/static/console.js`: the keyboard shortcuts, same-origin so the CSP can
/// allow `script-src 'self'` and nothing else.
pub async fn console_js() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/javascript; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        CONSOLE_JS,
    )
        .into_response()
}

/// The shortcut script, compiled in so the console is one self-contained binary.
const CONSOLE_JS: &str = include_str!("console.js");

/// `GET /console/photos/{photo_id}/thumb`: the stored JPEG thumbnail, only for photos of
/// visits in the reviewer's township.
pub async fn photo_thumbnail(
    State(state): State<ConsoleState>,
    Reviewer(principal): Reviewer,
    Path(photo_id): Path<String>,
) -> Result<Response, ConsoleError> {
    serve_derived(&state, &principal, &photo_id, Derived::Thumbnail).await
}

/// `GET /console/photos/{photo_id}/display`: the stored display copy (upright, without
/// EXIF), only for photos of visits in the reviewer's township.
pub async fn photo_display(
    State(state): State<ConsoleState>,
    Reviewer(principal): Reviewer,
    Path(photo_id): Path<String>,
) -> Result<Response, ConsoleError> {
    serve_derived(&state, &principal, &photo_id, Derived::Display).await
}

/// A derived copy of a photo after the access check. Copies are made when the upload
/// completes; a blob stored before that has none, and is rendered once here (under the
/// decode permits) and kept. The original is never served.
async fn serve_derived(
    state: &ConsoleState,
    principal: &crate::store::Principal,
    photo_id: &str,
    kind: Derived,
) -> Result<Response, ConsoleError> {
    let app = &state.app;
    let not_found = || ServiceError::NotFound(format!("photo {photo_id} not found"));
    if !is_uuid(photo_id) {
        return Err(not_found().into());
    }
    let photo = app
        .store
        .get_photo(photo_id)
        .await
        .map_err(ServiceError::from)?
        .ok_or_else(not_found)?;
    // The access check: the photo's visit must be reviewable by this principal.
    let detail = review::detail(app, principal, &photo.visit_id).await?;
    // Visible only once the upload completed (its blob row exists).
    if !detail.photo_ids_received.iter().any(|id| id == photo_id) {
        return Err(ConsoleError::PhotoPending);
    }
    let stored = app
        .blobs
        .read_derived(&photo.sha256, kind)
        .await
        .map_err(ServiceError::from)?;
    let bytes = match stored {
        Some(bytes) => bytes,
        None => {
            let _permit = state
                .thumbnail_permits
                .acquire()
                .await
                .map_err(|_| ServiceError::Unavailable)?;
            let original = app
                .blobs
                .read(&photo.sha256)
                .await
                .map_err(ServiceError::from)?;
            let rendered = tokio::task::spawn_blocking(move || match kind {
                Derived::Thumbnail => make_thumbnail(&original),
                Derived::Display => crate::media::photo::render_display(
                    &original,
                    crate::media::pipeline::DISPLAY_LONGEST_SIDE,
                )
                .map_err(Into::into),
            })
            .await
            .map_err(|error| {
                tracing::error!(%error, "thumbnail task failed");
                ServiceError::Internal
            })?
            .map_err(ConsoleError::Thumbnail)?;
            if let Err(error) = app
                .blobs
                .write_derived(&photo.sha256, kind, rendered.clone())
                .await
            {
                tracing::warn!(%error, "could not keep a derived photo");
            }
            rendered
        }
    };
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg")),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, max-age=3600"),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// `GET /console/unvisited`: households not yet visited in person this month, by village.
pub async fn unvisited(
    State(state): State<ConsoleState>,
    Reviewer(principal): Reviewer,
) -> Result<Response, ConsoleError> {
    let app = &state.app;
    let households = review::unvisited_this_month(app, &principal).await?;
    let groups = views::group_by_village(&households);
    let view = views::UnvisitedView {
        principal: &principal,
        month_label: super::display::beijing_month_label(app.clock.now()),
        groups: &groups,
        total: households.len(),
    };
    Ok(views::unvisited_page(&view).into_response())
}

/// Query of the conflicts page.
#[derive(Debug, Default, Deserialize)]
pub struct ConflictsQuery {
    #[serde(default)]
    resolved: Option<String>,
}

/// `GET /console/conflicts`: the township's open conflict records.
pub async fn conflicts(
    State(state): State<ConsoleState>,
    Reviewer(principal): Reviewer,
    Query(query): Query<ConflictsQuery>,
) -> Result<Response, ConsoleError> {
    let conflicts = review::open_conflicts(&state.app, &principal).await?;
    let view = views::ConflictsView {
        principal: &principal,
        conflicts: &conflicts,
        resolved: query.resolved.is_some(),
    };
    Ok(views::conflicts_page(&view).into_response())
}

/// Fields of the resolve form. Defaults turn a missing field into a clear error page.
#[derive(Debug, Default, Deserialize)]
pub struct ResolveForm {
    #[serde(default)]
    conflict_key: String,
    /// `first`, `second` or `custom`.
    #[serde(default)]
    choice: String,
    #[serde(default)]
    custom_value: String,
}

/// `POST /console/conflicts/resolve`: record the supervisor's choice, then back to the list.
pub async fn resolve_conflict(
    State(state): State<ConsoleState>,
    Reviewer(principal): Reviewer,
    Form(form): Form<ResolveForm>,
) -> Result<Redirect, ConsoleError> {
    let back = |error| ConsoleError::with_back_link(error, CONFLICTS_PATH);
    let choice = match form.choice.as_str() {
        "first" => review::ConflictChoice::First,
        "second" => review::ConflictChoice::Second,
        "custom" => {
            // The typed text is read in the vocabulary of the conflict's field.
            let conflict = review::open_conflicts(&state.app, &principal)
                .await
                .map_err(back)?
                .into_iter()
                .find(|conflict| conflict.conflict_key == form.conflict_key)
                .ok_or_else(|| {
                    back(ServiceError::NotFound(format!(
                        "conflict {} not found",
                        form.conflict_key
                    )))
                })?;
            review::ConflictChoice::Custom(
                super::fields::typed_value(&conflict.field, &form.custom_value).map_err(back)?,
            )
        }
        _ => {
            return Err(back(ServiceError::invalid(
                "choice",
                "请选择值 A、值 B 或填写其他值",
            )));
        }
    };
    review::resolve_conflict(&state.app, &principal, &form.conflict_key, choice)
        .await
        .map_err(back)?;
    Ok(Redirect::to(&format!("{CONFLICTS_PATH}?resolved=1")))
}

/// `GET /console/devices`: cadres' devices holding unsent data, oldest first.
pub async fn devices(
    State(state): State<ConsoleState>,
    Reviewer(principal): Reviewer,
) -> Result<Response, ConsoleError> {
    let devices = review::device_backlog(&state.app, &principal).await?;
    let view = views::DevicesView {
        principal: &principal,
        devices: &devices,
        now: state.app.clock.now(),
    };
    Ok(views::devices_page(&view).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_decisions_produce_a_banner() {
        assert!(decided_notice(Some("approved")).is_some());
        assert!(decided_notice(Some("returned")).is_some());
        assert_eq!(decided_notice(Some("<script>")), None);
        assert_eq!(decided_notice(None), None);
    }
}
