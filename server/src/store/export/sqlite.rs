//! SQLite side of the ledger exports (台账导出) and of the audit log (审计日志).
//!
//! Exports are read in pages with a keyset cursor (village id, household id, row key), so
//! an export of a whole county never holds more than one page of rows from the database at
//! a time and every page is one indexed query. The audit log is appended in the writer's
//! transaction: reading the newest hash and inserting the next record cannot interleave with
//! another append, so the chain never forks.

use fieldsync_model::access::{AuditContent, AuditKey, GENESIS_HASH, record_hash_for};
use fieldsync_model::income::IncomeRegistration;
use fieldsync_model::visit::Visit;
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::store::export::{
    AuditRecord, ExportCursor, ExportHousehold, ExportStore, IncomeLedgerRow, VisitLedgerRow,
};
use crate::store::sqlite::{
    SqliteStore, county_townships_sql, decode_flags, decode_household, decode_json, from_millis,
    from_sql_unsigned, parse_state,
};
use crate::store::{StoreError, StoreResult};

/// Largest page one export call returns.
const MAX_EXPORT_PAGE: u32 = 2_000;

/// SQL condition: the household `h` lies in the area `?1` (its township, or a township of
/// the county `?1`).
const HOUSEHOLD_IN_AREA: &str = concat!(
    "(h.township_id = ?1 OR h.township_id IN (",
    county_townships_sql!(),
    "))"
);

/// Columns of the household part of an export row, named as [`export_household`] reads them.
const HOUSEHOLD_COLUMNS: &str = "h.household_id, h.township_id,
     COALESCE(t.name, h.township_id) AS township_name, h.village_id,
     COALESCE(v.name, h.village_id) AS village_name, pii_open_card(h.card) AS card,
     h.server_seq";

const HOUSEHOLD_JOINS: &str = "FROM households h
     LEFT JOIN areas t ON t.area_id = h.township_id
     LEFT JOIN areas v ON v.area_id = h.village_id";

fn page_limit(limit: u32) -> u32 {
    limit.clamp(1, MAX_EXPORT_PAGE)
}

/// The household columns of a row, decoded; the head's ID number and the phone come from
/// the stored card.
fn export_household(row: &Row<'_>) -> StoreResult<ExportHousehold> {
    let card: String = row.get("card")?;
    Ok(ExportHousehold::from_card(
        decode_household(&card, row.get("server_seq")?)?,
        row.get("township_name")?,
        row.get("village_name")?,
    ))
}

/// The keyset condition "after the cursor" over (village id, household id, `row_key_sql`),
/// with the cursor bound at `?first`, `?first+1`, `?first+2`.
fn after_cursor(row_key_sql: &str, first: usize) -> String {
    format!(
        "(h.village_id, h.household_id, {row_key_sql}) > (?{first}, ?{}, ?{})",
        first + 1,
        first + 2
    )
}

pub(in crate::store) fn export_visits(
    connection: &Connection,
    area_id: &str,
    month: &str,
    after: Option<&ExportCursor>,
    limit: u32,
) -> StoreResult<Vec<VisitLedgerRow>> {
    let cursor = after.cloned().unwrap_or_default();
    // Within a household, visits come in check-in order: the row key is the check-in
    // instant in milliseconds, zero-padded so text order is time order (validation keeps visits
    // within the business years 2000–2100, so the instant is positive), then the visit id for equal times.
    let row_key_sql = "printf('%015d|%s', COALESCE(vi.checkin_at_ms, 0), vi.visit_id)";
    // The empty cursor sorts before every id, so one statement serves the first page too.
    let sql = format!(
        "SELECT {HOUSEHOLD_COLUMNS}, vi.body, vi.state, vi.evidence_flags,
                COALESCE(u.display_name, vi.author_user_id) AS cadre_name,
                COALESCE(pii_open(u.phone, 'users.phone/' || u.user_id), '') AS cadre_phone,
                (SELECT COUNT(*) FROM photos p WHERE p.visit_id = vi.visit_id) AS photo_count,
                COALESCE(reviewer.display_name, d.reviewer_user_id) AS reviewer_name,
                d.decided_at, {row_key_sql} AS row_key
         {HOUSEHOLD_JOINS}
         JOIN visits vi ON vi.household_id = h.household_id
         LEFT JOIN users u ON u.user_id = vi.author_user_id
         LEFT JOIN decisions d ON d.visit_id = vi.visit_id AND d.revision = vi.revision
         LEFT JOIN users reviewer ON reviewer.user_id = d.reviewer_user_id
         WHERE {HOUSEHOLD_IN_AREA}
           AND vi.business_month = ?2
           AND NOT EXISTS (SELECT 1 FROM visits newer
                           WHERE newer.visit_id = vi.visit_id AND newer.revision > vi.revision)
           AND {}
         ORDER BY h.village_id, h.household_id, {row_key_sql}
         LIMIT ?6",
        after_cursor(row_key_sql, 3)
    );
    let mut statement = connection.prepare(&sql)?;
    let mut rows = statement.query(params![
        area_id,
        month,
        cursor.village_id,
        cursor.household_id,
        cursor.row_key,
        page_limit(limit)
    ])?;
    let mut page = Vec::new();
    while let Some(row) = rows.next()? {
        let household = export_household(row)?;
        let body: String = row.get("body")?;
        let visit: Visit = decode_json(&body, "visit")?;
        let state = parse_state(&row.get::<_, String>("state")?)?;
        let flags = row
            .get::<_, Option<String>>("evidence_flags")?
            .map(|text| decode_flags(&text))
            .transpose()?;
        page.push(VisitLedgerRow {
            household,
            visit,
            state,
            flags,
            cadre_name: row.get("cadre_name")?,
            cadre_phone: row.get("cadre_phone")?,
            photo_count: from_sql_unsigned(row.get("photo_count")?, "photo count")?,
            decision: match (
                row.get::<_, Option<String>>("reviewer_name")?,
                row.get::<_, Option<i64>>("decided_at")?,
            ) {
                (Some(reviewer), Some(decided_at)) => Some((reviewer, from_millis(decided_at)?)),
                _ => None,
            },
            row_key: row.get("row_key")?,
        });
    }
    Ok(page)
}

pub(in crate::store) fn export_income(
    connection: &Connection,
    area_id: &str,
    year: i32,
    quarter: Option<u32>,
    after: Option<&ExportCursor>,
    limit: u32,
) -> StoreResult<Vec<IncomeLedgerRow>> {
    let cursor = after.cloned().unwrap_or_default();
    // The row key `YYYY-Q` is built in SQL exactly as `income_row_key` builds it.
    let row_key_sql = "printf('%04d-%d', r.year, r.quarter)";
    let sql = format!(
        "SELECT {HOUSEHOLD_COLUMNS}, r.body
         {HOUSEHOLD_JOINS}
         JOIN income_registrations r ON r.household_id = h.household_id
         WHERE {HOUSEHOLD_IN_AREA}
           AND r.year = ?2
           AND (?3 IS NULL OR r.quarter = ?3)
           AND r.rowid = (SELECT MAX(latest.rowid) FROM income_registrations latest
                          WHERE latest.household_id = r.household_id
                            AND latest.year = r.year AND latest.quarter = r.quarter)
           AND {}
         ORDER BY h.village_id, h.household_id, r.year, r.quarter
         LIMIT ?7",
        after_cursor(row_key_sql, 4)
    );
    let mut statement = connection.prepare(&sql)?;
    let mut rows = statement.query(params![
        area_id,
        year,
        quarter,
        cursor.village_id,
        cursor.household_id,
        cursor.row_key,
        page_limit(limit)
    ])?;
    let mut page = Vec::new();
    while let Some(row) = rows.next()? {
        let household = export_household(row)?;
        let body: String = row.get("body")?;
        let registration: IncomeRegistration = decode_json(&body, "income registration")?;
        page.push(IncomeLedgerRow {
            household,
            registration,
        });
    }
    Ok(page)
}

// ----- audit log -----

/// Columns of an audit record, named as [`audit_from_row`] reads them.
const AUDIT_COLUMNS: &str = "audit_id, recorded_at, actor_user_id, actor_role, area_id, action,
     subject, filter, row_count, file_sha256, detail, previous_hash, record_hash, key_id";

fn audit_from_row(row: &Row<'_>) -> StoreResult<AuditRecord> {
    Ok(AuditRecord {
        audit_id: row.get("audit_id")?,
        content: AuditContent {
            recorded_at_ms: row.get("recorded_at")?,
            actor_user_id: row.get("actor_user_id")?,
            actor_role: row.get("actor_role")?,
            area_id: row.get("area_id")?,
            action: row.get("action")?,
            subject: row.get("subject")?,
            filter: row.get("filter")?,
            row_count: from_sql_unsigned(row.get("row_count")?, "audit row count")?,
            file_sha256: row.get("file_sha256")?,
            detail: row.get("detail")?,
        },
        previous_hash: row.get("previous_hash")?,
        record_hash: row.get("record_hash")?,
        key_id: row.get("key_id")?,
    })
}

/// Append one record chained to the newest one, signed with `key` (HMAC) when given.
/// Call inside a write transaction.
pub(in crate::store) fn append_audit(
    connection: &Connection,
    key: Option<&crate::keys::SecretKey>,
    content: &AuditContent,
) -> StoreResult<AuditRecord> {
    let previous_hash: String = connection
        .query_row(
            "SELECT record_hash FROM audit_log ORDER BY audit_id DESC LIMIT 1",
            [],
            |row| row.get("record_hash"),
        )
        .optional()?
        .unwrap_or_else(|| GENESIS_HASH.to_owned());
    let audit_key = key.map(|key| AuditKey {
        key_id: &key.key_id,
        bytes: key.bytes(),
    });
    let record_hash = record_hash_for(audit_key, &previous_hash, content);
    let key_id = key.map(|key| key.key_id.clone()).unwrap_or_default();
    let row_count = i64::try_from(content.row_count)
        .map_err(|_| StoreError::database("audit row count is too large"))?;
    connection.execute(
        "INSERT INTO audit_log (recorded_at, actor_user_id, actor_role, area_id, action, subject,
                                filter, row_count, file_sha256, detail, previous_hash,
                                record_hash, key_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        params![
            content.recorded_at_ms,
            content.actor_user_id,
            content.actor_role,
            content.area_id,
            content.action,
            content.subject,
            content.filter,
            row_count,
            content.file_sha256,
            content.detail,
            previous_hash,
            record_hash,
            key_id
        ],
    )?;
    Ok(AuditRecord {
        audit_id: connection.last_insert_rowid(),
        content: content.clone(),
        previous_hash,
        record_hash,
        key_id,
    })
}

pub(in crate::store) fn audit_records(
    connection: &Connection,
    after_id: i64,
    limit: u32,
) -> StoreResult<Vec<AuditRecord>> {
    let mut statement = connection.prepare(&format!(
        "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE audit_id > ?1 ORDER BY audit_id LIMIT ?2"
    ))?;
    let mut rows = statement.query(params![after_id, limit.clamp(1, 10_000)])?;
    let mut records = Vec::new();
    while let Some(row) = rows.next()? {
        records.push(audit_from_row(row)?);
    }
    Ok(records)
}

#[async_trait::async_trait]
impl ExportStore for SqliteStore {
    async fn append_audit(&self, content: AuditContent) -> StoreResult<AuditRecord> {
        let audit_key = self.inner.audit_key.clone();
        self.write(move |transaction| append_audit(transaction, audit_key.as_ref(), &content))
            .await
    }

    async fn audit_records(&self, after_id: i64, limit: u32) -> StoreResult<Vec<AuditRecord>> {
        self.read(move |connection| audit_records(connection, after_id, limit))
            .await
    }

    async fn audit_last_id(&self) -> StoreResult<i64> {
        self.read(|connection| {
            Ok(connection.query_row(
                "SELECT COALESCE(MAX(audit_id), 0) AS last_audit_id FROM audit_log",
                [],
                |row| row.get("last_audit_id"),
            )?)
        })
        .await
    }

    async fn export_visits(
        &self,
        area_id: &str,
        month: &str,
        after: Option<ExportCursor>,
        limit: u32,
    ) -> StoreResult<Vec<VisitLedgerRow>> {
        let (area_id, month) = (area_id.to_owned(), month.to_owned());
        self.read(move |connection| {
            export_visits(connection, &area_id, &month, after.as_ref(), limit)
        })
        .await
    }

    async fn export_income(
        &self,
        area_id: &str,
        year: i32,
        quarter: Option<u32>,
        after: Option<ExportCursor>,
        limit: u32,
    ) -> StoreResult<Vec<IncomeLedgerRow>> {
        let area_id = area_id.to_owned();
        self.read(move |connection| {
            export_income(connection, &area_id, year, quarter, after.as_ref(), limit)
        })
        .await
    }
}
