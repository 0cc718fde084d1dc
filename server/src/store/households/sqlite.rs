//! SQLite side of the household page, the 明白卡, quarterly income (季登记) and the
//! 两不愁三保障 checklist: threshold rows (标准线, migration 0009), income registrations by
//! area and year, the latest visit check per household, and one household's dossier.
//!
//! An area is either a township (households whose `township_id` is the area) or a county
//! (households of every township whose parent is the area); [`AREA_HOUSEHOLDS`] is that one
//! rule, so every query here scopes the same way.

use std::collections::HashMap;

use fieldsync_model::CodeList;
use fieldsync_model::codes::CadreRank;
use fieldsync_model::household::Household;
use fieldsync_model::income::{IncomeRegistration, IncomeThreshold};
use fieldsync_model::visit::Visit;
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::store::households::{
    HouseholdDossier, HouseholdVisit, HouseholdsStore, LatestWellbeingCheck, PairedCadre,
};
use crate::store::sqlite::{
    SqliteStore, corrupt, county_townships_sql, decode_household, decode_json, encode_json,
    household_exists, load_household, parse_state, resend_household,
};
use crate::store::{StoreError, StoreResult};

/// `household_id`s of the area bound as `?1`: a township's, or a county's townships'.
const AREA_HOUSEHOLDS: &str = concat!(
    "SELECT household_id FROM households WHERE township_id = ?1 OR township_id IN (",
    county_townships_sql!(),
    ")"
);

pub(in crate::store) fn income_thresholds(
    connection: &Connection,
) -> StoreResult<Vec<IncomeThreshold>> {
    let mut statement = connection.prepare(
        "SELECT year, region, poverty_line_yuan, monitoring_line_yuan, source_note
         FROM income_thresholds ORDER BY year, region",
    )?;
    let rows = statement.query_map([], |row| {
        Ok(IncomeThreshold {
            year: row.get("year")?,
            region: row.get("region")?,
            poverty_line_yuan: row.get("poverty_line_yuan")?,
            monitoring_line_yuan: row.get("monitoring_line_yuan")?,
            source_note: row.get("source_note")?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

pub(in crate::store) fn set_income_threshold(
    transaction: &Transaction<'_>,
    threshold: &IncomeThreshold,
) -> StoreResult<()> {
    transaction.execute(
        "INSERT INTO income_thresholds
             (year, region, poverty_line_yuan, monitoring_line_yuan, source_note)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (year, region) DO UPDATE SET
             poverty_line_yuan = excluded.poverty_line_yuan,
             monitoring_line_yuan = excluded.monitoring_line_yuan,
             source_note = excluded.source_note",
        params![
            threshold.year,
            threshold.region,
            threshold.poverty_line_yuan,
            threshold.monitoring_line_yuan,
            threshold.source_note
        ],
    )?;
    Ok(())
}

pub(in crate::store) fn save_income_registrations(
    transaction: &Transaction<'_>,
    registrations: &[IncomeRegistration],
) -> StoreResult<()> {
    for registration in registrations {
        let stored: Option<String> = transaction
            .query_row(
                "SELECT body FROM income_registrations WHERE registration_id = ?1",
                params![registration.registration_id],
                |row| row.get("body"),
            )
            .optional()?;
        if let Some(body) = stored {
            let stored: IncomeRegistration = decode_json(&body, "income registration")?;
            if &stored == registration {
                continue;
            }
            return Err(StoreError::Conflict(format!(
                "income registration {} already stored with other content",
                registration.registration_id
            )));
        }
        if !household_exists(transaction, &registration.household_id)? {
            return Err(StoreError::NotFound(format!(
                "household {}",
                registration.household_id
            )));
        }
        insert_income_registration(transaction, registration)?;
    }
    Ok(())
}

/// Store one registration of a known household, and log a change of the household so every
/// phone in scope pulls it again with its registrations (a second device, or the second
/// helper's phone, then sees that the quarter is registered before registering it again).
pub(in crate::store) fn insert_income_registration(
    transaction: &Transaction<'_>,
    registration: &IncomeRegistration,
) -> StoreResult<()> {
    transaction.execute(
        "INSERT INTO income_registrations (registration_id, household_id, year, quarter, body)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            registration.registration_id,
            registration.household_id,
            registration.year,
            registration.quarter,
            encode_json(registration)?
        ],
    )?;
    let Some(mut card) = load_household(transaction, &registration.household_id)? else {
        return Err(StoreError::NotFound(format!(
            "household {}",
            registration.household_id
        )));
    };
    resend_household(transaction, &mut card)
}

/// A household's registrations in arrival order (rowid, the insertion order of the table:
/// the order that decides which registration of a quarter is in force).
pub(in crate::store) fn household_income_registrations(
    connection: &Connection,
    household_id: &str,
) -> StoreResult<Vec<IncomeRegistration>> {
    let mut statement = connection
        .prepare("SELECT body FROM income_registrations WHERE household_id = ?1 ORDER BY rowid")?;
    let rows = statement.query_map(params![household_id], |row| row.get::<_, String>("body"))?;
    let mut registrations = Vec::new();
    for body in rows {
        registrations.push(decode_json(&body?, "income registration")?);
    }
    Ok(registrations)
}

/// The registrations of several households in one query (a pull page's), each household's
/// in arrival order (rowid, as in [`household_income_registrations`]). Households without
/// registrations are absent from the map.
pub(in crate::store) fn income_registrations_of(
    connection: &Connection,
    household_ids: &[&str],
) -> StoreResult<HashMap<String, Vec<IncomeRegistration>>> {
    let mut by_household: HashMap<String, Vec<IncomeRegistration>> = HashMap::new();
    if household_ids.is_empty() {
        return Ok(by_household);
    }
    // The ids travel as one JSON array, so the statement text (and its cached plan) is the
    // same for every page size.
    let ids = serde_json::to_string(household_ids)
        .map_err(|error| corrupt(format!("household ids as JSON: {error}")))?;
    let mut statement = connection.prepare_cached(
        "SELECT household_id, body FROM income_registrations
         WHERE household_id IN (SELECT value FROM json_each(?1))
         ORDER BY household_id, rowid",
    )?;
    let rows = statement.query_map(params![ids], |row| {
        Ok((
            row.get::<_, String>("household_id")?,
            row.get::<_, String>("body")?,
        ))
    })?;
    for row in rows {
        let (household_id, body) = row?;
        by_household
            .entry(household_id)
            .or_default()
            .push(decode_json(&body, "income registration")?);
    }
    Ok(by_household)
}

pub(in crate::store) fn households_in_area(
    connection: &Connection,
    area_id: &str,
) -> StoreResult<Vec<Household>> {
    let mut statement = connection.prepare(&format!(
        "SELECT pii_open_card(card) AS card, server_seq FROM households
         WHERE household_id IN ({AREA_HOUSEHOLDS})
         ORDER BY village_id, head_name, household_id"
    ))?;
    let rows = statement.query_map(params![area_id], |row| {
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
    Ok(households)
}

pub(in crate::store) fn area_income_registrations(
    connection: &Connection,
    area_id: &str,
    year: i32,
) -> StoreResult<Vec<IncomeRegistration>> {
    // rowid is the insertion order of the table: the arrival order that decides which
    // registration of a quarter is in force.
    let mut statement = connection.prepare(&format!(
        "SELECT body FROM income_registrations
         WHERE year = ?2 AND household_id IN ({AREA_HOUSEHOLDS})
         ORDER BY rowid"
    ))?;
    let rows = statement.query_map(params![area_id, year], |row| row.get::<_, String>("body"))?;
    let mut registrations = Vec::new();
    for body in rows {
        registrations.push(decode_json(&body?, "income registration")?);
    }
    Ok(registrations)
}

pub(in crate::store) fn latest_wellbeing_checks(
    connection: &Connection,
    area_id: &str,
) -> StoreResult<Vec<LatestWellbeingCheck>> {
    // Narrow in SQL to each household's latest business month (on latest revisions only),
    // then pick the latest check-in among those few visits here: the check-in time lives in
    // the JSON body, and parsing every visit of a year would be the slow path.
    // The windows carry only keys; the (large) bodies are fetched for the survivors through
    // the primary key.
    let mut statement = connection.prepare(&format!(
        "SELECT v.household_id, v.visit_id, v.body
         FROM visits v
         JOIN (
             SELECT visit_id, revision FROM (
                 SELECT visit_id, revision, business_month,
                        MAX(business_month) OVER (PARTITION BY household_id) AS newest_month
                 FROM (
                     SELECT visit_id, revision, business_month, household_id,
                            MAX(revision) OVER (PARTITION BY visit_id) AS newest_revision
                     FROM visits
                     WHERE household_id IN ({AREA_HOUSEHOLDS})
                 )
                 WHERE revision = newest_revision
             )
             WHERE business_month = newest_month
         ) latest ON latest.visit_id = v.visit_id AND latest.revision = v.revision"
    ))?;
    let rows = statement.query_map(params![area_id], |row| {
        Ok((
            row.get::<_, String>("household_id")?,
            row.get::<_, String>("visit_id")?,
            row.get::<_, String>("body")?,
        ))
    })?;
    let mut latest: HashMap<String, LatestWellbeingCheck> = HashMap::new();
    for row in rows {
        let (household_id, visit_id, body) = row?;
        let visit: Visit = decode_json(&body, "visit")?;
        let candidate = LatestWellbeingCheck {
            household_id: household_id.clone(),
            visit_id,
            checkin_at: visit.checkin_at,
            check: visit.wellbeing,
        };
        match latest.get(&household_id) {
            Some(current)
                if (current.checkin_at, &current.visit_id)
                    >= (candidate.checkin_at, &candidate.visit_id) => {}
            _ => {
                latest.insert(household_id, candidate);
            }
        }
    }
    let mut checks: Vec<LatestWellbeingCheck> = latest.into_values().collect();
    checks.sort_by(|a, b| a.household_id.cmp(&b.household_id));
    Ok(checks)
}

pub(in crate::store) fn household_dossier(
    connection: &Connection,
    household_id: &str,
) -> StoreResult<Option<HouseholdDossier>> {
    let Some(household) = load_household(connection, household_id)? else {
        return Ok(None);
    };

    let mut statement = connection.prepare(
        "SELECT u.user_id, u.display_name,
                pii_open(u.phone, 'users.phone/' || u.user_id) AS phone, u.rank, p.is_primary
         FROM pairings p JOIN users u ON u.user_id = p.cadre_user_id
         WHERE p.household_id = ?1 AND p.active = 1
         ORDER BY p.is_primary DESC, u.display_name, u.user_id",
    )?;
    let rows = statement.query_map(params![household_id], |row| {
        Ok((
            row.get::<_, String>("user_id")?,
            row.get::<_, String>("display_name")?,
            row.get::<_, String>("phone")?,
            row.get::<_, Option<i32>>("rank")?,
            row.get::<_, bool>("is_primary")?,
        ))
    })?;
    let mut cadres = Vec::new();
    for row in rows {
        let (user_id, display_name, phone, rank, is_primary) = row?;
        let rank = rank
            .map(|code| {
                CadreRank::from_code(code)
                    .ok_or_else(|| corrupt(format!("user {user_id}: unknown rank {code}")))
            })
            .transpose()?;
        cadres.push(PairedCadre {
            user_id,
            display_name,
            phone,
            rank,
            is_primary,
        });
    }

    let registrations = household_income_registrations(connection, household_id)?;

    let mut statement = connection.prepare(
        "SELECT v.body, v.state, COALESCE(u.display_name, '') AS author_name
         FROM visits v LEFT JOIN users u ON u.user_id = v.author_user_id
         WHERE v.household_id = ?1
           AND v.revision = (SELECT MAX(w.revision) FROM visits w WHERE w.visit_id = v.visit_id)",
    )?;
    let rows = statement.query_map(params![household_id], |row| {
        Ok((
            row.get::<_, String>("body")?,
            row.get::<_, String>("state")?,
            row.get::<_, String>("author_name")?,
        ))
    })?;
    let mut visits = Vec::new();
    for row in rows {
        let (body, state, cadre_name) = row?;
        visits.push(HouseholdVisit {
            visit: decode_json(&body, "visit")?,
            state: parse_state(&state)?,
            cadre_name,
        });
    }
    visits.sort_by(|a, b| {
        (b.visit.checkin_at, &b.visit.visit_id).cmp(&(a.visit.checkin_at, &a.visit.visit_id))
    });

    let open_conflicts: i64 = connection.query_row(
        "SELECT COUNT(*) AS open_conflicts FROM conflicts
         WHERE household_id = ?1 AND resolved_at IS NULL",
        params![household_id],
        |row| row.get("open_conflicts"),
    )?;

    Ok(Some(HouseholdDossier {
        household,
        cadres,
        registrations,
        visits,
        open_conflicts: u32::try_from(open_conflicts).unwrap_or(u32::MAX),
    }))
}

#[async_trait::async_trait]
impl HouseholdsStore for SqliteStore {
    async fn income_registrations(
        &self,
        household_id: &str,
    ) -> StoreResult<Vec<IncomeRegistration>> {
        let household_id = household_id.to_owned();
        self.read(move |connection| {
            let mut statement = connection.prepare(
                "SELECT body FROM income_registrations WHERE household_id = ?1
                 ORDER BY year DESC, quarter DESC, registration_id DESC",
            )?;
            let rows =
                statement.query_map(params![household_id], |row| row.get::<_, String>("body"))?;
            let mut registrations = Vec::new();
            for body in rows {
                registrations.push(decode_json(&body?, "income registration")?);
            }
            Ok(registrations)
        })
        .await
    }

    async fn income_thresholds(&self) -> StoreResult<Vec<IncomeThreshold>> {
        self.read(income_thresholds).await
    }

    async fn set_income_threshold(&self, threshold: IncomeThreshold) -> StoreResult<()> {
        self.write(move |transaction| set_income_threshold(transaction, &threshold))
            .await
    }

    async fn save_income_registrations(
        &self,
        registrations: Vec<IncomeRegistration>,
    ) -> StoreResult<()> {
        self.write(move |transaction| save_income_registrations(transaction, &registrations))
            .await
    }

    async fn households_in_area(&self, area_id: &str) -> StoreResult<Vec<Household>> {
        let area_id = area_id.to_owned();
        self.read(move |connection| households_in_area(connection, &area_id))
            .await
    }

    async fn area_income_registrations(
        &self,
        area_id: &str,
        year: i32,
    ) -> StoreResult<Vec<IncomeRegistration>> {
        let area_id = area_id.to_owned();
        self.read(move |connection| area_income_registrations(connection, &area_id, year))
            .await
    }

    async fn latest_wellbeing_checks(
        &self,
        area_id: &str,
    ) -> StoreResult<Vec<LatestWellbeingCheck>> {
        let area_id = area_id.to_owned();
        self.read(move |connection| latest_wellbeing_checks(connection, &area_id))
            .await
    }

    async fn household_dossier(&self, household_id: &str) -> StoreResult<Option<HouseholdDossier>> {
        let household_id = household_id.to_owned();
        self.read(move |connection| household_dossier(connection, &household_id))
            .await
    }

    async fn get_household(&self, household_id: &str) -> StoreResult<Option<Household>> {
        let household_id = household_id.to_owned();
        self.read(move |connection| load_household(connection, &household_id))
            .await
    }
}
