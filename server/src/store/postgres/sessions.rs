//! Sessions (登录会话) on PostgreSQL: the same rows and rules as the SQLite store. Refresh
//! rotation locks the session row (`FOR UPDATE`), so two replicas presented with the same
//! refresh token at once rotate it once and see the second use as a reuse.

use super::PreparedOnce;
use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use time::OffsetDateTime;

use super::{PostgresStore, WriteError, from_millis, to_millis};
use crate::store::sessions::SessionsStore;
use crate::store::{
    Principal, RefreshOutcome, RefreshRotation, SessionEndReason, SessionInfo, SessionKind,
    SessionLookup, SessionRecord, StoreError, StoreResult,
};
use fieldsync_model::codes::Role;

/// The session columns [`session_from_row`] reads, over `sessions s JOIN users u`.
const SESSION_COLUMNS: &str = "s.session_id, s.kind, u.user_id, u.display_name, u.role,
     u.area_id, s.expires_at, s.refresh_sha256 IS NOT NULL AS refreshable, s.last_seen_at,
     s.last_ip, s.end_reason, s.device_id";

fn session_from_row(row: &tokio_postgres::Row) -> StoreResult<SessionLookup> {
    let session_id: String = row.try_get("session_id")?;
    let kind: String = row.try_get("kind")?;
    let role: String = row.try_get("role")?;
    let end_reason: Option<String> = row.try_get("end_reason")?;
    let ended = end_reason
        .map(|text| {
            SessionEndReason::parse(&text).ok_or_else(|| {
                StoreError::Corrupt(format!("session {session_id}: end reason {text:?}"))
            })
        })
        .transpose()?;
    Ok(SessionLookup {
        kind: SessionKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown session kind {kind:?}")))?,
        principal: Principal {
            role: Role::parse(&role)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown role {role:?}")))?,
            user_id: row.try_get("user_id")?,
            display_name: row.try_get("display_name")?,
            area_id: row.try_get("area_id")?,
            device_id: row.try_get("device_id")?,
        },
        expires_at: from_millis(row.try_get("expires_at")?)?,
        refreshable: row.try_get("refreshable")?,
        last_seen_at: from_millis(row.try_get("last_seen_at")?)?,
        last_ip: row.try_get("last_ip")?,
        ended,
        session_id,
    })
}

/// One session with its user, selected by `where_clause` over `sessions s` with `$1 = key`;
/// `lock` takes the session row for the rest of the transaction.
async fn load_session(
    client: &impl GenericClient,
    where_clause: &str,
    key: &str,
    lock: bool,
) -> StoreResult<Option<SessionLookup>> {
    let lock = if lock { "FOR UPDATE OF s" } else { "" };
    let sql = format!(
        "SELECT {SESSION_COLUMNS} FROM sessions s JOIN users u ON u.user_id = s.user_id
          WHERE {where_clause} {lock}"
    );
    let statement = client.prepare_cached(&sql).await?;
    client
        .query_opt(&statement, &[&key])
        .await?
        .as_ref()
        .map(session_from_row)
        .transpose()
}

/// Mark the sessions matching `where_clause` (`$1 = key`) ended, if they are not already.
async fn end_sessions_in(
    client: &impl GenericClient,
    where_clause: &str,
    key: &str,
    reason: SessionEndReason,
    at_millis: i64,
) -> Result<u64, WriteError> {
    Ok(client
        .execute_cached(
            &format!(
                "UPDATE sessions SET ended_at = $2, end_reason = $3
                  WHERE {where_clause} AND ended_at IS NULL"
            ),
            &[&key, &at_millis, &reason.as_str()],
        )
        .await?)
}

#[async_trait]
impl SessionsStore for PostgresStore {
    async fn create_session(&self, session: SessionRecord) -> StoreResult<()> {
        let created_at = to_millis(session.created_at)?;
        let expires_at = to_millis(session.expires_at)?;
        let (refresh_sha256, refresh_expires_at) = match &session.refresh {
            Some((digest, expires_at)) => (Some(digest.clone()), Some(to_millis(*expires_at)?)),
            None => (None, None),
        };
        let session = &session;
        let (refresh_sha256, refresh_expires_at) = (&refresh_sha256, &refresh_expires_at);
        write_transaction!(self, |transaction| {
            transaction
                .execute_cached(
                    "INSERT INTO sessions (token_sha256, user_id, device_id, device_name,
                                           created_at, expires_at, session_id, kind,
                                           app_version, last_seen_at, last_ip, refresh_sha256,
                                           refresh_expires_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $5, $10, $11, $12)",
                    &[
                        &session.token_sha256,
                        &session.user_id,
                        &session.device_id,
                        &session.device_name,
                        &created_at,
                        &expires_at,
                        &session.session_id,
                        &session.kind.as_str(),
                        &session.app_version,
                        &session.ip,
                        refresh_sha256,
                        refresh_expires_at,
                    ],
                )
                .await?;
            // Login registers the device (DESIGN §4), keeping its processed seq if it had one.
            transaction
                .execute_cached(
                    "INSERT INTO devices (device_id, user_id, last_processed_seq, last_seen_at)
                     VALUES ($1, $2, 0, $3)
                     ON CONFLICT (device_id) DO UPDATE SET
                         user_id = excluded.user_id, last_seen_at = excluded.last_seen_at",
                    &[&session.device_id, &session.user_id, &created_at],
                )
                .await?;
            Ok(())
        })
    }

    async fn find_session(&self, token_sha256: &str) -> StoreResult<Option<SessionLookup>> {
        let connection = self.connection().await?;
        load_session(&connection, "s.token_sha256 = $1", token_sha256, false).await
    }

    async fn touch_session(
        &self,
        session_id: &str,
        at: OffsetDateTime,
        ip: &str,
    ) -> StoreResult<()> {
        let at = to_millis(at)?;
        let connection = self.connection().await?;
        // Never move last-seen backwards (two requests racing, maybe on two replicas), and
        // keep the last known address when this request's is unknown. One statement: its
        // own transaction.
        connection
            .execute_cached(
                "UPDATE sessions
                    SET last_seen_at = GREATEST(last_seen_at, $2),
                        last_ip = CASE WHEN $3 = '' THEN last_ip ELSE $3 END
                  WHERE session_id = $1",
                &[&session_id, &at, &ip],
            )
            .await?;
        Ok(())
    }

    async fn rotate_refresh(&self, rotation: RefreshRotation) -> StoreResult<RefreshOutcome> {
        let now = to_millis(rotation.now)?;
        let new_expires_at = to_millis(rotation.new_expires_at)?;
        let new_refresh_expires_at = to_millis(rotation.new_refresh_expires_at)?;
        let rotation = &rotation;
        write_transaction!(self, |transaction| {
            if let Some(current) = load_session(
                transaction,
                "s.refresh_sha256 = $1",
                &rotation.old_refresh_sha256,
                true,
            )
            .await?
            {
                let refresh_expired: bool = transaction
                    .query_one_cached(
                        "SELECT COALESCE(refresh_expires_at, 0) <= $2 FROM sessions
                          WHERE session_id = $1",
                        &[&current.session_id, &now],
                    )
                    .await?
                    .try_get(0)?;
                if current.ended.is_some() || refresh_expired {
                    return Ok(RefreshOutcome::Ended(current));
                }
                transaction
                    .execute_cached(
                        "INSERT INTO session_rotated_refresh (refresh_sha256, session_id,
                                                              rotated_at)
                         VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                        &[&rotation.old_refresh_sha256, &current.session_id, &now],
                    )
                    .await?;
                transaction
                    .execute_cached(
                        "UPDATE sessions
                            SET token_sha256 = $2, expires_at = $3, refresh_sha256 = $4,
                                refresh_expires_at = $5,
                                last_seen_at = GREATEST(last_seen_at, $6),
                                last_ip = CASE WHEN $7 = '' THEN last_ip ELSE $7 END,
                                app_version = CASE WHEN $8 = '' THEN app_version ELSE $8 END
                          WHERE session_id = $1",
                        &[
                            &current.session_id,
                            &rotation.new_token_sha256,
                            &new_expires_at,
                            &rotation.new_refresh_sha256,
                            &new_refresh_expires_at,
                            &now,
                            &rotation.ip,
                            &rotation.app_version,
                        ],
                    )
                    .await?;
                let rotated =
                    load_session(transaction, "s.session_id = $1", &current.session_id, false)
                        .await?
                        .ok_or_else(|| StoreError::Corrupt("a rotated session vanished".into()))?;
                return Ok(RefreshOutcome::Rotated(rotated));
            }
            let rotated_from: Option<String> = transaction
                .query_opt_cached(
                    "SELECT session_id FROM session_rotated_refresh WHERE refresh_sha256 = $1",
                    &[&rotation.old_refresh_sha256],
                )
                .await?
                .map(|row| row.try_get(0))
                .transpose()?;
            let Some(session_id) = rotated_from else {
                return Ok(RefreshOutcome::Unknown);
            };
            let Some(session) =
                load_session(transaction, "s.session_id = $1", &session_id, true).await?
            else {
                return Ok(RefreshOutcome::Unknown);
            };
            if session.ended.is_some() {
                return Ok(RefreshOutcome::Ended(session));
            }
            end_sessions_in(
                transaction,
                "session_id = $1",
                &session_id,
                SessionEndReason::RefreshReused,
                now,
            )
            .await?;
            let ended = load_session(transaction, "s.session_id = $1", &session_id, false)
                .await?
                .ok_or_else(|| StoreError::Corrupt("an ended session vanished".into()))?;
            Ok(RefreshOutcome::Reused(ended))
        })
    }

    async fn end_session(
        &self,
        user_id: &str,
        session_id: &str,
        reason: SessionEndReason,
        at: OffsetDateTime,
    ) -> StoreResult<bool> {
        let at = to_millis(at)?;
        write_transaction!(self, |transaction| {
            let owner = transaction
                .query_opt_cached(
                    "SELECT user_id, ended_at FROM sessions WHERE session_id = $1 FOR UPDATE",
                    &[&session_id],
                )
                .await?;
            let Some(owner) = owner else {
                return Ok(false);
            };
            let owner_id: String = owner.try_get("user_id")?;
            let ended_at: Option<i64> = owner.try_get("ended_at")?;
            if owner_id != user_id {
                return Ok(false);
            }
            if ended_at.is_none() {
                end_sessions_in(transaction, "session_id = $1", session_id, reason, at).await?;
            }
            Ok(true)
        })
    }

    async fn end_user_sessions(
        &self,
        user_id: &str,
        keep_session_id: Option<&str>,
        reason: SessionEndReason,
        at: OffsetDateTime,
    ) -> StoreResult<u64> {
        let at = to_millis(at)?;
        let keep = keep_session_id.unwrap_or_default();
        let connection = self.connection().await?;
        Ok(connection
            .execute_cached(
                "UPDATE sessions SET ended_at = $3, end_reason = $4
                  WHERE user_id = $1 AND session_id <> $2 AND ended_at IS NULL",
                &[&user_id, &keep, &at, &reason.as_str()],
            )
            .await?)
    }

    async fn purge_sessions(&self, before: OffsetDateTime) -> StoreResult<u64> {
        let before = to_millis(before)?;
        let before = &before;
        write_transaction!(self, |transaction| {
            let purged = transaction
                .execute_cached(
                    "DELETE FROM sessions
                      WHERE COALESCE(ended_at,
                                     GREATEST(expires_at, COALESCE(refresh_expires_at, expires_at)))
                            < $1",
                    &[before],
                )
                .await?;
            transaction
                .execute_cached(
                    "DELETE FROM session_rotated_refresh AS rotated
                      WHERE NOT EXISTS (SELECT 1 FROM sessions
                                         WHERE sessions.session_id = rotated.session_id)",
                    &[],
                )
                .await?;
            Ok(purged)
        })
    }

    async fn list_user_sessions(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> StoreResult<Vec<SessionInfo>> {
        let now = to_millis(now)?;
        let connection = self.connection().await?;
        let rows = connection
            .query_cached(
                "SELECT session_id, kind, device_id, device_name, app_version, created_at,
                        last_seen_at, last_ip
                   FROM sessions
                  WHERE user_id = $1 AND ended_at IS NULL
                    AND COALESCE(refresh_expires_at, expires_at) > $2
                  ORDER BY last_seen_at DESC, session_id",
                &[&user_id, &now],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let kind: String = row.try_get("kind")?;
                Ok(SessionInfo {
                    kind: SessionKind::parse(&kind).ok_or_else(|| {
                        StoreError::Corrupt(format!("unknown session kind {kind:?}"))
                    })?,
                    session_id: row.try_get("session_id")?,
                    device_id: row.try_get("device_id")?,
                    device_name: row.try_get("device_name")?,
                    app_version: row.try_get("app_version")?,
                    created_at: from_millis(row.try_get("created_at")?)?,
                    last_seen_at: from_millis(row.try_get("last_seen_at")?)?,
                    last_ip: row.try_get("last_ip")?,
                })
            })
            .collect()
    }
}
