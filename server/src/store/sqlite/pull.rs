//! SQLite side of Pull: which scopes (townships) a principal reads, the page query over
//! `change_log`, and the page's cards, statuses, tombstones and income registrations.
//!
//! Every page costs in proportion to its own size, never to the whole scope (issue 11 §3):
//! the page query walks the `change_log_by_scope (scope_id, scope_seq)` index from the
//! cursor, and each entry's membership in the caller's scope is a primary-key lookup on
//! `households`, so nothing is rebuilt over the scope per page. A cadre's page starts from
//! the cadre's pairings instead (one index range per paired household from the cursor), so
//! a phone's pull follows its own scope, not its township's.
//! The scope list itself comes from indexed lookups whose cost follows the number of
//! townships, not households. `EXPLAIN QUERY PLAN` of [`pull_page_sql`] is pinned by the
//! tests below, so a regression to a scan fails the suite.

use std::collections::{BTreeSet, HashMap, HashSet};

use fieldsync_model::codes::Role;
use fieldsync_model::income::current_registrations;
use rusqlite::{Connection, params};

use super::{
    CHANGE_KIND_HOUSEHOLD, CHANGE_KIND_REMOVED, CHANGE_KIND_VISIT_STATUS, MAX_PULL_LIMIT, corrupt,
    households, load_household, load_visit_status, newest_scope_seq,
};
use crate::store::{Principal, PullChanges, ScopeCursor, StoreResult};

/// The value bound as `?1` in every scope test: a cadre's scope is their pairings, every
/// other role's is an area.
fn scope_key(principal: &Principal) -> &str {
    match principal.role {
        Role::Cadre => &principal.user_id,
        _ => &principal.area_id,
    }
}

/// SQL that is true when the household whose id is the SQL expression `household` is in the
/// scope of a principal of `role` now, with `?1` bound to [`scope_key`] (DESIGN §7).
///
/// Written as one point lookup by primary key, so it can run per change-log row: a cadre's
/// pairing `(cadre_user_id, household_id)`, or the household row itself for area roles.
fn scope_membership_sql(role: Role, household: &str) -> String {
    match role {
        Role::Cadre => format!(
            "EXISTS (SELECT 1 FROM pairings AS member
                     WHERE member.cadre_user_id = ?1 AND member.household_id = {household}
                       AND member.active = 1)"
        ),
        Role::Township => format!(
            "EXISTS (SELECT 1 FROM households AS member
                     WHERE member.household_id = {household} AND member.township_id = ?1)"
        ),
        // The county role sees the whole register; `?1` is still bound, so reference it.
        Role::County => format!(
            "EXISTS (SELECT 1 FROM households AS member
                     WHERE member.household_id = {household} AND ?1 IS NOT NULL)"
        ),
        // Village cadres and auditors: everything at or below their area.
        Role::Village | Role::Auditor => format!(
            "EXISTS (SELECT 1 FROM households AS member
                     WHERE member.household_id = {household}
                       AND (member.village_id = ?1 OR member.township_id = ?1
                            OR member.township_id IN ({county_townships})))",
            county_townships = county_townships_sql!()
        ),
    }
}

/// The page query of one scope for a principal of `role`: entries after the cursor
/// position `?2` in scope `?5`, at most `?3`, in scope order. Tombstones are delivered only
/// to their addressee `?4` (who no longer has the household in scope); everything else is
/// delivered by scope membership. `?1` is [`scope_key`].
///
/// A cadre's scope is a handful of pairings inside a township of thousands, so a cadre's
/// page starts from the pairings instead and reads each paired household's entries from the
/// cursor (index `change_log_by_household_scope`, migration 0020), plus the tombstones
/// addressed to the cadre (index `change_log_removed_by_addressee`): the cost follows the
/// cadre's scope, not the township's.
fn pull_page_sql(role: Role) -> String {
    if role == Role::Cadre {
        // CROSS JOIN keeps the pairings outside: the planner must not walk the township's
        // entries and probe the pairings instead.
        return format!(
            "SELECT scope_seq, household_id, kind, entity_id, revision FROM (
                 SELECT entry.scope_seq, entry.household_id, entry.kind, entry.entity_id,
                        entry.revision
                 FROM pairings AS member CROSS JOIN change_log AS entry
                 WHERE member.cadre_user_id = ?1 AND member.active = 1
                   AND entry.household_id = member.household_id
                   AND entry.scope_id = ?5 AND entry.scope_seq > ?2
                   AND entry.kind <> '{CHANGE_KIND_REMOVED}'
                 UNION ALL
                 SELECT scope_seq, household_id, kind, entity_id, revision FROM change_log
                 WHERE addressed_to = ?4 AND kind = '{CHANGE_KIND_REMOVED}'
                   AND +scope_id = ?5 AND +scope_seq > ?2
             )
             ORDER BY scope_seq LIMIT ?3"
        );
    }
    format!(
        "SELECT scope_seq, household_id, kind, entity_id, revision FROM change_log
         WHERE scope_id = ?5 AND scope_seq > ?2
           AND ((kind <> '{CHANGE_KIND_REMOVED}' AND {membership})
                OR (kind = '{CHANGE_KIND_REMOVED}' AND addressed_to = ?4))
         ORDER BY scope_seq LIMIT ?3",
        membership = scope_membership_sql(role, "change_log.household_id")
    )
}

/// The townships that hold at least one household of a principal's scope now, with `?1`
/// bound to [`scope_key`]. Each costs lookups per township (or per pairing/village member),
/// never a pass over the county's households.
fn scope_townships_sql(role: Role) -> &'static str {
    match role {
        Role::Cadre => {
            "SELECT DISTINCT households.township_id
             FROM pairings JOIN households USING (household_id)
             WHERE pairings.cadre_user_id = ?1 AND pairings.active = 1"
        }
        Role::Township => {
            "SELECT ?1 WHERE EXISTS (SELECT 1 FROM households WHERE township_id = ?1)"
        }
        // The distinct townships of the whole register, one index probe each (a skip scan
        // over `households_by_township`).
        Role::County => {
            "WITH RECURSIVE townships (township_id) AS (
                 SELECT (SELECT MIN(township_id) FROM households) WHERE ?1 IS NOT NULL
                 UNION ALL
                 SELECT (SELECT MIN(township_id) FROM households
                         WHERE township_id > townships.township_id)
                 FROM townships WHERE townships.township_id IS NOT NULL
             )
             SELECT township_id FROM townships WHERE township_id IS NOT NULL"
        }
        Role::Village | Role::Auditor => concat!(
            "SELECT DISTINCT township_id FROM households WHERE village_id = ?1
             UNION
             SELECT ?1 WHERE EXISTS (SELECT 1 FROM households WHERE township_id = ?1)
             UNION
             SELECT area_id FROM (",
            county_townships_sql!(),
            ") AS county_township
             WHERE EXISTS (SELECT 1 FROM households
                           WHERE households.township_id = county_township.area_id)"
        ),
    }
}

/// Whether the household is in the principal's scope now.
fn in_scope(
    connection: &Connection,
    principal: &Principal,
    household_id: &str,
) -> StoreResult<bool> {
    let sql = format!("SELECT {}", scope_membership_sql(principal.role, "?2"));
    Ok(connection
        .prepare_cached(&sql)?
        .query_row(params![scope_key(principal), household_id], |row| {
            row.get::<_, bool>(0)
        })?)
}

/// The scopes (townships) a principal pulls: those of the households in its scope now, plus
/// those of tombstones still addressed to it (a cadre who lost the last household of a
/// township must still learn of the removal). Sorted.
fn principal_scopes(connection: &Connection, principal: &Principal) -> StoreResult<Vec<String>> {
    let mut scopes = BTreeSet::new();
    let mut townships = connection.prepare_cached(scope_townships_sql(principal.role))?;
    for township in townships.query_map(params![scope_key(principal)], |row| row.get(0))? {
        scopes.insert(township?);
    }
    let mut tombstones = connection.prepare_cached(&format!(
        "SELECT DISTINCT scope_id FROM change_log
         WHERE kind = '{CHANGE_KIND_REMOVED}' AND addressed_to = ?1"
    ))?;
    for scope in tombstones.query_map(params![principal.user_id], |row| row.get(0))? {
        scopes.insert(scope?);
    }
    Ok(scopes.into_iter().collect())
}

pub(in crate::store) fn pull_changes_in(
    connection: &Connection,
    principal: &Principal,
    cursor: &ScopeCursor,
    limit: u32,
) -> StoreResult<PullChanges> {
    let scope_key = scope_key(principal);
    let limit = limit.clamp(1, MAX_PULL_LIMIT);
    let mut statement = connection.prepare_cached(&pull_page_sql(principal.role))?;
    // `limit` entries in all: scopes are read in order, each with what the earlier ones left.
    // A scope not reached keeps its position, and `has_more` asks for another page.
    let mut remaining = limit;
    let mut has_more = false;
    let mut next_cursor = ScopeCursor::default();
    let mut changes: Vec<(String, String, String, u32)> = Vec::new();
    for scope_id in principal_scopes(connection, principal)? {
        let from = cursor.get(&scope_id);
        if remaining == 0 {
            has_more = true;
            next_cursor.set(&scope_id, from);
            continue;
        }
        // One row more than asked tells whether this scope has more without a COUNT.
        let rows = statement.query_map(
            params![
                scope_key,
                from,
                i64::from(remaining) + 1,
                principal.user_id,
                scope_id
            ],
            |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, u32>(4)?,
                ))
            },
        )?;
        let mut scope_changes: Vec<(i64, String, String, String, u32)> =
            rows.collect::<Result<_, _>>()?;
        let scope_has_more = scope_changes.len() > remaining as usize;
        scope_changes.truncate(remaining as usize);
        remaining -= scope_changes.len() as u32;
        let read_up_to = scope_changes.last().map_or(from, |change| change.0);
        // With nothing more of this scope in view, the caller has seen everything up to the
        // scope's newest sequence in this snapshot: jumping there keeps quiet phones ahead of
        // the scope's compaction floor, so only phones that really slept past the horizon get
        // a RESET.
        let position = if scope_has_more {
            has_more = true;
            read_up_to
        } else {
            read_up_to.max(newest_scope_seq(connection, &scope_id)?)
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
                    && let Some(household) = load_household(connection, &household_id)?
                {
                    result.households.push(household);
                }
            }
            CHANGE_KIND_REMOVED => {
                // Only if it is still gone: a household reassigned away and back is simply
                // delivered, so one page never both adds and removes the same id.
                if !result.removed_household_ids.contains(&household_id)
                    && !in_scope(connection, principal, &household_id)?
                {
                    result.removed_household_ids.push(household_id);
                }
            }
            CHANGE_KIND_VISIT_STATUS => {
                // The status is read as it is now, so several log rows of one revision
                // collapse into one current status.
                if statuses_seen.insert((entity_id.clone(), revision))
                    && let Some(status) = load_visit_status(connection, &entity_id, revision)?
                {
                    result.visit_statuses.push(status);
                }
            }
            other => return Err(corrupt(format!("unknown change kind {other:?}"))),
        }
    }
    // The registrations of the page's households in one query, delivered per household in
    // the order the households are.
    let household_ids: Vec<&str> = result
        .households
        .iter()
        .map(|household| household.household_id.as_str())
        .collect();
    let mut registrations: HashMap<String, Vec<_>> =
        households::income_registrations_of(connection, &household_ids)?;
    for household_id in household_ids {
        if let Some(arrived) = registrations.remove(household_id) {
            result
                .income_registrations
                .extend(current_registrations(&arrived));
        }
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    //! The page query's plan, on a real SQLite file made by the store's migrations and
    //! seeded through the store: a range of the scope index, point lookups for membership.

    use super::*;
    use crate::store::conformance;
    use crate::store::sqlite::tests::open_temp_store;

    const ROLES: [Role; 5] = [
        Role::Cadre,
        Role::Village,
        Role::Township,
        Role::County,
        Role::Auditor,
    ];

    /// The `detail` column of `EXPLAIN QUERY PLAN` for `sql` with every parameter bound.
    fn plan_of(connection: &Connection, sql: &str, parameter_count: usize) -> Vec<String> {
        let mut statement = connection
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("explain");
        let parameters: Vec<String> = (0..parameter_count)
            .map(|index| index.to_string())
            .collect();
        let rows = statement
            .query_map(rusqlite::params_from_iter(parameters.iter()), |row| {
                row.get::<_, String>(3)
            })
            .expect("plan rows");
        rows.collect::<Result<_, _>>().expect("plan")
    }

    fn full_scans(plan: &[String]) -> Vec<&String> {
        plan.iter()
            .filter(|step| {
                [
                    "SCAN change_log",
                    "SCAN households",
                    "SCAN member",
                    "SCAN pairings",
                ]
                .iter()
                .any(|scan| step.starts_with(scan))
            })
            .collect()
    }

    #[tokio::test]
    async fn the_pull_page_query_reads_ranges_from_the_cursor_and_looks_members_up_by_key() {
        let (_directory, store) = open_temp_store();
        conformance::seeded(&store).await;
        let connection = store.inner.checkout_reader().expect("reader");
        for role in ROLES {
            let plan = plan_of(&connection, &pull_page_sql(role), 5);
            assert!(
                full_scans(&plan).is_empty(),
                "{role:?}: the page query scans a table: {plan:#?}"
            );
            // Both primary keys are TEXT, so SQLite keeps them as automatic unique indexes.
            let expected: &[&str] = match role {
                // From the cadre's pairings, each household's entries after the cursor, and
                // the tombstones addressed to the cadre.
                Role::Cadre => &[
                    "SEARCH member USING INDEX sqlite_autoindex_pairings_1 (cadre_user_id=?)",
                    "SEARCH entry USING INDEX change_log_by_household_scope (household_id=? AND scope_id=? AND scope_seq>?)",
                    "SEARCH change_log USING INDEX change_log_removed_by_addressee (addressed_to=?)",
                ],
                // The scope's entries after the cursor, in index order, each checked by key.
                _ => &[
                    "SEARCH change_log USING INDEX change_log_by_scope (scope_id=? AND scope_seq>?)",
                ],
            };
            for step in expected {
                assert!(
                    plan.iter().any(|planned| planned == step),
                    "{role:?}: the page query must {step:?}: {plan:#?}"
                );
            }
            if role != Role::Cadre {
                assert!(
                    !plan.iter().any(|step| step.contains("TEMP B-TREE")),
                    "{role:?}: the page query sorts instead of reading in index order: {plan:#?}"
                );
                assert!(
                    plan.iter().any(|step| step.starts_with("SEARCH member")
                        && step.ends_with("INDEX sqlite_autoindex_households_1 (household_id=?)")),
                    "{role:?}: membership must be a primary-key lookup: {plan:#?}"
                );
            }
        }
        store.inner.return_reader(connection);
    }

    #[tokio::test]
    async fn the_scope_list_never_scans_the_register() {
        let (_directory, store) = open_temp_store();
        conformance::seeded(&store).await;
        let connection = store.inner.checkout_reader().expect("reader");
        for role in ROLES {
            let plan = plan_of(&connection, scope_townships_sql(role), 1);
            assert!(
                full_scans(&plan).is_empty(),
                "{role:?}: the scope list scans a table: {plan:#?}"
            );
        }
        store.inner.return_reader(connection);
    }
}
