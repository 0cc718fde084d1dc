//! SQLite side of the evidence flags (issue 11 §2): the inputs of many visits gathered in
//! one pass, the flag work that runs inside a push's (or an upload completion's) own write
//! transaction, and the narrow visit columns of migration 0019 that make both cheap.
//!
//! The travel and per-day rules need the same cadre's visits around each visit. They used
//! to come from decoding every visit body of three months, once per visit; now a cadre's
//! visits around a whole batch are one range scan of the covering index
//! `visits_by_author_checkin`, and each visit takes its own window out of that list. Times
//! are exact (milliseconds plus the nanoseconds below), so the rules see the same instants
//! as in the body. A row whose columns were never filled (a body that did not decode when
//! migration 0019 ran) is read from its body as before.

use std::collections::{HashMap, HashSet};

use fieldsync_model::CodeList;
use fieldsync_model::codes::VisitMode;
use fieldsync_model::evidence::{CadreVisitSummary, EvidenceFlag, OtherPhotoUse};
use fieldsync_model::household::GeoPoint;
use fieldsync_model::visit::Visit;
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::{corrupt, decode_json, encode_json, from_millis, household_place};
use crate::evidence::FlagWork;
use crate::store::evidence_rows::{
    CadreColumns, CadreRow, OwnVisit, PushedVisits, cadre_windows, is_reuse, own_fault_only,
    split_instant, window_of,
};
use crate::store::media::near_duplicate_candidates;
use crate::store::media::sqlite::{PHOTO_META_COLUMNS, photo_meta_from_row, photo_meta_row};
use crate::store::{DeviceClockReading, EvidenceInputs, EvidencePhoto, StoreError, StoreResult};

/// The values migration 0019 copies out of a visit body.
pub(in crate::store) struct EvidenceColumns {
    pub checkin_at_ms: i64,
    pub checkin_sub_ms_ns: i64,
    pub checkout_at_ms: i64,
    pub checkout_sub_ms_ns: i64,
    /// `(lat, lon, Crs code)` as sent; converted to WGS-84 when read.
    pub gps: Option<(f64, f64, i32)>,
}

pub(in crate::store) fn evidence_columns(visit: &Visit) -> StoreResult<EvidenceColumns> {
    let (checkin_at_ms, checkin_sub_ms_ns) = split_instant(visit.checkin_at)?;
    let (checkout_at_ms, checkout_sub_ms_ns) = split_instant(visit.checkout_at)?;
    Ok(EvidenceColumns {
        checkin_at_ms,
        checkin_sub_ms_ns,
        checkout_at_ms,
        checkout_sub_ms_ns,
        gps: visit
            .gps
            .as_ref()
            .map(|fix| (fix.lat, fix.lon, fix.crs.code())),
    })
}

/// Migration 0019's backfill, in its transaction: SQL cannot read RFC 3339 nanoseconds
/// exactly, so the bodies are decoded here once. A body that does not decode keeps NULL
/// columns and is read from its body later, where it fails as it always did.
pub(in crate::store) fn backfill_evidence_columns(
    transaction: &Transaction<'_>,
) -> StoreResult<()> {
    let rows: Vec<(i64, String)> = {
        let mut statement = transaction.prepare("SELECT rowid, body FROM visits")?;
        let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    let mut update = transaction.prepare(
        "UPDATE visits SET checkin_at_ms = ?2, checkin_sub_ms_ns = ?3, checkout_at_ms = ?4,
                checkout_sub_ms_ns = ?5, gps_lat = ?6, gps_lon = ?7, gps_crs = ?8
         WHERE rowid = ?1",
    )?;
    for (rowid, body) in rows {
        let Ok(visit) = serde_json::from_str::<Visit>(&body) else {
            continue;
        };
        let Ok(columns) = evidence_columns(&visit) else {
            continue;
        };
        update.execute(params![
            rowid,
            columns.checkin_at_ms,
            columns.checkin_sub_ms_ns,
            columns.checkout_at_ms,
            columns.checkout_sub_ms_ns,
            columns.gps.map(|gps| gps.0),
            columns.gps.map(|gps| gps.1),
            columns.gps.map(|gps| gps.2),
        ])?;
    }
    Ok(())
}

/// The latest revision of `visit_id`. When `pushed` holds that very revision (the push
/// being flagged stored it), its body is not read back.
fn own_visit(
    connection: &Connection,
    visit_id: &str,
    pushed: Option<&Visit>,
) -> StoreResult<Option<OwnVisit>> {
    // The first revision's receipt is one primary-key probe beside the latest revision.
    let row: Option<(String, String, String, u32, i64, i64)> = connection
        .prepare_cached(
            "SELECT household_id, author_user_id, device_id, revision, submitted_at,
                    (SELECT first.submitted_at FROM visits AS first
                     WHERE first.visit_id = ?1 ORDER BY first.revision LIMIT 1)
             FROM visits WHERE visit_id = ?1 ORDER BY revision DESC LIMIT 1",
        )?
        .query_row(params![visit_id], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
                row.get(5)?,
            ))
        })
        .optional()?;
    let Some((household_id, author, device_id, revision, submitted_at, first_submitted_at)) = row
    else {
        return Ok(None);
    };
    let visit = match pushed {
        Some(pushed) if pushed.revision == revision => pushed.clone(),
        _ => {
            let body: String = connection
                .prepare_cached("SELECT body FROM visits WHERE visit_id = ?1 AND revision = ?2")?
                .query_row(params![visit_id, revision], |row| row.get(0))?;
            decode_json(&body, "visit")?
        }
    };
    Ok(Some(OwnVisit {
        visit,
        author,
        device_id,
        household_id,
        submitted_at,
        first_submitted_at,
    }))
}

/// A cadre's visits (latest revisions) checked in within `[from_ms, to_ms]`, in check-in
/// order.
fn cadre_rows(
    connection: &Connection,
    author: &str,
    from_ms: i64,
    to_ms: i64,
) -> StoreResult<Vec<CadreRow>> {
    type Columns = (
        String,
        u32,
        i64,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        (Option<f64>, Option<f64>, Option<i32>, i32),
    );
    let mut statement = connection.prepare_cached(
        "SELECT v.visit_id, v.revision, v.checkin_at_ms, v.checkin_sub_ms_ns, v.checkout_at_ms,
                v.checkout_sub_ms_ns, v.gps_lat, v.gps_lon, v.gps_crs, v.mode
         FROM visits v INDEXED BY visits_by_author_checkin
         WHERE v.author_user_id = ?1 AND v.checkin_at_ms BETWEEN ?2 AND ?3
           AND NOT EXISTS (SELECT 1 FROM visits newer
                           WHERE newer.visit_id = v.visit_id AND newer.revision > v.revision)",
    )?;
    let rows = statement.query_map(params![author, from_ms, to_ms], |row| {
        Ok::<Columns, rusqlite::Error>((
            row.get(0)?,
            row.get(1)?,
            row.get(2)?,
            row.get(3)?,
            row.get(4)?,
            row.get(5)?,
            (row.get(6)?, row.get(7)?, row.get(8)?, row.get(9)?),
        ))
    })?;
    let in_person = VisitMode::InPerson.code();
    let mut found = Vec::new();
    for row in rows {
        let (visit_id, revision, checkin_ms, checkin_ns, checkout_ms, checkout_ns, rest) = row?;
        let (lat, lon, crs, mode) = rest;
        let filled = match (checkin_ns, checkout_ms, checkout_ns) {
            (Some(checkin_ns), Some(checkout_ms), Some(checkout_ns)) => {
                Some((checkin_ns, checkout_ms, checkout_ns))
            }
            _ => None,
        };
        let row = match filled {
            Some((checkin_sub_ms_ns, checkout_at_ms, checkout_sub_ms_ns)) => CadreColumns {
                visit_id,
                checkin_at_ms: checkin_ms,
                checkin_sub_ms_ns,
                checkout_at_ms,
                checkout_sub_ms_ns,
                gps: match (lat, lon, crs) {
                    (Some(lat), Some(lon), Some(crs)) => Some((lat, lon, crs)),
                    _ => None,
                },
                in_person: mode == in_person,
            }
            .into_row()?,
            None => body_row(connection, &visit_id, revision, checkin_ms)?,
        };
        found.push(row);
    }
    found.sort_by_key(|row| row.checkin_at);
    Ok(found)
}

/// A cadre row read from its body (columns never filled): what every row was before 0019.
fn body_row(
    connection: &Connection,
    visit_id: &str,
    revision: u32,
    checkin_ms: i64,
) -> StoreResult<CadreRow> {
    let body: String = connection
        .prepare_cached("SELECT body FROM visits WHERE visit_id = ?1 AND revision = ?2")?
        .query_row(params![visit_id, revision], |row| row.get(0))?;
    Ok(match decode_json::<Visit>(&body, "visit") {
        Ok(other) => CadreRow {
            checkin_at: other.checkin_at,
            summary: Ok(CadreVisitSummary {
                checkin_at: other.checkin_at,
                checkout_at: other.checkout_at,
                gps: other.gps.map(|fix| {
                    let point = fieldsync_model::geo::to_wgs84(&GeoPoint {
                        lat: fix.lat,
                        lon: fix.lon,
                        crs: fix.crs,
                    });
                    (point.lat, point.lon)
                }),
                in_person: other.mode == VisitMode::InPerson,
                visit_id: other.visit_id,
            }),
        },
        Err(error) => CadreRow {
            checkin_at: from_millis(checkin_ms)?,
            summary: Err(error),
        },
    })
}

/// The inputs of the evidence checks of each visit's latest revision, in the order asked
/// (`None` for an unknown visit). A cadre's visits around all of them are read once.
#[allow(clippy::type_complexity)]
pub(in crate::store) fn evidence_inputs_many(
    connection: &Connection,
    visit_ids: &[String],
    pushed: &PushedVisits<'_>,
    near_duplicate_max_bits: u32,
) -> StoreResult<Vec<(String, StoreResult<Option<EvidenceInputs>>)>> {
    let owns: Vec<(String, StoreResult<Option<OwnVisit>>)> = visit_ids
        .iter()
        .map(|visit_id| {
            let pushed = pushed.get(visit_id.as_str()).copied();
            (visit_id.clone(), own_visit(connection, visit_id, pushed))
        })
        .collect();
    let mut cadres: HashMap<String, Vec<CadreRow>> = HashMap::new();
    for (author, windows) in cadre_windows(&owns)? {
        let mut rows = Vec::new();
        for (from, to) in windows {
            rows.extend(cadre_rows(connection, &author, from, to)?);
        }
        cadres.insert(author, rows);
    }
    let mut gathered = Vec::with_capacity(owns.len());
    // Households repeat within a batch, and a push comes from one device: each household's
    // location and each device's clock reading are read once.
    let mut locations = HashMap::new();
    let mut clocks = HashMap::new();
    for (visit_id, own) in owns {
        let inputs = match own {
            Ok(Some(own)) => {
                let rows = cadres.get(&own.author).map_or(&[][..], Vec::as_slice);
                assemble(
                    connection,
                    &mut locations,
                    &mut clocks,
                    own,
                    rows,
                    near_duplicate_max_bits,
                )
                .map(Some)
            }
            Ok(None) => Ok(None),
            Err(error) => Err(error),
        };
        let inputs = own_fault_only(inputs)?;
        gathered.push((visit_id, inputs));
    }
    Ok(gathered)
}

/// The rest of one visit's inputs: household location, photos, other visits' photos of the
/// same file or a close hash, and the device's clock.
fn assemble(
    connection: &Connection,
    locations: &mut HashMap<String, Option<GeoPoint>>,
    clocks: &mut HashMap<String, Option<DeviceClockReading>>,
    own: OwnVisit,
    cadre_rows: &[CadreRow],
    near_duplicate_max_bits: u32,
) -> StoreResult<EvidenceInputs> {
    let visit_id = own.visit.visit_id.clone();
    let household_location = match locations.get(&own.household_id) {
        Some(location) => *location,
        None => {
            let location = household_place(connection, &own.household_id)?
                .ok_or_else(|| {
                    corrupt(format!(
                        "visit {visit_id} names missing household {}",
                        own.household_id
                    ))
                })?
                .1;
            locations.insert(own.household_id.clone(), location);
            location
        }
    };

    // This visit's photos, with their metadata once the blob arrived.
    let mut photos = Vec::new();
    {
        let mut statement = connection.prepare_cached(&format!(
            "SELECT p.body, b.sha256 IS NOT NULL, m.sha256 IS NOT NULL, {PHOTO_META_COLUMNS}
             FROM photos p
             LEFT JOIN blobs b ON b.sha256 = p.sha256
             LEFT JOIN photo_meta m ON m.sha256 = p.sha256
             WHERE p.visit_id = ?1 ORDER BY p.rowid"
        ))?;
        let rows = statement.query_map(params![visit_id], |row| {
            let has_meta: bool = row.get(2)?;
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, bool>(1)?,
                if has_meta {
                    Some(photo_meta_row(row)?)
                } else {
                    None
                },
            ))
        })?;
        for row in rows {
            let (body, arrived, meta) = row?;
            photos.push(EvidencePhoto {
                record: decode_json(&body, "photo record")?,
                arrived,
                meta: match meta {
                    Some(meta) if arrived => Some(photo_meta_from_row(meta)?),
                    _ => None,
                },
            });
        }
    }

    // Photos of other visits: the same file, or a perceptual hash close to one of ours.
    // Candidates come from the indexed hash bands (migration 0014), so the work grows with
    // the photos that share a band, not with every photo stored; the Hamming distance is
    // checked below. A visit without photos has none to compare.
    let mut other_photos = Vec::new();
    if !photos.is_empty() {
        let own_hashes: Vec<u64> = photos
            .iter()
            .filter_map(|photo| photo.meta.as_ref().map(|meta| meta.phash))
            .collect();
        let own_shas: HashSet<String> = photos
            .iter()
            .map(|photo| photo.record.sha256.to_ascii_lowercase())
            .collect();
        let similar_hash = near_duplicate_candidates(&own_hashes, near_duplicate_max_bits);
        let mut statement = connection.prepare(&format!(
            "SELECT p.photo_id, p.visit_id, p.sha256, m.phash, v.household_id, v.business_month
             FROM photos p
             JOIN visits v ON v.visit_id = p.visit_id
                          AND v.revision = (SELECT MAX(latest.revision) FROM visits latest
                                            WHERE latest.visit_id = p.visit_id)
             LEFT JOIN photo_meta m ON m.sha256 = p.sha256
             WHERE p.visit_id <> ?1
               AND ({similar_hash}
                    OR p.sha256 IN (SELECT own.sha256 FROM photos own WHERE own.visit_id = ?1))
             ORDER BY p.rowid"
        ))?;
        let rows = statement.query_map(params![visit_id], |row| {
            Ok(OtherPhotoUse {
                photo_id: row.get(0)?,
                visit_id: row.get(1)?,
                sha256: row.get(2)?,
                phash: row.get::<_, Option<i64>>(3)?.map(|phash| phash as u64),
                household_id: row.get(4)?,
                month: row.get(5)?,
            })
        })?;
        for row in rows {
            let other = row?;
            if is_reuse(
                &other.sha256,
                other.phash,
                &own_shas,
                &own_hashes,
                near_duplicate_max_bits,
            ) {
                other_photos.push(other);
            }
        }
    }

    let cadre_visits = window_of(cadre_rows, &own.visit)?;

    let device_clock = match clocks.get(&own.device_id) {
        Some(reading) => *reading,
        None => {
            let reading = device_clock(connection, &own.device_id)?;
            clocks.insert(own.device_id.clone(), reading);
            reading
        }
    };

    Ok(EvidenceInputs {
        visit: own.visit,
        cadre_user_id: own.author,
        submitted_at: from_millis(own.submitted_at)?,
        first_submitted_at: from_millis(own.first_submitted_at)?,
        household_location,
        photos,
        other_photos,
        cadre_visits,
        device_clock,
    })
}

/// A device's latest clock reading (its heartbeat), if it sent one with a device time.
fn device_clock(
    connection: &Connection,
    device_id: &str,
) -> StoreResult<Option<DeviceClockReading>> {
    connection
        .prepare_cached(
            "SELECT device_time, server_time FROM device_heartbeats
             WHERE device_id = ?1 AND device_time IS NOT NULL",
        )?
        .query_row(params![device_id], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
        })
        .optional()?
        .map(|(device_time, server_time)| {
            Ok::<_, StoreError>(DeviceClockReading {
                device_time: from_millis(device_time)?,
                server_time: from_millis(server_time)?,
            })
        })
        .transpose()
}

/// Keep the flags of one revision; `NotFound` when it does not exist.
pub(in crate::store) fn save_flags_in(
    connection: &Connection,
    visit_id: &str,
    revision: u32,
    flags: &[EvidenceFlag],
) -> StoreResult<()> {
    // Flags that did not change are not rewritten: most visits have none, and a push
    // stores its visits with none already (`submit_visit`), so their row is written once.
    let changed = connection
        .prepare_cached(
            "UPDATE visits SET evidence_flags = ?3
             WHERE visit_id = ?1 AND revision = ?2 AND evidence_flags IS NOT ?3",
        )?
        .execute(params![visit_id, revision, encode_json(&flags)?])?;
    let exists = || -> StoreResult<bool> {
        Ok(connection
            .prepare_cached("SELECT 1 FROM visits WHERE visit_id = ?1 AND revision = ?2")?
            .query_row(params![visit_id, revision], |_| Ok(()))
            .optional()?
            .is_some())
    };
    if changed == 0 && !exists()? {
        return Err(StoreError::NotFound(format!(
            "visit {visit_id} revision {revision}"
        )));
    }
    Ok(())
}

/// [`FlagWork`] over an open write transaction.
pub(in crate::store) struct TransactionFlagWork<'a> {
    transaction: &'a Transaction<'a>,
    pushed: &'a PushedVisits<'a>,
    /// Visits whose flags this work kept (see [`flag_work_in_savepoint`]).
    saved: HashSet<String>,
}

impl FlagWork for TransactionFlagWork<'_> {
    async fn visits_using_stored_blob(&mut self, sha256: &str) -> StoreResult<Option<Vec<String>>> {
        let stored = self
            .transaction
            .prepare_cached("SELECT 1 FROM blobs WHERE sha256 = ?1")?
            .query_row(params![sha256], |_| Ok(()))
            .optional()?
            .is_some();
        if !stored {
            return Ok(None);
        }
        let mut statement = self.transaction.prepare_cached(
            "SELECT DISTINCT visit_id FROM photos WHERE sha256 = ?1 ORDER BY visit_id",
        )?;
        let ids = statement
            .query_map(params![sha256], |row| row.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        Ok(Some(ids))
    }

    async fn inputs(
        &mut self,
        visit_ids: &[String],
        near_duplicate_max_bits: u32,
    ) -> StoreResult<Vec<(String, StoreResult<Option<EvidenceInputs>>)>> {
        evidence_inputs_many(
            self.transaction,
            visit_ids,
            self.pushed,
            near_duplicate_max_bits,
        )
    }

    async fn save_flags(
        &mut self,
        visit_id: &str,
        revision: u32,
        flags: &[EvidenceFlag],
    ) -> StoreResult<()> {
        save_flags_in(self.transaction, visit_id, revision, flags)?;
        self.saved.insert(visit_id.to_owned());
        Ok(())
    }
}

/// Run flag work inside `transaction` under a savepoint: when it fails, only the flag work
/// is rolled back (and logged), so the push or upload it belongs to still commits.
/// `pushed` are the visits the transaction has just stored (empty outside a push).
pub(in crate::store) fn flag_work_in_savepoint(
    transaction: &Transaction<'_>,
    pushed: &PushedVisits<'_>,
    work: impl FnOnce(&mut TransactionFlagWork<'_>) -> StoreResult<()>,
) -> StoreResult<()> {
    transaction.execute_batch("SAVEPOINT evidence_flags")?;
    let mut flag_work = TransactionFlagWork {
        transaction,
        pushed,
        saved: HashSet::new(),
    };
    let kept = match work(&mut flag_work) {
        Ok(()) => {
            transaction.execute_batch("RELEASE evidence_flags")?;
            flag_work.saved
        }
        Err(error) => {
            tracing::warn!(%error, "could not compute evidence flags; the flags are left as they were");
            transaction.execute_batch("ROLLBACK TO evidence_flags; RELEASE evidence_flags")?;
            HashSet::new()
        }
    };
    // The push stored its visits with no flags, on the promise that this work computes
    // them; one it did not (its inputs failed, or the work was rolled back) reads as not
    // yet evaluated, as a visit stored without flag work does.
    for (visit_id, visit) in pushed {
        if !kept.contains(*visit_id) {
            transaction
                .prepare_cached(
                    "UPDATE visits SET evidence_flags = NULL WHERE visit_id = ?1 AND revision = ?2",
                )?
                .execute(params![visit_id, visit.revision])?;
        }
    }
    Ok(())
}
