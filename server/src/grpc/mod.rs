//! gRPC edge: tonic services that translate wire messages into model types (via
//! `fieldsync_proto::convert`), call the use cases, and translate results back. Proto types
//! stop here. Also serves `grpc.health.v1` and server reflection on the same port.

mod auth_service;
mod media_service;
mod review_service;
mod sync_service;

use fieldsync_proto::convert::ConvertError;
use fieldsync_proto::v1;
use tonic::{Request, Status};

use crate::AppState;
use crate::error::ServiceError;
use crate::store::{Principal, SessionLookup};

/// What `grpc.health.v1` reports for the whole server ("") and each service (issue 12 §4):
/// NOT_SERVING while the storage opens (migrations) and from the moment shutdown begins,
/// SERVING in between, so a load balancer or `grpc_health_probe` sends work only when it
/// can be done.
#[derive(Clone)]
pub struct Readiness {
    reporter: tonic_health::server::HealthReporter,
}

/// The health service type every [`Readiness::health_service`] answers with.
pub type HealthService =
    tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService>;

impl std::fmt::Debug for Readiness {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Readiness")
    }
}

impl Readiness {
    /// A new readiness reporting NOT_SERVING.
    pub async fn not_serving() -> Self {
        let (reporter, _) = tonic_health::server::health_reporter();
        let readiness = Self { reporter };
        readiness.set(false).await;
        readiness
    }

    /// A `grpc.health.v1` service answering from this readiness (every one made shares it).
    pub fn health_service(&self) -> HealthService {
        tonic_health::pb::health_server::HealthServer::new(
            tonic_health::server::HealthService::from_health_reporter(self.reporter.clone()),
        )
    }

    /// Report every service (and the server, "") as serving or not.
    pub async fn set(&self, serving: bool) {
        let status = if serving {
            tonic_health::ServingStatus::Serving
        } else {
            tonic_health::ServingStatus::NotServing
        };
        for service in [
            "",
            <v1::sync_server::SyncServer<sync_service::SyncService> as tonic::server::NamedService>::NAME,
            <v1::media_server::MediaServer<media_service::MediaService> as tonic::server::NamedService>::NAME,
            <v1::review_server::ReviewServer<review_service::ReviewService> as tonic::server::NamedService>::NAME,
            <v1::auth_server::AuthServer<auth_service::AuthService> as tonic::server::NamedService>::NAME,
        ] {
            self.reporter.set_service_status(service, status).await;
        }
        crate::monitoring::record_ready(serving);
    }
}

/// All gRPC services as an axum router, ready to merge with the console; health answers
/// from `readiness` (the caller sets it SERVING once the router is in place).
pub fn routes(state: AppState, readiness: &Readiness) -> axum::Router {
    let max_message_bytes = state.settings.max_message_bytes;
    let health_service = readiness.health_service();
    // Reflection is offered as `grpc.reflection.v1` and the older `v1alpha`: grpcurl and
    // current tools ask for v1, but some clients (older grpcurl, Postman, BloomRPC) only
    // speak v1alpha and would get UNIMPLEMENTED.
    let reflection_builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(fieldsync_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection = reflection_builder().build_v1();
    let reflection_v1alpha = reflection_builder().build_v1alpha();
    let mut routes = tonic::service::Routes::new(health_service);
    routes = routes.add_service(
        v1::auth_server::AuthServer::new(auth_service::AuthService::new(state.clone()))
            .max_decoding_message_size(max_message_bytes),
    );
    routes = routes.add_service(
        v1::sync_server::SyncServer::new(sync_service::SyncService::new(state.clone()))
            .max_decoding_message_size(max_message_bytes),
    );
    routes = routes.add_service(
        v1::media_server::MediaServer::new(media_service::MediaService::new(state.clone()))
            .max_decoding_message_size(max_message_bytes),
    );
    routes = routes.add_service(
        v1::review_server::ReviewServer::new(review_service::ReviewService::new(state))
            .max_decoding_message_size(max_message_bytes),
    );
    // The descriptor set is compiled in; failing to read it is a build defect, but the
    // server is still useful without reflection.
    match reflection {
        Ok(reflection) => routes = routes.add_service(reflection),
        Err(error) => tracing::error!(%error, "gRPC reflection v1 disabled"),
    }
    match reflection_v1alpha {
        Ok(reflection) => routes = routes.add_service(reflection),
        Err(error) => tracing::error!(%error, "gRPC reflection v1alpha disabled"),
    }
    routes.prepare().into_axum_router()
}

/// The answer to every call but health while the storage opens: gRPC `UNAVAILABLE` (the
/// phone retries, as for any passing outage), HTTP 503 with `Retry-After`.
pub async fn starting_answer(request: axum::extract::Request) -> axum::response::Response {
    use axum::response::IntoResponse;
    let is_grpc = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|content_type| content_type.starts_with("application/grpc"));
    if is_grpc {
        return Status::unavailable(
            "服务器正在启动，请稍后重试 (the server is starting; retry shortly)",
        )
        .into_http::<axum::body::Body>()
        .into_response();
    }
    (
        http::StatusCode::SERVICE_UNAVAILABLE,
        [(http::header::RETRY_AFTER, "5")],
        "服务器正在启动，请稍后刷新 (the server is starting; reload in a few seconds)",
    )
        .into_response()
}

/// The router answering while the storage opens: health (NOT_SERVING) and
/// [`starting_answer`] for everything else.
pub fn starting_routes(readiness: &Readiness) -> axum::Router {
    let health = readiness.health_service();
    axum::Router::new()
        .route_service("/grpc.health.v1.Health/Check", health.clone())
        .route_service("/grpc.health.v1.Health/Watch", health)
        .fallback(starting_answer)
}

/// gRPC metadata key naming a typed error a phone must act on (value below).
pub const ERROR_KIND_METADATA: &str = "fieldsync-error";
/// Value of [`ERROR_KIND_METADATA`] when the device clock is too far ahead.
pub const DEVICE_CLOCK_WRONG: &str = "device_clock_wrong";
/// Values of [`ERROR_KIND_METADATA`] on UNAUTHENTICATED: the session was ended on the
/// server (logout, revoked, password changed, refresh reuse) — log in again, keep the outbox.
pub const SESSION_REVOKED: &str = "session_revoked";
/// The session's lifetime (or the refresh token's) is over — log in again.
pub const SESSION_EXPIRED: &str = "session_expired";
/// Only the short access token expired — call `Auth.Refresh` and retry.
pub const ACCESS_TOKEN_EXPIRED: &str = "access_token_expired";
/// gRPC metadata key carrying the server's wall time (unix ms) with a clock error, so the
/// app can tell the cadre what the right time is.
pub const SERVER_TIME_METADATA: &str = "fieldsync-server-time-ms";

/// gRPC metadata key of a throttled login: whole seconds to wait before the next attempt.
pub const RETRY_AFTER_METADATA: &str = "retry-after";

/// The one place a [`ServiceError`] becomes a gRPC status.
pub(crate) fn status_from(error: ServiceError) -> Status {
    let message = error.to_string();
    match error {
        ServiceError::DeviceClockWrong { server_time_ms, .. } => {
            let mut status = Status::failed_precondition(message);
            let metadata = status.metadata_mut();
            metadata.insert(
                ERROR_KIND_METADATA,
                tonic::metadata::MetadataValue::from_static(DEVICE_CLOCK_WRONG),
            );
            metadata.insert(SERVER_TIME_METADATA, server_time_ms.into());
            status
        }
        ServiceError::Throttled { retry_after_secs } => {
            let mut status = Status::resource_exhausted(message);
            status
                .metadata_mut()
                .insert(RETRY_AFTER_METADATA, retry_after_secs.into());
            status
        }
        ServiceError::Unauthenticated(_) => Status::unauthenticated(message),
        ServiceError::SessionEnded { kind, .. } => {
            let mut status = Status::unauthenticated(message);
            status.metadata_mut().insert(
                ERROR_KIND_METADATA,
                tonic::metadata::MetadataValue::from_static(kind),
            );
            status
        }
        ServiceError::PermissionDenied(_) => Status::permission_denied(message),
        ServiceError::InvalidArgument { .. } => Status::invalid_argument(message),
        ServiceError::NotFound(_) => Status::not_found(message),
        ServiceError::FailedPrecondition(_) => Status::failed_precondition(message),
        ServiceError::AlreadyExists(_) => Status::already_exists(message),
        ServiceError::Internal => Status::internal(message),
        ServiceError::Unavailable => Status::unavailable(message),
    }
}

impl From<ServiceError> for Status {
    fn from(error: ServiceError) -> Self {
        status_from(error)
    }
}

/// A wire message that failed conversion: `INVALID_ARGUMENT` naming the field.
pub(crate) fn invalid_wire(error: ConvertError, parent: &str) -> Status {
    let error = if parent.is_empty() {
        error
    } else {
        error.within(parent)
    };
    Status::invalid_argument(error.to_string())
}

/// Resolve the bearer token of a request to its principal.
pub(crate) async fn principal_of<T>(
    state: &AppState,
    request: &Request<T>,
) -> Result<Principal, Status> {
    session_of(state, request)
        .await
        .map(|session| session.principal)
}

/// Resolve the bearer token of a request to its live session (for calls about the session
/// itself: logout, password change).
pub(crate) async fn session_of<T>(
    state: &AppState,
    request: &Request<T>,
) -> Result<SessionLookup, Status> {
    let token = request
        .metadata()
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or_default();
    crate::auth::authenticate_session(
        state.store.as_ref(),
        token,
        &crate::auth::SessionPolicy::from_settings(&state.settings),
        &peer_ip(request),
        state.clock.now(),
    )
    .await
    .map_err(|error| status_from(error.into()))
}

/// The caller's IP address as text, or empty when the transport did not say.
pub(crate) fn peer_ip<T>(request: &Request<T>) -> String {
    crate::login_guard::peer_ip(request.extensions())
        .or_else(|| request.remote_addr().map(|address| address.ip()))
        .map(|address| address.to_string())
        .unwrap_or_default()
}

/// Refuse clients whose schema is older than the server accepts, with an explicit message
/// the app can show ("upgrade required"), before any of their data is read.
pub(crate) fn check_client(
    state: &AppState,
    client: Option<&v1::ClientInfo>,
) -> Result<(), Status> {
    let schema_version = client.map_or(0, |client| client.schema_version);
    if schema_version < state.settings.min_client_schema_version {
        return Err(Status::failed_precondition(format!(
            "upgrade required: 请升级应用 (client schema {schema_version} is older than the minimum {})",
            state.settings.min_client_schema_version
        )));
    }
    Ok(())
}
