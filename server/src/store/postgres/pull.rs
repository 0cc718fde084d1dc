//! Pulls (下载) on PostgreSQL: the same pages as SQLite's (`sqlite/pull.rs`), read in one
//! `REPEATABLE READ` snapshot so the page's cursor, cards and statuses agree with each
//! other while replicas keep writing.
//!
//! The cursor is per scope (township) and numbers in a scope become visible in the order
//! they were issued (`change_log.rs`), so a page that reads "everything after n" never
//! misses an entry committed later with a smaller number.

use super::PreparedOnce;
use std::collections::{BTreeSet, HashMap, HashSet};

use deadpool_postgres::GenericClient;
use fieldsync_model::codes::Role;
use fieldsync_model::income::{IncomeRegistration, current_registrations};
use fieldsync_model::review::{ReturnReason, VisitStatus};

use super::households::load_household;
use super::{
    CHANGE_KIND_HOUSEHOLD, CHANGE_KIND_REMOVED, CHANGE_KIND_VISIT_STATUS, COUNTY_TOWNSHIPS_SQL,
    PostgresStore, decode_json, from_millis, parse_state,
};
use crate::store::sealed::PiiCipher;
use crate::store::{Principal, PullChanges, ScopeCursor, StoreError, StoreResult};

/// The most entries one page may ask for (as in SQLite).
const MAX_PULL_LIMIT: u32 = 10_000;

/// The value bound as `$1` in every scope test: a cadre's scope is their pairings, every
/// other role's is an area.
fn scope_key(principal: &Principal) -> &str {
    match principal.role {
        Role::Cadre => &principal.user_id,
        _ => &principal.area_id,
    }
}

/// SQL that is true when the household whose id is the SQL expression `household` is in the
/// scope of a principal of `role` now, with `$1` bound to [`scope_key`] (DESIGN §7): one
/// primary-key lookup.
fn scope_membership_sql(role: Role, household: &str) -> String {
    match role {
        Role::Cadre => format!(
            "EXISTS (SELECT 1 FROM pairings AS member
                     WHERE member.cadre_user_id = $1 AND member.household_id = {household}
                       AND member.active)"
        ),
        Role::Township => format!(
            "EXISTS (SELECT 1 FROM households AS member
                     WHERE member.household_id = {household} AND member.township_id = $1)"
        ),
        Role::County => format!(
            "EXISTS (SELECT 1 FROM households AS member
                     WHERE member.household_id = {household} AND $1::TEXT IS NOT NULL)"
        ),
        Role::Village | Role::Auditor => format!(
            "EXISTS (SELECT 1 FROM households AS member
                     WHERE member.household_id = {household}
                       AND (member.village_id = $1 OR member.township_id = $1
                            OR member.township_id IN ({COUNTY_TOWNSHIPS_SQL})))"
        ),
    }
}

/// The page query of one scope: entries after `$2` in scope `$5`, at most `$3`, in scope
/// order; tombstones only to their addressee `$4`. A cadre's page starts from the cadre's
/// pairings, so its cost follows the cadre's scope, not the township's.
fn pull_page_sql(role: Role) -> String {
    if role == Role::Cadre {
        return format!(
            "SELECT scope_seq, household_id, kind, entity_id, revision FROM (
                 SELECT entry.scope_seq, entry.household_id, entry.kind, entry.entity_id,
                        entry.revision
                   FROM pairings AS member JOIN change_log AS entry
                        ON entry.household_id = member.household_id
                  WHERE member.cadre_user_id = $1 AND member.active
                    AND entry.scope_id = $5 AND entry.scope_seq > $2
                    AND entry.kind <> '{CHANGE_KIND_REMOVED}'
                 UNION ALL
                 SELECT scope_seq, household_id, kind, entity_id, revision FROM change_log
                  WHERE addressed_to = $4 AND kind = '{CHANGE_KIND_REMOVED}'
                    AND scope_id = $5 AND scope_seq > $2
             ) AS page
             ORDER BY scope_seq LIMIT $3"
        );
    }
    format!(
        "SELECT scope_seq, household_id, kind, entity_id, revision FROM change_log
          WHERE scope_id = $5 AND scope_seq > $2
            AND ((kind <> '{CHANGE_KIND_REMOVED}' AND {membership})
                 OR (kind = '{CHANGE_KIND_REMOVED}' AND addressed_to = $4))
          ORDER BY scope_seq LIMIT $3",
        membership = scope_membership_sql(role, "change_log.household_id")
    )
}

/// The townships that hold at least one household of a principal's scope now (`$1` =
/// [`scope_key`]).
fn scope_townships_sql(role: Role) -> String {
    match role {
        Role::Cadre => "SELECT DISTINCT households.township_id
                          FROM pairings JOIN households USING (household_id)
                         WHERE pairings.cadre_user_id = $1 AND pairings.active"
            .to_owned(),
        Role::Township => {
            "SELECT $1::TEXT WHERE EXISTS (SELECT 1 FROM households WHERE township_id = $1)"
                .to_owned()
        }
        // The distinct townships of the register, one index probe each (a skip scan).
        Role::County => "WITH RECURSIVE townships (township_id) AS (
                 SELECT (SELECT MIN(township_id) FROM households) WHERE $1::TEXT IS NOT NULL
                 UNION ALL
                 SELECT (SELECT MIN(township_id) FROM households
                          WHERE township_id > townships.township_id)
                   FROM townships WHERE townships.township_id IS NOT NULL
             )
             SELECT township_id FROM townships WHERE township_id IS NOT NULL"
            .to_owned(),
        Role::Village | Role::Auditor => format!(
            "SELECT DISTINCT township_id FROM households WHERE village_id = $1
             UNION
             SELECT $1::TEXT WHERE EXISTS (SELECT 1 FROM households WHERE township_id = $1)
             UNION
             SELECT area_id FROM ({COUNTY_TOWNSHIPS_SQL}) AS county_township
              WHERE EXISTS (SELECT 1 FROM households
                             WHERE households.township_id = county_township.area_id)"
        ),
    }
}

async fn in_scope(
    client: &impl GenericClient,
    principal: &Principal,
    household_id: &str,
) -> StoreResult<bool> {
    let sql = format!(
        "SELECT {}",
        scope_membership_sql(principal.role, "$2::TEXT")
    );
    let statement = client.prepare_cached(&sql).await?;
    Ok(client
        .query_one(&statement, &[&scope_key(principal), &household_id])
        .await?
        .try_get(0)?)
}

/// The scopes a principal pulls: those of its households now, plus those of tombstones
/// still addressed to it. Sorted.
async fn principal_scopes(
    client: &impl GenericClient,
    principal: &Principal,
) -> StoreResult<Vec<String>> {
    let mut scopes = BTreeSet::new();
    let townships = client
        .prepare_cached(&scope_townships_sql(principal.role))
        .await?;
    for row in client.query(&townships, &[&scope_key(principal)]).await? {
        scopes.insert(row.try_get::<_, String>(0)?);
    }
    let tombstones = client
        .prepare_cached(&format!(
            "SELECT DISTINCT scope_id FROM change_log
              WHERE kind = '{CHANGE_KIND_REMOVED}' AND addressed_to = $1"
        ))
        .await?;
    for row in client.query(&tombstones, &[&principal.user_id]).await? {
        scopes.insert(row.try_get::<_, String>(0)?);
    }
    Ok(scopes.into_iter().collect())
}

async fn newest_scope_seq(client: &impl GenericClient, scope_id: &str) -> StoreResult<i64> {
    Ok(client
        .query_opt_cached(
            "SELECT last_seq FROM scope_counters WHERE scope_id = $1",
            &[&scope_id],
        )
        .await?
        .map(|row| row.try_get(0))
        .transpose()?
        .unwrap_or(0))
}

/// The review status of one revision: its state plus the decision on it, if any.
pub(super) async fn load_visit_status(
    client: &impl GenericClient,
    visit_id: &str,
    revision: i32,
) -> StoreResult<Option<VisitStatus>> {
    let statement = client
        .prepare_cached(
            "SELECT v.household_id, v.state, d.reasons, d.note, d.deadline,
                    COALESCE(u.display_name, d.reviewer_user_id) AS reviewer_name,
                    d.decided_at
               FROM visits v
               LEFT JOIN decisions d ON d.visit_id = v.visit_id AND d.revision = v.revision
               LEFT JOIN users u ON u.user_id = d.reviewer_user_id
              WHERE v.visit_id = $1 AND v.revision = $2",
        )
        .await?;
    let Some(row) = client
        .query_opt(&statement, &[&visit_id, &revision])
        .await?
    else {
        return Ok(None);
    };
    let reasons: Option<String> = row.try_get("reasons")?;
    let reasons: Vec<ReturnReason> = match reasons {
        Some(text) => decode_json(&text, "decision reasons")?,
        None => Vec::new(),
    };
    let state: String = row.try_get("state")?;
    let decided_at: Option<i64> = row.try_get("decided_at")?;
    Ok(Some(VisitStatus {
        visit_id: visit_id.to_owned(),
        revision: u32::try_from(revision)
            .map_err(|_| StoreError::Corrupt(format!("revision {revision}")))?,
        household_id: row.try_get("household_id")?,
        state: parse_state(&state)?,
        reasons,
        note: row
            .try_get::<_, Option<String>>("note")?
            .unwrap_or_default(),
        deadline: row
            .try_get::<_, Option<String>>("deadline")?
            .unwrap_or_default(),
        reviewer_name: row
            .try_get::<_, Option<String>>("reviewer_name")?
            .unwrap_or_default(),
        decided_at: decided_at.map(from_millis).transpose()?,
    }))
}

/// The registrations of `household_ids`, per household in arrival order.
async fn income_registrations_of(
    client: &impl GenericClient,
    household_ids: &[&str],
) -> StoreResult<HashMap<String, Vec<IncomeRegistration>>> {
    let mut by_household: HashMap<String, Vec<IncomeRegistration>> = HashMap::new();
    if household_ids.is_empty() {
        return Ok(by_household);
    }
    let statement = client
        .prepare_cached(
            "SELECT household_id, body FROM income_registrations
              WHERE household_id = ANY($1)
              ORDER BY household_id, arrival",
        )
        .await?;
    for row in client.query(&statement, &[&household_ids]).await? {
        let household_id: String = row.try_get("household_id")?;
        let body: String = row.try_get("body")?;
        by_household
            .entry(household_id)
            .or_default()
            .push(decode_json(&body, "income registration")?);
    }
    Ok(by_household)
}

async fn pull_changes_in(
    client: &impl GenericClient,
    pii: &PiiCipher,
    principal: &Principal,
    cursor: &ScopeCursor,
    limit: u32,
) -> StoreResult<PullChanges> {
    let scope_key = scope_key(principal);
    let limit = limit.clamp(1, MAX_PULL_LIMIT);
    let page = client
        .prepare_cached(&pull_page_sql(principal.role))
        .await?;
    let mut remaining = limit;
    let mut has_more = false;
    let mut next_cursor = ScopeCursor::default();
    let mut changes: Vec<(String, String, String, i32)> = Vec::new();
    for scope_id in principal_scopes(client, principal).await? {
        let from = cursor.get(&scope_id);
        if remaining == 0 {
            has_more = true;
            next_cursor.set(&scope_id, from);
            continue;
        }
        // One row more than asked tells whether this scope has more without a COUNT.
        let rows = client
            .query(
                &page,
                &[
                    &scope_key,
                    &from,
                    &(i64::from(remaining) + 1),
                    &principal.user_id,
                    &scope_id,
                ],
            )
            .await?;
        let mut scope_changes: Vec<(i64, String, String, String, i32)> = rows
            .iter()
            .map(|row| {
                Ok((
                    row.try_get("scope_seq")?,
                    row.try_get("household_id")?,
                    row.try_get("kind")?,
                    row.try_get("entity_id")?,
                    row.try_get("revision")?,
                ))
            })
            .collect::<Result<_, tokio_postgres::Error>>()?;
        let scope_has_more = scope_changes.len() > remaining as usize;
        scope_changes.truncate(remaining as usize);
        remaining -= scope_changes.len() as u32;
        let read_up_to = scope_changes.last().map_or(from, |change| change.0);
        // Nothing more of this scope in view: jump to its newest sequence in this snapshot,
        // which keeps quiet phones ahead of the compaction floor.
        let position = if scope_has_more {
            has_more = true;
            read_up_to
        } else {
            read_up_to.max(newest_scope_seq(client, &scope_id).await?)
        };
        next_cursor.set(&scope_id, position);
        changes.extend(scope_changes.into_iter().map(
            |(_, household_id, kind, entity_id, revision)| {
                (household_id, kind, entity_id, revision)
            },
        ));
    }
    let mut result = PullChanges {
        next_cursor,
        has_more,
        ..PullChanges::default()
    };
    let mut households_seen = HashSet::new();
    let mut statuses_seen = HashSet::new();
    for (household_id, kind, entity_id, revision) in changes {
        match kind.as_str() {
            CHANGE_KIND_HOUSEHOLD => {
                if households_seen.insert(household_id.clone())
                    && let Some(household) =
                        load_household(client, pii, &household_id, false).await?
                {
                    result.households.push(household);
                }
            }
            CHANGE_KIND_REMOVED => {
                if !result.removed_household_ids.contains(&household_id)
                    && !in_scope(client, principal, &household_id).await?
                {
                    result.removed_household_ids.push(household_id);
                }
            }
            CHANGE_KIND_VISIT_STATUS => {
                if statuses_seen.insert((entity_id.clone(), revision))
                    && let Some(status) = load_visit_status(client, &entity_id, revision).await?
                {
                    result.visit_statuses.push(status);
                }
            }
            other => {
                return Err(StoreError::Corrupt(format!(
                    "unknown change kind {other:?}"
                )));
            }
        }
    }
    let household_ids: Vec<&str> = result
        .households
        .iter()
        .map(|household| household.household_id.as_str())
        .collect();
    let mut registrations = income_registrations_of(client, &household_ids).await?;
    for household_id in household_ids {
        if let Some(arrived) = registrations.remove(household_id) {
            result
                .income_registrations
                .extend(current_registrations(&arrived));
        }
    }
    Ok(result)
}

impl PostgresStore {
    /// Changes in the principal's scope after `cursor`, at most `limit` entries.
    pub async fn pull_changes(
        &self,
        principal: &Principal,
        cursor: &ScopeCursor,
        limit: u32,
    ) -> StoreResult<PullChanges> {
        let mut connection = self.connection().await?;
        let snapshot = connection
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let changes = pull_changes_in(&snapshot, self.pii(), principal, cursor, limit).await?;
        snapshot.commit().await?;
        Ok(changes)
    }
}
