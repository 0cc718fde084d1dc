//! The counts behind the review queue's filter bar (筛选栏), shared by every backend: a
//! backend reads the township's waiting items with its own SQL (one indexed read of short
//! rows, no filter but the township) and hands them here, so the counting, its filters and
//! its orders are the same on SQLite and PostgreSQL by construction.

use std::collections::BTreeMap;

use fieldsync_model::evidence::EvidenceFlag;
use time::OffsetDateTime;

use crate::store::review::{FacetCount, QueueFacets, QueueFilter};
use crate::store::{StoreError, StoreResult};

/// One waiting item (latest revision in state SUBMITTED) as the filter bar needs it.
#[derive(Debug, Clone, PartialEq)]
pub(in crate::store) struct FacetRow {
    village_id: String,
    village_name: String,
    cadre_user_id: String,
    cadre_name: String,
    /// When the server received the revision, in the stored unit (Unix milliseconds).
    submitted_at_millis: i64,
    /// The codes of the item's stored evidence flags, each once, with one stored flag of
    /// each code (decoded for its Chinese label, so labels come from the model).
    flags: Vec<(String, serde_json::Value)>,
}

impl FacetRow {
    /// A row from its stored columns; `evidence_flags` is the stored JSON array of flags
    /// (`None` before the first computation). A flag without a code is skipped; text that
    /// is not a JSON array is `Corrupt`.
    pub(in crate::store) fn new(
        village_id: String,
        village_name: String,
        cadre_user_id: String,
        cadre_name: String,
        submitted_at_millis: i64,
        evidence_flags: Option<&str>,
    ) -> StoreResult<Self> {
        let mut flags: Vec<(String, serde_json::Value)> = Vec::new();
        if let Some(text) = evidence_flags {
            let stored: Vec<serde_json::Value> = serde_json::from_str(text)
                .map_err(|error| StoreError::Corrupt(format!("evidence flags: {error}")))?;
            for flag in stored {
                let Some(code) = flag.get("code").and_then(|code| code.as_str()) else {
                    continue;
                };
                if !flags.iter().any(|(seen, _)| seen == code) {
                    flags.push((code.to_owned(), flag));
                }
            }
        }
        Ok(Self {
            village_id,
            village_name,
            cadre_user_id,
            cadre_name,
            submitted_at_millis,
            flags,
        })
    }

    fn has_flag(&self, code: &str) -> bool {
        self.flags.iter().any(|(own, _)| own == code)
    }
}

/// Add one to `key`'s count, remembering its label.
fn tally(counts: &mut BTreeMap<String, (String, u64)>, key: &str, label: &str) {
    counts
        .entry(key.to_owned())
        .or_insert_with(|| (label.to_owned(), 0))
        .1 += 1;
}

/// Counts in label order (then key), as the filter bar lists them.
fn in_label_order(counts: BTreeMap<String, (String, u64)>) -> Vec<FacetCount> {
    let mut counts: Vec<FacetCount> = counts
        .into_iter()
        .map(|(key, (label, count))| FacetCount { key, label, count })
        .collect();
    counts.sort_by(|a, b| (&a.label, &a.key).cmp(&(&b.label, &b.key)));
    counts
}

/// The filter bar's counts of `items` (the township's waiting items, unfiltered): each
/// dimension counted with the *other* filters of `filter` applied, so the count beside a
/// value is what choosing it would show. `stored_millis` is the backend's own conversion
/// of an instant to its stored unit, so the age filter and `age_cutoffs` compare exactly
/// as that backend's queue query does (and fail with its error for an out-of-range time).
pub(in crate::store) fn count_queue_facets(
    items: &[FacetRow],
    filter: &QueueFilter,
    age_cutoffs: &[OffsetDateTime],
    stored_millis: impl Fn(OffsetDateTime) -> StoreResult<i64>,
) -> StoreResult<QueueFacets> {
    let before = filter
        .submitted_at_or_before
        .map(&stored_millis)
        .transpose()?;
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
    let age_ok = |item: &FacetRow| before.is_none_or(|before| item.submitted_at_millis <= before);

    let mut total = 0;
    let mut by_village = BTreeMap::new();
    let mut by_cadre = BTreeMap::new();
    let mut by_flag: BTreeMap<String, (serde_json::Value, u64)> = BTreeMap::new();
    let cutoffs: Vec<i64> = age_cutoffs
        .iter()
        .map(|cutoff| stored_millis(*cutoff))
        .collect::<StoreResult<_>>()?;
    let mut by_age = vec![0u64; cutoffs.len()];
    for item in items {
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
                if item.submitted_at_millis <= *cutoff {
                    *count += 1;
                }
            }
        }
    }
    let by_flag = by_flag
        .into_iter()
        .map(|(key, (sample, count))| FacetCount {
            // A flag written by a newer server is shown by its code.
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

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    /// The backends' own conversion: Unix milliseconds, truncated toward zero.
    fn millis(instant: OffsetDateTime) -> StoreResult<i64> {
        Ok(i64::try_from(instant.unix_timestamp_nanos() / 1_000_000).expect("in range"))
    }

    fn row(village: &str, cadre: &str, submitted_at: OffsetDateTime, flags: &str) -> FacetRow {
        FacetRow::new(
            village.into(),
            format!("{village}村"),
            cadre.into(),
            format!("{cadre}干部"),
            millis(submitted_at).expect("millis"),
            Some(flags),
        )
        .expect("row")
    }

    /// A flag code this server does not know is counted and labelled by its code; a
    /// repeated code counts its item once; a stored flag without a code is skipped.
    #[test]
    fn unknown_and_repeated_flags_are_counted_once_per_item() {
        let at = datetime!(2026-03-10 02:00 UTC);
        let items = [
            row(
                "v1",
                "a",
                at,
                r#"[{"code":"mock_location"},{"code":"mock_location"},{"code":"from_the_future"},{"no_code":1}]"#,
            ),
            row("v2", "b", at, "[]"),
        ];
        let facets =
            count_queue_facets(&items, &QueueFilter::default(), &[at], millis).expect("facets");
        assert_eq!(facets.total, 2);
        assert_eq!(facets.by_age, [2]);
        assert_eq!(
            facets
                .by_flag
                .iter()
                .map(|count| (count.key.as_str(), count.label.as_str(), count.count))
                .collect::<Vec<_>>(),
            [
                ("from_the_future", "from_the_future", 1),
                ("mock_location", "模拟定位", 1)
            ]
        );
    }

    /// Stored flags that are not a JSON array are a damaged row, never a panic.
    #[test]
    fn flags_that_are_not_json_are_corrupt() {
        let error = FacetRow::new(
            "v1".into(),
            "村".into(),
            "a".into(),
            "干部".into(),
            0,
            Some("not json"),
        )
        .expect_err("not json");
        assert!(matches!(error, StoreError::Corrupt(_)), "{error:?}");
    }

    /// An age cutoff counts items submitted at or before it, to the millisecond.
    #[test]
    fn age_cutoffs_include_their_own_instant() {
        let at = datetime!(2026-03-10 02:00 UTC);
        let items = [row("v1", "a", at, "[]")];
        let facets = count_queue_facets(
            &items,
            &QueueFilter::default(),
            &[at, at - time::Duration::milliseconds(1)],
            millis,
        )
        .expect("facets");
        assert_eq!(facets.by_age, [1, 0]);
    }
}
