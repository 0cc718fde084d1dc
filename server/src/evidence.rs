//! Evidence use cases (DESIGN §5, issue 4): what happens to a photo when its upload
//! completes, and the evidence flags of a visit.
//!
//! - [`complete_upload`] is the one completion path of a photo upload, whichever edge carried
//!   the bytes. Its blocking step, [`vet_and_store_photo`], verifies size and SHA-256, then
//!   runs [`photo::prepare_file`] on the staged file *before* the blob exists. A refused
//!   photo (SVG, polyglot, HEIC, bomb, …) leaves nothing behind; an accepted one gets its
//!   blob file and display copy and thumbnail, then its metadata row, and only then its blob
//!   row, which is what makes it visible and approvable. The thumbnail benchmark calls the
//!   same function, so it measures what production runs.
//! - [`refresh_after_push_in`] and [`refresh_for_blob_in`] say which visits' flags to
//!   recompute; the store runs them inside the push's (or the upload completion's) own write
//!   transaction through [`FlagWork`], which gathers the inputs of all those visits at once
//!   (a cadre's visits around the batch in one index range), runs the pure
//!   [`fieldsync_model::evidence::evaluate`] with the configured thresholds ([`flags_of`])
//!   and keeps the flags with the revision: one durable commit per push, not one per visit.
//!   Flags inform reviewers; they never reject or block anything, and failing to compute them
//!   never fails the push or upload that triggered it (the store discards the flag work in a
//!   savepoint and commits the rest).
//!
//! Device clock skew is read from the device's latest heartbeat (its clock against the
//! server's when the heartbeat arrived), not from the visit's `recorded_at_device` against
//! the push time: a phone that recorded offline and synced days later is not wrong about the
//! time. The heartbeat is used only when it arrived within [`SKEW_READING_MAX_AGE`] of the
//! revision's submission; a retried batch carries the heartbeat of its first attempt, which a
//! fresher one (every pull sends one) soon replaces. A heartbeat only shows the clock at
//! sync time, so the model also compares the times the phone wrote with the satellite times
//! the visit carries (the fix's GNSS time, each in-app photo's EXIF GPS time against the
//! record's `captured_at_device`): a clock set back to record and restored before syncing is
//! caught there.

use fieldsync_model::codes::VisitMode;
use fieldsync_model::evidence::{self, CadreVisitSummary, EvidenceFlag, PhotoEvidence};
use fieldsync_model::time_util::BEIJING;
use time::Duration;

use crate::AppState;
use crate::error::ServiceError;
use crate::media::blobs::{BlobError, BlobStore, Derived};
use crate::media::photo::{self, Limits, PhotoRejected, Prepared};
use fieldsync_model::sync::MutationOutcome;

use crate::store::{
    CaptureTime, EvidenceInputs, FlagTarget, PhotoMeta, PushResult, StoreResult, UploadRecord,
};

/// Longest side of the display copy the console shows, in pixels: enough to read a door
/// plate or a face on a laptop screen, a fraction of a 12 MP original.
pub const DISPLAY_LONGEST_SIDE: u32 = 1600;

/// A heartbeat further than this from a revision's submission says nothing about the clock
/// that recorded it.
pub const SKEW_READING_MAX_AGE: Duration = Duration::days(1);

/// Why an upload could not be completed.
#[derive(Debug, thiserror::Error)]
pub enum CompleteError {
    /// Completion was asked for before every byte arrived.
    #[error("upload_id: only {committed} of {size} bytes received")]
    Incomplete { committed: u64, size: u64 },
    /// The bytes do not have the declared size or SHA-256; the upload was rewound to 0.
    #[error("{0}")]
    Mismatch(BlobError),
    /// The bytes are not an acceptable photo; the upload was rewound to 0 and the bytes
    /// discarded.
    #[error("photo rejected ({code}): {message}", code = .0.code(), message = .0)]
    Rejected(PhotoRejected),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl From<crate::store::StoreError> for CompleteError {
    fn from(error: crate::store::StoreError) -> Self {
        Self::Service(error.into())
    }
}

impl From<BlobError> for CompleteError {
    fn from(error: BlobError) -> Self {
        Self::Service(error.into())
    }
}

/// Complete an upload whose bytes have all arrived (the caller holds the upload's lock).
/// Idempotent: a complete upload is left as it is, and a blob that already exists is reused.
pub async fn complete_upload(state: &AppState, upload: &UploadRecord) -> Result<(), CompleteError> {
    if upload.complete {
        return Ok(());
    }
    if upload.committed_offset != upload.size_bytes {
        return Err(CompleteError::Incomplete {
            committed: upload.committed_offset,
            size: upload.size_bytes,
        });
    }
    let blobs = state.blobs.clone();
    let (upload_id, sha256, size) = (
        upload.upload_id.clone(),
        upload.sha256.clone(),
        upload.size_bytes,
    );
    let vetted =
        tokio::task::spawn_blocking(move || vet_and_store_photo(&blobs, &upload_id, &sha256, size))
            .await
            .map_err(|error| {
                tracing::error!(%error, "photo preparation task failed");
                ServiceError::Internal
            })?;
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
            return Err(CompleteError::Rejected(rejected));
        }
        Err(mismatch @ (BlobError::SizeMismatch { .. } | BlobError::HashMismatch { .. })) => {
            // The staged bytes can never verify: start over rather than keep them.
            state
                .store
                .set_upload_offset(&upload.upload_id, 0, state.clock.now())
                .await?;
            return Err(CompleteError::Mismatch(mismatch));
        }
        Err(other) => return Err(other.into()),
    };
    state
        .store
        .save_photo_meta(&upload.sha256, photo_meta(&prepared))
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

/// The blocking part of [`complete_upload`], one function so that the thumbnail benchmark
/// (`server/benches/thumbnails.rs`) times exactly what production runs: verify the staged
/// upload's size and SHA-256, [`photo::prepare_file`] it at [`DISPLAY_LONGEST_SIDE`] (one
/// decode gives the display copy, the thumbnail and the pHash), publish the blob, then write
/// and fsync both derived copies. `Ok(Err(_))` is a refused photo (nothing is stored).
pub fn vet_and_store_photo(
    blobs: &BlobStore,
    upload_id: &str,
    sha256: &str,
    size: u64,
) -> Result<Result<Prepared, PhotoRejected>, BlobError> {
    let vetted = blobs.commit_vetted(upload_id, sha256, size, |path| {
        photo::prepare_file(path, &Limits::default(), DISPLAY_LONGEST_SIDE)
    })?;
    if let Ok(prepared) = &vetted {
        blobs.write_derived(sha256, Derived::Thumbnail, &prepared.thumbnail_jpeg)?;
        blobs.write_derived(sha256, Derived::Display, &prepared.display_jpeg)?;
    }
    Ok(vetted)
}

/// The stored form of what [`photo::prepare`] found.
pub fn photo_meta(prepared: &Prepared) -> PhotoMeta {
    let exif = prepared.exif.clone().unwrap_or_default();
    PhotoMeta {
        mime_type: prepared.inspected.kind.mime().to_owned(),
        width: prepared.inspected.width,
        height: prepared.inspected.height,
        exif_time: exif.captured,
        exif_gps: exif.gps.map(|gps| (gps.latitude, gps.longitude)),
        gps_time: exif.gps_time,
        make: exif.make,
        model: exif.model,
        orientation: exif.orientation,
        phash: prepared.phash.0,
        exif_damaged: exif.damaged,
    }
}

/// The same cadre's visits whose flags this visit can change: the nearest one before and
/// after it (the travel-speed pairs) and, when this visit moves its Beijing day across the
/// per-day limit, the other visits of that day. Past the limit the others are already
/// flagged and only their count would change; leaving them keeps a backlog of one day's
/// visits from re-evaluating every visit of the day for each one sent (the count shown on
/// the others then lags until they are next evaluated).
fn affected_neighbours(inputs: &EvidenceInputs, max_in_person_per_day: u32) -> Vec<String> {
    let checkin = inputs.visit.checkin_at;
    let day = checkin.to_offset(BEIJING).date();
    let before = inputs
        .cadre_visits
        .iter()
        .filter(|other| other.checkin_at < checkin)
        .max_by_key(|other| other.checkin_at);
    let after = inputs
        .cadre_visits
        .iter()
        .filter(|other| other.checkin_at >= checkin)
        .min_by_key(|other| other.checkin_at);
    let same_day: Vec<&CadreVisitSummary> = inputs
        .cadre_visits
        .iter()
        .filter(|other| other.checkin_at.to_offset(BEIJING).date() == day)
        .collect();
    let in_person_that_day = same_day.iter().filter(|other| other.in_person).count()
        + usize::from(inputs.visit.mode == VisitMode::InPerson);
    let limit = max_in_person_per_day as usize;
    let crossing = in_person_that_day == limit || in_person_that_day == limit + 1;
    let mut affected: Vec<String> = before
        .into_iter()
        .chain(after)
        .chain(same_day.into_iter().filter(|_| crossing))
        .map(|other| other.visit_id.clone())
        .collect();
    affected.sort();
    affected.dedup();
    affected
}

/// The flags of gathered inputs (pure).
pub fn flags_of(
    inputs: &EvidenceInputs,
    settings: &evidence::EvidenceSettings,
) -> Vec<EvidenceFlag> {
    // Only photos whose bytes arrived (and were accepted) are evidence; the ones still
    // uploading are left out, which `evaluate` reads as "judge them when they arrive" (no
    // PhotoMissing while an upload is in flight). A blob stored before metadata extraction
    // existed has no metadata and is left out the same way rather than flagged as lacking
    // EXIF.
    let photos: Vec<PhotoEvidence> = inputs
        .photos
        .iter()
        .filter(|photo| photo.arrived)
        .filter_map(|photo| {
            let meta = photo.meta.as_ref()?;
            Some(PhotoEvidence {
                photo_id: photo.record.photo_id.clone(),
                sha256: photo.record.sha256.clone(),
                phash: Some(meta.phash),
                exif_time: meta.exif_time.map(|captured| match captured {
                    CaptureTime::Offset(instant) => instant,
                    // No offset tag: phones in China run on Beijing time.
                    CaptureTime::Local(local) => local.assume_offset(BEIJING),
                }),
                exif_gps: meta.exif_gps,
                in_app_camera: photo.record.in_app_camera,
                exif_damaged: meta.exif_damaged,
                gps_time: meta.gps_time,
                device_time: photo.record.captured_at_device,
            })
        })
        .collect();
    let device_skew = inputs
        .device_clock
        .filter(|reading| (reading.server_time - inputs.submitted_at).abs() <= SKEW_READING_MAX_AGE)
        .map(|reading| evidence::clock_skew(reading.device_time, reading.server_time));
    evidence::evaluate(
        &inputs.visit,
        inputs.household_location,
        &photos,
        &inputs.other_photos,
        &inputs.cadre_visits,
        &evidence::Receipt {
            first_submitted_at: inputs.first_submitted_at,
            device_skew,
        },
        settings,
    )
}

/// What the flag work of one write transaction reads and writes. Each store implements it
/// over its open transaction, so a push's flags commit with the push (issue 11 §2: one
/// durable commit per push, not one per visit) and [`refresh_after_push_in`] stays the one
/// description of *which* visits are re-evaluated.
pub trait FlagWork {
    /// Ids of the visits with a photo record of this file, in id order, or `None` while
    /// its blob is not stored.
    fn visits_using_stored_blob(&mut self, sha256: &str) -> StoreResult<Option<Vec<String>>>;
    /// The inputs of each visit's latest revision (`None` for an unknown visit), in the
    /// order asked. Gathered together so a cadre's visits around a batch are read once.
    /// A failure for one visit (a row that no longer decodes) is that visit's alone.
    #[allow(clippy::type_complexity)]
    fn inputs(
        &mut self,
        visit_ids: &[String],
        near_duplicate_max_bits: u32,
    ) -> StoreResult<Vec<(String, StoreResult<Option<EvidenceInputs>>)>>;
    /// Keep the flags of one revision, replacing earlier ones.
    fn save_flags(
        &mut self,
        visit_id: &str,
        revision: u32,
        flags: &[EvidenceFlag],
    ) -> StoreResult<()>;
}

/// Evaluate and keep the flags of `visit_ids`, returning the ids of the neighbours whose
/// flags they can change ([`affected_neighbours`]). A visit whose inputs cannot be gathered
/// is logged and skipped (flags never fail the work that triggered them); an error keeping
/// flags is returned, and the caller discards the flag work as a whole.
fn refresh_visits(
    work: &mut dyn FlagWork,
    visit_ids: &[String],
    settings: &evidence::EvidenceSettings,
) -> StoreResult<Vec<String>> {
    let mut neighbours = Vec::new();
    for (visit_id, inputs) in work.inputs(visit_ids, settings.near_duplicate_max_bits)? {
        match inputs {
            Ok(Some(inputs)) => {
                let flags = flags_of(&inputs, settings);
                work.save_flags(&visit_id, inputs.visit.revision, &flags)?;
                for flag in &flags {
                    metrics::counter!(crate::monitoring::EVIDENCE_FLAGS, "flag" => flag.code())
                        .increment(1);
                }
                neighbours.extend(affected_neighbours(
                    &inputs,
                    settings.max_in_person_visits_per_day,
                ));
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%error, %visit_id, "could not compute evidence flags");
            }
        }
    }
    Ok(neighbours)
}

/// After a blob arrived: every visit with a photo of it (its own visit gains evidence, and
/// visits sharing the file now show the reuse), inside the completion's one transaction.
pub fn refresh_for_blob_in(
    work: &mut dyn FlagWork,
    sha256: &str,
    settings: &evidence::EvidenceSettings,
) -> StoreResult<()> {
    let visit_ids = work.visits_using_stored_blob(sha256)?.unwrap_or_default();
    refresh_visits(work, &visit_ids, settings).map(drop)
}

/// Inside a push's write transaction, after the batch was applied: the visits it submitted
/// and the visits it added photos to, plus the other visits that use an already stored file
/// it attached (so both sides of a reuse are flagged), plus the same cadre's visits around
/// each of those (a visit synced late can make an earlier neighbour's travel impossible or
/// its day too full).
pub fn refresh_after_push_in(
    work: &mut dyn FlagWork,
    visit_ids: &[String],
    photo_sha256s: &[String],
    settings: &evidence::EvidenceSettings,
) -> StoreResult<()> {
    let mut touched: Vec<String> = visit_ids.to_vec();
    for sha256 in photo_sha256s {
        if let Some(others) = work.visits_using_stored_blob(sha256)? {
            touched.extend(others);
        }
    }
    touched.sort();
    touched.dedup();
    let mut neighbours = refresh_visits(work, &touched, settings)?;
    neighbours.sort();
    neighbours.dedup();
    // One step only: the travel and per-day rules compare a visit with its own day and its
    // nearest neighbours, all of which are in the list.
    neighbours.retain(|visit_id| touched.binary_search(visit_id).is_err());
    refresh_visits(work, &neighbours, settings).map(drop)
}

/// The visits and files of a push whose flags must be recomputed: the targets whose
/// mutation was stored. A `Duplicate` counts too: it is the retry of a batch whose first
/// response may never have been sent.
pub fn stored_targets(result: &PushResult, targets: &[FlagTarget]) -> (Vec<String>, Vec<String>) {
    let stored = |seq: u64| {
        result.outcomes.iter().any(|(outcome_seq, outcome)| {
            *outcome_seq == seq
                && matches!(
                    outcome,
                    MutationOutcome::Applied | MutationOutcome::Duplicate
                )
        })
    };
    let mut visit_ids = Vec::new();
    let mut photo_sha256s = Vec::new();
    for target in targets {
        if stored(target.seq) {
            visit_ids.push(target.visit_id.clone());
            photo_sha256s.extend(target.photo_sha256.clone());
        }
    }
    (visit_ids, photo_sha256s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PHOTOS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/photos");

    /// Stage `bytes` as PutChunk would (256 KiB chunks) and return the upload id and SHA-256.
    fn staged(blobs: &BlobStore, bytes: &[u8]) -> (String, String) {
        use sha2::Digest;
        let upload_id = uuid::Uuid::now_v7().to_string();
        let mut offset = 0;
        for chunk in bytes.chunks(256 * 1024) {
            offset = blobs.append_chunk(&upload_id, offset, chunk).unwrap();
        }
        (upload_id, hex::encode(sha2::Sha256::digest(bytes)))
    }

    fn size_of(jpeg: &[u8]) -> (u32, u32) {
        let inspected = photo::inspect(jpeg, &Limits::default()).unwrap();
        (inspected.width, inspected.height)
    }

    #[test]
    fn completion_stores_the_blob_and_upright_display_and_thumbnail_copies() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobStore::open(dir.path()).unwrap();
        // (file, upright display size, upright thumbnail size): an 8 MP phone photo is brought
        // down to 1600 px, and a stored 450×600 photo with orientation 6 comes out landscape
        // and is never enlarged.
        for (name, display, thumbnail) in [
            ("mobile_jolla.jpg", (1600, 1200), (320, 240)),
            ("orientation_landscape_6.jpg", (600, 450), (320, 240)),
        ] {
            let bytes = std::fs::read(format!("{PHOTOS}/{name}")).unwrap();
            let (upload_id, sha256) = staged(&blobs, &bytes);
            let prepared = vet_and_store_photo(&blobs, &upload_id, &sha256, bytes.len() as u64)
                .unwrap()
                .unwrap_or_else(|refused| panic!("{name}: {refused}"));
            assert!(blobs.contains(&sha256), "{name}");
            assert_eq!(
                blobs.read(&sha256).unwrap(),
                bytes,
                "{name}: byte-exact original"
            );
            let stored_display = blobs
                .read_derived(&sha256, Derived::Display)
                .unwrap()
                .unwrap();
            let stored_thumbnail = blobs
                .read_derived(&sha256, Derived::Thumbnail)
                .unwrap()
                .unwrap();
            assert_eq!(stored_display, prepared.display_jpeg, "{name}");
            assert_eq!(stored_thumbnail, prepared.thumbnail_jpeg, "{name}");
            assert_eq!(size_of(&stored_display), display, "{name}");
            assert_eq!(size_of(&stored_thumbnail), thumbnail, "{name}");
        }
    }

    #[test]
    fn a_refused_photo_leaves_no_blob_and_no_copies() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobStore::open(dir.path()).unwrap();
        let svg = b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>";
        let (upload_id, sha256) = staged(&blobs, svg);
        let refused = vet_and_store_photo(&blobs, &upload_id, &sha256, svg.len() as u64).unwrap();
        assert!(refused.is_err());
        assert!(!blobs.contains(&sha256));
        assert_eq!(blobs.read_derived(&sha256, Derived::Display).unwrap(), None);
        assert_eq!(
            blobs.staged_len(&upload_id).unwrap(),
            0,
            "staging file discarded"
        );
    }
}
