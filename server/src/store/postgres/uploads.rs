//! Uploads (照片上传) on PostgreSQL. The committed offset lives in the `uploads` row that
//! every replica reads, so a phone cut off on one replica resumes on another at the same
//! byte; offsets only ever move forward and activity times never go back, whichever replica
//! writes last.

use super::PreparedOnce;
use fieldsync_model::visit::PhotoRecord;
use time::OffsetDateTime;

use super::{PostgresStore, from_millis, to_millis};
use crate::store::{StoreError, StoreResult, UploadRecord};

const UPLOAD_COLUMNS: &str = "upload_id, sha256, size_bytes, mime_type, committed_offset,
     complete, user_id, last_activity_at";

fn to_db_size(value: u64, what: &str) -> StoreResult<i64> {
    i64::try_from(value).map_err(|_| StoreError::InvalidValue {
        field: what.to_owned(),
        message: format!("{value} is too large"),
    })
}

fn upload_from_row(row: &tokio_postgres::Row) -> StoreResult<UploadRecord> {
    let size_bytes: i64 = row.try_get("size_bytes")?;
    let committed_offset: i64 = row.try_get("committed_offset")?;
    let unsigned = |value: i64, what: &str| {
        u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} {value}")))
    };
    Ok(UploadRecord {
        upload_id: row.try_get("upload_id")?,
        sha256: row.try_get("sha256")?,
        size_bytes: unsigned(size_bytes, "upload size")?,
        mime_type: row.try_get("mime_type")?,
        committed_offset: unsigned(committed_offset, "upload offset")?,
        complete: row.try_get("complete")?,
        user_id: row.try_get("user_id")?,
        last_activity_at: from_millis(row.try_get("last_activity_at")?)?,
    })
}

impl PostgresStore {
    /// Record a new upload, or note activity on the one with this id (a retried start).
    pub async fn start_upload(&self, upload: UploadRecord) -> StoreResult<UploadRecord> {
        let connection = self.connection().await?;
        // One statement: a start retried on two replicas at once inserts once.
        let row = connection
            .query_one_cached(
                &format!(
                    "INSERT INTO uploads (upload_id, sha256, size_bytes, mime_type,
                                          committed_offset, complete, user_id, created_at,
                                          last_activity_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                     ON CONFLICT (upload_id) DO UPDATE SET
                         last_activity_at = GREATEST(uploads.last_activity_at,
                                                     excluded.last_activity_at)
                     RETURNING {UPLOAD_COLUMNS}"
                ),
                &[
                    &upload.upload_id,
                    &upload.sha256,
                    &to_db_size(upload.size_bytes, "upload size")?,
                    &upload.mime_type,
                    &to_db_size(upload.committed_offset, "upload offset")?,
                    &upload.complete,
                    &upload.user_id,
                    // Informational only; "newest" ordering uses the arrival column.
                    &to_millis(OffsetDateTime::now_utc())?,
                    &to_millis(upload.last_activity_at)?,
                ],
            )
            .await?;
        upload_from_row(&row)
    }

    pub async fn get_upload(&self, upload_id: &str) -> StoreResult<Option<UploadRecord>> {
        let connection = self.connection().await?;
        connection
            .query_opt_cached(
                &format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE upload_id = $1"),
                &[&upload_id],
            )
            .await?
            .as_ref()
            .map(upload_from_row)
            .transpose()
    }

    /// The user's newest upload of this file, complete or not.
    pub async fn find_upload_by_sha256(
        &self,
        sha256: &str,
        user_id: &str,
    ) -> StoreResult<Option<UploadRecord>> {
        let connection = self.connection().await?;
        connection
            .query_opt_cached(
                &format!(
                    "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE sha256 = $1 AND user_id = $2
                      ORDER BY arrival DESC LIMIT 1"
                ),
                &[&sha256, &user_id],
            )
            .await?
            .as_ref()
            .map(upload_from_row)
            .transpose()
    }

    pub async fn set_upload_offset(
        &self,
        upload_id: &str,
        committed_offset: u64,
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        let connection = self.connection().await?;
        let changed = connection
            .execute_cached(
                "UPDATE uploads SET committed_offset = $2,
                                    last_activity_at = GREATEST(last_activity_at, $3)
                  WHERE upload_id = $1",
                &[
                    &upload_id,
                    &to_db_size(committed_offset, "upload offset")?,
                    &to_millis(now)?,
                ],
            )
            .await?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("upload {upload_id}")));
        }
        Ok(())
    }

    /// Mark the upload complete and its blob stored (the bytes were verified before).
    pub async fn complete_upload(&self, upload_id: &str, now: OffsetDateTime) -> StoreResult<()> {
        let now = to_millis(now)?;
        write_transaction!(self, |transaction| {
            let Some(row) = transaction
                .query_opt_cached(
                    "UPDATE uploads SET complete = TRUE, committed_offset = size_bytes
                      WHERE upload_id = $1
                      RETURNING sha256, size_bytes",
                    &[&upload_id],
                )
                .await?
            else {
                return Err(StoreError::NotFound(format!("upload {upload_id}")).into());
            };
            let sha256: String = row.try_get("sha256")?;
            let size_bytes: i64 = row.try_get("size_bytes")?;
            transaction
                .execute_cached(
                    "INSERT INTO blobs (sha256, size_bytes, stored_at) VALUES ($1, $2, $3)
                     ON CONFLICT (sha256) DO NOTHING",
                    &[&sha256, &size_bytes, &now],
                )
                .await?;
            Ok(())
        })
    }

    pub async fn blob_exists(&self, sha256: &str) -> StoreResult<bool> {
        let connection = self.connection().await?;
        Ok(connection
            .query_opt_cached("SELECT 1 FROM blobs WHERE sha256 = $1", &[&sha256])
            .await?
            .is_some())
    }

    pub async fn get_photo(&self, photo_id: &str) -> StoreResult<Option<PhotoRecord>> {
        let connection = self.connection().await?;
        let Some(row) = connection
            .query_opt_cached("SELECT body FROM photos WHERE photo_id = $1", &[&photo_id])
            .await?
        else {
            return Ok(None);
        };
        let body: String = row.try_get("body")?;
        serde_json::from_str(&body)
            .map(Some)
            .map_err(|error| StoreError::Corrupt(format!("photo record: {error}")))
    }

    /// Forget incomplete uploads idle since before `older_than`; returns their ids (their
    /// staged bytes are the blob store's to delete).
    pub async fn expire_uploads(&self, older_than: OffsetDateTime) -> StoreResult<Vec<String>> {
        let connection = self.connection().await?;
        connection
            .query_cached(
                "DELETE FROM uploads WHERE NOT complete AND last_activity_at < $1
                 RETURNING upload_id",
                &[&to_millis(older_than)?],
            )
            .await?
            .iter()
            .map(|row| Ok(row.try_get(0)?))
            .collect()
    }
}
