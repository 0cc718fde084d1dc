//! Pairings management (结对管理) on PostgreSQL: cadres with their load, households with
//! their active pairings, the county admin's primary assignment (with its quota guard and
//! audit record in the same transaction) and helper pairings (第二帮扶责任人). The quota is
//! counted under the cadre's user row lock, so two admins on two replicas cannot both pass
//! it.

use super::PreparedOnce;
use std::collections::HashMap;

use time::OffsetDateTime;

use super::audit::append_audit_in;
use super::basics::parse_rank;
use super::households::load_household;
use super::push::resend_household;
use super::sync_area::{reassign_household_in, require_cadre, tombstone_unless_paired};
use super::{COUNTY_TOWNSHIPS_SQL, PostgresStore, user_phone_context};
use crate::store::{
    CadreLoad, HouseholdPairings, PairingFilter, PrimaryAssignment, StoreError, StoreResult,
};

/// Largest households page of the pairing list.
const MAX_PAIRING_PAGE: u32 = 5_000;

/// SQL condition: the township id in `column` belongs to the county `$1`.
fn township_in_county(column: &str) -> String {
    format!("{column} IN ({COUNTY_TOWNSHIPS_SQL})")
}

fn count(row: &tokio_postgres::Row, column: &str) -> StoreResult<u32> {
    let value: i64 = row.try_get(column)?;
    u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("{column} {value}")))
}

impl PostgresStore {
    /// The county's cadres with their primary and helper pairing counts.
    pub async fn cadre_loads(&self, county_id: &str) -> StoreResult<Vec<CadreLoad>> {
        let connection = self.connection().await?;
        let rows = connection
            .query_cached(
                &format!(
                    "SELECT u.user_id, u.display_name, u.phone, u.area_id AS township_id,
                            COALESCE(t.name, u.area_id) AS township_name, u.rank,
                            (SELECT COUNT(*) FROM pairings p
                              WHERE p.cadre_user_id = u.user_id AND p.active AND p.is_primary)
                                AS primary_count,
                            (SELECT COUNT(*) FROM pairings p
                              WHERE p.cadre_user_id = u.user_id AND p.active
                                AND NOT p.is_primary) AS secondary_count
                       FROM users u LEFT JOIN areas t ON t.area_id = u.area_id
                      WHERE u.role = 'cadre' AND {}
                      ORDER BY u.area_id, u.display_name, u.user_id",
                    township_in_county("u.area_id")
                ),
                &[&county_id],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let user_id: String = row.try_get("user_id")?;
                let phone: String = row.try_get("phone")?;
                Ok(CadreLoad {
                    rank: parse_rank(&user_id, row.try_get("rank")?)?,
                    phone: self
                        .pii()
                        .open(&phone, &user_phone_context(&user_id))
                        .map_err(|error| StoreError::Sealed(error.to_string()))?,
                    display_name: row.try_get("display_name")?,
                    township_id: row.try_get("township_id")?,
                    township_name: row.try_get("township_name")?,
                    primary_count: count(row, "primary_count")?,
                    secondary_count: count(row, "secondary_count")?,
                    user_id,
                })
            })
            .collect()
    }

    /// The county's households (filtered) with their active pairings.
    pub async fn pairing_households(
        &self,
        county_id: &str,
        filter: PairingFilter,
    ) -> StoreResult<Vec<HouseholdPairings>> {
        let problems = if filter.only_problems {
            "AND (SELECT COUNT(*) FROM pairings p
                   WHERE p.household_id = h.household_id AND p.active AND p.is_primary) <> 1"
        } else {
            ""
        };
        let limit = i64::from(if filter.limit == 0 {
            MAX_PAIRING_PAGE
        } else {
            filter.limit.min(MAX_PAIRING_PAGE)
        });
        let connection = self.connection().await?;
        let rows = connection
            .query_cached(
                &format!(
                    "SELECT h.household_id, h.head_name, h.township_id,
                            COALESCE(t.name, h.township_id) AS township_name,
                            h.village_id, COALESCE(v.name, h.village_id) AS village_name
                       FROM households h
                       LEFT JOIN areas t ON t.area_id = h.township_id
                       LEFT JOIN areas v ON v.area_id = h.village_id
                      WHERE {}
                        AND ($2::TEXT IS NULL OR h.township_id = $2)
                        AND ($3::TEXT IS NULL OR h.village_id = $3)
                        {problems}
                      ORDER BY h.township_id, h.village_id, h.head_name, h.household_id
                      LIMIT $4",
                    township_in_county("h.township_id")
                ),
                &[&county_id, &filter.township_id, &filter.village_id, &limit],
            )
            .await?;
        let mut households = Vec::with_capacity(rows.len());
        let mut index_of: HashMap<String, usize> = HashMap::new();
        for row in rows {
            let household_id: String = row.try_get("household_id")?;
            index_of.insert(household_id.clone(), households.len());
            households.push(HouseholdPairings {
                household_id,
                head_name: row.try_get("head_name")?,
                township_id: row.try_get("township_id")?,
                township_name: row.try_get("township_name")?,
                village_id: row.try_get("village_id")?,
                village_name: row.try_get("village_name")?,
                primaries: Vec::new(),
                secondaries: Vec::new(),
            });
        }
        // One query for every active pairing of the county, rather than one per household.
        let pairings = connection
            .query_cached(
                &format!(
                    "SELECT p.household_id, p.cadre_user_id,
                            COALESCE(u.display_name, p.cadre_user_id) AS cadre_name,
                            p.is_primary
                       FROM pairings p
                       JOIN households h ON h.household_id = p.household_id
                       LEFT JOIN users u ON u.user_id = p.cadre_user_id
                      WHERE p.active AND {}
                      ORDER BY u.display_name, p.cadre_user_id",
                    township_in_county("h.township_id")
                ),
                &[&county_id],
            )
            .await?;
        for row in pairings {
            let household_id: String = row.try_get("household_id")?;
            let Some(index) = index_of.get(&household_id) else {
                continue;
            };
            let cadre = (row.try_get("cadre_user_id")?, row.try_get("cadre_name")?);
            if row.try_get::<_, bool>("is_primary")? {
                households[*index].primaries.push(cadre);
            } else {
                households[*index].secondaries.push(cadre);
            }
        }
        Ok(households)
    }

    /// Make the cadre the household's primary (the reassignment hand-over), within the
    /// quota, with its audit record, in one transaction.
    pub async fn assign_primary(&self, assignment: PrimaryAssignment) -> StoreResult<()> {
        let assignment = &assignment;
        write_transaction!(self, |transaction| {
            // The cadre's row first: the quota below is counted while no other assignment
            // to this cadre can commit.
            transaction
                .query_cached(
                    "SELECT 1 FROM users WHERE user_id = $1 FOR UPDATE",
                    &[&assignment.cadre_user_id],
                )
                .await?;
            let already_primary = transaction
                .query_opt_cached(
                    "SELECT 1 FROM pairings
                      WHERE cadre_user_id = $1 AND household_id = $2 AND active AND is_primary",
                    &[&assignment.cadre_user_id, &assignment.household_id],
                )
                .await?
                .is_some();
            if already_primary {
                return Err(StoreError::Conflict(format!(
                    "cadre {} is already the primary of household {}",
                    assignment.cadre_user_id, assignment.household_id
                ))
                .into());
            }
            if let Some(max) = assignment.max_primary_count {
                let current: i64 = transaction
                    .query_one_cached(
                        "SELECT COUNT(*) FROM pairings
                          WHERE cadre_user_id = $1 AND active AND is_primary",
                        &[&assignment.cadre_user_id],
                    )
                    .await?
                    .try_get(0)?;
                if current + 1 > i64::from(max) {
                    return Err(StoreError::Conflict(format!(
                        "cadre {} would have {} primary pairings, more than {max}",
                        assignment.cadre_user_id,
                        current + 1
                    ))
                    .into());
                }
            }
            reassign_household_in(
                transaction,
                self.pii(),
                &assignment.household_id,
                &assignment.cadre_user_id,
                assignment.at,
            )
            .await?;
            if let Some(audit) = &assignment.audit {
                append_audit_in(transaction, self.audit_key(), audit).await?;
            }
            Ok(())
        })
    }

    /// Add (`active`) or end a helper pairing (第二帮扶责任人).
    pub async fn set_helper_pairing(
        &self,
        household_id: &str,
        cadre_user_id: &str,
        active: bool,
        at: OffsetDateTime,
    ) -> StoreResult<()> {
        write_transaction!(self, |transaction| {
            let Some(mut card) =
                load_household(transaction, self.pii(), household_id, true).await?
            else {
                return Err(StoreError::NotFound(format!("household {household_id}")).into());
            };
            require_cadre(transaction, cadre_user_id).await?;
            let current: Option<bool> = transaction
                .query_opt_cached(
                    "SELECT is_primary FROM pairings
                      WHERE cadre_user_id = $1 AND household_id = $2 AND active",
                    &[&cadre_user_id, &household_id],
                )
                .await?
                .map(|row| row.try_get(0))
                .transpose()?;
            if active {
                if current.is_some() {
                    return Err(StoreError::Conflict(format!(
                        "cadre {cadre_user_id} is already paired with household {household_id}"
                    ))
                    .into());
                }
                transaction
                    .execute_cached(
                        "INSERT INTO pairings (cadre_user_id, household_id, is_primary, active)
                         VALUES ($1, $2, FALSE, TRUE)
                         ON CONFLICT (cadre_user_id, household_id) DO UPDATE SET
                             is_primary = FALSE, active = TRUE",
                        &[&cadre_user_id, &household_id],
                    )
                    .await?;
                // An entry after the pairing, so the helper's cursor reaches it.
                return resend_household(transaction, self.pii(), &mut card).await;
            }
            match current {
                None => Err(StoreError::NotFound(format!(
                    "no active pairing of cadre {cadre_user_id} with household {household_id}"
                ))
                .into()),
                Some(true) => Err(StoreError::Conflict(format!(
                    "cadre {cadre_user_id} is the primary of household {household_id}"
                ))
                .into()),
                Some(false) => {
                    transaction
                        .execute_cached(
                            "UPDATE pairings SET active = FALSE
                              WHERE cadre_user_id = $1 AND household_id = $2",
                            &[&cadre_user_id, &household_id],
                        )
                        .await?;
                    tombstone_unless_paired(transaction, &card, cadre_user_id, at).await
                }
            }
        })
    }
}
