//! SQLite side of the roster import (建档立卡花名册导入): the county snapshot the import
//! validates against, the one-transaction apply, and the `import_runs` audit table.
//!
//! The apply reuses the store's own writers, so an import is indistinguishable from other
//! changes to a phone: new households are logged like seeded ones, added members like an
//! `AddMember` push, and changed fields go through [`write_register`] (merge, conflict
//! records, change log) exactly like a console resolution.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use fieldsync_model::register::{FieldTarget, current};
use fieldsync_model::roster::{AreaName, CountyRoster};
use fieldsync_model::sync::MutationOutcome;
use rusqlite::{Connection, Transaction, params};

use crate::store::roster::{ImportRun, RosterImportApply, RosterStore};
use crate::store::sqlite::sealing::households_holding_id_number;
use crate::store::sqlite::{
    AREA_COLUMNS, SqliteStore, add_member, county_townships_sql, decode_household, display_name_of,
    from_millis, from_sql_unsigned, insert_household, load_household, query_areas,
    register_history_in, to_millis, to_sql_integer, write_register,
};
use crate::store::{Area, StoreError, StoreResult};

fn area_name(area: Area) -> AreaName {
    AreaName {
        area_id: area.area_id,
        name: area.name,
        parent_id: area.parent_id,
    }
}

/// The county's townships, villages and households.
pub(in crate::store) fn county_roster(
    connection: &Connection,
    county_id: &str,
) -> StoreResult<CountyRoster> {
    let townships = query_areas(
        connection,
        &format!(
            "SELECT {AREA_COLUMNS} FROM areas WHERE parent_id = ?1 AND level = 'township'
             ORDER BY area_id"
        ),
        params![county_id],
    )?;
    let villages = query_areas(
        connection,
        &format!(
            "SELECT {AREA_COLUMNS} FROM areas
             WHERE level = 'village' AND parent_id IN ({townships})
             ORDER BY area_id",
            townships = county_townships_sql!()
        ),
        params![county_id],
    )?;
    let mut statement = connection.prepare(concat!(
        "SELECT pii_open_card(card) AS card, server_seq FROM households WHERE township_id IN (",
        county_townships_sql!(),
        ") ORDER BY household_id"
    ))?;
    let rows = statement.query_map(params![county_id], |row| {
        Ok((
            row.get::<_, String>("card")?,
            row.get::<_, i64>("server_seq")?,
        ))
    })?;
    let mut households = Vec::new();
    for row in rows {
        let (card, server_seq) = row?;
        households.push(decode_household(&card, server_seq)?);
    }
    Ok(CountyRoster {
        townships: townships.into_iter().map(area_name).collect(),
        villages: villages.into_iter().map(area_name).collect(),
        households,
    })
}

/// National household numbers already stored in the county's townships.
fn stored_household_numbers(
    transaction: &Transaction<'_>,
    county_id: &str,
) -> StoreResult<HashSet<String>> {
    let mut statement = transaction.prepare(concat!(
        "SELECT json_extract(card, '$.national_household_number') AS national_household_number
         FROM households
         WHERE township_id IN (",
        county_townships_sql!(),
        ")"
    ))?;
    let numbers = statement
        .query_map(params![county_id], |row| {
            row.get::<_, Option<String>>("national_household_number")
        })?
        .filter_map(|number| number.transpose())
        .collect::<Result<HashSet<String>, _>>()?;
    Ok(numbers)
}

/// The apply-time duplicate check (the dry run checks the county in the model): an ID
/// number already held by a current member of another household anywhere on the server is
/// refused. ID numbers are sealed at rest, so the look-up goes through the blind index.
/// The message carries the masked number only.
fn refuse_id_number_held_elsewhere(
    transaction: &Transaction<'_>,
    id_number: &str,
    household_id: &str,
) -> StoreResult<()> {
    if id_number.is_empty() {
        return Ok(());
    }
    let holders = households_holding_id_number(transaction, id_number, household_id)?;
    match holders.first() {
        None => Ok(()),
        Some(holder) => Err(StoreError::Conflict(format!(
            "证件号码{}已登记在另一户（{holder}）中，请重新预览",
            fieldsync_model::id_number::mask(id_number)
        ))),
    }
}

/// Store the whole import, or nothing.
pub(in crate::store) fn apply_roster_import(
    transaction: &Transaction<'_>,
    apply: &RosterImportApply,
) -> StoreResult<ImportRun> {
    let plan = &apply.plan;
    let county_id = &apply.run.county_id;
    let bump = || apply.applied_items.fetch_add(1, Ordering::Relaxed);

    let mut numbers = stored_household_numbers(transaction, county_id)?;
    for household in &plan.new_households {
        if !numbers.insert(household.national_household_number.clone()) {
            return Err(StoreError::Conflict(format!(
                "户编号{}已存在（可能已被另一次导入写入），请重新预览",
                household.national_household_number
            )));
        }
        for member in household.current_members() {
            refuse_id_number_held_elsewhere(
                transaction,
                &member.id_number,
                &household.household_id,
            )?;
        }
        insert_household(transaction, household)?;
        bump();
    }

    let applied_at = to_millis(apply.run.applied_at)?;
    // Field changes grouped per household, so each card is loaded once and every write
    // builds on the previous one.
    let mut changes = plan.field_changes.iter().peekable();
    while let Some(first) = changes.next() {
        let mut card = load_household(transaction, &first.household_id)?.ok_or_else(|| {
            StoreError::NotFound(format!("household {} is gone", first.household_id))
        })?;
        let mut household_changes = vec![first];
        while let Some(next) = changes.next_if(|next| next.household_id == first.household_id) {
            household_changes.push(next);
        }
        for change in household_changes {
            let mut stamp = apply.stamp.clone();
            let history = register_history_in(
                transaction,
                &card.household_id,
                &change.target.as_key(),
                &change.field,
            )?;
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
                refuse_id_number_held_elsewhere(transaction, id_number, &card.household_id)?;
            }
            if let FieldTarget::Member(member_id) = &change.target
                && !card
                    .members
                    .iter()
                    .any(|member| &member.member_id == member_id)
            {
                return Err(StoreError::NotFound(format!("member {member_id} is gone")));
            }
            write_register(
                transaction,
                &mut card,
                &change.target,
                &change.field,
                &change.new_value,
                stamp,
                &apply.run.applied_by_user_id,
                change.base_seq,
                applied_at,
            )?;
            bump();
        }
    }

    for new_member in &plan.new_members {
        refuse_id_number_held_elsewhere(
            transaction,
            &new_member.member.id_number,
            &new_member.household_id,
        )?;
        match add_member(transaction, &new_member.household_id, &new_member.member)? {
            MutationOutcome::Applied => {}
            MutationOutcome::Rejected { message, .. } => {
                return Err(StoreError::InvalidValue {
                    field: "member".into(),
                    message,
                });
            }
            other => {
                return Err(StoreError::Conflict(format!(
                    "member {} was not added: {other:?}",
                    new_member.member.member_id
                )));
            }
        }
        bump();
    }

    let run = &apply.run;
    transaction.execute(
        "INSERT INTO import_runs (run_id, county_id, file_name, file_sha256, file_bytes,
                                  data_rows, households_created, members_created,
                                  fields_changed, unchanged_rows, applied_by, applied_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            run.run_id,
            run.county_id,
            run.file_name,
            run.file_sha256,
            to_sql_integer(run.file_bytes, "file_bytes")?,
            to_sql_integer(run.data_rows, "data_rows")?,
            to_sql_integer(run.households_created, "households_created")?,
            to_sql_integer(run.members_created, "members_created")?,
            to_sql_integer(run.fields_changed, "fields_changed")?,
            to_sql_integer(run.unchanged_rows, "unchanged_rows")?,
            run.applied_by_user_id,
            applied_at
        ],
    )?;
    let mut stored = run.clone();
    stored.applied_by_name = display_name_of(transaction, &run.applied_by_user_id)?;
    Ok(stored)
}

/// The county's applied imports, newest first.
pub(in crate::store) fn import_runs(
    connection: &Connection,
    county_id: &str,
    limit: u32,
) -> StoreResult<Vec<ImportRun>> {
    let mut statement = connection.prepare(
        "SELECT run_id, county_id, file_name, file_sha256, file_bytes, data_rows,
                households_created, members_created, fields_changed, unchanged_rows,
                applied_by, applied_at,
                COALESCE(users.display_name, import_runs.applied_by) AS applied_by_name
         FROM import_runs LEFT JOIN users ON users.user_id = import_runs.applied_by
         WHERE county_id = ?1
         ORDER BY applied_at DESC, run_id DESC LIMIT ?2",
    )?;
    let rows = statement.query_map(params![county_id, limit], |row| {
        Ok((
            (
                row.get::<_, String>("run_id")?,
                row.get::<_, String>("county_id")?,
                row.get::<_, String>("file_name")?,
                row.get::<_, String>("file_sha256")?,
            ),
            [
                row.get::<_, i64>("file_bytes")?,
                row.get::<_, i64>("data_rows")?,
                row.get::<_, i64>("households_created")?,
                row.get::<_, i64>("members_created")?,
                row.get::<_, i64>("fields_changed")?,
                row.get::<_, i64>("unchanged_rows")?,
            ],
            row.get::<_, String>("applied_by")?,
            (
                row.get::<_, i64>("applied_at")?,
                row.get::<_, String>("applied_by_name")?,
            ),
        ))
    })?;
    let mut runs = Vec::new();
    for row in rows {
        let ((run_id, county_id, file_name, file_sha256), counts, applied_by, (applied_at, name)) =
            row?;
        let [
            file_bytes,
            data_rows,
            households,
            members,
            fields,
            unchanged,
        ] = counts.map(|count| from_sql_unsigned::<u64>(count, "import run count"));
        let (file_bytes, data_rows, households, members, fields, unchanged) = (
            file_bytes?,
            data_rows?,
            households?,
            members?,
            fields?,
            unchanged?,
        );
        runs.push(ImportRun {
            run_id,
            county_id,
            file_name,
            file_sha256,
            file_bytes,
            data_rows,
            households_created: households,
            members_created: members,
            fields_changed: fields,
            unchanged_rows: unchanged,
            applied_by_user_id: applied_by,
            applied_by_name: name,
            applied_at: from_millis(applied_at)?,
        });
    }
    Ok(runs)
}

#[async_trait::async_trait]
impl RosterStore for SqliteStore {
    async fn county_roster(&self, county_id: &str) -> StoreResult<CountyRoster> {
        let county_id = county_id.to_owned();
        self.read(move |connection| county_roster(connection, &county_id))
            .await
    }

    async fn apply_roster_import(&self, apply: RosterImportApply) -> StoreResult<ImportRun> {
        self.write(move |transaction| apply_roster_import(transaction, &apply))
            .await
    }

    async fn import_runs(&self, county_id: &str, limit: u32) -> StoreResult<Vec<ImportRun>> {
        let county_id = county_id.to_owned();
        self.read(move |connection| import_runs(connection, &county_id, limit))
            .await
    }
}
