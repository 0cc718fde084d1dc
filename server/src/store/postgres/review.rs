//! The review loop (审核闭环) on PostgreSQL: the filtered queue (village, cadre, evidence
//! flag, days waiting, keyset "next"), the counts behind its filter bar (read here, counted
//! by the code SQLite shares), one visit's detail, one stored revision, a household's
//! earlier photos, and the decision itself. Every queue filter is in SQL, as in SQLite.
//! A decision locks the visit's latest revision row, so two supervisors deciding on two
//! replicas at once get one decision and one `StaleDecision`.

use super::PreparedOnce;
use deadpool_postgres::GenericClient;
use fieldsync_model::CodeList;
use fieldsync_model::codes::{ReviewState, VisitMode};
use fieldsync_model::review::Decision;
use fieldsync_model::visit::{PhotoRecord, Visit};
use time::OffsetDateTime;

use super::change_log::{ChangeEntry, log_entry};
use super::households::load_household;
use super::pull::load_visit_status;
use super::{
    CHANGE_KIND_VISIT_STATUS, PostgresStore, decode_flags, decode_json, from_millis, parse_state,
    to_millis,
};
use crate::store::review::facets::{FacetRow, count_queue_facets};
use crate::store::{
    HouseholdPhoto, OperationalCounts, QueueFacets, QueueFilter, QueueItem, StoreError,
    StoreResult, StoredDecision, VisitDetail, VisitRevision,
};

/// Review queue page size when the caller asks for 0 items.
const DEFAULT_QUEUE_PAGE: u32 = 100;

/// The queue's rows: latest revisions in state SUBMITTED of the township's households, every
/// filter an optional parameter (NULL = not filtering on it): $1 state, $2 township,
/// $3 village, $4 cadre, $5 submitted at or before, $6/$7 keyset position, $8 flag code.
const QUEUE_FROM_WHERE: &str = "
    FROM visits v
    JOIN households h ON h.household_id = v.household_id
    WHERE v.state = $1 AND h.township_id = $2
      AND ($3::TEXT IS NULL OR h.village_id = $3)
      AND ($4::TEXT IS NULL OR v.author_user_id = $4)
      AND ($5::BIGINT IS NULL OR v.submitted_at <= $5)
      AND ($6::BIGINT IS NULL OR v.submitted_at > $6
           OR (v.submitted_at = $6 AND v.visit_id > $7::TEXT))
      AND v.revision = (SELECT MAX(latest.revision) FROM visits latest
                         WHERE latest.visit_id = v.visit_id)
      AND ($8::TEXT IS NULL OR EXISTS (
              SELECT 1 FROM json_array_elements(v.evidence_flags::json) AS flag
               WHERE flag ->> 'code' = $8))";

fn revision_of(revision: i32) -> StoreResult<u32> {
    u32::try_from(revision).map_err(|_| StoreError::Corrupt(format!("revision {revision}")))
}

/// The latest revision of a visit; `lock` holds its row until the transaction ends.
async fn latest_visit(
    client: &impl GenericClient,
    visit_id: &str,
    lock: bool,
) -> StoreResult<Option<tokio_postgres::Row>> {
    let lock = if lock { "FOR UPDATE" } else { "" };
    let statement = client
        .prepare_cached(&format!(
            "SELECT revision, household_id, author_user_id, state, content_hash, body,
                    submitted_at, distance_m, evidence_flags
               FROM visits WHERE visit_id = $1 ORDER BY revision DESC LIMIT 1 {lock}"
        ))
        .await?;
    Ok(client.query_opt(&statement, &[&visit_id]).await?)
}

impl PostgresStore {
    /// One page of the township's queue, oldest first.
    pub async fn review_queue(
        &self,
        township_id: &str,
        filter: QueueFilter,
    ) -> StoreResult<Vec<QueueItem>> {
        let limit = i64::from(if filter.limit == 0 {
            DEFAULT_QUEUE_PAGE
        } else {
            filter.limit
        });
        let offset = i64::from(filter.offset);
        let before = filter.submitted_at_or_before.map(to_millis).transpose()?;
        let after_at = filter
            .after
            .as_ref()
            .map(|after| to_millis(after.submitted_at))
            .transpose()?;
        let after_id = filter.after.as_ref().map(|after| after.visit_id.clone());
        let connection = self.connection().await?;
        let statement = connection
            .prepare_cached(&format!(
                "SELECT v.visit_id, v.revision, v.household_id, h.head_name, h.village_id,
                        COALESCE(a.name, (h.card::json ->> 'village_name'), '') AS village_name,
                        v.author_user_id,
                        COALESCE(u.display_name, v.author_user_id) AS author_name,
                        v.mode, v.submitted_at, v.distance_m,
                        (SELECT COUNT(*) FROM photos p WHERE p.visit_id = v.visit_id)
                            AS photo_count,
                        v.evidence_flags
                   FROM (SELECT v.visit_id, v.revision {QUEUE_FROM_WHERE}
                          ORDER BY v.submitted_at, v.visit_id LIMIT $9 OFFSET $10) AS page
                   JOIN visits v ON v.visit_id = page.visit_id AND v.revision = page.revision
                   JOIN households h ON h.household_id = v.household_id
                   LEFT JOIN areas a ON a.area_id = h.village_id
                   LEFT JOIN users u ON u.user_id = v.author_user_id
                  ORDER BY v.submitted_at, v.visit_id"
            ))
            .await?;
        let rows = connection
            .query(
                &statement,
                &[
                    &ReviewState::Submitted.as_str(),
                    &township_id,
                    &filter.village_id,
                    &filter.cadre_user_id,
                    &before,
                    &after_at,
                    &after_id,
                    &filter.flag,
                    &limit,
                    &offset,
                ],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let visit_id: String = row.try_get("visit_id")?;
                let mode: i32 = row.try_get("mode")?;
                let photo_count: i64 = row.try_get("photo_count")?;
                let flags: Option<String> = row.try_get("evidence_flags")?;
                Ok(QueueItem {
                    mode: VisitMode::from_code(mode).ok_or_else(|| {
                        StoreError::Corrupt(format!("visit {visit_id}: unknown mode {mode}"))
                    })?,
                    submitted_at: from_millis(row.try_get("submitted_at")?)?,
                    photo_count: u32::try_from(photo_count).unwrap_or(u32::MAX),
                    flags: flags
                        .as_deref()
                        .map(decode_flags)
                        .transpose()?
                        .unwrap_or_default(),
                    revision: revision_of(row.try_get("revision")?)?,
                    household_id: row.try_get("household_id")?,
                    head_name: row.try_get("head_name")?,
                    village_id: row.try_get("village_id")?,
                    village_name: row.try_get("village_name")?,
                    cadre_user_id: row.try_get("author_user_id")?,
                    cadre_name: row.try_get("author_name")?,
                    distance_m: row.try_get("distance_m")?,
                    visit_id,
                })
            })
            .collect()
    }

    /// The counts behind the queue's filter bar: the township's waiting items read once
    /// (the shared [`QUEUE_FROM_WHERE`] with no filter but the township) and counted by
    /// the backend-neutral [`count_queue_facets`], as on SQLite.
    pub async fn review_queue_facets(
        &self,
        township_id: &str,
        filter: QueueFilter,
        age_cutoffs: Vec<OffsetDateTime>,
    ) -> StoreResult<QueueFacets> {
        let connection = self.connection().await?;
        let statement = connection
            .prepare_cached(&format!(
                "SELECT h.village_id, COALESCE(a.name, h.village_id) AS village_name,
                        v.author_user_id,
                        COALESCE(u.display_name, v.author_user_id) AS author_name,
                        v.submitted_at, v.evidence_flags
                 {}",
                QUEUE_FROM_WHERE.replacen(
                    "WHERE",
                    "LEFT JOIN areas a ON a.area_id = h.village_id
                     LEFT JOIN users u ON u.user_id = v.author_user_id
                     WHERE",
                    1
                )
            ))
            .await?;
        let no_text: Option<String> = None;
        let no_time: Option<i64> = None;
        let rows = connection
            .query(
                &statement,
                &[
                    &ReviewState::Submitted.as_str(),
                    &township_id,
                    &no_text,
                    &no_text,
                    &no_time,
                    &no_time,
                    &no_text,
                    &no_text,
                ],
            )
            .await?;
        let items = rows
            .iter()
            .map(|row| {
                let flags: Option<String> = row.try_get("evidence_flags")?;
                FacetRow::new(
                    row.try_get("village_id")?,
                    row.try_get("village_name")?,
                    row.try_get("author_user_id")?,
                    row.try_get("author_name")?,
                    row.try_get("submitted_at")?,
                    flags.as_deref(),
                )
            })
            .collect::<StoreResult<Vec<FacetRow>>>()?;
        count_queue_facets(&items, &filter, &age_cutoffs, to_millis)
    }

    /// The latest revision of a visit with everything a reviewer sees.
    pub async fn visit_detail(&self, visit_id: &str) -> StoreResult<Option<VisitDetail>> {
        let connection = self.connection().await?;
        let Some(latest) = latest_visit(&connection, visit_id, false).await? else {
            return Ok(None);
        };
        let revision: i32 = latest.try_get("revision")?;
        let household_id: String = latest.try_get("household_id")?;
        let author: String = latest.try_get("author_user_id")?;
        let state: String = latest.try_get("state")?;
        let body: String = latest.try_get("body")?;
        let flags: Option<String> = latest.try_get("evidence_flags")?;
        let household = load_household(&connection, self.pii(), &household_id, false)
            .await?
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "visit {visit_id} names missing household {household_id}"
                ))
            })?;
        let cadre_name: Option<String> = connection
            .query_opt_cached(
                "SELECT display_name FROM users WHERE user_id = $1",
                &[&author],
            )
            .await?
            .map(|row| row.try_get(0))
            .transpose()?;
        let mut photos = Vec::new();
        let mut photo_ids_received = Vec::new();
        let photo_rows = connection
            .query_cached(
                "SELECT p.body, b.sha256 IS NOT NULL AS received
                   FROM photos p LEFT JOIN blobs b ON b.sha256 = p.sha256
                  WHERE p.visit_id = $1 ORDER BY p.arrival",
                &[&visit_id],
            )
            .await?;
        for row in photo_rows {
            let photo: PhotoRecord = decode_json(row.try_get("body")?, "photo record")?;
            if row.try_get::<_, bool>("received")? {
                photo_ids_received.push(photo.photo_id.clone());
            }
            photos.push(photo);
        }
        let status = load_visit_status(&connection, visit_id, revision)
            .await?
            .ok_or_else(|| {
                StoreError::Corrupt(format!("visit {visit_id} revision {revision} vanished"))
            })?;
        Ok(Some(VisitDetail {
            flags: flags.as_deref().map(decode_flags).transpose()?,
            visit: decode_json::<Visit>(&body, "visit")?,
            household,
            cadre_name: cadre_name.unwrap_or_else(|| author.clone()),
            cadre_user_id: author,
            state: parse_state(&state)?,
            content_hash: latest.try_get("content_hash")?,
            submitted_at: from_millis(latest.try_get("submitted_at")?)?,
            distance_m: latest.try_get("distance_m")?,
            photos,
            photo_ids_received,
            status,
        }))
    }

    /// One stored revision with its decision (for the correction diff).
    pub async fn visit_revision(
        &self,
        visit_id: &str,
        revision: u32,
    ) -> StoreResult<Option<VisitRevision>> {
        let Ok(revision) = i32::try_from(revision) else {
            return Ok(None);
        };
        let connection = self.connection().await?;
        let Some(row) = connection
            .query_opt_cached(
                "SELECT body, content_hash, state, submitted_at FROM visits
                  WHERE visit_id = $1 AND revision = $2",
                &[&visit_id, &revision],
            )
            .await?
        else {
            return Ok(None);
        };
        let status = load_visit_status(&connection, visit_id, revision)
            .await?
            .ok_or_else(|| {
                StoreError::Corrupt(format!("visit {visit_id} revision {revision} vanished"))
            })?;
        let state: String = row.try_get("state")?;
        Ok(Some(VisitRevision {
            visit: decode_json::<Visit>(row.try_get("body")?, "visit")?,
            state: parse_state(&state)?,
            content_hash: row.try_get("content_hash")?,
            submitted_at: from_millis(row.try_get("submitted_at")?)?,
            status,
        }))
    }

    /// Received photos of the household's other visits in `months`, newest month first.
    pub async fn household_photo_history(
        &self,
        household_id: &str,
        exclude_visit_id: &str,
        months: Vec<String>,
        limit: u32,
    ) -> StoreResult<Vec<HouseholdPhoto>> {
        let connection = self.connection().await?;
        let rows = connection
            .query_cached(
                "SELECT p.body, v.visit_id, v.business_month, v.state, v.checkin_at_ms
                   FROM visits v
                   JOIN photos p ON p.visit_id = v.visit_id
                   JOIN blobs b ON b.sha256 = p.sha256
                  WHERE v.household_id = $1 AND v.visit_id <> $2
                    AND v.business_month = ANY($3)
                    AND v.revision = (SELECT MAX(latest.revision) FROM visits latest
                                       WHERE latest.visit_id = v.visit_id)
                    AND EXISTS (SELECT 1
                                  FROM json_array_elements_text(v.body::json -> 'photo_ids')
                                       AS listed (photo_id)
                                 WHERE listed.photo_id = p.photo_id)
                  ORDER BY v.business_month DESC, v.submitted_at DESC, v.visit_id, p.arrival
                  LIMIT $4",
                &[&household_id, &exclude_visit_id, &months, &i64::from(limit)],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let state: String = row.try_get("state")?;
                Ok(HouseholdPhoto {
                    photo: decode_json::<PhotoRecord>(row.try_get("body")?, "photo record")?,
                    visit_id: row.try_get("visit_id")?,
                    business_month: row.try_get("business_month")?,
                    state: parse_state(&state)?,
                    checkin_at: from_millis(row.try_get("checkin_at_ms")?)?,
                })
            })
            .collect()
    }

    /// Approve or return the latest revision, if it is the one the reviewer saw and no one
    /// decided it yet.
    pub async fn decide(&self, decision: StoredDecision) -> StoreResult<ReviewState> {
        let decision = &decision;
        let request = &decision.request;
        let decided_at = to_millis(decision.decided_at)?;
        let reasons = serde_json::to_string(&request.reasons).map_err(|error| {
            StoreError::database_caused_by(format!("cannot encode record: {error}"), error)
        })?;
        write_transaction!(self, |transaction| {
            // The household row first (the lock order every writer keeps), then the visit.
            let household_id: Option<String> = transaction
                .query_opt_cached(
                    "SELECT household_id FROM visits WHERE visit_id = $1 LIMIT 1",
                    &[&request.visit_id],
                )
                .await?
                .map(|row| row.try_get(0))
                .transpose()?;
            let Some(household_id) = household_id else {
                return Err(StoreError::NotFound(format!("visit {}", request.visit_id)).into());
            };
            let township_id: String = transaction
                .query_one_cached(
                    "SELECT township_id FROM households WHERE household_id = $1 FOR UPDATE",
                    &[&household_id],
                )
                .await?
                .try_get(0)?;
            let Some(latest) = latest_visit(transaction, &request.visit_id, true).await? else {
                return Err(StoreError::NotFound(format!("visit {}", request.visit_id)).into());
            };
            let revision: i32 = latest.try_get("revision")?;
            let content_hash: String = latest.try_get("content_hash")?;
            let state: String = latest.try_get("state")?;
            if i64::from(request.revision) != i64::from(revision) {
                return Err(StoreError::StaleDecision(format!(
                    "revision {} is not the latest revision ({revision}) of visit {}",
                    request.revision, request.visit_id
                ))
                .into());
            }
            if request.content_hash != content_hash {
                return Err(StoreError::StaleDecision(format!(
                    "content hash does not match revision {revision} of visit {}",
                    request.visit_id
                ))
                .into());
            }
            let state = parse_state(&state)?;
            if state != ReviewState::Submitted {
                return Err(StoreError::StaleDecision(format!(
                    "already decided: revision {revision} of visit {} is {}",
                    request.visit_id,
                    state.as_str()
                ))
                .into());
            }
            let (decision_name, new_state) = match request.decision {
                Decision::Approve => ("approve", ReviewState::Approved),
                Decision::Return => ("return", ReviewState::Returned),
            };
            transaction
                .execute_cached(
                    "INSERT INTO decisions (visit_id, revision, decision, reasons, note,
                                            deadline, reviewer_user_id, decided_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    &[
                        &request.visit_id,
                        &revision,
                        &decision_name,
                        &reasons,
                        &request.note,
                        &request.deadline,
                        &decision.reviewer_user_id,
                        &decided_at,
                    ],
                )
                .await?;
            transaction
                .execute_cached(
                    "UPDATE visits SET state = $3 WHERE visit_id = $1 AND revision = $2",
                    &[&request.visit_id, &revision, &new_state.as_str()],
                )
                .await?;
            log_entry(
                transaction,
                &ChangeEntry {
                    scope_id: &township_id,
                    household_id: &household_id,
                    kind: CHANGE_KIND_VISIT_STATUS,
                    entity_id: &request.visit_id,
                    revision,
                    addressed_to: None,
                    logged_at: 0,
                },
            )
            .await?;
            Ok(new_state)
        })
    }

    /// The review queue's size and the uploads in progress, for monitoring.
    pub async fn operational_counts(&self) -> StoreResult<OperationalCounts> {
        let connection = self.connection().await?;
        let row = connection
            .query_one_cached(
                "SELECT (SELECT COUNT(*) FROM visits WHERE state = $1) AS review_queue,
                        (SELECT COUNT(*) FROM uploads WHERE NOT complete) AS incomplete_uploads",
                &[&ReviewState::Submitted.as_str()],
            )
            .await?;
        let count = |column: &str| -> StoreResult<u64> {
            let value: i64 = row.try_get(column)?;
            Ok(u64::try_from(value).unwrap_or(0))
        };
        Ok(OperationalCounts {
            review_queue: count("review_queue")?,
            incomplete_uploads: count("incomplete_uploads")?,
        })
    }
}
