//! Accounts (账号) on PostgreSQL: the `users` table as in SQLite, phone and ID numbers
//! sealed in Rust with the same contexts, the cadre ID number's blind index unique.
//! Disabling an account ends its sessions and its pairings, with the hand-over tombstones,
//! in one transaction.

use super::PreparedOnce;
use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use fieldsync_model::CodeList;
use fieldsync_model::codes::{CadreRank, Role};
use time::OffsetDateTime;

use super::basics::{parse_rank, parse_role};
use super::households::load_household;
use super::sync_area::tombstone_unless_paired;
use super::{PostgresStore, WriteError, from_millis, to_millis, user_phone_context};
use crate::store::accounts::{
    Account, AccountEdit, AccountFilter, AccountsStore, CadreDetails, DisableOutcome, LoginState,
    NewAccount,
};
use crate::store::jobs::{ImportJobRecord, ImportJobWrite, StoredImportJob, import_job_taken_over};
use crate::store::sealed::PiiCipher;
use crate::store::{SessionEndReason, StoreError, StoreResult, UserRecord};

/// Blind-index kind of cadre ID numbers (separate from members', so the two never match;
/// the same kind as SQLite's).
const USER_ID_NUMBER_INDEX: &str = "user_id_number";

fn user_id_number_context(user_id: &str) -> String {
    format!("users.id_number/{user_id}")
}

const ACCOUNT_COLUMNS: &str = "user_id, username, display_name, role, area_id, phone, rank, unit,
     id_number, team_member, active_from, active_to, disabled_at, must_change_password,
     created_at";

fn account_from_row(pii: &PiiCipher, row: &tokio_postgres::Row) -> StoreResult<Account> {
    let user_id: String = row.try_get("user_id")?;
    let role: String = row.try_get("role")?;
    let disabled_at: Option<i64> = row.try_get("disabled_at")?;
    let created_at: i64 = row.try_get("created_at")?;
    let open = |column: &str, context: String| -> StoreResult<String> {
        let stored: String = row.try_get(column)?;
        pii.open(&stored, &context)
            .map_err(|error| StoreError::Sealed(error.to_string()))
    };
    Ok(Account {
        role: parse_role(&user_id, &role)?,
        rank: parse_rank(&user_id, row.try_get("rank")?)?,
        disabled_at: disabled_at.map(from_millis).transpose()?,
        created_at: (created_at > 0)
            .then(|| from_millis(created_at))
            .transpose()?,
        username: row.try_get("username")?,
        display_name: row.try_get("display_name")?,
        area_id: row.try_get("area_id")?,
        phone: open("phone", user_phone_context(&user_id))?,
        details: CadreDetails {
            unit: row.try_get("unit")?,
            id_number: open("id_number", user_id_number_context(&user_id))?,
            team_member: row.try_get("team_member")?,
            active_from: row.try_get("active_from")?,
            active_to: row.try_get("active_to")?,
        },
        must_change_password: row.try_get("must_change_password")?,
        user_id,
    })
}

async fn load_account(
    client: &impl GenericClient,
    pii: &PiiCipher,
    user_id: &str,
    lock: bool,
) -> StoreResult<Option<Account>> {
    let lock = if lock { "FOR UPDATE" } else { "" };
    client
        .query_opt_cached(
            &format!("SELECT {ACCOUNT_COLUMNS} FROM users WHERE user_id = $1 {lock}"),
            &[&user_id],
        )
        .await?
        .map(|row| account_from_row(pii, &row))
        .transpose()
}

async fn require_area(client: &impl GenericClient, area_id: &str) -> StoreResult<()> {
    let exists = client
        .query_opt_cached("SELECT 1 FROM areas WHERE area_id = $1", &[&area_id])
        .await?
        .is_some();
    if exists {
        Ok(())
    } else {
        Err(StoreError::NotFound(format!("area {area_id}")))
    }
}

/// The blind index of an ID number, or NULL for none.
fn id_number_index(pii: &PiiCipher, id_number: &str) -> Option<String> {
    (!id_number.is_empty())
        .then(|| pii.blind_index(USER_ID_NUMBER_INDEX, &id_number.to_ascii_uppercase()))
}

/// Refuse a username, user id or ID number another account holds, with a message that
/// names which (the unique constraints would only name the constraint).
async fn refuse_taken(
    client: &impl GenericClient,
    pii: &PiiCipher,
    account: &NewAccount,
) -> StoreResult<()> {
    let taken: Option<String> = client
        .query_opt_cached(
            "SELECT CASE WHEN user_id = $1 THEN 'user id' ELSE 'username' END FROM users
              WHERE user_id = $1 OR username = $2 LIMIT 1",
            &[&account.user_id, &account.username],
        )
        .await?
        .map(|row| row.try_get(0))
        .transpose()?;
    if let Some(what) = taken {
        return Err(StoreError::Conflict(format!(
            "{what} already taken: {}",
            if what == "user id" {
                &account.user_id
            } else {
                &account.username
            }
        )));
    }
    refuse_taken_id_number(client, pii, &account.details.id_number, &account.user_id).await
}

async fn refuse_taken_id_number(
    client: &impl GenericClient,
    pii: &PiiCipher,
    id_number: &str,
    own_user_id: &str,
) -> StoreResult<()> {
    let Some(index) = id_number_index(pii, id_number) else {
        return Ok(());
    };
    let holder: Option<String> = client
        .query_opt_cached(
            "SELECT username FROM users WHERE id_number_index = $1 AND user_id <> $2",
            &[&index, &own_user_id],
        )
        .await?
        .map(|row| row.try_get(0))
        .transpose()?;
    match holder {
        Some(username) => Err(StoreError::Conflict(format!(
            "ID number already belongs to account {username}"
        ))),
        None => Ok(()),
    }
}

async fn insert_account(
    client: &impl GenericClient,
    pii: &PiiCipher,
    account: &NewAccount,
) -> Result<(), WriteError> {
    require_area(client, &account.area_id).await?;
    refuse_taken(client, pii, account).await?;
    client
        .execute_cached(
            "INSERT INTO users (user_id, username, display_name, password_hash, role, area_id,
                                phone, rank, unit, id_number, id_number_index, team_member,
                                active_from, active_to, must_change_password, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
            &[
                &account.user_id,
                &account.username,
                &account.display_name,
                &account.password_hash,
                &account.role.as_str(),
                &account.area_id,
                &pii.seal(&account.phone, &user_phone_context(&account.user_id)),
                &account.rank.map(CadreRank::code),
                &account.details.unit,
                &pii.seal(
                    &account.details.id_number,
                    &user_id_number_context(&account.user_id),
                ),
                &id_number_index(pii, &account.details.id_number),
                &account.details.team_member,
                &account.details.active_from,
                &account.details.active_to,
                &account.must_change_password,
                &to_millis(account.created_at)?,
            ],
        )
        .await?;
    Ok(())
}

/// End every active pairing of a cadre; each household gets the hand-over tombstone for
/// the cadre's phones unless the cadre is still paired with it. Returns how many ended.
async fn end_pairings_of(
    client: &impl GenericClient,
    pii: &PiiCipher,
    cadre_user_id: &str,
    at: OffsetDateTime,
) -> Result<u64, WriteError> {
    let households: Vec<String> = client
        .query_cached(
            "UPDATE pairings SET active = FALSE
              WHERE cadre_user_id = $1 AND active
              RETURNING household_id",
            &[&cadre_user_id],
        )
        .await?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?;
    let mut households = households;
    // The same order on every replica, so two transactions lock households alike.
    households.sort();
    for household_id in &households {
        let card = load_household(client, pii, household_id, true)
            .await?
            .ok_or_else(|| {
                StoreError::Corrupt(format!("pairing with missing household {household_id}"))
            })?;
        tombstone_unless_paired(client, &card, cadre_user_id, at).await?;
    }
    Ok(households.len() as u64)
}

async fn end_sessions_of(
    client: &impl GenericClient,
    user_id: &str,
    reason: SessionEndReason,
    at: OffsetDateTime,
) -> Result<u64, WriteError> {
    Ok(client
        .execute_cached(
            "UPDATE sessions SET ended_at = $2, end_reason = $3
              WHERE user_id = $1 AND ended_at IS NULL",
            &[&user_id, &to_millis(at)?, &reason.as_str()],
        )
        .await?)
}

#[async_trait]
impl AccountsStore for PostgresStore {
    // The user lookups live on the store itself (basics.rs, shared with the seed and the
    // push); the trait names them so callers reach them through `AccountsStore`.
    async fn find_user_by_username(&self, username: &str) -> StoreResult<Option<UserRecord>> {
        PostgresStore::find_user_by_username(self, username).await
    }

    async fn find_user_by_id(&self, user_id: &str) -> StoreResult<Option<UserRecord>> {
        PostgresStore::find_user_by_id(self, user_id).await
    }

    async fn set_password_hash(&self, user_id: &str, password_hash: &str) -> StoreResult<()> {
        PostgresStore::set_password_hash(self, user_id, password_hash).await
    }

    async fn account_count(&self) -> StoreResult<u64> {
        let connection = self.connection().await?;
        let count: i64 = connection
            .query_one_cached("SELECT COUNT(*) FROM users", &[])
            .await?
            .try_get(0)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn create_account(&self, account: NewAccount) -> StoreResult<()> {
        let account = &account;
        write_transaction!(self, |transaction| {
            insert_account(transaction, self.pii(), account).await
        })
    }

    async fn create_accounts(
        &self,
        accounts: Vec<NewAccount>,
        import_job: &ImportJobRecord,
    ) -> StoreResult<()> {
        let accounts = &accounts;
        let stored_job = &StoredImportJob::sealed(import_job, self.pii())?;
        write_transaction!(self, |transaction| {
            for account in accounts {
                insert_account(transaction, self.pii(), account).await?;
            }
            match super::jobs::save_import_job_in(transaction, stored_job).await? {
                ImportJobWrite::Written => Ok(()),
                ImportJobWrite::NotOurs => Err(import_job_taken_over(&stored_job.job_id).into()),
            }
        })
    }

    async fn account(&self, user_id: &str) -> StoreResult<Option<Account>> {
        let connection = self.connection().await?;
        load_account(&connection, self.pii(), user_id, false).await
    }

    async fn accounts(&self, filter: &AccountFilter) -> StoreResult<Vec<Account>> {
        let connection = self.connection().await?;
        // The area and everything below it (three levels at most: county, township,
        // village), by the parent links.
        let rows = connection
            .query_cached(
                &format!(
                    "WITH RECURSIVE scope (area_id) AS (
                         SELECT $1::TEXT COLLATE \"C\"
                         UNION ALL
                         SELECT a.area_id FROM areas a JOIN scope s ON a.parent_id = s.area_id)
                     SELECT {ACCOUNT_COLUMNS} FROM users
                      WHERE area_id IN (SELECT area_id FROM scope)
                        AND ($2::TEXT IS NULL OR role = $2)
                        AND ($3 OR disabled_at IS NULL)
                      ORDER BY CASE role WHEN 'county' THEN 0 WHEN 'auditor' THEN 1
                                         WHEN 'township' THEN 2 WHEN 'village' THEN 3
                                         ELSE 4 END,
                               area_id, display_name, username"
                ),
                &[
                    &filter.area_id,
                    &filter.role.map(Role::as_str),
                    &filter.include_disabled,
                ],
            )
            .await?;
        rows.iter()
            .map(|row| account_from_row(self.pii(), row))
            .collect()
    }

    async fn edit_account(&self, user_id: &str, edit: AccountEdit) -> StoreResult<()> {
        let edit = &edit;
        write_transaction!(self, |transaction| {
            if load_account(transaction, self.pii(), user_id, true)
                .await?
                .is_none()
            {
                return Err(StoreError::NotFound(format!("user {user_id}")).into());
            }
            require_area(transaction, &edit.area_id).await?;
            refuse_taken_id_number(transaction, self.pii(), &edit.details.id_number, user_id)
                .await?;
            transaction
                .execute_cached(
                    "UPDATE users SET display_name = $2, phone = $3, role = $4, area_id = $5,
                            rank = $6, unit = $7, id_number = $8, id_number_index = $9,
                            team_member = $10, active_from = $11, active_to = $12
                      WHERE user_id = $1",
                    &[
                        &user_id,
                        &edit.display_name,
                        &self.pii().seal(&edit.phone, &user_phone_context(user_id)),
                        &edit.role.as_str(),
                        &edit.area_id,
                        &edit.rank.map(CadreRank::code),
                        &edit.details.unit,
                        &self
                            .pii()
                            .seal(&edit.details.id_number, &user_id_number_context(user_id)),
                        &id_number_index(self.pii(), &edit.details.id_number),
                        &edit.details.team_member,
                        &edit.details.active_from,
                        &edit.details.active_to,
                    ],
                )
                .await?;
            Ok(())
        })
    }

    async fn disable_account(
        &self,
        user_id: &str,
        at: OffsetDateTime,
    ) -> StoreResult<DisableOutcome> {
        write_transaction!(self, |transaction| {
            let account = load_account(transaction, self.pii(), user_id, true)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("user {user_id}")))?;
            if account.disabled_at.is_some() {
                return Err(StoreError::Conflict(format!(
                    "account {} is already disabled",
                    account.username
                ))
                .into());
            }
            transaction
                .execute_cached(
                    "UPDATE users SET disabled_at = $2 WHERE user_id = $1",
                    &[&user_id, &to_millis(at)?],
                )
                .await?;
            Ok(DisableOutcome {
                sessions_ended: end_sessions_of(
                    transaction,
                    user_id,
                    SessionEndReason::Revoked,
                    at,
                )
                .await?,
                pairings_ended: end_pairings_of(transaction, self.pii(), user_id, at).await?,
            })
        })
    }

    async fn enable_account(&self, user_id: &str) -> StoreResult<()> {
        write_transaction!(self, |transaction| {
            let account = load_account(transaction, self.pii(), user_id, true)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("user {user_id}")))?;
            if account.disabled_at.is_none() {
                return Err(StoreError::Conflict(format!(
                    "account {} is not disabled",
                    account.username
                ))
                .into());
            }
            transaction
                .execute_cached(
                    "UPDATE users SET disabled_at = NULL WHERE user_id = $1",
                    &[&user_id],
                )
                .await?;
            Ok(())
        })
    }

    async fn reset_password(
        &self,
        user_id: &str,
        password_hash: &str,
        at: OffsetDateTime,
    ) -> StoreResult<u64> {
        write_transaction!(self, |transaction| {
            let changed = transaction
                .execute_cached(
                    "UPDATE users SET password_hash = $2, must_change_password = TRUE
                      WHERE user_id = $1",
                    &[&user_id, &password_hash],
                )
                .await?;
            if changed == 0 {
                return Err(StoreError::NotFound(format!("user {user_id}")).into());
            }
            end_sessions_of(transaction, user_id, SessionEndReason::PasswordChanged, at).await
        })
    }

    async fn login_state(&self, user_id: &str) -> StoreResult<Option<LoginState>> {
        let connection = self.connection().await?;
        connection
            .query_opt_cached(
                "SELECT disabled_at IS NOT NULL AS disabled, must_change_password FROM users
                  WHERE user_id = $1",
                &[&user_id],
            )
            .await?
            .map(|row| {
                Ok(LoginState {
                    disabled: row.try_get("disabled")?,
                    must_change_password: row.try_get("must_change_password")?,
                })
            })
            .transpose()
    }
}
