//! Household search (农户检索), the use case behind the console's header search box: the
//! query is read by [`HouseholdQuery::parse`], run against the store's index within the
//! caller's area only (a township supervisor's township, a county admin's or auditor's
//! county: the same [`crate::ledger::area_of`] every area-wide console page uses), and the
//! hits are shown with ID numbers masked for every role ([`access::disclosure`] without a
//! full request), whatever was typed to find them.

use std::collections::HashMap;

use fieldsync_model::CodeList;
use fieldsync_model::access::{self, SensitiveField};

use crate::AppState;
use crate::error::ServiceError;
use crate::store::search::{HouseholdQuery, SEARCH_LIMIT};
use crate::store::{LedgerArea, Principal};

/// A member the query found, as the results show them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchedMember {
    pub name: String,
    /// 与户主关系, in Chinese.
    pub relation: &'static str,
    /// Always masked (`110105********1234`).
    pub id_number_masked: String,
}

/// One household found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchHit {
    pub household_id: String,
    pub head_name: String,
    /// 乡镇 name (county staff search several townships).
    pub township_name: String,
    pub village_name: String,
    /// 户编号.
    pub national_household_number: String,
    /// The members (head included) the query matched by name or ID number.
    pub matched_members: Vec<MatchedMember>,
}

/// The answer to one query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchResults {
    pub hits: Vec<SearchHit>,
    /// More households matched than are shown: the page asks for a narrower query.
    pub truncated: bool,
}

/// Search the caller's area for `text`. A query that cannot be read is `InvalidArgument`
/// naming `q`, with the Chinese reason.
pub async fn search(
    state: &AppState,
    principal: &Principal,
    text: &str,
) -> Result<SearchResults, ServiceError> {
    let area = crate::ledger::area_of(principal)?;
    let query = HouseholdQuery::parse(text)
        .map_err(|error| ServiceError::invalid("q", error.to_string()))?;
    let mut households = state
        .store
        .search_households(&area, &query, SEARCH_LIMIT + 1)
        .await?;
    let truncated = households.len() > SEARCH_LIMIT as usize;
    households.truncate(SEARCH_LIMIT as usize);
    let township_names = township_names(state, &area).await?;
    let masking = access::disclosure(principal.role, SensitiveField::IdNumber, false);
    let hits = households
        .into_iter()
        .map(|household| SearchHit {
            matched_members: household
                .current_members()
                .filter(|member| query.matches_member(member))
                .map(|member| MatchedMember {
                    name: member.name.clone(),
                    relation: member.relation.label_zh(),
                    id_number_masked: access::disclose(
                        SensitiveField::IdNumber,
                        masking,
                        &member.id_number,
                    )
                    .unwrap_or_default(),
                })
                .collect(),
            township_name: township_names
                .get(&household.township_id)
                .cloned()
                .unwrap_or_default(),
            household_id: household.household_id,
            head_name: household.head_name,
            village_name: household.village_name,
            national_household_number: household.national_household_number,
        })
        .collect();
    Ok(SearchResults { hits, truncated })
}

/// Names of the townships a search may return, by id.
async fn township_names(
    state: &AppState,
    area: &LedgerArea,
) -> Result<HashMap<String, String>, ServiceError> {
    Ok(match area {
        LedgerArea::Township(township_id) => state
            .store
            .get_area(township_id)
            .await?
            .into_iter()
            .map(|area| (area.area_id, area.name))
            .collect(),
        LedgerArea::County(county_id) => state
            .store
            .list_areas(Some(county_id))
            .await?
            .into_iter()
            .map(|area| (area.area_id, area.name))
            .collect(),
    })
}
