//! The pairings area of the store (结对管理): who is paired with which household, the
//! county's cadres with their 8741 load, primary (第一帮扶责任人) assignment under the quota
//! guard, helper (第二帮扶责任人) pairings and the hand-over of a reassignment. SQLite in
//! `sqlite.rs`, the checks every backend passes in `conformance.rs`.

#[cfg(any(test, feature = "test-support"))]
pub mod conformance;
pub(crate) mod sqlite;

use async_trait::async_trait;
use fieldsync_model::access::AuditContent;
use fieldsync_model::codes::CadreRank;
use time::OffsetDateTime;

use crate::store::StoreResult;

/// A cadre of the county with their pairing load (8741).
#[derive(Debug, Clone, PartialEq)]
pub struct CadreLoad {
    pub user_id: String,
    pub display_name: String,
    pub phone: String,
    pub township_id: String,
    pub township_name: String,
    pub rank: Option<CadreRank>,
    /// Active pairings as 第一帮扶责任人.
    pub primary_count: u32,
    /// Other active pairings (第二帮扶责任人).
    pub secondary_count: u32,
}

/// Filters of the pairing households list; the county comes from the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PairingFilter {
    pub township_id: Option<String>,
    pub village_id: Option<String>,
    /// Only households whose primary count is not exactly one.
    pub only_problems: bool,
    pub limit: u32,
}

/// One household with its active pairings.
#[derive(Debug, Clone, PartialEq)]
pub struct HouseholdPairings {
    pub household_id: String,
    pub head_name: String,
    pub township_id: String,
    pub township_name: String,
    pub village_id: String,
    pub village_name: String,
    /// User ids and names of the active 第一帮扶责任人 (normally exactly one).
    pub primaries: Vec<(String, String)>,
    /// User ids and names of the other active cadres.
    pub secondaries: Vec<(String, String)>,
}

/// Make a cadre the household's 第一帮扶责任人 (county action), with the hand-over rules of
/// [`Store::reassign_household`], and with an audit record in the same transaction when the
/// admin confirmed an assignment beyond the quota.
#[derive(Debug, Clone, PartialEq)]
pub struct PrimaryAssignment {
    pub household_id: String,
    pub cadre_user_id: String,
    pub at: OffsetDateTime,
    /// Refuse with `Conflict` when the cadre would then have more active primary pairings
    /// than this (re-checked inside the transaction, so two admins cannot race past it).
    pub max_primary_count: Option<u32>,
    /// Appended to the audit log in the same transaction (超额确认).
    pub audit: Option<AuditContent>,
}

/// Storage of pairings. Every method is a complete unit of work.
#[async_trait]
pub trait PairingsStore: Send + Sync {
    /// Whether the cadre is (actively) paired with the household.
    async fn is_paired(&self, cadre_user_id: &str, household_id: &str) -> StoreResult<bool>;
    /// Make `new_cadre_user_id` the household's primary cadre (county action): the old
    /// primary pairing is deactivated, and the change log gets a tombstone addressed to the
    /// old cadre (their next pull lists the id as removed) and a household entry (the new
    /// cadre's next pull delivers it). `NotFound` for an unknown household or cadre.
    async fn reassign_household(
        &self,
        household_id: &str,
        new_cadre_user_id: &str,
        at: OffsetDateTime,
    ) -> StoreResult<()>;
    /// Every cadre of the county's townships with their active pairing counts, by township
    /// and name.
    async fn cadre_loads(&self, county_id: &str) -> StoreResult<Vec<CadreLoad>>;
    /// Households of the county with their active pairings, by village and head name.
    async fn pairing_households(
        &self,
        county_id: &str,
        filter: PairingFilter,
    ) -> StoreResult<Vec<HouseholdPairings>>;
    /// Make a cadre the household's 第一帮扶责任人 in one transaction (see
    /// [`PrimaryAssignment`]). `NotFound` for an unknown household or cadre; `Conflict` when
    /// the cadre is already its primary or the quota guard refuses.
    async fn assign_primary(&self, assignment: PrimaryAssignment) -> StoreResult<()>;
    /// Add (`active`) or end a 第二帮扶责任人 pairing of a cadre with a household, in one
    /// transaction. Adding: `NotFound` for an unknown household or cadre, `Conflict` when
    /// the two are already paired; the household is sent again, so the helper's phone
    /// receives it at its next pull. Ending: `NotFound` without an active pairing,
    /// `Conflict` for the 第一帮扶责任人 (change the primary instead); the helper's phone
    /// gets a tombstone that purges the household.
    async fn set_helper_pairing(
        &self,
        household_id: &str,
        cadre_user_id: &str,
        active: bool,
        at: OffsetDateTime,
    ) -> StoreResult<()>;
}
