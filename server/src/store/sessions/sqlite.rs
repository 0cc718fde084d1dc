//! SQLite side of [`SessionsStore`]: the `sessions` table (migration 0016), refresh-token
//! rotation with reuse detection, and the session-lookup memo every authenticated call
//! reads (`store/sqlite/memo.rs`).

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use time::OffsetDateTime;

use crate::store::sqlite::{SqliteStore, corrupt, from_millis, parse_role, to_millis};
use crate::store::{
    Principal, RefreshOutcome, RefreshRotation, SessionEndReason, SessionInfo, SessionKind,
    SessionLookup, SessionRecord, SessionsStore, StoreResult,
};

fn parse_session_kind(text: &str) -> StoreResult<SessionKind> {
    SessionKind::parse(text).ok_or_else(|| corrupt(format!("unknown session kind {text:?}")))
}

/// One session with its user, selected by `where_clause` over `sessions s` with `?1 = key`.
fn load_session(
    connection: &Connection,
    where_clause: &str,
    key: &str,
) -> StoreResult<Option<SessionLookup>> {
    type Row = (
        (String, String, String, String, String, String),
        (i64, bool, i64, String, Option<String>),
    );
    let sql = format!(
        "SELECT s.session_id, s.kind, u.user_id, u.display_name, u.role, u.area_id,
                s.expires_at, s.refresh_sha256 IS NOT NULL AS refreshable, s.last_seen_at,
                s.last_ip,
                s.end_reason, s.device_id
           FROM sessions s JOIN users u ON u.user_id = s.user_id
          WHERE {where_clause}"
    );
    let row: Option<(Row, String)> = connection
        .query_row(&sql, params![key], |row| {
            Ok((
                (
                    (
                        row.get("session_id")?,
                        row.get("kind")?,
                        row.get("user_id")?,
                        row.get("display_name")?,
                        row.get("role")?,
                        row.get("area_id")?,
                    ),
                    (
                        row.get("expires_at")?,
                        row.get("refreshable")?,
                        row.get("last_seen_at")?,
                        row.get("last_ip")?,
                        row.get("end_reason")?,
                    ),
                ),
                row.get("device_id")?,
            ))
        })
        .optional()?;
    let Some((
        (
            (session_id, kind, user_id, display_name, role, area_id),
            (expires_at, refreshable, last_seen_at, last_ip, end_reason),
        ),
        device_id,
    )) = row
    else {
        return Ok(None);
    };
    let ended = end_reason
        .map(|text| {
            SessionEndReason::parse(&text)
                .ok_or_else(|| corrupt(format!("session {session_id}: end reason {text:?}")))
        })
        .transpose()?;
    Ok(Some(SessionLookup {
        kind: parse_session_kind(&kind)?,
        principal: Principal {
            role: parse_role(&role)?,
            user_id,
            display_name,
            area_id,
            device_id,
        },
        session_id,
        expires_at: from_millis(expires_at)?,
        refreshable,
        last_seen_at: from_millis(last_seen_at)?,
        last_ip,
        ended,
    }))
}

/// Mark the sessions matching `where_clause` (`?1 = key`) ended, if they are not already.
fn end_sessions_in(
    transaction: &Transaction<'_>,
    where_clause: &str,
    key: &str,
    reason: SessionEndReason,
    at_millis: i64,
) -> StoreResult<usize> {
    Ok(transaction.execute(
        &format!(
            "UPDATE sessions SET ended_at = ?2, end_reason = ?3
              WHERE {where_clause} AND ended_at IS NULL"
        ),
        params![key, at_millis, reason.as_str()],
    )?)
}

/// Sessions: their own store area ([`SessionsStore`]).
#[async_trait]
impl SessionsStore for SqliteStore {
    async fn create_session(&self, session: SessionRecord) -> StoreResult<()> {
        self.write(move |transaction| {
            let created_at = to_millis(session.created_at)?;
            let (refresh_sha256, refresh_expires_at) = match &session.refresh {
                Some((digest, expires_at)) => (Some(digest.clone()), Some(to_millis(*expires_at)?)),
                None => (None, None),
            };
            transaction.execute(
                "INSERT INTO sessions (token_sha256, user_id, device_id, device_name, created_at,
                                       expires_at, session_id, kind, app_version, last_seen_at,
                                       last_ip, refresh_sha256, refresh_expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?5, ?10, ?11, ?12)",
                params![
                    session.token_sha256,
                    session.user_id,
                    session.device_id,
                    session.device_name,
                    created_at,
                    to_millis(session.expires_at)?,
                    session.session_id,
                    session.kind.as_str(),
                    session.app_version,
                    session.ip,
                    refresh_sha256,
                    refresh_expires_at,
                ],
            )?;
            // Login registers the device (DESIGN §4), keeping its processed seq if it had one.
            transaction.execute(
                "INSERT INTO devices (device_id, user_id, last_processed_seq, last_seen_at)
                 VALUES (?1, ?2, 0, ?3)
                 ON CONFLICT (device_id) DO UPDATE SET
                     user_id = excluded.user_id, last_seen_at = excluded.last_seen_at",
                params![session.device_id, session.user_id, created_at],
            )?;
            Ok(())
        })
        .await
    }

    async fn find_session(&self, token_sha256: &str) -> StoreResult<Option<SessionLookup>> {
        let key = token_sha256.to_owned();
        let token_sha256 = token_sha256.to_owned();
        self.read_memoized(
            |connections| &connections.sessions,
            key,
            move |connection| load_session(connection, "s.token_sha256 = ?1", &token_sha256),
        )
        .await
    }

    async fn touch_session(
        &self,
        session_id: &str,
        at: OffsetDateTime,
        ip: &str,
    ) -> StoreResult<()> {
        let (session_id, ip) = (session_id.to_owned(), ip.to_owned());
        self.write(move |transaction| {
            // Never move last-seen backwards (two requests racing), and keep the last known
            // address when this request's is unknown.
            transaction.execute(
                "UPDATE sessions
                    SET last_seen_at = MAX(last_seen_at, ?2),
                        last_ip = CASE WHEN ?3 = '' THEN last_ip ELSE ?3 END
                  WHERE session_id = ?1",
                params![session_id, to_millis(at)?, ip],
            )?;
            Ok(())
        })
        .await
    }

    async fn rotate_refresh(&self, rotation: RefreshRotation) -> StoreResult<RefreshOutcome> {
        self.write(move |transaction| {
            let now = to_millis(rotation.now)?;
            if let Some(current) = load_session(
                transaction,
                "s.refresh_sha256 = ?1",
                &rotation.old_refresh_sha256,
            )? {
                let refresh_expired: bool = transaction.query_row(
                    "SELECT COALESCE(refresh_expires_at, 0) <= ?2 AS refresh_expired FROM sessions
                      WHERE session_id = ?1",
                    params![current.session_id, now],
                    |row| row.get("refresh_expired"),
                )?;
                if current.ended.is_some() || refresh_expired {
                    return Ok(RefreshOutcome::Ended(current));
                }
                transaction.execute(
                    "INSERT OR IGNORE INTO session_rotated_refresh (refresh_sha256, session_id,
                                                                  rotated_at)
                     VALUES (?1, ?2, ?3)",
                    params![rotation.old_refresh_sha256, current.session_id, now],
                )?;
                transaction.execute(
                    "UPDATE sessions
                        SET token_sha256 = ?2, expires_at = ?3, refresh_sha256 = ?4,
                            refresh_expires_at = ?5, last_seen_at = MAX(last_seen_at, ?6),
                            last_ip = CASE WHEN ?7 = '' THEN last_ip ELSE ?7 END,
                            app_version = CASE WHEN ?8 = '' THEN app_version ELSE ?8 END
                      WHERE session_id = ?1",
                    params![
                        current.session_id,
                        rotation.new_token_sha256,
                        to_millis(rotation.new_expires_at)?,
                        rotation.new_refresh_sha256,
                        to_millis(rotation.new_refresh_expires_at)?,
                        now,
                        rotation.ip,
                        rotation.app_version,
                    ],
                )?;
                let rotated = load_session(transaction, "s.session_id = ?1", &current.session_id)?
                    .ok_or_else(|| corrupt("a rotated session vanished"))?;
                return Ok(RefreshOutcome::Rotated(rotated));
            }
            let rotated_from: Option<String> = transaction
                .query_row(
                    "SELECT session_id FROM session_rotated_refresh WHERE refresh_sha256 = ?1",
                    params![rotation.old_refresh_sha256],
                    |row| row.get("session_id"),
                )
                .optional()?;
            let Some(session_id) = rotated_from else {
                return Ok(RefreshOutcome::Unknown);
            };
            let Some(session) = load_session(transaction, "s.session_id = ?1", &session_id)? else {
                return Ok(RefreshOutcome::Unknown);
            };
            if session.ended.is_some() {
                return Ok(RefreshOutcome::Ended(session));
            }
            end_sessions_in(
                transaction,
                "session_id = ?1",
                &session_id,
                SessionEndReason::RefreshReused,
                now,
            )?;
            let ended = load_session(transaction, "s.session_id = ?1", &session_id)?
                .ok_or_else(|| corrupt("an ended session vanished"))?;
            Ok(RefreshOutcome::Reused(ended))
        })
        .await
    }

    async fn end_session(
        &self,
        user_id: &str,
        session_id: &str,
        reason: SessionEndReason,
        at: OffsetDateTime,
    ) -> StoreResult<bool> {
        let (user_id, session_id) = (user_id.to_owned(), session_id.to_owned());
        self.write(move |transaction| {
            let owner: Option<(String, Option<i64>)> = transaction
                .query_row(
                    "SELECT user_id, ended_at FROM sessions WHERE session_id = ?1",
                    params![session_id],
                    |row| Ok((row.get("user_id")?, row.get("ended_at")?)),
                )
                .optional()?;
            match owner {
                Some((owner, ended_at)) if owner == user_id => {
                    if ended_at.is_none() {
                        end_sessions_in(
                            transaction,
                            "session_id = ?1",
                            &session_id,
                            reason,
                            to_millis(at)?,
                        )?;
                    }
                    Ok(true)
                }
                _ => Ok(false),
            }
        })
        .await
    }

    async fn end_user_sessions(
        &self,
        user_id: &str,
        keep_session_id: Option<&str>,
        reason: SessionEndReason,
        at: OffsetDateTime,
    ) -> StoreResult<u64> {
        let user_id = user_id.to_owned();
        let keep = keep_session_id.unwrap_or_default().to_owned();
        self.write(move |transaction| {
            let ended = transaction.execute(
                "UPDATE sessions SET ended_at = ?3, end_reason = ?4
                  WHERE user_id = ?1 AND session_id <> ?2 AND ended_at IS NULL",
                params![user_id, keep, to_millis(at)?, reason.as_str()],
            )?;
            Ok(ended as u64)
        })
        .await
    }

    async fn purge_sessions(&self, before: OffsetDateTime) -> StoreResult<u64> {
        let before = to_millis(before)?;
        self.write(move |transaction| {
            let purged = transaction.execute(
                "DELETE FROM sessions
                  WHERE COALESCE(ended_at,
                                 max(expires_at, COALESCE(refresh_expires_at, expires_at))) < ?1",
                params![before],
            )?;
            transaction.execute(
                "DELETE FROM session_rotated_refresh
                  WHERE session_id NOT IN (SELECT session_id FROM sessions)",
                [],
            )?;
            Ok(purged as u64)
        })
        .await
    }

    async fn list_user_sessions(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> StoreResult<Vec<SessionInfo>> {
        let user_id = user_id.to_owned();
        self.read(move |connection| {
            type SessionRow = (String, String, String, String, String, i64, i64, String);
            let mut statement = connection.prepare(
                "SELECT session_id, kind, device_id, device_name, app_version, created_at,
                        last_seen_at, last_ip
                   FROM sessions
                  WHERE user_id = ?1 AND ended_at IS NULL
                    AND COALESCE(refresh_expires_at, expires_at) > ?2
                  ORDER BY last_seen_at DESC, session_id",
            )?;
            let rows: Vec<SessionRow> = statement
                .query_map(params![user_id, to_millis(now)?], |row| {
                    Ok((
                        row.get("session_id")?,
                        row.get("kind")?,
                        row.get("device_id")?,
                        row.get("device_name")?,
                        row.get("app_version")?,
                        row.get("created_at")?,
                        row.get("last_seen_at")?,
                        row.get("last_ip")?,
                    ))
                })?
                .collect::<Result<_, _>>()?;
            rows.into_iter()
                .map(
                    |(session_id, kind, device_id, device_name, app_version, created, seen, ip)| {
                        Ok(SessionInfo {
                            kind: parse_session_kind(&kind)?,
                            session_id,
                            device_id,
                            device_name,
                            app_version,
                            created_at: from_millis(created)?,
                            last_seen_at: from_millis(seen)?,
                            last_ip: ip,
                        })
                    },
                )
                .collect()
        })
        .await
    }
}
