//! Ledger exports (台账导出) on PostgreSQL: pages read with the same keyset cursor as SQLite
//! (village id, household id, row key), so an export of a whole county holds one page at a
//! time and every page is one indexed query. Row keys are built in SQL byte for byte as
//! SQLite builds them, and compared byte by byte (`COLLATE "C"`), so a cursor handed out by
//! either backend means the same place.

use super::PreparedOnce;
use fieldsync_model::income::IncomeRegistration;
use fieldsync_model::visit::Visit;

use super::households::open_card;
use super::{PostgresStore, decode_flags, decode_json, parse_state, user_phone_context};
use crate::store::sealed::PiiCipher;
use crate::store::{
    ExportCursor, ExportHousehold, IncomeLedgerRow, StoreError, StoreResult, VisitLedgerRow,
};

/// Largest page one export call returns.
const MAX_EXPORT_PAGE: u32 = 2_000;

/// SQL condition: the household `h` lies in the area `$1` (its township, or a township of
/// the county `$1`).
const HOUSEHOLD_IN_AREA: &str = "(h.township_id = $1 OR h.township_id IN (
     SELECT area_id FROM areas WHERE parent_id = $1 AND level = 'township'))";

const HOUSEHOLD_COLUMNS: &str = "h.household_id, h.township_id,
     COALESCE(t.name, h.township_id) AS township_name, h.village_id,
     COALESCE(v.name, h.village_id) AS village_name, h.card, h.server_seq";

const HOUSEHOLD_JOINS: &str = "FROM households h
     LEFT JOIN areas t ON t.area_id = h.township_id
     LEFT JOIN areas v ON v.area_id = h.village_id";

fn page_limit(limit: u32) -> i64 {
    i64::from(limit.clamp(1, MAX_EXPORT_PAGE))
}

/// The household columns of a row; the head's ID number and the phone come from the opened
/// card.
fn export_household(pii: &PiiCipher, row: &tokio_postgres::Row) -> StoreResult<ExportHousehold> {
    Ok(ExportHousehold::from_card(
        open_card(pii, row.try_get("card")?, row.try_get("server_seq")?)?,
        row.try_get("township_name")?,
        row.try_get("village_name")?,
    ))
}

/// The keyset condition "after the cursor" over (village id, household id, `row_key_sql`),
/// with the cursor bound at `$first`, `$first+1`, `$first+2`.
fn after_cursor(row_key_sql: &str, first: usize) -> String {
    format!(
        "(h.village_id, h.household_id, {row_key_sql}) > (${first}, ${}, ${})",
        first + 1,
        first + 2
    )
}

impl PostgresStore {
    /// One page of the area's visit ledger for `month`: the latest revision of each visit,
    /// by village, household and check-in.
    pub async fn export_visits(
        &self,
        area_id: &str,
        month: &str,
        after: Option<ExportCursor>,
        limit: u32,
    ) -> StoreResult<Vec<VisitLedgerRow>> {
        let cursor = after.unwrap_or_default();
        // The check-in instant in milliseconds, zero-padded so text order is time order,
        // then the visit id for equal times (as SQLite's printf('%015d|%s')).
        let row_key_sql = "(lpad(COALESCE(vi.checkin_at_ms, 0)::TEXT, 15, '0') || '|' \
                           || vi.visit_id) COLLATE \"C\"";
        let connection = self.connection().await?;
        let rows = connection
            .query_cached(
                &format!(
                    "SELECT {HOUSEHOLD_COLUMNS}, vi.body, vi.state, vi.evidence_flags,
                            COALESCE(u.display_name, vi.author_user_id) AS cadre_name,
                            u.user_id AS cadre_user_id, u.phone AS cadre_phone,
                            (SELECT COUNT(*) FROM photos p WHERE p.visit_id = vi.visit_id)
                                AS photo_count,
                            COALESCE(reviewer.display_name, d.reviewer_user_id) AS reviewer,
                            d.decided_at, {row_key_sql} AS row_key
                     {HOUSEHOLD_JOINS}
                     JOIN visits vi ON vi.household_id = h.household_id
                     LEFT JOIN users u ON u.user_id = vi.author_user_id
                     LEFT JOIN decisions d ON d.visit_id = vi.visit_id
                                          AND d.revision = vi.revision
                     LEFT JOIN users reviewer ON reviewer.user_id = d.reviewer_user_id
                     WHERE {HOUSEHOLD_IN_AREA}
                       AND vi.business_month = $2
                       AND NOT EXISTS (SELECT 1 FROM visits newer
                                        WHERE newer.visit_id = vi.visit_id
                                          AND newer.revision > vi.revision)
                       AND {}
                     ORDER BY h.village_id, h.household_id, {row_key_sql}
                     LIMIT $6",
                    after_cursor(row_key_sql, 3)
                ),
                &[
                    &area_id,
                    &month,
                    &cursor.village_id,
                    &cursor.household_id,
                    &cursor.row_key,
                    &page_limit(limit),
                ],
            )
            .await?;
        let mut page = Vec::with_capacity(rows.len());
        for row in rows {
            let state: String = row.try_get("state")?;
            let flags: Option<String> = row.try_get("evidence_flags")?;
            let cadre_phone: Option<String> = row.try_get("cadre_phone")?;
            let cadre_user_id: Option<String> = row.try_get("cadre_user_id")?;
            let cadre_phone = match (cadre_phone, cadre_user_id) {
                (Some(phone), Some(user_id)) => self
                    .pii()
                    .open(&phone, &user_phone_context(&user_id))
                    .map_err(|error| StoreError::Sealed(error.to_string()))?,
                _ => String::new(),
            };
            let photo_count: i64 = row.try_get("photo_count")?;
            let reviewer: Option<String> = row.try_get("reviewer")?;
            let decided_at: Option<i64> = row.try_get("decided_at")?;
            page.push(VisitLedgerRow {
                household: export_household(self.pii(), &row)?,
                visit: decode_json::<Visit>(row.try_get("body")?, "visit")?,
                state: parse_state(&state)?,
                flags: flags.as_deref().map(decode_flags).transpose()?,
                cadre_name: row.try_get("cadre_name")?,
                cadre_phone,
                photo_count: u32::try_from(photo_count).unwrap_or(u32::MAX),
                decision: match (reviewer, decided_at) {
                    (Some(reviewer), Some(decided_at)) => {
                        Some((reviewer, super::from_millis(decided_at)?))
                    }
                    _ => None,
                },
                row_key: row.try_get("row_key")?,
            });
        }
        Ok(page)
    }

    /// One page of the area's income ledger for `year` (and `quarter`): the registration in
    /// force for each household and quarter.
    pub async fn export_income(
        &self,
        area_id: &str,
        year: i32,
        quarter: Option<u32>,
        after: Option<ExportCursor>,
        limit: u32,
    ) -> StoreResult<Vec<IncomeLedgerRow>> {
        let cursor = after.unwrap_or_default();
        let quarter = quarter
            .map(|quarter| {
                i32::try_from(quarter).map_err(|_| StoreError::InvalidValue {
                    field: "quarter".into(),
                    message: format!("{quarter} is out of range"),
                })
            })
            .transpose()?;
        // `YYYY-Q`, exactly as `income_row_key` builds it.
        let row_key_sql = "(lpad(r.year::TEXT, 4, '0') || '-' || r.quarter::TEXT) COLLATE \"C\"";
        let connection = self.connection().await?;
        let rows = connection
            .query_cached(
                &format!(
                    "SELECT {HOUSEHOLD_COLUMNS}, r.body
                     {HOUSEHOLD_JOINS}
                     JOIN income_registrations r ON r.household_id = h.household_id
                     WHERE {HOUSEHOLD_IN_AREA}
                       AND r.year = $2
                       AND ($3::INTEGER IS NULL OR r.quarter = $3)
                       AND r.arrival = (SELECT MAX(latest.arrival) FROM income_registrations latest
                                         WHERE latest.household_id = r.household_id
                                           AND latest.year = r.year
                                           AND latest.quarter = r.quarter)
                       AND {}
                     ORDER BY h.village_id, h.household_id, r.year, r.quarter
                     LIMIT $7",
                    after_cursor(row_key_sql, 4)
                ),
                &[
                    &area_id,
                    &year,
                    &quarter,
                    &cursor.village_id,
                    &cursor.household_id,
                    &cursor.row_key,
                    &page_limit(limit),
                ],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(IncomeLedgerRow {
                    household: export_household(self.pii(), row)?,
                    registration: decode_json::<IncomeRegistration>(
                        row.try_get("body")?,
                        "income registration",
                    )?,
                })
            })
            .collect()
    }
}
