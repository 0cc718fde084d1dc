//! Where photo bytes live: the [`BlobStore`] every upload edge, the completion pipeline and
//! the console use, over one of two backends chosen by `settings.blobs`:
//!
//! - the local folder ([`LocalBlobStore`], the default): `sha256/<aa>/<sha256>`,
//!   `uploads/<upload_id>`, `derived/<aa>/<sha256>.<kind>.jpg` under `<data_dir>/blobs`;
//! - an S3-compatible object store ([`S3BlobStore`]) with the same names as object keys,
//!   except that an upload in progress is one object per acknowledged chunk under
//!   `staging/<upload_id>/`, so every server replica sees it.
//!
//! Either way a blob is named by the SHA-256 of its bytes and exists only after that hash
//! was verified, and an acknowledged chunk is durable before its offset is stored (fsynced
//! on disk; an S3 PUT has answered). The committed offset itself is the store's `uploads`
//! row, never the blob store's, so a phone resumes wherever that row is read.

use std::path::Path;

pub use super::local_blobs::LocalBlobStore;
pub use super::s3_blobs::S3BlobStore;
use crate::settings::{BlobLocation, BlobSettings};

/// Errors of the blob store.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob storage I/O failed: {0}")]
    Io(#[from] std::io::Error),
    /// The object store could not be reached or refused the request (network, credentials,
    /// a full or missing bucket): the server's problem, retryable once it is fixed.
    #[error("object store request failed: {0}")]
    ObjectStore(#[from] object_store::Error),
    /// `settings.blobs` cannot be used (found at start-up).
    #[error("blob settings: {0}")]
    Settings(String),
    #[error("upload has {actual} bytes, expected {expected}")]
    SizeMismatch { expected: u64, actual: u64 },
    #[error("upload hashes to {actual}, expected {expected}")]
    HashMismatch { expected: String, actual: String },
    #[error("invalid blob name {0:?}")]
    BadName(String),
}

/// A re-encoded copy derived from a blob (DESIGN §5: the console shows these, never the
/// original).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Derived {
    /// Upright, metadata-free JPEG, longest side about 320 px.
    Thumbnail,
    /// Upright, metadata-free JPEG for viewing.
    Display,
}

impl Derived {
    /// The end of a derived copy's name, after `<sha256>.`.
    pub(crate) fn suffix(self) -> &'static str {
        match self {
            Derived::Thumbnail => "thumb.jpg",
            Derived::Display => "display.jpg",
        }
    }
}

/// `sha256/<aa>/<sha256>`: where a blob lives, relative to the folder or bucket.
pub(crate) fn blob_name(sha256: &str) -> Result<String, BlobError> {
    check_sha256(sha256)?;
    Ok(format!("sha256/{}/{sha256}", &sha256[..2]))
}

/// `derived/<aa>/<sha256>.<kind>.jpg`: where a derived copy lives.
pub(crate) fn derived_name(sha256: &str, kind: Derived) -> Result<String, BlobError> {
    check_sha256(sha256)?;
    Ok(format!(
        "derived/{}/{sha256}.{}",
        &sha256[..2],
        kind.suffix()
    ))
}

/// Only 64 lower-case hex characters name a blob, so no name can leave its folder.
fn check_sha256(sha256: &str) -> Result<(), BlobError> {
    if fieldsync_model::visit::is_sha256_hex(sha256) {
        Ok(())
    } else {
        Err(BlobError::BadName(sha256.to_owned()))
    }
}

/// Only a UUID names an upload, for the same reason.
pub(crate) fn check_upload_id(upload_id: &str) -> Result<(), BlobError> {
    match uuid::Uuid::parse_str(upload_id) {
        Ok(_) => Ok(()),
        Err(_) => Err(BlobError::BadName(upload_id.to_owned())),
    }
}

/// The photo store, on the local disk or on S3 (see the module documentation). Cheap to
/// clone. Every method is async: the folder's blocking file work runs on the blocking pool.
#[derive(Debug, Clone)]
pub enum BlobStore {
    LocalFolder(LocalBlobStore),
    S3(S3BlobStore),
}

/// Run blocking folder work on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, BlobError> + Send + 'static,
) -> Result<T, BlobError> {
    tokio::task::spawn_blocking(work).await.map_err(|error| {
        BlobError::Io(std::io::Error::other(format!("blob task failed: {error}")))
    })?
}

impl BlobStore {
    /// Open the store `settings` names: the folder `local_root` (created if missing), or the
    /// S3 bucket, with `local_root/assembling` as the scratch folder where an upload is put
    /// together and checked. Opening S3 sends no request, so a store that is down delays
    /// photos (their requests answer UNAVAILABLE) but not the server's start.
    pub fn open(settings: &BlobSettings, local_root: &Path) -> Result<Self, BlobError> {
        match &settings.url {
            BlobLocation::LocalFolder => Ok(Self::LocalFolder(LocalBlobStore::open(local_root)?)),
            BlobLocation::S3 { bucket, prefix } => Ok(Self::S3(S3BlobStore::open(
                settings,
                bucket,
                prefix,
                &local_root.join("assembling"),
            )?)),
        }
    }

    /// The local folder at `root` (tests and tools).
    pub fn local_folder(root: &Path) -> Result<Self, BlobError> {
        Ok(Self::LocalFolder(LocalBlobStore::open(root)?))
    }

    /// True when the blobs live in an object store, which backs them up itself
    /// (`fieldsync-server backup` copies only a local folder).
    pub fn is_object_store(&self) -> bool {
        matches!(self, Self::S3(_))
    }

    /// True when a complete blob with this hash is stored.
    pub async fn contains(&self, sha256: &str) -> Result<bool, BlobError> {
        match self {
            Self::LocalFolder(folder) => {
                let (folder, sha256) = (folder.clone(), sha256.to_owned());
                blocking(move || Ok(folder.contains(&sha256))).await
            }
            Self::S3(bucket) => bucket.contains(sha256).await,
        }
    }

    /// A whole blob.
    pub async fn read(&self, sha256: &str) -> Result<Vec<u8>, BlobError> {
        match self {
            Self::LocalFolder(folder) => {
                let (folder, sha256) = (folder.clone(), sha256.to_owned());
                blocking(move || folder.read(&sha256)).await
            }
            Self::S3(bucket) => bucket.read(sha256).await,
        }
    }

    /// A derived copy, or `None` when it was never made.
    pub async fn read_derived(
        &self,
        sha256: &str,
        kind: Derived,
    ) -> Result<Option<Vec<u8>>, BlobError> {
        match self {
            Self::LocalFolder(folder) => {
                let (folder, sha256) = (folder.clone(), sha256.to_owned());
                blocking(move || folder.read_derived(&sha256, kind)).await
            }
            Self::S3(bucket) => bucket.read_derived(sha256, kind).await,
        }
    }

    /// Keep a derived copy; a reader never sees half of one.
    pub async fn write_derived(
        &self,
        sha256: &str,
        kind: Derived,
        bytes: Vec<u8>,
    ) -> Result<(), BlobError> {
        match self {
            Self::LocalFolder(folder) => {
                let (folder, sha256) = (folder.clone(), sha256.to_owned());
                blocking(move || folder.write_derived(&sha256, kind, &bytes)).await
            }
            Self::S3(bucket) => bucket.write_derived(sha256, kind, bytes).await,
        }
    }

    /// Bytes staged for an upload so far (from offset 0, without gaps).
    pub async fn staged_len(&self, upload_id: &str) -> Result<u64, BlobError> {
        match self {
            Self::LocalFolder(folder) => {
                let (folder, upload_id) = (folder.clone(), upload_id.to_owned());
                blocking(move || folder.staged_len(&upload_id)).await
            }
            Self::S3(bucket) => bucket.staged_len(upload_id).await,
        }
    }

    /// Stage a chunk at `offset` durably and return the offset after it. The caller holds
    /// the upload's lock and has checked that `offset` is the committed offset; anything
    /// staged past it (written but never acknowledged) is overwritten or ignored.
    pub async fn append_chunk(
        &self,
        upload_id: &str,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<u64, BlobError> {
        let length = data.len() as u64;
        let end = match self {
            Self::LocalFolder(folder) => {
                let (folder, upload_id) = (folder.clone(), upload_id.to_owned());
                blocking(move || folder.append_chunk(&upload_id, offset, &data)).await?
            }
            Self::S3(bucket) => bucket.append_chunk(upload_id, offset, data).await?,
        };
        // gRPC Media and tus both land here, so the counter covers every upload path.
        metrics::counter!(crate::monitoring::UPLOAD_BYTES).increment(length);
        Ok(end)
    }

    /// Delete an upload's staged bytes (missing ones are fine; blobs are never touched).
    pub async fn remove_staging(&self, upload_id: &str) -> Result<(), BlobError> {
        match self {
            Self::LocalFolder(folder) => {
                let (folder, upload_id) = (folder.clone(), upload_id.to_owned());
                blocking(move || folder.remove_staging(&upload_id)).await
            }
            Self::S3(bucket) => bucket.remove_staging(upload_id).await,
        }
    }

    /// Ids of the uploads that have staged bytes, so that those whose row is gone can be
    /// swept.
    pub async fn staged_upload_ids(&self) -> Result<Vec<String>, BlobError> {
        match self {
            Self::LocalFolder(folder) => {
                let folder = folder.clone();
                blocking(move || folder.staged_upload_ids()).await
            }
            Self::S3(bucket) => bucket.staged_upload_ids().await,
        }
    }

    /// Verify a staged upload's size and SHA-256, run `vet` over its bytes as a local file
    /// *before* the blob exists, and publish the blob only when `vet` accepts
    /// (`Ok(Ok(value))`); a refusal (`Ok(Err(refusal))`) discards the staged bytes and
    /// stores nothing. When the blob already exists, `vet` runs over it and the redundant
    /// staged bytes are discarded. `vet` runs on the blocking pool.
    pub async fn commit_vetted<T, R>(
        &self,
        upload_id: &str,
        expected_sha256: &str,
        expected_size: u64,
        vet: impl FnOnce(&Path) -> std::io::Result<Result<T, R>> + Send + 'static,
    ) -> Result<Result<T, R>, BlobError>
    where
        T: Send + 'static,
        R: Send + 'static,
    {
        match self {
            Self::LocalFolder(folder) => {
                let folder = folder.clone();
                let (upload_id, expected_sha256) =
                    (upload_id.to_owned(), expected_sha256.to_owned());
                blocking(move || {
                    folder.commit_vetted(&upload_id, &expected_sha256, expected_size, vet)
                })
                .await
            }
            Self::S3(bucket) => {
                bucket
                    .commit_vetted(upload_id, expected_sha256, expected_size, vet)
                    .await
            }
        }
    }
}
