//! The rest of the sync area on PostgreSQL, as in SQLite: conflict records (冲突记录) and
//! their resolution, device heartbeats, change-log bounds and compaction, and reassigning a
//! household's primary cadre. Writes that change a household lock its row before taking any
//! scope counter (the order `push.rs` keeps).

use super::PreparedOnce;
use std::collections::BTreeMap;

use deadpool_postgres::GenericClient;
use fieldsync_model::codes::Role;
use fieldsync_model::household::Household;
use fieldsync_model::register::{
    FieldEdit, FieldTarget, PendingConflict, RegisterWrite, Stamp, current, validate_edit,
};
use time::OffsetDateTime;

use super::change_log::{ChangeEntry, log_entry};
use super::households::load_household;
use super::push::{register_history, resend_household, write_register};
use super::{CHANGE_KIND_REMOVED, PostgresStore, WriteError, decode_json, from_millis, to_millis};
use crate::store::sealed::PiiCipher;
use crate::store::{
    ChangeLogBounds, ChangeLogCompaction, ConflictRecord, ConflictResolution, DeviceBacklog,
    Heartbeat, ScopeBounds, StoreError, StoreResult,
};

/// Most pending conflicts one pull reports (as in SQLite).
const MAX_PENDING_CONFLICTS: i64 = 100;

/// How long a repeated heartbeat is not written again (as in SQLite).
const HEARTBEAT_REWRITE_AFTER_MILLIS: i64 = 60_000;

fn conflict_context(conflict_key: &str) -> String {
    format!("conflict/{conflict_key}")
}

fn decode_write(pii: &PiiCipher, stored: &str, conflict_key: &str) -> StoreResult<RegisterWrite> {
    let text = pii
        .open(stored, &conflict_context(conflict_key))
        .map_err(|error| StoreError::Sealed(error.to_string()))?;
    decode_json(&text, "conflict write")
}

fn parse_target(conflict_key: &str, target_key: &str) -> StoreResult<FieldTarget> {
    FieldTarget::parse_key(target_key).ok_or_else(|| {
        StoreError::Corrupt(format!("conflict {conflict_key}: target {target_key:?}"))
    })
}

fn unsigned(value: i64, what: &str) -> StoreResult<u64> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} {value}")))
}

fn signed(value: u64, what: &str) -> StoreResult<i64> {
    i64::try_from(value).map_err(|_| StoreError::InvalidValue {
        field: what.to_owned(),
        message: format!("{value} is too large"),
    })
}

fn optional_millis(instant: Option<OffsetDateTime>) -> StoreResult<Option<i64>> {
    instant.map(to_millis).transpose()
}

pub(super) async fn display_name_of(
    client: &impl GenericClient,
    user_id: &str,
) -> StoreResult<String> {
    Ok(client
        .query_opt_cached(
            "SELECT display_name FROM users WHERE user_id = $1",
            &[&user_id],
        )
        .await?
        .map(|row| row.try_get(0))
        .transpose()?
        .unwrap_or_else(|| user_id.to_owned()))
}

/// The name a device gave at its latest login, or empty.
async fn device_name_of(client: &impl GenericClient, device_id: &str) -> StoreResult<String> {
    Ok(client
        .query_opt_cached(
            "SELECT device_name FROM sessions WHERE device_id = $1
              ORDER BY created_at DESC LIMIT 1",
            &[&device_id],
        )
        .await?
        .map(|row| row.try_get(0))
        .transpose()?
        .unwrap_or_default())
}

/// After a pairing of `cadre_user_id` with the household ended: unless the cadre keeps
/// another active pairing with it, address a hand-over tombstone to the cadre.
pub(super) async fn tombstone_unless_paired(
    client: &impl GenericClient,
    card: &Household,
    cadre_user_id: &str,
    at: OffsetDateTime,
) -> Result<(), WriteError> {
    let still_paired = client
        .query_opt_cached(
            "SELECT 1 FROM pairings
              WHERE cadre_user_id = $1 AND household_id = $2 AND active",
            &[&cadre_user_id, &card.household_id],
        )
        .await?
        .is_some();
    if still_paired {
        return Ok(());
    }
    log_entry(
        client,
        &ChangeEntry {
            scope_id: &card.township_id,
            household_id: &card.household_id,
            kind: CHANGE_KIND_REMOVED,
            entity_id: &card.household_id,
            revision: 0,
            addressed_to: Some(cadre_user_id),
            logged_at: to_millis(at)?,
        },
    )
    .await?;
    Ok(())
}

/// [`PostgresStore::reassign_household`] inside the caller's transaction.
pub(super) async fn reassign_household_in(
    transaction: &impl GenericClient,
    pii: &PiiCipher,
    household_id: &str,
    new_cadre_user_id: &str,
    at: OffsetDateTime,
) -> Result<(), WriteError> {
    let Some(mut card) = load_household(transaction, pii, household_id, true).await? else {
        return Err(StoreError::NotFound(format!("household {household_id}")).into());
    };
    require_cadre(transaction, new_cadre_user_id).await?;
    let old_cadres: Vec<String> = transaction
        .query_cached(
            "UPDATE pairings SET active = FALSE
              WHERE household_id = $1 AND is_primary AND active AND cadre_user_id <> $2
              RETURNING cadre_user_id",
            &[&household_id, &new_cadre_user_id],
        )
        .await?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?;
    transaction
        .execute_cached(
            "INSERT INTO pairings (cadre_user_id, household_id, is_primary, active)
             VALUES ($1, $2, TRUE, TRUE)
             ON CONFLICT (cadre_user_id, household_id) DO UPDATE SET
                 is_primary = TRUE, active = TRUE",
            &[&new_cadre_user_id, &household_id],
        )
        .await?;
    let mut old_cadres = old_cadres;
    old_cadres.sort();
    for old_cadre in &old_cadres {
        tombstone_unless_paired(transaction, &card, old_cadre, at).await?;
    }
    // A household entry after the pairing change, so the new cadre's cursor still reaches it.
    resend_household(transaction, pii, &mut card).await
}

/// Refuse (as not found) a user id that is not a cadre's.
pub(super) async fn require_cadre(
    client: &impl GenericClient,
    cadre_user_id: &str,
) -> Result<(), WriteError> {
    let role: Option<String> = client
        .query_opt_cached(
            "SELECT role FROM users WHERE user_id = $1",
            &[&cadre_user_id],
        )
        .await?
        .map(|row| row.try_get(0))
        .transpose()?;
    if role.as_deref() != Some(Role::Cadre.as_str()) {
        return Err(StoreError::NotFound(format!("cadre {cadre_user_id}")).into());
    }
    Ok(())
}

impl PostgresStore {
    /// The township's open conflict records, oldest first, with names for the console.
    pub async fn open_conflicts(&self, township_id: &str) -> StoreResult<Vec<ConflictRecord>> {
        let connection = self.connection().await?;
        let rows = connection
            .query_cached(
                "SELECT c.conflict_key, c.household_id, h.head_name,
                        COALESCE(a.name, (h.card::json ->> 'village_name'), '') AS village_name,
                        c.target_key, c.field, c.first_json, c.second_json, c.created_at
                   FROM conflicts c
                   JOIN households h ON h.household_id = c.household_id
                   LEFT JOIN areas a ON a.area_id = h.village_id
                  WHERE c.township_id = $1 AND c.resolved_at IS NULL
                  ORDER BY c.created_at, c.conflict_key",
                &[&township_id],
            )
            .await?;
        let mut records = Vec::with_capacity(rows.len());
        for row in rows {
            let conflict_key: String = row.try_get("conflict_key")?;
            let household_id: String = row.try_get("household_id")?;
            let target_key: String = row.try_get("target_key")?;
            let field: String = row.try_get("field")?;
            let target = parse_target(&conflict_key, &target_key)?;
            let first = decode_write(self.pii(), row.try_get("first_json")?, &conflict_key)?;
            let second = decode_write(self.pii(), row.try_get("second_json")?, &conflict_key)?;
            let member_name = match &target {
                FieldTarget::Household => None,
                FieldTarget::Member(member_id) => {
                    load_household(&connection, self.pii(), &household_id, false)
                        .await?
                        .and_then(|card| {
                            card.members
                                .into_iter()
                                .find(|member| &member.member_id == member_id)
                                .map(|member| member.name)
                        })
                }
            };
            let history =
                register_history(&connection, self.pii(), &household_id, &target_key, &field)
                    .await?;
            records.push(ConflictRecord {
                first_author_name: display_name_of(&connection, &first.author_user_id).await?,
                second_author_name: display_name_of(&connection, &second.author_user_id).await?,
                first_device_name: device_name_of(&connection, &first.stamp.device_id).await?,
                second_device_name: device_name_of(&connection, &second.stamp.device_id).await?,
                current: current(&history).cloned(),
                created_at: from_millis(row.try_get("created_at")?)?,
                head_name: row.try_get("head_name")?,
                village_name: row.try_get("village_name")?,
                conflict_key,
                household_id,
                target,
                member_name,
                field,
                first,
                second,
            });
        }
        Ok(records)
    }

    /// `user_id`'s own edits in open conflict records, oldest first.
    pub async fn pending_conflicts(&self, user_id: &str) -> StoreResult<Vec<PendingConflict>> {
        let connection = self.connection().await?;
        let side = |author: &str| {
            format!(
                "SELECT conflict_key, household_id, target_key, field, created_at, first_json,
                        second_json
                   FROM conflicts
                  WHERE resolved_at IS NULL AND {author}_author_user_id = $1"
            )
        };
        let statement = connection
            .prepare_cached(&format!(
                "{} UNION {} ORDER BY created_at, conflict_key LIMIT {MAX_PENDING_CONFLICTS}",
                side("first"),
                side("second")
            ))
            .await?;
        let mut pending = Vec::new();
        for row in connection.query(&statement, &[&user_id]).await? {
            let conflict_key: String = row.try_get("conflict_key")?;
            let target_key: String = row.try_get("target_key")?;
            let first = decode_write(self.pii(), row.try_get("first_json")?, &conflict_key)?;
            let second = decode_write(self.pii(), row.try_get("second_json")?, &conflict_key)?;
            // The user's own side; when both are theirs (two phones), the later one.
            let own = if second.author_user_id == user_id {
                second
            } else {
                first
            };
            pending.push(PendingConflict {
                household_id: row.try_get("household_id")?,
                target: parse_target(&conflict_key, &target_key)?,
                field: row.try_get("field")?,
                recorded_at: from_millis(row.try_get("created_at")?)?,
                device_id: own.stamp.device_id,
            });
        }
        Ok(pending)
    }

    /// Write the reviewer's choice as a new register write that wins, and close every open
    /// record of that register. Returns the stamp written.
    pub async fn resolve_conflict(&self, resolution: ConflictResolution) -> StoreResult<Stamp> {
        let resolution = &resolution;
        write_transaction!(self, |transaction| {
            let not_found =
                || StoreError::NotFound(format!("conflict {}", resolution.conflict_key));
            let Some(row) = transaction
                .query_opt_cached(
                    "SELECT household_id, township_id, target_key, field, resolved_at
                       FROM conflicts WHERE conflict_key = $1",
                    &[&resolution.conflict_key],
                )
                .await?
            else {
                return Err(not_found().into());
            };
            let household_id: String = row.try_get("household_id")?;
            let township_id: String = row.try_get("township_id")?;
            let target_key: String = row.try_get("target_key")?;
            let field: String = row.try_get("field")?;
            let resolved_at: Option<i64> = row.try_get("resolved_at")?;
            // Another township's conflict is answered like an unknown one; a resolved one
            // is gone from the queue.
            if township_id != resolution.township_id || resolved_at.is_some() {
                return Err(not_found().into());
            }
            let target = parse_target(&resolution.conflict_key, &target_key)?;
            let mut card = load_household(transaction, self.pii(), &household_id, true)
                .await?
                .ok_or_else(|| {
                    StoreError::Corrupt(format!("conflict names missing household {household_id}"))
                })?;
            let edit = FieldEdit {
                household_id: household_id.clone(),
                target: target.clone(),
                field: field.clone(),
                value: resolution.value.clone(),
                base_seq: card.field_seq(&target, &field),
            };
            validate_edit(&card, &edit).map_err(|invalid| StoreError::InvalidValue {
                field: "value".into(),
                message: invalid.to_string(),
            })?;
            let history =
                register_history(transaction, self.pii(), &household_id, &target_key, &field)
                    .await?;
            let mut stamp = resolution.stamp.clone();
            // A resolution that lost to the write it resolves would be no resolution.
            if let Some(shown) = current(&history)
                && stamp <= shown.stamp
            {
                stamp.hlc = shown.stamp.hlc.tick(0);
            }
            let resolved_at = to_millis(resolution.resolved_at)?;
            write_register(
                transaction,
                self.pii(),
                &mut card,
                &target,
                &field,
                &edit.value,
                stamp.clone(),
                &resolution.reviewer_user_id,
                edit.base_seq,
                resolved_at,
            )
            .await?;
            let resolution_json = serde_json::to_string(&serde_json::json!({
                "value": edit.value,
                "hlc": stamp.hlc,
                "device_id": stamp.device_id,
            }))
            .map_err(|error| {
                StoreError::database_caused_by(format!("cannot encode record: {error}"), error)
            })?;
            // Every open record of this register closes; each keeps the resolution sealed
            // under its own key, as SQLite does.
            let open = transaction
                .query_cached(
                    "SELECT conflict_key FROM conflicts
                      WHERE household_id = $1 AND target_key = $2 AND field = $3
                        AND resolved_at IS NULL",
                    &[&household_id, &target_key, &field],
                )
                .await?;
            for record in open {
                let conflict_key: String = record.try_get(0)?;
                let sealed = if super::push::is_sensitive(&field) {
                    self.pii()
                        .seal(&resolution_json, &conflict_context(&conflict_key))
                } else {
                    resolution_json.clone()
                };
                transaction
                    .execute_cached(
                        "UPDATE conflicts SET resolved_at = $2, resolved_by = $3,
                                resolution_json = $4
                          WHERE conflict_key = $1",
                        &[
                            &conflict_key,
                            &resolved_at,
                            &resolution.reviewer_user_id,
                            &sealed,
                        ],
                    )
                    .await?;
            }
            Ok(stamp)
        })
    }

    /// Make `new_cadre_user_id` the household's primary cadre; former primaries get the
    /// hand-over tombstone unless they stay paired as helpers.
    pub async fn reassign_household(
        &self,
        household_id: &str,
        new_cadre_user_id: &str,
        at: OffsetDateTime,
    ) -> StoreResult<()> {
        write_transaction!(self, |transaction| {
            reassign_household_in(transaction, self.pii(), household_id, new_cadre_user_id, at)
                .await
        })
    }

    /// Per scope: the newest sequence ever issued and the compaction floor.
    pub async fn change_log_bounds(&self) -> StoreResult<ChangeLogBounds> {
        let connection = self.connection().await?;
        let rows = connection
            .query_cached(
                "SELECT c.scope_id, c.last_seq, COALESCE(f.floor_seq, 0) AS floor_seq
                   FROM scope_counters c LEFT JOIN scope_floors f USING (scope_id)
                  ORDER BY c.scope_id",
                &[],
            )
            .await?;
        Ok(ChangeLogBounds {
            scopes: rows
                .iter()
                .map(|row| {
                    Ok((
                        row.try_get("scope_id")?,
                        ScopeBounds {
                            newest_seq: row.try_get("last_seq")?,
                            floor_seq: row.try_get("floor_seq")?,
                        },
                    ))
                })
                .collect::<Result<_, tokio_postgres::Error>>()?,
        })
    }

    /// Delete superseded entries and tombstones written before `tombstones_before`; raise
    /// each scope's floor past the deleted tombstones.
    pub async fn compact_change_log(
        &self,
        tombstones_before: OffsetDateTime,
    ) -> StoreResult<ChangeLogCompaction> {
        let before = to_millis(tombstones_before)?;
        write_transaction!(self, |transaction| {
            // Superseded entries carry nothing a pull still needs: every cursor before them
            // also reads the later one.
            let superseded = transaction
                .execute_cached(
                    "DELETE FROM change_log AS old
                      WHERE kind <> $1 AND EXISTS (
                          SELECT 1 FROM change_log AS newer
                           WHERE newer.kind = old.kind AND newer.household_id = old.household_id
                             AND newer.entity_id = old.entity_id
                             AND newer.revision = old.revision AND newer.seq > old.seq)",
                    &[&CHANGE_KIND_REMOVED],
                )
                .await?;
            let expired = transaction
                .query_cached(
                    "SELECT scope_id, MAX(scope_seq) AS floor FROM change_log
                      WHERE kind = $1 AND logged_at < $2 GROUP BY scope_id",
                    &[&CHANGE_KIND_REMOVED, &before],
                )
                .await?;
            let tombstones = transaction
                .execute_cached(
                    "DELETE FROM change_log WHERE kind = $1 AND logged_at < $2",
                    &[&CHANGE_KIND_REMOVED, &before],
                )
                .await?;
            for row in expired {
                let scope_id: String = row.try_get("scope_id")?;
                let floor: i64 = row.try_get("floor")?;
                transaction
                    .execute_cached(
                        "INSERT INTO scope_floors (scope_id, floor_seq) VALUES ($1, $2)
                         ON CONFLICT (scope_id) DO UPDATE
                         SET floor_seq = GREATEST(scope_floors.floor_seq, excluded.floor_seq)",
                        &[&scope_id, &floor],
                    )
                    .await?;
            }
            let floors: BTreeMap<String, i64> = transaction
                .query_cached(
                    "SELECT scope_id, floor_seq FROM scope_floors ORDER BY scope_id",
                    &[],
                )
                .await?
                .iter()
                .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
                .collect::<Result<_, tokio_postgres::Error>>()?;
            Ok(ChangeLogCompaction {
                superseded_deleted: superseded,
                tombstones_deleted: tombstones,
                floors,
            })
        })
    }

    /// Store the device's heartbeat unless the stored one already says the same and is less
    /// than a minute old (a phone sends one with every pull; an unchanged one is no news).
    pub async fn record_heartbeat(
        &self,
        device_id: &str,
        user_id: &str,
        heartbeat: Heartbeat,
        server_time: OffsetDateTime,
    ) -> StoreResult<()> {
        let now = to_millis(server_time)?;
        let unsent = signed(heartbeat.unsent_mutations, "unsent mutations")?;
        let pending = signed(heartbeat.pending_uploads, "pending uploads")?;
        let oldest = optional_millis(heartbeat.oldest_unsent_at)?;
        let device_time = optional_millis(heartbeat.device_time)?;
        let connection = self.connection().await?;
        // One statement: the upsert's WHERE leaves an unchanged, recent row alone.
        connection
            .execute_cached(
                "INSERT INTO device_heartbeats (device_id, user_id, unsent_mutations,
                                                pending_uploads, oldest_unsent_at,
                                                device_time, last_error, app_version,
                                                server_time)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (device_id) DO UPDATE SET
                     user_id = excluded.user_id,
                     unsent_mutations = excluded.unsent_mutations,
                     pending_uploads = excluded.pending_uploads,
                     oldest_unsent_at = excluded.oldest_unsent_at,
                     device_time = excluded.device_time,
                     last_error = excluded.last_error,
                     app_version = excluded.app_version,
                     server_time = excluded.server_time
                 WHERE NOT (
                     device_heartbeats.user_id = excluded.user_id
                     AND device_heartbeats.unsent_mutations = excluded.unsent_mutations
                     AND device_heartbeats.pending_uploads = excluded.pending_uploads
                     AND device_heartbeats.oldest_unsent_at IS NOT DISTINCT FROM
                         excluded.oldest_unsent_at
                     AND device_heartbeats.last_error = excluded.last_error
                     AND device_heartbeats.app_version = excluded.app_version
                     AND (device_heartbeats.device_time IS NULL) = (excluded.device_time IS NULL)
                     AND COALESCE(abs((excluded.device_time - excluded.server_time)
                                      - (device_heartbeats.device_time
                                         - device_heartbeats.server_time)), 0) < $10
                     AND excluded.server_time >= device_heartbeats.server_time
                     AND excluded.server_time < device_heartbeats.server_time + $10)",
                &[
                    &device_id,
                    &user_id,
                    &unsent,
                    &pending,
                    &oldest,
                    &device_time,
                    &heartbeat.last_error,
                    &heartbeat.app_version,
                    &now,
                    &HEARTBEAT_REWRITE_AFTER_MILLIS,
                ],
            )
            .await?;
        Ok(())
    }

    /// The township's cadres' devices, the oldest unsent data first.
    pub async fn device_backlog(&self, township_id: &str) -> StoreResult<Vec<DeviceBacklog>> {
        let connection = self.connection().await?;
        let rows = connection
            .query_cached(
                "SELECT d.device_id, d.user_id, u.display_name, d.unsent_mutations,
                        d.pending_uploads, d.oldest_unsent_at, d.device_time, d.last_error,
                        d.app_version, d.server_time,
                        COALESCE((SELECT s.device_name FROM sessions s
                                   WHERE s.device_id = d.device_id
                                   ORDER BY s.created_at DESC LIMIT 1), '') AS device_name
                   FROM device_heartbeats d
                   JOIN users u ON u.user_id = d.user_id
                  WHERE u.area_id = $1 AND u.role = $2
                  ORDER BY d.oldest_unsent_at IS NULL, d.oldest_unsent_at, d.server_time,
                           d.device_id",
                &[&township_id, &Role::Cadre.as_str()],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let oldest: Option<i64> = row.try_get("oldest_unsent_at")?;
                let device_time: Option<i64> = row.try_get("device_time")?;
                Ok(DeviceBacklog {
                    heartbeat: Heartbeat {
                        unsent_mutations: unsigned(
                            row.try_get("unsent_mutations")?,
                            "unsent mutations",
                        )?,
                        pending_uploads: unsigned(
                            row.try_get("pending_uploads")?,
                            "pending uploads",
                        )?,
                        oldest_unsent_at: oldest.map(from_millis).transpose()?,
                        device_time: device_time.map(from_millis).transpose()?,
                        last_error: row.try_get("last_error")?,
                        app_version: row.try_get("app_version")?,
                    },
                    last_seen_at: from_millis(row.try_get("server_time")?)?,
                    device_id: row.try_get("device_id")?,
                    device_name: row.try_get("device_name")?,
                    user_id: row.try_get("user_id")?,
                    cadre_name: row.try_get("display_name")?,
                })
            })
            .collect()
    }
}
