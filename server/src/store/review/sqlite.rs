//! SQLite side of [`ReviewStore`], the review loop (审核闭环): the filtered review queue (village, cadre,
//! evidence flag, days waiting, keyset "next"), the counts behind the console's filter bar,
//! one stored revision with its decision (for the correction diff), and a household's
//! photos from earlier visits (the submission page's "previous months").
//!
//! Every filter is pushed into SQL, so a township of thousands of households is never read
//! whole into memory to filter one page.

use fieldsync_model::CodeList;
use fieldsync_model::codes::{ReviewState, VisitMode};
use fieldsync_model::review::Decision;
use fieldsync_model::visit::{PhotoRecord, Visit};
use rusqlite::{Connection, OptionalExtension, ToSql, Transaction, named_params, params};
use time::OffsetDateTime;

use crate::store::review::facets::{FacetRow, count_queue_facets};
use crate::store::review::{
    HouseholdPhoto, QueueFacets, QueueFilter, QueueItem, ReviewStore, StoredDecision, VisitDetail,
    VisitRevision,
};
use crate::store::sealed::PiiCipher;
use crate::store::sqlite::{
    CHANGE_KIND_VISIT_STATUS, SqliteStore, corrupt, decode_flags, decode_json, encode_json,
    from_millis, from_sql_unsigned, load_household_opening_in_rust, load_visit_status, log_change,
    parse_state, to_millis, township_of,
};
use crate::store::{OperationalCounts, StoreError, StoreResult};

/// The queue's rows: latest revisions in state SUBMITTED of the township's households, with
/// every filter as an optional named parameter (NULL = not filtering on it). Shared by the
/// page query and every count so they can never disagree.
const QUEUE_FROM_WHERE: &str = "
    FROM visits v
    JOIN households h ON h.household_id = v.household_id
    WHERE v.state = :state AND h.township_id = :township
      AND (:village IS NULL OR h.village_id = :village)
      AND (:cadre IS NULL OR v.author_user_id = :cadre)
      AND (:before IS NULL OR v.submitted_at <= :before)
      AND (:after_at IS NULL OR v.submitted_at > :after_at
           OR (v.submitted_at = :after_at AND v.visit_id > :after_id))
      AND v.revision = (SELECT MAX(latest.revision) FROM visits latest
                        WHERE latest.visit_id = v.visit_id)
      AND (:flag IS NULL OR EXISTS (SELECT 1 FROM json_each(v.evidence_flags) flag
                                    WHERE json_extract(flag.value, '$.code') = :flag))";

/// The filter's values as SQL parameters (millisecond times, as the visits table stores).
#[derive(Debug, Clone, Default)]
struct QueueParams {
    township: String,
    village: Option<String>,
    cadre: Option<String>,
    flag: Option<String>,
    before: Option<i64>,
    after_at: Option<i64>,
    after_id: Option<String>,
}

impl QueueParams {
    fn new(township_id: &str, filter: &QueueFilter) -> StoreResult<Self> {
        Ok(Self {
            township: township_id.to_owned(),
            village: filter.village_id.clone(),
            cadre: filter.cadre_user_id.clone(),
            flag: filter.flag.clone(),
            before: filter.submitted_at_or_before.map(to_millis).transpose()?,
            after_at: filter
                .after
                .as_ref()
                .map(|after| to_millis(after.submitted_at))
                .transpose()?,
            after_id: filter.after.as_ref().map(|after| after.visit_id.clone()),
        })
    }

    /// Run `sql` (which uses every parameter of [`QUEUE_FROM_WHERE`]) with these values,
    /// plus `extra` named parameters.
    fn bind<'a>(&'a self, extra: &[(&'a str, &'a dyn ToSql)]) -> Vec<(&'a str, &'a dyn ToSql)> {
        let mut bound: Vec<(&str, &dyn ToSql)> = vec![
            (":state", &SUBMITTED),
            (":township", &self.township),
            (":village", &self.village),
            (":cadre", &self.cadre),
            (":flag", &self.flag),
            (":before", &self.before),
            (":after_at", &self.after_at),
            (":after_id", &self.after_id),
        ];
        bound.extend_from_slice(extra);
        bound
    }
}

const SUBMITTED: &str = "submitted";

/// One page of the township's queue, oldest first.
fn review_queue(
    connection: &Connection,
    township_id: &str,
    filter: &QueueFilter,
) -> StoreResult<Vec<QueueItem>> {
    debug_assert_eq!(SUBMITTED, ReviewState::Submitted.as_str());
    let limit = i64::from(if filter.limit == 0 {
        DEFAULT_QUEUE_PAGE
    } else {
        filter.limit
    });
    let offset = i64::from(filter.offset);
    let params = QueueParams::new(township_id, filter)?;
    let sql = format!(
        "SELECT v.visit_id, v.revision, v.household_id, h.head_name, h.village_id,
                COALESCE(a.name, json_extract(h.card, '$.village_name'), '') AS village_name,
                v.author_user_id, COALESCE(u.display_name, v.author_user_id) AS author_name,
                v.mode, v.submitted_at, v.distance_m,
                (SELECT COUNT(*) FROM photos p WHERE p.visit_id = v.visit_id) AS photo_count,
                v.evidence_flags
         FROM (SELECT v.rowid AS visit_row {QUEUE_FROM_WHERE}
               ORDER BY v.submitted_at, v.visit_id LIMIT :limit OFFSET :offset) page
         JOIN visits v ON v.rowid = page.visit_row
         JOIN households h ON h.household_id = v.household_id
         LEFT JOIN areas a ON a.area_id = h.village_id
         LEFT JOIN users u ON u.user_id = v.author_user_id
         ORDER BY v.submitted_at, v.visit_id"
    );
    let mut statement = connection.prepare_cached(&sql)?;
    let bound = params.bind(&[(":limit", &limit), (":offset", &offset)]);
    let rows = statement.query_map(bound.as_slice(), |row| {
        Ok((
            (
                row.get::<_, String>("visit_id")?,
                row.get::<_, u32>("revision")?,
                row.get::<_, String>("household_id")?,
                row.get::<_, String>("head_name")?,
                row.get::<_, String>("village_id")?,
                row.get::<_, String>("village_name")?,
            ),
            (
                row.get::<_, String>("author_user_id")?,
                row.get::<_, String>("author_name")?,
                row.get::<_, i32>("mode")?,
                row.get::<_, i64>("submitted_at")?,
                row.get::<_, Option<f64>>("distance_m")?,
                row.get::<_, i64>("photo_count")?,
                row.get::<_, Option<String>>("evidence_flags")?,
            ),
        ))
    })?;
    let mut items = Vec::new();
    for row in rows {
        let (
            (visit_id, revision, household_id, head_name, village_id, village_name),
            (cadre_user_id, cadre_name, mode, submitted_at, distance_m, photo_count, flags),
        ) = row?;
        items.push(QueueItem {
            mode: VisitMode::from_code(mode)
                .ok_or_else(|| corrupt(format!("visit {visit_id}: unknown mode {mode}")))?,
            submitted_at: from_millis(submitted_at)?,
            photo_count: from_sql_unsigned(photo_count, "photo count")?,
            flags: flags
                .as_deref()
                .map(decode_flags)
                .transpose()?
                .unwrap_or_default(),
            visit_id,
            revision,
            household_id,
            head_name,
            village_id,
            village_name,
            cadre_user_id,
            cadre_name,
            distance_m,
        });
    }
    Ok(items)
}

/// The filter bar's counts: each dimension with the other filters applied.
///
/// The township's waiting items are read ONCE (the shared [`QUEUE_FROM_WHERE`] with no
/// filter but the township) and counted in memory by [`count_queue_facets`], the counting
/// PostgreSQL shares: one indexed read of a few thousand short rows instead of one query
/// per dimension and per age choice, which cost over 100 ms for a township of 5,000
/// households (BENCHMARKS.md).
fn review_queue_facets(
    connection: &Connection,
    township_id: &str,
    filter: &QueueFilter,
    age_cutoffs: &[OffsetDateTime],
) -> StoreResult<QueueFacets> {
    let unfiltered = QueueParams::new(township_id, &QueueFilter::default())?;
    let sql = format!(
        "SELECT h.village_id, COALESCE(a.name, h.village_id) AS village_name,
                v.author_user_id, COALESCE(u.display_name, v.author_user_id) AS author_name,
                v.submitted_at, v.evidence_flags
         {}",
        QUEUE_FROM_WHERE.replacen(
            "WHERE",
            "LEFT JOIN areas a ON a.area_id = h.village_id
             LEFT JOIN users u ON u.user_id = v.author_user_id
             WHERE",
            1
        )
    );
    let mut statement = connection.prepare_cached(&sql)?;
    let rows = statement.query_map(unfiltered.bind(&[]).as_slice(), |row| {
        Ok((
            row.get::<_, String>("village_id")?,
            row.get::<_, String>("village_name")?,
            row.get::<_, String>("author_user_id")?,
            row.get::<_, String>("author_name")?,
            row.get::<_, i64>("submitted_at")?,
            row.get::<_, Option<String>>("evidence_flags")?,
        ))
    })?;
    let mut items = Vec::new();
    for row in rows {
        let (village_id, village_name, cadre_user_id, cadre_name, submitted_at, flags) = row?;
        items.push(FacetRow::new(
            village_id,
            village_name,
            cadre_user_id,
            cadre_name,
            submitted_at,
            flags.as_deref(),
        )?);
    }
    count_queue_facets(&items, filter, age_cutoffs, to_millis)
}

/// One stored revision with its decision.
fn visit_revision(
    connection: &Connection,
    visit_id: &str,
    revision: u32,
) -> StoreResult<Option<VisitRevision>> {
    let row: Option<(String, String, String, i64)> = connection
        .query_row(
            "SELECT body, content_hash, state, submitted_at FROM visits
             WHERE visit_id = ?1 AND revision = ?2",
            rusqlite::params![visit_id, revision],
            |row| {
                Ok((
                    row.get("body")?,
                    row.get("content_hash")?,
                    row.get("state")?,
                    row.get("submitted_at")?,
                ))
            },
        )
        .optional()?;
    let Some((body, content_hash, state, submitted_at)) = row else {
        return Ok(None);
    };
    let status = load_visit_status(connection, visit_id, revision)?
        .ok_or_else(|| corrupt(format!("visit {visit_id} revision {revision} vanished")))?;
    Ok(Some(VisitRevision {
        visit: decode_json::<Visit>(&body, "visit")?,
        state: parse_state(&state)?,
        content_hash,
        submitted_at: from_millis(submitted_at)?,
        status,
    }))
}

/// Received photos of the household's other visits in `months`.
fn household_photo_history(
    connection: &Connection,
    household_id: &str,
    exclude_visit_id: &str,
    months: &[String],
    limit: u32,
) -> StoreResult<Vec<HouseholdPhoto>> {
    let months =
        serde_json::to_string(months).map_err(|error| corrupt(format!("months list: {error}")))?;
    let mut statement = connection.prepare_cached(
        "SELECT p.body, v.visit_id, v.business_month, v.state,
                v.checkin_at_ms
         FROM visits v
         JOIN photos p ON p.visit_id = v.visit_id
         JOIN blobs b ON b.sha256 = p.sha256
         WHERE v.household_id = :household AND v.visit_id <> :exclude
           AND v.business_month IN (SELECT value FROM json_each(:months))
           AND v.revision = (SELECT MAX(latest.revision) FROM visits latest
                             WHERE latest.visit_id = v.visit_id)
           AND EXISTS (SELECT 1 FROM json_each(v.body, '$.photo_ids') listed
                       WHERE listed.value = p.photo_id)
         ORDER BY v.business_month DESC, v.submitted_at DESC, v.visit_id, p.rowid
         LIMIT :limit",
    )?;
    let rows = statement.query_map(
        named_params! {
            ":household": household_id,
            ":exclude": exclude_visit_id,
            ":months": months,
            ":limit": i64::from(limit),
        },
        |row| {
            Ok((
                row.get::<_, String>("body")?,
                row.get::<_, String>("visit_id")?,
                row.get::<_, String>("business_month")?,
                row.get::<_, String>("state")?,
                row.get::<_, i64>("checkin_at_ms")?,
            ))
        },
    )?;
    let mut photos = Vec::new();
    for row in rows {
        let (body, visit_id, business_month, state, checkin_at) = row?;
        let checkin_at = from_millis(checkin_at)?;
        photos.push(HouseholdPhoto {
            photo: decode_json::<PhotoRecord>(&body, "photo record")?,
            visit_id,
            business_month,
            state: parse_state(&state)?,
            checkin_at,
        });
    }
    Ok(photos)
}

/// Review queue page size when the caller asks for 0 items.
const DEFAULT_QUEUE_PAGE: u32 = 100;

/// The latest revision of a visit, as one row: the detail reads its flags from the same row
/// as its state, so the two cannot come from different writes.
struct LatestVisitRow {
    revision: u32,
    household_id: String,
    author_user_id: String,
    state: String,
    content_hash: String,
    body: String,
    submitted_at: i64,
    distance_m: Option<f64>,
    evidence_flags: Option<String>,
}

fn latest_visit(connection: &Connection, visit_id: &str) -> StoreResult<Option<LatestVisitRow>> {
    Ok(connection
        .prepare_cached(
            "SELECT revision, household_id, author_user_id, state, content_hash, body,
                    submitted_at, distance_m, evidence_flags
             FROM visits WHERE visit_id = ?1 ORDER BY revision DESC LIMIT 1",
        )?
        .query_row(params![visit_id], |row| {
            Ok(LatestVisitRow {
                revision: row.get("revision")?,
                household_id: row.get("household_id")?,
                author_user_id: row.get("author_user_id")?,
                state: row.get("state")?,
                content_hash: row.get("content_hash")?,
                body: row.get("body")?,
                submitted_at: row.get("submitted_at")?,
                distance_m: row.get("distance_m")?,
                evidence_flags: row.get("evidence_flags")?,
            })
        })
        .optional()?)
}

fn visit_detail_in(
    connection: &Connection,
    pii: &PiiCipher,
    visit_id: &str,
) -> StoreResult<Option<VisitDetail>> {
    let Some(LatestVisitRow {
        revision,
        household_id,
        author_user_id: author,
        state,
        content_hash,
        body,
        submitted_at,
        distance_m,
        evidence_flags,
    }) = latest_visit(connection, visit_id)?
    else {
        return Ok(None);
    };
    let visit: Visit = decode_json(&body, "visit")?;
    let household =
        load_household_opening_in_rust(connection, pii, &household_id)?.ok_or_else(|| {
            corrupt(format!(
                "visit {visit_id} names missing household {household_id}"
            ))
        })?;
    let cadre_name: Option<String> = connection
        .prepare_cached("SELECT display_name FROM users WHERE user_id = ?1")?
        .query_row(params![author], |row| row.get("display_name"))
        .optional()?;
    let mut photos = Vec::new();
    let mut photo_ids_received = Vec::new();
    {
        let mut statement = connection.prepare_cached(
            "SELECT p.body, b.sha256 IS NOT NULL AS received
             FROM photos p LEFT JOIN blobs b ON b.sha256 = p.sha256
             WHERE p.visit_id = ?1 ORDER BY p.rowid",
        )?;
        let rows = statement.query_map(params![visit_id], |row| {
            Ok((
                row.get::<_, String>("body")?,
                row.get::<_, bool>("received")?,
            ))
        })?;
        for row in rows {
            let (body, received) = row?;
            let photo: PhotoRecord = decode_json(&body, "photo record")?;
            if received {
                photo_ids_received.push(photo.photo_id.clone());
            }
            photos.push(photo);
        }
    }
    let status = load_visit_status(connection, visit_id, revision)?
        .ok_or_else(|| corrupt(format!("visit {visit_id} revision {revision} vanished")))?;
    Ok(Some(VisitDetail {
        flags: evidence_flags.as_deref().map(decode_flags).transpose()?,
        visit,
        household,
        cadre_name: cadre_name.unwrap_or_else(|| author.clone()),
        cadre_user_id: author,
        state: parse_state(&state)?,
        content_hash,
        submitted_at: from_millis(submitted_at)?,
        distance_m,
        photos,
        photo_ids_received,
        status,
    }))
}

fn decide_in(transaction: &Transaction<'_>, decision: &StoredDecision) -> StoreResult<ReviewState> {
    let request = &decision.request;
    let Some(LatestVisitRow {
        revision,
        household_id,
        state,
        content_hash,
        ..
    }) = latest_visit(transaction, &request.visit_id)?
    else {
        return Err(StoreError::NotFound(format!("visit {}", request.visit_id)));
    };
    if request.revision != revision {
        return Err(StoreError::StaleDecision(format!(
            "revision {} is not the latest revision ({revision}) of visit {}",
            request.revision, request.visit_id
        )));
    }
    if request.content_hash != content_hash {
        return Err(StoreError::StaleDecision(format!(
            "content hash does not match revision {revision} of visit {}",
            request.visit_id
        )));
    }
    let state = parse_state(&state)?;
    if state != ReviewState::Submitted {
        return Err(StoreError::StaleDecision(format!(
            "already decided: revision {revision} of visit {} is {}",
            request.visit_id,
            state.as_str()
        )));
    }
    let (decision_name, new_state) = match request.decision {
        Decision::Approve => ("approve", ReviewState::Approved),
        Decision::Return => ("return", ReviewState::Returned),
    };
    transaction.execute(
        "INSERT INTO decisions (visit_id, revision, decision, reasons, note, deadline,
                                reviewer_user_id, decided_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            request.visit_id,
            revision,
            decision_name,
            encode_json(&request.reasons)?,
            request.note,
            request.deadline,
            decision.reviewer_user_id,
            to_millis(decision.decided_at)?
        ],
    )?;
    transaction.execute(
        "UPDATE visits SET state = ?3 WHERE visit_id = ?1 AND revision = ?2",
        params![request.visit_id, revision, new_state.as_str()],
    )?;
    log_change(
        transaction,
        &township_of(transaction, &household_id)?,
        &household_id,
        CHANGE_KIND_VISIT_STATUS,
        &request.visit_id,
        revision,
    )?;
    Ok(new_state)
}

#[async_trait::async_trait]
impl ReviewStore for SqliteStore {
    async fn review_queue(
        &self,
        township_id: &str,
        filter: QueueFilter,
    ) -> StoreResult<Vec<QueueItem>> {
        let township_id = township_id.to_owned();
        self.read(move |connection| review_queue(connection, &township_id, &filter))
            .await
    }

    async fn visit_detail(&self, visit_id: &str) -> StoreResult<Option<VisitDetail>> {
        let visit_id = visit_id.to_owned();
        let pii = self.inner.pii.clone();
        self.read(move |connection| visit_detail_in(connection, &pii, &visit_id))
            .await
    }

    async fn review_queue_facets(
        &self,
        township_id: &str,
        filter: QueueFilter,
        age_cutoffs: Vec<OffsetDateTime>,
    ) -> StoreResult<QueueFacets> {
        let township_id = township_id.to_owned();
        self.read(move |connection| {
            review_queue_facets(connection, &township_id, &filter, &age_cutoffs)
        })
        .await
    }

    async fn visit_revision(
        &self,
        visit_id: &str,
        revision: u32,
    ) -> StoreResult<Option<VisitRevision>> {
        let visit_id = visit_id.to_owned();
        self.read(move |connection| visit_revision(connection, &visit_id, revision))
            .await
    }

    async fn household_photo_history(
        &self,
        household_id: &str,
        exclude_visit_id: &str,
        months: Vec<String>,
        limit: u32,
    ) -> StoreResult<Vec<HouseholdPhoto>> {
        let (household_id, exclude_visit_id) =
            (household_id.to_owned(), exclude_visit_id.to_owned());
        self.read(move |connection| {
            household_photo_history(connection, &household_id, &exclude_visit_id, &months, limit)
        })
        .await
    }

    async fn decide(&self, decision: StoredDecision) -> StoreResult<ReviewState> {
        self.write(move |transaction| decide_in(transaction, &decision))
            .await
    }

    async fn operational_counts(&self) -> StoreResult<OperationalCounts> {
        self.read(|connection| {
            // The state index answers the first; uploads in progress are few.
            let (review_queue, incomplete_uploads): (i64, i64) = connection.query_row(
                "SELECT (SELECT COUNT(*) FROM visits WHERE state = ?1) AS review_queue,
                        (SELECT COUNT(*) FROM uploads WHERE complete = 0) AS incomplete_uploads",
                params![ReviewState::Submitted.as_str()],
                |row| Ok((row.get("review_queue")?, row.get("incomplete_uploads")?)),
            )?;
            Ok(OperationalCounts {
                review_queue: from_sql_unsigned(review_queue, "review queue size")?,
                incomplete_uploads: from_sql_unsigned(incomplete_uploads, "upload backlog")?,
            })
        })
        .await
    }
}
