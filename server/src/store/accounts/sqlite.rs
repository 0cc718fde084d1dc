//! SQLite side of [`AccountsStore`]: the `users` table with the columns of migration 0022.
//! Phone and ID numbers are sealed by the `pii_*` SQL functions like every other personal
//! value; a cadre's ID number also gets a keyed blind index so two accounts cannot share
//! it. Disabling an account ends its sessions and, for a cadre, its pairings with the
//! hand-over tombstones of a reassignment, in one transaction.

use async_trait::async_trait;
use fieldsync_model::CodeList;
use fieldsync_model::codes::{CadreRank, Role};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use time::OffsetDateTime;

use crate::store::accounts::{
    Account, AccountEdit, AccountFilter, AccountsStore, CadreDetails, DisableOutcome, LoginState,
    NewAccount,
};
use crate::store::jobs::sqlite::save_import_job_in;
use crate::store::jobs::{ImportJobRecord, ImportJobWrite, StoredImportJob, import_job_taken_over};
use crate::store::sqlite::sealing::{USER_PHONE_CONTEXT_SQL, user_phone_context};
use crate::store::sqlite::{
    SqliteStore, corrupt, from_millis, load_household, load_user, to_millis,
    tombstone_unless_paired,
};
use crate::store::{SessionEndReason, StoreError, StoreResult, UserRecord};

/// SQL: the context of users.id_number.
pub(crate) const USER_ID_NUMBER_CONTEXT_SQL: &str = "'users.id_number/' || user_id";

/// Blind-index kind of cadre ID numbers (separate from members', so the two never match).
const USER_ID_NUMBER_INDEX: &str = "user_id_number";

pub(crate) fn user_id_number_context(user_id: &str) -> String {
    format!("users.id_number/{user_id}")
}

fn account_columns() -> String {
    format!(
        "user_id, username, display_name, role, area_id,
         pii_open(phone, {USER_PHONE_CONTEXT_SQL}) AS phone, rank, unit,
         pii_open(id_number, {USER_ID_NUMBER_CONTEXT_SQL}) AS id_number, team_member,
         active_from, active_to, disabled_at, must_change_password, created_at"
    )
}

fn account_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoreResult<Account>> {
    let role: String = row.get("role")?;
    let rank: Option<i32> = row.get("rank")?;
    let disabled_at: Option<i64> = row.get("disabled_at")?;
    let created_at: i64 = row.get("created_at")?;
    let user_id: String = row.get("user_id")?;
    let username: String = row.get("username")?;
    let display_name: String = row.get("display_name")?;
    let area_id: String = row.get("area_id")?;
    let phone: String = row.get("phone")?;
    let details = CadreDetails {
        unit: row.get("unit")?,
        id_number: row.get("id_number")?,
        team_member: row.get::<_, i64>("team_member")? != 0,
        active_from: row.get("active_from")?,
        active_to: row.get("active_to")?,
    };
    let must_change_password = row.get::<_, i64>("must_change_password")? != 0;
    Ok((|| {
        Ok(Account {
            role: Role::parse(&role)
                .ok_or_else(|| corrupt(format!("user {user_id}: role {role}")))?,
            rank: rank
                .map(|code| {
                    CadreRank::from_code(code)
                        .ok_or_else(|| corrupt(format!("user {user_id}: rank {code}")))
                })
                .transpose()?,
            disabled_at: disabled_at.map(from_millis).transpose()?,
            created_at: (created_at > 0)
                .then(|| from_millis(created_at))
                .transpose()?,
            user_id,
            username,
            display_name,
            area_id,
            phone,
            details,
            must_change_password,
        })
    })())
}

fn load_account(connection: &Connection, user_id: &str) -> StoreResult<Option<Account>> {
    connection
        .query_row(
            &format!("SELECT {} FROM users WHERE user_id = ?1", account_columns()),
            params![user_id],
            account_from_row,
        )
        .optional()?
        .transpose()
}

fn require_area(transaction: &Transaction<'_>, area_id: &str) -> StoreResult<()> {
    let exists = transaction
        .query_row(
            "SELECT 1 FROM areas WHERE area_id = ?1",
            params![area_id],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    if exists {
        Ok(())
    } else {
        Err(StoreError::NotFound(format!("area {area_id}")))
    }
}

/// Refuse a username, user id or ID number another account holds, with a message that
/// names which (the unique constraints would only say "constraint failed").
fn refuse_taken(transaction: &Transaction<'_>, account: &NewAccount) -> StoreResult<()> {
    let taken: Option<String> = transaction
        .query_row(
            "SELECT CASE WHEN user_id = ?1 THEN 'user id' ELSE 'username' END AS taken FROM users
              WHERE user_id = ?1 OR username = ?2 LIMIT 1",
            params![account.user_id, account.username],
            |row| row.get("taken"),
        )
        .optional()?;
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
    refuse_taken_id_number(transaction, &account.details.id_number, &account.user_id)
}

fn refuse_taken_id_number(
    transaction: &Transaction<'_>,
    id_number: &str,
    own_user_id: &str,
) -> StoreResult<()> {
    if id_number.is_empty() {
        return Ok(());
    }
    let holder: Option<String> = transaction
        .query_row(
            "SELECT username FROM users
              WHERE id_number_index = pii_index(?1, upper(?2)) AND user_id <> ?3",
            params![USER_ID_NUMBER_INDEX, id_number, own_user_id],
            |row| row.get("username"),
        )
        .optional()?;
    match holder {
        Some(username) => Err(StoreError::Conflict(format!(
            "ID number already belongs to account {username}"
        ))),
        None => Ok(()),
    }
}

fn insert_account(transaction: &Transaction<'_>, account: &NewAccount) -> StoreResult<()> {
    require_area(transaction, &account.area_id)?;
    refuse_taken(transaction, account)?;
    transaction
        .prepare_cached(&format!(
            "INSERT INTO users (user_id, username, display_name, password_hash, role, area_id,
                                phone, rank, unit, id_number, id_number_index, team_member,
                                active_from, active_to, must_change_password, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, pii_seal(?7, ?16), ?8, ?9,
                     pii_seal(?10, ?17), CASE WHEN ?10 = '' THEN NULL
                                              ELSE pii_index('{USER_ID_NUMBER_INDEX}', upper(?10)) END,
                     ?11, ?12, ?13, ?14, ?15)"
        ))?
        .execute(params![
            account.user_id,
            account.username,
            account.display_name,
            account.password_hash,
            account.role.as_str(),
            account.area_id,
            account.phone,
            account.rank.map(CadreRank::code),
            account.details.unit,
            account.details.id_number,
            account.details.team_member,
            account.details.active_from,
            account.details.active_to,
            account.must_change_password,
            to_millis(account.created_at)?,
            user_phone_context(&account.user_id),
            user_id_number_context(&account.user_id),
        ])?;
    Ok(())
}

/// End every active pairing of a cadre; each household gets the hand-over tombstone for
/// the cadre's phones. Returns how many pairings ended.
fn end_pairings_of(
    transaction: &Transaction<'_>,
    cadre_user_id: &str,
    at: OffsetDateTime,
) -> StoreResult<u64> {
    let households: Vec<String> = {
        let mut statement = transaction.prepare(
            "SELECT household_id FROM pairings WHERE cadre_user_id = ?1 AND active = 1
              ORDER BY household_id",
        )?;
        let rows = statement.query_map(params![cadre_user_id], |row| row.get("household_id"))?;
        rows.collect::<Result<_, _>>()?
    };
    transaction.execute(
        "UPDATE pairings SET active = 0 WHERE cadre_user_id = ?1 AND active = 1",
        params![cadre_user_id],
    )?;
    for household_id in &households {
        let card = load_household(transaction, household_id)?
            .ok_or_else(|| corrupt(format!("pairing with missing household {household_id}")))?;
        tombstone_unless_paired(transaction, &card, cadre_user_id, at)?;
    }
    Ok(households.len() as u64)
}

fn end_sessions_of(
    transaction: &Transaction<'_>,
    user_id: &str,
    reason: SessionEndReason,
    at: OffsetDateTime,
) -> StoreResult<u64> {
    Ok(transaction.execute(
        "UPDATE sessions SET ended_at = ?2, end_reason = ?3
          WHERE user_id = ?1 AND ended_at IS NULL",
        params![user_id, to_millis(at)?, reason.as_str()],
    )? as u64)
}

#[async_trait]
impl AccountsStore for SqliteStore {
    async fn account_count(&self) -> StoreResult<u64> {
        self.read(|connection| {
            let count: i64 =
                connection.query_row("SELECT COUNT(*) AS users FROM users", [], |row| {
                    row.get("users")
                })?;
            Ok(u64::try_from(count).unwrap_or(0))
        })
        .await
    }

    async fn create_account(&self, account: NewAccount) -> StoreResult<()> {
        self.write(move |transaction| insert_account(transaction, &account))
            .await
    }

    async fn create_accounts(
        &self,
        accounts: Vec<NewAccount>,
        import_job: &ImportJobRecord,
    ) -> StoreResult<()> {
        let stored_job = StoredImportJob::sealed(import_job, &self.inner.pii)?;
        self.write(move |transaction| {
            for account in &accounts {
                insert_account(transaction, account)?;
            }
            match save_import_job_in(transaction, &stored_job)? {
                ImportJobWrite::Written => Ok(()),
                ImportJobWrite::NotOurs => Err(import_job_taken_over(&stored_job.job_id)),
            }
        })
        .await
    }

    async fn account(&self, user_id: &str) -> StoreResult<Option<Account>> {
        let user_id = user_id.to_owned();
        self.read(move |connection| load_account(connection, &user_id))
            .await
    }

    async fn accounts(&self, filter: &AccountFilter) -> StoreResult<Vec<Account>> {
        let filter = filter.clone();
        self.read(move |connection| {
            // The area and everything below it (three levels at most: county, township,
            // village), by the parent links.
            let sql = format!(
                "WITH RECURSIVE scope (area_id) AS (
                     SELECT ?1
                     UNION ALL
                     SELECT a.area_id FROM areas a JOIN scope s ON a.parent_id = s.area_id)
                 SELECT {} FROM users
                  WHERE area_id IN (SELECT area_id FROM scope)
                    AND (?2 IS NULL OR role = ?2)
                    AND (?3 OR disabled_at IS NULL)
                  ORDER BY CASE role WHEN 'county' THEN 0 WHEN 'auditor' THEN 1
                                     WHEN 'township' THEN 2 WHEN 'village' THEN 3 ELSE 4 END,
                           area_id, display_name, username",
                account_columns()
            );
            let mut statement = connection.prepare(&sql)?;
            let rows = statement.query_map(
                params![
                    filter.area_id,
                    filter.role.map(Role::as_str),
                    filter.include_disabled
                ],
                account_from_row,
            )?;
            let mut accounts = Vec::new();
            for row in rows {
                accounts.push(row??);
            }
            Ok(accounts)
        })
        .await
    }

    async fn edit_account(&self, user_id: &str, edit: AccountEdit) -> StoreResult<()> {
        let user_id = user_id.to_owned();
        self.write(move |transaction| {
            if load_account(transaction, &user_id)?.is_none() {
                return Err(StoreError::NotFound(format!("user {user_id}")));
            }
            require_area(transaction, &edit.area_id)?;
            refuse_taken_id_number(transaction, &edit.details.id_number, &user_id)?;
            transaction.execute(
                &format!(
                    "UPDATE users SET display_name = ?2, phone = pii_seal(?3, ?12), role = ?4,
                            area_id = ?5, rank = ?6, unit = ?7, id_number = pii_seal(?8, ?13),
                            id_number_index = CASE WHEN ?8 = '' THEN NULL
                                ELSE pii_index('{USER_ID_NUMBER_INDEX}', upper(?8)) END,
                            team_member = ?9, active_from = ?10, active_to = ?11
                      WHERE user_id = ?1"
                ),
                params![
                    user_id,
                    edit.display_name,
                    edit.phone,
                    edit.role.as_str(),
                    edit.area_id,
                    edit.rank.map(CadreRank::code),
                    edit.details.unit,
                    edit.details.id_number,
                    edit.details.team_member,
                    edit.details.active_from,
                    edit.details.active_to,
                    user_phone_context(&user_id),
                    user_id_number_context(&user_id),
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn disable_account(
        &self,
        user_id: &str,
        at: OffsetDateTime,
    ) -> StoreResult<DisableOutcome> {
        let user_id = user_id.to_owned();
        self.write(move |transaction| {
            let account = load_account(transaction, &user_id)?
                .ok_or_else(|| StoreError::NotFound(format!("user {user_id}")))?;
            if account.disabled_at.is_some() {
                return Err(StoreError::Conflict(format!(
                    "account {} is already disabled",
                    account.username
                )));
            }
            transaction.execute(
                "UPDATE users SET disabled_at = ?2 WHERE user_id = ?1",
                params![user_id, to_millis(at)?],
            )?;
            Ok(DisableOutcome {
                sessions_ended: end_sessions_of(
                    transaction,
                    &user_id,
                    SessionEndReason::Revoked,
                    at,
                )?,
                pairings_ended: end_pairings_of(transaction, &user_id, at)?,
            })
        })
        .await
    }

    async fn enable_account(&self, user_id: &str) -> StoreResult<()> {
        let user_id = user_id.to_owned();
        self.write(move |transaction| {
            let account = load_account(transaction, &user_id)?
                .ok_or_else(|| StoreError::NotFound(format!("user {user_id}")))?;
            if account.disabled_at.is_none() {
                return Err(StoreError::Conflict(format!(
                    "account {} is not disabled",
                    account.username
                )));
            }
            transaction.execute(
                "UPDATE users SET disabled_at = NULL WHERE user_id = ?1",
                params![user_id],
            )?;
            Ok(())
        })
        .await
    }

    async fn reset_password(
        &self,
        user_id: &str,
        password_hash: &str,
        at: OffsetDateTime,
    ) -> StoreResult<u64> {
        let (user_id, password_hash) = (user_id.to_owned(), password_hash.to_owned());
        self.write(move |transaction| {
            let changed = transaction.execute(
                "UPDATE users SET password_hash = ?2, must_change_password = 1
                  WHERE user_id = ?1",
                params![user_id, password_hash],
            )?;
            if changed == 0 {
                return Err(StoreError::NotFound(format!("user {user_id}")));
            }
            end_sessions_of(transaction, &user_id, SessionEndReason::PasswordChanged, at)
        })
        .await
    }

    async fn login_state(&self, user_id: &str) -> StoreResult<Option<LoginState>> {
        let user_id = user_id.to_owned();
        self.read(move |connection| {
            Ok(connection
                .prepare_cached(
                    "SELECT disabled_at IS NOT NULL AS disabled, must_change_password FROM users
                      WHERE user_id = ?1",
                )?
                .query_row(params![user_id], |row| {
                    Ok(LoginState {
                        disabled: row.get("disabled")?,
                        must_change_password: row.get("must_change_password")?,
                    })
                })
                .optional()?)
        })
        .await
    }

    async fn find_user_by_username(&self, username: &str) -> StoreResult<Option<UserRecord>> {
        let username = username.to_owned();
        self.read(move |connection| load_user(connection, "username = ?1", &username))
            .await
    }

    async fn find_user_by_id(&self, user_id: &str) -> StoreResult<Option<UserRecord>> {
        let user_id = user_id.to_owned();
        self.read(move |connection| load_user(connection, "user_id = ?1", &user_id))
            .await
    }

    async fn set_password_hash(&self, user_id: &str, password_hash: &str) -> StoreResult<()> {
        let (user_id, password_hash) = (user_id.to_owned(), password_hash.to_owned());
        self.write(move |transaction| {
            let changed = transaction.execute(
                // The user's own new password: a one-time password is used up.
                "UPDATE users SET password_hash = ?2, must_change_password = 0 WHERE user_id = ?1",
                params![user_id, password_hash],
            )?;
            if changed == 0 {
                return Err(StoreError::NotFound(format!("user {user_id}")));
            }
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance;
    use crate::store::sqlite::tests::open_temp_store;

    /// The ID and phone numbers of an account are sealed in the file, and the blind index
    /// is not the number.
    #[tokio::test]
    async fn account_numbers_are_sealed_at_rest() {
        let (directory, store) = open_temp_store();
        conformance::seeded(&store).await;
        let account = NewAccount {
            user_id: "u-sealed".into(),
            username: "sealed".into(),
            display_name: "孙丽".into(),
            role: Role::Cadre,
            area_id: conformance::TOWNSHIP_ONE.into(),
            phone: "13912345678".into(),
            rank: None,
            details: CadreDetails {
                id_number: "11010519491231002X".into(),
                ..CadreDetails::default()
            },
            password_hash: "x".into(),
            must_change_password: true,
            created_at: conformance::VISIT_TIME,
        };
        store.create_account(account).await.expect("create");
        let path = directory.path().join("fieldsync.sqlite3");
        let raw = Connection::open(&path).expect("open raw");
        let (phone, id_number, index): (String, String, String) = raw
            .query_row(
                "SELECT phone, id_number, id_number_index FROM users WHERE user_id = 'u-sealed'",
                [],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .expect("raw row");
        assert!(phone.starts_with("enc:v1:"), "{phone}");
        assert!(id_number.starts_with("enc:v1:"), "{id_number}");
        assert!(!index.contains("1101051949"), "{index}");
        let read = store
            .account("u-sealed")
            .await
            .expect("read")
            .expect("exists");
        assert_eq!(read.details.id_number, "11010519491231002X");
    }
}
