//! SQLite side of [`MediaStore`]: the `uploads`, `blobs`, `photos` and `photo_meta` tables
//! (photo metadata with its pHash split into bands for the near-duplicate index, migration
//! 0014), and the evidence gathering and flag saving of `store/sqlite/evidence.rs` run on
//! their own.

use fieldsync_model::evidence::EvidenceFlag;
use fieldsync_model::visit::PhotoRecord;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use time::OffsetDateTime;

use crate::store::sqlite::{
    SqliteStore, corrupt, decode_json, evidence, from_millis, from_sql_unsigned, optional_millis,
    to_millis, to_sql_integer,
};
use crate::store::{
    CaptureTime, EvidenceInputs, MediaStore, PhotoMeta, StoreError, StoreResult, UploadRecord,
};

fn load_upload(connection: &Connection, upload_id: &str) -> StoreResult<Option<UploadRecord>> {
    query_upload(
        connection,
        "SELECT upload_id, sha256, size_bytes, mime_type, committed_offset, complete, user_id,
                last_activity_at
         FROM uploads WHERE upload_id = ?1",
        params![upload_id],
    )
}

fn query_upload(
    connection: &Connection,
    sql: &str,
    parameters: impl rusqlite::Params,
) -> StoreResult<Option<UploadRecord>> {
    type UploadRow = (String, String, i64, String, i64, bool, String, i64);
    let row: Option<UploadRow> = connection
        .query_row(sql, parameters, |row| {
            Ok((
                row.get("upload_id")?,
                row.get("sha256")?,
                row.get("size_bytes")?,
                row.get("mime_type")?,
                row.get("committed_offset")?,
                row.get("complete")?,
                row.get("user_id")?,
                row.get("last_activity_at")?,
            ))
        })
        .optional()?;
    row.map(
        |(
            upload_id,
            sha256,
            size_bytes,
            mime_type,
            committed_offset,
            complete,
            user_id,
            last_activity_at,
        )| {
            Ok(UploadRecord {
                last_activity_at: from_millis(last_activity_at)?,
                size_bytes: from_sql_unsigned(size_bytes, "upload size")?,
                committed_offset: from_sql_unsigned(committed_offset, "upload offset")?,
                upload_id,
                sha256,
                mime_type,
                complete,
                user_id,
            })
        },
    )
    .transpose()
}

/// `YYYY-MM-DDTHH:MM:SS`: an EXIF local time without a zone.
const NAIVE_TIME_FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");

pub(in crate::store) fn encode_capture_time(captured: &CaptureTime) -> StoreResult<(String, bool)> {
    let encoding = |error: time::error::Format| {
        StoreError::database_caused_by(format!("cannot encode an EXIF time: {error}"), error)
    };
    Ok(match captured {
        CaptureTime::Offset(instant) => (
            instant
                .format(&time::format_description::well_known::Rfc3339)
                .map_err(encoding)?,
            true,
        ),
        CaptureTime::Local(local) => (local.format(NAIVE_TIME_FORMAT).map_err(encoding)?, false),
    })
}

pub(in crate::store) fn decode_capture_time(
    text: &str,
    has_offset: bool,
) -> StoreResult<CaptureTime> {
    let bad = |error: time::error::Parse| corrupt(format!("EXIF time {text:?}: {error}"));
    Ok(if has_offset {
        CaptureTime::Offset(
            OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .map_err(bad)?,
        )
    } else {
        CaptureTime::Local(time::PrimitiveDateTime::parse(text, NAIVE_TIME_FORMAT).map_err(bad)?)
    })
}

/// Columns of `photo_meta`, prefixed by the table alias `m`, that [`photo_meta_row`] reads
/// by name.
pub(in crate::store) const PHOTO_META_COLUMNS: &str = "m.mime_type, m.width, m.height, m.exif_time,
    m.exif_time_has_offset, m.exif_lat, m.exif_lon, m.gps_time, m.make, m.model,
    m.orientation, m.phash, m.exif_damaged";

/// The raw `photo_meta` columns of one row.
type PhotoMetaRow = (
    (String, u32, u32, Option<String>, bool, Option<f64>),
    (
        Option<f64>,
        Option<i64>,
        Option<String>,
        Option<String>,
        Option<u16>,
        i64,
    ),
    bool,
);

pub(in crate::store) fn photo_meta_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<PhotoMetaRow> {
    Ok((
        (
            row.get("mime_type")?,
            row.get("width")?,
            row.get("height")?,
            row.get("exif_time")?,
            row.get("exif_time_has_offset")?,
            row.get("exif_lat")?,
        ),
        (
            row.get("exif_lon")?,
            row.get("gps_time")?,
            row.get("make")?,
            row.get("model")?,
            row.get("orientation")?,
            row.get("phash")?,
        ),
        row.get("exif_damaged")?,
    ))
}

pub(in crate::store) fn photo_meta_from_row(row: PhotoMetaRow) -> StoreResult<PhotoMeta> {
    let (
        (mime_type, width, height, exif_time, has_offset, lat),
        (lon, gps_time, make, model, orientation, phash),
        exif_damaged,
    ) = row;
    Ok(PhotoMeta {
        mime_type,
        width,
        height,
        exif_time: exif_time
            .map(|text| decode_capture_time(&text, has_offset))
            .transpose()?,
        exif_gps: lat.zip(lon),
        gps_time: gps_time.map(from_millis).transpose()?,
        make,
        model,
        orientation,
        // The hash's 64 bits were stored as a signed integer.
        phash: phash as u64,
        exif_damaged,
    })
}

fn save_photo_meta_in(
    transaction: &Transaction<'_>,
    sha256: &str,
    meta: &PhotoMeta,
) -> StoreResult<()> {
    let (exif_time, has_offset) = match &meta.exif_time {
        Some(captured) => {
            let (text, has_offset) = encode_capture_time(captured)?;
            (Some(text), has_offset)
        }
        None => (None, false),
    };
    transaction.execute(
        "INSERT INTO photo_meta (sha256, mime_type, width, height, exif_time,
                                 exif_time_has_offset, exif_lat, exif_lon, gps_time, make, model,
                                 orientation, phash, exif_damaged)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
         ON CONFLICT (sha256) DO UPDATE SET
             mime_type = excluded.mime_type, width = excluded.width, height = excluded.height,
             exif_time = excluded.exif_time,
             exif_time_has_offset = excluded.exif_time_has_offset,
             exif_lat = excluded.exif_lat, exif_lon = excluded.exif_lon,
             gps_time = excluded.gps_time, make = excluded.make, model = excluded.model,
             orientation = excluded.orientation, phash = excluded.phash,
             exif_damaged = excluded.exif_damaged",
        params![
            sha256,
            meta.mime_type,
            meta.width,
            meta.height,
            exif_time,
            has_offset,
            meta.exif_gps.map(|gps| gps.0),
            meta.exif_gps.map(|gps| gps.1),
            optional_millis(meta.gps_time)?,
            meta.make,
            meta.model,
            meta.orientation,
            // Keep all 64 bits: SQLite integers are signed.
            meta.phash as i64,
            meta.exif_damaged,
        ],
    )?;
    Ok(())
}

fn photo_meta_in(connection: &Connection, sha256: &str) -> StoreResult<Option<PhotoMeta>> {
    connection
        .query_row(
            &format!("SELECT {PHOTO_META_COLUMNS} FROM photo_meta m WHERE m.sha256 = ?1"),
            params![sha256],
            photo_meta_row,
        )
        .optional()?
        .map(photo_meta_from_row)
        .transpose()
}

#[async_trait::async_trait]
impl MediaStore for SqliteStore {
    async fn start_upload(&self, upload: UploadRecord) -> StoreResult<UploadRecord> {
        self.write(move |transaction| {
            let touched = transaction.execute(
                "UPDATE uploads SET last_activity_at = MAX(last_activity_at, ?2)
                 WHERE upload_id = ?1",
                params![upload.upload_id, to_millis(upload.last_activity_at)?],
            )?;
            if touched == 0 {
                transaction.execute(
                    "INSERT INTO uploads (upload_id, sha256, size_bytes, mime_type,
                                          committed_offset, complete, user_id, created_at,
                                          last_activity_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    params![
                        upload.upload_id,
                        upload.sha256,
                        to_sql_integer(upload.size_bytes, "upload size")?,
                        upload.mime_type,
                        to_sql_integer(upload.committed_offset, "upload offset")?,
                        upload.complete,
                        upload.user_id,
                        // Informational only; "newest" ordering uses the rowid, not the
                        // clock.
                        to_millis(OffsetDateTime::now_utc())?,
                        to_millis(upload.last_activity_at)?
                    ],
                )?;
            }
            load_upload(transaction, &upload.upload_id)?
                .ok_or_else(|| StoreError::database("upload vanished after insert"))
        })
        .await
    }

    async fn get_upload(&self, upload_id: &str) -> StoreResult<Option<UploadRecord>> {
        let upload_id = upload_id.to_owned();
        self.read(move |connection| load_upload(connection, &upload_id))
            .await
    }

    async fn find_upload_by_sha256(
        &self,
        sha256: &str,
        user_id: &str,
    ) -> StoreResult<Option<UploadRecord>> {
        let sha256 = sha256.to_owned();
        let user_id = user_id.to_owned();
        self.read(move |connection| {
            query_upload(
                connection,
                "SELECT upload_id, sha256, size_bytes, mime_type, committed_offset, complete,
                        user_id, last_activity_at
                 FROM uploads WHERE sha256 = ?1 AND user_id = ?2
                 ORDER BY rowid DESC LIMIT 1",
                params![sha256, user_id],
            )
        })
        .await
    }

    async fn set_upload_offset(
        &self,
        upload_id: &str,
        committed_offset: u64,
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        let upload_id = upload_id.to_owned();
        self.write(move |transaction| {
            let changed = transaction.execute(
                "UPDATE uploads SET committed_offset = ?2,
                                    last_activity_at = MAX(last_activity_at, ?3)
                 WHERE upload_id = ?1",
                params![
                    upload_id,
                    to_sql_integer(committed_offset, "upload offset")?,
                    to_millis(now)?
                ],
            )?;
            if changed == 0 {
                return Err(StoreError::NotFound(format!("upload {upload_id}")));
            }
            Ok(())
        })
        .await
    }

    async fn complete_upload(&self, upload_id: &str, now: OffsetDateTime) -> StoreResult<()> {
        let upload_id = upload_id.to_owned();
        self.write(move |transaction| {
            let Some(upload) = load_upload(transaction, &upload_id)? else {
                return Err(StoreError::NotFound(format!("upload {upload_id}")));
            };
            let size_bytes = to_sql_integer(upload.size_bytes, "upload size")?;
            transaction.execute(
                "UPDATE uploads SET complete = 1, committed_offset = ?2 WHERE upload_id = ?1",
                params![upload_id, size_bytes],
            )?;
            transaction.execute(
                "INSERT OR IGNORE INTO blobs (sha256, size_bytes, stored_at) VALUES (?1, ?2, ?3)",
                params![upload.sha256, size_bytes, to_millis(now)?],
            )?;
            Ok(())
        })
        .await
    }

    async fn blob_exists(&self, sha256: &str) -> StoreResult<bool> {
        let sha256 = sha256.to_owned();
        self.read(move |connection| {
            Ok(connection
                .query_row(
                    "SELECT 1 FROM blobs WHERE sha256 = ?1",
                    params![sha256],
                    |_| Ok(()),
                )
                .optional()?
                .is_some())
        })
        .await
    }

    async fn expire_uploads(&self, older_than: OffsetDateTime) -> StoreResult<Vec<String>> {
        self.write(move |transaction| {
            let mut statement = transaction.prepare(
                "DELETE FROM uploads WHERE complete = 0 AND last_activity_at < ?1
                 RETURNING upload_id",
            )?;
            let ids = statement
                .query_map(params![to_millis(older_than)?], |row| row.get("upload_id"))?
                .collect::<Result<Vec<String>, _>>()?;
            Ok(ids)
        })
        .await
    }

    async fn get_photo(&self, photo_id: &str) -> StoreResult<Option<PhotoRecord>> {
        let photo_id = photo_id.to_owned();
        self.read(move |connection| {
            let body: Option<String> = connection
                .query_row(
                    "SELECT body FROM photos WHERE photo_id = ?1",
                    params![photo_id],
                    |row| row.get("body"),
                )
                .optional()?;
            body.map(|body| decode_json(&body, "photo record"))
                .transpose()
        })
        .await
    }

    async fn save_photo_meta(&self, sha256: &str, meta: PhotoMeta) -> StoreResult<()> {
        let sha256 = sha256.to_owned();
        self.write(move |transaction| save_photo_meta_in(transaction, &sha256, &meta))
            .await
    }

    async fn photo_meta(&self, sha256: &str) -> StoreResult<Option<PhotoMeta>> {
        let sha256 = sha256.to_owned();
        self.read(move |connection| photo_meta_in(connection, &sha256))
            .await
    }

    async fn visits_with_photo(&self, sha256: &str) -> StoreResult<Vec<String>> {
        let sha256 = sha256.to_owned();
        self.read(move |connection| {
            let mut statement = connection.prepare(
                "SELECT DISTINCT visit_id FROM photos WHERE sha256 = ?1 ORDER BY visit_id",
            )?;
            let ids = statement
                .query_map(params![sha256], |row| row.get("visit_id"))?
                .collect::<Result<Vec<String>, _>>()?;
            Ok(ids)
        })
        .await
    }

    async fn evidence_inputs(
        &self,
        visit_id: &str,
        near_duplicate_max_bits: u32,
    ) -> StoreResult<Option<EvidenceInputs>> {
        let visit_id = visit_id.to_owned();
        self.read(move |connection| {
            let mut gathered = evidence::evidence_inputs_many(
                connection,
                std::slice::from_ref(&visit_id),
                &crate::store::evidence_rows::PushedVisits::new(),
                near_duplicate_max_bits,
            )?;
            gathered.pop().map_or(Ok(None), |(_, inputs)| inputs)
        })
        .await
    }

    async fn save_visit_flags(
        &self,
        visit_id: &str,
        revision: u32,
        flags: Vec<EvidenceFlag>,
    ) -> StoreResult<()> {
        let visit_id = visit_id.to_owned();
        self.write(move |transaction| {
            evidence::save_flags_in(transaction, &visit_id, revision, &flags)
        })
        .await
    }

    async fn refresh_flags_of_blob(
        &self,
        sha256: &str,
        settings: fieldsync_model::evidence::EvidenceSettings,
    ) -> StoreResult<()> {
        let sha256 = sha256.to_owned();
        self.write(move |transaction| {
            evidence::flag_work_in_savepoint(
                transaction,
                &crate::store::evidence_rows::PushedVisits::new(),
                |work| {
                    crate::evidence::run_without_waiting(crate::evidence::refresh_for_blob_in(
                        work, &sha256, &settings,
                    ))
                },
            )
        })
        .await
    }
}
