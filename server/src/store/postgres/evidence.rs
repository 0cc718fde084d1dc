//! Evidence (佐证) on PostgreSQL: the inputs a visit's flag rules need, read from narrow
//! columns, and the flags written back in the same transaction as the push that caused them.
//!
//! The rules themselves and which visits a push or an upload makes stale are
//! [`crate::evidence`]'s; the windows over a cadre's visits are
//! [`crate::store::evidence_rows`]'s. This file only reads rows, the same ones SQLite reads.

use super::PreparedOnce;
use std::collections::{HashMap, HashSet};

use deadpool_postgres::GenericClient;
use fieldsync_model::CodeList;
use fieldsync_model::codes::VisitMode;
use fieldsync_model::evidence::{EvidenceFlag, EvidenceSettings, OtherPhotoUse};
use fieldsync_model::household::GeoPoint;
use fieldsync_model::visit::Visit;

use super::photo_meta::{PHOTO_META_COLUMNS, photo_meta_from_row};
use super::push::{HouseholdPlaces, apply_push_in, household_place};
use super::{PostgresStore, WriteError, decode_json, encode_json, from_millis};
use crate::evidence::FlagWork;
use crate::store::evidence_rows::{
    CadreColumns, CadreRow, OwnVisit, PushedVisits, cadre_windows, is_reuse, own_fault_only,
    pushed_visits, window_of,
};
use crate::store::media::near_duplicate_candidates;
use crate::store::{
    DeviceClockReading, EvidenceInputs, EvidencePhoto, PushBatch, PushFlagWork, PushResult,
    StoreError, StoreResult,
};

/// The latest revision of `visit_id`. When `pushed` holds that very revision (the push
/// being flagged stored it), its body is not read back.
async fn own_visit(
    client: &impl GenericClient,
    visit_id: &str,
    pushed: Option<&Visit>,
) -> StoreResult<Option<OwnVisit>> {
    let Some(row) = client
        .query_opt_cached(
            "SELECT household_id, author_user_id, device_id, revision, submitted_at,
                    (SELECT first.submitted_at FROM visits AS first
                      WHERE first.visit_id = $1 ORDER BY first.revision LIMIT 1)
                        AS first_submitted_at
               FROM visits WHERE visit_id = $1 ORDER BY revision DESC LIMIT 1",
            &[&visit_id],
        )
        .await?
    else {
        return Ok(None);
    };
    let revision: i32 = row.try_get("revision")?;
    let visit = match pushed {
        Some(pushed) if i64::from(pushed.revision) == i64::from(revision) => pushed.clone(),
        _ => {
            let body: String = client
                .query_one_cached(
                    "SELECT body FROM visits WHERE visit_id = $1 AND revision = $2",
                    &[&visit_id, &revision],
                )
                .await?
                .try_get("body")?;
            decode_json(&body, "visit")?
        }
    };
    Ok(Some(OwnVisit {
        visit,
        author: row.try_get("author_user_id")?,
        device_id: row.try_get("device_id")?,
        household_id: row.try_get("household_id")?,
        submitted_at: row.try_get("submitted_at")?,
        first_submitted_at: row.try_get("first_submitted_at")?,
    }))
}

/// A cadre's visits (latest revisions) checked in within `[from_ms, to_ms]`, in check-in
/// order (the `visits_by_author_checkin` index covers the read).
async fn cadre_rows(
    client: &impl GenericClient,
    author: &str,
    from_ms: i64,
    to_ms: i64,
) -> StoreResult<Vec<CadreRow>> {
    let statement = client
        .prepare_cached(
            "SELECT v.visit_id, v.checkin_at_ms, v.checkin_sub_ms_ns, v.checkout_at_ms,
                    v.checkout_sub_ms_ns, v.gps_lat, v.gps_lon, v.gps_crs, v.mode
               FROM visits v
              WHERE v.author_user_id = $1 AND v.checkin_at_ms BETWEEN $2 AND $3
                AND NOT EXISTS (SELECT 1 FROM visits newer
                                 WHERE newer.visit_id = v.visit_id
                                   AND newer.revision > v.revision)",
        )
        .await?;
    let in_person = VisitMode::InPerson.code();
    let mut found = Vec::new();
    for row in client
        .query(&statement, &[&author, &from_ms, &to_ms])
        .await?
    {
        let visit_id: String = row.try_get("visit_id")?;
        let checkin_at_ms: i64 = row.try_get("checkin_at_ms")?;
        let checkin_sub_ms_ns: Option<i32> = row.try_get("checkin_sub_ms_ns")?;
        let checkout_at_ms: Option<i64> = row.try_get("checkout_at_ms")?;
        let checkout_sub_ms_ns: Option<i32> = row.try_get("checkout_sub_ms_ns")?;
        let lat: Option<f64> = row.try_get("gps_lat")?;
        let lon: Option<f64> = row.try_get("gps_lon")?;
        let crs: Option<i32> = row.try_get("gps_crs")?;
        let mode: i32 = row.try_get("mode")?;
        // Every PostgreSQL push fills the columns; a row without them is that row's fault.
        let (Some(checkin_sub_ms_ns), Some(checkout_at_ms), Some(checkout_sub_ms_ns)) =
            (checkin_sub_ms_ns, checkout_at_ms, checkout_sub_ms_ns)
        else {
            found.push(CadreRow {
                checkin_at: from_millis(checkin_at_ms)?,
                summary: Err(StoreError::Corrupt(format!(
                    "visit {visit_id} lacks its evidence columns"
                ))),
            });
            continue;
        };
        found.push(
            CadreColumns {
                visit_id,
                checkin_at_ms,
                checkin_sub_ms_ns: i64::from(checkin_sub_ms_ns),
                checkout_at_ms,
                checkout_sub_ms_ns: i64::from(checkout_sub_ms_ns),
                gps: match (lat, lon, crs) {
                    (Some(lat), Some(lon), Some(crs)) => Some((lat, lon, crs)),
                    _ => None,
                },
                in_person: mode == in_person,
            }
            .into_row()?,
        );
    }
    found.sort_by_key(|row| row.checkin_at);
    Ok(found)
}

/// The inputs of the evidence checks of each visit's latest revision, in the order asked
/// (`None` for an unknown visit). A cadre's visits around all of them are read once.
#[allow(clippy::type_complexity)]
async fn evidence_inputs_many(
    client: &impl GenericClient,
    visit_ids: &[String],
    pushed: &PushedVisits<'_>,
    near_duplicate_max_bits: u32,
) -> StoreResult<Vec<(String, StoreResult<Option<EvidenceInputs>>)>> {
    let mut owns = Vec::with_capacity(visit_ids.len());
    for visit_id in visit_ids {
        let pushed = pushed.get(visit_id.as_str()).copied();
        owns.push((visit_id.clone(), own_visit(client, visit_id, pushed).await));
    }
    let mut cadres: HashMap<String, Vec<CadreRow>> = HashMap::new();
    for (author, windows) in cadre_windows(&owns)? {
        let mut rows = Vec::new();
        for (from, to) in windows {
            rows.extend(cadre_rows(client, &author, from, to).await?);
        }
        cadres.insert(author, rows);
    }
    let mut gathered = Vec::with_capacity(owns.len());
    // Households repeat within a batch, and a push comes from one device: each household's
    // location and each device's clock reading are read once.
    let mut places = HouseholdPlaces::new();
    let mut clocks = HashMap::new();
    for (visit_id, own) in owns {
        let inputs = match own {
            Ok(Some(own)) => {
                let rows = cadres.get(&own.author).map_or(&[][..], Vec::as_slice);
                assemble(
                    client,
                    &mut places,
                    &mut clocks,
                    own,
                    rows,
                    near_duplicate_max_bits,
                )
                .await
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
async fn assemble(
    client: &impl GenericClient,
    places: &mut HouseholdPlaces,
    clocks: &mut HashMap<String, Option<DeviceClockReading>>,
    own: OwnVisit,
    cadre_rows: &[CadreRow],
    near_duplicate_max_bits: u32,
) -> StoreResult<EvidenceInputs> {
    let visit_id = own.visit.visit_id.clone();
    let household_location: Option<GeoPoint> = household_place(client, places, &own.household_id)
        .await
        .map_err(StoreError::from)?
        .ok_or_else(|| {
            StoreError::Corrupt(format!(
                "visit {visit_id} names missing household {}",
                own.household_id
            ))
        })?
        .1;

    // This visit's photos, with their metadata once the blob arrived.
    let mut photos = Vec::new();
    for row in client
        .query_cached(
            &format!(
                "SELECT p.body, b.sha256 IS NOT NULL AS arrived, m.sha256 IS NOT NULL AS has_meta,
                        {PHOTO_META_COLUMNS}
                   FROM photos p
                   LEFT JOIN blobs b ON b.sha256 = p.sha256
                   LEFT JOIN photo_meta m ON m.sha256 = p.sha256
                  WHERE p.visit_id = $1 ORDER BY p.arrival"
            ),
            &[&visit_id],
        )
        .await?
    {
        let body: String = row.try_get("body")?;
        let arrived: bool = row.try_get("arrived")?;
        let has_meta: bool = row.try_get("has_meta")?;
        photos.push(EvidencePhoto {
            record: decode_json(&body, "photo record")?,
            arrived,
            meta: if arrived && has_meta {
                Some(photo_meta_from_row(&row)?)
            } else {
                None
            },
        });
    }

    // Photos of other visits: the same file, or a perceptual hash close to one of ours,
    // found through the indexed hash bands; the Hamming distance is checked here.
    let mut other_photos = Vec::new();
    if !photos.is_empty() {
        let own_hashes: Vec<u64> = photos
            .iter()
            .filter_map(|photo| photo.meta.as_ref().map(|meta| meta.phash))
            .collect();
        let own_sha256s: HashSet<String> = photos
            .iter()
            .map(|photo| photo.record.sha256.to_ascii_lowercase())
            .collect();
        let similar_hash = near_duplicate_candidates(&own_hashes, near_duplicate_max_bits);
        for row in client
            // The hash bands are numbers in the text: a statement of its own each time, so
            // it is not kept in the connection's statement cache.
            .query(
                &format!(
                    "SELECT p.photo_id, p.visit_id, p.sha256, m.phash, v.household_id,
                            v.business_month
                       FROM photos p
                       JOIN visits v ON v.visit_id = p.visit_id
                                    AND v.revision = (SELECT MAX(latest.revision)
                                                        FROM visits latest
                                                       WHERE latest.visit_id = p.visit_id)
                       LEFT JOIN photo_meta m ON m.sha256 = p.sha256
                      WHERE p.visit_id <> $1
                        AND ({similar_hash}
                             OR p.sha256 IN (SELECT own.sha256 FROM photos own
                                              WHERE own.visit_id = $1))
                      ORDER BY p.arrival"
                ),
                &[&visit_id],
            )
            .await?
        {
            let other = OtherPhotoUse {
                photo_id: row.try_get("photo_id")?,
                visit_id: row.try_get("visit_id")?,
                sha256: row.try_get("sha256")?,
                // The hash's 64 bits were stored as a signed integer.
                phash: row
                    .try_get::<_, Option<i64>>("phash")?
                    .map(|phash| phash as u64),
                household_id: row.try_get("household_id")?,
                month: row.try_get("business_month")?,
            };
            if is_reuse(
                &other.sha256,
                other.phash,
                &own_sha256s,
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
            let reading = device_clock(client, &own.device_id).await?;
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
async fn device_clock(
    client: &impl GenericClient,
    device_id: &str,
) -> StoreResult<Option<DeviceClockReading>> {
    let row = client
        .query_opt_cached(
            "SELECT device_time, server_time FROM device_heartbeats
              WHERE device_id = $1 AND device_time IS NOT NULL",
            &[&device_id],
        )
        .await?;
    row.map(|row| {
        Ok(DeviceClockReading {
            device_time: from_millis(row.try_get("device_time")?)?,
            server_time: from_millis(row.try_get("server_time")?)?,
        })
    })
    .transpose()
}

/// Keep the flags of one revision; `NotFound` when it does not exist.
async fn save_flags_in(
    client: &impl GenericClient,
    visit_id: &str,
    revision: u32,
    flags: &[EvidenceFlag],
) -> StoreResult<()> {
    let revision = i32::try_from(revision)
        .map_err(|_| StoreError::NotFound(format!("visit {visit_id} revision {revision}")))?;
    let changed = client
        .execute_cached(
            "UPDATE visits SET evidence_flags = $3 WHERE visit_id = $1 AND revision = $2",
            &[&visit_id, &revision, &encode_json(&flags)?],
        )
        .await?;
    if changed == 0 {
        return Err(StoreError::NotFound(format!(
            "visit {visit_id} revision {revision}"
        )));
    }
    Ok(())
}

/// [`FlagWork`] over an open write transaction.
struct TransactionFlagWork<'a, C> {
    client: &'a C,
    pushed: &'a PushedVisits<'a>,
}

impl<C: GenericClient> FlagWork for TransactionFlagWork<'_, C> {
    async fn visits_using_stored_blob(&mut self, sha256: &str) -> StoreResult<Option<Vec<String>>> {
        let stored = self
            .client
            .query_opt_cached("SELECT 1 FROM blobs WHERE sha256 = $1", &[&sha256])
            .await?
            .is_some();
        if !stored {
            return Ok(None);
        }
        let rows = self
            .client
            .query_cached(
                "SELECT DISTINCT visit_id FROM photos WHERE sha256 = $1 ORDER BY visit_id",
                &[&sha256],
            )
            .await?;
        rows.iter()
            .map(|row| row.try_get("visit_id").map_err(StoreError::from))
            .collect::<StoreResult<Vec<String>>>()
            .map(Some)
    }

    async fn inputs(
        &mut self,
        visit_ids: &[String],
        near_duplicate_max_bits: u32,
    ) -> StoreResult<Vec<(String, StoreResult<Option<EvidenceInputs>>)>> {
        evidence_inputs_many(self.client, visit_ids, self.pushed, near_duplicate_max_bits).await
    }

    async fn save_flags(
        &mut self,
        visit_id: &str,
        revision: u32,
        flags: &[EvidenceFlag],
    ) -> StoreResult<()> {
        save_flags_in(self.client, visit_id, revision, flags).await
    }
}

/// Which flags a write transaction recomputes.
enum FlagJob<'a> {
    /// After a push: the visits and files it stored ([`crate::evidence::refresh_after_push_in`]).
    AfterPush {
        visit_ids: &'a [String],
        photo_sha256s: &'a [String],
    },
    /// After a blob arrived ([`crate::evidence::refresh_for_blob_in`]).
    Blob { sha256: &'a str },
}

/// Run flag work inside the transaction under a savepoint: when it fails, only the flag
/// work is rolled back (and logged), so the push or upload it belongs to still commits.
async fn flag_work_in_savepoint(
    client: &impl GenericClient,
    pushed: &PushedVisits<'_>,
    settings: &EvidenceSettings,
    job: FlagJob<'_>,
) -> Result<(), WriteError> {
    client.batch_execute("SAVEPOINT evidence_flags").await?;
    let mut work = TransactionFlagWork { client, pushed };
    let outcome = match job {
        FlagJob::AfterPush {
            visit_ids,
            photo_sha256s,
        } => {
            crate::evidence::refresh_after_push_in(&mut work, visit_ids, photo_sha256s, settings)
                .await
        }
        FlagJob::Blob { sha256 } => {
            crate::evidence::refresh_for_blob_in(&mut work, sha256, settings).await
        }
    };
    match outcome {
        Ok(()) => {
            client
                .batch_execute("RELEASE SAVEPOINT evidence_flags")
                .await?
        }
        Err(error) => {
            tracing::warn!(%error, "could not compute evidence flags; the flags are left as they were");
            client
                .batch_execute(
                    "ROLLBACK TO SAVEPOINT evidence_flags; RELEASE SAVEPOINT evidence_flags",
                )
                .await?;
        }
    }
    Ok(())
}

impl PostgresStore {
    /// The inputs of one visit's evidence checks (latest revision), or `None`.
    pub async fn evidence_inputs(
        &self,
        visit_id: &str,
        near_duplicate_max_bits: u32,
    ) -> StoreResult<Option<EvidenceInputs>> {
        let connection = self.connection().await?;
        let mut gathered = evidence_inputs_many(
            &connection,
            &[visit_id.to_owned()],
            &PushedVisits::new(),
            near_duplicate_max_bits,
        )
        .await?;
        gathered.pop().map_or(Ok(None), |(_, inputs)| inputs)
    }

    /// Keep the flags of one revision, replacing earlier ones.
    pub async fn save_visit_flags(
        &self,
        visit_id: &str,
        revision: u32,
        flags: Vec<EvidenceFlag>,
    ) -> StoreResult<()> {
        let flags = &flags;
        write_transaction!(self, |transaction| {
            Ok(save_flags_in(transaction, visit_id, revision, flags).await?)
        })
    }

    /// Recompute the flags of every visit with a photo of the blob `sha256`, in one
    /// transaction (run when its upload completed).
    pub async fn refresh_flags_of_blob(
        &self,
        sha256: &str,
        settings: EvidenceSettings,
    ) -> StoreResult<()> {
        let settings = &settings;
        write_transaction!(self, |transaction| {
            flag_work_in_savepoint(
                transaction,
                &PushedVisits::new(),
                settings,
                FlagJob::Blob { sha256 },
            )
            .await
        })
    }

    /// Apply a batch and recompute the flags it makes stale, in one commit.
    pub async fn apply_push_with_flags(
        &self,
        batch: PushBatch,
        flags: PushFlagWork,
    ) -> StoreResult<PushResult> {
        let (batch, flags) = (&batch, &flags);
        write_transaction!(self, |transaction| {
            let result = apply_push_in(transaction, self.pii(), batch).await?;
            let (visit_ids, photo_sha256s) =
                crate::evidence::stored_targets(&result, &flags.targets);
            if !visit_ids.is_empty() {
                let pushed = pushed_visits(batch, &result);
                flag_work_in_savepoint(
                    transaction,
                    &pushed,
                    &flags.settings,
                    FlagJob::AfterPush {
                        visit_ids: &visit_ids,
                        photo_sha256s: &photo_sha256s,
                    },
                )
                .await?;
            }
            Ok(result)
        })
    }
}
