//! SQLite side of [`SyncStore`]: each call is one read snapshot or one write transaction
//! over the core's push, pull, register and change-log functions (`store/sqlite.rs`).

use std::sync::atomic::Ordering;

use fieldsync_model::hlc::Hlc;
use fieldsync_model::register::{FieldTarget, PendingConflict, RegisterWrite, Stamp};
use rusqlite::{OptionalExtension, params};
use time::OffsetDateTime;

use crate::store::sqlite::{
    CHANGE_KIND_REMOVED, SqliteStore, UpToDatePullKey, apply_push_in, change_log_bounds_in,
    device_backlog_in, evidence, heartbeat_unchanged, hlc_from_sql, open_conflicts_in,
    pending_conflicts_in, pull, record_heartbeat_in, register_history_in, resolve_conflict_in,
    scope_floors_in, stored_heartbeat_in, to_millis,
};
use crate::store::{
    ChangeLogBounds, ChangeLogCompaction, ConflictRecord, ConflictResolution, DeviceBacklog,
    Heartbeat, Principal, PullChanges, PushBatch, PushFlagWork, PushResult, ScopeCursor,
    StoreResult, SyncStore,
};

#[async_trait::async_trait]
impl SyncStore for SqliteStore {
    async fn visit_owner(&self, visit_id: &str) -> StoreResult<Option<(String, String)>> {
        let visit_id = visit_id.to_owned();
        self.read(move |connection| {
            // The first revision's author owns the visit; later revisions are corrections.
            Ok(connection
                .query_row(
                    "SELECT household_id, author_user_id FROM visits
                     WHERE visit_id = ?1 ORDER BY revision LIMIT 1",
                    params![visit_id],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?)
        })
        .await
    }

    async fn apply_push(&self, batch: PushBatch) -> StoreResult<PushResult> {
        self.write(move |transaction| apply_push_in(transaction, &batch, false))
            .await
    }

    async fn apply_push_with_flags(
        &self,
        batch: PushBatch,
        flags: PushFlagWork,
    ) -> StoreResult<PushResult> {
        self.write(move |transaction| {
            let result = apply_push_in(transaction, &batch, true)?;
            let (visit_ids, photo_sha256s) =
                crate::evidence::stored_targets(&result, &flags.targets);
            if !visit_ids.is_empty() {
                let pushed = crate::store::evidence_rows::pushed_visits(&batch, &result);
                evidence::flag_work_in_savepoint(transaction, &pushed, |work| {
                    crate::evidence::run_without_waiting(crate::evidence::refresh_after_push_in(
                        work,
                        &visit_ids,
                        &photo_sha256s,
                        &flags.settings,
                    ))
                })?;
            }
            Ok(result)
        })
        .await
    }

    async fn pull_changes(
        &self,
        principal: &Principal,
        cursor: &ScopeCursor,
        limit: u32,
    ) -> StoreResult<PullChanges> {
        let key: UpToDatePullKey = (
            principal.user_id.clone(),
            principal.role.as_str(),
            principal.area_id.clone(),
            cursor.encode(),
            limit,
        );
        let generation = self.inner.write_generation.current();
        if let Some(nothing_new) = self.inner.up_to_date_pulls.get(&key, generation) {
            return Ok(nothing_new);
        }
        let principal = principal.clone();
        let cursor = cursor.clone();
        let changes = self
            .read(move |connection| pull::pull_changes_in(connection, &principal, &cursor, limit))
            .await?;
        // Only answers with nothing in them are kept: they are small, and they are what a
        // phone that is up to date asks for on every sync.
        let nothing_new = changes.households.is_empty()
            && changes.visit_statuses.is_empty()
            && changes.removed_household_ids.is_empty()
            && changes.income_registrations.is_empty()
            && !changes.has_more;
        if nothing_new {
            self.inner
                .up_to_date_pulls
                .put(key, generation, changes.clone());
        }
        Ok(changes)
    }

    fn committed_writes(&self) -> u64 {
        self.inner.committed_writes.load(Ordering::Relaxed)
    }

    async fn register_history(
        &self,
        household_id: &str,
        target: &FieldTarget,
        field: &str,
    ) -> StoreResult<Vec<RegisterWrite>> {
        let household_id = household_id.to_owned();
        let target_key = target.as_key();
        let field = field.to_owned();
        self.read(move |connection| {
            register_history_in(connection, &household_id, &target_key, &field)
        })
        .await
    }

    async fn max_register_hlc(&self) -> StoreResult<Hlc> {
        self.read(|connection| {
            let highest: Option<i64> =
                connection
                    .query_row("SELECT MAX(hlc) FROM register_writes", [], |row| row.get(0))?;
            highest.map_or(Ok(Hlc::ZERO), hlc_from_sql)
        })
        .await
    }

    async fn open_conflicts(&self, township_id: &str) -> StoreResult<Vec<ConflictRecord>> {
        let township_id = township_id.to_owned();
        self.read(move |connection| open_conflicts_in(connection, &township_id))
            .await
    }

    async fn pending_conflicts(&self, user_id: &str) -> StoreResult<Vec<PendingConflict>> {
        // Every pull's checkpoint asks: answered from memory while nothing was written.
        let key = user_id.to_owned();
        let user_id = user_id.to_owned();
        self.read_memoized(
            |connections| &connections.pending_conflicts,
            key,
            move |connection| pending_conflicts_in(connection, &user_id),
        )
        .await
    }

    async fn resolve_conflict(&self, resolution: ConflictResolution) -> StoreResult<Stamp> {
        self.write(move |transaction| resolve_conflict_in(transaction, &resolution))
            .await
    }

    async fn compact_change_log(
        &self,
        tombstones_before: OffsetDateTime,
    ) -> StoreResult<ChangeLogCompaction> {
        self.write(move |transaction| {
            // Entries superseded by a later entry for the same thing carry nothing a pull
            // still needs: every cursor before them also reads the later one.
            let superseded = transaction.execute(
                "DELETE FROM change_log AS old
                 WHERE kind <> ?1 AND EXISTS (
                     SELECT 1 FROM change_log AS newer
                     WHERE newer.kind = old.kind AND newer.household_id = old.household_id
                       AND newer.entity_id = old.entity_id AND newer.revision = old.revision
                       AND newer.seq > old.seq)",
                params![CHANGE_KIND_REMOVED],
            )?;
            let before = to_millis(tombstones_before)?;
            let expired: Vec<(String, i64)> = {
                let mut statement = transaction.prepare(
                    "SELECT scope_id, MAX(scope_seq) FROM change_log
                     WHERE kind = ?1 AND logged_at < ?2 GROUP BY scope_id",
                )?;
                let rows = statement.query_map(params![CHANGE_KIND_REMOVED, before], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })?;
                rows.collect::<Result<_, _>>()?
            };
            let tombstones = transaction.execute(
                "DELETE FROM change_log WHERE kind = ?1 AND logged_at < ?2",
                params![CHANGE_KIND_REMOVED, before],
            )?;
            for (scope_id, floor) in expired {
                transaction.execute(
                    "INSERT INTO scope_floors (scope_id, floor_seq) VALUES (?1, ?2)
                     ON CONFLICT (scope_id) DO UPDATE
                     SET floor_seq = max(floor_seq, excluded.floor_seq)",
                    params![scope_id, floor],
                )?;
            }
            Ok(ChangeLogCompaction {
                superseded_deleted: superseded as u64,
                tombstones_deleted: tombstones as u64,
                floors: scope_floors_in(transaction)?,
            })
        })
        .await
    }

    async fn change_log_bounds(&self) -> StoreResult<ChangeLogBounds> {
        self.read_memoized(
            |connections| &connections.change_log_bounds,
            (),
            change_log_bounds_in,
        )
        .await
    }

    async fn record_heartbeat(
        &self,
        device_id: &str,
        user_id: &str,
        heartbeat: Heartbeat,
        server_time: OffsetDateTime,
    ) -> StoreResult<()> {
        let device_id = device_id.to_owned();
        let user_id = user_id.to_owned();
        let stored = {
            let device_id = device_id.clone();
            self.read_memoized(
                |connections| &connections.heartbeats,
                device_id.clone(),
                move |connection| stored_heartbeat_in(connection, &device_id),
            )
            .await?
        };
        if heartbeat_unchanged(stored.as_ref(), &user_id, &heartbeat, server_time)? {
            return Ok(());
        }
        self.write(move |transaction| {
            record_heartbeat_in(transaction, &device_id, &user_id, &heartbeat, server_time)
        })
        .await
    }

    async fn device_backlog(&self, township_id: &str) -> StoreResult<Vec<DeviceBacklog>> {
        let township_id = township_id.to_owned();
        self.read(move |connection| device_backlog_in(connection, &township_id))
            .await
    }
}
