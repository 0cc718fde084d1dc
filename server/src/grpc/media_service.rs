//! `fieldsync.v1.Media`: resumable, content-addressed photo upload. Every acknowledged
//! offset is durable (the chunk was fsynced before the offset was stored), so a phone that
//! lost its connection asks where to continue and re-sends at most one chunk.

use std::sync::Arc;

use fieldsync_proto::v1;
use tonic::{Request, Response, Status};

use super::{check_client, principal_of};
use crate::AppState;
use crate::error::ServiceError;
use crate::media::uploads::{self, Started, UploadError};
use crate::store::{Principal, UploadRecord};

/// Metadata key carrying the committed offset on a wrong-offset error, so a client can
/// resume without another round trip.
pub const COMMITTED_OFFSET_METADATA: &str = "fieldsync-committed-offset";

#[derive(Debug)]
pub struct MediaService {
    state: AppState,
}

impl MediaService {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }

    /// The process-wide lock of one upload, shared with the tus endpoint, so two chunks of
    /// the same upload never interleave on disk whichever protocol sends them.
    fn lock_for(&self, upload_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        crate::media::uploads::lock(upload_id)
    }

    /// The caller's upload; someone else's upload is "not found" so ids reveal nothing.
    async fn own_upload(
        &self,
        principal: &Principal,
        upload_id: &str,
    ) -> Result<UploadRecord, Status> {
        match self
            .state
            .store
            .get_upload(upload_id)
            .await
            .map_err(ServiceError::from)?
        {
            Some(upload) if upload.user_id == principal.user_id => Ok(upload),
            _ => Err(Status::not_found(format!(
                "upload_id: {upload_id} not found"
            ))),
        }
    }
}

fn wrong_offset(committed_offset: u64, sent_offset: u64) -> Status {
    let mut status = Status::failed_precondition(format!(
        "offset: expected {committed_offset}, got {sent_offset}; resume from the committed offset"
    ));
    if let Ok(value) = committed_offset.to_string().parse() {
        status
            .metadata_mut()
            .insert(COMMITTED_OFFSET_METADATA, value);
    }
    status
}

#[tonic::async_trait]
impl v1::media_server::Media for MediaService {
    async fn start_upload(
        &self,
        request: Request<v1::StartUploadRequest>,
    ) -> Result<Response<v1::StartUploadResponse>, Status> {
        let principal = principal_of(&self.state, &request).await?;
        let request = request.into_inner();
        check_client(&self.state, request.client.as_ref())?;
        let started = uploads::start(
            &self.state,
            &principal.user_id,
            &request.sha256,
            request.size_bytes,
            &request.mime_type,
        )
        .await
        .map_err(|error| Status::from(ServiceError::from(error)))?;
        let upload = match started {
            Started::BlobExists => {
                return Ok(Response::new(v1::StartUploadResponse {
                    upload_id: String::new(),
                    committed_offset: request.size_bytes,
                    complete: true,
                }));
            }
            Started::Upload(upload) => upload,
        };
        Ok(Response::new(v1::StartUploadResponse {
            upload_id: upload.upload_id,
            committed_offset: upload.committed_offset,
            complete: upload.complete,
        }))
    }

    async fn put_chunk(
        &self,
        request: Request<v1::PutChunkRequest>,
    ) -> Result<Response<v1::PutChunkResponse>, Status> {
        let principal = principal_of(&self.state, &request).await?;
        let request = request.into_inner();
        check_client(&self.state, request.client.as_ref())?;
        let lock = self.lock_for(&request.upload_id);
        let _guard = lock.lock().await;
        let upload = self.own_upload(&principal, &request.upload_id).await?;
        if upload.complete {
            return Err(Status::failed_precondition(
                "upload_id: upload is already complete",
            ));
        }
        if request.offset != upload.committed_offset {
            return Err(wrong_offset(upload.committed_offset, request.offset));
        }
        if request.data.is_empty() {
            return Err(Status::invalid_argument("data: must not be empty"));
        }
        let end = request.offset.saturating_add(request.data.len() as u64);
        if end > upload.size_bytes {
            return Err(Status::invalid_argument(format!(
                "data: chunk ends at {end}, past the declared size {}",
                upload.size_bytes
            )));
        }
        let actual_crc = crc32c::crc32c(&request.data);
        if actual_crc != request.crc32c {
            return Err(Status::data_loss(format!(
                "crc32c: chunk arrived corrupted (expected {:08x}, got {actual_crc:08x}); send it again",
                request.crc32c
            )));
        }
        let committed = self
            .state
            .blobs
            .append_chunk(&request.upload_id, request.offset, request.data)
            .await
            .map_err(|error| Status::from(ServiceError::from(error)))?;
        self.state
            .store
            .set_upload_offset(&request.upload_id, committed, self.state.clock.now())
            .await
            .map_err(ServiceError::from)?;
        Ok(Response::new(v1::PutChunkResponse {
            committed_offset: committed,
        }))
    }

    async fn complete_upload(
        &self,
        request: Request<v1::CompleteUploadRequest>,
    ) -> Result<Response<v1::CompleteUploadResponse>, Status> {
        let principal = principal_of(&self.state, &request).await?;
        let request = request.into_inner();
        check_client(&self.state, request.client.as_ref())?;
        let lock = self.lock_for(&request.upload_id);
        let _guard = lock.lock().await;
        let upload = self.own_upload(&principal, &request.upload_id).await?;
        // Verifies size and SHA-256, refuses what is not a safe photo before any blob
        // exists, and stores metadata and derived copies before the blob becomes visible.
        uploads::complete(&self.state, &upload)
            .await
            .map_err(|error| match error {
                // The message names the photo's problem code; no field prefix.
                UploadError::Rejected(_) => Status::invalid_argument(error.to_string()),
                other => Status::from(ServiceError::from(other)),
            })?;
        Ok(Response::new(v1::CompleteUploadResponse {
            sha256: upload.sha256,
            size_bytes: upload.size_bytes,
        }))
    }

    async fn upload_status(
        &self,
        request: Request<v1::UploadStatusRequest>,
    ) -> Result<Response<v1::UploadStatusResponse>, Status> {
        let principal = principal_of(&self.state, &request).await?;
        check_client(&self.state, request.get_ref().client.as_ref())?;
        let upload = self
            .own_upload(&principal, &request.get_ref().upload_id)
            .await?;
        Ok(Response::new(v1::UploadStatusResponse {
            committed_offset: upload.committed_offset,
            complete: upload.complete,
        }))
    }
}
