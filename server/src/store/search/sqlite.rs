//! SQLite side of the household search (农户检索, [`SearchStore`]): an FTS5 table with one
//! document per household (migration 0023), rewritten in the same transaction as every
//! card write (`insert_household` and `save_household` in sqlite.rs), so the index is never
//! behind the cards.
//!
//! Names and 户编号 are indexed as all their suffixes (王小明 → 王小明 小明 明), so a prefix
//! query finds a name by any part of it with FTS5's plain `unicode61` tokenizer; the
//! `trigram` tokenizer would need three characters, and most Chinese given names have two.
//! The FTS rowid is the `search_id` of `household_search_keys`, an INTEGER PRIMARY KEY that
//! VACUUM keeps, so a household's document is replaced by rowid and never by scanning.

use fieldsync_model::household::Household;
use rusqlite::{Connection, Transaction, params};

use crate::store::ledger::sqlite::townships_of;
use crate::store::search::{HouseholdQuery, ID_TAIL_CHARS, SearchDocument, SearchStore};
use crate::store::sqlite::sealing::ID_NUMBER_INDEX;
use crate::store::sqlite::{SqliteStore, load_household};
use crate::store::{LedgerArea, StoreResult};

/// Candidates read from the index before ranking: far more than a page shows, so the
/// head-name-first order is over every match in all but the vaguest queries (one common
/// surname character in a whole county), while memory stays bounded.
const CANDIDATE_CAP: u32 = 5_000;

/// Replace the household's search document with one built from `household` (plain card).
pub(crate) fn refresh_search_document(
    transaction: &Transaction<'_>,
    household: &Household,
) -> StoreResult<()> {
    let search_id: i64 = transaction
        .prepare_cached(
            "INSERT INTO household_search_keys (household_id) VALUES (?1)
             ON CONFLICT (household_id) DO UPDATE SET household_id = excluded.household_id
             RETURNING search_id",
        )?
        .query_row(params![household.household_id], |row| row.get("search_id"))?;
    transaction
        .prepare_cached("DELETE FROM household_search WHERE rowid = ?1")?
        .execute(params![search_id])?;
    let document = SearchDocument::of(household);
    transaction
        .prepare_cached(
            "INSERT INTO household_search (rowid, head, members, initials, number, id_tails)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            search_id,
            document.head,
            document.members,
            document.initials,
            document.number,
            document.id_tails
        ])?;
    Ok(())
}

/// Index every stored household (migration 0023, for households stored before it).
pub(crate) fn rebuild_search_index(transaction: &Transaction<'_>) -> StoreResult<()> {
    let cards: Vec<String> = transaction
        .prepare("SELECT pii_open_card(card) AS card FROM households ORDER BY household_id")?
        .query_map([], |row| row.get::<_, String>("card"))?
        .collect::<Result<_, _>>()?;
    for card in cards {
        // A card that does not decode is reported as corrupt when read; it cannot be
        // indexed, and must not stop the upgrade.
        if let Ok(household) = serde_json::from_str::<Household>(&card) {
            refresh_search_document(transaction, &household)?;
        }
    }
    Ok(())
}

/// A phrase of an FTS5 query: double quotes doubled, so typed text is never syntax.
fn phrase(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

/// The FTS5 `MATCH` expression of the query's index parts, or `None` when only the blind
/// index is searched (a whole ID number).
fn match_expression(query: &HouseholdQuery) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(name) = &query.name {
        parts.push(format!("{{head members}} : {} *", phrase(name)));
    }
    if let Some(initials) = &query.initials {
        parts.push(format!("initials : {} *", phrase(initials)));
    }
    if let Some(number) = &query.number {
        parts.push(format!("number : {} *", phrase(number)));
    }
    if let Some(tail) = &query.id_tail {
        // The index holds the last four characters; longer tails are checked on the card.
        let start = tail.len().saturating_sub(ID_TAIL_CHARS);
        parts.push(format!("id_tails : {}", phrase(&tail[start..])));
    }
    (!parts.is_empty()).then(|| parts.join(" OR "))
}

/// Index hits of `area`: (household id, head's name).
fn candidates(
    connection: &Connection,
    area: &LedgerArea,
    query: &HouseholdQuery,
) -> StoreResult<Vec<(String, String)>> {
    let (LedgerArea::Township(area_id) | LedgerArea::County(area_id)) = area;
    let mut found = Vec::new();
    if let Some(expression) = match_expression(query) {
        let sql = format!(
            "SELECT h.household_id, h.head_name
               FROM household_search
               JOIN household_search_keys k ON k.search_id = household_search.rowid
               JOIN households h ON h.household_id = k.household_id
              WHERE household_search MATCH ?2 AND {}
              LIMIT ?3",
            townships_of(area, "h.township_id")
        );
        let mut statement = connection.prepare_cached(&sql)?;
        let rows = statement.query_map(params![area_id, expression, CANDIDATE_CAP], |row| {
            Ok((row.get("household_id")?, row.get("head_name")?))
        })?;
        for row in rows {
            found.push(row?);
        }
    }
    if let Some(id_number) = &query.id_number {
        let sql = format!(
            "SELECT DISTINCT h.household_id, h.head_name
               FROM member_id_index i
               JOIN households h ON h.household_id = i.household_id
              WHERE i.blind_index = pii_index(?2, ?3) AND {}",
            townships_of(area, "h.township_id")
        );
        let mut statement = connection.prepare_cached(&sql)?;
        let rows = statement.query_map(params![area_id, ID_NUMBER_INDEX, id_number], |row| {
            Ok((row.get("household_id")?, row.get("head_name")?))
        })?;
        for row in rows {
            found.push(row?);
        }
    }
    Ok(found)
}

/// The search: index hits in the area, households whose head's name matches first (then
/// by head's name and id), each confirmed on its opened card, at most `limit`.
fn search(
    connection: &Connection,
    area: &LedgerArea,
    query: &HouseholdQuery,
    limit: u32,
) -> StoreResult<Vec<Household>> {
    let mut hits: Vec<(bool, String, String)> = candidates(connection, area, query)?
        .into_iter()
        .map(|(household_id, head_name)| {
            (
                !query.matches_head_name(&head_name),
                head_name,
                household_id,
            )
        })
        .collect();
    hits.sort();
    hits.dedup();
    let mut households = Vec::new();
    for (_, _, household_id) in hits {
        if households.len() >= limit as usize {
            break;
        }
        if let Some(household) = load_household(connection, &household_id)?
            && query.matches(&household)
        {
            households.push(household);
        }
    }
    Ok(households)
}

#[async_trait::async_trait]
impl SearchStore for SqliteStore {
    async fn search_households(
        &self,
        area: &LedgerArea,
        query: &HouseholdQuery,
        limit: u32,
    ) -> StoreResult<Vec<Household>> {
        let (area, query) = (area.clone(), query.clone());
        self.read(move |connection| search(connection, &area, &query, limit))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_quotes_stay_inside_the_phrase() {
        let query = HouseholdQuery {
            name: Some("王\"小".into()),
            id_tail: Some("31002X".into()),
            ..HouseholdQuery::default()
        };
        assert_eq!(
            match_expression(&query).as_deref(),
            Some("{head members} : \"王\"\"小\" * OR id_tails : \"002X\"")
        );
        assert_eq!(
            match_expression(&HouseholdQuery {
                id_number: Some("11010519491231002X".into()),
                ..HouseholdQuery::default()
            }),
            None
        );
    }
}
