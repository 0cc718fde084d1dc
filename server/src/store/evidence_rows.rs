//! The backend-neutral half of gathering a visit's evidence inputs (issue 11 §2): exact
//! instants split into the narrow visit columns both backends store, a cadre's visits
//! around a batch read as a few merged check-in windows, and each visit's own window cut
//! out of them. Each backend only reads the rows.

use std::collections::{BTreeMap, HashMap, HashSet};

use fieldsync_model::CodeList;
use fieldsync_model::codes::Crs;
use fieldsync_model::evidence::CadreVisitSummary;
use fieldsync_model::household::GeoPoint;
use fieldsync_model::visit::Visit;
use time::OffsetDateTime;

use fieldsync_model::sync::{MutationOutcome, MutationPayload};

use crate::store::{
    CADRE_VISIT_WINDOW, EvidenceInputs, PushAction, PushBatch, PushResult, StoreError, StoreResult,
    to_millis,
};

/// Milliseconds as stored, and the nanoseconds they dropped (the evidence columns).
pub(crate) fn split_instant(instant: OffsetDateTime) -> StoreResult<(i64, i64)> {
    let millis = to_millis(instant)?;
    let below = instant.unix_timestamp_nanos() - i128::from(millis) * 1_000_000;
    // |below| < 1 ms by construction.
    Ok((millis, below as i64))
}

/// The instant [`split_instant`] split.
pub(crate) fn join_instant(millis: i64, below_ns: i64) -> StoreResult<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000 + i128::from(below_ns))
        .map_err(|error| {
            StoreError::Corrupt(format!("timestamp {millis} ms {below_ns} ns: {error}"))
        })
}

/// The latest revision of a visit as the evidence rules start from it.
pub(crate) struct OwnVisit {
    pub visit: Visit,
    pub author: String,
    pub device_id: String,
    pub household_id: String,
    pub submitted_at: i64,
    /// The server's receipt of the first revision, for the 补录 check.
    pub first_submitted_at: i64,
}

/// Visits a push has just stored, by id: the flag work of that push starts from these
/// instead of reading their bodies back and decoding them (most of a batch's flag inputs).
pub(crate) type PushedVisits<'a> = HashMap<&'a str, &'a Visit>;

/// The visits `batch` stored, as `result` says. Only those applied now: a rejected entry
/// may carry another body under a stored id and revision.
pub(crate) fn pushed_visits<'a>(batch: &'a PushBatch, result: &PushResult) -> PushedVisits<'a> {
    let applied: HashSet<u64> = result
        .outcomes
        .iter()
        .filter(|(_, outcome)| matches!(outcome, MutationOutcome::Applied))
        .map(|(seq, _)| *seq)
        .collect();
    batch
        .entries
        .iter()
        .filter(|entry| applied.contains(&entry.seq))
        .filter_map(|entry| match &entry.action {
            PushAction::Apply(MutationPayload::SubmitVisit(visit)) => {
                Some((visit.visit_id.as_str(), visit))
            }
            _ => None,
        })
        .collect()
}

/// One of a cadre's visits (latest revision) as the travel and per-day rules see it; `Err`
/// for a row that cannot be read (its own fault, reported when a window includes it).
pub(crate) struct CadreRow {
    pub checkin_at: OffsetDateTime,
    pub summary: StoreResult<CadreVisitSummary>,
}

/// The narrow evidence columns of one stored visit revision.
pub(crate) struct CadreColumns {
    pub visit_id: String,
    pub checkin_at_ms: i64,
    pub checkin_sub_ms_ns: i64,
    pub checkout_at_ms: i64,
    pub checkout_sub_ms_ns: i64,
    /// `(lat, lon, Crs code)` as sent; converted to WGS-84 here.
    pub gps: Option<(f64, f64, i32)>,
    pub in_person: bool,
}

impl CadreColumns {
    pub(crate) fn into_row(self) -> StoreResult<CadreRow> {
        let checkin_at = join_instant(self.checkin_at_ms, self.checkin_sub_ms_ns)?;
        let summary = (|| {
            let gps = match self.gps {
                Some((lat, lon, crs)) => {
                    let crs = Crs::from_code(crs).ok_or_else(|| {
                        StoreError::Corrupt(format!("visit {}: crs {crs}", self.visit_id))
                    })?;
                    let point = fieldsync_model::geo::to_wgs84(&GeoPoint { lat, lon, crs });
                    Some((point.lat, point.lon))
                }
                None => None,
            };
            Ok(CadreVisitSummary {
                visit_id: self.visit_id.clone(),
                checkin_at,
                checkout_at: join_instant(self.checkout_at_ms, self.checkout_sub_ms_ns)?,
                gps,
                in_person: self.in_person,
            })
        })();
        Ok(CadreRow {
            checkin_at,
            summary,
        })
    }
}

/// The cadre's visits within [`CADRE_VISIT_WINDOW`] of `own` (itself excluded), in visit id
/// order as the per-visit query always returned them; `rows` are in check-in order.
pub(crate) fn window_of(rows: &[CadreRow], own: &Visit) -> StoreResult<Vec<CadreVisitSummary>> {
    let earliest = own.checkin_at - CADRE_VISIT_WINDOW;
    let latest = own.checkin_at + CADRE_VISIT_WINDOW;
    let start = rows.partition_point(|row| row.checkin_at < earliest);
    let end = rows.partition_point(|row| row.checkin_at <= latest);
    let mut window = Vec::with_capacity(end.saturating_sub(start));
    for row in &rows[start..end.max(start)] {
        match &row.summary {
            Ok(summary) if summary.visit_id == own.visit_id => {}
            Ok(summary) => window.push(summary.clone()),
            Err(error) => return Err(StoreError::Corrupt(error.to_string())),
        }
    }
    window.sort_by(|a, b| a.visit_id.cmp(&b.visit_id));
    Ok(window)
}

/// An inclusive range of Unix milliseconds.
pub(crate) type MillisRange = (i64, i64);

/// For the visits of a batch (as read, failures included): each cadre's check-in windows
/// (milliseconds) to read, merged where they overlap, so a cadre's visits around the whole
/// batch are a few range reads.
pub(crate) fn cadre_windows(
    owns: &[(String, StoreResult<Option<OwnVisit>>)],
) -> StoreResult<Vec<(String, Vec<MillisRange>)>> {
    let mut checkins: BTreeMap<&str, Vec<OffsetDateTime>> = BTreeMap::new();
    for (_, own) in owns {
        if let Ok(Some(own)) = own {
            checkins
                .entry(own.author.as_str())
                .or_default()
                .push(own.visit.checkin_at);
        }
    }
    checkins
        .into_iter()
        .map(|(author, times)| Ok((author.to_owned(), merged_windows(times)?)))
        .collect()
}

/// One visit's gathered inputs, unless gathering failed in a way that is not the visit's
/// own: a fault of its rows stays that visit's, a database fault stops the whole work.
pub(crate) fn own_fault_only(
    inputs: StoreResult<Option<EvidenceInputs>>,
) -> StoreResult<StoreResult<Option<EvidenceInputs>>> {
    match inputs {
        Err(error @ (StoreError::Database { .. } | StoreError::Join(_))) => Err(error),
        other => Ok(other),
    }
}

/// Check-in windows (milliseconds) of a cadre's visits merged where they overlap: one
/// range query each.
fn merged_windows(mut checkins: Vec<OffsetDateTime>) -> StoreResult<Vec<MillisRange>> {
    checkins.sort();
    let window_ms = CADRE_VISIT_WINDOW.whole_milliseconds() as i64;
    let mut merged: Vec<MillisRange> = Vec::new();
    for checkin in checkins {
        // One millisecond of slack each side: stored milliseconds truncate toward zero.
        let millis = to_millis(checkin)?;
        let (from, to) = (
            millis.saturating_sub(window_ms + 1),
            millis.saturating_add(window_ms + 1),
        );
        match merged.last_mut() {
            Some(last) if from <= last.1 => last.1 = last.1.max(to),
            _ => merged.push((from, to)),
        }
    }
    Ok(merged)
}

/// Whether another visit's photo is evidence against one of ours: the same file, or a
/// perceptual hash within `max_bits` of one of `own_hashes`.
pub(crate) fn is_reuse(
    other_sha256: &str,
    other_phash: Option<u64>,
    own_sha256s: &HashSet<String>,
    own_hashes: &[u64],
    max_bits: u32,
) -> bool {
    own_sha256s.contains(&other_sha256.to_ascii_lowercase())
        || other_phash.is_some_and(|theirs| {
            own_hashes
                .iter()
                .any(|ours| (ours ^ theirs).count_ones() <= max_bits)
        })
}
