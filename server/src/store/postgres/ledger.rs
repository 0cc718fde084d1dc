//! The monthly ledger (月台账) on PostgreSQL: an area's facts for a month, month close (月结)
//! with its frozen snapshot, closures, cadres' last sync and the review queue's flag counts.
//!
//! The same queries as SQLite (`store/ledger/sqlite.rs`), a handful of indexed reads over the
//! whole area and never one per household. What SQLite's single writer made free is explicit:
//! the facts and a close read one repeatable-read snapshot, and two supervisors closing the
//! same township month on two replicas get one closure and one `Conflict`, because the
//! closure row's primary key admits one of them.

use super::PreparedOnce;

use deadpool_postgres::GenericClient;
use fieldsync_model::CodeList;
use fieldsync_model::codes::{ReviewState, Role, VisitMode};
use fieldsync_model::ledger::{BusinessMonth, LockedOutcome, LockedSnapshot, check_close};
use time::OffsetDateTime;

use super::{
    COUNTY_TOWNSHIPS_SQL, PostgresStore, decode_flags, from_millis, parse_state, to_millis,
};
use crate::store::ledger::{
    CadreLastSync, FlagCount, LedgerArea, LedgerFacts, LedgerHousehold, LedgerVisit,
    LockedLedgerRow, MonthClosure, closed_slots, flag_counts,
};
use crate::store::{StoreError, StoreResult};

/// SQL condition selecting the townships of `area` for a column holding a township id;
/// `$1` is the area id.
fn townships_of(area: &LedgerArea, column: &str) -> String {
    match area {
        LedgerArea::Township(_) => format!("{column} = $1"),
        LedgerArea::County(_) => format!("{column} IN ({COUNTY_TOWNSHIPS_SQL})"),
    }
}

fn area_id(area: &LedgerArea) -> &str {
    match area {
        LedgerArea::Township(id) | LedgerArea::County(id) => id,
    }
}

fn invalid_month(message: impl Into<String>) -> StoreError {
    StoreError::InvalidValue {
        field: "month".into(),
        message: message.into(),
    }
}

/// A stored count or revision as the unsigned number the records carry.
fn unsigned<T: TryFrom<i64>>(value: i64, what: &str) -> StoreResult<T> {
    T::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} {value} is out of range")))
}

/// A ledger household from a row with its columns' names (live or from a snapshot).
fn ledger_household_from_row(row: &tokio_postgres::Row) -> StoreResult<LedgerHousehold> {
    Ok(LedgerHousehold {
        household_id: row.try_get("household_id")?,
        head_name: row.try_get("head_name")?,
        township_id: row.try_get("township_id")?,
        village_id: row.try_get("village_id")?,
        village_name: row.try_get("village_name")?,
        primary_cadre_user_id: row.try_get("primary_cadre_user_id")?,
        primary_cadre_name: row.try_get("primary_cadre_name")?,
    })
}

async fn households_in(
    client: &impl GenericClient,
    area: &LedgerArea,
) -> StoreResult<Vec<LedgerHousehold>> {
    let sql = format!(
        "SELECT h.household_id, h.head_name, h.township_id, h.village_id,
                COALESCE(a.name, h.village_id) AS village_name,
                p.cadre_user_id AS primary_cadre_user_id,
                u.display_name AS primary_cadre_name
           FROM households h
           LEFT JOIN areas a ON a.area_id = h.village_id
           LEFT JOIN pairings p
               ON p.household_id = h.household_id AND p.active AND p.is_primary
           LEFT JOIN users u ON u.user_id = p.cadre_user_id
          WHERE {}
          ORDER BY h.township_id, h.village_id, h.head_name, h.household_id, p.cadre_user_id",
        townships_of(area, "h.township_id")
    );
    let statement = client.prepare_cached(&sql).await?;
    let rows = client.query(&statement, &[&area_id(area)]).await?;
    let mut households: Vec<LedgerHousehold> = Vec::with_capacity(rows.len());
    for row in &rows {
        let household = ledger_household_from_row(row)?;
        // Two primaries (a data error the pairing checks report) must not count the
        // household twice: the first cadre by id is kept.
        if households
            .last()
            .is_some_and(|last| last.household_id == household.household_id)
        {
            continue;
        }
        households.push(household);
    }
    Ok(households)
}

async fn visits_in(
    client: &impl GenericClient,
    area: &LedgerArea,
    month: &str,
) -> StoreResult<Vec<LedgerVisit>> {
    let sql = format!(
        "SELECT v.visit_id, v.revision, v.household_id, v.author_user_id,
                COALESCE(u.display_name, v.author_user_id) AS author_name, v.mode, v.state,
                v.checkin_at_ms, v.submitted_at
           FROM visits v
           JOIN households h ON h.household_id = v.household_id
           LEFT JOIN users u ON u.user_id = v.author_user_id
          WHERE v.business_month = $2 AND v.state <> $3 AND {}
          ORDER BY v.household_id, v.submitted_at, v.visit_id, v.revision",
        townships_of(area, "h.township_id")
    );
    let statement = client.prepare_cached(&sql).await?;
    let rows = client
        .query(
            &statement,
            &[&area_id(area), &month, &ReviewState::Superseded.as_str()],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let visit_id: String = row.try_get("visit_id")?;
            let mode: i32 = row.try_get("mode")?;
            let state: String = row.try_get("state")?;
            // Every revision the server stores has its check-in time; a missing one is a
            // damaged row, not a reason to retry.
            let checkin: Option<i64> = row.try_get("checkin_at_ms")?;
            let checkin = checkin.ok_or_else(|| {
                StoreError::Corrupt(format!("visit {visit_id}: no check-in time"))
            })?;
            Ok(LedgerVisit {
                mode: VisitMode::from_code(mode)
                    .ok_or_else(|| StoreError::Corrupt(format!("visit {visit_id}: mode {mode}")))?,
                state: parse_state(&state)?,
                checkin_at: from_millis(checkin)?,
                submitted_at: from_millis(row.try_get("submitted_at")?)?,
                revision: unsigned(i64::from(row.try_get::<_, i32>("revision")?), "revision")?,
                household_id: row.try_get("household_id")?,
                author_user_id: row.try_get("author_user_id")?,
                author_name: row.try_get("author_name")?,
                visit_id,
            })
        })
        .collect()
}

/// Closures of the area's townships (of `month` only, when given), newest month first.
async fn closures_in(
    client: &impl GenericClient,
    area: &LedgerArea,
    month: Option<&str>,
) -> StoreResult<Vec<MonthClosure>> {
    let sql = format!(
        "SELECT c.township_id, COALESCE(a.name, c.township_id) AS township_name, c.month,
                c.closed_by, COALESCE(u.display_name, c.closed_by) AS closed_by_name,
                c.closed_at, c.household_count
           FROM month_closures c
           LEFT JOIN areas a ON a.area_id = c.township_id
           LEFT JOIN users u ON u.user_id = c.closed_by
          WHERE {} AND ($2::TEXT IS NULL OR c.month = $2)
          ORDER BY c.month DESC, c.township_id",
        townships_of(area, "c.township_id")
    );
    let statement = client.prepare_cached(&sql).await?;
    let rows = client.query(&statement, &[&area_id(area), &month]).await?;
    rows.iter()
        .map(|row| {
            Ok(MonthClosure {
                township_id: row.try_get("township_id")?,
                township_name: row.try_get("township_name")?,
                month: row.try_get("month")?,
                closed_by_user_id: row.try_get("closed_by")?,
                closed_by_name: row.try_get("closed_by_name")?,
                closed_at: from_millis(row.try_get("closed_at")?)?,
                household_count: unsigned(row.try_get("household_count")?, "household count")?,
            })
        })
        .collect()
}

/// The frozen slots of the area's closed townships for `month`.
async fn locked_rows_in(
    client: &impl GenericClient,
    area: &LedgerArea,
    month: &str,
) -> StoreResult<Vec<LockedLedgerRow>> {
    let sql = format!(
        "SELECT s.household_id, s.head_name, s.township_id, s.village_id, s.village_name,
                s.primary_cadre_user_id, s.primary_cadre_name, s.outcome,
                s.visited_in_person, s.approved_in_person
           FROM ledger_snapshots s
          WHERE s.month = $2 AND {}
          ORDER BY s.township_id, s.village_id, s.head_name, s.household_id",
        townships_of(area, "s.township_id")
    );
    let statement = client.prepare_cached(&sql).await?;
    let rows = client.query(&statement, &[&area_id(area), &month]).await?;
    rows.iter()
        .map(|row| {
            let outcome: String = row.try_get("outcome")?;
            let outcome = match outcome.as_str() {
                "approved" => LockedOutcome::Approved,
                "overdue" => LockedOutcome::Overdue,
                other => {
                    return Err(StoreError::Corrupt(format!(
                        "ledger snapshot outcome {other:?}"
                    )));
                }
            };
            Ok(LockedLedgerRow {
                month: month.to_owned(),
                household: ledger_household_from_row(row)?,
                snapshot: LockedSnapshot {
                    outcome,
                    visited_in_person: row.try_get("visited_in_person")?,
                    approved_in_person: row.try_get("approved_in_person")?,
                },
            })
        })
        .collect()
}

impl PostgresStore {
    /// The monthly ledger's facts for one area and month, read in one snapshot.
    pub async fn ledger_facts(&self, area: &LedgerArea, month: &str) -> StoreResult<LedgerFacts> {
        let mut connection = self.connection().await?;
        // Repeatable read: the closures, the frozen slots, the households and the visits
        // are one moment's data, as SQLite's single read transaction gives.
        let snapshot = connection
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let closures = closures_in(&snapshot, area, Some(month)).await?;
        let locked = if closures.is_empty() {
            Vec::new()
        } else {
            locked_rows_in(&snapshot, area, month).await?
        };
        let facts = LedgerFacts {
            households: households_in(&snapshot, area).await?,
            visits: visits_in(&snapshot, area, month).await?,
            closures,
            locked,
        };
        snapshot.commit().await?;
        Ok(facts)
    }

    /// Close a township's month (月结), freezing every household's slot as it stands at
    /// `closed_at`. Two closes of the same township month on two replicas: the closure
    /// row's primary key admits one, the other answers `Conflict`.
    pub async fn close_month(
        &self,
        township_id: &str,
        month: &str,
        closed_by_user_id: &str,
        closed_at: OffsetDateTime,
    ) -> StoreResult<MonthClosure> {
        let business_month =
            BusinessMonth::parse(month).map_err(|error| invalid_month(error.to_string()))?;
        check_close(business_month, closed_at).map_err(|error| invalid_month(error.to_string()))?;
        let area = LedgerArea::Township(township_id.to_owned());
        write_transaction!(self, |transaction| {
            // One snapshot for the households and visits the slots are derived from. A
            // close racing another one of the same month then fails its closure insert
            // with a serialization error once the other commits, and its retry (a new
            // snapshot) finds the closure and answers `Conflict` below.
            transaction
                .batch_execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                .await?;
            let is_township = transaction
                .query_opt_cached(
                    "SELECT 1 FROM areas WHERE area_id = $1 AND level = 'township'",
                    &[&township_id],
                )
                .await?
                .is_some();
            if !is_township {
                return Err(StoreError::NotFound(format!("township {township_id}")).into());
            }
            let already = transaction
                .query_opt_cached(
                    "SELECT closed_at FROM month_closures WHERE township_id = $1 AND month = $2",
                    &[&township_id, &month],
                )
                .await?;
            if already.is_some() {
                return Err(already_closed(township_id, month).into());
            }

            let households = households_in(transaction, &area).await?;
            let slots = closed_slots(
                business_month,
                &households,
                visits_in(transaction, &area, month).await?,
                closed_at,
            )?;
            let closed_at_millis = to_millis(closed_at)?;
            let household_count = i64::try_from(households.len()).unwrap_or(i64::MAX);
            // The closure row first: its primary key is what admits one close of a month.
            let inserted = transaction
                .execute_cached(
                    "INSERT INTO month_closures
                         (township_id, month, closed_by, closed_at, household_count)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (township_id, month) DO NOTHING",
                    &[
                        &township_id,
                        &month,
                        &closed_by_user_id,
                        &closed_at_millis,
                        &household_count,
                    ],
                )
                .await?;
            if inserted == 0 {
                // Committed by another close after this transaction's own check.
                return Err(already_closed(township_id, month).into());
            }
            let insert = transaction
                .prepare_cached(
                    "INSERT INTO ledger_snapshots (township_id, month, household_id, head_name,
                         village_id, village_name, primary_cadre_user_id, primary_cadre_name,
                         outcome, visited_in_person, approved_in_person)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                )
                .await?;
            for slot in &slots {
                let household = slot.household;
                transaction
                    .execute(
                        &insert,
                        &[
                            &township_id,
                            &month,
                            &household.household_id,
                            &household.head_name,
                            &household.village_id,
                            &household.village_name,
                            &household.primary_cadre_user_id,
                            &household.primary_cadre_name,
                            &slot.outcome,
                            &slot.visited_in_person,
                            &slot.approved_in_person,
                        ],
                    )
                    .await?;
            }
            let closure = closures_in(transaction, &area, Some(month))
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| StoreError::Corrupt("a closure just written is missing".into()))?;
            Ok(closure)
        })
    }

    /// Closures of the area's townships, newest month first.
    pub async fn month_closures(&self, area: &LedgerArea) -> StoreResult<Vec<MonthClosure>> {
        let connection = self.connection().await?;
        closures_in(&connection, area, None).await
    }

    /// Every cadre of the area with their latest push or heartbeat, by name. A sync is a
    /// push batch (received time) or a heartbeat (sent with every push and pull) from any
    /// device of the cadre; a console login is not a sync.
    pub async fn cadre_last_syncs(&self, area: &LedgerArea) -> StoreResult<Vec<CadreLastSync>> {
        let connection = self.connection().await?;
        let sql = format!(
            "SELECT u.user_id, u.display_name, u.area_id,
                    GREATEST(COALESCE((SELECT MAX(b.received_at) FROM devices d
                                        JOIN push_batches b ON b.device_id = d.device_id
                                       WHERE d.user_id = u.user_id), 0),
                             COALESCE((SELECT MAX(hb.server_time) FROM device_heartbeats hb
                                       WHERE hb.user_id = u.user_id), 0)) AS last_sync_ms
               FROM users u
              WHERE u.role = $2 AND {}
              ORDER BY u.display_name, u.user_id",
            townships_of(area, "u.area_id")
        );
        let statement = connection.prepare_cached(&sql).await?;
        let rows = connection
            .query(&statement, &[&area_id(area), &Role::Cadre.as_str()])
            .await?;
        rows.iter()
            .map(|row| {
                let last: i64 = row.try_get("last_sync_ms")?;
                Ok(CadreLastSync {
                    user_id: row.try_get("user_id")?,
                    display_name: row.try_get("display_name")?,
                    township_id: row.try_get("area_id")?,
                    last_sync_at: (last > 0).then(|| from_millis(last)).transpose()?,
                })
            })
            .collect()
    }

    /// Per evidence flag code, how many visits of the area wait for review with that flag.
    pub async fn queue_flag_counts(&self, area: &LedgerArea) -> StoreResult<Vec<FlagCount>> {
        let connection = self.connection().await?;
        // The queue shows a visit's latest revision; a submitted revision is the latest open
        // one (a newer revision supersedes it), so state = submitted selects queue items.
        let sql = format!(
            "SELECT v.visit_id, v.evidence_flags
               FROM visits v
               JOIN households h ON h.household_id = v.household_id
              WHERE v.state = $2 AND v.evidence_flags IS NOT NULL AND {}",
            townships_of(area, "h.township_id")
        );
        let statement = connection.prepare_cached(&sql).await?;
        let rows = connection
            .query(
                &statement,
                &[&area_id(area), &ReviewState::Submitted.as_str()],
            )
            .await?;
        // Leniently, like every other reader: a flag written by a newer server is skipped.
        let visits = rows
            .iter()
            .map(|row| {
                let flags: String = row.try_get("evidence_flags")?;
                Ok((row.try_get("visit_id")?, decode_flags(&flags)?))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(flag_counts(visits))
    }
}

/// The `Conflict` of closing a month twice (SQLite's words).
fn already_closed(township_id: &str, month: &str) -> StoreError {
    StoreError::Conflict(format!(
        "{month} 已月结 (township {township_id} already closed {month})"
    ))
}

#[cfg(test)]
mod tests {
    use fieldsync_model::codes::VisitMode;
    use time::macros::datetime;

    use super::super::testing::{fresh_schema, test_server_url};
    use super::super::{PoolSettings, PostgresStore};
    use crate::store::conformance::{self, TOWNSHIP_ONE, VISIT_MONTH, VISIT_TIME};
    use crate::store::sealed::PiiCipher;
    use crate::store::{LedgerArea, StoreError};

    async fn replica(config: &tokio_postgres::Config) -> PostgresStore {
        PostgresStore::connect_with_config(
            config.clone(),
            PiiCipher::for_tests(),
            PoolSettings::default(),
        )
        .await
        .expect("connect a replica")
    }

    /// Two supervisors close the same township month at the same moment on two replicas
    /// (two stores, each with its own pool, on one schema): every time exactly one close
    /// succeeds and the other is a `Conflict`, and the month is frozen once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_replicas_closing_the_same_month_at_once_close_it_once() {
        let Some(server_url) =
            test_server_url("two_replicas_closing_the_same_month_at_once_close_it_once")
        else {
            return;
        };
        let (config, _schema) = fresh_schema(&server_url).await;
        let replica_a = replica(&config).await;
        let replica_b = replica(&config).await;
        let fixture = conformance::fixture();
        replica_a
            .load_seed(fixture.seed.clone())
            .await
            .expect("seed through replica A");
        let in_person = conformance::visit(&fixture.wang, VisitMode::InPerson, VISIT_TIME);
        conformance::push_visit(&replica_b, &fixture.cadre_a, "phone-a", 1, &in_person).await;

        // 2 April 2026, 10:00 Beijing: every month up to March 2026 has ended. Fifteen
        // months, each raced by both replicas.
        let closed_at = datetime!(2026-04-02 02:00 UTC);
        let months: Vec<String> = (1..=12)
            .map(|month| format!("2025-{month:02}"))
            .chain((1..=3).map(|month| format!("2026-{month:02}")))
            .collect();
        for month in &months {
            let close = |store: &PostgresStore, user_id: &str| {
                let (store, user_id, month) = (store.clone(), user_id.to_owned(), month.clone());
                tokio::spawn(async move {
                    store
                        .close_month(TOWNSHIP_ONE, &month, &user_id, closed_at)
                        .await
                })
            };
            let first = close(&replica_a, &fixture.supervisor_one.user_id);
            let second = close(&replica_b, &fixture.admin.user_id);
            let outcomes = [
                first.await.expect("close task A"),
                second.await.expect("close task B"),
            ];
            let closures: Vec<_> = outcomes
                .iter()
                .filter_map(|outcome| outcome.as_ref().ok())
                .collect();
            assert_eq!(
                closures.len(),
                1,
                "{month}: exactly one close succeeds: {outcomes:?}"
            );
            assert_eq!(closures[0].month, *month);
            assert_eq!(closures[0].household_count, 3);
            assert!(
                outcomes
                    .iter()
                    .any(|outcome| matches!(outcome, Err(StoreError::Conflict(_)))),
                "{month}: the other close is a Conflict: {outcomes:?}"
            );
        }

        let township = LedgerArea::Township(TOWNSHIP_ONE.into());
        let closures = replica_b.month_closures(&township).await.expect("closures");
        assert_eq!(closures.len(), months.len(), "one closure per month");
        let march = replica_a
            .ledger_facts(&township, VISIT_MONTH)
            .await
            .expect("March facts");
        assert_eq!(march.closures.len(), 1);
        assert_eq!(march.locked.len(), 3, "each household frozen once");
        let wang = march
            .locked
            .iter()
            .find(|row| row.household.household_id == fixture.wang.household_id)
            .expect("wang's slot");
        assert!(wang.snapshot.visited_in_person);
    }
}
