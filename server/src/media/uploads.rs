//! Upload use cases shared by the edges that carry photo bytes: the gRPC `Media` service and
//! the tus 1.0 endpoint (`http::tus`). Starting is idempotent on the SHA-256, completion
//! verifies size and full SHA-256 before a blob exists ([`crate::media::pipeline`]), and
//! abandoned uploads expire with their staged bytes. The edges only translate requests, and
//! [`UploadError`] into their own statuses. Nothing here knows whether the bytes are on the
//! local disk or in an object store ([`crate::media::blobs::BlobStore`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use fieldsync_model::visit::{MAX_PHOTO_BYTES, is_sha256_hex};

use crate::AppState;
use crate::error::ServiceError;
use crate::media::blobs::BlobError;
use crate::media::pipeline;
use crate::store::{StoreError, UploadRecord};

/// Types the server accepts as photos. The declared type is checked at start; the bytes are
/// sniffed when the evidence pipeline decodes them.
pub const ACCEPTED_MIME_TYPES: &[&str] = &["image/jpeg", "image/png", "image/webp"];

/// Why an upload step was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// A declared value is malformed or out of range.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// Completion was asked for before every byte arrived.
    #[error("upload_id: only {committed} of {size} bytes received")]
    Incomplete { committed: u64, size: u64 },
    /// The staged bytes do not have the declared size or SHA-256. The upload was rewound to
    /// offset 0: its bytes can never verify, so the phone sends them again.
    #[error("upload rewound to offset 0: {0}")]
    Mismatch(BlobError),
    /// The bytes are not an acceptable photo (non-image, polyglot, bomb, HEIC). The upload
    /// was rewound to offset 0 and the bytes discarded.
    #[error("photo rejected ({code}): {message}", code = .0.code(), message = .0)]
    Rejected(crate::media::photo::PhotoRejected),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Blob(#[from] BlobError),
}

impl From<UploadError> for ServiceError {
    fn from(error: UploadError) -> Self {
        match error {
            UploadError::Invalid { field, message } => Self::invalid(field, message),
            UploadError::Incomplete { .. } | UploadError::Mismatch(_) => {
                Self::FailedPrecondition(error.to_string())
            }
            UploadError::Rejected(_) => Self::invalid("photo", error.to_string()),
            UploadError::Store(store) => store.into(),
            UploadError::Blob(blob) => blob.into(),
        }
    }
}

/// What a start found.
#[derive(Debug, Clone, PartialEq)]
pub enum Started {
    /// The blob is already stored (by anyone): nothing to send.
    BlobExists,
    /// The caller's upload to continue from its committed offset (new or resumed).
    Upload(UploadRecord),
}

/// Check what a phone declares before anything is stored.
pub fn validate_start(sha256: &str, size_bytes: u64, mime_type: &str) -> Result<(), UploadError> {
    if !is_sha256_hex(sha256) {
        return Err(UploadError::Invalid {
            field: "sha256",
            message: "must be 64 lower-case hex characters".into(),
        });
    }
    if size_bytes == 0 || size_bytes > MAX_PHOTO_BYTES {
        return Err(UploadError::Invalid {
            field: "size_bytes",
            message: format!("must be 1..={MAX_PHOTO_BYTES}"),
        });
    }
    if !ACCEPTED_MIME_TYPES.contains(&mime_type) {
        return Err(UploadError::Invalid {
            field: "mime_type",
            message: format!(
                "{mime_type:?} is not accepted; send JPEG, PNG or WebP (iPhone HEIC photos must be converted to JPEG)"
            ),
        });
    }
    Ok(())
}

/// Start or resume `user_id`'s upload of a photo, idempotent on the SHA-256: a stored blob
/// needs nothing, the caller's own upload of the same bytes (same size) is resumed, else a
/// new upload begins at offset 0.
pub async fn start(
    state: &AppState,
    user_id: &str,
    sha256: &str,
    size_bytes: u64,
    mime_type: &str,
) -> Result<Started, UploadError> {
    validate_start(sha256, size_bytes, mime_type)?;
    let store = &state.store;
    if store.blob_exists(sha256).await? {
        return Ok(Started::BlobExists);
    }
    let existing = store
        .find_upload_by_sha256(sha256, user_id)
        .await?
        .filter(|upload| upload.size_bytes == size_bytes);
    let upload = match existing {
        Some(upload) => upload,
        None => {
            store
                .start_upload(UploadRecord {
                    upload_id: uuid::Uuid::now_v7().to_string(),
                    sha256: sha256.to_owned(),
                    size_bytes,
                    mime_type: mime_type.to_owned(),
                    committed_offset: 0,
                    complete: false,
                    user_id: user_id.to_owned(),
                    last_activity_at: state.clock.now(),
                })
                .await?
        }
    };
    Ok(Started::Upload(upload))
}

/// Verify and commit a fully received upload, for the gRPC and the tus path alike (the
/// caller holds the upload's lock): size, SHA-256 and photo safety (type, limits,
/// polyglots) are checked before the blob becomes visible, then the metadata is stored,
/// then the blob row that makes the photo visible and its visit approvable, then evidence
/// flags are refreshed. Idempotent: a complete upload is left as it is, and a blob that
/// already exists is reused.
pub async fn complete(state: &AppState, upload: &UploadRecord) -> Result<(), UploadError> {
    if upload.complete {
        return Ok(());
    }
    if upload.committed_offset != upload.size_bytes {
        return Err(UploadError::Incomplete {
            committed: upload.committed_offset,
            size: upload.size_bytes,
        });
    }
    let vetted = pipeline::vet_and_store(
        &state.blobs,
        &upload.upload_id,
        &upload.sha256,
        upload.size_bytes,
    )
    .await;
    let prepared = match vetted {
        Ok(Ok(prepared)) => prepared,
        Ok(Err(rejected)) => {
            tracing::info!(
                upload_id = %upload.upload_id,
                code = rejected.code(),
                "photo refused at upload completion"
            );
            state
                .store
                .set_upload_offset(&upload.upload_id, 0, state.clock.now())
                .await?;
            return Err(UploadError::Rejected(rejected));
        }
        Err(mismatch @ (BlobError::SizeMismatch { .. } | BlobError::HashMismatch { .. })) => {
            // The staged bytes can never verify: start over rather than keep them.
            state
                .store
                .set_upload_offset(&upload.upload_id, 0, state.clock.now())
                .await?;
            return Err(UploadError::Mismatch(mismatch));
        }
        Err(other) => return Err(other.into()),
    };
    state
        .store
        .save_photo_meta(&upload.sha256, pipeline::photo_meta(&prepared))
        .await?;
    // The blob row makes the photo visible and its visit approvable: last.
    state
        .store
        .complete_upload(&upload.upload_id, state.clock.now())
        .await?;
    // Flags never fail the upload: a failure is logged, and the flag work (its own one
    // transaction for every visit of the file) is discarded as a whole.
    if let Err(error) = state
        .store
        .refresh_flags_of_blob(&upload.sha256, state.settings.evidence.clone())
        .await
    {
        tracing::warn!(%error, sha256 = %upload.sha256, "could not compute evidence flags");
    }
    Ok(())
}

/// What one expiry run removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExpiryReport {
    /// Incomplete uploads older than the expiry, deleted with their staged bytes.
    pub expired_uploads: usize,
    /// Staging files without a live upload (left by a crash between the two steps, or by a
    /// write that raced the expiry) that were swept.
    pub swept_files: usize,
}

/// Garbage-collect abandoned uploads: delete incomplete uploads older than
/// `settings.upload_expiry_hours` and their staging files, then sweep staging files whose
/// upload is gone or complete. Complete uploads and blobs are never collected (one blob
/// serves many photo rows). A phone asking about an expired upload gets "not found" and
/// starts over.
pub async fn expire_abandoned(state: &AppState) -> Result<ExpiryReport, UploadError> {
    let cutoff =
        state.clock.now() - time::Duration::hours(i64::from(state.settings.upload_expiry_hours));
    // Rows first: once a row is gone no request can write to its file again except one
    // already past its lookup, whose file the sweep below (or the next run) removes.
    let expired = state.store.expire_uploads(cutoff).await?;
    let expired_uploads = expired.len();
    for upload_id in &expired {
        state.blobs.remove_staging(upload_id).await?;
    }
    let staged = state.blobs.staged_upload_ids().await?;
    let mut swept_files = 0;
    for upload_id in staged {
        // A staging file is created only after its row, so a file without a live,
        // incomplete row is garbage.
        let live = state
            .store
            .get_upload(&upload_id)
            .await?
            .is_some_and(|upload| !upload.complete);
        if !live {
            state.blobs.remove_staging(&upload_id).await?;
            swept_files += 1;
        }
    }
    Ok(ExpiryReport {
        expired_uploads,
        swept_files,
    })
}

/// The lock of one upload, so that two writes (or a write and a completion) for the same
/// upload never interleave on disk, whichever edge (gRPC or tus) they arrive on. The
/// registry is process-wide because both edges must see the same lock; entries nobody
/// holds are forgotten, so it does not grow with every upload ever made.
pub fn lock(upload_id: &str) -> Arc<tokio::sync::Mutex<()>> {
    type Locks = Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>;
    static LOCKS: OnceLock<Locks> = OnceLock::new();
    let mut locks = LOCKS
        .get_or_init(Locks::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    locks.retain(|_, lock| Arc::strong_count(lock) > 1);
    locks.entry(upload_id.to_owned()).or_default().clone()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sha2::{Digest, Sha256};

    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::settings::Settings;

    const USER: &str = "user-1";

    /// Completion checks that the bytes are a real photo, so the tests upload real JPEGs.
    fn real_jpeg(name: &str) -> Vec<u8> {
        std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../testdata/photos")
                .join(name),
        )
        .expect("test photo")
    }

    fn state_at(folder: &std::path::Path) -> (AppState, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(time::OffsetDateTime::now_utc()));
        let settings = Settings {
            data_dir: folder.to_owned(),
            ..Settings::default()
        };
        let state = AppState::open_with_clock(settings, clock.clone()).expect("open state");
        (state, clock)
    }

    async fn staged_upload(state: &AppState, bytes: &[u8], sent: usize) -> UploadRecord {
        let sha256 = hex::encode(Sha256::digest(bytes));
        let Started::Upload(upload) = start(state, USER, &sha256, bytes.len() as u64, "image/jpeg")
            .await
            .expect("start")
        else {
            panic!("no blob yet");
        };
        let committed = state
            .blobs
            .append_chunk(&upload.upload_id, 0, bytes[..sent].to_vec())
            .await
            .expect("append");
        state
            .store
            .set_upload_offset(&upload.upload_id, committed, state.clock.now())
            .await
            .expect("offset");
        state
            .store
            .get_upload(&upload.upload_id)
            .await
            .expect("get")
            .expect("upload")
    }

    #[tokio::test]
    async fn expiry_removes_abandoned_staging_files_and_keeps_blobs() {
        let folder = tempfile::tempdir().expect("temp dir");
        let (state, clock) = state_at(folder.path());
        let abandoned = staged_upload(&state, b"half of a photo that never arrives", 10).await;
        let finished_bytes = real_jpeg("Canon_40D.jpg");
        let finished = staged_upload(&state, &finished_bytes, finished_bytes.len()).await;
        complete(&state, &finished).await.expect("complete");
        let uploads = folder.path().join("blobs").join("uploads");
        assert!(uploads.join(&abandoned.upload_id).is_file());

        let report = expire_abandoned(&state).await.expect("expire");
        assert_eq!(report, ExpiryReport::default(), "nothing is old enough yet");
        assert!(uploads.join(&abandoned.upload_id).is_file());

        // An orphaned staging file (its row vanished, e.g. a crash between the two steps).
        let orphan = uuid::Uuid::now_v7().to_string();
        state
            .blobs
            .append_chunk(&orphan, 0, b"orphan".to_vec())
            .await
            .expect("orphan");

        clock.set(clock.now() + time::Duration::hours(73));
        let report = expire_abandoned(&state).await.expect("expire");
        assert_eq!(
            report,
            ExpiryReport {
                expired_uploads: 1,
                swept_files: 1
            }
        );
        assert!(!uploads.join(&abandoned.upload_id).exists());
        assert!(!uploads.join(&orphan).exists());
        assert_eq!(
            std::fs::read_dir(&uploads).expect("list").count(),
            0,
            "no staging file is left"
        );
        assert_eq!(
            state
                .store
                .get_upload(&abandoned.upload_id)
                .await
                .expect("get"),
            None
        );
        assert!(
            state
                .store
                .get_upload(&finished.upload_id)
                .await
                .expect("get")
                .expect("complete upload kept")
                .complete
        );
        assert_eq!(
            state.blobs.read(&finished.sha256).await.expect("blob kept"),
            finished_bytes
        );
    }

    #[tokio::test]
    async fn completion_reuses_an_existing_blob_and_rewinds_on_mismatch() {
        let folder = tempfile::tempdir().expect("temp dir");
        let (state, _clock) = state_at(folder.path());
        let bytes = real_jpeg("gps_DSCN0012.jpg");
        let first = staged_upload(&state, &bytes, bytes.len()).await;
        // A second user's upload of the same photo, staged before the first completes.
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let second = state
            .store
            .start_upload(UploadRecord {
                upload_id: uuid::Uuid::now_v7().to_string(),
                user_id: "user-2".into(),
                ..first.clone()
            })
            .await
            .expect("second");
        state
            .blobs
            .append_chunk(&second.upload_id, 0, bytes.clone())
            .await
            .expect("append");
        complete(&state, &first).await.expect("first");
        let second = UploadRecord {
            committed_offset: bytes.len() as u64,
            ..second
        };
        complete(&state, &second).await.expect("second reuses");
        assert_eq!(
            state.blobs.staged_upload_ids().await.expect("list"),
            Vec::<String>::new()
        );
        assert!(state.store.blob_exists(&sha256).await.expect("blob"));

        // Bytes that are not a photo are refused and the upload starts over.
        let markup = b"<svg xmlns='http://www.w3.org/2000/svg'/>".to_vec();
        let svg = staged_upload(&state, &markup, markup.len()).await;
        assert!(matches!(
            complete(&state, &svg).await,
            Err(UploadError::Rejected(_))
        ));
        assert!(
            !state.blobs.contains(&svg.sha256).await.expect("contains"),
            "no blob for a refused file"
        );

        // Bytes that do not hash to the declared SHA-256 rewind the upload.
        let declared = b"what the phone says it sends".to_vec();
        let upload = staged_upload(&state, &declared, declared.len()).await;
        state
            .blobs
            .append_chunk(
                &upload.upload_id,
                0,
                b"what the network delivered!!".to_vec(),
            )
            .await
            .expect("overwrite");
        assert!(matches!(
            complete(&state, &upload).await,
            Err(UploadError::Mismatch(BlobError::HashMismatch { .. }))
        ));
        let rewound = state
            .store
            .get_upload(&upload.upload_id)
            .await
            .expect("get")
            .expect("upload");
        assert_eq!(rewound.committed_offset, 0);
        assert!(!rewound.complete);
        assert!(matches!(
            complete(&state, &rewound).await,
            Err(UploadError::Incomplete { committed: 0, .. })
        ));
    }
}
