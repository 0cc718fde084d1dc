//! The gRPC edge of the client core and the ONLY module that touches protocol types
//! (ARCHITECTURE invariant). It builds tonic channels, attaches the bearer token and
//! `ClientInfo`, maps tonic statuses to [`ClientError`], and converts between
//! `fieldsync_model` types and `fieldsync_proto::v1` messages with explicit functions.

use std::time::Duration;

use fieldsync_model::CodeList;
use fieldsync_model::codes::{
    Crs, Disability, FundingSource, Health, HouseholdAttribute, HousingDangerLevel, LabourCapacity,
    MeasureCategory, MeasureStatus, PovertyCause, Relation, ReviewState, Role, Schooling, Sex,
};
use fieldsync_model::household::{GeoPoint, HelpMeasure, Household, Member};
use fieldsync_model::income::IncomeRegistration;
use fieldsync_model::review::{ReturnReason, VisitStatus};
use fieldsync_model::sync::{Mutation, MutationPayload};
use fieldsync_model::visit::{CheckResult, GpsFix, PhotoRecord, Visit, WellbeingCheck};
use fieldsync_proto::v1 as proto;
use fieldsync_proto::v1::auth_client::AuthClient;
use fieldsync_proto::v1::media_client::MediaClient;
use fieldsync_proto::v1::sync_client::SyncClient;
use prost::Message;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tonic::transport::{Channel, Endpoint};

use crate::error::{ClientError, ClientResult};
use crate::records::{
    LoginGrant, PullFrame, PulledPage, PushAck, PushBatch, PushOutcome, UploadPosition,
};

/// How long to wait for a TCP/HTTP2 connection. Villages have slow links, but a phone should
/// learn "no signal" within seconds rather than hang the sync button.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound for one unary call, generous for a 256 KiB chunk on 2G.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Largest pull frame accepted. Pages carry whole households with members; the tonic
/// default of 4 MiB is too tight for a cadre with many large households.
const MAX_DECODING_MESSAGE_BYTES: usize = 32 * 1024 * 1024;

/// A connection to one server, with the session token when there is one.
#[derive(Debug, Clone)]
pub struct Connection {
    channel: Channel,
    server_url: String,
    token: Option<String>,
}

impl Connection {
    /// Connect eagerly, so "server unreachable" surfaces here as [`ClientError::Unavailable`]
    /// instead of in the middle of a sync.
    pub async fn connect(server_url: &str, token: Option<String>) -> ClientResult<Self> {
        let endpoint = Endpoint::from_shared(server_url.to_owned())
            .map_err(|error| ClientError::Invalid {
                field: "server_url".to_owned(),
                message: format!("{server_url:?}: {error}"),
            })?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT);
        let channel = endpoint
            .connect()
            .await
            .map_err(|error| ClientError::Unavailable {
                server_url: server_url.to_owned(),
                message: error_chain(&error),
            })?;
        Ok(Self {
            channel,
            server_url: server_url.to_owned(),
            token,
        })
    }

    /// Auth.Login: the token is bound to `(user, device_id)`.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        device_id: &str,
        device_name: &str,
    ) -> ClientResult<LoginGrant> {
        let request = proto::LoginRequest {
            username: username.to_owned(),
            password: password.to_owned(),
            device_id: device_id.to_owned(),
            device_name: device_name.to_owned(),
            client: Some(client_info()),
        };
        let response = AuthClient::new(self.channel.clone())
            .login(tonic::Request::new(request))
            .await
            .map_err(|status| self.map_status(status))?
            .into_inner();
        Ok(LoginGrant {
            token: response.token,
            user_id: response.user_id,
            display_name: response.display_name,
            role: Role::from_code(response.role),
            area_id: response.area_id,
        })
    }

    /// Sync.Push of one batch.
    pub async fn push(&self, batch: &PushBatch) -> ClientResult<PushAck> {
        let request = push_request_to_proto(batch);
        let response = SyncClient::new(self.channel.clone())
            .push(self.authorized(request)?)
            .await
            .map_err(|status| self.map_status(status))?
            .into_inner();
        push_response_from_proto(response)
    }

    /// Sync.Pull from `cursor` (empty for a first sync). Frames are read with
    /// [`PullStream::next_frame`].
    pub async fn pull(&self, cursor: &str) -> ClientResult<PullStream> {
        let request = proto::PullRequest {
            cursor: cursor.to_owned(),
            client: Some(client_info()),
        };
        let streaming = SyncClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_DECODING_MESSAGE_BYTES)
            .pull(self.authorized(request)?)
            .await
            .map_err(|status| self.map_status(status))?
            .into_inner();
        Ok(PullStream {
            streaming,
            connection: self.clone(),
            page_hasher: Sha256::new(),
            frame_hasher: Sha256::new(),
        })
    }

    /// Media.StartUpload: idempotent on sha256; says where to continue.
    pub async fn start_upload(
        &self,
        sha256: &str,
        size_bytes: u64,
        mime_type: &str,
    ) -> ClientResult<UploadPosition> {
        let request = proto::StartUploadRequest {
            sha256: sha256.to_owned(),
            size_bytes,
            mime_type: mime_type.to_owned(),
        };
        let response = MediaClient::new(self.channel.clone())
            .start_upload(self.authorized(request)?)
            .await
            .map_err(|status| self.map_status(status))?
            .into_inner();
        Ok(UploadPosition {
            upload_id: response.upload_id,
            committed_offset: response.committed_offset,
            complete: response.complete,
        })
    }

    /// Media.PutChunk at exactly `offset`, with the CRC-32C of `data`. Returns the new
    /// committed offset, or [`ChunkRefused::WrongOffset`] when the server is elsewhere.
    pub async fn put_chunk(
        &self,
        upload_id: &str,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<u64, ChunkRefused> {
        let request = proto::PutChunkRequest {
            upload_id: upload_id.to_owned(),
            offset,
            crc32c: crc32c::crc32c(&data),
            data,
        };
        let request = self.authorized(request).map_err(ChunkRefused::Other)?;
        match MediaClient::new(self.channel.clone())
            .put_chunk(request)
            .await
        {
            Ok(response) => Ok(response.into_inner().committed_offset),
            Err(status) if status.code() == tonic::Code::FailedPrecondition => {
                Err(ChunkRefused::WrongOffset(status.message().to_owned()))
            }
            Err(status) => Err(ChunkRefused::Other(self.map_status(status))),
        }
    }

    /// Media.CompleteUpload: the server verifies size and SHA-256. Returns what it stored.
    pub async fn complete_upload(&self, upload_id: &str) -> ClientResult<(String, u64)> {
        let request = proto::CompleteUploadRequest {
            upload_id: upload_id.to_owned(),
        };
        let response = MediaClient::new(self.channel.clone())
            .complete_upload(self.authorized(request)?)
            .await
            .map_err(|status| self.map_status(status))?
            .into_inner();
        Ok((response.sha256, response.size_bytes))
    }

    /// Media.UploadStatus, used after a refused chunk to learn the committed offset.
    pub async fn upload_status(&self, upload_id: &str) -> ClientResult<UploadPosition> {
        let request = proto::UploadStatusRequest {
            upload_id: upload_id.to_owned(),
        };
        let response = MediaClient::new(self.channel.clone())
            .upload_status(self.authorized(request)?)
            .await
            .map_err(|status| self.map_status(status))?
            .into_inner();
        Ok(UploadPosition {
            upload_id: upload_id.to_owned(),
            committed_offset: response.committed_offset,
            complete: response.complete,
        })
    }

    /// Wrap a message with `authorization: Bearer <token>`.
    fn authorized<T>(&self, message: T) -> ClientResult<tonic::Request<T>> {
        let token = self.token.as_deref().ok_or_else(|| {
            ClientError::NotLoggedIn("请先登录 run `fieldsync login` first".into())
        })?;
        let mut request = tonic::Request::new(message);
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| ClientError::NotLoggedIn("stored token is not valid ASCII".into()))?;
        request.metadata_mut().insert("authorization", value);
        Ok(request)
    }

    fn map_status(&self, status: tonic::Status) -> ClientError {
        map_status(&self.server_url, status)
    }
}

/// Why a chunk was not accepted.
#[derive(Debug)]
pub enum ChunkRefused {
    /// FAILED_PRECONDITION: the server's committed offset differs; ask UploadStatus.
    WrongOffset(String),
    Other(ClientError),
}

/// A running pull stream.
#[derive(Debug)]
pub struct PullStream {
    streaming: tonic::Streaming<proto::PullResponse>,
    connection: Connection,
    /// SHA-256 over the encoded `PullPage` messages since the last checkpoint.
    page_hasher: Sha256,
    /// SHA-256 over the encoded `PullResponse` frames carrying those pages. The protocol
    /// says "over the page frames"; both readings are accepted so the client does not depend
    /// on which one the server picked.
    frame_hasher: Sha256,
}

impl PullStream {
    /// The next frame, or `None` when the server closed the stream.
    pub async fn next_frame(&mut self) -> ClientResult<Option<PullFrame>> {
        let Some(response) = self
            .streaming
            .message()
            .await
            .map_err(|status| self.connection.map_status(status))?
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
                    server_time: checkpoint.server_time.and_then(timestamp_from_proto),
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

/// Map a gRPC status to what the app can act on.
pub fn map_status(server_url: &str, status: tonic::Status) -> ClientError {
    let message = status.message().to_owned();
    match status.code() {
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
        tonic::Code::Unauthenticated => ClientError::NotLoggedIn(format!(
            "{message} (请重新登录 run `fieldsync login` again)"
        )),
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

// ---- time ----

fn timestamp_to_proto(instant: OffsetDateTime) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: instant.unix_timestamp(),
        // Always 0..1e9, so the conversion cannot fail.
        nanos: i32::try_from(instant.nanosecond()).unwrap_or(0),
    }
}

fn timestamp_from_proto(timestamp: prost_types::Timestamp) -> Option<OffsetDateTime> {
    let nanos = i128::from(timestamp.seconds) * 1_000_000_000 + i128::from(timestamp.nanos);
    OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()
}

// ---- code lists ----

fn optional_code_to_proto<T: CodeList>(value: Option<T>) -> i32 {
    value.map_or(0, CodeList::code)
}

/// A code the model requires; 0 ("unspecified") or an unknown number is a protocol error
/// naming the field, so a bad record is never silently filled with a default.
fn required_code<T: CodeList>(code: i32, field: &str) -> ClientResult<T> {
    T::from_code(code)
        .ok_or_else(|| ClientError::Protocol(format!("{field}: unknown or missing code {code}")))
}

/// An optional code: 0 is "not set". Unknown non-zero codes come from a newer code list;
/// they are dropped rather than failing the whole pull.
fn optional_code<T: CodeList>(code: i32) -> Option<T> {
    T::from_code(code)
}

// ---- model -> proto (push) ----

fn push_request_to_proto(batch: &PushBatch) -> proto::PushRequest {
    proto::PushRequest {
        device_id: batch.device_id.clone(),
        batch_id: batch.batch_id.clone(),
        first_seq: batch.first_seq,
        mutations: batch.mutations.iter().map(mutation_to_proto).collect(),
        client: Some(client_info()),
    }
}

fn mutation_to_proto(mutation: &Mutation) -> proto::Mutation {
    let payload = match &mutation.payload {
        MutationPayload::SubmitVisit(visit) => {
            proto::mutation::Payload::SubmitVisit(visit_to_proto(visit))
        }
        MutationPayload::AddPhoto(photo) => {
            proto::mutation::Payload::AddPhoto(photo_to_proto(photo))
        }
        MutationPayload::RegisterIncome(registration) => {
            proto::mutation::Payload::RegisterIncome(income_to_proto(registration))
        }
    };
    proto::Mutation {
        seq: mutation.seq,
        mutation_id: mutation.mutation_id.clone(),
        hlc: mutation.hlc,
        payload: Some(payload),
    }
}

/// Model visit → protocol visit.
pub fn visit_to_proto(visit: &Visit) -> proto::Visit {
    proto::Visit {
        visit_id: visit.visit_id.clone(),
        revision: visit.revision,
        supersedes_revision: visit.supersedes_revision,
        household_id: visit.household_id.clone(),
        mode: visit.mode.code(),
        exception_reason: optional_code_to_proto(visit.exception_reason),
        r#type: visit.visit_type.code(),
        checkin_at: Some(timestamp_to_proto(visit.checkin_at)),
        checkout_at: Some(timestamp_to_proto(visit.checkout_at)),
        observed_situation: visit.observed_situation.clone(),
        plan_progress: visit.plan_progress.clone(),
        problems: visit.problems.clone(),
        actions: visit.actions.clone(),
        needs: visit.needs.clone(),
        policies_explained: visit.policies_explained.clone(),
        wellbeing: Some(wellbeing_to_proto(&visit.wellbeing)),
        proposed_changes: visit
            .proposed_changes
            .iter()
            .map(|change| proto::ProposedChange {
                target: change.target.clone(),
                field: change.field.clone(),
                old_value: change.old_value.clone(),
                new_value: change.new_value.clone(),
                reason: change.reason.clone(),
            })
            .collect(),
        photo_ids: visit.photo_ids.clone(),
        gps: visit.gps.as_ref().map(gps_to_proto),
        recorded_at_device: Some(timestamp_to_proto(visit.recorded_at_device)),
    }
}

fn check_result_to_proto(result: CheckResult) -> i32 {
    match result {
        CheckResult::NotChecked => proto::CheckResult::Unspecified as i32,
        CheckResult::Pass => proto::CheckResult::Pass as i32,
        CheckResult::Fail => proto::CheckResult::Fail as i32,
    }
}

fn wellbeing_to_proto(check: &WellbeingCheck) -> proto::WellbeingCheck {
    proto::WellbeingCheck {
        food: check_result_to_proto(check.food),
        clothing: check_result_to_proto(check.clothing),
        compulsory_education: check_result_to_proto(check.compulsory_education),
        basic_medical: check_result_to_proto(check.basic_medical),
        housing_safety: check_result_to_proto(check.housing_safety),
        drinking_water: check_result_to_proto(check.drinking_water),
        note: check.note.clone(),
    }
}

fn gps_to_proto(gps: &GpsFix) -> proto::GpsFix {
    proto::GpsFix {
        lat: gps.lat,
        lon: gps.lon,
        crs: gps.crs.code(),
        accuracy_m: gps.accuracy_m,
        provider: optional_code_to_proto(gps.provider),
        is_mock: gps.is_mock,
        fix_time: gps.fix_time.map(timestamp_to_proto),
    }
}

fn photo_to_proto(photo: &PhotoRecord) -> proto::PhotoRecord {
    proto::PhotoRecord {
        photo_id: photo.photo_id.clone(),
        visit_id: photo.visit_id.clone(),
        sha256: photo.sha256.clone(),
        size_bytes: photo.size_bytes,
        mime_type: photo.mime_type.clone(),
        subject: optional_code_to_proto(photo.subject),
        captured_at_device: photo.captured_at_device.map(timestamp_to_proto),
        in_app_camera: photo.in_app_camera,
    }
}

fn income_to_proto(registration: &IncomeRegistration) -> proto::IncomeRegistration {
    proto::IncomeRegistration {
        registration_id: registration.registration_id.clone(),
        household_id: registration.household_id.clone(),
        year: registration.year,
        quarter: registration.quarter,
        household_size: registration.household_size,
        wage_fen: registration.components.wage_fen,
        business_gross_fen: registration.components.business_gross_fen,
        property_fen: registration.components.property_fen,
        transfer_fen: registration.components.transfer_fen,
        business_cost_fen: registration.components.business_cost_fen,
        // Derived fields are the server's to compute; sending ours is harmless and lets a
        // log reader compare.
        net_fen: registration.net_fen,
        per_capita_net_fen: registration.per_capita_net_fen,
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
        server_time: response.server_time.and_then(timestamp_from_proto),
        receipt: response.receipt,
    })
}

fn pull_page_from_proto(page: proto::PullPage) -> ClientResult<PulledPage> {
    Ok(PulledPage {
        households: page
            .households
            .into_iter()
            .map(household_from_proto)
            .collect::<ClientResult<_>>()?,
        visit_statuses: page
            .visit_statuses
            .into_iter()
            .map(visit_status_from_proto)
            .collect::<ClientResult<_>>()?,
        removed_household_ids: page.removed_household_ids,
    })
}

fn geo_point_from_proto(point: proto::GeoPoint) -> Option<GeoPoint> {
    // A point without a coordinate system cannot be compared with a GPS fix; treat the
    // unspecified system as WGS-84, which is what the register stores (DESIGN §5).
    let crs = optional_code::<Crs>(point.crs).unwrap_or(Crs::Wgs84);
    Some(GeoPoint {
        lat: point.lat,
        lon: point.lon,
        crs,
    })
}

/// Protocol household → model household.
pub fn household_from_proto(household: proto::Household) -> ClientResult<Household> {
    let id = household.household_id.clone();
    let field = |name: &str| format!("household {id}: {name}");
    Ok(Household {
        attribute: required_code::<HouseholdAttribute>(household.attribute, &field("attribute"))?,
        main_cause: required_code::<PovertyCause>(household.main_cause, &field("main_cause"))?,
        secondary_causes: household
            .secondary_causes
            .iter()
            .filter_map(|code| optional_code::<PovertyCause>(*code))
            .collect(),
        housing_danger_level: optional_code::<HousingDangerLevel>(household.housing_danger_level),
        location: household.location.and_then(geo_point_from_proto),
        members: household
            .members
            .into_iter()
            .map(|member| member_from_proto(member, &id))
            .collect::<ClientResult<_>>()?,
        measures: household
            .measures
            .into_iter()
            .map(|measure| measure_from_proto(measure, &id))
            .collect::<ClientResult<_>>()?,
        household_id: household.household_id,
        national_household_number: household.national_household_number,
        head_name: household.head_name,
        township_id: household.township_id,
        village_id: household.village_id,
        village_name: household.village_name,
        address: household.address,
        phone: household.phone,
        server_seq: household.server_seq,
    })
}

fn member_from_proto(member: proto::Member, household_id: &str) -> ClientResult<Member> {
    let field = |name: &str| {
        format!(
            "household {household_id} member {}: {name}",
            member.member_id
        )
    };
    Ok(Member {
        relation: required_code::<Relation>(member.relation, &field("relation"))?,
        sex: required_code::<Sex>(member.sex, &field("sex"))?,
        health: required_code::<Health>(member.health, &field("health"))?,
        labour_capacity: required_code::<LabourCapacity>(
            member.labour_capacity,
            &field("labour_capacity"),
        )?,
        schooling: required_code::<Schooling>(member.schooling, &field("schooling"))?,
        disability: required_code::<Disability>(member.disability, &field("disability"))?,
        member_id: member.member_id,
        name: member.name,
        birth_date: member.birth_date,
        id_number: member.id_number,
        disability_grade: member.disability_grade,
        has_medical_insurance: member.has_medical_insurance,
        has_serious_illness_insurance: member.has_serious_illness_insurance,
        has_pension_insurance: member.has_pension_insurance,
        removed: member.removed,
    })
}

fn measure_from_proto(
    measure: proto::HelpMeasure,
    household_id: &str,
) -> ClientResult<HelpMeasure> {
    let field = |name: &str| {
        format!(
            "household {household_id} measure {}: {name}",
            measure.measure_id
        )
    };
    Ok(HelpMeasure {
        category: required_code::<MeasureCategory>(measure.category, &field("category"))?,
        status: required_code::<MeasureStatus>(measure.status, &field("status"))?,
        funding_source: optional_code::<FundingSource>(measure.funding_source),
        measure_id: measure.measure_id,
        name: measure.name,
        scale: measure.scale,
        funding_fen: measure.funding_fen,
        deadline: measure.deadline,
    })
}

/// Protocol visit status → model visit status.
pub fn visit_status_from_proto(status: proto::VisitStatus) -> ClientResult<VisitStatus> {
    let field = format!("visit status {}: state", status.visit_id);
    Ok(VisitStatus {
        state: required_code::<ReviewState>(status.state, &field)?,
        reasons: status
            .reasons
            .into_iter()
            .map(|reason| ReturnReason {
                code: reason.code,
                field: reason.field,
            })
            .collect(),
        decided_at: status.decided_at.and_then(timestamp_from_proto),
        visit_id: status.visit_id,
        revision: status.revision,
        household_id: status.household_id,
        note: status.note,
        deadline: status.deadline,
        reviewer_name: status.reviewer_name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fieldsync_model::codes::{VisitExceptionReason, VisitMode, VisitType};
    use time::macros::datetime;

    #[test]
    fn timestamps_round_trip_to_the_nanosecond() {
        let instant = datetime!(2026-03-05 08:30:15.123456789 UTC);
        assert_eq!(
            timestamp_from_proto(timestamp_to_proto(instant)),
            Some(instant)
        );
    }

    #[test]
    fn visit_enums_use_the_protocol_numbers() {
        let visit = Visit {
            visit_id: "0190d7a8-0000-7000-8000-000000000001".into(),
            revision: 2,
            supersedes_revision: 1,
            household_id: "hh-1".into(),
            mode: VisitMode::Phone,
            exception_reason: Some(VisitExceptionReason::WorkingAway),
            visit_type: VisitType::Routine,
            checkin_at: datetime!(2026-03-05 08:00 UTC),
            checkout_at: datetime!(2026-03-05 08:30 UTC),
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
            recorded_at_device: datetime!(2026-03-05 08:31 UTC),
        };
        let wire = visit_to_proto(&visit);
        assert_eq!(wire.mode, proto::VisitMode::Phone as i32);
        assert_eq!(
            wire.exception_reason,
            proto::VisitExceptionReason::WorkingAway as i32
        );
        assert_eq!(wire.r#type, proto::VisitType::Routine as i32);
        assert_eq!(
            wire.wellbeing.map(|check| check.food),
            Some(proto::CheckResult::Pass as i32)
        );
        assert_eq!(wire.gps, None);
    }

    #[test]
    fn a_household_with_a_missing_required_code_is_a_protocol_error_naming_the_field() {
        let household = proto::Household {
            household_id: "hh-9".into(),
            attribute: 0,
            main_cause: 1,
            ..proto::Household::default()
        };
        let error = household_from_proto(household).unwrap_err();
        assert!(
            error.to_string().contains("household hh-9: attribute"),
            "{error}"
        );
    }

    #[test]
    fn statuses_map_to_client_errors_the_app_can_act_on() {
        let url = "http://127.0.0.1:1";
        assert!(map_status(url, tonic::Status::unavailable("down")).is_unavailable());
        assert!(matches!(
            map_status(url, tonic::Status::unauthenticated("no token")),
            ClientError::NotLoggedIn(_)
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
    }
}
