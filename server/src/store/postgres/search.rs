//! Household search (农户检索) on PostgreSQL: the same documents as SQLite's FTS5 index,
//! searched through a GIN-indexed `tsvector` with one weight per column (migration 0001),
//! and the blind index for a whole ID number. Every hit is confirmed on its opened card, as
//! in SQLite, so the index only has to find a superset.

use super::PreparedOnce;
use fieldsync_model::household::Household;

use super::households::open_card;
use super::{COUNTY_TOWNSHIPS_SQL, PostgresStore};
use crate::store::search::{HouseholdQuery, ID_TAIL_CHARS};
use crate::store::{LedgerArea, StoreResult};

/// Candidates read from the index before ranking (as in SQLite).
const CANDIDATE_CAP: i64 = 5_000;

/// Blind-index kind of member ID numbers (as in SQLite).
const ID_NUMBER_INDEX: &str = "id_number";

/// SQL condition: `column` is a township of `area` (`$1` = the area's id).
pub(super) fn townships_of(area: &LedgerArea, column: &str) -> String {
    match area {
        LedgerArea::Township(_) => format!("{column} = $1"),
        LedgerArea::County(_) => format!("{column} IN ({COUNTY_TOWNSHIPS_SQL})"),
    }
}

pub(super) fn area_id(area: &LedgerArea) -> &str {
    match area {
        LedgerArea::Township(id) | LedgerArea::County(id) => id,
    }
}

/// A `tsquery` lexeme, quoted so typed text is never query syntax.
fn lexeme(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

/// The `tsquery` of the query's index parts, or `None` when only the blind index is searched
/// (a whole ID number).
fn text_query(query: &HouseholdQuery) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(name) = &query.name {
        parts.push(format!("{}:*AB", lexeme(name)));
    }
    if let Some(initials) = &query.initials {
        parts.push(format!("{}:*C", lexeme(initials)));
    }
    if let Some(number) = &query.number {
        parts.push(format!("{}:*D", lexeme(number)));
    }
    if let Some(tail) = &query.id_tail {
        // The index holds the last four characters; longer tails are checked on the card.
        let start = tail.len().saturating_sub(ID_TAIL_CHARS);
        parts.push(format!("{}:D", lexeme(&tail[start..])));
    }
    (!parts.is_empty()).then(|| parts.join(" | "))
}

impl PostgresStore {
    /// Households of `area` that `query` finds, head's-name matches first, at most `limit`.
    pub async fn search_households(
        &self,
        area: &LedgerArea,
        query: &HouseholdQuery,
        limit: u32,
    ) -> StoreResult<Vec<Household>> {
        let connection = self.connection().await?;
        let mut hits: Vec<(String, String)> = Vec::new();
        if let Some(text_query) = text_query(query) {
            let rows = connection
                .query_cached(
                    &format!(
                        "SELECT h.household_id, h.head_name
                           FROM household_search s
                           JOIN households h ON h.household_id = s.household_id
                          WHERE s.document @@ CAST($2::TEXT AS TSQUERY) AND {}
                          LIMIT $3",
                        townships_of(area, "h.township_id")
                    ),
                    &[&area_id(area), &text_query, &CANDIDATE_CAP],
                )
                .await?;
            for row in rows {
                hits.push((row.try_get(0)?, row.try_get(1)?));
            }
        }
        if let Some(id_number) = &query.id_number {
            let blind_index = self.pii().blind_index(ID_NUMBER_INDEX, id_number);
            let rows = connection
                .query_cached(
                    &format!(
                        "SELECT DISTINCT h.household_id, h.head_name
                           FROM member_id_index i
                           JOIN households h ON h.household_id = i.household_id
                          WHERE i.blind_index = $2 AND {}",
                        townships_of(area, "h.township_id")
                    ),
                    &[&area_id(area), &blind_index],
                )
                .await?;
            for row in rows {
                hits.push((row.try_get(0)?, row.try_get(1)?));
            }
        }
        let mut ranked: Vec<(bool, String, String)> = hits
            .into_iter()
            .map(|(household_id, head_name)| {
                (
                    !query.matches_head_name(&head_name),
                    head_name,
                    household_id,
                )
            })
            .collect();
        ranked.sort();
        ranked.dedup();
        let mut households = Vec::new();
        for (_, _, household_id) in ranked {
            if households.len() >= limit as usize {
                break;
            }
            let Some(row) = connection
                .query_opt_cached(
                    "SELECT card, server_seq FROM households WHERE household_id = $1",
                    &[&household_id],
                )
                .await?
            else {
                continue;
            };
            let household =
                open_card(self.pii(), row.try_get("card")?, row.try_get("server_seq")?)?;
            if query.matches(&household) {
                households.push(household);
            }
        }
        Ok(households)
    }
}

#[cfg(test)]
mod tests {
    //! The `tsquery` built here runs on the real server (a syntax slip would only show at
    //! run time). Skipped where `FIELDSYNC_TEST_DATABASE_URL` is unset.

    use super::*;
    use crate::store::conformance;
    use crate::store::postgres::testing::fresh_store;

    #[test]
    fn quotes_and_backslashes_stay_inside_the_lexeme() {
        assert_eq!(lexeme(r"王'小\明"), r"'王''小\\明'");
    }

    #[tokio::test]
    async fn names_initials_numbers_and_tails_find_households_in_the_area_only() {
        let Some(store) =
            fresh_store("names_initials_numbers_and_tails_find_households_in_the_area_only").await
        else {
            return;
        };
        let fixture = conformance::fixture();
        store.load_seed(fixture.seed.clone()).await.expect("seed");
        let township = LedgerArea::Township(conformance::TOWNSHIP_ONE.into());
        let find = |text: &str, area: &LedgerArea| {
            let query = HouseholdQuery::parse(text).expect("a valid query");
            let (store, area) = (store.clone(), area.clone());
            async move {
                store
                    .search_households(&area, &query, 50)
                    .await
                    .expect("search")
                    .into_iter()
                    .map(|household| household.head_name)
                    .collect::<Vec<_>>()
            }
        };
        // A given name without the surname, by prefix of a suffix.
        assert_eq!(find("大山", &township).await, vec!["王大山"]);
        // 拼音 initials of a member's name (李小梅 → lxm).
        assert_eq!(find("lxm", &township).await, vec!["李小梅"]);
        // 陈建国 lives in township two: not found from township one, found from the county.
        assert!(find("陈建国", &township).await.is_empty());
        assert_eq!(
            find("陈建国", &LedgerArea::County(conformance::COUNTY.into())).await,
            vec!["陈建国"]
        );
    }
}
