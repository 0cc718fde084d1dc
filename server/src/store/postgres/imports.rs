//! Imports on PostgreSQL: the county roster (花名册导入) and administrative areas
//! (行政区划导入), each applied in one transaction with its run record.
//!
//! Both follow the SQLite implementations (`store/roster/sqlite.rs`, `store/areas/sqlite.rs`)
//! step for step, through the same writers a push uses: new households are logged like
//! seeded ones, added members like an `AddMember` push, changed fields go through
//! `write_register` (merge, conflict records, change log), and a renamed village's cards are
//! re-sent, so phones pull an import like any other change.
//!
//! What SQLite's single writer made free is explicit here:
//! - an import takes its county's advisory lock (one per import kind) first, so two replicas
//!   applying imports to one county run one after the other, and the second sees the first's
//!   rows in its checks (户编号 and 区划代码 have no unique index of their own to catch it);
//! - then every stored household the import writes is locked in id order, before any scope
//!   counter is taken, keeping the lock order of `push.rs` (households, then counters).

use super::PreparedOnce;
use std::collections::HashSet;
use std::sync::atomic::Ordering;

use deadpool_postgres::GenericClient;
use fieldsync_model::CodeList;
use fieldsync_model::areas::{AreaEntry, AreaLevel, Attribute, VillageAttributes};
use fieldsync_model::codes::Crs;
use fieldsync_model::household::GeoPoint;
use fieldsync_model::register::{FieldTarget, current};
use fieldsync_model::roster::{AreaName, CountyRoster};
use fieldsync_model::sync::MutationOutcome;
use tokio_postgres::types::{ToSql, Type};

use super::basics::{AREA_COLUMNS, area_from_row};
use super::households::{ID_NUMBER_INDEX, insert_household, load_household, open_card};
use super::push::{add_member, register_history, resend_household, to_db_integer, write_register};
use super::sync_area::display_name_of;
use super::{COUNTY_TOWNSHIPS_SQL, PostgresStore, WriteError, from_millis, to_millis};
use crate::store::areas::{AreaImportApply, AreaImportRun};
use crate::store::roster::{ImportRun, RosterImportApply};
use crate::store::sealed::PiiCipher;
use crate::store::{Area, StoreError, StoreResult};

/// Take the transaction-long advisory lock of one kind of import for one county.
async fn lock_county_imports(
    client: &impl GenericClient,
    kind: &str,
    county_id: &str,
) -> Result<(), WriteError> {
    client
        .execute_cached(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[&format!("{kind}/{county_id}")],
        )
        .await?;
    Ok(())
}

/// Lock the rows of `household_ids` (sorted, without repeats) in id order.
async fn lock_households(
    client: &impl GenericClient,
    household_ids: &[&str],
) -> Result<(), WriteError> {
    if household_ids.is_empty() {
        return Ok(());
    }
    client
        .query_cached(
            "SELECT household_id FROM households WHERE household_id = ANY($1)
              ORDER BY household_id FOR UPDATE",
            &[&household_ids],
        )
        .await?;
    Ok(())
}

/// An import reports its progress by `applied_items`; a try that lost a race and is run
/// again starts from the count the import began with, so the page never counts an item
/// twice.
fn restart_progress(counter: &std::sync::atomic::AtomicU64, count_at_start: u64) {
    counter.store(count_at_start, Ordering::Relaxed);
}

// ----- roster import (花名册导入) -----

fn area_name(area: Area) -> AreaName {
    AreaName {
        area_id: area.area_id,
        name: area.name,
        parent_id: area.parent_id,
    }
}

/// National household numbers already stored in the county's townships.
async fn stored_household_numbers(
    client: &impl GenericClient,
    county_id: &str,
) -> Result<HashSet<String>, WriteError> {
    let rows = client
        .query_cached(
            &format!(
                "SELECT card::json ->> 'national_household_number' AS national_household_number
                   FROM households
                  WHERE township_id IN ({COUNTY_TOWNSHIPS_SQL})"
            ),
            &[&county_id],
        )
        .await?;
    let mut numbers = HashSet::with_capacity(rows.len());
    for row in &rows {
        if let Some(number) = row.try_get::<_, Option<String>>("national_household_number")? {
            numbers.insert(number);
        }
    }
    Ok(numbers)
}

/// The apply-time duplicate check (the dry run checks the county in the model): an ID
/// number already held by a current member of another household anywhere on the server is
/// refused. ID numbers are sealed at rest, so the look-up goes through the blind index.
/// The message carries the masked number only.
async fn refuse_id_number_held_elsewhere(
    client: &impl GenericClient,
    pii: &PiiCipher,
    id_number: &str,
    household_id: &str,
) -> Result<(), WriteError> {
    if id_number.is_empty() {
        return Ok(());
    }
    let blind_index = pii.blind_index(ID_NUMBER_INDEX, &id_number.to_ascii_uppercase());
    let holder = client
        .query_opt_cached(
            "SELECT household_id FROM member_id_index
              WHERE blind_index = $1 AND household_id <> $2
              ORDER BY household_id LIMIT 1",
            &[&blind_index, &household_id],
        )
        .await?;
    match holder {
        None => Ok(()),
        Some(row) => {
            let holder: String = row.try_get("household_id")?;
            Err(StoreError::Conflict(format!(
                "证件号码{}已登记在另一户（{holder}）中，请重新预览",
                fieldsync_model::id_number::mask(id_number)
            ))
            .into())
        }
    }
}

/// Store the whole roster import inside the caller's transaction (the caller commits).
async fn apply_roster_import_in(
    client: &impl GenericClient,
    pii: &PiiCipher,
    apply: &RosterImportApply,
) -> Result<ImportRun, WriteError> {
    let plan = &apply.plan;
    let county_id = &apply.run.county_id;
    let bump = || apply.applied_items.fetch_add(1, Ordering::Relaxed);

    lock_county_imports(client, "roster-import", county_id).await?;
    let mut written: Vec<&str> = plan
        .field_changes
        .iter()
        .map(|change| change.household_id.as_str())
        .chain(
            plan.new_members
                .iter()
                .map(|new_member| new_member.household_id.as_str()),
        )
        .collect();
    written.sort_unstable();
    written.dedup();
    lock_households(client, &written).await?;

    let mut numbers = stored_household_numbers(client, county_id).await?;
    for household in &plan.new_households {
        if !numbers.insert(household.national_household_number.clone()) {
            return Err(StoreError::Conflict(format!(
                "户编号{}已存在（可能已被另一次导入写入），请重新预览",
                household.national_household_number
            ))
            .into());
        }
        for member in household.current_members() {
            refuse_id_number_held_elsewhere(
                client,
                pii,
                &member.id_number,
                &household.household_id,
            )
            .await?;
        }
        insert_household(client, pii, household).await?;
        bump();
    }

    let applied_at = to_millis(apply.run.applied_at)?;
    // Field changes grouped per household, so each card is loaded once and every write
    // builds on the previous one.
    let mut changes = plan.field_changes.iter().peekable();
    while let Some(first) = changes.next() {
        let mut card = load_household(client, pii, &first.household_id, true)
            .await?
            .ok_or_else(|| {
                StoreError::NotFound(format!("household {} is gone", first.household_id))
            })?;
        let mut household_changes = vec![first];
        while let Some(next) = changes.next_if(|next| next.household_id == first.household_id) {
            household_changes.push(next);
        }
        for change in household_changes {
            let mut stamp = apply.stamp.clone();
            let history = register_history(
                client,
                pii,
                &card.household_id,
                &change.target.as_key(),
                &change.field,
            )
            .await?;
            // As for a console resolution: the import must win over the write it replaces,
            // even if the server HLC has not seen that write (after a restart).
            if let Some(shown) = current(&history)
                && stamp <= shown.stamp
            {
                stamp.hlc = shown.stamp.hlc.tick(0);
            }
            if change.field == "id_number"
                && let Some(id_number) = change.new_value.as_str()
            {
                refuse_id_number_held_elsewhere(client, pii, id_number, &card.household_id).await?;
            }
            if let FieldTarget::Member(member_id) = &change.target
                && !card
                    .members
                    .iter()
                    .any(|member| &member.member_id == member_id)
            {
                return Err(StoreError::NotFound(format!("member {member_id} is gone")).into());
            }
            write_register(
                client,
                pii,
                &mut card,
                &change.target,
                &change.field,
                &change.new_value,
                stamp,
                &apply.run.applied_by_user_id,
                change.base_seq,
                applied_at,
            )
            .await?;
            bump();
        }
    }

    for new_member in &plan.new_members {
        refuse_id_number_held_elsewhere(
            client,
            pii,
            &new_member.member.id_number,
            &new_member.household_id,
        )
        .await?;
        match add_member(client, pii, &new_member.household_id, &new_member.member).await? {
            MutationOutcome::Applied => {}
            MutationOutcome::Rejected { message, .. } => {
                return Err(StoreError::InvalidValue {
                    field: "member".into(),
                    message,
                }
                .into());
            }
            other => {
                return Err(StoreError::Conflict(format!(
                    "member {} was not added: {other:?}",
                    new_member.member.member_id
                ))
                .into());
            }
        }
        bump();
    }

    let run = &apply.run;
    client
        .execute_cached(
            "INSERT INTO import_runs (run_id, county_id, file_name, file_sha256, file_bytes,
                                      data_rows, households_created, members_created,
                                      fields_changed, unchanged_rows, applied_by, applied_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            &[
                &run.run_id,
                &run.county_id,
                &run.file_name,
                &run.file_sha256,
                &to_db_integer(run.file_bytes, "file_bytes")?,
                &to_db_integer(run.data_rows, "data_rows")?,
                &to_db_integer(run.households_created, "households_created")?,
                &to_db_integer(run.members_created, "members_created")?,
                &to_db_integer(run.fields_changed, "fields_changed")?,
                &to_db_integer(run.unchanged_rows, "unchanged_rows")?,
                &run.applied_by_user_id,
                &applied_at,
            ],
        )
        .await?;
    let mut stored = run.clone();
    stored.applied_by_name = display_name_of(client, &run.applied_by_user_id).await?;
    Ok(stored)
}

/// A stored count of a run record (written from a `u64`, so never negative unless damaged).
fn run_count(row: &tokio_postgres::Row, column: &str, what: &str) -> StoreResult<u64> {
    let value: i64 = row.try_get(column)?;
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} {value} is out of range")))
}

impl PostgresStore {
    /// The county's townships and villages and every stored household of the county, as the
    /// roster import validates and diffs against them.
    pub async fn county_roster(&self, county_id: &str) -> StoreResult<CountyRoster> {
        let connection = self.connection().await?;
        let townships = connection
            .query_cached(
                &format!(
                    "SELECT {AREA_COLUMNS} FROM areas WHERE parent_id = $1 AND level = 'township'
                      ORDER BY area_id"
                ),
                &[&county_id],
            )
            .await?;
        let villages = connection
            .query_cached(
                &format!(
                    "SELECT {AREA_COLUMNS} FROM areas
                      WHERE level = 'village' AND parent_id IN ({COUNTY_TOWNSHIPS_SQL})
                      ORDER BY area_id"
                ),
                &[&county_id],
            )
            .await?;
        let households = connection
            .query_cached(
                &format!(
                    "SELECT card, server_seq FROM households
                      WHERE township_id IN ({COUNTY_TOWNSHIPS_SQL})
                      ORDER BY household_id"
                ),
                &[&county_id],
            )
            .await?;
        let area_names = |rows: &[tokio_postgres::Row]| -> StoreResult<Vec<AreaName>> {
            rows.iter()
                .map(|row| area_from_row(row).map(area_name))
                .collect()
        };
        Ok(CountyRoster {
            townships: area_names(&townships)?,
            villages: area_names(&villages)?,
            households: households
                .iter()
                .map(|row| open_card(self.pii(), row.try_get("card")?, row.try_get("server_seq")?))
                .collect::<StoreResult<_>>()?,
        })
    }

    /// Store a roster import in one transaction (see [`crate::store::RosterStore`]).
    pub async fn apply_roster_import(&self, apply: RosterImportApply) -> StoreResult<ImportRun> {
        let apply = &apply;
        let count_at_start = apply.applied_items.load(Ordering::Relaxed);
        write_transaction!(self, |transaction| {
            restart_progress(&apply.applied_items, count_at_start);
            apply_roster_import_in(transaction, self.pii(), apply).await
        })
    }

    /// The county's applied roster imports, newest first.
    pub async fn import_runs(&self, county_id: &str, limit: u32) -> StoreResult<Vec<ImportRun>> {
        let connection = self.connection().await?;
        let rows = connection
            .query_cached(
                "SELECT run_id, county_id, file_name, file_sha256, file_bytes, data_rows,
                        households_created, members_created, fields_changed, unchanged_rows,
                        applied_by, applied_at,
                        COALESCE(users.display_name, import_runs.applied_by) AS applied_by_name
                   FROM import_runs LEFT JOIN users ON users.user_id = import_runs.applied_by
                  WHERE county_id = $1
                  ORDER BY applied_at DESC, run_id DESC LIMIT $2",
                &[&county_id, &i64::from(limit)],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let count = |column: &str| run_count(row, column, "import run count");
                Ok(ImportRun {
                    run_id: row.try_get("run_id")?,
                    county_id: row.try_get("county_id")?,
                    file_name: row.try_get("file_name")?,
                    file_sha256: row.try_get("file_sha256")?,
                    file_bytes: count("file_bytes")?,
                    data_rows: count("data_rows")?,
                    households_created: count("households_created")?,
                    members_created: count("members_created")?,
                    fields_changed: count("fields_changed")?,
                    unchanged_rows: count("unchanged_rows")?,
                    applied_by_user_id: row.try_get("applied_by")?,
                    applied_by_name: row.try_get("applied_by_name")?,
                    applied_at: from_millis(row.try_get("applied_at")?)?,
                })
            })
            .collect()
    }
}

// ----- area import (行政区划导入) -----

/// One village attribute read from its column. The schema keeps each attribute in its
/// natural type (flags BOOLEAN, years INTEGER, counts and money BIGINT); the model carries
/// them all as integers, flags as 0/1, as SQLite stores them.
fn stored_attribute(row: &tokio_postgres::Row, key: &str) -> StoreResult<Option<i64>> {
    let column_type = row
        .columns()
        .iter()
        .find(|column| column.name() == key)
        .map(|column| column.type_().clone())
        .ok_or_else(|| StoreError::Corrupt(format!("village attribute {key} is not selected")))?;
    Ok(if column_type == Type::BOOL {
        row.try_get::<_, Option<bool>>(key)?.map(i64::from)
    } else if column_type == Type::INT4 {
        row.try_get::<_, Option<i32>>(key)?.map(i64::from)
    } else {
        row.try_get::<_, Option<i64>>(key)?
    })
}

/// One village attribute as the parameter of its column's type (see [`stored_attribute`]).
/// A year beyond INTEGER is the file's value, refused as such.
fn attribute_parameter(
    attribute: Attribute,
    value: Option<i64>,
    column_type: &Type,
) -> StoreResult<Box<dyn ToSql + Sync + Send>> {
    Ok(if *column_type == Type::BOOL {
        Box::new(value.map(|number| number != 0))
    } else if *column_type == Type::INT4 {
        Box::new(
            value
                .map(i32::try_from)
                .transpose()
                .map_err(|_| StoreError::InvalidValue {
                    field: attribute.key().to_owned(),
                    message: format!("{} is out of range", value.unwrap_or_default()),
                })?,
        )
    } else {
        Box::new(value)
    })
}

/// The county (bound as `$1`), its townships and their villages, with attributes.
async fn county_areas_in(
    client: &impl GenericClient,
    county_id: &str,
) -> StoreResult<Vec<AreaEntry>> {
    let county_exists = client
        .query_opt_cached("SELECT 1 FROM areas WHERE area_id = $1", &[&county_id])
        .await?
        .is_some();
    if !county_exists {
        return Err(StoreError::NotFound(format!("county {county_id}")));
    }
    let attribute_list: Vec<String> = Attribute::ALL
        .iter()
        .map(|attribute| format!("v.{}", attribute.key()))
        .collect();
    let rows = client
        .query_cached(
            &format!(
                "SELECT a.area_id, a.name, a.level, a.parent_id, a.centre_lat, a.centre_lon,
                        a.centre_crs, {attributes}
                   FROM areas a LEFT JOIN village_attributes v ON v.area_id = a.area_id
                  WHERE a.area_id = $1
                     OR (a.level = 'township' AND a.parent_id = $1)
                     OR (a.level = 'village' AND a.parent_id IN ({COUNTY_TOWNSHIPS_SQL}))
                  ORDER BY a.area_id",
                attributes = attribute_list.join(", "),
            ),
            &[&county_id],
        )
        .await?;
    let mut areas = Vec::with_capacity(rows.len());
    for row in &rows {
        let area_id: String = row.try_get("area_id")?;
        let level_text: String = row.try_get("level")?;
        let level = AreaLevel::from_stored(&level_text).ok_or_else(|| {
            StoreError::Corrupt(format!("area {area_id}: unknown level {level_text}"))
        })?;
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
        let mut attributes = VillageAttributes::default();
        for attribute in Attribute::ALL.iter() {
            attribute.set(&mut attributes, stored_attribute(row, attribute.key())?);
        }
        areas.push(AreaEntry {
            name: row.try_get("name")?,
            parent_id: row.try_get("parent_id")?,
            area_id,
            level,
            centre,
            attributes,
        });
    }
    Ok(areas)
}

/// The stored level and name of an area, if it is stored.
async fn stored_level_and_name(
    client: &impl GenericClient,
    area_id: &str,
) -> Result<Option<(String, String)>, WriteError> {
    let statement = client
        .prepare_cached("SELECT level, name FROM areas WHERE area_id = $1")
        .await?;
    let Some(row) = client.query_opt(&statement, &[&area_id]).await? else {
        return Ok(None);
    };
    Ok(Some((row.try_get("level")?, row.try_get("name")?)))
}

/// The households of the villages `plan` renames, locked in id order before the apply
/// re-sends any of their cards (which takes scope counters). A village whose stored name is
/// not the one written here keeps its households' cards as they are, so they are not locked.
async fn lock_households_of_renamed_villages(
    client: &impl GenericClient,
    updated_areas: &[AreaEntry],
) -> Result<(), WriteError> {
    let mut renamed: Vec<&str> = Vec::new();
    for area in updated_areas {
        if area.level != AreaLevel::Village {
            continue;
        }
        if let Some((level, old_name)) = stored_level_and_name(client, &area.area_id).await?
            && level == AreaLevel::Village.as_str()
            && old_name != area.name
        {
            renamed.push(&area.area_id);
        }
    }
    if renamed.is_empty() {
        return Ok(());
    }
    client
        .query_cached(
            "SELECT household_id FROM households WHERE village_id = ANY($1)
              ORDER BY household_id FOR UPDATE",
            &[&renamed],
        )
        .await?;
    Ok(())
}

/// A renamed village's households carry its name on their cards (明白卡, the phones'
/// replicas): write the new name and log each card for pull, so phones show it too.
/// Returns how many cards were re-sent.
async fn rename_village_on_cards(
    client: &impl GenericClient,
    pii: &PiiCipher,
    village_id: &str,
    new_name: &str,
) -> Result<u64, WriteError> {
    let household_ids: Vec<String> = client
        .query_cached(
            "SELECT household_id FROM households WHERE village_id = $1
              ORDER BY household_id FOR UPDATE",
            &[&village_id],
        )
        .await?
        .iter()
        .map(|row| row.try_get("household_id"))
        .collect::<Result<_, _>>()?;
    let mut resent = 0;
    for household_id in household_ids {
        let mut card = load_household(client, pii, &household_id, true)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("household {household_id} vanished")))?;
        if card.village_name != new_name {
            card.village_name = new_name.to_owned();
            resend_household(client, pii, &mut card).await?;
            resent += 1;
        }
    }
    Ok(resent)
}

/// Write (insert or replace) a village's attribute row.
async fn write_attributes(
    client: &impl GenericClient,
    area_id: &str,
    attributes: &VillageAttributes,
    run_id: &str,
) -> Result<(), WriteError> {
    let columns: Vec<&str> = Attribute::ALL
        .iter()
        .map(|attribute| attribute.key())
        .collect();
    let placeholders: Vec<String> = (0..Attribute::ALL.len())
        .map(|index| format!("${}", index + 3))
        .collect();
    let updates: Vec<String> = columns
        .iter()
        .map(|key| format!("{key} = excluded.{key}"))
        .collect();
    let statement = client
        .prepare_cached(&format!(
            "INSERT INTO village_attributes (area_id, updated_by_run, {columns})
             VALUES ($1, $2, {placeholders})
             ON CONFLICT (area_id) DO UPDATE SET updated_by_run = excluded.updated_by_run,
                                                 {updates}",
            columns = columns.join(", "),
            placeholders = placeholders.join(", "),
            updates = updates.join(", ")
        ))
        .await?;
    // Each value goes in as its column's type, which the prepared statement reports.
    let mut values: Vec<Box<dyn ToSql + Sync + Send>> =
        vec![Box::new(area_id.to_owned()), Box::new(run_id.to_owned())];
    for (attribute, column_type) in Attribute::ALL.iter().zip(&statement.params()[2..]) {
        values.push(attribute_parameter(
            *attribute,
            attribute.get(attributes),
            column_type,
        )?);
    }
    let parameters: Vec<&(dyn ToSql + Sync)> = values
        .iter()
        .map(|value| value.as_ref() as &(dyn ToSql + Sync))
        .collect();
    client.execute(&statement, &parameters).await?;
    Ok(())
}

fn is_in_county(area: &AreaEntry, county_id: &str) -> bool {
    let prefix = county_id.get(..6).unwrap_or(county_id);
    area.area_id == county_id || area.area_id.starts_with(prefix)
}

/// Store the whole area import inside the caller's transaction (the caller commits).
async fn apply_area_import_in(
    client: &impl GenericClient,
    pii: &PiiCipher,
    apply: &AreaImportApply,
) -> Result<AreaImportRun, WriteError> {
    let plan = &apply.plan;
    let run = &apply.run;
    let bump = || apply.applied_items.fetch_add(1, Ordering::Relaxed);

    lock_county_imports(client, "area-import", &run.county_id).await?;
    lock_households_of_renamed_villages(client, &plan.updated_areas).await?;
    let insert_area = client
        .prepare_cached(
            "INSERT INTO areas (area_id, name, level, parent_id, centre_lat, centre_lon,
                                centre_crs)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .await?;
    for area in &plan.new_areas {
        if !is_in_county(area, &run.county_id) {
            return Err(StoreError::Conflict(format!(
                "区划{}不属于本县{}",
                area.area_id, run.county_id
            ))
            .into());
        }
        if stored_level_and_name(client, &area.area_id)
            .await?
            .is_some()
        {
            return Err(StoreError::Conflict(format!(
                "区划代码{}已存在（可能已被另一次导入写入），请重新预览",
                area.area_id
            ))
            .into());
        }
        if let Some(parent) = &area.parent_id
            && stored_level_and_name(client, parent).await?.is_none()
        {
            return Err(StoreError::InvalidValue {
                field: "parent_id".into(),
                message: format!("区划{}的上级{parent}不存在", area.area_id),
            }
            .into());
        }
        client
            .execute(
                &insert_area,
                &[
                    &area.area_id,
                    &area.name,
                    &area.level.as_str(),
                    &area.parent_id,
                    &area.centre.map(|centre| centre.lat),
                    &area.centre.map(|centre| centre.lon),
                    &area.centre.map(|centre| centre.crs.code()),
                ],
            )
            .await?;
        if area.level == AreaLevel::Village && Attribute::any_known(&area.attributes) {
            write_attributes(client, &area.area_id, &area.attributes, &run.run_id).await?;
        }
        bump();
    }
    let update_area = client
        .prepare_cached(
            "UPDATE areas SET name = $2, centre_lat = $3, centre_lon = $4, centre_crs = $5
              WHERE area_id = $1",
        )
        .await?;
    for area in &plan.updated_areas {
        let stored = stored_level_and_name(client, &area.area_id).await?;
        let Some((level, old_name)) = stored.filter(|(level, _)| {
            level == area.level.as_str() && is_in_county(area, &run.county_id)
        }) else {
            return Err(StoreError::Conflict(format!(
                "区划{}已不在本县或层级已变，请重新预览",
                area.area_id
            ))
            .into());
        };
        if level == AreaLevel::Village.as_str() && old_name != area.name {
            rename_village_on_cards(client, pii, &area.area_id, &area.name).await?;
        }
        client
            .execute(
                &update_area,
                &[
                    &area.area_id,
                    &area.name,
                    &area.centre.map(|centre| centre.lat),
                    &area.centre.map(|centre| centre.lon),
                    &area.centre.map(|centre| centre.crs.code()),
                ],
            )
            .await?;
        if area.level == AreaLevel::Village && Attribute::any_known(&area.attributes) {
            write_attributes(client, &area.area_id, &area.attributes, &run.run_id).await?;
        }
        bump();
    }
    client
        .execute_cached(
            "INSERT INTO area_import_runs (run_id, county_id, file_name, file_sha256,
                                           file_bytes, data_rows, areas_created, areas_changed,
                                           fields_changed, areas_renamed, areas_missing,
                                           unchanged_rows, applied_by, applied_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            &[
                &run.run_id,
                &run.county_id,
                &run.file_name,
                &run.file_sha256,
                &to_db_integer(run.file_bytes, "file_bytes")?,
                &to_db_integer(run.data_rows, "data_rows")?,
                &to_db_integer(run.areas_created, "areas_created")?,
                &to_db_integer(run.areas_changed, "areas_changed")?,
                &to_db_integer(run.fields_changed, "fields_changed")?,
                &to_db_integer(run.areas_renamed, "areas_renamed")?,
                &to_db_integer(run.areas_missing, "areas_missing")?,
                &to_db_integer(run.unchanged_rows, "unchanged_rows")?,
                &run.applied_by_user_id,
                &to_millis(run.applied_at)?,
            ],
        )
        .await?;
    let mut stored = run.clone();
    stored.applied_by_name = display_name_of(client, &run.applied_by_user_id).await?;
    Ok(stored)
}

impl PostgresStore {
    /// The county and every township and village under it, with the villages' attributes,
    /// ordered by area id. `NotFound` when the county is not stored.
    pub async fn county_areas(&self, county_id: &str) -> StoreResult<Vec<AreaEntry>> {
        let connection = self.connection().await?;
        county_areas_in(&connection, county_id).await
    }

    /// Store an area import in one transaction (see [`crate::store::AreasStore`]).
    pub async fn apply_area_import(&self, apply: AreaImportApply) -> StoreResult<AreaImportRun> {
        let apply = &apply;
        let count_at_start = apply.applied_items.load(Ordering::Relaxed);
        write_transaction!(self, |transaction| {
            restart_progress(&apply.applied_items, count_at_start);
            apply_area_import_in(transaction, self.pii(), apply).await
        })
    }

    /// The county's applied area imports, newest first.
    pub async fn area_import_runs(
        &self,
        county_id: &str,
        limit: u32,
    ) -> StoreResult<Vec<AreaImportRun>> {
        let connection = self.connection().await?;
        let rows = connection
            .query_cached(
                "SELECT run_id, county_id, file_name, file_sha256, file_bytes, data_rows,
                        areas_created, areas_changed, fields_changed, areas_renamed,
                        areas_missing, unchanged_rows, applied_by, applied_at,
                        COALESCE(users.display_name, area_import_runs.applied_by)
                            AS applied_by_name
                   FROM area_import_runs
                   LEFT JOIN users ON users.user_id = area_import_runs.applied_by
                  WHERE county_id = $1
                  ORDER BY applied_at DESC, run_id DESC LIMIT $2",
                &[&county_id, &i64::from(limit)],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let count = |column: &str| run_count(row, column, "area import run count");
                Ok(AreaImportRun {
                    run_id: row.try_get("run_id")?,
                    county_id: row.try_get("county_id")?,
                    file_name: row.try_get("file_name")?,
                    file_sha256: row.try_get("file_sha256")?,
                    file_bytes: count("file_bytes")?,
                    data_rows: count("data_rows")?,
                    areas_created: count("areas_created")?,
                    areas_changed: count("areas_changed")?,
                    fields_changed: count("fields_changed")?,
                    areas_renamed: count("areas_renamed")?,
                    areas_missing: count("areas_missing")?,
                    unchanged_rows: count("unchanged_rows")?,
                    applied_by_user_id: row.try_get("applied_by")?,
                    applied_by_name: row.try_get("applied_by_name")?,
                    applied_at: from_millis(row.try_get("applied_at")?)?,
                })
            })
            .collect()
    }
}

/// Imports applied through two replicas at once (two stores, each with its own pool, on one
/// schema): the county's advisory lock makes the second see the first's rows, so a 户编号
/// or 区划代码 is stored once and the loser is refused as SQLite refuses a stale preview.
/// Skipped (with a line saying so) where `FIELDSYNC_TEST_DATABASE_URL` is unset.
#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;

    use fieldsync_model::areas::{AreaEntry, AreaImportPlan, AreaLevel, VillageAttributes};
    use fieldsync_model::codes::Role;
    use fieldsync_model::hlc::Hlc;
    use fieldsync_model::household::Household;
    use fieldsync_model::register::Stamp;
    use fieldsync_model::roster::ImportPlan;

    use super::super::testing::{fresh_schema, test_server_url};
    use super::super::{PoolSettings, PostgresStore};
    use crate::store::areas::{AreaImportApply, AreaImportRun};
    use crate::store::conformance::{
        self, COUNTY, TOWNSHIP_TWO, VILLAGE_TWO_A, VISIT_TIME, household, new_id, user,
    };
    use crate::store::roster::{ImportRun, RosterImportApply};
    use crate::store::sealed::PiiCipher;
    use crate::store::{Area, SeedData, StoreError, StoreResult, UserRecord};

    /// Two replicas on one fresh schema, and the configuration they connect with (its
    /// application name is unique to the test, so the test can find its replicas'
    /// backends among those of tests running beside it).
    async fn two_replicas(
        test_name: &str,
    ) -> Option<(tokio_postgres::Config, PostgresStore, PostgresStore)> {
        let server_url = test_server_url(test_name)?;
        let (mut config, _schema) = fresh_schema(&server_url).await;
        config.application_name(format!("imports-{}", new_id()));
        let replica = || async {
            PostgresStore::connect_with_config(
                config.clone(),
                PiiCipher::for_tests(),
                PoolSettings::default(),
            )
            .await
            .expect("connect a replica")
        };
        let replicas = (replica().await, replica().await);
        Some((config, replicas.0, replicas.1))
    }

    /// A new household of township two with 户编号 `number` and its own head ID number.
    fn new_household(head_name: &str, number: &str, first_17_digits: &str) -> Household {
        let mut card = household(head_name, TOWNSHIP_TWO, VILLAGE_TWO_A, 30.815);
        card.national_household_number = number.into();
        let check =
            fieldsync_model::id_number::check_character(first_17_digits).expect("17 digits");
        card.members[0].id_number = format!("{first_17_digits}{check}");
        card
    }

    fn roster_apply(admin: &UserRecord, new_household: Household) -> RosterImportApply {
        RosterImportApply {
            run: ImportRun {
                run_id: new_id(),
                county_id: COUNTY.into(),
                file_name: "花名册.xlsx".into(),
                file_sha256: "ef".repeat(32),
                file_bytes: 2048,
                data_rows: 1,
                households_created: 1,
                members_created: new_household.members.len() as u64,
                fields_changed: 0,
                unchanged_rows: 0,
                applied_by_user_id: admin.user_id.clone(),
                applied_by_name: String::new(),
                applied_at: VISIT_TIME,
            },
            plan: ImportPlan {
                new_households: vec![new_household],
                ..ImportPlan::default()
            },
            stamp: Stamp {
                hlc: Hlc::from_parts(5_000, 0),
                device_id: "roster-import".into(),
            },
            applied_items: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Exactly one of two outcomes is a success and the other a `Conflict`.
    fn one_won_one_refused<T: std::fmt::Debug>(first: &StoreResult<T>, second: &StoreResult<T>) {
        let refused = |outcome: &StoreResult<T>| matches!(outcome, Err(StoreError::Conflict(_)));
        assert!(
            (first.is_ok() && refused(second)) || (refused(first) && second.is_ok()),
            "{first:?} / {second:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_replicas_importing_one_household_number_at_once_store_it_once() {
        let Some((config, replica_a, replica_b)) =
            two_replicas("two_replicas_importing_one_household_number_at_once_store_it_once").await
        else {
            return;
        };
        let fixture = conformance::fixture();
        replica_a
            .load_seed(fixture.seed.clone())
            .await
            .expect("seed through replica A");
        // The same 户编号 in two files, with different new household ids and ID numbers, so
        // only the 户编号 check can tell them apart.
        let number = "4212230020010123";
        let through_a = roster_apply(
            &fixture.admin,
            new_household("孙家旺", number, "42122319600101003"),
        );
        let through_b = roster_apply(
            &fixture.admin,
            new_household("孙家兴", number, "42122319600101004"),
        );
        // Township two's change-log counter, held by a third party, stops each import where
        // its change-log entries are numbered, just before its commit and after it has read
        // the stored 户编号 (or, when another import holds the county's lock, before). Released once both imports wait, it lets
        // them finish: without the county lock both would have read the county before
        // either inserted, and both households would be stored.
        let (blocker, connection) = config
            .connect(tokio_postgres::NoTls)
            .await
            .expect("connect the blocker");
        tokio::spawn(connection);
        blocker.batch_execute("BEGIN").await.expect("begin");
        let held = blocker
            .execute(
                "SELECT 1 FROM scope_counters WHERE scope_id = $1 FOR UPDATE",
                &[&TOWNSHIP_TWO],
            )
            .await
            .expect("hold the counter");
        assert_eq!(held, 1, "the seed logged township two");
        let import_a = tokio::spawn({
            let replica_a = replica_a.clone();
            async move { replica_a.apply_roster_import(through_a).await }
        });
        let import_b = tokio::spawn({
            let replica_b = replica_b.clone();
            async move { replica_b.apply_roster_import(through_b).await }
        });
        let application_name = config.get_application_name().expect("set above").to_owned();
        let mut polls = 0_u32;
        loop {
            let waiting: i64 = blocker
                .query_one(
                    "SELECT COUNT(*) FROM pg_stat_activity
                      WHERE application_name = $1 AND wait_event_type = 'Lock'",
                    &[&application_name],
                )
                .await
                .expect("waiting backends")
                .get(0);
            if waiting == 2 {
                break;
            }
            polls += 1;
            assert!(polls < 1_000_000, "the imports never both waited");
            tokio::task::yield_now().await;
        }
        blocker.batch_execute("ROLLBACK").await.expect("release");
        let outcome_a = import_a.await.expect("import through A");
        let outcome_b = import_b.await.expect("import through B");
        one_won_one_refused(&outcome_a, &outcome_b);

        let roster = replica_b.county_roster(COUNTY).await.expect("roster");
        let holders = roster
            .households
            .iter()
            .filter(|card| card.national_household_number == number)
            .count();
        assert_eq!(holders, 1);
        assert_eq!(
            replica_a.import_runs(COUNTY, 10).await.expect("runs").len(),
            1,
            "the refused import left no run"
        );
    }

    const COUNTY_CODE: &str = "522731000000";

    fn area_apply(admin: &UserRecord) -> AreaImportApply {
        let township = AreaEntry {
            area_id: "522731102000".into(),
            name: "河东乡".into(),
            level: AreaLevel::Township,
            parent_id: Some(COUNTY_CODE.into()),
            centre: None,
            attributes: VillageAttributes::default(),
        };
        AreaImportApply {
            run: AreaImportRun {
                run_id: new_id(),
                county_id: COUNTY_CODE.into(),
                file_name: "行政区划.xlsx".into(),
                file_sha256: "12".repeat(32),
                file_bytes: 512,
                data_rows: 1,
                areas_created: 1,
                areas_changed: 0,
                fields_changed: 0,
                areas_renamed: 0,
                areas_missing: 0,
                unchanged_rows: 0,
                applied_by_user_id: admin.user_id.clone(),
                applied_by_name: String::new(),
                applied_at: VISIT_TIME,
            },
            plan: AreaImportPlan {
                new_areas: vec![township],
                ..AreaImportPlan::default()
            },
            applied_items: Arc::new(AtomicU64::new(0)),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_replicas_importing_one_new_area_at_once_store_it_once() {
        let Some((_config, replica_a, replica_b)) =
            two_replicas("two_replicas_importing_one_new_area_at_once_store_it_once").await
        else {
            return;
        };
        let admin = user("areas-admin", "区划管理员", Role::County, COUNTY_CODE);
        replica_a
            .load_seed(SeedData {
                areas: vec![Area {
                    area_id: COUNTY_CODE.into(),
                    name: "示范县".into(),
                    level: "county".into(),
                    parent_id: None,
                    centre: None,
                }],
                users: vec![admin.clone()],
                ..SeedData::default()
            })
            .await
            .expect("seed through replica A");
        let (outcome_a, outcome_b) = tokio::join!(
            replica_a.apply_area_import(area_apply(&admin)),
            replica_b.apply_area_import(area_apply(&admin))
        );
        one_won_one_refused(&outcome_a, &outcome_b);

        let areas = replica_b.county_areas(COUNTY_CODE).await.expect("areas");
        let ids: Vec<&str> = areas.iter().map(|area| area.area_id.as_str()).collect();
        assert_eq!(ids, [COUNTY_CODE, "522731102000"]);
        assert_eq!(
            replica_a
                .area_import_runs(COUNTY_CODE, 10)
                .await
                .expect("runs")
                .len(),
            1
        );
    }
}
