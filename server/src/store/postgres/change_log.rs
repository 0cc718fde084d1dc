//! The change log (变更日志) on PostgreSQL: what phones pull, numbered per scope (township).
//!
//! An entry is written without a scope number; just before its transaction commits,
//! [`number_pending_changes`] numbers every entry the transaction wrote from its scope's
//! `scope_counters` row, by an upsert that keeps the row locked until the commit. A second
//! writer to the same township waits on that row only for that last statement, so numbers
//! of one scope become visible in the order they were issued and a pull cursor never passes
//! a number that a slower transaction commits later. (A plain PostgreSQL sequence would
//! not: its values are taken outside transactions.) Numbering at the end, not at the first
//! entry, keeps the lock short: pushes to one township used to queue on it from their first
//! visit to their commit.

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

/// Number the change-log entries the calling transaction wrote (the only entries without
/// a number it can see: others' are uncommitted), in `seq` order within each scope, and
/// move each scope's counter past them. Scopes are locked in id order, so two transactions
/// writing to the same townships cannot deadlock here. Run by `write_transaction!` before
/// every commit; a transaction that logged nothing finds no rows (a partial index of the
/// unnumbered entries keeps that cheap).
pub(crate) async fn number_pending_changes(client: &impl GenericClient) -> Result<(), WriteError> {
    let number = client
        .prepare_cached(
            "WITH pending AS (
                 SELECT seq, scope_id,
                        row_number() OVER (PARTITION BY scope_id ORDER BY seq) AS position,
                        count(*) OVER (PARTITION BY scope_id) AS scope_count
                   FROM change_log WHERE scope_seq IS NULL
             ),
             bumped AS (
                 INSERT INTO scope_counters (scope_id, last_seq)
                 SELECT DISTINCT scope_id, scope_count FROM pending ORDER BY scope_id
                 ON CONFLICT (scope_id)
                 DO UPDATE SET last_seq = scope_counters.last_seq + excluded.last_seq
                 RETURNING scope_id, last_seq
             )
             UPDATE change_log entry
                SET scope_seq = bumped.last_seq - pending.scope_count + pending.position
               FROM pending JOIN bumped USING (scope_id)
              WHERE entry.seq = pending.seq",
        )
        .await?;
    client.execute(&number, &[]).await?;
    Ok(())
}

/// Write a change-log entry, numbered in its scope when its transaction commits
/// ([`number_pending_changes`]); returns its global `seq` (the household's change sequence).
pub(super) async fn log_entry(
    client: &impl GenericClient,
    entry: &ChangeEntry<'_>,
) -> Result<i64, WriteError> {
    let insert = client
        .prepare_cached(
            "INSERT INTO change_log (household_id, kind, entity_id, revision, addressed_to,
                                     logged_at, scope_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
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
            ],
        )
        .await?
        .try_get(0)?)
}
