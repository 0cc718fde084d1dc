//! The export and audit area of the store: pages of the 走访台账 and 收入登记台账 for the
//! XLSX/CSV exports, and the keyed audit log (审计日志), appended as a hash chain. SQLite in
//! `sqlite.rs`, the checks every backend passes in `conformance.rs`.

#[cfg(any(test, feature = "test-support"))]
pub mod conformance;
pub(crate) mod sqlite;

use async_trait::async_trait;
use fieldsync_model::access::AuditContent;
use fieldsync_model::codes::{Relation, ReviewState};
use fieldsync_model::evidence::EvidenceFlag;
use fieldsync_model::household::Household;
use fieldsync_model::income::IncomeRegistration;
use fieldsync_model::visit::Visit;
use time::OffsetDateTime;

use crate::store::StoreResult;

/// One stored record of the append-only, hash-chained audit log (DESIGN §7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Increasing in append order.
    pub audit_id: i64,
    pub content: AuditContent,
    pub previous_hash: String,
    pub record_hash: String,
    /// Id of the key whose HMAC `record_hash` is; empty for a legacy SHA-256 record.
    pub key_id: String,
}

impl AuditRecord {
    /// The record as the model's chain verifier reads it.
    pub fn chained(&self) -> fieldsync_model::access::ChainedRecord {
        fieldsync_model::access::ChainedRecord {
            position: self.audit_id,
            content: self.content.clone(),
            key_id: self.key_id.clone(),
            previous_hash: self.previous_hash.clone(),
            record_hash: self.record_hash.clone(),
        }
    }
}

/// Where the next page of an export continues (keyset paging): export rows come ordered by
/// village id, household id and then the row's own key (for visits the check-in time then
/// the visit id, [`VisitLedgerRow::row_key`]; `YYYY-Q` for income).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportCursor {
    pub village_id: String,
    pub household_id: String,
    pub row_key: String,
}

/// The household facts every ledger row repeats. Values are stored values (unmasked): the
/// export use case masks them for the caller's role.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportHousehold {
    pub household_id: String,
    pub township_id: String,
    pub township_name: String,
    pub village_id: String,
    pub village_name: String,
    /// 户编号.
    pub national_household_number: String,
    /// 户主.
    pub head_name: String,
    /// The head's 身份证号 ('' when the card has no head member).
    pub head_id_number: String,
    pub phone: String,
}

impl ExportHousehold {
    /// The facts of an opened card, with the names of its township and village.
    pub(crate) fn from_card(card: Household, township_name: String, village_name: String) -> Self {
        let head_id_number = card
            .members
            .iter()
            .find(|member| member.relation == Relation::Head && !member.removed)
            .map(|member| member.id_number.clone())
            .unwrap_or_default();
        ExportHousehold {
            household_id: card.household_id,
            township_id: card.township_id,
            township_name,
            village_id: card.village_id,
            village_name,
            national_household_number: card.national_household_number,
            head_name: card.head_name,
            head_id_number,
            phone: card.phone,
        }
    }
}

/// One row of the 走访台账: the latest revision of one visit in the month.
#[derive(Debug, Clone, PartialEq)]
pub struct VisitLedgerRow {
    pub household: ExportHousehold,
    pub visit: Visit,
    pub state: ReviewState,
    pub cadre_name: String,
    pub cadre_phone: String,
    /// Evidence flags of the revision; `None` before they were computed.
    pub flags: Option<Vec<EvidenceFlag>>,
    pub photo_count: u32,
    /// 审核人 and 审核时间: who decided on this revision and when; `None` while undecided.
    pub decision: Option<(String, OffsetDateTime)>,
    /// The row's place within its household, as the store orders it (check-in time, then
    /// visit id); opaque to callers, handed back in the cursor.
    pub row_key: String,
}

impl VisitLedgerRow {
    /// The cursor that continues after this row.
    pub fn cursor(&self) -> ExportCursor {
        ExportCursor {
            village_id: self.household.village_id.clone(),
            household_id: self.household.household_id.clone(),
            row_key: self.row_key.clone(),
        }
    }
}

/// One row of the 收入登记台账: the registration in force for one household and quarter
/// (the last one registered wins, as in [`fieldsync_model::income::latest_per_quarter`]).
#[derive(Debug, Clone, PartialEq)]
pub struct IncomeLedgerRow {
    pub household: ExportHousehold,
    pub registration: IncomeRegistration,
}

impl IncomeLedgerRow {
    /// The cursor that continues after this row.
    pub fn cursor(&self) -> ExportCursor {
        ExportCursor {
            village_id: self.household.village_id.clone(),
            household_id: self.household.household_id.clone(),
            row_key: income_row_key(self.registration.year, self.registration.quarter),
        }
    }
}

/// `YYYY-Q`: the order key of an income row within its household.
pub fn income_row_key(year: i32, quarter: u32) -> String {
    format!("{year:04}-{quarter}")
}

/// Storage of the ledger exports and the audit log. Every method is a complete unit of work.
#[async_trait]
pub trait ExportStore: Send + Sync {
    /// Append one record to the audit log, chained to the newest record (one transaction, so
    /// concurrent appends never fork the chain). Returns the stored record.
    async fn append_audit(&self, content: AuditContent) -> StoreResult<AuditRecord>;
    /// Audit records with `audit_id > after_id`, oldest first, at most `limit`.
    async fn audit_records(&self, after_id: i64, limit: u32) -> StoreResult<Vec<AuditRecord>>;
    /// The newest record's `audit_id` (0 when the log is empty).
    async fn audit_last_id(&self) -> StoreResult<i64>;
    /// A page of the 走访台账: latest revisions of the visits of `month` (YYYY-MM, Beijing)
    /// of households in `area_id` (a township, or a county: its townships), after `after`,
    /// ordered by village id, household id, visit id.
    async fn export_visits(
        &self,
        area_id: &str,
        month: &str,
        after: Option<ExportCursor>,
        limit: u32,
    ) -> StoreResult<Vec<VisitLedgerRow>>;
    /// A page of the 收入登记台账: the registration in force per household and quarter of
    /// `year` (one quarter when given) in `area_id`, after `after`, ordered by village id,
    /// household id, quarter.
    async fn export_income(
        &self,
        area_id: &str,
        year: i32,
        quarter: Option<u32>,
        after: Option<ExportCursor>,
        limit: u32,
    ) -> StoreResult<Vec<IncomeLedgerRow>>;
}
