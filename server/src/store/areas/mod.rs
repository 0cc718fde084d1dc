//! Storage of the administrative areas (行政区划) as the area import writes them: its own
//! store trait, [`AreasStore`], beside the big [`Store`](super::Store) (issue 12: new storage
//! gets its own trait, with its own conformance checks in `conformance.rs`, so a
//! PostgreSQL store implements and passes them separately).
//!
//! The area rows themselves are the `areas` table every other part of the server reads
//! (scopes, the roster import, pairings); this trait adds the village attributes (村级属性)
//! and the applied imports (`area_import_runs`).

#[cfg(any(test, feature = "test-support"))]
pub mod conformance;
pub(crate) mod sqlite;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use async_trait::async_trait;
use fieldsync_model::areas::{AreaEntry, AreaImportPlan};
use time::OffsetDateTime;

use crate::store::{Area, SeedData, StoreResult};

/// 行政区划导入记录: one applied area import, kept as its audit.
#[derive(Debug, Clone, PartialEq)]
pub struct AreaImportRun {
    pub run_id: String,
    /// The county the import was applied to (the administrator's area).
    pub county_id: String,
    pub file_name: String,
    /// Hex SHA-256 of the uploaded bytes.
    pub file_sha256: String,
    pub file_bytes: u64,
    /// Non-empty data rows of the file.
    pub data_rows: u64,
    pub areas_created: u64,
    /// Stored areas with at least one changed field.
    pub areas_changed: u64,
    pub fields_changed: u64,
    /// Of `areas_changed`, how many got a new name (名称变更).
    pub areas_renamed: u64,
    /// Stored townships and villages the file did not list (kept, reported).
    pub areas_missing: u64,
    pub unchanged_rows: u64,
    pub applied_by_user_id: String,
    /// The administrator's display name, as the store returns it (ignored on write).
    pub applied_by_name: String,
    pub applied_at: OffsetDateTime,
}

/// A validated area import to store in one transaction ([`AreasStore::apply_area_import`]).
#[derive(Debug, Clone)]
pub struct AreaImportApply {
    /// The audit row to write (counts are taken from `plan` by the caller).
    pub run: AreaImportRun,
    pub plan: AreaImportPlan,
    /// Incremented once per area written, so a progress page can follow the transaction.
    pub applied_items: Arc<AtomicU64>,
}

/// The areas' own storage.
#[async_trait]
pub trait AreasStore: Send + Sync + std::fmt::Debug + 'static {
    /// The county and every township and village under it, with the villages' attributes,
    /// ordered by area id (so parents come before their children). `NotFound` when the
    /// county is not stored.
    async fn county_areas(&self, county_id: &str) -> StoreResult<Vec<AreaEntry>>;

    /// Store an area import in one transaction: insert `new_areas`, write the new name,
    /// centre and attributes of `updated_areas`, and the [`AreaImportRun`] row. A renamed
    /// village's households get the new `village_name` on their cards, logged for pull like
    /// any household change. Nothing is ever deleted. `Conflict` when a new area's id exists by now (another import won the
    /// race) or an updated area is not in the county; `InvalidValue` when an area's parent
    /// is not stored (nor written before it). Either way nothing is stored.
    async fn apply_area_import(&self, apply: AreaImportApply) -> StoreResult<AreaImportRun>;

    /// The county's applied area imports, newest first.
    async fn area_import_runs(
        &self,
        county_id: &str,
        limit: u32,
    ) -> StoreResult<Vec<AreaImportRun>>;

    /// True when no county has been loaded yet.
    async fn is_empty(&self) -> StoreResult<bool>;
    /// Load areas, users, households and pairings in one transaction.
    async fn load_seed(&self, seed: SeedData) -> StoreResult<()>;
    async fn list_areas(&self, parent_id: Option<&str>) -> StoreResult<Vec<Area>>;
    async fn get_area(&self, area_id: &str) -> StoreResult<Option<Area>>;
}
