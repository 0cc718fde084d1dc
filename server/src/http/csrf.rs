//! Cross-site request forgery defence (跨站请求伪造防护) for the console: ONE check, an axum
//! middleware ([`guard`]) in front of every console route, so no handler can forget it.
//!
//! `SameSite=Strict` on the session cookie is not enough: another application on the same
//! host (another port) is "same-site", so its pages can post to the console with the
//! victim's cookie. Every state-changing request (anything but GET/HEAD/OPTIONS) under the
//! console router therefore needs:
//! - an acceptable origin: `Origin`, when present, names this server (host and port of the
//!   request's `Host`, plus the scheme when the request carries it); when `Origin` is absent
//!   a present `Referer` must point to this server; when both are absent (scripts, curl),
//!   only the token below decides;
//! - when the request carries a session cookie, the session's CSRF token, in the
//!   `X-CSRF-Token` header (JSON callers) or the hidden `csrf_token` form field (forms,
//!   including the multipart roster upload).
//!
//! The token is HMAC-SHA256, keyed with the server's `csrf` key (`keys.rs`, outside the
//! data folder), over the SHA-256 of the session token that the sessions table already
//! stores. Nothing new is stored, a token dies with its session, and one session's token is
//! worthless with another's cookie. It is compared in constant time.
//!
//! Exempt: the login form (there is no session yet; it still gets the origin check), and the
//! routes outside this router: tus uploads (bearer token, no cookie) and gRPC.
//!
//! Pages put the token into forms with [`form_field`] and into `<meta name="csrf-token">`
//! with [`meta_tag`] (for scripts). Both read the token the guard derived for this request,
//! kept in a task-local for the duration of the handler: forms are rendered deep inside
//! view helpers that are otherwise plain functions of their data, and threading one
//! per-page value through every one of them would touch each view's signature.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::uri::Authority;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use maud::{Markup, html};
use sha2::Sha256;

use super::{ConsoleState, LOGIN_PATH, session_token, views};
use crate::auth;
use crate::keys::SecretKey;

/// Name of the key file (`<key_dir>/csrf.key`).
pub const KEY_NAME: &str = "csrf";
/// Header JSON callers send the token in.
pub const TOKEN_HEADER: &str = "x-csrf-token";
/// Name of the hidden form field that carries the token.
pub const TOKEN_FIELD: &str = "csrf_token";
/// Largest url-encoded form the guard reads to find the token: console forms are a few
/// fields of text; axum's own default body limit is the same.
const FORM_BODY_LIMIT: usize = 2 * 1024 * 1024;
/// Separates the purpose from the session hash, so the key could never sign anything else
/// by accident.
const TOKEN_CONTEXT: &[u8] = b"fieldsync console csrf v1\0";

type HmacSha256 = Hmac<Sha256>;

tokio::task_local! {
    /// The CSRF token of the session behind the request being handled, for rendering.
    static PAGE_TOKEN: String;
}

/// The key that derives the sessions' CSRF tokens.
#[derive(Debug, Clone)]
pub struct CsrfKey(SecretKey);

impl CsrfKey {
    pub fn new(key: SecretKey) -> Self {
        Self(key)
    }

    fn mac_for(&self, session_token: &str) -> HmacSha256 {
        // An HMAC key may have any length, so this cannot fail.
        let mut mac = <HmacSha256 as Mac>::new_from_slice(self.0.bytes())
            .unwrap_or_else(|_| unreachable!("HMAC-SHA256 accepts a 32-byte key"));
        mac.update(TOKEN_CONTEXT);
        mac.update(auth::token_sha256(session_token).as_bytes());
        mac
    }

    /// The CSRF token of the session whose cookie holds `session_token` (64 hex digits).
    pub fn token_for(&self, session_token: &str) -> String {
        hex::encode(self.mac_for(session_token).finalize().into_bytes())
    }

    /// Whether `presented` is the session's token, compared in constant time.
    pub fn matches(&self, session_token: &str, presented: &str) -> bool {
        let mut bytes = [0u8; 32];
        if hex::decode_to_slice(presented.trim(), &mut bytes).is_err() {
            return false;
        }
        self.mac_for(session_token).verify_slice(&bytes).is_ok()
    }
}

/// The hidden `csrf_token` field every `<form method="post">` of a logged-in page carries.
/// Renders nothing when the request has no session (the login page).
pub fn form_field() -> Markup {
    let token = PAGE_TOKEN.try_with(Clone::clone).ok();
    html! {
        @if let Some(token) = token {
            input type="hidden" name=(TOKEN_FIELD) value=(token);
        }
    }
}

/// `<meta name="csrf-token">` for the page's `<head>`, for scripts that post with `fetch`.
pub fn meta_tag() -> Markup {
    let token = PAGE_TOKEN.try_with(Clone::clone).ok();
    html! {
        @if let Some(token) = token {
            meta name="csrf-token" content=(token);
        }
    }
}

/// Why a state-changing request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsrfRefusal {
    /// `Origin` (or, without it, `Referer`) names another site.
    ForeignOrigin,
    /// A session cookie came without a CSRF token.
    MissingToken,
    /// The token is not this session's.
    WrongToken,
    /// The form was larger than the guard reads.
    BodyTooLarge,
    /// The body could not be read or parsed.
    UnreadableBody,
}

impl CsrfRefusal {
    /// The stable code JSON callers can branch on.
    pub fn code(self) -> &'static str {
        match self {
            Self::ForeignOrigin => "foreign_origin",
            Self::MissingToken => "csrf_token_missing",
            Self::WrongToken => "csrf_token_invalid",
            Self::BodyTooLarge => "body_too_large",
            Self::UnreadableBody => "body_unreadable",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            Self::ForeignOrigin | Self::MissingToken | Self::WrongToken => StatusCode::FORBIDDEN,
            Self::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnreadableBody => StatusCode::BAD_REQUEST,
        }
    }

    /// Chinese title and message of the refusal page.
    fn text_zh(self) -> (&'static str, &'static str) {
        match self {
            Self::ForeignOrigin => (
                "请求来源不可信",
                "该请求不是从本系统的页面发出的，已被拒绝。请直接打开审核台页面重新操作。",
            ),
            Self::MissingToken | Self::WrongToken => (
                "页面已过期，请刷新后重试",
                "页面已过期或登录状态已变化，请刷新页面后重新提交。",
            ),
            Self::BodyTooLarge => ("提交内容过大", "提交的内容超过了允许的大小。"),
            Self::UnreadableBody => ("提交内容有误", "无法读取提交的内容，请刷新页面后重试。"),
        }
    }

    fn into_response_for(self, json: bool) -> Response {
        let status = self.status();
        let (title, message) = self.text_zh();
        if json {
            let body = serde_json::json!({
                "error": format!("{title} ({})", self.code()),
                "reason": self.code(),
            });
            (status, Json(body)).into_response()
        } else {
            let back = (self != Self::ForeignOrigin).then_some("/console");
            (status, views::error_page(status, title, message, back)).into_response()
        }
    }
}

/// The middleware: refuse forged state-changing requests, and make the session's token
/// available to the pages rendered for this request.
pub async fn guard(State(state): State<ConsoleState>, request: Request, next: Next) -> Response {
    let session = session_token(request.headers()).map(str::to_owned);
    let request = if changes_state(request.method()) {
        let json = request.uri().path().starts_with("/console/api/");
        match check(&state.csrf, session.as_deref(), request).await {
            Ok(request) => request,
            Err((refusal, path)) => {
                tracing::warn!(reason = refusal.code(), %path, "console request refused by the CSRF check");
                return refusal.into_response_for(json);
            }
        }
    } else {
        request
    };
    match session {
        Some(session) => {
            let token = state.csrf.token_for(&session);
            PAGE_TOKEN.scope(token, next.run(request)).await
        }
        None => next.run(request).await,
    }
}

fn changes_state(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// The checks of one state-changing request; gives the request back (with its body intact)
/// when it may proceed.
async fn check(
    key: &CsrfKey,
    session: Option<&str>,
    request: Request,
) -> Result<Request, (CsrfRefusal, String)> {
    let path = request.uri().path().to_owned();
    if !origin_is_acceptable(request.headers(), request.uri()) {
        return Err((CsrfRefusal::ForeignOrigin, path));
    }
    // Login has no session yet; without a cookie there is no ambient authority to abuse
    // (the handler answers 401), so only requests with a session cookie need the token.
    let Some(session) = session.filter(|_| path != LOGIN_PATH) else {
        return Ok(request);
    };
    let (presented, request) = presented_token(request)
        .await
        .map_err(|refusal| (refusal, path.clone()))?;
    match presented {
        None => Err((CsrfRefusal::MissingToken, path)),
        Some(token) if key.matches(session, &token) => Ok(request),
        Some(_) => Err((CsrfRefusal::WrongToken, path)),
    }
}

/// Host and port this request was addressed to, lower-cased: the `Host` header (HTTP/1.1)
/// or the URI's authority (HTTP/2).
fn request_authority(headers: &HeaderMap, uri: &Uri) -> Option<Authority> {
    headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .and_then(|host| host.parse::<Authority>().ok())
        .or_else(|| uri.authority().cloned())
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// Whether `url` (an `Origin` value or a `Referer` URL) names the server the request was
/// sent to. Host and port are compared; the scheme only when the request carries it (the
/// server does not know here whether TLS terminated in front of it). One port serves one
/// scheme, so an equal host and port is the same server.
fn names_this_server(url: &str, request_host: &Authority, request_scheme: Option<&str>) -> bool {
    let Ok(url) = url.parse::<Uri>() else {
        return false;
    };
    let (Some(scheme), Some(authority)) = (url.scheme_str(), url.authority()) else {
        return false;
    };
    if request_scheme.is_some_and(|request_scheme| request_scheme != scheme) {
        return false;
    }
    let Some(port) = authority.port_u16().or_else(|| default_port(scheme)) else {
        return false;
    };
    let request_port = request_host
        .port_u16()
        .or_else(|| default_port(request_scheme.unwrap_or(scheme)));
    authority.host().eq_ignore_ascii_case(request_host.host()) && Some(port) == request_port
}

/// The origin rule: `Origin` must name this server when present; otherwise `Referer` when
/// present; with neither, the token alone decides.
fn origin_is_acceptable(headers: &HeaderMap, uri: &Uri) -> bool {
    let origin = headers.get(header::ORIGIN).map(|value| value.to_str());
    let referer = headers.get(header::REFERER).map(|value| value.to_str());
    let claimed = match (origin, referer) {
        (Some(origin), _) => origin,
        (None, Some(referer)) => referer,
        (None, None) => return true,
    };
    let Ok(claimed) = claimed else {
        return false;
    };
    let Some(request_host) = request_authority(headers, uri) else {
        return false;
    };
    names_this_server(claimed, &request_host, uri.scheme_str())
}

/// The token the request presents: the `X-CSRF-Token` header, else the `csrf_token` field of
/// a url-encoded or multipart form. Reading a form consumes the body, so the request is
/// rebuilt with the same bytes for the handler.
async fn presented_token(request: Request) -> Result<(Option<String>, Request), CsrfRefusal> {
    if let Some(value) = request.headers().get(TOKEN_HEADER) {
        let token = value.to_str().map(str::to_owned).ok();
        return Ok((token, request));
    }
    // The multipart boundary is case-sensitive, so only the media type is lower-cased.
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let media_type = content_type.to_ascii_lowercase();
    if media_type.starts_with("application/x-www-form-urlencoded") {
        let (parts, bytes) = buffer(request, FORM_BODY_LIMIT).await?;
        let token = form_urlencoded::parse(&bytes)
            .find(|(name, _)| name == TOKEN_FIELD)
            .map(|(_, value)| value.into_owned());
        Ok((token, Request::from_parts(parts, Body::from(bytes))))
    } else if media_type.starts_with("multipart/form-data") {
        let boundary =
            multer::parse_boundary(&content_type).map_err(|_| CsrfRefusal::UnreadableBody)?;
        let (parts, bytes) = buffer(request, super::roster::UPLOAD_BODY_LIMIT).await?;
        let token = multipart_token(bytes.clone(), boundary).await?;
        Ok((token, Request::from_parts(parts, Body::from(bytes))))
    } else {
        Ok((None, request))
    }
}

async fn buffer(
    request: Request,
    limit: usize,
) -> Result<(axum::http::request::Parts, Bytes), CsrfRefusal> {
    let (parts, body) = request.into_parts();
    match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => Ok((parts, bytes)),
        Err(error) => {
            let too_large = std::error::Error::source(&error)
                .is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
            Err(if too_large {
                CsrfRefusal::BodyTooLarge
            } else {
                CsrfRefusal::UnreadableBody
            })
        }
    }
}

/// The `csrf_token` part of a multipart body. The form puts it first, so the file after it
/// is normally not even parsed.
async fn multipart_token(bytes: Bytes, boundary: String) -> Result<Option<String>, CsrfRefusal> {
    let mut multipart = multer::Multipart::new(Body::from(bytes).into_data_stream(), boundary);
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|_| CsrfRefusal::UnreadableBody)?
    {
        if field.name() == Some(TOKEN_FIELD) {
            let token = field
                .text()
                .await
                .map_err(|_| CsrfRefusal::UnreadableBody)?;
            return Ok(Some(token));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> CsrfKey {
        CsrfKey::new(SecretKey::from_bytes([byte; 32]))
    }

    #[test]
    fn a_token_belongs_to_one_session_and_one_key() {
        let token = key(1).token_for("session-a");
        assert_eq!(token.len(), 64);
        assert!(key(1).matches("session-a", &token));
        assert!(!key(1).matches("session-b", &token), "another session");
        assert!(!key(2).matches("session-a", &token), "another server key");
        assert!(!key(1).matches("session-a", &token[..63]), "truncated");
        assert!(!key(1).matches("session-a", "not hex"));
        assert!(!key(1).matches("session-a", ""));
        assert_eq!(
            token,
            key(1).token_for("session-a"),
            "stable, nothing stored"
        );
    }

    /// A form added later (on another branch, say) without the hidden token would only fail
    /// at run time with 403; this catches it at test time. The login form is the exception.
    #[test]
    fn every_post_form_in_the_console_views_carries_the_token() {
        let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http");
        let mut forms = 0;
        for entry in std::fs::read_dir(&folder).expect("src/http") {
            let path = entry.expect("entry").path();
            if path.extension().is_none_or(|extension| extension != "rs") {
                continue;
            }
            let source = std::fs::read_to_string(&path).expect("source");
            let lines: Vec<&str> = source.lines().collect();
            for (index, line) in lines.iter().enumerate() {
                let is_post_form = line.trim_start().starts_with("form")
                    && (line.contains(r#"method="post""#) || line.contains("method=post"));
                if !is_post_form || line.contains(r#"action="/console/login""#) {
                    continue;
                }
                forms += 1;
                assert!(
                    lines[index + 1..]
                        .iter()
                        .take(3)
                        .any(|next| next.contains("csrf::form_field()")),
                    "{}:{}: a POST form without (super::csrf::form_field())",
                    path.display(),
                    index + 1
                );
            }
        }
        assert!(forms >= 11, "the scan found the console's forms ({forms})");
    }

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(name.clone(), value.parse().expect("header value"));
        }
        map
    }

    #[test]
    fn origin_must_name_this_host_and_port() {
        let uri: Uri = "/console/pairings/helpers".parse().expect("uri");
        let host = (header::HOST, "127.0.0.1:8080");
        let accepted = |origin: &str| {
            origin_is_acceptable(&headers(&[host.clone(), (header::ORIGIN, origin)]), &uri)
        };
        assert!(accepted("http://127.0.0.1:8080"));
        assert!(accepted("https://127.0.0.1:8080"), "scheme unknown here");
        assert!(
            !accepted("http://127.0.0.1:8081"),
            "another app on the same host"
        );
        assert!(!accepted("http://evil.example:8080"));
        assert!(!accepted("http://127.0.0.1"), "port 80 is another server");
        assert!(!accepted("null"));
        assert!(!accepted(""));
        let default_port = headers(&[
            (header::HOST, "Console.Example"),
            (header::ORIGIN, "https://console.example"),
        ]);
        assert!(origin_is_acceptable(&default_port, &uri));
        let https_with_scheme: Uri = "https://console.example/console/logout"
            .parse()
            .expect("uri");
        let plain_origin = headers(&[(header::ORIGIN, "http://console.example:443")]);
        assert!(
            !origin_is_acceptable(&plain_origin, &https_with_scheme),
            "scheme known and different"
        );
    }

    #[test]
    fn referer_counts_only_without_origin_and_neither_leaves_it_to_the_token() {
        let uri: Uri = "/console/logout".parse().expect("uri");
        let host = (header::HOST, "10.0.0.5:8080");
        assert!(origin_is_acceptable(
            &headers(&[
                host.clone(),
                (header::REFERER, "http://10.0.0.5:8080/console/queue")
            ]),
            &uri
        ));
        assert!(!origin_is_acceptable(
            &headers(&[
                host.clone(),
                (header::REFERER, "http://10.0.0.5:9090/attack.html")
            ]),
            &uri
        ));
        assert!(
            !origin_is_acceptable(
                &headers(&[
                    host.clone(),
                    (header::ORIGIN, "http://10.0.0.5:9090"),
                    (header::REFERER, "http://10.0.0.5:8080/console/queue"),
                ]),
                &uri
            ),
            "Origin wins over Referer"
        );
        assert!(origin_is_acceptable(&headers(&[host]), &uri));
    }
}
