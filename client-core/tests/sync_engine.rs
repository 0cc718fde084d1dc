//! The sync engine against a small in-process fake of the fieldsync gRPC services on a
//! loopback port. The fake is scripted to lose a push response, break an upload after one
//! chunk and answer a pull with RESET, so the client's retry, resume and reset paths run
//! for real. (Protocol types appear here because this file plays the server; the real server
//! is exercised by the workspace `tests/` crate.)

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use fieldsync_client::{Client, ClientError, NewVisit, VisitState};
use fieldsync_model::codes::{Crs, LocationProvider, VisitMode};
use fieldsync_model::visit::GpsFix;
use fieldsync_proto::v1 as proto;
use prost::Message;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio_stream::wrappers::TcpListenerStream;

#[derive(Debug, Default)]
struct FakeState {
    /// (batch_id, encoded request) of every push received.
    pushes: Vec<(String, Vec<u8>)>,
    last_processed_seq: u64,
    /// Visit id → (household id, revision) of applied visits.
    visits: HashMap<String, (String, u32)>,
    returned: HashMap<String, u32>,
    blobs: HashMap<String, Vec<u8>>,
    /// Offsets of every PutChunk received.
    chunk_offsets: Vec<u64>,
    lose_next_push_response: bool,
    fail_chunk_at_offset: Option<u64>,
    reset_next_pull: bool,
    /// Whether hh-foreign is in this cadre's scope (pulled).
    foreign_in_scope: bool,
    authorization_seen: Vec<String>,
}

#[derive(Debug, Clone, Default)]
struct Fake(Arc<Mutex<FakeState>>);

impl Fake {
    fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.0.lock().unwrap()
    }

    fn check_token<T>(&self, request: &tonic::Request<T>) -> Result<(), tonic::Status> {
        let value = request
            .metadata()
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        self.state().authorization_seen.push(value.clone());
        if value.starts_with("Bearer token-") {
            Ok(())
        } else {
            Err(tonic::Status::unauthenticated("missing bearer token"))
        }
    }
}

#[tonic::async_trait]
impl proto::auth_server::Auth for Fake {
    async fn login(
        &self,
        request: tonic::Request<proto::LoginRequest>,
    ) -> Result<tonic::Response<proto::LoginResponse>, tonic::Status> {
        let login = request.into_inner();
        if login.password != "demo123" {
            return Err(tonic::Status::unauthenticated("wrong password"));
        }
        assert_eq!(
            login.client.map(|client| client.schema_version),
            Some(fieldsync_proto::SCHEMA_VERSION)
        );
        Ok(tonic::Response::new(proto::LoginResponse {
            token: format!("token-{}", login.device_id),
            user_id: "user-1".into(),
            display_name: "张干部".into(),
            role: proto::Role::Cadre as i32,
            area_id: String::new(),
            // Like a server from before refresh rotation: one long-lived token.
            ..proto::LoginResponse::default()
        }))
    }

    async fn refresh(
        &self,
        _request: tonic::Request<proto::RefreshRequest>,
    ) -> Result<tonic::Response<proto::RefreshResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented(
            "this fake issues no refresh tokens",
        ))
    }

    async fn logout(
        &self,
        _request: tonic::Request<proto::LogoutRequest>,
    ) -> Result<tonic::Response<proto::LogoutResponse>, tonic::Status> {
        Ok(tonic::Response::new(proto::LogoutResponse {}))
    }

    async fn change_password(
        &self,
        _request: tonic::Request<proto::ChangePasswordRequest>,
    ) -> Result<tonic::Response<proto::ChangePasswordResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented(
            "this fake has no passwords to change",
        ))
    }
}

#[tonic::async_trait]
impl proto::sync_server::Sync for Fake {
    async fn push(
        &self,
        request: tonic::Request<proto::PushRequest>,
    ) -> Result<tonic::Response<proto::PushResponse>, tonic::Status> {
        self.check_token(&request)?;
        let push = request.into_inner();
        let mut state = self.state();
        let encoded = push.encode_to_vec();
        let reused_with_other_content = state
            .pushes
            .iter()
            .any(|(id, earlier)| *id == push.batch_id && *earlier != encoded);
        if reused_with_other_content {
            return Err(tonic::Status::failed_precondition("batch id reused"));
        }
        state.pushes.push((push.batch_id.clone(), encoded));
        let mut results = Vec::new();
        for (index, mutation) in push.mutations.iter().enumerate() {
            assert_eq!(
                mutation.seq,
                push.first_seq + index as u64,
                "gap-free batch"
            );
            let outcome = if mutation.seq <= state.last_processed_seq {
                proto::MutationOutcome::Duplicate
            } else {
                assert_eq!(mutation.seq, state.last_processed_seq + 1, "seq order");
                state.last_processed_seq = mutation.seq;
                match &mutation.payload {
                    Some(proto::mutation::Payload::SubmitVisit(visit))
                        if visit.household_id == "hh-foreign" =>
                    {
                        proto::MutationOutcome::Rejected
                    }
                    Some(proto::mutation::Payload::SubmitVisit(visit)) => {
                        state.visits.insert(
                            visit.visit_id.clone(),
                            (visit.household_id.clone(), visit.revision),
                        );
                        proto::MutationOutcome::Applied
                    }
                    Some(proto::mutation::Payload::AddPhoto(photo))
                        if !state.visits.contains_key(&photo.visit_id) =>
                    {
                        proto::MutationOutcome::Rejected
                    }
                    _ => proto::MutationOutcome::Applied,
                }
            };
            let reject_code = match (&mutation.payload, outcome) {
                (_, proto::MutationOutcome::Applied | proto::MutationOutcome::Duplicate) => "",
                (Some(proto::mutation::Payload::AddPhoto(_)), _) => "unknown_visit",
                _ => "household_out_of_scope",
            };
            results.push(proto::MutationResult {
                seq: mutation.seq,
                outcome: outcome as i32,
                reject_code: reject_code.into(),
                reject_message: String::new(),
            });
        }
        if std::mem::take(&mut state.lose_next_push_response) {
            // Applied durably, but the phone never hears about it.
            return Err(tonic::Status::unavailable("connection lost"));
        }
        Ok(tonic::Response::new(proto::PushResponse {
            server_hlc: 0,
            results,
            last_processed_seq: state.last_processed_seq,
            server_time: None,
            receipt: format!("receipt-{}", state.last_processed_seq),
        }))
    }

    type PullStream =
        tokio_stream::Iter<std::vec::IntoIter<Result<proto::PullResponse, tonic::Status>>>;

    async fn pull(
        &self,
        request: tonic::Request<proto::PullRequest>,
    ) -> Result<tonic::Response<Self::PullStream>, tonic::Status> {
        self.check_token(&request)?;
        let mut state = self.state();
        let frame = |frame| Ok(proto::PullResponse { frame: Some(frame) });
        if std::mem::take(&mut state.reset_next_pull) {
            let frames = vec![frame(proto::pull_response::Frame::Reset(proto::Reset {
                reason: "cursor too old".into(),
            }))];
            return Ok(tonic::Response::new(tokio_stream::iter(frames)));
        }
        let mut households = vec![household("hh-1", "张三"), household("hh-2", "李四")];
        if state.foreign_in_scope {
            households.push(household("hh-foreign", "王五"));
        }
        let visit_statuses = state
            .visits
            .iter()
            .map(|(visit_id, (household_id, revision))| {
                let returned = state.returned.get(visit_id) == Some(revision);
                proto::VisitStatus {
                    visit_id: visit_id.clone(),
                    revision: *revision,
                    household_id: household_id.clone(),
                    state: if returned {
                        proto::ReviewState::Returned as i32
                    } else {
                        proto::ReviewState::Submitted as i32
                    },
                    reasons: if returned {
                        vec![proto::ReturnReason {
                            code: "photo_unclear".into(),
                            field: "photo_ids".into(),
                        }]
                    } else {
                        vec![]
                    },
                    ..proto::VisitStatus::default()
                }
            })
            .collect();
        let page = proto::PullPage {
            households,
            visit_statuses,
            removed_household_ids: vec![],
            income_registrations: vec![],
        };
        let checksum = hex::encode(Sha256::digest(page.encode_to_vec()));
        let frames = vec![
            frame(proto::pull_response::Frame::Page(page)),
            frame(proto::pull_response::Frame::Checkpoint(proto::Checkpoint {
                server_hlc: 0,
                cursor: "cursor-1".into(),
                checksum,
                server_time: None,
                pending_conflicts: Vec::new(),
            })),
        ];
        Ok(tonic::Response::new(tokio_stream::iter(frames)))
    }
}

#[tonic::async_trait]
impl proto::media_server::Media for Fake {
    async fn start_upload(
        &self,
        request: tonic::Request<proto::StartUploadRequest>,
    ) -> Result<tonic::Response<proto::StartUploadResponse>, tonic::Status> {
        self.check_token(&request)?;
        let start = request.into_inner();
        let mut state = self.state();
        let blob = state.blobs.entry(start.sha256.clone()).or_default();
        let complete = hex::encode(Sha256::digest(&*blob)) == start.sha256;
        Ok(tonic::Response::new(proto::StartUploadResponse {
            upload_id: start.sha256,
            committed_offset: blob.len() as u64,
            complete,
        }))
    }

    async fn put_chunk(
        &self,
        request: tonic::Request<proto::PutChunkRequest>,
    ) -> Result<tonic::Response<proto::PutChunkResponse>, tonic::Status> {
        self.check_token(&request)?;
        let chunk = request.into_inner();
        let mut state = self.state();
        if state.fail_chunk_at_offset == Some(chunk.offset) {
            state.fail_chunk_at_offset = None;
            return Err(tonic::Status::unavailable("signal lost"));
        }
        assert_eq!(crc32c::crc32c(&chunk.data), chunk.crc32c, "chunk CRC-32C");
        assert!(chunk.data.len() <= 256 * 1024);
        state.chunk_offsets.push(chunk.offset);
        let blob = state.blobs.entry(chunk.upload_id).or_default();
        if chunk.offset != blob.len() as u64 {
            return Err(tonic::Status::failed_precondition(format!(
                "committed offset is {}",
                blob.len()
            )));
        }
        blob.extend_from_slice(&chunk.data);
        Ok(tonic::Response::new(proto::PutChunkResponse {
            committed_offset: blob.len() as u64,
        }))
    }

    async fn complete_upload(
        &self,
        request: tonic::Request<proto::CompleteUploadRequest>,
    ) -> Result<tonic::Response<proto::CompleteUploadResponse>, tonic::Status> {
        self.check_token(&request)?;
        let upload_id = request.into_inner().upload_id;
        let state = self.state();
        let blob = state.blobs.get(&upload_id).cloned().unwrap_or_default();
        let sha256 = hex::encode(Sha256::digest(&blob));
        if sha256 != upload_id {
            return Err(tonic::Status::data_loss("sha256 mismatch"));
        }
        Ok(tonic::Response::new(proto::CompleteUploadResponse {
            sha256,
            size_bytes: blob.len() as u64,
        }))
    }

    async fn upload_status(
        &self,
        request: tonic::Request<proto::UploadStatusRequest>,
    ) -> Result<tonic::Response<proto::UploadStatusResponse>, tonic::Status> {
        self.check_token(&request)?;
        let upload_id = request.into_inner().upload_id;
        let state = self.state();
        let blob = state.blobs.get(&upload_id).cloned().unwrap_or_default();
        Ok(tonic::Response::new(proto::UploadStatusResponse {
            committed_offset: blob.len() as u64,
            complete: hex::encode(Sha256::digest(&blob)) == upload_id,
        }))
    }
}

fn household(id: &str, head: &str) -> proto::Household {
    proto::Household {
        household_id: id.into(),
        head_name: head.into(),
        village_name: "石板村".into(),
        attribute: proto::HouseholdAttribute::General as i32,
        main_cause: proto::PovertyCause::Illness as i32,
        members: vec![proto::Member {
            member_id: format!("{id}-m1"),
            name: head.into(),
            relation: proto::Relation::Head as i32,
            sex: proto::Sex::Male as i32,
            health: proto::Health::Healthy as i32,
            labour_capacity: proto::LabourCapacity::Ordinary as i32,
            schooling: proto::Schooling::NotInSchool as i32,
            disability: proto::Disability::None as i32,
            ..proto::Member::default()
        }],
        location: Some(proto::GeoPoint {
            lat: 26.58,
            lon: 106.71,
            crs: proto::Crs::Wgs84 as i32,
        }),
        ..proto::Household::default()
    }
}

async fn start_fake() -> (Fake, String) {
    let fake = Fake::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = tonic::transport::Server::builder()
        .add_service(proto::auth_server::AuthServer::new(fake.clone()))
        .add_service(proto::sync_server::SyncServer::new(fake.clone()))
        .add_service(proto::media_server::MediaServer::new(fake.clone()));
    tokio::spawn(router.serve_with_incoming(TcpListenerStream::new(listener)));
    (fake, url)
}

fn visit_with_photo(household_id: &str, photo: PathBuf) -> NewVisit {
    let now = OffsetDateTime::now_utc();
    NewVisit {
        observed_situation: "户主在家, 家中两头猪长势良好".into(),
        gps: Some(GpsFix {
            lat: 26.58,
            lon: 106.71,
            crs: Crs::Wgs84,
            accuracy_m: 6.0,
            provider: Some(LocationProvider::Gps),
            is_mock: false,
            fix_time: Some(now),
        }),
        photo_paths: vec![photo],
        ..NewVisit::new(
            household_id,
            VisitMode::InPerson,
            // Check-in "now" keeps the visit in the current month even when the test runs
            // just after midnight on the 1st.
            now,
            now,
        )
    }
}

#[tokio::test]
async fn push_retries_the_same_batch_uploads_resume_and_pull_applies_at_the_checkpoint() {
    let (fake, url) = start_fake().await;
    let dir = tempfile::TempDir::new().unwrap();
    let client = Client::open(&dir.path().join("phone"), &url).unwrap();

    assert!(matches!(
        client.login("cadre01", "wrong").await,
        Err(ClientError::NotLoggedIn(_))
    ));
    let login = client.login("cadre01", "demo123").await.unwrap();
    assert_eq!(login.display_name, "张干部");
    // The first sync downloads the households; the phone records only for those.
    client.sync().await.unwrap();
    assert!(fake.state().pushes.is_empty(), "nothing to push yet");

    // A 600 KiB photo: three chunks of at most 256 KiB.
    let photo_bytes: Vec<u8> = [0xFF, 0xD8, 0xFF, 0xE0]
        .into_iter()
        .chain((0..600 * 1024).map(|index| (index % 251) as u8))
        .collect();
    let photo = dir.path().join("visit.jpg");
    std::fs::write(&photo, &photo_bytes).unwrap();
    let sha256 = hex::encode(Sha256::digest(&photo_bytes));
    let visit_id = client
        .record_visit(visit_with_photo("hh-1", photo))
        .unwrap();

    // 1. The server applies the batch but the response is lost.
    fake.state().lose_next_push_response = true;
    assert!(client.sync().await.unwrap_err().is_unavailable());
    assert_eq!(client.status().unwrap().unsent_mutations, 2);

    // 2. The retry re-sends the same batch id with the same content, gets DUPLICATE, and
    //    the upload breaks after its first chunk.
    fake.state().fail_chunk_at_offset = Some(256 * 1024);
    assert!(client.sync().await.unwrap_err().is_unavailable());
    {
        let state = fake.state();
        assert_eq!(state.pushes.len(), 2);
        assert_eq!(
            state.pushes[0], state.pushes[1],
            "same batch id and content"
        );
        assert_eq!(state.chunk_offsets, vec![0]);
    }
    let status = client.status().unwrap();
    assert_eq!(status.unsent_mutations, 0);
    assert_eq!(status.pending_uploads, 1);
    assert_eq!(
        client.visit(&visit_id).unwrap().unwrap().state,
        VisitState::Submitted
    );

    // 3. The next sync resumes the upload at the committed offset and pulls the scope.
    let report = client.sync().await.unwrap();
    assert_eq!(report.uploads_completed, 1);
    assert_eq!(report.bytes_uploaded, photo_bytes.len() as u64 - 256 * 1024);
    assert_eq!(report.households_pulled, 2);
    assert_eq!(
        fake.state().chunk_offsets,
        vec![0, 256 * 1024, 512 * 1024],
        "no byte is sent twice"
    );
    assert_eq!(fake.state().blobs[&sha256], photo_bytes);
    let status = client.status().unwrap();
    assert_eq!((status.unsent_mutations, status.pending_uploads), (0, 0));
    assert!(status.last_sync_at.is_some());
    assert_eq!(status.last_error, None);
    assert_eq!(status.last_receipt.as_deref(), Some("receipt-2"));
    let households = client.households().unwrap();
    assert_eq!(households.len(), 2);
    assert!(households[0].visited_in_person_this_month);
    assert_eq!(households[0].member_count, 1);

    // 4. The supervisor returns the visit; it shows up as a task and is fixed.
    fake.state().returned.insert(visit_id.clone(), 1);
    client.sync().await.unwrap();
    let tasks = client.tasks().unwrap();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].head_name.as_deref(), Some("张三"));
    assert_eq!(tasks[0].reasons[0].label_zh, "照片不清晰");
    assert_eq!(
        client
            .resubmit_visit(&visit_id, |visit| {
                visit.observed_situation = "重新拍照, 户主在家, 生猪两头".into();
            })
            .unwrap(),
        2
    );
    client.sync().await.unwrap();
    assert_eq!(fake.state().visits[&visit_id].1, 2);
    let summary = client.visit(&visit_id).unwrap().unwrap();
    assert_eq!(
        (summary.revision, summary.state),
        (2, VisitState::Submitted)
    );
    assert!(client.tasks().unwrap().is_empty());

    // 5. A RESET drops the replica, keeps the outbox, and pulls again from empty.
    let foreign_photo = dir.path().join("foreign.jpg");
    std::fs::write(&foreign_photo, [0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3]).unwrap();
    // hh-foreign is paired with this cadre for one sync, then reassigned away before the
    // visit recorded meanwhile goes out.
    fake.state().foreign_in_scope = true;
    client.sync().await.unwrap();
    let foreign = client
        .record_visit(visit_with_photo("hh-foreign", foreign_photo))
        .unwrap();
    fake.state().foreign_in_scope = false;
    fake.state().reset_next_pull = true;
    let report = client.sync().await.unwrap();
    assert_eq!(report.resets, 1);
    assert_eq!(report.households_pulled, 2);
    let codes: Vec<&str> = report
        .rejected
        .iter()
        .map(|rejected| rejected.code.as_str())
        .collect();
    assert_eq!(codes, vec!["household_out_of_scope", "unknown_visit"]);
    let rejected = client.visit(&foreign).unwrap().unwrap();
    assert_eq!(rejected.state, VisitState::Rejected);
    // A refused photo's bytes have nowhere to go and are not counted as pending.
    assert_eq!(client.status().unwrap().pending_uploads, 0);

    let expected = format!("Bearer token-{}", client.device_id());
    assert!(
        fake.state()
            .authorization_seen
            .iter()
            .all(|value| *value == expected)
    );
}
