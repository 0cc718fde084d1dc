//! Smaller reads on PostgreSQL, as in SQLite: households not yet visited in person this
//! month, a register's history, the newest register HLC, the visits that use a photo, and
//! the count of committed writes.

use super::PreparedOnce;
use std::collections::HashMap;
use std::sync::atomic::Ordering;

use fieldsync_model::CodeList;
use fieldsync_model::codes::{ReviewState, VisitMode};
use fieldsync_model::hlc::Hlc;
use fieldsync_model::register::{FieldTarget, RegisterWrite};

use super::PostgresStore;
use super::push::register_history;
use crate::store::{StoreError, StoreResult, UnvisitedHousehold};

impl PostgresStore {
    /// The township's households without a submitted or approved in-person visit in
    /// `month`, with their paired cadres' names (primary first).
    pub async fn unvisited_households(
        &self,
        township_id: &str,
        month: &str,
    ) -> StoreResult<Vec<UnvisitedHousehold>> {
        let connection = self.connection().await?;
        let mut cadre_names: HashMap<String, Vec<String>> = HashMap::new();
        for row in connection
            .query_cached(
                "SELECT p.household_id, COALESCE(u.display_name, p.cadre_user_id) AS name
                   FROM pairings p
                   JOIN households h ON h.household_id = p.household_id
                   LEFT JOIN users u ON u.user_id = p.cadre_user_id
                  WHERE h.township_id = $1 AND p.active
                  ORDER BY p.is_primary DESC, u.display_name, p.cadre_user_id",
                &[&township_id],
            )
            .await?
        {
            cadre_names
                .entry(row.try_get("household_id")?)
                .or_default()
                .push(row.try_get("name")?);
        }
        let rows = connection
            .query_cached(
                "SELECT h.household_id, h.head_name, h.village_id,
                        COALESCE(a.name, (h.card::json ->> 'village_name'), '') AS village_name
                   FROM households h
                   LEFT JOIN areas a ON a.area_id = h.village_id
                  WHERE h.township_id = $1
                    AND NOT EXISTS (
                        SELECT 1 FROM visits v
                         WHERE v.household_id = h.household_id AND v.business_month = $2
                           AND v.mode = $3 AND v.state IN ($4, $5))
                  ORDER BY h.village_id, h.head_name, h.household_id",
                &[
                    &township_id,
                    &month,
                    &VisitMode::InPerson.code(),
                    &ReviewState::Submitted.as_str(),
                    &ReviewState::Approved.as_str(),
                ],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let household_id: String = row.try_get("household_id")?;
                Ok(UnvisitedHousehold {
                    cadre_names: cadre_names.remove(&household_id).unwrap_or_default(),
                    head_name: row.try_get("head_name")?,
                    village_id: row.try_get("village_id")?,
                    village_name: row.try_get("village_name")?,
                    household_id,
                })
            })
            .collect()
    }

    /// Every write of one register, in the order the server applied them.
    pub async fn register_history(
        &self,
        household_id: &str,
        target: &FieldTarget,
        field: &str,
    ) -> StoreResult<Vec<RegisterWrite>> {
        let connection = self.connection().await?;
        register_history(
            &connection,
            self.pii(),
            household_id,
            &target.as_key(),
            field,
        )
        .await
    }

    /// The greatest HLC of any stored register write (the server HLC starts past it).
    pub async fn max_register_hlc(&self) -> StoreResult<Hlc> {
        let connection = self.connection().await?;
        let highest: Option<i64> = connection
            .query_one_cached("SELECT MAX(hlc) FROM register_writes", &[])
            .await?
            .try_get(0)?;
        highest.map_or(Ok(Hlc::ZERO), |value| {
            u64::try_from(value)
                .map(Hlc::from_u64)
                .map_err(|_| StoreError::Corrupt(format!("hlc {value}")))
        })
    }

    /// The visits whose photo rows name this blob.
    pub async fn visits_with_photo(&self, sha256: &str) -> StoreResult<Vec<String>> {
        let connection = self.connection().await?;
        connection
            .query_cached(
                "SELECT DISTINCT visit_id FROM photos WHERE sha256 = $1 ORDER BY visit_id",
                &[&sha256],
            )
            .await?
            .iter()
            .map(|row| Ok(row.try_get(0)?))
            .collect()
    }

    /// Write transactions this store committed (tests and benchmarks count durable commits).
    pub fn committed_writes(&self) -> u64 {
        self.committed_writes.load(Ordering::Relaxed)
    }
}
