//! The network seam of the client core: the [`SyncTransport`] trait the sync engine runs
//! over, and its gRPC implementation [`GrpcTransport`], the ONLY code that touches protocol
//! types (ARCHITECTURE invariant). The gRPC side builds tonic channels, attaches the bearer
//! token and
//! `ClientInfo`, maps tonic statuses to [`ClientError`], and wraps `fieldsync_model` records
//! in request envelopes (and unwraps answers) using the shared `fieldsync_proto::convert`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use fieldsync_model::CodeList;
use fieldsync_model::codes::Role;
use fieldsync_model::household::Household;
use fieldsync_model::income::IncomeRegistration;
use fieldsync_model::register::PendingConflict;
use fieldsync_model::review::VisitStatus;
use fieldsync_proto::convert::{ConvertError, instant_to_wire, optional_instant};
use fieldsync_proto::v1 as proto;
use fieldsync_proto::v1::auth_client::AuthClient;
use fieldsync_proto::v1::media_client::MediaClient;
use fieldsync_proto::v1::sync_client::SyncClient;
use prost::Message;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use sha2::{Digest, Sha256};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::error::{ClientError, ClientResult, TlsFailure};
use crate::records::{
    Heartbeat, LoginGrant, LoginRequest, PullFrame, PullRequest, PulledPage, PushAck, PushBatch,
    PushOutcome, RefreshedTokens, SignOutReason, UploadPosition,
};

/// How long to wait for a TCP/HTTP2 connection. Villages have slow links, but a phone should
/// learn "no signal" within seconds rather than hang the sync button.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound for one unary call, generous for a 256 KiB chunk on 2G.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Largest pull frame accepted. Pages carry whole households with members; the tonic
/// default of 4 MiB is too tight for a cadre with many large households.
const MAX_DECODING_MESSAGE_BYTES: usize = 32 * 1024 * 1024;

// ---------------------------------------------------------------------------------------
// The seam
// ---------------------------------------------------------------------------------------

/// Everything the sync engine asks of the network, in model types. The gRPC implementation
/// is [`GrpcTransport`]; tests drive the engine over a scripted fake network instead, so
/// timeouts, lost responses and RESETs can be replayed deterministically from a seed.
///
/// Calls that need a session take the bearer token; the transport never stores one, so a
/// login on the same client takes effect at the next call.
#[async_trait]
pub trait SyncTransport: Send + Sync + std::fmt::Debug {
    /// Auth.Login: the token is bound to `(user, device_id)`.
    async fn login(&self, request: &LoginRequest) -> ClientResult<LoginGrant>;
    /// Sync.Push of one batch.
    async fn push(&self, token: &str, batch: &PushBatch) -> ClientResult<PushAck>;
    /// Sync.Pull from `request.cursor`; frames are read from the returned stream.
    async fn pull(&self, token: &str, request: &PullRequest) -> ClientResult<Box<dyn PullFrames>>;
    /// Media.StartUpload: idempotent on sha256; says where to continue.
    async fn start_upload(
        &self,
        token: &str,
        sha256: &str,
        size_bytes: u64,
        mime_type: &str,
    ) -> ClientResult<UploadPosition>;
    /// Media.PutChunk at exactly `offset`. Returns the new committed offset, or
    /// [`ChunkRefused::WrongOffset`] when the server is elsewhere.
    async fn put_chunk(
        &self,
        token: &str,
        upload_id: &str,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<u64, ChunkRefused>;
    /// Media.CompleteUpload: the server verifies size and SHA-256. Returns what it stored.
    async fn complete_upload(&self, token: &str, upload_id: &str) -> ClientResult<(String, u64)>;
    /// Media.UploadStatus, used after a refused chunk to learn the committed offset.
    async fn upload_status(&self, token: &str, upload_id: &str) -> ClientResult<UploadPosition>;
    /// Auth.Refresh: a new token pair; the old refresh token stops working. Transports
    /// without sessions (simulations) keep the default, which never refreshes.
    async fn refresh(&self, _refresh_token: &str) -> ClientResult<RefreshedTokens> {
        Err(ClientError::NotLoggedIn(
            "this transport cannot refresh sessions".into(),
        ))
    }
    /// Auth.Logout: end the session of `token` on the server.
    async fn logout(&self, _token: &str) -> ClientResult<()> {
        Ok(())
    }
    /// Auth.ChangePassword: returns how many other sessions the server ended.
    async fn change_password(
        &self,
        _token: &str,
        _old_password: &str,
        _new_password: &str,
    ) -> ClientResult<u32> {
        Err(ClientError::NotAllowed(
            "this transport cannot change passwords".into(),
        ))
    }
}

/// A running pull stream.
#[async_trait]
pub trait PullFrames: Send + std::fmt::Debug {
    /// The next frame, or `None` when the server closed the stream.
    async fn next_frame(&mut self) -> ClientResult<Option<PullFrame>>;
}

/// Why a chunk was not accepted.
#[derive(Debug)]
pub enum ChunkRefused {
    /// FAILED_PRECONDITION: the server's committed offset differs; ask UploadStatus.
    WrongOffset(String),
    Other(ClientError),
}

// ---------------------------------------------------------------------------------------
// gRPC
// ---------------------------------------------------------------------------------------

/// How the link to the server is secured (issue 10). `https://` is always TLS (rustls,
/// trusting the Mozilla roots compiled in plus `ca_file`) and never falls back to plain text;
/// `http://` is only used to a loopback host unless `allow_insecure_http`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkOptions {
    /// An extra CA certificate file (PEM) to trust besides the system roots: a county's own
    /// CA is common.
    pub ca_file: Option<PathBuf>,
    /// Allow plain `http://` to a host that is not this device (a trusted test network only).
    pub allow_insecure_http: bool,
}

/// Refuse a server URL the link options do not allow, before any connection is made:
/// `http://` beyond loopback without `allow_insecure_http`, or a scheme other than http(s).
/// Returns whether the URL needs TLS (`https://`).
pub fn check_server_url(server_url: &str, options: &LinkOptions) -> ClientResult<bool> {
    let uri: tonic::codegen::http::Uri =
        server_url.parse().map_err(|error| ClientError::Invalid {
            field: "server_url".to_owned(),
            message: format!("{server_url:?}: {error}"),
        })?;
    match uri.scheme_str() {
        Some("https") => Ok(true),
        Some("http") if options.allow_insecure_http || is_loopback_host(uri.host()) => Ok(false),
        Some("http") => Err(ClientError::InsecureHttp {
            server_url: server_url.to_owned(),
        }),
        _ => Err(ClientError::Invalid {
            field: "server_url".to_owned(),
            message: format!(
                "{server_url:?}: the address must start with https:// (or http:// on this device)"
            ),
        }),
    }
}

/// `localhost`, 127.0.0.0/8 or ::1: traffic that never leaves the device. Names are not
/// resolved (that would already be network traffic, and DNS can lie).
fn is_loopback_host(host: Option<&str>) -> bool {
    let Some(host) = host else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

/// The TLS configuration for `https://` servers: the compiled-in roots plus the extra CA.
fn tls_config(options: &LinkOptions) -> ClientResult<ClientTlsConfig> {
    let mut config = ClientTlsConfig::new()
        .with_webpki_roots()
        .timeout(CONNECT_TIMEOUT);
    if let Some(ca_file) = &options.ca_file {
        let pem = std::fs::read(ca_file).map_err(|error| ClientError::Invalid {
            field: "ca_file".to_owned(),
            message: format!(
                "cannot read the CA certificate file {}: {error}; pass the county CA's certificate (PEM) with --ca-file",
                ca_file.display()
            ),
        })?;
        let certificates = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .ok()
            .filter(|certificates| !certificates.is_empty());
        if certificates.is_none() {
            return Err(ClientError::Invalid {
                field: "ca_file".to_owned(),
                message: format!(
                    "{} holds no PEM certificate; --ca-file needs the county CA's certificate (-----BEGIN CERTIFICATE-----), not a key",
                    ca_file.display()
                ),
            });
        }
        config = config.ca_certificate(Certificate::from_pem(pem));
    }
    Ok(config)
}

/// A failed connection: a TLS failure (typed, permanent) or "unreachable" (retry later).
fn connect_error(server_url: &str, error: &(dyn std::error::Error + 'static)) -> ClientError {
    match tls_failure(error) {
        Some(failure) => ClientError::Tls {
            server_url: server_url.to_owned(),
            failure,
            message: error_chain(error),
        },
        None => ClientError::Unavailable {
            server_url: server_url.to_owned(),
            message: error_chain(error),
        },
    }
}

/// The rustls error somewhere in the chain of `error`, classified. rustls errors travel
/// inside `std::io::Error`, whose `source()` skips the wrapped error, so each I/O error is
/// opened with `get_ref`.
fn tls_failure(error: &(dyn std::error::Error + 'static)) -> Option<TlsFailure> {
    let mut current = Some(error);
    while let Some(error) = current {
        let rustls_error = error.downcast_ref::<rustls::Error>().or_else(|| {
            error
                .downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::get_ref)
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(rustls_error) = rustls_error {
            return Some(match rustls_error {
                rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
                    TlsFailure::UntrustedCertificate
                }
                rustls::Error::InvalidMessage(_)
                | rustls::Error::InappropriateMessage { .. }
                | rustls::Error::InappropriateHandshakeMessage { .. } => TlsFailure::NotTls,
                _ => TlsFailure::Handshake,
            });
        }
        current = error.source();
    }
    None
}

/// The real network: tonic over HTTP/2 to the URL in `server_url` (shared with the
/// [`crate::Client`], so pointing the client elsewhere takes effect at the next call).
#[derive(Debug)]
pub struct GrpcTransport {
    server_url: Arc<Mutex<String>>,
    options: LinkOptions,
    /// One channel per URL, kept between calls: HTTP/2 multiplexes, and reconnecting for
    /// every chunk on a 2G link would cost a round trip each time.
    channel: tokio::sync::Mutex<Option<(String, Channel)>>,
}

impl GrpcTransport {
    /// A transport with the default [`LinkOptions`] (system roots, http only on loopback).
    pub fn new(server_url: Arc<Mutex<String>>) -> Self {
        Self::with_options(server_url, LinkOptions::default())
    }

    pub fn with_options(server_url: Arc<Mutex<String>>, options: LinkOptions) -> Self {
        Self {
            server_url,
            options,
            channel: tokio::sync::Mutex::new(None),
        }
    }

    fn current_url(&self) -> String {
        self.server_url
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The channel for the current URL, connecting eagerly so "server unreachable"
    /// surfaces as [`ClientError::Unavailable`] at the first call.
    async fn channel(&self) -> ClientResult<(Channel, String)> {
        let server_url = self.current_url();
        let mut cached = self.channel.lock().await;
        if let Some((url, channel)) = cached.as_ref()
            && *url == server_url
        {
            return Ok((channel.clone(), server_url));
        }
        // Before any connection: plain text beyond this device is refused here.
        let uses_tls = check_server_url(&server_url, &self.options)?;
        let mut endpoint = plain_endpoint(&server_url)?;
        if uses_tls {
            // tonic only wraps https:// connections in TLS and refuses https:// without a
            // TLS configuration, so there is no path back to plain text.
            endpoint = endpoint
                .tls_config(tls_config(&self.options)?)
                .map_err(|error| ClientError::Invalid {
                    field: "server_url".to_owned(),
                    message: format!("{server_url:?}: {}", error_chain(&error)),
                })?;
        }
        let channel = endpoint
            .connect()
            .await
            .map_err(|error| connect_error(&server_url, &error))?;
        *cached = Some((server_url.clone(), channel.clone()));
        Ok((channel, server_url))
    }

    /// Map a failed call's status; a connectivity failure also drops the cached channel so
    /// the next call reconnects from scratch instead of reusing a dead one.
    async fn failed(&self, server_url: &str, status: tonic::Status) -> ClientError {
        let error = map_status(server_url, status);
        if error.is_unavailable() {
            *self.channel.lock().await = None;
        }
        error
    }
}

#[async_trait]
impl SyncTransport for GrpcTransport {
    async fn login(&self, login: &LoginRequest) -> ClientResult<LoginGrant> {
        let (channel, url) = self.channel().await?;
        let request = proto::LoginRequest {
            username: login.username.clone(),
            password: login.password.clone(),
            device_id: login.device_id.clone(),
            device_name: login.device_name.clone(),
            client: Some(client_info()),
            wants_refresh_token: true,
        };
        let response = match AuthClient::new(channel)
            .login(tonic::Request::new(request))
            .await
        {
            Ok(response) => response.into_inner(),
            Err(status) => return Err(self.failed(&url, status).await),
        };
        Ok(LoginGrant {
            token: response.token,
            user_id: response.user_id,
            display_name: response.display_name,
            role: Role::from_code(response.role),
            area_id: response.area_id,
            refresh_token: Some(response.refresh_token).filter(|token| !token.is_empty()),
            must_change_password: response.must_change_password,
        })
    }

    async fn refresh(&self, refresh_token: &str) -> ClientResult<RefreshedTokens> {
        let (channel, url) = self.channel().await?;
        let request = proto::RefreshRequest {
            refresh_token: refresh_token.to_owned(),
            client: Some(client_info()),
        };
        match AuthClient::new(channel)
            .refresh(tonic::Request::new(request))
            .await
        {
            Ok(response) => {
                let response = response.into_inner();
                if response.token.is_empty() || response.refresh_token.is_empty() {
                    return Err(ClientError::Protocol(
                        "refresh answered without a token pair".into(),
                    ));
                }
                Ok(RefreshedTokens {
                    token: response.token,
                    refresh_token: response.refresh_token,
                })
            }
            Err(status) => Err(self.failed(&url, status).await),
        }
    }

    async fn logout(&self, token: &str) -> ClientResult<()> {
        let (channel, url) = self.channel().await?;
        let request = authorized(
            token,
            proto::LogoutRequest {
                client: Some(client_info()),
            },
        )?;
        match AuthClient::new(channel).logout(request).await {
            Ok(_) => Ok(()),
            Err(status) => Err(self.failed(&url, status).await),
        }
    }

    async fn change_password(
        &self,
        token: &str,
        old_password: &str,
        new_password: &str,
    ) -> ClientResult<u32> {
        let (channel, url) = self.channel().await?;
        let request = authorized(
            token,
            proto::ChangePasswordRequest {
                old_password: old_password.to_owned(),
                new_password: new_password.to_owned(),
                client: Some(client_info()),
            },
        )?;
        match AuthClient::new(channel).change_password(request).await {
            Ok(response) => Ok(response.into_inner().other_sessions_ended),
            Err(status) => Err(self.failed(&url, status).await),
        }
    }

    async fn push(&self, token: &str, batch: &PushBatch) -> ClientResult<PushAck> {
        let (channel, url) = self.channel().await?;
        let request = authorized(token, push_request_to_proto(batch))?;
        match SyncClient::new(channel).push(request).await {
            Ok(response) => push_response_from_proto(response.into_inner()),
            Err(status) => Err(self.failed(&url, status).await),
        }
    }

    async fn pull(&self, token: &str, pull: &PullRequest) -> ClientResult<Box<dyn PullFrames>> {
        let (channel, url) = self.channel().await?;
        let request = proto::PullRequest {
            heartbeat: pull.heartbeat.as_ref().map(heartbeat_to_proto),
            cursor: pull.cursor.clone(),
            client: Some(client_info()),
        };
        let streaming = match SyncClient::new(channel)
            .max_decoding_message_size(MAX_DECODING_MESSAGE_BYTES)
            .pull(authorized(token, request)?)
            .await
        {
            Ok(response) => response.into_inner(),
            Err(status) => return Err(self.failed(&url, status).await),
        };
        Ok(Box::new(GrpcPullStream {
            streaming,
            server_url: url,
            page_hasher: Sha256::new(),
            frame_hasher: Sha256::new(),
        }))
    }

    async fn start_upload(
        &self,
        token: &str,
        sha256: &str,
        size_bytes: u64,
        mime_type: &str,
    ) -> ClientResult<UploadPosition> {
        let (channel, url) = self.channel().await?;
        let request = proto::StartUploadRequest {
            client: Some(client_info()),
            sha256: sha256.to_owned(),
            size_bytes,
            mime_type: mime_type.to_owned(),
        };
        let response = match MediaClient::new(channel)
            .start_upload(authorized(token, request)?)
            .await
        {
            Ok(response) => response.into_inner(),
            Err(status) => return Err(self.failed(&url, status).await),
        };
        Ok(UploadPosition {
            upload_id: response.upload_id,
            committed_offset: response.committed_offset,
            complete: response.complete,
        })
    }

    async fn put_chunk(
        &self,
        token: &str,
        upload_id: &str,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<u64, ChunkRefused> {
        let (channel, url) = self.channel().await.map_err(ChunkRefused::Other)?;
        let request = proto::PutChunkRequest {
            client: Some(client_info()),
            upload_id: upload_id.to_owned(),
            offset,
            crc32c: crc32c::crc32c(&data),
            data,
        };
        let request = authorized(token, request).map_err(ChunkRefused::Other)?;
        match MediaClient::new(channel).put_chunk(request).await {
            Ok(response) => Ok(response.into_inner().committed_offset),
            Err(status) if status.code() == tonic::Code::FailedPrecondition => {
                Err(ChunkRefused::WrongOffset(status.message().to_owned()))
            }
            Err(status) => Err(ChunkRefused::Other(self.failed(&url, status).await)),
        }
    }

    async fn complete_upload(&self, token: &str, upload_id: &str) -> ClientResult<(String, u64)> {
        let (channel, url) = self.channel().await?;
        let request = proto::CompleteUploadRequest {
            client: Some(client_info()),
            upload_id: upload_id.to_owned(),
        };
        match MediaClient::new(channel)
            .complete_upload(authorized(token, request)?)
            .await
        {
            Ok(response) => {
                let response = response.into_inner();
                Ok((response.sha256, response.size_bytes))
            }
            Err(status) => Err(self.failed(&url, status).await),
        }
    }

    async fn upload_status(&self, token: &str, upload_id: &str) -> ClientResult<UploadPosition> {
        let (channel, url) = self.channel().await?;
        let request = proto::UploadStatusRequest {
            client: Some(client_info()),
            upload_id: upload_id.to_owned(),
        };
        match MediaClient::new(channel)
            .upload_status(authorized(token, request)?)
            .await
        {
            Ok(response) => {
                let response = response.into_inner();
                Ok(UploadPosition {
                    upload_id: upload_id.to_owned(),
                    committed_offset: response.committed_offset,
                    complete: response.complete,
                })
            }
            Err(status) => Err(self.failed(&url, status).await),
        }
    }
}

/// Wrap a message with `authorization: Bearer <token>`.
fn authorized<T>(token: &str, message: T) -> ClientResult<tonic::Request<T>> {
    if token.is_empty() {
        return Err(ClientError::NotLoggedIn(
            "请先登录 run `fieldsync login` first".into(),
        ));
    }
    let mut request = tonic::Request::new(message);
    let value = format!("Bearer {token}")
        .parse()
        .map_err(|_| ClientError::NotLoggedIn("stored token is not valid ASCII".into()))?;
    request.metadata_mut().insert("authorization", value);
    Ok(request)
}

/// A running gRPC pull stream.
#[derive(Debug)]
struct GrpcPullStream {
    streaming: tonic::Streaming<proto::PullResponse>,
    server_url: String,
    /// SHA-256 over the encoded `PullPage` messages since the last checkpoint.
    page_hasher: Sha256,
    /// SHA-256 over the encoded `PullResponse` frames carrying those pages. The protocol
    /// says "over the page frames"; both readings are accepted so the client does not depend
    /// on which one the server picked.
    frame_hasher: Sha256,
}

#[async_trait]
impl PullFrames for GrpcPullStream {
    async fn next_frame(&mut self) -> ClientResult<Option<PullFrame>> {
        let Some(response) = self
            .streaming
            .message()
            .await
            .map_err(|status| map_status(&self.server_url, status))?
        else {
            return Ok(None);
        };
        let frame_bytes = response.encode_to_vec();
        match response.frame {
            None => Err(ClientError::Protocol("pull frame without content".into())),
            Some(proto::pull_response::Frame::Page(page)) => {
                self.page_hasher.update(page.encode_to_vec());
                self.frame_hasher.update(&frame_bytes);
                Ok(Some(PullFrame::Page(pull_page_from_proto(page)?)))
            }
            Some(proto::pull_response::Frame::Checkpoint(checkpoint)) => {
                let page_digest = hex::encode(std::mem::take(&mut self.page_hasher).finalize());
                let frame_digest = hex::encode(std::mem::take(&mut self.frame_hasher).finalize());
                let expected = checkpoint.checksum.to_ascii_lowercase();
                // An empty checksum means the server does not compute one (yet).
                let checksum_ok =
                    expected.is_empty() || expected == page_digest || expected == frame_digest;
                Ok(Some(PullFrame::Checkpoint {
                    cursor: checkpoint.cursor,
                    checksum_ok,
                    server_time: optional_instant(&checkpoint.server_time, "server_time")
                        .map_err(|error| malformed("checkpoint", error))?,
                    server_hlc: checkpoint.server_hlc,
                    pending_conflicts: checkpoint
                        .pending_conflicts
                        .iter()
                        .map(|wire| {
                            PendingConflict::try_from(wire).map_err(|error| {
                                malformed(
                                    format_args!("pending conflict of {}", wire.household_id),
                                    error,
                                )
                            })
                        })
                        .collect::<ClientResult<_>>()?,
                }))
            }
            Some(proto::pull_response::Frame::Reset(reset)) => {
                self.page_hasher = Sha256::new();
                self.frame_hasher = Sha256::new();
                Ok(Some(PullFrame::Reset {
                    reason: reset.reason,
                }))
            }
        }
    }
}

/// `ClientInfo` sent with every request that carries data.
fn client_info() -> proto::ClientInfo {
    proto::ClientInfo {
        schema_version: fieldsync_proto::SCHEMA_VERSION,
        app_version: env!("CARGO_PKG_VERSION").to_owned(),
    }
}

/// Metadata key of the server's machine-readable error kind.
const ERROR_KIND_KEY: &str = "fieldsync-error";
/// Metadata key of the server's time (unix ms) on a clock refusal.
const SERVER_TIME_KEY: &str = "fieldsync-server-time-ms";
/// Metadata key of the seconds to wait after a throttled login.
const RETRY_AFTER_KEY: &str = "retry-after";
/// Wait assumed when a throttled answer carries no usable `retry-after` (the server's
/// first lock).
const DEFAULT_RETRY_AFTER_SECS: u64 = 1;

/// Map a gRPC status to what the app can act on.
pub fn map_status(server_url: &str, status: tonic::Status) -> ClientError {
    let message = status.message().to_owned();
    let metadata = |key: &str| {
        status
            .metadata()
            .get(key)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let clock_wrong = status.code() == tonic::Code::FailedPrecondition
        && (metadata(ERROR_KIND_KEY).as_deref() == Some("device_clock_wrong")
            || message.starts_with("device clock wrong:"));
    if clock_wrong {
        // The engine fills in how far ahead the batch was; it knows the stamps it sent.
        return ClientError::DeviceClockWrong {
            ahead_minutes: 0,
            server_time_ms: metadata(SERVER_TIME_KEY).and_then(|text| text.trim().parse().ok()),
        };
    }
    // tonic reports a connection cut in the middle of a call (2G dropping mid-chunk) as
    // UNKNOWN "transport error", not UNAVAILABLE; it is the same transient condition and must
    // schedule a retry instead of counting as a server refusal.
    let cut_mid_call = status.code() == tonic::Code::Unknown && message.contains("transport error");
    match status.code() {
        _ if cut_mid_call => ClientError::Unavailable {
            server_url: server_url.to_owned(),
            message,
        },
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
            ClientError::Unavailable {
                server_url: server_url.to_owned(),
                message: if message.is_empty() {
                    format!("{:?}", status.code())
                } else {
                    message
                },
            }
        }
        // Only logins are throttled; a typed wait, never an automatic retry loop.
        tonic::Code::ResourceExhausted => ClientError::LoginThrottled {
            retry_after_secs: metadata(RETRY_AFTER_KEY)
                .and_then(|text| text.trim().parse().ok())
                .unwrap_or(DEFAULT_RETRY_AFTER_SECS),
            message,
        },
        tonic::Code::Unauthenticated => match metadata(ERROR_KIND_KEY).as_deref() {
            Some("access_token_expired") => ClientError::AccessTokenExpired(message),
            Some(kind) => match SignOutReason::parse(kind) {
                Some(reason) => ClientError::SignedOut { reason },
                None => ClientError::NotLoggedIn(format!(
                    "{message} (请重新登录 run `fieldsync login` again)"
                )),
            },
            None => ClientError::NotLoggedIn(format!(
                "{message} (请重新登录 run `fieldsync login` again)"
            )),
        },
        tonic::Code::FailedPrecondition if message.to_ascii_lowercase().contains("upgrade") => {
            ClientError::UpgradeRequired(message)
        }
        tonic::Code::InvalidArgument => ClientError::Rejected(message),
        code => ClientError::Server {
            code: format!("{code:?}"),
            message,
        },
    }
}

/// A transport error with its causes, because tonic's top-level message is often just
/// "transport error".
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

// ---- conversions ----
//
// Records (visits, photos, income, households, visit statuses) are mapped by the shared
// `fieldsync_proto::convert`, the one place for wire <-> domain (ARCHITECTURE invariant).
// Only the client's envelopes live here: the push request, the push answer and pull pages.

/// A server message this client cannot use, as a protocol error naming the record and the
/// field path, e.g. `household hh-9: members[0].sex: is required`.
fn malformed(record: impl std::fmt::Display, error: ConvertError) -> ClientError {
    ClientError::Protocol(format!("{record}: {error}"))
}

// ---- model -> proto (push) ----

fn push_request_to_proto(batch: &PushBatch) -> proto::PushRequest {
    proto::PushRequest {
        heartbeat: batch.heartbeat.as_ref().map(heartbeat_to_proto),
        device_id: batch.device_id.clone(),
        batch_id: batch.batch_id.clone(),
        first_seq: batch.first_seq,
        mutations: batch.mutations.iter().map(proto::Mutation::from).collect(),
        client: Some(client_info()),
    }
}

/// The heartbeat has no shared domain type (it is a client report the server only stores),
/// so its envelope mapping lives here with the other client envelopes.
fn heartbeat_to_proto(heartbeat: &Heartbeat) -> proto::DeviceHeartbeat {
    proto::DeviceHeartbeat {
        unsent_mutations: heartbeat.unsent_mutations,
        pending_uploads: heartbeat.pending_uploads,
        oldest_unsent_at: heartbeat.oldest_unsent_at.map(instant_to_wire),
        device_time: heartbeat.device_time.map(instant_to_wire),
        last_error: heartbeat.last_error.clone(),
    }
}

// ---- proto -> model (push answer, pull) ----

fn push_response_from_proto(response: proto::PushResponse) -> ClientResult<PushAck> {
    let results = response
        .results
        .into_iter()
        .map(|result| {
            let outcome = match proto::MutationOutcome::try_from(result.outcome) {
                Ok(proto::MutationOutcome::Applied) => PushOutcome::Applied,
                Ok(proto::MutationOutcome::Duplicate) => PushOutcome::Duplicate,
                Ok(proto::MutationOutcome::ConflictRecorded) => PushOutcome::ConflictRecorded,
                Ok(proto::MutationOutcome::Rejected) => PushOutcome::Rejected {
                    code: result.reject_code,
                    message: result.reject_message,
                },
                Ok(proto::MutationOutcome::Unspecified) | Err(_) => {
                    return Err(ClientError::Protocol(format!(
                        "push result for seq {} has unknown outcome {}",
                        result.seq, result.outcome
                    )));
                }
            };
            Ok((result.seq, outcome))
        })
        .collect::<ClientResult<Vec<_>>>()?;
    Ok(PushAck {
        results,
        last_processed_seq: response.last_processed_seq,
        server_time: optional_instant(&response.server_time, "server_time")
            .map_err(|error| malformed("push response", error))?,
        receipt: response.receipt,
        server_hlc: response.server_hlc,
    })
}

fn pull_page_from_proto(page: proto::PullPage) -> ClientResult<PulledPage> {
    let households = page
        .households
        .iter()
        .map(|wire| {
            Household::try_from(wire)
                .map_err(|error| malformed(format_args!("household {}", wire.household_id), error))
        })
        .collect::<ClientResult<_>>()?;
    let visit_statuses = page
        .visit_statuses
        .iter()
        .map(|wire| {
            VisitStatus::try_from(wire)
                .map_err(|error| malformed(format_args!("visit status {}", wire.visit_id), error))
        })
        .collect::<ClientResult<_>>()?;
    let income_registrations = page
        .income_registrations
        .iter()
        .map(|wire| {
            IncomeRegistration::try_from(wire).map_err(|error| {
                malformed(
                    format_args!("income registration {}", wire.registration_id),
                    error,
                )
            })
        })
        .collect::<ClientResult<_>>()?;
    Ok(PulledPage {
        households,
        visit_statuses,
        removed_household_ids: page.removed_household_ids,
        income_registrations,
    })
}

/// The endpoint every call of the link goes through, before TLS is added.
///
/// TCP_NODELAY is asked for explicitly (tonic's default today, but a default can change):
/// a unary answer or a small Pull page goes out as more than one write, and with Nagle's
/// algorithm the second write waits for the peer's delayed ACK, about 40 ms per call on
/// Linux (issue 11 measured a 44 ms Pull p50 from that stall on the server side).
fn plain_endpoint(server_url: &str) -> ClientResult<Endpoint> {
    Ok(Endpoint::from_shared(server_url.to_owned())
        .map_err(|error| ClientError::Invalid {
            field: "server_url".to_owned(),
            message: format!("{server_url:?}: {error}"),
        })?
        .tcp_nodelay(true)
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_connection_of_the_link_turns_off_nagle() {
        for url in ["http://127.0.0.1:7700", "https://county.example.invalid"] {
            let endpoint = plain_endpoint(url).unwrap();
            assert!(endpoint.get_tcp_nodelay(), "{url}");
        }
        assert!(matches!(
            plain_endpoint("not a url"),
            Err(ClientError::Invalid { .. })
        ));
    }

    #[test]
    fn plain_http_is_only_for_loopback_unless_allowed() {
        let strict = LinkOptions::default();
        let allowed = LinkOptions {
            allow_insecure_http: true,
            ..LinkOptions::default()
        };
        for url in [
            "http://127.0.0.1:7700",
            "http://127.9.9.9:7700",
            "http://localhost:7700",
            "http://[::1]:7700",
        ] {
            assert!(!check_server_url(url, &strict).unwrap(), "{url}");
        }
        for url in [
            "http://example.invalid:7700",
            "http://0.0.0.0:7700",
            "http://192.0.2.10:7700",
            "http://localhost.example.invalid",
        ] {
            let error = check_server_url(url, &strict).unwrap_err();
            assert!(matches!(error, ClientError::InsecureHttp { .. }), "{url}");
            assert!(!check_server_url(url, &allowed).unwrap(), "{url}");
        }
        assert!(check_server_url("https://example.invalid", &strict).unwrap());
        assert!(matches!(
            check_server_url("ftp://example.invalid", &allowed),
            Err(ClientError::Invalid { .. })
        ));
    }
    use fieldsync_model::codes::{VisitExceptionReason, VisitMode, VisitType};
    use fieldsync_model::sync::{Mutation, MutationPayload};
    use fieldsync_model::visit::{CheckResult, Visit, WellbeingCheck};
    use fieldsync_proto::convert::instant_from_wire;
    use time::macros::datetime;

    fn sample_visit() -> Visit {
        Visit {
            visit_id: "0190d7a8-0000-7000-8000-000000000001".into(),
            revision: 2,
            supersedes_revision: 1,
            household_id: "hh-1".into(),
            mode: VisitMode::Phone,
            exception_reason: Some(VisitExceptionReason::WorkingAway),
            visit_type: VisitType::Routine,
            checkin_at: datetime!(2026-03-05 08:30:15.123456789 UTC),
            checkout_at: datetime!(2026-03-05 08:45 UTC),
            observed_situation: "家中一切正常".into(),
            plan_progress: String::new(),
            problems: String::new(),
            actions: String::new(),
            needs: String::new(),
            policies_explained: vec![],
            wellbeing: WellbeingCheck {
                food: CheckResult::Pass,
                ..WellbeingCheck::default()
            },
            proposed_changes: vec![],
            photo_ids: vec![],
            gps: None,
            recorded_at_device: datetime!(2026-03-05 08:46 UTC),
        }
    }

    #[test]
    fn a_pushed_visit_uses_the_protocol_numbers_and_keeps_nanoseconds() {
        let visit = sample_visit();
        let request = push_request_to_proto(&PushBatch {
            device_id: "device-1".into(),
            batch_id: "batch-1".into(),
            first_seq: 7,
            mutations: vec![Mutation {
                seq: 7,
                mutation_id: "mutation-7".into(),
                hlc: 42,
                payload: MutationPayload::SubmitVisit(visit.clone()),
            }],
            heartbeat: None,
        });
        assert_eq!(
            (request.first_seq, request.mutations.len()),
            (7, 1),
            "{request:?}"
        );
        let mutation = &request.mutations[0];
        assert_eq!((mutation.seq, mutation.hlc), (7, 42));
        let Some(proto::mutation::Payload::SubmitVisit(wire)) = &mutation.payload else {
            panic!("expected a visit payload: {mutation:?}");
        };
        assert_eq!(wire.mode, proto::VisitMode::Phone as i32);
        assert_eq!(
            wire.exception_reason,
            proto::VisitExceptionReason::WorkingAway as i32
        );
        assert_eq!(wire.r#type, proto::VisitType::Routine as i32);
        assert_eq!(
            wire.wellbeing.as_ref().map(|check| check.food),
            Some(proto::CheckResult::Pass as i32)
        );
        assert_eq!(wire.gps, None);
        let checkin = wire.checkin_at.as_ref().map(|t| instant_from_wire(t, "t"));
        assert_eq!(checkin, Some(Ok(visit.checkin_at)));
    }

    #[test]
    fn a_household_with_a_missing_required_code_is_a_protocol_error_naming_the_field() {
        let page = proto::PullPage {
            households: vec![proto::Household {
                household_id: "hh-9".into(),
                attribute: 0,
                main_cause: 1,
                ..proto::Household::default()
            }],
            ..proto::PullPage::default()
        };
        let error = pull_page_from_proto(page).unwrap_err();
        assert!(matches!(error, ClientError::Protocol(_)), "{error:?}");
        assert!(
            error.to_string().contains("household hh-9: attribute"),
            "{error}"
        );
    }

    #[test]
    fn a_bad_visit_status_names_the_visit_and_the_field() {
        let page = proto::PullPage {
            visit_statuses: vec![proto::VisitStatus {
                visit_id: "visit-3".into(),
                state: 999,
                ..proto::VisitStatus::default()
            }],
            ..proto::PullPage::default()
        };
        let error = pull_page_from_proto(page).unwrap_err();
        assert!(
            error.to_string().contains("visit status visit-3: state"),
            "{error}"
        );
    }

    #[test]
    fn statuses_map_to_client_errors_the_app_can_act_on() {
        let url = "http://127.0.0.1:1";
        assert!(map_status(url, tonic::Status::unavailable("down")).is_unavailable());
        // A link cut in the middle of a chunk surfaces as UNKNOWN "transport error".
        assert!(
            map_status(url, tonic::Status::unknown("transport error")).is_unavailable(),
            "a mid-call cut is a retryable outage, not a server refusal"
        );
        assert!(!map_status(url, tonic::Status::unknown("boom")).is_unavailable());
        assert!(matches!(
            map_status(url, tonic::Status::unauthenticated("no token")),
            ClientError::NotLoggedIn(_)
        ));
        let with_kind = |kind: &str| {
            let mut status = tonic::Status::unauthenticated("ended");
            status
                .metadata_mut()
                .insert("fieldsync-error", kind.parse().unwrap());
            map_status(url, status)
        };
        assert!(matches!(
            with_kind("session_revoked"),
            ClientError::SignedOut {
                reason: SignOutReason::Revoked
            }
        ));
        assert!(matches!(
            with_kind("session_expired"),
            ClientError::SignedOut {
                reason: SignOutReason::Expired
            }
        ));
        assert!(matches!(
            with_kind("access_token_expired"),
            ClientError::AccessTokenExpired(_)
        ));
        assert!(matches!(
            map_status(
                url,
                tonic::Status::failed_precondition("upgrade required: schema 0")
            ),
            ClientError::UpgradeRequired(_)
        ));
        assert!(matches!(
            map_status(url, tonic::Status::invalid_argument("visit.household_id")),
            ClientError::Rejected(_)
        ));
        assert!(matches!(
            map_status(url, tonic::Status::permission_denied("scope")),
            ClientError::Server { .. }
        ));
        let mut throttled = tonic::Status::resource_exhausted("登录尝试过多，请 8 秒后再试");
        throttled
            .metadata_mut()
            .insert("retry-after", "8".parse().unwrap());
        let throttled = map_status(url, throttled);
        assert!(
            matches!(
                throttled,
                ClientError::LoginThrottled {
                    retry_after_secs: 8,
                    ..
                }
            ),
            "{throttled:?}"
        );
        assert!(
            !throttled.is_transient(),
            "a throttled login waits for the cadre, it is never retried in a loop"
        );
        let mut refused = tonic::Status::failed_precondition("device clock wrong: 26 h ahead");
        refused
            .metadata_mut()
            .insert("fieldsync-error", "device_clock_wrong".parse().unwrap());
        refused
            .metadata_mut()
            .insert("fieldsync-server-time-ms", "1790000000000".parse().unwrap());
        assert!(matches!(
            map_status(url, refused),
            ClientError::DeviceClockWrong {
                server_time_ms: Some(1_790_000_000_000),
                ..
            }
        ));
    }
}
