//! The change log (变更日志) on PostgreSQL: what phones pull, numbered per scope (township).
//!
//! A scope's next number comes from its `scope_counters` row by an upsert, which keeps the
//! row locked until the writing transaction ends. A second writer to the same township
//! waits on that row, so numbers of one scope become visible in the order they were issued
//! and a pull cursor never passes a number that a slower transaction commits later. (A
//! plain PostgreSQL sequence would not: its values are taken outside transactions.)

use deadpool_postgres::GenericClient;

use super::WriteError;

/// One change-log entry to write.
pub(super) struct ChangeEntry<'a> {
    /// The household's township: the scope the entry is pulled in.
    pub scope_id: &'a str,
    pub household_id: &'a str,
    pub kind: &'a str,
    pub entity_id: &'a str,
    pub revision: i32,
    /// For tombstones: the user they are for.
    pub addressed_to: Option<&'a str>,
    /// When a tombstone was written (unix ms; the horizon counts from it); 0 for other
    /// kinds, which never expire.
    pub logged_at: i64,
}

impl<'a> ChangeEntry<'a> {
    /// A change of the household's card.
    pub fn of_household(scope_id: &'a str, household_id: &'a str) -> Self {
        Self {
            scope_id,
            household_id,
            kind: super::CHANGE_KIND_HOUSEHOLD,
            entity_id: household_id,
            revision: 0,
            addressed_to: None,
            logged_at: 0,
        }
    }
}

/// Write a change-log entry at its scope's next number; returns its global `seq` (the
/// household's change sequence).
pub(super) async fn log_entry(
    client: &impl GenericClient,
    entry: &ChangeEntry<'_>,
) -> Result<i64, WriteError> {
    let next_scope_seq = client
        .prepare_cached(
            "INSERT INTO scope_counters (scope_id, last_seq) VALUES ($1, 1)
             ON CONFLICT (scope_id) DO UPDATE SET last_seq = scope_counters.last_seq + 1
             RETURNING last_seq",
        )
        .await?;
    let scope_seq: i64 = client
        .query_one(&next_scope_seq, &[&entry.scope_id])
        .await?
        .try_get(0)?;
    let insert = client
        .prepare_cached(
            "INSERT INTO change_log (household_id, kind, entity_id, revision, addressed_to,
                                     logged_at, scope_id, scope_seq)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             RETURNING seq",
        )
        .await?;
    Ok(client
        .query_one(
            &insert,
            &[
                &entry.household_id,
                &entry.kind,
                &entry.entity_id,
                &entry.revision,
                &entry.addressed_to,
                &entry.logged_at,
                &entry.scope_id,
                &scope_seq,
            ],
        )
        .await?
        .try_get(0)?)
}
