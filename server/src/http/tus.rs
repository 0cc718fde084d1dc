//! Resumable photo upload over HTTP with tus 1.0 semantics (core protocol plus the
//! `creation` and `checksum` extensions), so that iOS `URLSession` and Android WorkManager
//! background tasks can drive uploads while the app is suspended. It is the same blob
//! service as gRPC `Media` (DESIGN §4 "Media"): the same upload rows, the same staging
//! files, the same completion ([`crate::media::uploads`]), so a photo started on one edge
//! can be finished on the other and the same photo always ends as one blob.
//!
//! Every request but `OPTIONS` carries `Tus-Resumable: 1.0.0` (else `412`) and
//! `Authorization: Bearer <token>` (a phone session, as for gRPC; else `401`). Every response
//! carries `Tus-Resumable: 1.0.0` and `Cache-Control: no-store`.
//!
//! - `OPTIONS /tus/uploads` → `204` with `Tus-Version: 1.0.0`,
//!   `Tus-Extension: creation,checksum,expiration`, `Tus-Checksum-Algorithm: sha256,crc32c` and
//!   `Tus-Max-Size`. No authentication needed.
//! - `POST /tus/uploads` with `Upload-Length` and `Upload-Metadata: sha256 <base64>,filetype
//!   <base64>` (`sha256`: the photo's SHA-256 as 64 lower-case hex characters, or the 32 raw
//!   bytes, base64-encoded; `filetype`: `image/jpeg`, `image/png` or `image/webp`; other keys
//!   are ignored) → `201` with `Location: /tus/uploads/<upload_id>` and `Upload-Offset`.
//!   Idempotent on the SHA-256 per user, like `StartUpload`: the caller's unfinished upload
//!   of the same bytes comes back with its committed offset; when the blob is already
//!   stored the upload is complete at once (`Upload-Offset` = `Upload-Length`). A length
//!   above the photo limit is `413`; `Upload-Defer-Length` is not supported (`400`).
//! - `HEAD /tus/uploads/{id}` → `200` with `Upload-Offset` (the durable, authoritative
//!   offset), `Upload-Length` and `Upload-Metadata`. Someone else's or an unknown (or
//!   expired) upload is `404`.
//! - `PATCH /tus/uploads/{id}` with `Content-Type: application/offset+octet-stream` (else
//!   `415`) and `Upload-Offset` equal to the committed offset (else `409` carrying the
//!   committed offset in `Upload-Offset`) → `204` with the new `Upload-Offset`. The body is
//!   streamed to the staging file and fsynced before its offset is stored; a body longer
//!   than the rest of the upload is `413`. Without `Upload-Checksum`, a body cut mid-way
//!   keeps every byte that arrived (fsynced, then acknowledged in the store) and the next
//!   `HEAD` says where to resume. With `Upload-Checksum: <algorithm> <base64 digest>` the
//!   body is all or nothing: a mismatch is `460` and the offset stays where it was.
//!   Algorithms: `sha256` (the 32-byte digest) and `crc32c` (the 4-byte big-endian
//!   CRC32C, as gRPC `PutChunk` uses); others are `400`. The PATCH that reaches
//!   `Upload-Length` verifies size and full SHA-256 and commits the blob before answering;
//!   if the bytes do not hash to the declared SHA-256 the answer is `460` with
//!   `Upload-Offset: 0` (the upload was rewound, send it again). A PATCH on a complete
//!   upload at its length is `204` (a retried final PATCH), at any other offset `409`.
//!
//! Expiration: every answer about an unfinished upload (`POST`, `HEAD`, `PATCH`) carries
//! `Upload-Expires` (an HTTP date): the upload's latest activity plus `upload_expiry_hours`.
//! Each start, `HEAD` or acknowledged `PATCH` is activity, so an upload that keeps moving
//! never expires; after the date the daily sweep may delete it, and it then answers `404`.
//!
//! Not supported: `termination`, `concatenation`,
//! `creation-with-upload`, `creation-defer-length`, `X-HTTP-Method-Override`. tus lists
//! `sha1` as the checksum extension's mandatory algorithm; it is left out because phones
//! already compute SHA-256 and CRC32C for the gRPC path.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{head, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use fieldsync_model::visit::MAX_PHOTO_BYTES;
use sha2::{Digest, Sha256};
use tokio_stream::StreamExt;

use super::status_for;
use crate::AppState;
use crate::auth;
use crate::error::ServiceError;
use crate::media::blobs::BlobError;
use crate::media::uploads::{self, Started, UploadError};
use crate::store::{Principal, UploadRecord};

/// The protocol version spoken here.
pub const TUS_VERSION: &str = "1.0.0";
/// Where uploads are created; an upload lives at `UPLOADS_PATH/<upload_id>`.
pub const UPLOADS_PATH: &str = "/tus/uploads";
/// Media type of a PATCH body.
pub const OFFSET_OCTET_STREAM: &str = "application/offset+octet-stream";

const TUS_RESUMABLE: HeaderName = HeaderName::from_static("tus-resumable");
const TUS_VERSION_HEADER: HeaderName = HeaderName::from_static("tus-version");
const TUS_EXTENSION: HeaderName = HeaderName::from_static("tus-extension");
const TUS_MAX_SIZE: HeaderName = HeaderName::from_static("tus-max-size");
const TUS_CHECKSUM_ALGORITHM: HeaderName = HeaderName::from_static("tus-checksum-algorithm");
const UPLOAD_OFFSET: HeaderName = HeaderName::from_static("upload-offset");
const UPLOAD_LENGTH: HeaderName = HeaderName::from_static("upload-length");
const UPLOAD_METADATA: HeaderName = HeaderName::from_static("upload-metadata");
const UPLOAD_CHECKSUM: HeaderName = HeaderName::from_static("upload-checksum");
const UPLOAD_DEFER_LENGTH: HeaderName = HeaderName::from_static("upload-defer-length");
const UPLOAD_EXPIRES: HeaderName = HeaderName::from_static("upload-expires");

/// `Upload-Expires` for an unfinished upload last active at `last_activity`, as an HTTP
/// date (RFC 9110 IMF-fixdate, always GMT).
fn expires_value(state: &AppState, last_activity: time::OffsetDateTime) -> HeaderValue {
    const IMF_FIXDATE: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let expires = last_activity.to_offset(time::UtcOffset::UTC)
        + time::Duration::hours(i64::from(state.settings.upload_expiry_hours));
    expires
        .format(IMF_FIXDATE)
        .ok()
        .and_then(|text| HeaderValue::try_from(text).ok())
        .unwrap_or_else(|| HeaderValue::from_static(""))
}

/// Add `Upload-Expires` to an answer about `upload` unless it is complete (complete uploads
/// never expire).
fn with_expiry(mut response: Response, state: &AppState, upload: &UploadRecord) -> Response {
    if !upload.complete {
        response.headers_mut().insert(
            UPLOAD_EXPIRES,
            expires_value(state, upload.last_activity_at),
        );
    }
    response
}

/// Received bytes are written and fsynced (and, without a checksum, acknowledged in the
/// store) every this many bytes, so a cut costs at most this much and a PATCH holds at
/// most this much in memory. The same size as a gRPC chunk.
const FLUSH_BYTES: usize = 256 * 1024;

/// A PATCH whose body delivers nothing for this long is treated as cut: what arrived is
/// kept and the upload's lock released, so the phone's next connection can resume instead
/// of waiting behind a dead one.
const IDLE_BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// The tus routes with their state applied, ready to merge into the server's router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route(UPLOADS_PATH, post(create).options(discover))
        .route(
            "/tus/uploads/{upload_id}",
            head(offset).patch(append).options(discover),
        )
        .layer(axum::middleware::map_response(tus_headers))
        .with_state(state)
}

/// Headers every tus response carries. Offsets change with every PATCH, so nothing is
/// cached.
async fn tus_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(TUS_RESUMABLE, HeaderValue::from_static(TUS_VERSION));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// Why a tus request was refused, each with its tus status.
#[derive(Debug)]
enum TusError {
    /// Missing or other `Tus-Resumable`: `412` with the versions spoken here.
    Version,
    /// A use-case error: its status from [`status_for`] (400/401/403/404/409/503…).
    Service(ServiceError),
    /// The sent `Upload-Offset` is not the committed one: `409` carrying the committed one.
    Offset { committed: u64, sent: u64 },
    /// Longer than the photo limit or the rest of the upload: `413`.
    TooLarge(String),
    /// A PATCH body that is not `application/offset+octet-stream`: `415`.
    MediaType,
    /// `Upload-Checksum` or the whole photo's SHA-256 did not match: `460`, with the offset
    /// to resume from.
    Checksum { message: String, offset: u64 },
}

impl From<ServiceError> for TusError {
    fn from(error: ServiceError) -> Self {
        Self::Service(error)
    }
}

impl From<UploadError> for TusError {
    fn from(error: UploadError) -> Self {
        Self::Service(error.into())
    }
}

impl From<crate::store::StoreError> for TusError {
    fn from(error: crate::store::StoreError) -> Self {
        Self::Service(error.into())
    }
}

impl From<BlobError> for TusError {
    fn from(error: BlobError) -> Self {
        Self::Service(error.into())
    }
}

fn invalid(field: &str, message: impl Into<String>) -> TusError {
    TusError::Service(ServiceError::invalid(field, message))
}

/// Status 460 "Checksum Mismatch" of the tus checksum extension.
fn checksum_mismatch_status() -> StatusCode {
    StatusCode::from_u16(460).unwrap_or(StatusCode::BAD_REQUEST)
}

fn offset_value(offset: u64) -> HeaderValue {
    HeaderValue::from(offset)
}

impl IntoResponse for TusError {
    fn into_response(self) -> Response {
        match self {
            Self::Version => (
                StatusCode::PRECONDITION_FAILED,
                [(TUS_VERSION_HEADER, HeaderValue::from_static(TUS_VERSION))],
                "Tus-Resumable: only 1.0.0 is supported",
            )
                .into_response(),
            Self::Service(error) => {
                let status = status_for(&error);
                let mut response = (status, error.to_string()).into_response();
                if status == StatusCode::UNAUTHORIZED {
                    response.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Bearer"),
                    );
                }
                response
            }
            Self::Offset { committed, sent } => (
                StatusCode::CONFLICT,
                [(UPLOAD_OFFSET, offset_value(committed))],
                format!(
                    "Upload-Offset: expected {committed}, got {sent}; resume from the committed offset"
                ),
            )
                .into_response(),
            Self::TooLarge(message) => (StatusCode::PAYLOAD_TOO_LARGE, message).into_response(),
            Self::MediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Content-Type: a PATCH body must be {OFFSET_OCTET_STREAM}"),
            )
                .into_response(),
            Self::Checksum { message, offset } => (
                checksum_mismatch_status(),
                [(UPLOAD_OFFSET, offset_value(offset))],
                message,
            )
                .into_response(),
        }
    }
}

/// Refuse requests that do not speak tus 1.0.0.
fn check_resumable(headers: &HeaderMap) -> Result<(), TusError> {
    match headers.get(TUS_RESUMABLE) {
        Some(value) if value.as_bytes() == TUS_VERSION.as_bytes() => Ok(()),
        _ => Err(TusError::Version),
    }
}

/// The caller behind `Authorization: Bearer <token>`: the same sessions as gRPC.
async fn caller(state: &AppState, headers: &HeaderMap) -> Result<Principal, TusError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or_default()
        .trim();
    auth::authenticate(
        state.store.as_ref(),
        token,
        &auth::SessionPolicy::from_settings(&state.settings),
        "",
        state.clock.now(),
    )
    .await
    .map_err(|error| TusError::Service(error.into()))
}

/// The caller's upload; someone else's upload is "not found" so ids reveal nothing.
async fn own_upload(
    state: &AppState,
    principal: &Principal,
    upload_id: &str,
) -> Result<UploadRecord, TusError> {
    match state.store.get_upload(upload_id).await? {
        Some(upload) if upload.user_id == principal.user_id => Ok(upload),
        _ => Err(ServiceError::NotFound(format!("upload {upload_id} not found")).into()),
    }
}

/// A non-negative decimal header such as `Upload-Length` or `Upload-Offset`.
fn number_header(headers: &HeaderMap, name: &HeaderName) -> Result<Option<u64>, TusError> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default();
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(invalid(name.as_str(), "must be a non-negative integer"));
    }
    text.parse()
        .map(Some)
        .map_err(|_| invalid(name.as_str(), "is out of range"))
}

/// `Upload-Metadata`: comma-separated `key base64value` pairs (the value may be missing).
fn parse_metadata(text: &str) -> Result<Vec<(String, Vec<u8>)>, TusError> {
    let mut pairs: Vec<(String, Vec<u8>)> = Vec::new();
    for item in text.split(',') {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let (key, value) = match item.split_once(' ') {
            Some((key, value)) => (key, value.trim()),
            None => (item, ""),
        };
        if pairs.iter().any(|(existing, _)| existing == key) {
            return Err(invalid(
                "Upload-Metadata",
                format!("key {key:?} appears twice"),
            ));
        }
        let value = BASE64.decode(value).map_err(|_| {
            invalid(
                "Upload-Metadata",
                format!("the value of {key:?} is not base64"),
            )
        })?;
        pairs.push((key.to_owned(), value));
    }
    Ok(pairs)
}

/// The photo's SHA-256 from its metadata value: 64 hex characters, or the 32 raw bytes.
fn declared_sha256(value: &[u8]) -> Result<String, TusError> {
    if value.len() == 32 {
        return Ok(hex::encode(value));
    }
    std::str::from_utf8(value)
        .map(str::to_ascii_lowercase)
        .map_err(|_| invalid("sha256", "must be 64 hex characters or 32 bytes"))
}

fn metadata_header(upload: &UploadRecord) -> HeaderValue {
    let text = format!(
        "sha256 {},filetype {}",
        BASE64.encode(&upload.sha256),
        BASE64.encode(&upload.mime_type)
    );
    HeaderValue::try_from(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn location(upload_id: &str) -> HeaderValue {
    HeaderValue::try_from(format!("{UPLOADS_PATH}/{upload_id}"))
        .unwrap_or_else(|_| HeaderValue::from_static(UPLOADS_PATH))
}

/// `OPTIONS`: what this server speaks.
async fn discover() -> Response {
    (
        StatusCode::NO_CONTENT,
        [
            (TUS_VERSION_HEADER, HeaderValue::from_static(TUS_VERSION)),
            (
                TUS_EXTENSION,
                HeaderValue::from_static("creation,checksum,expiration"),
            ),
            (
                TUS_CHECKSUM_ALGORITHM,
                HeaderValue::from_static("sha256,crc32c"),
            ),
            (TUS_MAX_SIZE, HeaderValue::from(MAX_PHOTO_BYTES)),
        ],
    )
        .into_response()
}

/// `POST /tus/uploads`: create (or find again) the caller's upload of one photo.
async fn create(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, TusError> {
    check_resumable(&headers)?;
    let principal = caller(&state, &headers).await?;
    if headers.contains_key(UPLOAD_DEFER_LENGTH) {
        return Err(invalid(
            "Upload-Defer-Length",
            "not supported; send Upload-Length",
        ));
    }
    let length = number_header(&headers, &UPLOAD_LENGTH)?
        .ok_or_else(|| invalid("Upload-Length", "required"))?;
    if length > MAX_PHOTO_BYTES {
        return Err(TusError::TooLarge(format!(
            "Upload-Length: {length} is above the limit of {MAX_PHOTO_BYTES} bytes"
        )));
    }
    let metadata = headers
        .get(UPLOAD_METADATA)
        .map(|value| value.to_str().unwrap_or_default())
        .map(parse_metadata)
        .transpose()?
        .unwrap_or_default();
    let value_of = |key: &str| {
        metadata
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_slice())
    };
    let sha256 = declared_sha256(
        value_of("sha256").ok_or_else(|| invalid("Upload-Metadata", "sha256 is required"))?,
    )?;
    let mime_type = value_of("filetype")
        .ok_or_else(|| invalid("Upload-Metadata", "filetype is required"))
        .and_then(|value| {
            std::str::from_utf8(value).map_err(|_| invalid("filetype", "must be text"))
        })?
        .to_owned();

    let upload =
        match uploads::start(&state, &principal.user_id, &sha256, length, &mime_type).await? {
            Started::Upload(upload) => settle(&state, upload).await?,
            // Already stored (by anyone): the caller's upload is complete at once, at a URL
            // it can ask about like any other.
            Started::BlobExists => {
                match state
                    .store
                    .find_upload_by_sha256(&sha256, &principal.user_id)
                    .await?
                    .filter(|upload| upload.complete && upload.size_bytes == length)
                {
                    Some(upload) => upload,
                    None => {
                        state
                            .store
                            .start_upload(UploadRecord {
                                upload_id: uuid::Uuid::now_v7().to_string(),
                                sha256,
                                size_bytes: length,
                                mime_type,
                                committed_offset: length,
                                complete: true,
                                user_id: principal.user_id,
                                last_activity_at: state.clock.now(),
                            })
                            .await?
                    }
                }
            }
        };
    let created = (
        StatusCode::CREATED,
        [
            (header::LOCATION, location(&upload.upload_id)),
            (UPLOAD_OFFSET, offset_value(upload.committed_offset)),
        ],
    )
        .into_response();
    Ok(with_expiry(created, &state, &upload))
}

/// Finish an upload whose bytes all arrived but whose completion did not happen (the
/// server stopped, or the store was briefly unavailable, between the last write and the
/// commit), so that an offset equal to the length always means "stored". Returns the
/// upload as it now is (rewound to 0 if its bytes did not verify).
async fn settle(state: &AppState, upload: UploadRecord) -> Result<UploadRecord, TusError> {
    if upload.complete || upload.committed_offset != upload.size_bytes {
        return Ok(upload);
    }
    let lock = uploads::lock(&upload.upload_id);
    let _guard = lock.lock().await;
    let Some(upload) = state.store.get_upload(&upload.upload_id).await? else {
        return Err(
            ServiceError::NotFound(format!("upload {} not found", upload.upload_id)).into(),
        );
    };
    match uploads::complete(state, &upload).await {
        // A mismatch or a refused photo rewound the upload to 0: HEAD then says so.
        Ok(())
        | Err(UploadError::Incomplete { .. })
        | Err(UploadError::Mismatch(_))
        | Err(UploadError::Rejected(_)) => {}
        Err(other) => return Err(other.into()),
    }
    Ok(state
        .store
        .get_upload(&upload.upload_id)
        .await?
        .unwrap_or(upload))
}

/// `HEAD /tus/uploads/{id}`: the durable offset to resume from.
async fn offset(
    State(state): State<AppState>,
    Path(upload_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, TusError> {
    check_resumable(&headers)?;
    let principal = caller(&state, &headers).await?;
    let upload = own_upload(&state, &principal, &upload_id).await?;
    let upload = settle(&state, upload).await?;
    let upload = if upload.complete {
        upload
    } else {
        // Asking where to resume is a sign of life: it moves the expiry forward.
        state
            .store
            .start_upload(UploadRecord {
                last_activity_at: state.clock.now(),
                ..upload
            })
            .await?
    };
    let answer = (
        StatusCode::OK,
        [
            (UPLOAD_OFFSET, offset_value(upload.committed_offset)),
            (UPLOAD_LENGTH, offset_value(upload.size_bytes)),
            (UPLOAD_METADATA, metadata_header(&upload)),
        ],
    )
        .into_response();
    Ok(with_expiry(answer, &state, &upload))
}

/// An `Upload-Checksum` to verify a PATCH body against.
#[derive(Debug)]
enum Checksum {
    Sha256([u8; 32]),
    Crc32c(u32),
}

impl Checksum {
    fn parse(text: &str) -> Result<Self, TusError> {
        let (algorithm, digest) = text
            .trim()
            .split_once(' ')
            .ok_or_else(|| invalid("Upload-Checksum", "must be '<algorithm> <base64 digest>'"))?;
        let digest = BASE64
            .decode(digest.trim())
            .map_err(|_| invalid("Upload-Checksum", "the digest is not base64"))?;
        match algorithm {
            "sha256" => digest
                .try_into()
                .map(Self::Sha256)
                .map_err(|_| invalid("Upload-Checksum", "a sha256 digest has 32 bytes")),
            "crc32c" => <[u8; 4]>::try_from(digest)
                .map(|bytes| Self::Crc32c(u32::from_be_bytes(bytes)))
                .map_err(|_| invalid("Upload-Checksum", "a crc32c digest has 4 bytes")),
            other => Err(invalid(
                "Upload-Checksum",
                format!("algorithm {other:?} is not supported; use sha256 or crc32c"),
            )),
        }
    }
}

/// A running digest of a PATCH body.
enum Digesting {
    Sha256(Sha256),
    Crc32c(u32),
}

impl Digesting {
    fn of(checksum: &Checksum) -> Self {
        match checksum {
            Checksum::Sha256(_) => Self::Sha256(Sha256::new()),
            Checksum::Crc32c(_) => Self::Crc32c(0),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Self::Sha256(hasher) => hasher.update(data),
            Self::Crc32c(crc) => *crc = crc32c::crc32c_append(*crc, data),
        }
    }

    fn matches(self, checksum: &Checksum) -> bool {
        match (self, checksum) {
            (Self::Sha256(hasher), Checksum::Sha256(expected)) => {
                hasher.finalize().as_slice() == expected.as_slice()
            }
            (Self::Crc32c(actual), Checksum::Crc32c(expected)) => actual == *expected,
            _ => false,
        }
    }
}

/// `PATCH /tus/uploads/{id}`: append the body at the committed offset.
async fn append(
    State(state): State<AppState>,
    Path(upload_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, TusError> {
    check_resumable(&headers)?;
    let principal = caller(&state, &headers).await?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    if !content_type
        .split(';')
        .next()
        .is_some_and(|media_type| media_type.trim().eq_ignore_ascii_case(OFFSET_OCTET_STREAM))
    {
        return Err(TusError::MediaType);
    }
    let sent_offset = number_header(&headers, &UPLOAD_OFFSET)?
        .ok_or_else(|| invalid("Upload-Offset", "required"))?;
    let checksum = headers
        .get(UPLOAD_CHECKSUM)
        .map(|value| Checksum::parse(value.to_str().unwrap_or_default()))
        .transpose()?;
    let content_length = number_header(&headers, &header::CONTENT_LENGTH)?;

    // The lock is owned by the receiving task, not by this handler: if the connection
    // drops and the handler is cancelled, the task still saves what arrived.
    let guard = uploads::lock(&upload_id).lock_owned().await;
    let upload = own_upload(&state, &principal, &upload_id).await?;
    if upload.complete {
        if sent_offset == upload.size_bytes && content_length.unwrap_or(0) == 0 {
            // A retried final PATCH whose answer was lost.
            return Ok(appended(upload.size_bytes));
        }
        return Err(TusError::Offset {
            committed: upload.size_bytes,
            sent: sent_offset,
        });
    }
    if sent_offset != upload.committed_offset {
        return Err(TusError::Offset {
            committed: upload.committed_offset,
            sent: sent_offset,
        });
    }
    let remaining = upload.size_bytes - upload.committed_offset;
    if content_length.is_some_and(|length| length > remaining) {
        return Err(TusError::TooLarge(format!(
            "the body is longer than the {remaining} bytes still missing"
        )));
    }
    let size = upload.size_bytes;
    let receiving_state = state.clone();
    let receiving = tokio::spawn(async move {
        let _guard = guard;
        receive(&receiving_state, upload, body, checksum).await
    });
    let committed = receiving
        .await
        .map_err(|_| TusError::Service(ServiceError::Internal))??;
    let mut response = appended(committed);
    if committed < size {
        // The chunk just acknowledged was the upload's latest activity.
        response
            .headers_mut()
            .insert(UPLOAD_EXPIRES, expires_value(&state, state.clock.now()));
    }
    Ok(response)
}

fn appended(committed: u64) -> Response {
    (
        StatusCode::NO_CONTENT,
        [(UPLOAD_OFFSET, offset_value(committed))],
    )
        .into_response()
}

/// Stage `data` at `offset` durably; with `acknowledge`, then store the new offset.
async fn flush(
    state: &AppState,
    upload_id: &str,
    offset: u64,
    data: Vec<u8>,
    acknowledge: bool,
) -> Result<u64, TusError> {
    if data.is_empty() {
        return Ok(offset);
    }
    let written = state.blobs.append_chunk(upload_id, offset, data).await?;
    if acknowledge {
        state
            .store
            .set_upload_offset(upload_id, written, state.clock.now())
            .await?;
    }
    Ok(written)
}

/// Stream a PATCH body into the upload's staged bytes and return the committed offset.
///
/// Without a checksum every [`FLUSH_BYTES`] are fsynced and acknowledged as they arrive, and
/// a body that is cut (or goes silent for [`IDLE_BODY_TIMEOUT`]) keeps what arrived. With a
/// checksum the bytes are staged the same way but acknowledged only once the whole body
/// matched; otherwise the offset stays and the staged tail is overwritten by the next
/// PATCH. Reaching the upload's length completes it.
async fn receive(
    state: &AppState,
    upload: UploadRecord,
    body: Body,
    checksum: Option<Checksum>,
) -> Result<u64, TusError> {
    let start = upload.committed_offset;
    let remaining = upload.size_bytes - start;
    let acknowledge = checksum.is_none();
    let mut digest = checksum.as_ref().map(Digesting::of);
    let mut stream = body.into_data_stream();
    let capacity = usize::try_from(remaining).map_or(FLUSH_BYTES, |rest| rest.min(FLUSH_BYTES));
    let mut buffer = Vec::with_capacity(capacity);
    let mut written = start;
    let mut received: u64 = 0;
    let mut cut = false;
    loop {
        let frame = match tokio::time::timeout(IDLE_BODY_TIMEOUT, stream.next()).await {
            Ok(Some(Ok(frame))) => frame,
            Ok(None) => break,
            Ok(Some(Err(error))) => {
                tracing::info!(upload_id = %upload.upload_id, %error, "tus PATCH body cut");
                cut = true;
                break;
            }
            Err(_) => {
                tracing::info!(upload_id = %upload.upload_id, "tus PATCH body went silent");
                cut = true;
                break;
            }
        };
        received += frame.len() as u64;
        if received > remaining {
            return Err(TusError::TooLarge(format!(
                "the body is longer than the {remaining} bytes still missing"
            )));
        }
        if let Some(digest) = digest.as_mut() {
            digest.update(&frame);
        }
        buffer.extend_from_slice(&frame);
        if buffer.len() >= FLUSH_BYTES {
            let data = std::mem::replace(&mut buffer, Vec::with_capacity(capacity));
            written = flush(state, &upload.upload_id, written, data, acknowledge).await?;
        }
    }
    match (checksum, digest) {
        (Some(checksum), Some(digest)) => {
            if cut {
                return Err(invalid(
                    "body",
                    "cut before its end; a checksummed body is kept only whole",
                ));
            }
            if !digest.matches(&checksum) {
                return Err(TusError::Checksum {
                    message: "Upload-Checksum: the body does not match; send it again".into(),
                    offset: start,
                });
            }
            written = flush(state, &upload.upload_id, written, buffer, false).await?;
            if written != start {
                state
                    .store
                    .set_upload_offset(&upload.upload_id, written, state.clock.now())
                    .await?;
            }
        }
        _ => {
            written = flush(state, &upload.upload_id, written, buffer, true).await?;
        }
    }
    if written == upload.size_bytes {
        let upload = UploadRecord {
            committed_offset: written,
            ..upload
        };
        match uploads::complete(state, &upload).await {
            Ok(()) => {}
            Err(UploadError::Mismatch(mismatch)) => {
                return Err(TusError::Checksum {
                    message: format!(
                        "the photo does not match its declared sha256 ({mismatch}); the upload restarts at offset 0"
                    ),
                    offset: 0,
                });
            }
            Err(other) => return Err(other.into()),
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_pairs_decode_and_duplicates_are_refused() {
        let pairs = parse_metadata("sha256 YWJj,filetype aW1hZ2UvanBlZw==, empty").unwrap();
        assert_eq!(
            pairs,
            vec![
                ("sha256".to_owned(), b"abc".to_vec()),
                ("filetype".to_owned(), b"image/jpeg".to_vec()),
                ("empty".to_owned(), Vec::new()),
            ]
        );
        assert!(parse_metadata("a YQ==,a Yg==").is_err());
        assert!(parse_metadata("a not*base64").is_err());
    }

    #[test]
    fn the_sha256_may_be_hex_text_or_raw_bytes() {
        let hex_text = "AB".repeat(32);
        assert_eq!(
            declared_sha256(hex_text.as_bytes()).unwrap(),
            "ab".repeat(32)
        );
        assert_eq!(declared_sha256(&[0xab; 32]).unwrap(), "ab".repeat(32));
    }

    #[test]
    fn checksums_parse_and_verify() {
        let body = b"chunk of a photo";
        let sha = BASE64.encode(Sha256::digest(body));
        let crc = BASE64.encode(crc32c::crc32c(body).to_be_bytes());
        for header in [format!("sha256 {sha}"), format!("crc32c {crc}")] {
            let checksum = Checksum::parse(&header).unwrap();
            let mut digest = Digesting::of(&checksum);
            digest.update(&body[..5]);
            digest.update(&body[5..]);
            assert!(digest.matches(&checksum), "{header}");
            let mut wrong = Digesting::of(&checksum);
            wrong.update(b"something else");
            assert!(!wrong.matches(&checksum), "{header}");
        }
        assert!(Checksum::parse("sha1 AAAA").is_err());
        assert!(Checksum::parse("md5").is_err());
        assert!(Checksum::parse("crc32c AAAAAAAA").is_err(), "6 bytes");
    }

    #[test]
    fn numbers_are_plain_decimals() {
        let mut headers = HeaderMap::new();
        headers.insert(UPLOAD_OFFSET, HeaderValue::from_static("42"));
        assert_eq!(number_header(&headers, &UPLOAD_OFFSET).unwrap(), Some(42));
        headers.insert(UPLOAD_OFFSET, HeaderValue::from_static("-1"));
        assert!(number_header(&headers, &UPLOAD_OFFSET).is_err());
        headers.insert(UPLOAD_OFFSET, HeaderValue::from_static("+1"));
        assert!(number_header(&headers, &UPLOAD_OFFSET).is_err());
        assert_eq!(number_header(&headers, &UPLOAD_LENGTH).unwrap(), None);
    }
}
