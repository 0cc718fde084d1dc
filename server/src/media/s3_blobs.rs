//! Photo blobs on an S3-compatible object store (MinIO, Garage, Aliyun OSS, Tencent COS,
//! Huawei OBS, AWS) through the `object_store` crate, so several server replicas share them.
//!
//! Keys, under the configured prefix: `sha256/<aa>/<sha256>` (byte-exact originals),
//! `derived/<aa>/<sha256>.<kind>.jpg` (the console's copies) and, while an upload is in
//! progress, `staging/<upload_id>/<offset>`: one object per acknowledged chunk, the offset
//! written as 20 digits. Why not S3 multipart parts: every part but the last must be at
//! least 5 MiB, and a phone on 2G sends 16-256 KiB chunks, which must each be durable
//! before they are acknowledged. A chunk object is durable once its PUT answered; the
//! committed offset is the store's `uploads` row, so any replica continues the upload.
//!
//! A retry at the committed offset overwrites that offset's object; objects written but
//! never acknowledged, past the committed offset, are ignored because completion follows
//! the chain of chunks from offset 0 (each object's length gives the next offset).
//! Completion copies that chain into a local scratch file while hashing it, checks size and
//! SHA-256, lets the photo pipeline vet the file, and only then writes the blob (one PUT,
//! or a multipart upload in [`PART_BYTES`] parts for large files), then deletes the chunks.
//! Memory holds one chunk or one part at a time, never the whole photo.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
    WriteMultipart,
};
use sha2::{Digest, Sha256};
use tokio_stream::StreamExt;

use super::blobs::{BlobError, Derived, blob_name, check_upload_id, derived_name};
use crate::settings::BlobSettings;

/// Where uploads in progress are staged.
const STAGING: &str = "staging";

/// Size of a multipart part when a blob is written (S3's minimum is 5 MiB), and the most
/// of a blob held in memory while it is written.
pub const PART_BYTES: usize = 5 * 1024 * 1024;

/// A request to the store gives up after this long, so a store that stopped answering
/// makes a phone's request fail (UNAVAILABLE, retried by the phone) rather than hang.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Retries of one request (connection refused, 5xx), then the error reaches the caller.
const MAX_RETRIES: usize = 3;
const RETRY_TIMEOUT: Duration = Duration::from_secs(20);

/// The S3 backend of [`super::blobs::BlobStore`].
#[derive(Clone)]
pub struct S3BlobStore {
    objects: Arc<dyn ObjectStore>,
    /// Local folder where an upload is put together and checked before it becomes a blob.
    scratch: PathBuf,
    /// `s3://bucket/prefix`, for logs; no credentials.
    location: String,
}

impl fmt::Debug for S3BlobStore {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("S3BlobStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

/// How much of an assembled upload is written to the scratch file at once.
const WRITE_BYTES: usize = 256 * 1024;

/// Append `bytes` to `file` on the blocking pool; hands both back, `bytes` emptied for reuse.
async fn write_on_blocking_pool(
    mut file: std::fs::File,
    mut bytes: Vec<u8>,
) -> std::io::Result<(std::fs::File, Vec<u8>)> {
    tokio::task::spawn_blocking(move || {
        file.write_all(&bytes)?;
        bytes.clear();
        Ok((file, bytes))
    })
    .await
    .map_err(|error| std::io::Error::other(error.to_string()))?
}

/// Run the photo pipeline's `vet` over a scratch file on the blocking pool.
async fn vet_file<T, R>(
    scratch: &ScratchFile,
    vet: impl FnOnce(&Path) -> std::io::Result<Result<T, R>> + Send + 'static,
) -> Result<Result<T, R>, BlobError>
where
    T: Send + 'static,
    R: Send + 'static,
{
    let path = scratch.0.clone();
    Ok(tokio::task::spawn_blocking(move || vet(&path))
        .await
        .map_err(|error| std::io::Error::other(error.to_string()))??)
}

/// A scratch file older than this was left by a process that stopped in the middle of a
/// completion (which takes seconds): it is deleted when a store opens on the folder. Younger
/// ones may belong to a server or tool still running on the same data folder.
const STALE_SCRATCH_AGE: Duration = Duration::from_secs(60 * 60);

/// Delete the `*.assembling` files in `scratch` last written more than
/// [`STALE_SCRATCH_AGE`] before `now`; returns how many went. A [`ScratchFile`] deletes
/// itself when dropped, so only a crash (`kill -9`, power cut) leaves one behind.
fn remove_stale_scratch_files(
    scratch: &Path,
    now: std::time::SystemTime,
) -> std::io::Result<usize> {
    let mut removed = 0;
    for entry in std::fs::read_dir(scratch)? {
        let entry = entry?;
        let is_scratch = entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.ends_with(".assembling"));
        let written = entry.metadata()?.modified()?;
        let stale = now
            .duration_since(written)
            .is_ok_and(|age| age > STALE_SCRATCH_AGE);
        if is_scratch && stale {
            std::fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// A scratch file that is deleted when dropped, whatever happened in between.
struct ScratchFile(PathBuf);

impl Drop for ScratchFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl S3BlobStore {
    /// Configure the bucket (no request is sent). Credentials come from the settings only,
    /// never from the process environment or an instance metadata service the operator did
    /// not name.
    pub fn open(
        settings: &BlobSettings,
        bucket: &str,
        prefix: &str,
        scratch: &Path,
    ) -> Result<Self, BlobError> {
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(&settings.region)
            .with_allow_http(settings.allow_http)
            .with_virtual_hosted_style_request(settings.virtual_hosted_style)
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(settings.allow_http)
                    .with_timeout(REQUEST_TIMEOUT)
                    .with_connect_timeout(CONNECT_TIMEOUT),
            )
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(2),
                    base: 2.0,
                },
                max_retries: MAX_RETRIES,
                retry_timeout: RETRY_TIMEOUT,
            });
        if let Some(endpoint) = &settings.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if !settings.access_key_id.0.is_empty() {
            builder = builder
                .with_access_key_id(&settings.access_key_id.0)
                .with_secret_access_key(&settings.secret_access_key.0);
        }
        let store = builder
            .build()
            .map_err(|error| BlobError::Settings(error.to_string()))?;
        let objects: Arc<dyn ObjectStore> = if prefix.is_empty() {
            Arc::new(store)
        } else {
            Arc::new(PrefixStore::new(store, prefix))
        };
        std::fs::create_dir_all(scratch)?;
        match remove_stale_scratch_files(scratch, std::time::SystemTime::now()) {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "stale upload scratch files removed"),
            Err(error) => tracing::warn!(%error, "upload scratch folder not tidied"),
        }
        let location = if prefix.is_empty() {
            format!("s3://{bucket}")
        } else {
            format!("s3://{bucket}/{prefix}")
        };
        Ok(Self {
            objects,
            scratch: scratch.to_owned(),
            location,
        })
    }

    fn chunk_key(upload_id: &str, offset: u64) -> Result<ObjectPath, BlobError> {
        check_upload_id(upload_id)?;
        Ok(ObjectPath::from(format!(
            "{STAGING}/{upload_id}/{offset:020}"
        )))
    }

    fn staging_prefix(upload_id: &str) -> Result<ObjectPath, BlobError> {
        check_upload_id(upload_id)?;
        Ok(ObjectPath::from(format!("{STAGING}/{upload_id}")))
    }

    /// The object at `key`, or `None` when there is none.
    async fn get_optional(&self, key: &ObjectPath) -> Result<Option<Vec<u8>>, BlobError> {
        match self.objects.get(key).await {
            Ok(found) => Ok(Some(found.bytes().await?.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    pub async fn contains(&self, sha256: &str) -> Result<bool, BlobError> {
        match self
            .objects
            .head(&ObjectPath::from(blob_name(sha256)?))
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    pub async fn read(&self, sha256: &str) -> Result<Vec<u8>, BlobError> {
        let key = ObjectPath::from(blob_name(sha256)?);
        Ok(self.objects.get(&key).await?.bytes().await?.to_vec())
    }

    pub async fn read_derived(
        &self,
        sha256: &str,
        kind: Derived,
    ) -> Result<Option<Vec<u8>>, BlobError> {
        self.get_optional(&ObjectPath::from(derived_name(sha256, kind)?))
            .await
    }

    /// One PUT: a reader sees the whole copy or none.
    pub async fn write_derived(
        &self,
        sha256: &str,
        kind: Derived,
        bytes: Vec<u8>,
    ) -> Result<(), BlobError> {
        let key = ObjectPath::from(derived_name(sha256, kind)?);
        self.objects.put(&key, PutPayload::from(bytes)).await?;
        Ok(())
    }

    /// The staged chunks of an upload as `(offset, length)`, sorted by offset.
    async fn staged_chunks(&self, upload_id: &str) -> Result<Vec<(u64, u64)>, BlobError> {
        let prefix = Self::staging_prefix(upload_id)?;
        let mut listing = self.objects.list(Some(&prefix));
        let mut chunks = Vec::new();
        while let Some(object) = listing.next().await {
            let object = object?;
            // Anything not named by an offset is not ours to read.
            if let Some(offset) = object
                .location
                .filename()
                .and_then(|name| name.parse::<u64>().ok())
            {
                chunks.push((offset, object.size));
            }
        }
        chunks.sort_unstable();
        Ok(chunks)
    }

    /// The chain of chunks from offset 0: each chunk's end is the next chunk's offset.
    /// Stops at a gap, or at `limit`.
    fn chain(chunks: &[(u64, u64)], limit: u64) -> Vec<(u64, u64)> {
        let mut chain = Vec::new();
        let mut next = 0;
        while next < limit {
            match chunks.binary_search_by_key(&next, |&(offset, _)| offset) {
                Ok(index) if chunks[index].1 > 0 => {
                    chain.push(chunks[index]);
                    next += chunks[index].1;
                }
                _ => break,
            }
        }
        chain
    }

    pub async fn staged_len(&self, upload_id: &str) -> Result<u64, BlobError> {
        let chunks = self.staged_chunks(upload_id).await?;
        Ok(Self::chain(&chunks, u64::MAX)
            .iter()
            .map(|&(_, length)| length)
            .sum())
    }

    /// One object per chunk; the PUT has answered (the store holds it durably) when this
    /// returns.
    pub async fn append_chunk(
        &self,
        upload_id: &str,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<u64, BlobError> {
        let key = Self::chunk_key(upload_id, offset)?;
        let end = offset + data.len() as u64;
        self.objects.put(&key, PutPayload::from(data)).await?;
        Ok(end)
    }

    pub async fn remove_staging(&self, upload_id: &str) -> Result<(), BlobError> {
        let prefix = Self::staging_prefix(upload_id)?;
        let mut listing = self.objects.list(Some(&prefix));
        let mut keys = Vec::new();
        while let Some(object) = listing.next().await {
            keys.push(object?.location);
        }
        for key in keys {
            match self.objects.delete(&key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }

    pub async fn staged_upload_ids(&self) -> Result<Vec<String>, BlobError> {
        let listing = self
            .objects
            .list_with_delimiter(Some(&ObjectPath::from(STAGING)))
            .await?;
        Ok(listing
            .common_prefixes
            .iter()
            .filter_map(|prefix| prefix.filename())
            .filter(|name| uuid::Uuid::parse_str(name).is_ok())
            .map(str::to_owned)
            .collect())
    }

    /// Copy the objects at `keys`, in order, into a new scratch file, hashing as it goes;
    /// returns the file, its length and its SHA-256.
    async fn download(
        &self,
        keys: Vec<ObjectPath>,
    ) -> Result<(ScratchFile, u64, String), BlobError> {
        let scratch = ScratchFile(
            self.scratch
                .join(format!("{}.assembling", uuid::Uuid::now_v7())),
        );
        let mut file = std::fs::File::create(&scratch.0)?;
        let mut hasher = Sha256::new();
        let mut length = 0u64;
        // Network reads are a few KiB each: gather them into [`WRITE_BYTES`] writes, so a
        // photo costs a few hops to the blocking pool, not thousands.
        let mut pending = Vec::with_capacity(WRITE_BYTES);
        for key in keys {
            let mut stream = self.objects.get(&key).await?.into_stream();
            while let Some(piece) = stream.next().await {
                let piece = piece?;
                hasher.update(&piece);
                length += piece.len() as u64;
                pending.extend_from_slice(&piece);
                if pending.len() >= WRITE_BYTES {
                    (file, pending) = write_on_blocking_pool(file, pending).await?;
                }
            }
        }
        (file, _) = write_on_blocking_pool(file, pending).await?;
        file = tokio::task::spawn_blocking(move || file.sync_data().map(|()| file))
            .await
            .map_err(|error| std::io::Error::other(error.to_string()))??;
        drop(file);
        Ok((scratch, length, hex::encode(hasher.finalize())))
    }

    /// Write the verified scratch file as the blob: one PUT when it fits in a part, else a
    /// multipart upload, which S3 makes visible only when complete.
    async fn upload_blob(
        &self,
        key: &ObjectPath,
        scratch: &Path,
        size: u64,
    ) -> Result<(), BlobError> {
        if size <= PART_BYTES as u64 {
            let bytes = tokio::fs::read(scratch).await?;
            self.objects.put(key, PutPayload::from(bytes)).await?;
            return Ok(());
        }
        let upload = self.objects.put_multipart(key).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut file = std::fs::File::open(scratch)?;
        loop {
            writer.wait_for_capacity(1).await?;
            let (read_back, piece) = tokio::task::spawn_blocking(move || {
                use std::io::Read;
                let mut piece = vec![0u8; PART_BYTES];
                let mut filled = 0;
                while filled < piece.len() {
                    match file.read(&mut piece[filled..])? {
                        0 => break,
                        read => filled += read,
                    }
                }
                piece.truncate(filled);
                Ok::<_, std::io::Error>((file, piece))
            })
            .await
            .map_err(|error| std::io::Error::other(error.to_string()))??;
            file = read_back;
            if piece.is_empty() {
                break;
            }
            writer.write(&piece);
        }
        writer.finish().await?;
        Ok(())
    }

    /// See [`super::blobs::BlobStore::commit_vetted`].
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
        let blob_key = ObjectPath::from(blob_name(expected_sha256)?);
        check_upload_id(upload_id)?;
        tokio::fs::create_dir_all(&self.scratch).await?;
        if self.contains(expected_sha256).await? {
            // Another upload stored the same bytes first: vet the stored blob (never
            // changed), and drop the redundant chunks.
            let (scratch, _, _) = self.download(vec![blob_key]).await?;
            let vetted = vet_file(&scratch, vet).await?;
            self.remove_staging(upload_id).await?;
            return Ok(vetted);
        }
        let chunks = self.staged_chunks(upload_id).await?;
        let chain = Self::chain(&chunks, expected_size);
        let keys = chain
            .iter()
            .map(|&(offset, _)| Self::chunk_key(upload_id, offset))
            .collect::<Result<Vec<_>, _>>()?;
        let (scratch, actual_size, actual_sha256) = self.download(keys).await?;
        let mismatch = if actual_size != expected_size {
            Some(BlobError::SizeMismatch {
                expected: expected_size,
                actual: actual_size,
            })
        } else if actual_sha256 != expected_sha256 {
            Some(BlobError::HashMismatch {
                expected: expected_sha256.to_owned(),
                actual: actual_sha256,
            })
        } else {
            None
        };
        if let Some(mismatch) = mismatch {
            // The caller rewinds the upload to 0: these bytes can never verify.
            self.remove_staging(upload_id).await?;
            return Err(mismatch);
        }
        let vetted = vet_file(&scratch, vet).await?;
        let value = match vetted {
            Ok(value) => value,
            Err(refusal) => {
                self.remove_staging(upload_id).await?;
                return Ok(Err(refusal));
            }
        };
        self.upload_blob(&blob_key, &scratch.0, expected_size)
            .await?;
        drop(scratch);
        self.remove_staging(upload_id).await?;
        Ok(Ok(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_files_left_by_a_crash_are_removed_and_fresh_ones_kept() {
        let scratch = tempfile::tempdir().expect("temp dir");
        let write = |name: &str, age: Duration| {
            let path = scratch.path().join(name);
            let file = std::fs::File::create(&path).expect("create");
            file.set_modified(std::time::SystemTime::now() - age)
                .expect("set the time");
            path
        };
        let left_by_a_crash = write(
            "0190b1c2-0000-7000-8000-000000000001.assembling",
            Duration::from_secs(2 * 3600),
        );
        let in_progress = write(
            "0190b1c2-0000-7000-8000-000000000002.assembling",
            Duration::from_secs(5),
        );
        let not_scratch = write("notes.txt", Duration::from_secs(2 * 3600));
        assert_eq!(
            remove_stale_scratch_files(scratch.path(), std::time::SystemTime::now()).expect("tidy"),
            1
        );
        assert!(!left_by_a_crash.exists());
        assert!(in_progress.exists(), "a completion may still be writing it");
        assert!(not_scratch.exists(), "only scratch files are touched");
    }

    #[test]
    fn completion_follows_the_chain_of_acknowledged_chunks_from_offset_zero() {
        // 0..400 and 400..700 acknowledged; 700..1000 written but never acknowledged
        // before a retry at 700 sent 700..1000 again as two chunks (700 overwritten with
        // 200 bytes, then 900..1000); 1300 is a stale write past the end.
        let chunks = [(0, 400), (400, 300), (700, 200), (900, 100), (1300, 50)];
        assert_eq!(
            S3BlobStore::chain(&chunks, 1000),
            vec![(0, 400), (400, 300), (700, 200), (900, 100)]
        );
        // A gap stops the chain: completion then finds too few bytes.
        assert_eq!(
            S3BlobStore::chain(&[(0, 400), (500, 500)], 1000),
            vec![(0, 400)]
        );
        assert_eq!(S3BlobStore::chain(&[(10, 5)], 1000), Vec::new());
        assert_eq!(
            S3BlobStore::chain(&[(0, 0)], 1000),
            Vec::new(),
            "no empty chunks"
        );
    }

    #[test]
    fn chunk_keys_sort_by_offset_and_refuse_names_that_are_not_upload_ids() {
        let upload_id = uuid::Uuid::now_v7().to_string();
        let early = S3BlobStore::chunk_key(&upload_id, 9).unwrap().to_string();
        let late = S3BlobStore::chunk_key(&upload_id, 10).unwrap().to_string();
        assert!(early < late, "{early} sorts before {late}");
        assert_eq!(late, format!("staging/{upload_id}/00000000000000000010"));
        assert!(matches!(
            S3BlobStore::chunk_key("../sha256", 0),
            Err(BlobError::BadName(_))
        ));
    }

    #[test]
    fn the_debug_form_names_the_bucket_and_no_credentials() {
        let scratch = tempfile::tempdir().unwrap();
        let settings = BlobSettings {
            endpoint: Some("http://127.0.0.1:9".into()),
            allow_http: true,
            access_key_id: crate::settings::Secret("AKIDEXAMPLE".into()),
            secret_access_key: crate::settings::Secret("wJalrXUtnFEMI".into()),
            ..BlobSettings::default()
        };
        let store =
            S3BlobStore::open(&settings, "county-photos", "anxian", scratch.path()).unwrap();
        let printed = format!("{store:?}");
        assert!(printed.contains("s3://county-photos/anxian"), "{printed}");
        assert!(!printed.contains("AKIDEXAMPLE") && !printed.contains("wJalrXUtnFEMI"));
    }
}
