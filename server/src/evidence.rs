//! Evidence flags (DESIGN §5, issue 4): which visits a push or an upload makes stale, and
//! their flags. (What happens to a photo when its upload completes is
//! [`crate::media::uploads::complete`] and [`crate::media::pipeline`].)
//!
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
use fieldsync_model::sync::MutationOutcome;
use fieldsync_model::time_util::BEIJING;
use time::Duration;

use crate::store::{CaptureTime, EvidenceInputs, FlagTarget, PushResult, StoreResult};

/// A heartbeat further than this from a revision's submission says nothing about the clock
/// that recorded it.
pub const SKEW_READING_MAX_AGE: Duration = Duration::days(1);

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
///
/// The methods are async so PostgreSQL can await its connection; SQLite's complete at once
/// inside its blocking writer and are driven by [`run_without_waiting`].
pub(crate) trait FlagWork {
    /// Ids of the visits with a photo record of this file, in id order, or `None` while
    /// its blob is not stored.
    async fn visits_using_stored_blob(&mut self, sha256: &str) -> StoreResult<Option<Vec<String>>>;
    /// The inputs of each visit's latest revision (`None` for an unknown visit), in the
    /// order asked. Gathered together so a cadre's visits around a batch are read once.
    /// A failure for one visit (a row that no longer decodes) is that visit's alone.
    #[allow(clippy::type_complexity)]
    async fn inputs(
        &mut self,
        visit_ids: &[String],
        near_duplicate_max_bits: u32,
    ) -> StoreResult<Vec<(String, StoreResult<Option<EvidenceInputs>>)>>;
    /// Keep the flags of one revision, replacing earlier ones.
    async fn save_flags(
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
async fn refresh_visits(
    work: &mut impl FlagWork,
    visit_ids: &[String],
    settings: &evidence::EvidenceSettings,
) -> StoreResult<Vec<String>> {
    let mut neighbours = Vec::new();
    for (visit_id, inputs) in work
        .inputs(visit_ids, settings.near_duplicate_max_bits)
        .await?
    {
        match inputs {
            Ok(Some(inputs)) => {
                let flags = flags_of(&inputs, settings);
                work.save_flags(&visit_id, inputs.visit.revision, &flags)
                    .await?;
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
pub(crate) async fn refresh_for_blob_in(
    work: &mut impl FlagWork,
    sha256: &str,
    settings: &evidence::EvidenceSettings,
) -> StoreResult<()> {
    let visit_ids = work
        .visits_using_stored_blob(sha256)
        .await?
        .unwrap_or_default();
    refresh_visits(work, &visit_ids, settings).await.map(drop)
}

/// Inside a push's write transaction, after the batch was applied: the visits it submitted
/// and the visits it added photos to, plus the other visits that use an already stored file
/// it attached (so both sides of a reuse are flagged), plus the same cadre's visits around
/// each of those (a visit synced late can make an earlier neighbour's travel impossible or
/// its day too full).
pub(crate) async fn refresh_after_push_in(
    work: &mut impl FlagWork,
    visit_ids: &[String],
    photo_sha256s: &[String],
    settings: &evidence::EvidenceSettings,
) -> StoreResult<()> {
    let mut touched: Vec<String> = visit_ids.to_vec();
    for sha256 in photo_sha256s {
        if let Some(others) = work.visits_using_stored_blob(sha256).await? {
            touched.extend(others);
        }
    }
    touched.sort();
    touched.dedup();
    let mut neighbours = refresh_visits(work, &touched, settings).await?;
    neighbours.sort();
    neighbours.dedup();
    // One step only: the travel and per-day rules compare a visit with its own day and its
    // nearest neighbours, all of which are in the list.
    neighbours.retain(|visit_id| touched.binary_search(visit_id).is_err());
    refresh_visits(work, &neighbours, settings).await.map(drop)
}

/// Drive flag work whose every step completes at once (SQLite's, inside its blocking
/// writer) to its end. Work that would wait is refused rather than blocked on: it would
/// be a store implementing [`FlagWork`] with I/O that is not synchronous.
pub(crate) fn run_without_waiting<T>(
    work: impl std::future::Future<Output = StoreResult<T>>,
) -> StoreResult<T> {
    let mut work = std::pin::pin!(work);
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match work.as_mut().poll(&mut context) {
        std::task::Poll::Ready(outcome) => outcome,
        std::task::Poll::Pending => Err(crate::store::StoreError::Join(
            "synchronous flag work waited for I/O".into(),
        )),
    }
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
