//! SQLite side of the review loop (审核闭环): the filtered review queue (village, cadre,
//! evidence flag, days waiting, keyset "next"), the counts behind the console's filter bar,
//! one stored revision with its decision (for the correction diff), and a household's
//! photos from earlier visits (the submission page's "previous months").
//!
//! Every filter is pushed into SQL, so a township of thousands of households is never read
//! whole into memory to filter one page.

use fieldsync_model::CodeList;
use fieldsync_model::codes::{ReviewState, VisitMode};
use fieldsync_model::evidence::EvidenceFlag;
use fieldsync_model::visit::{PhotoRecord, Visit};
use rusqlite::{Connection, OptionalExtension, ToSql, named_params};
use time::OffsetDateTime;

use super::{
    DEFAULT_QUEUE_PAGE, corrupt, decode_flags, decode_json, from_millis, from_sql_unsigned,
    load_visit_status, parse_state, to_millis,
};
use crate::store::{
    FacetCount, HouseholdPhoto, QueueFacets, QueueFilter, QueueItem, StoreResult, VisitRevision,
};

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
pub(super) fn review_queue(
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
                COALESCE(a.name, json_extract(h.card, '$.village_name'), ''),
                v.author_user_id, COALESCE(u.display_name, v.author_user_id), v.mode,
                v.submitted_at, v.distance_m,
                (SELECT COUNT(*) FROM photos p WHERE p.visit_id = v.visit_id), v.evidence_flags
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
                row.get::<_, String>(0)?,
                row.get::<_, u32>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, String>(4)?,
                row.get::<_, String>(5)?,
            ),
            (
                row.get::<_, String>(6)?,
                row.get::<_, String>(7)?,
                row.get::<_, i32>(8)?,
                row.get::<_, i64>(9)?,
                row.get::<_, Option<f64>>(10)?,
                row.get::<_, i64>(11)?,
                row.get::<_, Option<String>>(12)?,
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

/// One waiting item as the filter bar needs it.
struct FacetRow {
    village_id: String,
    village_name: String,
    cadre_user_id: String,
    cadre_name: String,
    submitted_at: i64,
    /// The codes of the item's stored evidence flags, each once, with one stored flag of
    /// each code (decoded for its Chinese label, so labels come from the model).
    flags: Vec<(String, serde_json::Value)>,
}

impl FacetRow {
    fn has_flag(&self, code: &str) -> bool {
        self.flags.iter().any(|(own, _)| own == code)
    }
}

/// Add one to `key`'s count, remembering its label.
fn tally(counts: &mut std::collections::BTreeMap<String, (String, u64)>, key: &str, label: &str) {
    counts
        .entry(key.to_owned())
        .or_insert_with(|| (label.to_owned(), 0))
        .1 += 1;
}

/// Counts in label order (then key), as the filter bar lists them.
fn in_label_order(counts: std::collections::BTreeMap<String, (String, u64)>) -> Vec<FacetCount> {
    let mut counts: Vec<FacetCount> = counts
        .into_iter()
        .map(|(key, (label, count))| FacetCount { key, label, count })
        .collect();
    counts.sort_by(|a, b| (&a.label, &a.key).cmp(&(&b.label, &b.key)));
    counts
}

/// The filter bar's counts: each dimension with the other filters applied.
///
/// The township's waiting items are read ONCE (the shared [`QUEUE_FROM_WHERE`] with no
/// filter but the township) and counted in memory: one indexed read of a few thousand short
/// rows instead of one query per dimension and per age choice, which cost over 100 ms for a
/// township of 5,000 households (BENCHMARKS.md).
pub(super) fn review_queue_facets(
    connection: &Connection,
    township_id: &str,
    filter: &QueueFilter,
    age_cutoffs: &[OffsetDateTime],
) -> StoreResult<QueueFacets> {
    let unfiltered = QueueParams::new(township_id, &QueueFilter::default())?;
    let sql = format!(
        "SELECT h.village_id, COALESCE(a.name, h.village_id), v.author_user_id,
                COALESCE(u.display_name, v.author_user_id), v.submitted_at, v.evidence_flags
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
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, String>(3)?,
            row.get::<_, i64>(4)?,
            row.get::<_, Option<String>>(5)?,
        ))
    })?;
    let mut items = Vec::new();
    for row in rows {
        let (village_id, village_name, cadre_user_id, cadre_name, submitted_at, flags) = row?;
        let mut codes: Vec<(String, serde_json::Value)> = Vec::new();
        if let Some(text) = flags {
            let stored: Vec<serde_json::Value> = decode_json(&text, "evidence flags")?;
            for flag in stored {
                let Some(code) = flag.get("code").and_then(|code| code.as_str()) else {
                    continue;
                };
                if !codes.iter().any(|(seen, _)| seen == code) {
                    codes.push((code.to_owned(), flag));
                }
            }
        }
        items.push(FacetRow {
            village_id,
            village_name,
            cadre_user_id,
            cadre_name,
            submitted_at,
            flags: codes,
        });
    }

    let before = filter.submitted_at_or_before.map(to_millis).transpose()?;
    let village_ok = |item: &FacetRow| {
        filter
            .village_id
            .as_ref()
            .is_none_or(|village| *village == item.village_id)
    };
    let cadre_ok = |item: &FacetRow| {
        filter
            .cadre_user_id
            .as_ref()
            .is_none_or(|cadre| *cadre == item.cadre_user_id)
    };
    let flag_ok = |item: &FacetRow| filter.flag.as_ref().is_none_or(|code| item.has_flag(code));
    let age_ok = |item: &FacetRow| before.is_none_or(|before| item.submitted_at <= before);

    let mut total = 0;
    let mut by_village = std::collections::BTreeMap::new();
    let mut by_cadre = std::collections::BTreeMap::new();
    let mut by_flag: std::collections::BTreeMap<String, (serde_json::Value, u64)> =
        std::collections::BTreeMap::new();
    let cutoffs: Vec<i64> = age_cutoffs
        .iter()
        .map(|cutoff| to_millis(*cutoff))
        .collect::<StoreResult<_>>()?;
    let mut by_age = vec![0u64; cutoffs.len()];
    for item in &items {
        let (village, cadre, flag, age) = (
            village_ok(item),
            cadre_ok(item),
            flag_ok(item),
            age_ok(item),
        );
        if village && cadre && flag && age {
            total += 1;
        }
        if cadre && flag && age {
            tally(&mut by_village, &item.village_id, &item.village_name);
        }
        if village && flag && age {
            tally(&mut by_cadre, &item.cadre_user_id, &item.cadre_name);
        }
        if village && cadre && age {
            for (code, sample) in &item.flags {
                by_flag
                    .entry(code.clone())
                    .or_insert_with(|| (sample.clone(), 0))
                    .1 += 1;
            }
        }
        if village && cadre && flag {
            for (count, cutoff) in by_age.iter_mut().zip(&cutoffs) {
                if item.submitted_at <= *cutoff {
                    *count += 1;
                }
            }
        }
    }
    let by_flag = by_flag
        .into_iter()
        .map(|(key, (sample, count))| FacetCount {
            label: serde_json::from_value::<EvidenceFlag>(sample)
                .map_or_else(|_| key.clone(), |flag| flag.label_zh().to_owned()),
            key,
            count,
        })
        .collect();
    Ok(QueueFacets {
        total,
        by_village: in_label_order(by_village),
        by_cadre: in_label_order(by_cadre),
        by_flag,
        by_age,
    })
}

/// One stored revision with its decision.
pub(super) fn visit_revision(
    connection: &Connection,
    visit_id: &str,
    revision: u32,
) -> StoreResult<Option<VisitRevision>> {
    let row: Option<(String, String, String, i64)> = connection
        .query_row(
            "SELECT body, content_hash, state, submitted_at FROM visits
             WHERE visit_id = ?1 AND revision = ?2",
            rusqlite::params![visit_id, revision],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
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
pub(super) fn household_photo_history(
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
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, i64>(4)?,
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
