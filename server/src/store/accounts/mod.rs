//! Accounts (账号) as their own store area (issue 12 §3): the county's users beyond the
//! login record [`UserRecord`](super::UserRecord) carries — whether an account is disabled,
//! whether its password is a one-time password that must be changed, and the roster
//! fields of a cadre (帮扶单位, 身份证号, 驻村工作队, service dates).
//!
//! A separate trait, so the one `Store` trait does not grow: [`Store`](super::Store)
//! requires it, which keeps callers simple, and its conformance checks live in
//! `conformance.rs` for every backend.

#[cfg(any(test, feature = "test-support"))]
pub mod conformance;
pub(crate) mod sqlite;

use async_trait::async_trait;
use fieldsync_model::codes::{CadreRank, Role};
use time::OffsetDateTime;

use crate::store::jobs::ImportJobRecord;
use crate::store::{StoreResult, UserRecord};

/// One account as the accounts page shows it. The ID number is opened (the store seals it
/// at rest); pages mask it.
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    pub user_id: String,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub area_id: String,
    pub phone: String,
    pub rank: Option<CadreRank>,
    pub details: CadreDetails,
    /// When the account was disabled (停用); `None` while it is active.
    pub disabled_at: Option<OffsetDateTime>,
    /// The password is a one-time password (set by `init`, an import or a reset) that must
    /// be changed at the next login.
    pub must_change_password: bool,
    /// When the account was created (`None` for accounts from before migration 0022).
    pub created_at: Option<OffsetDateTime>,
}

/// The roster fields of a cadre (帮扶干部花名册); empty for other roles.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CadreDetails {
    /// 帮扶单位.
    pub unit: String,
    /// 身份证号 (sealed at rest; empty when not given).
    pub id_number: String,
    /// Member of a 驻村工作队 (village-resident work team).
    pub team_member: bool,
    /// Service dates, `YYYY-MM-DD` (empty when not given).
    pub active_from: String,
    pub active_to: String,
}

/// A new account.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAccount {
    pub user_id: String,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub area_id: String,
    pub phone: String,
    pub rank: Option<CadreRank>,
    pub details: CadreDetails,
    /// PHC string of an argon2id hash.
    pub password_hash: String,
    pub must_change_password: bool,
    pub created_at: OffsetDateTime,
}

/// An edit of an account's name, contact, role or area. Role and area change together (an
/// area must suit the role), and ending a cadre's pairings is a separate, explicit step.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountEdit {
    pub display_name: String,
    pub phone: String,
    pub role: Role,
    pub area_id: String,
    pub rank: Option<CadreRank>,
    pub details: CadreDetails,
}

/// What the login path needs beyond the password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginState {
    pub disabled: bool,
    pub must_change_password: bool,
}

/// What disabling an account did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DisableOutcome {
    /// Sessions ended (every phone and browser of the account).
    pub sessions_ended: u64,
    /// Pairings ended (a cadre's households, each now without them; a household whose
    /// 第一帮扶责任人 left shows as needing a new one on the pairings page).
    pub pairings_ended: u64,
}

/// Accounts of an area, for the accounts page.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AccountFilter {
    /// Only accounts whose area is this area or below it (a county lists everything).
    pub area_id: String,
    pub role: Option<Role>,
    /// Include disabled accounts.
    pub include_disabled: bool,
}

#[async_trait]
pub trait AccountsStore: Send + Sync {
    /// How many accounts exist (0 on a database nobody initialised).
    async fn account_count(&self) -> StoreResult<u64>;
    /// Create an account. `Conflict` when the username, the user id or the ID number is
    /// taken; `NotFound` when the area does not exist.
    async fn create_account(&self, account: NewAccount) -> StoreResult<()>;
    /// Create many accounts (a cadre roster import) and write `import_job`, the import's
    /// record holding their one-time passwords, in one transaction: a crash between the two
    /// would leave accounts whose passwords nobody holds. All or none, with the same
    /// refusals as [`AccountsStore::create_account`], and `Conflict` when `import_job.runner`
    /// no longer runs the job.
    async fn create_accounts(
        &self,
        accounts: Vec<NewAccount>,
        import_job: &ImportJobRecord,
    ) -> StoreResult<()>;
    /// One account, or `None`.
    async fn account(&self, user_id: &str) -> StoreResult<Option<Account>>;
    /// Accounts at or below an area, by role, area and name.
    async fn accounts(&self, filter: &AccountFilter) -> StoreResult<Vec<Account>>;
    /// Change name, contact, role, area, rank and roster fields. `NotFound` for an unknown
    /// account or area.
    async fn edit_account(&self, user_id: &str, edit: AccountEdit) -> StoreResult<()>;
    /// Disable an account at `at`: every session ends (revoked), and a cadre's active
    /// pairings end with tombstones to their phones (the reassignment hand-over). `NotFound`
    /// for an unknown account, `Conflict` when it is already disabled.
    async fn disable_account(
        &self,
        user_id: &str,
        at: OffsetDateTime,
    ) -> StoreResult<DisableOutcome>;
    /// Re-enable a disabled account (pairings are not restored; they are set again on the
    /// pairings page). `Conflict` when it is not disabled.
    async fn enable_account(&self, user_id: &str) -> StoreResult<()>;
    /// Set a one-time password (reset by the administrator): must be changed at the next
    /// login, and every session of the account ends. Returns the sessions ended.
    async fn reset_password(
        &self,
        user_id: &str,
        password_hash: &str,
        at: OffsetDateTime,
    ) -> StoreResult<u64>;
    /// Whether the account is disabled and whether it must change its password.
    async fn login_state(&self, user_id: &str) -> StoreResult<Option<LoginState>>;

    async fn find_user_by_username(&self, username: &str) -> StoreResult<Option<UserRecord>>;
    async fn find_user_by_id(&self, user_id: &str) -> StoreResult<Option<UserRecord>>;
    /// Replace a user's password hash (PHC string).
    async fn set_password_hash(&self, user_id: &str, password_hash: &str) -> StoreResult<()>;
}
