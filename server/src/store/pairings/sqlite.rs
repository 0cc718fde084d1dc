//! SQLite side of pairings management (结对管理): the county's cadres with their 8741 load,
//! households with their active pairings, and the county admin's primary assignment, which
//! reuses the reassignment hand-over of `reassign_household_in` (tombstone for the old
//! cadre, household entry for the new one) inside one transaction with its quota guard and
//! its audit record; helper (第二帮扶责任人) pairings, added and ended with the same
//! delivery and tombstone rules.

use std::collections::HashMap;

use fieldsync_model::CodeList;
use fieldsync_model::codes::{CadreRank, Role};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use time::OffsetDateTime;

use crate::store::export::sqlite as export;
use crate::store::pairings::{
    CadreLoad, HouseholdPairings, PairingFilter, PairingsStore, PrimaryAssignment,
};
use crate::store::sqlite::{
    SqliteStore, corrupt, county_townships_sql, from_sql_unsigned, load_household, load_user,
    reassign_household_in, resend_household, tombstone_unless_paired,
};
use crate::store::{StoreError, StoreResult};

/// Largest households page of the pairing list.
const MAX_PAIRING_PAGE: u32 = 5_000;

/// SQL condition: the township id in `column` belongs to the county `?1`.
fn township_in_county(column: &str) -> String {
    format!("{column} IN ({})", county_townships_sql!())
}

pub(in crate::store) fn cadre_loads(
    connection: &Connection,
    county_id: &str,
) -> StoreResult<Vec<CadreLoad>> {
    let sql = format!(
        "SELECT u.user_id, u.display_name,
                pii_open(u.phone, 'users.phone/' || u.user_id) AS phone,
                u.area_id AS township_id, COALESCE(t.name, u.area_id) AS township_name, u.rank,
                (SELECT COUNT(*) FROM pairings p
                 WHERE p.cadre_user_id = u.user_id AND p.active = 1 AND p.is_primary = 1)
                    AS primary_count,
                (SELECT COUNT(*) FROM pairings p
                 WHERE p.cadre_user_id = u.user_id AND p.active = 1 AND p.is_primary = 0)
                    AS secondary_count
         FROM users u LEFT JOIN areas t ON t.area_id = u.area_id
         WHERE u.role = 'cadre' AND {}
         ORDER BY u.area_id, u.display_name, u.user_id",
        township_in_county("u.area_id")
    );
    let mut statement = connection.prepare(&sql)?;
    let mut rows = statement.query(params![county_id])?;
    let mut cadres = Vec::new();
    while let Some(row) = rows.next()? {
        let rank = row
            .get::<_, Option<i32>>("rank")?
            .map(|code| {
                CadreRank::from_code(code).ok_or_else(|| corrupt(format!("unknown rank {code}")))
            })
            .transpose()?;
        cadres.push(CadreLoad {
            user_id: row.get("user_id")?,
            display_name: row.get("display_name")?,
            phone: row.get("phone")?,
            township_id: row.get("township_id")?,
            township_name: row.get("township_name")?,
            rank,
            primary_count: from_sql_unsigned(row.get("primary_count")?, "primary count")?,
            secondary_count: from_sql_unsigned(row.get("secondary_count")?, "secondary count")?,
        });
    }
    Ok(cadres)
}

pub(in crate::store) fn pairing_households(
    connection: &Connection,
    county_id: &str,
    filter: &PairingFilter,
) -> StoreResult<Vec<HouseholdPairings>> {
    let problems = if filter.only_problems {
        "AND (SELECT COUNT(*) FROM pairings p
              WHERE p.household_id = h.household_id AND p.active = 1 AND p.is_primary = 1) <> 1"
    } else {
        ""
    };
    let sql = format!(
        "SELECT h.household_id, h.head_name, h.township_id,
                COALESCE(t.name, h.township_id) AS township_name,
                h.village_id, COALESCE(v.name, h.village_id) AS village_name
         FROM households h
         LEFT JOIN areas t ON t.area_id = h.township_id
         LEFT JOIN areas v ON v.area_id = h.village_id
         WHERE {}
           AND (?2 IS NULL OR h.township_id = ?2)
           AND (?3 IS NULL OR h.village_id = ?3)
           {problems}
         ORDER BY h.township_id, h.village_id, h.head_name, h.household_id
         LIMIT ?4",
        township_in_county("h.township_id")
    );
    let limit = if filter.limit == 0 {
        MAX_PAIRING_PAGE
    } else {
        filter.limit.min(MAX_PAIRING_PAGE)
    };
    let mut households = Vec::new();
    let mut index_of: HashMap<String, usize> = HashMap::new();
    {
        let mut statement = connection.prepare(&sql)?;
        let mut rows = statement.query(params![
            county_id,
            filter.township_id,
            filter.village_id,
            limit
        ])?;
        while let Some(row) = rows.next()? {
            let household_id: String = row.get("household_id")?;
            index_of.insert(household_id.clone(), households.len());
            households.push(HouseholdPairings {
                household_id,
                head_name: row.get("head_name")?,
                township_id: row.get("township_id")?,
                township_name: row.get("township_name")?,
                village_id: row.get("village_id")?,
                village_name: row.get("village_name")?,
                primaries: Vec::new(),
                secondaries: Vec::new(),
            });
        }
    }
    // One query for every active pairing of the county, rather than one per household.
    let pairings_sql = format!(
        "SELECT p.household_id, p.cadre_user_id,
                COALESCE(u.display_name, p.cadre_user_id) AS cadre_name, p.is_primary
         FROM pairings p
         JOIN households h ON h.household_id = p.household_id
         LEFT JOIN users u ON u.user_id = p.cadre_user_id
         WHERE p.active = 1 AND {}
         ORDER BY u.display_name, p.cadre_user_id",
        township_in_county("h.township_id")
    );
    let mut statement = connection.prepare(&pairings_sql)?;
    let mut rows = statement.query(params![county_id])?;
    while let Some(row) = rows.next()? {
        let household_id: String = row.get("household_id")?;
        let Some(index) = index_of.get(&household_id) else {
            continue;
        };
        let cadre = (row.get("cadre_user_id")?, row.get("cadre_name")?);
        if row.get::<_, bool>("is_primary")? {
            households[*index].primaries.push(cadre);
        } else {
            households[*index].secondaries.push(cadre);
        }
    }
    Ok(households)
}

pub(in crate::store) fn assign_primary(
    transaction: &Transaction<'_>,
    audit_key: Option<&crate::keys::SecretKey>,
    assignment: &PrimaryAssignment,
) -> StoreResult<()> {
    let already_primary = transaction
        .query_row(
            "SELECT 1 FROM pairings
             WHERE cadre_user_id = ?1 AND household_id = ?2 AND active = 1 AND is_primary = 1",
            params![assignment.cadre_user_id, assignment.household_id],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    if already_primary {
        return Err(StoreError::Conflict(format!(
            "cadre {} is already the primary of household {}",
            assignment.cadre_user_id, assignment.household_id
        )));
    }
    if let Some(max) = assignment.max_primary_count {
        let current: i64 = transaction.query_row(
            "SELECT COUNT(*) AS primary_count FROM pairings
             WHERE cadre_user_id = ?1 AND active = 1 AND is_primary = 1",
            params![assignment.cadre_user_id],
            |row| row.get("primary_count"),
        )?;
        if current + 1 > i64::from(max) {
            return Err(StoreError::Conflict(format!(
                "cadre {} would have {} primary pairings, more than {max}",
                assignment.cadre_user_id,
                current + 1
            )));
        }
    }
    reassign_household_in(
        transaction,
        &assignment.household_id,
        &assignment.cadre_user_id,
        assignment.at,
    )?;
    if let Some(audit) = &assignment.audit {
        export::append_audit(transaction, audit_key, audit)?;
    }
    Ok(())
}

pub(in crate::store) fn set_helper_pairing(
    transaction: &Transaction<'_>,
    household_id: &str,
    cadre_user_id: &str,
    active: bool,
    at: OffsetDateTime,
) -> StoreResult<()> {
    let Some(mut card) = load_household(transaction, household_id)? else {
        return Err(StoreError::NotFound(format!("household {household_id}")));
    };
    match load_user(transaction, "user_id = ?1", cadre_user_id)? {
        Some(user) if user.role == Role::Cadre => {}
        _ => return Err(StoreError::NotFound(format!("cadre {cadre_user_id}"))),
    }
    let current: Option<bool> = transaction
        .query_row(
            "SELECT is_primary FROM pairings
             WHERE cadre_user_id = ?1 AND household_id = ?2 AND active = 1",
            params![cadre_user_id, household_id],
            |row| row.get("is_primary"),
        )
        .optional()?;
    if active {
        if current.is_some() {
            return Err(StoreError::Conflict(format!(
                "cadre {cadre_user_id} is already paired with household {household_id}"
            )));
        }
        transaction.execute(
            "INSERT INTO pairings (cadre_user_id, household_id, is_primary, active)
             VALUES (?1, ?2, 0, 1)
             ON CONFLICT (cadre_user_id, household_id) DO UPDATE SET is_primary = 0, active = 1",
            params![cadre_user_id, household_id],
        )?;
        // An entry after the pairing, so the helper's cursor (which may be past every
        // earlier entry of this household, or not name its township yet) reaches it.
        return resend_household(transaction, &mut card);
    }
    match current {
        None => Err(StoreError::NotFound(format!(
            "no active pairing of cadre {cadre_user_id} with household {household_id}"
        ))),
        Some(true) => Err(StoreError::Conflict(format!(
            "cadre {cadre_user_id} is the primary of household {household_id}"
        ))),
        Some(false) => {
            transaction.execute(
                "UPDATE pairings SET active = 0 WHERE cadre_user_id = ?1 AND household_id = ?2",
                params![cadre_user_id, household_id],
            )?;
            tombstone_unless_paired(transaction, &card, cadre_user_id, at)
        }
    }
}

#[async_trait::async_trait]
impl PairingsStore for SqliteStore {
    async fn is_paired(&self, cadre_user_id: &str, household_id: &str) -> StoreResult<bool> {
        let cadre_user_id = cadre_user_id.to_owned();
        let household_id = household_id.to_owned();
        self.read(move |connection| {
            Ok(connection
                .query_row(
                    "SELECT 1 FROM pairings
                     WHERE cadre_user_id = ?1 AND household_id = ?2 AND active = 1",
                    params![cadre_user_id, household_id],
                    |_| Ok(()),
                )
                .optional()?
                .is_some())
        })
        .await
    }

    async fn reassign_household(
        &self,
        household_id: &str,
        new_cadre_user_id: &str,
        at: OffsetDateTime,
    ) -> StoreResult<()> {
        let household_id = household_id.to_owned();
        let new_cadre_user_id = new_cadre_user_id.to_owned();
        self.write(move |transaction| {
            reassign_household_in(transaction, &household_id, &new_cadre_user_id, at)
        })
        .await
    }

    async fn cadre_loads(&self, county_id: &str) -> StoreResult<Vec<CadreLoad>> {
        let county_id = county_id.to_owned();
        self.read(move |connection| cadre_loads(connection, &county_id))
            .await
    }

    async fn pairing_households(
        &self,
        county_id: &str,
        filter: PairingFilter,
    ) -> StoreResult<Vec<HouseholdPairings>> {
        let county_id = county_id.to_owned();
        self.read(move |connection| pairing_households(connection, &county_id, &filter))
            .await
    }

    async fn assign_primary(&self, assignment: PrimaryAssignment) -> StoreResult<()> {
        let audit_key = self.inner.audit_key.clone();
        self.write(move |transaction| assign_primary(transaction, audit_key.as_ref(), &assignment))
            .await
    }

    async fn set_helper_pairing(
        &self,
        household_id: &str,
        cadre_user_id: &str,
        active: bool,
        at: OffsetDateTime,
    ) -> StoreResult<()> {
        let (household_id, cadre_user_id) = (household_id.to_owned(), cadre_user_id.to_owned());
        self.write(move |transaction| {
            set_helper_pairing(transaction, &household_id, &cadre_user_id, active, at)
        })
        .await
    }
}
