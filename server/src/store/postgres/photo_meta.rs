//! Photo metadata (照片元数据) on PostgreSQL: what upload completion extracted from an
//! accepted photo, stored per blob. EXIF times are kept as the same text as in SQLite
//! (`media/sqlite.rs` encodes and decodes them for both backends).

use super::PreparedOnce;
use crate::store::media::sqlite::{decode_capture_time, encode_capture_time};
use crate::store::{PhotoMeta, StoreError, StoreResult};

use super::{PostgresStore, from_millis, to_millis};

fn corrupt(what: String) -> StoreError {
    StoreError::Corrupt(what)
}

impl PostgresStore {
    /// Store (or replace) the metadata of the blob `sha256`.
    pub async fn save_photo_meta(&self, sha256: &str, meta: PhotoMeta) -> StoreResult<()> {
        let (exif_time, has_offset) = match &meta.exif_time {
            Some(captured) => {
                let (text, has_offset) = encode_capture_time(captured)?;
                (Some(text), has_offset)
            }
            None => (None, false),
        };
        let dimension = |value: u32, what: &str| {
            i32::try_from(value).map_err(|_| StoreError::InvalidValue {
                field: what.to_owned(),
                message: format!("{value} is too large"),
            })
        };
        let connection = self.connection().await?;
        connection
            .execute_cached(
                "INSERT INTO photo_meta (sha256, mime_type, width, height, exif_time,
                                         exif_time_has_offset, exif_lat, exif_lon, gps_time,
                                         make, model, orientation, phash, exif_damaged)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
                 ON CONFLICT (sha256) DO UPDATE SET
                     mime_type = excluded.mime_type, width = excluded.width,
                     height = excluded.height, exif_time = excluded.exif_time,
                     exif_time_has_offset = excluded.exif_time_has_offset,
                     exif_lat = excluded.exif_lat, exif_lon = excluded.exif_lon,
                     gps_time = excluded.gps_time, make = excluded.make, model = excluded.model,
                     orientation = excluded.orientation, phash = excluded.phash,
                     exif_damaged = excluded.exif_damaged",
                &[
                    &sha256,
                    &meta.mime_type,
                    &dimension(meta.width, "width")?,
                    &dimension(meta.height, "height")?,
                    &exif_time,
                    &has_offset,
                    &meta.exif_gps.map(|gps| gps.0),
                    &meta.exif_gps.map(|gps| gps.1),
                    &meta.gps_time.map(to_millis).transpose()?,
                    &meta.make,
                    &meta.model,
                    &meta.orientation.map(i32::from),
                    // All 64 bits kept: BIGINT is signed, as SQLite's INTEGER.
                    &(meta.phash as i64),
                    &meta.exif_damaged,
                ],
            )
            .await?;
        Ok(())
    }

    /// The metadata of the blob `sha256`, if its upload completed.
    pub async fn photo_meta(&self, sha256: &str) -> StoreResult<Option<PhotoMeta>> {
        let connection = self.connection().await?;
        let Some(row) = connection
            .query_opt_cached(
                &format!("SELECT {PHOTO_META_COLUMNS} FROM photo_meta m WHERE m.sha256 = $1"),
                &[&sha256],
            )
            .await?
        else {
            return Ok(None);
        };
        photo_meta_from_row(&row).map(Some)
    }
}

/// The `photo_meta` columns (of the row aliased `m`) that [`photo_meta_from_row`] reads.
pub(super) const PHOTO_META_COLUMNS: &str = "m.mime_type, m.width, m.height, m.exif_time,
    m.exif_time_has_offset, m.exif_lat, m.exif_lon, m.gps_time, m.make, m.model,
    m.orientation, m.phash, m.exif_damaged";

/// A photo's metadata from a row holding [`PHOTO_META_COLUMNS`].
pub(super) fn photo_meta_from_row(row: &tokio_postgres::Row) -> StoreResult<PhotoMeta> {
    let width: i32 = row.try_get("width")?;
    let height: i32 = row.try_get("height")?;
    let exif_time: Option<String> = row.try_get("exif_time")?;
    let has_offset: bool = row.try_get("exif_time_has_offset")?;
    let latitude: Option<f64> = row.try_get("exif_lat")?;
    let longitude: Option<f64> = row.try_get("exif_lon")?;
    let gps_time: Option<i64> = row.try_get("gps_time")?;
    let orientation: Option<i32> = row.try_get("orientation")?;
    let phash: i64 = row.try_get("phash")?;
    Ok(PhotoMeta {
        mime_type: row.try_get("mime_type")?,
        width: u32::try_from(width).map_err(|_| corrupt(format!("photo width {width}")))?,
        height: u32::try_from(height).map_err(|_| corrupt(format!("photo height {height}")))?,
        exif_time: exif_time
            .map(|text| decode_capture_time(&text, has_offset))
            .transpose()?,
        exif_gps: latitude.zip(longitude),
        gps_time: gps_time.map(from_millis).transpose()?,
        make: row.try_get("make")?,
        model: row.try_get("model")?,
        orientation: orientation
            .map(|value| {
                u16::try_from(value).map_err(|_| corrupt(format!("EXIF orientation {value}")))
            })
            .transpose()?,
        // The hash's 64 bits were stored as a signed integer.
        phash: phash as u64,
        exif_damaged: row.try_get("exif_damaged")?,
    })
}

#[cfg(test)]
mod tests {
    //! Metadata round-trips through the real server with both kinds of EXIF time, a hash
    //! with its top bit set and absent fields. Skipped where `FIELDSYNC_TEST_DATABASE_URL` is
    //! unset.

    use time::macros::{datetime, offset};

    use super::*;
    use crate::store::CaptureTime;
    use crate::store::postgres::testing::fresh_store;

    #[tokio::test]
    async fn photo_metadata_reads_back_as_it_was_saved() {
        let Some(store) = fresh_store("photo_metadata_reads_back_as_it_was_saved").await else {
            return;
        };
        let with_offset = PhotoMeta {
            mime_type: "image/jpeg".into(),
            width: 4000,
            height: 3000,
            exif_time: Some(CaptureTime::Offset(
                datetime!(2026-03-10 10:05:07).assume_offset(offset!(+8)),
            )),
            exif_gps: Some((30.711, 115.681)),
            gps_time: Some(datetime!(2026-03-10 02:05:06 UTC)),
            make: Some("HUAWEI".into()),
            model: Some("NOH-AN00".into()),
            orientation: Some(6),
            phash: 0xF0E1_D2C3_B4A5_9687,
            exif_damaged: false,
        };
        let local_time = PhotoMeta {
            exif_time: Some(CaptureTime::Local(datetime!(2026-03-10 10:05:07))),
            exif_gps: None,
            gps_time: None,
            make: None,
            model: None,
            orientation: None,
            exif_damaged: true,
            ..with_offset.clone()
        };
        for (sha256, meta) in [
            ("a".repeat(64), &with_offset),
            ("b".repeat(64), &local_time),
        ] {
            store
                .save_photo_meta(&sha256, meta.clone())
                .await
                .expect("save");
            assert_eq!(
                store.photo_meta(&sha256).await.expect("read").as_ref(),
                Some(meta)
            );
        }
        // Saving again replaces, never duplicates.
        store
            .save_photo_meta(&"a".repeat(64), local_time.clone())
            .await
            .expect("save again");
        assert_eq!(
            store.photo_meta(&"a".repeat(64)).await.expect("read"),
            Some(local_time)
        );
        assert_eq!(store.photo_meta(&"c".repeat(64)).await.expect("read"), None);
    }
}
