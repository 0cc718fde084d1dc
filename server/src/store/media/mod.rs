//! The media area of the store: resumable uploads (their committed offsets and expiry),
//! blob rows, photo records and the metadata extracted from each accepted file, and the
//! evidence inputs and flags (证据标记) of a visit's latest revision. The bytes themselves
//! live in the blob folder (`crate::media`), never here. SQLite in `sqlite.rs`, the checks
//! every backend passes in `conformance.rs`.

#[cfg(any(test, feature = "test-support"))]
pub mod conformance;
pub(crate) mod sqlite;

use async_trait::async_trait;
use fieldsync_model::evidence::{CadreVisitSummary, EvidenceFlag, OtherPhotoUse};
use fieldsync_model::household::GeoPoint;
use fieldsync_model::visit::{PhotoRecord, Visit};
use time::OffsetDateTime;

use crate::store::{CaptureTime, StoreResult};

/// One in-progress or finished upload.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadRecord {
    pub upload_id: String,
    pub sha256: String,
    pub size_bytes: u64,
    pub mime_type: String,
    pub committed_offset: u64,
    pub complete: bool,
    pub user_id: String,
    /// Server time of the upload's latest sign of life (its start, a resume query, an
    /// acknowledged chunk). Abandoned uploads expire by it, so a slow upload that keeps
    /// moving on a 2G link never does.
    pub last_activity_at: OffsetDateTime,
}

/// What upload completion extracted from an accepted photo ([`crate::media::photo::prepare`]),
/// stored per blob (SHA-256): one blob may serve many photo rows.
#[derive(Debug, Clone, PartialEq)]
pub struct PhotoMeta {
    /// The type sniffed from the bytes (`image/jpeg`, `image/png`, `image/webp`).
    pub mime_type: String,
    /// Stored (not EXIF-rotated) dimensions.
    pub width: u32,
    pub height: u32,
    /// EXIF DateTimeOriginal, with OffsetTimeOriginal when the camera wrote one.
    pub exif_time: Option<CaptureTime>,
    /// EXIF GPS `(lat, lon)`, WGS-84.
    pub exif_gps: Option<(f64, f64)>,
    /// GPS (satellite) UTC time of the EXIF fix.
    pub gps_time: Option<OffsetDateTime>,
    pub make: Option<String>,
    pub model: Option<String>,
    /// EXIF orientation 1..=8.
    pub orientation: Option<u16>,
    /// 64-bit DCT perceptual hash.
    pub phash: u64,
    /// The photo has an EXIF block that could be read only in part
    /// ([`crate::media::photo::PhotoExif::damaged`]); the fields above are what parsed.
    pub exif_damaged: bool,
}

/// One photo of the visit being evaluated: its record and, once the bytes arrived and were
/// accepted, their metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct EvidencePhoto {
    pub record: PhotoRecord,
    /// True when the blob is stored (the photo is evidence); false while it uploads.
    pub arrived: bool,
    /// `None` while uploading, and for blobs stored before metadata was extracted.
    pub meta: Option<PhotoMeta>,
}

/// The phone's clock against the server's, as its latest heartbeat reported it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeviceClockReading {
    pub device_time: OffsetDateTime,
    /// Server time when that heartbeat arrived.
    pub server_time: OffsetDateTime,
}

/// Everything [`fieldsync_model::evidence::evaluate`] needs about one visit, gathered in one
/// read snapshot ([`Store::evidence_inputs`]).
#[derive(Debug, Clone, PartialEq)]
pub struct EvidenceInputs {
    /// The latest revision.
    pub visit: Visit,
    pub cadre_user_id: String,
    /// When the server received the latest revision.
    pub submitted_at: OffsetDateTime,
    /// When the server received the first revision (the 补录 check measures from it).
    pub first_submitted_at: OffsetDateTime,
    pub household_location: Option<GeoPoint>,
    /// This visit's photo records in upload order (arrived or not).
    pub photos: Vec<EvidencePhoto>,
    /// Photos of other visits with the same SHA-256 as one of this visit's photos, or a
    /// perceptual hash within `near_duplicate_max_bits` of one of them.
    pub other_photos: Vec<OtherPhotoUse>,
    /// The same cadre's other visits (latest revisions) checked in within
    /// [`CADRE_VISIT_WINDOW`] of this one.
    pub cadre_visits: Vec<CadreVisitSummary>,
    /// The latest heartbeat of the device that sent the latest revision, when it reported
    /// its clock.
    pub device_clock: Option<DeviceClockReading>,
}

/// A mutation of a push whose stored outcome makes a visit's evidence flags stale: a
/// submitted visit, or a photo added to one (with the photo's file).
#[derive(Debug, Clone, PartialEq)]
pub struct FlagTarget {
    pub seq: u64,
    pub visit_id: String,
    pub photo_sha256: Option<String>,
}

/// How far around a visit's check-in the cadre's other visits are gathered for the travel
/// and per-day checks: the neighbours that matter are hours away, the window leaves room
/// for a day boundary in any time zone.
pub const CADRE_VISIT_WINDOW: time::Duration = time::Duration::days(2);

/// Storage of uploads, blob rows, photo metadata and evidence flags. Every method is a
/// complete unit of work.
#[async_trait]
pub trait MediaStore: Send + Sync {
    /// Create the upload, or return the existing one with that id after moving its latest
    /// activity forward to the record's `last_activity_at` (a resume query is a sign of life).
    async fn start_upload(&self, upload: UploadRecord) -> StoreResult<UploadRecord>;
    async fn get_upload(&self, upload_id: &str) -> StoreResult<Option<UploadRecord>>;
    async fn find_upload_by_sha256(
        &self,
        sha256: &str,
        user_id: &str,
    ) -> StoreResult<Option<UploadRecord>>;
    /// Record the committed offset and, as the upload's latest activity, `now`.
    async fn set_upload_offset(
        &self,
        upload_id: &str,
        committed_offset: u64,
        now: OffsetDateTime,
    ) -> StoreResult<()>;
    /// Mark the upload complete and record the blob as present.
    async fn complete_upload(&self, upload_id: &str, now: OffsetDateTime) -> StoreResult<()>;
    async fn blob_exists(&self, sha256: &str) -> StoreResult<bool>;
    /// Delete the incomplete uploads with no activity since `older_than` (abandoned: the
    /// phone gave up, or started over under a new id) and return their ids, so that their staging files
    /// can be removed. Complete uploads and blobs are never deleted: one blob serves many
    /// photo rows.
    async fn expire_uploads(&self, older_than: OffsetDateTime) -> StoreResult<Vec<String>>;
    /// Photo metadata by id (for serving thumbnails with an access check).
    async fn get_photo(&self, photo_id: &str) -> StoreResult<Option<PhotoRecord>>;
    /// Keep what upload completion extracted from an accepted blob (upsert by SHA-256).
    async fn save_photo_meta(&self, sha256: &str, meta: PhotoMeta) -> StoreResult<()>;
    /// The extracted metadata of a blob, if it was stored.
    async fn photo_meta(&self, sha256: &str) -> StoreResult<Option<PhotoMeta>>;
    /// Ids of the visits that have a photo record with this SHA-256, in id order.
    async fn visits_with_photo(&self, sha256: &str) -> StoreResult<Vec<String>>;
    /// The inputs of the evidence checks of a visit's latest revision, or `None` for an
    /// unknown visit. `near_duplicate_max_bits` bounds which other photos are returned as
    /// near duplicates (exact SHA-256 matches always are).
    async fn evidence_inputs(
        &self,
        visit_id: &str,
        near_duplicate_max_bits: u32,
    ) -> StoreResult<Option<EvidenceInputs>>;
    /// Keep the evidence flags computed for one revision (replacing earlier ones).
    /// `NotFound` when the revision does not exist. Production keeps flags inside the push's
    /// or the upload's own transaction; this and [`Store::evidence_inputs`] run the same
    /// gathering and saving on their own, for the conformance suite and test set-ups.
    async fn save_visit_flags(
        &self,
        visit_id: &str,
        revision: u32,
        flags: Vec<EvidenceFlag>,
    ) -> StoreResult<()>;
    /// Recompute, in one write transaction, the flags of every visit with a photo of this
    /// file ([`crate::evidence::refresh_for_blob_in`]); run when its upload completed.
    async fn refresh_flags_of_blob(
        &self,
        sha256: &str,
        settings: fieldsync_model::evidence::EvidenceSettings,
    ) -> StoreResult<()>;
}

/// Bands of a perceptual hash as both backends' `photo_meta` compute them (SQLite migration
/// 0014, PostgreSQL's generated columns): six of 9 bits, one of 10.
pub(crate) const PHASH_BANDS: usize = 7;

pub(crate) fn phash_bands(hash: u64) -> [u64; PHASH_BANDS] {
    let mut bands = [0; PHASH_BANDS];
    for (index, band) in bands.iter_mut().enumerate().take(PHASH_BANDS - 1) {
        *band = (hash >> (9 * index)) & 511;
    }
    bands[PHASH_BANDS - 1] = (hash >> 54) & 1023;
    bands
}

/// SQL condition (over `m`, the photo_meta row of `p`) for photos that may be within
/// `max_bits` of one of `own_hashes`. Within 6 bits at least one band is equal, so the
/// indexed band lookup misses nothing; a wider setting falls back to every hashed photo.
/// The values are numbers this function computed, never caller text.
pub(crate) fn near_duplicate_candidates(own_hashes: &[u64], max_bits: u32) -> String {
    if own_hashes.is_empty() {
        return "FALSE".to_owned();
    }
    if max_bits as usize >= PHASH_BANDS {
        return "m.phash IS NOT NULL".to_owned();
    }
    let terms: Vec<String> = (0..PHASH_BANDS)
        .map(|band| {
            let values: Vec<String> = own_hashes
                .iter()
                .map(|hash| phash_bands(*hash)[band].to_string())
                .collect();
            format!("band.phash_band{band} IN ({})", values.join(", "))
        })
        .collect();
    format!(
        "p.sha256 IN (SELECT band.sha256 FROM photo_meta band WHERE {})",
        terms.join(" OR ")
    )
}
