//! `fieldsync.v1.Auth`: login with username and password from one device.

use fieldsync_model::CodeList;
use fieldsync_proto::v1;
use tonic::{Request, Response, Status};

use super::{check_client, status_from};
use crate::AppState;

#[derive(Debug)]
pub struct AuthService {
    state: AppState,
}

impl AuthService {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

#[tonic::async_trait]
impl v1::auth_server::Auth for AuthService {
    async fn login(
        &self,
        request: Request<v1::LoginRequest>,
    ) -> Result<Response<v1::LoginResponse>, Status> {
        // The TCP peer, for throttling by address (attached by `crate::serve`).
        let peer = crate::login_guard::peer_ip(request.extensions());
        let request = request.into_inner();
        check_client(&self.state, request.client.as_ref())?;
        if uuid::Uuid::parse_str(&request.device_id).is_err() {
            return Err(Status::invalid_argument(
                "device_id: must be a UUID generated once per install",
            ));
        }
        let (token, principal) = crate::auth::login(
            self.state.store.as_ref(),
            &self.state.login_guard,
            peer,
            &request.username,
            &request.password,
            &request.device_id,
            &request.device_name,
            self.state.settings.session_ttl_hours,
            self.state.clock.now(),
        )
        .await
        .map_err(|error| status_from(error.into()))?;
        Ok(Response::new(v1::LoginResponse {
            token,
            user_id: principal.user_id,
            display_name: principal.display_name,
            role: principal.role.code(),
            area_id: principal.area_id,
        }))
    }
}
