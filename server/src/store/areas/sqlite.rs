//! SQLite side of [`AreasStore`] (行政区划): the county's areas with their village
//! attributes, the one-transaction apply of an area import, and `area_import_runs`.
//!
//! New areas go into the same `areas` table the demo seed fills, so scopes, the roster
//! import and pairings see an imported township or village exactly like a seeded one.

use std::sync::atomic::Ordering;

use async_trait::async_trait;
use fieldsync_model::CodeList;
use fieldsync_model::areas::{AreaEntry, AreaLevel, Attribute, VillageAttributes};
use fieldsync_model::codes::{CadreRank, Crs};
use fieldsync_model::household::GeoPoint;
use rusqlite::{Connection, OptionalExtension, Transaction, params, params_from_iter};

use crate::store::areas::{AreaImportApply, AreaImportRun, AreasStore};
use crate::store::sqlite::{
    AREA_COLUMNS, SqliteStore, corrupt, county_townships_sql, display_name_of, from_millis,
    from_sql_unsigned, insert_household, load_household, query_areas, resend_household, sealing,
    to_millis, to_sql_integer,
};
use crate::store::{Area, SeedData, StoreError, StoreResult};

/// The attribute columns of `village_attributes`, in [`Attribute::ALL`] order (the column
/// names are the attributes' keys).
fn attribute_columns() -> String {
    Attribute::ALL
        .iter()
        .map(|attribute| attribute.key())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The county (bound as `?1`), its townships and their villages, with attributes.
fn county_areas(connection: &Connection, county_id: &str) -> StoreResult<Vec<AreaEntry>> {
    let county_exists = connection
        .query_row(
            "SELECT 1 FROM areas WHERE area_id = ?1",
            params![county_id],
            |_| Ok(()),
        )
        .optional()?
        .is_some();
    if !county_exists {
        return Err(StoreError::NotFound(format!("county {county_id}")));
    }
    let attribute_list: Vec<String> = Attribute::ALL
        .iter()
        .map(|attribute| format!("v.{}", attribute.key()))
        .collect();
    let sql = format!(
        "SELECT a.area_id, a.name, a.level, a.parent_id, a.centre_lat, a.centre_lon,
                a.centre_crs, {attributes}
         FROM areas a LEFT JOIN village_attributes v ON v.area_id = a.area_id
         WHERE a.area_id = ?1
            OR (a.level = 'township' AND a.parent_id = ?1)
            OR (a.level = 'village' AND a.parent_id IN ({townships}))
         ORDER BY a.area_id",
        attributes = attribute_list.join(", "),
        townships = county_townships_sql!()
    );
    let mut statement = connection.prepare(&sql)?;
    let mut rows = statement.query(params![county_id])?;
    let mut areas = Vec::new();
    while let Some(row) = rows.next()? {
        let area_id: String = row.get("area_id")?;
        let level_text: String = row.get("level")?;
        let level = AreaLevel::from_stored(&level_text)
            .ok_or_else(|| corrupt(format!("area {area_id}: unknown level {level_text}")))?;
        let latitude: Option<f64> = row.get("centre_lat")?;
        let longitude: Option<f64> = row.get("centre_lon")?;
        let crs_code: Option<i32> = row.get("centre_crs")?;
        let centre = match (latitude, longitude, crs_code) {
            (Some(lat), Some(lon), Some(code)) => {
                let crs = Crs::from_code(code)
                    .ok_or_else(|| corrupt(format!("area {area_id}: unknown CRS {code}")))?;
                Some(GeoPoint { lat, lon, crs })
            }
            _ => None,
        };
        let mut attributes = VillageAttributes::default();
        for attribute in Attribute::ALL.iter() {
            let value: Option<i64> = row.get(attribute.key())?;
            attribute.set(&mut attributes, value);
        }
        areas.push(AreaEntry {
            name: row.get("name")?,
            parent_id: row.get("parent_id")?,
            area_id,
            level,
            centre,
            attributes,
        });
    }
    Ok(areas)
}

/// The stored level of an area, if it is stored.
fn stored_level(transaction: &Transaction<'_>, area_id: &str) -> StoreResult<Option<String>> {
    Ok(stored_level_and_name(transaction, area_id)?.map(|(level, _)| level))
}

/// The stored level and name of an area, if it is stored.
fn stored_level_and_name(
    transaction: &Transaction<'_>,
    area_id: &str,
) -> StoreResult<Option<(String, String)>> {
    Ok(transaction
        .prepare_cached("SELECT level, name FROM areas WHERE area_id = ?1")?
        .query_row(params![area_id], |row| {
            Ok((row.get("level")?, row.get("name")?))
        })
        .optional()?)
}

/// A renamed village's households carry its name on their cards (明白卡, the phones'
/// replicas): write the new name and log each card for pull, so phones show it too.
/// Returns how many cards were re-sent.
fn rename_village_on_cards(
    transaction: &Transaction<'_>,
    village_id: &str,
    new_name: &str,
) -> StoreResult<u64> {
    let household_ids: Vec<String> = transaction
        .prepare_cached("SELECT household_id FROM households WHERE village_id = ?1")?
        .query_map(params![village_id], |row| row.get("household_id"))?
        .collect::<Result<_, _>>()?;
    let mut resent = 0;
    for household_id in household_ids {
        let mut card = load_household(transaction, &household_id)?
            .ok_or_else(|| corrupt(format!("household {household_id} vanished")))?;
        if card.village_name != new_name {
            card.village_name = new_name.to_owned();
            resend_household(transaction, &mut card)?;
            resent += 1;
        }
    }
    Ok(resent)
}

/// Write (insert or replace) a village's attribute row.
fn write_attributes(
    transaction: &Transaction<'_>,
    area_id: &str,
    attributes: &VillageAttributes,
    run_id: &str,
) -> StoreResult<()> {
    let columns = attribute_columns();
    let placeholders: Vec<String> = (0..Attribute::ALL.len())
        .map(|index| format!("?{}", index + 3))
        .collect();
    let updates: Vec<String> = Attribute::ALL
        .iter()
        .map(|attribute| format!("{key} = excluded.{key}", key = attribute.key()))
        .collect();
    let sql = format!(
        "INSERT INTO village_attributes (area_id, updated_by_run, {columns})
         VALUES (?1, ?2, {placeholders})
         ON CONFLICT (area_id) DO UPDATE SET updated_by_run = excluded.updated_by_run,
                                             {updates}",
        placeholders = placeholders.join(", "),
        updates = updates.join(", ")
    );
    let mut values: Vec<rusqlite::types::Value> = vec![
        rusqlite::types::Value::Text(area_id.to_owned()),
        rusqlite::types::Value::Text(run_id.to_owned()),
    ];
    values.extend(Attribute::ALL.iter().map(|attribute| {
        attribute.get(attributes).map_or(
            rusqlite::types::Value::Null,
            rusqlite::types::Value::Integer,
        )
    }));
    transaction
        .prepare_cached(&sql)?
        .execute(params_from_iter(values))?;
    Ok(())
}

fn is_in_county(area: &AreaEntry, county_id: &str) -> bool {
    let prefix = county_id.get(..6).unwrap_or(county_id);
    area.area_id == county_id || area.area_id.starts_with(prefix)
}

/// Store the whole import, or nothing.
fn apply_area_import(
    transaction: &Transaction<'_>,
    apply: &AreaImportApply,
) -> StoreResult<AreaImportRun> {
    let plan = &apply.plan;
    let run = &apply.run;
    let bump = || apply.applied_items.fetch_add(1, Ordering::Relaxed);
    for area in &plan.new_areas {
        if !is_in_county(area, &run.county_id) {
            return Err(StoreError::Conflict(format!(
                "区划{}不属于本县{}",
                area.area_id, run.county_id
            )));
        }
        if stored_level(transaction, &area.area_id)?.is_some() {
            return Err(StoreError::Conflict(format!(
                "区划代码{}已存在（可能已被另一次导入写入），请重新预览",
                area.area_id
            )));
        }
        if let Some(parent) = &area.parent_id
            && stored_level(transaction, parent)?.is_none()
        {
            return Err(StoreError::InvalidValue {
                field: "parent_id".into(),
                message: format!("区划{}的上级{parent}不存在", area.area_id),
            });
        }
        transaction
            .prepare_cached(
                "INSERT INTO areas (area_id, name, level, parent_id, centre_lat, centre_lon,
                                    centre_crs)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                area.area_id,
                area.name,
                area.level.as_str(),
                area.parent_id,
                area.centre.map(|centre| centre.lat),
                area.centre.map(|centre| centre.lon),
                area.centre.map(|centre| centre.crs.code()),
            ])?;
        if area.level == AreaLevel::Village && Attribute::any_known(&area.attributes) {
            write_attributes(transaction, &area.area_id, &area.attributes, &run.run_id)?;
        }
        bump();
    }
    for area in &plan.updated_areas {
        let stored = stored_level_and_name(transaction, &area.area_id)?;
        let Some((level, old_name)) = stored.filter(|(level, _)| {
            level == area.level.as_str() && is_in_county(area, &run.county_id)
        }) else {
            return Err(StoreError::Conflict(format!(
                "区划{}已不在本县或层级已变，请重新预览",
                area.area_id
            )));
        };
        if level == AreaLevel::Village.as_str() && old_name != area.name {
            rename_village_on_cards(transaction, &area.area_id, &area.name)?;
        }
        transaction
            .prepare_cached(
                "UPDATE areas SET name = ?2, centre_lat = ?3, centre_lon = ?4, centre_crs = ?5
                 WHERE area_id = ?1",
            )?
            .execute(params![
                area.area_id,
                area.name,
                area.centre.map(|centre| centre.lat),
                area.centre.map(|centre| centre.lon),
                area.centre.map(|centre| centre.crs.code()),
            ])?;
        if area.level == AreaLevel::Village && Attribute::any_known(&area.attributes) {
            write_attributes(transaction, &area.area_id, &area.attributes, &run.run_id)?;
        }
        bump();
    }
    transaction.execute(
        "INSERT INTO area_import_runs (run_id, county_id, file_name, file_sha256, file_bytes,
                                       data_rows, areas_created, areas_changed, fields_changed,
                                       areas_renamed, areas_missing, unchanged_rows,
                                       applied_by, applied_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        params![
            run.run_id,
            run.county_id,
            run.file_name,
            run.file_sha256,
            to_sql_integer(run.file_bytes, "file_bytes")?,
            to_sql_integer(run.data_rows, "data_rows")?,
            to_sql_integer(run.areas_created, "areas_created")?,
            to_sql_integer(run.areas_changed, "areas_changed")?,
            to_sql_integer(run.fields_changed, "fields_changed")?,
            to_sql_integer(run.areas_renamed, "areas_renamed")?,
            to_sql_integer(run.areas_missing, "areas_missing")?,
            to_sql_integer(run.unchanged_rows, "unchanged_rows")?,
            run.applied_by_user_id,
            to_millis(run.applied_at)?,
        ],
    )?;
    let mut stored = run.clone();
    stored.applied_by_name = display_name_of(transaction, &run.applied_by_user_id)?;
    Ok(stored)
}

/// The county's applied area imports, newest first.
fn area_import_runs(
    connection: &Connection,
    county_id: &str,
    limit: u32,
) -> StoreResult<Vec<AreaImportRun>> {
    let mut statement = connection.prepare(
        "SELECT run_id, county_id, file_name, file_sha256, file_bytes, data_rows, areas_created,
                areas_changed, fields_changed, areas_renamed, areas_missing, unchanged_rows,
                applied_by, applied_at,
                COALESCE(users.display_name, area_import_runs.applied_by) AS applied_by_name
         FROM area_import_runs LEFT JOIN users ON users.user_id = area_import_runs.applied_by
         WHERE county_id = ?1
         ORDER BY applied_at DESC, run_id DESC LIMIT ?2",
    )?;
    let mut rows = statement.query(params![county_id, limit])?;
    let mut runs = Vec::new();
    while let Some(row) = rows.next()? {
        let count = |column: &str| -> StoreResult<u64> {
            from_sql_unsigned::<u64>(row.get::<_, i64>(column)?, "area import run count")
        };
        runs.push(AreaImportRun {
            run_id: row.get("run_id")?,
            county_id: row.get("county_id")?,
            file_name: row.get("file_name")?,
            file_sha256: row.get("file_sha256")?,
            file_bytes: count("file_bytes")?,
            data_rows: count("data_rows")?,
            areas_created: count("areas_created")?,
            areas_changed: count("areas_changed")?,
            fields_changed: count("fields_changed")?,
            areas_renamed: count("areas_renamed")?,
            areas_missing: count("areas_missing")?,
            unchanged_rows: count("unchanged_rows")?,
            applied_by_user_id: row.get("applied_by")?,
            applied_at: from_millis(row.get("applied_at")?)?,
            applied_by_name: row.get("applied_by_name")?,
        });
    }
    Ok(runs)
}

fn load_seed_in(transaction: &Transaction<'_>, seed: &SeedData) -> StoreResult<()> {
    for area in &seed.areas {
        transaction.execute(
            "INSERT INTO areas (area_id, name, level, parent_id, centre_lat, centre_lon, centre_crs)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                area.area_id,
                area.name,
                area.level,
                area.parent_id,
                area.centre.map(|centre| centre.lat),
                area.centre.map(|centre| centre.lon),
                area.centre.map(|centre| centre.crs.code()),
            ],
        )?;
    }
    for user in &seed.users {
        transaction.execute(
            "INSERT INTO users (user_id, username, display_name, password_hash, role, area_id,
                                phone, rank)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, pii_seal(?7, ?9), ?8)",
            params![
                user.user_id,
                user.username,
                user.display_name,
                user.password_hash,
                user.role.as_str(),
                user.area_id,
                user.phone,
                user.rank.map(CadreRank::code),
                sealing::user_phone_context(&user.user_id),
            ],
        )?;
    }
    for household in &seed.households {
        insert_household(transaction, household)?;
    }
    for pairing in &seed.pairings {
        transaction.execute(
            "INSERT INTO pairings (cadre_user_id, household_id, is_primary, active)
             VALUES (?1, ?2, ?3, 1)",
            params![
                pairing.cadre_user_id,
                pairing.household_id,
                pairing.is_primary
            ],
        )?;
    }
    Ok(())
}

#[async_trait]
impl AreasStore for SqliteStore {
    async fn county_areas(&self, county_id: &str) -> StoreResult<Vec<AreaEntry>> {
        let county_id = county_id.to_owned();
        self.read(move |connection| county_areas(connection, &county_id))
            .await
    }

    async fn apply_area_import(&self, apply: AreaImportApply) -> StoreResult<AreaImportRun> {
        self.write(move |transaction| apply_area_import(transaction, &apply))
            .await
    }

    async fn area_import_runs(
        &self,
        county_id: &str,
        limit: u32,
    ) -> StoreResult<Vec<AreaImportRun>> {
        let county_id = county_id.to_owned();
        self.read(move |connection| area_import_runs(connection, &county_id, limit))
            .await
    }

    async fn is_empty(&self) -> StoreResult<bool> {
        self.read(|connection| {
            let any_area = connection
                .query_row("SELECT 1 FROM areas LIMIT 1", [], |_| Ok(()))
                .optional()?;
            Ok(any_area.is_none())
        })
        .await
    }

    async fn load_seed(&self, seed: SeedData) -> StoreResult<()> {
        self.write(move |transaction| load_seed_in(transaction, &seed))
            .await
    }

    async fn list_areas(&self, parent_id: Option<&str>) -> StoreResult<Vec<Area>> {
        let parent_id = parent_id.map(str::to_owned);
        self.read(move |connection| match parent_id {
            Some(parent_id) => query_areas(
                connection,
                &format!("SELECT {AREA_COLUMNS} FROM areas WHERE parent_id = ?1 ORDER BY area_id"),
                params![parent_id],
            ),
            // No parent: the roots of the tree (normally the one county).
            None => query_areas(
                connection,
                &format!(
                    "SELECT {AREA_COLUMNS} FROM areas WHERE parent_id IS NULL ORDER BY area_id"
                ),
                [],
            ),
        })
        .await
    }

    async fn get_area(&self, area_id: &str) -> StoreResult<Option<Area>> {
        let area_id = area_id.to_owned();
        self.read(move |connection| {
            let areas = query_areas(
                connection,
                &format!("SELECT {AREA_COLUMNS} FROM areas WHERE area_id = ?1"),
                params![area_id],
            )?;
            Ok(areas.into_iter().next())
        })
        .await
    }
}
