//! `fieldsync.v1.Sync`: unary Push of outbox batches and server-streaming Pull of the
//! caller's scope (pages, then a checkpoint).

use std::pin::Pin;

use fieldsync_model::sync::{Mutation, MutationOutcome};
use fieldsync_proto::convert::{instant_to_wire, optional_instant};
use fieldsync_proto::v1;
use prost::Message;
use sha2::{Digest, Sha256};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::{check_client, invalid_wire, principal_of};
use crate::AppState;
use crate::store::{Heartbeat, Principal, ScopeCursor};
use crate::sync::pull::PullStart;
use crate::sync::{PushInput, fingerprint};

/// Change-log entries read per page. Small pages keep memory flat on the server and let a
/// 2G phone make progress; the phone applies nothing until the checkpoint anyway.
const PULL_PAGE_ENTRIES: u32 = 200;

#[derive(Debug)]
pub struct SyncService {
    state: AppState,
}

impl SyncService {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

/// The heartbeat riding on a push or pull, with the app version from the client info.
fn heartbeat_from_wire(
    wire: Option<&v1::DeviceHeartbeat>,
    client: Option<&v1::ClientInfo>,
) -> Result<Option<Heartbeat>, Status> {
    let Some(wire) = wire else {
        return Ok(None);
    };
    Ok(Some(Heartbeat {
        unsent_mutations: wire.unsent_mutations,
        pending_uploads: wire.pending_uploads,
        oldest_unsent_at: optional_instant(&wire.oldest_unsent_at, "oldest_unsent_at")
            .map_err(|error| invalid_wire(error, "heartbeat"))?,
        device_time: optional_instant(&wire.device_time, "device_time")
            .map_err(|error| invalid_wire(error, "heartbeat"))?,
        last_error: wire
            .last_error
            .chars()
            .take(MAX_HEARTBEAT_ERROR_CHARS)
            .collect(),
        app_version: client
            .map(|client| client.app_version.chars().take(64).collect())
            .unwrap_or_default(),
    }))
}

/// Longest saved error text kept from a heartbeat; enough to recognise the error.
const MAX_HEARTBEAT_ERROR_CHARS: usize = 500;

fn outcome_to_wire(seq: u64, outcome: &MutationOutcome) -> v1::MutationResult {
    let (outcome, reject_code, reject_message) = match outcome {
        MutationOutcome::Applied => (v1::MutationOutcome::Applied, "", ""),
        MutationOutcome::Duplicate => (v1::MutationOutcome::Duplicate, "", ""),
        MutationOutcome::ConflictRecorded => (v1::MutationOutcome::ConflictRecorded, "", ""),
        MutationOutcome::Rejected { code, message } => (
            v1::MutationOutcome::Rejected,
            code.as_str(),
            message.as_str(),
        ),
    };
    v1::MutationResult {
        seq,
        outcome: outcome as i32,
        reject_code: reject_code.to_owned(),
        reject_message: reject_message.to_owned(),
    }
}

#[tonic::async_trait]
impl v1::sync_server::Sync for SyncService {
    async fn push(
        &self,
        request: Request<v1::PushRequest>,
    ) -> Result<Response<v1::PushResponse>, Status> {
        let principal = principal_of(&self.state, &request).await?;
        let request = request.into_inner();
        check_client(&self.state, request.client.as_ref())?;
        let heartbeat = heartbeat_from_wire(request.heartbeat.as_ref(), request.client.as_ref())?;
        let mutations = request
            .mutations
            .iter()
            .enumerate()
            .map(|(index, mutation)| {
                Mutation::try_from(mutation)
                    .map_err(|error| invalid_wire(error, &format!("mutations[{index}]")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let input = PushInput {
            device_id: request.device_id.clone(),
            batch_id: request.batch_id.clone(),
            first_seq: request.first_seq,
            mutations,
            // The heartbeat (device time, queue length) and the client info (an app updated
            // between a send and its retry) describe the sending, not the batch; only the
            // batch itself identifies the content a batch_id promises.
            fingerprint: fingerprint(
                &v1::PushRequest {
                    heartbeat: None,
                    client: None,
                    ..request.clone()
                }
                .encode_to_vec(),
            ),
        };
        let result = crate::sync::push(&self.state, &principal, input).await;
        if let Some(heartbeat) = heartbeat {
            crate::sync::record_heartbeat(&self.state, &principal, heartbeat).await;
        }
        let result = result?;
        let now = self.state.clock.now();
        // The receipt names what the server holds durably for this device; the phone keeps it
        // as proof before deleting local copies.
        let receipt = format!(
            "{}:{}:{}",
            request.device_id, result.last_processed_seq, request.batch_id
        );
        Ok(Response::new(v1::PushResponse {
            server_hlc: server_hlc(&self.state),
            results: result
                .outcomes
                .iter()
                .map(|(seq, outcome)| outcome_to_wire(*seq, outcome))
                .collect(),
            last_processed_seq: result.last_processed_seq,
            server_time: Some(instant_to_wire(now)),
            receipt,
        }))
    }

    type PullStream =
        Pin<Box<dyn Stream<Item = Result<v1::PullResponse, Status>> + Send + 'static>>;

    async fn pull(
        &self,
        request: Request<v1::PullRequest>,
    ) -> Result<Response<Self::PullStream>, Status> {
        let principal = principal_of(&self.state, &request).await?;
        let request = request.into_inner();
        check_client(&self.state, request.client.as_ref())?;
        let heartbeat = heartbeat_from_wire(request.heartbeat.as_ref(), request.client.as_ref())?;
        let opened = crate::sync::pull::open(&self.state, &principal, &request.cursor, heartbeat)
            .await
            .map_err(Status::from)?;
        let cursor = match opened {
            PullStart::Serve(cursor) => cursor,
            PullStart::Reset(reason) => return Ok(reset_stream(reason)),
        };
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        let state = self.state.clone();
        tokio::spawn(async move {
            let result = stream_scope(&state, &principal, cursor, &sender).await;
            if let Err(status) = result {
                // The receiver may be gone (phone disconnected); nothing else to do then.
                let _ = sender.send(Err(status)).await;
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(receiver),
        )))
    }
}

/// The server's HLC, ticked now, for phones to advance past: it is later than every write
/// the server has stored, so a phone's next edit outranks what it just pulled.
fn server_hlc(state: &AppState) -> u64 {
    state.tick_hlc().as_u64()
}

/// A pull answered with a single RESET frame.
fn reset_stream(reason: &str) -> Response<<SyncService as v1::sync_server::Sync>::PullStream> {
    let reset = v1::PullResponse {
        frame: Some(v1::pull_response::Frame::Reset(v1::Reset {
            reason: reason.to_owned(),
        })),
    };
    Response::new(Box::pin(tokio_stream::iter([Ok(reset)])))
}

async fn stream_scope(
    state: &AppState,
    principal: &Principal,
    mut cursor: ScopeCursor,
    sender: &tokio::sync::mpsc::Sender<Result<v1::PullResponse, Status>>,
) -> Result<(), Status> {
    let mut checksum = Sha256::new();
    loop {
        let changes = crate::sync::pull::page(state, principal, &cursor, PULL_PAGE_ENTRIES)
            .await
            .map_err(Status::from)?;
        cursor = changes.next_cursor;
        if !changes.households.is_empty()
            || !changes.visit_statuses.is_empty()
            || !changes.removed_household_ids.is_empty()
        {
            let page = v1::PullPage {
                households: changes.households.iter().map(Into::into).collect(),
                visit_statuses: changes.visit_statuses.iter().map(Into::into).collect(),
                removed_household_ids: changes.removed_household_ids,
                income_registrations: changes
                    .income_registrations
                    .iter()
                    .map(Into::into)
                    .collect(),
            };
            checksum.update(page.encode_to_vec());
            let frame = v1::PullResponse {
                frame: Some(v1::pull_response::Frame::Page(page)),
            };
            if sender.send(Ok(frame)).await.is_err() {
                return Ok(());
            }
        }
        if !changes.has_more {
            break;
        }
    }
    // Every checkpoint carries the caller's complete list, so a settled conflict leaves the
    // phone's list at its next pull even when nothing else changed.
    let pending = crate::sync::pull::pending_conflicts(state, principal)
        .await
        .map_err(Status::from)?;
    let checkpoint = v1::Checkpoint {
        server_hlc: server_hlc(state),
        cursor: cursor.encode(),
        checksum: hex::encode(checksum.finalize()),
        server_time: Some(instant_to_wire(state.clock.now())),
        pending_conflicts: pending.iter().map(Into::into).collect(),
    };
    let _ = sender
        .send(Ok(v1::PullResponse {
            frame: Some(v1::pull_response::Frame::Checkpoint(checkpoint)),
        }))
        .await;
    Ok(())
}
