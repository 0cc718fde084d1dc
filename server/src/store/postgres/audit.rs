//! The audit log (审计日志) on PostgreSQL: an append-only hash chain. Every append takes the
//! chain's advisory lock before it reads the newest hash, so appends from several replicas
//! are serialised until commit and the chain never forks; the table's triggers refuse any
//! update or delete (migration 0001).

use super::PreparedOnce;
use deadpool_postgres::GenericClient;
use fieldsync_model::access::{AuditContent, AuditKey, GENESIS_HASH, record_hash_for};

use super::{PostgresStore, WriteError};
use crate::keys::SecretKey;
use crate::store::{AuditRecord, StoreError, StoreResult};

/// Advisory lock key of the audit chain (any constant; "fsync-au" in ASCII).
const AUDIT_CHAIN_LOCK_KEY: i64 = 0x6673_796e_632d_6175;

const AUDIT_COLUMNS: &str = "audit_id, recorded_at, actor_user_id, actor_role, area_id, action,
     subject, filter, row_count, file_sha256, detail, previous_hash, record_hash, key_id";

fn audit_from_row(row: &tokio_postgres::Row) -> StoreResult<AuditRecord> {
    let row_count: i64 = row.try_get("row_count")?;
    Ok(AuditRecord {
        audit_id: row.try_get("audit_id")?,
        content: AuditContent {
            recorded_at_ms: row.try_get("recorded_at")?,
            actor_user_id: row.try_get("actor_user_id")?,
            actor_role: row.try_get("actor_role")?,
            area_id: row.try_get("area_id")?,
            action: row.try_get("action")?,
            subject: row.try_get("subject")?,
            filter: row.try_get("filter")?,
            row_count: u64::try_from(row_count)
                .map_err(|_| StoreError::Corrupt(format!("audit row count {row_count}")))?,
            file_sha256: row.try_get("file_sha256")?,
            detail: row.try_get("detail")?,
        },
        previous_hash: row.try_get("previous_hash")?,
        record_hash: row.try_get("record_hash")?,
        key_id: row.try_get("key_id")?,
    })
}

/// Append one record chained to the newest one, signed with `key` (HMAC) when given, inside
/// the caller's transaction.
pub(super) async fn append_audit_in(
    client: &impl GenericClient,
    key: Option<&SecretKey>,
    content: &AuditContent,
) -> Result<AuditRecord, WriteError> {
    client
        .execute_cached("SELECT pg_advisory_xact_lock($1)", &[&AUDIT_CHAIN_LOCK_KEY])
        .await?;
    let previous_hash: String = client
        .query_opt_cached(
            "SELECT record_hash FROM audit_log ORDER BY audit_id DESC LIMIT 1",
            &[],
        )
        .await?
        .map(|row| row.try_get(0))
        .transpose()?
        .unwrap_or_else(|| GENESIS_HASH.to_owned());
    let audit_key = key.map(|key| AuditKey {
        key_id: &key.key_id,
        bytes: key.bytes(),
    });
    let record_hash = record_hash_for(audit_key, &previous_hash, content);
    let key_id = key.map(|key| key.key_id.clone()).unwrap_or_default();
    let row_count = i64::try_from(content.row_count).map_err(|_| StoreError::InvalidValue {
        field: "row_count".into(),
        message: "audit row count is too large".into(),
    })?;
    let audit_id: i64 = client
        .query_one_cached(
            "INSERT INTO audit_log (recorded_at, actor_user_id, actor_role, area_id, action,
                                    subject, filter, row_count, file_sha256, detail,
                                    previous_hash, record_hash, key_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
             RETURNING audit_id",
            &[
                &content.recorded_at_ms,
                &content.actor_user_id,
                &content.actor_role,
                &content.area_id,
                &content.action,
                &content.subject,
                &content.filter,
                &row_count,
                &content.file_sha256,
                &content.detail,
                &previous_hash,
                &record_hash,
                &key_id,
            ],
        )
        .await?
        .try_get(0)?;
    Ok(AuditRecord {
        audit_id,
        content: content.clone(),
        previous_hash,
        record_hash,
        key_id,
    })
}

impl PostgresStore {
    pub async fn append_audit(&self, content: AuditContent) -> StoreResult<AuditRecord> {
        let content = &content;
        write_transaction!(self, |transaction| {
            append_audit_in(transaction, self.audit_key(), content).await
        })
    }

    pub async fn audit_records(&self, after_id: i64, limit: u32) -> StoreResult<Vec<AuditRecord>> {
        let connection = self.connection().await?;
        connection
            .query_cached(
                &format!(
                    "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE audit_id > $1
                      ORDER BY audit_id LIMIT $2"
                ),
                &[&after_id, &i64::from(limit.clamp(1, 10_000))],
            )
            .await?
            .iter()
            .map(audit_from_row)
            .collect()
    }

    pub async fn audit_last_id(&self) -> StoreResult<i64> {
        let connection = self.connection().await?;
        Ok(connection
            .query_one_cached("SELECT COALESCE(MAX(audit_id), 0) FROM audit_log", &[])
            .await?
            .try_get(0)?)
    }
}
