//! The roster import area of the store (花名册导入): the county snapshot an import is
//! validated and diffed against, the one-transaction apply and the applied runs. SQLite in
//! `sqlite.rs`, the checks every backend passes in `conformance.rs`.

#[cfg(any(test, feature = "test-support"))]
pub mod conformance;
pub(crate) mod sqlite;

use async_trait::async_trait;
use fieldsync_model::register::Stamp;
use time::OffsetDateTime;

use crate::store::StoreResult;

/// 导入记录: one applied roster import (建档立卡花名册导入), kept as its audit.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportRun {
    pub run_id: String,
    /// The county the import was applied to (the administrator's area).
    pub county_id: String,
    pub file_name: String,
    /// Hex SHA-256 of the uploaded bytes.
    pub file_sha256: String,
    pub file_bytes: u64,
    /// Non-empty data rows of the file.
    pub data_rows: u64,
    pub households_created: u64,
    pub members_created: u64,
    pub fields_changed: u64,
    pub unchanged_rows: u64,
    pub applied_by_user_id: String,
    /// The administrator's display name, as the store returns it (ignored on write).
    pub applied_by_name: String,
    pub applied_at: OffsetDateTime,
}

/// A validated roster import to store in one transaction ([`Store::apply_roster_import`]).
#[derive(Debug, Clone)]
pub struct RosterImportApply {
    /// The audit row to write (counts are taken from `plan` by the caller).
    pub run: ImportRun,
    pub plan: fieldsync_model::roster::ImportPlan,
    /// Stamp of every field write of the import: the server HLC and the import's writer
    /// device. The store moves it past a register's current write when needed, so an import
    /// always takes effect, like a console resolution.
    pub stamp: Stamp,
    /// Incremented once per applied item (household created, member added, field written),
    /// so a progress page can follow a long transaction.
    pub applied_items: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// Storage of roster imports. Every method is a complete unit of work.
#[async_trait]
pub trait RosterStore: Send + Sync {
    /// The county's townships and villages and every stored household of the county, as the
    /// roster import validates and diffs against them.
    async fn county_roster(
        &self,
        county_id: &str,
    ) -> StoreResult<fieldsync_model::roster::CountyRoster>;
    /// Store a roster import in one transaction: new households (logged for pull), members
    /// added to stored households (logged), field changes as ordinary register writes
    /// (merged, conflict-checked against their `base_seq`, logged for pull), and the
    /// [`ImportRun`] row. `Conflict` when a new household's 户编号 exists by now (another
    /// import won the race); `InvalidValue` when a value breaks a field rule. Either way
    /// nothing is stored.
    async fn apply_roster_import(&self, apply: RosterImportApply) -> StoreResult<ImportRun>;
    /// The county's applied imports, newest first.
    async fn import_runs(&self, county_id: &str, limit: u32) -> StoreResult<Vec<ImportRun>>;
}
