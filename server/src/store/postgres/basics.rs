//! The county's frame on PostgreSQL: areas, users (login records), the initial load of a
//! county (`load_seed`) and the small lookups every request makes.

use super::PreparedOnce;
use deadpool_postgres::GenericClient;
use fieldsync_model::CodeList;
use fieldsync_model::codes::{CadreRank, Crs, Role};
use fieldsync_model::household::{GeoPoint, Household};

use super::households::{insert_household, load_household};
use super::{PostgresStore, user_phone_context};
use crate::store::{Area, SeedData, StoreError, StoreResult, UserRecord};

pub(super) const AREA_COLUMNS: &str =
    "area_id, name, level, parent_id, centre_lat, centre_lon, centre_crs";

pub(super) fn area_from_row(row: &tokio_postgres::Row) -> StoreResult<Area> {
    let area_id: String = row.try_get("area_id")?;
    let latitude: Option<f64> = row.try_get("centre_lat")?;
    let longitude: Option<f64> = row.try_get("centre_lon")?;
    let crs_code: Option<i32> = row.try_get("centre_crs")?;
    let centre = match (latitude, longitude, crs_code) {
        (Some(lat), Some(lon), Some(code)) => {
            let crs = Crs::from_code(code).ok_or_else(|| {
                StoreError::Corrupt(format!("area {area_id}: unknown CRS {code}"))
            })?;
            Some(GeoPoint { lat, lon, crs })
        }
        _ => None,
    };
    Ok(Area {
        name: row.try_get("name")?,
        level: row.try_get("level")?,
        parent_id: row.try_get("parent_id")?,
        area_id,
        centre,
    })
}

pub(super) fn parse_rank(user_id: &str, rank: Option<i32>) -> StoreResult<Option<CadreRank>> {
    rank.map(|code| {
        CadreRank::from_code(code)
            .ok_or_else(|| StoreError::Corrupt(format!("user {user_id}: unknown rank {code}")))
    })
    .transpose()
}

pub(super) fn parse_role(user_id: &str, role: &str) -> StoreResult<Role> {
    Role::parse(role).ok_or_else(|| StoreError::Corrupt(format!("user {user_id}: role {role:?}")))
}

impl PostgresStore {
    /// True when no county has been loaded yet.
    pub async fn is_empty(&self) -> StoreResult<bool> {
        let connection = self.connection().await?;
        Ok(connection
            .query_opt_cached("SELECT 1 FROM areas LIMIT 1", &[])
            .await?
            .is_none())
    }

    /// Load areas, users, households and pairings in one transaction.
    pub async fn load_seed(&self, seed: SeedData) -> StoreResult<()> {
        let seed = &seed;
        write_transaction!(self, |transaction| {
            for area in &seed.areas {
                transaction
                    .execute_cached(
                        "INSERT INTO areas (area_id, name, level, parent_id, centre_lat,
                                            centre_lon, centre_crs)
                         VALUES ($1, $2, $3, $4, $5, $6, $7)",
                        &[
                            &area.area_id,
                            &area.name,
                            &area.level,
                            &area.parent_id,
                            &area.centre.map(|centre| centre.lat),
                            &area.centre.map(|centre| centre.lon),
                            &area.centre.map(|centre| centre.crs.code()),
                        ],
                    )
                    .await?;
            }
            for user in &seed.users {
                transaction
                    .execute_cached(
                        "INSERT INTO users (user_id, username, display_name, password_hash,
                                            role, area_id, phone, rank)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                        &[
                            &user.user_id,
                            &user.username,
                            &user.display_name,
                            &user.password_hash,
                            &user.role.as_str(),
                            &user.area_id,
                            &self
                                .pii()
                                .seal(&user.phone, &user_phone_context(&user.user_id)),
                            &user.rank.map(CadreRank::code),
                        ],
                    )
                    .await?;
            }
            for household in &seed.households {
                insert_household(transaction, self.pii(), household).await?;
            }
            for pairing in &seed.pairings {
                transaction
                    .execute_cached(
                        "INSERT INTO pairings (cadre_user_id, household_id, is_primary, active)
                         VALUES ($1, $2, $3, TRUE)",
                        &[
                            &pairing.cadre_user_id,
                            &pairing.household_id,
                            &pairing.is_primary,
                        ],
                    )
                    .await?;
            }
            Ok(())
        })
    }

    async fn load_user(&self, where_clause: &str, key: &str) -> StoreResult<Option<UserRecord>> {
        let connection = self.connection().await?;
        let statement = connection
            .prepare_cached(&format!(
                "SELECT user_id, username, display_name, password_hash, role, area_id, phone,
                        rank
                   FROM users WHERE {where_clause}"
            ))
            .await?;
        let Some(row) = connection.query_opt(&statement, &[&key]).await? else {
            return Ok(None);
        };
        let user_id: String = row.try_get("user_id")?;
        let role: String = row.try_get("role")?;
        let phone: String = row.try_get("phone")?;
        Ok(Some(UserRecord {
            role: parse_role(&user_id, &role)?,
            rank: parse_rank(&user_id, row.try_get("rank")?)?,
            phone: self
                .pii()
                .open(&phone, &user_phone_context(&user_id))
                .map_err(|error| StoreError::Sealed(error.to_string()))?,
            username: row.try_get("username")?,
            display_name: row.try_get("display_name")?,
            password_hash: row.try_get("password_hash")?,
            area_id: row.try_get("area_id")?,
            user_id,
        }))
    }

    /// Open one sealed value (the first user's phone number): `Err(Sealed)` when the key
    /// folder this store was opened with lacks the keys the database was sealed with, so a
    /// replica started with the wrong folder stops before it serves.
    pub async fn check_sealed_data_opens(&self) -> StoreResult<()> {
        let connection = self.connection().await?;
        let Some(row) = connection
            .query_opt_cached("SELECT user_id FROM users ORDER BY user_id LIMIT 1", &[])
            .await?
        else {
            return Ok(());
        };
        let user_id: String = row.try_get("user_id")?;
        drop(connection);
        self.find_user_by_id(&user_id).await.map(drop)
    }

    pub async fn find_user_by_username(&self, username: &str) -> StoreResult<Option<UserRecord>> {
        self.load_user("username = $1", username).await
    }

    pub async fn find_user_by_id(&self, user_id: &str) -> StoreResult<Option<UserRecord>> {
        self.load_user("user_id = $1", user_id).await
    }

    /// The user's own new password: a one-time password is used up.
    pub async fn set_password_hash(&self, user_id: &str, password_hash: &str) -> StoreResult<()> {
        let connection = self.connection().await?;
        let changed = connection
            .execute_cached(
                "UPDATE users SET password_hash = $2, must_change_password = FALSE
                  WHERE user_id = $1",
                &[&user_id, &password_hash],
            )
            .await?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("user {user_id}")));
        }
        Ok(())
    }

    pub async fn list_areas(&self, parent_id: Option<&str>) -> StoreResult<Vec<Area>> {
        let connection = self.connection().await?;
        // No parent: the roots of the tree (normally the one county).
        let rows = match parent_id {
            Some(parent_id) => {
                connection
                    .query_cached(
                        &format!(
                            "SELECT {AREA_COLUMNS} FROM areas WHERE parent_id = $1
                              ORDER BY area_id"
                        ),
                        &[&parent_id],
                    )
                    .await?
            }
            None => {
                connection
                    .query_cached(
                        &format!(
                            "SELECT {AREA_COLUMNS} FROM areas WHERE parent_id IS NULL
                              ORDER BY area_id"
                        ),
                        &[],
                    )
                    .await?
            }
        };
        rows.iter().map(area_from_row).collect()
    }

    pub async fn get_area(&self, area_id: &str) -> StoreResult<Option<Area>> {
        let connection = self.connection().await?;
        connection
            .query_opt_cached(
                &format!("SELECT {AREA_COLUMNS} FROM areas WHERE area_id = $1"),
                &[&area_id],
            )
            .await?
            .as_ref()
            .map(area_from_row)
            .transpose()
    }

    pub async fn get_household(&self, household_id: &str) -> StoreResult<Option<Household>> {
        let connection = self.connection().await?;
        load_household(&connection, self.pii(), household_id, false).await
    }

    pub async fn is_paired(&self, cadre_user_id: &str, household_id: &str) -> StoreResult<bool> {
        let connection = self.connection().await?;
        Ok(connection
            .query_opt_cached(
                "SELECT 1 FROM pairings
                  WHERE cadre_user_id = $1 AND household_id = $2 AND active",
                &[&cadre_user_id, &household_id],
            )
            .await?
            .is_some())
    }

    /// The household and author of a visit's first revision (later revisions are
    /// corrections by whoever holds the visit).
    pub async fn visit_owner(&self, visit_id: &str) -> StoreResult<Option<(String, String)>> {
        let connection = self.connection().await?;
        connection
            .query_opt_cached(
                "SELECT household_id, author_user_id FROM visits
                  WHERE visit_id = $1 ORDER BY revision LIMIT 1",
                &[&visit_id],
            )
            .await?
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .transpose()
    }
}
