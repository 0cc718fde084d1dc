//! The area traits of [`crate::store::Store`] for [`PostgresStore`]. The SQL lives in one
//! file per concern (push, pull, review, …), grouped by the helpers and locks it shares,
//! which does not always match the trait a method belongs to; this file only assembles
//! those methods into the traits, so the server and the conformance suite see the same
//! `Store` as on SQLite.

use fieldsync_model::areas::AreaEntry;
use fieldsync_model::codes::ReviewState;
use fieldsync_model::evidence::EvidenceFlag;
use fieldsync_model::hlc::Hlc;
use fieldsync_model::household::Household;
use fieldsync_model::income::{IncomeRegistration, IncomeThreshold};
use fieldsync_model::register::{FieldTarget, PendingConflict, RegisterWrite, Stamp};
use fieldsync_model::visit::PhotoRecord;
use time::OffsetDateTime;

use super::PostgresStore;
use crate::store::areas::{AreaImportApply, AreaImportRun};
use crate::store::export::{ExportCursor, IncomeLedgerRow, VisitLedgerRow};
use crate::store::*;

#[async_trait::async_trait]
impl AreasStore for PostgresStore {
    async fn county_areas(&self, county_id: &str) -> StoreResult<Vec<AreaEntry>> {
        PostgresStore::county_areas(self, county_id).await
    }

    async fn apply_area_import(&self, apply: AreaImportApply) -> StoreResult<AreaImportRun> {
        PostgresStore::apply_area_import(self, apply).await
    }

    async fn area_import_runs(
        &self,
        county_id: &str,
        limit: u32,
    ) -> StoreResult<Vec<AreaImportRun>> {
        PostgresStore::area_import_runs(self, county_id, limit).await
    }

    async fn is_empty(&self) -> StoreResult<bool> {
        PostgresStore::is_empty(self).await
    }

    async fn load_seed(&self, seed: SeedData) -> StoreResult<()> {
        PostgresStore::load_seed(self, seed).await
    }

    async fn list_areas(&self, parent_id: Option<&str>) -> StoreResult<Vec<Area>> {
        PostgresStore::list_areas(self, parent_id).await
    }

    async fn get_area(&self, area_id: &str) -> StoreResult<Option<Area>> {
        PostgresStore::get_area(self, area_id).await
    }
}

#[async_trait::async_trait]
impl ExportStore for PostgresStore {
    async fn append_audit(&self, content: AuditContent) -> StoreResult<AuditRecord> {
        PostgresStore::append_audit(self, content).await
    }

    async fn audit_records(&self, after_id: i64, limit: u32) -> StoreResult<Vec<AuditRecord>> {
        PostgresStore::audit_records(self, after_id, limit).await
    }

    async fn audit_last_id(&self) -> StoreResult<i64> {
        PostgresStore::audit_last_id(self).await
    }

    async fn export_visits(
        &self,
        area_id: &str,
        month: &str,
        after: Option<ExportCursor>,
        limit: u32,
    ) -> StoreResult<Vec<VisitLedgerRow>> {
        PostgresStore::export_visits(self, area_id, month, after, limit).await
    }

    async fn export_income(
        &self,
        area_id: &str,
        year: i32,
        quarter: Option<u32>,
        after: Option<ExportCursor>,
        limit: u32,
    ) -> StoreResult<Vec<IncomeLedgerRow>> {
        PostgresStore::export_income(self, area_id, year, quarter, after, limit).await
    }
}

#[async_trait::async_trait]
impl HouseholdsStore for PostgresStore {
    async fn income_registrations(
        &self,
        household_id: &str,
    ) -> StoreResult<Vec<IncomeRegistration>> {
        PostgresStore::income_registrations(self, household_id).await
    }

    async fn income_thresholds(&self) -> StoreResult<Vec<IncomeThreshold>> {
        PostgresStore::income_thresholds(self).await
    }

    async fn set_income_threshold(&self, threshold: IncomeThreshold) -> StoreResult<()> {
        PostgresStore::set_income_threshold(self, threshold).await
    }

    async fn save_income_registrations(
        &self,
        registrations: Vec<IncomeRegistration>,
    ) -> StoreResult<()> {
        PostgresStore::save_income_registrations(self, registrations).await
    }

    async fn households_in_area(&self, area_id: &str) -> StoreResult<Vec<Household>> {
        PostgresStore::households_in_area(self, area_id).await
    }

    async fn area_income_registrations(
        &self,
        area_id: &str,
        year: i32,
    ) -> StoreResult<Vec<IncomeRegistration>> {
        PostgresStore::area_income_registrations(self, area_id, year).await
    }

    async fn latest_wellbeing_checks(
        &self,
        area_id: &str,
    ) -> StoreResult<Vec<LatestWellbeingCheck>> {
        PostgresStore::latest_wellbeing_checks(self, area_id).await
    }

    async fn household_dossier(&self, household_id: &str) -> StoreResult<Option<HouseholdDossier>> {
        PostgresStore::household_dossier(self, household_id).await
    }

    async fn get_household(&self, household_id: &str) -> StoreResult<Option<Household>> {
        PostgresStore::get_household(self, household_id).await
    }
}

#[async_trait::async_trait]
impl LedgerStore for PostgresStore {
    async fn unvisited_households(
        &self,
        township_id: &str,
        month: &str,
    ) -> StoreResult<Vec<UnvisitedHousehold>> {
        PostgresStore::unvisited_households(self, township_id, month).await
    }

    async fn ledger_facts(&self, area: &LedgerArea, month: &str) -> StoreResult<LedgerFacts> {
        PostgresStore::ledger_facts(self, area, month).await
    }

    async fn close_month(
        &self,
        township_id: &str,
        month: &str,
        closed_by_user_id: &str,
        closed_at: OffsetDateTime,
    ) -> StoreResult<MonthClosure> {
        PostgresStore::close_month(self, township_id, month, closed_by_user_id, closed_at).await
    }

    async fn month_closures(&self, area: &LedgerArea) -> StoreResult<Vec<MonthClosure>> {
        PostgresStore::month_closures(self, area).await
    }

    async fn cadre_last_syncs(&self, area: &LedgerArea) -> StoreResult<Vec<CadreLastSync>> {
        PostgresStore::cadre_last_syncs(self, area).await
    }

    async fn queue_flag_counts(&self, area: &LedgerArea) -> StoreResult<Vec<FlagCount>> {
        PostgresStore::queue_flag_counts(self, area).await
    }
}

#[async_trait::async_trait]
impl MediaStore for PostgresStore {
    async fn start_upload(&self, upload: UploadRecord) -> StoreResult<UploadRecord> {
        PostgresStore::start_upload(self, upload).await
    }

    async fn get_upload(&self, upload_id: &str) -> StoreResult<Option<UploadRecord>> {
        PostgresStore::get_upload(self, upload_id).await
    }

    async fn find_upload_by_sha256(
        &self,
        sha256: &str,
        user_id: &str,
    ) -> StoreResult<Option<UploadRecord>> {
        PostgresStore::find_upload_by_sha256(self, sha256, user_id).await
    }

    async fn set_upload_offset(
        &self,
        upload_id: &str,
        committed_offset: u64,
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        PostgresStore::set_upload_offset(self, upload_id, committed_offset, now).await
    }

    async fn complete_upload(&self, upload_id: &str, now: OffsetDateTime) -> StoreResult<()> {
        PostgresStore::complete_upload(self, upload_id, now).await
    }

    async fn blob_exists(&self, sha256: &str) -> StoreResult<bool> {
        PostgresStore::blob_exists(self, sha256).await
    }

    async fn expire_uploads(&self, older_than: OffsetDateTime) -> StoreResult<Vec<String>> {
        PostgresStore::expire_uploads(self, older_than).await
    }

    async fn get_photo(&self, photo_id: &str) -> StoreResult<Option<PhotoRecord>> {
        PostgresStore::get_photo(self, photo_id).await
    }

    async fn save_photo_meta(&self, sha256: &str, meta: PhotoMeta) -> StoreResult<()> {
        PostgresStore::save_photo_meta(self, sha256, meta).await
    }

    async fn photo_meta(&self, sha256: &str) -> StoreResult<Option<PhotoMeta>> {
        PostgresStore::photo_meta(self, sha256).await
    }

    async fn visits_with_photo(&self, sha256: &str) -> StoreResult<Vec<String>> {
        PostgresStore::visits_with_photo(self, sha256).await
    }

    async fn evidence_inputs(
        &self,
        visit_id: &str,
        near_duplicate_max_bits: u32,
    ) -> StoreResult<Option<EvidenceInputs>> {
        PostgresStore::evidence_inputs(self, visit_id, near_duplicate_max_bits).await
    }

    async fn save_visit_flags(
        &self,
        visit_id: &str,
        revision: u32,
        flags: Vec<EvidenceFlag>,
    ) -> StoreResult<()> {
        PostgresStore::save_visit_flags(self, visit_id, revision, flags).await
    }

    async fn refresh_flags_of_blob(
        &self,
        sha256: &str,
        settings: fieldsync_model::evidence::EvidenceSettings,
    ) -> StoreResult<()> {
        PostgresStore::refresh_flags_of_blob(self, sha256, settings).await
    }
}

#[async_trait::async_trait]
impl PairingsStore for PostgresStore {
    async fn is_paired(&self, cadre_user_id: &str, household_id: &str) -> StoreResult<bool> {
        PostgresStore::is_paired(self, cadre_user_id, household_id).await
    }

    async fn reassign_household(
        &self,
        household_id: &str,
        new_cadre_user_id: &str,
        at: OffsetDateTime,
    ) -> StoreResult<()> {
        PostgresStore::reassign_household(self, household_id, new_cadre_user_id, at).await
    }

    async fn cadre_loads(&self, county_id: &str) -> StoreResult<Vec<CadreLoad>> {
        PostgresStore::cadre_loads(self, county_id).await
    }

    async fn pairing_households(
        &self,
        county_id: &str,
        filter: PairingFilter,
    ) -> StoreResult<Vec<HouseholdPairings>> {
        PostgresStore::pairing_households(self, county_id, filter).await
    }

    async fn assign_primary(&self, assignment: PrimaryAssignment) -> StoreResult<()> {
        PostgresStore::assign_primary(self, assignment).await
    }

    async fn set_helper_pairing(
        &self,
        household_id: &str,
        cadre_user_id: &str,
        active: bool,
        at: OffsetDateTime,
    ) -> StoreResult<()> {
        PostgresStore::set_helper_pairing(self, household_id, cadre_user_id, active, at).await
    }
}

#[async_trait::async_trait]
impl ReviewStore for PostgresStore {
    async fn review_queue(
        &self,
        township_id: &str,
        filter: QueueFilter,
    ) -> StoreResult<Vec<QueueItem>> {
        PostgresStore::review_queue(self, township_id, filter).await
    }

    async fn visit_detail(&self, visit_id: &str) -> StoreResult<Option<VisitDetail>> {
        PostgresStore::visit_detail(self, visit_id).await
    }

    async fn review_queue_facets(
        &self,
        township_id: &str,
        filter: QueueFilter,
        age_cutoffs: Vec<OffsetDateTime>,
    ) -> StoreResult<QueueFacets> {
        PostgresStore::review_queue_facets(self, township_id, filter, age_cutoffs).await
    }

    async fn visit_revision(
        &self,
        visit_id: &str,
        revision: u32,
    ) -> StoreResult<Option<VisitRevision>> {
        PostgresStore::visit_revision(self, visit_id, revision).await
    }

    async fn household_photo_history(
        &self,
        household_id: &str,
        exclude_visit_id: &str,
        months: Vec<String>,
        limit: u32,
    ) -> StoreResult<Vec<HouseholdPhoto>> {
        PostgresStore::household_photo_history(self, household_id, exclude_visit_id, months, limit)
            .await
    }

    async fn decide(&self, decision: StoredDecision) -> StoreResult<ReviewState> {
        PostgresStore::decide(self, decision).await
    }

    async fn operational_counts(&self) -> StoreResult<OperationalCounts> {
        PostgresStore::operational_counts(self).await
    }
}

#[async_trait::async_trait]
impl RosterStore for PostgresStore {
    async fn county_roster(
        &self,
        county_id: &str,
    ) -> StoreResult<fieldsync_model::roster::CountyRoster> {
        PostgresStore::county_roster(self, county_id).await
    }

    async fn apply_roster_import(&self, apply: RosterImportApply) -> StoreResult<ImportRun> {
        PostgresStore::apply_roster_import(self, apply).await
    }

    async fn import_runs(&self, county_id: &str, limit: u32) -> StoreResult<Vec<ImportRun>> {
        PostgresStore::import_runs(self, county_id, limit).await
    }
}

#[async_trait::async_trait]
impl SearchStore for PostgresStore {
    async fn search_households(
        &self,
        area: &LedgerArea,
        query: &HouseholdQuery,
        limit: u32,
    ) -> StoreResult<Vec<Household>> {
        PostgresStore::search_households(self, area, query, limit).await
    }
}

#[async_trait::async_trait]
impl SyncStore for PostgresStore {
    async fn visit_owner(&self, visit_id: &str) -> StoreResult<Option<(String, String)>> {
        PostgresStore::visit_owner(self, visit_id).await
    }

    async fn apply_push(&self, batch: PushBatch) -> StoreResult<PushResult> {
        PostgresStore::apply_push(self, batch).await
    }

    async fn apply_push_with_flags(
        &self,
        batch: PushBatch,
        flags: PushFlagWork,
    ) -> StoreResult<PushResult> {
        PostgresStore::apply_push_with_flags(self, batch, flags).await
    }

    async fn pull_changes(
        &self,
        principal: &Principal,
        cursor: &ScopeCursor,
        limit: u32,
    ) -> StoreResult<PullChanges> {
        PostgresStore::pull_changes(self, principal, cursor, limit).await
    }

    fn committed_writes(&self) -> u64 {
        PostgresStore::committed_writes(self)
    }

    async fn register_history(
        &self,
        household_id: &str,
        target: &FieldTarget,
        field: &str,
    ) -> StoreResult<Vec<RegisterWrite>> {
        PostgresStore::register_history(self, household_id, target, field).await
    }

    async fn max_register_hlc(&self) -> StoreResult<Hlc> {
        PostgresStore::max_register_hlc(self).await
    }

    async fn open_conflicts(&self, township_id: &str) -> StoreResult<Vec<ConflictRecord>> {
        PostgresStore::open_conflicts(self, township_id).await
    }

    async fn pending_conflicts(&self, user_id: &str) -> StoreResult<Vec<PendingConflict>> {
        PostgresStore::pending_conflicts(self, user_id).await
    }

    async fn resolve_conflict(&self, resolution: ConflictResolution) -> StoreResult<Stamp> {
        PostgresStore::resolve_conflict(self, resolution).await
    }

    async fn compact_change_log(
        &self,
        tombstones_before: OffsetDateTime,
    ) -> StoreResult<ChangeLogCompaction> {
        PostgresStore::compact_change_log(self, tombstones_before).await
    }

    async fn change_log_bounds(&self) -> StoreResult<ChangeLogBounds> {
        PostgresStore::change_log_bounds(self).await
    }

    async fn record_heartbeat(
        &self,
        device_id: &str,
        user_id: &str,
        heartbeat: Heartbeat,
        server_time: OffsetDateTime,
    ) -> StoreResult<()> {
        PostgresStore::record_heartbeat(self, device_id, user_id, heartbeat, server_time).await
    }

    async fn device_backlog(&self, township_id: &str) -> StoreResult<Vec<DeviceBacklog>> {
        PostgresStore::device_backlog(self, township_id).await
    }
}
