//! Households, their income (季度收入登记, thresholds) and wellbeing checks on PostgreSQL:
//! the same reads and writes as SQLite's households area. Registrations are ordered by
//! arrival (the `arrival` identity column stands in for SQLite's rowid), the order that
//! decides which registration of a quarter is in force.

use super::PreparedOnce;
use std::collections::HashMap;

use deadpool_postgres::GenericClient;
use fieldsync_model::household::Household;
use fieldsync_model::income::{IncomeRegistration, IncomeThreshold};
use fieldsync_model::visit::Visit;

use super::basics::parse_rank;
use super::households::{load_household, open_card};
use super::push::resend_household;
use super::{PostgresStore, decode_json, encode_json, parse_state, user_phone_context};
use crate::store::{
    HouseholdDossier, HouseholdVisit, LatestWellbeingCheck, PairedCadre, StoreError, StoreResult,
};

/// The households of area `$1`: a township's, or a county's (through its townships).
const AREA_HOUSEHOLDS: &str = "SELECT household_id FROM households
     WHERE township_id = $1
        OR township_id IN (SELECT area_id FROM areas WHERE parent_id = $1 AND level = 'township')";

/// Registrations from rows whose first column is the JSON body.
fn registrations_from(rows: &[tokio_postgres::Row]) -> StoreResult<Vec<IncomeRegistration>> {
    rows.iter()
        .map(|row| decode_json(row.try_get("body")?, "income registration"))
        .collect()
}

async fn household_income_registrations(
    client: &impl GenericClient,
    household_id: &str,
) -> StoreResult<Vec<IncomeRegistration>> {
    let rows = client
        .query_cached(
            "SELECT body FROM income_registrations WHERE household_id = $1 ORDER BY arrival",
            &[&household_id],
        )
        .await?;
    registrations_from(&rows)
}

impl PostgresStore {
    /// A household's registrations, newest quarter first.
    pub async fn income_registrations(
        &self,
        household_id: &str,
    ) -> StoreResult<Vec<IncomeRegistration>> {
        let connection = self.connection().await?;
        let rows = connection
            .query_cached(
                "SELECT body FROM income_registrations WHERE household_id = $1
                  ORDER BY year DESC, quarter DESC, registration_id DESC",
                &[&household_id],
            )
            .await?;
        registrations_from(&rows)
    }

    pub async fn income_thresholds(&self) -> StoreResult<Vec<IncomeThreshold>> {
        let connection = self.connection().await?;
        connection
            .query_cached(
                "SELECT year, region, poverty_line_yuan, monitoring_line_yuan, source_note
                   FROM income_thresholds ORDER BY year, region",
                &[],
            )
            .await?
            .iter()
            .map(|row| {
                Ok(IncomeThreshold {
                    year: row.try_get("year")?,
                    region: row.try_get("region")?,
                    poverty_line_yuan: row.try_get("poverty_line_yuan")?,
                    monitoring_line_yuan: row.try_get("monitoring_line_yuan")?,
                    source_note: row.try_get("source_note")?,
                })
            })
            .collect()
    }

    pub async fn set_income_threshold(&self, threshold: IncomeThreshold) -> StoreResult<()> {
        let connection = self.connection().await?;
        connection
            .execute_cached(
                "INSERT INTO income_thresholds
                     (year, region, poverty_line_yuan, monitoring_line_yuan, source_note)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (year, region) DO UPDATE SET
                     poverty_line_yuan = excluded.poverty_line_yuan,
                     monitoring_line_yuan = excluded.monitoring_line_yuan,
                     source_note = excluded.source_note",
                &[
                    &threshold.year,
                    &threshold.region,
                    &threshold.poverty_line_yuan,
                    &threshold.monitoring_line_yuan,
                    &threshold.source_note,
                ],
            )
            .await?;
        Ok(())
    }

    /// Store registrations from the console or an import in one transaction: the same
    /// content again is skipped, other content under a stored id is refused.
    pub async fn save_income_registrations(
        &self,
        registrations: Vec<IncomeRegistration>,
    ) -> StoreResult<()> {
        let registrations = &registrations;
        // Households in id order, as every writer locks them (push.rs).
        let mut household_ids: Vec<&str> = registrations
            .iter()
            .map(|registration| registration.household_id.as_str())
            .collect();
        household_ids.sort_unstable();
        household_ids.dedup();
        let household_ids = &household_ids;
        write_transaction!(self, |transaction| {
            transaction
                .query_cached(
                    "SELECT household_id FROM households WHERE household_id = ANY($1)
                      ORDER BY household_id FOR UPDATE",
                    &[household_ids],
                )
                .await?;
            for registration in registrations {
                let stored = transaction
                    .query_opt_cached(
                        "SELECT body FROM income_registrations WHERE registration_id = $1",
                        &[&registration.registration_id],
                    )
                    .await?;
                if let Some(stored) = stored {
                    let stored: IncomeRegistration =
                        decode_json(stored.try_get("body")?, "income registration")?;
                    if &stored == registration {
                        continue;
                    }
                    return Err(StoreError::Conflict(format!(
                        "income registration {} already stored with other content",
                        registration.registration_id
                    ))
                    .into());
                }
                let Some(mut card) =
                    load_household(transaction, self.pii(), &registration.household_id, true)
                        .await?
                else {
                    return Err(StoreError::NotFound(format!(
                        "household {}",
                        registration.household_id
                    ))
                    .into());
                };
                transaction
                    .execute_cached(
                        "INSERT INTO income_registrations (registration_id, household_id, year,
                                                           quarter, body)
                         VALUES ($1, $2, $3, $4, $5)",
                        &[
                            &registration.registration_id,
                            &registration.household_id,
                            &registration.year,
                            &i32::try_from(registration.quarter).map_err(|_| {
                                StoreError::InvalidValue {
                                    field: "quarter".into(),
                                    message: format!("{} is out of range", registration.quarter),
                                }
                            })?,
                            &encode_json(registration)?,
                        ],
                    )
                    .await?;
                // Every phone in scope pulls the household again with its registrations.
                resend_household(transaction, self.pii(), &mut card).await?;
            }
            Ok(())
        })
    }

    /// The households of a township or county, by village, head's name and id.
    pub async fn households_in_area(&self, area_id: &str) -> StoreResult<Vec<Household>> {
        let connection = self.connection().await?;
        connection
            .query_cached(
                &format!(
                    "SELECT card, server_seq FROM households
                      WHERE household_id IN ({AREA_HOUSEHOLDS})
                      ORDER BY village_id, head_name, household_id"
                ),
                &[&area_id],
            )
            .await?
            .iter()
            .map(|row| open_card(self.pii(), row.try_get("card")?, row.try_get("server_seq")?))
            .collect()
    }

    /// The area's registrations of `year`, in arrival order.
    pub async fn area_income_registrations(
        &self,
        area_id: &str,
        year: i32,
    ) -> StoreResult<Vec<IncomeRegistration>> {
        let connection = self.connection().await?;
        let rows = connection
            .query_cached(
                &format!(
                    "SELECT body FROM income_registrations
                      WHERE year = $2 AND household_id IN ({AREA_HOUSEHOLDS})
                      ORDER BY arrival"
                ),
                &[&area_id, &year],
            )
            .await?;
        registrations_from(&rows)
    }

    /// Per household of the area: the wellbeing check (两不愁三保障) of its latest visit in
    /// its newest month, by check-in time (then visit id).
    pub async fn latest_wellbeing_checks(
        &self,
        area_id: &str,
    ) -> StoreResult<Vec<LatestWellbeingCheck>> {
        let connection = self.connection().await?;
        let rows = connection
            .query_cached(
                &format!(
                    "SELECT v.household_id, v.visit_id, v.body
                       FROM visits v
                       JOIN (SELECT visit_id, revision FROM (
                                 SELECT visit_id, revision, business_month,
                                        MAX(business_month) OVER (PARTITION BY household_id)
                                            AS newest_month
                                   FROM (SELECT visit_id, revision, business_month,
                                                household_id,
                                                MAX(revision) OVER (PARTITION BY visit_id)
                                                    AS newest_revision
                                           FROM visits
                                          WHERE household_id IN ({AREA_HOUSEHOLDS})) AS latest
                                  WHERE revision = newest_revision) AS newest
                              WHERE business_month = newest_month) AS chosen
                         ON chosen.visit_id = v.visit_id AND chosen.revision = v.revision"
                ),
                &[&area_id],
            )
            .await?;
        let mut latest: HashMap<String, LatestWellbeingCheck> = HashMap::new();
        for row in rows {
            let household_id: String = row.try_get("household_id")?;
            let visit: Visit = decode_json(row.try_get("body")?, "visit")?;
            let candidate = LatestWellbeingCheck {
                household_id: household_id.clone(),
                visit_id: row.try_get("visit_id")?,
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

    /// What the household page and the 明白卡 show about one household.
    pub async fn household_dossier(
        &self,
        household_id: &str,
    ) -> StoreResult<Option<HouseholdDossier>> {
        let connection = self.connection().await?;
        let Some(household) = load_household(&connection, self.pii(), household_id, false).await?
        else {
            return Ok(None);
        };
        let mut cadres = Vec::new();
        for row in connection
            .query_cached(
                "SELECT u.user_id, u.display_name, u.phone, u.rank, p.is_primary
                   FROM pairings p JOIN users u ON u.user_id = p.cadre_user_id
                  WHERE p.household_id = $1 AND p.active
                  ORDER BY p.is_primary DESC, u.display_name, u.user_id",
                &[&household_id],
            )
            .await?
        {
            let user_id: String = row.try_get("user_id")?;
            let phone: String = row.try_get("phone")?;
            cadres.push(PairedCadre {
                rank: parse_rank(&user_id, row.try_get("rank")?)?,
                phone: self
                    .pii()
                    .open(&phone, &user_phone_context(&user_id))
                    .map_err(|error| StoreError::Sealed(error.to_string()))?,
                display_name: row.try_get("display_name")?,
                is_primary: row.try_get("is_primary")?,
                user_id,
            });
        }
        let registrations = household_income_registrations(&connection, household_id).await?;
        let mut visits = Vec::new();
        for row in connection
            .query_cached(
                "SELECT v.body, v.state, COALESCE(u.display_name, '') AS author_name
                   FROM visits v LEFT JOIN users u ON u.user_id = v.author_user_id
                  WHERE v.household_id = $1
                    AND v.revision = (SELECT MAX(w.revision) FROM visits w
                                       WHERE w.visit_id = v.visit_id)",
                &[&household_id],
            )
            .await?
        {
            let state: String = row.try_get("state")?;
            visits.push(HouseholdVisit {
                visit: decode_json(row.try_get("body")?, "visit")?,
                state: parse_state(&state)?,
                cadre_name: row.try_get("author_name")?,
            });
        }
        visits.sort_by(|a, b| {
            (b.visit.checkin_at, &b.visit.visit_id).cmp(&(a.visit.checkin_at, &a.visit.visit_id))
        });
        let open_conflicts: i64 = connection
            .query_one_cached(
                "SELECT COUNT(*) FROM conflicts WHERE household_id = $1 AND resolved_at IS NULL",
                &[&household_id],
            )
            .await?
            .try_get(0)?;
        Ok(Some(HouseholdDossier {
            household,
            cadres,
            registrations,
            visits,
            open_conflicts: u32::try_from(open_conflicts).unwrap_or(u32::MAX),
        }))
    }
}
