//! `fieldsync.v1.Auth`: login with username and password from one device, refresh-token
//! rotation, logout and password change (see [`crate::auth`]).

use fieldsync_model::CodeList;
use fieldsync_proto::convert::instant_to_wire;
use fieldsync_proto::v1;
use tonic::{Request, Response, Status};

use super::{check_client, peer_ip, session_of, status_from};
use crate::AppState;
use crate::auth::{self, SessionPolicy};
use crate::store::SessionKind;

#[derive(Debug)]
pub struct AuthService {
    state: AppState,
}

impl AuthService {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }

    fn policy(&self) -> SessionPolicy {
        SessionPolicy::from_settings(&self.state.settings)
    }
}

/// The app version a request's `ClientInfo` names ("" when it names none).
fn app_version_of(client: Option<&v1::ClientInfo>) -> String {
    client
        .map(|client| client.app_version.clone())
        .unwrap_or_default()
}

/// A refresh token and its expiry as the wire carries them: empty and unset for apps that
/// do not refresh.
fn refresh_to_wire(
    refresh: Option<(String, time::OffsetDateTime)>,
) -> (String, Option<prost_types::Timestamp>) {
    match refresh {
        Some((token, expires_at)) => (token, Some(instant_to_wire(expires_at))),
        None => (String::new(), None),
    }
}

#[tonic::async_trait]
impl v1::auth_server::Auth for AuthService {
    async fn login(
        &self,
        request: Request<v1::LoginRequest>,
    ) -> Result<Response<v1::LoginResponse>, Status> {
        // The TCP peer, for throttling by address and as the session's last IP.
        let peer = crate::login_guard::peer_ip(request.extensions());
        let ip = peer.map(|address| address.to_string()).unwrap_or_default();
        let request = request.into_inner();
        check_client(&self.state, request.client.as_ref())?;
        if uuid::Uuid::parse_str(&request.device_id).is_err() {
            return Err(Status::invalid_argument(
                "device_id: must be a UUID generated once per install",
            ));
        }
        let device = auth::LoginDevice {
            kind: SessionKind::Device,
            device_id: request.device_id.clone(),
            device_name: request.device_name.clone(),
            app_version: app_version_of(request.client.as_ref()),
            ip,
            wants_refresh_token: request.wants_refresh_token,
        };
        let (tokens, principal) = auth::login(
            self.state.store.as_ref(),
            &self.state.login_guard,
            peer,
            &request.username,
            &request.password,
            &device,
            &self.policy(),
            self.state.clock.now(),
        )
        .await
        .map_err(|error| status_from(error.into()))?;
        let must_change_password = tokens.must_change_password;
        let (refresh_token, refresh_token_expires_at) = refresh_to_wire(tokens.refresh);
        Ok(Response::new(v1::LoginResponse {
            must_change_password,
            token: tokens.access_token,
            user_id: principal.user_id,
            display_name: principal.display_name,
            role: principal.role.code(),
            area_id: principal.area_id,
            refresh_token,
            token_expires_at: Some(instant_to_wire(tokens.access_expires_at)),
            refresh_token_expires_at,
        }))
    }

    async fn refresh(
        &self,
        request: Request<v1::RefreshRequest>,
    ) -> Result<Response<v1::RefreshResponse>, Status> {
        let ip = peer_ip(&request);
        let request = request.into_inner();
        check_client(&self.state, request.client.as_ref())?;
        let app_version = app_version_of(request.client.as_ref());
        let (tokens, _principal) = auth::refresh(
            self.state.store.as_ref(),
            &request.refresh_token,
            &app_version,
            &ip,
            &self.policy(),
            self.state.clock.now(),
        )
        .await
        .map_err(|error| status_from(error.into()))?;
        let (refresh_token, refresh_token_expires_at) = refresh_to_wire(tokens.refresh);
        Ok(Response::new(v1::RefreshResponse {
            token: tokens.access_token,
            refresh_token,
            token_expires_at: Some(instant_to_wire(tokens.access_expires_at)),
            refresh_token_expires_at,
        }))
    }

    async fn logout(
        &self,
        request: Request<v1::LogoutRequest>,
    ) -> Result<Response<v1::LogoutResponse>, Status> {
        let session = session_of(&self.state, &request).await?;
        check_client(&self.state, request.get_ref().client.as_ref())?;
        auth::logout(self.state.store.as_ref(), &session, self.state.clock.now())
            .await
            .map_err(|error| status_from(error.into()))?;
        Ok(Response::new(v1::LogoutResponse {}))
    }

    async fn change_password(
        &self,
        request: Request<v1::ChangePasswordRequest>,
    ) -> Result<Response<v1::ChangePasswordResponse>, Status> {
        let session = session_of(&self.state, &request).await?;
        let request = request.into_inner();
        check_client(&self.state, request.client.as_ref())?;
        let ended = auth::change_password(
            self.state.store.as_ref(),
            &self.state.login_guard.pool,
            &session,
            &request.old_password,
            &request.new_password,
            self.state.clock.now(),
        )
        .await
        .map_err(|error| status_from(error.into()))?;
        Ok(Response::new(v1::ChangePasswordResponse {
            other_sessions_ended: u32::try_from(ended).unwrap_or(u32::MAX),
        }))
    }
}
